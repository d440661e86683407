#!/usr/bin/env bash
# The container files, checked without a Docker engine or a cluster:
# docker/compose.yaml parses and is wired safely (its build files exist,
# services others wait for have healthchecks, ports bind loopback only), each
# Dockerfile copies only files the build context holds and keeps compilers
# out of its final stage, the scripts pass bash -n and shellcheck, the
# entrypoint makes payments and pg_cron serve the database the official
# image creates, the init script sets up that database from the environment
# (psql replaced by a stub that records its calls), and the README's
# development JWT verifies with the compose file's default secret.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

docker_dir=$REPO_ROOT/docker
compose=$docker_dir/compose.yaml
entrypoint=$docker_dir/payments-entrypoint.sh
initdb=$docker_dir/initdb-payments.sh
PY=/usr/bin/python3		# Debian's, where python3-yaml installs PyYAML

tmp=$(mktemp -d "${TMPDIR:-/tmp}/docker_files.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The checks that read YAML and Dockerfiles. Each prints its problems on one
# line ("; "-separated), or nothing.
cat > "$tmp/check.py" <<'PY'
import base64, glob, hashlib, hmac, json, os, re, sys

def load_compose(path):
    import yaml
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get('services'), dict) or not doc['services']:
        raise SystemExit('no services mapping')
    return doc

def builds(path):
    """(service, context dir, Dockerfile path) of every service that builds."""
    out = []
    for name, svc in load_compose(path)['services'].items():
        b = svc.get('build')
        if b is None:
            continue
        if isinstance(b, str):
            b = {'context': b}
        ctx = os.path.normpath(os.path.join(os.path.dirname(path), b.get('context', '.')))
        out.append((name, ctx, os.path.join(ctx, b.get('dockerfile', 'Dockerfile'))))
    return out

def depends(svc):
    d = svc.get('depends_on') or {}
    return {n: {} for n in d} if isinstance(d, list) else d

def check_builds(path):
    p = []
    for name, ctx, df in builds(path):
        if not os.path.isdir(ctx):
            p.append('%s: no build context %s' % (name, ctx))
        elif not os.path.isfile(df):
            p.append('%s: no Dockerfile %s' % (name, df))
    return p

def check_health(path):
    svcs = load_compose(path)['services']
    p = []
    for name, svc in svcs.items():
        for dep in depends(svc):
            hc = (svcs.get(dep) or {}).get('healthcheck')
            if dep not in svcs:
                p.append('%s depends on unknown %s' % (name, dep))
            elif not hc or hc.get('disable') or not hc.get('test'):
                p.append('%s depends on %s, which has no healthcheck' % (name, dep))
    return p

def check_conditions(path):
    p = []
    for name, svc in load_compose(path)['services'].items():
        for dep, spec in depends(svc).items():
            cond = (spec or {}).get('condition')
            if cond not in ('service_healthy', 'service_completed_successfully'):
                p.append('%s waits for %s with condition %s' % (name, dep, cond))
    return p

def check_ports(path):
    p = []
    for name, svc in load_compose(path)['services'].items():
        for port in svc.get('ports') or []:
            if isinstance(port, dict):
                ok = port.get('host_ip') == '127.0.0.1'
            else:
                ok = str(port).startswith('127.0.0.1:')
            if not ok:
                p.append('%s publishes %s beyond 127.0.0.1' % (name, port))
    return p

def default(value):
    """The default of a compose value "${VAR:-default}" (the value itself otherwise)."""
    m = re.fullmatch(r'\$\{[A-Za-z_][A-Za-z0-9_]*:-(.*)\}', str(value))
    return m.group(1) if m else str(value)

def check_insecure(path):
    """A service whose default gateway URL is http:// also allows it by default
    (pay_configure_gateway refuses http:// otherwise, and the first start fails)."""
    p = []
    for name, svc in load_compose(path)['services'].items():
        env = svc.get('environment') or {}
        if isinstance(env, list):
            env = dict(e.split('=', 1) for e in env if '=' in e)
        url = default(env.get('PAYMENTS_GATEWAY_URL', ''))
        if url.startswith('http://') and default(env.get('PAYMENTS_ALLOW_INSECURE_ENDPOINT', 'off')) != 'on':
            p.append('%s: gateway %s without PAYMENTS_ALLOW_INSECURE_ENDPOINT on' % (name, url))
    return p

