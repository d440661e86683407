--
-- pay_amount: input, output, conversions, operators, aggregates, errors.
--
CREATE EXTENSION IF NOT EXISTS payments;
SET search_path = public, payments;
-- try(sql) runs a statement and shows its SQLSTATE and message, so each
-- error's code is part of the expected output.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
	EXECUTE q INTO r;
	RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN others THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Text input: the forms people type, canonical output.
SELECT v, v::pay_amount AS amount
FROM (VALUES ('12.34 USD'), ('USD 12.34'), ('usd 12.34'), ('12.34USD'), ('USD12.34'),
	('-12.34 USD'), ('USD -12.34'), ('-USD 12.34'), ('+5 EUR'), ('  7.5 GBP  '),
	('0.05 USD'), ('.05 USD'), ('5 USD'), ('00012.30 USD'), ('-0 USD'),
	('1000 JPY'), ('-1 JPY'), ('1.234 KWD'), ('0.001 BHD'), ('5 TND'),
	('1.2345 CLF'), ('12 EUR'), ('12.34 eur')) AS t(v);

-- Limits: int64 minor units, in every exponent.
SELECT '92233720368547758.07 USD'::pay_amount AS max_usd,
	'-92233720368547758.08 USD'::pay_amount AS min_usd,
	'9223372036854775807 JPY'::pay_amount AS max_jpy,
	'-9223372036854775808 JPY'::pay_amount AS min_jpy,
	'9223372036854775.807 KWD'::pay_amount AS max_kwd,
	'-922337203685477.5808 CLF'::pay_amount AS min_clf;

-- Input errors, each with its SQLSTATE.
SELECT v, pg_temp.try(format('SELECT %L::pay_amount::text', v)) AS result
FROM (VALUES (''), ('   '), ('USD'), ('12.34'), ('12.345 USD'), ('12.340 USD'), ('1.5 JPY'),
	('1.0 JPY'), ('1.2345 KWD'), ('12.34 XYZ'), ('12.34 US'), ('12.34 USDX'),
	('12.34 4111'), ('NaN USD'), ('USD NaN'), ('Infinity USD'), ('-inf USD'),
	('1e3 USD'), ('1,000.00 USD'), ('12. USD'), ('. USD'), ('--5 USD'), ('-USD -5'),
	('5 - USD'), ('12.34 USD extra'), ('12.34 USD EUR'), ('USD 12.34 USD'),
	('92233720368547758.08 USD'), ('-92233720368547758.09 USD'),
	('9223372036854775808 JPY'), ('99999999999999999999999 USD'),
	('12.34 XAU'), ('12.34 XXX')) AS t(v);

-- Errors carry a detail and a hint.
SELECT '12.345 USD'::pay_amount;
SELECT '12.34 ABC'::pay_amount;
SELECT 'twelve USD'::pay_amount;

-- Binary form: int8 minor units, then the code; COPY BINARY round trip
-- exercises send and receive.
SELECT a, encode(pay_amount_send(a), 'hex') AS wire
FROM (VALUES ('12.34 USD'::pay_amount), ('-7 JPY'), ('1.234 KWD')) v(a);
CREATE TABLE binary_src (a pay_amount);
INSERT INTO binary_src VALUES ('12.34 USD'), ('-7 JPY'), ('1.234 KWD'),
	('-92233720368547758.08 USD'), ('92233720368547758.07 USD'), (NULL);
\copy binary_src TO 'amount_binary.copy' WITH (FORMAT binary)
CREATE TABLE binary_dst (a pay_amount);
\copy binary_dst FROM 'amount_binary.copy' WITH (FORMAT binary)
SELECT a FROM binary_dst;
SELECT (SELECT array_agg(a ORDER BY a) FROM binary_src)
	IS NOT DISTINCT FROM (SELECT array_agg(a ORDER BY a) FROM binary_dst) AS identical;
DROP TABLE binary_src, binary_dst;

