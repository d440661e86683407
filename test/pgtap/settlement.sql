-- Settlement, refund decisions and held payments, as the worker records
-- them (the SQL half; the flows through the worker and the simulator are in
-- test/integration/settlement_refunds.sh).
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(26);

-- Payments as the worker leaves them: captured (two), held for review (two).
CREATE FUNCTION pg_temp.payment(inv text, kind text, status text, trans text, settled timestamptz DEFAULT NULL)
	RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO payments.payments (merchant_id, kind, status, amount, amount_authorized, amount_captured,
		amount_refunded, payment_method, customer_profile_id, payment_profile_id, invoice_number,
		correlation_id, gateway_trans_id, settled_at)
	VALUES (1, kind, 'pending', '10.00 USD', NULL, NULL, '0.00 USD', 'profile', '1', '2', inv, 'tap-settle',
		trans, settled)
	RETURNING payment_id $$;
CREATE FUNCTION pg_temp.move(pid bigint, status text) RETURNS void LANGUAGE sql AS $$
	UPDATE payments.payments SET status = move.status,
		amount_authorized = CASE WHEN move.status <> 'in_review' THEN amount END,
		amount_captured = CASE WHEN move.status = 'succeeded' THEN amount END
	WHERE merchant_id = 1 AND payment_id = pid $$;
CREATE FUNCTION pg_temp.refund_op(pid bigint, amount text, status text) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, correlation_id)
	VALUES (1, pid, 'refund', status, amount::payments.pay_amount, 'tap-settle')
	RETURNING operation_id $$;
CREATE TEMP TABLE ids (name text PRIMARY KEY, id bigint);
-- (the checks are made for merchants with a gateway; no worker serves this database)
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, endpoint_url)
VALUES (1, 'tap', 'tap', 'https://127.0.0.1:9/') ON CONFLICT DO NOTHING;
INSERT INTO ids VALUES ('a', pg_temp.payment('TAPST-A', 'purchase', 'pending', '70001')),
	('b', pg_temp.payment('TAPST-B', 'purchase', 'pending', '70002')),
	('h1', pg_temp.payment('TAPST-H1', 'authorize', 'pending', '70003')),
	('h2', pg_temp.payment('TAPST-H2', 'purchase', 'pending', '70004')),
	('h3', pg_temp.payment('TAPST-H3', 'purchase', 'pending', '70005'));
SELECT pg_temp.move(id, 'succeeded') FROM ids WHERE name IN ('a', 'b');
SELECT pg_temp.move(id, 'in_review') FROM ids WHERE name LIKE 'h%';
CREATE FUNCTION pg_temp.id(n text) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM ids WHERE name = n $$;

-- gateway times
SELECT is(payments._gateway_time('2024-05-01T16:24:54.463Z'), '2024-05-01 16:24:54.463+00'::timestamptz, 'a gateway time with Z');
SELECT is(payments._gateway_time('2024-05-01T16:24:54'), '2024-05-01 16:24:54+00'::timestamptz, 'one without a zone is UTC');
SELECT is(payments._gateway_time('yesterday-ish'), NULL, 'an unreadable one is NULL');

-- the candidates of the settlement check: captured, not known settled
SELECT set_eq($$SELECT gateway_trans_id FROM payments._settlement_candidates(1000) WHERE merchant_id = 1 AND gateway_trans_id LIKE '7000%'$$,
	ARRAY['70001', '70002'], 'captured payments not known settled are candidates of the settlement check');
SELECT set_eq($$SELECT gateway_trans_id FROM payments._review_candidates(1000) WHERE merchant_id = 1 AND gateway_trans_id LIKE '7000%'$$,
	ARRAY['70003', '70004', '70005'], 'payments held for review are candidates of the review check');

