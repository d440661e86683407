-- The payment API without a gateway: argument checks, status machines,
-- idempotency, privileges.  (Flows through the worker are in
-- test/integration/payment_flows.sh.)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(53);

-- (a card cannot be stored, not even in a temporary table: a function makes them)
CREATE FUNCTION pg_temp.card() RETURNS payments.pay_card LANGUAGE sql
	AS $$ SELECT payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123') $$;

SELECT throws_ok($$SELECT pay_purchase(amount => '10.00 USD')$$, '22Y22', NULL, 'a purchase needs a payment method');
SELECT throws_ok($$SELECT pay_purchase(amount => '10.00 USD', card => pg_temp.card(),
	opaque_data => '{"dataDescriptor": "x", "dataValue": "y"}')$$, '22Y22', NULL, 'two payment methods are refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '0.00 USD', card => pg_temp.card())$$, '22Y23', NULL, 'a zero amount is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '-5.00 USD', card => pg_temp.card())$$, '22Y23', NULL, 'a negative amount is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => NULL, card => pg_temp.card())$$, '22004', NULL, 'a missing amount is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataValue": 5}')$$, '22Y22', NULL, 'malformed opaque data is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '1')$$, '22Y22', NULL, 'a profile id alone is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '[1]')$$, '22023', NULL, 'customer must be an object');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => repeat('x', 256))$$, '22001', NULL, 'an over-long description is refused');
SELECT throws_ok($$SELECT payments.pay_configure_gateway(api_login_id => 'x', transaction_key => 'y', merchant_id => 987654321)$$,
	'PT404', 'merchant 987654321 does not exist', 'the gateway of a merchant that does not exist is refused (not a foreign key error)');
SELECT throws_ok($$SELECT payments.pay_configure_gateway(api_login_id => 'x', transaction_key => 'y', signature_key => 'SIGKEY-NOT-HEX')$$,
	'22023', 'signature_key must be 128 hexadecimal digits', 'a signature key that is not 128 hex digits is refused');
SELECT throws_ok($$SELECT payments.pay_configure_gateway(api_login_id => 'x', transaction_key => 'y', signature_key => repeat('A', 127))$$,
	'22023', 'signature_key must be 128 hexadecimal digits', 'a signature key one digit short is refused');
SELECT is((SELECT count(*) FROM payments.gateway_config WHERE api_login_id = 'x'), 0::bigint,
	'a refused configuration keeps nothing');

-- a recorded purchase: pending, with its operation, sealed card and events
SELECT lives_ok($$CREATE TEMP TABLE p AS SELECT * FROM pay_purchase(amount => '10.00 USD', card => pg_temp.card(), idempotency_key => 'k1')$$, 'a purchase is recorded');
SELECT is((SELECT status FROM p), 'pending', 'it starts pending');
SELECT is((SELECT invoice_number FROM p), 'P' || payments._invoice_tag() || (SELECT payment_id FROM p),
	'its invoice number is unique per payment, with the installation''s tag');
SELECT matches(payments._invoice_tag(), '^[0-9A-F]{6}$', 'the installation''s invoice tag is six random hex digits');
SELECT is((SELECT count(*) FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id)
	WHERE o.payment_id = (SELECT payment_id FROM p)), 1::bigint, 'the card waits sealed in the vault');
SELECT ok((SELECT position('4111111111111111' IN encode(sealed, 'escape')) = 0 FROM payments.card_vault v
	JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = (SELECT payment_id FROM p)),
	'the vault holds no clear card number');
SELECT lives_ok($$CREATE TEMP TABLE po AS SELECT * FROM pay_purchase(amount => '3.00 USD',
	opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "NONCE-7f3a9c-SECRET"}')$$,
	'a purchase with Accept.js opaque data is recorded');
SELECT ok((SELECT position('NONCE-7f3a9c' IN encode(sealed, 'escape')) = 0 AND substr(sealed, 1, 3) = 'PO2'::bytea
	FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id)
	WHERE o.payment_id = (SELECT payment_id FROM po)),
	'its payment nonce waits sealed in the vault, not in clear');
