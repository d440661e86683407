#!/usr/bin/env bash
# A subscription's renewal charge in flight (its reply held by the
# simulator, or lost and looked up) while the merchant or the customer acts,
# over days of a test clock; the simulator's ledger is the truth of what was
# charged.
# Proves:
#   1. the customer's default card changed while the renewal's charge of the
#      old default is in flight: that charge is declined, and the invoice is
#      charged at once to the new default (paid, one charge at the gateway,
#      no dunning day waited).  Before, the new card was not tried (the
#      subscription was not in dunning yet when it was made the default, and
#      the failure then waited for the first retry day; after a final
#      decline, for the schedule's last day, whose final action canceled the
#      subscription without ever trying the new card).
#   2. the same with the subscription's own method changed
#      (pay_update_subscription) while the charge's reply is lost (unknown,
#      resolved by a lookup as declined): the new method pays at once.
#   2b. the subscription's own card deleted by the customer while the
#      renewal's charge of it is in flight: declined, the invoice is
#      charged at once to the default, once, and the subscription no longer
#      names the deleted card.
#   3. a cancel now while the renewal's charge is in flight is refused
#      (22Y20) and changes nothing; once the charge is answered the cancel
#      ends the subscription with the period paid, charged once.
#   4. a change made after the period's end but before the billing run
#      renewed the subscription (the run racing the merchant) meets the
#      period that contains now, as when the run came first: the renewal is
#      made first, at the terms in force when the period began.  Before, the
#      change met the period that had ended: a price changed without
#      proration (none, "from the next period") was charged for the period
#      already running (May at 300.00 instead of 25.00), and the preview
#      showed nothing to prorate.
#   5. the same for a cancel at period end (set for the end of the period
#      now running, May paid, not an end in the past that left May
#      unbilled) and for undoing one whose period has ended (22Y20: it has
#      ended; before, the undo renewed and charged a subscription that had
#      ended at the period's end).
#   The order of the caller's act and the charge's answer is made certain
#   by a gate (close_gate / open_gate), not by the simulator's hold alone: a
#   hold of a few seconds let a slow machine record the answer first (with
#   the act delayed 7 s by hand, story 1's second check failed).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
SIMDIR="$WORK/sim-sub-charge-races"
sessions_init sub-charge-races
trap gate_cleanup EXIT
sim_start "$SIMDIR"

# the answers of merchant M's charges behind a gate (test/lib/sessions.sh)
answer_gate 4245

q() { as_merchant "$@"; }
# a story's own merchant (reply timeout TIMEOUT_MS), its billing clock frozen
# at the real time
story() {
	merchant_on_simulator "sub charge races $1" "$2"
	q -c "SELECT pay_set_test_clock(now())" >/dev/null
}
# renew_held SUBSCRIPTION HOLD_MS: a month on; the renewal's charge goes
# out with the simulator's reply held HOLD_MS (the charge made); sets inv,
# returns once the worker has sent it
renew_held() {
	sim_ctl POST /faults "{\"type\":\"hold\",\"count\":1,\"process\":true,\"holdMs\":$2,\"requestType\":\"createTransactionRequest\"}" >/dev/null
	q -c "BEGIN" -c "SELECT pay_advance_test_clock('1 month 1 hour')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
	inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1 AND period_index = 1")
	wait_for "SELECT o.status <> 'queued' FROM payments.operations o JOIN payments.invoices i
		ON i.merchant_id = o.merchant_id AND i.payment_id = o.payment_id WHERE i.merchant_id = $M AND i.invoice_id = $inv" t >/dev/null
}
in_flight() {	# in_flight INVOICE: "t" while its latest charge is unanswered
	q -c "SELECT p.status IN ('pending', 'unknown', 'in_review') FROM payments.payments p JOIN payments.invoices i
		ON i.merchant_id = p.merchant_id AND i.payment_id = p.payment_id WHERE i.merchant_id = $M AND i.invoice_id = $1"
}
sub_events() {	# sub_events SUBSCRIPTION TYPE [REASON]
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = '$2'
		AND data ->> 'subscription_id' = '$1' AND ('${3:-}' = '' OR data ->> 'reason' = '${3:-}')"
}

