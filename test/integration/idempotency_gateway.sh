#!/usr/bin/env bash
# Idempotency at the gateway: replays of capture, void and refund return
# the same operation, and when the gateway's reply is lost after it
# processed the request, each resend is the same request (invoice number,
# refId), so the ledger shows exactly one capture, one void and one refund.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-idem-gateway"
trap sim_stop EXIT
sim_start "$SIMDIR"
merchant_on_simulator idem_gateway 1500
q() {
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 \
		-c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" \
		-c "SET payments.max_wait = '60s'" "$@"
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"
lose() { sim_ctl POST /faults '{"type":"hold","count":1,"process":true,"holdMs":4000,"requestType":"createTransactionRequest"}' >/dev/null; }
opst() { q -c "SELECT status || '|' || attempts FROM pay_payment_operations($1) WHERE operation_id = $2"; }
waitop() { local i; for i in $(seq 60); do s=$(q -c "SELECT status FROM pay_payment_operations($1) WHERE operation_id = $2"); case $s in queued|sending|unknown) sleep 1;; *) break;; esac; done; }

# capture with a lost reply
pa=$(q -c "SELECT payment_id FROM pay_authorize(amount => '30.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pa, '20 s')" >/dev/null
lose
oc=$(q -c "SELECT operation_id FROM pay_capture($pa, idempotency_key => 'cap-1')")
waitop $pa $oc; sim_ctl DELETE /faults >/dev/null
comment "capture op: $(opst $pa $oc); ledger: $(sim_ledger "P$TAG$pa")"
is "$(q -c "SELECT operation_id FROM pay_capture($pa, idempotency_key => 'cap-1')")" "$oc" "capture replay returns the op"
like "$(sim_ledger "P$TAG$pa")" '^[^,]*auth[^,]*,[^,]*capture[^,]*$|^auth.*' "ledger"
comment "$(q -c "SELECT status, amount_captured FROM pay_get_payment($pa)")"

# void with a lost reply
pv=$(q -c "SELECT payment_id FROM pay_authorize(amount => '31.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pv, '20 s')" >/dev/null
lose
ov=$(q -c "SELECT operation_id FROM pay_void($pv, idempotency_key => 'void-1')")
waitop $pv $ov; sim_ctl DELETE /faults >/dev/null
comment "void op: $(opst $pv $ov); ledger: $(sim_ledger "P$TAG$pv"); payment $(q -c "SELECT status FROM pay_get_payment($pv)")"

# refund of a settled purchase with a lost reply
pr=$(q -c "SELECT payment_id FROM pay_purchase(amount => '32.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pr, '20 s')" >/dev/null
sim_ctl POST /settle >/dev/null
lose
orf=$(q -c "SELECT operation_id FROM pay_refund($pr, idempotency_key => 'ref-1')")
waitop $pr $orf; sim_ctl DELETE /faults >/dev/null
is "$(q -c "SELECT operation_id FROM pay_refund($pr, idempotency_key => 'ref-1')")" "$orf" "refund replay returns the op"
comment "refund op: $(opst $pr $orf); ledger P: $(sim_ledger "P$TAG$pr") R: $(sim_ledger "R$TAG$orf")"
rc=$(sim_ctl GET /ledger | python3 -c '
import json,sys
d=json.load(sys.stdin); rows=d["ledger"] if isinstance(d,dict) else d
print(sum(1 for r in rows if r.get("kind")=="refund" and r.get("amount") in ("32.00",32,32.0)))')
is "$rc" 1 "one refund of 32.00 in the ledger"

# subscription created again after retention; the repeat then returns which?
c=$(q -c "SELECT customer_id FROM pay_create_customer(email => 's@example.com')")
pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c, card => $card)")
q -c "SELECT status FROM pay_wait_payment_method($pm, '30 s')" >/dev/null
s1=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $c, price => '5.00 USD', interval_unit => 'month', idempotency_key => 'sub-1')")
cluster_psql "$WORK" "$PORT" payments -qc "DELETE FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key = 'sub-1'"
s2=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $c, price => '5.00 USD', interval_unit => 'month', idempotency_key => 'sub-1')")
s3=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $c, price => '5.00 USD', interval_unit => 'month', idempotency_key => 'sub-1')")
is "$s3" "$s2" "a repeat of the call made after retention returns what that call made"
comment "subs: first $s1 after retention $s2, repeat $s3 ($(q -c "SELECT status FROM pay_get_subscription($s3)"))"

# key bounds
is "$(q -v VERBOSITY=verbose -c "SELECT pay_purchase(amount => '1.00 USD', card => $card, idempotency_key => '')" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p')" 22Y25 "empty key 22Y25"
is "$(q -v VERBOSITY=verbose -c "SELECT pay_purchase(amount => '1.00 USD', card => $card, idempotency_key => repeat('x', 256))" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p')" 22Y25 "256-char key 22Y25"
u1=$(q -c "SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => $card, idempotency_key => repeat('😀', 255))")
u2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => $card, idempotency_key => repeat('😀', 255))")
is "$u2" "$u1" "255 four-byte characters: a key, replayed"
tap_done
