#!/usr/bin/env bash
# Card data never reaches the server log or an error message.
#
# Runs rejected card inputs (bad Luhn, bad expiry, bad security code, bad
# JSON, NULLs, storage attempts) and a few accepted ones through psql
# against the test cluster, with verbose error reporting, and then looks
# for every card number and security code used, in any of its spellings,
# in the psql output and in $WORK/postgres.log.  Then pays through the
# simulator with the card written in every spelling the card input takes
# (blanks and their escapes around the separators, dollar quotes, escaped
# keys), with log_statement = 'all': each payment succeeds and its
# security code is in no log line.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/session_log.sh"
: "${WORK:?}" "${PORT:?}" "${PG_BINDIR:?}"

DB=card_hygiene
OUT="$WORK/card_log_hygiene.psql-out"
LOG="$WORK/postgres.log"
YEAR=$(( $(date -u +%Y) + 3 ))

# Distinctive numbers and codes: each appears nowhere else.
PANS=(4532015112830366 4916338506082832 5425233430109903 2223000048410010
      374245455400126 6011000991300009 3530111333300000 36438999960016
      6250941006528599 4532015112830367 5425233430109904)
CVVS=(7391 8462 5730 9184)

cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
cluster_psql "$WORK" "$PORT" $DB -c 'CREATE EXTENSION payments' >/dev/null
log_size_before=$(stat -c %s "$LOG")

# Everything below is expected to fail, statement by statement; log as
# much as the server can (verbose errors, every error's statement).
cluster_psql "$WORK" "$PORT" $DB -v ON_ERROR_STOP=0 -v VERBOSITY=verbose > "$OUT" 2>&1 <<SQL
\set VERBOSITY verbose
\set SHOW_CONTEXT always
SET log_error_verbosity = verbose;
SET log_min_error_statement = debug5;
SET log_min_messages = warning;
SET search_path = public, payments;
-- bad Luhn
SELECT pay_card('4532015112830367', 12, $YEAR, '739');
SELECT pay_card('5425-2334-3010-9904', 12, $YEAR);
-- expired, bad month, too far ahead
SELECT pay_card('4532015112830366', 12, 2001, '739');
SELECT pay_card('4916 3385 0608 2832', 13, $YEAR, '846');
SELECT pay_card('5425233430109903', 1, $((YEAR + 30)));
-- bad security code
SELECT pay_card('4532015112830366', 12, $YEAR, '7391');
SELECT pay_card('374245455400126', 12, $YEAR, '846');
SELECT pay_card('6011000991300009', 12, $YEAR, '57x');
-- bad holder name, NULL month
SELECT pay_card('3530111333300000', 12, $YEAR, '918', E'bad\nname');
SELECT pay_card('36438999960016', NULL, $YEAR, '918');
-- JSON input: literal casts (parse-time), bad JSON, unknown keys, bad values
SELECT '{"number": "4532015112830367", "exp_month": 12, "exp_year": $YEAR, "cvv": "739"}'::pay_card;
SELECT '{"number": "6250941006528599", "exp_month": 12, "exp_year": 2001, "cvv": "9184"}'::pay_card;
SELECT '{"number": "4916338506082832", "exp_month": 12, "exp_year": $YEAR, "cvv": "8462"}'::pay_card;
SELECT '{"number": "2223000048410010", "exp_month": 12, "exp_year": $YEAR, "pan": "2223000048410010"}'::pay_card;
SELECT '{"number": 5425233430109903, "exp_month": 12, "exp_year": $YEAR}'::pay_card;
SELECT '{"number": "374245455400126", "exp_month": 12, "exp_year": $YEAR, "cvv": "7391"'::pay_card;
SELECT '{"4532015112830366": "7391"}'::pay_card;
SELECT ('{"number": "6011000991300009", "exp_month": 12, "exp_year": $YEAR, "cvv": "5730"}' || 'x')::pay_card;
-- inside PL/pgSQL and SQL functions (error contexts would quote the call)
DO \$\$ BEGIN PERFORM payments.pay_card('4532015112830367', 12, $YEAR, '739'); END \$\$;
DO \$\$ BEGIN EXECUTE 'SELECT payments.pay_card(''5425233430109904'', 12, $YEAR, ''846'')'; END \$\$;
CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS \$\$ SELECT payments.pay_card('4916338506082832', 1, 2001, '573')::text \$\$;
SELECT pg_temp.f();
-- storage attempts
CREATE TABLE card_leak AS SELECT pay_card('4532015112830366', 12, $YEAR, '739') AS c;
CREATE TEMP TABLE card_leak2 (c pay_card);
-- accepted cards: only the masked form may show
SELECT pay_card('4532015112830366', 12, $YEAR, '739', 'Jane Doe');
SELECT '{"number": "5425 2334 3010 9903", "exp_month": 12, "exp_year": $YEAR, "cvv": "846"}'::pay_card;
SELECT pay_card_info(pay_card('374245455400126', 12, $YEAR, '7391'));
SELECT row(pay_card('6011000991300009', 12, $YEAR, '573'))::text, array[pay_card('3530111333300000', 12, $YEAR)]::text;
SELECT to_jsonb(pay_card('36438999960016', 12, $YEAR, '918'));
-- binary output refuses
SELECT pay_card_send(pay_card('6250941006528599', 12, $YEAR, '918'));
-- statements logged for other reasons: log_statement, an unrelated error
SET log_statement = 'all';
SELECT pay_card('4532015112830366', 12, $YEAR, '739');
-- (terse: for an error with a position psql itself would echo its own query line)
\set VERBOSITY terse
SELECT pay_card('4916-3385-0608-2832', 12, $YEAR, '846') FROM no_such_table;
SQL

