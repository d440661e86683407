#!/usr/bin/env bash
# Refunds the gateway holds for review (responseCode 4; the simulator holds
# a refund of 9252.00 or 9253.00, FDSPendingReview) and decides later
# (updateHeldTransactionRequest, or a void of the held refund).  A held
# refund is in_review: its amount is reserved (no second refund can take
# it) but not refunded; the worker's review check (every
# payments.settlement_check_interval) learns what the gateway decided:
# approved, the amount is refunded (amount_refunded, partially_refunded or
# refunded, one event); declined or voided, nothing is refunded and the
# amount can be refunded again.  Before: the held refund was recorded
# succeeded and never looked at again, and its amount never reached
# amount_refunded, whatever the gateway decided.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-held-refunds"
trap sim_stop EXIT
sim_start "$SIMDIR"

merchant_on_simulator held_refunds

q() { as_merchant "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
op_final() {	# op_final OPERATION_ID: wait until the worker is done sending it
	wait_sql "(SELECT status NOT IN ('queued', 'sending', 'unknown') FROM payments.operations WHERE merchant_id = $M AND operation_id = $1)"
}
AUTH="\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"}"
op_trans() { q -c "SELECT gateway_trans_id FROM payments.operations WHERE merchant_id = $M AND operation_id = $1"; }
decide() {	# decide OPERATION_ID approve|decline: the gateway's review of a held refund
	sim_api "{\"updateHeldTransactionRequest\":{$AUTH,\"heldTransactionRequest\":{\"action\":\"$2\",\"refTransId\":\"$(op_trans "$1")\"}}}" >/dev/null
}
void_at_gateway() {	# void_at_gateway OPERATION_ID: the merchant voids the held refund by hand
	sim_api "{\"createTransactionRequest\":{$AUTH,\"transactionRequest\":{\"transactionType\":\"voidTransaction\",\"refTransId\":\"$(op_trans "$1")\"}}}" >/dev/null
}
pay() {		# pay AMOUNT: a purchase, waited for, settled at the gateway; its id
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '$1 USD', card => $card)")
	q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
refund() {	# refund PAYMENT_ID AMOUNT: the refund operation's id
	q -c "SELECT operation_id FROM pay_refund(payment_id => $1, amount => '$2 USD')"
}
sqlstate_of_refund() {	# sqlstate_of_refund PAYMENT_ID AMOUNT
	sqlstate_of "SELECT pay_refund(payment_id => $1, amount => '$2 USD')"
}
state() { q -c "SELECT status || '|' || amount_refunded FROM pay_get_payment($1)"; }
events() {	# the payment's events after it succeeded
	q -c "SELECT coalesce(string_agg(event_type || ' ' || (data ->> 'amount_refunded'), ',' ORDER BY event_id), '') FROM (SELECT * FROM payments.events WHERE merchant_id = $M AND payment_id = $1 AND event_type LIKE 'payment.%' AND event_id > (SELECT max(event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $1 AND event_type = 'payment.succeeded')) e"
}
settle() { sim_ctl POST /settle >/dev/null; }
clock() { sim_ctl POST /clock "{\"advanceSeconds\":$1}" >/dev/null; }
# 9500.50 is no simulator trigger; a refund of 9252.00 is held
pa=$(pay 9500.50); pb=$(pay 9500.50); pc=$(pay 9500.50); pd=$(pay 9500.50); pf=$(pay 9500.50)
# 9252.00 captured of an authorization (a charge of 9252.00 would be held)
pe=$(q -c "SELECT payment_id FROM pay_authorize(amount => '9500.50 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pe, '20 s')" >/dev/null
q -c "SELECT pay_capture(payment_id => $pe, amount => '9252.00 USD')" >/dev/null
q -c "SELECT status FROM pay_wait($pe, '20 s')" >/dev/null
settle

###########################################################################
# 1. Held, then approved: the amount is refunded once.
op=$(refund "$pa" 9252.00)
ok "$(passed op_final "$op")" "1: the refund was answered"
is "$(q -c "SELECT status || '|' || response_code FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" "in_review|4" \
	"1: the refund held by the gateway is in_review (before: succeeded)"
is "$(state "$pa")" "succeeded|0.00 USD" "1: nothing is refunded while it is held"
is "$(sim_ledger "R$TAG$op")" "held 9252.00" "1: the gateway holds it"
sleep 2
is "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" in_review \
	"1: still in_review after review checks while the gateway has not decided"
decide "$op" approve
ok "$(passed op_is "$op" succeeded)" "1: approved at the gateway, the refund succeeds"
ok "$(passed wait_sql "(SELECT amount_refunded = '9252.00 USD' FROM pay_get_payment($pa))")" \
	"1: its amount reaches amount_refunded (before: never)"
is "$(state "$pa")" "partially_refunded|9252.00 USD" "1: the payment is partially_refunded"
sleep 2
is "$(events "$pa")" "payment.partially_refunded 9252.00 USD" "1: one payment event, written once"
is "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND operation_id = $op AND event_type LIKE 'operation.%'")" \
	"operation.queued,operation.sending,operation.in_review,operation.succeeded" "1: the refund's events"
