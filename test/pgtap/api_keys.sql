-- Merchant API keys: create (shown once, kept hashed), list (no secret),
-- use (pay_use_api_key; PostgREST's pre-request function), scopes, expiry,
-- revocation, rotation with an overlap, last use, rate limits, another
-- merchant's key, the key id in audit rows.  (Through PostgREST:
-- test/integration/postgrest_api.sh.)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(135);

CREATE FUNCTION pg_temp.card() RETURNS payments.pay_card LANGUAGE sql
	AS $$ SELECT payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123') $$;
INSERT INTO payments.merchants (name) VALUES ('keys A') RETURNING merchant_id AS ma \gset
INSERT INTO payments.merchants (name) VALUES ('keys B') RETURNING merchant_id AS mb \gset
-- B's payment, made by the owner for B
SET LOCAL payments.merchant_id = :'mb';
SELECT payment_id AS bpay FROM payments.pay_authorize(amount => '9.00 USD', card => pg_temp.card()) \gset
RESET payments.merchant_id;

-- Roles: an application role granted the API but bound to nothing (keys are
-- its credential), PostgREST's anon (declared), a bound role (not declared).
CREATE ROLE tapk_app NOLOGIN;
CREATE ROLE tapk_anon NOLOGIN;
CREATE ROLE tapk_bound NOLOGIN;
SELECT payments.pay_grant_api('tapk_app');
SELECT payments.pay_declare_postgrest_role('tapk_anon');
SELECT payments.pay_bind_role('tapk_bound', merchant_id => :ma);

-- 1. Creating keys (the owner), what is stored, listing.
CREATE TEMP TABLE k AS SELECT 'read'::text AS what, * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['read'], name => 'reader');
INSERT INTO k SELECT 'pay', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['payments', 'read', 'refunds'], name => 'shop');
INSERT INTO k SELECT 'admin', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['admin'], name => 'admin');
INSERT INTO k SELECT 'b', * FROM payments.pay_create_api_key(merchant_id => :mb, scopes => ARRAY['read', 'payments', 'refunds', 'admin']);
GRANT ALL ON k TO PUBLIC;
SELECT ok((SELECT bool_and(api_key ~ ('^pk_' || key_id || '_[A-Za-z0-9_-]{43}$')) FROM k),
	'pay_create_api_key returns the key once: pk_<key id>_<43 base64url characters>');
SELECT is((SELECT scopes FROM k WHERE what = 'pay'), ARRAY['payments', 'read', 'refunds'], 'with its scopes, sorted');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name = 'api_keys' AND operation = 'INSERT'
	AND (new_row ->> 'key_id')::bigint IN (SELECT key_id FROM k)), 4, 'creating a key is audited');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name = 'api_keys'
	AND (new_row ? 'secret_hash' OR new_row ? 'previous_hash' OR old_row ? 'secret_hash')), 0,
	'without the hashes of the secrets');
SELECT is((SELECT count(*) FROM payments.api_keys a JOIN k USING (key_id)
	WHERE a.secret_hash = sha256(convert_to(k.api_key, 'UTF8'))), 4::bigint,
	'the table keeps the SHA-256 of each key');
SELECT is_empty($$SELECT 1 FROM payments.api_keys a, k
	WHERE position(convert_to(regexp_replace(k.api_key, '^pk_[0-9]+_', ''), 'UTF8') IN convert_to(a::text, 'UTF8')) > 0$$,
	'and no secret in any column');
SELECT is((SELECT string_agg(name, ',' ORDER BY key_id) FROM payments.pay_list_api_keys(merchant_id => :ma)), 'reader,shop,admin',
	'pay_list_api_keys lists a merchant''s keys');
SELECT throws_ok($$SELECT * FROM payments.pay_list_api_keys(merchant_id => 987654321)$$, 'PT404',
	'merchant 987654321 does not exist', 'a merchant that does not exist is PT404, not a merchant without keys');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'payments.pay_api_key_info'::regclass
	AND attname IN ('secret_hash', 'previous_hash', 'api_key')), 'without secret or hash');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read', 'everything'])$$, '22023',
	'unknown API key scope', 'an unknown scope is refused');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY[]::text[])$$, '22023', NULL, 'no scope is refused');
SELECT throws_ok($$SELECT payments.pay_create_api_key(expires_at => now() - interval '1 day')$$, '22023', NULL,
	'an expiry in the past is refused');
