#!/bin/sh
# get_account account_id=A1042: the account and its plan.
. "${0%/*}/../lib.sh"
allow_args account_id
id=$(account_id) || exit 1
r=$(account "$id") || exit 1
plan=$(field "$r" 4)
p=$(row plans "$plan")
printf '{"account": %s, "plan": {"name": "%s", "data_gb": %s, "price": %s, "roaming": "%s"}}\n' \
  "$(account_json "$r")" "$plan" "$(field "$p" 2)" "$(field "$p" 3)" "$(field "$p" 4)"
