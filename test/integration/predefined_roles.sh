#!/usr/bin/env bash
# What roles that hold PostgreSQL's predefined roles can do to the
# extension's tables outside the API.  pg_read_all_data and
# pg_write_all_data give SELECT, INSERT, UPDATE and DELETE on every table
# and sequence, whatever was granted; row-level security still applies to
# them (they are not BYPASSRLS).
# 1. The owner-only tables of no merchant (role_trust, installation_secrets,
#    status_transitions, operation_outcomes, worker_server) have row-level
#    security on with no policy: such a role reads no row of them and writes
#    none (before: a member of pg_write_all_data bound to merchant A inserted
#    itself into role_trust as all_merchants and then acted for merchant B,
#    reading B's gateway credentials; one bound to no merchant did the same;
#    any of them rewrote the status machine, the outcome table, the invoice
#    tag and the record of the server the worker last ran on).
# 2. Bindings (merchant_roles) and gateway credentials (gateway_config) are
#    the owner's alone (a restrictive policy owner_only): before, a member
#    of pg_write_all_data bound to A bound merchant B's role to A too (B's
#    role, bound twice, had its calls refused) and repointed A's
#    endpoint_url; a member of pg_read_all_data bound to A read A's
#    transaction and signature keys.
# 3. A member of pg_signal_backend can neither cancel nor terminate the
#    worker, the recorder or the billing process (they run as a superuser).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
# as ROLE [psql args]: a session logged in as ROLE
as() {
	local role=$1; shift
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U "$role" -d payments "$@"
}
# sqlstate ROLE [psql args]: the SQLSTATE of the first error (empty if none)
sqlstate() {
	as "$@" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p
}
ROLES="pr_writer pr_unbound pr_reader pr_other pr_admin pr_signal"
cleanup() {
	su -c "DELETE FROM payments.role_trust WHERE db_role::text IN ('pr_writer', 'pr_unbound')" >/dev/null 2>&1 || true
	for r in $ROLES; do
		su -c "SELECT payments.pay_forget_role('$r')" >/dev/null 2>&1 || true
		su -c "DROP ROLE IF EXISTS $r" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT
cleanup

A=$(su -c "INSERT INTO payments.merchants (name) VALUES ('predefined roles A') RETURNING merchant_id")
B=$(su -c "INSERT INTO payments.merchants (name) VALUES ('predefined roles B') RETURNING merchant_id")
su >/dev/null <<SQL
CREATE ROLE pr_writer LOGIN IN ROLE pg_read_all_data, pg_write_all_data;
CREATE ROLE pr_unbound LOGIN IN ROLE pg_read_all_data, pg_write_all_data;
CREATE ROLE pr_reader LOGIN IN ROLE pg_read_all_data;
CREATE ROLE pr_other LOGIN;
CREATE ROLE pr_admin LOGIN;
CREATE ROLE pr_signal LOGIN IN ROLE pg_signal_backend;
SELECT payments.pay_bind_role('pr_writer', merchant_id => $A);
SELECT payments.pay_bind_role('pr_reader', merchant_id => $A);
SELECT payments.pay_bind_role('pr_other', merchant_id => $B);
SELECT payments.pay_grant_api('pr_unbound');
SELECT payments.pay_configure_gateway(api_login_id => 'prA', transaction_key => 'prAsecretkey0001',
	endpoint_url => 'https://127.0.0.1:9/api', merchant_id => $A);
SELECT payments.pay_configure_gateway(api_login_id => 'prB', transaction_key => 'prBsecretkey0001',
	endpoint_url => 'https://127.0.0.1:9/api', merchant_id => $B);
SQL

###########################################################################
# 1. The owner-only tables of no merchant.
is "$(as pr_writer -c "SELECT merchant_id FROM payments.pay_current_identity()")" "$A" \
	"(a member of pg_read_all_data and pg_write_all_data bound to merchant A acts for A)"
for r in pr_writer pr_unbound; do
	is "$(sqlstate $r -c "INSERT INTO payments.role_trust (db_role, trust) VALUES ('$r', 'all_merchants')")" 42501 \
		"$r: a member of pg_write_all_data cannot make itself act for every merchant (role_trust)"
	is "$(sqlstate $r -c "INSERT INTO payments.role_trust (db_role, trust) VALUES ('$r', 'postgrest')")" 42501 \
		"$r: nor declare itself a PostgREST role"
	is "$(sqlstate $r -c "SET payments.merchant_id = '$B'" -c "SELECT payments.pay_current_merchant()")" 42501 \
		"$r: and so cannot act for merchant B"
done
is "$(su -c "SELECT count(*) FROM payments.role_trust WHERE db_role::text IN ('pr_writer', 'pr_unbound')")" 0 \
	"role_trust holds nothing of theirs"
is "$(sqlstate pr_writer -c "SET payments.merchant_id = '$B'" -c "SELECT transaction_key FROM payments.gateway_config")" 42501 \
	"pr_writer cannot read merchant B's transaction key"

owner_only="installation_secrets role_trust status_transitions operation_outcomes worker_server"
# fingerprint of each table, as the owner
fingerprints() {
	local t
	for t in $owner_only; do
		su -c "SELECT '$t ' || count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '-') FROM payments.$t x"
	done
}
su -c "SELECT payments.pay_grant_all_merchants('pr_admin', grant_api => false)" >/dev/null	# a row in role_trust
before=$(fingerprints)
for t in $owner_only; do
	is "$(su -c "SELECT count(*) > 0 FROM payments.$t")" t "(payments.$t has rows)"
	for r in pr_writer pr_unbound pr_reader; do
		is "$(as $r -c "SELECT count(*) FROM payments.$t")" 0 "$r reads no row of payments.$t"
	done
	c=$(su -c "SELECT attname FROM pg_attribute WHERE attrelid = 'payments.$t'::regclass AND attnum = 1")
	for r in pr_writer pr_unbound; do
		is "$(as $r -c "WITH u AS (UPDATE payments.$t SET $c = $c RETURNING 1) SELECT count(*) FROM u")" 0 \
			"$r updates no row of payments.$t"
		is "$(as $r -c "WITH d AS (DELETE FROM payments.$t RETURNING 1) SELECT count(*) FROM d")" 0 \
			"$r deletes no row of payments.$t"
	done
done
same "$(fingerprints)" "$before" "the owner-only tables are as they were"
is "$(sqlstate pr_writer -c "INSERT INTO payments.installation_secrets (purpose, secret, created_at) VALUES ('invoice_tag', '\\x000000', '2000-01-01')")" 42501 \
	"pr_writer cannot put an invoice tag of its own before the installation's"
is "$(sqlstate pr_writer -c "INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES ('payment', 'failed', 'succeeded')")" 42501 \
	"nor a status transition (a failed payment made succeeded)"

###########################################################################
# 2. Bindings and gateway credentials.
is "$(sqlstate pr_writer -c "INSERT INTO payments.merchant_roles (merchant_id, db_role) VALUES ($A, 'pr_other')")" 42501 \
	"pr_writer cannot bind merchant B's role to A"
is "$(as pr_other -c "SELECT payments.pay_current_merchant()")" "$B" "B's role still acts for B alone"
is "$(as pr_writer -c "WITH d AS (DELETE FROM payments.merchant_roles RETURNING 1) SELECT count(*) FROM d")" 0 \
	"pr_writer removes no binding of A"
is "$(su -c "SELECT string_agg(db_role::text, ',' ORDER BY db_role::text) FROM payments.merchant_roles WHERE merchant_id = $A")" \
	"pr_reader,pr_writer" "A's bindings are as the owner made them"
for r in pr_reader pr_writer; do
	is "$(as $r -c "SELECT count(*) FROM payments.gateway_config")" 0 "$r reads no gateway credentials, not even A's"
	is "$(as $r -c "SELECT count(*) FROM payments.merchant_roles")" 0 "$r reads no binding"
done
is "$(as pr_writer -c "WITH u AS (UPDATE payments.gateway_config SET endpoint_url = 'https://203.0.113.9/steal' RETURNING 1) SELECT count(*) FROM u")" 0 \
	"pr_writer cannot point A's gateway elsewhere"
is "$(su -c "SELECT endpoint_url FROM payments.gateway_config WHERE merchant_id = $A")" "https://127.0.0.1:9/api" \
	"A's endpoint is the one the owner set"

###########################################################################
# 3. pg_signal_backend and the extension's background processes.
pids=$(su -c "SELECT string_agg(pid::text || ':' || replace(backend_type, ' ', '_'), ' ' ORDER BY backend_type) FROM pg_stat_activity
	WHERE backend_type IN ('payments worker', 'payments recorder', 'payments billing')")
is "$(echo "$pids" | wc -w)" 3 "(the worker, the recorder and the billing process run: $pids)"
for p in $pids; do
	for f in pg_cancel_backend pg_terminate_backend; do
		is "$(sqlstate pr_signal -c "SELECT $f(${p%%:*})")" 42501 "a pg_signal_backend member: $f of the ${p#*:} refused"
	done
done
is "$(su -c "SELECT string_agg(pid::text || ':' || replace(backend_type, ' ', '_'), ' ' ORDER BY backend_type) FROM pg_stat_activity
	WHERE backend_type IN ('payments worker', 'payments recorder', 'payments billing')")" "$pids" "and they run on, the same processes"

tap_done
