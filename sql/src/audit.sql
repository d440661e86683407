-- The audit trail: audit_log, seals, the C trigger, attach, verify, prune.

------------------------------------------------------------------------------
-- Audit: one append-only, tamper-evident row per change.
--
-- The C trigger payments._audit_trigger() writes payments.audit_log: old
-- and new row as jsonb (card data never present: pay_card columns,
-- sensitive column names and bytea contents are left out, card-number-like
-- values replaced), the changed columns, current_user and session_user, the
-- JWT subject, the correlation id, the transaction id and the statement
-- timestamp, and a SHA-256 hash of the row.
--
-- Tamper evidence by sealed batches (src/audit.c explains why not a chain
-- per row: a chain head makes concurrent writers queue).  Inserts only hash
-- their own row; payments.pay_audit_seal() (pg_cron, e.g. every minute)
-- chains each merchant's new rows into a payments.audit_seals record;
-- payments.pay_audit_verify() finds a modified, missing, added or reordered
-- row and a broken seal chain.  Rows written since the last seal are
-- protected by their row hash only until the next seal.  The owner can
-- rewrite everything, hashes included: a digest of the latest seals
-- (payments.pay_audit_digest()) kept where the owner cannot change it lets
-- pay_audit_verify(digest => ...) find that too.
--
-- Retention: payments.pay_audit_prune(older_than) deletes whole sealed
-- batches (a prefix of each merchant's chain), marks their seals pruned and
-- writes a PRUNE audit row; verification goes on checking the seal chain.
------------------------------------------------------------------------------

CREATE SEQUENCE payments.audit_log_audit_id_seq;
COMMENT ON SEQUENCE payments.audit_log_audit_id_seq IS
	'Audit ids. No cache: sealing relies on ids being handed out in order.';

CREATE TABLE payments.audit_log (
	merchant_id bigint NOT NULL,
	audit_id bigint NOT NULL DEFAULT nextval('payments.audit_log_audit_id_seq'),
	table_schema text NOT NULL,
	table_name text NOT NULL,
	operation text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'PRUNE')),
	old_row jsonb,
	new_row jsonb,
	changed_columns text[],
	db_role text NOT NULL,
	session_role text NOT NULL,
	app_user text,
	correlation_id text,
	txid xid8 NOT NULL,
	logged_at timestamptz NOT NULL,
	row_hash bytea NOT NULL CHECK (length(row_hash) = 32),
	key_id bigint,
	PRIMARY KEY (merchant_id, audit_id)
);
ALTER SEQUENCE payments.audit_log_audit_id_seq OWNED BY payments.audit_log.audit_id;
-- The row images are the large values here: lz4 compresses them several
-- times faster than pglz, the default (where the server was built without
-- lz4, pglz stays).
DO $$
BEGIN
	ALTER TABLE payments.audit_log ALTER COLUMN old_row SET COMPRESSION lz4,
		ALTER COLUMN new_row SET COMPRESSION lz4;
EXCEPTION
	WHEN feature_not_supported THEN NULL;
