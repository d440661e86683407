#!/usr/bin/env bash
# Idempotency keys of every mutating call: the same key and arguments
# return the first result (before and after the gateway answered, in one
# transaction, from two sessions at once), other arguments PT409, one
# merchant's key apart from another's, a rolled-back call leaves its key
# free; a repeated purchase by customer_id or payment_method_id returns its
# payment also after the customer's details changed or the method was
# deleted (it raised PT409 and 22Y20: the key was claimed after they were
# resolved, with a hash of the resolved values); after a key's retention a
# repeat makes a new object, and a repeat of that returns the new one (the
# old customer or subscription came back).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
SIMDIR="$WORK/sim-idem-replays"
source "$(dirname "$0")/../lib/sessions.sh"
sessions_init idem-replays
cleanup() { sessions_kill; sim_stop; }
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator idem_replays
q() { as_merchant "$@"; }
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"

# A. same key, same args, separate transactions: one payment, one charge
p1=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card, idempotency_key => 'a-1')")
p2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card, idempotency_key => 'a-1')")
is "$p2" "$p1" "A: replay returns the first payment"
q -c "SELECT status FROM pay_wait($p1, '10 s')" >/dev/null
p3=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card, idempotency_key => 'a-1')")
is "$p3" "$p1" "A: replay after the result returns the first payment"
is "$(sim_ledger_count "P$TAG$p1" charge)" 1 "A: one charge"
is "$(sqlstate_of "SELECT pay_purchase(amount => '11.00 USD', card => $card, idempotency_key => 'a-1')")" PT409 "A: other amount PT409"
is "$(sqlstate_of "SELECT pay_refund($p1, idempotency_key => 'a-1')")" PT409 "A: purchase key reused for a refund PT409"

# B. same transaction
r=$(q -c "BEGIN" -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $card, idempotency_key => 'b-1')" \
	-c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', card => $card, idempotency_key => 'b-1')" -c "COMMIT" | grep -v -e BEGIN -e COMMIT | sort -u | wc -l)
is "$r" 1 "B: replay inside one transaction returns the same payment"

# C. rollback does not burn the key
q -c "BEGIN" -c "SELECT payment_id FROM pay_purchase(amount => '4.00 USD', card => $card, idempotency_key => 'c-1')" -c "ROLLBACK" >/dev/null
pc=$(q -c "SELECT payment_id FROM pay_purchase(amount => '5.00 USD', card => $card, idempotency_key => 'c-1')")
ok $([ -n "$pc" ] && echo 0 || echo 1) "C: a rolled-back key is free for other arguments"

