-- Customers and stored payment methods through the SQL API: create,
-- update, find, list, delete; idempotency; merchant isolation; saving a
-- method records intent only (vault, queued operation) and the worker's
-- answer makes it active; charging a stored method; expiring cards; export
-- and erasure of personal data.  (Through the worker and the simulator:
-- test/integration/payment_methods.sh.)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(97);

INSERT INTO payments.merchants (name) VALUES ('cust-a'), ('cust-b');
CREATE TEMP TABLE m AS SELECT
	(SELECT max(merchant_id) FROM payments.merchants WHERE name = 'cust-a') AS a,
	(SELECT max(merchant_id) FROM payments.merchants WHERE name = 'cust-b') AS b;
CREATE FUNCTION pg_temp.act_as(merchant bigint) RETURNS void LANGUAGE sql AS
	$$ SELECT set_config('payments.merchant_id', merchant::text, true) $$;
CREATE FUNCTION pg_temp.card(num text, exp_year int DEFAULT extract(year FROM now())::int + 3,
	exp_month int DEFAULT 12) RETURNS payments.pay_card
	LANGUAGE sql AS $$ SELECT payments.pay_card(num, exp_month, exp_year, '123') $$;
SELECT pg_temp.act_as(a) FROM m;

-- 1. create, read, update
CREATE TEMP TABLE c1 AS SELECT * FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace',
	external_ref => 'u-1', billing => '{"first_name": "Ada", "zip": "46201"}', metadata => '{"tier": "gold"}',
	idempotency_key => 'cust-1');
SELECT is((SELECT concat_ws('|', merchant_id = (SELECT a FROM m), status, email, name, external_ref,
	billing ->> 'zip', metadata ->> 'tier') FROM c1), 't|active|ada@example.com|Ada Lovelace|u-1|46201|gold',
	'pay_create_customer records the customer of the current merchant');
SELECT is((SELECT count(*)::int FROM payments.events e, c1 WHERE e.merchant_id = c1.merchant_id
	AND e.event_type = 'customer.created' AND (e.data ->> 'customer_id')::bigint = c1.customer_id), 1,
	'creating a customer writes customer.created');
SELECT is((SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace',
	external_ref => 'u-1', billing => '{"first_name": "Ada", "zip": "46201"}', metadata => '{"tier": "gold"}',
	idempotency_key => 'cust-1')), (SELECT customer_id FROM c1), 'the same key and parameters return the same customer');
SELECT throws_ok($$SELECT pay_create_customer(email => 'other@example.com', idempotency_key => 'cust-1')$$,
	'PT409', NULL, 'the same key with other parameters is a conflict (PT409)');
SELECT is((SELECT count(*)::int FROM payments.customers WHERE merchant_id = (SELECT a FROM m)), 1,
	'a repeated call created nothing');
SELECT throws_ok($$SELECT pay_create_customer(email => 'not an address')$$, '22023', NULL, 'a malformed email is refused');
SELECT throws_ok($$SELECT pay_create_customer(email => repeat('x', 250) || '@example.com')$$, '22001', NULL,
	'an email longer than the gateway takes (255) is refused at the call');
SELECT throws_ok($$SELECT pay_create_customer(name => repeat('n', 256))$$, '22001', NULL,
	'a name longer than the profile description (255) is refused at the call');
SELECT throws_ok($$SELECT pay_create_customer(billing => '{"zip": "123456789012345678901"}')$$, '22001', NULL,
	'billing details longer than billTo takes are refused at the call');
SELECT throws_ok($$SELECT pay_create_customer(billing => '[1]')$$, '22023', NULL, 'billing must be an object');

SELECT is((SELECT concat_ws('|', email, name, metadata ->> 'tier') FROM pay_update_customer(
	customer_id => (SELECT customer_id FROM c1), email => 'ada@lovelace.org', metadata => '{"tier": "silver"}')),
	'ada@lovelace.org|Ada Lovelace|silver', 'pay_update_customer changes the fields given, keeps the others');
SELECT is((SELECT data -> 'fields' FROM payments.events WHERE merchant_id = (SELECT a FROM m)
	AND event_type = 'customer.updated' ORDER BY event_id DESC LIMIT 1), '["email", "metadata"]'::jsonb,
	'customer.updated names the changed fields');
SELECT is((SELECT email FROM pay_get_customer((SELECT customer_id FROM c1))), 'ada@lovelace.org', 'pay_get_customer reads it');
SELECT throws_ok($$SELECT pay_get_customer(-1)$$, 'PT404', NULL, 'an unknown customer is PT404');
SELECT throws_ok($$SELECT pay_get_customer(NULL)$$, '22004', 'customer_id is required', 'a NULL customer id is a missing argument');
SELECT throws_ok($$SELECT pay_wait_payment_method(NULL)$$, '22004', 'payment_method_id is required',
	'a NULL payment method id is a missing argument');
