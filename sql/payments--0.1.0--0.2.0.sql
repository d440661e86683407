-- payments 0.1.0 -> 0.2.0: upgrade script.  Every change made to the 0.2.0
-- sources (sql/src/) since 0.1.0 is made here too; the upgrade test
-- (test/integration/upgrade_chain.sh) proves that an upgraded installation
-- and a fresh one are the same.  Each function, trigger, view and comment
-- is made once, in its final form (the same test checks it): a change to
-- one is made where it stands; a block `-- h-name:` before h-tenancy holds
-- what is new, and says where the functions it changed are.

\echo Use "ALTER EXTENSION payments UPDATE TO '0.2.0'" to load this file. \quit

-- One home for what each gateway outcome does (status_machine.sql): the
-- table, and the worker's functions that read it instead of mapping the
-- outcomes themselves (_record_final_results and _record_result, made once
-- since: in their final form in h-period-charge-number and
-- h-capture-expired).
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

CREATE OR REPLACE FUNCTION payments._recover_in_flight() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
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
-- h-acct: gateway account errors are not declines (issue 9).  Account errors
-- (E00007, inactive account, missing permission) hold the merchant's
-- operations with a backoff and mark its gateway as failing
-- (payments.gateway_status, pay_gateway_status, pay_worker_health,
-- pay_metrics); pay_configure_gateway refuses http:// (unless
-- payments.allow_insecure_endpoint), can ask for a credentials check
-- (verify => true) and retries held operations at once.
-- Made once since: _claim_verifications in h-plans; pay_configure_gateway in
-- h-discard-never-sent (their final form).
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

DROP FUNCTION payments.pay_configure_gateway(text, text, text, text, text, integer, bigint);

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

-- internal functions are not for callers (sql/src/privileges.sql)
REVOKE ALL ON FUNCTION payments._account_backoff(integer), payments._gateway_status_note(bigint[], bigint[], text[], text[], bigint[]), payments._gateway_failing(integer), payments._record_verification(bigint, timestamptz, boolean, text, text), payments._wait_for_verification(bigint, integer)	FROM PUBLIC;

DROP FUNCTION payments.pay_worker_health();
CREATE FUNCTION payments.pay_worker_health(
	OUT alive boolean, OUT pid integer, OUT started_at timestamptz, OUT last_loop_at timestamptz,
	OUT queue_depth bigint, OUT in_flight integer, OUT max_in_flight integer, OUT circuit_state text,
	OUT requests_sent bigint, OUT approved bigint, OUT declined bigint, OUT errors bigint,
	OUT unknown_outcomes bigint, OUT retries bigint, OUT failing_gateways integer,
	OUT gateway_failures jsonb, OUT served_database text,
	OUT worker_conf_loaded_at timestamptz, OUT recorder_conf_loaded_at timestamptz,
	OUT billing_conf_loaded_at timestamptz)
	RETURNS record
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_worker_health';
COMMENT ON FUNCTION payments.pay_worker_health() IS
	'Health of the background worker: alive (looped within 5 s), pid, start and last loop time, queue depth, requests in flight (now and at most), circuit breaker state (closed, open, half_open), outcome counters since server start, and the merchants whose gateway account fails (an account error such as E00007: their operations are held, not failed): how many, and the oldest 16 as [{merchant_id, failing_since, error_code, error_text}]; served_database: the database the worker serves (payments.database). In another database no worker serves this one: alive is false, queue_depth counts this database''s queued and unknown operations (never sent), and the worker''s columns are NULL. worker_conf_loaded_at, recorder_conf_loaded_at, billing_conf_loaded_at: the pg_conf_load_time() the worker, the recorder and the billing process each go by (when it last reread the configuration files, or when the server loaded the ones it started with), published at the top of each of its rounds, NULL before its first; once one is at or past a new session''s pg_conf_load_time(), that process goes by the settings the session shows.';

------------------------------------------------------------------------------
-- h-settle: refunds and voids decided by the worker from the gateway's state
-- of the transaction; settlement learned for every captured payment from
-- the batch lists; payments held for review resolved from the gateway.
-- Made once since: _settlement_candidates in h-account-life;
-- _record_refund_decision in h-refund-paths; _review_candidates in
-- h-account-bound; pay_refund in h-refund-dead-letters (their final form).
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
	SET search_path = pg_catalog, payments, pg_temp
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
	SET search_path = pg_catalog, payments, pg_temp
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

CREATE FUNCTION payments._recheck_waiting_refunds() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
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

CREATE FUNCTION payments._resolve_review(p_merchant_id bigint, p_payment_id bigint,
	p_transaction_status text, p_status_class text, p_response_code integer,
	p_reason_code integer, p_reason_text text, p_auth_code text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
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

REVOKE ALL ON FUNCTION payments._gateway_time(text), payments._record_settlements(bigint, text[], text[], text[]), payments._recheck_waiting_refunds(), payments._resolve_review(bigint, bigint, text, text, integer, integer, text, text)	FROM PUBLIC;

CREATE OR REPLACE FUNCTION payments.pay_void(
	payment_id bigint,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
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
	IF (payments._busy_operation(p)).operation_id IS NOT NULL THEN
		PERFORM payments._wrong_state(p, 'void', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	RETURN payments._new_operation(p, 'void', NULL, 'queued', NULL,
		pay_void.idempotency_key, pay_void.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_void(bigint, text, text) IS
	'Cancel an authorization or an unsettled capture. Returns the void operation; the worker sends it after COMMIT.';

-- ---------------------------------------------------------------------------
-- h-input: refuse at the call what the gateway would refuse (issue 9).
-- The argument checks of the payment API (payment_api.sql): idempotency
-- keys (22Y25, never echoed; PT409 no longer quotes the key), opaque data
-- (22Y22 for missing or empty fields), the texts and amount a request
-- carries (payments._check_gateway_input, in C: 22Y24, 22001, 22Y26,
-- 22Y22), the correlation id of every operation; pay_card's comment (at
-- most 16 digits).
-- Made once since: _check_idempotency_key, _check_gateway_input in
-- h-free-text; _idempotency_claim in h-erasure-keys; _create_payment in
-- h-purchase-scope; _new_operation in h-account-life (their final form).
-- ---------------------------------------------------------------------------
CREATE FUNCTION payments._check_opaque_data(p_opaque_data jsonb) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
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

REVOKE ALL ON FUNCTION payments._check_opaque_data(jsonb)	FROM PUBLIC;

COMMENT ON FUNCTION payments.pay_card(text, integer, integer, text, text) IS
	'Validate a card and return it as pay_card. number: 12 to 16 digits (the gateway takes at most 16), optionally grouped by single spaces or dashes, Luhn-valid, of a supported brand (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay) and a length that brand issues. exp_month 1-12; exp_year two (20YY) or four digits; valid through the end of the month (UTC), at most 20 years ahead. cvv: 3 digits, 4 for American Express. holder_name: up to 100 characters. A NULL number, month or year is an error (22004); NULL cvv or holder_name means absent. Errors never quote the input.';

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

------------------------------------------------------------------------------
-- h-rest: pay_metrics served as text/plain by PostgREST (a media type
-- handler domain); payment search (pay_list_payments) and its indexes.
-- Made once since: pay_list_payments in h-free-text-bounds (its final form).
------------------------------------------------------------------------------

CREATE DOMAIN payments."text/plain" AS text;
COMMENT ON DOMAIN payments."text/plain" IS
	'Text served by PostgREST as Content-Type text/plain (a media type handler): the return type of pay_metrics(). In SQL it is text.';

-- A new return type means a new function: its privileges, whatever the
-- blocks before this one made them, are carried over.
DO $$
DECLARE
	acl aclitem[];
	a record;
BEGIN
	SELECT proacl INTO acl FROM pg_catalog.pg_proc WHERE oid = 'payments.pay_metrics()'::pg_catalog.regprocedure;
	DROP FUNCTION payments.pay_metrics();
	CREATE FUNCTION payments.pay_metrics() RETURNS payments."text/plain"
		LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_metrics';
	IF acl IS NOT NULL THEN
		REVOKE ALL ON FUNCTION payments.pay_metrics() FROM PUBLIC;
		FOR a IN SELECT * FROM pg_catalog.aclexplode(acl) x
			WHERE x.grantee <> (SELECT proowner FROM pg_catalog.pg_proc WHERE oid = 'payments.pay_metrics()'::pg_catalog.regprocedure)
		LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION payments.pay_metrics() TO %s%s',
				-- regrole's text is already quoted where the name needs it
				CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
				CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		END LOOP;
	END IF;
END
$$;
COMMENT ON FUNCTION payments.pay_metrics() IS
	'Counters, gauges and latency histograms of the worker in Prometheus text format (in a database the worker does not serve: payments_worker_up and payments_database_served 0, and this database''s payments_queue_depth only). Returns the domain "text/plain" over text, so PostgREST serves GET /rpc/pay_metrics with Accept: text/plain as a Prometheus scrape.';

DROP INDEX payments.payments_status;
DROP INDEX payments.payments_created;
CREATE INDEX payments_status ON payments.payments (merchant_id, status, created_at, payment_id);
CREATE INDEX payments_created ON payments.payments (merchant_id, created_at, payment_id);
-- The indexes behind the filters (payments_created and payments_status, in
-- payment_tables.sql, serve the listing and the status filter).  Each ends
-- with (created_at, payment_id), so a filter's matches come newest first
-- without a sort.
CREATE INDEX payments_order_ref ON payments.payments (merchant_id, order_ref, created_at, payment_id)
	WHERE order_ref IS NOT NULL;
CREATE INDEX payments_customer_email ON payments.payments
	(merchant_id, lower(customer ->> 'email'), created_at, payment_id)
	WHERE customer ? 'email';
CREATE INDEX payments_amount ON payments.payments
	(merchant_id, payments.pay_currency(amount), payments.pay_minor_units(amount));

-- The query of a search: only the filters given, so that the plan is made
-- for them.  Parameters: $1 merchant, $2 and $3 the cursor's created_at and
-- payment_id, $4 status, $5 created_from, $6 created_to, $7 order_ref,
-- $8 customer_email, $9 currency, $10 and $11 minimum and maximum in minor
-- units, $12 page_size.
CREATE FUNCTION payments._list_payments_query(has_cursor boolean, has_status boolean,
	has_created_from boolean, has_created_to boolean, has_order_ref boolean,
	has_customer_email boolean, has_amount_min boolean, has_amount_max boolean)
	RETURNS text
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT 'SELECT p.* FROM payments.payments p WHERE p.merchant_id = $1'
		|| CASE WHEN has_cursor THEN ' AND (p.created_at, p.payment_id) < ($2, $3)' ELSE '' END
		|| CASE WHEN has_status THEN ' AND p.status = $4' ELSE '' END
		|| CASE WHEN has_created_from THEN ' AND p.created_at >= $5' ELSE '' END
		|| CASE WHEN has_created_to THEN ' AND p.created_at < $6' ELSE '' END
		|| CASE WHEN has_order_ref THEN ' AND p.order_ref = $7' ELSE '' END
		|| CASE WHEN has_customer_email
			THEN ' AND p.customer ? ''email'' AND lower(p.customer ->> ''email'') = lower($8)' ELSE '' END
		|| CASE WHEN has_amount_min OR has_amount_max THEN ' AND payments.pay_currency(p.amount) = $9' ELSE '' END
		|| CASE WHEN has_amount_min THEN ' AND payments.pay_minor_units(p.amount) >= $10' ELSE '' END
		|| CASE WHEN has_amount_max THEN ' AND payments.pay_minor_units(p.amount) <= $11' ELSE '' END
		|| ' ORDER BY p.created_at DESC, p.payment_id DESC LIMIT $12'
	$$;
COMMENT ON FUNCTION payments._list_payments_query(boolean, boolean, boolean, boolean, boolean, boolean, boolean, boolean) IS
	'Internal: the query pay_list_payments runs for the filters given (parameters $1 to $12).';

-- (privileges.sql revokes every internal function from PUBLIC at install)
REVOKE ALL ON FUNCTION payments._list_payments_query(boolean, boolean, boolean, boolean, boolean, boolean, boolean, boolean) FROM PUBLIC;

-- ==== h-amount: pay_amount sort support (issue 12) ====
-- sum(), min() and max() keep their definitions (the speed-up is in the C
-- functions they already use), so views over them upgrade untouched.
CREATE FUNCTION payments.pay_amount_sortsupport(internal) RETURNS void
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_sortsupport(internal) IS
	'Sort support for pay_amount (btree support function 2): fast comparator and abbreviated keys in the order of pay_amount_cmp.';
ALTER OPERATOR FAMILY payments.pay_amount_ops USING btree ADD
	FUNCTION 2 (payments.pay_amount, payments.pay_amount) payments.pay_amount_sortsupport(internal);

------------------------------------------------------------------------------
-- h-keys: merchant API keys (issue 10; sql/src/api_keys.sql, audit.sql,
-- privileges.sql; src/api_keys.c, rate_limit.c, tenancy.c): keys with
-- scopes, expiry, revocation, rotation; PostgREST's pre-request function;
-- rate limits in shared memory; the key id in audit rows.  Before the
-- h-tenancy block, whose privilege, row-security and scope steps cover
-- what is made here.
-- Made once since: _check_api_key_scopes in h-free-text-bounds;
-- pay_create_api_key in h-free-text; pay_list_api_keys in h-list-key-creator;
-- pay_rotate_api_key, _api_function_scope in h-key-bounds (their final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Keys: "pk_<key id>_<secret>", shown once; the row keeps the SHA-256 of
-- the key (the secret is 256 random bits), never the key.
------------------------------------------------------------------------------

CREATE TABLE payments.api_keys (
	merchant_id bigint NOT NULL REFERENCES payments.merchants ON DELETE CASCADE,
	key_id bigint GENERATED BY DEFAULT AS IDENTITY,
	name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
	scopes text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 4
		AND scopes <@ ARRAY['read', 'payments', 'refunds', 'admin'] AND array_position(scopes, NULL) IS NULL),
	secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
	previous_hash bytea CHECK (length(previous_hash) = 32),
	previous_valid_until timestamptz,
	rate_limit integer CHECK (rate_limit >= 0),
	burst integer CHECK (burst >= 1),
	expires_at timestamptz,
	rotated_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL,
	created_by_key bigint,
	PRIMARY KEY (merchant_id, key_id),
	CHECK ((previous_hash IS NULL) = (previous_valid_until IS NULL))
);
-- a key is found by its id (the prefix of the key); ids are unique by their sequence
CREATE INDEX api_keys_key_id ON payments.api_keys (key_id);
REVOKE ALL ON payments.api_keys FROM PUBLIC;
COMMENT ON COLUMN payments.api_keys.secret_hash IS 'SHA-256 of the whole key "pk_<key_id>_<secret>"; the key itself is shown once and kept nowhere.';
COMMENT ON COLUMN payments.api_keys.previous_hash IS 'After pay_rotate_api_key: the hash of the key before, accepted until previous_valid_until.';
COMMENT ON COLUMN payments.api_keys.created_by IS 'The role that created the key.';
SELECT pg_catalog.pg_extension_config_dump('payments.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('payments.api_keys_key_id_seq', '');

-- Each key's last use, in a row of its own: written by a request with the
-- key (_api_key_verify, at most once a minute), which holds the row until
-- its transaction ends.  In the key's own row, that write held back every
-- revocation, rotation and expiry change of the key for as long as the
-- transaction stayed open or PREPAREd: whoever held the key could keep it
-- from being revoked.  Nothing that changes a key waits for this row.
CREATE TABLE payments.api_key_uses (
	merchant_id bigint NOT NULL,
	key_id bigint NOT NULL,
	last_used_at timestamptz,
	PRIMARY KEY (merchant_id, key_id),
	FOREIGN KEY (merchant_id, key_id) REFERENCES payments.api_keys ON DELETE CASCADE
);
REVOKE ALL ON payments.api_key_uses FROM PUBLIC;
COMMENT ON TABLE payments.api_key_uses IS
	'The last use of each API key (one row per key, made with it), written at most once a minute per key by a request that may write; pay_list_api_keys adds the uses since, from shared memory. Apart from payments.api_keys so that a transaction that wrote it holds back no revocation or rotation of the key. Owner only.';
SELECT pg_catalog.pg_extension_config_dump('payments.api_key_uses', '');

-- Revocations, in rows of their own that a revocation only adds: in the
-- key's row (revoked_at), a transaction that had changed the row (an admin
-- key rotating or revoking itself, left open or PREPAREd) held back the
-- owner's revocation of the key for as long as its holder wished.  Adding
-- a row waits for no row lock (its foreign key takes FOR KEY SHARE, which
-- no change of a key conflicts with), nor for another revocation of the
-- same key: no index makes a key's row unique (each row has its own
-- revocation_id), a key may have several (two revocations at once), the
-- first counts.
CREATE TABLE payments.api_key_revocations (
	merchant_id bigint NOT NULL,
	revocation_id bigint GENERATED BY DEFAULT AS IDENTITY,
	key_id bigint NOT NULL,
	revoked_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, revocation_id),
	FOREIGN KEY (merchant_id, key_id) REFERENCES payments.api_keys ON DELETE CASCADE
);
-- a key's revocations (not unique: see above)
CREATE INDEX api_key_revocations_key ON payments.api_key_revocations (merchant_id, key_id);
REVOKE ALL ON payments.api_key_revocations FROM PUBLIC;
COMMENT ON TABLE payments.api_key_revocations IS
	'Revocations of API keys (pay_revoke_api_key, or the owner adding a row): a key with a row is revoked from its earliest revoked_at on, and with it the keys made with it (created_by_key, down the line: payments._api_key_state). Only added to; apart from payments.api_keys so that no transaction that changed a key (an admin key rotating itself, open or PREPAREd) holds back its revocation. Owner only.';
SELECT pg_catalog.pg_extension_config_dump('payments.api_key_revocations', '');
SELECT pg_catalog.pg_extension_config_dump('payments.api_key_revocations_revocation_id_seq', '');

-- What pay_create_api_key and pay_rotate_api_key return (the key, once).
CREATE TYPE payments.pay_api_key_secret AS (
	key_id bigint,
	merchant_id bigint,
	api_key text,
	scopes text[],
	expires_at timestamptz,
	previous_valid_until timestamptz
);
COMMENT ON TYPE payments.pay_api_key_secret IS
	'A new API key as pay_create_api_key and pay_rotate_api_key return it: the key (api_key) is shown this once.';

-- What pay_list_api_keys returns: no secret, no hash (created_by_key: see
-- h-list-key-creator).
CREATE TYPE payments.pay_api_key_info AS (
	key_id bigint,
	merchant_id bigint,
	name text,
	scopes text[],
	created_at timestamptz,
	created_by name,
	created_by_key bigint,
	expires_at timestamptz,
	revoked_at timestamptz,
	rotated_at timestamptz,
	previous_valid_until timestamptz,
	last_used_at timestamptz,
	rate_limit integer,
	burst integer
);
COMMENT ON TYPE payments.pay_api_key_info IS 'An API key as pay_list_api_keys shows it (no secret, no hash); created_by_key: the key it was made with (it is revoked with that key and expires no later), NULL when a role made it.';

CREATE FUNCTION payments._api_key_secret(key_id bigint, OUT api_key text, OUT secret_hash bytea)
	RETURNS record
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_api_key_secret';
COMMENT ON FUNCTION payments._api_key_secret(bigint) IS
	'Internal: a new key pk_<key_id>_<256 random bits, base64url> and its SHA-256.';

CREATE FUNCTION payments._api_key_id(api_key text) RETURNS bigint
	LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pay_api_key_id';
COMMENT ON FUNCTION payments._api_key_id(text) IS 'Internal: the key id a key names, or NULL when it is not a key.';

CREATE FUNCTION payments._api_key_accept(api_key text, k payments.api_keys, revoked_at timestamptz, via_postgrest boolean) RETURNS boolean
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_api_key_accept';
COMMENT ON FUNCTION payments._api_key_accept(text, payments.api_keys, timestamptz, boolean) IS
	'Internal: checks a key against its row and its revocation as it counts (hash in constant time, revocation, expiry, PostgREST role, rate limits: PT401, PT403, PT429) and lets it act for the transaction; true when its last use should be written now.';

CREATE FUNCTION payments._merchant_rate_limit() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_merchant_rate_limit';
COMMENT ON FUNCTION payments._merchant_rate_limit() IS
	'Internal: counts a PostgREST request without a key against its merchant''s limit (payments.merchant_rate_limit); PT429 beyond it.';

CREATE FUNCTION payments._api_key_admin(merchant_id bigint) RETURNS bigint
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_api_key_admin';
COMMENT ON FUNCTION payments._api_key_admin(bigint) IS
	'Internal: the merchant whose keys the caller may manage (NULL: every merchant, for the owner and roles acting for every merchant); PT403 unless the owner, such a role, or an admin key of that merchant.';

CREATE FUNCTION payments._api_key_last_used(key_id bigint) RETURNS timestamptz
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_api_key_last_used';
COMMENT ON FUNCTION payments._api_key_last_used(bigint) IS 'Internal: a key''s last use noted in shared memory since server start.';

-- A key's state as it counts: revoked when it or any key it was made with
-- (created_by_key, up the chain) has a revocation (api_key_revocations),
-- expiring with the first of them to expire; no row for a key that does
-- not exist.  Nothing is marked down the chain: a key whose creation
-- committed after its creator's revocation (pay_create_api_key does not
-- hold the revocation back: FOR KEY SHARE) is revoked all the same.
CREATE FUNCTION payments._api_key_state(merchant_id bigint, key_id bigint,
	OUT revoked_at timestamptz, OUT expires_at timestamptz)
	RETURNS SETOF record
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	WITH RECURSIVE up AS (
		SELECT a.key_id, a.created_by_key, a.expires_at FROM payments.api_keys a
		WHERE a.merchant_id = _api_key_state.merchant_id AND a.key_id = _api_key_state.key_id
		UNION
		SELECT a.key_id, a.created_by_key, a.expires_at FROM payments.api_keys a
		JOIN up ON a.key_id = up.created_by_key
		WHERE a.merchant_id = _api_key_state.merchant_id)
	SELECT min(r.revoked_at), min(up.expires_at) FROM up
	LEFT JOIN payments.api_key_revocations r
		ON r.merchant_id = _api_key_state.merchant_id AND r.key_id = up.key_id
	HAVING count(*) > 0
	$$;
COMMENT ON FUNCTION payments._api_key_state(bigint, bigint) IS
	'Internal: a key''s revocation (payments.api_key_revocations) and expiry as they count, the keys it was made with included (revoked when one of them is, expiring with the first); no row for an unknown key.';

-- Find the key's row (as the owner: callers are SECURITY DEFINER), check
-- it, and write its last use when _api_key_accept says so: at most once a
-- minute per key, skipping a row another request holds, so requests of one
-- key never wait for each other.
CREATE FUNCTION payments._api_key_verify(api_key text, via_postgrest boolean) RETURNS payments.api_keys
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	k payments.api_keys;
	revoked timestamptz;
BEGIN
	SELECT * INTO k FROM payments.api_keys a WHERE a.key_id = payments._api_key_id(api_key);
	-- revoked when it or a key up its created_by_key chain has a
	-- revocation, expiring with the first of them (_api_key_state)
	SELECT s.revoked_at, s.expires_at INTO revoked, k.expires_at
	FROM payments._api_key_state(k.merchant_id, k.key_id) s;
	IF payments._api_key_accept(api_key, k, revoked, via_postgrest) THEN
		-- its own row (api_key_uses), not the key's: this transaction holds
		-- it until it ends, and nothing that changes the key waits for it
		UPDATE payments.api_key_uses u SET last_used_at = clock_timestamp()
		WHERE (u.merchant_id, u.key_id) IN (SELECT l.merchant_id, l.key_id FROM payments.api_key_uses l
			WHERE l.merchant_id = k.merchant_id AND l.key_id = k.key_id FOR UPDATE SKIP LOCKED);
	END IF;
	RETURN k;
END
$$;
COMMENT ON FUNCTION payments._api_key_verify(text, boolean) IS
	'Internal: checks an API key and lets it act for the transaction; writes its last use at most once a minute.';

CREATE FUNCTION payments.pay_use_api_key(api_key text, OUT merchant_id bigint, OUT key_id bigint, OUT scopes text[])
	RETURNS record
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	k payments.api_keys := payments._api_key_verify(api_key, false);
BEGIN
	merchant_id := k.merchant_id;
	key_id := k.key_id;
	scopes := k.scopes;
END
$$;
COMMENT ON FUNCTION payments.pay_use_api_key(text) IS
	'Direct SQL clients: the rest of the current transaction acts with this merchant API key (its merchant and scopes; it counts as one request for the rate limits). Call it after BEGIN, in each transaction. Any role granted the API may call it: the key is the credential. PT401 for an invalid, revoked or expired key, PT429 beyond the rate limits. Returns the key''s merchant, id and scopes.';

-- PostgREST's db-pre-request: run before every request, in its transaction.
CREATE FUNCTION payments.pay_postgrest_pre_request() RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	api_key text := nullif(current_setting('request.headers', true), '')::json ->> 'x-api-key';
BEGIN
	IF api_key IS NULL OR api_key = '' THEN
		PERFORM payments._merchant_rate_limit();
	ELSE
		PERFORM payments._api_key_verify(api_key, true);
	END IF;
END
$$;
COMMENT ON FUNCTION payments.pay_postgrest_pre_request() IS
	'PostgREST''s db-pre-request function: an X-Api-Key header is checked and, for roles declared with pay_declare_postgrest_role, decides the merchant and scopes of the request (PT401 for a bad key, PT403 for another role); counts the request against the rate limits (PT429). Every role PostgREST switches to needs EXECUTE on it (pay_grant_api grants it; pg_monitor has it).';

-- A key the caller may manage, locked, or PT404 (another merchant's key is unknown too).
CREATE FUNCTION payments._lock_api_key(p_key_id bigint, for_change boolean) RETURNS payments.api_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments._api_key_admin(NULL);
	k payments.api_keys;
BEGIN
	-- a NULL id is a missing argument, not an unknown key ("API key
	-- <NULL> not found")
	IF p_key_id IS NULL THEN
		RAISE EXCEPTION 'key_id is required' USING ERRCODE = '22004';
	END IF;
	-- to change it (rotation): FOR NO KEY UPDATE (no key column changes),
	-- which a transaction that made keys with this one (FOR KEY SHARE) does
	-- not hold back.  To revoke it: FOR KEY SHARE, which waits for nothing
	-- a key's holder can do (a rotation of the key, open or PREPAREd, too)
	IF for_change THEN
		SELECT * INTO k FROM payments.api_keys a
		WHERE a.key_id = p_key_id AND (m IS NULL OR a.merchant_id = m)
		FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO k FROM payments.api_keys a
		WHERE a.key_id = p_key_id AND (m IS NULL OR a.merchant_id = m)
		FOR KEY SHARE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'API key % not found', p_key_id USING ERRCODE = 'PT404';
	END IF;
	RETURN k;
END
$$;
COMMENT ON FUNCTION payments._lock_api_key(bigint, boolean) IS 'Internal: locks an API key the caller may manage, or PT404: FOR NO KEY UPDATE to change it (for_change), else FOR KEY SHARE (to revoke it, waiting for no change of it).';

CREATE FUNCTION payments.pay_revoke_api_key(key_id bigint) RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	k payments.api_keys := payments._lock_api_key(pay_revoke_api_key.key_id, false);
BEGIN
	-- (revoked already: by itself, or with a key up its chain)
	IF (SELECT s.revoked_at FROM payments._api_key_state(k.merchant_id, k.key_id) s) IS NOT NULL THEN
		RETURN false;
	END IF;
	-- a row added, not the key's row changed: nothing waits for a
	-- transaction that changed the key (api_key_revocations)
	INSERT INTO payments.api_key_revocations (merchant_id, key_id) VALUES (k.merchant_id, k.key_id);
	RETURN true;
END
$$;

------------------------------------------------------------------------------
-- Scopes: the scope each API function needs, as its payments.api_scope
-- setting (ALTER FUNCTION ... SET: PostgreSQL applies it on entry to the
-- function, whatever the caller set).  pay_current_merchant(), which every
-- API function asks first, refuses a request acting with a key that lacks
-- it (PT403).  Applied by privileges.sql, after every function exists.
------------------------------------------------------------------------------

CREATE FUNCTION payments._apply_api_scopes() RETURNS SETOF regprocedure
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	f regprocedure;
	s text;
BEGIN
	FOR f, s IN
		SELECT p.oid::regprocedure, payments._api_function_scope(p.proname)
		FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace AND payments._api_function_scope(p.proname) IS NOT NULL
		ORDER BY p.oid
	LOOP
		EXECUTE format('ALTER FUNCTION %s SET payments.api_scope = %L', f, s);
		RETURN NEXT f;
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._apply_api_scopes() IS
	'Internal: sets payments.api_scope on every API function that needs a scope; run by the install and upgrade scripts.';

-- privileges.sql: PostgREST runs its pre-request function for the scraper's role too
GRANT EXECUTE ON FUNCTION payments.pay_postgrest_pre_request() TO pg_monitor;

-- audit.sql: audit rows name the API key (src/audit.c); the row hash covers
-- it only when there is one, so rows written before still verify
ALTER TABLE payments.audit_log ADD COLUMN key_id bigint;
COMMENT ON COLUMN payments.audit_log.key_id IS 'The merchant API key the change was made with (pay_use_api_key, or X-Api-Key through PostgREST), else NULL. In the row hash only when not NULL, so rows written before 0.2.0 verify as they did.';
DROP FUNCTION payments._audit_row_hash(bigint, bigint, text, text, text, jsonb, jsonb, text[], text, text, text, text, xid8, timestamptz);
CREATE FUNCTION payments._audit_row_hash(merchant_id bigint, audit_id bigint, table_schema text,
	table_name text, operation text, old_row jsonb, new_row jsonb, changed_columns text[],
	db_role text, session_role text, app_user text, correlation_id text, txid xid8,
	logged_at timestamptz, key_id bigint DEFAULT NULL)
	RETURNS bytea
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_audit_row_hash';
COMMENT ON FUNCTION payments._audit_row_hash(bigint, bigint, text, text, text, jsonb, jsonb, text[], text, text, text, text, xid8, timestamptz, bigint) IS
	'Internal: the SHA-256 row hash of an audit row, from its columns.';

DROP FUNCTION payments.pay_audit_verify(bigint);
-- A time as audit rows, events and the audit digest store it, in UTC
-- whatever the session's TimeZone (h-session-time; made here, before
-- pay_audit_digest, whose body uses it).
CREATE FUNCTION payments._json_time(t timestamptz) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_json_time';
REVOKE ALL ON FUNCTION payments._json_time(timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION payments._json_time(timestamptz) IS
	'Internal: a time as audit rows and events store it, ISO 8601 in UTC (2026-12-06T10:00:00+00:00) whatever the session''s TimeZone and DateStyle; for jsonb_build_object() in SQL that writes events, and the audit digest''s sealed_at.';

-- The owner can rewrite the whole log, recomputing every row hash and
-- seal: a chain checked only against itself then verifies.  A digest (the
-- latest seal of each merchant, pay_audit_digest) copied out of the
-- database closes that: a rewrite of anything at or below a digest's seal
-- changes that seal's batch hash, which verify compares with the copy.
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

------------------------------------------------------------------------------
-- h-cust: customers and stored payment methods (issue 11, first part;
-- sql/src/customers.sql, payment_methods.sql, customer_privacy.sql, and the
-- changed parts of status_machine.sql, worker_signals.sql, payment_api.sql,
-- worker.sql).  Before the h-tenancy block, whose privilege and row-security
-- steps cover these objects too (tenancy.sql's _api_function_names lists
-- the new API functions there).
-- Made once since: _status_guard in h-speed; _customer_not_found,
-- _payment_method_not_found, pay_wait_payment_method in h-null-arguments;
-- _check_customer_input in h-free-text; pay_update_customer in h-idem-replay;
-- pay_save_payment_method, pay_delete_customer in h-account-customers;
-- pay_set_default_payment_method in h-purchase-default;
-- pay_delete_payment_method, _record_method_result,
-- _stored_method_for_payment, _claim_operations in h-account-life;
-- pay_expiring_payment_methods, pay_run_expiry_notices in h-expiry-clock;
-- _create_payment in h-purchase-scope; _customer_events in
-- h-erasure-free-text; pay_export_customer in h-subs-api; pay_erase_customer
-- in h-customer-locks (their final form).
------------------------------------------------------------------------------

-- status machines of customers and payment methods (status_machine.sql)
-- customers and their stored payment methods (customers.sql, payment_methods.sql)
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('customer', 'active', 'deleted'),
	('payment_method', 'pending', 'active'),
	('payment_method', 'pending', 'failed'),
	('payment_method', 'active', 'deleting'),
	('payment_method', 'active', 'deleted'),
	('payment_method', 'failed', 'deleted'),
	('payment_method', 'deleting', 'deleted'),
	('payment_method', 'deleting', 'active');

-- waiting for a payment method (worker_signals.sql)
CREATE FUNCTION payments._wait_for_payment_method(merchant_id bigint, payment_method_id bigint, timeout_ms integer)
	RETURNS text
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_wait_for_payment_method';
REVOKE ALL ON FUNCTION payments._wait_for_payment_method(bigint, bigint, integer) FROM PUBLIC;
COMMENT ON FUNCTION payments._wait_for_payment_method(bigint, bigint, integer) IS
	'Internal: sleeps until the stored payment method''s gateway work (save or delete) is done or the timeout passes; returns its status.';

-- ==== customers.sql ====
-- Customers: per merchant, with their billing details; create, update, find, list, delete.

------------------------------------------------------------------------------
-- A customer is the merchant's record of a person or business that pays:
-- email, name, the merchant's own reference, billing details (the same
-- object pay_purchase takes as customer) and metadata.  Its stored payment
-- methods (payment_methods.sql) hang off one Authorize.Net customer
-- profile, made by the worker when the first method is saved
-- (merchantCustomerId = gateway_customer_ref).
------------------------------------------------------------------------------

CREATE TABLE payments.customers (
	merchant_id bigint NOT NULL REFERENCES payments.merchants,
	customer_id bigint GENERATED ALWAYS AS IDENTITY,
	status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
	email text CHECK (length(email) <= 255),
	name text CHECK (length(name) <= 255),
	external_ref text CHECK (length(external_ref) <= 255),
	-- billing details sent as billTo/customer (keys as pay_purchase's customer)
	billing jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(billing) = 'object'),
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	-- the gateway's customer profile (set by the worker)
	customer_profile_id text,
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	erased_at timestamptz,
	-- the server life's tag it was made under (_server_tag), in its
	-- profile's merchantCustomerId; NULL: the installation's
	gateway_tag text CHECK (gateway_tag ~ '^[0-9A-F]{6}$'),
	PRIMARY KEY (merchant_id, customer_id)
);
CREATE INDEX customers_created ON payments.customers (merchant_id, created_at, customer_id);
CREATE INDEX customers_email ON payments.customers (merchant_id, lower(email), created_at, customer_id)
	WHERE email IS NOT NULL;
CREATE INDEX customers_external_ref ON payments.customers (merchant_id, external_ref)
	WHERE external_ref IS NOT NULL;
COMMENT ON TABLE payments.customers IS
	'Customers of each merchant: email, name, external reference, billing details, metadata and the gateway customer profile that holds their stored payment methods. Deleted customers are kept (status deleted); erased ones keep no personal data.';
REVOKE ALL ON payments.customers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('payments.customers', '');
SELECT pg_catalog.pg_extension_config_dump('payments.customers_customer_id_seq', '');

-- The merchantCustomerId of a customer's gateway profile: unique per
-- installation (the invoice tag) and at most 20 characters.
CREATE FUNCTION payments._gateway_customer_ref(p_customer_id bigint, p_tag text DEFAULT NULL) RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT 'C' || left(coalesce(p_tag, payments._invoice_tag()), 19 - length(p_customer_id::text)) || p_customer_id
	$$;
COMMENT ON FUNCTION payments._gateway_customer_ref(bigint, text) IS
	'Internal: the merchantCustomerId of a customer''s gateway profile (C, p_tag: the tag of the server life it was made in, customers.gateway_tag, else the installation''s, then the customer id; at most 20 characters).';

-- A customer of the current merchant (locked when p_lock), or PT404;
-- deleted customers only when p_deleted_ok.
CREATE FUNCTION payments._find_customer(p_customer_id bigint, p_lock boolean DEFAULT false,
	p_deleted_ok boolean DEFAULT true)
	RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO c FROM payments.customers
		WHERE merchant_id = payments.pay_current_merchant() AND customer_id = p_customer_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO c FROM payments.customers
		WHERE merchant_id = payments.pay_current_merchant() AND customer_id = p_customer_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._customer_not_found(p_customer_id);
	END IF;
	IF NOT p_deleted_ok AND c.status = 'deleted' THEN
		RAISE EXCEPTION 'customer % is deleted', p_customer_id
			USING ERRCODE = '22Y20', HINT = 'A deleted customer can be read and exported, not changed or charged.';
	END IF;
	RETURN c;
END
$$;
COMMENT ON FUNCTION payments._find_customer(bigint, boolean, boolean) IS
	'Internal: a customer of the current merchant (optionally locked), or PT404; 22Y20 for a deleted one unless allowed.';

-- A customer's email and name, against the customer profile fields they
-- fill (src/anet/anet_fields.c): 22Y24 for a character the gateway cannot
-- carry, 22001 for a text too long.
CREATE FUNCTION payments._check_customer_profile_input(email text, name text)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_check_customer_input';
COMMENT ON FUNCTION payments._check_customer_profile_input(text, text) IS
	'Internal: raises 22Y24 (character the gateway cannot carry) or 22001 (longer than profile.email or profile.description, 255) for a customer''s email or name.';

CREATE FUNCTION payments.pay_create_customer(
	email text DEFAULT NULL,
	name text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	billing jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_customer.correlation_id);
	idem payments.idempotency_keys;
	result payments.customers;
BEGIN
	PERFORM payments._check_customer_input(pay_create_customer.email, pay_create_customer.name,
		pay_create_customer.external_ref, pay_create_customer.billing, pay_create_customer.metadata, corr);
	idem := payments._idempotency_claim(m, pay_create_customer.idempotency_key, 'create_customer',
		-- billing and metadata {} are what leaving them out makes
		md5(jsonb_build_array(pay_create_customer.email, pay_create_customer.name,
			pay_create_customer.external_ref, nullif(pay_create_customer.billing, '{}'),
			nullif(pay_create_customer.metadata, '{}'))::text));
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO result FROM payments.customers c
		WHERE c.merchant_id = m AND c.idempotency_key = idem.idempotency_key	-- as kept (erased: a digest)
		ORDER BY c.customer_id DESC LIMIT 1;	-- the newest: the one the live key made (an older one may hold the key from before its retention)
		RETURN result;
	END IF;
	-- made after the database changed server: the customer id may be one
	-- the server before gave its own customer after the copy, whose
	-- profile's merchantCustomerId C<tag><customer_id> the gateway holds
	-- (a save would have been answered E00039 naming that profile, and
	-- adopted it: the card of another person); the server life's tag
	INSERT INTO payments.customers AS c (merchant_id, email, name, external_ref, billing, metadata,
		idempotency_key, correlation_id, gateway_tag)
	VALUES (m, pay_create_customer.email, pay_create_customer.name, pay_create_customer.external_ref,
		coalesce(pay_create_customer.billing, '{}'), coalesce(pay_create_customer.metadata, '{}'),
		pay_create_customer.idempotency_key, corr, payments._server_tag())
	RETURNING * INTO result;
	IF pay_create_customer.idempotency_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys k SET customer_id = result.customer_id
		WHERE k.merchant_id = m AND k.idempotency_key = pay_create_customer.idempotency_key;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_create_customer(text, text, text, jsonb, jsonb, text, text) IS
	'Creates a customer of the current merchant: email, name, external_ref (the merchant''s own id), billing (pay_purchase''s customer object: first_name, last_name, company, address, city, state, zip, country), metadata. Writes a customer.created event. Returns the customer row.';

CREATE FUNCTION payments.pay_get_customer(customer_id bigint) RETURNS payments.customers
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_customer(pay_get_customer.customer_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_customer(bigint) IS
	'A customer of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_find_customers(
	email text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	include_deleted boolean DEFAULT false,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.customers
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last customer_id of this one.';
	END IF;
	IF after IS NOT NULL THEN
		SELECT c.created_at INTO cursor_at FROM payments.customers c
		WHERE c.merchant_id = m AND c.customer_id = pay_find_customers.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor customer % is not a customer of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last customer_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT c.* FROM payments.customers c
	WHERE c.merchant_id = m
		AND (after IS NULL OR (c.created_at, c.customer_id) < (cursor_at, after))
		AND (pay_find_customers.email IS NULL OR (c.email IS NOT NULL AND lower(c.email) = lower(pay_find_customers.email)))
		AND (pay_find_customers.external_ref IS NULL OR c.external_ref = pay_find_customers.external_ref)
		AND (include_deleted OR c.status <> 'deleted')
	ORDER BY c.created_at DESC, c.customer_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_find_customers(text, text, boolean, bigint, integer) IS
	'The current merchant''s customers, newest first (created_at, then customer_id), at most page_size (1-500, default 50) per call; filters email (any case) and external_ref; deleted ones only with include_deleted. Keyset pagination: pass as after the last customer_id of the previous page.';

-- ==== payment_methods.sql ====
-- Stored payment methods: Authorize.Net customer and payment profiles, saved, listed, made default and deleted through the worker.

------------------------------------------------------------------------------
-- A payment method is a card kept at the gateway (a payment profile under
-- the customer's profile).  What is kept here: brand, last four, expiry,
-- fingerprint, the gateway's ids and the network transaction id of the
-- first customer-initiated transaction (for the card-on-file fields of
-- merchant-initiated charges).  The card itself waits sealed in the vault,
-- like a purchase's, until the worker has sent it.
--
-- Every gateway call is an operation (outbox row) the worker sends after
-- COMMIT: save_method (createCustomerProfile, or createCustomerPaymentProfile
-- when the customer has a profile, or createCustomerProfileFromTransaction),
-- delete_method (deleteCustomerPaymentProfile), delete_customer
-- (deleteCustomerProfile, which deletes its payment profiles too).
------------------------------------------------------------------------------

ALTER TABLE payments.operations ALTER COLUMN payment_id DROP NOT NULL;
ALTER TABLE payments.operations ADD COLUMN payment_method_id bigint;
ALTER TABLE payments.operations ADD COLUMN customer_id bigint;
ALTER TABLE payments.operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE payments.operations ADD CONSTRAINT operations_kind_check CHECK (kind IN ('purchase',
	'authorize', 'capture', 'void', 'refund', 'save_method', 'delete_method', 'delete_customer'));
ALTER TABLE payments.operations ADD CONSTRAINT operations_subject_check
	CHECK (payment_id IS NOT NULL OR payment_method_id IS NOT NULL OR customer_id IS NOT NULL);
CREATE INDEX operations_payment_method ON payments.operations (merchant_id, payment_method_id)
	WHERE payment_method_id IS NOT NULL;
CREATE INDEX operations_customer ON payments.operations (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON COLUMN payments.operations.payment_method_id IS
	'The stored payment method a save_method or delete_method operation is for.';
COMMENT ON COLUMN payments.operations.customer_id IS
	'The customer whose gateway profile a payment method operation or delete_customer acts on.';

-- payments charged through a stored method, or for a customer
ALTER TABLE payments.payments ADD COLUMN customer_id bigint;
ALTER TABLE payments.payments ADD COLUMN payment_method_id bigint;
CREATE INDEX payments_customer ON payments.payments (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON COLUMN payments.payments.customer_id IS 'The customer the payment is for (pay_purchase customer_id, or the stored method''s).';
COMMENT ON COLUMN payments.payments.payment_method_id IS 'The stored payment method charged, if any.';

CREATE TABLE payments.payment_methods (
	merchant_id bigint NOT NULL,
	payment_method_id bigint GENERATED ALWAYS AS IDENTITY,
	customer_id bigint NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'active', 'failed', 'deleting', 'deleted')),
	source text NOT NULL CHECK (source IN ('card', 'opaque_data', 'payment')),
	validation_mode text NOT NULL CHECK (validation_mode IN ('none', 'testMode', 'liveMode')),
	is_default boolean NOT NULL DEFAULT false,
	card_brand text,
	card_last4 text,
	card_exp_month smallint,
	card_exp_year smallint,
	card_fingerprint text,
	customer_profile_id text,
	payment_profile_id text,
	-- of the first customer-initiated transaction (validation or charge)
	network_trans_id text,
	source_payment_id bigint,
	failure_code text,
	failure_reason text,
	idempotency_key text,
	correlation_id text NOT NULL,
	expiring_notified_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, payment_method_id),
	FOREIGN KEY (merchant_id, customer_id) REFERENCES payments.customers
);
CREATE INDEX payment_methods_customer ON payments.payment_methods (merchant_id, customer_id, payment_method_id);
-- one default per customer among its usable methods
CREATE UNIQUE INDEX payment_methods_one_default ON payments.payment_methods (merchant_id, customer_id)
	WHERE is_default AND status IN ('pending', 'active');
CREATE INDEX payment_methods_expiry ON payments.payment_methods (card_exp_year, card_exp_month)
	WHERE status = 'active';
COMMENT ON TABLE payments.payment_methods IS
	'Stored payment methods (Authorize.Net payment profiles under the customer''s profile): brand, last four, expiry, fingerprint, gateway ids and the original network transaction id. Card numbers are never stored.';
REVOKE ALL ON payments.payment_methods FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('payments.payment_methods', '');
SELECT pg_catalog.pg_extension_config_dump('payments.payment_methods_payment_method_id_seq', '');

CREATE TRIGGER payment_methods_status BEFORE INSERT OR UPDATE ON payments.payment_methods
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('payment_method');
CREATE TRIGGER customers_status BEFORE INSERT OR UPDATE ON payments.customers
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('customer');

CREATE FUNCTION payments._find_payment_method(p_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO pm FROM payments.payment_methods
		WHERE merchant_id = payments.pay_current_merchant() AND payment_method_id = p_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO pm FROM payments.payment_methods
		WHERE merchant_id = payments.pay_current_merchant() AND payment_method_id = p_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._payment_method_not_found(p_id);
	END IF;
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._find_payment_method(bigint, boolean) IS
	'Internal: a payment method of the current merchant (optionally locked), or PT404.';

-- An operation on a stored method or a customer's profile, queued for the
-- worker (woken at COMMIT), with the idempotency key pointing at it.
CREATE FUNCTION payments._new_method_operation(p_merchant bigint, p_kind text, p_method bigint,
	p_customer bigint, p_payment bigint, p_key text, p_correlation_id text)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
BEGIN
	INSERT INTO payments.operations (merchant_id, payment_id, payment_method_id, customer_id, kind,
		idempotency_key, correlation_id)
	VALUES (p_merchant, p_payment, p_method, p_customer, p_kind, p_key, p_correlation_id)
	RETURNING * INTO o;
	IF p_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET operation_id = o.operation_id
		WHERE merchant_id = p_merchant AND idempotency_key = p_key;
	END IF;
	PERFORM payments._wake_at_commit();
	RETURN o;
END
$$;
COMMENT ON FUNCTION payments._new_method_operation(bigint, text, bigint, bigint, bigint, text, text) IS
	'Internal: queues a save_method, delete_method or delete_customer operation for the worker.';

CREATE FUNCTION payments.pay_get_payment_method(payment_method_id bigint) RETURNS payments.payment_methods
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_payment_method(pay_get_payment_method.payment_method_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_payment_method(bigint) IS
	'A payment method of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_payment_methods(customer_id bigint, include_deleted boolean DEFAULT false)
	RETURNS SETOF payments.payment_methods
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_list_payment_methods.customer_id);
BEGIN
	RETURN QUERY SELECT x.* FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
		AND (include_deleted OR x.status NOT IN ('deleted', 'failed'))
	ORDER BY x.is_default DESC, x.payment_method_id DESC;
END
$$;
COMMENT ON FUNCTION payments.pay_list_payment_methods(bigint, boolean) IS
	'The payment methods of a customer of the current merchant, the default first, then newest first; failed and deleted ones only with include_deleted. PT404 for an unknown or foreign customer.';

-- The customer's gateway profile and its methods go: usable methods to
-- deleting (deleted once the worker has deleted the profile), or to
-- deleted at once when there is no profile at the gateway.
CREATE FUNCTION payments._delete_customer_profile(c payments.customers, p_key text, p_corr text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.payment_methods x WHERE x.merchant_id = c.merchant_id
			AND x.customer_id = c.customer_id AND x.status = 'pending') THEN
		RAISE EXCEPTION 'customer % has a payment method still being saved', c.customer_id
			USING ERRCODE = '22Y20', HINT = 'Wait for it (pay_wait_payment_method), then try again.';
	END IF;
	IF c.customer_profile_id IS NOT NULL THEN
		UPDATE payments.payment_methods x SET status = 'deleting', is_default = false
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status = 'active';
		PERFORM payments._new_method_operation(c.merchant_id, 'delete_customer', NULL, c.customer_id,
			NULL, p_key, p_corr);
	ELSE
		UPDATE payments.payment_methods x SET status = 'deleted', is_default = false
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status IN ('active', 'failed');
	END IF;
END
$$;
COMMENT ON FUNCTION payments._delete_customer_profile(payments.customers, text, text) IS
	'Internal: deletes a customer''s gateway profile (queued for the worker) and its payment methods.';

------------------------------------------------------------------------------
-- The worker's side (step 3 of an attempt for the operations above).
------------------------------------------------------------------------------

INSERT INTO payments.operation_outcomes
	(operation_kind, outcome, operation_status, payment_status, payment_status_from) VALUES
	('save_method', 'approved', 'succeeded', NULL, NULL),
	('save_method', 'declined', 'failed', NULL, NULL),
	('save_method', 'error', 'failed', NULL, NULL),
	('save_method', 'rejected', 'failed', NULL, NULL),
	('save_method', 'retry', 'queued', NULL, NULL),
	('save_method', 'unknown', 'unknown', NULL, NULL),
	('delete_method', 'approved', 'succeeded', NULL, NULL),
	('delete_method', 'declined', 'failed', NULL, NULL),
	('delete_method', 'error', 'failed', NULL, NULL),
	('delete_method', 'rejected', 'failed', NULL, NULL),
	('delete_method', 'retry', 'queued', NULL, NULL),
	('delete_method', 'unknown', 'unknown', NULL, NULL),
	('delete_customer', 'approved', 'succeeded', NULL, NULL),
	('delete_customer', 'declined', 'failed', NULL, NULL),
	('delete_customer', 'error', 'failed', NULL, NULL),
	('delete_customer', 'rejected', 'failed', NULL, NULL),
	('delete_customer', 'retry', 'queued', NULL, NULL),
	('delete_customer', 'unknown', 'unknown', NULL, NULL);

-- The network transaction id of an approved charge of a stored method
-- that had none yet: the original id the method's merchant-initiated
-- charges send (subsequentAuthInformation.originalNetworkTransId).
CREATE FUNCTION payments._note_network_trans_ids(p_merchant_id bigint[], p_operation_id bigint[],
	p_network_trans_id text[])
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods pm SET network_trans_id = x.ntid, updated_at = clock_timestamp()
	FROM unnest(p_merchant_id, p_operation_id, p_network_trans_id) AS x(merchant_id, operation_id, ntid),
		payments.operations o, payments.payments p
	WHERE o.merchant_id = x.merchant_id AND o.operation_id = x.operation_id
		AND p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
		AND pm.merchant_id = p.merchant_id AND pm.payment_method_id = p.payment_method_id
		AND pm.network_trans_id IS NULL AND x.ntid <> ''
	$$;
COMMENT ON FUNCTION payments._note_network_trans_ids(bigint[], bigint[], text[]) IS
	'Worker: keeps the network transaction id of approved charges on the stored methods they charged, where none was known.';

------------------------------------------------------------------------------
-- pay_purchase / pay_authorize with a customer or a stored method.
------------------------------------------------------------------------------

-- What a customer's payment sends as customer (billTo and customer.email)
-- when the caller passes no customer object: its billing details and email.
CREATE FUNCTION payments._customer_billing(p_customer_id bigint) RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT c.billing || jsonb_strip_nulls(jsonb_build_object('email', c.email))
	FROM payments._find_customer(p_customer_id, false, false) c
	$$;
COMMENT ON FUNCTION payments._customer_billing(bigint) IS
	'Internal: a customer''s billing details and email, as the customer object of a payment.';

------------------------------------------------------------------------------
-- Cards that expire soon.
------------------------------------------------------------------------------

-- The last day a stored card works: the last day of its expiry month.
CREATE FUNCTION payments._card_expires_at(exp_year smallint, exp_month smallint) RETURNS date
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT (make_date(exp_year, exp_month, 1) + interval '1 month' - interval '1 day')::date $$;
COMMENT ON FUNCTION payments._card_expires_at(smallint, smallint) IS
	'Internal: the last day a card with this expiry month works (the last day of the month).';

-- pay_purchase and pay_authorize take customer_id and payment_method_id
-- (payment_api.sql); roles granted the old ones keep EXECUTE on the new.
SELECT pg_catalog.set_config('h_cust.api_grantees', coalesce(array_agg(DISTINCT a.grantee::regrole::text)::text, '{}'), true)
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.pronamespace = 'payments'::regnamespace AND p.proname IN ('pay_purchase', 'pay_authorize')
	AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner;
DROP FUNCTION payments.pay_purchase(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text);
DROP FUNCTION payments.pay_authorize(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text);
DROP FUNCTION payments._create_payment(text, payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text);

-- pay_purchase in its final form (from h-cpu) here: the grant to the old
-- function's grantees below needs it.
CREATE OR REPLACE FUNCTION payments.pay_purchase(
	amount payments.pay_amount,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL,
	description text DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL,
	customer_id bigint DEFAULT NULL,
	payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	RETURN payments._create_payment('purchase', amount, card, opaque_data, customer_profile_id,
		payment_profile_id, description, order_ref, customer, metadata, idempotency_key, correlation_id,
		customer_id, payment_method_id);
END
$$;
COMMENT ON FUNCTION payments.pay_purchase(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Authorize and capture a payment. Records the payment (status pending) and wakes the worker at COMMIT; the gateway''s answer arrives asynchronously (pay_wait). customer_id records the customer (its billing details and email are sent when customer is not given); payment_method_id charges a stored method (merchant-initiated, with the card-on-file fields); a customer_id alone charges its default method. Returns the payment row.';

-- pay_authorize in its final form (from h-cpu) here: the grant to the old
-- function's grantees below needs it.
CREATE OR REPLACE FUNCTION payments.pay_authorize(
	amount payments.pay_amount,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL,
	description text DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL,
	customer_id bigint DEFAULT NULL,
	payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	RETURN payments._create_payment('authorize', amount, card, opaque_data, customer_profile_id,
		payment_profile_id, description, order_ref, customer, metadata, idempotency_key, correlation_id,
		customer_id, payment_method_id);
END
$$;
COMMENT ON FUNCTION payments.pay_authorize(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Authorize a payment without capturing it (status requires_capture once approved); capture later with pay_capture or release with pay_void. customer_id and payment_method_id as for pay_purchase. Returns the payment row.';

DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY current_setting('h_cust.api_grantees')::text[] LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION payments.pay_purchase(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint), payments.pay_authorize(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) TO %s', r);
	END LOOP;
END
$$;

-- the claim returns what stored methods and profile operations need (worker.sql)
DROP FUNCTION payments._claim_operations(integer);

-- ==== customer_privacy.sql ====
-- Personal data of customers: audited without it, exported, erased.

------------------------------------------------------------------------------
-- Customers and payment methods are audited (audit.sql) like the other
-- tenant tables, but their personal fields never reach the audit log: the
-- trigger leaves out the columns named here, so an erasure leaves nothing
-- of the person behind in the append-only log.
------------------------------------------------------------------------------

CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.customers
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('email', 'name', 'external_ref', 'billing', 'metadata');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.customers
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.payment_methods
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('card_fingerprint');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.payment_methods
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.customers IS 'Audit: payments.audit_log; email, name, external_ref, billing and metadata are never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.customers IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.payment_methods IS 'Audit: payments.audit_log; the card fingerprint is never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.payment_methods IS 'Audit: payments.audit_log.';

------------------------------------------------------------------------------
-- h-audit: the audit trigger writes audit_log with the table and index APIs
-- (src/audit.c); fewer indexes to maintain per audited change
-- (sql/src/audit.sql).  The trigger function, its kind and its arguments
-- are unchanged: tables attached under 0.1.0 stay attached as they are.
------------------------------------------------------------------------------

DROP INDEX payments.audit_log_table_time;
DROP INDEX payments.audit_log_merchant_time;
-- the btree on txid becomes part of one BRIN index with logged_at
DROP INDEX payments.audit_log_txid;
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
CREATE INDEX audit_log_logged_at_txid ON payments.audit_log
	USING brin (logged_at, txid payments.xid8_minmax_ops) WITH (autosummarize = on);
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
-- a partitioned table's partitions and an inheritance parent's children get
-- audit triggers of their own (src/audit.c): attach such a table again
COMMENT ON FUNCTION payments.pay_audit_attach(regclass, text[]) IS
	'Audits a table: every INSERT, UPDATE, DELETE and TRUNCATE writes payments.audit_log (triggers payments_audit and payments_audit_truncate). masked_columns: extra columns to leave out, besides pay_card columns and names like card_number, pan, cvv, cvc, card_code, security_code, transaction_key, signature_key, secret, password, api_key, access_token; bytea values are written as {"bytes": N}. A partitioned table''s partitions and an inheritance parent''s children get triggers of their own (a TRUNCATE of a partition by name, a child''s rows changed through its parent); one made later, after attaching again. Idempotent: returns false when already attached with the same masked columns. For the table''s owner or the extension owner; refuses payments.card_vault, installation_secrets and the audit tables.';
COMMENT ON FUNCTION payments.pay_audit_detach(regclass) IS
	'Stops auditing a table (drops its audit triggers, and its partitions'' and inheritance children''s); returns false when it was not audited. For the table''s owner or the extension owner. Existing audit rows stay.';

------------------------------------------------------------------------------
-- Audit of personal data and of API keys (audit.sql): payments.customer
-- (billing details) and card_fingerprint, which pay_erase_customer must be
-- able to erase, are left out of the payments table's audit rows (rows
-- written before the update keep the fingerprint: the log is append-only);
-- API keys are audited without the hashes of their secrets.  The payments
-- table's trigger is made once since, in its final form in
-- h-erasure-free-text (which leaves out more).
------------------------------------------------------------------------------

CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.api_keys
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('secret_hash', 'previous_hash');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
-- and who revoked which key (a row added, api_key_revocations)
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.api_key_revocations
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.api_key_revocations
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.api_keys IS 'Audit: payments.audit_log (without secret_hash and previous_hash).';
COMMENT ON TRIGGER payments_audit_truncate ON payments.api_keys IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.api_key_revocations IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.api_key_revocations IS 'Audit: payments.audit_log.';

------------------------------------------------------------------------------
-- h-subs: plans, subscriptions, invoices, dunning policies, test clocks
-- (issue 11; sql/src/subscription_tables.sql, status_machine.sql; billing.sql and the status
-- trigger for the new entities come in the h-billing and h-speed blocks below).
------------------------------------------------------------------------------

COMMENT ON TABLE payments.status_transitions IS
	'Every allowed status transition of payments, operations, customers, payment methods, subscriptions and invoices; the status triggers refuse any other.';

-- ==== subscription_tables.sql ====

-- Plans, subscriptions, invoices, pending invoice items, dunning policies and
-- test clocks: the tables of recurring billing, their status machines, the
-- billing clock, calendar periods and the charge of an invoice.

------------------------------------------------------------------------------
-- Plans: what a subscription costs per period.  The amount and the interval
-- of a plan never change once made (subscriptions copy them); a plan that is
-- no longer sold is made inactive.
------------------------------------------------------------------------------

CREATE TABLE payments.plans (
	merchant_id bigint NOT NULL REFERENCES payments.merchants,
	plan_id bigint GENERATED ALWAYS AS IDENTITY,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
	amount payments.pay_amount NOT NULL CHECK (pay_minor_units(amount) > 0),
	interval_unit text NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
	interval_count integer NOT NULL DEFAULT 1 CHECK (interval_count BETWEEN 1 AND 366),
	trial_days integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
	active boolean NOT NULL DEFAULT true,
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, plan_id)
);
CREATE INDEX plans_created ON payments.plans (merchant_id, created_at, plan_id);
COMMENT ON TABLE payments.plans IS
	'Plans of each merchant: amount and currency per period, interval (day, week, month, year, times interval_count) and trial length. Amount and interval never change; inactive plans take no new subscriptions.';

------------------------------------------------------------------------------
-- Subscriptions.  Periods are counted from billing_anchor, a wall-clock time
-- in the subscription's time zone: period n starts at anchor + n intervals
-- (payments._period_start), so an anchor on the 31st bills on the last day
-- of shorter months and returns to the 31st, and a 09:00 anchor stays 09:00
-- local across daylight-saving changes.
------------------------------------------------------------------------------

CREATE TABLE payments.subscriptions (
	merchant_id bigint NOT NULL,
	subscription_id bigint GENERATED ALWAYS AS IDENTITY,
	customer_id bigint NOT NULL,
	-- NULL: an explicit price, not a plan's
	plan_id bigint,
	status text NOT NULL CHECK (status IN ('trialing', 'incomplete', 'incomplete_expired', 'active',
		'past_due', 'paused', 'canceled', 'unpaid')),
	-- price per unit and period (the plan's amount, or the explicit price)
	unit_amount payments.pay_amount NOT NULL CHECK (pay_minor_units(unit_amount) > 0),
	quantity integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 100000),
	interval_unit text NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
	interval_count integer NOT NULL CHECK (interval_count BETWEEN 1 AND 366),
	-- NULL: the customer's default method at each charge
	payment_method_id bigint,
	time_zone text NOT NULL DEFAULT 'UTC',
	billing_anchor timestamp NOT NULL,
	-- the current period: number current_period_index counted from the
	-- anchor, [current_period_start, current_period_end)
	current_period_index integer NOT NULL DEFAULT 0,
	current_period_start timestamptz NOT NULL,
	current_period_end timestamptz NOT NULL,
	trial_end timestamptz,
	cancel_at_period_end boolean NOT NULL DEFAULT false,
	canceled_at timestamptz,
	ended_at timestamptz,
	paused_at timestamptz,
	-- when the billing run next has work for this subscription (the end of
	-- the trial or of the period); NULL: none (paused, ended)
	next_renewal_at timestamptz,
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- the server life's tag it was made under (_server_tag), in its
	-- periods' invoice numbers (_invoice_charge_number); NULL: the
	-- installation's.  Set once: a period's number never changes
	gateway_tag text CHECK (gateway_tag ~ '^[0-9A-F]{6}$'),
	PRIMARY KEY (merchant_id, subscription_id),
	FOREIGN KEY (merchant_id, customer_id) REFERENCES payments.customers,
	FOREIGN KEY (merchant_id, plan_id) REFERENCES payments.plans,
	FOREIGN KEY (merchant_id, payment_method_id) REFERENCES payments.payment_methods,
	CHECK (current_period_end > current_period_start),
	CHECK (pay_currency(unit_amount) IS NOT NULL)
);
CREATE INDEX subscriptions_customer ON payments.subscriptions (merchant_id, customer_id, subscription_id);
CREATE INDEX subscriptions_status ON payments.subscriptions (merchant_id, status, created_at, subscription_id);
-- the billing run's queue
CREATE INDEX subscriptions_renewal_due ON payments.subscriptions (next_renewal_at)
	WHERE next_renewal_at IS NOT NULL;
COMMENT ON TABLE payments.subscriptions IS
	'Subscriptions: customer, plan or explicit price, quantity, payment method (NULL: the customer''s default), billing anchor and time zone, current period and status (payments.status_transitions, entity subscription).';

------------------------------------------------------------------------------
-- Invoices: one per subscription and period (first and renewal invoices;
-- the unique index is what makes a double billing run harmless), plus
-- proration invoices charged at once.  Each charge attempt is a payment
-- (payments.payments.invoice_id) sent by the worker like any other.
------------------------------------------------------------------------------

CREATE TABLE payments.invoices (
	merchant_id bigint NOT NULL,
	invoice_id bigint GENERATED ALWAYS AS IDENTITY,
	subscription_id bigint NOT NULL,
	customer_id bigint NOT NULL,
	kind text NOT NULL CHECK (kind IN ('first', 'renewal', 'proration')),
	status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'uncollectible', 'void')),
	period_index integer NOT NULL,
	period_start timestamptz NOT NULL,
	period_end timestamptz NOT NULL,
	-- what is due: the sum of the lines (never below zero)
	amount payments.pay_amount NOT NULL CHECK (pay_minor_units(amount) >= 0),
	-- [{"kind": "subscription" | "proration" | "credit", "description": text,
	--   "amount": "12.34 USD", "quantity": n}, ...]
	lines jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(lines) = 'array'),
	-- charge attempts made, the latest payment, and the next retry (dunning)
	attempt_count integer NOT NULL DEFAULT 0,
	payment_id bigint,
	next_attempt_at timestamptz,
	-- the first failure (the dunning schedule counts from it) and the last one
	first_failed_at timestamptz,
	last_failure_code text,
	last_failure_reason text,
	paid_at timestamptz,
	closed_at timestamptz,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, invoice_id),
	FOREIGN KEY (merchant_id, subscription_id) REFERENCES payments.subscriptions,
	CHECK (period_end > period_start)
);
-- one invoice per subscription and period
CREATE UNIQUE INDEX invoices_one_per_period ON payments.invoices (merchant_id, subscription_id, period_index)
	WHERE kind IN ('first', 'renewal');
CREATE INDEX invoices_subscription ON payments.invoices (merchant_id, subscription_id, invoice_id);
-- the dunning run's queue
CREATE INDEX invoices_retry_due ON payments.invoices (next_attempt_at)
	WHERE status = 'open' AND next_attempt_at IS NOT NULL;
COMMENT ON TABLE payments.invoices IS
	'Invoices of subscriptions: one per subscription and period (kind first or renewal, unique), or a proration charged at once; amount, lines, status (payments.status_transitions, entity invoice), charge attempts (payments.payments.invoice_id) and the next dunning retry.';

ALTER TABLE payments.payments ADD COLUMN invoice_id bigint;
CREATE INDEX payments_invoice ON payments.payments (merchant_id, invoice_id) WHERE invoice_id IS NOT NULL;
COMMENT ON COLUMN payments.payments.invoice_id IS 'The invoice this payment is a charge attempt of (subscriptions), if any.';

-- Prorations and credits waiting for the subscription's next invoice.
CREATE TABLE payments.invoice_items (
	merchant_id bigint NOT NULL,
	item_id bigint GENERATED ALWAYS AS IDENTITY,
	subscription_id bigint NOT NULL,
	kind text NOT NULL CHECK (kind IN ('proration', 'credit')),
	-- negative: a credit
	amount payments.pay_amount NOT NULL,
	description text NOT NULL CHECK (length(description) BETWEEN 1 AND 255),
	-- NULL: pending, for the next invoice
	invoice_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, item_id),
	FOREIGN KEY (merchant_id, subscription_id) REFERENCES payments.subscriptions
);
CREATE INDEX invoice_items_pending ON payments.invoice_items (merchant_id, subscription_id)
	WHERE invoice_id IS NULL;
COMMENT ON TABLE payments.invoice_items IS
	'Prorations and credits of subscriptions waiting for the next invoice (invoice_id NULL), or the invoice that took them.';

------------------------------------------------------------------------------
-- Dunning: when a failed charge is tried again, and what happens after the
-- last failure.  A merchant without a row gets the defaults.
------------------------------------------------------------------------------

CREATE TABLE payments.dunning_policies (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	-- days after the first failure at which the charge is tried again
	retry_days integer[] NOT NULL DEFAULT '{1,3,5,7}'
		CHECK (cardinality(retry_days) <= 10 AND array_position(retry_days, NULL) IS NULL
			AND 0 < ALL (retry_days) AND 366 >= ALL (retry_days)),
	final_action text NOT NULL DEFAULT 'canceled' CHECK (final_action IN ('canceled', 'unpaid')),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments.dunning_policies IS
	'Per merchant: the days after a renewal''s first failure at which it is retried (default 1, 3, 5, 7) and the subscription''s status after the last failure (canceled or unpaid). Merchants without a row get the defaults.';

------------------------------------------------------------------------------
-- Test clocks: "now" for billing, per merchant, frozen where the test or
-- demonstration put it.  Only while the server setting payments.test_clocks
-- is on (postgresql.conf; off by default): production billing always runs
-- on the real clock.
------------------------------------------------------------------------------

CREATE TABLE payments.billing_clocks (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	frozen_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments.billing_clocks IS
	'Test clocks: the frozen "now" of billing per merchant (pay_set_test_clock, pay_advance_test_clock); honoured only while the server setting payments.test_clocks is on.';

REVOKE ALL ON payments.plans, payments.subscriptions, payments.invoices, payments.invoice_items,
	payments.dunning_policies, payments.billing_clocks FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('payments.plans', '');
SELECT pg_catalog.pg_extension_config_dump('payments.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoices', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoice_items', '');
SELECT pg_catalog.pg_extension_config_dump('payments.dunning_policies', '');
SELECT pg_catalog.pg_extension_config_dump('payments.billing_clocks', '');
SELECT pg_catalog.pg_extension_config_dump('payments.plans_plan_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.subscriptions_subscription_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoices_invoice_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoice_items_item_id_seq', '');

------------------------------------------------------------------------------
-- Status machines of subscriptions and invoices (the one place they are
-- stated; the status triggers enforce them and write the events).
------------------------------------------------------------------------------

INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('subscription', 'trialing', 'active'),
	-- the charge at the end of the trial failed
	('subscription', 'trialing', 'past_due'),
	('subscription', 'trialing', 'canceled'),
	('subscription', 'incomplete', 'active'),
	('subscription', 'incomplete', 'incomplete_expired'),
	('subscription', 'active', 'past_due'),
	('subscription', 'active', 'paused'),
	('subscription', 'active', 'canceled'),
	-- a retry succeeded
	('subscription', 'past_due', 'active'),
	('subscription', 'past_due', 'canceled'),
	-- retries exhausted, final action unpaid
	('subscription', 'past_due', 'unpaid'),
	('subscription', 'paused', 'active'),
	('subscription', 'paused', 'canceled'),
	-- an unpaid subscription's invoice paid at last (new card)
	('subscription', 'unpaid', 'active'),
	('subscription', 'unpaid', 'canceled'),
	('invoice', 'open', 'paid'),
	('invoice', 'open', 'uncollectible'),
	('invoice', 'open', 'void'),
	('invoice', 'uncollectible', 'paid'),
	('invoice', 'uncollectible', 'void');

CREATE TRIGGER subscriptions_status BEFORE INSERT OR UPDATE ON payments.subscriptions
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('subscription');
CREATE TRIGGER invoices_status BEFORE INSERT OR UPDATE ON payments.invoices
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('invoice');

-- Audited like the other tenant tables (audit.sql); metadata is the
-- merchant's and may name the person, so it stays out of the append-only log.
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.plans
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.plans
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.subscriptions
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('metadata');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.subscriptions
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.invoices
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.invoices
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.invoice_items
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.invoice_items
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.dunning_policies
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.dunning_policies
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.billing_clocks
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.billing_clocks
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.plans IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.plans IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.subscriptions IS 'Audit: payments.audit_log; metadata is never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.subscriptions IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.invoices IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.invoices IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.invoice_items IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.invoice_items IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.dunning_policies IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.dunning_policies IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.billing_clocks IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.billing_clocks IS 'Audit: payments.audit_log.';

------------------------------------------------------------------------------
-- The billing clock and calendar periods.
------------------------------------------------------------------------------

-- "Now" for a merchant's billing: its test clock while test clocks are
-- allowed, else the real time.
-- (PL/pgSQL: its statement is planned once per session; as a SQL function
-- called from PL/pgSQL it was parsed and planned again at every call)
CREATE FUNCTION payments._billing_now(p_merchant_id bigint) RETURNS timestamptz
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF current_setting('payments.test_clocks', true) IS DISTINCT FROM 'on' THEN
		RETURN now();
	END IF;
	RETURN coalesce((SELECT c.frozen_at FROM payments.billing_clocks c WHERE c.merchant_id = p_merchant_id), now());
END
$$;
COMMENT ON FUNCTION payments._billing_now(bigint) IS
	'Internal: "now" for a merchant''s billing (its test clock while payments.test_clocks is on, else now()).';

-- The start of period p_index of a subscription: the local anchor plus
-- p_index intervals, in its time zone.  Months and years are added from the
-- anchor each time (never period to period), so the 31st comes back after
-- a short month and 29 February after three years of 28 February.
CREATE FUNCTION payments._period_start(p_anchor timestamp, p_time_zone text, p_unit text,
	p_count integer, p_index integer)
	RETURNS timestamptz
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT (p_anchor + CASE p_unit
		WHEN 'day' THEN make_interval(days => p_count * p_index)
		WHEN 'week' THEN make_interval(days => 7 * p_count * p_index)
		WHEN 'month' THEN make_interval(months => p_count * p_index)
		WHEN 'year' THEN make_interval(years => p_count * p_index)
	END) AT TIME ZONE p_time_zone
	$$;
COMMENT ON FUNCTION payments._period_start(timestamp, text, text, integer, integer) IS
	'Internal: the start of a subscription''s period number p_index: the local billing anchor plus p_index intervals, in the subscription''s time zone (calendar months: the 31st bills on the last day of shorter months and returns; wall-clock time kept across daylight-saving changes).';

------------------------------------------------------------------------------
-- Test clocks (pay_set_test_clock, pay_advance_test_clock,
-- pay_clear_test_clock, pay_billing_now).
------------------------------------------------------------------------------

CREATE FUNCTION payments._require_test_clocks() RETURNS void
	LANGUAGE plpgsql
	AS $$
BEGIN
	IF current_setting('payments.test_clocks', true) IS DISTINCT FROM 'on' THEN
		RAISE EXCEPTION 'test clocks are off on this server'
			USING ERRCODE = 'PT403',
				DETAIL = 'Billing runs on the real clock.',
				HINT = 'Test and demonstration servers turn them on with payments.test_clocks = on in postgresql.conf.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_test_clocks() IS
	'Internal: raises PT403 unless the server setting payments.test_clocks is on.';

CREATE FUNCTION payments._move_test_clock(p_merchant_id bigint, p_to timestamptz, p_by interval)
	RETURNS timestamptz
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	current_ timestamptz := payments._billing_now(p_merchant_id);
	moved timestamptz;
BEGIN
	PERFORM payments._require_test_clocks();
	-- (p_by counted in UTC, payments._utc_plus: a merchant's billing time
	-- has no time zone, and '1 day' is 24 hours whoever moves the clock)
	IF (p_to IS NULL AND p_by IS NULL) OR NOT isfinite(coalesce(p_to, payments._utc_plus(current_, p_by))) THEN
		RAISE EXCEPTION 'frozen_at must be a finite time' USING ERRCODE = '22023';
	END IF;
	-- (checked here against the clock this session sees, and again below
	-- against the clock as it is under the row lock)
	IF coalesce(p_to, payments._utc_plus(current_, p_by)) >= current_ THEN
		INSERT INTO payments.billing_clocks AS c (merchant_id, frozen_at)
		VALUES (p_merchant_id, coalesce(p_to, payments._utc_plus(now(), p_by)))
		ON CONFLICT (merchant_id) DO UPDATE SET frozen_at = coalesce(p_to, payments._utc_plus(c.frozen_at, p_by)),
			updated_at = now()
			WHERE coalesce(p_to, payments._utc_plus(c.frozen_at, p_by)) >= c.frozen_at
		RETURNING c.frozen_at INTO moved;
	END IF;
	IF moved IS NULL THEN
		current_ := payments._billing_now(p_merchant_id);
		RAISE EXCEPTION 'a test clock never goes back'
			USING ERRCODE = '22023',
				DETAIL = format('Billing time is %s; %s was given.', current_,
					coalesce(p_to, payments._utc_plus(current_, p_by)));
	END IF;
	-- what the new time made due is billed now, not at the billing
	-- process's next round (payments.billing_interval)
	PERFORM payments._wake_billing_at_commit();
	RETURN moved;
END
$$;
COMMENT ON FUNCTION payments._move_test_clock(bigint, timestamptz, interval) IS
	'Internal: moves a merchant''s test clock to p_to, or forward by p_by from its time as locked (NULL p_to); 22023 for a time that is not finite or before the clock (as locked: two moves at once both count, in turn, and neither goes back). Wakes the billing process at COMMIT. Returns the new billing time.';

CREATE FUNCTION payments.pay_set_test_clock(frozen_at timestamptz) RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- (_move_test_clock checks test clocks are on and the time is finite)
	RETURN payments._move_test_clock(payments.pay_current_merchant(), frozen_at, NULL);
END
$$;
COMMENT ON FUNCTION payments.pay_set_test_clock(timestamptz) IS
	'Tests and demonstrations: freezes the current merchant''s billing clock at frozen_at (never backwards: also not behind a move another session committed meanwhile); renewals and dunning retries then fall due by that clock. Only while the server setting payments.test_clocks is on (PT403 otherwise). Returns the new billing time.';

CREATE FUNCTION payments.pay_advance_test_clock(by_interval interval) RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- a NULL interval is a missing argument (before: "frozen_at must be
	-- a finite time", which names pay_set_test_clock's argument)
	PERFORM payments._require_test_clocks();
	IF by_interval IS NULL THEN
		RAISE EXCEPTION 'by_interval is required' USING ERRCODE = '22004';
	END IF;
	RETURN payments._move_test_clock(payments.pay_current_merchant(), NULL, by_interval);
END
$$;
COMMENT ON FUNCTION payments.pay_advance_test_clock(interval) IS
	'Tests and demonstrations: moves the current merchant''s billing clock forward by by_interval from its frozen time (or from now), as it is once locked: two sessions advancing it at once both count. Returns the new billing time.';

CREATE FUNCTION payments.pay_clear_test_clock() RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	frozen timestamptz;
BEGIN
	PERFORM payments._require_test_clocks();
	-- never backwards, as a move: a clock ahead of the real one stays
	-- (before, clearing it took billing time back to periods already
	-- billed: a later change prorated a period from before it started, a
	-- cancel ended a subscription before its period began).  The DELETE
	-- waits for a move of this clock another session holds, then checks
	-- the time as moved.
	DELETE FROM payments.billing_clocks c WHERE c.merchant_id = m AND c.frozen_at <= now();
	IF FOUND THEN
		-- what the real clock makes due is billed now (the clock was behind)
		PERFORM payments._wake_billing_at_commit();
	ELSE
		SELECT c.frozen_at INTO frozen FROM payments.billing_clocks c WHERE c.merchant_id = m;
		IF FOUND THEN
			RAISE EXCEPTION 'a test clock never goes back'
				USING ERRCODE = '22023',
					DETAIL = format('Billing time is %s, ahead of the real clock (%s); the real clock again would take billing back to periods already billed.',
						frozen, now()),
					HINT = 'Clear the test clock once the real clock has passed it, or test on another merchant.';
		END IF;
	END IF;
	RETURN now();
END
$$;
COMMENT ON FUNCTION payments.pay_clear_test_clock() IS
	'Tests and demonstrations: the current merchant''s billing runs on the real clock again, from its commit (the billing process woken to bill what became due). 22023 while the test clock is ahead of the real clock: billing time never goes back. Returns now().';

CREATE FUNCTION payments.pay_billing_now() RETURNS timestamptz
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT payments._billing_now(payments.pay_current_merchant())
	$$;
COMMENT ON FUNCTION payments.pay_billing_now() IS
	'"Now" for the current merchant''s billing: its test clock while payments.test_clocks is on and one is set, else now().';

------------------------------------------------------------------------------
-- h-lead-methods: a save or deletion of a payment method that becomes a
-- dead letter, or a customer deletion the gateway refused, no longer leaves
-- methods pending or deleting for ever (issue 11; payment_methods.sql).
-- Made once since: _record_method_result in h-account-life (its final form).
------------------------------------------------------------------------------

INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('payment_method', 'failed', 'pending');

-- A deleted customer whose gateway profile could not be deleted (the
-- gateway refused, or the operation ran out of attempts): its methods are
-- deleted here all the same (the customer is), and an event names the
-- profile left at the gateway so that it can be removed there.
CREATE FUNCTION payments._customer_profile_kept(o payments.operations, p_reason text) RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods SET status = 'deleted'
	WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id AND status = 'deleting';
	INSERT INTO payments.events (merchant_id, event_type, operation_id, data, correlation_id)
	SELECT o.merchant_id, 'customer.gateway_profile_kept', o.operation_id,
		jsonb_build_object('customer_id', c.customer_id, 'customer_profile_id', c.customer_profile_id,
			'operation_id', o.operation_id, 'reason', p_reason),
		o.correlation_id
	FROM payments.customers c WHERE c.merchant_id = o.merchant_id AND c.customer_id = o.customer_id;
	$$;
COMMENT ON FUNCTION payments._customer_profile_kept(payments.operations, text) IS
	'Internal: a deleted customer''s gateway profile could not be deleted: its methods are deleted all the same and a customer.gateway_profile_kept event names the profile.';

-- A save or deletion that ran out of attempts (a dead letter) does not
-- leave its method half-way: a save fails (pay_wait_payment_method
-- returns), a deletion leaves the method active, a customer's deletion
-- keeps the profile (above).  pay_retry_dead_letter puts them back on
-- their way: the method pending, or deleting, again.
-- _method_operation_dead in its final form (from h-account-customers) here:
-- trigger operations_method_dead below runs it.
CREATE OR REPLACE FUNCTION payments._method_operation_dead() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	-- held by the claim (the gateway account changed): its last_error says
	-- why; otherwise its attempts ran out
	why text := CASE WHEN NEW.last_error LIKE 'held: %' THEN NEW.last_error
		ELSE format('No answer from the gateway after %s attempts (%s); pay_retry_dead_letter can try again.',
			NEW.attempts, coalesce(NEW.last_error, 'no error recorded')) END;
BEGIN
	IF NEW.status = 'dead' THEN
		IF NEW.kind = 'save_method' THEN
			UPDATE payments.payment_methods SET status = 'failed', is_default = false,
				failure_code = 'gave_up', failure_reason = why
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'pending';
		ELSIF NEW.kind = 'delete_method' THEN
			UPDATE payments.payment_methods SET status = 'active', failure_code = 'gave_up', failure_reason = why
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'deleting';
		ELSE
			PERFORM payments._customer_profile_kept(NEW, why);
		END IF;
	ELSIF OLD.status = 'dead' AND NEW.status = 'queued' THEN
		IF NEW.kind = 'save_method' THEN
			UPDATE payments.payment_methods SET status = 'pending', failure_code = NULL, failure_reason = NULL
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'failed' AND failure_code = 'gave_up';
		ELSIF NEW.kind = 'delete_method' THEN
			UPDATE payments.payment_methods SET status = 'deleting', failure_code = NULL, failure_reason = NULL
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'active' AND failure_code = 'gave_up';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._method_operation_dead() IS
	'Trigger: a save, deletion or customer deletion that became a dead letter fails its method, leaves it active, or keeps the customer''s profile (event); retried (pay_retry_dead_letter), the method is pending or deleting again.';

CREATE TRIGGER operations_method_dead AFTER UPDATE OF status ON payments.operations
	FOR EACH ROW
	WHEN ((NEW.status = 'dead' OR OLD.status = 'dead') AND NEW.status IS DISTINCT FROM OLD.status
		AND NEW.kind IN ('save_method', 'delete_method', 'delete_customer'))
	EXECUTE FUNCTION payments._method_operation_dead();
COMMENT ON TRIGGER operations_method_dead ON payments.operations IS
	'Moves a payment method on when its save or deletion becomes a dead letter or is retried.';

------------------------------------------------------------------------------
-- h-subs-api: plans and subscriptions through the SQL API (issue 11;
-- sql/src/subscriptions.sql), and a customer's subscriptions and invoices in
-- its export, their metadata in its erasure (sql/src/customer_privacy.sql).
-- Made once since: _plan_not_found, _subscription_not_found, _check_time_zone
-- in h-null-arguments; _check_billing_interval, pay_list_subscriptions in
-- h-free-text-bounds; _check_metadata, pay_create_plan, pay_update_plan in
-- h-free-text; pay_create_subscription in h-sub-key-order;
-- pay_update_subscription, pay_cancel_subscription,
-- pay_preview_subscription_change, pay_change_subscription in h-due-renewals;
-- _end_subscription_now, _end_customer_subscriptions in h-sub-end-items;
-- pay_pause_subscription, pay_resume_subscription in h-pause-cancel;
-- _subscription_change in h-paused-change; pay_erase_customer in
-- h-customer-locks (their final form).
------------------------------------------------------------------------------

-- Plans and subscriptions through the SQL API: create, read, list, update,
-- cancel, pause, resume, change of plan, price or quantity with proration.
-- (The tables, status machines and calendar periods: subscription_tables.sql;
-- issuing and charging invoices, the billing run and dunning: billing.sql.)

------------------------------------------------------------------------------
-- Lookups and argument checks.
------------------------------------------------------------------------------

-- A plan of the current merchant (locked when p_lock), or PT404.
CREATE FUNCTION payments._find_plan(p_plan_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.plans
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO p FROM payments.plans x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.plan_id = p_plan_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO p FROM payments.plans x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.plan_id = p_plan_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._plan_not_found(p_plan_id);
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._find_plan(bigint, boolean) IS
	'Internal: a plan of the current merchant (optionally locked), or PT404.';

-- A subscription of the current merchant (locked when p_lock), or PT404.
CREATE FUNCTION payments._find_subscription(p_subscription_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.subscription_id = p_subscription_id
		FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.subscription_id = p_subscription_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._subscription_not_found(p_subscription_id);
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._find_subscription(bigint, boolean) IS
	'Internal: a subscription of the current merchant (optionally locked), or PT404.';

-- A price per unit and period: positive, at most what the gateway takes.
CREATE FUNCTION payments._check_price(p_price payments.pay_amount, p_what text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF p_price IS NULL THEN
		RAISE EXCEPTION '% is required', p_what USING ERRCODE = '22004';
	END IF;
	IF pay_minor_units(p_price) <= 0 THEN
		RAISE EXCEPTION '% must be positive', p_what
			USING ERRCODE = '22Y23', DETAIL = format('The %s given was %s.', p_what, p_price);
	END IF;
	PERFORM payments._check_gateway_input(p_price, NULL, NULL, NULL);
END
$$;
COMMENT ON FUNCTION payments._check_price(payments.pay_amount, text) IS
	'Internal: raises 22004 (missing), 22Y23 (not positive) or 22Y26 (more digits than the gateway takes) for a price.';

-- A subscription's amount per period: price times quantity, at most what
-- the gateway takes.  Multiplied as it was, a product beyond pay_amount's
-- 64-bit range raised 22003 "value out of range for type pay_amount",
-- which names neither the price nor the quantity.
CREATE FUNCTION payments._subscription_total(p_price payments.pay_amount, p_quantity integer)
	RETURNS payments.pay_amount
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF abs(pay_minor_units(p_price)::numeric * p_quantity) > 999999999999999 THEN
		RAISE EXCEPTION 'amount is larger than the gateway accepts' USING ERRCODE = '22Y26',
			DETAIL = format('The gateway takes amounts of at most 15 digits; the price %s times the quantity %s has more.',
				p_price, p_quantity);
	END IF;
	RETURN p_price * p_quantity;
END
$$;
COMMENT ON FUNCTION payments._subscription_total(payments.pay_amount, integer) IS
	'Internal: price times quantity, a subscription''s amount per period; raises 22Y26 when it has more digits than the gateway takes (15).';

CREATE FUNCTION payments._check_page_size(p_page_size integer, p_what text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF p_page_size IS NULL OR p_page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(p_page_size::text, 'NULL')),
				HINT = format('Ask for the next page with after => the last %s of this one.', p_what);
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_page_size(integer, text) IS 'Internal: raises 22023 unless page_size is between 1 and 500.';

------------------------------------------------------------------------------
-- Periods and proration.
------------------------------------------------------------------------------

-- The number of the period that contains p_at: the n with
-- _period_start(n) <= p_at < _period_start(n + 1).  Estimated from the
-- average length of the unit, then stepped to the exact calendar period.
CREATE FUNCTION payments._period_index_at(p_anchor timestamp, p_time_zone text, p_unit text,
	p_count integer, p_at timestamptz)
	RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer := floor(extract(epoch FROM ((p_at AT TIME ZONE p_time_zone) - p_anchor))
		/ (p_count::bigint * CASE p_unit WHEN 'day' THEN 86400 WHEN 'week' THEN 604800
			WHEN 'month' THEN 2629746 ELSE 31556952 END))::integer;
BEGIN
	WHILE payments._period_start(p_anchor, p_time_zone, p_unit, p_count, n) > p_at LOOP
		n := n - 1;
	END LOOP;
	WHILE payments._period_start(p_anchor, p_time_zone, p_unit, p_count, n + 1) <= p_at LOOP
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._period_index_at(timestamp, text, text, integer, timestamptz) IS
	'Internal: the number of a subscription''s period that contains p_at (counted from the local billing anchor; negative before it).';

-- THE proration rule (README, "Proration"): the part of a period's amount
-- for the time left in it, amount * remaining / period, both in whole
-- seconds, exact in minor units and rounded once, half to even, by
-- pay_amount's division.  No product may overflow: the fraction is reduced,
-- and the amount split (minor units) as A = a * period + r, so that
-- A * remaining / period = q + (r * remaining) / period with q = a *
-- remaining exact; the even part of q is added outside the division, the
-- odd unit inside it, so the division still rounds a tie to the even
-- total.  Nothing before the period's start is prorated (the whole
-- amount), nothing after its end (zero).
-- _prorate in its final form (from h-prorate-numeric) here: _period_line
-- below (LANGUAGE sql) calls it.
CREATE OR REPLACE FUNCTION payments._prorate(p_amount payments.pay_amount, p_period_start timestamptz,
	p_period_end timestamptz, p_at timestamptz)
	RETURNS payments.pay_amount
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	-- amount * remaining exactly (numeric: up to 19 + 11 digits), divided
	-- by the period, the remainder rounding half to even
	SELECT CASE WHEN t.remaining <= 0 THEN p_amount * 0
		WHEN t.remaining >= t.period THEN p_amount
		ELSE pay_amount_from_minor((q.whole + CASE WHEN 2 * abs(q.rest) > t.period
				OR (2 * abs(q.rest) = t.period AND q.whole % 2 <> 0) THEN sign(q.n) ELSE 0 END)::bigint,
			pay_currency(p_amount)) END
	FROM (SELECT floor(extract(epoch FROM p_period_end) - extract(epoch FROM p_at))::bigint AS remaining,
			greatest(floor(extract(epoch FROM p_period_end) - extract(epoch FROM p_period_start))::bigint, 1) AS period) t,
		LATERAL (SELECT x.n, div(x.n, t.period) AS whole, mod(x.n, t.period) AS rest
			FROM (SELECT pay_minor_units(p_amount)::numeric * greatest(t.remaining, 0) AS n) x) q
	$$;
COMMENT ON FUNCTION payments._prorate(payments.pay_amount, timestamptz, timestamptz, timestamptz) IS
	'Internal: the proration rule: amount * remaining seconds / period seconds of [period_start, period_end) at p_at, exact in minor units, rounded half to even.';

-- The invoice line of a subscription's price for [p_from, p_end) of the
-- period [p_start, p_end): the whole price, or its prorated part.
CREATE FUNCTION payments._period_line(s payments.subscriptions, p_start timestamptz, p_end timestamptz,
	p_from timestamptz)
	RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT jsonb_build_object('kind', 'subscription',
		-- wall-clock times as to_char writes them, whatever the session's DateStyle
		'description', format('%s x %s, %s to %s%s', s.quantity, s.unit_amount,
			to_char(greatest(p_from, p_start) AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
			to_char(p_end AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
			CASE WHEN p_from > p_start THEN format(' (prorated: %s of %s seconds)',
				floor(extract(epoch FROM p_end) - extract(epoch FROM p_from))::bigint,
				floor(extract(epoch FROM p_end) - extract(epoch FROM p_start))::bigint) ELSE '' END),
		'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
		'amount', payments._prorate(s.unit_amount * s.quantity, p_start, p_end, p_from)::text)
	$$;
COMMENT ON FUNCTION payments._period_line(payments.subscriptions, timestamptz, timestamptz, timestamptz) IS
	'Internal: the invoice line of a subscription''s price for the part of a period from p_from (prorated when p_from is after the period''s start).';

------------------------------------------------------------------------------
-- Plans.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_get_plan(plan_id bigint) RETURNS payments.plans
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_plan(pay_get_plan.plan_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_plan(bigint) IS
	'A plan of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_plans(
	active boolean DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.plans
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	PERFORM payments._check_page_size(page_size, 'plan_id');
	IF after IS NOT NULL THEN
		SELECT x.created_at INTO cursor_at FROM payments.plans x
		WHERE x.merchant_id = m AND x.plan_id = pay_list_plans.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor plan % is not a plan of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last plan_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT x.* FROM payments.plans x
	WHERE x.merchant_id = m
		AND (pay_list_plans.after IS NULL OR (x.created_at, x.plan_id) < (cursor_at, pay_list_plans.after))
		AND (pay_list_plans.active IS NULL OR x.active = pay_list_plans.active)
	ORDER BY x.created_at DESC, x.plan_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_plans(boolean, bigint, integer) IS
	'The current merchant''s plans, newest first (created_at, then plan_id), at most page_size (1-500, default 50) per call; active filters active or inactive ones. Keyset pagination: pass as after the last plan_id of the previous page.';

------------------------------------------------------------------------------
-- Subscriptions: create, read, list, update.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_get_subscription(subscription_id bigint) RETURNS payments.subscriptions
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_subscription(pay_get_subscription.subscription_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_subscription(bigint) IS
	'A subscription of the current merchant; an unknown id, or another merchant''s, raises PT404.';

-- A subscription that has ended takes no change but its metadata.
CREATE FUNCTION payments._require_not_ended(s payments.subscriptions, p_what text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF s.status IN ('canceled', 'incomplete_expired') THEN
		RAISE EXCEPTION 'cannot % subscription %: it has ended (status %)', p_what, s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'An ended subscription stays as it is (only its metadata can change); create a new one.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_not_ended(payments.subscriptions, text) IS
	'Internal: raises 22Y20 for a canceled or incomplete_expired subscription.';

-- Cancelling at the end of the period needs a period end the billing run
-- reaches: trialing, incomplete (once paid) and active subscriptions.
CREATE FUNCTION payments._require_cancellable_at_period_end(s payments.subscriptions) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF s.status NOT IN ('trialing', 'incomplete', 'active') THEN
		RAISE EXCEPTION 'cannot cancel subscription % at the end of its period in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20',
				DETAIL = 'Only trialing, incomplete and active subscriptions reach the end of their period through the billing run.',
				HINT = 'Cancel it now (pay_cancel_subscription with at_period_end => false).';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_cancellable_at_period_end(payments.subscriptions) IS
	'Internal: raises 22Y20 unless a subscription can be canceled at the end of its period (trialing, incomplete, active).';

------------------------------------------------------------------------------
-- Cancel, pause, resume.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Change of plan, price or quantity, with proration.
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION payments.pay_export_customer(customer_id bigint) RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	-- every time in the document (to_jsonb of whole rows) in UTC, as
	-- events store them: one export whoever asks, whatever their TimeZone
	SET TimeZone = 'UTC'
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_export_customer.customer_id);
BEGIN
	RETURN jsonb_build_object(
		'exported_at', now(),
		'customer', to_jsonb(c) - 'idempotency_key',
		'payment_methods', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'card_fingerprint' - 'idempotency_key'
				ORDER BY x.payment_method_id)
			FROM payments.payment_methods x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id), '[]'),
		'payments', coalesce((SELECT jsonb_agg(to_jsonb(p) - 'card_fingerprint' - 'idempotency_key'
				ORDER BY p.payment_id)
			FROM payments._customer_payments(c) p), '[]'),
		'operations', coalesce((SELECT jsonb_agg(to_jsonb(o) - 'idempotency_key' ORDER BY o.operation_id)
			FROM payments.operations o
			WHERE o.merchant_id = c.merchant_id AND (o.customer_id = c.customer_id
				OR o.payment_id IN (SELECT p.payment_id FROM payments._customer_payments(c) p))), '[]'),
		'subscriptions', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'idempotency_key' ORDER BY x.subscription_id)
			FROM payments.subscriptions x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id), '[]'),
		'invoices', coalesce((SELECT jsonb_agg(to_jsonb(i) ORDER BY i.invoice_id)
			FROM payments.invoices i
			WHERE i.merchant_id = c.merchant_id AND i.customer_id = c.customer_id), '[]'),
		'events', coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.event_id)
			FROM payments._customer_events(c) e), '[]'));
END
$$;
COMMENT ON FUNCTION payments.pay_export_customer(bigint) IS
	'Everything the extension holds about one customer of the current merchant, as one JSON document: the customer, its payment methods (masked: brand, last four, expiry, gateway ids), its payments (those made for it, and those made without customer_id whose customer object holds its email), their gateway operations, its subscriptions and invoices, and the events that concern them. Every time in it is ISO 8601 in UTC (2026-12-06T10:00:00+00:00), whatever the caller''s TimeZone. PT404 for an unknown or foreign id.';

------------------------------------------------------------------------------
-- h-billing: the billing engine (issue 11; sql/src/billing.sql, whole:
-- _charge_invoice and _issue_invoice replaced, the rest new): dunning, the
-- renewal and dunning runs, a new card tried at once, the invoice and
-- dunning policy API.
-- Made once since: trigger payment_methods_dunning_retry in h-method-gone;
-- _decline_is_final in h-method-gone;
-- _invoice_payment_method in h-purchase-default; _charge_invoice in
-- h-period-charge-number; _issue_invoice in h-priority; _billing_event,
-- _dunning_final_action in h-sub-end-items; _subscription_invoice_paid in
-- h-unpaid-resume; _invoice_payment_failed in h-dunning-schedule;
-- pay_set_dunning_policy, pay_list_invoices in h-free-text-bounds (their
-- final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Constants of billing.
------------------------------------------------------------------------------

-- How long an incomplete subscription (its first invoice unpaid) waits for
-- a successful charge before the billing run expires it, in billing time.
-- A constant rather than a server setting: 23 hours as at Stripe, so that a
-- retry the next day at the same hour already finds the subscription
-- expired and the customer starts again with a new one.
CREATE FUNCTION payments._incomplete_expiry() RETURNS interval
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT interval '23 hours' $$;
COMMENT ON FUNCTION payments._incomplete_expiry() IS
	'Internal: how long an incomplete subscription waits for its first invoice to be paid (payments.incomplete_expiry: 23 hours of billing time); its next_renewal_at is that deadline, and the billing run then makes it incomplete_expired.';

-- A merchant's dunning policy: its row, else the defaults of the table
-- (retry on days 1, 3, 5 and 7 after the first failure, then cancel).
CREATE FUNCTION payments._dunning_policy(p_merchant_id bigint) RETURNS payments.dunning_policies
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM (
		SELECT d.* FROM payments.dunning_policies d WHERE d.merchant_id = p_merchant_id
		UNION ALL
		-- the column defaults of payments.dunning_policies
		SELECT p_merchant_id, '{1,3,5,7}'::integer[], 'canceled', NULL::timestamptz
	) x LIMIT 1
	$$;
COMMENT ON FUNCTION payments._dunning_policy(bigint) IS
	'Internal: the merchant''s dunning policy, or the defaults (retry days 1, 3, 5, 7; final action canceled; updated_at NULL) when it has none.';

------------------------------------------------------------------------------
-- One charge attempt of an invoice: a purchase of the subscription's payment
-- method (or the customer's default), recorded like any payment and sent by
-- the worker after COMMIT with the card-on-file fields of a stored method.
-- The payment carries invoice_id; what its outcome does to the invoice and
-- the subscription is decided when the worker records it.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Issuing an invoice: its lines (the subscription's price times quantity for
-- a period's invoice, or the lines given; then the subscription's pending
-- prorations and credits), the total (a credit larger than the total is
-- carried to the next invoice), and its first charge.  The caller holds the
-- subscription's row lock.  A period already invoiced returns an empty row:
-- the unique key invoices_one_per_period is what makes two billing runs at
-- once, or a run repeated after a crash, harmless.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- The outcome of a charge: what a paid or failed invoice does to its
-- subscription, the dunning schedule and its final action.
------------------------------------------------------------------------------

-- A charge of an invoice succeeded: the invoice is paid and its
-- subscription active again (_subscription_invoice_paid).  A payment that
-- succeeds for an invoice already paid or void (a late answer of an older
-- attempt) is money to give back: invoice.payment_after_close says so.
CREATE FUNCTION payments._invoice_payment_succeeded(p_merchant_id bigint, p_invoice_id bigint,
	p_payment_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	PERFORM 1 FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id =
		(SELECT i.subscription_id FROM payments.invoices i
		 WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id)
	FOR UPDATE;
	SELECT * INTO STRICT inv FROM payments.invoices
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	FOR UPDATE;
	IF inv.status NOT IN ('open', 'uncollectible') THEN
		PERFORM payments._billing_event(p_merchant_id, 'invoice.payment_after_close', p_payment_id,
			jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
				'invoice_status', inv.status, 'payment_id', p_payment_id, 'paid_by', inv.payment_id),
			inv.correlation_id);
		RETURN;
	END IF;
	UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_,
		next_attempt_at = NULL, payment_id = p_payment_id
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
	PERFORM payments._subscription_invoice_paid(p_merchant_id, inv.subscription_id);
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_succeeded(bigint, bigint, bigint) IS
	'Internal: a charge of an invoice succeeded: the invoice is paid and its subscription active again; a success for an invoice already closed writes invoice.payment_after_close (the money is to be refunded). Locks the subscription, then the invoice.';

-- Trigger on payments.payments (AFTER UPDATE OF status, charges of
-- invoices): the worker's record of a charge's outcome moves the invoice
-- and its subscription on.  succeeded -> paid; failed or canceled ->
-- dunning.  unknown (the worker resolves it) and in_review (held: the
-- worker learns the decision) wait; refunds of a paid invoice change
-- nothing here.
-- (plan_cache_mode: the worker records outcomes with force_custom_plan,
-- which would plan this trigger's statements afresh for every row)
CREATE FUNCTION payments._invoice_payment_outcome() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET plan_cache_mode = auto
	AS $$
BEGIN
	IF OLD.status NOT IN ('pending', 'unknown', 'in_review') THEN
		RETURN NULL;
	END IF;
	IF NEW.status = 'succeeded' THEN
		PERFORM payments._invoice_payment_succeeded(NEW.merchant_id, NEW.invoice_id, NEW.payment_id);
	ELSIF NEW.status IN ('failed', 'canceled') THEN
		PERFORM payments._invoice_payment_failed(NEW.merchant_id, NEW.invoice_id, NEW.payment_id,
			coalesce(NEW.decline_code, NEW.status),
			coalesce(NEW.decline_reason, CASE NEW.status WHEN 'canceled' THEN 'The charge was canceled.'
				ELSE 'The charge failed.' END));
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_outcome() IS
	'Trigger: applies the outcome of an invoice''s charge (succeeded: invoice paid, subscription active; failed or canceled: dunning); unknown and in_review wait.';

CREATE TRIGGER payments_invoice_outcome AFTER UPDATE OF status ON payments.payments
	FOR EACH ROW WHEN (NEW.invoice_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
	EXECUTE FUNCTION payments._invoice_payment_outcome();
COMMENT ON TRIGGER payments_invoice_outcome ON payments.payments IS
	'Billing: the outcome of an invoice''s charge moves the invoice and its subscription on (payments._invoice_payment_outcome).';

------------------------------------------------------------------------------
-- A new card during dunning is tried at once.
------------------------------------------------------------------------------

-- Charges now the open invoices of an incomplete, past-due or unpaid
-- subscription (an unpaid one's uncollectible ones too) that have no
-- charge in flight: after its payment method was changed, or the
-- customer's default became usable.  Takes the subscription's lock (the
-- caller may hold it).  Returns how many charges were started.
CREATE FUNCTION payments._retry_open_invoice_now(p_merchant_id bigint, p_subscription_id bigint)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	inv payments.invoices;
	pid bigint;
	n integer := 0;
BEGIN
	SELECT * INTO s FROM payments.subscriptions
	WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id
	FOR UPDATE;
	IF NOT FOUND OR s.status NOT IN ('incomplete', 'past_due', 'unpaid') THEN
		RETURN 0;
	END IF;
	FOR inv IN
		SELECT i.* FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
			AND (i.status = 'open' OR (i.status = 'uncollectible' AND s.status = 'unpaid'))
		ORDER BY i.invoice_id
		FOR UPDATE OF i
	LOOP
		-- in flight, as locked
		CONTINUE WHEN EXISTS (SELECT 1 FROM payments.payments p
			WHERE p.merchant_id = inv.merchant_id AND p.payment_id = inv.payment_id
				AND p.status IN ('pending', 'unknown', 'in_review'));
		pid := payments._charge_invoice(p_merchant_id, inv.invoice_id);
		IF pid IS NOT NULL THEN
			n := n + 1;
			PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_attempted', pid,
				jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
					'payment_id', pid, 'attempt_count', inv.attempt_count + 1,
					'reason', 'payment_method_updated'),
				inv.correlation_id);
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._retry_open_invoice_now(bigint, bigint) IS
	'Internal: locks a subscription and charges at once its open invoices (an unpaid subscription''s uncollectible ones too) if it is incomplete, past_due or unpaid, each locked before it is checked to have no charge in flight (a REPEATABLE READ or SERIALIZABLE caller whose snapshot predates an outcome the worker recorded gets 40001), writing invoice.retry_attempted; called when its payment method changes (pay_update_subscription) or the customer''s default becomes usable. Returns the number of charges started.';

-- Trigger on payments.payment_methods: a card the customer just saved
-- (pending -> active) or made the default is tried at once for every
-- subscription of the customer in dunning that would be charged to it.
CREATE FUNCTION payments._payment_method_dunning_retry() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	sid bigint;
BEGIN
	FOR sid IN
		SELECT s.subscription_id FROM payments.subscriptions s
		WHERE s.merchant_id = NEW.merchant_id AND s.customer_id = NEW.customer_id
			AND s.status IN ('incomplete', 'trialing', 'active', 'past_due', 'unpaid')
			AND (payments._invoice_payment_method(s.merchant_id, s.customer_id, s.payment_method_id)).payment_method_id
				= NEW.payment_method_id
		ORDER BY s.subscription_id
	LOOP
		PERFORM payments._retry_open_invoice_now(NEW.merchant_id, sid);
	END LOOP;
	RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- The billing runs.  Each picks what is due by its merchant's billing clock
-- (_billing_now: the test clock where one is set), oldest first, at most
-- p_limit, locking with SKIP LOCKED: two runs at once (the worker's and a
-- pg_cron job's) take different rows, and what one has committed no longer
-- matches the other's re-check under the lock.  A run that dies midway
-- rolls back whole; the next one does its work again, and the unique key
-- of an invoice per period is the last guard against a second charge.
------------------------------------------------------------------------------

-- The latest billing time of any merchant: what is due by any clock is
-- due before it (the runs' index condition; exact per row after).
CREATE FUNCTION payments._billing_horizon(p_merchant_id bigint) RETURNS timestamptz
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT CASE
		WHEN p_merchant_id IS NOT NULL THEN payments._billing_now(p_merchant_id)
		WHEN current_setting('payments.test_clocks', true) = 'on'
			THEN greatest(now(), (SELECT max(c.frozen_at) FROM payments.billing_clocks c))
		ELSE now()
	END
	$$;
COMMENT ON FUNCTION payments._billing_horizon(bigint) IS
	'Internal: the billing time of the merchant, or (NULL) the latest billing time of any merchant: nothing is due after it.';

-- Renewals: at next_renewal_at, for each subscription
--   - incomplete: its first invoice was not paid in time -> incomplete_expired
--     (the invoice void); while a charge is still in flight, a minute later;
--   - cancel_at_period_end: -> canceled at the period's end;
--   - trialing (the trial ends) or active: the next period (index + 1, its
--     bounds from the anchor) becomes current and its 'renewal' invoice is
--     issued and charged (_issue_invoice).  A trialing subscription becomes
--     active when that invoice is paid, past_due when it is not.
-- One period per subscription and run: a subscription behind by several
-- periods (the runs stopped for a while, a test clock moved weeks past a
-- daily or weekly plan's periods) is brought up to date by the next runs,
-- each period invoiced in a transaction of its own and in order.  A run
-- that leaves a subscription still due asks for the next run at its COMMIT
-- (the billing process's, _wake_billing_at_commit), not an interval later:
-- before, each period behind waited payments.billing_interval (ten daily
-- periods took 90 s to catch up, not the second a clock move takes).
-- Returns how many subscriptions were handled.
-- _run_renewals in its final form (from h-due-renewals) here:
-- pay_run_renewals below (LANGUAGE sql) calls it.
CREATE OR REPLACE FUNCTION payments._run_renewals(p_merchant_id bigint, p_limit integer) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	horizon timestamptz := payments._billing_horizon(p_merchant_id);
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	now_ timestamptz;
	n integer := 0;
	behind boolean := false;
BEGIN
	FOR s IN
		SELECT x.* FROM payments.subscriptions x
		WHERE x.next_renewal_at <= horizon
			AND (p_merchant_id IS NULL OR x.merchant_id = p_merchant_id)
			AND x.status IN ('trialing', 'active', 'incomplete')
			-- each merchant's own clock (CASE: never evaluated without test clocks)
			AND CASE WHEN clocks AND p_merchant_id IS NULL
				THEN x.next_renewal_at <= payments._billing_now(x.merchant_id) ELSE true END
		ORDER BY x.next_renewal_at
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED
	LOOP
		-- the row as locked: another run may have renewed it since
		now_ := CASE WHEN clocks THEN payments._billing_now(s.merchant_id) ELSE now() END;
		CONTINUE WHEN s.next_renewal_at IS NULL OR s.next_renewal_at > now_
			OR s.status NOT IN ('trialing', 'active', 'incomplete');
		n := n + 1;
		PERFORM payments._renew_subscription(s, now_, true);
		-- its next period due too: the next run at COMMIT
		IF NOT behind AND EXISTS (SELECT 1 FROM payments.subscriptions x
				WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
					AND x.next_renewal_at <= now_ AND x.status IN ('trialing', 'active', 'incomplete')) THEN
			behind := true;
			PERFORM payments._wake_billing_at_commit();
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._run_renewals(bigint, integer) IS
	'Billing run (the billing process, pay_run_renewals): for at most p_limit subscriptions due by their merchant''s billing clock (one merchant, or NULL: all), oldest first, locked with SKIP LOCKED: incomplete ones past their deadline expire (first invoice void), cancel_at_period_end ones are canceled (their pending invoice items charged on a final invoice), trialing and active ones move to their next period and its renewal invoice is issued and charged; one period per subscription and run, and a run that leaves one still due wakes the billing process at COMMIT for the next. Returns how many subscriptions it handled.';

-- Dunning: at next_attempt_at, for each open invoice: after a final
-- decline the final action (its schedule's last day has come); else one
-- more charge (no usable payment method is a failed charge).  The
-- subscription is locked first (SKIP LOCKED), then the invoice, whose
-- next_attempt_at is checked again under the lock.  An invoice whose
-- subscription has ended meanwhile stops dunning (uncollectible).
-- Returns how many invoices were handled.
-- _run_dunning in its final form (from h-priority) here: pay_run_dunning
-- below (LANGUAGE sql) calls it.
CREATE OR REPLACE FUNCTION payments._run_dunning(p_merchant_id bigint, p_limit integer) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c record;
	s payments.subscriptions;
	inv payments.invoices;
	horizon timestamptz := payments._billing_horizon(p_merchant_id);
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	now_ timestamptz;
	pid bigint;
	n integer := 0;
BEGIN
	FOR c IN
		SELECT i.merchant_id, i.invoice_id, i.subscription_id FROM payments.invoices i
		WHERE i.status = 'open' AND i.next_attempt_at <= horizon
			AND (p_merchant_id IS NULL OR i.merchant_id = p_merchant_id)
			AND CASE WHEN clocks AND p_merchant_id IS NULL
				THEN i.next_attempt_at <= payments._billing_now(i.merchant_id) ELSE true END
		ORDER BY i.next_attempt_at
		LIMIT p_limit
	LOOP
		SELECT * INTO s FROM payments.subscriptions
		WHERE merchant_id = c.merchant_id AND subscription_id = c.subscription_id
		FOR UPDATE SKIP LOCKED;
		CONTINUE WHEN NOT FOUND;
		SELECT * INTO inv FROM payments.invoices
		WHERE merchant_id = c.merchant_id AND invoice_id = c.invoice_id
		FOR UPDATE;
		now_ := CASE WHEN clocks THEN payments._billing_now(c.merchant_id) ELSE now() END;
		CONTINUE WHEN inv.status <> 'open' OR inv.next_attempt_at IS NULL OR inv.next_attempt_at > now_;
		n := n + 1;
		IF s.status NOT IN ('trialing', 'active', 'past_due') THEN
			UPDATE payments.invoices SET status = 'uncollectible', next_attempt_at = NULL, closed_at = now_
			WHERE merchant_id = inv.merchant_id AND invoice_id = inv.invoice_id;
		ELSIF payments._decline_is_final(inv.last_failure_code) THEN
			PERFORM payments._dunning_final_action(inv.merchant_id, inv.invoice_id);
		ELSE
			pid := payments._charge_invoice(inv.merchant_id, inv.invoice_id, p_background => true);
			IF pid IS NULL THEN
				PERFORM payments._invoice_payment_failed(inv.merchant_id, inv.invoice_id, NULL,
					'no_payment_method', 'The customer has no usable payment method.');
			ELSE
				PERFORM payments._billing_event(inv.merchant_id, 'invoice.retry_attempted', pid,
					jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
						'payment_id', pid, 'attempt_count', inv.attempt_count + 1, 'reason', 'scheduled'),
					inv.correlation_id);
			END IF;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._run_dunning(bigint, integer) IS
	'Billing run (the billing process, pay_run_dunning): for at most p_limit open invoices whose next attempt is due by their merchant''s billing clock (one merchant, or NULL: all), oldest first, subscriptions locked with SKIP LOCKED: one more charge (invoice.retry_attempted), or after a final decline the final action. Returns how many invoices it handled.';

------------------------------------------------------------------------------
-- The API: billing runs, the dunning policy, invoices.
------------------------------------------------------------------------------

-- The merchants a billing run acts for: the caller's own, or all of them
-- for the extension owner or a superuser that names none (pg_cron jobs);
-- and its max_count checked.
CREATE FUNCTION payments._billing_run_scope(p_max_count integer) RETURNS bigint
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
BEGIN
	IF p_max_count IS NULL OR p_max_count NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'max_count must be between 1 and 100000'
			USING ERRCODE = '22023',
				DETAIL = format('The max_count given was %s.', coalesce(p_max_count::text, 'NULL')),
				HINT = 'Call again for more: each call handles at most max_count in one transaction.';
	END IF;
	IF (SELECT i.source FROM payments.pay_current_identity() i) = 'default' THEN
		RETURN NULL;
	END IF;
	RETURN m;
END
$$;
COMMENT ON FUNCTION payments._billing_run_scope(integer) IS
	'Internal: the merchant a billing run acts for (pay_current_merchant()), or NULL (all merchants) for the extension owner or a superuser that names none; raises 22023 unless max_count is between 1 and 100000.';

CREATE FUNCTION payments.pay_run_renewals(max_count integer DEFAULT 1000) RETURNS integer
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT payments._run_renewals(payments._billing_run_scope(max_count), max_count) $$;
COMMENT ON FUNCTION payments.pay_run_renewals(integer) IS
	'Runs the renewals that are due now (by the billing clock): at most max_count (1-100000, default 1000) subscriptions of the current merchant, or of every merchant for the extension owner or a superuser naming none (pg_cron); expiries of incomplete subscriptions, cancellations at period end, next periods and their invoices, charged through the worker. Safe to run at the same time as the worker or another run. Returns how many subscriptions it handled.';

CREATE FUNCTION payments.pay_run_dunning(max_count integer DEFAULT 1000) RETURNS integer
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT payments._run_dunning(payments._billing_run_scope(max_count), max_count) $$;
COMMENT ON FUNCTION payments.pay_run_dunning(integer) IS
	'Runs the dunning retries that are due now (by the billing clock): at most max_count (1-100000, default 1000) open invoices of the current merchant, or of every merchant for the extension owner or a superuser naming none (pg_cron); each is charged again, or given its final action after a final decline. Safe to run at the same time as the worker or another run. Returns how many invoices it handled.';

CREATE FUNCTION payments.pay_get_dunning_policy() RETURNS payments.dunning_policies
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._dunning_policy(payments.pay_current_merchant())
	$$;
COMMENT ON FUNCTION payments.pay_get_dunning_policy() IS
	'The current merchant''s dunning policy: the days after a charge''s first failure on which it is retried, and the final action (canceled or unpaid); the defaults (1, 3, 5, 7; canceled; updated_at NULL) when it has set none.';

CREATE FUNCTION payments.pay_get_invoice(invoice_id bigint) RETURNS payments.invoices
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	r payments.invoices;
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF pay_get_invoice.invoice_id IS NULL THEN
		RAISE EXCEPTION 'invoice_id is required' USING ERRCODE = '22004';
	END IF;
	SELECT * INTO r FROM payments.invoices i
	WHERE i.merchant_id = payments.pay_current_merchant() AND i.invoice_id = pay_get_invoice.invoice_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invoice % not found', pay_get_invoice.invoice_id
			USING ERRCODE = 'PT404', HINT = 'Invoice ids are per merchant; check pay_current_merchant().';
	END IF;
	RETURN r;
END
$$;
COMMENT ON FUNCTION payments.pay_get_invoice(bigint) IS
	'An invoice of the current merchant: lines, amount, status, charge attempts and the next dunning retry; an unknown id, or another merchant''s, raises PT404.';

------------------------------------------------------------------------------
-- h-amount2: sum(pay_amount) keeps a 128-bit running total (issue 12;
-- sql/src/amount.sql, src/amount_sum.c), so that an overflow is raised for
-- the final sum only, whatever the plan.  CREATE OR REPLACE keeps the
-- aggregate's oid: views and functions over sum() upgrade untouched.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_amount_sum_accum(internal, payments.pay_amount) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_combine(internal, internal) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_serialize(internal) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_deserialize(bytea, internal) RETURNS internal
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_final(internal) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_sum_accum(internal, payments.pay_amount) IS
	'sum(pay_amount) transition: adds an amount to the 128-bit running total; another currency is an error.';
COMMENT ON FUNCTION payments.pay_amount_sum_combine(internal, internal) IS
	'sum(pay_amount) combine: adds two partial totals; different currencies are an error.';
COMMENT ON FUNCTION payments.pay_amount_sum_serialize(internal) IS 'sum(pay_amount) state to bytea (parallel plans).';
COMMENT ON FUNCTION payments.pay_amount_sum_deserialize(bytea, internal) IS 'sum(pay_amount) state from bytea (parallel plans).';
COMMENT ON FUNCTION payments.pay_amount_sum_final(internal) IS
	'sum(pay_amount) result: the total as a pay_amount; out of range is an error.';

CREATE OR REPLACE AGGREGATE payments.sum(payments.pay_amount) (
	SFUNC = payments.pay_amount_sum_accum, STYPE = internal, SSPACE = 24,
	FINALFUNC = payments.pay_amount_sum_final,
	COMBINEFUNC = payments.pay_amount_sum_combine,
	SERIALFUNC = payments.pay_amount_sum_serialize,
	DESERIALFUNC = payments.pay_amount_sum_deserialize,
	PARALLEL = SAFE);

------------------------------------------------------------------------------
-- h-speed: the status trigger in C (src/status_guard.c; sql/src/status_machine.sql),
-- same checks, stamps and events, without PL/pgSQL on every row written.
-- Made once since: _correlation_id in h-free-text-bounds; _invoice_tag in
-- h-cpu (their final form).
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION payments._status_guard() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_status_guard';

------------------------------------------------------------------------------
-- h-recur: the claim tells a charge of a subscription's invoice (recurring,
-- first_recurring: card-on-file fields of renewals; sql/src/worker.sql).
-- Made once since: _claim_operations in h-account-life (its final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-priority: background charges and a cheaper renewal (issue 11;
-- sql/src/billing.sql, worker.sql): the worker claims a billing run's
-- charges after every other ready operation; an invoice is written once
-- with its first charge.
-- Made once since: _queue_invoice_charge, _charge_invoice in
-- h-period-charge-number; _run_renewals, _run_dunning in h-billing;
-- _claim_operations in h-account-life (their final form).
------------------------------------------------------------------------------

ALTER TABLE payments.operations ADD COLUMN background boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN payments.operations.background IS
	'A charge a billing run queued (a renewal or a dunning retry): the worker claims it after every other ready operation.';
DROP INDEX payments.operations_ready;
CREATE INDEX operations_ready ON payments.operations (background, next_attempt_at)
	WHERE status IN ('queued', 'unknown');

CREATE FUNCTION payments._issue_invoice(p_merchant_id bigint, p_subscription_id bigint, p_kind text,
	p_period_index integer, p_period_start timestamptz, p_period_end timestamptz,
	p_lines jsonb DEFAULT NULL, p_background boolean DEFAULT false)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	lines jsonb;
	total payments.pay_amount;
	credit payments.pay_amount;
	inv payments.invoices;
	pm payments.payment_methods;
	pid bigint;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	SELECT * INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id;
	IF p_lines IS NOT NULL THEN
		lines := p_lines;
	ELSIF p_kind IN ('first', 'renewal') THEN
		lines := jsonb_build_array(jsonb_build_object('kind', 'subscription',
			-- the wall-clock times as to_char writes them: their text
			-- (format's %s) followed the DateStyle of the session that
			-- issued the invoice, and 01/06/2031 read as 6 January or 1 June
			'description', format('%s x %s, %s to %s', s.quantity, s.unit_amount,
				to_char(p_period_start AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
				to_char(p_period_end AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS')),
			'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
			'amount', (s.unit_amount * s.quantity)::text));
	ELSE
		RAISE EXCEPTION 'a % invoice needs its lines', p_kind USING ERRCODE = '22023';
	END IF;
	IF p_kind IN ('first', 'renewal') THEN
		lines := lines || coalesce((SELECT jsonb_agg(jsonb_build_object('kind', i.kind,
				'description', i.description, 'amount', i.amount::text, 'item_id', i.item_id) ORDER BY i.item_id)
			FROM payments.invoice_items i
			WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
				AND i.invoice_id IS NULL), '[]');
	END IF;
	SELECT coalesce(sum((l ->> 'amount')::payments.pay_amount), s.unit_amount * 0) INTO total
	FROM jsonb_array_elements(lines) l;
	IF pay_currency(total) <> pay_currency(s.unit_amount) THEN
		RAISE EXCEPTION 'invoice lines must be in %', pay_currency(s.unit_amount) USING ERRCODE = '22023';
	END IF;
	credit := total * 0;
	IF pay_minor_units(total) < 0 THEN
		credit := total;
		total := total * 0;
	END IF;

	-- the first charge's payment is known before the invoice is written, so
	-- that the invoice is written once, with its first attempt
	IF pay_minor_units(total) > 0 THEN
		pm := payments._invoice_payment_method(p_merchant_id, s.customer_id, s.payment_method_id);
		IF pm.payment_method_id IS NOT NULL THEN
			pid := nextval('payments.payments_payment_id_seq');
		END IF;
	END IF;
	INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, period_index,
		period_start, period_end, amount, lines, correlation_id, payment_id, attempt_count)
	VALUES (p_merchant_id, p_subscription_id, s.customer_id, p_kind, p_period_index,
		p_period_start, p_period_end, total, lines, s.correlation_id, pid, (pid IS NOT NULL)::integer)
	ON CONFLICT (merchant_id, subscription_id, period_index) WHERE kind IN ('first', 'renewal') DO NOTHING
	RETURNING * INTO inv;
	IF NOT FOUND THEN
		RETURN inv;
	END IF;
	IF p_kind IN ('first', 'renewal') THEN
		UPDATE payments.invoice_items SET invoice_id = inv.invoice_id
		WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id AND invoice_id IS NULL;
	END IF;
	IF pay_minor_units(credit) < 0 THEN
		INSERT INTO payments.invoice_items (merchant_id, subscription_id, kind, amount, description)
		VALUES (p_merchant_id, p_subscription_id, 'credit', credit,
			format('Credit carried over from invoice %s', inv.invoice_id));
	END IF;
	IF pay_minor_units(total) = 0 THEN
		UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_
		WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
		RETURNING * INTO inv;
		PERFORM payments._subscription_invoice_paid(p_merchant_id, p_subscription_id);
	ELSIF pid IS NULL THEN
		-- a failed charge like any other: dunning (or, for a first
		-- invoice, the wait until the subscription expires)
		inv := payments._invoice_payment_failed(p_merchant_id, inv.invoice_id, NULL,
			'no_payment_method', 'The customer has no usable payment method.');
	ELSE
		PERFORM payments._queue_invoice_charge(inv, pm, pid, p_background);
	END IF;
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._issue_invoice(bigint, bigint, text, integer, timestamptz, timestamptz, jsonb, boolean) IS
	'Internal: issues a subscription''s invoice (kind first or renewal: one per period, an empty row when the period was invoiced already; proration: the lines given) with its pending prorations and credits, and makes its first charge (p_background: a billing run''s; an amount of zero is paid at once and activates the subscription; no usable payment method is a failed charge: dunning). The caller holds the subscription''s row lock.';

-- the audit BRIN index: no autosummarize (sql/src/audit.sql)
ALTER INDEX payments.audit_log_logged_at_txid RESET (autosummarize);

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

------------------------------------------------------------------------------
-- h-cpu: less CPU per purchase (issue 12): pay_purchase and pay_authorize in
-- PL/pgSQL (a SQL function was parsed and planned again at every call), the
-- request hash only for an idempotency key, the invoice tag kept in backend
-- memory (src/invoice_tag.c); sql/src/payment_api.sql, secrets.sql.  What
-- each backend keeps of the tenancy tables comes with their triggers in the
-- h-tenancy block below.
-- Made once since: _create_payment in h-purchase-scope; pay_purchase,
-- pay_authorize in h-cust (their final form).
------------------------------------------------------------------------------

-- In C (src/invoice_tag.c): every payment, refund and renewal reads it,
-- and each backend keeps it until the table changes (the trigger below).
CREATE OR REPLACE FUNCTION payments._invoice_tag() RETURNS text
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'pay_invoice_tag';

------------------------------------------------------------------------------
-- h-plans: the worker plans its claim and record statements once (issue 12;
-- sql/src/worker.sql, gateway_admin.sql).  Planned at every call, they cost
-- the worker more than running them in the small rounds of a steady load;
-- generic plans are kept, planned again when a table's statistics change
-- and at the worker's housekeeping.  The two SQL functions it called every
-- round become PL/pgSQL, which keeps their plans.  _refresh_statistics
-- analyzes all the young tables it has time for.
------------------------------------------------------------------------------
-- The credentials checks asked for: claimed as "sending" before anything is
-- sent.  A check left "sending" by a worker that stopped is sent again (it
-- changes nothing at the gateway).
CREATE OR REPLACE FUNCTION payments._claim_verifications(p_limit integer)
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

CREATE OR REPLACE FUNCTION payments._record_exchanges(
	p_merchant_id bigint[], p_operation_id bigint[], p_attempt integer[], p_request_type text[],
	p_started_at timestamptz[], p_finished_at timestamptz[], p_http_status integer[],
	p_transport_error text[], p_outcome text[], p_request_masked text[], p_response_masked text[],
	p_correlation_id text[])
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	INSERT INTO payments.gateway_exchanges (merchant_id, operation_id, attempt, request_type,
		started_at, finished_at, duration_ms, http_status, transport_error, outcome,
		request_masked, response_masked, correlation_id)
	SELECT x.merchant_id, x.operation_id, x.attempt, x.request_type, x.started_at, x.finished_at,
		extract(epoch FROM x.finished_at - x.started_at) * 1000, nullif(x.http_status, 0),
		x.transport_error, x.outcome, x.request_masked, x.response_masked, x.correlation_id
	FROM unnest(p_merchant_id, p_operation_id, p_attempt, p_request_type, p_started_at,
		p_finished_at, p_http_status, p_transport_error, p_outcome, p_request_masked,
		p_response_masked, p_correlation_id) AS x(merchant_id, operation_id, attempt, request_type,
		started_at, finished_at, http_status, transport_error, outcome, request_masked,
		response_masked, correlation_id);
END
$$;

-- The worker analyzes every young table a call's 50 ms allow, not one per
-- call (a new installation's tables pass 500 rows together).
CREATE OR REPLACE FUNCTION payments._refresh_statistics() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET default_statistics_target = 10
	SET lock_timeout = '20ms'
	AS $$
DECLARE
	t record;
	started timestamptz := clock_timestamp();
	analyzed integer := 0;
BEGIN
	FOR t IN
		SELECT n.nspname, c.relname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
			AND d.refclassid = 'pg_extension'::regclass
		JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'payments'
		WHERE c.relkind = 'r' AND c.reltuples < 500 AND pg_stat_get_live_tuples(c.oid) >= 500
		ORDER BY pg_stat_get_live_tuples(c.oid)
	LOOP
		EXIT WHEN clock_timestamp() - started > interval '50 ms';
		BEGIN
			EXECUTE format('ANALYZE %I.%I', t.nspname, t.relname);
			analyzed := analyzed + 1;
		EXCEPTION
			WHEN lock_not_available OR undefined_table THEN
				NULL;			-- busy or just dropped: next round
		END;
	END LOOP;
	RETURN analyzed;
END
$$;
COMMENT ON FUNCTION payments._refresh_statistics() IS
	'Worker: analyzes the extension''s tables that hold 500 rows or more while their statistics say they are nearly empty (as many as 50 ms allow), so that no plan cached on a near-empty table keeps scanning a whole merchant for one row. Returns how many it analyzed.';

------------------------------------------------------------------------------
-- h-row-locks: a row a caller holds locked no longer stops the worker's
-- housekeeping (sql/src/worker.sql): parking skips it until the next minute
-- (pay_run_expiry_notices, new in this version, skips locked rows too, and
-- the worker runs each housekeeping step in a transaction of its own).  The
-- API locks the rows it changes FOR NO KEY UPDATE (payment_api.sql and the
-- helpers new in this version): a foreign-key check of a billing run or of
-- the worker no longer waits for a caller's open transaction.
-- Made once since: _park_unconfigured in h-worker-chores (its final form).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments._lock_payment(p_payment_id bigint) RETURNS payments.payments
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments;
BEGIN
	-- Locked by an update, not a SELECT ... FOR UPDATE.  What other
	-- captures, voids and refunds of the payment committed is read after
	-- this lock, and at REPEATABLE READ or SERIALIZABLE the snapshot may
	-- predate them: two refunds of the whole amount both passed and were
	-- both sent (SSI sees nothing when the other session is at READ
	-- COMMITTED).  Each of these calls now writes the row, so a snapshot
	-- older than another's committed call fails on it with 40001, and READ
	-- COMMITTED waits and then reads the other's operations.  The update
	-- changes no key, so its lock is NO KEY UPDATE: another session's
	-- foreign-key check (a billing run's invoice, a row the worker adds)
	-- does not wait for this caller's transaction.  (status_guard stamps
	-- updated_at.)
	UPDATE payments.payments x SET updated_at = clock_timestamp()
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.payment_id = p_payment_id
	RETURNING * INTO p;
	IF NOT FOUND THEN
		PERFORM payments._not_found(p_payment_id);
	END IF;
	RETURN p;
END
$$;

------------------------------------------------------------------------------
-- h-profile-owner: profile ids of another merchant's customer on the same
-- gateway account are refused (payment_api.sql, customers.sql;
-- _create_payment above calls it).
-- Made once since: _check_profile_owner in h-profile-ids (its final form).
------------------------------------------------------------------------------
CREATE INDEX customers_profile ON payments.customers (customer_profile_id)
	WHERE customer_profile_id IS NOT NULL;

------------------------------------------------------------------------------
-- h-temp-path: pg_temp last in every function's search_path.  Not listed,
-- the caller's temporary schema is searched first for types and tables: a
-- temporary domain named text, say, ran its CHECK as the owner inside a
-- SECURITY DEFINER function.  The functions made above say so already;
-- this mends those of 0.1.0 that 0.2.0 does not replace.
------------------------------------------------------------------------------
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace
			AND 'search_path=pg_catalog, payments' = ANY (p.proconfig)
	LOOP
		EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, payments, pg_temp', f);
	END LOOP;
END
$$;

------------------------------------------------------------------------------
-- h-fingerprint: a card's fingerprint is learned from the worker, with the
-- gateway's answer about the card, never from the caller's call (worker.sql,
-- payment_methods.sql, payment_api.sql).  pay_purchase, pay_authorize and
-- pay_save_payment_method returned the fingerprint of any card passed, even
-- in a transaction rolled back: with a stored payment's first six and last
-- four, its card number was found in minutes.  The idempotency hash takes
-- the brand and last four instead of the fingerprint (a key reused with a
-- tried number answered the same question).
-- Made once since: _record_final_results in h-period-charge-number;
-- _record_result in h-capture-expired; _record_method_result in
-- h-account-life; _create_payment in h-purchase-scope;
-- pay_save_payment_method in h-account-customers (their final form).
------------------------------------------------------------------------------
DROP FUNCTION payments._record_final_results(bigint[], bigint[], text[], integer[], integer[],
	text[], text[], text[], text[], text[], text[], text[]);

DROP FUNCTION payments._record_result(bigint, bigint, text, integer, integer, text, text, text,
	text, text, timestamptz, text, text);

------------------------------------------------------------------------------
-- h-customer-locks: a customer's deletion or erasure and what is made for
-- the customer meanwhile (customers.sql, payment_methods.sql,
-- customer_privacy.sql, subscriptions.sql).  Payments and subscriptions
-- lock the customer FOR KEY SHARE; deletion and erasure lock it FOR UPDATE,
-- at READ COMMITTED only; setting a default locks it first, as saving does.
-- Made once since: pay_delete_customer in h-account-customers;
-- _stored_method_for_payment in h-account-life;
-- pay_set_default_payment_method in h-purchase-default;
-- pay_create_subscription in h-sub-key-order (their final form).
------------------------------------------------------------------------------
-- A customer to delete or erase, locked.  Both then read what else the
-- customer has (pending methods, subscriptions, payments) to end or erase
-- it.  A snapshot older than the lock would miss what another session
-- committed meanwhile: a method saved, a subscription or a payment made
-- (those lock the customer too, and an older snapshot does not see it).  A
-- deleted customer then kept an active card on file and a running
-- subscription, and an erased one its billing details on a payment.  So
-- READ COMMITTED only, where each statement after the lock sees them, and
-- FOR UPDATE: it waits for the KEY SHARE of a payment or subscription
-- being made (_share_customer) as for a method being saved.
CREATE FUNCTION payments._lock_customer_to_end(p_customer_id bigint, p_action text)
	RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'a customer cannot be %d in a % transaction', p_action,
				upper(current_setting('transaction_isolation'))
			USING ERRCODE = '25000',
				DETAIL = 'A payment method, subscription or payment of the customer that another session commits meanwhile would not be seen.',
				HINT = 'Run it at READ COMMITTED (the default).';
	END IF;
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.customer_id = p_customer_id
	FOR UPDATE;
	RETURN payments._find_customer(p_customer_id);
END
$$;
COMMENT ON FUNCTION payments._lock_customer_to_end(bigint, text) IS
	'Internal: locks a customer of the current merchant FOR UPDATE to delete or erase it (p_action); refused (25000) outside READ COMMITTED.';

REVOKE ALL ON FUNCTION payments._lock_customer_to_end(bigint, text) FROM PUBLIC;

-- A customer a payment or a subscription is made for, locked FOR KEY
-- SHARE, as a foreign key would: it waits for no other payment,
-- subscription or update of the customer, only for a deletion or erasure
-- (FOR UPDATE, _lock_customer_to_end), which in turn waits for the
-- caller's transaction and then sees what it made; or the caller waits for
-- it and then finds the customer deleted (22Y20).
CREATE FUNCTION payments._share_customer(p_customer_id bigint) RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.customer_id = p_customer_id
	FOR KEY SHARE;
	RETURN payments._find_customer(p_customer_id, false, false);
END
$$;
COMMENT ON FUNCTION payments._share_customer(bigint) IS
	'Internal: a customer of the current merchant, locked FOR KEY SHARE, to make a payment or a subscription for; PT404, or 22Y20 for a deleted one.';

REVOKE ALL ON FUNCTION payments._share_customer(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION payments.pay_erase_customer(customer_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._lock_customer_to_end(pay_erase_customer.customer_id, 'erase');
	idem payments.idempotency_keys := payments._idempotency_claim(c.merchant_id,
		pay_erase_customer.idempotency_key, 'erase_customer', md5(jsonb_build_array(c.customer_id)::text));
	corr text := payments._correlation_id(pay_erase_customer.correlation_id);
	result payments.customers;
	kept jsonb;
BEGIN
	IF idem.request_kind IS NULL AND c.erased_at IS NULL THEN
		-- what is at another gateway account than the one configured now
		-- stays there: nothing can reach it from here (the credentials
		-- of one account are kept).  Erasure is never refused for it: it
		-- completes here and says what it left (customer.erased, WARNING)
		kept := payments._customer_profiles_elsewhere(c);
		-- the gateway's profile holds the email and billing address: it goes too
		IF c.status <> 'deleted' THEN
			PERFORM payments._end_customer_subscriptions(c);
			PERFORM payments._delete_customer_profile(c, NULL, corr);
		ELSIF c.customer_profile_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id
					AND o.kind = 'delete_customer' AND o.status IN ('queued', 'sending', 'unknown', 'succeeded')) THEN
			-- deleted earlier, but its profile was kept at the gateway (refused,
			-- or out of attempts): the erasure deletes it now
			PERFORM payments._new_method_operation(c.merchant_id, 'delete_customer', NULL, c.customer_id,
				NULL, NULL, corr);
		END IF;
		-- its payments made without customer_id under its email (a guest
		-- checkout's customer object) become its own before the email goes:
		-- erased below with the others, and still its payments afterwards
		WITH g AS (
			UPDATE payments.payments p SET customer_id = c.customer_id
			WHERE p.merchant_id = c.merchant_id AND p.customer_id IS NULL
				AND p.payment_id IN (SELECT y.payment_id FROM payments._customer_payments(c) y
					WHERE y.customer_id IS NULL)
				-- not while another customer of the merchant has that email:
				-- the purchase is as much that one's (the last one erased takes it)
				AND NOT EXISTS (SELECT 1 FROM payments.customers o
					WHERE o.merchant_id = c.merchant_id AND o.customer_id <> c.customer_id
						AND o.email IS NOT NULL AND lower(o.email) = lower(c.email))
			RETURNING p.payment_id)
		UPDATE payments.idempotency_keys k SET customer_id = c.customer_id
		WHERE k.merchant_id = c.merchant_id AND k.customer_id IS NULL
			AND k.payment_id IN (SELECT g.payment_id FROM g);
		UPDATE payments.customers x SET status = 'deleted', email = NULL, name = NULL,
			external_ref = NULL, billing = '{}', metadata = '{}',
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key),
			deleted_at = coalesce(x.deleted_at, clock_timestamp()), erased_at = clock_timestamp(),
			updated_at = clock_timestamp()
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
		-- payments keep amounts, dates, card brand and last four, gateway ids;
		-- the billing details sent with them, the card fingerprint and what
		-- the merchant wrote about them (description, order_ref, metadata)
		-- go, and its idempotency key is kept as a digest (_erased_key: an
		-- application may have made it of an email or an order's text).
		-- An invoice's charge keeps the description and metadata the
		-- extension wrote (the subscription's and invoice's ids only).
		UPDATE payments.payments p SET customer = '{}', card_fingerprint = NULL,
			idempotency_key = payments._erased_key(p.merchant_id, p.idempotency_key),
			description = CASE WHEN p.invoice_id IS NULL THEN NULL ELSE p.description END,
			order_ref = NULL,
			metadata = CASE WHEN p.invoice_id IS NULL THEN '{}' ELSE p.metadata END
		WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id;
		-- a refund's reason, and the copies of the metadata in the payments' events
		UPDATE payments.operations o SET reason = NULL
		WHERE o.merchant_id = c.merchant_id AND o.reason IS NOT NULL
			AND o.payment_id IN (SELECT p.payment_id FROM payments.payments p
				WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id);
		-- the idempotency keys of its operations (a refund's, a method's), as digests
		UPDATE payments.operations o SET idempotency_key = payments._erased_key(o.merchant_id, o.idempotency_key)
		WHERE o.merchant_id = c.merchant_id AND o.idempotency_key IS NOT NULL
			AND o.idempotency_key NOT LIKE 'erased:%'
			AND (o.customer_id = c.customer_id OR o.payment_id IN (SELECT p.payment_id FROM payments.payments p
				WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id));
		UPDATE payments.events e SET data = jsonb_set(e.data, '{metadata}', p.metadata)
		FROM payments.payments p
		WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id
			AND e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id
			AND e.event_type LIKE 'payment.%' AND e.data ? 'metadata' AND e.data -> 'metadata' <> p.metadata;
		UPDATE payments.payment_methods x SET card_fingerprint = NULL,
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key)
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
		-- subscriptions keep their terms and periods; their metadata may name the person
		UPDATE payments.subscriptions x SET metadata = '{}',
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key)
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND (x.metadata <> '{}' OR x.idempotency_key IS NOT NULL);
		-- the masked requests carried the name, email and address
		UPDATE payments.gateway_exchanges g SET request_masked = '(erased)', response_masked = NULL
		WHERE g.merchant_id = c.merchant_id AND g.operation_id IN (SELECT o.operation_id
			FROM payments.operations o WHERE o.merchant_id = c.merchant_id AND (o.customer_id = c.customer_id
				OR o.payment_id IN (SELECT p.payment_id FROM payments.payments p
					WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id)));
		-- the keys of its requests keep no digest of their arguments (of its
		-- email, name, billing details, metadata): a repeat returns what the
		-- request made, whatever the arguments; nor the key as given, but a
		-- digest of it, which a repeat under the key still finds
		-- (payments._idempotency_claim), so that it never charges again
		UPDATE payments.idempotency_keys k SET request_hash = NULL,
			idempotency_key = payments._erased_key(k.merchant_id, k.idempotency_key)
		WHERE k.merchant_id = c.merchant_id AND k.customer_id = c.customer_id
			AND k.idempotency_key NOT LIKE 'erased:%';
		UPDATE payments.events e SET data = e.data - 'external_ref'
		WHERE e.merchant_id = c.merchant_id AND e.event_type LIKE 'customer.%'
			AND (e.data ->> 'customer_id') = c.customer_id::text;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (c.merchant_id, 'customer.erased', jsonb_build_object('customer_id', c.customer_id,
			'gateway_profiles_kept', kept), corr);
		IF kept <> '[]' THEN
			RAISE WARNING 'customer % was erased, but its gateway profiles at another gateway account than the one configured now were not deleted', c.customer_id
				USING ERRCODE = '01000',
					DETAIL = format('%s. The credentials of that account are no longer configured, so nothing can be sent there; the customer.erased event lists them (gateway_profiles_kept).',
						(SELECT string_agg(format('Gateway account %s keeps customer profile %s%s', k ->> 'gateway_account',
								k ->> 'customer_profile_id',
								CASE WHEN k ->> 'deletion' = 'held' THEN ' (its deletion is held as a dead letter)'
									ELSE ' (nothing queued)' END), '; ')
							FROM jsonb_array_elements(kept) k)),
					HINT = 'Delete them in that account''s Merchant Interface (customer profiles, by id), or configure that account again (pay_configure_gateway) and retry a held deletion (pay_retry_dead_letter).';
		END IF;
	END IF;
	SELECT * INTO result FROM payments.customers x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_erase_customer(bigint, text, text) IS
	'Erases a customer''s personal data: email, name, external_ref, billing and metadata; of its payments (payments made without customer_id whose customer object holds its email become its own first) the billing details sent, the card fingerprint, description, order_ref and metadata (an invoice charge keeps the description and metadata the extension wrote), their refunds'' reasons and the copies of their metadata in their events; card fingerprints, its subscriptions'' metadata, the masked gateway requests and replies of its operations, the digests of the arguments of its idempotency keys (a repeat under one returns what the request made, whatever the arguments), the idempotency keys of its requests and objects (kept as digests, which a repeat under the original key still finds), and its profile at the gateway (deleted by the worker). Profiles at another gateway account than the one configured now cannot be deleted from here: erasure completes all the same, and lists them in its customer.erased event (gateway_profiles_kept) and a WARNING. Kept, as the law requires: payments with amounts, dates, status, card brand and last four, invoice numbers, decline codes and reasons, gateway transaction and profile ids, and their operations. The customer stays as a deleted row with erased_at; the audit log records the change (without the personal values) and a customer.erased event is written.';

------------------------------------------------------------------------------
-- h-endpoint-circuits: the worker keeps a circuit breaker per gateway
-- connection (endpoint, CA file, timeout), leaves the operations of
-- merchants whose connection's circuit is open out of its claims, and parks
-- them until its probe (worker.sql; src/circuit_breaker.c).  One breaker
-- for all let one merchant's dead endpoint hold every merchant's payments
-- back.
-- Made once since: _claim_operations in h-account-life (its final form).
------------------------------------------------------------------------------
-- A merchant's gateway connection, as the worker's circuit breakers tell
-- them apart: the endpoint, the CA file and the timeout (one merchant's own
-- CA file or timeout must not trip the breaker of everyone on the URL).
CREATE FUNCTION payments._gateway_connection(p_endpoint_url text, p_ca_file text, p_timeout_ms integer)
	RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT p_endpoint_url || E'\n' || coalesce(p_ca_file, '') || E'\n' || p_timeout_ms $$;
COMMENT ON FUNCTION payments._gateway_connection(text, text, integer) IS
	'Internal: the key of a gateway connection (endpoint URL, CA file, timeout) for the worker''s circuit breakers.';

-- The due operations of the merchants on a gateway connection whose
-- circuit just opened in the worker wait until it may be probed (p_until):
-- claims leave them out meanwhile, and left due they were read by every
-- claim (its index is by due time, not by merchant), so that a dead
-- endpoint's backlog slowed everyone's claims.  Rows a caller holds are
-- skipped.
CREATE FUNCTION payments._park_connection(p_connection text, p_until timestamptz) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.operations o SET next_attempt_at = p_until
	FROM (SELECT x.merchant_id, x.operation_id FROM payments.operations x
		WHERE x.status IN ('queued', 'unknown') AND x.next_attempt_at < p_until
			AND x.merchant_id = ANY (ARRAY(SELECT g.merchant_id FROM payments.gateway_config g
				WHERE payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms) = p_connection))
		FOR UPDATE SKIP LOCKED) r
	WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._park_connection(text, timestamptz) IS
	'Worker: the due operations of the merchants on this gateway connection (_gateway_connection) wait until p_until (its circuit opened). Returns how many.';
REVOKE ALL ON FUNCTION payments._gateway_connection(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION payments._park_connection(text, timestamptz) FROM PUBLIC;

------------------------------------------------------------------------------
-- h-one-insert: a purchase or authorization writes its payment, operation
-- and sealed card in one statement, and asks for a stored method only when
-- given a customer or a method (issue 12; sql/src/payment_api.sql).
-- Made once since: _create_payment in h-purchase-scope (its final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-default-conflict: a default payment method set or saved at REPEATABLE
-- READ or SERIALIZABLE against a default another session committed after
-- the snapshot fails with 40001, not with 23505 on an internal index
-- (sql/src/payment_methods.sql).
-- Made once since: pay_save_payment_method in h-account-customers;
-- pay_set_default_payment_method in h-purchase-default (their final form).

-- A unique violation of payment_methods_one_default while a method is made
-- the default.  At REPEATABLE READ or SERIALIZABLE it is a default that
-- another session committed after this transaction's snapshot: the UPDATE
-- that clears the old default did not see it.  That is a serialization
-- failure, to be retried, not a duplicate the caller made (READ COMMITTED
-- never meets it: each statement after the customer's lock sees the other
-- session's default).  Any other constraint: nothing here, the caller
-- raises the error again as it was.
CREATE FUNCTION payments._default_conflict(p_constraint text, p_customer_id bigint) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF p_constraint = 'payment_methods_one_default' THEN
		RAISE EXCEPTION 'could not make a payment method the default of customer %: another session changed the customer''s default after this transaction began',
				p_customer_id
			USING ERRCODE = '40001',
				DETAIL = format('This %s transaction''s snapshot does not show the default that session made.',
					upper(current_setting('transaction_isolation'))),
				HINT = 'Retry the transaction.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._default_conflict(text, bigint) IS
	'Internal: raises 40001 for a unique violation of payment_methods_one_default (a default another session committed after the snapshot); returns for any other constraint.';

------------------------------------------------------------------------------
-- h-refund-paths: refunds that reach the customer over days
-- (sql/src/worker.sql, status_machine.sql; src/gateway.c, status_guard.c):
-- a refund decided as a void whose capture settled first goes out as a
-- refund ('refund' decision), a refund is decided again after a restart
-- (never_sent once decided), and a further partial refund writes its
-- payment event.

-- A refund's decision, taken by the worker from the gateway's state of the
-- payment's transaction: 'void' (an unsettled capture refunded in full goes
-- out as a void: recorded first, then sent), 'wait' (a partial refund of an
-- unsettled capture waits for settlement; released by _record_settlements,
-- or asked about again after six hours by _recheck_waiting_refunds in case
-- the batch lists never show it), or 'refund' (a refund decided as a void
-- found the capture settled before the void went through: it goes out as a
-- refund after all, decided again).  Waiting is not an attempt: the count
-- starts again.  Nothing of the refund can have taken effect at the gateway
-- by then (a capture is refunded only once settled, and a void of a
-- settled capture does nothing), so the operation counts as never sent:
-- its duplicate window starts with its next request.
CREATE OR REPLACE FUNCTION payments._record_refund_decision(p_merchant_id bigint, p_operation_id bigint,
	p_decision text, p_note text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	settled boolean;
BEGIN
	IF p_decision IS NULL OR p_decision NOT IN ('void', 'wait', 'refund') THEN
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
	UPDATE payments.operations SET
		status = CASE WHEN p_decision = 'wait' AND NOT settled THEN 'waiting_settlement' ELSE 'queued' END,
		via_void = p_decision = 'void',
		attempts = CASE WHEN p_decision = 'wait' THEN 0 ELSE o.attempts END,
		next_attempt_at = CASE WHEN p_decision = 'wait' THEN now() + interval '6 hours' ELSE now() END,
		last_error = p_note,
		never_sent = true,
		first_sent_at = NULL
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
END
$$;
COMMENT ON FUNCTION payments._record_refund_decision(bigint, bigint, text, text) IS
	'Worker: records how a refund goes out, decided from the gateway''s state of the capture: as a void (void, queued again), after settlement (wait, waiting_settlement), or as a refund after all when its void found the capture settled (refund, queued again).';

COMMENT ON FUNCTION payments._status_guard() IS
	'Trigger: refuses status transitions not listed in payments.status_transitions and writes an event for every status change (and for a payment whose amount_refunded changes with its status).';

------------------------------------------------------------------------------
-- h-audit-actor: an audit row goes to the changed row's merchant only if
-- the role that acted may act for it, else to the role's own merchant (a
-- setting or claim it may not use no longer sends it to merchant 1), and
-- app_user is the JWT subject only for a declared PostgREST role
-- (src/audit.c, src/tenancy.c; sql/src/audit.sql).

COMMENT ON COLUMN payments.audit_log.merchant_id IS 'The changed row''s merchant_id when the role that acted may act for that merchant (bound to it, acting for every merchant, or the change came from the owner''s code: the extension''s functions, the worker), else the merchant the role acts for (pay_current_merchant(), a setting or claim it may not use ignored). Where none is decided the change is refused (42501).';
COMMENT ON COLUMN payments.audit_log.app_user IS 'The application''s user: the "sub" claim of request.jwt.claims, only for a role declared with pay_declare_postgrest_role() (NOLOGIN: PostgREST set the claims); else NULL, as any session can set the claims. The digits of a card number in it masked (X), unless it is exactly a UUID.';

------------------------------------------------------------------------------
-- h-void-captured: a void leaves nothing captured (sql/src/worker.sql).
-- Made once since: _record_result in h-capture-expired (its final form).

------------------------------------------------------------------------------
-- h-merchant-turns: merchants take turns in the worker's claim (one
-- merchant's burst held up everyone's payments until it drained); the
-- ready index is by merchant within each kind (sql/src/worker.sql,
-- billing.sql).
-- Made once since: _claim_operations in h-account-life (its final form).

DROP INDEX payments.operations_ready;
CREATE INDEX operations_ready ON payments.operations (background, merchant_id, next_attempt_at)
	WHERE status IN ('queued', 'unknown');

------------------------------------------------------------------------------
-- h-profile-ids: on a gateway account shared by merchants, raw profile ids
-- only of the merchant's own customers, one answer for any other id
-- (sql/src/payment_api.sql).

-- A customer profile given by its ids rather than a stored method's.
-- Merchants of this installation on one gateway account (the same login
-- at the same endpoint) share the gateway's profiles: a profile that is
-- another such merchant's customer's is refused (its saved card was
-- charged by its ids).  Profiles made outside the extension are the
-- account's, whoever shares it; with an account of its own, the gateway
-- refuses any profile not of that account.
CREATE OR REPLACE FUNCTION payments._check_profile_owner(p_merchant_id bigint, p_customer_profile_id text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.gateway_config mine
			JOIN payments.gateway_config theirs ON theirs.api_login_id = mine.api_login_id
				AND theirs.endpoint_url = mine.endpoint_url AND theirs.merchant_id <> mine.merchant_id
			WHERE mine.merchant_id = p_merchant_id)
		AND NOT EXISTS (SELECT 1 FROM payments.customers c
			WHERE c.customer_profile_id = p_customer_profile_id AND c.merchant_id = p_merchant_id) THEN
		RAISE EXCEPTION 'customer profile not found'
			USING ERRCODE = 'PT404',
				DETAIL = 'The merchant shares its gateway account with other merchants: only the profiles of its own customers can be charged by their ids.',
				HINT = 'Charge a stored payment method of one of this merchant''s customers (customer_id or payment_method_id).';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_profile_owner(bigint, text) IS
	'Internal: raises PT404 for profile ids given to pay_purchase or pay_authorize that are not of this merchant''s own customers when its gateway account (login and endpoint) is shared with other merchants of the installation.';

------------------------------------------------------------------------------
-- h-key-bounds: a key made with an API key is never broader than that key
-- (scopes, expiry, rate limit, burst), is revoked with it (_api_key_state,
-- api_key_revocations) and expires no later (trigger
-- api_keys_follow_creator); an admin key rotates only itself
-- and the keys it made; at most 100 keys of a merchant neither revoked nor
-- expired; the scope customers for the functions that change customers
-- and payment methods (sql/src/api_keys.sql; src/tenancy.c, api_keys.c:
-- a key with a JWT of another merchant is refused).  _apply_api_scopes in
-- the h-tenancy block below sets the new scopes on the functions.
-- Made once since: _check_api_key_scopes in h-free-text-bounds (its final
-- form).

ALTER TABLE payments.api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE payments.api_keys ADD CONSTRAINT api_keys_scopes_check CHECK (cardinality(scopes) BETWEEN 1 AND 5
		AND scopes <@ ARRAY['read', 'payments', 'refunds', 'customers', 'admin'] AND array_position(scopes, NULL) IS NULL);
-- the keys a key created (revoked with it)
CREATE INDEX api_keys_created_by_key ON payments.api_keys (merchant_id, created_by_key)
	WHERE created_by_key IS NOT NULL;
COMMENT ON TABLE payments.api_keys IS
	'Merchant API keys (pay_create_api_key): scopes (read, payments, refunds, customers, admin), expiry, rotation with an overlap (previous_hash until previous_valid_until), per-key rate limits (NULL: the settings payments.api_key_rate_limit and payments.api_key_burst). A key made by a key (created_by_key) is never broader than that key and is revoked with it. secret_hash is the SHA-256 of the key, which is never stored. Its revocation is in payments.api_key_revocations, its last use in payments.api_key_uses. Owner only.';
COMMENT ON COLUMN payments.api_keys.created_by_key IS 'The admin API key the key was created with, if any: the key counts as revoked when that one is (_api_key_state), and expires no later (_api_keys_follow_creator).';

-- How many keys a merchant may have that are neither revoked nor expired.
CREATE FUNCTION payments._api_key_cap() RETURNS integer
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT 100 $$;
COMMENT ON FUNCTION payments._api_key_cap() IS
	'Internal: the most API keys a merchant may have that are neither revoked nor expired (100); pay_create_api_key refuses another (PT409).';

-- A key's rate limit or burst as it applies: its own, else the setting.
CREATE FUNCTION payments._api_key_limit(own integer, setting text) RETURNS integer
	LANGUAGE sql STABLE
	AS $$ SELECT coalesce(own, current_setting(setting)::integer) $$;
COMMENT ON FUNCTION payments._api_key_limit(integer, text) IS
	'Internal: a key''s rate_limit or burst as it applies now (its own, else the setting payments.api_key_rate_limit or payments.api_key_burst).';

-- pay_create_api_key, bounded by the key that makes it: in h-free-text below,
-- which changes it too and carries both.

COMMENT ON FUNCTION payments.pay_revoke_api_key(bigint) IS
	'Revokes an API key at once (also its previous secret during a rotation''s overlap), and with it the keys it made and theirs (created_by_key); a row in payments.api_key_revocations, so it waits for no transaction that uses or changes the key. False when it was revoked already (also with a key up its chain). PT404 for a key the caller may not manage. Same callers as pay_create_api_key.';

-- A key made with a key expires no later than it (whoever changes it: the
-- owner in the table).  Each changed key's own trigger carries it further
-- down.  (Its revocation is not copied down: _api_key_state reads it up
-- the chain.)
CREATE FUNCTION payments._api_keys_follow_creator() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	UPDATE payments.api_keys a SET expires_at = NEW.expires_at
	WHERE a.merchant_id = NEW.merchant_id AND a.created_by_key = NEW.key_id
		AND NEW.expires_at IS NOT NULL AND (a.expires_at IS NULL OR a.expires_at > NEW.expires_at);
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._api_keys_follow_creator() IS
	'Trigger: the keys a key made (created_by_key) expire no later than it.';
CREATE TRIGGER api_keys_follow_creator AFTER UPDATE OF expires_at ON payments.api_keys
	FOR EACH ROW WHEN (NEW.expires_at IS DISTINCT FROM OLD.expires_at)
	EXECUTE FUNCTION payments._api_keys_follow_creator();
COMMENT ON TRIGGER api_keys_follow_creator ON payments.api_keys IS
	'The keys a key made expire no later than it (payments._api_keys_follow_creator).';

CREATE OR REPLACE FUNCTION payments.pay_rotate_api_key(key_id bigint, overlap interval DEFAULT '1 hour')
	RETURNS payments.pay_api_key_secret
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	k payments.api_keys := payments._lock_api_key(pay_rotate_api_key.key_id, true);
	who record := payments.pay_current_identity();
	secret record;
	result payments.pay_api_key_secret;
BEGIN
	IF overlap IS NULL OR overlap < interval '0' OR overlap > interval '30 days' THEN
		RAISE EXCEPTION 'overlap must be between 0 and 30 days' USING ERRCODE = '22023';
	END IF;
	IF (SELECT s.revoked_at FROM payments._api_key_state(k.merchant_id, k.key_id) s) IS NOT NULL THEN
		RAISE EXCEPTION 'API key % is revoked', k.key_id USING ERRCODE = '22Y20',
			HINT = 'Create a new key with payments.pay_create_api_key().';
	END IF;
	-- a key hands out the secret of no key it could not have made: only its
	-- own, and those of the keys it made (revoked with it)
	IF who.key_id IS NOT NULL AND k.key_id <> who.key_id::bigint AND NOT EXISTS (
		WITH RECURSIVE up AS (
			SELECT a.created_by_key FROM payments.api_keys a
			WHERE a.merchant_id = k.merchant_id AND a.key_id = k.key_id
			UNION
			SELECT a.created_by_key FROM payments.api_keys a JOIN up ON a.key_id = up.created_by_key
			WHERE a.merchant_id = k.merchant_id)
		SELECT 1 FROM up WHERE up.created_by_key = who.key_id::bigint) THEN
		RAISE EXCEPTION 'API key % may not rotate API key %', who.key_id, k.key_id USING ERRCODE = 'PT403',
			DETAIL = 'A key rotates itself and the keys made with it, not other keys.',
			HINT = 'The extension owner, or the key that made it, rotates it.';
	END IF;
	secret := payments._api_key_secret(k.key_id);
	-- (the overlap counted in UTC: '1 day' is 24 hours whatever the caller's
	-- TimeZone, not 23 or 25 across a daylight-saving change)
	UPDATE payments.api_keys a SET previous_hash = a.secret_hash,
		previous_valid_until = payments._utc_plus(now(), overlap),
		secret_hash = secret.secret_hash, rotated_at = now()
	WHERE a.merchant_id = k.merchant_id AND a.key_id = k.key_id;
	result := ROW(k.key_id, k.merchant_id, secret.api_key, k.scopes, k.expires_at, payments._utc_plus(now(), overlap));
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_rotate_api_key(bigint, interval) IS
	'Gives an API key a new secret and returns it, this once; the old secret keeps working until now() + overlap (default 1 hour, 0 to 30 days), then only the new one does. Same key id, scopes and expiry. Same callers as pay_create_api_key, but an admin key rotates only itself and the keys made with it (PT403).';

CREATE OR REPLACE FUNCTION payments._api_function_scope(f name) RETURNS text
	LANGUAGE sql IMMUTABLE
	AS $$
	SELECT CASE f
		WHEN 'pay_get_payment' THEN 'read'
		WHEN 'pay_payment_operations' THEN 'read'
		WHEN 'pay_list_payments' THEN 'read'
		WHEN 'pay_wait' THEN 'read'
		WHEN 'pay_purchase' THEN 'payments'
		WHEN 'pay_authorize' THEN 'payments'
		WHEN 'pay_capture' THEN 'payments'
		WHEN 'pay_void' THEN 'payments'
		WHEN 'pay_refund' THEN 'refunds'
		WHEN 'pay_get_customer' THEN 'read'
		WHEN 'pay_find_customers' THEN 'read'
		WHEN 'pay_get_payment_method' THEN 'read'
		WHEN 'pay_list_payment_methods' THEN 'read'
		WHEN 'pay_wait_payment_method' THEN 'read'
		WHEN 'pay_expiring_payment_methods' THEN 'read'
		-- customers and payment methods: they return the customer's data
		-- (email, billing) and the method (fingerprint), so not 'payments'
		WHEN 'pay_create_customer' THEN 'customers'
		WHEN 'pay_update_customer' THEN 'customers'
		WHEN 'pay_delete_customer' THEN 'customers'
		WHEN 'pay_save_payment_method' THEN 'customers'
		WHEN 'pay_set_default_payment_method' THEN 'customers'
		WHEN 'pay_delete_payment_method' THEN 'customers'
		-- a customer's personal data, whole: the merchant's admin only
		WHEN 'pay_export_customer' THEN 'admin'
		WHEN 'pay_erase_customer' THEN 'admin'
		-- plans, subscriptions and invoices
		WHEN 'pay_get_plan' THEN 'read'
		WHEN 'pay_list_plans' THEN 'read'
		WHEN 'pay_get_subscription' THEN 'read'
		WHEN 'pay_list_subscriptions' THEN 'read'
		WHEN 'pay_preview_subscription_change' THEN 'read'
		WHEN 'pay_get_invoice' THEN 'read'
		WHEN 'pay_list_invoices' THEN 'read'
		WHEN 'pay_get_dunning_policy' THEN 'read'
		WHEN 'pay_billing_now' THEN 'read'
		WHEN 'pay_create_plan' THEN 'payments'
		WHEN 'pay_update_plan' THEN 'payments'
		WHEN 'pay_create_subscription' THEN 'payments'
		WHEN 'pay_update_subscription' THEN 'payments'
		WHEN 'pay_cancel_subscription' THEN 'payments'
		WHEN 'pay_pause_subscription' THEN 'payments'
		WHEN 'pay_resume_subscription' THEN 'payments'
		WHEN 'pay_change_subscription' THEN 'payments'
		-- the merchant's billing settings, runs and test clock
		WHEN 'pay_set_dunning_policy' THEN 'admin'
		WHEN 'pay_run_renewals' THEN 'admin'
		WHEN 'pay_run_dunning' THEN 'admin'
		WHEN 'pay_set_test_clock' THEN 'admin'
		WHEN 'pay_advance_test_clock' THEN 'admin'
		WHEN 'pay_clear_test_clock' THEN 'admin'
	END
	$$;
COMMENT ON FUNCTION payments._api_function_scope(name) IS
	'Internal: the API key scope an API function needs (NULL: none).';

------------------------------------------------------------------------------
-- h-free-text: no card number in free text, bounded metadata (src/free_text.c;
-- sql/src/payment_api.sql, customers.sql, subscriptions.sql, api_keys.sql).
-- A caller's text that holds a card number (description, order_ref,
-- metadata, the customer object, a customer's email, name, external_ref,
-- billing and metadata, a plan's name and metadata, a subscription's
-- metadata, a refund's reason, an idempotency key, an API key's name) is
-- refused with 22Y17 before anything is stored; a correlation id
-- (argument, x-request-id or traceparent header, payments.correlation_id)
-- is kept with the digits of its card numbers masked.  Metadata and the
-- customer object: at most 50 keys of at most 40 characters, values
-- strings, numbers, booleans or null of at most 500 characters; order_ref
-- and a refund's reason at most 255 characters.  The new functions are
-- revoked from PUBLIC and the replaced API functions get their scopes back
-- at the end of this script (privileges.sql).
-- Made once since: _correlation_id in h-free-text-bounds; _create_payment in
-- h-purchase-scope; pay_refund in h-refund-dead-letters (their final form).

CREATE FUNCTION payments._check_text(field text, value text, max_chars integer DEFAULT NULL)
	RETURNS void
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_text';
COMMENT ON FUNCTION payments._check_text(text, text, integer) IS
	'Internal: raises 22Y17 when a caller''s text holds a card number (12 to 19 digits, Luhn-valid, of a known brand; a text that is exactly one UUID, with or without dashes, or one W3C traceparent, is not checked) and 22001 when it is longer than max_chars characters; the message names the field, never the value.';

CREATE FUNCTION payments._mask_card_numbers(value text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_mask_card_numbers';
COMMENT ON FUNCTION payments._mask_card_numbers(text) IS
	'Internal: the text with every digit of the card numbers it holds replaced by X (the correlation id''s masking); a text that is exactly one UUID or one W3C traceparent is returned as it is.';

-- A merchant's name and metadata are free text too: the owner writes them
-- (INSERT INTO payments.merchants), and they are kept in the table, its
-- WAL, dumps and base backups; one that holds a card number is refused
-- (22Y17) as a caller's text is.  Its metadata is checked as its text:
-- every key and value, nested ones too.  Rows written before are left as
-- they are.
CREATE FUNCTION payments._merchants_check_text() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_text('merchant name', NEW.name);
	PERFORM payments._check_text('merchant metadata', NEW.metadata::text);
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._merchants_check_text() IS
	'Internal (trigger on payments.merchants): raises 22Y17 when a merchant''s name or metadata (any key or value) holds a card number; the message names the field, never the value.';
CREATE TRIGGER merchants_check_text BEFORE INSERT OR UPDATE OF name, metadata ON payments.merchants
	FOR EACH ROW EXECUTE FUNCTION payments._merchants_check_text();
COMMENT ON TRIGGER merchants_check_text ON payments.merchants IS
	'Refuses a card number in a merchant''s name or metadata (22Y17): nothing of it is stored.';

CREATE OR REPLACE FUNCTION payments._check_metadata(p_metadata jsonb) RETURNS void
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_metadata';
COMMENT ON FUNCTION payments._check_metadata(jsonb) IS 'Internal: raises 22023 unless metadata is NULL or a JSON object of at most 50 keys whose values are strings, numbers, booleans or null, 22001 for a key over 40 or a value over 500 characters, 22Y17 for a card number in a key or a value.';

CREATE OR REPLACE FUNCTION payments._check_idempotency_key(p_key text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF length(p_key) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid idempotency key'
			USING ERRCODE = '22Y25',
				DETAIL = format('The key has %s characters; an idempotency key has 1 to 255.', length(p_key)),
				HINT = 'Pass a key of 1 to 255 characters, such as a UUID, or NULL for none.';
	END IF;
	PERFORM payments._check_text('idempotency key', p_key);
END
$$;
COMMENT ON FUNCTION payments._check_idempotency_key(text) IS
	'Internal: raises 22Y25 unless an idempotency key is 1 to 255 characters, 22Y17 when it holds a card number; the message never quotes the key.';

CREATE OR REPLACE FUNCTION payments._check_gateway_input(amount payments.pay_amount, description text,
	customer jsonb, correlation_id text, customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_check_gateway_input';
COMMENT ON FUNCTION payments._check_gateway_input(payments.pay_amount, text, jsonb, text, text, text) IS
	'Internal: raises 22Y24 (character the gateway cannot carry), 22001 (text longer than the gateway field), 22Y26 (amount of more digits than the gateway takes) or 22Y22 (profile id not 1 to 20 digits) for input a payment request would carry; 22Y17 for a card number in the description or the customer object, 22023 or 22001 for a customer object beyond metadata''s bounds (src/free_text.c).';

-- The customer's texts, against what the gateway takes: the email goes to
-- the profile's email and customer.email (255), the name to the profile's
-- description (255), the billing details to billTo.
CREATE OR REPLACE FUNCTION payments._check_customer_input(p_email text, p_name text, p_external_ref text,
	p_billing jsonb, p_metadata jsonb, p_correlation_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_text('external_ref', p_external_ref, 255);
	IF p_billing IS NOT NULL AND jsonb_typeof(p_billing) <> 'object' THEN
		RAISE EXCEPTION 'billing must be a JSON object' USING ERRCODE = '22023',
			HINT = 'Pass the billing details as pay_purchase''s customer object, e.g. {"first_name": "Ada", "zip": "46201"}.';
	END IF;
	PERFORM payments._check_metadata(p_metadata);
	IF p_email IS NOT NULL AND p_email !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid email address' USING ERRCODE = '22023',
			HINT = 'Pass an address such as ada@example.com, or NULL.';
	END IF;
	PERFORM payments._check_customer_profile_input(p_email, p_name);
	PERFORM payments._check_gateway_input(NULL, NULL, p_billing, p_correlation_id);
END
$$;
COMMENT ON FUNCTION payments._check_customer_input(text, text, text, jsonb, jsonb, text) IS
	'Internal: refuses customer input the gateway would refuse (lengths and characters of email, name and billing details; 22001, 22Y24), an external_ref over 255 characters (22001), malformed or oversized objects (22023, 22001) and a card number in any of them (22Y17).';

CREATE OR REPLACE FUNCTION payments.pay_create_plan(
	name text,
	amount payments.pay_amount,
	interval_unit text DEFAULT 'month',
	interval_count integer DEFAULT 1,
	trial_days integer DEFAULT 0,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.plans
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_plan.correlation_id);
	idem payments.idempotency_keys;
	result payments.plans;
BEGIN
	IF pay_create_plan.name IS NULL OR length(pay_create_plan.name) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'name must be 1 to 255 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_text('name', pay_create_plan.name);
	PERFORM payments._check_price(pay_create_plan.amount, 'amount');
	PERFORM payments._check_billing_interval(pay_create_plan.interval_unit, pay_create_plan.interval_count);
	IF pay_create_plan.trial_days IS NULL OR pay_create_plan.trial_days NOT BETWEEN 0 AND 730 THEN
		RAISE EXCEPTION 'trial_days must be between 0 and 730' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_metadata(pay_create_plan.metadata);
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	idem := payments._idempotency_claim(m, pay_create_plan.idempotency_key, 'create_plan',
		md5(jsonb_build_array(pay_create_plan.name, pay_create_plan.amount::text, pay_create_plan.interval_unit,
			pay_create_plan.interval_count, pay_create_plan.trial_days,
			nullif(pay_create_plan.metadata, '{}'))::text));	-- {}: what leaving it out makes
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO result FROM payments.plans x
		WHERE x.merchant_id = m AND x.idempotency_key = pay_create_plan.idempotency_key
		ORDER BY x.plan_id DESC LIMIT 1;
		RETURN result;
	END IF;
	INSERT INTO payments.plans (merchant_id, name, amount, interval_unit, interval_count, trial_days,
		metadata, idempotency_key, correlation_id)
	VALUES (m, pay_create_plan.name, pay_create_plan.amount, pay_create_plan.interval_unit,
		pay_create_plan.interval_count, pay_create_plan.trial_days, coalesce(pay_create_plan.metadata, '{}'),
		pay_create_plan.idempotency_key, corr)
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (m, 'plan.created', jsonb_build_object('plan_id', result.plan_id, 'name', result.name,
		'amount', result.amount, 'interval_unit', result.interval_unit, 'interval_count', result.interval_count,
		'trial_days', result.trial_days), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_create_plan(text, payments.pay_amount, text, integer, integer, jsonb, text, text) IS
	'Creates a plan of the current merchant: name, amount per period (a positive pay_amount: its currency is the plan''s), interval_unit (day, week, month, year) times interval_count (1-366), trial_days (0-730) new subscriptions get by default, metadata. Amount and interval never change afterwards. Writes a plan.created event. Returns the plan row.';

CREATE OR REPLACE FUNCTION payments.pay_update_plan(
	plan_id bigint,
	name text DEFAULT NULL,
	active boolean DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	amount payments.pay_amount DEFAULT NULL,
	interval_unit text DEFAULT NULL,
	interval_count integer DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.plans
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans := payments._find_plan(pay_update_plan.plan_id, true);
	corr text := payments._correlation_id(pay_update_plan.correlation_id);
	idem payments.idempotency_keys;
	result payments.plans;
BEGIN
	IF pay_update_plan.amount IS NOT NULL OR pay_update_plan.interval_unit IS NOT NULL
			OR pay_update_plan.interval_count IS NOT NULL THEN
		RAISE EXCEPTION 'the amount and interval of a plan never change'
			USING ERRCODE = '22023',
				DETAIL = format('Plan %s is %s per %s %s; its subscriptions were sold at that price.',
					p.plan_id, p.amount, p.interval_count, p.interval_unit),
				HINT = 'Create a new plan (pay_create_plan), move subscriptions to it with pay_change_subscription(plan_id => ...), and make this one inactive (active => false).';
	END IF;
	IF pay_update_plan.name IS NOT NULL AND length(pay_update_plan.name) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'name must be 1 to 255 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_text('name', pay_update_plan.name);
	PERFORM payments._check_metadata(pay_update_plan.metadata);
	idem := payments._idempotency_claim(p.merchant_id, pay_update_plan.idempotency_key, 'update_plan',
		md5(jsonb_build_array(p.plan_id, pay_update_plan.name, pay_update_plan.active, pay_update_plan.metadata)::text));
	IF idem.request_kind IS NOT NULL THEN
		RETURN p;				-- applied once already
	END IF;
	UPDATE payments.plans x SET
		name = coalesce(pay_update_plan.name, x.name),
		active = coalesce(pay_update_plan.active, x.active),
		metadata = coalesce(pay_update_plan.metadata, x.metadata),
		updated_at = clock_timestamp()
	WHERE x.merchant_id = p.merchant_id AND x.plan_id = p.plan_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (p.merchant_id, 'plan.updated', jsonb_build_object('plan_id', p.plan_id, 'active', result.active,
		'fields', (SELECT coalesce(jsonb_agg(k), '[]') FROM unnest(ARRAY['name', 'active', 'metadata'],
			ARRAY[pay_update_plan.name IS NOT NULL, pay_update_plan.active IS NOT NULL,
				pay_update_plan.metadata IS NOT NULL]) AS f(k, given) WHERE given)), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_plan(bigint, text, boolean, jsonb, payments.pay_amount, text, integer, text, text) IS
	'Changes a plan''s name, active flag (an inactive plan takes no new subscriptions; existing ones go on) or metadata (NULL: unchanged). Its amount and interval never change: passing them raises 22023 (make a new plan instead). Writes a plan.updated event. PT404 for an unknown or foreign id.';

CREATE OR REPLACE FUNCTION payments.pay_create_api_key(
	merchant_id bigint DEFAULT NULL,
	scopes text[] DEFAULT ARRAY['read'],
	name text DEFAULT NULL,
	expires_at timestamptz DEFAULT NULL,
	rate_limit integer DEFAULT NULL,
	burst integer DEFAULT NULL)
	RETURNS payments.pay_api_key_secret
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := coalesce(payments._api_key_admin(pay_create_api_key.merchant_id),
		pay_create_api_key.merchant_id, payments.pay_current_merchant());
	s text[] := payments._check_api_key_scopes(pay_create_api_key.scopes);
	exp timestamptz := pay_create_api_key.expires_at;
	rate integer := pay_create_api_key.rate_limit;
	bur integer := pay_create_api_key.burst;
	id bigint;
	secret record;
	who record := payments.pay_current_identity();
	creator payments.api_keys;
	c_rate integer;
	c_burst integer;
	result payments.pay_api_key_secret;
BEGIN
	-- the merchant's row, locked: creations of one merchant's keys take turns (the cap)
	PERFORM FROM payments.merchants x WHERE x.merchant_id = m FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'merchant % does not exist', m USING ERRCODE = 'PT404';
	END IF;
	IF exp IS NOT NULL AND exp <= now() THEN
		RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023';
	END IF;
	IF rate < 0 OR bur < 1 THEN
		RAISE EXCEPTION 'rate_limit must be at least 0 and burst at least 1' USING ERRCODE = '22023';
	END IF;

	-- made by a key: never broader than that key, which must still be good.
	-- FOR KEY SHARE: its row stays (deletion waits), while its revocation,
	-- rotation or expiry change does not wait for this transaction, which
	-- its holder may keep open or PREPAREd; a key made with a key revoked
	-- before it committed counts as revoked all the same (_api_key_state)
	IF who.key_id IS NOT NULL THEN
		SELECT * INTO creator FROM payments.api_keys a
		WHERE a.merchant_id = m AND a.key_id = who.key_id::bigint FOR KEY SHARE;
		IF NOT FOUND OR (SELECT st.revoked_at FROM payments._api_key_state(m, creator.key_id) st) IS NOT NULL
			OR creator.expires_at <= now() THEN
			RAISE EXCEPTION 'API key % is revoked or has expired', who.key_id USING ERRCODE = 'PT401';
		END IF;
		IF NOT s <@ creator.scopes THEN
			RAISE EXCEPTION 'API key % may not create a key with scopes it does not have', creator.key_id
				USING ERRCODE = 'PT403',
				DETAIL = format('The key has the scopes %s.', array_to_string(creator.scopes, ', ')),
				HINT = 'A key made with a key has some or all of its scopes.';
		END IF;
		IF creator.expires_at IS NOT NULL THEN
			IF exp IS NULL THEN
				exp := creator.expires_at;
			ELSIF exp > creator.expires_at THEN
				RAISE EXCEPTION 'API key % may not create a key that expires after it', creator.key_id
					USING ERRCODE = 'PT403',
					DETAIL = format('The key expires at %s.', creator.expires_at),
					HINT = 'Leave expires_at out: the new key then expires with the key that made it.';
			END IF;
		END IF;
		c_rate := payments._api_key_limit(creator.rate_limit, 'payments.api_key_rate_limit');
		c_burst := payments._api_key_limit(creator.burst, 'payments.api_key_burst');
		-- left out: the creator's own limits (or, like it, the settings)
		rate := coalesce(rate, creator.rate_limit);
		bur := coalesce(bur, creator.burst);
		IF c_rate > 0 AND payments._api_key_limit(rate, 'payments.api_key_rate_limit') NOT BETWEEN 1 AND c_rate THEN
			RAISE EXCEPTION 'API key % may not create a key with a higher rate limit than its own', creator.key_id
				USING ERRCODE = 'PT403',
				DETAIL = format('The key may make %s requests per second; 0 is no limit.', c_rate),
				HINT = 'Leave rate_limit out: the new key then has the limit of the key that made it.';
		END IF;
		IF payments._api_key_limit(bur, 'payments.api_key_burst') > c_burst THEN
			RAISE EXCEPTION 'API key % may not create a key with a higher burst than its own', creator.key_id
				USING ERRCODE = 'PT403',
				DETAIL = format('The key may make %s requests at once.', c_burst),
				HINT = 'Leave burst out: the new key then has the burst of the key that made it.';
		END IF;
	END IF;

	-- (revoked and expiring as they count, up the created_by_key chain: a
	-- key made while its creator was revoked is no key, _api_key_state)
	IF (SELECT count(*) FROM payments.api_keys a, payments._api_key_state(a.merchant_id, a.key_id) st
			WHERE a.merchant_id = m AND st.revoked_at IS NULL
				AND (st.expires_at IS NULL OR st.expires_at > now())) >= payments._api_key_cap() THEN
		RAISE EXCEPTION 'merchant % has % API keys', m, payments._api_key_cap() USING ERRCODE = 'PT409',
			DETAIL = 'A merchant may have that many keys that are neither revoked nor expired.',
			HINT = 'Revoke the keys no longer used with payments.pay_revoke_api_key().';
	END IF;

	PERFORM payments._check_text('name', pay_create_api_key.name, 200);
	id := nextval('payments.api_keys_key_id_seq');
	secret := payments._api_key_secret(id);
	INSERT INTO payments.api_keys (merchant_id, key_id, name, scopes, secret_hash, expires_at,
		rate_limit, burst, created_by, created_by_key)
	VALUES (m, id, coalesce(pay_create_api_key.name, ''), s, secret.secret_hash, exp,
		rate, bur, who.acting_role, who.key_id::bigint);
	INSERT INTO payments.api_key_uses (merchant_id, key_id) VALUES (m, id);
	result := ROW(id, m, secret.api_key, s, exp, NULL);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_create_api_key(bigint, text[], text, timestamptz, integer, integer) IS
	'Creates a merchant API key and returns it, this once (api_key: pk_<key_id>_<secret>; only its SHA-256 is kept). merchant_id: default the current merchant. scopes (default read), as payments._api_function_scope gives them: read (pay_get_payment, pay_payment_operations, pay_list_payments, pay_wait, pay_get_customer, pay_find_customers, pay_get_payment_method, pay_list_payment_methods, pay_wait_payment_method, pay_expiring_payment_methods, pay_get_plan, pay_list_plans, pay_get_subscription, pay_list_subscriptions, pay_preview_subscription_change, pay_get_invoice, pay_list_invoices, pay_get_dunning_policy, pay_billing_now), payments (pay_purchase, pay_authorize, pay_capture, pay_void, pay_create_plan, pay_update_plan, pay_create_subscription, pay_update_subscription, pay_cancel_subscription, pay_pause_subscription, pay_resume_subscription, pay_change_subscription), refunds (pay_refund), customers (pay_create_customer, pay_update_customer, pay_delete_customer, pay_save_payment_method, pay_set_default_payment_method, pay_delete_payment_method), admin (its merchant''s keys: pay_create_api_key, pay_list_api_keys, pay_revoke_api_key, pay_rotate_api_key; and pay_export_customer, pay_erase_customer, pay_set_dunning_policy, pay_run_renewals, pay_run_dunning, pay_set_test_clock, pay_advance_test_clock, pay_clear_test_clock). expires_at: none by default. rate_limit and burst: the key''s own limits (default the settings payments.api_key_rate_limit and payments.api_key_burst; rate_limit 0: no limit). A key made with an admin key is never broader than that key (PT403 otherwise): its scopes, expiry, rate limit and burst are within that key''s (left out, they are that key''s), and it is revoked with that key. At most 100 keys of a merchant neither revoked nor expired (PT409). For the extension owner, roles acting for every merchant, and admin keys of that merchant (PT403 otherwise).';
COMMENT ON COLUMN payments.audit_log.correlation_id IS 'x-request-id (or traceparent) of request.headers, else payments.correlation_id, else the row''s own correlation_id; the digits of a card number in it masked (X), unless it is exactly a UUID or a W3C traceparent.';

------------------------------------------------------------------------------
-- h-sub-end-items: a subscription that ends closes its pending invoice
-- items (prorations of next_invoice changes, carried credits) on a final
-- proration invoice: charged on a cancel (now or at period end), recorded
-- uncollectible when its customer is deleted or dunning ends it, a net
-- credit reported; an ended subscription's failed final invoice is
-- uncollectible (sql/src/billing.sql, subscriptions.sql).
-- Made once since: _invoice_payment_failed in h-dunning-schedule;
-- _run_renewals in h-billing; pay_cancel_subscription in h-due-renewals
-- (their final form).

-- A billing step that is not a status change (the status triggers write
-- those): invoice.payment_failed, invoice.retry_scheduled,
-- invoice.retry_attempted, invoice.payment_after_close,
-- subscription.renewed, subscription.dunning_exhausted.
CREATE OR REPLACE FUNCTION payments._billing_event(p_merchant_id bigint, p_event_type text, p_payment_id bigint,
	p_data jsonb, p_correlation_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	INSERT INTO payments.events (merchant_id, event_type, payment_id, data, correlation_id)
	VALUES (p_merchant_id, p_event_type, p_payment_id, jsonb_strip_nulls(p_data), p_correlation_id);
END
$$;
COMMENT ON FUNCTION payments._billing_event(bigint, text, bigint, jsonb, text) IS
	'Internal: writes a billing event that is not a status change (invoice.payment_failed, invoice.retry_scheduled, invoice.retry_attempted, invoice.payment_after_close, subscription.renewed, subscription.dunning_exhausted, subscription.pending_items_closed).';

CREATE OR REPLACE FUNCTION payments._close_pending_items(p_merchant_id bigint, p_subscription_id bigint,
	p_reason text, p_charge boolean, p_background boolean DEFAULT false)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	lines jsonb;
	net payments.pay_amount;
	inv payments.invoices;
	refundable bigint;
	outcome text;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	SELECT * INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id;
	PERFORM 1 FROM payments.invoice_items i
	WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id AND i.invoice_id IS NULL
	FOR UPDATE;
	SELECT jsonb_agg(jsonb_build_object('kind', i.kind, 'description', i.description,
			'amount', i.amount::text, 'item_id', i.item_id) ORDER BY i.item_id),
		sum(i.amount)
	INTO lines, net
	FROM payments.invoice_items i
	WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id AND i.invoice_id IS NULL;
	IF lines IS NULL THEN
		RETURN NULL;
	END IF;
	IF pay_minor_units(net) > 0 AND p_charge THEN
		outcome := 'charged';
		inv := payments._issue_invoice(p_merchant_id, p_subscription_id, 'proration', s.current_period_index,
			s.current_period_start, s.current_period_end, lines, p_background);
	ELSE
		outcome := CASE WHEN pay_minor_units(net) > 0 THEN 'not_charged'
			WHEN pay_minor_units(net) < 0 THEN 'credit_not_applied' ELSE 'nothing_due' END;
		INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, period_index,
			period_start, period_end, amount, lines, correlation_id)
		VALUES (p_merchant_id, p_subscription_id, s.customer_id, 'proration', s.current_period_index,
			s.current_period_start, s.current_period_end,
			CASE WHEN pay_minor_units(net) > 0 THEN net ELSE net * 0 END, lines, s.correlation_id)
		RETURNING * INTO inv;
		IF pay_minor_units(net) > 0 THEN
			UPDATE payments.invoices SET status = 'uncollectible', closed_at = now_,
				last_failure_code = p_reason,
				last_failure_reason = 'Not charged: the subscription ended without a charge.'
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
			RETURNING * INTO inv;
		ELSE
			UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
			RETURNING * INTO inv;
		END IF;
	END IF;
	UPDATE payments.invoice_items SET invoice_id = inv.invoice_id
	WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id AND invoice_id IS NULL;
	IF pay_minor_units(net) < 0 THEN
		SELECT i.payment_id INTO refundable FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
			AND i.status = 'paid' AND i.payment_id IS NOT NULL
		ORDER BY i.paid_at DESC, i.invoice_id DESC
		LIMIT 1;
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'subscription.pending_items_closed', inv.payment_id,
		jsonb_build_object('subscription_id', p_subscription_id, 'customer_id', s.customer_id,
			'invoice_id', inv.invoice_id, 'reason', p_reason, 'outcome', outcome, 'net_amount', net,
			'credit', CASE WHEN pay_minor_units(net) < 0 THEN (- net)::text END,
			'refundable_payment_id', refundable),
		s.correlation_id);
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._close_pending_items(bigint, bigint, text, boolean, boolean) IS
	'Internal: when a subscription ends, closes its pending invoice items on a final proration invoice of its last period: a net amount owed is charged (p_charge; p_background: a billing run''s) or recorded uncollectible (not p_charge, failure code p_reason); a net credit makes it zero and paid and is reported, with the latest paid charge to refund it from. Writes subscription.pending_items_closed. Returns the invoice, or NULL when nothing was pending. The caller holds the subscription''s row lock and has ended it.';

-- The final action of dunning: the invoice is uncollectible and the
-- subscription becomes what the merchant's policy says (canceled, ended
-- now; or unpaid, kept with no renewals until an invoice is paid).  The
-- caller holds the subscription's and the invoice's locks.
CREATE OR REPLACE FUNCTION payments._dunning_final_action(p_merchant_id bigint, p_invoice_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	action_ text := (payments._dunning_policy(p_merchant_id)).final_action;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	UPDATE payments.invoices SET status = 'uncollectible', next_attempt_at = NULL, closed_at = now_
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id AND status = 'open'
	RETURNING * INTO inv;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	UPDATE payments.subscriptions x SET status = action_, next_renewal_at = NULL,
		canceled_at = CASE WHEN action_ = 'canceled' THEN coalesce(x.canceled_at, now_) ELSE x.canceled_at END,
		ended_at = CASE WHEN action_ = 'canceled' THEN now_ ELSE x.ended_at END
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = inv.subscription_id
		AND x.status IN ('past_due', 'unpaid') AND x.status <> action_
	RETURNING * INTO s;
	IF s.status = 'canceled' THEN
		-- ended: its pending prorations are closed, not charged
		PERFORM payments._close_pending_items(p_merchant_id, s.subscription_id, 'dunning_exhausted', false);
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'subscription.dunning_exhausted', inv.payment_id,
		jsonb_build_object('subscription_id', inv.subscription_id, 'invoice_id', inv.invoice_id,
			'final_action', action_, 'attempt_count', inv.attempt_count,
			'first_failed_at', payments._json_time(inv.first_failed_at), 'last_failure_code', inv.last_failure_code),
		inv.correlation_id);
END
$$;
COMMENT ON FUNCTION payments._dunning_final_action(bigint, bigint) IS
	'Internal: dunning''s final action for an open invoice: uncollectible, and the past_due subscription canceled (ended now; its pending invoice items closed on an uncollectible final invoice, not charged) or unpaid as the merchant''s policy says; writes subscription.dunning_exhausted. The caller holds the locks.';

-- Ending a subscription now (the caller holds its row lock): its open
-- invoices are voided and it is canceled (incomplete_expired when it never
-- started).  Refused while an open invoice's charge is in flight: it could
-- be paid after the invoice was voided.
CREATE OR REPLACE FUNCTION payments._end_subscription_now(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	in_flight bigint;
	result payments.subscriptions;
BEGIN
	SELECT i.invoice_id INTO in_flight FROM payments.invoices i
	JOIN payments.payments y ON y.merchant_id = i.merchant_id AND y.payment_id = i.payment_id
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
		AND y.status IN ('pending', 'unknown', 'in_review')
	LIMIT 1;
	IF in_flight IS NOT NULL THEN
		RAISE EXCEPTION 'a charge of invoice % of subscription % is in flight', in_flight, s.subscription_id
			USING ERRCODE = '22Y20',
				HINT = 'Wait for its outcome (pay_wait on the invoice''s payment_id; a payment held for review: pay_void it), then cancel again.';
	END IF;
	PERFORM payments._release_open_invoice_items(s);
	UPDATE payments.invoices i SET status = 'void', closed_at = now_, next_attempt_at = NULL
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open';
	-- an incomplete subscription never started: it ends as incomplete_expired
	UPDATE payments.subscriptions x SET
		status = CASE WHEN s.status = 'incomplete' THEN 'incomplete_expired' ELSE 'canceled' END,
		canceled_at = now_, ended_at = now_, next_renewal_at = NULL
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	-- no next invoice: the pending prorations go on a final one, charged
	PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled', true);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments._end_subscription_now(payments.subscriptions, timestamptz) IS
	'Internal: cancels a subscription now (incomplete_expired if it never started), voids its open invoices and closes its pending invoice items on a final invoice, charged (payments._close_pending_items); 22Y20 while a charge of an open invoice is in flight. The caller holds the subscription''s row lock.';

-- A customer who is deleted or erased keeps no running subscription: each
-- is ended now, as pay_cancel_subscription would (refused, with the whole
-- deletion, while a charge of one is in flight).
CREATE OR REPLACE FUNCTION payments._end_customer_subscriptions(c payments.customers) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	FOR s IN SELECT * FROM payments.subscriptions x
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND x.status NOT IN ('canceled', 'incomplete_expired')
		ORDER BY x.subscription_id
		FOR UPDATE
	LOOP
		-- a deleted customer is not charged: what its pending prorations
		-- come to is recorded (an uncollectible final invoice), not charged
		PERFORM payments._release_open_invoice_items(s);
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'customer_deleted', false);
		PERFORM payments._end_subscription_now(s, payments._billing_now(c.merchant_id));
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._end_customer_subscriptions(payments.customers) IS
	'Internal: ends a deleted or erased customer''s running subscriptions now (payments._end_subscription_now); their pending invoice items are closed on an uncollectible final invoice, not charged.';

------------------------------------------------------------------------------
-- h-unpaid-resume: an unpaid subscription paid at last resumes in the
-- period containing now, the rest of it invoiced prorated; the periods it
-- spent unpaid are no longer billed one by one (sql/src/billing.sql).

-- An invoice of the subscription was paid: an incomplete, past-due or
-- unpaid subscription (or one whose trial has ended) becomes active again,
-- unless another of its invoices is still in dunning; its next renewal is
-- the end of its current period.  The caller holds the subscription's lock.
CREATE OR REPLACE FUNCTION payments._subscription_invoice_paid(p_merchant_id bigint, p_subscription_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	now_ timestamptz;
	n integer;
	ps timestamptz;
	pe timestamptz;
BEGIN
	SELECT * INTO s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id
		AND (x.status IN ('incomplete', 'past_due', 'unpaid')
			OR (x.status = 'trialing' AND x.current_period_index >= 0))
		-- no other invoice of it open: one in dunning, or one whose charge
		-- is not answered yet (period 0's, when a proration invoice of a
		-- change made at the trial's end was paid first)
		AND NOT EXISTS (SELECT 1 FROM payments.invoices i
			WHERE i.merchant_id = x.merchant_id AND i.subscription_id = x.subscription_id
				AND i.status = 'open');
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF s.status = 'unpaid' THEN
		now_ := payments._billing_now(p_merchant_id);
		n := payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_);
		IF n > s.current_period_index AND s.cancel_at_period_end THEN
			-- set to cancel at the end of its period, which has passed while
			-- it was unpaid: it ended then, no new period is charged (as
			-- pay_resume_subscription does for a paused one)
			UPDATE payments.subscriptions x SET status = 'canceled', next_renewal_at = NULL,
				canceled_at = coalesce(x.canceled_at, now_), ended_at = x.current_period_end
			WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
			PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end', true);
			RETURN;
		END IF;
		IF n > s.current_period_index THEN
			ps := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
			pe := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
			UPDATE payments.subscriptions x SET status = 'active', current_period_index = n, period_amount = NULL,
				current_period_start = ps, current_period_end = pe, next_renewal_at = pe
			WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
			RETURNING * INTO s;
			PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', n, now_, pe,
				jsonb_build_array(payments._period_line(s, ps, pe, now_)));
			RETURN;
		END IF;
	END IF;
	UPDATE payments.subscriptions x SET status = 'active', next_renewal_at = x.current_period_end
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
END
$$;
COMMENT ON FUNCTION payments._subscription_invoice_paid(bigint, bigint) IS
	'Internal: after an invoice was paid, an incomplete, past_due or unpaid subscription (or a trialing one whose trial has ended) becomes active, unless another of its invoices is still in dunning: with its next renewal at the end of its current period (past_due: a period that ended meanwhile is renewed by the next run); an unpaid one resumes in the period containing now, whose remaining part is invoiced and charged at once, prorated (the periods it spent unpaid are not billed). The caller holds the subscription''s lock.';

------------------------------------------------------------------------------
-- h-pause-cancel: a subscription set to cancel at the end of its period
-- cannot be paused (it would never reach that end); a paused one set so
-- earlier is ended by a resume once the period has passed
-- (sql/src/subscriptions.sql).

CREATE OR REPLACE FUNCTION payments.pay_pause_subscription(
	subscription_id bigint,
	idempotency_key text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_pause_subscription.subscription_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(s.merchant_id,
		pay_pause_subscription.idempotency_key, 'pause_subscription', md5(jsonb_build_array(s.subscription_id)::text),
		s.customer_id);
	open_invoice bigint;
	result payments.subscriptions;
BEGIN
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF s.status <> 'active' THEN
		RAISE EXCEPTION 'cannot pause subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Only an active subscription can be paused.';
	END IF;
	IF s.cancel_at_period_end THEN
		-- paused, it would never reach the period end that cancels it
		RAISE EXCEPTION 'cannot pause subscription % while it is set to cancel at the end of its period', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = 'A paused subscription is not renewed, so the billing run would never reach the period end that cancels it.',
				HINT = 'Let it end at the period end, cancel it now, or undo the cancel first (pay_update_subscription with cancel_at_period_end => false).';
	END IF;
	IF s.next_renewal_at <= payments._billing_now(s.merchant_id) THEN
		-- its period has ended and the next one is not invoiced yet: paused
		-- now, the part of that period served would never be billed
		RAISE EXCEPTION 'cannot pause subscription % while its renewal is due', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = format('Its period ended at %s; the billing run has not renewed it yet.', s.next_renewal_at),
				HINT = 'Pause it once the billing run has renewed it (pay_run_renewals) and that invoice is paid.';
	END IF;
	SELECT i.invoice_id INTO open_invoice FROM payments.invoices i
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
	LIMIT 1;
	IF open_invoice IS NOT NULL THEN
		RAISE EXCEPTION 'cannot pause subscription % while its invoice % is open', s.subscription_id, open_invoice
			USING ERRCODE = '22Y20', HINT = 'Pause it once the invoice is paid (its charge is on its way), or cancel it.';
	END IF;
	UPDATE payments.subscriptions x SET status = 'paused', paused_at = payments._billing_now(s.merchant_id),
		next_renewal_at = NULL
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_pause_subscription(bigint, text) IS
	'Pauses an active subscription: status paused, no renewal and no charge until pay_resume_subscription (next_renewal_at NULL). The period it is paused in stays paid and is not refunded. Refused (22Y20) in any other status, while an invoice of it is open, or while it is set to cancel at the end of its period (cancel_at_period_end). PT404 for an unknown or foreign id.';

CREATE OR REPLACE FUNCTION payments.pay_resume_subscription(
	subscription_id bigint,
	idempotency_key text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_resume_subscription.subscription_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(s.merchant_id,
		pay_resume_subscription.idempotency_key, 'resume_subscription', md5(jsonb_build_array(s.subscription_id)::text),
		s.customer_id);
	now_ timestamptz := payments._billing_now(s.merchant_id);
	n integer;
	ps timestamptz;
	pe timestamptz;
	result payments.subscriptions;
	inv payments.invoices;
BEGIN
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF s.status <> 'paused' THEN
		RAISE EXCEPTION 'cannot resume subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Only a paused subscription can be resumed.';
	END IF;
	-- the anchor is kept: the period containing now becomes current
	n := payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_);
	IF s.cancel_at_period_end AND n > s.current_period_index THEN
		-- set to cancel at the end of a period that has passed meanwhile
		-- (paused before pausing refused that): it ended then, nothing charged
		UPDATE payments.subscriptions x SET status = 'canceled', paused_at = NULL, next_renewal_at = NULL,
			canceled_at = coalesce(x.canceled_at, now_), ended_at = x.current_period_end
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end', true);
		RETURN result;
	END IF;
	IF n <= s.current_period_index THEN
		-- resumed within the period it was paused in: that period is paid
		UPDATE payments.subscriptions x SET status = 'active', paused_at = NULL,
			next_renewal_at = x.current_period_end
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		RETURN result;
	END IF;
	ps := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
	pe := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
	UPDATE payments.subscriptions x SET status = 'active', paused_at = NULL, current_period_index = n, period_amount = NULL,
		current_period_start = ps, current_period_end = pe, next_renewal_at = pe
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	-- the rest of this period, prorated, invoiced and charged now
	inv := payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', n, now_, pe,
		jsonb_build_array(payments._period_line(result, ps, pe, now_)));
	SELECT * INTO result FROM payments.subscriptions x
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_resume_subscription(bigint, text) IS
	'Resumes a paused subscription: status active; the billing anchor is kept, so the period containing the resume time becomes current (its number counted from the anchor) and the part of it left is invoiced and charged at once, prorated (a resume within the period it was paused in charges nothing: that period was paid). A subscription set to cancel at the end of its period (possible only before pausing such a one was refused) whose period has ended meanwhile is canceled instead, ended at that period end, nothing more charged. Refused (22Y20) unless paused. PT404 for an unknown or foreign id.';

------------------------------------------------------------------------------
-- h-idem-replay: a call repeated with its idempotency key returns what the
-- first one made whatever changed since: the key is looked up before the
-- checks against the current state (inactive plan, method not active,
-- subscription ended, customer deleted) in pay_create_subscription,
-- pay_update_subscription, pay_update_customer and pay_save_payment_method
-- (sql/src/subscriptions.sql, customers.sql, payment_methods.sql).
-- Made once since: pay_create_subscription in h-sub-key-order;
-- pay_update_subscription in h-due-renewals; pay_save_payment_method in
-- h-account-customers (their final form).

CREATE OR REPLACE FUNCTION payments.pay_update_customer(
	customer_id bigint,
	email text DEFAULT NULL,
	name text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	billing jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_update_customer.customer_id, true);
	corr text := payments._correlation_id(pay_update_customer.correlation_id);
	idem payments.idempotency_keys;
	result payments.customers;
BEGIN
	PERFORM payments._check_customer_input(pay_update_customer.email, pay_update_customer.name,
		pay_update_customer.external_ref, pay_update_customer.billing, pay_update_customer.metadata, corr);
	idem := payments._idempotency_claim(c.merchant_id, pay_update_customer.idempotency_key, 'update_customer',
		md5(jsonb_build_array(pay_update_customer.customer_id, pay_update_customer.email,
			pay_update_customer.name, pay_update_customer.external_ref, pay_update_customer.billing,
			pay_update_customer.metadata)::text), c.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN c;				-- applied once already, even if deleted since
	END IF;
	PERFORM payments._find_customer(c.customer_id, false, false);	-- 22Y20 once deleted
	UPDATE payments.customers u SET
		email = coalesce(pay_update_customer.email, u.email),
		name = coalesce(pay_update_customer.name, u.name),
		external_ref = coalesce(pay_update_customer.external_ref, u.external_ref),
		billing = coalesce(pay_update_customer.billing, u.billing),
		metadata = coalesce(pay_update_customer.metadata, u.metadata),
		updated_at = clock_timestamp()
	WHERE u.merchant_id = c.merchant_id AND u.customer_id = c.customer_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (c.merchant_id, 'customer.updated', jsonb_build_object('customer_id', c.customer_id,
		'fields', (SELECT jsonb_agg(k) FROM unnest(ARRAY['email', 'name', 'external_ref', 'billing', 'metadata'],
			ARRAY[pay_update_customer.email IS NOT NULL, pay_update_customer.name IS NOT NULL,
				pay_update_customer.external_ref IS NOT NULL, pay_update_customer.billing IS NOT NULL,
				pay_update_customer.metadata IS NOT NULL]) AS x(k, given) WHERE given)), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_customer(bigint, text, text, text, jsonb, jsonb, text, text) IS
	'Changes the fields given (NULL: unchanged) of a customer of the current merchant; billing and metadata are replaced whole. Writes a customer.updated event naming the fields. PT404 for an unknown or foreign id, 22Y20 for a deleted customer.';

------------------------------------------------------------------------------
-- h-pending-default: a method made the default while still pending
-- remembers the active default it replaced; a subscription's charge uses
-- that one until the new method is active, and it is the default again if
-- the save fails (a renewal during a card replacement was a final
-- no_payment_method decline) (sql/src/payment_methods.sql, billing.sql,
-- subscriptions.sql).
-- Made once since: pay_save_payment_method in h-account-customers;
-- pay_set_default_payment_method, _invoice_payment_method in
-- h-purchase-default; pay_create_subscription in h-sub-key-order (their final
-- form).

ALTER TABLE payments.payment_methods ADD COLUMN replaced_default_id bigint;
COMMENT ON COLUMN payments.payment_methods.replaced_default_id IS
	'A method made the customer''s default while still pending: the active default it replaced. Charges of the customer''s default (subscriptions) use that one until this one is active; if this one''s save fails, that one is the default again.';

CREATE OR REPLACE FUNCTION payments._usable_default_id(p_merchant_id bigint, p_customer_id bigint) RETURNS bigint
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT CASE WHEN x.status = 'active' THEN x.payment_method_id ELSE x.replaced_default_id END
	FROM payments.payment_methods x
	WHERE x.merchant_id = p_merchant_id AND x.customer_id = p_customer_id AND x.is_default
		AND x.status IN ('pending', 'active')
	LIMIT 1
	$$;
COMMENT ON FUNCTION payments._usable_default_id(bigint, bigint) IS
	'Internal: the customer''s active default payment method, or the active one a pending default replaced (NULL: none).';

CREATE OR REPLACE FUNCTION payments._restore_replaced_default() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	UPDATE payments.payment_methods x SET is_default = true
	WHERE x.merchant_id = NEW.merchant_id AND x.payment_method_id = NEW.replaced_default_id
		AND x.customer_id = NEW.customer_id AND x.status = 'active' AND NOT x.is_default
		AND NOT EXISTS (SELECT 1 FROM payments.payment_methods d
			WHERE d.merchant_id = NEW.merchant_id AND d.customer_id = NEW.customer_id AND d.is_default
				AND d.status IN ('pending', 'active'));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._restore_replaced_default() IS
	'Trigger: a pending default whose save failed gives the default back to the active method it replaced (replaced_default_id), unless another is the default by then.';

CREATE TRIGGER payment_methods_restore_default AFTER UPDATE OF status ON payments.payment_methods
	FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status = 'failed' AND OLD.is_default
		AND NEW.replaced_default_id IS NOT NULL)
	EXECUTE FUNCTION payments._restore_replaced_default();
COMMENT ON TRIGGER payment_methods_restore_default ON payments.payment_methods IS
	'A pending default whose save failed gives the default back to the method it replaced (payments._restore_replaced_default).';

------------------------------------------------------------------------------
-- h-policy-reschedule: a new dunning policy applies to the retries already
-- scheduled, as pay_set_dunning_policy's comment says (sql/src/billing.sql).
-- Made once since: _reschedule_dunning in h-dunning-schedule;
-- pay_set_dunning_policy in h-free-text-bounds (their final form).

------------------------------------------------------------------------------
-- h-dunning-schedule: one home for when a failed invoice is charged next
-- (sql/src/billing.sql, _next_dunning_attempt).

CREATE FUNCTION payments._next_dunning_attempt(p_first_failed_at timestamptz, p_days integer[],
	p_final boolean, p_now timestamptz, OUT next_at timestamptz, OUT retry_no integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT CASE WHEN p_final THEN
			nullif(greatest(p_first_failed_at + make_interval(hours => 24 * p_days[cardinality(p_days)]), p_now), p_now)
		ELSE (SELECT p_first_failed_at + make_interval(hours => 24 * d.day)
			FROM unnest(p_days) WITH ORDINALITY d(day, n)
			WHERE p_first_failed_at + make_interval(hours => 24 * d.day) > p_now ORDER BY d.n LIMIT 1) END,
		CASE WHEN NOT p_final THEN (SELECT d.n::integer
			FROM unnest(p_days) WITH ORDINALITY d(day, n)
			WHERE p_first_failed_at + make_interval(hours => 24 * d.day) > p_now ORDER BY d.n LIMIT 1) END
	$$;
COMMENT ON FUNCTION payments._next_dunning_attempt(timestamptz, integer[], boolean, timestamptz) IS
	'Internal: when a failed invoice is charged next under a dunning schedule (retry_days from its first failure, days of 24 hours) and which retry that is; after a final decline, only the final action on the last day; next_at NULL: the final action is due now.';

-- A charge of an invoice failed (p_payment_id; NULL: there was nothing to
-- charge): the failure is recorded (the first one starts the schedule) and
--   - a first invoice leaves its subscription incomplete (no retries: it
--     expires after payments._incomplete_expiry() unless a new card pays);
--   - any other makes the subscription past_due; a retryable decline is
--     tried again on the first day of the merchant's retry_days, counted
--     from the first failure in billing time, that is still ahead; a final
--     decline (_decline_is_final) is not retried, and the final action
--     waits for the schedule's last day (a new card is tried at once
--     meanwhile); with no day left the final action applies now.
-- A failure of an older attempt than the invoice's latest, or of an
-- invoice no longer open, is only recorded.  Takes the subscription's lock,
-- then the invoice's.  Returns the invoice.
CREATE OR REPLACE FUNCTION payments._invoice_payment_failed(p_merchant_id bigint, p_invoice_id bigint,
	p_payment_id bigint, p_code text, p_reason text)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	days integer[];
	final_ boolean := payments._decline_is_final(p_code);
	now_ timestamptz := payments._billing_now(p_merchant_id);
	next_ timestamptz;
	retry_no integer;
	in_dunning boolean;
	other payments.payment_methods;
	pid bigint;
BEGIN
	SELECT x.* INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id =
		(SELECT i.subscription_id FROM payments.invoices i
		 WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id)
	FOR UPDATE;
	SELECT * INTO STRICT inv FROM payments.invoices
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	FOR UPDATE;
	IF inv.status NOT IN ('open', 'uncollectible')
		OR (p_payment_id IS NOT NULL AND inv.payment_id IS DISTINCT FROM p_payment_id) THEN
		RETURN inv;
	END IF;
	UPDATE payments.invoices SET first_failed_at = coalesce(first_failed_at, now_),
		last_failure_code = p_code, last_failure_reason = p_reason, next_attempt_at = NULL
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	RETURNING * INTO inv;
	-- the schedule first, so that the event says whether it will be
	-- retried: only an open invoice of a subscription that can be in
	-- dunning is (not an incomplete subscription's first invoice, an ended
	-- subscription's, or one with no day left)
	in_dunning := inv.status = 'open' AND s.status IN ('trialing', 'active', 'past_due');
	days := (payments._dunning_policy(p_merchant_id)).retry_days;
	IF in_dunning THEN
		SELECT a.next_at, a.retry_no INTO next_, retry_no
		FROM payments._next_dunning_attempt(inv.first_failed_at, days, final_, now_) a;
	END IF;
	-- the one the invoice goes to now, if another than the one charged
	-- (never the same one twice): the method charged is gone, or another
	-- was chosen while the charge was in flight
	IF p_payment_id IS NOT NULL AND inv.status = 'open'
			AND s.status IN ('incomplete', 'trialing', 'active', 'past_due') THEN
		other := payments._invoice_payment_method(p_merchant_id, inv.customer_id, s.payment_method_id);
		IF other.payment_method_id = (SELECT p.payment_method_id FROM payments.payments p
				WHERE p.merchant_id = p_merchant_id AND p.payment_id = p_payment_id) THEN
			other := NULL;
		END IF;
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'invoice.payment_failed', p_payment_id,
		jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
			'kind', inv.kind, 'amount', inv.amount, 'payment_id', p_payment_id,
			'attempt_count', inv.attempt_count, 'failure_code', p_code, 'failure_reason', p_reason,
			'retryable', other.payment_method_id IS NOT NULL OR (NOT final_ AND next_ IS NOT NULL),
			'first_failed_at', payments._json_time(inv.first_failed_at)),
		inv.correlation_id);
	IF inv.status = 'open' AND s.status IN ('canceled', 'incomplete_expired') THEN
		-- an ended subscription has no dunning: its final invoice is not retried
		UPDATE payments.invoices SET status = 'uncollectible', closed_at = now_
		WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
		RETURNING * INTO inv;
		RETURN inv;
	END IF;
	IF in_dunning AND s.status <> 'past_due' THEN
		UPDATE payments.subscriptions SET status = 'past_due', next_renewal_at = NULL
		WHERE merchant_id = p_merchant_id AND subscription_id = s.subscription_id;
	END IF;
	IF other.payment_method_id IS NOT NULL THEN
		pid := payments._charge_invoice(p_merchant_id, p_invoice_id);
		IF pid IS NOT NULL THEN
			PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_attempted', pid,
				jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
					'payment_id', pid, 'attempt_count', inv.attempt_count + 1,
					'payment_method_id', other.payment_method_id,
					'reason', CASE WHEN p_code = 'payment_method_gone' THEN 'payment_method_gone'
						ELSE 'payment_method_updated' END),
				inv.correlation_id);
			SELECT * INTO inv FROM payments.invoices WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
			RETURN inv;
		END IF;
	END IF;
	IF NOT in_dunning THEN
		RETURN inv;
	END IF;

	IF next_ IS NULL THEN
		PERFORM payments._dunning_final_action(p_merchant_id, p_invoice_id);
		SELECT * INTO inv FROM payments.invoices WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
		RETURN inv;
	END IF;
	UPDATE payments.invoices SET next_attempt_at = next_
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	RETURNING * INTO inv;
	IF NOT final_ THEN
		PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_scheduled', p_payment_id,
			jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
				'next_attempt_at', payments._json_time(next_), 'retry', retry_no, 'retries', cardinality(days)),
			inv.correlation_id);
	END IF;
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_failed(bigint, bigint, bigint, text, text) IS
	'Internal: records a failed charge of an invoice (writes invoice.payment_failed) and applies dunning: a first invoice leaves the subscription incomplete; otherwise the subscription becomes past_due and the invoice is retried on the merchant''s next retry day counted from the first failure (invoice.retry_scheduled), or, after a final decline, waits for the schedule''s last day; with no day left, the final action. When the invoice now goes to another usable method than the failed charge''s, that one is charged at once (invoice.retry_attempted): the customer''s default after the method charged was gone at the gateway (reason payment_method_gone), or the method chosen while the charge was in flight (the subscription''s new one or the customer''s new default; reason payment_method_updated). An open invoice of an ended subscription (its final invoice) is not retried: uncollectible. Locks the subscription, then the invoice.';

CREATE OR REPLACE FUNCTION payments._reschedule_dunning(p_merchant_id bigint) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c record;
	s payments.subscriptions;
	inv payments.invoices;
	days integer[] := (payments._dunning_policy(p_merchant_id)).retry_days;
	now_ timestamptz := payments._billing_now(p_merchant_id);
	final_ boolean;
	next_ timestamptz;
	retry_no integer;
	n integer := 0;
BEGIN
	-- Every open invoice is locked, also one whose charge is in flight (no
	-- retry scheduled yet): a decline recorded meanwhile read the policy
	-- before this change committed, and scheduled the old day after this
	-- loop had passed it by.  Locked, the recording waits for this change
	-- and reads the new policy, or this loop waits for the recording and
	-- reschedules what it wrote.
	FOR c IN
		SELECT i.invoice_id, i.subscription_id FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.status = 'open'
		ORDER BY i.invoice_id
	LOOP
		SELECT * INTO s FROM payments.subscriptions
		WHERE merchant_id = p_merchant_id AND subscription_id = c.subscription_id
		FOR UPDATE;
		SELECT * INTO inv FROM payments.invoices
		WHERE merchant_id = p_merchant_id AND invoice_id = c.invoice_id
		FOR UPDATE;
		CONTINUE WHEN inv.status <> 'open' OR inv.next_attempt_at IS NULL OR inv.first_failed_at IS NULL
			OR s.status <> 'past_due';
		final_ := payments._decline_is_final(inv.last_failure_code);
		SELECT a.next_at, a.retry_no INTO next_, retry_no
		FROM payments._next_dunning_attempt(inv.first_failed_at, days, final_, now_) a;
		IF next_ IS NULL THEN
			PERFORM payments._dunning_final_action(p_merchant_id, inv.invoice_id);
			n := n + 1;
		ELSIF next_ <> inv.next_attempt_at THEN
			UPDATE payments.invoices SET next_attempt_at = next_
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id;
			n := n + 1;
			IF NOT final_ THEN
				PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_scheduled', inv.payment_id,
					jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
						'next_attempt_at', payments._json_time(next_), 'retry', retry_no, 'retries', cardinality(days),
						'reason', 'policy_changed'),
					inv.correlation_id);
			END IF;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._reschedule_dunning(bigint) IS
	'Internal: applies the merchant''s (new) dunning policy to the retries not yet made: each open invoice waiting for a retry is scheduled again from its first failure (invoice.retry_scheduled, reason policy_changed), or given the final action now when no retry day is left. Returns how many invoices changed.';

------------------------------------------------------------------------------
-- h-lost-sends: a worker on a promoted standby or a restored backup looks up
-- what the server before may have sent (sql/src/worker.sql, src/worker.c).
------------------------------------------------------------------------------

-- The server the worker last started on.  A standby promoted after its
-- primary died may lack the primary's last commits (asynchronous
-- replication), and so may a server restored from a backup by archive
-- recovery: among them the claims that marked operations "sending" before
-- their requests left.  Such an operation looks never sent here while the
-- gateway may have charged it; a card whose vault went with the old server
-- would then fail it, and a resend past the duplicate window would charge
-- again.  A new timeline, system identifier or database says the history
-- may be short; so does a new base backup label (backup_label.old): a
-- backup started as it is, without archive recovery, keeps the system
-- identifier and timeline of the server it was taken from.
CREATE TABLE payments.worker_server (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	system_identifier text NOT NULL,
	timeline_id integer NOT NULL,
	database_oid oid NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	changed_at timestamptz,
	base_backup text,
	server_tag text CHECK (server_tag ~ '^[0-9A-F]{6}$')
);
REVOKE ALL ON payments.worker_server FROM PUBLIC;
COMMENT ON TABLE payments.worker_server IS
	'The server the payments worker last started on (its system identifier, WAL timeline, database and the base backup its data directory was started from). A different one at start (a promoted standby, a backup restored, by archive recovery or started as it is, a dump restored into another database) means the database may lack its last commits: operations it has as never sent are then treated as possibly sent (_recover_lost_sends). Owner only.';
COMMENT ON COLUMN payments.worker_server.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN payments.worker_server.system_identifier IS 'pg_control_system().system_identifier of the server.';
COMMENT ON COLUMN payments.worker_server.timeline_id IS 'The WAL timeline the server wrote on (a promotion or an archive recovery starts a new one).';
COMMENT ON COLUMN payments.worker_server.database_oid IS 'The OID of the database the worker served (a dump restored into another database has another).';
COMMENT ON COLUMN payments.worker_server.recorded_at IS 'When the worker started on it.';
COMMENT ON COLUMN payments.worker_server.base_backup IS 'The start location and time of the base backup the data directory was started from (its backup_label.old), NULL if none: a backup started as it is keeps the system identifier and timeline of the server it was taken from.';
COMMENT ON COLUMN payments.worker_server.changed_at IS 'When the database was last found on another server than before (the worker''s start on a promoted standby, a restored backup, another database; a dump restored): the server before may have charged until then what is charged here from then on (a subscription''s charge that came due before it is looked up first, _queue_invoice_charge). NULL: never.';
COMMENT ON COLUMN payments.worker_server.server_tag IS 'The tag of invoice numbers of this server life (six random hexadecimal digits, made anew at every change of server, changed_at): a payment made since carries P, this tag and its id, so that an id the server before handed out too (its sequences went on past the copy this database was made from) never gives two payments one invoice number at the gateway. NULL: never changed server (the installation''s tag, _invoice_tag).';
SELECT pg_catalog.pg_extension_config_dump('payments.worker_server', '');

-- The tag of this server life (C, src/invoice_tag.c: kept in memory until
-- worker_server changes, as _invoice_tag is).
CREATE FUNCTION payments._server_tag() RETURNS text
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'pay_server_tag';
REVOKE ALL ON FUNCTION payments._server_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._server_tag() IS
	'Internal: worker_server.server_tag, the tag of invoice numbers of this server life, NULL while the database never changed server; kept in backend memory until worker_server changes.';

-- A new server life's tag: random, never the installation's nor the
-- life's before (an id reused by this life then never meets the number
-- another life gave it).
CREATE FUNCTION payments._new_server_tag() RETURNS text
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	t text;
BEGIN
	LOOP
		t := upper(encode(payments._random_bytes(3), 'hex'));
		EXIT WHEN t IS DISTINCT FROM payments._invoice_tag()
			AND NOT EXISTS (SELECT 1 FROM payments.worker_server w WHERE w.server_tag = t);
	END LOOP;
	RETURN t;
END
$$;
REVOKE ALL ON FUNCTION payments._new_server_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._new_server_tag() IS
	'Internal: a new server life''s tag of invoice numbers (worker_server.server_tag): six random hexadecimal digits, neither the installation''s tag nor the current life''s.';

-- At worker start, after _recover_in_flight: on a server other than the
-- last one (promoted, restored), every queued or dead operation that the
-- database has as never sent may have been sent by the server before
-- (whatever its retry time here: a change lost with that server may have
-- made it due there).  It is treated as sent at its last change known
-- here, the earliest the lost send can have been: resent identically
-- inside the duplicate window (the gateway answers a repeat with the
-- original; a card gone with the old server is looked up instead), looked
-- up past it; never failed or resent blindly.  Returns how many.
CREATE FUNCTION payments._recover_lost_sends(p_system_identifier text, p_timeline_id integer,
	p_base_backup text DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	last payments.worker_server;
	db oid := (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database());
	n integer := 0;
	changed timestamptz;
	tag text;
BEGIN
	SELECT * INTO last FROM payments.worker_server FOR UPDATE;
	IF FOUND AND (last.system_identifier, last.timeline_id, last.database_oid, last.base_backup)
			IS DISTINCT FROM (p_system_identifier, p_timeline_id, db, p_base_backup) THEN
		changed := now();
		tag := payments._new_server_tag();
		UPDATE payments.operations o SET never_sent = false,
			first_sent_at = coalesce(o.first_sent_at, greatest(o.created_at, o.updated_at)),
			last_error = format('the server changed (timeline %s of system %s%s, was timeline %s of system %s%s): the previous one may have sent it',
				p_timeline_id, p_system_identifier, ', base backup ' || p_base_backup,
				last.timeline_id, last.system_identifier, ', base backup ' || last.base_backup)
		WHERE o.status IN ('queued', 'dead') AND o.never_sent;
		GET DIAGNOSTICS n = ROW_COUNT;
	END IF;
	INSERT INTO payments.worker_server (system_identifier, timeline_id, database_oid, base_backup, changed_at,
		server_tag)
	VALUES (p_system_identifier, p_timeline_id, db, p_base_backup, changed, tag)
	ON CONFLICT (only_row) DO UPDATE SET system_identifier = EXCLUDED.system_identifier,
		timeline_id = EXCLUDED.timeline_id, database_oid = EXCLUDED.database_oid,
		base_backup = EXCLUDED.base_backup,
		recorded_at = EXCLUDED.recorded_at,
		changed_at = coalesce(EXCLUDED.changed_at, worker_server.changed_at),
		server_tag = coalesce(EXCLUDED.server_tag, worker_server.server_tag);
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._recover_lost_sends(text, integer, text) IS
	'Worker start: on a server other than the one the worker last started on (payments.worker_server: system identifier, timeline, database, base backup started from), marks the queued and dead operations the database has as never sent as sent at their last change known here, so that they are resent identically inside the duplicate window or looked up past it, rather than failed or sent again. Returns how many.';

-- h-sub-key-order: pay_create_subscription locks its customer (FOR KEY
-- SHARE) before it claims its idempotency key, in the order of the other
-- calls that lock a customer and claim a key (a payment for the customer,
-- its deletion or erasure); the other order deadlocked with a deletion
-- claiming the same key (sql/src/subscriptions.sql).

CREATE OR REPLACE FUNCTION payments.pay_create_subscription(
	customer_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	interval_unit text DEFAULT NULL,
	interval_count integer DEFAULT NULL,
	quantity integer DEFAULT 1,
	payment_method_id bigint DEFAULT NULL,
	trial_days integer DEFAULT NULL,
	billing_anchor timestamp DEFAULT NULL,
	time_zone text DEFAULT 'UTC',
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_subscription.correlation_id);
	p payments.plans;
	unit_ payments.pay_amount;
	iunit text;
	icount integer;
	trial integer;
	idem payments.idempotency_keys;
	now_ timestamptz;
	anchor timestamp;
	n integer;
	ps timestamptz;
	pe timestamptz;
	s payments.subscriptions;
	inv payments.invoices;
BEGIN
	-- the customer's row first, then the key: the order of every call that
	-- locks a customer and claims a key (a payment for the customer, its
	-- deletion or erasure); the other order deadlocked with a deletion
	-- claiming the same key (which then gets PT409).  Locked only: it is
	-- checked after the key is looked up
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = m AND x.customer_id = pay_create_subscription.customer_id
	FOR KEY SHARE;
	-- a repeated call returns what the first one made, whatever changed
	-- since (the plan made inactive, the card deleted): the key is looked
	-- up before anything is checked against the current state
	idem := payments._idempotency_claim(m, pay_create_subscription.idempotency_key, 'create_subscription',
		md5(jsonb_build_array(pay_create_subscription.customer_id, pay_create_subscription.plan_id,
			pay_create_subscription.price::text,
			pay_create_subscription.interval_unit, pay_create_subscription.interval_count,
			pay_create_subscription.quantity, pay_create_subscription.payment_method_id,
			pay_create_subscription.trial_days, pay_create_subscription.billing_anchor,
			pay_create_subscription.time_zone,
			nullif(pay_create_subscription.metadata, '{}'))::text),	-- {}: what leaving it out makes
		pay_create_subscription.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = m AND x.idempotency_key = idem.idempotency_key	-- as kept (erased: a digest)
		ORDER BY x.subscription_id DESC LIMIT 1;
		RETURN s;
	END IF;
	c := payments._share_customer(pay_create_subscription.customer_id);
	IF (pay_create_subscription.plan_id IS NULL) = (pay_create_subscription.price IS NULL) THEN
		RAISE EXCEPTION 'exactly one of plan_id and price is required'
			USING ERRCODE = '22023', HINT = 'Subscribe to a plan (plan_id), or give an explicit price with interval_unit and interval_count.';
	END IF;
	IF pay_create_subscription.plan_id IS NOT NULL THEN
		p := payments._find_plan(pay_create_subscription.plan_id);
		IF NOT p.active THEN
			RAISE EXCEPTION 'plan % is inactive', p.plan_id
				USING ERRCODE = '22Y20', HINT = 'Inactive plans take no new subscriptions; make it active again (pay_update_plan) or use another.';
		END IF;
		IF coalesce(pay_create_subscription.interval_unit, p.interval_unit) <> p.interval_unit
				OR coalesce(pay_create_subscription.interval_count, p.interval_count) <> p.interval_count THEN
			RAISE EXCEPTION 'a subscription to plan % is billed every % %', p.plan_id, p.interval_count, p.interval_unit
				USING ERRCODE = '22023', HINT = 'Leave interval_unit and interval_count out with a plan, or give a price instead of the plan.';
		END IF;
		unit_ := p.amount;
		iunit := p.interval_unit;
		icount := p.interval_count;
	ELSE
		PERFORM payments._check_price(pay_create_subscription.price, 'price');
		IF pay_create_subscription.interval_unit IS NULL THEN
			RAISE EXCEPTION 'interval_unit is required with a price'
				USING ERRCODE = '22023', HINT = 'Pass interval_unit => ''month'' (day, week, month or year) and, if not 1, interval_count.';
		END IF;
		unit_ := pay_create_subscription.price;
		iunit := pay_create_subscription.interval_unit;
		icount := coalesce(pay_create_subscription.interval_count, 1);
	END IF;
	PERFORM payments._check_billing_interval(iunit, icount);
	IF pay_create_subscription.quantity IS NULL OR pay_create_subscription.quantity NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'quantity must be between 1 and 100000' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_gateway_input(payments._subscription_total(unit_, pay_create_subscription.quantity),
		NULL, NULL, corr);
	trial := coalesce(pay_create_subscription.trial_days, p.trial_days, 0);
	IF trial NOT BETWEEN 0 AND 730 THEN
		RAISE EXCEPTION 'trial_days must be between 0 and 730' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_time_zone(pay_create_subscription.time_zone);
	PERFORM payments._check_metadata(pay_create_subscription.metadata);
	IF pay_create_subscription.billing_anchor IS NOT NULL THEN
		IF NOT isfinite(pay_create_subscription.billing_anchor) THEN
			RAISE EXCEPTION 'billing_anchor must be a finite time' USING ERRCODE = '22023';
		END IF;
		IF trial > 0 THEN
			RAISE EXCEPTION 'billing_anchor cannot be combined with a trial'
				USING ERRCODE = '22023',
					DETAIL = 'A subscription with a trial is billed from the end of its trial: that is its anchor.',
					HINT = 'Pass trial_days => 0 to bill from the anchor given.';
		END IF;
	END IF;
	-- the method charged: the one named (the customer's, active), else the
	-- customer's active default; a trial may start without one
	IF pay_create_subscription.payment_method_id IS NOT NULL THEN
		PERFORM payments._stored_method_for_payment(c.customer_id, pay_create_subscription.payment_method_id, 0);
	ELSIF trial = 0
			AND (payments._invoice_payment_method(m, c.customer_id, NULL)).payment_method_id IS NULL THEN
		RAISE EXCEPTION 'customer % has no usable payment method', c.customer_id
			USING ERRCODE = '22Y22',
				DETAIL = 'A subscription without a trial is charged at once; the customer has no active default method.',
				HINT = 'Save one (pay_save_payment_method) and wait until it is active (pay_wait_payment_method), or pass payment_method_id.';
	END IF;

	-- made under the server life's tag (gateway_tag, _server_tag; NULL
	-- before any change of server): after a change of server its id may be
	-- one the server before gave its own subscription after the copy, and
	-- its periods' invoice numbers (_invoice_charge_number) that one's
	now_ := payments._billing_now(m);
	IF trial > 0 THEN
		-- trialing: period -1 is the trial; the anchor is its end, local
		anchor := (now_ AT TIME ZONE pay_create_subscription.time_zone) + make_interval(days => trial);
		pe := anchor AT TIME ZONE pay_create_subscription.time_zone;
		INSERT INTO payments.subscriptions (merchant_id, customer_id, plan_id, status, unit_amount, quantity,
			interval_unit, interval_count, payment_method_id, time_zone, billing_anchor,
			current_period_index, current_period_start, current_period_end, trial_end, next_renewal_at,
			metadata, idempotency_key, correlation_id, gateway_tag)
		VALUES (m, c.customer_id, p.plan_id, 'trialing', unit_, pay_create_subscription.quantity,
			iunit, icount, pay_create_subscription.payment_method_id, pay_create_subscription.time_zone, anchor,
			-1, now_, pe, pe, pe,
			coalesce(pay_create_subscription.metadata, '{}'), pay_create_subscription.idempotency_key, corr,
			payments._server_tag())
		RETURNING * INTO s;
		RETURN s;
	END IF;

	-- incomplete: the period containing now is current (period 0 from now
	-- when no anchor is given); its first invoice is issued and charged now,
	-- for the part of the period left when the anchor is elsewhere
	IF pay_create_subscription.billing_anchor IS NULL THEN
		anchor := now_ AT TIME ZONE pay_create_subscription.time_zone;
		n := 0;
		ps := now_;
	ELSE
		anchor := pay_create_subscription.billing_anchor;
		n := payments._period_index_at(anchor, pay_create_subscription.time_zone, iunit, icount, now_);
		ps := payments._period_start(anchor, pay_create_subscription.time_zone, iunit, icount, n);
	END IF;
	pe := payments._period_start(anchor, pay_create_subscription.time_zone, iunit, icount, n + 1);
	INSERT INTO payments.subscriptions (merchant_id, customer_id, plan_id, status, unit_amount, quantity,
		interval_unit, interval_count, payment_method_id, time_zone, billing_anchor,
		current_period_index, current_period_start, current_period_end, next_renewal_at,
		metadata, idempotency_key, correlation_id, gateway_tag)
	VALUES (m, c.customer_id, p.plan_id, 'incomplete', unit_, pay_create_subscription.quantity,
		iunit, icount, pay_create_subscription.payment_method_id, pay_create_subscription.time_zone, anchor,
		-- the billing run expires it if its first invoice is not paid in time
		n, ps, pe, now_ + payments._incomplete_expiry(),
		coalesce(pay_create_subscription.metadata, '{}'), pay_create_subscription.idempotency_key, corr,
		payments._server_tag())
	RETURNING * INTO s;
	inv := payments._issue_invoice(m, s.subscription_id, 'first', n, now_, pe,
		CASE WHEN now_ > ps THEN jsonb_build_array(payments._period_line(s, ps, pe, now_)) END);
	IF inv.status = 'paid' THEN
		-- nothing was due (a prorated part that rounds to zero)
		UPDATE payments.subscriptions x SET status = 'active'
		WHERE x.merchant_id = m AND x.subscription_id = s.subscription_id
		RETURNING * INTO s;
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments.pay_create_subscription(bigint, bigint, payments.pay_amount, text, integer, integer, bigint, integer, timestamp, text, jsonb, text, text) IS
	'Subscribes a customer of the current merchant to a plan (plan_id) or an explicit price per period (price, interval_unit, interval_count), times quantity, charged to payment_method_id (NULL: the customer''s default at each charge). With a trial (trial_days, default the plan''s): status trialing until the trial''s end, which is the billing anchor; no payment method is needed yet. Without: status incomplete, and the first invoice of the current period is issued and charged in this transaction (the payment goes out after COMMIT; paid -> active): the customer must have an active default method or one named (22Y22 otherwise). billing_anchor is a local wall-clock time in time_zone (an IANA name; default now): the period containing now is current and its remaining part is invoiced, prorated. Errors: PT404 unknown or foreign customer, plan or method; 22Y20 deleted customer, inactive plan, method not active; 22023 bad input. A repeated call with the same idempotency_key and arguments returns the subscription the first one made, whatever changed since (PT409 for other arguments). Returns the subscription row.';

------------------------------------------------------------------------------
-- h-trial-end-change: a change of plan, price or quantity once a trial has
-- ended (period 0 invoiced, the subscription trialing until that charge is
-- answered) is prorated as for an active subscription, no longer as in a
-- trial (sql/src/subscriptions.sql, _subscription_change).
-- Made once since: _subscription_change in h-paused-change (its final form).

------------------------------------------------------------------------------
-- h-expiry-clock: expiring cards are listed and noticed by the merchant's
-- billing date (_billing_now: its test clock while test clocks are on),
-- not the real date (sql/src/payment_methods.sql).

CREATE OR REPLACE FUNCTION payments.pay_expiring_payment_methods(within_days integer DEFAULT 30)
	RETURNS SETOF payments.payment_methods
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint;
	last_day date;
BEGIN
	IF within_days IS NULL OR within_days NOT BETWEEN 0 AND 3660 THEN
		RAISE EXCEPTION 'within_days must be between 0 and 3660' USING ERRCODE = '22023';
	END IF;
	m := payments.pay_current_merchant();
	-- days counted from the merchant's billing date (its test clock, if
	-- set): the UTC date, as a merchant has no time zone of its own (the
	-- session's, ::date, listed a card or not by the TimeZone of the
	-- client that asked)
	last_day := (payments._billing_now(m) AT TIME ZONE 'UTC')::date + within_days;
	RETURN QUERY SELECT x.* FROM payments.payment_methods x
	WHERE x.merchant_id = m AND x.status = 'active'
		AND x.card_exp_year IS NOT NULL
		AND payments._card_expires_at(x.card_exp_year, x.card_exp_month) <= last_day
	ORDER BY x.card_exp_year, x.card_exp_month, x.payment_method_id;
END
$$;
COMMENT ON FUNCTION payments.pay_expiring_payment_methods(integer) IS
	'The current merchant''s active payment methods whose card''s last valid day (the last day of its expiry month) is within within_days days (default 30; already expired ones too) of its billing date (the UTC date of pay_billing_now(): its test clock, if set; not the session''s TimeZone), soonest first.';

-- One payment_method.expiring event per active method, written once the
-- card's last valid day is within payments.expiring_notice_days (default
-- 30) days;
-- the worker's housekeeping runs it, and so may pg_cron (all merchants;
-- running it twice writes nothing twice).  Returns how many events it wrote.
CREATE OR REPLACE FUNCTION payments.pay_run_expiry_notices() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	days integer := current_setting('payments.expiring_notice_days')::integer;
	-- the latest billing date of any merchant: nothing is due after it
	-- (UTC dates, as in pay_expiring_payment_methods: not the TimeZone of
	-- the session that runs this, the worker's or pg_cron's)
	horizon date := (payments._billing_horizon(NULL) AT TIME ZONE 'UTC')::date;
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	n integer;
BEGIN
	-- a method someone holds locked waits for the next run: a caller's open
	-- transaction must not stop the notices of every merchant
	WITH locked AS (
		SELECT y.merchant_id, y.payment_method_id FROM payments.payment_methods y
		WHERE y.status = 'active' AND y.expiring_notified_at IS NULL AND y.card_exp_year IS NOT NULL
			AND payments._card_expires_at(y.card_exp_year, y.card_exp_month) <= horizon + days
			AND CASE WHEN clocks THEN payments._card_expires_at(y.card_exp_year, y.card_exp_month)
				<= (payments._billing_now(y.merchant_id) AT TIME ZONE 'UTC')::date + days ELSE true END
		FOR UPDATE SKIP LOCKED
	), due AS (
		UPDATE payments.payment_methods x SET expiring_notified_at = clock_timestamp()
		FROM locked l
		WHERE x.merchant_id = l.merchant_id AND x.payment_method_id = l.payment_method_id
			AND x.status = 'active' AND x.expiring_notified_at IS NULL
		RETURNING x.*
	)
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	SELECT d.merchant_id, 'payment_method.expiring',
		jsonb_build_object('payment_method_id', d.payment_method_id, 'customer_id', d.customer_id,
			'card_brand', d.card_brand, 'card_last4', d.card_last4, 'card_exp_month', d.card_exp_month,
			'card_exp_year', d.card_exp_year,
			'expires_at', payments._card_expires_at(d.card_exp_year, d.card_exp_month)),
		d.correlation_id
	FROM due d;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments.pay_run_expiry_notices() IS
	'Writes one payment_method.expiring event for each active payment method whose card''s last valid day is within payments.expiring_notice_days days (default 30) of its merchant''s billing date (the UTC date of its billing time: its test clock, if set; not the session''s TimeZone), once per method; all merchants. Run by the worker''s housekeeping; pg_cron may call it too. Returns how many events it wrote. Owner only.';

------------------------------------------------------------------------------
-- h-purchase-default: a purchase or authorization of a customer alone
-- charges its usable default as a subscription's charge does: while a new
-- default is still pending, the active method it replaced (it was refused
-- with 22Y22).  One home for that rule, _usable_default_method, used by
-- _stored_method_for_payment, _invoice_payment_method and the pending
-- default's replaced_default_id (sql/src/payment_methods.sql, billing.sql).
-- Made once since: _stored_method_for_payment in h-account-life;
-- pay_save_payment_method in h-account-customers (their final form).

CREATE FUNCTION payments._usable_default_method(p_merchant_id bigint, p_customer_id bigint)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	SELECT u.* INTO pm FROM payments.payment_methods d
	JOIN payments.payment_methods u ON u.merchant_id = d.merchant_id AND u.customer_id = d.customer_id
		AND u.payment_method_id = CASE WHEN d.status = 'active' THEN d.payment_method_id ELSE d.replaced_default_id END
	WHERE d.merchant_id = p_merchant_id AND d.customer_id = p_customer_id AND d.is_default
		AND d.status IN ('pending', 'active') AND u.status = 'active';
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._usable_default_method(bigint, bigint) IS
	'Internal: the customer''s usable default payment method: its active default, or, while the default is still pending, the active one that default replaced (NULL fields: none).';

-- The stored payment method an invoice of a subscription is charged to:
-- the subscription's own method while it is active, else the customer's
-- active default.  NULL fields when there is none.
CREATE OR REPLACE FUNCTION payments._invoice_payment_method(p_merchant_id bigint, p_customer_id bigint,
	p_payment_method_id bigint)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	IF p_payment_method_id IS NOT NULL THEN
		SELECT x.* INTO pm FROM payments.payment_methods x
		WHERE x.merchant_id = p_merchant_id AND x.customer_id = p_customer_id
			AND x.payment_method_id = p_payment_method_id AND x.status = 'active';
		IF FOUND THEN
			RETURN pm;
		END IF;
	END IF;
	RETURN payments._usable_default_method(p_merchant_id, p_customer_id);
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_method(bigint, bigint, bigint) IS
	'Internal: the payment method a subscription''s invoice is charged to: the subscription''s own (p_payment_method_id) while it is active, else the customer''s usable default (_usable_default_method: the active default, or while that default is still pending the active one it replaced).';

CREATE OR REPLACE FUNCTION payments.pay_set_default_payment_method(payment_method_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods := payments._find_payment_method(pay_set_default_payment_method.payment_method_id);
	idem payments.idempotency_keys;
	result payments.payment_methods;
	cname text;
	replaced bigint;
BEGIN
	-- the customer first, as pay_save_payment_method locks it: a default it
	-- saves meanwhile is then seen, not a unique violation
	PERFORM payments._find_customer(pm.customer_id, true);
	pm := payments._find_payment_method(pm.payment_method_id, true);
	idem := payments._idempotency_claim(pm.merchant_id,
		pay_set_default_payment_method.idempotency_key, 'set_default_payment_method',
		md5(jsonb_build_array(pm.payment_method_id)::text), pm.customer_id);
	IF idem.request_kind IS NULL AND pm.status NOT IN ('pending', 'active') THEN
		RAISE EXCEPTION 'cannot make payment method % in status % the default', pm.payment_method_id, pm.status
			USING ERRCODE = '22Y20';
	END IF;
	IF NOT pm.is_default AND idem.request_kind IS NULL THEN
		-- a pending one: the default it replaces stays the one charged until it is active
		replaced := CASE WHEN pm.status = 'pending'
			THEN (payments._usable_default_method(pm.merchant_id, pm.customer_id)).payment_method_id END;
		BEGIN
			UPDATE payments.payment_methods x SET is_default = false
			WHERE x.merchant_id = pm.merchant_id AND x.customer_id = pm.customer_id AND x.is_default;
			UPDATE payments.payment_methods x SET is_default = true, replaced_default_id = replaced
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
		EXCEPTION WHEN unique_violation THEN
			GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
			PERFORM payments._default_conflict(cname, pm.customer_id);
			RAISE;
		END;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (pm.merchant_id, 'payment_method.default', jsonb_build_object('payment_method_id',
			pm.payment_method_id, 'customer_id', pm.customer_id),
			payments._correlation_id(pay_set_default_payment_method.correlation_id));
	END IF;
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_set_default_payment_method(bigint, text, text) IS
	'Makes a pending or active payment method its customer''s default (the one charged when a customer, not a method, is given). A pending one: until it is active, charges of the customer''s default (subscriptions) use the active default it replaced, which is the default again if the save fails. Writes a payment_method.default event.';

DROP FUNCTION payments._usable_default_id(bigint, bigint);

------------------------------------------------------------------------------
-- h-list-key-creator: pay_list_api_keys shows created_by_key, the key each
-- key was made with (and is revoked with) (sql/src/api_keys.sql).  Both
-- new in 0.2.0: its row type pay_api_key_info is made with that column in
-- the h-tenancy block above, and the function only here.

CREATE FUNCTION payments.pay_list_api_keys(merchant_id bigint DEFAULT NULL)
	RETURNS SETOF payments.pay_api_key_info
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments._api_key_admin(pay_list_api_keys.merchant_id);
BEGIN
	-- a merchant named that does not exist is a wrong argument, not one
	-- without keys (as pay_create_api_key says)
	IF m IS NOT NULL AND NOT EXISTS (SELECT FROM payments.merchants x WHERE x.merchant_id = m) THEN
		RAISE EXCEPTION 'merchant % does not exist', m USING ERRCODE = 'PT404';
	END IF;
	-- revoked_at and expires_at as they count (_api_key_state): a key made
	-- in a transaction that committed after its creator's revocation is
	-- shown revoked, as every use of it is refused
	RETURN QUERY
	SELECT k.key_id, k.merchant_id, k.name, k.scopes, k.created_at, k.created_by, k.created_by_key, st.expires_at,
		st.revoked_at, k.rotated_at, k.previous_valid_until,
		greatest(u.last_used_at, payments._api_key_last_used(k.key_id)), k.rate_limit, k.burst
	FROM payments.api_keys k
	CROSS JOIN LATERAL payments._api_key_state(k.merchant_id, k.key_id) st
	LEFT JOIN payments.api_key_uses u ON u.merchant_id = k.merchant_id AND u.key_id = k.key_id
	WHERE m IS NULL OR k.merchant_id = m
	ORDER BY k.merchant_id, k.key_id;
END
$$;
COMMENT ON FUNCTION payments.pay_list_api_keys(bigint) IS
	'The API keys of a merchant (default: the caller''s; for the owner without merchant_id, every merchant''s), without secret or hash; created_by_key names the key each was made with (revoked with it), NULL for a key a role made; last_used_at includes uses not yet written to the table; revoked_at and expires_at as they count (a key made with a key is revoked when that key is, expires with it). PT404 for a merchant that does not exist. Same callers as pay_create_api_key.';

------------------------------------------------------------------------------
-- h-purchase-scope: pay_purchase and pay_authorize of a customer or a
-- stored method return, to an API key with neither the scope read nor
-- customers, no data from the customer's record (billing details and
-- email copied into customer, the stored card's brand, last four, expiry
-- and fingerprint: NULL in the returned row; the payment keeps them).  A
-- payments-only key read any customer's personal data by charging it
-- (sql/src/tenancy.sql, payment_api.sql; src/tenancy.c).

CREATE FUNCTION payments._key_has_scope(scope text) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pay_key_has_scope';
COMMENT ON FUNCTION payments._key_has_scope(text) IS
	'Internal: whether the request acting with an API key may do what the scope allows (the key has it; true without a key, false when nothing identifies the request; 22023 for an unknown scope).';

CREATE FUNCTION payments._payment_for_caller(p payments.payments, p_customer_copied boolean)
	RETURNS payments.payments
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF (p_customer_copied OR p.payment_method_id IS NOT NULL)
			AND NOT payments._key_has_scope('read') AND NOT payments._key_has_scope('customers') THEN
		IF p_customer_copied THEN
			p.customer := NULL;
		END IF;
		IF p.payment_method_id IS NOT NULL THEN
			p.card_brand := NULL;
			p.card_last4 := NULL;
			p.card_exp_month := NULL;
			p.card_exp_year := NULL;
			p.card_fingerprint := NULL;
		END IF;
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._payment_for_caller(payments.payments, boolean) IS
	'Internal: the payment row as pay_purchase and pay_authorize return it: for an API key with neither the scope read nor customers, customer (when copied from the customer, p_customer_copied) and a stored card''s brand, last four, expiry and fingerprint are NULL; the payment keeps them.';

CREATE OR REPLACE FUNCTION payments._create_payment(
	p_kind text, p_amount payments.pay_amount, p_card payments.pay_card, p_opaque_data jsonb,
	p_customer_profile_id text, p_payment_profile_id text, p_description text, p_order_ref text,
	p_customer jsonb, p_metadata jsonb, p_idempotency_key text, p_correlation_id text,
	p_customer_id bigint DEFAULT NULL, p_payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql
	-- no search_path of its own: its only callers, pay_purchase and
	-- pay_authorize, pin pg_catalog, payments, pg_temp, and one set again
	-- here cost each purchase 11,000 instructions (fmgr sets and restores it)
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	methods int := (p_card IS NOT NULL)::int + (p_opaque_data IS NOT NULL)::int
		+ (p_customer_profile_id IS NOT NULL OR p_payment_profile_id IS NOT NULL)::int
		+ (p_payment_method_id IS NOT NULL)::int;
	method text;
	stored payments.payment_methods;
	idem payments.idempotency_keys;
	pid bigint;
	oid_ bigint;
	corr text := payments._correlation_id(p_correlation_id);
	customer_copied boolean := false;
	made record;
	result payments.payments;
BEGIN
	IF p_amount IS NULL THEN
		RAISE EXCEPTION 'amount is required' USING ERRCODE = '22004';
	END IF;
	IF pay_minor_units(p_amount) <= 0 THEN
		RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('The amount given was %s.', p_amount);
	END IF;
	-- A repeated call returns what the first one made whatever changed
	-- since (the customer's details, its default method, the method
	-- deleted): the key is looked up, with the arguments as given, before
	-- the stored method and the customer's details are resolved and
	-- checked.  The customer's row is locked first, then the key: the
	-- order of every call that locks a customer and claims a key.  A card
	-- is in the hash by what a caller may know of it (brand, last four,
	-- expiry), not its fingerprint: a key reused with a card number tried
	-- would tell whether the number is the one first sent.
	IF p_idempotency_key IS NOT NULL THEN
		IF p_customer_id IS NOT NULL OR p_payment_method_id IS NOT NULL THEN
			PERFORM 1 FROM payments.customers x
			WHERE x.merchant_id = m AND x.customer_id = coalesce(p_customer_id,
				(SELECT y.customer_id FROM payments.payment_methods y
				 WHERE y.merchant_id = m AND y.payment_method_id = p_payment_method_id))
			FOR KEY SHARE;
		END IF;
		-- metadata {} is what leaving it out makes, and so is customer {}
		-- where there is no customer's record to copy from: a retry that
		-- sends them (a client that writes every field) is the same request
		idem := payments._idempotency_claim(m, p_idempotency_key, p_kind, md5(jsonb_build_array(
			p_amount::text, payments.pay_card_brand(p_card), payments.pay_card_last4(p_card),
			payments.pay_card_exp_month(p_card),
			payments.pay_card_exp_year(p_card), p_opaque_data, p_customer_profile_id, p_payment_profile_id,
			p_description, p_order_ref,
			CASE WHEN p_customer_id IS NULL AND p_payment_method_id IS NULL
				THEN nullif(p_customer, '{}') ELSE p_customer END,
			nullif(p_metadata, '{}'), p_customer_id, p_payment_method_id)::text));
		IF idem.payment_id IS NOT NULL THEN
			SELECT * INTO result FROM payments.payments WHERE merchant_id = m AND payment_id = idem.payment_id;
			customer_copied := p_customer IS NULL AND result.customer_id IS NOT NULL;
			RETURN CASE WHEN customer_copied OR result.payment_method_id IS NOT NULL
				THEN payments._payment_for_caller(result, customer_copied) ELSE result END;
		END IF;
	END IF;
	-- a customer or a stored method (payment_methods.sql): the method's
	-- profile is charged, the customer's details fill customer
	IF p_customer_id IS NOT NULL OR p_payment_method_id IS NOT NULL THEN
		stored := payments._stored_method_for_payment(p_customer_id, p_payment_method_id, methods);
		IF stored.payment_method_id IS NOT NULL THEN
			p_customer_profile_id := stored.customer_profile_id;
			p_payment_profile_id := stored.payment_profile_id;
			p_customer_id := stored.customer_id;
			methods := 1;
		END IF;
	END IF;
	IF p_customer_id IS NOT NULL AND p_customer IS NULL THEN
		p_customer := payments._customer_billing(p_customer_id);
		customer_copied := true;
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
	-- metadata and order_ref are kept, not sent: bounds and no card number
	-- (the description and customer: _check_gateway_input)
	IF p_metadata IS NOT NULL THEN
		PERFORM payments._check_metadata(p_metadata);
	END IF;
	IF p_order_ref IS NOT NULL THEN
		PERFORM payments._check_text('order_ref', p_order_ref, 255);
	END IF;
	PERFORM payments._check_gateway_input(p_amount, p_description, p_customer, corr,
		p_customer_profile_id, p_payment_profile_id);
	-- profile ids the caller gave, once their form is checked: a
	-- malformed id is 22Y22 and a card number 22Y17 on a shared gateway
	-- account too (neither can be a profile of anyone's, so saying so
	-- tells nothing of the others' customers; before, such an id got
	-- PT404 there, and a card number given as one was not refused as one)
	IF method = 'profile' AND stored.payment_method_id IS NULL THEN
		PERFORM payments._check_profile_owner(m, p_customer_profile_id);
	END IF;

	-- The payment, its operation and the sealed card or nonce (it can
	-- charge the card once: it waits sealed, like a card) in one statement:
	-- each statement costs a purchase an executor of its own.  The payment
	-- is written first (the operation reads it), so its event comes first.
	pid := nextval('payments.payments_payment_id_seq');
	oid_ := nextval('payments.operations_operation_id_seq');
	WITH p AS (
	INSERT INTO payments.payments AS n (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description, order_ref,
		customer, metadata, correlation_id, idempotency_key, customer_id, payment_method_id)
	OVERRIDING SYSTEM VALUE
	VALUES (m, pid, p_kind, p_amount, p_amount * 0, method,
		coalesce(payments.pay_card_brand(p_card), stored.card_brand),
		coalesce(payments.pay_card_last4(p_card), stored.card_last4),
		coalesce(payments.pay_card_exp_month(p_card), stored.card_exp_month),
		coalesce(payments.pay_card_exp_year(p_card), stored.card_exp_year),
		-- a card's fingerprint comes with the gateway's answer (see
		-- _record_final_results)
		stored.card_fingerprint,
		p_customer_profile_id, p_payment_profile_id,
		'P' || coalesce(payments._server_tag(), payments._invoice_tag()) || pid, p_description, p_order_ref,
		coalesce(p_customer, '{}'), coalesce(p_metadata, '{}'), corr, p_idempotency_key,
		p_customer_id, stored.payment_method_id)
	RETURNING n
	), o AS (
	INSERT INTO payments.operations (operation_id, merchant_id, payment_id, kind, amount,
		idempotency_key, correlation_id)
	OVERRIDING SYSTEM VALUE
	SELECT oid_, m, pid, p_kind, p_amount, p_idempotency_key, corr FROM p
	RETURNING operation_id
	), v AS (
	INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
	SELECT m, o.operation_id, CASE WHEN p_card IS NOT NULL THEN payments._card_sealed(p_card)
		ELSE payments._opaque_data_sealed(p_opaque_data ->> 'dataDescriptor', p_opaque_data ->> 'dataValue') END
	FROM o WHERE p_card IS NOT NULL OR p_opaque_data IS NOT NULL
	)
	-- the row as one value: (p.n).* would build a projection of every
	-- column of payments, 29,000 instructions of each purchase.  o and v
	-- run to their end with the statement, read or not: v reads o, which
	-- reads p, so the payment is still written first
	SELECT p.n INTO made FROM p;
	result := made.n;

	IF p_idempotency_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = pid, operation_id = oid_,
			customer_id = result.customer_id
		WHERE merchant_id = m AND idempotency_key = p_idempotency_key;
	END IF;
	PERFORM payments._wake_at_commit();
	-- (only a payment of a customer or stored method has anything to hide:
	-- a card payment's row goes back without another function call)
	RETURN CASE WHEN customer_copied OR result.payment_method_id IS NOT NULL
		THEN payments._payment_for_caller(result, customer_copied) ELSE result END;
END
$$;
COMMENT ON FUNCTION payments._create_payment(text, payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Internal: records a purchase or authorization and its gateway operation; the worker sends it after COMMIT. Returns the payment row as _payment_for_caller shows it.';

------------------------------------------------------------------------------
-- h-free-text-bounds: a correlation id is at most 200 characters, the
-- profile ids hold no card number, and no error quotes a caller's text
-- (src/free_text.c, gateway_input.c; sql/src/payment_api.sql,
-- subscriptions.sql, billing.sql, payment_search.sql, api_keys.sql).  A
-- correlation id over 200 characters (argument, x-request-id or
-- traceparent header, payments.correlation_id) is refused with 22001
-- (_check_correlation_id, which also masks it; the audit trigger and the
-- setting's check hook in the library); a customer_profile_id or
-- payment_profile_id that holds a card number with 22Y17 (in the library).
-- An unknown time zone, status, interval_unit, final_action or API key
-- scope is refused without quoting it.  The replaced API functions get
-- their scopes back at the end of this script (privileges.sql).
-- Made once since: _check_time_zone in h-null-arguments (its final form).

CREATE FUNCTION payments._check_correlation_id(value text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_correlation_id';
COMMENT ON FUNCTION payments._check_correlation_id(text) IS
	'Internal: the correlation id as it is kept: raises 22001 when it is longer than 200 characters (the message never quotes it), else returns it with every digit of the card numbers it holds replaced by X (a UUID or a W3C traceparent as it is).';

-- In C (payment_api.sql, src/correlation_id.c): it runs in every API call.
CREATE OR REPLACE FUNCTION payments._correlation_id(given text) RETURNS text
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_correlation_id';
COMMENT ON FUNCTION payments._correlation_id(text) IS
	'Internal: the correlation id of the current request (argument, x-request-id or traceparent header, payments.correlation_id setting, or a new one), the digits of any card number in it masked (a UUID or a W3C traceparent kept as it is); 22001 when it is longer than 200 characters.';

-- A billing interval: day, week, month or year, times 1 to 366.
CREATE OR REPLACE FUNCTION payments._check_billing_interval(p_unit text, p_count integer) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF p_unit IS NULL OR p_unit NOT IN ('day', 'week', 'month', 'year') THEN
		RAISE EXCEPTION 'interval_unit must be day, week, month or year'
			USING ERRCODE = '22023', DETAIL = CASE WHEN p_unit IS NULL THEN 'No interval_unit was given.'
				ELSE 'The interval_unit given is not quoted.' END;
	END IF;
	IF p_count IS NULL OR p_count NOT BETWEEN 1 AND 366 THEN
		RAISE EXCEPTION 'interval_count must be between 1 and 366'
			USING ERRCODE = '22023', DETAIL = format('The interval_count given was %s.', coalesce(p_count::text, 'NULL'));
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_billing_interval(text, integer) IS
	'Internal: raises 22023 unless the interval is day, week, month or year times 1 to 366.';

CREATE OR REPLACE FUNCTION payments.pay_list_subscriptions(
	customer_id bigint DEFAULT NULL,
	status text DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.subscriptions
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	PERFORM payments._check_page_size(page_size, 'subscription_id');
	IF pay_list_subscriptions.status IS NOT NULL AND pay_list_subscriptions.status NOT IN ('trialing', 'incomplete',
			'incomplete_expired', 'active', 'past_due', 'paused', 'canceled', 'unpaid') THEN
		RAISE EXCEPTION 'unknown subscription status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.',
				HINT = 'A status is one of trialing, incomplete, incomplete_expired, active, past_due, paused, canceled, unpaid.';
	END IF;
	IF pay_list_subscriptions.customer_id IS NOT NULL THEN
		PERFORM payments._find_customer(pay_list_subscriptions.customer_id);
	END IF;
	IF after IS NOT NULL THEN
		SELECT x.created_at INTO cursor_at FROM payments.subscriptions x
		WHERE x.merchant_id = m AND x.subscription_id = pay_list_subscriptions.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor subscription % is not a subscription of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last subscription_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT x.* FROM payments.subscriptions x
	WHERE x.merchant_id = m
		AND (pay_list_subscriptions.after IS NULL
			OR (x.created_at, x.subscription_id) < (cursor_at, pay_list_subscriptions.after))
		AND (pay_list_subscriptions.customer_id IS NULL OR x.customer_id = pay_list_subscriptions.customer_id)
		AND (pay_list_subscriptions.status IS NULL OR x.status = pay_list_subscriptions.status)
	ORDER BY x.created_at DESC, x.subscription_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_subscriptions(bigint, text, bigint, integer) IS
	'The current merchant''s subscriptions, newest first (created_at, then subscription_id), at most page_size (1-500, default 50) per call; filters customer_id (PT404 for an unknown or foreign one) and status. Keyset pagination: pass as after the last subscription_id of the previous page.';

CREATE OR REPLACE FUNCTION payments.pay_list_invoices(
	subscription_id bigint DEFAULT NULL,
	status text DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.invoices
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last invoice_id of this one.';
	END IF;
	IF pay_list_invoices.status IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.status_transitions t
			WHERE t.entity = 'invoice' AND pay_list_invoices.status IN (t.from_status, t.to_status)) THEN
		RAISE EXCEPTION 'unknown invoice status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.', HINT = 'An invoice status is one of open, paid, uncollectible, void.';
	END IF;
	IF pay_list_invoices.subscription_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.subscriptions s
			WHERE s.merchant_id = m AND s.subscription_id = pay_list_invoices.subscription_id) THEN
		RAISE EXCEPTION 'subscription % not found', pay_list_invoices.subscription_id
			USING ERRCODE = 'PT404', HINT = 'Subscription ids are per merchant; check pay_current_merchant().';
	END IF;
	IF after IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.invoices x
			WHERE x.merchant_id = m AND x.invoice_id = pay_list_invoices.after) THEN
		RAISE EXCEPTION 'the cursor invoice % is not an invoice of this merchant', after
			USING ERRCODE = '22023', HINT = 'Pass as after the last invoice_id of the page before.';
	END IF;
	RETURN QUERY
	SELECT i.* FROM payments.invoices i
	WHERE i.merchant_id = m
		AND (pay_list_invoices.subscription_id IS NULL OR i.subscription_id = pay_list_invoices.subscription_id)
		AND (pay_list_invoices.status IS NULL OR i.status = pay_list_invoices.status)
		AND (after IS NULL OR i.invoice_id < after)
	ORDER BY i.invoice_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_invoices(bigint, text, bigint, integer) IS
	'The current merchant''s invoices, newest first (by invoice_id), at most page_size (1-500, default 50) per call; filters subscription_id (PT404 when not the merchant''s) and status (open, paid, uncollectible, void). Keyset pagination: pass as after the last invoice_id of the previous page (22023 when it is not an invoice of the merchant).';

CREATE OR REPLACE FUNCTION payments.pay_set_dunning_policy(retry_days integer[] DEFAULT NULL, final_action text DEFAULT NULL)
	RETURNS payments.dunning_policies
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cur payments.dunning_policies := payments._dunning_policy(m);
	days integer[] := coalesce(pay_set_dunning_policy.retry_days, cur.retry_days);
	action_ text := coalesce(pay_set_dunning_policy.final_action, cur.final_action);
	r payments.dunning_policies;
BEGIN
	IF array_ndims(days) > 1 OR cardinality(days) > 10 OR array_position(days, NULL) IS NOT NULL
		OR EXISTS (SELECT 1 FROM unnest(days) d WHERE d NOT BETWEEN 1 AND 366)
		OR days IS DISTINCT FROM ARRAY(SELECT DISTINCT d FROM unnest(days) d ORDER BY d) THEN
		RAISE EXCEPTION 'retry_days must be at most 10 increasing days between 1 and 366'
			USING ERRCODE = '22023',
				DETAIL = format('The retry_days given were %s.', days),
				HINT = 'Days are counted from the first failed charge, e.g. ''{1,3,5,7}''; ''{}'' applies the final action at the first failure.';
	END IF;
	IF action_ NOT IN ('canceled', 'unpaid') THEN
		RAISE EXCEPTION 'final_action must be canceled or unpaid'
			USING ERRCODE = '22023', DETAIL = CASE WHEN action_ IS NULL THEN 'No final_action was given.'
				ELSE 'The final_action given is not quoted.' END;
	END IF;
	INSERT INTO payments.dunning_policies AS d (merchant_id, retry_days, final_action)
	VALUES (m, days, action_)
	ON CONFLICT (merchant_id) DO UPDATE SET retry_days = EXCLUDED.retry_days,
		final_action = EXCLUDED.final_action, updated_at = now()
	RETURNING d.* INTO r;
	-- the retries already scheduled follow the new policy too
	PERFORM payments._reschedule_dunning(m);
	RETURN r;
END
$$;
COMMENT ON FUNCTION payments.pay_set_dunning_policy(integer[], text) IS
	'Sets the current merchant''s dunning policy (NULL: that part unchanged): retry_days, at most 10 increasing days (1-366) after a charge''s first failure on which it is tried again (''{}'': none), and final_action after the last one fails, canceled or unpaid. Applies to failures from now on and to retries not yet made: an invoice already waiting for a retry is scheduled again from its first failure by the new days (invoice.retry_scheduled, reason policy_changed), or given the (new) final action at once when no day is left. Returns the policy.';

CREATE OR REPLACE FUNCTION payments.pay_list_payments(
	status text DEFAULT NULL,
	created_from timestamptz DEFAULT NULL,
	created_to timestamptz DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer_email text DEFAULT NULL,
	amount_min payments.pay_amount DEFAULT NULL,
	amount_max payments.pay_amount DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.payments
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last payment_id of this one.';
	END IF;
	IF pay_list_payments.status IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.status_transitions t
			WHERE t.entity = 'payment' AND pay_list_payments.status IN (t.from_status, t.to_status)) THEN
		RAISE EXCEPTION 'unknown payment status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.',
				HINT = 'A payment status is one of pending, requires_capture, succeeded, failed, canceled, refunded, partially_refunded, in_review, unknown.';
	END IF;
	IF created_from > created_to THEN
		RAISE EXCEPTION 'created_from is after created_to' USING ERRCODE = '22023';
	END IF;
	IF payments.pay_currency(amount_min) <> payments.pay_currency(amount_max) THEN
		RAISE EXCEPTION 'amount_min and amount_max are in different currencies'
			USING ERRCODE = '22Y03', DETAIL = format('%s and %s were given.', amount_min, amount_max);
	END IF;
	IF after IS NOT NULL THEN
		SELECT p.created_at INTO cursor_at FROM payments.payments p
		WHERE p.merchant_id = m AND p.payment_id = pay_list_payments.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor payment % is not a payment of this merchant', after
				USING ERRCODE = '22023',
					HINT = 'Pass as after the last payment_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY EXECUTE payments._list_payments_query(after IS NOT NULL,
		pay_list_payments.status IS NOT NULL, created_from IS NOT NULL, created_to IS NOT NULL,
		pay_list_payments.order_ref IS NOT NULL, customer_email IS NOT NULL,
		amount_min IS NOT NULL, amount_max IS NOT NULL)
	USING m, cursor_at, after, pay_list_payments.status, created_from, created_to,
		pay_list_payments.order_ref, customer_email,
		payments.pay_currency(coalesce(amount_min, amount_max)),
		payments.pay_minor_units(amount_min), payments.pay_minor_units(amount_max), page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_payments(text, timestamptz, timestamptz, text, text, payments.pay_amount, payments.pay_amount, bigint, integer) IS
	'The current merchant''s payments, newest first (created_at, then payment_id), at most page_size (1-500, default 50) per call. Filters, all optional and combined: status, created_from (inclusive) and created_to (exclusive), order_ref, customer_email (customer ->> ''email'', any case), amount_min and amount_max (one currency). Keyset pagination: pass as after the last payment_id of the previous page. Raises 22023 for a bad page_size, status, date range or cursor.';

CREATE OR REPLACE FUNCTION payments._check_api_key_scopes(scopes text[]) RETURNS text[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	bad bigint;
BEGIN
	IF scopes IS NULL OR cardinality(scopes) = 0 THEN
		RAISE EXCEPTION 'an API key needs at least one scope' USING ERRCODE = '22023',
			HINT = 'The scopes are read, payments, refunds, customers and admin.';
	END IF;
	-- the scope is named by its place, not quoted: a caller's text
	SELECT n INTO bad FROM unnest(scopes) WITH ORDINALITY x(s, n)
	WHERE s IS NULL OR s NOT IN ('read', 'payments', 'refunds', 'customers', 'admin') ORDER BY n LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown API key scope' USING ERRCODE = '22023',
			DETAIL = format('Scope %s of the %s given is not a scope; it is not quoted.', bad, cardinality(scopes)),
			HINT = 'The scopes are read, payments, refunds, customers and admin.';
	END IF;
	RETURN ARRAY(SELECT DISTINCT s FROM unnest(scopes) s ORDER BY 1);
END
$$;
COMMENT ON FUNCTION payments._check_api_key_scopes(text[]) IS 'Internal: the scopes of a new key, checked (22023) and sorted.';

------------------------------------------------------------------------------
-- h-period-charge-number: a charge of a subscription period's invoice is
-- numbered by subscription, period and attempt (S, tag, base 36), not by
-- its payment id, so that a billing run repeated on a promoted standby
-- that lacks the old primary's last commits is caught by the gateway's
-- duplicate check (sql/src/billing.sql).
------------------------------------------------------------------------------

-- The invoice number a charge of an invoice carries at the gateway.  A
-- period's charge is numbered by what it is (subscription, period, attempt),
-- not by its payment id: a billing run repeated on a promoted standby that
-- lacks the old primary's last commits makes the same charge again under
-- the same number, which the gateway's duplicate check answers with the
-- original transaction (charged once).  S, the subscription's tag (p_tag:
-- subscriptions.gateway_tag, the server life it was made in; NULL, made
-- before any change of server: the installation's), then the three numbers
-- in base 36 at fixed widths (8, 3, 2: 20 characters, the gateway's limit);
-- a charge beyond those widths, and a proration's, gets its payment's
-- number (P, tag, payment id).  A subscription made after the database
-- changed server may have the id of one the server before made after the
-- copy: with the installation's tag, its first charge had that one's
-- number, and at the same price and card the gateway answered it
-- "duplicate" with the other's charge.
CREATE FUNCTION payments._invoice_charge_number(p_invoice payments.invoices, p_payment_id bigint,
	p_tag text DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	digits constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
	parts constant bigint[] := ARRAY[p_invoice.subscription_id, p_invoice.period_index, p_invoice.attempt_count];
	widths constant integer[] := ARRAY[8, 3, 2];
	num text := '';
	v bigint;
BEGIN
	IF p_invoice.kind IN ('first', 'renewal') THEN
		FOR i IN 1 .. 3 LOOP
			v := parts[i];
			EXIT WHEN v IS NULL OR v < 0 OR v >= (36::bigint ^ widths[i])::bigint;
			FOR j IN REVERSE widths[i] - 1 .. 0 LOOP
				num := num || substr(digits, (v / (36::bigint ^ j)::bigint % 36)::integer + 1, 1);
			END LOOP;
			IF i = 3 THEN
				RETURN 'S' || coalesce(p_tag, payments._invoice_tag()) || num;
			END IF;
		END LOOP;
	END IF;
	RETURN 'P' || coalesce(payments._server_tag(), payments._invoice_tag()) || p_payment_id;
END
$$;
COMMENT ON FUNCTION payments._invoice_charge_number(payments.invoices, bigint, text) IS
	'Internal: the invoice number of payment p_payment_id, a charge of invoice p_invoice: for a first or renewal invoice S, p_tag (the subscription''s gateway_tag: the server life it was made in; NULL: the installation''s tag), then the subscription id, the period index and the attempt (attempt_count, this charge''s) in base 36 at widths 8, 3 and 2, so that a billing run repeated after a failover makes the same charge under the same number and the gateway''s duplicate check catches it; else, and beyond those widths, P, the tag and the payment id, as for any payment.';

-- The payment and its operation (one home for _charge_invoice and
-- _issue_invoice): payment p_payment_id of invoice p_invoice, by method pm.
CREATE OR REPLACE FUNCTION payments._queue_invoice_charge(p_invoice payments.invoices, pm payments.payment_methods,
	p_payment_id bigint, p_background boolean)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
	-- under the tag of the server life the subscription was made in
	num text := payments._invoice_charge_number(p_invoice, p_payment_id,
		(SELECT s.gateway_tag FROM payments.subscriptions s
		 WHERE s.merchant_id = p_invoice.merchant_id AND s.subscription_id = p_invoice.subscription_id));
	-- when this attempt came due on the server before: a scheduled retry's
	-- time (next_attempt_at, which a charge made at once ahead of its retry
	-- has too: the same attempt, the same number), else, for a billing
	-- run's charge only, its period's start (a charge made at once for an
	-- event here with no retry scheduled, such as a resumed subscription's
	-- renewal, is this server's own)
	due timestamptz := CASE WHEN p_background
		THEN coalesce(p_invoice.next_attempt_at, p_invoice.period_start)
		ELSE p_invoice.next_attempt_at END;
	changed timestamptz := (SELECT w.changed_at FROM payments.worker_server w);
	-- the server before this one may have made it (same invoice number)
	maybe_made boolean := coalesce(num LIKE 'S%' AND due < changed, false);
BEGIN
	SELECT * INTO c FROM payments.customers x
	WHERE x.merchant_id = p_invoice.merchant_id AND x.customer_id = p_invoice.customer_id;
	INSERT INTO payments.payments (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description,
		customer, metadata, correlation_id, customer_id, payment_method_id, invoice_id)
	OVERRIDING SYSTEM VALUE
	VALUES (p_invoice.merchant_id, p_payment_id, 'purchase', p_invoice.amount, p_invoice.amount * 0, 'profile',
		pm.card_brand, pm.card_last4, pm.card_exp_month, pm.card_exp_year, pm.card_fingerprint,
		pm.customer_profile_id, pm.payment_profile_id, num,
		format('Subscription %s, invoice %s', p_invoice.subscription_id, p_invoice.invoice_id),
		c.billing || jsonb_strip_nulls(jsonb_build_object('email', c.email)),
		jsonb_build_object('invoice_id', p_invoice.invoice_id, 'subscription_id', p_invoice.subscription_id),
		p_invoice.correlation_id, p_invoice.customer_id, pm.payment_method_id, p_invoice.invoice_id);
	-- One that came due before the database changed server (a failover, a
	-- restore: changed_at) may have been charged there under this number,
	-- in a history lost here: it is treated as sent when it came due, so
	-- it is resent identically inside the duplicate window (the gateway
	-- answers with the original) and looked up past it, never charged again.
	INSERT INTO payments.operations (merchant_id, payment_id, kind, amount, correlation_id, background,
		never_sent, first_sent_at, last_error)
	VALUES (p_invoice.merchant_id, p_payment_id, 'purchase', p_invoice.amount, p_invoice.correlation_id,
		p_background, NOT maybe_made, CASE WHEN maybe_made THEN due END,
		CASE WHEN maybe_made THEN format('due at %s, before the database changed server at %s: the server before may have charged it', due, changed) END);
	PERFORM payments._wake_at_commit();
END
$$;
COMMENT ON FUNCTION payments._queue_invoice_charge(payments.invoices, payments.payment_methods, bigint, boolean) IS
	'Internal: queues payment p_payment_id of an invoice (a purchase of stored method pm) and its operation for the worker (p_background: a billing run''s, claimed after ordinary operations). p_invoice.attempt_count is this charge''s attempt (its invoice number, _invoice_charge_number); the caller records the attempt on the invoice. A charge under a subscription''s invoice number that came due before the database changed server (p_invoice.next_attempt_at: a scheduled retry, or a charge made at once ahead of it; else, for a billing run''s, its period''s start) (worker_server.changed_at) is queued as possibly sent when it came due: resent identically inside the duplicate window, looked up past it.';

CREATE OR REPLACE FUNCTION payments._charge_invoice(p_merchant_id bigint, p_invoice_id bigint,
	p_background boolean DEFAULT false) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	pm payments.payment_methods;
	pid bigint;
BEGIN
	SELECT * INTO inv FROM payments.invoices i
	WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id
	FOR UPDATE;
	IF NOT FOUND OR inv.status NOT IN ('open', 'uncollectible') OR pay_minor_units(inv.amount) = 0 THEN
		RETURN NULL;
	END IF;
	SELECT * INTO s FROM payments.subscriptions x
	WHERE x.merchant_id = inv.merchant_id AND x.subscription_id = inv.subscription_id;
	-- the subscription's method while it is usable, else the customer's default
	pm := payments._invoice_payment_method(inv.merchant_id, inv.customer_id, s.payment_method_id);
	IF pm.payment_method_id IS NULL THEN
		RETURN NULL;
	END IF;
	pid := nextval('payments.payments_payment_id_seq');
	inv.attempt_count := inv.attempt_count + 1;	-- this charge's (its invoice number)
	PERFORM payments._queue_invoice_charge(inv, pm, pid, p_background);
	UPDATE payments.invoices SET payment_id = pid, attempt_count = inv.attempt_count,
		next_attempt_at = NULL
	WHERE merchant_id = inv.merchant_id AND invoice_id = inv.invoice_id;
	RETURN pid;
END
$$;
COMMENT ON FUNCTION payments._charge_invoice(bigint, bigint, boolean) IS
	'Internal: one charge attempt of an open invoice: a purchase of the subscription''s payment method (or the customer''s default), sent by the worker after COMMIT (p_background: a billing run''s, claimed after ordinary operations). Returns the payment id, or NULL when there is nothing to charge or no usable payment method.';

-- an Accept.js payment learns its last four only from four digits the
-- gateway shows (never 'XXXX'): the lookups compare them
-- (pay_resolve_dead_letter records from the dead status: p_from_status)
CREATE FUNCTION payments._record_final_results(
	p_merchant_id bigint[], p_operation_id bigint[], p_outcome text[],
	p_response_code integer[], p_reason_code integer[], p_reason_text text[],
	p_trans_id text[], p_auth_code text[], p_avs text[], p_cvv text[],
	p_error text[], p_account_number text[], p_card_fingerprint text[],
	p_from_status text DEFAULT 'sending')
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
DECLARE
	n integer;
BEGIN
	WITH r AS (
		SELECT * FROM unnest(p_merchant_id, p_operation_id, p_outcome, p_response_code,
			p_reason_code, p_reason_text, p_trans_id, p_auth_code, p_avs, p_cvv, p_error,
			p_account_number, p_card_fingerprint) AS r(merchant_id, operation_id, outcome,
			response_code, reason_code, reason_text, trans_id, auth_code, avs, cvv, error,
			account_number, card_fingerprint)
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
			AND o.status = p_from_status AND o.kind IN ('purchase', 'authorize')
			AND t.operation_kind = o.kind AND t.outcome = r.outcome
			AND t.operation_status IN ('succeeded', 'failed')
		RETURNING o.merchant_id, o.operation_id, o.payment_id, t.operation_status,
			t.payment_status, r.reason_code, r.reason_text, r.trans_id, r.auth_code, r.avs, r.cvv,
			r.error, r.account_number, r.card_fingerprint
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
		card_last4 = coalesce(p.card_last4, substring(ops.account_number FROM '([0-9]{4})$')),
		card_fingerprint = coalesce(p.card_fingerprint, ops.card_fingerprint),
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
COMMENT ON FUNCTION payments._record_final_results(bigint[], bigint[], text[], integer[], integer[], text[], text[], text[], text[], text[], text[], text[], text[], text) IS
	'Worker, step 3, set-based: records the gateway''s final answers to purchases and authorizations (arrays, one element per operation) and moves their payments on; a card payment learns its fingerprint here. p_from_status: the operations'' status (sending; dead for pay_resolve_dead_letter).';
REVOKE ALL ON FUNCTION payments._record_final_results(bigint[], bigint[], text[], integer[], integer[], text[], text[], text[], text[], text[], text[], text[], text[], text) FROM PUBLIC;

COMMENT ON FUNCTION payments._invoice_tag() IS
	'Internal: this installation''s six-character tag in invoice numbers (R<tag><operation_id>; P<tag><payment_id>, S<tag> and a subscription period''s charge, _invoice_charge_number, and C<tag><customer_id> of payments, subscriptions and customers made before the database first changed server; after it, the server life''s tag: _server_tag()), from installation_secrets.';

------------------------------------------------------------------------------
-- h-worker-chores: the worker's periodic chores read only what they need
-- (sql/src/worker.sql).  Parking the operations of unconfigured merchants
-- reads nothing when every merchant is configured, and the settlement
-- check lists each merchant's oldest captures, a bounded number per round.
-- Made once since: _settlement_candidates in h-account-life (its final form).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments._park_unconfigured() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	-- each operation found by its key, never a scan of the table
	SET enable_seqscan = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	AS $$
DECLARE
	n integer;
BEGIN
	-- Every merchant configured (the rule): no operation is read.  (A
	-- search of every due operation went through the ready index's entries
	-- of all operations done since its last vacuum: a second of the
	-- worker's loop once a minute at a thousand payments a second, every
	-- payment waiting.)
	IF NOT EXISTS (SELECT 1 FROM payments.merchants m
		WHERE NOT EXISTS (SELECT 1 FROM payments.gateway_config g WHERE g.merchant_id = m.merchant_id)) THEN
		RETURN 0;
	END IF;
	-- else from those merchants, each one's due operations (locked and
	-- checked as read), then each by its key
	WITH r AS MATERIALIZED (
		SELECT r.merchant_id, r.operation_id FROM payments.merchants m
		CROSS JOIN LATERAL (SELECT x.merchant_id, x.operation_id FROM payments.operations x
			WHERE x.background IN (false, true) AND x.merchant_id = m.merchant_id
				AND x.status IN ('queued', 'unknown') AND x.next_attempt_at <= now()
			FOR UPDATE SKIP LOCKED) r
		WHERE NOT EXISTS (SELECT 1 FROM payments.gateway_config g WHERE g.merchant_id = m.merchant_id))
	UPDATE payments.operations o SET next_attempt_at = now() + interval '1 minute',
		last_error = 'no gateway is configured for this merchant (pay_configure_gateway)'
	FROM r
	WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._park_unconfigured() IS
	'Worker housekeeping: operations of merchants without a gateway configuration wait a minute at a time, with a note.';

------------------------------------------------------------------------------
-- h-claim-scaling: a claim costs what is due, not what is configured or
-- waiting (sql/src/worker.sql, billing.sql).  It read every configured
-- merchant's gateway connection, through an SQL function each, and probed
-- every merchant with operations waiting for later, every round.
-- Made once since: _claim_operations in h-account-life (its final form).
------------------------------------------------------------------------------
CREATE INDEX operations_due ON payments.operations (next_attempt_at) INCLUDE (background, merchant_id)
	WHERE status IN ('queued', 'unknown');

------------------------------------------------------------------------------
-- h-image-statistics: no statistics of the large values no query filters
-- on whole (sql/src/audit.sql, payment_tables.sql): the audit's row images
-- and hash, the events' data, the exchanges' masked messages.  ANALYZE
-- spent most of its time on them, about a second of CPU each time
-- autovacuum analyzed the three tables of a busy installation.
------------------------------------------------------------------------------
ALTER TABLE payments.audit_log ALTER COLUMN old_row SET STATISTICS 0,
	ALTER COLUMN new_row SET STATISTICS 0, ALTER COLUMN row_hash SET STATISTICS 0;
ALTER TABLE payments.gateway_exchanges ALTER COLUMN request_masked SET STATISTICS 0,
	ALTER COLUMN response_masked SET STATISTICS 0;
ALTER TABLE payments.events ALTER COLUMN data SET STATISTICS 0;

------------------------------------------------------------------------------
-- h-paused-change: a paused subscription takes a change of its amount only
-- with proration none (sql/src/subscriptions.sql, _subscription_change):
-- its period was paid at the old amount and a resume within it charges
-- nothing more, so pause, add seats and resume gave the seats for the rest
-- of the period free.
------------------------------------------------------------------------------
-- What a change does, computed and checked, without changing anything
-- (pay_change_subscription applies it, pay_preview_subscription_change
-- shows it): the new terms and the proration lines at p_at.
CREATE OR REPLACE FUNCTION payments._subscription_change(s payments.subscriptions, p_plan_id bigint,
	p_price payments.pay_amount, p_quantity integer, p_proration text, p_at timestamptz)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans;
	new_plan bigint := s.plan_id;
	new_unit payments.pay_amount := s.unit_amount;
	new_qty integer := coalesce(p_quantity, s.quantity);
	effective text := p_proration;
	-- what the current period was billed at: a change without proration
	-- set the terms of the next period only (period_amount keeps this
	-- period's); a credit for its unused part at the new terms credited
	-- (or charged) money never paid
	old_total payments.pay_amount := coalesce(s.period_amount, s.unit_amount * s.quantity);
	new_total payments.pay_amount;
	credit payments.pay_amount;
	charge payments.pay_amount;
	next_invoice payments.pay_amount;
	lines jsonb := '[]';
	-- the change's wall-clock time in the lines, as to_char writes it (its
	-- text followed the DateStyle of the session that made the change)
	at_local text := to_char(p_at AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS');
BEGIN
	IF p_proration IS NULL OR p_proration NOT IN ('none', 'next_invoice', 'invoice_now') THEN
		RAISE EXCEPTION 'proration must be none, next_invoice or invoice_now'
			USING ERRCODE = '22023',
				HINT = 'none changes the price from the next period; next_invoice adds the difference for the rest of this period to the next invoice; invoice_now charges it at once.';
	END IF;
	IF p_plan_id IS NOT NULL AND p_price IS NOT NULL THEN
		RAISE EXCEPTION 'plan_id and price cannot both be given' USING ERRCODE = '22023';
	END IF;
	IF p_plan_id IS NULL AND p_price IS NULL AND p_quantity IS NULL THEN
		RAISE EXCEPTION 'nothing to change' USING ERRCODE = '22023', HINT = 'Pass plan_id, price or quantity.';
	END IF;
	PERFORM payments._require_not_ended(s, 'change');
	IF s.status NOT IN ('active', 'trialing', 'paused') THEN
		RAISE EXCEPTION 'cannot change subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Change it once its open invoice is paid (status active).';
	END IF;
	IF p_plan_id IS NOT NULL THEN
		p := payments._find_plan(p_plan_id);
		IF NOT p.active AND p.plan_id IS DISTINCT FROM s.plan_id THEN
			RAISE EXCEPTION 'plan % is inactive', p.plan_id
				USING ERRCODE = '22Y20', HINT = 'Inactive plans take no new subscriptions; make it active again (pay_update_plan) or use another.';
		END IF;
		IF p.interval_unit <> s.interval_unit OR p.interval_count <> s.interval_count THEN
			RAISE EXCEPTION 'cannot change the billing interval of subscription %', s.subscription_id
				USING ERRCODE = '22023',
					DETAIL = format('The subscription is billed every %s %s; plan %s every %s %s. Its periods are counted from its anchor and each is invoiced once, so the interval is fixed.',
						s.interval_count, s.interval_unit, p.plan_id, p.interval_count, p.interval_unit),
					HINT = 'Cancel it (pay_cancel_subscription) and create a new subscription to the plan.';
		END IF;
		new_plan := p.plan_id;
		new_unit := p.amount;
	ELSIF p_price IS NOT NULL THEN
		PERFORM payments._check_price(p_price, 'price');
		new_plan := NULL;
		new_unit := p_price;
	END IF;
	IF pay_currency(new_unit) <> pay_currency(s.unit_amount) THEN
		RAISE EXCEPTION 'cannot change the currency of subscription % from % to %', s.subscription_id,
			pay_currency(s.unit_amount), pay_currency(new_unit)
			USING ERRCODE = '22Y03', HINT = 'Cancel it and create a new subscription in the other currency.';
	END IF;
	IF new_qty NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'quantity must be between 1 and 100000' USING ERRCODE = '22023';
	END IF;
	new_total := payments._subscription_total(new_unit, new_qty);
	PERFORM payments._check_gateway_input(new_total, NULL, NULL, NULL);
	-- Paused, the period is paid at the old amount and a resume within it
	-- charges nothing more: prorating from now would credit time not
	-- served, and taking the change without proration would serve the rest
	-- of the period after a resume at the new amount for the old one.  So
	-- only proration none, which says that, is taken.
	IF s.status = 'paused' AND p_proration <> 'none' AND new_total <> old_total THEN
		RAISE EXCEPTION 'a change of paused subscription % cannot be prorated', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = format('The period it is paused in was paid at %s; resumed within it, nothing more is charged.', old_total),
				HINT = 'Resume it first and then change it, or pass proration => ''none'': the new amount then applies from the next period.';
	END IF;
	-- in a trial nothing has been paid: the new price simply applies from
	-- the next invoice.  A trial has ended once its subscription is in
	-- period 0 (still trialing while the charge of that period's invoice is
	-- not answered): that period is invoiced at the old amount, so a change
	-- is prorated as when active
	IF s.status = 'paused' OR (s.status = 'trialing' AND s.current_period_index < 0) THEN
		effective := 'none';
	END IF;
	IF effective <> 'none' AND new_total <> old_total THEN
		credit := - payments._prorate(old_total, s.current_period_start, s.current_period_end, p_at);
		charge := payments._prorate(new_total, s.current_period_start, s.current_period_end, p_at);
		IF pay_minor_units(credit) <> 0 THEN
			lines := lines || jsonb_build_object('kind', 'proration',
				'description', CASE WHEN s.period_amount IS NULL
					THEN format('Unused time on %s x %s from %s', s.quantity, s.unit_amount, at_local)
					ELSE format('Unused time on %s from %s', old_total, at_local) END,
				'unit_amount', s.unit_amount::text, 'quantity', s.quantity, 'amount', credit::text);
		END IF;
		IF pay_minor_units(charge) <> 0 THEN
			lines := lines || jsonb_build_object('kind', 'proration',
				'description', format('Remaining time on %s x %s from %s', new_qty, new_unit, at_local),
				'unit_amount', new_unit::text, 'quantity', new_qty, 'amount', charge::text);
		END IF;
	END IF;
	-- the next invoice this change leaves must be one the gateway takes:
	-- the new amount, the items already waiting for it and, with
	-- next_invoice, this change's lines (refused now, not by the worker
	-- when the renewal is charged)
	next_invoice := new_total + coalesce((SELECT sum(i.amount) FROM payments.invoice_items i
			WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id
				AND i.invoice_id IS NULL), new_total * 0);
	IF effective = 'next_invoice' THEN
		next_invoice := next_invoice + coalesce((SELECT sum((l ->> 'amount')::payments.pay_amount)
			FROM jsonb_array_elements(lines) l), new_total * 0);
	END IF;
	IF pay_minor_units(next_invoice) > 0 THEN
		PERFORM payments._check_gateway_input(next_invoice, NULL, NULL, NULL);
	END IF;
	RETURN jsonb_build_object('subscription_id', s.subscription_id, 'status', s.status,
		'proration', effective, 'at', payments._json_time(p_at),
		'period_start', payments._json_time(s.current_period_start),
		'period_end', payments._json_time(s.current_period_end),
		'remaining_seconds', greatest(0, least(floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM p_at)),
			floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM s.current_period_start))))::bigint,
		'period_seconds', floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM s.current_period_start))::bigint,
		'old', jsonb_build_object('plan_id', s.plan_id, 'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
			'amount', old_total::text),
		'new', jsonb_build_object('plan_id', new_plan, 'unit_amount', new_unit::text, 'quantity', new_qty,
			'amount', new_total::text),
		'lines', lines,
		'total', coalesce((SELECT sum((l ->> 'amount')::payments.pay_amount) FROM jsonb_array_elements(lines) l),
			new_total * 0)::text);
END
$$;
COMMENT ON FUNCTION payments._subscription_change(payments.subscriptions, bigint, payments.pay_amount, integer, text, timestamptz) IS
	'Internal: checks a change of plan, price or quantity of a subscription and computes it at p_at: the new terms, and the proration lines (credit for the unused part at the old amount, charge for the remaining part at the new one, by payments._prorate) with their total. Changes nothing.';

------------------------------------------------------------------------------
-- h-prorate-numeric: the proration rule multiplies in numeric (sql/src/
-- subscriptions.sql, _prorate): a large amount over a period of more than
-- about 96 years (year intervals of up to 366) overflowed bigint.
-- Made once since: _prorate in h-subs-api (its final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-null-arguments: a NULL id is a missing argument (22004), not an unknown
-- id (PT404, HTTP 404), in the not-found errors of payments, customers,
-- payment methods, plans and subscriptions; pay_wait_payment_method (and
-- pay_wait, in the h-tenancy block's copy) refuse a NULL timeout (22004:
-- it skipped the wait and its checks); time zone names that are no
-- place's time (localtime, posixrules, Factory, posix/ and right/ copies)
-- are refused.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments._not_found(p_payment_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_payment_id IS NULL THEN
		RAISE EXCEPTION 'payment_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'payment % not found', p_payment_id
		USING ERRCODE = 'PT404', HINT = 'Payment ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._not_found(bigint) IS 'Internal: raises the payment-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';
CREATE OR REPLACE FUNCTION payments._customer_not_found(p_customer_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_customer_id IS NULL THEN
		RAISE EXCEPTION 'customer_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'customer % not found', p_customer_id
		USING ERRCODE = 'PT404', HINT = 'Customer ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._customer_not_found(bigint) IS 'Internal: raises the customer-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';
CREATE OR REPLACE FUNCTION payments._payment_method_not_found(p_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_id IS NULL THEN
		RAISE EXCEPTION 'payment_method_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'payment method % not found', p_id
		USING ERRCODE = 'PT404', HINT = 'Payment method ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._payment_method_not_found(bigint) IS 'Internal: raises the payment-method-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';
CREATE OR REPLACE FUNCTION payments._plan_not_found(p_plan_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_plan_id IS NULL THEN
		RAISE EXCEPTION 'plan_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'plan % not found', p_plan_id
		USING ERRCODE = 'PT404', HINT = 'Plan ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._plan_not_found(bigint) IS 'Internal: raises the plan-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';
CREATE OR REPLACE FUNCTION payments._subscription_not_found(p_subscription_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_subscription_id IS NULL THEN
		RAISE EXCEPTION 'subscription_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'subscription % not found', p_subscription_id
		USING ERRCODE = 'PT404', HINT = 'Subscription ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._subscription_not_found(bigint) IS 'Internal: raises the subscription-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';
CREATE OR REPLACE FUNCTION payments.pay_wait_payment_method(payment_method_id bigint,
	timeout interval DEFAULT '30 seconds')
	RETURNS payments.payment_methods
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	result payments.payment_methods;
BEGIN
	IF timeout IS NULL THEN
		RAISE EXCEPTION 'timeout is required' USING ERRCODE = '22004',
			HINT = 'Pass an interval such as ''30 seconds'', or leave timeout out for the default.';
	END IF;
	IF timeout < interval '0' OR timeout > payments._max_wait() THEN
		RAISE EXCEPTION 'timeout must be between 0 and %', payments._max_wait() USING ERRCODE = '22023',
			DETAIL = format('%s was asked for; the payments.max_wait setting allows at most %s.', timeout, payments._max_wait());
	END IF;
	PERFORM payments._find_payment_method(pay_wait_payment_method.payment_method_id);
	PERFORM payments._wait_for_payment_method(m, pay_wait_payment_method.payment_method_id,
		(extract(epoch FROM timeout) * 1000)::integer);
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = m AND x.payment_method_id = pay_wait_payment_method.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_wait_payment_method(bigint, interval) IS
	'Blocks until the payment method''s gateway work (saving or deleting) is done or the timeout passes, without polling; returns the method row. Call it after the COMMIT that created the work.';
-- A time zone: an IANA name (America/New_York, Europe/Paris, UTC).  A
-- Region/City name is checked by converting a time with it (cheap); any
-- other text must be in pg_timezone_names, so an abbreviation such as EST
-- (a fixed offset without daylight saving) or a POSIX string is refused.
CREATE OR REPLACE FUNCTION payments._check_time_zone(p_time_zone text) RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	known boolean := false;
BEGIN
	IF p_time_zone = 'UTC' THEN
		RETURN;
	END IF;
	IF p_time_zone ~ '^[A-Za-z_]+(/[A-Za-z0-9_+-]+)+$' AND length(p_time_zone) <= 64 THEN
		BEGIN
			PERFORM now() AT TIME ZONE p_time_zone;
			known := true;
		EXCEPTION WHEN invalid_parameter_value THEN
			known := false;
		END;
	ELSIF length(p_time_zone) <= 64 THEN
		-- a zone name that is also an abbreviation (EST, MST, HST, CET...)
		-- is one: a fixed offset, or not the place's time
		known := EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z WHERE z.name = p_time_zone)
			AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs a WHERE a.abbrev = p_time_zone);
	END IF;
	-- names of the tz database that are no place's time: the server's own
	-- zone (its billing calendar would follow the machine's settings), the
	-- placeholder Factory, and the copies with leap seconds (right/, which
	-- PostgreSQL's times do not count) or for POSIX rules
	IF p_time_zone IN ('localtime', 'posixrules', 'Factory') OR p_time_zone ~ '^(posix|right)/' THEN
		known := false;
	END IF;
	-- the value is not quoted: a caller's text may hold anything, a card
	-- number in a form the log's masking does not read as one
	IF NOT known THEN
		RAISE EXCEPTION 'time_zone is not a known time zone'
			USING ERRCODE = '22023',
				DETAIL = 'Only IANA time zone names are taken, not abbreviations or POSIX strings; the value given is not quoted.',
				HINT = 'Pass an IANA time zone name such as America/New_York, Europe/Paris or UTC (pg_timezone_names lists them).';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_time_zone(text) IS
	'Internal: raises 22023 unless the text is an IANA time zone name (abbreviations, POSIX strings, localtime, posixrules, Factory and the posix/ and right/ copies are refused); the message does not quote the text.';

------------------------------------------------------------------------------
-- h-unreached-attempts: an attempt of which nothing reached the gateway
-- (DNS, connect or TLS failed, or the question before a refund or void got
-- no answer) is given back (sql/src/worker.sql, _attempt_unreached; the
-- worker calls it before _record_result): a quarter of an hour's outage
-- made dead letters of operations that had never left.
------------------------------------------------------------------------------
CREATE FUNCTION payments._attempt_unreached(p_merchant_id bigint, p_operation_id bigint)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.operations o SET attempts = o.attempts - 1
	WHERE o.merchant_id = p_merchant_id AND o.operation_id = p_operation_id
		AND o.status = 'sending' AND o.attempts > 0
	$$;
COMMENT ON FUNCTION payments._attempt_unreached(bigint, bigint) IS
	'Worker, step 3: gives back the attempt of an operation of which nothing reached the gateway, so that it does not count toward payments.max_attempts.';

------------------------------------------------------------------------------
-- h-refund-dead-letters: pay_refund's errors about what is left to refund
-- name the amount in refunds that ran out of attempts (dead letters), which
-- count against it, and what the owner can do (sql/src/payment_api.sql).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments.pay_refund(
	payment_id bigint,
	amount payments.pay_amount DEFAULT NULL,
	reason text DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_refund.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_refund.idempotency_key,
		'refund', md5(jsonb_build_array(pay_refund.payment_id, pay_refund.amount::text, pay_refund.reason)::text));
	captured payments.pay_amount;
	committed payments.pay_amount;
	dead payments.pay_amount;
	held payments.pay_amount;
	note text := '';
	remaining payments.pay_amount;
	refund_amount payments.pay_amount;
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	PERFORM payments._check_text('reason', pay_refund.reason, 255);
	IF p.status NOT IN ('succeeded', 'partially_refunded') THEN
		PERFORM payments._wrong_state(p, 'refund');
	END IF;
	captured := p.amount_captured;
	-- refunds already made or on their way count against what is left,
	-- and so do refunds held for review (the gateway may still approve
	-- them) and dead letters (a retry may still make them)
	SELECT coalesce(sum(x.amount), p.amount * 0),
		coalesce(sum(x.amount) FILTER (WHERE x.status = 'dead'), p.amount * 0),
		coalesce(sum(x.amount) FILTER (WHERE x.status = 'in_review'), p.amount * 0)
	INTO committed, dead, held FROM payments.operations x
	WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id AND x.kind = 'refund'
		AND x.status IN ('queued', 'sending', 'unknown', 'succeeded', 'waiting_settlement', 'dead',
			'in_review');
	IF pay_minor_units(held) <> 0 THEN
		note := format(' %s of it is in refunds the gateway holds for review, refunded once it approves them.', held);
	END IF;
	IF pay_minor_units(dead) <> 0 THEN
		note := note || format(' %s of it is in refunds that ran out of attempts (dead letters), which the owner sends again with pay_retry_dead_letter or settles with pay_resolve_dead_letter.', dead);
	END IF;
	remaining := captured - committed;
	refund_amount := coalesce(pay_refund.amount, remaining);
	IF pay_currency(refund_amount) <> pay_currency(p.amount) THEN
		RAISE EXCEPTION 'refund amount % is not in the payment''s currency %', refund_amount, pay_currency(p.amount)
			USING ERRCODE = '22Y03', HINT = 'A refund is made in the currency the payment was made in.';
	END IF;
	-- (no amount given: the rest, and nothing is left)
	IF pay_refund.amount IS NULL AND pay_minor_units(refund_amount) <= 0 THEN
		RAISE EXCEPTION 'nothing is left to refund' USING ERRCODE = '22Y23',
			DETAIL = format('%s of %s captured is left to refund.%s', remaining, captured, note);
	END IF;
	IF pay_minor_units(refund_amount) <= 0 THEN
		RAISE EXCEPTION 'refund amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('%s of %s captured is left to refund.%s', remaining, captured, note);
	END IF;
	IF refund_amount > remaining THEN
		RAISE EXCEPTION 'refund amount % exceeds the % left to refund', refund_amount, remaining
			USING ERRCODE = '22Y21',
				DETAIL = format('%s was captured and %s is refunded or being refunded.%s', captured, committed, note);
	END IF;
	IF (payments._busy_operation(p)).operation_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.operations x
			WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
				AND x.status IN ('queued', 'sending', 'unknown') AND x.kind = 'refund') THEN
		PERFORM payments._wrong_state(p, 'refund', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	-- Void, refund or wait is decided by the worker from the gateway's state
	-- of the capture when it processes the refund: settled, a refund; not
	-- settled, a void when the whole capture is refunded, else it waits
	-- (waiting_settlement) and goes out once the batch has settled.
	RETURN payments._new_operation(p, 'refund', refund_amount, 'queued', pay_refund.reason,
		pay_refund.idempotency_key, pay_refund.correlation_id);
END
$$;

------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-capture-expired: a capture the gateway cannot find (reason 16) asks
-- whether its authorization expired uncaptured; if it did, the capture
-- fails with the outcome expired and the payment is canceled with nothing
-- captured (sql/src/status_machine.sql, sql/src/worker.sql).  Before, the
-- payment stayed requires_capture until someone voided it.
------------------------------------------------------------------------------
INSERT INTO payments.operation_outcomes
	(operation_kind, outcome, operation_status, payment_status, payment_status_from) VALUES
	('capture', 'expired', 'failed', 'canceled', 'requires_capture');

-- (pay_resolve_dead_letter records from the dead status: p_from_status)
CREATE FUNCTION payments._record_result(
	p_merchant_id bigint, p_operation_id bigint, p_outcome text,
	p_response_code integer, p_reason_code integer, p_reason_text text,
	p_trans_id text, p_auth_code text, p_avs text, p_cvv text,
	p_retry_at timestamptz, p_error text, p_account_number text,
	p_card_fingerprint text DEFAULT NULL, p_from_status text DEFAULT 'sending')
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	t payments.operation_outcomes;
BEGIN
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> p_from_status THEN
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

	IF t.operation_status NOT IN ('succeeded', 'failed', 'in_review') THEN
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
			ARRAY[p_account_number], ARRAY[p_card_fingerprint], p_from_status);
		RETURN;
	END IF;
	-- a refund held for review (in_review) is not complete: the review
	-- check completes it (_resolve_refund_review)
	UPDATE payments.operations SET
		status = t.operation_status,
		gateway_trans_id = nullif(nullif(p_trans_id, ''), '0'),
		response_code = p_response_code, reason_code = p_reason_code, reason_text = p_reason_text,
		last_error = p_error,
		completed_at = CASE WHEN t.operation_status <> 'in_review' THEN clock_timestamp() END
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	DELETE FROM payments.card_vault WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;

	IF t.payment_status IS NULL OR p.status IS DISTINCT FROM coalesce(t.payment_status_from, p.status) THEN
		RETURN;
	END IF;
	IF o.kind = 'capture' THEN
		-- captured only when it succeeded (an expired authorization cancels
		-- the payment with nothing captured)
		UPDATE payments.payments SET status = t.payment_status,
			amount_captured = CASE WHEN t.operation_status = 'succeeded' THEN o.amount
				ELSE p.amount_captured END
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSIF o.kind = 'refund' THEN
		PERFORM payments._count_refund(p, o.amount, t.payment_status);
	ELSIF o.kind = 'void' THEN
		-- a void undoes the capture too (a purchase voided before settlement):
		-- nothing stays captured
		UPDATE payments.payments SET status = t.payment_status, amount_captured = p.amount_captured * 0
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSE
		UPDATE payments.payments SET status = t.payment_status
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	END IF;
END
$$;
COMMENT ON FUNCTION payments._record_result(bigint, bigint, text, integer, integer, text, text, text, text, text, timestamptz, text, text, text, text) IS
	'Worker, step 3: records the gateway''s answer (or the transport failure) and moves the operation and its payment on; p_card_fingerprint as for _record_final_results; p_from_status: the operation''s status (sending; dead for pay_resolve_dead_letter).';
REVOKE ALL ON FUNCTION payments._record_result(bigint, bigint, text, integer, integer, text, text, text, text, text, timestamptz, text, text, text, text) FROM PUBLIC;

------------------------------------------------------------------------------
-- h-amount-ineqsel: < <= > >= on pay_amount are estimated with the total
-- order (~<~ ...), never calling < on another currency's most common values
-- while a query is planned; COST 10 puts a currency test before them in a
-- filter (sql/src/amount.sql, src/amount_ops.c).
------------------------------------------------------------------------------
CREATE FUNCTION payments.pay_amount_ltsel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_lesel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_gtsel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_gesel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_ltsel(internal, oid, internal, integer) IS 'Estimates <: with the total order ~<~, never calling < on another currency''s values while a query is planned.';
COMMENT ON FUNCTION payments.pay_amount_lesel(internal, oid, internal, integer) IS 'Estimates <=: with the total order ~<=~.';
COMMENT ON FUNCTION payments.pay_amount_gtsel(internal, oid, internal, integer) IS 'Estimates >: with the total order ~>~.';
COMMENT ON FUNCTION payments.pay_amount_gesel(internal, oid, internal, integer) IS 'Estimates >=: with the total order ~>=~.';
ALTER FUNCTION payments.pay_amount_lt(payments.pay_amount, payments.pay_amount) COST 10;
ALTER FUNCTION payments.pay_amount_le(payments.pay_amount, payments.pay_amount) COST 10;
ALTER FUNCTION payments.pay_amount_gt(payments.pay_amount, payments.pay_amount) COST 10;
ALTER FUNCTION payments.pay_amount_ge(payments.pay_amount, payments.pay_amount) COST 10;
ALTER OPERATOR payments.< (payments.pay_amount, payments.pay_amount) SET (RESTRICT = payments.pay_amount_ltsel);
ALTER OPERATOR payments.<= (payments.pay_amount, payments.pay_amount) SET (RESTRICT = payments.pay_amount_lesel);
ALTER OPERATOR payments.> (payments.pay_amount, payments.pay_amount) SET (RESTRICT = payments.pay_amount_gtsel);
ALTER OPERATOR payments.>= (payments.pay_amount, payments.pay_amount) SET (RESTRICT = payments.pay_amount_gesel);

------------------------------------------------------------------------------
-- h-currency-mismatch: a capture or refund in another currency than the
-- payment's is refused with its own message (22Y03), not the comparison's
-- advice to convert (pay_refund's copy above, in h-refund-dead-letters).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments.pay_capture(
	payment_id bigint,
	amount payments.pay_amount DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_capture.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_capture.idempotency_key,
		'capture', md5(jsonb_build_array(pay_capture.payment_id, pay_capture.amount::text)::text));
	capture_amount payments.pay_amount := coalesce(pay_capture.amount, p.amount_authorized, p.amount);
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	IF p.kind <> 'authorize' THEN
		PERFORM payments._wrong_state(p, 'capture', 'Only authorizations can be captured; a purchase is captured already.');
	END IF;
	IF EXISTS (SELECT 1 FROM payments.operations x WHERE x.merchant_id = p.merchant_id
			AND x.payment_id = p.payment_id AND x.kind = 'capture' AND x.status NOT IN ('failed', 'canceled')) THEN
		PERFORM payments._wrong_state(p, 'capture', 'An authorization can be captured only once.');
	END IF;
	IF p.status <> 'requires_capture' THEN
		PERFORM payments._wrong_state(p, 'capture');
	END IF;
	IF (payments._busy_operation(p)).operation_id IS NOT NULL THEN
		PERFORM payments._wrong_state(p, 'capture', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	IF pay_currency(capture_amount) <> pay_currency(p.amount) THEN
		RAISE EXCEPTION 'capture amount % is not in the payment''s currency %', capture_amount, pay_currency(p.amount)
			USING ERRCODE = '22Y03', HINT = 'Capture in the currency that was authorized.';
	END IF;
	IF pay_minor_units(capture_amount) <= 0 THEN
		RAISE EXCEPTION 'capture amount must be positive' USING ERRCODE = '22Y23';
	END IF;
	IF capture_amount > coalesce(p.amount_authorized, p.amount) THEN
		RAISE EXCEPTION 'capture amount % exceeds the authorized amount %', capture_amount,
			coalesce(p.amount_authorized, p.amount)
			USING ERRCODE = '22Y21', HINT = 'Capture at most the authorized amount; the rest is released.';
	END IF;
	RETURN payments._new_operation(p, 'capture', capture_amount, 'queued', NULL,
		pay_capture.idempotency_key, pay_capture.correlation_id);
END
$$;

------------------------------------------------------------------------------
-- h-gateway-account-change: pay_configure_gateway refuses another
-- api_login_id while operations that may have reached the current account
-- are unresolved (resent to the new one they were charged again there).
-- h-discard-never-sent: a discarded purchase or authorization that never
-- reached the gateway cancels its payment (it stayed pending for good; an
-- invoice's charge never reached dunning).  (sql/src/gateway_admin.sql)
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION payments.pay_configure_gateway(
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

CREATE OR REPLACE FUNCTION payments.pay_retry_dead_letter(merchant_id bigint, operation_id bigint)
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

CREATE OR REPLACE FUNCTION payments.pay_discard_dead_letter(merchant_id bigint, operation_id bigint)
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

------------------------------------------------------------------------------
-- h-billing-wake: a test clock moved asks the billing process for a run at
-- COMMIT (src/wake.c), not at its next round (sql/src/worker_signals.sql;
-- pay_set_test_clock above calls it).
------------------------------------------------------------------------------
-- h-held-refunds: a refund the gateway holds for review (responseCode 4, or
-- found held by a lookup) is in_review, a new operation status, instead of
-- succeeded: its amount is reserved (pay_refund counts it against what is
-- left) but not refunded, and the worker's review check asks the gateway
-- about it with the payments held for review.  Approved, it succeeds and
-- its amount reaches amount_refunded (one place counts a refund:
-- _count_refund, from _record_result and _resolve_refund_review); declined,
-- voided or expired, it fails and its amount can be refunded again.
-- Before, a held refund was recorded succeeded and never looked at again:
-- its amount never reached amount_refunded, nor came back when the gateway
-- declined it (sql/src/payment_tables.sql, status_machine.sql, worker.sql,
-- payment_api.sql; _record_result and pay_refund are edited in place at
-- their last definitions above).  Refunds recorded held before are made
-- in_review, so that the review check learns what became of them.
-- Made once since: _refund_review_candidates in h-account-bound (its final
-- form).
------------------------------------------------------------------------------
ALTER TABLE payments.operations DROP CONSTRAINT operations_status_check;
ALTER TABLE payments.operations ADD CONSTRAINT operations_status_check CHECK (status IN ('queued',
	'sending', 'succeeded', 'failed', 'unknown', 'waiting_settlement', 'dead', 'canceled', 'in_review'));
-- refunds held for review, which the worker's review check asks about
CREATE INDEX operations_in_review ON payments.operations (updated_at)
	WHERE status = 'in_review';
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('operation', 'sending', 'in_review'),
	('operation', 'in_review', 'succeeded'),
	('operation', 'in_review', 'failed');
UPDATE payments.operation_outcomes SET operation_status = 'in_review'
WHERE operation_kind = 'refund' AND outcome = 'held';

-- A refund the gateway approved counts: its amount is added to the
-- payment's amount_refunded, and the payment is p_status (refunded, from
-- operation_outcomes), partially_refunded while part of the capture is
-- left.  The one place a refund's amount is counted: when its answer
-- comes (_record_result) and when a refund held for review is approved
-- later (_resolve_refund_review).  The caller holds the payment's lock.
CREATE FUNCTION payments._count_refund(p payments.payments, p_amount payments.pay_amount,
	p_status text)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payments x SET amount_refunded = p.amount_refunded + p_amount,
		status = CASE WHEN p_status = 'refunded' AND p.amount_refunded + p_amount <> p.amount_captured
			THEN 'partially_refunded' ELSE p_status END
	WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
	$$;
COMMENT ON FUNCTION payments._count_refund(payments.payments, payments.pay_amount, text) IS
	'Worker: counts an approved refund in its payment (amount_refunded; refunded, or partially_refunded while part of the capture is left).';

-- What became of a refund held for review, as the gateway shows its
-- transaction now (p_status_class as for _resolve_review): approved
-- (pending settlement or settled; for a refund sent as a void, voided),
-- the outcome approved: the refund succeeds and its amount is counted in
-- the payment (_count_refund), with the payment's event; declined, the
-- outcome declined; voided, failed or expired, the outcome error: the
-- refund fails, nothing is refunded and its amount can be refunded again.
-- Still under review (or anything else) changes nothing.  Returns the
-- refund's new status, or NULL when it did not change.
CREATE FUNCTION payments._resolve_refund_review(p_merchant_id bigint, p_operation_id bigint,
	p_transaction_status text, p_status_class text, p_response_code integer,
	p_reason_code integer, p_reason_text text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	t payments.operation_outcomes;
	resolve_outcome text;
BEGIN
	-- the operation, then its payment (the order _record_result locks them in)
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'in_review' OR o.kind <> 'refund' THEN
		RETURN NULL;
	END IF;
	resolve_outcome := CASE
		WHEN o.via_void THEN CASE p_status_class WHEN 'voided' THEN 'approved'
			WHEN 'declined' THEN 'declined'
			WHEN 'pending_settlement' THEN 'error' WHEN 'settled' THEN 'error'
			WHEN 'failed' THEN 'error' WHEN 'expired' THEN 'error' END
		WHEN p_status_class IN ('pending_settlement', 'settled') THEN 'approved'
		WHEN p_status_class = 'declined' THEN 'declined'
		WHEN p_status_class IN ('voided', 'failed', 'expired') THEN 'error'
		END;
	IF resolve_outcome IS NULL THEN
		-- asked again after the others
		UPDATE payments.operations SET updated_at = now()
		WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
		RETURN NULL;
	END IF;
	SELECT * INTO STRICT t FROM payments.operation_outcomes x
	WHERE x.operation_kind = 'refund' AND x.outcome = resolve_outcome;
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = o.merchant_id AND payment_id = o.payment_id FOR UPDATE;
	UPDATE payments.operations SET status = t.operation_status,
		response_code = coalesce(p_response_code, response_code),
		reason_code = coalesce(p_reason_code, reason_code),
		reason_text = coalesce(nullif(p_reason_text, ''), reason_text),
		last_error = CASE WHEN t.operation_status = 'failed' THEN
			format('the gateway shows the refund held for review %s: nothing was refunded', p_transaction_status) END,
		completed_at = clock_timestamp()
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	IF t.payment_status IS NOT NULL THEN
		PERFORM payments._count_refund(p, o.amount, t.payment_status);
	END IF;
	RETURN t.operation_status;
END
$$;
COMMENT ON FUNCTION payments._resolve_refund_review(bigint, bigint, text, text, integer, integer, text) IS
	'Worker: records what the gateway decided about a refund held for review: approved, the refund succeeds and counts in its payment''s amount_refunded (partially_refunded or refunded); declined, voided, failed or expired, it fails and its amount can be refunded again.';

COMMENT ON FUNCTION payments.pay_refund(bigint, payments.pay_amount, text, text, text) IS
	'Refund a captured payment, fully or partially (several partial refunds up to the captured amount). The worker asks the gateway first: a settled capture is refunded; before settlement a full refund is sent as a void and a partial one waits for settlement (waiting_settlement). A refund the gateway holds for review is in_review: its amount is not refunded yet, and no other refund can take it, until the gateway decides. Returns the refund operation.';

-- the refunds recorded succeeded while the gateway held them (not a
-- transition the status machine allows: the status trigger is off for
-- this one statement)
ALTER TABLE payments.operations DISABLE TRIGGER operations_status;
UPDATE payments.operations SET status = 'in_review', completed_at = NULL
WHERE kind = 'refund' AND status = 'succeeded' AND response_code = 4 AND gateway_trans_id IS NOT NULL;
ALTER TABLE payments.operations ENABLE TRIGGER operations_status;

------------------------------------------------------------------------------
CREATE FUNCTION payments._wake_billing_at_commit() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_wake_billing_at_commit';
COMMENT ON FUNCTION payments._wake_billing_at_commit() IS
	'Internal: asks the billing process for a run when the current transaction commits (a test clock moved), not at its next round.';

------------------------------------------------------------------------------
-- h-idem-payments: a repeated purchase or authorization returns its payment
-- whatever changed since (its customer's details, its stored method
-- deleted): the key is claimed before they are resolved (_create_payment
-- above).  A repeat after a key's retention finds the newest customer,
-- plan or subscription under the key (pay_create_customer, pay_create_plan
-- and pay_create_subscription above).  The request hash of a key digests a
-- customer's personal details: the audit leaves it out.
------------------------------------------------------------------------------
DROP TRIGGER payments_audit ON payments.idempotency_keys;
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.idempotency_keys
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('request_hash');
COMMENT ON TRIGGER payments_audit ON payments.idempotency_keys IS 'Audit: payments.audit_log.';

------------------------------------------------------------------------------
-- h-method-profiles: two live payment methods of a customer never share one
-- gateway payment profile (sql/src/worker.sql, payment_methods.sql;
-- src/gateway_cim.c).  A save whose reply was lost looked its card up by
-- its last four alone (opaque data: the customer's newest profile), and so
-- took another card of the customer with the same last four; a card saved
-- twice was answered E00039 naming the existing profile, and recorded
-- saved.  Either way two methods pointed at one card: charges of one
-- billed the other's card, and deleting one deleted the other's at the
-- gateway.  The claim now tells a save the profiles the customer's other
-- active and deleting methods hold (method_taken_profiles): its lookup
-- skips them, and a duplicate naming one fails the save with E00039
-- (_record_method_result, in its final form in h-account-life below, names
-- the method and refuses any save answered with a taken profile).  A
-- default method's deletion that fails leaves it the default
-- (pay_delete_payment_method and _record_method_result in h-account-life
-- below, _method_operation_dead in h-lead-methods above, keep is_default
-- through deleting).
-- Made once since: _claim_operations in h-account-life (its final form).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-method-gone: stored payment methods whose gateway profile is gone, and
-- customers without a default (sql/src/payment_methods.sql, billing.sql,
-- status_machine.sql).  A charge of a stored method answered E00040 (its
-- profile deleted at the gateway outside payments) fails with decline_code
-- payment_method_gone (a final decline for dunning) and fails the method
-- (active -> failed, no longer the default; payments_method_gone), whose
-- later charges are refused at the call with its failure_reason.  A charge
-- of a customer's default when it has none says why and how to set one
-- (_no_default_method).  A method active again after a failed deletion is
-- tried at once for the subscriptions in dunning it pays
-- (payment_methods_dunning_retry).
-- Made once since: _stored_method_for_payment in h-account-life (its final
-- form).
------------------------------------------------------------------------------
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('payment_method', 'active', 'failed');

-- Decline codes after which charging the same payment method again cannot
-- succeed, so dunning does not retry them automatically (a new card is
-- tried at once): the card number is invalid (6, 37, 315), its expiry date
-- invalid or passed (7, 8, 316, 317), pick-up card (4), a card type the
-- merchant does not accept (17, 28), the fraud filters' and manual
-- review's declines (250, 251, 254), the stored profile gone at the gateway
-- (E00040), and no usable payment method at all.  Every other decline (2,
-- 3 generic and referral, 27/44/45/65/127 address and card code checks,
-- processing errors, a canceled charge) is retried on the schedule.
CREATE OR REPLACE FUNCTION payments._decline_is_final(p_code text) RETURNS boolean
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$
	SELECT coalesce(p_code IN ('4', '6', '7', '8', '17', '28', '37', '250', '251', '254',
		'315', '316', '317', 'E00040', 'payment_method_gone', 'no_payment_method'), false)
	$$;
COMMENT ON FUNCTION payments._decline_is_final(text) IS
	'Internal: true for a decline code (the gateway''s reason code, payment_method_gone or no_payment_method) after which the same payment method cannot succeed (invalid or expired card, pick-up, card type not accepted, fraud declines, profile gone): dunning does not retry it automatically.';

CREATE FUNCTION payments._no_default_method(c payments.customers) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	d payments.payment_methods;
	n bigint;
	why text;
BEGIN
	SELECT x.* INTO d FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.is_default
		AND x.status IN ('pending', 'deleting');
	SELECT count(*) INTO n FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status = 'active';
	IF d.status = 'pending' THEN
		why := format('Its default payment method %s is still being saved (pay_wait_payment_method).',
			d.payment_method_id);
	ELSIF d.status = 'deleting' THEN
		why := format('Its default payment method %s is being deleted.', d.payment_method_id);
	ELSIF n = 0 THEN
		why := 'It has no active payment method.';
	ELSE
		why := format('It has %s active payment method%s, none of them the default; none is charged in the default''s place.',
			n, CASE WHEN n > 1 THEN 's' ELSE '' END);
	END IF;
	RAISE EXCEPTION 'customer % has no default payment method', c.customer_id
		USING ERRCODE = '22Y22', DETAIL = why,
			HINT = CASE WHEN n > 0
				THEN 'Make one of its active payment methods the default (pay_set_default_payment_method), save a new one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.'
				ELSE 'Save one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.' END;
END
$$;
COMMENT ON FUNCTION payments._no_default_method(payments.customers) IS
	'Internal: raises 22Y22 for a charge of a customer''s default when it has none that can be charged, saying why (its default still being saved or being deleted, no active method, or active ones none of which is the default) and how to set one.';

-- _payment_method_gone in its final form (from h-customer-gone) here: trigger
-- payments_method_gone below runs it.
CREATE OR REPLACE FUNCTION payments._payment_method_gone() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	NEW.decline_code := 'payment_method_gone';
	NEW.decline_reason := 'The gateway no longer has this stored payment method (E00040 The record cannot be found.): its payment profile was deleted outside payments.';
	PERFORM payments._payment_methods_gone(NEW.merchant_id, ARRAY(SELECT x.payment_method_id
			FROM payments.payment_methods x
			WHERE x.merchant_id = NEW.merchant_id AND x.payment_method_id = NEW.payment_method_id
				AND x.payment_profile_id IS NOT DISTINCT FROM NEW.payment_profile_id),
		format('The gateway refused payment %s: it no longer has this card''s payment profile (E00040), which was deleted outside payments.',
			NEW.payment_id));
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._payment_method_gone() IS
	'Trigger: a charge of a stored method the gateway answered E00040 (its profile deleted at the gateway outside payments) fails with decline_code payment_method_gone, and the method, if still active, is failed (failure_code payment_method_gone, no longer the default; a payment_method.failed event).';

CREATE TRIGGER payments_method_gone BEFORE UPDATE OF status ON payments.payments
	FOR EACH ROW WHEN (NEW.status = 'failed' AND OLD.status <> 'failed' AND NEW.decline_code = 'E00040'
		AND NEW.payment_method_id IS NOT NULL)
	EXECUTE FUNCTION payments._payment_method_gone();
COMMENT ON TRIGGER payments_method_gone ON payments.payments IS
	'A charge of a stored method whose gateway profile is gone (E00040) fails with payment_method_gone and fails the method (payments._payment_method_gone).';

CREATE TRIGGER payment_methods_dunning_retry AFTER UPDATE OF status, is_default ON payments.payment_methods
	FOR EACH ROW WHEN (NEW.status = 'active'
		AND (OLD.status IN ('pending', 'deleting') OR (NEW.is_default AND NOT OLD.is_default)))
	EXECUTE FUNCTION payments._payment_method_dunning_retry();
COMMENT ON TRIGGER payment_methods_dunning_retry ON payments.payment_methods IS
	'Billing: a card saved, made the default, or active again after a failed deletion during dunning is tried at once (payments._payment_method_dunning_retry).';
COMMENT ON FUNCTION payments._payment_method_dunning_retry() IS
	'Trigger: a payment method that became active (saved, or its deletion failed) or the customer''s default is charged at once for the customer''s incomplete, past_due and unpaid subscriptions that use it (payments._retry_open_invoice_now); its trialing and active ones are locked, so that a failure of their charge recorded meanwhile charges it too.';

------------------------------------------------------------------------------
-- h-resolve-dead-letter: the owner settles a dead letter that may have
-- reached the gateway with the outcome found in the gateway's console
-- (pay_resolve_dead_letter), recorded as the gateway's answer would be:
-- _record_result and _record_final_results take the operation's status
-- (above), dead goes to succeeded or failed (sql/src/gateway_admin.sql,
-- status_machine.sql, worker.sql).  Before, such a payment stayed unknown
-- for good and an invoice it charged stalled.
------------------------------------------------------------------------------
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('operation', 'dead', 'succeeded'),
	('operation', 'dead', 'failed');

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

------------------------------------------------------------------------------
-- h-erasure-keys: pay_erase_customer clears the request hash of the
-- idempotency keys of the customer's requests (it digests its email, name,
-- billing details, metadata), found by their new column customer_id, set by
-- _idempotency_claim (p_customer), pay_create_customer, _create_payment and
-- _new_operation (above, with their callers).  A repeat under such a key
-- returns what the request made.  A repeated pay_create_customer,
-- pay_create_plan or pay_create_subscription finds its object by an index.
------------------------------------------------------------------------------
ALTER TABLE payments.idempotency_keys ALTER COLUMN request_hash DROP NOT NULL;
ALTER TABLE payments.idempotency_keys ADD COLUMN customer_id bigint;
CREATE INDEX idempotency_keys_customer ON payments.idempotency_keys (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON COLUMN payments.idempotency_keys.request_hash IS
	'md5 of the call''s arguments, which tells a repeat from another request under the key. NULL once the customer the request concerned was erased (it digests the customer''s details): a repeat of the same kind, for the same customer, then returns what the request made, whatever its arguments.';
COMMENT ON COLUMN payments.idempotency_keys.customer_id IS
	'The customer the request concerned: its own calls, its payment methods'', its payments'' (and their captures, voids and refunds) and its subscriptions''. Its erasure clears request_hash.';
CREATE INDEX customers_idempotency_key ON payments.customers (merchant_id, idempotency_key, customer_id)
	WHERE idempotency_key IS NOT NULL;
CREATE INDEX plans_idempotency_key ON payments.plans (merchant_id, idempotency_key, plan_id)
	WHERE idempotency_key IS NOT NULL;
CREATE INDEX subscriptions_idempotency_key ON payments.subscriptions (merchant_id, idempotency_key, subscription_id)
	WHERE idempotency_key IS NOT NULL;
DROP FUNCTION payments._idempotency_claim(bigint, text, text, text);
CREATE FUNCTION payments._idempotency_claim(p_merchant bigint, p_key text, p_kind text, p_hash text,
	p_customer bigint DEFAULT NULL)
	RETURNS payments.idempotency_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	existing payments.idempotency_keys;
	inserted boolean;
BEGIN
	IF p_key IS NULL THEN
		RETURN NULL;
	END IF;
	PERFORM payments._check_idempotency_key(p_key);
	INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash, customer_id)
	VALUES (p_merchant, p_key, p_kind, p_hash, p_customer)
	ON CONFLICT DO NOTHING;
	inserted := FOUND;
	IF NOT inserted THEN
		SELECT * INTO existing FROM payments.idempotency_keys
		WHERE merchant_id = p_merchant AND idempotency_key = p_key;
	END IF;
	-- new (or gone since the INSERT met it: an erasure committed in
	-- between), unless its customer was erased: the key is kept as a
	-- digest.  (A REPEATABLE READ or SERIALIZABLE snapshot older than the
	-- erasure does not see the digest: the call then fails with 40001 as it
	-- locks or updates a row the erasure changed, the key's own included.)
	IF existing.request_kind IS NULL THEN
		SELECT * INTO existing FROM payments.idempotency_keys
		WHERE merchant_id = p_merchant AND idempotency_key = payments._erased_key(p_merchant, p_key);
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
		IF inserted THEN
			DELETE FROM payments.idempotency_keys WHERE merchant_id = p_merchant AND idempotency_key = p_key;
		END IF;
	END IF;
	IF existing.request_kind <> p_kind
			OR (existing.request_hash IS NOT NULL AND existing.request_hash <> p_hash)
			-- erased: another customer named is another request
			OR (existing.request_hash IS NULL AND existing.customer_id <> p_customer) THEN
		RAISE EXCEPTION 'idempotency key was already used with different parameters'
			USING ERRCODE = 'PT409',
				DETAIL = format('The key was first used for %s with other arguments.', existing.request_kind),
				HINT = 'Use a new idempotency key for a new request, or repeat the original request exactly.';
	END IF;
	RETURN existing;
END
$$;
COMMENT ON FUNCTION payments._idempotency_claim(bigint, text, text, text, bigint) IS
	'Internal: claims an idempotency key for a request (about customer p_customer, if known), or returns the original call''s row (also one pay_erase_customer keeps as a digest, _erased_key); raises PT409 for the same key with different parameters (once the customer was erased: of another kind or naming another customer).';
REVOKE ALL ON FUNCTION payments._idempotency_claim(bigint, text, text, text, bigint) FROM PUBLIC;

------------------------------------------------------------------------------
-- h-subscription-money: subscription money to the cent (sql/src/
-- subscription_tables.sql, subscriptions.sql, billing.sql).  A change
-- without proration (none) sets the terms of the next period only: the
-- amount the current period was billed at is kept (period_amount) and is
-- what a later prorated change in the same period credits for its unused
-- part (it credited or charged it at the unbilled new terms: two changes
-- back to the same price gave months free).  The items a voided open
-- invoice took (a carried credit) go back to pending and are closed on the
-- final invoice when a subscription ends (they vanished).  A subscription
-- whose trial has ended becomes active only once no invoice of it is open
-- (a change's proration invoice, paid first, made it active while period
-- 0's charge was unanswered).  The functions are changed in place above.
------------------------------------------------------------------------------
ALTER TABLE payments.subscriptions ADD COLUMN period_amount payments.pay_amount;

-- The invoice items (prorations, a carried credit) that the open invoices
-- of a subscription ending now took go back to pending before those
-- invoices are voided, so that _close_pending_items closes them on the
-- final invoice: a voided invoice dropped them (a customer's carried
-- credit vanished without an event).
CREATE FUNCTION payments._release_open_invoice_items(s payments.subscriptions) RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.invoice_items t SET invoice_id = NULL
	FROM payments.invoices i
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
		AND t.merchant_id = i.merchant_id AND t.subscription_id = i.subscription_id
		AND t.invoice_id = i.invoice_id
	$$;
COMMENT ON FUNCTION payments._release_open_invoice_items(payments.subscriptions) IS
	'Internal: returns to pending the invoice items taken by the open invoices of a subscription that ends now (they are voided), so that its final invoice closes them.';

------------------------------------------------------------------------------
-- h-account-bound: an operation is only ever sent to, or asked of, the
-- gateway account it was first sent to (sql/src/worker.sql, billing.sql,
-- payment_api.sql, gateway_admin.sql).  A claim that had read the old
-- configuration could be in flight while pay_configure_gateway took
-- another account: sent with the old login, its reply lost, it was resent
-- to the new account and charged twice.  The claim records the account
-- (operations.gateway_account) and holds as a dead letter what is bound to
-- another account than the one configured now (_claim_operations, in its
-- final form in h-account-life below); a capture, void or refund takes its
-- payment's account (_new_operation, also in h-account-life);
-- pay_configure_gateway (edited in place above) lets a merchant go back to
-- the account its held operations were sent to, or its payments held for
-- review were made at;
-- the review checks ask only the account a payment or refund was made at
-- (_review_candidates, _refund_review_candidates, replaced below: SQL
-- functions, checked against the new column).
-- Made once since: _account_moved_error in h-account-life (its final form).
------------------------------------------------------------------------------
ALTER TABLE payments.operations ADD COLUMN gateway_account text;
COMMENT ON COLUMN payments.operations.gateway_account IS
	'The gateway account (payments._gateway_account of its api_login_id) the operation was sent to, recorded by the claim of every send while no attempt can have reached the gateway; a capture, void or refund takes its payment''s from its creation. The worker never sends, resends or looks it up at another account: it holds it as a dead letter instead. NULL: not sent since the column exists.';

-- A gateway account as operations record it (operations.gateway_account):
-- its api_login_id, digested (the login of an owner-only configuration is
-- not shown to API roles, who read their operations).  The endpoint is no
-- part of it: the same login at another URL is the same account.
CREATE FUNCTION payments._gateway_account(p_api_login_id text) RETURNS text
	-- inlined where it is called (the claim, once per operation; the
	-- settlement check, once per payment it looks at): no SET clause,
	-- every name qualified, and STABLE like convert_to (PostgreSQL inlines
	-- no function declared IMMUTABLE over a STABLE body: it ran as a
	-- statement of its own, five times per purchase)
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	AS $$ SELECT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p_api_login_id, 'UTF8')), 'hex'), 16) $$;
COMMENT ON FUNCTION payments._gateway_account(text) IS
	'Internal: the gateway account of an api_login_id as operations.gateway_account records it (the first 16 hex digits of its SHA-256; the endpoint URL is no part of it).';

CREATE OR REPLACE FUNCTION payments._review_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, kind text, invoice_number text,
		gateway_trans_id text, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT p.merchant_id, p.payment_id, p.kind, p.invoice_number, p.gateway_trans_id,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.payments p
	JOIN payments.gateway_config g ON g.merchant_id = p.merchant_id
	WHERE p.status = 'in_review' AND p.gateway_trans_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM payments.operations o
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
				AND (o.status IN ('queued', 'sending', 'unknown')
					-- made at another gateway account than the one configured
					-- now (operations.gateway_account): asked there it would
					-- never be found; asked once the merchant is back at it
					OR o.kind IN ('purchase', 'authorize')
						AND o.gateway_account <> payments._gateway_account(g.api_login_id)))
	ORDER BY p.updated_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._review_candidates(integer) IS
	'Worker: payments held for review, to ask the gateway what became of them.';

-- Refunds held for review (in_review: responseCode 4, or found held by a
-- lookup), whose fate the worker asks the gateway for with the payments
-- held for review (getTransactionDetails of the refund's transaction),
-- least recently asked first.
CREATE OR REPLACE FUNCTION payments._refund_review_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, operation_id bigint, payment_id bigint,
		invoice_number text, gateway_trans_id text, api_login_id text, transaction_key text,
		endpoint_url text, ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT o.merchant_id, o.operation_id, o.payment_id,
		-- the refund's own transaction, or the payment's for one sent as a void
		CASE WHEN o.via_void THEN p.invoice_number ELSE 'R' || payments._invoice_tag() || o.operation_id END,
		o.gateway_trans_id, g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.operations o
	JOIN payments.payments p ON p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
	JOIN payments.gateway_config g ON g.merchant_id = o.merchant_id
	WHERE o.status = 'in_review' AND o.kind = 'refund' AND o.gateway_trans_id IS NOT NULL
		-- (at the gateway account configured now: see _review_candidates)
		AND (o.gateway_account IS NULL OR o.gateway_account = payments._gateway_account(g.api_login_id))
	ORDER BY o.updated_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._refund_review_candidates(integer) IS
	'Worker: refunds held for review, to ask the gateway what became of them.';

-- The gate of the two triggers below (C, src/restore_gate.c): it runs the
-- trigger function it names only while check_function_bodies is off, as a
-- restore sets it.  A WHEN clause saying that is read back from its text
-- and planned for every statement that fires it (1.5% of a pay_purchase).
CREATE FUNCTION payments._restore_gate() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_restore_gate';
COMMENT ON FUNCTION payments._restore_gate() IS
	'Trigger: runs the trigger function its argument names (regprocedure) only while check_function_bodies is off, as pg_dump scripts and pg_restore set it; otherwise keeps the row as it is.';

-- h-restore-in-service: a dump restored into the database a running
-- worker serves (sql/src/worker.sql): the operations it loads are made safe
-- as they come, the worker_server row the worker recorded stays.
-- A dump restored (pg_restore, or a pg_dump script, run by a superuser:
-- check_function_bodies is off, as for the status triggers) is the history
-- of the server it was dumped from, perhaps short: that server may have
-- sent what was queued when the dump was taken, and what was "sending"
-- had its reply on the way.  The worker of the database restored into
-- may have made its start-of-service checks (_recover_in_flight,
-- _recover_lost_sends) on the empty extension, before the rows came (a
-- server preloaded and serving the database while pg_restore creates the
-- extension and then loads the tables): each operation is therefore made
-- safe as it is loaded.  One the dump has as queued, sending or dead and
-- never sent is treated as possibly sent, as _recover_lost_sends does (sent
-- at its last change known here: resent identically inside the duplicate
-- window, looked up past it, never failed for a card that stayed with the
-- old server); one "sending" is queued again at once, possibly sent
-- (nobody here has it in flight: left "sending", it stayed there).
CREATE FUNCTION payments._restored_operation() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- a superuser's session (session_user): inside the API's SECURITY
	-- DEFINER functions current_user is their owner, and any caller may
	-- turn check_function_bodies off (before: its pay_purchase made an
	-- operation "restored from a dump", taken for possibly sent)
	IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user) THEN
		RETURN NEW;
	END IF;
	IF NEW.status IN ('queued', 'sending', 'dead') AND NEW.never_sent THEN
		NEW.never_sent := false;
		NEW.first_sent_at := coalesce(NEW.first_sent_at, greatest(NEW.created_at, NEW.updated_at));
		NEW.last_error := 'restored from a dump: the server it was dumped from may have sent it';
	END IF;
	IF NEW.status = 'sending' THEN
		NEW.status := 'queued';
		NEW.next_attempt_at := now();
		NEW.last_error := 'restored from a dump while its request was in flight';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._restored_operation() IS
	'Trigger: an operation loaded by a restore (a superuser''s session, check_function_bodies off) that the dump has as queued, sending or dead and never sent is treated as possibly sent (resent identically inside the duplicate window, looked up past it); one sending is queued again at once.';
CREATE TRIGGER operations_restored BEFORE INSERT ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._restore_gate('payments._restored_operation()');
COMMENT ON TRIGGER operations_restored ON payments.operations IS
	'A restore loads the operations of another server''s history, possibly short: what may have been sent is treated as possibly sent (payments._restored_operation).';

-- The worker_server row of a dump, restored where the worker already
-- recorded its own (it served the extension before the rows came): the
-- worker's row stays (the operations were made safe as they were loaded),
-- and the restore does not fail on the duplicate.  Either way the
-- database changed server now: the one it was dumped from may have gone
-- on charging what comes due here (changed_at, _queue_invoice_charge).
CREATE FUNCTION payments._restored_worker_server() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.worker_server) THEN
		UPDATE payments.worker_server SET changed_at = now(), server_tag = payments._new_server_tag();
		RETURN NULL;
	END IF;
	NEW.changed_at := now();
	NEW.server_tag := payments._new_server_tag();
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._restored_worker_server() IS
	'Trigger: a restore (check_function_bodies off) does not replace the worker_server row the worker of this database already recorded, and records the restore''s time as the moment the database changed server (changed_at), with a new server life''s tag of invoice numbers (server_tag).';
CREATE TRIGGER worker_server_restored BEFORE INSERT ON payments.worker_server
	FOR EACH ROW EXECUTE FUNCTION payments._restore_gate('payments._restored_worker_server()');
COMMENT ON TRIGGER worker_server_restored ON payments.worker_server IS
	'A restore keeps the row the worker of this database already recorded (payments._restored_worker_server).';

------------------------------------------------------------------------------
-- h-audit-digest: pay_audit_seal() writes the seals it made to the server
-- log as a digest (sql/src/audit.sql), a copy outside the database for
-- pay_audit_verify(digest => ...).
CREATE OR REPLACE FUNCTION payments.pay_audit_seal(wait interval DEFAULT '5 seconds') RETURNS integer
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

------------------------------------------------------------------------------
-- h-customer-gone: a customer's whole gateway profile deleted outside
-- payments (sql/src/payment_methods.sql; src/gateway_cim.c).  A save into
-- it is answered E00040: the worker finds the profile gone, forgets it and
-- saves the card in a new one (as a first save, crash-safely), and
-- _record_method_result (a new argument, p_gone_customer_profile_id) makes
-- the customer forget it and fails its active methods in it
-- (_customer_profile_gone) with the transition a charge that meets a gone
-- profile makes (_payment_methods_gone, now also _payment_method_gone's).
-- Made once since: _payment_method_gone in h-method-gone;
-- _record_method_result in h-account-life (their final form).
------------------------------------------------------------------------------
CREATE FUNCTION payments._payment_methods_gone(p_merchant_id bigint, p_payment_method_ids bigint[],
	p_reason text)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods x SET status = 'failed', is_default = false,
		failure_code = 'payment_method_gone', failure_reason = p_reason
	WHERE x.merchant_id = p_merchant_id AND x.payment_method_id = ANY (p_payment_method_ids)
		AND x.status = 'active'
	$$;
COMMENT ON FUNCTION payments._payment_methods_gone(bigint, bigint[], text) IS
	'Internal: fails the active ones of these stored methods, whose profile is gone at the gateway (failure_code payment_method_gone, p_reason; no longer the default; a payment_method.failed event).';

REVOKE ALL ON FUNCTION payments._payment_methods_gone(bigint, bigint[], text) FROM PUBLIC;

CREATE FUNCTION payments._customer_profile_gone(o payments.operations, p_customer_profile_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	UPDATE payments.customers x SET customer_profile_id = NULL, updated_at = clock_timestamp()
	WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
		AND x.customer_profile_id = p_customer_profile_id;
	PERFORM payments._payment_methods_gone(o.merchant_id, ARRAY(SELECT x.payment_method_id
			FROM payments.payment_methods x
			WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
				AND x.customer_profile_id = p_customer_profile_id AND x.status = 'active'),
		format('The gateway no longer has the customer''s profile %s (E00040) with this card''s payment profile in it, which was deleted outside payments: found when payment method %s was saved.',
			p_customer_profile_id, o.payment_method_id));
END
$$;
COMMENT ON FUNCTION payments._customer_profile_gone(payments.operations, text) IS
	'Internal: a save (operation o) found the customer''s gateway profile gone: the customer forgets it and its active methods in it are failed (payment_method_gone).';

REVOKE ALL ON FUNCTION payments._customer_profile_gone(payments.operations, text) FROM PUBLIC;

------------------------------------------------------------------------------
-- h-account-life: what was made at a gateway account stays bound to it
-- after the merchant moves to another (sql/src/worker.sql,
-- payment_api.sql, payment_methods.sql).  A payment's capture, void or
-- refund, and a charge of a stored method saved at the old account, are
-- refused at the call (22Y20, _refuse_other_account); a charge of such a
-- method queued before the change is held by the claim as a dead letter
-- (it went to the new account, which answered "not found", and the
-- method was failed as if deleted); the settlement check asks only about
-- payments made at the account configured now (_settlement_candidates).
-- New functions made here; the others replaced with their current text.
------------------------------------------------------------------------------
CREATE FUNCTION payments._payment_account(p_merchant_id bigint, p_payment_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.payment_id = p_payment_id
			AND x.kind IN ('purchase', 'authorize')
		ORDER BY x.operation_id LIMIT 1 $$;
COMMENT ON FUNCTION payments._payment_account(bigint, bigint) IS
	'Internal: the gateway account a payment was made at (operations.gateway_account of its purchase or authorization), or NULL.';

CREATE FUNCTION payments._method_account(p_merchant_id bigint, p_payment_method_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.payment_method_id = p_payment_method_id
			AND x.kind = 'save_method' AND x.status = 'succeeded'
		ORDER BY x.operation_id DESC LIMIT 1 $$;
COMMENT ON FUNCTION payments._method_account(bigint, bigint) IS
	'Internal: the gateway account a stored payment method was saved at (operations.gateway_account of its save), where its profiles are, or NULL.';

CREATE FUNCTION payments._customer_account(p_merchant_id bigint, p_customer_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.customer_id = p_customer_id
			AND x.kind = 'save_method' AND x.status = 'succeeded'
		ORDER BY x.operation_id DESC LIMIT 1 $$;
COMMENT ON FUNCTION payments._customer_account(bigint, bigint) IS
	'Internal: the gateway account a customer''s profile (customers.customer_profile_id) is at: that of its latest save (operations.gateway_account), or NULL.';

CREATE FUNCTION payments._refuse_other_account(p_merchant_id bigint, p_account text, p_what text,
	p_hint text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	configured text;
BEGIN
	SELECT payments._gateway_account(g.api_login_id) INTO configured
	FROM payments.gateway_config g WHERE g.merchant_id = p_merchant_id;
	IF p_account IS NULL OR configured IS NULL OR p_account = configured THEN
		RETURN;
	END IF;
	RAISE EXCEPTION '% at another gateway account than the one configured now', p_what
		USING ERRCODE = '22Y20',
			DETAIL = format('It is at gateway account %s; the merchant''s gateway account was changed since (pay_configure_gateway) to %s, which does not know it (accounts as payments._gateway_account(api_login_id) names them). The credentials of account %s are no longer configured, so nothing can be sent there.',
				p_account, configured, p_account),
			HINT = p_hint;
END
$$;
COMMENT ON FUNCTION payments._refuse_other_account(bigint, text, text, text) IS
	'Internal: raises 22Y20 when p_account (a payment''s or a stored method''s gateway account) is not the merchant''s configured one: sent there, it would never be found.';

-- Why the claim held an operation bound to another gateway account than
-- the one configured now (_claim_operations), as its last_error.
CREATE OR REPLACE FUNCTION payments._account_moved_error(p_sent_to text, p_configured text) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT pg_catalog.format('held: the gateway account changed after this operation was sent (or its payment was made, or the stored payment method or customer profile it uses was saved) at account %s; the one configured now is %s (accounts as payments._gateway_account(api_login_id) names them). Sent or looked up there it could be charged twice, or never found: configure account %1$s again (pay_configure_gateway) and pay_retry_dead_letter it, or settle it at that account by hand and record what happened with pay_resolve_dead_letter (or pay_discard_dead_letter it).',
		p_sent_to, p_configured) $$;
COMMENT ON FUNCTION payments._account_moved_error(text, text) IS
	'Internal: the last_error of an operation the worker held as a dead letter because the merchant''s gateway account changed after it was sent (or its payment was made, or the stored method or customer profile it uses was saved) at another.';

CREATE OR REPLACE FUNCTION payments._settlement_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, gateway_trans_id text,
		created_at timestamptz, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	-- the plan's estimate (every merchant's full share) would compile it
	SET jit = off
	AS $$
	-- each merchant's oldest p_limit (one merchant's backlog neither
	-- starves the others nor makes a round long)
	SELECT g.merchant_id, p.payment_id, p.gateway_trans_id, p.created_at,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.gateway_config g
	CROSS JOIN LATERAL (SELECT x.payment_id, x.gateway_trans_id, x.created_at
		FROM payments.payments x
		WHERE x.merchant_id = g.merchant_id AND x.settled_at IS NULL AND x.gateway_trans_id IS NOT NULL
			AND x.status IN ('succeeded', 'partially_refunded')
			-- (31 days of 24 hours: an interval of days would count them in the
			-- session's TimeZone)
			AND x.created_at > now() - make_interval(hours => 31 * 24)
			-- made at the gateway account configured now: the batches of
			-- another are not there (found once the merchant is back at it)
			AND coalesce(payments._payment_account(x.merchant_id, x.payment_id)
				= payments._gateway_account(g.api_login_id), true)
		ORDER BY x.created_at
		LIMIT p_limit) p
	ORDER BY g.merchant_id, p.created_at
	$$;
COMMENT ON FUNCTION payments._settlement_candidates(integer) IS
	'Worker: captured payments (of the last 31 days, made at the gateway account configured now) whose settlement is not known yet, each merchant''s oldest p_limit, ordered by merchant, to look for in the gateway''s settled batches.';

CREATE OR REPLACE FUNCTION payments._new_operation(p payments.payments, p_kind text, p_amount payments.pay_amount,
	p_status text, p_reason text, p_key text, p_correlation_id text, p_via_void boolean DEFAULT false)
	RETURNS payments.operations
	LANGUAGE plpgsql AS $$
DECLARE
	o payments.operations;
	corr text := payments._correlation_id(p_correlation_id);
	account text := payments._payment_account(p.merchant_id, p.payment_id);
BEGIN
	-- the correlation id is sent as refId
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	-- a capture, void or refund acts on the payment's transaction: it goes to
	-- the gateway account the payment was made at, or nowhere: refused
	-- while the merchant is at another (_claim_operations holds one queued
	-- before a change)
	PERFORM payments._refuse_other_account(p.merchant_id, account, format('payment %s was made', p.payment_id),
		'Configure the account it was made at again (pay_configure_gateway: going back to it is allowed) and call again, or do it in that account''s Merchant Interface. Meanwhile its settlement is not learned either (settled_at stays empty).');
	INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, reason, via_void,
		idempotency_key, correlation_id, gateway_account)
	VALUES (p.merchant_id, p.payment_id, p_kind, p_status, p_amount, p_reason, p_via_void, p_key, corr,
		account)
	RETURNING * INTO o;
	IF p_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = p.payment_id, operation_id = o.operation_id,
			customer_id = p.customer_id
		WHERE merchant_id = p.merchant_id AND idempotency_key = p_key;
	END IF;
	IF p_status = 'queued' THEN
		PERFORM payments._wake_at_commit();
	END IF;
	RETURN o;
END
$$;
COMMENT ON FUNCTION payments._new_operation(payments.payments, text, payments.pay_amount, text, text, text, text, boolean) IS
	'Internal: records a gateway operation for a payment and wakes the worker at COMMIT.';

-- The stored method a payment charges: the one named (it must be active,
-- and the customer's when a customer is named too), or the customer's
-- default when a customer alone is named (no card, opaque data or profile:
-- p_other_methods = 0).  An empty row when no stored method is charged.
CREATE OR REPLACE FUNCTION payments._stored_method_for_payment(p_customer_id bigint, p_payment_method_id bigint,
	p_other_methods integer)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
	c payments.customers;
BEGIN
	IF p_customer_id IS NOT NULL THEN
		c := payments._share_customer(p_customer_id);
	END IF;
	IF p_payment_method_id IS NULL THEN
		IF p_customer_id IS NULL OR p_other_methods > 0 THEN
			RETURN pm;
		END IF;
		-- its active default, or the active one a pending default replaced
		pm := payments._usable_default_method(c.merchant_id, c.customer_id);
		IF pm.payment_method_id IS NULL THEN
			PERFORM payments._no_default_method(c);
		END IF;
	ELSE
		IF p_other_methods > 1 THEN
			RAISE EXCEPTION 'exactly one payment method is required'
				USING ERRCODE = '22Y22', DETAIL = 'payment_method_id was given with another payment method.';
		END IF;
		pm := payments._find_payment_method(p_payment_method_id);
		IF p_customer_id IS NULL THEN
			-- the method's customer, locked as a named one is; then the method
			-- as it is once a deletion of the customer has committed
			PERFORM payments._share_customer(pm.customer_id);
			pm := payments._find_payment_method(p_payment_method_id);
		END IF;
		IF p_customer_id IS NOT NULL AND pm.customer_id <> p_customer_id THEN
			RAISE EXCEPTION 'payment method % is not customer %''s', p_payment_method_id, p_customer_id
				USING ERRCODE = '22023';
		END IF;
		IF pm.status = 'failed' AND pm.failure_reason IS NOT NULL THEN
			-- says why: its save failed, or its profile is gone at the gateway
			RAISE EXCEPTION 'payment method % is failed, not active', p_payment_method_id
				USING ERRCODE = '22Y20', DETAIL = pm.failure_reason,
					HINT = 'Save the card again (pay_save_payment_method).';
		ELSIF pm.status <> 'active' THEN
			RAISE EXCEPTION 'payment method % is %, not active', p_payment_method_id, pm.status
				USING ERRCODE = '22Y20',
					HINT = CASE WHEN pm.status = 'pending' THEN 'Wait for it to be saved (pay_wait_payment_method).'
						ELSE 'Save the card again (pay_save_payment_method).' END;
		END IF;
	END IF;
	-- its profiles are at the gateway account it was saved at: while the
	-- merchant is at another, which would answer "not found", it is
	-- refused, and kept active (it is not gone)
	PERFORM payments._refuse_other_account(pm.merchant_id,
		payments._method_account(pm.merchant_id, pm.payment_method_id),
		format('payment method %s was saved', pm.payment_method_id),
		'Configure the account it was saved at again (pay_configure_gateway) to charge it; the method is kept as it is. Or ask the customer for the card again and save it at the account configured now (pay_save_payment_method).');
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._stored_method_for_payment(bigint, bigint, integer) IS
	'Internal: the stored payment method a payment charges (named, or the customer''s usable default: _usable_default_method), checked active and saved at the gateway account configured now (22Y20 otherwise); PT404 for an unknown or foreign one.';

CREATE OR REPLACE FUNCTION payments.pay_delete_payment_method(payment_method_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods := payments._find_payment_method(pay_delete_payment_method.payment_method_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(pm.merchant_id,
		pay_delete_payment_method.idempotency_key, 'delete_payment_method',
		md5(jsonb_build_array(pm.payment_method_id)::text), pm.customer_id);
	corr text := payments._correlation_id(pay_delete_payment_method.correlation_id);
	result payments.payment_methods;
BEGIN
	IF idem.request_kind IS NULL THEN
		IF pm.status = 'pending' THEN
			RAISE EXCEPTION 'payment method % is still being saved', pm.payment_method_id
				USING ERRCODE = '22Y20', HINT = 'Wait for it (pay_wait_payment_method), then delete it.';
		ELSIF pm.status = 'active' AND pm.payment_profile_id IS NOT NULL THEN
			PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
			-- its profile is at the account it was saved at: asked of
			-- another, "not found" would count as deleted, and the card
			-- would stay there
			PERFORM payments._refuse_other_account(pm.merchant_id,
				payments._method_account(pm.merchant_id, pm.payment_method_id),
				format('payment method %s was saved', pm.payment_method_id),
				'Configure the account it was saved at again (pay_configure_gateway) to delete it there; the method is kept as it is.');
			-- keeps is_default: a deleting method is no usable default
			-- (_usable_default_method), and a failed deletion leaves it the
			-- default again unless another was made the default meanwhile
			UPDATE payments.payment_methods x SET status = 'deleting'
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
			PERFORM payments._new_method_operation(pm.merchant_id, 'delete_method', pm.payment_method_id,
				pm.customer_id, NULL, pay_delete_payment_method.idempotency_key, corr);
		ELSIF pm.status IN ('active', 'failed') THEN
			UPDATE payments.payment_methods x SET status = 'deleted', is_default = false
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
		END IF;
	END IF;
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_delete_payment_method(bigint, text, text) IS
	'Deletes a payment method, at the gateway too: an active one goes to deleting and the worker sends deleteCustomerPaymentProfile after COMMIT (then deleted); a failed one is deleted at once. A default keeps is_default while deleting (no charge of the customer''s default uses it) and is the default again if its deletion fails, unless another was made the default meanwhile. A method still being saved is refused (22Y20), and so is one saved at another gateway account than the one configured now (its profile is there). Deleting a deleted method changes nothing.';

CREATE OR REPLACE FUNCTION payments._record_method_result(p_merchant_id bigint, p_operation_id bigint,
	p_outcome text, p_code text, p_reason text, p_customer_profile_id text,
	p_payment_profile_id text, p_network_trans_id text, p_card_last4 text, p_card_brand text,
	p_retry_at timestamptz, p_error text, p_card_fingerprint text,
	p_gone_customer_profile_id text DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	t payments.operation_outcomes;
	ok boolean;
	dup bigint;
	profile_moved boolean;
BEGIN
	IF p_outcome IN ('retry', 'unknown') THEN
		-- tried again later, as every operation is (no payment to move)
		PERFORM payments._record_result(p_merchant_id, p_operation_id, p_outcome, NULL, NULL, NULL,
			NULL, NULL, NULL, NULL, p_retry_at, p_error, NULL);
		RETURN;
	END IF;
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT * INTO t FROM payments.operation_outcomes x
	WHERE x.operation_kind = o.kind AND x.outcome = p_outcome;
	IF NOT FOUND OR t.operation_status NOT IN ('succeeded', 'failed') THEN
		RAISE EXCEPTION 'invalid outcome % for operation %', p_outcome, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	ok := t.operation_status = 'succeeded';
	-- a save sent to another account than the customer's profile is at
	-- made the customer a profile there (_claim_operations), its profile
	-- from now on
	profile_moved := o.kind = 'save_method'
		AND payments._customer_account(o.merchant_id, o.customer_id) <> o.gateway_account;
	-- Two live methods of a customer never share one gateway payment
	-- profile: deleting one would delete the other's card.  A save answered
	-- with a profile another active or deleting method of the customer holds
	-- fails with E00039 and names that method: the gateway's duplicate
	-- answer for a card saved twice (the worker fails it when it knows the
	-- profile is taken), or, as a backstop, any save that came back with one.
	IF o.kind = 'save_method' AND p_payment_profile_id IS NOT NULL AND (ok OR p_code = 'E00039') THEN
		SELECT x.payment_method_id INTO dup FROM payments.payment_methods x
		WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
			AND x.payment_method_id <> o.payment_method_id AND x.payment_profile_id = p_payment_profile_id
			AND x.status IN ('active', 'deleting')
		LIMIT 1;
		IF FOUND THEN
			ok := false;
			t.operation_status := 'failed';
			p_code := 'E00039';
			p_reason := format('This card is saved already as payment method %s of the customer.', dup);
		END IF;
	END IF;
	UPDATE payments.operations SET status = t.operation_status,
		reason_text = coalesce(p_reason, p_error), last_error = CASE WHEN NOT ok THEN coalesce(p_error, p_code) END,
		completed_at = clock_timestamp()
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	DELETE FROM payments.card_vault WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;

	IF o.kind = 'save_method' AND p_gone_customer_profile_id IS NOT NULL THEN
		PERFORM payments._customer_profile_gone(o, p_gone_customer_profile_id);
	END IF;
	IF o.kind = 'save_method' THEN
		IF ok THEN
			UPDATE payments.customers SET customer_profile_id = CASE WHEN profile_moved
					THEN coalesce(p_customer_profile_id, customer_profile_id)
					ELSE coalesce(customer_profile_id, p_customer_profile_id) END,
				updated_at = clock_timestamp()
			WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id;
			UPDATE payments.payment_methods SET status = 'active',
				customer_profile_id = p_customer_profile_id, payment_profile_id = p_payment_profile_id,
				network_trans_id = coalesce(network_trans_id, nullif(p_network_trans_id, '')),
				card_last4 = coalesce(card_last4, nullif(p_card_last4, '')),
				card_brand = coalesce(card_brand, nullif(p_card_brand, '')),
				card_fingerprint = coalesce(card_fingerprint, p_card_fingerprint)
			WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'pending';
		ELSE
			UPDATE payments.payment_methods SET status = 'failed', is_default = false,
				failure_code = p_code, failure_reason = coalesce(p_reason, p_error)
			WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'pending';
		END IF;
	ELSIF o.kind = 'delete_method' THEN
		UPDATE payments.payment_methods SET status = CASE WHEN ok THEN 'deleted' ELSE 'active' END,
			is_default = is_default AND NOT ok,
			failure_code = CASE WHEN ok THEN failure_code ELSE p_code END,
			failure_reason = CASE WHEN ok THEN failure_reason ELSE coalesce(p_reason, p_error) END
		WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'deleting';
	ELSIF o.kind = 'delete_customer' AND ok THEN
		UPDATE payments.payment_methods SET status = 'deleted'
		WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id AND status = 'deleting';
	ELSIF o.kind = 'delete_customer' THEN
		PERFORM payments._customer_profile_kept(o, coalesce(p_reason, p_error, p_code));
	END IF;
END
$$;
COMMENT ON FUNCTION payments._record_method_result(bigint, bigint, text, text, text, text, text, text, text, text, timestamptz, text, text, text) IS
	'Worker, step 3: records the gateway''s answer to a save_method, delete_method or delete_customer operation and moves the payment method (and the customer''s profile id) on; p_gone_customer_profile_id: the customer''s profile the save found gone at the gateway (_customer_profile_gone).';

CREATE OR REPLACE FUNCTION payments._claim_operations(p_limit integer, p_background_limit integer DEFAULT NULL,
	p_held_connections text[] DEFAULT '{}', p_only_connection text DEFAULT NULL,
	p_after_merchant bigint DEFAULT NULL)
	RETURNS TABLE (merchant_id bigint, operation_id bigint, payment_id bigint, kind text,
		action text, attempt integer, via_void boolean, amount_minor bigint, currency text,
		currency_exponent integer, txn_invoice text, description text, customer jsonb,
		ref_trans_id text, card_last4 text, payment_method text, customer_profile_id text,
		payment_profile_id text, sealed bytea, correlation_id text, created_at timestamptz,
		never_sent boolean,
		api_login_id text, transaction_key text, endpoint_url text, ca_file text, timeout_ms integer,
		payment_method_id bigint, customer_id bigint, method_source text, validation_mode text,
		method_default boolean, method_customer_profile_id text, method_payment_profile_id text,
		merchant_customer_id text, customer_email text, customer_name text, customer_billing jsonb,
		original_network_trans_id text, method_card_last4 text, method_taken_profiles text,
		last_attempt_at timestamptz, recurring boolean, first_recurring boolean, more_ready boolean)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET enable_bitmapscan = off
	SET enable_sort = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
BEGIN
	-- Ordinary operations first, then the background ones (a billing run's
	-- charges) in what room is left, at most p_background_limit (NULL: no
	-- other limit): a backlog of renewals never holds up a checkout's
	-- result.  Merchants without a gateway configuration are skipped (and
	-- parked by _park_unconfigured), and so are those whose gateway
	-- connection is in p_held_connections: the worker's circuit for it is
	-- open (one merchant's dead endpoint holds back no one else).
	-- p_only_connection: only those of that connection (the one probe of a
	-- half-open circuit).  The rows are returned in the order of turns.
	RETURN QUERY
	WITH RECURSIVE due_ops AS MATERIALIZED (
		-- the operations due, by due time, as many as 1,000 and one: when
		-- there are no more, their merchants are every merchant with one due,
		-- and merchants whose operations all wait for later (parked behind
		-- an open circuit, an unknown outcome's next look) cost nothing
		SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
		WHERE o.status IN ('queued', 'unknown') AND o.next_attempt_at <= now()
		ORDER BY o.next_attempt_at LIMIT 1001
	), backlog AS (
		-- more are due (a backlog): each (background, merchant) key and its
		-- earliest due time, one index probe per merchant with operations
		-- waiting
		(SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
		 WHERE o.status IN ('queued', 'unknown') AND (SELECT count(*) FROM due_ops) > 1000
		 ORDER BY o.background, o.merchant_id, o.next_attempt_at LIMIT 1)
		UNION ALL
		SELECT n.background, n.merchant_id, n.next_attempt_at FROM backlog w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
			WHERE o.status IN ('queued', 'unknown')
				AND (o.background, o.merchant_id) > (w.background, w.merchant_id)
			ORDER BY o.background, o.merchant_id, o.next_attempt_at LIMIT 1) n
	), waiting AS (
		-- each (background, merchant) key with operations due or waiting,
		-- and its earliest due time
		SELECT d.background, d.merchant_id, min(d.next_attempt_at) AS next_attempt_at FROM due_ops d
		WHERE (SELECT count(*) FROM due_ops) <= 1000
		GROUP BY d.background, d.merchant_id
		UNION ALL
		SELECT b.background, b.merchant_id, b.next_attempt_at FROM backlog b
	), due AS (
		-- the merchants with an operation due (their earliest is), of
		-- a connection whose circuit is closed: how many, and each one's
		-- place in this claim's rotation (after p_after_merchant first)
		SELECT w.background, w.merchant_id, w.next_attempt_at,
			count(*) OVER (PARTITION BY w.background) AS merchants,
			row_number() OVER (PARTITION BY w.background
				ORDER BY p_after_merchant IS NOT NULL AND w.merchant_id <= p_after_merchant,
					w.merchant_id) AS nth
		FROM waiting w
		-- configured (its row by key: this runs every round, and configured
		-- merchants may be many); its connection worked out only when some
		-- connection is held or probed
		WHERE w.next_attempt_at <= now() AND EXISTS (SELECT 1 FROM payments.gateway_config g
			WHERE g.merchant_id = w.merchant_id
				AND (cardinality(p_held_connections) = 0 AND p_only_connection IS NULL
					OR payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms)
							<> ALL (p_held_connections)
						AND (p_only_connection IS NULL OR p_only_connection
							= payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms))))
	), ordinary AS (
		-- the room shared out exactly among the first p_limit merchants of
		-- the rotation (those after the remainder's one row less), each
		-- share by due time and locked as read (from its earliest on: past
		-- the index entries of operations claimed since the last vacuum,
		-- which the search for it went through); numbered, its turns
		SELECT x.*, w.share, row_number() OVER (PARTITION BY x.merchant_id ORDER BY x.next_attempt_at) AS turn
		FROM (SELECT d.*, p_limit / least(d.merchants, p_limit)
				+ CASE WHEN d.nth <= p_limit % least(d.merchants, p_limit) THEN 1 ELSE 0 END AS share
			FROM due d WHERE NOT d.background AND d.nth <= p_limit) w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.operation_id, o.next_attempt_at,
				o.status AS old_status, o.updated_at AS old_updated_at, o.kind, o.never_sent,
				o.gateway_account, o.payment_id AS subject_payment_id,
				o.payment_method_id AS subject_method_id, o.customer_id AS subject_customer_id
			FROM payments.operations o
			WHERE NOT o.background AND o.merchant_id = w.merchant_id
				AND o.status IN ('queued', 'unknown')
				AND o.next_attempt_at >= w.next_attempt_at AND o.next_attempt_at <= now()
			ORDER BY o.next_attempt_at
			LIMIT w.share
			FOR UPDATE OF o SKIP LOCKED) x
	), ordinary_more AS (
		-- ordinary operations may be left due: a merchant took its whole
		-- share, or had none (more merchants than room)
		SELECT EXISTS (SELECT 1 FROM due d WHERE NOT d.background AND d.nth > p_limit)
			OR EXISTS (SELECT 1 FROM ordinary o GROUP BY o.merchant_id HAVING count(*) >= max(o.share)) AS more
	), background_room AS (
		-- ordinary ones first: room for the background only when none is left
		SELECT CASE WHEN m.more THEN 0
			ELSE least(greatest(p_limit - (SELECT count(*) FROM ordinary), 0),
				coalesce(p_background_limit, p_limit)) END AS room
		FROM ordinary_more m
	), background AS (
		SELECT x.*, w.share, row_number() OVER (PARTITION BY x.merchant_id ORDER BY x.next_attempt_at) AS turn
		FROM (SELECT d.*, r.room / least(d.merchants, r.room)
				+ CASE WHEN d.nth <= r.room % least(d.merchants, r.room) THEN 1 ELSE 0 END AS share
			FROM due d, background_room r WHERE d.background AND d.nth <= r.room) w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.operation_id, o.next_attempt_at,
				o.status AS old_status, o.updated_at AS old_updated_at, o.kind, o.never_sent,
				o.gateway_account, o.payment_id AS subject_payment_id,
				o.payment_method_id AS subject_method_id, o.customer_id AS subject_customer_id
			FROM payments.operations o
			WHERE o.background AND o.merchant_id = w.merchant_id
				AND o.status IN ('queued', 'unknown')
				AND o.next_attempt_at >= w.next_attempt_at AND o.next_attempt_at <= now()
			ORDER BY o.next_attempt_at
			LIMIT w.share
			FOR UPDATE OF o SKIP LOCKED) x
	), locked AS (
		SELECT * FROM ordinary UNION ALL SELECT * FROM background
	), ready AS (
		-- in turns: every merchant's first before anyone's second
		SELECT l.*, row_number() OVER (PARTITION BY l.background
				ORDER BY l.turn, p_after_merchant IS NOT NULL AND l.merchant_id <= p_after_merchant,
					l.merchant_id) AS pos
		FROM locked l
	), more AS (
		-- more may be due: of the ordinary ones (above), or a background
		-- merchant took its whole share or had none
		SELECT (SELECT m.more FROM ordinary_more m)
			OR EXISTS (SELECT 1 FROM due d, background_room r WHERE d.background AND d.nth > r.room)
			OR EXISTS (SELECT 1 FROM background b GROUP BY b.merchant_id HAVING count(*) >= max(b.share))
			AS ready
	), claimed AS (
		-- the gateway account each is sent to is recorded (gateway_account):
		-- one that may have reached another account, acts on a payment
		-- made at another, or charges a stored method saved at another, is
		-- never sent here but held as a dead letter (its configuration,
		-- read here, changed while it was claimed, or before)
		UPDATE payments.operations o
		SET status = CASE WHEN a.moved THEN 'dead' ELSE 'sending' END,
			attempts = o.attempts + CASE WHEN a.moved THEN 0 ELSE 1 END,
			first_sent_at = CASE WHEN a.moved THEN o.first_sent_at ELSE coalesce(o.first_sent_at, now()) END,
			gateway_account = coalesce(a.bound_to, a.account),
			last_error = CASE WHEN a.moved THEN payments._account_moved_error(a.bound_to, a.account)
				ELSE o.last_error END
		FROM ready r
		JOIN payments.gateway_config g ON g.merchant_id = r.merchant_id
		CROSS JOIN LATERAL (SELECT k.account, k.bound_to, k.bound_to <> k.account AS moved
			FROM (SELECT payments._gateway_account(g.api_login_id) AS account,
				-- bound to its account: what may have reached one, and a
				-- capture, void or refund from its creation (its
				-- payment's); a charge of a stored method to the account
				-- the method was saved at (its profiles are there: at
				-- another, "not found" would fail the method as deleted), and
				-- so does a deletion of the method or of the customer's
				-- profile (there "not found" counts as deleted already)
				CASE WHEN NOT r.never_sent OR r.kind IN ('capture', 'void', 'refund') THEN r.gateway_account
					WHEN r.kind IN ('purchase', 'authorize') THEN (SELECT payments._method_account(p.merchant_id,
							p.payment_method_id)
						FROM payments.payments p
						WHERE p.merchant_id = r.merchant_id AND p.payment_id = r.subject_payment_id
							AND p.payment_method_id IS NOT NULL)
					WHEN r.kind = 'delete_method' THEN payments._method_account(r.merchant_id, r.subject_method_id)
					WHEN r.kind = 'delete_customer' THEN payments._customer_account(r.merchant_id, r.subject_customer_id)
					-- a save of a payment's card, to the account the payment
					-- was made at (only it knows the transaction)
					WHEN r.kind = 'save_method' AND r.subject_payment_id IS NOT NULL
						THEN payments._payment_account(r.merchant_id, r.subject_payment_id)
					END AS bound_to) k) a
		WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id
			AND r.pos <= CASE WHEN NOT r.background THEN p_limit ELSE (SELECT b.room FROM background_room b) END
		RETURNING o.*, r.old_status, r.old_updated_at, r.pos, g.api_login_id, g.transaction_key,
			g.endpoint_url, g.ca_file, g.timeout_ms
	)
	SELECT c.merchant_id, c.operation_id, c.payment_id, c.kind,
		-- queued again after an attempt that may have gone through (an
		-- unknown outcome, then a resend that provably failed) counts too
		-- (on the clock: the worker may have spent a while recording outcomes
		-- in this transaction before claiming)
		CASE WHEN NOT c.never_sent
				AND c.first_sent_at < clock_timestamp() - make_interval(secs => payments._duplicate_window() - 60)
			THEN 'lookup' ELSE 'send' END,
		c.attempts, c.via_void,
		pay_minor_units(coalesce(c.amount, p.amount)), pay_currency(p.amount),
		pay_currency_exponent(pay_currency(p.amount)),
		-- the invoice of the gateway transaction: each refund its own (equal
		-- partial refunds are not duplicates); a capture (priorAuthCapture
		-- keeps the authorization's transId) and a void act on the payment's
		CASE WHEN c.kind = 'refund' AND NOT c.via_void
			THEN 'R' || payments._invoice_tag() || c.operation_id ELSE p.invoice_number END,
		p.description, p.customer,
		p.gateway_trans_id, p.card_last4, p.payment_method, p.customer_profile_id,
		-- (created_at: where a lookup starts; a charge that may have been
		-- made before it was queued here, by the server before, since then)
		p.payment_profile_id, v.sealed, c.correlation_id,
		least(c.created_at, c.first_sent_at) AS created_at, c.never_sent,
		c.api_login_id, c.transaction_key, c.endpoint_url, c.ca_file, c.timeout_ms,
		-- stored payment methods and customers' profiles (payment_methods.sql):
		-- their own operations, and charges of a stored method
		pm.payment_method_id, cu.customer_id, pm.source, pm.validation_mode, pm.is_default,
		-- the customer's profile: a save at another account than the one it
		-- is at makes a new one there (sent with this one, "not found");
		-- a method's deletion, the profile the method was saved under
		CASE WHEN c.kind = 'delete_method' THEN coalesce(pm.customer_profile_id, cu.customer_profile_id)
			WHEN c.kind = 'save_method'
				AND payments._customer_account(cu.merchant_id, cu.customer_id) <> c.gateway_account THEN NULL
			ELSE cu.customer_profile_id END,
		pm.payment_profile_id,
		CASE WHEN cu.customer_id IS NOT NULL THEN payments._gateway_customer_ref(cu.customer_id, cu.gateway_tag) END,
		cu.email, cu.name, cu.billing,
		pm.network_trans_id, pm.card_last4,
		-- a save's: the payment profiles the customer's other live methods
		-- hold, which its lookup never takes and a duplicate answer naming
		-- one fails (gateway_cim.c); computed for saves alone
		CASE WHEN c.kind = 'save_method' THEN (SELECT string_agg(x.payment_profile_id, ',')
			FROM payments.payment_methods x
			WHERE x.merchant_id = pm.merchant_id AND x.customer_id = pm.customer_id
				AND x.payment_method_id <> pm.payment_method_id AND x.payment_profile_id IS NOT NULL
				AND x.status IN ('active', 'deleting')) END,
		-- when the operation last changed: the end of its previous attempt
		c.old_updated_at,
		-- a charge of a subscription's invoice is recurring (recurringBilling,
		-- card on file), the first one of its subscription while no earlier
		-- invoice of it was paid by a charge (the 'first' invoice, or the
		-- first renewal after a trial): isFirstRecurringPayment
		p.invoice_id IS NOT NULL,
		p.invoice_id IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM payments.invoices i
			JOIN payments.invoices earlier ON earlier.merchant_id = i.merchant_id
				AND earlier.subscription_id = i.subscription_id AND earlier.invoice_id <> i.invoice_id
			WHERE i.merchant_id = p.merchant_id AND i.invoice_id = p.invoice_id
				AND earlier.status = 'paid' AND pay_minor_units(earlier.amount) > 0),
		(SELECT m.ready FROM more m)
	FROM claimed c
	-- operations on a stored method or a customer's profile have no payment
	LEFT JOIN payments.payments p ON p.merchant_id = c.merchant_id AND p.payment_id = c.payment_id
	LEFT JOIN payments.card_vault v ON v.merchant_id = c.merchant_id AND v.operation_id = c.operation_id
	LEFT JOIN payments.payment_methods pm ON pm.merchant_id = c.merchant_id
		AND pm.payment_method_id = coalesce(c.payment_method_id, p.payment_method_id)
	LEFT JOIN payments.customers cu ON cu.merchant_id = c.merchant_id
		AND cu.customer_id = coalesce(c.customer_id, pm.customer_id)
	WHERE c.status = 'sending'
	ORDER BY c.background, c.pos;
END
$$;
COMMENT ON FUNCTION payments._claim_operations(integer, integer, text[], text, bigint) IS
	'Worker, step 1: claims up to p_limit ready operations (FOR UPDATE SKIP LOCKED), merchants taking turns (an equal share of the room each, every merchant''s first before anyone''s second; ties after p_after_merchant first; more_ready when a merchant took its whole share), ordinary ones first and at most p_background_limit of a billing run''s charges, and marks them sending before anything is sent; operations of merchants whose gateway connection (_gateway_connection) is in p_held_connections (its circuit is open in the worker) are left; with p_only_connection, only that connection''s are claimed. Records the gateway account each is sent to (operations.gateway_account); one bound to another account than the one configured now is not returned but held as a dead letter.';

------------------------------------------------------------------------------
-- h-dead-letter-guards: a capture, void or refund that may have reached
-- the gateway cannot be discarded (sql/src/gateway_admin.sql), and a dead
-- capture or void of that kind holds the payment's other operations back
-- until the owner settles it (sql/src/payment_api.sql).
-- An operation of this payment that is still on its way to the gateway,
-- or a capture or void that may have reached it and ran out of attempts:
-- until the owner settles it (pay_resolve_dead_letter) nobody knows whether
-- the payment is captured or canceled.  (A dead refund is counted in what
-- is left to refund instead, pay_refund.)
CREATE OR REPLACE FUNCTION payments._busy_operation(p payments.payments) RETURNS payments.operations
	LANGUAGE sql STABLE AS $$
	SELECT * FROM payments.operations o
	WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
		AND (o.status IN ('queued', 'sending', 'unknown')
			OR (o.status = 'dead' AND o.kind IN ('capture', 'void') AND NOT o.never_sent))
	ORDER BY o.operation_id LIMIT 1
	$$;
COMMENT ON FUNCTION payments._busy_operation(payments.payments) IS 'Internal: an unfinished gateway operation of a payment, if any: queued, sending or unknown, or a capture or void that may have reached the gateway and is a dead letter.';

------------------------------------------------------------------------------
-- h-unserved-database: the worker serves one database (payments.database);
-- in another, CREATE EXTENSION and ALTER EXTENSION UPDATE warn that its
-- payments are never sent (sql/src/library.sql), pay_worker_health says no
-- worker serves it (its new column served_database) and pay_metrics too
-- (sql/src/monitoring.sql, src/health.c).
------------------------------------------------------------------------------
CREATE FUNCTION payments._warn_unserved_database() RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_warn_unserved_database';
SELECT payments._warn_unserved_database();
-- _vault_rotate_key from another database leaves the cluster's key alone
-- (src/card_vault.c)
COMMENT ON FUNCTION payments._vault_rotate_key(boolean) IS
	'Internal: replaces the card vault sealing key (shared memory only) when it has sealed for payments.vault_key_rotation: re-seals every waiting card (queued, sending, unknown, dead letter) still under an older key with the current one, then makes a new key, current from commit; the previous key is forgotten. Waits (returns false) while an open or prepared transaction sealed card data under the previous key, for payments.vault_key_rotation_max_wait at most. The worker calls it. force: rotate now, even past such a transaction (a card it commits sealed under the previous key is lost). Only in the database the worker serves (payments.database): elsewhere it does nothing and returns false. Owner only.';
-- pay_worker_restart from another database leaves the worker alone
-- (src/health.c)
COMMENT ON FUNCTION payments.pay_worker_restart() IS
	'Asks the background worker to exit; the server starts a new one within a second and it resolves whatever was in flight. Only in the database the worker serves (payments.database): elsewhere nothing is done. Returns whether it asked: false when no worker runs or it serves another database. Owner only.';
REVOKE ALL ON FUNCTION payments._warn_unserved_database() FROM PUBLIC;
COMMENT ON FUNCTION payments._warn_unserved_database() IS
	'Internal: raises a WARNING (01Y01) when the background worker does not serve this database (payments.database names another), naming the database it serves.';

------------------------------------------------------------------------------
-- h-erasure-free-text: pay_erase_customer erases what the merchant wrote
-- about the customer's payments (description, order_ref, metadata, a
-- refund's reason, the metadata copied into events) and reaches payments
-- made without customer_id under its email (sql/src/customer_privacy.sql);
-- the audit of payments and operations never writes those fields
-- (sql/src/audit.sql).
CREATE FUNCTION payments._customer_payments(c payments.customers) RETURNS SETOF payments.payments
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT p.* FROM payments.payments p
	WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id
	UNION ALL
	SELECT p.* FROM payments.payments p
	WHERE p.merchant_id = c.merchant_id AND p.customer_id IS NULL AND c.email IS NOT NULL
		AND lower(p.customer ->> 'email') = lower(c.email)
	$$;
COMMENT ON FUNCTION payments._customer_payments(payments.customers) IS
	'Internal: the payments of a customer: those made for it (customer_id), and those made without customer_id whose customer object holds its email (compared case-insensitively).';

-- Events that concern a customer: its own, its methods', its payments'.
CREATE OR REPLACE FUNCTION payments._customer_events(c payments.customers) RETURNS SETOF payments.events
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT e.* FROM payments.events e
	WHERE e.merchant_id = c.merchant_id
		AND ((e.data ->> 'customer_id') = c.customer_id::text
			OR e.payment_id IN (SELECT p.payment_id FROM payments._customer_payments(c) p)
			OR e.operation_id IN (SELECT o.operation_id FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id))
	$$;
COMMENT ON FUNCTION payments._customer_events(payments.customers) IS
	'Internal: the events that concern a customer (its own, its payment methods'', its payments'' and their operations'').';

DROP TRIGGER payments_audit ON payments.payments;
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.payments
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('customer', 'card_fingerprint',
		'description', 'order_ref', 'metadata');
COMMENT ON TRIGGER payments_audit ON payments.payments IS 'Audit: payments.audit_log; the billing details (customer), the card fingerprint, description, order_ref and metadata are never written.';
DROP TRIGGER payments_audit ON payments.operations;
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('reason');
COMMENT ON TRIGGER payments_audit ON payments.operations IS 'Audit: payments.audit_log; a refund''s reason is never written.';

------------------------------------------------------------------------------
-- h-sub-method-gone: a subscription whose own payment method is gone at the
-- gateway or deleted goes to the customer's default, and its invoice in
-- dunning is charged to it at once, not on dunning's last day
-- (sql/src/billing.sql: _subscription_method_gone, _invoice_payment_failed
-- above).
------------------------------------------------------------------------------

-- Trigger on payments.payment_methods: a subscription's own payment method
-- that is no longer there - failed because its profile is gone at the
-- gateway (_payment_methods_gone), or deleted (pay_delete_payment_method,
-- once the gateway has deleted it) - is no longer the subscription's: the
-- subscription goes to the customer's default at each charge (its
-- payment_method_id NULL), which is what its charges used anyway once the
-- method was not active (_invoice_payment_method), and a
-- subscription.updated event (reason payment_method_gone or
-- payment_method_deleted) says so.  Ended subscriptions keep the method
-- they were charged to.  A subscription in dunning whose open invoice has
-- no charge in flight is then charged at once to that default, as after a
-- change of its method (_retry_open_invoice_now; nothing without a usable
-- default).  The charge that found the method gone is still in flight
-- here (the trigger runs from the payment's BEFORE trigger): its own
-- invoice is charged again when its failure is recorded
-- (_invoice_payment_failed).
CREATE FUNCTION payments._subscription_method_gone() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	FOR s IN
		UPDATE payments.subscriptions x SET payment_method_id = NULL
		WHERE x.merchant_id = NEW.merchant_id AND x.customer_id = NEW.customer_id
			AND x.payment_method_id = NEW.payment_method_id
			AND x.status NOT IN ('canceled', 'incomplete_expired')
		RETURNING x.*
	LOOP
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
			'customer_id', s.customer_id, 'status', s.status, 'payment_method_id', NULL,
			'previous_payment_method_id', NEW.payment_method_id,
			'reason', CASE WHEN NEW.status = 'failed' THEN 'payment_method_gone' ELSE 'payment_method_deleted' END,
			'fields', jsonb_build_array('payment_method_id')), s.correlation_id);
		PERFORM payments._retry_open_invoice_now(s.merchant_id, s.subscription_id);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._subscription_method_gone() IS
	'Trigger: a payment method failed as gone at the gateway or deleted is no longer the payment method of the subscriptions that named it (not ended ones): they go to the customer''s default (payment_method_id NULL; a subscription.updated event with reason payment_method_gone or payment_method_deleted), and one in dunning is charged to it at once (payments._retry_open_invoice_now).';

CREATE TRIGGER payment_methods_subscription_gone AFTER UPDATE OF status ON payments.payment_methods
	FOR EACH ROW WHEN (OLD.status IN ('active', 'deleting') AND NEW.status IN ('failed', 'deleted'))
	EXECUTE FUNCTION payments._subscription_method_gone();
COMMENT ON TRIGGER payment_methods_subscription_gone ON payments.payment_methods IS
	'Billing: subscriptions whose payment method is gone at the gateway or deleted go to the customer''s default, and one in dunning is charged to it at once (payments._subscription_method_gone).';

------------------------------------------------------------------------------
-- h-account-customers: a customer's deletion is refused while its profile
-- or an active method is at another gateway account than the configured
-- one, a save from a payment made at another account is refused, and a
-- held method operation says why it was held (sql/src/payment_methods.sql;
-- test/integration/gateway_account_change.sh, section 5).
-- Made once since: _method_operation_dead in h-lead-methods (its final form).
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION payments.pay_save_payment_method(
	customer_id bigint,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	payment_id bigint DEFAULT NULL,
	validation_mode text DEFAULT 'liveMode',
	make_default boolean DEFAULT true,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_save_payment_method.customer_id, true);
	m bigint := c.merchant_id;
	corr text := payments._correlation_id(pay_save_payment_method.correlation_id);
	sources int := (card IS NOT NULL)::int + (opaque_data IS NOT NULL)::int
		+ (pay_save_payment_method.payment_id IS NOT NULL)::int;
	idem payments.idempotency_keys;
	p payments.payments;
	pm payments.payment_methods;
	o payments.operations;
	src text;
	cname text;
	replaced bigint;
BEGIN
	IF sources <> 1 THEN
		RAISE EXCEPTION 'exactly one of card, opaque_data and payment_id is required'
			USING ERRCODE = '22Y22', DETAIL = format('%s were given.', sources);
	END IF;
	IF validation_mode IS NULL OR validation_mode NOT IN ('none', 'testMode', 'liveMode') THEN
		RAISE EXCEPTION 'validation_mode must be none, testMode or liveMode' USING ERRCODE = '22023',
			HINT = 'none stores the card unchecked, testMode checks its form, liveMode authorizes $0.00 at the issuer.';
	END IF;
	IF opaque_data IS NOT NULL THEN
		PERFORM payments._check_opaque_data(opaque_data);
	END IF;
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	idem := payments._idempotency_claim(m, pay_save_payment_method.idempotency_key, 'save_payment_method',
		md5(jsonb_build_array(c.customer_id, payments.pay_card_brand(card), payments.pay_card_last4(card),
			payments.pay_card_exp_month(card), payments.pay_card_exp_year(card), opaque_data,
			pay_save_payment_method.payment_id, validation_mode, make_default)::text), c.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		SELECT x.* INTO pm FROM payments.payment_methods x
		JOIN payments.operations y ON y.merchant_id = x.merchant_id AND y.payment_method_id = x.payment_method_id
		WHERE y.merchant_id = m AND y.operation_id = idem.operation_id;
		RETURN pm;				-- even if the customer was deleted since
	END IF;
	PERFORM payments._find_customer(c.customer_id, false, false);	-- 22Y20 once deleted
	IF pay_save_payment_method.payment_id IS NOT NULL THEN
		src := 'payment';
		p := payments._find_payment(pay_save_payment_method.payment_id);
		IF p.gateway_trans_id IS NULL OR p.status NOT IN ('succeeded', 'requires_capture',
				'partially_refunded', 'refunded') OR p.payment_method NOT IN ('card', 'opaque_data') THEN
			RAISE EXCEPTION 'payment % cannot be saved as a payment method', p.payment_id
				USING ERRCODE = '22Y20',
					DETAIL = format('The payment is %s%s; only an approved card or Accept.js payment can be saved.',
						p.status, CASE WHEN p.payment_method = 'profile' THEN ' and was made with a stored method' ELSE '' END);
		END IF;
		-- its transaction is at the account it was made at: the account
		-- configured now would not find it
		PERFORM payments._refuse_other_account(m, payments._payment_account(m, p.payment_id),
			format('payment %s was made', p.payment_id),
			'Save the card itself (card or opaque_data) at the account configured now, or configure the account the payment was made at again (pay_configure_gateway); nothing was saved.');
	ELSIF card IS NOT NULL THEN
		src := 'card';
	ELSE
		src := 'opaque_data';
	END IF;
	BEGIN
		IF make_default THEN
			-- the default it replaces stays the one charged until it is active
			replaced := (payments._usable_default_method(m, c.customer_id)).payment_method_id;
			UPDATE payments.payment_methods x SET is_default = false
			WHERE x.merchant_id = m AND x.customer_id = c.customer_id AND x.is_default;
		END IF;
		INSERT INTO payments.payment_methods AS x (merchant_id, customer_id, source, validation_mode, is_default,
			card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint, source_payment_id,
			idempotency_key, correlation_id, replaced_default_id)
		VALUES (m, c.customer_id, src, validation_mode, make_default,
			coalesce(payments.pay_card_brand(card), p.card_brand), coalesce(payments.pay_card_last4(card), p.card_last4),
			coalesce(payments.pay_card_exp_month(card), p.card_exp_month),
			coalesce(payments.pay_card_exp_year(card), p.card_exp_year),
			p.card_fingerprint, p.payment_id,
			pay_save_payment_method.idempotency_key, corr, replaced)
		RETURNING * INTO pm;
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
		PERFORM payments._default_conflict(cname, c.customer_id);
		RAISE;
	END;
	o := payments._new_method_operation(m, 'save_method', pm.payment_method_id, c.customer_id, p.payment_id,
		pay_save_payment_method.idempotency_key, corr);
	IF card IS NOT NULL THEN
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, o.operation_id, payments._card_sealed(card));
	ELSIF opaque_data IS NOT NULL THEN
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, o.operation_id, payments._opaque_data_sealed(opaque_data ->> 'dataDescriptor',
			opaque_data ->> 'dataValue'));
	END IF;
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments.pay_save_payment_method(bigint, payments.pay_card, jsonb, bigint, text, boolean, text, text) IS
	'Saves a payment method for a customer at the gateway: a card, Accept.js opaque data, or the card of an approved payment (payment_id; refused with 22Y20 when it was made at another gateway account than the one configured now). validation_mode: none, testMode or liveMode (a $0.00 authorization; default). Returns the method (status pending); the worker creates the gateway profile after COMMIT (active, or failed with the reason); pay_wait_payment_method waits for it. make_default makes it the customer''s default at once; until it is active, charges of the customer''s default (subscriptions) use the active default it replaced, which is the default again if the save fails.';

CREATE OR REPLACE FUNCTION payments.pay_delete_customer(customer_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._lock_customer_to_end(pay_delete_customer.customer_id, 'delete');
	idem payments.idempotency_keys := payments._idempotency_claim(c.merchant_id,
		pay_delete_customer.idempotency_key, 'delete_customer', md5(jsonb_build_array(c.customer_id)::text),
		c.customer_id);
	corr text := payments._correlation_id(pay_delete_customer.correlation_id);
	result payments.customers;
BEGIN
	IF idem.request_kind IS NULL AND c.status <> 'deleted' THEN
		-- its profiles are at the accounts its cards were saved at: the
		-- deletion goes to the one configured now, and a profile or card
		-- saved at another would stay there while ours said deleted
		PERFORM payments._refuse_other_account(c.merchant_id, a.account,
			format('customer %s has a gateway profile or payment methods saved', c.customer_id),
			'Configure that account again (pay_configure_gateway) and delete the payment methods saved there (pay_delete_payment_method), then delete the customer while the account its profile is at is configured; the customer is kept as it is.')
		FROM (SELECT payments._customer_account(c.merchant_id, c.customer_id) AS account
			WHERE c.customer_profile_id IS NOT NULL
			UNION
			SELECT payments._method_account(x.merchant_id, x.payment_method_id)
			FROM payments.payment_methods x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
				AND x.status IN ('active', 'deleting') AND x.payment_profile_id IS NOT NULL) a;
		PERFORM payments._end_customer_subscriptions(c);
		PERFORM payments._delete_customer_profile(c, pay_delete_customer.idempotency_key, corr);
		UPDATE payments.customers x SET status = 'deleted', deleted_at = clock_timestamp()
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	END IF;
	SELECT * INTO result FROM payments.customers x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_delete_customer(bigint, text, text) IS
	'Deletes a customer (status deleted; its payments stay) and its payment methods, at the gateway too (deleteCustomerProfile, sent by the worker after COMMIT). A customer with a method still being saved is refused (22Y20), and so is one whose profile or an active method was saved at another gateway account than the one configured now (they are there). Writes a customer.deleted event.';

------------------------------------------------------------------------------
-- h-erasure-leftovers: pay_erase_customer says what it could not erase at
-- a gateway account other than the one configured now (customer.erased
-- gateway_profiles_kept, a WARNING), and keeps the idempotency keys of the
-- customer's requests and objects as digests (_erased_key), which a repeat
-- under the original key still finds (_idempotency_claim; both edited in
-- place above, with pay_create_customer and pay_create_subscription).
------------------------------------------------------------------------------
CREATE FUNCTION payments._erased_key(p_merchant bigint, p_key text) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT 'erased:' || encode(sha256(convert_to(p_merchant::text || ':' || p_key, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION payments._erased_key(bigint, text) IS
	'Internal: an erased customer''s idempotency key as pay_erase_customer keeps it: ''erased:'' and the hex SHA-256 of the merchant id, a colon and the key.';

CREATE FUNCTION payments._customer_profiles_elsewhere(c payments.customers) RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	WITH configured AS (
		SELECT payments._gateway_account(g.api_login_id) AS account
		FROM payments.gateway_config g WHERE g.merchant_id = c.merchant_id
	), profiles AS (
		SELECT payments._customer_account(c.merchant_id, c.customer_id) AS account,
			c.customer_profile_id AS profile, NULL::text AS payment_profile_id, NULL::bigint AS payment_method_id
		WHERE c.customer_profile_id IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id
					AND o.kind = 'delete_customer' AND o.status = 'succeeded')
		UNION ALL
		SELECT payments._method_account(x.merchant_id, x.payment_method_id),
			x.customer_profile_id, x.payment_profile_id, x.payment_method_id
		FROM payments.payment_methods x
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND x.status IN ('active', 'deleting') AND x.payment_profile_id IS NOT NULL
	)
	SELECT coalesce(jsonb_agg(jsonb_build_object('gateway_account', e.account,
			'customer_profile_id', e.profile, 'payment_profile_ids', e.payment_profile_ids,
			'payment_method_ids', e.payment_method_ids,
			'deletion', CASE WHEN e.profile = c.customer_profile_id
				AND e.account = payments._customer_account(c.merchant_id, c.customer_id) THEN 'held' ELSE 'none' END)
		ORDER BY e.account, e.profile), '[]')
	FROM (SELECT p.account, p.profile,
			coalesce(jsonb_agg(p.payment_profile_id ORDER BY p.payment_method_id)
				FILTER (WHERE p.payment_profile_id IS NOT NULL), '[]') AS payment_profile_ids,
			coalesce(jsonb_agg(p.payment_method_id ORDER BY p.payment_method_id)
				FILTER (WHERE p.payment_method_id IS NOT NULL), '[]') AS payment_method_ids
		FROM profiles p, configured g
		WHERE p.account IS NOT NULL AND p.account <> g.account AND p.profile IS NOT NULL
		GROUP BY p.account, p.profile) e
	$$;
COMMENT ON FUNCTION payments._customer_profiles_elsewhere(payments.customers) IS
	'Internal: a customer''s gateway profiles at another gateway account than the one configured now, as pay_erase_customer lists them (customer.erased gateway_profiles_kept): gateway_account, customer_profile_id, payment_profile_ids, payment_method_ids, deletion (held or none).';

------------------------------------------------------------------------------
-- h-unserved-gateway-status: pay_gateway_status(wait_ms => ...) in a
-- database the worker does not serve returns at once with a NOTICE (01Y01),
-- as pay_wait does, rather than wait its whole wait_ms for a credentials
-- check that nothing there sends (sql/src/library.sql, gateway_admin.sql;
-- src/payments.c): _wait_for_verification, edited in place above, asks
-- _note_unserved_database.
------------------------------------------------------------------------------
CREATE FUNCTION payments._note_unserved_database() RETURNS boolean
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_note_unserved_database';
REVOKE ALL ON FUNCTION payments._note_unserved_database() FROM PUBLIC;
COMMENT ON FUNCTION payments._note_unserved_database() IS
	'Internal: true, after a NOTICE (01Y01) naming the database the background worker serves, when it does not serve this one (payments.database names another); false, silently, where it does.';

------------------------------------------------------------------------------
-- h-due-renewals: a merchant's change of a subscription whose period has ended
-- before the billing run renewed it takes the renewal first, as the run
-- would have (sql/src/billing.sql, subscriptions.sql): the change meets the
-- period that contains now, whether or not the run has come yet.
-- Made once since: _run_renewals in h-billing (its final form).
------------------------------------------------------------------------------

CREATE FUNCTION payments._renew_subscription(s payments.subscriptions, now_ timestamptz,
	p_background boolean)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	idx integer;
	start_ timestamptz;
	end_ timestamptz;
BEGIN
	IF s.status = 'incomplete' THEN
		IF EXISTS (SELECT 1 FROM payments.invoices i JOIN payments.payments p
				ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id
			WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id
				AND i.status = 'open' AND p.status IN ('pending', 'unknown', 'in_review')) THEN
			UPDATE payments.subscriptions SET next_renewal_at = now_ + interval '1 minute'
			WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
			RETURN;
		END IF;
		UPDATE payments.subscriptions SET status = 'incomplete_expired', next_renewal_at = NULL,
			ended_at = now_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		UPDATE payments.invoices SET status = 'void', next_attempt_at = NULL, closed_at = now_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id AND status = 'open';
	ELSIF s.cancel_at_period_end THEN
		UPDATE payments.subscriptions SET status = 'canceled', next_renewal_at = NULL,
			canceled_at = coalesce(canceled_at, now_), ended_at = s.next_renewal_at
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		-- no next invoice: the pending prorations go on a final one
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end',
			true, p_background);
	ELSE
		idx := s.current_period_index + 1;
		start_ := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, idx);
		end_ := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, idx + 1);
		UPDATE payments.subscriptions SET current_period_index = idx, period_amount = NULL,
			current_period_start = start_, current_period_end = end_, next_renewal_at = end_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		PERFORM payments._billing_event(s.merchant_id, 'subscription.renewed', NULL,
			jsonb_build_object('subscription_id', s.subscription_id, 'status', s.status,
				'trial_ended', s.status = 'trialing', 'period_index', idx,
				'current_period_start', payments._json_time(start_), 'current_period_end', payments._json_time(end_)),
			s.correlation_id);
		PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', idx, start_, end_,
			p_background => p_background);
	END IF;
END
$$;
COMMENT ON FUNCTION payments._renew_subscription(payments.subscriptions, timestamptz, boolean) IS
	'Internal: one renewal step of a due subscription (the caller holds its lock): an incomplete one past its deadline expires (its first invoice void; a minute later while a charge is in flight), a cancel_at_period_end one is canceled (its pending invoice items charged on a final invoice), a trialing or active one moves to its next period, whose renewal invoice is issued and charged (p_background: a billing run''s charge).';

CREATE FUNCTION payments._apply_due_renewals(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	last_due timestamptz;
BEGIN
	WHILE s.next_renewal_at <= now_ AND s.status IN ('trialing', 'active', 'incomplete')
			AND s.next_renewal_at IS DISTINCT FROM last_due LOOP
		last_due := s.next_renewal_at;
		PERFORM payments._renew_subscription(s, now_, false);
		SELECT * INTO STRICT s FROM payments.subscriptions x
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	END LOOP;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._apply_due_renewals(payments.subscriptions, timestamptz) IS
	'Internal: takes the renewal steps due for a subscription by now_ (payments._renew_subscription), as the billing run would have, before a merchant''s change of it; the caller holds its row lock. Returns the row as it is then.';

CREATE FUNCTION payments._subscription_as_renewed(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	IF s.next_renewal_at IS NULL OR s.next_renewal_at > now_ OR s.status NOT IN ('trialing', 'active') THEN
		RETURN s;
	END IF;
	IF s.cancel_at_period_end THEN
		s.status := 'canceled';
		RETURN s;
	END IF;
	n := greatest(s.current_period_index + 1,
		payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_));
	s.current_period_index := n;
	s.current_period_start := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
	s.current_period_end := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
	s.next_renewal_at := s.current_period_end;
	s.period_amount := NULL;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._subscription_as_renewed(payments.subscriptions, timestamptz) IS
	'Internal: a subscription as the renewal steps due by now_ would leave it (payments._apply_due_renewals), changing nothing: in the period containing now, or canceled when set to cancel at its period''s end. For pay_preview_subscription_change.';

CREATE OR REPLACE FUNCTION payments.pay_update_subscription(
	subscription_id bigint,
	payment_method_id bigint DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	cancel_at_period_end boolean DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_update_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_update_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	result payments.subscriptions;
BEGIN
	IF pay_update_subscription.payment_method_id IS NULL AND pay_update_subscription.metadata IS NULL
			AND pay_update_subscription.cancel_at_period_end IS NULL THEN
		RAISE EXCEPTION 'nothing to update'
			USING ERRCODE = '22023', HINT = 'Pass payment_method_id, metadata or cancel_at_period_end; pay_change_subscription changes the plan, price or quantity.';
	END IF;
	PERFORM payments._check_metadata(pay_update_subscription.metadata);
	-- a repeated call returns, whatever changed since (the subscription
	-- ended, the method deleted): the key first, then the current state
	idem := payments._idempotency_claim(s.merchant_id, pay_update_subscription.idempotency_key, 'update_subscription',
		md5(jsonb_build_array(s.subscription_id, pay_update_subscription.payment_method_id,
			pay_update_subscription.metadata, pay_update_subscription.cancel_at_period_end)::text),
		s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF pay_update_subscription.cancel_at_period_end IS NOT NULL THEN
		-- the period that contains now: one set to cancel at the end of a
		-- period that has ended is canceled (nothing left to undo), else a
		-- cancel is set for the end of the period now running
		s := payments._apply_due_renewals(s, now_);
	END IF;
	IF pay_update_subscription.payment_method_id IS NOT NULL OR pay_update_subscription.cancel_at_period_end IS NOT NULL THEN
		PERFORM payments._require_not_ended(s, 'update');
	END IF;
	IF pay_update_subscription.payment_method_id IS NOT NULL THEN
		PERFORM payments._stored_method_for_payment(s.customer_id, pay_update_subscription.payment_method_id, 0);
	END IF;
	IF pay_update_subscription.cancel_at_period_end AND NOT s.cancel_at_period_end THEN
		PERFORM payments._require_cancellable_at_period_end(s);
	END IF;
	UPDATE payments.subscriptions x SET
		payment_method_id = coalesce(pay_update_subscription.payment_method_id, x.payment_method_id),
		metadata = coalesce(pay_update_subscription.metadata, x.metadata),
		cancel_at_period_end = coalesce(pay_update_subscription.cancel_at_period_end, x.cancel_at_period_end),
		canceled_at = CASE WHEN pay_update_subscription.cancel_at_period_end IS NULL
				OR pay_update_subscription.cancel_at_period_end = x.cancel_at_period_end THEN x.canceled_at
			WHEN pay_update_subscription.cancel_at_period_end THEN now_ END
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
		'customer_id', s.customer_id, 'status', s.status, 'payment_method_id', result.payment_method_id,
		'cancel_at_period_end', result.cancel_at_period_end,
		'fields', (SELECT coalesce(jsonb_agg(k), '[]') FROM unnest(ARRAY['payment_method_id', 'metadata', 'cancel_at_period_end'],
			ARRAY[pay_update_subscription.payment_method_id IS NOT NULL, pay_update_subscription.metadata IS NOT NULL,
				pay_update_subscription.cancel_at_period_end IS NOT NULL]) AS f(k, given) WHERE given)), corr);
	-- a new card during dunning is tried at once (the billing side owns the
	-- retry: payments._retry_open_invoice_now, billing.sql, which locks each
	-- open invoice before it looks whether its charge is in flight: no
	-- unlocked read here decides that, since at REPEATABLE READ a charge
	-- failed since the snapshot still looked unanswered, and the new card was
	-- not tried)
	IF pay_update_subscription.payment_method_id IS NOT NULL
			AND pay_update_subscription.payment_method_id IS DISTINCT FROM s.payment_method_id
			AND s.status IN ('past_due', 'unpaid', 'incomplete') THEN
		PERFORM payments._retry_open_invoice_now(s.merchant_id, s.subscription_id);
		SELECT * INTO result FROM payments.subscriptions x
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_subscription(bigint, bigint, jsonb, boolean, text, text) IS
	'Changes a subscription''s payment method (the customer''s, active; during dunning - past_due, unpaid, or incomplete with a failed first charge - the open invoice is charged to it at once), metadata (replaced whole), or cancel_at_period_end (true: cancel when the period ends, as pay_cancel_subscription(at_period_end => true); false: undo that). NULL: unchanged. An ended subscription takes only metadata (22Y20). Writes a subscription.updated event naming the fields. PT404 for an unknown or foreign id.';

CREATE OR REPLACE FUNCTION payments.pay_cancel_subscription(
	subscription_id bigint,
	at_period_end boolean DEFAULT false,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_cancel_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_cancel_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	result payments.subscriptions;
BEGIN
	IF at_period_end IS NULL THEN
		RAISE EXCEPTION 'at_period_end must be true or false' USING ERRCODE = '22023';
	END IF;
	idem := payments._idempotency_claim(s.merchant_id, pay_cancel_subscription.idempotency_key, 'cancel_subscription',
		md5(jsonb_build_array(s.subscription_id, at_period_end)::text), s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	PERFORM payments._require_not_ended(s, 'cancel');
	IF at_period_end THEN
		-- the end of the period that contains now, whether or not the
		-- billing run has renewed the subscription yet
		s := payments._apply_due_renewals(s, now_);
		PERFORM payments._require_not_ended(s, 'cancel');
		PERFORM payments._require_cancellable_at_period_end(s);
		UPDATE payments.subscriptions x SET cancel_at_period_end = true, canceled_at = now_
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
			'customer_id', s.customer_id, 'status', s.status, 'cancel_at_period_end', true,
			'cancel_at', payments._json_time(s.current_period_end), 'fields', jsonb_build_array('cancel_at_period_end')), corr);
		RETURN result;
	END IF;
	RETURN payments._end_subscription_now(s, now_);
END
$$;
COMMENT ON FUNCTION payments.pay_cancel_subscription(bigint, boolean, text, text) IS
	'Cancels a subscription of the current merchant. Now (default): status canceled (an incomplete one: incomplete_expired), canceled_at and ended_at set, next_renewal_at NULL, its open invoices voided; nothing is refunded; refused (22Y20) while a charge of an open invoice is in flight. At period end (at_period_end => true; trialing, incomplete or active only): cancel_at_period_end is set and the billing run ends it when the period ends, without charging the next one. Either way, pending prorations (pay_change_subscription with next_invoice) are closed on a final proration invoice when it ends: a net amount owed is charged, a net credit reported (subscription.pending_items_closed); pay_update_subscription(cancel_at_period_end => false) undoes it. An ended subscription raises 22Y20; PT404 for an unknown or foreign id.';

CREATE OR REPLACE FUNCTION payments.pay_preview_subscription_change(
	subscription_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	quantity integer DEFAULT NULL,
	proration text DEFAULT 'next_invoice')
	RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_preview_subscription_change.subscription_id);
	now_ timestamptz := payments._billing_now(s.merchant_id);
BEGIN
	-- as pay_change_subscription meets it: renewed if its period has ended
	RETURN payments._subscription_change(payments._subscription_as_renewed(s, now_),
		pay_preview_subscription_change.plan_id,
		pay_preview_subscription_change.price, pay_preview_subscription_change.quantity,
		pay_preview_subscription_change.proration, now_);
END
$$;
COMMENT ON FUNCTION payments.pay_preview_subscription_change(bigint, bigint, payments.pay_amount, integer, text) IS
	'What pay_change_subscription with the same arguments would do now, without changing anything: {"proration", "period_start", "period_end", "remaining_seconds", "period_seconds", "old": {...}, "new": {plan_id, unit_amount, quantity, amount}, "lines": [proration lines with amounts], "total"}. Same errors as pay_change_subscription.';

CREATE OR REPLACE FUNCTION payments.pay_change_subscription(
	subscription_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	quantity integer DEFAULT NULL,
	proration text DEFAULT 'next_invoice',
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_change_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_change_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	ch jsonb;
	l jsonb;
	result payments.subscriptions;
BEGIN
	idem := payments._idempotency_claim(s.merchant_id, pay_change_subscription.idempotency_key, 'change_subscription',
		md5(jsonb_build_array(s.subscription_id, pay_change_subscription.plan_id, pay_change_subscription.price::text,
			pay_change_subscription.quantity, pay_change_subscription.proration)::text),
		s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	-- the period that contains now, whether or not the billing run has
	-- renewed the subscription yet
	s := payments._apply_due_renewals(s, now_);
	ch := payments._subscription_change(s, pay_change_subscription.plan_id, pay_change_subscription.price,
		pay_change_subscription.quantity, pay_change_subscription.proration, now_);
	UPDATE payments.subscriptions x SET plan_id = (ch -> 'new' ->> 'plan_id')::bigint,
		unit_amount = (ch -> 'new' ->> 'unit_amount')::payments.pay_amount,
		quantity = (ch -> 'new' ->> 'quantity')::integer,
		-- without proration the current period stays billed at what it was
		-- (in a trial nothing was billed yet)
		period_amount = CASE WHEN ch ->> 'proration' = 'none'
				AND NOT (s.status = 'trialing' AND s.current_period_index < 0)
			THEN (ch -> 'old' ->> 'amount')::payments.pay_amount END
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	IF jsonb_array_length(ch -> 'lines') > 0 THEN
		IF ch ->> 'proration' = 'next_invoice' THEN
			FOR l IN SELECT * FROM jsonb_array_elements(ch -> 'lines') LOOP
				INSERT INTO payments.invoice_items (merchant_id, subscription_id, kind, amount, description)
				VALUES (s.merchant_id, s.subscription_id, 'proration', (l ->> 'amount')::payments.pay_amount,
					l ->> 'description');
			END LOOP;
		ELSE
			PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'proration',
				s.current_period_index, now_, s.current_period_end, ch -> 'lines');
		END IF;
	END IF;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
		'customer_id', s.customer_id, 'status', s.status,
		'fields', jsonb_build_array('plan_id', 'unit_amount', 'quantity'), 'change', ch), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_change_subscription(bigint, bigint, payments.pay_amount, integer, text, text, text) IS
	'Changes the plan (same interval and currency), the explicit price or the quantity of an active, trialing or paused subscription. proration: none (the new amount from the next period), next_invoice (default: a credit for the unused part of the current period at the old amount and a charge for the part left at the new one, as pending invoice items of the next invoice), invoice_now (the same lines on a proration invoice charged at once; a net credit is carried to the next invoice). Nothing is prorated in a trial; a paused subscription takes a change of its amount only with proration none (22Y20 otherwise: its period was paid at the old amount, and a resume within it charges nothing more); once the trial has ended (its period 0 invoiced, the subscription trialing until that charge is answered) a change is prorated as for an active one. An interval change is refused (22023: cancel and create a new subscription); a currency change too (22Y03). Writes a subscription.updated event with the change. pay_preview_subscription_change shows the same without changing anything.';

------------------------------------------------------------------------------
-- h-name-guard: no role that is not trusted may make a function, type or
-- operator named like the extension's (sql/src/name_guard.sql; the event
-- trigger that asks it is h-ddl-guard's; the check of the ones made before
-- is the last statement of this script; payments._trusted_role, the rule
-- of trust it shares with h-card-guard, is made here, before the function
-- that calls it).
--
-- Name guard: no role that is not trusted may make a function, type or
-- operator that a session would find instead of the extension's.  A
-- session finds pay_card(), pay_purchase() or the operators of pay_amount
-- along its search_path: with a schema any role can CREATE in ahead of
-- payments (public, on a database made before PostgreSQL 15 or where the
-- DBA granted it), or arguments of other types than ours (varchar, as
-- JDBC sends strings, matches a public.pay_card(varchar, ...) better than
-- payments.pay_card(text, ...) whatever the order), the session ran that
-- role's function instead, with its own privileges and the card number and
-- CVV in clear.  Trusted: superusers, members of the database owner and of
-- the extension's owner.  Temporary schemas are not searched for functions
-- or operators, and only their own session's for types.
------------------------------------------------------------------------------

-- Trusted: a superuser, a member of the database owner or a member of the
-- extension's owner (the one home of the rule for the name guard and the
-- card guard below).
CREATE FUNCTION payments._trusted_role(r oid) RETURNS boolean
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.oid = r AND a.rolsuper)
		OR EXISTS (SELECT FROM pg_catalog.pg_database d
			WHERE d.datname = current_database() AND pg_has_role(r, d.datdba, 'MEMBER'))
		OR EXISTS (SELECT FROM pg_catalog.pg_extension e
			WHERE e.extname = 'payments' AND pg_has_role(r, e.extowner, 'MEMBER'))
	$$;
COMMENT ON FUNCTION payments._trusted_role(oid) IS
	'Internal: whether a role is trusted to own objects named like the extension''s or that take a pay_card: a superuser, a member of the database owner or a member of the extension''s owner.';

CREATE FUNCTION payments._shadowed_object(classid oid, objid oid) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH nsp AS (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'payments'),
	-- the extension's types, arrays of them and domains over them
	ours AS (
		SELECT y.oid FROM pg_catalog.pg_type y, nsp
		WHERE y.typnamespace = nsp.oid
			OR EXISTS (SELECT FROM pg_catalog.pg_type e
				WHERE e.oid IN (y.typelem, y.typbasetype) AND e.typnamespace = nsp.oid)
	),
	obj(namespace, owner, shadowed) AS (
		SELECT p.pronamespace, p.proowner,
			(SELECT 'function payments.' || quote_ident(x.proname)
			 FROM pg_catalog.pg_proc x, nsp
			 WHERE x.pronamespace = nsp.oid AND x.proname = p.proname
				-- sum, min, max: only with an argument of one of our types
				AND (NOT EXISTS (SELECT FROM pg_catalog.pg_proc c
						WHERE c.pronamespace = 'pg_catalog'::regnamespace AND c.proname = p.proname)
					OR EXISTS (SELECT FROM unnest(p.proargtypes::oid[] || coalesce(p.proallargtypes, '{}')) a(t)
						WHERE a.t IN (SELECT oid FROM ours)))
			 LIMIT 1)
		FROM pg_catalog.pg_proc p
		WHERE classid = 'pg_catalog.pg_proc'::regclass AND p.oid = objid
		UNION ALL
		SELECT t.typnamespace, t.typowner,
			(SELECT 'type payments.' || quote_ident(x.typname)
			 FROM pg_catalog.pg_type x, nsp
			 WHERE x.typnamespace = nsp.oid AND x.typname = t.typname AND x.typcategory <> 'A'
				AND (x.typrelid = 0 OR EXISTS (SELECT FROM pg_catalog.pg_class r
					WHERE r.oid = x.typrelid AND r.relkind = 'c')))
		FROM pg_catalog.pg_type t
		-- a type, and the types named with it: a range's multirange
		-- (multirange_type_name), a table's, view's or sequence's row type
		WHERE (classid = 'pg_catalog.pg_type'::regclass AND t.oid = objid)
			OR (classid = 'pg_catalog.pg_type'::regclass AND t.oid IN (SELECT g.rngmultitypid
				FROM pg_catalog.pg_range g WHERE g.rngtypid = objid))
			OR (classid = 'pg_catalog.pg_class'::regclass AND t.oid IN (SELECT c.reltype
				FROM pg_catalog.pg_class c WHERE c.oid = objid))
		UNION ALL
		SELECT o.oprnamespace, o.oprowner,
			CASE WHEN o.oprleft IN (SELECT oid FROM ours) OR o.oprright IN (SELECT oid FROM ours)
				THEN 'the operators of ' || format_type(CASE WHEN o.oprleft IN (SELECT oid FROM ours)
					THEN o.oprleft ELSE o.oprright END, NULL) END
		FROM pg_catalog.pg_operator o
		WHERE classid = 'pg_catalog.pg_operator'::regclass AND o.oid = objid
	)
	SELECT min(obj.shadowed)
	FROM obj, nsp, pg_catalog.pg_namespace s
	WHERE obj.shadowed IS NOT NULL AND obj.namespace <> nsp.oid
		-- starts_with, not LIKE 'pg\_temp\_%': a function body is parsed
		-- under the session's standard_conforming_strings, and with it off
		-- '\_' read as '_', a wildcard: a schema such as pgxtempx passed
		-- for a temporary one and its functions went unchecked
		AND s.oid = obj.namespace AND NOT starts_with(s.nspname, 'pg_temp_')
		AND NOT payments._trusted_role(obj.owner)
	$$;
COMMENT ON FUNCTION payments._shadowed_object(oid, oid) IS
	'Internal: the extension''s function, type or operators that a function, type or operator (classid, objid: pg_proc, pg_type or pg_operator; a range with its multirange; pg_class: a relation''s row type) outside schema payments would be found instead of, when its owner is not trusted (a superuser, a member of the database owner or of the extension''s owner); else NULL.';

CREATE FUNCTION payments._refuse_shadowing_objects() RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	found text;
BEGIN
	-- the candidates by name, operand or argument type, then the whole
	-- tests on them
	WITH cards(oid) AS (
		SELECT a.t FROM (SELECT unnest(p.proargtypes::oid[]) FROM pg_proc p
				UNION SELECT o.oprleft FROM pg_operator o UNION SELECT o.oprright FROM pg_operator o
				UNION SELECT c.castsource FROM pg_cast c) a(t)
		WHERE a.t <> 0 AND payments._type_contains_card(a.t)
	)
	SELECT string_agg(c.what, '; ' ORDER BY c.classid, c.objid, c.what)
	INTO found
	FROM (SELECT c.classid, c.objid, format('%s (owner %s) would be found instead of %s',
				pg_describe_object(c.classid, c.objid, 0), pg_get_userbyid(c.owner), s.shadowed)
		FROM (SELECT 'pg_catalog.pg_proc'::regclass::oid, p.oid, p.proowner FROM pg_proc p
				WHERE p.proname IN (SELECT x.proname FROM pg_proc x WHERE x.pronamespace = 'payments'::regnamespace)
			UNION ALL
			SELECT 'pg_catalog.pg_type'::regclass::oid, t.oid, t.typowner FROM pg_type t
				WHERE t.typname IN (SELECT x.typname FROM pg_type x WHERE x.typnamespace = 'payments'::regnamespace)
			UNION ALL
			SELECT 'pg_catalog.pg_operator'::regclass::oid, o.oid, o.oprowner FROM pg_operator o
				WHERE o.oprnamespace <> 'payments'::regnamespace AND EXISTS (SELECT FROM pg_type y
					WHERE y.oid IN (o.oprleft, o.oprright) AND y.typnamespace = 'payments'::regnamespace)
			) c(classid, objid, owner),
			LATERAL payments._shadowed_object(c.classid, c.objid) s(shadowed)
		WHERE s.shadowed IS NOT NULL
		UNION ALL
		SELECT c.classid, c.objid, format('%s%s takes %s', pg_describe_object(c.classid, c.objid, 0),
				' (owner ' || pg_get_userbyid(c.owner) || ')', t.taken)
		FROM (SELECT 'pg_catalog.pg_proc'::regclass::oid, p.oid, p.proowner FROM pg_proc p
				WHERE p.proargtypes::oid[] && (ARRAY(SELECT oid FROM cards) || payments._card_generic_types())
			UNION ALL
			SELECT 'pg_catalog.pg_operator'::regclass::oid, o.oid, o.oprowner FROM pg_operator o
				WHERE o.oprleft IN (SELECT oid FROM cards) OR o.oprright IN (SELECT oid FROM cards)
			UNION ALL
			SELECT 'pg_catalog.pg_cast'::regclass::oid, k.oid, NULL FROM pg_cast k
				WHERE k.castsource IN (SELECT oid FROM cards)
			) c(classid, objid, owner),
			LATERAL payments._card_taker(c.classid, c.objid) t(taken)
		WHERE t.taken IS NOT NULL
		) c(classid, objid, what);
	IF found IS NOT NULL THEN
		RAISE EXCEPTION 'objects named like the payments extension''s, or that take a pay_card, belong to roles that are not trusted'
			USING ERRCODE = '42501',
				DETAIL = format('%s. A session that names them, or calls a function of PostgreSQL that one of them matches better, would run them in place of the extension''s or PostgreSQL''s, with its privileges and card data.', found),
				HINT = 'Drop or rename them, or have a superuser or the database owner own them, and try again.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._refuse_shadowing_objects() IS
	'Internal: refuses (SQLSTATE 42501) when a role that is not trusted owns a function, type or operator that would be found instead of the extension''s (payments._shadowed_object), or a function, procedure, aggregate, operator or cast that takes a pay_card (payments._card_taker), made before the DDL guard could refuse it, or left to it by a statement on roles, which fires no event trigger; run at the end of CREATE EXTENSION and ALTER EXTENSION UPDATE, and after REASSIGN OWNED, ALTER ROLE ... NOSUPERUSER, REVOKE of a role, DROP ROLE and ALTER DATABASE ... OWNER TO (src/role_guard.c).';

------------------------------------------------------------------------------
-- h-card-guard: no role that is not trusted may make a function, procedure,
-- aggregate, operator or cast that takes a pay_card, whatever its name
-- (sql/src/name_guard.sql: payments._card_taker; the DDL guard asks it,
-- _refuse_shadowing_objects in h-name-guard reports the ones made before;
-- the rule of trust, payments._trusted_role, is h-name-guard's).  Before
-- h-ddl-guard, not beside h-tenancy: the event trigger made there runs it
-- at every later statement of this script.
------------------------------------------------------------------------------

-- The generic types a pay_card (or an array of them) is passed as.
CREATE FUNCTION payments._card_generic_types() RETURNS oid[]
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT ARRAY['anyelement', 'anynonarray', 'anyarray', 'anycompatible', 'anycompatiblenonarray',
		'anycompatiblearray']::pg_catalog.regtype[]::oid[]
	$$;
COMMENT ON FUNCTION payments._card_generic_types() IS
	'Internal: the generic argument types a pay_card or an array of them is passed as (anyelement, anynonarray, anyarray and their anycompatible forms); the card guard refuses them in functions named like PostgreSQL''s of a role that is not trusted.';

CREATE FUNCTION payments._card_taker(classid oid, objid oid) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH obj(taken, untrusted) AS (
		SELECT coalesce((SELECT a.t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n)
					WHERE payments._type_contains_card(a.t) ORDER BY a.n LIMIT 1),
				-- a generic argument under the name of one of PostgreSQL's
				-- functions: concat('card ', card) took a public.concat(text,
				-- anynonarray) as readily as one of pay_card
				(SELECT a.t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n)
				 WHERE a.t = ANY (payments._card_generic_types())
					AND EXISTS (SELECT FROM pg_catalog.pg_proc b
						WHERE b.pronamespace = 'pg_catalog'::regnamespace AND b.proname = p.proname)
				 ORDER BY a.n LIMIT 1)),
			NOT payments._trusted_role(p.proowner)
				AND NOT starts_with(p.pronamespace::regnamespace::text, 'pg_temp_')
		FROM pg_catalog.pg_proc p
		WHERE classid = 'pg_catalog.pg_proc'::regclass AND p.oid = objid
		UNION ALL
		SELECT CASE WHEN payments._type_contains_card(o.oprleft) THEN o.oprleft
				WHEN payments._type_contains_card(o.oprright) THEN o.oprright END,
			NOT payments._trusted_role(o.oprowner)
		FROM pg_catalog.pg_operator o
		WHERE classid = 'pg_catalog.pg_operator'::regclass AND o.oid = objid
		UNION ALL
		-- a cast has no owner: whoever made it owns its source or its target
		-- type; its function is checked as a function, and here too
		SELECT CASE WHEN payments._type_contains_card(c.castsource) THEN c.castsource END,
			EXISTS (SELECT FROM pg_catalog.pg_type y
					WHERE y.oid IN (c.castsource, c.casttarget) AND NOT payments._trusted_role(y.typowner))
				OR EXISTS (SELECT FROM pg_catalog.pg_proc f
					WHERE f.oid = c.castfunc AND NOT payments._trusted_role(f.proowner))
		FROM pg_catalog.pg_cast c
		WHERE classid = 'pg_catalog.pg_cast'::regclass AND c.oid = objid
	)
	SELECT format_type(obj.taken, NULL) || CASE WHEN obj.taken = 'payments.pay_card'::pg_catalog.regtype THEN ''
			WHEN obj.taken = ANY (payments._card_generic_types())
				THEN ', which a pay_card matches, under the name of a function of PostgreSQL'
			ELSE ', which holds a pay_card' END
	FROM obj
	WHERE obj.taken IS NOT NULL AND obj.untrusted
	$$;
COMMENT ON FUNCTION payments._card_taker(oid, oid) IS
	'Internal: the card guard''s test of one object a DDL command made or changed (classid, objid: a function, procedure or aggregate, an operator or a cast): the type of its first argument, operand or cast source that is, or contains, a pay_card, when the object is of a role that is not trusted (payments._trusted_role) and not temporary; else NULL. The DDL guard (payments._ddl_guard) refuses it (SQLSTATE 42501).';

------------------------------------------------------------------------------
-- h-ddl-guard: one event trigger, payments_ddl_guard, for the storage ban
-- and the name guard (sql/src/ddl_guard.sql; replaces 0.1.0's
-- payments_card_storage_guard, so that one scan of the commands serves
-- both).  The storage
-- ban's test of an object is payments._stored_card (sql/src/card.sql), which
-- PUBLIC may execute (h-tenancy: payments._public_function).  The name guard
-- (sql/src/name_guard.sql) also refuses a relation whose row type is named
-- like one of the extension's types (CREATE TABLE or VIEW public.pay_card
-- made a type public.pay_card that the guard did not look at) and a range
-- whose multirange is.
------------------------------------------------------------------------------

DROP EVENT TRIGGER payments_card_storage_guard;
DROP FUNCTION payments._card_storage_guard();

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



CREATE FUNCTION payments._ddl_guard() RETURNS event_trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	cmd record;
	refused text;
	typ oid;
BEGIN
	FOR cmd IN SELECT d.classid, d.objid, d.object_type, d.object_identity
		FROM pg_event_trigger_ddl_commands() d
	LOOP
		refused := payments._stored_card(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION 'cannot store pay_card values'
				USING ERRCODE = '22Y16',
					DETAIL = refused,
					HINT = 'Pass cards straight to payment functions; store pay_card_fingerprint() or a gateway token instead.';
		END IF;
		refused := payments._shadowed_object(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION '% % would be found instead of %', cmd.object_type, cmd.object_identity, refused
				USING ERRCODE = '42501',
					DETAIL = 'A session that names it, with that schema ahead of payments on its search_path or with arguments of other types, would run it in place of the extension''s, with that session''s privileges and card data. Only superusers, members of the database owner and members of the extension''s owner may make or own objects named like the extension''s.',
					HINT = 'Choose another name.';
		END IF;
		refused := payments._card_taker(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION '% % takes %', cmd.object_type, cmd.object_identity, refused
				USING ERRCODE = '42501',
					DETAIL = 'A session that calls it, or a function, operator or cast of PostgreSQL it matches better (format(), concat(), to_json(), count() take any type), would hand it its card and run it with that session''s privileges. Only superusers, members of the database owner and members of the extension''s owner may make or own functions, procedures, aggregates, operators or casts that take a pay_card.',
					HINT = 'Pass cards only to the extension''s functions, or have the database owner make the function.';
		END IF;
		-- a type, or a relation's row type, given to another owner (ALTER
		-- TYPE or ALTER TABLE ... OWNER TO): a cast has no owner of its
		-- own, the casts from a pay_card to or from it are its owner's
		typ := CASE WHEN cmd.classid = 'pg_catalog.pg_type'::regclass THEN cmd.objid
			WHEN cmd.classid = 'pg_catalog.pg_class'::regclass
				THEN (SELECT c.reltype FROM pg_catalog.pg_class c WHERE c.oid = cmd.objid) END;
		IF typ IS NOT NULL AND typ <> 0 THEN
			SELECT min(pg_catalog.pg_describe_object('pg_catalog.pg_cast'::regclass, k.oid, 0) || ', which takes ' || t.taken)
			INTO refused
			FROM pg_catalog.pg_cast k, LATERAL payments._card_taker('pg_catalog.pg_cast'::regclass, k.oid) t(taken)
			WHERE (k.castsource = typ OR k.casttarget = typ) AND t.taken IS NOT NULL;
			IF refused IS NOT NULL THEN
				RAISE EXCEPTION '% % would give a role that is not trusted the %', cmd.object_type, cmd.object_identity, refused
					USING ERRCODE = '42501',
						DETAIL = 'A cast has no owner of its own: the owners of its types may drop it and change the type it makes (a domain''s CHECK sees every value cast to it). Only superusers, members of the database owner and members of the extension''s owner may own a type of a cast from a pay_card.',
						HINT = 'Drop the cast first, or give the type to a trusted role.';
			END IF;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._ddl_guard() IS
	'Internal: event trigger function run after every DDL command: refuses a relation or composite type that holds a pay_card (payments._stored_card, SQLSTATE 22Y16) and a function, type, operator or relation outside schema payments that would be found instead of the extension''s, made, renamed, moved or given to an owner that is not trusted (payments._shadowed_object, SQLSTATE 42501), and a function, procedure, aggregate, operator or cast of a role that is not trusted that takes a pay_card, whatever its name, or a type or relation given to such a role that is a type of a cast from a pay_card (payments._card_taker, SQLSTATE 42501).';

CREATE EVENT TRIGGER payments_ddl_guard ON ddl_command_end
	EXECUTE FUNCTION payments._ddl_guard();
ALTER EVENT TRIGGER payments_ddl_guard ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER payments_ddl_guard IS
	'Keeps pay_card out of tables, materialized views, foreign tables and composite types (cards are passed to payment functions, never stored), and the names of the extension''s functions, types and operators to the extension: no role that is not trusted makes one that a session would find instead, nor a function, operator or cast that takes a pay_card.';

------------------------------------------------------------------------------
-- h-clock-moves: a test clock moved by two sessions at once
-- (sql/src/subscription_tables.sql): the move is computed and checked under
-- the clock row's lock, so both moves count and none goes back.
-- Made once since: _move_test_clock, pay_set_test_clock and
-- pay_advance_test_clock in h-subs (their final forms).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-dunning-snapshots: a new card during dunning, from a caller's snapshot
-- older than a decline (sql/src/billing.sql, subscriptions.sql):
-- _retry_open_invoice_now locks each open invoice before it asks whether
-- its charge is in flight, pay_update_subscription no longer decides that
-- from an unlocked read, and the dunning-retry trigger locks the trialing
-- and active subscriptions a new default would be charged for: a
-- REPEATABLE READ or SERIALIZABLE caller whose snapshot predates a decline
-- the worker recorded gets 40001 instead of leaving the new card untried.
-- Made once since: _retry_open_invoice_now and
-- _payment_method_dunning_retry in h-billing, pay_update_subscription in
-- h-due-renewals (their final forms).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-session-settings: nothing the API stores or decides follows the caller's
-- session settings.
-- - Expiring cards: a merchant's billing date is the UTC date of its
--   billing time (the session's TimeZone listed a card, and noticed it, or
--   not, by the client or the scheduler that asked).
-- - Invoice lines write their wall-clock times with to_char (YYYY-MM-DD
--   HH24:MI:SS), not format()'s %s of a timestamp, which followed the
--   issuing session's DateStyle (01/03/2095 under SQL, DMY; 01.03.2095
--   under German).
-- - A restore is told by check_function_bodies off in a superuser's
--   session (session_user; the C triggers: the outer user), not by the
--   current user, which inside the API's SECURITY DEFINER functions is
--   their owner: any caller could turn the setting off and have its
--   payments made without audit rows or events, its operations taken for
--   restored ones.
-- - The name guard tells a temporary schema by starts_with, not LIKE
--   'pg\_temp\_%', which a session with standard_conforming_strings off
--   read with wildcards.
-- Made once since: pay_expiring_payment_methods and pay_run_expiry_notices
-- in h-expiry-clock, _period_line in h-subs-api, _issue_invoice in
-- h-priority, _subscription_change in h-paused-change, _restored_operation
-- in h-restore-in-service, _shadowed_object in h-name-guard (their final
-- forms).
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-session-time: times stored in audit rows and events, and intervals the
-- API adds, do not follow the writing or calling session's TimeZone.
-- - Audit rows and events hold a timestamptz as ISO 8601 in UTC
--   ("+00:00"), as the audit trigger and the status trigger now write it
--   (src/jsonb_value.c), and the SQL that writes events with
--   payments._json_time: before, each writer's TimeZone gave one instant
--   another text (2095-03-01T07:00:00-05:00 from New York for 12:00 UTC),
--   sealed so by the row hash.  Rows written before keep their text (and
--   verify: a row's hash is of its stored text).
-- - An API key's rotation overlap, a test clock's step and the audit
--   retention are added in UTC (payments._utc_plus): '1 day' across a
--   daylight-saving change was 23 or 25 hours by the caller's TimeZone.
-- Made once since, in their final forms: _dunning_final_action,
-- _invoice_payment_failed, _renew_subscription, _reschedule_dunning in
-- h-billing and later blocks, pay_cancel_subscription, _subscription_change,
-- _settlement_candidates (31 days as hours), pay_rotate_api_key and
-- _move_test_clock where they stand; payments._json_time in h-keys, before
-- pay_audit_digest (a LANGUAGE sql function, whose body is checked when
-- made), which writes sealed_at with it, as pay_audit_seal's digest does.
CREATE FUNCTION payments._utc_plus(t timestamptz, i interval) RETURNS timestamptz
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', t) OPERATOR(pg_catalog.+) i) $$;
REVOKE ALL ON FUNCTION payments._utc_plus(timestamptz, interval) FROM PUBLIC;
COMMENT ON FUNCTION payments._utc_plus(timestamptz, interval) IS
	'Internal: t + i counted in UTC (a day 24 hours, a month a calendar month of UTC), whatever the session''s TimeZone.';

CREATE OR REPLACE FUNCTION payments.pay_audit_prune(older_than interval) RETURNS bigint
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
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- h-hostile-locks: pay_audit_prune locks audit_seals in SHARE UPDATE
-- EXCLUSIVE mode, as pay_audit_seal does (both changed where they stand:
-- pay_audit_prune in h-session-time), not EXCLUSIVE: any role, without
-- privileges, can hold ROW EXCLUSIVE on a table it can name (a PREPAREd
-- INSERT locks it at parse analysis) for as long as it likes, and that
-- stopped every seal and prune.
-- The seal horizon is per merchant (pay_audit_seal, changed where it
-- stands): a role bound to one merchant that left a transaction with an
-- audit row open, or prepared it, held back every merchant's seals.
------------------------------------------------------------------------------
DROP FUNCTION payments._audit_seal_horizon(integer);
CREATE FUNCTION payments._audit_seal_horizon(wait_ms integer, merchant bigint) RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_audit_seal_horizon';
COMMENT ON FUNCTION payments._audit_seal_horizon(integer, bigint) IS
	'Internal: an audit_id at or below which every audit row of merchant (NULL: of any) is final (no running or prepared transaction that wrote rows of that merchant can still add one), or NULL if other transactions did not finish within wait_ms.';

------------------------------------------------------------------------------
-- h-tenancy: who acts for a merchant (DESIGN §3.6; sql/src/tenancy.sql,
-- payment_api.sql, privileges.sql).  Keep this block LAST: its privilege
-- and row-security statements cover every function and tenant table made
-- before it.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- Who acts for a merchant (DESIGN §3.6; src/tenancy.c decides).
--
-- Decided from what the caller cannot forge: the owner binds roles to
-- merchants (merchant_roles, membership-aware), declares the roles that
-- only PostgREST reaches (their JWT claim merchant_id counts), and names
-- the roles that act for every merchant (only they choose one with the
-- payments.merchant_id setting).  The extension owner and superusers act
-- for every merchant and default to merchant 1.
------------------------------------------------------------------------------

CREATE TABLE payments.merchant_roles (
	merchant_id bigint NOT NULL REFERENCES payments.merchants ON DELETE CASCADE,
	db_role regrole NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, db_role)
);
CREATE INDEX merchant_roles_role ON payments.merchant_roles (db_role);
REVOKE ALL ON payments.merchant_roles FROM PUBLIC;
COMMENT ON TABLE payments.merchant_roles IS
	'Which database roles act for which merchant (pay_bind_role). A role acts for the merchants bound to it or to a role it is a member of; bound to several, a request must name one (payments.merchant_id). Owner only.';
COMMENT ON COLUMN payments.merchant_roles.db_role IS 'The bound role (regrole: dumped by name, restored to the role of that name).';
-- Only the owner reads or writes bindings (pay_bind_role, pay_unbind_role,
-- pay_forget_role; src/tenancy.c reads them as the owner): a member of
-- pg_write_all_data (INSERT, UPDATE and DELETE on every table) bound to
-- merchant A passed merchant_isolation for A's rows, and bound another
-- merchant's role to A (that role, bound to two merchants, then had every
-- call refused until it named one) or removed A's bindings.
CREATE POLICY owner_only ON payments.merchant_roles AS RESTRICTIVE USING (false) WITH CHECK (false);
COMMENT ON POLICY owner_only ON payments.merchant_roles IS
	'No role but the owner (whom row-level security does not restrict) reads or writes a binding, pg_read_all_data, pg_write_all_data or a GRANT notwithstanding.';
-- Credentials are the owner's alone (pay_configure_gateway; the worker
-- reads them as a superuser): a member of pg_read_all_data bound to a
-- merchant read its transaction and signature keys, one of
-- pg_write_all_data pointed its endpoint_url (where the worker sends card
-- numbers and the transaction key) at a server of its own.
CREATE POLICY owner_only ON payments.gateway_config AS RESTRICTIVE USING (false) WITH CHECK (false);
COMMENT ON POLICY owner_only ON payments.gateway_config IS
	'No role but the owner (whom row-level security does not restrict) reads or writes gateway credentials, pg_read_all_data, pg_write_all_data or a GRANT notwithstanding.';
SELECT pg_catalog.pg_extension_config_dump('payments.merchant_roles', '');

CREATE TABLE payments.role_trust (
	db_role regrole NOT NULL,
	trust text NOT NULL CHECK (trust IN ('postgrest', 'all_merchants')),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (db_role, trust)
);
REVOKE ALL ON payments.role_trust FROM PUBLIC;
COMMENT ON TABLE payments.role_trust IS
	'Roles the owner trusts beyond a binding: postgrest (reachable only through PostgREST, so its request.jwt.claims merchant_id counts; pay_declare_postgrest_role) and all_merchants (acts for every merchant, chosen with the payments.merchant_id setting; pay_grant_all_merchants). Owner only.';
SELECT pg_catalog.pg_extension_config_dump('payments.role_trust', '');

-- Each backend keeps what these three tables say about the last role it
-- resolved (src/tenancy.c); any change, a restore and a logical
-- replication apply included (ENABLE ALWAYS), tells every backend to read
-- them again (src/cached_table.c).
CREATE FUNCTION payments._cached_table_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_cached_table_changed';
REVOKE ALL ON FUNCTION payments._cached_table_changed() FROM PUBLIC;
COMMENT ON FUNCTION payments._cached_table_changed() IS
	'Internal: statement trigger of a table backends keep in memory; makes every backend drop what it kept at commit.';
-- the server life's tag (_server_tag) kept in memory: see worker_server
CREATE TRIGGER worker_server_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.worker_server
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
COMMENT ON TRIGGER worker_server_changed ON payments.worker_server IS
	'Makes every backend drop the server life''s tag it kept (_server_tag).';
CREATE TRIGGER merchants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.merchants
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
CREATE TRIGGER merchant_roles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.merchant_roles
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
CREATE TRIGGER role_trust_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.role_trust
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
ALTER TABLE payments.merchants ENABLE ALWAYS TRIGGER merchants_changed;
ALTER TABLE payments.merchant_roles ENABLE ALWAYS TRIGGER merchant_roles_changed;
ALTER TABLE payments.role_trust ENABLE ALWAYS TRIGGER role_trust_changed;
COMMENT ON TRIGGER merchants_changed ON payments.merchants IS
	'Makes every backend read again which merchants exist (src/tenancy.c keeps it).';
COMMENT ON TRIGGER merchant_roles_changed ON payments.merchant_roles IS
	'Makes every backend read the bindings again (src/tenancy.c keeps them).';
COMMENT ON TRIGGER role_trust_changed ON payments.role_trust IS
	'Makes every backend read the trusted roles again (src/tenancy.c keeps them).';

-- (status_machine.sql: made here, where its function is made)
-- Each backend keeps the allowed transitions (src/status_guard.c); any
-- change tells every backend to read them again (src/cached_table.c).
CREATE TRIGGER status_transitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON payments.status_transitions
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
ALTER TABLE payments.status_transitions ENABLE ALWAYS TRIGGER status_transitions_changed;
COMMENT ON TRIGGER status_transitions_changed ON payments.status_transitions IS
	'Makes every backend read the allowed transitions again (src/status_guard.c keeps them).';

CREATE OR REPLACE FUNCTION payments.pay_current_merchant() RETURNS bigint
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pay_current_merchant';
COMMENT ON FUNCTION payments.pay_current_merchant() IS
	'The merchant the current request acts for, decided from what the caller cannot forge: the role''s binding (pay_bind_role); the JWT claim merchant_id for roles declared PostgREST-only (pay_declare_postgrest_role); the payments.merchant_id setting only for roles acting for every merchant (owner, superusers, pay_grant_all_merchants), the owner defaulting to merchant 1. Raises 42501 when nothing identifies a merchant or the request names one the role may not act for.';

CREATE FUNCTION payments.pay_current_identity(OUT merchant_id bigint, OUT acting_role name,
	OUT source text, OUT jwt_subject text, OUT key_id text)
	RETURNS record
	LANGUAGE c STABLE PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'pay_current_identity';
COMMENT ON FUNCTION payments.pay_current_identity() IS
	'Who the current request acts as: the merchant (NULL when nothing identifies one; never raises), the acting role (SET ROLE, else the login role, also inside SECURITY DEFINER functions), what decided the merchant (binding, jwt, setting, default), the JWT subject, and the API key id (NULL without a key; source api_key with one: pay_use_api_key, or an X-Api-Key header through PostgREST).';

-- The API: the functions a role needs to take payments (pay_grant_api).
-- New API functions are added to this list; everything else in the schema
-- stays with the owner (privileges.sql), but the types' own functions.
CREATE FUNCTION payments._api_function_names() RETURNS text[]
	LANGUAGE sql IMMUTABLE
	AS $$
	SELECT ARRAY['pay_purchase', 'pay_authorize', 'pay_capture', 'pay_void', 'pay_refund', 'pay_wait',
		'pay_get_payment', 'pay_payment_operations', 'pay_list_payments', 'pay_current_merchant',
		'pay_current_identity',
		-- merchant API keys (api_keys.sql): using one, PostgREST's pre-request
		-- function, and managing a merchant's keys (an admin key or the owner)
		'pay_use_api_key', 'pay_postgrest_pre_request', 'pay_create_api_key', 'pay_list_api_keys',
		'pay_revoke_api_key', 'pay_rotate_api_key',
		-- customers and payment methods (customers.sql, payment_methods.sql,
		-- customer_privacy.sql)
		'pay_create_customer', 'pay_update_customer', 'pay_get_customer',
		'pay_find_customers', 'pay_delete_customer', 'pay_save_payment_method', 'pay_wait_payment_method',
		'pay_get_payment_method', 'pay_list_payment_methods', 'pay_set_default_payment_method',
		'pay_delete_payment_method', 'pay_expiring_payment_methods', 'pay_export_customer',
		'pay_erase_customer',
		-- plans, subscriptions, invoices, dunning, billing runs and test
		-- clocks (subscription_tables.sql, subscriptions.sql, billing.sql)
		'pay_create_plan', 'pay_update_plan', 'pay_get_plan', 'pay_list_plans',
		'pay_create_subscription', 'pay_update_subscription', 'pay_get_subscription',
		'pay_list_subscriptions', 'pay_cancel_subscription', 'pay_pause_subscription',
		'pay_resume_subscription', 'pay_change_subscription', 'pay_preview_subscription_change',
		'pay_get_invoice', 'pay_list_invoices', 'pay_run_renewals', 'pay_run_dunning',
		'pay_set_dunning_policy', 'pay_get_dunning_policy',
		'pay_set_test_clock', 'pay_advance_test_clock', 'pay_clear_test_clock', 'pay_billing_now']
	$$;
COMMENT ON FUNCTION payments._api_function_names() IS
	'Internal: the names of the API functions pay_grant_api() grants.';

CREATE FUNCTION payments.pay_grant_api(role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	f regprocedure;
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA payments TO %s', role);
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace AND p.proname = ANY (payments._api_function_names())
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f, role);
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments.pay_grant_api(regrole) IS
	'Lets a role call the payment API: USAGE on the schema and EXECUTE on the functions payments._api_function_names() lists. Payments: pay_purchase, pay_authorize, pay_capture, pay_void, pay_refund, pay_wait, pay_get_payment, pay_payment_operations, pay_list_payments; identity: pay_current_merchant, pay_current_identity; API keys: pay_use_api_key, pay_postgrest_pre_request, pay_create_api_key, pay_list_api_keys, pay_revoke_api_key, pay_rotate_api_key; customers and payment methods: pay_create_customer, pay_update_customer, pay_get_customer, pay_find_customers, pay_delete_customer, pay_save_payment_method, pay_wait_payment_method, pay_get_payment_method, pay_list_payment_methods, pay_set_default_payment_method, pay_delete_payment_method, pay_expiring_payment_methods, pay_export_customer, pay_erase_customer; plans and subscriptions: pay_create_plan, pay_update_plan, pay_get_plan, pay_list_plans, pay_create_subscription, pay_update_subscription, pay_get_subscription, pay_list_subscriptions, pay_cancel_subscription, pay_pause_subscription, pay_resume_subscription, pay_change_subscription, pay_preview_subscription_change; invoices, dunning and billing runs: pay_get_invoice, pay_list_invoices, pay_run_renewals, pay_run_dunning, pay_set_dunning_policy, pay_get_dunning_policy; test clocks: pay_set_test_clock, pay_advance_test_clock, pay_clear_test_clock, pay_billing_now. Which merchant it acts for is decided by pay_bind_role, pay_declare_postgrest_role or pay_grant_all_merchants. Owner only.';

CREATE FUNCTION payments.pay_revoke_api(role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace AND p.proname = ANY (payments._api_function_names())
	LOOP
		EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s', f, role);
	END LOOP;
	-- the explicit grant only: PUBLIC keeps USAGE, for the types
	EXECUTE format('REVOKE USAGE ON SCHEMA payments FROM %s', role);
END
$$;
COMMENT ON FUNCTION payments.pay_revoke_api(regrole) IS
	'Takes the payment API away from a role (the reverse of pay_grant_api). Owner only.';

CREATE FUNCTION payments._check_role(role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF role IS NULL THEN
		RAISE EXCEPTION 'role is required' USING ERRCODE = '22004';
	END IF;
	IF (SELECT rolsuper FROM pg_roles WHERE oid = role) THEN
		RAISE EXCEPTION 'role % is a superuser, which acts for every merchant already', role
			USING ERRCODE = '22023';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_role(regrole) IS 'Internal: refuses a NULL or superuser role for the binding calls.';

CREATE FUNCTION payments.pay_bind_role(role regrole, merchant_id bigint DEFAULT 1, grant_api boolean DEFAULT true)
	RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_role(role);
	IF NOT EXISTS (SELECT 1 FROM payments.merchants m WHERE m.merchant_id = pay_bind_role.merchant_id) THEN
		RAISE EXCEPTION 'merchant % does not exist', pay_bind_role.merchant_id USING ERRCODE = 'PT404';
	END IF;
	IF grant_api THEN
		PERFORM payments.pay_grant_api(role);
	END IF;
	INSERT INTO payments.merchant_roles (merchant_id, db_role) VALUES (pay_bind_role.merchant_id, role)
	ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION payments.pay_bind_role(regrole, bigint, boolean) IS
	'Binds a role to a merchant (default: the default merchant 1): the role, and every role that is a member of it, acts for that merchant. Grants the API too unless grant_api is false. A single-merchant install needs only SELECT payments.pay_bind_role(''app''). Returns false when the binding existed. Owner only.';

CREATE FUNCTION payments.pay_unbind_role(role regrole, merchant_id bigint DEFAULT NULL) RETURNS integer
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	WITH d AS (DELETE FROM payments.merchant_roles b
		WHERE b.db_role = pay_unbind_role.role
			AND (pay_unbind_role.merchant_id IS NULL OR b.merchant_id = pay_unbind_role.merchant_id)
		RETURNING 1)
	SELECT count(*)::integer FROM d
	$$;
COMMENT ON FUNCTION payments.pay_unbind_role(regrole, bigint) IS
	'Removes a role''s binding to a merchant (NULL: to every merchant); returns how many. The API grant stays (pay_revoke_api). Owner only.';

CREATE FUNCTION payments.pay_declare_postgrest_role(role regrole, grant_api boolean DEFAULT true) RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_role(role);
	IF (SELECT rolcanlogin FROM pg_roles WHERE oid = role) THEN
		RAISE EXCEPTION 'role % can log in, so its sessions could set request.jwt.claims themselves', role
			USING ERRCODE = '22023',
				HINT = 'Declare only the NOLOGIN roles PostgREST switches to (anon, authenticated), reached by SET ROLE from its authenticator.';
	END IF;
	IF grant_api THEN
		PERFORM payments.pay_grant_api(role);
	END IF;
	INSERT INTO payments.role_trust (db_role, trust) VALUES (role, 'postgrest') ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION payments.pay_declare_postgrest_role(regrole, boolean) IS
	'Declares a NOLOGIN role that only PostgREST reaches (SET ROLE from its authenticator): for it the verified JWT''s claim merchant_id (request.jwt.claims) decides the merchant. Safe only as long as no one but PostgREST''s authenticator is a member of the role and the JWT secret is kept. Grants the API too unless grant_api is false. Owner only.';

CREATE FUNCTION payments.pay_grant_all_merchants(role regrole, grant_api boolean DEFAULT true) RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_role(role);
	IF grant_api THEN
		PERFORM payments.pay_grant_api(role);
	END IF;
	INSERT INTO payments.role_trust (db_role, trust) VALUES (role, 'all_merchants') ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;
COMMENT ON FUNCTION payments.pay_grant_all_merchants(regrole, boolean) IS
	'Lets a role (and its members) act for every merchant, chosen per request with SET payments.merchant_id (an admin or service role). Grants the API too unless grant_api is false. Owner only.';

CREATE FUNCTION payments.pay_forget_role(role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	DELETE FROM payments.merchant_roles b WHERE b.db_role = role;
	DELETE FROM payments.role_trust t WHERE t.db_role = role;
	PERFORM payments.pay_revoke_api(role);
END
$$;
COMMENT ON FUNCTION payments.pay_forget_role(regrole) IS
	'Removes a role''s bindings, its PostgREST declaration and its all-merchants grant, and revokes the API from it. Call it before DROP ROLE. Owner only.';

-- Row-level security by merchant on every tenant-owned table of the
-- extension (a table with a merchant_id column): enabled, with the policy
-- merchant_isolation, by the install and upgrade scripts themselves
-- (privileges.sql runs this last).  pg_dump 15 does not dump the row
-- security or the policies of an extension's tables (it dumps only their
-- ACLs), so state made after CREATE EXTENSION would be lost in a
-- dump/restore; made by the install script, CREATE EXTENSION remakes it.
-- The tables' owner (the extension owner, hence every SECURITY DEFINER
-- function of the API) and BYPASSRLS roles are not restricted; every other
-- role sees and changes only the rows of pay_current_merchant().
CREATE FUNCTION payments._apply_row_security() RETURNS SETOF regclass
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	t regclass;
BEGIN
	FOR t IN
		SELECT c.oid::regclass
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
			AND a.attname = 'merchant_id' AND NOT a.attisdropped
		ORDER BY c.relname
	LOOP
		-- only where it is off: ALTER TABLE locks the table ACCESS EXCLUSIVE,
		-- and waits behind a lock any role can hold without privilege (a
		-- PREPAREd INSERT in a transaction it leaves open) with every API
		-- call queued behind it: pay_enable_row_security() stopped payments
		-- for as long as that lock was held
		IF NOT (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = t) THEN
			EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
		END IF;
		IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = t AND polname = 'merchant_isolation') THEN
			EXECUTE format('CREATE POLICY merchant_isolation ON %s USING (merchant_id = payments.pay_current_merchant())', t);
		END IF;
		EXECUTE format('COMMENT ON POLICY merchant_isolation ON %s IS %L', t,
			'Rows of the merchant the request acts for (payments.pay_current_merchant()).');
		RETURN NEXT t;
	END LOOP;
	-- The owner-only tables of no merchant (role_trust, installation_secrets,
	-- status_transitions, operation_outcomes, worker_server): row-level
	-- security on with no policy, so no row is read or written by a role
	-- other than the owner (superusers and BYPASSRLS roles aside), whatever
	-- it was granted.  pg_read_all_data and pg_write_all_data grant SELECT,
	-- INSERT, UPDATE and DELETE on every table: a member of
	-- pg_write_all_data bound to one merchant inserted itself into
	-- role_trust as all_merchants and acted for every merchant.  The
	-- extension reads them as the owner (SECURITY DEFINER, src/tenancy.c's
	-- owner_select) or by direct scans, which row security does not touch.
	FOR t IN
		SELECT c.oid::regclass
		FROM pg_class c
		WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
			AND NOT c.relrowsecurity
			AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
				AND d.objid = c.oid AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')
			AND NOT EXISTS (SELECT 1 FROM pg_attribute a
				WHERE a.attrelid = c.oid AND a.attname = 'merchant_id' AND NOT a.attisdropped)
		ORDER BY c.relname
	LOOP
		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._apply_row_security() IS
	'Internal: enables row-level security with the merchant_isolation policy on every tenant-owned table of the extension, and with no policy on its other tables (owner only, pg_read_all_data and pg_write_all_data notwithstanding); returns the tenant-owned ones; run by the install and upgrade scripts.';

CREATE OR REPLACE FUNCTION payments.pay_enable_row_security() RETURNS SETOF regclass
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT payments._apply_row_security()
	$$;
REVOKE ALL ON FUNCTION payments.pay_enable_row_security() FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_enable_row_security() IS
	'Row-level security is on from install (merchant_isolation: merchant_id = pay_current_merchant() on every tenant-owned table of the extension); this makes sure of it and returns the tables. Owner only. Table owners and roles with BYPASSRLS are not restricted.';

-- The types' own functions, the only ones PUBLIC may execute
-- (privileges.sql): pay_amount's and pay_card's input, output, operators,
-- casts, aggregates, constructors and accessors.  Not pay_card_fingerprint
-- nor pay_card_info (which holds the fingerprint): with the fingerprint
-- function anyone can brute-force the card number behind a stored
-- fingerprint in seconds, so it stays with the owner.
CREATE FUNCTION payments._public_function(f regprocedure) RETURNS boolean
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	-- starts_with, not LIKE 'pay\_amount%': the body is parsed under the
	-- session's standard_conforming_strings, with it off '\_' is '_'
	SELECT (starts_with(p.proname, 'pay_amount') OR starts_with(p.proname, 'pay_card')
			OR p.proname IN ('pay_currency', 'pay_minor_units', 'pay_currency_exponent', 'pay_currencies',
				'pay_int8_mul_amount', 'pay_int4_mul_amount', 'pay_numeric_mul_amount',
				-- the storage ban's tests, the name guard's and the card guard's, run by the
				-- DDL guard's event trigger as whoever makes a table, function, type, operator or cast
				'_type_contains_card', '_stored_card', '_shadowed_object', '_trusted_role', '_card_taker', '_card_generic_types')
			OR (p.prokind = 'a' AND p.proname IN ('sum', 'min', 'max')))
		AND p.proname NOT IN ('pay_card_fingerprint', 'pay_card_info')
	FROM pg_proc p WHERE p.oid = f
	$$;
COMMENT ON FUNCTION payments._public_function(regprocedure) IS
	'Internal: whether a function of the schema is one of the types'' own functions that PUBLIC may execute.';

-- payment_api.sql: PT404 for unknown or foreign payments, payments.max_wait

-- A payment of the current merchant, or PT404: another merchant's payment
-- is unknown too (its existence is not revealed).
CREATE FUNCTION payments._find_payment(p_payment_id bigint) RETURNS payments.payments
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments;
BEGIN
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = payments.pay_current_merchant() AND payment_id = p_payment_id;
	IF NOT FOUND THEN
		PERFORM payments._not_found(p_payment_id);
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._find_payment(bigint) IS 'Internal: a payment of the current merchant, or PT404.';

-- The longest pay_wait: the payments.max_wait setting (superuser-only).
CREATE FUNCTION payments._max_wait() RETURNS interval
	LANGUAGE sql STABLE
	AS $$
	SELECT coalesce(nullif(current_setting('payments.max_wait', true), ''), '30s')::interval
	$$;
COMMENT ON FUNCTION payments._max_wait() IS 'Internal: the longest timeout pay_wait accepts (payments.max_wait).';

CREATE OR REPLACE FUNCTION payments.pay_wait(payment_id bigint, timeout interval DEFAULT '30 seconds')
	RETURNS payments.payments
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	result payments.payments;
BEGIN
	IF timeout IS NULL THEN
		RAISE EXCEPTION 'timeout is required' USING ERRCODE = '22004',
			HINT = 'Pass an interval such as ''30 seconds'', or leave timeout out for the default.';
	END IF;
	IF timeout < interval '0' OR timeout > payments._max_wait() THEN
		RAISE EXCEPTION 'timeout must be between 0 and %', payments._max_wait() USING ERRCODE = '22023',
			DETAIL = format('%s was asked for; the payments.max_wait setting allows at most %s.', timeout, payments._max_wait()),
			HINT = 'Wait again after the timeout, or ask the administrator to raise payments.max_wait.';
	END IF;
	-- an unknown or foreign payment is not waited for
	PERFORM payments._find_payment(pay_wait.payment_id);
	PERFORM payments._wait_for_payment(m, pay_wait.payment_id,
		(extract(epoch FROM timeout) * 1000)::integer);
	SELECT * INTO result FROM payments.payments p WHERE p.merchant_id = m AND p.payment_id = pay_wait.payment_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_wait(bigint, interval) IS
	'Blocks until the payment''s gateway work is done (approved, declined, captured, voided, refunded, or still unknown) or the timeout passes, without polling; returns the payment row. Call it after the COMMIT that created the work.';

CREATE OR REPLACE FUNCTION payments.pay_get_payment(payment_id bigint) RETURNS payments.payments
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_payment(pay_get_payment.payment_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_payment(bigint) IS
	'A payment of the current merchant; an unknown id, or another merchant''s, raises PT404 (PostgREST: 404).';

CREATE OR REPLACE FUNCTION payments.pay_payment_operations(payment_id bigint) RETURNS SETOF payments.operations
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT o.* FROM payments._find_payment(pay_payment_operations.payment_id) p
	JOIN payments.operations o ON o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
	ORDER BY o.operation_id
	$$;
COMMENT ON FUNCTION payments.pay_payment_operations(bigint) IS
	'The gateway operations (authorize, capture, void, refunds) of a payment of the current merchant, oldest first; an unknown id, or another merchant''s, raises PT404.';

-- privileges.sql

-- Every function of the schema is REVOKEd from PUBLIC, but the types' own
-- ones (payments._public_function decides).
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace
			AND NOT payments._public_function(p.oid::regprocedure)
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
	-- and the types' own ones are PUBLIC (also where an older version revoked one)
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace
			AND payments._public_function(p.oid::regprocedure)
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
	END LOOP;
END
$$;

-- Monitoring: installation-wide counters, for pg_monitor (and the owner).
GRANT EXECUTE ON FUNCTION payments.pay_worker_health(), payments.pay_metrics() TO pg_monitor;

-- Row-level security on every tenant-owned table, made here so that it is
-- part of the extension (tenancy.sql explains).
SELECT count(*) FROM payments._apply_row_security();

-- The API key scope of every API function (api_keys.sql), set last so
-- that no later CREATE OR REPLACE of a function drops it.
SELECT count(*) FROM payments._apply_api_scopes();

-- audit.sql: audit rows name the role that acted (src/audit.c, src/tenancy.c)
COMMENT ON COLUMN payments.audit_log.db_role IS 'The role that acted: SET ROLE, else the login role (PostgREST: the role of the JWT, e.g. authenticated), not the owner of the SECURITY DEFINER function the change went through. Rows written before 0.2.0 hold current_user.';

------------------------------------------------------------------------------
-- h-key-revocation: a revocation counts at once, also in a transaction that
-- took the key before it: any change of a key's revocation or expiry makes
-- every backend read its key again (sql/src/api_keys.sql, src/tenancy.c).
-- After h-tenancy, which makes payments._cached_table_changed.
------------------------------------------------------------------------------
CREATE TRIGGER api_keys_state_changed AFTER UPDATE OF expires_at OR DELETE OR TRUNCATE
	ON payments.api_keys
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
ALTER TABLE payments.api_keys ENABLE ALWAYS TRIGGER api_keys_state_changed;
COMMENT ON TRIGGER api_keys_state_changed ON payments.api_keys IS
	'Makes every backend read again the key its transaction took, once a key expires anew or is deleted (src/tenancy.c keeps the key).';
CREATE TRIGGER api_key_revocations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON payments.api_key_revocations
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
ALTER TABLE payments.api_key_revocations ENABLE ALWAYS TRIGGER api_key_revocations_changed;
COMMENT ON TRIGGER api_key_revocations_changed ON payments.api_key_revocations IS
	'Makes every backend read again the key its transaction took, once a key is revoked: a revocation counts at once (src/tenancy.c keeps the key).';

------------------------------------------------------------------------------
-- h-name-guard (end): the functions, types and operators named like the
-- extension's that roles that are not trusted made before the guard, or
-- before this version, are refused here, once every name of the version
-- exists (privileges.sql's last statement).
------------------------------------------------------------------------------
SELECT payments._refuse_shadowing_objects();
