#!/usr/bin/env bash
# pay_amount sorts (issue 12).  PostgreSQL's own sorts (of rows, a lone
# column under payments.amount_sort = off) and btree index builds use the
# abbreviated keys (pay_amount_sortsupport), keep them when the amounts are
# many and distinct, give them up when they are few, and build indexes that
# amcheck finds in the order of pay_amount_cmp; trace_sort shows which way
# the sort went.  A query's ORDER BY of a lone amount column takes the key
# sort (amount_sort.c, "Custom Scan (PayAmountSort)"): in the order
# (currency, minor units) both ways, nulls first or last, past work_mem,
# for amounts beyond its keys, backward, rescanned, in parallel plans and
# generic plans, below a DISTINCT, a GROUP BY or a window function; and not
# where a Sort would do better (LIMIT).
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

# traced SQL: the sort's LOG lines (trace_sort) and the statement's output,
# PostgreSQL's Sort node (a lone column's key sort off)
traced() {
	q -c "SET max_parallel_workers_per_gather = 0" -c "SET max_parallel_maintenance_workers = 0" \
		-c "SET payments.amount_sort = off" \
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
same "$(q -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '256MB'" -c "SET payments.amount_sort = off" \
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

# The key sort of a lone column.  keyed: the 200 000 distinct amounts in
# every currency and 1 000 nulls; beyond: tied's amounts (a quarter beyond
# the keys' +/- 2^48 minor units, the first after a few keys) and nulls.
# Neither has an index, so ORDER BY sorts.
q >/dev/null <<'SQL'
CREATE TABLE keyed AS SELECT a FROM sorted UNION ALL SELECT NULL FROM generate_series(1, 1000);
CREATE TABLE beyond AS SELECT a FROM tied UNION ALL SELECT NULL FROM generate_series(1, 1000);
CREATE TABLE small AS SELECT a FROM sorted WHERE id % 100 = 0 UNION ALL SELECT NULL;
VACUUM ANALYZE keyed, beyond, small;
SQL
serial() { q -c "SET max_parallel_workers_per_gather = 0" "$@"; }
# got TABLE ORDER: the md5 of the lone column's ORDER BY's output
got() { local t=$1 o=$2; shift 2; serial "$@" -c "SELECT md5(string_agg(coalesce(a::text, '-'), ',')) FROM (SELECT a FROM $t ORDER BY a $o) s"; }
# expected TABLE ORDER: the same from (currency, minor units), no amount compared
expected() {
	local dir=ASC nulls=ASC
	[[ $2 == DESC* ]] && dir=DESC
	[[ $2 == *"NULLS FIRST"* || ( $2 == DESC* && $2 != *"NULLS LAST"* ) ]] && nulls=DESC
	q -c "SELECT md5(string_agg(coalesce(a::text, '-'), ',' ORDER BY (a IS NULL) $nulls,
		payments.pay_currency(a) $dir, payments.pay_minor_units(a) $dir)) FROM $1"
}
plan=$(serial -c "EXPLAIN (COSTS OFF) SELECT a FROM keyed ORDER BY a")
like "$plan" 'Custom Scan \(PayAmountSort\)' "ORDER BY of a lone amount column takes the key sort"
like "$plan" 'Sort Key: a$' "... and EXPLAIN gives its sort key"
for order in "" "DESC" "NULLS FIRST" "DESC NULLS LAST"; do
	like "$(serial -c "EXPLAIN (COSTS OFF) SELECT a FROM keyed ORDER BY a $order")" 'PayAmountSort' \
		"ORDER BY a ${order:-ASC}: the key sort"
	is "$(got keyed "$order")" "$(expected keyed "$order")" \
		"... its output in (currency, minor units) order, nulls where asked"
	is "$(got beyond "$order")" "$(expected beyond "$order")" \
		"... and so for amounts beyond the keys (sorted as values)"
done
like "$(serial -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT a FROM keyed ORDER BY a")" 'Sorted By: key' \
	"amounts within +/- 2^48 minor units are sorted by their keys"
