-- Audit rows of statements that change many rows (issue 12: the trigger
-- writes audit_log with the table and index APIs, src/audit.c): every row
-- audited exactly once with the right old and new row, whatever the
-- statement; nothing left of a statement that fails or a savepoint rolled
-- back; indexes and CHECK constraints of audit_log kept, also when they
-- change in the transaction; INSERT triggers on audit_log still fire; the
-- rows seal and verify.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SET LOCAL TimeZone = 'UTC';
SET LOCAL client_min_messages = warning;
SELECT plan(53);

CREATE TABLE public.tap_bulk (id int PRIMARY KEY, merchant_id bigint NOT NULL, v text, n numeric);
SELECT ok(payments.pay_audit_attach('tap_bulk'), 'attached');

-- the audit rows of tap_bulk written since a mark
CREATE TEMP TABLE tap_mark (since bigint);
INSERT INTO tap_mark VALUES (0);
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS
	$$ UPDATE tap_mark SET since = (SELECT coalesce(max(audit_id), 0) FROM payments.audit_log) $$;
CREATE VIEW pg_temp.new_audit AS
	SELECT a.* FROM payments.audit_log a, tap_mark m WHERE a.table_name = 'tap_bulk' AND a.audit_id > m.since;

-- INSERT ... SELECT
SELECT pg_temp.mark();
INSERT INTO tap_bulk SELECT g, 1 + g % 3, 'v' || g, g / 10.0 FROM generate_series(1, 2000) g;
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 2000::bigint, 'INSERT ... SELECT of 2,000 rows: 2,000 audit rows');
SELECT is((SELECT count(DISTINCT (new_row ->> 'id')::int) FROM pg_temp.new_audit WHERE operation = 'INSERT'),
	2000::bigint, 'each row once');
SELECT is_empty($$SELECT 1 FROM pg_temp.new_audit a JOIN tap_bulk t ON t.id = (a.new_row ->> 'id')::int
	WHERE a.old_row IS NOT NULL OR a.changed_columns IS NOT NULL OR a.merchant_id <> t.merchant_id
		OR a.new_row <> jsonb_build_object('id', t.id, 'merchant_id', t.merchant_id, 'v', t.v, 'n', t.n)$$,
	'each with its new row and merchant, no old row');
SELECT is((SELECT count(DISTINCT audit_id) FROM pg_temp.new_audit), 2000::bigint, 'distinct audit ids');

-- UPDATE of many rows
SELECT pg_temp.mark();
UPDATE tap_bulk SET v = v || '-u', n = n + 1 WHERE id <= 1500;
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 1500::bigint, 'UPDATE of 1,500 rows: 1,500 audit rows');
SELECT is_empty($$SELECT 1 FROM pg_temp.new_audit a JOIN tap_bulk t ON t.id = (a.new_row ->> 'id')::int
	WHERE a.operation <> 'UPDATE' OR a.old_row ->> 'v' <> 'v' || t.id OR a.new_row ->> 'v' <> t.v
		OR (a.new_row ->> 'n')::numeric <> (a.old_row ->> 'n')::numeric + 1
		OR a.changed_columns <> ARRAY['v', 'n']$$,
	'each with its old and new row and the changed columns');
SELECT is((SELECT count(DISTINCT (old_row ->> 'id')::int) FROM pg_temp.new_audit), 1500::bigint, 'each row once');

-- DELETE
SELECT pg_temp.mark();
DELETE FROM tap_bulk WHERE id > 1800;
SELECT is((SELECT count(*) FROM pg_temp.new_audit WHERE operation = 'DELETE' AND new_row IS NULL
	AND (old_row ->> 'id')::int > 1800 AND old_row ->> 'v' = 'v' || (old_row ->> 'id')), 200::bigint,
	'DELETE of 200 rows: 200 audit rows with their old rows');
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 200::bigint, 'and nothing else');

-- COPY
SELECT pg_temp.mark();
COPY tap_bulk (id, merchant_id, v, n) FROM STDIN;
5001	2	copied-1	1.5
5002	3	copied-2	\N
5003	2	4111111111111111	2
\.
SELECT results_eq($$SELECT operation, merchant_id, new_row ->> 'id', new_row ->> 'v' FROM pg_temp.new_audit ORDER BY audit_id$$,
	$$VALUES ('INSERT', 2::bigint, '5001', 'copied-1'), ('INSERT', 3::bigint, '5002', 'copied-2'),
		('INSERT', 2::bigint, '5003', '[card number removed by payments audit]')$$,
	'COPY: a row each, card numbers removed as for any insert');

