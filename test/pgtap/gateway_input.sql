-- Input the gateway would refuse is refused at the call, with its own
-- SQLSTATE and a message that names the field and the limit but never
-- quotes the value (README: "Input the gateway refuses").  That inputs at
-- the limits go through the worker and the simulator's schema check is
-- test/integration/gateway_input_limits.sh.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(93);

CREATE FUNCTION pg_temp.card(holder text DEFAULT NULL) RETURNS payments.pay_card LANGUAGE sql
	AS $$ SELECT payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123', holder) $$;
-- the full text of the error a statement raises: message, detail and hint
CREATE FUNCTION pg_temp.error_text(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	m text; d text; h text;
BEGIN
	EXECUTE q;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', m, d, h);
END $$;

-- 1. characters XML cannot carry: description, customer fields, correlation id
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => E'a\x01b')$$,
	'22Y24', 'description contains a character the gateway cannot carry', 'U+0001 in the description is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => E'a\x0bb')$$,
	'22Y24', 'description contains a character the gateway cannot carry', 'U+000B (vertical tab) in the description is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => E'a\uFFFEb')$$,
	'22Y24', 'description contains a character the gateway cannot carry', 'U+FFFE in the description is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => E'tab\tlf\ncr\r \u00e9\uFFFD')$$,
	'tab, line feed, carriage return and other characters are accepted in the description');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('city', E'Spring\x1ffield'))$$,
	'22Y24', 'customer.city contains a character the gateway cannot carry', 'U+001F in customer.city is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('first_name', E'Ann\uFFFF'))$$,
	'22Y24', 'customer.first_name contains a character the gateway cannot carry', 'U+FFFF in customer.first_name is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '{"email": "a\u0008@example.com"}')$$,
	'22Y24', 'customer.email contains a character the gateway cannot carry', 'a backspace in customer.email is refused');
SELECT is(pg_temp.error_text($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('address', E'SECRET-ADDR\x02'))$$),
	'customer.address contains a character the gateway cannot carry | Character 12 is U+0002; the gateway reads requests as XML, which cannot carry control characters other than tab, line feed and carriage return, nor U+FFFE or U+FFFF. | Remove the control characters from customer.address.',
	'the error names the field, the position and the code point, not the value');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), correlation_id => E'req\x1b[0m')$$,
	'22Y24', 'correlation id contains a character the gateway cannot carry', 'a control character in the correlation id is refused');
SELECT throws_ok($$SET LOCAL payments.correlation_id = E'req\x1b[0m'$$,
	'22Y24', 'correlation id contains a character the gateway cannot carry', 'so is one in the payments.correlation_id setting, as it is set');
SELECT throws_ok($$SELECT set_config('payments.correlation_id', E'req\uFFFE', true)$$,
	'22Y24', 'correlation id contains a character the gateway cannot carry', 'and U+FFFE there');
SELECT is(pg_temp.error_text($$SET LOCAL payments.correlation_id = E'ab\x01'$$),
	'correlation id contains a character the gateway cannot carry | Character 3 is U+0001; the correlation id is sent to the gateway as refId, in XML, which cannot carry control characters other than tab, line feed and carriage return, nor U+FFFE or U+FFFF. | Set payments.correlation_id to printable characters, such as a UUID.',
	'the setting''s error names the position and the code point, not the value');
SELECT lives_ok($$SET LOCAL payments.correlation_id = E'tab\there'$$, 'a tab in the setting is kept, as XML carries it');
RESET payments.correlation_id;
SELECT throws_ok($$SELECT pay_authorize(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('zip', E'1000\x01'))$$,
	'22Y24', 'customer.zip contains a character the gateway cannot carry', 'pay_authorize checks the same');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card('Ada ' || E'\uFFFF'))$$,
	'22Y15', 'invalid card holder name', 'U+FFFF in the card holder name is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(E'Ada\x01Lovelace'))$$,
	'22Y15', 'invalid card holder name', 'a control character in the card holder name is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(repeat('é', 100)))$$,
	'a holder name of 100 two-byte characters is accepted (it is cut to 50 on billTo)');
