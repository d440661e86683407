#!/usr/bin/env bash
# A backlog is claimed as fast as room in flight frees up, not once a second.
#
# Callers' commits wake the worker, which claims what is ready up to
# payments.max_in_flight.  What is left once the callers stop (no commit
# wakes it any more) used to wait for the worker's one-second timer: a
# backlog drained at max_in_flight operations a second, whatever the
# gateway's speed.  Here max_in_flight is 10, the gateway answers in 50 ms,
# and 300 purchases are committed at once (one wake-up): claimed as room
# frees, they are done in a few seconds (10 in flight, 50 ms each: about
# 200 a second); once a second, they would take 30 s.  All succeed, each
# sent once.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-backlog"
su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	su -c "ALTER SYSTEM RESET payments.max_in_flight" -c "ALTER SYSTEM RESET payments.claim_batch" \
		-c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
sim_ctl POST /latency '{"fixedMs":50,"randomMs":0}' >/dev/null
merchant_on_simulator "backlog claims"

su -c "ALTER SYSTEM SET payments.max_in_flight = 10" -c "ALTER SYSTEM SET payments.claim_batch = 10" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 1	# the worker rereads its settings at its next loop

as_merchant -c "SELECT count(payments.pay_purchase(amount => '1.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))) FROM generate_series(1, 300)" >/dev/null
start=$(date +%s.%N)
drained=$(poll_value 60 su -c "SELECT 'drained' WHERE NOT EXISTS (SELECT 1 FROM payments.operations
	WHERE merchant_id = $M AND status IN ('queued', 'sending', 'unknown'))")
elapsed=$(python3 -c "import time; print(round(time.time() - $start, 1))")
comment "300 purchases with 10 in flight at most: done in $elapsed s"
is "$drained" drained "the backlog of 300 purchases is drained"
ok "$(python3 -c "print(0 if $elapsed < 15 else 1)")" \
	"it is claimed as room in flight frees up: $elapsed s, where a claim a second would take 30 s"
is "$(su -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FROM payments.payments WHERE merchant_id = $M")" \
	"300 300" "every purchase succeeded"
is "$(su -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND attempts <> 1")" 0 \
	"each was sent once"
tap_done
