#!/usr/bin/env bash
# Card data in the server's messages when they are translated.
#
# PostgreSQL writes its messages in the language of lc_messages (Debian's
# initdb takes it from the system's LANG): "ungültige Eingabesyntax für
# Typ integer: »471x«", "Fehlgeschlagene Zeile enthält (...)", "SQL-Anweisung
# »...«", "Anweisung: ...", "Parameter: $1 = ...".  The log hook
# (card_log.c) found the parts of a message that echo a value, a statement
# or a parameter list by their English text and ASCII quotes; under a
# translated lc_messages they were left as they were.  Shown with
# lc_messages = 'de_DE.UTF-8' by card_error_echoes: the codes 477x,
# 47888888888, 479, 507, 509 (a value a class 22 error echoes, a failing
# row, the token a syntax error quotes) and 497 (a failed COPY's line) in
# the log and in the message sent to the client.
#
# Runs the card log tests whose cases depend on the text of the messages
# (card_error_echoes, card_log_hygiene, card_statement_strings) again, in
# German, in French and in Japanese (test/lib/common.sh's
# PAYMENTS_LOCALES; French quotes with « »; Japanese puts some arguments
# in another order, "%2$s" before "%1$s": the token before "syntax error",
# the table before a foreign key's values, and writes "division by zero"
# with a digit, which a message that quotes no value keeps), with
# CARD_LC_MESSAGES (test/lib/session_log.sh): their
# sessions set lc_messages, and their checks of the log and of the
# client's output look for the security codes and numbers as they do in
# English, and for the messages they expect in that language.  Each run's
# checks are printed indented; then one line per test and language.
# Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"

source "$(dirname "$0")/../lib/session_log.sh"

n=0
fail=0
for lc in "${PAYMENTS_LOCALES[@]}"; do
	# the server and the tests' expectations are in that language (without
	# its catalog both would fall back to English, and every check below
	# would pass as in English)
	n=$((n + 1))
	said=$(as_pg env PGOPTIONS="-c lc_messages=$lc" "$PG_BINDIR/psql" -X -At -h "$WORK/sock" -p "$PORT" -U postgres \
		-d payments -c 'SELECT 1 / 0' 2>&1)
	expected=$(CARD_LC_MESSAGES=$lc pg_msg 'division by zero')
	if [ -n "$expected" ] && [ "$expected" != 'division by zero' ] && grep -qF -- "$expected" <<<"$said"; then
		echo "ok $n - the server writes in $lc: $said"
	else
		fail=1
		echo "not ok $n - the server does not write in $lc: got '$said', expected '$expected'"
	fi
	for t in card_error_echoes card_log_hygiene card_statement_strings; do
		n=$((n + 1))
		out=$(CARD_LC_MESSAGES=$lc bash "$(dirname "$0")/$t.sh" 2>&1)
		rc=$?
		printf '%s\n' "$out" | sed 's/^/    /'
		if [ "$rc" = 0 ] && grep -q '^ok ' <<<"$out" && ! grep -q '^not ok ' <<<"$out"; then
			echo "ok $n - $t with lc_messages = '$lc'"
		else
			fail=1
			echo "not ok $n - $t with lc_messages = '$lc' (exit $rc; its failed checks above)"
		fi
	done
done
echo "1..$n"
exit $fail