like "$(serial -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT a FROM beyond ORDER BY a")" 'Sorted By: value' \
	"an amount beyond them turns the sort into one of the values"

# Past work_mem: an external sort, keys and values alike.
for t in keyed beyond; do
	like "$(serial -c "SET work_mem = '64kB'" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT a FROM $t ORDER BY a DESC")" \
		'Sort Method: external' "$t, work_mem 64kB: the sort goes to disk"
	is "$(got "$t" DESC -c "SET work_mem = '64kB'")" "$(expected "$t" DESC)" "... and its output is in order"
done

# Where PostgreSQL's Sort does better, or is asked for, it stays.
plan=$(serial -c "EXPLAIN (COSTS OFF) SELECT a FROM keyed ORDER BY a LIMIT 10")
like "$plan" '->  Sort' "ORDER BY ... LIMIT keeps the top-N Sort"
unlike "$plan" 'PayAmountSort' "... and not the key sort"
# A LIMIT above a subquery (or view) bounds a Sort in it too (the executor
# passes the bound down through the subquery scan); the key sort, not told
# it, would sort every row (100 000 amounts, work_mem 1MB: 65 ms and 2 MB
# on disk, against 8 ms in 25 kB).
q -c "CREATE VIEW keyed_sorted AS SELECT a FROM keyed ORDER BY a" >/dev/null
for sql in "SELECT a FROM (SELECT a FROM keyed ORDER BY a DESC) s LIMIT 10" "SELECT * FROM keyed_sorted LIMIT 10"; do
	like "$(serial -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) $sql")" 'Sort Method: top-N heapsort' \
		"$sql: the top-N Sort"
done
unlike "$(serial -c "SET payments.amount_sort = off" -c "EXPLAIN (COSTS OFF) SELECT a FROM keyed ORDER BY a")" 'PayAmountSort' \
	"payments.amount_sort = off: PostgreSQL's Sort"
like "$(serial -c "SET payments.amount_sort = off" -c "EXPLAIN (COSTS OFF, SETTINGS) SELECT a FROM keyed ORDER BY a")" \
	"Settings: .*payments.amount_sort = 'off'" "... which EXPLAIN (SETTINGS) names, as it names enable_sort"
unlike "$(serial -c "EXPLAIN (COSTS OFF) SELECT a, 1 FROM keyed ORDER BY a")" 'PayAmountSort' \
	"a sort of rows is PostgreSQL's Sort"

# DISTINCT, GROUP BY and a window's ORDER BY of a lone amount column: the
# key sort below their Unique, Group, GroupAggregate or WindowAgg (hash
# aggregation off, or the planner may hash instead), in the order they ask
# for, with the groups, counts, ranks and order PostgreSQL's Sort gives.  dups: every amount of sorted once, a
# third of them three times, and nulls; dups_beyond: the same of tied
# (amounts beyond the keys).
q >/dev/null <<'SQL'
CREATE TABLE dups AS SELECT a FROM sorted UNION ALL SELECT a FROM sorted, generate_series(1, 2) WHERE id % 3 = 0
	UNION ALL SELECT NULL FROM generate_series(1, 100);
CREATE TABLE dups_beyond AS SELECT a FROM tied UNION ALL SELECT a FROM tied, generate_series(1, 2) WHERE id % 3 = 0
	UNION ALL SELECT NULL FROM generate_series(1, 100);
