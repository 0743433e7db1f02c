#!/bin/sh
# refuel_data account_id=A1042 gb=2: add 1 to 10 GB to this month's allowance, 2.00 per GB
# added to the balance.
. "${0%/*}/../lib.sh"
allow_args account_id gb
id=$(account_id) || exit 1
gb=$(need gb) || exit 1
case "$gb" in
  [1-9] | 10) ;;
  *) fail "bad gb \"$gb\": expected a whole number from 1 to 10" ;;
esac
r=$(account "$id") || exit 1
[ "$(field "$r" 5)" = active ] || fail "account $id is suspended: the balance must be paid first"
u=$(row usage "$id")
[ -n "$u" ] || fail "no usage record for account $id"
refuel=$(($(field "$u" 3) + gb * 1024))
set_field usage "$id" 3 "$refuel"
owed=$(( $(cents "$(field "$r" 7)") + gb * 200 ))
set_field accounts "$id" 7 "$(money "$owed")"
printf '{"account_id": "%s", "added_mb": %d, "refuel_mb": %d, "charged": %s, "balance": %s}\n' "$id" $((gb * 1024)) "$refuel" "$(money $((gb * 200)))" "$(money "$owed")"
