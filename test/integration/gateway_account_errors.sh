#!/usr/bin/env bash
# Account errors are not declines (issue 9).  With wrong credentials
# (E00007) or an inactive account (E00008) a payment stays pending and its
# operation queued, retried with the merchant's backoff and without
# spending its attempts; the merchant's gateway shows as failing in
# pay_gateway_status, pay_worker_health and pay_metrics, while other
# merchants are served.  Fixing the credentials with pay_configure_gateway
# retries at once, and each purchase is charged exactly once.  Also: the
# credentials check (verify => true), the https-only endpoint rule.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
LOG_FROM=$(stat -c %s "$WORK/postgres.log")	# what the server logs from here on is this test's

SIMDIR="$WORK/sim-account"
sim_start "$SIMDIR"

# su SQL...: as the superuser, no merchant; prints unaligned tuples.
su() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
settings() {	# settings MIN_S MAX_S: the account backoff, reloaded, and the worker going by it
	su -c "ALTER SYSTEM SET payments.account_retry_min = $1" \
		-c "ALTER SYSTEM SET payments.account_retry_max = $2" -c "SELECT pg_reload_conf()" >/dev/null
	shown() { if [ $(($1 % 60)) = 0 ]; then echo "$(($1 / 60))min"; else echo "${1}s"; fi; }	# as SHOW prints it
	ok "$(passed process_reread worker payments.account_retry_min "$(shown "$1")" payments.account_retry_max "$(shown "$2")")" \
		"the worker goes by an account backoff of $1 s doubling to $2 s"
}
cleanup() {
	su -c "ALTER SYSTEM RESET payments.account_retry_min" \
		-c "ALTER SYSTEM RESET payments.account_retry_max" -c "SELECT pg_reload_conf()" >/dev/null || true
	# nothing of this test may keep the worker busy after it
	su -c "UPDATE payments.operations SET status = 'canceled' WHERE merchant_id IN ($A, $B, $C, $D, $E)
		AND status = 'queued'" >/dev/null 2>&1 || true
	sim_stop
}
A=0 B=0 C=0 D=0 E=0
trap cleanup EXIT

