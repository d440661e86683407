#!/usr/bin/env bash
# Callers that meet the worker and each other on one subscription, in
# transactions at REPEATABLE READ and SERIALIZABLE (a client's
# default_transaction_isolation) and on one test clock; the interleavings
# are forced with psql sessions held open and a simulator reply held, and
# the simulator's ledger is the truth of what was charged.
# Proves:
#   1. two sessions moving one test clock at once: both moves count, in
#      turn (a month and a day advance it by a month and a day), and a set
#      behind the other session's committed move is refused (22023), never
#      back.  Before, the second session wrote the time it computed from the
#      clock it had read over the first's move: the clock went back from
#      1 February to 2 January, and a set of 1 March after one of 1 April
#      left it on 1 March.
#   2. a past_due subscription's dunning retry in flight (the reply held);
#      a session at REPEATABLE READ, then one at SERIALIZABLE, takes its
#      snapshot; the retry is declined meanwhile; the session then changes
#      the subscription's card (pay_update_subscription): it fails with
#      40001, and the call retried charges the new card at once (the invoice
#      paid, one charge at the gateway).  Before, the call succeeded from a
#      snapshot in which the retry was still in flight, skipped the invoice,
#      and the declined retry had scheduled the next day with the old card:
#      the new card was not tried (after a final decline, dunning's final
#      action would have ended the subscription without trying it).
#   3. the same for the customer's default card changed
#      (pay_set_default_payment_method) at REPEATABLE READ while the
#      renewal's first charge is in flight: the renewal's decline makes the
#      subscription past_due after the snapshot; the call fails with 40001
#      and, retried, charges the new default at once.  Before, the
#      subscription, active in the snapshot, was skipped, and the new
#      default waited for the first retry day.
#   4. checked sound (no defect found): a session at REPEATABLE READ whose
#      snapshot predates the billing run's committed renewal changes the
#      subscription: 40001 (the renewal wrote the row it locks), and the
#      call retried meets the renewed period; the period is invoiced and
#      charged once.  And a cancel now at REPEATABLE READ from a snapshot
#      older than a dunning retry (which writes the invoice, not the
#      subscription): 40001 when it voids the invoice, not a void of an
#      invoice whose charge is in flight; retried, it is refused (22Y20)
#      until the charge is answered.
#   5. the dunning policy changed (pay_set_dunning_policy, retry days
#      {2,4}) in a transaction still open when the worker records a
#      renewal's decline: the invoice's first retry is on day 2.  Before,
#      the recording read the old policy (day 1) while the change's
#      rescheduling had passed the invoice by (no retry scheduled yet), and
#      the invoice stayed on the old schedule.
#   6. checked sound: a session makes another card the default (which
#      locks the customer's active subscriptions) while a renewal's charge
#      is in flight, and keeps its transaction open past the gateway's
#      answer: the worker gives up the lock after
#      payments.worker_lock_timeout, holds the answer, and records it once
#      the session commits; the invoice is paid, charged once.
# Each answer that must come after a session's snapshot or change is held
# back by a gate (close_gate / open_gate) until that is done: the
# simulator's hold of 8 s alone let a slow machine record it first (with the
# session's start delayed 10 s by hand, case 2's and case 6's checks
# failed, and case 5 passed with the decline recorded before the policy
# changed, which it now checks).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
SIMDIR="$WORK/sim-sub-isolation"
sessions_init subscription-isolation
trap gate_cleanup EXIT
sim_start "$SIMDIR"

# the answers of merchant M's charges behind a gate (test/lib/sessions.sh)
answer_gate 4246

