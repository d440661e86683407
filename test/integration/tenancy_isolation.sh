#!/usr/bin/env bash
# Who acts for a merchant, end to end (DESIGN §3.6): two merchants with
# payments at the simulator; real login roles (merchant A's application, a
# role with no grants, a PostgREST-like authenticator that switches to a
# declared anon role) try every way to reach merchant B's payments.  None
# reads or changes anything, and the simulator's ledger shows no capture,
# void or refund but the one B makes itself.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-tenancy"
trap sim_stop EXIT
sim_start "$SIMDIR"

su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
# as ROLE [psql args]: a session logged in as ROLE (not a SET ROLE)
as() {
	local role=$1; shift
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U "$role" -d payments -c "SET search_path = public, payments" "$@"
}
# sqlstate ROLE [psql args]: the SQLSTATE of the first error (empty if none)
sqlstate() {
	as "$@" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p
}

A=$(su -c "INSERT INTO payments.merchants (name) VALUES ('tenancy A') RETURNING merchant_id")
B=$(su -c "INSERT INTO payments.merchants (name) VALUES ('tenancy B') RETURNING merchant_id")
for m in "$A" "$B"; do
	su -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $m)" >/dev/null
done
su -c "DROP ROLE IF EXISTS ten_app_a, ten_app_b, ten_nobody, ten_auth, ten_anon" >/dev/null
su -c "CREATE ROLE ten_app_a LOGIN" -c "CREATE ROLE ten_app_b LOGIN" -c "CREATE ROLE ten_nobody LOGIN" \
	-c "CREATE ROLE ten_anon NOLOGIN" -c "CREATE ROLE ten_auth LOGIN NOINHERIT IN ROLE ten_anon" >/dev/null
su -c "SELECT payments.pay_bind_role('ten_app_a', merchant_id => $A)" \
	-c "SELECT payments.pay_bind_role('ten_app_b', merchant_id => $B)" \
	-c "SELECT payments.pay_declare_postgrest_role('ten_anon')" >/dev/null
# A's application may also read the tables directly: row-level security decides
su -c "GRANT SELECT ON ALL TABLES IN SCHEMA payments TO ten_app_a" >/dev/null

card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"
# B's own payments: an authorization and a purchase, approved by the simulator
bauth=$(as ten_app_b -c "SELECT payment_id FROM pay_authorize(amount => '40.00 USD', card => $card)")
bbuy=$(as ten_app_b -c "SELECT payment_id FROM pay_purchase(amount => '25.00 USD', card => $card)")
is "$(as ten_app_b -c "SELECT status FROM pay_wait($bauth, '10 s')")" requires_capture "B's authorization is approved"
is "$(as ten_app_b -c "SELECT status FROM pay_wait($bbuy, '10 s')")" succeeded "B's purchase is approved"
sim_ctl POST /settle >/dev/null	# B's purchase is settled: refundable
apay=$(as ten_app_a -c "SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => $card)")
is "$(as ten_app_a -c "SELECT merchant_id FROM pay_get_payment($apay)")" "$A" "A's bound login role takes payments for A"

# 1. A's bound role, directly in SQL
for f in "pay_get_payment($bauth)" "pay_payment_operations($bauth)" "pay_wait($bauth, '1 s')" \
	"pay_capture($bauth)" "pay_void($bauth)" "pay_refund($bbuy)"; do
	is "$(sqlstate ten_app_a -c "SELECT * FROM $f")" PT404 "A: $f of B's payment is PT404, as if unknown"
