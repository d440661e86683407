#!/usr/bin/env bash
# When the background processes (the worker, the recorder, the billing
# process) go by reloaded settings: pay_worker_health()'s
# worker_conf_loaded_at, recorder_conf_loaded_at and billing_conf_loaded_at,
# each process's own pg_conf_load_time() published at the top of its
# rounds, which process_reread (test/lib/integration.sh) compares with a
# new session's.
# 1. each is published, and caught up with the server's last load;
# 2. a reload moves each to or past a new session's pg_conf_load_time();
#    rounds without one leave them as they are;
# 3. a process held (SIGSTOP) across a reload has not reread its files,
#    and its time says so while a new session already shows the values
#    (what a test that went on then would have met: the old settings in
#    that process); let go, it rereads them and process_reread returns;
# 4. a process started after a reload goes by the server's load.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
STOPPED=()
cleanup() {
	[ ${#STOPPED[@]} = 0 ] || kill -CONT "${STOPPED[@]}" 2>/dev/null || true
	q -c "ALTER SYSTEM RESET payments.billing_batch" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
}
trap cleanup EXIT
pid_of() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments $1'"; }
# times: the three published times, worker|recorder|billing
times() {
	q -c "SELECT worker_conf_loaded_at || '|' || recorder_conf_loaded_at || '|' || billing_conf_loaded_at
		FROM payments.pay_worker_health()"
}
# caught_up: the times, once each is at or past a new session's load time
caught_up() {
	q -c "SELECT worker_conf_loaded_at || '|' || recorder_conf_loaded_at || '|' || billing_conf_loaded_at
		FROM payments.pay_worker_health()
		WHERE worker_conf_loaded_at >= pg_conf_load_time() AND recorder_conf_loaded_at >= pg_conf_load_time()
			AND billing_conf_loaded_at >= pg_conf_load_time()"
}
set_batch() { q -c "ALTER SYSTEM SET payments.billing_batch = $1" -c "SELECT pg_reload_conf()" >/dev/null; }
# moved OLD NEW: "ok" when each of NEW's three times is later than OLD's
moved() {
	q -c "SELECT 'ok' FROM (SELECT string_to_array('$1', '|')::timestamptz[] AS o,
		string_to_array('$2', '|')::timestamptz[] AS n) x WHERE n[1] > o[1] AND n[2] > o[2] AND n[3] > o[3]"
}

# 1.
t0=$(poll_value 60 caught_up)
ok "$(passed test -n "$t0")" "1: the worker, the recorder and the billing process publish the configuration they go by, the server's last load"

# 2.
set_batch 77
ok "$(passed process_reread worker payments.billing_batch 77)" "2: after a reload the worker has reread its settings"
ok "$(passed process_reread recorder payments.billing_batch 77)" "2: so has the recorder"
ok "$(passed process_reread billing payments.billing_batch 77)" "2: so has the billing process"
t1=$(times)
is "$(moved "$t0" "$t1")" ok "2: each time moved with the reload"
# Nothing shows the rounds of the recorder and the billing process; each
# goes round at least once a second (its WaitLatch times out after 1 s at
# most): this waits out 2.5 s of real time on purpose, the rounds the
# check is about, and the worker's own rounds are seen on top.
w0=$(q -c "SELECT last_loop_at FROM payments.pay_worker_health()")
sleep 2.5
# (a busy machine may delay the worker's next round past the 2.5 s: wait
# for it, up to 60 s, rather than fail)
w1=$(poll_value 60 q -c "SELECT 't' FROM payments.pay_worker_health() WHERE last_loop_at > '$w0'::timestamptz")
is "$w1|$(times)" "t|$t1" "2: rounds without a reload leave each time as it was"

# 3.
rec=$(pid_of recorder)
bil=$(pid_of billing)
ok "$(passed test -n "$rec" -a -n "$bil")" "3: the recorder ($rec) and the billing process ($bil) run"
kill -STOP "$rec" "$bil"
STOPPED=("$rec" "$bil")
set_batch 78
# (not in a subshell: SETTINGS_LOADED_AT is read below)
seen=0; settings_seen payments.billing_batch 78 || seen=1
ok "$seen" "3: with the recorder and the billing process stopped, a new session shows the reloaded value"
ok "$(passed process_reread worker payments.billing_batch 78)" "3: the worker has reread it"
held=$(q -c "SELECT (recorder_conf_loaded_at < '$SETTINGS_LOADED_AT'::timestamptz) || '|' || (billing_conf_loaded_at < '$SETTINGS_LOADED_AT'::timestamptz)
	FROM payments.pay_worker_health()")
is "$held" "true|true" "3: the stopped processes have not: their times are before the new session's load"
kill -CONT "$rec" "$bil"
STOPPED=()
ok "$(passed process_reread recorder payments.billing_batch 78)" "3: let go, the recorder rereads its settings"
ok "$(passed process_reread billing payments.billing_batch 78)" "3: and so does the billing process"

# 4.
ok "$(passed restart_worker)" "4: the worker restarts"
# the old worker's time is past the load (it reread its files after it)
is "$(poll_value 30 q -c "SELECT 'ok' FROM payments.pay_worker_health() WHERE worker_conf_loaded_at = pg_conf_load_time()")" ok \
	"4: the new worker goes by the server's last load, which it started with"
tap_done
