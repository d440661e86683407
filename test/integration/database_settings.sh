#!/usr/bin/env bash
# What a database's encoding and its settings do to the worker.  A private
# cluster serves database latin, created LATIN1.
# - Text of the LATIN1 database reaches the gateway as UTF-8: a purchase
#   with a description, a card holder and a customer in accented letters
#   is sent (it failed: "order.description is not valid UTF-8"), the gateway
#   keeps them as written, and the exchange log reads them back in the
#   database's encoding.  So does an accented correlation id, as refId (the
#   purchase failed: "refId is not valid UTF-8").
# - Then a demanding DBA sets default_transaction_isolation = serializable
#   and default_transaction_read_only = on for the database (the callers
#   here override the latter for their sessions).
#   BackgroundWorkerInitializeConnection applies them to the worker as a
#   login would; the worker and the recorder run read committed, read-write
#   transactions all the same: their statements are written for it, and
#   under read-only every claim and recording failed (charges made at the
#   gateway waited unrecorded in the worker's memory).  And TimeZone
#   Asia/Shanghai with DateStyle SQL: the worker reads its timestamps as
#   values, not through their text.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

LD="$WORK/database-settings"
LPORT=$(free_port)
cleanup() {
	private_clusters_stop
	sim_stop
}
trap cleanup EXIT

private_cluster "$LD" "$LPORT" "fsync = off" "payments.database = 'latin'"
cluster_psql "$LD" "$LPORT" postgres -c "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
# callers: UTF-8 clients, read-write sessions
q() { PGCLIENTENCODING=UTF8 PGOPTIONS='-c default_transaction_read_only=off' cluster_psql "$LD" "$LPORT" latin -qAt -v ON_ERROR_STOP=1 "$@"; }
q -c 'CREATE EXTENSION payments'
# what the worker's and the recorder's transactions run under, as they
# update operations
q -c "CREATE TABLE public.background_tx (backend_type text, isolation text, read_only text)" \
	-c "CREATE FUNCTION public.note_background_tx() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.background_tx
	SELECT a.backend_type, current_setting('transaction_isolation'), current_setting('transaction_read_only')
	FROM pg_stat_activity a WHERE a.pid = pg_backend_pid() AND a.backend_type LIKE 'payments%';
	RETURN NEW;
END \$\$" \
	-c "CREATE TRIGGER zz_note_background_tx BEFORE UPDATE ON payments.operations
		FOR EACH ROW EXECUTE FUNCTION public.note_background_tx()"
sim_start "$LD/sim"
M=$(q -c "INSERT INTO payments.merchants (name) VALUES ('latin') RETURNING merchant_id")
q -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 5000, merchant_id => $M)" >/dev/null
P=$(q -c "SET payments.merchant_id = '$M'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '12.50 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Zoë Ærø'),
	description => 'Café crème brûlée', customer => '{\"city\": \"Zürich\", \"address\": \"Straße 5\"}')")
done_() { q -c "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $P AND status <> 'pending'"; }
is "$(poll_value 30 done_)" succeeded "a purchase in accented LATIN1 text succeeds"
is "$(q -c "SELECT coalesce(string_agg(DISTINCT last_error, '; '), '') FROM payments.operations WHERE merchant_id = $M")" "" \
	"no operation failed or was retried"
