#!/usr/bin/env bash
# A merchant moving to another gateway account (another api_login_id) while
# an operation's outcome is unknown, or a dead letter may have reached the
# current account: sent again to the new account, which never saw it, the
# card was charged twice.  pay_configure_gateway refuses the change (55000)
# until they are resolved on the current account; then it is taken.
# Section 3: the life of what was made at the old account after a change
# that was taken: its payments (refund, void, capture, settlement) and its
# stored payment methods (charges), and going back to it.  Section 4: the
# customers' cards after the change: a new card saved for a customer whose
# profile is at the old account, and deletions of methods saved there.
# Section 5: deleting such a customer, saving the card of an old-account
# payment, and a customer deletion queued before the change (held).
# Section 6: erasing such a customer (never refused): it completes here and
# names what it left at the other account.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-account-change"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	unpark || true
	q -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
card="pay_card('4111111111111111', 12, $Y, '123')"

###########################################################################
# 1. An operation of unknown outcome (the gateway processed it, the reply
#    was lost), then the merchant's gateway credentials change to another
#    account (a new login).  The worker resends inside the duplicate window
#    to the NEW account, which has never seen it: charged twice.
merchant_on_simulator hb-cred1 1000
M1=$M
sim_ctl POST /merchants '{"name":"hbLogin2","transactionKey":"hbKey2hbKey2hbK2"}' >/dev/null
park_after_send "$M1" "'unknown'"
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '21.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid")" = unknown ] && break; sleep 0.1; done
comment "after the lost reply: $(q -c "SELECT status, attempts, never_sent FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid") ledger: $(sim_ledger P$TAG$pid)"
# the merchant moves to another gateway account
reconf() { move_account "$1" hbLogin2 hbKey2hbKey2hbK2; }
is "$(reconf $M1)" 55000 "another account is refused while a purchase of unknown outcome may have reached the current one"
unpark
q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M1 AND payment_id = $pid" -c "SELECT payments._wake_at_commit()" >/dev/null
st=$(as_merchant -c "SELECT status FROM pay_wait($pid, '20 s')")
comment "payment: $st; ops: $(q -c "SELECT string_agg(concat_ws(' ', kind, status, attempts, last_error), ' / ') FROM payments.operations WHERE merchant_id = $M1 AND payment_id = $pid")"
comment "ledger: $(sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print([(r["merchant"],r["kind"],r["amount"]) for r in d if r.get("invoiceNumber")==sys.argv[1]])' P$TAG$pid)"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "the unknown purchase, resolved on the current account, is charged once"
is "$(reconf $M1)" "" "once it is resolved, the other account is taken"

###########################################################################
# 2. The same with a dead letter retried after the credentials changed.
merchant_on_simulator hb-cred2 1000
M2=$M
q -c "ALTER SYSTEM SET payments.max_attempts = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.max_attempts 1)" "2: the worker goes by a budget of one attempt"
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '22.00 USD', card => $card)")
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M2 AND payment_id = $pid")" = dead ] && break; sleep 0.1; done
op=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M2 AND payment_id = $pid")
comment "dead: $(q -c "SELECT status, attempts, never_sent FROM payments.operations WHERE merchant_id = $M2 AND operation_id = $op") payment $(as_merchant -c "SELECT status FROM pay_get_payment($pid)")"
is "$(q -c "SELECT status || ' ' || attempts FROM payments.operations WHERE merchant_id = $M2 AND operation_id = $op")" "dead 1" \
	"2: the purchase whose reply was lost is a dead letter after its one attempt"
q -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null
is "$(reconf $M2)" 55000 "another account is refused while a dead purchase may have reached the current one"
q -c "SELECT payments.pay_retry_dead_letter($M2, $op)" >/dev/null
st=$(as_merchant -c "SELECT status FROM pay_wait($pid, '20 s')")
comment "payment: $st; op: $(q -c "SELECT concat_ws(' ', kind, status, attempts, last_error) FROM payments.operations WHERE merchant_id = $M2 AND operation_id = $op")"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "the dead purchase, retried on the current account, is charged once"
is "$(reconf $M2)" "" "once it is resolved, the other account is taken"


