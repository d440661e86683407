-- Audit (issue 4, "Audit and events"): the audit trigger, masking, who and
-- for whom, attach/detach, append-only guard, seals, verification, prune.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SET LOCAL TimeZone = 'UTC';
SELECT plan(100);

SELECT has_table('payments', 'audit_log', 'payments.audit_log exists');
SELECT has_table('payments', 'audit_seals', 'payments.audit_seals exists');
SELECT set_eq($$SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
	WHERE t.tgname = 'payments_audit' AND c.relnamespace = 'payments'::regnamespace$$,
	ARRAY['api_key_revocations', 'api_keys', 'billing_clocks', 'customers', 'dunning_policies', 'gateway_config', 'idempotency_keys', 'invoice_items', 'invoices', 'merchants', 'operations', 'payment_methods', 'payments', 'plans', 'subscriptions'],
	'the extension''s tenant tables are audited, card_vault, secrets and logs are not');
SELECT is_empty($$SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'payments'::regnamespace
	AND p.proname LIKE '\_audit%' AND has_function_privilege('public', p.oid, 'EXECUTE')$$,
	'PUBLIC cannot execute the internal audit functions');
SELECT ok(NOT has_table_privilege('public', 'payments.audit_log', 'SELECT'), 'PUBLIC cannot read the audit log');
SELECT set_eq($$SELECT c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND a.attstattarget = 0$$,
	ARRAY['audit_log.old_row', 'audit_log.new_row', 'audit_log.row_hash', 'events.data',
		'gateway_exchanges.request_masked', 'gateway_exchanges.response_masked', 'card_vault.sealed'],
	'no statistics are gathered of the sealed cards, nor of the large values no query filters on whole: row images, hashes, event data, masked messages');

-- A user's table.
CREATE TABLE public.tap_orders (
	order_id int PRIMARY KEY,
	merchant_id bigint NOT NULL,
	total payments.pay_amount,
	note text,
	card_number text,
	api_secret text,
	internal_ref text,
	blob bytea,
	placed_at timestamptz DEFAULT '2024-01-02 03:04:05+00'
);
SELECT ok(payments.pay_audit_attach(table_name => 'tap_orders'), 'attach returns true the first time');
SELECT ok(NOT payments.pay_audit_attach(table_name => 'tap_orders'), 'attaching again changes nothing');
SELECT ok(payments.pay_audit_attach(table_name => 'tap_orders', masked_columns => ARRAY['internal_ref']),
	'attaching with other masked columns replaces the trigger');
SELECT ok(NOT payments.pay_audit_attach('tap_orders', ARRAY['internal_ref']), 'and is idempotent too');
-- a name that is no column of the table: refused, the trigger left as it
-- was (before: taken, and kept in pg_trigger, a card number too)
SELECT throws_ok($$SELECT payments.pay_audit_attach('tap_orders', ARRAY['internal_ref', 'card 4111 1111 1111 1111'])$$,
	'42703', 'masked column 2 is not a column of table tap_orders',
	'a masked column that is not a column of the table is refused, by its position, unquoted');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tap_orders'::regclass AND tgname = 'payments_audit'
		AND position('\x34313131'::bytea IN tgargs) = 0 AND position('internal_ref'::bytea IN tgargs) > 0),
	1::bigint, 'and the trigger keeps its masked columns: no argument holds the card number');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tap_orders'::regclass AND tgname LIKE 'payments_audit%'),
	2::bigint, 'one row trigger and one TRUNCATE trigger');
SELECT throws_ok($$SELECT payments.pay_audit_attach('payments.card_vault')$$, '42501', NULL,
	'the card vault cannot be audited');
SELECT throws_ok($$SELECT payments.pay_audit_attach('payments.installation_secrets')$$, '42501', NULL,
	'the installation secrets cannot be audited');
-- Triggers that merely bear the audit triggers' names are not taken for
-- them: a role with the TRIGGER privilege made its own first (before:
-- attach returned false, "already attached", and nothing was audited);
-- one the owner disabled is enabled again.
CREATE TABLE public.tap_lookalike (id int PRIMARY KEY, merchant_id bigint NOT NULL);
CREATE FUNCTION public.tap_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE ROLE tap_audit_trigger_only NOLOGIN;
GRANT USAGE ON SCHEMA payments TO tap_audit_trigger_only;
GRANT TRIGGER ON public.tap_lookalike TO tap_audit_trigger_only;
SET LOCAL ROLE tap_audit_trigger_only;
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON public.tap_lookalike
	FOR EACH ROW EXECUTE FUNCTION public.tap_noop();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON public.tap_lookalike
	FOR EACH STATEMENT EXECUTE FUNCTION public.tap_noop();
RESET ROLE;
SELECT ok(payments.pay_audit_attach('tap_lookalike'), 'triggers of a TRIGGER-privileged role named like the audit triggers are replaced');
INSERT INTO tap_lookalike VALUES (1, 3);
ALTER TABLE tap_lookalike DISABLE TRIGGER payments_audit;
SELECT ok(payments.pay_audit_attach('tap_lookalike'), 'a disabled audit trigger is made again');
INSERT INTO tap_lookalike VALUES (2, 3);
SELECT results_eq($$SELECT (new_row ->> 'id')::int FROM payments.audit_log WHERE table_name = 'tap_lookalike' ORDER BY audit_id$$,
	ARRAY[1, 2], 'and the table''s rows are audited');

INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES (5, 'Five'), (7, 'Seven');
SET LOCAL request.jwt.claims = '{"sub": "user-42", "merchant_id": "7"}';
SET LOCAL request.headers = '{"x-request-id": "req-abc"}';
INSERT INTO tap_orders (order_id, merchant_id, total, note, card_number, api_secret, internal_ref, blob)
	VALUES (1, 3, '12.34 USD', 'hello', '4111111111111111', 's3cr3t', 'ref-9', '\x010203');
SELECT results_eq($$SELECT operation, merchant_id, old_row IS NULL, app_user, correlation_id, db_role::name = current_user, session_role::name = session_user,
		txid = pg_current_xact_id(), logged_at <= statement_timestamp()
	FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id$$,
	$$VALUES ('INSERT'::text, 3::bigint, true, NULL::text, 'req-abc'::text, true, true, true, true)$$,
	'INSERT: merchant from the row (a superuser acts for every merchant), request id, roles and transaction id; no JWT subject from claims a role that is not a declared PostgREST role set');
SELECT is((SELECT new_row FROM payments.audit_log WHERE table_name = 'tap_orders'),
	'{"order_id": 1, "merchant_id": 3, "total": "12.34 USD", "note": "hello", "blob": {"bytes": 3}, "placed_at": "2024-01-02T03:04:05+00:00"}'::jsonb,
	'the new row, without card_number, api_secret and the masked internal_ref; bytea as its length');

UPDATE tap_orders SET note = 'changed', api_secret = 'other' WHERE order_id = 1;
SELECT results_eq($$SELECT operation, old_row ->> 'note', new_row ->> 'note', changed_columns
	FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1$$,
	$$VALUES ('UPDATE'::text, 'hello'::text, 'changed'::text, ARRAY['note', 'api_secret'])$$,
	'UPDATE: old and new row, changed columns (masked ones by name only)');

RESET request.headers;
SET LOCAL payments.correlation_id = 'corr-7';
UPDATE tap_orders SET note = 'call me, card 4111 1111 1111 1111' WHERE order_id = 1;
SELECT is((SELECT correlation_id FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1),
	'corr-7', 'without a request header the payments.correlation_id setting is the correlation id');
SELECT is((SELECT new_row ->> 'note' FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1),
	'[card number removed by payments audit]', 'a card number inside any value is removed');

DELETE FROM tap_orders WHERE order_id = 1;
SELECT results_eq($$SELECT operation, old_row ->> 'order_id', new_row IS NULL, changed_columns IS NULL
	FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1$$,
	$$VALUES ('DELETE'::text, '1'::text, true, true)$$, 'DELETE: the old row');
SELECT is_empty($$SELECT 1 FROM payments.audit_log
	WHERE concat(old_row, new_row) ~ '4111[ -]?1111[ -]?1111[ -]?1111|s3cr3t|ref-9'$$,
	'no card number, secret or masked value anywhere in the audit log');

-- Row images: compressed when large enough to gain (PostgreSQL itself
-- compresses only in rows over about 2 kB), read back unchanged.
INSERT INTO tap_orders (order_id, merchant_id, note) VALUES (2, 3, repeat('a long order note ', 40));
UPDATE tap_orders SET note = repeat('another long note ', 40) WHERE order_id = 2;
SELECT results_eq($$SELECT operation, pg_column_compression(old_row), pg_column_compression(new_row)
	FROM payments.audit_log WHERE table_name = 'tap_orders' AND (coalesce(old_row, new_row) ->> 'order_id') = '2'
	ORDER BY audit_id$$,
	$$SELECT v.op, CASE WHEN v.op = 'UPDATE' THEN m.method END, m.method
	FROM (VALUES (1, 'INSERT'::text), (2, 'UPDATE')) v (n, op),
		(SELECT CASE a.attcompression WHEN 'l' THEN 'lz4' WHEN 'p' THEN 'pglz' ELSE current_setting('default_toast_compression') END AS method
		 FROM pg_attribute a WHERE a.attrelid = 'payments.audit_log'::regclass AND a.attname = 'new_row') m
	ORDER BY v.n$$,
	'a row image of 700 bytes is stored compressed, with the audit_log column''s method');
SELECT results_eq($$SELECT old_row ->> 'note', new_row ->> 'note', pg_column_size(new_row) < octet_length(new_row::text) / 2
	FROM payments.audit_log WHERE table_name = 'tap_orders' AND operation = 'UPDATE' AND old_row ->> 'order_id' = '2'$$,
	$$VALUES (repeat('a long order note ', 40), repeat('another long note ', 40), true)$$,
	'compressed images read back unchanged, in less than half the room');
SELECT is((SELECT pg_column_compression(new_row) FROM payments.audit_log
		WHERE table_name = 'tap_orders' AND operation = 'INSERT' AND new_row ->> 'order_id' = '1'),
	NULL, 'a small image is stored as it is');
