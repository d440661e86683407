#!/usr/bin/env bash
# No waiting card holds the vault key's rotation back, and none is lost by
# it.  Before, the previous key was kept while a card sealed under it still
# waited, so one card parked for a merchant whose gateway is not configured
# stopped the rotation for the whole cluster (the sealing key lived for
# days), and a forced rotation lost it.  Now a rotation re-seals the
# waiting cards under the current key before the previous key goes: the
# parked card is re-sealed at each rotation and, once the gateway is
# configured, charged with the right card; the bytes it had before no
# longer open (their key is gone).  A card sealed in a transaction open
# across a rotation is re-sealed by the next; a scheduled rotation waits
# while an open or prepared transaction sealed a card under the previous
# key (only those: one that sealed nothing, however old, does not hold it).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
SIMDIR="$WORK/sim-vault-rotation"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	sessions_kill
	q -c "SELECT format('ROLLBACK PREPARED %L', gid) FROM pg_prepared_xacts WHERE gid = 'vault_rotation_waiting'" -c '\gexec' >/dev/null 2>&1 || true
	q -c "ALTER SYSTEM RESET payments.vault_key_rotation" -c "SELECT pg_reload_conf()" \
		-c "DROP TABLE IF EXISTS public.vault_rotation_old, public.vault_rotation_old_opaque" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
# a merchant without a gateway: its purchases are parked, cards in the vault
M=$(q -c "INSERT INTO payments.merchants (name) VALUES ('vault-rotation') RETURNING merchant_id")
q -c "ALTER SYSTEM SET payments.vault_key_rotation = 1" -c "SELECT pg_reload_conf()" >/dev/null
Y=$(( $(date +%Y) + 2 ))
purchase() {	# purchase AMOUNT NUMBER CVV: a payment id
	as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '$1 USD', card => pay_card('$2', 12, $Y, '$3'))" | tail -1
}
op_of() { q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $1"; }
# key_of PAYMENT: the id of the key its vault row is sealed under (bytes 5-8 of a card)
key_of() {
	q -c "SELECT encode(substring(v.sealed from 5 for 4), 'hex') FROM payments.card_vault v
		JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $1"
}
# scheduled PAYMENT: a scheduled rotation (polled: the worker's housekeeping
# may rotate too) until the payment's card is under a key it was not under
scheduled() {
	local before i
	before=$(key_of "$1")
	for i in $(seq 40); do
		q -c "SELECT payments._vault_rotate_key(false)" >/dev/null
		[ "$(key_of "$1")" != "$before" ] && { echo t; return; }
		sleep 0.25
	done
	echo f
}

pid1=$(purchase 21.00 4007000000027 739)
pid2=$(purchase 22.00 4012888818888 123)
# Accept.js opaque data waits sealed too (its key id: bytes 4 to 7)
nonce=$(sim_ctl POST /nonces '{"creditCard":{"cardNumber":"6011000000000012","expirationDate":"2030-12","cardCode":"999"}}')
pid5=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '25.00 USD', opaque_data => '$nonce'::jsonb)" | tail -1)
opaque_key() {
	q -c "SELECT encode(substring(v.sealed from 4 for 4), 'hex') FROM payments.card_vault v
		JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pid5"
}
o0=$(opaque_key)
k0=$(key_of "$pid1")
q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS public.vault_rotation_old, public.vault_rotation_old_opaque" \
	-c "CREATE TABLE public.vault_rotation_old AS SELECT v.sealed FROM payments.card_vault v
		JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pid1" \
	-c "CREATE TABLE public.vault_rotation_old_opaque AS SELECT v.sealed FROM payments.card_vault v
		JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pid5" >/dev/null
is "$(as_merchant -c "SELECT status FROM pay_get_payment($pid1)")|$(q -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M")" \
	"pending|3" "three purchases are parked (no gateway), their cards (one Accept.js opaque data) in the vault"

# 1. scheduled rotations go on while the card waits (before: the second never came)
is "$(scheduled "$pid1") $(scheduled "$pid1") $(scheduled "$pid1")" "t t t" \
	"the parked card is re-sealed at every scheduled rotation: it holds none back"
# 2. forced rotations in a row do not lose it
is "$(q -c "SELECT payments._vault_rotate_key(true)" -c "SELECT payments._vault_rotate_key(true)" -c "SELECT payments._vault_rotate_key(true)" | tr '\n' ' ')" \
	"t t t " "three forced rotations in a row"
