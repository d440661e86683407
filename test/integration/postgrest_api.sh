#!/usr/bin/env bash
# The payment API over HTTP through a real PostgREST (12.0.2, from npm):
# JWT-authenticated calls of the API functions, the gateway answering through
# the simulator, X-Request-Id as the correlation id, SQLSTATEs mapped to HTTP
# statuses, pay_metrics served as text/plain, and payment search.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/postgrest.sh"

SIMDIR="$WORK/sim-postgrest"
RUNDIR="$WORK/postgrest"
trap 'postgrest_stop; sim_stop' EXIT
sim_start "$SIMDIR"
postgrest_install

# Two merchants of this test's own: M calls the API, M2 is the other tenant.
sql() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
M=$(sql -c "INSERT INTO payments.merchants (name) VALUES ('rest') RETURNING merchant_id")
M2=$(sql -c "INSERT INTO payments.merchants (name) VALUES ('rest-other') RETURNING merchant_id")
for m in "$M" "$M2"; do
	sql -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $m)" >/dev/null
done

postgrest_roles_setup "$WORK" "$PORT" payments
postgrest_start "$WORK" "$PORT" payments "$RUNDIR"

exp=$(($(date +%s) + 900))
TOKEN=$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"authenticated\",\"merchant_id\":$M,\"exp\":$exp}")
TOKEN2=$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"authenticated\",\"merchant_id\":$M2,\"exp\":$exp}")
SCRAPER=$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"prometheus\",\"exp\":$exp}")

# call TOKEN FUNCTION JSON [curl args...]: POST /rpc/FUNCTION; "STATUS BODY".
call() {
	local token=$1 fn=$2 body=$3
	shift 3
	pgrst POST "/rpc/$fn" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body" "$@"
}
status() { printf '%s\n' "${1%% *}"; }
body() { printf '%s\n' "${1#* }"; }
# field JSON KEY...: a value of a JSON object (or of the first object of an
# array), as text; nested keys go deeper.
field() {
	python3 -c '
import json, sys
v = json.loads(sys.argv[1])
if isinstance(v, list):
    v = v[0] if v else None
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else v))
' "$@"
}

year=$(($(date +%Y) + 3))
card="{\"number\": \"4111 1111 1111 1111\", \"exp_month\": 12, \"exp_year\": $year, \"cvv\": \"123\", \"holder_name\": \"Ada Lovelace\"}"

# ---------------------------------------------------------------------------
# 1. A purchase: card as a JSON object, amount as a string, X-Request-Id.
# ---------------------------------------------------------------------------
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"12.34 USD\", \"card\": $card, \"description\": \"book\", \"order_ref\": \"rest-order-1\", \"customer\": {\"email\": \"Ada@Example.com\"}}" \
	-H 'X-Request-Id: rest-req-0001')
is "$(status "$r")" 200 "POST /rpc/pay_purchase answers 200"
b=$(body "$r")
pid=$(field "$b" payment_id)
like "$pid" '^[0-9]+$' "the answer is the payment row with its payment_id"
is "$(field "$b" merchant_id)|$(field "$b" status)|$(field "$b" amount)|$(field "$b" card_last4)" "$M|pending|12.34 USD|1111" \
	"the payment belongs to the JWT's merchant_id, is pending, 12.34 USD, card ****1111"
is "$(field "$b" correlation_id)" rest-req-0001 "the X-Request-Id header is the payment's correlation id"
is "$(sql -c "SELECT string_agg(DISTINCT correlation_id, ',') FROM payments.operations WHERE merchant_id = $M AND payment_id = $pid")" rest-req-0001 \
	"and its gateway operation's"
if grep -q '4111 1111 1111 1111\|4111111111111111' <<<"$b"; then ok 1 "the answer holds no card number"; else ok 0 "the answer holds no card number"; fi

r=$(call "$TOKEN" pay_wait "{\"payment_id\": $pid, \"timeout\": \"10 s\"}")
is "$(status "$r") $(field "$(body "$r")" status)" "200 succeeded" "POST /rpc/pay_wait returns the approved payment"
r=$(pgrst GET "/rpc/pay_get_payment?payment_id=$pid" -H "Authorization: Bearer $TOKEN")
is "$(status "$r")" 200 "GET /rpc/pay_get_payment answers 200"
b=$(body "$r")
is "$(field "$b" amount_captured)|$(field "$b" order_ref)|$(field "$b" customer email)" "12.34 USD|rest-order-1|Ada@Example.com" \
	"the payment read back has the captured amount, order reference and customer"