DELETE FROM tap_orders WHERE order_id = 2;

TRUNCATE tap_orders;
SELECT is((SELECT operation FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1),
	'TRUNCATE', 'TRUNCATE is recorded');

-- A table without merchant_id: the merchant the request acts for.
CREATE TABLE public.tap_notes (id int PRIMARY KEY, body text);
SELECT ok(payments.pay_audit_attach('tap_notes'), 'attach to a table without merchant_id');
INSERT INTO tap_notes VALUES (1, 'n');
SELECT is((SELECT merchant_id FROM payments.audit_log WHERE table_name = 'tap_notes'), 7::bigint,
	'without a merchant_id column, the JWT claim''s merchant');
RESET request.jwt.claims;
SET LOCAL payments.merchant_id = '5';
INSERT INTO tap_notes VALUES (2, 'm');
SELECT results_eq($$SELECT merchant_id, app_user FROM payments.audit_log WHERE table_name = 'tap_notes' ORDER BY audit_id DESC LIMIT 1$$,
	$$VALUES (5::bigint, NULL::text)$$, 'else the payments.merchant_id setting; no JWT, no application user');
RESET payments.merchant_id;
SELECT ok(payments.pay_audit_detach('tap_notes'), 'detach returns true');
SELECT ok(NOT payments.pay_audit_detach('tap_notes'), 'detaching again changes nothing');
INSERT INTO tap_notes VALUES (3, 'not audited');
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_notes'), 2::bigint,
	'a detached table is no longer audited');

-- The extension's own tables; gateway keys never appear.
SELECT payments.pay_configure_gateway(api_login_id => 'tapLogin', transaction_key => 'TK1234567890',
	signature_key => repeat('5EC4E7', 21) || '5E', endpoint_url => 'https://example.invalid/api');
SELECT results_eq($$SELECT operation, new_row ? 'api_login_id', new_row ? 'transaction_key', new_row ? 'signature_key'
	FROM payments.audit_log WHERE table_schema = 'payments' AND table_name = 'gateway_config'$$,
	$$VALUES ('INSERT'::text, true, false, false)$$, 'gateway_config is audited without its keys');
SELECT is_empty($$SELECT 1 FROM payments.audit_log WHERE concat(old_row, new_row) ~ 'TK1234567890|5EC4E75EC4E7'$$,
	'the transaction key and signature key are nowhere in the audit log');
INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES (77, 'Audited Merchant');
SELECT is((SELECT merchant_id FROM payments.audit_log WHERE table_name = 'merchants' ORDER BY audit_id DESC LIMIT 1),
	77::bigint, 'a new merchant is audited under its own merchant_id');

-- A role that may change a table but has no privilege on the audit log.
CREATE ROLE tap_audit_app NOLOGIN;
SELECT payments.pay_bind_role('tap_audit_app', merchant_id => 5);
GRANT INSERT ON tap_orders TO tap_audit_app;
SET LOCAL ROLE tap_audit_app;
INSERT INTO tap_orders (order_id, merchant_id) VALUES (2, 5);
RESET ROLE;
SELECT is((SELECT db_role FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1),
	'tap_audit_app', 'an API role''s change is audited under its name');
-- the names are kept per session (src/audit.c): a renamed role is
-- recorded under its new name
ALTER ROLE tap_audit_app RENAME TO tap_audit_app_renamed;
SET LOCAL ROLE tap_audit_app_renamed;
INSERT INTO tap_orders (order_id, merchant_id) VALUES (90, 5);
RESET ROLE;
SELECT is((SELECT db_role FROM payments.audit_log WHERE table_name = 'tap_orders' ORDER BY audit_id DESC LIMIT 1),
	'tap_audit_app_renamed', 'a role renamed in the session is audited under its new name');
ALTER ROLE tap_audit_app_renamed RENAME TO tap_audit_app;

-- For which merchant: a row's merchant_id only if the role may act for
-- it, a setting or claim it may not use moves nothing, and the JWT
-- subject only from a declared PostgREST role (any session can set
-- request.jwt.claims).  tap_audit_a: bound to 5, can log in.
CREATE TABLE public.tap_claims (id int PRIMARY KEY, merchant_id bigint NOT NULL, note text);
CREATE TABLE public.tap_plain (id int PRIMARY KEY, note text);
SELECT payments.pay_audit_attach('tap_claims'), payments.pay_audit_attach('tap_plain');
CREATE ROLE tap_audit_a LOGIN;
CREATE ROLE tap_audit_two NOLOGIN;
CREATE ROLE tap_audit_none NOLOGIN;
CREATE ROLE tap_audit_rest NOLOGIN;
CREATE ROLE tap_audit_admin NOLOGIN;
SELECT payments.pay_bind_role('tap_audit_a', merchant_id => 5);
SELECT payments.pay_bind_role('tap_audit_two', merchant_id => 5), payments.pay_bind_role('tap_audit_two', merchant_id => 7);
SELECT payments.pay_grant_api('tap_audit_none');
SELECT payments.pay_declare_postgrest_role('tap_audit_rest');
SELECT payments.pay_grant_all_merchants('tap_audit_admin');
GRANT INSERT, SELECT, UPDATE ON tap_claims, tap_plain TO tap_audit_a, tap_audit_two, tap_audit_none, tap_audit_rest, tap_audit_admin;
CREATE FUNCTION public.tap_owner_insert(id int, m bigint) RETURNS void LANGUAGE sql SECURITY DEFINER
	AS $$ INSERT INTO public.tap_claims VALUES (id, m, 'the owner''s function') $$;
