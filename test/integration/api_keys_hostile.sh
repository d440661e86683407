#!/usr/bin/env bash
# Merchant API keys against a hostile or careless caller: a key switched to
# inside a transaction decides for the rest of it (merchant, scopes), the
# secrets a request carries (X-Api-Key, a bearer token) never reach the
# server log, and the errors a key holder meets over HTTP have the status
# README gives (not 413 for the key cap, not 500 for test clocks that are
# off), and a key revoked while a transaction that took it is open acts no
# more in it; a transaction of the key's holder left prepared holds back no
# rotation or revocation of the key, also one that made keys with it, nor
# (revocation) one in which an admin key rotated or revoked itself; a key
# made with a key that is revoked before that transaction commits never
# acts; a key taken in a savepoint that is rolled back is given up with it.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/postgrest.sh"
SIMDIR="$WORK/sim-keys-hostile"; RUNDIR="$WORK/pgrst-keys-hostile"
cleanup() {
	postgrest_stop
	sim_stop
	cluster_psql "$WORK" "$PORT" payments -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'keys_hostile_gate'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ROLLBACK PREPARED 'keys_hostile_hold'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ROLLBACK PREPARED 'keys_hostile_hold6'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ROLLBACK PREPARED 'keys_hostile_hold8'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ROLLBACK PREPARED 'keys_hostile_hold9'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ROLLBACK PREPARED 'keys_hostile_hold9b'" >/dev/null 2>&1 || true
	cluster_psql "$WORK" "$PORT" payments -c "ALTER SYSTEM RESET log_min_duration_statement" \
		-c "ALTER SYSTEM RESET payments.test_clocks" -c "SELECT pg_reload_conf()" >/dev/null
}
trap cleanup EXIT
sim_start "$SIMDIR"
sql() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
year=$(($(date +%Y) + 3))
card="payments.pay_card('4111111111111111', 12, $year, '123')"

merchant_on_simulator keys-hostile-a; A=$M
merchant_on_simulator keys-hostile-b; B=$M
sql -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keys_hostile_app') THEN CREATE ROLE keys_hostile_app LOGIN; END IF; END \$\$" \
	-c "SELECT payments.pay_bind_role('keys_hostile_app', $A)" >/dev/null
app() { cluster_psql "$WORK" "$PORT" payments -At -U keys_hostile_app "$@"; }

###########################################################################
# 1. A role bound to merchant A takes merchant B's key in a transaction in
#    which its identity was already read, with nothing written since (the
#    key's use in the same minute writes no last_used_at): the key decides
#    from then on (before: the identity cached for the command kept acting
#    for A; the purchase went to A, through A's gateway account).
KB=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, scopes => ARRAY['read', 'payments'])")
KR=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $A, scopes => ARRAY['read'])")
app -c "SELECT 1 FROM payments.pay_use_api_key('$KB')" -c "SELECT 1 FROM payments.pay_use_api_key('$KR')" >/dev/null
out=$(app 2>&1 <<SQL
BEGIN;
SELECT 'before', merchant_id, source FROM payments.pay_current_identity();
SELECT 'key', merchant_id FROM payments.pay_use_api_key('$KB');
SELECT 'after', merchant_id, source FROM payments.pay_current_identity();
SELECT 'paid', merchant_id FROM payments.pay_purchase(amount => '3.21 USD', card => $card);
COMMIT;
SQL
)
like "$out" "before\|$A\|binding" "1: the transaction first acts for the role's merchant"
like "$out" "after\|$B\|api_key" "1: after pay_use_api_key it acts with the key, for the key's merchant"
like "$out" "paid\|$B" "1: and the purchase is the key's merchant's, not the role's"
is "$(sql -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $A")" 0 "1: merchant A was charged nothing"
# a read-only key narrowing the role: its scope holds at once
out=$(app 2>&1 <<SQL
BEGIN;
SELECT 'before', merchant_id FROM payments.pay_current_identity();
SELECT 'key', merchant_id FROM payments.pay_use_api_key('$KR');
SELECT 'paid', merchant_id FROM payments.pay_purchase(amount => '3.22 USD', card => $card);
ROLLBACK;
SQL
) || true
like "$out" "PT403|scope" "1: a purchase after pay_use_api_key(a read-only key) is refused for the key's scope"
unlike "$out" "paid\|" "1: and nothing is bought"

