#!/usr/bin/env bash
# pay_metrics after a worker restart, and what its queue gauge counts: an
# answer held behind a caller's row lock counts in
# payments_unrecorded_outcomes, and the count goes with the worker that
# held it (it stayed 1 for good after a restart: an alert for ever);
# payments_queue_depth counts what its help text says.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-metrics-restart"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
q() { as_merchant "$@"; }
trap 'sim_stop' EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
merchant_on_simulator hb-metrics 5000
metric() { qo -c "SELECT payments.pay_metrics()" | sed -n "s/^$1 //p"; }
comment "before: unrecorded=$(metric payments_unrecorded_outcomes)"
sim_ctl POST /latency '{"fixedMs":1500}' >/dev/null
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD', card => pay_card('4111111111111111', 12, $Y, '123'))")
# a caller holds the payment row while the answer comes back
qo -c "BEGIN" -c "SELECT 1 FROM payments.payments WHERE merchant_id = $M AND payment_id = $pid FOR UPDATE" -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null &
locker=$!
for i in $(seq 50); do [ "$(metric payments_unrecorded_outcomes)" = 1 ] && break; sleep 0.1; done
is "$(metric payments_unrecorded_outcomes)" 1 "an answer held behind a caller's row lock counts in payments_unrecorded_outcomes"
restart_worker
sim_ctl POST /latency '{"fixedMs":0}' >/dev/null
wait $locker || true
st=$(q -c "SELECT status FROM pay_wait($pid, '20 s')")
comment "payment: $st; op: $(qo -c "SELECT concat_ws(' ', status, attempts, last_error) FROM payments.operations WHERE merchant_id = $M AND payment_id = $pid")"
sleep 2
comment "health: $(qo -c "SELECT * FROM payments.pay_worker_health()")"
is "$(metric payments_unrecorded_outcomes)" 0 "after a restart, with nothing held by the new worker, payments_unrecorded_outcomes is 0"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "charged once"
# payments_queue_depth says "Operations queued, in flight or being resolved":
# an operation in flight (sending, the gateway holding its reply) is not counted
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":4000,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', card => pay_card('4111111111111111', 12, $Y, '123'))")
for i in $(seq 50); do [ "$(qo -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $pid")" = sending ] && break; sleep 0.1; done
sleep 1.5
comment "op: $(qo -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $pid"); in_flight gauge $(metric payments_in_flight); queued/unknown/sending in the table: $(qo -c "SELECT count(*) FILTER (WHERE status IN ('queued','unknown')) || '/' || count(*) FILTER (WHERE status = 'sending') FROM payments.operations")"
help=$(qo -c "SELECT payments.pay_metrics()" | grep '^# HELP payments_queue_depth ')
comment "$help"
if grep -q 'queued, in flight or being resolved' <<<"$help"; then want="'queued','unknown','sending'"; else want="'queued','unknown'"; fi
# the gauge is the worker's last count: other tests' operations move
# meanwhile, so compare until both are read at a quiet moment
depth_matches() { local g t; g=$(metric payments_queue_depth); t=$(qo -c "SELECT count(*) FROM payments.operations WHERE status IN ($want)"); [ "$g" = "$t" ] && echo "$g"; }
ok "$([ -n "$(poll_value 10 depth_matches)" ] && echo 0 || echo 1)" \
	"payments_queue_depth counts what its help text says"
q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
tap_done