-- Conversions and accessors.
SELECT pay_amount(12.34, 'USD'), pay_amount(12.340, 'usd'), pay_amount(-0.5, 'EUR'),
	pay_amount(100, 'JPY'), pay_amount(1.234, 'KWD'), pay_amount(0, 'BHD');
SELECT pay_amount_from_minor(1234, 'USD'), pay_amount_from_minor(-1, 'KWD'),
	pay_amount_from_minor(500, 'JPY'),
	pay_amount_from_minor(9223372036854775807, 'USD');
SELECT pay_currency('12.34 USD'), pay_minor_units('12.34 USD'), pay_minor_units('-1.234 KWD'),
	pay_minor_units('1000 JPY'), '12.30 USD'::pay_amount::numeric AS as_numeric,
	'1000 JPY'::pay_amount::numeric AS jpy_numeric, pay_amount_to_numeric('-0.005 KWD');
SELECT pay_currency_exponent('USD') AS usd, pay_currency_exponent('jpy') AS jpy,
	pay_currency_exponent('KWD') AS kwd, pay_currency_exponent('CLF') AS clf;
SELECT pg_temp.try($$SELECT pay_amount(12.345, 'USD')::text$$);
SELECT pg_temp.try($$SELECT pay_amount(0.5, 'JPY')::text$$);
SELECT pg_temp.try($$SELECT pay_amount('NaN'::numeric, 'USD')::text$$);
SELECT pg_temp.try($$SELECT pay_amount('Infinity'::numeric, 'USD')::text$$);
SELECT pg_temp.try($$SELECT pay_amount(92233720368547758.08, 'USD')::text$$);
SELECT pg_temp.try($$SELECT pay_amount(1, 'ZZZ')::text$$);
SELECT pg_temp.try($$SELECT pay_amount(1, '')::text$$);
SELECT pg_temp.try($$SELECT pay_amount_from_minor(1, 'EURO')::text$$);
SELECT pg_temp.try($$SELECT pay_currency_exponent('XAU')::text$$);
SELECT count(*) AS currencies, count(*) FILTER (WHERE exponent = 0) AS zero_decimal,
	count(*) FILTER (WHERE exponent = 3) AS three_decimal,
	string_agg(code, ',' ORDER BY code) FILTER (WHERE exponent = 3) AS three_decimal_codes
FROM pay_currencies();

-- Comparison: equality across currencies is false; ordering is an error.
SELECT '1 USD'::pay_amount = '1.00 USD' AS eq, '1 USD'::pay_amount = '1 EUR' AS eq_mixed,
	'1 USD'::pay_amount <> '1 EUR' AS ne_mixed, '1 USD'::pay_amount <> '2 USD' AS ne,
	'1 USD'::pay_amount < '2 USD' AS lt, '2 USD'::pay_amount <= '2 USD' AS le,
	'3 USD'::pay_amount > '2 USD' AS gt, '2 USD'::pay_amount >= '3 USD' AS ge,
	'-92233720368547758.08 USD'::pay_amount < '92233720368547758.07 USD' AS extremes;
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount < '2 EUR')::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount <= '2 EUR')::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount > '2 EUR')::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount >= '2 EUR')::text$$);
-- The total order for sorting: currency, then value.
SELECT '5 EUR'::pay_amount ~<~ '1 USD' AS t_lt, '1 USD'::pay_amount ~<=~ '1 USD' AS t_le,
	'1 USD'::pay_amount ~>~ '5 EUR' AS t_gt, '1 USD'::pay_amount ~>=~ '2 USD' AS t_ge,
	pay_amount_cmp('1 USD', '1 USD') AS c0, pay_amount_cmp('1 EUR', '1 USD') AS c1,
	pay_amount_cmp('2 USD', '1 USD') AS c2;

-- Sorting, DISTINCT, GROUP BY, btree and hash indexes on mixed currencies.
CREATE TABLE amounts (id serial, a pay_amount NOT NULL);
INSERT INTO amounts (a) VALUES ('5 USD'), ('1 EUR'), ('-3 USD'), ('1000 JPY'), ('1.00 EUR'),
	('0.001 KWD'), ('5.00 USD'), ('-92233720368547758.08 USD'), ('92233720368547758.07 USD');