###########################################################################
# 3. After a change that was taken: what was made at the old account stays
#    there.  Payments made there cannot be refunded, voided or captured
#    from the new account (it would never find them), and their settlement
#    is not asked of it; a stored method saved there has its profiles
#    there: charged at the new account, "not found" (E00040) failed it as
#    if its profile had been deleted.  Now: refused at the call (22Y20,
#    nothing recorded), a charge queued before the change is held as a dead
#    letter, the method stays active; back at the old account, settlement is
#    learned, the refund is a refund and the held charge goes through.
merchant_on_simulator hb-cred3 3000
M3=$M
sim_ctl POST /merchants '{"name":"hbLogin3","transactionKey":"hbKey3hbKey3hbK3"}' >/dev/null
pay() { local id; id=$(as_merchant -c "SELECT payment_id FROM pay_$1(amount => '$2', card => $card)")
	as_merchant -c "SELECT status FROM pay_wait($id, '20 s')" >/dev/null; echo "$id"; }
p1=$(pay purchase '30.00 USD')
p2=$(pay authorize '31.00 USD')
cid=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'hb3@example.com')")
pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('5424000000000015', 12, $Y, '123'), validation_mode => 'none', make_default => true)")
is "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')")" active "3: a method saved at the first account"
# a charge of it queued in the transaction that changes the account (not
# sent yet: the change does not wait for it)
held=$(as_merchant -c "BEGIN" -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', payment_method_id => $pm)" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'hbLogin3', transaction_key => 'hbKey3hbKey3hbK3', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M3)" \
	-c "COMMIT" | grep -xE "[0-9]+" | head -1)
for i in $(seq 100); do
	[ "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M3 AND payment_id = $held")" = dead ] && break; sleep 0.1; done
comment "charge queued before the change: $(as_merchant -c "SELECT concat_ws(' | ', status, decline_code) FROM pay_get_payment($held)"); $(q -c "SELECT concat_ws(' | ', status, last_error) FROM payments.operations WHERE merchant_id = $M3 AND payment_id = $held")"
like "$(q -c "SELECT status || ' ' || last_error FROM payments.operations WHERE merchant_id = $M3 AND payment_id = $held")" \
	'^dead held: the gateway account changed .*stored payment method or customer profile it uses was saved' \
	"3: a charge of the method queued before the change is held (a dead letter saying why), not sent to the new account"
is "$(as_merchant -c "SELECT concat_ws('|', status, is_default, failure_code) FROM pay_get_payment_method($pm)")" "active|t" \
	"3: the method stays active and the default (its profile is not gone)"
is "$(sim_ledger P$TAG$held)" "" "3: nothing charged for it"
# calls: refused, saying why (nothing recorded, nothing sent)
err() {	# err SQL: "SQLSTATE|DETAIL" of the error it raises
	as_merchant -v VERBOSITY=verbose -c "$1" 2>&1 |
		awk '/^ERROR:/ { s = substr($2, 1, 5) } /^DETAIL:/ { sub(/^DETAIL: +/, ""); d = $0 } END { print s "|" d }'
}
a_old=$(q -c "SELECT payments._gateway_account('$SIM_LOGIN')")
like "$(err "SELECT pay_purchase(amount => '8.00 USD', payment_method_id => $pm)")" \
	"^22Y20\|It is at gateway account $a_old; the merchant's gateway account was changed since" \
	"3: a charge of a method saved at the old account is refused (22Y20), the detail naming the account change"
is "$(err "SELECT pay_purchase(amount => '8.00 USD', customer_id => $cid)" | cut -d'|' -f1)" 22Y20 \
	"3: so is a charge of the customer's default saved there"
like "$(err "SELECT pay_refund(payment_id => $p1)")" "^22Y20\|It is at gateway account $a_old;" \
	"3: a refund of a payment made at the old account is refused (22Y20): never sent as a void, never a silent dead letter"
is "$(err "SELECT pay_void(payment_id => $p1)" | cut -d'|' -f1)" 22Y20 "3: so is a void of it"
is "$(err "SELECT pay_capture(payment_id => $p2)" | cut -d'|' -f1)" 22Y20 "3: and a capture of an authorization made there"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M3 AND payment_id IN ($p1, $p2) AND kind IN ('capture', 'void', 'refund')")" 0 \
	"3: nothing recorded for them"
is "$(as_merchant -c "SELECT concat_ws('|', status, is_default) FROM pay_get_payment_method($pm)")" "active|t" "3: the method is still active"
# the old account's batch settles: the new account is not asked about it
sim_ctl POST /settle >/dev/null
is "$(q -c "SELECT count(*) FROM payments._settlement_candidates(1000) WHERE merchant_id = $M3")" 0 \
	"3: the settlement check does not look for the old account's captures at the new one"
# back to the first account: everything goes on there
is "$(move_account $M3 "$SIM_LOGIN" "$SIM_KEY")" "" "3: going back to the first account is taken"
wait_for() { local i; for i in $(seq 200); do [ "$(q -c "SELECT $1")" = t ] && return 0; sleep 0.1; done; return 1; }
ok "$(passed wait_for "(SELECT settled_at IS NOT NULL FROM payments.payments WHERE merchant_id = $M3 AND payment_id = $p1)")" \
	"3: back there, the worker learns the payment settled"
op=$(as_merchant -c "SELECT operation_id FROM pay_refund(payment_id => $p1)")
ok "$(passed wait_for "(SELECT status = 'succeeded' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op)")" \
	"3: the refund succeeds there"
is "$(sim_ledger R$TAG$op)|$(sim_ledger P$TAG$p1)" "refund 30.00|charge 30.00" "3: as a refund of the settled charge, not a void"
hop=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M3 AND payment_id = $held")
q -c "SELECT payments.pay_retry_dead_letter($M3, $hop)" >/dev/null
is "$(as_merchant -c "SELECT status FROM pay_wait($held, '20 s')")|$(sim_ledger P$TAG$held)" "succeeded|charge 7.00" \
	"3: the held charge of the method, retried there, is charged once"
is "$(as_merchant -c "SELECT status FROM pay_get_payment_method($pm)")" active "3: the method is active"


###########################################################################
# 4. Customers after the change.  A customer's profile is at the account
#    its cards were saved at: a new card saved for it at the new account
#    was sent under that profile and failed ("not found", E00040); now the
#    customer gets a profile at the new account.  A deletion of a method
#    saved at the old account, sent to the new one, "succeeded" (not found
#    counts as deleted) while the card stayed at the old account: now
#    refused at the call (22Y20), and one queued before the change is held
#    (the method stays active, saying why).
pm3=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('4007000000027', 12, $Y, '123'), validation_mode => 'none', make_default => false)")
is "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm3, '10 s')")" active "4: another method saved at the first account"
as_merchant -c "BEGIN" -c "SELECT status FROM pay_delete_payment_method($pm3)" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'hbLogin3', transaction_key => 'hbKey3hbKey3hbK3', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M3)" \
	-c "COMMIT" >/dev/null
