#!/usr/bin/env bash
# The one worker of a cluster serves the database payments.database names.
# The administrator moves it to another database at a restart while a
# purchase of the first is in flight (the gateway charged it, its reply not
# yet read), and back at the next restart.  Monitoring asked in a database
# the worker does not serve must not say the worker is alive there
# (pay_worker_health().alive, payments_worker_up): nothing queued there is
# sent; nor may pay_worker_restart there stop the worker of the other
# database and its transfers in flight.  Back in the first database, the
# purchase left "sending" is resolved from the gateway, charged once.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SD="$WORK/served-database"
SPORT=$(free_port)
cleanup() {
	private_clusters_stop
	sim_stop
}
trap cleanup EXIT

private_cluster "$SD" "$SPORT" "fsync = off"
for db in payments other; do
	cluster_psql "$SD" "$SPORT" postgres -c "CREATE DATABASE $db"
	cluster_psql "$SD" "$SPORT" "$db" -c 'CREATE EXTENSION payments'
done
q() { local db=$1; shift; cluster_psql "$SD" "$SPORT" "$db" -At "$@"; }
# health DB: alive, and the payments_worker_up gauge, as DB sees them
health() {
	echo "$(q "$1" -c "SELECT alive FROM payments.pay_worker_health()") $(q "$1" -c "SELECT payments.pay_metrics()" | sed -n 's/^payments_worker_up //p')"
}
# served_by DB: "t 1" once DB sees a worker alive, serving it (20 s at most)
alive_in() { local h; h=$(health "$1"); [ "$h" = "t 1" ] && echo "$h"; }
served_by() { poll_value 20 alive_in "$1"; }
restart() {
	as_pg "$PG_BINDIR/pg_ctl" -D "$SD/data" -m fast -w -t 60 stop >/dev/null
	cluster_start "$SD"
}

is "$(served_by payments)" "t 1" "the worker serves database payments: alive there"
is "$(health other)" "f 0" "in database other, which it does not serve: not alive, payments_worker_up 0"
wpid() { q payments -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'"; }
pid0=$(wpid)
is "$(q other -c "SELECT payments.pay_worker_restart()")" f "pay_worker_restart in database other does nothing: false"
# a restart asked for makes a new worker within a second or so
changed() { local p; p=$(wpid); [ "$p" != "$pid0" ] && echo "${p:-none}"; }
is "$(poll_value 3 changed)" "" "the worker of database payments runs on, its pid unchanged"
is "$(q other -c "SELECT payments._vault_rotate_key(true)")" f \
	"nor does a card vault key rotation there (the key is the cluster's; only database payments knows what still needs it): false"

sim_start "$SD/sim"
M=$(q payments -c "INSERT INTO payments.merchants (name) VALUES ('served') RETURNING merchant_id")
TAG=$(q payments -c "SELECT payments._invoice_tag()")
q payments -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 60000, merchant_id => $M)" >/dev/null
sim_ctl POST /faults '{"type":"hold","count":1,"process":true,"requestType":"createTransactionRequest","holdMs":60000}' >/dev/null
P=$(q payments -c "SET payments.merchant_id = '$M'" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '21.00 USD', card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'))")
charged() { [ -n "$(sim_ledger "P$TAG$P")" ] && echo yes; }
is "$(poll_value 30 charged)" yes "the gateway charged the purchase; its reply is held"

# moved to database other at a restart, the purchase still in flight
q payments -c "ALTER SYSTEM SET payments.database = 'other'" >/dev/null
restart
is "$(served_by other)" "t 1" "after a restart with payments.database = other: alive in other"
is "$(health payments)" "f 0" "in database payments, no longer served: not alive, payments_worker_up 0"
is "$(q payments -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $P")" sending \
	"the purchase in flight stays as it was, nobody serving its database"

# and back
q payments -c "ALTER SYSTEM RESET payments.database" >/dev/null
restart
is "$(served_by payments)" "t 1" "back to database payments: alive there"
is "$(health other)" "f 0" "and not in other"
done_() { q payments -c "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $P AND status IN ('succeeded', 'failed')"; }
is "$(poll_value 60 done_)" succeeded "the purchase left in flight is resolved from the gateway: succeeded"
is "$(sim_ledger_count "P$TAG$P" charge)" 1 "charged once"

tap_done
