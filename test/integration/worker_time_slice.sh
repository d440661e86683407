#!/usr/bin/env bash
# payments.worker_time_slice: the worker and the recorder ask the kernel for
# that CPU time slice (se.slice in /proc/PID/sched, Linux 6.12 and later),
# at start and after a reload; 0 gives them back the kernel's default; the
# billing process and the callers' backends keep the default throughout.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
trap 'qo -c "ALTER SYSTEM RESET payments.worker_time_slice" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true' EXIT
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
qo -c "ALTER SYSTEM RESET payments.worker_time_slice" -c "SELECT pg_reload_conf()" >/dev/null
tap_done
