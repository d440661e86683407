#!/usr/bin/env bash
# CREATE EXTENSION payments refuses, with a hint, when the library is not in
# shared_preload_libraries; and works once it is.
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

tap_done
