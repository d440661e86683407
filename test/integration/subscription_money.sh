#!/usr/bin/env bash
# Subscription money to the cent, over a billing period (the merchant's test
# clock moves through April and May):
# 1. A change without proration (none) sets the terms of the next period
#    only.  A prorated change later in the same period credited the unused
#    time at the unbilled terms: up to 300.00 (none) and back to 30.00
#    (invoice_now) on day 11 credited 180.00 and May was free; down to 3.00
#    and back charged 18.29 for time already paid.
# 2. A credit carried to the next invoice (a downgrade with invoice_now)
#    vanished, without an event, when the subscription was canceled with
#    that invoice open (declined): the void invoice kept it.  Now it is
#    closed on the final invoice (subscription.pending_items_closed).
# 3. A change at the trial's end, whose proration invoice was paid before
#    period 0's charge was answered, made the subscription active (and a
#    subscription.active event) although that charge was then declined.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-subscription-money"
trap 'sim_stop' EXIT
sim_start "$SIMDIR"
q() { as_merchant "$@"; }

# 1. proration none, then a prorated change in the same period
merchant_on_simulator "money_none"
q -c "SELECT pay_set_test_clock('2095-04-01 00:00+00')" >/dev/null
CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'j7@example.com', name => 'J Seven')")
PM=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => pay_card('4111111111111111', 12, 2030, '123', 'C'), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($PM, '10 s')" >/dev/null
sub() {
	local sid
	sid=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '30.00 USD', interval_unit => 'month')")
	q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid), '10 s')" >/dev/null
	for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($sid)")" = active ] && break; sleep 0.25; done
	echo "$sid"
}
S1=$(sub); S2=$(sub)
is "$(q -c "SELECT string_agg(amount::text, ',') FROM payments.invoices WHERE merchant_id = $M")" "30.00 USD,30.00 USD" "both paid 30.00 for April"
q -c "SELECT pay_set_test_clock('2095-04-11 00:00+00')" >/dev/null
# 1. up to 300.00 from the next period (none), then back to 30.00 prorated
q -c "SELECT 1 FROM pay_change_subscription($S1, price => '300.00 USD', proration => 'none')" >/dev/null
is "$(q -c "SELECT pay_preview_subscription_change($S1, price => '30.00 USD', proration => 'invoice_now') ->> 'total'")" "0.00 USD" \
	"back to the price April was paid at: the preview credits nothing"
q -c "SELECT 1 FROM pay_change_subscription($S1, price => '30.00 USD', proration => 'invoice_now')" >/dev/null
comment "$(q -c "SELECT string_agg(amount || ' ' || status || ' ' || lines::text, E'\n') FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $S1 AND kind = 'proration'")"
is "$(q -c "SELECT coalesce(sum(amount)::text, 'none') FROM payments.invoice_items WHERE merchant_id = $M AND subscription_id = $S1 AND invoice_id IS NULL")" "none" \
	"no credit carried: the customer paid 30.00 for April and stays at 30.00"
q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
is "$(q -c "SELECT amount FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $S1 AND period_index = 1")" "30.00 USD" \
	"May is charged 30.00 (not wiped out by a credit of unused time at 300.00, a price never paid)"
# 2. down to 3.00 from the next period (none), then back to 30.00 prorated
q -c "SELECT pay_set_test_clock('2095-05-11 00:00+00')" >/dev/null
pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $S2 AND period_index = 1")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
q -c "SELECT 1 FROM pay_change_subscription($S2, price => '3.00 USD', proration => 'none')" >/dev/null
is "$(q -c "SELECT pay_preview_subscription_change($S2, price => '30.00 USD', proration => 'invoice_now') ->> 'total'")" "0.00 USD" \
	"back to the price May was paid at: the preview charges nothing"
q -c "SELECT 1 FROM pay_change_subscription($S2, price => '30.00 USD', proration => 'invoice_now')" >/dev/null
is "$(q -c "SELECT coalesce(string_agg(amount::text, ','), 'none') FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $S2 AND kind = 'proration'")" "none" \
	"no proration invoice: May was paid at 30.00 already"

