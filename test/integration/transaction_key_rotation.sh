#!/usr/bin/env bash
# The life of payments across a rotation of the gateway's transaction key
# (same account, same api_login_id): the merchant makes a new key in the
# gateway's console, which disables the old one at once, and configures it
# here a while later.  Meanwhile: a purchase whose reply was lost just
# before the rotation (the gateway charged it), purchases made after it, a
# capture of an authorization made before it.  None may be declined,
# failed or charged twice: they wait as account errors (E00007) without
# spending attempts, and the new key sends each once; the lost one is
# answered by the gateway's duplicate check with its first transaction.
# Then a week later, after the batches settled, payments made under the
# old key are refunded and a card saved under it is charged with the new.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-key-rotation"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	unpark || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
card="pay_card('4111111111111111', 12, $Y, '123')"
LOGIN=krLogin KEY1=krKey1krKey1krK1 KEY2=krKey2krKey2krK2
configure() {	# configure KEY: this merchant's gateway, the account krLogin with KEY
	q -c "SELECT payments.pay_configure_gateway(api_login_id => '$LOGIN', transaction_key => '$1', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 2000, merchant_id => $M)" >/dev/null
}
sim_key() { sim_ctl POST /merchants "{\"name\":\"$LOGIN\",\"transactionKey\":\"$1\"}" >/dev/null; }
M=$(q -c "INSERT INTO payments.merchants (name) VALUES ('key rotation') RETURNING merchant_id")
sim_key "$KEY1"
configure "$KEY1"
settle() { sim_ctl POST /settle >/dev/null; }
day() { sim_ctl POST /clock "{\"advanceSeconds\":$(($1 * 86400))}" >/dev/null; }
pay() {	# pay KIND AMOUNT: a payment, waited for; prints its id
	local id
	id=$(as_merchant -c "SELECT payment_id FROM pay_$1(amount => '$2', card => $card)")
	as_merchant -c "SELECT status FROM pay_wait($id, '20 s')" >/dev/null
	echo "$id"
}
ops() {	# ops PAYMENT: "kind status attempts" of its operations, in order
	q -c "SELECT string_agg(concat_ws(' ', kind, status, attempts), ', ' ORDER BY operation_id)
		FROM payments.operations WHERE merchant_id = $M AND payment_id = $1"
}

# Before the rotation: a purchase, an authorization, a saved card.
p1=$(pay purchase '41.00 USD')
p2=$(pay authorize '42.00 USD')
cid=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'kr@example.com')")
pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('5424000000000015', 12, $Y, '123'), validation_mode => 'none', make_default => true)")
is "$(as_merchant -c "SELECT status FROM pay_get_payment($p1)") $(as_merchant -c "SELECT status FROM pay_get_payment($p2)") $(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')")" \
	"succeeded requires_capture active" "under the first key: a purchase succeeded, an authorization, a saved card"

# A purchase the gateway charges, its reply lost; held before its resend.
park_after_send "$M" "'unknown'"
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
p3=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '43.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $p3")" = unknown ] && break; sleep 0.1; done
is "$(ops "$p3") | $(sim_ledger_count "P$TAG$p3" charge)" "purchase unknown 1 | 1" \
	"a purchase whose reply was lost is unknown here and charged at the gateway"

# The key is rotated at the gateway: the first one stops working at once.
sim_key "$KEY2"
unpark
q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_id = $p3" -c "SELECT payments._wake_at_commit()" >/dev/null
# made after the rotation, before the new key is configured here
p4=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '44.00 USD', card => $card)")
c2=$(as_merchant -c "SELECT operation_id FROM pay_capture(payment_id => $p2)")
p5=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '45.00 USD', payment_method_id => $pm)")
# the worker tries them with the disabled key: an account error, not a decline
for i in $(seq 120); do [ "$(q -c "SELECT state FROM payments.pay_gateway_status(merchant_id => $M)")" = failing ] && break; sleep 0.25; done
is "$(q -c "SELECT state FROM payments.pay_gateway_status(merchant_id => $M)")" failing \
	"the disabled key makes the merchant's gateway failing (an account error)"
sleep 2
is "$(as_merchant -c "SELECT string_agg(status, ' ' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p3, $p4, $p2, $p5)")" \
	"requires_capture unknown pending pending" \
	"meanwhile nothing is declined or failed: the lost purchase stays unknown, the new ones pending, the authorization uncaptured"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND (status IN ('failed', 'dead', 'declined') OR attempts > 1)")" 0 \
	"and no operation spent its attempts or became a dead letter"
is "$(sim_ledger_count "P$TAG$p3" charge) $(sim_ledger "P$TAG$p4") $(sim_ledger "P$TAG$p5")" "1  " \
	"the gateway has charged only the lost purchase"

