-- The status machines: payments.operation_outcomes is the one statement of
-- what each gateway outcome does, and everything it says is a transition
-- that payments.status_transitions allows; the worker's functions follow it.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(32);

SELECT set_eq($$SELECT operation_kind, outcome FROM payments.operation_outcomes$$,
	$$SELECT k, o FROM unnest(ARRAY['purchase', 'authorize', 'capture', 'void', 'refund']) k,
		unnest(ARRAY['approved', 'held', 'declined', 'error', 'rejected', 'retry', 'unknown']) o
	  UNION ALL
	  -- a capture whose authorization expired at the gateway
	  SELECT 'capture', 'expired'
	  UNION ALL
	  -- stored payment methods' profile calls are never held for review
	  SELECT k, o FROM unnest(ARRAY['save_method', 'delete_method', 'delete_customer']) k,
		unnest(ARRAY['approved', 'declined', 'error', 'rejected', 'retry', 'unknown']) o$$,
	'every operation kind has exactly one row for every outcome the worker hands over');
SELECT is_empty($$SELECT operation_kind, outcome, operation_status FROM payments.operation_outcomes t
	WHERE NOT EXISTS (SELECT 1 FROM payments.status_transitions s WHERE s.entity = 'operation'
		AND s.from_status = 'sending' AND s.to_status = t.operation_status)$$,
	'each outcome moves a sending operation along an allowed transition');
SELECT is_empty($$SELECT operation_kind, outcome FROM payments.operation_outcomes t
	WHERE t.operation_status NOT IN ('succeeded', 'failed', 'in_review')
		AND NOT EXISTS (SELECT 1 FROM payments.status_transitions s WHERE s.entity = 'operation'
			AND s.from_status = 'sending' AND s.to_status = 'dead')$$,
	'an operation out of attempts may go to dead instead');
-- the payment's status before an outcome: pending for the first operation
-- (unknown once it was), requires_capture for a capture or a void of an
-- authorization, succeeded or partially_refunded for a refund or a void
SELECT is_empty($$SELECT t.operation_kind, t.outcome, f.from_status, t.payment_status
	FROM payments.operation_outcomes t
	CROSS JOIN LATERAL unnest(CASE
		WHEN t.payment_status_from IS NOT NULL THEN ARRAY[t.payment_status_from]
		WHEN t.operation_kind IN ('purchase', 'authorize') THEN ARRAY['pending', 'unknown']
		WHEN t.operation_kind = 'capture' THEN ARRAY['requires_capture']
		WHEN t.operation_kind = 'void' THEN ARRAY['requires_capture', 'succeeded']
		ELSE ARRAY['succeeded', 'partially_refunded'] END) AS f(from_status)
	CROSS JOIN LATERAL unnest(CASE WHEN t.payment_status = 'refunded'
		THEN ARRAY['refunded', 'partially_refunded'] ELSE ARRAY[t.payment_status] END) AS n(to_status)
	WHERE t.payment_status IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM payments.status_transitions s WHERE s.entity = 'payment'
			AND s.from_status = f.from_status AND s.to_status = n.to_status)$$,
	'each payment status an outcome sets is reached by an allowed transition');
SELECT is_empty($$SELECT operation_kind, outcome FROM payments.operation_outcomes
	WHERE outcome = 'approved' AND operation_status <> 'succeeded'
		OR outcome = 'held' AND operation_status <> CASE operation_kind WHEN 'refund' THEN 'in_review'
			ELSE 'succeeded' END
		OR outcome IN ('declined', 'error', 'rejected', 'expired') AND operation_status <> 'failed'
		OR outcome = 'retry' AND (operation_status <> 'queued' OR payment_status IS NOT NULL)$$,
	'final answers end the operation (a refund held for review waits in_review); a retry queues it and leaves the payment alone');
SELECT is((SELECT payment_status FROM payments.operation_outcomes
	WHERE operation_kind = 'refund' AND outcome = 'held'), NULL,
	'a refund held for review leaves the payment as it was');
SELECT set_eq($$SELECT to_status FROM payments.status_transitions
	WHERE entity = 'operation' AND from_status = 'in_review'$$,
	$$VALUES ('succeeded'), ('failed')$$,
	'a refund held for review ends succeeded (approved) or failed');

