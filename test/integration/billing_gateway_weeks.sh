#!/usr/bin/env bash
# Billing against a failing gateway over weeks of billing time (the
# merchant's test clock), every cent checked against the simulator's
# ledger and the invoices, every event counted:
# 1. a renewal whose charge outcome stays unknown for days (then past the
#    next period), resolved approved: no dunning meanwhile, the next period
#    billed, the invoice paid once;
# 2. the same resolved declined: dunning starts once, from the resolution;
# 3. a daily plan with the gateway answering 503 for a week, then back:
#    each period billed once, in order, no dunning;
# 4. a renewal refunded, then the next period billed in full;
# 5. declines on each day of the schedule, a new card mid-dunning;
# 6. the card expired between renewals (final decline), a new card;
# 7. a daily plan a month behind caught up while the billing process is
#    terminated again and again and an owner's run goes beside it;
# 8. a first invoice unknown past the 23 hours of an incomplete one;
# 9. pg_cron mode (payments.billing_interval = 0), a week behind;
# 10. a renewal answered as held for review, approved at the gateway;
# 11. an unknown renewal resolved past the duplicate window, by lookup;
# 12. the worker SIGKILLed while a renewal's charge is at the gateway.
# Each case on a merchant of its own.  (No defect found by these: they
# hold the behaviour README "Invoices and dunning" describes.)
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-billing-gateway-weeks"
trap 'unpark; sim_ctl DELETE /faults >/dev/null 2>&1 || true; sim_stop; cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null' EXIT
sim_start "$SIMDIR"
q() { as_merchant "$@"; }
su() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
# customer_with_card NAME [BILLING]: a merchant of its own at the start of
# May 2095 (billing time), and a customer of it with a default card; sets M
# and CID
customer_with_card() {
	merchant_on_simulator "billing-weeks $1"
	q -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" >/dev/null
	CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', name => '$1'${2:+, billing => '$2'})")
	saved_method "$CID" 4111111111111111 >/dev/null
}
# clock T: the billing clock moved to T, the runs made in that transaction
clock() {
	q -c "BEGIN" -c "SELECT pay_set_test_clock('$1')" -c "SELECT pay_run_renewals()" -c "SELECT pay_run_dunning()" -c "COMMIT" >/dev/null
}
# events TYPE INVOICE: how many events of TYPE name the invoice
events() {
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = '$1' AND (data ->> 'invoice_id')::bigint = $2"
}
inv_of() { q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1 AND kind IN ('first', 'renewal') AND period_index = $2"; }
# june_renewal FAULT: the simulator's next charge gets FAULT (its control
# API's JSON); the clock moved to June 1 and subscription SID renewed; sets
# INV and PID (its invoice and charge)
june_renewal() {
	sim_ctl POST /faults "$1" >/dev/null
	clock '2095-06-01 00:00+00'
	INV=$(inv_of "$SID" 1)
	PID=$(q -c "SELECT payment_id FROM pay_get_invoice($INV)")
}
# unknown_renewal CASE: the June renewal of subscription SID, charged by
# the simulator, which holds its answer past the worker's timeout (3 s):
# unknown, and kept so (park_after_send) until release; sets INV and PID
unknown_renewal() {
	park_after_send "$M" "'unknown'"
	june_renewal '{"type":"hold","count":1,"holdMs":6000,"requestType":"createTransactionRequest"}'
	ok "$(passed wait_sql "(SELECT status = 'unknown' FROM pay_get_payment($PID))" 20)" "$1: the renewal's charge is unknown"
}
# settle INVOICE: its charge answered and applied
settle() {
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_get_invoice($1)")
	q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
	invoice_settled "$1"
	sleep 0.3
}
release() {
	unpark
	su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND status = 'unknown'" -c "SELECT payments._wake_at_commit()" >/dev/null
}

###########################################################################
# 1. unknown for days, then approved
customer_with_card unknown-paid
SID=$(paid_subscription "$CID")
unknown_renewal 1
for d in 02 03 04 05 06 07 08 09 10 20; do clock "2095-06-$d 00:00+00"; done
is "$(q -c "SELECT s.status || '|' || i.status || '|' || (i.next_attempt_at IS NULL) || '|' || i.attempt_count FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" \
	"active|open|true|1" "1: twenty days unknown: still active, the invoice open, no retry scheduled, one attempt"
is "$(events invoice.payment_failed "$INV")" 0 "1: no invoice.payment_failed while unknown"
# past the next period's end: July is renewed and paid meanwhile
clock '2095-07-02 00:00+00'
INV2=$(inv_of "$SID" 2)
pid2=$(q -c "SELECT payment_id FROM pay_get_invoice($INV2)")
q -c "SELECT status FROM pay_wait($pid2, '10 s')" >/dev/null
wait_for "SELECT status FROM pay_get_invoice($INV2)" paid >/dev/null
is "$(q -c "SELECT s.status || '|' || s.current_period_index FROM pay_get_subscription($SID) s")" "active|2" "1: July renewed while June's charge is unknown"
release
q -c "SELECT status FROM pay_wait($PID, '30 s')" >/dev/null
wait_for "SELECT status FROM pay_get_invoice($INV)" paid >/dev/null
is "$(q -c "SELECT p.status || '|' || i.status || '|' || i.amount FROM pay_get_payment($PID) p, pay_get_invoice($INV) i")" "succeeded|paid|25.00 USD" \
	"1: resolved approved: the June invoice is paid"
is "$(invoice_ledger_charges "$INV")" 1 "1: June charged once at the gateway"
is "$(invoice_ledger_charges "$INV2")" 1 "1: July charged once at the gateway"
is "$(events invoice.paid "$INV")|$(events invoice.payment_failed "$INV")|$(events invoice.retry_attempted "$INV")" "1|0|0" "1: invoice.paid once, no failure, no retry"
is "$(q -c "SELECT status || '|' || current_period_index || '|' || next_renewal_at FROM pay_get_subscription($SID)")" \
	"active|2|2095-08-01 00:00:00+00" "1: active, renewing at the end of July"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type IN ('subscription.past_due', 'subscription.active') AND data ->> 'subscription_id' = '$SID'")" 1 \
	"1: no past_due, one active (its first payment)"
sim_ctl DELETE /faults >/dev/null

###########################################################################
# 2. unknown for days, then declined
customer_with_card unknown-declined '{"zip":"10001"}'
SID=$(paid_subscription "$CID")
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null   # declines (reason 2)
unknown_renewal 2
for d in 02 03 04 05 06 07 08 09 10; do clock "2095-06-$d 00:00+00"; done
is "$(q -c "SELECT s.status || '|' || i.status || '|' || (i.next_attempt_at IS NULL) || '|' || (i.first_failed_at IS NULL) FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" \
	"active|open|true|true" "2: nine days unknown: no dunning"
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
release
q -c "SELECT status FROM pay_wait($PID, '30 s')" >/dev/null
wait_for "SELECT status FROM pay_get_subscription($SID)" past_due >/dev/null
is "$(q -c "SELECT p.status || '|' || s.status || '|' || i.status || '|' || i.first_failed_at || '|' || i.next_attempt_at FROM pay_get_payment($PID) p, pay_get_subscription($SID) s, pay_get_invoice($INV) i")" \
	"failed|past_due|open|2095-06-10 00:00:00+00|2095-06-11 00:00:00+00" "2: resolved declined on June 10: past_due, first retry a day later"
is "$(events invoice.payment_failed "$INV")" 1 "2: invoice.payment_failed once"
clock '2095-06-11 00:00+00'
pid=$(q -c "SELECT payment_id FROM pay_get_invoice($INV)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
is "$(q -c "SELECT s.status || '|' || i.status || '|' || i.attempt_count FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "active|paid|2" "2: the first retry is approved: paid, active"
is "$(invoice_ledger_charges "$INV")" 1 "2: one charge at the gateway for June (the declined one is not a charge)"
sim_ctl DELETE /faults >/dev/null

###########################################################################
# 3. a daily plan, the gateway answering 503 for a week, then back
customer_with_card down-week
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '1.00 USD', interval_unit => 'day')")
pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
sim_ctl POST /faults '{"type":"http5xx","rate":1.0,"status":503}' >/dev/null
for d in 02 03 04 05 06 07 08; do clock "2095-05-$d 00:00+00"; sleep 0.5; done
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")" 8 "3: a week down: every day invoiced once (8 invoices)"
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" active "3: no dunning for charges the gateway never answered"
sim_ctl DELETE /faults >/dev/null
su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND status IN ('unknown', 'queued')" -c "SELECT payments._wake_at_commit()" >/dev/null
wait_for "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id IS NOT NULL AND status IN ('pending', 'unknown', 'in_review')" 0 60 >/dev/null
comment "$(q -c "SELECT string_agg(i.period_index || ':' || i.status || ':' || p.status || ':' || i.attempt_count, ' ' ORDER BY i.period_index) FROM payments.invoices i JOIN payments.payments p USING (merchant_id, payment_id) WHERE i.merchant_id = $M")"
is "$(q -c "SELECT string_agg(status, ',' ORDER BY period_index) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")" \
	"paid,paid,paid,paid,paid,paid,paid,paid" "3: back: every period paid"
n=0; for i in $(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID"); do n=$((n + $(invoice_ledger_charges "$i"))); done
is "$n" 8 "3: eight charges at the gateway, one per day"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type IN ('invoice.payment_failed', 'subscription.past_due')")" 0 "3: no failure events"
is "$(q -c "SELECT string_agg(data ->> 'period_index', ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND event_type = 'subscription.renewed'")" "1,2,3,4,5,6,7" "3: renewed once per period, in order"

###########################################################################
# 4. a renewal refunded, then the next period
customer_with_card refund-renewal
SID=$(paid_subscription "$CID")
clock '2095-06-01 00:00+00'
INV=$(inv_of "$SID" 1)
PID=$(q -c "SELECT payment_id FROM pay_get_invoice($INV)")
q -c "SELECT status FROM pay_wait($PID, '10 s')" >/dev/null
sim_ctl POST /settle >/dev/null
wait_sql "(SELECT settled_at IS NOT NULL FROM pay_get_payment($PID))" 30 || true
q -c "SELECT 1 FROM pay_refund(payment_id => $PID, amount => '25.00 USD')" >/dev/null
rop=$(q -c "SELECT max(operation_id) FROM pay_payment_operations($PID) WHERE kind = 'refund'")
op_is "$rop" succeeded || true
is "$(q -c "SELECT p.status || '|' || i.status || '|' || s.status FROM pay_get_payment($PID) p, pay_get_invoice($INV) i, pay_get_subscription($SID) s")" "refunded|paid|active" \
	"4: a refunded renewal leaves the invoice paid and the subscription active"
clock '2095-07-01 00:00+00'
INV2=$(inv_of "$SID" 2)
pid=$(q -c "SELECT payment_id FROM pay_get_invoice($INV2)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
wait_for "SELECT status FROM pay_get_invoice($INV2)" paid >/dev/null
is "$(q -c "SELECT amount || '|' || status FROM pay_get_invoice($INV2)")" "25.00 USD|paid" "4: July billed in full"
is "$(refund_ledger "$PID")" "refund 25.00;" "4: June refunded once at the gateway"

###########################################################################
# 5. declined on every day of the schedule, a new card mid-dunning
customer_with_card schedule '{"zip":"10001"}'
SID=$(paid_subscription "$CID")
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null   # declines (reason 2)
clock '2095-06-01 00:00+00'
INV=$(inv_of "$SID" 1)
settle "$INV"
is "$(q -c "SELECT s.status || '|' || i.next_attempt_at FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "past_due|2095-06-02 00:00:00+00" "5: declined: past_due, retry on day 1"
clock '2095-06-02 00:00+00'; settle "$INV"
clock '2095-06-04 00:00+00'; settle "$INV"
is "$(q -c "SELECT i.attempt_count || '|' || i.next_attempt_at FROM pay_get_invoice($INV) i")" "3|2095-06-06 00:00:00+00" "5: day 1 and 3 declined: retry on day 5"
# day 4: a new card, made the default, itself declined (the address still fails)
saved_method "$CID" 5424000000000015 >/dev/null
settle "$INV"
is "$(q -c "SELECT i.attempt_count || '|' || i.next_attempt_at || '|' || s.status FROM pay_get_invoice($INV) i, pay_get_subscription($SID) s")" "4|2095-06-06 00:00:00+00|past_due" \
	"5: the new card is tried at once; declined, the schedule goes on (day 5)"
q -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
clock '2095-06-06 00:00+00'; settle "$INV"
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
is "$(q -c "SELECT s.status || '|' || i.status || '|' || i.attempt_count || '|' || (i.next_attempt_at IS NULL) FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "active|paid|5|true" "5: day 5 approved: paid, active"
clock '2095-06-08 00:00+00'
clock '2095-06-09 00:00+00'
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $INV")" 5 "5: no charge after it was paid"
is "$(invoice_ledger_charges "$INV")" 1 "5: charged once at the gateway (25.00)"
is "$(events invoice.payment_failed "$INV")|$(events invoice.retry_scheduled "$INV")|$(events invoice.retry_attempted "$INV")|$(events invoice.paid "$INV")" "4|4|4|1" \
	"5: events: four failures, four retries scheduled (the new card's decline too), four retries attempted, paid once"
is "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND event_type IN ('subscription.past_due', 'subscription.active') AND data ->> 'subscription_id' = '$SID'")" \
	"subscription.active,subscription.past_due,subscription.active" "5: past_due once, active again once"
clock '2095-07-01 00:00+00'
INV2=$(inv_of "$SID" 2)
settle "$INV2"
is "$(q -c "SELECT amount || '|' || status FROM pay_get_invoice($INV2)")" "25.00 USD|paid" "5: July billed 25.00 and paid"

###########################################################################
# 6. the card expires between renewals (the simulator's clock passes it)
customer_with_card expired
PM=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => pay_card('4012888888881881', $(date -u +%m | sed 's/^0//'), $(date -u +%Y), '123', 'C'), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($PM, '10 s')" >/dev/null
SID=$(paid_subscription "$CID")   # the default: the card that expires
sim_ctl POST /clock '{"advanceSeconds":5356800}' >/dev/null   # 62 days: past the card's month
clock '2095-06-01 00:00+00'
INV=$(inv_of "$SID" 1)
settle "$INV"
is "$(q -c "SELECT s.status || '|' || i.last_failure_code || '|' || i.next_attempt_at FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" \
	"past_due|8|2095-06-08 00:00:00+00" "6: expired (reason 8, final): no retry, the final action on day 7"
clock '2095-06-03 00:00+00'
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $INV")" 1 "6: not retried on day 1"
saved_method "$CID" 5424000000000015 >/dev/null
settle "$INV"
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
is "$(q -c "SELECT s.status || '|' || i.status || '|' || i.attempt_count FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "active|paid|2" "6: a new default card pays it at once"
is "$(invoice_ledger_charges "$INV")" 1 "6: charged once"
clock '2095-06-09 00:00+00'
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" active "6: no final action on day 7 after it was paid"
sim_ctl POST /clock '{"advanceSeconds":-5356800}' >/dev/null

###########################################################################
# 7. a daily plan a month behind: the billing process catches up while it
#    is terminated again and again and a pg_cron-like run (the owner, every
#    merchant) runs beside it
customer_with_card catch-up
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '0.37 USD', interval_unit => 'day')")
pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
q -c "SELECT pay_set_test_clock('2095-05-31 00:00+00')" >/dev/null
for _ in 1 2 3 4 5 6; do
	su -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'payments billing'" >/dev/null
	su -c "SELECT payments.pay_run_renewals(max_count => 1)" >/dev/null 2>&1 || true
	sleep 0.4
done
wait_for "SELECT current_period_index FROM pay_get_subscription($SID)" 30 60 >/dev/null
wait_for "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id IS NOT NULL AND status IN ('pending', 'unknown', 'in_review')" 0 60 >/dev/null
is "$(q -c "SELECT count(*) || '|' || count(DISTINCT period_index) || '|' || min(period_index) || '|' || max(period_index) || '|' || count(*) FILTER (WHERE status = 'paid') || '|' || sum(pay_minor_units(amount)) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")" \
	"31|31|0|30|31|1147" "7: 31 days, 31 invoices of 0.37, one per day, all paid"
is "$(q -c "SELECT string_agg(period_index::text, ',' ORDER BY invoice_id) = string_agg(period_index::text, ',' ORDER BY period_index) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")" t "7: invoiced in order"
is "$(q -c "SELECT count(*) || '|' || count(DISTINCT data ->> 'period_index') FROM payments.events WHERE merchant_id = $M AND event_type = 'subscription.renewed'")" "30|30" "7: subscription.renewed once per period"
n=0; for i in $(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID"); do n=$((n + $(invoice_ledger_charges "$i"))); done
is "$n" 31 "7: 31 charges at the gateway"
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id IS NOT NULL")" 31 "7: 31 payments, none twice"

###########################################################################
# 8. a first invoice whose charge stays unknown past the 23 hours an
#    incomplete subscription waits, then approved: not expired, active
customer_with_card first-unknown
park_after_send "$M" "'unknown'"
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":6000,"requestType":"createTransactionRequest"}' >/dev/null
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '25.00 USD', interval_unit => 'month')")
INV=$(inv_of "$SID" 0)
PID=$(q -c "SELECT payment_id FROM pay_get_invoice($INV)")
ok "$(passed wait_sql "(SELECT status = 'unknown' FROM pay_get_payment($PID))" 20)" "8: the first charge is unknown"
for d in 02 03 05; do clock "2095-05-$d 00:00+00"; done
is "$(q -c "SELECT s.status || '|' || i.status FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "incomplete|open" "8: four days unknown: still incomplete, not expired"
release
q -c "SELECT status FROM pay_wait($PID, '30 s')" >/dev/null
wait_for "SELECT status FROM pay_get_subscription($SID)" active >/dev/null
is "$(q -c "SELECT s.status || '|' || i.status || '|' || s.next_renewal_at FROM pay_get_subscription($SID) s, pay_get_invoice($INV) i")" "active|paid|2095-06-01 00:00:00+00" \
	"8: approved on May 5: active, paid, renewing on June 1"
clock '2095-05-06 00:00+00'
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" active "8: a run after it leaves it active"
is "$(invoice_ledger_charges "$INV")" 1 "8: charged once"
sim_ctl DELETE /faults >/dev/null

###########################################################################
# 9. pg_cron mode (payments.billing_interval = 0): the owner's runs, every
#    merchant, a daily plan a week behind
su -c "ALTER SYSTEM SET payments.billing_interval = 0" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread billing payments.billing_interval 0)" "9: the billing process runs nothing of its own"
customer_with_card cron '{"zip":"10001"}'
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '2.00 USD', interval_unit => 'day')")
settle "$(inv_of "$SID" 0)"
q -c "SELECT pay_set_test_clock('2095-05-08 00:00+00')" >/dev/null
sleep 1
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M")" 1 "9: nothing renewed by the billing process"
# cron: each tick one call of each run as the owner
for _ in $(seq 12); do
	su -c "SELECT payments.pay_run_renewals()" -c "SELECT payments.pay_run_dunning()" >/dev/null
	invoice_settled "$(q -c "SELECT max(invoice_id) FROM payments.invoices WHERE merchant_id = $M")"
	sleep 0.2
