#!/usr/bin/env bash
# The log of exchanges with the gateway (payments.gateway_exchanges) keeps
# no personal data of a customer from the gateway's replies: the settlement
# check's transaction lists (which belong to no operation, so
# pay_erase_customer cannot find them) and the question a refund asks
# after the erasure (before: both kept the customer's name, and the latter
# the email and address again).  The replies are still logged, with those
# values masked.
# Nor does anything else keep what the merchant wrote about the customer:
# after pay_erase_customer no payment, operation, event or audit row holds
# the description, order_ref and metadata of its payments or a refund's
# reason (before: all kept in payments and operations, metadata copied into
# events, and all of it written in clear into the append-only audit log),
# nor the details of a guest purchase made under its email without
# customer_id (before: out of the erasure's reach).  Its payments go on:
# they settle and are refunded after the erasure.
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
# pii_in TABLE: its rows of the merchant that hold the customer's personal data
pii_in() {
	q -c "SELECT count(*) FROM payments.$1 x WHERE x.merchant_id = $M AND x::text ~* '$PII'"
}
# op_done OPERATION: true once the worker recorded the gateway's answer to
# it (30 s at most)
op_done() {
	for _ in $(seq 300); do
		[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $1")" = succeeded ] && return 0
		sleep 0.1
	done
	return 1
}
cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'secret-ada@example.com', name => 'Ada Secretlace', billing => '{\"first_name\": \"Ada\", \"last_name\": \"Secretlace\", \"address\": \"77 Privacy Lane\", \"zip\": \"10001\"}')")
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '11.11 USD', card => pay_card('4111111111111111', 12, $year, '123'), customer_id => $cid,
	description => 'Birthday gift for Ada Secretlace', order_ref => 'secret-ada-order-1',
	metadata => '{\"deliver_to\": \"77 Privacy Lane\"}')")
is "$(q -c "SELECT status FROM pay_wait($pid, '30 s')")" succeeded "the customer's purchase succeeds"
sim_ctl POST /settle >/dev/null
for _ in $(seq 150); do	# (30 s at most)
	[ "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($pid)")" = t ] && break
	sleep 0.2
done
is "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($pid)")" t "the worker's settlement check learns it settled"
like "$(q -c "SELECT string_agg(response_masked, ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL AND request_type = 'getTransactionListRequest'")" \
	'"lastName":"\(personal\)"' "the transaction list the check read is logged, the customer's name masked"
op0=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid, amount => '1.00 USD', reason => 'Ada Secretlace sent it back')")
ok "$(passed op_done "$op0")" "a refund whose reason names the customer succeeds"
# a guest checkout under the customer's email: no customer_id
gid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '22.22 USD', card => pay_card('4111111111111111', 12, $year, '123'),
	customer => '{\"email\": \"Secret-Ada@example.com\", \"first_name\": \"Ada\", \"last_name\": \"Secretlace\", \"address\": \"77 Privacy Lane\"}',
	description => 'Guest order of Ada Secretlace', metadata => '{\"note\": \"secret-ada\"}')")
is "$(q -c "SELECT status FROM pay_wait($gid, '30 s')")" succeeded "a guest purchase under the customer's email succeeds"
ok "$( [ "$(pii_in payments)" -ge 2 ] && [ "$(pii_in operations)" -ge 1 ] && [ "$(pii_in events)" -ge 1 ] && echo 0 || echo 1)" \
	"before the erasure payments, operations and events hold what the merchant wrote about the customer"
q -c "SELECT customer_id FROM pay_erase_customer($cid)" >/dev/null
is "$(pii_exchanges)" 0 "right after pay_erase_customer no exchange holds the customer's name, address or email"
is "$(pii_in payments)" 0 "no payment holds its description, order_ref, metadata or billing details (the guest purchase's neither)"
is "$(pii_in operations)" 0 "no operation holds the refund's reason"
is "$(pii_in events)" 0 "no event holds a copy of the payments' metadata"
is "$(pii_in audit_log)" 0 "the audit log never held any of it"
is "$(q -c "SELECT string_agg(concat_ws('|', customer_id = $cid, amount, status, gateway_trans_id IS NOT NULL), ',' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M")" \
	"t|11.11 USD|partially_refunded|t,t|22.22 USD|succeeded|t" \
	"the payments keep the financial record; the guest purchase is the erased customer's now"
sim_ctl POST /settle >/dev/null
for _ in $(seq 150); do	# (30 s at most)
	[ "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($gid)")" = t ] && break
	sleep 0.2
done
is "$(q -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($gid)")" t "the guest purchase settles after the erasure"
op=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid, amount => '1.00 USD')")
ok "$(passed op_done "$op")" "a refund of the erased customer's payment succeeds"
like "$(q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $op")" \
	'^getTransactionDetailsRequest,createTransactionRequest$' "it asked about the transaction first"
op2=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $gid, amount => '2.00 USD')")
ok "$(passed op_done "$op2")" "so does a refund of the guest purchase"
is "$(q -c "SELECT concat_ws('|', status, amount_refunded) FROM pay_get_payment($pid)") $(q -c "SELECT concat_ws('|', status, amount_refunded) FROM pay_get_payment($gid)")" \
	"partially_refunded|2.00 USD partially_refunded|2.00 USD" "both payments count their refunds"
is "$(pii_exchanges)" 0 "after the refunds, still no exchange holds the erased customer's personal data"
[ "$(pii_exchanges)" = 0 ] || comment "$(q -c "SELECT concat_ws(' ', exchange_id, operation_id, request_type) FROM payments.gateway_exchanges x WHERE x.merchant_id = $M AND x::text ~* '$PII'")"
is "$(pii_in payments)$(pii_in operations)$(pii_in events)$(pii_in audit_log)" 0000 "nor any payment, operation, event or audit row"
tap_done