# --- 1. the default card changed while the renewal's charge is in flight ----
story default 15000
cid=$(subscription_customer races1)
pd=$(saved_method "$cid" 4111111111111111)
sid=$(paid_subscription "$cid")
# the customer's default becomes a card the gateway declines (reason 2)
pb=$(saved_method "$cid" 4000000000000002)
close_gate
renew_held "$sid" 6000
is "$(in_flight "$inv")" t "the renewal's charge of the declining default is in flight (reply held)"
q -c "SELECT 1 FROM pay_set_default_payment_method($pd)" >/dev/null
is "$(q -c "SELECT concat_ws('|', status, attempt_count) FROM pay_get_invoice($inv)") $(in_flight "$inv")" "open|1 t" \
	"the customer makes the good card the default again before the answer: nothing charged to it yet"
open_gate
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2" 30)" "paid|2" \
	"the declined charge is followed at once by a charge of the new default: the invoice is paid, no dunning day waited"
invoice_settled "$inv" 30
is "$(invoice_charges "$inv")" "2|$pb:failed,$pd:succeeded" "one charge of the old default (declined), one of the new"
is "$(invoice_ledger_charges "$inv")" 1 "the simulator's ledger has exactly one charge for the invoice"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active"
is "$(sub_events "$sid" invoice.retry_attempted payment_method_updated) $(sub_events "$sid" invoice.retry_scheduled)" "1 0" \
	"invoice.retry_attempted says why (reason payment_method_updated); no retry was scheduled"
is "$(q -c "SELECT data ->> 'retryable' FROM payments.events WHERE merchant_id = $M
	AND event_type = 'invoice.payment_failed' AND data ->> 'invoice_id' = '$inv'")" true "invoice.payment_failed says it is tried again"

# --- 2. the subscription's method changed while the reply is lost -----------
story lost 2000
cid=$(subscription_customer races2)
pd=$(saved_method "$cid" 4111111111111111)
pb=$(saved_method "$cid" 4000000000000002 false)
sid=$(paid_subscription "$cid" "$pd")
q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pb)" >/dev/null
close_gate
renew_held "$sid" 5000
is "$(in_flight "$inv")" t "the renewal's charge of the subscription's declining card is in flight"
q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pd)" >/dev/null
is "$(q -c "SELECT concat_ws('|', status, attempt_count) FROM pay_get_invoice($inv)") $(in_flight "$inv")" "open|1 t" \
	"the subscription's method is changed before the answer is recorded"
open_gate
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2" 40)" "paid|2" \
	"the charge's reply is lost, the lookup finds it declined, and the subscription's new method pays at once"
invoice_settled "$inv" 30
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$pb:failed,$pd:succeeded 1" "charged once at the gateway, to the new method"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active"

# --- 2b. the subscription's own card deleted while its charge is in flight ---
story deleted 15000
cid=$(subscription_customer races2b)
pd=$(saved_method "$cid" 4111111111111111)
pb=$(saved_method "$cid" 4000000000000002 false)
sid=$(paid_subscription "$cid" "$pd")
q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pb)" >/dev/null
close_gate
renew_held "$sid" 6000
is "$(in_flight "$inv")" t "the renewal's charge of the subscription's own (declining) card is in flight"
is "$(q -c "SELECT status FROM pay_delete_payment_method($pb)") $(in_flight "$inv")" "deleting t" \
	"the customer deletes that card meanwhile, before the answer is recorded"
open_gate
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2" 30)" "paid|2" \
	"the charge is declined; the invoice is charged at once to the default and paid"
invoice_settled "$inv" 30
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$pb:failed,$pd:succeeded 1" "charged once at the gateway, to the default"
is "$(q -c "SELECT status FROM pay_wait_payment_method($pb, '10 s')") $(q -c "SELECT coalesce(payment_method_id::text, 'default') || '|' || status FROM pay_get_subscription($sid)")" \
	"deleted default|active" "the card is deleted; the subscription, active, no longer names it"

# --- 3. cancel now while the renewal's charge is in flight ---------------------
story cancel 15000
cid=$(subscription_customer races3)
pd=$(saved_method "$cid" 4111111111111111)
sid=$(paid_subscription "$cid")
close_gate
renew_held "$sid" 4000
is "$(sqlstate_of "SELECT 1 FROM pay_cancel_subscription($sid)")" 22Y20 "a cancel now while the renewal's charge is in flight is refused"
is "$(q -c "SELECT s.status || '|' || i.status FROM pay_get_subscription($sid) s, pay_get_invoice($inv) i") $(in_flight "$inv")" "active|open t" \
	"and changes nothing (the charge still unanswered)"
