#!/usr/bin/env bash
# Crash test: while at least 1,000 payments flow, the worker is killed with
# SIGKILL several times (each a crash restart of the whole cluster) and the
# server is stopped once with an immediate shutdown.  Afterwards every
# payment must be in a final state, and the simulator's ledger must show no
# payment charged twice and no approved charge missing from the database.
# One exception, which the extension must not guess about: a payment whose
# request the crash cut off before the gateway received it, and whose card
# went with the crash (the vault's key lives in shared memory), cannot be
# sent again; its lookups find no transaction, and it stays unknown.  Such
# payments must be absent from the ledger.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-crash"
# what is left unknown is not looked up again at a simulator that is gone
cleanup() {
	[ -z "${M:-}" ] || psqlq -c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 day'
		WHERE merchant_id = $M AND status IN ('queued', 'unknown')" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
# replies take 150-250 ms: longer than the test takes to see requests in
# flight and kill the worker, so there is always something in flight to lose
# (at 20-60 ms, on a slow machine all three kills could come just after the
# replies were recorded)
sim_ctl POST /latency '{"fixedMs":150,"randomMs":100}' >/dev/null

psqlq() { cluster_psql "$WORK" "$PORT" payments -At "$@" 2>/dev/null; }
M=$(psqlq -c "INSERT INTO payments.merchants (name) VALUES ('crash') RETURNING merchant_id")
psqlq -c "SET payments.allow_insecure_endpoint = on" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_API', timeout_ms => 5000, merchant_id => $M)" >/dev/null

wait_server() {
	local i
	for i in $(seq 300); do
		psqlq -c "SELECT 1" >/dev/null && [ -n "$(worker_pid)" ] && return 0
		sleep 0.1
	done
	return 1
}

# The producer: 30 transactions of 40 purchases; some die with the crashes
# (rolled back: never sent), the rest commit.
producer() {
	local b
	for b in $(seq 30); do
		cluster_psql "$WORK" "$PORT" payments -At -c "SET payments.merchant_id = '$M'" \
			-c "SELECT count(payments.pay_purchase(amount => payments.pay_amount(10 + g % 90, 'USD'),
			       card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123')))
			    FROM generate_series(1, 40) g" >/dev/null 2>&1 || true
		sleep 0.15
	done
}
producer &
prod=$!

kills=0
for k in 1 2 3; do
	sleep 1.2
	wait_server || true
	# kill it while requests are in flight (that is what must not be lost;
	# up to 10 s: on a loaded machine the producer's next batch can be slow)
	p=$(worker_pid)
	for _ in $(seq 500); do
		[ "$(psqlq -c "SELECT in_flight > 0 FROM payments.pay_worker_health()")" = t ] && break
		sleep 0.02
	done
	if [ -n "$p" ]; then
		as_root kill -KILL "$p" && kills=$((kills + 1))
	fi
done
sleep 1
wait_server || true
as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
cluster_start "$WORK"
wait_server || true
wait "$prod" || true
is "$kills" 3 "the worker was killed with SIGKILL three times"

# enough payments for the test to mean something
n=$(psqlq -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M")
if [ "$n" -lt 1000 ]; then
	# top up after the crashes so that at least 1,000 payments went through
	cluster_psql "$WORK" "$PORT" payments -At -c "SET payments.merchant_id = '$M'" \
		-c "SELECT count(payments.pay_purchase(amount => '11.00 USD', card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 2, '123'))) FROM generate_series(1, $((1000 - n)))" >/dev/null
	n=$(psqlq -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M")
fi
ok $([ "$n" -ge 1000 ] && echo 0 || echo 1) "at least 1,000 payments were committed ($n)"

# wait until nothing is left to do
not_found="status = 'unknown' AND last_error LIKE '%was found neither among the gateway''s unsettled transactions%'"
for i in $(seq 600); do
	left=$(psqlq -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status IN ('queued', 'sending', 'unknown')
		AND NOT ($not_found)")
	[ "$left" = 0 ] && break
	sleep 0.2
done
is "$left" 0 "every operation reached a final state, or is unknown after its lookups found no transaction at the gateway"
psqlq -c "SELECT p.invoice_number FROM payments.payments p WHERE p.merchant_id = $M
	AND p.payment_id IN (SELECT payment_id FROM payments.operations WHERE merchant_id = $M AND $not_found)" > "$SIMDIR/lost.txt"
comment "$(wc -l < "$SIMDIR/lost.txt") payments were cut off by a crash before the gateway received them, their cards lost with it: unknown, not guessed"
is "$(psqlq -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND status NOT IN ('succeeded', 'failed')")" \
	"$(wc -l < "$SIMDIR/lost.txt" | tr -d ' ')" "every other payment is succeeded or failed"
recovered=$(psqlq -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'operation.unknown'")
ok $([ "$recovered" -gt 0 ] && echo 0 || echo 1) "operations lost in flight were resolved from the gateway ($recovered went through unknown)"

# the ledger against the database
sim_ctl GET /ledger > "$SIMDIR/ledger.json"
psqlq -c "SELECT invoice_number || ' ' || status || ' ' || coalesce(gateway_trans_id, '-') FROM payments.payments WHERE merchant_id = $M" > "$SIMDIR/db.txt"
verdict=$(python3 - "$SIMDIR/ledger.json" "$SIMDIR/db.txt" "$SIMDIR/lost.txt" <<'PY'
import json, sys, collections
ledger = json.load(open(sys.argv[1]))
charges = collections.defaultdict(list)
for r in ledger:
    if r.get("kind") == "charge":
        charges[r["invoiceNumber"]].append(r["transId"])
db = {}
for line in open(sys.argv[2]):
    inv, status, trans = line.split()
    db[inv] = (status, trans)
twice = [i for i, t in charges.items() if i in db and len(t) > 1]
missing = [i for i, t in charges.items() if i in db and db[i][0] != "succeeded"]
wrong_id = [i for i, t in charges.items() if i in db and db[i][1] not in t]
phantom = [i for i, (s, t) in db.items() if s == "succeeded" and i not in charges]
lost_charged = [i.strip() for i in open(sys.argv[3]) if i.strip() in charges]
missing = [i for i in missing if i not in lost_charged]
print(len(twice), len(missing), len(wrong_id), len(phantom), len(lost_charged))
PY
)
read -r twice missing wrong_id phantom lost_charged <<<"$verdict"
is "$twice" 0 "no payment was charged twice"
is "$missing" 0 "no approved charge is missing from the database"
is "$wrong_id" 0 "every charge is recorded with the gateway's transaction id"
is "$phantom" 0 "no payment is marked succeeded without a charge"
is "$lost_charged" 0 "none of those left unknown was charged at the gateway"

tap_done
