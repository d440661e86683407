-- Data of every kind in a payments installation of any version, for
-- test/integration/upgrade_chain.sh: two merchants with gateway
-- configuration, a payment in every status and an operation in every status
-- of the tables' CHECK constraints (reached through the transitions
-- payments.status_transitions allows, so the status trigger writes an event
-- per change), idempotency keys, gateway exchanges, a sealed card, audit rows
-- of every kind and sealed audit batches, and a table of the user's own with
-- a pay_amount column.
--
-- Written as the owner with plain SQL: no API function, since the library
-- refuses those against a schema older than its own.  Version-independent:
-- the statuses come from the CHECK constraints, the paths to them from
-- payments.status_transitions.

-- The statuses a table's CHECK constraint on its status column allows.
CREATE FUNCTION pg_temp.check_statuses(rel regclass) RETURNS SETOF text
	LANGUAGE sql STABLE AS $$
	SELECT DISTINCT m[1]
	FROM pg_catalog.pg_constraint c,
		regexp_matches(pg_catalog.pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') m
	WHERE c.conrelid = rel AND c.contype = 'c'
		AND pg_catalog.pg_get_constraintdef(c.oid) ~ '\(status = ANY'
$$;

-- For every status of the CHECK, the shortest path of allowed transitions
-- from the initial status; a status no path reaches is inserted as it is.
CREATE FUNCTION pg_temp.status_paths(entity text, rel regclass, initial text)
	RETURNS TABLE (status text, path text[])
	LANGUAGE sql STABLE AS $$
	WITH RECURSIVE walk(status, path) AS (
		SELECT initial, ARRAY[initial]
		UNION ALL
		SELECT t.to_status, w.path || t.to_status
		FROM walk w JOIN payments.status_transitions t
			ON t.entity = status_paths.entity AND t.from_status = w.status
		WHERE t.to_status <> ALL (w.path))
	SELECT DISTINCT ON (s) s, coalesce(w.path, ARRAY[s])
	FROM pg_temp.check_statuses(rel) s LEFT JOIN walk w ON w.status = s
	ORDER BY s, cardinality(w.path), w.path
$$;

-- Walks an operation from its current status along a path (its first
-- element is where it stands).
CREATE FUNCTION pg_temp.walk_operation(m bigint, op bigint, path text[]) RETURNS void
	LANGUAGE plpgsql AS $$
DECLARE
	step text;
BEGIN
	FOREACH step IN ARRAY path[2:] LOOP
		UPDATE payments.operations o SET status = step,
			attempts = o.attempts + (step = 'sending')::int,
			never_sent = o.never_sent AND step <> 'sending',
			first_sent_at = CASE WHEN step = 'sending' THEN coalesce(o.first_sent_at, now()) ELSE o.first_sent_at END,
			gateway_trans_id = CASE WHEN step = 'succeeded' THEN '6000' || o.operation_id ELSE o.gateway_trans_id END,
			response_code = CASE step WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 ELSE o.response_code END,
			reason_code = CASE step WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2 ELSE o.reason_code END,
			reason_text = CASE step WHEN 'failed' THEN 'This transaction has been declined.' ELSE o.reason_text END,
			last_error = CASE step WHEN 'dead' THEN 'attempts exhausted' WHEN 'unknown' THEN 'timeout' ELSE o.last_error END,
			completed_at = CASE WHEN step IN ('succeeded', 'failed', 'canceled', 'dead') THEN now() END
		WHERE o.merchant_id = m AND o.operation_id = op;
	END LOOP;
END
$$;

INSERT INTO payments.merchants (name, metadata) VALUES ('Upgrade Tea', '{"plan": "gold"}');
UPDATE payments.merchants SET metadata = '{"plan": "platinum"}' WHERE name = 'Upgrade Tea';

-- gateway configuration of both merchants; a TRUNCATE writes its own audit row
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, endpoint_url)
	SELECT merchant_id, 'first' || merchant_id, 'key' || merchant_id, 'https://127.0.0.1:9/xml/v1/request.api'
	FROM payments.merchants;
TRUNCATE payments.gateway_config;
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, signature_key,
	endpoint_url, ca_file, timeout_ms)
	SELECT merchant_id, 'login' || merchant_id, 'txkey' || merchant_id, repeat('AB', 64),
		'https://127.0.0.1:9/xml/v1/request.api', '/nonexistent/ca.pem', 5000 + merchant_id
	FROM payments.merchants;