SELECT is((SELECT array_agg(event_type ORDER BY event_id) FROM payments.events WHERE payment_id = (SELECT payment_id FROM p)),
	ARRAY['payment.pending', 'operation.queued'], 'creating it wrote two events');
SELECT is((SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => pg_temp.card(), idempotency_key => 'k1')),
	(SELECT payment_id FROM p), 'the same key and parameters return the same payment');
SELECT throws_ok($$SELECT pay_purchase(amount => '10.00 USD', card => pg_temp.card(), description => 'other', idempotency_key => 'k1')$$,
	'PT409', NULL, 'the same key with other parameters is a conflict');

-- state rules before the gateway answered
SELECT throws_ok(format('SELECT pay_capture(payment_id => %s)', (SELECT payment_id FROM p)), '22Y20', NULL, 'a purchase cannot be captured');
SELECT throws_ok(format('SELECT pay_refund(payment_id => %s)', (SELECT payment_id FROM p)), '22Y20', NULL, 'a pending payment cannot be refunded');
SELECT throws_ok($$SELECT pay_void(payment_id => -1)$$, 'PT404', NULL, 'an unknown payment is PT404');
-- a NULL id is a missing argument (400), not an unknown payment (404)
SELECT throws_ok($$SELECT pay_capture(payment_id => NULL)$$, '22004', 'payment_id is required', 'a NULL payment id: capture');
SELECT throws_ok($$SELECT pay_void(payment_id => NULL)$$, '22004', 'payment_id is required', 'void');
SELECT throws_ok($$SELECT pay_refund(payment_id => NULL)$$, '22004', 'payment_id is required', 'refund');
SELECT throws_ok($$SELECT pay_wait(payment_id => NULL)$$, '22004', 'payment_id is required', 'wait');
-- a NULL timeout skipped the wait and its checks
SELECT throws_ok(format('SELECT pay_wait(payment_id => %s, timeout => NULL)', (SELECT payment_id FROM p)),
	'22004', 'timeout is required', 'pay_wait refuses a NULL timeout');
SELECT throws_ok(format('UPDATE payments.payments SET status = %L WHERE payment_id = %s', 'refunded', (SELECT payment_id FROM p)),
	'22Y20', NULL, 'the database refuses a transition the status machine does not allow');

-- privileges: API roles see nothing directly
CREATE ROLE tap_api NOLOGIN;
SET LOCAL ROLE tap_api;
SELECT throws_ok($$SELECT * FROM payments.gateway_config$$, '42501', NULL, 'gateway credentials are owner-only');
SELECT throws_ok($$SELECT * FROM payments.card_vault$$, '42501', NULL, 'the card vault is owner-only');
SELECT throws_ok($$SELECT payments._claim_operations(1)$$, '42501', NULL, 'worker functions are not for API roles');
RESET ROLE;

-- a failing gateway connection's merchants' due operations wait for its
-- probe; the merchants of other connections are not touched, a merchant on
-- the same URL with its own timeout neither (the worker calls
-- _park_connection when a circuit opens)
INSERT INTO payments.merchants (name) VALUES ('park dead') RETURNING merchant_id AS dead \gset
INSERT INTO payments.merchants (name) VALUES ('park live') RETURNING merchant_id AS live \gset
INSERT INTO payments.merchants (name) VALUES ('park same url') RETURNING merchant_id AS same \gset
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, endpoint_url, timeout_ms)
VALUES (:dead, 'x', 'y', 'https://dead.example/api', 30000), (:live, 'x', 'y', 'https://live.example/api', 30000),
	(:same, 'x', 'y', 'https://dead.example/api', 5000);
SET payments.merchant_id = :'dead';
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card()) \gset dead_
SET payments.merchant_id = :'live';
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card()) \gset live_
SET payments.merchant_id = :'same';
SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card()) \gset same_
RESET payments.merchant_id;
SELECT is(payments._gateway_connection('https://dead.example/api', NULL, 30000), E'https://dead.example/api\n\n30000',
	'a gateway connection is the endpoint, the CA file and the timeout (the worker writes its key the same way)');
