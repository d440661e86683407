--
-- pay_card: validation rules, brands, masking, accessors, errors.
--
-- Expiry years are computed from the current date so that the output does
-- not change with time; fingerprints are compared, never printed.
--
SET search_path = public, payments;
SELECT extract(year FROM now() AT TIME ZONE 'UTC')::int AS this_year,
       extract(month FROM now() AT TIME ZONE 'UTC')::int AS this_month,
       extract(year FROM (now() AT TIME ZONE 'UTC') - interval '1 month')::int AS prev_year,
       extract(month FROM (now() AT TIME ZONE 'UTC') - interval '1 month')::int AS prev_month,
       extract(year FROM now() AT TIME ZONE 'UTC')::int + 3 AS fy,
       (extract(year FROM now() AT TIME ZONE 'UTC')::int + 3) % 100 AS fy2
\gset

-- Build a card and describe it, or report the error: SQLSTATE, message
-- and detail.  Years in the output are shown relative to this year.
CREATE FUNCTION pg_temp.try_card(number text, m int, y int, cvv text DEFAULT NULL, holder text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	c payments.pay_card;
	st text; msg text; det text;
BEGIN
	c := payments.pay_card(number, m, y, cvv, holder);
	RETURN format('ok %s %s %s/+%s cvv=%s', payments.pay_card_brand(c), payments.pay_card_last4(c),
				  payments.pay_card_exp_month(c),
				  payments.pay_card_exp_year(c) - extract(year FROM now() AT TIME ZONE 'UTC')::int,
				  payments.pay_card_has_cvv(c));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN format('%s: %s (%s)', st, msg, det);
END $$;

-- The same for the JSON text form.
CREATE FUNCTION pg_temp.try_json(j text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	c payments.pay_card;
	st text; msg text; det text;
BEGIN
	c := j::payments.pay_card;
	RETURN format('ok %s %s %s/+%s cvv=%s', payments.pay_card_brand(c), payments.pay_card_last4(c),
				  payments.pay_card_exp_month(c),
				  payments.pay_card_exp_year(c) - extract(year FROM now() AT TIME ZONE 'UTC')::int,
				  payments.pay_card_has_cvv(c));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN format('%s: %s (%s)', st, msg, det);
END $$;

-- Any statement: 'ok' or the error.
CREATE FUNCTION pg_temp.try_sql(q text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN format('%s: %s (%s)', st, msg, det);
END $$;

-- Masked text output: brand, last four, expiry.  Never the number.
SELECT replace(pay_card('4111 1111 1111 1111', 12, :fy, '123', 'Jane Doe')::text, :'fy', 'YYYY') AS masked;
SELECT replace(pay_card('3782-822463-10005', 1, :fy2, '1234')::text, :'fy', 'YYYY') AS masked;
SELECT replace(pay_card(number => '5555555555554444', exp_month => 7, exp_year => :fy)::text, :'fy', 'YYYY') AS masked;
SELECT position('4111111111111111' IN pay_card('4111111111111111', 12, :fy, '123')::text) = 0 AS no_number,
       position('123' IN pay_card('4111111111111111', 12, :fy, '123')::text) = 0 AS no_cvv;

-- Brands and their lengths (all numbers Luhn-valid).
SELECT label, pg_temp.try_card(number, 12, :fy, cvv) AS result
  FROM (VALUES
	('visa 16',                 '4111111111111111', '123'),
	('visa 13',                 '4000000000006', NULL),
	('visa 19',                 '4000000000000000006', NULL),
	('visa 15 (bad length)',    '400000000000006', NULL),
	('visa 14 (bad length)',    '40000000000002', NULL),
	('mastercard 51',           '5100000000000008', '123'),
	('mastercard 55',           '5500000000000004', NULL),
	('mastercard 5555',         '5555555555554444', NULL),
	('mastercard 2221',         '2221000000000009', NULL),
	('mastercard 2720',         '2720000000000005', NULL),
	('mastercard 2-series',     '2223003122003222', NULL),
	('2220 (not mastercard)',   '2220000000000000', NULL),
	('2721 (not mastercard)',   '2721000000000004', NULL),
	('50 (not mastercard)',     '5000000000000009', NULL),
	('56 (not mastercard)',     '5600000000000003', NULL),
	('mastercard 15 (bad)',     '510000000000003', NULL),
	('amex 34',                 '340000000000009', '1234'),
	('amex 37',                 '378282246310005', NULL),
	('amex 16 (bad length)',    '3700000000000007', NULL),
	('discover 6011',           '6011111111111117', NULL),
	('discover 6011 19',        '6011000000000000001', NULL),
	('discover 644',            '6440000000000005', NULL),
	('discover 649',            '6490000000000004', NULL),
	('discover 65',             '6500000000000002', NULL),
	('643 (not discover)',      '6430000000000007', NULL),
	('unionpay 16',             '6200000000000005', NULL),
	('unionpay 19',             '6200000000000000000', NULL),
	('unionpay 15 (bad)',       '620000000000000', NULL),
	('jcb 3528',                '3528000000000007', NULL),
	('jcb 3566',                '3566002020360505', NULL),
	('jcb 3589 19',             '3589000000000000009', NULL),
	('3527 (not jcb)',          '3527000000000008', NULL),
	('3590 (not jcb)',          '3590000000000000', NULL),
	('diners 300',              '30000000000004', NULL),
	('diners 305 19',           '3050000000000000002', NULL),
	('diners 3095',             '30950000000000', NULL),
	('diners 36',               '36000000000008', NULL),
	('diners 38',               '3800000000000006', NULL),
	('diners 39 19',            '3900000000000000008', NULL),
	('diners 36 13 (bad)',      '3600000000004', NULL),
	('306 (not diners)',        '30600000000001', NULL),
	('3096 (not diners)',       '30960000000009', NULL),
	('maestro 6759',            '6759000000000000', NULL),
	('prefix 1',                '1000000000000008', NULL)
  ) AS t(label, number, cvv);

-- The Authorize.Net sandbox test cards (testing guide) are all accepted,
-- each as its brand; the gateway takes at most 16 digits (XSD cardNumber),
-- so 17 to 19 digits are refused at the call with a message that says so.
SELECT label, pg_temp.try_card(number, 12, :fy) AS result, pay_card_brand(pay_card(number, 12, :fy)) AS brand
  FROM (VALUES
	('sandbox amex',            '370000000000002'),
	('sandbox discover',        '6011000000000012'),
	('sandbox jcb 3088',        '3088000000000017'),
	('sandbox diners 38',       '38000000000006'),
	('sandbox visa 13',         '4007000000027'),
	('sandbox visa 13 b',       '4012888818888'),
	('sandbox visa 16',         '4111111111111111'),
	('sandbox mastercard',      '5424000000000015'),
	('sandbox mastercard 2223', '2223000010309703'),
	('sandbox mastercard 2223b','2223000010309711'),
	('sandbox unionpay',        '6221499053360818')
  ) AS t(label, number);
SELECT label, pg_temp.try_card(number, 12, :fy) AS result
  FROM (VALUES
	('16 digits (the most)',    '4111111111111111'),
	('visa 17',                 '41111111111111110'),
	('discover 18',             '601100000000000004'),
	('jcb 19',                  '3528000000000000006'),
	('20 digits',               '41111111111111111113')
  ) AS t(label, number);

-- Number syntax: digits with single spaces or dashes, 12 to 19 digits, Luhn.
SELECT label, pg_temp.try_card(number, 12, :fy) AS result
  FROM (VALUES
	('spaces',                  '4111 1111 1111 1111'),
	('dashes',                  '4111-1111-1111-1111'),
	('odd grouping',            '41 111111111 11111'),
	('white space around',      E' \t4111111111111111\n '),
	('luhn',                    '4111111111111112'),
	('luhn, one transposed',    '4111111111111121'),
	('double space',            '4111  1111 1111 1111'),
	('double dash',             '4111--1111-1111-1111'),
	('mixed separators',        '4111 1111-1111 1111'),
	('leading dash',            '-4111111111111111'),
	('trailing dash',           '4111111111111111-'),
	('tab inside',              E'4111\t1111 1111 1111'),
	('letter',                  '4111 1111 1111 111a'),
	('dot',                     '4111.1111.1111.1111'),
	('plus sign',               '+4111111111111111'),
	('full-width digits',       '４１１１１１１１１１１１１１１１'),
	('11 digits',               '40000000006'),
	('12 digits (no brand)',    '400000000002'),
	('20 digits',               '40000000000000000002'),
	('empty',                   ''),
	('blank',                   '   '),
	('very long',               repeat('4', 100)),
	('NUL-free garbage',        'DROP TABLE x; --')
  ) AS t(label, number);

-- Expiry: month 1-12, year 2 or 4 digits, not past, at most 20 years ahead.
-- (the month of the current date is shown as M)
SELECT regexp_replace(pg_temp.try_card('4111111111111111', :this_month, :this_year), ' \d+/', ' M/') AS this_month;
SELECT pg_temp.try_card('4111111111111111', :prev_month, :prev_year) AS last_month;
SELECT pg_temp.try_card('4111111111111111', 12, :this_year - 1) AS last_year;
SELECT pg_temp.try_card('4111111111111111', 6, :fy2) AS two_digit_year;
SELECT regexp_replace(pg_temp.try_card('4111111111111111', :this_month, :this_year + 20), ' \d+/', ' M/') AS twenty_years;
SELECT pg_temp.try_card('4111111111111111', 1, :this_year + 21) AS twenty_one_years;
SELECT pg_temp.try_card('4111111111111111', 1, 99) AS year_99;
SELECT pg_temp.try_card('4111111111111111', 1, 0) AS year_00;
SELECT pg_temp.try_card('4111111111111111', 0, :fy) AS month_0;
SELECT pg_temp.try_card('4111111111111111', 13, :fy) AS month_13;
SELECT pg_temp.try_card('4111111111111111', -1, :fy) AS month_negative;
SELECT pg_temp.try_card('4111111111111111', 1, 123) AS year_3_digits;
SELECT pg_temp.try_card('4111111111111111', 1, 10000) AS year_5_digits;
SELECT pg_temp.try_card('4111111111111111', 1, -30) AS year_negative;
SELECT pg_temp.try_card('4111111111111111', 2147483647, -2147483648) AS extremes;

-- Card security code: 3 digits, 4 for American Express.
SELECT label, pg_temp.try_card(number, 12, :fy, cvv) AS result
  FROM (VALUES
	('visa 3',              '4111111111111111', '123'),
	('visa 4',              '4111111111111111', '1234'),
	('visa 2',              '4111111111111111', '12'),
	('visa letters',        '4111111111111111', '12a'),
	('visa empty',          '4111111111111111', ''),
	('visa spaced',         '4111111111111111', ' 123'),
	('visa null (absent)',  '4111111111111111', NULL),
	('amex 4',              '378282246310005',  '1234'),
	('amex 3',              '378282246310005',  '123'),
	('mastercard 4',        '5555555555554444', '1234'),
	('discover 3',          '6011111111111117', '000')
  ) AS t(label, number, cvv);

-- Holder name: optional, 1 to 100 characters, no control characters.
SELECT label, pg_temp.try_card('4111111111111111', 12, :fy, NULL, holder) AS result
  FROM (VALUES
	('plain',               'Jane Doe'),
	('accents',             'Zoë Ångström-Łukasiewicz'),
	('100 characters',      repeat('é', 100)),
	('101 characters',      repeat('x', 101)),
	('empty',               ''),
	('blank',               '   '),
	('newline',             E'Jane\nDoe'),
	('escape',              E'Jane\u001bDoe'),
	('null (absent)',       NULL)
  ) AS t(label, holder);

-- NULL number, month or year is an error (22004), not a NULL card.
SELECT pg_temp.try_card(NULL, 12, :fy) AS null_number;
SELECT pg_temp.try_card('4111111111111111', NULL, :fy) AS null_month;
SELECT pg_temp.try_card('4111111111111111', 12, NULL) AS null_year;

-- Accessors.
SELECT pay_card_brand(c) AS brand, pay_card_last4(c) AS last4,
       pay_card_exp_month(c) AS exp_month, pay_card_exp_year(c) - :this_year AS exp_year_ahead,
       pay_card_has_cvv(c) AS has_cvv, pay_card_fingerprint(c) ~ '^[0-9a-f]{64}$' AS fingerprint_is_hex
  FROM (SELECT pay_card('3782 822463 10005', 3, :fy, '1234', 'Jane Doe') AS c) s;
SELECT key, CASE WHEN key LIKE 'exp_year' THEN '(year)' WHEN key = 'fingerprint' THEN '(hex)' ELSE value::text END AS value
  FROM jsonb_each(pay_card_info(pay_card('6011-1111-1111-1117', 9, :fy, '321'))) ORDER BY key;
SELECT (pay_card_info(c) ->> 'fingerprint') = pay_card_fingerprint(c) AS info_fingerprint_matches,
       (pay_card_info(c) ->> 'exp_year')::int = :fy AS info_year_matches
  FROM (SELECT pay_card('6011111111111117', 9, :fy) AS c) s;
SELECT pay_card_brand(NULL) IS NULL AS strict_accessor;

-- Fingerprints: same number, however typed, gives the same fingerprint;
-- expiry, code and holder do not enter it; another number differs.
SELECT pay_card_fingerprint(pay_card('4111 1111 1111 1111', 12, :fy))
     = pay_card_fingerprint(pay_card('4111-1111-1111-1111', 1, :fy2, '999', 'Someone Else')) AS same_card_same_fp,
       pay_card_fingerprint(pay_card('4111111111111111', 12, :fy))
     = pay_card_fingerprint(format('{"number": " 4111111111111111 ", "exp_month": 12, "exp_year": %s}', :fy)::pay_card) AS json_same_fp,
       pay_card_fingerprint(pay_card('4111111111111111', 12, :fy))
     <> pay_card_fingerprint(pay_card('4012888888881881', 12, :fy)) AS other_card_other_fp;

-- The sealed payload opens with this server's key and matches its header.
SELECT _pay_card_unseal_check(pay_card('4111111111111111', 12, :fy, '123', 'Jane Doe')) AS unseals,
       _pay_card_unseal_check(pay_card('378282246310005', 12, :fy)) AS unseals_without_cvv;

-- JSON text input (what PostgREST clients send).
SELECT label, pg_temp.try_json(replace(replace(j, 'FY2', :'fy2'), 'FY', :'fy')) AS result
  FROM (VALUES
	('full',                '{"number": "4111 1111 1111 1111", "exp_month": 12, "exp_year": FY, "cvv": "123", "holder_name": "Jane Doe"}'),
	('minimal',             '{"number": "5555555555554444", "exp_month": 1, "exp_year": FY}'),
	('string month, year',  '{"number": "5555555555554444", "exp_month": "05", "exp_year": "FY"}'),
	('two-digit year',      '{"number": "5555555555554444", "exp_month": 5, "exp_year": FY2}'),
	('null optionals',      '{"number": "378282246310005", "exp_month": 5, "exp_year": FY, "cvv": null, "holder_name": null}'),
	('escaped digits',      '{"number": "\u0034111111111111111", "exp_month": 5, "exp_year": FY}'),
	('white space around',  E' \n{"number": "4111111111111111", "exp_month": 5, "exp_year": FY}\n '),
	('bad luhn',            '{"number": "4111111111111112", "exp_month": 12, "exp_year": FY}'),
	('expired',             '{"number": "4111111111111111", "exp_month": 12, "exp_year": 2001}'),
	('bad cvv',             '{"number": "4111111111111111", "exp_month": 12, "exp_year": FY, "cvv": "12345"}'),
	('number as number',    '{"number": 4111111111111111, "exp_month": 12, "exp_year": FY}'),
	('cvv as number',       '{"number": "4111111111111111", "exp_month": 12, "exp_year": FY, "cvv": 123}'),
	('month as float',      '{"number": "4111111111111111", "exp_month": 1.5, "exp_year": FY}'),
	('month as word',       '{"number": "4111111111111111", "exp_month": "may", "exp_year": FY}'),
	('huge year',           '{"number": "4111111111111111", "exp_month": 1, "exp_year": 99999999999999}'),
	('holder not string',   '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY, "holder_name": ["a"]}'),
	('holder with NUL',     '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY, "holder_name": "a\u0000b"}'),
	('NUL in number',       '{"number": "4111111111111111\u0000", "exp_month": 1, "exp_year": FY}'),
	('unknown key',         '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY, "pan": "4111111111111111"}'),
	('missing number',      '{"exp_month": 1, "exp_year": FY}'),
	('missing month',       '{"number": "4111111111111111", "exp_year": FY}'),
	('missing year',        '{"number": "4111111111111111", "exp_month": 1}'),
	('null number',         '{"number": null, "exp_month": 1, "exp_year": FY}'),
	('trailing garbage',    '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY} x'),
	('two objects',         '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY}{}'),
	('truncated',           '{"number": "4111111111111111", "exp_month": 1'),
	('single quotes',       '{''number'': ''4111111111111111''}'),
	('array',               '["4111111111111111", 1, FY]'),
	('string',              '"4111111111111111"'),
	('null',                'null'),
	('empty',               ''),
	('masked output',       'visa ****1111 12/2030'),
	('deep nesting',        repeat('[', 5000)),
	('too long',            '{"number": "4111111111111111", "exp_month": 1, "exp_year": FY, "holder_name": "' || repeat('x', 9000) || '"}')
  ) AS t(label, j);

-- A literal cast works like the constructor.
SELECT replace(format('{"number": "4111111111111111", "exp_month": 2, "exp_year": %s}', :fy)::pay_card::text, :'fy', 'YYYY') AS from_json;

-- No binary form: send raises an error (a card never leaves in binary).
SELECT pg_temp.try_sql(format('SELECT payments.pay_card_send(payments.pay_card(''4111111111111111'', 12, %s))', :fy)) AS send;

-- No equality, ordering or hashing: cards are not compared or grouped.
SELECT pg_temp.try_sql(format('SELECT payments.pay_card(''4111111111111111'', 12, %s) = payments.pay_card(''4111111111111111'', 12, %s)', :fy, :fy)) AS equality;

-- Only the owner may use the internal functions.
SELECT proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
  FROM pg_proc p WHERE pronamespace = 'payments'::regnamespace
   AND proname IN ('_random_bytes', '_pay_card_unseal_check', '_installation_secrets_changed')
 ORDER BY proname;
SELECT has_table_privilege('public', 'payments.installation_secrets', 'SELECT') AS public_can_read_secrets;
SELECT count(*) AS fingerprint_key_ids, min(length(secret)) AS id_bytes,
       count(*) FILTER (WHERE purpose = 'card_fingerprint') AS keys_in_table
  FROM payments.installation_secrets WHERE purpose IN ('fingerprint_key_id', 'card_fingerprint');

-- Every card object carries a comment.
SELECT p.oid::regprocedure AS undocumented_function
  FROM pg_proc p WHERE pronamespace = 'payments'::regnamespace
   AND (proname LIKE '%card%' OR proname LIKE '%secret%' OR proname = '_random_bytes')
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT obj_description('payments.pay_card'::regtype, 'pg_type') IS NOT NULL AS type_documented,
       obj_description('payments.installation_secrets'::regclass, 'pg_class') IS NOT NULL AS table_documented,
       (SELECT obj_description(oid, 'pg_event_trigger') IS NOT NULL FROM pg_event_trigger
         WHERE evtname = 'payments_ddl_guard') AS event_trigger_documented;
