#!/usr/bin/env bash
# A stored method whose gateway profile was deleted by someone else (another
# system on the same Authorize.Net account, the merchant's console): here a
# deleteCustomerPaymentProfileRequest or deleteCustomerProfileRequest sent to
# the simulator with the merchant's own credentials, behind the extension's
# back.  The gateway then answers a charge of it E00040 ("The record cannot
# be found."), NOTES.md §7.
# Proves: the charge fails with decline_code payment_method_gone; the method
# is failed (failure_code payment_method_gone, no longer the default) with
# a payment_method.failed event; a later charge of it is refused at the call
# (22Y20, nothing sent); the customer's other card is not made the default
# (pay_purchase by customer_id: 22Y22); the same for a whole customer
# profile deleted.  Before, the method stayed active (and the default):
# every charge went to the gateway and failed with E00040, and nothing told
# the merchant the card was gone.
# Then (sections 3-5): a new card saved for a customer whose whole profile
# is gone is saved in a new customer profile, and the customer's methods in
# the gone one are failed the same way (before: the save failed with E00040,
# every later save of the customer too, and the other methods stayed
# active); so it is when the new profile's creation loses its reply (one
# profile, one card at the gateway); and a charge whose first send lost its
# reply, resent and refused with E00040, ends as a first send does (before:
# unknown, looked up for ever, the method active).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-method-gone"
trap sim_stop EXIT
sim_start "$SIMDIR"
merchant_on_simulator method_gone

q() { as_merchant "$@"; }
year=$(( $(date +%Y) + 3 ))
card() { echo "pay_card('$1', 12, $year, '123', 'Ada Lovelace')"; }
new_customer() {
	q -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', billing => '{\"zip\": \"46201\"}')"
}
method() {
	q -c "SELECT concat_ws('|', status, is_default, coalesce(failure_code, '-')) FROM pay_get_payment_method($1)"
}

# --- 1. the customer's default payment profile deleted at the gateway
cid=$(new_customer gone)
pa=$(saved_method "$cid" 4111111111111111)
pb=$(saved_method "$cid" 5424000000000015 false)
ids=$(q -c "SELECT customer_profile_id || ' ' || payment_profile_id FROM pay_get_payment_method($pa)")
is "$(sim_request deleteCustomerPaymentProfileRequest "\"customerProfileId\":\"${ids% *}\",\"customerPaymentProfileId\":\"${ids#* }\"")" \
	Ok "another system deletes the default's payment profile at the gateway"

pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD', customer_id => $cid)")
is "$(q -c "SELECT concat_ws('|', status, decline_code, payment_method_id) FROM pay_wait($pid, '15 s')")" \
	"failed|payment_method_gone|$pa" "a charge of the customer's default fails with decline_code payment_method_gone"
is "$(method "$pa")" "failed|f|payment_method_gone" "the method is failed and no longer the default"
is "$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'payment_method.failed'
	AND (data ->> 'payment_method_id')::bigint = $pa AND data ->> 'failure_code' = 'payment_method_gone'
	AND data ->> 'failure_reason' LIKE '%payment $pid%'")" 1 \
	"a payment_method.failed event tells the merchant, naming the payment that found it"
ops=$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M")
is "$(sqlstate_of "SELECT pay_purchase(amount => '5.00 USD', payment_method_id => $pa)")" 22Y20 \
	"a later charge of the method is refused at the call (22Y20)"
is "$(sqlstate_of "SELECT pay_purchase(amount => '5.00 USD', customer_id => $cid)")" 22Y22 \
	"the customer has no default now (22Y22): its other card is not charged in its place"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M") $(method "$pb")" "$ops active|f|-" \
	"nothing was sent, and the other card is neither changed nor made the default"

# --- 2. the whole customer profile deleted at the gateway
cid2=$(new_customer gone2)
pc=$(saved_method "$cid2" 4007000000027)
cp=$(q -c "SELECT customer_profile_id FROM pay_get_payment_method($pc)")
is "$(sim_request deleteCustomerProfileRequest "\"customerProfileId\":\"$cp\"")" Ok \
	"another system deletes the customer's whole profile at the gateway"
pid2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', payment_method_id => $pc)")
is "$(q -c "SELECT concat_ws('|', status, decline_code) FROM pay_wait($pid2, '15 s')") $(method "$pc")" \
	"failed|payment_method_gone failed|f|payment_method_gone" \
	"a charge of a method named by id fails the same way and the method is failed"
is "$(sim_ledger "$(q -c "SELECT invoice_number FROM pay_get_payment($pid)")")$(sim_ledger "$(q -c "SELECT invoice_number FROM pay_get_payment($pid2)")")" "" \
	"the gateway moved no money"


# gateway_profile PROFILE_ID: "mcid count" of a customer profile at the
# gateway (its merchantCustomerId and how many payment profiles it holds),
# or the error code
gateway_profile() {
	curl -sS -X POST -H 'Content-Type: application/json' \
		-d "{\"getCustomerProfileRequest\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},$1}}" "$SIM_API" |
		python3 -c 'import json, sys
r = json.loads(sys.stdin.buffer.read().decode("utf-8-sig"))
p = r.get("profile")
print("%s %d" % (p.get("merchantCustomerId"), len(p.get("paymentProfiles", []))) if p else r["messages"]["message"][0]["code"])'
}
customer_profile() { q -c "SELECT coalesce(customer_profile_id, '-') FROM payments.customers WHERE merchant_id = $M AND customer_id = $1"; }
fired() {	# how many times the simulator's fault rules fired
	sim_ctl GET /faults | python3 -c 'import json, sys; print(sum(r.get("fired", 0) for r in json.load(sys.stdin)["faults"]))'
}
gone_events() {	# gone_events METHOD...: payment_method.failed events with payment_method_gone
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'payment_method.failed'
		AND (data ->> 'payment_method_id')::bigint IN ($(IFS=,; echo "$*")) AND data ->> 'failure_code' = 'payment_method_gone'"
}

