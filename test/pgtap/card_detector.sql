-- The card number detector (card_text_contains_number in src/card_brand.c),
-- which the log hook and the audit trigger run on text that must never
-- hold a card number, seen through the audit trigger: a card number next
-- to other digits (the card code after it, a quantity before it) is found
-- too.  test/fuzz/fuzz_card_number.c checks the same on every number the
-- card input accepts.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(8);

CREATE TABLE public.tap_card_notes (id int PRIMARY KEY, merchant_id bigint NOT NULL, body text);
SELECT ok(payments.pay_audit_attach(table_name => 'tap_card_notes'), 'audit attached');
INSERT INTO tap_card_notes VALUES
	(1, 1, 'card 4111111111111111'),
	(2, 1, 'card 4111111111111111 123, thanks'),
	(3, 1, 'paid with 5555-5555-5555-4444-321'),
	(4, 1, 'qty 2 4111 1111 1111 1111 exp 12 30'),
	(5, 1, '3 378282246310005 1234'),
	(6, 1, 'order 1234 5678 9012, call 555 0100'),
	(7, 1, 'invoice 20240101 4111111111111112 7');

CREATE FUNCTION pg_temp.audited(i int) RETURNS text LANGUAGE sql AS
	$$SELECT new_row ->> 'body' FROM payments.audit_log
	  WHERE table_name = 'tap_card_notes' AND new_row ->> 'id' = i::text$$;
SELECT is(pg_temp.audited(1), '[card number removed by payments audit]', 'a card number alone is found');
SELECT is(pg_temp.audited(2), '[card number removed by payments audit]',
	'a card number followed by a space and its card code is found');
SELECT is(pg_temp.audited(3), '[card number removed by payments audit]',
	'a dashed card number followed by a dash and its card code is found');
SELECT is(pg_temp.audited(4), '[card number removed by payments audit]',
	'a grouped card number after another number and a space is found');
SELECT is(pg_temp.audited(5), '[card number removed by payments audit]',
	'an American Express number between other numbers is found');
SELECT is(pg_temp.audited(6), 'order 1234 5678 9012, call 555 0100',
	'digits that make no card number stay');
SELECT is(pg_temp.audited(7), 'invoice 20240101 4111111111111112 7',
	'a number with a wrong check digit stays');

SELECT * FROM finish();
ROLLBACK;
