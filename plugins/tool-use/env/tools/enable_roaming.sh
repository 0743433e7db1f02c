#!/bin/sh
# enable_roaming account_id=A1042: turn roaming on; the account must be active and its plan include roaming.
. "${0%/*}/../lib.sh"
allow_args account_id
id=$(account_id) || exit 1
r=$(account "$id") || exit 1
[ "$(field "$r" 5)" = active ] || fail "account $id is suspended: the balance must be paid first"
plan=$(field "$r" 4)
if [ "$(field "$(row plans "$plan")" 4)" != yes ]; then
  fail "plan $plan does not include roaming; plans with roaming: $(awk -F '\t' 'NR > 1 && $4 == "yes" { printf "%s%s", (n++ ? ", " : ""), $1 }' "$DB/plans.tsv")"
fi
set_field accounts "$id" 6 on
printf '{"account_id": "%s", "roaming": "on", "was": "%s"}\n' "$id" "$(field "$r" 6)"