SELECT throws_ok($$SELECT payments.pay_create_api_key(merchant_id => 999999)$$, 'PT404', NULL, 'a merchant that does not exist: PT404');
SELECT ok(NOT has_table_privilege('tapk_app', 'payments.api_keys', 'SELECT'), 'api_keys is owner only');
SELECT ok(NOT has_table_privilege('tapk_app', 'payments.api_key_revocations', 'SELECT')
	AND NOT has_table_privilege('tapk_app', 'payments.api_key_revocations', 'INSERT'), 'api_key_revocations is owner only');
SELECT hasnt_column('payments', 'api_keys', 'revoked_at', 'a key''s row holds no revocation (api_key_revocations)');

-- 2. Using a key directly in SQL: pay_use_api_key, for the transaction and role.
SET LOCAL ROLE tapk_app;
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'the application role alone acts for no merchant');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'])$$, '42501', 'no merchant identity for role "tapk_app"',
	'key management with no identity at all: not authenticated (42501, PostgREST 401 for anon), not PT403');
SELECT throws_ok($$SELECT * FROM payments.pay_list_api_keys()$$, '42501', 'no merchant identity for role "tapk_app"',
	'listing keys too');
SELECT is((SELECT merchant_id FROM payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay'))), :ma::bigint,
	'pay_use_api_key: the key acts for its merchant');
SELECT is((SELECT concat_ws('|', merchant_id, source, key_id) FROM payments.pay_current_identity()),
	concat_ws('|', :ma, 'api_key', (SELECT key_id FROM k WHERE what = 'pay')), 'pay_current_identity names the key');
SELECT lives_ok($$CREATE TEMP TABLE apay AS SELECT * FROM payments.pay_purchase(amount => '3.00 USD', card => pg_temp.card())$$,
	'a key with the scope payments takes a payment');
SELECT is((SELECT merchant_id FROM apay), :ma::bigint, 'for its merchant');
SELECT is((SELECT status FROM payments.pay_get_payment((SELECT payment_id FROM apay))), 'pending', 'and reads it (scope read)');
-- A's key against B's payment: unknown
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', :bpay), 'PT404', NULL, 'A''s key: B''s payment is unknown (read)');
SELECT throws_ok(format('SELECT payments.pay_capture(%s)', :bpay), 'PT404', NULL, 'capture of B''s payment: PT404');
SELECT throws_ok(format('SELECT payments.pay_void(%s)', :bpay), 'PT404', NULL, 'void: PT404');
SELECT throws_ok(format('SELECT payments.pay_refund(%s)', :bpay), 'PT404', NULL, 'refund: PT404');
SELECT throws_ok(format('SELECT payments.pay_wait(%s, ''0 s'')', :bpay), 'PT404', NULL, 'wait: PT404');
SELECT is((SELECT count(*) FROM payments.pay_list_payments() WHERE merchant_id <> :ma), 0::bigint, 'B''s payments are in no list');
-- a setting or a claim does not move a key to another merchant
SET LOCAL payments.merchant_id = :'mb';
SELECT is(payments.pay_current_merchant(), :ma::bigint, 'SET payments.merchant_id does not move a key to B');
RESET payments.merchant_id;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :mb)::text, true);
SELECT is(payments.pay_current_merchant(), :ma::bigint, 'nor a forged claim');
SELECT set_config('request.jwt.claims', '', true);
-- the key management functions are for admin keys only
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['admin'])$$, 'PT403', NULL,
	'a key without the scope admin creates no key');
SELECT throws_ok($$SELECT * FROM payments.pay_list_api_keys()$$, 'PT403', NULL, 'nor lists keys');

-- 3. Scopes: a read-only key.
SELECT payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'read'));
SELECT is((SELECT payment_id FROM payments.pay_get_payment((SELECT payment_id FROM apay))), (SELECT payment_id FROM apay),
	'a read key reads');
SELECT is((SELECT count(*) FROM payments.pay_list_payments()), 1::bigint, 'and lists');
SELECT throws_ok($$SELECT payments.pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$, 'PT403',
	format('API key %s does not have the scope "payments"', (SELECT key_id FROM k WHERE what = 'read')),
	'but pay_purchase is refused: PT403');
SELECT throws_ok(format('SELECT payments.pay_refund(%s)', (SELECT payment_id FROM apay)), 'PT403', NULL, 'pay_refund too');
SELECT throws_ok(format('SELECT payments.pay_void(%s)', (SELECT payment_id FROM apay)), 'PT403', NULL, 'pay_void too');
SELECT lives_ok($$SELECT count(*) FROM payments.pay_find_customers()$$, 'a read key finds customers');
SELECT throws_ok($$SELECT payments.pay_create_customer(email => 'x@example.com')$$, 'PT403', NULL,
	'but creates none (scope payments)');
