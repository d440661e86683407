#!/usr/bin/env bash
# The README's main command: set up this machine, build and install the
# extension, start a local cluster (payments and pg_cron preloaded) and the
# Authorize.Net simulator under .local/ in the checkout (or a directory
# under /tmp), create the extension, run real payment flows through the
# background worker, and print how to connect.
#
#   bash test/quickstart.sh          set up (or restart) and demonstrate
#   bash test/quickstart.sh stop     stop the local cluster and simulator
#   bash test/quickstart.sh destroy  stop them and delete their directory
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/sim.sh"

PORT=${PAYMENTS_PORT:-5499}

# The cluster lives in .local/ of the checkout when the postgres OS user can
# reach it; a checkout in a private directory (mktemp -d) gets a directory
# under /tmp named after the checkout instead.
locate_cluster() {
	if id postgres >/dev/null 2>&1 && as_pg test -x "$REPO_ROOT" 2>/dev/null; then
		LOCAL="$REPO_ROOT/.local"
	else
		LOCAL="/tmp/payments-quickstart-$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)"
	fi
	DIR="$LOCAL/cluster"
}

stop_simulator() {
	if [ -f "$LOCAL/sim/pid" ]; then
		kill "$(cat "$LOCAL/sim/pid")" 2>/dev/null || true
		rm -f "$LOCAL/sim/pid"
	fi
}

case "${1:-start}" in
stop)
	PG_BINDIR=$(pg_config --bindir); locate_cluster
	stop_simulator; cluster_stop "$DIR"; log "stopped"; exit 0 ;;
destroy)
	PG_BINDIR=$(pg_config --bindir); locate_cluster
	stop_simulator; cluster_stop "$DIR"; as_root rm -rf "$LOCAL"; log "removed $LOCAL"; exit 0 ;;
start) ;;
*) die "usage: $0 [start|stop|destroy]" ;;
esac

install_deps
build_and_install
locate_cluster

if [ -f "$DIR/data/PG_VERSION" ]; then
	log "restarting the local cluster in $DIR"
	cluster_stop "$DIR"
else
	log "creating a local cluster in $DIR (port $PORT)"
	cluster_init "$DIR" "$PORT"
fi
# the demonstration moves billing time with a test clock (never on in production)
grep -q '^payments.test_clocks' "$DIR/data/postgresql.conf" ||
	echo 'payments.test_clocks = on' | as_pg tee -a "$DIR/data/postgresql.conf" >/dev/null
cluster_start "$DIR"

q() { cluster_psql "$DIR" "$PORT" "$@"; }
if [ -z "$(q postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'payments'")" ]; then
	q postgres -c 'CREATE DATABASE payments'
fi
q payments -q <<'SQL'
CREATE EXTENSION IF NOT EXISTS payments;
-- a cluster made by an older checkout gets this version's schema
SET client_min_messages = warning;
ALTER EXTENSION payments UPDATE;
RESET client_min_messages;
CREATE EXTENSION IF NOT EXISTS pg_cron;
ALTER DATABASE payments SET search_path = "$user", public, payments;
-- pg_cron seals the audit log every minute (tamper evidence)
SELECT cron.schedule('payments-audit-seal', '* * * * *', 'SELECT payments.pay_audit_seal()');
SQL

# The Authorize.Net simulator, left running beside the cluster: HTTPS with a
# CA of its own, which the worker verifies.
log "starting the Authorize.Net simulator"
stop_simulator
sim_start "$LOCAL/sim"
echo "$SIM_PID" > "$LOCAL/sim/pid"
disown "$SIM_PID" 2>/dev/null || true
q payments -q -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA')" >/dev/null

log "demonstration"
q payments -v ON_ERROR_STOP=0 -e <<'SQL'
SET search_path = public, payments;
\pset footer off
-- Money: integer minor units with an ISO 4217 currency; never a float.
SELECT '12.34 USD'::pay_amount AS usd, 'JPY 1500'::pay_amount AS jpy, '1.234 KWD'::pay_amount AS kwd,
       pay_minor_units('12.34 USD') AS cents;
-- Arithmetic stays in one currency; division rounds half to even.
SELECT '10.00 USD'::pay_amount / 3 AS a_third, '0.05 USD'::pay_amount / 2 AS half_to_even,
       '19.99 EUR'::pay_amount * 0.2 AS vat;
-- Errors instead of silent rounding or mixing:
SELECT '12.345 USD'::pay_amount;
SELECT '1 USD'::pay_amount + '1 EUR';
-- A card: validated, masked, fingerprinted; the number cannot be read back.
SELECT c AS card, pay_card_brand(c) AS brand, pay_card_last4(c) AS last4,
       left(pay_card_fingerprint(c), 16) || '...' AS fingerprint
FROM (SELECT pay_card(number => '4111 1111 1111 1111', exp_month => 12,
                      exp_year => extract(year FROM now())::int + 2, cvv => '123') AS c) t;