# The new key is configured here: everything goes through once.
configure "$KEY2"
for p in "$p3" "$p4" "$p5"; do as_merchant -c "SELECT status FROM pay_wait($p, '20 s')" >/dev/null; done
op_is "$c2" succeeded || true
is "$(as_merchant -c "SELECT string_agg(status, ' ' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p2, $p3, $p4, $p5)")" \
	"succeeded succeeded succeeded succeeded" \
	"with the new key: the capture, the lost purchase and both new purchases succeed"
is "$(sim_ledger_count "P$TAG$p3" charge) $(sim_ledger_count "P$TAG$p4" charge) $(sim_ledger_count "P$TAG$p5" charge)" "1 1 1" \
	"each is charged once at the gateway (the lost one not again)"
ledger_ids=$(sim_ledger_trans_ids "P$TAG$p3" charge)
is "$(as_merchant -c "SELECT gateway_trans_id FROM pay_get_payment($p3)")" "$ledger_ids" \
	"the lost purchase is recorded under the gateway's one transaction"
is "$(q -c "SELECT state FROM payments.pay_gateway_status(merchant_id => $M)")" ok "the gateway is no longer failing"

# A week later, after settlement: refunds of payments made under the old key.
settle
day 7
wait_for "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2, $p3) AND settled_at IS NOT NULL" 3 60 >/dev/null
is "$(as_merchant -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2, $p3) AND settled_at IS NOT NULL")" 3 \
	"the settlement of payments made and captured under either key is learned"
r1=$(as_merchant -c "SELECT operation_id FROM pay_refund(payment_id => $p1, amount => '11.00 USD')")
r3=$(as_merchant -c "SELECT operation_id FROM pay_refund(payment_id => $p3)")
op_is "$r1" succeeded || true
op_is "$r3" succeeded || true
is "$(refund_ledger "$p1")|$(refund_ledger "$p3")" "refund 11.00;|refund 43.00;" \
	"a week later, a payment made under the old key and the lost one are refunded once each, with the new key"
p6=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '46.00 USD', payment_method_id => $pm)")
is "$(as_merchant -c "SELECT status FROM pay_wait($p6, '20 s')") $(sim_ledger_count "P$TAG$p6" charge)" "succeeded 1" \
	"the card saved under the old key is charged with the new one"
# 2. A reply lost, the key rotated at the gateway, and the new key
#    configured here only the next morning, past the gateway's duplicate
#    window (8 hours): sent again then, the purchase would be charged a
#    second time.  It must be looked up, with the new key, and recorded
#    under its one transaction.
park_after_send "$M" "'unknown'"
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
p7=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '47.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $p7")" = unknown ] && break; sleep 0.1; done
sim_key "$KEY1"	# rotated again: the key configured here stops working
unpark
# the night passes, here and at the gateway, with the worker failing
sim_ctl POST /clock '{"advanceSeconds":32400}' >/dev/null
q -c "UPDATE payments.operations SET first_sent_at = now() - interval '9 hours', next_attempt_at = now()
	WHERE merchant_id = $M AND payment_id = $p7" -c "SELECT payments._wake_at_commit()" >/dev/null
for i in $(seq 120); do [ "$(q -c "SELECT state FROM payments.pay_gateway_status(merchant_id => $M)")" = failing ] && break; sleep 0.25; done
is "$(q -c "SELECT state FROM payments.pay_gateway_status(merchant_id => $M)") $(ops "$p7") $(sim_ledger_count "P$TAG$p7" charge)" \
	"failing purchase unknown 1 1" \
	"2: after the second rotation the lost purchase waits unknown, its attempts unspent, charged once at the gateway"
configure "$KEY1"
is "$(as_merchant -c "SELECT status FROM pay_wait($p7, '30 s')")" succeeded \
	"2: configured the next morning, the lost purchase is found and recorded succeeded"
is "$(sim_ledger_count "P$TAG$p7" charge)" 1 "2: past the duplicate window it is not charged again"
x=$(q -c "SELECT string_agg(e.request_type, ',' ORDER BY e.exchange_id) FROM payments.gateway_exchanges e
	JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $p7")
comment "2: the lost purchase's exchanges: $x"
is "$(tr ',' '\n' <<<"$x" | grep -c '^createTransactionRequest$')" 1 "2: it was sent once, then only asked about"
is "$(as_merchant -c "SELECT gateway_trans_id FROM pay_get_payment($p7)")" "$(sim_ledger_trans_ids "P$TAG$p7" charge)" \
	"2: under the gateway's one transaction"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status <> 'succeeded'")" 0 \
	"every operation of the merchant ended succeeded"
tap_done
