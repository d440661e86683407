#!/usr/bin/env bash
# pg_stat_activity.query never shows a running statement's card data.
#
# A role granted pg_read_all_stats (a monitoring role) polls
# pg_stat_activity as fast as it can while another session runs statements
# that hold a card number and a security code and then wait until the
# watcher has seen them running (public.card_hold, below): a simple
# query (the code written as a bare number cast to text), a PREPARE and
# its EXECUTE, a DO block, an EXECUTE after another statement of the same
# string (SELECT 1; EXECUTE ..., and one after a statement that sleeps
# first: the string is masked before its EXECUTE runs), an EXECUTE after a
# comment in mixed case with a quoted name (before these three: shown with
# the code and the number, split in two literals, in clear), a call of a
# routine other than pay_card with the number and a code (the number's
# digit run tells), and the same
# statement over the extended
# protocol (pgbench -M extended and -M prepared: Parse, Bind and Execute
# each publish the text again).  Before: the card number and the code
# in clear for the whole statement.  While each statement runs (its
# backend in pg_sleep), what the monitor reads must have every digit of
# its literals masked, in place (same length, query_start and
# state_change as published); a statement without card data keeps its
# digits.  PostgreSQL publishes the text as received before any hook runs:
# the few snapshots taken in that window are counted and reported, not
# failed (README, "Still in memory only").  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../lib/integration.sh"

PAN=4532015112830366
YEAR=$(( $(date -u +%Y) + 3 ))
psql_db() { cluster_psql "$WORK" "$PORT" payments "$@"; }

psql_db -c "DROP ROLE IF EXISTS card_monitor" -c "CREATE ROLE card_monitor" \
	-c "GRANT pg_read_all_stats TO card_monitor" >/dev/null

# The watcher: as card_monitor, a snapshot of every statement with a
# marker per iteration, until the runner's last statement (cat-end) has
# been seen running and has ended.
cat > "$WORK/card_activity.watch.sql" <<'SQL'
SET application_name = 'card-watcher';
SET ROLE card_monitor;
CREATE TEMP TABLE seen (marker text, running bool, query text, query_start timestamptz, state_change timestamptz);
CREATE TEMP TABLE told (marker text);
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '120 s';
	sleeping text[];
BEGIN
	LOOP
		-- A statement runs when its backend sleeps.  pg_stat_activity reads
		-- wait_event live but the text from a snapshot taken when the query
		-- began: a text read with the wait event may be older than the
		-- sleep.  So the backends that sleep are read first, and the texts
		-- from a later snapshot, of the same statement (same query_start).
		PERFORM pg_stat_clear_snapshot();
		sleeping := ARRAY(SELECT a.pid || ' ' || a.query_start FROM pg_stat_activity a
			WHERE a.wait_event IS NOT DISTINCT FROM 'PgSleep');
		PERFORM pg_stat_clear_snapshot();
		INSERT INTO seen
			SELECT substring(a.query from '/\* (cat-[a-z]+) \*/'), (a.pid || ' ' || a.query_start) = ANY (sleeping),
				a.query, a.query_start, a.state_change
			FROM pg_stat_activity a
			WHERE a.pid <> pg_backend_pid() AND a.state = 'active' AND a.query LIKE '%/* cat-%';
		-- tell each statement seen running that it may end (card_hold)
		PERFORM pg_advisory_lock(20261207, hashtext(d.marker) & 1073741823) FROM (SELECT DISTINCT marker FROM seen
			WHERE running AND marker IS NOT NULL AND marker NOT IN (SELECT marker FROM told)) d;
		INSERT INTO told SELECT DISTINCT marker FROM seen
			WHERE running AND marker IS NOT NULL AND marker NOT IN (SELECT marker FROM told);
		-- (cat-end, the last, told and then ended)
		PERFORM pg_stat_clear_snapshot();
		EXIT WHEN (EXISTS (SELECT FROM told WHERE marker = 'cat-end') AND NOT EXISTS (SELECT FROM pg_stat_activity a
				WHERE a.pid <> pg_backend_pid() AND a.state = 'active' AND a.query LIKE '%/* cat-end */%'))
			OR clock_timestamp() > deadline;
	END LOOP;
END $$;
\copy (SELECT marker, running, query, query_start, state_change FROM seen) TO pstdin
SQL
sed -i "s|TO pstdin|TO '$WORK/card_activity.seen.csv' CSV|" "$WORK/card_activity.watch.sql"
chmod 644 "$WORK/card_activity.watch.sql"
psql_db -f "$WORK/card_activity.watch.sql" > "$WORK/card_activity.watch-out" 2>&1 &
watcher=$!
for _ in $(seq 200); do
	[ "$(psql_db -Atc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'card-watcher' AND query LIKE 'DO %'")" = 1 ] && break
	sleep 0.05
done

# The runner: each statement, once it has taken the card, sleeps until the
# watcher has seen it running (30 s at most), not a fixed 0.5 s, which a
# busy machine may keep the watcher from seeing (the watcher's backend
# stopped 1 s by hand: cat-simple was never seen running).  The
# statement's marker is in its text (current_query()).
psql_db -q -c "CREATE OR REPLACE FUNCTION public.card_hold() RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	m text := substring(current_query() from '/\\* (cat-[a-z]+) \\*/');
	deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
	LOOP
		PERFORM pg_sleep(0.05);
		EXIT WHEN EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted
				AND classid = 20261207 AND objid = (hashtext(m) & 1073741823)::oid AND objsubid = 2)
			OR clock_timestamp() > deadline;
	END LOOP;