###########################################################################
# 2. Credentials in the server log: statements logged with their duration
#    (log_min_duration_statement = 0, the usual way to find slow queries)
#    and their bind parameters, PostgREST's request.headers among them.
postgrest_roles_setup "$WORK" "$PORT" payments
postgrest_start "$WORK" "$PORT" payments "$RUNDIR"
M=$A
K=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $A, scopes => ARRAY['read', 'payments', 'admin'])")
secret=${K#pk_*_}
TOKEN=$(jwt_hs256 "$PGRST_JWT_SECRET" "{\"role\":\"authenticated\",\"merchant_id\":$A,\"exp\":$(($(date +%s) + 600))}")
sql -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" >/dev/null
# (PostgREST's pooled sessions go by it at their next statement once a new
# session does: the checks of the log below hold as well with nothing logged)
ok "$(passed settings_seen log_min_duration_statement 0)" "2: the server logs every statement's duration"
log_from=$(stat -c %s "$WORK/postgres.log")
r=$(pgrst POST /rpc/pay_current_identity -H "X-Api-Key: $K" -H 'Content-Type: application/json' -d '{}')
is "${r%% *}" 200 "2: a request with X-Api-Key is served"
r=$(pgrst POST /rpc/pay_current_identity -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}')
is "${r%% *}" 200 "2: a request with a bearer token is served"
sql -c "SELECT merchant_id FROM payments.pay_use_api_key('$K')" >/dev/null
sql -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed settings_seen log_min_duration_statement -1)" "2: and no longer once it is reset"
n=$(tail -c +"$((log_from + 1))" "$WORK/postgres.log" | grep -cE 'duration: .*pay_current_identity' || true)
ok "$([ "$n" -ge 2 ] && echo 0 || echo 1)" "2: the log has the requests' statements, with their durations ($n lines)"
# (a digit of a secret may be masked by other rules: any spelling counts)
anyx() { sed 's/[0-9]/[0-9X]/g' <<<"$1"; }
is "$(grep -c -- "$(anyx "$secret")" "$WORK/postgres.log" || true)" 0 "2: the API key's secret is nowhere in the server log"
is "$(grep -c -- "$(anyx "${TOKEN##*.}")" "$WORK/postgres.log" || true)" 0 "2: nor the bearer token's signature"
like "$(grep -o "pk_[0-9X]*_X*" "$WORK/postgres.log" | sort -u | tr '\n' ' ')" "^(pk_[0-9X]+_X{43} )+$" \
	"2: where it quotes a key, the log shows pk_..._ and the secret masked"

###########################################################################
# 3. HTTP statuses: the 101st key is a conflict (409), not 413 Payload Too
#    Large (54000 before); test clock functions on a server whose test
#    clocks are off are 403, not 500 (55000 before).
sql -c "SELECT count(*) FROM (SELECT payments.pay_create_api_key(merchant_id => $A) FROM generate_series(1, 100 - (SELECT count(*) FROM payments.api_keys k WHERE merchant_id = $A AND NOT EXISTS (SELECT FROM payments.api_key_revocations r WHERE r.key_id = k.key_id)))) x" >/dev/null
r=$(pgrst POST /rpc/pay_create_api_key -H "X-Api-Key: $K" -H 'Content-Type: application/json' -d '{"scopes": ["read"]}')
is "${r%% *}" 409 "3: the 101st key is refused with HTTP 409"
sql -c "ALTER SYSTEM SET payments.test_clocks = off" -c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed settings_seen payments.test_clocks off)" "3: test clocks are off"
r=$(pgrst POST /rpc/pay_set_test_clock -H "X-Api-Key: $K" -H 'Content-Type: application/json' -d '{"frozen_at": "2031-01-01T00:00:00Z"}')
is "${r%% *}" 403 "3: pay_set_test_clock with test clocks off is HTTP 403"
like "$r" "test clocks are off" "3: saying so"


###########################################################################
# 4. A key revoked (and committed) while a transaction that took it is
#    open: its next statement is refused, PT401, and nothing it did stays
#    (before: the purchase went through and committed).
sql -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keys_hostile_keyonly') THEN CREATE ROLE keys_hostile_keyonly LOGIN; END IF; END \$\$" \
	-c "SELECT payments.pay_grant_api('keys_hostile_keyonly')" >/dev/null
