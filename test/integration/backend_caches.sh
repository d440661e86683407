#!/usr/bin/env bash
# What backends keep in memory across statements and transactions, and the
# changes that must reach them (the allowed status transitions: case 7).
#
# Who acts for a merchant: each backend keeps what merchant_roles, role_trust and merchants say about
# the last role it resolved (src/tenancy.c), across statements and
# transactions.  A change made by another session must count from the
# kept session's next statement, inside an open transaction too: unbinding
# a role, revoking a membership that carried a binding, withdrawing an
# all-merchants grant, deleting the merchant a setting names, a binding
# made in a transaction that rolled back.  Each case keeps ONE session open
# (psql's \! runs the other session's change between its statements), so a
# stale cache would answer with the old merchant.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

su() { cluster_psql "$WORK" "$PORT" payments -At "$@"; }
# kept ROLE SCRIPT: one session logged in as ROLE runs SCRIPT (psql input;
# `\! owner SQL` runs SQL in another session as the owner), one output line
# per query
kept() {
	local role=$1 script=$2
	as_pg "$PG_BINDIR/psql" -X -q -At -h "$WORK/sock" -p "$PORT" -U "$role" -d payments 2>&1 \
		<<<"$script"
}
# the command \! runs: psql as the owner, quiet
OWNER="$PG_BINDIR/psql -X -q -At -h $WORK/sock -p $PORT -U postgres -d payments -o /dev/null -c"
identity="SELECT coalesce(merchant_id::text, 'none') FROM payments.pay_current_identity();"

A=$(su -c "INSERT INTO payments.merchants (name) VALUES ('cache A') RETURNING merchant_id")
B=$(su -c "INSERT INTO payments.merchants (name) VALUES ('cache B') RETURNING merchant_id")
su -c "DROP ROLE IF EXISTS tc_app, tc_group, tc_admin" >/dev/null
su -c "CREATE ROLE tc_app LOGIN" -c "CREATE ROLE tc_group NOLOGIN" -c "CREATE ROLE tc_admin LOGIN" >/dev/null
su -c "SELECT payments.pay_bind_role('tc_app', merchant_id => $A)" \
	-c "SELECT payments.pay_bind_role('tc_group', merchant_id => $B, grant_api => false)" \
	-c "SELECT payments.pay_grant_api('tc_admin')" >/dev/null