-- The worker's step 3 follows the table: an authorization approved, then
-- a capture approved, through payments._record_result as the worker calls it.
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id)
VALUES (1, 'authorize', '10.00 USD', '0.00 USD', 'profile', 'TAPSM1', 'tap-sm');
INSERT INTO payments.operations (merchant_id, payment_id, kind, status, correlation_id)
SELECT 1, payment_id, 'authorize', 'queued', 'tap-sm' FROM payments.payments WHERE invoice_number = 'TAPSM1';
UPDATE payments.operations SET status = 'sending', attempts = 1
WHERE correlation_id = 'tap-sm';
SELECT payments._record_result(1, o.operation_id, 'approved', 1, 1, 'This transaction has been approved.',
	'60001', 'AUTH01', 'Y', 'M', NULL, NULL, NULL)
FROM payments.operations o WHERE o.correlation_id = 'tap-sm';
SELECT results_eq($$SELECT p.status, o.status FROM payments.payments p
	JOIN payments.operations o USING (merchant_id, payment_id) WHERE p.invoice_number = 'TAPSM1'$$,
	$$SELECT t.payment_status, t.operation_status FROM payments.operation_outcomes t
	WHERE t.operation_kind = 'authorize' AND t.outcome = 'approved'$$,
	'an approved authorization takes the statuses the table gives');
INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, correlation_id)
SELECT 1, payment_id, 'capture', 'queued', '10.00 USD', 'tap-sm-cap' FROM payments.payments WHERE invoice_number = 'TAPSM1';
UPDATE payments.operations SET status = 'sending', attempts = 1 WHERE correlation_id = 'tap-sm-cap';
SELECT throws_ok($$SELECT payments._record_result(1, o.operation_id, 'maybe', NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL) FROM payments.operations o WHERE o.correlation_id = 'tap-sm-cap'$$,
	'22023', NULL, 'an outcome the table does not know is refused');
SELECT payments._record_result(1, o.operation_id, 'approved', 1, 1, 'This transaction has been approved.',
	'60001', NULL, NULL, NULL, NULL, NULL, NULL)
FROM payments.operations o WHERE o.correlation_id = 'tap-sm-cap';
SELECT results_eq($$SELECT p.status, p.amount_captured::text FROM payments.payments p WHERE p.invoice_number = 'TAPSM1'$$,
	$$VALUES ('succeeded', '10.00 USD')$$,
	'an approved capture takes the table''s payment status and the captured amount');
-- a capture whose authorization expired cancels the payment, nothing captured
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id, status, gateway_trans_id)
VALUES (1, 'authorize', '20.00 USD', '0.00 USD', 'profile', 'TAPSMX', 'tap-smx', 'pending', '60002');
UPDATE payments.payments SET status = 'requires_capture', amount_authorized = amount WHERE invoice_number = 'TAPSMX';
INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, correlation_id)
SELECT 1, payment_id, 'capture', 'queued', '20.00 USD', 'tap-smx' FROM payments.payments WHERE invoice_number = 'TAPSMX';
UPDATE payments.operations SET status = 'sending', attempts = 1 WHERE correlation_id = 'tap-smx';
SELECT payments._record_result(1, o.operation_id, 'expired', 3, 16, 'The transaction cannot be found.',
	'0', NULL, NULL, NULL, NULL, 'the authorization expired', NULL)
FROM payments.operations o WHERE o.correlation_id = 'tap-smx';
SELECT results_eq($$SELECT p.status, coalesce(p.amount_captured::text, 'none'), o.status
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSMX'$$,
	$$VALUES ('canceled', 'none', 'failed')$$,
	'a capture whose authorization expired fails and cancels the payment with nothing captured');

-- A refund held for review: in_review, nothing refunded; the review check
-- (_resolve_refund_review) counts it once when the gateway approves it,
-- and nothing when it declines it.
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id, gateway_trans_id)
VALUES (1, 'purchase', '30.00 USD', '0.00 USD', 'profile', 'TAPSMRF', 'tap-smrf', '60003');
UPDATE payments.payments SET status = 'succeeded', amount_authorized = amount, amount_captured = amount
WHERE invoice_number = 'TAPSMRF';
INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, correlation_id)
SELECT 1, payment_id, 'refund', 'queued', a::payments.pay_amount, 'tap-smrf-' || n
FROM payments.payments, (VALUES (1, '10.00 USD'), (2, '20.00 USD')) v(n, a)
WHERE invoice_number = 'TAPSMRF';
UPDATE payments.operations SET status = 'sending', attempts = 1 WHERE correlation_id LIKE 'tap-smrf-%';
SELECT payments._record_result(1, o.operation_id, 'held', 4, 252,
	'Your order has been received. Thank you for your business!', (60003 + n)::text, NULL, NULL, NULL,
	NULL, NULL, 'XXXX1111')