CREATE FUNCTION pg_temp.audited(t text, id int) RETURNS text LANGUAGE sql AS $$
	SELECT concat_ws('|', a.merchant_id, coalesce(a.app_user, '-')) FROM payments.audit_log a
	WHERE a.table_name = t AND a.operation = 'INSERT' AND (a.new_row ->> 'id')::int = id $$;
SET LOCAL ROLE tap_audit_a;
SET LOCAL payments.merchant_id = '7';
INSERT INTO tap_plain VALUES (1, 'setting: a merchant it may not act for');
SET LOCAL payments.merchant_id = 'garbage';
INSERT INTO tap_plain VALUES (2, 'setting: no merchant id');
RESET payments.merchant_id;
SET LOCAL request.jwt.claims = '{"merchant_id": 7, "sub": "alice-admin"}';
INSERT INTO tap_plain VALUES (3, 'claim of a role that can log in');
SELECT is((SELECT jwt_subject FROM payments.pay_current_identity()), NULL,
	'pay_current_identity(): no JWT subject from claims a login role set itself');
RESET request.jwt.claims;
INSERT INTO tap_claims VALUES (1, 7, 'another merchant'), (2, 5, 'its own'), (3, 999, 'no such merchant');
SET LOCAL payments.merchant_id = '7';
UPDATE tap_claims SET merchant_id = 7 WHERE id = 2;
RESET payments.merchant_id;
SELECT tap_owner_insert(4, 7);
RESET ROLE;
SELECT results_eq($$SELECT pg_temp.audited('tap_plain', i) FROM generate_series(1, 3) i$$,
	$$VALUES ('5|-'), ('5|-'), ('5|-')$$,
	'a bound role''s rows stay with its merchant whatever setting or claim it names (not the default merchant), and it cannot forge app_user');
SELECT results_eq($$SELECT pg_temp.audited('tap_claims', i) FROM generate_series(1, 3) i$$,
	$$VALUES ('5|-'), ('5|-'), ('5|-')$$,
	'a row naming a merchant the role may not act for (or none that exists) is recorded under the role''s own');
SELECT is((SELECT merchant_id FROM payments.audit_log WHERE table_name = 'tap_claims' AND operation = 'UPDATE'), 5::bigint,
	'an UPDATE to another merchant''s id under a setting naming it: its own merchant too');
SELECT is((SELECT new_row ->> 'merchant_id' FROM payments.audit_log WHERE table_name = 'tap_claims' AND (new_row ->> 'id')::int = 1),
	'7', 'the row''s own claim stays visible in new_row');
SELECT is(pg_temp.audited('tap_claims', 4), '7|-',
	'a row the owner''s SECURITY DEFINER function writes keeps its merchant, whoever calls it');
SET LOCAL ROLE tap_audit_two;
SET LOCAL payments.merchant_id = '1';
SELECT throws_ok($$INSERT INTO tap_plain VALUES (10, 'x')$$, '42501', 'role "tap_audit_two" may not act for merchant 1',
	'bound to several merchants and naming another one: the write is refused as the API refuses it');
SET LOCAL payments.merchant_id = '7';
INSERT INTO tap_plain VALUES (11, 'names one of its merchants');
INSERT INTO tap_claims VALUES (11, 5, 'its other merchant'), (12, 41, 'not its merchant');
RESET payments.merchant_id;
SELECT throws_ok($$INSERT INTO tap_claims VALUES (13, 41, 'x')$$, '42501', 'role "tap_audit_two" is bound to several merchants',
	'naming none, a row for no merchant of its own: refused');
SET LOCAL ROLE tap_audit_none;
SELECT throws_ok($$INSERT INTO tap_claims VALUES (20, 5, 'x')$$, '42501', 'no merchant identity for role "tap_audit_none"',
	'a role bound to nothing: refused, never the default merchant');
SET LOCAL ROLE tap_audit_rest;
SET LOCAL request.jwt.claims = '{"merchant_id": 7, "sub": "bob"}';
INSERT INTO tap_claims VALUES (30, 7, 'through PostgREST'), (31, 5, 'not the claimed merchant');
SET LOCAL ROLE tap_audit_admin;
SET LOCAL request.jwt.claims = '{"sub": "carol"}';
INSERT INTO tap_claims VALUES (40, 7, 'an admin naming no merchant');
RESET request.jwt.claims;
RESET ROLE;
SELECT results_eq($$SELECT pg_temp.audited(t, i) FROM (VALUES ('tap_plain', 11), ('tap_claims', 11), ('tap_claims', 12),
		('tap_claims', 30), ('tap_claims', 31), ('tap_claims', 40)) v(t, i)$$,
	$$VALUES ('7|-'), ('5|-'), ('7|-'), ('7|bob'), ('7|bob'), ('7|-')$$,
	'any merchant the role is bound to, else the one it names; a declared PostgREST role''s claim and subject; an admin''s rows any merchant');

