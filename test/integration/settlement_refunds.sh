#!/usr/bin/env bash
# Refunds and voids decided by the worker from the gateway's state of the
# payment's transaction (getTransactionDetails when it processes them),
# settlement learned for every captured payment from the batch lists, and
# payments held for review resolved later.  Each case is checked in the
# database and against the simulator's ledger (what the gateway did).
#
# Time: the simulator's clock (POST /clock) moves days ahead for refunds a
# week after settlement and past the refund window.  A batch settled while
# its clock is 40 days ahead lies outside every range the worker's
# scheduled check reads (which ends now): a settlement the worker learns
# only when a refund or a void asks.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-settle"
trap sim_stop EXIT
sim_start "$SIMDIR"

merchant_on_simulator settle

q() { as_merchant "$@"; }
# qerr SQL: run, expecting an error; prints "SQLSTATE|HINT".
qerr() {
	as_merchant -v VERBOSITY=verbose -c "$1" 2>&1 |
		awk '/^ERROR:/ { s = substr($2, 1, 5) } /^HINT:/ { sub(/^HINT: +/, ""); h = $0 } END { print s "|" h }'
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
refund() {	# refund PAYMENT_ID [AMOUNT]: the refund operation's id
	q -c "SELECT operation_id FROM pay_refund(payment_id => $1${2:+, amount => '$2'})"
}
# txn_status TRANS_ID: the gateway's own status of a transaction
AUTH="\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"}"
txn_status() {
	sim_api "{\"getTransactionDetailsRequest\":{$AUTH,\"transId\":\"$1\"}}" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["transaction"]["transactionStatus"])'
}
pay() {		# pay KIND AMOUNT [PAYMENT ARGS]: a payment, waited for; its id
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_$1(amount => '$2', ${3:-card => $card})")
	q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
settle() {		# settle: close the simulator's batch; prints its id
	sim_ctl POST /settle | python3 -c 'import json, sys; b = json.load(sys.stdin)["batches"]; print(b[0]["batchId"] if b else "")'
}
clock() { sim_ctl POST /clock "{\"advanceSeconds\":$1}" >/dev/null; }
trans_of() { q -c "SELECT gateway_trans_id FROM pay_get_payment($1)"; }
exchanges_of() {	# the request types an operation sent, in order
	q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $1"
}

###########################################################################
# 1. The case of issue 9: authorize 10.00, capture 6.00, the batch settles,
#    refund 6.00.  A refund, not a void; nothing left to refund after it.
pid=$(pay authorize '10.00 USD')
q -c "SELECT pay_capture(payment_id => $pid, amount => '6.00 USD')" >/dev/null
is "$(q -c "SELECT status || '|' || amount_captured FROM pay_wait($pid, '20 s')")" "succeeded|6.00 USD" "1: 6.00 of 10.00 captured"
batch=$(settle)
op=$(refund "$pid" '6.00 USD')
ok "$(passed op_is "$op" succeeded)" "1: the full refund of the settled capture succeeded"
is "$(q -c "SELECT via_void FROM pay_payment_operations($pid) WHERE operation_id = $op")" f "1: sent as a refund, not as a void"
is "$(q -c "SELECT status || '|' || amount_refunded || '|' || (settled_at IS NOT NULL) || '|' || settlement_batch_id FROM pay_get_payment($pid)")" \
	"refunded|6.00 USD|true|$batch" "1: the payment is refunded and knows its settlement batch"
is "$(sim_ledger "P$TAG$pid")" "authorization 10.00,capture 6.00" "1: the gateway authorized 10.00, captured 6.00, and voided nothing"
is "$(refund_ledger "$pid")" "refund 6.00;" "1: the gateway refunded 6.00 once"
is "$(qerr "SELECT pay_refund(payment_id => $pid, amount => '0.01 USD')")" "22Y20|" "1: nothing is left to refund (the payment is refunded)"
is "$(qerr "SELECT pay_void(payment_id => $pid)")" "22Y20|" "1: a refunded payment cannot be voided"

###########################################################################
# 2. Settlement learned for captured payments with no refund, from the
#    batch lists (no getTransactionDetails per payment).
p1=$(pay purchase '5.00 USD'); p2=$(pay purchase '6.00 USD')
p3=$(pay authorize '7.00 USD')
q -c "SELECT pay_capture(payment_id => $p3)" >/dev/null
q -c "SELECT status FROM pay_wait($p3, '20 s')" >/dev/null
p4=$(pay authorize '8.00 USD')		# not captured: never settles
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2, $p3) AND settled_at IS NULL")" 3 \
	"2: three captures not settled yet"
