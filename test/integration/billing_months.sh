#!/usr/bin/env bash
# Billing over months, where a subscription leaves the happy path: an unpaid
# subscription given a new card, one set to cancel at its period's end that
# went unpaid, what invoice.payment_failed says of retries, a pause while a
# renewal is due and not yet run, and bad input to the billing functions.
# Each case on a merchant of its own, billing time moved by
# pay_set_test_clock, charges at the simulator (billTo.zip 46282 declines).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-billing-months"
trap 'sim_stop; cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null' EXIT
sim_start "$SIMDIR"
q() { as_merchant "$@"; }
# card CUSTOMER NUMBER [ARGS]: a saved card of the customer, waited for; its id
card() {
	local pm
	pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $1, card => pay_card('$2', 12, 2030, '123', 'C'), validation_mode => 'none'${3:+, $3})")
	q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')" >/dev/null
	echo "$pm"
}
# customer_with_card NAME [BILLING]: a merchant of its own at the start of
# May 2095 (billing time), and a customer of it with a default card; sets M
# and CID
customer_with_card() {
	merchant_on_simulator "billing-months $1"
	q -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" >/dev/null
	CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', name => '$1'${2:+, billing => '$2'})")
	card "$CID" 4111111111111111 >/dev/null
}

###########################################################################
# 1. README: when the subscription's payment method is changed
#    (pay_update_subscription), the open invoices of an unpaid subscription
#    are charged at once, its uncollectible invoice too (before: nothing
#    was charged, and it stayed unpaid for good).
customer_with_card unpaid '{"zip":"10001"}'
q -c "SELECT 1 FROM pay_set_dunning_policy(retry_days => '{}', final_action => 'unpaid')" >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '10.00 USD', interval_unit => 'month')")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
# the renewal is declined (simulator: billTo.zip 46282 declines, reason 2)
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null
q -c "SELECT pay_set_test_clock('2095-06-01 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
INV=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $INV), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = unpaid ] && break; sleep 0.25; done
is "$(q -c "SELECT s.status || '|' || i.status FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "unpaid|uncollectible" "declined renewal, retry_days {}: unpaid, invoice uncollectible"
# the customer gives a new card (address fixed); the merchant puts it on the subscription
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
PM2=$(card "$CID" 5424000000000015 'make_default => false')
before=$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $INV")
q -c "SELECT 1 FROM pay_update_subscription($SID, payment_method_id => $PM2)" >/dev/null
after=$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $INV")
is "$after" "$((before + 1))" "pay_update_subscription with a new card charges the unpaid subscription's uncollectible invoice at once"
pid=$(q -c "SELECT payment_id FROM pay_get_invoice($INV)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = active ] && break; sleep 0.25; done
is "$(q -c "SELECT s.status || '|' || i.status FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "active|paid" "and, paid, the subscription is active again"

###########################################################################
# 2. A subscription set to cancel at the end of May whose invoice_now
#    proration is declined (final action unpaid): once a new card pays the
#    proration in June it ends with May, and June is not charged (before:
#    it was made active again and charged for June).
customer_with_card cancel-at-end '{"zip":"10001"}'
q -c "SELECT 1 FROM pay_set_dunning_policy(retry_days => '{}', final_action => 'unpaid')" >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '10.00 USD', interval_unit => 'month')")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
q -c "SELECT pay_set_test_clock('2095-05-05 00:00+00')" >/dev/null
q -c "SELECT 1 FROM pay_cancel_subscription($SID, at_period_end => true)" >/dev/null
q -c "SELECT pay_set_test_clock('2095-05-10 00:00+00')" >/dev/null
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null   # declines
q -c "SELECT 1 FROM pay_change_subscription($SID, quantity => 2, proration => 'invoice_now')" >/dev/null
PR=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'proration'")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM pay_get_invoice($PR)), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = unpaid ] && break; sleep 0.25; done
is "$(q -c "SELECT status || '|' || cancel_at_period_end FROM pay_get_subscription($SID)")" "unpaid|true" "the declined proration makes it unpaid; still set to cancel at the end of May"
q -c "SELECT pay_set_test_clock('2095-06-15 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
PM2=$(card "$CID" 5424000000000015)
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_invoice($PR)")" = paid ] && break; sleep 0.25; done
sleep 2
is "$(q -c "SELECT status FROM pay_get_invoice($PR)")" paid "the new card pays the May proration"
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index >= 1")" 0 \
	"nothing is invoiced for June: the subscription was to end with May"
is "$(q -c "SELECT status || '|' || ended_at FROM pay_get_subscription($SID)")" "canceled|2095-06-01 00:00:00+00" "it is canceled, ended at the end of May"

