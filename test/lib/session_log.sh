# What this test's sessions logged, for the tests that search the server
# log for card data (card_log_hygiene, card_error_echoes).  Source it after
# integration.sh.

# Let the logger catch up, then take what this test's sessions added to the
# log: lines whose prefix names a user@database, and their continuation
# lines.  Background processes (a checkpoint's "wrote 573 buffers") would
# otherwise look like security codes.
# session_log SIZE FILE: what sessions logged after the log had SIZE bytes.
session_log() {
	sleep 1
	tail -c +"$(($1 + 1))" "${LOG:-$WORK/postgres.log}" |
		awk '/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { keep = ($0 ~ /\] [^ ]+@[^ ]+ /) } keep' > "$2"
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