k1=$(key_of "$pid1")
ok $([ -n "$k1" ] && [ "$k1" != "$k0" ] && echo 0 || echo 1) "the parked card is sealed under a newer key ($k0 -> $k1)"
is "$(opaque_key)" "$k1" "so is the parked opaque data ($o0 -> the same key)"

# 3. the new key is current from commit: a rotation rolled back, or rolled
#    back to a savepoint, never happened.  (Session b's open transaction,
#    which sealed a card under the key a forced rotation makes the previous
#    one, keeps the worker's scheduled rotations out.)
sessions_init vault-rotation
session b
say b "BEGIN; SELECT payments.pay_card('4007000000027', 12, $Y) IS NOT NULL;"
say b '\echo B-OPEN'
poll_value 20 done_with b B-OPEN >/dev/null
q -c "SELECT payments._vault_rotate_key(true)" >/dev/null
cur() { q -c "SELECT encode(substring(payments._card_sealed(payments.pay_card('4007000000027', 12, $Y)) from 5 for 4), 'hex')"; }
c0=$(cur)
q -c "BEGIN" -c "SELECT payments._vault_rotate_key(true)" -c "ROLLBACK" >/dev/null
c1=$(cur)
q -c "BEGIN" -c "SAVEPOINT s" -c "SELECT payments._vault_rotate_key(true)" -c "ROLLBACK TO SAVEPOINT s" -c "COMMIT" >/dev/null
c2=$(cur)
q -c "BEGIN" -c "SAVEPOINT s" -c "SELECT payments._vault_rotate_key(true)" -c "RELEASE SAVEPOINT s" -c "COMMIT" >/dev/null
c3=$(cur)
is "$([ "$c1" = "$c0" ] && echo same) $([ "$c2" = "$c0" ] && echo same) $([ "$c3" != "$c0" ] && echo new)" "same same new" \
	"a rotation rolled back (or to a savepoint) leaves the key; released and committed, it rotates"
close b
is "$(key_of "$pid1")" "$c0" "the card re-sealed by the committed rotation is under the key that was current then"

# 4. a card sealed in a transaction left open across a forced rotation
session a
say a "BEGIN; SELECT 'pid=' || payment_id FROM pay_purchase(amount => '23.00 USD', card => pay_card('5424000000000015', 12, $Y, '826'));"
say a '\echo A-SEALED'
is "$(poll_value 20 done_with a A-SEALED)" 1 "session a sealed a card in an open transaction"
pid3=$(sed -n 's/^pid=//p' "$SESS/a.out")
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "a forced rotation while it is open"
say a 'COMMIT;'
say a '\echo A-COMMITTED'
is "$(poll_value 20 done_with a A-COMMITTED)" 1 "session a committed after the rotation"
k3=$(key_of "$pid3")
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "the next rotation (forced)"
ok $([ -n "$k3" ] && [ -n "$(key_of "$pid3")" ] && [ "$(key_of "$pid3")" != "$k3" ] && echo 0 || echo 1) \
	"it re-sealed the card committed after the rotation before"

# 5. a scheduled rotation waits for an open transaction that sealed under the previous key
say a "BEGIN; SELECT 'pid4=' || payment_id FROM pay_purchase(amount => '24.00 USD', card => pay_card('370000000000002', 12, $Y, '7373'));"
say a '\echo A-SEALED-2'
is "$(poll_value 20 done_with a A-SEALED-2)" 1 "session a sealed another card in an open transaction"
pid4=$(sed -n 's/^pid4=//p' "$SESS/a.out")
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "a forced rotation: its card's key is now the previous one"
sleep 1.1
is "$(q -c "SELECT payments._vault_rotate_key(false)")" f \
	"a scheduled rotation waits while that transaction (it sealed under the previous key) is open"
say a 'COMMIT;'
say a '\echo A-COMMITTED-2'
is "$(poll_value 20 done_with a A-COMMITTED-2)" 1 "session a committed"
close a
is "$(scheduled "$pid4")" t "once it committed, the scheduled rotation re-seals its card"
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "and one more rotation (forced)"

# 6. a long transaction that sealed nothing (a pg_dump, a report, an idle
#    session) does not hold a scheduled rotation back (before: it did, as
#    any transaction older than the current key)
session c
say c "BEGIN; SELECT 1;"
say c '\echo C-OPEN'
is "$(poll_value 20 done_with c C-OPEN)" 1 "session c left a transaction open that sealed nothing"
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "a forced rotation: session c's transaction is older than the current key"
is "$(scheduled "$pid1")" t "a scheduled rotation does not wait for it"
close c