for i in $(seq 100); do
	[ "$(as_merchant -c "SELECT status FROM pay_get_payment_method($pm3)")" = active ] && break; sleep 0.1; done
like "$(as_merchant -c "SELECT concat_ws('|', status, failure_reason) FROM pay_get_payment_method($pm3)")" \
	'^active\|.*held: the gateway account changed' "4: its deletion queued as the merchant moved is held, the method active saying why"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges e JOIN payments.operations o ON o.merchant_id = e.merchant_id AND o.operation_id = e.operation_id WHERE o.merchant_id = $M3 AND o.payment_method_id = $pm3 AND o.kind = 'delete_method'")" 0 \
	"4: nothing of it was sent to the new account"
is "$(err "SELECT pay_delete_payment_method($pm)" | cut -d'|' -f1)" 22Y20 "4: a deletion asked for after the move is refused"
is "$(as_merchant -c "SELECT status FROM pay_get_payment_method($pm)")" active "4: the method stays active"
pm4=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => pay_card('4111111111111111', 12, $Y, '123'), validation_mode => 'none', make_default => true)")
is "$(as_merchant -c "SELECT concat_ws('|', status, failure_code) FROM pay_wait_payment_method($pm4, '15 s')")" active \
	"4: a new card saved for the customer at the new account is active (a profile made for it there)"
