#!/usr/bin/env bash
# Customers and stored payment methods end to end: saved at the gateway by
# the worker (each validation mode, Accept.js opaque data, from a payment),
# listed, made default, charged merchant-initiated with the card-on-file
# fields, refunded after settlement, deleted at the gateway, the
# expiring-soon event, and a save that survives the worker's crash without
# a second profile at the gateway.  The gateway's side is read from the
# simulator's own state (GET /profiles).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-methods"
trap sim_stop EXIT
sim_start "$SIMDIR"

merchant_on_simulator methods

q() { as_merchant "$@"; }
qerr() { sqlstate_of "$1"; }
# the simulator's profiles: profile_count MERCHANT_CUSTOMER_ID, pp_count PROFILE_ID
sim_profiles() { sim_ctl GET /profiles; }
profile_field() {	# profile_field MERCHANT_CUSTOMER_ID EXPR (python over p)
	sim_profiles | python3 -c '
import json, sys
mcid, expr = sys.argv[1], sys.argv[2]
ps = [p for p in json.load(sys.stdin)["profiles"] if p.get("merchantCustomerId") == mcid]
print(eval(expr))
' "$1" "$2"
}
year=$(( $(date +%Y) + 3 ))
card() { echo "pay_card('$1', 12, $year, '${2:-123}', 'Ada Lovelace')"; }

# --- a customer and a card saved with each validation mode
cid=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace', external_ref => 'u-1', billing => '{\"first_name\": \"Ada\", \"last_name\": \"Lovelace\", \"zip\": \"46201\"}')")
mcid=$(q -c "SELECT payments._gateway_customer_ref($cid)")
pm1=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 4111111111111111), validation_mode => 'liveMode')")
row=$(q -c "SELECT status || '|' || card_last4 || '|' || (payment_profile_id IS NOT NULL) || '|' || (network_trans_id IS NOT NULL) || '|' || is_default FROM pay_wait_payment_method($pm1, '10 s')")
is "$row" "active|1111|true|true|true" "a card saved with liveMode is active, with its payment profile and the validation's network transaction id"
cpid=$(q -c "SELECT customer_profile_id FROM pay_get_customer($cid)")
ok "$([ -n "$cpid" ]; echo $?)" "the customer learned its gateway profile id"
is "$(profile_field "$mcid" 'len(ps)')" 1 "the gateway holds one customer profile for the customer"
is "$(profile_field "$mcid" 'ps[0]["paymentProfiles"][0]["originalNetworkTransId"]')" \
	"$(q -c "SELECT network_trans_id FROM pay_get_payment_method($pm1)")" "the network transaction id is the gateway's originalNetworkTransId"
masked=$(q -c "SELECT string_agg(request_masked, ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IN (SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm1)")
like "$masked" '"createCustomerProfileRequest".*"merchantCustomerId":"'"$mcid"'".*"cardNumber":"XXXX1111".*"validationMode":"liveMode"' "the masked request created the profile with the card, masked, and liveMode"
if grep -q '4111111111111111' <<<"$masked"; then ok 1 "the exchange log holds no card number"; else ok 0 "the exchange log holds no card number"; fi
is "$(q -c "SELECT count(*) FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_method_id = $pm1")" 0 "the sealed card is erased once the gateway answered"

pm2=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 5424000000000015), validation_mode => 'testMode', make_default => false)")
row=$(q -c "SELECT status || '|' || card_last4 || '|' || is_default FROM pay_wait_payment_method($pm2, '10 s')")
is "$row" "active|0015|false" "a second card saved with testMode is active, not the default"
like "$(q -c "SELECT string_agg(request_masked, ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IN (SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm2)")" \
	'"createCustomerPaymentProfileRequest".*"customerProfileId":"'"$cpid"'".*"validationMode":"testMode"' "the second card went into the existing profile (createCustomerPaymentProfile, testMode)"
pm3=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $(card 370000000000002 1234), validation_mode => 'none', make_default => false)")
row=$(q -c "SELECT status || '|' || coalesce(network_trans_id, 'none') FROM pay_wait_payment_method($pm3, '10 s')")
is "$row" "active|none" "a card saved without validation is active, with no network transaction id"
is "$(profile_field "$mcid" 'len(ps[0]["paymentProfiles"])')" 3 "the gateway's profile holds the three payment profiles"

