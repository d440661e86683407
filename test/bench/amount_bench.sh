#!/usr/bin/env bash
# Benchmark: pay_amount against bigint and numeric(14,2).  Prints figures;
# never fails on a slow machine (it is not a test, and the suite does not
# run it).
#
#   bash test/bench/amount_bench.sh [ROWS]      (default 10000000)
#
# On a throwaway cluster of its own (the suite's private install), with
# one single-column table per type holding the same values (random minor
# units of USD, cents in numeric), it times, side by side and alternating
# the types in every repetition (BENCH_REPS, default 7), the median of:
#   sum serial     sum(v) over ROWS rows, max_parallel_workers_per_gather = 0
#   sum parallel   the same with 2 workers (Partial Aggregate)
#   min/max        min(v), max(v) over ROWS rows, serial
#   where          count(*) WHERE v < (a value near the median), serial
#   sort lone      ORDER BY v of the lone column: a full in-memory sort of
#                  ROWS/10 rows (SELECT v ... ORDER BY v OFFSET 1e9).
#                  PostgreSQL 15 sorts a lone column as bare Datums only for
#                  by-value types (bigint): numeric takes the tuple sort,
#                  pay_amount the extension's node, a Datum sort of 64-bit
#                  keys (the plans and their trace_sort lines are printed)
#   sort lone Sort the same with payments.amount_sort = off: pay_amount in
#                  PostgreSQL's tuple sort, as numeric (the others as above)
#   sort rows      the same sort of rows (v, 1): every type takes the tuple
#                  sort; the like-for-like comparison of the sorts themselves
#   distinct sort  SELECT DISTINCT v of those ROWS/10 rows with hash
#                  aggregation off: a Unique over the sort (pay_amount's
#                  the extension's node, as for ORDER BY)
#   index build    CREATE INDEX on those ROWS/10 rows, serial
# each in wall-clock time (psql's \timing) and, for the serial ones, in the
# CPU time of the backend (/proc/self/schedstat, nanoseconds: less noisy on
# a shared machine), with the ratios to bigint.  JIT is off (its compile
# time would blur the figures).
# BENCH_HUGEPAGES=tuned runs the cluster on huge pages (README, Operations):
# each parallel worker is a new process, which without them takes a page
# fault for every 4 kB of shared buffers it reads.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
ROWS=${1:-10000000}
REPS=${BENCH_REPS:-7}
SORT_ROWS=$((ROWS / 10))

install_deps
WORK=$(mktemp -d /tmp/payments-amount-bench.XXXXXX)
PORT=$(free_port)
cleanup() { cluster_stop "$WORK"; huge_pages_release; as_root rm -rf "$WORK"; }
[ "${BENCH_KEEP:-}" = 1 ] || trap cleanup EXIT
build_and_install_private "$WORK"

cluster_init "$WORK" "$PORT" "shared_buffers = 2GB" "max_wal_size = 4GB" "wal_init_zero = off" \
	"fsync = off" "synchronous_commit = off" "full_page_writes = off" "jit = off" \
	"work_mem = 512MB" "maintenance_work_mem = 512MB" "max_parallel_workers = 4" \
	"max_parallel_maintenance_workers = 0" "autovacuum = off"
[ "${BENCH_HUGEPAGES:-machine}" != tuned ] || huge_pages_reserve "$WORK/data"
cluster_start "$WORK"
cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE payments' >/dev/null
q() { cluster_psql "$WORK" "$PORT" payments "$@"; }
q -c 'CREATE EXTENSION payments' -c 'ALTER DATABASE payments SET search_path = public, payments' >/dev/null