details_before=$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL AND request_type = 'getTransactionDetailsRequest'")
batch=$(settle)
ok "$(passed wait_sql "(SELECT count(*) = 3 FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2, $p3) AND settlement_batch_id = '$batch')")" \
	"2: the worker learned all three settled, in batch $batch"
is "$(q -c "SELECT bool_and(settled_at BETWEEN now() - interval '1 minute' AND now() + interval '1 minute') FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2, $p3)")" t \
	"2: settled_at is the batch's settlement time"
is "$(q -c "SELECT settled_at IS NULL FROM pay_get_payment($p4)")" t "2: an authorization not captured is not settled"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL AND request_type = 'getTransactionDetailsRequest'")" "$details_before" \
	"2: learned without one getTransactionDetails per payment"
like "$(q -c "SELECT string_agg(DISTINCT request_type, ',') FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL")" \
	'getSettledBatchListRequest,getTransactionListRequest' "2: from the settled batch list and the batch's transaction list"
q -c "SELECT pay_void(payment_id => $p4)" >/dev/null
is "$(q -c "SELECT status FROM pay_wait($p4, '20 s')")" canceled "2: a void of an authorization before settlement cancels it"
is "$(sim_ledger "P$TAG$p4")" "authorization 8.00,void 0.00" "2: the gateway voided the authorization"
is "$(qerr "SELECT pay_void(payment_id => $p1)")" "22Y20|A settled payment can only be refunded: use pay_refund." \
	"2: a void of a payment known settled is refused at call time, with a hint"

###########################################################################
# 3. Before settlement, card: a full refund goes out as a void; partial
#    refunds (several) wait for settlement, then go out as refunds; after
#    settlement more partial refunds go out at once.
pv=$(pay purchase '10.00 USD')
op=$(refund "$pv")
ok "$(passed op_is "$op" succeeded)" "3: a full refund before settlement succeeded"
is "$(q -c "SELECT via_void || '|' || p.status || '|' || p.amount_refunded FROM pay_payment_operations($pv) o, pay_get_payment($pv) p WHERE o.operation_id = $op")" \
	"true|refunded|10.00 USD" "3: the worker sent it as a void"
is "$(sim_ledger "P$TAG$pv")" "charge 10.00,void 0.00" "3: the gateway voided the charge, no refund"
is "$(txn_status "$(trans_of "$pv")")" voided "3: the gateway's transaction is voided"

pp=$(pay purchase '10.00 USD')
a=$(refund "$pp" '3.00 USD'); b=$(refund "$pp" '2.00 USD')
ok "$(passed op_is "$a" waiting_settlement)" "3: a partial refund before settlement waits for settlement"
ok "$(passed op_is "$b" waiting_settlement)" "3: and a second one too"
is "$(qerr "SELECT pay_refund(payment_id => $pp, amount => '5.01 USD')")" "22Y21|" "3: the waiting refunds count against what is left"
is "$(refund_ledger "$pp")" ";;" "3: nothing refunded at the gateway yet"
settle >/dev/null
ok "$(passed op_is "$b" succeeded)" "3: after settlement the waiting refunds go out"
ok "$(passed op_is "$a" succeeded)" "3: both"
is "$(q -c "SELECT status || '|' || amount_refunded FROM pay_get_payment($pp)")" "partially_refunded|5.00 USD" "3: 5.00 of 10.00 refunded"
is "$(q -c "SELECT count(*) || '|' || (array_agg(data ->> 'amount_refunded' ORDER BY event_id DESC))[1] FROM payments.events WHERE merchant_id = $M AND payment_id = $pp AND event_type = 'payment.partially_refunded'")" \
	"2|5.00 USD" "3: each partial refund wrote a payment.partially_refunded event, the second with 5.00 refunded (before: none for the second)"