q() { as_merchant "$@"; }
# hold_next_charge: the simulator holds its reply to the next charge 8 s
# (the charge made)
hold_next_charge() {
	sim_ctl POST /faults '{"type":"hold","count":1,"process":true,"holdMs":8000,"requestType":"createTransactionRequest"}' >/dev/null
}
sent() {	# sent PAYMENT: once the worker has sent its charge
	wait_for "SELECT status <> 'queued' FROM payments.operations WHERE merchant_id = $M AND payment_id = $1" t >/dev/null
}
# snapshot_in_flight LEVEL PAYMENT: session a begins at LEVEL and takes its
# snapshot while the payment is pending (a_saw: what it saw)
snapshot_in_flight() {
	session a
	say a "BEGIN ISOLATION LEVEL $1; SELECT 'a sees ' || status FROM payments.payments WHERE merchant_id = $M AND payment_id = $2;"
	say a '\echo A-SNAPSHOT'
	poll_value 20 done_with a A-SNAPSHOT >/dev/null
	a_saw=$(grep '^a sees' "$SESS/a.out")
}
# renewal_in_flight NAME CARD DEFAULT: merchant "sub isolation NAME" on a
# test clock; a customer whose card pd pays a monthly subscription (sid),
# and a second card CARD (pb; the customer's default when DEFAULT is true);
# the month moved on and the renewal charged (invoice inv, payment pay),
# sent, its reply held and its answer behind the gate (close_gate)
renewal_in_flight() {
	merchant_on_simulator "sub isolation $1" 15000
	q -c "SELECT pay_set_test_clock(now())" >/dev/null
	cid=$(subscription_customer "isolation-$1")
	pd=$(saved_method "$cid" 4111111111111111)
	sid=$(paid_subscription "$cid")
	pb=$(saved_method "$cid" "$2" "$3")
	close_gate
	hold_next_charge
	q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 month 1 hour')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
	inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 1")
	pay=$(q -c "SELECT payment_id FROM pay_get_invoice($inv)")
	sent "$pay"
}
# then_in_a SQL: session a runs SQL and commits (a_out: its output)
then_in_a() {
	say a "$1"
	say a 'COMMIT;'
	say a '\echo A-DONE'
	poll_value 20 done_with a A-DONE >/dev/null
	close a
	a_out=$(tr '\n' ' ' <"$SESS/a.out")
}

# --- 1. one test clock moved by two sessions at once ---------------------------
merchant_on_simulator "sub isolation clocks"
q -c "SELECT pay_set_test_clock('2095-01-01 00:00+00')" >/dev/null
clock_race() {	# clock_race SQL_A SQL_B: a moves in an open transaction, b waits for it, a commits
	session a
	session b
	say a "BEGIN; SELECT 'a moved ' || ($1 IS NOT NULL);"
	say a '\echo A-MOVED'
	poll_value 20 done_with a A-MOVED >/dev/null
	say b "SELECT 'b moved ' || ($2 IS NOT NULL);"
	say b '\echo B-MOVED'
	is "$(poll_value 20 waits_for_lock b)" 1 "the second session's move waits for the first's"
	say a 'COMMIT;'
	poll_value 20 done_with b B-MOVED >/dev/null
	close a
	close b
}
clock_race "pay_advance_test_clock('1 month')" "pay_advance_test_clock('1 day')"
is "$(q -c "SELECT pay_billing_now() = '2095-02-02 00:00+00'") $(grep -c '^b moved true' "$SESS/b.out")" "t 1" \
	"a month and a day advanced at once: the clock is a month and a day on (1 February + 1 day), not back on 2 January"
clock_race "pay_set_test_clock('2095-04-01 00:00+00')" "pay_set_test_clock('2095-03-01 00:00+00')"
like "$(tr '\n' ' ' <"$SESS/b.out")" "ERROR:  22023: a test clock never goes back" \
	"a set of 1 March made while another session sets 1 April is refused once that commits (22023)"
is "$(q -c "SELECT pay_billing_now() = '2095-04-01 00:00+00'")" t "the clock stays on 1 April"