-- each merchant's oldest, a bounded number per merchant: one merchant's
-- backlog does not starve the others (before: the first p_limit overall)
CREATE FUNCTION pg_temp.captured(m bigint, trans text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO payments.payments (merchant_id, kind, status, amount, amount_authorized, amount_captured,
		amount_refunded, payment_method, customer_profile_id, payment_profile_id, invoice_number,
		correlation_id, gateway_trans_id)
	VALUES (m, 'purchase', 'pending', '10.00 USD', NULL, NULL, '0.00 USD', 'profile', '1', '2', 'TAPST-' || trans,
		'tap-settle', trans);
	UPDATE payments.payments SET status = 'succeeded', amount_authorized = amount, amount_captured = amount
	WHERE merchant_id = m AND gateway_trans_id = trans $$;
WITH m AS (INSERT INTO payments.merchants (name) VALUES ('tap-settle-2'), ('tap-settle-3') RETURNING merchant_id)
INSERT INTO ids SELECT 'm' || (1 + row_number() OVER (ORDER BY merchant_id)), merchant_id FROM m;
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, endpoint_url)
SELECT id, 'tap', 'tap', 'https://127.0.0.1:9/' FROM ids WHERE name IN ('m2', 'm3');
SELECT pg_temp.captured(pg_temp.id('m2'), t) FROM unnest(ARRAY['80001', '80002']) t;
SELECT pg_temp.captured(pg_temp.id('m3'), '90001');
SELECT set_eq(format($$SELECT merchant_id FROM payments._settlement_candidates(1) WHERE merchant_id IN (%s, %s)$$,
		pg_temp.id('m2'), pg_temp.id('m3')),
	ARRAY[pg_temp.id('m2'), pg_temp.id('m3')], 'the settlement check takes each merchant''s oldest, up to its limit each');

-- a refund's decision: as a void, or waiting for settlement
INSERT INTO ids VALUES ('r1', pg_temp.refund_op(pg_temp.id('a'), '10.00 USD', 'queued')),
	('r2', pg_temp.refund_op(pg_temp.id('b'), '3.00 USD', 'queued'));
UPDATE payments.operations SET status = 'sending', attempts = 1, first_sent_at = now()
WHERE merchant_id = 1 AND operation_id IN (pg_temp.id('r1'), pg_temp.id('r2'));
SELECT payments._record_refund_decision(1, pg_temp.id('r1'), 'void', NULL);
SELECT payments._record_refund_decision(1, pg_temp.id('r2'), 'wait', 'not settled yet');
SELECT is((SELECT status || '|' || via_void || '|' || (first_sent_at IS NULL) FROM payments.operations WHERE merchant_id = 1 AND operation_id = pg_temp.id('r1')),
	'queued|true|true', 'a full refund of an unsettled capture is queued again as a void, its duplicate window not started');
SELECT is((SELECT status || '|' || via_void || '|' || last_error || '|' || attempts FROM payments.operations WHERE merchant_id = 1 AND operation_id = pg_temp.id('r2')),
	'waiting_settlement|false|not settled yet|0', 'a partial one waits for settlement (not an attempt)');
SELECT is(payments._recheck_waiting_refunds(), 0, 'it is not asked about again at once');
UPDATE payments.operations SET next_attempt_at = now() - interval '1 second' WHERE merchant_id = 1 AND operation_id = pg_temp.id('r2');
SELECT is(payments._recheck_waiting_refunds(), 1, 'after six hours it is queued, to ask the gateway again');
UPDATE payments.operations SET status = 'sending' WHERE merchant_id = 1 AND operation_id = pg_temp.id('r2');
SELECT payments._record_refund_decision(1, pg_temp.id('r2'), 'wait', 'not settled yet');
SELECT throws_ok(format('SELECT payments._record_refund_decision(1, %s, %L, NULL)', pg_temp.id('r1'), 'maybe'),
	'22023', NULL, 'a decision the worker does not make is refused');
SELECT is((SELECT array_agg(event_type ORDER BY event_id) FROM payments.events WHERE operation_id = pg_temp.id('r2')),
	ARRAY['operation.queued', 'operation.sending', 'operation.waiting_settlement', 'operation.queued',
		'operation.sending', 'operation.waiting_settlement'], 'each step wrote its event');

-- settlement learned: settled_at and the batch, and the waiting refund goes out
SELECT is(payments._record_settlements(1, ARRAY['70002', '70001', '99999'], ARRAY['B7', 'B7', 'B7'],
	ARRAY['2024-05-01T16:00:00Z', '2024-05-01T16:00:00Z', '2024-05-01T16:00:00Z']), 2,
	'two of our captures learned settled (a stranger''s transaction is ignored)');
SELECT is((SELECT (settled_at = '2024-05-01 16:00:00+00') || '|' || settlement_batch_id FROM payments.payments WHERE merchant_id = 1 AND payment_id = pg_temp.id('b')),
	'true|B7', 'settled_at is the batch''s settlement time, with the batch id');
