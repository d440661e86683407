#!/usr/bin/env bash
# Card data at rest: after a card workload, no card number or security code
# can be found, or recovered, in anything the server keeps, even by someone
# who holds every file of it.
#
# A dedicated cluster archives its WAL, preloads pg_stat_statements (before
# payments, as README asks) and logs every statement with its bind
# parameters.  The workload gives cards as literal SQL, as bind parameters
# (pgbench -M extended), in a DO block, in EXPLAIN (also from a session
# with standard_conforming_strings off), with a mistyped number,
# a declined card and a malformed customer JSON next to a card number;
# card numbers in free text (description, metadata, customer, order_ref,
# idempotency key, a customer's name, a refund's reason, a customer profile
# id, a merchant's name and metadata: refused, nothing stored) and in the correlation id (x-request-id header, the
# payments.correlation_id setting, the argument: masked; a W3C traceparent
# is kept whole, unless its parent-id is a card number).
# Cards that cannot be opened (lost in a crash: one of them first outlived
# two key rotations, re-sealed by each; a corrupt vault row) fail alone,
# with the reason, while a good purchase behind them goes through.  Then a
# pg_basebackup, a pg_dump, an immediate stop and a restart; then the table
# rows, the server log, pg_stat_statements, pg_waldump's output and the raw
# WAL, the archive, the base backup, the dump and every file of the data
# directory are searched for every card number and security code used.  No
# key is on disk next to the data, and the fingerprints of a dump cannot be
# brute-forced without the key file (and can with it: they still work).
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

dir="$WORK/card-at-rest"
mkdir -p "$dir/archive"
port=$(free_port)
SIMDIR="$dir/sim"
cleanup() { private_clusters_stop; sim_stop; }
trap cleanup EXIT
sim_start "$SIMDIR"

private_cluster "$dir" "$port" \
	"shared_preload_libraries = 'pg_stat_statements,payments'" \
	"archive_mode = on" "archive_command = 'cp %p $dir/archive/%f'" \
	"log_min_duration_statement = 0" "log_statement = 'all'" \
	"log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
	"pg_stat_statements.track = 'all'" "pg_stat_statements.track_utility = on" \
	"payments.fingerprint_key_directory = '$dir/keys'"
log_file="$dir/postgres.log"
ok "$(grep -c "pg_stat_statements is loaded after payments" "$log_file")" \
	"no load-order warning: pg_stat_statements is loaded before payments, so payments masks what it keeps"

sq() { cluster_psql "$dir" "$port" payments -At "$@"; }
cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE payments" >/dev/null
sq -c "CREATE EXTENSION payments" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
M=$(sq -c "INSERT INTO payments.merchants (name) VALUES ('at rest') RETURNING merchant_id")
M2=$(sq -c "INSERT INTO payments.merchants (name) VALUES ('waits') RETURNING merchant_id")
configure() {	# and release the merchant's parked operations at once
	sq -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 5000, merchant_id => $1)" \
		-c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $1 AND status = 'queued'" \
		-c "SELECT payments._wake_at_commit()" >/dev/null
}
configure "$M"
Y=$(( $(date +%Y) + 2 ))
# as merchant M (or M2): mq MERCHANT SQL...
mq() { local m=$1; shift; cluster_psql "$dir" "$port" payments -At -c "SET payments.merchant_id = '$m'" "$@"; }
wait_done() {	# wait_done PAYMENT_ID MERCHANT: until the payment left pending
	local i
	for i in $(seq 300); do
		[ "$(mq "$2" -c "SELECT status FROM payments.pay_get_payment($1)")" != pending ] && return 0
		sleep 0.1
	done
	# still pending: what the worker made of it, for the failure's reader
	comment "payment $1 still pending: $(sq -c "SELECT string_agg(concat_ws(' ', kind, status, attempts,
		next_attempt_at - now(), last_error), ' / ') FROM payments.operations WHERE payment_id = $1 AND merchant_id = $2")"
	comment "worker: $(sq -c "SELECT string_agg(concat_ws(' ', pid, state, wait_event_type, wait_event, now() - state_change), ' / ')
		FROM pg_stat_activity WHERE backend_type LIKE 'payments%'")"
	comment "$(tail -n 30 "$dir/postgres.log")"
	return 1
}