-- card numbers in number columns and in text are found, each value being
-- scanned on its own; dates next to them are not mistaken for one
CREATE TABLE public.tap_nums (id int PRIMARY KEY, merchant_id bigint NOT NULL, big bigint, num numeric, t text, at timestamptz);
SELECT ok(payments.pay_audit_attach('tap_nums'), 'a table with number columns attached');
INSERT INTO tap_nums VALUES (1, 1, 4111111111111111, 5555555555554444, 'x', '2031-12-01 10:11:12+00'),
	(2, 1, 42, 1.5, '4111-1111-1111-1111', '2031-12-01 10:11:12+00'), (3, 1, 41111111, 4111.11, 'card 4111 1111', '2031-12-01 10:11:12+00');
SELECT results_eq($$SELECT new_row ->> 'big', new_row ->> 'num', new_row ->> 't', new_row ->> 'at'
	FROM payments.audit_log WHERE table_name = 'tap_nums' ORDER BY audit_id$$,
	$$VALUES ('[card number removed by payments audit]', '[card number removed by payments audit]', 'x', '2031-12-01T10:11:12+00:00'),
		('42', '1.5', '[card number removed by payments audit]', '2031-12-01T10:11:12+00:00'),
		('41111111', '4111.11', 'card 4111 1111', '2031-12-01T10:11:12+00:00')$$,
	'card numbers in bigint, numeric and text columns are removed; short numbers and dates stay');

-- an UPDATE's new row takes its unchanged values from the old row as built:
-- a card number in an unchanged column is removed from both rows
UPDATE tap_nums SET t = 'y' WHERE id IN (1, 2);
SELECT results_eq($$SELECT old_row ->> 'big', new_row ->> 'big', new_row ->> 'num', old_row ->> 't', new_row ->> 't',
		new_row ->> 'at', changed_columns
	FROM payments.audit_log WHERE table_name = 'tap_nums' AND operation = 'UPDATE' ORDER BY audit_id$$,
	$$VALUES ('[card number removed by payments audit]', '[card number removed by payments audit]',
			'[card number removed by payments audit]', 'x', 'y', '2031-12-01T10:11:12+00:00', ARRAY['t']),
		('42', '42', '1.5', '[card number removed by payments audit]', 'y', '2031-12-01T10:11:12+00:00', ARRAY['t'])$$,
	'UPDATE: unchanged values (card numbers removed) in both rows, the changed one new');

-- INSERT ... ON CONFLICT DO UPDATE: new rows inserted, existing ones updated
SELECT pg_temp.mark();
INSERT INTO tap_bulk SELECT g, 1, 'upsert', 0 FROM generate_series(1795, 1805) g
	ON CONFLICT (id) DO UPDATE SET v = excluded.v;
SELECT results_eq($$SELECT operation, count(*), min(coalesce(new_row, old_row) ->> 'id'), max(coalesce(new_row, old_row) ->> 'id')
	FROM pg_temp.new_audit GROUP BY operation ORDER BY operation$$,
	$$VALUES ('INSERT', 5::bigint, '1801', '1805'), ('UPDATE', 6::bigint, '1795', '1800')$$,
	'INSERT ... ON CONFLICT DO UPDATE: an INSERT row per new row, an UPDATE row per updated one');
SELECT is_empty($$SELECT 1 FROM pg_temp.new_audit WHERE operation = 'UPDATE'
	AND (old_row ->> 'v' NOT LIKE 'v%' OR new_row ->> 'v' <> 'upsert' OR changed_columns <> ARRAY['v'])$$,
	'the updated rows with their old and new values');

-- a statement that fails half way: the audit rows already written go too
CREATE FUNCTION pg_temp.fail_at_1500() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 1500 THEN
		RAISE EXCEPTION 'row 1500 refused' USING ERRCODE = 'P0001';
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_fail AFTER UPDATE ON tap_bulk FOR EACH ROW EXECUTE FUNCTION pg_temp.fail_at_1500();
SELECT pg_temp.mark();
SELECT throws_ok($$UPDATE tap_bulk SET v = 'never' WHERE id <= 1700$$, 'P0001', 'row 1500 refused',
	'an UPDATE whose 1,500th row fails after the audit trigger wrote the rows before it');
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 0::bigint, 'no audit row of the failed statement is left');
DROP TRIGGER zz_fail ON tap_bulk;