# a liveMode validation the issuer declines fails the method, with the reason
cid_d=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'decline@example.com', billing => '{\"zip\": \"46282\"}')")
pmd=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid_d, card => $(card 4007000000027))")
row=$(q -c "SELECT status || '|' || failure_code || '|' || failure_reason FROM pay_wait_payment_method($pmd, '10 s')")
is "$row" "failed|2|This transaction has been declined." "a declined liveMode validation leaves the method failed with the decline"
is "$(profile_field "$(q -c "SELECT payments._gateway_customer_ref($cid_d)")" 'len(ps)')" 0 "nothing was stored at the gateway for the declined card"

# --- Accept.js opaque data
nonce=$(sim_ctl POST /nonces '{"creditCard":{"cardNumber":"6011000000000012","expirationDate":"2030-12","cardCode":"999"}}')
pm4=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, opaque_data => '$nonce', make_default => false)")
row=$(q -c "SELECT status || '|' || card_last4 || '|' || (network_trans_id IS NOT NULL) FROM pay_wait_payment_method($pm4, '10 s')")
is "$row" "active|0012|true" "opaque data is saved: the last four and network id come from the gateway"
if grep -q "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["dataValue"])' "$nonce")" <<<"$(q -c "SELECT string_agg(request_masked, ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M")"; then
	ok 1 "the exchange log holds no nonce"; else ok 0 "the exchange log holds no nonce"; fi

# --- from a successful payment
cid2=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'grace@example.com', name => 'Grace Hopper')")
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '20.00 USD', card => $(card 4012888818888), customer_id => $cid2)")
is "$(q -c "SELECT status FROM pay_wait($pid, '10 s')")" succeeded "a customer's purchase with a card is approved"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid AND o.kind = 'purchase'")" \
	'"customer":\{"email":"grace@example.com"\}' "the customer's stored email went with the purchase (no customer object given)"
pm5=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid2, payment_id => $pid)")
row=$(q -c "SELECT status || '|' || card_last4 || '|' || (network_trans_id IS NOT NULL) || '|' || source_payment_id FROM pay_wait_payment_method($pm5, '10 s')")
is "$row" "active|8888|true|$pid" "a card is saved from an approved payment (createCustomerProfileFromTransaction), with its network id"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges WHERE merchant_id = $M AND request_type = 'createCustomerProfileFromTransactionRequest'")" \
	'"transId":"'"$(q -c "SELECT gateway_trans_id FROM pay_get_payment($pid)")"'"' "the profile was made from the payment's transaction"

# --- list and default
is "$(q -c "SELECT string_agg(payment_method_id::text, ',') FROM pay_list_payment_methods($cid)")" "$pm1,$pm4,$pm3,$pm2" "the list shows the default first, then newest first"
q -c "SELECT pay_set_default_payment_method($pm2)" >/dev/null
is "$(q -c "SELECT string_agg(payment_method_id::text || ':' || is_default, ',') FROM pay_list_payment_methods($cid)")" "$pm2:true,$pm4:false,$pm3:false,$pm1:false" "another method becomes the only default"

