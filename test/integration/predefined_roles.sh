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
ROLES="pr_writer pr_unbound pr_reader pr_other pr_admin"
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
SELECT payments.pay_bind_role('pr_writer', merchant_id => $A);
SELECT payments.pay_bind_role('pr_reader', merchant_id => $A);
SELECT payments.pay_bind_role('pr_other', merchant_id => $B);
SELECT payments.pay_grant_api('pr_unbound');
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

tap_done
