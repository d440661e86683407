#!/usr/bin/env bash
# Payments that live for weeks, not seconds.  The simulator's clock moves
# days ahead (POST /clock) and its batches settle (POST /settle); between
# the steps the vault's key is rotated, the merchant's API key is rotated
# (the old one is refused once its overlap has passed), the gateway
# answers only errors for a day, and the server is stopped with
# -m immediate while a capture is in flight.  At every step the amounts
# are checked to the cent in the database and in the simulator's ledger
# (what the gateway did), with the statuses and the events written (one
# per transition, none twice).
#
#   day 0   authorize 100.00; purchases of 40.00 and 50.00; a purchase of
#           25.00 the gateway answers 503 to for a day, its card waiting
#           sealed across two vault key rotations
#   day 1   the gateway is well: the 25.00 is charged once, with its card
#   day 6   capture 60.00 of the 100.00, the server stopped -m immediate
#           while the capture is held in flight; the batch settles
#   day 7   the API key is rotated; a day later the old secret is refused
#   day 13  two partial refunds of the 60.00 from two sessions at once
#           (25.00 + 35.00), one cent more is refused; two sessions refund
#           30.00 each of the 50.00 at once: one is refused; a void of the
#           settled 40.00 purchase the database did not know was settled
#           becomes a refund, never a void reported of settled money
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-lifetimes"
UP="$WORK/lifetimes-0.1.0"
UP_BINDIR=
cleanup() {
	[ -z "$UP_BINDIR" ] || PG_BINDIR=$UP_BINDIR cluster_stop "$UP" 2>/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator lifetimes

q() { as_merchant "$@"; }
su() { cluster_psql "$WORK" "$PORT" payments -Atq "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
# at_once PAYMENT SQL1 SQL2: both as merchant M from two sessions at once;
# prints how many returned an id.  Two psql processes started together may
# still run one after the other on a busy machine (a capture sent and
# answered before the void is even called, which then rightly voids the
# capture), so a superuser session holds the payment's row until both
# calls wait for it, and lets them go together.
at_once() {
	local a b h i held=0
	su -c "DO \$\$ DECLARE t timestamptz := clock_timestamp(); BEGIN
		PERFORM 1 FROM payments.payments WHERE payment_id = $1 FOR UPDATE;
		PERFORM set_config('application_name', 'at_once holds $1', false);
		LOOP
			PERFORM pg_stat_clear_snapshot();
			EXIT WHEN (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
				AND query LIKE '%(payment_id => $1%') >= 2;
			IF clock_timestamp() > t + interval '30 s' THEN
				RAISE EXCEPTION 'at_once: the two calls never both waited for payment $1';
			END IF;
			PERFORM pg_sleep(0.01);
		END LOOP; END \$\$" >"$SIMDIR/at_once.h" 2>&1 &
	h=$!
	for i in $(seq 300); do
		[ "$(su -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'at_once holds $1'")" = 1 ] && break
		sleep 0.05
	done
	q -c "$2" >"$SIMDIR/at_once.1" 2>&1 &
	a=$!
	q -c "$3" >"$SIMDIR/at_once.2" 2>&1 &
	b=$!
	wait $h || held=1
	wait $a || true; wait $b || true
	[ $held = 0 ] || { cat "$SIMDIR/at_once.h"; return; }
	cat "$SIMDIR/at_once.1" "$SIMDIR/at_once.2" | grep -cE '^[0-9]+$' || true
}
pay() {		# pay KIND AMOUNT: a card payment, waited for; its id
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_$1(amount => '$2', card => $card)")
	q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
# money PAYMENT: status|amount|captured|refunded
money() {
	q -c "SELECT status || '|' || amount || '|' || coalesce(amount_captured::text, '-') || '|' || coalesce(amount_refunded::text, '-') FROM pay_get_payment($1)"
}
# events PAYMENT: its payment.* events in order
events() {
	q -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $1 AND event_type LIKE 'payment.%'"
}
settle() { sim_ctl POST /settle | python3 -c 'import json, sys; b = json.load(sys.stdin)["batches"]; print(b[0]["batchId"] if b else "")'; }
day() { sim_ctl POST /clock "{\"advanceSeconds\":$(($1 * 86400))}" >/dev/null; }
fired() {
	[ "$(sim_ctl GET /faults | python3 -c '
import json, sys
r = json.load(sys.stdin)
r = r.get("faults", []) if isinstance(r, dict) else r
print(sum(x.get("fired", 0) for x in r))')" -ge 1 ] && echo 1
}
wait_server() {
	local i
	for i in $(seq 300); do
		su -c "SELECT 1" >/dev/null 2>&1 && [ -n "$(worker_pid)" ] && return 0
		sleep 0.1
	done
	return 1
}

# The simulator's day 6, when its batch settles, is the database's today:
# the worker's scheduled settlement check reads the settled batches up to
# now, so it learns that batch like any other.  Days 0 to 5 lie in the
# past, days 7 to 13 in the future.
day -6

###########################################################################
# Day 0
pa=$(pay authorize '100.00 USD')
is "$(money "$pa")" "requires_capture|100.00 USD|-|0.00 USD" "day 0: 100.00 authorized, nothing captured"
pb=$(pay purchase '40.00 USD')
pc=$(pay purchase '50.00 USD')
is "$(money "$pb")$(money "$pc")" "succeeded|40.00 USD|40.00 USD|0.00 USDsucceeded|50.00 USD|50.00 USD|0.00 USD" \
	"day 0: 40.00 and 50.00 charged"
is "$(sim_ledger "P$TAG$pa")/$(sim_ledger "P$TAG$pb")/$(sim_ledger "P$TAG$pc")" \
	"authorization 100.00/charge 40.00/charge 50.00" "day 0: the gateway authorized 100.00 and charged 40.00 and 50.00"

# the gateway answers only 503 (before processing) for a day: the 25.00
# purchase waits with its card sealed, through two vault key rotations
sim_ctl POST /faults '{"type":"http5xx","count":100000,"status":503,"requestType":"createTransactionRequest"}' >/dev/null
pv=$(q -c "SELECT payment_id FROM pay_purchase(amount => '25.00 USD', card => pay_card('4007000000027', 12, extract(year from now())::int + 3, '739', 'Ada Lovelace'))")
is "$(poll_value 20 fired)" 1 "day 0: the gateway answers 503"
ok "$(passed wait_sql "(SELECT status IN ('queued', 'unknown') AND attempts >= 1 FROM payments.operations WHERE merchant_id = $M AND payment_id = $pv)")" \
	"day 0: the purchase waits to be sent again after the 503"
is "$(su -c "SELECT payments._vault_rotate_key(true)" -c "SELECT payments._vault_rotate_key(true)" | tr '\n' ' ')" "t t " \
	"day 0: the vault key rotated twice while the card waits"
day 1
sim_ctl DELETE /faults >/dev/null
su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND payment_id = $pv AND status IN ('queued', 'unknown')"
is "$(q -c "SELECT status FROM pay_wait($pv, '30 s')")" succeeded "day 1: the gateway is well: the waiting purchase succeeded"
is "$(money "$pv")" "succeeded|25.00 USD|25.00 USD|0.00 USD" "day 1: 25.00 charged"
is "$(sim_ledger "P$TAG$pv")" "charge 25.00" "day 1: the gateway charged 25.00 once"
like "$(q -c "SELECT request_masked FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pv AND x.outcome = 'approved'")" \
	'"cardNumber":"XXXX0027"' "day 1: with the card that waited"
is "$(q -c "SELECT count(*) FROM payments.card_vault v JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pv")" 0 \
	"day 1: its card left the vault"
# a purchase in flight while the vault key rotates twice: the gateway
# charges it, its answer is held past the timeout; the resend inside the
# duplicate window needs the card, sealed under a key rotated away
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":5000,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pr=$(q -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
is "$(poll_value 20 fired)" 1 "day 1: a purchase is in flight, its answer held"
is "$(su -c "SELECT payments._vault_rotate_key(true)" -c "SELECT payments._vault_rotate_key(true)" | tr '\n' ' ')" "t t " \
	"day 1: the vault key rotated twice meanwhile"
is "$(q -c "SELECT status FROM pay_wait($pr, '30 s')")" succeeded "day 1: the purchase succeeded"
sim_ctl DELETE /faults >/dev/null
is "$(money "$pr")|$(sim_ledger "P$TAG$pr")" "succeeded|12.00 USD|12.00 USD|0.00 USD|charge 12.00" "day 1: 12.00 charged once"
comment "day 1: its exchanges: $(q -c "SELECT string_agg(request_type || ' ' || outcome, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id) WHERE o.merchant_id = $M AND o.payment_id = $pr")"

# a partial refund of the 50.00 before settlement waits for it (through
# the immediate stop of day 6)
ear=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pc, amount => '10.00 USD', idempotency_key => 'pc-early')")
ok "$(passed op_is "$ear" waiting_settlement)" "day 1: a partial refund of 10.00 before settlement waits for it"

###########################################################################
# Day 6: capture 60.00 of the 100.00; the server stops -m immediate while
# the capture is in flight (the gateway captured, its answer held)
day 5
sim_ctl POST /faults '{"type":"hold","count":1,"holdMs":4000,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
cop=$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pa, amount => '60.00 USD', idempotency_key => 'cap-pa')")
is "$(poll_value 20 fired)" 1 "day 6: the capture is in flight, its answer held"
is "$(q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $cop")" sending "day 6: the operation is sending"
# a second merchant whose gateway does not answer: its card payment waits,
# sealed in the vault, when the server stops
M2=$(su -c "INSERT INTO payments.merchants (name) VALUES ('lifetimes-unreachable') RETURNING merchant_id")
closed=$(free_port)
su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => 'https://127.0.0.1:$closed/xml/v1/request.api', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M2)" >/dev/null
pw=$(M=$M2 q -c "SELECT payment_id FROM pay_purchase(amount => '33.00 USD', card => $card)")
ok "$(passed wait_sql "(SELECT status = 'queued' AND last_error IS NOT NULL FROM payments.operations WHERE merchant_id = $M2 AND payment_id = $pw)")" \
	"day 6: another merchant's card payment waits for its unreachable gateway"
