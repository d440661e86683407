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
