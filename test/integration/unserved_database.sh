#!/usr/bin/env bash
# The extension in a database the worker does not serve says so.
#
# The worker serves one database, payments.database ("payments" on the test
# cluster).  In another, pay_purchase is accepted and queued and nothing
# ever sends it; pay_worker_health said the worker was alive with a queue of
# 0 and nothing told the user.  Now: CREATE EXTENSION and ALTER EXTENSION
# UPDATE there warn (01Y01, naming the database served and the setting);
# pay_worker_health says alive false, names the database served
# (served_database), counts this database's queue (also for pg_monitor) and
# leaves the worker's columns NULL; pay_metrics says payments_worker_up 0,
# payments_database_served 0 and gives this database's queue depth only;
# pay_wait of an unfinished payment adds a NOTICE and returns at once (it
# waited its whole timeout for what nothing would do), and so does
# pay_gateway_status(wait_ms => ...) of a credentials check asked for there
# (it waited its whole wait_ms for a check nothing sends).  The served
# database is as before (and says served).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

DB=payments_unserved
MON=unserved_monitor
cleanup() {
	# (the served side's purchase may go on waiting for a gateway: its card
	# is re-sealed at each vault key rotation and holds none back)
	cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP ROLE IF EXISTS $MON" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cluster_psql "$WORK" "$PORT" postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" \
	-c "CREATE DATABASE $DB" -c "DROP ROLE IF EXISTS $MON" -c "CREATE ROLE $MON NOLOGIN IN ROLE pg_monitor" >/dev/null
# u SQL...: psql in the unserved database, messages with their SQLSTATE, stderr too
u() { cluster_psql "$WORK" "$PORT" "$DB" -At -v VERBOSITY=verbose "$@" 2>&1; }
# s SQL...: the same in the served database
s() { cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose "$@" 2>&1; }

# 1. CREATE EXTENSION warns, and says what to do
out=$(u -c "CREATE EXTENSION payments")
like "$out" '^WARNING:  01Y01: no payments worker serves database "payments_unserved"$' \
	"CREATE EXTENSION in a database the worker does not serve warns (01Y01)"
like "$out" '^DETAIL:  The payments background worker serves only database "payments" \(the payments.database setting\): payments made here are queued and never sent to the gateway\.$' \
	"the detail names the database served and the setting"
like "$out" "^HINT:  Use the extension in database \"payments\", or set payments.database = 'payments_unserved' in postgresql.conf and restart the server" \
	"the hint says how to serve this one"
is "$(u -c "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" \
	"$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO_ROOT/payments.control")" "and the extension is made"
# the check CREATE EXTENSION makes is silent in the database served
is "$(s -c "SELECT payments._warn_unserved_database()")" "" "the same check in the database served says nothing"

# 2. ALTER EXTENSION UPDATE warns too (from the first released version)
u -c "DROP EXTENSION payments" -c "CREATE EXTENSION payments VERSION '0.1.0'" >/dev/null
out=$(u -c "ALTER EXTENSION payments UPDATE")
like "$out" '^WARNING:  01Y01: no payments worker serves database "payments_unserved"$' "ALTER EXTENSION payments UPDATE there warns too"
like "$out" '^DETAIL:  The payments background worker serves only database "payments"' "naming the database served"

# 3. a purchase there: accepted, queued, never sent, and every reading says so
P=$(u -v ON_ERROR_STOP=1 -c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))")
like "$P" '^[0-9]+$' "a purchase in that database is accepted (payment $P)"
HEALTH="SELECT concat_ws('|', alive, pid IS NULL, started_at IS NULL, last_loop_at IS NULL, queue_depth,
	in_flight IS NULL, circuit_state IS NULL, requests_sent IS NULL, failing_gateways IS NULL, gateway_failures IS NULL,
	served_database) FROM payments.pay_worker_health()"
