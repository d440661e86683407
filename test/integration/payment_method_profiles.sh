#!/usr/bin/env bash
# Two live payment methods of a customer never share one gateway payment
# profile, and a default method whose deletion fails stays the default.
# Proves: a save whose reply was lost (a 5xx before the gateway processed
# it) is looked up without taking another card of the customer with the
# same last four (it is sent again and saved as its own card), nor, for
# Accept.js opaque data, the customer's earlier card; the same card saved
# twice for one customer (the gateway's duplicate answer E00039 naming the
# existing payment profile) fails with E00039 naming the method that holds
# it, so that deleting it cannot delete the other's card; a default whose
# deletion ran out of attempts is active and still the default.  Before,
# the lost save and the duplicate were recorded active on the other card's
# profile (charges billed the wrong card, a deletion deleted the other's
# card), and the failed deletion left the customer without a default.
# Also: a save answered with another request's reply (refId not ours) is
# looked up, not saved on the profile that reply names.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-method-profiles"
cleanup() {
	cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator method_profiles

q() { as_merchant "$@"; }
year=$(( $(date +%Y) + 3 ))
card() { echo "pay_card('$1', ${3:-12}, ${4:-$year}, '${2:-123}', 'Ada Lovelace')"; }
# pp_ids MERCHANT_CUSTOMER_ID: the payment profile ids the gateway holds for the customer
pp_ids() {
	sim_ctl GET /profiles | python3 -c '
import json, sys
ps = [p for p in json.load(sys.stdin)["profiles"] if p.get("merchantCustomerId") == sys.argv[1]]
print(",".join(sorted(pp["customerPaymentProfileId"] for p in ps for pp in p["paymentProfiles"])))' "$1"
}
new_customer() {
	q -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', billing => '{\"zip\": \"46201\"}')"
}
# the next createCustomerPaymentProfile is answered 503 without being processed
lose_next_save() {
	sim_ctl POST /faults '{"type":"http5xx","count":1,"requestType":"createCustomerPaymentProfileRequest"}' >/dev/null
}

# --- 1. A lost save of a card whose last four another card of the customer has
cid=$(new_customer lastfour)
mcid=$(q -c "SELECT payments._gateway_customer_ref($cid)")
pa=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111))")
q -c "SELECT status FROM pay_wait_payment_method($pa, '10 s')" >/dev/null
ppa=$(q -c "SELECT payment_profile_id FROM pay_get_payment_method($pa)")
lose_next_save
pb=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4242424242461111))")
# looked up 5 s later: nothing of it is found, the card is sent again
q -c "SELECT status FROM pay_wait_payment_method($pb, '30 s')" >/dev/null
ppb=$(q -c "SELECT status || '|' || card_last4 || '|' || coalesce(payment_profile_id, '-') FROM pay_get_payment_method($pb)")
comment "method $pa: profile $ppa; method $pb after its lost save: $ppb; the gateway holds $(pp_ids "$mcid")"
ok "$([ "${ppb%%|*}" = active ] && [ "${ppb##*|}" != "$ppa" ] && [ "${ppb##*|}" != - ] && echo 0 || echo 1)" \
	"a lost save of a card with another card's last four is active on a payment profile of its own"
ppb=${ppb##*|}
is "$(pp_ids "$mcid")" "$(printf '%s\n' "$ppa" "$ppb" | sort | paste -sd,)" "the gateway holds both cards"
q -c "SELECT status FROM pay_delete_payment_method($pb)" >/dev/null
q -c "SELECT status FROM pay_wait_payment_method($pb, '10 s')" >/dev/null
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD', payment_method_id => $pa)")
is "$(q -c "SELECT status || '|' || card_last4 FROM pay_wait($pid, '15 s')") $(pp_ids "$mcid")" "succeeded|1111 $ppa" \
	"deleting the new card leaves the other one at the gateway, and it is charged"

# --- 2. A lost save of Accept.js opaque data for a customer who has a card
cid=$(new_customer opaque)
pc=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111))")
q -c "SELECT status FROM pay_wait_payment_method($pc, '10 s')" >/dev/null
ppc=$(q -c "SELECT payment_profile_id FROM pay_get_payment_method($pc)")
nonce=$(sim_ctl POST /nonces '{"creditCard":{"cardNumber":"6011000000000012","expirationDate":"2030-12","cardCode":"999"}}')
lose_next_save
po=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, opaque_data => '$nonce')")
# nothing found, opaque data is sent again only once no earlier request
# can still be processed (2 x 3 s timeout + 5 s after the lost attempt)
q -c "SELECT status FROM pay_wait_payment_method($po, '30 s')" >/dev/null
q -c "SELECT status FROM pay_wait_payment_method($po, '20 s')" >/dev/null
r=$(q -c "SELECT status || '|' || coalesce(card_last4, '-') || '|' || coalesce(payment_profile_id, '-') FROM pay_get_payment_method($po)")
comment "opaque data after its lost save: $r (the earlier card's profile: $ppc)"
ok "$([[ "$r" =~ ^active\|0012\|[0-9]+$ ]] && [ "${r##*|}" != "$ppc" ] && echo 0 || echo 1)" \
	"a lost save of opaque data is active on its own card (0012), not on the customer's earlier card"

# --- 3. The same card saved twice for one customer (a new expiry: no idempotent replay)
cid=$(new_customer twice)
mcid=$(q -c "SELECT payments._gateway_customer_ref($cid)")
pd1=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111))")
q -c "SELECT status FROM pay_wait_payment_method($pd1, '10 s')" >/dev/null
pd2=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111 123 6 $((year + 1))), make_default => false)")
is "$(q -c "SELECT status || '|' || coalesce(failure_code, '-') || '|' || coalesce(failure_reason, '-') || '|' || coalesce(payment_profile_id, '-') FROM pay_wait_payment_method($pd2, '15 s')")" \
	"failed|E00039|This card is saved already as payment method $pd1 of the customer.|-" \
	"the same card saved again fails with E00039, naming the method that has it"
