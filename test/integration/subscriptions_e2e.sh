#!/usr/bin/env bash
# Subscriptions end to end against the simulator, on test clocks (one
# merchant per story, each with its own billing clock):
#   - a customer with a saved card subscribes (first invoice paid -> active);
#     a month later the WORKER renews it on its own clock, charged once
#   - a declining card: past_due, retried on the dunning schedule as the
#     clock moves, recovered at once by a card update (one charge in all)
#   - dunning to each final action (canceled, unpaid)
#   - a card that expires mid-subscription (the simulator's clock passes its
#     expiry): a hard decline, not retried, the final action on the last day
#   - renewals run from two sessions at once while the worker runs too:
#     every renewal charged exactly once (the simulator's ledger)
#   - a backend killed -9 in the middle of a large renewal run: after the
#     restart every due subscription charged exactly once
#   - tenancy: merchant B's role neither sees nor touches A's subscriptions
#     and invoices
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-subs-e2e"
trap 'sim_stop; cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null || true' EXIT
sim_start "$SIMDIR"

if [ "$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT to_regprocedure('payments._run_renewals(bigint,integer)') IS NOT NULL AND to_regprocedure('payments.pay_create_subscription(bigint,bigint,payments.pay_amount,text,integer,integer,bigint,integer,timestamp,text,jsonb,text,text)') IS NOT NULL")" != t ]; then
	echo "1..0 # SKIP the subscription API (h-subs) or the billing runs (h-billing) are not in this build"
	exit 0
fi

q() { as_merchant "$@"; }
su() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
year=$(( $(date +%Y) + 3 ))
card() { echo "pay_card('$1', ${3:-12}, ${2:-$year}, '123', 'Ada Lovelace')"; }

# a story's own merchant, its billing clock frozen at the real time
story() {
	merchant_on_simulator "e2e $1"
	q -c "SELECT pay_set_test_clock(now())" >/dev/null
}
# saved_card NUMBER [VALIDATION [EXP_YEAR EXP_MONTH]]: a new customer of M with
# that card as its default; sets CID, prints nothing; PM is the method
saved_card() {
	CID=$(q -c "SELECT customer_id FROM pay_create_customer(email => 'e2e@example.com', name => 'Ada Lovelace')")
	PM=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => $(card "$1" "${3:-$year}" "${4:-12}"), validation_mode => '${2:-liveMode}')")
	q -c "SELECT status FROM pay_wait_payment_method($PM, '10 s')" >/dev/null
}
# another card of customer CID, not its default; prints its id
other_card() {
	local pm
	pm=$(q -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => $(card "$1"), validation_mode => 'none', make_default => false)")
	q -c "SELECT status FROM pay_wait_payment_method($pm, '10 s')" >/dev/null
	echo "$pm"
}
# charges the simulator's ledger holds for all attempts of invoice $1
# (every payment made for it, by its invoice number at the gateway)
ledger_charges_of_invoice() {
	local invs
	invs=$(q -c "SELECT string_agg(invoice_number, ' ') FROM payments.payments WHERE merchant_id = $M AND invoice_id = $1")
	sim_ctl GET /ledger | python3 -c '
import json, sys
invs = set(sys.argv[1].split())
print(sum(1 for e in json.load(sys.stdin) if e.get("invoiceNumber") in invs and e.get("kind") == "charge"))
' "$invs"
}
# the latest invoice of subscription $1 and its latest payment
latest_invoice() { q -c "SELECT max(invoice_id) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $1"; }
latest_payment() { q -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND invoice_id = $1"; }
events_of() {	# events_of TYPE SUBSCRIPTION_ID
	q -c "SELECT count(*) FROM payments.events WHERE merchant_id = $M AND event_type = '$1' AND data ->> 'subscription_id' = '$2'"
}
# subscribe (first invoice charged in pay_create_subscription) and wait for
# it to be paid; sets SID
subscribe() {
	local pid
	SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '${1:-25.00 USD}', interval_unit => 'month')")
	pid=$(latest_payment "$(latest_invoice "$SID")")
	q -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
}