# the gateway kept the text as written (its own getTransactionDetails)
T=$(q -c "SELECT gateway_trans_id FROM payments.operations WHERE merchant_id = $M AND payment_id = $P")
details=$(curl -sS -X POST -H 'Content-Type: application/json' \
	-d "{\"getTransactionDetailsRequest\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},\"transId\":\"$T\"}}" "$SIM_API" |
	python3 -c 'import json, sys; t = json.loads(sys.stdin.buffer.read().decode("utf-8-sig"))["transaction"]
print("|".join([t["order"]["description"], t["billTo"].get("firstName", ""), t["billTo"].get("lastName", ""), t["billTo"].get("city", ""), t["billTo"].get("address", "")]))')
is "$details" "Café crème brûlée|Zoë|Ærø|Zürich|Straße 5" "the gateway has the description, holder and customer as written (UTF-8)"
is "$(q -c "SELECT count(*) FROM payments.gateway_exchanges WHERE merchant_id = $M AND request_masked::text LIKE '%Café crème brûlée%Zürich%'")" 1 \
	"the exchange log reads the request back in the database's encoding"
# an accented correlation id short enough to be sent as it is (refId):
# as UTF-8, and the reply's refId, UTF-8, is taken for the request's
P2=$(q -c "SET payments.merchant_id = '$M'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '13.50 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'),
	correlation_id => 'Café')")
done2() { q -c "SELECT status FROM payments.payments WHERE merchant_id = $M AND payment_id = $P2 AND status <> 'pending'"; }
is "$(poll_value 30 done2)" succeeded "a purchase with the correlation id Café succeeds"
is "$(q -c "SELECT coalesce(string_agg(DISTINCT last_error, '; '), '') FROM payments.operations WHERE merchant_id = $M AND payment_id = $P2")" "" \
	"its operation failed or was retried in no attempt (refId as UTF-8)"

# the database's defaults apply from the next connection on
q -c "ALTER DATABASE latin SET default_transaction_isolation = 'serializable'" \
	-c "ALTER DATABASE latin SET default_transaction_read_only = on" \
	-c "ALTER DATABASE latin SET TimeZone = 'Asia/Shanghai'" -c "ALTER DATABASE latin SET DateStyle = 'SQL, DMY'"
as_pg "$PG_BINDIR/pg_ctl" -D "$LD/data" -m fast -w -t 60 stop >/dev/null
cluster_start "$LD"
is "$(cluster_psql "$LD" "$LPORT" latin -At -c "SHOW default_transaction_isolation" -c "SHOW default_transaction_read_only" | tr '\n' ' ')" \
	"serializable on " "database latin: serializable and read-only by default"

q -c "TRUNCATE public.background_tx"
P=$(q -c "SET payments.merchant_id = '$M'" -c "SELECT payment_id FROM payments.pay_purchase(amount => '13.00 USD',
	card => payments.pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'))")
is "$(poll_value 30 done_)" succeeded "under them, a purchase succeeds"
is "$(q -c "SELECT DISTINCT isolation || ' ' || read_only FROM public.background_tx")" "read committed off" \
	"the worker claimed and recorded it in a read committed, read-write transaction"

is "$(q -c "SELECT count(*) FROM payments.operations WHERE merchant_id = $M AND status <> 'succeeded'")" 0 \
	"nothing left queued or sending"

# A save of the payment's card as a profile (from the transaction) whose
# request is lost unprocessed: the next attempt finds nothing saved, and
# waits until the first request can no longer be in flight (2 x 5 s + 5 s
# after it) before it makes the profile.  The worker reads when that was
# as a value: printed in the database's DateStyle SQL, Asia/Shanghai's
# "CST" read back as US Central, 14 hours later, and the save waited as
# if the request had just been sent, until it failed.
wpid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'"; }
W0=$(wpid)
C=$(q -c "SET payments.merchant_id = '$M'" -c "SELECT customer_id FROM payments.pay_create_customer(email => 'zoe@example.com')")
sim_ctl POST /faults '{"type":"reset","count":1,"process":false,"requestType":"createCustomerProfileFromTransactionRequest"}' >/dev/null
PM=$(q -c "SET payments.merchant_id = '$M'" -c "SELECT payment_method_id FROM payments.pay_save_payment_method(customer_id => $C, payment_id => $P)")
waits() { q -c "SELECT 'waits' FROM payments.operations WHERE merchant_id = $M AND payment_method_id = $PM AND last_error LIKE '%an earlier request may still be in flight%'"; }
is "$(poll_value 30 waits)" waits "a save that found nothing after a lost request waits for the earlier request"
active() { q -c "SELECT status FROM payments.payment_methods WHERE merchant_id = $M AND payment_method_id = $PM AND status <> 'pending'"; }
is "$(poll_value 60 active)" active "then saves it"
is "$(wpid)" "$W0" "the worker ran on throughout (the profile's request, built outside a transaction, converted its text)"

tap_done