-- Append-only for everyone, even a role granted every privilege, even the owner.
CREATE ROLE tap_audit_intruder NOLOGIN;
GRANT USAGE ON SCHEMA payments TO tap_audit_intruder;
GRANT ALL ON payments.audit_log, payments.audit_seals TO tap_audit_intruder;
SET LOCAL ROLE tap_audit_intruder;
SELECT throws_ok($$UPDATE payments.audit_log SET app_user = 'nobody'$$, '42501', NULL, 'a non-owner cannot update audit rows');
SELECT throws_ok($$DELETE FROM payments.audit_log$$, '42501', NULL, 'a non-owner cannot delete audit rows');
SELECT throws_ok($$TRUNCATE payments.audit_log$$, '42501', NULL, 'a non-owner cannot truncate the audit log');
SELECT throws_ok($$SELECT payments.pay_audit_prune('0 seconds')$$, '42501', NULL, 'a non-owner cannot prune');
SELECT throws_ok($$SELECT payments.pay_audit_attach('tap_notes')$$, '42501', NULL, 'a non-owner cannot attach');
RESET ROLE;
-- Nor write one: a role granted INSERT, or a member of pg_write_all_data
-- (INSERT on every table, GRANTs or not), acting for a merchant.  Before,
-- its row, with a row hash anyone can compute, went into that merchant's
-- chain and the next seal took it in as genuine; so did a seal of its own.
SELECT payments.pay_bind_role('tap_audit_intruder', merchant_id => 5);
CREATE ROLE tap_audit_writer NOLOGIN IN ROLE pg_write_all_data;
SELECT payments.pay_bind_role('tap_audit_writer', merchant_id => 5);
CREATE FUNCTION pg_temp.forge() RETURNS void LANGUAGE sql AS $$
	INSERT INTO payments.audit_log (merchant_id, audit_id, table_schema, table_name, operation, new_row,
		db_role, session_role, txid, logged_at, row_hash)
	VALUES (5, 999999999, 'public', 'tap_orders', 'INSERT', '{"forged": true}', 'x', 'x', '1', now(),
		sha256('forged')) $$;
SET LOCAL ROLE tap_audit_intruder;
SELECT throws_ok($$SELECT pg_temp.forge()$$, '42501', NULL, 'a non-owner granted INSERT cannot write an audit row');
SELECT throws_ok($$INSERT INTO payments.audit_seals (merchant_id, seal_id, range_start, range_end, first_audit_id,
		last_audit_id, row_count, prev_seal_hash, batch_hash)
	VALUES (5, 999999999, 0, 1, 1, 1, 1, sha256('forged'), sha256('forged'))$$,
	'42501', NULL, 'nor a seal');
RESET ROLE;
SET LOCAL ROLE tap_audit_writer;
SELECT throws_ok($$SELECT pg_temp.forge()$$, '42501', NULL, 'nor can a member of pg_write_all_data');
RESET ROLE;
SELECT throws_ok($$UPDATE payments.audit_log SET app_user = 'nobody'$$, '42501', NULL,
	'the owner cannot update audit rows outside retention either');

-- A sensitive name one level down: a field of a composite value (an array
-- of them too) or a key of a jsonb value named cvv, password, api_key, ...
-- is left out with its value, as a column of that name is (before: kept
-- in clear, a card code "123" too).
CREATE TYPE public.tap_cardish AS (holder text, cvv text, password text);
CREATE TABLE public.tap_nested (id int PRIMARY KEY, merchant_id bigint NOT NULL, c tap_cardish,
	cs tap_cardish[], j jsonb);
SELECT payments.pay_audit_attach('tap_nested');
INSERT INTO tap_nested VALUES (1, 3, ROW('bob', '123', 'hunter2'), ARRAY[ROW('amy', '456', 'pw')::tap_cardish],
	'{"card": {"CVV": "789", "api_key": ["sk_live_abc"]}, "client_secret": {"a": 1}, "company": "ACME"}');
SELECT is((SELECT new_row FROM payments.audit_log WHERE table_name = 'tap_nested'),
	'{"id": 1, "merchant_id": 3, "c": {"holder": "bob"}, "cs": [{"holder": "amy"}], "j": {"card": {}, "company": "ACME"}}'::jsonb,
	'nested fields and keys with a sensitive name are left out, the others kept');
UPDATE tap_nested SET j = j || '{"x": 1}';
SELECT is_empty($$SELECT 1 FROM payments.audit_log WHERE table_name = 'tap_nested'
		AND concat(old_row, new_row) ~ '123|456|789|hunter2|sk_live|"pw"'$$,
	'no audit row of the table keeps one of their values, on update either');

-- Values that are objects or arrays (jsonb, an array column) and of an
-- extension's type: as to_jsonb() writes them, on insert and on update;
-- their rows verify below with the rest (the row hash is over their text).
CREATE TABLE public.tap_docs (id int PRIMARY KEY, merchant_id bigint NOT NULL, doc jsonb,
	tags text[], total payments.pay_amount, n numeric);
