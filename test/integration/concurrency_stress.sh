#!/usr/bin/env bash
# Randomized concurrency stress (test/lib/concurrency_stress.py, fixed seed, printed):
# sessions authorize, purchase, capture, void and refund a shared pool of
# payments at once, at READ COMMITTED, REPEATABLE READ and SERIALIZABLE
# (serialization failures retried, as a caller would), reusing idempotency
# keys across sessions with the same and with different arguments, while the
# simulator answers with latency, 5xx, resets and truncated replies.  Once
# the worker has answered everything: what the database recorded is what
# the simulator's ledger holds (one charge per payment, captures, refunds,
# voids), refunds never sum past the capture, one object per idempotency
# key, and no caller saw a deadlock or an internal error.
# Beside them, sessions of a second merchant act on daily subscriptions
# while its test clock moves a day at a time and billing runs (the billing
# process and pay_run_renewals at once): change, pause, resume, cancel,
# change the method, delete and save cards, delete the customer.  Each
# invoice is charged at most once, each charge is what the ledger holds,
# and no customer is charged after its deletion.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-concurrency-stress"
cleanup() { sim_stop; }
trap cleanup EXIT
sim_start "$SIMDIR" --threads 8
merchant_on_simulator concurrency_stress_subscriptions 2000
M2=$M
merchant_on_simulator concurrency_stress 2000

out=$(PSQL="$PG_BINDIR/psql -h $WORK/sock -p $PORT -U postgres -d payments -X" MERCHANT=$M MERCHANT2=$M2 TAG=$TAG \
	SIM_CONTROL=$SIM_CONTROL SEED=${STRESS_SEED:-20261207} SESSIONS=${STRESS_SESSIONS:-6} \
	DURATION=${STRESS_SECONDS:-60} python3 "$(dirname "$0")/../lib/concurrency_stress.py" 2>&1) && rc=0 || rc=$?
while IFS= read -r line; do
	case $line in
	"ok - "*) ok 0 "${line#ok - }" ;;
	"not ok - "*) ok 1 "${line#not ok - }" ;;
	*) echo "$line" ;;
	esac
done <<<"$out"
is "$rc" 0 "the checker ran to its end"
tap_done