SELECT is(payments._park_connection(payments._gateway_connection('https://dead.example/api', NULL, 30000),
	now() + interval '30 seconds'), 1, '_park_connection parks the one due operation of the merchant on the failing connection');
SELECT is((SELECT next_attempt_at FROM payments.operations WHERE merchant_id = :dead AND payment_id = :dead_payment_id),
	now() + interval '30 seconds', 'it waits until the circuit may be probed');
SELECT ok((SELECT bool_and(next_attempt_at <= now()) FROM payments.operations
	WHERE (merchant_id = :live AND payment_id = :live_payment_id) OR (merchant_id = :same AND payment_id = :same_payment_id)),
	'another endpoint''s merchant is not touched, nor one on the same URL with a timeout of its own');

-- the claim and the circuits: a held connection's merchants are left, the
-- probe of one claims only its merchants, and the gateway configuration is
-- read for the merchants with due operations only (the claim runs every
-- round; its cost must not grow with the merchants configured)
UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = :dead AND payment_id = :dead_payment_id;
INSERT INTO payments.merchants (name) SELECT 'idle ' || g FROM generate_series(1, 40) g;
INSERT INTO payments.gateway_config (merchant_id, api_login_id, transaction_key, endpoint_url, timeout_ms)
SELECT merchant_id, 'x', 'y', 'https://idle.example/api', 30000 FROM payments.merchants WHERE name LIKE 'idle %';
SET LOCAL track_functions = 'all';
CREATE TEMP TABLE conn_calls AS
SELECT coalesce(pg_stat_get_xact_function_calls('payments._gateway_connection(text,text,integer)'::regprocedure), 0) AS n,
	(SELECT count(DISTINCT merchant_id) FROM payments.operations WHERE status IN ('queued', 'unknown') AND next_attempt_at <= now()) AS due;
SELECT is((SELECT array_agg(c.merchant_id ORDER BY c.merchant_id)
		FROM payments._claim_operations(100, p_held_connections => ARRAY[payments._gateway_connection('https://dead.example/api', NULL, 30000)]) c
		WHERE c.merchant_id IN (:dead, :live, :same)),
	ARRAY[:live, :same]::bigint[], 'a held connection''s merchant is left, the others (same URL, own timeout) are claimed');
SELECT ok(coalesce(pg_stat_get_xact_function_calls('payments._gateway_connection(text,text,integer)'::regprocedure), 0)
		- (SELECT n FROM conn_calls) <= 2 * (SELECT due FROM conn_calls),
	'the connections worked out are those of the merchants with due operations only (40 idle merchants configured)');
SELECT is((SELECT array_agg(c.merchant_id ORDER BY c.merchant_id)
		FROM payments._claim_operations(100, p_only_connection => payments._gateway_connection('https://dead.example/api', NULL, 30000)) c),
	ARRAY[:dead]::bigint[], 'the probe of a connection claims only its merchants''');
SET payments.merchant_id = :'live';
SELECT payment_id FROM pay_purchase(amount => '2.00 USD', card => pg_temp.card()) \gset live2_
RESET payments.merchant_id;
UPDATE conn_calls SET n = coalesce(pg_stat_get_xact_function_calls('payments._gateway_connection(text,text,integer)'::regprocedure), 0);
SELECT is((SELECT array_agg(c.payment_id) FROM payments._claim_operations(100) c WHERE c.merchant_id = :live),
	ARRAY[:live2_payment_id]::bigint[], 'no circuit held: the due operation is claimed');
SELECT is(coalesce(pg_stat_get_xact_function_calls('payments._gateway_connection(text,text,integer)'::regprocedure), 0)
		- (SELECT n FROM conn_calls), 0::bigint,
	'with no circuit held no gateway connection is worked out');

