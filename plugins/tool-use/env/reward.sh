#!/bin/sh
# reward: compare the final tables under $DB with the expected ones under
# $EXPECTED (default expected/), row order aside. The reward is 1 when every
# table matches and 0 otherwise: partial credit per row would reward doing
# nothing, since most rows of a database stay as they were.
DB=${DB:-db}
EXPECTED=${EXPECTED:-expected}
reward=1
tables=""
for t in accounts usage payments; do
  [ -f "$EXPECTED/$t.tsv" ] || { printf 'no expected table %s\n' "$t" >&2; exit 1; }
  same=false
  if [ -f "$DB/$t.tsv" ] && [ "$(sort "$DB/$t.tsv")" = "$(sort "$EXPECTED/$t.tsv")" ]; then same=true; else reward=0; fi
  tables="$tables${tables:+, }\"$t\": $same"
done
printf '{"reward": %s, "tables": {%s}}\n' "$reward" "$tables"
