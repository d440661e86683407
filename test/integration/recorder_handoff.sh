#!/usr/bin/env bash
# The recorder: the final answers to purchases and authorizations the worker
# hands it are recorded once, with their exchanges, whatever happens to it.
#
# payments.recorder_min_batch is 1 here, so every batch goes to the
# recorder while it runs; another merchant's gateway account fails all the
# while (its answers stay with the worker, the others' do not).
# 1. A burst of purchases, some declined: all recorded with their outcome
#    (the recorder's counters show it recorded them), one exchange row per
#    request, each sent once, the recorder visible in pay_metrics and
#    pg_stat_activity.
# 2. The recorder stopped (pg_terminate_backend) while its transaction
#    waits for a lock on one of the payments (payments.worker_lock_timeout
#    off, so that it waits): the batches it had not recorded
#    are recorded by the worker, none twice (one exchange row per request),
#    every payment final and charged once; the recorder starts again.
# 3. A batch the recorder cannot record (a trigger refuses one payment's
#    row): its transaction is logged and rolled back, the worker records
#    the others of the batch, holds the refused one, and records it once
#    the trigger is gone; the batch's exchanges are logged all the same
#    (on their own), one row per request.
# 4. payments.recorder = off: the worker records everything itself.
# 5. The recorder's memory after one burst and after the next, of the same
#    size, differs by little (its memory contexts, outside the caches, as
#    it logs them); pay_metrics shows it.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-recorder"
LOG="$WORK/postgres.log"
su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	su -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'recorder_handoff_locker'" >/dev/null 2>&1 || true
	su -c "DROP TRIGGER IF EXISTS recorder_refuse ON payments.payments" \
		-c "DROP FUNCTION IF EXISTS public.recorder_refuse()" \
		-c "ALTER SYSTEM RESET payments.recorder_min_batch" -c "ALTER SYSTEM RESET payments.recorder" \
		-c "ALTER SYSTEM RESET payments.worker_lock_timeout" \
		-c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	# nothing of this test may keep the worker busy after it
	su -c "UPDATE payments.operations SET status = 'canceled' WHERE merchant_id = $F AND status = 'queued'" >/dev/null 2>&1 || true
	sim_stop
}
F=0
trap cleanup EXIT
sim_start "$SIMDIR"
sim_ctl POST /latency '{"fixedMs":100,"randomMs":50}' >/dev/null
merchant_on_simulator "recorder handoff"
su -c "ALTER SYSTEM SET payments.recorder_min_batch = 1" -c "SELECT pg_reload_conf()" >/dev/null
# (the worker reads it: every batch it hands the recorder from its next round)
ok "$(passed process_reread worker payments.recorder_min_batch 1)" "the worker hands the recorder every batch"
# another merchant whose gateway account fails (wrong credentials): its
# answers stay with the worker, which notes them; the others' still go
F=$(su -c "INSERT INTO payments.merchants (name) VALUES ('recorder failing') RETURNING merchant_id")
su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => 'WrongKey12345678',
	endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $F)" >/dev/null
su -c "SET payments.merchant_id = '$F'" -c "SELECT payments.pay_purchase(amount => '2.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))" >/dev/null