SELECT throws_ok($$SELECT payments.pay_export_customer(1)$$, 'PT403', NULL,
	'nor exports a customer''s personal data (scope admin)');
SET LOCAL payments.api_scope = '';
SELECT throws_ok(format('SELECT payments.pay_capture(%s)', (SELECT payment_id FROM apay)), 'PT403', NULL,
	'clearing payments.api_scope changes nothing: the function sets its own');
RESET payments.api_scope;

-- 4. An admin key manages its own merchant's keys, not another's.
SELECT payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'admin'));
SELECT lives_ok($$INSERT INTO k SELECT 'made', * FROM payments.pay_create_api_key(scopes => ARRAY['admin'], name => 'by admin')$$,
	'an admin key creates a key for its merchant');
SELECT is((SELECT merchant_id FROM k WHERE what = 'made'), :ma::bigint, 'its own merchant');
SELECT is((SELECT count(*) FROM payments.pay_list_api_keys()), 4::bigint, 'it lists its merchant''s 4 keys, not B''s');
SELECT throws_ok(format('SELECT payments.pay_create_api_key(merchant_id => %s)', :mb), 'PT403', NULL,
	'an admin key of A creates no key for B');
SELECT throws_ok(format('SELECT payments.pay_revoke_api_key(%s)', (SELECT key_id FROM k WHERE what = 'b')), 'PT404', NULL,
	'nor revokes B''s key (unknown to it)');
SELECT throws_ok(format('SELECT payments.pay_rotate_api_key(%s)', (SELECT key_id FROM k WHERE what = 'b')), 'PT404', NULL,
	'nor rotates it');
SELECT throws_ok(format('SELECT payments.pay_get_payment(%s)', (SELECT payment_id FROM apay)), 'PT403', NULL,
	'an admin key reads no payment (no scope read)');
SELECT throws_ok($$SELECT payments.pay_create_customer(email => 'x@example.com')$$, 'PT403', NULL,
	'nor creates a customer (no scope payments)');

-- 5. Revocation and expiry.
-- a NULL key id is a missing argument (before: PT404 "API key <NULL> not found")
SELECT throws_ok('SELECT payments.pay_revoke_api_key(NULL)', '22004', 'key_id is required', 'pay_revoke_api_key(NULL): 22004');
SELECT throws_ok('SELECT payments.pay_rotate_api_key(NULL)', '22004', 'key_id is required', 'pay_rotate_api_key(NULL): 22004');
SELECT ok(payments.pay_revoke_api_key((SELECT key_id FROM k WHERE what = 'made')), 'pay_revoke_api_key revokes');
SELECT ok(NOT payments.pay_revoke_api_key((SELECT key_id FROM k WHERE what = 'made')), 'twice: false');
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM k WHERE what = 'made')), 'PT401',
	format('API key %s is revoked', (SELECT key_id FROM k WHERE what = 'made')), 'a revoked key: PT401');
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM k WHERE what = 'read') || 'x'), 'PT401',
	'invalid API key', 'a wrong secret: PT401, invalid API key');
SELECT throws_ok($$SELECT payments.pay_use_api_key('pk_999999_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')$$, 'PT401',
	'invalid API key', 'an unknown key id: the same answer');
SELECT throws_ok($$SELECT payments.pay_use_api_key('not a key')$$, 'PT401', 'invalid API key', 'not a key at all: the same');
SELECT throws_ok($$SELECT payments.pay_use_api_key(NULL)$$, 'PT401', 'invalid API key', 'NULL: the same (the server goes on)');
RESET ROLE;
UPDATE payments.api_keys SET expires_at = now() WHERE key_id = (SELECT key_id FROM k WHERE what = 'read');
SET LOCAL ROLE tapk_app;
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM k WHERE what = 'read')), 'PT401',
	format('API key %s has expired', (SELECT key_id FROM k WHERE what = 'read')), 'an expired key: PT401');

-- 6. Rotation with an overlap (as the owner: an admin key rotates only
-- itself and the keys it made, section 11).
SELECT payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'admin'));
SELECT throws_ok(format('SELECT payments.pay_rotate_api_key(%s)', (SELECT key_id FROM k WHERE what = 'pay')), 'PT403',
	format('API key %s may not rotate API key %s', (SELECT key_id FROM k WHERE what = 'admin'), (SELECT key_id FROM k WHERE what = 'pay')),
	'an admin key does not rotate a key it did not make (rotation hands out the secret)');