c=$(refund "$pp" '5.00 USD')
ok "$(passed op_is "$c" succeeded)" "3: the rest, after settlement, goes out at once"
is "$(q -c "SELECT status || '|' || amount_refunded FROM pay_get_payment($pp)")" "refunded|10.00 USD" "3: all refunded"
is "$(refund_ledger "$pp")" "refund 3.00;refund 2.00;refund 5.00;" "3: the gateway made three refunds, 10.00 in all, no void"
is "$(sim_ledger "P$TAG$pp")" "charge 10.00" "3: the charge itself was never voided"

###########################################################################
# 4. Accept.js opaque data: refunds take the last four the gateway
#    returned (before settlement the full refund is a void).
nonce() { sim_ctl POST /nonces '{"creditCard":{"cardNumber":"5424000000000015","expirationDate":"2030-12","cardCode":"999"}}'; }
po=$(pay purchase '12.00 USD' "opaque_data => '$(nonce)'::jsonb")
po2=$(pay purchase '13.00 USD' "opaque_data => '$(nonce)'::jsonb")
is "$(q -c "SELECT status || '|' || card_last4 FROM pay_get_payment($po)")" "succeeded|0015" "4: an Accept.js purchase"
op=$(refund "$po2")
ok "$(passed op_is "$op" succeeded)" "4: full refund of an unsettled Accept.js purchase"
is "$(sim_ledger "P$TAG$po2")" "charge 13.00,void 0.00" "4: voided at the gateway"
settle >/dev/null
a=$(refund "$po" '2.00 USD')
ok "$(passed op_is "$a" succeeded)" "4: a partial refund of the settled Accept.js purchase"
b=$(refund "$po")
ok "$(passed op_is "$b" succeeded)" "4: and the rest"
is "$(refund_ledger "$po")" "refund 2.00;refund 10.00;" "4: the gateway refunded 2.00 and 10.00 (card XXXX0015)"
is "$(q -c "SELECT status || '|' || amount_refunded FROM pay_get_payment($po)")" "refunded|12.00 USD" "4: refunded in full"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $b AND request_type = 'createTransactionRequest'")" \
	'"transactionType":"refundTransaction".*"cardNumber":"XXXX0015","expirationDate":"XXXX".*"refTransId"' "4: refundTransaction with the last four and XXXX"

###########################################################################
# 5. Stored profile (CIM): refunds through the profile.
prof=$(sim_api "{\"createCustomerProfileRequest\":{$AUTH,\"profile\":{\"merchantCustomerId\":\"s$RANDOM$RANDOM\",\"email\":\"settle@example.com\",\"paymentProfiles\":{\"billTo\":{\"firstName\":\"Ann\",\"lastName\":\"Lee\"},\"payment\":{\"creditCard\":{\"cardNumber\":\"4007000000027\",\"expirationDate\":\"2030-12\"}}}},\"validationMode\":\"none\"}}" |
	python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["customerProfileId"], r["customerPaymentProfileIdList"][0])')
read -r cp pp_id <<<"$prof"
pprof="customer_profile_id => '$cp', payment_profile_id => '$pp_id'"
pf=$(pay purchase '20.00 USD' "$pprof")
pf2=$(pay purchase '21.00 USD' "$pprof")
is "$(q -c "SELECT status FROM pay_get_payment($pf)")" succeeded "5: a purchase through a stored profile"
a=$(refund "$pf" '5.00 USD')
ok "$(passed op_is "$a" waiting_settlement)" "5: a partial refund before settlement waits"
op=$(refund "$pf2")
ok "$(passed op_is "$op" succeeded)" "5: a full refund before settlement succeeds"
is "$(sim_ledger "P$TAG$pf2")" "charge 21.00,void 0.00" "5: as a void"
settle >/dev/null
ok "$(passed op_is "$a" succeeded)" "5: after settlement the partial refund goes out"
b=$(refund "$pf")
ok "$(passed op_is "$b" succeeded)" "5: and a refund of the rest"
is "$(refund_ledger "$pf")" "refund 5.00;refund 15.00;" "5: the gateway refunded 5.00 and 15.00"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $b AND request_type = 'createTransactionRequest'")" \
	'"refundTransaction".*"cardNumber":"XXXX0027","expirationDate":"XXXX".*"refTransId"' \
	"5: refundTransaction with the card's last four the purchase's answer gave, not the profile (which may be deleted by then)"

