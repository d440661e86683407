#!/usr/bin/env bash
# The worker analyzes an extension table whose statistics still say it is
# nearly empty once it has had 500 changes (payments._refresh_statistics),
# so a plan cached while the table was nearly empty does not outlive its
# growth; a table analyzed with real rows is autovacuum's again.
# Checked on a table added to the extension whose autovacuum is off: only
# the worker can have analyzed it.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	local t
	for t in zz_statistics_probe zz_young_1 zz_young_2 zz_young_3 zz_young_4; do
		q -c "ALTER EXTENSION payments DROP TABLE payments.$t" >/dev/null 2>&1 || true
		q -c "DROP TABLE IF EXISTS payments.$t" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT
q -c "CREATE TABLE payments.zz_statistics_probe (merchant_id bigint, id bigint, PRIMARY KEY (merchant_id, id))
	WITH (autovacuum_enabled = false)" -c "ALTER EXTENSION payments ADD TABLE payments.zz_statistics_probe" >/dev/null

# add FROM TO: rows FROM..TO, with the statistics counters flushed at once
add() {
	q -c "INSERT INTO payments.zz_statistics_probe SELECT 1, g FROM generate_series($1, $2) g" \
		-c "SELECT pg_stat_force_next_flush()" >/dev/null
}
reltuples() { q -c "SELECT reltuples::bigint FROM pg_class WHERE oid = 'payments.zz_statistics_probe'::regclass"; }
# wait_reltuples N: up to 20 s for the statistics to count N rows
wait_reltuples() {
	local i
	for i in $(seq 100); do
		[ "$(reltuples)" = "$1" ] && return 0
		sleep 0.2
	done
	return 1
}

is "$(reltuples)" -1 "a new table has no statistics"
add 1 300
sleep 4
is "$(reltuples)" -1 "300 rows: fewer than 500, left alone"
add 301 2000
ok "$(wait_reltuples 2000 && echo 0 || echo 1)" "2,000 rows: the worker analyzed the table"
add 2001 8000
sleep 4
is "$(reltuples)" 2000 "6,000 more: the statistics are real now, so that is autovacuum's job"
is "$(q -c "SELECT count(*) FROM pg_stat_user_tables WHERE relid = 'payments.zz_statistics_probe'::regclass
	AND autoanalyze_count = 0 AND analyze_count = 1")" 1 "analyzed by the worker, once, never by autovacuum"
is "$(q -c "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'payments.card_vault'::regclass")" 0 \
	"the card vault, busy but always small, is never analyzed by the worker"
is "$(q -c "SELECT attstattarget FROM pg_attribute WHERE attrelid = 'payments.card_vault'::regclass AND attname = 'sealed'")" 0 \
	"and no statistics sample of its sealed data is ever kept"

# A new installation's tables pass 500 rows together: one call analyzes
# them all (one table per call left the last of six unanalyzed for ten
# seconds, its foreign-key checks scanning a merchant's rows meanwhile).
for i in 1 2 3 4; do
	q -c "CREATE TABLE payments.zz_young_$i (merchant_id bigint, id bigint, PRIMARY KEY (merchant_id, id))
		WITH (autovacuum_enabled = false)" -c "ALTER EXTENSION payments ADD TABLE payments.zz_young_$i" \
		-c "INSERT INTO payments.zz_young_$i SELECT 1, g FROM generate_series(1, 600) g" >/dev/null
done
q -c "SELECT pg_stat_force_next_flush()" >/dev/null
q -c "SELECT payments._refresh_statistics()" >/dev/null
is "$(q -c "SELECT count(*) FROM pg_class WHERE relname LIKE 'zz_young_%' AND relkind = 'r' AND relnamespace = 'payments'::regnamespace
	AND reltuples >= 500")" 4 "four young tables: all analyzed by one call"

tap_done