# The cards (Luhn-valid test numbers, unusual security codes) and the
# mistyped ones (one digit off).
CARDS=(4007000000027 5424000000000015 370000000000002 6011000000000012 3530111333300000 4012888818888 38000000000006 4111111111111111)
CVVS=(739 826 7391 591 604 318 472 915 683 264 258 157 163)
MISTYPED=(5424000000000016 6011000000000013)

# 1. Literal SQL.
pid_literal=$(mq "$M" -c "SELECT payment_id FROM payments.pay_purchase(amount => '12.00 USD',
	card => payments.pay_card('${CARDS[0]}', 12, $Y, '${CVVS[0]}'))" | tail -1)
# 2. Bind parameters: pgbench sends :variables as parameters ($1, $2, ...).
cat > "$dir/bind.sql" <<'SQL'
SELECT payment_id FROM payments.pay_purchase(amount => '13.00 USD', card => payments.pay_card(:num, 12, :yr, :cvv));
SELECT payment_id FROM payments.pay_purchase(amount => '13.50 USD', card => :cardjson::payments.pay_card);
SQL
as_root chown "$PG_OS_USER" "$dir/bind.sql"
pgb() { as_pg env PGOPTIONS="-c payments.merchant_id=$M" "$PG_BINDIR/pgbench" -n -M extended -t 1 -h "$dir/sock" -p "$port" -U postgres "$@" payments; }
rc=0
pgb -f "$dir/bind.sql" -D num="${CARDS[1]}" -D cvv="${CVVS[1]}" -D yr="$Y" \
	-D cardjson="{\"number\": \"${CARDS[4]}\", \"exp_month\": 5, \"exp_year\": $Y, \"cvv\": \"${CVVS[4]}\"}" >"$dir/pgbench.out" 2>&1 || rc=$?
ok "$rc" "purchases with the card as bind parameters (pgbench -M extended)"
[ "$rc" = 0 ] || comment "$(cat "$dir/pgbench.out")"
# a mistyped card as a bind parameter: refused
echo "SELECT payments.pay_card(:num, 12, :yr, :cvv);" > "$dir/bad.sql"
as_root chown "$PG_OS_USER" "$dir/bad.sql"
pgb -f "$dir/bad.sql" -D num="${MISTYPED[0]}" -D cvv="${CVVS[1]}" -D yr="$Y" >/dev/null 2>&1 || true
# 3. A DO block, 4. EXPLAIN (and EXPLAIN ANALYZE).
mq "$M" -c "DO \$\$ BEGIN PERFORM payments.pay_purchase(amount => '14.00 USD',
	card => payments.pay_card('${CARDS[2]}', 12, $Y, '${CVVS[2]}')); END \$\$" >/dev/null
# (the code in a variable: pg_stat_statements keeps a DO block's text as
# it is, and only a code in pay_card(...) was masked in it)
mq "$M" -c "DO \$\$ DECLARE code text := '${CVVS[8]}'; BEGIN
	PERFORM payments.pay_card_last4(payments.pay_card('${CARDS[3]}', 12, $Y, code)); END \$\$" >/dev/null
mq "$M" -c "EXPLAIN SELECT payments.pay_card_last4(payments.pay_card('${CARDS[3]}', 12, $Y, '${CVVS[3]}'))" \
	-c "EXPLAIN ANALYZE SELECT payments.pay_card_info(payments.pay_card(number => '${CARDS[5]}', exp_month => 1, exp_year => $Y, cvv => '${CVVS[5]}'))" >/dev/null
# and from a session with standard_conforming_strings off (a legacy
# driver's), where '\'"' is one literal, and so is 'O\'Brien'.  Before:
# read as '\' and a quoted name holding the code, and as 'O\' and a
# literal opened after Brien, so the masked text handed to
# pg_stat_statements ('X'"' ..., 'XX'Brien'XXX...) no longer lexed as the
# statement had: the EXPLAIN failed ("unterminated quoted identifier"),
# its statement logged with the code in clear.  SELECTs of a card with
# that holder name, and from a default session one whose holder name ends
# in a backslash ('A\': read with the setting off, a literal that goes
# on), with a literal or a number after the call, run.
rc=0
mq "$M" -c "SET standard_conforming_strings = off" -c "SET escape_string_warning = off" \
	-c "EXPLAIN SELECT payments.pay_card_last4(payments.pay_card('${CARDS[6]}', 12, $Y, CASE WHEN '\\'\"' = '' THEN '' ELSE '${CVVS[9]}' END))" \
	>/dev/null 2>"$dir/nonstandard.err" || rc=$?
