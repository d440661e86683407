#!/usr/bin/env bash
# Benchmark: a backlog of subscription renewals worked through by the worker
# (payments.billing_interval) against the simulator at 100 ms gateway
# latency, with a steady stream of ordinary purchases at the same time.
# Prints figures; never fails on a slow machine (it is not a test).
#
#   bash test/bench/renewal_bench.sh [SUBSCRIPTIONS] [PURCHASES_PER_SECOND] [SECONDS]
#
# 1. N subscriptions (default 100,000) are made set-based
#    (test/lib/due_subscriptions.sql), all due once the merchant's test clock
#    moves past the end of their period
# 2. baseline: the purchase stream alone (pgbench -R RATE, default 50/s) for
#    SECONDS (default 20)
# 3. the clock moves: the worker works the backlog through in batches
#    (payments.billing_batch per transaction) while the same purchase stream
#    runs for SECONDS; then the backlog drains alone
# 4. the purchase stream alone again (after the drain), so that the two
#    sides without the backlog bracket the one with it
# Figures: renewals per second end to end (the first renewal invoice issued
# to the last renewal payment succeeded), the time to drain, per-renewal
# latency (invoice issued -> payment succeeded), the longest lock wait
# seen (log_lock_waits above deadlock_timeout, and a sampler of pg_locks),
# CPU per renewal (the server's processes, from /proc, minus the purchase
# stream's own CPU rate measured in the baseline), and the purchase
# stream's pgbench latency and result latency p50/p99 without and with the
# backlog.
#
# BENCH_BILLING_SESSIONS=K: the billing runs are K sessions calling
# pay_run_renewals(500) in a loop (as pg_cron jobs would) instead of the
# worker's own clock (payments.billing_interval = 0); the worker still sends
# and records every charge.
set -euo pipefail
N=${1:-100000}
SESSIONS=${BENCH_BILLING_SESSIONS:-0}
if [ "$SESSIONS" -gt 0 ]; then BILLING_INTERVAL=0; else BILLING_INTERVAL=1; fi
RATE=${2:-50}
DURATION=${3:-20}
source "$(dirname "$0")/bench_setup.sh"

bench_start "shared_buffers = 512MB" "max_wal_size = 4GB" "wal_init_zero = off" \
	"payments.max_in_flight = 2000" "payments.claim_batch = 500" \
	"payments.test_clocks = on" "payments.billing_interval = $BILLING_INTERVAL" "payments.billing_batch = ${BENCH_BILLING_BATCH:-100}" \
	"log_lock_waits = on" "deadlock_timeout = 20ms"

M=$(q -c "SELECT merchant_id FROM payments.gateway_config ORDER BY merchant_id LIMIT 1")
qm() { q -c "SET payments.merchant_id = '$M'" "$@"; }
qm -c "SELECT payments.pay_set_test_clock(now())" >/dev/null
CID=$(qm -c "SELECT customer_id FROM payments.pay_create_customer(email => 'bench@example.com')" | tail -1)
PM=$(qm -c "SELECT payment_method_id FROM payments.pay_save_payment_method(customer_id => $CID, card => payments.pay_card('4111111111111111', 12, 2031, '123'), validation_mode => 'liveMode')" | tail -1)
[ "$(qm -c "SELECT status FROM payments.pay_wait_payment_method($PM, '10 s')" | tail -1)" = active ] || die "the template card was not saved"

echo "== setup: $N subscriptions, due one hour after the billing clock"
t0=$(date +%s.%N)
due=$(qm -c "SELECT payments.pay_billing_now() + interval '1 hour'" | tail -1)
cat "$REPO_ROOT/test/lib/due_subscriptions.sql" > "$WORK/due.sql"
as_root chown "$PG_OS_USER" "$WORK/due.sql"
q -v merchant="$M" -v pm="$PM" -v n="$N" -v amount='9.99 USD' -v due="$due" -f "$WORK/due.sql" >/dev/null
q -c "VACUUM ANALYZE" >/dev/null
echo "made in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

