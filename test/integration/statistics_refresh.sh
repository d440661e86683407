#!/usr/bin/env bash
# The worker analyzes the extension's young tables each time one has
# doubled since its last statistics (payments._refresh_statistics), so a
# plan cached while a table was nearly empty does not outlive its growth.
# Checked on a table of the payments schema whose autovacuum is off: only
# the worker can have analyzed it.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() { q -c "DROP TABLE IF EXISTS payments.zz_statistics_probe" >/dev/null 2>&1 || true; }
trap cleanup EXIT
q -c "CREATE TABLE payments.zz_statistics_probe (merchant_id bigint, id bigint, PRIMARY KEY (merchant_id, id))
	WITH (autovacuum_enabled = false)" >/dev/null

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
add 1 2000
ok "$(wait_reltuples 2000 && echo 0 || echo 1)" "2,000 new rows: the worker analyzed the table"
add 2001 3000
sleep 5
is "$(reltuples)" 2000 "1,000 more (not yet double): left alone"
add 3001 4500
ok "$(wait_reltuples 4500 && echo 0 || echo 1)" "2,500 more (double): analyzed again"
is "$(q -c "SELECT count(*) FROM pg_stat_user_tables WHERE relid = 'payments.zz_statistics_probe'::regclass
	AND autoanalyze_count = 0 AND analyze_count = 2")" 1 "by the worker, twice, never by autovacuum"

tap_done
