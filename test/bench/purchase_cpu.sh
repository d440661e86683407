#!/usr/bin/env bash
# Benchmark: CPU time per purchase on each side of the outbox, A/B.
# Wall-clock throughput on a shared machine is noisy; the CPU the work
# costs is not (much).  For each build (this checkout, and optionally a
# second checkout, e.g. `git archive <commit> | tar -x -C DIR`), one
# throwaway cluster; one simulator (100 ms gateway latency, TLS) serves
# both.  Rounds alternate between the builds; in each, 16 pgbench clients
# call pay_purchase as fast as they can while the worker drains, then:
#
#   client ms/purchase   CPU of the client backends (user + system, from
#                        the postmaster's reaped-children times), per
#                        purchase committed
#   worker ms/purchase   CPU of the background worker from the first
#                        purchase until the last result, per purchase
#   WAL bytes/purchase   WAL written in the round, per purchase
#   faults/purchase      minor page faults of the client backends and of
#                        the worker, per purchase (each a trip through
#                        the kernel: dear on a virtual machine)
#   tps, e2e/s           the clients' commit rate; purchases per second
#                        from the first commit to the last result
#
#   bash test/bench/purchase_cpu.sh [OTHER_CHECKOUT] [ROUNDS] [PURCHASES]
#
# BENCH_CONF adds settings to both clusters, as name=value words.
# PERF=DIR records a perf profile (perf record -g) of the client backends
# and of the worker in each side's last round into DIR/<side>-{clients,worker}.data.
# Prints figures; never fails on a slow machine (it is not a test).
set -euo pipefail
OTHER=${1:-}
ROUNDS=${2:-3}
PURCHASES=${3:-6400}
CLIENTS=16
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/sim.sh"
install_deps
THIS=$REPO_ROOT

TOP=$(mktemp -d "${TMPDIR:-/tmp}/payments-cpu.XXXXXX")
chmod 755 "$TOP"
SIDES=(this)
[ -n "$OTHER" ] && SIDES=(other this)
declare -A SRC=([this]=$THIS [other]=$OTHER) BIN PORTS
cleanup() {
	local s
	sim_stop
	for s in "${SIDES[@]}"; do PG_BINDIR=${BIN[$s]:-} && [ -n "$PG_BINDIR" ] && cluster_stop "$TOP/$s"; done
	as_root rm -rf "$TOP"
}
[ "${BENCH_KEEP:-}" = 1 ] || trap cleanup EXIT

sim_start "$TOP/sim" --threads 2
sim_ctl POST /latency "{\"fixedMs\":${BENCH_LATENCY_MS:-100},\"randomMs\":0}" >/dev/null

side_q() { local s=$1; shift; PG_BINDIR=${BIN[$s]} cluster_psql "$TOP/$s" "${PORTS[$s]}" payments -At "$@"; }

for s in "${SIDES[@]}"; do
	build_checkout_private "${SRC[$s]}" "$TOP/$s"
	BIN[$s]=$PG_BINDIR
	PORTS[$s]=$(free_port)
	cluster_init "$TOP/$s" "${PORTS[$s]}" "shared_buffers = 512MB" "max_wal_size = 4GB" \
		"payments.max_in_flight = 2000" "payments.claim_batch = 500" "wal_init_zero = off" \
		"autovacuum = off" ${BENCH_CONF:-}
	cluster_start "$TOP/$s"
	PG_BINDIR=${BIN[$s]} cluster_psql "$TOP/$s" "${PORTS[$s]}" postgres -c 'CREATE DATABASE payments' >/dev/null
	side_q "$s" -c 'CREATE EXTENSION payments' >/dev/null
	side_q "$s" -c "SET payments.allow_insecure_endpoint = on" -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA')" >/dev/null
	cat > "$TOP/$s/purchase.sql" <<'SQL'
SELECT payments.pay_purchase(amount => '12.34 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'));
SQL
	as_root chown "$PG_OS_USER" "$TOP/$s/purchase.sql"
done


wait_drained() {
	local s=$1 i
	for i in $(seq 1200); do
		[ "$(side_q "$s" -c "SELECT count(*) FROM payments.operations WHERE status IN ('queued','sending','unknown')")" = 0 ] && return 0
		sleep 0.2
	done
	return 1
}

round() {
	local s=$1 r=$2 last=$3 pm worker c0 c1 w0 w1 f0 f1 g0 g1 lsn0 lsn1 tps perf_pid="" pids out
	side_q "$s" -c 'VACUUM ANALYZE' -c 'CHECKPOINT' >/dev/null
	pm=$(head -1 "$TOP/$s/data/postmaster.pid")
	worker=$(side_q "$s" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'")
	local mark
	mark=$(side_q "$s" -c "SELECT coalesce(max(operation_id), 0) FROM payments.operations")
	lsn0=$(side_q "$s" -c "SELECT pg_current_wal_lsn()")
	c0=$(cpu_children "$pm") w0=$(cpu_self "$worker")
	f0=$(faults_children "$pm") g0=$(faults_self "$worker")
	as_pg "${BIN[$s]}/pgbench" -h "$TOP/$s/sock" -p "${PORTS[$s]}" -U postgres -n -f "$TOP/$s/purchase.sql" \
		-c "$CLIENTS" -j 2 -t $((PURCHASES / CLIENTS)) payments >"$TOP/$s/pgbench.out" 2>&1 &
	local bench=$!
	if [ -n "${PERF:-}" ] && [ "$last" = 1 ]; then
		mkdir -p "$PERF"
		sleep 0.5
		pids=$(side_q "$s" -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
		perf record -q -g -p "$pids" -o "$PERF/$s-clients.data" -- sleep 3 >/dev/null 2>&1 &
		perf_pid="$perf_pid $!"
		perf record -q -g -p "$worker" -o "$PERF/$s-worker.data" -- sleep 3 >/dev/null 2>&1 &
		perf_pid="$perf_pid $!"
	fi
	wait "$bench"
	sleep 0.5
	c1=$(cpu_children "$pm") f1=$(faults_children "$pm")
	wait_drained "$s"
	w1=$(cpu_self "$worker") g1=$(faults_self "$worker")
	lsn1=$(side_q "$s" -c "SELECT pg_current_wal_lsn()")
	[ -z "$perf_pid" ] || wait $perf_pid
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$TOP/$s/pgbench.out")
	out=$(side_q "$s" -F ' ' -c "SELECT count(*), round(count(*) / extract(epoch FROM max(completed_at) - min(created_at))::numeric, 0),
		round(pg_wal_lsn_diff('$lsn1', '$lsn0') / count(*))
		FROM payments.operations WHERE operation_id > $mark")
	read -r n e2e walpp <<<"$out"
	printf '%-6s round %d: client %6.3f ms/purchase  worker %6.3f ms/purchase  WAL %6d B/purchase  faults %5.1f + %5.1f/purchase  tps %5.0f  e2e %5d/s  (%d purchases)\n' \
		"$s" "$r" "$(echo "($c1 - $c0) * $TICK_MS / $n" | bc -l)" "$(echo "($w1 - $w0) * $TICK_MS / $n" | bc -l)" \
		"$walpp" "$(echo "($f1 - $f0) / $n" | bc -l)" "$(echo "($g1 - $g0) / $n" | bc -l)" "$tps" "$e2e" "$n"
}

# a warm-up round each (caches, statistics), not reported
for s in "${SIDES[@]}"; do round "$s" 0 0 >/dev/null; done
for r in $(seq "$ROUNDS"); do
	for s in "${SIDES[@]}"; do round "$s" "$r" $([ "$r" = "$ROUNDS" ] && echo 1 || echo 0); done
done