-- no card number in the holder name: it goes out as billTo's names, which
-- the gateway exchange log keeps as sent (before, 'Ada 4111111111111111'
-- was kept there in clear: "lastName":"4111111111111111")
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card('Ada 5105105105105100'))$$,
	'22Y17', 'card holder name holds a card number', 'a card number in the card holder name is refused');
SELECT throws_ok(format('SELECT %L::payments.pay_card', json_build_object('number', '4111111111111111', 'exp_month', 12,
	'exp_year', extract(year from now())::int + 2, 'holder_name', '4111-1111-1111-1111 X')),
	'22Y17', 'card holder name holds a card number', 'and so it is in the card''s JSON input');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card('Ada Lovelace 3rd 1815 12'))$$,
	'a holder name with other digits is accepted');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', customer => jsonb_build_object('metadata_only', E'\x01'),
	metadata => jsonb_build_object('note', E'\x01'), card => pg_temp.card())$$,
	'keys the gateway is not sent (metadata, unknown customer keys) are not checked');

-- 2. card numbers: at most 16 digits; the sandbox's JCB and Diners cards
SELECT throws_ok($$SELECT pay_card('41111111111111110', 12, 2035)$$, '22Y10', 'card number too long for the gateway',
	'a 17-digit card number is refused');
SELECT throws_ok($$SELECT pay_card('3528000000000000006', 12, 2035)$$, '22Y10', 'card number too long for the gateway',
	'a 19-digit JCB number is refused');
SELECT unalike(pg_temp.error_text($$SELECT pay_card('3528000000000000006', 12, 2035)$$), '%3528000%',
	'the error does not quote the number');
SELECT is(pay_card_brand(pay_card('4111111111111111', 12, 2035)), 'visa', 'a 16-digit card number is accepted');
SELECT is(pay_card_brand(pay_card('3088000000000017', 12, 2035)), 'jcb', 'the sandbox JCB test card 3088000000000017 is a JCB card');
SELECT is(pay_card_brand(pay_card('38000000000006', 12, 2035)), 'diners', 'the sandbox Diners Club test card is accepted');
SELECT throws_ok($$SELECT pay_card('{"number": "6011000000000000001", "exp_month": 12, "exp_year": 2035}'::text::payments.pay_card)$$,
	'22Y10', 'card number too long for the gateway', 'the JSON form refuses 19 digits the same way');

-- 3. lengths, named with their limits
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('zip', repeat('1', 21)))$$,
	'22001', 'customer.zip is longer than 20 characters', 'a 21-character zip is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('zip', repeat('1', 20)))$$,
	'a 20-character zip is accepted');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('zip', 123456789012345678901))$$,
	'22001', 'customer.zip is longer than 20 characters', 'a 21-digit numeric zip is refused too');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => '{"zip": true}')$$,
	'22023', 'customer.zip must be a string', 'a boolean zip is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('id', repeat('9', 21)))$$,
	'22001', 'customer.id is longer than 20 characters', 'a 21-character customer id is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('email', repeat('a', 244) || '@example.com'))$$,
	'22001', 'customer.email is longer than 255 characters', 'a 256-character email is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('first_name', repeat('é', 51)))$$,
	'22001', 'customer.first_name is longer than 50 characters', 'a 51-character first name is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('last_name', repeat('x', 51)))$$,
	'22001', 'customer.last_name is longer than 50 characters', 'a 51-character last name is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('company', repeat('x', 51)))$$,
	'22001', 'customer.company is longer than 50 characters', 'a 51-character company is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('address', repeat('x', 61)))$$,
	'22001', 'customer.address is longer than 60 characters', 'a 61-character address is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('city', repeat('東', 41)))$$,
	'22001', 'customer.city is longer than 40 characters', 'a 41-character city is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('state', repeat('x', 41)))$$,
	'22001', 'customer.state is longer than 40 characters', 'a 41-character state is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('country', repeat('x', 61)))$$,
	'22001', 'customer.country is longer than 60 characters', 'a 61-character country is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('ip', repeat('1', 46)))$$,
	'22001', 'customer.ip is longer than 45 characters', 'a 46-character IP address is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object(
	'id', repeat('9', 20), 'email', repeat('a', 243) || '@example.com', 'first_name', repeat('é', 50),
	'last_name', repeat('x', 50), 'company', repeat('x', 50), 'address', repeat('x', 60), 'city', repeat('東', 40),
	'state', repeat('x', 40), 'country', repeat('x', 60), 'ip', repeat('1', 45)))$$,
	'every customer field at its limit is accepted');