session_log "$log_size_before" "$WORK/card_log_hygiene.server-log"

# (tap.sh's ok takes an exit status; this test's takes only the text)
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }

# The statements did run and fail as intended.
errors=$(grep -c "^$(pg_msg ERROR):" "$OUT" || true)
if [ "$errors" = 25 ]; then ok "psql reported 25 errors for the 25 bad inputs"; else not_ok "expected 25 errors, got $errors"; fi
if grep -q '22Y10' "$OUT" && grep -q '22Y13' "$OUT" && grep -q '22Y14' "$OUT" && grep -q '22Y15' "$OUT" && grep -q '22Y16' "$OUT"; then
	ok "the errors carry the card SQLSTATEs"
else
	not_ok "card SQLSTATEs missing from the psql output"
fi
if grep -q 'visa \*\*\*\*0366' "$OUT" && grep -q 'amex' "$OUT"; then ok "accepted cards print masked"; else not_ok "masked output missing"; fi
if grep -qF "$(pg_msg ERROR)" "$WORK/card_log_hygiene.server-log"; then ok "the server logged the errors"; else not_ok "no errors in the server log"; fi
if grep -q 'XXXXXXXXXXXX' "$WORK/card_log_hygiene.server-log"; then ok "log_statement lines with a card were masked (X for each digit)"; else not_ok "no masked statement in the server log"; fi

# spellings: plain, grouped by 4 with spaces or dashes (as in the inputs)
spellings() {
	local p=$1
	echo "$p"
	echo "$p" | sed -E 's/(....)/\1 /g; s/ $//'
	echo "$p" | sed -E 's/(....)/\1-/g; s/-$//'
}
no_fingerprints() { sed -E 's/[0-9a-f]{64}/<fingerprint>/g'; }

