#!/usr/bin/env bash
# What a role that can connect, with no grant on schema payments (or bound
# to one merchant), can do to the service outside the SQL API.
# 1. A prepared transaction of such a role, in any database, does not stop
#    audit sealing (before: pay_audit_seal waited for every prepared
#    transaction and sealed nothing, until someone ran ROLLBACK PREPARED).
# 2. A prepared transaction that wrote audit rows still holds the seal
#    below its first id, without making the seal wait; once committed, it
#    is sealed and verifies.  One of merchant A holds back only A's seal,
#    not merchant B's.
# 3. Such a role holding ROW EXCLUSIVE on payments.audit_seals (a PREPAREd
#    INSERT locks it at parse analysis, before any permission check) stops
#    neither pay_audit_seal nor pay_audit_prune (before: both took
#    EXCLUSIVE and waited for it, as long as it was held), nor
#    pay_enable_row_security() where row security is on already (before:
#    ALTER TABLE on every table, waiting with every API call behind it).
# 4. Such a role (no grant: pay_card is for every role) seals a card in a
#    transaction it prepares (or leaves open) does not keep the vault key
#    from rotating: a due rotation waits payments.vault_key_rotation_max_wait
#    for it at most (before: for ever, for every merchant), and once its
#    key is gone the hold holds nothing back (before: every later rotation
#    waited for it again).
# 5. What such roles may read outside the API: no statistics of the
#    extension's columns (pg_stats), no sequence's value (pg_sequences), no
#    other role's statement text (pg_stat_activity); no foreign key to the
#    extension's tables (REFERENCES is not granted).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
sessions_init hostile-roles

q() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
# as ROLE DB [psql args]: psql as ROLE (stopping at the first error)
as() { local r=$1 d=$2; shift 2; cluster_psql "$WORK" "$PORT" "$d" -At -v ON_ERROR_STOP=1 -U "$r" "$@"; }
cleanup() {
	sessions_kill
	for g in hostile_idle hostile_other_db hostile_audit_writer hostile_vault hostile_bound; do
		for d in payments postgres; do
			cluster_psql "$WORK" "$PORT" "$d" -c "ROLLBACK PREPARED '$g'" >/dev/null 2>&1 || true
		done
	done
	q -c "SELECT payments.pay_audit_detach('public.hostile_audit')" >/dev/null 2>&1 || true
	q -c "ALTER SYSTEM RESET payments.vault_key_rotation" -c "ALTER SYSTEM RESET payments.vault_key_rotation_max_wait" \
		-c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	q -c "DROP TABLE IF EXISTS public.hostile_audit" -c "DROP SCHEMA IF EXISTS hostile_own CASCADE" >/dev/null 2>&1 || true
	q -c "SELECT payments.pay_forget_role('hostile_app')" >/dev/null 2>&1 || true
	q -c "DROP ROLE IF EXISTS hostile_nobody" -c "DROP ROLE IF EXISTS hostile_app" >/dev/null 2>&1 || true
}
trap cleanup EXIT

A=$(q -c "INSERT INTO payments.merchants (name) VALUES ('hostile roles A') RETURNING merchant_id")
q >/dev/null <<SQL
DROP ROLE IF EXISTS hostile_nobody;
CREATE ROLE hostile_nobody LOGIN;
DROP ROLE IF EXISTS hostile_app;
CREATE ROLE hostile_app LOGIN;
SELECT payments.pay_bind_role('hostile_app', merchant_id => $A);
CREATE TABLE public.hostile_audit (id int PRIMARY KEY, merchant_id bigint NOT NULL);
SELECT payments.pay_audit_attach('public.hostile_audit');
SQL
seal() { q -c "SELECT payments.pay_audit_seal('$1')"; }
last_sealed() { q -c "SELECT coalesce(max(range_end), 0) FROM payments.audit_seals WHERE merchant_id = $A"; }
audit_id_of() { q -c "SELECT audit_id FROM payments.audit_log WHERE table_name = 'hostile_audit' AND new_row ->> 'id' = '$1'"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
seal '2 seconds' >/dev/null

###########################################################################
# 1. Prepared transactions of a role with no privilege: one in this
#    database, one in another; each took an xid, nothing else.
as hostile_nobody payments -c "BEGIN" -c "SELECT txid_current()" -c "PREPARE TRANSACTION 'hostile_idle'" >/dev/null
as hostile_nobody postgres -c "BEGIN" -c "SELECT txid_current()" -c "PREPARE TRANSACTION 'hostile_other_db'" >/dev/null
is "$(q -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid IN ('hostile_idle', 'hostile_other_db') AND owner = 'hostile_nobody'")" 2 \
	"(a role with no privilege holds two prepared transactions)"
q -c "INSERT INTO public.hostile_audit VALUES (1, $A)" >/dev/null
t0=$(date +%s%N)
ok "$(( $(seal '3 seconds') >= 1 ? 0 : 1 ))" "prepared transactions holding no audit id do not stop the seal"
ok "$(( $(ms_since "$t0") < 2500 ? 0 : 1 ))" "nor make it wait for its deadline"
is "$(last_sealed)" "$(audit_id_of 1)" "the seal covers the row written after them"

