#!/usr/bin/env bash
# The HTTP surface against a hostile client, through a real PostgREST: what
# a client (or the issuer of its JWT) puts in the claims reaches no table
# with a card number in clear (the subject kept in audit_log.app_user is
# masked as a correlation id is), and the requests a hostile client tries
# (an unsigned JWT, a role claim naming the owner, a GET of a function that
# writes, another schema by Accept-Profile, embedding the merchants table,
# several calls in one request, a NUL in the body) change nothing.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/postgrest.sh"
RUNDIR="$WORK/pgrst-hostile"
trap 'postgrest_stop' EXIT
postgrest_install

sql() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
M=$(sql -c "INSERT INTO payments.merchants (name) VALUES ('rest-hostile') RETURNING merchant_id")
postgrest_roles_setup "$WORK" "$PORT" payments
postgrest_start "$WORK" "$PORT" payments "$RUNDIR"

exp=$(($(date +%s) + 900))
# token CLAIMS: a JWT of the role authenticated for merchant M, with CLAIMS
token() { jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"authenticated\",\"merchant_id\":$M,\"exp\":$exp$1}"; }
# call TOKEN FUNCTION JSON [curl args...]: POST /rpc/FUNCTION; "STATUS BODY"
call() {
	local t=$1 fn=$2 body=$3
	shift 3
	pgrst POST "/rpc/$fn" -H "Authorization: Bearer $t" -H 'Content-Type: application/json' -d "$body" "$@"
}
status() { printf '%s\n' "${1%% *}"; }
code() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("code"))' "${1#* }"; }
customers() { sql -c "SELECT count(*) FROM payments.customers WHERE merchant_id = $M AND email = '$1'"; }
# app_user_of ANSWER: the app_user of the audit row of the INSERT of the
# customer a call answered with
app_user_of() {
	local id
	id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["customer_id"])' "${1#* }")
	sql -c "SELECT app_user FROM payments.audit_log WHERE merchant_id = $M AND table_name = 'customers'
		AND operation = 'INSERT' AND (new_row ->> 'customer_id')::bigint = $id"
}

# ---------------------------------------------------------------------------
# 1. A JWT subject that is a card number: the audit row keeps it masked
#    ('X' for each digit, its length kept), as a correlation id; a UUID
#    subject and a user name are kept as they are.  (Before: in clear.)
# ---------------------------------------------------------------------------
n=0
for sub in '4111111111111111' '4111 1111 1111 1111' 'user-5555-5555-5555-4444'; do
	n=$((n + 1))
	r=$(call "$(token ",\"sub\":\"$sub\"")" pay_create_customer "{\"email\": \"sub$n@example.com\"}")
	is "$(status "$r")" 200 "1: a customer made with the JWT subject '$sub' (200)"
	is "$(app_user_of "$r")" "$(sed 's/[0-9]/X/g' <<<"$sub")" \
		"1: its audit row keeps the subject with the card number masked"
done
uuid=4e0b4111-1111-4111-9111-111111111111
r=$(call "$(token ",\"sub\":\"$uuid\"")" pay_create_customer '{"email": "uuid@example.com"}')
is "$(app_user_of "$r")" "$uuid" "1: a UUID subject is kept as it is (an identifier, as a correlation id)"
r=$(call "$(token ',"sub":"ada"')" pay_create_customer '{"email": "ada@example.com"}')
is "$(app_user_of "$r")" ada "1: and a user name"
is "$(sql -c "SELECT count(*) FROM payments.audit_log WHERE merchant_id = $M AND app_user ~ '4111.?1111.?1111.?1111|5555.?5555.?5555.?4444'")" 0 \
	"1: no audit row holds the digits of the card numbers the subjects were"
is "$(sql -c 'SELECT payments.pay_audit_verify() IS NULL')" t "1: the audit chain verifies"
r=$(call "$(token ',"sub":"4111111111111111"')" pay_current_identity '{}')
is "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["jwt_subject"])' "${r#* }")" 4111111111111111 \
	"1: pay_current_identity still shows the caller its own subject"

# ---------------------------------------------------------------------------
# 2. Requests a hostile client tries: none of them acts or writes.
# ---------------------------------------------------------------------------
T=$(token ',"sub":"hostile"')
none=$(printf '%s' '{"alg":"none","typ":"JWT"}' | b64url).$(printf '%s' "{\"role\":\"authenticated\",\"merchant_id\":$M,\"exp\":$exp}" | b64url).
r=$(call "$none" pay_create_customer '{"email": "none@example.com"}')
is "$(status "$r") $(customers none@example.com)" "401 0" "2: an unsigned JWT (alg none): 401, nothing made"
r=$(call "$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"postgres\",\"merchant_id\":$M,\"exp\":$exp}")" pay_create_customer '{"email": "owner@example.com"}')
is "$(status "$r") $(customers owner@example.com)" "403 0" "2: a role claim naming the owner (postgres): 403, nothing made"
r=$(pgrst GET "/rpc/pay_create_customer?email=get@example.com" -H "Authorization: Bearer $T")
is "$(status "$r") $(code "$r") $(customers get@example.com)" "405 25006 0" "2: GET of a function that writes: 405, nothing made"
r=$(call "$T" set_config '{"setting_name": "payments.merchant_id", "new_value": "1", "is_local": true}' -H 'Content-Profile: pg_catalog')
is "$(status "$r") $(code "$r")" "406 PGRST106" "2: a function of pg_catalog through Content-Profile: 406"
cid=$(sql -c "SELECT customer_id FROM payments.customers WHERE merchant_id = $M AND email = 'ada@example.com'")
r=$(pgrst GET "/rpc/pay_get_customer?customer_id=$cid&select=*,merchants(*)" -H "Authorization: Bearer $T")
is "$(status "$r") $(code "$r")" "403 42501" "2: embedding the merchants table in an answer: 403"
r=$(call "$T" pay_create_customer '[{"email": "m1@example.com"}, {"email": "m2@example.com"}]' -H 'Prefer: params=multiple-objects')
is "$(customers m1@example.com)$(customers m2@example.com)" 10 "2: an array with Prefer: params=multiple-objects makes one call"
r=$(call "$T" pay_create_customer '{"email": "nul@example.com", "name": "a\u0000b"}')
is "$(status "$r") $(code "$r") $(customers nul@example.com)" "400 22P05 0" "2: a NUL in a string: 400, nothing made"

# ---------------------------------------------------------------------------
# 3. Clean up: PostgREST stops with the test.
# ---------------------------------------------------------------------------
postgrest_stop
tap_done
