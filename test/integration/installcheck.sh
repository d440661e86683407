#!/usr/bin/env bash
# `make installcheck` is self-contained: in a checkout the server's OS user
# owns, it makes a temporary instance (pg_regress --temp-instance=./tmp_check,
# payments and pg_cron preloaded by test/regress.conf), runs the pg_regress
# tests against the installed extension, and stops and removes the instance.
# As root it refuses at once and says what to do (initdb refuses root).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
: "${WORK:?run from test/run-tests.sh}"
# the PostgreSQL the suite installed the extension into
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}

# a copy of what `make installcheck` reads, owned by the server's OS user
copy="$WORK/installcheck"
as_root rm -rf "$copy"
mkdir -p "$copy/test"
cp -r "$REPO_ROOT/Makefile" "$REPO_ROOT/payments.control" "$REPO_ROOT/sql" "$REPO_ROOT/expected" "$copy/"
cp "$REPO_ROOT/test/regress.conf" "$copy/test/"
as_root chown -R "$PG_OS_USER" "$copy"
n=$(find "$REPO_ROOT/sql" -maxdepth 1 -name '*.sql' ! -name 'payments--*' | wc -l)

if [ "$(id -u)" = 0 ]; then
	rc=0
	out=$(make -C "$copy" -s installcheck PG_CONFIG="$PG_BINDIR/pg_config" 2>&1) || rc=$?
	if [ "$rc" != 0 ] && grep -qF 'runuser -u postgres -- make installcheck' <<<"$out"; then r=0; else r=1; fi
	ok "$r" "as root, make installcheck refuses before initdb would, and says to run it as postgres"
	[ "$r" = 0 ] || comment "$out"
fi

rc=0
out=$(as_pg make -C "$copy" -s installcheck PG_CONFIG="$PG_BINDIR/pg_config" 2>&1) || rc=$?
ok "$rc" "make installcheck as $PG_OS_USER exits 0"
like "$out" 'creating temporary instance' "it makes a temporary instance of its own"
like "$out" 'installing payments' "the extension is created there (the instance preloads it)"
like "$out" "All $n tests passed\." "all $n pg_regress tests pass"
[ "$rc" = 0 ] || comment "$out$(cat "$copy/regression.diffs" 2>/dev/null || true)"
if [ -e "$copy/tmp_check/data/postmaster.pid" ]; then r=1; else r=0; fi
ok "$r" "the temporary instance is stopped afterwards"

tap_done