K2=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, scopes => ARRAY['read', 'payments'])")
# (the transaction's use is the key's first: it writes the key's last use,
# in a row apart from the key's, so the revocation does not wait for it)
# The transaction takes the key and buys, then waits at a gate (an advisory
# lock a superuser session holds) until the key is revoked, and buys again.
# (Before: pg_sleep(2) in it, and the revocation a second after its start; on
# a busy machine the transaction had not taken the key yet when it was
# revoked, or had gone past its sleep.)
sql -c "SET application_name = 'keys_hostile_gate'" -c "SELECT pg_advisory_lock(7776)" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
gate=$!
gate_held() { [ "$(sql -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.application_name = 'keys_hostile_gate' AND l.locktype = 'advisory' AND l.objid = 7776 AND l.granted")" = 1 ] && echo 1; }
is "$(poll_value 30 gate_held)" 1 "4: (a superuser session holds the gate)"
(cluster_psql "$WORK" "$PORT" payments -At -U keys_hostile_keyonly <<SQL
BEGIN;
SELECT 'used', merchant_id FROM payments.pay_use_api_key('$K2');
SELECT 'paid', payment_id FROM payments.pay_purchase(amount => '7.76 USD', card => $card);
SELECT 'gate', pg_advisory_xact_lock(7776);
SELECT 'paid', payment_id FROM payments.pay_purchase(amount => '7.77 USD', card => $card);
COMMIT;
SQL
) > "$WORK/keys_hostile.revoke-out" 2>&1 &
txn=$!
at_gate() { [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'keys_hostile_keyonly'
	AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND query LIKE '%pg_advisory_xact_lock(7776)%'")" = 1 ] && echo 1; }
is "$(poll_value 60 at_gate)" 1 "4: the transaction took the key, bought, and waits at the gate"
is "$(sql -c "SELECT payments.pay_revoke_api_key($(cut -d_ -f2 <<<"$K2"))")" t "4: the key is revoked (committed) while the other transaction is open"
sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'keys_hostile_gate'" >/dev/null
wait "$gate" || true
wait "$txn" || true
out=$(cat "$WORK/keys_hostile.revoke-out")
like "$out" "used\|$B" "4: the transaction had taken the key"
like "$out" "API key [0-9]+ was revoked or expired after this transaction took it" "4: its next statement is refused"
is "$(sql -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $B AND payments.pay_minor_units(amount) IN (776, 777)")" 0 \
	"4: and nothing the transaction did stays"
r=$(pgrst POST /rpc/pay_current_identity -H "X-Api-Key: $K2" -H 'Content-Type: application/json' -d '{}')
is "${r%% *}" 401 "4: a new request with the key is refused (401)"

###########################################################################
# 5. Whoever holds a key cannot keep it from being rotated or revoked: a
#    transaction whose use of the key wrote its last use (a key's first
#    use, or its first in a minute) is PREPAREd and left so.  The owner
#    rotates and revokes the key at once all the same (lock_timeout 5 s,
#    so that a wait fails the check instead of hanging the test), and the
#    key acts no more.  (Before: the use wrote the key's own row, the
#    prepared transaction held it, and pay_rotate_api_key and
#    pay_revoke_api_key waited for as long as it stayed prepared.)
K3=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, scopes => ARRAY['read'])")
id3=$(cut -d_ -f2 <<<"$K3")
cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 -U keys_hostile_keyonly -c "BEGIN" \
	-c "SELECT 1 FROM payments.pay_use_api_key('$K3')" -c "PREPARE TRANSACTION 'keys_hostile_hold'" >/dev/null
is "$(sql -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'keys_hostile_hold' AND owner = 'keys_hostile_keyonly'")" 1 \
	"5: (the key's holder left a transaction that used the key prepared)"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT key_id FROM payments.pay_rotate_api_key($id3, overlap => '0')" 2>&1)" "$id3" \
	"5: the owner rotates the key without waiting for it"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT payments.pay_revoke_api_key($id3)" 2>&1)" t \
	"5: and revokes it without waiting for it"
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly -c "SELECT 1 FROM payments.pay_use_api_key('$K3')" 2>&1 || true)
like "$err" "PT401" "5: the key acts no more"
sql -c "COMMIT PREPARED 'keys_hostile_hold'" >/dev/null
is "$(sql -c "SELECT last_used_at IS NOT NULL FROM payments.api_key_uses WHERE key_id = $id3")" t \
	"5: the prepared transaction had written the key's last use (it held that row all along)"