SELECT a FROM amounts ORDER BY a;
SELECT a FROM amounts ORDER BY a DESC LIMIT 3;
SELECT DISTINCT a FROM amounts ORDER BY a;
SELECT pay_currency(a) AS currency, count(*), sum(a) FILTER (WHERE pay_minor_units(a) BETWEEN -1000 AND 1000)
FROM amounts GROUP BY 1 ORDER BY 1;
CREATE INDEX amounts_a ON amounts (a);
CREATE INDEX amounts_a_hash ON amounts USING hash (a);
SET enable_seqscan = off;
SELECT id, a FROM amounts WHERE a = '5 USD' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM amounts WHERE a = '5 USD';
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT a FROM amounts WHERE a ~>=~ '0 USD' AND a ~<~ '100 USD' ORDER BY a;
SELECT a FROM amounts WHERE a ~>=~ '0 USD' AND a ~<~ '100 USD' ORDER BY a;
RESET enable_bitmapscan;
RESET enable_seqscan;
SELECT count(*) FROM amounts x JOIN amounts y ON x.a = y.a;
SELECT a, count(*) FROM amounts GROUP BY a HAVING count(*) > 1 ORDER BY a;

-- Arithmetic.
SELECT '1.10 USD'::pay_amount + '2.25 USD' AS plus, '1.10 USD'::pay_amount - '2.25 USD' AS minus,
	-'1.10 USD'::pay_amount AS neg, -'-1.10 USD'::pay_amount AS negneg,
	pay_amount_abs('-3.50 EUR') AS abs, '1 JPY'::pay_amount + '2 JPY' AS jpy,
	'0.001 KWD'::pay_amount + '0.999 KWD' AS kwd;
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount + '1 EUR')::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount - '1 EUR')::text$$);
SELECT pg_temp.try($$SELECT ('92233720368547758.07 USD'::pay_amount + '0.01 USD')::text$$);
SELECT pg_temp.try($$SELECT ('-92233720368547758.08 USD'::pay_amount - '0.01 USD')::text$$);
SELECT pg_temp.try($$SELECT (-'-92233720368547758.08 USD'::pay_amount)::text$$);
SELECT pg_temp.try($$SELECT pay_amount_abs('-92233720368547758.08 USD')::text$$);

-- Multiplication: integers are exact; numerics round half to even.
SELECT '1.25 USD'::pay_amount * 3 AS i4, 3 * '1.25 USD'::pay_amount AS i4c,
	'1.25 USD'::pay_amount * 3::bigint AS i8, 3::bigint * '1.25 USD'::pay_amount AS i8c,
	'10.00 USD'::pay_amount * 0.075 AS tax, 0.5 * '0.01 USD'::pay_amount AS half_to_even_0,
	'0.03 USD'::pay_amount * 0.5 AS half_to_even_2, '0.05 USD'::pay_amount * 0.5 AS half_to_even_2b,
	'-0.03 USD'::pay_amount * 0.5 AS neg_half, '1 USD'::pay_amount * -1 AS neg,
	'100 JPY'::pay_amount * 1.005 AS jpy_half, '101 JPY'::pay_amount * 1.005 AS jpy_up,
	'1.000 KWD'::pay_amount * 0.0005 AS kwd_half, '0.001 KWD'::pay_amount * 1.5 AS kwd_even;
SELECT pg_temp.try($$SELECT ('92233720368547758.07 USD'::pay_amount * 2)::text$$);
SELECT pg_temp.try($$SELECT ('92233720368547758.07 USD'::pay_amount * 1.0000001)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount * 'NaN'::numeric)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount * 'Infinity'::numeric)::text$$);
SELECT '92233720368547758.07 USD'::pay_amount * 1.0 AS max_times_one,
	'-92233720368547758.08 USD'::pay_amount * 1 AS min_times_one;

