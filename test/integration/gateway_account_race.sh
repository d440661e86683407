#!/usr/bin/env bash
# An operation is only ever sent to, or asked of, the gateway account it
# was first sent to.
#
# 1. The race pay_configure_gateway's refusal (gateway_account_change.sh)
#    cannot see: a test trigger holds the worker's claim of a purchase
#    (it read the old configuration, its "sending" not committed yet);
#    meanwhile the merchant moves to another account (another login):
#    taken, nothing looks sent.  The claim goes on and sends with the old
#    login; the gateway processes it and the reply is lost (unknown).
#    Before: its resend went to the new account, which charged it again.
#    Now: one charge; the operation is held as a dead letter saying the
#    account changed, and a retry while the other account is configured is
#    held again.  Back to the account it was sent to (taken: what is held
#    was sent there), the retried dead letter resolves there: charged once.
# 2. A refund of a payment made at the old account, queued in the
#    transaction that moves the merchant to another one, is held the same
#    way, never sent to the new account (which does not know the payment's
#    transaction); one asked for after the move is refused at the call
#    (22Y20; gateway_account_change.sh section 3).
# 3. The race of 1 with a reply that holds the purchase for review: the
#    review check never asks the other account about it; back at the
#    account it was made at (taken: it was made there), the check learns
#    that the gateway approved it.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-account-race"
q() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
ungate() {
	q -c "DROP TRIGGER IF EXISTS zz_test_gate_claim ON payments.operations" \
		-c "DROP FUNCTION IF EXISTS public.test_gate_claim()" \
		-c "DROP TABLE IF EXISTS public.test_claim_go" -c "DROP SEQUENCE IF EXISTS public.test_claim_seen" >/dev/null
}
cleanup() {
	q -c "INSERT INTO public.test_claim_go VALUES (true)" >/dev/null 2>&1 || true
	ungate 2>/dev/null || true
	q -c "ALTER SYSTEM RESET payments.settlement_check_interval" -c "SELECT pg_reload_conf()" >/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
Y=$(( $(date +%Y) + 2 ))
card="pay_card('4111111111111111', 12, $Y, '123')"
merchant_on_simulator hg-race 1000
sim_ctl POST /merchants '{"name":"hgLogin2","transactionKey":"hgKey2hgKey2hgK2"}' >/dev/null
reconf() { move_account "$M" "$1" "$2"; }	# reconf LOGIN KEY: merchant M
# charges of an invoice, by the simulator's merchant (login) that took them
charges_by() {
	sim_ctl GET /ledger | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d["ledger"] if isinstance(d,dict) else d; print(sorted(r["merchant"] for r in d if r.get("invoiceNumber")==sys.argv[1] and r["kind"]==sys.argv[2]))' "$1" "$2"
}
op_of() { q -c "SELECT operation_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $1 AND kind = '$2'"; }
op_status() { q -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $1"; }
# settled OP: its status once it is neither queued, sending nor unknown
# (a wait for a resend is cut short: it is made due at once)
settled() {
	local s
	s=$(op_status "$1")
	case "$s" in
		queued|sending|unknown)
			q -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $1 AND status IN ('queued', 'unknown') AND next_attempt_at > now()" \
				-c "SELECT payments._wake_at_commit()" >/dev/null
			return 1 ;;
	esac
	echo "$s"
}

# gate: a test trigger holds the worker's claim of merchant M's next
# operation (it polls for a go); claim_held says it holds it
gate() {
	q -c "CREATE SEQUENCE public.test_claim_seen" -c "CREATE TABLE public.test_claim_go (go boolean)" \
		-c "CREATE FUNCTION public.test_gate_claim() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	PERFORM nextval('public.test_claim_seen');	-- seen at once: not transactional
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT 1 FROM public.test_claim_go);
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN NEW;
END \$\$" \
		-c "CREATE TRIGGER zz_test_gate_claim BEFORE UPDATE ON payments.operations FOR EACH ROW
		WHEN (NEW.merchant_id = $M AND OLD.status = 'queued' AND NEW.status = 'sending')
		EXECUTE FUNCTION public.test_gate_claim()" >/dev/null
}
claim_held() { [ "$(q -c "SELECT is_called FROM public.test_claim_seen")" = t ] && echo yes; }

###########################################################################
# 1. The claim holds until the merchant has moved to the other account.
gate
# the gateway processes the purchase, and its reply is lost
sim_ctl POST /faults '{"type":"reset","count":1,"process":true,"requestType":"createTransactionRequest"}' >/dev/null
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '31.00 USD', card => $card)")
op=$(op_of "$pid" purchase)
is "$(poll_value 20 claim_held)" yes "the worker's claim of the purchase is held before its commit"
is "$(reconf hgLogin2 hgKey2hgKey2hgK2)" "" "meanwhile another account is taken: nothing looks sent"
q -c "INSERT INTO public.test_claim_go VALUES (true)" >/dev/null
ungate
st=$(poll_value 40 settled "$op")
comment "op: $(q -c "SELECT concat_ws(' / ', status, attempts, never_sent, last_error) FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")"
comment "charges: $(charges_by P$TAG$pid charge)"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "the purchase sent with the old login is charged once (not again at the new account)"
is "$(charges_by P$TAG$pid charge)" "['$SIM_LOGIN']" "its one charge is at the account it was sent to"
is "$st" dead "it is held as a dead letter"
like "$(q -c "SELECT last_error FROM payments.operations WHERE merchant_id = $M AND operation_id = $op")" \
	"^held: the gateway account changed after this operation was sent .*pay_retry_dead_letter" "its last_error says why and what to do"