open_gate
invoice_settled "$inv" 30
is "$(q -c "SELECT status FROM pay_cancel_subscription($sid)")" canceled "once the charge is answered, the cancel ends the subscription"
is "$(q -c "SELECT status FROM pay_get_invoice($inv)") $(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "paid 1|$pd:succeeded 1" \
	"the period's invoice stays paid, charged once"
is "$(sub_events "$sid" invoice.payment_after_close)" 0 "no charge came after the invoice closed"

# --- 4. a change racing the billing run at the period's end ------------------
# a month on, and the call, in one transaction: the billing process cannot
# renew the subscription before the call meets it
at_may() { q -c "BEGIN" -c "DO \$\$BEGIN PERFORM pay_set_test_clock('2095-05-01 00:00:30+00'); END\$\$" "$@" -c "COMMIT"; }
april() {	# april NAME: a story on the 1st of April 2095, a customer, a paid subscription (sid)
	story "$1" 15000
	q -c "SELECT pay_set_test_clock('2095-04-01 00:00+00')" >/dev/null
	cid=$(subscription_customer "$1")
	pd=$(saved_method "$cid" 4111111111111111)
	sid=$(paid_subscription "$cid")
}
period_invoice() {	# period_invoice N: "amount|status" of period N's invoice, once there
	wait_for "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = $1" 1 >/dev/null
	local i
	i=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = $1 AND kind <> 'proration'")
	invoice_settled "$i" 30
	q -c "SELECT amount || '|' || status FROM pay_get_invoice($i)"
}
ledger_amounts() {	# ledger_amounts INVOICE: the charges of its payments at the gateway
	local num out=""
	for num in $(q -c "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND invoice_id = $1 ORDER BY payment_id"); do
		out="$out$(sim_ledger "$num")"
	done
	echo "$out"
}
april none
got=$(at_may -c "SELECT (pay_preview_subscription_change($sid, price => '300.00 USD', proration => 'next_invoice') ->> 'period_start')::timestamptz = '2095-05-01 00:00+00'" \
	-c "SELECT current_period_index || '|' || period_amount FROM pay_change_subscription($sid, price => '300.00 USD', proration => 'none')")
is "$got" "t
1|25.00 USD" "30 s after April's end, before the run: the preview and the change meet May, renewed at 25.00 (the change from June)"
is "$(period_invoice 1)" "25.00 USD|paid" "May is invoiced at the price in force when it began, 25.00, and paid"
inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 1")
is "$(ledger_amounts "$inv")" "charge 25.00" "the gateway charged 25.00 for May, once"
q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-06-01 00:00+00')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
is "$(period_invoice 2)" "300.00 USD|paid" "June, the next period, at 300.00"

april prorated
got=$(at_may -c "SELECT current_period_index FROM pay_change_subscription($sid, quantity => 2)" \
	-c "SELECT count(*) FROM payments.invoice_items i WHERE i.merchant_id = $M AND i.subscription_id = $sid AND i.invoice_id IS NULL")
is "$got" "1
2" "a change with proration 30 s after April's end is prorated over May (a credit and a charge wait for June)"
is "$(period_invoice 1)" "25.00 USD|paid" "May is invoiced at one seat, as it began"

# --- 5. a cancel at period end racing the billing run -------------------------
april cancel
got=$(at_may -c "SELECT status || '|' || cancel_at_period_end || '|' || current_period_index FROM pay_cancel_subscription($sid, at_period_end => true)")
is "$got" "active|true|1" "a cancel at period end 30 s after April's end: renewed for May first, to end with it"
is "$(period_invoice 1)" "25.00 USD|paid" "May is invoiced and paid, as when the run came first"

april undo
q -c "SELECT 1 FROM pay_cancel_subscription($sid, at_period_end => true)" >/dev/null
is "$(sqlstate_of "BEGIN; SELECT pay_set_test_clock('2095-05-01 00:00:30+00'); SELECT pay_update_subscription($sid, cancel_at_period_end => false); COMMIT")" 22Y20 \
	"undoing a cancel at period end after that period's end is refused: the subscription has ended"
q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-05-01 00:00:30+00')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
is "$(q -c "SELECT status || '|' || (ended_at = '2095-05-01 00:00+00') FROM pay_get_subscription($sid)") $(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")" \
	"canceled|true 1" "it ended with April, nothing more invoiced"

tap_done
