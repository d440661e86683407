#!/usr/bin/env bash
# The audit trigger buffers a statement's audit rows and writes them
# together (src/audit.c, "The statement buffer").  What only a real commit,
# a second session or separate statements show: a deferred audit trigger's
# rows are written at COMMIT; COPY's rows after the COPY; nothing of a
# rolled-back transaction or a failed autocommit statement; rows of
# committed work visible to another session at once; two sessions writing
# at the same time, then sealed, verify; large statements through a
# bulk-insert state, with savepoints, a caught error and a TRUNCATE in
# their transaction.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
count() { q -c "SELECT count(*) FROM payments.audit_log WHERE table_schema = 'public' AND table_name = '$1' ${2:+AND $2}"; }

q >/dev/null <<'SQL'
CREATE TABLE public.buf_t (id int PRIMARY KEY, merchant_id bigint NOT NULL, v text);
SELECT payments.pay_audit_attach('public.buf_t');
CREATE TABLE public.buf_d (id int PRIMARY KEY, merchant_id bigint NOT NULL);
CREATE CONSTRAINT TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON public.buf_d
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
SQL

# 1. deferred: nothing before COMMIT, every row after it (2,500 rows: more
# than one batch), seen by another session
q -c "BEGIN" -c "INSERT INTO public.buf_d SELECT g, 1 FROM generate_series(1, 2500) g" \
	-c "SELECT count(*) FROM payments.audit_log WHERE table_name = 'buf_d'" -c "COMMIT" >"$WORK/buf_d.out"
is "$(head -1 "$WORK/buf_d.out")" 0 "a deferred audit trigger has written nothing before COMMIT"
is "$(count buf_d)" 2500 "its 2,500 audit rows are written at COMMIT (another session sees them)"
is "$(count buf_d "operation = 'INSERT' AND new_row ->> 'id' IS NOT NULL" )" 2500 "each an INSERT with its new row"
is "$(q -c "SELECT count(DISTINCT new_row ->> 'id') FROM payments.audit_log WHERE table_name = 'buf_d'")" 2500 "each row once"

# 2. COPY in autocommit: its rows are there when the COPY is done
seq 1 1500 | awk '{ printf "%d\t%d\tcopied %d\n", $1, 1 + $1 % 2, $1 }' >"$WORK/buf.tsv"
chmod 644 "$WORK/buf.tsv"
q -c "\\copy public.buf_t FROM '$WORK/buf.tsv'" >/dev/null
is "$(count buf_t "operation = 'INSERT'")" 1500 "COPY of 1,500 rows: 1,500 audit rows"
is "$(count buf_t "merchant_id = 1 + (new_row ->> 'id')::int % 2 AND new_row ->> 'v' = 'copied ' || (new_row ->> 'id')")" 1500 \
	"each with its own merchant and values"

# 3. a transaction rolled back, a statement that fails in autocommit: no
# audit row of them; the statement before the failing one keeps its rows
q -c "BEGIN" -c "UPDATE public.buf_t SET v = 'rolled back'" -c "ROLLBACK" >/dev/null
is "$(count buf_t "operation = 'UPDATE'")" 0 "an UPDATE of 1,500 rows rolled back: no audit row"
q >/dev/null <<'SQL'
CREATE FUNCTION public.buf_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.v = 'failed' AND NEW.id = 1400 THEN
		RAISE EXCEPTION 'row 1400 refused';
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER zz_fail AFTER UPDATE ON public.buf_t FOR EACH ROW EXECUTE FUNCTION public.buf_fail();
SQL
q -c "UPDATE public.buf_t SET v = 'kept' WHERE id <= 100" >/dev/null
q -c "UPDATE public.buf_t SET v = 'failed'" >/dev/null 2>&1 && failed=0 || failed=1
ok $((1 - failed)) "an UPDATE of 1,500 rows fails at its 1,400th row's AFTER trigger, after the audit trigger's"
is "$(count buf_t "operation = 'UPDATE'")" 100 "none of its audit rows (1,000 of them written before the failure) is left; the statement before it keeps its 100"
q -c "DROP TRIGGER zz_fail ON public.buf_t" >/dev/null
is "$(count buf_t "operation = 'UPDATE' AND old_row ->> 'v' LIKE 'copied %' AND new_row ->> 'v' = 'kept' AND changed_columns = ARRAY['v']")" 100 \
	"with their old and new rows"

