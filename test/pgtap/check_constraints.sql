-- The CHECK constraints of tables in schema payments are read and planned
-- once per backend (src/check_cache.c): whatever is cached, a row is
-- checked against the constraints the table has now, in this session,
-- after each change, as PostgreSQL itself would check it.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(13);

CREATE TABLE payments.zz_checked (a integer CHECK (a > 0), b text CHECK (b IN ('x', 'y')));
SELECT lives_ok($$INSERT INTO payments.zz_checked VALUES (1, 'x')$$, 'a row that meets the constraints is inserted');
SELECT lives_ok($$INSERT INTO payments.zz_checked VALUES (2, 'y')$$, '... again, with the constraints cached');
SELECT throws_ok($$INSERT INTO payments.zz_checked VALUES (0, 'x')$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_checked_a_check"',
	'a row that breaks the first is refused, naming it');
SELECT throws_ok($$INSERT INTO payments.zz_checked VALUES (3, 'z')$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_checked_b_check"',
	'a row that breaks the second is refused, naming it');
SELECT throws_ok($$UPDATE payments.zz_checked SET b = 'z' WHERE a = 1$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_checked_b_check"',
	'an UPDATE is checked too');

ALTER TABLE payments.zz_checked ADD CONSTRAINT zz_below_100 CHECK (a < 100);
SELECT throws_ok($$INSERT INTO payments.zz_checked VALUES (100, 'x')$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_below_100"',
	'a constraint added in this session is checked at once');
ALTER TABLE payments.zz_checked DROP CONSTRAINT zz_checked_a_check;
SELECT lives_ok($$INSERT INTO payments.zz_checked VALUES (0, 'x')$$, 'a constraint dropped is no longer checked');
ALTER TABLE payments.zz_checked ADD CONSTRAINT zz_not_5 CHECK (a <> 5) NOT VALID;
SELECT throws_ok($$INSERT INTO payments.zz_checked VALUES (5, 'x')$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_not_5"',
	'a NOT VALID constraint is checked for new rows');

-- a SQL function is inlined into the planned tree: replacing it counts
CREATE FUNCTION payments.zz_small(integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 50';
ALTER TABLE payments.zz_checked ADD CONSTRAINT zz_small CHECK (payments.zz_small(a));
SELECT throws_ok($$INSERT INTO payments.zz_checked VALUES (60, 'x')$$, '23514',
	'new row for relation "zz_checked" violates check constraint "zz_small"',
	'a constraint calling a SQL function is checked');
CREATE OR REPLACE FUNCTION payments.zz_small(integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 70';
SELECT lives_ok($$INSERT INTO payments.zz_checked VALUES (60, 'x')$$, 'the function replaced, its new body decides');

SELECT is((SELECT count(*)::integer FROM payments.zz_checked), 4, 'the table holds exactly the rows let in');

-- the extension's own tables: their constraints still refuse
SELECT throws_ok($$INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash)
	VALUES (1, '', 'purchase', 'x')$$, '23514',
	'new row for relation "idempotency_keys" violates check constraint "idempotency_keys_idempotency_key_check"',
	'a row of the extension''s own tables that breaks a constraint is refused');
SELECT throws_ok($$INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash)
	VALUES (1, repeat('k', 256), 'purchase', 'x')$$, '23514',
	'new row for relation "idempotency_keys" violates check constraint "idempotency_keys_idempotency_key_check"',
	'... every time');

SELECT * FROM finish();
ROLLBACK;
