#!/usr/bin/env bash
# The audit trigger buffers a statement's audit rows and writes them
# together (src/audit.c, "The statement buffer").  What only a real commit,
# a second session or separate statements show: a deferred audit trigger's
# rows are written at COMMIT; COPY's rows after the COPY; nothing of a
# rolled-back transaction or a failed autocommit statement; rows of
# committed work visible to another session at once; two sessions writing
# at the same time, then sealed, verify.
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

tap_done