FROM payments.operations o, (VALUES (1), (2)) v(n) WHERE o.correlation_id = 'tap-smrf-' || n;
SELECT results_eq($$SELECT p.status, p.amount_refunded::text, string_agg(o.status, ',' ORDER BY o.operation_id),
		bool_and(o.completed_at IS NULL)
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSMRF' GROUP BY 1, 2$$,
	$$VALUES ('succeeded', '0.00 USD', 'in_review,in_review', true)$$,
	'refunds held for review are in_review, not completed, and nothing is refunded');
CREATE FUNCTION pg_temp.smrf_review(n integer, status text, class text, rc integer, reason integer,
	reason_text text) RETURNS text LANGUAGE sql AS $$
	SELECT payments._resolve_refund_review(1, o.operation_id, $2, $3, $4, $5, $6)
	FROM payments.operations o WHERE o.correlation_id = 'tap-smrf-' || $1
	$$;
SELECT is(ARRAY[pg_temp.smrf_review(1, 'FDSPendingReview', 'under_review', 4, 252, NULL),
		pg_temp.smrf_review(1, 'refundPendingSettlement', 'pending_settlement', 1, 1, 'This transaction has been approved.'),
		pg_temp.smrf_review(2, 'declined', 'declined', 2, 254, 'This transaction has been declined.'),
		pg_temp.smrf_review(1, 'refundSettledSuccessfully', 'settled', 1, 1, 'This transaction has been approved.'),
		pg_temp.smrf_review(2, 'voided', 'voided', 1, 1, NULL)],
	ARRAY[NULL, 'succeeded', 'failed', NULL, NULL],
	'the review check: still held changes nothing, approved succeeds, declined fails, asked again changes nothing');
SELECT results_eq($$SELECT p.status, p.amount_refunded::text, string_agg(o.status || ' ' || o.reason_code, ',' ORDER BY o.operation_id)
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSMRF' GROUP BY 1, 2$$,
	$$VALUES ('partially_refunded', '10.00 USD', 'succeeded 1,failed 254')$$,
	'the approved refund is counted once, the declined one not at all');