-- A purchase: recorded in this transaction, sent by the worker after COMMIT.
SELECT payment_id AS purchase, status FROM pay_purchase(amount => '25.00 USD',
    card => pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2, '123', 'Ada Lovelace'),
    description => 'Two books', order_ref => 'order-1001',
    idempotency_key => 'order-1001-' || (SELECT count(*) FROM payments.payments)) \gset
SELECT payment_id, status, amount, card_brand, card_last4, gateway_trans_id, auth_code
FROM pay_wait(:purchase, '10 s');

-- The same call again (a client retry): the same payment, not a second charge.
SELECT payment_id AS same_payment, status FROM pay_purchase(amount => '25.00 USD',
    card => pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2, '123', 'Ada Lovelace'),
    description => 'Two books', order_ref => 'order-1001',
    idempotency_key => 'order-1001-' || (SELECT count(*) - 1 FROM payments.payments));

-- Authorize 80.00, capture 50.00 (the rest is released).
SELECT payment_id AS auth FROM pay_authorize(amount => '80.00 USD',
    card => pay_card('5555 5555 5555 4444', 6, extract(year FROM now())::int + 3, '321')) \gset
SELECT payment_id, status FROM pay_wait(:auth, '10 s');
SELECT kind, status, amount FROM pay_capture(payment_id => :auth, amount => '50.00 USD');
SELECT payment_id, status, amount_authorized, amount_captured FROM pay_wait(:auth, '10 s');

-- Refund the purchase (before settlement a full refund is sent as a void).
SELECT kind, status, amount, via_void FROM pay_refund(payment_id => :purchase, reason => 'changed their mind');
SELECT payment_id, status, amount_refunded FROM pay_wait(:purchase, '10 s');

-- A decline is data, not an exception (sandbox trigger: billing zip 46282).
SELECT payment_id AS declined FROM pay_purchase(amount => '12.00 USD',
    card => pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2),
    customer => '{"zip": "46282"}') \gset
SELECT payment_id, status, decline_code, decline_reason FROM pay_wait(:declined, '10 s');

-- What a DBA looks at: operations, the masked gateway log, events, health.
SELECT operation_id, payment_id, kind, status, amount, attempts, gateway_trans_id
FROM payments.operations ORDER BY operation_id DESC LIMIT 6;
SELECT exchange_id, request_type, outcome, http_status, round(duration_ms::numeric, 1) AS ms,
       substring(request_masked from '"creditCard":[{][^}]*[}]') AS card_as_logged
FROM payments.gateway_exchanges ORDER BY exchange_id DESC LIMIT 6;
SELECT event_type, count(*) FROM payments.events GROUP BY 1 ORDER BY 1;
SELECT alive, queue_depth, in_flight, circuit_state, requests_sent, approved, declined
FROM pay_worker_health();
SQL

# The life of a payment over days: the gateway settles its batch (nightly at
# Authorize.Net), and a later refund goes out as a refund, decided by the
# worker from the gateway's state of the transaction.
log "the gateway settles its batch; a refund after settlement"
sim_ctl POST /settle >/dev/null
q payments -v ON_ERROR_STOP=0 -e <<'SQL'
SET search_path = public, payments;
\pset footer off
SELECT payment_id AS auth FROM payments.payments WHERE amount_authorized = '80.00 USD'
ORDER BY payment_id DESC LIMIT 1 \gset
SELECT kind, status, amount FROM pay_refund(payment_id => :auth, amount => '20.00 USD', reason => 'one item returned');
SELECT payment_id, status, amount_captured, amount_refunded, settled_at IS NOT NULL AS settled
FROM pay_wait(:auth, '10 s');
SELECT request_type, outcome FROM payments.gateway_exchanges
WHERE operation_id = (SELECT max(operation_id) FROM pay_payment_operations(:auth)) ORDER BY exchange_id;
SQL

# Recurring billing over months, on a test clock: a customer with a card
# saved at the gateway, a monthly subscription, a renewal, a renewal the bank
# declines (past_due, retried on the dunning schedule), and the recovery
# when the customer gives a new card (tried at once).
log "a subscription over three months: renewal, decline, dunning, recovery"
q payments -v ON_ERROR_STOP=0 -e <<'SQL'
SET search_path = public, payments;
\pset footer off
-- A customer and a card saved at the gateway (an Authorize.Net customer
-- profile; only brand, last four, expiry and the gateway's ids are kept).
SELECT customer_id AS cust FROM pay_create_customer(email => 'grace@example.com', name => 'Grace Hopper',
    billing => '{"first_name": "Grace", "last_name": "Hopper", "zip": "46201"}') \gset
SELECT payment_method_id AS card FROM pay_save_payment_method(customer_id => :cust,
    card => pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2, '123', 'Grace Hopper')) \gset
SELECT payment_method_id, status, card_brand, card_last4, payment_profile_id IS NOT NULL AS at_gateway
FROM pay_wait_payment_method(:card, '10 s');