# 3b. two-phase commit: a deferred trigger's buffered rows are written at
# PREPARE TRANSACTION; COMMIT PREPARED keeps them, ROLLBACK PREPARED drops
# them with the rest of the transaction
q -c "BEGIN" -c "INSERT INTO public.buf_d SELECT g, 2 FROM generate_series(10001, 10300) g" \
	-c "UPDATE public.buf_t SET v = 'prepared' WHERE id <= 50" -c "PREPARE TRANSACTION 'audit_2pc_commit'" >/dev/null
is "$(count buf_d "merchant_id = 2")" 0 "a prepared transaction's audit rows are not visible before COMMIT PREPARED"
q -c "COMMIT PREPARED 'audit_2pc_commit'" >/dev/null
is "$(count buf_d "merchant_id = 2")" 300 "COMMIT PREPARED: the deferred trigger's 300 rows are there"
is "$(count buf_t "new_row ->> 'v' = 'prepared'")" 50 "and the immediate trigger's 50"
q -c "BEGIN" -c "INSERT INTO public.buf_d SELECT g, 3 FROM generate_series(20001, 20300) g" \
	-c "PREPARE TRANSACTION 'audit_2pc_rollback'" -c "ROLLBACK PREPARED 'audit_2pc_rollback'" >/dev/null
is "$(count buf_d "merchant_id = 3")" 0 "ROLLBACK PREPARED: none of its rows"

# 4. two sessions writing at once, each in its own transactions; then seal
# and verify
for s in 1 2; do
	(for i in $(seq 20); do
		echo "INSERT INTO public.buf_t SELECT g, $s, 's$s' FROM generate_series(100000 * $s + 100 * $i, 100000 * $s + 100 * $i + 99) g;"
	done | q >/dev/null) &
done
wait
is "$(count buf_t "new_row ->> 'v' IN ('s1', 's2')")" 4000 "two sessions, 20 statements of 100 rows each: 4,000 audit rows"
is "$(q -c "SELECT count(*) FROM public.buf_t a WHERE v IN ('s1', 's2') AND NOT EXISTS (SELECT 1 FROM payments.audit_log l WHERE l.table_name = 'buf_t' AND l.operation = 'INSERT' AND (l.new_row ->> 'id')::int = a.id)")" 0 \
	"every row inserted has its audit row"

ok "$([ "$(q -c "SELECT payments.pay_audit_seal()")" -gt 0 ] && echo 0 || echo 1)" "the rows seal"
is "$(q -c "SELECT coalesce(payments.pay_audit_verify()::text, 'intact')")" intact "and verify"

