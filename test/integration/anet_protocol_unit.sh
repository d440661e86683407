#!/usr/bin/env bash
# Unit test of the Authorize.Net protocol module (src/anet_*.c, with
# src/json_scrub.c): pure C and json-c, no PostgreSQL and no cluster.
# Compiles test/unit/anet_protocol_test.c
# with the module into a scratch directory ($WORK when the suite runner set
# it, else a fresh mktemp -d) and passes its TAP output through.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)

dir=
if [ -n "${WORK:-}" ] && mkdir -p "$WORK/anet_protocol_unit" 2>/dev/null &&
	[ -w "$WORK/anet_protocol_unit" ]; then
	dir="$WORK/anet_protocol_unit"
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/anet_protocol_unit.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
fi

if ! cc -std=gnu11 -Wall -Wextra -Werror -I"$repo/src" \
	-o "$dir/anet_protocol_test" \
	"$repo/test/unit/anet_protocol_test.c" "$repo"/src/anet_*.c "$repo/src/json_scrub.c" \
	-ljson-c -lpthread > "$dir/cc.log" 2>&1; then
	echo "not ok 1 - anet_protocol_test compiles with -Wall -Wextra -Werror"
	sed 's/^/# /' "$dir/cc.log"
	echo "1..1"
	exit 1
fi

"$dir/anet_protocol_test" "$repo/test/unit/fixtures"