# --- merchant-initiated charges with the card-on-file fields
ntid=$(q -c "SELECT network_trans_id FROM pay_get_payment_method($pm1)")
pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '9.99 USD', payment_method_id => $pm1)")
is "$(q -c "SELECT status || '|' || customer_id || '|' || card_last4 FROM pay_wait($pid, '10 s')")" "succeeded|$cid|1111" "a stored method is charged (merchant-initiated)"
req=$(q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid AND o.kind = 'purchase'")
like "$req" '"profile":\{"customerProfileId":"'"$cpid"'","paymentProfile":\{"paymentProfileId":"[0-9]+"\}\}' "the charge names the customer and payment profiles"
like "$req" '"processingOptions":\{"isSubsequentAuth":"true"\},"subsequentAuthInformation":\{"originalNetworkTransId":"'"$ntid"'"\}' \
	"the request carried processingOptions.isSubsequentAuth and the original network transaction id"
pid_def=$(q -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', customer_id => $cid)")
is "$(q -c "SELECT status || '|' || payment_method_id FROM pay_wait($pid_def, '10 s')")" "succeeded|$pm2" "a customer alone is charged through its default method"
# a method without an original id: stored credentials, then it keeps the charge's id
pid3=$(q -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', payment_method_id => $pm3)")
q -c "SELECT status FROM pay_wait($pid3, '10 s')" >/dev/null
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid3 AND o.kind = 'purchase'")" \
	'"processingOptions":\{"isStoredCredentials":"true"\}' "a method without a known network id is charged as stored credentials"
is "$(q -c "SELECT (network_trans_id IS NOT NULL) FROM pay_get_payment_method($pm3)")" t "that charge's network transaction id is kept for the method's later charges"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', payment_method_id => $pmd)")" 22Y20 "a failed method cannot be charged (22Y20)"

# --- a refund of a profile payment after settlement
sim_ctl POST /settle >/dev/null
q -c "SELECT pay_refund(payment_id => $pid, amount => '4.99 USD')" >/dev/null
is "$(q -c "SELECT status || '|' || amount_refunded FROM pay_wait($pid, '10 s')")" "partially_refunded|4.99 USD" "a settled profile payment is refunded"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges e JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.payment_id = $pid AND o.kind = 'refund' AND e.request_type = 'createTransactionRequest'")" \
	'"refundTransaction".*"creditCard":\{"cardNumber":"XXXX1111","expirationDate":"XXXX"\}.*"refTransId"' \
	"the refund names the card by its last four, not the profile (which may be deleted by the time of a refund)"

# --- delete at the gateway
ppid4=$(q -c "SELECT payment_profile_id FROM pay_get_payment_method($pm4)")
q -c "SELECT pay_set_default_payment_method($pm4)" >/dev/null
is "$(q -c "SELECT status || '|' || is_default FROM pay_delete_payment_method($pm4)")" "deleting|true" "a method being deleted is deleting (a default keeps is_default meanwhile)"
is "$(q -c "SELECT status || '|' || is_default FROM pay_wait_payment_method($pm4, '10 s')")" "deleted|false" "then deleted once the gateway deleted it, and no longer the default"
is "$(profile_field "$mcid" "[pp['customerPaymentProfileId'] for pp in ps[0]['paymentProfiles']].count('$ppid4')")" 0 "the gateway no longer has the payment profile"
is "$(qerr "SELECT pay_purchase(amount => '1.00 USD', payment_method_id => $pm4)")" 22Y20 "a deleted method cannot be charged"
q -c "SELECT pay_delete_customer($cid2)" >/dev/null
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm5, '10 s')")" deleted "deleting a customer deletes its methods"
is "$(profile_field "$(q -c "SELECT payments._gateway_customer_ref($cid2)")" 'len(ps)')" 0 "and its profile at the gateway"
like "$(q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND data ->> 'payment_method_id' = '$pm4'")" \
	'payment_method.pending,payment_method.active,payment_method.default,payment_method.deleting,payment_method.deleted' "every transition of a method wrote an event"

# --- export and erasure
doc=$(q -c "SELECT pay_export_customer($cid)")
is "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["customer"]["email"], len(d["payment_methods"]), len(d["payments"]) >= 3, any("card_fingerprint" in x for x in d["payment_methods"]))' "$doc")" \
	"ada@example.com 4 True False" "the export holds the customer, its methods (masked) and payments"
q -c "SELECT pay_erase_customer($cid)" >/dev/null
is "$(q -c "SELECT coalesce(email, '-') || '|' || status || '|' || (erased_at IS NOT NULL) FROM pay_get_customer($cid)")" "-|deleted|true" "erasure removes the customer's personal data"
is "$(q -c "SELECT amount || '|' || status || '|' || (gateway_trans_id IS NOT NULL) || '|' || customer::text FROM pay_get_payment($pid)")" \
	"9.99 USD|partially_refunded|true|{}" "its payments keep amounts and gateway ids"
for i in $(seq 100); do
	[ "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND customer_id = $cid AND kind = 'delete_customer' AND status = 'succeeded'")" = 1 ] && break
	sleep 0.1
done
is "$(profile_field "$mcid" 'len(ps)')" 0 "and its profile (email, address) is deleted at the gateway"
if q -c "SELECT string_agg(coalesce(request_masked, '') || coalesce(response_masked, ''), ' ') FROM payments.gateway_exchanges WHERE merchant_id = $M" | grep -q 'ada@example.com'; then
	ok 1 "no exchange of the erased customer keeps the email"; else ok 0 "no exchange of the erased customer keeps the email"; fi

# --- a timeout while saving: looked up, never saved twice
cid3=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'timeout@example.com')")
mcid3=$(q -c "SELECT payments._gateway_customer_ref($cid3)")
sim_ctl POST /latency '{"fixedMs":4000,"randomMs":0}' >/dev/null
pm6=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid3, card => $(card 4111111111111111))")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm6")" = unknown ] && break
	sleep 0.1
