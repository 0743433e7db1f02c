#!/bin/sh
# get_usage account_id=A1042: data used this month against the plan's allowance and refuels.
. "${0%/*}/../lib.sh"
allow_args account_id
id=$(account_id) || exit 1
r=$(account "$id") || exit 1
plan=$(field "$r" 4)
gb=$(field "$(row plans "$plan")" 2)
u=$(row usage "$id")
used=$(field "$u" 2)
refuel=$(field "$u" 3)
awk -v id="$id" -v plan="$plan" -v gb="${gb:-0}" -v used="${used:-0}" -v refuel="${refuel:-0}" 'BEGIN {
  limit = gb * 1024 + refuel; left = limit - used; if (left < 0) left = 0
  printf "{\"account_id\": \"%s\", \"plan\": \"%s\", \"data_limit_mb\": %d, \"used_mb\": %d, \"refuel_mb\": %d, \"remaining_mb\": %d}\n", id, plan, limit, used, refuel, left
}'