VACUUM ANALYZE dups, dups_beyond;
SQL
nohash() { serial -c "SET enable_hashagg = off" "$@"; }
for sql in "SELECT DISTINCT a FROM %s" "SELECT a FROM %s GROUP BY a" "SELECT a, count(*) FROM %s GROUP BY a" \
	"SELECT DISTINCT a FROM %s ORDER BY a DESC NULLS LAST" \
	"SELECT a, count(*) FROM %s GROUP BY a HAVING count(*) > 1 ORDER BY a DESC" \
	"SELECT a, rank() OVER (ORDER BY a NULLS FIRST) FROM %s" \
	"SELECT a, count(*) OVER (ORDER BY a DESC ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM %s"; do
	# shellcheck disable=SC2059
	printf -v one "$sql" dups
	# (the plan on one line: the node right below, with nothing between)
	like "$(nohash -c "EXPLAIN (COSTS OFF) $one" | tr -s ' \n' '  ')" \
		'(Unique|Group|GroupAggregate|WindowAgg) [^-]*-> Custom Scan \(PayAmountSort\)' "$one: the key sort below"
	for t in dups dups_beyond; do
		# shellcheck disable=SC2059
		printf -v one "$sql" "$t"
		is "$(nohash -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($one) x")" \
			"$(nohash -c "SET payments.amount_sort = off" -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($one) x")" \
			"... $t: the rows and order of PostgreSQL's Sort"
	done
done
is "$(nohash -c "SELECT count(*) FROM (SELECT DISTINCT a FROM dups_beyond) x")" \
	"$(q -c "SELECT count(DISTINCT (payments.pay_currency(a), payments.pay_minor_units(a))) FILTER (WHERE a IS NOT NULL) + 1 FROM dups_beyond")" \
	"DISTINCT over amounts beyond the keys: one row per (currency, minor units), and one null"
like "$(nohash -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT a, count(*) FROM dups_beyond GROUP BY a")" 'Sorted By: value' \
	"... sorted as values"
unlike "$(nohash -c "EXPLAIN (COSTS OFF) SELECT a, count(DISTINCT 1) FROM dups GROUP BY a, a::text")" 'PayAmountSort' \
	"a GROUP BY of more than the amount keeps PostgreSQL's Sort"

# A set operation's output (UNION's column is no relation's, varno 0): its
# ORDER BY is PostgreSQL's Sort, which EXPLAIN can show, at the top of a
# query or in a subquery, and auto_explain too (the key sort's EXPLAIN
# named its key by that column: "bogus varno: 0", "invalid attnum 1 for
# relation "*RESULT*"", and under auto_explain the query itself failed).
union="SELECT a FROM small UNION SELECT a FROM small ORDER BY a"
for sql in "$union" "SELECT v.x, s.a FROM (VALUES (1)) v(x), ($union) s"; do
	ok_cmd "EXPLAIN (VERBOSE) $sql" serial -c "EXPLAIN (VERBOSE, COSTS OFF) $sql" || true
done
is "$(serial -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" -c "$union" 2>&1 | md5sum)" \
	"$(serial -c "SET payments.amount_sort = off" -c "$union" | md5sum)" "... and under auto_explain it gives the rows"

# Backward: a scroll cursor reads the sorted amounts from the end.
is "$(serial -c "BEGIN" -c "DECLARE c SCROLL CURSOR FOR SELECT a FROM small ORDER BY a" -c "FETCH LAST FROM c" \
		-c "FETCH BACKWARD 3 FROM c" -c "FETCH ABSOLUTE 2 FROM c" -c "COMMIT" | grep -v '^\(BEGIN\|DECLARE CURSOR\|COMMIT\)$' | paste -sd' ')" \
	"$(q -c "SELECT '' UNION ALL (SELECT a::text FROM small WHERE a IS NOT NULL ORDER BY payments.pay_currency(a) DESC, payments.pay_minor_units(a) DESC LIMIT 3)
		UNION ALL (SELECT a::text FROM small WHERE a IS NOT NULL ORDER BY payments.pay_currency(a), payments.pay_minor_units(a) OFFSET 1 LIMIT 1)" | paste -sd' ')" \
	"FETCH LAST, BACKWARD 3, ABSOLUTE 2 of a scroll cursor: the null, the 3 largest, the second smallest"

# Rescanned: with a parameter of the outer query below it (sorted again),
# and without one (read again).  FETCH ABSOLUTE above rewinds the sort.
sub="SELECT m, (SELECT md5(string_agg(a::text, ',')) FROM (SELECT a FROM small WHERE payments.pay_minor_units(a) > m ORDER BY a DESC) s)
	FROM (VALUES (-1000000000), (0), (1000000000)) v(m) ORDER BY m"