SELECT is((SELECT string_agg(e.event_type, ',' ORDER BY e.event_id) FROM payments.events e
	JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSMRF' AND e.event_type LIKE 'payment.%'),
	'payment.pending,payment.succeeded,payment.partially_refunded',
	'with one payment event');

-- The status trigger (C, src/status_guard.c) as the PL/pgSQL it replaced
-- behaved: the event's data, the updated_at stamp, the refusal's message;
-- and neither the caller's search_path nor its plan_cache_mode changes it.
SELECT is((SELECT array_agg(k ORDER BY k) FROM payments.events e, jsonb_object_keys(e.data) k
	WHERE e.correlation_id = 'tap-sm' AND e.event_type = 'payment.pending'),
	ARRAY['amount', 'amount_captured', 'amount_refunded', 'card_brand', 'card_last4', 'decline_code',
		'decline_reason', 'gateway_trans_id', 'invoice_number', 'kind', 'metadata', 'payment_id', 'status'],
	'a payment event carries the payment''s fields');
-- (metadata with nested values and characters JSON escapes: the event's
-- data embeds it as jsonb_build_object does)
UPDATE payments.payments SET description = 'touched',
	metadata = '{"b": [1, "two", {"c": null, "d": false}], "a": "quote \" back \\ tab \t é", "n": 1.50, "e": {}}'
WHERE invoice_number = 'TAPSM1';
SELECT ok((SELECT updated_at > now() FROM payments.payments WHERE invoice_number = 'TAPSM1'),
	'an update stamps updated_at with the clock');
SELECT throws_ok($$UPDATE payments.payments SET status = 'pending' WHERE invoice_number = 'TAPSM1'$$,
	'22Y20', 'invalid payment status transition from succeeded to pending',
	'a transition the table does not list is refused with its entity and statuses');
-- the backend keeps the transitions (src/status_guard.c): one added in
-- this transaction is allowed at once, and refused again once removed
INSERT INTO payments.status_transitions VALUES ('payment', 'succeeded', 'in_review');
UPDATE payments.payments SET status = 'in_review' WHERE invoice_number = 'TAPSM1';
SELECT is((SELECT status FROM payments.payments WHERE invoice_number = 'TAPSM1'), 'in_review',
	'a transition added in the transaction is allowed at once');
UPDATE payments.payments SET status = 'succeeded' WHERE invoice_number = 'TAPSM1';
DELETE FROM payments.status_transitions WHERE entity = 'payment' AND from_status = 'succeeded'
	AND to_status = 'in_review';
SELECT throws_ok($$UPDATE payments.payments SET status = 'in_review' WHERE invoice_number = 'TAPSM1'$$,
	'22Y20', 'invalid payment status transition from succeeded to in_review',
	'and refused again once it is removed');
SET LOCAL search_path = '';
SET LOCAL plan_cache_mode = force_custom_plan;
UPDATE payments.payments SET status = 'refunded' WHERE invoice_number = 'TAPSM1';
CREATE TEMP TABLE sm_probe AS
SELECT (SELECT pg_catalog.string_agg(e.event_type, ',' ORDER BY e.event_id) FROM payments.events e
	WHERE e.payment_id = (SELECT p.payment_id FROM payments.payments p WHERE p.invoice_number = 'TAPSM1')
		AND e.event_type OPERATOR(pg_catalog.~~) 'payment.%') AS events,
	pg_catalog.current_setting('plan_cache_mode') AS mode;
RESET search_path;
RESET plan_cache_mode;
SELECT is((SELECT events FROM sm_probe),
	'payment.pending,payment.requires_capture,payment.succeeded,payment.in_review,payment.succeeded,payment.refunded',
	'with an empty search_path the trigger still writes its event');
SELECT is((SELECT mode FROM sm_probe), 'force_custom_plan',
	'the caller''s plan_cache_mode is as it was after the trigger ran');

-- The event is written without an executor (src/direct_insert.c) when the
-- role may write payments.events as an INSERT would, through SPI under the
-- role's privileges and row security otherwise: both write what the SQL
-- of the PL/pgSQL trigger wrote, the data as jsonb_build_object makes it,
-- event_id from the identity, created_at the transaction's now().
CREATE TEMP VIEW sm_expected AS
SELECT p.invoice_number, p.payment_id, pg_catalog.jsonb_build_object('payment_id', p.payment_id,
		'kind', p.kind, 'status', p.status, 'amount', p.amount, 'amount_captured', p.amount_captured,
		'amount_refunded', p.amount_refunded, 'card_brand', p.card_brand, 'card_last4', p.card_last4,
		'invoice_number', p.invoice_number, 'gateway_trans_id', p.gateway_trans_id,
		'decline_code', p.decline_code, 'decline_reason', p.decline_reason, 'metadata', p.metadata) AS data
FROM payments.payments p WHERE p.invoice_number LIKE 'TAPSM_';
SELECT is((SELECT e.data FROM payments.events e JOIN sm_expected x USING (payment_id)
	WHERE x.invoice_number = 'TAPSM1' AND e.event_type = 'payment.refunded'),
	(SELECT data FROM sm_expected WHERE invoice_number = 'TAPSM1'),
	'the direct path writes the data jsonb_build_object makes of the row');
SELECT ok((SELECT e.created_at = now() AND e.event_id > (SELECT max(f.event_id) FROM payments.events f
		WHERE f.event_type = 'payment.succeeded' AND f.payment_id = e.payment_id)
	FROM payments.events e JOIN sm_expected x USING (payment_id)
	WHERE x.invoice_number = 'TAPSM1' AND e.event_type = 'payment.refunded'),
	'and fills event_id from the identity and created_at with now()');
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id)
VALUES (1, 'purchase', '11.00 USD', '0.00 USD', 'profile', 'TAPSM2', 'tap-sm2'),
	(1, 'purchase', '12.00 USD', '0.00 USD', 'profile', 'TAPSM3', 'tap-sm3');
CREATE ROLE tap_sm_editor NOLOGIN BYPASSRLS;
-- bound to the payments' merchant: an audited change by a role that acts
-- for no merchant is refused
SELECT payments.pay_bind_role('tap_sm_editor', merchant_id => 1, grant_api => false);
GRANT USAGE ON SCHEMA payments TO tap_sm_editor;
GRANT SELECT, UPDATE ON payments.payments TO tap_sm_editor;
GRANT INSERT ON payments.events TO tap_sm_editor;
SET LOCAL ROLE tap_sm_editor;
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM2';
RESET ROLE;
SELECT is((SELECT e.data FROM payments.events e JOIN sm_expected x USING (payment_id)
	WHERE x.invoice_number = 'TAPSM2' AND e.event_type = 'payment.canceled'),
	(SELECT data FROM sm_expected WHERE invoice_number = 'TAPSM2'),
	'a role that does not own payments.events writes the same event through SPI');