as_pg "$PG_BINDIR/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
sim_ctl DELETE /faults >/dev/null
cluster_start "$WORK"
ok "$(passed wait_server)" "day 6: the server restarted after an immediate stop"
ok "$(passed op_is "$cop" succeeded)" "day 6: the capture in flight was resolved: succeeded"
is "$(money "$pa")" "succeeded|100.00 USD|60.00 USD|0.00 USD" "day 6: 60.00 of 100.00 captured"
is "$(sim_ledger "P$TAG$pa")" "authorization 100.00,capture 60.00" "day 6: the gateway captured 60.00 once"
is "$(events "$pa")" "payment.pending,payment.requires_capture,payment.succeeded" "day 6: one event per transition"
# the waiting card went with the vault's key: once its gateway answers,
# the payment fails saying so, and nothing is charged
su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $M2)" >/dev/null
su -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M2 AND payment_id = $pw AND status = 'queued'"
is "$(M=$M2 q -c "SELECT status FROM pay_wait($pw, '30 s')")" failed "day 6: the card payment that waited through the stop fails"
like "$(M=$M2 q -c "SELECT decline_reason FROM pay_get_payment($pw)")" 'card data was lost before it was sent.*ask for the card again' \
	"day 6: its card was lost with the stop: ask for the card again"
