#!/usr/bin/env bash
# A customer deleted or erased while another session makes something for
# it.  A review raced two sessions and found, on the code before: a deleted
# customer keeping an active card on file and a running subscription with a
# charge sent, an erased customer's billing details left on a payment, and
# a raw unique violation when a default was set while another was saved.
# Now payments and subscriptions lock the customer FOR KEY SHARE, deletion and
# erasure run at READ COMMITTED only, and setting a default locks the
# customer first, as saving one does.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-concurrent-customers"
source "$(dirname "$0")/../lib/sessions.sh"
sessions_init concurrent-customers
cleanup() {
	sessions_kill
	unhold_claims
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator concurrent_customers

# a different card each save: the gateway refuses the same card twice in one
# customer profile (E00039), and two methods never share one payment profile
card_n=0
next_card() {
	card_n=$((card_n + 1))
	card=$(python3 -c '
import sys
base = "4%014d" % (1000000 + int(sys.argv[1]))
d = [int(c) for c in base]
t = sum(x if i % 2 else (2 * x - 9 if 2 * x > 9 else 2 * x) for i, x in enumerate(d))
print("pay_card(\x27%s%d\x27, 12, extract(year from now())::int + 3, \x27123\x27)" % (base, (10 - t % 10) % 10))' "$card_n$RANDOM")
}
next_card
# customer NAME: a customer with an active default card on file
customer() {
	local c pm
	c=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', name => '$1',
		billing => '{\"first_name\": \"$1\", \"zip\": \"46201\"}')")
	next_card
	pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c, card => $card)")
	[ "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm, '30 s')")" = active ] || echo "customer $c: no active method" >&2
	echo "$c"
}
# first_then SECOND_SQL FIRST_SQL: session a runs FIRST_SQL in an open
# transaction; b runs SECOND_SQL, which must wait for a's lock; a commits,
# then b finishes.  Sets wait_ok (1 when b waited).
first_then() {
	session a
	session b
	say a "BEGIN; $2"
	say a '\echo A-DONE'
	poll_value 20 done_with a A-DONE >/dev/null
	say b "$1"
	say b '\echo B-DONE'
	wait_ok=$(poll_value 20 waits_for_lock b)
	say a 'COMMIT;'
	poll_value 20 done_with b B-DONE >/dev/null
	close a
	close b
}

# hold_claims: a test trigger stops a pay_create_subscription whose
# idempotency key starts with race- right after the key is claimed, until
# session h lets go of advisory lock 4242 (unhold_claims drops it), so that
# another session's call comes in between the claim and what follows.
hold_claims() {
	cluster_psql "$WORK" "$PORT" payments -q -c "CREATE FUNCTION public.test_hold_claim() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM pg_advisory_xact_lock(4242);
	RETURN NULL;
END \$\$" \
		-c "CREATE TRIGGER zz_test_hold_claim AFTER INSERT ON payments.idempotency_keys
			FOR EACH ROW WHEN (NEW.request_kind = 'create_subscription' AND NEW.idempotency_key LIKE 'race-%')
			EXECUTE FUNCTION public.test_hold_claim()"
}
unhold_claims() {
	cluster_psql "$WORK" "$PORT" payments -q -c "DROP TRIGGER IF EXISTS zz_test_hold_claim ON payments.idempotency_keys" \
		-c "DROP FUNCTION IF EXISTS public.test_hold_claim()" >/dev/null 2>&1 || true
}
# held_then SECOND_SQL FIRST_SQL: session a runs FIRST_SQL (a subscription
# with a race- key), held right after its claim; b runs SECOND_SQL, which
# must wait for a lock; then a goes on and both finish (a commits).  Sets
# wait_ok (1 when b waited); the outputs are in $SESS/a.out and b.out.
held_then() {
	session h
	session a
	session b
	say h "SELECT pg_advisory_lock(4242);"
	say h '\echo H-HOLDS'
	poll_value 20 done_with h H-HOLDS >/dev/null
	say a "$2"
	say a '\echo A-DONE'
	poll_value 20 waits_for_lock a >/dev/null
	say b "$1"
	say b '\echo B-DONE'
	wait_ok=$(poll_value 20 waits_for_lock b)
	say h "SELECT pg_advisory_unlock(4242);"
	poll_value 30 done_with a A-DONE >/dev/null
	poll_value 30 done_with b B-DONE >/dev/null
	close h
	close a
	close b
}

