#!/usr/bin/env bash
# A failover to an asynchronous standby: the primary commits an operation
# as "sending", sends it, and the gateway charges it; the primary dies
# before that commit reached the standby, which is promoted.  The new
# primary's copy says the operation was never sent.  Nothing may be
# charged twice or recorded as failed while the gateway holds the money:
# the new primary's worker must find out from the gateway what became of
# whatever may have been sent.
#
# Cases (each gated until replication is cut, by a gateway endpoint that
# refuses connections, so the standby knows it only as "queued, never
# sent"): a card purchase (whose card went with the old primary: it
# cannot be resent), and the capture of an authorization.  A card
# purchase queued on the old primary and never claimed there is also on
# the standby: it may not be charged either (its card is gone) and must
# not stay hidden.
#
# And a renewal the old primary's billing run issued and charged after the
# cut: the new primary knows nothing of it and bills the period again.  The
# same charge (subscription, period, attempt) carries the same invoice
# number, so the gateway's duplicate check answers it with the original
# transaction: the customer is charged once.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

FO="$WORK/failover"
PRI="$FO/primary"
STB="$FO/standby"
PPORT=$(free_port)
SPORT=$(free_port)
cleanup() {
	private_clusters_stop
	sim_stop
}
trap cleanup EXIT

private_cluster "$PRI" "$PPORT" "fsync = off" "full_page_writes = off" "wal_keep_size = '256MB'"
pq() { cluster_psql "$PRI" "$PPORT" payments "$@"; }
sq() { cluster_psql "$STB" "$SPORT" payments "$@"; }
cluster_psql "$PRI" "$PPORT" postgres -c 'CREATE DATABASE payments'
pq -c 'CREATE EXTENSION payments'

# the standby: a base backup of the primary, streaming from it (stopped at
# the end with the primary)
PRIVATE_CLUSTERS+=("$STB")
mkdir -p "$STB/sock"
as_root chown -R "$PG_OS_USER" "$STB"
as_pg "$PG_BINDIR/pg_basebackup" -h "$PRI/sock" -p "$PPORT" -U postgres -D "$STB/data" -R -X stream -c fast >/dev/null
as_pg sed -i -e "s|^port = .*|port = $SPORT|" -e "s|^unix_socket_directories = .*|unix_socket_directories = '$STB/sock'|" "$STB/data/postgresql.conf"
cluster_start "$STB"
is "$(sq -Atc 'SELECT pg_is_in_recovery()')" t "a streaming standby of the primary runs"
is "$(sq -Atc "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'payments worker'")" 0 \
	"no payments worker runs on the standby"

