#!/usr/bin/env bash
# What a discarded dead letter leaves.  A purchase that provably never
# reached the gateway (reason 19 until its attempts ran out) and is
# discarded cancels its payment (it stayed pending for good); a
# subscription's first charge discarded lets the subscription expire
# (incomplete_expired), a renewal's sends its invoice into dunning
# (past_due), where both used to stall.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-discard"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
q() { as_merchant "$@"; }
cleanup() {
	qo -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
wait_dead() { # PAYMENT_ID: waits for its last operation to be dead; prints the operation id
	local op
	for i in $(seq 100); do
		op=$(qo -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $1 AND status = 'dead'")
		[ -n "$op" ] && break; sleep 0.1; done
	echo "$op"
}
# subscribe EMAIL PRICE: a new customer with a card, subscribed monthly
# from 2095-05-01 (the merchant's test clock); prints the subscription id
subscribe() {
	local cid pm
	q -c "SELECT pay_set_test_clock('2095-05-01 00:00+00')" >/dev/null
	cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => '$1', name => 'Dee Discard')")
	pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('4111111111111111', 12, 2030, '123', 'C'), validation_mode => 'none')")
	q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')" >/dev/null
	q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $cid, price => '$2', interval_unit => 'month')"
}
qo -c "ALTER SYSTEM SET payments.max_attempts = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 1)" "the worker goes by a budget of one attempt"

###########################################################################
# 1. A purchase the gateway answered "try again" (reason 19: processed
#    nothing) until its attempts ran out, then discarded: nothing was ever
#    charged, yet the payment stays pending for good.
merchant_on_simulator hb-discard1 1000
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '9019.00 USD', card => pay_card('4111111111111111', 12, $Y, '123'))")
op=$(wait_dead $pid)
comment "dead: $(qo -c "SELECT concat_ws(' ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
qo -c "SELECT payments.pay_discard_dead_letter($M, $op)" >/dev/null
st=$(q -c "SELECT status FROM pay_wait($pid, '30 s')")
comment "events: $(qo -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $pid")"
is "$st" canceled "a discarded purchase that provably never reached the gateway cancels its payment"
is "$(q -c "SELECT decline_code FROM pay_get_payment($pid)")" discarded "with decline_code discarded"
like "$(qo -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $pid")" "payment.canceled" "and its payment.canceled event"

###########################################################################
# 2. A subscription's first invoice whose charge became a dead letter and
#    was discarded: the subscription stays incomplete for good (the renewal
#    run pushes its deadline a minute at a time, forever).
merchant_on_simulator hb-discard2 1000
SID=$(subscribe d2@example.com '9019.00 USD')
pid=$(qo -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")
op=$(wait_dead $pid)
comment "first charge dead: $(qo -c "SELECT concat_ws(' ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
qo -c "SELECT payments.pay_discard_dead_letter($M, $op)" >/dev/null
q -c "SELECT pay_set_test_clock('2095-05-03 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
comment "subscription: $(q -c "SELECT concat_ws(' ', status, next_renewal_at) FROM pay_get_subscription($SID)"); invoice: $(qo -c "SELECT concat_ws(' ', status, next_attempt_at) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID"); payment: $(q -c "SELECT status FROM pay_get_payment($pid)")"
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" incomplete_expired \
	"an incomplete subscription whose first charge was discarded expires after 23 hours"

###########################################################################
# 3. An active subscription whose renewal charge became a dead letter and
#    was discarded: its invoice stays open with no retry and no dunning,
#    the subscription stays active and goes on renewing.
merchant_on_simulator hb-discard3 1000
SID=$(subscribe d3@example.com '10.00 USD')
q -c "SELECT status FROM pay_wait((SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID), '10 s')" >/dev/null
for _ in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($SID)")" = active ] && break; sleep 0.25; done
q -c "SELECT 1 FROM pay_change_subscription($SID, price => '9019.00 USD', proration => 'none')" >/dev/null
q -c "SELECT pay_set_test_clock('2095-06-01 00:00+00')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
INV=$(qo -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")
pid=$(qo -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $INV")
op=$(wait_dead $pid)
comment "renewal charge dead: $(qo -c "SELECT concat_ws(' ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
qo -c "SELECT payments.pay_discard_dead_letter($M, $op)" >/dev/null
q -c "SELECT pay_set_test_clock('2095-06-20 00:00+00')" >/dev/null
q -c "SELECT pay_run_dunning()" >/dev/null
comment "subscription: $(q -c "SELECT concat_ws(' ', status, next_renewal_at) FROM pay_get_subscription($SID)"); invoice: $(qo -c "SELECT concat_ws(' ', status, attempt_count, next_attempt_at) FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $INV"); payment: $(q -c "SELECT status FROM pay_get_payment($pid)")"
comment "billing events: $(qo -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND event_type LIKE 'invoice.%' OR (merchant_id = $M AND event_type LIKE 'subscription.%')")"
is "$(q -c "SELECT status FROM pay_get_subscription($SID)")" past_due \
	"a subscription whose renewal charge was discarded goes past_due (dunning), not left active with its invoice open"
tap_done