log "loading $ROWS rows per type, and $SORT_ROWS for the sorts"
q >/dev/null <<SQL
SELECT setseed(0.42);
CREATE TABLE t_bigint AS SELECT (random() * 20000000)::bigint - 10000000 AS v FROM generate_series(1, $ROWS);
CREATE TABLE t_numeric AS SELECT (v / 100.0)::numeric(14,2) AS v FROM t_bigint;
CREATE TABLE t_amount AS SELECT payments.pay_amount_from_minor(v, 'USD') AS v FROM t_bigint;
CREATE TABLE s_bigint AS SELECT v FROM t_bigint LIMIT $SORT_ROWS;
CREATE TABLE s_numeric AS SELECT (v / 100.0)::numeric(14,2) AS v FROM s_bigint;
CREATE TABLE s_amount AS SELECT payments.pay_amount_from_minor(v, 'USD') AS v FROM s_bigint;
VACUUM (FREEZE, ANALYZE) t_bigint, t_numeric, t_amount, s_bigint, s_numeric, s_amount;
SQL
q -At -c "SELECT 'table sizes: ' || string_agg(c || ' ' || pg_size_pretty(pg_table_size(c::regclass)), ', ')
	FROM unnest(ARRAY['t_bigint','t_numeric','t_amount']) c"

# The literal each type compares with in the WHERE test: about the median.
declare -A LIT=([bigint]="0::bigint" [numeric]="0.00::numeric(14,2)" [amount]="'0.00 USD'::payments.pay_amount")
TYPES=(bigint numeric amount)
TESTS=("sum serial" "sum parallel" "min/max" "where" "sort lone" "sort lone Sort" "sort rows" "distinct sort" "index build")

# One psql session runs everything; each timed statement follows its
# settings and a marker line, and psql's \timing line after it is kept.
SERIAL="SET max_parallel_workers_per_gather = 0;"
PARALLEL="SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;"
RESET="RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size; RESET payments.amount_sort; RESET enable_hashagg;"
# the backend's CPU time so far, in nanoseconds (its first schedstat field)
CPU="SELECT '@cpu ' || split_part(pg_read_file('/proc/self/schedstat'), ' ', 1);"
# stmt TEST TYPE: sets SETUP and TIMED
stmt() {
	local test=$1 type=$2
	local t="t_$type" s="s_$type"
	SETUP="$RESET $SERIAL"
	case $test in
	"sum serial") TIMED="SELECT sum(v) FROM $t;" ;;
	"sum parallel") SETUP=$PARALLEL TIMED="SELECT sum(v) FROM $t;" ;;
	"min/max") TIMED="SELECT min(v), max(v) FROM $t;" ;;
	"where") TIMED="SELECT count(*) FROM $t WHERE v < ${LIT[$type]};" ;;
	# (without the index the index build test leaves)
	"sort lone") SETUP="$SETUP DROP INDEX IF EXISTS i_$type;" TIMED="SELECT v FROM $s ORDER BY v OFFSET 1e9;" ;;
	"sort lone Sort") SETUP="$SETUP DROP INDEX IF EXISTS i_$type; SET payments.amount_sort = off;" TIMED="SELECT v FROM $s ORDER BY v OFFSET 1e9;" ;;
	"sort rows") SETUP="$SETUP DROP INDEX IF EXISTS i_$type;" TIMED="SELECT v, 1 FROM $s ORDER BY v OFFSET 1e9;" ;;
	"distinct sort") SETUP="$SETUP DROP INDEX IF EXISTS i_$type; SET enable_hashagg = off;" TIMED="SELECT DISTINCT v FROM $s OFFSET 1e9;" ;;
	"index build") SETUP="$SETUP DROP INDEX IF EXISTS i_$type;" TIMED="CREATE INDEX i_$type ON $s (v);" ;;
	esac
}

script=$WORK/bench.sql
{
	printf '%s\n' '\pset pager off' 'SET client_min_messages = warning;'
	# warm the buffers
	for type in "${TYPES[@]}"; do
		echo "SELECT count(*) FROM t_$type; SELECT count(*) FROM s_$type;"
	done
	for rep in $(seq "$REPS"); do
		for test in "${TESTS[@]}"; do
			# alternate the order of the types from one repetition to the next
			if [ $((rep % 2)) = 1 ]; then order=("${TYPES[@]}"); else order=(amount numeric bigint); fi
			for type in "${order[@]}"; do
				stmt "$test" "$type"
				# a sort runs once untimed first: the first sort after the
				# scans of ROWS rows took up to 1.5 times as long, for
				# whichever type came first
				WARM=""
				[[ $test != *sort* ]] || WARM=$TIMED
				printf '%s\n' "$SETUP" "$WARM" "\\echo @mark $test|$type" "$CPU" '\timing on' "$TIMED" '\timing off' "$CPU"
			done
		done
	done
} > "$script"
as_root chown "$PG_OS_USER" "$script"

