#!/usr/bin/env bash
# A caller learns nothing of a card number it passes.  In 0.1.0 a payment,
# a saved method and an idempotency key's hash took the card's fingerprint
# at the call: a role acting for a merchant passed candidate numbers to
# pay_authorize in a transaction it rolled back, compared each fingerprint
# returned with a stored payment's, and had that payment's full card number
# from its first six and last four in minutes, leaving no trace.  Now a
# card's fingerprint is recorded by the worker with the gateway's answer
# about the card (every try is a transaction at the gateway), and the
# idempotency hash holds only what the caller may know of the card.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"

SIMDIR="$WORK/sim-fingerprint"
sim_start "$SIMDIR"

su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
M=$(su -c "INSERT INTO payments.merchants (name) VALUES ('fingerprint') RETURNING merchant_id")
gateway_at() {	# gateway_at URL: the merchant's endpoint (http: a test server)
	su -c "SET payments.allow_insecure_endpoint = on" \
		-c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$1', timeout_ms => 3000, merchant_id => $M)" >/dev/null
}
gateway_at "$SIM_API"
su -c "DROP ROLE IF EXISTS fp_app" -c "CREATE ROLE fp_app LOGIN" \
	-c "SELECT payments.pay_bind_role('fp_app', merchant_id => $M)" \
	-c "GRANT SELECT ON payments.payments, payments.payment_methods TO fp_app" >/dev/null