-- savepoints: rolled back, its rows' audit rows go; released, they stay
SELECT pg_temp.mark();
SAVEPOINT s1;
INSERT INTO tap_bulk SELECT g, 1, 'in s1', 0 FROM generate_series(6001, 6100) g;
ROLLBACK TO SAVEPOINT s1;
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 0::bigint, 'a savepoint rolled back takes its audit rows along');
INSERT INTO tap_bulk VALUES (6200, 2, 'after s1', 1);
SAVEPOINT s2;
INSERT INTO tap_bulk SELECT g, 1, 'in s2', 0 FROM generate_series(6001, 6010) g;
RELEASE SAVEPOINT s2;
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 11::bigint,
	'audited after the rollback to a savepoint, and in a released one');

-- a partitioned table: every partition's rows, once each
CREATE TABLE public.tap_parts (id int, merchant_id bigint NOT NULL, v text) PARTITION BY RANGE (id);
CREATE TABLE public.tap_parts_1 PARTITION OF tap_parts FOR VALUES FROM (0) TO (1000);
CREATE TABLE public.tap_parts_2 PARTITION OF tap_parts FOR VALUES FROM (1000) TO (2000);
SELECT ok(payments.pay_audit_attach('tap_parts'), 'a partitioned table is attached');
INSERT INTO tap_parts SELECT g, 1, 'p' FROM generate_series(990, 1009) g;
UPDATE tap_parts SET v = 'q' WHERE id BETWEEN 995 AND 1004;
SELECT results_eq($$SELECT table_name, operation, count(*), count(DISTINCT coalesce(new_row, old_row) ->> 'id')
	FROM payments.audit_log WHERE table_name LIKE 'tap_parts%' GROUP BY 1, 2 ORDER BY 1, 2$$,
	$$VALUES ('tap_parts_1'::text, 'INSERT'::text, 10::bigint, 10::bigint), ('tap_parts_1', 'UPDATE', 5, 5),
		('tap_parts_2', 'INSERT', 10, 10), ('tap_parts_2', 'UPDATE', 5, 5)$$,
	'rows routed to partitions: audited once each, under the partition''s name');

-- TRUNCATE of a partition by name, and the rows of inheritance children:
-- PostgreSQL gives a partition its parent's row triggers, not its TRUNCATE
-- trigger, and a parent's triggers never fire for its children's rows, so
-- both changed an audited table with no audit row (before: 0 rows each).
-- pay_audit_attach gives each partition and child its own.
TRUNCATE tap_parts_1;
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_parts_1' AND operation = 'TRUNCATE'),
	1::bigint, 'TRUNCATE of a partition by name: one audit row');
CREATE TABLE public.tap_parts_3 PARTITION OF tap_parts FOR VALUES FROM (2000) TO (3000);
SELECT ok(payments.pay_audit_attach('tap_parts'), 'a partition made later: attaching again gives it its TRUNCATE trigger');
TRUNCATE tap_parts_3;
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_parts_3' AND operation = 'TRUNCATE'),
	1::bigint, 'and its TRUNCATE is audited');
-- a partition's row trigger (its parent's clone) disabled by the owner:
-- attaching again enables it (before: false, "already attached")
ALTER TABLE tap_parts_1 DISABLE TRIGGER payments_audit;
SELECT ok(payments.pay_audit_attach('tap_parts'), 'a partition''s disabled row trigger is enabled again');
INSERT INTO tap_parts VALUES (5, 1, 'r');
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_parts_1' AND new_row ->> 'id' = '5'),
	1::bigint, 'and its rows are audited');
CREATE TABLE public.tap_parent (id int, merchant_id bigint NOT NULL, v text);
CREATE TABLE public.tap_child (extra text) INHERITS (tap_parent);
SELECT ok(payments.pay_audit_attach('tap_parent'), 'a table with an inheritance child is attached');
INSERT INTO tap_child VALUES (1, 1, 'a', 'e');
UPDATE tap_parent SET v = 'b';
DELETE FROM tap_parent;
INSERT INTO tap_child VALUES (2, 1, 'c', 'e');
TRUNCATE tap_child;
SELECT results_eq($$SELECT operation FROM payments.audit_log WHERE table_name = 'tap_child' ORDER BY audit_id$$,
	ARRAY['INSERT', 'UPDATE', 'DELETE', 'INSERT', 'TRUNCATE'],
	'an inheritance child''s rows, changed through the parent too, and its TRUNCATE: audited');