###########################################################################
# 6. A settlement the worker learns only when a refund or a void asks: the
#    batch settles while the gateway's clock is 40 days ahead, outside the
#    range of the scheduled check.
pr=$(pay purchase '9.00 USD'); pw=$(pay purchase '4.00 USD')
clock $((40 * 86400)); batch=$(settle); clock $((-40 * 86400))
sleep 2.5	# a few rounds of the scheduled check
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($pr, $pw) AND settled_at IS NULL")" 2 \
	"6: the scheduled check did not see these settle"
op=$(refund "$pr")
ok "$(passed op_is "$op" succeeded)" "6: a full refund of a capture the database thought unsettled succeeded"
is "$(q -c "SELECT via_void FROM pay_payment_operations($pr) WHERE operation_id = $op")" f "6: the worker asked the gateway and sent a refund, not a void"
is "$(exchanges_of "$op")" "getTransactionDetailsRequest,createTransactionRequest" "6: the question, then the refund"
is "$(q -c "SELECT status || '|' || settlement_batch_id FROM pay_get_payment($pr)")" "refunded|$batch" "6: the payment learned its batch then"
is "$(refund_ledger "$pr")" "refund 9.00;" "6: the gateway refunded 9.00"
is "$(sim_ledger "P$TAG$pr")" "charge 9.00" "6: and voided nothing"
# a void of such a payment is accepted (the database does not know) and
# fails in the worker with a reason that says to refund; nothing changes
op=$(q -c "SELECT operation_id FROM pay_void(payment_id => $pw)")
ok "$(passed op_is "$op" failed)" "6: a void of a settled capture fails"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pw) WHERE operation_id = $op")" 'settled at the gateway in batch .*refund it instead' \
	"6: its reason says it settled and to refund instead"
is "$(q -c "SELECT status || '|' || amount_refunded || '|' || settlement_batch_id FROM pay_get_payment($pw)")" "succeeded|0.00 USD|$batch" \
	"6: the payment is as it was, and now knows its settlement"
is "$(sim_ledger "P$TAG$pw")" "charge 4.00" "6: the gateway was not asked to void"
is "$(qerr "SELECT pay_void(payment_id => $pw)")" "22Y20|A settled payment can only be refunded: use pay_refund." "6: a second void is refused at call time"
op=$(refund "$pw" '4.00 USD')
ok "$(passed op_is "$op" succeeded)" "6: the refund the failed void left room for succeeded"
is "$(refund_ledger "$pw")" "refund 4.00;" "6: the gateway refunded 4.00"

###########################################################################
# 7. The life of a payment over days: authorized, captured, settled,
#    refunded a week later; past the refund window a refund fails
#    and frees its amount again.
pd=$(pay authorize '30.00 USD')
q -c "SELECT pay_capture(payment_id => $pd)" >/dev/null
q -c "SELECT status FROM pay_wait($pd, '20 s')" >/dev/null
settle >/dev/null
ok "$(passed wait_sql "(SELECT settled_at IS NOT NULL FROM pay_get_payment($pd))")" "7: the batch is learned"
clock $((7 * 86400))
op=$(refund "$pd" '10.00 USD')
ok "$(passed op_is "$op" succeeded)" "7: a week later 10.00 is refunded"
clock $((200 * 86400))
op=$(refund "$pd" '20.00 USD')
ok "$(passed op_is "$op" failed)" "7: 200 days later the gateway refuses a refund"
is "$(q -c "SELECT reason_code FROM pay_payment_operations($pd) WHERE operation_id = $op")" 54 "7: reason 54 (past the refund window)"
is "$(q -c "SELECT status || '|' || amount_refunded FROM pay_get_payment($pd)")" "partially_refunded|10.00 USD" "7: the payment keeps its 10.00 refunded"
op=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pd, amount => '20.00 USD')")
ok "$([ -n "$op" ]; echo $?)" "7: the failed refund's 20.00 can be asked for again"
ok "$(passed op_is "$op" failed)" "7: (and fails again at the gateway)"
is "$(refund_ledger "$pd")" "refund 10.00;;;" "7: the gateway refunded 10.00 only"
clock $((-207 * 86400))

