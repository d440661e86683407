#!/usr/bin/env bash
# Audited writes while the audit table's relcache entry is invalidated over
# and over (ANALYZE from another session): the audit trigger's kept plan
# must survive invalidations that arrive while it is executing.  (It used to
# be freed from the invalidation callback: a segfault under load.)
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

q() { cluster_psql "$WORK" "$PORT" payments "$@"; }
M=$(q -Atc "INSERT INTO payments.merchants (name) VALUES ('audit-inval') RETURNING merchant_id")

# 600 ANALYZEs of audit_log in the background...
( for i in $(seq 600); do echo "ANALYZE payments.audit_log;"; done | q -q >/dev/null 2>&1 ) &
analyzer=$!
# ...while 3,000 audited updates run, each its own transaction
for i in $(seq 3000); do
	echo "UPDATE payments.merchants SET metadata = jsonb_build_object('n', $i) WHERE merchant_id = $M;"
done | q -q >/dev/null
rc=$?
wait "$analyzer" || true
ok "$rc" "3,000 audited updates ran beside 600 ANALYZEs of the audit table"
is "$(q -Atc "SELECT count(*) FROM payments.audit_log WHERE table_name = 'merchants' AND new_row ->> 'merchant_id' = '$M' AND operation = 'UPDATE'")" 3000 "every update was audited"
crashes=$(grep -cE "terminated by signal (6|7|11)" "$WORK/postgres.log" || true)
is "$crashes" 0 "no server process crashed"

tap_done