# 2. a carried credit on an invoice voided by a cancel
merchant_on_simulator "money_credit"
q -c "SELECT pay_set_test_clock('2095-04-01 00:00+00')" >/dev/null
CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'j5@example.com', name => 'J Five', billing => '{\"zip\":\"10001\"}')")
PM=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => pay_card('4111111111111111', 12, 2030, '123', 'C'), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($PM, '10 s')" >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '30.00 USD', interval_unit => 'month')")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = active ] && break; sleep 0.25; done
# day 20 of 30: down to 20.00, invoice_now: -10.00 + 6.67 = -3.33, carried
q -c "SELECT pay_set_test_clock('2095-04-21 00:00+00')" >/dev/null
q -c "SELECT 1 FROM pay_change_subscription($SID, price => '20.00 USD', proration => 'invoice_now')" >/dev/null
is "$(q -c "SELECT sum(amount) FROM payments.invoice_items WHERE merchant_id = $M AND subscription_id = $SID AND invoice_id IS NULL")" "-3.33 USD" "a credit of 3.33 is carried to the next invoice"
# the renewal (20.00 - 3.33) is declined (billTo.zip 46282)
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null
q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" -c "SELECT pay_run_renewals()" -c "COMMIT" >/dev/null
inv=$(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal' AND period_index = 1")
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM pay_get_invoice($inv)), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = past_due ] && break; sleep 0.25; done
is "$(q -c "SELECT s.status || '|' || i.status || '|' || i.amount FROM pay_get_subscription($SID) s, pay_get_invoice($inv) i")" "past_due|open|16.67 USD" "renewal 20.00 - 3.33 declined: past_due"
# the merchant cancels now: the open invoice is voided
q -c "SELECT 1 FROM pay_cancel_subscription($SID)" >/dev/null
comment "$(q -c "SELECT string_agg(invoice_id || ':' || kind || ':' || status || ':' || amount || ':' || lines::text, E'\n' ORDER BY invoice_id) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'subscription.pending_items_closed' AND data ->> 'subscription_id' = '$SID'")" 1 \
	"README: a credit carried over is never dropped when the subscription ends (subscription.pending_items_closed reports it)"
is "$(q -c "SELECT coalesce(sum(amount)::text, 'none') FROM payments.invoice_items i WHERE i.merchant_id = $M AND i.subscription_id = $SID AND (i.invoice_id IS NULL OR i.invoice_id IN (SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND status IN ('paid','open','uncollectible') AND kind = 'proration' AND invoice_id > $inv))")" "-3.33 USD" \
	"the 3.33 credit is on the final proration invoice, not only on a void invoice"

# 3. a change at the trial's end, period 0 unanswered
merchant_on_simulator "money_trial"
q -c "SELECT pay_set_test_clock('2095-04-01 00:00+00')" >/dev/null
# billTo.zip 46282: the simulator declines the charge (reason 2)
CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'j3@example.com', name => 'J Three', billing => '{\"zip\":\"46282\"}')")
PM=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => pay_card('4111111111111111', 12, 2030, '123', 'C'), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($PM, '10 s')" >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '30.00 USD', interval_unit => 'month', trial_days => 3)")
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" trialing "trialing"
# the trial ends; the billing run invoices period 0 and queues its charge;
# in the same transaction (the charge not sent yet) a downgrade, invoice_now.
# The clock moves in that transaction too: moved before it, its COMMIT
# wakes the billing process, whose own run could invoice, charge and see
# the decline first (past_due: seen once in a full-suite run)
got=$(q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-04-14 00:00+00')" \
	-c "SELECT pay_run_renewals()" \
	-c "SELECT 1 FROM pay_change_subscription($SID, price => '15.00 USD', proration => 'invoice_now')" \
	-c "SELECT s.status || '|' || i.status || '|' || i.amount FROM pay_get_subscription($SID) s, payments.invoices i WHERE i.merchant_id = $M AND i.subscription_id = $SID AND i.kind = 'renewal' AND i.period_index = 0" \
	-c "COMMIT" | tail -1)
is "$got" "trialing|open|30.00 USD" "while period 0's invoice is open and its charge not answered, the subscription stays trialing (README)"
pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal' AND period_index = 0")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = past_due ] && break; sleep 0.25; done
comment "$(q -c "SELECT string_agg(invoice_id || ':' || kind || ':' || status || ':' || amount, ' ' ORDER BY invoice_id) FROM payments.invoices WHERE merchant_id = $M")"
is "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND event_type LIKE 'subscription.%' AND data ->> 'subscription_id' = '$SID'")" \
	"subscription.created,subscription.renewed,subscription.updated,subscription.past_due" \
	"no subscription.active event for a subscription whose trial-end charge was declined"
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" past_due "past_due after the decline"
# the same with an approved trial-end charge: active once it is paid
CID2=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'j3b@example.com', name => 'J Three B', billing => '{\"zip\":\"10001\"}')")
PM2=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID2, card => pay_card('4111111111111111', 12, 2030, '123', 'C'), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($PM2, '10 s')" >/dev/null
SID2=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID2, price => '30.00 USD', interval_unit => 'month', trial_days => 3)")
q -c "BEGIN" -c "SELECT pay_set_test_clock('2095-04-18 00:00+00')" -c "SELECT pay_run_renewals()" \
	-c "SELECT 1 FROM pay_change_subscription($SID2, price => '15.00 USD', proration => 'invoice_now')" -c "COMMIT" >/dev/null
pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID2 AND kind = 'renewal' AND period_index = 0")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID2)")" = active ] && break; sleep 0.25; done
is "$(q -c "SELECT status FROM pay_get_subscription($SID2)")" active "approved trial-end charge: active"
tap_done