RESET ROLE;
INSERT INTO k SELECT 'pay2', * FROM payments.pay_rotate_api_key((SELECT key_id FROM k WHERE what = 'pay'), overlap => '1 hour');
SET LOCAL ROLE tapk_app;
SELECT ok((SELECT k2.api_key <> k1.api_key AND k2.key_id = k1.key_id FROM k k1, k k2 WHERE k1.what = 'pay' AND k2.what = 'pay2'),
	'pay_rotate_api_key: a new secret for the same key id');
SELECT ok((SELECT previous_valid_until > now() FROM k WHERE what = 'pay2'), 'the old one is valid until the end of the overlap');
SELECT is((SELECT key_id FROM payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay'))),
	(SELECT key_id FROM k WHERE what = 'pay'), 'during the overlap the old secret works');
SELECT is((SELECT key_id FROM payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay2'))),
	(SELECT key_id FROM k WHERE what = 'pay'), 'and the new one');
RESET ROLE;
INSERT INTO k SELECT 'pay3', * FROM payments.pay_rotate_api_key((SELECT key_id FROM k WHERE what = 'pay'), overlap => '0 s');
SET LOCAL ROLE tapk_app;
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM k WHERE what = 'pay')), 'PT401',
	'invalid API key', 'the secret of two rotations ago no longer works');
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM k WHERE what = 'pay2')), 'PT401',
	'invalid API key', 'after an overlap of 0 the previous secret no longer works');
SELECT is((SELECT key_id FROM payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay3'))),
	(SELECT key_id FROM k WHERE what = 'pay'), 'the newest does');

-- 7. Last use: written to its row in api_key_uses (at most once a minute per key).
RESET ROLE;
SELECT ok((SELECT last_used_at IS NOT NULL FROM payments.api_key_uses WHERE key_id = (SELECT key_id FROM k WHERE what = 'pay')),
	'the key''s last use is written');
SELECT ok((SELECT last_used_at IS NULL FROM payments.api_key_uses WHERE key_id = (SELECT key_id FROM k WHERE what = 'b')),
	'an unused key has none');
SELECT ok((SELECT last_used_at >= (SELECT last_used_at FROM payments.api_key_uses WHERE key_id = i.key_id)
	FROM payments.pay_list_api_keys(merchant_id => :ma) i WHERE i.key_id = (SELECT key_id FROM k WHERE what = 'pay')),
	'pay_list_api_keys shows it');

-- 8. PostgREST's pre-request function: X-Api-Key for declared roles only.
SET LOCAL ROLE tapk_anon;
SELECT set_config('request.headers', json_build_object('x-api-key', (SELECT api_key FROM k WHERE what = 'b'))::text, true);
SELECT lives_ok($$SELECT payments.pay_postgrest_pre_request()$$, 'the pre-request function takes a good key');
SELECT is((SELECT concat_ws('|', merchant_id, source) FROM payments.pay_current_identity()), :mb || '|api_key',
	'for a declared PostgREST role the header''s key decides');
SELECT set_config('request.headers', '{"x-api-key": "pk_1_nonsense-nonsense-nonsense"}', true);
SELECT throws_ok($$SELECT payments.pay_postgrest_pre_request()$$, 'PT401', NULL, 'a bad key in the header: PT401 (HTTP 401)');
RESET ROLE;
SET LOCAL ROLE tapk_bound;
SELECT set_config('request.headers', json_build_object('x-api-key', (SELECT api_key FROM k WHERE what = 'b'))::text, true);
SELECT throws_ok($$SELECT payments.pay_postgrest_pre_request()$$, 'PT403', NULL,
	'for a role not declared PostgREST-only the header is refused');
SELECT is(payments.pay_current_merchant(), :ma::bigint, 'and the role still acts for its own merchant');
SELECT set_config('request.headers', '{}', true);
SELECT lives_ok($$SELECT payments.pay_postgrest_pre_request()$$, 'without a header the pre-request function does nothing');

-- 9. Rate limits: a key with 2 requests per second, 3 at once.
RESET ROLE;
CREATE TEMP TABLE rl AS SELECT * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['read'], rate_limit => 2, burst => 3);
GRANT SELECT ON rl TO PUBLIC;
SET LOCAL ROLE tapk_app;
SELECT lives_ok($$SELECT payments.pay_use_api_key((SELECT api_key FROM rl)), payments.pay_use_api_key((SELECT api_key FROM rl)),
	payments.pay_use_api_key((SELECT api_key FROM rl))$$, 'a burst of 3 requests passes');
