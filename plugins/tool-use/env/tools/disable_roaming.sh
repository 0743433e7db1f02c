#!/bin/sh
# disable_roaming account_id=A1042: turn roaming off.
. "${0%/*}/../lib.sh"
allow_args account_id
id=$(account_id) || exit 1
r=$(account "$id") || exit 1
set_field accounts "$id" 6 off
printf '{"account_id": "%s", "roaming": "off", "was": "%s"}\n' "$id" "$(field "$r" 6)"
