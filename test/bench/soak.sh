#!/usr/bin/env bash
# Soak: purchases at a steady rate for a long time; memory must stay flat.
# Prints figures; never fails on a slow machine (it is not a test, and the
# suite does not run it).
#
#   bash test/bench/soak.sh [MINUTES] [RATE]     (default: 30 minutes, 500/s)
#
# pgbench clients offer RATE purchases/s for MINUTES against the simulator
# (100 ms gateway latency, as purchase_bench.sh).  Beside them one session
# calls pay_wait over and over on a payment that never finishes (its
# merchant has no gateway), so each call sleeps through the worker's
# broadcasts for 10 s.  Every minute it prints the worker's RSS (VmRSS, and
# RssAnon: its private memory, without the shared buffers it touched), the
# worker's own count of its memory contexts (payments_worker_memory_bytes
# in pay_metrics), the waiting backend's RSS and its memory contexts
# (pg_log_backend_memory_contexts, read back from the server log), the
# results recorded and the queue.  Flat means: no growth after the first
# minutes.
set -euo pipefail
MINUTES=${1:-30}
RATE=${2:-500}
source "$(dirname "$0")/bench_setup.sh"

bench_start "shared_buffers = 512MB" "max_wal_size = 4GB" "wal_init_zero = off" \
	"payments.max_in_flight = 2000" "payments.claim_batch = 500"

worker_pid=$(poll_value 30 q -c "SELECT pid FROM payments.pay_worker_health() WHERE alive")

# the never-finishing payment the waiter waits on
M2=$(q -c "INSERT INTO payments.merchants (name) VALUES ('soak-unconfigured') RETURNING merchant_id")
parked=$(q -c "SET payments.merchant_id = '$M2'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '5.00 USD', card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))")
{
	echo "SET application_name = 'soak_wait';"
	echo "SET payments.merchant_id = '$M2';"
	echo "\\o /dev/null"
	for _ in $(seq $((MINUTES * 6 + 12))); do echo "SELECT status FROM payments.pay_wait($parked, '10 s');"; done
} > "$WORK/wait.sql"
as_root chown "$PG_OS_USER" "$WORK/wait.sql"
cluster_psql "$WORK" "$PORT" payments -f "$WORK/wait.sql" >/dev/null 2>&1 &
waiter=$!

pgb -n -f "$WORK/purchase.sql" -c 8 -j 2 -R "$RATE" -T $((MINUTES * 60)) payments > "$WORK/pgbench.out" 2>&1 &
load=$!

wait_pid=$(poll_value 5 q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'soak_wait'")
kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null || echo "?"; }
# the waiter's memory contexts: ask it to log them, read the total back
wait_contexts() {
	q -c "SELECT pg_log_backend_memory_contexts($wait_pid)" >/dev/null
	sleep 1.2	# it logs at its next interrupt check (at most a second away)
	grep -E "\[$wait_pid\] .*Grand total: [0-9]+ bytes" "$WORK/postgres.log" | tail -1 |
		sed -E 's/.*Grand total: ([0-9]+) bytes.*/\1/'
}

echo "== soak: $RATE purchases/s offered for $MINUTES min, gateway latency ${BENCH_LATENCY_MS:-100} ms; worker pid $worker_pid, pay_wait backend pid $wait_pid"
printf '%6s %12s %12s %14s %12s %12s %14s %10s %8s\n' minute worker_rss worker_anon worker_contexts wait_rss wait_anon wait_contexts results queue
report() {
	printf '%6s %9s kB %9s kB %14s %9s kB %9s kB %14s %10s %8s\n' "$1" \
		"$(kb "$worker_pid" VmRSS)" "$(kb "$worker_pid" RssAnon)" \
		"$(q -c "SELECT payments.pay_metrics()" | sed -n 's/^payments_worker_memory_bytes //p')" \
		"$(kb "$wait_pid" VmRSS)" "$(kb "$wait_pid" RssAnon)" "$(wait_contexts)" \
		"$(q -c "SELECT count(*) FROM payments.payments WHERE status = 'succeeded'")" \
		"$(q -c "SELECT queue_depth FROM payments.pay_worker_health()")"
}
start=$SECONDS
report 0
for m in $(seq "$MINUTES"); do
	while [ $((SECONDS - start)) -lt $((m * 60)) ]; do sleep 1; done
	report "$m"
done
wait "$load" || true
echo "pgbench: $(sed -n 's/^tps = \([0-9.]*\).*/\1 purchases committed per second/p' "$WORK/pgbench.out")"
now_pid=$(q -c "SELECT pid FROM payments.pay_worker_health()")
echo "worker pid at the end: $now_pid ($([ "$now_pid" = "$worker_pid" ] && echo same || echo "CHANGED: it restarted"))"
echo "worker errors logged: $(q -c "SELECT payments.pay_metrics()" | sed -n 's/^payments_worker_errors_total //p')"
kill "$waiter" 2>/dev/null || true
wait "$waiter" 2>/dev/null || true
