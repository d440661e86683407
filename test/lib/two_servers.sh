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
