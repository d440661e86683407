#!/usr/bin/env bash
# A dead letter that may have reached the gateway (its request was read and
# processed, the connection reset: outcome unknown, attempts ran out) is
# settled by the owner with what the gateway's console shows
# (pay_resolve_dead_letter), recorded as the gateway's answer would be.
# Before, nothing could: the payment stayed unknown for good, and a
# subscription invoice it charged stayed open, neither paid nor in dunning.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-resolve"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
q() { as_merchant "$@"; }
cleanup() {
	qo -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
card="pay_card('4111111111111111', 12, $Y, '123')"
# every attempt spent at once: one unknown outcome makes a dead letter
qo -c "ALTER SYSTEM SET payments.max_attempts = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 1)" "the worker goes by a budget of one attempt"
# reset N: the next N transaction requests are processed (charged), then
# their connection is reset before the answer
reset() { sim_ctl POST /faults "{\"type\":\"reset\",\"count\":$1,\"process\":true,\"requestType\":\"createTransactionRequest\"}" >/dev/null; }
dead_op() {	# dead_op PAYMENT_ID: its dead operation's id, once it is dead
	qo -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $1 AND status = 'dead'"
}
wait_dead() { poll_value 30 dead_op "$1"; }
# resolve OPERATION_ID OUTCOME [TRANS_ID]: the owner's call; prints the
# operation's status, or the error's SQLSTATE
resolve() {
	qo -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		-c "SELECT status FROM payments.pay_resolve_dead_letter($M, $1, '$2'${3:+, transaction_id => '$3'})" 2>&1 |
		sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p; /^[a-z_]*$/p' | head -1
}
status_of() { q -c "SELECT status FROM pay_get_payment($1)"; }
events_of() { qo -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $1"; }
op_done() {	# op_done OPERATION_ID: its status once it is final
	qo -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $1 AND status IN ('succeeded', 'failed', 'dead', 'canceled')"
}

###########################################################################
# 1. A purchase charged at the gateway whose answer was lost: dead, its
#    payment unknown.  Resolved succeeded with the gateway's transaction id,
#    it is succeeded as if the gateway had answered, and a refund of it
#    after settlement goes to the gateway against that transaction.
merchant_on_simulator hr-resolve1 2000
reset 1
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '12.34 USD', card => $card)")
op=$(wait_dead "$pid")
comment "dead: $(qo -c "SELECT concat_ws(' | ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
is "$(status_of "$pid")|$(sim_ledger "P$TAG$pid")" "unknown|charge 12.34" "1: the purchase is a dead letter, its payment unknown, while the gateway charged it"
tid=$(sim_ledger_trans_ids "P$TAG$pid" charge)
is "$(resolve "$op" succeeded)" 22004 "1: succeeded without the transaction id is refused (22004)"
is "$(resolve "$op" succeeded 0123)" 22023 "1: a transaction id that is not the gateway's digits is refused (22023)"
is "$(resolve "$op" maybe "$tid")" 22023 "1: an outcome not in the list is refused (22023)"
is "$(resolve "$op" succeeded "$tid")" succeeded "1: resolved succeeded with the gateway's transaction id"
is "$(q -c "SELECT concat_ws('|', status, amount_captured, gateway_trans_id) FROM pay_get_payment($pid)")" "succeeded|12.34 USD|$tid" \
	"1: the payment succeeded, with its amount captured and the gateway's transaction"
like "$(events_of "$pid")" "payment\.unknown,operation\.succeeded,payment\.succeeded$" "1: with its operation.succeeded and payment.succeeded events"
is "$(qo -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M AND operation_id = $op")" 0 "1: the sealed card is erased"
audited() { qo -c "SELECT 'yes' FROM payments.audit_log WHERE merchant_id = $M AND table_name = 'payments' AND operation = 'UPDATE' AND new_row->>'payment_id' = '$pid' AND new_row->>'status' = 'succeeded' LIMIT 1"; }
is "$(poll_value 10 audited)" yes "1: the payment's change is in the audit log"
is "$(resolve "$op" succeeded "$tid")" PT404 "1: resolving it again: not a dead letter any more (PT404)"
# refused_with CALL: the owner's call refused, "SQLSTATE message"
refused_with() { qo -v VERBOSITY=verbose -c "SELECT status FROM payments.$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): /\1 /p' | head -1; }
for call in "pay_retry_dead_letter($M, $op)" "pay_discard_dead_letter($M, $op)" "pay_resolve_dead_letter($M, $op, 'failed')"; do
	is "$(refused_with "$call")" "PT404 operation $op of merchant $M is not a dead letter" "1: ${call%%(*} of it: PT404, not a dead letter"
done
is "$(refused_with "pay_retry_dead_letter(0, $op)")" "PT404 operation $op of merchant 0 is not a dead letter" "1: nor is it one of another merchant"
# a NULL id is a missing argument (before: PT404 "operation <NULL> of merchant ...")
is "$(refused_with "pay_retry_dead_letter(NULL, $op)")" "22004 merchant_id is required" "1: a NULL merchant_id is 22004, a missing argument"
is "$(refused_with "pay_discard_dead_letter($M, NULL)")" "22004 operation_id is required" "1: a NULL operation_id is 22004, a missing argument"
sim_ctl POST /settle >/dev/null
rop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid)" || true)
is "$(poll_value 30 op_done "${rop:-0}")" succeeded "1: a refund of it after settlement succeeds"
is "$(sim_ledger "R$TAG${rop:-0}")|$(status_of "$pid")" "refund 12.34|refunded" "1: the gateway refunded its transaction, the payment is refunded"

###########################################################################
# 2. Resolved failed (the gateway shows it declined) and not_charged: the
#    payments fail.  A dead letter that never reached the gateway (reason 19
#    until its attempts ran out) cannot be resolved succeeded.
reset 1
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '20.00 USD', card => $card)")
op=$(wait_dead "$pid")
is "$(resolve "$op" failed)" failed "2: resolved failed"
is "$(q -c "SELECT concat_ws('|', status, decline_code, coalesce(amount_captured::text, 'none')) FROM pay_get_payment($pid)")" "failed|resolved_failed|none" \
	"2: the payment failed (decline_code resolved_failed), nothing captured"