-- Division rounds half to even to the minor unit.
SELECT '10.00 USD'::pay_amount / 3 AS third, '10.00 USD'::pay_amount / 4 AS quarter,
	'0.05 USD'::pay_amount / 2 AS tie_even, '0.07 USD'::pay_amount / 2 AS tie_up,
	'-0.05 USD'::pay_amount / 2 AS neg_tie, '-0.07 USD'::pay_amount / 2 AS neg_tie_up,
	'0.05 USD'::pay_amount / -2 AS neg_den, '1 USD'::pay_amount / 3::bigint AS i8,
	'100 JPY'::pay_amount / 3 AS jpy, '1.000 KWD'::pay_amount / 3 AS kwd,
	'10.00 USD'::pay_amount / 2.5 AS num, '0.01 USD'::pay_amount / 0.4 AS num_tie,
	'0.03 USD'::pay_amount / 0.4 AS num_tie_even, '1 USD'::pay_amount / 0.3 AS num_repeat,
	'-92233720368547758.08 USD'::pay_amount / 1 AS min_div_one;
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount / 0)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount / 0::bigint)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount / 0.0)::text$$);
SELECT pg_temp.try($$SELECT ('-92233720368547758.08 USD'::pay_amount / -1)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount / 'NaN'::numeric)::text$$);
SELECT pg_temp.try($$SELECT ('1 USD'::pay_amount / 0.0000000000000000000001)::text$$);

-- Aggregates.
SELECT sum(a), min(a), max(a), count(a)
FROM (VALUES ('1.10 USD'::pay_amount), ('2.20 USD'), (NULL), ('-0.30 USD')) t(a);
SELECT sum(a) IS NULL AS empty_sum FROM amounts WHERE false;
SELECT pg_temp.try($$SELECT sum(a)::text FROM amounts$$);
SELECT pg_temp.try($$SELECT min(a)::text FROM amounts$$);
SELECT pg_temp.try($$SELECT max(a)::text FROM amounts$$);
SELECT pg_temp.try($$SELECT sum(a)::text FROM (VALUES ('92233720368547758.07 USD'::pay_amount), ('0.01 USD')) t(a)$$);
SELECT sum(a) FROM (SELECT '0.01 USD'::pay_amount AS a FROM generate_series(1, 100000)) t;

DROP TABLE amounts;

--
-- Issue 12: the fast paths (state updated in place, sort support with
-- abbreviated keys) give the same answers as the slow ones.
--
-- sum() updates its own 128-bit total, min() and max() their state, in
-- place: running and moving
-- window aggregates still give every row its own value, and + outside an
-- aggregate leaves its operands alone.
SELECT id, a, sum(a) OVER (ORDER BY id) AS running,
	sum(a) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS moving,
	min(a) OVER (ORDER BY id) AS running_min, max(a) OVER (ORDER BY id) AS running_max
FROM (VALUES (1, '1.10 USD'::pay_amount), (2, '2.20 USD'), (3, '-5.00 USD'), (4, '0.01 USD'),
	(5, '9.99 USD')) t(id, a);
SELECT a, a + a AS doubled, a AS unchanged, sum(a + a) AS sum_doubled, sum(a) AS sum_after
FROM (VALUES ('1.10 USD'::pay_amount), ('2.20 USD')) t(a) GROUP BY ROLLUP (a) ORDER BY a;

-- 200 000 USD amounts beside their minor units.
CREATE TABLE usd AS
SELECT i AS id, m, pay_amount_from_minor(m, 'USD') AS a
FROM (SELECT i, (i::bigint * 2654435761) % 4000000001 - 2000000000 AS m
	  FROM generate_series(1, 200000) i) s;
ANALYZE usd;
-- near the int64 limit: 2^62 four times overflows, however it is added up
CREATE TABLE near_limit AS
SELECT pay_amount_from_minor(4611686018427387904, 'USD') AS a FROM generate_series(1, 4);
-- mixed currencies in the middle of many rows
CREATE TABLE mixed_sum AS
SELECT pay_amount_from_minor(1, CASE WHEN i = 50000 THEN 'EUR' ELSE 'USD' END) AS a
FROM generate_series(1, 100000) i;

