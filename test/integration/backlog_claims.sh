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
# Then a burst claimed 20 at a time in one round: the first claims'
# requests are sent and answered while the later claims are made.
# Then more in flight than connections: payments.max_connections 4 (a
# restart), 40 in flight, the gateway at 300 ms.  At most 4 requests are
# on the wire at a time (40 take 10 rounds of 300 ms), the others wait in
# the worker, and each exchange's duration is its own round trip, not the
# wait for a connection.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-backlog"
su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
restart() { cluster_stop "$WORK"; cluster_start "$WORK"; }
# burst N AMOUNT: N purchases in one commit (one wake-up); sets $first to
# the last operation before them, $committed to when they were, and
# $drained once none is left to answer
burst() {
	first=$(su -c "SELECT coalesce(max(operation_id), 0) FROM payments.operations WHERE merchant_id = $M")
	as_merchant -c "SELECT count(payments.pay_purchase(amount => '$2',
		card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))) FROM generate_series(1, $1)" >/dev/null
	committed=$(date +%s.%N)
	drained=$(poll_value 60 su -c "SELECT 'drained' WHERE NOT EXISTS (SELECT 1 FROM payments.operations
		WHERE merchant_id = $M AND status IN ('queued', 'sending', 'unknown'))")
}
cleanup() {
	su -c "ALTER SYSTEM RESET payments.max_in_flight" -c "ALTER SYSTEM RESET payments.claim_batch" \
		-c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	if [ "$(su -c "SHOW payments.max_connections" 2>/dev/null)" != 256 ]; then
		su -c "ALTER SYSTEM RESET payments.max_connections" >/dev/null 2>&1 || true
		restart
	fi
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
sim_ctl POST /latency '{"fixedMs":50,"randomMs":0}' >/dev/null
merchant_on_simulator "backlog claims"

su -c "ALTER SYSTEM SET payments.max_in_flight = 10" -c "ALTER SYSTEM SET payments.claim_batch = 10" \
	-c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_in_flight 10 payments.claim_batch 10)" \
	"the worker goes by max_in_flight 10 and claim_batch 10"

burst 300 '1.00 USD'
elapsed=$(python3 -c "import time; print(round(time.time() - $committed, 1))")
comment "300 purchases with 10 in flight at most: done in $elapsed s"
is "$drained" drained "the backlog of 300 purchases is drained"
# (a round begun before the worker's SIGHUP claims by the old settings,
# 200 at a time, and drains the backlog as fast)
is "$(su -c "SELECT max(n) FROM (SELECT count(*) AS n FROM payments.operations WHERE merchant_id = $M
	AND operation_id > $first GROUP BY first_sent_at) c")" 10 "every claim took 10 at most (claim_batch), and one took 10"
ok "$(python3 -c "print(0 if $elapsed < 15 else 1)")" \
	"it is claimed as room in flight frees up: $elapsed s, where a claim a second would take 30 s"
is "$(su -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FROM payments.payments WHERE merchant_id = $M")" \
	"300 300" "every purchase succeeded"
is "$(su -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND attempts <> 1")" 0 \
	"each was sent once"

# --- transfers move between the claims of one round
# 200 purchases in one commit, claimed 20 at a time in one round of the
# worker's (up to 200 ms of claims), the gateway answering at once.  curl
# connects, shakes hands and reads only when the worker calls it; before,
# the round's claims ran back to back and the first ones' requests sat
# unsent until the last was made, so no reply could come in meanwhile.
su -c "ALTER SYSTEM SET payments.max_in_flight = 400" -c "ALTER SYSTEM SET payments.claim_batch = 20" \
	-c "SELECT pg_reload_conf()" >/dev/null
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
ok "$(passed process_reread worker payments.max_in_flight 400 payments.claim_batch 20)" \
	"the worker goes by max_in_flight 400 and claim_batch 20"
burst 200 '3.00 USD'
is "$drained" drained "a burst of 200 purchases is drained"
read -r claims early < <(su -F ' ' -c "WITH o AS (SELECT * FROM payments.operations WHERE merchant_id = $M AND operation_id > $first)
	SELECT (SELECT count(DISTINCT first_sent_at) FROM o),
		(SELECT count(*) FROM payments.gateway_exchanges g JOIN o USING (merchant_id, operation_id)
			WHERE g.finished_at < (SELECT max(first_sent_at) FROM o))")
comment "claims: $claims; replies in before the last claim began: $early"
ok "$(python3 -c "print(0 if $claims >= 5 else 1)")" "the burst took $claims claims of at most 20"
ok "$(python3 -c "print(0 if $early > 0 else 1)")" \
	"replies to the first claims came in while later claims were made ($early of them)"

# --- more in flight than connections
su -c "ALTER SYSTEM SET payments.max_connections = 4" -c "ALTER SYSTEM SET payments.max_in_flight = 40" \
	-c "ALTER SYSTEM SET payments.claim_batch = 40" >/dev/null
restart
is "$(su -c "SHOW payments.max_connections")" 4 "restarted with payments.max_connections = 4"
sim_ctl POST /latency '{"fixedMs":300,"randomMs":0}' >/dev/null
burst 40 '2.00 USD'
is "$drained" drained "40 purchases over 4 connections are drained"
is "$(su -c "SELECT count(*) FILTER (WHERE p.status = 'succeeded') || ' ' || count(*) || ' ' || count(*) FILTER (WHERE o.attempts = 1)
	FROM payments.operations o JOIN payments.payments p USING (merchant_id, payment_id)
	WHERE o.merchant_id = $M AND o.operation_id > $first")" "40 40 40" "every one succeeded, each sent once"
read -r span longest < <(su -F ' ' -c "SELECT round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 2),
	max(duration_ms) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id > $first")
comment "first request sent to last reply: $span s; longest exchange $longest ms"
ok "$(python3 -c "print(0 if $span >= 2.7 else 1)")" \
	"no more than 4 on the wire at a time: 40 requests of 300 ms took $span s (10 rounds: 3 s)"
ok "$(python3 -c "print(0 if $longest < 1500 else 1)")" \
	"each exchange's duration is its own round trip ($longest ms at most), not its wait for a connection"
tap_done
