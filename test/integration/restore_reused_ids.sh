#!/usr/bin/env bash
# A dump restored within hours of when it was taken, into a new server,
# after the old server had gone on making payments: the restored
# database's sequences are where the dump left them, so its next payment
# gets the id of the old server's payment made after the dump.  Its
# invoice number must not be the old server's (P<tag><payment_id>): a
# purchase of the same amount with the same card, inside the gateway's
# duplicate window (8 hours), would be answered "duplicate" with the old
# server's transaction, and taken for the new purchase's: recorded paid,
# the customer never charged.  A new server life (worker_server.changed_at)
# gives new payments a tag of its own (worker_server.server_tag).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

RI="$WORK/restore-reused-ids"
two_servers "$RI" reused
gateway o "$SIM_TLS_API"
cluster_pg_dump "$OLD" "$OPORT" -Fc payments >"$RI/payments.dump"

# After the dump, the old server's purchase: charged.
P=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
is "$(as_m o -c "SELECT status FROM pay_wait($P, '20 s')")" succeeded "the old server's purchase after the dump succeeds"
old_number=$(oq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
old_trans=$(oq -Atc "SELECT gateway_trans_id FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
is "$(sim_ledger "$old_number")" "charge 12.00" "the gateway charged it"

# The old server dies; the dump is restored at once into a new server
# (the gateway's duplicate window still open for the old purchase).
as_pg "$PG_BINDIR/pg_ctl" -D "$OLD/data" -m immediate stop >/dev/null
restore_new "$RI/payments.dump"
is "$(poll_value 30 serving)" yes "the new server's worker serves it"

# The same customer buys again: same amount, same card.
Q=$(as_m n -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
is "$Q" "$P" "the restored database hands out the old server's payment id again"
is "$(as_m n -c "SELECT status FROM pay_wait($Q, '20 s')")" succeeded "the new purchase succeeds"
new_number=$(nq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $Q")
ok "$(passed [ "$new_number" != "$old_number" ])" "its invoice number is not the old server's"
like "$new_number" "^P[0-9A-F]{6}$Q\$" "P, a tag of six hexadecimal digits, the payment id"
is "$(sim_ledger "$new_number")" "charge 12.00" "the gateway charged the new purchase"
new_trans=$(nq -Atc "SELECT gateway_trans_id FROM payments.payments WHERE merchant_id = $M AND payment_id = $Q")
ok "$(passed [ "$new_trans" != "$old_trans" ])" "with a transaction of its own, not the old server's"
is "$(sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print(sum(1 for r in d if r["kind"]=="charge" and r["amountCents"]==1200))')" 2 \
	"two purchases of 12.00, two charges of 12.00 at the gateway"

# The server life's tag stays the same across a restart of the worker.
tag=$(nq -Atc "SELECT server_tag FROM payments.worker_server")
nq -Atc "SELECT payments.pay_worker_restart()" >/dev/null
R=$(as_m n -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $card)")
is "$(as_m n -c "SELECT status FROM pay_wait($R, '20 s')")" succeeded "a later purchase succeeds"
is "$(nq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $R")" "P$tag$R" \
	"under the same server tag"
is "$(nq -Atc "SELECT server_tag FROM payments.worker_server")" "$tag" "which the restarted worker keeps"

tap_done