###########################################################################
# 3. invoice.payment_failed says whether the invoice will be retried: not
#    on the last failure of a schedule (retry_days {}: the final action at
#    once), not for a first invoice (before: "retryable": true for both).
customer_with_card retryable '{"zip":"10001"}'
q -c "SELECT 1 FROM pay_set_dunning_policy(retry_days => '{}', final_action => 'canceled')" >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '10.00 USD', interval_unit => 'month')")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null   # declines (reason 2)
q -c "SELECT pay_set_test_clock('2095-06-01 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
INV=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $INV), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = canceled ] && break; sleep 0.25; done
is "$(q -c "SELECT s.status || '|' || i.status FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "canceled|uncollectible" "no retry day: the declined renewal gets the final action at once"
is "$(q -c "SELECT data ->> 'retryable' FROM payments.events WHERE merchant_id = $M AND event_type = 'invoice.payment_failed' AND (data ->> 'invoice_id')::bigint = $INV")" "false" \
	"its invoice.payment_failed event says it will not be retried"
# a declined first invoice (not retried: incomplete until it expires)
SID2=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '11.00 USD', interval_unit => 'month')")
INV2=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID2")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $INV2), '10 s')" >/dev/null
for _ in $(seq 240); do [ -n "$(q -c "SELECT last_failure_code FROM pay_get_invoice($INV2)")" ] && break; sleep 0.25; done
is "$(q -c "SELECT status || '|' || (next_attempt_at IS NULL) FROM pay_get_invoice($INV2)")" "open|true" "a declined first invoice has no retry scheduled"
is "$(q -c "SELECT data ->> 'retryable' FROM payments.events WHERE merchant_id = $M AND event_type = 'invoice.payment_failed' AND (data ->> 'invoice_id')::bigint = $INV2")" "false" \
	"its invoice.payment_failed event says it will not be retried"

###########################################################################
# 4. A subscription paused after its period ended but before the billing
#    run renewed it (pg_cron every few minutes, the billing process
#    deferring under load, an outage): the pause is refused, so the part of
#    June served is invoiced (before: June 1-20 was never billed).
# billing by pg_cron only (README: payments.billing_interval = 0); no cron run happens to fall in between here
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM SET payments.billing_interval = 0" -c "SELECT pg_reload_conf()" >/dev/null
# (the billing process must have reread it before the clock moves: a round
# of its own under the old interval, woken by that move, renewed June, and
# the pause below was no longer refused)
ok "$(passed process_reread billing payments.billing_interval 0)" "4: the billing process runs no renewals of its own (payments.billing_interval = 0)"
customer_with_card pause-due
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '30.00 USD', interval_unit => 'month')")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
q -c "SELECT pay_set_test_clock('2095-06-20 00:00+00')" >/dev/null   # June's renewal is due, not yet run
is "$(sqlstate_of "SELECT pay_pause_subscription($SID)")" 22Y20 "a pause while the renewal is due is refused"
q -c "SELECT pay_set_test_clock('2095-06-25 00:00+00')" >/dev/null
q -c "SELECT 1 FROM pay_resume_subscription($SID)" >/dev/null || true
q -c "SELECT pay_run_renewals()" >/dev/null
# June 1-20 was served: it is invoiced (30.00 for June whole, or pausing is refused until June is renewed)
is "$(q -c "SELECT coalesce(sum(pay_minor_units(amount)), 0) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1 AND status <> 'void'")" 3000 \
	"June, served from June 1, is invoiced 30.00 USD"
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null

###########################################################################
# 5. Bad input gets the documented error.
customer_with_card bad-input
# 1. README: abbreviations are refused (22023); subscriptions.sql
#    _check_time_zone: "an abbreviation such as EST (a fixed offset without
#    daylight saving) ... is refused". EST is accepted: a New York merchant
#    passing it bills at 10:00 EDT all summer.
is "$(sqlstate_of "SELECT pay_create_subscription(customer_id => $CID, price => '1.00 USD', interval_unit => 'month', time_zone => 'EST')")" 22023 \
	"time_zone => 'EST' (an abbreviation, fixed offset) is refused"
# 2. every other get/list function says a NULL id is a missing argument (22004)
is "$(sqlstate_of "SELECT pay_get_invoice(NULL)")" 22004 "pay_get_invoice(NULL) is 22004 (missing argument), like pay_get_subscription(NULL), not PT404 'invoice <NULL> not found'"
# 3. a plan/subscription of 69+ years is accepted (interval_count 1-366 for
#    every unit), but computing its period index overflows (22003 integer out of range)
got=$(sqlstate_of "SELECT pay_create_subscription(customer_id => $CID, price => '1.00 USD', interval_unit => 'year', interval_count => 100, billing_anchor => '2090-01-01 00:00')" || true)
ok "$([ "$got" != 22003 ] && echo 0 || echo 1)" "a 100-year interval with an anchor is not an integer overflow (got $got)"
# 4. a two-dimensional retry_days is 0A000 from array_position, not the documented 22023
is "$(sqlstate_of "SELECT pay_set_dunning_policy(retry_days => '{{1,2},{3,4}}')")" 22023 "a 2-D retry_days is 22023"

tap_done
