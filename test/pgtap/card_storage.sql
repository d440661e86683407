-- pay_card: the storage ban, the secret's privileges, fingerprints.
BEGIN;
SELECT plan(41);

SELECT (extract(year FROM now())::int + 3)::text AS fy \gset

-- 1. Storage ban: no relation column or composite attribute may be, or
--    contain, a pay_card.
SELECT throws_ok($$CREATE TABLE card_t (id int, c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'CREATE TABLE with a pay_card column is rejected');
SELECT throws_ok($$CREATE TEMP TABLE card_tt (c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'CREATE TEMP TABLE with a pay_card column is rejected');
SELECT throws_ok($$CREATE UNLOGGED TABLE card_ut (c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'CREATE UNLOGGED TABLE with a pay_card column is rejected');
SELECT throws_ok($$CREATE TABLE card_pt (id int, c payments.pay_card) PARTITION BY RANGE (id)$$,
	'22Y16', 'cannot store pay_card values', 'a partitioned table with a pay_card column is rejected');
SELECT throws_ok($$CREATE TABLE card_a (c payments.pay_card[])$$,
	'22Y16', 'cannot store pay_card values', 'an array-of-pay_card column is rejected');

SELECT lives_ok($$CREATE TABLE card_ok (id int, fingerprint text, note text)$$,
	'a table without card columns is accepted');
SELECT throws_ok($$ALTER TABLE card_ok ADD COLUMN c payments.pay_card$$,
	'22Y16', 'cannot store pay_card values', 'ALTER TABLE ADD COLUMN pay_card is rejected');
SELECT throws_ok($$ALTER TABLE card_ok ALTER COLUMN note TYPE payments.pay_card USING note::payments.pay_card$$,
	'22Y16', 'cannot store pay_card values', 'ALTER COLUMN ... TYPE pay_card is rejected');
SELECT hasnt_column('card_ok', 'c', 'the rejected column was not added');

SELECT throws_ok(format($$CREATE TABLE card_ctas AS SELECT payments.pay_card('4111111111111111', 12, %s) AS c$$, :'fy'),
	'22Y16', 'cannot store pay_card values', 'CREATE TABLE AS with a card is rejected');
SELECT hasnt_table('card_ctas', 'CREATE TABLE AS left no table');
SELECT throws_ok(format($$SELECT payments.pay_card('4111111111111111', 12, %s) AS c INTO card_si$$, :'fy'),
	'22Y16', 'cannot store pay_card values', 'SELECT INTO with a card is rejected');
SELECT throws_ok(format($$CREATE MATERIALIZED VIEW card_mv AS SELECT payments.pay_card('4111111111111111', 12, %s) AS c$$, :'fy'),
	'22Y16', 'cannot store pay_card values', 'CREATE MATERIALIZED VIEW with a card is rejected');
SELECT throws_ok($$CREATE TYPE card_ct AS (label text, c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'a composite type with a pay_card attribute is rejected');
SELECT lives_ok($$CREATE TYPE card_ct2 AS (label text)$$, 'a composite type without a card is accepted');
SELECT throws_ok($$ALTER TYPE card_ct2 ADD ATTRIBUTE c payments.pay_card$$,
	'22Y16', 'cannot store pay_card values', 'ALTER TYPE ... ADD ATTRIBUTE pay_card is rejected');

SELECT lives_ok($$CREATE DOMAIN card_dom AS payments.pay_card$$,
	'a domain over pay_card may exist (it stores nothing)');
SELECT throws_ok($$CREATE TABLE card_dt (c card_dom)$$,
	'22Y16', 'cannot store pay_card values', 'a column of a domain over pay_card is rejected');
SELECT throws_ok($$CREATE TABLE card_dat (c card_dom[])$$,
	'22Y16', 'cannot store pay_card values', 'a column of an array of such a domain is rejected');
SELECT throws_ok($$CREATE TYPE card_ct3 AS (c card_dom)$$,
	'22Y16', 'cannot store pay_card values', 'a composite attribute of such a domain is rejected');
SELECT lives_ok($$CREATE DOMAIN card_dom2 AS card_dom$$, 'a domain over a domain over pay_card may exist');
SELECT throws_ok($$CREATE TABLE card_dt2 (c card_dom2)$$,
	'22Y16', 'cannot store pay_card values', 'a column of a domain over a domain over pay_card is rejected');

SELECT throws_ok($$CREATE SCHEMA card_s CREATE TABLE t (c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'CREATE SCHEMA ... CREATE TABLE with a card is rejected');
SELECT lives_ok($$CREATE FOREIGN DATA WRAPPER card_fdw; CREATE SERVER card_srv FOREIGN DATA WRAPPER card_fdw$$,
	'a dummy foreign server');
SELECT throws_ok($$CREATE FOREIGN TABLE card_ft (c payments.pay_card) SERVER card_srv$$,
	'22Y16', 'cannot store pay_card values', 'a foreign table with a pay_card column is rejected');

SET LOCAL session_replication_role = replica;
SELECT throws_ok($$CREATE TABLE card_rep (c payments.pay_card)$$,
	'22Y16', 'cannot store pay_card values', 'the ban holds under session_replication_role = replica');
RESET session_replication_role;

SELECT lives_ok($$CREATE VIEW card_v AS SELECT NULL::payments.pay_card AS c$$,
	'a view (no data) may have a pay_card column');

-- 2. The secret: no API role can read it, nor use the fingerprint function.
CREATE ROLE card_api NOLOGIN;
GRANT USAGE ON SCHEMA payments TO card_api;
SELECT pay_card_fingerprint(pay_card('4111111111111111', 12, :fy)) AS fp_owner \gset
SET LOCAL ROLE card_api;
SELECT throws_ok($$SELECT secret FROM payments.installation_secrets$$,
	'42501', NULL, 'a role without privileges cannot read installation_secrets');
SELECT throws_ok($$SELECT payments._random_bytes(32)$$,
	'42501', NULL, 'a role without privileges cannot call _random_bytes');
SELECT throws_ok($$SELECT pay_card_fingerprint(pay_card('4111 1111 1111 1111', 12, 2040))$$,
	'42501', NULL, 'an unprivileged role cannot compute fingerprints (with the function, a stored fingerprint gives the card number away)');
RESET ROLE;

-- 3. Fingerprints.
SELECT is(pay_card_fingerprint(pay_card('4111111111111111', 12, :fy)),
		  pay_card_fingerprint(pay_card('4111111111111111', 12, :fy)),
	'the same card gives the same fingerprint');
SELECT is(
	(SELECT count(DISTINCT pay_card_fingerprint(pay_card(n, 1, :fy, c)))::int
	   FROM (VALUES ('4111111111111111', NULL), ('4111 1111 1111 1111', '123'),
					('4111-1111-1111-1111', '999'), (' 4111 1111 1111 1111 ', NULL),
					('41111111-11111111', NULL)) AS v(n, c)),
	1, 'spaces, dashes, expiry and security code do not change the fingerprint');
SELECT is(pay_card_fingerprint(format('{"number": "4111-1111-1111-1111", "exp_month": 3, "exp_year": %s}', :fy)::payments.pay_card),
		  :'fp_owner', 'JSON input gives the same fingerprint');
SELECT isnt(pay_card_fingerprint(pay_card('4012888888881881', 12, :fy)), :'fp_owner',
	'a different card gives a different fingerprint');
SELECT is(
	(SELECT count(DISTINCT pay_card_fingerprint(pay_card(n, 1, :fy)))::int
	   FROM (VALUES ('4111111111111111'), ('4012888888881881'), ('5555555555554444'),
					('378282246310005'), ('6011111111111117'), ('3530111333300000')) AS v(n)),
	6, 'six different cards give six different fingerprints');

-- The fingerprint is HMAC-SHA256 of the digits under the earliest secret.
CREATE FUNCTION pg_temp.hmac_sha256(key bytea, msg bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	k bytea := key || decode(repeat('00', 64 - length(key)), 'hex');
	ipad bytea := k;
	opad bytea := k;
BEGIN
	FOR i IN 0..63 LOOP
		ipad := set_byte(ipad, i, get_byte(k, i) # 54);
		opad := set_byte(opad, i, get_byte(k, i) # 92);
	END LOOP;
	RETURN encode(sha256(opad || sha256(ipad || msg)), 'hex');
END $$;
-- The key is a file outside the database, named by the key id in the table.
CREATE FUNCTION pg_temp.key_file(id bytea) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(nullif(current_setting('payments.fingerprint_key_directory'), ''),
					current_setting('data_directory') || '.payments_keys')
		|| '/' || encode(id, 'hex') || '.key' $$;
SELECT is(:'fp_owner',
	pg_temp.hmac_sha256(pg_read_binary_file(pg_temp.key_file((SELECT secret FROM payments.installation_secrets
						  WHERE purpose = 'fingerprint_key_id' ORDER BY created_at LIMIT 1))),
						'4111111111111111'::bytea),
	'the fingerprint is HMAC-SHA256(key file, digits)');
SELECT is((SELECT count(*) FROM payments.installation_secrets WHERE length(secret) >= 16 AND purpose <> 'fingerprint_key_id'),
	0::bigint, 'no key is kept in installation_secrets');

-- A restored (older) key id takes over at once; a newer one does not.
INSERT INTO payments.installation_secrets (purpose, secret, created_at)
	VALUES ('fingerprint_key_id', '\x00112233445566778899aabbccddeeff', '2000-01-01');
SELECT lives_ok($$SELECT payments._fingerprint_key_create('\x00112233445566778899aabbccddeeff',
	'\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f')$$,
	'the key file of a key id is written (as an owner restores it)');
SELECT throws_ok($$SELECT payments._fingerprint_key_create('\x00112233445566778899aabbccddeeff',
	'\xff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f')$$,
	'42710', NULL, 'an existing key file is never replaced by another key');
SELECT is(pay_card_fingerprint(pay_card('4111111111111111', 12, :fy)),
	pg_temp.hmac_sha256('\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', '4111111111111111'::bytea),
	'an older key id (as after pg_restore) becomes the active one');
INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('fingerprint_key_id', payments._random_bytes(16));
SELECT is(pay_card_fingerprint(pay_card('4111111111111111', 12, :fy)),
	pg_temp.hmac_sha256('\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', '4111111111111111'::bytea),
	'a newer key id does not replace the earliest one');

SELECT * FROM finish();
ROLLBACK;