done
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_method_id = $pm6" -c "SELECT payments._wake_at_commit()" >/dev/null
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm6, '20 s')")" active "a save whose reply timed out becomes active"
is "$(profile_field "$mcid3" 'str(len(ps)) + "/" + str(len(ps[0]["paymentProfiles"]))')" "1/1" "one customer profile with one payment profile at the gateway: the timed-out save was looked up, not resent"
like "$(q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = (SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm6)")" \
	'^createCustomerProfileRequest,getCustomerProfileRequest' "the second attempt asked for the profile before anything else"

# --- the worker killed mid-save (a crash restart): no duplicate profile
cid4=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'crash@example.com')")
mcid4=$(q -c "SELECT payments._gateway_customer_ref($cid4)")
# the simulator saves the profile as the request arrives and answers
# 5 s later: the worker is killed once the profile is there (not a fixed
# time after "sending", which a slow machine may not have sent by then)
sim_ctl POST /latency '{"fixedMs":5000,"randomMs":0}' >/dev/null
pm7=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid4, card => $(card 4111111111111111))")
profile_made() { [ "$(profile_field "$mcid4" 'len(ps)')" = 1 ] && echo 1; }
poll_value 30 profile_made >/dev/null
as_root kill -KILL "$(worker_pid)"
sleep 2
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
for i in $(seq 300); do
	cluster_psql "$WORK" "$PORT" payments -Atc "SELECT 1" >/dev/null 2>&1 && [ -n "$(worker_pid)" ] && break
	sleep 0.1
done
q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_method_id = $pm7 AND status = 'unknown'" -c "SELECT payments._wake_at_commit()" >/dev/null
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm7, '20 s')")" active "after the crash the save is found at the gateway: active"
is "$(profile_field "$mcid4" 'str(len(ps)) + "/" + str(len(ps[0]["paymentProfiles"]))')" "1/1" "one customer profile with one payment profile at the gateway after the crash"
ex=$(q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = (SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm7)")
like "$ex" 'getCustomerProfileRequest' "after the crash the worker looked the profile up ($ex)"
is "$(grep -o 'createCustomerProfileRequest' <<<"$ex" | wc -l)" 0 "and sent no create again (the card was lost with the restart; the first request had saved it)"
is "$(q -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M")" 0 "no card is left in the vault"