sim_start "$FO/sim"
M=$(pq -Atc "INSERT INTO payments.merchants (name) VALUES ('failover') RETURNING merchant_id")
TAG=$(pq -Atc "SELECT payments._invoice_tag()")
gateway() {	# gateway URL [TIMEOUT_MS]: the merchant's endpoint (3 s timeout)
	pq -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$1', ca_file => '$SIM_CA', timeout_ms => ${2:-3000}, merchant_id => $M)" >/dev/null
}
gateway "$SIM_TLS_API"
as_m() {	# as_m SERVER [psql args]: psql as merchant M on the primary or the standby
	local s=$1; shift
	"${s}q" -At -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" "$@"
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"
status_on() { as_m "$1" -c "SELECT status FROM pay_get_payment($2)"; }
wait_status() {	# wait_status SERVER PAYMENT STATUS: true once it has it (60 s)
	local i
	for i in $(seq 600); do
		[ "$(status_on "$1" "$2")" = "$3" ] && return 0
		sleep 0.1
	done
	return 1
}

# a monthly subscription on the merchant's test clock, its first month paid
as_m p -c "SELECT pay_set_test_clock(now())" >/dev/null
CID=$(as_m p -c "SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace')")
PM=$(as_m p -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => $card, validation_mode => 'none')")
as_m p -c "SELECT status FROM pay_wait_payment_method($PM, '20 s')" >/dev/null
SID=$(as_m p -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '25.00 USD', interval_unit => 'month')")
first_paid() { [ "$(as_m p -c "SELECT status FROM pay_get_subscription($SID)")" = active ] && echo yes; }
is "$(poll_value 30 first_paid)" yes "a subscription's first month is paid on the primary"
# the numbers its charges carried at the gateway (on SERVER)
charge_numbers() { as_m "$1" -c "SELECT string_agg(p.invoice_number, ' ') FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = $2"; }

A=$(as_m p -c "SELECT payment_id FROM pay_authorize(amount => '40.00 USD', card => $card)")
as_m p -c "SELECT status FROM pay_wait($A, '20 s')" >/dev/null
is "$(status_on p "$A")" requires_capture "an authorization is made on the primary"

# Gate: the endpoint refuses connections; the attempts provably never left.
gateway "https://127.0.0.1:$(free_port)/xml/v1/request.api"
P=$(as_m p -c "SELECT payment_id FROM pay_purchase(amount => '33.00 USD', card => $card)")
C=$(as_m p -c "SELECT operation_id FROM pay_capture(payment_id => $A)")
tried() {
	[ "$(pq -Atc "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status = 'queued' AND never_sent AND last_error IS NOT NULL
		AND (payment_id = $P OR operation_id = $C)")" = 2 ] && echo yes
}
is "$(poll_value 30 tried)" yes "a purchase and a capture wait, queued, never sent"
# and a purchase that stays queued behind a retry time far ahead
Q=$(as_m p -c "SELECT payment_id FROM pay_purchase(amount => '12.00 USD', card => $card)")
pq -c "UPDATE payments.operations SET next_attempt_at = now() + interval '1 day' WHERE merchant_id = $M AND payment_id = $Q" >/dev/null

# (both are tried again until then, sending for a moment: one caught
# sending gets its retry time set back by its failed try's record, is
# tried again, and may be replayed as sending; so the time is set again
# until both are queued with it, 30 s at most.  With their tries made to
# take 2 s by hand and the UPDATE made while one was sending, a single
# UPDATE left it tried on, and the standby's copy had it sending.)
put_off() {
	pq -Atc "UPDATE payments.operations SET next_attempt_at = now() + interval '10 minutes'
		WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C) AND status = 'queued'" >/dev/null
	[ "$(pq -Atc "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C)
		AND status = 'queued' AND next_attempt_at > now() + interval '5 minutes'")" = 2 ] && echo yes
}
is "$(poll_value 30 put_off)" yes "both are put off 10 minutes, queued"

# The standby replays all of it, then loses its primary's stream.
lsn=$(pq -Atc 'SELECT pg_current_wal_lsn()')
replayed() { [ "$(sq -Atc "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && echo yes; }
is "$(poll_value 30 replayed)" yes "the standby replayed the primary's state"
sq -c "ALTER SYSTEM SET primary_conninfo = ''" -c 'SELECT pg_reload_conf()' >/dev/null
cut() { [ "$(sq -Atc 'SELECT count(*) FROM pg_stat_wal_receiver')" = 0 ] && echo yes; }
is "$(poll_value 30 cut)" yes "the standby's stream is cut"

# On the primary: the gateway back, the held answer of the purchase (the
# worker waits 20 s for it: with 3 s, on a busy machine, the check below
# came after the timeout and found them unknown, or already looked up)
sim_ctl POST /faults '{"type":"hold","count":2,"process":true,"requestType":"createTransactionRequest","holdMs":60000}' >/dev/null
gateway "$SIM_TLS_API" 20000
pq -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C)" >/dev/null
charged() { [ -n "$(sim_ledger "P$TAG$P")" ] && [ "$(sim_ledger "P$TAG$A")" = "authorization 40.00,capture 40.00" ] && echo yes; }
is "$(poll_value 30 charged)" yes "the primary sent both: the gateway charged the purchase and captured the authorization"
is "$(pq -Atc "SELECT string_agg(status, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C)")" \
	"sending,sending" "their answers are held: the primary has them as sending"

is "$(sq -Atc "SELECT string_agg(status || ' ' || never_sent, ',' ORDER BY operation_id) FROM payments.operations WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C)")" \
	"queued true,queued true" "the standby's copy has both as queued, never sent"

