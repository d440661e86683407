#!/usr/bin/env bash
# Benchmark: end-to-end purchases through the worker against the simulator
# with 100 ms injected gateway latency.  Prints figures; never fails on a
# slow machine (it is not a test).
#
#   bash test/bench/purchase_bench.sh [SECONDS]
#
# BENCH_MAX_CONNECTIONS sets payments.max_connections (default 256, the
# server's default; one request per connection at a time caps the rate at
# about connections / gateway latency).  BENCH_CONF adds settings, as
# name=value words (BENCH_CONF="payments.recorder=off": the worker records
# every outcome itself).  The run sets the kernel's writeback as README's
# Operations advises and restores it on exit (BENCH_WRITEBACK=machine: left
# as the machine has it); likewise it reserves huge pages for the cluster's
# shared memory (BENCH_HUGEPAGES=machine: none unless the machine has them).
# BENCH_REALTIME=tuned runs the worker and the recorder at real-time
# priority 1 (README, Operations and Performance: lower latency on busy
# cores, more of the worker's CPU per purchase at saturation).
# BENCH_SKIP_LATENCY=1 runs only the reference and the throughput (phases 1
# and 4); BENCH_SKIP_THROUGHPUT=1 leaves out phase 4.
# BENCH_PROTOCOL is pgbench's query mode for the purchases: simple (the
# default: each call parsed and planned, as psql and many clients send
# them) or prepared (parsed and planned once per connection, as drivers that
# prepare statements send them).
#
# 1. reference: pgbench's built-in simple-update script on the same cluster
# 2. latency at 200 purchases/s: time from the caller's COMMIT (its commit
#    timestamp, track_commit_timestamp) to the worker's committed result,
#    minus the gateway's own round trip (the overhead the database adds),
#    p50, p90 and p99
# 3. sustained: pgbench clients offer 1000 purchases/s (-R 1000); whether
#    the worker keeps up (results per second while the clients run, what is
#    left when they stop) and the same latency figures at that rate
#    Both rates are measured in a steady state: 1,000 purchases and the
#    first statistics of the tables come first (a young database's), and
#    each phase's clients start with BENCH_WARMUP seconds (default 3) at
#    its rate that are not counted.  The step to 1000/s opens ~100 new
#    connections to the simulator (a full TLS handshake each: it does not
#    resume sessions) while 16 new backends fill their caches; until the
#    worker moved its transfers along between the claims of a round, that
#    took 4-5 s, with round trips of a second, and spilled into the counted
#    part; now about 2 s.
# 4. throughput: pgbench clients call pay_purchase and commit as fast as they
#    can; the worker drains the outbox; end-to-end rate, in-flight peak, and
#    the CPU each process spent per purchase (where the two cores go)
set -euo pipefail
DURATION=${1:-20}
: "${BENCH_HUGEPAGES:=tuned}"
source "$(dirname "$0")/bench_setup.sh"

# The kernel's writeback, as README (Operations, "Disk flushes") advises for a
# virtual disk whose flush lasts as long as the host takes to persist
# everything written since the last one (here about 1 ms per MB): dirty pages
# go out every 0.2 s once half a second old (a few MB at most), instead of
# bursts of every page that turned 30 s old in the last 5 s, which a WAL
# flush behind them waited 100-500 ms for.  Set for the benchmark's run and restored when
# it exits; BENCH_WRITEBACK=machine keeps the machine's settings.
# in the order WRITEBACK_SAVED keeps them
WRITEBACK_SYSCTLS="vm.dirty_background_bytes vm.dirty_background_ratio vm.dirty_expire_centisecs vm.dirty_writeback_centisecs"
WRITEBACK_SAVED=
writeback_restore() {
	[ -n "$WRITEBACK_SAVED" ] || return 0
	# dirty_background_bytes and _ratio exclude each other: restore the one set
	set -- $WRITEBACK_SAVED
	if [ "$1" != 0 ]; then as_root sysctl -q -w vm.dirty_background_bytes="$1"; else as_root sysctl -q -w vm.dirty_background_ratio="$2"; fi
	as_root sysctl -q -w vm.dirty_expire_centisecs="$3" vm.dirty_writeback_centisecs="$4"
	WRITEBACK_SAVED=
}
if [ "${BENCH_WRITEBACK:-tuned}" = tuned ]; then
	saved=$(sysctl -n $WRITEBACK_SYSCTLS | tr '\n' ' ')
	if as_root sysctl -q -w vm.dirty_background_bytes=4194304 vm.dirty_expire_centisecs=50 vm.dirty_writeback_centisecs=20 2>/dev/null; then
		WRITEBACK_SAVED=$saved
		trap 'writeback_restore; [ "${BENCH_KEEP:-}" = 1 ] || bench_cleanup' EXIT
	else
		echo "could not set the kernel's writeback (needs root): running with the machine's"
	fi