# --- 1. subscribe with a saved card; the worker renews a month later --------
story renew
saved_card 4111111111111111
row=$(q -c "SELECT subscription_id || '|' || status FROM pay_create_subscription(customer_id => $CID, price => '25.00 USD', interval_unit => 'month')")
SID=${row%%|*}
is "${row#*|}" incomplete "a new subscription is incomplete until its first invoice is paid"
inv1=$(latest_invoice "$SID")
is "$(q -c "SELECT kind || '|' || period_index || '|' || amount FROM pay_get_invoice($inv1)")" "first|0|25.00 USD" "its first invoice is for period 0"
pid1=$(latest_payment "$inv1")
is "$(q -c "SELECT status FROM pay_wait($pid1, '10 s')")" succeeded "the first invoice's charge succeeds"
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" active)" active "the subscription is active once it is paid"
is "$(q -c "SELECT status FROM pay_get_invoice($inv1)")" paid "the first invoice is paid"
is "$(ledger_charges_of_invoice "$inv1")" 1 "the simulator's ledger has one charge for it"

# nobody calls pay_run_renewals here: the billing process runs when the
# clock's move commits, not at its next round (an hour away here; its own
# clock is payments.billing_interval, 10 s by default)
su -c "ALTER SYSTEM SET payments.billing_interval = 3600" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread billing payments.billing_interval 1h)" "the billing process's own round is an hour away"
q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
is "$(wait_for "SELECT count(*) FILTER (WHERE status = 'paid') || '/' || count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal' AND period_index = 1" 1/1 40)" 1/1 \
	"a month later the billing process, woken by the clock's move, issued the period 1 renewal invoice and it was paid"
su -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null
inv2=$(latest_invoice "$SID")
is "$(ledger_charges_of_invoice "$inv2")" 1 "the simulator's ledger has exactly one charge for the renewal"
is "$(q -c "SELECT current_period_index || '|' || status FROM pay_get_subscription($SID)")" "1|active" "the subscription is in period 1, active"
is "$(events_of subscription.renewed "$SID")" 1 "one subscription.renewed event"
is "$(q -c "SELECT pay_run_renewals()")" 0 "a run right after finds nothing due until the next period ends"
# the billing process: a background worker of its own beside the worker
# that sends the charges; after it is terminated the postmaster starts it
# again, and it goes on renewing
backend_pid() { su -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"; }
bp=$(backend_pid "payments billing")
wp=$(backend_pid "payments worker")
ok "$([ -n "$bp" ] && [ -n "$wp" ] && [ "$bp" != "$wp" ] && echo 0 || echo 1)" \
	"renewals run in a process of their own (payments billing, pid $bp) beside the worker (pid $wp)"
su -c "SELECT pg_terminate_backend($bp)" >/dev/null
bp2=""
for _ in $(seq 40); do
	bp2=$(backend_pid "payments billing")
	[ -n "$bp2" ] && [ "$bp2" != "$bp" ] && break
	sleep 0.25
done
ok "$([ -n "$bp2" ] && [ "$bp2" != "$bp" ] && [ "$(backend_pid "payments worker")" = "$wp" ] && echo 0 || echo 1)" \
	"a terminated billing process is started again (pid $bp2); the worker goes on untouched"
q -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
is "$(wait_for "SELECT count(*) FILTER (WHERE status = 'paid') || '/' || count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal' AND period_index = 2" 1/1 40)" 1/1 \
	"the new billing process renews the next period; paid"
is "$(ledger_charges_of_invoice "$(latest_invoice "$SID")")" 1 "the simulator's ledger has exactly one charge for it"
# a billing function missing (a schema in the middle of an update): the
# billing process says so once in the server log and skips its runs; it
# bills again once the function is back
su -c "ALTER SYSTEM SET payments.billing_interval = 1" -c "SELECT pg_reload_conf()" >/dev/null
# (the rounds counted below are a second apart only once it has reread it)
ok "$(passed process_reread billing payments.billing_interval 1s)" "the billing process runs every second"
log_from=$(( $(as_root wc -l < "$WORK/postgres.log") + 1 ))
su -c "ALTER FUNCTION payments._run_renewals(bigint, integer) RENAME TO _run_renewals_away" >/dev/null
q -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
missing_said() { as_root tail -n +"$log_from" "$WORK/postgres.log" | grep -c 'payments billing: payments._run_renewals is missing' || true; }
for _ in $(seq 240); do [ "$(missing_said)" -ge 1 ] && break; sleep 0.25; done
# billing_rounds N: "ok" once the billing process has begun N more runs
# (each run's dunning transaction starts anew: its query_start in
# pg_stat_activity, seen for the second until the next run)
billing_rounds() {
	local seen="" last now i n=0
	last=$(su -c "SELECT query_start FROM pg_stat_activity WHERE backend_type = 'payments billing'")
	for i in $(seq 300); do
		now=$(su -c "SELECT query_start FROM pg_stat_activity WHERE backend_type = 'payments billing' AND query = 'running dunning retries'")
		if [ -n "$now" ] && [ "$now" != "$last" ]; then n=$((n + 1)); last=$now; fi
		[ "$n" -ge "$1" ] && { echo ok; return; }
		sleep 0.1
	done
}
is "$(billing_rounds 3)" ok "(three more runs of the billing process went by)"
is "$(missing_said)" 1 "a missing _run_renewals is said once in the log, not at every round"
is "$(q -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 3")" 0 \
	"and nothing is renewed meanwhile"
