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
# - Times stored in audit rows and events, returned by pay_export_customer
#   and the audit digest, and interval arithmetic of test clocks, key
#   rotation and audit retention, against the session's TimeZone (sections
#   4 and 5).
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

###########################################################################
# 4. Stored times and interval arithmetic do not follow the caller's
# TimeZone.  One scenario (a rolled-back transaction, superuser acting for
# a merchant of its own) under UTC, America/New_York, Pacific/Kiritimati
# and a POSIX zone whose daylight-saving time starts tomorrow:
# - audit rows and events hold a timestamptz as ISO 8601 in UTC
#   ("+00:00"): before, as the writing session printed it
#   (2095-03-01T07:00:00-05:00 in New York for 12:00 UTC), sealed so by the
#   row hash, and different for one instant by who wrote it (the audit
#   trigger, the status trigger's direct and SPI paths, the SQL events);
# - a test clock advanced by '1 day' across New York's DST end
#   (2027-11-07) moves 24 hours, and by '1 month' from 30 January is
#   29 February whatever the session's date there (before: 25 hours, and
#   28 February in Kiritimati, where it was already the 31st);
# - an API key rotated with overlap '1 day' keeps its old secret 24 hours
#   (before: 23 in a zone whose DST starts tomorrow);
# - pay_audit_prune(older_than => '1 day') leaves a batch sealed 23.5
#   hours ago (before: pruned it in a zone whose DST started today), and
#   its PRUNE audit row has older_than as the default IntervalStyle writes
#   it, also from a session with IntervalStyle iso_8601 (before: PT23H);
# - pay_export_customer returns every time in UTC, the document the same
#   as from a session in UTC (before: to_jsonb of its rows wrote them in
#   the caller's TimeZone), and pay_audit_digest() gives sealed_at in UTC
#   (before: in the caller's TimeZone).
scenario() {
	su -v tz="$1" <<'SQL'
BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL TimeZone = :'tz';
\o /dev/null
INSERT INTO payments.merchants (name) VALUES ('ss-time') RETURNING merchant_id AS m \gset
SELECT set_config('payments.merchant_id', :'m', true);
SELECT payments.pay_set_test_clock('2027-11-06 12:00+00');
SELECT payments.pay_advance_test_clock('1 day') AS day_later \gset
SELECT payments.pay_set_test_clock('2028-01-30 12:00+00');
SELECT payments.pay_advance_test_clock('1 month') AS month_later \gset
SELECT payments.pay_set_test_clock('2095-03-01 12:00+00');
SELECT customer_id FROM payments.pay_create_customer(email => 'tz@example.com') \gset
SELECT payment_method_id FROM payments.pay_save_payment_method(customer_id => :customer_id,
	card => payments.pay_card('4111111111111111', 12, extract(year FROM now())::int + 3, '123'),
	validation_mode => 'none', make_default => true) \gset
UPDATE payments.payment_methods SET status = 'active', customer_profile_id = '500' || :customer_id,
	payment_profile_id = '700' || :payment_method_id
WHERE merchant_id = :m AND payment_method_id = :payment_method_id;
SELECT plan_id FROM payments.pay_create_plan(name => 'tz', amount => '10.00 USD', interval_unit => 'month') \gset
SELECT subscription_id FROM payments.pay_create_subscription(customer_id => :customer_id, plan_id => :plan_id,
	trial_days => 14, time_zone => 'America/New_York') \gset
-- the trial ends: period 1 is invoiced (subscription.renewed, written by SQL)
SELECT payments.pay_advance_test_clock('15 days');
SELECT payments.pay_run_renewals();
SELECT payments.pay_cancel_subscription(subscription_id => :subscription_id, at_period_end => true);
-- a role that does not own payments.events: the status trigger's SPI path
CREATE ROLE ss_tz_editor NOLOGIN BYPASSRLS;
SELECT payments.pay_bind_role('ss_tz_editor', merchant_id => :m, grant_api => false);
GRANT USAGE ON SCHEMA payments TO ss_tz_editor;
GRANT SELECT, UPDATE ON payments.subscriptions TO ss_tz_editor;
GRANT INSERT ON payments.events TO ss_tz_editor;
SET LOCAL ROLE ss_tz_editor;
UPDATE payments.subscriptions SET status = 'canceled' WHERE merchant_id = :m AND subscription_id = :subscription_id;
RESET ROLE;
SELECT key_id FROM payments.pay_create_api_key(merchant_id => :m) \gset
SELECT payments.pay_rotate_api_key(key_id => :key_id, overlap => '1 day');
-- the customer's export, asked from this session and from one in UTC
SELECT payments.pay_export_customer(:customer_id) AS export_here \gset
SET LOCAL TimeZone = 'UTC';
SELECT payments.pay_export_customer(:customer_id) AS export_utc \gset
SET LOCAL TimeZone = :'tz';
\o
SELECT 'clock day: ' || to_char(:'day_later'::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI');
SELECT 'clock month: ' || to_char(:'month_later'::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI');
SELECT 'key overlap: ' || extract(epoch FROM previous_valid_until - rotated_at)::bigint
FROM payments.api_keys WHERE merchant_id = :m AND key_id = :key_id;
SELECT 'export: the same as in UTC ' || (:'export_here'::jsonb = :'export_utc'::jsonb)::text
	|| ', times ' || (count(*) >= 20)::text || ', not in UTC ' || count(*) FILTER (WHERE v #>> '{}' !~ '\+00:00$')
FROM jsonb_path_query(:'export_here'::jsonb, 'strict $.**') v
WHERE jsonb_typeof(v) = 'string' AND v #>> '{}' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$';
SELECT 'audit billing_clocks: ' || string_agg(new_row ->> 'frozen_at', ' ' ORDER BY audit_id)
FROM payments.audit_log WHERE merchant_id = :m AND table_name = 'billing_clocks';
SELECT 'audit subscription: ' || concat_ws(' ', new_row ->> 'current_period_start', new_row ->> 'current_period_end',
	new_row ->> 'trial_end')
FROM payments.audit_log WHERE merchant_id = :m AND table_name = 'subscriptions' AND operation = 'INSERT';
SELECT 'event ' || event_type || ': ' || concat_ws(' ', data ->> 'current_period_start', data ->> 'current_period_end',
	data ->> 'cancel_at')
FROM payments.events WHERE merchant_id = :m AND event_type LIKE 'subscription.%' ORDER BY event_id;
-- every time in the merchant's audit rows and events, whoever wrote it
SELECT 'times not in UTC: ' || count(*) FROM (
	SELECT kv.value FROM payments.audit_log a, jsonb_each_text(coalesce(a.old_row, '{}') || coalesce(a.new_row, '{}')) kv
	WHERE a.merchant_id = :m
	UNION ALL
	SELECT kv.value FROM payments.events e, jsonb_each_text(e.data) kv WHERE e.merchant_id = :m) t
WHERE t.value ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$' AND t.value !~ '\+00:00$';
SELECT 'audit verifies: ' || coalesce(payments.pay_audit_verify(:m)::text, 'intact');
-- retention: a batch sealed 23.5 hours ago is not older than '1 day'
INSERT INTO payments.audit_seals (merchant_id, range_start, range_end, first_audit_id, last_audit_id,
	row_count, prev_seal_hash, batch_hash, sealed_at)
SELECT :m, 0, max(audit_id), min(audit_id), max(audit_id), count(*), decode(repeat('00', 32), 'hex'),
	decode(repeat('00', 32), 'hex'), now() - interval '23 hours 30 minutes'
FROM payments.audit_log WHERE merchant_id = :m;
-- the digest of that seal: sealed_at in UTC, the seal's time
SELECT 'audit digest sealed_at: ' || concat_ws(' ',
	((d -> 0 ->> 'sealed_at') ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$')::text,
	((d -> 0 ->> 'sealed_at')::timestamptz = (SELECT s.sealed_at FROM payments.audit_seals s WHERE s.merchant_id = :m))::text)
FROM payments.pay_audit_digest(:m) d;
SET LOCAL IntervalStyle = 'iso_8601';
\o /dev/null
SELECT payments.pay_audit_prune(older_than => '1 day');
\o
SELECT 'audit prune 1 day: ' || count(*) FILTER (WHERE pruned_at IS NOT NULL) FROM payments.audit_seals WHERE merchant_id = :m;
\o /dev/null
SELECT payments.pay_audit_prune(older_than => '23 hours');
\o
SELECT 'audit prune 23 hours: ' || count(*) FILTER (WHERE pruned_at IS NOT NULL) FROM payments.audit_seals WHERE merchant_id = :m;
SELECT 'audit prune recorded: ' || string_agg(new_row ->> 'older_than', ' ' ORDER BY audit_id)
FROM payments.audit_log WHERE merchant_id = :m AND operation = 'PRUNE';
ROLLBACK;
SQL
}
expected="clock day: 2027-11-07 12:00
clock month: 2028-02-29 12:00
key overlap: 86400
export: the same as in UTC true, times true, not in UTC 0
audit billing_clocks: 2027-11-06T12:00:00+00:00 2027-11-07T12:00:00+00:00 2028-01-30T12:00:00+00:00 2028-02-29T12:00:00+00:00 2095-03-01T12:00:00+00:00 2095-03-16T12:00:00+00:00
audit subscription: 2095-03-01T12:00:00+00:00 2095-03-15T11:00:00+00:00 2095-03-15T11:00:00+00:00
event subscription.created: 2095-03-01T12:00:00+00:00 2095-03-15T11:00:00+00:00
event subscription.renewed: 2095-03-15T11:00:00+00:00 2095-04-15T11:00:00+00:00
event subscription.updated: 2095-04-15T11:00:00+00:00
event subscription.canceled: 2095-03-15T11:00:00+00:00 2095-04-15T11:00:00+00:00
times not in UTC: 0
audit verifies: intact
audit digest sealed_at: true true
audit prune 1 day: 0
audit prune 23 hours: 1
audit prune recorded: 23:00:00"
is "$(scenario UTC)" "$expected" "stored times and test-clock and key arithmetic under TimeZone UTC"
is "$(scenario America/New_York)" "$expected" "the same under America/New_York, across its DST changes"
is "$(scenario Pacific/Kiritimati)" "$expected" "the same under Pacific/Kiritimati (UTC+14, a day ahead)"
# POSIX zones (UTC in standard time; n/time: the day of the year counted
# from 0, leap days included, and hours from its midnight, up to 167: a
# time past the year's last day falls in the next): daylight-saving time
# from two hours after the top of this UTC hour (h) to two days after it
# ('1 day' from now 23 hours), and from the top of this hour (h, so already
# begun) to two days after it ('1 day' back from now 23 hours).  Relative
# to this hour, not to midnight: the rules once began DST at tomorrow's and
# today's midnight, and in the hours 23 and 0 UTC of every day '1 day' from
# now landed in the hour that DST's end repeats or its start skips, so it
# was 24 hours and the scenario showed nothing.  Tried under PostgreSQL 15
# for the start of every hour, 1 s, 30 min and 59 min 59.9 s into it from
# 2027-01-01 to 2029-01-02 (2027 not a leap year, 2028 one: 30 and 31
# December, 29 February, 1 January): 23 hours each time; under the rules
# of midnight, 2,936 of those 70,276 instants gave 24 hours forward and 4
# back.
read -r day hour < <(date -u '+%j %H')
day=$((10#$day - 1)) hour=$((10#$hour))
day_is() {	# day_is ZONE SQL: the length of '1 day' (SQL, an interval) in ZONE
	su -c "SET TimeZone = '$1'" -c "SELECT $2"
}
posix="AAA0BBB,$day/$((hour + 2)),$day/$((hour + 48))"
is "$(day_is "$posix" "(now() + interval '1 day') - now()")" 23:00:00 "'1 day' from now is 23 hours under $posix"
is "$(scenario "$posix")" "$expected" "the same under a zone whose DST starts within a day ($posix)"
posix="AAA0BBB,$day/$hour,$day/$((hour + 48))"
is "$(day_is "$posix" "now() - (now() - interval '1 day')")" 23:00:00 "'1 day' back from now is 23 hours under $posix"
is "$(scenario "$posix")" "$expected" "the same under a zone whose DST began within the last day ($posix)"

###########################################################################
# 5. The audit digest does not follow the TimeZone of who seals or asks:
# pay_audit_digest() and the copy pay_audit_seal() writes to the server
# log give sealed_at in UTC (before: as the session printed it, so one
# seal's digest read 2026-12-07T04:00:00+14:00 from a session in
# Kiritimati and 2026-12-06T09:00:00-05:00 from one in New York).  The
# merchant of section 2 has rows to seal; sealed from Kiritimati.
before=$(su -c "SELECT coalesce(max(seal_id), 0) FROM payments.audit_seals WHERE merchant_id = $M")
sealed() {
	su -c "SET TimeZone = 'Pacific/Kiritimati'" -c "SELECT payments.pay_audit_seal('1 second')" >/dev/null
	su -c "SELECT max(seal_id) FROM payments.audit_seals WHERE merchant_id = $M AND seal_id > $before"
}
ok "$([ -n "$(poll_value 30 sealed)" ] && echo 0 || echo 1)" "the merchant's rows are sealed by a session in Kiritimati"
digest_in() { su -c "SET TimeZone = '$1'" -c "SELECT payments.pay_audit_digest($M)"; }
d=$(digest_in America/New_York)
is "$(digest_in Pacific/Kiritimati)" "$d" "pay_audit_digest() from Kiritimati and from New York: the same text"
like "$d" '"sealed_at": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+\+00:00"' "its sealed_at in UTC"
head=$(su -c "SELECT payments.pay_audit_digest($M) -> 0 ->> 'batch_hash'")
logline() { grep -F "payments audit digest: " "$WORK/postgres.log" | grep -F "\"$head\"" | tail -1; }
logged=$(poll_value 10 logline | sed 's/^.*payments audit digest: //')
is "$(su -v d="$logged" <<<"SELECT x ->> 'sealed_at' FROM jsonb_array_elements(:'d'::jsonb) x
	WHERE (x ->> 'merchant_id')::bigint = $M;")" "$(su -c "SELECT payments.pay_audit_digest($M) -> 0 ->> 'sealed_at'")" \
	"the digest pay_audit_seal() wrote to the server log has the same sealed_at"

tap_done
