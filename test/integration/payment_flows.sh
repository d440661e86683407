#!/usr/bin/env bash
# Every payment flow end to end: SQL API -> COMMIT -> background worker ->
# Authorize.Net simulator (over HTTPS, certificate verified) -> result,
# checked in the database and against the simulator's own ledger.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-flows"
trap sim_stop EXIT
sim_start "$SIMDIR"

# This test's own merchant keeps its rows apart from other tests'.
merchant_on_simulator flows

q() { as_merchant "$@"; }
qerr() { sqlstate_of "$1"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"

# 1. purchase
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '12.34 USD', card => $card, description => 'book')")
st=$(q -c "SELECT status FROM pay_wait($pid, '10 s')")
is "$st" succeeded "a purchase is approved"
row=$(q -c "SELECT amount_captured::text || '|' || (gateway_trans_id IS NOT NULL) || '|' || (auth_code IS NOT NULL) || '|' || card_last4 FROM pay_get_payment($pid)")
is "$row" "12.34 USD|true|true|1111" "the payment records capture, gateway transaction, auth code and last four"
is "$(sim_ledger_count "P$TAG$pid" charge)" 1 "the simulator charged it exactly once"
is "$(q -c "SELECT count(*) FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid")" 0 "the sealed card is erased once the gateway answered"
masked=$(q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid")
if grep -q '4111111111111111\|"123"' <<<"$masked"; then ok 1 "the exchange log holds no card number or CVV"; else ok 0 "the exchange log holds no card number or CVV"; fi
like "$masked" '"cardNumber":"XXXX1111"' "the exchange log shows the masked card"
like "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $pid")" \
	'payment.pending,operation.queued,operation.sending,operation.succeeded,payment.succeeded' "every transition wrote an event"

# 2. decline (sandbox trigger: billing zip 46282) is data, not an exception
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD', card => $card, customer => '{\"zip\": \"46282\", \"last_name\": \"Doe\"}')")
row=$(q -c "SELECT status || '|' || decline_code || '|' || decline_reason FROM pay_wait($pid, '10 s')")
is "$row" "failed|2|This transaction has been declined." "a decline is a failed payment with its code and reason"
is "$(sim_ledger_count "P$TAG$pid" charge)" 0 "nothing was charged for the decline"

