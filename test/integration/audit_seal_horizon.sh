#!/usr/bin/env bash
# How far pay_audit_seal() may seal while other transactions run
# (src/audit_horizon.c).  A review found that any session, of a role with
# no privilege at all, left idle in a transaction that has an xid (a
# temporary table is enough) stopped sealing for everyone: the horizon
# waited for every transaction running, in any database.  Now only
# transactions that hold audit ids of this database limit it, to below
# their first id, prepared ones too (hostile_roles.sh); the seals
# still never cover a row committed after them.  Each seal's digest goes
# to the server log.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
source "$(dirname "$0")/../lib/sessions.sh"
sessions_init audit-seal-horizon
trap sessions_kill EXIT

q() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
M=$(q -c "INSERT INTO payments.merchants (name) VALUES ('seal horizon') RETURNING merchant_id")
q >/dev/null <<SQL
CREATE TABLE public.hz (id int PRIMARY KEY, merchant_id bigint NOT NULL);
SELECT payments.pay_audit_attach('public.hz');
DROP ROLE IF EXISTS hz_nobody;
CREATE ROLE hz_nobody;
SQL
seal() { q -c "SELECT payments.pay_audit_seal('$1')"; }
last_sealed() { q -c "SELECT coalesce(max(range_end), 0) FROM payments.audit_seals WHERE merchant_id = $M"; }
audit_id_of() { q -c "SELECT audit_id FROM payments.audit_log WHERE table_name = 'hz' AND new_row ->> 'id' = '$1'"; }
seal '1 second' >/dev/null

# 1. A role with no privilege, idle in a transaction with an xid, does not
#    stop sealing (before: pay_audit_seal waited for it, then sealed 0).
session a
say a "SET ROLE hz_nobody; BEGIN; CREATE TEMP TABLE hold (x int); SELECT 'holding';"
say a '\echo A-HOLDS'
# (each step of session a is waited for, 30 s at most, or the test stops:
# going on without it would seal with no transaction open)
[ "$(poll_value 30 done_with a A-HOLDS)" = 1 ] || die "session a never opened its transaction"
q -c "INSERT INTO public.hz VALUES (1, $M)" >/dev/null
# (a deadline of 30 s, the seal done in under 15: with 3 s and 2.5 a slow
# connection alone failed it)
t0=$(date +%s%N)
ok "$(( $(seal "30 seconds") >= 1 ? 0 : 1 ))" "an unrelated open transaction does not stop the seal"
ok "$(( ($(date +%s%N) - t0) / 1000000 < 15000 ? 0 : 1 ))" "nor makes it wait for its deadline"
is "$(last_sealed)" "$(audit_id_of 1)" "the seal covers the row just written"

# 2. A transaction holding an audit id limits the seal to below it; rows
#    committed after it by others wait for it; once it commits, everything
#    is sealed and verifies.
say a "ROLLBACK; RESET ROLE; BEGIN; INSERT INTO public.hz VALUES (2, $M); SELECT 'wrote';"
say a '\echo A-WROTE'
[ "$(poll_value 30 done_with a A-WROTE)" = 1 ] || die "session a never wrote its row"
q -c "INSERT INTO public.hz VALUES (3, $M)" >/dev/null
seal '1 second' >/dev/null
held=$(q -c "SELECT max(audit_id) FROM payments.audit_log WHERE table_name = 'hz'")	# row 3 (row 2 unseen)
ok "$(( $(last_sealed) < held ? 0 : 1 ))" "a row committed after an open transaction's first audit id is not sealed yet"
say a 'COMMIT;'
say a '\echo A-DONE'
[ "$(poll_value 30 done_with a A-DONE)" = 1 ] || die "session a never committed"
close a
a2=$(audit_id_of 2)
ok "$(( a2 < held ? 0 : 1 ))" "(the open transaction's row has the lower id)"
ok "$(( $(seal '3 seconds') >= 1 ? 0 : 1 ))" "once it committed, the rest is sealed"
is "$(last_sealed)" "$held" "up to the last row"
is "$(q -c "SELECT payments.pay_audit_verify($M)")" "" "and every row verifies (none appeared inside a sealed range)"

# 3. A prepared transaction holding an audit id: the seal stays below it
#    (its backend handed its first id over); sealed once committed.
q -c "BEGIN" -c "INSERT INTO public.hz VALUES (4, $M)" -c "PREPARE TRANSACTION 'hz_prepared'" >/dev/null
q -c "INSERT INTO public.hz VALUES (5, $M)" >/dev/null
before=$(last_sealed)
seal '1 second' >/dev/null
is "$(last_sealed)" "$before" "a prepared transaction holding an audit id holds the seal back"
q -c "COMMIT PREPARED 'hz_prepared'" >/dev/null
ok "$(( $(seal '3 seconds') >= 1 ? 0 : 1 ))" "once committed, the rows are sealed"
is "$(last_sealed)" "$(audit_id_of 5)" "up to the last"
is "$(q -c "SELECT payments.pay_audit_verify($M)")" "" "and verify"

# 4. Each seal's digest goes to the server log, as pay_audit_digest()
#    gives it: a copy outside the database that verify takes back.
head=$(q -c "SELECT d -> 0 ->> 'batch_hash' FROM payments.pay_audit_digest($M) d")
line() { grep -F "payments audit digest: " "$WORK/postgres.log" | grep -F "\"$head\"" | tail -1; }
ok "$([ -n "$(poll_value 60 line)" ] && echo 0 || echo 1)" "the seal wrote its digest to the server log"
logged=$(line | sed 's/^.*payments audit digest: //')
is "$(q -v d="$logged" <<<"SELECT coalesce(payments.pay_audit_verify($M, :'d'::jsonb)::text, 'intact');")" intact \
	"and the log's copy verifies against the chain"

q -c "SELECT payments.pay_audit_detach('public.hz')" -c "DROP ROLE hz_nobody" >/dev/null
tap_done
