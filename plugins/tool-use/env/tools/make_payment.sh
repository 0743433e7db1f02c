#!/bin/sh
# make_payment account_id=A1042 amount=25.50: pay towards the balance; paying it all
# reactivates a suspended account.
. "${0%/*}/../lib.sh"
allow_args account_id amount
id=$(account_id) || exit 1
amount=$(need amount) || exit 1
pay=$(cents "$amount") || exit 1
[ "$pay" -gt 0 ] || fail "bad amount \"$amount\": must be more than zero"
r=$(account "$id") || exit 1
owed=$(cents "$(field "$r" 7)") || exit 1
[ "$owed" -gt 0 ] || fail "account $id has nothing to pay"
[ "$pay" -le "$owed" ] || fail "amount $(money "$pay") is more than the balance $(money "$owed")"
left=$((owed - pay))
set_field accounts "$id" 7 "$(money "$left")"
status=$(field "$r" 5)
if [ "$left" -eq 0 ] && [ "$status" = suspended ]; then
  set_field accounts "$id" 5 active
  status=active
fi
n=$(awk 'END { print NR }' "$DB/payments.tsv")
pid=$(printf 'P%04d' "$n")
printf '%s\t%s\t%s\n' "$pid" "$id" "$(money "$pay")" >>"$DB/payments.tsv"
printf '{"payment_id": "%s", "account_id": "%s", "amount": %s, "balance": %s, "status": "%s"}\n' "$pid" "$id" "$(money "$pay")" "$(money "$left")" "$status"
