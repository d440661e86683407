-- Tenancy: a default merchant, who acts for which merchant (and every way
-- to forge it), the merchant_id pattern on every tenant table, row-level
-- security from install, what PUBLIC may execute.  (Through the worker and
-- the simulator: test/integration/tenancy_isolation.sh.)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(78);

SELECT has_table('payments', 'merchants', 'payments.merchants exists');
SELECT results_eq($$SELECT merchant_id, name FROM payments.merchants WHERE is_default$$,
	$$VALUES (1::bigint, 'default'::text)$$, 'a default merchant exists from install');
SELECT throws_ok($$INSERT INTO payments.merchants (name, is_default) VALUES ('second default', true)$$,
	'23514', NULL, 'there is only one default merchant, merchant 1');
SELECT throws_ok($$INSERT INTO payments.merchants (name) VALUES ('')$$,
	'23514', NULL, 'a merchant needs a name');

-- 1. The owner (here a superuser) acts for every merchant.
SELECT is(payments.pay_current_merchant(), 1::bigint, 'the owner, naming no merchant: the default merchant');
INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES (41, 'Acme'), (42, 'Zenith');
SET LOCAL payments.merchant_id = '41';
SELECT is(payments.pay_current_merchant(), 41::bigint, 'the owner chooses with the payments.merchant_id setting');
SET LOCAL request.jwt.claims = '{"sub": "user-7", "merchant_id": "42"}';
SELECT is(payments.pay_current_merchant(), 41::bigint, 'for the owner the setting wins over a claim');
RESET payments.merchant_id;
SELECT is(payments.pay_current_merchant(), 42::bigint, 'without a setting the owner''s claim counts');
RESET request.jwt.claims;
SET LOCAL payments.merchant_id = '99';
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', 'merchant 99 does not exist',
	'a setting naming a merchant that does not exist is refused (403), never a foreign-key error');
SET LOCAL payments.merchant_id = 'abc';
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'a setting that is no merchant id is refused');
RESET payments.merchant_id;
SELECT is((SELECT concat_ws('|', merchant_id, acting_role, source, coalesce(key_id, '-')) FROM payments.pay_current_identity()),
	'1|' || current_user || '|default|-', 'pay_current_identity() says who acts and why');

-- 2. The merchant_id pattern on every tenant-owned table.  Tables that are
-- not tenant-owned are listed here on purpose.
SELECT is_empty($$
	SELECT c.relname FROM pg_class c
	WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
		AND c.relname NOT IN ('installation_secrets', 'status_transitions', 'operation_outcomes', 'role_trust', 'worker_server')
		AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
			AND a.attname = 'merchant_id' AND a.attnotnull AND NOT a.attisdropped)
$$, 'every tenant-owned table has merchant_id NOT NULL');
SELECT is_empty($$
	SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
	WHERE c.relnamespace = 'payments'::regnamespace AND (i.indisunique OR i.indisprimary)
		AND c.relname NOT IN ('installation_secrets', 'status_transitions', 'operation_outcomes', 'role_trust', 'worker_server')
		AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
			AND a.attname = 'merchant_id' AND a.attnum = ANY (i.indkey))
		AND NOT (c.relname = 'merchants' AND i.indexrelid::regclass::text LIKE '%one_default')
$$, 'every primary key and unique index of a tenant table includes merchant_id');

-- 3. Row-level security is on from install, on every tenant-owned table.
SELECT is_empty($$
	SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'merchant_id'
	WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
		AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
			AND p.polname = 'merchant_isolation'
			AND pg_get_expr(p.polqual, p.polrelid) ~ '^\(merchant_id = (payments\.)?pay_current_merchant\(\)\)$'))
$$, 'every tenant-owned table has row-level security and the merchant_isolation policy from install');
SELECT ok('payments.merchants'::regclass IN (SELECT payments.pay_enable_row_security()),
	'pay_enable_row_security() still answers with the tables');
SELECT is((SELECT count(*) FROM pg_policy WHERE polrelid = 'payments.merchants'::regclass), 1::bigint,
	'and adds no second policy');