for f in "$OUT" "$WORK/card_log_hygiene.server-log"; do
	what=$([ "$f" = "$OUT" ] && echo "psql output" || echo "server log")
	leaked=0
	for p in "${PANS[@]}"; do
		while read -r s; do
			if grep -qF -- "$s" "$f"; then leaked=1; echo "# $what contains card number $s"; fi
		done < <(spellings "$p")
	done
	# the hex of the digits (bytea output) or any 12+ digit run at all, in
	# what is left once fingerprints (64 hex digits, random per
	# installation, so now and then with 12 decimal digits in a row) are out
	if strip_prefix "$f" | no_fingerprints | grep -E '[0-9]{12,}' >/dev/null; then
		leaked=1; echo "# $what contains a run of 12 or more digits:"
		strip_prefix "$f" | no_fingerprints | grep -E '[0-9]{12,}' | sed -n '1,5s/^/#   /p'
	fi
	if [ $leaked = 0 ]; then ok "no card number in the $what"; else not_ok "card number found in the $what"; fi

	leaked=$(codes_in "$f" "${CVVS[@]}" 739 846 573 918)
	if [ -z "$leaked" ]; then ok "no security code in the $what"; else
		not_ok "security code found in the $what"; echo "# $what contains security code(s) ${leaked//$'\n'/ }"
	fi
done

# The statements of failed card calls are not in the log at all.
if grep -q "$(pg_msg 'STATEMENT:  ').*pay_card(" "$WORK/card_log_hygiene.server-log"; then
	not_ok "a failing card statement was logged"
else
	ok "no failing card statement was logged"
fi

cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE $DB" >/dev/null

# Spellings of a card the input takes, each with its own security code,
# as payments of a merchant on the simulator with log_statement = 'all'
# (the statement is logged as sent, before it runs).  Before, blanks
# other than spaces around a card key's separator, in the text or as
# escapes, hid the value that followed, and so did dollar quotes, a key
# with an escaped letter, doubled quotes inside EXECUTE's text and a
# comment after pay_card (15 of these 18 codes were logged);
# "cvv\u0000x" was taken as "cvv".
SIMDIR="$WORK/sim-card-log"
trap sim_stop EXIT
sim_start "$SIMDIR"
merchant_on_simulator card_log_hygiene
PAN=4000056655665556
TAB=$'\t'
CR=$'\r'
# the card number with every digit a JSON escape (\u0034 for 4)
PAN_ESC=$(sed -E 's/([0-9])/\\u003\1/g' <<<"$PAN")
# code: how it is written
SPELLED=("987:a tab after the colon" "864:\t after the colon in an E'' string"
	"753:a newline before the colon" "642:CR LF around the colon"
	"531:\r\n and \n around the colon in an E'' string" "419:card text in \$\$"
	"308:card text in \$c\$, a tab after the colon" "296:pay_card's code in \$\$"
	"185:pay_card's cvv => \$k\$" "174:key \"\\u0063vv\" (JSON)"
	"263:key \"\\\\u0063vv\" in an E'' string" "352:key \"\\x63vv\" in an E'' string"
	"441:key \"\\0063vv\" in a U&'' string" "629:pay_card's cvv => E''"
	"583:key \"\\u006eumber\" with an escaped number" "718:doubled quotes in EXECUTE's text"
	"467:a comment between pay_card and its arguments"
	"995:key \"cvv\\u0000x\" (refused)"
	"471:pay_card's code as a number cast to text" "468:EXECUTE of a prepared purchase"
	"469:a failing EXECUTE of a prepared purchase" "357:EXECUTE of a prepared purchase, a number the input refuses"
	"246:a code next to a card number in a statement of the application's own"
	"135:EXECUTE of a prepared purchase with a quoted name, a number the input refuses")