# 1. an unbinding counts from the next statement, in the same transaction
out=$(kept tc_app "$identity
BEGIN;
$identity
\\! $OWNER \"SELECT payments.pay_unbind_role('tc_app')\"
$identity
COMMIT;
$identity")
is "$(tr '\n' ' ' <<<"$out")" "$A $A none none " \
	"a binding removed by another session: the kept session acts for no merchant from its next statement, in its open transaction and after"

# 2. a binding made in a transaction that rolled back never counts, and a
#    new one does at once
out=$(kept tc_app "$identity
\\! $OWNER \"BEGIN; SELECT payments.pay_bind_role('tc_app', merchant_id => $B); ROLLBACK;\"
$identity
\\! $OWNER \"SELECT payments.pay_bind_role('tc_app', merchant_id => $A)\"
$identity")
is "$(tr '\n' ' ' <<<"$out")" "none none $A " \
	"a binding rolled back by another session never counts; a committed one does from the next statement"

# 3. the same backend: a binding removed and rolled back in its own
#    transaction (SET ROLE: the owner's session acts as tc_app)
out=$(su -c "SET ROLE tc_app" -c "$identity" -c "RESET ROLE" \
	-c "BEGIN" -c "SELECT payments.pay_unbind_role('tc_app')" -c "SET ROLE tc_app" -c "$identity" -c "RESET ROLE" \
	-c "ROLLBACK" -c "SET ROLE tc_app" -c "$identity")
is "$(tr '\n' ' ' <<<"$out")" "$A 1 none $A " \
	"in one backend: an unbinding counts at its next statement, and its rollback restores the binding"

# 4. a membership that carried a binding, granted then revoked
su -c "SELECT payments.pay_unbind_role('tc_app')" >/dev/null
out=$(kept tc_app "$identity
\\! $OWNER \"GRANT tc_group TO tc_app\"
$identity
\\! $OWNER \"REVOKE tc_group FROM tc_app\"
$identity")
is "$(tr '\n' ' ' <<<"$out")" "none $B none " \
	"a membership carrying a binding counts once granted, and no longer once revoked (another session)"

# 5. an all-merchants grant withdrawn, and a merchant a setting names deleted
out=$(kept tc_admin "SET payments.merchant_id = '$B';
$identity
\\! $OWNER \"SELECT payments.pay_grant_all_merchants('tc_admin')\"
$identity
\\! $OWNER \"DELETE FROM payments.role_trust WHERE db_role = 'tc_admin'::regrole\"
$identity")
is "$(tr '\n' ' ' <<<"$out")" "none $B none " \
	"an all-merchants grant counts from the next statement, and its withdrawal too"
C=$(su -c "INSERT INTO payments.merchants (name) VALUES ('cache C') RETURNING merchant_id")
su -c "SELECT payments.pay_grant_all_merchants('tc_admin')" >/dev/null
out=$(kept tc_admin "SET payments.merchant_id = '$C';
$identity
\\! $OWNER \"DELETE FROM payments.merchants WHERE merchant_id = $C\"
$identity
SELECT payments.pay_current_merchant();")
like "$(tr '\n' ' ' <<<"$out")" "^$C none ERROR: +merchant $C does not exist" \
	"a merchant deleted by another session: a setting naming it is refused from the next statement"

# 6. the invoice tag (src/invoice_tag.c): a change of installation_secrets
#    counts from the kept session's next statement
TAG0=$(su -c "SELECT payments._invoice_tag()")
out=$(kept postgres "SELECT payments._invoice_tag();
\\! $OWNER \"UPDATE payments.installation_secrets SET secret = decode('ABCDEF', 'hex') WHERE purpose = 'invoice_tag'\"
SELECT payments._invoice_tag();
\\! $OWNER \"UPDATE payments.installation_secrets SET secret = decode('$TAG0', 'hex') WHERE purpose = 'invoice_tag'\"
SELECT payments._invoice_tag();")
is "$(tr '\n' ' ' <<<"$out")" "$TAG0 ABCDEF $TAG0 " \
	"the invoice tag kept by a session follows a change of installation_secrets from its next statement"

# 6b. the tag is read with its function owner's rights, though the function
#     is not SECURITY DEFINER (fmgr would set and restore its search_path
#     at every call): a role that may call it but not read
#     installation_secrets gets it in a fresh session, and is itself after
su -c "GRANT EXECUTE ON FUNCTION payments._invoice_tag() TO tc_admin" >/dev/null
out=$(kept tc_admin "SELECT payments._invoice_tag();
SELECT current_user;
SELECT count(*) FROM payments.installation_secrets;")
su -c "REVOKE EXECUTE ON FUNCTION payments._invoice_tag() FROM tc_admin" >/dev/null
like "$(tr '\n' ' ' <<<"$out")" "^$TAG0 tc_admin ERROR: +permission denied for table installation_secrets" \
	"a caller without rights on installation_secrets gets the tag read as the function's owner, and stays itself"
is "$(su -c "SELECT prosecdef::text || coalesce(array_length(proconfig, 1), 0) FROM pg_proc WHERE oid = 'payments._invoice_tag()'::regprocedure")" \
	"false0" "_invoice_tag is neither SECURITY DEFINER nor has settings of its own"

# 6c. the server life's tag (_server_tag, src/invoice_tag.c) is kept too
#     while it is NULL (a database that never changed server: every
#     installation until a failover or a restore): every purchase asks for
#     it, and a NULL read anew each time was a scan of worker_server per
#     payment; a change still counts from the next statement
scans="SELECT pg_stat_get_xact_numscans('payments.worker_server'::regclass);"
out=$(su -c "BEGIN" -c "SELECT coalesce(payments._server_tag(), 'none')" -c "$scans" \
	-c "SELECT count(payments._server_tag()) FROM generate_series(1, 20)" -c "$scans" -c "COMMIT")
is "$(tr '\n' ' ' <<<"$out")" "none 1 0 1 " \
	"a NULL server tag is read once per backend, not once per call (20 more calls: no more scans of worker_server)"
is "$(su -c "SELECT count(*) FROM payments.worker_server WHERE server_tag IS NULL")" "1" \
	"the worker recorded its server, no change of server yet"
out=$(kept postgres "SELECT coalesce(payments._server_tag(), 'none');
\\! $OWNER \"UPDATE payments.worker_server SET server_tag = 'ABC123'\"
SELECT coalesce(payments._server_tag(), 'none');
\\! $OWNER \"UPDATE payments.worker_server SET server_tag = NULL\"
SELECT coalesce(payments._server_tag(), 'none');")
is "$(tr '\n' ' ' <<<"$out")" "none ABC123 none " \
	"the server tag kept by a session (NULL too) follows a change of worker_server from its next statement"

# 7. the allowed status transitions (src/status_guard.c): one added or
#    removed by another session counts from the kept session's next
#    statement
P=$(su -c "INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id) VALUES ($A, 'purchase', '1.00 USD', '0.00 USD', 'profile', 'TCSM1', 'tc-sm')
	RETURNING payment_id")
status="UPDATE payments.payments SET status = '%s' WHERE payment_id = $P RETURNING status;"
out=$(kept postgres "$(printf "$status" canceled)
\\! $OWNER \"INSERT INTO payments.status_transitions VALUES ('payment', 'canceled', 'failed'), ('payment', 'failed', 'canceled')\"
$(printf "$status" failed)
$(printf "$status" canceled)
\\! $OWNER \"DELETE FROM payments.status_transitions WHERE entity = 'payment' AND from_status IN ('canceled', 'failed') AND to_status IN ('canceled', 'failed')\"
$(printf "$status" failed)")
like "$(tr '\n' ' ' <<<"$out")" "^canceled failed canceled ERROR: +invalid payment status transition from canceled to failed" \
	"transitions kept by a session: one another session adds is allowed, and refused again once it is removed, from the next statement"
is "$(su -c "SELECT count(*) FROM payments.status_transitions WHERE entity = 'payment' AND from_status IN ('canceled', 'failed') AND to_status IN ('canceled', 'failed')")" \
	0 "the transitions added for the test are gone"

# 8. a session whose first read of the transitions failed (a lock held on
#    status_transitions by a transaction that then rolled back: no change,
#    so no invalidation) reads them again at its next status change
P2=$(su -c "INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
	invoice_number, correlation_id) VALUES ($A, 'purchase', '1.00 USD', '0.00 USD', 'profile', 'TCSM2', 'tc-sm2')
	RETURNING payment_id")
# (the lock is held until the kept session has been refused, and is gone
# before its next change: before, a lock held 1.5 s from a start 0.5 s
# before the first change, and 2 s between the changes, which a busy
# machine may not keep to)
cat > "$WORK/backend_caches.locked" <<SH
for i in \$(seq 600); do
	[ "\$($PG_BINDIR/psql -X -q -At -h $WORK/sock -p $PORT -U postgres -d payments -c "SELECT count(*) FROM pg_locks
		WHERE relation = 'payments.status_transitions'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = "\$1" ] && exit 0
	sleep 0.05
done
exit 1
SH
out=$(kept postgres "\\! ($OWNER \"SET application_name = 'backend_caches_locker'; BEGIN; LOCK TABLE payments.status_transitions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(300); ROLLBACK;\" >/dev/null 2>&1 &) ; bash $WORK/backend_caches.locked 1
SET lock_timeout = '100ms';
UPDATE payments.payments SET status = 'canceled' WHERE payment_id = $P2 RETURNING status;
\\! $OWNER \"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'backend_caches_locker'\"; bash $WORK/backend_caches.locked 0
UPDATE payments.payments SET status = 'canceled' WHERE payment_id = $P2 RETURNING status;")
like "$(tr '\n' ' ' <<<"$out")" "^ERROR: +canceling statement due to lock timeout .*canceled $" \
	"a read of the transitions cut short by a lock timeout is done again at the next status change, not kept half made"

# 9. the tables a backend finds by name and keeps (src/cached_table.c):
#    status_transitions made anew by another session (renamed away, a copy
#    with one more transition made in its place) is read from the next
#    statement, and the old one again once it is back under its name
pending_payment() {
	su -c "INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method,
		invoice_number, correlation_id) VALUES ($A, 'purchase', '1.00 USD', '0.00 USD', 'profile', '$1', 'tc-$1')
		RETURNING payment_id"
}
P3=$(pending_payment TCSM3)
P4=$(pending_payment TCSM4)
out=$(kept postgres "UPDATE payments.payments SET status = 'canceled' WHERE payment_id = $P3 RETURNING status;
\\! $OWNER \"BEGIN; ALTER TABLE payments.status_transitions RENAME TO status_transitions_kept; CREATE TABLE payments.status_transitions (LIKE payments.status_transitions_kept INCLUDING ALL); INSERT INTO payments.status_transitions SELECT * FROM payments.status_transitions_kept; INSERT INTO payments.status_transitions VALUES ('payment', 'canceled', 'failed'); COMMIT\"
UPDATE payments.payments SET status = 'failed' WHERE payment_id = $P3 RETURNING status;
\\! $OWNER \"BEGIN; DROP TABLE payments.status_transitions; ALTER TABLE payments.status_transitions_kept RENAME TO status_transitions; COMMIT\"
UPDATE payments.payments SET status = 'canceled' WHERE payment_id = $P4 RETURNING status;
UPDATE payments.payments SET status = 'failed' WHERE payment_id = $P4 RETURNING status;")
like "$(tr '\n' ' ' <<<"$out")" "^canceled failed canceled ERROR: +invalid payment status transition from canceled to failed" \
	"a table made anew under its name is the one read from the kept session's next statement, and the old one once it is back"
is "$(su -c "SELECT count(*) FROM payments.status_transitions WHERE entity = 'payment' AND from_status = 'canceled' AND to_status = 'failed'")" \
	0 "the original transitions are back"

# 10. the extension dropped and made again by another session, in a
#     database of its own: the kept session's next payment writes into the
#     new tables (before the tables were kept by name, a stale OID made it
#     fail: "cache lookup failed for relation")
su -c "DROP DATABASE IF EXISTS tc_caches" >/dev/null 2>&1
cluster_psql "$WORK" "$PORT" postgres -q -c "CREATE DATABASE tc_caches" >/dev/null
cluster_psql "$WORK" "$PORT" tc_caches -q -c "CREATE EXTENSION payments" >/dev/null 2>&1
purchase="SELECT status FROM payments.pay_purchase(amount => '1.00 USD', card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123'));"
out=$(as_pg "$PG_BINDIR/psql" -X -q -At -h "$WORK/sock" -p "$PORT" -U postgres -d tc_caches 2>&1 <<<"$purchase
\\! $PG_BINDIR/psql -X -q -At -h $WORK/sock -p $PORT -U postgres -d tc_caches -o /dev/null -c 'DROP EXTENSION payments CASCADE' -c 'CREATE EXTENSION payments' 2>/dev/null
$purchase
SELECT count(*) FROM payments.events;")
is "$(tr '\n' ' ' <<<"$out")" "pending pending 2 " \
	"the extension dropped and made again by another session: the kept session's next payment and its events go into the new tables"
cluster_psql "$WORK" "$PORT" postgres -q -c "DROP DATABASE tc_caches" >/dev/null

su -c "SELECT payments.pay_forget_role(r) FROM unnest(ARRAY['tc_app', 'tc_group', 'tc_admin']::regrole[]) r" >/dev/null
su -c "DROP ROLE tc_app, tc_group, tc_admin" >/dev/null
tap_done