SELECT throws_ok($$SELECT payments.pay_use_api_key((SELECT api_key FROM rl))$$, 'PT429', NULL, 'the 4th is refused: PT429 (HTTP 429)');
SELECT pg_sleep(0.6);
SELECT lives_ok($$SELECT payments.pay_use_api_key((SELECT api_key FROM rl))$$, 'half a second later the bucket has one again');
SELECT throws_ok($$SELECT payments.pay_use_api_key((SELECT api_key FROM rl))$$, 'PT429', NULL, 'and only one');
SELECT lives_ok($$SELECT payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay3'))$$,
	'another key of the merchant is not held back by it');

-- 11. A key made with a key is never broader than it, and goes with it.
RESET ROLE;
CREATE TEMP TABLE kk AS SELECT 'p'::text AS what, * FROM payments.pay_create_api_key(merchant_id => :ma,
	scopes => ARRAY['admin', 'read'], name => 'contractor', expires_at => now() + interval '1 day', rate_limit => 50, burst => 60);
GRANT ALL ON kk TO PUBLIC;
SET LOCAL ROLE tapk_app;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'p'));
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['admin', 'read', 'payments', 'refunds'])$$, 'PT403',
	format('API key %s may not create a key with scopes it does not have', (SELECT key_id FROM kk WHERE what = 'p')),
	'a key makes no key with a scope it does not have');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'], expires_at => now() + interval '2 days')$$, 'PT403', NULL,
	'nor one that expires after it');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'], rate_limit => 0)$$, 'PT403', NULL,
	'nor one without a rate limit (0) when it has one');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'], rate_limit => 51)$$, 'PT403', NULL,
	'nor one with a higher rate limit');
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'], burst => 1000000)$$, 'PT403', NULL,
	'nor one with a higher burst');
SELECT lives_ok($$INSERT INTO kk SELECT 'c', * FROM payments.pay_create_api_key(scopes => ARRAY['admin', 'read'], name => 'child')$$,
	'within its scopes it makes a key');
SELECT is((SELECT expires_at FROM kk WHERE what = 'c'), (SELECT expires_at FROM kk WHERE what = 'p'),
	'which, left without expiry, expires with it');
SELECT lives_ok($$INSERT INTO kk SELECT 'n', * FROM payments.pay_create_api_key(scopes => ARRAY['read'], rate_limit => 10, burst => 5,
	expires_at => now() + interval '1 hour')$$, 'lower limits and an earlier expiry are fine');
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'c'));
SELECT lives_ok($$INSERT INTO kk SELECT 'g', * FROM payments.pay_create_api_key(scopes => ARRAY['read'], name => 'grandchild')$$,
	'the child makes a key in turn');
SELECT lives_ok(format('INSERT INTO kk SELECT %L, * FROM payments.pay_rotate_api_key(%s)', 'g2', (SELECT key_id FROM kk WHERE what = 'g')),
	'a key rotates a key it made');
SELECT throws_ok(format('SELECT payments.pay_rotate_api_key(%s)', (SELECT key_id FROM kk WHERE what = 'p')), 'PT403', NULL,
	'but not the key that made it');
RESET ROLE;
SELECT is((SELECT format('%s|%s|%s', rate_limit, burst, created_by_key = (SELECT key_id FROM kk WHERE what = 'c'))
	FROM payments.api_keys WHERE key_id = (SELECT key_id FROM kk WHERE what = 'g')), '50|60|t',
	'left without limits, a key has the limits of the key that made it, and names it');
SELECT is(ARRAY(SELECT i.created_by_key FROM payments.pay_list_api_keys(merchant_id => :ma) i
	WHERE i.key_id IN (SELECT key_id FROM kk WHERE what IN ('p', 'c', 'g')) ORDER BY i.key_id),
	ARRAY[NULL, (SELECT key_id FROM kk WHERE what = 'p'), (SELECT key_id FROM kk WHERE what = 'c')],
	'pay_list_api_keys shows the key each key was made with (created_by_key; NULL for one the owner made)');
SELECT ok(payments.pay_revoke_api_key((SELECT key_id FROM kk WHERE what = 'p')), 'the owner revokes the first key');
SELECT is((SELECT count(*)::int FROM payments.pay_list_api_keys(merchant_id => :ma) WHERE key_id IN (SELECT key_id FROM kk WHERE what IN ('c', 'n', 'g'))
	AND revoked_at IS NOT NULL), 3, 'the keys it made, and theirs, are revoked with it');
SELECT is((SELECT count(*)::int FROM payments.api_key_revocations WHERE key_id IN (SELECT key_id FROM kk WHERE what IN ('p', 'c', 'n', 'g'))), 1,
	'a revocation is one row, of the key revoked: nothing is written to the keys it made');