ok "$rc" "an EXPLAIN with a card from a session with standard_conforming_strings off runs"
[ "$rc" = 0 ] || comment "$(cat "$dir/nonstandard.err")"
got=$(mq "$M" -c "SET standard_conforming_strings = off" -c "SET escape_string_warning = off" \
	-c "SELECT payments.pay_card_last4(payments.pay_card('${CARDS[7]}', 12, $Y, '${CVVS[10]}', 'O\\'Brien')) || ' for ' || 'order 7'" 2>&1 || true)
is "$got" "1111 for order 7" "so does a SELECT of a card whose holder name is written 'O\\'Brien', a literal after it"
got=$(mq "$M" -c "SET standard_conforming_strings = off" -c "SET escape_string_warning = off" \
	-c "SELECT payments.pay_card_last4(payments.pay_card('${CARDS[7]}', 12, $Y, '${CVVS[11]}', 'O\\'Brien')) || 'x', 7" 2>&1 || true)
is "$got" "1111x|7" "and one with a number after it"
got=$(mq "$M" -c "SELECT payments.pay_card_last4(payments.pay_card('${CARDS[7]}', 12, $Y, '${CVVS[12]}', 'A\\')) || 'x', 7" 2>&1 || true)
is "$got" "1111x|7" "from a default session, a card whose holder name ends in a backslash ('A\\'), a number after it"
# 5. A mistyped card in literal SQL, 6. a card number in a malformed JSON.
out=$(mq "$M" -c "SELECT payments.pay_card('${MISTYPED[1]}', 12, $Y, '${CVVS[3]}')" 2>&1 || true)
like "$out" "invalid card number" "a mistyped card number is refused"
out=$(mq "$M" -c "SELECT payments.pay_purchase(amount => '15.00 USD', card => payments.pay_card('${CARDS[6]}', 12, $Y, '${CVVS[6]}'),
	customer => '{\"note\": ${CARDS[6]}x, \"cvv\": \"${CVVS[6]}\"}')" 2>&1 || true)
like "$out" "invalid input syntax for type json" "a malformed customer JSON is refused"
ok $(grep -E '^(ERROR|DETAIL|CONTEXT|HINT)' <<<"$out" | grep -q '[0-9]\{5\}' && echo 1 || echo 0) \
	"the JSON error the server sends has no digits of the card number ($(grep -E '^(DETAIL|CONTEXT)' <<<"$out" | tr '\n' ' '))"
# 7. A declined card (the simulator declines amount 9002.00).
pid_declined=$(mq "$M" -c "SELECT payment_id FROM payments.pay_purchase(amount => '9002.00 USD',
	card => payments.pay_card('${CARDS[7]}', 11, $Y, '${CVVS[7]}'))" | tail -1)
wait_done "$pid_literal" "$M" || true
wait_done "$pid_declined" "$M" || true
is "$(mq "$M" -c "SELECT status FROM payments.pay_get_payment($pid_literal)")" succeeded "the literal-SQL purchase succeeded"
is "$(mq "$M" -c "SELECT status FROM payments.pay_get_payment($pid_declined)")" failed "the declined purchase failed"