SELECT throws_ok($$SELECT pay_wait_payment_method(-1, timeout => NULL)$$, '22004', 'timeout is required',
	'pay_wait_payment_method refuses a NULL timeout');
SELECT throws_ok($$SELECT pay_update_customer(customer_id => -1, name => 'x')$$, 'PT404', NULL, 'updating an unknown customer is PT404');

-- 2. find and list, keyset-paginated
CREATE TEMP TABLE more_customers AS
SELECT pay_create_customer(email => 'u' || g || '@Example.com', external_ref => 'ref-' || g) AS c
FROM generate_series(1, 5) g;
SELECT is((SELECT count(*)::int FROM pay_find_customers(email => 'U3@EXAMPLE.COM')), 1, 'find by email, in any case');
SELECT is((SELECT external_ref FROM pay_find_customers(external_ref => 'ref-4')), 'ref-4', 'find by external reference');
CREATE TEMP TABLE pages AS SELECT 1 AS page, array_agg(customer_id) AS ids FROM pay_find_customers(page_size => 4);
INSERT INTO pages SELECT 2, array_agg(customer_id) FROM pay_find_customers(page_size => 4,
	after => (SELECT ids[4] FROM pages WHERE page = 1));
SELECT is((SELECT cardinality(ids) FROM pages WHERE page = 1) + (SELECT cardinality(ids) FROM pages WHERE page = 2), 6,
	'two pages of 4 visit the 6 customers');
SELECT is((SELECT count(DISTINCT x)::int FROM pages, unnest(ids) x), 6, 'each customer once, newest first by keyset');
SELECT throws_ok($$SELECT pay_find_customers(page_size => 0)$$, '22023', NULL, 'page_size is bounded');

-- 3. stored payment methods: intent recorded, not sent
CREATE TEMP TABLE pm1 AS SELECT * FROM pay_save_payment_method(customer_id => (SELECT customer_id FROM c1),
	card => pg_temp.card('4111111111111111'), validation_mode => 'testMode', idempotency_key => 'pm-1');
SELECT is((SELECT concat_ws('|', status, source, validation_mode, card_brand, card_last4, is_default,
	payment_profile_id IS NULL) FROM pm1), 'pending|card|testMode|visa|1111|t|t',
	'saving a card records a pending method with brand and last four only');
SELECT is((SELECT count(*)::int FROM payments.operations o, pm1 WHERE o.merchant_id = pm1.merchant_id
	AND o.payment_method_id = pm1.payment_method_id AND o.kind = 'save_method' AND o.status = 'queued'
	AND o.payment_id IS NULL), 1, 'a save_method operation is queued for the worker');
SELECT is((SELECT count(*)::int FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id), pm1
	WHERE o.merchant_id = pm1.merchant_id AND o.payment_method_id = pm1.payment_method_id), 1,
	'the card waits sealed in the vault');
SELECT is((SELECT payment_method_id FROM pay_save_payment_method(customer_id => (SELECT customer_id FROM c1),
	card => pg_temp.card('4111111111111111'), validation_mode => 'testMode', idempotency_key => 'pm-1')),
	(SELECT payment_method_id FROM pm1), 'the same idempotency key returns the same method');
SELECT throws_ok($$SELECT pay_save_payment_method(customer_id => (SELECT customer_id FROM c1),
	card => pg_temp.card('4111111111111111'), validation_mode => 'fastMode')$$, '22023', NULL,
	'an unknown validation mode is refused');
SELECT throws_ok($$SELECT pay_save_payment_method(customer_id => (SELECT customer_id FROM c1),
	card => pg_temp.card('4111111111111111'), opaque_data => '{"dataDescriptor": "d", "dataValue": "v"}')$$,
	'22Y22', NULL, 'a card and opaque data together are refused');
SELECT throws_ok($$SELECT pay_delete_payment_method((SELECT payment_method_id FROM pm1))$$, '22Y20', NULL,
	'a method still being saved cannot be deleted');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', payment_method_id => (SELECT payment_method_id FROM pm1))$$,
	'22Y20', NULL, 'a pending method cannot be charged');

-- the worker's answer (payments._record_method_result, as the worker calls it)
UPDATE payments.operations o SET status = 'sending' FROM pm1
WHERE o.merchant_id = pm1.merchant_id AND o.payment_method_id = pm1.payment_method_id;
SELECT payments._record_method_result(pm1.merchant_id, o.operation_id, 'approved', NULL, NULL, '500123', '700456',
	'NTID0001', '1111', 'Visa', now(), NULL, repeat('ab', 32))