-- 4. Nothing executable by PUBLIC but the types' own functions.
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	WHERE p.pronamespace = 'payments'::regnamespace AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
		AND NOT ((p.proname ~ '^pay_(amount|card)' AND p.proname NOT IN ('pay_card_fingerprint', 'pay_card_info'))
			OR p.proname IN ('pay_currency', 'pay_minor_units', 'pay_currency_exponent', 'pay_currencies',
				'pay_int8_mul_amount', 'pay_int4_mul_amount', 'pay_numeric_mul_amount', '_type_contains_card',
				-- the storage ban's, the name guard's and the card guard's tests, which the DDL guard's event
				-- trigger runs as whoever makes a table, function, type, operator or cast
				'_stored_card', '_shadowed_object', '_trusted_role', '_card_taker', '_card_generic_types')
			OR (p.prokind = 'a' AND p.proname IN ('sum', 'min', 'max')))
$$, 'PUBLIC executes only the functions of pay_amount and pay_card');
-- _public_function by prefix whatever standard_conforming_strings: with it
-- off, LIKE 'pay\_amount%' read '\_' as '_', a wildcard (before: true)
CREATE FUNCTION pg_temp.payxamount_look_alike() RETURNS integer LANGUAGE sql AS 'SELECT 1';
SET LOCAL standard_conforming_strings = off;
SET LOCAL escape_string_warning = off;
SELECT ok(NOT payments._public_function('pg_temp.payxamount_look_alike()'::regprocedure)
	AND payments._public_function('payments.pay_amount_in(cstring)'::regprocedure),
	'_public_function takes pay_amount by prefix, not by a LIKE pattern, with standard_conforming_strings off');
RESET standard_conforming_strings;
RESET escape_string_warning;
SELECT ok(NOT has_function_privilege('public', 'payments.pay_card_fingerprint(payments.pay_card)', 'EXECUTE'),
	'pay_card_fingerprint is not PUBLIC');
SELECT ok(has_function_privilege('pg_monitor', 'payments.pay_metrics()', 'EXECUTE')
	AND has_function_privilege('pg_monitor', 'payments.pay_worker_health()', 'EXECUTE'),
	'monitoring goes to pg_monitor');

-- Data of two merchants: Acme (41) and Zenith (42).
CREATE FUNCTION pg_temp.card() RETURNS payments.pay_card LANGUAGE sql
	AS $$ SELECT payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123') $$;
SET LOCAL payments.merchant_id = '42';
SELECT payment_id AS zen_pay FROM payments.pay_authorize(amount => '7.00 USD', card => pg_temp.card(),
	idempotency_key => 'zen-1', description => 'Zenith''s') \gset
RESET payments.merchant_id;

-- Roles: Acme's application (bound), a member of a bound group, a role
-- granted the API but bound to nothing, PostgREST's anon and authenticated
-- (declared), an admin acting for every merchant, a plain role with nothing.
CREATE ROLE tap_acme NOLOGIN;
CREATE ROLE tap_group NOLOGIN;
CREATE ROLE tap_member NOLOGIN IN ROLE tap_group;
CREATE ROLE tap_unbound NOLOGIN;
CREATE ROLE tap_anon NOLOGIN;
CREATE ROLE tap_authenticated NOLOGIN;
CREATE ROLE tap_admin NOLOGIN;
CREATE ROLE tap_plain NOLOGIN;
CREATE ROLE tap_login LOGIN;
SELECT ok(payments.pay_bind_role('tap_acme', merchant_id => 41), 'pay_bind_role binds a role to a merchant');
SELECT ok(NOT payments.pay_bind_role('tap_acme', merchant_id => 41), 'binding again changes nothing');
SELECT throws_ok($$SELECT payments.pay_bind_role('tap_acme', merchant_id => 99)$$, 'PT404', NULL,
	'binding to a merchant that does not exist is refused');
SELECT payments.pay_bind_role('tap_group', merchant_id => 42);
SELECT payments.pay_grant_api('tap_unbound');
SELECT payments.pay_declare_postgrest_role('tap_anon'), payments.pay_declare_postgrest_role('tap_authenticated');
SELECT throws_ok($$SELECT payments.pay_declare_postgrest_role('tap_login')$$, '22023', NULL,
	'a role that can log in cannot be declared PostgREST-only (it could set its own claims)');
SELECT payments.pay_grant_all_merchants('tap_admin');
-- Acme's role may read the tables directly too: row-level security decides
GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA payments TO tap_acme;