is "$(sim_ledger "P$TAG$pw")|$(M=$M2 events "$pw")" "|payment.pending,payment.failed" "day 6: nothing was charged; pending then failed"
batch=$(settle)
ok "$([ -n "$batch" ] && echo 0 || echo 1)" "day 6: a batch settled"
ok "$(passed op_is "$ear" succeeded)" "day 6: after settlement the waiting refund of 10.00 went out"
is "$(money "$pc")|$(refund_ledger "$pc")" "partially_refunded|50.00 USD|50.00 USD|10.00 USD|refund 10.00;" "day 6: 10.00 of 50.00 refunded, once"
ok "$(passed wait_sql "(SELECT count(*) = 4 FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($pa, $pb, $pc, $pv) AND settlement_batch_id = '$batch' AND settled_at IS NOT NULL)")" \
	"day 6: the worker learns all four captures settled in batch $batch"

###########################################################################
# Day 7: the API key is rotated with a day's overlap
day 1
key=$(su -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $M, scopes => ARRAY['read', 'payments', 'refunds'], name => 'shop')")
kid=$(su -c "SELECT key_id FROM payments.api_keys WHERE merchant_id = $M AND name = 'shop'")
new=$(su -c "SELECT api_key FROM payments.pay_rotate_api_key($kid, overlap => '1 day')")
# with_key KEY SQL: SQL in a transaction that acts with KEY
with_key() {
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		-c "BEGIN" -c "SELECT 1 FROM payments.pay_use_api_key('$1')" -c "SET LOCAL search_path = public, payments" -c "$2" -c "COMMIT" 2>&1
}
state_of() { sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p; }
is "$(with_key "$key" "SELECT status FROM pay_get_payment($pa)" | tr '\n' ' ')" "1 succeeded " "day 7: within the overlap the old secret works"
is "$(with_key "$new" "SELECT status FROM pay_get_payment($pa)" | tr '\n' ' ')" "1 succeeded " "day 7: and the new one"
# rotated again within the overlap: the first secret goes, the second
# keeps its overlap
new2=$(su -c "SELECT api_key FROM payments.pay_rotate_api_key($kid, overlap => '1 day')")
is "$(with_key "$key" "SELECT status FROM pay_get_payment($pa)" | state_of)" PT401 "day 7: rotated again, the first secret is refused"
is "$(with_key "$new2" "SELECT status FROM pay_get_payment($pa)" | tr '\n' ' ')" "1 succeeded " "day 7: the newest works"
key=$new; new=$new2
# a day later (the overlap has passed)
su -c "UPDATE payments.api_keys SET previous_valid_until = now() - interval '1 second' WHERE merchant_id = $M AND key_id = $kid"
is "$(with_key "$key" "SELECT status FROM pay_get_payment($pa)" | state_of)" PT401 "day 8: after the overlap the old secret is refused"
is "$(with_key "$key" "SELECT operation_id FROM pay_refund(payment_id => $pa, amount => '1.00 USD')" | state_of)" PT401 \
	"day 8: a refund with the old secret is refused"