pid4=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '9.00 USD', payment_method_id => $pm4)")
is "$(as_merchant -c "SELECT status FROM pay_wait($pid4, '20 s')")" succeeded "4: and charged there"
is "$(sim_ctl GET '/ledger?merchant=hbLogin3' | grep -c "P$TAG$pid4" || true)" 1 "4: at the new account"

###########################################################################
# 5. The rest of the customer's life after the change.  (a) Deleting a
#    customer whose latest card is at the new account but who still has
#    active cards saved at the old one deleted only the profile at the new
#    account: the old profile and its cards stayed there while ours said
#    deleted.  Now refused at the call (22Y20, naming the old account), as
#    the deletion of such a method is.  (b) Saving a card from a payment
#    made at the old account went to the new one, which does not know the
#    transaction: refused at the call (22Y20), nothing recorded.  (c) A
#    customer deletion queued before the change is held (never sent), the
#    customer and its methods deleted here, a customer.gateway_profile_kept
#    event naming the profile left at the old account and why; back there,
#    the dead letter retried deletes the profile.  (d) A save of an
#    old-account payment's card queued before the change is held.
like "$(err "SELECT pay_delete_customer($cid)")" "^22Y20\|It is at gateway account $a_old;" \
	"5a: deleting a customer with active cards saved at the old account is refused (22Y20), naming it"
is "$(as_merchant -c "SELECT status FROM pay_get_customer($cid)")|$(as_merchant -c "SELECT string_agg(status, ',' ORDER BY payment_method_id) FROM pay_list_payment_methods($cid)")" \
	"active|active,active,active" "5a: the customer and its methods are kept as they were"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M3 AND customer_id = $cid AND kind = 'delete_customer'")" 0 \
	"5a: nothing queued"
nm=$(q -c "SELECT count(*) FROM payments.payment_methods WHERE merchant_id = $M3")
like "$(err "SELECT pay_save_payment_method(customer_id => $cid, payment_id => $p1, validation_mode => 'none', make_default => false)")" \
	"^22Y20\|It is at gateway account $a_old;" \
	"5b: saving the card of a payment made at the old account is refused (22Y20), naming it"
is "$(q -c "SELECT count(*) FROM payments.payment_methods WHERE merchant_id = $M3")" "$nm" "5b: nothing recorded"
# (c) a customer saved at the first account, deleted as the merchant moves
is "$(move_account $M3 "$SIM_LOGIN" "$SIM_KEY")" "" "5c: back at the first account"
c5=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'hb5@example.com')")
pm5=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c5, card => pay_card('5424000000000015', 12, $Y, '123'), validation_mode => 'none')")
is "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm5, '10 s')")" active "5c: a customer's card saved there"
prof5=$(as_merchant -c "SELECT customer_profile_id FROM pay_get_customer($c5)")
as_merchant -c "BEGIN" -c "SELECT status FROM pay_delete_customer($c5)" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'hbLogin3', transaction_key => 'hbKey3hbKey3hbK3', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M3)" \
	-c "COMMIT" >/dev/null
op5=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M3 AND customer_id = $c5 AND kind = 'delete_customer'")
ok "$(passed wait_for "(SELECT status = 'dead' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op5)")" \
	"5c: its deletion queued as the merchant moved is held as a dead letter"
like "$(q -c "SELECT last_error FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op5")" \
	"^held: the gateway account changed .* at account $a_old;" "5c: saying why"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M3 AND operation_id = $op5")" 0 \
	"5c: nothing of it was sent to the new account"
is "$(as_merchant -c "SELECT status FROM pay_get_customer($c5)")|$(as_merchant -c "SELECT status FROM pay_get_payment_method($pm5)")" \
	"deleted|deleted" "5c: the customer and its method are deleted here"