###########################################################################
# 6. (review AN) The same with an admin key that made a key in the held
#    transaction: pay_create_api_key locked its creator FOR SHARE, so the
#    owner's rotation and revocation of the admin key waited for as long
#    as the holder kept that transaction prepared (31 passed, 1 failed).
#    Now it takes FOR KEY SHARE, which a revocation or rotation (FOR NO KEY
#    UPDATE) does not wait for; and the key it made, committed after the
#    revocation (which the cascade did not see), never acts: a key counts
#    as revoked when a key up its created_by_key chain is.
K6=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, scopes => ARRAY['read', 'admin'])")
id6=$(cut -d_ -f2 <<<"$K6")
K6c=$(cluster_psql "$WORK" "$PORT" payments -At -q -v ON_ERROR_STOP=1 -U keys_hostile_keyonly -c "BEGIN" \
	-c "SELECT 1 FROM payments.pay_use_api_key('$K6')" \
	-c "SELECT 'made', api_key FROM payments.pay_create_api_key(scopes => ARRAY['read'])" \
	-c "PREPARE TRANSACTION 'keys_hostile_hold6'" | sed -n 's/^made|//p')
id6c=$(cut -d_ -f2 <<<"$K6c")
is "$(sql -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'keys_hostile_hold6'")" 1 \
	"6: (the admin key's holder made a key in a transaction left prepared)"
like "$K6c" '^pk_[0-9]+_' "6: (the key it made was returned)"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT key_id FROM payments.pay_rotate_api_key($id6, overlap => '0')" 2>&1)" "$id6" \
	"6: the owner rotates the admin key without waiting for it"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT payments.pay_revoke_api_key($id6)" 2>&1)" t \
	"6: the owner revokes the admin key without waiting for it"
sql -c "COMMIT PREPARED 'keys_hostile_hold6'" >/dev/null
is "$(sql -c "SELECT created_by_key = $id6 AND NOT EXISTS (SELECT FROM payments.api_key_revocations r WHERE r.key_id = k.key_id) FROM payments.api_keys k WHERE key_id = $id6c")" t \
	"6: the key made in the held transaction committed after the revocation, without a revocation of its own"
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly \
	-c "SELECT 'used', merchant_id FROM payments.pay_use_api_key('$K6c')" 2>&1 || true)
like "$err" "PT401" "6: the key made with the revoked admin key is refused (PT401)"
unlike "$err" "used\|" "6: and acts for no one"
r=$(pgrst POST /rpc/pay_current_identity -H "X-Api-Key: $K6c" -H 'Content-Type: application/json' -d '{}')
is "${r%% *}" 401 "6: also over HTTP (401)"
ok "$(sql -c "SELECT revoked_at IS NOT NULL FROM payments.pay_list_api_keys(merchant_id => $B) WHERE key_id = $id6c" | grep -qx t; echo $?)" \
	"6: pay_list_api_keys shows it revoked, as it counts (before: unrevoked, its own row)"
# and it is no key of the 100 a merchant may have: B filled to the cap as
# its rows count, one more key can be made (before: PT409)
sql -c "SELECT count(*) FROM (SELECT payments.pay_create_api_key(merchant_id => $B, name => 'cap6') FROM generate_series(1, 100 - (SELECT count(*) FROM payments.api_keys k WHERE merchant_id = $B AND NOT EXISTS (SELECT FROM payments.api_key_revocations r WHERE r.key_id = k.key_id) AND (expires_at IS NULL OR expires_at > now())))) x" >/dev/null
like "$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, name => 'cap6')" 2>&1)" '^pk_[0-9]+_' \
	"6: it does not count toward the merchant's 100 keys"
sql -c "DELETE FROM payments.api_keys WHERE merchant_id = $B AND name = 'cap6'" >/dev/null

