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

tap_done() {
	echo "1..$TAP_N"
	[ "$TAP_FAILED" = 0 ]
}