###########################################################################
# 2. A prepared transaction that wrote an audit row (the bound role's own
#    table write, through the owner here) holds the seal below its id, and
#    the seal does not wait for it; committed, it is sealed and verifies.
q -c "BEGIN" -c "INSERT INTO public.hostile_audit VALUES (2, $A)" -c "PREPARE TRANSACTION 'hostile_audit_writer'" >/dev/null
q -c "INSERT INTO public.hostile_audit VALUES (3, $A)" >/dev/null
before=$(last_sealed)
t0=$(date +%s%N)
seal '3 seconds' >/dev/null
ok "$(( $(ms_since "$t0") < 2500 ? 0 : 1 ))" "a prepared transaction holding an audit id does not make the seal wait"
is "$(last_sealed)" "$before" "it holds the seal below its first id (row 3, written after, is not sealed)"
q -c "COMMIT PREPARED 'hostile_audit_writer'" >/dev/null
ok "$(( $(seal '3 seconds') >= 1 ? 0 : 1 ))" "once committed, the rows are sealed"
is "$(last_sealed)" "$(audit_id_of 3)" "up to the last"
ok "$(( $(audit_id_of 2) < $(audit_id_of 3) ? 0 : 1 ))" "(the prepared transaction's row had the lower id)"
is "$(q -c "SELECT payments.pay_audit_verify($A)")" "" "and every row verifies"
for g in hostile_idle; do q -c "ROLLBACK PREPARED '$g'" >/dev/null; done
cluster_psql "$WORK" "$PORT" postgres -c "ROLLBACK PREPARED 'hostile_other_db'" >/dev/null

# 2b. The role bound to merchant A prepares a transaction that wrote an
#     audit row of A (its own audited table): A's seal stays below it, and
#     merchant B's rows are sealed all the same (before: every merchant's
#     seal stayed below it, for as long as it was prepared).
B=$(q -c "INSERT INTO payments.merchants (name) VALUES ('hostile roles B') RETURNING merchant_id")
sealed_of() { q -c "SELECT coalesce(max(range_end), 0) FROM payments.audit_seals WHERE merchant_id = $1"; }
q -c "GRANT INSERT ON public.hostile_audit TO hostile_app" >/dev/null
as hostile_app payments -c "BEGIN" -c "INSERT INTO public.hostile_audit VALUES (10, $A)" \
	-c "PREPARE TRANSACTION 'hostile_bound'" >/dev/null
q -c "INSERT INTO public.hostile_audit VALUES (11, $B)" -c "INSERT INTO public.hostile_audit VALUES (12, $A)" >/dev/null
before=$(sealed_of "$A")
seal '3 seconds' >/dev/null
ok "$(( $(sealed_of "$B") >= $(audit_id_of 11) ? 0 : 1 ))" "merchant A's prepared transaction does not hold merchant B's seal back"
is "$(sealed_of "$A")" "$before" "it holds A's own (A's row written after it is not sealed)"
q -c "ROLLBACK PREPARED 'hostile_bound'" >/dev/null
ok "$(( $(seal '3 seconds') >= 1 ? 0 : 1 ))" "once it is rolled back, A's rows are sealed"
is "$(sealed_of "$A")" "$(audit_id_of 12)" "up to the last"
is "$(q -c "SELECT payments.pay_audit_verify($A)")$(q -c "SELECT payments.pay_audit_verify($B)")" "" "and both merchants' rows verify"

###########################################################################
# 3. Locks taken without privilege: a PREPAREd INSERT into
#    payments.audit_seals (and into audit_log) holds ROW EXCLUSIVE on it in
#    an open transaction of a role with no grant.  The seal and the prune
#    go on (run with a lock_timeout, so that a wait fails the check instead
#    of hanging the test).
M=$A session h
say h "SET ROLE hostile_nobody; BEGIN;
PREPARE hostile_ins AS INSERT INTO payments.audit_seals (merchant_id) VALUES (1);
PREPARE hostile_log AS DELETE FROM payments.audit_log;"
say h '\echo H-HOLDS'
poll_value 20 done_with h H-HOLDS >/dev/null
is "$(q -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.application_name = 'sess_h' AND l.relation IN ('payments.audit_seals'::regclass, 'payments.audit_log'::regclass)
	AND l.mode = 'RowExclusiveLock' AND l.granted")" 2 \
	"(the role with no privilege holds ROW EXCLUSIVE on audit_seals and audit_log)"
q -c "INSERT INTO public.hostile_audit VALUES (4, $A)" >/dev/null
got=$(q -c "SET lock_timeout = '2s'" -c "SELECT payments.pay_audit_seal('2 seconds')" 2>&1 || true)
ok "$(passed eval '[[ "$got" =~ ^[0-9]+$ ]] && [ "$got" -ge 1 ]')" "the seal is not stopped by it"
[[ "$got" =~ ^[0-9]+$ ]] || comment "$got"
is "$(last_sealed)" "$(audit_id_of 4)" "and covers the new row"
got=$(q -c "SET lock_timeout = '2s'" -c "SELECT payments.pay_audit_prune('100 years')" 2>&1 || true)
is "$got" 0 "nor is the prune"
got=$(q -c "SET lock_timeout = '2s'" -c "SELECT count(*) > 0 FROM payments.pay_enable_row_security()" 2>&1 || true)
is "$got" t "nor pay_enable_row_security(), with row security on already (before: ALTER TABLE waited, every API call queued behind it)"
say h 'ROLLBACK; RESET ROLE;'
close h