-- an operation's event through SPI: its payment_id and operation_id columns
INSERT INTO payments.operations (merchant_id, payment_id, kind, status, correlation_id)
SELECT 1, payment_id, 'purchase', 'queued', 'tap-sm3-op' FROM payments.payments WHERE invoice_number = 'TAPSM3';
GRANT SELECT, UPDATE ON payments.operations TO tap_sm_editor;
SET LOCAL ROLE tap_sm_editor;
UPDATE payments.operations SET status = 'canceled' WHERE correlation_id = 'tap-sm3-op';
RESET ROLE;
SELECT ok((SELECT e.payment_id = o.payment_id AND e.data ->> 'operation_id' = o.operation_id::text
	FROM payments.events e JOIN payments.operations o USING (merchant_id, operation_id)
	WHERE o.correlation_id = 'tap-sm3-op' AND e.event_type = 'operation.canceled'),
	'and an operation''s event through SPI, with its operation_id and payment_id');
REVOKE INSERT ON payments.events FROM tap_sm_editor;
SET LOCAL ROLE tap_sm_editor;
SELECT throws_ok($$UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM3'$$,
	'42501', NULL, 'and is refused when it may not insert into payments.events');
RESET ROLE;

-- The events' direct writer follows changes of payments.events made in the
-- transaction: a new column's default, a new index, an INSERT trigger
-- (events then take the SPI path, and the direct path again once it goes).
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id)
SELECT 1, 'purchase', '13.00 USD', '0.00 USD', 'profile', 'TAPSM' || g, 'tap-sm' || g
FROM generate_series(4, 8) g;
ALTER TABLE payments.events ADD COLUMN tap_note text DEFAULT 'tap default';
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM4';
SELECT is((SELECT e.tap_note FROM payments.events e JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSM4' AND e.event_type = 'payment.canceled'), 'tap default',
	'a column added to payments.events gets its default in an event written directly');
CREATE INDEX tap_events_type ON payments.events (event_type, event_id);
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM5';
CREATE TEMP TABLE sm_counts AS SELECT count(*) AS seq FROM payments.events WHERE event_type = 'payment.canceled';
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT is((SELECT count(*) FROM payments.events WHERE event_type = 'payment.canceled'), (SELECT seq FROM sm_counts),
	'an index made on payments.events has the events written after it');
RESET enable_seqscan;
RESET enable_bitmapscan;
CREATE TEMP TABLE sm_seen (event_type text);
CREATE FUNCTION pg_temp.sm_seen() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	INSERT INTO sm_seen VALUES (NEW.event_type);
	RETURN NEW;
END $$;
CREATE TRIGGER tap_sm_seen AFTER INSERT ON payments.events FOR EACH ROW EXECUTE FUNCTION pg_temp.sm_seen();
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM6';
SELECT is((SELECT count(*) FROM sm_seen WHERE event_type = 'payment.canceled'), 1::bigint,
	'an INSERT trigger on payments.events fires for the event');
DROP TRIGGER tap_sm_seen ON payments.events;
DROP INDEX payments.tap_events_type;
ALTER TABLE payments.events DROP COLUMN tap_note;
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM7';
SELECT is((SELECT count(*) FROM payments.events e JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSM7' AND e.event_type = 'payment.canceled'), 1::bigint,
	'and events are written again once the trigger, the index and the column are gone');

-- A cast of pay_amount to json made meanwhile counts from the next event,
-- as in jsonb_build_object (src/jsonb_value.c decides once per column).
CREATE FUNCTION public.tap_sm_amount_json(a payments.pay_amount) RETURNS json LANGUAGE sql IMMUTABLE
	AS $$ SELECT json_build_object('minor', payments.pay_minor_units(a), 'currency', payments.pay_currency(a)) $$;
CREATE CAST (payments.pay_amount AS json) WITH FUNCTION public.tap_sm_amount_json(payments.pay_amount);
UPDATE payments.payments SET status = 'canceled' WHERE invoice_number = 'TAPSM8';
SELECT is((SELECT e.data -> 'amount' FROM payments.events e JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE p.invoice_number = 'TAPSM8' AND e.event_type = 'payment.canceled'),
	'{"minor": 1300, "currency": "USD"}'::jsonb, 'a cast of pay_amount to json made meanwhile is used in the event');
DROP CAST (payments.pay_amount AS json);
DROP FUNCTION public.tap_sm_amount_json(payments.pay_amount);

SELECT * FROM finish();
ROLLBACK;
