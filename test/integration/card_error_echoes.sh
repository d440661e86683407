#!/usr/bin/env bash
# Values that errors, plans and lock reports echo, in statements that hold
# card data, keep no security code or card number out of the log.
#
# 1. An error about a value echoes it: "invalid input syntax for type
#    integer: \"477x\"" (a code typed wrong), "value \"...\" is out of
#    range", a check violation's "Failing row contains (...)", a foreign
#    key's "Key (id)=(485) is not present in table ..." (in Japanese the
#    table first, the key after); in a statement that holds card data
#    they lose their digits (before: the digits in the log and in the
#    message sent).  Other errors keep their
#    names (relation "card_t4711"), and a statement without card data keeps
#    the value it echoes.  A syntax error quotes the token it stopped at
#    ("syntax error at or near \"'507'\""): a literal or number of such a
#    statement loses its digits (before: in the log and the message).
#    Both raised again by PL/pgSQL (USING MESSAGE = SQLERRM): in English
#    found as before; translated (CARD_LC_MESSAGES) such a message's
#    format ("%s") does not say it is, and every digit goes (before: the
#    value in clear under de_DE and fr_FR).
# 2. auto_explain in its json, yaml and xml formats: the Output list of a
#    statement holding a card quotes the code passed to a function as a
#    constant, and the query text (escaped by the format, so not found as
#    the statement is) the code written as a bare number (before: in the
#    log; the text format was masked).
# 3. Probes: log_lock_waits between two statements holding card data, a
#    domain's check failure, a failed COPY of a line holding a card number.
# Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/session_log.sh"

card_test_setup card_error_echoes

psql_db -c "CREATE TABLE public.card_echo (id int PRIMARY KEY, code int CHECK (code < 0), v text)" \
	-c "INSERT INTO public.card_echo VALUES (1, -1, ''), (482, -1, '')" \
	-c "CREATE TABLE public.card_echo_ref (id int REFERENCES public.card_echo, v text)" \
	-c "CREATE DOMAIN public.card_code3 AS text CHECK (VALUE ~ '^[0-9]{3}\$')" \
	-c "CREATE TABLE public.card_copy (pan text, code int)" -c "GRANT ALL ON public.card_copy TO PUBLIC" >/dev/null
log_size_before=$(stat -c %s "$LOG")
psql_db -v ON_ERROR_STOP=0 > "$OUT" 2>&1 <<SQL
\set VERBOSITY verbose
SET log_error_verbosity = verbose;
-- 1. echoed values
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '731')), '477x'::int;
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '732')), '47888888888'::int;
INSERT INTO public.card_echo SELECT 2, 479, payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '733'));
INSERT INTO public.card_echo SELECT 482, -1, payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '734'));
-- a foreign key's detail: in Japanese the table first, the key after it
INSERT INTO public.card_echo_ref SELECT 485, payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '739'));
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '736')) FROM public.card_t4711;
SELECT '478x'::int;
INSERT INTO public.card_echo VALUES (3, 483, 'no card');
-- a syntax error quotes the token it stopped at
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR '507'));
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, 508 509));
SELECT 1 '510';
-- the same raised again (RAISE ... USING MESSAGE = SQLERRM: its format is "%s")
DO \$\$ DECLARE c int; BEGIN PERFORM payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '737')); c := '476x'::int;
	EXCEPTION WHEN others THEN RAISE EXCEPTION USING MESSAGE = SQLERRM, ERRCODE = SQLSTATE; END \$\$;
DO \$\$ BEGIN PERFORM payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '738')); EXECUTE 'SELECT 1 ''475''';
	EXCEPTION WHEN others THEN RAISE EXCEPTION USING MESSAGE = SQLERRM, ERRCODE = SQLSTATE; END \$\$;
-- 2. auto_explain's plans in every format
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_verbose = on;
CREATE FUNCTION pg_temp.buy(pan text, cvv text) RETURNS text LANGUAGE plpgsql AS
	\$\$ BEGIN RETURN payments.pay_card_last4(payments.pay_card(pan, 12, $YEAR, cvv)); END \$\$;
SET auto_explain.log_format = json;
SELECT pg_temp.buy('$PAN', '491') AS json_plan;
SET auto_explain.log_format = yaml;
SELECT pg_temp.buy('$PAN', '492') AS yaml_plan;
SET auto_explain.log_format = xml;
SELECT pg_temp.buy('$PAN', '493') AS xml_plan;
SET auto_explain.log_format = text;
SELECT pg_temp.buy('$PAN', '494') AS text_plan;
-- a query text the format escapes (a newline, a double quote, a '<'): the
-- code a bare number in it
SET auto_explain.log_format = json;
SELECT pg_temp.buy('$PAN', 501::text) AS "json
plan";
SET auto_explain.log_format = yaml;
SELECT pg_temp.buy('$PAN', 502::text) AS "yaml
plan";
SET auto_explain.log_format = xml;
SELECT pg_temp.buy('$PAN', 503::text) AS xml_plan WHERE 1 < 2;
-- the code a bare number in the Output list
CREATE FUNCTION pg_temp.buy_int(pan text, cvv int) RETURNS text LANGUAGE plpgsql AS
	\$\$ BEGIN RETURN payments.pay_card_last4(payments.pay_card(pan, 12, $YEAR, cvv::text)); END \$\$;
