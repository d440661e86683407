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

q postgres -c 'DROP DATABASE IF EXISTS dump_src' -c 'DROP DATABASE IF EXISTS dump_dst' -c 'CREATE DATABASE dump_src'
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
SQL
snapshot() {	# the data a restore must reproduce
	q "$1" -Atc "SELECT string_agg(id || ':' || total::text || ':' || note, ',' ORDER BY id) FROM orders" \
		-c "SELECT string_agg(merchant_id || ':' || name || ':' || is_default, ',' ORDER BY merchant_id) FROM payments.merchants" \
		-c "SELECT string_agg(payment_id || ':' || status || ':' || amount || ':' || card_fingerprint, ',' ORDER BY payment_id) FROM payments.payments" \
		-c "SELECT count(*) || ' operations' FROM payments.operations" \
		-c "SELECT string_agg(event_id || ':' || event_type, ',' ORDER BY event_id) FROM payments.events" \
		-c "SELECT count(*) || ' audit rows' FROM payments.audit_log" \
		-c "SELECT coalesce(payments.pay_audit_verify()::text, 'audit intact')"
}
before=$(snapshot dump_src)

dump="$WORK/dump_src.dump"
as_pg "$PG_BINDIR/pg_dump" -h "$WORK/sock" -p "$PORT" -U postgres -Fc -f "$dump" dump_src
ok $? "pg_dump -Fc succeeds"
q postgres -c 'CREATE DATABASE dump_dst'
rc=0
as_pg "$PG_BINDIR/pg_restore" -h "$WORK/sock" -p "$PORT" -U postgres --exit-on-error -d dump_dst "$dump" || rc=$?
ok "$rc" "pg_restore into a fresh database succeeds without errors"

after=$(snapshot dump_dst)
is "$after" "$before" "orders, merchants, payments, operations, events and audit rows are identical after restore"
fp=$(q dump_dst -Atc "SELECT payments.pay_card_fingerprint(payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2)) = card_fingerprint FROM payments.payments WHERE payment_id = (SELECT min(payment_id) FROM payments.payments)")
is "$fp" t "card fingerprints stay stable across dump and restore (the secret travels)"
tag=$(q dump_dst -Atc "SELECT 'P' || payments._invoice_tag() || payment_id = invoice_number FROM payments.payments WHERE payment_id = (SELECT min(payment_id) FROM payments.payments)")
is "$tag" t "the installation's invoice tag travels too: new invoices look like the restored ones"
n=$(q dump_dst -Atc "SELECT count(*) FROM payments.merchants WHERE is_default")
is "$n" 1 "exactly one default merchant after restore"
id=$(q dump_dst -Atc "INSERT INTO payments.merchants (name) VALUES ('After Restore') RETURNING merchant_id")
is "$id" 4 "the merchant id sequence continues after restore"
plan=$(q dump_dst -Atc "SET search_path = public, payments" -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM orders WHERE total = '12.34 USD'")
like "$plan" 'orders_total' "the pay_amount index is restored and used"

q postgres -c 'DROP DATABASE dump_src' -c 'DROP DATABASE dump_dst'
tap_done
