-- Card numbers and size limits in free text (src/free_text.c): every text
-- a caller gives that is kept (payments' description, order_ref, customer
-- and metadata; customers' email, name, external_ref, billing, metadata;
-- plans' names and metadata; refunds' reasons; idempotency keys; API key
-- names) is refused with 22Y17 when it holds a card number, and nothing of
-- the call is stored; a correlation id (argument, x-request-id header,
-- payments.correlation_id) is kept with the card number's digits masked,
-- and refused over 200 characters.  A text that is exactly a UUID or a W3C
-- traceparent is an identifier: kept as it is.  No error quotes a caller's text.
-- Metadata (and the customer object) is bounded: 50 keys, keys of 40
-- characters, scalar values of 500.  (The files of a server after such
-- calls: test/integration/card_data_at_rest.sh.)
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(118);

CREATE FUNCTION pg_temp.card() RETURNS payments.pay_card LANGUAGE sql
	AS $$ SELECT payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123') $$;
-- the error a statement raises: SQLSTATE | message | detail | hint
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		hin = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', st, msg, det, hin);
END
$$;
CREATE TEMP TABLE before AS SELECT
	(SELECT count(*) FROM payments.payments) AS payments, (SELECT count(*) FROM payments.operations) AS operations,
	(SELECT count(*) FROM payments.events) AS events, (SELECT count(*) FROM payments.idempotency_keys) AS keys,
	(SELECT count(*) FROM payments.customers) AS customers, (SELECT count(*) FROM payments.plans) AS plans;

-- 1. pay_purchase: every free-text input
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => 'card 5105 1051 0510 5100')$$,
	'22Y17', 'description holds a card number', 'a card number (grouped by spaces) in description is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => 'card 6011-1111-1111-1117 x')$$,
	'22Y17', 'description holds a card number', 'a card number grouped by dashes in description is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), metadata => '{"note": "4000056655665556"}')$$,
	'22Y17', 'metadata.note holds a card number', 'a card number in a metadata value is refused, the key named');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), metadata => '{"n": 4000056655665556}')$$,
	'22Y17', 'metadata.n holds a card number', 'a card number as a JSON number in metadata is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), metadata => '{"4000056655665556": "x"}')$$,
	'22Y17', 'a key of metadata holds a card number', 'a card number as a metadata key is refused, the key not named');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '{"email": "5105105105105100@x.com"}')$$,
	'22Y17', 'customer.email holds a card number', 'a card number in customer.email is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '{"note": "pan 5105105105105100"}')$$,
	'22Y17', 'customer.note holds a card number', 'a card number under a customer key the gateway is not sent is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), order_ref => '5105105105105100')$$,
	'22Y17', 'order_ref holds a card number', 'a card number in order_ref is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), idempotency_key => 'k-5105105105105100')$$,
	'22Y17', 'idempotency key holds a card number', 'a card number in an idempotency key is refused');
SELECT throws_ok($$SELECT pay_authorize(amount => '1.00 USD', card => pg_temp.card(), description => '5105105105105100')$$,
	'22Y17', 'description holds a card number', 'pay_authorize refuses it too');
SELECT is(pg_temp.err($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => 'card 5105 1051 0510 5100')$$)
	!~ '[0-9]{4}', true, 'the error quotes no digits of the number');
SELECT matches(pg_temp.err($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => '5105105105105100')$$),
	'^22Y17 \| description holds a card number \| [A-Z][^|]*\. \| Remove the card number from description; [^|]*\.$',
	'the message names the field, the detail and the hint are sentences');
SELECT lives_ok($$CREATE TEMP TABLE ok1 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	description => 'order 123456789012, phone 555 123 4567', order_ref => 'A-17',
	customer => '{"email": "ada@example.com", "note": "vip"}', metadata => '{"n": 123456789012345, "uuid": "x"}')$$,
	'digits that are not a card number pass');
SELECT lives_ok($$SELECT payments._check_text('description', 'Call +44 20 7946 0956', 255),
	payments._check_metadata('{"phone": "+44 20 7946 0956"}')$$,
	'a phone number with its country code that is Luhn-valid and starts as Visa''s (12 digits: no brand issues those) passes');
