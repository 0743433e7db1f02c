#!/bin/sh
# find_account_by_phone phone=555-0142: the account id and holder's name for a phone number.
. "${0%/*}/../lib.sh"
allow_args phone
phone=$(need phone) || exit 1
case "$phone" in
  [0-9][0-9][0-9]-[0-9][0-9][0-9][0-9]) ;;
  *) fail "bad phone \"$phone\": expected three digits, a dash and four digits, like 555-0142" ;;
esac
r=$(awk -F '\t' -v p="$phone" 'NR > 1 && $3 == p { print; exit }' "$DB/accounts.tsv")
[ -n "$r" ] || fail "no account with phone $phone"
printf '{"account_id": "%s", "name": "%s"}\n' "$(field "$r" 1)" "$(field "$r" 2)"
