#!/usr/bin/env bash
# Card data in a string of several statements, in an EXECUTE written any
# way, in the text a PREPARE keeps, in a user function's arguments and in
# bind parameters reaches no log line and no error message.
#
# 1. A prepared statement that calls pay_card, EXECUTEd with the card
#    number split in two literals (no digit run to recognise) and the code:
#    after another statement in the same string (SELECT 1; EXECUTE ...),
#    after a semicolon, a dollar quote and an E'' string that hold ';',
#    after a leading comment ("--" and C-style), in mixed case with a
#    quoted name, in EXPLAIN EXECUTE and CREATE TABLE AS EXECUTE, and with
#    an error raised inside (division by zero: "STATEMENT: ..." with
#    log_min_error_statement), under log_statement = 'all' and under
#    log_min_duration_statement = 0 ("duration: ... statement: ...").
#    Before: only an EXECUTE at the very start of the string was known to
#    carry card data; every other one was logged with the code and number.
# 2. A PREPARE, in a string of several statements, of a call of a user
#    function with a card number and code as literals, then its EXECUTE,
#    whose log line quotes the text that prepared it ("DETAIL: prepare:
#    ..."); the same statement prepared by a Parse message (libpq's
#    PQprepare) and EXECUTEd by name.  Before: the code in clear in the
#    detail (the number was masked as a digit run).  A Parse that prepares
#    "EXECUTE p($1, $2)", p calling pay_card, and an EXECUTE of it: its
#    arguments are card data too (before: in clear in "statement: ...").
# 3. A user function and a procedure called with a card number and a code
#    (SELECT f('4111...', '123'), CALL p(...)): the number is a digit run,
#    so the statement holds card data and loses its literals' digits.
# 4. Bind parameters (pgbench -M extended, and libpq's PQexecParams): a
#    user function's card number and code, with log_parameter_max_length
#    = -1, and with an error and log_parameter_max_length_on_error (-1, and
#    10, which cuts the number short).
# 5. pg_stat_activity of a backend idle after a statement holding card data
#    that failed before its parse analysis ended (an unknown function, a
#    syntax error): before, the text as sent, card and code in clear, for
#    as long as the backend stayed idle.  The same with log_min_messages =
#    fatal (the error not logged): before, in clear; also after a
#    SAVEPOINT, and a statement cut by track_activity_query_size after 11
#    digits of the number.
# 6. A comment with a quote in it ("-- the customer's card", and C-style)
#    before a text[] literal that holds the number and the code in double
#    quotes ('{"4532...","633"}').  Before: the comment's quote was read
#    as opening a literal, the literal after it as a quoted name, and the
#    code was logged in clear (the number was masked as a digit run).
#    A '$' in a name (x$a$: not a dollar quote) and a name ending in E
#    before a literal (name'\': not an E'' string): before, each turned
#    the literals after it inside out and their digits were logged.
# 7. A user function whose own statement calls pay_card with a comment
#    inside the call (a quote in a C-style and in a -- comment, a ')' in
#    one, a quote in one before a number split in two literals) and fails
#    (division by zero): the error's context quotes that statement ("SQL
#    statement \"...\""), which only the log hook's masking of any text
#    (card_redact: the literals of pay_card(...)) sees, since the
#    statement sent (SELECT f(1, 0)) holds no card data.  Before: the
#    comment's quote was read as opening a literal (and the ')' as ending
#    the call), and the code, or the split number, was logged in clear.
# 8. A user function's statement that calls pay_card after a function it
#    calls failed in a statement that holds the word pay_card and a '('
#    in a literal or a comment ('pay_card("', 'pay_card(/*', 1 /* pay_card("
#    */ / d): the context quotes both statements, and read from the first
#    pay_card, the second statement is inside a quoted name or a comment,
#    and its arguments (a column in double quotes before the code, in the
#    third) too.  Before: only the first was read as a call, and the code
#    was logged and sent in clear (the number was masked as a digit run).
# 9. A DO block that calls pay_card and then fails in an assignment
#    (division by zero): the context quotes the assignment ("PL/pgSQL
#    assignment \"c := '692'::int / 0\""), as it does a statement ("SQL
#    statement \"...\"").  Before: its literals kept their digits (692 in
#    the log and the message).
# A statement without card data keeps its digits, even with the word
# "execute" in it.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/session_log.sh"

card_test_setup card_statement_strings

