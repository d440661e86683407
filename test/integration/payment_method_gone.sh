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
# Then (section 3): a charge whose first send lost its reply, resent and
# refused with E00040, ends as a first send does (before: unknown, looked
# up for ever, the method active).
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
saved() {	# saved CUSTOMER CARD [MAKE_DEFAULT]: an active method's id
	local id
	id=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $1, card => $(card "$2"), validation_mode => 'none', make_default => ${3:-true})")
	q -c "SELECT status FROM pay_wait_payment_method($id, '10 s')" >/dev/null
	echo "$id"
}
# gateway REQUEST_NAME JSON_BODY: a request of another system on the account
gateway() {
	curl -sS -X POST -H 'Content-Type: application/json' \
		-d "{\"$1\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},$2}}" "$SIM_API" |
		python3 -c 'import json, sys; print(json.loads(sys.stdin.buffer.read().decode("utf-8-sig"))["messages"]["resultCode"])'
}
method() {
	q -c "SELECT concat_ws('|', status, is_default, coalesce(failure_code, '-')) FROM pay_get_payment_method($1)"
}

# --- 1. the customer's default payment profile deleted at the gateway
cid=$(new_customer gone)
pa=$(saved "$cid" 4111111111111111)
pb=$(saved "$cid" 5424000000000015 false)
ids=$(q -c "SELECT customer_profile_id || ' ' || payment_profile_id FROM pay_get_payment_method($pa)")
is "$(gateway deleteCustomerPaymentProfileRequest "\"customerProfileId\":\"${ids% *}\",\"customerPaymentProfileId\":\"${ids#* }\"")" \
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
pc=$(saved "$cid2" 4007000000027)
cp=$(q -c "SELECT customer_profile_id FROM pay_get_payment_method($pc)")
is "$(gateway deleteCustomerProfileRequest "\"customerProfileId\":\"$cp\"")" Ok \
	"another system deletes the customer's whole profile at the gateway"
pid2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', payment_method_id => $pc)")
is "$(q -c "SELECT concat_ws('|', status, decline_code) FROM pay_wait($pid2, '15 s')") $(method "$pc")" \
	"failed|payment_method_gone failed|f|payment_method_gone" \
	"a charge of a method named by id fails the same way and the method is failed"
is "$(sim_ledger "$(q -c "SELECT invoice_number FROM pay_get_payment($pid)")")$(sim_ledger "$(q -c "SELECT invoice_number FROM pay_get_payment($pid2)")")" "" \
	"the gateway moved no money"

fired() {	# how many times the simulator's fault rules fired
	sim_ctl GET /faults | python3 -c 'import json, sys; print(sum(r.get("fired", 0) for r in json.load(sys.stdin)["faults"]))'
}
gone_events() {	# gone_events METHOD...: payment_method.failed events with payment_method_gone
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'payment_method.failed'
		AND (data ->> 'payment_method_id')::bigint IN ($(IFS=,; echo "$*")) AND data ->> 'failure_code' = 'payment_method_gone'"
}

# --- 3. a charge whose first reply was lost, resent and refused with E00040
cid5=$(new_customer gone5)
pj=$(saved "$cid5" 4111111111111111)
ids=$(q -c "SELECT customer_profile_id || ' ' || payment_profile_id FROM pay_get_payment_method($pj)")
is "$(gateway deleteCustomerPaymentProfileRequest "\"customerProfileId\":\"${ids% *}\",\"customerPaymentProfileId\":\"${ids#* }\"")" \
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
