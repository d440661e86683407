#!/usr/bin/env bash
# Rows a caller holds locked in an open transaction stop no one else.
# 1. The worker's housekeeping (when it starts, then once a minute) goes on
#    while callers hold rows it would change.  A merchant's open
#    transaction holds one of its stored methods (pay_set_default_payment_method
#    locks it) and its customer (pay_update_customer), and a session holds
#    the queued operation of a merchant without a gateway; in the same pass,
#    every other merchant's expiry notice is written, the other unconfigured
#    merchant's operation is parked, and an old idempotency key is deleted.
#    Once the locks are gone, the next pass does what was held back, once.
#    (Before: one locked row failed the whole pass, every minute, for as
#    long as the lock was held: no retention, no notices, no vault key
#    rotation for any merchant.)
# 2. The API locks rows FOR NO KEY UPDATE: while they are held, another
#    session's insert that only refers to them (a subscription for that
#    customer and card) does not wait.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-row-locks"
psqlq() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
release() {
	psqlq -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'row_locker_%'" \
		>/dev/null 2>&1 || true
}
cleanup() {
	release
	psqlq -c "ALTER SYSTEM RESET payments.expiring_notice_days" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"

# cards that stop working at the end of next month: not due for a notice
# under the default 30 days, due under 90
read -r exp_month exp_year < <(date -d "$(date +%Y-%m-15) +1 month" '+%-m %Y')
# saved_method: a customer of merchant M with an active stored card
saved_method() {
	local cid pm
	cid=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'hk@example.com')")
	pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid,
		card => pay_card('4111111111111111', $exp_month, $exp_year, '123'), validation_mode => 'none')")
	[ "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm, '20 s')")" = active ] || return 1
	echo "$pm"
}
notices() {	# notices MERCHANT METHOD: its payment_method.expiring events
	psqlq -c "SELECT count(*) FROM payments.events WHERE merchant_id = $1 AND event_type = 'payment_method.expiring'
		AND data ->> 'payment_method_id' = '$2'"
}
parked() {	# parked MERCHANT OPERATION: 1 once housekeeping has parked it
	psqlq -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $1 AND operation_id = $2
		AND last_error LIKE 'no gateway is configured%' AND next_attempt_at > now()"
}
new_merchant() { psqlq -c "INSERT INTO payments.merchants (name) VALUES ('$1') RETURNING merchant_id"; }
unconfigured_purchase() {	# unconfigured_purchase MERCHANT: its purchase's operation
	local pid
	pid=$(M=$1 as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD',
		card => pay_card('4111111111111111', 12, $(( $(date +%Y) + 3 )), '123'))")
	psqlq -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $1 AND payment_id = $pid"
}

merchant_on_simulator housekeeping_holder
H=$M
pm_held=$(saved_method)
cid_held=$(psqlq -c "SELECT customer_id FROM payments.payment_methods WHERE merchant_id = $H AND payment_method_id = $pm_held")
merchant_on_simulator housekeeping_other
A=$M
pm_other=$(saved_method)
is "$(notices "$H" "$pm_held")|$(notices "$A" "$pm_other")" "0|0" "two merchants' cards expire next month: no notice under the default 30 days"
U1=$(new_merchant housekeeping_unconfigured_1)
op_held=$(unconfigured_purchase "$U1")
U2=$(new_merchant housekeeping_unconfigured_2)
op_free=$(unconfigured_purchase "$U2")
psqlq -c "INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash, created_at)
	VALUES ($A, 'housekeeping-old-key', 'purchase', 'x', now() - interval '8 days')" >/dev/null

# The merchant holding the card's row in an open transaction, through the
# API; a session holding the first unconfigured merchant's operation, ready
# again (so that parking needs it, whether or not a pass parked it since).
psqlq -c "UPDATE payments.operations SET next_attempt_at = now() - interval '1 second', last_error = NULL
	WHERE merchant_id = $U1 AND operation_id = $op_held" >/dev/null
M=$H as_merchant -c "SET application_name = 'row_locker_method'" -c "BEGIN" \
	-c "SELECT 1 FROM pay_set_default_payment_method($pm_held)" \
	-c "SELECT 1 FROM pay_update_customer($cid_held, name => 'Held Open')" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
lockers=$!
psqlq -c "SET application_name = 'row_locker_operation'" -c "BEGIN" \
	-c "SELECT 1 FROM payments.operations WHERE merchant_id = $U1 AND operation_id = $op_held FOR UPDATE" \
	-c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
lockers="$lockers $!"
holding() { [ "$(psqlq -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'row_locker_%'
	AND state = 'active' AND query LIKE '%pg_sleep%'")" = 2 ] && echo 2; }
is "$(poll_value 20 holding)" 2 "a merchant's transaction holds its card and its customer, another session a queued operation"

psqlq -c "ALTER SYSTEM SET payments.expiring_notice_days = 90" -c "SELECT pg_reload_conf()" >/dev/null
# (the new worker below is forked by the postmaster: it has the setting once
# the postmaster has reloaded, which a new session shows)
ok "$(passed settings_seen payments.expiring_notice_days 90)" "expiring-card notices are due 90 days ahead"
log_lines=$(wc -l < "$WORK/postgres.log")
ok "$(restart_worker && echo 0 || echo 1)" "a new worker starts (its first loop runs the housekeeping)"
notice_other() { [ "$(notices "$A" "$pm_other")" = 1 ] && echo 1; }
is "$(poll_value 30 notice_other)" 1 "while the rows are held, the other merchant's card gets its expiry notice"
free_parked() { [ "$(parked "$U2" "$op_free")" = 1 ] && echo 1; }
is "$(poll_value 60 free_parked)" 1 "... the other unconfigured merchant's operation is parked"
key_gone() { [ "$(psqlq -c "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $A
	AND idempotency_key = 'housekeeping-old-key'")" = 0 ] && echo 1; }
is "$(poll_value 60 key_gone)" 1 "... and the expired idempotency key is deleted"
is "$(notices "$H" "$pm_held")" 0 "the held card waits: no notice yet"
is "$(holding)" 2 "both rows are still held"
ok "$(tail -n +"$((log_lines + 1))" "$WORK/postgres.log" | grep -qE "payments worker: .* failed with SQLSTATE" && echo 1 || echo 0)" \
	"no housekeeping step failed or waited out a lock"

# --- 2. the merchant's other session refers to the held rows
plan=$(M=$H as_merchant -c "SELECT plan_id FROM pay_create_plan(name => 'Held rows', amount => '9.00 USD')")
sub=$(M=$H as_merchant -c "SET statement_timeout = '30s'" -c "SELECT status FROM pay_create_subscription(customer_id => $cid_held,
	plan_id => $plan, payment_method_id => $pm_held, trial_days => 14)" 2>&1 || true)
is "$sub" trialing "another session subscribes the held customer with the held card at once (its foreign-key checks do not wait)"
is "$(holding)" 2 "the rows are still held"

release
for p in $lockers; do wait "$p" || true; done
ok "$(restart_worker && echo 0 || echo 1)" "the rows are free; a new worker runs the housekeeping again"
notice_held() { [ "$(notices "$H" "$pm_held")" = 1 ] && echo 1; }
is "$(poll_value 30 notice_held)" 1 "the card that was held gets its notice"
held_parked() { [ "$(parked "$U1" "$op_held")" = 1 ] && echo 1; }
is "$(poll_value 60 held_parked)" 1 "the operation that was held is parked"
is "$(notices "$A" "$pm_other")" 1 "and no notice is written twice"

tap_done