psql_db -q -c "CREATE FUNCTION public.card_strings_buy(pan text, code text) RETURNS text LANGUAGE plpgsql AS
	\$\$ BEGIN RETURN payments.pay_card_last4(payments.pay_card(pan, 12, $YEAR, code)); END \$\$" \
	-c "CREATE PROCEDURE public.card_strings_pay(pan text, code text) LANGUAGE plpgsql AS
	\$\$ BEGIN PERFORM payments.pay_card_last4(payments.pay_card(pan, 12, $YEAR, code)); END \$\$" \
	-c "GRANT EXECUTE ON FUNCTION public.card_strings_buy(text, text) TO PUBLIC" \
	-c "CREATE FUNCTION public.card_strings_comment(k int, d int) RETURNS void LANGUAGE plpgsql AS
	\$\$ BEGIN
	IF k = 1 THEN
		PERFORM payments.pay_card_last4(payments.pay_card('$PAN', /* it's */ 12, $YEAR, '671')), 1 / d;
	ELSIF k = 2 THEN
		PERFORM payments.pay_card_last4(payments.pay_card('$PAN', -- the customer's card
			12, $YEAR, '672')), 1 / d;
	ELSIF k = 3 THEN
		PERFORM payments.pay_card_last4(payments.pay_card('$PAN', /* ) */ 12, $YEAR, '673')), 1 / d;
	ELSE
		PERFORM payments.pay_card_last4(payments.pay_card(/* it's */ '$A' || '$B', 12, $YEAR, '674')), 1 / d;
	END IF;
	END \$\$" \
	-c "CREATE FUNCTION public.card_strings_word(k int, d int) RETURNS int LANGUAGE plpgsql AS
	\$\$ BEGIN
	IF k = 1 THEN
		PERFORM 1 / d, 'pay_card(\"';
	ELSIF k = 2 THEN
		PERFORM 1 / d, 'pay_card(/*';
	ELSE
		PERFORM 1 /* pay_card(\" */ / d;
	END IF;
	RETURN k;
	END \$\$" \
	-c "CREATE FUNCTION public.card_strings_after(k int, d int) RETURNS void LANGUAGE plpgsql AS
	\$\$ BEGIN
	IF k = 1 THEN
		PERFORM public.card_strings_word(1, d), payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '681'));
	ELSIF k = 2 THEN
		PERFORM public.card_strings_word(2, d), payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '682'));
	ELSE
		PERFORM public.card_strings_word(3, d), payments.pay_card_last4(payments.pay_card(\"pan\", 12, $YEAR, '683'))
			FROM (SELECT '$PAN' AS \"pan\") s;
	END IF;
	END \$\$" >/dev/null
log_size_before=$(stat -c %s "$LOG")

# psql's \; sends the statements around it in one string; -c sends its
# text as it is.
psql_db -v ON_ERROR_STOP=0 > "$OUT" 2>&1 <<SQL
SET log_statement = 'all';
SET log_min_error_statement = error;
PREPARE card_buy(text, text) AS SELECT payments.pay_card_last4(payments.pay_card(\$1, 12, $YEAR, \$2));
PREPARE card_div(text, text, int) AS SELECT payments.pay_card_last4(payments.pay_card(\$1, 12, $YEAR, \$2)), 1 / \$3;
-- 1.
SELECT 1 \; EXECUTE card_buy('$A' || '$B', '611');
SELECT ';', \$\$; EXECUTE \$\$, E'\\'; ' \; /* ; */ EXECUTE card_buy('$A' || '$B', '612');
/* lead */ ExEcUtE "card_buy"('$A' || '$B', '613');
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE card_buy('$A' || '$B', '614');
CREATE TEMP TABLE card_strings_t AS EXECUTE card_buy('$A' || '$B', '615');
SELECT 1 \; EXECUTE card_div('$A' || '$B', '616', 0);
-- 2.
SELECT 1 \; PREPARE card_lit AS SELECT public.card_strings_buy('$PAN', '621');
EXECUTE card_lit;
-- 3.
SELECT public.card_strings_buy('$PAN', '631');
CALL public.card_strings_pay('$PAN', '632');
-- 6.
SELECT /* the customer's card */ public.card_strings_buy(c[1], c[2]) FROM (SELECT '{"$PAN","633"}'::text[] AS c) s;
SELECT public.card_strings_buy('$PAN', '635') AS x\$a\$, length('\$a\$ "636"') AS note, length(name'\\' || '"637"') AS n;
-- 7.
SELECT public.card_strings_comment(1, 0);
SELECT public.card_strings_comment(2, 0);
SELECT public.card_strings_comment(3, 0);
SELECT public.card_strings_comment(4, 0);
-- 8.
SELECT public.card_strings_after(1, 0);
SELECT public.card_strings_after(2, 0);
SELECT public.card_strings_after(3, 0);
-- 9.
DO \$\$ DECLARE c int; BEGIN
	PERFORM payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '691'));
	c := '692'::int / 0;
END \$\$;
-- without card data
SELECT 'execute' IS NULL, 4242 \; SELECT 4243 AS executed;
SQL
psql_db -v ON_ERROR_STOP=0 >> "$OUT" 2>&1 \
	-c "SET log_min_duration_statement = 0" \
	-c "PREPARE card_buy(text, text) AS SELECT payments.pay_card_last4(payments.pay_card(\$1, 12, $YEAR, \$2))" \
	-c "-- lead
execute/* x */card_buy('$A' || '$B', '617')" \
	-c "SELECT 1; EXECUTE card_buy('$A' || '$B', '618')" \
	-c "-- the customer's card
SELECT public.card_strings_buy(c[1], c[2]) FROM (SELECT '{\"$PAN\",\"634\"}'::text[] AS c) s" \
	-c "SELECT 4244 AS executed; SELECT 'execute'"

# 4. bind parameters (pgbench sends :variables as $1, $2, ...)
cat > "$WORK/card_strings.bind.sql" <<'SQL'
SELECT public.card_strings_buy(:pan, :code);
SELECT public.card_strings_buy(:pan, :code), 1 / 0;
SQL
chmod 644 "$WORK/card_strings.bind.sql"
for max in -1 10; do
	as_pg env PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c log_min_duration_statement=0 -c log_parameter_max_length=-1 -c log_parameter_max_length_on_error=$max" \
		"$PG_BINDIR/pgbench" -n -M extended -t 1 -h "$WORK/sock" -p "$PORT" -U postgres \
		-D pan="$PAN" -D code="$([ "$max" = -1 ] && echo 641 || echo 642)" -f "$WORK/card_strings.bind.sql" payments >> "$OUT" 2>&1
done

# 2. and 4. through libpq: a statement prepared by a Parse message (its
# text as sent), EXECUTEd by name in a simple query; parameters bound
# with an error after them.
python3 - "host=$WORK/sock port=$PORT user=postgres dbname=payments" "$PAN" "$YEAR" >> "$OUT" 2>&1 <<'PY'
import ctypes, ctypes.util, sys
pq = ctypes.CDLL(ctypes.util.find_library("pq"))
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQexec.restype = pq.PQprepare.restype = pq.PQexecParams.restype = ctypes.c_void_p
pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQprepare.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
pq.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                            ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
pq.PQresultStatus.argtypes = [ctypes.c_void_p]
pq.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
pq.PQresultErrorMessage.restype = ctypes.c_char_p
pq.PQstatus.argtypes = [ctypes.c_void_p]
conn = pq.PQconnectdb(sys.argv[1].encode())
pan = sys.argv[2]
if pq.PQstatus(conn) != 0:
    sys.exit("libpq: no connection")
def show(what, res):
    print("libpq %s: status %d %s" % (what, pq.PQresultStatus(res), pq.PQresultErrorMessage(res).decode().strip()))
show("set", pq.PQexec(conn, b"SET log_statement = 'all'; SET log_parameter_max_length_on_error = -1"))
show("parse", pq.PQprepare(conn, b"card_parsed", ("SELECT public.card_strings_buy('%s', '622')" % pan).encode(), 0, None))
show("execute", pq.PQexec(conn, b"EXECUTE card_parsed"))
# a Parse that prepares an EXECUTE of a statement that calls pay_card, and
# an EXECUTE of that (it fails: the inner EXECUTE has no parameters)
show("prepare", pq.PQexec(conn, ("PREPARE card_buy(text, text) AS SELECT payments.pay_card_last4(payments.pay_card($1, 12, %s, $2))" % sys.argv[3]).encode()))
show("parse", pq.PQprepare(conn, b"card_exec", b"EXECUTE card_buy($1, $2)", 0, None))
show("nested", pq.PQexec(conn, ("SELECT 1; EXECUTE card_exec('%s' || '%s', '623')" % (pan[:8], pan[8:])).encode()))
params = (ctypes.c_char_p * 2)(pan.encode(), b"651")
show("bind", pq.PQexecParams(conn, b"SELECT public.card_strings_buy($1, $2), 1 / 0", 2, None, params, None, None, 0))
PY

# 5. pg_stat_activity keeps showing a backend's last statement while it is
# idle: one that failed before its parse analysis ended (an unknown
# function, a syntax error) never reached the hooks that mask it.
# Another psql reads it while this session is idle after each.  Then the
# same with log_min_messages = fatal: such an error is not logged, so the
# log hook, which masked the text when it reported the error, never runs
# (before: the card number and the code in clear while idle); the
# transaction's abort masks it, and a savepoint's (a failed statement
# after SAVEPOINT aborts only that), and a text cut where
# pg_stat_activity cuts it loses the digits it ends with (a card number
# cut after 11 digits is not one).
probe=$(idle_probe card-idle)
idle_case() {
	local label=$1 setting=$2 c=$3
	psql_db -v ON_ERROR_STOP=0 > "$WORK/card_strings.idle-out" 2>&1 <<SQL
SET application_name = 'card-idle';
$setting
PREPARE card_buy(text, text) AS SELECT payments.pay_card_last4(payments.pay_card(\$1, 12, $YEAR, \$2));
SELECT public.card_strings_nosuch('$PAN', '${c}1');
\! $probe
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR '${c}2'));
\! $probe
BEGIN;
SELECT 1 \; EXECUTE card_buy('$A' || '$B' '${c}3');
\! $probe
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '${c}4')) FROM public.card_strings_nosuch_t;
\! $probe
ROLLBACK;
$cut_stmt
\! $probe
SQL
	seen=$(grep '^seen ' "$WORK/card_strings.idle-out")
	comment "$seen"
	is "$(grep -c '^seen idle' <<<"$seen")" 5 "$label: another session read the idle backend's last statement five times"
	unlike "$seen" "$PAN|$A|$B|${c}[1-4]" "$label: a statement that failed before its parse analysis ended shows no card data in pg_stat_activity"
	# (the client's own messages of errors the server does not log are
	# not masked: PostgreSQL calls no log hook for them; README says so)
	if [ -z "$setting" ]; then cat "$WORK/card_strings.idle-out" >> "$OUT"; else echo "$seen" >> "$OUT"; fi
}
# a statement longer than pg_stat_activity shows, cut by it after 11
# digits of the card number (no longer a number, as shown)
shown_size=$(psql_db -Atc "SELECT setting FROM pg_settings WHERE name = 'track_activity_query_size'")
cut_head="SELECT 1 FROM public.card_strings_nosuch_t WHERE x = '"
cut_tail="' AND y = '"
cut_pad=$(printf "%$((shown_size - 1 - 11 - ${#cut_head} - ${#cut_tail}))s" '' | tr ' ' a)
cut_stmt="$cut_head$cut_pad$cut_tail$PAN';"
idle_case "errors logged" "" 66
idle_case "errors not logged (log_min_messages = fatal)" "SET log_min_messages = fatal;" 60

