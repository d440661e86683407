-- Payment search (pay_list_payments): filters, keyset pagination that visits
-- every row once, merchant isolation, bounds, and the plans: on enough rows
-- every filter is served by an index, without a sort of the merchant's rows.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(34);

-- Two merchants with 4,000 payments each (written directly, as the owner):
-- three payments a minute, every status, USD and EUR, order references on
-- half of them, customer e-mails on a tenth.
INSERT INTO payments.merchants (name) VALUES ('search-a'), ('search-b');
CREATE TEMP TABLE m AS SELECT
	(SELECT max(merchant_id) FROM payments.merchants WHERE name = 'search-a') AS a,
	(SELECT max(merchant_id) FROM payments.merchants WHERE name = 'search-b') AS b;
INSERT INTO payments.payments (merchant_id, kind, status, amount, amount_refunded, payment_method,
	invoice_number, order_ref, customer, correlation_id, created_at)
SELECT v.merchant, 'purchase',
	(ARRAY['pending', 'requires_capture', 'succeeded', 'failed', 'canceled', 'refunded',
		'partially_refunded', 'in_review', 'unknown'])[1 + i % 9],
	pay_amount_from_minor(100 + i, CASE WHEN i % 7 = 0 THEN 'EUR' ELSE 'USD' END),
	pay_amount_from_minor(0, CASE WHEN i % 7 = 0 THEN 'EUR' ELSE 'USD' END),
	'card', 'S' || v.merchant || '-' || i, CASE WHEN i % 2 = 0 THEN 'ord-' || (i % 500) END,
	CASE WHEN i % 10 = 0 THEN jsonb_build_object('email',
		CASE WHEN i % 20 = 0 THEN 'Ada@Example.com' ELSE 'u' || (i % 300) || '@example.com' END)
		ELSE '{}' END,
	'search-test', timestamptz '2026-01-01 00:00+00' + (i / 3) * interval '1 minute'
FROM generate_series(1, 4000) i, (SELECT a FROM m UNION ALL SELECT b FROM m) v(merchant);
ANALYZE payments.payments;
DO $$ BEGIN PERFORM set_config('payments.merchant_id', (SELECT a::text FROM m), true); END $$;

-- ids of a search, in the order given
CREATE FUNCTION pg_temp.ids(q text) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE r bigint[];
BEGIN
	EXECUTE 'SELECT array_agg(payment_id) FROM (' || q || ') x' INTO r;
	RETURN r;
END $$;
-- the same, expected: merchant A's payments matching COND, newest first
CREATE FUNCTION pg_temp.expected(cond text, lim integer DEFAULT 50) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE r bigint[];
BEGIN
	EXECUTE format('SELECT array_agg(payment_id) FROM (SELECT payment_id FROM payments.payments p
		WHERE merchant_id = (SELECT a FROM m) AND (%s) ORDER BY created_at DESC, payment_id DESC LIMIT %s) x', cond, lim)
	INTO r;
	RETURN r;
END $$;
-- every page of a search (ARGS: its named arguments) with page_size N
CREATE FUNCTION pg_temp.all_pages(args text, n integer) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
	got bigint[] := '{}';
	page bigint[];
	last bigint;
	pages integer := 0;
BEGIN
	LOOP
		EXECUTE format('SELECT array_agg(payment_id) FROM pay_list_payments(%s page_size => %s, after => %s)',
			args, n, coalesce(last::text, 'NULL')) INTO page;
		EXIT WHEN page IS NULL;
		pages := pages + 1;
		got := got || page;
		last := page[array_upper(page, 1)];
		EXIT WHEN pages > 1000;
	END LOOP;
	RETURN got;