is "$(sim_ledger "R$TAG$op")" "held 9252.00,refund 9252.00" "1: the gateway refunded 9252.00 once"
is "$(sqlstate_of_refund "$pa" 248.51)" 22Y21 "1: the rest is 248.50"
op2=$(refund "$pa" 248.50)
ok "$(passed op_is "$op2" succeeded)" "1: and can be refunded"
is "$(state "$pa")" "refunded|9500.50 USD" "1: the payment is refunded"

###########################################################################
# 2. While a refund is held its amount is reserved: no second refund can
#    take it.  Declined at the gateway: nothing refunded, refundable again.
op=$(refund "$pb" 9252.00)
ok "$(passed op_is "$op" in_review)" "2: a refund held for review"
is "$(sqlstate_of_refund "$pb" 248.51)" 22Y21 "2: a second refund over the held amount is refused (held + new > captured)"
is "$(sqlstate_of_refund "$pb" 9500.50)" 22Y21 "2: so is a refund of the whole payment"
like "$(as_merchant -c "SELECT pay_refund(payment_id => $pb, amount => '9500.50 USD')" 2>&1 | sed -n 's/^DETAIL: *//p')" \
	'9252.00 USD is refunded or being refunded\. 9252\.00 USD of it is in refunds the gateway holds for review' \
	"2: saying what is held back"
is "$(sqlstate_of "SELECT pay_void(payment_id => $pb)")" 22Y20 "2: the payment cannot be voided while it has a held refund"
decide "$op" decline
ok "$(passed op_is "$op" failed)" "2: declined at the gateway, the refund fails"
is "$(q -c "SELECT reason_code FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" 254 "2: with the gateway's reason"
is "$(state "$pb")" "succeeded|0.00 USD" "2: nothing is refunded"
is "$(events "$pb")" "" "2: no payment event"
op2=$(refund "$pb" 9500.50)
ok "$(passed op_is "$op2" succeeded)" "2: the whole amount can be refunded again"
is "$(state "$pb")" "refunded|9500.50 USD" "2: and is"

###########################################################################
# 3. Voided at the gateway while held: nothing refunded, refundable again.
op=$(refund "$pc" 9252.00)
ok "$(passed op_is "$op" in_review)" "3: a refund held for review"
void_at_gateway "$op"
ok "$(passed op_is "$op" failed)" "3: voided at the gateway, the refund fails"
like "$(q -c "SELECT last_error FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" \
	'held for review voided: nothing was refunded' "3: saying so"
is "$(state "$pc")" "succeeded|0.00 USD" "3: nothing is refunded"
is "$(sqlstate_of_refund "$pc" 9500.51)" 22Y21 "3: the captured amount is the limit again"
op2=$(refund "$pc" 9500.50)
ok "$(passed op_is "$op2" succeeded)" "3: the whole amount can be refunded again"

###########################################################################
# 4. The worker restarts while a refund is held, and the gateway decides
#    only days later: the review check (from the database, not from
#    memory) still resolves it, once.
op=$(refund "$pd" 9252.00)
ok "$(passed op_is "$op" in_review)" "4: a refund held for review"
ok "$(passed restart_worker)" "4: the worker restarted"
clock $((5 * 86400)); settle
sleep 2
is "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" in_review \
	"4: still in_review after the restart and five days"
decide "$op" approve
ok "$(passed wait_sql "(SELECT amount_refunded = '9252.00 USD' FROM pay_get_payment($pd))")" "4: approved five days later, it is refunded"
sleep 2
is "$(state "$pd")|$(events "$pd")" "partially_refunded|9252.00 USD|payment.partially_refunded 9252.00 USD" "4: once"
clock $((-5 * 86400))

###########################################################################
# 5. A held refund of the whole payment, approved: refunded.
op=$(refund "$pe" 9252.00)
ok "$(passed op_is "$op" in_review)" "5: a full refund held for review"
is "$(sqlstate_of_refund "$pe" 0.01)" 22Y21 "5: nothing else can be refunded meanwhile"
decide "$op" approve
ok "$(passed wait_sql "(SELECT status = 'refunded' FROM pay_get_payment($pe))")" "5: approved, the payment is refunded"
is "$(state "$pe")|$(events "$pe")" "refunded|9252.00 USD|payment.refunded 9252.00 USD" "5: with one event"

###########################################################################
# 6. The reply that held the refund is lost (the connection is reset after
#    the gateway processed it): the identical resend is answered as a
#    duplicate, and the question about the original finds it held.  It is
#    in_review as when the reply says so (before: unknown, asked again and
#    again until its attempts ran out), and the gateway held it once.
sim_ctl POST /faults '{"type":"reset","count":1,"requestType":"createTransactionRequest"}' >/dev/null
op=$(refund "$pf" 9252.00)
ok "$(passed op_is "$op" in_review)" "6: a held refund whose reply was lost is in_review"
sim_ctl DELETE /faults >/dev/null
like "$(q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $op")" \
	'createTransactionRequest,.*createTransactionRequest,getTransactionDetailsRequest$' "6: found by the question after the duplicate reply"
is "$(sim_ledger "R$TAG$op")" "held 9252.00" "6: the gateway holds it once"
decide "$op" approve
ok "$(passed wait_sql "(SELECT amount_refunded = '9252.00 USD' FROM pay_get_payment($pf))")" "6: approved, it is refunded"

tap_done
