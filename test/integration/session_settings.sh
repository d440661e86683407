#!/usr/bin/env bash
# The caller's session settings against what the extension stores, decides
# and sends (every role that can connect is hostile, and every client has
# its own settings: psql, JDBC, PostgREST, a DBA's ALTER ROLE ... SET).
# - The name guard under standard_conforming_strings = off: its catalog
#   test told a temporary schema by LIKE 'pg\_temp\_%', which a function
#   body parsed in such a session reads as 'pg_temp_%', wildcards: a role
#   that may CREATE in the database made schema pgxtempx and in it
#   functions named like the extension's, unchecked (before: made).
# - A purchase from a session with every output and parsing setting a
#   client may change set otherwise (TimeZone on Kiritimati, DateStyle
#   SQL, DMY, IntervalStyle sql_standard, extra_float_digits, bytea_output
#   escape, standard_conforming_strings off, array_nulls off): the gateway
#   gets the amount, the card's expiry and the invoice number as from a
#   default session, and a repeat with its key from a default session is
#   the same request.
# - check_function_bodies = off, which any session may set, is how the
#   triggers tell a restore (pg_dump scripts and pg_restore set it) when a
#   superuser writes.  They asked the current user, which inside the API's
#   SECURITY DEFINER functions is their owner: a bound role's purchase made
#   with it off wrote no audit row and no event, and its operation was
#   taken for one restored from a dump (possibly sent).  Now the session's
#   role decides.  And the worker runs with it on whatever the database
#   sets (before: with ALTER DATABASE ... SET check_function_bodies = off
#   its claims wrote no operation.sending event).
# (Expiring cards against the session's TimeZone, invoice lines against
# its DateStyle: pgTAP billing and subscriptions.)
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

su() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
# as ROLE [psql args]: a session logged in as ROLE
as() {
	local role=$1; shift
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U "$role" -d payments "$@"
}
# sqlstate ROLE [psql args]: the SQLSTATE of the first error (empty if none)
sqlstate() {
	as "$@" 2>&1 | sed -n 's/^\(psql:[^ ]* \)\{0,1\}ERROR:  \([0-9A-Z]\{5\}\):.*/\2/p' | sed -n 1p
}
cleanup() {
	su -c "DROP SCHEMA IF EXISTS pgxtempx CASCADE" -c "REVOKE CREATE ON DATABASE payments FROM ss_evil" \
		-c "DROP OWNED BY ss_evil" -c "DROP ROLE IF EXISTS ss_evil" >/dev/null 2>&1 || true
	if [ -n "${DB_SET:-}" ]; then
		su -c "ALTER DATABASE payments RESET check_function_bodies" >/dev/null 2>&1 || true
		restart_worker || true
	fi
	su -c "SELECT payments.pay_revoke_api('ss_app')" -c "DROP OWNED BY ss_app" -c "DROP ROLE IF EXISTS ss_app" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
year=$(($(date +%Y) + 3))

###########################################################################
# 1. The name guard does not follow standard_conforming_strings.
su -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS ss_evil" -c "CREATE ROLE ss_evil LOGIN" -c "GRANT CREATE ON DATABASE payments TO ss_evil" >/dev/null
is "$(sqlstate ss_evil -c "SET standard_conforming_strings = off" -c "SET escape_string_warning = off" \
	-c "CREATE SCHEMA pgxtempx" \
	-c "CREATE FUNCTION pgxtempx.pay_current_merchant() RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'")" 42501 \
	"standard_conforming_strings off: a function named like the extension's in schema pgxtempx is refused"
is "$(su -c "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	WHERE n.nspname = 'pgxtempx'")" 0 "and not made"
is "$(sqlstate ss_evil -c "CREATE SCHEMA IF NOT EXISTS pgxtempx" \
	-c "CREATE FUNCTION pgxtempx.pay_current_merchant() RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'")" 42501 \
	"as it is with the setting on"
su -c "DROP SCHEMA IF EXISTS pgxtempx CASCADE" -c "REVOKE CREATE ON DATABASE payments FROM ss_evil" \
	-c "DROP ROLE ss_evil" >/dev/null

###########################################################################
# 2. What the gateway gets does not follow the caller's settings.
sim_start "$WORK/sim-session-settings"
merchant_on_simulator "session settings"
odd="SET TimeZone = 'Pacific/Kiritimati'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15; SET bytea_output = 'escape'; SET escape_string_warning = off;
SET standard_conforming_strings = off; SET array_nulls = off;"
buy="SELECT payment_id FROM payments.pay_purchase(amount => '1234.56 USD',
	card => payments.pay_card('4111 1111 1111 1111', 7, $year, '123'), description => 'settings',
	metadata => '{\"n\": 1.5}', idempotency_key => 'ss-1')"