is "$(u -c "$HEALTH")" "f|t|t|t|1|t|t|t|t|t|payments" \
	"pay_worker_health there: not alive, no worker's columns, this database's queue (1), served_database payments"
is "$(u -c "SET ROLE $MON" -c "$HEALTH")" "f|t|t|t|1|t|t|t|t|t|payments" "the same for pg_monitor, which reads no table"
# no_wait WHAT SQL: SQL, which would wait up to 30 s, in the unserved
# database returns at once with the notice that no worker serves it; its
# output (with the notice) in out
no_wait() {
	local what=$1 t0 waited_ms
	t0=$(date +%s%N)
	out=$(u -c "$2")
	waited_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	ok "$([ "$waited_ms" -lt 15000 ]; echo $?)" "$what there returns at once, not after its 30 s (took $waited_ms ms)"
	like "$out" '^NOTICE:  01Y01: no payments worker serves database "payments_unserved"$' "with a notice that no worker serves the database"
	like "$out" '^DETAIL:  The payments background worker serves only database "payments"' "naming the database served"
}
no_wait pay_wait "SELECT status FROM payments.pay_wait($P, '30 s')"
like "$out" '^pending$' "pay_wait there: pending"
out=$(u -c "SELECT status FROM payments.pay_wait($P, '0 s')")
like "$out" '^NOTICE:  01Y01: ' "so does a read with timeout 0"
# a credentials check asked for there (committed): nothing sends it
u -v ON_ERROR_STOP=1 -c "SELECT payments.pay_configure_gateway(api_login_id => 'unserved-login', transaction_key => 'unserved-key',
	endpoint_url => 'https://127.0.0.1:9/xml/v1/request.api', verify => true)" >/dev/null
no_wait "pay_gateway_status(wait_ms => 30000)" "SELECT verification FROM payments.pay_gateway_status(wait_ms => 30000)"
like "$out" '^requested$' "pay_gateway_status(wait_ms => 30000) there: the check is still requested"
unlike "$(u -c "SELECT verification FROM payments.pay_gateway_status()")" '^NOTICE' \
	"pay_gateway_status() without a wait reads the state, no notice"
metrics=$(u -c "SET ROLE $MON" -c "SELECT payments.pay_metrics()")
like "$metrics" '^payments_worker_up 0$' "pay_metrics there: payments_worker_up 0"
like "$metrics" '^payments_database_served 0$' "payments_database_served 0"
like "$metrics" '^payments_queue_depth 1$' "this database's queue depth"
unlike "$metrics" '^payments_(gateway_requests|approved)_total ' "and no counters of the worker, which serves another database"

# 4. the database served is as before, and says so
served() { cluster_psql "$WORK" "$PORT" payments -Atc "SELECT alive || '|' || served_database FROM payments.pay_worker_health() WHERE alive"; }
is "$(poll_value 20 served)" "true|payments" "pay_worker_health in the database served: alive, served_database payments"
metrics=$(s -c "SELECT payments.pay_metrics()")
like "$metrics" '^payments_worker_up 1$' "pay_metrics there: payments_worker_up 1"
like "$metrics" '^payments_database_served 1$' "payments_database_served 1"
like "$metrics" '^payments_approved_total [0-9]+$' "with the worker's counters"
# an unfinished payment there (its merchant has no gateway: it waits for one)
M=$(s -c "INSERT INTO payments.merchants (name) VALUES ('unserved: served side') RETURNING merchant_id")
PS=$(s -c "SET payments.merchant_id = '$M'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))")
is "$(s -c "SET payments.merchant_id = '$M'" -c "SELECT status FROM payments.pay_wait($PS, '0 s')")" pending \
	"pay_wait of an unfinished payment in the database served: pending, no notice"
# what ends pay_gateway_status's wait in another database is false here, silent
is "$(s -c "SELECT payments._note_unserved_database()")" f \
	"the check that ends pay_gateway_status's wait elsewhere: false in the database served, no notice"

tap_done