END $$;
-- the plan of the query pay_list_payments runs for these filters and values
-- (the same text, through PREPARE: a custom plan, as EXECUTE ... USING makes)
CREATE FUNCTION pg_temp.plan(has boolean[], vals text[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	l text;
	r text := '';
BEGIN
	EXECUTE format('PREPARE s(bigint, timestamptz, bigint, text, timestamptz, timestamptz, text, text, text, bigint, bigint, integer) AS %s',
		payments._list_payments_query(has[1], has[2], has[3], has[4], has[5], has[6], has[7], has[8]));
	FOR l IN EXECUTE format('EXPLAIN EXECUTE s(%s)', (SELECT string_agg(coalesce(quote_literal(v), 'NULL'), ',') FROM unnest(vals) v)) LOOP
		r := r || l || E'\n';
	END LOOP;
	DEALLOCATE s;
	RETURN r;
END $$;
CREATE TEMP TABLE plans AS SELECT * FROM (VALUES
	('list', pg_temp.plan('{f,f,f,f,f,f,f,f}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '50'])),
	('cursor', pg_temp.plan('{t,f,f,f,f,f,f,f}', ARRAY[(SELECT a::text FROM m), '2026-01-01 10:00+00', '3000', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '50'])),
	('status', pg_temp.plan('{t,t,f,f,f,f,f,f}', ARRAY[(SELECT a::text FROM m), '2026-01-01 10:00+00', '3000', 'failed', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '50'])),
	('dates', pg_temp.plan('{f,f,t,t,f,f,f,f}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, '2026-01-01 05:00+00', '2026-01-01 06:00+00', NULL, NULL, NULL, NULL, NULL, '50'])),
	('order_ref', pg_temp.plan('{f,f,f,f,t,f,f,f}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, NULL, NULL, 'ord-42', NULL, NULL, NULL, NULL, '50'])),
	('email', pg_temp.plan('{f,f,f,f,f,t,f,f}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, NULL, NULL, NULL, 'ada@example.com', NULL, NULL, NULL, '50'])),
	('amount', pg_temp.plan('{f,f,f,f,f,f,t,t}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'USD', '1000', '1010', '50'])),
	('amount_wide', pg_temp.plan('{f,f,f,f,f,f,t,f}', ARRAY[(SELECT a::text FROM m), NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'USD', '1000', NULL, '50']))
) v(name, plan);

-- 1. results
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments()'), pg_temp.expected('true'),
	'without filters: the merchant''s newest 50, newest first (created_at, then payment_id)');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(status => ''failed'', page_size => 500)'),
	pg_temp.expected('status = ''failed''', 500), 'status filters');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(created_from => ''2026-01-01 05:00+00'', created_to => ''2026-01-01 06:00+00'', page_size => 500)'),
	pg_temp.expected('created_at >= ''2026-01-01 05:00+00'' AND created_at < ''2026-01-01 06:00+00''', 500),
	'created_from (inclusive) and created_to (exclusive) filter');
SELECT is(array_length(pg_temp.ids('SELECT * FROM pay_list_payments(created_from => ''2026-01-01 05:00+00'', created_to => ''2026-01-01 06:00+00'', page_size => 500)'), 1),
	180, 'an hour holds 180 payments');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(order_ref => ''ord-42'')'),
	pg_temp.expected('order_ref = ''ord-42'''), 'order_ref filters');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(customer_email => ''ADA@example.COM'', page_size => 500)'),
	pg_temp.expected('customer ->> ''email'' = ''Ada@Example.com''', 500), 'customer_email filters, whatever the case');
SELECT is(array_length(pg_temp.ids('SELECT * FROM pay_list_payments(customer_email => ''ada@example.com'', page_size => 500)'), 1),
	200, 'every one of the 200 payments with that e-mail');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(amount_min => ''10.00 USD'', amount_max => ''10.10 USD'')'),
	pg_temp.expected('pay_currency(amount) = ''USD'' AND pay_minor_units(amount) BETWEEN 1000 AND 1010'),
	'amount_min and amount_max filter, inclusive, in their currency only');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(amount_min => ''40.00 EUR'', page_size => 500)'),
	pg_temp.expected('pay_currency(amount) = ''EUR'' AND pay_minor_units(amount) >= 4000', 500),
	'amount_min alone filters (EUR payments only)');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(status => ''succeeded'', order_ref => ''ord-20'', created_from => ''2026-01-01 00:00+00'')'),
	pg_temp.expected('status = ''succeeded'' AND order_ref = ''ord-20'''), 'filters combine');
SELECT is(pg_temp.ids('SELECT * FROM pay_list_payments(order_ref => ''no-such-order'')'), NULL::bigint[],
	'no match is an empty result');

-- 2. keyset pagination
SELECT is(pg_temp.all_pages('', 97), pg_temp.expected('true', 100000),
	'pages of 97 visit every one of the 4,000 payments once, newest first (ties on created_at broken by payment_id)');
SELECT is(pg_temp.all_pages('status => ''refunded'',', 20), pg_temp.expected('status = ''refunded''', 100000),
	'pages of a filtered search visit every match once');
SELECT is(pg_temp.all_pages('', 500), pg_temp.expected('true', 100000), 'so do pages of 500');
SELECT is((SELECT count(*) FROM pay_list_payments(page_size => 500, after => (SELECT min(payment_id) FROM payments.payments WHERE merchant_id = (SELECT a FROM m))))::int,
	0, 'after the oldest payment there is nothing');

-- 3. merchant isolation
SELECT is((SELECT count(*) FROM unnest(pg_temp.all_pages('', 500)) id
	JOIN payments.payments p ON p.payment_id = id WHERE p.merchant_id <> (SELECT a FROM m))::int,
	0, 'no payment of another merchant appears in any page');
SELECT throws_ok(format('SELECT * FROM pay_list_payments(after => %s)',
		(SELECT max(payment_id) FROM payments.payments WHERE merchant_id = (SELECT b FROM m))),
	'22023', NULL, 'another merchant''s payment is no cursor (22023)');
DO $$ BEGIN PERFORM set_config('payments.merchant_id', (SELECT b::text FROM m), true); END $$;
SELECT is((SELECT count(*) FROM pay_list_payments(customer_email => 'ada@example.com', page_size => 500)
	WHERE merchant_id <> (SELECT b FROM m))::int, 0, 'the other merchant sees only its own');
SELECT is((SELECT count(*) FROM pay_list_payments(customer_email => 'ada@example.com', page_size => 500))::int,
	200, 'all of its own');
DO $$ BEGIN PERFORM set_config('payments.merchant_id', (SELECT a::text FROM m), true); END $$;

-- 4. bounds and bad arguments
SELECT throws_ok($$SELECT * FROM pay_list_payments(page_size => 501)$$, '22023',
	'page_size must be between 1 and 500', 'a page_size over 500 is refused (22023)');
SELECT throws_ok($$SELECT * FROM pay_list_payments(page_size => 0)$$, '22023', NULL, 'a page_size of 0 is refused');
SELECT throws_ok($$SELECT * FROM pay_list_payments(status => 'paid')$$, '22023', 'unknown payment status',
	'an unknown status is refused, not an empty result');
SELECT throws_ok($$SELECT * FROM pay_list_payments(created_from => now(), created_to => now() - interval '1 day')$$,
	'22023', NULL, 'created_from after created_to is refused');
SELECT throws_ok($$SELECT * FROM pay_list_payments(amount_min => '1.00 USD', amount_max => '5.00 EUR')$$,
	'22Y03', NULL, 'amount_min and amount_max in different currencies are refused (22Y03)');

-- 5. plans: an index for every filter, no sort of the merchant's rows
SELECT matches((SELECT plan FROM plans WHERE name = 'list'), 'Index Scan Backward using payments_created',
	'the listing reads payments_created backwards');
SELECT matches((SELECT plan FROM plans WHERE name = 'cursor'),
	'Index Scan Backward using payments_created.*\n.*Index Cond: .*ROW\(created_at, payment_id\) <',
	'the cursor is an index condition (keyset, no OFFSET)');
SELECT matches((SELECT plan FROM plans WHERE name = 'status'),
	'Index Scan Backward using payments_status.*\n.*Index Cond: .*status = .*ROW\(created_at, payment_id\) <',
	'status and cursor are conditions of payments_status');
SELECT matches((SELECT plan FROM plans WHERE name = 'dates'),
	'Index Scan Backward using payments_created.*\n.*Index Cond: .*created_at >=.*created_at <',
	'a date range is a condition of payments_created');
SELECT matches((SELECT plan FROM plans WHERE name = 'order_ref'), 'payments_order_ref',
	'order_ref uses payments_order_ref');
SELECT matches((SELECT plan FROM plans WHERE name = 'email'), 'Index Scan Backward using payments_customer_email',
	'customer_email reads payments_customer_email backwards (already in order)');
SELECT matches((SELECT plan FROM plans WHERE name = 'amount'), 'payments_amount',
	'a narrow amount range uses payments_amount');
SELECT matches((SELECT plan FROM plans WHERE name = 'amount_wide'), 'Index Scan Backward using payments_created',
	'a wide amount range reads newest first and stops at the page');
SELECT is((SELECT string_agg(name, ',' ORDER BY name) FROM plans WHERE plan ~ 'Seq Scan'), NULL,
	'no search reads the table sequentially');
SELECT is((SELECT string_agg(name, ',' ORDER BY name) FROM plans
	WHERE plan ~ 'Sort' AND name NOT IN ('order_ref', 'amount')), NULL,
	'no search sorts; order_ref and a narrow amount range sort only their matches (index bitmap first)');

SELECT * FROM finish();
ROLLBACK;
