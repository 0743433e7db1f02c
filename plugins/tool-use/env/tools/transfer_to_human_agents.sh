#!/bin/sh
# transfer_to_human_agents summary=...: hand the customer to a human; the conversation ends.
. "${0%/*}/../lib.sh"
allow_args summary
printf '{"transferred": true}\n'