is "$(money "$pa")" "succeeded|100.00 USD|60.00 USD|0.00 USD" "day 8: and refunded nothing"

###########################################################################
# Day 13: two partial refunds from two sessions at once, with the new key
day 6
with_key "$new" "SELECT operation_id FROM pay_refund(payment_id => $pa, amount => '25.00 USD')" >"$SIMDIR/r1" &
r1=$!
with_key "$new" "SELECT operation_id FROM pay_refund(payment_id => $pa, amount => '35.00 USD')" >"$SIMDIR/r2" &
r2=$!
wait $r1 || true; wait $r2 || true
o1=$(sed -n 2p "$SIMDIR/r1"); o2=$(sed -n 2p "$SIMDIR/r2")
ok "$([[ "$o1" =~ ^[0-9]+$ && "$o2" =~ ^[0-9]+$ ]] && echo 0 || echo 1)" "day 13: both refunds accepted at once ($o1, $o2)"
ok "$(passed op_is "${o1:-0}" succeeded)" "day 13: the 25.00 refund succeeded"
ok "$(passed op_is "${o2:-0}" succeeded)" "day 13: the 35.00 refund succeeded"
is "$(money "$pa")" "refunded|100.00 USD|60.00 USD|60.00 USD" "day 13: all 60.00 captured is refunded"
is "$(refund_ledger "$pa" | tr ';' '\n' | sort | tr '\n' ';')" ";refund 25.00;refund 35.00;" "day 13: the gateway refunded 25.00 and 35.00, once each"
is "$(sim_ledger "P$TAG$pa")" "authorization 100.00,capture 60.00" "day 13: the capture itself was not voided"
is "$(q -c "SELECT via_void FROM pay_payment_operations($pa) WHERE kind = 'refund' ORDER BY operation_id" | tr '\n' ' ')" "f f " \
	"day 13: both as refunds of the settled capture"
is "$(with_key "$new" "SELECT operation_id FROM pay_refund(payment_id => $pa, amount => '0.01 USD')" | state_of)" 22Y20 \
	"day 13: one cent more is refused"
is "$(events "$pa")" "payment.pending,payment.requires_capture,payment.succeeded,payment.partially_refunded,payment.refunded" \
	"day 13: one event per transition"
like "$(q -c "SELECT string_agg(data ->> 'amount_refunded', ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M AND payment_id = $pa AND event_type LIKE 'payment.%refunded'")" \
	'^(25|35)\.00 USD,60\.00 USD$' "day 13: the refund events carry 25.00 then 60.00 (or 35.00 then 60.00)"

# the early refund and the capture replayed with their keys a week later:
# the same operations, nothing sent again
is "$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pc, amount => '10.00 USD', idempotency_key => 'pc-early')")" "$ear" \
	"day 13: the day-1 refund replayed with its key is the same operation"