###########################################################################
# 7. The transaction that makes a key with an admin key takes the new key
#    (its own, not yet committed) and waits at a gate; the owner revokes
#    the admin key meanwhile (the cascade does not see the new key).  The
#    transaction's next statement is refused, PT401, and the key it made
#    is not kept: the key it took is read again with its chain (before:
#    its own row, unrevoked, and the transaction bought with it).
K7=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $B, scopes => ARRAY['read', 'payments', 'admin'])")
id7=$(cut -d_ -f2 <<<"$K7")
sql -c "SET application_name = 'keys_hostile_gate'" -c "SELECT pg_advisory_lock(7777)" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
gate=$!
gate7_held() { [ "$(sql -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.application_name = 'keys_hostile_gate' AND l.locktype = 'advisory' AND l.objid = 7777 AND l.granted")" = 1 ] && echo 1; }
is "$(poll_value 30 gate7_held)" 1 "7: (a superuser session holds the gate)"
(cluster_psql "$WORK" "$PORT" payments -At -U keys_hostile_keyonly <<SQL
BEGIN;
SELECT 'used', merchant_id FROM payments.pay_use_api_key('$K7');
SELECT key_id, api_key FROM payments.pay_create_api_key(scopes => ARRAY['read', 'payments']) \\gset new_
SELECT 'took', key_id FROM payments.pay_use_api_key(:'new_api_key');
SELECT 'gate', pg_advisory_xact_lock(7777);
SELECT 'paid', payment_id FROM payments.pay_purchase(amount => '7.79 USD', card => $card);
COMMIT;
SQL
) > "$WORK/keys_hostile.chain-out" 2>&1 &
txn=$!
at_gate7() { [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'keys_hostile_keyonly'
	AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND query LIKE '%pg_advisory_xact_lock(7777)%'")" = 1 ] && echo 1; }
is "$(poll_value 60 at_gate7)" 1 "7: the transaction made a key, took it, and waits at the gate"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT payments.pay_revoke_api_key($id7)" 2>&1)" t \
	"7: the owner revokes the admin key without waiting for the transaction"
sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'keys_hostile_gate'" >/dev/null
wait "$gate" || true
wait "$txn" || true
out=$(cat "$WORK/keys_hostile.chain-out")
like "$out" "took\|[0-9]+" "7: the transaction had taken the key it made"
like "$out" "API key [0-9]+ was revoked or expired after this transaction took it" "7: its next statement is refused"
unlike "$out" "paid\|" "7: and it bought nothing"
is "$(sql -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $B AND payments.pay_minor_units(amount) = 779")" 0 \
	"7: (no payment of 7.79 stays)"
is "$(sql -c "SELECT count(*) FROM payments.api_keys WHERE created_by_key = $id7")" 0 "7: and the key it made is not kept"

###########################################################################
# 8. A key taken in a subtransaction that rolls back (ROLLBACK TO
#    SAVEPOINT, an error in it, a PL/pgSQL EXCEPTION block) is given up
#    with it: the transaction acts as before the savepoint, with no key or
#    the key it held (before: the key stayed in force to the end of the
#    transaction). RELEASE keeps it.
merchant_on_simulator keys-hostile-c; C8=$M
merchant_on_simulator keys-hostile-d; D8=$M
K8a=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $D8, scopes => ARRAY['read'])")
K8b=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $C8, scopes => ARRAY['read', 'payments'])")
id8a=$(cut -d_ -f2 <<<"$K8a"); id8b=$(cut -d_ -f2 <<<"$K8b")
K8c=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $C8, scopes => ARRAY['read'])")
id8c=$(cut -d_ -f2 <<<"$K8c")
who8="SELECT coalesce(merchant_id::text, 'none'), coalesce(key_id, 'none') FROM payments.pay_current_identity()"
keyonly8() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 -U keys_hostile_keyonly "$@" 2>&1; }
out=$(keyonly8 <<SQL
BEGIN;
SAVEPOINT s;
SELECT 'took', key_id FROM payments.pay_use_api_key('$K8b');
ROLLBACK TO SAVEPOINT s;
SELECT 'after', * FROM ($who8) x;
COMMIT;
SQL
)
like "$out" "took\|$id8b$" "8: (a key taken in a savepoint)"
like "$out" "after\|none\|none" "8: after ROLLBACK TO SAVEPOINT the transaction has no key, as before the savepoint"
out=$(keyonly8 -v ON_ERROR_STOP=0 <<SQL
BEGIN;
SAVEPOINT s;
SELECT 1 FROM payments.pay_use_api_key('$K8b');
SELECT 'paid', payment_id FROM payments.pay_purchase(amount => '8.01 USD', card => $card);
ROLLBACK TO SAVEPOINT s;
SELECT 'paid2', payment_id FROM payments.pay_purchase(amount => '8.02 USD', card => $card);
COMMIT;
SQL
)
like "$out" "paid\|[0-9]+" "8: (the key acted in its savepoint)"
unlike "$out" "paid2\|" "8: after the rollback to the savepoint nothing is bought with it"
is "$(sql -c "SELECT count(*) FROM payments.payments WHERE merchant_id = $C8 AND payments.pay_minor_units(amount) IN (801, 802)")" 0 \
	"8: (no payment of 8.01 or 8.02 stays)"
