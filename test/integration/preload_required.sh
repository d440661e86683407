#!/usr/bin/env bash
# CREATE EXTENSION payments refuses, with a hint, when the library is not in
# shared_preload_libraries; and works once it is.  The worker of a server
# preloaded before its database exists waits for it without flooding the log;
# against a schema of an older version (a new library installed, ALTER
# EXTENSION UPDATE not yet run) it waits and says so once, and the calls that
# need the library refuse with a hint, until the update.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}

dir=$(mktemp -d /tmp/payments-nopreload.XXXXXX)
port=$(free_port)
trap 'private_clusters_stop; as_root rm -rf "$dir"' EXIT
private_cluster "$dir" "$port" "shared_preload_libraries = ''" "fsync = off"

out=$(cluster_psql "$dir" "$port" postgres -c 'CREATE EXTENSION payments' 2>&1 || true)
like "$out" 'ERROR:  payments must be loaded via shared_preload_libraries' "CREATE EXTENSION without preload fails with a clear error"
like "$out" "HINT:  Add payments to shared_preload_libraries in postgresql.conf and restart the server." "the error carries a hint"
n=$(cluster_psql "$dir" "$port" postgres -Atc "SELECT count(*) FROM pg_extension WHERE extname = 'payments'")
is "$n" 0 "nothing was installed"
n=$(cluster_psql "$dir" "$port" postgres -Atc "SELECT count(*) FROM pg_namespace WHERE nspname = 'payments'")
is "$n" 0 "the payments schema was not left behind"

cluster_stop "$dir"
as_pg sed -i "s/^shared_preload_libraries = ''/shared_preload_libraries = 'payments'/" "$dir/data/postgresql.conf"
cluster_start "$dir"
out=$(cluster_psql "$dir" "$port" postgres -c 'CREATE EXTENSION payments' 2>&1) ; rc=$?
ok "$rc" "CREATE EXTENSION works once preloaded"
v=$(cluster_psql "$dir" "$port" postgres -Atc "SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'payments'")
default_version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO_ROOT/payments.control")
is "$v" "$default_version payments" "the default version ($default_version) in schema payments"
out=$(cluster_psql "$dir" "$port" postgres -c 'ALTER EXTENSION payments SET SCHEMA public' 2>&1 || true)
like "$out" 'does not support SET SCHEMA' "the extension is not relocatable"

# payments.database ("payments" here) does not exist yet: the worker cannot
# connect, and tries again after 1, 2, 4 ... seconds, not every second.
# (Its tries are read until they show it, 40 s at most: a fixed 8 s was
# too short for the fourth try on a busy machine.)
# the seconds between its tries, from the log's timestamps
retry_gaps() {
	grep 'FATAL:  database "payments" does not exist' "$dir/postgres.log" | python3 -c '
import sys, datetime
t = [datetime.datetime.strptime(" ".join(l.split()[:2]), "%Y-%m-%d %H:%M:%S.%f") for l in sys.stdin]
print(" ".join("%.1f" % (b - a).total_seconds() for a, b in zip(t, t[1:])))'
}
growing() { python3 -c 'import sys; g = [float(x) for x in sys.argv[1:]]; sys.exit(not (len(g) >= 2 and g[-1] >= 2.5 and g[-1] > g[0]))' "$@"; }
r=1
for _ in $(seq 80); do
	gaps=$(retry_gaps)
	# shellcheck disable=SC2086
	if growing $gaps; then r=0; break; fi
	sleep 0.5
done
ok "$r" "the worker retries a missing database with a growing wait (gaps: ${gaps:-none} s)"
cluster_psql "$dir" "$port" postgres -c 'CREATE DATABASE payments' >/dev/null
# the first released schema, as a server upgraded from it still has
cluster_psql "$dir" "$port" payments -c "CREATE EXTENSION payments VERSION '0.1.0'" >/dev/null
waits='payments worker waits: database "payments" has schema version 0.1.0, this library serves '"$default_version"
for _ in $(seq 120); do
	grep -qF "$waits" "$dir/postgres.log" && break
	sleep 0.5
