# Two servers of a test's own (source after integration.sh): an old one,
# whose history a new one takes over (a dump restored, a base backup
# started), and the simulator both talk to.
#
# two_servers DIR MERCHANT: OLD=DIR/old, made and started with database
# "payments" and the extension, merchant MERCHANT there (M, TAG); NEW=DIR/new
# for the test to make; their ports OPORT and NPORT; the simulator started
# in DIR/sim; both stopped at exit.
two_servers() {
	OLD="$1/old"
	NEW="$1/new"
	OPORT=$(free_port)
	NPORT=$(free_port)
	trap 'private_clusters_stop; sim_stop' EXIT
	private_cluster "$OLD" "$OPORT" "fsync = off"
	cluster_psql "$OLD" "$OPORT" postgres -c 'CREATE DATABASE payments'
	oq -c 'CREATE EXTENSION payments'
	sim_start "$1/sim"
	M=$(oq -Atc "INSERT INTO payments.merchants (name) VALUES ('$2') RETURNING merchant_id")
	TAG=$(oq -Atc "SELECT payments._invoice_tag()")
}
oq() { cluster_psql "$OLD" "$OPORT" payments "$@"; }
nq() { cluster_psql "$NEW" "$NPORT" payments "$@"; }
gateway() {	# gateway SERVER URL [TIMEOUT_MS]: the merchant's endpoint there (o or n)
	"${1}q" -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$2', ca_file => '$SIM_CA', timeout_ms => ${3:-3000}, merchant_id => $M)" >/dev/null
}
as_m() {	# as_m SERVER [psql args]: psql as merchant M on the old or the new server (o or n)
	local s=$1; shift
	"${s}q" -At -v ON_ERROR_STOP=1 -c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" "$@"
}
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123', 'Ada Lovelace')"

# old_subscription: on the old server, a monthly subscription of 25.00 USD
# begun 35 days ago (the merchant's test clock set back: a test clock never
# goes back, so it is made so), its first month paid: its second period
# began 5 days ago.  Sets CID, PM (its card) and SID.
old_subscription() {
	oq -c "INSERT INTO payments.billing_clocks (merchant_id, frozen_at) VALUES ($M, now() - interval '35 days')" >/dev/null
	CID=$(as_m o -c "SELECT customer_id FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace')")
	PM=$(as_m o -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $CID, card => $card, validation_mode => 'none')")
	as_m o -c "SELECT status FROM pay_wait_payment_method($PM, '20 s')" >/dev/null
	SID=$(as_m o -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $CID, price => '25.00 USD', interval_unit => 'month')")
	first_paid() { [ "$(as_m o -c "SELECT status FROM pay_get_subscription($SID)")" = active ] && echo yes; }
	is "$(poll_value 30 first_paid)" yes "a subscription's first month is paid on the old server"
}

# restore_days_later DUMP: the old server stopped (immediate), the
# simulator's clock two days on (past the gateway's duplicate window), and
# DUMP restored into a new server (NEW, database payments), checked.
restore_days_later() {
	as_pg "$PG_BINDIR/pg_ctl" -D "$OLD/data" -m immediate stop >/dev/null
	sim_ctl POST /clock '{"advanceSeconds": 172800}' >/dev/null
	restore_new "$1"
}
# restore_new DUMP: DUMP restored into a new server (NEW, database
# payments), checked.
restore_new() {
	private_cluster "$NEW" "$NPORT" "fsync = off"
	cluster_psql "$NEW" "$NPORT" postgres -c 'CREATE DATABASE payments'
	local restore_err
	restore_err=$(as_pg "$PG_BINDIR/pg_restore" -h "$NEW/sock" -p "$NPORT" -U postgres -d payments "$1" 2>&1) || true
	is "$restore_err" "" "pg_restore restores the dump into the new server"
}
# serving: "yes" once the new server's worker serves its database
serving() { [ "$(nq -Atc "SELECT database_oid = (SELECT oid FROM pg_database WHERE datname = 'payments') FROM payments.worker_server")" = t ] && echo yes; }