P=$(as_merchant -c "$odd" -c "$buy")
settled() { as_merchant -c "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $P AND status <> 'pending'"; }
is "$(poll_value 30 settled)" succeeded "a purchase from a session with odd settings succeeds"
inv=$(su -c "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
is "$inv" "P$TAG$P" "its invoice number is P<tag><payment_id>"
is "$(sim_ledger "$inv")" "charge 1234.56" "the gateway charged 1234.56 under it"
T=$(su -c "SELECT gateway_trans_id FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
details=$(curl -sS -X POST -H 'Content-Type: application/json' \
	-d "{\"getTransactionDetailsRequest\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},\"transId\":\"$T\"}}" "$SIM_API" |
	python3 -c 'import json, sys; t = json.loads(sys.stdin.buffer.read().decode("utf-8-sig"))["transaction"]
print("|".join([str(t.get("authAmount")), t["order"]["description"], t["order"]["invoiceNumber"]]))')
is "$details" "1234.56|settings|$inv" "the gateway's details: the amount, description and invoice number as given"
is "$(as_merchant -c "$buy")" "$P" "the same call with its key from a default session returns the same payment"
is "$(as_merchant -c "$odd" -c "$buy")" "$P" "and from the odd session again"

###########################################################################
# 3. check_function_bodies off in a caller's session is not a restore.
su -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS ss_app" -c "CREATE ROLE ss_app LOGIN" -c "SELECT payments.pay_bind_role('ss_app', merchant_id => $M)" >/dev/null
P=$(as ss_app -c "SET check_function_bodies = off" -c "SELECT payment_id FROM payments.pay_purchase(amount => '21.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 7, $year, '123'))")
# as inserted (the worker may have sent it since)
is "$(su -c "SELECT concat_ws('|', new_row ->> 'never_sent', coalesce(new_row ->> 'first_sent_at', '-'), coalesce(new_row ->> 'last_error', '-'))
	FROM payments.audit_log WHERE merchant_id = $M AND table_name = 'operations' AND operation = 'INSERT'
		AND (new_row ->> 'payment_id')::bigint = $P")" "true|-|-" \
	"a bound role's purchase with check_function_bodies off: its operation was inserted as never sent, not as restored"
is "$(su -c "SELECT string_agg(DISTINCT table_name, ',' ORDER BY table_name) FROM payments.audit_log
	WHERE merchant_id = $M AND table_name IN ('payments', 'operations') AND operation = 'INSERT'
		AND (new_row ->> 'payment_id')::bigint = $P")" \
	"operations,payments" "its payment's and operation's inserts have audit rows"
is "$(su -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events
	WHERE merchant_id = $M AND payment_id = $P AND event_type IN ('payment.pending', 'operation.queued')")" \
	"payment.pending,operation.queued" "and their events"
is "$(poll_value 30 settled)" succeeded "it succeeds"

# the worker, under a database default of check_function_bodies = off
su -c "ALTER DATABASE payments SET check_function_bodies = off" >/dev/null
DB_SET=1
ok "$(passed restart_worker)" "a worker starts under the database's check_function_bodies = off"
P=$(as_merchant -c "SET check_function_bodies = on" -c "SELECT payment_id FROM payments.pay_purchase(amount => '22.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 7, $year, '123'))")
is "$(poll_value 30 settled)" succeeded "a purchase it sends succeeds"
is "$(su -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND payment_id = $P AND event_type = 'operation.sending'")" 1 \
	"the worker's claim wrote the operation.sending event"
su -c "ALTER DATABASE payments RESET check_function_bodies" >/dev/null
ok "$(passed restart_worker)" "the worker restarts under the database's defaults"
DB_SET=

tap_done
