#!/usr/bin/env bash
# Two sessions refund the whole of one payment at once.  Whatever the
# isolation levels, at most one refund is recorded and sent:
# 1. READ COMMITTED (the default) both: the second waits for the first's
#    lock, then sees its refund and is refused (22Y23, nothing left).
# 2. SERIALIZABLE both: the second fails with a serialization error (40001).
# 3. READ COMMITTED first, SERIALIZABLE second; 4. READ COMMITTED first,
#    REPEATABLE READ second: the second's snapshot predates the first's
#    refund.  Both refunds passed, and the worker sent both (two reviews
#    found it: first at REPEATABLE READ, then, once that was refused, at
#    SERIALIZABLE, where SSI does not see a READ COMMITTED writer).  Now the
#    second fails with 40001: each call writes the payment row.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-concurrent-refunds"
source "$(dirname "$0")/../lib/sessions.sh"
sessions_init concurrent-refunds
cleanup() {
	sessions_kill
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator concurrent_refunds

purchase() {
	local p
	p=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '10.00 USD',
		card => pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'))")
	[ "$(as_merchant -c "SELECT status FROM pay_wait($p, '30 s')")" = succeeded ] || echo "purchase $p did not succeed" >&2
	echo "$p"
}
refunds_of() {
	as_merchant -c "SELECT count(*) FROM payments.operations WHERE payment_id = $1 AND kind = 'refund'"
}

# race LEVEL_A LEVEL_B PAYMENT: sessions a and b begin at their levels and
# take their snapshots; a refunds the whole payment; b refunds it too (it
# waits for a's lock); a commits; b's statement ends, then b commits.
race() {
	local la=$1 lb=$2 p=$3 tag="$1 then $2"
	session a
	session b
	say a "BEGIN ISOLATION LEVEL $la; SELECT count(*) FROM payments.operations;"
	say b "BEGIN ISOLATION LEVEL $lb; SELECT count(*) FROM payments.operations;"
	say a "SELECT 'a refunds ' || status FROM pay_refund(payment_id => $p);"
	say a '\echo A-REFUNDED'
	is "$(poll_value 20 done_with a A-REFUNDED)" 1 "$tag: the first session refunds"
	say b "SELECT 'b refunds ' || status FROM pay_refund(payment_id => $p);"
	say b '\echo B-REFUNDED'
	is "$(poll_value 20 waits_for_lock b)" 1 "$tag: the second waits for the first's lock on the payment"
	say a 'COMMIT;'
	say a '\echo A-COMMITTED'
	is "$(poll_value 20 done_with a A-COMMITTED)" 1 "$tag: the first commits"
	is "$(poll_value 20 done_with b B-REFUNDED)" 1 "$tag: the second goes on"
	say b 'COMMIT;'
	say b '\echo B-COMMITTED'
	is "$(poll_value 20 done_with b B-COMMITTED)" 1 "$tag: the second ends its transaction"
	close a
	close b
}

# --- 1. READ COMMITTED -------------------------------------------------------
p1=$(purchase)
race "READ COMMITTED" "READ COMMITTED" "$p1"
like "$(tr '\n' ' ' <"$SESS/b.out")" 'ERROR:  22Y23: nothing is left to refund.*DETAIL:  0\.00 USD of 10\.00 USD captured is left to refund\.' \
	"READ COMMITTED: the second refund sees the first and is refused: nothing is left (22Y23)"
is "$(refunds_of "$p1")" 1 "READ COMMITTED: one refund recorded"

# --- 2.-4. a snapshot older than the first refund ------------------------------
payments=("$p1")
for levels in "SERIALIZABLE|SERIALIZABLE" "READ COMMITTED|SERIALIZABLE" "READ COMMITTED|REPEATABLE READ"; do
	p=$(purchase)
	payments+=("$p")
	race "${levels%|*}" "${levels#*|}" "$p"
	like "$(cat "$SESS/b.out")" 'ERROR:  40001: ' "${levels%|*} then ${levels#*|}: the second fails with a serialization error (40001)"
	is "$(refunds_of "$p")" 1 "${levels%|*} then ${levels#*|}: one refund recorded"
done

# what was recorded is what the gateway was asked for: one refund each
for p in "${payments[@]}"; do
	settled() { as_merchant -c "SELECT 1 FROM payments.operations WHERE payment_id = $p AND kind = 'refund'
		AND status NOT IN ('queued', 'sending', 'unknown')"; }
	is "$(poll_value 30 settled)" 1 "payment $p: its refund is answered"
	is "$(as_merchant -c "SELECT status FROM payments.payments WHERE payment_id = $p")" refunded "payment $p: refunded"
done
tap_done