log_size_before=$(stat -c %s "$LOG")
as_merchant -v ON_ERROR_STOP=0 -f - > "$WORK/card_log_hygiene.spellings-out" 2>&1 <<SQL
SET log_statement = 'all';
-- a tab after the colon; \t in an E'' string; a newline, CR LF, and their escapes around it
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv":${TAB}"987"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => E'{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv":\t"864"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv"
:"753"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv"${CR}
:${CR}
"642"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => E'{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv"\r\n:\n"531"}');
-- dollar quotes, with and without a tag, as the card text and as pay_card's arguments
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => \$\${"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv": "419"}\$\$);
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => \$c\${"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv":${TAB}"308"}\$c\$);
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card('$PAN', 12, $YEAR, \$\$296\$\$));
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card(number => '$PAN', exp_month => 12, exp_year => $YEAR, cvv => \$k\$185\$k\$));
-- the key with an escaped letter: JSON's \u0063, and in E'' (\\\\u0063, \x63) and U&'' (\0063) strings
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "\u0063vv": "174"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => E'{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "\\\\u0063vv": "263"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => E'{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "\x63vv": "352"}');
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => U&'{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "\0063vv": "441"}');
-- an E'' value after a key
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card(number => '$PAN', exp_month => 12, exp_year => $YEAR, cvv => E'629'));
-- the number as JSON escapes only, under an escaped key
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"\u006eumber": "$PAN_ESC", "exp_month": 12, "exp_year": $YEAR, "cvv": "583"}');
-- a comment between pay_card and its arguments
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card /* positional */ ('$PAN', 12, $YEAR, '467'));
-- inside a quoted statement text (doubled quotes)
DO \$\$ BEGIN EXECUTE 'SELECT pay_purchase(amount => ''1.00 USD'', card => pay_card(''$PAN'', 12, $YEAR, ''718''))'; END \$\$;
-- a key json-c would cut at a NUL ("cvv"): refused
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => '{"number": "$PAN", "exp_month": 12, "exp_year": $YEAR, "cvv\u0000x": "995"}');
-- codes that are no quoted literal of pay_card: a number, and the
-- arguments of an EXECUTE (its text does not call pay_card), accepted,
-- failing on the month, and with a number the input refuses; a code next
-- to a card number in a statement that does not call pay_card
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card('$PAN', 12, $YEAR, 471::text));
PREPARE purchase_card(text, int, int, text) AS
	SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card(\$1, \$2, \$3, \$4));
EXECUTE purchase_card('$PAN', 12, $YEAR, '468');
EXECUTE purchase_card('$PAN', 13, $YEAR, '469');
EXECUTE purchase_card('4000', 12, $YEAR, '357');
PREPARE "Card ""Buy"""(text, int, int, text) AS
	SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pay_card(\$1, \$2, \$3, \$4));
EXECUTE "Card ""Buy"""('4000', 12, $YEAR, '135');
SELECT md5('$PAN' || '246') IS NOT NULL;
SQL
session_log "$log_size_before" "$WORK/card_log_hygiene.spellings-log"

# 18 ids printed (the DO block prints none); wait for every payment of M
printed=$(grep -cE '^[0-9]+$' "$WORK/card_log_hygiene.spellings-out" || true)
succeeded=0
for id in $(as_merchant -c "SELECT payment_id FROM payments.payments WHERE merchant_id = $M"); do
	[ "$(as_merchant -c "SELECT status FROM pay_wait($id, '30 s')")" = succeeded ] && succeeded=$((succeeded + 1))
done
if [ "$printed" = 18 ] && [ "$succeeded" = 19 ]; then
	ok "the 19 payments with the card in 19 spellings succeeded"
else
	not_ok "expected 19 payments to succeed (18 printed), got $succeeded ($printed printed)"
	sed -n '1,40s/^/#   /p' "$WORK/card_log_hygiene.spellings-out"
fi
if grep -qF 'escape \u0000' "$WORK/card_log_hygiene.spellings-out"; then
	ok "a card key with a NUL escape is refused"
else
	not_ok "a card key with a NUL escape was not refused"