-- sum, min, max and comparisons, serial and parallel, equal the same
-- aggregates of the bigint minor units.
CREATE FUNCTION pg_temp.check_usd() RETURNS TABLE (what text, ok boolean) LANGUAGE sql AS $$
	SELECT 'sum', sum(a) = pay_amount_from_minor(sum(m)::bigint, 'USD') FROM usd
	UNION ALL
	SELECT 'min/max', min(a) = pay_amount_from_minor(min(m), 'USD') AND
		max(a) = pay_amount_from_minor(max(m), 'USD') FROM usd
	UNION ALL
	SELECT 'where <', (SELECT count(*) FROM usd WHERE a < '1.00 USD') = (SELECT count(*) FROM usd WHERE m < 100)
	UNION ALL
	SELECT 'where >=', (SELECT count(*) FROM usd WHERE a >= '-3.00 USD') = (SELECT count(*) FROM usd WHERE m >= -300)
	UNION ALL
	SELECT 'where =', (SELECT count(*) FROM usd WHERE a = pay_amount_from_minor(m, 'USD')) = 200000
	UNION ALL
	SELECT 'empty sum is NULL', sum(a) IS NULL FROM usd WHERE id < 0
	UNION ALL
	SELECT 'empty min/max are NULL', min(a) IS NULL AND max(a) IS NULL FROM usd WHERE id < 0
$$;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM usd;
SELECT sum(a), min(a), max(a) FROM usd;
SELECT * FROM pg_temp.check_usd() ORDER BY what;
\set VERBOSITY terse
SELECT sum(a) FROM near_limit;
\set VERBOSITY sqlstate
SELECT sum(a) FROM mixed_sum;
SELECT min(a) FROM mixed_sum;
\set VERBOSITY default
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM usd;
EXPLAIN (COSTS OFF) SELECT min(a), max(a) FROM usd;
SELECT sum(a), min(a), max(a) FROM usd;
SELECT * FROM pg_temp.check_usd() ORDER BY what;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM near_limit;
\set VERBOSITY terse
SELECT sum(a) FROM near_limit;
\set VERBOSITY sqlstate
SELECT sum(a) FROM mixed_sum;
SELECT max(a) FROM mixed_sum;
\set VERBOSITY default
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;

-- Sorting with abbreviated keys: every currency, spread values, and the
-- edges of the abbreviation (+/- 2^48 minor units) and of int64, in the
-- order (currency code, minor units).
CREATE TABLE sorted AS
SELECT i AS id, pay_amount_from_minor(m, c.codes[1 + i % array_length(c.codes, 1)]) AS a
FROM (SELECT i, (i::bigint * 2654435761) % 4000000001 - 2000000000 AS m
	  FROM generate_series(1, 200000) i) s,
	(SELECT array_agg(code ORDER BY code) AS codes FROM pay_currencies()) c;
INSERT INTO sorted
SELECT 200000 + row_number() OVER (ORDER BY c, v), pay_amount_from_minor(v, c)
FROM unnest(ARRAY[-9223372036854775808, -9223372036854775807, -281474976710658, -281474976710657,
		-281474976710656, -281474976710655, -1, 0, 1, 281474976710654, 281474976710655,
		281474976710656, 281474976710657, 9223372036854775806, 9223372036854775807]::bigint[]) v,
	unnest(ARRAY['AED', 'EUR', 'USD', 'ZWG']) c;
-- 200 000 rows of three amounts: abbreviation gives up (few distinct keys)
CREATE TABLE few AS
SELECT i AS id, (ARRAY['1.00 USD', '-1.00 USD', '1.00 EUR']::pay_amount[])[1 + i % 3] AS a
FROM generate_series(1, 200000) i;
SELECT count(*), count(DISTINCT a), count(DISTINCT pay_currency(a)) AS currencies FROM sorted;
-- whole rows (heap sort), the amount alone (datum sort), descending
SELECT array_agg(id ORDER BY a, id) = array_agg(id ORDER BY pay_currency(a), pay_minor_units(a), id)
	AS heap_sort_in_order,
	array_agg(a ORDER BY a) = array_agg(a ORDER BY pay_currency(a), pay_minor_units(a))
	AS datum_sort_in_order,
	array_agg(a ORDER BY a DESC) = array_agg(a ORDER BY pay_currency(a) DESC, pay_minor_units(a) DESC)
	AS descending_in_order