# --- 2. the subscription's card changed from a snapshot older than a decline --
for level in "REPEATABLE READ" "SERIALIZABLE"; do
	merchant_on_simulator "sub isolation update $level" 15000
	q -c "SELECT pay_set_test_clock(now())" >/dev/null
	cid=$(subscription_customer "isolation-update")
	pd=$(saved_method "$cid" 4111111111111111)
	pb=$(saved_method "$cid" 4000000000000002 false)
	sid=$(paid_subscription "$cid" "$pd")
	q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pb)" >/dev/null
	# the renewal, charged to the declining card: past_due, retry on day 1
	q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 month 1 hour')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
	inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 1")
	is "$(wait_for "SELECT s.status || '|' || (i.next_attempt_at IS NOT NULL) FROM pay_get_subscription($sid) s, pay_get_invoice($inv) i" "past_due|true")" \
		"past_due|true" "$level: the renewal is declined; the subscription is past_due, a retry scheduled"
	# the retry of day 1, its reply held, its answer behind the gate
	close_gate
	hold_next_charge
	q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 day 1 minute')" -c "SELECT pay_run_dunning()" -c "COMMIT" >/dev/null
	pay=$(q -c "SELECT payment_id FROM pay_get_invoice($inv)")
	sent "$pay"
	snapshot_in_flight "$level" "$pay"
	like "$a_saw" '^a sees (pending|unknown)$' "$level: a session's snapshot is taken while the retry is in flight"
	open_gate
	is "$(wait_for "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $pay" failed 30)" failed \
		"$level: the retry is declined after that snapshot"
	then_in_a "SELECT 'a updated ' || status FROM pay_update_subscription($sid, payment_method_id => $pd);"
	like "$a_out" "ERROR:  40001: " "$level: the session's change of the card fails with 40001 (its snapshot predates the decline)"
	q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pd)" >/dev/null
	is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|3" 30)" "paid|3" \
		"$level: the call retried charges the new card at once: the invoice is paid"
	invoice_settled "$inv" 30
	is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "3|$pb:failed,$pb:failed,$pd:succeeded 1" \
		"$level: charged once at the gateway, to the new card"
	is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "$level: the subscription is active"
done

# --- 3. the default changed from a snapshot older than the renewal's decline ---
renewal_in_flight default 4000000000000002 true	# the default now: a card the gateway declines
snapshot_in_flight "REPEATABLE READ" "$pay"
like "$a_saw" '^a sees (pending|unknown)$' "a session's snapshot is taken while the renewal's charge is in flight"
open_gate
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" past_due 30)" past_due \
	"the renewal is declined after that snapshot: past_due"
then_in_a "SELECT 'a default ' || is_default FROM pay_set_default_payment_method($pd);"
like "$a_out" "ERROR:  40001: " "the session's change of the default fails with 40001"
q -c "SELECT 1 FROM pay_set_default_payment_method($pd)" >/dev/null
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2" 30)" "paid|2" \
	"the call retried charges the new default at once: the invoice is paid"
invoice_settled "$inv" 30
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$pb:failed,$pd:succeeded 1" \
	"charged once at the gateway, to the new default"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active"

# --- 4. a renewal, and a dunning retry, committed after a caller's snapshot ---
merchant_on_simulator "sub isolation renewal" 15000
q -c "SELECT pay_set_test_clock(now())" >/dev/null
cid=$(subscription_customer "isolation-renewal")
pd=$(saved_method "$cid" 4111111111111111)
sid=$(paid_subscription "$cid")
snapshot_in_flight "REPEATABLE READ" "$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")"
q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 month 1 hour')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
then_in_a "SELECT 'a changed ' || current_period_index FROM pay_change_subscription($sid, quantity => 2, proration => 'none');"
like "$a_out" "ERROR:  40001: " "a change from a snapshot older than the billing run's renewal fails with 40001"
is "$(q -c "SELECT current_period_index || '|' || period_amount FROM pay_change_subscription($sid, quantity => 2, proration => 'none')")" \
	"1|25.00 USD" "retried, it meets the renewed period (the change from the next one)"
inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 1")
invoice_settled "$inv" 30
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 1") $(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" \
	"1 1|$pd:succeeded 1" "the renewed period has one invoice, charged once at the gateway"

pb=$(saved_method "$cid" 4000000000000002 false)
q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pb)" >/dev/null
q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 month')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 2")
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" past_due 30)" past_due "the next renewal is declined: past_due"
invoice_settled "$inv" 30
snapshot_in_flight "REPEATABLE READ" "$(q -c "SELECT payment_id FROM pay_get_invoice($inv)")"
close_gate
hold_next_charge
q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 day 1 minute')" -c "SELECT pay_run_dunning()" -c "COMMIT" >/dev/null
pay=$(q -c "SELECT payment_id FROM pay_get_invoice($inv)")
sent "$pay"
then_in_a "SELECT 'a canceled ' || status FROM pay_cancel_subscription($sid);"
like "$a_out" "ERROR:  40001: " "a cancel now from a snapshot older than the dunning retry fails with 40001"
is "$(sqlstate_of "SELECT 1 FROM pay_cancel_subscription($sid)") $(q -c "SELECT status FROM pay_get_invoice($inv)")" "22Y20 open" \
	"retried while that retry is in flight, it is refused (22Y20); the invoice stays open"