# the test's lookup: an unknown purchase waits to be moved past the window
park_after_send "$M" "'unknown'"
cleanup() {
	sessions_kill
	[ -z "${keyfile:-}" ] || [ ! -e "$keyfile.away" ] || as_root mv "$keyfile.away" "$keyfile"
	unpark || true
	su -c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 day'
			WHERE merchant_id = $M AND status IN ('unknown', 'queued')" \
		-c "SELECT payments.pay_forget_role('fp_app')" \
		-c "REVOKE ALL ON payments.payments, payments.payment_methods FROM fp_app" \
		-c "DROP ROLE IF EXISTS fp_app" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT

# as [PSQL ARGS]: a session logged in as fp_app, A's application
as() {
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U fp_app -d payments -c "SET search_path = public, payments" "$@"
}
sqlstate() { as "$@" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p; }
YEAR=$(su -c "SELECT extract(year from now())::int + 3")
card() { echo "payments.pay_card('$1', 12, $YEAR, '123')"; }	# card NUMBER
# fp NUMBER: the card's fingerprint, as only the owner may compute it
fp() { su -c "SELECT payments.pay_card_fingerprint($(card "$1"))"; }
# wait_sql SQL: poll (as the owner) until SQL is true, 30 s at most
wait_sql() {
	local i
	for i in $(seq 600); do
		[ "$(su -c "SELECT $1")" = t ] && return 0
		sleep 0.05
	done
	return 1
}
VISA=4111111111111111
# another Visa number with the same last four (Luhn-valid): what a caller
# tries when it knows the brand, first six and last four of a card
OTHER=$(python3 -c '
d = "41111100000" + "0" + "1111"
for x in range(10):
    n = d[:11] + str(x) + d[12:]
    s = sum(int(c) if i % 2 == 0 else (2 * int(c) - 9 if int(c) > 4 else 2 * int(c))
            for i, c in enumerate(reversed(n)))
    if s % 10 == 0:
        print(n)
        break')
ok "$([ ${#OTHER} = 16 ] && [ "$(fp "$OTHER")" != "$(fp $VISA)" ] && echo 0 || echo 1)" \
	"the test's second Visa number ($OTHER) ends in 1111 and has another fingerprint"

# 1. At the call: no fingerprint, in what the call returns or in the row
#    it wrote, even before ROLLBACK (nothing reached the gateway).
for call in "pay_authorize(amount => '5.00 USD', card => $(card $VISA))" \
	"pay_purchase(amount => '5.00 USD', card => $(card $VISA))"; do
	is "$(as -c "BEGIN" -c "CREATE TEMP TABLE r AS SELECT * FROM $call" \
		-c "SELECT r.card_fingerprint IS NULL, x.card_fingerprint IS NULL, x.card_last4
			FROM r JOIN payments.payments x USING (payment_id)" -c "ROLLBACK")" \
		"t|t|1111" "${call%%(*}: neither the result nor the payment row holds the card's fingerprint before the gateway answers"
done
cust=$(as -c "SELECT customer_id FROM pay_create_customer(email => 'fp@example.com')")
is "$(as -c "BEGIN" -c "CREATE TEMP TABLE r AS SELECT * FROM pay_save_payment_method(customer_id => $cust, card => $(card $VISA))" \
	-c "SELECT r.card_fingerprint IS NULL, x.card_fingerprint IS NULL
		FROM r JOIN payments.payment_methods x USING (payment_method_id)" -c "ROLLBACK")" \
	"t|t" "pay_save_payment_method: no fingerprint at the call either"

# 2. With the gateway's answer: approved and declined cards alike
p1=$(as -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', card => $(card $VISA), idempotency_key => 'fp-key-1')")
is "$(as -c "SELECT status FROM pay_wait($p1, '20 s')")" succeeded "a purchase is approved"
is "$(as -c "SELECT card_fingerprint FROM payments.payments WHERE payment_id = $p1")" "$(fp $VISA)" \
	"its fingerprint is recorded with the approval"
p2=$(as -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', card => $(card 4000000000000002))")
is "$(as -c "SELECT status || '|' || decline_code FROM pay_wait($p2, '20 s')")" "failed|2" "a card the gateway declines"
is "$(as -c "SELECT card_fingerprint FROM payments.payments WHERE payment_id = $p2")" "$(fp 4000000000000002)" \
	"a declined card's fingerprint is recorded too (the gateway saw the card)"

# 3. A card that has not reached the gateway has none: the endpoint
#    refuses connections, so the attempt provably never left and waits.
gateway_at "http://127.0.0.1:$(free_port)/xml/v1/request.api"
p3=$(as -c "SELECT payment_id FROM pay_purchase(amount => '8.00 USD', card => $(card $VISA))")
ok "$(passed wait_sql "EXISTS (SELECT 1 FROM payments.operations WHERE merchant_id = $M AND payment_id = $p3
	AND status = 'queued' AND last_error IS NOT NULL)")" "a purchase whose attempt could not connect is queued again"
is "$(as -c "SELECT card_fingerprint IS NULL FROM payments.payments WHERE payment_id = $p3")" t \
	"it has no fingerprint: the gateway has not seen the card"
gateway_at "$SIM_API"
su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_id = $p3 AND status = 'queued';
	SELECT payments._wake_at_commit()" >/dev/null
is "$(as -c "SELECT status FROM pay_wait($p3, '20 s')")" succeeded "once the gateway is back, it is approved"
is "$(as -c "SELECT card_fingerprint FROM payments.payments WHERE payment_id = $p3")" "$(fp $VISA)" \
	"and its fingerprint is recorded then"

# 4. An answer found by a lookup (the reply was lost, then eight hours
#    passed): the card still waits in the vault, and gives the fingerprint.
sim_ctl POST /faults '{"type":"reset","count":6,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
p4=$(as -c "SELECT payment_id FROM pay_purchase(amount => '9.00 USD', card => $(card $VISA))")
ok "$(passed wait_sql "EXISTS (SELECT 1 FROM payments.operations WHERE merchant_id = $M AND payment_id = $p4
	AND status = 'unknown')")" "a purchase charged at the gateway whose reply was lost is unknown"
sim_ctl DELETE /faults >/dev/null
is "$(su -c "SELECT card_fingerprint IS NULL FROM payments.payments WHERE payment_id = $p4")" t "with no fingerprint yet"
su -c "UPDATE payments.operations SET first_sent_at = now() - interval '9 hours', next_attempt_at = now()
	WHERE merchant_id = $M AND payment_id = $p4 AND status = 'unknown'; SELECT payments._wake_at_commit()" >/dev/null
is "$(as -c "SELECT status FROM pay_wait($p4, '30 s')")" succeeded "past the duplicate window it is looked up and found charged"
is "$(su -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges
	WHERE operation_id = (SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $p4)" | tr ',' '\n' | sort -u | tr '\n' ' ')" \
	"createTransactionRequest getSettledBatchListRequest getTransactionDetailsRequest getUnsettledTransactionListRequest " "by a lookup, not a resend"
is "$(as -c "SELECT card_fingerprint FROM payments.payments WHERE payment_id = $p4")" "$(fp $VISA)" \
	"the lookup's answer records the fingerprint"

# 5. The idempotency key of a recorded purchase, reused with a tried
#    number: the answer cannot depend on digits the caller does not know.
for n in $VISA "$OTHER"; do
	is "$(as -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', card => $(card "$n"), idempotency_key => 'fp-key-1')")" "$p1" \
		"the key reused with card ${n:0:6}...${n:12}: the first payment, whichever digits are in the middle"
done
is "$(sqlstate -c "SELECT * FROM pay_purchase(amount => '6.00 USD', card => $(card 4012888888881881), idempotency_key => 'fp-key-1')")" \
	PT409 "the key reused with another last four is a different request (PT409)"

# 6. A saved card: its fingerprint comes with the gateway's profile; a
#    payment charging the method carries it from the start.
pm=$(as -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cust, card => $(card $VISA))")
is "$(as -c "SELECT status FROM pay_wait_payment_method($pm, '20 s')")" active "a card is saved at the gateway"
is "$(as -c "SELECT card_fingerprint FROM payments.payment_methods WHERE payment_method_id = $pm")" "$(fp $VISA)" \
	"the saved method's fingerprint is recorded with the gateway's profile"
is "$(as -c "SELECT card_fingerprint FROM pay_purchase(amount => '2.00 USD', payment_method_id => $pm)")" "$(fp $VISA)" \
	"a purchase with the saved method has its fingerprint at once (no card was passed)"

# 7. Nothing of the number in what a role may read or compare: the vault
#    row (a role granted SELECT on every table sees its merchant's rows)
#    and PostgreSQL's record-image operators (*<, PUBLIC), which compare a
#    value's bytes.  Both held the fingerprint, in the value's clear header,
#    and *< sorted cards by it: with a stored fingerprint, a binary search
#    over candidate numbers found a card in a handful of gateway tries.
su -c "GRANT SELECT ON payments.card_vault TO fp_app" >/dev/null
vault=$(as -c "BEGIN" -c "SELECT count(*) FROM pay_purchase(amount => '5.00 USD', card => $(card $VISA))" \
	-c "SELECT string_agg(encode(sealed, 'hex'), ',') FROM payments.card_vault" -c "ROLLBACK" | tail -1)
ok "$([ ${#vault} -gt 100 ] && echo 0 || echo 1)" "the role reads its vault row in its transaction"
ok "$(case "$vault" in *"$(fp $VISA)"*) echo 1 ;; *) echo 0 ;; esac)" "the vault row does not hold the card's fingerprint"
su -c "REVOKE SELECT ON payments.card_vault FROM fp_app" >/dev/null
nums=$(python3 -c '
def luhn_ok(n):
    s = sum(int(c) if i % 2 == 0 else (2 * int(c) - 9 if int(c) > 4 else 2 * int(c))
            for i, c in enumerate(reversed(n)))
    return s % 10 == 0
out, m = [], 0
while len(out) < 200:
    n = "411111%06d1111" % m
    m += 1
    if luhn_ok(n):
        out.append(n)
print(",".join(out))')
image_order=$(as -c "SELECT string_agg(n, ',' ORDER BY ROW(payments.pay_card(n, 12, $YEAR)) USING OPERATOR(pg_catalog.*<))
	FROM unnest(string_to_array('$nums', ',')) n")
fp_order=$(su -c "SELECT string_agg(n, ',' ORDER BY payments.pay_card_fingerprint(payments.pay_card(n, 12, $YEAR)))
	FROM unnest(string_to_array('$nums', ',')) n")
is "$(echo "$image_order" | tr ',' '\n' | sort | tr '\n' ',')" "$(echo "$nums" | tr ',' '\n' | sort | tr '\n' ',')" \
	"the role sorts 200 cards of one brand, last four and expiry with *<"
ok "$([ "$image_order" != "$fp_order" ] && echo 0 || echo 1)" "and the order says nothing of their fingerprints"

# 8. An answer recorded alone (its batch failed: a caller held the payment
#    row) records the fingerprint too (before: it was lost on that path).
sessions_init fingerprint-sessions
#    (The purchase is sent only once the caller holds the row: its
#    operation is made due then.  A caller that took the row up to 1.5 s
#    after the purchase, the gateway's latency, came too late on a busy
#    machine: with 2 s put in by hand before it, the answer was recorded
#    with the batch and the check below failed.)
sim_ctl POST /latency '{"fixedMs":1500,"randomMs":0}' >/dev/null
p8=$(su -v ON_ERROR_STOP=1 -c "BEGIN" -c "SET LOCAL payments.merchant_id = '$M'" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD', card => $(card $VISA))" \
	-c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 hour' WHERE merchant_id = $M
		AND payment_id = (SELECT max(payment_id) FROM payments.payments WHERE merchant_id = $M)" -c "COMMIT" | head -1)
session h
say h "BEGIN; SELECT 'held ' || payment_id FROM payments.payments WHERE payment_id = $p8 FOR UPDATE;"
say h '\echo HELD'
is "$(poll_value 30 done_with h HELD)" 1 "a caller holds the payment's row (its purchase not sent yet)"
su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_id = $p8 AND status = 'queued';
	SELECT payments._wake_at_commit()" >/dev/null
ok "$(passed wait_log 30 "could not record the outcome of operation [0-9]+ of merchant $M")" \
	"the worker could not record the answer while a caller held the payment"
say h 'COMMIT;'
close h
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
is "$(as -c "SELECT status FROM pay_wait($p8, '20 s')")" succeeded "recorded alone once the caller let go"
is "$(as -c "SELECT card_fingerprint FROM payments.payments WHERE payment_id = $p8")" "$(fp $VISA)" \
	"with the fingerprint"

# 9. Without its key file the worker still sends: the payment goes without
#    a fingerprint and the log says why; with the file back, fingerprints
#    come back.  (Payments never needed the key: a card is not fingerprinted
#    at the call.)
keydir=$(su -c "SELECT coalesce(nullif(current_setting('payments.fingerprint_key_directory'), ''),
	current_setting('data_directory') || '.payments_keys')")
# (this database's key: the cluster's other databases have keys of their own)
keyfile="$keydir/$(su -c "SELECT encode(secret, 'hex') FROM payments.installation_secrets
	WHERE purpose = 'fingerprint_key_id' ORDER BY created_at LIMIT 1").key"
ok "$(as_root test -f "$keyfile" && echo 0 || echo 1)" "the database's fingerprint key file is $(basename "$keyfile")"
fp_visa=$(fp $VISA)
as_root mv "$keyfile" "$keyfile.away"
ok "$(restart_worker && echo 0 || echo 1)" "a new worker starts, without the key file"
p9=$(as -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $(card $VISA))")
is "$(as -c "SELECT status || '|' || (card_fingerprint IS NULL) FROM pay_wait($p9, '20 s')")" "succeeded|true" \
	"without the key file a purchase is still sent and approved, without a fingerprint"
ok "$(passed wait_log 10 "WARNING: +payments worker: card fingerprints cannot be recorded: ")" "and the log says why"
as_root mv "$keyfile.away" "$keyfile"
ok "$(restart_worker && echo 0 || echo 1)" "a new worker starts, with the key file back"
p9b=$(as -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $(card $VISA))")
is "$(as -c "SELECT card_fingerprint FROM pay_wait($p9b, '20 s')")" "$fp_visa" "with the file back, the fingerprint is recorded again"

# 10. The fingerprints of the whole test: each one the gateway saw
is "$(su -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND card_fingerprint IS NOT NULL
	AND status NOT IN ('succeeded', 'failed')")" 0 "no payment short of the gateway's answer has a fingerprint"
tap_done