FROM sorted;
SELECT array_agg(id ORDER BY a, id) = array_agg(id ORDER BY pay_currency(a), pay_minor_units(a), id)
	AS few_in_order
FROM few;
-- a Sort node over the amounts alone, against the expected order
SELECT (SELECT string_agg(a::text, ',') FROM (SELECT a FROM sorted ORDER BY a) s) =
	(SELECT string_agg(a::text, ',') FROM (SELECT a FROM sorted
		ORDER BY pay_currency(a), pay_minor_units(a)) s) AS sort_node_in_order;
SELECT a FROM sorted WHERE pay_currency(a) = 'USD'
	AND pay_minor_units(a) NOT BETWEEN -100000000000 AND 100000000000 ORDER BY a;
-- A merge join sorts both sides with the sort support.
SET max_parallel_workers_per_gather = 0;
SET enable_hashjoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM sorted x JOIN sorted y ON x.a = y.a;
SELECT count(*) AS merge_joined FROM sorted x JOIN sorted y ON x.a = y.a;
RESET enable_nestloop;
RESET enable_hashjoin;
RESET max_parallel_workers_per_gather;
-- An index built with sort support, then scanned, agrees with the sort.
CREATE INDEX sorted_a ON sorted (a);
CREATE INDEX few_a ON few (a);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT a FROM sorted ORDER BY a;
SELECT (SELECT string_agg(a::text, ',') FROM (SELECT a FROM sorted ORDER BY a) s) =
	(SELECT string_agg(a::text, ',' ORDER BY pay_currency(a), pay_minor_units(a)) FROM sorted)
	AS index_scan_in_order;
SELECT (SELECT string_agg(a::text, ',') FROM (SELECT a FROM few ORDER BY a) s) =
	(SELECT string_agg(a::text, ',' ORDER BY pay_currency(a), pay_minor_units(a)) FROM few)
	AS few_index_scan_in_order;
SELECT count(*) AS usd_range, (SELECT count(*) FROM sorted WHERE pay_currency(a) = 'USD'
	AND pay_minor_units(a) BETWEEN -281474976710657 AND 281474976710656) AS expected
FROM sorted WHERE a ~>=~ '-2814749767106.57 USD' AND a ~<=~ '2814749767106.56 USD';
SELECT a, (SELECT count(*) FROM sorted s WHERE s.a = e.a) AS found
FROM (VALUES ('-92233720368547758.08 USD'::pay_amount), ('92233720368547758.07 ZWG'),
	('2814749767106.56 EUR'), ('0 AED')) e(a);
RESET enable_bitmapscan;
RESET enable_seqscan;

DROP TABLE usd, near_limit, mixed_sum, sorted, few;

--
-- Issue 12, second part: sum() keeps a 128-bit running total, so that an
-- overflow is raised for the final sum only, whatever the plan; partial
-- sums in different currencies are an error where they are combined.
--
-- 100 000 rows of +9e18 minor units, then 100 000 of -9e18: a 64-bit
-- running total read in order overflows at the second row, and parallel
-- workers' partial sums are far beyond int64 too.
CREATE TABLE swing AS
SELECT i AS id, pay_amount_from_minor(CASE WHEN i <= 100000 THEN 9000000000000000000
	ELSE -9000000000000000000 END, 'USD') AS a
FROM generate_series(1, 200000) i;
ANALYZE swing;
CREATE FUNCTION pg_temp.swing_sums() RETURNS TABLE (rows_summed text, total text) LANGUAGE plpgsql AS $$
DECLARE
	w text;