like "$(events_of "$pid")" "payment\.failed$" "2: with its payment.failed event"
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '9019.00 USD', card => $card)")
op=$(wait_dead "$pid")
is "$(resolve "$op" succeeded 4242)" 55000 "2: a dead letter that never reached the gateway cannot be resolved succeeded (55000)"
is "$(resolve "$op" not_charged)|$(status_of "$pid")" "failed|failed" "2: resolved not_charged, its payment failed"
# an authorization: requires_capture, and its capture goes to the gateway
reset 1
pid=$(q -c "SELECT payment_id FROM pay_authorize(amount => '30.00 USD', card => $card)")
op=$(wait_dead "$pid")
is "$(resolve "$op" succeeded "$(sim_ledger_trans_ids "P$TAG$pid" authorization)")|$(status_of "$pid")" "succeeded|requires_capture" \
	"2: an authorization resolved succeeded requires capture"
q -c "SELECT 1 FROM pay_capture(payment_id => $pid)" >/dev/null || true
is "$(q -c "SELECT status FROM pay_wait($pid, '20 s')")|$(sim_ledger "P$TAG$pid")" "succeeded|authorization 30.00,capture 30.00" \
	"2: and its capture is made at the gateway"
# discarding one that may have reached the gateway says what to do instead
reset 1
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '21.00 USD', card => $card)")
op=$(wait_dead "$pid")
like "$(qo -c "SELECT status FROM payments.pay_discard_dead_letter($M, $op)" 2>&1)" "HINT: .*pay_resolve_dead_letter" \
	"2: discarding a dead letter that may have reached the gateway points at pay_resolve_dead_letter"

