#!/usr/bin/env bash
# Idempotency keys over time: the worker's retention deleted a key by age
# alone, also while its payment had not reached the gateway (a merchant
# configured late, a dead letter): the repeat then made a second payment and
# both were charged.  A key is now kept while its operation has not ended.
# And the audit log keeps no key's request hash, which digests a customer's
# email, name and billing details (an erasure must leave nothing to confirm
# a guess against).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-idem-retention"
trap sim_stop EXIT
sim_start "$SIMDIR"
M=$(cluster_psql "$WORK" "$PORT" payments -Atc "INSERT INTO payments.merchants (name) VALUES ('idem_retention') RETURNING merchant_id")
q() { as_merchant "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"
p1=$(q -c "SELECT payment_id FROM pay_purchase(amount => '40.00 USD', card => $card, idempotency_key => 'late-1')")
comment "first: $(q -c "SELECT p.status || '/' || o.status FROM pay_get_payment($p1) p, pay_payment_operations($p1) o")"
# a control: a key whose call has nothing left to do (a customer made
# with it), as old; its deletion shows the worker's retention has run
q -c "SELECT customer_id FROM pay_create_customer(email => 'ctl@example.com', name => 'Control', idempotency_key => 'ctl-1')" >/dev/null
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.idempotency_keys SET created_at = now() - interval '200 hours' WHERE merchant_id = $M"
restart_worker
gone() { [ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key = 'ctl-1'")" = 0 ] && echo 1; }
is "$(poll_value 120 gone || true)" 1 "the worker's retention deleted the old key of a finished call"
is "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key = 'late-1'")" 1 \
	"and kept the as old key of a payment not yet sent"
comment "key rows left: $(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M"); first now: $(q -c "SELECT p.status || '/' || o.status FROM pay_get_payment($p1) p, pay_payment_operations($p1) o")"
p2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '40.00 USD', card => $card, idempotency_key => 'late-1')")
is "$p2" "$p1" "a repeat while the first payment has not been sent returns it"
cluster_psql "$WORK" "$PORT" payments -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $M)" >/dev/null
q -c "SELECT status FROM pay_wait($p1, '30 s')" >/dev/null || true
q -c "SELECT status FROM pay_wait($p2, '30 s')" >/dev/null || true
n=$(sim_ledger_count "P$TAG$p1" charge); [ "$p2" = "$p1" ] || n=$(( n + $(sim_ledger_count "P$TAG$p2" charge) ))
is "$n" 1 "one charge for one key"
comment "p1 $p1: $(q -c "SELECT status FROM pay_get_payment($p1)") p2 $p2: $(q -c "SELECT status FROM pay_get_payment($p2)")"

# the request hash of a key digests the customer's details: after an
# erasure neither the key nor an audit row confirms a guessed email and name
c=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace', idempotency_key => 'signup-1')")
guess=$(q -c "SELECT md5(jsonb_build_array('ada@example.com'::text, 'Ada Lovelace'::text, NULL::text, NULL::jsonb, NULL::jsonb)::text)")
is "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND request_hash = '$guess'")" 1 \
	"the guess is the key's request hash"
q -c "SELECT 1 FROM pay_erase_customer($c)" >/dev/null
is "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key = payments._erased_key($M, 'signup-1') AND request_hash IS NULL")" 1 \
	"erasure cleared the key's request hash and kept the key as a digest (until its retention)"
is "$(q -c "SELECT customer_id FROM pay_create_customer(email => 'eve@example.com', idempotency_key => 'signup-1')")" "$c" \
	"a repeat under the key as given still returns the erased customer, nothing made"
is "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.audit_log WHERE merchant_id = $M AND table_name = 'idempotency_keys' AND (new_row ? 'request_hash' OR old_row ? 'request_hash')")" 0 \
	"no audit row of a key holds its request hash"
tap_done