SELECT ok(payments.pay_audit_attach('tap_docs'), 'attach to a table with jsonb and array columns');
INSERT INTO tap_docs VALUES (1, 3,
	'{"b": [1, "two", {"c": null, "d": false}], "a": "quote \" back \\ tab \t é", "e": {}, "z": [], "n": 1.50}',
	ARRAY['x', 'y "q"'], '9.99 EUR', 'NaN');
CREATE TEMP TABLE tap_docs_inserted AS SELECT to_jsonb(t) AS row FROM tap_docs t;
UPDATE tap_docs SET doc = doc || '{"f": [true]}', n = 2.50 WHERE id = 1;
SELECT is((SELECT new_row FROM payments.audit_log WHERE table_name = 'tap_docs' AND operation = 'INSERT'),
	(SELECT row FROM tap_docs_inserted), 'INSERT: objects, arrays, NaN and pay_amount as to_jsonb() writes them');
SELECT results_eq($$SELECT old_row, new_row FROM payments.audit_log WHERE table_name = 'tap_docs' AND operation = 'UPDATE'$$,
	$$SELECT (SELECT row FROM tap_docs_inserted), to_jsonb(t) FROM tap_docs t$$,
	'UPDATE: the old and the new row likewise');
-- a cast to json made meanwhile counts from the next row, as in to_jsonb()
CREATE FUNCTION public.tap_amount_json(a payments.pay_amount) RETURNS json LANGUAGE sql IMMUTABLE
	AS $$ SELECT json_build_object('minor', payments.pay_minor_units(a), 'currency', payments.pay_currency(a)) $$;
CREATE CAST (payments.pay_amount AS json) WITH FUNCTION public.tap_amount_json(payments.pay_amount);
INSERT INTO tap_docs (id, merchant_id, total) VALUES (2, 3, '1.25 USD');
SELECT is((SELECT new_row -> 'total' FROM payments.audit_log WHERE table_name = 'tap_docs' AND operation = 'INSERT'
		ORDER BY audit_id DESC LIMIT 1),
	'{"minor": 125, "currency": "USD"}'::jsonb, 'a cast of pay_amount to json made meanwhile is used, as to_jsonb() uses it');
DROP CAST (payments.pay_amount AS json);
DROP FUNCTION public.tap_amount_json(payments.pay_amount);

-- Seals and verification.
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'verification passes before sealing');
SELECT cmp_ok(payments.pay_audit_seal(), '>', 0, 'pay_audit_seal seals the rows written so far');
SELECT is(payments.pay_audit_seal(), 0, 'nothing new to seal');
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'verification passes on intact sealed data');

-- Tampering, as the owner with the guard switched off (rolled back with the test).
ALTER TABLE payments.audit_log DISABLE TRIGGER audit_log_guard;
ALTER TABLE payments.audit_seals DISABLE TRIGGER audit_seals_guard;
CREATE TEMP TABLE tap_victim AS
	SELECT * FROM payments.audit_log WHERE table_name = 'tap_orders' AND operation = 'UPDATE' ORDER BY audit_id LIMIT 1;

UPDATE payments.audit_log a SET db_role = 'someone_else' FROM tap_victim v WHERE a.audit_id = v.audit_id;
SELECT is(payments.pay_audit_verify() ->> 'problem', 'row_modified', 'a modified row is detected');
UPDATE payments.audit_log a SET db_role = v.db_role FROM tap_victim v WHERE a.audit_id = v.audit_id;

DELETE FROM payments.audit_log a USING tap_victim v WHERE a.audit_id = v.audit_id;
SELECT is(payments.pay_audit_verify() ->> 'problem', 'row_missing', 'a deleted row is detected');
INSERT INTO payments.audit_log SELECT * FROM tap_victim;
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'putting the row back makes it intact again');

-- two rows of one batch swap places, each with a valid recomputed row hash
CREATE TEMP TABLE tap_pair AS
	SELECT * FROM payments.audit_log WHERE merchant_id = 3 ORDER BY audit_id LIMIT 2;
CREATE FUNCTION pg_temp.rehash(a payments.audit_log) RETURNS bytea LANGUAGE sql AS $$
	SELECT payments._audit_row_hash(a.merchant_id, a.audit_id, a.table_schema, a.table_name, a.operation,
		a.old_row, a.new_row, a.changed_columns, a.db_role, a.session_role, a.app_user, a.correlation_id,
		a.txid, a.logged_at) $$;
DELETE FROM payments.audit_log a USING tap_pair p WHERE a.merchant_id = p.merchant_id AND a.audit_id = p.audit_id;
INSERT INTO payments.audit_log
	SELECT (x).* FROM (
		SELECT ROW(p.merchant_id, q.audit_id, p.table_schema, p.table_name, p.operation, p.old_row, p.new_row,
			p.changed_columns, p.db_role, p.session_role, p.app_user, p.correlation_id, p.txid, p.logged_at,
			p.row_hash, p.key_id)::payments.audit_log AS x
		FROM tap_pair p JOIN tap_pair q ON q.audit_id <> p.audit_id) s;
UPDATE payments.audit_log a SET row_hash = pg_temp.rehash(a) FROM tap_pair p
	WHERE a.merchant_id = p.merchant_id AND a.audit_id = p.audit_id;