END \$\$" -c "GRANT EXECUTE ON FUNCTION public.card_hold() TO PUBLIC"
as_runner() { as_pg env PGAPPNAME=card-runner "$PG_BINDIR/psql" -X -q -h "$WORK/sock" -p "$PORT" -U postgres -d payments "$@"; }
as_runner > "$WORK/card_activity.run-out" 2>&1 <<SQL
SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, 731::text)), public.card_hold() /* cat-simple */;
PREPARE card_sleep(text, text) AS SELECT payments.pay_card_last4(payments.pay_card(\$1, 12, $YEAR, \$2)), public.card_hold() /* cat-prepare */;
EXECUTE card_sleep('$PAN', '732') /* cat-execute */;
EXECUTE card_sleep('${PAN:0:8}' || '${PAN:8}', '733') /* cat-split */;
DO \$\$ DECLARE code text := '734'; BEGIN PERFORM payments.pay_card('$PAN', 12, $YEAR, code); PERFORM public.card_hold(); END \$\$ /* cat-do */;
SELECT 1 \; EXECUTE card_sleep('${PAN:0:8}' || '${PAN:8}', '737') /* cat-multi */;
SELECT public.card_hold() /* cat-first */ \; EXECUTE card_sleep('${PAN:0:8}' || '${PAN:8}', '738');
/* cat-quoted */ ExEcUtE "card_sleep"('${PAN:0:8}' || '${PAN:8}', '739');
SELECT length(concat('$PAN', '730')), public.card_hold() /* cat-routine */;
SELECT 4242, public.card_hold() /* cat-plain */;
SQL
printf '%s\n' "SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '735')), public.card_hold() /* cat-extended */;" > "$WORK/card_activity.ext.sql"
printf '%s\n' "SELECT payments.pay_card_last4(payments.pay_card('$PAN', 12, $YEAR, '736')), public.card_hold() /* cat-prepared */;" > "$WORK/card_activity.prep.sql"
chmod 644 "$WORK"/card_activity.*.sql
as_pg env PGAPPNAME=card-runner "$PG_BINDIR/pgbench" -n -M extended -t 1 -h "$WORK/sock" -p "$PORT" -U postgres \
	-f "$WORK/card_activity.ext.sql" payments >> "$WORK/card_activity.run-out" 2>&1
as_pg env PGAPPNAME=card-runner "$PG_BINDIR/pgbench" -n -M prepared -t 1 -h "$WORK/sock" -p "$PORT" -U postgres \
	-f "$WORK/card_activity.prep.sql" payments >> "$WORK/card_activity.run-out" 2>&1
as_runner -c "SELECT public.card_hold() /* cat-end */" >/dev/null 2>&1
wait "$watcher"
psql_db -c "DROP ROLE card_monitor" -c "DROP FUNCTION public.card_hold()" >/dev/null

# What the watcher saw, by statement: snapshots while it ran (its backend
# in pg_sleep), of them with card data in clear, distinct (query_start,
# state_change) pairs, distinct lengths; and snapshots in the window
# before the hooks ran, with card data in clear.
summary=$(psql_db -At -F ' ' <<SQL
CREATE TEMP TABLE seen (marker text, running bool, query text, query_start timestamptz, state_change timestamptz);
\copy seen FROM '$WORK/card_activity.seen.csv' CSV
SELECT marker,
	count(*) FILTER (WHERE running),
	count(*) FILTER (WHERE running AND query ~ '$PAN|${PAN:0:6}|${PAN:8}|\m73[0-9]\M'),
	count(DISTINCT (query_start, state_change)) FILTER (WHERE running),
	count(DISTINCT length(query)) FILTER (WHERE running),
	count(*) FILTER (WHERE NOT running AND query ~ '$PAN|${PAN:8}|\m73[0-9]\M'),
	bool_and(query ~ '4242') FILTER (WHERE running)
FROM seen WHERE marker IS NOT NULL GROUP BY marker ORDER BY marker;
SQL
)
comment "marker, snapshots while running, with card data, (query_start, state_change) pairs, lengths, in the window, digits kept"
comment "$summary"
line() { grep "^$1 " <<<"$summary"; }
for m in cat-simple cat-execute cat-split cat-do cat-multi cat-first cat-quoted cat-routine cat-extended cat-prepared; do
	read -r _ running leaked starts lengths _ _ <<<"$(line "$m")"
	if [ "${running:-0}" -gt 0 ] && [ "$leaked" = 0 ]; then
		ok 0 "$m: a pg_read_all_stats role saw the running statement ${running} times, never its card number or code"
	else
		ok 1 "$m: seen running ${running:-0} times, ${leaked:-?} with card data in clear"
		comment "$(grep -F "$m" "$WORK/card_activity.seen.csv" | grep -E "$PAN|${PAN:8}|73[0-9]" | sed -n 1,2p)"
	fi
	is "$starts/$lengths" "1/1" "$m: masked in place (one query_start and state_change, one length)"
done
read -r _ running _ _ _ _ kept <<<"$(line cat-plain)"
if [ "${running:-0}" -gt 0 ] && [ "$kept" = t ]; then
	ok 0 "a statement without card data shows its digits"
else ok 1 "the statement without card data was not seen with its digits"; fi
window=$(awk '{ s += $6 } END { print s + 0 }' <<<"$summary")
comment "snapshots with card data in clear in the window before the hooks ran: $window"
is "$(grep -c 'cat-' "$WORK/card_activity.seen.csv" | awk '{ print ($1 > 0) }')" 1 "the watcher saw the statements"
unlike "$(cat "$WORK/card_activity.watch-out")" 'ERROR' "the watcher ran without error"

tap_done