FROM pm1 JOIN payments.operations o ON o.merchant_id = pm1.merchant_id AND o.payment_method_id = pm1.payment_method_id;
SELECT is((SELECT concat_ws('|', status, customer_profile_id, payment_profile_id, network_trans_id)
	FROM pay_get_payment_method((SELECT payment_method_id FROM pm1))), 'active|500123|700456|NTID0001',
	'the gateway''s answer makes the method active with its profile ids and network transaction id');
SELECT is((SELECT card_fingerprint FROM payments.payment_methods WHERE payment_method_id = (SELECT payment_method_id FROM pm1)),
	repeat('ab', 32), 'the method''s card fingerprint comes with the gateway''s answer (none before: see card_fingerprint_oracle)');
SELECT is((SELECT customer_profile_id FROM pay_get_customer((SELECT customer_id FROM c1))), '500123',
	'the customer learns its gateway profile');
SELECT is((SELECT count(*)::int FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id), pm1
	WHERE o.merchant_id = pm1.merchant_id AND o.payment_method_id = pm1.payment_method_id), 0,
	'the sealed card is erased once the gateway answered');
SELECT is((SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events e, pm1
	WHERE e.merchant_id = pm1.merchant_id AND (e.data ->> 'payment_method_id')::bigint = pm1.payment_method_id),
	'payment_method.pending,payment_method.active', 'every transition of the method wrote an event');
SELECT throws_ok($$UPDATE payments.payment_methods SET status = 'pending' WHERE payment_method_id = (SELECT payment_method_id FROM pm1)$$,
	'22Y20', NULL, 'the status machine refuses active -> pending');

-- 4. charging a stored method, or a customer's default
CREATE TEMP TABLE p1 AS SELECT * FROM pay_purchase(amount => '9.99 USD', payment_method_id => (SELECT payment_method_id FROM pm1));
SELECT is((SELECT concat_ws('|', payment_method, customer_profile_id, payment_profile_id, customer_id = (SELECT customer_id FROM c1),
	payment_method_id = (SELECT payment_method_id FROM pm1), customer ->> 'email') FROM p1),
	'profile|500123|700456|t|t|ada@lovelace.org',
	'a purchase with payment_method_id charges its profile, for its customer, with the customer''s details');
SELECT is((SELECT payment_method_id FROM pay_purchase(amount => '1.00 USD', customer_id => (SELECT customer_id FROM c1))),
	(SELECT payment_method_id FROM pm1), 'a customer alone is charged through its default method');
SELECT is((SELECT customer ->> 'zip' FROM pay_purchase(amount => '2.00 USD', customer_id => (SELECT customer_id FROM c1),
	customer => '{"zip": "10001"}', card => pg_temp.card('4111111111111111'))), '10001',
	'a customer object given wins over the stored details');

-- 5. merchant isolation
SELECT pg_temp.act_as(b) FROM m;
SELECT throws_ok(format('SELECT pay_get_customer(%s)', (SELECT customer_id FROM c1)), 'PT404', NULL,
	'merchant B does not see A''s customer (PT404)');
SELECT throws_ok(format('SELECT pay_get_payment_method(%s)', (SELECT payment_method_id FROM pm1)), 'PT404', NULL,
	'merchant B does not see A''s payment method (PT404)');
SELECT throws_ok(format('SELECT pay_purchase(amount => ''1.00 USD'', payment_method_id => %s)', (SELECT payment_method_id FROM pm1)),
	'PT404', NULL, 'merchant B cannot charge A''s payment method');
SELECT throws_ok(format('SELECT pay_save_payment_method(customer_id => %s, card => pg_temp.card(''4111111111111111''))',
	(SELECT customer_id FROM c1)), 'PT404', NULL, 'merchant B cannot save a method for A''s customer');
SELECT is((SELECT count(*)::int FROM pay_find_customers()), 0, 'merchant B lists none of A''s customers');
SELECT throws_ok(format('SELECT pay_delete_customer(%s)', (SELECT customer_id FROM c1)), 'PT404', NULL,
	'merchant B cannot delete A''s customer');
SELECT pg_temp.act_as(a) FROM m;

-- 6. cards that expire soon
CREATE TEMP TABLE pm2 AS SELECT * FROM pay_save_payment_method(customer_id => (SELECT customer_id FROM c1),
	card => pg_temp.card('5424000000000015', extract(year FROM now())::int, extract(month FROM now())::int),
	validation_mode => 'none', make_default => false);
UPDATE payments.payment_methods SET status = 'active' WHERE payment_method_id = (SELECT payment_method_id FROM pm2);
SELECT is((SELECT array_agg(payment_method_id) FROM pay_expiring_payment_methods(within_days => 40)),
	ARRAY[(SELECT payment_method_id FROM pm2)], 'a card that expires this month is listed as expiring');