out=$(keyonly8 <<SQL
BEGIN;
SELECT 1 FROM payments.pay_use_api_key('$K8a');
SAVEPOINT s1;
SELECT 1 FROM payments.pay_use_api_key('$K8b');
SAVEPOINT s2;
SELECT 1 FROM payments.pay_use_api_key('$K8c');
SELECT 'inner', * FROM ($who8) x;
ROLLBACK TO SAVEPOINT s2;
SELECT 'mid', * FROM ($who8) x;
ROLLBACK TO SAVEPOINT s1;
SELECT 'outer', * FROM ($who8) x;
COMMIT;
SQL
)
like "$out" "inner\|$C8\|$id8c$" "8: nested savepoints: the innermost key acts"
like "$out" "mid\|$C8\|$id8b$" "8: rolled back to the inner savepoint, the key taken in the outer one acts again"
like "$out" "outer\|$D8\|$id8a$" "8: rolled back to the outer savepoint, the key held before both acts again"
out=$(keyonly8 <<SQL
BEGIN;
SELECT 1 FROM payments.pay_use_api_key('$K8a');
SAVEPOINT s1;
SAVEPOINT s2;
SELECT 1 FROM payments.pay_use_api_key('$K8b');
RELEASE SAVEPOINT s2;
SELECT 'released', * FROM ($who8) x;
ROLLBACK TO SAVEPOINT s1;
SELECT 'back', * FROM ($who8) x;
SAVEPOINT s3;
SELECT 1 FROM payments.pay_use_api_key('$K8c');
RELEASE SAVEPOINT s3;
SELECT 'kept', * FROM ($who8) x;
COMMIT;
SQL
)
like "$out" "released\|$C8\|$id8b$" "8: RELEASE keeps the key taken in the savepoint"
like "$out" "back\|$D8\|$id8a$" "8: a released savepoint's key goes with the rollback of the savepoint around it"
like "$out" "kept\|$C8\|$id8c$" "8: released to the transaction itself, the key stays"
out=$(keyonly8 -v ON_ERROR_STOP=0 <<SQL
BEGIN;
SELECT 1 FROM payments.pay_use_api_key('$K8a');
SAVEPOINT s;
SELECT 1 FROM payments.pay_use_api_key('$K8b');
SELECT 1 / 0;
ROLLBACK TO SAVEPOINT s;
SELECT 'error', * FROM ($who8) x;
COMMIT;
SQL
)
like "$out" "error\|$D8\|$id8a$" "8: an error in the savepoint, rolled back: the key held before acts"
out=$(keyonly8 <<SQL
BEGIN;
DO \$\$ BEGIN
	BEGIN
		PERFORM payments.pay_use_api_key('$K8b');
		RAISE EXCEPTION 'undo';
	EXCEPTION WHEN raise_exception THEN NULL;
	END;
END \$\$;
SELECT 'plpgsql', * FROM ($who8) x;
DO \$\$ BEGIN
	BEGIN
		PERFORM payments.pay_use_api_key('$K8c');
	EXCEPTION WHEN raise_exception THEN NULL;
	END;
END \$\$;
SELECT 'plpgsql-kept', * FROM ($who8) x;
COMMIT;
SQL
)
like "$out" "^plpgsql\|none\|none$" "8: a PL/pgSQL block that took a key and failed into its EXCEPTION clause leaves no key"
like "$out" "plpgsql-kept\|$C8\|$id8c$" "8: one that ended normally keeps it"
out=$(keyonly8 <<SQL
BEGIN;
SAVEPOINT s;
SELECT 1 FROM payments.pay_use_api_key('$K8b');
PREPARE TRANSACTION 'keys_hostile_hold8';
SELECT 'prepared', * FROM ($who8) x;
BEGIN;
SAVEPOINT s;
ROLLBACK TO SAVEPOINT s;
SELECT 'next', * FROM ($who8) x;
COMMIT;
SQL
)
sql -c "ROLLBACK PREPARED 'keys_hostile_hold8'" >/dev/null
like "$out" "prepared\|none\|none" "8: PREPARE TRANSACTION with a savepoint's key: the session has no key after it"
like "$out" "next\|none\|none" "8: nor does its next transaction, after a savepoint rolled back"