q -c "SELECT status FROM pay_delete_payment_method($pd2)" >/dev/null
q -c "SELECT status FROM pay_wait_payment_method($pd2, '10 s')" >/dev/null
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '6.00 USD', payment_method_id => $pd1)")
is "$(q -c "SELECT status || '|' || coalesce(decline_code, '-') FROM pay_wait($pid, '15 s')")" "succeeded|-" \
	"deleting the second save leaves the first one's card at the gateway: it is charged"

# --- 5. A save answered with another request's reply (its refId not the
# one sent: a proxy or the gateway mixing up replies) naming another
# customer's profile: no answer.  Looked up, the method is saved on its
# own customer's profile, the one the gateway made for it.  (Before: saved
# on the other customer's profile and payment profile, so its charges
# would bill that customer's card.)
cid=$(new_customer stranger)
ps=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 5424000000000015))")
q -c "SELECT status FROM pay_wait_payment_method($ps, '10 s')" >/dev/null
pps=$(q -c "SELECT payment_profile_id FROM pay_get_payment_method($ps)")
cps=$(sim_ctl GET /profiles | python3 -c '
import json, sys
print(next(p["customerProfileId"] for p in json.load(sys.stdin)["profiles"]
	for pp in p["paymentProfiles"] if pp["customerPaymentProfileId"] == sys.argv[1]))' "$pps")
cid=$(new_customer mixedup)
mcid=$(q -c "SELECT payments._gateway_customer_ref($cid)")
sim_ctl POST /faults "{\"type\":\"rewrite\",\"count\":1,\"requestType\":\"createCustomerProfileRequest\",\"set\":{\"refId\":\"another-request\",\"customerProfileId\":\"$cps\",\"customerPaymentProfileIdList\":[\"$pps\"]}}" >/dev/null
pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111))")
r=$(q -c "SELECT status FROM pay_wait_payment_method($pm, '30 s')")
sim_ctl DELETE /faults >/dev/null
r="$r|$(q -c "SELECT card_last4 || '|' || coalesce(payment_profile_id, '-') FROM pay_get_payment_method($pm)")"
is "$r" "active|1111|$(pp_ids "$mcid")" \
	"a save answered with another request's reply is active on the payment profile the gateway made for its own customer"
ok "$([ "${r##*|}" != "$pps" ] && echo 0 || echo 1)" "not on the other customer's payment profile ($pps)"

# --- 4. A default whose deletion runs out of attempts
cid=$(new_customer default)
px=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111), validation_mode => 'none')")
q -c "SELECT status FROM pay_wait_payment_method($px, '10 s')" >/dev/null
py=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 5424000000000015), validation_mode => 'none', make_default => false)")
q -c "SELECT status FROM pay_wait_payment_method($py, '10 s')" >/dev/null
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM SET payments.max_attempts = 2" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 2)" "the worker goes by a budget of two attempts"
sim_ctl POST /faults '{"type":"http5xx","count":5,"requestType":"deleteCustomerPaymentProfileRequest"}' >/dev/null
q -c "SELECT status FROM pay_delete_payment_method($px)" >/dev/null
r=$(q -c "SELECT status || '|' || is_default || '|' || coalesce(failure_code, '-') FROM pay_wait_payment_method($px, '25 s')")
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null
sim_ctl DELETE /faults >/dev/null
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', customer_id => $cid)" 2>&1 || true)
r="$r $(q -c "SELECT status || '|' || payment_method_id FROM pay_wait($pid, '15 s')" 2>/dev/null || echo "$pid")"
is "$r" "active|true|gave_up succeeded|$px" "a default whose deletion failed is active and still the default, charged for the customer"

tap_done
