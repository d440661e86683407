#!/usr/bin/env bash
# pg_dump of a database that uses the extension restores into a fresh
# database with its data intact: the user's tables with pay_amount columns
# and the extension's own configuration tables (pg_extension_config_dump).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
: "${WORK:?run from test/run-tests.sh}" "${PORT:?}"
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}

q() { cluster_psql "$WORK" "$PORT" "$@"; }

q postgres -c 'DROP DATABASE IF EXISTS dump_src' -c 'DROP DATABASE IF EXISTS dump_dst' -c 'CREATE DATABASE dump_src' \
	-c 'DROP ROLE IF EXISTS dump_app_b' -c 'CREATE ROLE dump_app_b NOLOGIN'
q dump_src <<'SQL'
CREATE EXTENSION payments;
SET search_path = public, payments;
INSERT INTO payments.merchants (name) VALUES ('Acme Books'), ('Zenith Tea');
CREATE TABLE orders (id int PRIMARY KEY, total pay_amount NOT NULL, note text);
INSERT INTO orders VALUES (1, '12.34 USD', 'first'), (2, '-92233720368547758.08 USD', 'min'),
	(3, '1000 JPY', 'yen'), (4, '1.234 KWD', 'fils');
CREATE INDEX orders_total ON orders (total);
-- payments with their operations, events and audit rows (no gateway is
-- configured in this database, so they stay queued)
SELECT payment_id FROM pay_purchase(amount => '12.34 USD',
	card => pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123'));
SELECT payment_id FROM pay_authorize(amount => '5.00 EUR',
	card => pay_card('5555 5555 5555 4444', 1, extract(year from now())::int + 3));
-- merchant 2's application: bound, and allowed to read the payments table
-- directly, where row-level security must keep merchant 1's rows from it
SET payments.merchant_id = '2';
SELECT payment_id FROM pay_purchase(amount => '3.00 USD',
	card => pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2));
RESET payments.merchant_id;
SELECT pay_bind_role('dump_app_b', merchant_id => 2);
GRANT SELECT ON payments.payments, payments.operations TO dump_app_b;
-- API keys of merchant 2, one revoked (its revocation is a row of
-- api_key_revocations: dumped, or the key would act again after a restore)
SELECT count(*) FROM (SELECT pay_create_api_key(merchant_id => 2) FROM generate_series(1, 2)) x;
SELECT pay_revoke_api_key((SELECT min(key_id) FROM payments.api_keys WHERE merchant_id = 2));
SQL
snapshot() {	# the data a restore must reproduce
	q "$1" -Atc "SELECT string_agg(id || ':' || total::text || ':' || note, ',' ORDER BY id) FROM orders" \
		-c "SELECT string_agg(merchant_id || ':' || name || ':' || is_default, ',' ORDER BY merchant_id) FROM payments.merchants" \
		-c "SELECT string_agg(payment_id || ':' || status || ':' || amount || ':' || card_fingerprint, ',' ORDER BY payment_id) FROM payments.payments" \
		-c "SELECT count(*) || ' operations' FROM payments.operations" \
		-c "SELECT string_agg(event_id || ':' || event_type, ',' ORDER BY event_id) FROM payments.events" \
		-c "SELECT count(*) || ' audit rows' FROM payments.audit_log" \
		-c "SELECT coalesce(payments.pay_audit_verify()::text, 'audit intact')" \
		-c "SELECT string_agg(merchant_id || ':' || db_role::text, ',' ORDER BY 1) FROM payments.merchant_roles" \
		-c "SELECT string_agg(key_id || ':' || (revoked_at IS NOT NULL), ',' ORDER BY key_id) || ' (keys: revoked)' FROM payments.pay_list_api_keys()"
}
# What row-level security shows merchant 2's role, and the policies: the
# same in every restored copy.
tenancy() {	# tenancy PSQL-FUNCTION DB
	"$1" "$2" -Atc "SELECT string_agg(c.relname || ':' || c.relrowsecurity || ':' || p.polname, ',' ORDER BY c.relname)
			FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
			WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind = 'r'
				AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'merchant_id')" \
		-c "SET ROLE dump_app_b" \
		-c "SELECT 'merchant 2 sees ' || count(*) FILTER (WHERE merchant_id = 2) || ' own and ' || count(*) FILTER (WHERE merchant_id <> 2) || ' foreign payments' FROM payments.payments" \
		-c "SELECT 'and ' || count(*) FILTER (WHERE merchant_id <> 2) || ' foreign operations' FROM payments.operations"
}
before=$(snapshot dump_src)
src_tenancy=$(tenancy q dump_src)
like "$src_tenancy" "payments:true:merchant_isolation" "row-level security and its policy are on from install"
like "$src_tenancy" "merchant 2 sees 1 own and 0 foreign payments" "merchant 2's role sees only its own payment"
like "$src_tenancy" "and 0 foreign operations" "and only its own operations"

