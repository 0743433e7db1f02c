#!/bin/sh
# change_plan account_id=A1042 plan=plus: move an active account to another plan.
# A plan without roaming turns roaming off.
. "${0%/*}/../lib.sh"
allow_args account_id plan
id=$(account_id) || exit 1
plan=$(need plan) || exit 1
p=$(row plans "$plan")
[ -n "$p" ] || fail "unknown plan \"$plan\": choose one of $(awk -F '\t' 'NR > 1 { printf "%s%s", (n++ ? ", " : ""), $1 }' "$DB/plans.tsv")"
r=$(account "$id") || exit 1
[ "$(field "$r" 5)" = active ] || fail "account $id is suspended: the balance must be paid first"
[ "$(field "$r" 4)" != "$plan" ] || fail "account $id is already on plan $plan"
set_field accounts "$id" 4 "$plan"
roaming_off=false
if [ "$(field "$p" 4)" = no ] && [ "$(field "$r" 6)" = on ]; then
  set_field accounts "$id" 6 off
  roaming_off=true
fi
printf '{"account_id": "%s", "old_plan": "%s", "new_plan": "%s", "roaming_turned_off": %s}\n' "$id" "$(field "$r" 4)" "$plan" "$roaming_off"
