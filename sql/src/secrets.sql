-- Installation secrets: the fingerprint key's id and the invoice tag.

------------------------------------------------------------------------------
-- Installation secrets
--
-- Per-installation values made at CREATE EXTENSION.  No API role can read
-- them: the C code reads the table with a direct scan that checks no
-- privileges.  The active value of a purpose is the earliest created one,
-- so after pg_dump/restore the restored one wins over the one the fresh
-- CREATE EXTENSION made.  No key is here: the card fingerprint key is a
-- file outside the database (payments.fingerprint_key_directory), named by
-- the fingerprint_key_id kept here, so that a dump never carries the key
-- next to the fingerprints; the card vault's sealing keys exist in shared
-- memory only.
------------------------------------------------------------------------------

CREATE FUNCTION payments._random_bytes(n integer) RETURNS bytea
	LANGUAGE c VOLATILE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_random_bytes';
REVOKE ALL ON FUNCTION payments._random_bytes(integer) FROM PUBLIC;
COMMENT ON FUNCTION payments._random_bytes(integer) IS
	'Internal: n (1 to 1024) bytes from the operating system''s strong random source, for making secrets.';

CREATE TABLE payments.installation_secrets (
	secret_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	purpose text NOT NULL,
	secret bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE payments.installation_secrets FROM PUBLIC;
COMMENT ON TABLE payments.installation_secrets IS
	'Per-installation values, readable by the owner only. The active value of a purpose is the earliest created one. fingerprint_key_id names the key file of pay_card_fingerprint() in payments.fingerprint_key_directory (the key itself is never in a table); invoice_tag is this installation''s tag in invoice numbers.';
COMMENT ON COLUMN payments.installation_secrets.secret_id IS 'Identifier of the secret.';
COMMENT ON COLUMN payments.installation_secrets.purpose IS 'What the value is for: fingerprint_key_id (names the key file of pay_card_fingerprint) or invoice_tag (the installation''s tag in invoice numbers).';
COMMENT ON COLUMN payments.installation_secrets.secret IS 'The bytes (16 for fingerprint_key_id, 3 for invoice_tag).';
COMMENT ON COLUMN payments.installation_secrets.created_at IS 'When the secret was made; the earliest per purpose is the active one.';
SELECT pg_catalog.pg_extension_config_dump('payments.installation_secrets', '');

CREATE FUNCTION payments._fingerprint_key_create(key_id bytea, key bytea) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_fingerprint_key_create';
REVOKE ALL ON FUNCTION payments._fingerprint_key_create(bytea, bytea) FROM PUBLIC;
COMMENT ON FUNCTION payments._fingerprint_key_create(bytea, bytea) IS
	'Internal: writes the card fingerprint key file of a key id in payments.fingerprint_key_directory, holding key (NULL: 32 fresh random bytes); keeps an existing file that holds the same key.';

INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('fingerprint_key_id', payments._random_bytes(16));
SELECT payments._fingerprint_key_create(s.secret, NULL)
	FROM payments.installation_secrets s WHERE s.purpose = 'fingerprint_key_id';

-- A short random tag of this installation goes into every invoice number
-- sent to the gateway.  Invoice numbers identify our transactions there (the
-- duplicate window, the lookups past it); two installations sharing one
-- gateway account (a sandbox shared by developers, staging beside
-- production) would otherwise both send P1, P2, ... and take each other's
-- transactions for their own.
INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('invoice_tag', payments._random_bytes(3));

-- In C (src/invoice_tag.c): every payment, refund and renewal reads it,
-- and each backend keeps it until the table changes (the trigger below).
CREATE FUNCTION payments._invoice_tag() RETURNS text
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'pay_invoice_tag';
REVOKE ALL ON FUNCTION payments._invoice_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._invoice_tag() IS
	'Internal: this installation''s six-character tag in invoice numbers (R<tag><operation_id>; P<tag><payment_id>, S<tag> and a subscription period''s charge, _invoice_charge_number, and C<tag><customer_id> of payments, subscriptions and customers made before the database first changed server; after it, the server life''s tag: _server_tag()), from installation_secrets.';

-- Backends cache the active secret; any change to the table (including a
-- restore through COPY) tells them all to drop it.
CREATE FUNCTION payments._installation_secrets_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_installation_secrets_changed';
REVOKE ALL ON FUNCTION payments._installation_secrets_changed() FROM PUBLIC;
COMMENT ON FUNCTION payments._installation_secrets_changed() IS
	'Internal: statement trigger on installation_secrets that makes every backend drop its cached secrets.';
CREATE TRIGGER installation_secrets_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.installation_secrets
	FOR EACH STATEMENT EXECUTE FUNCTION payments._installation_secrets_changed();
COMMENT ON TRIGGER installation_secrets_changed ON payments.installation_secrets IS
	'Invalidates the per-backend cache of the active secrets.';