###########################################################################
# 8. Held for review (simulator triggers 9252.00: held, not authorized;
#    9253.00: authorized and held), decided later at the gateway
#    (updateHeldTransactionRequest); the worker's review check moves the
#    payment on.
held() { q -c "SELECT payment_id FROM pay_$1(amount => '$2 USD', card => $card)"; }
decide() { sim_api "{\"updateHeldTransactionRequest\":{$AUTH,\"heldTransactionRequest\":{\"action\":\"$2\",\"refTransId\":\"$(trans_of "$1")\"}}}" >/dev/null; }
h1=$(held purchase 9253.00); h2=$(held authorize 9252.00); h3=$(held purchase 9252.00)
for h in $h1 $h2 $h3; do q -c "SELECT status FROM pay_wait($h, '20 s')" >/dev/null; done
is "$(q -c "SELECT string_agg(status, ',' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($h1, $h2, $h3)")" \
	"in_review,in_review,in_review" "8: three payments held for review"
sleep 2
is "$(q -c "SELECT string_agg(status, ',' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($h1, $h2, $h3)")" \
	"in_review,in_review,in_review" "8: still held while the gateway has not decided"
decide "$h1" approve; decide "$h2" approve; decide "$h3" decline
ok "$(passed wait_sql "(SELECT status = 'succeeded' FROM pay_get_payment($h1))")" "8: a held purchase approved later succeeds"
is "$(q -c "SELECT amount_captured || '|' || (auth_code IS NOT NULL) FROM pay_get_payment($h1)")" "9253.00 USD|true" "8: with its amount captured"
ok "$(passed wait_sql "(SELECT status = 'requires_capture' FROM pay_get_payment($h2))")" "8: a held authorization approved later requires capture"
ok "$(passed wait_sql "(SELECT status = 'failed' FROM pay_get_payment($h3))")" "8: a held purchase declined later fails"
is "$(q -c "SELECT decline_code || '|' || decline_reason FROM pay_get_payment($h3)")" "254|This transaction has been declined." "8: with the gateway's reason"
is "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $h3 AND event_type LIKE 'payment.%'")" \
	"payment.pending,payment.in_review,payment.failed" "8: each change wrote its event"
is "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $h1 AND event_type LIKE 'payment.%'")" \
	"payment.pending,payment.in_review,payment.succeeded" "8: the approved purchase's events"
q -c "SELECT pay_capture(payment_id => $h2)" >/dev/null
is "$(q -c "SELECT status || '|' || amount_captured FROM pay_wait($h2, '20 s')")" "succeeded|9252.00 USD" "8: the approved authorization is captured"
is "$(sim_ledger "P$TAG$h2")" "held 9252.00,capture 9252.00" "8: the gateway held it, then captured it"
settle >/dev/null
ok "$(passed wait_sql "(SELECT count(*) = 2 FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($h1, $h2) AND settled_at IS NOT NULL)")" \
	"8: both approved payments are learned settled"

###########################################################################
# 9. A payment with a stored card, refunded after the card, then the
#    customer, was deleted: the refund names the card by its last four, not
#    the profile (before: E00040, the record cannot be found, and the refund
#    failed for good, the customer never refunded).
cu=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'refund-later@example.com', name => 'Rae Later')")
spm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cu, card => $card, validation_mode => 'none')")
is "$(q -c "SELECT status FROM pay_wait_payment_method($spm, '20 s')")" active "9: a stored card"
ps1=$(pay purchase '40.00 USD' "payment_method_id => $spm")
ps2=$(pay purchase '41.00 USD' "payment_method_id => $spm")
settle >/dev/null
ok "$(passed wait_sql "(SELECT count(*) = 2 FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($ps1, $ps2) AND settled_at IS NOT NULL)")" \
	"9: both charges settled"
q -c "SELECT pay_delete_payment_method($spm)" >/dev/null
ok "$(passed wait_sql "(SELECT status = 'deleted' FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $spm)")" \
	"9: the stored card is deleted at the gateway"
op=$(refund "$ps1" '15.00 USD')
ok "$(passed op_is "$op" succeeded)" "9: a refund after the stored card was deleted succeeds"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $op AND request_type = 'createTransactionRequest'")" \
	'"refundTransaction".*"cardNumber":"XXXX1111","expirationDate":"XXXX".*"refTransId"' "9: by the card's last four, not the deleted profile"
