#!/bin/sh
# list_plans: every plan with its data allowance, monthly price and whether it includes roaming.
. "${0%/*}/../lib.sh"
allow_args
awk -F '\t' 'NR > 1 {
  printf "%s{\"name\": \"%s\", \"data_gb\": %s, \"price\": %s, \"roaming\": \"%s\"}", (n++ ? ", " : "{\"plans\": ["), $1, $2, $3, $4
} END { print (n ? "]}" : "{\"plans\": []}") }' "$DB/plans.tsv"
