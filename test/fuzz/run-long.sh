#!/usr/bin/env bash
# test/fuzz/run-long.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Build the libFuzzer targets (test/fuzz/Makefile) and run each one for
# SECONDS_PER_TARGET (default 600), one after the other, one process each
# (the machine is shared).  Each run starts from the committed seeds in
# test/fuzz/corpus/<target>/ plus what earlier runs found, kept in
# $FUZZ_OUT/corpus/<target>/ (FUZZ_OUT defaults to test/fuzz/build/out,
# git-ignored); the seeds themselves are never changed.  A crash, leak,
# sanitizer report, timeout or failed check is saved as
# $FUZZ_OUT/crashes/<target>/crash-*, leak-*, timeout-*, oom-*.
#
# Prints per target: executions, executions per second, corpus size,
# coverage and the crashes found; exits 1 if any target found one.
# Coverage: libFuzzer's "cov" (instrumented edges reached) and "ft"
# (features), and "lines", the line coverage of the files the target is
# about (make cov-files T=target) by the whole corpus, measured with a
# second build with clang's source-based coverage (llvm-profdata-14 and
# llvm-cov-14, Debian package llvm-14; "?" without them).  The full
# per-file report is $FUZZ_OUT/logs/<target>.coverage.
# Replay a crash: test/fuzz/build/fuzz_<target> FILE
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-600}
shift || true
build=${FUZZ_BUILD:-$here/build}
out=${FUZZ_OUT:-$build/out}

make -s -C "$here" O="$build" >&2
have_cov=
if command -v llvm-profdata-14 >/dev/null && command -v llvm-cov-14 >/dev/null; then
	make -s -C "$here" O="$build/cov" COVERAGE=1 >&2 && have_cov=1
fi
if [ $# -gt 0 ]; then targets=("$@"); else read -ra targets <<<"$(make -s -C "$here" list)"; fi

failed=0
printf '%-12s %12s %9s %11s %6s %6s %7s %7s %s\n' target execs exec/s corpus cov ft lines rss_mb crashes
for t in "${targets[@]}"; do
	bin=$build/fuzz_$t
	[ -x "$bin" ] || { echo "no such target: $t" >&2; exit 2; }
	mkdir -p "$out/corpus/$t" "$out/crashes/$t" "$out/logs"
	log=$out/logs/$t.log
	dict=()
	[ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
	set +e
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/crashes/$t/" "${dict[@]}" \
		"$out/corpus/$t" "$here/corpus/$t" >"$log" 2>&1
	rc=$?
	set -e
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corpus=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
	crashes=$(find "$out/crashes/$t" -type f | wc -l)
	# line coverage of the target's files by the whole corpus
	lines=
	if [ -n "$have_cov" ]; then
		rm -f "$out/logs/$t.profraw"
		LLVM_PROFILE_FILE="$out/logs/$t.profraw" "$build/cov/fuzz_$t" -runs=0 \
			"$out/corpus/$t" "$here/corpus/$t" >/dev/null 2>&1 || true
		read -ra files <<<"$(make -s -C "$here" cov-files T="$t")"
		if llvm-profdata-14 merge -sparse "$out/logs/$t.profraw" -o "$out/logs/$t.profdata" 2>/dev/null &&
			llvm-cov-14 report "$build/cov/fuzz_$t" -instr-profile="$out/logs/$t.profdata" \
				"${files[@]}" >"$out/logs/$t.coverage" 2>&1; then
			lines=$(awk '$1 == "TOTAL" { print $10 }' "$out/logs/$t.coverage")
		fi
	fi
	printf '%-12s %12s %9s %11s %6s %6s %7s %7s %s\n' "$t" "${execs:-?}" "${eps:-?}" \
		"${corpus:-?}" "${cov:-?}" "${ft:-?}" "${lines:-?}" "${rss:-?}" "$crashes"
	if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
		failed=1
		grep -E 'ERROR|SUMMARY|fuzz check failed|runtime error' "$log" | head -5 | sed 's/^/    /'
		find "$out/crashes/$t" -type f | sed 's/^/    saved: /'
	fi
done
exit "$failed"
