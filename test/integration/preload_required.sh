#!/usr/bin/env bash
# CREATE EXTENSION payments refuses, with a hint, when the library is not in
# shared_preload_libraries; and works once it is.  The worker of a server
# preloaded before its database exists waits for it without flooding the log.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
PG_BINDIR=$(pg_config --bindir)

dir=$(mktemp -d /tmp/payments-nopreload.XXXXXX)
port=$(free_port)
trap 'cluster_stop "$dir"; as_root rm -rf "$dir"' EXIT
cluster_init "$dir" "$port" "shared_preload_libraries = ''" "fsync = off"
cluster_start "$dir"

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
is "$v" "0.1.0 payments" "version 0.1.0 in schema payments"
out=$(cluster_psql "$dir" "$port" postgres -c 'ALTER EXTENSION payments SET SCHEMA public' 2>&1 || true)
like "$out" 'does not support SET SCHEMA' "the extension is not relocatable"

# payments.database ("payments" here) does not exist yet: the worker cannot
# connect, and tries again after 1, 2, 4 ... seconds, not every second.
sleep 8
# the seconds between its tries, from the log's timestamps
gaps=$(grep 'FATAL:  database "payments" does not exist' "$dir/postgres.log" | python3 -c '
import sys, datetime
t = [datetime.datetime.strptime(" ".join(l.split()[:2]), "%Y-%m-%d %H:%M:%S.%f") for l in sys.stdin]
print(" ".join("%.1f" % (b - a).total_seconds() for a, b in zip(t, t[1:])))')
if python3 -c 'import sys; g = [float(x) for x in sys.argv[1:]]; sys.exit(not (len(g) >= 2 and g[-1] >= 2.5 and g[-1] > g[0]))' $gaps; then
	r=0; else r=1; fi
ok "$r" "the worker retries a missing database with a growing wait (gaps: ${gaps:-none} s)"
cluster_psql "$dir" "$port" postgres -c 'CREATE DATABASE payments' >/dev/null
cluster_psql "$dir" "$port" payments -c 'CREATE EXTENSION payments' >/dev/null
alive=f
for _ in $(seq 180); do
	alive=$(cluster_psql "$dir" "$port" payments -Atc "SELECT alive FROM payments.pay_worker_health()")
	[ "$alive" = t ] && break
	sleep 0.5
done
is "$alive" t "once the database and the extension exist, the worker serves it"

tap_done