is "$(sim_ledger_count "P$TAG$pid" charge)" 1 "the simulator charged it exactly once"
sql -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND correlation_id = 'rest-req-0001'" >"$RUNDIR/ex"
is "$(cat "$RUNDIR/ex")" 1 "the gateway exchange carries the correlation id"

# card as a JSON string (the pay_card text input), without X-Request-Id
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"5.00 USD\", \"card\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$card")}")
is "$(status "$r")" 200 "a card given as a JSON string is accepted too"
pid_str=$(field "$(body "$r")" payment_id)
like "$(field "$(body "$r")" correlation_id)" '^[0-9a-f]{32}$' "without X-Request-Id a correlation id is generated"

# ---------------------------------------------------------------------------
# 2. Authorize, capture part, void another, refund.
# ---------------------------------------------------------------------------
r=$(call "$TOKEN" pay_authorize "{\"amount\": \"10.00 USD\", \"card\": $card}")
auth=$(field "$(body "$r")" payment_id)
is "$(field "$(body "$(call "$TOKEN" pay_wait "{\"payment_id\": $auth, \"timeout\": \"10 s\"}")")" status)" requires_capture \
	"an authorization over HTTP waits for capture"
r=$(call "$TOKEN" pay_capture "{\"payment_id\": $auth, \"amount\": \"6.00 USD\", \"idempotency_key\": \"rest-cap-1\"}")
is "$(status "$r") $(field "$(body "$r")" kind) $(field "$(body "$r")" amount)" "200 capture 6.00 USD" "POST /rpc/pay_capture returns the capture operation"
b=$(body "$(call "$TOKEN" pay_wait "{\"payment_id\": $auth, \"timeout\": \"10 s\"}")")
is "$(field "$b" status)|$(field "$b" amount_captured)" "succeeded|6.00 USD" "the partial capture went through"
is "$(sim_ledger_count "P$TAG$auth" capture)" 1 "the simulator captured once"

r=$(call "$TOKEN" pay_authorize "{\"amount\": \"7.00 USD\", \"card\": $card}")
auth2=$(field "$(body "$r")" payment_id)
call "$TOKEN" pay_wait "{\"payment_id\": $auth2, \"timeout\": \"10 s\"}" >/dev/null
r=$(call "$TOKEN" pay_void "{\"payment_id\": $auth2}")
is "$(status "$r") $(field "$(body "$r")" kind)" "200 void" "POST /rpc/pay_void returns the void operation"
is "$(field "$(body "$(call "$TOKEN" pay_wait "{\"payment_id\": $auth2, \"timeout\": \"10 s\"}")")" status)" canceled \
	"the voided authorization is canceled"

r=$(call "$TOKEN" pay_refund "{\"payment_id\": $pid, \"reason\": \"returned\"}")
is "$(status "$r") $(field "$(body "$r")" kind) $(field "$(body "$r")" amount)" "200 refund 12.34 USD" "POST /rpc/pay_refund returns the refund operation"
b=$(body "$(call "$TOKEN" pay_wait "{\"payment_id\": $pid, \"timeout\": \"10 s\"}")")
is "$(field "$b" status)|$(field "$b" amount_refunded)" "refunded|12.34 USD" "the payment is refunded"
r=$(pgrst GET "/rpc/pay_payment_operations?payment_id=$pid&select=kind,status" -H "Authorization: Bearer $TOKEN")
is "$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]), separators=(",", ":")))' "$(body "$r")")" \
	'[{"kind":"purchase","status":"succeeded"},{"kind":"refund","status":"succeeded"}]' \
	"GET /rpc/pay_payment_operations lists the operations (PostgREST's select works on it)"

# ---------------------------------------------------------------------------
# 3. Errors: SQLSTATE -> HTTP status, the SQLSTATE in the body.
# ---------------------------------------------------------------------------
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"10.001 USD\", \"card\": $card}")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22Y02" "an amount with too many decimals is 400 with SQLSTATE 22Y02"
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"10.00 XYZ\", \"card\": $card}")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22Y01" "an unknown currency is 400 with 22Y01"
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"10.00 USD\", \"card\": {\"number\": \"4111 1111 1111 1112\", \"exp_month\": 12, \"exp_year\": $year}}")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22Y10" "a card number failing the Luhn check is 400 with 22Y10"
if grep -q '1111 1112\|4111111111111112' <<<"$r"; then ok 1 "the card error does not echo the number"; else ok 0 "the card error does not echo the number"; fi
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"10.00 USD\"}")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22Y22" "no payment method is 400 with 22Y22"
r=$(call "$TOKEN" pay_capture "{\"payment_id\": $auth}")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22Y20" "a second capture is 400 with 22Y20"

