#!/usr/bin/env bash
# Card data never reaches the server log or an error message.
#
# Runs rejected card inputs (bad Luhn, bad expiry, bad security code, bad
# JSON, NULLs, storage attempts) and a few accepted ones through psql
# against the test cluster, with verbose error reporting, and then looks
# for every card number and security code used, in any of its spellings,
# in the psql output and in $WORK/postgres.log.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/common.sh"
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

# Let the logger catch up, then take what this test's sessions added to the
# log: lines whose prefix names a user@database, and their continuation
# lines.  Background processes (a checkpoint's "wrote 573 buffers") would
# otherwise look like security codes.
sleep 1
tail -c +"$((log_size_before + 1))" "$LOG" |
	awk '/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { keep = ($0 ~ /\] [^ ]+@[^ ]+ /) } keep' \
	> "$WORK/card_log_hygiene.server-log"

n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }

# The statements did run and fail as intended.
errors=$(grep -c '^ERROR:' "$OUT" || true)
if [ "$errors" = 25 ]; then ok "psql reported 25 errors for the 25 bad inputs"; else not_ok "expected 25 errors, got $errors"; fi
if grep -q '22Y10' "$OUT" && grep -q '22Y13' "$OUT" && grep -q '22Y14' "$OUT" && grep -q '22Y15' "$OUT" && grep -q '22Y16' "$OUT"; then
	ok "the errors carry the card SQLSTATEs"
else
	not_ok "card SQLSTATEs missing from the psql output"
fi
if grep -q 'visa \*\*\*\*0366' "$OUT" && grep -q 'amex' "$OUT"; then ok "accepted cards print masked"; else not_ok "masked output missing"; fi
if grep -q 'ERROR' "$WORK/card_log_hygiene.server-log"; then ok "the server logged the errors"; else not_ok "no errors in the server log"; fi
if grep -q 'XXXXXXXXXXXX' "$WORK/card_log_hygiene.server-log"; then ok "log_statement lines with a card were masked (X for each digit)"; else not_ok "no masked statement in the server log"; fi

# spellings: plain, grouped by 4 with spaces or dashes (as in the inputs)
spellings() {
	local p=$1
	echo "$p"
	echo "$p" | sed -E 's/(....)/\1 /g; s/ $//'
	echo "$p" | sed -E 's/(....)/\1-/g; s/-$//'
}
no_fingerprints() { sed -E 's/[0-9a-f]{64}/<fingerprint>/g'; }
# log lines without their prefix (timestamp, pid): a CVV could match those
strip_prefix() { sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [A-Z]+ \[[0-9]+\] //' "$1"; }

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

	leaked=0
	for c in "${CVVS[@]}" 739 846 573 918; do
		if strip_prefix "$f" | grep -wF -- "$c" >/dev/null; then leaked=1; echo "# $what contains security code $c"; fi
	done
	if [ $leaked = 0 ]; then ok "no security code in the $what"; else not_ok "security code found in the $what"; fi
done

# The statements of failed card calls are not in the log at all.
if grep -q 'STATEMENT: .*pay_card(' "$WORK/card_log_hygiene.server-log"; then
	not_ok "a failing card statement was logged"
else
	ok "no failing card statement was logged"
fi

cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE $DB" >/dev/null
echo "1..$n"
exit $fail