done
# every tenant-owned table (every table with a merchant_id), B holding rows
# in the customer and API key tables too
bcust=$(as ten_app_b -c "SELECT customer_id FROM pay_create_customer(email => 'b@example.com', name => 'B Customer')")
su -c "SELECT key_id FROM payments.pay_create_api_key(merchant_id => $B, scopes => '{read}')" >/dev/null
tenant_tables=$(su -c "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_class c
	JOIN pg_attribute a ON a.attrelid = c.oid
	WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p')
		AND a.attname = 'merchant_id' AND NOT a.attisdropped")
with_b=0
for t in $tenant_tables; do
	[ "$(su -c "SELECT count(*) > 0 FROM payments.$t WHERE merchant_id = $B")" = t ] && with_b=$((with_b + 1))
	is "$(as ten_app_a -c "SELECT count(*) FROM payments.$t WHERE merchant_id <> $A")" 0 "A reads none of B's rows in payments.$t"
done
ok "$([ "$with_b" -ge 10 ] && echo 0 || echo 1)" "B has rows in $with_b of those tables (customers and API keys among them)"
is "$(sqlstate ten_app_a -c "SELECT * FROM pay_get_customer($bcust)")" PT404 "A: pay_get_customer of B's customer is PT404"
for f in "pay_get_payment($bauth)" "pay_void($bauth)" "pay_refund($bbuy)"; do
	is "$(sqlstate ten_app_a -c "SET payments.merchant_id = '$B'" -c "SELECT * FROM $f")" 42501 \
		"A with SET payments.merchant_id = B: $f refused (42501)"
	is "$(sqlstate ten_app_a -c "SET request.jwt.claims = '{\"merchant_id\": \"$B\"}'" -c "SELECT * FROM $f")" 42501 \
		"A with a forged request.jwt.claims (not a PostgREST role): $f refused"
done
is "$(sqlstate ten_app_a -c "SET payments.merchant_id = '$B'" -c "SELECT count(*) FROM payments.payments")" 42501 \
	"A with SET payments.merchant_id = B cannot read the table either"

# 2. a role with no grants at all
for f in "pay_get_payment($bauth)" "pay_capture($bauth)" "pay_void($bauth)" "pay_refund($bbuy)"; do
	is "$(sqlstate ten_nobody -c "SET payments.merchant_id = '$B'" -c "SELECT * FROM $f")" 42501 \
		"a role without grants, setting payments.merchant_id: $f refused"
done
is "$(sqlstate ten_nobody -c "SELECT pay_card_fingerprint($card)")" 42501 "it cannot use pay_card_fingerprint as an oracle"
is "$(sqlstate ten_nobody -c "SELECT pay_metrics()")" 42501 "nor read pay_metrics"
is "$(sqlstate ten_nobody -c "SELECT * FROM pay_worker_health()")" 42501 "nor pay_worker_health"

# 3. PostgREST's authenticator before SET ROLE, and anon without / with a bad claim
is "$(sqlstate ten_auth -c "SET request.jwt.claims = '{\"merchant_id\": \"$B\"}'" -c "SELECT * FROM pay_void($bauth)")" 42501 \
	"the authenticator itself, with claims, before SET ROLE: refused"
is "$(sqlstate ten_auth -c "SET ROLE ten_anon" -c "SELECT * FROM pay_get_payment($bauth)")" 42501 \
	"anon without a JWT: refused (PostgREST: 401), not the default merchant"
is "$(sqlstate ten_auth -c "SET ROLE ten_anon" -c "SET request.jwt.claims = '{\"role\": \"ten_anon\"}'" -c "SELECT * FROM pay_capture($bauth)")" 42501 \
	"anon with a JWT that has no merchant_id: refused"
err=$(as ten_auth -c "SET ROLE ten_anon" -c "SET request.jwt.claims = '{\"merchant_id\": \"999999\"}'" -c "SELECT * FROM pay_purchase(amount => '1.00 USD', card => $card)" 2>&1 || true)
like "$err" "42501: merchant 999999 does not exist" "a claim naming a merchant that does not exist: 42501 (403), not a foreign-key error"
is "$(as ten_auth -c "SET ROLE ten_anon" -c "SET request.jwt.claims = '{\"merchant_id\": \"$B\", \"sub\": \"b-user\"}'" -c "SELECT status FROM pay_get_payment($bauth)")" \
	requires_capture "the declared PostgREST role with B's claim does read B's payment (the positive control)"

# 4. nothing reached B's payments or the gateway
sleep 1
is "$(su -c "SELECT string_agg(kind || ':' || status, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $B")" \
	"authorize:succeeded,purchase:succeeded" "B's payments have only their own operations"
for inv in "P$TAG$bauth" "P$TAG$bbuy"; do
	for kind in capture void refund; do
		is "$(sim_ledger_count "$inv" "$kind")" 0 "the simulator's ledger has no $kind of $inv"
	done
done
# B voids its own authorization: the ledger does record a void when one is made
as ten_app_b -c "SELECT status FROM pay_void($bauth)" >/dev/null
is "$(as ten_app_b -c "SELECT status FROM pay_wait($bauth, '10 s')")" canceled "B itself can void its authorization"
is "$(sim_ledger_count "P$TAG$bauth" void)" 1 "and the simulator's ledger shows that one void"
is "$(su -c "SELECT db_role || '|' || session_role FROM payments.audit_log WHERE merchant_id = $B AND table_name = 'operations'
	AND operation = 'INSERT' AND new_row ->> 'kind' = 'void'")" "ten_app_b|ten_app_b" \
	"the audit row of the void names the role that acted, not the SECURITY DEFINER owner"
is "$(su -c "SELECT count(*) FROM payments.audit_log WHERE merchant_id = $B AND db_role IN ('ten_app_a', 'ten_nobody', 'ten_auth', 'ten_anon')")" 0 \
	"no audit row of B's was written by any other role"

# 5. A and B share one gateway account, so the gateway holds the profiles
#    of both: A charging B's customer's saved card by its profile ids is
#    refused (it was charged); A's own customer's profile is charged
bpm=$(as ten_app_b -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $bcust,
	card => pay_card('5424 0000 0000 0015', 12, extract(year from now())::int + 3, '123'))")
is "$(as ten_app_b -c "SELECT status FROM pay_wait_payment_method($bpm, '10 s')")" active "B saves a card of its customer"
profile_of() {	# profile_of PAYMENT_METHOD: its customer profile id and payment profile id
	su -F ' ' -c "SELECT c.customer_profile_id, m.payment_profile_id FROM payments.payment_methods m
		JOIN payments.customers c USING (merchant_id, customer_id) WHERE m.payment_method_id = $1"
}
read -r bcp bpp < <(profile_of "$bpm")
err=$(as ten_app_a -c "SELECT * FROM pay_purchase(amount => '99.00 USD', customer_profile_id => '$bcp', payment_profile_id => '$bpp')" 2>&1 || true)
like "$err" "PT404: customer profile not found" "A charging B's customer's saved card by its profile ids: PT404"
is "$(su -c "SELECT count(*) FROM payments.payments WHERE customer_profile_id = '$bcp' AND merchant_id = $A")" 0 \
	"nothing was recorded for A"
# A and B share the simulator's account: any id not of A's customers gets
# the same answer, B's or unknown (told apart, sequential ids listed B's
# customers); a leading zero does not slip past as another id: such an id
# is malformed, refused as that (22Y22) before any owner is looked for, as
# on an account of one's own (no one's profile has it, so the answer tells
# nothing of B's customers; before, PT404 here)
b_detail=$(as ten_app_a -v VERBOSITY=verbose -c "SELECT * FROM pay_purchase(amount => '99.00 USD', customer_profile_id => '$bcp', payment_profile_id => '$bpp')" 2>&1 | grep -v '^LOCATION' || true)
u_detail=$(as ten_app_a -v VERBOSITY=verbose -c "SELECT * FROM pay_purchase(amount => '99.00 USD', customer_profile_id => '$((bcp + 1000000))', payment_profile_id => '$bpp')" 2>&1 | grep -v '^LOCATION' || true)
like "$u_detail" "PT404: customer profile not found" "an unknown profile id: PT404 as well"
is "$u_detail" "$b_detail" "with the same detail and hint as B's customer's (no oracle)"
err=$(as ten_app_a -c "SELECT * FROM pay_purchase(amount => '99.00 USD', customer_profile_id => '0$bcp', payment_profile_id => '$bpp')" 2>&1 || true)
like "$err" "22Y22: invalid customer profile id" "B's customer's profile id with a leading zero is refused too, as malformed (22Y22, pgTAP gateway_input)"
acust=$(as ten_app_a -c "SELECT customer_id FROM pay_create_customer(email => 'a@example.com', name => 'A Customer')")
apm=$(as ten_app_a -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $acust, card => $card)")
is "$(as ten_app_a -c "SELECT status FROM pay_wait_payment_method($apm, '10 s')")" active "A saves a card of its own customer"
read -r acp app < <(profile_of "$apm")
ap=$(as ten_app_a -c "SELECT payment_id FROM pay_purchase(amount => '3.00 USD', customer_profile_id => '$acp', payment_profile_id => '$app')")
is "$(as ten_app_a -c "SELECT status FROM pay_wait($ap, '10 s')")" succeeded "A charges its own customer's profile by its ids"

su -c "SELECT payments.pay_forget_role(r) FROM unnest(ARRAY['ten_app_a', 'ten_app_b', 'ten_anon']::regrole[]) r" \
	-c "REVOKE ALL ON ALL TABLES IN SCHEMA payments FROM ten_app_a" \
	-c "DROP ROLE ten_app_a, ten_app_b, ten_nobody, ten_auth, ten_anon" >/dev/null
tap_done
