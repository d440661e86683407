#!/usr/bin/env bash
# A dump restored within hours of when it was taken, into a new server,
# after the old server had gone on making payments: the restored
# database's sequences are where the dump left them, so its next payment
# gets the id of the old server's payment made after the dump.  Its
# invoice number must not be the old server's (P<tag><payment_id>): a
# purchase of the same amount with the same card, inside the gateway's
# duplicate window (8 hours), would be answered "duplicate" with the old
# server's transaction, and taken for the new purchase's: recorded paid,
# the customer never charged.  A new server life (worker_server.changed_at)
# gives new payments a tag of its own (worker_server.server_tag).
# A refund made there gets the operation id, so the invoice number
# (R<tag><operation_id>), of the old server's refund of another payment:
# looked up, that refund is not taken for its own (refTransId).
# A customer made there gets the customer id of the old server's, so its
# profile's merchantCustomerId but for the tag: a save in doubt, looked
# up by it, does not take the other customer's profile and card.
# A subscription made there gets the subscription id of the old server's,
# so its first charge's invoice number (S<tag><subscription><period>
# <attempt>) but for the tag: for a customer of before the copy, at the
# same price with the same payment profile, the gateway would answer it
# "duplicate" with the old server's charge, recorded as this one's.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/two_servers.sh"

RI="$WORK/restore-reused-ids"
two_servers "$RI" reused
gateway o "$SIM_TLS_API"
# Two purchases of 20.00 with one card, settled at the gateway.
A=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '20.00 USD', card => $card)")
B=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '20.00 USD', card => $card)")
is "$(as_m o -c "SELECT string_agg(status, ',') FROM (SELECT (pay_wait(x, '20 s')).status FROM unnest(ARRAY[$A, $B]) x) w")" \
	succeeded,succeeded "two purchases of 20.00 before the dump"
sim_ctl POST /settle >/dev/null
# A customer, Carol, her card saved at the gateway before the dump.
CC=$(as_m o -c "SELECT customer_id FROM pay_create_customer(email => 'carol@example.com', name => 'Carol')")
PC=$(as_m o -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CC, card => $card, validation_mode => 'none')")
is "$(as_m o -c "SELECT status FROM pay_wait_payment_method($PC, '20 s')")" active "Carol's card is saved before the dump"
cluster_pg_dump "$OLD" "$OPORT" -Fc payments >"$RI/payments.dump"

