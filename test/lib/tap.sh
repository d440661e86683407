# Minimal TAP output for the shell integration tests.
# Source it after common.sh; call plan-free helpers and `tap_done` at the end.

TAP_N=0
TAP_FAILED=0

ok() {	# ok CONDITION_EXIT_CODE DESCRIPTION
	TAP_N=$((TAP_N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $TAP_N - $2"
	else
		echo "not ok $TAP_N - $2"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

is() {	# is GOT EXPECTED DESCRIPTION
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		printf '#   got:      %s\n#   expected: %s\n' "$1" "$2"
	fi
}

like() {	# like GOT EXTENDED_REGEX DESCRIPTION
	if grep -Eq -- "$2" <<<"$1"; then ok 0 "$3"; else
		ok 1 "$3"
		printf '#   got:      %s\n#   expected to match: %s\n' "$1" "$2"
	fi
}

unlike() {	# unlike GOT EXTENDED_REGEX DESCRIPTION
	if ! grep -Eq -- "$2" <<<"$1"; then ok 0 "$3"; else
		ok 1 "$3"
		printf '#   got:      %s\n#   expected not to match: %s\n' "$1" "$2"
	fi
}

comment() {	# comment TEXT: TEXT as TAP comment lines (the first 80)
	awk 'NR <= 80 { print "#   " $0 } END { if (NR > 80) print "#   ... and " NR - 80 " more lines" }' <<<"$1"
}

same() {	# same GOT EXPECTED DESCRIPTION: multi-line texts; on a difference, the diff
	if [ "$1" = "$2" ]; then ok 0 "$3"; else
		ok 1 "$3"
		comment "$(diff -u --label expected --label got <(printf '%s\n' "$2") <(printf '%s\n' "$1") || true)"
	fi
}

ok_cmd() {	# ok_cmd DESCRIPTION COMMAND...: ok when COMMAND succeeds; else its output
	local desc=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	ok "$rc" "$desc"
	[ "$rc" = 0 ] || comment "$out"
	return "$rc"
}

tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" = 0 ]
}