card="payments.pay_card('4111 1111 1111 1111', 12, 2031, '123')"
metric() { su -c "SELECT payments.pay_metrics()" | sed -n "s/^$1 //p"; }
recorder_pid() { su -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments recorder'"; }
# burst N LABEL: N purchases from 4 sessions at once, every seventh declined (the sandbox's decline zip); waits until all are final
burst() {
	local n=$1 label=$2 s pids=()
	for s in 0 1 2 3; do
		as_merchant -c "SELECT count(*) FROM generate_series($s, $n - 1, 4) g,
			LATERAL (SELECT payments.pay_purchase(amount => '3.00 USD', card => $card, description => '$label',
				customer => CASE WHEN g % 7 = 0 THEN '{\"zip\": \"46282\"}' ELSE '{}' END::jsonb)) p" >/dev/null &
		pids+=($!)
	done
	wait "${pids[@]}"	# not the simulator, a child too
	poll_value 60 su -c "SELECT 'final' WHERE NOT EXISTS (SELECT 1 FROM payments.payments
		WHERE merchant_id = $M AND description = '$label' AND status IN ('pending', 'unknown'))" >/dev/null
}
# outcome LABEL: succeeded/failed counts, requests sent more than once, and
# operations whose exchange rows are not exactly one
outcome() {
	su -c "SELECT count(*) FILTER (WHERE p.status = 'succeeded') || ' ' || count(*) FILTER (WHERE p.status = 'failed')
		|| ' ' || count(*) FILTER (WHERE o.attempts <> 1)
		|| ' ' || count(*) FILTER (WHERE (SELECT count(*) FROM payments.gateway_exchanges x
			WHERE x.merchant_id = o.merchant_id AND x.operation_id = o.operation_id) <> 1)
		FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
		WHERE p.merchant_id = $M AND p.description = '$1'"
}
# charged_once LABEL: how many of the label's succeeded payments the
# simulator charged exactly once
charged_once() {
	local ids
	ids=$(su -c "SELECT string_agg('P$TAG' || payment_id, ',') FROM payments.payments
		WHERE merchant_id = $M AND description = '$1' AND status = 'succeeded'")
	sim_ctl GET /ledger | python3 -c '
import json, sys, collections
data = json.load(sys.stdin)
rows = data["ledger"] if isinstance(data, dict) and "ledger" in data else data
n = collections.Counter(r.get("invoiceNumber") for r in rows if r.get("kind") == "charge")
print(sum(1 for i in sys.argv[1].split(",") if n[i] == 1))' "$ids"
}

# --- 1. a burst through the recorder -------------------------------------------
is "$(poll_value 20 su -c "SELECT state FROM payments.pay_gateway_status($F) WHERE state = 'failing'")" failing \
	"the other merchant's gateway is failing"
rpid=$(poll_value 30 recorder_pid)
ok "$([ -n "$rpid" ] && echo 0 || echo 1)" "the recorder runs (pid $rpid)"
is "$(metric payments_recorder_up)" 1 "pay_metrics shows the recorder up"
results0=$(metric payments_recorder_results_total)
burst 200 burst-one
is "$(outcome burst-one)" "171 29 0 0" "200 purchases: 171 succeeded, 29 declined, each sent once, one exchange row each"
got=$(( $(metric payments_recorder_results_total) - results0 ))
ok "$([ "$got" -ge 100 ] && echo 0 || echo 1)" "the recorder recorded most of them ($got of 200)"
is "$(charged_once burst-one)" 171 "each succeeded purchase charged once"
like "$(su -c "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = $M
	AND payment_id = (SELECT min(payment_id) FROM payments.payments WHERE merchant_id = $M AND description = 'burst-one' AND status = 'succeeded')")" \
	'payment.pending,operation.queued,operation.sending,operation.succeeded,payment.succeeded' \
	"a payment the recorder recorded has every event"

# --- 2. the recorder stopped with batches in hand -----------------------------
# A session holds one of the payments locked: the recorder's transaction
# waits for it, the batches pile up unrecorded; the recorder is stopped;
# once the lock goes, the worker records what it left, whole and once.
# (A lock that only the recorder meets: with the limit off, a worker that
# met it would stop reading replies while it waited.)
exited0=$(grep -c 'background worker "payments recorder" (PID [0-9]*) exited' "$LOG" || true)
su -c "ALTER SYSTEM SET payments.worker_lock_timeout = 0" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.worker_lock_timeout 0)" "2: the worker goes by no lock timeout"
# (a recorder still on 100 ms gave the batches back to the worker at once,
# and never waited for the lock as below)
ok "$(passed process_reread recorder payments.worker_lock_timeout 0)" "2: nor does the recorder"
sim_ctl POST /latency '{"fixedMs":1000,"randomMs":0}' >/dev/null
# The 100 are committed not yet due, the session takes the lock, and only
# then are they sent; the recorder is stopped once it waits for the lock.
# (Before: the lock taken after the commit, within the gateway's second,
# and the recorder stopped 3 s later; on a busy machine the answer could be
# recorded before the lock, or not be in hand yet.)
first=$(as_merchant -c "BEGIN" -c "SELECT min(p.payment_id) FROM generate_series(0, 99) g,
	LATERAL (SELECT * FROM payments.pay_purchase(amount => '3.00 USD', card => $card, description => 'burst-two',
	customer => CASE WHEN g % 7 = 0 THEN '{\"zip\": \"46282\"}' ELSE '{}' END::jsonb)) p" \
	-c "UPDATE payments.operations o SET next_attempt_at = now() + interval '1 hour' FROM payments.payments p
		WHERE p.merchant_id = $M AND p.description = 'burst-two' AND o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id" \
	-c "COMMIT")
su -c "SET application_name = 'recorder_handoff_locker'" -c "BEGIN" \
	-c "SELECT 1 FROM payments.payments WHERE merchant_id = $M AND payment_id = $first FOR UPDATE" \
	-c "SELECT pg_sleep(300)" -c "COMMIT" >/dev/null 2>&1 &
locker=$!
locked() { [ "$(su -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'recorder_handoff_locker'
	AND state = 'active' AND query LIKE '%pg_sleep%'")" = 1 ] && echo 1; }
is "$(poll_value 30 locked)" 1 "a session holds the first of 100 purchases locked before they are sent"
su -c "UPDATE payments.operations o SET next_attempt_at = now() FROM payments.payments p
	WHERE p.merchant_id = $M AND p.description = 'burst-two' AND o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id" \
	-c "SELECT payments._wake_at_commit()" >/dev/null
recorder_waits() { [ "$(su -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payments recorder'
	AND wait_event_type = 'Lock'")" = 1 ] && echo 1; }
is "$(poll_value 60 recorder_waits)" 1 "the answers are in, the recorder waits for the lock"
pending=$(su -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND description = 'burst-two' AND status = 'pending'")
is "$(su -c "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $first")" pending \
	"while it is locked, the locked payment is not recorded ($pending of the 100 wait with it)"
su -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'payments recorder'" >/dev/null
su -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'recorder_handoff_locker'" >/dev/null
wait "$locker" || true
poll_value 60 su -c "SELECT 'final' WHERE NOT EXISTS (SELECT 1 FROM payments.payments
	WHERE merchant_id = $M AND description = 'burst-two' AND status IN ('pending', 'unknown'))" >/dev/null
is "$(outcome burst-two)" "85 15 0 0" "once the lock is gone all 100 are final, each sent once, one exchange row each"
is "$(charged_once burst-two)" 85 "each succeeded purchase charged once"
ok "$(wait_log 5 "payments worker: recorded a batch of outcomes the recorder left" && echo 0 || echo 1)" \
	"the worker recorded the batches the stopped recorder left"
is "$(( $(grep -c 'background worker "payments recorder" (PID [0-9]*) exited' "$LOG") - exited0 ))" 1 "the recorder was stopped once"
rpid2=$(poll_value 30 recorder_pid)
ok "$([ -n "$rpid2" ] && [ "$rpid2" != "$rpid" ] && echo 0 || echo 1)" "a new recorder runs (pid $rpid2)"
su -c "ALTER SYSTEM RESET payments.worker_lock_timeout" -c "SELECT pg_reload_conf()" >/dev/null
sim_ctl POST /latency '{"fixedMs":100,"randomMs":50}' >/dev/null

# --- 3. a batch the recorder cannot record -------------------------------------
su -q <<'SQL'
CREATE FUNCTION public.recorder_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.description = 'recorder-refused' AND NEW.status IS DISTINCT FROM OLD.status THEN
		RAISE EXCEPTION 'recorder test refuses this row' USING ERRCODE = 'P0R02';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER recorder_refuse BEFORE UPDATE ON payments.payments
	FOR EACH ROW EXECUTE FUNCTION public.recorder_refuse();
SQL
refused=$(as_merchant -c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD', card => $card, description => 'recorder-refused')" \
	-c "SELECT count(payments.pay_purchase(amount => '4.00 USD', card => $card, description => 'beside-refused')) FROM generate_series(1, 9)" | sed -n 1p)
ok "$(wait_log 20 "payments recorder: recording outcomes failed with SQLSTATE P0R02" && echo 0 || echo 1)" \
	"the recorder's failed transaction is logged with its SQLSTATE"
poll_value 20 su -c "SELECT 'final' WHERE NOT EXISTS (SELECT 1 FROM payments.payments
	WHERE merchant_id = $M AND description = 'beside-refused' AND status = 'pending')" >/dev/null
is "$(outcome beside-refused)" "9 0 0 0" \
	"the worker records the other payments of the batch, each sent once, their exchanges logged once each"
is "$(su -c "SELECT status FROM payments.operations WHERE merchant_id = $M AND payment_id = $refused")" sending \
	"the refused one stays sending, its answer held by the worker"
su -c "DROP TRIGGER recorder_refuse ON payments.payments" -c "DROP FUNCTION public.recorder_refuse()" >/dev/null
is "$(as_merchant -c "SELECT status FROM payments.pay_wait($refused, '30 s')")" succeeded \
	"once the row can be written, the held answer is recorded"
is "$(sim_ledger_count "P$TAG$refused" charge)" 1 "charged once"
is "$(outcome recorder-refused)" "1 0 0 0" "the refused one's exchange is logged once too"

# --- 4. payments.recorder = off ---------------------------------------------
su -c "ALTER SYSTEM SET payments.recorder = off" -c "SELECT pg_reload_conf()" >/dev/null
# (the worker reads it: it hands the recorder nothing once off)
ok "$(passed process_reread worker payments.recorder off)" "4: the worker goes by payments.recorder = off"
results1=$(metric payments_recorder_results_total)
burst 100 burst-off
is "$(outcome burst-off)" "85 15 0 0" "with the recorder off, 100 purchases all recorded by the worker"
is "$(metric payments_recorder_results_total)" "$results1" "the recorder recorded none of them"

# --- 5. the recorder's memory -----------------------------------------------
su -c "ALTER SYSTEM RESET payments.recorder" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.recorder on)" "5: the worker goes by payments.recorder = on again"
burst 300 burst-mem-warm
burst 300 burst-mem-1
rpid3=$(recorder_pid)
sleep 1.5	# the gauge is published every second
gauge=$(metric payments_recorder_memory_bytes)
su -c "SELECT pg_log_backend_memory_contexts($rpid3)" >/dev/null
burst 300 burst-mem-2
su -c "SELECT pg_log_backend_memory_contexts($rpid3)" >/dev/null
poll_value 60 memory_dumps "$rpid3" 2 >/dev/null
used=$(memory_in_use "$rpid3")
ok "$([ -n "$gauge" ] && [ "$gauge" -gt 0 ] && echo 0 || echo 1)" "pay_metrics shows the recorder's memory ($gauge bytes)"
first=$(head -1 <<<"$used") last=$(tail -1 <<<"$used")
ok "$([ "$(wc -l <<<"$used")" = 2 ] && [ -n "$first" ] && [ $((last - first)) -lt 16384 ] && echo 0 || echo 1)" \
	"the recorder's memory stays flat from one burst to the next (in use outside the caches: $first -> $last bytes)"
tap_done
