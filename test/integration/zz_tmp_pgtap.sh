#!/usr/bin/env bash
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE tap_tmp' >/dev/null
cluster_psql "$WORK" "$PORT" tap_tmp -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION payments' -c 'ALTER DATABASE tap_tmp SET search_path = public, payments' >/dev/null
cluster_psql "$WORK" "$PORT" tap_tmp -X -f "$REPO_ROOT/test/pgtap/${PGTAP_FILE:-customers}.sql" 2>&1