# Show the parallel plans once (the figures mean nothing without them).
for type in "${TYPES[@]}"; do
	plan=$(q -At -c "SET max_parallel_workers_per_gather = 2" -c "SET parallel_setup_cost = 0" \
		-c "SET parallel_tuple_cost = 0" -c "SET min_parallel_table_scan_size = 0" -c "EXPLAIN SELECT sum(v) FROM t_$type")
	printf 'parallel plan for %s: %s\n' "$type" "$(grep -c 'Partial Aggregate' <<<"$plan") Partial Aggregate, $(sed -n 's/.*Workers Planned: \([0-9]*\).*/\1 workers planned/p' <<<"$plan")"
done

# Which node and sort each type's lone-column ORDER BY takes (Datum or
# tuple sort), and whether the abbreviated keys are kept.
for type in "${TYPES[@]}"; do
	printf 'sort lone %s: %s, %s\n' "$type" "$(q -At -c "SET max_parallel_workers_per_gather = 0" \
		-c "EXPLAIN (COSTS OFF) SELECT v FROM s_$type ORDER BY v OFFSET 1e9" | sed -n '2s/^ *-> *//p')" \
		"$(q -At -c "SET max_parallel_workers_per_gather = 0" -c "SET trace_sort = on" \
		-c "SET client_min_messages = log" -c "SELECT v FROM s_$type ORDER BY v OFFSET 1e9" 2>&1 |
		sed -n 's/.*LOG: *\(begin [a-z]* sort\).*/\1/p; s/.*LOG: *\(pay_amount_abbrev: [a-z ]*\) at.*/\1/p' | sort -u | paste -sd, -)"
done

log "timing: $REPS repetitions"
q -f "$script" > "$WORK/bench.out"
python3 - "$WORK/bench.out" "$ROWS" "$SORT_ROWS" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
wall, cpu = {}, {}
mark, cpu0 = None, None
for line in lines:
    line = line.strip()
    if line.startswith('@mark '):
        mark, cpu0 = tuple(line[6:].split('|')), None
        continue
    m = re.match(r'@cpu (\d+)$', line)
    if m and mark:
        if cpu0 is None:
            cpu0 = int(m.group(1))
        else:
            cpu.setdefault(mark, []).append((int(m.group(1)) - cpu0) / 1e6)
            mark = None
        continue
    m = re.match(r'Time: ([0-9.]+) ms', line)
    if m and mark:
        wall.setdefault(mark, []).append(float(m.group(1)))
tests = ["sum serial", "sum parallel", "min/max", "where", "sort lone", "sort lone Sort", "sort rows", "distinct sort", "index build"]
rows = {"sort lone": sys.argv[3], "sort lone Sort": sys.argv[3], "sort rows": sys.argv[3], "distinct sort": sys.argv[3],
        "index build": sys.argv[3]}
types = ("bigint", "numeric", "amount")
for title, times in (("wall-clock ms (median)", wall), ("backend CPU ms (median; parallel: the leader only)", cpu)):
    print(title)
    print("%-14s %9s %10s %10s %11s %9s %9s" % ("", "rows", "bigint", "numeric", "pay_amount", "num/big", "amt/big"))
    for t in tests:
        med = {ty: statistics.median(times[(t, ty)]) for ty in types}
        print("%-14s %9s %10.1f %10.1f %11.1f %9.2f %9.2f" % (t, rows.get(t, sys.argv[2]), med["bigint"],
              med["numeric"], med["amount"], med["numeric"] / med["bigint"], med["amount"] / med["bigint"]))
print("(median of %d repetitions each, types alternated)" % len(wall[("sum serial", "bigint")]))
PY