su -c "ALTER FUNCTION payments._run_renewals_away(bigint, integer) RENAME TO _run_renewals" >/dev/null
is "$(wait_for "SELECT count(*) FILTER (WHERE status = 'paid') || '/' || count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal' AND period_index = 3" 1/1 30)" 1/1 \
	"once the function is back the billing process renews the due period; paid"
su -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null

# --- 1b. a move past several periods: renewed one after another at once --
# A weekly subscription whose clock moves four weeks ahead (as a billing
# process stopped for them would find it): each run takes one period, and a
# run that leaves it still due asks for the next at its COMMIT.  Before,
# each period after the first waited a whole payments.billing_interval
# (here an hour: periods 2 to 4 never came within the wait).
su -c "ALTER SYSTEM SET payments.billing_interval = 3600" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread billing payments.billing_interval 1h)" "1b: the billing process's own round is an hour away"
story catchup
saved_card 4111111111111111
SID=$(q -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '7.00 USD', interval_unit => 'week')")
q -c "SELECT status FROM pay_wait($(latest_payment "$(latest_invoice "$SID")"), '10 s')" >/dev/null
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" active)" active "1b: a weekly subscription, paid"
q -c "SELECT pay_advance_test_clock('4 weeks 1 hour')" >/dev/null
is "$(wait_for "SELECT string_agg(period_index || ':' || status, ',' ORDER BY period_index) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND kind = 'renewal'" \
	"1:paid,2:paid,3:paid,4:paid" 40)" "1:paid,2:paid,3:paid,4:paid" \
	"1b: moved four weeks, the billing process renewed the four periods at once (not one an hour); each paid"
is "$(q -c "SELECT string_agg(period_index::text, ',' ORDER BY payment_id) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID")" "0,1,2,3,4" \
	"1b: charged in the order of the periods"
is "$(for i in $(q -c "SELECT invoice_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID ORDER BY period_index"); do printf '%s,' "$(ledger_charges_of_invoice "$i")"; done)" "1,1,1,1,1," \
	"1b: the simulator's ledger has exactly one charge for each period"
is "$(q -c "SELECT current_period_index || '|' || status || '|' || pay_run_renewals() FROM pay_get_subscription($SID)")" "4|active|0" \
	"1b: in period 4, active, nothing more due"
su -c "ALTER SYSTEM RESET payments.billing_interval" -c "SELECT pg_reload_conf()" >/dev/null

# --- 2. a declining card: past_due, retried on schedule, recovered by a card update
story decline
saved_card 4111111111111111
good=$PM
bad=$(other_card 4000000000000002)
subscribe
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" active)" active "subscribed with a good card"
q -c "SELECT 1 FROM pay_update_subscription($SID, payment_method_id => $bad)" >/dev/null
q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv=$(latest_invoice "$SID")
pid=$(latest_payment "$inv")
is "$(q -c "SELECT status || '|' || decline_code FROM pay_wait($pid, '10 s')")" "failed|2" "the renewal is declined (reason 2)"
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" past_due)" past_due "the subscription is past_due"
is "$(q -c "SELECT attempt_count || '|' || last_failure_code || '|' || (next_attempt_at = first_failed_at + interval '1 day') FROM pay_get_invoice($inv)")" "1|2|true" \
	"the invoice records the decline; the next attempt is a day after the first failure"