-- 5. Acme's bound role, directly in SQL.
SET LOCAL ROLE tap_acme;
SELECT is(payments.pay_current_merchant(), 41::bigint, 'a bound role acts for its merchant');
SELECT lives_ok($$CREATE TEMP TABLE acme_pay AS SELECT * FROM payments.pay_authorize(amount => '5.00 USD',
	card => pg_temp.card(), idempotency_key => 'zen-1')$$, 'it takes payments (same idempotency key as Zenith: keys are per merchant)');
SELECT is((SELECT merchant_id FROM acme_pay), 41::bigint, 'for its merchant');
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :zen_pay), 'PT404', NULL,
	'pay_get_payment of another merchant''s payment: PT404, as if unknown');
SELECT throws_ok($$SELECT payments.pay_get_payment(-5)$$, 'PT404', 'payment -5 not found', 'pay_get_payment of an unknown id: PT404');
SELECT throws_ok(format('SELECT payments.pay_payment_operations(%s)', :zen_pay), 'PT404', NULL, 'pay_payment_operations: PT404');
SELECT throws_ok(format('SELECT payments.pay_wait(%s, ''0 seconds'')', :zen_pay), 'PT404', NULL, 'pay_wait: PT404');
SELECT throws_ok(format('SELECT payments.pay_capture(%s)', :zen_pay), 'PT404', NULL, 'pay_capture: PT404');
SELECT throws_ok(format('SELECT payments.pay_void(%s)', :zen_pay), 'PT404', NULL, 'pay_void: PT404');
SELECT throws_ok(format('SELECT payments.pay_refund(%s)', :zen_pay), 'PT404', NULL, 'pay_refund: PT404');
-- every table, read and changed directly: row-level security leaves only Acme's rows
CREATE FUNCTION pg_temp.foreign_rows() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE t regclass; n bigint;
BEGIN
	FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'merchant_id'
		WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1
	LOOP
		EXECUTE format('SELECT count(*) FROM %s WHERE merchant_id <> 41', t) INTO n;
		IF n > 0 THEN RETURN NEXT t::text || ' read ' || n; END IF;
		EXECUTE format('WITH u AS (UPDATE %s SET merchant_id = merchant_id WHERE merchant_id <> 41 RETURNING 1) SELECT count(*) FROM u', t) INTO n;
		IF n > 0 THEN RETURN NEXT t::text || ' updated ' || n; END IF;
	END LOOP;
END $$;
SELECT is_empty($$SELECT * FROM pg_temp.foreign_rows()$$, 'no tenant table shows or changes another merchant''s row');
SELECT ok((SELECT count(*) FROM payments.payments) = 1 AND (SELECT count(*) FROM payments.operations) = 1,
	'while its own payment and operation are there');
-- forging: the setting, a claim
SET LOCAL payments.merchant_id = '42';
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', 'role "tap_acme" may not act for merchant 42',
	'SET payments.merchant_id as a bound role: refused');
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :zen_pay), '42501', NULL, 'and pay_get_payment with it too');
SELECT throws_ok($$SELECT count(*) FROM payments.payments$$, '42501', NULL, 'and direct reads too');
RESET payments.merchant_id;
SET LOCAL request.jwt.claims = '{"merchant_id": "42"}';
SELECT throws_ok(format('SELECT payments.pay_void(%s)', :zen_pay), '42501', NULL,
	'SET request.jwt.claims as a role not declared PostgREST-only: refused');
SET LOCAL request.jwt.claims = '{"sub": "alice-admin"}';
SELECT is((SELECT concat_ws('|', merchant_id, source, coalesce(jwt_subject, '-')) FROM payments.pay_current_identity()),
	'41|binding|-', 'nor does such a role get the JWT subject it names (audit_log.app_user)');
RESET request.jwt.claims;
RESET ROLE;

-- 6. Membership: a member of a bound group acts for the group's merchant;
-- bound twice, it must say which.
SET LOCAL ROLE tap_member;
SELECT is(payments.pay_current_merchant(), 42::bigint, 'a member of a bound group role acts for its merchant');
RESET ROLE;
GRANT tap_acme TO tap_member;
SET LOCAL ROLE tap_member;
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', 'role "tap_member" is bound to several merchants',
	'a member of two bindings, naming none: refused');
