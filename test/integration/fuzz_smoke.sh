#!/usr/bin/env bash
# Fuzz smoke test: builds the libFuzzer targets of test/fuzz/ (clang-14,
# ASan + UBSan) and runs each one briefly, $FUZZ_SMOKE_SECONDS (default 5)
# seconds, starting from its committed seeds (test/fuzz/corpus/<target>/,
# which include the inputs of every crash found so far: all are replayed
# first).  One TAP line per target; a crash, a leak, a sanitizer report,
# a failed check of the target or a timeout fails it and its report is
# shown.  No PostgreSQL server is needed.  New corpus entries and crash
# files go to a scratch directory ($WORK/fuzz_smoke when the suite runner
# set WORK, else a fresh mktemp -d), never into the repository.
# The long runs: test/fuzz/run-long.sh.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"

fuzz=$REPO_ROOT/test/fuzz
seconds=${FUZZ_SMOKE_SECONDS:-5}

dir=
if [ -n "${WORK:-}" ] && mkdir -p "$WORK/fuzz_smoke" 2>/dev/null && [ -w "$WORK/fuzz_smoke" ]; then
	dir=$WORK/fuzz_smoke
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_smoke.XXXXXX")
	trap 'rm -rf "$dir"' EXIT
fi

if ! make -s -j"$(nproc)" -C "$fuzz" O="$dir/build" >"$dir/build.log" 2>&1; then
	ok 1 "the fuzz targets build (clang-14, -fsanitize=fuzzer,address,undefined, -Werror)"
	comment "$(cat "$dir/build.log")"
	tap_done
	exit 1
fi
ok 0 "the fuzz targets build (clang-14, -fsanitize=fuzzer,address,undefined, -Werror)"

read -ra targets <<<"$(make -s -C "$fuzz" list)"
for t in "${targets[@]}"; do
	mkdir -p "$dir/corpus/$t" "$dir/crashes/$t"
	dict=()
	[ -f "$fuzz/dict/$t.dict" ] && dict=(-dict="$fuzz/dict/$t.dict")
	seeds=$(find "$fuzz/corpus/$t" -type f | wc -l)
	rc=0
	"$dir/build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$dir/crashes/$t/" "${dict[@]}" \
		"$dir/corpus/$t" "$fuzz/corpus/$t" >"$dir/$t.log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$t.log" | tail -1)
	crashes=$(find "$dir/crashes/$t" -type f | wc -l)
	if [ "$rc" = 0 ] && [ "$crashes" = 0 ] && [ "${execs:-0}" -ge "$seeds" ] && [ "$seeds" -gt 0 ]; then
		ok 0 "fuzz_$t: $seeds seeds replayed, ${execs} executions in ${seconds} s, no crash"
	else
		ok 1 "fuzz_$t: $seeds seeds replayed, ${execs:-no} executions in ${seconds} s, no crash"
		comment "$(grep -E -A12 'ERROR|fuzz check failed|runtime error|SUMMARY' "$dir/$t.log" | head -40)"
		comment "$(find "$dir/crashes/$t" -type f)"
	fi
done
tap_done
