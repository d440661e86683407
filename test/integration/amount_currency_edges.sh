#!/usr/bin/env bash
# Amounts in more than one currency, where a merchant meets them:
# 1. a comparison of one currency's amounts in a column that holds two
#    (pay_currency(a) = 'USD' AND a < '5.00 USD') runs before and after
#    ANALYZE: the estimators of < <= > >= used to call < on the column's
#    most common values of every currency and failed the planning (22Y03),
#    and < ran before the cheaper currency test in the scan's filter;
# 2. a refund or capture in another currency than the payment's is refused
#    with its own message, not the comparison's advice to convert;
# 3. an amount larger than the gateway takes is refused with a message
#    that does not quote it (the log hook masked its digits as a card's);
# 4. a subscription change whose next invoice (the new price plus the
#    proration waiting for it) the gateway could not take is refused at the
#    call, not by the worker at the renewal, leaving the subscription
#    past_due for a charge no card could pay.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-amount-edges"
trap sim_stop EXIT
sim_start "$SIMDIR"
merchant_on_simulator amount_edges
su() { cluster_psql "$WORK" "$PORT" payments -At "$@" 2>&1 || true; }
q() { as_merchant "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"

# 1. per-currency comparisons in a mixed column
su -c "CREATE TABLE public.mixed_orders (id int, total payments.pay_amount)" \
	-c "INSERT INTO public.mixed_orders SELECT i, payments.pay_amount_from_minor(100 * (i % 10), CASE WHEN i % 2 = 0 THEN 'USD' ELSE 'EUR' END) FROM generate_series(1, 1000) i" >/dev/null
want=$(su -c "SELECT count(*) FROM public.mixed_orders WHERE payments.pay_currency(total) = 'USD' AND payments.pay_minor_units(total) < 500")
cmp_usd="SELECT count(*) FROM public.mixed_orders WHERE payments.pay_currency(total) = 'USD' AND total OPERATOR(payments.<) '5.00 USD'"
is "$(su -c "$cmp_usd")" "$want" "before ANALYZE: the USD orders under 5.00 USD are counted (the currency test runs first)"
su -c "ANALYZE public.mixed_orders" >/dev/null
is "$(su -c "$cmp_usd")" "$want" "after ANALYZE: the same query plans and runs"
is "$(su -c "SET search_path = public, payments" -c "SELECT count(*) FROM mixed_orders WHERE pay_currency(total) = 'USD' AND total BETWEEN '1.00 USD' AND '4.00 USD'")" \
	"$(su -c "SELECT count(*) FROM public.mixed_orders WHERE payments.pay_currency(total) = 'USD' AND payments.pay_minor_units(total) BETWEEN 100 AND 400")" \
	"after ANALYZE: BETWEEN within one currency runs"
plan=$(su -c "SET search_path = public, payments" -c "EXPLAIN SELECT * FROM mixed_orders WHERE pay_currency(total) = 'EUR' AND total >= '2.00 EUR'")
like "$plan" 'rows=[0-9]+' "after ANALYZE: EXPLAIN of a per-currency filter plans, with an estimate"
like "$(su -v VERBOSITY=verbose -c "SET search_path = public, payments" -c "SELECT count(*) FROM mixed_orders WHERE total < '5.00 USD'")" '22Y03' \
	"a comparison across currencies, with no currency test, is still refused (22Y03)"
su -c "DROP TABLE public.mixed_orders" >/dev/null

for i in $(seq 1 12); do
	c=USD; [ $((i % 2)) = 0 ] && c=EUR
	q -c "SELECT payment_id FROM pay_purchase(amount => '$((i % 3 + 1))0.00 $c', card => $card)" >/dev/null
done
su -c "ANALYZE payments.payments" >/dev/null
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND pay_currency(amount) = 'USD' AND amount >= '20.00 USD'" 2>&1 || true)" \
	"$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND pay_currency(amount) = 'USD' AND pay_minor_units(amount) >= 2000")" \
	"payments.payments after ANALYZE: the USD payments of at least 20.00 USD"

# 2. a refund or capture in another currency
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
err=$(q -v VERBOSITY=verbose -c "SELECT pay_refund($pid, '5.00 EUR')" 2>&1 || true)
like "$err" '22Y03' "a refund in EUR of a USD payment is refused (22Y03)"
like "$err" "payment's currency USD" "the refund's message names the payment's currency"
unlike "$err" 'Convert one amount' "the refund's hint does not advise converting it"
auth=$(q -c "SELECT payment_id FROM pay_authorize(amount => '10.00 USD', card => $card)")
q -c "SELECT status FROM pay_wait($auth, '10 s')" >/dev/null
err=$(q -v VERBOSITY=verbose -c "SELECT pay_capture($auth, '5.00 EUR')" 2>&1 || true)
like "$err" "22Y03.*payment's currency USD" "a capture in EUR of a USD authorization is refused with its own message"
unlike "$err" 'Convert one amount' "the capture's hint does not advise converting it"
is "$(q -c "SELECT status FROM pay_get_payment($auth)")" requires_capture "the authorization is still there to capture"

# 3. too large for the gateway
err=$(q -v VERBOSITY=verbose -c "SELECT payment_id FROM pay_purchase(amount => '10000000000000.00 USD', card => $card)" 2>&1 || true)
like "$err" '22Y26' "16 digits are refused at the call (22Y26)"
unlike "$err" 'XXXX' "the message quotes no amount the log hook masks as a card number"

# 4. a subscription change the next invoice cannot carry
q -c "SELECT pay_set_test_clock('2031-04-01 00:00+00')" >/dev/null
cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'a@example.com', name => 'Ada Lovelace')")
pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $card, validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')" >/dev/null
sub=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $cid, price => '1.00 USD', interval_unit => 'month')")
for i in $(seq 240); do [ "$(q -c "SELECT status FROM pay_get_subscription($sub)")" = active ] && break; sleep 0.25; done
is "$(q -c "SELECT status FROM pay_get_subscription($sub)")" active "the subscription is active"
# the largest price the gateway takes, at the start of the period: the next
# invoice would hold that price twice (the rest of this period, prorated
# there, and the next period)
err=$(q -v VERBOSITY=verbose -c "SELECT status FROM pay_change_subscription($sub, price => '9999999999999.99 USD')" 2>&1 || true)
like "$err" '22Y26' "a change whose next invoice the gateway cannot take is refused at the call (22Y26)"
is "$(q -c "SELECT count(*) FROM payments.invoice_items WHERE merchant_id = $M AND subscription_id = $sub AND invoice_id IS NULL")" 0 \
	"the refused change leaves no proration waiting"
ok=$(q -v VERBOSITY=verbose -c "SELECT status FROM pay_change_subscription($sub, price => '4999999999999.99 USD')" 2>&1 || true)
is "$ok" active "half that price fits the next invoice and is taken"
tap_done
