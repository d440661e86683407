-- Tenancy: a default merchant, the current-merchant rule,
-- the merchant_id pattern on every tenant table, row-level security.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(16);

SELECT has_table('payments', 'merchants', 'payments.merchants exists');
SELECT results_eq($$SELECT merchant_id, name FROM payments.merchants WHERE is_default$$,
	$$VALUES (1::bigint, 'default'::text)$$, 'a default merchant exists from install');
SELECT throws_ok($$INSERT INTO payments.merchants (name, is_default) VALUES ('second default', true)$$,
	'23514', NULL, 'there is only one default merchant, merchant 1');
SELECT throws_ok($$INSERT INTO payments.merchants (name) VALUES ('')$$,
	'23514', NULL, 'a merchant needs a name');

-- Which merchant a request acts for.
SELECT is(payments.pay_current_merchant(), 1::bigint, 'no claim and no setting: the default merchant');
INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES (41, 'Acme'), (42, 'Zenith');
SET LOCAL payments.merchant_id = '41';
SELECT is(payments.pay_current_merchant(), 41::bigint, 'the payments.merchant_id setting names the merchant');
SET LOCAL request.jwt.claims = '{"sub": "user-7", "merchant_id": "42"}';
SELECT is(payments.pay_current_merchant(), 42::bigint, 'a JWT claim (PostgREST) wins over the setting');
SET LOCAL request.jwt.claims = '';
SELECT is(payments.pay_current_merchant(), 41::bigint, 'an empty claim falls back to the setting');
RESET payments.merchant_id;
RESET request.jwt.claims;

-- The pattern every tenant-owned table follows: merchant_id NOT NULL, and
-- every primary key and unique index includes it.  Tables that are not
-- tenant-owned are listed here on purpose.
SELECT is_empty($$
	SELECT c.relname FROM pg_class c
	WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
		AND c.relname NOT IN ('installation_secrets', 'status_transitions', 'operation_outcomes')
		AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
			AND a.attname = 'merchant_id' AND a.attnotnull AND NOT a.attisdropped)
$$, 'every tenant-owned table has merchant_id NOT NULL');
SELECT is_empty($$
	SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
	WHERE c.relnamespace = 'payments'::regnamespace AND (i.indisunique OR i.indisprimary)
		AND c.relname NOT IN ('installation_secrets', 'status_transitions', 'operation_outcomes')
		AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
			AND a.attname = 'merchant_id' AND a.attnum = ANY (i.indkey))
		AND NOT (c.relname = 'merchants' AND i.indexrelid::regclass::text LIKE '%one_default')
$$, 'every primary key and unique index of a tenant table includes merchant_id');

-- Row-level security: a role sees only the merchant it acts for.
SELECT ok('payments.merchants'::regclass IN (SELECT payments.pay_enable_row_security()),
	'pay_enable_row_security() covers the merchants table');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'payments.merchants'::regclass),
	'row-level security is enabled');
SELECT lives_ok($$SELECT payments.pay_enable_row_security()$$, 'enabling twice is harmless');
CREATE ROLE tap_api_role NOLOGIN;
GRANT USAGE ON SCHEMA payments TO tap_api_role;
GRANT SELECT ON payments.merchants TO tap_api_role;
SET LOCAL ROLE tap_api_role;
SET LOCAL payments.merchant_id = '42';
SELECT results_eq($$SELECT name FROM payments.merchants$$, $$VALUES ('Zenith'::text)$$,
	'an API role sees only its own merchant');
SET LOCAL request.jwt.claims = '{"merchant_id": 41}';
SELECT results_eq($$SELECT name FROM payments.merchants$$, $$VALUES ('Acme'::text)$$,
	'the JWT claim decides under PostgREST');
RESET ROLE;
SELECT is((SELECT count(*) FROM payments.merchants), 3::bigint, 'the owner still sees every merchant');

SELECT * FROM finish();
ROLLBACK;