q -c "SELECT pay_delete_customer($cu)" >/dev/null
ok "$(passed wait_sql "(SELECT bool_and(status = 'succeeded') FROM payments.operations WHERE merchant_id = $M AND customer_id = $cu AND kind = 'delete_customer')")" \
	"9: the customer's profile is deleted at the gateway"
op=$(refund "$ps2")
ok "$(passed op_is "$op" succeeded)" "9: a refund after the customer was deleted succeeds"
is "$(refund_ledger "$ps1")$(refund_ledger "$ps2")" "refund 15.00;refund 41.00;" "9: the gateway refunded 15.00 and 41.00"
is "$(q -c "SELECT string_agg(status || ' ' || amount_refunded, ',' ORDER BY payment_id) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($ps1, $ps2)")" \
	"partially_refunded 15.00 USD,refunded 41.00 USD" "9: the payments show it"

# fired: 1 once the simulator's fault rules have fired at least once
fired() {
	[ "$(sim_ctl GET /faults | python3 -c '
import json, sys
r = json.load(sys.stdin)
r = r.get("faults", []) if isinstance(r, dict) else r
print(sum(x.get("fired", 0) for x in r))')" -ge 1 ] && echo 1
}
su() { cluster_psql "$WORK" "$PORT" payments -Atq "$@"; }

###########################################################################
# 10. A full refund decided as a void, whose void goes out only after the
#     capture settled (its first try was held unanswered while the batch
#     settled): the gateway has nothing unsettled to void (reason 16), so
#     the refund goes out as a refund after all (before: it failed, and
#     the customer was never refunded).
pv2=$(pay purchase '30.00 USD')
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":1500,"process":false,"requestType":"createTransactionRequest"}' >/dev/null
op=$(refund "$pv2")
is "$(poll_value 20 fired)" 1 "10: the void is held unanswered"
settle >/dev/null
ok "$(passed op_is "$op" succeeded)" "10: the refund succeeded"
sim_ctl DELETE /faults >/dev/null
is "$(q -c "SELECT via_void || '|' || p.status || '|' || p.amount_refunded FROM pay_payment_operations($pv2) o, pay_get_payment($pv2) p WHERE o.operation_id = $op")" \
	"false|refunded|30.00 USD" "10: as a refund, the payment refunded"
like "$(exchanges_of "$op")" '^getTransactionDetailsRequest,createTransactionRequest,createTransactionRequest,getTransactionDetailsRequest,createTransactionRequest$' \
	"10: asked, the void (held), the void again (reason 16), asked again, the refund"
is "$(sim_ledger "P$TAG$pv2")" "charge 30.00" "10: the gateway voided nothing"
is "$(refund_ledger "$pv2")" "refund 30.00;" "10: and refunded 30.00 once"

###########################################################################
# 11. The same when the void's answer was lost and the operation is
#     resolved past the duplicate window: the lookup finds the capture
#     settled, not voided, so the refund goes out as a refund after all
#     (before: it failed).
park_after_send "$M" "'unknown'"
pv3=$(pay purchase '31.00 USD')
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":500,"process":false,"requestType":"createTransactionRequest"}' >/dev/null
op=$(refund "$pv3")
ok "$(passed op_is "$op" unknown)" "11: the void got no answer: unknown"
sim_ctl DELETE /faults >/dev/null
settle >/dev/null
su -c "UPDATE payments.operations SET first_sent_at = now() - interval '9 hours', next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $op"
unpark
ok "$(passed op_is "$op" succeeded)" "11: resolved past the window, the refund succeeded"
is "$(q -c "SELECT via_void || '|' || p.status || '|' || p.amount_refunded FROM pay_payment_operations($pv3) o, pay_get_payment($pv3) p WHERE o.operation_id = $op")" \
	"false|refunded|31.00 USD" "11: as a refund, the payment refunded"
is "$(sim_ledger "P$TAG$pv3")" "charge 31.00" "11: the gateway voided nothing"
is "$(refund_ledger "$pv3")" "refund 31.00;" "11: and refunded 31.00 once"

###########################################################################
# 12. The worker stopped while a refund was still asking about the capture
#     (getTransactionDetails held unanswered).  After the restart the
#     refund may have been sent as far as the database knows, yet it is
#     decided again from the capture's state: an unsettled capture cannot
#     have been refunded (before: sent as a refund of the unsettled
#     capture, refused with reason 54, failed).  In full: a void; in part:
#     it waits for settlement.
su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 20000, merchant_id => $M)" >/dev/null
pu=$(pay purchase '22.00 USD'); pu2=$(pay purchase '23.00 USD')
for c in "full|$pu|" "part|$pu2|5.00 USD"; do
	IFS='|' read -r what pid amount <<<"$c"
	sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":8000,"requestType":"getTransactionDetailsRequest"}' >/dev/null
	op=$(refund "$pid" ${amount:+"$amount"})
	is "$(poll_value 20 fired)" 1 "12 ($what): the question about the capture is held unanswered"
	ok "$(passed restart_worker)" "12 ($what): the worker restarted meanwhile"
	sim_ctl DELETE /faults >/dev/null
	if [ "$what" = full ]; then
		ok "$(passed op_is "$op" succeeded)" "12 (full): the refund succeeded"
		is "$(q -c "SELECT via_void || '|' || p.status || '|' || p.amount_refunded FROM pay_payment_operations($pid) o, pay_get_payment($pid) p WHERE o.operation_id = $op")" \
			"true|refunded|22.00 USD" "12 (full): decided again: a void"
		is "$(sim_ledger "P$TAG$pid")" "charge 22.00,void 0.00" "12 (full): the gateway voided the charge"
	else
		ok "$(passed op_is "$op" waiting_settlement)" "12 (part): decided again: it waits for settlement"
		settle >/dev/null
		ok "$(passed op_is "$op" succeeded)" "12 (part): then is refunded"
		is "$(refund_ledger "$pid")" "refund 5.00;" "12 (part): the gateway refunded 5.00 once"
	fi