SELECT lives_ok($$SELECT payments._check_metadata('{"ean": "4005999123453"}')$$,
	'an EAN-13 barcode that is Luhn-valid and starts as Visa''s (13 digits: no longer issued) passes');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), order_ref => 'ref 4000123412341000003')$$,
	'22Y17', 'order_ref holds a card number', 'a 19-digit Visa number is refused (issued, though the gateway takes 16 at most)');
SELECT is(payments._mask_card_numbers('tel 442079460956'), 'tel XXXXXXXXXXXX',
	'the correlation id''s masking looks wider: those 12 digits are masked there');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	idempotency_key => '7b8f2ab5-3451-4013-9675-f6ad325b55dd')$$,
	'a UUID whose digit groups pass for a card number is an identifier: accepted as an idempotency key');

-- 2. metadata bounds (every function's metadata goes through _check_metadata)
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	metadata => (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 51) i))$$,
	'22023', 'metadata has more than 50 keys', 'metadata of 51 keys is refused');
SELECT lives_ok($$SELECT payments._check_metadata((SELECT jsonb_object_agg(repeat('k', 38) || i, repeat('v', 500))
	FROM generate_series(10, 59) i))$$, '50 keys of 40 characters with values of 500 pass');
SELECT throws_ok($$SELECT payments._check_metadata(jsonb_build_object(repeat('k', 41), 1))$$,
	'22001', 'a key of metadata is longer than 40 characters', 'a key of 41 characters is refused');
SELECT throws_ok($$SELECT payments._check_metadata(jsonb_build_object('k', repeat('é', 501)))$$,
	'22001', 'metadata.k is longer than 500 characters', 'a value of 501 characters is refused');
SELECT throws_ok($$SELECT payments._check_metadata('{"k": {"a": 1}}')$$,
	'22023', 'metadata values must be strings, numbers, booleans or null', 'a nested object is refused');
SELECT throws_ok($$SELECT payments._check_metadata('{"k": [1]}')$$,
	'22023', 'metadata values must be strings, numbers, booleans or null', 'an array value is refused');
SELECT throws_ok($$SELECT payments._check_metadata('[1]')$$, '22023', 'metadata must be a JSON object', 'metadata must be an object');
SELECT lives_ok($$SELECT payments._check_metadata('{"a": true, "b": null, "c": 1.5, "d": ""}')$$, 'booleans, null, numbers, strings pass');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '{"address": {"line1": "x"}}')$$,
	'22023', NULL, 'a nested object in customer is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('note', repeat('x', 501)))$$,
	'22001', 'customer.note is longer than 500 characters', 'a customer value the gateway is not sent is bounded too');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), order_ref => repeat('x', 256))$$,
	'22001', 'order_ref is longer than 255 characters', 'order_ref is at most 255 characters');

-- 3. refunds, captures: the reason and the key
SELECT throws_ok(format($$SELECT pay_refund(payment_id => %s, reason => 'card 5105105105105100')$$, (SELECT payment_id FROM ok1)),
	'22Y17', 'reason holds a card number', 'a card number in a refund''s reason is refused');
SELECT throws_ok(format($$SELECT pay_refund(payment_id => %s, reason => repeat('x', 256))$$, (SELECT payment_id FROM ok1)),
	'22001', 'reason is longer than 255 characters', 'a refund''s reason is at most 255 characters');
SELECT throws_ok(format($$SELECT pay_void(payment_id => %s, idempotency_key => '5105105105105100')$$, (SELECT payment_id FROM ok1)),
	'22Y17', 'idempotency key holds a card number', 'a card number in pay_void''s idempotency key is refused');

-- 4. customers, plans, API keys
SELECT throws_ok($$SELECT pay_create_customer(email => '5105105105105100@example.com')$$,
	'22Y17', 'email holds a card number', 'a card number in a customer''s email is refused');
SELECT throws_ok($$SELECT pay_create_customer(name => 'Ada 5105 1051 0510 5100')$$,
	'22Y17', 'name holds a card number', 'a card number in a customer''s name is refused');
SELECT throws_ok($$SELECT pay_create_customer(external_ref => '5105105105105100')$$,
	'22Y17', 'external_ref holds a card number', 'a card number in external_ref is refused');