# 1. A subscription made while the customer is deleted: the deletion waits,
#    then ends it (before: it kept running, and its charges were sent).  A
#    trial: a first charge in flight would make the deletion refuse, to be
#    called again once it is answered.
c1=$(customer sub)
first_then "SELECT status FROM pay_delete_customer($c1);" \
	"SELECT 'subscribed ' || status FROM pay_create_subscription(customer_id => $c1, price => '25.00 USD', interval_unit => 'month', trial_days => 14);"
is "$wait_ok" 1 "the deletion waits for the transaction that subscribes the customer"
like "$(cat "$SESS/b.out")" '^deleted$' "then deletes the customer"
is "$(as_merchant -c "SELECT string_agg(status, ',') FROM payments.subscriptions WHERE customer_id = $c1")" canceled \
	"and ends the subscription made meanwhile"

# 2. The other way round: the subscription waits for the deletion and is
#    refused.
c2=$(customer sub2)
first_then "SELECT 'subscribed ' || status FROM pay_create_subscription(customer_id => $c2, price => '25.00 USD', interval_unit => 'month');" \
	"SELECT status FROM pay_delete_customer($c2);"
is "$wait_ok" 1 "a subscription waits for the transaction that deletes the customer"
like "$(tr '\n' ' ' <"$SESS/b.out")" "ERROR:  22Y20: customer $c2 is deleted" "then is refused: the customer is deleted (22Y20)"
is "$(as_merchant -c "SELECT count(*) FROM payments.subscriptions WHERE customer_id = $c2")" 0 "no subscription was made"

# 3. A payment made while the customer is erased: the erasure waits, then
#    erases the billing details the payment took (before: they stayed).
c3=$(customer erase)
first_then "SELECT status FROM pay_erase_customer($c3);" \
	"SELECT 'paid ' || status FROM pay_purchase(amount => '5.00 USD', customer_id => $c3);"
is "$wait_ok" 1 "the erasure waits for the transaction that charges the customer"
is "$(as_merchant -c "SELECT count(*) FROM payments.payments WHERE customer_id = $c3 AND customer <> '{}'")" 0 \
	"then erases the billing details of the payment made meanwhile"
is "$(as_merchant -c "SELECT erased_at IS NOT NULL FROM payments.customers WHERE customer_id = $c3")" t "and the customer"

# 3b. The same with the stored method alone named (its customer is locked
#     all the same).
c3b=$(customer erase_by_method)
pm3b=$(as_merchant -c "SELECT payment_method_id FROM pay_list_payment_methods($c3b) LIMIT 1")
first_then "SELECT status FROM pay_erase_customer($c3b);" \
	"SELECT 'paid ' || status FROM pay_purchase(amount => '5.00 USD', payment_method_id => $pm3b);"
is "$wait_ok" 1 "the erasure waits for the transaction that charges the customer's method"
is "$(as_merchant -c "SELECT count(*) || '|' || count(*) FILTER (WHERE customer <> '{}') FROM payments.payments WHERE customer_id = $c3b")" "1|0" \
	"then erases the billing details of that payment too"

# 4. Deletion and erasure outside READ COMMITTED are refused: their
#    snapshot could predate a method, subscription or payment made meanwhile
#    (before: a deleted customer kept an active card at the gateway).
c4=$(customer levels)
for call in "pay_delete_customer($c4)|REPEATABLE READ|deleted" "pay_erase_customer($c4)|SERIALIZABLE|erased"; do
	IFS='|' read -r f level word <<<"$call"
	out=$(as_merchant -v VERBOSITY=verbose -c "BEGIN ISOLATION LEVEL $level" -c "SELECT * FROM $f" 2>&1 || true)
	like "$out" "ERROR:  25000: a customer cannot be $word in a $level transaction" "${f%%(*} at $level is refused (25000)"
done
is "$(as_merchant -c "SELECT status FROM payments.customers WHERE customer_id = $c4")" active "the customer is untouched"

# 5. A default set while another session saves a new default: it waits,
#    then is the default (before: a unique violation on an internal index).
pm_old=$(as_merchant -c "SELECT payment_method_id FROM pay_list_payment_methods($c4) LIMIT 1")
next_card
first_then "SELECT 'default ' || is_default FROM pay_set_default_payment_method($pm_old);" \
	"SELECT 'saved ' || is_default FROM pay_save_payment_method(customer_id => $c4, card => $card, make_default => true);"