# Sections 5 and 6 in a database of their own: 6 empties its audit log,
# which every later test's verification of the shared one would report.
DB=audit_bulk_test
cleanup() { cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
qb() { cluster_psql "$WORK" "$PORT" "$DB" -At "$@"; }
countb() { qb -c "SELECT count(*) FROM payments.audit_log WHERE table_schema = 'public' AND table_name = '$1' ${2:+AND $2}"; }
qb >/dev/null <<'SQL'
CREATE EXTENSION payments;
CREATE EXTENSION pg_buffercache;
CREATE TABLE public.bulk_t (id int PRIMARY KEY, merchant_id bigint NOT NULL, v text);
SELECT payments.pay_audit_attach('public.bulk_t');
SQL

# 5. large statements write their audit rows through a bulk-insert state,
# as COPY does (src/direct_insert.c): a ring of shared buffers the backend
# reuses, so that a bulk write does not push everything else out
CACHED_AUDIT="SELECT count(*) FROM pg_buffercache WHERE relfilenode = pg_relation_filenode('payments.audit_log')
	AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
pages0=$(qb -c "SELECT pg_relation_size('payments.audit_log') / 8192")
cached0=$(qb -c "$CACHED_AUDIT")
# (and what the backend's audit buffer holds after it, and after an UPDATE
# of those rows in the same session: the memory of one batch, kept for the
# next statement, not given back to the system to be faulted in again for
# every batch, and no more than that)
BUFMEM="SELECT coalesce(sum(total_bytes), 0) FROM pg_backend_memory_contexts WHERE name = 'payments audit buffer'"
qb -q -c "INSERT INTO public.bulk_t SELECT g, 4, 'bulk' FROM generate_series(1000001, 1200000) g" \
	-c "$BUFMEM" -c "UPDATE public.bulk_t SET v = 'bulk, updated' WHERE merchant_id = 4" -c "$BUFMEM" >"$WORK/bufmem.out"
pages=$(( $(qb -c "SELECT pg_relation_size('payments.audit_log') / 8192") - pages0 ))
cached=$(( $(qb -c "$CACHED_AUDIT") - cached0 ))
is "$(countb bulk_t "merchant_id = 4 AND operation = 'INSERT'")" 200000 "an INSERT of 200,000 rows: 200,000 audit rows"
ok "$([ "$pages" -gt 5000 ] && [ "$cached" -lt $((pages / 2)) ] && echo 0 || echo 1)" \
	"written through a ring of buffers (16 MB): $pages pages added to audit_log, $cached more of its pages in shared buffers"
is "$(countb bulk_t "merchant_id = 4 AND operation = 'UPDATE' AND new_row ->> 'v' = 'bulk, updated'")" 200000 \
	"the UPDATE of them: 200,000 audit rows"
ok "$(awk '$1 < 2097152 || $1 > 2097152 + 65536 { bad = 1 } END { print (NR == 2 && !bad) ? 0 : 1 }' "$WORK/bufmem.out")" \
	"after each bulk statement the session's audit buffer keeps one batch's 2 MB, no less and no more: $(paste -sd' ' "$WORK/bufmem.out") bytes"

# in one transaction: bulk statements at the top level (with the state),
# a savepoint's bulk UPDATE rolled back and one in a PL/pgSQL block whose
# error is caught (without it, while it holds its page), then more
qb >"$WORK/bulk_tx.out" 2>&1 <<'SQL'
BEGIN;
INSERT INTO public.bulk_t SELECT g, 5, 'bulk' FROM generate_series(2000001, 2003000) g;
SAVEPOINT s;
UPDATE public.bulk_t SET v = 'in savepoint' WHERE merchant_id = 5;
ROLLBACK TO SAVEPOINT s;
UPDATE public.bulk_t SET v = 'after savepoint' WHERE merchant_id = 5 AND id <= 2001500;
DO $$
BEGIN
	UPDATE public.bulk_t SET v = 'caught' WHERE merchant_id = 5;
	RAISE EXCEPTION 'undone';
EXCEPTION WHEN raise_exception THEN NULL;
END $$;
UPDATE public.bulk_t SET v = 'last' WHERE merchant_id = 5 AND id > 2002900;
INSERT INTO public.bulk_t SELECT g, 5, 'bulk 2' FROM generate_series(2003001, 2004000) g;
COMMIT;
SQL
is "$(grep -ci 'warning\|error' "$WORK/bulk_tx.out" || true)" 0 "the transaction commits without a warning"
is "$(countb bulk_t "merchant_id = 5 AND operation = 'INSERT'")" 4000 "its two bulk INSERTs: 4,000 audit rows"
is "$(countb bulk_t "merchant_id = 5 AND operation = 'UPDATE' AND new_row ->> 'v' = 'after savepoint'")" 1500 \
	"the UPDATE after the savepoint: 1,500"
is "$(countb bulk_t "merchant_id = 5 AND operation = 'UPDATE' AND new_row ->> 'v' = 'last' AND old_row ->> 'v' IN ('bulk', 'after savepoint')")" 100 \
	"the UPDATE after the caught error: 100, with the rows as they were"
is "$(countb bulk_t "merchant_id = 5 AND new_row ->> 'v' IN ('in savepoint', 'caught')")" 0 \
	"none of the rolled-back savepoint's or the caught block's"
is "$(grep -c 'leak' "$WORK/postgres.log" || true)" 0 "no buffer or resource leak reported in the server log"

ok "$([ "$(qb -c "SELECT payments.pay_audit_seal()")" -gt 0 ] && echo 0 || echo 1)" "these rows seal"
is "$(qb -c "SELECT coalesce(payments.pay_audit_verify()::text, 'intact')")" intact "and verify"

# 6. the owner empties audit_log (its guard set aside) between two bulk
# statements of one transaction: the rows after go to the new file, not to
# a page of the old one the bulk-insert state still holds (it is released
# before every utility statement)
qb >"$WORK/bulk_truncate.out" 2>&1 <<'SQL'
BEGIN;
INSERT INTO public.bulk_t SELECT g, 6, 'before' FROM generate_series(3000001, 3001000) g;
ALTER TABLE payments.audit_log DISABLE TRIGGER audit_log_guard_truncate;
TRUNCATE payments.audit_log;
ALTER TABLE payments.audit_log ENABLE ALWAYS TRIGGER audit_log_guard_truncate;
INSERT INTO public.bulk_t SELECT g, 6, 'after' FROM generate_series(3001001, 3003000) g;
COMMIT;
SQL
is "$(grep -ci 'warning\|error' "$WORK/bulk_truncate.out" || true)" 0 "TRUNCATE between two bulk statements: committed without a warning"
is "$(qb -c "SELECT count(*) FILTER (WHERE new_row ->> 'v' = 'after') || '/' || count(*) FROM payments.audit_log")" 2000/2000 \
	"audit_log holds the 2,000 rows of the second statement, and only those"

tap_done