SELECT is(pg_temp.error_text($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), customer => jsonb_build_object('zip', 'SECRETZIP-' || repeat('1', 11)))$$),
	'customer.zip is longer than 20 characters | It has 21 characters; the gateway''s billTo.zip takes at most 20. | Shorten customer.zip to at most 20 characters.',
	'the length error states the field, its limit and the length, not the value');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => repeat('д', 256))$$,
	'22001', 'description is longer than 255 characters', 'a description of 256 characters is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), description => repeat('д', 255))$$,
	'a description of 255 two-byte characters is accepted');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), correlation_id => repeat('x', 200))$$,
	'a correlation id of 200 characters, the most, is accepted (it is sent as a 20-character digest)');

-- 4. amounts: at most 15 digits
SELECT throws_ok($$SELECT pay_purchase(amount => '99999999999999.99 USD', card => pg_temp.card())$$,
	'22Y26', 'amount is larger than the gateway accepts', 'a 16-digit amount is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '9999999999999.99 USD', card => pg_temp.card())$$,
	'a 15-digit amount is accepted');
SELECT throws_ok($$SELECT pay_authorize(amount => '1000000000000000 JPY', card => pg_temp.card())$$,
	'22Y26', 'amount is larger than the gateway accepts', 'a 16-digit yen amount is refused');
-- a currency of three or four decimal places: the gateway refuses every
-- amount in it (reason 5), so it is refused at the call
SELECT throws_ok($$SELECT pay_purchase(amount => '1.234 KWD', card => pg_temp.card())$$,
	'22Y26', 'amounts in KWD cannot be sent to the gateway', 'a three-decimal currency is refused at the call');
SELECT throws_ok($$SELECT pay_authorize(amount => '1.2345 CLF', card => pg_temp.card())$$,
	'22Y26', 'amounts in CLF cannot be sent to the gateway', 'a four-decimal currency too');
SELECT lives_ok($$SELECT pay_purchase(amount => '100 JPY', card => pg_temp.card())$$,
	'a zero-decimal currency is accepted');
SELECT lives_ok($$SELECT pay_authorize(amount => '999999999999999 JPY', card => pg_temp.card())$$,
	'a 15-digit yen amount is accepted');

-- 5. opaque data
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataValue": "nonce"}')$$,
	'22Y22', 'opaque_data has no string dataDescriptor', 'opaque data without dataDescriptor is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT"}')$$,
	'22Y22', 'opaque_data has no string dataValue', 'opaque data without dataValue is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": null, "dataValue": "n"}')$$,
	'22Y22', 'opaque_data has no string dataDescriptor', 'a null dataDescriptor is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "", "dataValue": "nonce"}')$$,
	'22Y22', 'opaque_data dataDescriptor is empty', 'an empty dataDescriptor is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": ""}')$$,
	'22Y22', 'opaque_data dataValue is empty', 'an empty dataValue is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '"x"')$$,
	'22Y22', 'opaque_data must be a JSON object', 'opaque data that is not an object is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "non\u0001ce"}')$$,
	'22Y24', 'opaque_data dataValue contains a character the gateway cannot carry', 'a control character in dataValue is refused');