like "$(serial -c "EXPLAIN (COSTS OFF) $sub")" 'PayAmountSort' "a correlated subquery's ORDER BY takes the key sort"
is "$(serial -c "$sub" | paste -sd' ')" \
	"$(q -c "SELECT m, (SELECT md5(string_agg(a::text, ',' ORDER BY payments.pay_currency(a) DESC, payments.pay_minor_units(a) DESC))
		FROM small WHERE payments.pay_minor_units(a) > m) FROM (VALUES (-1000000000), (0), (1000000000)) v(m) ORDER BY m" | paste -sd' ')" \
	"... sorted again for each outer row"
sub="SELECT m, (SELECT md5(string_agg(m || ':' || coalesce(a::text, '-'), ',')) FROM (SELECT a FROM small ORDER BY a) s)
	FROM (VALUES (1), (2), (3)) v(m) ORDER BY m"
is "$(serial -c "$sub" | paste -sd' ')" \
	"$(q -c "SELECT m, (SELECT md5(string_agg(m || ':' || coalesce(a::text, '-'), ',' ORDER BY (a IS NULL), payments.pay_currency(a),
		payments.pay_minor_units(a))) FROM small) FROM (VALUES (1), (2), (3)) v(m) ORDER BY m" | paste -sd' ')" \
	"... and read again for each outer row where its input does not change"

# A domain over pay_amount sorts the same way (its column is relabelled to
# the base type in the sort key), values beyond the keys too.
q >/dev/null <<'SQL'
CREATE DOMAIN pos_amount AS payments.pay_amount CHECK (payments.pay_minor_units(VALUE) >= 0);
CREATE TABLE dom AS SELECT a::pos_amount AS a FROM small WHERE payments.pay_minor_units(a) >= 0
	UNION ALL SELECT payments.pay_amount_from_minor(9000000000000000000, 'USD')::pos_amount;
ANALYZE dom;
SQL
like "$(serial -c "EXPLAIN (COSTS OFF) SELECT a FROM dom ORDER BY a DESC")" 'PayAmountSort' "a domain's column takes the key sort"
is "$(got dom DESC)" "$(expected dom DESC)" "... and comes out in order"

# A parallel plan and a generic plan give the same order.
is "$(q -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" -c "SET min_parallel_table_scan_size = 0" \
		-c "SET max_parallel_workers_per_gather = 2" \
		-c "SELECT md5(string_agg(coalesce(a::text, '-'), ',')) FROM (SELECT a FROM keyed ORDER BY a) s")" \
	"$(expected keyed "")" "with parallel workers reading the table, the order holds"
is "$(serial -c "SET plan_cache_mode = force_generic_plan" \
		-c "PREPARE p(bigint) AS SELECT md5(string_agg(coalesce(a::text, '-'), ',')) FROM (SELECT a FROM keyed WHERE payments.pay_minor_units(a) > \$1 OR a IS NULL ORDER BY a) s" \
		-c "EXECUTE p(-9000000000000000000)" | tail -1)" "$(expected keyed "")" "a generic plan with a parameter sorts the same"