key="rest-idem-$RANDOM$RANDOM"
r1=$(call "$TOKEN" pay_purchase "{\"amount\": \"1.00 USD\", \"card\": $card, \"idempotency_key\": \"$key\"}")
r2=$(call "$TOKEN" pay_purchase "{\"amount\": \"1.00 USD\", \"card\": $card, \"idempotency_key\": \"$key\"}")
is "$(status "$r2") $(field "$(body "$r2")" payment_id)" "200 $(field "$(body "$r1")" payment_id)" \
	"the same idempotency key with the same arguments returns the original payment"
r=$(call "$TOKEN" pay_purchase "{\"amount\": \"2.00 USD\", \"card\": $card, \"idempotency_key\": \"$key\"}")
is "$(status "$r") $(field "$(body "$r")" code)" "409 PT409" "the same key with other arguments is 409 with PT409"
like "$(field "$(body "$r")" hint)" 'new idempotency key' "the body carries the hint"

FORGED=$(jwt_hs256 "not-the-secret-not-the-secret-not-the-secret" "{\"role\":\"authenticated\",\"merchant_id\":$M,\"exp\":$exp}")
r=$(call "$FORGED" pay_purchase "{\"amount\": \"1.00 USD\", \"card\": $card}")
is "$(status "$r") $(field "$(body "$r")" code)" "401 PGRST301" "a JWT signed with another secret is refused (401)"
r=$(call "$TOKEN" pay_capture '{"payment_id": 999999999}')
is "$(status "$r") $(field "$(body "$r")" code)" "404 PT404" "an unknown payment is 404 with PT404"
r=$(call "$TOKEN2" pay_refund "{\"payment_id\": $pid_str}")
is "$(status "$r") $(field "$(body "$r")" code)" "404 PT404" "another merchant's payment is 404 for this merchant (PT404)"
is "$(sql -c "SELECT count(*) FROM payments.operations WHERE payment_id = $pid_str AND kind = 'refund'")" 0 \
	"and nothing was refunded"

# ---------------------------------------------------------------------------
# 4. pay_metrics as text/plain (a Prometheus scrape).
# ---------------------------------------------------------------------------
hdr=$(curl -sS -D - -o "$RUNDIR/metrics.txt" -H "Authorization: Bearer $SCRAPER" -H 'Accept: text/plain' "$PGRST_URL/rpc/pay_metrics")
like "$(head -1 <<<"$hdr")" '^HTTP/[0-9.]+ 200' "GET /rpc/pay_metrics with Accept: text/plain answers 200"
like "$(grep -i '^content-type:' <<<"$hdr")" '^[Cc]ontent-[Tt]ype: text/plain' "served as Content-Type text/plain"
metrics=$(cat "$RUNDIR/metrics.txt")
like "$metrics" '^# HELP payments_' "the body is Prometheus text, not a JSON string"
bad=$(python3 - "$RUNDIR/metrics.txt" <<'PY'
import re, sys
# Prometheus text exposition format 0.0.4: comments, and samples
# name{label="value",...} value [timestamp]
name = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
sample = re.compile(r'^(%s)(\{(%s(,%s)*)?,?\})? ([-+]?([0-9.]+([eE][-+]?[0-9]+)?|Inf|NaN))( -?[0-9]+)?$' % (name, label, label))
typed, helped, bad, samples = {}, set(), [], 0
text = open(sys.argv[1]).read()
if not text.endswith('\n'):
    bad.append('no final newline')
for line in text.splitlines():
    if line.startswith('# HELP '):
        helped.add(line.split()[2])
    elif line.startswith('# TYPE '):
        parts = line.split()
        if len(parts) != 4 or parts[3] not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'):
            bad.append(line)
        typed[parts[2]] = parts[3]
    elif line.startswith('#') or line == '':
        continue
    else:
        m = sample.match(line)
        if not m:
            bad.append(line)
            continue
        samples += 1
        base = re.sub(r'_(bucket|sum|count)$', '', m.group(1))
        if m.group(1) not in typed and base not in typed:
            bad.append('no TYPE for ' + line)
if samples == 0:
    bad.append('no samples')
if not typed or set(typed) - helped:
    bad.append('TYPE without HELP: %s' % sorted(set(typed) - helped))
print('\n'.join(bad))
PY
)
is "$bad" "" "every line of it is valid Prometheus exposition text (HELP, TYPE, name{labels} value)"
r=$(pgrst GET /rpc/pay_metrics -H "Authorization: Bearer $SCRAPER" \
	-H 'Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')
