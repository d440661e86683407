# Shared setup of the benchmarks (test/bench/*.sh): source it after
# `set -euo pipefail`.  It installs what is missing, builds, installs into a
# private PostgreSQL tree, and provides:
#
#   bench_start [postgresql.conf lines...]
#       a throwaway cluster (WORK, PORT) with the extension in database
#       payments; the simulator (gateway latency BENCH_LATENCY_MS, default
#       100 ms) over TLS (BENCH_TLS=0: plain HTTP); the default merchant's
#       gateway configured; $WORK/purchase.sql, one pay_purchase for pgbench.
#       The cluster and the simulator stop on exit (BENCH_KEEP=1 keeps them);
#       the server log is copied to /tmp/bench-postgres.log.
#       BENCH_HUGEPAGES=tuned (a benchmark may make it its default; else
#       machine) reserves 2 MB pages for the cluster's shared memory and
#       starts it with huge_pages = on, as README's Operations ("Huge
#       pages") advises; the pages it added are given back on exit, and
#       only those: benchmarks running at once each keep their own (with
#       BENCH_KEEP=1 they stay with the kept cluster: once that is stopped,
#       take vm.nr_hugepages down by the count it printed, by hand).
#       BENCH_REALTIME=tuned (likewise) starts the server with CAP_SYS_NICE
#       and payments.worker_realtime_priority = 1, as README's Operations
#       ("Real-time priority") describes (needs root).
#   q [psql args...]     psql -At on database payments
#   pgb [pgbench args...] pgbench against the cluster
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lib/sim.sh"

install_deps
WORK=$(mktemp -d /tmp/payments-bench.XXXXXX)
PORT=$(free_port)
bench_cleanup() {
	sim_stop
	cluster_stop "$WORK"
	huge_pages_release
	cp "$WORK/postgres.log" /tmp/bench-postgres.log 2>/dev/null || true
	as_root rm -rf "$WORK"
}
[ "${BENCH_KEEP:-}" = 1 ] || trap bench_cleanup EXIT
build_and_install_private "$WORK"

q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
pgb() { as_pg "$PG_BINDIR/pgbench" -h "$WORK/sock" -p "$PORT" -U postgres "$@"; }

bench_start() {
	cluster_init "$WORK" "$PORT" "$@"
	if [ "${BENCH_HUGEPAGES:-machine}" = tuned ]; then
		huge_pages_reserve "$WORK/data"
	else
		echo "huge pages: as the machine has them (vm.nr_hugepages $(cat /proc/sys/vm/nr_hugepages), huge_pages = try)"
	fi
	# BENCH_REALTIME=tuned: the worker and the recorder at real-time
	# priority 1, as README's Operations ("Real-time priority") describes
	if [ "${BENCH_REALTIME:-machine}" = tuned ] && [ "$(id -u)" = 0 ]; then
		printf '%s\n' "payments.worker_realtime_priority = 1" | as_pg tee -a "$WORK/data/postgresql.conf" >/dev/null
		cluster_start "$WORK" sys_nice
		echo "the worker and the recorder: real-time priority 1 (the server started with CAP_SYS_NICE)"
	else
		[ "${BENCH_REALTIME:-machine}" != tuned ] || echo "real-time priority: not available (needs root to start the server with CAP_SYS_NICE)"
		cluster_start "$WORK"
	fi
	cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE payments' >/dev/null
	q -c 'CREATE EXTENSION payments' >/dev/null

	sim_start "$WORK/sim" --threads 2
	sim_ctl POST /latency "{\"fixedMs\":${BENCH_LATENCY_MS:-100},\"randomMs\":0}" >/dev/null
	q -c "SET payments.allow_insecure_endpoint = on" -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$( [ "${BENCH_TLS:-1}" = 1 ] && echo "$SIM_TLS_API" || echo "$SIM_API")', ca_file => '$SIM_CA')" >/dev/null

	cat > "$WORK/purchase.sql" <<'SQL'
SELECT payments.pay_purchase(amount => '12.34 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'));
SQL
	as_root chown "$PG_OS_USER" "$WORK/purchase.sql"
}