fi
f=$WORK/card_log_hygiene.spellings-log
if [ "$(grep -cF "$(pg_msg 'statement: %s' '')" "$f")" -ge 24 ]; then ok "log_statement logged the statements"; else not_ok "the statements are not in the server log"; fi
for s in "${SPELLED[@]}"; do
	if [ -z "$(codes_in "$f" "${s%%:*}")" ]; then ok "no security code in the log: ${s#*:}"; else
		not_ok "security code ${s%%:*} in the log: ${s#*:}"
		strip_prefix "$f" | grep -wF -e "${s%%:*}" | sed -n '1,2s/^/#   /p'
	fi
done
if grep -qF -e "$PAN" -e "${PAN_ESC:0:24}" "$f"; then not_ok "card number found in the log"; else ok "no card number in the log, in any spelling"; fi

# Accept.js opaque data: whoever holds the nonce can charge the card once,
# so its dataValue is kept only sealed, and not logged either (before: in
# clear in the statement log, as a JSON literal and as jsonb_build_object's
# named argument).  Whether the purchases succeed does not matter here.
NONCE1=eyJjb2RlIjoiNTBfMl8wNjAwMDUzM0ZBQjE5QTg3N0ExOTI0
NONCE2=OB7GON59XQ2VJ4PL8KZT1RWMYC6DH3SEAFNU0B7GON59XQ2V
log_size_before=$(stat -c %s "$LOG")
as_merchant -v ON_ERROR_STOP=0 -f - > "$WORK/card_log_hygiene.opaque-out" 2>&1 <<SQL
SET log_statement = 'all';
SELECT payment_id FROM pay_purchase(amount => '2.00 USD', opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "$NONCE1"}');
SELECT payment_id FROM pay_purchase(amount => '2.00 USD', opaque_data => jsonb_build_object('dataDescriptor', 'COMMON.ACCEPT.INAPP.PAYMENT', 'dataValue', '$NONCE2'));
SQL
session_log "$log_size_before" "$WORK/card_log_hygiene.opaque-log"
f=$WORK/card_log_hygiene.opaque-log
if [ "$(grep -cF "$(pg_msg 'statement: %s' '')" "$f")" -ge 2 ]; then ok "log_statement logged the opaque data purchases"; else not_ok "the opaque data purchases are not in the server log"; fi
if grep -qF -e "${NONCE1:8:24}" -e "${NONCE2:8:24}" "$f"; then
	not_ok "an Accept.js dataValue is in the log"; grep -F -e "${NONCE1:8:24}" -e "${NONCE2:8:24}" "$f" | sed -n '1,2s/^/#   /p'
else ok "no Accept.js dataValue in the log"; fi
# A failed COPY into a table of the user's own quotes the input line it
# stopped at in its CONTEXT (to the log and to the client).  The card
# number in it was masked, but the security code and expiry beside it
# were not: a line holding a card number now loses every digit.
COPY_PAN=4916338506082832
log_size_before=$(stat -c %s "$LOG")
cluster_psql "$WORK" "$PORT" payments -v ON_ERROR_STOP=0 -v VERBOSITY=verbose \
	> "$WORK/card_log_hygiene.copy-out" 2>&1 <<SQL
