#!/usr/bin/env bash
# Settlement the worker learns late, or never from the batch lists, and
# refunds long after it; and a gateway outage while refunds queue.
#
# 1. Captures whose batch the worker's scheduled check never sees (the
#    batch settles while the simulator's clock is a day ahead, outside
#    every range the check reads, which ends now: as for a worker stopped
#    for weeks, or a database restored from a backup taken before the
#    settlement was learned).  The simulator's clock then moves 41, 91,
#    171 and 191 days past the capture: a refund asks the gateway
#    (getTransactionDetails), finds the capture settled and goes out, up to
#    the refund window (180 days); past it the gateway's refusal (reason
#    54) is recorded, its last_error naming the settlement time and the
#    window, and the payment stays as it was.  A partial refund
#    made before settlement waits, and goes out once it asks again.
#    Money agrees to the cent in rows, events and the simulator's ledger.
# 2. The cost of the scheduled check for a capture it can never find in
#    the batch lists (voided at the gateway by hand, say): each round reads
#    only the batches settled since the last complete scan, not every
#    batch since the capture over and over.
# 3. An outage: the gateway answers 503 to everything for a while as
#    refunds queue; afterwards each goes out once, none is a dead letter,
#    and the worker's attempts during the outage stay paced.
# 4. A refund whose question alone keeps failing backs off by how long it
#    has waited, its attempts not counted.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-settlement-late"
cleanup() {
	cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"

merchant_on_simulator settlement_late

q() { as_merchant "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
pay() {		# pay AMOUNT: a purchase, waited for; its id
	local pid
	pid=$(q -c "SELECT payment_id FROM pay_purchase(amount => '$1 USD', card => $card)")
	q -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
refund() {	# refund PAYMENT_ID [AMOUNT]: the refund operation's id
	q -c "SELECT operation_id FROM pay_refund(payment_id => $1${2:+, amount => '$2 USD'})"
}
settle() { sim_ctl POST /settle | python3 -c 'import json, sys; b = json.load(sys.stdin)["batches"]; print(b[0]["batchId"] if b else "")'; }
clock() { sim_ctl POST /clock "{\"advanceSeconds\":$1}" >/dev/null; }
days() { clock $(($1 * 86400)); }
AUTH="\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"}"
trans_of() { q -c "SELECT gateway_trans_id FROM pay_get_payment($1)"; }
exchanges_of() {	# the request types an operation sent, in order
	q -c "SELECT string_agg(request_type, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $1"
}
# money PAYMENT_ID: "status|amount_refunded|its succeeded refunds' amounts|
# amount_refunded of its last payment event"
money() {
	q -c "SELECT p.status || '|' || p.amount_refunded || '|' ||
		coalesce((SELECT string_agg(o.amount::text, '+' ORDER BY o.operation_id) FROM payments.operations o WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id AND o.kind = 'refund' AND o.status = 'succeeded'), '-') || '|' ||
		coalesce((SELECT e.data ->> 'amount_refunded' FROM payments.events e WHERE e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id AND e.event_type LIKE 'payment.%refunded' ORDER BY e.event_id DESC LIMIT 1), '-')
		FROM pay_get_payment($1) p"
}
# check_requests TYPE: this merchant's settlement-check requests of TYPE so far
check_requests() {
	q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IS NULL AND request_type = '$1'"
}

###########################################################################
# 1. Refunds of captures settled long before the worker learns it.
pa=$(pay 41.00); pb=$(pay 91.00); pc=$(pay 171.00); pd=$(pay 191.00); pe=$(pay 50.00)
# a partial refund before settlement waits for it
we=$(refund "$pe" 20.00)
ok "$(passed op_is "$we" waiting_settlement)" "1: a partial refund of an unsettled capture waits"
days 1; batch=$(settle)
ok "$([ -n "$batch" ]; echo $?)" "1: the gateway settled them in one batch (a day ahead of the worker's clock)"
sleep 2.5	# rounds of the scheduled check
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($pa, $pb, $pc, $pd, $pe) AND settled_at IS NULL")" 5 \
	"1: the scheduled check did not see them settle"

days 40
op=$(refund "$pa")
ok "$(passed op_is "$op" succeeded)" "1: 40 days after settlement a full refund succeeds"
is "$(exchanges_of "$op")" "getTransactionDetailsRequest,createTransactionRequest" "1: it asked the gateway, then sent the refund"
is "$(q -c "SELECT via_void FROM pay_payment_operations($pa) WHERE operation_id = $op")" f "1: a refund, not a void"
is "$(q -c "SELECT settlement_batch_id FROM pay_get_payment($pa)")" "$batch" "1: the payment learned its batch"
is "$(money "$pa")" "refunded|41.00 USD|41.00 USD|41.00 USD" "1: row, operations and event agree: 41.00 refunded"
is "$(refund_ledger "$pa")" "refund 41.00;" "1: the gateway refunded 41.00"

# the waiting refund: its six hours are up (the database's clock does not
# move with the simulator's), it asks again and goes out as a refund
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $we AND status = 'waiting_settlement'"
ok "$(passed op_is "$we" succeeded)" "1: the waiting partial refund goes out once asked again"
is "$(money "$pe")" "partially_refunded|20.00 USD|20.00 USD|20.00 USD" "1: 20.00 of 50.00 refunded, in row, operations and event"
is "$(refund_ledger "$pe")" "refund 20.00;" "1: the gateway refunded 20.00 once"

days 50
op=$(refund "$pb")
ok "$(passed op_is "$op" succeeded)" "1: 90 days after settlement a full refund succeeds"
is "$(money "$pb")" "refunded|91.00 USD|91.00 USD|91.00 USD" "1: 91.00 refunded"
is "$(refund_ledger "$pb")" "refund 91.00;" "1: the gateway refunded 91.00"

days 80
op=$(refund "$pc" 71.00)
ok "$(passed op_is "$op" succeeded)" "1: 170 days after settlement a partial refund succeeds"
op2=$(refund "$pc")
ok "$(passed op_is "$op2" succeeded)" "1: and a refund of the rest"
is "$(money "$pc")" "refunded|171.00 USD|71.00 USD+100.00 USD|171.00 USD" "1: 171.00 refunded"
is "$(refund_ledger "$pc")" "refund 71.00;refund 100.00;" "1: the gateway refunded 71.00 and 100.00"
op=$(refund "$pe" 30.00)
ok "$(passed op_is "$op" succeeded)" "1: the rest of the partly refunded payment too"
is "$(money "$pe")" "refunded|50.00 USD|20.00 USD+30.00 USD|50.00 USD" "1: 50.00 refunded"

days 20
op=$(refund "$pd")
ok "$(passed op_is "$op" failed)" "1: 190 days after settlement the refund fails, not waits"
is "$(q -c "SELECT reason_code FROM pay_payment_operations($pd) WHERE operation_id = $op")" 54 "1: with the gateway's reason 54"
like "$(q -c "SELECT last_error FROM pay_payment_operations($pd) WHERE operation_id = $op")" '180 days' \
	"1: its recorded reason names the refund window"
is "$(money "$pd")" "succeeded|0.00 USD|-|-" "1: nothing refunded, no refund event"
is "$(refund_ledger "$pd")" ";" "1: the gateway refunded nothing"
is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status IN ('queued', 'sending', 'unknown', 'waiting_settlement', 'dead')")" 0 \
	"1: nothing is left waiting or queued"
days -191

###########################################################################
# 2. A capture the batch lists never show (voided at the gateway by hand),
#    made three days ago: the scheduled check of a new worker reads the
#    batches since it (two, settled two days and one day ago, learned
#    through it) once; the next rounds read only the batches settled
#    since, not those two again every round for 31 days (before: every
#    round read both again).
px=$(pay 12.00)
sim_api "{\"createTransactionRequest\":{$AUTH,\"transactionRequest\":{\"transactionType\":\"voidTransaction\",\"refTransId\":\"$(trans_of "$px")\"}}}" >/dev/null
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.payments SET created_at = created_at - interval '3 days' WHERE merchant_id = $M AND payment_id = $px"
p1=$(pay 13.00); days -2; settle >/dev/null; days 2
p2=$(pay 14.00); days -1; settle >/dev/null; days 1
# (the worker has seen the capture as made now: a new worker, which knows
# nothing of earlier rounds, sees it as made three days ago)
ok "$(passed restart_worker)" "2: a new worker runs"
ok "$(passed wait_sql "(SELECT bool_and(settled_at IS NOT NULL) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($p1, $p2))")" \
	"2: the two batches settled since the voided capture are read, and their captures learned"
sleep 1.5
n0=$(check_requests getTransactionListRequest); l0=$(check_requests getSettledBatchListRequest)
# three more rounds of the scheduled check (one a second), however long a
# busy machine takes for them (before: as many as came in 5 s, at least 3)
three_more() { local l; l=$(check_requests getSettledBatchListRequest); [ $((l - l0)) -ge 3 ] && echo "$l"; }
l1=$(poll_value 60 three_more)
n1=$(check_requests getTransactionListRequest)
ok "$([ -n "$l1" ]; echo $?)" "2: the scheduled check ran ($((${l1:-$l0} - l0)) batch lists)"
is "$((n1 - n0))" 0 "2: and read no batch's transactions again for the capture it cannot find"
is "$(q -c "SELECT settled_at IS NULL FROM pay_get_payment($px)")" t "2: the voided capture is not taken for settled"

###########################################################################
# 3. An outage: every request answered 503 while refunds queue.  A
#    refund's first request is only a question (getTransactionDetails);
#    answered 503, the refund itself never left, so the attempt does not
#    count: with a budget of 2 attempts none becomes a dead letter (before:
#    dead after two 503s, a day's outage made dead letters of every
#    queued refund).  The circuit breaker paces the questions; once the
#    gateway answers, each refund goes out once.
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM SET payments.max_attempts = 2" -c "SELECT pg_reload_conf()" >/dev/null
# (under the default budget of 12 the checks below pass as well: the budget
# of two is made certain, not assumed)
ok "$(passed process_reread worker payments.max_attempts 2)" "3: the worker goes by a budget of two attempts"
py=$(pay 30.00); pz=$(pay 40.00); settle >/dev/null
ok "$(passed wait_sql "(SELECT bool_and(settled_at IS NOT NULL) FROM payments.payments WHERE merchant_id = $M AND payment_id IN ($py, $pz))")" \
	"3: two captures settled, and known so"
sim_ctl POST /faults '{"type":"http5xx","rate":1.0,"status":503}' >/dev/null
e0=$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id <> 0")
o1=$(refund "$py" 10.00); o2=$(refund "$py"); o3=$(refund "$pz")
asked() { q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IN ($o1, $o2, $o3) AND http_status = 503"; }
at_least_6() { [ "$(asked)" -ge 6 ] && echo 1; }
is "$(poll_value 60 at_least_6)" 1 "3: the refunds' questions were answered 503 six times or more"
t0=$(date +%s); e1=$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id <> 0")
sleep 10
e2=$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id <> 0")
ok "$([ $((e2 - e1)) -le 6 ]; echo $?)" "3: paced during the outage: $((e2 - e1)) requests in the next 10 s (circuit open)"
is "$(q -c "SELECT string_agg(status, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $M AND operation_id IN ($o1, $o2, $o3)")" \
	"queued,queued,queued" "3: after $(asked) answers of 503 no refund is a dead letter (budget 2)"
is "$(q -c "SELECT count(*) FROM payments.pay_dead_letters() WHERE merchant_id = $M")" 0 "3: no dead letters"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id IN ($o1, $o2, $o3) AND request_type = 'createTransactionRequest'")" 0 \
	"3: no refund was sent during the outage"
sim_ctl DELETE /faults >/dev/null
for o in $o1 $o2 $o3; do ok "$(passed op_is "$o" succeeded)" "3: refund $o succeeded once the gateway answers"; done
for o in $o1 $o2 $o3; do
	is "$(q -c "SELECT string_agg(request_type || ':' || http_status, ',' ORDER BY exchange_id) FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $o AND http_status = 200")" \
		"getTransactionDetailsRequest:200,createTransactionRequest:200" "3: refund $o: one question and one refund after the outage"
done
is "$(money "$py")" "refunded|30.00 USD|10.00 USD+20.00 USD|30.00 USD" "3: 30.00 refunded in rows, operations and event"
is "$(money "$pz")" "refunded|40.00 USD|40.00 USD|40.00 USD" "3: 40.00 refunded"
is "$(refund_ledger "$py")$(refund_ledger "$pz")" "refund 10.00;refund 20.00;refund 40.00;" "3: the gateway refunded 10.00, 20.00 and 40.00, once each"
cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.max_attempts" -c "SELECT pg_reload_conf()" >/dev/null

###########################################################################
# 4. The question's attempt is given back, so its count does not grow: the
#    wait before asking again grows with the time the refund has waited
#    instead (when only the questions fail, the circuit breaker does not
#    open).  A refund made an hour ago whose question is answered 503 asks
#    again minutes later, not within a second (before: 0.5 to 1 s, every
#    time, for as long as the questions failed).
pw=$(pay 60.00); settle >/dev/null
ok "$(passed wait_sql "(SELECT settled_at IS NOT NULL FROM pay_get_payment($pw))")" "4: a capture settled, and known so"
sim_ctl POST /faults '{"type":"http5xx","count":1,"status":503,"requestType":"getTransactionDetailsRequest"}' >/dev/null
o4=$(cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 -c "SET payments.merchant_id = '$M'" \
	-c "BEGIN" -c "SELECT operation_id FROM payments.pay_refund(payment_id => $pw)" \
	-c "UPDATE payments.operations SET created_at = now() - interval '1 hour' WHERE merchant_id = $M AND payment_id = $pw AND kind = 'refund'" \
	-c "COMMIT" | sed -n 's/^\([0-9][0-9]*\)$/\1/p' | head -1)
ok "$(passed wait_sql "(SELECT count(*) = 1 FROM payments.gateway_exchanges WHERE merchant_id = $M AND operation_id = $o4 AND http_status = 503)")" \
	"4: the refund's question was answered 503"
ok "$(passed wait_sql "(SELECT status = 'queued' FROM payments.operations WHERE merchant_id = $M AND operation_id = $o4)")" "4: the refund is queued again"
is "$(q -c "SELECT attempts || '|' || (next_attempt_at > now() + interval '60 s') FROM payments.operations WHERE merchant_id = $M AND operation_id = $o4")" "0|true" \
	"4: its attempt given back, it asks again in more than a minute"
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND operation_id = $o4 AND status = 'queued'"
ok "$(passed op_is "$o4" succeeded)" "4: asked again, the refund goes out"
is "$(money "$pw")" "refunded|60.00 USD|60.00 USD|60.00 USD" "4: 60.00 refunded"
is "$(refund_ledger "$pw")" "refund 60.00;" "4: the gateway refunded 60.00 once"

tap_done