SET LOCAL ROLE tapk_app;
SELECT throws_ok(format('SELECT payments.pay_use_api_key(%L)', (SELECT api_key FROM kk WHERE what = 'g2')), 'PT401',
	format('API key %s is revoked', (SELECT key_id FROM kk WHERE what = 'g')), 'a key made by a key made by the revoked key: PT401');
RESET ROLE;
-- an earlier expiry of a key reaches the keys it made
INSERT INTO kk SELECT 'q', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['admin', 'read'], rate_limit => 0);
SET LOCAL ROLE tapk_app;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'q'));
SELECT lives_ok($$INSERT INTO kk SELECT 'qc', * FROM payments.pay_create_api_key(scopes => ARRAY['read'], rate_limit => 0, burst => 5)$$,
	'a key without a rate limit may make one without');
-- the key is revoked while it makes one: the new key is refused
RESET ROLE;
UPDATE payments.api_keys SET expires_at = now() + interval '1 minute' WHERE key_id = (SELECT key_id FROM kk WHERE what = 'q');
SELECT is((SELECT expires_at FROM payments.api_keys WHERE key_id = (SELECT key_id FROM kk WHERE what = 'qc')),
	now() + interval '1 minute', 'a key given an earlier expiry takes the keys it made along');
INSERT INTO payments.api_key_revocations (merchant_id, key_id) SELECT merchant_id, key_id FROM payments.api_keys WHERE key_id = (SELECT key_id FROM kk WHERE what = 'q');
SET LOCAL ROLE tapk_app;
SELECT throws_ok($$SELECT payments.pay_create_api_key(scopes => ARRAY['read'])$$, 'PT401', NULL,
	'a key revoked since it was checked makes no key');
RESET ROLE;
-- at most 100 keys of a merchant that are neither revoked nor expired
INSERT INTO payments.merchants (name) VALUES ('keys C') RETURNING merchant_id AS mc \gset
SELECT is((SELECT count(*)::int FROM (SELECT payments.pay_create_api_key(merchant_id => :mc) FROM generate_series(1, 100)) x), 100,
	'a merchant has 100 keys');
SELECT throws_ok(format('SELECT payments.pay_create_api_key(merchant_id => %s)', :mc), 'PT409', NULL, 'the 101st is refused: PT409 (HTTP 409; 54000 read as 413 Payload Too Large)');
SELECT payments.pay_revoke_api_key((SELECT max(key_id) FROM payments.api_keys WHERE merchant_id = :mc));
SELECT lives_ok(format('SELECT payments.pay_create_api_key(merchant_id => %s)', :mc), 'a revoked key makes room');

-- 12. A key of A with a JWT of B's user (PostgREST's claims, a declared role): refused.
SET LOCAL ROLE tapk_anon;
SELECT set_config('request.headers', json_build_object('x-api-key', (SELECT api_key FROM k WHERE what = 'pay3'))::text, true);
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :mb, 'sub', 'user-of-b')::text, true);
SELECT throws_ok($$SELECT payments.pay_postgrest_pre_request()$$, '42501',
	format('API key %s and the JWT act for different merchants', (SELECT key_id FROM k WHERE what = 'pay')),
	'a key of A with a JWT of B is refused before anything runs');
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :ma, 'sub', 'user-of-a')::text, true);
SELECT payments.pay_postgrest_pre_request();
SELECT is((SELECT concat_ws('|', merchant_id, source, jwt_subject) FROM payments.pay_current_identity()), :ma || '|api_key|user-of-a',
	'with a JWT of A, the JWT''s subject is recorded');
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :mb, 'sub', 'user-of-b')::text, true);
SELECT throws_ok($$SELECT payments.pay_current_merchant()$$, '42501', NULL, 'claims of B later in the request: refused too');
SELECT ok((SELECT merchant_id IS NULL AND jwt_subject IS NULL FROM payments.pay_current_identity()),
	'and pay_current_identity names neither merchant nor B''s user');
SELECT set_config('request.jwt.claims', json_build_object('sub', 'user-of-someone')::text, true);
SELECT is((SELECT concat_ws('|', merchant_id, jwt_subject) FROM payments.pay_current_identity()), :ma::text,
	'a JWT naming no merchant: its subject is not recorded');
SELECT set_config('request.jwt.claims', '', true);
SELECT set_config('request.headers', '{}', true);
RESET ROLE;

-- 13. Scopes: customers and payment methods are changed with the scope customers.
INSERT INTO kk SELECT 'payonly', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['payments']);
INSERT INTO kk SELECT 'cust', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['customers']);
INSERT INTO kk SELECT 'paycust', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['payments', 'customers']);
SET LOCAL payments.merchant_id = :'ma';
SELECT customer_id AS acust FROM payments.pay_create_customer(email => 'secret@example.com',
	billing => '{"first_name": "Ada", "zip": "46201"}') \gset