is "$(events_of invoice.retry_scheduled "$SID")" 1 "an invoice.retry_scheduled event"
is "$(q -c "SELECT pay_run_dunning()")" 0 "no retry before its day"
q -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
q -c "SELECT pay_run_dunning()" >/dev/null
pid_r=$(latest_payment "$inv")
ok "$([ "$pid_r" != "$pid" ] && echo 0 || echo 1)" "on day 1 the invoice is charged again (or the worker did it)"
is "$(q -c "SELECT status FROM pay_wait($pid_r, '10 s')")" failed "the retry is declined too"
is "$(wait_for "SELECT attempt_count || '|' || (next_attempt_at = first_failed_at + interval '3 days') FROM pay_get_invoice($inv)" "2|true")" "2|true" \
	"two attempts; the next on day 3"
q -c "SELECT 1 FROM pay_update_subscription($SID, payment_method_id => $good)" >/dev/null
pid_u=$(latest_payment "$inv")
ok "$([ "$pid_u" != "$pid_r" ] && echo 0 || echo 1)" "a card update charges the open invoice at once"
is "$(q -c "SELECT status FROM pay_wait($pid_u, '10 s')")" succeeded "and the new card is approved"
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" active)" active "the subscription recovers: active"
is "$(q -c "SELECT status || '|' || attempt_count || '|' || (next_attempt_at IS NULL) FROM pay_get_invoice($inv)")" "paid|3|true" "the invoice is paid after three attempts, no retry left"
is "$(ledger_charges_of_invoice "$inv")" 1 "the simulator's ledger has exactly one charge for it"

# --- 3. dunning to each final action -----------------------------------------
for action in canceled unpaid; do
	story "final $action"
	q -c "SELECT 1 FROM pay_set_dunning_policy(retry_days => '{1,2}', final_action => '$action')" >/dev/null
	saved_card 4111111111111111
	bad=$(other_card 4000000000000002)
	subscribe
	q -c "SELECT 1 FROM pay_update_subscription($SID, payment_method_id => $bad)" >/dev/null
	q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
	q -c "SELECT pay_run_renewals()" >/dev/null
	inv=$(latest_invoice "$SID")
	q -c "SELECT status FROM pay_wait($(latest_payment "$inv"), '10 s')" >/dev/null
	is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" past_due)" past_due "$action: the declined renewal makes it past_due"
	for day in 1 2; do
		q -c "SELECT pay_advance_test_clock('1 day')" >/dev/null
		q -c "SELECT pay_run_dunning()" >/dev/null
		q -c "SELECT status FROM pay_wait($(latest_payment "$inv"), '10 s')" >/dev/null
		is "$(wait_for "SELECT attempt_count FROM pay_get_invoice($inv)" $((day + 1)))" $((day + 1)) "$action: retried on day $day"
	done
	is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" "$action")" "$action" "$action: after the last retry fails the final action applies"
	is "$(q -c "SELECT status FROM pay_get_invoice($inv)")" uncollectible "$action: the invoice is uncollectible"
	is "$(events_of "subscription.$action" "$SID")" 1 "$action: a subscription.$action event"
	is "$(ledger_charges_of_invoice "$inv")" 0 "$action: nothing was charged for it"
done

