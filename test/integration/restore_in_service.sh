#!/usr/bin/env bash
# A dump restored into the database a running worker already serves: a
# new server (preloaded, payments.database set) where the DBA makes the
# database, then runs pg_restore, which creates the extension, then loads
# its tables.  The worker did its start-of-service recovery on the empty
# extension, before the rows came.
# The dump was taken while one purchase was "sending" (the gateway had
# charged it, its reply not yet recorded) and another was queued, never
# sent; the old server then sent that one too, and the gateway charged
# it, before it was lost.  The restored rows are the old server's history,
# possibly short: nothing may stay "sending" forever, nothing may fail
# while the gateway holds its money, nothing may be charged twice.  Then
# the extension is dropped under the running worker and made again.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

RS="$WORK/restore-in-service"
two_servers "$RS" restored
ops_on() {	# ops_on SERVER: status and never_sent of the two purchases' operations
	"${1}q" -Atc "SELECT string_agg(o.status || ' ' || o.never_sent, ',' ORDER BY o.payment_id)
		FROM payments.operations o WHERE o.merchant_id = $M AND o.payment_id IN ($S, $Q)"
}

# S: charged by the gateway, its reply held: "sending" on the old server
# (for as long as the request's timeout)
gateway o "$SIM_TLS_API" 60000
sim_ctl POST /faults '{"type":"hold","count":1,"process":true,"requestType":"createTransactionRequest","holdMs":60000}' >/dev/null
S=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '33.00 USD', card => $card)")
held() { [ -n "$(sim_ledger "P$TAG$S")" ] && echo yes; }
is "$(poll_value 30 held)" yes "the gateway charged the first purchase; its reply is held"
# Q: queued behind an endpoint that refuses connections (never sent)
gateway o "https://127.0.0.1:$(free_port)/xml/v1/request.api" 60000
Q=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
tried() { [ "$(oq -Atc "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND payment_id = $Q AND status = 'queued' AND never_sent AND last_error IS NOT NULL")" = 1 ] && echo yes; }
is "$(poll_value 30 tried)" yes "the second purchase waits, queued, never sent"
# (the queued one is tried again now and then, sending for a moment: read
# between its tries, 30 s at most; a single read could fall on one, and
# did with its tries made to take 2 s by hand)
at_rest() { [ "$(ops_on o)" = "sending true,queued true" ] && echo yes; }
is "$(poll_value 30 at_rest)" yes "the old server has one sending, one queued"

cluster_pg_dump "$OLD" "$OPORT" -Fc payments >"$RS/payments.dump"
is "$(poll_value 30 at_rest)" yes "and still so after the dump"

# After the dump the old server sends the queued purchase, then dies.
gateway o "$SIM_TLS_API"
oq -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_id = $Q" >/dev/null
charged() { [ -n "$(sim_ledger "P$TAG$Q")" ] && echo yes; }
is "$(poll_value 30 charged)" yes "the old server sent the queued purchase after the dump: the gateway charged it"
as_pg "$PG_BINDIR/pg_ctl" -D "$OLD/data" -m immediate stop >/dev/null
sim_ctl DELETE /faults >/dev/null

# The new server, serving database "payments" from its start.  pg_restore
# creates the extension, then loads the tables, each in a transaction of
# its own; the worker meets the empty extension first (here for sure: the
# restore's sections one after the other, the worker serving in between).
private_cluster "$NEW" "$NPORT" "fsync = off"
cluster_psql "$NEW" "$NPORT" postgres -c 'CREATE DATABASE payments'
restore() {	# restore SECTION: pg_restore of that section; its errors on stdout
	as_pg "$PG_BINDIR/pg_restore" -h "$NEW/sock" -p "$NPORT" -U postgres -d payments --section="$1" "$RS/payments.dump" 2>&1
}
is "$(restore pre-data)" "" "pg_restore creates the extension"
serving() { [ "$(nq -Atc 'SELECT count(*) FROM payments.worker_server')" = 1 ] && echo yes; }
is "$(poll_value 30 serving)" yes "the new server's worker serves the empty extension"
restore_err=$(restore data; restore post-data) || true
is "$restore_err" "" "pg_restore loads the data into the database the worker serves, without an error"

# The merchant's endpoint restored is the refusing one: set it again.
gateway n "$SIM_TLS_API"
settled() { [ "$(as_m n -c "SELECT string_agg(status, ',' ORDER BY payment_id) FROM payments.payments WHERE payment_id IN ($S, $Q)")" = succeeded,succeeded ] && echo yes; }
is "$(poll_value 90 settled)" yes "both purchases are found charged and recorded succeeded"
is "$(as_m n -c "SELECT string_agg(payment_id || ' ' || status || ' ' || coalesce(decline_code, '-'), ',' ORDER BY payment_id) FROM payments.payments WHERE payment_id IN ($S, $Q)")" \
	"$S succeeded -,$Q succeeded -" "neither is failed or left waiting"
is "$(sim_ledger "P$TAG$S")/$(sim_ledger "P$TAG$Q")" "charge 33.00/charge 12.00" "the gateway charged each once"
is "$(ops_on n)" "succeeded false,succeeded false" "their operations succeeded"

# The extension dropped under the running worker (DROP EXTENSION, or a
# restore with --clean), then made again: the worker starts over, waits
# quietly for it, and makes its start-of-service checks when it is back.
nworker() { nq -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'"; }
W0=$(nworker)
nq -c 'DROP EXTENSION payments CASCADE' >/dev/null
anew() { local p; p=$(nworker); [ -n "$p" ] && [ "$p" != "$W0" ] && echo "$p"; }
W1=$(poll_value 30 anew)
ok "$([ -n "$W1" ] && echo 0 || echo 1)" "the worker starts again once the extension is gone"
log_from=$(stat -c %s "$NEW/postgres.log")
nq -c 'CREATE EXTENSION payments' >/dev/null
is "$(poll_value 30 serving)" yes "made again, the extension gets the worker's start-of-service checks"
M=$(nq -Atc "INSERT INTO payments.merchants (name) VALUES ('again') RETURNING merchant_id")
gateway n "$SIM_TLS_API"
P=$(as_m n -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', card => $card)")
is "$(as_m n -c "SELECT status FROM pay_wait($P, '30 s')")" succeeded "a purchase in the new extension succeeds"
is "$(tail -c +$((log_from + 1)) "$NEW/postgres.log" | grep -c 'failed with SQLSTATE' || true)" 0 \
	"the worker logged no failed step meanwhile"
is "$(nworker)" "$W1" "and did not start again"

tap_done