SELECT ok(payments.pay_audit_detach('tap_parent') AND payments.pay_audit_detach('tap_parts'), 'the parents detached');
SELECT is_empty($$SELECT 1 FROM pg_trigger WHERE tgname LIKE 'payments_audit%'
		AND tgrelid IN ('tap_child'::regclass, 'tap_parts_1'::regclass, 'tap_parts_3'::regclass)$$,
	'detaching the parent detaches its partitions and children');

-- audit_log's indexes changed in the transaction: rows written after it
-- are in the new index, and writing goes on after it is dropped
SELECT pg_temp.mark();
INSERT INTO tap_bulk VALUES (7001, 1, 'before the index', 1);
CREATE INDEX tap_audit_by_table ON payments.audit_log (table_name, audit_id);
INSERT INTO tap_bulk VALUES (7002, 1, 'after the index', 1);
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT is((SELECT count(*) FROM payments.audit_log a, tap_mark m WHERE a.table_name = 'tap_bulk' AND a.audit_id > m.since),
	2::bigint, 'an index made in the transaction has the audit rows written after it');
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP INDEX payments.tap_audit_by_table;
INSERT INTO tap_bulk VALUES (7003, 1, 'index dropped', 1);
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 3::bigint, 'and writing goes on when it is dropped');

-- CHECK constraints of audit_log hold for rows written the new way
ALTER TABLE payments.audit_log ADD CONSTRAINT tap_no_delete CHECK (operation <> 'DELETE') NOT VALID;
SELECT throws_ok($$DELETE FROM tap_bulk WHERE id = 7003$$, '23514', NULL,
	'a CHECK constraint of audit_log refuses an audit row that breaks it');
ALTER TABLE payments.audit_log DROP CONSTRAINT tap_no_delete;
SELECT lives_ok($$DELETE FROM tap_bulk WHERE id = 7003$$, 'and the row is written once the constraint is gone');

-- an INSERT trigger on audit_log still fires (such rows take the SPI path)
CREATE TEMP TABLE tap_seen (audit_id bigint);
CREATE FUNCTION pg_temp.seen() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	INSERT INTO tap_seen VALUES (NEW.audit_id);
	RETURN NEW;
END $$;
CREATE TRIGGER tap_seen AFTER INSERT ON payments.audit_log FOR EACH ROW EXECUTE FUNCTION pg_temp.seen();
INSERT INTO tap_bulk SELECT g, 1, 'seen', 0 FROM generate_series(8001, 8003) g;
SELECT is((SELECT count(*) FROM tap_seen t JOIN payments.audit_log a USING (audit_id)
	WHERE a.table_name = 'tap_bulk' AND a.new_row ->> 'v' = 'seen'), 3::bigint,
	'an INSERT trigger on audit_log fires for every audit row');
DROP TRIGGER tap_seen ON payments.audit_log;
INSERT INTO tap_bulk VALUES (8004, 1, 'unseen', 0);
SELECT is((SELECT count(*) FROM tap_seen), 3::bigint, 'and no more once it is dropped');
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_bulk' AND new_row ->> 'v' = 'unseen'),
	1::bigint, 'the direct path writes again');

-- the statement buffer (src/audit.c): rows wider than its byte limit, and
-- more than a batch, each audited once with its values
SELECT pg_temp.mark();
INSERT INTO tap_bulk SELECT g, 1 + g % 2, repeat('wide ', 400) || g, g FROM generate_series(10001, 13500) g;
SELECT is((SELECT count(*) FROM pg_temp.new_audit), 3500::bigint,
	'3,500 rows of 2 kB (past the buffer''s 4 MB and its 1,000-row batches): 3,500 audit rows');
SELECT is_empty($$SELECT 1 FROM pg_temp.new_audit a JOIN tap_bulk t ON t.id = (a.new_row ->> 'id')::int
	WHERE a.new_row <> jsonb_build_object('id', t.id, 'merchant_id', t.merchant_id, 'v', t.v, 'n', t.n)
		OR a.merchant_id <> t.merchant_id$$,
	'each with its own new row and merchant');
SELECT is((SELECT count(DISTINCT (new_row ->> 'id')::int) FROM pg_temp.new_audit), 3500::bigint, 'each row once');