SELECT is(payments.pay_run_expiry_notices() >= 1, true, 'the expiry notices write an event for it');
SELECT is((SELECT count(*)::int FROM payments.events WHERE event_type = 'payment_method.expiring'
	AND (data ->> 'payment_method_id')::bigint = (SELECT payment_method_id FROM pm2)), 1, 'one payment_method.expiring event');
SELECT is(payments.pay_run_expiry_notices(), 0, 'running the notices again writes nothing twice');

-- 7. export and erasure of personal data
UPDATE payments.payments SET gateway_trans_id = '60000001', status = 'succeeded', amount_captured = amount
WHERE payment_id = (SELECT payment_id FROM p1);
-- as the worker would have: its purchase answered (a queued one would hold
-- the refund below back: another operation in progress)
UPDATE payments.operations SET status = 'sending' WHERE payment_id = (SELECT payment_id FROM p1) AND kind = 'purchase';
UPDATE payments.operations SET status = 'succeeded' WHERE payment_id = (SELECT payment_id FROM p1) AND kind = 'purchase';
CREATE TEMP TABLE ex AS SELECT pay_export_customer((SELECT customer_id FROM c1)) AS doc;
SELECT is((SELECT concat_ws('|', doc -> 'customer' ->> 'email', jsonb_array_length(doc -> 'payment_methods'),
	jsonb_array_length(doc -> 'payments'), doc -> 'payment_methods' -> 0 ? 'card_fingerprint',
	jsonb_array_length(doc -> 'operations') >= 3, jsonb_array_length(doc -> 'events') >= 5) FROM ex),
	'ada@lovelace.org|2|3|f|t|t',
	'the export holds the customer, its methods (no fingerprint), payments, operations and events');
-- what the merchant wrote about the customer: a payment's description,
-- order_ref and metadata (copied into its events), a refund's reason; and a
-- guest purchase (no customer_id) whose customer object holds its email
CREATE TEMP TABLE pf AS SELECT * FROM pay_purchase(amount => '4.00 USD', customer_id => (SELECT customer_id FROM c1),
	description => 'Gift for Ada Lovelace', order_ref => 'order-ada@lovelace.org',
	metadata => '{"ship_to": "Ada Lovelace, 12 Analytical Row"}', idempotency_key => 'pay-free-text');
CREATE TEMP TABLE pg AS SELECT * FROM pay_purchase(amount => '5.00 USD', card => pg_temp.card('4111111111111111'),
	customer => '{"email": "ADA@Lovelace.org", "first_name": "Ada", "last_name": "Lovelace"}',
	description => 'Guest order of Ada Lovelace', order_ref => 'guest-lovelace', metadata => '{"note": "Lovelace"}',
	idempotency_key => 'guest-ada');
UPDATE payments.payments SET gateway_trans_id = (70000000 + payment_id)::text, status = 'succeeded',
	amount_captured = amount
WHERE payment_id IN (SELECT payment_id FROM pf UNION ALL SELECT payment_id FROM pg);
UPDATE payments.operations SET status = 'sending'
WHERE payment_id IN (SELECT payment_id FROM pf UNION ALL SELECT payment_id FROM pg) AND kind = 'purchase';
UPDATE payments.operations SET status = 'succeeded'
WHERE payment_id IN (SELECT payment_id FROM pf UNION ALL SELECT payment_id FROM pg) AND kind = 'purchase';
SELECT is((SELECT kind FROM pay_refund(payment_id => (SELECT payment_id FROM pf), amount => '1.00 USD',
	reason => 'Ada Lovelace sent the scarf back')), 'refund', 'a refund whose reason names the customer');
UPDATE payments.operations SET status = 'sending' WHERE payment_id = (SELECT payment_id FROM pf) AND kind = 'refund';
UPDATE payments.operations SET status = 'succeeded' WHERE payment_id = (SELECT payment_id FROM pf) AND kind = 'refund';
SELECT ok((SELECT count(*) FROM payments.events WHERE payment_id = (SELECT payment_id FROM pf)
	AND data -> 'metadata' ->> 'ship_to' ~ 'Lovelace') >= 1, 'the payment''s events copy its metadata');
SELECT ok((SELECT doc -> 'payments' @> jsonb_build_array(jsonb_build_object('payment_id', (SELECT payment_id FROM pg)))
	FROM (SELECT pay_export_customer((SELECT customer_id FROM c1)) AS doc) x),
	'the export holds the guest purchase made under the customer''s email (compared case-insensitively)');
