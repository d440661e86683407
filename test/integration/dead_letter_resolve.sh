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
tap_done
