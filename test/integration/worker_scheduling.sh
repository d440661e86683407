#!/usr/bin/env bash
# How the worker and the recorder ask the kernel to schedule them.
# payments.worker_time_slice: they ask for that CPU time slice (se.slice in
# /proc/PID/sched, Linux 6.12 and later), at start and after a reload; 0
# gives them back the kernel's default; the billing process and the
# callers' backends keep the default throughout.
# payments.worker_realtime_priority: they run under SCHED_RR at that
# priority when the server's RLIMIT_RTPRIO allows it; without it they say
# so in the log and keep the ordinary policy and the slice; 0 gives the
# ordinary policy back, with the reniced worker's nice value.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
# the shared cluster's settings back, whatever happens
cleanup() {
	cluster_psql "$WORK" "$PORT" payments -Atq -c "ALTER SYSTEM RESET payments.worker_time_slice" \
		-c "ALTER SYSTEM RESET payments.worker_realtime_priority" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
}
trap cleanup EXIT
pid_of() { qo -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"; }
slice_of() { [ -n "$1" ] && sed -n 's/^se\.slice *: *\([0-9]*\)$/\1/p' "/proc/$1/sched" 2>/dev/null; }
grep -q '^se\.slice' /proc/self/sched || die "this kernel shows no se.slice in /proc/PID/sched (Linux 6.12 or later does)"
# the kernel's default, as a process that never asked has it
default=$(slice_of $$)
comment "the kernel's default slice: $default ns; setting now: $(qo -c 'SHOW payments.worker_time_slice')"
set_slice() {
	qo -c "ALTER SYSTEM SET payments.worker_time_slice = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
# slices_are NS: "ok" once the worker and the recorder both run with NS
slices_are() {
	local w r
	w=$(slice_of "$(pid_of 'payments worker')")
	r=$(slice_of "$(pid_of 'payments recorder')")
	[ "$w" = "$1" ] && [ "$r" = "$1" ] && echo ok
}
setting=$(qo -c "SHOW payments.worker_time_slice")
PAYMENTS_SLICE_DEFAULT=$(qo -c "SELECT boot_val FROM pg_settings WHERE name = 'payments.worker_time_slice'")
want=$default; [ "$setting" = 0 ] || want=$((setting * 1000))
is "$(poll_value 10 slices_are "$want")" ok "at start the worker and the recorder run with the configured slice ($setting us)"

set_slice 250
is "$(poll_value 10 slices_are 250000)" ok "after a reload with 250 us, the worker and the recorder run with a 250 us slice"
billing=$(pid_of 'payments billing')
is "$(slice_of "$billing")" "$default" "the billing process keeps the kernel's default slice"
is "$(qo -c "SELECT substring(pg_read_file('/proc/self/sched') from 'se\\.slice +: +([0-9]+)')")" "$default" "a caller's backend keeps the kernel's default slice"

set_slice 0
is "$(poll_value 10 slices_are "$default")" ok "0 gives them back the kernel's default"

# the slice alone changes: a worker the administrator reniced keeps its nice
# value (asking for nice 0 back would be refused, so no slice either)
w=$(pid_of 'payments worker')
renice -n 3 -p "$w" >/dev/null
set_slice 200
is "$(poll_value 10 slices_are 200000)" ok "200 us after a reload, for a reniced worker too"
is "$(ps -o ni= -p "$w" | tr -d ' ')" 3 "the reniced worker keeps its nice value"

# a restarted worker asks again at start
set_slice 500
is "$(poll_value 10 slices_are 500000)" ok "500 us after a reload"
ok "$(passed restart_worker)" "the worker restarts"
is "$(poll_value 10 slices_are 500000)" ok "the new worker asks for the slice at start"

# real-time priority: SCHED_RR (chrt -p shows it, with SCHED_RESET_ON_FORK)
policy_of() { [ -n "$1" ] && chrt -p "$1" 2>/dev/null | sed -n 's/.*scheduling policy: \([A-Z_|]*\).*/\1/p;s/.*scheduling priority: \([0-9]*\).*/\1/p' | paste -sd' '; }
# policies_are POLICY PRIO: "ok" once the worker and the recorder both run so
policies_are() {
	local w r
	w=$(policy_of "$(pid_of 'payments worker')")
	r=$(policy_of "$(pid_of 'payments recorder')")
	[ "$w" = "$1 $2" ] && [ "$r" = "$1 $2" ] && echo ok
}
set_priority() {
	qo -c "ALTER SYSTEM SET payments.worker_realtime_priority = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
is "$(policy_of "$(pid_of 'payments worker')")" "SCHED_OTHER|SCHED_RESET_ON_FORK 0" "by default the worker runs under the ordinary policy"
# this server has neither RLIMIT_RTPRIO nor CAP_SYS_NICE (an unprivileged
# server's default): refused, said with the way out, and the ordinary
# policy and the slice kept
[ "$(prlimit --pid "$(pid_of 'payments worker')" --rtprio -o SOFT -n 2>/dev/null || echo 0)" = 0 ] \
	|| die "the test cluster's worker may take real-time priorities (RLIMIT_RTPRIO): this part needs one that may not"
log0=$(wc -l <"$WORK/postgres.log")
set_priority 1
ok "$(passed wait_log 10 'payments worker could not take real-time priority 1: Operation not permitted')" \
	"without RLIMIT_RTPRIO the worker says it could not take the priority"
like "$(tail -n +"$log0" "$WORK/postgres.log" | grep -A3 'payments worker could not take real-time priority' | tr '\n' ' ')" \
	'HINT: +Start the server with RLIMIT_RTPRIO of at least 1 \(systemd: LimitRTPRIO=1' "and how to allow it"
ok "$(passed wait_log 10 'payments recorder could not take real-time priority 1')" "so does the recorder"
is "$(poll_value 10 policies_are 'SCHED_OTHER|SCHED_RESET_ON_FORK' 0)" ok "both keep the ordinary policy"
is "$(poll_value 10 slices_are 500000)" ok "and their slice"
cleanup

# A server allowed to (here: started with CAP_SYS_NICE as an ambient
# capability, since this machine's root may not raise RLIMIT_RTPRIO;
# systemd's LimitRTPRIO= is the other way): a cluster of this test's own
RD="$WORK/realtime"
RPORT=$(free_port)
PRIVATE_CLUSTERS+=("$RD")
trap 'cleanup; private_clusters_stop' EXIT
cluster_init "$RD" "$RPORT" "fsync = off" "payments.worker_realtime_priority = 2"
cluster_start "$RD" sys_nice
qo() { cluster_psql "$RD" "$RPORT" payments -At "$@"; }
cluster_psql "$RD" "$RPORT" postgres -qc "CREATE DATABASE payments" >/dev/null
qo -c "CREATE EXTENSION payments CASCADE" >/dev/null
w=$(poll_value 20 pid_of 'payments worker')
is "$(poll_value 20 policies_are 'SCHED_RR|SCHED_RESET_ON_FORK' 2)" ok "allowed, the worker and the recorder run under SCHED_RR at priority 2 from their start"
is "$(policy_of "$(pid_of 'payments billing')")" "SCHED_OTHER 0" "the billing process keeps the ordinary policy"
is "$(qo -c "SELECT substring(pg_read_file('/proc/self/sched') from 'policy +: +([0-9]+)')")" 0 \
	"a caller's backend keeps the ordinary policy"
renice -n 3 -p "$w" >/dev/null
set_priority 0
is "$(poll_value 10 policies_are 'SCHED_OTHER|SCHED_RESET_ON_FORK' 0)" ok "0 gives them the ordinary policy back after a reload"
is "$(poll_value 10 slices_are $((PAYMENTS_SLICE_DEFAULT * 1000)))" ok "with the slice"
is "$(ps -o ni= -p "$w" | tr -d ' ')" 3 "and the reniced worker its nice value"
set_priority 4
is "$(poll_value 10 policies_are 'SCHED_RR|SCHED_RESET_ON_FORK' 4)" ok "priority 4 after a reload"
tap_done