BEGIN
	FOREACH w IN ARRAY ARRAY['true', 'id > 1', 'id < 200000', 'id NOT IN (150000, 150001)',
		'id > 99999 AND id <> 100001', 'id BETWEEN 100000 AND 100001']
	LOOP
		rows_summed := w;
		BEGIN
			EXECUTE 'SELECT sum(a)::text FROM swing WHERE ' || w INTO total;
		EXCEPTION WHEN numeric_value_out_of_range THEN
			total := SQLSTATE || ': ' || SQLERRM;
		END;
		RETURN NEXT;
	END LOOP;
END $$;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM swing;
SELECT * FROM pg_temp.swing_sums();
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM swing;
SELECT * FROM pg_temp.swing_sums();
-- A window sum over a frame that goes past the limit and back.
SELECT id, a, sum(a) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS frame
FROM swing WHERE id BETWEEN 99999 AND 100002 ORDER BY id;

-- Partial sums combined: partitionwise aggregation gives every partition
-- its own partial sum (serial, and parallel where the partial states go
-- through Gather serialized), so the combine function always sees one
-- partition's currency meet the other's.  (The error names the two codes
-- in the order the partial states meet, which is up to the parallel
-- workers: the check below lists them in alphabetical order.)
CREATE TABLE by_part (k int, a pay_amount) PARTITION BY LIST (k);
CREATE TABLE by_part_1 PARTITION OF by_part FOR VALUES IN (1);
CREATE TABLE by_part_2 PARTITION OF by_part FOR VALUES IN (2);
INSERT INTO by_part SELECT 1, '0.01 USD' FROM generate_series(1, 20000);
INSERT INTO by_part SELECT 2, '0.01 EUR' FROM generate_series(1, 20000);
ANALYZE by_part;
SET enable_partitionwise_aggregate = on;
CREATE FUNCTION pg_temp.part_sums() RETURNS TABLE (what text, result text) LANGUAGE plpgsql AS $$
DECLARE
	q text;
BEGIN
	FOREACH q IN ARRAY ARRAY['sum(a)', 'min(a)', 'max(a)']
	LOOP
		what := q;
		BEGIN
			EXECUTE 'SELECT ' || q || '::text FROM by_part GROUP BY k > 0' INTO result;
		EXCEPTION WHEN numeric_value_out_of_range OR SQLSTATE '22Y03' THEN
			result := SQLSTATE || ': ' || regexp_replace(SQLERRM, '[A-Z]{3} and [A-Z]{3}$', '') ||
				coalesce((SELECT string_agg(c, ' and ' ORDER BY c)
					FROM regexp_matches(SQLERRM, '([A-Z]{3}) and ([A-Z]{3})$') m, unnest(m) c), '');
		END;
		RETURN NEXT;
	END LOOP;
END $$;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM by_part GROUP BY k > 0;
SELECT * FROM pg_temp.part_sums();
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(a) FROM by_part GROUP BY k > 0;
SELECT * FROM pg_temp.part_sums();
-- one currency: the partial sums add up; then each partition's partial
-- sum fits but their total does not; then it fits again
UPDATE by_part SET a = '0.01 USD' WHERE k = 2;
SELECT * FROM pg_temp.part_sums();
UPDATE by_part SET a = '90000000000000000.00 USD' WHERE ctid = (SELECT min(ctid) FROM by_part_1) AND k = 1;
UPDATE by_part SET a = '90000000000000000.00 USD' WHERE ctid = (SELECT min(ctid) FROM by_part_2) AND k = 2;
SELECT * FROM pg_temp.part_sums();
SET max_parallel_workers_per_gather = 0;
SELECT * FROM pg_temp.part_sums();
UPDATE by_part SET a = -a WHERE k = 2;
SELECT * FROM pg_temp.part_sums();
RESET enable_partitionwise_aggregate;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;
DROP TABLE swing, by_part;