done
su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $M)" >/dev/null

###########################################################################
# 13. Captures the gateway answers as done before: 311 (already captured)
#     is an approval that captured nothing now.  Captured in the Merchant
#     Interface for another amount, the worker asks and does not record
#     ours (before: 12.34 recorded captured where 5.00 was); for the same
#     amount it is the capture.  310 (the authorization was voided there):
#     an error that says so.
ctx() {	# ctx TYPE PAYMENT_ID [AMOUNT]: a transaction made at the gateway directly
	sim_api "{\"createTransactionRequest\":{$AUTH,\"transactionRequest\":{\"transactionType\":\"$1\"${3:+,\"amount\":\"$3\"},\"refTransId\":\"$(trans_of "$2")\"}}}" >/dev/null
}
capture() { q -c "SELECT operation_id FROM pay_capture(payment_id => $1)"; }
pa=$(pay authorize '12.34 USD'); ctx priorAuthCaptureTransaction "$pa" 5.00
op=$(capture "$pa")
ok "$(passed op_is "$op" unknown)" "13: a capture answered 311 after 5.00 was captured elsewhere stays unknown"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pa) WHERE operation_id = $op")" 'is for 5.00, not 12.34' \
	"13: its last_error names both amounts, for a person"
is "$(q -c "SELECT amount_captured IS DISTINCT FROM '12.34 USD'::pay_amount FROM pay_get_payment($pa)")" t "13: 12.34 is not recorded captured"
pb=$(pay authorize '7.00 USD'); ctx priorAuthCaptureTransaction "$pb" 7.00
op=$(capture "$pb")
ok "$(passed op_is "$op" succeeded)" "13: captured elsewhere for the same amount: the capture succeeded"
is "$(q -c "SELECT status || '|' || amount_captured FROM pay_get_payment($pb)")" "succeeded|7.00 USD" "13: the payment is captured"
is "$(sim_ledger "P$TAG$pb")" "authorization 7.00,capture 7.00" "13: the gateway captured once"
pc=$(pay authorize '8.00 USD'); ctx voidTransaction "$pc"
op=$(capture "$pc")
ok "$(passed op_is "$op" failed)" "13: a capture of an authorization voided at the gateway fails"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pc) WHERE operation_id = $op")" 'voided at the gateway \(reason 310\).*pay_void' \
	"13: saying it was voided there and how to record it"