-- no card number in dataDescriptor: the exchange log keeps it as sent (the
-- nonce is masked there); before, '"dataDescriptor":"4111111111111111"'
-- was kept in clear
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "4111 1111 1111 1111", "dataValue": "nonce"}')$$,
	'22Y17', 'opaque_data dataDescriptor holds a card number', 'a card number as dataDescriptor is refused');
SELECT throws_ok($$SELECT pay_authorize(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "COMMON.5105105105105100", "dataValue": "nonce"}')$$,
	'22Y17', 'opaque_data dataDescriptor holds a card number', 'pay_authorize refuses one in dataDescriptor too');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', opaque_data => '{"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "4111111111111111"}')$$,
	'the nonce (dataValue, masked in the log) is not checked for one');

-- 6. idempotency keys: 1 to 255 characters, never echoed
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), idempotency_key => '')$$,
	'22Y25', 'invalid idempotency key', 'an empty idempotency key is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', card => pg_temp.card(), idempotency_key => repeat('k', 256))$$,
	'22Y25', 'invalid idempotency key', 'a 256-character idempotency key is refused');
SELECT is(pg_temp.error_text($$SELECT pay_authorize(amount => '1.00 USD', card => pg_temp.card(), idempotency_key => 'SECRETKEY' || repeat('k', 250))$$),
	'invalid idempotency key | The key has 259 characters; an idempotency key has 1 to 255. | Pass a key of 1 to 255 characters, such as a UUID, or NULL for none.',
	'the error states the limit and the length, not the key');
SELECT lives_ok($$CREATE TEMP TABLE a AS SELECT * FROM pay_authorize(amount => '5.00 USD', card => pg_temp.card(), idempotency_key => repeat('k', 255))$$,
	'a 255-character idempotency key is accepted');
SELECT throws_ok(format('SELECT pay_capture(payment_id => %s, idempotency_key => %L)', (SELECT payment_id FROM a), ''),
	'22Y25', 'invalid idempotency key', 'pay_capture refuses an empty key');
SELECT throws_ok(format('SELECT pay_void(payment_id => %s, idempotency_key => %L)', (SELECT payment_id FROM a), repeat('v', 256)),
	'22Y25', 'invalid idempotency key', 'pay_void refuses a 256-character key');
SELECT throws_ok(format('SELECT pay_refund(payment_id => %s, idempotency_key => %L)', (SELECT payment_id FROM a), ''),
	'22Y25', 'invalid idempotency key', 'pay_refund refuses an empty key');
SELECT lives_ok($$SELECT pay_purchase(amount => '2.00 USD', card => pg_temp.card(), idempotency_key => 'SECRETKEY-409')$$,
	'a key is used once');
SELECT throws_ok($$SELECT pay_purchase(amount => '3.00 USD', card => pg_temp.card(), idempotency_key => 'SECRETKEY-409')$$,
	'PT409', 'idempotency key was already used with different parameters', 'its reuse with other parameters is PT409');
SELECT unalike(pg_temp.error_text($$SELECT pay_purchase(amount => '3.00 USD', card => pg_temp.card(), idempotency_key => 'SECRETKEY-409')$$),
	'%SECRETKEY%', 'and the PT409 error does not quote the key');

-- 7. profile ids: 1 to 20 digits, no leading zero, no card number
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '12a', payment_profile_id => '1')$$,
	'22Y22', 'invalid customer profile id', 'a customer profile id with a letter is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '1', payment_profile_id => repeat('1', 21))$$,
	'22Y22', 'invalid payment profile id', 'a 21-digit payment profile id is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '', payment_profile_id => '1')$$,
	'22Y22', 'invalid customer profile id', 'an empty customer profile id is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '0500001', payment_profile_id => '1')$$,
	'22Y22', 'invalid customer profile id', 'a customer profile id with a leading zero is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '1', payment_profile_id => '07')$$,
	'22Y22', 'invalid payment profile id', 'a payment profile id with a leading zero is refused');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => repeat('1', 20), payment_profile_id => repeat('2', 20))$$,
	'20-digit profile ids are accepted');