-- the rows a purchase inserts fire no trigger with a WHEN clause: PostgreSQL
-- reads a WHEN back from its text and plans it for every statement (the
-- restore triggers' test of check_function_bodies cost each purchase 1.5%;
-- payments._restore_gate makes it in C)
SELECT is_empty($$SELECT c.relname || '.' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
	WHERE c.relnamespace = 'payments'::regnamespace AND t.tgqual IS NOT NULL AND (t.tgtype & 4) <> 0
	  AND c.relname IN ('payments', 'operations', 'card_vault', 'idempotency_keys', 'events', 'audit_log')$$,
	'no insert trigger of the tables a purchase writes has a WHEN clause');
-- the gate: a superuser's session with check_function_bodies off is a
-- restore, and its operation is loaded as possibly sent; on, it is not
SET LOCAL check_function_bodies = off;
SELECT payment_id FROM pay_purchase(amount => '5.00 USD', card => pg_temp.card()) \gset restored_
SET LOCAL check_function_bodies = on;
SELECT payment_id FROM pay_purchase(amount => '5.00 USD', card => pg_temp.card()) \gset fresh_
SELECT is((SELECT format('%s / %s', never_sent, last_error) FROM payments.operations WHERE payment_id = :restored_payment_id),
	'f / restored from a dump: the server it was dumped from may have sent it',
	'an operation inserted while check_function_bodies is off, by a superuser, goes through _restored_operation');
SELECT is((SELECT format('%s / %s', never_sent, last_error) FROM payments.operations WHERE payment_id = :fresh_payment_id),
	't / ', 'with check_function_bodies on, the gate keeps the row as it is');
SELECT throws_ok($$SELECT payments._restore_gate()$$, '39P01', NULL, 'the gate is a trigger, not a function to call');
SELECT throws_ok($$CREATE TEMP TABLE gate_t (x int); CREATE TRIGGER g AFTER INSERT ON gate_t FOR EACH ROW
		EXECUTE FUNCTION payments._restore_gate('payments._restored_operation()'); INSERT INTO gate_t VALUES (1)$$,
	'39P01', NULL, 'the gate refuses to fire other than BEFORE INSERT FOR EACH ROW');

-- merchants whose operations all wait for later (parked behind an open
-- circuit, an unknown outcome's next look) cost a claim nothing: it reads
-- the due operations, not one index probe per merchant with any waiting
DO $$
DECLARE m bigint;
BEGIN
	FOR m IN SELECT merchant_id FROM payments.merchants WHERE name LIKE 'idle %' LOOP
		PERFORM set_config('payments.merchant_id', m::text, true);
		PERFORM payments.pay_purchase(amount => '3.00 USD', card => pg_temp.card());
	END LOOP;
END $$;
RESET payments.merchant_id;
UPDATE payments.operations o SET next_attempt_at = now() + interval '1 hour'
FROM payments.merchants m WHERE m.merchant_id = o.merchant_id AND m.name LIKE 'idle %';
SET payments.merchant_id = :'live';
SELECT payment_id FROM pay_purchase(amount => '4.00 USD', card => pg_temp.card()) \gset live3_
RESET payments.merchant_id;
CREATE TEMP TABLE ready_scans AS
SELECT pg_stat_get_xact_numscans('payments.operations_ready'::regclass) AS n,
	(SELECT count(DISTINCT merchant_id) FROM payments.operations WHERE status IN ('queued', 'unknown') AND next_attempt_at <= now()) AS due;
SELECT is((SELECT array_agg(c.payment_id) FROM payments._claim_operations(100) c WHERE c.merchant_id = :live),
	ARRAY[:live3_payment_id]::bigint[], 'with 40 merchants'' operations parked for later, the due one is claimed');
SELECT ok(pg_stat_get_xact_numscans('payments.operations_ready'::regclass) - (SELECT n FROM ready_scans)
		<= 2 * (SELECT due FROM ready_scans) + 1,
	'and the claim probed the merchants with operations due only, not the 40 parked ones');
SELECT is((SELECT count(*) FROM payments._claim_operations(100) c JOIN payments.merchants m USING (merchant_id)
		WHERE m.name LIKE 'idle %'), 0::bigint, 'the parked operations are not claimed before their time');

SELECT * FROM finish();
ROLLBACK;