def instructions(dockerfile):
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, cur = [], ''
    with open(dockerfile) as f:
        for line in f:
            s = line.strip()
            if not cur and (not s or s.startswith('#')):
                continue
            if s.startswith('#'):
                continue
            if s.endswith('\\'):
                cur += s[:-1] + ' '
                continue
            cur += s
            word, _, rest = cur.partition(' ')
            out.append((word.upper(), rest.strip()))
            cur = ''
    return out

def ignore_patterns(ctx):
    pats = []
    path = os.path.join(ctx, '.dockerignore')
    if os.path.exists(path):
        for line in open(path):
            s = line.strip()
            if not s or s.startswith('#'):
                continue
            neg = s.startswith('!')
            s = os.path.normpath(s.lstrip('!').lstrip('/'))
            rx = ''
            i = 0
            while i < len(s):
                if s.startswith('**/', i):	# any directories, or none
                    rx += '(.*/)?'
                    i += 3
                elif s.startswith('**', i):
                    rx += '.*'
                    i += 2
                elif s[i] == '*':
                    rx += '[^/]*'
                    i += 1
                elif s[i] == '?':
                    rx += '[^/]'
                    i += 1
                else:
                    rx += re.escape(s[i])
                    i += 1
            pats.append((neg, re.compile(rx + '$')))
    return pats

def ignored(rel, pats):
    """Whether .dockerignore leaves rel (or a directory above it) out."""
    parts = os.path.normpath(rel).split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for neg, rx in pats:
        if any(rx.match(p) for p in prefixes):
            out = not neg
    return out

def check_copies(dockerfile, ctx):
    p = []
    pats = ignore_patterns(ctx)
    for ins, args in instructions(dockerfile):
        if ins not in ('COPY', 'ADD'):
            continue
        words = json.loads(args) if args.startswith('[') else args.split()
        flags = [w for w in words if w.startswith('--')]
        if any(f.startswith('--from=') for f in flags):
            continue
        srcs = [w for w in words if not w.startswith('--')][:-1]
        if not srcs:
            p.append('%s without a source' % ins)
        for src in srcs:
            hits = glob.glob(os.path.join(ctx, src))
            if not hits:
                p.append('%s %s: not in the build context' % (ins, src))
            elif all(ignored(os.path.relpath(h, ctx), pats) for h in hits):
                p.append('%s %s: excluded by .dockerignore' % (ins, src))
    return p

COMPILER = re.compile(r'^(build-essential|gcc(-[0-9.]+)?|g\+\+(-[0-9.]+)?|c\+\+|cc|'
                      r'clang(-[0-9.]+)?|cpp(-[0-9.]+)?|make|cmake|[a-z0-9.+-]+-dev(-[0-9.]+)?)$')

def check_compilers(dockerfile):
    ins = instructions(dockerfile)
    froms = [i for i, (w, _) in enumerate(ins) if w == 'FROM']
    if not froms:
        return ['no FROM']
    stages = set()
    for w, args in ins[:froms[-1]]:
        m = re.search(r'\bAS\s+(\S+)', args, re.I) if w == 'FROM' else None
        if m:
            stages.add(m.group(1).lower())
    p = []
    final = ins[froms[-1]][1].split()
    base = [w for w in final if not w.startswith('--')][0].lower()
    if base in stages:
        p.append('the final stage builds on stage %s' % base)
    for w, args in ins[froms[-1] + 1:]:
        if w == 'RUN':
            p += ['the final stage runs %s' % t for t in re.split(r'[\s;&|()]+', args) if COMPILER.match(t)]
    return p

def b64d(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))