\set SHOW_CONTEXT always
CREATE TABLE copy_cards (pan text, cvv text, exp_month int, exp_year int);
COPY copy_cards FROM STDIN;
$COPY_PAN	6173	11	$YEAR	extra
\\.
COPY copy_cards FROM STDIN (FORMAT csv);
$COPY_PAN,5284
\\.
COPY copy_cards FROM STDIN (FORMAT csv);
no card here,4417,11,2031,extra
\\.
DROP TABLE copy_cards;
SQL
session_log "$log_size_before" "$WORK/card_log_hygiene.copy-log"
for f in "$WORK/card_log_hygiene.copy-out" "$WORK/card_log_hygiene.copy-log"; do
	what=$([ "$f" = "$WORK/card_log_hygiene.copy-log" ] && echo "server log" || echo "psql output")
	if [ "$(grep -cF "$(pg_msg 'COPY %s, line %llu' copy_cards 1)" "$f")" -ge 3 ]; then
		ok "the $what has the three failed COPYs' contexts"
	else not_ok "the $what lacks the failed COPYs' contexts"; sed -n '1,12s/^/#   /p' "$f"; fi
	leaked=$(codes_in "$f" 6173 5284)
	if [ -z "$leaked" ] && ! grep -qF "$COPY_PAN" "$f"; then
		ok "no card number or security code of a failed COPY's line in the $what"
	else not_ok "a failed COPY's line leaks card data in the $what: ${leaked//$'\n'/ }"; grep -F 'COPY copy_cards' "$f" | sed -n '1,3s/^/#   /p'; fi
	# a line without a card number keeps its digits (the context stays useful)
	if grep -qF 'no card here,4417,11,2031,extra' "$f"; then ok "a failed COPY's line without a card number is quoted as it was, in the $what"
	else not_ok "a failed COPY's line without a card number lost its digits in the $what"; fi
done

# Node dumps: debug_print_parse, debug_print_rewritten and debug_print_plan
# (any role may set them) log each constant's bytes in decimal, wrapped
# anywhere: ":constvalue 7 [ 28 0 0 0 55 51 57 ]" is the code 739.  The
# card numbers happened to be masked as digit runs, but not where a line
# break cut one short, and the security codes never were (before: 739,
# 573 and 846 in the log).  Now every constant's bytes are masked.
NODE_PAN=4532015112830366
log_size_before=$(stat -c %s "$LOG")
as_merchant -v ON_ERROR_STOP=0 -f - > "$WORK/card_log_hygiene.nodes-out" 2>&1 <<SQL
SET debug_print_parse = on;
SET debug_print_rewritten = on;
SET debug_print_plan = on;
SET debug_pretty_print = off;
SELECT pay_card_last4(pay_card('$NODE_PAN', 12, $YEAR, '739'));
SET debug_pretty_print = on;
PREPARE node_card(text, text) AS SELECT pay_card_last4(pay_card(\$1, 12, $YEAR, \$2));
EXECUTE node_card('$NODE_PAN', '573');
DO \$\$ DECLARE n text := '$NODE_PAN'; c text := '846';
BEGIN PERFORM pay_card_last4(pay_card(n, 12, $YEAR, c)); END \$\$;
SQL
session_log "$log_size_before" "$WORK/card_log_hygiene.nodes-log"
f=$WORK/card_log_hygiene.nodes-log
if [ "$(grep -c "$(pg_msg LOG):  plan:" "$f")" -ge 3 ] && grep -q ':constvalue' "$f"; then
	ok "the node dumps are in the server log"
else not_ok "the node dumps are not in the server log"; sed -n '1,6s/^/#   /p' "$WORK/card_log_hygiene.nodes-out"; fi
# every constant's bytes, read back as text (across the dump's line breaks)
found=$(python3 - "$f" "$NODE_PAN" 739 573 846 <<'PY'
import re, sys
text = open(sys.argv[1]).read()
values = []
for m in re.finditer(r':constvalue \d+\s*\[([^\]]*)\]', text):
    nums = re.findall(r'-?\d+', m.group(1))
    values.append(bytes(int(x) & 255 for x in nums))
print(' '.join(s for s in sys.argv[2:] if any(s.encode() in v for v in values)))
PY
)
if [ -z "$found" ] && ! grep -qF "$NODE_PAN" "$f" && [ -z "$(codes_in "$f" 739 573 846)" ]; then
	ok "no card number or security code in the node dumps"
else not_ok "the node dumps hold card data: $found"; fi

