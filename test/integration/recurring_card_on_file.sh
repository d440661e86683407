#!/usr/bin/env bash
# The card-on-file fields of subscription charges, as the gateway receives
# them: a charge of an invoice is recurring (transactionSettings
# recurringBilling=true); its subscription's first charge is the first of
# the recurring series (processingOptions.isFirstRecurringPayment, no
# original network transaction id), later ones merchant-initiated
# (isSubsequentAuth with the stored method's original network transaction
# id); an ordinary charge of the same stored method is not recurring.  Read
# from the request the worker logged (gateway_exchanges.request_masked) and
# from what the simulator recorded (its ledger).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-recurring-cof"
trap sim_stop EXIT
sim_start "$SIMDIR"

merchant_on_simulator recurring_cof

q() { as_merchant "$@"; }
su() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
year=$(( $(date +%Y) + 3 ))
request_of() {	# the purchase request the worker sent for payment $1
	q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $1 AND o.kind = 'purchase' ORDER BY e.exchange_id DESC LIMIT 1"
}
ledger_of() {	# ledger_of INVOICE_NUMBER PYTHON_EXPR (over e, the one charge)
	sim_ctl GET /ledger | python3 -c '
import json, sys
inv, expr = sys.argv[1], sys.argv[2]
es = [e for e in json.load(sys.stdin) if e.get("invoiceNumber") == inv and e.get("kind") == "charge"]
e = es[0] if len(es) == 1 else None
print(eval(expr) if e else "charges: %d" % len(es))
' "$1" "$2"
}

cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'sub@example.com', name => 'Ada Lovelace')")
pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('4111111111111111', 12, $year, '123', 'Ada Lovelace'), validation_mode => 'liveMode')")
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')")" active "the customer's card is saved (liveMode)"
ntid=$(q -c "SELECT network_trans_id FROM pay_get_payment_method($pm)")
ok "$([ -n "$ntid" ] && echo 0 || echo 1)" "with the network transaction id of its validation"

# A subscription of the stored method, and its 'first' invoice issued and
# charged through the contract's _issue_invoice (billing.sql), the way
# pay_create_subscription does.
sid=$(su -c "INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit,
		interval_count, payment_method_id, billing_anchor, current_period_start, current_period_end, correlation_id)
	VALUES ($M, $cid, 'incomplete', '21.00 USD', 'month', 1, $pm, now() AT TIME ZONE 'UTC', now(), now() + interval '1 month', 'cof-test')
	RETURNING subscription_id")
inv1=$(su -c "SELECT invoice_id FROM payments._issue_invoice($M, $sid, 'first', 0, now(), now() + interval '1 month')")
pid1=$(su -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $inv1")
is "$(q -c "SELECT status FROM pay_wait($pid1, '10 s')")" succeeded "the first invoice's charge succeeds"
req=$(request_of "$pid1")
like "$req" '"recurringBilling","settingValue":"true"' "the first charge is sent with recurringBilling=true"
like "$req" '"processingOptions":\{"isFirstRecurringPayment":"true"\}' "and processingOptions.isFirstRecurringPayment alone"
unlike "$req" 'subsequentAuthInformation' "naming no original transaction"
txn1=$(q -c "SELECT invoice_number FROM payments.payments WHERE payment_id = $pid1")
is "$(ledger_of "$txn1" 'str(e["recurringBilling"]) + "|" + json.dumps(e.get("processingOptions"), sort_keys=True)')" \
	'True|{"isFirstRecurringPayment": "true"}' "the gateway recorded one recurring first charge"

# The charge's outcome marks the invoice paid (billing.sql's trigger, once
# it exists; until then the test does it, the way the trigger will).
su -c "UPDATE payments.invoices SET status = 'paid', paid_at = now(), closed_at = now() WHERE merchant_id = $M AND invoice_id = $inv1 AND status = 'open'" >/dev/null

# A renewal: a later charge of the series.
inv2=$(su -c "SELECT invoice_id FROM payments._issue_invoice($M, $sid, 'renewal', 1, now() + interval '1 month', now() + interval '2 months')")
pid2=$(su -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $inv2")
is "$(q -c "SELECT status FROM pay_wait($pid2, '10 s')")" succeeded "the renewal's charge succeeds"
req=$(request_of "$pid2")
like "$req" '"recurringBilling","settingValue":"true"' "the renewal is sent with recurringBilling=true"
like "$req" '"processingOptions":\{"isSubsequentAuth":"true"\},"subsequentAuthInformation":\{"originalNetworkTransId":"'"$ntid"'"\}' \
	"as a merchant-initiated charge (isSubsequentAuth) naming the original network transaction"
unlike "$req" 'isFirstRecurringPayment' "not as the first of the series"
txn2=$(q -c "SELECT invoice_number FROM payments.payments WHERE payment_id = $pid2")
is "$(ledger_of "$txn2" 'str(e["recurringBilling"]) + "|" + e["subsequentAuthInformation"]["originalNetworkTransId"]')" \
	"True|$ntid" "the gateway recorded one recurring subsequent charge"

# A retry of the renewal (dunning) stays a subsequent charge: paid invoices
# before it, not its own attempts, decide.
su -c "UPDATE payments.invoices SET status = 'paid', paid_at = now(), closed_at = now() WHERE merchant_id = $M AND invoice_id = $inv2 AND status = 'open'" >/dev/null

# An ordinary charge of the same stored method is not recurring.
pid3=$(q -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', payment_method_id => $pm)")
is "$(q -c "SELECT status FROM pay_wait($pid3, '10 s')")" succeeded "an ordinary charge of the stored method succeeds"
req=$(request_of "$pid3")
unlike "$req" 'recurringBilling' "it is not sent as recurring"
like "$req" '"processingOptions":\{"isSubsequentAuth":"true"\}' "but still merchant-initiated with the card on file"

# A subscription whose trial ended: its first charge is the period-0
# renewal, and it is the first of the series.
sid2=$(su -c "INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit,
		interval_count, payment_method_id, billing_anchor, current_period_index, current_period_start, current_period_end, trial_end, correlation_id)
	VALUES ($M, $cid, 'trialing', '22.00 USD', 'month', 1, $pm, now() AT TIME ZONE 'UTC', -1, now() - interval '14 days', now(), now(), 'cof-trial')
	RETURNING subscription_id")
inv3=$(su -c "SELECT invoice_id FROM payments._issue_invoice($M, $sid2, 'renewal', 0, now(), now() + interval '1 month')")
pid4=$(su -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $inv3")
is "$(q -c "SELECT status FROM pay_wait($pid4, '10 s')")" succeeded "the first renewal after a trial is charged"
like "$(request_of "$pid4")" '"processingOptions":\{"isFirstRecurringPayment":"true"\}' "as the first recurring payment of its subscription"

tap_done