is "$wait_ok" 1 "setting a default waits for the transaction that saves a new default"
like "$(cat "$SESS/b.out")" '^default true$' "then makes its method the default, without an error"
is "$(as_merchant -c "SELECT string_agg(payment_method_id::text, ',') FROM payments.payment_methods WHERE customer_id = $c4 AND is_default")" \
	"$pm_old" "one default: the method set last"

# 6. At REPEATABLE READ or SERIALIZABLE the snapshot can predate a default
#    that another session committed after it, and the UPDATE that clears
#    the old default does not see it.  Setting or saving a default then
#    fails with 40001, to be retried (before: 23505 on an internal index,
#    as if the caller had made a duplicate, when the other session had set
#    a default), and nothing of it stays.
# rr_race LEVEL SQL_OF_A SQL_OF_B [END]: b takes its snapshot at LEVEL, a
# commits SQL_OF_A, then b runs SQL_OF_B and rolls back (or END: COMMIT);
# b's output is in $SESS/b.out
rr_race() {
	session b
	say b "BEGIN ISOLATION LEVEL $1; SELECT 'snapshot taken';"
	say b '\echo B-SNAP'
	# (the snapshot must come first: 30 s at most, or the test stops)
	[ "$(poll_value 30 done_with b B-SNAP)" = 1 ] || die "session b never took its snapshot"
	as_merchant -c "$2" >/dev/null
	say b "$3"
	say b "${4:-ROLLBACK};"
	say b '\echo B-DONE'
	poll_value 20 done_with b B-DONE >/dev/null
	close b
}
# a customer with one method that is not the default: echoes "customer method"
no_default() {
	local c
	c=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com')")
	next_card
	echo "$c $(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c, card => $card, make_default => false)")"
}
for level in "REPEATABLE READ" SERIALIZABLE; do
	tag=${level// /}
	read -r c6 pm6 < <(no_default "save-then-set-$tag")
	next_card
	rr_race "$level" "SELECT 1 FROM pay_save_payment_method(customer_id => $c6, card => $card, make_default => true)" \
		"SELECT pay_set_default_payment_method($pm6);"
	like "$(tr '\n' ' ' <"$SESS/b.out")" "ERROR:  40001: " "$level: a default set after another was saved since the snapshot fails with 40001"
	read -r c7 pm7 < <(no_default "set-then-save-$tag")
	next_card
	rr_race "$level" "SELECT 1 FROM pay_set_default_payment_method($pm7)" \
		"SELECT 1 FROM pay_save_payment_method(customer_id => $c7, card => $card, make_default => true);"
	like "$(tr '\n' ' ' <"$SESS/b.out")" "ERROR:  40001: could not make a payment method the default of customer $c7: another session changed the customer's default after this transaction began DETAIL:  This $level transaction's snapshot does not show the default that session made. HINT:  Retry the transaction." \
		"$level: a default saved after another was set since the snapshot fails with 40001"
	read -r c8 pm8 < <(no_default "set-then-set-$tag")
	next_card
	pm8b=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c8, card => $card, make_default => false)")
	rr_race "$level" "SELECT 1 FROM pay_set_default_payment_method($pm8)" \
		"SELECT 1 FROM pay_set_default_payment_method($pm8b);"
	like "$(tr '\n' ' ' <"$SESS/b.out")" "ERROR:  40001: could not make a payment method the default of customer $c8: another session" \
		"$level: a default set after another was set since the snapshot fails with 40001"
	is "$(as_merchant -c "SELECT count(*) FILTER (WHERE customer_id = $c6) || ' ' || count(*) FILTER (WHERE customer_id = $c7)
		|| ' ' || string_agg(payment_method_id::text, ',' ORDER BY payment_method_id) FILTER (WHERE is_default AND customer_id IN ($c7, $c8))
		|| ' ' || bool_or(is_default AND payment_method_id <> $pm6) FILTER (WHERE customer_id = $c6)
		FROM payments.payment_methods WHERE customer_id IN ($c6, $c7, $c8)")" "2 1 $pm7,$pm8 true" \
		"$level: nothing of the failed calls stays; the other session's defaults stand"
done

# 7. A subscription made with an idempotency key while the customer is
#    deleted with the same key: one of them is refused with PT409 (before:
#    the subscription claimed the key, then locked the customer, the
#    deletion the other way round, and the two deadlocked).
hold_claims
c9=$(customer same-key)
held_then "SELECT status FROM pay_delete_customer($c9, idempotency_key => 'race-1');" \
	"SELECT 'subscribed ' || status FROM pay_create_subscription(customer_id => $c9, price => '25.00 USD', interval_unit => 'month', trial_days => 14, idempotency_key => 'race-1');"