# Messages that quote what this backend's statement rule does not see.
# - A deadlock's detail for the log quotes every process's statement
#   ("Process 123: EXECUTE p('XXXX...', 12, 2031, '472', 1)"): the other
#   process's was only masked where a card number stood (before: its
#   security code 472 or 471 in the log).
# - A JSON syntax error quotes the token it stopped at in its detail
#   ("Expected \",\" or \"}\", but found \"475\"."; before: in the log and
#   to the client).
# - auto_explain's plan deparses a statement's constants in its Output
#   lists ("Output: buy('XXXX...'::text, '484'::text)"; before: 484 and
#   485 in the log), from a literal or a prepared statement's parameter.
OTHER_PAN=4916338506082832
log_size_before=$(stat -c %s "$LOG")
cluster_psql "$WORK" "$PORT" payments -c "CREATE TABLE public.card_deadlock (id int PRIMARY KEY, v text)" \
	-c "INSERT INTO public.card_deadlock VALUES (1, ''), (2, '')" >/dev/null
# deadlock_side CODE OWN OTHER: in a transaction, lock row OWN, wait until
# the other side's backend is at MARKER (after locking its row), then
# update row OTHER by a prepared statement holding a card
deadlock_side() {
	cluster_psql "$WORK" "$PORT" payments -v ON_ERROR_STOP=0 <<SQL
SET statement_timeout = '30s';
PREPARE card_row(text, int, int, text, int) AS
	UPDATE public.card_deadlock SET v = payments.pay_card_last4(payments.pay_card(\$1, \$2, \$3, \$4)) WHERE id = \$5;
BEGIN;
UPDATE public.card_deadlock SET v = 'locked' WHERE id = $2;
DO \$\$ BEGIN /* side $2 */
	WHILE NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND $4) LOOP
		PERFORM pg_sleep(0.02), pg_stat_clear_snapshot();
	END LOOP; END \$\$;
EXECUTE card_row('$OTHER_PAN', 12, $YEAR, '$1', $3);
COMMIT;
SQL
}
# side 2 waits for side 1 to be waiting for the lock on row 2; side 1 for
# side 2 to hold it (side 2 is in its wait; its pattern is written in two
# parts: "EXECUTE card_row" in its text, card_row calling pay_card, would
# make its DO block one that holds card data, shown without its digits)
deadlock_side 472 2 1 "wait_event_type = 'Lock' AND query LIKE 'EXECUTE' || ' card_row(%'" > "$WORK/card_log_hygiene.deadlock-2" 2>&1 &
side2=$!
deadlock_side 471 1 2 "query LIKE 'DO % side 2 %' AND state = 'active'" > "$WORK/card_log_hygiene.deadlock-1" 2>&1
wait "$side2"
cluster_psql "$WORK" "$PORT" payments -c "DROP TABLE public.card_deadlock" >/dev/null
as_merchant -v ON_ERROR_STOP=0 -f - > "$WORK/card_log_hygiene.quoted-out" 2>&1 <<SQL
SELECT '{"number": "$OTHER_PAN", "cvv" 473}'::jsonb;
SELECT '{"number": "$OTHER_PAN", "cvv": "474" 475}'::json;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_verbose = on;
CREATE FUNCTION pg_temp.buy(pan text, cvv text) RETURNS text LANGUAGE plpgsql AS
	\$\$ BEGIN RETURN payments.pay_card_last4(payments.pay_card(pan, 12, $YEAR, cvv)); END \$\$;