# After the dump, the old server's purchase: charged.
P=$(as_m o -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
is "$(as_m o -c "SELECT status FROM pay_wait($P, '20 s')")" succeeded "the old server's purchase after the dump succeeds"
old_number=$(oq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
old_trans=$(oq -Atc "SELECT gateway_trans_id FROM payments.payments WHERE merchant_id = $M AND payment_id = $P")
is "$(sim_ledger "$old_number")" "charge 12.00" "the gateway charged it"
# and its refund of 5.00 of purchase A
RA=$(as_m o -c "SELECT operation_id FROM pay_refund(payment_id => $A, amount => '5.00 USD')")
refunded_a() { [ "$(oq -Atc "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $RA")" = succeeded ] && echo yes; }
is "$(poll_value 30 refunded_a)" yes "the old server refunds 5.00 of purchase A after the dump"
is "$(sim_ledger "R$TAG$RA")" "refund 5.00" "the gateway refunded it, under R<tag><operation_id>"
# and a customer of its own, Alice, whose card it saves at the gateway
CA=$(as_m o -c "SELECT customer_id FROM pay_create_customer(email => 'alice@example.com', name => 'Alice')")
PA=$(as_m o -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CA, card => $card, validation_mode => 'none')")
is "$(as_m o -c "SELECT status FROM pay_wait_payment_method($PA, '20 s')")" active "the old server saves Alice's card after the dump"
alice=$(oq -Atc "SELECT customer_profile_id || '/' || payment_profile_id FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $PA")
# and Carol subscribes there, her first month charged to her card
sub_active() { [ "$(as_m "$1" -c "SELECT status FROM pay_get_subscription($2)")" = active ] && echo yes; }
sub_charge() { "${1}q" -Atc "SELECT p.$3 FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $2 AND i.period_index = 0"; }
SA=$(as_m o -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CC, price => '9.00 USD', interval_unit => 'month', payment_method_id => $PC)")
is "$(poll_value 60 sub_active o "$SA")" yes "the old server's subscription of Carol's after the dump: its first month paid"
old_snumber=$(sub_charge o "$SA" invoice_number)
old_strans=$(sub_charge o "$SA" gateway_trans_id)
like "$old_snumber" "^S$TAG[0-9A-Z]{13}\$" "under S, the installation's tag, subscription, period, attempt"
is "$(sim_ledger "$old_snumber")" "charge 9.00" "the gateway charged it"

# The old server dies; the dump is restored at once into a new server
# (the gateway's duplicate window still open for the old purchase).
as_pg "$PG_BINDIR/pg_ctl" -D "$OLD/data" -m immediate stop >/dev/null
restore_new "$RI/payments.dump"
is "$(poll_value 30 serving)" yes "the new server's worker serves it"

# The same customer buys again: same amount, same card.
Q=$(as_m n -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
is "$Q" "$P" "the restored database hands out the old server's payment id again"
is "$(as_m n -c "SELECT status FROM pay_wait($Q, '20 s')")" succeeded "the new purchase succeeds"
new_number=$(nq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $Q")
ok "$(passed [ "$new_number" != "$old_number" ])" "its invoice number is not the old server's"
like "$new_number" "^P[0-9A-F]{6}$Q\$" "P, a tag of six hexadecimal digits, the payment id"
is "$(sim_ledger "$new_number")" "charge 12.00" "the gateway charged the new purchase"
new_trans=$(nq -Atc "SELECT gateway_trans_id FROM payments.payments WHERE merchant_id = $M AND payment_id = $Q")
ok "$(passed [ "$new_trans" != "$old_trans" ])" "with a transaction of its own, not the old server's"
is "$(sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print(sum(1 for r in d if r["kind"]=="charge" and r["amountCents"]==1200))')" 2 \
	"two purchases of 12.00, two charges of 12.00 at the gateway"

# A refund of 5.00 of purchase B on the restored database gets the old
# server's refund's operation id again, so its invoice number.  Its outcome
# in doubt past the duplicate window (made so by a test trigger: the
# worker looks it up at once), the lookup meets the old server's refund
# of purchase A under that number, of the same card and amount: it is
# not B's refund.
nq -q -c "CREATE FUNCTION public.test_refund_in_doubt() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	NEW.never_sent := false;
	NEW.first_sent_at := now() - interval '9 hours';
	RETURN NEW;
END \$\$" -c "CREATE TRIGGER zz_test_refund_in_doubt BEFORE INSERT ON payments.operations
	FOR EACH ROW WHEN (NEW.kind = 'refund') EXECUTE FUNCTION public.test_refund_in_doubt()"
RB=$(as_m n -c "SELECT operation_id FROM pay_refund(payment_id => $B, amount => '5.00 USD')")
nq -q -c "DROP TRIGGER zz_test_refund_in_doubt ON payments.operations" -c "DROP FUNCTION public.test_refund_in_doubt()"
is "$RB" "$RA" "the restored database hands out the old server's refund's operation id again"
looked_up() { [ "$(nq -Atc "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $RB AND request_type = 'getTransactionDetailsRequest'")" != 0 ] \
	&& [ "$(nq -Atc "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $RB")" != sending ] && echo yes; }
is "$(poll_value 60 looked_up)" yes "the refund of B is looked up, and the old server's refund of A confirmed"
is "$(nq -Atc "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $RB")" unknown \
	"it is not taken for B's refund: B's stays unknown, for a person"
like "$(nq -Atc "SELECT last_error FROM payments.operations WHERE merchant_id = $M AND operation_id = $RB")" \
	"refunds transaction [0-9]+, not the payment's [0-9]+" "its last error says whose refund it is"
is "$(as_m n -c "SELECT amount_refunded FROM payments.payments WHERE merchant_id = $M AND payment_id = $B")" "0.00 USD" \
	"nothing of B counts as refunded"

# A new customer, Bob, on the restored database gets Alice's customer id
# again, so her profile's merchantCustomerId (C<tag><customer_id>) but
# for the tag.  His save's reply is lost (the gateway did not take it):
# the worker looks for his profile by that merchantCustomerId before it
# sends again; it must not find Alice's and take her card (ending as his)
# for his.
CB=$(as_m n -c "SELECT customer_id FROM pay_create_customer(email => 'bob@example.com', name => 'Bob')")
is "$CB" "$CA" "the restored database hands out Alice's customer id again"
sim_ctl POST /faults '{"type":"reset","count":1,"process":false,"requestType":"createCustomerProfileRequest"}' >/dev/null
PB=$(as_m n -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CB, card => pay_card('4111 1111 1111 1111', 11, extract(year from now())::int + 4, '321', 'Bob Other'), validation_mode => 'none')")
is "$(as_m n -c "SELECT status FROM pay_wait_payment_method($PB, '30 s')")" active "Bob's card is saved"
bob=$(nq -Atc "SELECT customer_profile_id || '/' || payment_profile_id FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $PB")
ok "$(passed [ "${bob%/*}" != "${alice%/*}" ])" "in a customer profile of his own, not Alice's"
ok "$(passed [ "${bob#*/}" != "${alice#*/}" ])" "as a payment profile of his own, not Alice's card"

# Carol subscribes again on the restored database, at the same price with
# the same card (payment profile): the subscription gets the old server's
# subscription id.  Its first charge must not carry the old server's
# invoice number, which the gateway would answer "duplicate" with the old
# server's charge, recorded as this one's: paid, never charged.
SB=$(as_m n -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CC, price => '9.00 USD', interval_unit => 'month', payment_method_id => $PC)")
is "$SB" "$SA" "the restored database hands out the old server's subscription id again"
is "$(poll_value 60 sub_active n "$SB")" yes "Carol's new subscription's first month is paid"
new_snumber=$(sub_charge n "$SB" invoice_number)
ok "$(passed [ "$new_snumber" != "$old_snumber" ])" "its invoice number is not the old server's charge's"
is "$new_snumber" "S$(nq -Atc "SELECT server_tag FROM payments.worker_server")${old_snumber:7}" \
	"S, the server life's tag, then subscription, period and attempt as before"
is "$(sim_ledger "$new_snumber")" "charge 9.00" "the gateway charged it"
ok "$(passed [ "$(sub_charge n "$SB" gateway_trans_id)" != "$old_strans" ])" "with a transaction of its own, not the old server's"
is "$(sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print(sum(1 for r in d if r["kind"]=="charge" and r["amountCents"]==900))')" 2 \
	"two subscriptions' first months of 9.00, two charges of 9.00 at the gateway"

# The server life's tag stays the same across a restart of the worker.
tag=$(nq -Atc "SELECT server_tag FROM payments.worker_server")
nq -Atc "SELECT payments.pay_worker_restart()" >/dev/null
R=$(as_m n -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $card)")
is "$(as_m n -c "SELECT status FROM pay_wait($R, '20 s')")" succeeded "a later purchase succeeds"
is "$(nq -Atc "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND payment_id = $R")" "P$tag$R" \
	"under the same server tag"
is "$(nq -Atc "SELECT server_tag FROM payments.worker_server")" "$tag" "which the restarted worker keeps"

tap_done