-- the keys of the customer's requests: its creation (cust-1) and method
-- (pm-1) above, an update, a payment, a refund of one, a subscription; and
-- another customer's key, which erasure leaves alone
SELECT is((SELECT name FROM pay_update_customer(customer_id => (SELECT customer_id FROM c1), name => 'Ada King',
	idempotency_key => 'cust-upd')), 'Ada King', 'an update under a key');
CREATE TEMP TABLE pk AS SELECT * FROM pay_purchase(amount => '3.00 USD', customer_id => (SELECT customer_id FROM c1),
	customer => '{"first_name": "Ada", "zip": "46201"}', idempotency_key => 'pay-ada');
SELECT is((SELECT kind FROM pay_refund(payment_id => (SELECT payment_id FROM p1), amount => '1.00 USD',
	reason => 'Ada asked', idempotency_key => 'refund-ada')), 'refund', 'a refund of its payment under a key');
SELECT is((SELECT status FROM pay_create_subscription(customer_id => (SELECT customer_id FROM c1), price => '5.00 USD',
	interval_unit => 'month', trial_days => 30, metadata => '{"note": "Ada"}', idempotency_key => 'sub-ada')),
	'trialing', 'a subscription under a key');
CREATE TEMP TABLE ck AS SELECT * FROM pay_create_customer(email => 'grace@example.com', idempotency_key => 'cust-keep');
CREATE TEMP TABLE guess AS SELECT md5(jsonb_build_array('ada@example.com'::text, 'Ada Lovelace'::text, 'u-1'::text,
	'{"first_name": "Ada", "zip": "46201"}'::jsonb, '{"tier": "gold"}'::jsonb)::text) AS h;
SELECT is((SELECT count(*)::int FROM payments.idempotency_keys, guess WHERE request_hash = guess.h), 1,
	'before erasure the creation key''s hash digests the email: whoever reads the table can confirm a guess of it');
CREATE TEMP TABLE er AS SELECT * FROM pay_erase_customer((SELECT customer_id FROM c1));
SELECT is((SELECT string_agg(idempotency_key, ',' ORDER BY idempotency_key) FROM payments.idempotency_keys
	WHERE merchant_id = (SELECT a FROM m) AND request_hash IS NOT NULL
		AND idempotency_key IN ('cust-1', 'cust-upd', 'pm-1', 'pay-ada', 'refund-ada', 'sub-ada', 'cust-keep')),
	'cust-keep', 'erasure clears the request hash of the keys of the customer''s requests (creation, update, method, payment, refund, subscription), not another customer''s');
SELECT is((SELECT count(*)::int FROM payments.idempotency_keys, guess WHERE request_hash = guess.h), 0,
	'after erasure no key confirms a guess of the erased email');
SELECT is((SELECT concat_ws('|', customer_id = (SELECT customer_id FROM c1), status, erased_at IS NOT NULL)
	FROM pay_create_customer(email => 'guess@example.com', idempotency_key => 'cust-1')), 't|deleted|t',
	'a repeat of its creation returns the erased customer whatever the arguments: the API is no oracle either');
SELECT is((SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace',
	external_ref => 'u-1', billing => '{"first_name": "Ada", "zip": "46201"}', metadata => '{"tier": "gold"}',
	idempotency_key => 'cust-1')), (SELECT customer_id FROM c1), 'the original arguments get the same answer, and no new customer');
SELECT is((SELECT payment_id FROM pay_purchase(amount => '3.00 USD', customer_id => (SELECT customer_id FROM c1),
	customer => '{"first_name": "Eve"}', idempotency_key => 'pay-ada')), (SELECT payment_id FROM pk),
	'a repeated purchase returns its payment, charges nothing');
