#!/usr/bin/env bash
# The card vault's sealing key goes on rotating while dead letters keep
# their sealed cards (before: any row held the previous key back, so one
# dead purchase or one card save that gave up stopped key rotation for the
# whole cluster).  Each rotation re-seals them under the current key
# (vault_rotation_waiting.sh: so are all waiting cards), so the key that
# sealed them is gone while they stay retriable.  Retried, the dead
# letters, which may have reached the gateway, are looked up, never resent
# blindly: the purchase is found charged once, the save finds the profile
# it had saved.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-vault-dead"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	q -c "ALTER SYSTEM RESET payments.max_attempts" -c "ALTER SYSTEM RESET payments.vault_key_rotation" -c "SELECT pg_reload_conf()" >/dev/null || true
	[ -z "${M:-}" ] || q -c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 day' WHERE merchant_id = $M AND status IN ('queued','unknown')" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator vault-dead 1000
q -c "ALTER SYSTEM SET payments.max_attempts = 2" -c "ALTER SYSTEM SET payments.vault_key_rotation = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 2 payments.vault_key_rotation 1s)" \
	"the worker goes by a budget of two attempts and rotates the vault key every second"
# every request is read, processed and its connection reset: it may have
# arrived, so nothing is resent blindly, and two attempts make dead letters
sim_ctl POST /faults '{"type":"reset","count":100,"process":true}' >/dev/null
Y=$(( $(date +%Y) + 2 ))
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '12.34 USD', card => pay_card('4007000000027', 12, $Y, '739'))")
op=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $pid")
cust=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'v@example.com')" | tail -1)
pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cust, card => pay_card('5424000000000015', 12, $Y, '826'))" | tail -1)
mop=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND kind = 'save_method' ORDER BY 1 DESC LIMIT 1")
for i in $(seq 200); do
	st=$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")
	ms=$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $mop")
	[ "$st" = dead ] && [ "$ms" = dead ] && break
	q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND status IN ('unknown','queued') AND next_attempt_at > now()" -c "SELECT payments._wake_at_commit()" >/dev/null
	sleep 0.2
done
is "$st" dead "the operation is a dead letter after its attempts ran out"
comment "$(q -c "SELECT concat_ws(' | ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
comment "payment: $(as_merchant -c "SELECT status FROM pay_get_payment($pid)"); ledger: $(sim_ledger P$TAG$pid)"
is "$ms" dead "the card save is a dead letter too"
comment "method: $(q -c "SELECT concat_ws(' | ', status, failure_code, failure_reason) FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $pm")"
is "$(q -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M AND operation_id IN ($op, $mop)")" 2 \
	"both dead letters keep their sealed cards (to be retried or discarded)"
# key rotation: vault_key_rotation = 1 s
keys() { q -c "SELECT string_agg(encode(substring(sealed from 5 for 4), 'hex'), ' ' ORDER BY operation_id) FROM payments.card_vault WHERE merchant_id = $M AND operation_id IN ($op, $mop)"; }
# a rotation re-seals them under the key current until then: after one
# (forced) rotation they are under the previous key, and each rotation
# after it moves them on.  The worker's housekeeping also rotates when
# due, so the call here may find the key just rotated (and decline): what
# is checked is that both cards moved on in every period, by either.
q -c "SELECT payments._vault_rotate_key(true)" >/dev/null
keys0=$(keys)
r=""
prev=$keys0
for k in 1 2 3 4; do
	sleep 1.2
	q -c "SELECT payments._vault_rotate_key(false)" >/dev/null
	cur=$(keys)
	[ "${cur% *}" != "${prev% *}" ] && [ "${cur#* }" != "${prev#* }" ] && r="$r t" || r="$r f"
	prev=$cur
done
is "$r" " t t t t" "the vault key is rotated every payments.vault_key_rotation while the dead letters sit, re-sealing both (before: t f f f)"
keys1=$(keys)
ok $([ "$(wc -w <<<"$keys1")" = 2 ] && [ "${keys1% *}" != "${keys0% *}" ] && [ "${keys1#* }" != "${keys0#* }" ] && echo 0 || echo 1) \
	"both dead letters' cards are re-sealed under a newer key ($keys0 -> $keys1)"
# retrying the dead letters once the gateway answers again: looked up, charged once
sim_ctl DELETE /faults >/dev/null
q -c "SELECT payments.pay_retry_dead_letter($M, $op)" -c "SELECT payments.pay_retry_dead_letter($M, $mop)" >/dev/null
for i in $(seq 150); do
	[ "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($op, $mop) AND status IN ('queued','sending','unknown')")" = 0 ] && break; sleep 0.2; done
comment "after retry: $(q -c "SELECT string_agg(concat_ws(' ', kind, status, attempts, last_error), ' / ') FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($op, $mop)")"
is "$(as_merchant -c "SELECT status FROM pay_get_payment($pid)")|$(sim_ledger P$TAG$pid)" "succeeded|charge 12.34" "the retried purchase is found charged, once"
is "$(q -c "SELECT status FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $pm")" active "the retried save finds the saved profile"
tap_done