###########################################################################
# 3. Subscription renewals charged by dead letters: their invoices stay
#    open, neither paid nor in dunning; resolved failed, the invoice goes
#    to dunning; resolved succeeded, it is paid.
merchant_on_simulator hr-resolve3 2000
subscribe() {	# subscribe EMAIL: a customer with a card, subscribed monthly from 2095-05-01; active
	local cid pm sid
	q -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" >/dev/null
	cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => '$1', name => 'Rhea Resolve')")
	pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('4111111111111111', 12, 2030, '123', 'R'), validation_mode => 'none')")
	q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')" >/dev/null
	sid=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $cid, price => '10.00 USD', interval_unit => 'month')")
	q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid), '10 s')" >/dev/null
	echo "$sid"
}
S1=$(subscribe r1@example.com)
S2=$(subscribe r2@example.com)
sub_active() { [ "$(q -c "SELECT count(*) FROM pay_get_subscription($S1) s1, pay_get_subscription($S2) s2 WHERE s1.status = 'active' AND s2.status = 'active'")" = 1 ] && echo yes; }
is "$(poll_value 10 sub_active)" yes "3: both subscriptions are active"
reset 2
q -c "SELECT pay_set_test_clock('2095-06-01 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv_of() { qo -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1 AND period_index = 1"; }
I1=$(inv_of "$S1"); I2=$(inv_of "$S2")
P1=$(qo -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $I1")
P2=$(qo -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $I2")
O1=$(wait_dead "$P1"); O2=$(wait_dead "$P2")
inv_state() { qo -c "SELECT concat_ws('|', i.status, s.status) FROM payments.invoices i JOIN payments.subscriptions s USING (merchant_id, subscription_id) WHERE i.merchant_id = $M AND i.invoice_id = $1"; }
q -c "SELECT pay_set_test_clock('2095-06-05 00:00+00')" >/dev/null
q -c "SELECT pay_run_dunning()" >/dev/null
is "$(inv_state "$I1");$(inv_state "$I2");$(status_of "$P1");$(status_of "$P2")" "open|active;open|active;unknown;unknown" \
	"3: the renewals' charges are dead letters: invoices open, subscriptions active, payments unknown (the stall)"
is "$(resolve "$O1" failed)" failed "3: the first renewal's charge resolved failed"
is "$(inv_state "$I1")" "open|past_due" "3: its invoice goes to dunning (subscription past_due)"
is "$(qo -c "SELECT attempt_count || '|' || (next_attempt_at IS NOT NULL) FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $I1")" "1|true" \
	"3: with its next retry scheduled"
invno=$(qo -c "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $P2")
tid=$(sim_ledger_trans_ids "$invno" charge)
is "$(resolve "$O2" succeeded "$tid")" succeeded "3: the second renewal's charge resolved succeeded with the gateway's transaction id"
is "$(inv_state "$I2");$(status_of "$P2")" "paid|active;succeeded" "3: its invoice is paid, the subscription stays active"
comment "billing events: $(qo -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND (event_type LIKE 'invoice.%' OR event_type LIKE 'subscription.%')")"
###########################################################################
# 4-6. Captures, voids and refunds that became dead letters, resolved with
#    what the gateway shows, and the payment's next step at the gateway
#    over the following days.  "lost N": the next N transaction requests
#    are read but not processed, then their connection is reset (the
#    worker cannot tell: unknown, may have reached the gateway).
merchant_on_simulator hr-resolve4 2000
lost() { sim_ctl POST /faults "{\"type\":\"reset\",\"count\":$1,\"process\":false,\"requestType\":\"createTransactionRequest\"}" >/dev/null; }
days() { sim_ctl POST /clock "{\"advanceSeconds\":$(( $1 * 86400 ))}" >/dev/null; }
paid() {	# paid KIND AMOUNT: a purchase or authorization, waited for; its payment id
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_$1(amount => '$2', card => $card)")
	q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
money() {	# money PAYMENT_ID: status|amount_captured|amount_refunded
	q -c "SELECT concat_ws('|', status, coalesce(amount_captured::text, 'none'), amount_refunded) FROM pay_get_payment($1)"
}
settled() { q -c "SELECT 'yes' FROM pay_get_payment($1) WHERE settled_at IS NOT NULL"; }
settle() {	# settle PAYMENT_ID: the gateway's batch closes; waits for the worker to learn it
	sim_ctl POST /settle >/dev/null
	poll_value 30 settled "$1"
}
sqlstate() { as_merchant -v VERBOSITY=verbose -c "$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | head -1; }
# dead_after FAULT PAYMENT_ID CALL: the next transaction request is reset
# (FAULT reset) or lost, the merchant makes CALL (pay_capture(...) and
# the like); prints its operation's id once it is a dead letter
dead_after() {
	local op
	"$1" 1
	op=$(q -c "SELECT operation_id FROM $3" || true)
	if [ -n "$op" ] && [ "$(wait_dead "$2")" = "$op" ]; then echo "$op"; else echo "not dead: $op"; fi
}
# refund_later DAYS PAYMENT_ID [AMOUNT]: a refund DAYS later at the
# simulator's clock (moved back after); prints the refund's final status;
# what the gateway refunded;money
refund_later() {
	local rop out
	days "$1"
	rop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $2${3:+, amount => '$3'})" || true)
	out="$(poll_value 30 op_done "${rop:-0}");$(sim_ledger "R$TAG${rop:-0}");$(money "$2")"
	days "-$1"
	echo "$out"
}

# 4. A capture the gateway made, its answer lost: dead, the payment still
#    requires capture (and a second capture is refused while it is dead).
#    Resolved succeeded (priorAuthCapture keeps the authorization's
#    transId), the payment is captured; the batch settles, and a refund a
#    week later goes to the gateway.  A capture the gateway never processed
#    resolved failed: the payment can be captured again.
pid=$(paid authorize '40.00 USD')
cop=$(dead_after reset "$pid" "pay_capture(payment_id => $pid)")
like "$cop" '^[0-9]+$' "4: the capture is a dead letter"
is "$(money "$pid");$(sim_ledger "P$TAG$pid")" "requires_capture|none|0.00 USD;authorization 40.00,capture 40.00" \
	"4: its payment still requires capture, while the gateway captured it"
is "$(sqlstate "SELECT pay_capture(payment_id => $pid)")" 22Y20 "4: another capture is refused while it is dead"
is "$(resolve "$cop" succeeded 987654321)" 22023 "4: a transaction but the authorization's, which a capture keeps, is refused (22023)"
is "$(resolve "$cop" succeeded "$(sim_ledger_trans_ids "P$TAG$pid" capture)")" succeeded "4: resolved succeeded with the gateway's transaction id"
is "$(money "$pid")" "succeeded|40.00 USD|0.00 USD" "4: the payment succeeded, 40.00 captured"
like "$(events_of "$pid")" "payment\.requires_capture,.*operation\.dead,operation\.succeeded,payment\.succeeded$" \
	"4: with its operation.succeeded and payment.succeeded events"
is "$(settle "$pid")" yes "4: the batch settles, and the worker learns it"
is "$(refund_later 7 "$pid")" "succeeded;refund 40.00;refunded|40.00 USD|40.00 USD" \
	"4: a refund a week later succeeds: the gateway refunded the captured transaction, the payment is refunded"
pid=$(paid authorize '41.00 USD')
cop=$(dead_after lost "$pid" "pay_capture(payment_id => $pid)")
like "$cop;$(sim_ledger "P$TAG$pid")" '^[0-9]+;authorization 41\.00$' "4: a capture that never reached the gateway's books is a dead letter"
is "$(resolve "$cop" failed)" failed "4: resolved failed"
is "$(money "$pid")" "requires_capture|none|0.00 USD" "4: the payment still requires capture, nothing captured"
like "$(events_of "$pid")" "operation\.dead,operation\.failed$" "4: with its operation.failed event, the payment unchanged"
q -c "SELECT 1 FROM pay_capture(payment_id => $pid, amount => '30.00 USD')" >/dev/null || true
is "$(q -c "SELECT status FROM pay_wait($pid, '20 s')");$(sim_ledger "P$TAG$pid")" "succeeded;authorization 41.00,capture 30.00" \
	"4: it is captured again, at the gateway"

# 5. A void the gateway made, its answer lost, resolved succeeded (a void
#    keeps the transaction's transId): the authorization is canceled, a
#    later capture refused.  A void of a purchase that the gateway never
#    processed, resolved not_charged: the payment keeps its capture, which
#    settles and is refunded days later.
pid=$(paid authorize '50.00 USD')
vop=$(dead_after reset "$pid" "pay_void(payment_id => $pid)")
like "$vop" '^[0-9]+$' "5: the void is a dead letter"
is "$(money "$pid");$(sim_ledger "P$TAG$pid")" "requires_capture|none|0.00 USD;authorization 50.00,void 0.00" \
	"5: its payment still requires capture, while the gateway voided it"
is "$(sqlstate "SELECT pay_capture(payment_id => $pid)")" 22Y20 "5: a capture is refused while the void is dead (the gateway voided it)"
is "$(refused_with "pay_discard_dead_letter($M, $vop)")" "55000 cannot discard void operation $vop: it may have reached the gateway" \
	"5: the void cannot be discarded: it may have reached the gateway"
is "$(resolve "$vop" succeeded 987654321)" 22023 "5: a transaction but the one voided is refused (22023)"
is "$(resolve "$vop" succeeded "$(sim_ledger_trans_ids "P$TAG$pid" void)")" succeeded "5: resolved succeeded"
is "$(money "$pid")" "canceled|none|0.00 USD" "5: the payment is canceled"
like "$(events_of "$pid")" "operation\.dead,operation\.succeeded,payment\.canceled$" "5: with its payment.canceled event"
days 2
is "$(sqlstate "SELECT pay_capture(payment_id => $pid)")" 22Y20 "5: a capture two days later is refused"
is "$(sim_ledger "P$TAG$pid")" "authorization 50.00,void 0.00" "5: nothing was captured at the gateway"
days -2
pid=$(paid purchase '51.00 USD')
vop=$(dead_after lost "$pid" "pay_void(payment_id => $pid)")
like "$vop;$(sim_ledger "P$TAG$pid")" '^[0-9]+;charge 51\.00$' "5: a void that never reached the gateway's books is a dead letter"
is "$(resolve "$vop" not_charged)" failed "5: resolved not_charged, the void failed"
is "$(money "$pid")" "succeeded|51.00 USD|0.00 USD" "5: the payment keeps its capture"
like "$(events_of "$pid")" "operation\.dead,operation\.failed$" "5: with its operation.failed event, the payment unchanged"
is "$(settle "$pid")" yes "5: the batch settles with it"
is "$(refund_later 3 "$pid" '11.00 USD')" "succeeded;refund 11.00;partially_refunded|51.00 USD|11.00 USD" \
	"5: a partial refund three days later is made at the gateway"

# 6. A refund the gateway made, its answer lost, resolved succeeded with
#    the refund's own transaction: counted (partially_refunded), and the
#    rest refunded a week later.  A refund the gateway never processed
#    holds its amount while dead; resolved failed, it is refundable again.
pid=$(paid purchase '60.00 USD')
is "$(settle "$pid")" yes "6: a purchase settles"
rop=$(dead_after reset "$pid" "pay_refund(payment_id => $pid, amount => '20.00 USD')")
like "$rop" '^[0-9]+$' "6: the refund is a dead letter"
is "$(refused_with "pay_discard_dead_letter($M, $rop)")" "55000 cannot discard refund operation $rop: it may have reached the gateway" \
	"6: the refund cannot be discarded (its amount would be refundable again, though the gateway refunded it)"
is "$(money "$pid");$(sim_ledger "R$TAG$rop")" "succeeded|60.00 USD|0.00 USD;refund 20.00" \
	"6: nothing refunded yet, while the gateway refunded it"
is "$(resolve "$rop" succeeded "$(q -c "SELECT gateway_trans_id FROM pay_get_payment($pid)")")" 22023 \
	"6: the payment's own transaction is refused: a refund has its own (22023)"
is "$(resolve "$rop" succeeded "$(sim_ledger_trans_ids "R$TAG$rop" refund)")" succeeded "6: resolved succeeded with the refund's transaction id"
is "$(money "$pid")" "partially_refunded|60.00 USD|20.00 USD" "6: 20.00 is refunded"
like "$(events_of "$pid")" "operation\.dead,operation\.succeeded,payment\.partially_refunded$" "6: with its payment.partially_refunded event"
is "$(refund_later 7 "$pid")" "succeeded;refund 40.00;refunded|60.00 USD|60.00 USD" "6: the other 40.00 refunded a week later, at the gateway"
pid=$(paid purchase '70.00 USD')
is "$(settle "$pid")" yes "6: another purchase settles"
fop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pid, amount => '10.00 USD')")
is "$(poll_value 30 op_done "$fop")" succeeded "6: 10.00 of it is refunded"
rop=$(dead_after lost "$pid" "pay_refund(payment_id => $pid)")
like "$rop;$(sim_ledger "R$TAG$rop")" '^[0-9]+;$' "6: a refund of the other 60.00 that never reached the gateway's books is a dead letter"
is "$(sqlstate "SELECT pay_refund(payment_id => $pid, amount => '1.00 USD')")" 22Y21 "6: its amount is not refundable while it is dead"
is "$(resolve "$rop" succeeded "$(sim_ledger_trans_ids "R$TAG$fop" refund)")" 22023 \
	"6: the transaction of the payment's other refund is refused (22023)"
is "$(resolve "$rop" failed)" failed "6: resolved failed"
is "$(money "$pid")" "partially_refunded|70.00 USD|10.00 USD" "6: only the first 10.00 refunded"
like "$(events_of "$pid")" "operation\.dead,operation\.failed$" "6: with its operation.failed event, the payment unchanged"
is "$(refund_later 7 "$pid")" "succeeded;refund 60.00;refunded|70.00 USD|70.00 USD" \
	"6: refundable again: the other 60.00 refunded a week later, at the gateway"
tap_done