SET LOCAL payments.merchant_id = '41';
SELECT is(payments.pay_current_merchant(), 41::bigint, 'naming one of its merchants, it acts for that one');
SET LOCAL payments.merchant_id = '1';
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'naming another one: refused');
RESET payments.merchant_id;
RESET ROLE;

-- 7. A role with the API but no binding.
SET LOCAL ROLE tap_unbound;
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', 'no merchant identity for role "tap_unbound"',
	'a role bound to nothing acts for no merchant (no default)');
SELECT throws_ok($$SELECT payments.pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$, '42501', NULL,
	'and cannot take a payment');
SET LOCAL payments.merchant_id = '42';
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :zen_pay), '42501', NULL, 'SET payments.merchant_id as an unbound role: refused');
SELECT throws_ok(format('SELECT payments.pay_capture(%s)', :zen_pay), '42501', NULL, 'capture with it: refused');
RESET payments.merchant_id;
SET LOCAL request.jwt.claims = '{"merchant_id": 42}';
SELECT throws_ok(format('SELECT payments.pay_refund(%s)', :zen_pay), '42501', NULL, 'a claim for an undeclared role: refused');
RESET request.jwt.claims;
RESET ROLE;

-- 8. PostgREST roles: the claim decides; nothing without one.
SET LOCAL ROLE tap_anon;
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', 'no merchant identity for role "tap_anon"',
	'anon without a JWT: refused (PostgREST: 401), never the default merchant');
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :zen_pay), '42501', NULL, 'not even a read');
SET LOCAL request.jwt.claims = '{"role": "tap_anon", "sub": "u-9"}';
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'a JWT without merchant_id: refused');
RESET ROLE;
SET LOCAL ROLE tap_authenticated;
SET LOCAL request.jwt.claims = '{"merchant_id": "99"}';
SELECT throws_ok($$SELECT payments.pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$, '42501', 'merchant 99 does not exist',
	'a claim naming a merchant that does not exist: 403, not a foreign-key error');
SET LOCAL request.jwt.claims = '{"merchant_id": "42", "sub": "zen-user"}';
SELECT is((SELECT payment_id FROM payments.pay_get_payment(:zen_pay)), :zen_pay::bigint,
	'a declared PostgREST role with a claim acts for the claimed merchant');
SELECT is((SELECT concat_ws('|', merchant_id, acting_role, source, jwt_subject) FROM payments.pay_current_identity()),
	'42|tap_authenticated|jwt|zen-user', 'and its identity says so');
SET LOCAL payments.merchant_id = '41';
SELECT is(payments.pay_current_merchant(), 42::bigint, 'a setting does not override its claim');
RESET payments.merchant_id;
RESET request.jwt.claims;
RESET ROLE;

-- 9. An admin acting for every merchant must name one.
SET LOCAL ROLE tap_admin;
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'an all-merchants role naming none: refused');
SET LOCAL payments.merchant_id = '42';
SELECT is((SELECT payment_id FROM payments.pay_get_payment(:zen_pay)), :zen_pay::bigint, 'naming one: acts for it');
RESET payments.merchant_id;
RESET ROLE;

-- 10. A role with nothing: no API, no fingerprint oracle, no monitoring.
SET LOCAL ROLE tap_plain;
SELECT throws_ok($$SELECT payments.pay_card_fingerprint(payments.pay_card('4111 1111 1111 1111', 12, 2040))$$, '42501', NULL,
	'PUBLIC cannot execute pay_card_fingerprint');
SELECT throws_ok($$SELECT payments.pay_card_info(payments.pay_card('4111 1111 1111 1111', 12, 2040))$$, '42501', NULL,
	'nor pay_card_info, which holds the fingerprint');
