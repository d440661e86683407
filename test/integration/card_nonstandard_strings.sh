#!/usr/bin/env bash
# Card data in statements of a session with standard_conforming_strings =
# off (any role may SET it; legacy drivers do): its '...' literals take
# backslash escapes, so '\'' is one literal holding a quote and '\'"' one
# holding '"'.  card_redact.c read every '...' as the setting on reads it,
# '\' a literal of its own and the quote after it the start of another:
# from there on the statement was read inside out.  A pay_card call whose
# code (or whole number, split in two literals) stood after such a literal
# had it read as a bare number or as part of a quoted name ("' = '' THEN
# ... '711' ..."), which no masking touches: logged in clear
# (log_statement = 'all', the statement of an error, the error context of
# a PL/pgSQL function compiled in such a session), shown in clear by
# pg_stat_activity while the backend was idle, and kept so in the text of
# a PREPARE (pg_prepared_statements, "DETAIL: prepare: ..." of each of
# its EXECUTEs).  The text is now read both ways wherever it has a
# backslash (the setting in force when it was parsed is not known where it
# is masked: a string "SET standard_conforming_strings = off; SELECT ..."
# is parsed before the SET runs, a function body when it is compiled), and
# what either reading takes for card data is masked.  And a statement sent
# in client_encoding SJIS, whose characters may end in the byte of a
# backslash (converted before it is read: masked as any other).  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/session_log.sh"

card_test_setup card_nonstandard_strings
log_size_before=$(stat -c %s "$LOG")

# what another session reads of this one's last statement while it is idle
probe=$(idle_probe card-nonstandard)

# psql's lexer follows the server's standard_conforming_strings, so it
# splits these statements as the server reads them.
psql_db -v ON_ERROR_STOP=0 > "$OUT" 2>&1 <<SQL
SET application_name = 'card-nonstandard';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET log_statement = 'all';
SET log_min_error_statement = error;
-- the code after '\'"': read as inside a quoted name
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, CASE WHEN '\'"' = '' THEN '' ELSE '711' END)) AS a;
\! $probe
-- the same with an error: the statement is logged again with it
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, CASE WHEN '\'"' = '' THEN '' ELSE '712' END)), 1 / 0;
\! $probe
-- the number split in two literals (no digit run) and the code
SELECT payments.pay_card_last4(payments.pay_card(CASE WHEN '\'"' = '' THEN '' ELSE '$A' || '$B' END, 12, $YEAR, '713')) AS b;
\! $probe
-- the code after '\'': read as a bare number
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, substr('\'' || '714', 2))), 1 / 0;
-- a PREPARE keeps its text; each EXECUTE logs it
PREPARE card_ns AS SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, CASE WHEN '\'"' = '' THEN '' ELSE '715' END));
EXECUTE card_ns;
SELECT 'prepared: ' || statement FROM pg_prepared_statements WHERE name = 'card_ns';
-- a function compiled in this session: its statement quoted by the error's context
CREATE FUNCTION public.card_ns_fn(d int) RETURNS void LANGUAGE plpgsql AS
\$\$ BEGIN
	PERFORM payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, CASE WHEN '\'"' = '' THEN '' ELSE '716' END)), 1 / d;
END \$\$;
SELECT public.card_ns_fn(0);
-- the same statements read with the setting on (the default) still run
SET standard_conforming_strings = on;
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, CASE WHEN '\\' = '' THEN '' ELSE '717' END)) AS c;
-- without card data: digits kept
SET standard_conforming_strings = off;
SELECT '\'"', 4242 AS kept;
SQL
psql_db -q -c "DROP FUNCTION public.card_ns_fn(int)"

# client_encoding SJIS (refused as a server encoding, allowed for a
# client): its characters 表 and ソ end in the byte 0x5c, ASCII's
# backslash.  The server converts a statement to its own encoding before it
# reads it, so the masking never sees those bytes: the statement runs, is
# logged masked, and its reply comes back in SJIS.
printf '%s\n' "SET log_statement = 'all';" "SET log_min_error_statement = error;" \
	"SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '721', '表ソ')) || ' 表ソ' AS d;" \
	"SELECT payments.pay_card_last4(payments.pay_card('$A' || '$B', 12, $YEAR, '722', '表ソ')), 1 / 0;" |
	iconv -f UTF-8 -t SJIS > "$WORK/card_sjis.sql"
PGCLIENTENCODING=SJIS psql_db -v ON_ERROR_STOP=0 < "$WORK/card_sjis.sql" 2>&1 | iconv -f SJIS -t UTF-8 >> "$OUT"
session_log "$log_size_before" "$WORK/card_nonstandard_strings.server-log"
f=$WORK/card_nonstandard_strings.server-log

# the statements ran as intended
is "$(grep -cE '^ *0366$' "$OUT")" 4 "four calls returned the card's last four digits (two statements, the EXECUTE, the one under the default setting)"
is "$(grep -c 'ERROR:  division by zero' "$OUT")" 4 "four statements failed after their call (division by zero)"
is "$(grep -c '^ *0366 表ソ$' "$OUT")" 1 "the statement sent in SJIS ran, its reply converted back"
like "$(cat "$OUT")" "prepared: PREPARE card_ns AS" "pg_prepared_statements shows the PREPARE"
seen=$(grep '^seen ' "$OUT")
comment "$seen"
is "$(grep -c '^seen idle' <<<"$seen")" 3 "another session read the idle backend's last statement three times"
for m in "statement: SELECT payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', XX, XXXX, CASE WHEN 'XXX' = '' THEN '' ELSE 'XXX' END)) AS a" \
	'ERROR:  division by zero' 'DETAIL:  prepare: PREPARE card_ns AS' 'PL/pgSQL function card_ns_fn' \
	"statement: SELECT '\\\\'\"', 4242 AS kept" \
	"statement: SELECT payments.pay_card_last4(payments.pay_card('XXXXXXXXXXXXXXXX', XX, XXXX, 'XXX', 'XXXXXX')) || ' 表ソ' AS d;" \
	"statement: SELECT payments.pay_card_last4(payments.pay_card('XXXXXXXX' || 'XXXXXXXX', XX, XXXX, 'XXX', 'XXXXXX')), X / X"; do
	if grep -q -- "$m" "$f"; then ok 0 "in the log: $m"; else ok 1 "not in the log: $m"; fi
done
for c in 711 712 713 714 715 716 717 721 722 "$PAN" "$A" "$B"; do
	leaked=$(codes_in "$f" "$c")
	if [ -z "$leaked" ] && ! grep -v '^LINE [0-9]*: ' "$OUT" | grep -qwF -- "$c"; then
		ok 0 "$c is in no log line, message or pg_stat_activity text"
	else
		ok 1 "$c in the log, a message or pg_stat_activity"
		comment "$leaked"
		comment "$(grep -v '^LINE [0-9]*: ' "$OUT" | grep -wF -e "$c" | sed -n 1,3p)"
	fi
done

tap_done