# 3. authorize, then capture part of it
pid=$(q -c "SELECT payment_id FROM pay_authorize(amount => '100.00 USD', card => $card)")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" requires_capture "an authorization waits for capture"
q -c "SELECT pay_capture(payment_id => $pid, amount => '60.00 USD')" >/dev/null
row=$(q -c "SELECT status || '|' || amount_captured FROM pay_wait($pid, '10 s')")
is "$row" "succeeded|60.00 USD" "a partial capture captures 60.00 of 100.00"
is "$(sim_ledger_count "P$TAG$pid" capture)" 1 "the simulator captured once"
is "$(qerr "SELECT pay_capture(payment_id => $pid)")" 22Y20 "a second capture is refused (22Y20)"
auth2=$(q -c "SELECT payment_id FROM pay_authorize(amount => '10.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($auth2, '10 s')" >/dev/null
is "$(qerr "SELECT pay_capture(payment_id => $auth2, amount => '10.01 USD')")" 22Y21 "capturing more than authorized is refused (22Y21)"
is "$(qerr "SELECT pay_capture(payment_id => $auth2, amount => '10.00 EUR')")" 22Y03 "capturing in another currency is refused (22Y03)"

# 3b. while one operation of a payment is on its way, another is refused
#     (the check compared the whole operation row with NULL, which a row
#     with any NULL column never is, so it never refused anything)
auth3=$(q -c "SELECT payment_id FROM pay_authorize(amount => '7.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($auth3, '10 s')" >/dev/null
busy=$(as_merchant -v VERBOSITY=verbose -c "BEGIN" -c "SELECT 1 FROM pay_capture(payment_id => $auth3)" \
	-c "SELECT 1 FROM pay_void(payment_id => $auth3)" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' || true)
is "$busy" 22Y20 "a void while a capture is queued is refused (22Y20)"
busy=$(as_merchant -v VERBOSITY=verbose -c "BEGIN" -c "SELECT 1 FROM pay_void(payment_id => $auth3)" \
	-c "SELECT 1 FROM pay_capture(payment_id => $auth3)" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' || true)
is "$busy" 22Y20 "and a capture while a void is queued (22Y20)"

# 4. void an authorization; capture after void is refused
q -c "SELECT pay_void(payment_id => $auth2)" >/dev/null
is "$(q -c "SELECT status FROM pay_wait($auth2, '10 s')")" canceled "a voided authorization is canceled"
is "$(sim_ledger_count "P$TAG$auth2" void)" 1 "the simulator voided it"
is "$(qerr "SELECT pay_capture(payment_id => $auth2)")" 22Y20 "capture after void is refused (22Y20)"
is "$(qerr "SELECT pay_void(payment_id => 999999999)")" PT404 "an unknown payment is PT404"

# 5. refund before settlement: full refund becomes a void
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
op=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid)")
row=$(q -c "SELECT status || '|' || amount_refunded FROM pay_wait($pid, '10 s')")
is "$row" "refunded|10.00 USD" "the payment is refunded"
is "$(q -c "SELECT status || '|' || via_void FROM pay_payment_operations($pid) WHERE operation_id = $op")" "succeeded|true" \
	"the worker found the capture unsettled and sent the full refund as a void"
is "$(sim_ledger_count "P$TAG$pid" void)" 1 "the simulator shows a void, not a refund"

# 6. partial refund before settlement waits for settlement, then goes out
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '50.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
rop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid, amount => '20.00 USD', reason => 'damaged')")
for i in $(seq 100); do
	st=$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $rop")
	[ "$st" = waiting_settlement ] && break
	sleep 0.1
done
is "$st" waiting_settlement "a partial refund of an unsettled capture waits for settlement"
sim_ctl POST /settle >/dev/null
row=$(q -c "SELECT status || '|' || amount_refunded FROM pay_wait($pid, '20 s')")
is "$row" "partially_refunded|20.00 USD" "after settlement the worker sends it (partially refunded)"
is "$(sim_ledger_count "R$TAG$rop" refund)" 1 "the simulator refunded 20.00 once"
is "$(qerr "SELECT pay_refund(payment_id => $pid, amount => '30.01 USD')")" 22Y21 "refunding more than is left is refused (22Y21)"
q -c "SELECT pay_refund(payment_id => $pid, amount => '15.00 USD')" >/dev/null
q -c "SELECT pay_refund(payment_id => $pid, amount => '15.00 USD')" >/dev/null
row=$(q -c "SELECT status || '|' || amount_refunded FROM pay_wait($pid, '20 s')")
is "$row" "refunded|50.00 USD" "two equal partial refunds complete the refund (not taken for duplicates)"
is "$(qerr "SELECT pay_void(payment_id => $pid)")" 22Y20 "void after refund is refused (22Y20)"

# 7. idempotency
k="order-$RANDOM$RANDOM"
a=$(q -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', card => $card, idempotency_key => '$k')")
b=$(q -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', card => $card, idempotency_key => '$k')")
is "$b" "$a" "the same key with the same parameters returns the original payment"
is "$(qerr "SELECT pay_purchase(amount => '7.01 USD', card => $card, idempotency_key => '$k')")" PT409 "the same key with other parameters is PT409"
k2="race-$RANDOM$RANDOM"
racers=()
for i in 1 2 3 4 5 6; do
	q -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $card, idempotency_key => '$k2')" > "$SIMDIR/race.$i" &
	racers+=($!)
done
wait "${racers[@]}"
is "$(sort -u "$SIMDIR"/race.* | wc -l)" 1 "six concurrent calls with one key return one payment"
p=$(cat "$SIMDIR/race.1")
q -c "SELECT status FROM pay_wait($p, '10 s')" >/dev/null
is "$(sim_ledger_count "P$TAG$p" charge)" 1 "and the simulator charged it once"

# 8. Accept.js opaque data
nonce=$(sim_ctl POST /nonces '{"creditCard":{"cardNumber":"5424000000000015","expirationDate":"2030-12","cardCode":"999"}}')
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '8.00 USD', opaque_data => '$nonce'::jsonb)")
row=$(q -c "SELECT status || '|' || card_last4 FROM pay_wait($pid, '10 s')")
is "$row" "succeeded|0015" "an Accept.js nonce pays, and the last four come back from the gateway"

# 9. rollback sends nothing
inv=$(q -c "BEGIN" -c "SELECT invoice_number FROM pay_purchase(amount => '9.99 USD', card => $card)" -c "ROLLBACK" | sed -n 1p)
sleep 1.5
is "$(sim_ledger_count "$inv" charge)" 0 "a rolled-back purchase is never sent"
is "$(qerr "BEGIN; SELECT pay_wait((pay_purchase(amount => '1.00 USD', card => $card)).payment_id, '1 s')")" 55000 "pay_wait in the creating transaction is refused (55000)"

tap_done
