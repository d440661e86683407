#!/usr/bin/env bash
# Benchmark: what the audit trigger costs.  Prints figures; never fails on a
# slow machine (it is not a test, and the suite does not run it).
#
#   bash test/bench/audit_bench.sh [REPETITIONS] [PGBENCH_SECONDS]
#
# Three identical tables on one throwaway cluster, measured side by side in
# one run, the order of the sides rotated every repetition, medians printed:
#   none     no trigger
#   c        payments.pay_audit_attach (the C trigger, payments.audit_log)
#   plpgsql  the classic PL/pgSQL audit trigger (like audit-trigger 91plus):
#            AFTER ROW, INSERT INTO audit_ref (...) VALUES (..., to_jsonb(OLD),
#            to_jsonb(NEW)) into a table keyed by a bigserial
# Measurements:
#   bulk INSERT ... SELECT of 200,000 rows, then UPDATE of those 200,000 rows
#   (every measurement on emptied tables after a CHECKPOINT): the duration,
#   and the CPU time of the backend (steadier on a shared machine)
#   single-row INSERTs from 8 pgbench clients, synchronous_commit off and on
#   instructions (valgrind's callgrind, the server in single-user mode) of
#   the bulk INSERT and UPDATE of BENCH_INSTRUCTION_ROWS rows (default
#   20,000): the same for the same build on any machine
# BENCH_HUGEPAGES=tuned runs the cluster on huge pages (huge_pages_reserve,
# test/lib/common.sh).
set -euo pipefail
REPS=${1:-5}
PGB_SECONDS=${2:-10}
ROWS=${BENCH_ROWS:-200000}
source "$(dirname "$0")/bench_setup.sh"
source "$(dirname "$0")/callgrind.sh"

# No simulator needed: a plain cluster with the extension.
cluster_init "$WORK" "$PORT" "shared_buffers = 512MB" "max_wal_size = 8GB" \
	"checkpoint_timeout = 30min" "wal_init_zero = off" "autovacuum = off"
[ "${BENCH_HUGEPAGES:-machine}" != tuned ] || huge_pages_reserve "$WORK/data"
cluster_start "$WORK"
cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE payments' >/dev/null
q -c 'CREATE EXTENSION payments' >/dev/null

q >/dev/null <<'SQL'
CREATE TABLE audit_ref (
	audit_id bigserial PRIMARY KEY,
	table_schema text NOT NULL,
	table_name text NOT NULL,
	operation text NOT NULL,
	db_role text NOT NULL,
	session_role text NOT NULL,
	txid bigint NOT NULL,
	logged_at timestamptz NOT NULL,
	old_row jsonb,
	new_row jsonb
);
CREATE FUNCTION audit_ref_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO audit_ref (table_schema, table_name, operation, db_role, session_role, txid, logged_at, old_row, new_row)
		VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, current_user, session_user, txid_current(), statement_timestamp(), NULL, to_jsonb(NEW));
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO audit_ref (table_schema, table_name, operation, db_role, session_role, txid, logged_at, old_row, new_row)
		VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, current_user, session_user, txid_current(), statement_timestamp(), to_jsonb(OLD), to_jsonb(NEW));
	ELSE
		INSERT INTO audit_ref (table_schema, table_name, operation, db_role, session_role, txid, logged_at, old_row, new_row)
		VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, current_user, session_user, txid_current(), statement_timestamp(), to_jsonb(OLD), NULL);
	END IF;
	RETURN NULL;
END $$;
SQL
for side in none c plpgsql; do
	q >/dev/null <<SQL
CREATE TABLE t_$side (
	id bigserial PRIMARY KEY,
	merchant_id bigint NOT NULL,
	amount numeric(12,2) NOT NULL,
	currency text NOT NULL,
	status text NOT NULL,
	reference text,
	created_at timestamptz NOT NULL DEFAULT now()
);
SQL
done
q -c "SELECT payments.pay_audit_attach('t_c')" >/dev/null
q -c "CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON t_plpgsql FOR EACH ROW EXECUTE FUNCTION audit_ref_trigger()" >/dev/null

