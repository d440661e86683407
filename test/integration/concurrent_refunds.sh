#!/usr/bin/env bash
# Two sessions refund the whole of one payment at once.  Whatever the
# isolation level, at most one refund is recorded and sent:
# 1. READ COMMITTED (the default): the second waits for the first's lock,
#    then sees its refund and is refused (22Y23, nothing left).
# 2. SERIALIZABLE: the second fails with a serialization error (40001).
# 3. REPEATABLE READ: capture, void and refund are refused (25000).  The
#    transaction's snapshot predates a refund another session commits
#    meanwhile: both refunds passed, and the worker sent both (the review
#    found it; the second then ended unknown).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-concurrent-refunds"
SESS="$WORK/concurrent-refunds"
mkdir -p "$SESS"
as_root chown "$PG_OS_USER" "$SESS"
declare -A FD PIDS
cleanup() {
	local s
	for s in "${!FD[@]}"; do
		eval "exec ${FD[$s]}>&-" 2>/dev/null || true
	done
	for s in "${!PIDS[@]}"; do
		kill "${PIDS[$s]}" 2>/dev/null || true
	done
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator concurrent_refunds

# session NAME: a psql session of merchant M reading commands from a pipe
session() {
	local name=$1 fd
	rm -f "$SESS/$name.in" "$SESS/$name.out"
	mkfifo "$SESS/$name.in"
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=0 -v VERBOSITY=verbose \
		<"$SESS/$name.in" >"$SESS/$name.out" 2>&1 &
	PIDS[$name]=$!
	exec {fd}>"$SESS/$name.in"
	FD[$name]=$fd
	say "$name" "SET application_name = 'refund_$name'; SET search_path = public, payments; SET payments.merchant_id = '$M';"
}
say() { printf '%s\n' "$2" >&"${FD[$1]}"; }
# done_with NAME MARK: 1 once the session printed MARK
done_with() { grep -qx "$2" "$SESS/$1.out" && echo 1; }
# waits_for_lock NAME: 1 while the session waits for a lock
waits_for_lock() {
	[ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'refund_$1' AND wait_event_type = 'Lock'")" = 1 ] && echo 1
}
close() {
	say "$1" '\q'
	eval "exec ${FD[$1]}>&-"
	unset "FD[$1]"
	wait "${PIDS[$1]}" || true
	unset "PIDS[$1]"
}
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

# race LEVEL PAYMENT: sessions a and b each begin at LEVEL and take their
# snapshot; a refunds the whole payment; b refunds it too (it waits for a's
# lock); a commits; b's statement ends, then b commits.
race() {
	local level=$1 p=$2
	session a
	session b
	say a "BEGIN ISOLATION LEVEL $level; SELECT count(*) FROM payments.operations;"
	say b "BEGIN ISOLATION LEVEL $level; SELECT count(*) FROM payments.operations;"
	say a "SELECT 'a refunds ' || status FROM pay_refund(payment_id => $p);"
	say a '\echo A-REFUNDED'
	is "$(poll_value 20 done_with a A-REFUNDED)" 1 "$level: the first session refunds"
	say b "SELECT 'b refunds ' || status FROM pay_refund(payment_id => $p);"
	say b '\echo B-REFUNDED'
	is "$(poll_value 20 waits_for_lock b)" 1 "$level: the second waits for the first's lock on the payment"
	say a 'COMMIT;'
	say a '\echo A-COMMITTED'
	is "$(poll_value 20 done_with a A-COMMITTED)" 1 "$level: the first commits"
	is "$(poll_value 20 done_with b B-REFUNDED)" 1 "$level: the second goes on"
	say b 'COMMIT;'
	say b '\echo B-COMMITTED'
	is "$(poll_value 20 done_with b B-COMMITTED)" 1 "$level: the second ends its transaction"
	close a
	close b
}

# --- 1. READ COMMITTED -------------------------------------------------------
p1=$(purchase)
race "READ COMMITTED" "$p1"
like "$(tr '\n' ' ' <"$SESS/b.out")" 'ERROR:  22Y23: refund amount must be positive.*DETAIL:  0\.00 USD of 10\.00 USD captured is left to refund\.' \
	"READ COMMITTED: the second refund sees the first and is refused: nothing is left (22Y23)"
is "$(refunds_of "$p1")" 1 "READ COMMITTED: one refund recorded"

# --- 2. SERIALIZABLE ---------------------------------------------------------
p2=$(purchase)
race SERIALIZABLE "$p2"
like "$(cat "$SESS/b.out")" 'ERROR:  40001: ' "SERIALIZABLE: the second fails with a serialization error (40001)"
is "$(refunds_of "$p2")" 1 "SERIALIZABLE: one refund recorded"

# --- 3. REPEATABLE READ ------------------------------------------------------
p3=$(purchase)
for call in "pay_refund(payment_id => $p3)" "pay_void(payment_id => $p3)" "pay_capture(payment_id => $p3)"; do
	out=$(as_merchant -v VERBOSITY=verbose -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT $call" 2>&1 || true)
	like "$out" "ERROR:  25000: a payment cannot be captured, voided or refunded in a REPEATABLE READ transaction" \
		"REPEATABLE READ: ${call%%(*} is refused (25000)"
done
like "$out" "HINT:  Run it at READ COMMITTED \(the default\) or SERIALIZABLE\." "with a hint"
is "$(refunds_of "$p3")" 0 "REPEATABLE READ: nothing recorded"

# what was recorded is what the gateway was asked for: one refund each
for p in "$p1" "$p2"; do
	settled() { as_merchant -c "SELECT 1 FROM payments.operations WHERE payment_id = $p AND kind = 'refund'
		AND status NOT IN ('queued', 'sending', 'unknown')"; }
	is "$(poll_value 30 settled)" 1 "payment $p: its refund is answered"
	is "$(as_merchant -c "SELECT status FROM payments.payments WHERE payment_id = $p")" refunded "payment $p: refunded"
done
tap_done