is "$(q -c "SELECT operation_id FROM pay_capture(payment_id => $pa, amount => '60.00 USD', idempotency_key => 'cap-pa')")" "$cop" \
	"day 13: the day-6 capture replayed with its key is the same operation"
is "$(sqlstate_of "SELECT pay_refund(payment_id => $pc, amount => '11.00 USD', idempotency_key => 'pc-early')")" PT409 \
	"day 13: the refund's key with another amount is a conflict"

# two sessions refund 30.00 each of the 40.00 left at once: one is refused
is "$(at_once "$pc" "SELECT operation_id FROM pay_refund(payment_id => $pc, amount => '30.00 USD')" "SELECT operation_id FROM pay_refund(payment_id => $pc, amount => '30.00 USD')")" 1 "day 13: of two concurrent refunds of 30.00 of 50.00, one is accepted"
ok "$(passed wait_sql "(SELECT bool_and(status = 'succeeded') FROM pay_payment_operations($pc) WHERE kind = 'refund')")" "day 13: and succeeded"
is "$(money "$pc")" "partially_refunded|50.00 USD|50.00 USD|40.00 USD" "day 13: 40.00 of 50.00 refunded"
is "$(refund_ledger "$pc")" "refund 10.00;refund 30.00;" "day 13: the gateway refunded 10.00 and 30.00, once each"

# the last 10.00: the gateway refunds, its answer is lost (HTTP 500): the
# resend finds the refund made, counted once
sim_ctl POST /faults '{"type":"http5xx","count":1,"status":500,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
lop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pc, amount => '10.00 USD')")
ok "$(passed op_is "$lop" succeeded)" "day 13: a refund whose answer was lost succeeded"
sim_ctl DELETE /faults >/dev/null
is "$(money "$pc")" "refunded|50.00 USD|50.00 USD|50.00 USD" "day 13: all 50.00 refunded"
is "$(refund_ledger "$pc")" "refund 10.00;refund 30.00;refund 10.00;" "day 13: the gateway refunded 10.00, 30.00 and 10.00, once each"
is "$(events "$pc")" "payment.pending,payment.succeeded,payment.partially_refunded,payment.partially_refunded,payment.refunded" \
	"day 13: one event per refund"

# a void of the 40.00 purchase, known settled on day 6: refused at call
# time, with a hint to refund; the refund goes through
like "$(as_merchant -v VERBOSITY=verbose -c "SELECT pay_void(payment_id => $pb)" 2>&1 | tr '\n' ' ')" \
	'22Y20.*HINT: +A settled payment can only be refunded: use pay_refund' "day 13: a void of the settled purchase is refused: refund it"
rop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pb)")
ok "$(passed op_is "$rop" succeeded)" "day 13: the refund succeeds"
is "$(money "$pb")" "refunded|40.00 USD|40.00 USD|40.00 USD" "day 13: 40.00 refunded"
is "$(sim_ledger "P$TAG$pb")" "charge 40.00" "day 13: the gateway voided nothing"
is "$(refund_ledger "$pb")" "refund 40.00;" "day 13: the gateway refunded 40.00 once"
is "$(events "$pb")" "payment.pending,payment.succeeded,payment.refunded" "day 13: one event per transition"

# a purchase of 20.00 on day 13 settles in a batch the worker's schedule
# has not read (the simulator's day 13 lies ahead of the database's now):
# its void is accepted, then fails at the worker, which asked the gateway,
# asking for a refund; the payment is unchanged and now known settled
pd=$(pay purchase '20.00 USD')
batch2=$(settle)
vop=$(q -c "SELECT operation_id FROM pay_void(payment_id => $pd)")
ok "$(passed op_is "$vop" failed)" "day 13: a void of a purchase the database does not know settled fails"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pd) WHERE operation_id = $vop")" \
	"settled at the gateway in batch $batch2.*refund it instead" "day 13: saying it settled in batch $batch2: refund it instead"
is "$(money "$pd")" "succeeded|20.00 USD|20.00 USD|0.00 USD" "day 13: the payment is unchanged"
is "$(q -c "SELECT settlement_batch_id || '|' || (settled_at IS NOT NULL) FROM pay_get_payment($pd)")" "$batch2|true" \
	"day 13: and known settled in batch $batch2"