session_log "$log_size_before" "$WORK/card_statement_strings.server-log"
psql_db -q -c "DROP FUNCTION public.card_strings_buy(text, text)" \
	-c "DROP FUNCTION public.card_strings_comment(int, int)" -c "DROP FUNCTION public.card_strings_after(int, int)" \
	-c "DROP FUNCTION public.card_strings_word(int, int)" -c "DROP PROCEDURE public.card_strings_pay(text, text)"
f=$WORK/card_statement_strings.server-log

# the statements ran, failed and were logged as intended; under
# CARD_LC_MESSAGES (session_log.sh), with the server's texts in the
# patterns below translated
re_esc() { sed 's/[][\.*^$]/\\&/g'; }
translated() {
	local m=$1 dur sql_close
	[ -n "$CARD_LC_MESSAGES" ] || { printf '%s' "$m"; return; }
	dur=$(pg_msg 'duration: %s ms  statement: %s' DURATION '' | re_esc)
	sql_close=$(pg_msg_part 'SQL statement "%s"' 2 | re_esc)
	if [[ $m == *'SQL statement "'* || $m == *'PL/pgSQL assignment "'* ]] && [[ $m == *'"' ]]; then
		m=${m%'"'}$sql_close
	fi
	m=${m//'duration: [0-9.]* ms  statement: '/${dur//DURATION/[0-9.]*}}
	m=${m//'CONTEXT:  '/$(pg_msg 'CONTEXT:  ' | re_esc)}
	m=${m//'DETAIL:  prepare: '/$(pg_msg 'DETAIL:  ' | re_esc)$(pg_msg 'prepare: %s' '' | re_esc)}
	m=${m//'ERROR:  division by zero'/$(pg_msg 'ERROR' | re_esc):  $(pg_msg 'division by zero' | re_esc)}
	m=${m//'SQL statement "'/$(pg_msg_part 'SQL statement "%s"' 1 | re_esc)}
	m=${m//'PL/pgSQL assignment "'/$(pg_msg_part 'PL/pgSQL assignment "%s"' 1 | re_esc)}
	m=${m//'statement: '/$(pg_msg 'statement: %s' '' | re_esc)}
	m=${m//'with parameters: '/$(pg_msg_part 'unnamed portal with parameters: %s' 1 | re_esc)}
	m=${m//'parameters: '/$(pg_msg 'parameters: %s' '' | re_esc)}
	printf '%s' "$m"
}
for m in 'statement: SELECT X ; EXECUTE card_buy' 'statement: /\* lead \*/ ExEcUtE "card_buy"' \
	'statement: EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE card_buy(' \
	'statement: CREATE TEMP TABLE card_strings_t AS EXECUTE' 'ERROR:  division by zero' \
	'DETAIL:  prepare: SELECT X ; PREPARE card_lit' 'statement: EXECUTE card_parsed' \
	'DETAIL:  prepare: SELECT public.card_strings_buy(' 'statement: CALL public.card_strings_pay(' \
	'duration: [0-9.]* ms  statement: -- lead' 'duration: [0-9.]* ms  statement: SELECT X; EXECUTE card_buy(' \
	"statement: SELECT /\\* the customer's card \\*/ public.card_strings_buy(c\\[X\\], c\\[X\\])" \
	"duration: [0-9.]* ms  statement: -- the customer's card" \
	"AS x\$a\$, length('\$a\$ \"XXX\"') AS note, length(name'\\\\' || '\"XXX\"') AS n" \
	"parameters: \\\$1 = 'XXXX" 'with parameters: \$1 = ' \
	"CONTEXT:  SQL statement \"SELECT payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', /\\* it's \\*/ 12, $YEAR, 'XXX')), 1 / d\"" \
	"CONTEXT:  SQL statement \"SELECT payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', /\\* ) \\*/ 12, $YEAR, 'XXX')), 1 / d\"" \
	"CONTEXT:  SQL statement \"SELECT payments.pay_card_last4(payments.pay_card(/\\* it's \\*/ 'XXXXXXXX' || 'XXXXXXXX', 12, $YEAR, 'XXX')), 1 / d\"" \
	"CONTEXT:  SQL statement \"SELECT 1 / d, 'pay_card(\"'\"" "CONTEXT:  SQL statement \"SELECT 1 / d, 'pay_card(/\\*'\"" \
	"CONTEXT:  SQL statement \"SELECT 1 /\\* pay_card(\" \\*/ / d\"" \
	"SQL statement \"SELECT public.card_strings_word(1, d), payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', 12, $YEAR, 'XXX'))\"" \
	"SQL statement \"SELECT public.card_strings_word(2, d), payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', 12, $YEAR, 'XXX'))\"" \
	"SQL statement \"SELECT public.card_strings_word(3, d), payments.pay_card_last4(payments.pay_card(\"pan\", 12, $YEAR, 'XXX'))" \
	"CONTEXT:  PL/pgSQL assignment \"c := 'XXX'::int / X\""; do
	m=$(translated "$m")
	if grep -q -- "$m" "$f"; then ok 0 "in the log: $m"; else ok 1 "not in the log: $m"; fi
done
is "$(grep -c "$(translated 'ERROR:  division by zero')" "$OUT")" 12 "the twelve divisions by zero failed (simple, seven in a function, a DO block's assignment, two pgbench, libpq)"
like "$(cat "$OUT")" "libpq execute: status 2 " "the statement prepared by a Parse message ran"
like "$(cat "$OUT")" "libpq nested: status 7 $(pg_msg ERROR):  $(pg_msg_part 'there is no parameter $%d' 1 | re_esc)" "the EXECUTE of an EXECUTE prepared by a Parse message failed as expected"
for c in 611 612 613 614 615 616 617 618 621 622 623 631 632 633 634 635 636 637 671 672 673 674 681 682 683 691 692 641 642 651 661 662 663 664 601 602 603 604 "$PAN" "$A" "$B" "${PAN:0:6}"; do
	leaked=$(codes_in "$f" "$c")
	if [ -z "$leaked" ] && ! grep -v '^LINE [0-9]*: ' "$OUT" | grep -qwF -- "$c"; then
		ok 0 "$c is in no log line or message"
	else
		ok 1 "$c in the log or a message"
		comment "$leaked"
		comment "$(grep -wF -e "$c" "$OUT" | sed -n 1,3p)"
	fi
done
for c in 4242 4243 4244; do
	if grep -qwF "$c" "$f"; then ok 0 "a statement without card data keeps its digits ($c)"; else ok 1 "$c was masked"; fi
done

tap_done