###########################################################################
# 9. An admin key rotating or revoking itself in a transaction its holder
#    leaves PREPAREd holds back no revocation of it by the owner: the
#    revocation is a row added to api_key_revocations, not a change of the
#    key's row, which that transaction holds (before: the owner's
#    pay_revoke_api_key waited for it, here until lock_timeout, 5 s).  The
#    key acts no more, with its old secret or the one the held rotation
#    made, and neither does a key it had made.
K9=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $C8, scopes => ARRAY['read', 'admin'])")
id9=$(cut -d_ -f2 <<<"$K9")
K9c=$(cluster_psql "$WORK" "$PORT" payments -At -q -v ON_ERROR_STOP=1 -U keys_hostile_keyonly -c "BEGIN" \
	-c "SELECT 1 FROM payments.pay_use_api_key('$K9')" \
	-c "SELECT 'made', api_key FROM payments.pay_create_api_key(scopes => ARRAY['read'])" -c "COMMIT" | sed -n 's/^made|//p')
id9c=$(cut -d_ -f2 <<<"$K9c")
K9new=$(cluster_psql "$WORK" "$PORT" payments -At -q -v ON_ERROR_STOP=1 -U keys_hostile_keyonly -c "BEGIN" \
	-c "SELECT 1 FROM payments.pay_use_api_key('$K9')" \
	-c "SELECT 'rotated', api_key FROM payments.pay_rotate_api_key($id9, overlap => '0')" \
	-c "PREPARE TRANSACTION 'keys_hostile_hold9'" | sed -n 's/^rotated|//p')
is "$(sql -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'keys_hostile_hold9'")" 1 \
	"9: (the admin key rotated itself in a transaction left prepared)"
like "$K9new" "^pk_${id9}_" "9: (the rotation returned the new secret)"
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT payments.pay_revoke_api_key($id9)" 2>&1)" t \
	"9: the owner revokes the admin key without waiting for its own rotation"
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly -c "SELECT 'used' FROM payments.pay_use_api_key('$K9')" 2>&1 || true)
like "$err" "PT401" "9: the key is refused with its old secret"
sql -c "COMMIT PREPARED 'keys_hostile_hold9'" >/dev/null
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly -c "SELECT 'used' FROM payments.pay_use_api_key('$K9new')" 2>&1 || true)
like "$err" "PT401" "9: and with the secret of the rotation committed after the revocation"
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly -c "SELECT 'used' FROM payments.pay_use_api_key('$K9c')" 2>&1 || true)
like "$err" "PT401" "9: a key it had made is revoked with it"
is "$(sql -c "SELECT string_agg(key_id || ':' || (revoked_at IS NOT NULL), ',' ORDER BY key_id) FROM payments.pay_list_api_keys(merchant_id => $C8) WHERE key_id IN ($id9, $id9c)")" \
	"$id9:true,$id9c:true" "9: pay_list_api_keys shows both revoked"
is "$(sql -c "SELECT payments.pay_revoke_api_key($id9c)")" f "9: revoking the key it made says it was revoked already"
# the key revokes itself, left prepared: the owner's revocation does not
# wait for it either, and holds when the key's own is rolled back
K9b=$(sql -c "SELECT api_key FROM payments.pay_create_api_key(merchant_id => $C8, scopes => ARRAY['read', 'admin'])")
id9b=$(cut -d_ -f2 <<<"$K9b")
cluster_psql "$WORK" "$PORT" payments -At -q -v ON_ERROR_STOP=1 -U keys_hostile_keyonly -c "BEGIN" \
	-c "SELECT 1 FROM payments.pay_use_api_key('$K9b')" \
	-c "SELECT payments.pay_revoke_api_key($id9b)" \
	-c "PREPARE TRANSACTION 'keys_hostile_hold9b'" >/dev/null
is "$(sql -c "SET lock_timeout = '5s'" -c "SELECT payments.pay_revoke_api_key($id9b)" 2>&1)" t \
	"9: the owner revokes an admin key that revoked itself in a prepared transaction, without waiting"
sql -c "ROLLBACK PREPARED 'keys_hostile_hold9b'" >/dev/null
err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -U keys_hostile_keyonly -c "SELECT 'used' FROM payments.pay_use_api_key('$K9b')" 2>&1 || true)
like "$err" "PT401" "9: the key's own revocation rolled back, the owner's holds"

tap_done