# --- 4. a card that expires mid-subscription ---------------------------------
story expiry
# valid through next month (the real calendar; the simulator checks it)
exp=$(date -u -d "$(date -u +%Y-%m-15) +1 month" +%Y-%m)
saved_card 4111111111111111 liveMode "${exp%-*}" "$((10#${exp#*-}))"
subscribe
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" active)" active "subscribed with a card valid through $exp"
q -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv=$(latest_invoice "$SID")
is "$(q -c "SELECT status FROM pay_wait($(latest_payment "$inv"), '10 s')")" succeeded "a month on, the card is still valid: the renewal is approved"
# another month on: the card has expired at the gateway too (its clock
# first: the billing process renews as soon as the test clock's move commits)
sim_ctl POST /clock '{"advanceSeconds": 5443200}' >/dev/null	# 63 days
q -c "SELECT pay_advance_test_clock('1 month')" >/dev/null
q -c "SELECT pay_run_renewals()" >/dev/null
inv=$(latest_invoice "$SID")
pid=$(latest_payment "$inv")
is "$(q -c "SELECT status || '|' || decline_code FROM pay_wait($pid, '10 s')")" "failed|8" "the renewal after the card's expiry fails: reason 8, expired"
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" past_due)" past_due "the subscription is past_due"
is "$(q -c "SELECT (next_attempt_at = first_failed_at + interval '7 days') FROM pay_get_invoice($inv)")" t "a hard decline is not retried: the next step is the schedule's last day"
is "$(events_of invoice.retry_scheduled "$SID")" 0 "no retry is scheduled"
q -c "SELECT pay_advance_test_clock('3 days')" >/dev/null
q -c "SELECT pay_run_dunning()" >/dev/null
is "$(q -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $inv")" 1 "the expired card is not charged again on day 3"
q -c "SELECT pay_advance_test_clock('4 days')" >/dev/null
q -c "SELECT pay_run_dunning()" >/dev/null
is "$(wait_for "SELECT status FROM pay_get_subscription($SID)" canceled)" canceled "on day 7 the final action cancels it"
sim_ctl POST /clock '{"advanceSeconds": -5443200}' >/dev/null

# --- 5. renewals from two sessions at once while the worker runs ------------
story concurrent
saved_card 4111111111111111
K=400
su -v merchant="$M" -v pm="$PM" -v n=$K -v amount='7.00 USD' -v due="$(q -c "SELECT pay_billing_now() + interval '1 hour'")" \
	-f "$WORK/test/lib/due_subscriptions.sql" >/dev/null
q -c "SELECT pay_advance_test_clock('2 hours')" >/dev/null
# two sessions run small batches until nothing is due; the worker runs too
runs=""
for s in 1 2; do
	( for i in $(seq 200); do
		[ "$(q -c "SELECT pay_run_renewals(7)")" = 0 ] && break
	done ) &
	runs="$runs $!"
done
wait $runs
is "$(wait_for "SELECT count(*) FILTER (WHERE i.status = 'paid') || '/' || count(*) FROM payments.invoices i JOIN payments.subscriptions s USING (merchant_id, subscription_id) WHERE i.merchant_id = $M AND i.kind = 'renewal' AND i.period_index = 1" "$K/$K" 60)" "$K/$K" \
	"all $K due subscriptions got one renewal invoice, paid"
is "$(q -c "SELECT count(*) FROM (SELECT invoice_id FROM payments.payments WHERE merchant_id = $M AND invoice_id IS NOT NULL GROUP BY invoice_id HAVING count(*) > 1) x")" 0 \
	"no invoice was charged twice in the database"
invs=$(q -c "SELECT string_agg(p.invoice_number, ' ') FROM payments.payments p JOIN payments.invoices i ON i.merchant_id = p.merchant_id AND i.invoice_id = p.invoice_id WHERE p.merchant_id = $M AND i.kind = 'renewal'")
per_invoice() {	# the ledger's charges for each of the given invoice numbers: "count:how many invoices"
	sim_ctl GET /ledger | python3 -c '
import json, sys, collections
invs = sys.argv[1].split()
n = collections.Counter(e["invoiceNumber"] for e in json.load(sys.stdin) if e.get("kind") == "charge")
print(" ".join("%d:%d" % kv for kv in sorted(collections.Counter(n[i] for i in invs).items())))
' "$1"
}
is "$(per_invoice "$invs")" "1:$K" "the simulator's ledger has exactly one charge for each of the $K renewals"

# --- 6. a backend killed -9 in the middle of a large renewal run -------------
story crash
saved_card 4111111111111111
K=3000
su -v merchant="$M" -v pm="$PM" -v n=$K -v amount='8.00 USD' -v due="$(q -c "SELECT pay_billing_now() + interval '1 hour'")" \
	-f "$WORK/test/lib/due_subscriptions.sql" >/dev/null