A=$(su -c "INSERT INTO payments.merchants (name) VALUES ('account A') RETURNING merchant_id")
B=$(su -c "INSERT INTO payments.merchants (name) VALUES ('account B') RETURNING merchant_id")
C=$(su -c "INSERT INTO payments.merchants (name) VALUES ('account C') RETURNING merchant_id")
configure() {	# configure MERCHANT LOGIN KEY [more named arguments]
	su -c "SELECT payments.pay_configure_gateway(api_login_id => '$2', transaction_key => '$3',
		endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $1${4:+, $4})" >/dev/null
}
q() {	# q MERCHANT SQL...
	local m=$1
	shift
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 \
		-c "SET search_path = public, payments" -c "SET payments.merchant_id = '$m'" "$@"
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"
purchase() { q "$1" -c "SELECT payment_id FROM pay_purchase(amount => '$2', card => $card)"; }
op_of() { q "$1" -c "SELECT operation_id FROM pay_payment_operations($2)"; }
# until SQL: poll every 100 ms, 30 s at most, until SQL prints t
until_true() {
	local i
	for i in $(seq 300); do
		[ "$(su -c "$1")" = t ] && return 0
		sleep 0.1
	done
	return 1
}
account_errors() {	# account_errors MERCHANT OPERATION CODE: exchanges answered with CODE
	su -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $1 AND operation_id = $2
		AND response_masked LIKE '%\"code\":\"$3\"%'"
}

# --- wrong credentials: the payment is held, not declined -----------------
settings 1 4
configure "$A" "$SIM_LOGIN" WrongKey12345678
configure "$B" "$SIM_LOGIN" "$SIM_KEY"
pa=$(purchase "$A" "11.00 USD")
opa=$(op_of "$A" "$pa")
ok "$(passed until_true "SELECT state = 'failing' FROM payments.pay_gateway_status($A)")" \
	"wrong credentials: the merchant's gateway shows as failing"
ok "$(passed until_true "SELECT count(*) >= 3 FROM payments.gateway_exchanges WHERE merchant_id = $A
	AND operation_id = $opa AND response_masked LIKE '%E00007%'")" \
	"the operation is retried (three E00007 answers within seconds at a 1 s backoff)"
row=$(su -c "SELECT p.status || '|' || coalesce(p.decline_code, '-') || '|' || o.status || '|' || o.attempts
	|| '|' || (o.last_error LIKE '%E00007%')
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.merchant_id = $A AND p.payment_id = $pa")
like "$row" '^pending\|-\|(queued|sending)\|[01]\|true$' \
	"the payment stays pending without a decline code, its operation queued with the error, no attempt spent"
is "$(su -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $A AND operation_id = $opa
	AND outcome NOT IN ('retry')")" 0 "every attempt was recorded as a retry"
row=$(su -c "SELECT last_error_code || '|' || (last_error_text LIKE 'User authentication failed%') || '|'
	|| (failing_since <= last_error_at) || '|' || (retry_at - last_error_at BETWEEN interval '0.9 s' AND interval '4.1 s')
	|| '|' || (verification IS NULL) FROM payments.pay_gateway_status($A)")
is "$row" "E00007|true|true|true|true" "pay_gateway_status: the code, the gateway's text, since when, a capped backoff"
is "$(su -c "SELECT count(*) FROM payments.pay_gateway_status($A) WHERE configured AND endpoint_url = '$SIM_TLS_API'
	AND last_error_text NOT LIKE '%WrongKey%'")" 1 "no secret in the status"

row=$(su -c "SELECT failing_gateways >= 1,
	gateway_failures @> '[{\"merchant_id\": $A, \"error_code\": \"E00007\"}]'
	FROM payments.pay_worker_health()")
is "$row" "t|t" "pay_worker_health lists the merchant's gateway as failing with E00007"
# failing_since in UTC whatever the caller's TimeZone (before: in the
# session's, +14:00 here), the instant pay_gateway_status gives
is "$(su -c "SET TimeZone = 'Pacific/Kiritimati'" -c "SELECT concat_ws('|', (f ->> 'failing_since' ~ '\+00:00$')::text,
	((f ->> 'failing_since')::timestamptz = (SELECT g.failing_since FROM payments.pay_gateway_status($A) g))::text)
	FROM payments.pay_worker_health() h, jsonb_array_elements(h.gateway_failures) f
	WHERE (f ->> 'merchant_id')::bigint = $A")" "true|true" \
	"its failing_since in gateway_failures is in UTC from a session in Kiritimati, the time pay_gateway_status gives"
# (the circuit of the simulator's endpoint: the worker's state is another
# endpoint's too, whichever an earlier test left failing)
simhost=${SIM_TLS_API#*://}
simhost=${simhost%%/*}
ok "$(tail -c +$((LOG_FROM + 1)) "$WORK/postgres.log" | grep -q "gateway at $simhost failing" && echo 1 || echo 0)" \
	"the circuit of its endpoint stays closed: an account error is an answer"
metrics=$(su -c "SELECT payments.pay_metrics()")
like "$metrics" "payments_gateway_account_failing\{merchant_id=\"$A\",code=\"E00007\"\} 1" \
	"pay_metrics has the failing merchant with its code"
like "$metrics" "payments_gateway_account_failing_since_seconds\{merchant_id=\"$A\"\} [0-9]{10}" \
	"and since when (Unix time)"
like "$metrics" '^payments_gateway_failing_merchants [1-9]' "and the count of failing merchants"

pb=$(purchase "$B" "12.00 USD")
is "$(q "$B" -c "SELECT status FROM pay_wait($pb, '10 s')")" succeeded \
	"another merchant with good credentials is served meanwhile"
is "$(su -c "SELECT status FROM payments.payments WHERE merchant_id = $A AND payment_id = $pa")" pending "while the first one's payment still waits"

# --- the default backoff (30 s doubling to 15 min) holds; fixing it retries now
settings 30 900
n=$(account_errors "$A" "$opa" E00007)
pa2=$(purchase "$A" "13.00 USD")
opa2=$(op_of "$A" "$pa2")
ok "$(passed until_true "SELECT count(*) > 0 FROM payments.gateway_exchanges WHERE merchant_id = $A
	AND operation_id = $opa2 AND response_masked LIKE '%E00007%'")" "a new purchase of the failing merchant meets E00007 too"
ok "$(passed until_true "SELECT retry_at > now() + interval '25 s' FROM payments.pay_gateway_status($A)")" \
	"with the default settings the merchant is held for at least 30 s"
is "$(su -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $A AND status = 'queued'
	AND next_attempt_at > now() + interval '25 s'")" 2 "both of its operations are held"
is "$(su -c "SELECT held_operations FROM payments.pay_gateway_status($A)")" 2 "pay_gateway_status counts them"
configure "$A" "$SIM_LOGIN" "$SIM_KEY" "verify => true"
t0=$(date +%s)
is "$(q "$A" -c "SELECT status FROM pay_wait($pa, '15 s')")" succeeded \
	"fixing the credentials with pay_configure_gateway sends the held purchase at once"
is "$(q "$A" -c "SELECT status FROM pay_wait($pa2, '15 s')")" succeeded "and the other one"
ok "$(( $(date +%s) - t0 < 15 ? 0 : 1 ))" "well before the end of the backoff"
is "$(sim_ledger_count "P$TAG$pa" charge)|$(sim_ledger_count "P$TAG$pa2" charge)" "1|1" \
	"each of them is charged exactly once"
is "$(su -c "SELECT state || '|' || verification || '|' || verification_code
	FROM payments.pay_gateway_status($A, wait_ms => 10000)")" "ok|succeeded|I00001" \
	"the merchant's gateway is ok again, and verify => true checked the credentials"
is "$(su -c "SELECT failing_gateways = 0 OR NOT gateway_failures @> '[{\"merchant_id\": $A}]'
	FROM payments.pay_worker_health()")" t "pay_worker_health no longer lists it"
metrics=$(su -c "SELECT payments.pay_metrics()")
ok "$(grep -q "payments_gateway_account_failing{merchant_id=\"$A\"" <<<"$metrics" && echo 1 || echo 0)" \
	"nor does pay_metrics"
is "$(account_errors "$A" "$opa" E00007)" "$n" "the held operation was not sent during the backoff"

# --- the credentials check -------------------------------------------------
configure "$A" "$SIM_LOGIN" AnotherWrongKey1 "verify => true"
is "$(su -c "SELECT verification || '|' || verification_code || '|' || state
	FROM payments.pay_gateway_status($A, wait_ms => 10000)")" "failed|E00007|failing" \
	"verify => true with wrong credentials: failed with E00007, and the gateway shows as failing"
is "$(su -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $A
	AND request_type = 'authenticateTestRequest' AND request_masked LIKE '%AnotherWrongKey1%'")" 0 \
	"the check is logged without the transaction key"
err=$(su -c "BEGIN" -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY',
	endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', merchant_id => $A, verify => true)" \
	-c "SELECT * FROM payments.pay_gateway_status($A, wait_ms => 1000)" 2>&1 || true)
like "$err" 'credentials check was asked for in this transaction' \
	"waiting in the transaction that asked for the check is refused (the worker sends it after commit)"
configure "$A" "$SIM_LOGIN" "$SIM_KEY" "verify => true"
is "$(su -c "SELECT verification || '|' || state FROM payments.pay_gateway_status($A, wait_ms => 10000)")" \
	"succeeded|ok" "verify => true with good credentials: succeeded, and the failing state is cleared"

# --- an inactive account (E00008) clears by itself once it is active again ---
settings 1 2
sim_ctl POST /merchants '{"name":"inactiveC","transactionKey":"keyC1234","active":false}' >/dev/null
configure "$C" inactiveC keyC1234
pc=$(purchase "$C" "14.00 USD")
ok "$(passed until_true "SELECT state = 'failing' AND last_error_code = 'E00008' FROM payments.pay_gateway_status($C)")" \
	"an inactive account: the gateway shows as failing with E00008"
is "$(su -c "SELECT status FROM payments.payments WHERE merchant_id = $C AND payment_id = $pc")" pending "and the payment stays pending"
sim_ctl POST /merchants '{"name":"inactiveC","transactionKey":"keyC1234"}' >/dev/null
is "$(q "$C" -c "SELECT status FROM pay_wait($pc, '15 s')")" succeeded \
	"once the account is active again the next retry goes through, without a new configuration"
is "$(su -c "SELECT state FROM payments.pay_gateway_status($C)")" ok "and the failing state clears"
is "$(sim_ledger_count "P$TAG$pc" charge)" 1 "charged exactly once"

# --- a transaction reason that says the same (13: login or password invalid,
#     or the account inactive; the simulator's amount trigger 9013.00) -------
D=$(su -c "INSERT INTO payments.merchants (name) VALUES ('account D') RETURNING merchant_id")
configure "$D" "$SIM_LOGIN" "$SIM_KEY"
pd=$(purchase "$D" "9013.00 USD")
ok "$(passed until_true "SELECT state = 'failing' AND last_error_code = '13' FROM payments.pay_gateway_status($D)")" \
	"reason 13 in a transactionResponse: the merchant's gateway is failing with code 13"
is "$(su -c "SELECT p.status || '|' || coalesce(p.decline_code, '-') || '|' || o.status
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.merchant_id = $D AND p.payment_id = $pd")" "pending|-|queued" \
	"and the payment is not declined: pending, its operation queued"
# it would fail the same way for ever: cancel it (when it is not in flight)
ok "$(passed until_true "WITH c AS (UPDATE payments.operations SET status = 'canceled'
	WHERE merchant_id = $D AND payment_id = $pd AND status = 'queued' RETURNING 1) SELECT count(*) = 1 FROM c")" \
	"a queued operation held by an account error can be canceled"

# --- an account in Test Mode: the gateway approves and stores nothing
#     (testRequest 1, transId 0).  No money moved, so no payment succeeded
#     (before: recorded succeeded, with nothing to capture or refund) ------
settings 1 2
sim_ctl POST /merchants '{"name":"testmodeE","transactionKey":"keyE1234","testMode":true}' >/dev/null
E=$(su -c "INSERT INTO payments.merchants (name) VALUES ('account E') RETURNING merchant_id")
configure "$E" testmodeE keyE1234
pe=$(purchase "$E" "16.00 USD")
ok "$(passed until_true "SELECT state = 'failing' AND last_error_code = 'E00009' FROM payments.pay_gateway_status($E)")" \
	"an account in Test Mode: the gateway shows as failing with E00009"
like "$(su -c "SELECT last_error_text FROM payments.pay_gateway_status($E)")" 'Test Mode.*not stored' "saying why"
is "$(su -c "SELECT p.status || '|' || coalesce(p.gateway_trans_id, '-') || '|' || coalesce(p.decline_code, '-') || '|' || o.status
	FROM payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.merchant_id = $E AND p.payment_id = $pe")" "pending|-|-|queued" \
	"the payment stays pending, its operation queued"
sim_ctl POST /merchants '{"name":"testmodeE","transactionKey":"keyE1234"}' >/dev/null
is "$(q "$E" -c "SELECT status FROM pay_wait($pe, '15 s')")" succeeded "once Test Mode is off the next retry charges it"
is "$(sim_ledger_count "P$TAG$pe" charge)" 1 "charged exactly once"
is "$(su -c "SELECT state FROM payments.pay_gateway_status($E)")" ok "and the failing state clears"

# --- https only ----------------------------------------------------------------
err=$(su -c "SELECT payments.pay_configure_gateway(api_login_id => 'x', transaction_key => 'y',
	endpoint_url => 'http://127.0.0.1:1/xml/v1/request.api', merchant_id => $C)" 2>&1 || true)
like "$err" 'ERROR:  the gateway endpoint must use https' "an http:// endpoint is refused"
like "$(su -c "\\set VERBOSITY verbose" -c "SELECT payments.pay_configure_gateway(api_login_id => 'x', transaction_key => 'y',
	endpoint_url => 'HTTP://127.0.0.1:1/', merchant_id => $C)" 2>&1 || true)" '22Y30.*must use https' \
	"with SQLSTATE 22Y30, whatever the case of the scheme"
like "$err" 'HINT:  .*allow_insecure_endpoint' "the hint names the setting"
is "$(su -c "SELECT endpoint_url FROM payments.pay_gateway_status($C)")" "$SIM_TLS_API" "the configuration is unchanged"
is "$(su -c "SET payments.allow_insecure_endpoint = on" -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN',
	transaction_key => '$SIM_KEY', endpoint_url => '$SIM_API', merchant_id => $C)" -c "SELECT endpoint_url FROM payments.gateway_config WHERE merchant_id = $C" | tail -1)" \
	"$SIM_API" "allowed with payments.allow_insecure_endpoint (a superuser setting, for tests)"
pc2=$(purchase "$C" "15.00 USD")
is "$(q "$C" -c "SELECT status FROM pay_wait($pc2, '15 s')")" succeeded "and it works over http"
su -c "DROP ROLE IF EXISTS account_errors_user" -c "CREATE ROLE account_errors_user" >/dev/null 2>&1
err=$(su -c "SET ROLE account_errors_user" -c "SET payments.allow_insecure_endpoint = on" 2>&1 || true)
like "$err" 'permission denied to set parameter "payments.allow_insecure_endpoint"' "other roles cannot set it"
su -c "DROP ROLE account_errors_user" >/dev/null

tap_done
