-- Card input: the pay_card type, its storage ban, sealing for the worker.

------------------------------------------------------------------------------
-- pay_card: a validated card, masked on output, sealed inside.
--
-- Holds brand, expiry, last four digits and the keyed fingerprint in clear,
-- and the number, security code and holder name encrypted (AES-256-GCM)
-- under the vault key (shared memory only).  Text input is a JSON object; text output is masked
-- ('visa ****1111 12/2030'); there is no binary form.  Tables, materialized
-- views and composite types cannot hold it (see the storage ban below).
------------------------------------------------------------------------------

CREATE TYPE payments.pay_card;

CREATE FUNCTION payments.pay_card_in(cstring) RETURNS payments.pay_card
	LANGUAGE c STABLE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_card_out(payments.pay_card) RETURNS cstring
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_card_recv(internal) RETURNS payments.pay_card
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_card_send(payments.pay_card) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';

CREATE TYPE payments.pay_card (
	INPUT = payments.pay_card_in,
	OUTPUT = payments.pay_card_out,
	RECEIVE = payments.pay_card_recv,
	SEND = payments.pay_card_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = plain
);
COMMENT ON TYPE payments.pay_card IS
	'A validated payment card for passing to payment functions. Masked on output (''visa ****1111 12/2030''); the number and security code are sealed and can never be read back; cannot be stored in tables.';
COMMENT ON FUNCTION payments.pay_card_in(cstring) IS
	'Text input of pay_card: a JSON object with "number" (the card number as a string of digits), "exp_month" and "exp_year" (integers), and optionally "cvv" (a string of digits) and "holder_name" (a string). Same rules as pay_card(...).';
COMMENT ON FUNCTION payments.pay_card_out(payments.pay_card) IS
	'Masked text output of pay_card: brand, last four digits, expiry, e.g. ''visa ****1111 12/2030''.';
COMMENT ON FUNCTION payments.pay_card_recv(internal) IS
	'Binary input of pay_card: always an error; cards never travel in binary form.';
COMMENT ON FUNCTION payments.pay_card_send(payments.pay_card) IS
	'Binary output of pay_card: always an error; cards never travel in binary form.';

CREATE FUNCTION payments.pay_card(
	number text, exp_month integer, exp_year integer,
	cvv text DEFAULT NULL, holder_name text DEFAULT NULL)
	RETURNS payments.pay_card
	LANGUAGE c VOLATILE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pay_card_make';
COMMENT ON FUNCTION payments.pay_card(text, integer, integer, text, text) IS
	'Validate a card and return it as pay_card. number: 12 to 16 digits (the gateway takes at most 16), optionally grouped by single spaces or dashes, Luhn-valid, of a supported brand (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay) and a length that brand issues. exp_month 1-12; exp_year two (20YY) or four digits; valid through the end of the month (UTC), at most 20 years ahead. cvv: 3 digits, 4 for American Express. holder_name: up to 100 characters. A NULL number, month or year is an error (22004); NULL cvv or holder_name means absent. Errors never quote the input.';

CREATE FUNCTION payments.pay_card_brand(card payments.pay_card) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_brand(payments.pay_card) IS
	'Brand of a card: visa, mastercard, amex, discover, jcb, diners or unionpay.';

CREATE FUNCTION payments.pay_card_last4(card payments.pay_card) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_last4(payments.pay_card) IS
	'Last four digits of the card number.';

CREATE FUNCTION payments.pay_card_exp_month(card payments.pay_card) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_exp_month(payments.pay_card) IS
	'Expiry month of the card, 1 to 12.';

CREATE FUNCTION payments.pay_card_exp_year(card payments.pay_card) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_exp_year(payments.pay_card) IS
	'Expiry year of the card, four digits.';

CREATE FUNCTION payments.pay_card_has_cvv(card payments.pay_card) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_has_cvv(payments.pay_card) IS
	'Whether a security code (CVV) was given with the card. The code itself can never be read back.';

CREATE FUNCTION payments.pay_card_fingerprint(card payments.pay_card) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_fingerprint(payments.pay_card) IS
	'Keyed fingerprint of the card number: HMAC-SHA256 under the installation''s fingerprint key (a file outside the database, in payments.fingerprint_key_directory), 64 hex digits. The same number gives the same fingerprint however it was typed; safe to store for recognising a returning card.';

CREATE FUNCTION payments.pay_card_info(card payments.pay_card) RETURNS jsonb
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_card_info(payments.pay_card) IS
	'Everything that may be kept about a card, as jsonb: brand, last4, exp_month, exp_year, fingerprint, has_cvv.';

CREATE FUNCTION payments._pay_card_unseal_check(card payments.pay_card) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_card_unseal_check';
REVOKE ALL ON FUNCTION payments._pay_card_unseal_check(payments.pay_card) FROM PUBLIC;
COMMENT ON FUNCTION payments._pay_card_unseal_check(payments.pay_card) IS
	'Internal: true when this server''s vault key opens the card and its sealed contents match its clear header. Reveals nothing secret.';

