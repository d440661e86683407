#!/usr/bin/env bash
# pay_amount sort support (issue 12): sorts and btree index builds use the
# abbreviated keys (pay_amount_sortsupport), keep them when the amounts are
# many and distinct, give them up when they are few, and build indexes that
# amcheck finds in the order of pay_amount_cmp.  The order itself is checked
# against (currency, minor units) in sql/amount.sql; here trace_sort shows
# which way the sort went.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

DB=amount_sort_test
cleanup() { cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
q() { cluster_psql "$WORK" "$PORT" "$DB" -At "$@"; }
q -c 'CREATE EXTENSION payments' -c 'CREATE EXTENSION amcheck' >/dev/null
# 200 000 distinct amounts in every currency; 200 000 rows of three amounts
q >/dev/null <<'SQL'
CREATE TABLE sorted AS
SELECT i AS id, payments.pay_amount_from_minor((i::bigint * 2654435761) % 4000000001 - 2000000000,
	c.codes[1 + i % array_length(c.codes, 1)]) AS a
FROM generate_series(1, 200000) i,
	(SELECT array_agg(code ORDER BY code) AS codes FROM payments.pay_currencies()) c;
CREATE TABLE few AS
SELECT i AS id, (ARRAY['1.00 USD', '-1.00 USD', '1.00 EUR']::payments.pay_amount[])[1 + i % 3] AS a
FROM generate_series(1, 200000) i;
VACUUM ANALYZE sorted, few;
SQL

# traced SQL: the sort's LOG lines (trace_sort) and the statement's output
traced() {
	q -c "SET max_parallel_workers_per_gather = 0" -c "SET max_parallel_maintenance_workers = 0" \
		-c "SET work_mem = '256MB'" -c "SET trace_sort = on" -c "SET client_min_messages = log" -c "$1" 2>&1
}

out=$(traced "SELECT a FROM sorted ORDER BY a OFFSET 1e9")
like "$out" 'pay_amount_abbrev: estimation ends at cardinality' \
	"ORDER BY over 200 000 distinct amounts uses abbreviated keys and keeps them"
like "$(grep -c 'pay_amount_abbrev: aborting' <<<"$out" || true)" '^0$' "... and does not give them up"

out=$(traced "SELECT a FROM few ORDER BY a OFFSET 1e9")
like "$out" 'pay_amount_abbrev: aborting abbreviation at cardinality' \
	"ORDER BY over three distinct amounts gives the abbreviated keys up"

# Ties of the abbreviated keys: amounts beyond +/- 2^48 minor units share
# one key per currency and sign.  Among enough distinct amounts the keys
# are kept, and the full comparison decides the ties: the order is still
# (currency, minor units), for a Sort node over the lone column and for
# whole rows.
q >/dev/null <<'SQL'
CREATE TABLE tied AS
SELECT i AS id, payments.pay_amount_from_minor(CASE i % 4
		WHEN 0 THEN 281474976710656 + i::bigint * 1000003
		WHEN 1 THEN -281474976710657 - i::bigint * 1000003
		ELSE (i::bigint * 2654435761) % 4000000001 - 2000000000 END,
	(ARRAY['EUR', 'JPY', 'USD'])[1 + i % 3]) AS a
FROM generate_series(1, 240000) i;
VACUUM ANALYZE tied;
SQL
out=$(traced "SELECT a FROM tied ORDER BY a OFFSET 1e9")
like "$out" 'pay_amount_abbrev: (estimation ends at cardinality|cardinality)' \
	"ORDER BY over amounts with tied abbreviated keys uses the keys"
like "$(grep -c 'pay_amount_abbrev: aborting' <<<"$out" || true)" '^0$' "... and keeps them"
expected_order="SELECT string_agg(a::text, ',' ORDER BY payments.pay_currency(a), payments.pay_minor_units(a), id) FROM tied"
same "$(q -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '256MB'" \
		-c "SELECT string_agg(a::text, ',') FROM (SELECT a FROM tied ORDER BY a) s")" \
	"$(q -c "$expected_order")" "... and the lone column comes out in (currency, minor units) order"
same "$(q -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '256MB'" \
		-c "SELECT string_agg(a::text, ',') FROM (SELECT a, id FROM tied ORDER BY a, id) s")" \
	"$(q -c "$expected_order")" "... and so do whole rows"

out=$(traced "SELECT id FROM sorted ORDER BY a, id OFFSET 1e9")
like "$out" 'pay_amount_abbrev: estimation ends at cardinality' "a sort of whole rows by amount uses them too"

out=$(traced "CREATE INDEX sorted_a ON sorted (a)")
like "$out" 'pay_amount_abbrev: estimation ends at cardinality' "CREATE INDEX uses the abbreviated keys"
out=$(traced "CREATE INDEX few_a ON few (a)")
like "$out" 'pay_amount_abbrev: aborting abbreviation' "CREATE INDEX over three amounts gives them up"

for idx in sorted_a few_a; do
	ok_cmd "amcheck: $idx is in pay_amount_cmp order, and has every row" \
		q -c "SELECT bt_index_parent_check('$idx', heapallindexed => true, rootdescend => true)" || true
done

# The index scan and the sort agree, row for row.
same "$(q -c "SET enable_seqscan = off" -c "SET enable_bitmapscan = off" \
		-c "SELECT string_agg(a::text, ',') FROM (SELECT a FROM sorted ORDER BY a) s")" \
	"$(q -c "SET enable_indexscan = off" -c "SET enable_indexonlyscan = off" -c "SET enable_bitmapscan = off" \
		-c "SELECT string_agg(a::text, ',') FROM (SELECT a FROM sorted ORDER BY a) s")" \
	"an index scan returns the amounts in the order the sort does"

tap_done
