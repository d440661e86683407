-- Gateway configuration and dead letters (owner only).

------------------------------------------------------------------------------
-- Gateway configuration, dead letters, health (owner only).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- The state of each merchant's gateway account, as the worker sees it.
--
-- An account error (wrong credentials, inactive account, a permission the
-- account lacks: anet_protocol.h lists the codes) is no answer about a
-- payment: nothing was processed, and every request of that merchant fails
-- the same way until someone fixes the account or the configuration.  The
-- worker keeps the operations queued (never failed, never a decline),
-- marks the merchant's gateway as failing here, and holds the merchant's
-- operations for a backoff that doubles with each failure in a row
-- (payments.account_retry_min to payments.account_retry_max).  Other
-- merchants are not affected.  The first request of the merchant the
-- gateway accepts again clears the state and releases the held
-- operations; so does pay_configure_gateway (at once, not at the end of
-- the backoff).  The same row carries the credentials check that
-- pay_configure_gateway(verify => true) asks the worker for.
------------------------------------------------------------------------------

CREATE TABLE payments.gateway_status (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	failing_since timestamptz,
	failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
	last_error_code text,
	last_error_text text,
	last_error_at timestamptz,
	retry_at timestamptz,
	last_success_at timestamptz,
	verification text CHECK (verification IN ('requested', 'sending', 'succeeded', 'failed')),
	verification_requested_at timestamptz,
	verification_sent_at timestamptz,
	verification_finished_at timestamptz,
	verification_code text,
	verification_text text,
	updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON payments.gateway_status FROM PUBLIC;
COMMENT ON TABLE payments.gateway_status IS
	'Per merchant: whether its gateway account is failing (an account error such as E00007 since failing_since; its operations are held until retry_at) and the last credentials check asked for by pay_configure_gateway(verify => true). Written by the worker and pay_configure_gateway; read it through pay_gateway_status(). Owner only; holds no secret.';
COMMENT ON COLUMN payments.gateway_status.merchant_id IS 'The merchant.';
COMMENT ON COLUMN payments.gateway_status.failing_since IS 'First account error of the current run of failures; NULL while the gateway accepts the merchant''s requests.';
COMMENT ON COLUMN payments.gateway_status.failures IS 'Account errors in a row (rounds of the worker); sets the backoff. Reset by a success and by pay_configure_gateway.';
COMMENT ON COLUMN payments.gateway_status.last_error_code IS 'The gateway''s code of the last account error (E00007, E00008, ..., or a transaction reason such as 13).';
COMMENT ON COLUMN payments.gateway_status.last_error_text IS 'The gateway''s text of the last account error.';
COMMENT ON COLUMN payments.gateway_status.last_error_at IS 'When the last account error came.';
COMMENT ON COLUMN payments.gateway_status.retry_at IS 'While failing: the merchant''s operations are held until then.';
COMMENT ON COLUMN payments.gateway_status.last_success_at IS 'When a request of the merchant was last accepted after a failure (or by a credentials check).';
COMMENT ON COLUMN payments.gateway_status.verification IS 'The last credentials check (authenticateTestRequest): requested, sending, succeeded or failed; NULL when none was asked for.';
COMMENT ON COLUMN payments.gateway_status.verification_requested_at IS 'When pay_configure_gateway(verify => true) asked for the check.';
COMMENT ON COLUMN payments.gateway_status.verification_sent_at IS 'When the worker sent it.';
COMMENT ON COLUMN payments.gateway_status.verification_finished_at IS 'When its answer (or the failure to get one) was recorded.';
COMMENT ON COLUMN payments.gateway_status.verification_code IS 'The gateway''s message code (I00001 when the credentials are valid, E00007 when not); NULL when no answer came.';
COMMENT ON COLUMN payments.gateway_status.verification_text IS 'The gateway''s message text, or why no answer came.';
COMMENT ON COLUMN payments.gateway_status.updated_at IS 'Last change of the row.';
SELECT pg_catalog.pg_extension_config_dump('payments.gateway_status', '');

-- The wait before the next try after the n-th account error in a row:
-- payments.account_retry_min doubled n - 1 times, at most
-- payments.account_retry_max.
CREATE FUNCTION payments._account_backoff(failures integer) RETURNS interval
	LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pay_account_backoff';
COMMENT ON FUNCTION payments._account_backoff(integer) IS
	'Internal: the wait before retrying a merchant after its n-th account error in a row (payments.account_retry_min doubled, at most payments.account_retry_max).';

-- The worker, in the transaction that records a round's outcomes, before
-- it records them: the merchants whose requests met an account error
-- (p_failed_merchant, with the operation, 0 for none, and the code and
-- text; a merchant may repeat) and those whose requests the gateway
-- accepted (p_ok_merchant).  A merchant in both lists is taken as working
-- (its configuration changed while requests were in flight).  Marks the
-- failing merchants, refunds the attempt the account error cost (it says
-- nothing about the operation), holds every queued or unknown operation of
-- theirs until the backoff ends; clears the merchants that work again and
-- releases their held operations.  Returns, for each element of
-- p_failed_merchant, the time its operation should be tried again, how
-- many merchants are failing now, and whether any merchant changed state.
CREATE FUNCTION payments._gateway_status_note(
	p_failed_merchant bigint[], p_failed_operation bigint[], p_code text[], p_text text[],
	p_ok_merchant bigint[],
	OUT retry_at timestamptz[], OUT failing integer, OUT changed boolean)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m record;
BEGIN
	changed := false;
	-- working again: clear, and release what the failure held
	FOR m IN
		SELECT s.merchant_id, s.retry_at AS held_until FROM payments.gateway_status s
		WHERE s.merchant_id = ANY (p_ok_merchant) AND s.failing_since IS NOT NULL
		FOR UPDATE
	LOOP
		UPDATE payments.gateway_status s SET failing_since = NULL, failures = 0, retry_at = NULL,
			last_success_at = now(), updated_at = now()
		WHERE s.merchant_id = m.merchant_id;
		UPDATE payments.operations o SET next_attempt_at = now()
		WHERE o.merchant_id = m.merchant_id AND o.status IN ('queued', 'unknown')
			AND o.next_attempt_at > now() AND o.next_attempt_at <= m.held_until;
		changed := true;
	END LOOP;

	-- failing: one more failure in a row per merchant and round
	FOR m IN
		SELECT DISTINCT ON (f.merchant_id) f.merchant_id, f.code, f.text
		FROM unnest(p_failed_merchant, p_code, p_text) WITH ORDINALITY AS f(merchant_id, code, text, i)
		WHERE f.merchant_id <> ALL (coalesce(p_ok_merchant, '{}'))
		ORDER BY f.merchant_id, f.i DESC
	LOOP
		INSERT INTO payments.gateway_status AS s (merchant_id, failing_since, failures,
			last_error_code, last_error_text, last_error_at, retry_at)
		VALUES (m.merchant_id, now(), 1, m.code, left(m.text, 500), now(),
			now() + payments._account_backoff(1))
		ON CONFLICT (merchant_id) DO UPDATE SET
			failing_since = coalesce(s.failing_since, now()), failures = s.failures + 1,
			last_error_code = EXCLUDED.last_error_code, last_error_text = EXCLUDED.last_error_text,
			last_error_at = now(), retry_at = now() + payments._account_backoff(s.failures + 1),
			updated_at = now();
		changed := true;
		-- the merchant's other operations would fail the same way: hold them
		UPDATE payments.operations o SET next_attempt_at = s.retry_at,
			last_error = format('held: the merchant''s gateway account failed: %s %s', m.code, m.text)
		FROM payments.gateway_status s
		WHERE s.merchant_id = m.merchant_id AND o.merchant_id = m.merchant_id
			AND o.status IN ('queued', 'unknown') AND o.next_attempt_at < s.retry_at;
	END LOOP;

	-- an account error says nothing about the operation: no attempt spent
	UPDATE payments.operations o SET attempts = greatest(o.attempts - 1, 0)
	FROM unnest(p_failed_merchant, p_failed_operation) AS f(merchant_id, operation_id)
	WHERE o.merchant_id = f.merchant_id AND o.operation_id = f.operation_id
		AND o.status = 'sending' AND f.merchant_id <> ALL (coalesce(p_ok_merchant, '{}'));

	retry_at := ARRAY(
		SELECT CASE WHEN f.merchant_id = ANY (coalesce(p_ok_merchant, '{}'))
			THEN now() + payments._account_backoff(1) ELSE s.retry_at END
		FROM unnest(p_failed_merchant) WITH ORDINALITY AS f(merchant_id, i)
		LEFT JOIN payments.gateway_status s ON s.merchant_id = f.merchant_id
		ORDER BY f.i);
	SELECT count(*) INTO failing FROM payments.gateway_status s WHERE s.failing_since IS NOT NULL;
END
$$;
COMMENT ON FUNCTION payments._gateway_status_note(bigint[], bigint[], text[], text[], bigint[]) IS
	'Worker: records which merchants met an account error (and holds their operations for the backoff, without spending an attempt) and which work again (cleared, operations released); returns the retry time of each failed operation, how many merchants are failing, and whether anything changed.';

-- What the worker publishes to shared memory for pay_worker_health and
-- pay_metrics: the failing merchants, oldest failure first.
CREATE FUNCTION payments._gateway_failing(p_limit integer)
	RETURNS TABLE (merchant_id bigint, failing_since timestamptz, last_error_code text,
		last_error_text text, total bigint)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT s.merchant_id, s.failing_since, s.last_error_code, s.last_error_text, count(*) OVER ()
	FROM payments.gateway_status s
	WHERE s.failing_since IS NOT NULL
	ORDER BY s.failing_since, s.merchant_id
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._gateway_failing(integer) IS
	'Worker: the merchants whose gateway account is failing (at most p_limit, oldest first, with the total), for pay_worker_health and pay_metrics.';

-- The credentials checks asked for: claimed as "sending" before anything is
-- sent.  A check left "sending" by a worker that stopped is sent again (it
-- changes nothing at the gateway).
CREATE FUNCTION payments._claim_verifications(p_limit integer)
	RETURNS TABLE (merchant_id bigint, requested_at timestamptz, api_login_id text,
		transaction_key text, endpoint_url text, ca_file text, timeout_ms integer)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- PL/pgSQL keeps the plan (a SQL function was planned again at every
	-- claim of the worker, and nearly every claim finds nothing here)
	RETURN QUERY
	WITH claimed AS (
		UPDATE payments.gateway_status s SET verification = 'sending',
			verification_sent_at = clock_timestamp(), updated_at = now()
		FROM payments.gateway_config g
		WHERE g.merchant_id = s.merchant_id
			AND s.merchant_id IN (
				SELECT x.merchant_id FROM payments.gateway_status x
				WHERE x.verification = 'requested'
					OR (x.verification = 'sending' AND x.verification_sent_at < now() - interval '15 minutes')
				ORDER BY x.verification_requested_at
				LIMIT p_limit
				FOR UPDATE SKIP LOCKED)
		RETURNING s.merchant_id, s.verification_requested_at, g.api_login_id, g.transaction_key,
			g.endpoint_url, g.ca_file, g.timeout_ms)
	SELECT * FROM claimed;
END
$$;
COMMENT ON FUNCTION payments._claim_verifications(integer) IS
	'Worker: claims up to p_limit credentials checks asked for by pay_configure_gateway(verify => true), marking them sending.';

-- The answer to a credentials check (only for the request it answers: a
-- newer pay_configure_gateway(verify => true) asks again).
CREATE FUNCTION payments._record_verification(p_merchant_id bigint, p_requested_at timestamptz,
	p_succeeded boolean, p_code text, p_text text)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.gateway_status s SET
		verification = CASE WHEN p_succeeded THEN 'succeeded' ELSE 'failed' END,
		verification_finished_at = clock_timestamp(), verification_code = p_code,
		verification_text = left(p_text, 500), updated_at = now()
	WHERE s.merchant_id = p_merchant_id AND s.verification = 'sending'
		AND s.verification_requested_at = p_requested_at
	$$;
COMMENT ON FUNCTION payments._record_verification(bigint, timestamptz, boolean, text, text) IS
	'Worker: records the answer to a credentials check (succeeded or failed, the gateway''s code and text).';

CREATE FUNCTION payments.pay_configure_gateway(
	api_login_id text,
	transaction_key text,
	endpoint_url text DEFAULT 'https://apitest.authorize.net/xml/v1/request.api',
	signature_key text DEFAULT NULL,
	ca_file text DEFAULT NULL,
	timeout_ms integer DEFAULT 30000,
	merchant_id bigint DEFAULT NULL,
	verify boolean DEFAULT false)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := coalesce(pay_configure_gateway.merchant_id, payments.pay_current_merchant());
	was_configured boolean;
	old_login text;
	in_doubt bigint;
	held_until timestamptz;
	new_account text := payments._gateway_account(pay_configure_gateway.api_login_id);
BEGIN
	-- the transaction key and the card numbers must not travel in clear
	IF lower(endpoint_url) LIKE 'http://%'
		AND NOT current_setting('payments.allow_insecure_endpoint')::boolean THEN
		RAISE EXCEPTION 'the gateway endpoint must use https'
			USING ERRCODE = '22Y30',
				DETAIL = 'Over http the transaction key and card numbers would travel in clear.',
				HINT = 'Use the https endpoint of the gateway; for a test against a local simulator a superuser can SET payments.allow_insecure_endpoint = on.';
	END IF;
	-- kept for the gateway's signed replies and notifications: a key of
	-- another form (a typo, another credential pasted) would fail them all
	IF pay_configure_gateway.signature_key !~ '^[0-9A-Fa-f]{128}$' THEN
		RAISE EXCEPTION 'signature_key must be 128 hexadecimal digits'
			USING ERRCODE = '22023',
				DETAIL = 'The Signature Key of an Authorize.Net account is 128 hexadecimal digits; the value given is not, and is not shown.',
				HINT = 'Copy it from the Merchant Interface (Account, Settings, API Credentials and Keys), or pass NULL to keep none.';
	END IF;
	-- a merchant named that does not exist (the owner acting for any)
	PERFORM FROM payments.merchants x WHERE x.merchant_id = m;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'merchant % does not exist', m USING ERRCODE = 'PT404';
	END IF;
	SELECT true, g.api_login_id INTO was_configured, old_login FROM payments.gateway_config g WHERE g.merchant_id = m;
	-- another gateway account: what may have reached the current one and
	-- is not resolved would be sent again to the new one (charged twice)
	-- or looked up where it never was
	IF was_configured AND old_login IS DISTINCT FROM pay_configure_gateway.api_login_id THEN
		-- (and what the gateway holds for review there: the review
		-- check would ask the new account about it)
		-- (what was sent to, or made at, the new account goes on there:
		-- back to the account it was sent to, a held one resolves)
		SELECT count(*) + (SELECT count(*) FROM payments.payments p
				WHERE p.merchant_id = m AND p.status = 'in_review'
					AND NOT EXISTS (SELECT 1 FROM payments.operations x
						WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
							AND x.kind IN ('purchase', 'authorize') AND x.gateway_account = new_account))
		INTO in_doubt FROM payments.operations o
		WHERE o.merchant_id = m AND (o.status IN ('sending', 'in_review')
			OR (NOT o.never_sent AND o.status IN ('queued', 'unknown', 'dead')))
			AND o.gateway_account IS DISTINCT FROM new_account;
		IF in_doubt > 0 THEN
			RAISE EXCEPTION 'merchant % has % operations that may have reached its current gateway account and are not resolved', m, in_doubt
				USING ERRCODE = '55000',
					DETAIL = 'Sent again to another account (another api_login_id) they would be charged again there; looked up there, they would never be found.',
					HINT = 'Let them resolve on the current account (pay_retry_dead_letter for dead letters), or settle them with what the gateway''s console shows (pay_resolve_dead_letter; pay_discard_dead_letter for one never sent), then change the account.';
		END IF;
	END IF;
	INSERT INTO payments.gateway_config AS g (merchant_id, api_login_id, transaction_key, endpoint_url,
		signature_key, ca_file, timeout_ms)
	VALUES (m, api_login_id, transaction_key, endpoint_url, signature_key, ca_file, timeout_ms)
	ON CONFLICT ON CONSTRAINT gateway_config_pkey DO UPDATE SET api_login_id = EXCLUDED.api_login_id,
		transaction_key = EXCLUDED.transaction_key, endpoint_url = EXCLUDED.endpoint_url,
		signature_key = EXCLUDED.signature_key, ca_file = EXCLUDED.ca_file,
		timeout_ms = EXCLUDED.timeout_ms, updated_at = now();

	-- a new configuration starts a new backoff; a check is asked for
	SELECT s.retry_at INTO held_until FROM payments.gateway_status s WHERE s.merchant_id = m FOR UPDATE;
	INSERT INTO payments.gateway_status AS s (merchant_id, verification, verification_requested_at)
	VALUES (m, CASE WHEN verify THEN 'requested' END, CASE WHEN verify THEN clock_timestamp() END)
	ON CONFLICT ON CONSTRAINT gateway_status_pkey DO UPDATE SET failures = 0, retry_at = NULL,
		verification = CASE WHEN verify THEN 'requested' ELSE s.verification END,
		verification_requested_at = CASE WHEN verify THEN clock_timestamp() ELSE s.verification_requested_at END,
		verification_sent_at = CASE WHEN verify THEN NULL ELSE s.verification_sent_at END,
		verification_finished_at = CASE WHEN verify THEN NULL ELSE s.verification_finished_at END,
		verification_code = CASE WHEN verify THEN NULL ELSE s.verification_code END,
		verification_text = CASE WHEN verify THEN NULL ELSE s.verification_text END,
		updated_at = now();

	-- what waited for a configuration, or was held by an account error,
	-- is tried now
	UPDATE payments.operations o SET next_attempt_at = now()
	WHERE o.merchant_id = m AND o.status IN ('queued', 'unknown') AND o.next_attempt_at > now()
		AND (was_configured IS NULL OR o.next_attempt_at <= held_until);
	PERFORM payments._wake_at_commit();
END
$$;
REVOKE ALL ON FUNCTION payments.pay_configure_gateway(text, text, text, text, text, integer, bigint, boolean) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_configure_gateway(text, text, text, text, text, integer, bigint, boolean) IS
	'Sets the Authorize.Net API login id, transaction key, endpoint URL (https only, unless payments.allow_insecure_endpoint), signature key, CA file (for a private CA such as the simulator''s) and timeout of a merchant (default: the current one), and retries at once the operations that waited for a configuration or were held by an account error. verify => true asks the worker to check the credentials with the gateway (authenticateTestRequest) after commit; pay_gateway_status() shows the answer. Owner only; the values are stored in an owner-only table, never in settings or logs.';

-- Wait up to wait_ms for a merchant's credentials check asked for by an
-- earlier, committed pay_configure_gateway(verify => true) to be answered.
CREATE FUNCTION payments._wait_for_verification(p_merchant_id bigint, p_wait_ms integer)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => greatest(p_wait_ms, 0) / 1000.0);
	v text;
	mine boolean;