# The old primary's billing process renews the subscription a month on
# (after the cut: the standby never hears of it) and the gateway charges it.
as_m p -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
renewed() { [ "$(as_m p -c "SELECT status FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")" = paid ] && echo yes; }
is "$(poll_value 60 renewed)" yes "the old primary renews the subscription: its period 1 invoice is paid"
old_renewal=$(charge_numbers p 1)
is "$(sim_ledger "$old_renewal")" "charge 25.00" "the gateway charged the renewal"
is "$(sq -Atc "SELECT count(*) FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")" 0 \
	"the standby has no period 1 invoice"

# The primary dies; the standby is promoted.
as_pg "$PG_BINDIR/pg_ctl" -D "$PRI/data" -m immediate stop >/dev/null
sim_ctl DELETE /faults >/dev/null
as_pg "$PG_BINDIR/pg_ctl" -D "$STB/data" -w promote >/dev/null
is "$(sq -Atc 'SELECT pg_is_in_recovery()')" f "the standby is promoted"
# The new primary's worker has started (and done its recovery) while both
# still wait for the retry times the standby knows (the refused
# connections' backoff, 10 minutes ahead): what the old primary changed
# after the cut, which made them due there, is lost with it.
recorded() { [ "$(sq -Atc "SELECT timeline_id FROM payments.worker_server")" = 2 ] && echo yes; }
is "$(poll_value 30 recorded)" yes "the new primary's worker records the new timeline"
like "$(grep 'not the one the worker last ran on' "$STB/postgres.log")" '[0-9]+ operations recorded as never sent are treated as possibly sent' \
	"and says in the log that what looked never sent is treated as possibly sent"
# then the gateway's address is set again, and the retry times pass
sq -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 3000, merchant_id => $M)" >/dev/null
sq -c "UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = $M AND (payment_id = $P OR operation_id = $C) AND status = 'queued'" >/dev/null

ok "$(passed wait_status s "$P" succeeded)" "the new primary records the purchase the gateway charged as succeeded"
is "$(sim_ledger "P$TAG$P")" "charge 33.00" "charged once"
is "$(as_m s -c "SELECT gateway_trans_id IS NOT NULL FROM pay_get_payment($P)")" t "with its transaction"
ok "$(passed wait_status s "$A" succeeded)" "and the capture the gateway made as captured"
is "$(sim_ledger "P$TAG$A")" "authorization 40.00,capture 40.00" "captured once"
is "$(sq -Atc "SELECT status FROM payments.operations WHERE merchant_id = $M AND operation_id = $C")" succeeded \
	"the capture operation succeeded"
is "$(sim_ledger "P$TAG$Q")" "" "the purchase never claimed is not charged"
is "$(sq -Atc "SELECT status || ' ' || never_sent FROM payments.operations WHERE merchant_id = $M AND payment_id = $Q")" 'queued false' \
	"and waits for its retry time, marked as possibly sent (a lost change may have made it due on the old primary)"

# The new primary's clock is a month behind (the advance was lost with the
# old primary); advanced again, its billing process bills period 1 again.
as_m s -c "SELECT pay_advance_test_clock('1 month 1 hour')" >/dev/null
renewed_s() { [ "$(as_m s -c "SELECT status FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $SID AND period_index = 1")" = paid ] && echo yes; }
is "$(poll_value 60 renewed_s)" yes "the new primary bills period 1 again and records it paid"
new_renewal=$(charge_numbers s 1)
is "$new_renewal" "$old_renewal" "under the invoice number the old primary's charge carried"
charges=$(sim_ledger_count "$old_renewal" charge)
[ "$new_renewal" = "$old_renewal" ] || charges=$((charges + $(sim_ledger_count "$new_renewal" charge)))
is "$charges" 1 "the customer is charged once for period 1"
is "$(as_m s -c "SELECT p.gateway_trans_id FROM payments.payments p JOIN payments.invoices i USING (merchant_id, invoice_id) WHERE p.merchant_id = $M AND i.subscription_id = $SID AND i.period_index = 1")" \
	"$(sim_ledger_trans_ids "$old_renewal" charge)" "the new primary's payment holds the original charge's transaction"

tap_done