q -c "SELECT pay_advance_test_clock('2 hours')" >/dev/null
q -c "SET application_name = 'e2e-big-run'" -c "SELECT pay_run_renewals(100000)" >/dev/null 2>&1 &
runner=$!
victim=""
for i in $(seq 100); do
	victim=$(su -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'e2e-big-run' AND state = 'active' AND query LIKE '%pay_run_renewals%'")
	[ -n "$victim" ] && break
	sleep 0.05
done
sleep 0.7
done_before=$(su -c "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND kind = 'renewal'" 2>/dev/null || echo "?")
as_root kill -9 "$victim" 2>/dev/null || kill -9 "$victim" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
ok "$([ -n "$victim" ] && echo 0 || echo 1)" "a backend running pay_run_renewals over $K subscriptions was killed -9 mid-run (pid $victim; $done_before renewals committed by others before)"
for i in $(seq 120); do
	su -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.5
done
like "$(su -c "SELECT 'up'" 2>&1)" '^up$' "the server restarted after the crash"
q -c "SELECT pay_run_renewals(100000)" >/dev/null
is "$(wait_for "SELECT count(*) FILTER (WHERE i.status = 'paid') || '/' || count(*) FROM payments.invoices i WHERE i.merchant_id = $M AND i.kind = 'renewal' AND i.period_index = 1" "$K/$K" 120)" "$K/$K" \
	"after the restart all $K due subscriptions got one renewal invoice, paid"
invs=$(q -c "SELECT string_agg(p.invoice_number, ' ') FROM payments.payments p JOIN payments.invoices i ON i.merchant_id = p.merchant_id AND i.invoice_id = p.invoice_id WHERE p.merchant_id = $M AND i.kind = 'renewal'")
is "$(per_invoice "$invs")" "1:$K" "the simulator's ledger has exactly one charge for each of the $K renewals"
is "$(q -c "SELECT count(*) FROM payments.subscriptions WHERE merchant_id = $M AND (current_period_index <> 1 OR status <> 'active')")" 0 "every subscription is active in period 1"

# --- 7. tenancy end to end ---------------------------------------------------
story "tenant A"
A=$M
saved_card 4111111111111111
subscribe
a_sid=$SID
a_inv=$(latest_invoice "$SID")
story "tenant B"
B=$M
su -c "DROP ROLE IF EXISTS e2e_a" -c "DROP ROLE IF EXISTS e2e_b" -c "CREATE ROLE e2e_a LOGIN" -c "CREATE ROLE e2e_b LOGIN" >/dev/null
su -c "SELECT payments.pay_bind_role('e2e_a', merchant_id => $A)" -c "SELECT payments.pay_bind_role('e2e_b', merchant_id => $B)" >/dev/null
as() {
	local role=$1; shift
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U "$role" -d payments -c "SET search_path = public, payments" "$@"
}
sqlstate_as() { { as "$@" 2>&1 || true; } | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p; }
is "$(as e2e_a -c "SELECT status FROM pay_get_subscription($a_sid)")" active "A's role sees A's subscription"
for f in "pay_get_subscription($a_sid)" "pay_get_invoice($a_inv)" "pay_cancel_subscription($a_sid)" \
	"pay_pause_subscription($a_sid)" "pay_resume_subscription($a_sid)" \
	"pay_update_subscription($a_sid, metadata => '{\"x\": 1}')" "pay_change_subscription($a_sid, quantity => 2)" \
	"pay_preview_subscription_change($a_sid, quantity => 2)" "pay_list_invoices(subscription_id => $a_sid)"; do
	got=$(sqlstate_as e2e_b -c "SELECT * FROM $f")
	if [ "$f" = "pay_list_invoices(subscription_id => $a_sid)" ] && [ -z "$got" ]; then
		got=$(as e2e_b -c "SELECT count(*) FROM $f")
		is "$got" 0 "B: $f lists nothing of A's"
	else
		is "$got" PT404 "B: $f is PT404, as if unknown"
	fi
done
is "$(as e2e_b -c "SELECT count(*) FROM pay_list_subscriptions()")" 0 "B's list of subscriptions has none of A's"
is "$(as e2e_b -c "SELECT count(*) FROM pay_list_invoices()")" 0 "B's list of invoices has none of A's"
like "$(sqlstate_as e2e_b -c "SELECT count(*) FROM payments.subscriptions")" '^42501$' "B's role cannot read the subscriptions table"
is "$(as e2e_a -c "SELECT status || '|' || cancel_at_period_end || '|' || quantity FROM pay_get_subscription($a_sid)")" "active|false|1" "A's subscription is untouched"
is "$(as e2e_b -c "SELECT pay_run_renewals()")" 0 "B's billing run handles only B's subscriptions"

tap_done
