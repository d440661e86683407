#!/usr/bin/env bash
# Billing runs at the same moment: several sessions run the renewals (as
# pg_cron and the worker would: pay_run_renewals and _run_renewals), one of
# them holding a batch and then dying midway; then the dunning retries the
# same way.  Every due subscription is renewed once, every period invoiced
# once, every invoice charged once per run of its schedule, and no session
# fails (no deadlock, no unique violation).  In a database of its own, which
# no worker serves: the charges stay queued (the end-to-end flows with the
# worker and the simulator are the RECUR tests).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

DB=billing_runs
N=1500
cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
cluster_psql "$WORK" "$PORT" "$DB" -c 'CREATE EXTENSION payments'
q() { cluster_psql "$WORK" "$PORT" "$DB" -At "$@"; }

q <<SQL
INSERT INTO payments.merchants (name) VALUES ('runs-b');
INSERT INTO payments.customers (merchant_id, customer_profile_id, correlation_id)
SELECT 1 + g % 2, 'cp' || g, 'runs' FROM generate_series(1, $N) g;
INSERT INTO payments.payment_methods (merchant_id, customer_id, status, source, validation_mode, is_default,
	card_brand, card_last4, card_exp_month, card_exp_year, customer_profile_id, payment_profile_id, correlation_id)
SELECT merchant_id, customer_id, 'active', 'card', 'none', true, 'Visa', '1111', 12, 2045, customer_profile_id, 'pp', 'runs'
FROM payments.customers;
INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit, interval_count,
	billing_anchor, current_period_index, current_period_start, current_period_end, next_renewal_at, correlation_id)
SELECT merchant_id, customer_id, 'active', '10.00 USD', 'month', 1, (now() - interval '1 month')::timestamp, 0,
	now() - interval '1 month', now() - interval '1 second', now() - interval '1 second', 'runs'
FROM payments.customers;
ANALYZE;
SQL

# run_all WHAT: four sessions at once, each calling WHAT until it returns 0;
# their output (errors included) in $WORK/billing_runs.*.log
run_all() {
	local what=$1 i pids=()
	for i in 1 2 3 4; do
		(
			for _ in $(seq 200); do
				n=$(q -c "SELECT $what" 2>&1) || { echo "ERROR $n"; exit 0; }
				echo "$n"
				[ "$n" = 0 ] && break
			done
		) > "$WORK/billing_runs.$i.log" &
		pids+=($!)
	done
	wait "${pids[@]}"
}
errors() { cat "$WORK"/billing_runs.*.log | grep -c ERROR || true; }

# a session takes a batch of 300 and hangs (a run that will die midway)
q -c "BEGIN" -c "SELECT payments._run_renewals(NULL, 300)" -c "SELECT pg_sleep(120)" -c "COMMIT" \
	> "$WORK/billing_runs.stuck.log" 2>&1 &