-- Sorting agrees with the comparison operators, and ties of the
-- abbreviated keys are decided by the full comparison: a quarter of the
-- amounts is above 2^48 minor units and a quarter below -2^48 (each quarter
-- shares one abbreviated key per currency), a quarter spread over +/- 2e9
-- and a quarter of duplicates around zero, in three currencies.
CREATE TABLE tied AS
SELECT i AS id, pay_amount_from_minor(CASE i % 4
		WHEN 0 THEN 281474976710656 + i::bigint * 1000003
		WHEN 1 THEN -281474976710657 - i::bigint * 1000003
		WHEN 2 THEN (i::bigint * 2654435761) % 4000000001 - 2000000000
		ELSE i % 1000 - 500 END,
	(ARRAY['EUR', 'JPY', 'USD'])[1 + i % 3]) AS a
FROM generate_series(1, 120000) i;
ANALYZE tied;
SET max_parallel_workers_per_gather = 0;
-- neighbours in the sort (a Sort node under the window) against the
-- operators: the total order ~<=~ and pay_amount_cmp everywhere, and <=
-- (strict, one currency) within a currency
SELECT count(*) AS pairs,
	count(*) FILTER (WHERE NOT prev ~<=~ a) AS against_total_order,
	count(*) FILTER (WHERE pay_amount_cmp(prev, a) > 0) AS against_cmp,
	count(*) FILTER (WHERE pay_currency(prev) = pay_currency(a) AND NOT prev <= a) AS against_le,
	count(*) FILTER (WHERE pay_currency(prev) = pay_currency(a) AND prev = a) AS equal_pairs,
	count(*) FILTER (WHERE pay_currency(prev) <> pay_currency(a)) AS currency_changes,
	count(*) FILTER (WHERE pay_minor_units(a) < 0) AS negative
FROM (SELECT a, lag(a) OVER (ORDER BY a) AS prev FROM tied) s
WHERE prev IS NOT NULL;
-- the whole order against (currency, minor units): a Sort node over the
-- lone column, whole rows, an ordered aggregate (a Datum sort), descending,
-- and a bounded (top-N) sort
SELECT (SELECT string_agg(a::text, ',') FROM (SELECT a FROM tied ORDER BY a) s) =
	(SELECT string_agg(a::text, ',' ORDER BY pay_currency(a), pay_minor_units(a)) FROM tied)
	AS lone_column_in_order,
	(SELECT string_agg(id::text, ',') FROM (SELECT id FROM tied ORDER BY a, id) s) =
	(SELECT string_agg(id::text, ',' ORDER BY pay_currency(a), pay_minor_units(a), id) FROM tied)
	AS rows_in_order,
	(SELECT array_agg(a ORDER BY a DESC) = array_agg(a ORDER BY pay_currency(a) DESC, pay_minor_units(a) DESC)
	 FROM tied) AS descending_in_order,
	(SELECT array_agg(a) FROM (SELECT a FROM tied ORDER BY a LIMIT 100) s) =
	(SELECT array_agg(a) FROM (SELECT a FROM tied ORDER BY pay_currency(a), pay_minor_units(a) LIMIT 100) s)
	AS top_n_in_order;
RESET max_parallel_workers_per_gather;
DROP TABLE tied;
-- Text input errors in full: SQLSTATE, message, detail and hint of each
-- rule of the grammar (src/amount_parse.c; amount_io.c words them).
CREATE FUNCTION pg_temp.try_full(v text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
	PERFORM v::pay_amount;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ' | ' || msg || ' | ' || det || ' | ' || hnt;
END $$;
SELECT v, pg_temp.try_full(v) AS error
FROM (VALUES (' '), ('nan USD'), ('USD inf'), ('-USD -5'), ('USD twelve'), ('12. USD'),
	('. USD'), ('1,000 USD'), ('1''000 USD'), ('1_000 USD'), ('1e3 USD'), ('5 - USD'),
	('12.34'), ('12.34 USD x'), ('12.34 US'), ('12.34 U5D'), ('12.345 USD'), ('1.5 JPY'),
	('92233720368547758.08 USD'), ('1e USD'), ('12EUR')) AS t(v);

-- The limit in the detail of an out-of-range error reaches the client
-- unmasked: written as one run of 19 digits, the log hook masked it as a
-- card number's.
SELECT pay_amount_from_minor((2 ^ 62)::bigint, 'JPY') * 2;
