#!/usr/bin/env bash
# A dump restored days after it was taken, while the old server went on
# dunning: a renewal declined before the dump was retried by the old
# server's billing run at its retry time, and the gateway charged it.  On
# the restored database the invoice is still open with that retry
# scheduled (its test clock is the dump's); the customer gives a new card
# there, and the invoice is charged at once (_retry_open_invoice_now)
# under the number of the attempt the old server made (subscription,
# period, attempt), past the gateway's duplicate window.  A retry time
# that came before the database changed server says the old server may
# have made it: the charge is looked up, not sent again; the customer is
# charged once (the transaction found is of the earlier card: the payment
# stays unknown for a person).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

RR="$WORK/restore-retry-now"
two_servers "$RR" retrynow
gateway o "$SIM_TLS_API"

# A monthly subscription begun 35 days ago, its first month paid.
old_subscription
sub_status() { as_m "$1" -c "SELECT status FROM pay_get_subscription($SID)"; }
is_status() { [ "$(sub_status "$1")" = "$2" ] && echo yes; }

# Period 1's renewal is declined (the simulator declines billing zip
# 46282): past_due, a retry scheduled a day later.
as_m o -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"46282\"}')" >/dev/null
as_m o -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
is "$(poll_value 60 is_status o past_due)" yes "period 1's renewal is declined: past_due"

# The dump, with the retry scheduled.
cluster_pg_dump "$OLD" "$OPORT" -Fc payments >"$RR/payments.dump"

# The old server's billing run retries on its day: approved, charged.
as_m o -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
as_m o -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
is "$(poll_value 60 is_status o active)" yes "the old server's retry is approved: active"
old_number=$(as_m o -c "SELECT p.invoice_number FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1 AND p.status = 'succeeded'")
is "$(sim_ledger "$old_number")" "charge 25.00" "the gateway charged the retry"

# Days later (past the duplicate window) the dump is restored.
restore_days_later "$RR/payments.dump"
is "$(poll_value 30 serving)" yes "the new server's worker serves it"
is "$(sub_status n)" past_due "the restored subscription is past_due, its retry not yet due on its clock"

# The customer gives a new card there: the invoice is charged at once.
as_m n -c "SELECT 1 FROM pay_update_customer(customer_id => $CID, billing => '{\"zip\":\"10001\"}')" >/dev/null
card2="pay_card('5555 5555 5555 4444', 11, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
PM2=$(as_m n -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => $card2, validation_mode => 'none')")
as_m n -c "SELECT status FROM pay_wait_payment_method($PM2, '20 s')" >/dev/null
as_m n -c "SELECT 1 FROM pay_update_subscription(subscription_id => $SID, payment_method_id => $PM2)" >/dev/null
exchanges() { nq -Atc "SELECT count(*) FILTER (WHERE x.request_type = 'createTransactionRequest') || ' charges, queries: ' || (count(*) FILTER (WHERE x.request_type LIKE 'get%') > 0)
		FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id)
		JOIN payments.payments p ON p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
		WHERE o.merchant_id = $M AND p.invoice_number = '$old_number' AND p.payment_method_id = $PM2"; }
done_n() { [ "$(exchanges)" != "0 charges, queries: false" ] && echo yes; }
is "$(poll_value 120 done_n)" yes "the new server charges the invoice at once, under the old server's attempt's number"
is "$(exchanges)" "0 charges, queries: true" "its retry time came before the restore: looked up, not sent as a new charge"
is "$(sim_ledger_count "$old_number" charge)" 1 "the customer is charged once for that attempt"
# The transaction found is of the other card: it is left unknown for a
# person (README, Failover and restores), never charged again.
is "$(as_m n -c "SELECT i.status || ' ' || p.status FROM payments.invoices i JOIN payments.payments p USING (merchant_id, payment_id) WHERE i.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1")" \
	"open unknown" "the charge of the other card stays unknown, the invoice open"

tap_done
