#!/usr/bin/env bash
# At most payments.max_waits_per_merchant calls of one merchant made over
# HTTP (a merchant API key, or a declared PostgREST role) wait in pay_wait
# at a time.
#
# A waiting call holds its connection, and behind PostgREST one pool serves
# every merchant: a few calls of one merchant, each waiting on a payment
# that was not going to finish, kept every other merchant's requests out
# (HTTP 504 after PostgREST's pool timeout).  With the limit at 2: a third
# waiting call of merchant A by key gets PT429 at once; a wait with timeout
# 0 still reads the state; merchant B's calls, A's direct SQL calls (a
# client of its own connections) and the calls of the merchant with A's id
# in another database are not counted; a call cancelled or terminated gives
# its place back.  Through a real PostgREST the refusal is HTTP 429 with a
# Retry-After header.
set -euo pipefail
waiters=()
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/postgrest.sh"

SIMDIR="$WORK/sim-waits"
su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
cleanup() {
	su -c "ALTER SYSTEM RESET payments.max_waits_per_merchant" -c "ALTER SYSTEM RESET payments.max_wait" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	[ "${#waiters[@]}" -eq 0 ] || kill "${waiters[@]}" 2>/dev/null || true
	# (a backend waiting in pay_wait does not notice its client gone)
	su -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'wait_'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE IF EXISTS payments_other WITH (FORCE)" >/dev/null 2>&1 || true
	postgrest_stop
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator "waits A" 1000
A=$M
merchant_on_simulator "waits B" 1000
B=$M
# every request takes longer than the merchants' timeout: their purchases
# stay unfinished (unknown, resent) while the tests wait on them
sim_ctl POST /latency '{"fixedMs":30000,"randomMs":0}' >/dev/null
# (the waiting calls wait far longer than the test lasts, whatever a slow
# host makes of it: they are terminated at its end)
su -c "ALTER SYSTEM SET payments.max_waits_per_merchant = 2" -c "ALTER SYSTEM SET payments.max_wait = '10min'" -c "SELECT pg_reload_conf()" >/dev/null
key_of() { su -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $1, scopes => ARRAY['payments', 'read'])"; }
KA=$(key_of "$A")
KB=$(key_of "$B")
purchase() { su -c "SET payments.merchant_id = '$1'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))" | tail -1; }
PA=$(purchase "$A")
PB=$(purchase "$B")
# another database with the extension, for the last checks; made before
# any call waits, so that the calls' timeouts do not run while it is made
cluster_psql "$WORK" "$PORT" postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS payments_other" -c "CREATE DATABASE payments_other" >/dev/null
o() { cluster_psql "$WORK" "$PORT" payments_other -At -v ON_ERROR_STOP=1 "$@"; }
o -c "CREATE EXTENSION payments" >/dev/null
o -c "INSERT INTO payments.merchants (merchant_id, name) OVERRIDING SYSTEM VALUE VALUES ($A, 'waits A, other database')" >/dev/null
KO=$(o -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $A, scopes => ARRAY['payments', 'read'])")
# (no worker serves that database: its purchase stays pending)
PO=$(o -c "SET payments.merchant_id = '$A'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '4.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'))" | tail -1)
# by_key KEY SQL: SQL in a transaction that acts with the API key (as a
# request over HTTP does), with the application_name given in $APP, in
# database $DB (default payments)
by_key() {
	PGAPPNAME=${APP:-waits} cluster_psql "$WORK" "$PORT" "${DB:-payments}" -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		-c "BEGIN" -c "SELECT NULL FROM payments.pay_use_api_key('$1')" -c "$2" -c "COMMIT" 2>&1 | grep -v '^$' || true
}
sqlstate() { sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$1" | head -1; }
# waiting APP: 1 while APP's call runs (after it took its place, it gives
# the place back before it ends)
waiting() { su -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND query LIKE '%pay_wait%' AND state = 'active'"; }
# held APP...: for each APP, 1 once its call was seen asleep in pay_wait
# (wait event Extension: past taking its place, which a call only running
# may not have taken yet: with 1.5 s put in by hand before the first two
# calls' pay_wait, the third call was let in and waited), polled 30 s at
# most; 0 for one never seen so
held() {
	local a out=""
	local -A seen=()
	for _ in $(seq 150); do
		for a in "$@"; do
			[ -n "${seen[$a]:-}" ] || [ "$(su -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$a'
				AND query LIKE '%pay_wait%' AND state = 'active' AND wait_event_type = 'Extension'")" != 1 ] || seen[$a]=1
		done
		[ "${#seen[@]}" = $# ] && break
		sleep 0.2
	done
	for a in "$@"; do out+=${seen[$a]:-0}; done
	echo "$out"
}

waiters=()
APP=wait1 by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '5 min')" >/dev/null & waiters+=($!)
APP=wait2 by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '5 min')" >/dev/null & waiters+=($!)
is "$(held wait1 wait2)" 11 "two of A's calls by key wait for its unfinished purchase"
third=$(by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '25 s')")
is "$(sqlstate "$third")" PT429 "a third of A's calls by key is refused at once: PT429"
like "$third" "too many calls of this merchant are waiting" "saying why"
# The same refusal through a real PostgREST (the test's db-pool, 4, is
# more than the limit here): HTTP 429, PT429's body, and a Retry-After
# header (one second: a place is freed when a waiting call returns).
postgrest_roles_setup "$WORK" "$PORT" payments
postgrest_start "$WORK" "$PORT" payments "$WORK/pgrst-waits"
r=$(pgrst POST /rpc/pay_wait -H "X-Api-Key: $KA" -H 'Content-Type: application/json' \
	-d "{\"payment_id\": $PA, \"timeout\": \"25 s\"}" -D "$WORK/pgrst-waits/429.headers")
code=$(python3 -c 'import json, sys; b = json.loads(sys.argv[1]); print(b.get("code"), "|", b.get("message"))' "${r#* }")
is "${r%% *} $code" "429 PT429 | too many calls of this merchant are waiting" \
	"over PostgREST, the third call by key is answered 429 with PT429 in the body"
is "$(tr -d '\r' < "$WORK/pgrst-waits/429.headers" | sed -n 's/^[Rr]etry-[Aa]fter: //p')" 1 \
	"and a Retry-After header of one second"
postgrest_stop
# (unfinished: pending, or unknown once a request timed out)
like "$(by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '0 s')")" '^(pending|unknown)$' \
	"a call with timeout 0 reads the state without waiting, and is not refused"
like "$(by_key "$KB" "SELECT status FROM payments.pay_wait($PB, '1 s')")" '^(pending|unknown)$' \
	"merchant B's call by key waits (its own count) and times out as usual"
like "$(su -c "SET payments.merchant_id = '$A'" -c "SELECT status FROM payments.pay_wait($PA, '1 s')" | tail -1)" '^(pending|unknown)$' \
	"A's direct SQL call (its own connection, no key) is not counted"

# a cancelled call gives its place back
su -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'wait1'" >/dev/null
for _ in $(seq 150); do [ "$(waiting wait1)" = 0 ] && break; sleep 0.2; done
APP=wait3 by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '5 min')" >/dev/null & waiters+=($!)
is "$(held wait3)" 1 "after one waiting call was cancelled, another one waits in its place"
# and so does one whose backend was terminated
su -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN ('wait2', 'wait3')" >/dev/null
for _ in $(seq 150); do [ "$(waiting wait2)$(waiting wait3)" = 00 ] && break; sleep 0.2; done
APP=wait4 by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '5 min')" >/dev/null & waiters+=($!)
APP=wait5 by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '5 min')" >/dev/null & waiters+=($!)
is "$(held wait4 wait5)" 11 "after the waiting backends were terminated, two calls wait again"
is "$(sqlstate "$(by_key "$KA" "SELECT status FROM payments.pay_wait($PA, '25 s')")")" PT429 \
	"and a third is refused again"

# Merchant ids are per database: the same id in another database with the
# extension is another merchant, with a count of its own, while A's two
# places here are taken.
# (no worker serves that database: pay_wait adds a notice, see
# unserved_database.sh)
other=$(DB=payments_other by_key "$KO" "SELECT status FROM payments.pay_wait($PO, '1 s')")
is "$(grep -v '^\(NOTICE\|DETAIL\|HINT\|LOCATION\): ' <<<"$other")" pending "merchant $A of another database waits by key (its own count) while this database's merchant $A has no place left"
is "$(waiting wait4)$(waiting wait5)" 11 "(while A's two calls here still wait)"
cluster_psql "$WORK" "$PORT" postgres -c "DROP DATABASE payments_other" >/dev/null

su -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN ('wait4', 'wait5')" >/dev/null
for j in "${waiters[@]}"; do wait "$j" 2>/dev/null || true; done
tap_done