SELECT is((SELECT status FROM payments.operations WHERE merchant_id = 1 AND operation_id = pg_temp.id('r2')),
	'queued', 'the refund that waited is released');
SELECT is(payments._record_settlements(1, ARRAY['70002'], ARRAY['B8'], ARRAY[NULL]), 0, 'a settlement is learned once');
SELECT is((SELECT count(*) FROM payments._settlement_candidates(1000) WHERE merchant_id = 1 AND gateway_trans_id LIKE '7000%'),
	0::bigint, 'settled payments are no longer candidates');
SELECT throws_ok(format('SELECT pay_void(payment_id => %s)', pg_temp.id('b')), '22Y20',
	format('cannot void payment %s in status succeeded: it has settled', pg_temp.id('b')),
	'a payment known settled cannot be voided (22Y20)');

-- held for review, resolved from the gateway's state
SELECT is(payments._resolve_review(1, pg_temp.id('h1'), 'FDSPendingReview', 'under_review', 4, 252, NULL, NULL), NULL,
	'still under review: nothing changes');
SELECT is(payments._resolve_review(1, pg_temp.id('h1'), 'authorizedPendingCapture', 'pending_capture', 1, 1, 'Approval', 'A1B2C3'),
	'requires_capture', 'an authorization approved after review requires capture');
SELECT is((SELECT amount_authorized::text || '|' || auth_code FROM payments.payments WHERE merchant_id = 1 AND payment_id = pg_temp.id('h1')),
	'10.00 USD|A1B2C3', 'with its amount authorized and auth code');
SELECT is(payments._resolve_review(1, pg_temp.id('h2'), 'declined', 'declined', 2, 254, 'This transaction has been declined.', NULL),
	'failed', 'a purchase declined after review fails');
SELECT is((SELECT decline_code || '|' || decline_reason FROM payments.payments WHERE merchant_id = 1 AND payment_id = pg_temp.id('h2')),
	'254|This transaction has been declined.', 'with the gateway''s code and reason');

-- a refund that ran out of attempts still counts against what is left to
-- refund (a retry may make it), and the error says so, and what to do
INSERT INTO ids VALUES ('d', pg_temp.payment('TAPST-D', 'purchase', 'pending', '70006'));
SELECT pg_temp.move(pg_temp.id('d'), 'succeeded');
INSERT INTO ids VALUES ('rd', pg_temp.refund_op(pg_temp.id('d'), '4.00 USD', 'queued'));
UPDATE payments.operations SET status = 'dead' WHERE merchant_id = 1 AND operation_id = pg_temp.id('rd');
CREATE FUNCTION pg_temp.refund_error(pid bigint, amount text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	state text;
	detail text;
BEGIN
	PERFORM set_config('payments.merchant_id', '1', true);
	PERFORM payments.pay_refund(payment_id => pid, amount => amount::payments.pay_amount);
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
	RETURN state || ': ' || detail;
END $$;
SELECT is(pg_temp.refund_error(pg_temp.id('d'), '7.00 USD'),
	'22Y21: 10.00 USD was captured and 4.00 USD is refunded or being refunded. 4.00 USD of it is in refunds that ran out of attempts (dead letters), which the owner sends again with pay_retry_dead_letter or settles with pay_resolve_dead_letter.',
	'a refund beyond what is left names the dead letters counted in it');

-- The gateway account the claim records for every operation (and the
-- settlement check compares for every payment it looks at) is computed in
-- the calling statement, not by a statement of its own per row: declared
-- IMMUTABLE over convert_to (STABLE), it was never inlined.
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	line text;
	plan text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
		plan := plan || line || E'\n';
	END LOOP;
	RETURN plan;
END $$;
SELECT ok(pg_temp.plan_of('SELECT payments._gateway_account(g.api_login_id) FROM payments.gateway_config g')
		LIKE '%sha256(convert_to(api_login_id%',
	'_gateway_account is inlined into the statement that calls it');
SELECT is(payments._gateway_account('abc'), 'ba7816bf8f01cfea',
	'_gateway_account: the first 16 hex digits of the login''s SHA-256');

SELECT * FROM finish();
ROLLBACK;