SELECT is(payments.pay_audit_verify(), jsonb_build_object('problem', 'batch_mismatch', 'merchant_id', 3,
		'seal_id', (SELECT seal_id FROM payments.audit_seals WHERE merchant_id = 3 ORDER BY seal_id LIMIT 1),
		'detail', 'The batch''s rows do not hash to the sealed batch hash (rows replaced, renumbered or reordered).'),
	'reordered rows, even with valid row hashes, are detected');
DELETE FROM payments.audit_log a USING tap_pair p WHERE a.merchant_id = p.merchant_id AND a.audit_id = p.audit_id;
INSERT INTO payments.audit_log SELECT * FROM tap_pair;
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'intact again');

-- a forged row inside a sealed range, with a valid row hash
INSERT INTO payments.audit_log (merchant_id, audit_id, table_schema, table_name, operation, new_row,
	db_role, session_role, txid, logged_at, row_hash)
SELECT v.merchant_id, 0, 'public', 'tap_orders', 'INSERT', '{"forged": true}', 'x', 'x', v.txid, v.logged_at,
	payments._audit_row_hash(v.merchant_id, 0, 'public', 'tap_orders', 'INSERT', NULL, '{"forged": true}',
		NULL, 'x', 'x', NULL, NULL, v.txid, v.logged_at)
FROM tap_victim v;
SELECT is(payments.pay_audit_verify() ->> 'problem', 'row_added', 'a forged row inside a sealed range is detected');
DELETE FROM payments.audit_log WHERE audit_id = 0;

-- a seal removed from the chain
INSERT INTO tap_orders (order_id, merchant_id) VALUES (3, 3);
SELECT is(payments.pay_audit_seal(), 1, 'a second seal for the merchant');
CREATE TEMP TABLE tap_seal AS SELECT * FROM payments.audit_seals WHERE merchant_id = 3 ORDER BY seal_id LIMIT 1;
DELETE FROM payments.audit_seals s USING tap_seal t WHERE s.merchant_id = t.merchant_id AND s.seal_id = t.seal_id;
SELECT is(payments.pay_audit_verify() ->> 'problem', 'seal_chain_broken', 'a removed seal breaks the chain');
INSERT INTO payments.audit_seals SELECT * FROM tap_seal;
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'intact again');

-- A rewrite with every hash recomputed verifies against itself; only a
-- digest kept outside the database finds it.
CREATE TEMP TABLE tap_digest AS SELECT payments.pay_audit_digest() AS d;
SELECT is((SELECT jsonb_path_query_first(d, '$[*] ? (@.merchant_id == 3)') - 'sealed_at' FROM tap_digest),
	(SELECT jsonb_build_object('merchant_id', 3, 'seal_id', max(seal_id),
		'batch_hash', encode((array_agg(batch_hash ORDER BY seal_id DESC))[1], 'base64'))
	 FROM payments.audit_seals WHERE merchant_id = 3),
	'pay_audit_digest names each merchant''s latest seal and its batch hash');
SELECT is(payments.pay_audit_verify(digest => (SELECT d FROM tap_digest)), NULL::jsonb,
	'an intact log verifies against its digest');
CREATE TEMP TABLE tap_seals3 AS SELECT * FROM payments.audit_seals WHERE merchant_id = 3;
UPDATE payments.audit_log a SET db_role = 'someone_else' FROM tap_victim v WHERE a.audit_id = v.audit_id;
UPDATE payments.audit_log a SET row_hash = pg_temp.rehash(a) FROM tap_victim v WHERE a.audit_id = v.audit_id;
DO $$
DECLARE
	s payments.audit_seals;
	prev bytea := decode(repeat('00', 32), 'hex');
	h bytea;
BEGIN
	FOR s IN SELECT * FROM payments.audit_seals WHERE merchant_id = 3 ORDER BY seal_id LOOP
		SELECT payments._audit_batch_hash(s.merchant_id, s.seal_id, s.range_start, s.range_end, s.row_count, prev,
			string_agg(a.row_hash, ''::bytea ORDER BY a.audit_id)) INTO h
		FROM payments.audit_log a
		WHERE a.merchant_id = 3 AND a.audit_id > s.range_start AND a.audit_id <= s.range_end;
		UPDATE payments.audit_seals x SET prev_seal_hash = prev, batch_hash = h
		WHERE x.merchant_id = 3 AND x.seal_id = s.seal_id;
		prev := h;
	END LOOP;
END
$$;
SELECT is(payments.pay_audit_verify(), NULL::jsonb,
	'a row rewritten with its row hash and every seal after it recomputed verifies against itself');
SELECT is(payments.pay_audit_verify(digest => (SELECT d FROM tap_digest)) - 'detail',
	jsonb_build_object('problem', 'digest_mismatch', 'merchant_id', 3,
		'seal_id', (SELECT max(seal_id) FROM tap_seals3)),
	'against the digest kept from before, the rewrite is found');
SELECT is(payments.pay_audit_verify(merchant_id => 999, digest => (SELECT d FROM tap_digest)), NULL::jsonb,
	'a digest''s other merchants are left out when one merchant is verified');
