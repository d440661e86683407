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

-- ---------------------------------------------------------------------------
-- h-input: refuse at the call what the gateway would refuse (issue 9).
-- The argument checks of the payment API (payment_api.sql): idempotency
-- keys (22Y25, never echoed; PT409 no longer quotes the key), opaque data
-- (22Y22 for missing or empty fields), the texts and amount a request
-- carries (payments._check_gateway_input, in C: 22Y24, 22001, 22Y26,
-- 22Y22), the correlation id of every operation; pay_card's comment (at
-- most 16 digits).
-- ---------------------------------------------------------------------------
CREATE FUNCTION payments._check_idempotency_key(p_key text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments
	AS $$
BEGIN
	IF length(p_key) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid idempotency key'
			USING ERRCODE = '22Y25',
				DETAIL = format('The key has %s characters; an idempotency key has 1 to 255.', length(p_key)),
				HINT = 'Pass a key of 1 to 255 characters, such as a UUID, or NULL for none.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_idempotency_key(text) IS
	'Internal: raises 22Y25 unless an idempotency key is 1 to 255 characters; the message never quotes the key.';

CREATE FUNCTION payments._check_gateway_input(amount payments.pay_amount, description text,
	customer jsonb, correlation_id text, customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_check_gateway_input';
COMMENT ON FUNCTION payments._check_gateway_input(payments.pay_amount, text, jsonb, text, text, text) IS
	'Internal: raises 22Y24 (character the gateway cannot carry), 22001 (text longer than the gateway field), 22Y26 (amount of more digits than the gateway takes) or 22Y22 (profile id not 1 to 20 digits) for input a payment request would carry.';

CREATE FUNCTION payments._check_opaque_data(p_opaque_data jsonb) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	k text;
BEGIN
	IF jsonb_typeof(p_opaque_data) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'opaque_data must be a JSON object'
			USING ERRCODE = '22Y22',
				HINT = 'Pass the opaqueData object Accept.js returned, e.g. {"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "..."}.';
	END IF;
	FOREACH k IN ARRAY ARRAY['dataDescriptor', 'dataValue'] LOOP
		IF jsonb_typeof(p_opaque_data -> k) IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'opaque_data has no string %', k
				USING ERRCODE = '22Y22',
					DETAIL = format('opaque_data must have %s as a JSON string; it is %s.', k,
						coalesce('a JSON ' || jsonb_typeof(p_opaque_data -> k), 'missing')),
					HINT = 'Pass the opaqueData object Accept.js returned, e.g. {"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "..."}.';
		END IF;
		IF p_opaque_data ->> k = '' THEN
			RAISE EXCEPTION 'opaque_data % is empty', k
				USING ERRCODE = '22Y22',
					DETAIL = format('The gateway requires a non-empty %s.', k),
					HINT = 'Pass the opaqueData object Accept.js returned, unchanged.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._check_opaque_data(jsonb) IS
	'Internal: raises 22Y22 unless opaque data is an object with non-empty string dataDescriptor and dataValue.';

CREATE OR REPLACE FUNCTION payments._idempotency_claim(p_merchant bigint, p_key text, p_kind text, p_hash text)
	RETURNS payments.idempotency_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	existing payments.idempotency_keys;
BEGIN
	IF p_key IS NULL THEN
		RETURN NULL;
	END IF;
	PERFORM payments._check_idempotency_key(p_key);
	INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash)
	VALUES (p_merchant, p_key, p_kind, p_hash)
	ON CONFLICT DO NOTHING;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	SELECT * INTO existing FROM payments.idempotency_keys
	WHERE merchant_id = p_merchant AND idempotency_key = p_key;
	IF existing.request_kind <> p_kind OR existing.request_hash <> p_hash THEN
		RAISE EXCEPTION 'idempotency key was already used with different parameters'
			USING ERRCODE = 'PT409',
				DETAIL = format('The key was first used for %s with other arguments.', existing.request_kind),
				HINT = 'Use a new idempotency key for a new request, or repeat the original request exactly.';
	END IF;
	RETURN existing;
END
$$;
CREATE OR REPLACE FUNCTION payments._create_payment(
	p_kind text, p_amount payments.pay_amount, p_card payments.pay_card, p_opaque_data jsonb,
	p_customer_profile_id text, p_payment_profile_id text, p_description text, p_order_ref text,
	p_customer jsonb, p_metadata jsonb, p_idempotency_key text, p_correlation_id text)
	RETURNS payments.payments
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	methods int := (p_card IS NOT NULL)::int + (p_opaque_data IS NOT NULL)::int
		+ (p_customer_profile_id IS NOT NULL OR p_payment_profile_id IS NOT NULL)::int;
	method text;
	idem payments.idempotency_keys;
	pid bigint;
	oid_ bigint;
	corr text := payments._correlation_id(p_correlation_id);
	result payments.payments;
BEGIN
	IF p_amount IS NULL THEN
		RAISE EXCEPTION 'amount is required' USING ERRCODE = '22004';
	END IF;
	IF pay_minor_units(p_amount) <= 0 THEN
		RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('The amount given was %s.', p_amount);
	END IF;
	IF methods <> 1 THEN
		RAISE EXCEPTION 'exactly one payment method is required'
			USING ERRCODE = '22Y22',
				DETAIL = format('%s payment methods were given.', methods),
				HINT = 'Pass card, opaque_data, or customer_profile_id with payment_profile_id.';
	END IF;
	IF p_card IS NOT NULL THEN
		method := 'card';
	ELSIF p_opaque_data IS NOT NULL THEN
		method := 'opaque_data';
		PERFORM payments._check_opaque_data(p_opaque_data);
	ELSE
		method := 'profile';
		IF p_customer_profile_id IS NULL OR p_payment_profile_id IS NULL THEN
			RAISE EXCEPTION 'customer_profile_id and payment_profile_id go together'
				USING ERRCODE = '22Y22';
		END IF;
	END IF;
	IF p_customer IS NOT NULL AND jsonb_typeof(p_customer) <> 'object' THEN
		RAISE EXCEPTION 'customer must be a JSON object' USING ERRCODE = '22023';
	END IF;
	IF p_metadata IS NOT NULL AND jsonb_typeof(p_metadata) <> 'object' THEN
		RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_gateway_input(p_amount, p_description, p_customer, corr,
		p_customer_profile_id, p_payment_profile_id);

	idem := payments._idempotency_claim(m, p_idempotency_key, p_kind, md5(jsonb_build_array(
		p_amount::text, payments.pay_card_fingerprint(p_card), payments.pay_card_exp_month(p_card),
		payments.pay_card_exp_year(p_card), p_opaque_data, p_customer_profile_id, p_payment_profile_id,
		p_description, p_order_ref, p_customer, p_metadata)::text));
	IF idem.payment_id IS NOT NULL THEN
		SELECT * INTO result FROM payments.payments WHERE merchant_id = m AND payment_id = idem.payment_id;
		RETURN result;
	END IF;

	pid := nextval('payments.payments_payment_id_seq');
	INSERT INTO payments.payments (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description, order_ref,
		customer, metadata, correlation_id, idempotency_key)
	OVERRIDING SYSTEM VALUE
	VALUES (m, pid, p_kind, p_amount, p_amount * 0, method,
		payments.pay_card_brand(p_card), payments.pay_card_last4(p_card),
		payments.pay_card_exp_month(p_card), payments.pay_card_exp_year(p_card),
		payments.pay_card_fingerprint(p_card),
		p_customer_profile_id, p_payment_profile_id,
		'P' || payments._invoice_tag() || pid, p_description, p_order_ref,
		coalesce(p_customer, '{}'), coalesce(p_metadata, '{}'), corr, p_idempotency_key)
	RETURNING * INTO result;

	INSERT INTO payments.operations (merchant_id, payment_id, kind, amount, idempotency_key, correlation_id)
	VALUES (m, pid, p_kind, p_amount, p_idempotency_key, corr)
	RETURNING operation_id INTO oid_;

	IF p_card IS NOT NULL THEN
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, oid_, payments._card_sealed(p_card));
	ELSIF p_opaque_data IS NOT NULL THEN
		-- the nonce can charge the card once: it waits sealed, like a card
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, oid_, payments._opaque_data_sealed(p_opaque_data ->> 'dataDescriptor',
			p_opaque_data ->> 'dataValue'));
	END IF;

	IF p_idempotency_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = pid, operation_id = oid_
		WHERE merchant_id = m AND idempotency_key = p_idempotency_key;
	END IF;
	PERFORM payments._wake_at_commit();
	RETURN result;