# Empty every table (the audit log's TRUNCATE guard set aside for this
# throwaway cluster), then checkpoint: each measurement starts alike.
reset_tables() {
	q >/dev/null <<'SQL'
ALTER TABLE payments.audit_log DISABLE TRIGGER audit_log_guard_truncate;
TRUNCATE payments.audit_log, audit_ref, t_none, t_c, t_plpgsql;
ALTER TABLE payments.audit_log ENABLE ALWAYS TRIGGER audit_log_guard_truncate;
CHECKPOINT;
SQL
}

# timed SQL: "WALL CPU": the statement's duration in ms as psql's \timing
# reports it, and the CPU time its backend used meanwhile (user + system,
# from /proc: steadier than the duration on a busy machine)
CPU_SQL="SELECT 'cpu', (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint) * 1000 / $(getconf CLK_TCK) FROM pg_read_file('/proc/self/stat') s"
timed() {
	q -F ' ' -c '\timing on' -c "$CPU_SQL" -c "$1" -c "$CPU_SQL" |
		awk '/^cpu /{ c[n++] = $2 } /^Time: /{ t[m++] = $2 } END { printf "%s %d\n", t[1], c[1] - c[0] }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

SIDES=(none c plpgsql)
declare -A RES
record() { RES[$1]="${RES[$1]:-} $2"; }

insert_sql() {
	echo "INSERT INTO t_$1 (merchant_id, amount, currency, status, reference)
		SELECT 1 + g % 3, (g % 10000) / 100.0, 'USD', 'pending', 'order-' || g FROM generate_series(1, $ROWS) g"
}
update_sql() { echo "UPDATE t_$1 SET status = 'settled', amount = amount + 1"; }

log "bulk: $REPS repetitions of INSERT ... SELECT and UPDATE of $ROWS rows per side"
for rep in $(seq "$REPS"); do
	for k in 0 1 2; do
		side=${SIDES[$(((rep + k) % 3))]}
		reset_tables
		read -r wall cpu < <(timed "$(insert_sql "$side")")
		record "insert_$side" "$wall"
		record "cpu_insert_$side" "$cpu"
		q -c "VACUUM ANALYZE t_$side" -c CHECKPOINT >/dev/null
		read -r wall cpu < <(timed "$(update_sql "$side")")
		record "update_$side" "$wall"
		record "cpu_update_$side" "$cpu"
	done
done
audit_rows=$(q -c "SELECT count(*) FROM payments.audit_log")

# pgbench: one INSERT per transaction
cat > "$WORK/single.sql" <<'SQL'
\set m random(1, 3)
INSERT INTO :table (merchant_id, amount, currency, status, reference) VALUES (:m, 12.34, 'USD', 'pending', 'single');
SQL
as_root chown "$PG_OS_USER" "$WORK/single.sql"
for sc in off on; do
	log "single-row inserts, 8 clients, synchronous_commit $sc: $REPS x ${PGB_SECONDS}s per side"
	q -c "ALTER DATABASE payments SET synchronous_commit = $sc" >/dev/null
	for rep in $(seq "$REPS"); do
		for k in 0 1 2; do
			side=${SIDES[$(((rep + k) % 3))]}
			reset_tables
			tps=$(pgb -n -f "$WORK/single.sql" -D table="t_$side" -c 8 -j 2 -T "$PGB_SECONDS" payments 2>/dev/null |
				sed -n 's/^tps = \([0-9.]*\).*/\1/p')
			record "tps_${sc}_$side" "$tps"
		done
	done
done
q -c "ALTER DATABASE payments RESET synchronous_commit" >/dev/null

# Instructions (callgrind, the server in single-user mode): the same for
# the same build on any machine, where the times above move with the
# machine.  Per side, one run inserts IROWS rows into its emptied table and
# one inserts them and updates them; the difference is the update.
# BENCH_INSTRUCTIONS=0 skips this part.
IROWS=${BENCH_INSTRUCTION_ROWS:-20000}
declare -A INS
if [ "${BENCH_INSTRUCTIONS:-1}" = 1 ]; then
	install_deps valgrind
	# from the same state whatever ran before (the count depends on what
	# audit_log already holds: 400,000 rows left by the bulk phase or none)
	reset_tables
	cluster_stop "$WORK"
	log "instructions: INSERT ... SELECT and UPDATE of $IROWS rows per side, under callgrind"
	for side in "${SIDES[@]}"; do
		for run in insert both; do
			base=$WORK/instructions-$side-$run
			{
				echo "TRUNCATE t_$side;"
				echo "$(ROWS=$IROWS insert_sql "$side" | tr '\n' ' ');"
				[ "$run" = insert ] || echo "$(update_sql "$side");"
			} >"$base.sql"
			callgrind_single "$PG_BINDIR" "$WORK/data" "$base.sql" "$base.callgrind"
			callgrind_inclusive "$base.callgrind" >"$base.counts"
			INS[$side-$run]=$(callgrind_value "$base.counts" TOTAL)
			INS[$side-$run-sha]=$(callgrind_value "$base.counts" EVP_DigestUpdate EVP_DigestFinal_ex)
		done
	done
fi

med() { tr ' ' '\n' <<<"${RES[$1]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "== audit trigger benchmark: $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $REPS repetitions, medians"
echo "   (the last repetition's audit_log had $audit_rows rows after the bulk phase)"
printf '%-34s %10s %10s %10s   %s\n' "" none c plpgsql "c / plpgsql"
for m in insert update; do
	n=$(med "${m}_none") c=$(med "${m}_c") p=$(med "${m}_plpgsql")
	printf '%-34s %10s %10s %10s   %s (plpgsql is %sx the time of c; audit overhead c %s ms, plpgsql %s ms)\n' \
		"bulk $m of $ROWS rows (ms)" "$n" "$c" "$p" "$(ratio "$c" "$p")" "$(ratio "$p" "$c")" \
		"$(awk -v a="$c" -v b="$n" 'BEGIN { printf "%.0f", a - b }')" "$(awk -v a="$p" -v b="$n" 'BEGIN { printf "%.0f", a - b }')"
done
for m in insert update; do
	n=$(med "cpu_${m}_none") c=$(med "cpu_${m}_c") p=$(med "cpu_${m}_plpgsql")
	printf '%-34s %10s %10s %10s   %s (plpgsql is %sx the CPU time of c; audit overhead c %s ms, plpgsql %s ms: %sx)\n' \
		"bulk $m, backend CPU (ms)" "$n" "$c" "$p" "$(ratio "$c" "$p")" "$(ratio "$p" "$c")" \
		"$(awk -v a="$c" -v b="$n" 'BEGIN { printf "%.0f", a - b }')" "$(awk -v a="$p" -v b="$n" 'BEGIN { printf "%.0f", a - b }')" \
		"$(awk -v c="$c" -v p="$p" -v n="$n" 'BEGIN { printf "%.2f", (p - n) / (c - n) }')"
done
for sc in off on; do
	n=$(med "tps_${sc}_none") c=$(med "tps_${sc}_c") p=$(med "tps_${sc}_plpgsql")
	printf '%-34s %10s %10s %10s   %s\n' "single-row TPS, sync_commit $sc" "$n" "$c" "$p" "$(ratio "$c" "$p")"
done
if [ "${BENCH_INSTRUCTIONS:-1}" = 1 ]; then
	echo
	echo "== instructions of $IROWS rows (callgrind; the same for the same build on any machine)"
	printf '%-34s %14s %14s %14s   %s\n' "" none c plpgsql "audit overhead, plpgsql / c"
	for m in insert update; do
		declare -A total=() sha=()
		for side in "${SIDES[@]}"; do
			if [ "$m" = insert ]; then
				total[$side]=${INS[$side-insert]} sha[$side]=${INS[$side-insert-sha]}
			else
				total[$side]=$((INS[$side-both] - INS[$side-insert]))
				sha[$side]=$((INS[$side-both-sha] - INS[$side-insert-sha]))
			fi
		done
		oc=$((total[c] - total[none])) op=$((total[plpgsql] - total[none]))
		printf '%-34s %14s %14s %14s   %s (without SHA-256, which valgrind runs at about 15 times its real cost: %s)\n' \
			"bulk $m" "${total[none]}" "${total[c]}" "${total[plpgsql]}" "$(ratio "$op" "$oc")" \
			"$(ratio "$((op - sha[plpgsql] + sha[none]))" "$((oc - sha[c] + sha[none]))")"
	done
fi
echo
echo "raw:"
for key in $(printf '%s\n' "${!RES[@]}" | sort); do
	echo "  $key:${RES[$key]}"
done
