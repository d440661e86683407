#!/usr/bin/env bash
# Input at the gateway's limits goes through, end to end (SQL API -> worker
# -> simulator, which validates against the XSD); input past them is
# refused at the call, before anything is queued (README: "Input the
# gateway refuses").
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-input-limits"
trap sim_stop EXIT
sim_start "$SIMDIR"

merchant_on_simulator input-limits

q() { as_merchant "$@"; }
qerr() { sqlstate_of "$1"; }
# sent FIELD PAYMENT_ID: a field of the request the worker sent (JSON path under transactionRequest)
sent() {
	q -c "SELECT e.request_masked::jsonb #>> '{createTransactionRequest,transactionRequest,$1}' FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $2 AND e.request_type = 'createTransactionRequest' ORDER BY e.exchange_id LIMIT 1"
}
fy="extract(year from now())::int + 3"

# 1. the sandbox's JCB and Diners test cards
for number in 3088000000000017 38000000000006; do
	pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => pay_card('$number', 12, $fy, '123'))")
	is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "the sandbox test card ending ${number: -4} is charged"
done

# 2. holder names: cut to 50 characters on billTo, never inside a character
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', card => pay_card('4111111111111111', 12, $fy, '123', repeat('é', 60)))")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "a one-word holder name of 60 two-byte characters goes through"
is "$(sent billTo,lastName $pid)" "$(printf 'é%.0s' $(seq 50))" "it is sent as a last name of its first 50 characters"
is "$(sent billTo,firstName $pid)" "" "with no first name"
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', card => pay_card('4111111111111111', 12, $fy, '123', repeat('漢', 55) || '  Lovelace'))")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "a holder name whose first part has 55 three-byte characters goes through"
is "$(sent billTo,firstName $pid)" "$(printf '漢%.0s' $(seq 50))" "its first name is cut to 50 whole characters"
is "$(sent billTo,lastName $pid)" "Lovelace" "its last name is the last word"

# 3. every customer field, the description and the correlation id at their limits
cust="jsonb_build_object('id', repeat('9', 20), 'email', repeat('a', 243) || '@example.com',
	'first_name', repeat('ü', 50), 'last_name', repeat('ß', 50), 'company', repeat('c', 50),
	'address', repeat('ä', 60), 'city', repeat('東', 40), 'state', repeat('s', 40), 'zip', repeat('1', 20),
	'country', repeat('ö', 60), 'ip', '0000:0000:0000:0000:0000:ffff:192.168.100.228')"
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '9999999999999.99 USD', card => pay_card('4111111111111111', 12, $fy, '123'),
	customer => $cust, description => repeat('д', 254) || E'\t', correlation_id => 'corr-' || repeat('x', 15))")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "customer fields, description, correlation id and a 15-digit amount at the limits go through the simulator's schema check"
is "$(sent billTo,zip $pid)" "$(printf '1%.0s' $(seq 20))" "the 20-character zip was sent whole"
is "$(sent billTo,city $pid)" "$(printf '東%.0s' $(seq 40))" "the 40-character city was sent whole"
is "$(sent amount $pid)" "9999999999999.99" "the 15-digit amount was sent"
is "$(q -c "SELECT e.request_masked::jsonb #>> '{createTransactionRequest,refId}' FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid LIMIT 1")" \
	"corr-xxxxxxxxxxxxxxx" "a 20-character correlation id is sent as refId as it is"
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '2.00 USD', card => pay_card('4111111111111111', 12, $fy), correlation_id => repeat('ř', 20))")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "a non-ASCII correlation id goes through"
like "$(q -c "SELECT e.request_masked::jsonb #>> '{createTransactionRequest,refId}' FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid LIMIT 1")" \
	'^[0-9a-f]{20}$' "one over 20 bytes is sent as refId as a 20-digit digest"
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '2.00 USD', card => pay_card('4111111111111111', 12, $fy), correlation_id => E'req-1\\r\\n')")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "a short correlation id with a line break goes through"
like "$(q -c "SELECT e.request_masked::jsonb #>> '{createTransactionRequest,refId}' FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid LIMIT 1")" \
	'^[0-9a-f]{20}$' "it is sent as refId as a digest (XML hands a carriage return back as a line feed, and the echo would not be ours)"

# 4. past the limits: refused at the call, nothing queued
before=$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M")
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', card => pay_card('4111111111111111', 12, $fy), customer => '{\"zip\": \"123456789012345678901\"}')")" 22001 "a 21-character zip is refused at the call (22001)"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', card => pay_card('4111111111111111', 12, $fy), customer => jsonb_build_object('city', E'Spring\\x01field'))")" 22Y24 "a control character in the city is refused at the call (22Y24)"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', card => pay_card('4111111111111111', 12, $fy), correlation_id => E'req\\x1b1')")" 22Y24 "a control character in the correlation id is refused at the call (22Y24)"
is "$(qerr "SELECT pay_purchase(amount => '99999999999999.99 USD', card => pay_card('4111111111111111', 12, $fy))")" 22Y26 "a 16-digit amount is refused at the call (22Y26)"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', card => pay_card('41111111111111110', 12, $fy))")" 22Y10 "a 17-digit card number is refused at the call (22Y10)"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{\"dataDescriptor\": \"COMMON.ACCEPT.INAPP.PAYMENT\", \"dataValue\": \"\"}')")" 22Y22 "empty opaque data is refused at the call (22Y22)"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', card => pay_card('4111111111111111', 12, $fy), idempotency_key => '')")" 22Y25 "an empty idempotency key is refused at the call (22Y25)"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M")" "$before" "none of them queued an operation"

tap_done
