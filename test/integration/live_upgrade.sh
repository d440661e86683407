#!/usr/bin/env bash
# Payments live through the update from the released 0.1.0, as a DBA does
# it (README, "Versions and upgrades"): the real 0.1.0 library, built from
# the commit that released it, serves payments against the simulator; the
# server stops with a request in flight and a card payment still waiting;
# the new build is installed, the server restarts and waits for the
# update; ALTER EXTENSION payments UPDATE; then the payments made under
# 0.1.0 go on living: the one in flight is found at the gateway and
# recorded once, authorizations are captured and voided, a capture
# repeated with its 0.1.0 idempotency key is not made twice, and after the
# batch settles, refunds a week later reach the customer.  The audit rows
# of both versions verify under one chain of seals.
#
# upgrade_chain.sh proves an upgraded schema equals a fresh one; this test
# proves the running system survives the step.  It needs the repository's
# history (the 0.1.0 sources come from git).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

UP="$WORK/live-upgrade"
UPPORT=$(free_port)
SIMDIR="$UP/sim"
MAIN_BINDIR=$PG_BINDIR
# builds and installs go by the machine's pg_config (headers, install paths),
# not the private tree's copy of it
PGC="${PG_BINDIR#"$WORK/pg"}/pg_config"
mkdir -p "$UP"
as_root chown "$PG_OS_USER" "$UP"
cleanup() {
	PG_BINDIR=$UP_BINDIR cluster_stop "$UP" 2>/dev/null || true
	sim_stop
}
UP_BINDIR=$MAIN_BINDIR
trap cleanup EXIT

# ---------------------------------------------------------------------------
# The released 0.1.0: the parent of the commit that moved default_version
# off 0.1.0 (after it, only the 0.2.0 upgrade script grows).
# ---------------------------------------------------------------------------
# git of this checkout (owned by another user, as a bind mount may be)
g() { git -c safe.directory='*' -C "$REPO_ROOT" "$@"; }
g rev-parse --verify -q HEAD >/dev/null ||
	die "live_upgrade needs the repository's git history to build the released 0.1.0 (this checkout has none)"
[ "$(g rev-parse --is-shallow-repository)" = false ] ||
	die "live_upgrade needs the whole git history to build the released 0.1.0: run git fetch --unshallow"
moved=$(g log --format=%H -S"default_version = '0.1.0'" -- payments.control | sed -n 1p)
[ -n "$moved" ] || die "no commit of payments.control names default_version 0.1.0"
release=$(g rev-parse "$moved^")
is "$(g show "$release:payments.control" | sed -n "s/^default_version = '\(.*\)'/\1/p")" 0.1.0 \
	"the released 0.1.0 is commit ${release:0:10}"
is "$(g show "$release:sql/payments--0.1.0.sql" | sha256sum)" "$(sha256sum < "$REPO_ROOT/sql/payments--0.1.0.sql")" \
	"its install script is the frozen sql/payments--0.1.0.sql"

mkdir -p "$UP/src-0.1.0"
g archive "$release" | tar -x -C "$UP/src-0.1.0"
make -C "$UP/src-0.1.0" -s -j"$(nproc)" PG_CONFIG="$PGC" PG_CFLAGS="-Wall -Wextra" >"$UP/build-0.1.0.log" 2>&1 || { cat "$UP/build-0.1.0.log" >&2; die "0.1.0 did not build"; }
UP_BINDIR=$(private_pg_tree "$UP/pg" "$PGC")
as_root make -C "$UP/src-0.1.0" -s install PG_CONFIG="$PGC" DESTDIR="$UP/pg" >/dev/null

PG_BINDIR=$UP_BINDIR
cluster_init "$UP" "$UPPORT" "fsync = off" "synchronous_commit = off" "full_page_writes = off" "max_prepared_transactions = 2"
cluster_start "$UP"
uq() { cluster_psql "$UP" "$UPPORT" "$@"; }
uq postgres -c 'CREATE DATABASE payments'
uq payments -c 'CREATE EXTENSION payments'
is "$(uq payments -Atc "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.1.0 \
	"a cluster runs the released 0.1.0"