BEGIN
	LOOP
		-- (xmin is the 32-bit transaction id: the full one modulo 2^32)
		SELECT s.verification,
			s.xmin::text::bigint = (pg_current_xact_id_if_assigned()::text::numeric % 4294967296)::bigint
		INTO v, mine
		FROM payments.gateway_status s WHERE s.merchant_id = p_merchant_id;
		IF mine AND v IN ('requested', 'sending') THEN
			RAISE EXCEPTION 'the credentials check was asked for in this transaction'
				USING ERRCODE = '55000',
					DETAIL = 'The worker sends it only once the transaction that asked for it commits.',
					HINT = 'Commit, then call pay_gateway_status(wait_ms => ...) in a new transaction.';
		END IF;
		EXIT WHEN v IS NULL OR v NOT IN ('requested', 'sending');
		-- in a database the worker does not serve nothing sends the check:
		-- a NOTICE says so, and no wait there
		EXIT WHEN payments._note_unserved_database() OR clock_timestamp() >= deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._wait_for_verification(bigint, integer) IS
	'Internal: waits up to p_wait_ms for the merchant''s credentials check to be answered (refused in the transaction that asked for it); in a database the worker does not serve, returns at once with a NOTICE (01Y01).';

-- A merchant's gateway as the worker last saw it; wait_ms > 0 waits (up
-- to that long) for a credentials check asked for by an earlier, committed
-- pay_configure_gateway(verify => true) to be answered (not in a database
-- the worker does not serve: _wait_for_verification).
CREATE FUNCTION payments.pay_gateway_status(merchant_id bigint DEFAULT NULL, wait_ms integer DEFAULT 0)
	RETURNS TABLE (merchant_id bigint, configured boolean, endpoint_url text, state text,
		failing_since timestamptz, last_error_code text, last_error_text text,
		last_error_at timestamptz, retry_at timestamptz, last_success_at timestamptz,
		held_operations bigint, verification text, verification_requested_at timestamptz,
		verification_finished_at timestamptz, verification_code text, verification_text text)
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	-- its own statement: the answer is read with a snapshot taken after it
	SELECT payments._wait_for_verification(coalesce($1, payments.pay_current_merchant()), $2)
	WHERE $2 > 0;
	SELECT x.merchant_id, g.merchant_id IS NOT NULL, g.endpoint_url,
		CASE WHEN g.merchant_id IS NULL THEN 'unconfigured'
			WHEN s.failing_since IS NOT NULL THEN 'failing'
			ELSE 'ok' END,
		s.failing_since, s.last_error_code, s.last_error_text, s.last_error_at, s.retry_at,
		s.last_success_at,
		(SELECT count(*) FROM payments.operations o
		 WHERE o.merchant_id = x.merchant_id AND o.status IN ('queued', 'unknown')
			AND s.failing_since IS NOT NULL AND o.next_attempt_at > now()),
		s.verification, s.verification_requested_at, s.verification_finished_at,
		s.verification_code, s.verification_text
	FROM (SELECT coalesce($1, payments.pay_current_merchant()) AS merchant_id) x
	LEFT JOIN payments.gateway_config g ON g.merchant_id = x.merchant_id
	LEFT JOIN payments.gateway_status s ON s.merchant_id = x.merchant_id
	$$;
