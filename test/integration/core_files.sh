#!/usr/bin/env bash
# No core files of the server's processes: a core file holds what the
# process held (the card vault's sealing keys in shared memory, a card in
# a statement's text), and with the keys the vault's data file opens.  The
# postmaster makes itself non-dumpable at start and every process it forks
# inherits it: the kernel then owns their /proc files to root and writes no
# core file.  Checked on a cluster started with core files allowed
# (pg_ctl -c), by crashing a backend: no core file in the data directory;
# and, to show the check can fail, with payments.core_dumps = on: there is
# one (as there was by default before).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}

dir=$(mktemp -d "${TMPDIR:-/tmp}/payments-core.XXXXXX")
port=$(free_port)
trap 'cluster_stop "$dir"; as_root rm -rf "$dir"' EXIT
cluster_init "$dir" "$port" "fsync = off" "shared_buffers = 16MB" "restart_after_crash = on"
pg_uid=$(id -u "$PG_OS_USER")
pattern=$(cat /proc/sys/kernel/core_pattern)
# the kernel writes a core into the crashing process's directory (the data
# directory) when the pattern is a plain relative name
case "$pattern" in
	'|'* | /*) crash_check=no ;;
	*) crash_check=yes ;;
esac

sql() { cluster_psql "$dir" "$port" "$@"; }
pid_of() { sql payments -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"; }
cores() { as_root find "$dir/data" -maxdepth 1 -name 'core*' -type f | wc -l; }

# crash_backend: a backend killed by SIGSEGV (the postmaster restarts the
# others); waits until the server takes connections again
crash_backend() {
	local pid=""
	sql payments -c 'SELECT pg_sleep(60)' >/dev/null 2>&1 &
	for _ in $(seq 100); do
		pid=$(sql payments -Atc "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'") && [ -n "$pid" ] && break
		sleep 0.1
	done
	[ -n "$pid" ] || die "the sleeping backend did not start"
	as_root kill -SEGV "$pid"
	wait || true
	for _ in $(seq 300); do
		sql payments -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	die "the server did not come back after the crash"
}

# check OWNER CORES LABEL: the postmaster's and the worker's /proc files
# owned by root (non-dumpable) or by postgres (dumpable); a crash leaves a
# core file or none
check() {
	local want_owner=$1 want_cores=$2 label=$3 p owners=""
	for p in "$(as_root head -1 "$dir/data/postmaster.pid")" "$(poll_value 30 pid_of 'payments worker')"; do
		owners+="$(stat -c %u "/proc/$p/mem" 2>/dev/null || echo gone) "
	done
	is "$owners" "$want_owner $want_owner " "$label: the postmaster's and the worker's memory files are owned by uid $want_owner"
	if [ "$crash_check" = yes ]; then
		as_root find "$dir/data" -maxdepth 1 -name 'core*' -type f -delete
		crash_backend
		is "$(cores)" "$want_cores" "$label: a backend killed by SIGSEGV leaves $want_cores core file(s) in the data directory"
	else
		echo "ok $((TAP_N += 1)) # SKIP the kernel's core_pattern ($pattern) does not write into the data directory"
	fi
}

PG_CTL_CORE_FILES=1 cluster_start "$dir"
sql postgres -c 'CREATE DATABASE payments' >/dev/null
sql payments -c 'CREATE EXTENSION payments' >/dev/null
check 0 0 "by default"

cluster_stop "$dir"
printf 'payments.core_dumps = on\n' | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
PG_CTL_CORE_FILES=1 cluster_start "$dir"
check "$pg_uid" 1 "payments.core_dumps = on"
is "$(sql payments -Atc 'SHOW payments.core_dumps')" on "the setting reads on"
tap_done