DO $$
DECLARE
	m record;
	s record;
	cur text;
	n int := 0;
	pid bigint;
	op bigint;
	step text;
	amt text;
	part text;
BEGIN
	FOR m IN SELECT merchant_id FROM payments.merchants ORDER BY merchant_id LOOP
		cur := CASE WHEN m.merchant_id = 1 THEN 'USD' ELSE 'JPY' END;
		-- a payment in every status, with its own gateway operation
		FOR s IN SELECT * FROM pg_temp.status_paths('payment', 'payments.payments', 'pending') LOOP
			n := n + 1;
			amt := CASE cur WHEN 'JPY' THEN (1000 * n)::text ELSE n || '.25' END || ' ' || cur;
			part := CASE cur WHEN 'JPY' THEN (500 * n)::text ELSE '0.' || n END || ' ' || cur;
			INSERT INTO payments.payments (merchant_id, kind, status, amount, amount_refunded,
				payment_method, card_brand, card_last4, card_exp_month, card_exp_year,
				card_fingerprint, invoice_number, description, order_ref, customer, metadata,
				correlation_id, idempotency_key)
			VALUES (m.merchant_id,
				CASE WHEN 'requires_capture' = ANY (s.path) THEN 'authorize' ELSE 'purchase' END,
				s.path[1], amt::payments.pay_amount, ('0 ' || cur)::payments.pay_amount, 'card', 'visa', '1111',
				12, 2031, md5('card' || n), 'UPG' || m.merchant_id || '-' || n,
				'upgrade test: ' || s.status, 'order-' || n, jsonb_build_object('email', 'c' || n || '@example.com'),
				jsonb_build_object('target', s.status, 'path', s.path), 'corr-' || n, 'idem-' || n)
			RETURNING payment_id INTO pid;
			INSERT INTO payments.operations (merchant_id, payment_id, kind, amount, idempotency_key, correlation_id)
			SELECT m.merchant_id, pid, p.kind, p.amount, 'idem-' || n, 'corr-' || n
			FROM payments.payments p WHERE p.merchant_id = m.merchant_id AND p.payment_id = pid
			RETURNING operation_id INTO op;
			INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash,
				payment_id, operation_id)
			SELECT m.merchant_id, 'idem-' || n, p.kind, md5('request' || n), pid, op
			FROM payments.payments p WHERE p.merchant_id = m.merchant_id AND p.payment_id = pid;
			IF s.status = 'pending' THEN
				-- still on its way: the card waits sealed (a stand-in: no real card)
				INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
				VALUES (m.merchant_id, op, decode(md5('sealed' || n), 'hex'));
			ELSE
				PERFORM pg_temp.walk_operation(m.merchant_id, op, (SELECT path FROM
					pg_temp.status_paths('operation', 'payments.operations', 'queued') WHERE status = 'succeeded'));
			END IF;
			FOREACH step IN ARRAY s.path[2:] LOOP
				UPDATE payments.payments p SET status = step,
					amount_authorized = CASE WHEN step = 'requires_capture' THEN p.amount ELSE p.amount_authorized END,
					amount_captured = CASE WHEN step = 'succeeded' THEN p.amount ELSE p.amount_captured END,
					amount_refunded = CASE step WHEN 'refunded' THEN p.amount WHEN 'partially_refunded'
						THEN part::payments.pay_amount ELSE p.amount_refunded END,
					gateway_trans_id = coalesce(p.gateway_trans_id, '4000' || p.payment_id),
					auth_code = CASE WHEN step IN ('requires_capture', 'succeeded') THEN 'A1B2C3' ELSE p.auth_code END,
					avs_result = 'Y', cvv_result = 'M',
					decline_code = CASE WHEN step = 'failed' THEN '2' ELSE p.decline_code END,
					decline_reason = CASE WHEN step = 'failed' THEN 'This transaction has been declined.' ELSE p.decline_reason END,
					settled_at = CASE WHEN step IN ('refunded', 'partially_refunded') THEN now() ELSE p.settled_at END
				WHERE p.merchant_id = m.merchant_id AND p.payment_id = pid;
			END LOOP;
		END LOOP;

		-- an operation in every status: refunds of the merchant's refunded payment
		SELECT p.payment_id INTO pid FROM payments.payments p
		WHERE p.merchant_id = m.merchant_id AND p.status = 'refunded' ORDER BY p.payment_id LIMIT 1;
		FOR s IN SELECT * FROM pg_temp.status_paths('operation', 'payments.operations', 'queued') LOOP
			INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, reason,
				via_void, correlation_id)
			VALUES (m.merchant_id, pid, 'refund', s.path[1], ('1 ' || cur)::payments.pay_amount,
				'refund ending ' || s.status, s.status = 'canceled', 'corr-refund-' || s.status)
			RETURNING operation_id INTO op;
			PERFORM pg_temp.walk_operation(m.merchant_id, op, s.path);
		END LOOP;
	END LOOP;