def check_token(readme, compose, initdb):
    """The README's development JWT: signed with compose's default secret,
    for a role the init script creates."""
    env = load_compose(compose)['services']['postgrest']['environment']
    m = re.fullmatch(r'\$\{PGRST_JWT_SECRET:-(.+)\}', str(env.get('PGRST_JWT_SECRET', '')))
    if not m:
        return ['no default PGRST_JWT_SECRET in the compose file']
    tokens = re.findall(r'eyJ[\w-]+\.[\w-]+\.[\w-]+', open(readme).read())
    if not tokens:
        return ['no JWT in the README']
    roles = re.findall(r'CREATE ROLE (\w+)', open(initdb).read())
    p = []
    for t in tokens:
        h, pl, sig = t.split('.')
        good = hmac.new(m.group(1).encode(), ('%s.%s' % (h, pl)).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(b64d(sig), good):
            p.append('%s...: not signed with the default secret' % t[:20])
        elif json.loads(b64d(pl)).get('role') not in roles:
            p.append('%s...: role %s is not created by the init script' % (t[:20], json.loads(b64d(pl)).get('role')))
    return p

def check_postgrest(compose, version):
    """PostgREST as the tests run it: the same version, and the merchant
    API keys' pre-request function (without it X-Api-Key is ignored and no
    rate limit applies)."""
    svc = load_compose(compose)['services']['postgrest']
    p = []
    if svc.get('image') != 'postgrest/postgrest:v%s' % version:
        p.append('image %s, where the tests run PostgREST %s' % (svc.get('image'), version))
    if svc.get('environment', {}).get('PGRST_DB_PRE_REQUEST') != 'payments.pay_postgrest_pre_request':
        p.append('PGRST_DB_PRE_REQUEST is not payments.pay_postgrest_pre_request')
    return p

cmd, args = sys.argv[1], sys.argv[2:]
try:
    if cmd == 'parse':
        load_compose(args[0])
    elif cmd == 'dockerfiles':
        for _, ctx, df in builds(args[0]):
            print('%s\t%s' % (df, ctx))
    else:
        print('; '.join(globals()['check_' + cmd](*args)))
except (Exception, SystemExit) as e:	# one line, so that TAP stays readable
    print(('%s: %s' % (type(e).__name__, e)).replace('\n', ' '))
    sys.exit(1)
PY
check() { "$PY" "$tmp/check.py" "$@" 2>&1; }

# --- compose.yaml
if out=$(check parse "$compose"); then rc=0; else rc=1; fi
ok "$rc" "docker/compose.yaml parses as YAML with services${out:+ ($out)}"
is "$(check builds "$compose")" "" "every build context and Dockerfile of the compose file exists"
is "$(check health "$compose")" "" "every service another depends on has a healthcheck"
is "$(check conditions "$compose")" "" "every depends_on waits for a condition (healthy)"
is "$(check ports "$compose")" "" "every published port binds 127.0.0.1"
is "$(check insecure "$compose")" "" "a default http:// gateway (the simulator) comes with PAYMENTS_ALLOW_INSECURE_ENDPOINT on"
tested_postgrest=$(sed -n 's/^POSTGREST_VERSION=//p' "$REPO_ROOT/test/lib/postgrest.sh")
is "$(check postgrest "$compose" "$tested_postgrest")" "" \
	"PostgREST is the version the tests run ($tested_postgrest), with the API keys' db-pre-request"
is "$(check token "$REPO_ROOT/README.md" "$compose" "$initdb")" "" \
	"the README's development JWT is signed with the compose file's default secret for a role the init script creates"

# --- Dockerfiles: those the compose file builds, and any other in docker/
declare -A contexts=()
while IFS=$'\t' read -r df ctx; do contexts[$df]=$ctx; done < <(check dockerfiles "$compose")
for df in "$docker_dir"/Dockerfile*; do
	[ -n "${contexts[$df]:-}" ] || contexts[$df]=$REPO_ROOT
done
while IFS= read -r df; do
	rel=${df#"$REPO_ROOT"/}
	[ -f "$df" ] || continue	# reported by the build check above
	is "$(check copies "$df" "${contexts[$df]}")" "" "$rel: every COPY source is in the build context"
	is "$(check compilers "$df")" "" "$rel: no compiler or -dev package in the final stage"
done < <(printf '%s\n' "${!contexts[@]}" | sort)

# --- the shell scripts
for f in "$entrypoint" "$initdb"; do
	rel=${f#"$REPO_ROOT"/}
	out=$(bash -n "$f" 2>&1) && rc=0 || rc=1
	ok "$rc" "$rel: bash -n${out:+ ($out)}"
	if command -v shellcheck >/dev/null; then
		out=$(shellcheck "$f" 2>&1) && rc=0 || rc=1
	else
		out="shellcheck is not installed"; rc=1
	fi
	ok "$rc" "$rel: shellcheck${out:+ ($(tr '\n' ' ' <<<"$out"))}"
done

# --- the entrypoint, with a stub of the official one that prints its arguments
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "$@"\n' > "$tmp/bin/docker-entrypoint.sh"
chmod +x "$tmp/bin/docker-entrypoint.sh"
stub_env=(env -i "PATH=$tmp/bin:/usr/bin:/bin")
# wrapper_dbs [VAR=value...]: the database payments and pg_cron are given
wrapper_dbs() {
	local out
	out=$("${stub_env[@]}" "$@" bash "$entrypoint" postgres)
	printf 'payments=%s cron=%s' "$(grep -o 'payments\.database=[^ ]*' <<<"$out" | cut -d= -f2)" \
		"$(grep -o 'cron\.database_name=[^ ]*' <<<"$out" | cut -d= -f2)"
}
is "$(wrapper_dbs POSTGRES_USER=alice)" "payments=alice cron=alice" "POSTGRES_USER=alice alone: the database is alice"
is "$(wrapper_dbs POSTGRES_USER=alice POSTGRES_DB=shop)" "payments=shop cron=shop" "POSTGRES_DB=shop: the database is shop"
is "$(wrapper_dbs)" "payments=postgres cron=postgres" "neither set: the database is postgres"
printf 'vault\n' > "$tmp/dbname"
is "$(wrapper_dbs POSTGRES_DB_FILE="$tmp/dbname")" "payments=vault cron=vault" "POSTGRES_DB_FILE (a secret) names the database"
is "$("${stub_env[@]}" POSTGRES_DB=shop bash "$entrypoint" -c work_mem=8MB)" \
	"postgres -c shared_preload_libraries=payments,pg_cron -c payments.database=shop -c cron.database_name=shop -c work_mem=8MB" \
	"server flags alone: postgres with the preload first and the caller's flags after"
is "$("${stub_env[@]}" bash "$entrypoint" psql --version)" "psql --version" "another command passes through unchanged"

# --- the init script, with a stub psql that records its calls
cat > "$tmp/bin/psql" <<'STUB'
#!/usr/bin/env bash
{
	printf 'ARGS'; printf ' %s' "$@"; printf '\n'
	cat
	printf 'ENV url=%s\n' "${PAYMENTS_GATEWAY_URL:-}"
	printf 'ENV insecure=%s\n' "${PAYMENTS_ALLOW_INSECURE_ENDPOINT:-}"
} >> "$PSQL_LOG"
STUB
chmod +x "$tmp/bin/psql"
# run_init LOG [VAR=value...]: run the init script as the official entrypoint would
run_init() {
	local log=$1; shift
	: > "$log"
	"${stub_env[@]}" PSQL_LOG="$log" POSTGRES_USER=alice POSTGRES_DB=shop "$@" bash "$initdb" 2>/dev/null
}
run_init "$tmp/full.log" PAYMENTS_API_LOGIN_ID=login-123 PAYMENTS_TRANSACTION_KEY=key-secret-456 \
	PAYMENTS_AUTHENTICATOR_PASSWORD=pw-secret-789 && rc=0 || rc=1
ok "$rc" "the init script runs with credentials and a PostgREST password"
calls=$(grep -c '^ARGS' "$tmp/full.log" || true)
right=$(grep '^ARGS' "$tmp/full.log" | grep -- '--username alice' | grep -c -- '--dbname shop' || true)
is "$right/$calls" "3/3" "every psql call connects as POSTGRES_USER to POSTGRES_DB"
like "$(tr '\n' ' ' < "$tmp/full.log")" \
	'-v db=shop .*CREATE EXTENSION IF NOT EXISTS payments;.*CREATE EXTENSION IF NOT EXISTS pg_cron;.*ALTER DATABASE :"db"' \
	"it creates payments and pg_cron in that database"
like "$(tr '\n' ' ' < "$tmp/full.log")" \
	'getenv key PAYMENTS_TRANSACTION_KEY .*pay_configure_gateway\(.*ENV url=https://apitest\.authorize\.net/xml/v1/request\.api' \
	"it configures the gateway from the environment (the sandbox when no URL is given)"
like "$(tr '\n' ' ' < "$tmp/full.log")" "CREATE ROLE web_user NOLOGIN;.*CREATE ROLE authenticator LOGIN NOINHERIT.*GRANT web_user TO authenticator;.*SELECT payments.pay_declare_postgrest_role\\('web_user'\\)" \
	"with PAYMENTS_AUTHENTICATOR_PASSWORD it creates the PostgREST roles and declares web_user (its JWT claim decides the merchant)"
n=$(grep '^ARGS' "$tmp/full.log" | grep -cE 'key-secret-456|pw-secret-789' || true)
is "$n" 0 "secrets never appear on psql's command line"
run_init "$tmp/sim.log" PAYMENTS_API_LOGIN_ID=login-123 PAYMENTS_TRANSACTION_KEY=key-secret-456 \
	PAYMENTS_GATEWAY_URL=http://anet-sim:8080/xml/v1/request.api PAYMENTS_ALLOW_INSECURE_ENDPOINT=on && rc=0 || rc=1
like "$rc $(tr '\n' ' ' < "$tmp/sim.log")" \
	"^0 .*getenv insecure PAYMENTS_ALLOW_INSECURE_ENDPOINT .*SET payments.allow_insecure_endpoint = :'insecure';.*pay_configure_gateway\\(.*ENV insecure=on" \
	"with PAYMENTS_ALLOW_INSECURE_ENDPOINT=on it lets pay_configure_gateway take the simulator's http:// URL"
like "$(tr '\n' ' ' < "$tmp/full.log")" "ENV insecure=off" "without it, https only"
run_init "$tmp/bare.log" && rc=0 || rc=1
n=$(grep -cE 'pay_configure_gateway|CREATE ROLE' "$tmp/bare.log" || true)
is "$rc:$n" "0:0" "without credentials or password it configures no gateway and creates no role"
run_init "$tmp/half.log" PAYMENTS_API_LOGIN_ID=login-123 && rc=0 || rc=1
is "$rc:$(grep -c '^ARGS' "$tmp/half.log" || true)" "1:0" "a login id without a transaction key stops the initialisation"

# --- the checks themselves catch what they look for
cat > "$tmp/bad.yaml" <<'YAML'
services:
  db:
    build: {context: ./nowhere}
    ports: ["5432:5432", {target: 80, published: 8080}]
  app:
    image: x
    depends_on: [db]
YAML
is "$(check ports "$tmp/bad.yaml")" "db publishes 5432:5432 beyond 127.0.0.1; db publishes {'target': 80, 'published': 8080} beyond 127.0.0.1" \
	"self-check: ports on every interface are caught"
like "$(check health "$tmp/bad.yaml") | $(check conditions "$tmp/bad.yaml") | $(check builds "$tmp/bad.yaml")" \
	'^app depends on db, which has no healthcheck \| app waits for db with condition None \| db: no build context' \
	"self-check: a dependency without healthcheck or condition, and a missing context, are caught"
mkdir -p "$tmp/ctx"
printf 'x\n' > "$tmp/ctx/present.o"
printf '**/*.o\n' > "$tmp/ctx/.dockerignore"
cat > "$tmp/ctx/Dockerfile" <<'DOCKERFILE'
FROM debian AS build
RUN apt-get install -y gcc
FROM debian
COPY missing.txt /x
COPY present.o /y
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libssl-dev postgresql-server-dev-15 ca-certificates
DOCKERFILE
is "$(check copies "$tmp/ctx/Dockerfile" "$tmp/ctx")" \
	"COPY missing.txt: not in the build context; COPY present.o: excluded by .dockerignore" \
	"self-check: a missing or ignored COPY source is caught"
is "$(check compilers "$tmp/ctx/Dockerfile")" \
	"the final stage runs libssl-dev; the final stage runs postgresql-server-dev-15" \
	"self-check: -dev packages in the final stage are caught"

tap_done