-- subtransactions inside a statement's trigger firing: rows of the
-- statement buffered before a subtransaction stay when it rolls back; the
-- rows written in it go with it, those of a committed one stay
CREATE TABLE public.tap_side (id int PRIMARY KEY, merchant_id bigint NOT NULL);
SELECT ok(payments.pay_audit_attach('tap_side'), 'a second table attached');
CREATE FUNCTION pg_temp.side() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_ARGV[0] = 'nested' THEN	-- no subtransaction
		INSERT INTO tap_side VALUES (NEW.id, NEW.merchant_id);
		RETURN NULL;
	END IF;
	BEGIN
		INSERT INTO tap_side VALUES (NEW.id, NEW.merchant_id);
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	RETURN NULL;
END $$;
-- tap_side refuses even ids in an AFTER trigger that fires after its audit
-- trigger: the audit row is buffered in the subtransaction, not yet written
CREATE FUNCTION pg_temp.refuse_even() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id % 2 = 0 THEN
		RAISE EXCEPTION 'even' USING ERRCODE = 'P0001';
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_even AFTER INSERT ON tap_side FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_even();
CREATE TRIGGER zz_side AFTER INSERT ON tap_bulk FOR EACH ROW EXECUTE FUNCTION pg_temp.side('subtransaction');
SELECT pg_temp.mark();
INSERT INTO tap_bulk SELECT g, 1, 'side', 0 FROM generate_series(20001, 22500) g;
DROP TRIGGER zz_side ON tap_bulk;
SELECT is((SELECT count(*) FROM pg_temp.new_audit WHERE new_row ->> 'v' = 'side'), 2500::bigint,
	'2,500 rows inserted, each with a subtransaction in its AFTER trigger: 2,500 audit rows');
SELECT is((SELECT count(DISTINCT new_row ->> 'id') FROM pg_temp.new_audit WHERE new_row ->> 'v' = 'side'), 2500::bigint,
	'each once');
SELECT results_eq($$SELECT count(*), count(*) FILTER (WHERE (new_row ->> 'id')::int % 2 = 1)
	FROM payments.audit_log a, tap_mark m WHERE a.table_name = 'tap_side' AND a.audit_id > m.since$$,
	$$VALUES (1250::bigint, 1250::bigint)$$,
	'the rows of the 1,250 subtransactions rolled back are not audited, those of the 1,250 committed are');
SELECT is((SELECT count(*) FROM tap_side), 1250::bigint, 'as the table has them');
DROP TRIGGER zz_even ON tap_side;

-- a deferred audit trigger writes its rows when it fires
CREATE TABLE public.tap_deferred (id int PRIMARY KEY, merchant_id bigint NOT NULL);
CREATE CONSTRAINT TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON tap_deferred
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
INSERT INTO tap_deferred SELECT g, 1 FROM generate_series(1, 1500) g;
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_deferred'), 0::bigint,
	'a deferred audit trigger has not fired yet');
SET CONSTRAINTS ALL IMMEDIATE;
SELECT is((SELECT count(*) FROM payments.audit_log WHERE table_name = 'tap_deferred'
	AND operation = 'INSERT' AND (new_row ->> 'merchant_id')::int = 1), 1500::bigint,
	'SET CONSTRAINTS fires it: its 1,500 rows are written');
SET CONSTRAINTS ALL DEFERRED;

-- a nested statement (a trigger's INSERT) writes the outer statement's
-- rows buffered so far too; none twice, none lost
CREATE TRIGGER zz_nested AFTER INSERT ON tap_bulk FOR EACH ROW EXECUTE FUNCTION pg_temp.side('nested');
SELECT pg_temp.mark();
INSERT INTO tap_bulk SELECT g, 2, 'nested', 0 FROM generate_series(30001, 31500) g;
DROP TRIGGER zz_nested ON tap_bulk;
SELECT results_eq($$SELECT a.table_name, count(*), count(DISTINCT a.new_row ->> 'id')
	FROM payments.audit_log a, tap_mark m WHERE a.audit_id > m.since AND a.table_name IN ('tap_bulk', 'tap_side')
	GROUP BY 1 ORDER BY 1$$,
	$$VALUES ('tap_bulk'::text, 1500::bigint, 1500::bigint), ('tap_side', 1500, 1500)$$,
	'a statement whose trigger inserts into another audited table: every row of both once');

-- TRUNCATE
SELECT pg_temp.mark();
TRUNCATE tap_bulk;
SELECT is((SELECT string_agg(operation, ',') FROM pg_temp.new_audit), 'TRUNCATE', 'TRUNCATE: one audit row');

-- every row written above hashes right, seals and verifies
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'the rows written the new way verify before sealing');
SELECT cmp_ok(payments.pay_audit_seal(), '>', 0, 'they seal');
SELECT is(payments.pay_audit_verify(), NULL::jsonb, 'and verify sealed');

SELECT * FROM finish();
ROLLBACK;
