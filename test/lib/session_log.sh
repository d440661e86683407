# What this test's sessions logged, for the tests that search the server
# log for card data (card_log_hygiene, card_error_echoes).  Source it after
# integration.sh.

# What this test's sessions added to the log: lines whose prefix names a
# user@database, and their continuation lines.  Background processes (a
# checkpoint's "wrote 573 buffers") would otherwise look like security
# codes.
# session_log SIZE FILE: what sessions logged after the log had SIZE bytes,
# up to a mark a new session logs once they are done.  A session writes its
# lines before it answers its client (the log is the server's stderr, which
# each backend writes itself; with logging_collector on, a pipe that the
# logger reads in order): once the mark is in the file, so is every line
# of a session whose client has returned.  (Before: a second's sleep "for
# the logger".)
session_log() {
	local log=${LOG:-$WORK/postgres.log} mark
	mark="session_log mark $(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr 0-9 g-p)"
	cluster_psql "$WORK" "$PORT" postgres -qc "DO \$\$ BEGIN RAISE LOG '$mark'; END \$\$" >/dev/null
	marked() { [ "$(tail -c +"$(($1 + 1))" "$log" | grep -cF "$mark")" = 0 ] || echo marked; }
	[ -n "$(poll_value 30 marked "$1")" ] || die "the server log never showed \"$mark\" (logged by a new session)"
	tail -c +"$(($1 + 1))" "$log" |
		awk -v mark="$mark" 'index($0, mark) { done = 1 } done { next }
			/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { keep = ($0 ~ /\] [^ ]+@[^ ]+ /) } keep' > "$2"
}
# log lines without their prefix (timestamp, pid): a CVV could match those
strip_prefix() { sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [A-Z]+ \[[0-9]+\] //' "$1"; }
# codes_in FILE CODE...: prints each code found in FILE as a word
codes_in() {
	local f=$1 c; shift
	for c in "$@"; do
		if strip_prefix "$f" | grep -wF -- "$c" >/dev/null; then echo "$c"; fi
	done
}