SELECT throws_ok($$SELECT pay_create_customer(billing => '{"address": "5105105105105100"}')$$,
	'22Y17', 'customer.address holds a card number', 'a card number in billing is refused');
SELECT throws_ok($$SELECT pay_create_customer(metadata => '{"x": "5105105105105100"}')$$,
	'22Y17', 'metadata.x holds a card number', 'a card number in a customer''s metadata is refused');
SELECT throws_ok($$SELECT pay_create_customer(metadata => '{"x": {"y": 1}}')$$,
	'22023', NULL, 'a customer''s metadata is bounded as a payment''s');
SELECT throws_ok($$SELECT pay_create_plan(name => 'Pro 5105105105105100', amount => '5.00 USD')$$,
	'22Y17', 'name holds a card number', 'a card number in a plan''s name is refused');
SELECT throws_ok($$SELECT pay_create_plan(name => 'Pro', amount => '5.00 USD', metadata => '{"x": "5105105105105100"}')$$,
	'22Y17', 'metadata.x holds a card number', 'a card number in a plan''s metadata is refused');
SELECT throws_ok($$SELECT pay_create_api_key(name => 'key 5105105105105100')$$,
	'22Y17', 'name holds a card number', 'a card number in an API key''s name is refused');

-- nothing of the refused calls was kept
SELECT is((SELECT row((SELECT count(*) FROM payments.payments), (SELECT count(*) FROM payments.operations),
	(SELECT count(*) FROM payments.idempotency_keys), (SELECT count(*) FROM payments.customers),
	(SELECT count(*) FROM payments.plans))::text),
	(SELECT row(payments + 2, operations + 2, keys + 1, customers, plans)::text FROM before),
	'only the two accepted purchases left rows');

-- 5. the correlation id is masked, wherever it comes from
SELECT lives_ok($$CREATE TEMP TABLE c1 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	correlation_id => 'req-4000056655665556')$$, 'a card number in the correlation_id argument does not fail the call');
SELECT is((SELECT correlation_id FROM c1), 'req-XXXXXXXXXXXXXXXX', 'the payment keeps it masked');
SELECT is((SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.operations WHERE payment_id = (SELECT payment_id FROM c1)),
	'req-XXXXXXXXXXXXXXXX', 'its operation too');
SELECT is((SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.events WHERE payment_id = (SELECT payment_id FROM c1)),
	'req-XXXXXXXXXXXXXXXX', 'its events too');
SELECT is((SELECT string_agg(DISTINCT a.correlation_id, ',') FROM payments.audit_log a
	WHERE a.new_row ->> 'payment_id' = (SELECT payment_id FROM c1)::text), 'req-XXXXXXXXXXXXXXXX', 'its audit rows too');

-- where the correlation id comes from, in this order (src/correlation_id.c,
-- as the PL/pgSQL it replaced read it): the argument, x-request-id,
-- traceparent, payments.correlation_id, a fresh UUID's 32 hex digits;
-- NULL and '' are skipped (an argument, a header, the setting), and so
-- are headers '{}'
SET LOCAL request.headers = '{"x-request-id": "hdr-1", "traceparent": "tp-1"}';
SET LOCAL payments.correlation_id = 'set-1';
SELECT is(payments._correlation_id('arg-1'), 'arg-1', 'correlation id: the argument first');
SELECT is(payments._correlation_id(''), 'hdr-1', 'correlation id: an empty argument is skipped for x-request-id');
SET LOCAL request.headers = '{"traceparent": "tp-1", "x-request-id": null}';
SELECT is(payments._correlation_id(NULL), 'tp-1', 'correlation id: then traceparent (a JSON null x-request-id is skipped)');
-- an empty header is skipped as an empty argument is (before, it was the
-- correlation id: '' on every row of a request with "X-Request-Id:")
SET LOCAL request.headers = '{"x-request-id": "", "traceparent": "tp-2"}';
SELECT is(payments._correlation_id(NULL), 'tp-2', 'correlation id: an empty x-request-id is skipped for traceparent');
SET LOCAL request.headers = '{"x-request-id": "", "traceparent": ""}';
SELECT is(payments._correlation_id(NULL), 'set-1', 'correlation id: empty headers are skipped for the setting');
SET LOCAL request.headers = '{"x-request-id": 42}';
SELECT is(payments._correlation_id(NULL), '42', 'correlation id: a header''s value as ->> gives it');
SET LOCAL request.headers = '{}';
SELECT is(payments._correlation_id(NULL), 'set-1', 'correlation id: headers {} are skipped for the setting');
SET LOCAL request.headers = '[1]';
SELECT is(payments._correlation_id(NULL), 'set-1', 'correlation id: headers that are not an object give no header');
SET LOCAL request.headers = 'not json';
SELECT throws_ok($$SELECT payments._correlation_id(NULL)$$, '22P02', NULL, 'correlation id: headers that are not JSON are an error, as the cast was');
SET LOCAL request.headers = '';
SET LOCAL payments.correlation_id = '';
SELECT matches(payments._correlation_id(NULL), '^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$', 'correlation id: else a fresh version 4 UUID''s hex digits');
SELECT isnt(payments._correlation_id(NULL), payments._correlation_id(NULL), 'correlation id: a fresh one each call');
RESET request.headers;
RESET payments.correlation_id;