is "$(as_merchant -c "SELECT status FROM pay_get_payment($pid)")" unknown "its payment stays unknown"

# retried while the other account is configured: held again, nothing sent
q -c "SELECT payments.pay_retry_dead_letter($M, $op)" >/dev/null
is "$(poll_value 20 settled "$op")" dead "retried while the other account is configured, it is held again"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "and not charged again"

# back to the account it was sent to: taken, and the retry resolves there
is "$(reconf "$SIM_LOGIN" "$SIM_KEY")" "" "the account the held operation was sent to can be configured again"
q -c "SELECT payments.pay_retry_dead_letter($M, $op)" >/dev/null
is "$(poll_value 40 settled "$op")" succeeded "retried there, it resolves"
is "$(as_merchant -c "SELECT status FROM pay_get_payment($pid)")" succeeded "its payment succeeded"
is "$(sim_ledger_count P$TAG$pid charge)" 1 "charged once in all"

###########################################################################
# 2. A refund of a payment made at the old account, queued as the merchant
#    moves to another (in the transaction that moves it), and one after.
pid2=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '32.00 USD', card => $card)")
is "$(as_merchant -c "SELECT status FROM pay_wait($pid2, '20 s')")" succeeded "a payment at the first account"
rop=$(as_merchant -c "BEGIN" -c "SELECT operation_id FROM pay_refund($pid2, amount => '10.00 USD')" \
	-c "SELECT payments.pay_configure_gateway(api_login_id => 'hgLogin2', transaction_key => 'hgKey2hgKey2hgK2', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $M)" \
	-c "COMMIT" | grep -xE '[0-9]+' | head -1)
is "$(q -c "SELECT payments._gateway_account(api_login_id) FROM payments.gateway_config WHERE merchant_id = $M")" \
	"$(q -c "SELECT payments._gateway_account('hgLogin2')")" "the merchant moves to the other account (nothing unresolved) with a refund queued"
is "$(poll_value 20 settled "$rop")" dead "its refund is held, not sent to the other account"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $rop")" 0 "no request of the refund left"
like "$(q -c "SELECT last_error FROM payments.operations WHERE merchant_id = $M AND operation_id = $rop")" \
	"^held: the gateway account changed" "its last_error says why"
is "$(sqlstate_of "SELECT pay_refund($pid2, amount => '1.00 USD')")" 22Y20 "a refund asked for after the move is refused at the call"


###########################################################################
# 3. The same race with a reply that holds the purchase for review: the
#    review check never asks the other account about it (a witness
#    merchant's held payment shows two rounds of checks went by); back at
#    the account it was made at (taken: it was made there), the check finds
#    what the gateway decided.
q -c "ALTER SYSTEM SET payments.settlement_check_interval = 1" -c "SELECT pg_reload_conf()" >/dev/null
merchant_on_simulator hg-race-witness 1000
W=$M
wpid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '9252.00 USD', card => $card)")
is "$(as_merchant -c "SELECT status FROM pay_wait($wpid, '20 s')")" in_review "a witness payment held for review"
merchant_on_simulator hg-race-review 1000
gate
pid3=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '9252.00 USD', card => $card)")
is "$(poll_value 20 claim_held)" yes "3: the claim of a purchase is held before its commit"
is "$(reconf hgLogin2 hgKey2hgKey2hgK2)" "" "3: meanwhile another account is taken"
q -c "INSERT INTO public.test_claim_go VALUES (true)" >/dev/null
ungate
is "$(as_merchant -c "SELECT status FROM pay_wait($pid3, '20 s')")" in_review "3: the gateway holds it for review"
t0=$(q -c "SELECT clock_timestamp()")
checks_after() { # checks_after MERCHANT: the review checks of MERCHANT's since t0, if two or more
	q -c "SELECT nullif(count(*), 0) FROM payments.gateway_exchanges WHERE merchant_id = $1
		AND request_type = 'getTransactionDetailsRequest' AND started_at > '$t0' HAVING count(*) >= ${2:-1}"
}
ok "$([ -n "$(poll_value 30 checks_after "$W" 2)" ]; echo $?)" "3: two rounds of review checks went by"
is "$(checks_after "$M")" "" "3: none asked the other account about the held purchase"
is "$(reconf "$SIM_LOGIN" "$SIM_KEY")" "" "3: the account it was made at can be configured again"
sim_api() { curl -sS -H 'Content-Type: application/json' -d "$1" "$SIM_API" >/dev/null; }
sim_api "{\"updateHeldTransactionRequest\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},\"heldTransactionRequest\":{\"action\":\"approve\",\"refTransId\":\"$(as_merchant -c "SELECT gateway_trans_id FROM pay_get_payment($pid3)")\"}}}"
succeeded() { [ "$(as_merchant -c "SELECT status FROM pay_get_payment($pid3)")" = succeeded ] && echo yes; }
is "$(poll_value 30 succeeded)" yes "3: approved there, the review check finds it: succeeded"
comment "ledger: $(sim_ledger P$TAG$pid3)"
is "$(sim_ctl GET '/ledger?merchant=hgLogin2' | grep -c "P$TAG$pid3" || true)" 0 "3: nothing of it at the other account"

tap_done