done
sleep 6		# the worker checks again every 5 s: it must not say it again
n=$(grep -cF "$waits" "$dir/postgres.log" || true)
is "$n" 1 "against schema 0.1.0 the worker waits and says so once"
like "$(grep -F "$waits" -A1 "$dir/postgres.log")" 'HINT:  Run ALTER EXTENSION payments UPDATE in database "payments"\.' "with a hint"
out=$(cluster_psql "$dir" "$port" payments -v VERBOSITY=verbose -c 'SELECT payments._wake_at_commit()' 2>&1 || true)
like "$out" "ERROR:  PT503: the payments library $default_version cannot serve schema version 0\.1\.0" "a call that needs the library refuses against schema 0.1.0 (PT503)"
like "$out" 'HINT:  Run ALTER EXTENSION payments UPDATE in this database\.' "with a hint"
out=$(cluster_psql "$dir" "$port" payments -c "SELECT payments.pay_amount('12.34', 'USD')" -Atc "SELECT payments.pay_amount('1.50', 'EUR')" 2>&1) ; rc=$?
ok "$rc" "the types keep working against schema 0.1.0 (the update needs them)"
cluster_psql "$dir" "$port" payments -c 'ALTER EXTENSION payments UPDATE' >/dev/null
starts="payments worker: database \"payments\" now has schema version $default_version, starting"
for _ in $(seq 60); do
	grep -qF "$starts" "$dir/postgres.log" && break
	sleep 0.5
done
n=$(grep -cF "$starts" "$dir/postgres.log" || true)
is "$n" 1 "after ALTER EXTENSION payments UPDATE the worker says it starts"
alive=f
for _ in $(seq 180); do
	alive=$(cluster_psql "$dir" "$port" payments -Atc "SELECT alive FROM payments.pay_worker_health()")
	[ "$alive" = t ] && break
	sleep 0.5
done
is "$alive" t "and serves the database"
out=$(cluster_psql "$dir" "$port" payments -Atc 'SELECT payments._wake_at_commit()' 2>&1) ; rc=$?
ok "$rc" "the call that refused before the update works"

# Another library that initializes libcurl before payments does (loaded
# first in shared_preload_libraries): payments cannot put its wiping
# allocator in, and says so at start, with what to change.
warning='WARNING:  payments cannot wipe the memory libcurl frees'
n=$(grep -cF "$warning" "$dir/postgres.log" || true)
is "$n" 0 "with payments loaded first, no warning about libcurl's memory"
cat > "$dir/curl_first.c" <<'C'
#include "postgres.h"
#include "fmgr.h"
#include <curl/curl.h>
PG_MODULE_MAGIC;
void _PG_init(void);
void
_PG_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(FATAL, "curl_first: curl_global_init failed");
}
C
# the server's headers: the private tree the suite runs on has none
for pc in pg_config /usr/bin/pg_config; do
	inc=$("$pc" --includedir-server 2>/dev/null || true)
	[ -f "$inc/postgres.h" ] && break
done
if cc -shared -fPIC -Wall -Werror -I"$inc" -o "$dir/curl_first.so" \
	"$dir/curl_first.c" -lcurl > "$dir/cc.log" 2>&1; then r=0; else r=1; sed 's/^/# /' "$dir/cc.log"; fi
ok "$r" "a module that initializes libcurl itself compiles"
chmod 755 "$dir" "$dir/curl_first.so"
cluster_stop "$dir"
as_pg sed -i "s|^shared_preload_libraries = 'payments'|shared_preload_libraries = '$dir/curl_first.so, payments'|" "$dir/data/postgresql.conf"
cluster_start "$dir"
n=$(grep -cF "$warning" "$dir/postgres.log" || true)
is "$n" 1 "loaded after a library that initialized libcurl, payments warns once at start"
like "$(grep -F "$warning" -A2 "$dir/postgres.log")" 'HINT:  Put payments before that library in shared_preload_libraries\.' "with a hint"
alive=f
for _ in $(seq 120); do
	alive=$(cluster_psql "$dir" "$port" payments -Atc "SELECT alive FROM payments.pay_worker_health()" 2>/dev/null || true)
	[ "$alive" = t ] && break
	sleep 0.5
done
is "$alive" t "and its worker still serves the database"

tap_done
