#!/usr/bin/env bash
# The log of exchanges with the gateway (payments.gateway_exchanges) keeps
# no personal data of a customer from the gateway's replies: the settlement
# check's transaction lists (which belong to no operation, so
# pay_erase_customer cannot find them) and the question a refund asks
# after the erasure (before: both kept the customer's name, and the latter
# the email and address again).  The replies are still logged, with those
# values masked.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-erased-exchanges"
trap sim_stop EXIT
sim_start "$SIMDIR"
merchant_on_simulator erased-exchanges
q() { as_merchant "$@"; }
year=$(($(date +%Y) + 3))
PII='Secretlace|Privacy Lane|secret-ada'
pii_exchanges() {
	q -c "SELECT count(*) FROM payments.gateway_exchanges x WHERE x.merchant_id = $M AND x::text ~* '$PII'"
}
cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'secret-ada@example.com', name => 'Ada Secretlace', billing => '{\"first_name\": \"Ada\", \"last_name\": \"Secretlace\", \"address\": \"77 Privacy Lane\", \"zip\": \"10001\"}')")
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '11.11 USD', card => pay_card('4111111111111111', 12, $year, '123'), customer_id => $cid)")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "the customer's purchase succeeds"
sim_ctl POST /settle >/dev/null
for _ in $(seq 100); do
	[ "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($pid)")" = t ] && break
	sleep 0.2
done
is "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($pid)")" t "the worker's settlement check learns it settled"
like "$(q -c "SELECT string_agg(response_masked, ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL AND request_type = 'getTransactionListRequest'")" \
	'"lastName":"\(personal\)"' "the transaction list the check read is logged, the customer's name masked"
q -c "SELECT customer_id FROM pay_erase_customer($cid)" >/dev/null
is "$(pii_exchanges)" 0 "right after pay_erase_customer no exchange holds the customer's name, address or email"
op=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid, amount => '1.00 USD')")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
for _ in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" = succeeded ] && break
	sleep 0.1
done
is "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" succeeded \
	"a refund of the erased customer's payment succeeds"
like "$(q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $op")" \
	'^getTransactionDetailsRequest,createTransactionRequest$' "it asked about the transaction first"
is "$(pii_exchanges)" 0 "after the refund, still no exchange holds the erased customer's personal data"
tap_done
