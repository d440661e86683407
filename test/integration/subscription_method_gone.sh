#!/usr/bin/env bash
# A subscription whose own payment method is gone, over days of a test
# clock against the simulator.
# Proves:
#   1. its method's payment profile deleted at the gateway (another system
#      on the account): the renewal's charge fails with payment_method_gone,
#      the method is failed, the subscription no longer names it (the
#      customer's default at each charge, a subscription.updated event with
#      reason payment_method_gone) and the invoice is charged at once to the
#      customer's default card: paid, the subscription active again, one
#      charge at the gateway, no dunning run needed; the next renewal goes
#      to the default too.  Before, the invoice waited for dunning's last
#      day (day 7, a final decline) and then the final action canceled the
#      subscription, though the customer had a default card.
#   2. the same with no other card that is the customer's default (its
#      method was the default): the invoice waits (past_due, nothing
#      charged on the dunning days) until a new card is saved, which pays
#      it at once, charged once.
#   3. a plain decline (reason 2) of the subscription's own card: dunning
#      as before (retry on day 1, the card kept, the default not charged).
#   4. the subscription's own card deleted by the customer
#      (pay_delete_payment_method) during dunning: once the gateway has
#      deleted it, the subscription no longer names it (reason
#      payment_method_deleted) and its invoice is charged at once to the
#      default, as after a change of its method.  Before, the subscription
#      kept naming the deleted card and waited for the next retry day.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-sub-method-gone"
trap sim_stop EXIT
sim_start "$SIMDIR"

q() { as_merchant "$@"; }
year=$(( $(date +%Y) + 3 ))
card() { echo "pay_card('$1', 12, $year, '123', 'Ada Lovelace')"; }
# a story's own merchant, its billing clock frozen at the real time
story() {
	merchant_on_simulator "sub method gone $1"
	q -c "SELECT pay_set_test_clock(now())" >/dev/null
}
# gone METHOD: another system deletes the method's payment profile at the
# gateway, with the merchant's credentials; prints the result code
gone() {
	local ids
	ids=$(q -c "SELECT customer_profile_id || ' ' || payment_profile_id FROM pay_get_payment_method($1)")
	sim_request deleteCustomerPaymentProfileRequest "\"customerProfileId\":\"${ids% *}\",\"customerPaymentProfileId\":\"${ids#* }\""
}
renewal() {	# renewal SUBSCRIPTION: its latest invoice (period 1 once renewed)
	wait_for "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1 AND period_index = 1" 1 >/dev/null
	q -c "SELECT max(invoice_id) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1"
}
sub_events() {	# sub_events SUBSCRIPTION TYPE [REASON]
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = '$2'
		AND data ->> 'subscription_id' = '$1' AND ('${3:-}' = '' OR data ->> 'reason' = '${3:-}')"
}
# declining CUSTOMER: its default card (pd) pays the first invoice of a
# subscription (sid), which is then charged to its other card (pb), one
# the gateway declines (reason 2); a month later the renewal (inv) is
# declined
declining() {
	pd=$(saved_method "$1" 4111111111111111)
	pb=$(saved_method "$1" 4000000000000002 false)
	sid=$(paid_subscription "$1" "$pd")
	q -c "SELECT 1 FROM pay_update_subscription($sid, payment_method_id => $pb)" >/dev/null
	q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
	q -c "SELECT pay_run_renewals()" >/dev/null
	inv=$(renewal "$sid")
	invoice_settled "$inv"
}
next_day() {	# next_day: the clock a day on, and a dunning run
	q -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
	q -c "SELECT pay_run_dunning()" >/dev/null
}

# --- 1. the subscription's own method gone, the customer has a default --------
story default
cid=$(subscription_customer gone1)
pd=$(saved_method "$cid" 4111111111111111)
px=$(saved_method "$cid" 5424000000000015 false)
sid=$(paid_subscription "$cid" "$px")
is "$(q -c "SELECT payment_method_id FROM pay_get_subscription($sid)")" "$px" "a subscription charged to a card that is not the customer's default"
is "$(gone "$px")" Ok "another system deletes that card's payment profile at the gateway"
q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv=$(renewal "$sid")
invoice_settled "$inv"
is "$(q -c "SELECT concat_ws('|', status, decline_code) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $inv ORDER BY payment_id LIMIT 1")" \
	"failed|payment_method_gone" "the renewal's charge of the card fails: payment_method_gone"
is "$(q -c "SELECT concat_ws('|', status, failure_code) FROM pay_get_payment_method($px)")" "failed|payment_method_gone" "the card is failed"
is "$(q -c "SELECT coalesce(payment_method_id::text, 'default') FROM pay_get_subscription($sid)")" default \
	"the subscription no longer names the dead card: the customer's default at each charge"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'subscription.updated'
	AND data ->> 'subscription_id' = '$sid' AND data ->> 'reason' = 'payment_method_gone'
	AND (data ->> 'previous_payment_method_id')::bigint = $px AND data -> 'payment_method_id' = 'null'
	AND data -> 'fields' = '[\"payment_method_id\"]'")" 1 "a subscription.updated event says so (reason payment_method_gone)"
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2")" "paid|2" \
	"the invoice is charged at once to the customer's default and paid, with no dunning run (attempt 2)"
