-- payments 0.1.0 -> 0.2.0: upgrade script.  Every change made to the 0.2.0
-- sources (sql/src/) since 0.1.0 is made here too; the upgrade test
-- (test/integration/upgrade_chain.sh) proves that an upgraded installation
-- and a fresh one are the same.

\echo Use "ALTER EXTENSION payments UPDATE TO '0.2.0'" to load this file. \quit

-- One home for what each gateway outcome does (status_machine.sql): the
-- table, and the worker's functions that read it instead of mapping the
-- outcomes themselves.
CREATE TABLE payments.operation_outcomes (
	operation_kind text NOT NULL,
	outcome text NOT NULL,
	operation_status text NOT NULL,
	payment_status text,
	payment_status_from text,
	PRIMARY KEY (operation_kind, outcome)
);
COMMENT ON TABLE payments.operation_outcomes IS
	'For each operation kind and gateway outcome: the operation''s new status and the payment''s (NULL: unchanged; only from payment_status_from when that is set; a refund that leaves part of the capture is partially_refunded).';
REVOKE ALL ON payments.operation_outcomes FROM PUBLIC;

INSERT INTO payments.operation_outcomes
	(operation_kind, outcome, operation_status, payment_status, payment_status_from) VALUES
	('purchase', 'approved', 'succeeded', 'succeeded', NULL),
	('purchase', 'held', 'succeeded', 'in_review', NULL),
	('purchase', 'declined', 'failed', 'failed', NULL),
	('purchase', 'error', 'failed', 'failed', NULL),
	('purchase', 'rejected', 'failed', 'failed', NULL),
	('purchase', 'retry', 'queued', NULL, NULL),
	('purchase', 'unknown', 'unknown', 'unknown', 'pending'),
	('authorize', 'approved', 'succeeded', 'requires_capture', NULL),
	('authorize', 'held', 'succeeded', 'in_review', NULL),
	('authorize', 'declined', 'failed', 'failed', NULL),
	('authorize', 'error', 'failed', 'failed', NULL),
	('authorize', 'rejected', 'failed', 'failed', NULL),
	('authorize', 'retry', 'queued', NULL, NULL),
	('authorize', 'unknown', 'unknown', 'unknown', 'pending'),
	('capture', 'approved', 'succeeded', 'succeeded', NULL),
	('capture', 'held', 'succeeded', NULL, NULL),
	('capture', 'declined', 'failed', NULL, NULL),
	('capture', 'error', 'failed', NULL, NULL),
	('capture', 'rejected', 'failed', NULL, NULL),
	('capture', 'retry', 'queued', NULL, NULL),
	('capture', 'unknown', 'unknown', NULL, NULL),
	('void', 'approved', 'succeeded', 'canceled', NULL),
	('void', 'held', 'succeeded', NULL, NULL),
	('void', 'declined', 'failed', NULL, NULL),
	('void', 'error', 'failed', NULL, NULL),
	('void', 'rejected', 'failed', NULL, NULL),
	('void', 'retry', 'queued', NULL, NULL),
	('void', 'unknown', 'unknown', NULL, NULL),
	('refund', 'approved', 'succeeded', 'refunded', NULL),
	('refund', 'held', 'succeeded', NULL, NULL),
	('refund', 'declined', 'failed', NULL, NULL),
	('refund', 'error', 'failed', NULL, NULL),
	('refund', 'rejected', 'failed', NULL, NULL),
	('refund', 'retry', 'queued', NULL, NULL),
	('refund', 'unknown', 'unknown', NULL, NULL);