-- and no card number: an id is kept on the payment (the free-text rule,
-- src/free_text.c)
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '5105105105105100', payment_profile_id => '1')$$,
	'22Y17', 'customer profile id holds a card number', 'a card number as customer profile id is refused');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '1', payment_profile_id => '378282246310005')$$,
	'22Y17', 'payment profile id holds a card number', 'a card number as payment profile id is refused');
SELECT throws_ok($$SELECT pay_authorize(amount => '1.00 USD', customer_profile_id => '4000056655665556', payment_profile_id => '1')$$,
	'22Y17', 'customer profile id holds a card number', 'pay_authorize refuses it too');
SELECT is((SELECT count(*) FROM payments.payments WHERE customer_profile_id IN ('5105105105105100', '4000056655665556')
	OR payment_profile_id = '378282246310005'), 0::bigint, 'none of them was stored');
SELECT lives_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '4222222222222', payment_profile_id => '1000177237')$$,
	'an id of 13 digits that starts as Visa''s and passes Luhn is accepted (no brand issues 13-digit numbers now)');

-- 8. the correlation id of capture, void and refund is checked too
UPDATE payments.operations SET status = 'sending' WHERE payment_id = (SELECT payment_id FROM a);
SELECT lives_ok(format($q$SELECT payments._record_result(merchant_id, operation_id, 'approved', 1, 1,
	'This transaction has been approved.', '60000000001', 'A1B2C3', NULL, NULL, NULL, NULL, 'XXXX1111')
	FROM payments.operations WHERE payment_id = %s$q$, (SELECT payment_id FROM a)), 'the authorization is approved (as the worker records it)');
SELECT throws_ok(format('SELECT pay_capture(payment_id => %s, correlation_id => %L)', (SELECT payment_id FROM a), E'c\x01'),
	'22Y24', 'correlation id contains a character the gateway cannot carry', 'pay_capture refuses a control character in the correlation id');
SELECT throws_ok(format('SELECT pay_void(payment_id => %s, correlation_id => %L)', (SELECT payment_id FROM a), E'v\x02'),
	'22Y24', 'correlation id contains a character the gateway cannot carry', 'pay_void refuses a control character in the correlation id');

-- 9. on a gateway account shared with another merchant, where a profile id
-- not of the merchant's own customers is PT404 (whoever's it is), the ids'
-- form is checked first: a malformed id is 22Y22 and a card number 22Y17
-- there too (before, both were PT404: a card number given as a profile id
-- was not refused as one)
INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE
	VALUES (4201, 'tap shared account a'), (4202, 'tap shared account b');
SELECT lives_ok($$SELECT payments.pay_configure_gateway(api_login_id => 'tapShared', transaction_key => 'TK1234567890',
	endpoint_url => 'https://example.invalid/api', merchant_id => m) FROM (VALUES (4201), (4202)) v(m)$$,
	'two merchants share one gateway account');
SET LOCAL payments.merchant_id = '4201';
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '12a', payment_profile_id => '1')$$,
	'22Y22', 'invalid customer profile id', 'on a shared account a malformed customer profile id is 22Y22');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '', payment_profile_id => '1')$$,
	'22Y22', 'invalid customer profile id', 'and so is an empty one');
SELECT throws_ok($$SELECT pay_authorize(amount => '1.00 USD', customer_profile_id => '5105105105105100', payment_profile_id => '1')$$,
	'22Y17', 'customer profile id holds a card number', 'on a shared account a card number as customer profile id is 22Y17');
SELECT throws_ok($$SELECT pay_purchase(amount => '1.00 USD', customer_profile_id => '1', payment_profile_id => '1')$$,
	'PT404', 'customer profile not found', 'a well-formed id of no customer of the merchant is still PT404');
RESET payments.merchant_id;

SELECT * FROM finish();
ROLLBACK;