is "$(invoice_charges "$inv")" "2|$px:failed,$pd:succeeded" "one charge of the dead card (refused), one of the default"
is "$(invoice_ledger_charges "$inv")" 1 "the simulator's ledger has exactly one charge for the invoice"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active again"
is "$(sub_events "$sid" invoice.retry_attempted payment_method_gone) $(sub_events "$sid" invoice.retry_scheduled)" "1 0" \
	"invoice.retry_attempted says why (reason payment_method_gone); no retry was scheduled"
is "$(q -c "SELECT (data ->> 'retryable') || '|' || (data ->> 'failure_code') FROM payments.events WHERE merchant_id = $M
	AND event_type = 'invoice.payment_failed' AND data ->> 'invoice_id' = '$inv'")" "true|payment_method_gone" \
	"invoice.payment_failed says it is tried again"
q -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
wait_for "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid AND period_index = 2" 1 >/dev/null
inv2=$(q -c "SELECT max(invoice_id) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")
invoice_settled "$inv2"
is "$(q -c "SELECT status FROM pay_get_invoice($inv2)") $(invoice_charges "$inv2") $(invoice_ledger_charges "$inv2")" "paid 1|$pd:succeeded 1" \
	"the next renewal is charged to the default once"

# --- 2. the method gone was the customer's default: no default, it waits ------
story nodefault
cid=$(subscription_customer gone2)
px=$(saved_method "$cid" 4111111111111111)
sid=$(paid_subscription "$cid" "$px")
is "$(gone "$px")" Ok "the subscription's card, the customer's only one and its default, is deleted at the gateway"
q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv=$(renewal "$sid")
invoice_settled "$inv"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" past_due)" past_due "the renewal fails: past_due"
is "$(q -c "SELECT concat_ws('|', status, attempt_count, last_failure_code, next_attempt_at = first_failed_at + interval '7 days') FROM pay_get_invoice($inv)")" \
	"open|1|payment_method_gone|t" "no default to charge: the invoice waits (a final decline, the schedule's last day)"
is "$(q -c "SELECT coalesce(payment_method_id::text, 'default') FROM pay_get_subscription($sid)") $(sub_events "$sid" subscription.updated payment_method_gone)" \
	"default 1" "the subscription no longer names the dead card"
next_day
next_day
is "$(invoice_charges "$inv")" "1|$px:failed" "on the dunning days nothing is charged (no card)"
pn=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4007000000027), validation_mode => 'none')")
is "$(q -c "SELECT status FROM pay_wait_payment_method($pn, '10 s')")" active "the customer saves a new card (the default)"
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2")" "paid|2" "the new card pays the invoice at once"
invoice_settled "$inv"
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$px:failed,$pn:succeeded 1" "charged once, to the new card"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active again"

# --- 3. a plain decline of the subscription's own card: dunning as before -----
story decline
cid=$(subscription_customer decline3)
declining "$cid"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" past_due)" past_due "the subscription's own card is declined: past_due"
is "$(q -c "SELECT concat_ws('|', attempt_count, last_failure_code <> 'payment_method_gone', next_attempt_at = first_failed_at + interval '1 day') FROM pay_get_invoice($inv)") $(invoice_charges "$inv")" \
	"1|t|t 1|$pb:failed" "retried on day 1; the default is not charged in its place"
is "$(q -c "SELECT concat_ws('|', payment_method_id, status) FROM pay_get_subscription($sid)") $(q -c "SELECT status FROM pay_get_payment_method($pb)")" \
	"$pb|past_due active" "the subscription keeps its card, which stays active"
next_day
invoice_settled "$inv"
is "$(wait_for "SELECT attempt_count || '|' || (next_attempt_at = first_failed_at + interval '3 days') FROM pay_get_invoice($inv)" "2|true")" "2|true" \
	"day 1: its own card is charged again (declined), the next retry on day 3"
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$pb:failed,$pb:failed 0" "both charges of its own card, the default never"

# --- 4. the subscription's own card deleted by the customer during dunning ----
story deleted
cid=$(subscription_customer deleted4)
declining "$cid"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" past_due)" past_due "the subscription's own card is declined: past_due"
is "$(q -c "SELECT status FROM pay_delete_payment_method($pb)")" deleting "the customer deletes that card"
is "$(q -c "SELECT status FROM pay_wait_payment_method($pb, '10 s')")" deleted "the gateway deletes it"
is "$(q -c "SELECT coalesce(payment_method_id::text, 'default') FROM pay_get_subscription($sid)") $(sub_events "$sid" subscription.updated payment_method_deleted)" \
	"default 1" "the subscription no longer names it (subscription.updated, reason payment_method_deleted)"
is "$(wait_for "SELECT status || '|' || attempt_count FROM pay_get_invoice($inv)" "paid|2")" "paid|2" \
	"its invoice is charged at once to the default, not on the next retry day"
invoice_settled "$inv"
is "$(invoice_charges "$inv") $(invoice_ledger_charges "$inv")" "2|$pb:failed,$pd:succeeded 1" "charged once, to the default"
is "$(wait_for "SELECT status FROM pay_get_subscription($sid)" active)" active "the subscription is active again"

tap_done
