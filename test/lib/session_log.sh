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
# card_test_setup NAME: what the tests that send card data in statements
# share: a test card number (PAN, and its halves A and B for a statement
# that splits it), an expiry year to come (YEAR), the server log (LOG), the
# test's output file ($WORK/NAME.out: OUT) and psql_db.
card_test_setup() {
	PAN=4532015112830366
	A=${PAN:0:8} B=${PAN:8}
	YEAR=$(( $(date -u +%Y) + 3 ))
	LOG="$WORK/postgres.log"
	OUT="$WORK/$1.out"
	psql_db() { cluster_psql "$WORK" "$PORT" payments "$@"; }
}
# idle_probe APPLICATION_NAME: the command (for psql's \!) with which
# another session reads what pg_stat_activity shows of that application's
# last statement while it is idle
idle_probe() {
	printf '%s' "$PG_BINDIR/psql -X -At -h $WORK/sock -p $PORT -U postgres -d payments -c \"SELECT 'seen ' || state || ': ' || query FROM pg_stat_activity WHERE application_name = '$1'\""
}
# without_durations FILE: the log's lines without their prefixes and without
# the durations PostgreSQL writes ("duration: 0.473 ms", a lock wait's
# "after 496.608 ms", German "496,608 ms", Japanese "496.608ミリ秒"): their
# digits are the clock's, and a code such as 473 is one of them by chance
# (auto_explain's "duration: 0.473 ms" failed card_log_hygiene once)
without_durations() { strip_prefix "$1" | sed -E 's/[0-9]+[.,][0-9]+ ?(ms|ミリ秒)//g'; }
# codes_in FILE CODE...: prints each code found in FILE as a word
codes_in() {
	local f=$1 c; shift
	for c in "$@"; do
		if without_durations "$f" | grep -wF -- "$c" >/dev/null; then echo "$c"; fi
	done
}

# CARD_LC_MESSAGES=LOCALE (e.g. de_DE.UTF-8; test/lib/common.sh generates
# PAYMENTS_LOCALES): the test's sessions run with lc_messages = LOCALE
# (PGOPTIONS, which psql, pgbench and libpq read), so the server writes
# its messages, to the log and to the client, in that language (German
# quotes with » «, French with « »; the prefixes are translated too), and
# the test looks for the messages it expects as pg_msg writes them.
CARD_LC_MESSAGES=${CARD_LC_MESSAGES:-}
if [ -n "$CARD_LC_MESSAGES" ]; then
	export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c lc_messages=$CARD_LC_MESSAGES"
fi
# pg_msg_fmt FORMAT: the translation of the server's message FORMAT (its
# English text, the msgid of PostgreSQL's catalog) into the language of
# CARD_LC_MESSAGES (FORMAT itself without it)
pg_msg_fmt() {
	if [ -z "$CARD_LC_MESSAGES" ]; then printf '%s' "$1"; return; fi
	local tr
	tr=$(LANGUAGE='' LC_ALL=$CARD_LC_MESSAGES TEXTDOMAINDIR=$("$PG_BINDIR/pg_config" --localedir) \
		gettext -d "postgres-$("$PG_BINDIR/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')" -- "$1")
	# (never empty: an empty expectation would be found anywhere; English
	# instead, which a translated log does not hold, so the check fails)
	printf '%s' "${tr:-$1}"
}
# pg_msg FORMAT [ARG...]: the message FORMAT with ARGs filled in, as the
# server writes it under CARD_LC_MESSAGES.  A translation may take its
# arguments in another order (Japanese: %2$s before %1$s), which bash's
# printf does not know: each conversion's argument is picked by its
# number (or the next in turn), and the conversions, without their
# numbers, are handed to printf with the arguments in that order.
pg_msg() {
	local fmt rest spec n seq=0 out=''
	local -a args=("${@:2}") picked=()
	fmt=$(pg_msg_fmt "$1")
	rest=$fmt
	while [[ $rest == *%* ]]; do
		out+=${rest%%\%*}
		rest=${rest#*%}
		[[ $rest =~ ^(([1-9][0-9]*)\$)?([-+\ #0]*[0-9]*(\.[0-9]+)?(hh|h|ll|l|z)?[diouxXeEfgGcs%]) ]] ||
			die "pg_msg: a conversion pg_msg does not know in \"$fmt\""
		rest=${rest:${#BASH_REMATCH[0]}}
		spec=${BASH_REMATCH[3]}
		if [ "$spec" = % ]; then out+=%%; continue; fi
		n=${BASH_REMATCH[2]:-$((++seq))}
		out+=%${spec/%llu/s}
		picked+=("${args[n - 1]-}")
	done
	out+=$rest
	# shellcheck disable=SC2059
	printf -- "$out" "${picked[@]}"
}
# pg_msg_part FORMAT N: the Nth piece of fixed text of FORMAT's
# translation (between its conversions, in the translation's order, which
# may not be FORMAT's: Japanese %2$s before %1$s), for a message whose
# arguments a test cannot know (a pid, a time)
pg_msg_part() {
	pg_msg_fmt "$1" | sed -E 's/%([0-9]+\$)?[-+ #0]*[0-9]*(\.[0-9]+)?(hh|h|ll|l|z)?[a-zA-Z]/\n/g' | sed -n "$2p"
}
# pg_msg_re FORMAT: FORMAT's translation as a basic regular expression
# (grep), each conversion matching any text: for a message whose
# arguments a test cannot know, whole, where one piece of it says little
# (Japanese "process %d still waiting for ..." has one letter, the
# particle "wa", between its first two conversions)
pg_msg_re() {
	pg_msg_fmt "$1" | sed -E -e 's/%%/\x02/g' \
		-e 's/%([0-9]+\$)?[-+ #0]*[0-9]*(\.[0-9]+)?(hh|h|ll|l|z)?[a-zA-Z]/\x01/g' \
		-e 's/[][\.*^$]/\\&/g' -e 's/\x01/.*/g' -e 's/\x02/%/g'
}
