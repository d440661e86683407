#!/usr/bin/env bash
# A merchant moving to another gateway account (another api_login_id) while
# an operation's outcome is unknown, or a dead letter may have reached the
# current account: sent again to the new account, which never saw it, the
# card was charged twice.  pay_configure_gateway refuses the change (55000)
# until they are resolved on the current account; then it is taken.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-account-change"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	unpark || true
	q -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
card="pay_card('4111111111111111', 12, $Y, '123')"

###########################################################################
# 1. An operation of unknown outcome (the gateway processed it, the reply
#    was lost), then the merchant's gateway credentials change to another
#    account (a new login).  The worker resends inside the duplicate window
#    to the NEW account, which has never seen it: charged twice.
merchant_on_simulator hb-cred1 1000
M1=$M
sim_ctl POST /merchants '{"name":"hbLogin2","transactionKey":"hbKey2hbKey2hbK2"}' >/dev/null
park_after_send "$M1" "'unknown'"
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '21.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid")" = unknown ] && break; sleep 0.1; done
comment "after the lost reply: $(q -c "SELECT status, attempts, never_sent FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid") ledger: $(sim_ledger P$TAG$pid)"
# the merchant moves to another gateway account
reconf() { move_account "$1" hbLogin2 hbKey2hbKey2hbK2; }
is "$(reconf $M1)" 55000 "another account is refused while a purchase of unknown outcome may have reached the current one"
unpark
q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M1 AND payment_id = $pid" -c "SELECT payments._wake_at_commit()" >/dev/null
st=$(as_merchant -c "SELECT status FROM pay_wait($pid, '20 s')")
comment "payment: $st; ops: $(q -c "SELECT string_agg(concat_ws(' ', kind, status, attempts, last_error), ' / ') FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid")"
comment "ledger: $(sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print([(r["merchant"],r["kind"],r["amount"]) for r in d if r.get("invoiceNumber")==sys.argv[1]])' P$TAG$pid)"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "the unknown purchase, resolved on the current account, is charged once"
is "$(reconf $M1)" "" "once it is resolved, the other account is taken"

###########################################################################
# 2. The same with a dead letter retried after the credentials changed.
merchant_on_simulator hb-cred2 1000
M2=$M
q -c "ALTER SYSTEM SET payments.max_attempts = 1" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '22.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M2 AND payment_id = $pid")" = dead ] && break; sleep 0.1; done
op=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M2 AND payment_id = $pid")
comment "dead: $(q -c "SELECT status, attempts, never_sent FROM payments.operations WHERE merchant_id = $M2 AND operation_id = $op") payment $(as_merchant -c "SELECT status FROM pay_get_payment($pid)")"
q -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null
is "$(reconf $M2)" 55000 "another account is refused while a dead purchase may have reached the current one"
q -c "SELECT payments.pay_retry_dead_letter($M2, $op)" >/dev/null
st=$(as_merchant -c "SELECT status FROM pay_wait($pid, '20 s')")
comment "payment: $st; op: $(q -c "SELECT concat_ws(' ', kind, status, attempts, last_error) FROM payments.operations WHERE merchant_id = $M2 AND operation_id = $op")"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "the dead purchase, retried on the current account, is charged once"
is "$(reconf $M2)" "" "once it is resolved, the other account is taken"

tap_done
