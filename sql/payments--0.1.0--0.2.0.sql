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

------------------------------------------------------------------------------
-- h-settle: refunds and voids decided by the worker from the gateway's state
-- of the transaction; settlement learned for every captured payment from
-- the batch lists; payments held for review resolved from the gateway.
------------------------------------------------------------------------------

ALTER TABLE payments.payments ADD COLUMN settlement_batch_id text;
CREATE INDEX payments_unsettled ON payments.payments (merchant_id, created_at)
	WHERE settled_at IS NULL AND gateway_trans_id IS NOT NULL
		AND status IN ('succeeded', 'partially_refunded');
CREATE INDEX payments_in_review ON payments.payments (updated_at) WHERE status = 'in_review';

INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('operation', 'sending', 'waiting_settlement');

DROP FUNCTION payments._mark_settled(bigint, bigint);
DROP FUNCTION payments._settlement_candidates(integer);

CREATE FUNCTION payments._gateway_time(t text) RETURNS timestamptz
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments
	AS $$
BEGIN
	IF t IS NULL OR t = '' THEN
		RETURN NULL;
	END IF;
	IF t !~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN
		t := t || 'Z';
	END IF;
	RETURN t::timestamptz;
EXCEPTION
	WHEN data_exception THEN
		RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._gateway_time(text) IS
	'Internal: a UTC time as the gateway reports it (xs:dateTime, with or without Z), or NULL when unreadable.';