-- A monthly plan and a subscription: its first invoice is charged at once.
SELECT plan_id AS plan FROM pay_create_plan(name => 'Pro monthly', amount => '29.00 USD') \gset
SELECT subscription_id AS sub FROM pay_create_subscription(customer_id => :cust, plan_id => :plan,
    time_zone => 'America/New_York') \gset
SELECT payment_id AS charge FROM pay_list_invoices(subscription_id => :sub) ORDER BY invoice_id DESC LIMIT 1 \gset
SELECT payment_id, status, amount FROM pay_wait(:charge, '10 s');
SELECT subscription_id, status, current_period_start, current_period_end FROM pay_get_subscription(:sub);

-- A month later (billing time moved by a test clock), the renewal: one
-- invoice for the new period, charged with the card-on-file fields.
-- pay_run_renewals() is what pg_cron (or the worker's own clock) runs.
-- In one transaction with the clock's move: the billing process, woken
-- when the move commits, would otherwise race this call for the renewal
-- (and the lines below would look before it was made).
BEGIN;
SELECT pay_advance_test_clock('1 month 1 hour') AS billing_now;
SELECT pay_run_renewals() AS renewed;
COMMIT;
SELECT payment_id AS charge FROM pay_list_invoices(subscription_id => :sub) ORDER BY invoice_id DESC LIMIT 1 \gset
SELECT payment_id, status, amount FROM pay_wait(:charge, '10 s');

-- The next month the bank declines (sandbox trigger: billing zip 46282):
-- the subscription is past_due and the invoice waits for its first retry.
SELECT status FROM pay_update_customer(customer_id => :cust, billing => '{"first_name": "Grace", "last_name": "Hopper", "zip": "46282"}');
BEGIN;
SELECT pay_advance_test_clock('1 month') AS billing_now;
SELECT pay_run_renewals() AS renewed;
COMMIT;
SELECT payment_id AS charge FROM pay_list_invoices(subscription_id => :sub) ORDER BY invoice_id DESC LIMIT 1 \gset
SELECT payment_id, status, decline_code, decline_reason FROM pay_wait(:charge, '10 s');
SELECT subscription_id, status FROM pay_get_subscription(:sub);
SELECT invoice_id, status, amount, attempt_count, next_attempt_at, last_failure_reason
FROM pay_list_invoices(subscription_id => :sub) ORDER BY invoice_id DESC LIMIT 1;

-- The customer gives a new card: it is tried at once, and the
-- subscription is active again.
SELECT status FROM pay_update_customer(customer_id => :cust, billing => '{"first_name": "Grace", "last_name": "Hopper", "zip": "46201"}');
SELECT payment_method_id AS card2 FROM pay_save_payment_method(customer_id => :cust,
    card => pay_card('5555 5555 5555 4444', 6, extract(year FROM now())::int + 3, '321', 'Grace Hopper')) \gset
SELECT status, is_default FROM pay_wait_payment_method(:card2, '10 s');
SELECT payment_id AS charge FROM pay_list_invoices(subscription_id => :sub) ORDER BY invoice_id DESC LIMIT 1 \gset
SELECT payment_id, status, amount, card_last4 FROM pay_wait(:charge, '10 s');
SELECT subscription_id, status, current_period_start, current_period_end FROM pay_get_subscription(:sub);
SELECT invoice_id, kind, status, amount, attempt_count, period_start::date FROM pay_list_invoices(subscription_id => :sub)
ORDER BY invoice_id;
SELECT event_type, created_at FROM payments.events
WHERE event_type LIKE 'subscription.%' AND (data ->> 'subscription_id')::bigint = :sub ORDER BY event_id;
SQL

# The demonstration shows what it says: a renewal paid, one declined
# (past_due) and paid by the new card, the subscription active again.
got=$(q payments -Atc "SELECT string_agg(i.kind || ':' || i.status, ',' ORDER BY i.invoice_id)
	|| ' ' || (SELECT s.status FROM payments.subscriptions s WHERE s.subscription_id = max(i.subscription_id))
	|| ' ' || (SELECT count(*) FROM payments.events e WHERE e.event_type = 'subscription.past_due'
		AND (e.data ->> 'subscription_id')::bigint = max(i.subscription_id))
	FROM payments.invoices i WHERE i.subscription_id = (SELECT max(subscription_id) FROM payments.subscriptions)")
[ "$got" = "first:paid,renewal:paid,renewal:paid active 1" ] \
	|| die "the subscription demonstration did not go as shown (invoices, status, past_due events: $got)"

cat <<EOF

The local cluster is running (data in $DIR/data, log in $DIR/postgres.log).
Connect:
    psql "postgresql://postgres@127.0.0.1:$PORT/payments"
The Authorize.Net simulator is running too:
    API      $SIM_TLS_API  (CA: $SIM_CA)
    control  $SIM_CONTROL  (e.g. curl -X POST $SIM_CONTROL/settle)
Stop both:   bash test/quickstart.sh stop
Remove both: bash test/quickstart.sh destroy
EOF