is "$(status "$r")" 200 "Prometheus's default Accept header gets an answer"
like "$(body "$r")" '^# HELP payments_' "and the answer is the text"
like "$(sql -c 'SELECT payments.pay_metrics()')" '^# HELP payments_' "SELECT payments.pay_metrics() still returns the text in SQL"
like "$(sql -c "SELECT length(payments.pay_metrics()) > 0 AND payments.pay_metrics() LIKE '%# TYPE%'")" '^t$' \
	"and it works as text in expressions"

# ---------------------------------------------------------------------------
# 5. Payment search over HTTP.
# ---------------------------------------------------------------------------
r=$(pgrst GET "/rpc/pay_list_payments?status=refunded&page_size=20" -H "Authorization: Bearer $TOKEN")
is "$(status "$r")" 200 "GET /rpc/pay_list_payments answers 200"
is "$(python3 -c 'import json,sys; print(",".join(str(p["payment_id"]) for p in json.loads(sys.argv[1])))' "$(body "$r")")" "$pid" \
	"status=refunded finds this merchant's one refunded payment"
r=$(pgrst GET "/rpc/pay_list_payments?customer_email=ada@example.com" -H "Authorization: Bearer $TOKEN")
is "$(python3 -c 'import json,sys; print(",".join(str(p["payment_id"]) for p in json.loads(sys.argv[1])))' "$(body "$r")")" "$pid" \
	"customer_email finds it, whatever the case"
r=$(pgrst GET "/rpc/pay_list_payments?page_size=2" -H "Authorization: Bearer $TOKEN")
first=$(python3 -c 'import json,sys; print(" ".join(str(p["payment_id"]) for p in json.loads(sys.argv[1])))' "$(body "$r")")
r=$(pgrst GET "/rpc/pay_list_payments?page_size=100&after=${first##* }" -H "Authorization: Bearer $TOKEN")
rest=$(python3 -c 'import json,sys; print(" ".join(str(p["payment_id"]) for p in json.loads(sys.argv[1])))' "$(body "$r")")
is "$first $rest" "$(sql -c "SELECT string_agg(payment_id::text, ' ' ORDER BY created_at DESC, payment_id DESC) FROM payments.payments WHERE merchant_id = $M")" \
	"two pages (after = the last payment_id of the first) list every payment of the merchant once, newest first"
r=$(pgrst GET "/rpc/pay_list_payments" -H "Authorization: Bearer $TOKEN2")
is "$(status "$r") $(body "$r")" "200 []" "the other merchant sees none of them"
r=$(pgrst GET "/rpc/pay_list_payments?page_size=100000" -H "Authorization: Bearer $TOKEN")
is "$(status "$r") $(field "$(body "$r")" code)" "400 22023" "a page_size over the bound is 400 with 22023"

# ---------------------------------------------------------------------------
# 6. The identity model (DESIGN.md §3.6): anonymous and claim-less callers
# refused, foreign ids unknown.
# ---------------------------------------------------------------------------
r=$(pgrst POST /rpc/pay_purchase -H 'Content-Type: application/json' -d "{\"amount\": \"1.00 USD\", \"card\": $card}")
like "$(status "$r")" '^40[13]$' "an anonymous call is refused (401/403)"
NOCLAIM=$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"authenticated\",\"exp\":$exp}")
r=$(call "$NOCLAIM" pay_purchase "{\"amount\": \"1.00 USD\", \"card\": $card}")
like "$(status "$r")" '^40[13]$' "a JWT without merchant_id is refused (401/403)"
r=$(pgrst GET "/rpc/pay_get_payment?payment_id=$pid" -H "Authorization: Bearer $TOKEN2")
is "$(status "$r") $(field "$(body "$r")" code)" "404 PT404" "another merchant's payment read is 404 (PT404)"
r=$(pgrst GET "/rpc/pay_metrics" -H "Authorization: Bearer $TOKEN" -H 'Accept: text/plain')
like "$(status "$r")" '^40[13]$' "a merchant's JWT cannot read the metrics"

# ---------------------------------------------------------------------------
# 7. Clean up: PostgREST stops with the test.
# ---------------------------------------------------------------------------
p=$PGRST_PID
postgrest_stop
if kill -0 "$p" 2>/dev/null; then ok 1 "PostgREST has stopped"; else ok 0 "PostgREST has stopped"; fi
for _ in $(seq 50); do
	n=$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'authenticator'")
	[ "$n" = 0 ] && break
	sleep 0.1
done
is "$n" 0 "its connections are gone"

tap_done