END
$$;
-- No statistics of the row images and the hash: no query filters on them
-- whole, and ANALYZE spent most of its time on them (each sampled image
-- decompressed, and sorted by jsonb's comparison), about half a second of
-- CPU each time autovacuum analyzed a busy audit log.
ALTER TABLE payments.audit_log ALTER COLUMN old_row SET STATISTICS 0,
	ALTER COLUMN new_row SET STATISTICS 0, ALTER COLUMN row_hash SET STATISTICS 0;
-- Few indexes: every audited change writes each of them.  The primary key
-- serves sealing and verification (per merchant, by audit id); one BRIN
-- index on logged_at and txid (rows arrive in time and transaction order:
-- its ranges stay narrow, and adding a row to it costs next to nothing,
-- where a btree on txid, all of a transaction's rows one key, cost about
-- a tenth of the trigger's time) serves time ranges, of a merchant too
-- (with the primary key), of a table (filtered), and finds a
-- transaction's changes.  PostgreSQL has no BRIN operator class for xid8:
-- payments.xid8_minmax_ops is the stock minmax one over xid8's operators.
CREATE OPERATOR CLASS payments.xid8_minmax_ops FOR TYPE xid8 USING brin AS
	OPERATOR 1 pg_catalog.< (xid8, xid8),
	OPERATOR 2 pg_catalog.<= (xid8, xid8),
	OPERATOR 3 pg_catalog.= (xid8, xid8),
	OPERATOR 4 pg_catalog.>= (xid8, xid8),
	OPERATOR 5 pg_catalog.> (xid8, xid8),
	FUNCTION 1 pg_catalog.brin_minmax_opcinfo(internal),
	FUNCTION 2 pg_catalog.brin_minmax_add_value(internal, internal, internal, internal),
	FUNCTION 3 pg_catalog.brin_minmax_consistent(internal, internal, internal),
	FUNCTION 4 pg_catalog.brin_minmax_union(internal, internal, internal);
COMMENT ON OPERATOR CLASS payments.xid8_minmax_ops USING brin IS
	'BRIN minmax operator class for xid8 (audit_log.txid), which PostgreSQL does not ship.';
-- Not autosummarize: under a heavy write load each new range asks
-- autovacuum for a work item, its queue (256) fills, and every request
-- refused logged a message with the full statement context (1,087 of them
-- in one renewal benchmark).  Vacuum, which autovacuum runs on this
-- insert-only table as it grows, summarizes the new ranges; a range not yet
-- summarized is read whole by a query, never missed.
CREATE INDEX audit_log_logged_at_txid ON payments.audit_log
	USING brin (logged_at, txid payments.xid8_minmax_ops);
REVOKE ALL ON payments.audit_log FROM PUBLIC;
COMMENT ON TABLE payments.audit_log IS
	'One row per INSERT, UPDATE, DELETE or TRUNCATE of an audited table (pay_audit_attach). Append-only for every role: only pay_audit_prune() removes whole sealed batches. Never holds card data.';
COMMENT ON COLUMN payments.audit_log.merchant_id IS 'The changed row''s merchant_id when the role that acted may act for that merchant (bound to it, acting for every merchant, or the change came from the owner''s code: the extension''s functions, the worker), else the merchant the role acts for (pay_current_merchant(), a setting or claim it may not use ignored). Where none is decided the change is refused (42501).';
COMMENT ON COLUMN payments.audit_log.audit_id IS 'Increasing id; seals cover ranges of it.';
COMMENT ON COLUMN payments.audit_log.table_schema IS 'Schema of the changed table (text, so that it outlives the table).';
COMMENT ON COLUMN payments.audit_log.table_name IS 'Name of the changed table.';
COMMENT ON COLUMN payments.audit_log.operation IS 'INSERT, UPDATE, DELETE, TRUNCATE, or PRUNE (a retention run).';
COMMENT ON COLUMN payments.audit_log.old_row IS 'The row before UPDATE or DELETE, masked: no pay_card or sensitive column, bytea as {"bytes": N}.';
COMMENT ON COLUMN payments.audit_log.new_row IS 'The row after INSERT or UPDATE, masked likewise; for PRUNE, what was pruned.';
COMMENT ON COLUMN payments.audit_log.changed_columns IS 'UPDATE: the columns whose value changed (masked ones by name only).';
COMMENT ON COLUMN payments.audit_log.db_role IS 'The role that acted: SET ROLE, else the login role (PostgREST: the role of the JWT, e.g. authenticated), not the owner of the SECURITY DEFINER function the change went through. Rows written before 0.2.0 hold current_user.';
COMMENT ON COLUMN payments.audit_log.session_role IS 'session_user when the change was made (PostgREST: the authenticator).';
COMMENT ON COLUMN payments.audit_log.app_user IS 'The application''s user: the "sub" claim of request.jwt.claims, only for a role declared with pay_declare_postgrest_role() (NOLOGIN: PostgREST set the claims); else NULL, as any session can set the claims. The digits of a card number in it masked (X), unless it is exactly a UUID.';
COMMENT ON COLUMN payments.audit_log.correlation_id IS 'x-request-id (or traceparent) of request.headers, else payments.correlation_id, else the row''s own correlation_id; the digits of a card number in it masked (X), unless it is exactly a UUID or a W3C traceparent.';
COMMENT ON COLUMN payments.audit_log.txid IS 'The top-level transaction id (xid8).';
COMMENT ON COLUMN payments.audit_log.logged_at IS 'statement_timestamp() of the change.';
COMMENT ON COLUMN payments.audit_log.row_hash IS 'SHA-256 of the other columns (see src/audit.c); recomputed by pay_audit_verify().';
COMMENT ON COLUMN payments.audit_log.key_id IS 'The merchant API key the change was made with (pay_use_api_key, or X-Api-Key through PostgREST), else NULL. In the row hash only when not NULL, so rows written before 0.2.0 verify as they did.';
SELECT pg_catalog.pg_extension_config_dump('payments.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('payments.audit_log_audit_id_seq', '');

CREATE SEQUENCE payments.audit_seals_seal_id_seq;
CREATE TABLE payments.audit_seals (
	merchant_id bigint NOT NULL,
	seal_id bigint NOT NULL DEFAULT nextval('payments.audit_seals_seal_id_seq'),
	range_start bigint NOT NULL,
	range_end bigint NOT NULL,
	first_audit_id bigint NOT NULL,
	last_audit_id bigint NOT NULL,
	row_count bigint NOT NULL CHECK (row_count > 0),
	prev_seal_hash bytea NOT NULL CHECK (length(prev_seal_hash) = 32),
	batch_hash bytea NOT NULL CHECK (length(batch_hash) = 32),
	sealed_at timestamptz NOT NULL DEFAULT now(),
	pruned_at timestamptz,
	PRIMARY KEY (merchant_id, seal_id),
	CHECK (range_start < range_end)
);
ALTER SEQUENCE payments.audit_seals_seal_id_seq OWNED BY payments.audit_seals.seal_id;
REVOKE ALL ON payments.audit_seals FROM PUBLIC;
COMMENT ON TABLE payments.audit_seals IS
	'Sealed batches of audit rows, chained per merchant: batch_hash = SHA-256 of prev_seal_hash, the range, the count and the row hashes in audit_id order. Written by pay_audit_seal(); append-only except pruned_at.';
COMMENT ON COLUMN payments.audit_seals.range_start IS 'The batch holds the merchant''s rows with range_start < audit_id <= range_end; range_start is the previous seal''s range_end (0 for the first).';
COMMENT ON COLUMN payments.audit_seals.range_end IS 'Upper end (inclusive) of the batch''s audit_id range.';
COMMENT ON COLUMN payments.audit_seals.first_audit_id IS 'Smallest audit_id in the batch.';
COMMENT ON COLUMN payments.audit_seals.last_audit_id IS 'Largest audit_id in the batch.';
COMMENT ON COLUMN payments.audit_seals.row_count IS 'Number of rows in the batch.';
COMMENT ON COLUMN payments.audit_seals.prev_seal_hash IS 'batch_hash of the merchant''s previous seal (32 zero bytes for the first).';
COMMENT ON COLUMN payments.audit_seals.batch_hash IS 'SHA-256 over prev_seal_hash, the seal''s identity, range and count, and the row hashes in audit_id order.';
COMMENT ON COLUMN payments.audit_seals.pruned_at IS 'When pay_audit_prune() deleted the batch''s rows; the seal stays in the chain.';
SELECT pg_catalog.pg_extension_config_dump('payments.audit_seals', '');
SELECT pg_catalog.pg_extension_config_dump('payments.audit_seals_seal_id_seq', '');

------------------------------------------------------------------------------
-- C functions.
------------------------------------------------------------------------------

CREATE FUNCTION payments._audit_trigger() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_audit_trigger';
COMMENT ON FUNCTION payments._audit_trigger() IS
	'Internal: AFTER row trigger (and AFTER TRUNCATE statement trigger) that writes payments.audit_log. Trigger arguments name extra columns to leave out. Attach with pay_audit_attach().';

CREATE FUNCTION payments._audit_guard() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_audit_guard';
COMMENT ON FUNCTION payments._audit_guard() IS
	'Internal: BEFORE UPDATE/DELETE/TRUNCATE trigger of the audit tables; raises 42501 unless pay_audit_prune() runs for the owner.';

CREATE FUNCTION payments._audit_row_hash(merchant_id bigint, audit_id bigint, table_schema text,
	table_name text, operation text, old_row jsonb, new_row jsonb, changed_columns text[],
	db_role text, session_role text, app_user text, correlation_id text, txid xid8,
	logged_at timestamptz, key_id bigint DEFAULT NULL)
	RETURNS bytea
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_audit_row_hash';
COMMENT ON FUNCTION payments._audit_row_hash(bigint, bigint, text, text, text, jsonb, jsonb, text[], text, text, text, text, xid8, timestamptz, bigint) IS
	'Internal: the SHA-256 row hash of an audit row, from its columns.';

CREATE FUNCTION payments._audit_record(merchant_id bigint, operation text, table_name regclass, details jsonb)
	RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_record';
COMMENT ON FUNCTION payments._audit_record(bigint, text, regclass, jsonb) IS
	'Internal: writes an audit row that no trigger writes (PRUNE); returns its audit_id.';

CREATE FUNCTION payments._audit_retention(active boolean) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_retention';
COMMENT ON FUNCTION payments._audit_retention(boolean) IS
	'Internal: lets pay_audit_prune() through the append-only guard until switched off or the transaction ends. Owner only.';

CREATE FUNCTION payments._audit_seal_horizon(wait_ms integer, merchant bigint) RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_seal_horizon';
COMMENT ON FUNCTION payments._audit_seal_horizon(integer, bigint) IS
	'Internal: an audit_id at or below which every audit row of merchant (NULL: of any) is final (no running or prepared transaction that wrote rows of that merchant can still add one), or NULL if other transactions did not finish within wait_ms.';

------------------------------------------------------------------------------
-- Append-only guard.  ENABLE ALWAYS: session_replication_role does not
-- switch it off; only ALTER TABLE ... DISABLE TRIGGER (table owner, a
-- logged DDL) does.
------------------------------------------------------------------------------

CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON payments.audit_log
	FOR EACH ROW EXECUTE FUNCTION payments._audit_guard();
CREATE TRIGGER audit_log_guard_truncate BEFORE TRUNCATE ON payments.audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_guard();
CREATE TRIGGER audit_seals_guard BEFORE UPDATE OR DELETE ON payments.audit_seals
	FOR EACH ROW EXECUTE FUNCTION payments._audit_guard();
CREATE TRIGGER audit_seals_guard_truncate BEFORE TRUNCATE ON payments.audit_seals
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_guard();
ALTER TABLE payments.audit_log ENABLE ALWAYS TRIGGER audit_log_guard;
ALTER TABLE payments.audit_log ENABLE ALWAYS TRIGGER audit_log_guard_truncate;
ALTER TABLE payments.audit_seals ENABLE ALWAYS TRIGGER audit_seals_guard;
ALTER TABLE payments.audit_seals ENABLE ALWAYS TRIGGER audit_seals_guard_truncate;
COMMENT ON TRIGGER audit_log_guard ON payments.audit_log IS 'Audit rows are never updated or deleted (but by pay_audit_prune()).';
COMMENT ON TRIGGER audit_log_guard_truncate ON payments.audit_log IS 'The audit log is never truncated.';
COMMENT ON TRIGGER audit_seals_guard ON payments.audit_seals IS 'Seals are never changed (but pruned_at, by pay_audit_prune()) or deleted.';
COMMENT ON TRIGGER audit_seals_guard_truncate ON payments.audit_seals IS 'Seals are never truncated.';

-- Only the extension's own code writes audit rows and seals: the trigger,
-- pay_audit_seal and pay_audit_prune run as the tables' owner, whom
-- row-level security does not restrict.  Every other role is refused an
-- INSERT whatever its privileges: a member of pg_write_all_data (INSERT on
-- every table, whatever the GRANTs say), or a role granted INSERT, wrote a
-- row of its own making, with a row hash anyone can compute, into its
-- merchant's chain, and the next seal took it in as genuine (or a seal of
-- its own making).  UPDATE and DELETE are the guard triggers' to refuse.
CREATE POLICY extension_writes_only ON payments.audit_log AS RESTRICTIVE FOR INSERT
	WITH CHECK (false);
CREATE POLICY extension_writes_only ON payments.audit_seals AS RESTRICTIVE FOR INSERT
	WITH CHECK (false);
COMMENT ON POLICY extension_writes_only ON payments.audit_log IS
	'Audit rows are written by the extension only (its trigger and functions run as the owner, whom row-level security does not restrict): no other role inserts one, pg_write_all_data or a GRANT notwithstanding.';
COMMENT ON POLICY extension_writes_only ON payments.audit_seals IS
	'Seals are written by pay_audit_seal only (run by the owner, whom row-level security does not restrict): no other role inserts one, pg_write_all_data or a GRANT notwithstanding.';

------------------------------------------------------------------------------
-- Attach / detach.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_audit_attach(table_name regclass, masked_columns text[] DEFAULT NULL)
	RETURNS boolean
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_attach';
COMMENT ON FUNCTION payments.pay_audit_attach(regclass, text[]) IS
	'Audits a table: every INSERT, UPDATE, DELETE and TRUNCATE writes payments.audit_log (triggers payments_audit and payments_audit_truncate). masked_columns: extra columns to leave out, besides pay_card columns and names like card_number, pan, cvv, cvc, card_code, security_code, transaction_key, signature_key, secret, password, api_key, access_token; bytea values are written as {"bytes": N}. A partitioned table''s partitions and an inheritance parent''s children get triggers of their own (a TRUNCATE of a partition by name, a child''s rows changed through its parent); one made later, after attaching again. Idempotent: returns false when already attached with the same masked columns. For the table''s owner or the extension owner; refuses payments.card_vault, installation_secrets and the audit tables.';

CREATE FUNCTION payments.pay_audit_detach(table_name regclass) RETURNS boolean
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_detach';
COMMENT ON FUNCTION payments.pay_audit_detach(regclass) IS
	'Stops auditing a table (drops its audit triggers, and its partitions'' and inheritance children''s); returns false when it was not audited. For the table''s owner or the extension owner. Existing audit rows stay.';

------------------------------------------------------------------------------
-- Seal, verify, prune.
------------------------------------------------------------------------------

CREATE FUNCTION payments._audit_batch_hash(merchant_id bigint, seal_id bigint, range_start bigint,
	range_end bigint, row_count bigint, prev_seal_hash bytea, row_hashes bytea)
	RETURNS bytea
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$
	SELECT pg_catalog.sha256(prev_seal_hash
		|| pg_catalog.convert_to(pg_catalog.concat_ws('|', 'payments-audit-seal-v1', merchant_id, seal_id,
			range_start, range_end, row_count), 'UTF8')
		|| coalesce(row_hashes, ''::bytea))
	$$;
COMMENT ON FUNCTION payments._audit_batch_hash(bigint, bigint, bigint, bigint, bigint, bytea, bytea) IS
	'Internal: a seal''s batch hash: SHA-256 of the previous seal''s hash, "payments-audit-seal-v1|merchant|seal|start|end|count" and the concatenated row hashes in audit_id order.';

CREATE FUNCTION payments.pay_audit_seal(wait interval DEFAULT '5 seconds') RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	horizon bigint;
	mh bigint;
	m bigint;
	prev payments.audit_seals;
	start bigint;
	cnt bigint;
	first_id bigint;
	last_id bigint;
	hashes bytea;
	sid bigint;
	prev_hash bytea;
	made integer := 0;
	sealed jsonb := '[]';
	h bytea;
BEGIN
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'pay_audit_seal() must run at isolation level read committed'
			USING ERRCODE = '25001',
				HINT = 'Call it outside a repeatable read or serializable transaction.';
	END IF;
	-- one sealer (or pruner) at a time; API writers never touch this table.
	-- SHARE UPDATE EXCLUSIVE, not EXCLUSIVE: any role may hold ROW
	-- EXCLUSIVE on any table it can name, privilege or not, as long as it
	-- likes (PREPARE p AS INSERT INTO payments.audit_seals ... locks at
	-- parse analysis; the permission check comes at execution), and that
	-- stopped every seal; this mode only another sealer or a VACUUM takes.
	LOCK TABLE payments.audit_seals IN SHARE UPDATE EXCLUSIVE MODE;
	horizon := payments._audit_seal_horizon(greatest(0, least(3600000,
		(extract(epoch FROM coalesce(wait, '0')) * 1000)::bigint))::integer, NULL);
	IF horizon IS NULL THEN
		RETURN 0;		-- older transactions still running: next time
	END IF;
	-- every merchant with audit rows (a loose index scan of the primary key)
	FOR m IN
		WITH RECURSIVE ms(m) AS (
			SELECT min(a.merchant_id) FROM payments.audit_log a
			UNION ALL
			SELECT (SELECT min(a.merchant_id) FROM payments.audit_log a WHERE a.merchant_id > ms.m)
			FROM ms WHERE ms.m IS NOT NULL)
		SELECT ms.m FROM ms WHERE ms.m IS NOT NULL
	LOOP
		SELECT * INTO prev FROM payments.audit_seals s WHERE s.merchant_id = m
			ORDER BY s.seal_id DESC LIMIT 1;
		start := coalesce(prev.range_end, 0);
		-- this merchant's horizon: below the transactions still holding ids
		-- of its rows only (another merchant's open or prepared transaction
		-- does not hold its seals back); NULL: one is taking an id, next time
		mh := payments._audit_seal_horizon(0, m);
		CONTINUE WHEN mh IS NULL OR start >= mh;
		SELECT count(*), min(a.audit_id), max(a.audit_id), string_agg(a.row_hash, ''::bytea ORDER BY a.audit_id)
			INTO cnt, first_id, last_id, hashes
			FROM payments.audit_log a
			WHERE a.merchant_id = m AND a.audit_id > start AND a.audit_id <= mh;
		CONTINUE WHEN cnt = 0;
		sid := nextval('payments.audit_seals_seal_id_seq');
		prev_hash := coalesce(prev.batch_hash, decode(repeat('00', 32), 'hex'));
		INSERT INTO payments.audit_seals (merchant_id, seal_id, range_start, range_end, first_audit_id,
			last_audit_id, row_count, prev_seal_hash, batch_hash)
		VALUES (m, sid, start, mh, first_id, last_id, cnt, prev_hash,
			payments._audit_batch_hash(m, sid, start, mh, cnt, prev_hash, hashes))
		RETURNING batch_hash INTO h;
		sealed := sealed || jsonb_build_object('merchant_id', m, 'seal_id', sid,
			'batch_hash', encode(h, 'base64'), 'sealed_at', payments._json_time(now()));
		made := made + 1;
	END LOOP;
	-- the new seals, as pay_audit_digest() gives them, in the server log: a
	-- copy outside the database wherever the log is shipped elsewhere
	IF made > 0 THEN
		RAISE LOG 'payments audit digest: %', sealed;
	END IF;
	RETURN made;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_audit_seal(interval) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_audit_seal(interval) IS
	'Seals every merchant''s audit rows written since its last seal into a chained batch (payments.audit_seals); returns the number of seals made. Waits up to wait for transactions older than the call to finish, else seals nothing (returns 0) and leaves it to the next call. The new seals go to the server log as a digest (LOG: payments audit digest: ..., the shape of pay_audit_digest()). Schedule it, e.g. SELECT cron.schedule(''audit-seal'', ''* * * * *'', ''SELECT payments.pay_audit_seal()''). Owner only; read committed only.';

-- The owner can rewrite the whole log, recomputing every row hash and
-- seal: a chain checked only against itself then verifies.  A digest (the
-- latest seal of each merchant, pay_audit_digest) copied out of the
-- database closes that: a rewrite of anything at or below a digest's seal
-- changes that seal's batch hash, which verify compares with the copy.
-- The hash is in base64, not hex: the log hook (card_redact.c) masks every
-- run of 12 or more digits, which a hex hash holds about one time in 14.
CREATE FUNCTION payments.pay_audit_digest(merchant_id bigint DEFAULT NULL) RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT coalesce(jsonb_agg(jsonb_build_object('merchant_id', s.merchant_id, 'seal_id', s.seal_id,
		'batch_hash', encode(s.batch_hash, 'base64'), 'sealed_at', payments._json_time(s.sealed_at))
		ORDER BY s.merchant_id), '[]')
	FROM (SELECT DISTINCT ON (x.merchant_id) x.merchant_id, x.seal_id, x.batch_hash, x.sealed_at
		FROM payments.audit_seals x
		WHERE pay_audit_digest.merchant_id IS NULL OR x.merchant_id = pay_audit_digest.merchant_id
		ORDER BY x.merchant_id, x.seal_id DESC) s
	$$;
REVOKE ALL ON FUNCTION payments.pay_audit_digest(bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_audit_digest(bigint) IS
	'The audit log''s digest: the latest seal of each merchant (default: all), as a jsonb array of {merchant_id, seal_id, batch_hash, sealed_at}. Keep a copy where the database''s owner cannot change it; pay_audit_verify(digest => copy) then finds a rewrite of the sealed history up to those seals, even one with every hash recomputed. Owner only.';

CREATE FUNCTION payments.pay_audit_verify(merchant_id bigint DEFAULT NULL, digest jsonb DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	bad record;
	d jsonb;
	anchored payments.audit_seals;
	s payments.audit_seals;
	prev payments.audit_seals;
	cur_merchant bigint;
	seen_unpruned boolean := false;
	cnt bigint;
	first_id bigint;
	last_id bigint;
	hashes bytea;
	zero bytea := decode(repeat('00', 32), 'hex');
BEGIN
	-- 0. the digest is pay_audit_digest()'s shape, or nothing is checked
	IF digest IS NOT NULL AND (jsonb_typeof(digest) <> 'array' OR EXISTS (
			SELECT 1 FROM jsonb_array_elements(digest) e(x)
			WHERE jsonb_typeof(e.x) <> 'object' OR jsonb_typeof(e.x -> 'merchant_id') <> 'number'
				OR jsonb_typeof(e.x -> 'seal_id') <> 'number'
				OR coalesce(e.x ->> 'batch_hash', '') !~ '^[A-Za-z0-9+/]{43}=$')) THEN
		RAISE EXCEPTION 'digest is not an audit digest'
			USING ERRCODE = '22023',
				DETAIL = 'A digest is a JSON array of objects with merchant_id, seal_id and batch_hash (the 32 bytes in base64).',
				HINT = 'Pass a value pay_audit_digest() returned.';
	END IF;

	-- 1. every row's content against its hash
	SELECT a.merchant_id, a.audit_id INTO bad
	FROM payments.audit_log a
	WHERE (pay_audit_verify.merchant_id IS NULL OR a.merchant_id = pay_audit_verify.merchant_id)
		AND a.row_hash IS DISTINCT FROM payments._audit_row_hash(a.merchant_id, a.audit_id,
			a.table_schema, a.table_name, a.operation, a.old_row, a.new_row, a.changed_columns,
			a.db_role, a.session_role, a.app_user, a.correlation_id, a.txid, a.logged_at, a.key_id)
	ORDER BY a.merchant_id, a.audit_id LIMIT 1;
	IF FOUND THEN
		RETURN jsonb_build_object('problem', 'row_modified', 'merchant_id', bad.merchant_id,
			'audit_id', bad.audit_id, 'detail', 'The row''s content does not match its row hash.');
	END IF;

	-- 2. no row where only pruned batches (or none) may be
	SELECT a.merchant_id, a.audit_id INTO bad
	FROM payments.audit_log a
	WHERE (pay_audit_verify.merchant_id IS NULL OR a.merchant_id = pay_audit_verify.merchant_id)
		AND a.audit_id <= coalesce((SELECT max(ps.range_end) FROM payments.audit_seals ps
			WHERE ps.merchant_id = a.merchant_id AND ps.pruned_at IS NOT NULL), 0)
	ORDER BY a.merchant_id, a.audit_id LIMIT 1;
	IF FOUND THEN
		RETURN jsonb_build_object('problem', 'row_added', 'merchant_id', bad.merchant_id,
			'audit_id', bad.audit_id, 'detail', 'The row lies below the merchant''s pruned or sealed history, where no row can be.');
	END IF;

	-- 3. each merchant's seal chain, and the rows of every batch
	FOR s IN SELECT * FROM payments.audit_seals x
		WHERE pay_audit_verify.merchant_id IS NULL OR x.merchant_id = pay_audit_verify.merchant_id
		ORDER BY x.merchant_id, x.seal_id
	LOOP
		IF cur_merchant IS DISTINCT FROM s.merchant_id THEN
			cur_merchant := s.merchant_id;
			prev := NULL;
			seen_unpruned := false;
		END IF;
		IF s.prev_seal_hash <> coalesce(prev.batch_hash, zero)
			OR s.range_start <> coalesce(prev.range_end, 0) THEN
			RETURN jsonb_build_object('problem', 'seal_chain_broken', 'merchant_id', s.merchant_id,
				'seal_id', s.seal_id, 'detail', 'The seal does not follow the merchant''s previous seal (a seal was removed, changed or inserted).');
		END IF;
		IF s.pruned_at IS NOT NULL THEN
			IF seen_unpruned THEN
				RETURN jsonb_build_object('problem', 'prune_not_prefix', 'merchant_id', s.merchant_id,
					'seal_id', s.seal_id, 'detail', 'A pruned seal follows an unpruned one; retention only removes the oldest batches.');
			END IF;
		ELSE
			seen_unpruned := true;
			SELECT count(*), min(a.audit_id), max(a.audit_id), string_agg(a.row_hash, ''::bytea ORDER BY a.audit_id)
				INTO cnt, first_id, last_id, hashes
				FROM payments.audit_log a
				WHERE a.merchant_id = s.merchant_id AND a.audit_id > s.range_start AND a.audit_id <= s.range_end;
			IF cnt < s.row_count THEN
				RETURN jsonb_build_object('problem', 'row_missing', 'merchant_id', s.merchant_id,
					'seal_id', s.seal_id, 'detail', format('The batch was sealed with %s rows; %s remain.', s.row_count, cnt));
			ELSIF cnt > s.row_count THEN
				RETURN jsonb_build_object('problem', 'row_added', 'merchant_id', s.merchant_id,
					'seal_id', s.seal_id, 'detail', format('The batch was sealed with %s rows; it now has %s.', s.row_count, cnt));
			ELSIF first_id <> s.first_audit_id OR last_id <> s.last_audit_id
				OR payments._audit_batch_hash(s.merchant_id, s.seal_id, s.range_start, s.range_end,
					s.row_count, s.prev_seal_hash, hashes) <> s.batch_hash THEN
				RETURN jsonb_build_object('problem', 'batch_mismatch', 'merchant_id', s.merchant_id,
					'seal_id', s.seal_id, 'detail', 'The batch''s rows do not hash to the sealed batch hash (rows replaced, renumbered or reordered).');
			END IF;
		END IF;
		prev := s;
	END LOOP;

	-- 4. the seals of the digest, kept outside, against the chain checked above
	FOR d IN SELECT e.x FROM jsonb_array_elements(coalesce(digest, '[]')) e(x)
		WHERE pay_audit_verify.merchant_id IS NULL
			OR (e.x ->> 'merchant_id')::numeric = pay_audit_verify.merchant_id
		ORDER BY (e.x ->> 'merchant_id')::numeric, (e.x ->> 'seal_id')::numeric
	LOOP
		SELECT * INTO anchored FROM payments.audit_seals x
		WHERE x.merchant_id = (d ->> 'merchant_id')::numeric AND x.seal_id = (d ->> 'seal_id')::numeric;
		IF NOT FOUND THEN
			RETURN jsonb_build_object('problem', 'digest_seal_missing', 'merchant_id', d -> 'merchant_id',
				'seal_id', d -> 'seal_id', 'detail', 'The digest names a seal the merchant''s chain does not hold (seals were removed or renumbered).');
		ELSIF encode(anchored.batch_hash, 'base64') <> d ->> 'batch_hash' THEN
			RETURN jsonb_build_object('problem', 'digest_mismatch', 'merchant_id', anchored.merchant_id,
				'seal_id', anchored.seal_id, 'detail', 'The seal''s batch hash is not the one the digest recorded: the sealed history up to it was rewritten.');
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_audit_verify(bigint, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_audit_verify(bigint, jsonb) IS
	'Checks the audit log of one merchant (default: all): every row against its hash, every seal against the previous one, every sealed batch''s rows against its count and hash, and, given a digest (pay_audit_digest() kept outside the database), each of its seals against its recorded batch hash. Returns NULL when intact, else the first problem as jsonb {problem, merchant_id, audit_id or seal_id, detail}; problem is row_modified, row_missing, row_added, batch_mismatch, seal_chain_broken, prune_not_prefix, digest_seal_missing or digest_mismatch. Rows written since the last seal are checked against their own hash only. A digest that is not pay_audit_digest()''s shape is refused (22023). Owner only.';

CREATE FUNCTION payments.pay_audit_prune(older_than interval) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	-- older_than in its PRUNE audit row as the default style writes it
	-- ('400 days'), whatever the caller's IntervalStyle
	SET IntervalStyle = 'postgres'
	AS $$
DECLARE
	cutoff timestamptz;
	r record;
	n bigint;
	k bigint;
	total bigint := 0;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must be a positive interval'
			USING ERRCODE = '22023', HINT = 'Pass how old a sealed batch must be to go, e.g. ''400 days''.';
	END IF;
	-- (counted in UTC: '400 days' back is the same instant whatever the
	-- TimeZone of the session or pg_cron job that prunes)
	cutoff := payments._utc_plus(clock_timestamp(), - older_than);
	-- as pay_audit_seal: a mode no role without privileges can hold
	LOCK TABLE payments.audit_seals IN SHARE UPDATE EXCLUSIVE MODE;
	PERFORM payments._audit_retention(true);
	FOR r IN
		SELECT s.merchant_id, max(s.range_end) AS through
		FROM payments.audit_seals s
		WHERE s.pruned_at IS NULL AND s.sealed_at < cutoff
		GROUP BY s.merchant_id ORDER BY s.merchant_id
	LOOP
		DELETE FROM payments.audit_log a WHERE a.merchant_id = r.merchant_id AND a.audit_id <= r.through;
		GET DIAGNOSTICS n = ROW_COUNT;
		UPDATE payments.audit_seals s SET pruned_at = now()
		WHERE s.merchant_id = r.merchant_id AND s.range_end <= r.through AND s.pruned_at IS NULL;
		GET DIAGNOSTICS k = ROW_COUNT;
		PERFORM payments._audit_record(r.merchant_id, 'PRUNE', 'payments.audit_log'::regclass,
			jsonb_build_object('deleted_rows', n, 'pruned_seals', k, 'through_audit_id', r.through,
				'older_than', older_than::text));
		total := total + n;
	END LOOP;
	PERFORM payments._audit_retention(false);
	RETURN total;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_audit_prune(interval) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_audit_prune(interval) IS
	'Retention: deletes the audit rows of every sealed batch sealed more than older_than ago (whole batches, oldest first, per merchant), marks those seals pruned and writes a PRUNE audit row per merchant; returns the number of rows deleted. Unsealed rows are never pruned. The seal chain stays, so pay_audit_verify() still passes. Owner only.';

------------------------------------------------------------------------------
-- The extension's own tenant tables are audited.  Not audit_log and
-- audit_seals (themselves the record), not card_vault or
-- installation_secrets (sealed card data, secrets), not gateway_exchanges
-- or events (high-volume logs, append-only in practice, with their own
-- retention), not status_transitions (fixed reference data).
------------------------------------------------------------------------------

CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.merchants
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.merchants
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
-- payments.customer holds the billing details sent to the gateway,
-- card_fingerprint identifies the customer's card, and the merchant's free
-- text (description, order_ref, metadata, a refund's reason) may name the
-- customer: personal data pay_erase_customer must be able to erase (the
-- append-only log keeps only that they changed).  Left out once, when the
-- trigger's columns are first read (audit.c): no cost per row.
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.payments
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('customer', 'card_fingerprint',
		'description', 'order_ref', 'metadata');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.payments
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('reason');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.operations
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.gateway_config
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('transaction_key', 'signature_key');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.gateway_config
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
-- request_hash digests the call's arguments: a customer's email, name and
-- billing details (personal data the append-only log must not keep)
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.idempotency_keys
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('request_hash');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.idempotency_keys
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
-- API keys: who made, rotated or revoked which key, without the secrets' hashes
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.api_keys
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('secret_hash', 'previous_hash');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
-- and who revoked which key (a row added, api_key_revocations)
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.api_key_revocations
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.api_key_revocations
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.merchants IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.merchants IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.payments IS 'Audit: payments.audit_log; the billing details (customer), the card fingerprint, description, order_ref and metadata are never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.payments IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.operations IS 'Audit: payments.audit_log; a refund''s reason is never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.operations IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.gateway_config IS 'Audit: payments.audit_log; the transaction and signature keys are never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.gateway_config IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.idempotency_keys IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.idempotency_keys IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.api_keys IS 'Audit: payments.audit_log (without secret_hash and previous_hash).';
COMMENT ON TRIGGER payments_audit_truncate ON payments.api_keys IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.api_key_revocations IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.api_key_revocations IS 'Audit: payments.audit_log.';
