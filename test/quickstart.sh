#!/usr/bin/env bash
# The README's main command: set up this machine, build and install the
# extension, start a local cluster (payments and pg_cron preloaded) under
# .local/ in the checkout (or a directory under /tmp), create the extension, show what it does, and
# print how to connect.
#
#   bash test/quickstart.sh          set up (or restart) and demonstrate
#   bash test/quickstart.sh stop     stop the local cluster
#   bash test/quickstart.sh destroy  stop it and delete its directory
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

PORT=${PAYMENTS_PORT:-5499}
# The cluster lives in .local/ of the checkout when the postgres OS user can
# reach it; a checkout in a private directory (mktemp -d) gets a directory
# under /tmp named after the checkout instead.
locate_cluster() {
	if id postgres >/dev/null 2>&1 && as_pg test -x "$REPO_ROOT" 2>/dev/null; then
		LOCAL="$REPO_ROOT/.local"
	else
		LOCAL="/tmp/payments-quickstart-$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)"
	fi
	DIR="$LOCAL/cluster"
}

case "${1:-start}" in
stop)
	PG_BINDIR=$(pg_config --bindir); locate_cluster
	cluster_stop "$DIR"; log "stopped"; exit 0 ;;
destroy)
	PG_BINDIR=$(pg_config --bindir); locate_cluster
	cluster_stop "$DIR"; as_root rm -rf "$LOCAL"; log "removed $LOCAL"; exit 0 ;;
start) ;;
*) die "usage: $0 [start|stop|destroy]" ;;
esac

install_deps
build_and_install
locate_cluster

if [ -f "$DIR/data/PG_VERSION" ]; then
	log "restarting the local cluster in $DIR"
	cluster_stop "$DIR"
else
	log "creating a local cluster in $DIR (port $PORT)"
	cluster_init "$DIR" "$PORT"
fi
cluster_start "$DIR"

q() { cluster_psql "$DIR" "$PORT" "$@"; }
if [ -z "$(q postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'payments'")" ]; then
	q postgres -c 'CREATE DATABASE payments'
fi
q payments <<'SQL'
CREATE EXTENSION IF NOT EXISTS payments;
CREATE EXTENSION IF NOT EXISTS pg_cron;
ALTER DATABASE payments SET search_path = "$user", public, payments;
SQL

log "demonstration"
q payments -v ON_ERROR_STOP=0 -e <<'SQL'
SET search_path = public, payments;
\pset footer off
-- Money: integer minor units with an ISO 4217 currency; never a float.
SELECT '12.34 USD'::pay_amount AS usd, 'JPY 1500'::pay_amount AS jpy, '1.234 KWD'::pay_amount AS kwd,
       pay_minor_units('12.34 USD') AS cents;
-- Arithmetic stays in one currency; division rounds half to even.
SELECT '10.00 USD'::pay_amount / 3 AS a_third, '0.05 USD'::pay_amount / 2 AS half_to_even,
       '19.99 EUR'::pay_amount * 0.2 AS vat;
-- Errors instead of silent rounding or mixing:
SELECT '12.345 USD'::pay_amount;
SELECT '1 USD'::pay_amount + '1 EUR';
-- Tenancy: a default merchant exists from install.
SELECT merchant_id, name, is_default FROM payments.merchants;
SQL

if q payments -Atc "SELECT 1 FROM pg_proc WHERE proname = 'pay_card' AND pronamespace = 'payments'::regnamespace" | grep -q 1; then
	q payments -v ON_ERROR_STOP=0 -e <<'SQL'
SET search_path = public, payments;
\pset footer off
-- A card: validated, masked, fingerprinted; the number cannot be read back.
SELECT c AS card, pay_card_brand(c) AS brand, pay_card_last4(c) AS last4,
       left(pay_card_fingerprint(c), 16) || '...' AS fingerprint
FROM (SELECT pay_card(number => '4111 1111 1111 1111', exp_month => 12,
                      exp_year => extract(year FROM now())::int + 2, cvv => '123') AS c) t;
SQL
fi

cat <<EOF

The local cluster is running (data in $DIR/data, log in $DIR/postgres.log).
Connect:
    psql "postgresql://postgres@127.0.0.1:$PORT/payments"
Stop it:     bash test/quickstart.sh stop
Remove it:   bash test/quickstart.sh destroy
EOF