CREATE FUNCTION payments._record_settlements(p_merchant_id bigint, p_trans_id text[],
	p_batch_id text[], p_settled_at text[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	settled bigint[];
BEGIN
	WITH s AS (
		SELECT DISTINCT ON (x.trans_id) x.trans_id, x.batch_id,
			payments._gateway_time(x.settled_at) AS settled_at
		FROM unnest(p_trans_id, p_batch_id, p_settled_at) AS x(trans_id, batch_id, settled_at)
		WHERE x.trans_id IS NOT NULL
	), u AS (
		UPDATE payments.payments p SET settled_at = coalesce(s.settled_at, now()),
			settlement_batch_id = s.batch_id
		FROM s
		WHERE p.merchant_id = p_merchant_id AND p.gateway_trans_id = s.trans_id
			AND p.settled_at IS NULL
		RETURNING p.payment_id
	)
	SELECT array_agg(u.payment_id) INTO settled FROM u;
	IF settled IS NULL THEN
		RETURN 0;
	END IF;
	UPDATE payments.operations SET status = 'queued', next_attempt_at = now(),
		last_error = NULL
	WHERE merchant_id = p_merchant_id AND payment_id = ANY (settled)
		AND status = 'waiting_settlement';
	RETURN cardinality(settled);
END
$$;
COMMENT ON FUNCTION payments._record_settlements(bigint, text[], text[], text[]) IS
	'Worker: records the captures (gateway transIds) the gateway shows settled, with batch id and settlement time, and releases the refunds waiting for them.';

CREATE FUNCTION payments._settlement_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, gateway_trans_id text,
		created_at timestamptz, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments
	AS $$
	SELECT p.merchant_id, p.payment_id, p.gateway_trans_id, p.created_at,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.payments p
	JOIN payments.gateway_config g ON g.merchant_id = p.merchant_id
	WHERE p.settled_at IS NULL AND p.gateway_trans_id IS NOT NULL
		AND p.status IN ('succeeded', 'partially_refunded')
		AND p.created_at > now() - interval '31 days'
	ORDER BY p.merchant_id, p.created_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._settlement_candidates(integer) IS
	'Worker: captured payments (of the last 31 days) whose settlement is not known yet, ordered by merchant, to look for in the gateway''s settled batches.';

CREATE FUNCTION payments._record_refund_decision(p_merchant_id bigint, p_operation_id bigint,
	p_decision text, p_note text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	o payments.operations;
	settled boolean;
BEGIN
	IF p_decision IS NULL OR p_decision NOT IN ('void', 'wait') THEN
		RAISE EXCEPTION 'invalid refund decision % for operation %', p_decision, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' OR o.kind <> 'refund' THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT p.settled_at IS NOT NULL INTO settled FROM payments.payments p
	WHERE p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id;
	-- nothing was sent: the duplicate window has not started
	UPDATE payments.operations SET
		status = CASE WHEN p_decision = 'wait' AND NOT settled THEN 'waiting_settlement' ELSE 'queued' END,
		via_void = p_decision = 'void',
		attempts = CASE WHEN p_decision = 'wait' THEN 0 ELSE o.attempts END,
		next_attempt_at = CASE WHEN p_decision = 'wait' THEN now() + interval '6 hours' ELSE now() END,
		last_error = p_note,
		first_sent_at = CASE WHEN o.never_sent THEN NULL ELSE o.first_sent_at END
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
END
$$;
COMMENT ON FUNCTION payments._record_refund_decision(bigint, bigint, text, text) IS
	'Worker: records how a refund of an unsettled capture goes out, decided from the gateway''s state before sending: as a void (void, queued again) or after settlement (wait, waiting_settlement).';

CREATE FUNCTION payments._recheck_waiting_refunds() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.operations SET status = 'queued', next_attempt_at = now()
	WHERE status = 'waiting_settlement' AND next_attempt_at <= now();
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._recheck_waiting_refunds() IS
	'Worker: queues again the refunds that have waited six hours for a settlement, to ask the gateway about the capture once more.';
CREATE FUNCTION payments._review_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, kind text, invoice_number text,
		gateway_trans_id text, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments
	AS $$
	SELECT p.merchant_id, p.payment_id, p.kind, p.invoice_number, p.gateway_trans_id,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.payments p
	JOIN payments.gateway_config g ON g.merchant_id = p.merchant_id
	WHERE p.status = 'in_review' AND p.gateway_trans_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM payments.operations o
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
				AND o.status IN ('queued', 'sending', 'unknown'))
	ORDER BY p.updated_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._review_candidates(integer) IS
	'Worker: payments held for review, to ask the gateway what became of them.';

CREATE FUNCTION payments._resolve_review(p_merchant_id bigint, p_payment_id bigint,
	p_transaction_status text, p_status_class text, p_response_code integer,
	p_reason_code integer, p_reason_text text, p_auth_code text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	p payments.payments;
	new_status text;
BEGIN
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = p_merchant_id AND payment_id = p_payment_id FOR UPDATE;
	IF NOT FOUND OR p.status <> 'in_review' OR EXISTS (SELECT 1 FROM payments.operations o
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
				AND o.status IN ('queued', 'sending', 'unknown')) THEN
		RETURN NULL;
	END IF;
	new_status := CASE
		WHEN p_status_class = 'pending_capture' AND p.kind = 'authorize' THEN 'requires_capture'
		WHEN p_status_class IN ('pending_settlement', 'settled') AND p.kind = 'purchase' THEN 'succeeded'
		WHEN p_status_class IN ('declined', 'failed', 'expired') THEN 'failed'
		WHEN p_status_class = 'voided' THEN 'canceled'
		END;
	IF new_status IS NULL THEN
		UPDATE payments.payments SET updated_at = now()
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
		RETURN NULL;
	END IF;
	UPDATE payments.payments SET status = new_status,
		amount_authorized = CASE WHEN new_status IN ('requires_capture', 'succeeded') THEN p.amount
			ELSE p.amount_authorized END,
		amount_captured = CASE WHEN new_status = 'succeeded' THEN p.amount ELSE p.amount_captured END,
		auth_code = coalesce(nullif(p_auth_code, ''), p.auth_code),
		decline_code = CASE WHEN new_status = 'failed'
			THEN coalesce(p_reason_code::text, p_transaction_status) END,
		decline_reason = CASE WHEN new_status = 'failed' THEN coalesce(nullif(p_reason_text, ''),
			format('the gateway shows the held transaction %s', p_transaction_status)) END
	WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	RETURN new_status;
END
$$;
COMMENT ON FUNCTION payments._resolve_review(bigint, bigint, text, text, integer, integer, text, text) IS
	'Worker: moves a payment held for review to what the gateway decided (requires_capture or succeeded when approved, failed when declined or expired, canceled when voided).';

REVOKE ALL ON FUNCTION payments._gateway_time(text),
	payments._record_settlements(bigint, text[], text[], text[]),
	payments._settlement_candidates(integer),
	payments._record_refund_decision(bigint, bigint, text, text),
	payments._recheck_waiting_refunds(),
	payments._review_candidates(integer),
	payments._resolve_review(bigint, bigint, text, text, integer, integer, text, text)
	FROM PUBLIC;

CREATE OR REPLACE FUNCTION payments.pay_void(
	payment_id bigint,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_void.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_void.idempotency_key,
		'void', md5(jsonb_build_array(pay_void.payment_id)::text));
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	IF p.status NOT IN ('requires_capture', 'succeeded', 'in_review') THEN
		PERFORM payments._wrong_state(p, 'void');
	END IF;
	-- known settled: refused now (the worker also asks the gateway before
	-- it sends a void, and fails one that settled meanwhile)
	IF p.settled_at IS NOT NULL THEN
		RAISE EXCEPTION 'cannot void payment % in status %: it has settled', p.payment_id, p.status
			USING ERRCODE = '22Y20',
				DETAIL = format('The gateway settled the capture at %s%s.', p.settled_at,
					coalesce(format(' (batch %s)', p.settlement_batch_id), '')),
				HINT = 'A settled payment can only be refunded: use pay_refund.';
	END IF;
	IF EXISTS (SELECT 1 FROM payments.operations x WHERE x.merchant_id = p.merchant_id
			AND x.payment_id = p.payment_id AND x.kind = 'refund' AND x.status <> 'failed') THEN
		PERFORM payments._wrong_state(p, 'void', 'The payment has refunds; it can no longer be voided.');
	END IF;
	IF payments._busy_operation(p) IS NOT NULL THEN
		PERFORM payments._wrong_state(p, 'void', 'Another operation on this payment is in progress.');
	END IF;
	RETURN payments._new_operation(p, 'void', NULL, 'queued', NULL,
		pay_void.idempotency_key, pay_void.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_void(bigint, text, text) IS
	'Cancel an authorization or an unsettled capture. Returns the void operation; the worker sends it after COMMIT.';

CREATE OR REPLACE FUNCTION payments.pay_refund(
	payment_id bigint,
	amount payments.pay_amount DEFAULT NULL,
	reason text DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_refund.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_refund.idempotency_key,
		'refund', md5(jsonb_build_array(pay_refund.payment_id, pay_refund.amount::text, pay_refund.reason)::text));
	captured payments.pay_amount;
	committed payments.pay_amount;
	remaining payments.pay_amount;
	refund_amount payments.pay_amount;
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	IF p.status NOT IN ('succeeded', 'partially_refunded') THEN
		PERFORM payments._wrong_state(p, 'refund');
	END IF;
	captured := p.amount_captured;
	-- refunds already made or on their way count against what is left
	SELECT coalesce(sum(x.amount), p.amount * 0) INTO committed FROM payments.operations x
	WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id AND x.kind = 'refund'
		AND x.status IN ('queued', 'sending', 'unknown', 'succeeded', 'waiting_settlement', 'dead');
	remaining := captured - committed;
	refund_amount := coalesce(pay_refund.amount, remaining);
	IF pay_minor_units(refund_amount) <= 0 THEN
		RAISE EXCEPTION 'refund amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('%s of %s captured is left to refund.', remaining, captured);
	END IF;
	IF refund_amount > remaining THEN
		RAISE EXCEPTION 'refund amount % exceeds the % left to refund', refund_amount, remaining
			USING ERRCODE = '22Y21',
				DETAIL = format('%s was captured and %s is refunded or being refunded.', captured, committed);
	END IF;
	IF payments._busy_operation(p) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.operations x
			WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
				AND x.status IN ('queued', 'sending', 'unknown') AND x.kind = 'refund') THEN
		PERFORM payments._wrong_state(p, 'refund', 'Another operation on this payment is in progress.');
	END IF;
	-- Void, refund or wait is decided by the worker from the gateway's state
	-- of the capture when it processes the refund: settled, a refund; not
	-- settled, a void when the whole capture is refunded, else it waits
	-- (waiting_settlement) and goes out once the batch has settled.
	RETURN payments._new_operation(p, 'refund', refund_amount, 'queued', pay_refund.reason,
		pay_refund.idempotency_key, pay_refund.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_refund(bigint, payments.pay_amount, text, text, text) IS
	'Refund a captured payment, fully or partially (several partial refunds up to the captured amount). The worker asks the gateway first: a settled capture is refunded; before settlement a full refund is sent as a void and a partial one waits for settlement (waiting_settlement). Returns the refund operation.';
