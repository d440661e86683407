#!/usr/bin/env bash
# Runs once, from the official entrypoint, when the data directory is new.
# The temporary server then listens on the unix socket only and already
# preloads payments and pg_cron (payments-entrypoint.sh), and the entrypoint
# has set POSTGRES_USER and POSTGRES_DB.
#
# Optional environment:
#   PAYMENTS_API_LOGIN_ID, PAYMENTS_TRANSACTION_KEY   gateway credentials of
#       the default merchant (both or neither)
#   PAYMENTS_GATEWAY_URL     their endpoint (default: the Authorize.Net sandbox)
#   PAYMENTS_AUTHENTICATOR_PASSWORD   creates the roles PostgREST needs
set -euo pipefail

if [ "${PAYMENTS_API_LOGIN_ID:+set}" != "${PAYMENTS_TRANSACTION_KEY:+set}" ]; then
	echo "initdb-payments: set both PAYMENTS_API_LOGIN_ID and PAYMENTS_TRANSACTION_KEY, or neither" >&2
	exit 1
fi
export PAYMENTS_GATEWAY_URL=${PAYMENTS_GATEWAY_URL:-https://apitest.authorize.net/xml/v1/request.api}

# Secrets reach psql through its environment (\getenv), not its command
# line, and go into SQL quoted (:'name'). The unix socket, as the official
# entrypoint's own psql calls use.
sql() {
	PGHOST='' PGHOSTADDR='' psql -X -q -v ON_ERROR_STOP=1 --output=/dev/null \
		--username "$POSTGRES_USER" --no-password --dbname "$POSTGRES_DB" "$@"
}

sql -v db="$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS payments;
CREATE EXTENSION IF NOT EXISTS pg_cron;
ALTER DATABASE :"db" SET search_path = "$user", public, payments;
-- tamper evidence: seal the audit log every minute
SELECT cron.schedule('payments-audit-seal', '* * * * *', 'SELECT payments.pay_audit_seal()');
SQL

if [ -n "${PAYMENTS_API_LOGIN_ID:-}" ]; then
	sql <<'SQL'
\getenv login PAYMENTS_API_LOGIN_ID
\getenv key PAYMENTS_TRANSACTION_KEY
\getenv url PAYMENTS_GATEWAY_URL
SELECT payments.pay_configure_gateway(api_login_id => :'login', transaction_key => :'key',
	endpoint_url => :'url');
SQL
fi

# PostgREST logs in as authenticator and becomes web_user for a request
# whose JWT says {"role": "web_user"}. No anonymous role: API calls without
# a token are refused. web_user is declared a role only PostgREST reaches
# (the identity model, README "Tenancy"): the verified JWT's merchant_id
# claim decides which merchant it acts for, and the API is granted to it;
# a JWT without that claim is refused, never run for a default merchant.
if [ -n "${PAYMENTS_AUTHENTICATOR_PASSWORD:-}" ]; then
	sql <<'SQL'
\getenv password PAYMENTS_AUTHENTICATOR_PASSWORD
CREATE ROLE web_user NOLOGIN;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD :'password';
GRANT web_user TO authenticator;
SELECT payments.pay_declare_postgrest_role('web_user');
SQL
fi