SET LOCAL request.headers = '{"x-request-id": "5105 1051 0510 5100"}';
SELECT lives_ok($$CREATE TEMP TABLE c2 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$,
	'a card number as X-Request-Id does not fail the call');
SELECT is((SELECT correlation_id FROM c2), 'XXXX XXXX XXXX XXXX', 'the payment keeps the header masked');
SELECT is((SELECT string_agg(DISTINCT a.correlation_id, ',') FROM payments.audit_log a
	WHERE a.new_row ->> 'payment_id' = (SELECT payment_id FROM c2)::text), 'XXXX XXXX XXXX XXXX',
	'the audit rows keep the header masked (audit_log.correlation_id)');
RESET request.headers;

SET LOCAL payments.correlation_id = 'batch 6011-1111-1111-1117';
SELECT is(current_setting('payments.correlation_id'), 'batch XXXX-XXXX-XXXX-XXXX', 'the setting is masked as it is set');
SELECT lives_ok($$CREATE TEMP TABLE c3 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$,
	'a purchase under that setting');
SELECT is((SELECT correlation_id FROM c3), 'batch XXXX-XXXX-XXXX-XXXX', 'the payment keeps the setting masked');
SELECT is((SELECT string_agg(DISTINCT a.correlation_id, ',') FROM payments.audit_log a
	WHERE a.new_row ->> 'payment_id' = (SELECT payment_id FROM c3)::text), 'batch XXXX-XXXX-XXXX-XXXX',
	'the audit rows keep the setting masked');
RESET payments.correlation_id;
SELECT is(payments._mask_card_numbers('order-123456789012 7b8f2ab5-3451-4013-9675-f6ad325b55dd'),
	'order-123456789012 7b8f2ab5-XXXX-XXXX-XXXX-f6ad325b55dd', 'only the digits of card numbers are masked (a UUID inside a longer text too)');
SELECT is(payments._mask_card_numbers('7b8f2ab5-3451-4013-9675-f6ad325b55dd'), '7b8f2ab5-3451-4013-9675-f6ad325b55dd',
	'a correlation id that is one UUID is kept as it is');
SELECT is(payments._mask_card_numbers('ab4111111111111111cdef0123456789'), 'ab4111111111111111cdef0123456789',
	'a UUID without dashes too');
SELECT is(payments._mask_card_numbers('ab4111111111111111cdef012345678'), 'abXXXXXXXXXXXXXXXXcdef012345678',
	'but not 31 hex digits: a card number between letters is masked');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	idempotency_key => '7b8f2ab5-3451-4013-9675-f6ad325b55dd/4111111111111111')$$,
	'22Y17', 'idempotency key holds a card number', 'a longer text around a UUID is checked');

