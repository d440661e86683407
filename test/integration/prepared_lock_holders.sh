#!/usr/bin/env bash
# Prepared transactions of one merchant holding what the billing process
# and the worker would lock stop neither for anyone else.  Merchant A
# prepares (PREPARE TRANSACTION: held until the owner ends it), each on a
# customer of its own with a daily subscription: a cancel at period end, a
# method change and a quantity change of the subscription, an update of the
# customer, a new default card, a card being saved, a new subscription;
# and a purchase, a partial refund of an earlier one, and the replay (same
# idempotency key) of a capture whose answer is on its way, which holds
# that payment's row while the worker has the answer to record.  Then a day
# passes on A's and B's test clocks: B's subscription and A's subscriptions
# that no prepared transaction locks are renewed and paid, B's purchase
# goes through, no process of the extension waits for a lock; A's capture
# stays unrecorded while its row is held.  Once the prepared transactions
# are rolled back, A's held subscriptions are renewed and its capture
# recorded, each charged or captured once (the simulator's ledger).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-prepared-lock-holders"
psqlq() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
	for g in $(psqlq -c "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'held_%'" 2>/dev/null); do
		psqlq -c "ROLLBACK PREPARED '$g'" >/dev/null 2>&1 || true
	done
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"

card() { echo "pay_card('$1', 12, $(( $(date +%Y) + 3 )), '123')"; }
daily() {	# daily CUSTOMER PRICE: a daily subscription, its first invoice paid
	local sid pid
	sid=$(as_merchant -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $1, price => '$2 USD', interval_unit => 'day')")
	pid=$(as_merchant -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")
	as_merchant -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$sid"
}
renewals_paid() {	# renewals_paid MERCHANT SUBSCRIPTION: its paid renewal invoices
	psqlq -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $1 AND subscription_id = $2
		AND kind = 'renewal' AND status = 'paid'"
}
prepare() {	# prepare GID SQL: SQL in a transaction of merchant M, prepared (it must not wait)
	as_merchant -c "SET lock_timeout = '10s'" -c "BEGIN" -c "$2" -c "PREPARE TRANSACTION '$1'" >/dev/null
}

merchant_on_simulator prepared_holder
A=$M
as_merchant -c "SELECT pay_set_test_clock(now())" >/dev/null
# each hold on a customer of its own, with a daily subscription
declare -A cust sub
for h in cancel method change free customer default save subscribe; do
	cust[$h]=$(subscription_customer "held_$h")
	saved_method "${cust[$h]}" 4111111111111111 >/dev/null
	sub[$h]=$(daily "${cust[$h]}" 11.00)
done
pm_other=$(saved_method "${cust[method]}" 5424000000000015 false)
pm_new_default=$(saved_method "${cust[default]}" 5424000000000015 false)
p=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '20.00 USD', card => $(card 4111111111111111))")
as_merchant -c "SELECT status FROM pay_wait($p, '20 s')" >/dev/null
pa=$(as_merchant -c "SELECT payment_id FROM pay_authorize(amount => '30.00 USD', card => $(card 4111111111111111))")
as_merchant -c "SELECT status FROM pay_wait($pa, '20 s')" >/dev/null

merchant_on_simulator prepared_other
B=$M
as_merchant -c "SELECT pay_set_test_clock(now())" >/dev/null
cb=$(subscription_customer other)
saved_method "$cb" 4111111111111111 >/dev/null
sb=$(daily "$cb" 21.00)

M=$A
prepare held_cancel "SELECT 1 FROM pay_cancel_subscription(${sub[cancel]}, at_period_end => true)"
prepare held_method "SELECT 1 FROM pay_update_subscription(${sub[method]}, payment_method_id => $pm_other)"
prepare held_change "SELECT 1 FROM pay_change_subscription(${sub[change]}, quantity => 2)"
prepare held_customer "SELECT 1 FROM pay_update_customer(${cust[customer]}, name => 'Held Open')"
prepare held_default "SELECT 1 FROM pay_set_default_payment_method($pm_new_default)"
prepare held_save "SELECT 1 FROM pay_save_payment_method(customer_id => ${cust[save]}, card => $(card 6011000000000012), validation_mode => 'none', make_default => false)"
prepare held_subscribe "SELECT 1 FROM pay_create_subscription(customer_id => ${cust[subscribe]}, price => '5.00 USD', interval_unit => 'day', trial_days => 3)"
prepare held_purchase "SELECT 1 FROM pay_purchase(amount => '3.00 USD', card => $(card 4111111111111111))"
prepare held_refund "SELECT 1 FROM pay_refund($p, amount => '1.00 USD')"
# a capture on its way to the gateway (its answer 4 s late), and a replay of
# the call with its idempotency key, prepared, holding the payment's row
sim_ctl POST /latency '{"fixedMs":4000,"randomMs":0}' >/dev/null
cap=$(as_merchant -c "SELECT operation_id FROM pay_capture($pa, idempotency_key => 'held-capture')")
prepare held_capture "SELECT 1 FROM pay_capture($pa, idempotency_key => 'held-capture')"
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
is "$(psqlq -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'held_%'")" 10 "merchant A holds ten prepared transactions"
sleep 5

M=$A as_merchant -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
M=$B as_merchant -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
paid_b() { [ "$(renewals_paid "$B" "$sb")" = 1 ] && echo 1; }
is "$(poll_value 60 paid_b)" 1 "a day on: merchant B's subscription is renewed and paid"
for h in free customer save subscribe; do
	paid_a() { [ "$(renewals_paid "$A" "${sub[$h]}")" = 1 ] && echo 1; }
	is "$(poll_value 30 paid_a)" 1 "... and so is A's subscription whose customer a prepared transaction holds ($h)"
done
is "$(psqlq -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'payments%' AND wait_event_type = 'Lock'")" 0 \
	"no process of the extension waits for a lock"
M=$B
pb=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', card => $(card 4111111111111111))")
is "$(as_merchant -c "SELECT status FROM pay_wait($pb, '20 s')")" succeeded "merchant B's purchase goes through"
is "$(renewals_paid "$A" "${sub[cancel]}")|$(renewals_paid "$A" "${sub[method]}")|$(renewals_paid "$A" "${sub[change]}")" "0|0|0" \
	"A's subscriptions the prepared transactions hold are not renewed yet (a new default card locks the customer's running subscriptions, _payment_method_dunning_retry)"

is "$(psqlq -c "SELECT status FROM payments.operations WHERE merchant_id = $A AND operation_id = $cap")" sending \
	"A's capture, answered meanwhile, is not recorded while a prepared replay holds its payment"
for g in held_capture held_cancel held_method held_change held_customer held_default held_save held_subscribe held_purchase held_refund; do
	psqlq -c "ROLLBACK PREPARED '$g'" >/dev/null
done
held_paid() { [ "$(renewals_paid "$A" "${sub[cancel]}")$(renewals_paid "$A" "${sub[method]}")$(renewals_paid "$A" "${sub[change]}")" = 111 ] && echo 1; }
is "$(poll_value 60 held_paid)" 1 "rolled back: they are renewed and paid at the next billing run"
M=$A
is "$(M=$A as_merchant -c "SELECT status FROM pay_wait($pa, '20 s')")" succeeded "A's capture is recorded once its payment is free"
is "$(sim_ledger_count "P$TAG$pa" capture)" 1 "... captured once at the gateway"
for h in "${!sub[@]}"; do
	inv=$(psqlq -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $A AND subscription_id = ${sub[$h]} AND kind = 'renewal'")
	is "$(invoice_ledger_charges "$inv")" 1 "subscription held by $h: its renewal charged once at the gateway"
done
tap_done