RESET payments.merchant_id;
-- its default card, saved (as the worker leaves it)
INSERT INTO payments.payment_methods (merchant_id, customer_id, status, source, validation_mode, is_default,
	card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint, customer_profile_id, payment_profile_id,
	correlation_id)
VALUES (:ma, :acust, 'active', 'card', 'none', true, 'visa', '1111', 12, 2045, repeat('cd', 32), '5001', '7001', 'tap');
SET LOCAL ROLE tapk_app;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'payonly'));
SELECT throws_ok(format('SELECT payments.pay_update_customer(%s)', :acust), 'PT403',
	format('API key %s does not have the scope "customers"', (SELECT key_id FROM kk WHERE what = 'payonly')),
	'a payments key does not read a customer through pay_update_customer');
SELECT throws_ok('SELECT payments.pay_set_default_payment_method(999999999)', 'PT403', NULL,
	'nor a payment method through pay_set_default_payment_method');
SELECT throws_ok($$SELECT payments.pay_create_customer(email => 'x@example.com')$$, 'PT403', NULL, 'nor creates customers');
-- a payments key charges a customer, but reads none of its data that way
SELECT lives_ok(format('CREATE TEMP TABLE kpur AS SELECT * FROM payments.pay_purchase(amount => %L, customer_id => %s, idempotency_key => %L)',
	'4.00 USD', :acust, 'kpur-1'), 'a payments key charges a customer (its default card)');
SELECT is((SELECT concat_ws('|', customer IS NULL, card_brand IS NULL, card_last4 IS NULL, card_exp_month IS NULL,
	card_exp_year IS NULL, card_fingerprint IS NULL, customer_id = :acust, payment_method_id IS NOT NULL, status) FROM kpur),
	't|t|t|t|t|t|t|t|pending',
	'but the row it gets back has none of the customer''s data: neither its billing details and email nor its card''s');
SELECT is((SELECT concat_ws('|', customer IS NULL, card_last4 IS NULL, payment_id = (SELECT payment_id FROM kpur))
	FROM payments.pay_purchase(amount => '4.00 USD', customer_id => :acust, idempotency_key => 'kpur-1')), 't|t|t',
	'nor when it repeats the call with its idempotency key');
SELECT is((SELECT concat_ws('|', customer::text, card_last4 IS NULL) FROM payments.pay_purchase(amount => '1.00 USD',
	customer_id => :acust, customer => '{"zip": "10001"}')), '{"zip": "10001"}|t',
	'a customer object it gives is its own: returned (the card still not)');
RESET ROLE;
SELECT is((SELECT concat_ws('|', customer ->> 'email', customer ->> 'zip', card_last4, card_fingerprint = repeat('cd', 32))
	FROM payments.payments WHERE payment_id = (SELECT payment_id FROM kpur)), 'secret@example.com|46201|1111|t',
	'the payment keeps them (and sends them)');
SET LOCAL ROLE tapk_app;
SELECT payments.pay_use_api_key((SELECT api_key FROM k WHERE what = 'pay3'));
SELECT is((SELECT concat_ws('|', customer ->> 'email', card_last4) FROM payments.pay_purchase(amount => '4.00 USD',
	customer_id => :acust)), 'secret@example.com|1111',
	'a key with the scope read (pay_get_customer, pay_get_payment) gets them back');
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'paycust'));
SELECT is((SELECT concat_ws('|', customer ->> 'zip', card_last4) FROM payments.pay_purchase(amount => '4.00 USD',
	customer_id => :acust)), '46201|1111', 'so does a key with the scope customers (its functions return the customer)');
RESET ROLE;
SELECT is(concat_ws('|', payments._key_has_scope('read'), payments._key_has_scope('admin')), 't|t',
	'_key_has_scope: a request without a key (the owner) is not narrowed by scopes');
SELECT throws_ok($$SELECT payments._key_has_scope('everything')$$, '22023', 'unknown API key scope',
	'_key_has_scope: an unknown scope is an error, not false');
GRANT EXECUTE ON FUNCTION payments._key_has_scope(text) TO tapk_app;
SET LOCAL ROLE tapk_app;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'paycust'));
SELECT is(concat_ws('|', payments._key_has_scope('customers'), payments._key_has_scope('read')), 't|f',
	'_key_has_scope: with a key, the key''s scopes');
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'cust'));
SELECT is((SELECT email FROM payments.pay_update_customer(:acust, name => 'Ada')), 'secret@example.com',
	'a customers key changes the customer');
