#!/usr/bin/env bash
# A capture whose outcome is unknown after its authorization expired.  Past
# the duplicate window it is looked up; an expired authorization is in no
# transaction list, so the search by invoice number never found it and the
# capture stayed unknown, the payment requires_capture with pay_void
# refused.  A capture now asks the gateway about its authorization's own
# transaction (getTransactionDetails), inside or past the window alike.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-capture-expired"
qo() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
q() { as_merchant "$@"; }
cleanup() {
	qo -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	[ -z "${M:-}" ] || qo -c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 day' WHERE merchant_id = $M AND status IN ('queued','unknown')" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
merchant_on_simulator hb-capture 1000
card="pay_card('4111111111111111', 12, $Y, '123')"
auth() { local p; p=$(q -c "SELECT payment_id FROM pay_authorize(amount => '$1', card => $card)"); q -c "SELECT status FROM pay_wait($p, '10 s')" >/dev/null; echo $p; }
pa=$(auth '50.00 USD'); pb=$(auth '51.00 USD')
qo -c "ALTER SYSTEM SET payments.max_attempts = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 1)" "the worker goes by a budget of one attempt"
# the captures' replies are lost (503, not processed): unknown, and with one attempt, dead
sim_ctl POST /faults '{"type":"http5xx","count":2,"requestType":"createTransactionRequest"}' >/dev/null
opa=$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pa)")
opb=$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pb)")
for i in $(seq 100); do
	[ "$(qo -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($opa, $opb) AND status = 'dead'")" = 2 ] && break; sleep 0.1; done
comment "dead: $(qo -c "SELECT string_agg(concat_ws(' ', operation_id, status, attempts, never_sent), ' / ') FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($opa, $opb)")"
is "$(qo -c "SELECT string_agg(status || ' ' || attempts, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($opa, $opb)")" \
	"dead 1,dead 1" "both captures are dead letters after their one attempt"
sim_ctl DELETE /faults >/dev/null
qo -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null
# (the retried dead letters below go by the default budget, not by one
# attempt: a worker still on 1 may make a dead letter of them again)
ok "$(passed process_reread worker payments.max_attempts 12)" "the worker goes by the default budget again"
# 32 days pass at the gateway: the authorizations expire
sim_ctl POST /clock "{\"advanceSeconds\":$((32 * 86400))}" >/dev/null
sim_ctl POST /settle >/dev/null
# (a) retried inside the duplicate window: sent again
qo -c "SELECT payments.pay_retry_dead_letter($M, $opa)" >/dev/null
# (b) retried days later (past the 8-hour window): looked up
qo -c "UPDATE payments.operations SET first_sent_at = now() - interval '9 hours' WHERE merchant_id = $M AND operation_id = $opb" \
	-c "SELECT payments.pay_retry_dead_letter($M, $opb)" >/dev/null
for i in $(seq 150); do
	[ "$(qo -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($opa, $opb) AND status IN ('queued','sending')")" = 0 ] && break; sleep 0.2; done
sleep 2
comment "a: $(qo -c "SELECT concat_ws(' ', status, attempts, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $opa") payment $(q -c "SELECT status FROM pay_get_payment($pa)")"
comment "b: $(qo -c "SELECT concat_ws(' ', status, attempts, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $opb") payment $(q -c "SELECT status FROM pay_get_payment($pb)")"
comment "b exchanges: $(qo -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $opb")"
is "$(q -c "SELECT status FROM pay_get_payment($pa)")" canceled "a dead capture retried inside the window after the authorization expired: payment canceled"
is "$(q -c "SELECT status FROM pay_get_payment($pb)")" canceled "a dead capture retried past the window after the authorization expired: payment canceled"
is "$(qo -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $opb")" failed "and its capture failed, not left unknown"
is "$(qo -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $opb")" \
	"createTransactionRequest,getTransactionDetailsRequest" "the look-up asked about the authorization, not the lists"
sim_ctl POST /clock "{\"advanceSeconds\":$((-32 * 86400))}" >/dev/null
tap_done