SELECT pg_temp.buy_int('$PAN', 504) AS xml_plan;
SET auto_explain.log_format = json;
SELECT pg_temp.buy_int('$PAN', 505) AS json_plan;
SET auto_explain.log_format = yaml;
SELECT pg_temp.buy_int('$PAN', 506) AS yaml_plan;
RESET auto_explain.log_min_duration;
-- 3. a domain's check failure, a COPY
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '495')), '4961'::public.card_code3;
COPY public.card_copy FROM STDIN;
$PAN	497	extra
\.
COPY public.card_copy FROM STDIN;
$PAN
\.
SQL
# log_lock_waits: a statement holding a card waits for a row another
# holds; the holder lets go once the waiter has waited past deadlock_timeout
psql_db -v ON_ERROR_STOP=0 >> "$OUT" 2>&1 <<SQL &
SET application_name = 'card-lock-holder';
BEGIN;
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '498')) FROM public.card_echo WHERE id = 1 FOR UPDATE;
DO \$\$ BEGIN
	WHILE NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'card-lock-waiter' AND wait_event_type = 'Lock'
			AND clock_timestamp() - query_start > interval '0.5 s') LOOP
		PERFORM pg_sleep(0.02), pg_stat_clear_snapshot();
	END LOOP; END \$\$;
COMMIT;
SQL
holder=$!
for _ in $(seq 200); do
	[ "$(psql_db -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'card-lock-holder' AND query LIKE 'DO %'")" = 1 ] && break
	sleep 0.05
done
psql_db -v ON_ERROR_STOP=0 >> "$OUT" 2>&1 <<SQL
SET application_name = 'card-lock-waiter';
SET log_lock_waits = on;
SET deadlock_timeout = '100ms';
SET log_error_verbosity = verbose;
UPDATE public.card_echo SET v = payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '499')) WHERE id = 1;
SQL
wait "$holder"
psql_db -c "DROP TABLE public.card_echo_ref, public.card_echo, public.card_copy" -c "DROP DOMAIN public.card_code3" >/dev/null
session_log "$log_size_before" "$WORK/card_error_echoes.server-log"
f=$WORK/card_error_echoes.server-log
grep -v '^LINE [0-9]*: ' "$OUT" > "$WORK/card_error_echoes.msgs"

# the errors and plans happened (the server's messages in the language of
# CARD_LC_MESSAGES, if set: session_log.sh)
syntax_error=$(pg_msg 'syntax error')
for m in "$(pg_msg 'invalid input syntax for type %s: "%s"' integer XXXx)" \
	"$(pg_msg 'value "%s" is out of range for type %s' XXXXXXXXXXX integer)" \
	"$(pg_msg 'Failing row contains %s.' '(X, XXX, XXXX)')" "$(pg_msg 'Key %s already exists.' '(id)=(XXX)')" \
	"$(pg_msg 'Key (%s)=(%s) is not present in table "%s".' id XXX card_echo)" \
	"$(pg_msg 'relation "%s" does not exist' public.card_t4711)" \
	"$(pg_msg 'invalid input syntax for type %s: "%s"' integer 478x)" "$(pg_msg 'Failing row contains %s.' '(3, 483, no card)')" \
	"$(pg_msg '%s at or near "%s"' "$syntax_error" "'XXX'")" "$(pg_msg '%s at or near "%s"' "$syntax_error" XXX)" \
	"$(pg_msg '%s at or near "%s"' "$syntax_error" "'510'")" \
	'"Output": ["pg_temp.buy(' '- "pg_temp.buy(' '<Item>pg_temp.buy(' '<Item>pg_temp.buy_int(' 'Output: pg_temp.buy(' 'card_code3' \
	"$(pg_msg 'extra data after last expected column')" "$(pg_msg 'missing data for column "%s"' code)"; do
	if grep -qF -- "$m" "$f"; then ok 0 "in the log: $m"; else ok 1 "not in the log: $m"; fi
done
m=$(pg_msg_re 'process %d still waiting for %s on %s after %ld.%03d ms')
if grep -q -- "$m" "$f"; then ok 0 "in the log: $m"; else ok 1 "not in the log: $m"; fi
for c in 477x 47888888888 479 482 485 507 508 509 476x 475 491 492 493 494 501 502 503 504 505 506 496 497 499 $PAN ${PAN:0:6}; do
	leaked=$(codes_in "$f" "$c")
	if [ -z "$leaked" ] && ! grep -qwF "$c" "$WORK/card_error_echoes.msgs"; then
		ok 0 "$c is in no log line or message"
	else
		ok 1 "$c in the log or a message"
		comment "$(strip_prefix "$f" | grep -wF -e "$c" | sed -n 1,3p)"
		comment "$(grep -wF -e "$c" "$WORK/card_error_echoes.msgs" | sed -n 1,3p)"
	fi
done

tap_done