is "$(sqlstate_of "SELECT pay_void(payment_id => $pd)")" 22Y20 "day 13: a second void is refused at call time"
rop=$(q -c "SELECT operation_id FROM pay_refund(payment_id => $pd, amount => '20.00 USD')")
ok "$(passed op_is "$rop" succeeded)" "day 13: the refund succeeds"
is "$(money "$pd")" "refunded|20.00 USD|20.00 USD|20.00 USD" "day 13: 20.00 refunded"
is "$(sim_ledger "P$TAG$pd")/$(refund_ledger "$pd")" "charge 20.00/refund 20.00;" "day 13: the gateway charged 20.00, voided nothing, refunded 20.00 once"
is "$(events "$pd")" "payment.pending,payment.succeeded,payment.refunded" "day 13: one event per transition (none for the failed void)"

# races between sessions on day 13: a void and a full refund of an
# unsettled purchase at once; a capture and a void of an authorization
pe=$(pay purchase '15.00 USD')
is "$(at_once "$pe" "SELECT operation_id FROM pay_void(payment_id => $pe)" "SELECT operation_id FROM pay_refund(payment_id => $pe)")" 1 "day 13: of a void and a full refund at once, one is accepted"
ok "$(passed wait_sql "(SELECT bool_and(status = 'succeeded') FROM pay_payment_operations($pe) WHERE kind <> 'purchase')")" "day 13: and succeeded"
like "$(money "$pe")" '^(canceled\|15\.00 USD\|0\.00 USD\|0\.00 USD|refunded\|15\.00 USD\|15\.00 USD\|15\.00 USD)$' "day 13: the payment is canceled or refunded, to the cent"
is "$(sim_ledger "P$TAG$pe")" "charge 15.00,void 0.00" "day 13: the gateway voided the charge once"
pf=$(pay authorize '16.00 USD')
is "$(at_once "$pf" "SELECT operation_id FROM pay_capture(payment_id => $pf)" "SELECT operation_id FROM pay_void(payment_id => $pf)")" 1 "day 13: of a capture and a void at once, one is accepted"
ok "$(passed wait_sql "(SELECT bool_and(status = 'succeeded') FROM pay_payment_operations($pf) WHERE kind <> 'authorize')")" "day 13: and succeeded"
like "$(money "$pf")|$(sim_ledger "P$TAG$pf")" '^(canceled\|16\.00 USD\|-\|0\.00 USD\|authorization 16\.00,void 0\.00|succeeded\|16\.00 USD\|16\.00 USD\|0\.00 USD\|authorization 16\.00,capture 16\.00)$' \
	"day 13: captured or voided, in the database as at the gateway"
comment "day 13 races: $(money "$pe") $(sim_ledger "P$TAG$pe") / $(money "$pf") $(sim_ledger "P$TAG$pf")"

# every payment's last event says its final state, amounts to the cent
is "$(q -c "SELECT count(*) FROM payments.payments p WHERE p.merchant_id = $M AND (SELECT e.event_type || '|' || coalesce(e.data ->> 'amount_captured', '-') || '|' || coalesce(e.data ->> 'amount_refunded', '-')
	FROM payments.events e WHERE e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id AND e.event_type LIKE 'payment.%' ORDER BY e.event_id DESC LIMIT 1)
	IS DISTINCT FROM 'payment.' || p.status || '|' || coalesce(p.amount_captured::text, '-') || '|' || coalesce(p.amount_refunded::text, '-')")" 0 \
	"every payment's last event carries its status, amount captured and refunded"
comment "$(q -c "SELECT string_agg(p.payment_id || ':' || p.status || '/' || (SELECT e.event_type || '|' || coalesce(e.data ->> 'amount_captured', '-') || '|' || coalesce(e.data ->> 'amount_refunded', '-')
	FROM payments.events e WHERE e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id AND e.event_type LIKE 'payment.%' ORDER BY e.event_id DESC LIMIT 1), ' ') FROM payments.payments p WHERE p.merchant_id = $M")"

# nothing charged twice, nothing left in flight
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status NOT IN ('succeeded', 'failed')")" 0 \
	"every operation is final"