SELECT is(payments.pay_audit_verify(digest => ('[{"merchant_id": 3, "seal_id": 0, "batch_hash": "'
		|| repeat('A', 43) || '="}]')::jsonb) ->> 'problem', 'digest_seal_missing',
	'a seal of the digest that the chain no longer holds is found');
SELECT throws_ok($$SELECT payments.pay_audit_verify(digest => '{"merchant_id": 3}')$$, '22023',
	'digest is not an audit digest', 'a digest of another shape is refused');
SELECT throws_ok($$SELECT payments.pay_audit_verify(digest => '[{"merchant_id": 3, "seal_id": 1, "batch_hash": "xyz"}]')$$,
	'22023', 'digest is not an audit digest', 'and so is a batch hash that is not 32 bytes in base64');
UPDATE payments.audit_log a SET db_role = v.db_role, row_hash = v.row_hash FROM tap_victim v WHERE a.audit_id = v.audit_id;
DELETE FROM payments.audit_seals WHERE merchant_id = 3;
INSERT INTO payments.audit_seals SELECT * FROM tap_seals3;
SELECT is(payments.pay_audit_verify(digest => (SELECT d FROM tap_digest)), NULL::jsonb, 'intact again, digest and all');
ALTER TABLE payments.audit_log ENABLE ALWAYS TRIGGER audit_log_guard;
ALTER TABLE payments.audit_seals ENABLE ALWAYS TRIGGER audit_seals_guard;
SELECT throws_ok($$DELETE FROM payments.audit_seals$$, '42501', NULL, 'seals are guarded too');

-- Retention: whole sealed batches go, the chain stays verifiable.
SELECT is(payments.pay_audit_prune(older_than => '1 day'), 0::bigint, 'nothing is old enough to prune');
INSERT INTO tap_orders (order_id, merchant_id) VALUES (4, 3);
SELECT cmp_ok(payments.pay_audit_prune(older_than => '0 seconds'), '>', 0::bigint, 'prune deletes sealed batches');
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_orders' AND operation <> 'PRUNE'), 1::bigint,
	'only the unsealed row is left');
SELECT ok(EXISTS (SELECT 1 FROM payments.audit_log WHERE operation = 'PRUNE' AND merchant_id = 3), 'the prune is recorded');
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'verification passes after the prune');
SELECT cmp_ok(payments.pay_audit_seal(), '>', 0, 'sealing goes on after a prune');
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'and verification still passes');

-- ANALYZE leaves the row images out and keeps the columns queries filter on.
ANALYZE payments.audit_log;
SELECT set_eq($$SELECT attname::text FROM pg_stats WHERE schemaname = 'payments' AND tablename = 'audit_log'
		AND attname IN ('old_row', 'new_row', 'row_hash', 'table_name', 'logged_at')$$,
	ARRAY['table_name', 'logged_at'], 'ANALYZE of the audit log gathers no statistics of its row images');

-- Values whose text the writer's settings change (any role may SET them):
-- float4 and float8 (extra_float_digits: -15 rounds to 2 digits fewer
-- than shortest-exact) and interval (IntervalStyle) are written as a
-- default session writes them, whoever writes the row.
INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES (11, 'Eleven');
CREATE TABLE public.tap_measures (id int PRIMARY KEY, merchant_id bigint NOT NULL, ratio float8, weight real,
	span interval);
SELECT ok(payments.pay_audit_attach('tap_measures'), 'a table with float and interval columns is attached');
SET LOCAL extra_float_digits = -15;
SET LOCAL IntervalStyle = 'iso_8601';
INSERT INTO tap_measures VALUES (1, 11, 0.1234567890123456789, 1.2345678, '1 day 02:03:04.5');
SET LOCAL extra_float_digits = 1;
SET LOCAL IntervalStyle = 'postgres';
INSERT INTO tap_measures VALUES (2, 11, 0.1234567890123456789, 1.2345678, '1 day 02:03:04.5');
SELECT is((SELECT (new_row - 'id')::text FROM payments.audit_log WHERE table_name = 'tap_measures' AND new_row ->> 'id' = '1'),
	(SELECT (new_row - 'id')::text FROM payments.audit_log WHERE table_name = 'tap_measures' AND new_row ->> 'id' = '2'),
	'a row written under extra_float_digits -15 and IntervalStyle iso_8601 is audited as under the defaults');
SELECT is((SELECT (new_row - 'id')::text FROM payments.audit_log WHERE table_name = 'tap_measures' AND new_row ->> 'id' = '1'),
	'{"span": "1 day 02:03:04.5", "ratio": 0.12345678901234568, "weight": 1.2345678, "merchant_id": 11}',
	'its floats shortest-exact, its interval in the default style');
INSERT INTO tap_measures VALUES (3, 11, 'NaN', '-Infinity', NULL);
SELECT is((SELECT concat_ws(' ', new_row -> 'ratio', new_row -> 'weight', new_row -> 'span') FROM payments.audit_log
	WHERE table_name = 'tap_measures' AND new_row ->> 'id' = '3'), '"NaN" "-Infinity" null',
	'NaN and the infinities as strings, as to_jsonb() writes them');

SELECT * FROM finish();
ROLLBACK;