RESET ROLE;
SELECT is((SELECT string_agg(DISTINCT payments._api_function_scope(p.proname), ',') FROM pg_proc p
	WHERE p.pronamespace = 'payments'::regnamespace AND p.proname IN ('pay_create_customer', 'pay_update_customer',
		'pay_delete_customer', 'pay_save_payment_method', 'pay_set_default_payment_method', 'pay_delete_payment_method')
		AND 'payments.api_scope=customers' = ANY (p.proconfig)), 'customers',
	'the functions that change customers and payment methods carry the scope customers');

-- 14. The comments name what the code does.
SELECT is(ARRAY(SELECT f FROM unnest(payments._api_function_names()) f
	WHERE obj_description('payments.pay_grant_api(regrole)'::regprocedure, 'pg_proc') !~ ('\m' || f || '\M')), '{}'::text[],
	'pay_grant_api''s comment names every function it grants');
SELECT is(ARRAY(SELECT DISTINCT p.proname::text FROM pg_proc p
	WHERE p.pronamespace = 'payments'::regnamespace AND payments._api_function_scope(p.proname) IS NOT NULL
		AND obj_description('payments.pay_create_api_key(bigint,text[],text,timestamptz,integer,integer)'::regprocedure, 'pg_proc')
			!~ ('\m' || payments._api_function_scope(p.proname) || ' \([^)]*\m' || p.proname || '\M')
	ORDER BY 1), '{}'::text[],
	'pay_create_api_key''s comment names every function that needs a scope, under its scope');

-- 10. Audit rows name the key; old and new rows verify; a changed key id does not.
RESET ROLE;
SELECT is((SELECT key_id FROM payments.audit_log WHERE table_name = 'payments' AND operation = 'INSERT'
	AND (new_row ->> 'payment_id')::bigint = (SELECT payment_id FROM apay) AND merchant_id = :ma),
	(SELECT key_id FROM k WHERE what = 'pay'), 'the audit row of the payment names the key it was made with');
SELECT ok(EXISTS (SELECT 1 FROM payments.audit_log WHERE key_id IS NULL) AND EXISTS (SELECT 1 FROM payments.audit_log WHERE key_id IS NOT NULL),
	'rows without a key and rows with one');
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'both verify');
ALTER TABLE payments.audit_log DISABLE TRIGGER audit_log_guard;
UPDATE payments.audit_log SET key_id = key_id + 1000 WHERE table_name = 'payments' AND merchant_id = :ma
	AND (new_row ->> 'payment_id')::bigint = (SELECT payment_id FROM apay);
SELECT is(payments.pay_audit_verify() ->> 'problem', 'row_modified', 'a changed key id breaks verification');
UPDATE payments.audit_log SET key_id = key_id - 1000 WHERE table_name = 'payments' AND merchant_id = :ma
	AND (new_row ->> 'payment_id')::bigint = (SELECT payment_id FROM apay);
UPDATE payments.audit_log SET key_id = 5 WHERE audit_id = (SELECT min(audit_id) FROM payments.audit_log WHERE key_id IS NULL);
SELECT is(payments.pay_audit_verify() ->> 'problem', 'row_modified', 'so does a key id added to a row without one');
ALTER TABLE payments.audit_log ENABLE TRIGGER audit_log_guard;

-- 13. A key taken in a savepoint that is rolled back is given up with it;
-- released, it stays.
INSERT INTO kk SELECT 'sp', * FROM payments.pay_create_api_key(merchant_id => :ma, scopes => ARRAY['read']);
SET LOCAL ROLE tapk_app;
SELECT coalesce(key_id, 'none') AS key_before FROM payments.pay_current_identity() \gset
SAVEPOINT key_sp;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'sp'));
ROLLBACK TO SAVEPOINT key_sp;
SELECT is((SELECT coalesce(key_id, 'none') || '|' || coalesce((key_id = (SELECT key_id::text FROM kk WHERE what = 'sp'))::text, 'false')
	FROM payments.pay_current_identity()), :'key_before' || '|false',
	'a key taken in a savepoint rolled back is given up: the key the transaction held before acts again');
SAVEPOINT key_sp2;
SELECT payments.pay_use_api_key((SELECT api_key FROM kk WHERE what = 'sp'));
RELEASE SAVEPOINT key_sp2;
SELECT is((SELECT key_id FROM payments.pay_current_identity()), (SELECT key_id::text FROM kk WHERE what = 'sp'),
	'released, it stays');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