# 7b. Card numbers in free text: refused where a caller gives them (nothing
#     of the call is stored), masked in the correlation id (argument,
#     x-request-id header as PostgREST sets it, payments.correlation_id).
FREETEXT=(5105105105105100 4000056655665556 6011111111111117 378282246310005 4242424242424242 3566002020360505 5555555555554444 6011000990139424 4012888888881881 4917610000000000 5200828282828210 2223000048400011 5431111111111111 371449635398431)
grouped() { sed -E 's/([0-9]{4})/\1 /g; s/ $//' <<<"$1"; }
dashed() { sed -E 's/([0-9]{4})/\1-/g; s/-$//' <<<"$1"; }
rows() { mq "$M" -c "SELECT (SELECT count(*) FROM payments.payments WHERE merchant_id = $M) || ' ' ||
	(SELECT count(*) FROM payments.customers WHERE merchant_id = $M) || ' ' ||
	(SELECT count(*) FROM payments.idempotency_keys WHERE merchant_id = $M) || ' ' ||
	(SELECT count(*) FROM payments.operations WHERE merchant_id = $M) || ' ' ||
	(SELECT count(*) FROM payments.merchants)"; }
rows_before=$(rows)
refused() {	# refused FIELD SQL: the call fails with 22Y17 naming the field
	local out
	out=$(mq "$M" -c "\\set VERBOSITY verbose" -c "$2" 2>&1 || true)
	like "$out" "22Y17: $1 holds a card number" "a card number in $1 is refused (22Y17)"
}
card_sql="payments.pay_card('${CARDS[7]}', 12, $Y, '${CVVS[7]}')"
refused description "SELECT payments.pay_purchase(amount => '1.00 USD', card => $card_sql, description => 'card $(grouped "${FREETEXT[0]}")')"
refused metadata.note "SELECT payments.pay_purchase(amount => '1.00 USD', card => $card_sql, metadata => '{\"note\": \"$(dashed "${FREETEXT[1]}")\"}')"
refused customer.email "SELECT payments.pay_purchase(amount => '1.00 USD', card => $card_sql, customer => '{\"email\": \"${FREETEXT[2]}@example.com\"}')"
refused order_ref "SELECT payments.pay_authorize(amount => '1.00 USD', card => $card_sql, order_ref => '${FREETEXT[3]}')"
refused "idempotency key" "SELECT payments.pay_purchase(amount => '1.00 USD', card => $card_sql, idempotency_key => 'k-${FREETEXT[4]}')"
refused name "SELECT payments.pay_create_customer(name => 'Ada ${FREETEXT[5]}', email => 'ada@example.com')"
refused reason "SELECT payments.pay_refund(payment_id => $pid_literal, amount => '1.00 USD', reason => 'card ${FREETEXT[9]}')"
refused "customer profile id" "SELECT payments.pay_purchase(amount => '1.00 USD', customer_profile_id => '${FREETEXT[10]}', payment_profile_id => '1')"
# a merchant's name and metadata, which the owner writes into payments.merchants
# (before: kept in clear, found by a sweep of every argument)
refused "merchant name" "INSERT INTO payments.merchants (name) VALUES ('shop $(grouped "${FREETEXT[12]}")')"
refused "merchant metadata" "INSERT INTO payments.merchants (name, metadata) VALUES ('shop', '{\"a\": {\"b\": [\"${FREETEXT[13]}\"]}}')"
is "$(rows)" "$rows_before" "the refused calls stored nothing (payments, customers, idempotency keys, operations, merchants)"
# the correlation id, from each of its sources
pid_hdr=$(mq "$M" -c "SET request.headers = '{\"x-request-id\": \"${FREETEXT[6]}\"}'" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '2.10 USD', card => $card_sql)" | tail -1)
pid_guc=$(mq "$M" -c "SET payments.correlation_id = 'batch $(dashed "${FREETEXT[7]}")'" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '2.20 USD', card => $card_sql)" | tail -1)
pid_arg=$(mq "$M" -c "SELECT payment_id FROM payments.pay_purchase(amount => '2.30 USD', card => $card_sql,
	correlation_id => 'req-${FREETEXT[8]}')" | tail -1)
for p in "$pid_hdr" "$pid_guc" "$pid_arg"; do wait_done "$p" "$M" || true; done
is "$(mq "$M" -c "SELECT string_agg(status || ' ' || correlation_id, ' / ' ORDER BY payment_id) FROM payments.payments
	WHERE merchant_id = $M AND payment_id IN ($pid_hdr, $pid_guc, $pid_arg)")" \
	"succeeded XXXXXXXXXXXXXXXX / succeeded batch XXXX-XXXX-XXXX-XXXX / succeeded req-XXXXXXXXXXXXXXXX" \
	"a card number in the x-request-id header, payments.correlation_id or the correlation_id argument fails nothing and is kept masked"
is "$(mq "$M" -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M
	AND correlation_id = 'XXXXXXXXXXXXXXXX' AND request_masked ~ '\"refId\": ?\"XXXXXXXXXXXXXXXX\"'")" 1 \
	"the gateway was sent the masked correlation id as refId"
is "$(sq -c "SELECT count(*) FROM payments.audit_log WHERE correlation_id IN ('XXXXXXXXXXXXXXXX', 'batch XXXX-XXXX-XXXX-XXXX', 'req-XXXXXXXXXXXXXXXX')
	AND new_row ->> 'payment_id' IN ('$pid_hdr', '$pid_guc', '$pid_arg') AND table_name = 'payments' AND operation = 'INSERT'")" 3 \
	"the audit rows keep the masked correlation id"
# A W3C traceparent is an identifier, as a UUID is: kept as it is, and the
# refId sent is the digest of the id as given.  The three are random ones
# whose digits (alone or across a dash) the masking took for a card number
# before; the fourth has a card number as its parent-id: masked.
TP_HDR=00-40850609984967914c7c4c3600cc69f1-698ed9f64d8e0a2e-01
TP_GUC=00-d82bf65ce753774853ad22249cf762a2-9dc4259745858636-01
TP_ARG=00-ce4a23353b8a9e3c75c0e7e356756442-24766fefb9174922-01
TP_CARD=00-0af7651916cd43dd8448eb211c80319c-${FREETEXT[11]}-01
TP_CARD_MASKED=00-0af7651916cd43dd8448eb211c80319c-XXXXXXXXXXXXXXXX-01
# the header as PostgREST sets it: request.headers, local to the request's transaction
pid_tp_hdr=$(mq "$M" -q -c "BEGIN" \
	-c "SELECT set_config('request.headers', '{\"user-agent\": \"curl/8.5.0\", \"traceparent\": \"$TP_HDR\"}', true) IS NOT NULL" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '2.40 USD', card => $card_sql)" -c "COMMIT" | tail -1)
pid_tp_guc=$(mq "$M" -c "SET payments.correlation_id = '$TP_GUC'" \
	-c "SELECT payment_id FROM payments.pay_purchase(amount => '2.50 USD', card => $card_sql)" | tail -1)
pid_tp_arg=$(mq "$M" -c "SELECT payment_id FROM payments.pay_purchase(amount => '2.60 USD', card => $card_sql,
	correlation_id => '$TP_ARG')" | tail -1)
pid_tp_card=$(mq "$M" -c "SELECT payment_id FROM payments.pay_purchase(amount => '2.70 USD', card => $card_sql,
	correlation_id => '$TP_CARD')" | tail -1)
tp_pids="$pid_tp_hdr, $pid_tp_guc, $pid_tp_arg, $pid_tp_card"
for p in $pid_tp_hdr $pid_tp_guc $pid_tp_arg $pid_tp_card; do wait_done "$p" "$M" || true; done
is "$(mq "$M" -c "SELECT string_agg(status || ' ' || correlation_id, ' / ' ORDER BY payment_id) FROM payments.payments
	WHERE merchant_id = $M AND payment_id IN ($tp_pids)")" \
	"succeeded $TP_HDR / succeeded $TP_GUC / succeeded $TP_ARG / succeeded $TP_CARD_MASKED" \
	"a traceparent (header, setting, argument) is kept whole on the payment; a card number as its parent-id is masked"
# every row of each payment has its id: operations, events, audit rows (and the audited rows), exchanges
is "$(sq -c "SELECT string_agg(format('%s %s', p.payment_id, (SELECT string_agg(DISTINCT id, ',') FROM (
		SELECT o.correlation_id FROM payments.operations o WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
		UNION ALL SELECT e.correlation_id FROM payments.events e WHERE e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id
		UNION ALL SELECT a.correlation_id FROM payments.audit_log a WHERE a.new_row ->> 'payment_id' = p.payment_id::text
		UNION ALL SELECT a.new_row ->> 'correlation_id' FROM payments.audit_log a
			WHERE a.new_row ->> 'payment_id' = p.payment_id::text AND a.table_name IN ('payments', 'operations')
		UNION ALL SELECT x.correlation_id FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id)
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id) ids(id))
		= p.correlation_id), ' / ' ORDER BY p.payment_id)
	FROM payments.payments p WHERE p.merchant_id = $M AND p.payment_id IN ($tp_pids)")" \
	"$pid_tp_hdr t / $pid_tp_guc t / $pid_tp_arg t / $pid_tp_card t" \
	"each one's operations, events, audit rows (and the rows they audit) and gateway exchanges have the payment's id, and only it"