# 7. a prepared transaction that sealed a card under the key about to go
#    holds a scheduled rotation back until COMMIT PREPARED (before: not,
#    and its card was lost)
session a
say a "BEGIN; SELECT 'pid6=' || payment_id FROM pay_purchase(amount => '26.00 USD', card => pay_card('4111111111111111', 12, $Y, '321')); PREPARE TRANSACTION 'vault_rotation_waiting';"
say a '\echo A-PREPARED'
is "$(poll_value 20 done_with a A-PREPARED)" 1 "session a sealed a card and prepared its transaction"
pid6=$(sed -n 's/^pid6=//p' "$SESS/a.out")
close a
is "$(q -c "SELECT payments._vault_rotate_key(true)")" t "a forced rotation: its card's key is now the previous one"
sleep 1.1
is "$(q -c "SELECT payments._vault_rotate_key(false)")" f \
	"a scheduled rotation waits while the prepared transaction that sealed under the previous key may commit"
q -c "COMMIT PREPARED 'vault_rotation_waiting'" >/dev/null
is "$(scheduled "$pid6")" t "once it committed, the scheduled rotation re-seals its card"

# 8. the bytes the first card had before: their key is gone.  Put in the
#    second purchase's vault row, they fail it with the lost-card reason;
#    and the opaque data's bytes from before, in a new opaque purchase's
#    row, with the lost-opaque-data reason.
q -c "UPDATE payments.card_vault SET sealed = (SELECT sealed FROM public.vault_rotation_old)
	WHERE merchant_id = $M AND operation_id = $(op_of "$pid2")" >/dev/null
nonce7=$(sim_ctl POST /nonces '{"creditCard":{"cardNumber":"6011000000000012","expirationDate":"2030-12","cardCode":"999"}}')
pid7=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '27.00 USD', opaque_data => '$nonce7'::jsonb)" | tail -1)
q -c "UPDATE payments.card_vault SET sealed = (SELECT sealed FROM public.vault_rotation_old_opaque)
	WHERE merchant_id = $M AND operation_id = $(op_of "$pid7")" >/dev/null
is "$(q -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M")" 7 "seven cards wait"

# 9. the gateway is configured: the waiting cards are charged, each the right one
q -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 5000, merchant_id => $M)" \
	-c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND status = 'queued'" \
	-c "SELECT payments._wake_at_commit()" >/dev/null
for i in $(seq 300); do
	[ "$(as_merchant -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND status = 'pending'")" = 0 ] && break
	sleep 0.1
done
# the reasons name what can lose a card, not a rotation that re-sealed it
lost_card="card data was lost before it was sent (a server restart, failover or restore; a vault key rotation forced before the transaction that sealed it committed; or a pay_card value kept from an earlier transaction outlived its key); ask for the card again"
lost_opaque="opaque data was lost before it was sent (a server restart, failover or restore, or a vault key rotation forced before the transaction that sealed it committed); ask for new opaque data"
is "$(as_merchant -c "SELECT string_agg(status || ': ' || coalesce(decline_reason, ''), ' / ' ORDER BY payment_id)
	FROM payments.payments WHERE payment_id IN ($pid1, $pid2, $pid3, $pid4, $pid5, $pid6, $pid7)")" \
	"succeeded:  / failed: $lost_card / succeeded:  / succeeded:  / succeeded:  / succeeded:  / failed: $lost_opaque" \
	"the re-sealed cards are charged; the bytes under the forgotten key cannot be opened"
ledger_card() {	# ledger_card PAYMENT: kind, amount and card of its gateway transaction
	sim_ctl GET /ledger | python3 -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows["ledger"] if isinstance(rows, dict) else rows
print(",".join("%s %s %s" % (r["kind"], r["amount"], r.get("accountNumber")) for r in rows if r.get("invoiceNumber") == sys.argv[1]))
' "P$TAG$1"
}
is "$(ledger_card "$pid1") / $(ledger_card "$pid3") / $(ledger_card "$pid4") / $(ledger_card "$pid5") / $(ledger_card "$pid6")" \
	"charge 21.00 0027 / charge 23.00 0015 / charge 24.00 0002 / charge 25.00 0012 / charge 26.00 1111" \
	"the simulator charged each payment's own card, once"
is "$(ledger_card "$pid2")$(ledger_card "$pid7")" "" "nothing was sent for the purchases whose card or opaque data could not be opened"
is "$(q -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M")" 0 "the vault holds nothing of the merchant any more"
tap_done