# --- 3. a new card saved for a customer whose whole profile is gone
cid3=$(new_customer gone3)
pd=$(saved_method "$cid3" 4111111111111111)
pe=$(saved_method "$cid3" 5424000000000015 false)
cp3=$(customer_profile "$cid3")
is "$(sim_request deleteCustomerProfileRequest "\"customerProfileId\":\"$cp3\"")" Ok \
	"another system deletes a customer's whole profile, with its two cards"
pf=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid3, card => $(card 4007000000027), validation_mode => 'none')")
is "$(q -c "SELECT concat_ws('|', status, is_default, coalesce(failure_code, '-')) FROM pay_wait_payment_method($pf, '20 s')")" \
	"active|t|-" "a new card of that customer is saved (and the default)"
np3=$(q -c "SELECT customer_profile_id FROM pay_get_payment_method($pf)")
mcid3=$(q -c "SELECT payments._gateway_customer_ref($cid3)")
is "$( [ "$np3" != "$cp3" ] && echo new) $(customer_profile "$cid3") $(gateway_profile "\"customerProfileId\":\"$np3\"")" \
	"new $np3 $mcid3 1" "in a new customer profile (the customer's now, under its merchantCustomerId) holding that card"
is "$(method "$pd") $(method "$pe") $(gone_events "$pd" "$pe")" \
	"failed|f|payment_method_gone failed|f|payment_method_gone 2" \
	"the customer's methods in the gone profile are failed (payment_method_gone), each with a payment_method.failed event"
is "$(q -c "SELECT failure_reason LIKE '%profile $cp3 %payment method $pf %' FROM pay_get_payment_method($pe)")" t \
	"the failure reason names the gone profile and the save that found it"
pid3=$(q -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', customer_id => $cid3)")
is "$(q -c "SELECT concat_ws('|', status, payment_method_id) FROM pay_wait($pid3, '15 s')")" "succeeded|$pf" \
	"a charge of the customer's default charges the new card"
pg=$(saved_method "$cid3" 5424000000000015 false)
is "$(q -c "SELECT customer_profile_id FROM pay_get_payment_method($pg)") $(gateway_profile "\"customerProfileId\":\"$np3\"")" \
	"$np3 $mcid3 2" "a later save goes into the new profile"

# --- 4. the new profile's creation loses its reply: looked up, not made twice
cid4=$(new_customer gone4)
ph=$(saved_method "$cid4" 4111111111111111)
cp4=$(customer_profile "$cid4")
is "$(sim_request deleteCustomerProfileRequest "\"customerProfileId\":\"$cp4\"")" Ok "a second customer's whole profile is deleted"
sim_ctl POST /faults '{"type":"reset","count":1,"requestType":"createCustomerProfileRequest"}' >/dev/null
pi=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid4, card => $(card 4007000000027), validation_mode => 'none')")
is "$(q -c "SELECT status FROM pay_wait_payment_method($pi, '30 s')")" active \
	"a new card is saved though the reply to the new profile's creation was lost"
np4=$(q -c "SELECT customer_profile_id FROM pay_get_payment_method($pi)")
mcid4=$(q -c "SELECT payments._gateway_customer_ref($cid4)")
is "$(fired) $(q -c "SELECT attempts FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pi")" \
	"1 2" "the reply was lost once, and the next attempt found the save"
is "$(customer_profile "$cid4") $(gateway_profile "\"merchantCustomerId\":\"$mcid4\"") $(method "$ph")" \
	"$np4 $mcid4 1 failed|f|payment_method_gone" \
	"one new profile with the card once, the customer's; its old method failed"
sim_ctl DELETE /faults >/dev/null

# --- 5. a charge whose first reply was lost, resent and refused with E00040
cid5=$(new_customer gone5)
pj=$(saved_method "$cid5" 4111111111111111)
ids=$(q -c "SELECT customer_profile_id || ' ' || payment_profile_id FROM pay_get_payment_method($pj)")
is "$(sim_request deleteCustomerPaymentProfileRequest "\"customerProfileId\":\"${ids% *}\",\"customerPaymentProfileId\":\"${ids#* }\"")" \
	Ok "another system deletes another customer's default payment profile"
sim_ctl POST /faults '{"type":"reset","count":1,"requestType":"createTransactionRequest"}' >/dev/null
pid5=$(q -c "SELECT payment_id FROM pay_purchase(amount => '8.00 USD', customer_id => $cid5)")
q -c "SELECT status FROM pay_wait($pid5, '30 s')" >/dev/null
is "$(q -c "SELECT concat_ws('|', status, decline_code, payment_method_id) FROM pay_get_payment($pid5)") $(method "$pj")" \
	"failed|payment_method_gone|$pj failed|f|payment_method_gone" \
	"a charge whose first reply was lost and whose resend is refused with E00040 ends as a first send does"
is "$(gone_events "$pj") $(fired)" \
	"1 1" "a payment_method.failed event; the first reply was lost"
is "$(sim_ledger "$(q -c "SELECT invoice_number FROM pay_get_payment($pid5)")")" "" "the gateway moved no money"
sim_ctl DELETE /faults >/dev/null

tap_done