###########################################################################
# 4. The vault key's rotation.
Y=$(( $(date +%Y) + 2 ))
rotate() { q -c "SELECT payments._vault_rotate_key($1)"; }
# rotates_within SECONDS: t once a scheduled rotation rotated, within SECONDS
rotates_within() {
	local i
	for i in $(seq $(( $1 * 5 ))); do
		[ "$(rotate false)" = t ] && { echo t; return; }
		sleep 0.2
	done
	echo f
}
# (the wait is 60 s while it is shown waiting, and 3 s only then: a wait
# of 3 s all along ran out before the first check on a machine that
# stalled 3 s after the forced rotation)
q -c "ALTER SYSTEM SET payments.vault_key_rotation_max_wait = 60" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
as hostile_nobody payments -c "BEGIN" -c "SELECT txid_current()" \
	-c "SELECT payments.pay_card('4111111111111111', 12, $Y, '123') IS NOT NULL" \
	-c "PREPARE TRANSACTION 'hostile_vault'" >/dev/null
forced_at=$(q -c "SELECT payments._vault_rotate_key(true)" -c "SELECT clock_timestamp()")
is "${forced_at%%$'\n'*}" t "(a forced rotation: the card the role with no grant sealed is under the previous key now)"
forced_at=${forced_at#*$'\n'}
# A rotation every second only now: the worker rotates on that schedule
# too (at its housekeeping, once a minute), and one of its rotations
# between the PREPARE and the forced one (the role's key still current,
# nothing held it) took that key away before the checks below (with the
# worker restarted there by hand, its first housekeeping did: the due
# rotation was not held).
q -c "ALTER SYSTEM SET payments.vault_key_rotation = 1" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed settings_seen payments.vault_key_rotation 1s payments.vault_key_rotation_max_wait 1min)" \
	"(a new session goes by a rotation every second, waiting 60 s at most)"
# The next rotation is due once the key the forced one made has sealed for
# a second: real time, on purpose (the key was made at that commit, before
# forced_at; a due rotation held answers f as one not due does, so the
# wait is on the server's clock, not on an answer).
due() { q -c "SELECT 'due' WHERE clock_timestamp() >= '$forced_at'::timestamptz + interval '1 s'"; }
is "$(poll_value 10 due)" due "(a second later, the next rotation is due)"
is "$(rotate false)" f "a due rotation waits for the prepared transaction that sealed under the previous key"
q -c "ALTER SYSTEM SET payments.vault_key_rotation_max_wait = 3" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
is "$(rotates_within 8)" t "but only payments.vault_key_rotation_max_wait: then the key rotates"
q -c "ALTER SYSTEM SET payments.vault_key_rotation_max_wait = 60" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
is "$(rotates_within 8)" t "the next rotation does not wait for it (its key is gone already)"
q -c "ROLLBACK PREPARED 'hostile_vault'" \
	-c "ALTER SYSTEM RESET payments.vault_key_rotation" -c "ALTER SYSTEM RESET payments.vault_key_rotation_max_wait" \
	-c "SELECT pg_reload_conf()" >/dev/null

###########################################################################
# 5. What is readable outside the API.
q -c "ANALYZE payments.payments, payments.merchants, payments.audit_log" >/dev/null
for r in hostile_nobody hostile_app; do
	is "$(as $r payments -c "SELECT count(*) FROM pg_stats WHERE schemaname = 'payments'")" 0 \
		"$r reads no statistics of the extension's columns (pg_stats)"
	is "$(as $r payments -c "SELECT count(*) FROM pg_sequences WHERE schemaname = 'payments' AND last_value IS NOT NULL")" 0 \
		"$r reads no sequence's value (pg_sequences)"
	is "$(as $r payments -c "SELECT count(*) FROM pg_stat_activity WHERE usename <> current_user AND query <> '<insufficient privilege>' AND query <> ''")" 0 \
		"$r reads no other role's statement text (pg_stat_activity)"
done
q -c "CREATE SCHEMA hostile_own AUTHORIZATION hostile_app" >/dev/null
out=$(as hostile_app payments -v VERBOSITY=verbose \
	-c "CREATE TABLE hostile_own.fk (m bigint REFERENCES payments.merchants (merchant_id))" 2>&1 || true)
like "$out" "42501: permission denied for table merchants" "a bound role cannot make a foreign key to the extension's tables (no REFERENCES: no KEY SHARE locks on them)"

q -c "SELECT payments.pay_audit_detach('public.hostile_audit')" -c "DROP TABLE public.hostile_audit" \
	-c "DROP SCHEMA hostile_own CASCADE" >/dev/null
tap_done