is "$(q -c "SELECT concat_ws('|', data ->> 'customer_id', data ->> 'customer_profile_id', data ->> 'operation_id') FROM payments.events WHERE merchant_id = $M3 AND event_type = 'customer.gateway_profile_kept' AND operation_id = $op5")" \
	"$c5|$prof5|$op5" "5c: one customer.gateway_profile_kept event names the profile left at the old account"
like "$(q -c "SELECT data ->> 'reason' FROM payments.events WHERE merchant_id = $M3 AND event_type = 'customer.gateway_profile_kept' AND operation_id = $op5")" \
	"^held: the gateway account changed .* at account $a_old;" "5c: its reason is why it was held (not a gateway that did not answer)"
is "$(sim_ctl GET "/profiles?merchant=$SIM_LOGIN" | grep -c "\"$prof5\"" || true)" 1 "5c: the profile is still at the old account"
is "$(move_account $M3 "$SIM_LOGIN" "$SIM_KEY")" "" "5c: back at the old account"
q -c "SELECT payments.pay_retry_dead_letter($M3, $op5)" >/dev/null
ok "$(passed wait_for "(SELECT status = 'succeeded' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op5)")" \
	"5c: the held deletion, retried there, succeeds"
is "$(sim_ctl GET "/profiles?merchant=$SIM_LOGIN" | grep -c "\"$prof5\"" || true)" 0 "5c: and the profile is gone from the old account"
is "$(as_merchant -c "SELECT status FROM pay_get_customer($c5)")|$(as_merchant -c "SELECT status FROM pay_get_payment_method($pm5)")" \
	"deleted|deleted" "5c: the customer and its method stay deleted"

# (d) a save of the card of a payment made at the first account, queued as
#     the merchant moves: held (the new account does not know the
#     transaction), the method failed saying why, nothing sent
c6=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'hb6@example.com')")
pm6=$(as_merchant -c "BEGIN" -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c6, payment_id => $p1, validation_mode => 'none')" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'hbLogin3', transaction_key => 'hbKey3hbKey3hbK3', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M3)" \
	-c "COMMIT" | grep -xE "[0-9]+" | head -1)
like "$(as_merchant -c "SELECT concat_ws('|', status, failure_reason) FROM pay_wait_payment_method($pm6, '10 s')")" \
	"^failed\|held: the gateway account changed .* at account $a_old;" \
	"5d: a save of an old-account payment's card queued as the merchant moved is held, the method failed saying why"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges e JOIN payments.operations o ON o.merchant_id = e.merchant_id AND o.operation_id = e.operation_id WHERE o.merchant_id = $M3 AND o.payment_method_id = $pm6")" 0 \
	"5d: nothing of it was sent to the new account"

###########################################################################
# 6. Erasure (pay_erase_customer) is a legal obligation: never refused.
#    Erasing a customer whose cards are at the old account (its profile at
#    the new one) deleted the profile at the new account only; the old
#    profile with its cards stayed there, silently.  Now erasure completes
#    here and says what it left: its customer.erased event lists the
#    account and the profiles (gateway_profiles_kept), and a WARNING.  (b)
#    A customer whose own profile is at the old account: its deletion is
#    held (a dead letter), listed as held, and deletes the profile once
#    that account is configured again and it is retried.
a_new=$(q -c "SELECT payments._gateway_account('hbLogin3')")
oldprof=$(q -c "SELECT customer_profile_id FROM payments.payment_methods WHERE merchant_id = $M3 AND payment_method_id = $pm")
newprof=$(as_merchant -c "SELECT customer_profile_id FROM pay_get_customer($cid)")
pps=$(q -c "SELECT string_agg(payment_profile_id, ',' ORDER BY payment_method_id) FROM payments.payment_methods WHERE merchant_id = $M3 AND payment_method_id IN ($pm, $pm3)")
comment "6a: customer $cid: profile $newprof at $a_new; methods $pm, $pm3 under $oldprof at $a_old ($pps)"
out=$(as_merchant -c "SELECT concat_ws('|', status, erased_at IS NOT NULL) FROM pay_erase_customer($cid)" 2>&1)
like "$out" "deleted\|t" "6a: the erasure completes (not refused)"
like "$out" "WARNING: .*customer $cid was erased, but its gateway profiles at another gateway account" \
	"6a: with a WARNING that it left profiles at another account"