stuck=$!
stuck_pid=$(poll_value 30 q -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB' AND query LIKE '%pg_sleep(120)%' AND state = 'active' AND pid <> pg_backend_pid()")
ok "$([ -n "$stuck_pid" ]; echo $?)" "a session holds a batch of 300 renewals"

run_all "payments.pay_run_renewals(max_count => 100)"
is "$(errors)" 0 "four sessions renewing at once: none fails"
is "$(q -c "SELECT count(*) FROM payments.invoices")" "$((N - 300))" \
	"they renew every due subscription but the 300 the other session holds (SKIP LOCKED)"

q -c "SELECT pg_terminate_backend($stuck_pid)" >/dev/null
wait "$stuck" || true
run_all "payments._run_renewals(NULL, 100)"
is "$(errors)" 0 "after that session died, four sessions at once again: none fails"
is "$(q -c "SELECT count(*) || '|' || count(DISTINCT (merchant_id, subscription_id, period_index)) FROM payments.invoices")" "$N|$N" \
	"every subscription is renewed once: one invoice per period"
is "$(q -c "SELECT count(*) FROM payments.payments WHERE invoice_id IS NOT NULL")" "$N" "one charge per invoice"
is "$(q -c "SELECT count(*) FROM payments.subscriptions WHERE current_period_index = 1 AND next_renewal_at > now() + interval '27 days'")" "$N" \
	"every subscription is in period 1, its next renewal a month ahead"
is "$(q -c "SELECT count(*) FROM payments.events WHERE event_type = 'subscription.renewed'")" "$N" \
	"one subscription.renewed each (the dead session's writes were rolled back)"

# every charge declined (the worker's record step), then the first retry due
q -c "UPDATE payments.payments SET status = 'failed', decline_code = '2', decline_reason = 'This transaction has been declined.' WHERE invoice_id IS NOT NULL" >/dev/null
is "$(q -c "SELECT count(*) FROM payments.subscriptions WHERE status = 'past_due'")" "$N" "every declined renewal makes its subscription past_due"
q -c "UPDATE payments.invoices SET next_attempt_at = now() - interval '1 second' WHERE next_attempt_at IS NOT NULL" >/dev/null
run_all "payments.pay_run_dunning(max_count => 100)"
is "$(errors)" 0 "four sessions retrying at once: none fails"
is "$(q -c "SELECT count(*) || '|' || count(DISTINCT invoice_id) FROM payments.payments WHERE invoice_id IS NOT NULL AND status = 'pending'")" "$N|$N" \
	"every invoice is retried once"
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE attempt_count = 2 AND next_attempt_at IS NULL")" "$N" \
	"each has two attempts and nothing scheduled while the retry is in flight"


# The worker claims ordinary operations before a billing run's charges:
# with every retry above queued (background), a purchase queued after them
# is the one claimed first; then the charges in due order.
is "$(q -c "SELECT count(*) FILTER (WHERE o.background) || '|' || count(*) FROM payments.operations o JOIN payments.payments p USING (merchant_id, payment_id) WHERE p.invoice_id IS NOT NULL")" "$((2 * N))|$((2 * N))" \
	"every charge a billing run queued (renewals and retries) is a background charge"
q -c "SET payments.allow_insecure_endpoint = on" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'login', transaction_key => 'key', endpoint_url => 'http://127.0.0.1:9/', merchant_id => m) FROM payments.merchants m(m)" >/dev/null
purchase=$(q -c "SET payments.merchant_id = '1'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '5.00 USD', card => payments.pay_card('4111111111111111', 12, 2031, '123'))" | tail -1)
is "$(q -c "SELECT background FROM payments.operations WHERE payment_id = $purchase")" f "an ordinary purchase is not a background operation"
is "$(q -c "SELECT payment_id FROM payments._claim_operations(1)")" "$purchase" \
	"the claim takes the purchase queued last before $((N)) background charges due earlier"
is "$(q -c "SELECT count(*) FROM payments._claim_operations(10) c JOIN payments.payments p USING (merchant_id, payment_id) WHERE p.invoice_id IS NOT NULL")" 10 \
	"then the background charges, as many as the claim has room for"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE background AND status = 'sending' AND next_attempt_at > (SELECT min(next_attempt_at) FROM payments.operations WHERE background AND status = 'queued')")" 0 \
	"in due order: none claimed is due after one still queued"
purchase2=$(q -c "SET payments.merchant_id = '1'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '6.00 USD', card => payments.pay_card('4111111111111111', 12, 2031, '123'))" | tail -1)
is "$(q -c "SELECT string_agg(payment_id::text, ',') FROM payments._claim_operations(10, 0)")" "$purchase2" \
	"with no room for background charges (the worker's pipeline holds a claim's worth) only the ordinary purchase is claimed"
is "$(q -c "SELECT count(*) FROM payments._claim_operations(10, 3)")" 3 \
	"and with room for three, three background charges"

cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE $DB" >/dev/null
tap_done