# The new stages in the places a Sort below them is found too: each
# partition's GROUP BY under partitionwise aggregation (a child grouped
# rel, relids of its own), a Unique, GroupAggregate and WindowAgg
# rescanned (a LATERAL parameter below: sorted again; none: read again), a
# WITH HOLD cursor over a DISTINCT (kept at COMMIT: run again from the
# start) and a plan run in a parallel worker (force_parallel_mode); each
# with the rows and order of PostgreSQL's Sort.
q >/dev/null <<'SQL'
CREATE TABLE parted (a payments.pay_amount) PARTITION BY HASH (a);
CREATE TABLE parted0 PARTITION OF parted FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE parted1 PARTITION OF parted FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE parted2 PARTITION OF parted FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO parted SELECT a FROM small UNION ALL SELECT a FROM small WHERE payments.pay_minor_units(a) % 2 = 0;
ANALYZE parted;
SQL
pwise() { nohash -c "SET enable_partitionwise_aggregate = on" "$@"; }
for sql in "SELECT a, count(*) FROM parted GROUP BY a" "SELECT a FROM parted GROUP BY a"; do
	like "$(pwise -c "EXPLAIN (COSTS OFF) $sql" | tr -s ' \n' '  ' | grep -Eo '(Group|GroupAggregate) [^-]*-> Custom Scan \(PayAmountSort\)' | wc -l)" '^3$' \
		"$sql, partitionwise: the key sort below each partition's grouping"
	is "$(pwise -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
		"$(pwise -c "SET payments.amount_sort = off" -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
		"... the rows and order of PostgreSQL's Sort"
done
for sql in "SELECT v.m, s.* FROM (VALUES (0), (1), (2)) v(m), LATERAL (SELECT a, count(*) FROM parted WHERE payments.pay_minor_units(a) % 3 <> v.m GROUP BY a) s" \
	"SELECT v.m, s.* FROM (VALUES (0), (1), (2)) v(m), LATERAL (SELECT a, rank() OVER (ORDER BY a DESC) FROM parted WHERE payments.pay_minor_units(a) % 3 <> v.m) s" \
	"SELECT m, (SELECT md5(string_agg(a::text, ',')) FROM (SELECT DISTINCT a FROM parted) s) FROM (VALUES (1), (2), (3)) v(m)"; do
	like "$(nohash -c "EXPLAIN (COSTS OFF) $sql")" 'PayAmountSort' "rescanned: ${sql:0:60}...: the key sort"
	is "$(nohash -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
		"$(nohash -c "SET payments.amount_sort = off" -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
		"... the rows and order of PostgreSQL's Sort"
done
# EXPLAIN names the key as PostgreSQL's Sort does: qualified where the plan
# has several relations (it said "Sort Key: a" where the Sort said
# "Sort Key: dups.a").
sql="SELECT x.a FROM (SELECT DISTINCT a FROM parted) x JOIN small ON x.a OPERATOR(payments.=) small.a"
like "$(nohash -c "EXPLAIN (COSTS OFF) $sql")" 'PayAmountSort' "$sql: the key sort"
is "$(nohash -c "EXPLAIN (COSTS OFF) $sql" | grep -o 'Sort Key: .*')" \
	"$(nohash -c "SET payments.amount_sort = off" -c "EXPLAIN (COSTS OFF) $sql" | grep -o 'Sort Key: .*')" \
	"... and EXPLAIN names its key as a Sort's: Sort Key: parted.a"
hold() { nohash "$@" -c "BEGIN" -c "DECLARE c CURSOR WITH HOLD FOR SELECT DISTINCT a FROM parted" -c "FETCH 3 FROM c" -c "COMMIT" -c "FETCH ALL FROM c"; }
is "$(hold | md5sum)" "$(hold -c "SET payments.amount_sort = off" | md5sum)" \
	"a WITH HOLD cursor over a DISTINCT: the rows of PostgreSQL's Sort, before and after COMMIT"
sql="SELECT a, count(*) FROM parted GROUP BY a ORDER BY a DESC"
like "$(nohash -c "SET max_parallel_workers_per_gather = 2" -c "SET force_parallel_mode = on" -c "EXPLAIN (COSTS OFF) $sql" | tr -s ' \n' '  ')" 'Gather .*PayAmountSort' \
	"force_parallel_mode: the key sort in a parallel worker"
is "$(nohash -c "SET max_parallel_workers_per_gather = 2" -c "SET force_parallel_mode = on" -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
	"$(nohash -c "SET payments.amount_sort = off" -c "SELECT md5(string_agg(x::text, ',')), count(*) FROM ($sql) x")" \
	"... the rows and order of PostgreSQL's Sort"

tap_done
