#!/usr/bin/env bash
# A base backup (pg_basebackup) started as it is, without archive
# recovery: it keeps the system identifier and the WAL timeline of the
# server it was taken from, whose history went on after it.  The backup
# was taken while a refund waited, queued, never sent (its endpoint
# refused connections); the old server then sent it, the gateway refunded,
# and the old server was lost.  The copy has the refund as never sent: it
# must treat it as possibly sent (resent identically inside the
# duplicate window, looked up past it), as after a failover, never send
# it as new: past the window that is a second refund.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

BB="$WORK/backup-as-is"
two_servers "$BB" backup

gateway o "$SIM_TLS_API"
P=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '33.00 USD', card => $card)")
is "$(as_m o -c "SELECT status FROM pay_wait($P, '20 s')")" succeeded "a purchase succeeds on the old server"
sim_ctl POST /settle >/dev/null
# the refund waits behind an endpoint that refuses connections
gateway o "https://127.0.0.1:$(free_port)/xml/v1/request.api"
R=$(as_m o -c "SELECT operation_id FROM pay_refund(payment_id => $P, amount => '10.00 USD')")
tried() { [ "$(oq -Atc "SELECT status || ' ' || never_sent FROM payments.operations WHERE merchant_id = $M AND operation_id = $R AND last_error IS NOT NULL")" = "queued true" ] && echo yes; }
is "$(poll_value 60 tried)" yes "a refund waits, queued, never sent"

# The base backup, taken now (its WAL with it), then the old server goes on.
PRIVATE_CLUSTERS+=("$NEW")
mkdir -p "$NEW/sock"
as_root chown -R "$PG_OS_USER" "$NEW"
as_pg "$PG_BINDIR/pg_basebackup" -h "$OLD/sock" -p "$OPORT" -U postgres -D "$NEW/data" -X stream -c fast >/dev/null
as_pg sed -i -e "s|^port = .*|port = $NPORT|" -e "s|^unix_socket_directories = .*|unix_socket_directories = '$NEW/sock'|" "$NEW/data/postgresql.conf"

gateway o "$SIM_TLS_API"
oq -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $R" >/dev/null
refunded() { [ "$(sim_ledger "R$TAG$R")" = "refund 10.00" ] && echo yes; }
is "$(poll_value 30 refunded)" yes "after the backup the old server sends the refund: the gateway refunds 10.00"
as_pg "$PG_BINDIR/pg_ctl" -D "$OLD/data" -m immediate stop >/dev/null

# The copy started as it is: the same system and timeline.
cluster_start "$NEW"
is "$(nq -Atc "SELECT pg_is_in_recovery()")" f "the copy runs as a primary"
recorded() { [ "$(nq -Atc "SELECT base_backup IS NOT NULL FROM payments.worker_server")" = t ] && echo yes; }
is "$(poll_value 30 recorded)" yes "its worker records the base backup it was started from"
like "$(grep 'not the one the worker last ran on' "$NEW/postgres.log" || true)" 'treated as possibly sent' \
	"and says in the log that what looked never sent is treated as possibly sent"
is "$(nq -Atc "SELECT status || ' ' || never_sent FROM payments.operations WHERE merchant_id = $M AND operation_id = $R")" "queued false" \
	"the refund the old server sent after the backup is taken for possibly sent"

# Its gateway set again: the refund is resent identically (the gateway
# answers with the original refund) and recorded; refunded once.
gateway n "$SIM_TLS_API"
nq -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $R" >/dev/null
done_c() { [ "$(nq -Atc "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $R")" = succeeded ] && echo yes; }
is "$(poll_value 60 done_c)" yes "the copy records the refund succeeded"
is "$(sim_ledger "R$TAG$R")" "refund 10.00" "refunded once"
is "$(as_m n -c "SELECT amount_refunded FROM pay_get_payment($P)")" "10.00 USD" "the payment shows 10.00 refunded"

# The copy's own restart is no change of server.
log_from=$(stat -c %s "$NEW/postgres.log")
r0=$(nq -Atc "SELECT recorded_at FROM payments.worker_server")
cluster_stop "$NEW"
cluster_start "$NEW"
again() { [ "$(nq -Atc "SELECT recorded_at > '$r0' FROM payments.worker_server")" = t ] && echo yes; }
is "$(poll_value 30 again)" yes "the copy restarted: its worker starts again"
is "$(tail -c +$((log_from + 1)) "$NEW/postgres.log" | grep -c 'not the one the worker last ran on' || true)" 0 \
	"and does not take its own restart for a change of server"

tap_done