is "$(q -c "SELECT string_agg(kind || ' ' || status, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $M")" \
	"authorize succeeded,purchase succeeded,purchase succeeded,purchase succeeded,purchase succeeded,refund succeeded,capture succeeded,refund succeeded,refund succeeded,refund succeeded,refund succeeded,refund succeeded,purchase succeeded,void failed,refund succeeded,purchase succeeded,$(q -c "SELECT kind FROM payments.operations WHERE merchant_id = $M AND payment_id = $pe AND kind <> 'purchase'") succeeded,authorize succeeded,$(q -c "SELECT kind FROM payments.operations WHERE merchant_id = $M AND payment_id = $pf AND kind <> 'authorize'") succeeded" \
	"the operations: nothing more was made or sent"
is "$(q -c "SELECT count(*) FROM (SELECT payment_id, event_type FROM payments.events WHERE merchant_id = $M AND event_type LIKE 'payment.%' AND event_type <> 'payment.partially_refunded' GROUP BY 1, 2 HAVING count(*) > 1) d")" 0 \
	"no payment event written twice"

###########################################################################
# A payment of the released 0.1.0 (authorized, 60.00 of 100.00 captured,
# settled under it) refunded a week after ALTER EXTENSION payments UPDATE,
# in two parts from two sessions at once (as live_upgrade.sh installs it)
g() { git -c safe.directory='*' -C "$REPO_ROOT" "$@"; }
moved=$(g log --format=%H -S"default_version = '0.1.0'" -- payments.control | sed -n 1p)
[ -n "$moved" ] || die "no commit of payments.control names default_version 0.1.0 (the 0.1.0 part needs the git history)"
PGC="${PG_BINDIR#"$WORK/pg"}/pg_config"
mkdir -p "$UP/src-0.1.0"
as_root chown "$PG_OS_USER" "$UP"
g archive "$moved^" | tar -x -C "$UP/src-0.1.0"
make -C "$UP/src-0.1.0" -s -j"$(nproc)" PG_CONFIG="$PGC" PG_CFLAGS="-Wall -Wextra" >"$UP/build.log" 2>&1 || { cat "$UP/build.log" >&2; die "0.1.0 did not build"; }
UP_BINDIR=$(private_pg_tree "$UP/pg" "$PGC")
as_root make -C "$UP/src-0.1.0" -s install PG_CONFIG="$PGC" DESTDIR="$UP/pg" >/dev/null
UPPORT=$(free_port)
MAIN_BINDIR=$PG_BINDIR
PG_BINDIR=$UP_BINDIR
cluster_init "$UP" "$UPPORT" "fsync = off" "synchronous_commit = off" "full_page_writes = off"
cluster_start "$UP"
uq() { cluster_psql "$UP" "$UPPORT" "$@"; }
uq postgres -qc 'CREATE DATABASE payments'
uq payments -qc 'CREATE EXTENSION payments'
is "$(uq payments -Atc "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.1.0 "0.1.0: a cluster runs the released 0.1.0"
U=$(uq payments -Atc "INSERT INTO payments.merchants (name) VALUES ('lifetimes-0.1.0') RETURNING merchant_id")
uq payments -qc "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 5000, merchant_id => $U)" >/dev/null
UTAG=$(uq payments -Atc "SELECT payments._invoice_tag()")
uqm() { uq payments -At -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$U'" "$@"; }
umoney() { uqm -c "SELECT status || '|' || amount || '|' || coalesce(amount_captured::text, '-') || '|' || coalesce(amount_refunded::text, '-') FROM pay_get_payment($1)"; }
pu=$(uqm -c "SELECT payment_id FROM pay_authorize(amount => '100.00 USD', card => $card)")
uqm -c "SELECT status FROM pay_wait($pu, '20 s')" >/dev/null
uqm -c "SELECT pay_capture(payment_id => $pu, amount => '60.00 USD')" >/dev/null
uqm -c "SELECT status FROM pay_wait($pu, '20 s')" >/dev/null
is "$(umoney "$pu")" "succeeded|100.00 USD|60.00 USD|0.00 USD" "0.1.0: 60.00 of 100.00 captured"
is "$(sim_ledger "P$UTAG$pu")" "authorization 100.00,capture 60.00" "0.1.0: the gateway authorized 100.00 and captured 60.00"
settle >/dev/null
# a refund of 5.00 under 0.1.0 after the settlement (acceptance testing
# saw these fail): whatever 0.1.0 made of it, the database counts what the
# gateway refunded
uo=$(uqm -c "SELECT operation_id FROM pay_refund(payment_id => $pu, amount => '5.00 USD')")
ufinal() { [ "$(uqm -c "SELECT status IN ('succeeded', 'failed') FROM pay_payment_operations($pu) WHERE operation_id = $uo")" = t ] && echo yes; }
# 0.1.0 sends it once its worker has learned the settlement, on its own
# schedule: on a busy machine that may come only after the update, which
# must then finish it; either way it is counted once
poll_value 30 ufinal >/dev/null
u0=$(uqm -c "SELECT status FROM pay_payment_operations($pu) WHERE operation_id = $uo")
ok "$([ -n "$u0" ] && echo 0 || echo 1)" "0.1.0: a refund of 5.00 after settlement was accepted ($u0)"
comment "0.1.0: the refund of 5.00 after settlement: $u0, $(umoney "$pu"), gateway: $(sim_ledger "R$UTAG$uo")"
# the update: stop, install this build, start, ALTER EXTENSION payments UPDATE
cluster_stop "$UP"
as_root make -C "$REPO_ROOT" -s install PG_CONFIG="$PGC" DESTDIR="$UP/pg" >/dev/null
cluster_start "$UP"
uq payments -qc 'ALTER EXTENSION payments UPDATE'
is "$(uq payments -Atc "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.2.0 "0.2.0: updated"
is "$(poll_value 60 ufinal)" yes "0.2.0: the refund of 5.00 made under 0.1.0 reached a final state (was: $u0)"
u0=$(uqm -c "SELECT status FROM pay_payment_operations($pu) WHERE operation_id = $uo")
uref=$(uqm -c "SELECT amount_refunded FROM pay_get_payment($pu)")
is "$uref|$([ "$u0" = succeeded ] && sim_ledger "R$UTAG$uo")" "$([ "$u0" = succeeded ] && echo '5.00 USD|refund 5.00' || echo '0.00 USD|')" \
	"0.2.0: amount_refunded is what the gateway refunded for the 0.1.0 refund"
rest=$(uqm -c "SELECT '60.00 USD'::pay_amount - '25.00 USD'::pay_amount - amount_refunded FROM pay_get_payment($pu)")
day 7
uqm -c "SELECT operation_id FROM pay_refund(payment_id => $pu, amount => '25.00 USD')" >"$UP/r1" 2>&1 &
r1=$!
uqm -c "SELECT operation_id FROM pay_refund(payment_id => $pu, amount => '$rest')" >"$UP/r2" 2>&1 &
r2=$!
wait $r1 || true; wait $r2 || true
u1=$(sed -n 1p "$UP/r1"); u2=$(sed -n 1p "$UP/r2")
ok "$([[ "$u1" =~ ^[0-9]+$ && "$u2" =~ ^[0-9]+$ ]] && echo 0 || echo 1)" "0.2.0, a week later: both partial refunds accepted at once ($u1, $u2)"
urefunded() { [ "$(umoney "$pu")" = "refunded|100.00 USD|60.00 USD|60.00 USD" ] && echo yes; }
is "$(poll_value 30 urefunded)" yes "0.2.0: the 0.1.0 payment is refunded, 60.00 of the 60.00 captured"
is "$(uqm -c "SELECT string_agg(kind || ' ' || status || ' ' || via_void, ',' ORDER BY operation_id) FROM pay_payment_operations($pu) WHERE operation_id <> $uo")" \
	"authorize succeeded false,capture succeeded false,refund succeeded false,refund succeeded false" "0.2.0: two refunds (not voids) succeeded"
is "$(sim_ledger "R$UTAG${u1:-0}");$(sim_ledger "R$UTAG${u2:-0}")" "refund 25.00;refund ${rest% USD}" "0.2.0: the gateway refunded 25.00 and ${rest% USD}, once each"
is "$(sim_ledger "P$UTAG$pu")" "authorization 100.00,capture 60.00" "0.2.0: the capture was not voided"
like "$(uqm -v VERBOSITY=verbose -c "SELECT pay_refund(payment_id => $pu, amount => '0.01 USD')" 2>&1 || true)" '22Y20' "0.2.0: one cent more is refused"
is "$(uqm -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $U AND payment_id = $pu AND event_type IN ('payment.partially_refunded', 'payment.refunded')")" \
	"$([ "$u0" = succeeded ] && echo payment.partially_refunded,)payment.partially_refunded,payment.refunded" "0.2.0: one event per refund transition"
cluster_stop "$UP"
PG_BINDIR=$MAIN_BINDIR; UP_BINDIR=

tap_done