# --- a save and a customer deletion that run out of attempts (dead letters)
# do not leave their methods pending or deleting for ever
set_max_attempts() {	# set_max_attempts N | DEFAULT, and the worker going by it
	cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM SET payments.max_attempts = $1" -c "SELECT pg_reload_conf()" >/dev/null
	local n=$1; [ "$n" != DEFAULT ] || n=12
	ok "$(passed process_reread worker payments.max_attempts "$n")" "the worker goes by a budget of $n attempts"
}
set_max_attempts 2
cid6=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'dead@example.com')")
sim_ctl POST /faults '{"type":"http5xx","count":2,"requestType":"createCustomerProfileRequest"}' >/dev/null
pm9=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid6, card => $(card 4111111111111111))")
row=$(q -c "SELECT status || '|' || failure_code || '|' || is_default FROM pay_wait_payment_method($pm9, '25 s')")
is "$row" "failed|gave_up|false" "a save that ran out of attempts fails its method (pay_wait_payment_method returns)"
op9=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $pm9")
is "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $op9")" dead "its operation is a dead letter"
like "$(q -c "SELECT failure_reason FROM pay_get_payment_method($pm9)")" 'after 2 attempts.*pay_retry_dead_letter' "the reason says why and what can be done"
# one transaction: the worker may save it as soon as the retry commits
st=$(cluster_psql "$WORK" "$PORT" payments -At -c "SELECT 'retried' FROM payments.pay_retry_dead_letter($M, $op9); SELECT status FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $pm9" | tail -1)
is "$st" pending "retried, the method is pending again"
is "$(q -c "SELECT status || '|' || coalesce(failure_code, '-') FROM pay_wait_payment_method($pm9, '20 s')")" "active|-" "and the retried save makes it active"
sim_ctl POST /faults '{"type":"http5xx","count":2,"requestType":"deleteCustomerProfileRequest"}' >/dev/null
q -c "SELECT pay_delete_customer($cid6)" >/dev/null
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm9, '25 s')")" deleted "a customer deletion that ran out of attempts still deletes the methods here"
is "$(q -c "SELECT count(*) || '|' || min(data ->> 'customer_profile_id') FROM payments.events WHERE merchant_id = $M AND event_type = 'customer.gateway_profile_kept' AND data ->> 'customer_id' = '$cid6'")" \
	"1|$(q -c "SELECT customer_profile_id FROM pay_get_customer($cid6)")" "and an event names the profile kept at the gateway"
is "$(profile_field "$(q -c "SELECT payments._gateway_customer_ref($cid6)")" 'len(ps)')" 1 "(the gateway does still hold it)"
set_max_attempts DEFAULT
# erasure deletes the profile a deletion left at the gateway (before: an
# erasure of a deleted customer deleted nothing there)
q -c "SELECT pay_erase_customer($cid6)" >/dev/null
for i in $(seq 100); do
	[ "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND customer_id = $cid6 AND kind = 'delete_customer' AND status = 'succeeded'")" = 1 ] && break
	sleep 0.1
done
is "$(profile_field "$(q -c "SELECT payments._gateway_customer_ref($cid6)")" 'len(ps)')" 0 \
	"erasing that customer deletes the profile its deletion kept at the gateway"

# --- the expiring-soon event, written by the worker's housekeeping
cid5=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'soon@example.com')")
pm8=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid5, card => pay_card('4111111111111111', extract(month from now())::int, extract(year from now())::int, '123'), validation_mode => 'none')")
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm8, '10 s')")" active "a card that expires this month is saved"
is "$(q -c "SELECT string_agg(payment_method_id::text, ',') FROM pay_expiring_payment_methods(within_days => 31) WHERE customer_id = $cid5")" "$pm8" "it is listed as expiring within 31 days"
n=0
for i in $(seq 160); do
	n=$(q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = 'payment_method.expiring' AND data ->> 'payment_method_id' = '$pm8'")
	[ "$n" = 1 ] && break
	sleep 0.5
done
is "$n" 1 "the worker's housekeeping wrote one payment_method.expiring event for it"

tap_done
