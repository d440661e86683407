# Concurrent psql sessions of merchant M for race tests: each reads its
# commands from a pipe, so a test can interleave them statement by
# statement and see which one waits for a lock.  Needs WORK, PORT and M;
# sessions_init makes the pipes' directory.
declare -A SESSION_FD SESSION_PID

# sessions_init NAME: the pipes and outputs go to $WORK/NAME (SESS)
sessions_init() {
	SESS="$WORK/$1"
	mkdir -p "$SESS"
	as_root chown "$PG_OS_USER" "$SESS"
}

# session NAME: a new session (application_name sess_NAME) of merchant M
session() {
	local name=$1 fd
	rm -f "$SESS/$name.in" "$SESS/$name.out"
	mkfifo "$SESS/$name.in"
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=0 -v VERBOSITY=verbose \
		<"$SESS/$name.in" >"$SESS/$name.out" 2>&1 &
	SESSION_PID[$name]=$!
	exec {fd}>"$SESS/$name.in"
	SESSION_FD[$name]=$fd
	say "$name" "SET application_name = 'sess_$name'; SET search_path = public, payments; SET payments.merchant_id = '$M';"
}
# say NAME SQL: send SQL (or a psql command) to the session
say() { printf '%s\n' "$2" >&"${SESSION_FD[$1]}"; }
# done_with NAME MARK: 1 once the session printed MARK (\echo MARK)
done_with() { grep -qx "$2" "$SESS/$1.out" && echo 1; }
# waits_for_lock NAME: 1 while the session waits for a lock
waits_for_lock() {
	[ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'sess_$1' AND wait_event_type = 'Lock'")" = 1 ] && echo 1
}
# close NAME: end the session
close() {
	say "$1" '\q'
	eval "exec ${SESSION_FD[$1]}>&-"
	unset "SESSION_FD[$1]"
	wait "${SESSION_PID[$1]}" || true
	unset "SESSION_PID[$1]"
}
# sessions_kill: for a trap, every session still open
sessions_kill() {
	local s
	for s in "${!SESSION_FD[@]}"; do
		eval "exec ${SESSION_FD[$s]}>&-" 2>/dev/null || true
	done
	for s in "${!SESSION_PID[@]}"; do
		kill "${SESSION_PID[$s]}" 2>/dev/null || true
	done
}

# An answer gate (answer_gate KEY): a test trigger makes the worker's
# recording of a payment's end (pending, unknown or in review to anything
# else) take advisory lock (KEY, merchant) shared.  close_gate: session g
# holds it for merchant $M, so that recording waits
# (payments.worker_lock_timeout, then the worker holds the answer and
# records it again shortly); open_gate lets go; ungate drops the trigger.
# The test's own acts must never end a payment, or they meet the gate too.
answer_gate() {
	GATE_KEY=$1
	cluster_psql "$WORK" "$PORT" payments -q -c "CREATE FUNCTION public.test_gate_answer() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_catalog.pg_advisory_xact_lock_shared($GATE_KEY, NEW.merchant_id::int);
	RETURN NEW;
END \$\$" \
		-c "CREATE TRIGGER zz_test_gate_answer BEFORE UPDATE ON payments.payments FOR EACH ROW
			WHEN (OLD.status IN ('pending', 'unknown', 'in_review') AND NEW.status NOT IN ('pending', 'unknown', 'in_review'))
			EXECUTE FUNCTION public.test_gate_answer()"
}
ungate() {
	cluster_psql "$WORK" "$PORT" payments -q -c "DROP TRIGGER IF EXISTS zz_test_gate_answer ON payments.payments" \
		-c "DROP FUNCTION IF EXISTS public.test_gate_answer()" \
		-c "DROP TRIGGER IF EXISTS zz_test_gate_passes ON payments.payments" \
		-c "DROP FUNCTION IF EXISTS public.test_gate_passes()" \
		-c "DROP SEQUENCE IF EXISTS public.test_gate_passes" >/dev/null 2>&1 || true
}
# count_gate_passes PAYMENT: from now on, each attempt to record the end of
# merchant M's PAYMENT that has passed the gate is counted, whether its
# transaction then commits or fails (a sequence: nextval is not rolled
# back); gate_passes prints the count.  Once an attempt has committed the
# payment has ended and no other comes, so a count of two means the first
# passed the gate and failed after it.  (The trigger fires after the
# gate's: triggers of an event fire in the order of their names.)
count_gate_passes() {
	cluster_psql "$WORK" "$PORT" payments -q -c "DROP TRIGGER IF EXISTS zz_test_gate_passes ON payments.payments" \
		-c "CREATE SEQUENCE IF NOT EXISTS public.test_gate_passes MINVALUE 0 START 0" \
		-c "SELECT setval('public.test_gate_passes', 0, true)" \
		-c "CREATE OR REPLACE FUNCTION public.test_gate_passes() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_catalog.nextval('public.test_gate_passes');
	RETURN NEW;
END \$\$" \
		-c "CREATE TRIGGER zz_test_gate_passes BEFORE UPDATE ON payments.payments FOR EACH ROW
			WHEN (NEW.merchant_id = $M AND NEW.payment_id = $1
				AND OLD.status IN ('pending', 'unknown', 'in_review') AND NEW.status NOT IN ('pending', 'unknown', 'in_review'))
			EXECUTE FUNCTION public.test_gate_passes()" >/dev/null
}
gate_passes() {
	cluster_psql "$WORK" "$PORT" payments -Atc "SELECT last_value FROM public.test_gate_passes"
}
# gate_cleanup: for a trap, in a test with a gate and the simulator: every
# session still open killed, the gate dropped, the simulator's faults
# cleared and the simulator stopped
gate_cleanup() {
	sessions_kill
	ungate
	sim_ctl DELETE /faults >/dev/null 2>&1 || true
	sim_stop
}
close_gate() {
	session g
	say g "SELECT 'gate closed ' || pg_advisory_lock($GATE_KEY, $M)::text;"
	say g '\echo G-CLOSED'
	[ "$(poll_value 30 done_with g G-CLOSED)" = 1 ] || die "the gate's session never took its lock"
}
open_gate() {
	say g "SELECT pg_advisory_unlock($GATE_KEY, $M);"
	close g
}
