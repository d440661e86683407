#!/usr/bin/env bash
# A dump restored days after it was taken, into a new server, while the
# old server went on billing: it renewed a subscription whose period had
# come due after the dump, and the gateway charged the renewal.  The
# restored database has that period as due and unbilled, and bills it
# again, past the gateway's duplicate window (8 hours: the simulator's
# clock is moved on), under the same invoice number (subscription,
# period, attempt).  The renewal must be looked up, found, and recorded
# paid with the original charge: the customer is charged once.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

RR="$WORK/restore-renewals"
two_servers "$RR" renewals
gateway o "$SIM_TLS_API"

# A monthly subscription begun 35 days ago, its first month paid.
old_subscription

# The dump: the merchant's clock still 35 days back, period 1 not yet due.
cluster_pg_dump "$OLD" "$OPORT" -Fc payments >"$RR/payments.dump"

# After the dump the old server's clock comes to the present: its billing
# renews the subscription for period 1, and the gateway charges it.
as_m o -c "SELECT pay_set_test_clock(now())" >/dev/null
renewed() { [ "$(as_m "$1" -c "SELECT status FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")" = paid ] && echo yes; }
is "$(poll_value 60 renewed o)" yes "the old server renews the subscription: its period 1 invoice is paid"
number() { as_m "$1" -c "SELECT p.invoice_number FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1"; }
old_number=$(number o)
is "$(sim_ledger "$old_number")" "charge 25.00" "the gateway charged the renewal"

# Days later (past the gateway's duplicate window) the dump is restored
# into a new server.
restore_days_later "$RR/payments.dump"
is "$(nq -Atc "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")" 0 \
	"the restored database has no period 1 invoice"
is "$(poll_value 30 serving)" yes "the new server's worker serves it"

# Its clock comes to the present too: it bills period 1.
as_m n -c "SELECT pay_set_test_clock(now())" >/dev/null
done_n() { [ "$(as_m n -c "SELECT i.status || ' ' || p.status FROM payments.invoices i JOIN payments.payments p USING (merchant_id, payment_id) WHERE i.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1 AND p.status NOT IN ('pending')")" != "" ] && echo yes; }
is "$(poll_value 90 done_n)" yes "the new server bills period 1 and records an outcome"
is "$(number n)" "$old_number" "under the invoice number of the old server's charge"
is "$(sim_ledger_count "$old_number" charge)" 1 "the customer is charged once for period 1"
is "$(as_m n -c "SELECT i.status || ' ' || p.status || ' ' || p.gateway_trans_id FROM payments.invoices i JOIN payments.payments p USING (merchant_id, payment_id) WHERE i.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1")" \
	"paid succeeded $(sim_ledger_trans_ids "$old_number" charge)" "recorded paid, with the original charge's transaction"
is "$(nq -Atc "SELECT count(*) FILTER (WHERE x.request_type = 'createTransactionRequest') || ' charges, queries: ' || (count(*) FILTER (WHERE x.request_type LIKE 'get%') > 0)
		FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id)
		JOIN payments.invoices i ON i.merchant_id = o.merchant_id AND i.payment_id = o.payment_id
		WHERE o.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1")" \
	"0 charges, queries: true" "the new server looked it up, and sent no charge"

# A period that comes due after the restore is the new server's alone: it
# is charged as usual, not looked up.
as_m n -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
paid2() { [ "$(as_m n -c "SELECT status FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 2")" = paid ] && echo yes; }
is "$(poll_value 60 paid2)" yes "the new server renews the subscription for period 2: paid"
n2=$(as_m n -c "SELECT p.invoice_number FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 2")
is "$(sim_ledger "$n2")" "charge 25.00" "charged once, by the new server"
is "$(as_m n -c "SELECT o.first_sent_at >= o.created_at AND o.last_error IS NULL FROM payments.operations o JOIN payments.invoices i ON i.merchant_id = o.merchant_id AND i.payment_id = o.payment_id WHERE o.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 2")" \
	t "sent as a new charge (not taken for one the old server may have made)"

tap_done
