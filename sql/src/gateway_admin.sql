-- Gateway configuration and dead letters (owner only).

------------------------------------------------------------------------------
-- Gateway configuration, dead letters, health (owner only).
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_configure_gateway(
	api_login_id text,
	transaction_key text,
	endpoint_url text DEFAULT 'https://apitest.authorize.net/xml/v1/request.api',
	signature_key text DEFAULT NULL,
	ca_file text DEFAULT NULL,
	timeout_ms integer DEFAULT 30000,
	merchant_id bigint DEFAULT NULL)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments
	AS $$
	INSERT INTO payments.gateway_config AS g (merchant_id, api_login_id, transaction_key, endpoint_url,
		signature_key, ca_file, timeout_ms)
	VALUES (coalesce(merchant_id, payments.pay_current_merchant()), api_login_id, transaction_key,
		endpoint_url, signature_key, ca_file, timeout_ms)
	ON CONFLICT (merchant_id) DO UPDATE SET api_login_id = EXCLUDED.api_login_id,
		transaction_key = EXCLUDED.transaction_key, endpoint_url = EXCLUDED.endpoint_url,
		signature_key = EXCLUDED.signature_key, ca_file = EXCLUDED.ca_file,
		timeout_ms = EXCLUDED.timeout_ms, updated_at = now();
	SELECT payments._wake_at_commit();
	$$;
REVOKE ALL ON FUNCTION payments.pay_configure_gateway(text, text, text, text, text, integer, bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_configure_gateway(text, text, text, text, text, integer, bigint) IS
	'Sets the Authorize.Net API login id, transaction key, endpoint URL, signature key, CA file (for a private CA such as the simulator''s) and timeout of a merchant (default: the current one). Owner only; the values are stored in an owner-only table, never in settings or logs.';

CREATE FUNCTION payments.pay_dead_letters()
	RETURNS SETOF payments.operations
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments
	AS $$ SELECT * FROM payments.operations WHERE status = 'dead' ORDER BY merchant_id, operation_id $$;
REVOKE ALL ON FUNCTION payments.pay_dead_letters() FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_dead_letters() IS
	'Operations that exhausted their attempts (dead letters). Owner only.';

CREATE FUNCTION payments.pay_retry_dead_letter(merchant_id bigint, operation_id bigint)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	o payments.operations;
BEGIN
	UPDATE payments.operations x SET status = 'queued', attempts = 0, next_attempt_at = now()
	WHERE x.merchant_id = pay_retry_dead_letter.merchant_id
		AND x.operation_id = pay_retry_dead_letter.operation_id AND x.status = 'dead'
	RETURNING * INTO o;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'operation % of merchant % is not a dead letter', operation_id, merchant_id
			USING ERRCODE = 'PT404';
	END IF;
	PERFORM payments._wake_at_commit();
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_retry_dead_letter(bigint, bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_retry_dead_letter(bigint, bigint) IS
	'Puts a dead-letter operation back in the queue with a fresh attempt budget. Owner only.';

CREATE FUNCTION payments.pay_discard_dead_letter(merchant_id bigint, operation_id bigint)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	o payments.operations;
BEGIN
	UPDATE payments.operations x SET status = 'canceled', completed_at = now()
	WHERE x.merchant_id = pay_discard_dead_letter.merchant_id
		AND x.operation_id = pay_discard_dead_letter.operation_id AND x.status = 'dead'
	RETURNING * INTO o;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'operation % of merchant % is not a dead letter', operation_id, merchant_id
			USING ERRCODE = 'PT404';
	END IF;
	DELETE FROM payments.card_vault v WHERE v.merchant_id = o.merchant_id AND v.operation_id = o.operation_id;
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_discard_dead_letter(bigint, bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_discard_dead_letter(bigint, bigint) IS
	'Gives up a dead-letter operation (status canceled) and erases its sealed card data. The payment keeps its status; if the outcome was unknown it stays unknown. Owner only.';