-- 5b. a W3C traceparent is an identifier as a UUID is: kept as it is, on
-- the payment, its operations, events and audit rows, from each source.
-- These random ones were masked before (about one in 520 is: a run of
-- digits, alone or across a dash, passes for a card number).
-- (The gateway's refId and exchange log: card_data_at_rest.sh.)
CREATE FUNCTION pg_temp.kept_ids(p bigint) RETURNS text LANGUAGE sql AS $$
	SELECT concat_ws(' / ',
		'payment ' || (SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.payments WHERE payment_id = p),
		'operations ' || (SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.operations WHERE payment_id = p),
		'events ' || (SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.events WHERE payment_id = p),
		'audit rows ' || (SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.audit_log
			WHERE new_row ->> 'payment_id' = p::text),
		'audited rows'' correlation_id ' || (SELECT string_agg(DISTINCT new_row ->> 'correlation_id', ',')
			FROM payments.audit_log WHERE new_row ->> 'payment_id' = p::text AND table_name IN ('payments', 'operations')))
$$;
CREATE FUNCTION pg_temp.all_ids(id text) RETURNS text LANGUAGE sql AS $$
	SELECT format('payment %1$s / operations %1$s / events %1$s / audit rows %1$s / audited rows'' correlation_id %1$s', id)
$$;
SELECT is(payments._check_correlation_id(tp), tp, 'a traceparent the old masking took for a card number is kept: ' || tp)
	FROM (VALUES ('00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01'),
		('00-40850609984967914c7c4c3600cc69f1-698ed9f64d8e0a2e-01'),
		('00-d82bf65ce753774853ad22249cf762a2-9dc4259745858636-01'),
		('00-5ab0dcb5e5a02395abcb408359768144-4726817933746f3c-01')) v(tp);
SELECT lives_ok($$CREATE TEMP TABLE t1 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	correlation_id => '00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01')$$, 'a purchase with a traceparent as correlation_id');
SELECT is(pg_temp.kept_ids((SELECT payment_id FROM t1)), pg_temp.all_ids('00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01'),
	'the argument''s traceparent is kept whole on the payment, its operations, events and audit rows');
DO $$ BEGIN PERFORM set_config('request.headers',
	'{"user-agent": "curl/8", "traceparent": "00-40850609984967914c7c4c3600cc69f1-698ed9f64d8e0a2e-01"}', true); END $$;
SELECT lives_ok($$CREATE TEMP TABLE t2 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$,
	'a purchase under a traceparent header as PostgREST passes it');
SELECT is(pg_temp.kept_ids((SELECT payment_id FROM t2)), pg_temp.all_ids('00-40850609984967914c7c4c3600cc69f1-698ed9f64d8e0a2e-01'),
	'the header''s traceparent is kept whole on the payment, its operations, events and audit rows');
RESET request.headers;
SET LOCAL payments.correlation_id = '00-d82bf65ce753774853ad22249cf762a2-9dc4259745858636-01';
SELECT is(current_setting('payments.correlation_id'), '00-d82bf65ce753774853ad22249cf762a2-9dc4259745858636-01',
	'a traceparent is kept whole as the setting is set');
SELECT lives_ok($$CREATE TEMP TABLE t3 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$,
	'a purchase under that setting');
SELECT is(pg_temp.kept_ids((SELECT payment_id FROM t3)), pg_temp.all_ids('00-d82bf65ce753774853ad22249cf762a2-9dc4259745858636-01'),
	'the setting''s traceparent is kept whole on the payment, its operations, events and audit rows');
RESET payments.correlation_id;
-- the audit trigger keeps an identifier too (a UUID's digit groups passed
-- for a card number there, and the audited rows had a note in its place)
SELECT lives_ok($$CREATE TEMP TABLE t5 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	correlation_id => '7b8f2ab5-3451-4013-9675-f6ad325b55dd')$$, 'a purchase with a UUID as correlation_id');
SELECT is(pg_temp.kept_ids((SELECT payment_id FROM t5)), pg_temp.all_ids('7b8f2ab5-3451-4013-9675-f6ad325b55dd'),
	'the UUID is kept whole on the payment, its operations, events and audit rows, and in the audited rows');
-- (refused before: a run of its digits passes for a card number of a length issued)
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	idempotency_key => '00-f1e5f7f575346c39994167097707e297-a59ceaff820f7375-01')$$,
	'a traceparent as an idempotency key is not refused either (one rule: free_text_is_identifier)');