SELECT is(payments.pay_card_last4(payments.pay_card('4111 1111 1111 1111', 12, 2040)), '1111', 'the card type itself is for everyone');
SELECT is(payments.pay_amount('1.50', 'USD') + '1.00 USD', '2.50 USD'::payments.pay_amount, 'and so is the amount type');
SELECT throws_ok($$SELECT payments.pay_metrics()$$, '42501', NULL, 'pay_metrics is not for a plain role');
SELECT throws_ok($$SELECT * FROM payments.pay_worker_health()$$, '42501', NULL, 'nor pay_worker_health');
SELECT throws_ok($$SELECT payments.pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$, '42501', NULL, 'nor the API');
SET LOCAL payments.merchant_id = '42';
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :zen_pay), '42501', NULL, 'not even with the setting');
RESET payments.merchant_id;
RESET ROLE;
GRANT pg_monitor TO tap_plain;
SET LOCAL ROLE tap_plain;
SELECT lives_ok($$SELECT payments.pay_metrics()$$, 'a member of pg_monitor reads the metrics');
RESET ROLE;

-- 11. Zenith's data is untouched by all of the above.
SELECT results_eq(format($$SELECT status, description FROM payments.payments WHERE merchant_id = 42 AND payment_id = %s$$, :zen_pay),
	$$VALUES ('pending'::text, 'Zenith''s'::text)$$, 'Zenith''s payment is unchanged');
SELECT results_eq($$SELECT kind, count(*) FROM payments.operations WHERE merchant_id = 42 GROUP BY kind$$,
	$$VALUES ('authorize'::text, 1::bigint)$$, 'Zenith has only its authorization: no capture, void or refund was queued');

-- 12. A single-merchant install: one call, and the application works.
CREATE ROLE tap_single NOLOGIN;
SELECT payments.pay_bind_role('tap_single');
SET LOCAL ROLE tap_single;
SELECT is((SELECT merchant_id FROM payments.pay_purchase(amount => '2.00 USD', card => pg_temp.card())), 1::bigint,
	'after pay_bind_role(''app''), the application takes payments for the default merchant');
RESET ROLE;

-- 13. Roles forgotten, pay_wait bounded.
SELECT payments.pay_forget_role('tap_acme');
SET LOCAL ROLE tap_acme;
SELECT throws_ok($$SELECT payments.pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$, '42501', NULL,
	'pay_forget_role takes the binding and the API away');
RESET ROLE;
SELECT throws_ok(format('SELECT payments.pay_wait(%s, ''31 seconds'')', (SELECT min(payment_id) FROM payments.payments)),
	'22023', NULL, 'pay_wait refuses a timeout above payments.max_wait (30 s)');
SELECT is(current_setting('payments.max_wait'), '30s', 'payments.max_wait is 30 s by default');
SELECT ok((SELECT context = 'superuser' FROM pg_settings WHERE name = 'payments.max_wait'), 'and only a superuser changes it');

-- The caller's temporary schema is never searched first inside the
-- extension's functions (pg_temp last in their search_path): a temporary
-- domain named text, its CHECK a function of the caller's, once ran as the
-- owner inside every SECURITY DEFINER function that declared a text.
SELECT is_empty($$SELECT p.oid::regprocedure::text FROM pg_proc p
	WHERE p.pronamespace = 'payments'::regnamespace AND p.prosecdef
		AND NOT coalesce((SELECT bool_or(c LIKE 'search\_path=%, pg\_temp') FROM unnest(p.proconfig) c), false)$$,
	'every SECURITY DEFINER function of the extension searches pg_temp last');
CREATE ROLE tap_monitor NOLOGIN IN ROLE pg_monitor;
CREATE TEMP TABLE temp_path_seen (who text);
GRANT INSERT ON temp_path_seen TO tap_monitor;
SET LOCAL ROLE tap_monitor;
CREATE FUNCTION pg_temp.temp_path_probe(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE sql
	AS $$ INSERT INTO pg_temp.temp_path_seen VALUES (current_user) RETURNING true $$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.temp_path_probe(VALUE));
SELECT 'armed'::text;
SELECT payments.pay_postgrest_pre_request();
RESET ROLE;
DROP DOMAIN pg_temp.text;
SELECT is((SELECT count(*) FROM temp_path_seen WHERE who = 'tap_monitor'), 1::bigint,
	'a temporary domain named text is taken for text where pg_temp comes first (the trap works)');
SELECT is((SELECT count(*) FROM temp_path_seen WHERE who <> 'tap_monitor'), 0::bigint,
	'pay_postgrest_pre_request (granted to pg_monitor) never runs the caller''s temporary domain as its owner');

SELECT * FROM finish();
ROLLBACK;
