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
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
SIMDIR="$WORK/sim-sub-isolation"
sessions_init subscription-isolation
cleanup() {
	sessions_kill
	sim_ctl DELETE /faults >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"

q() { as_merchant "$@"; }
new_customer() {
	q -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', name => 'Ada Lovelace')"
}
# subscribe CUSTOMER [METHOD]: a monthly subscription, its first invoice
# paid; prints its id
subscribe() {
	local sid pid
	sid=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $1, price => '25.00 USD', interval_unit => 'month'${2:+, payment_method_id => $2})")
	pid=$(q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")
	q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
	wait_for "SELECT status FROM pay_get_subscription($sid)" active >/dev/null
	echo "$sid"
}
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

tap_done