-- what is no traceparent, or one whose parent-id is 16 decimal digits, is
-- masked as any text
SELECT is(payments._check_correlation_id(given), masked, why)
	FROM (VALUES
		('00-0af7651916cd43dd8448eb211c80319c-4111111111111111-01', '00-0af7651916cd43dd8448eb211c80319c-XXXXXXXXXXXXXXXX-01',
			'a card number as the whole parent-id is masked'),
		('00-ce4a23353b8a9e3c75c0e7e356756442-5105105105105100-01', '00-ce4a23353b8a9e3c75c0e7e356756442-XXXXXXXXXXXXXXXX-01',
			'another card number as the parent-id is masked (with the trace-id''s last digits before the dash it makes 25 digits, no card number)'),
		('trace 00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01', 'trace 00-ce4a23353b8a9e3c75c0e7eXXXXXXXXX-XXXXXfefb9174922-01',
			'a traceparent inside a longer text is checked'),
		('00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01-x', '00-ce4a23353b8a9e3c75c0e7eXXXXXXXXX-XXXXXfefb9174922-01-x',
			'so is one with more after it (a later version''s fields are not known)'),
		('00-CE4A23353B8A9E3C75C0E7E356756442-24766FEFB9174922-01', '00-CE4A23353B8A9E3C75C0E7EXXXXXXXXX-XXXXXFEFB9174922-01',
			'uppercase hex is no traceparent'),
		('ff-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01', 'ff-ce4a23353b8a9e3c75c0e7eXXXXXXXXX-XXXXXfefb9174922-01',
			'nor is version ff'),
		('00-4111-1111-1111-1111-aaaaaaaaaaa-b7ad6b7169203331-01', '00-XXXX-XXXX-XXXX-XXXX-aaaaaaaaaaa-b7ad6b7169203331-01',
			'a look-alike whose fields hold a card number with separators is masked'),
		('00-ce4a23353b8a9e3c75c0e7e356756442 24766fefb9174922 01', '00-ce4a23353b8a9e3c75c0e7eXXXXXXXXX XXXXXfefb9174922 01',
			'spaces for dashes: no traceparent'),
		('00-ce4a23353b8a9e3c75c0e7e3567564g2-24766fefb9174922-01', '00-ce4a23353b8a9e3c75c0e7e3567564g2-24766fefb9174922-01',
			'(a non-hex letter: no traceparent, and no card number there)'),
		('cc-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01', 'cc-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01',
			'a later version in the 55 characters of version 00 is kept'),
		('00-00000000000000000000000000000000-ab41111111111105-01', '00-00000000000000000000000000000000-abXXXXXXXXXXXXXX-XX',
			'an all-zero trace-id is no traceparent (the parent-id''s digits and the flags pass for a card number)')) v(given, masked, why);
SELECT lives_ok($$CREATE TEMP TABLE t4 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	correlation_id => '00-0af7651916cd43dd8448eb211c80319c-4111111111111111-01')$$,
	'a purchase with a card number as a traceparent''s parent-id');
SELECT is(pg_temp.kept_ids((SELECT payment_id FROM t4)), pg_temp.all_ids('00-0af7651916cd43dd8448eb211c80319c-XXXXXXXXXXXXXXXX-01'),
	'the card number is masked on the payment, its operations, events and audit rows');

-- 6. the correlation id is at most 200 characters, wherever it comes from
-- (22001, the id not quoted, nothing stored); a longer one is refused,
-- not cut
CREATE TEMP TABLE before6 AS SELECT (SELECT count(*) FROM payments.payments) AS payments,
	(SELECT count(*) FROM payments.api_keys) AS api_keys;
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), correlation_id => repeat('c', 201))$$,
	'22001', 'correlation id is longer than 200 characters', 'a correlation_id argument of 201 characters is refused');
SELECT matches(pg_temp.err($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), correlation_id => repeat('c', 201))$$),
	'^22001 \| correlation id is longer than 200 characters \| It has 201 characters; [^|]*\. \| Pass a correlation id [^|]*\.$',
	'the error states the limit and the length, not the id');
SELECT throws_ok($$SELECT pay_create_customer(email => 'ada@example.com', correlation_id => repeat('c', 300))$$,
	'22001', 'correlation id is longer than 200 characters', 'pay_create_customer refuses it too (every call asks _correlation_id)');