open_gate
invoice_settled "$inv" 30
is "$(q -c "SELECT status FROM pay_cancel_subscription($sid)") $(q -c "SELECT status FROM pay_get_invoice($inv)")" "canceled void" \
	"once the retry is answered (declined), the cancel ends the subscription and voids the invoice"
is "$(invoice_ledger_charges "$inv") $(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'invoice.payment_after_close'")" "0 0" \
	"nothing was charged for the declined period, and no charge came after the invoice closed"

# --- 5. the dunning policy changed while a decline is being recorded -----------
renewal_in_flight policy 4000000000000002 true
# session a changes the policy (first retry on day 2, not 1) and has not
# committed when the worker records the renewal's decline
session a
say a "BEGIN; SELECT 'a policy ' || retry_days::text FROM pay_set_dunning_policy(retry_days => '{2,4}');"
say a '\echo A-SET'
poll_value 20 done_with a A-SET >/dev/null
is "$(q -c "SELECT (p.status IN ('pending', 'unknown')) || '|' || (i.first_failed_at IS NULL) FROM payments.payments p, pay_get_invoice($inv) i
	WHERE p.merchant_id = $M AND p.payment_id = $pay")" "true|true" "the renewal's charge is still unanswered once the session has changed the policy"
count_gate_passes "$pay"
open_gate
# the decline is being recorded: past the gate, the recording waits for the
# policy's change (it locks the invoices in dunning), gives up after
# payments.worker_lock_timeout and is tried again; a second attempt past
# the gate means the first failed (a committed one ends the payment: no
# other comes).  Before, the first attempt recorded the decline on the old
# policy.
twice() { [ "$(gate_passes)" -ge 2 ] && echo 1; }
is "$(poll_value 40 twice)|$(q -c "SELECT first_failed_at IS NULL FROM pay_get_invoice($inv)")" "1|t" \
	"the worker tries to record the decline while the change is uncommitted, and cannot (a second attempt past the gate, nothing recorded)"
say a 'COMMIT;'
say a '\echo A-DONE'
poll_value 20 done_with a A-DONE >/dev/null
close a
is "$(grep -c '^a policy {2,4}$' "$SESS/a.out")" 1 "a session sets retry days {2,4} while the renewal's decline is recorded"
is "$(wait_for "SELECT (first_failed_at IS NOT NULL) || '|' || (next_attempt_at - first_failed_at) FROM pay_get_invoice($inv)" "true|2 days" 60)" \
	"true|2 days" "the invoice's first retry follows the new policy: day 2, not the old day 1"
is "$(q -c "SELECT status FROM pay_get_subscription($sid)")" past_due "the subscription is past_due"

# --- 6. a new default saved while the renewal's answer is being recorded ------
renewal_in_flight default-lock 5424000000000015 false
# session a makes another card the default (it locks the customer's active
# subscriptions) and holds its transaction open past the gateway's answer
session a
say a "BEGIN; SELECT 'a default ' || is_default FROM pay_set_default_payment_method($pb);"
say a '\echo A-SET'
poll_value 20 done_with a A-SET >/dev/null
open_gate
held() { [ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT payments.pay_metrics()" | sed -n 's/^payments_unrecorded_outcomes //p')" = 1 ] && echo 1; }
is "$(poll_value 30 held)" 1 "the renewal's answer comes while the session holds the subscription: the worker holds it (the lock waited for at most payments.worker_lock_timeout)"
# (the held reply is never sent: the charge is unknown, then resent in the
# gateway's duplicate window, whose answer is the one held)
is "$(q -c "SELECT (p.status IN ('pending', 'unknown')) || '|' || i.status FROM payments.payments p, pay_get_invoice($inv) i WHERE p.merchant_id = $M AND p.payment_id = $pay")" \
	"true|open" "and records nothing meanwhile: the payment is unfinished, the invoice open"
say a 'COMMIT;'
say a '\echo A-DONE'
poll_value 20 done_with a A-DONE >/dev/null
close a
is "$(grep -c '^a default true$' "$SESS/a.out")" 1 "the session's new default is committed"
is "$(wait_for "SELECT status FROM pay_get_invoice($inv)" paid 30)" paid "once it commits, the held answer is recorded: the invoice is paid"
invoice_settled "$inv" 30
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "1|$pd:succeeded 1" \
	"charged once at the gateway, to the card charged before the change"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active"

tap_done