op=$(q -c "SELECT operation_id FROM pay_void(payment_id => $pc)")
ok "$(passed op_is "$op" succeeded)" "13: pay_void then records it"
is "$(q -c "SELECT status FROM pay_get_payment($pc)")" canceled "13: the payment is canceled"

###########################################################################
# 14. An authorization left uncaptured past its 30 days expires at the
#     gateway: a capture is refused (reason 16), the worker asks the
#     gateway about the authorization, finds it expired, and the payment
#     is canceled with nothing captured (before: the capture failed and
#     the payment stayed requires_capture until someone voided it).  A
#     reason 16 for an authorization not expired leaves the payment as it
#     was.  A void of an authorization expired at the gateway records
#     what happened (nothing is held).  A purchase voided before
#     settlement shows nothing captured (before: its amount_captured
#     stayed).
pe=$(pay authorize '50.00 USD'); pe2=$(pay authorize '40.00 USD'); pn=$(pay authorize '30.00 USD')
clock $((32 * 86400)); settle >/dev/null
# the first question about the authorization is answered 503: the capture
# is sent again later (refused again), and the second question is answered
sim_ctl POST /faults '{"type":"http5xx","count":1,"requestType":"getTransactionDetailsRequest"}' >/dev/null
op=$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pe)")
ok "$(passed op_is "$op" failed)" "14: a capture of an authorization expired at the gateway fails"
sim_ctl DELETE /faults >/dev/null
like "$(q -c "SELECT last_error FROM pay_payment_operations($pe) WHERE operation_id = $op")" \
	"authorization $(trans_of "$pe") expired at the gateway uncaptured \\(reason 16\\).*payment is canceled" \
	"14: saying the authorization expired (before: that it may have, and to void it)"
is "$(q -c "SELECT status || '|' || coalesce(amount_captured::text, 'none') FROM pay_get_payment($pe)")" "canceled|none" \
	"14: the payment is canceled with nothing captured (before: requires_capture)"
is "$(exchanges_of "$op")" "createTransactionRequest,getTransactionDetailsRequest,createTransactionRequest,getTransactionDetailsRequest" \
	"14: the worker asked about the authorization, and when that failed, sent the capture and asked again"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND payment_id = $pe AND event_type = 'payment.canceled'")" 1 \
	"14: one payment.canceled event"
is "$(sqlstate_of "SELECT pay_capture(payment_id => $pe)")" 22Y20 "14: a second capture is refused"
is "$(sim_ledger "P$TAG$pe")" "authorization 50.00" "14: the gateway captured nothing"
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.payments SET gateway_trans_id = '77777777' WHERE merchant_id = $M AND payment_id = $pn"
op=$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pn)")
ok "$(passed op_is "$op" failed)" "14: a capture of a transaction the gateway does not have fails"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pn) WHERE operation_id = $op")" \
	'cannot find the authorization to capture \(reason 16\): nothing was captured.*30 days.*pay_void' \
	"14: saying nothing was captured, and how to record an expiry"
is "$(q -c "SELECT status FROM pay_get_payment($pn)")" requires_capture "14: that payment stays requires_capture"
op=$(q -c "SELECT operation_id FROM pay_void(payment_id => $pe2)")
ok "$(passed op_is "$op" succeeded)" "14: a void of an authorization expired at the gateway succeeds"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pe2) WHERE operation_id = $op")" 'had expired at the gateway' "14: saying why"
is "$(q -c "SELECT status FROM pay_get_payment($pe2)")" canceled "14: the payment is canceled"
is "$(sim_ledger "P$TAG$pe2")" "authorization 40.00" "14: the gateway was asked to void nothing"
clock $((-32 * 86400))
pv4=$(pay purchase '12.00 USD')
op=$(q -c "SELECT operation_id FROM pay_void(payment_id => $pv4)")
ok "$(passed op_is "$op" succeeded)" "14: a purchase voided before settlement"
is "$(q -c "SELECT status || '|' || amount_captured FROM pay_get_payment($pv4)")" "canceled|0.00 USD" "14: is canceled with nothing captured"
is "$(q -c "SELECT data ->> 'amount_captured' FROM payments.events WHERE merchant_id = $M AND payment_id = $pv4 AND event_type = 'payment.canceled'")" \
	"0.00 USD" "14: and its payment.canceled event says so"

tap_done