sim_start "$SIMDIR"
M=$(uq payments -Atc "INSERT INTO payments.merchants (name) VALUES ('upgrade') RETURNING merchant_id")
# a second merchant whose gateway does not answer: its card payment waits,
# queued with its card sealed in the 0.1.0 vault, when the server stops
M2=$(uq payments -Atc "INSERT INTO payments.merchants (name) VALUES ('unreachable') RETURNING merchant_id")
# (a 20 s timeout: the purchase held at the gateway below is still in
# flight when the server stops, however slow the steps between; with 5 s,
# 5.5 s put in by hand before the stop found it timed out, looked up
# and succeeded: nothing was left in flight for the update to find)
uq payments -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 20000, merchant_id => $M)" >/dev/null
closed=$(free_port)
uq payments -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => 'https://127.0.0.1:$closed/xml/v1/request.api', ca_file => '$SIM_CA', timeout_ms => 2000, merchant_id => $M2)" >/dev/null
TAG=$(uq payments -Atc "SELECT payments._invoice_tag()")

# qm MERCHANT [psql args]: psql as that merchant, as applications of 0.1.0
# and 0.2.0 alike name it (the cluster's superuser may act for any).
qm() {
	local m=$1; shift
	uq payments -At -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$m'" "$@"
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
pay() {		# pay KIND AMOUNT [EXTRA ARGS]: a payment of M, waited for; its id
	local pid
	pid=$(qm "$M" -c "SELECT payment_id FROM pay_$1(amount => '$2', card => $card${3:+, $3})")
	qm "$M" -c "SELECT status FROM pay_wait($pid, '20 s')" >/dev/null
	echo "$pid"
}
status_of() { qm "$M" -c "SELECT status FROM pay_get_payment($1)"; }
wait_status() {	# wait_status PAYMENT STATUS [SECONDS]: true once it has it
	local i
	for i in $(seq $((${3:-30} * 10))); do
		[ "$(status_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
pledger() { sim_ledger "P$TAG$1"; }
# as_role ROLE MERCHANT [psql args]: psql as a login role of the
# application, naming its merchant as 0.1.0's applications did
as_role() {
	local r=$1 m=$2; shift 2
	uq payments -U "$r" -At -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$m'" "$@"
}
uq postgres -c 'CREATE ROLE shop LOGIN' -c 'CREATE ROLE intruder LOGIN' >/dev/null

# ---------------------------------------------------------------------------
# Life under 0.1.0.
# ---------------------------------------------------------------------------
P1=$(pay purchase '25.00 USD')
A1=$(pay authorize '40.00 USD')
A2=$(pay authorize '15.00 USD')
A3=$(pay authorize '18.00 USD')
K=$(pay purchase '12.34 USD' "idempotency_key => 'order-77'")
S1=$(as_role shop "$M" -c "SELECT payment_id FROM pay_purchase(amount => '7.50 USD', card => $card)")
qm "$M" -c "SELECT status FROM pay_wait($S1, '20 s')" >/dev/null
like "$(as_role intruder "$M" -c "SELECT status FROM pay_get_payment($S1)" 2>&1)" '^succeeded$' \
	"under 0.1.0 an application role acts for its merchant by a SET, and so can any role (the defect 0.2.0 fixes)"
C3=$(qm "$M" -c "SELECT operation_id FROM pay_capture(payment_id => $A3, idempotency_key => 'capture-A3')")
wait_status "$A3" succeeded || true
is "$(status_of "$P1") $(status_of "$A1") $(status_of "$A2") $(status_of "$A3") $(status_of "$K")" \
	"succeeded requires_capture requires_capture succeeded succeeded" \
	"under 0.1.0: a purchase, two open authorizations, a captured one and an idempotent purchase"

# A refund the gateway holds for review (the simulator holds one of
# 9252.00): 0.1.0 records it succeeded and never counts it.
H1=$(pay purchase '9500.50 USD')
sim_ctl POST /settle >/dev/null
# settled, as 0.1.0's settlement check learns within the minute
uq payments -qc "UPDATE payments.payments SET settled_at = now() WHERE merchant_id = $M AND payment_id = $H1"
HR=$(qm "$M" -c "SELECT operation_id FROM pay_refund(payment_id => $H1, amount => '9252.00 USD')")
held() { [ "$(qm "$M" -c "SELECT status || ' ' || response_code FROM pay_payment_operations($H1) WHERE operation_id = $HR")" = "succeeded 4" ] && echo yes; }
is "$(poll_value 20 held)" yes "under 0.1.0 a refund held for review is recorded succeeded"
is "$(sim_ledger "R$TAG$HR")" "held 9252.00" "(the gateway holds it)"

# In flight at the stop: the gateway takes the purchase and charges it, but
# its answer never comes back before the server goes down.
sim_ctl POST /faults '{"type":"hold","count":1,"process":true,"requestType":"createTransactionRequest","holdMs":60000}' >/dev/null
P2=$(qm "$M" -c "SELECT payment_id FROM pay_purchase(amount => '33.00 USD', card => $card)")
sending() { [ "$(qm "$M" -c "SELECT count(*) FROM pay_payment_operations($P2) WHERE status = 'sending'")" = 1 ] && echo yes; }
is "$(poll_value 20 sending)" yes "a purchase is in flight (sent, its answer held by the gateway)"
is "$(pledger "$P2")" "charge 33.00" "and the gateway has charged it"
# Waiting at the stop: a card payment whose gateway cannot be reached yet.
P3=$(qm "$M2" -c "SELECT payment_id FROM pay_purchase(amount => '21.00 USD', card => $card)")
retried() { [ "$(qm "$M2" -c "SELECT count(*) FROM pay_payment_operations($P3) WHERE status = 'queued' AND last_error IS NOT NULL")" = 1 ] && echo yes; }
is "$(poll_value 20 retried)" yes "a card payment waits for its unreachable gateway, queued"
sealed=$(uq payments -Atc "SELECT payments.pay_audit_seal()")
ok "$([ "${sealed:-0}" -ge 1 ] && echo 0 || echo 1)" "0.1.0's audit rows are sealed ($sealed batches)"
is "$(qm "$M" -c "SELECT string_agg(status, ',') FROM pay_payment_operations($P2)")" sending \
	"the held purchase is still in flight as the server stops"

# ---------------------------------------------------------------------------
# The update: stop, install the new build, start.
# ---------------------------------------------------------------------------
cluster_stop "$UP"
sim_ctl DELETE /faults >/dev/null
as_root make -C "$REPO_ROOT" -s install PG_CONFIG="$PGC" DESTDIR="$UP/pg" >/dev/null
: >"$UP/postgres.log.before" && as_root cp "$UP/postgres.log" "$UP/postgres.log.before"
cluster_start "$UP"
waits() { grep -q 'payments worker waits: database "payments" has schema version 0.1.0' "$UP/postgres.log" && echo yes; }
is "$(poll_value 30 waits)" yes "the new library's worker waits for the update, and says so"
like "$(qm "$M" -v VERBOSITY=verbose -c "SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => $card)" 2>&1 || true)" \
	'PT503' "a payment before the update is refused with PT503"
is "$(uq payments -Atc "SELECT amount FROM payments.payments WHERE merchant_id = $M AND payment_id = $P1")" "25.00 USD" \
	"0.1.0's rows stay readable meanwhile"
is "$(pledger "$P2")" "charge 33.00" "and nothing was sent meanwhile"

# An update rolled back: the session that made it (and found the schema
# served inside it) is refused again afterwards, not served from memory.
rolled=$(uq payments -At -v VERBOSITY=verbose -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" \
	-c 'BEGIN' -c 'ALTER EXTENSION payments UPDATE' -c 'SELECT pay_current_merchant()' -c 'ROLLBACK' \
	-c "SELECT payment_id FROM pay_purchase(amount => '1.00 USD', card => $card)" 2>&1 || true)
like "$rolled" "^$M\$" "an update rolled back: inside it the session is served (pay_current_merchant answers)"
like "$rolled" 'PT503' "after the rollback the same session is refused again (PT503), not served from memory"
# The same with nothing but the version changed (no relation made, so the
# rollback sends no message any backend would take in): only forgetting
# at the rollback keeps the answer true.
fake() { uq payments -At -v VERBOSITY=verbose -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" "$@" 2>&1 || true; }
fake_version="UPDATE pg_extension SET extversion = '0.2.0' WHERE extname = 'payments'"
probe="SELECT 'probe', payment_id FROM pay_purchase(amount => '1.00 USD', card => $card)"
faked=$(fake -c 'BEGIN' -c "$fake_version" -c "$probe" -c 'ROLLBACK' -c "$probe")
like "$faked" '^probe\|[0-9]+$' "a version changed in a transaction: inside it the session is served"
like "$faked" 'PT503' "rolled back, the change is forgotten: refused again (PT503)"
# a savepoint rolled back, and a transaction prepared (its changes are
# not this session's any more), likewise
sub=$(fake -c 'BEGIN' -c 'SAVEPOINT s' -c "$fake_version" -c "$probe" -c 'ROLLBACK TO SAVEPOINT s' -c "$probe" -c 'ROLLBACK')
like "$sub" '^probe\|[0-9]+$' "a version changed in a savepoint: served inside it"
like "$sub" 'PT503' "the savepoint rolled back forgets it within the transaction (PT503)"
prep=$(fake -c 'BEGIN' -c "$fake_version" -c "$probe" -c "PREPARE TRANSACTION 'fake_version'" -c "$probe")
uq payments -c "ROLLBACK PREPARED 'fake_version'" >/dev/null
like "$prep" '^probe\|[0-9]+$' "a version changed in a transaction then prepared: served inside it"
like "$prep" 'PT503' "once prepared (its changes no longer this session's) it is forgotten (PT503)"
is "$(uq payments -Atc "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.1.0 "(still 0.1.0)"

# README: the update and the bindings of the application's roles in one
# transaction, so that no request of the application falls between them
uq payments -v ON_ERROR_STOP=1 -c 'BEGIN' -c 'ALTER EXTENSION payments UPDATE' \
	-c "SELECT payments.pay_bind_role('shop', merchant_id => $M)" -c 'COMMIT' >/dev/null
is "$(uq payments -Atc "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.2.0 \
	"ALTER EXTENSION payments UPDATE brings it to 0.2.0, with the application's role bound in the same transaction"
is "$(as_role shop "$M" -c "SELECT status FROM pay_get_payment($S1)")" succeeded \
	"the bound role acts for its merchant on its 0.1.0 payment"
like "$(as_role intruder "$M" -v VERBOSITY=verbose -c "SELECT status FROM pay_get_payment($S1)" 2>&1 || true)" \
	'42501' "another role's SET no longer acts for the merchant (42501)"

# ---------------------------------------------------------------------------
# Life under 0.2.0 of what 0.1.0 began.
# ---------------------------------------------------------------------------
is "$(qm "$M" -c "SELECT status FROM pay_payment_operations($H1) WHERE operation_id = $HR")|$(qm "$M" -c "SELECT amount_refunded FROM pay_get_payment($H1)")" \
	"in_review|0.00 USD" "the update makes the refund 0.1.0 recorded held in_review"
curl -sS -H 'Content-Type: application/json' -d "{\"updateHeldTransactionRequest\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},\"heldTransactionRequest\":{\"action\":\"approve\",\"refTransId\":\"$(qm "$M" -c "SELECT gateway_trans_id FROM pay_payment_operations($H1) WHERE operation_id = $HR")\"}}}" "$SIM_API" >/dev/null
ok "$(passed wait_status "$H1" partially_refunded 130)" "approved at the gateway, the review check counts it"
is "$(qm "$M" -c "SELECT amount_refunded FROM pay_get_payment($H1)")" "9252.00 USD" "its amount reaches amount_refunded"
ok "$(passed wait_status "$P2" succeeded 60)" "the purchase in flight at the stop is found at the gateway and recorded as succeeded"
is "$(pledger "$P2")" "charge 33.00" "charged once"
is "$(qm "$M" -c "SELECT gateway_trans_id IS NOT NULL FROM pay_get_payment($P2)")" t "with its gateway transaction"
ok "$(M=$M2 passed wait_status "$P3" failed 60)" "the card payment waiting at the stop fails (its card went with 0.1.0's vault key)"
like "$(qm "$M2" -c "SELECT coalesce(decline_reason, '') || ' ' || coalesce((SELECT string_agg(reason, ';') FROM pay_payment_operations($P3)), '') FROM pay_get_payment($P3)")" \
	'ask for the card again' "with the reason that says to ask for the card again"
is "$(pledger "$P3")" "" "and the gateway never charged it"

cap=$(qm "$M" -c "SELECT operation_id FROM pay_capture(payment_id => $A1)")
void=$(qm "$M" -c "SELECT operation_id FROM pay_void(payment_id => $A2)")
ok "$(passed wait_status "$A1" succeeded)" "an authorization made under 0.1.0 is captured under 0.2.0"
ok "$(passed wait_status "$A2" canceled)" "another is voided"
is "$(pledger "$A1");$(pledger "$A2")" "authorization 40.00,capture 40.00;authorization 15.00,void 0.00" \
	"the gateway captured the one and voided the other"
is "$(qm "$M" -c "SELECT operation_id FROM pay_capture(payment_id => $A3, idempotency_key => 'capture-A3')")" "$C3" \
	"a capture repeated with its 0.1.0 idempotency key returns the 0.1.0 capture"
is "$(pledger "$A3")" "authorization 18.00,capture 18.00" "and the gateway captured it once"
like "$(qm "$M" -v VERBOSITY=verbose -c "SELECT payment_id FROM pay_purchase(amount => '12.34 USD', card => $card, idempotency_key => 'order-77')" 2>&1 || true)" \
	'PT409' "a card purchase repeated with its 0.1.0 idempotency key answers PT409 (README: the key hashed the fingerprint)"
is "$(pledger "$K")" "charge 12.34" "and is not charged again"

# The batch settles; a week later, refunds.  A server restart in between.
sim_ctl POST /settle >/dev/null
sim_ctl POST /clock '{"advanceSeconds":604800}' >/dev/null
cluster_stop "$UP"
cluster_start "$UP"
r1=$(qm "$M" -c "SELECT operation_id FROM pay_refund(payment_id => $P1)")
r2=$(qm "$M" -c "SELECT operation_id FROM pay_refund(payment_id => $A1, amount => '10.00 USD')")
r3=$(as_role shop "$M" -c "SELECT operation_id FROM pay_refund(payment_id => $S1)")
ok "$(passed wait_status "$P1" refunded 60)" "a week after settlement, a 0.1.0 purchase is refunded in full"
ok "$(passed wait_status "$A1" partially_refunded 60)" "and a 0.1.0 authorization, captured under 0.2.0, in part"
ok "$(passed wait_status "$S1" refunded 60)" "the application's role refunds its 0.1.0 purchase"
is "$(sim_ledger "R$TAG$r1");$(sim_ledger "R$TAG$r2");$(sim_ledger "R$TAG$r3")" "refund 25.00;refund 10.00;refund 7.50" \
	"the gateway refunded 25.00, 10.00 and 7.50"
is "$(qm "$M" -c "SELECT amount_refunded FROM pay_get_payment($P1)");$(qm "$M" -c "SELECT amount_refunded FROM pay_get_payment($A1)")" \
	"25.00 USD;10.00 USD" "and the payments say so"
is "$(qm "$M" -c "SELECT settled_at IS NOT NULL FROM pay_get_payment($P1)")" t "the purchase knows it settled"

# One chain of seals over both versions' audit rows.
sealed2=$(uq payments -Atc "SELECT payments.pay_audit_seal()")
ok "$([ "${sealed2:-0}" -ge 1 ] && echo 0 || echo 1)" "0.2.0 seals the rows written since ($sealed2 batches)"
is "$(uq payments -Atc "SELECT coalesce(payments.pay_audit_verify()::text, 'intact')")" intact \
	"and every audit row of both versions verifies"
is "$(uq payments -Atc "SELECT count(*) FROM payments.operations WHERE status IN ('queued', 'sending', 'unknown')")" 0 \
	"nothing is left waiting"

tap_done