# D. customer-based purchase replay after the customer's details changed
c=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada', billing => '{\"first_name\": \"Ada\", \"zip\": \"46201\"}')")
pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $c, card => $card)")
is "$(q -c "SELECT status FROM pay_wait_payment_method($pm, '30 s')")" active "D: method active"
pd=$(q -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', customer_id => $c, idempotency_key => 'd-1')")
q -c "SELECT status FROM pay_wait($pd, '10 s')" >/dev/null
q -c "SELECT 1 FROM pay_update_customer($c, email => 'ada2@example.com')" >/dev/null
out=$(as_merchant -v VERBOSITY=verbose -c "SELECT payment_id FROM pay_purchase(amount => '7.00 USD', customer_id => $c, idempotency_key => 'd-1')" 2>&1 || true)
is "$out" "$pd" "D: replay (same args) after the customer's email changed returns the first payment"
pe=$(q -c "SELECT payment_id FROM pay_purchase(amount => '8.00 USD', payment_method_id => $pm, idempotency_key => 'd-2')")
q -c "SELECT status FROM pay_wait($pe, '10 s')" >/dev/null
q -c "SELECT 1 FROM pay_delete_payment_method($pm)" >/dev/null
out=$(as_merchant -v VERBOSITY=verbose -c "SELECT payment_id FROM pay_purchase(amount => '8.00 USD', payment_method_id => $pm, idempotency_key => 'd-2')" 2>&1 || true)
is "$out" "$pe" "D: replay (same args) after the method was deleted returns the first payment"
comment "$out"

# E. two sessions, one key, at once (READ COMMITTED)
session a; session b
say a "BEGIN; SELECT 'A', payment_id FROM pay_purchase(amount => '9.00 USD', card => $card, idempotency_key => 'e-1');"
say a '\echo A-DONE'
poll_value 20 done_with a A-DONE >/dev/null
say b "SELECT 'B', payment_id FROM pay_purchase(amount => '9.00 USD', card => $card, idempotency_key => 'e-1');"
say b '\echo B-DONE'
w=$(poll_value 20 waits_for_lock b || true)
is "$w" 1 "E: the second session waits"
say a 'COMMIT;'
poll_value 20 done_with b B-DONE >/dev/null
close a; close b
pa=$(sed -n 's/^A|//p' "$SESS/a.out"); pb=$(sed -n 's/^B|//p' "$SESS/b.out")
is "$pb" "$pa" "E: both sessions get one payment"
comment "$(cat "$SESS/b.out")"

# F. same, the second in REPEATABLE READ with its snapshot taken before
session a; session b
say b "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;"
say a "BEGIN; SELECT 'A', payment_id FROM pay_purchase(amount => '9.00 USD', card => $card, idempotency_key => 'f-1');"
say a '\echo A-DONE'
[ "$(poll_value 30 done_with a A-DONE)" = 1 ] || die "F: session a's purchase never returned"
say b "SELECT 'B', payment_id FROM pay_purchase(amount => '9.00 USD', card => $card, idempotency_key => 'f-1');"
say b '\echo B-DONE'
is "$(poll_value 30 waits_for_lock b || true)" 1 "F: the second session (REPEATABLE READ) waits"
say a 'COMMIT;'
[ "$(poll_value 30 done_with b B-DONE)" = 1 ] || die "F: session b's purchase never returned"
say b 'ROLLBACK;'
close a; close b
# its snapshot cannot see the first payment: it returns it anyway, or fails
# 40001 (to be retried), and never makes a second one
pa=$(sed -n 's/^A|//p' "$SESS/a.out"); pb=$(sed -n 's/^B|//p' "$SESS/b.out")
ok $([ -n "$pa" ] && { [ "$pb" = "$pa" ] || { [ -z "$pb" ] && grep -q '40001' "$SESS/b.out"; }; } && echo 0 || echo 1) \
	"F: the second session gets the first payment or 40001"
is "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND idempotency_key = 'f-1'")" 1 \
	"F: one payment for the key"
comment "F (RR): $(cat "$SESS/b.out")"

# G. across merchants: same key, independent
M0=$M
merchant_on_simulator idem_replays_b
pg=$(q -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD', card => $card, idempotency_key => 'a-1')")
ok $([ -n "$pg" ] && [ "$pg" != "$p1" ] && echo 0 || echo 1) "G: merchant B's same key makes its own payment"
M=$M0

# H. retention: the key row is deleted by housekeeping; what a late retry gets
ph=$(q -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card, idempotency_key => 'h-1')")
q -c "SELECT status FROM pay_wait($ph, '10 s')" >/dev/null
cs=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'h@example.com', idempotency_key => 'h-c')")
cluster_psql "$WORK" "$PORT" payments -qc "UPDATE payments.idempotency_keys SET created_at = now() - interval '200 hours' WHERE merchant_id = $M AND idempotency_key IN ('h-1','h-c')"
restart_worker
gone() { [ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M AND idempotency_key IN ('h-1','h-c')")" = 0 ] && echo 1; }
is "$(poll_value 90 gone)" 1 "H: housekeeping deleted the keys past their retention"
ph2=$(q -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card, idempotency_key => 'h-1')")
q -c "SELECT status FROM pay_wait($ph2, '10 s')" >/dev/null
comment "H: first $ph, retry after retention $ph2; charges: $(sim_ledger_count "P$TAG$ph" charge) + $(sim_ledger_count "P$TAG$ph2" charge)"
cs2=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'h@example.com', idempotency_key => 'h-c')")
cs3=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'h@example.com', idempotency_key => 'h-c')")
comment "H: customer $cs, after retention $cs2, again $cs3"
is "$cs3" "$cs2" "H: a repeat of the call made after retention returns the customer that call made"

tap_done