END
$$;
CREATE OR REPLACE FUNCTION payments._new_operation(p payments.payments, p_kind text, p_amount payments.pay_amount,
	p_status text, p_reason text, p_key text, p_correlation_id text, p_via_void boolean DEFAULT false)
	RETURNS payments.operations
	LANGUAGE plpgsql AS $$
DECLARE
	o payments.operations;
	corr text := payments._correlation_id(p_correlation_id);
BEGIN
	-- the correlation id is sent as refId
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, reason, via_void,
		idempotency_key, correlation_id)
	VALUES (p.merchant_id, p.payment_id, p_kind, p_status, p_amount, p_reason, p_via_void, p_key, corr)
	RETURNING * INTO o;
	IF p_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = p.payment_id, operation_id = o.operation_id
		WHERE merchant_id = p.merchant_id AND idempotency_key = p_key;
	END IF;
	IF p_status = 'queued' THEN
		PERFORM payments._wake_at_commit();
	END IF;
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments._check_idempotency_key(text),
	payments._check_gateway_input(payments.pay_amount, text, jsonb, text, text, text),
	payments._check_opaque_data(jsonb)
	FROM PUBLIC;

COMMENT ON FUNCTION payments.pay_card(text, integer, integer, text, text) IS
	'Validate a card and return it as pay_card. number: 12 to 16 digits (the gateway takes at most 16), optionally grouped by single spaces or dashes, Luhn-valid, of a supported brand (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay) and a length that brand issues. exp_month 1-12; exp_year two (20YY) or four digits; valid through the end of the month (UTC), at most 20 years ahead. cvv: 3 digits, 4 for American Express. holder_name: up to 100 characters. A NULL number, month or year is an error (22004); NULL cvv or holder_name means absent. Errors never quote the input.';
