# Shared by the tool scripts: argument reading and checking, table lookups
# and updates, JSON output. POSIX sh and awk only, so the same scripts run
# under busybox (the environment image) and under a host's dash and mawk.
#
# Arguments arrive on stdin as key=value lines. Tables are tab-separated
# files with a header line under $DB (default db/, relative to the work
# folder). Results go to stdout as one JSON object; bad input exits 1 with
# a one-line message on stderr.

DB=${DB:-db}
TAB=$(printf '\t')
ARGS=$(cat)

# fail MESSAGE: report bad input and stop.
fail() {
  printf '%s\n' "$*" >&2
  exit 1
}

# allow_args NAME...: refuse a line that is not key=value, or a key not listed.
allow_args() {
  printf '%s\n' "$ARGS" | while IFS= read -r line; do
    [ -z "$line" ] && continue
    key=${line%%=*}
    [ "$key" = "$line" ] && fail "bad argument line (expected key=value): $line"
    known=no
    for a in "$@"; do [ "$a" = "$key" ] && known=yes; done
    [ "$known" = yes ] || fail "unknown argument: $key"
  done || exit 1
}

# arg NAME: the value of NAME ("" when absent; the first when repeated).
arg() {
  printf '%s\n' "$ARGS" | sed -n "s/^$1=//p" | head -n 1
}

# need NAME: the value of NAME, or fail when it is absent or empty.
need() {
  v=$(arg "$1")
  [ -n "$v" ] || fail "missing argument: $1"
  printf '%s' "$v"
}

# account_id: the checked account_id argument.
account_id() {
  v=$(need account_id) || exit 1
  case "$v" in
    A[0-9][0-9][0-9][0-9]) printf '%s' "$v" ;;
    *) fail "bad account_id \"$v\": expected A and four digits, like A1042" ;;
  esac
}

# row TABLE KEY: the row whose first field is KEY (nothing when absent).
row() {
  awk -F '\t' -v k="$2" 'NR > 1 && $1 == k { print; exit }' "$DB/$1.tsv"
}

# field ROW N: the Nth tab-separated field of a row.
field() {
  printf '%s\n' "$1" | cut -f "$2"
}

# account ID: the account's row, or fail when there is none.
account() {
  r=$(row accounts "$1")
  [ -n "$r" ] || fail "no account $1"
  printf '%s' "$r"
}

# set_field TABLE KEY N VALUE: set field N of the row keyed KEY, in place.
set_field() {
  awk -F '\t' -v OFS='\t' -v k="$2" -v n="$3" -v v="$4" 'NR > 1 && $1 == k { $n = v } { print }' "$DB/$1.tsv" >"$DB/$1.tsv.new" &&
    mv "$DB/$1.tsv.new" "$DB/$1.tsv"
}

# cents AMOUNT: a money amount (12, 12.5, 12.50) as whole cents; fail when it is not one.
cents() {
  case "$1" in
    '' | *[!0-9.]* | *.*.* | .* | *. | *.[0-9][0-9][0-9]*) fail "bad amount \"$1\": expected a number with at most two decimals, like 25.50" ;;
  esac
  awk -v a="$1" 'BEGIN { printf "%d\n", a * 100 + 0.5 }'
}

# money CENTS: cents as an amount with two decimals.
money() {
  awk -v c="$1" 'BEGIN { printf "%.2f\n", c / 100 }'
}

# account_json ROW: an account row as a JSON object.
account_json() {
  printf '%s\n' "$1" | awk -F '\t' '{
    printf "{\"account_id\": \"%s\", \"name\": \"%s\", \"phone\": \"%s\", \"plan\": \"%s\", \"status\": \"%s\", \"roaming\": \"%s\", \"balance\": %s}\n",
      $1, $2, $3, $4, $5, $6, $7 }'
}