-- the key strings themselves (an application may make them of an email or
-- an order's text) are kept as digests, which a repeat still finds
SELECT is((SELECT count(*)::int FROM (
		SELECT idempotency_key FROM payments.idempotency_keys WHERE merchant_id = (SELECT a FROM m)
		UNION ALL SELECT idempotency_key FROM payments.payments WHERE merchant_id = (SELECT a FROM m)
		UNION ALL SELECT idempotency_key FROM payments.operations WHERE merchant_id = (SELECT a FROM m)
		UNION ALL SELECT idempotency_key FROM payments.customers WHERE merchant_id = (SELECT a FROM m)
		UNION ALL SELECT idempotency_key FROM payments.payment_methods WHERE merchant_id = (SELECT a FROM m)
		UNION ALL SELECT idempotency_key FROM payments.subscriptions WHERE merchant_id = (SELECT a FROM m)) k
	WHERE k.idempotency_key IN ('cust-1', 'cust-upd', 'pm-1', 'pay-ada', 'refund-ada', 'sub-ada', 'guest-ada', 'pay-free-text')), 0,
	'erasure leaves no idempotency key of the customer''s requests as given (keys, payments, operations, customer, methods, subscriptions)');
SELECT is((SELECT string_agg(x, ',' ORDER BY x) FROM (
		SELECT 'customer' AS x FROM payments.customers WHERE customer_id = (SELECT customer_id FROM c1)
			AND idempotency_key = (SELECT payments._erased_key(a, 'cust-1') FROM m)
		UNION ALL SELECT 'payment' FROM payments.payments WHERE payment_id = (SELECT payment_id FROM pk)
			AND idempotency_key = (SELECT payments._erased_key(a, 'pay-ada') FROM m)
		UNION ALL SELECT 'refund' FROM payments.operations WHERE kind = 'refund'
			AND idempotency_key = (SELECT payments._erased_key(a, 'refund-ada') FROM m)
		UNION ALL SELECT 'subscription' FROM payments.subscriptions
			WHERE idempotency_key = (SELECT payments._erased_key(a, 'sub-ada') FROM m)) y),
	'customer,payment,refund,subscription', 'they are kept as digests scoped to the merchant');
SELECT is((SELECT count(*)::int FROM payments.idempotency_keys WHERE merchant_id = (SELECT a FROM m)
	AND idempotency_key = 'cust-keep' AND request_hash IS NOT NULL), 1, 'another customer''s key stays as given');
CREATE TEMP TABLE npay AS SELECT count(*) AS n FROM payments.payments WHERE merchant_id = (SELECT a FROM m);
SELECT is((SELECT concat_ws('|', kind, status) FROM pay_refund(payment_id => (SELECT payment_id FROM p1), amount => '1.00 USD',
	reason => 'again', idempotency_key => 'refund-ada')),
	(SELECT concat_ws('|', kind, status) FROM payments.operations WHERE idempotency_key = (SELECT payments._erased_key(a, 'refund-ada') FROM m)),
	'a repeated refund under its key returns the refund it made');
SELECT is((SELECT count(*)::int FROM payments.operations WHERE payment_id = (SELECT payment_id FROM p1) AND kind = 'refund'
	AND reason IS NOT DISTINCT FROM 'again'), 0, 'and makes no second refund');
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => (SELECT customer_id FROM c1), price => '5.00 USD',
	interval_unit => 'month', idempotency_key => 'sub-ada')),
	(SELECT subscription_id FROM payments.subscriptions WHERE idempotency_key = (SELECT payments._erased_key(a, 'sub-ada') FROM m)),
	'a repeated subscription under its key returns the subscription it made');
SELECT is((SELECT count(*) FROM payments.payments WHERE merchant_id = (SELECT a FROM m)), (SELECT n FROM npay),
	'the repeats made no payment');
SELECT is((SELECT count(*)::int FROM payments.idempotency_keys WHERE merchant_id = (SELECT a FROM m)
	AND idempotency_key IN ('cust-1', 'pay-ada', 'refund-ada', 'sub-ada')), 0, 'and left no key as given behind');
SELECT throws_ok(format('SELECT pay_update_customer(customer_id => %s, name => ''x'', idempotency_key => ''cust-upd'')',
	(SELECT customer_id FROM ck)), 'PT409', NULL, 'a key of the erased customer''s request naming another customer is a conflict (PT409)');
SELECT throws_ok($$SELECT pay_create_customer(email => 'other@example.com', idempotency_key => 'cust-keep')$$,
	'PT409', NULL, 'another customer''s key still tells its arguments apart');
SELECT is((SELECT concat_ws('|', status, coalesce(email, '-'), coalesce(name, '-'), coalesce(external_ref, '-'),
	billing::text, metadata::text, erased_at IS NOT NULL) FROM er), 'deleted|-|-|-|{}|{}|t',
	'erasure removes the personal data and marks the customer deleted');
SELECT is((SELECT concat_ws('|', amount, status, gateway_trans_id, customer_profile_id, card_last4, customer::text,
	card_fingerprint IS NULL) FROM payments.payments WHERE payment_id = (SELECT payment_id FROM p1)),
	'9.99 USD|succeeded|60000001|500123|1111|{}|t', 'the payment keeps amount, status and gateway ids, without the personal details');
SELECT is((SELECT string_agg(concat_ws('|', customer_id = (SELECT customer_id FROM c1), amount, status,
		gateway_trans_id = (70000000 + payment_id)::text, customer::text, coalesce(description, '-'), coalesce(order_ref, '-'), metadata::text), ',' ORDER BY payment_id)
	FROM payments.payments WHERE payment_id IN (SELECT payment_id FROM pf UNION ALL SELECT payment_id FROM pg)),
	't|4.00 USD|succeeded|t|{}|-|-|{},t|5.00 USD|succeeded|t|{}|-|-|{}',
	'its payments, and the guest purchase under its email (now its own), keep the financial record without the merchant''s free text');