is "$wait_ok" 1 "a deletion with the key of a subscription being made waits for it"
unlike "$(cat "$SESS/a.out" "$SESS/b.out")" 'deadlock|40P01' "no deadlock"
like "$(cat "$SESS/a.out")" '^subscribed trialing$' "the subscription is made"
like "$(tr '\n' ' ' <"$SESS/b.out")" 'ERROR:  PT409: idempotency key was already used with different parameters' \
	"the deletion with the same key is refused (PT409)"
is "$(as_merchant -c "SELECT c.status || '|' || (SELECT string_agg(s.status, ',') FROM payments.subscriptions s WHERE s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id) FROM payments.customers c WHERE c.customer_id = $c9")" \
	"active|trialing" "the customer keeps its one subscription"

# 8. Two sessions make a subscription with the same key at once: the second
#    waits for the first, then returns the subscription it made, or PT409
#    for other arguments; never a second subscription.
c10=$(customer same-key-2)
sub="pay_create_subscription(customer_id => $c10, price => '25.00 USD', interval_unit => 'month', trial_days => 14, idempotency_key => 'race-2')"
held_then "SELECT 'again ' || subscription_id FROM $sub;" "SELECT 'first ' || subscription_id FROM $sub;"
is "$wait_ok" 1 "a second call with the key of a subscription being made waits for it"
sid10=$(as_merchant -c "SELECT string_agg(subscription_id::text, ',') FROM payments.subscriptions WHERE customer_id = $c10")
is "$(sed '/-DONE$/d' "$SESS/a.out")|$(sed '/-DONE$/d' "$SESS/b.out")" "first $sid10|again $sid10" "then returns the subscription the first made; one subscription"
held_then "SELECT 'other ' || subscription_id FROM pay_create_subscription(customer_id => $c10, price => '26.00 USD', interval_unit => 'month', trial_days => 14, idempotency_key => 'race-3');" \
	"SELECT 'first ' || subscription_id FROM pay_create_subscription(customer_id => $c10, price => '25.00 USD', interval_unit => 'month', trial_days => 14, idempotency_key => 'race-3');"
like "$(tr '\n' ' ' <"$SESS/b.out")" 'ERROR:  PT409: idempotency key was already used with different parameters' \
	"the same key with other arguments: PT409 once the first committed"
is "$(as_merchant -c "SELECT count(*) FROM payments.subscriptions WHERE customer_id = $c10")" 2 "one subscription per key"
unhold_claims

# 9. A guest purchase repeated under its idempotency key (made of the
#    email, as applications do) in a REPEATABLE READ or SERIALIZABLE
#    transaction whose snapshot predates the erasure of the customer it
#    became.  Erasure keeps the key as a digest, which that snapshot does
#    not see, and the key as given, renamed, no longer stops the claim's
#    INSERT: the repeat must still never make a second payment.  It fails
#    with 40001 (the claim updates the key row the erasure renamed), and
#    retried, it returns the original payment.
for level in "REPEATABLE READ" SERIALIZABLE; do
	tag=${level// /}
	c11=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'guest-$tag@example.com')")
	next_card
	buy="pay_purchase(amount => '6.00 USD', card => $card, customer => '{\"email\": \"guest-$tag@example.com\"}', idempotency_key => 'order-guest-$tag@example.com')"
	p11=$(as_merchant -c "SELECT payment_id FROM $buy")
	rr_race "$level" "SELECT status FROM pay_erase_customer($c11)" "SELECT 'again ' || payment_id FROM $buy;" COMMIT
	like "$(grep -e '^again ' -e 'ERROR' "$SESS/b.out" | tr '\n' ' ')" "^(again $p11|ERROR:  40001: could not serialize access due to concurrent update) $" \
		"$level: a repeat under the key of a guest purchase, its snapshot older than the erasure, returns the original payment or fails with 40001"
	is "$(as_merchant -c "SELECT payment_id FROM $buy")|$(as_merchant -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id > $p11")" "$p11|0" \
		"$level: retried, it returns the original payment; no second payment was made"
	is "$(as_merchant -c "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key IN ('order-guest-$tag@example.com', payments._erased_key($M, 'order-guest-$tag@example.com'))")" 1 \
		"$level: the key is kept once, as a digest"
done
tap_done