END
$$;

-- every exchange with the gateway of operations that were sent, and one
-- that never reached it
INSERT INTO payments.gateway_exchanges (merchant_id, operation_id, attempt, request_type, started_at,
	finished_at, duration_ms, http_status, outcome, request_masked, response_masked, correlation_id)
SELECT merchant_id, operation_id, attempts, 'createTransactionRequest', now() - interval '2 seconds',
	now() - interval '1 second', 1000.5, 200, status,
	'{"createTransactionRequest": {"payment": {"creditCard": {"cardNumber": "XXXX1111"}}}}',
	'{"messages": {"resultCode": "Ok"}}', correlation_id
FROM payments.operations WHERE attempts > 0 ORDER BY merchant_id, operation_id;
INSERT INTO payments.gateway_exchanges (merchant_id, attempt, request_type, started_at, finished_at,
	duration_ms, transport_error, outcome, request_masked)
VALUES (2, 1, 'getTransactionDetailsRequest', now(), now(), 0.25, 'Connection refused', 'not_sent',
	'{"getTransactionDetailsRequest": {"transId": "40001"}}');

-- idempotency keys: changed and deleted ones too (audit UPDATE and DELETE)
INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash)
VALUES (1, 'discarded', 'purchase', md5('discarded')), (2, 'changed', 'refund', md5('changed'));
DELETE FROM payments.idempotency_keys WHERE idempotency_key = 'discarded';
UPDATE payments.idempotency_keys SET request_hash = md5('changed again') WHERE idempotency_key = 'changed';

-- the user's own table, with the extension's type and its operator class
CREATE TABLE public.upgrade_orders (id int PRIMARY KEY, total payments.pay_amount NOT NULL, note text);
SET client_min_messages = warning;
SELECT payments.pay_audit_attach('public.upgrade_orders') AS attached \gset
RESET client_min_messages;
INSERT INTO public.upgrade_orders VALUES (1, '12.34 USD', 'first'), (2, '-92233720368547758.08 USD', 'min'),
	(3, '1000 JPY', 'yen'), (4, '1.234 KWD', 'fils');
CREATE INDEX upgrade_orders_total ON public.upgrade_orders (total);

-- sealed audit batches, and rows written after the last seal
SELECT payments.pay_audit_seal() AS seals \gset
UPDATE payments.merchants SET metadata = '{"plan": "gold", "sealed": true}' WHERE name = 'Upgrade Tea';

-- What the fill did not reach: a status of a CHECK without a row in it, an
-- extension table without rows, an audited table without audit rows.  The
-- test expects no output.
CREATE FUNCTION pg_temp.not_filled() RETURNS SETOF text
	LANGUAGE plpgsql AS $$
DECLARE
	t regclass;
	filled boolean;
BEGIN
	RETURN QUERY SELECT 'no payment in status ' || s FROM pg_temp.check_statuses('payments.payments') s
		WHERE NOT EXISTS (SELECT 1 FROM payments.payments p WHERE p.status = s) ORDER BY s;
	RETURN QUERY SELECT 'no operation in status ' || s FROM pg_temp.check_statuses('payments.operations') s
		WHERE NOT EXISTS (SELECT 1 FROM payments.operations o WHERE o.status = s) ORDER BY s;
	FOR t IN SELECT c.oid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
		WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
			AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'payments')
			AND c.relkind IN ('r', 'p')
		ORDER BY c.relname
	LOOP
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', t) INTO filled;
		IF NOT filled THEN
			RETURN NEXT format('no rows in %s', t);
		END IF;
	END LOOP;
	RETURN QUERY SELECT DISTINCT format('no audit rows of %s', tg.tgrelid::regclass)
		FROM pg_catalog.pg_trigger tg
		WHERE tg.tgfoid = 'payments._audit_trigger'::regproc
			AND NOT EXISTS (SELECT 1 FROM payments.audit_log a JOIN pg_catalog.pg_class c
				ON c.relname = a.table_name AND c.relnamespace::regnamespace::text = a.table_schema
				WHERE c.oid = tg.tgrelid);
END
$$;
SELECT * FROM pg_temp.not_filled();