# CPU seconds of the server so far: the postmaster and its children, live
# (utime + stime) and reaped (the postmaster's cutime + cstime)
server_cpu() {
	local pm_pid
	pm_pid=$(as_root head -1 "$WORK/data/postmaster.pid")
	python3 - "$pm_pid" <<'PY'
import os, sys
hz = os.sysconf('SC_CLK_TCK')
pm = sys.argv[1]
def stat(pid):
    with open('/proc/%s/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()
total = 0
s = stat(pm)
total += int(s[11]) + int(s[12]) + int(s[13]) + int(s[14])
for p in os.listdir('/proc'):
    if not p.isdigit() or p == pm:
        continue
    try:
        s = stat(p)
    except OSError:
        continue
    if s[1] == pm:
        total += int(s[11]) + int(s[12])
print(total / hz)
PY
}

# pgbench at RATE purchases/s for DURATION s, per-transaction log in $1;
# prints "p50 p99" of the clients' latency (ms)
purchase_stream() {
	local tag=$1
	as_root rm -f "$WORK"/pgbench_log.* 2>/dev/null || true
	(cd "$WORK" && as_pg "$PG_BINDIR/pgbench" -h "$WORK/sock" -p "$PORT" -U postgres -n -f "$WORK/purchase.sql" \
		-c 4 -j 2 -R "$RATE" -T "$DURATION" -l --log-prefix="$WORK/pgbench_log" payments >/dev/null 2>&1) || true
	as_root sh -c "cat $WORK/pgbench_log.*" > "$WORK/lat-$tag.txt" 2>/dev/null || true
	python3 - "$WORK/lat-$tag.txt" <<'PY'
import sys
v = sorted(int(l.split()[2]) / 1000.0 for l in open(sys.argv[1]) if l.strip())
pick = lambda q: v[min(len(v) - 1, int(q * len(v)))] if v else float('nan')
print('%d purchases, client latency p50 %.1f ms p99 %.1f ms' % (len(v), pick(0.5), pick(0.99)))
PY
}
# the purchases' result latency (COMMIT of the purchase -> its result
# recorded) between two operation ids
result_latency() {
	q -F ' ' -c "SELECT 'result latency p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ms p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ms'
		FROM (SELECT extract(epoch FROM o.completed_at - o.created_at) * 1000 AS ms
			FROM payments.operations o JOIN payments.payments p USING (merchant_id, payment_id)
			WHERE o.operation_id > $1 AND o.operation_id <= $2 AND p.invoice_id IS NULL AND o.kind = 'purchase') x"
}
last_op() { q -c "SELECT coalesce(max(operation_id), 0) FROM payments.operations"; }
wait_purchases() {	# until no ordinary purchase is still queued or in flight
	local i
	for i in $(seq 600); do
		[ "$(q -c "SELECT count(*) FROM payments.operations o JOIN payments.payments p USING (merchant_id, payment_id) WHERE p.invoice_id IS NULL AND o.status IN ('queued','sending','unknown')")" = 0 ] && return 0
		sleep 0.1
	done
}

echo "== baseline: $RATE purchases/s for ${DURATION}s, no backlog"
a0=$(last_op); c0=$(server_cpu)
base=$(purchase_stream base)
wait_purchases
c1=$(server_cpu); a1=$(last_op)
echo "without the backlog: $base; $(result_latency "$a0" "$a1")"
stream_cpu_rate=$(python3 -c "print(($c1 - $c0) / $DURATION)")
echo "server CPU of the purchase stream alone: $(python3 -c "print(round($stream_cpu_rate, 3))") s per second"

# lock waits: a sampler of the longest wait on a lock seen in pg_locks
# (waitstart), every 100 ms while the backlog drains
lock_sampler() {
	local max=0 w
	while [ ! -f "$WORK/stop-sampler" ]; do
		w=$(q -c "SELECT coalesce(round(max(extract(epoch FROM now() - waitstart)) * 1000), 0) FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL" 2>/dev/null || echo 0)
		[ "${w:-0}" -gt "$max" ] && max=$w
		echo "$max" > "$WORK/lock-max"
		sleep 0.1
	done
}
as_root rm -f "$WORK/stop-sampler"
lock_sampler &
sampler=$!
log_lines_before=$(as_root wc -l < "$WORK/postgres.log")

if [ "$SESSIONS" -gt 0 ]; then by="$SESSIONS sessions calling pay_run_renewals (as pg_cron would) issue them, the worker sends them"; else by="the worker works them through"; fi
echo "== the clock moves: $N renewals due at once; $by while $RATE purchases/s go on for ${DURATION}s"
b0=$(last_op); cb0=$(server_cpu)
wal0=$(q -c "SELECT pg_current_wal_insert_lsn()")
# the CPU of the worker and of the billing process, apart from the rest
proc_cpu() { local pid; pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"); as_root awk '{print ($14 + $15) / 100}' "/proc/$pid/stat"; }
worker0=$(proc_cpu "payments worker"); billing0=$(proc_cpu "payments billing")
steal() { awk '/^cpu / {print $9 / 100}' /proc/stat; }	# time the hypervisor gave our CPUs to others
steal0=$(steal)
vac0=$(q -c "SELECT sum(autovacuum_count) || ' ' || sum(autoanalyze_count) FROM pg_stat_all_tables WHERE schemaname = 'payments'")
ckpt0=$(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
tb0=$(date +%s.%N)
qm -c "SELECT payments.pay_advance_test_clock('2 hours')" >/dev/null
billing_session() {	# pay_run_renewals until nothing is left to renew
	while [ "$(q -c "SELECT payments.pay_run_renewals(500)")" != 0 ]; do :; done
}
sessions=()
for _ in $(seq "$SESSIONS"); do billing_session & sessions+=($!); done
with=$(purchase_stream backlog)
for p in "${sessions[@]}"; do wait "$p" || true; done
b1=$(last_op)
while [ "$(q -c "SELECT count(*) FROM payments.subscriptions WHERE merchant_id = $M AND next_renewal_at <= payments._billing_now($M)")" != 0 ] ||
	[ "$(q -c "SELECT count(*) FROM payments.operations WHERE status IN ('queued','sending','unknown')")" != 0 ]; do
	sleep 0.2
done
tb1=$(date +%s.%N); cb1=$(server_cpu)
wal1=$(q -c "SELECT pg_current_wal_insert_lsn()")
worker1=$(proc_cpu "payments worker"); billing1=$(proc_cpu "payments billing")
steal1=$(steal)
vac1=$(q -c "SELECT sum(autovacuum_count) || ' ' || sum(autoanalyze_count) FROM pg_stat_all_tables WHERE schemaname = 'payments'")
ckpt1=$(q -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
touch "$WORK/stop-sampler"; as_root touch "$WORK/stop-sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
echo "with the backlog: $with; $(result_latency "$b0" "$b1")"

q -F ' ' <<SQL
WITH r AS (
	SELECT i.created_at AS issued, o.completed_at AS done, p.status
	FROM payments.invoices i
	JOIN payments.payments p ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id
	JOIN payments.operations o ON o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id AND o.kind = 'purchase'
	WHERE i.merchant_id = $M AND i.kind = 'renewal')
SELECT 'renewals: ' || count(*) || ' (' || count(*) FILTER (WHERE status = 'succeeded') || ' succeeded)',
	'| end to end (first invoice issued -> last payment succeeded): ' ||
	round(count(*) / extract(epoch FROM max(done) - min(issued))::numeric, 0) || ' renewals/s over ' ||
	round(extract(epoch FROM max(done) - min(issued))::numeric, 1) || ' s',
	'| invoice issued -> paid p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done - issued))::numeric, 2) || ' s',
	'p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM done - issued))::numeric, 2) || ' s'
FROM r;
SQL
echo "time to drain (clock moved -> nothing due, nothing in flight): $(python3 -c "print(round($tb1 - $tb0, 1))") s"
echo "CPU per renewal (server, minus the purchase stream's rate): $(python3 -c "
n = int('$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND kind = 'renewal'")')
cpu = ($cb1 - $cb0) - $stream_cpu_rate * min($DURATION, $tb1 - $tb0)
print('%.2f ms (%.1f s of server CPU for %d renewals, %.1f s wall)' % (cpu / max(n, 1) * 1000, cpu, n, $tb1 - $tb0))")"
echo "of which the worker $(python3 -c "print(round($worker1 - $worker0, 1))") s, the billing process $(python3 -c "print(round($billing1 - $billing0, 1))") s, the rest (sessions, autovacuum, checkpointer, WAL writer) $(python3 -c "print(round(($cb1 - $cb0) - ($worker1 - $worker0) - ($billing1 - $billing0), 1))") s; CPU time stolen by the hypervisor meanwhile: $(python3 -c "print(round($steal1 - $steal0, 1))") s; autovacuum runs on the extension's tables while it drained: $(python3 -c "a, b = '$vac0'.split(); c, d = '$vac1'.split(); print('%d vacuums, %d analyzes' % (int(c) - int(a), int(d) - int(b)))")"
echo "WAL per renewal: $(q -c "SELECT round(pg_wal_lsn_diff('$wal1', '$wal0') / greatest(count(*), 1) / 1024, 1) FROM payments.invoices WHERE merchant_id = $M AND kind = 'renewal'") kB; checkpoints begun while the backlog drained: $((ckpt1 - ckpt0)) (each makes the next change of every page write a full page image)"
echo "longest lock wait seen by the sampler (every 100 ms): $(cat "$WORK/lock-max" 2>/dev/null || echo 0) ms"
waits=$(as_root tail -n +"$((log_lines_before + 1))" "$WORK/postgres.log" | grep -Eo '(still waiting|acquired) [A-Za-z]+ on .* after [0-9.]+ ms' || true)
if [ -n "$waits" ]; then
	echo "lock waits logged over deadlock_timeout (20 ms): $(grep -c . <<<"$waits"), longest $(grep -Eo '[0-9.]+ ms$' <<<"$waits" | sort -n | tail -1)"
	grep -Eo '(still waiting|acquired) [A-Za-z]+ on [a-z]+' <<<"$waits" | sort | uniq -c | sort -rn | head -5 | sed 's/^/   /'
else
	echo "lock waits logged over deadlock_timeout (20 ms): none"
fi

echo "== after the drain: $RATE purchases/s for ${DURATION}s, no backlog"
d0=$(last_op)
after=$(purchase_stream after)
wait_purchases
echo "without the backlog (after): $after; $(result_latency "$d0" "$(last_op)")"
q -c "SELECT 'requests in flight at most: ' || max_in_flight FROM payments.pay_worker_health()"