done
is "$(q -c "SELECT string_agg(period_index || ':' || status, ',' ORDER BY invoice_id) FROM payments.invoices WHERE merchant_id = $M")" \
	"0:paid,1:paid,2:paid,3:paid,4:paid,5:paid,6:paid,7:paid" "9: caught up by the owner's runs: each day once, in order, paid"
n=0; for i in $(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M"); do n=$((n + $(invoice_ledger_charges "$i"))); done
is "$n" 8 "9: eight charges at the gateway"
su -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null

###########################################################################
# 10. a renewal the gateway answers as held for review (the reply
#     rewritten: responseCode 4), which it had approved: in_review changes
#     nothing for days, then the worker learns it was approved
customer_with_card held
SID=$(paid_subscription "$CID")
june_renewal '{"type":"rewrite","count":1,"requestType":"createTransactionRequest","set":{"transactionResponse.responseCode":"4"}}'
wait_sql "(SELECT status NOT IN ('pending', 'unknown') FROM pay_get_payment($PID))" 20 || true
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND payment_id = $PID AND event_type = 'payment.in_review'")" 1 \
	"10: the renewal's charge was held for review (payment.in_review)"
for d in 02 04 06 08 10; do clock "2095-06-$d 00:00+00"; done
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $INV")|$(events invoice.retry_attempted "$INV")" "1|0" "10: no retry while it is held or once it is answered"
wait_for "SELECT status FROM pay_get_invoice($INV)" paid 60 >/dev/null
is "$(q -c "SELECT p.status || '|' || i.status || '|' || s.status FROM pay_get_payment($PID) p, pay_get_invoice($INV) i, pay_get_subscription($SID) s")" "succeeded|paid|active" \
	"10: the held charge, approved at the gateway, pays the invoice"
is "$(invoice_ledger_charges "$INV")|$(events invoice.paid "$INV")|$(events invoice.payment_failed "$INV")" "1|1|0" "10: charged once, paid once, no failure"
sim_ctl DELETE /faults >/dev/null

###########################################################################
# 11. a renewal of unknown outcome resolved past the duplicate window (the
#     gateway's lists searched for its invoice number), days later
customer_with_card past-window
SID=$(paid_subscription "$CID")
unknown_renewal 11
for d in 03 05 07 09; do clock "2095-06-$d 00:00+00"; done
su -c "UPDATE payments.operations SET first_sent_at = now() - interval '9 hours' WHERE merchant_id = $M AND payment_id = $PID" >/dev/null
release
q -c "SELECT status FROM pay_wait($PID, '30 s')" >/dev/null
wait_for "SELECT status FROM pay_get_invoice($INV)" paid 30 >/dev/null
is "$(q -c "SELECT p.status || '|' || i.status || '|' || s.status FROM pay_get_payment($PID) p, pay_get_invoice($INV) i, pay_get_subscription($SID) s")" "succeeded|paid|active" \
	"11: found at the gateway by its invoice number: paid"
is "$(invoice_ledger_charges "$INV")|$(events invoice.paid "$INV")|$(events invoice.payment_failed "$INV")" "1|1|0" "11: charged once, paid once, no failure"
sim_ctl DELETE /faults >/dev/null

###########################################################################
# 12. the worker killed (SIGKILL: a crash restart of the server) while the
#     renewal's charge is at the gateway: unknown at the next start,
#     resolved from the gateway, charged and paid once
customer_with_card killed
SID=$(paid_subscription "$CID")
june_renewal '{"type":"hold","count":1,"holdMs":2500,"requestType":"createTransactionRequest"}'
ok "$(passed wait_sql "(SELECT bool_or(status = 'sending') FROM payments.operations WHERE merchant_id = $M AND payment_id = $PID)" 20)" \
	"12: the renewal's charge is being sent (the simulator holds its answer)"
as_root kill -KILL "$(worker_pid)"
up() { cluster_psql "$WORK" "$PORT" payments -Atc "SELECT 1" 2>/dev/null && [ -n "$(worker_pid)" ] && echo up; }
ok "$([ -n "$(poll_value 60 up)" ]; echo $?)" "12: the server is back after the worker's SIGKILL"
q -c "SELECT status FROM pay_wait($PID, '30 s')" >/dev/null || true
wait_for "SELECT status FROM pay_get_invoice($INV)" paid 60 >/dev/null
is "$(q -c "SELECT p.status || '|' || i.status || '|' || s.status || '|' || i.attempt_count FROM pay_get_payment($PID) p, pay_get_invoice($INV) i, pay_get_subscription($SID) s")" "succeeded|paid|active|1" \
	"12: resolved after the restart: paid by its one charge"
is "$(invoice_ledger_charges "$INV")|$(events invoice.paid "$INV")|$(events invoice.payment_failed "$INV")|$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'subscription.renewed'")" "1|1|0|1" \
	"12: charged once at the gateway, paid once, no failure, renewed once"
sim_ctl DELETE /faults >/dev/null

tap_done
