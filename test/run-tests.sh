#!/usr/bin/env bash
# The whole test suite on a throwaway cluster (README: "Run the tests").
#
# Installs missing Debian packages, builds the extension and installs it into
# a private copy of the machine's PostgreSQL, starts a cluster of that copy
# in a temporary directory (own port, own socket directory,
# payments and pg_cron preloaded), runs the pg_regress tests (sql/ +
# expected/), the pgTAP tests (test/pgtap, through pg_prove) and the
# integration tests (test/integration), prints a summary, stops the cluster
# and exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

install_deps

WORK=$(mktemp -d "${TMPDIR:-/tmp}/payments-test.XXXXXX")
PORT=${PAYMENTS_TEST_PORT:-$(free_port)}
export WORK PORT PG_BINDIR
cleanup() {
	cluster_stop "$WORK"
	if [ "${KEEP_TEST_DIR:-}" = 1 ]; then log "kept $WORK"; else as_root rm -rf "$WORK"; fi
}
trap cleanup EXIT
build_and_install_private "$WORK"

log "starting a throwaway cluster in $WORK on port $PORT"
cluster_init "$WORK" "$PORT" "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
	"payments.settlement_check_interval = 1" "max_prepared_transactions = 10" "payments.test_clocks = on"
cluster_start "$WORK"
# the database the worker serves, with the extension (integration tests)
cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE payments'
cluster_psql "$WORK" "$PORT" payments -c 'CREATE EXTENSION payments'

passed=0
failed=0
failures=()

# count_tap NAME LOGFILE: add a TAP log's ok / not ok lines to the totals.
count_tap() {
	local name=$1 logf=$2 ok bad
	ok=$(grep -cE '^[[:space:]]*ok [0-9]+' "$logf" || true)
	bad=$(grep -cE '^[[:space:]]*not ok [0-9]+' "$logf" || true)
	passed=$((passed + ok))
	failed=$((failed + bad))
	[ "$bad" = 0 ] || failures+=("$name")
}

# The files the postgres OS user reads and writes live under $WORK.
cp -r "$REPO_ROOT/Makefile" "$REPO_ROOT/payments.control" "$REPO_ROOT/sql" "$REPO_ROOT/expected" \
	"$REPO_ROOT/test" "$WORK/"
as_root chown -R "$PG_OS_USER" "$WORK"

# TEST_FILTER=REGEX runs only the integration tests whose name matches,
# PGTAP_FILTER=REGEX only the pgTAP files whose name matches (for working
# on one test; the full suite is the default).
FILTER=${TEST_FILTER:-}
PGTAP_FILTER=${PGTAP_FILTER:-}

# 1. pg_regress: deterministic SQL (types, errors, catalog), through the
# Makefile's installcheck against this cluster; pg_regress makes the
# database payments_regress with the extension itself.
# (test/integration/installcheck.sh runs it on a temporary instance.)
if [ -z "$FILTER$PGTAP_FILTER" ]; then
log "pg_regress: make installcheck USE_RUNNING_SERVER=1"
set +e
as_pg env PGHOST="$WORK/sock" PGPORT="$PORT" PGUSER=postgres \
	make -C "$WORK" -s installcheck USE_RUNNING_SERVER=1 PG_CONFIG="$PG_BINDIR/pg_config" > "$WORK/regress.log" 2>&1
rc=$?
set -e
cat "$WORK/regress.log"
ok=$(grep -cE '^(ok|test) .*\.\.\. ok|^ok [0-9]+ ' "$WORK/regress.log" || true)
bad=$(grep -cE 'FAILED|failed \(ignored\)|^not ok ' "$WORK/regress.log" || true)
if [ "$rc" != 0 ] && [ "$bad" = 0 ]; then bad=1; fi
passed=$((passed + ok)); failed=$((failed + bad))
if [ "$bad" != 0 ]; then
	failures+=("pg_regress")
	[ -f "$WORK/regression.diffs" ] && cat "$WORK/regression.diffs"
fi

fi

# 2. pgTAP suites.
tap_files=()
for f in "$REPO_ROOT"/test/pgtap/*.sql; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .sql)
	if [ -n "$PGTAP_FILTER" ] && ! [[ "$name" =~ $PGTAP_FILTER ]]; then continue; fi
	tap_files+=("test/pgtap/$name.sql")
done
if { [ -z "$FILTER" ] || [ -n "$PGTAP_FILTER" ]; } && [ "${#tap_files[@]}" -gt 0 ]; then
	cluster_psql "$WORK" "$PORT" postgres -c 'CREATE DATABASE payments_tap'
	cluster_psql "$WORK" "$PORT" payments_tap -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION payments' -c 'ALTER DATABASE payments_tap SET search_path = public, payments'
	log "pgTAP: ${#tap_files[@]} files"
	set +e
	(cd "$WORK" && as_pg pg_prove -v --host "$WORK/sock" --port "$PORT" --username postgres \
		--dbname payments_tap "${tap_files[@]}") > "$WORK/pgtap.log" 2>&1
	rc=$?
	set -e
	cat "$WORK/pgtap.log"
	count_tap pgTAP "$WORK/pgtap.log"
	if [ "$rc" != 0 ] && ! printf '%s\n' "${failures[@]:-}" | grep -qx pgTAP; then
		failed=$((failed + 1)); failures+=("pgTAP")
	fi
fi

# 3. Integration tests: shell scripts that print TAP.
# conf_settled: "ok" once the worker, the recorder and the billing process
# go by the settings of the server's last load (pay_worker_health()'s
# *_conf_loaded_at at or past a new session's pg_conf_load_time(); one
# that has gone no round yet starts with them), or when there is nothing to
# ask (no extension).  A test's EXIT trap resets what it changed with a
# reload and waits for nobody: the next test must not meet a process still
# on the last one's settings.
conf_settled() {
	local out
	out=$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT 'ok' FROM payments.pay_worker_health()
		WHERE coalesce(worker_conf_loaded_at >= pg_conf_load_time(), true)
			AND coalesce(recorder_conf_loaded_at >= pg_conf_load_time(), true)
			AND coalesce(billing_conf_loaded_at >= pg_conf_load_time(), true)" 2>/dev/null) || { echo skip; return; }
	printf '%s' "$out"
}
for t in "$REPO_ROOT"/test/integration/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	if [ -n "$FILTER" ] && ! [[ "$name" =~ $FILTER ]]; then continue; fi
	if [ -z "$FILTER" ] && [ -n "$PGTAP_FILTER" ]; then continue; fi
	[ -n "$(poll_value 60 conf_settled)" ] ||
		log "the background processes still went by older settings after 60 s (pay_worker_health()'s *_conf_loaded_at)"
	log "integration: $name"
	set +e
	bash "$t" > "$WORK/$name.log" 2>&1
	rc=$?
	set -e
	cat "$WORK/$name.log"
	count_tap "$name" "$WORK/$name.log"
	if [ "$rc" != 0 ] && ! printf '%s\n' "${failures[@]:-}" | grep -qx "$name"; then
		failed=$((failed + 1)); failures+=("$name")
	fi
done

echo
if [ "$failed" = 0 ]; then
	log "all test groups passed"
else
	log "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
