#!/usr/bin/env bash
# Unit test of the Authorize.Net protocol module (src/anet/): pure C and
# json-c, no PostgreSQL and no cluster.  Compiles
# src/anet/tests/anet_protocol_test.c with every src/anet/*.c, and nothing
# else: no PostgreSQL include directory is given, so the build also proves
# that src/anet/ needs no PostgreSQL header.  The scratch directory is
# $WORK when the suite runner set it, else a fresh mktemp -d; the test's
# TAP output is passed through.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
anet="$repo/src/anet"

dir=
if [ -n "${WORK:-}" ] && mkdir -p "$WORK/anet_protocol_unit" 2>/dev/null &&
	[ -w "$WORK/anet_protocol_unit" ]; then
	dir="$WORK/anet_protocol_unit"
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/anet_protocol_unit.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
fi

if ! cc -std=gnu11 -Wall -Wextra -Werror -I"$anet" \
	-o "$dir/anet_protocol_test" \
	"$anet/tests/anet_protocol_test.c" "$anet"/*.c \
	-ljson-c -lpthread > "$dir/cc.log" 2>&1; then
	echo "not ok 1 - anet_protocol_test compiles with -Wall -Wextra -Werror"
	sed 's/^/# /' "$dir/cc.log"
	echo "1..1"
	exit 1
fi

"$dir/anet_protocol_test" "$anet/tests/fixtures"