fi
echo "kernel writeback: $(sysctl $WRITEBACK_SYSCTLS | tr '\n' ' ')"

bench_start "shared_buffers = 512MB" "max_wal_size = 4GB" "track_commit_timestamp = on" \
	"payments.max_in_flight = 2000" "payments.claim_batch = 500" "wal_init_zero = off" \
	"payments.max_connections = ${BENCH_MAX_CONNECTIONS:-256}" ${BENCH_CONF:-}
cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE reference' >/dev/null

echo "== reference: pgbench simple-update, 8 clients, ${DURATION}s"
pgb -i -q -s 10 reference >/dev/null 2>&1
ref=$(pgb -n -b simple-update -c 8 -j 2 -T "$DURATION" reference 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
echo "reference tps: $ref"
# its autovacuum would compete with the phases below
cluster_psql "$WORK" "$PORT" postgres -c 'DROP DATABASE reference' >/dev/null

# the commit probe of run_rated
q -c 'CREATE TABLE bench_probe (at timestamptz)' >/dev/null
echo 'INSERT INTO bench_probe VALUES (clock_timestamp());' >"$WORK/probe.sql"
as_root chown "$PG_OS_USER" "$WORK/probe.sql"

wait_drained() {
	local i
	for i in $(seq 1200); do
		[ "$(q -c "SELECT count(*) FROM payments.operations WHERE status IN ('queued','sending','unknown')")" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}

# mark: later figures count only the payments created after it (LAST_OP,
# the last operation id handed out).  Read off the sequence: max() over
# operations is a parallel scan of the table on both cores, and a table
# made for the mark is DDL every backend must take in; either put 30-80 ms
# on the first few hundred payments counted.
mark() {
	LAST_OP=$(q -c "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM payments.operations_operation_id_seq")
}

# clients CLIENTS SECONDS [pgbench options]: pgbench's clients calling
# pay_purchase, its report in $WORK/pgbench.out
clients() {
	local c=$1 t=$2; shift 2
	pgb -n -M "${BENCH_PROTOCOL:-simple}" -f "$WORK/purchase.sql" -c "$c" -j 2 -T "$t" "$@" payments >"$WORK/pgbench.out" 2>/dev/null
}

# clients_stopped: CLIENTS_DONE when they stopped, TPS their commit rate
clients_stopped() {
	CLIENTS_DONE=$(date +%s.%N)
	TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out")
}

# run_clients CLIENTS [pgbench options]: DURATION seconds of clients
run_clients() {
	clients "$1" "$DURATION" "${@:2}"
	clients_stopped
}

# The time from each caller's COMMIT (its commit timestamp) to the
# committed result, and the part of it the database adds to the gateway's
# round trip; then that overhead in its three parts: from the caller's
# commit to the worker's claim (the caller's own WAL flush, the wake-up and
# the wait for the worker's next round: up to the claim's transaction start,
# first_sent_at), from the claim to the request leaving (the claim's
# statement, the flush of its commit, building the request and, at high
# rates, waiting for a free connection: up to the exchange's started_at), and
# from the reply to the result (the recorder's queue and statement:
# finished_at to completed_at).
latency_report() {
	q -F ' ' <<SQL
WITH x AS (
	SELECT extract(epoch FROM o.completed_at - c.at) * 1000 AS total_ms, g.gateway_ms,
		extract(epoch FROM o.first_sent_at - c.at) * 1000 AS wake_ms,
		extract(epoch FROM g.started_at - o.first_sent_at) * 1000 AS claim_ms,
		extract(epoch FROM o.completed_at - g.finished_at) * 1000 AS record_ms
	FROM payments.operations o
	CROSS JOIN LATERAL (SELECT pg_xact_commit_timestamp(e.xmin) AS at FROM payments.events e
			WHERE e.merchant_id = o.merchant_id AND e.payment_id = o.payment_id
				AND e.event_type = 'payment.pending') c
	CROSS JOIN LATERAL (SELECT sum(e.duration_ms) AS gateway_ms, min(e.started_at) AS started_at,
			max(e.finished_at) AS finished_at
		FROM payments.gateway_exchanges e
		WHERE e.merchant_id = o.merchant_id AND e.operation_id = o.operation_id) g
	WHERE o.operation_id > $LAST_OP)
SELECT 'payments: ' || count(*),
	'| result latency p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms)::numeric, 1) || ' ms',
	'p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY total_ms)::numeric, 1) || ' ms',
	'| gateway round trip p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gateway_ms)::numeric, 1) || ' ms',
	'| overhead (result - round trip) p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms - gateway_ms)::numeric, 2) || ' ms',
	'p90 ' || round(percentile_cont(0.90) WITHIN GROUP (ORDER BY total_ms - gateway_ms)::numeric, 2) || ' ms',
	'p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY total_ms - gateway_ms)::numeric, 2) || ' ms',
	E'\n  its parts, p50 / p99: commit to claim ' ||
	round(percentile_cont(0.5) WITHIN GROUP (ORDER BY wake_ms)::numeric, 2) || ' / ' ||
	round(percentile_cont(0.99) WITHIN GROUP (ORDER BY wake_ms)::numeric, 2) || ' ms',
	'| claim to request ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY claim_ms)::numeric, 2) || ' / ' ||
	round(percentile_cont(0.99) WITHIN GROUP (ORDER BY claim_ms)::numeric, 2) || ' ms',
	'| reply to result ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY record_ms)::numeric, 2) || ' / ' ||
	round(percentile_cont(0.99) WITHIN GROUP (ORDER BY record_ms)::numeric, 2) || ' ms'
FROM x;
SQL
}

# The worker's rounds: how many claims a second and operations each (a
# claim's operations share its transaction's start, first_sent_at).  The
# requests of a claim leave together once it commits, so "claim to request"
# above is mostly that transaction: the claim, the outcomes the worker
# records in it (fewer than payments.recorder_min_batch) and its flush.
claims_report() {
	q <<SQL
WITH c AS (
	SELECT first_sent_at, count(*) AS n FROM payments.operations
	WHERE operation_id > $LAST_OP AND first_sent_at IS NOT NULL GROUP BY first_sent_at)
SELECT 'the worker''s claims: ' || count(*) || ', ' ||
	round(count(*) / greatest(extract(epoch FROM max(first_sent_at) - min(first_sent_at)), 0.001)::numeric, 0) ||
	' a second, operations per claim mean ' || round(avg(n), 1) ||
	' p90 ' || percentile_disc(0.9) WITHIN GROUP (ORDER BY n) || ' max ' || max(n)
FROM c;
SQL
}

# Results per second while the clients ran, and how long the rest took.
throughput_report() {
	q <<SQL
WITH t AS (
	SELECT o.created_at, o.completed_at, p.status
	FROM payments.operations o JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE o.operation_id > $LAST_OP)
SELECT 'end-to-end purchases per second (first commit to last result): ' ||
	round(count(*) / extract(epoch FROM max(completed_at) - min(created_at))::numeric, 0) ||
	' (' || count(*) || ' payments, ' || count(*) FILTER (WHERE status = 'succeeded') || ' succeeded; ' ||
	round(count(*) FILTER (WHERE completed_at <= to_timestamp($CLIENTS_DONE)) /
		extract(epoch FROM to_timestamp($CLIENTS_DONE) - min(created_at))::numeric, 0) ||
	' results per second while the clients ran, ' ||
	count(*) FILTER (WHERE completed_at > to_timestamp($CLIENTS_DONE)) || ' left when they stopped, ' ||
	round(greatest(extract(epoch FROM max(completed_at) - to_timestamp($CLIENTS_DONE)), 0)::numeric, 1) ||
	' s to finish them)'
FROM t;
SQL
}

# run_rated CLIENTS RATE: the clients offer RATE purchases/s for
# BENCH_WARMUP + DURATION seconds on the same connections, and only the
# payments created after the first BENCH_WARMUP seconds count (mark).  A
# warm-up on connections of its own left the counted phase to start with 16
# new backends (catalog caches, plans, the first calls): its first half
# second ran at 100 ms and more of overhead, about 2% of the payments.
# Meanwhile a probe client commits a one-row INSERT 50 times a second: its
# latency is what any commit costs on this machine at that load, and the
# overhead of a payment holds two commits' WAL flushes (the caller's own:
# its commit timestamp is taken before its flush; and the worker's claim,
# durable before the request leaves; the result's time, completed_at, is
# taken before its commit).
run_rated() {
	local pid probe
	clients "$1" $((DURATION + ${BENCH_WARMUP:-3})) -R "$2" &
	pid=$!
	sleep "${BENCH_WARMUP:-3}"
	mark
	as_root rm -f "$WORK"/commits.*
	pgb -n -f "$WORK/probe.sql" -c 1 -T "$DURATION" -R 50 -l --log-prefix="$WORK/commits" payments >/dev/null 2>&1 &
	probe=$!
	wait "$pid"
	clients_stopped
	wait "$probe" || true
}

# The probe's commit latency (its log: latency and schedule lag in
# microseconds, the third and last fields), p50, p99 and max.
probe_report() {
	cat "$WORK"/commits.* | python3 -c '
import sys
v = sorted((int(f[2]) - int(f[-1])) / 1000 for f in (l.split() for l in sys.stdin) if len(f) >= 7)
if v:
    p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    print("a one-row commit meanwhile (%d, 50 a second): p50 %.2f ms, p99 %.2f ms, max %.1f ms" % (len(v), p(0.5), p(0.99), v[-1]))'
}

# A young database: the worker analyzes each of the extension's tables
# once it passes 500 rows (_refresh_statistics), a pause of its loop of
# about 100 ms, once in an installation's life.  On this fresh cluster it
# fell in the first seconds of the 200/s phase, counted or not as the
# moment had it: that phase's p99 moved between 7 and 19 ms from run to
# run.  So first 1,000 purchases and those statistics, not counted.
YOUNG="'payments', 'operations', 'events', 'audit_log', 'gateway_exchanges'"
echo "== warm-up: 1,000 purchases at 200/s, and the first statistics of the tables they fill (not counted)"
clients 8 5 -R 200
wait_drained
for i in $(seq 300); do
	analyzed=$(q -c "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'payments'
		AND relname IN ($YOUNG) AND coalesce(last_analyze, last_autoanalyze) IS NOT NULL")
	[ "$analyzed" = 5 ] && break
	sleep 0.1
done
echo "tables analyzed: $analyzed of 5 ($YOUNG)"

if [ "${BENCH_SKIP_LATENCY:-}" != 1 ]; then
echo "== latency at 200 purchases/s, ${DURATION}s (after ${BENCH_WARMUP:-3}s at that rate)"
run_rated 8 200
wait_drained
latency_report
claims_report
probe_report

echo "== sustained: 1000 purchases/s offered by 16 clients, ${DURATION}s, gateway latency 100 ms (after ${BENCH_WARMUP:-3}s at that rate)"
run_rated 16 1000
wait_drained
q -c "SELECT 'purchases committed by clients per second: ' || round($TPS::numeric, 0)"
throughput_report
latency_report
claims_report
probe_report

fi

if [ "${BENCH_SKIP_THROUGHPUT:-}" != 1 ]; then
echo "== throughput: pay_purchase from 16 clients as fast as they can, ${DURATION}s, gateway latency 100 ms"
mark
# where the two cores go: CPU ticks of the client backends (reaped by the
# postmaster when pgbench disconnects; read before the polling below adds
# its own sessions), the worker, the recorder, the billing process, the simulator and
# pgbench (this shell's reaped children), and the machine's idle time
pm=$(head -1 "$WORK/data/postmaster.pid")
worker=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'")
billing=$(q -c "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'payments billing'")
recorder=$(q -c "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'payments recorder'")
idle() { awk '/^cpu / { print $5 + $6 }' /proc/stat; }
cpu_or_0() { [ "$1" != 0 ] && [ -r "/proc/$1/stat" ] && cpu_self "$1" || echo 0; }
c0=$(cpu_children "$pm") w0=$(cpu_self "$worker") b0=$(cpu_or_0 "$billing") r0=$(cpu_or_0 "$recorder") s0=$(cpu_self "$SIM_PID")
p0=$(cpu_children $$) i0=$(idle) t0=$(date +%s.%N)
# MultiXacts made meanwhile, and the member pages they filled (1,636
# members a page): the foreign-key check of each payment locks its
# merchant's row, which the other purchases in flight hold locked too
mx0=$(q -c "SELECT mxid_age('1')") mm0=$(q -c "SELECT blks_zeroed FROM pg_stat_slru WHERE name = 'MultiXactMember'")
# WAL flushes (each an fdatasync: a trip through the kernel and the
# virtual disk) and bytes; the backends report them at the latest when
# they exit, the worker and the recorder within a second
wal0=$(q -c "SELECT wal_sync || ' ' || wal_bytes FROM pg_stat_wal")
run_clients 16
sleep 0.5
c1=$(cpu_children "$pm") p1=$(cpu_children $$)
wait_drained
w1=$(cpu_self "$worker") b1=$(cpu_or_0 "$billing") r1=$(cpu_or_0 "$recorder") s1=$(cpu_self "$SIM_PID") i1=$(idle) t1=$(date +%s.%N)
q -c "SELECT 'purchases committed by clients per second: ' || round($TPS::numeric, 0)"
throughput_report
q -c "SELECT 'requests in flight at most: ' || max_in_flight FROM payments.pay_worker_health()"
latency_report
n=$(q -c "SELECT count(*) FROM payments.operations WHERE operation_id > $LAST_OP")
q -c "SELECT 'MultiXacts per purchase: ' || round((mxid_age('1') - $mx0)::numeric / $n, 2) ||
	' (members about ' || round(((SELECT blks_zeroed FROM pg_stat_slru WHERE name = 'MultiXactMember') - $mm0) * 1636.0 / $n, 1) ||
	' per purchase)'"
sleep 1.5
wal1=$(q -c "SELECT wal_sync || ' ' || wal_bytes FROM pg_stat_wal")
read -r ws0 wb0 <<<"$wal0"; read -r ws1 wb1 <<<"$wal1"
q -c "SELECT 'WAL per purchase: ' || round(($ws1 - $ws0)::numeric / $n, 2) || ' flushes, ' || round(($wb1 - $wb0)::numeric / $n) || ' bytes'"
python3 - "$n" "$TICK_MS" "$(nproc)" "$c0" "$c1" "$w0" "$w1" "$b0" "$b1" "$r0" "$r1" "$s0" "$s1" "$p0" "$p1" "$i0" "$i1" "$t0" "$t1" <<'PY'
import sys
n, tick, cpus = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
c0, c1, w0, w1, b0, b1, r0, r1, s0, s1, p0, p1, i0, i1 = (float(x) for x in sys.argv[4:18])
t0, t1 = float(sys.argv[18]), float(sys.argv[19])
per = lambda a, b: (b - a) * tick / n
print("CPU per purchase, first commit to last result: client backends %.3f ms, worker %.3f ms, "
      "recorder %.3f ms, billing process %.3f ms, simulator %.3f ms, pgbench %.3f ms; "
      "the %d cores idle %.0f%% of the time"
      % (per(c0, c1), per(w0, w1), per(r0, r1), per(b0, b1), per(s0, s1), per(p0, p1),
         cpus, 100 * (i1 - i0) * tick / 1000 / (cpus * (t1 - t0))))
PY
fi