SELECT is((SELECT count(*)::int FROM payments.payments x WHERE x.merchant_id = (SELECT a FROM m) AND x::text ~* 'lovelace'), 0,
	'no payment holds the customer''s name or email (description, order_ref, metadata, billing details)');
SELECT is((SELECT count(*)::int FROM payments.operations x WHERE x.merchant_id = (SELECT a FROM m)
	AND x::text ~* 'lovelace|Ada asked'), 0, 'no operation holds a refund''s reason that named the customer');
SELECT is((SELECT count(*)::int FROM payments.events x WHERE x.merchant_id = (SELECT a FROM m) AND x::text ~* 'lovelace'), 0,
	'no event holds a copy of its payments'' metadata');
SELECT is((SELECT count(*)::int FROM payments.audit_log x WHERE x::text ~* 'lovelace|Ada asked|scarf'), 0,
	'the audit log never held the free text of its payments and refunds');
SELECT is((SELECT count(*)::int FROM payments.idempotency_keys
	WHERE merchant_id = (SELECT a FROM m) AND request_hash IS NULL AND customer_id = (SELECT customer_id FROM c1)
		AND idempotency_key IN (SELECT payments._erased_key(a, k) FROM m, unnest(ARRAY['pay-free-text', 'guest-ada']) k)), 2,
	'the keys of its payments, the guest purchase''s too, keep no digest of the free text');
SELECT is((SELECT concat_ws('|', kind, amount) FROM pay_refund(payment_id => (SELECT payment_id FROM pg),
	amount => '2.00 USD', reason => 'after the erasure')), 'refund|2.00 USD', 'its payments can still be refunded');
SELECT is((SELECT count(*)::int FROM payments.events WHERE event_type = 'customer.erased'
	AND (data ->> 'customer_id')::bigint = (SELECT customer_id FROM c1)), 1, 'erasure writes customer.erased');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name = 'customers'
	AND (old_row::text LIKE '%lovelace%' OR new_row::text LIKE '%lovelace%' OR old_row::text LIKE '%Ada%')), 0,
	'the audit log of customers never held the personal data');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name = 'payments'
	AND (old_row::text LIKE '%lovelace%' OR new_row::text LIKE '%lovelace%' OR old_row ? 'customer' OR new_row ? 'customer')), 0,
	'nor did the audit log of its payments (their billing details are left out)');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name IN ('payments', 'payment_methods')
	AND (old_row ? 'card_fingerprint' OR new_row ? 'card_fingerprint' OR old_row::text LIKE '%' || repeat('ab', 32) || '%'
		OR new_row::text LIKE '%' || repeat('ab', 32) || '%')), 0,
	'nor the card fingerprint of its payments and methods');
SELECT ok((SELECT count(*) FROM payments.audit_log WHERE table_name = 'customers' AND operation = 'UPDATE'
	AND (new_row ->> 'erased_at') IS NOT NULL) = 1, 'the audit log records the erasure');
SELECT is((SELECT count(*)::int FROM payments.operations o WHERE o.merchant_id = (SELECT a FROM m)
	AND o.kind = 'delete_customer' AND o.customer_id = (SELECT customer_id FROM c1)), 1,
	'erasure deletes the customer''s profile at the gateway (delete_customer queued)');

-- 8. a repeat finds the object its key made by an index, and erasure the
-- keys of a customer (not a scan of every row of the merchant)
INSERT INTO payments.customers (merchant_id, idempotency_key, correlation_id)
SELECT a, 'bulk-' || g, 'bulk' FROM m, generate_series(1, 3000) g;
INSERT INTO payments.plans (merchant_id, name, amount, interval_unit, idempotency_key, correlation_id)
SELECT a, 'Bulk', '1.00 USD', 'month', 'bulk-' || g, 'bulk' FROM m, generate_series(1, 3000) g;
INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit, interval_count,
	billing_anchor, current_period_start, current_period_end, idempotency_key, correlation_id)
SELECT a, ck.customer_id, 'canceled', '1.00 USD', 'month', 1, now()::timestamp, now(), now() + interval '1 month',
	'bulk-' || g, 'bulk' FROM m, ck, generate_series(1, 3000) g;
INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash, customer_id)
SELECT a, 'bulk-' || g, 'update_customer', md5(g::text), g FROM m, generate_series(1, 3000) g;
ANALYZE payments.customers, payments.plans, payments.subscriptions, payments.idempotency_keys;
CREATE FUNCTION pg_temp.indexes_used(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	plan json;
BEGIN
	EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
	RETURN (SELECT string_agg(x[1], ',') FROM regexp_matches(plan::text, '"Index Name": "([^"]+)"', 'g') x);
END
$$;
SELECT is((SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	WHERE c.relname IN ('customers_idempotency_key', 'plans_idempotency_key', 'subscriptions_idempotency_key',
		'idempotency_keys_customer') AND i.indisvalid AND NOT i.indisunique AND i.indpred IS NOT NULL),
	'customers_idempotency_key,idempotency_keys_customer,plans_idempotency_key,subscriptions_idempotency_key',
	'the look-up indexes exist, valid, partial and not unique (a key makes another object once its retention ended)');
SELECT is(pg_temp.indexes_used(format('SELECT * FROM payments.customers c WHERE c.merchant_id = %s
	AND c.idempotency_key = %L ORDER BY c.customer_id DESC LIMIT 1', a, 'bulk-77')), 'customers_idempotency_key',
	'pay_create_customer''s repeat reads customers_idempotency_key') FROM m;
SELECT is(pg_temp.indexes_used(format('SELECT * FROM payments.plans x WHERE x.merchant_id = %s
	AND x.idempotency_key = %L ORDER BY x.plan_id DESC LIMIT 1', a, 'bulk-77')), 'plans_idempotency_key',
	'pay_create_plan''s repeat reads plans_idempotency_key') FROM m;
SELECT is(pg_temp.indexes_used(format('SELECT * FROM payments.subscriptions x WHERE x.merchant_id = %s
	AND x.idempotency_key = %L ORDER BY x.subscription_id DESC LIMIT 1', a, 'bulk-77')), 'subscriptions_idempotency_key',
	'pay_create_subscription''s repeat reads subscriptions_idempotency_key') FROM m;
SELECT is(pg_temp.indexes_used(format('UPDATE payments.idempotency_keys k SET request_hash = NULL,
		idempotency_key = payments._erased_key(k.merchant_id, k.idempotency_key)
	WHERE k.merchant_id = %s AND k.customer_id = %s AND k.idempotency_key NOT LIKE %L', a, 77, 'erased:%')), 'idempotency_keys_customer',
	'pay_erase_customer finds the customer''s keys by idempotency_keys_customer') FROM m;

-- Two customers of one merchant with the same email (in any case): a guest
-- purchase under it is as much the one's as the other's, so erasing one
-- leaves it, with its text, to the other (review V of 0997bb2)
INSERT INTO payments.merchants (name) VALUES ('shared email');
CREATE TEMP TABLE se AS SELECT (SELECT max(merchant_id) FROM payments.merchants WHERE name = 'shared email') AS a;
SELECT set_config('payments.merchant_id', a::text, true) FROM se;
CREATE TEMP TABLE se_a AS SELECT * FROM pay_create_customer(email => 'shared@example.com', name => 'Alice');
CREATE TEMP TABLE se_b AS SELECT * FROM pay_create_customer(email => 'Shared@Example.com', name => 'Bob');
CREATE TEMP TABLE se_g AS SELECT * FROM pay_purchase(amount => '5.00 USD',
	card => payments.pay_card('4111111111111111', 12, extract(year FROM now())::int + 2, '123'),
	customer => '{"email": "shared@example.com", "first_name": "Bob"}', description => 'Bob''s order', order_ref => 'bob-1');
SELECT ok((SELECT pay_export_customer((SELECT customer_id FROM se_b)) -> 'payments'
	@> jsonb_build_array(jsonb_build_object('payment_id', (SELECT payment_id FROM se_g)))),
	'shared email: before, the other customer''s export holds the guest purchase');
CREATE TEMP TABLE se_ea AS SELECT * FROM pay_erase_customer((SELECT customer_id FROM se_a));
SELECT is((SELECT concat_ws('|', customer_id IS NULL, coalesce(description, '-'), coalesce(order_ref, '-'))
	FROM payments.payments WHERE payment_id = (SELECT payment_id FROM se_g)), 't|Bob''s order|bob-1',
	'shared email: erasing one customer leaves the guest purchase the other shares, unlinked and whole');
SELECT ok((SELECT pay_export_customer((SELECT customer_id FROM se_b)) -> 'payments'
	@> jsonb_build_array(jsonb_build_object('payment_id', (SELECT payment_id FROM se_g)))),
	'shared email: after, the other customer''s export still holds it');
CREATE TEMP TABLE se_eb AS SELECT * FROM pay_erase_customer((SELECT customer_id FROM se_b));
SELECT is((SELECT concat_ws('|', customer_id = (SELECT customer_id FROM se_b), coalesce(description, '-'), coalesce(order_ref, '-'))
	FROM payments.payments WHERE payment_id = (SELECT payment_id FROM se_g)), 't|-|-',
	'shared email: the last of them erased takes it, and its text goes');

SELECT * FROM finish();
ROLLBACK;