SELECT pg_temp.buy('$OTHER_PAN', '484');
PREPARE buy_card(text, text) AS SELECT pg_temp.buy(\$1, \$2);
EXECUTE buy_card('$OTHER_PAN', '485');
SQL
session_log "$log_size_before" "$WORK/card_log_hygiene.quoted-log"
f=$WORK/card_log_hygiene.quoted-log
# the client's messages, without psql's echo of its own query line
grep -v '^LINE [0-9]*: ' "$WORK/card_log_hygiene.quoted-out" > "$WORK/card_log_hygiene.quoted-msgs"
if [ "$(grep -cF "$(pg_msg 'deadlock detected')" "$f")" = 1 ] &&
	[ "$(grep -c "$(pg_msg_part 'Process %d: %s' 1)[0-9]*$(pg_msg_part 'Process %d: %s' 2)EXECUTE card_row(" "$f")" = 2 ]; then
	ok "a deadlock between two statements holding card data is in the log, with both statements"
else not_ok "no deadlock report quoting both statements in the log"; cat "$WORK"/card_log_hygiene.deadlock-* | sed -n '1,10s/^/#   /p'; fi
found=$(pg_msg 'Expected ":", but found "%s".' XXX)
if grep -qF "$found" "$f" && grep -qF "$found" "$WORK/card_log_hygiene.quoted-msgs" && [ "$(grep -c 'Output: .*buy(' "$f")" -ge 2 ]; then
	ok "the JSON syntax errors and auto_explain's plans are in the log"
else not_ok "the JSON syntax errors or auto_explain's plans are not in the log"; sed -n '1,10s/^/#   /p' "$WORK/card_log_hygiene.quoted-out"; fi
for s in "471:a deadlock's report quoting this backend's EXECUTE" "472:a deadlock's report quoting another backend's EXECUTE" \
	"473:a JSON syntax error's detail (a key's token)" "475:a JSON syntax error's detail (a value's token)" \
	"484:auto_explain's Output list (a literal)" "485:auto_explain's Output list (a prepared statement's parameter)"; do
	leaked=$(codes_in "$f" "${s%%:*}")
	if [ -z "$leaked" ] && ! grep -qw "${s%%:*}" "$WORK/card_log_hygiene.quoted-msgs"; then
		ok "no security code in the log or the client's messages: ${s#*:}"
	else
		not_ok "security code ${s%%:*} in the log or the client's messages: ${s#*:}"
		strip_prefix "$f" | grep -wF -e "${s%%:*}" | sed -n '1,2s/^/#   /p'
	fi
done
if grep -qF "$OTHER_PAN" "$f" "$WORK/card_log_hygiene.quoted-msgs"; then not_ok "card number found in the log"; else ok "no card number in the log or the client's messages"; fi

# Bind parameters cut by log_parameter_max_length_on_error (any role may
# set it): an error's context lists them ("unnamed portal with parameters:
# $1 = '49163385060...', $2 = '476'"), the card number cut short of a digit
# run of card length, and the statement calls no pay_card (before: the
# code 476 and 11 of the number's digits in the log).  A list with a
# number cut short is masked as a whole.
log_size_before=$(stat -c %s "$LOG")
printf '%s\n' "SET log_parameter_max_length_on_error = 11;" \
	"SELECT length(:pan) / (length(:cvv) - 3);" > "$WORK/card_log_hygiene.cut.sql"
chmod 644 "$WORK/card_log_hygiene.cut.sql"
as_pg "$PG_BINDIR/pgbench" -n -h "$WORK/sock" -p "$PORT" -U postgres -M extended -t 1 \
	-D pan="$OTHER_PAN" -D cvv=476 -f "$WORK/card_log_hygiene.cut.sql" payments > "$WORK/card_log_hygiene.cut-out" 2>&1
session_log "$log_size_before" "$WORK/card_log_hygiene.cut-log"
f=$WORK/card_log_hygiene.cut-log
if grep -qF "$(pg_msg 'division by zero')" "$f" && grep -qF "$(pg_msg_part 'unnamed portal with parameters: %s' 1)\$1 = " "$f"; then
	ok "an error's context lists the cut parameters"
else not_ok "no error listing the cut parameters in the log"; sed -n '1,6s/^/#   /p' "$WORK/card_log_hygiene.cut-out"; fi
if [ -z "$(codes_in "$f" 476)" ] && ! grep -qF "${OTHER_PAN:0:8}" "$f"; then
	ok "no security code or card digits among parameters cut short"
else not_ok "card data among parameters cut short"; grep -F 'parameters' "$f" | sed -n '1,2s/^/#   /p'; fi

echo "1..$n"
exit $fail