SELECT lives_ok($$CREATE TEMP TABLE c6 AS SELECT * FROM pay_purchase(amount => '1.00 USD', card => pg_temp.card(),
	correlation_id => repeat('é', 200))$$, 'a correlation id of 200 characters (400 bytes) is accepted');
SELECT is((SELECT length(correlation_id) FROM c6), 200, 'and kept whole');
DO $$ BEGIN PERFORM set_config('request.headers', jsonb_build_object('x-request-id', repeat('h', 201))::text, true); END $$;
SELECT is(length(current_setting('request.headers')::jsonb ->> 'x-request-id'), 201, '(an X-Request-Id of 201 characters)');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card())$$,
	'22001', 'correlation id is longer than 200 characters', 'an X-Request-Id header of 201 characters is refused');
SELECT throws_ok($$SELECT pay_create_api_key(name => 'k6')$$,
	'22001', 'correlation id is longer than 200 characters',
	'and refused by the audit trigger for a call that keeps no correlation id itself (an API key: audit_log.correlation_id)');
RESET request.headers;
SELECT throws_ok($$SELECT set_config('payments.correlation_id', repeat('s', 201), true)$$,
	'22001', 'correlation id is longer than 200 characters', 'payments.correlation_id of 201 characters is refused as it is set');
SELECT unalike(pg_temp.err(format('SET LOCAL payments.correlation_id = %L', repeat('s', 201))),
	'%sssss%', 'the setting''s error does not quote it');
SELECT is(current_setting('payments.correlation_id'), '', 'the setting is left as it was');
SELECT lives_ok($$SELECT set_config('payments.correlation_id', repeat('s', 200), true)$$, 'a setting of 200 characters is taken');
RESET payments.correlation_id;
SELECT is((SELECT row((SELECT count(*) FROM payments.payments), (SELECT count(*) FROM payments.api_keys))::text),
	(SELECT row(payments + 1, api_keys)::text FROM before6), 'the refused calls stored nothing (one purchase of 200 characters)');

-- 7. errors never quote a caller's text: it may hold a card number in a
-- form the log's masking does not read as one
SELECT is(pg_temp.err($$SELECT payments._check_time_zone('Etc/5105_1051_0510_5100')$$),
	'22023 | time_zone is not a known time zone | Only IANA time zone names are taken, not abbreviations or POSIX strings; the value given is not quoted. | Pass an IANA time zone name such as America/New_York, Europe/Paris or UTC (pg_timezone_names lists them).',
	'an unknown time zone is refused without quoting it (it named the field''s value before)');
SELECT unalike(pg_temp.err($$SELECT payments._check_time_zone('5105105105105100')$$), '%5105%',
	'a time zone that is not a zone name is not quoted either');
SELECT unalike(pg_temp.err($$SELECT * FROM pay_list_payments(status => 'x5105_1051_0510_5100')$$), '%5105%',
	'pay_list_payments does not quote an unknown status');
SELECT unalike(pg_temp.err($$SELECT * FROM pay_list_invoices(status => 'x5105_1051_0510_5100')$$), '%5105%',
	'pay_list_invoices does not quote an unknown status');
SELECT unalike(pg_temp.err($$SELECT * FROM pay_list_subscriptions(status => 'x5105_1051_0510_5100')$$), '%5105%',
	'pay_list_subscriptions does not quote an unknown status');
SELECT unalike(pg_temp.err($$SELECT pay_create_plan(name => 'p7', amount => '5.00 USD', interval_unit => 'x5105_1051_0510_5100')$$),
	'%5105%', 'pay_create_plan does not quote an unknown interval_unit');
SELECT unalike(pg_temp.err($$SELECT pay_set_dunning_policy(final_action => 'x5105_1051_0510_5100')$$), '%5105%',
	'pay_set_dunning_policy does not quote an unknown final_action');
SELECT is(pg_temp.err($$SELECT pay_create_api_key(name => 'k7', scopes => ARRAY['read', 'x5105_1051_0510_5100'])$$),
	'22023 | unknown API key scope | Scope 2 of the 2 given is not a scope; it is not quoted. | The scopes are read, payments, refunds, customers and admin.',
	'pay_create_api_key names an unknown scope by its place, not its text');

SELECT * FROM finish();
ROLLBACK;