------------------------------------------------------------------------------
-- Storage ban: no column or composite attribute may be, or contain, a
-- pay_card.  Checked after every DDL command by the DDL guard
-- (ddl_guard.sql: no tag filter, so CREATE SCHEMA ... CREATE TABLE, ALTER
-- TYPE ... ADD ATTRIBUTE and IMPORT FOREIGN SCHEMA are covered too); views
-- hold no data and are allowed.
------------------------------------------------------------------------------

CREATE FUNCTION payments._type_contains_card(typid oid) RETURNS boolean
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH RECURSIVE t(oid) AS (
		SELECT typid
		UNION
		SELECT c.child
		  FROM t
		  JOIN pg_catalog.pg_type ty ON ty.oid = t.oid
		 CROSS JOIN LATERAL (
			SELECT ty.typbasetype WHERE ty.typtype = 'd'
			UNION ALL
			SELECT ty.typelem WHERE ty.typelem <> 0
			UNION ALL
			SELECT a.atttypid FROM pg_catalog.pg_attribute a
			 WHERE ty.typrelid <> 0 AND a.attrelid = ty.typrelid
			   AND a.attnum > 0 AND NOT a.attisdropped
			UNION ALL
			SELECT r.rngsubtype FROM pg_catalog.pg_range r
			 WHERE r.rngtypid = ty.oid OR r.rngmultitypid = ty.oid
		 ) AS c(child)
	)
	SELECT EXISTS (SELECT FROM t WHERE t.oid = 'payments.pay_card'::pg_catalog.regtype)
	$$;
COMMENT ON FUNCTION payments._type_contains_card(oid) IS
	'Internal: whether a type is pay_card or contains one (domain over it, array of it, composite or range with it inside).';

CREATE FUNCTION payments._stored_card(classid oid, objid oid) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	-- a relation, or the composite type of one (CREATE TYPE ... AS, ALTER TYPE)
	WITH rel(oid) AS (
		SELECT objid WHERE classid = 'pg_catalog.pg_class'::regclass
		UNION ALL
		SELECT ty.typrelid FROM pg_catalog.pg_type ty
		WHERE classid = 'pg_catalog.pg_type'::regclass AND ty.oid = objid AND ty.typrelid <> 0
	)
	SELECT format('%s %s of %s %s has type %s, which is or contains payments.pay_card.',
			CASE c.relkind WHEN 'c' THEN 'Attribute' ELSE 'Column' END,
			quote_ident(a.attname),
			CASE c.relkind
				WHEN 'c' THEN 'composite type'
				WHEN 'm' THEN 'materialized view'
				WHEN 'f' THEN 'foreign table'
				WHEN 'p' THEN 'partitioned table'
				ELSE 'table' END,
			c.oid::regclass, format_type(a.atttypid, a.atttypmod))
	FROM rel
	JOIN pg_catalog.pg_class c ON c.oid = rel.oid
	JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
	WHERE c.relkind <> 'v'
		AND a.attnum > 0 AND NOT a.attisdropped
		AND payments._type_contains_card(a.atttypid)
	ORDER BY a.attnum
	LIMIT 1
	$$;
COMMENT ON FUNCTION payments._stored_card(oid, oid) IS
	'Internal: the storage ban''s test of one object a DDL command made or changed (classid, objid: a relation or a composite type): which column or attribute is, or contains, a pay_card, as a sentence; else NULL. The DDL guard (payments._ddl_guard) refuses it (SQLSTATE 22Y16).';

CREATE FUNCTION payments._card_sealed(card payments.pay_card) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pay_card_sealed';
REVOKE ALL ON FUNCTION payments._card_sealed(payments.pay_card) FROM PUBLIC;
COMMENT ON FUNCTION payments._card_sealed(payments.pay_card) IS
	'Internal: the sealed bytes of a card, as kept in payments.card_vault until the gateway answers. Owner only.';

CREATE FUNCTION payments._opaque_data_sealed(descriptor text, value text) RETURNS bytea
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_opaque_data_sealed';
REVOKE ALL ON FUNCTION payments._opaque_data_sealed(text, text) FROM PUBLIC;
COMMENT ON FUNCTION payments._opaque_data_sealed(text, text) IS
	'Internal: Accept.js opaque data sealed with the vault key, as kept in payments.card_vault until the gateway answers (whoever holds the nonce can charge the card once). Owner only.';

CREATE FUNCTION payments._vault_rotate_key(force boolean DEFAULT false) RETURNS boolean
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_vault_rotate_key';
REVOKE ALL ON FUNCTION payments._vault_rotate_key(boolean) FROM PUBLIC;
COMMENT ON FUNCTION payments._vault_rotate_key(boolean) IS
	'Internal: replaces the card vault sealing key (shared memory only) when it has sealed for payments.vault_key_rotation: re-seals every waiting card (queued, sending, unknown, dead letter) still under an older key with the current one, then makes a new key, current from commit; the previous key is forgotten. Waits (returns false) while an open or prepared transaction sealed card data under the previous key, for payments.vault_key_rotation_max_wait at most. The worker calls it. force: rotate now, even past such a transaction (a card it commits sealed under the previous key is lost). Only in the database the worker serves (payments.database): elsewhere it does nothing and returns false. Owner only.';