is "$(sq -c "SELECT string_agg(x.correlation_id || ' ' || (x.request_masked::jsonb #>> '{createTransactionRequest,refId}')
		|| ' ' || (x.response_masked::jsonb ->> 'refId'), ' / ' ORDER BY o.payment_id)
	FROM payments.gateway_exchanges x JOIN payments.operations o USING (merchant_id, operation_id)
	WHERE o.merchant_id = $M AND o.payment_id IN ($tp_pids) AND x.request_type = 'createTransactionRequest'")" \
	"$(for t in "$TP_HDR" "$TP_GUC" "$TP_ARG" "$TP_CARD_MASKED"; do r=$(printf %s "$t" | md5sum | cut -c1-20); printf '%s %s %s / ' "$t" "$r" "$r"; done | sed 's| / $||')" \
	"the gateway was sent (and echoed) as refId the digest of the id as given (the masked one for the card-bearing one)"

# 8. Cards that cannot be opened fail alone.  M2 has no gateway yet, so its
#    purchases wait in the vault: one that outlives two key rotations
#    (re-sealed by each, never in clear), then (after a crash) ones the
#    unlogged vault lost, and a corrupt vault row.
worker_pid() { sq -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'"; }
pid_rot=$(mq "$M2" -c "SELECT payment_id FROM payments.pay_purchase(amount => '16.00 USD',
	card => payments.pay_card('${CARDS[0]}', 12, $Y, '${CVVS[0]}'))" | tail -1)
is "$(sq -c "SELECT payments._vault_rotate_key(false)")" f "no scheduled rotation before payments.vault_key_rotation has passed"
rot_key() { sq -c "SELECT encode(substring(v.sealed from 5 for 4), 'hex') FROM payments.card_vault v JOIN payments.operations o
	USING (merchant_id, operation_id) WHERE o.merchant_id = $M2 AND o.payment_id = $pid_rot"; }
rot_key0=$(rot_key)
is "$(sq -c "SELECT payments._vault_rotate_key(true)" -c "SELECT payments._vault_rotate_key(true)" | tr '\n' ' ')" "t t " \
	"the sealing key is rotated twice (forced)"
ok $([ -n "$(rot_key)" ] && [ "$(rot_key)" != "$rot_key0" ] && echo 0 || echo 1) \
	"the waiting card is re-sealed under the new key, not lost"
pid_corrupt=$(mq "$M2" -c "SELECT payment_id FROM payments.pay_purchase(amount => '17.00 USD',
	card => payments.pay_card('${CARDS[1]}', 12, $Y, '${CVVS[1]}'))" | tail -1)
sq -c "UPDATE payments.card_vault v SET sealed = overlay(sealed placing '\\xff'::bytea from length(sealed))
	FROM payments.operations o WHERE o.merchant_id = v.merchant_id AND o.operation_id = v.operation_id
	AND o.payment_id = $pid_corrupt AND o.merchant_id = $M2" >/dev/null
pid_crash=$(mq "$M2" -c "SELECT payment_id FROM payments.pay_purchase(amount => '18.00 USD',
	card => payments.pay_card('${CARDS[2]}', 12, $Y, '${CVVS[2]}'))" | tail -1)
is "$(sq -c "SELECT count(*) FROM payments.card_vault WHERE merchant_id = $M2")" 3 "three cards wait in the vault"

# the base backup and the dump, while cards wait in the vault
as_pg "$PG_BINDIR/pg_basebackup" -h "$dir/sock" -p "$port" -U postgres -D "$dir/base" -X stream >/dev/null 2>&1
ok $? "pg_basebackup"
cluster_pg_dump "$dir" "$port" payments > "$dir/dump.sql"
ok $? "pg_dump"
vault_file=$(sq -c "SELECT pg_relation_filepath('payments.card_vault')")
db_oid=$(sq -c "SELECT oid FROM pg_database WHERE datname = 'payments'")
vault_node=$(sq -c "SELECT pg_relation_filenode('payments.card_vault')")
payments_node=$(sq -c "SELECT pg_relation_filenode('payments.payments')")

# crash, restart: the unlogged vault is emptied
as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
cluster_start "$dir"
for i in $(seq 100); do [ -n "$(worker_pid)" ] && break; sleep 0.1; done
wp=$(worker_pid)
is "$(sq -c "SELECT count(*) FROM payments.card_vault")" 0 "after the crash, the unlogged vault is empty"
configure "$M2"
pid_good=$(mq "$M2" -c "SELECT payment_id FROM payments.pay_purchase(amount => '19.00 USD',
	card => payments.pay_card('${CARDS[3]}', 12, $Y, '${CVVS[3]}'))" | tail -1)
wait_done "$pid_good" "$M2" || true
for p in "$pid_rot" "$pid_corrupt" "$pid_crash"; do wait_done "$p" "$M2" || true; done
is "$(mq "$M2" -c "SELECT status FROM payments.pay_get_payment($pid_good)")" succeeded \
	"a good purchase behind the cards that cannot be opened succeeds"
# the lost-card reason: what can lose a card, not a rotation that re-sealed it
lost="card data was lost before it was sent (a server restart, failover or restore; a vault key rotation forced before the transaction that sealed it committed; or a pay_card value kept from an earlier transaction outlived its key); ask for the card again"
is "$(mq "$M2" -c "SELECT string_agg(status || ': ' || coalesce(decline_reason, ''), ' / ' ORDER BY payment_id)
	FROM payments.payments WHERE payment_id IN ($pid_rot, $pid_corrupt, $pid_crash)")" \
	"failed: $lost / failed: $lost / failed: $lost" \
	"each card that could not be opened failed alone, with the reason"
sleep 2
is "$(worker_pid)" "$wp" "the worker did not restart (one process served them all)"

# the corrupt row on its own (no crash between sealing and claiming)
M3=$(sq -c "INSERT INTO payments.merchants (name) VALUES ('corrupt') RETURNING merchant_id")
pid_c2=$(mq "$M3" -c "SELECT payment_id FROM payments.pay_purchase(amount => '20.00 USD',
	card => payments.pay_card('${CARDS[4]}', 12, $Y, '${CVVS[4]}'))" | tail -1)
sq -c "UPDATE payments.card_vault SET sealed = overlay(sealed placing '\\xff'::bytea from length(sealed)) WHERE merchant_id = $M3" >/dev/null
configure "$M3"
wait_done "$pid_c2" "$M3" || true
is "$(mq "$M3" -c "SELECT status || ': ' || decline_reason FROM payments.pay_get_payment($pid_c2)")" \
	"failed: the sealed card data is corrupt and could not be opened; ask for the card again" \
	"a corrupt vault row fails its payment alone, with the reason"
is "$(sq -c "SELECT count(*) FROM payments.card_vault")" 0 "the vault is empty once every operation was answered"
is "$(worker_pid)" "$wp" "the worker still did not restart"

# pg_stat_statements, then a clean stop (it writes its file)
sq -c "SELECT query FROM pg_stat_statements" > "$dir/pgss.txt"
like "$(cat "$dir/pgss.txt")" "DO \\$\\$" "pg_stat_statements kept the DO block"
like "$(cat "$dir/pgss.txt")" "EXPLAIN SELECT" "pg_stat_statements kept the EXPLAIN"
like "$(cat "$dir/pgss.txt")" "CASE WHEN 'XXX' = '' THEN '' ELSE 'XXX' END" \
	"and the one from a session with standard_conforming_strings off, the code masked"
cp "$log_file" "$dir/server.log.copy"
cluster_stop "$dir"
as_root chmod -R a+rX "$dir"

# pg_waldump of every WAL segment (pg_wal, the archive, the base backup)
: > "$dir/waldump.txt"
for f in "$dir"/data/pg_wal/0000000* "$dir"/archive/0000000* "$dir"/base/pg_wal/0000000*; do
	[ -f "$f" ] || continue
	"$PG_BINDIR/pg_waldump" "$f" >> "$dir/waldump.txt" 2>/dev/null || true
done
ok $([ -s "$dir/waldump.txt" ] && echo 0 || echo 1) "pg_waldump read the WAL ($(wc -l < "$dir/waldump.txt") records)"
is "$(grep -c "rel [0-9]*/$db_oid/$vault_node\b" "$dir/waldump.txt" || true)" 0 \
	"no WAL record touches the vault's main fork (relfilenode $vault_node)"
ok $([ "$(grep -c "rel [0-9]*/$db_oid/$payments_node\b" "$dir/waldump.txt" || true)" -gt 0 ] && echo 0 || echo 1) \
	"the same search finds the WAL records of payments.payments (relfilenode $payments_node)"
ok $(grep -q "parameters: \$1 = 'XXXX" "$dir/server.log.copy" && echo 0 || echo 1) \
	"the log has the bind parameters of card statements, masked"
ok $([ ! -e "$dir/base/$vault_file" ] && echo 0 || echo 1) "the base backup holds no data of the vault (only its init fork)"
is "$(find "$dir/data" "$dir/base" -name 'payments_vault.key' | wc -l)" 0 "no vault key file in the data directory or the base backup"
is "$(find "$dir/data" "$dir/base" -name '*.key' | wc -l)" 0 "no key file at all in the data directory or the base backup"
is "$(find "$dir/keys" -name '*.key' | wc -l)" 1 "the fingerprint key file is in payments.fingerprint_key_directory, outside the data directory"

# Search everything for every card number and security code.
verdict=$(python3 - "$dir" "${CARDS[*]} ${MISTYPED[*]} ${FREETEXT[*]}" "${CVVS[*]}" <<'PY'
import os, sys, re
d, cards, cvvs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
roots = [os.path.join(d, p) for p in ("data", "archive", "base", "dump.sql", "pgss.txt", "waldump.txt", "server.log.copy", "postgres.log")]
needles = []
for c in cards:
    needles.append(c.encode())
    needles.append(" ".join(c[i:i+4] for i in range(0, len(c), 4)).encode())
    needles.append("-".join(c[i:i+4] for i in range(0, len(c), 4)).encode())
cvv_ctx = []
for v in cvvs:
    for f in ("'%s'", '"%s"', "= '%s'", '"cvv": "%s"', '"cardCode":"%s"', "cvv => '%s'"):
        cvv_ctx.append((f % v).encode())
hits, files, size = [], 0, 0
for r in roots:
    paths = [r] if os.path.isfile(r) else [os.path.join(a, f) for a, _, fs in os.walk(r) for f in fs]
    for p in paths:
        try:
            b = open(p, "rb").read()
        except OSError:
            continue
        files += 1; size += len(b)
        for n in needles + cvv_ctx:
            if n in b:
                i = b.index(n)
                hits.append("%s: %r" % (os.path.relpath(p, d), b[max(0, i-40):i+len(n)+40]))
print(files, size, len(hits))
for h in hits[:20]:
    print(h)
PY
)
read -r nfiles nbytes nhits <<<"$(head -1 <<<"$verdict")"
is "$nhits" 0 "no card number (plain or grouped) and no security code in context in $nfiles files ($nbytes bytes): data directory, WAL archive, base backup, dump, pg_stat_statements, pg_waldump output, server log"
[ "$nhits" = 0 ] || comment "$(tail -n +2 <<<"$verdict")"

# Fingerprints in the dump: the key is not there, so they cannot be
# checked against guessed numbers; with the key file they can.
key_hex=$(od -An -tx1 -v "$dir"/keys/*.key | tr -d ' \n')
ok $(grep -qi "$key_hex" "$dir/dump.sql" && echo 1 || echo 0) "the dump does not hold the fingerprint key"
brute=$(python3 - "$dir/dump.sql" "$key_hex" "${CARDS[*]}" <<'PY'
import sys, re, hmac, hashlib
dump = open(sys.argv[1]).read()
key = bytes.fromhex(sys.argv[2])
cards = sys.argv[3].split()
fps = set(re.findall(r"\b[0-9a-f]{64}\b", dump))
# every byte string in the dump a key could hide in
cands = {bytes.fromhex(h) for h in re.findall(r"\\\\x([0-9a-f]{32,128})\b", dump)}
cands |= {bytes.fromhex(h) for h in re.findall(r"\b([0-9a-f]{32,128})\b", dump) if len(h) % 2 == 0}
fp = lambda k, pan: hmac.new(k, pan.encode(), hashlib.sha256).hexdigest()
stored = [c for c in cards if fp(key, c) in fps]
without = sum(1 for c in stored for k in cands if fp(k, c) in fps)
# brute force with the key: first six and last four known, the rest guessed
def luhn_sum(s):
    t = 0
    for i, ch in enumerate(reversed(s)):
        n = int(ch)
        if i % 2: n = n * 2 - (9 if n > 4 else 0)
        t += n
    return t
recovered = 0; tried = 0
for c in stored:
    # the guessed digit just before the last four is not doubled: it is
    # the one that makes the Luhn sum a multiple of ten
    head, tail, mid = c[:6], c[-4:], len(c) - 10
    found = []
    for m in range(10 ** (mid - 1)):
        body = head + str(m).zfill(mid - 1)
        d = -luhn_sum(body + "0" + tail) % 10
        pan = body + str(d) + tail
        tried += 1
        if fp(key, pan) in fps: found.append(pan)
    recovered += found == [c]
print(len(stored), len(cands), without, recovered, tried)
PY
)
read -r nstored ncands without recovered tried <<<"$brute"
ok $([ "${nstored:-0}" -ge 4 ] && echo 0 || echo 1) "the dump holds the fingerprints of $nstored of the cards"
is "$without" 0 "none of the $ncands byte strings in the dump is the key of any fingerprint: brute force without the key file is impossible"
is "$recovered" "$nstored" "with the key file the owner restores, every stored card is found from its fingerprint, first six and last four ($tried Luhn-valid candidates): the fingerprints work"

tap_done