like "$out" "Gateway account $a_old keeps customer profile $oldprof" "6a: naming the account and the profile"
is "$(q -c "SELECT data -> 'gateway_profiles_kept' FROM payments.events WHERE merchant_id = $M3 AND event_type = 'customer.erased' AND data ->> 'customer_id' = '$cid'")" \
	"$(q -c "SELECT jsonb_build_array(jsonb_build_object('gateway_account', '$a_old', 'customer_profile_id', '$oldprof', 'payment_profile_ids', to_jsonb(string_to_array('$pps', ',')), 'payment_method_ids', jsonb_build_array($pm, $pm3), 'deletion', 'none'))")" \
	"6a: the customer.erased event lists the old account, the profile, its payment profiles and methods left there"
op6=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M3 AND customer_id = $cid AND kind = 'delete_customer'")
ok "$(passed wait_for "(SELECT status = 'succeeded' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op6)")" \
	"6a: the profile at the new account is deleted there"
is "$(sim_ctl GET '/profiles?merchant=hbLogin3' | grep -c "\"$newprof\"" || true)|$(sim_ctl GET "/profiles?merchant=$SIM_LOGIN" | grep -c "\"$oldprof\"" || true)" "0|1" \
	"6a: gone from the new account; the old profile is still at the old account, as the event says"
is "$(q -c "SELECT string_agg(status, ',' ORDER BY payment_method_id) FROM payments.payment_methods WHERE merchant_id = $M3 AND customer_id = $cid")" \
	"deleted,deleted,deleted" "6a: its methods are deleted here"
# (b) a customer whose profile is at the account configured before
c7=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'hb7@example.com')")
pm7=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c7, card => pay_card('5424000000000015', 12, $Y, '123'), validation_mode => 'none')")
is "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm7, '10 s')")" active "6b: a customer's card saved at account $a_new"
prof7=$(as_merchant -c "SELECT customer_profile_id FROM pay_get_customer($c7)")
is "$(move_account $M3 "$SIM_LOGIN" "$SIM_KEY")" "" "6b: the merchant moves to account $a_old"
out=$(as_merchant -c "SELECT status FROM pay_erase_customer($c7)" 2>&1)
like "$out" "Gateway account $a_new keeps customer profile $prof7 \(its deletion is held as a dead letter\)" \
	"6b: erased, the WARNING names the profile left at the other account, its deletion held"
is "$(q -c "SELECT concat_ws('|', e -> 'gateway_account', e -> 'customer_profile_id', e -> 'payment_method_ids', e -> 'deletion') FROM payments.events, jsonb_array_elements(data -> 'gateway_profiles_kept') e WHERE merchant_id = $M3 AND event_type = 'customer.erased' AND data ->> 'customer_id' = '$c7'")" \
	"\"$a_new\"|\"$prof7\"|[$pm7]|\"held\"" "6b: and so does its customer.erased event"
op7=$(q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M3 AND customer_id = $c7 AND kind = 'delete_customer'")
ok "$(passed wait_for "(SELECT status = 'dead' AND last_error LIKE 'held: %' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op7)")" \
	"6b: its deletion is held as a dead letter, nothing sent to the account configured now"
is "$(move_account $M3 hbLogin3 hbKey3hbKey3hbK3)" "" "6b: account $a_new configured again"
q -c "SELECT payments.pay_retry_dead_letter($M3, $op7)" >/dev/null
ok "$(passed wait_for "(SELECT status = 'succeeded' FROM payments.operations WHERE merchant_id = $M3 AND operation_id = $op7)")" \
	"6b: retried there, the held deletion succeeds"
is "$(sim_ctl GET '/profiles?merchant=hbLogin3' | grep -c "\"$prof7\"" || true)" 0 "6b: and the erased customer's profile is gone from that account"

tap_done
