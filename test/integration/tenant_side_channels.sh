#!/usr/bin/env bash
# What a merchant can learn of another merchant, or do to it, besides
# reading its rows (row security and the API's own checks: hostile_roles,
# api_keys_hostile, postgrest_hostile).  Two login roles, each bound to a
# merchant of its own, hostile to each other:
# 1. Every API function given an id of the other merchant's (payment,
#    customer, payment method, plan, subscription, invoice, API key, the
#    gateway profiles of a shared account) answers as for an id that exists
#    nowhere: the same SQLSTATE, message, detail, hint and notices, so no
#    call tells whether the other merchant has that object.
# 2. The other merchant's idempotency keys, customer emails and external
#    references, plan names: used again, they make this merchant's own
#    objects (no unique key spans merchants, no conflict tells of them).
# 3. Row locks: while one merchant holds its objects locked in an open
#    transaction, the other's calls naming them return at once (PT404, no
#    lock wait: neither a denial of service nor a timing oracle), and its
#    own calls do not wait either.
# 4. Monitoring and administration: a bound role can run nothing that shows
#    installation-wide state (pay_worker_health, pay_metrics, dead letters,
#    gateway status, audit): only the API and the types' own functions.
# 5. NOTIFY: the extension notifies no channel (any role may LISTEN on any
#    channel of the database, so a payload would reach every merchant).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
SIMDIR="$WORK/sim-side-channels"
cleanup() {
	cluster_psql "$WORK" "$PORT" payments -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'sess_side_%'" >/dev/null 2>&1 || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
sql() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
year=$(($(date +%Y) + 3))
card="pay_card('4111111111111111', 12, $year, '123', 'Side Channel')"

merchant_on_simulator side-channels-a; A=$M
merchant_on_simulator side-channels-b; B=$M
for r in side_a side_b; do
	sql -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$r') THEN CREATE ROLE $r LOGIN; END IF; END \$\$" >/dev/null
done
sql -c "SELECT payments.pay_bind_role('side_a', $A)" -c "SELECT payments.pay_bind_role('side_b', $B)" >/dev/null
role_sql() {	# role_sql ROLE SQL...: as ROLE, stopping at the first error
	local r=$1
	shift
	cluster_psql "$WORK" "$PORT" payments -At -U "$r" -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" "$@"
}

# merchant's objects: a customer with a saved card, an authorization, a
# plan, a subscription (its first invoice), an API key; prints them as
# "payment customer method plan subscription invoice key"
objects_of() {	# objects_of ROLE MERCHANT TAG
	local r=$1 m=$2 tag=$3 cid pm pay plan sub inv key
	cid=$(role_sql "$r" -c "SELECT customer_id FROM pay_create_customer(email => '$tag@example.com', name => 'Ada $tag',
		external_ref => 'ext-$tag', idempotency_key => 'cust-$tag')")
	pm=$(role_sql "$r" -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid, card => $card,
		validation_mode => 'none')")
	[ "$(role_sql "$r" -c "SELECT status FROM pay_wait_payment_method($pm, '20 s')")" = active ] || return 1
	pay=$(role_sql "$r" -c "SELECT payment_id FROM pay_authorize(amount => '12.00 USD', card => $card,
		description => 'order of $tag', idempotency_key => 'pay-$tag')")
	plan=$(role_sql "$r" -c "SELECT plan_id FROM pay_create_plan(name => 'Gold', amount => '25.00 USD')")
	sub=$(role_sql "$r" -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $cid, plan_id => $plan)")
	inv=$(role_sql "$r" -c "SELECT invoice_id FROM pay_list_invoices(subscription_id => $sub)")
	key=$(sql -c "SELECT key_id FROM payments.pay_create_api_key(merchant_id => $m, scopes => ARRAY['read'], name => '$tag')")
	echo "$pay $cid $pm $plan $sub $inv $key"
}
read -r payA custA _ planA subA _ _ < <(objects_of side_a "$A" side-a)
read -r payB custB pmB planB subB invB keyB < <(objects_of side_b "$B" side-b)
[ -n "$keyB" ] || { echo "Bail out! the merchants' objects were not made"; exit 1; }
# both authorizations answered (captured in 3)
is "$(role_sql side_a -c "SELECT status FROM pay_wait($payA, '20 s')")|$(role_sql side_b -c "SELECT status FROM pay_wait($payB, '20 s')")" \
	"requires_capture|requires_capture" "0: both merchants' authorizations are approved"
# merchant A's admin key (for the key calls)
adminA=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $A, scopes => ARRAY['admin', 'read'])")
# B's customer profile at the gateway (both merchants are on one account)
read -r profB payprofB < <(sql -F ' ' -c "SELECT customer_profile_id, payment_profile_id FROM payments.payment_methods
	WHERE merchant_id = $B AND payment_method_id = $pmB")

###########################################################################
# 1. The answer to an id of merchant B's is the answer to an id that exists
#    nowhere.  Each call runs as side_a in a transaction that is rolled
#    back; the id is masked in what it printed.
answer() {	# answer CALL ID [PRELUDE]: what side_a is told (errors, details, hints, notices)
	local call=${1//%/$2}
	cluster_psql "$WORK" "$PORT" payments -At -U side_a -v VERBOSITY=verbose \
		-c "SET search_path = public, payments" -c "BEGIN" ${3:+-c "$3"} \
		-c "SELECT * FROM $call" -c "ROLLBACK" 2>&1 |
		grep -E '^(ERROR|DETAIL|HINT|NOTICE|WARNING|INFO):' | sed -E "s/(^|[^0-9])$2([^0-9]|$)/\1<id>\2/g" || true
}
nowhere=$(sql -c "SELECT greatest(max(payment_id), 0) + 1000000 FROM payments.payments")
probe() {	# probe CALL B_ID [PRELUDE]: the same answer for B_ID and for an id that exists nowhere
	local theirs none
	theirs=$(answer "$1" "$2" "${3:-}")
	none=$(answer "$1" "$nowhere" "${3:-}")
	if [ -z "$theirs" ]; then
		ok 1 "1: $1 with merchant B's id is refused"
		comment "$(answer "$1" "$2" "${3:-}")"
		return
	fi
	same "$theirs" "$none" "1: $1: merchant B's id is answered as an unknown one"
}
for c in "pay_capture(%)" "pay_void(%)" "pay_refund(%)" "pay_wait(%, '0 s')" "pay_get_payment(%)" \
	"pay_payment_operations(%)" "pay_save_payment_method(customer_id => $custA, payment_id => %)"; do
	probe "$c" "$payB"
done
for c in "pay_update_customer(%, name => 'x')" "pay_get_customer(%)" "pay_delete_customer(%)" \
	"pay_export_customer(%)" "pay_erase_customer(%)" "pay_list_payment_methods(%)" \
	"pay_list_subscriptions(customer_id => %)" "pay_save_payment_method(customer_id => %, card => $card)" \
	"pay_create_subscription(customer_id => %, plan_id => $planA)" "pay_purchase(amount => '1.00 USD', customer_id => %)" \
	"pay_authorize(amount => '1.00 USD', customer_id => %)"; do
	probe "$c" "$custB"
done
for c in "pay_get_payment_method(%)" "pay_wait_payment_method(%, '0 s')" "pay_set_default_payment_method(%)" \
	"pay_delete_payment_method(%)" "pay_purchase(amount => '1.00 USD', payment_method_id => %)" \
	"pay_update_subscription($subA, payment_method_id => %)" \
	"pay_create_subscription(customer_id => $custA, plan_id => $planA, payment_method_id => %)"; do
	probe "$c" "$pmB"
done
for c in "pay_get_plan(%)" "pay_update_plan(%, name => 'x')" "pay_create_subscription(customer_id => $custA, plan_id => %)" \
	"pay_change_subscription($subA, plan_id => %)" "pay_preview_subscription_change($subA, plan_id => %)"; do
	probe "$c" "$planB"
done
for c in "pay_get_subscription(%)" "pay_update_subscription(%, metadata => '{\"a\": 1}')" "pay_cancel_subscription(%)" \
	"pay_pause_subscription(%)" "pay_resume_subscription(%)" "pay_change_subscription(%, plan_id => $planA)" \
	"pay_preview_subscription_change(%, plan_id => $planA)" "pay_list_invoices(subscription_id => %)"; do
	probe "$c" "$subB"
done
probe "pay_get_invoice(%)" "$invB"
for c in "pay_revoke_api_key(%)" "pay_rotate_api_key(%)"; do
	probe "$c" "$keyB" "SELECT 1 FROM payments.pay_use_api_key('$adminA')"
done
probe "pay_use_api_key('pk_%_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')" "$keyB"
# the gateway profiles of merchant B's customer (one gateway account)
probe "pay_purchase(amount => '1.00 USD', customer_profile_id => '%', payment_profile_id => '$payprofB')" "$profB"

###########################################################################
# 2. B's idempotency keys, email, external reference, plan name, used by A.
b_rows() {
	sql -c "SELECT (SELECT count(*) FROM payments.customers WHERE merchant_id = $B) || '|' ||
		(SELECT count(*) FROM payments.payments WHERE merchant_id = $B) || '|' ||
		(SELECT count(*) FROM payments.plans WHERE merchant_id = $B)"
}
b_before=$(b_rows)
out=$(role_sql side_a -c "SELECT merchant_id, customer_id <> $custB FROM pay_create_customer(email => 'side-b@example.com',
	name => 'Ada side-b', external_ref => 'ext-side-b', idempotency_key => 'cust-side-b')" 2>&1 || true)
is "$out" "$A|t" "2: merchant B's customer idempotency key, email and external reference make a customer of A's"
out=$(role_sql side_a -c "SELECT merchant_id, payment_id <> $payB, status FROM pay_authorize(amount => '12.00 USD', card => $card,
	description => 'order of side-b', idempotency_key => 'pay-side-b')" 2>&1 || true)
is "$out" "$A|t|pending" "2: merchant B's payment idempotency key (same request) makes a payment of A's, not B's answer"
out=$(role_sql side_a -c "SELECT count(*) FROM pay_find_customers(email => 'side-b@example.com') WHERE merchant_id <> $A" \
	-c "SELECT count(*) FROM pay_find_customers(external_ref => 'ext-side-a')" 2>&1 || true)
is "$out" $'0\n1' "2: A's search by B's email finds only its own; its own external reference once"
is "$(role_sql side_a -c "SELECT merchant_id FROM pay_create_plan(name => 'Gold', amount => '25.00 USD')" 2>&1 || true)" "$A" \
	"2: a plan of the same name as B's is A's own"
is "$(b_rows)" "$b_before" "2: merchant B's customers, payments and plans are as B made them"

###########################################################################
# 3. Merchant B holds its objects locked in an open transaction.
sessions_init side-locks
M=$B session side_b_holder
say side_b_holder "BEGIN;
SELECT 1 FROM pay_update_customer($custB, name => 'locked');
SELECT 1 FROM pay_set_default_payment_method($pmB);
SELECT 1 FROM pay_update_plan($planB, name => 'locked');
SELECT 1 FROM pay_update_subscription($subB, metadata => '{\"locked\": true}');
SELECT 1 FROM pay_rotate_api_key($keyB);
SELECT status FROM pay_capture($payB);
\\echo held"
[ -n "$(poll_value 20 done_with side_b_holder held)" ] || comment "$(cat "$SESS/side_b_holder.out")"
like "$(cat "$SESS/side_b_holder.out")" "^queued$" "3: merchant B holds its customer, method, plan, subscription, key and payment locked (a capture queued)"
lockwait() {	# lockwait CALL [PRELUDE]: SQLSTATE of side_a's CALL under a 2 s lock_timeout
	cluster_psql "$WORK" "$PORT" payments -At -U side_a -v VERBOSITY=verbose \
		-c "SET search_path = public, payments" -c "SET lock_timeout = '2s'" -c "BEGIN" ${2:+-c "$2"} \
		-c "SELECT * FROM $1" -c "ROLLBACK" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p
}
for c in "pay_update_customer($custB, name => 'x')" "pay_delete_customer($custB)" "pay_erase_customer($custB)" \
	"pay_set_default_payment_method($pmB)" "pay_delete_payment_method($pmB)" "pay_update_plan($planB, name => 'x')" \
	"pay_cancel_subscription($subB)" "pay_update_subscription($subB, metadata => '{}')" \
	"pay_capture($payB)" "pay_void($payB)" "pay_refund($payB)"; do
	is "$(lockwait "$c")" PT404 "3: $c while merchant B holds it: PT404 at once, no lock wait"
done
for c in "pay_rotate_api_key($keyB)" "pay_revoke_api_key($keyB)"; do
	is "$(lockwait "$c" "SELECT 1 FROM payments.pay_use_api_key('$adminA')")" PT404 "3: $c with A's admin key while B rotates it: PT404 at once"
done
# and A's own business goes on beside B's locks
out=$(cluster_psql "$WORK" "$PORT" payments -At -U side_a -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" \
	-c "SET lock_timeout = '2s'" -c "SELECT status FROM pay_capture($payA)" -c "SELECT 1 FROM pay_update_customer($custA, name => 'y')" \
	-c "SELECT 1 FROM pay_update_subscription($subA, metadata => '{}')" -c "SELECT 1 FROM pay_create_plan(name => 'Silver', amount => '5.00 USD')" 2>&1 || true)
is "$out" $'queued\n1\n1\n1' "3: merchant A captures, updates its customer and subscription, makes a plan meanwhile"
say side_b_holder "ROLLBACK;"
close side_b_holder

###########################################################################
# 4. What a bound role may run: the API and the types' own functions, no
#    monitoring (installation-wide: every merchant's queue, errors, hosts).
out=$(sql -c "SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text) FROM pg_proc p
	WHERE p.pronamespace = 'payments'::regnamespace AND has_function_privilege('side_a', p.oid, 'EXECUTE')
		AND NOT payments._public_function(p.oid::regprocedure) AND p.proname <> ALL (payments._api_function_names())")
is "$out" "" "4: a bound role runs no function beyond the API and the types' own"
out=$(sql -c "SELECT string_agg(f, ', ') FROM unnest(ARRAY['pay_worker_health()', 'pay_metrics()', 'pay_dead_letters()',
		'pay_gateway_status(bigint,integer)', 'pay_audit_verify(bigint,jsonb)', 'pay_audit_digest(bigint)']) f
	WHERE to_regprocedure('payments.' || f) IS NULL
		OR has_function_privilege('side_a', to_regprocedure('payments.' || f), 'EXECUTE')")
is "$out" "" "4: pay_worker_health, pay_metrics, pay_dead_letters, pay_gateway_status and the audit's exist and are not the bound role's"
for q in "SELECT * FROM payments.pay_worker_health()" "SELECT payments.pay_metrics()" "SELECT * FROM payments.pay_dead_letters()" \
	"SELECT * FROM payments.pay_gateway_status($B)"; do
	is "$(role_sql side_a -v VERBOSITY=verbose -c "$q" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p')" 42501 "4: $q as a bound role: 42501"
done

###########################################################################
# 5. No NOTIFY: no function of the schema notifies, nor does the library.
out=$(sql -c "SELECT string_agg(p.proname, ', ') FROM pg_proc p WHERE p.pronamespace = 'payments'::regnamespace
	AND p.prolang <> 13 AND p.prosrc ~* '(\\mpg_notify\\M|\\mnotify\\M)'")
is "$out" "" "5: no function of the schema notifies a channel"
lib="$(sql -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")/payments.so"
if [ -f "$lib" ]; then
	out=$(nm -D --undefined-only "$lib" | grep -E '\b(Async_Notify|pg_notify)\b' || true)
	is "$out" "" "5: the library calls no Async_Notify"
else
	ok 1 "5: the library was found"
fi

tap_done