CREATE OR REPLACE FUNCTION payments._record_final_results(
	p_merchant_id bigint[], p_operation_id bigint[], p_outcome text[],
	p_response_code integer[], p_reason_code integer[], p_reason_text text[],
	p_trans_id text[], p_auth_code text[], p_avs text[], p_cvv text[],
	p_error text[], p_account_number text[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	SET enable_seqscan = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET plan_cache_mode = force_custom_plan
	AS $$
DECLARE
	n integer;
BEGIN
	WITH r AS (
		SELECT * FROM unnest(p_merchant_id, p_operation_id, p_outcome, p_response_code,
			p_reason_code, p_reason_text, p_trans_id, p_auth_code, p_avs, p_cvv, p_error,
			p_account_number) AS r(merchant_id, operation_id, outcome, response_code,
			reason_code, reason_text, trans_id, auth_code, avs, cvv, error, account_number)
	), ops AS (
		-- the new statuses come from operation_outcomes; the amounts follow
		-- them: authorized when the operation succeeded, captured when the
		-- payment did, a decline when the operation failed
		UPDATE payments.operations o SET
			status = t.operation_status,
			gateway_trans_id = nullif(nullif(r.trans_id, ''), '0'),
			response_code = r.response_code, reason_code = r.reason_code,
			reason_text = r.reason_text, last_error = r.error, completed_at = clock_timestamp()
		FROM r, payments.operation_outcomes t
		WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id
			AND o.status = 'sending' AND o.kind IN ('purchase', 'authorize')
			AND t.operation_kind = o.kind AND t.outcome = r.outcome
			AND t.operation_status IN ('succeeded', 'failed')
		RETURNING o.merchant_id, o.operation_id, o.payment_id, t.operation_status,
			t.payment_status, r.reason_code, r.reason_text, r.trans_id, r.auth_code, r.avs, r.cvv,
			r.error, r.account_number
	), erased AS (
		DELETE FROM payments.card_vault v USING ops
		WHERE v.merchant_id = ops.merchant_id AND v.operation_id = ops.operation_id
	)
	UPDATE payments.payments p SET
		status = ops.payment_status,
		amount_authorized = CASE WHEN ops.operation_status = 'succeeded' THEN p.amount END,
		amount_captured = CASE WHEN ops.payment_status = 'succeeded' THEN p.amount END,
		gateway_trans_id = nullif(nullif(ops.trans_id, ''), '0'),
		auth_code = nullif(ops.auth_code, ''), avs_result = nullif(ops.avs, ''),
		cvv_result = nullif(ops.cvv, ''),
		-- opaque data (Accept.js) payments learn their last four digits here
		card_last4 = coalesce(p.card_last4, nullif(right(ops.account_number, 4), '')),
		decline_code = CASE WHEN ops.operation_status = 'failed'
			THEN coalesce(ops.reason_code::text, ops.error) END,
		decline_reason = CASE WHEN ops.operation_status = 'failed'
			THEN coalesce(ops.reason_text, ops.error) END
	FROM ops
	WHERE p.merchant_id = ops.merchant_id AND p.payment_id = ops.payment_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION payments._record_result(
	p_merchant_id bigint, p_operation_id bigint, p_outcome text,
	p_response_code integer, p_reason_code integer, p_reason_text text,
	p_trans_id text, p_auth_code text, p_avs text, p_cvv text,
	p_retry_at timestamptz, p_error text, p_account_number text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	SET enable_seqscan = off
	SET plan_cache_mode = force_custom_plan
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	t payments.operation_outcomes;
	new_refunded payments.pay_amount;
BEGIN
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT * INTO t FROM payments.operation_outcomes x
	WHERE x.operation_kind = o.kind AND x.outcome = p_outcome;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid outcome % for operation %', p_outcome, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = o.merchant_id AND payment_id = o.payment_id FOR UPDATE;

	IF t.operation_status NOT IN ('succeeded', 'failed') THEN
		-- to be tried again at p_retry_at, unless out of attempts
		UPDATE payments.operations SET
			status = CASE WHEN o.attempts >= payments._max_attempts() THEN 'dead' ELSE t.operation_status END,
			next_attempt_at = p_retry_at, last_error = p_error,
			-- retry: provably never sent this time, so the duplicate window
			-- starts with the first real send; unknown: it may have been
			never_sent = o.never_sent AND p_outcome = 'retry',
			first_sent_at = CASE WHEN o.never_sent AND p_outcome = 'retry' THEN NULL ELSE o.first_sent_at END
		WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
		IF t.payment_status IS NOT NULL AND p.status = t.payment_status_from THEN
			UPDATE payments.payments SET status = t.payment_status
			WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
		END IF;
		RETURN;
	END IF;

	-- a final answer from the gateway
	IF o.kind IN ('purchase', 'authorize') THEN
		PERFORM payments._record_final_results(ARRAY[p_merchant_id], ARRAY[p_operation_id],
			ARRAY[p_outcome], ARRAY[p_response_code], ARRAY[p_reason_code], ARRAY[p_reason_text],
			ARRAY[p_trans_id], ARRAY[p_auth_code], ARRAY[p_avs], ARRAY[p_cvv], ARRAY[p_error],
			ARRAY[p_account_number]);
		RETURN;
	END IF;
	UPDATE payments.operations SET
		status = t.operation_status,
		gateway_trans_id = nullif(nullif(p_trans_id, ''), '0'),
		response_code = p_response_code, reason_code = p_reason_code, reason_text = p_reason_text,
		last_error = p_error, completed_at = clock_timestamp()
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	DELETE FROM payments.card_vault WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;

	IF t.payment_status IS NULL OR p.status IS DISTINCT FROM coalesce(t.payment_status_from, p.status) THEN
		RETURN;
	END IF;
	IF o.kind = 'capture' THEN
		UPDATE payments.payments SET status = t.payment_status, amount_captured = o.amount
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSIF o.kind = 'refund' THEN
		new_refunded := p.amount_refunded + o.amount;
		UPDATE payments.payments SET amount_refunded = new_refunded,
			status = CASE WHEN t.payment_status = 'refunded' AND new_refunded <> p.amount_captured
				THEN 'partially_refunded' ELSE t.payment_status END
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSE
		UPDATE payments.payments SET status = t.payment_status
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION payments._recover_in_flight() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.payments p SET status = t.payment_status
	FROM payments.operations o, payments.operation_outcomes t
	WHERE o.status = 'sending' AND t.operation_kind = o.kind AND t.outcome = 'unknown'
		AND p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
		AND p.status = t.payment_status_from;
	UPDATE payments.operations o SET status = t.operation_status, next_attempt_at = now(), never_sent = false,
		last_error = 'the worker stopped while the request was in flight'
	FROM payments.operation_outcomes t
	WHERE o.status = 'sending' AND t.operation_kind = o.kind AND t.outcome = 'unknown';
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- Constants defined once, in the library: the duplicate window, and the
-- default of payments.max_attempts.
CREATE OR REPLACE FUNCTION payments._duplicate_window() RETURNS integer
	LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pay_duplicate_window';
CREATE OR REPLACE FUNCTION payments._max_attempts() RETURNS integer
	LANGUAGE sql STABLE AS $$ SELECT current_setting('payments.max_attempts')::integer $$;

-- ===========================================================================
-- Card data at rest (h-vault): the vault is unlogged and its sealing keys
-- live in shared memory only; the fingerprint key leaves the tables.
-- ===========================================================================

-- Cards that wait in the vault at this point were sealed under 0.1.0's key
-- file, which the 0.2.0 library deleted at start: they can no longer be
-- opened, and their payments fail with the reason that the card data was
-- lost (the worker records it).  The rows stay until then.
ALTER TABLE payments.card_vault SET UNLOGGED;
COMMENT ON TABLE payments.card_vault IS
	'Sealed card data (number, CVV) or Accept.js opaque data of operations not yet answered by the gateway (AES-256-GCM under a key that exists in shared memory only); erased as soon as the gateway answered. Unlogged: never in the WAL or a backup, emptied by crash recovery. Owner only.';

-- No test card number or security code in a comment (scanners flag them).
COMMENT ON FUNCTION payments.pay_card_in(cstring) IS
	'Text input of pay_card: a JSON object with "number" (the card number as a string of digits), "exp_month" and "exp_year" (integers), and optionally "cvv" (a string of digits) and "holder_name" (a string). Same rules as pay_card(...).';

CREATE FUNCTION payments._vault_rotate_key(force boolean DEFAULT false) RETURNS boolean
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_vault_rotate_key';
REVOKE ALL ON FUNCTION payments._vault_rotate_key(boolean) FROM PUBLIC;
COMMENT ON FUNCTION payments._vault_rotate_key(boolean) IS
	'Internal: replaces the card vault sealing key (shared memory only) when it has sealed for payments.vault_key_rotation and no card sealed under the previous key still waits; the worker calls it. force: rotate now, losing the cards sealed under the previous key. Owner only.';

-- The card fingerprint key leaves the table: it moves to a key file in
-- payments.fingerprint_key_directory, named by a new fingerprint_key_id,
-- so that existing fingerprints stay valid and no dump carries the key.
CREATE FUNCTION payments._fingerprint_key_create(key_id bytea, key bytea) RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_fingerprint_key_create';
REVOKE ALL ON FUNCTION payments._fingerprint_key_create(bytea, bytea) FROM PUBLIC;
COMMENT ON FUNCTION payments._fingerprint_key_create(bytea, bytea) IS
	'Internal: writes the card fingerprint key file of a key id in payments.fingerprint_key_directory, holding key (NULL: 32 fresh random bytes); keeps an existing file that holds the same key.';

INSERT INTO payments.installation_secrets (purpose, secret)
	VALUES ('fingerprint_key_id', payments._random_bytes(16));
SELECT payments._fingerprint_key_create(i.secret,
		(SELECT s.secret FROM payments.installation_secrets s WHERE s.purpose = 'card_fingerprint'
		 ORDER BY s.created_at, s.secret_id LIMIT 1))
	FROM payments.installation_secrets i WHERE i.purpose = 'fingerprint_key_id';
DELETE FROM payments.installation_secrets WHERE purpose = 'card_fingerprint';

COMMENT ON TABLE payments.installation_secrets IS
	'Per-installation values, readable by the owner only. The active value of a purpose is the earliest created one. fingerprint_key_id names the key file of pay_card_fingerprint() in payments.fingerprint_key_directory (the key itself is never in a table); invoice_tag is this installation''s tag in invoice numbers.';
COMMENT ON COLUMN payments.installation_secrets.purpose IS 'What the value is for: fingerprint_key_id (names the key file of pay_card_fingerprint) or invoice_tag (the installation''s tag in invoice numbers).';
COMMENT ON COLUMN payments.installation_secrets.secret IS 'The bytes (16 for fingerprint_key_id, 3 for invoice_tag).';
COMMENT ON FUNCTION payments.pay_card_fingerprint(payments.pay_card) IS
	'Keyed fingerprint of the card number: HMAC-SHA256 under the installation''s fingerprint key (a file outside the database, in payments.fingerprint_key_directory), 64 hex digits. The same number gives the same fingerprint however it was typed; safe to store for recognising a returning card.';