dump="$WORK/dump_src.dump"
as_pg "$PG_BINDIR/pg_dump" -h "$WORK/sock" -p "$PORT" -U postgres -Fc -f "$dump" dump_src
ok $? "pg_dump -Fc succeeds"
q postgres -c 'CREATE DATABASE dump_dst'
rc=0
as_pg "$PG_BINDIR/pg_restore" -h "$WORK/sock" -p "$PORT" -U postgres --exit-on-error -d dump_dst "$dump" || rc=$?
ok "$rc" "pg_restore into a fresh database succeeds without errors"

after=$(snapshot dump_dst)
is "$after" "$before" "orders, merchants, payments, operations, events, audit rows and API keys (revoked or not) are identical after restore"
like "$before" ":true,[0-9]+:false \(keys: revoked\)" "(one of the two keys is revoked)"
# (the payments here were never sent, so they hold no fingerprint: the
# worker records one with the gateway's answer)
fp_of() { q "$1" -Atc "SELECT payments.pay_card_fingerprint(payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2))"; }
fp=$(fp_of dump_src)
ok "$([ ${#fp} = 64 ] && [ "$(fp_of dump_dst)" = "$fp" ] && echo 0 || echo 1)" \
	"card fingerprints stay stable across dump and restore (the key id travels, the key file stays)"
tag=$(q dump_dst -Atc "SELECT 'P' || payments._invoice_tag() || payment_id = invoice_number FROM payments.payments WHERE payment_id = (SELECT min(payment_id) FROM payments.payments)")
is "$tag" t "the installation's invoice tag travels too: new invoices look like the restored ones"
n=$(q dump_dst -Atc "SELECT count(*) FROM payments.merchants WHERE is_default")
is "$n" 1 "exactly one default merchant after restore"
id=$(q dump_dst -Atc "INSERT INTO payments.merchants (name) VALUES ('After Restore') RETURNING merchant_id")
is "$id" 4 "the merchant id sequence continues after restore"
plan=$(q dump_dst -Atc "SET search_path = public, payments" -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM orders WHERE total = '12.34 USD'")
like "$plan" 'orders_total' "the pay_amount index is restored and used"
is "$(tenancy q dump_dst)" "$src_tenancy" "row-level security, its policies and the role binding survive pg_dump -Fc / pg_restore"

# Into ANOTHER cluster, from the custom and the plain format: roles come
# from pg_dumpall --globals-only (here: made by hand), the rest from the dump.
plain="$WORK/dump_src.sql"
as_pg "$PG_BINDIR/pg_dump" -h "$WORK/sock" -p "$PORT" -U postgres -Fp -f "$plain" dump_src
ok $? "pg_dump -Fp succeeds"
OTHER="$WORK/other_cluster"
OTHER_PORT=$(free_port)
trap private_clusters_stop EXIT
private_cluster "$OTHER" "$OTHER_PORT"
o() { cluster_psql "$OTHER" "$OTHER_PORT" "$@"; }
o postgres -c 'CREATE ROLE dump_app_b NOLOGIN' -c 'CREATE DATABASE from_custom' -c 'CREATE DATABASE from_plain'
rc=0
as_pg "$PG_BINDIR/pg_restore" -h "$OTHER/sock" -p "$OTHER_PORT" -U postgres --exit-on-error -d from_custom "$dump" || rc=$?
ok "$rc" "pg_restore -Fc into another cluster succeeds"
rc=0
o from_plain -f "$plain" >/dev/null || rc=$?
ok "$rc" "psql -f of the plain dump into another cluster succeeds"
for db in from_custom from_plain; do
	is "$(q() { o "$@"; }; snapshot "$db")" "$before" "$db (another cluster): the data is identical"
	is "$(tenancy o "$db")" "$src_tenancy" \
		"$db (another cluster): row-level security and policies are on, merchant 2's role sees none of merchant 1's rows"
done
cluster_stop "$OTHER"

q postgres -c 'DROP DATABASE dump_src' -c 'DROP DATABASE dump_dst' -c 'DROP ROLE dump_app_b'
tap_done
