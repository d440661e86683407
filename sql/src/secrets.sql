-- Installation secrets: the fingerprint key and the invoice tag.

------------------------------------------------------------------------------
-- Installation secrets
--
-- Per-installation keys (the card fingerprint HMAC key) made at CREATE
-- EXTENSION.  No API role can read them: the C code reads the table with a
-- direct scan that checks no privileges.  The active secret of a purpose is
-- the earliest created one, so after pg_dump/restore the restored secret
-- wins over the one the fresh CREATE EXTENSION made and fingerprints stay
-- stable.  The card vault (encryption) key is NOT here: it is the file
-- payments_vault.key in the data directory.
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
	'Per-installation secrets, readable by the owner only. The active secret of a purpose is the earliest created one; purpose card_fingerprint keys pay_card_fingerprint(). Changing it changes every fingerprint.';
COMMENT ON COLUMN payments.installation_secrets.secret_id IS 'Identifier of the secret.';
COMMENT ON COLUMN payments.installation_secrets.purpose IS 'What the secret is for: card_fingerprint (the key of pay_card_fingerprint) or invoice_tag (the installation''s tag in invoice numbers).';
COMMENT ON COLUMN payments.installation_secrets.secret IS 'The secret bytes (16 to 64 for card_fingerprint, 3 for invoice_tag).';
COMMENT ON COLUMN payments.installation_secrets.created_at IS 'When the secret was made; the earliest per purpose is the active one.';
SELECT pg_catalog.pg_extension_config_dump('payments.installation_secrets', '');

INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('card_fingerprint', payments._random_bytes(32));

-- A short random tag of this installation goes into every invoice number
-- sent to the gateway.  Invoice numbers identify our transactions there (the
-- duplicate window, the lookups past it); two installations sharing one
-- gateway account (a sandbox shared by developers, staging beside
-- production) would otherwise both send P1, P2, ... and take each other's
-- transactions for their own.
INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('invoice_tag', payments._random_bytes(3));

CREATE FUNCTION payments._invoice_tag() RETURNS text
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments
	AS $$
	SELECT upper(encode(s.secret, 'hex')) FROM payments.installation_secrets s
	WHERE s.purpose = 'invoice_tag' ORDER BY s.created_at, s.secret_id LIMIT 1
	$$;
REVOKE ALL ON FUNCTION payments._invoice_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._invoice_tag() IS
	'Internal: this installation''s six-character tag in invoice numbers (P<tag><payment_id>, R<tag><operation_id>), from installation_secrets.';

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