REVOKE ALL ON FUNCTION payments.pay_gateway_status(bigint, integer) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_gateway_status(bigint, integer) IS
	'A merchant''s gateway (default: the current one): configured, endpoint, state (ok, failing after an account error such as E00007, unconfigured), since when it fails, the last account error code and text, until when its operations are held and how many, and the last credentials check (verification requested, sending, succeeded or failed, with the gateway''s code and text). wait_ms > 0 waits up to that long for a check asked for by an earlier, committed pay_configure_gateway(verify => true); in a database the worker does not serve, which never sends it, it returns at once with a NOTICE (01Y01). No secrets. Owner only.';

CREATE FUNCTION payments.pay_dead_letters()
	RETURNS SETOF payments.operations
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT * FROM payments.operations WHERE status = 'dead' ORDER BY merchant_id, operation_id $$;
REVOKE ALL ON FUNCTION payments.pay_dead_letters() FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_dead_letters() IS
	'Operations that exhausted their attempts (dead letters). Owner only.';

-- A dead letter, locked for the owner's call that settles it (retry,
-- discard, resolve); anything else, PT404.
CREATE FUNCTION payments._dead_letter_for_update(p_merchant_id bigint, p_operation_id bigint)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
BEGIN
	-- a NULL id is a missing argument, not an unknown operation
	-- ("operation <NULL> of merchant 2 is not a dead letter")
	IF p_merchant_id IS NULL THEN
		RAISE EXCEPTION 'merchant_id is required' USING ERRCODE = '22004';
	END IF;
	IF p_operation_id IS NULL THEN
		RAISE EXCEPTION 'operation_id is required' USING ERRCODE = '22004';
	END IF;
	SELECT * INTO o FROM payments.operations x
	WHERE x.merchant_id = p_merchant_id AND x.operation_id = p_operation_id AND x.status = 'dead'
	FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'operation % of merchant % is not a dead letter', p_operation_id, p_merchant_id
			USING ERRCODE = 'PT404';
	END IF;
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments._dead_letter_for_update(bigint, bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments._dead_letter_for_update(bigint, bigint) IS
	'Internal: a merchant''s dead-letter operation, locked (FOR UPDATE); PT404 when it is not one.';

CREATE FUNCTION payments.pay_retry_dead_letter(merchant_id bigint, operation_id bigint)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations := payments._dead_letter_for_update(merchant_id, operation_id);
BEGIN
	UPDATE payments.operations x SET status = 'queued', attempts = 0, next_attempt_at = now()
	WHERE x.merchant_id = o.merchant_id AND x.operation_id = o.operation_id
	RETURNING * INTO o;
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
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations := payments._dead_letter_for_update(merchant_id, operation_id);
	inv text;
BEGIN
	-- A capture, void or refund that may have reached the gateway cannot be
	-- given up: its payment would act as if it never happened (a refund's
	-- amount refundable again, an authorization capturable again) though
	-- the gateway may have done it.  Only the owner can say (resolve it).
	IF o.kind IN ('capture', 'void', 'refund') AND NOT o.never_sent THEN
		RAISE EXCEPTION 'cannot discard % operation %: it may have reached the gateway', o.kind, o.operation_id
			USING ERRCODE = '55000',
				DETAIL = format('Discarded, payment %s would act as if the %s never happened, though the gateway may have done it%s.',
					o.payment_id, o.kind, CASE o.kind WHEN 'refund' THEN ' (its amount would be refundable again)'
						WHEN 'capture' THEN ' (the authorization would be capturable again)' ELSE '' END),
				HINT = 'Look it up in the gateway''s console and settle it with pay_resolve_dead_letter (succeeded with its transaction id, failed, or not_charged when the gateway has none), or retry it with pay_retry_dead_letter.';
	END IF;
	UPDATE payments.operations x SET status = 'canceled', completed_at = now()
	WHERE x.merchant_id = o.merchant_id AND x.operation_id = o.operation_id
	RETURNING * INTO o;
	DELETE FROM payments.card_vault v WHERE v.merchant_id = o.merchant_id AND v.operation_id = o.operation_id;
	-- a purchase or authorization that provably never reached the gateway
	-- charged nothing: its payment is canceled (with its event; an
	-- invoice's charge goes on to dunning, _invoice_payment_outcome).
	-- One that may have reached it keeps its status (unknown): only the
	-- owner, who can look it up at the gateway, can say what became of it
	-- (pay_resolve_dead_letter, before discarding).
	IF o.kind IN ('purchase', 'authorize') AND o.never_sent THEN
		UPDATE payments.payments p SET status = 'canceled', decline_code = 'discarded',
			decline_reason = 'The operation ran out of attempts without reaching the gateway and was discarded; nothing was charged.'
		WHERE p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id AND p.status = 'pending';
	ELSIF o.kind IN ('purchase', 'authorize') THEN
		SELECT p.invoice_number INTO inv FROM payments.payments p
		WHERE p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id;
		RAISE WARNING 'payment % of merchant % keeps its status: operation % may have reached the gateway', o.payment_id, o.merchant_id, o.operation_id
			USING ERRCODE = '01000',
				DETAIL = 'Nobody knows whether the gateway charged it, so the payment stays as it is (unknown) and an invoice it charges stays open.',
				HINT = format('Look up invoice number %s in the gateway''s console and settle such a dead letter with pay_resolve_dead_letter (succeeded with its transaction id, failed or not_charged) instead of discarding it.', inv);
	END IF;
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_discard_dead_letter(bigint, bigint) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_discard_dead_letter(bigint, bigint) IS
	'Gives up a dead-letter operation (status canceled) and erases its sealed card data. A purchase or authorization that never reached the gateway cancels its payment (decline_code discarded; an invoice''s charge goes on to dunning); otherwise the payment keeps its status, and an unknown outcome stays unknown (a warning says so: pay_resolve_dead_letter settles such a dead letter with the outcome the owner found at the gateway). Owner only.';

-- A dead letter that may have reached the gateway, settled with what the
-- owner found in the gateway's console: succeeded (with the gateway's
-- transaction id, which a later capture, void or refund refers to), failed
-- (the gateway declined it or it failed there) or not_charged (the gateway
-- has no such transaction).  The outcome is recorded as the gateway's
-- answer would be (_record_result from the dead status: approved or
-- declined), so the operation, the payment, its amounts, events and audit
-- rows, and an invoice it charges (paid, or dunning) follow as for a real
-- answer.  Purchases, authorizations, captures, voids and refunds; a
-- payment method's or customer's operation is retried or discarded.
CREATE FUNCTION payments.pay_resolve_dead_letter(merchant_id bigint, operation_id bigint,
	outcome text, transaction_id text DEFAULT NULL, reason text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	other bigint;
BEGIN
	IF outcome IS NULL OR outcome NOT IN ('succeeded', 'failed', 'not_charged') THEN
		RAISE EXCEPTION 'invalid outcome of a dead letter'
			USING ERRCODE = '22023',
				DETAIL = 'The outcome is succeeded, failed or not_charged.',
				HINT = 'Pass what the gateway shows for the transaction: succeeded (with its transaction id), failed, or not_charged when it has none.';
	END IF;
	IF outcome = 'succeeded' AND transaction_id IS NULL THEN
		RAISE EXCEPTION 'a succeeded dead letter needs the gateway''s transaction id'
			USING ERRCODE = '22004',
				DETAIL = 'A later capture, void or refund of the payment refers to the transaction by its id.',
				HINT = 'Pass transaction_id => the transaction id the gateway''s console shows.';
	END IF;
	-- as the gateway writes transaction ids, and as they are sent back to it
	-- (refTransId: 1 to 20 digits); 0 is the gateway's "none"
	IF transaction_id IS NOT NULL AND transaction_id !~ '^[1-9][0-9]{0,19}$' THEN
		RAISE EXCEPTION 'invalid transaction id'
			USING ERRCODE = '22023',
				DETAIL = 'A transaction id is 1 to 20 digits without a leading zero, as the gateway shows it.';
	END IF;
	PERFORM payments._check_text('transaction_id', transaction_id);
	PERFORM payments._check_text('reason', reason, 255);

	o := payments._dead_letter_for_update(merchant_id, operation_id);
	IF o.kind NOT IN ('purchase', 'authorize', 'capture', 'void', 'refund') THEN
		RAISE EXCEPTION 'a dead letter of kind % cannot be resolved by hand', o.kind
			USING ERRCODE = '0A000',
				DETAIL = 'Only payments'' operations (purchase, authorize, capture, void, refund) are resolved with an outcome.',
				HINT = 'Retry it with pay_retry_dead_letter (the worker asks the gateway what became of it) or give it up with pay_discard_dead_letter.';
	END IF;
	IF outcome = 'succeeded' AND o.never_sent THEN
		RAISE EXCEPTION 'operation % of merchant % never reached the gateway', operation_id, merchant_id
			USING ERRCODE = '55000',
				DETAIL = 'Every attempt of it provably failed before the gateway processed it, so the gateway cannot have a transaction of it.',
				HINT = 'Resolve it as not_charged, retry it with pay_retry_dead_letter, or discard it with pay_discard_dead_letter.';
	END IF;
	-- the transaction is the one the gateway's answer would have named;
	-- another one was copied from the wrong line.  A charge's is that
	-- payment's alone.  A capture or a void (a refund sent as one too)
	-- acts on its payment's transaction, and the gateway keeps its id.  A
	-- refund has a transaction of its own: no payment's, and no other
	-- operation's of its payment.
	IF outcome = 'succeeded' THEN
		SELECT * INTO p FROM payments.payments x
		WHERE x.merchant_id = o.merchant_id AND x.payment_id = o.payment_id;
		IF o.kind IN ('capture', 'void') OR o.via_void THEN
			IF transaction_id <> p.gateway_trans_id THEN
				RAISE EXCEPTION 'transaction % is not the transaction of payment % of merchant %', transaction_id, p.payment_id, o.merchant_id
					USING ERRCODE = '22023',
						DETAIL = 'A capture or a void acts on its payment''s transaction, whose id the gateway keeps.',
						HINT = format('Pass the transaction of invoice number %s, the operation''s payment.', p.invoice_number);
			END IF;
		ELSE
			SELECT x.payment_id INTO other FROM payments.payments x
			WHERE x.merchant_id = o.merchant_id AND x.gateway_trans_id = transaction_id
				AND (o.kind = 'refund' OR x.payment_id <> o.payment_id)
			LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'transaction % is the transaction of payment % of merchant %', transaction_id, other, o.merchant_id
					USING ERRCODE = '22023',
						HINT = CASE WHEN o.kind = 'refund'
							THEN format('Pass the refund''s own transaction: a refund of the payment''s transaction %s (not only one of invoice number R%s%s: after a restore or a failover that number may be another payment''s refund).', p.gateway_trans_id, payments._invoice_tag(), o.operation_id)
							ELSE format('Pass the transaction of invoice number %s, the operation''s payment.', p.invoice_number) END;
			END IF;
			IF o.kind = 'refund' THEN
				SELECT x.operation_id INTO other FROM payments.operations x
				WHERE x.merchant_id = o.merchant_id AND x.payment_id = o.payment_id
					AND x.operation_id <> o.operation_id AND x.gateway_trans_id = transaction_id
				LIMIT 1;
				IF FOUND THEN
					RAISE EXCEPTION 'transaction % is the transaction of operation % of merchant %', transaction_id, other, o.merchant_id
						USING ERRCODE = '22023',
							HINT = format('Pass the refund''s own transaction: a refund of the payment''s transaction %s (not only one of invoice number R%s%s: after a restore or a failover that number may be another payment''s refund).', p.gateway_trans_id, payments._invoice_tag(), o.operation_id);
				END IF;
			END IF;
		END IF;
	END IF;

	PERFORM payments._record_result(o.merchant_id, o.operation_id,
		CASE outcome WHEN 'succeeded' THEN 'approved' ELSE 'declined' END,
		NULL, NULL,
		coalesce(reason, CASE outcome
			WHEN 'succeeded' THEN 'The owner found the transaction approved at the gateway.'
			WHEN 'failed' THEN 'The owner found the transaction failed at the gateway; nothing was processed.'
			ELSE 'The owner found no transaction of it at the gateway; nothing was processed.' END),
		transaction_id, NULL, NULL, NULL, now(),
		CASE outcome WHEN 'failed' THEN 'resolved_failed' WHEN 'not_charged' THEN 'resolved_not_charged' END,
		NULL, NULL, 'dead');
	SELECT * INTO STRICT o FROM payments.operations x
	WHERE x.merchant_id = o.merchant_id AND x.operation_id = o.operation_id;
	RETURN o;
END
$$;
REVOKE ALL ON FUNCTION payments.pay_resolve_dead_letter(bigint, bigint, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_resolve_dead_letter(bigint, bigint, text, text, text) IS
	'Settles a dead-letter purchase, authorization, capture, void or refund with the outcome the owner verified at the gateway: succeeded (transaction_id required: the operation''s own transaction, which for a capture or a void is its payment''s; refused for an operation that never reached the gateway), failed or not_charged (decline_code resolved_failed or resolved_not_charged; reason, if given, is the decline reason). Recorded as the gateway''s answer would be: the payment''s status and amounts, its events and audit rows, and an invoice it charges (paid, or dunning) follow. Returns the operation. Owner only.';
