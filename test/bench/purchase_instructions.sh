#!/usr/bin/env bash
# Benchmark: instructions the calling backend executes per purchase,
# counted by valgrind's callgrind, and where they go.  Unlike seconds, the
# count is the same for the same build however busy or slow the machine is
# (the wall-clock benchmarks move by 10% between runs on a shared two-core
# guest), so a change to the caller's side of a purchase can be judged by
# one run: compare this checkout with another (e.g. `git worktree add DIR
# REV`), side by side in the same run.
#
#   bash test/bench/purchase_instructions.sh [OTHER_CHECKOUT]
#
# For each build: a throwaway cluster with the extension (and pgbench's
# tables, for the reference), 2,000 purchases made and the tables
# analyzed, then stopped; then the server in single-user mode
# (postgres --single: one backend, no worker, no network) under callgrind,
# twice, calling pay_purchase with a card FEW and MANY times (one
# transaction each, as pgbench's clients do in purchase_bench.sh).  The
# difference divided by MANY - FEW is one purchase, without start-up and
# first-call caching.  The same is counted for the call prepared once and
# then executed (PREPARE and EXECUTE: what a driver that prepares its
# statements sends), and for the reference, pgbench's built-in
# simple-update transaction (UPDATE, SELECT, INSERT of one row each).
# The worker's and recorder's side, and time in the kernel (WAL writes,
# flushes, task switches), are not counted: purchase_cpu.sh measures those.
# Under valgrind OpenSSL computes SHA-256 without the CPU's SHA
# instructions, at about 15 times its real cost (callgrind.sh): the audit's
# row hashes are shown apart.
#
# BENCH_KEEP=1 keeps the clusters and profiles (the directory is printed).
# Prints figures; never fails on a slow machine (it is not a test).
set -euo pipefail
OTHER=${1:-}
FEW=20
MANY=220
WARM=500	# purchases from each of 4 clients before counting
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/callgrind.sh"
install_deps valgrind
THIS=$REPO_ROOT

TOP=$(mktemp -d "${TMPDIR:-/tmp}/payments-instr.XXXXXX")
chmod 755 "$TOP"
[ "${BENCH_KEEP:-}" = 1 ] && log "kept: $TOP"
SIDES=(this)
[ -n "$OTHER" ] && SIDES=(other this)
declare -A SRC=([this]=$THIS [other]=$OTHER) BIN
cleanup() {
	local s
	for s in "${SIDES[@]}"; do PG_BINDIR=${BIN[$s]:-} && [ -n "$PG_BINDIR" ] && cluster_stop "$TOP/$s"; done
	as_root rm -rf "$TOP"
}
[ "${BENCH_KEEP:-}" = 1 ] || trap cleanup EXIT

# The statements, one per line (single-user mode reads a line at a time).
PURCHASE="SELECT payments.pay_purchase(amount => '12.34 USD', card => payments.pay_card('4111 1111 1111 1111', 12, 2031, '123')) IS NULL"
purchases() {
	local i
	for ((i = 0; i < $1; i++)); do
		echo "$PURCHASE;"
	done
}
# the same call prepared once (PREPARE, in both runs: it cancels out), then
# executed: what a driver that prepares its statements costs the server
prepared() {
	local i
	echo "PREPARE purchase AS $PURCHASE;"
	for ((i = 0; i < $1; i++)); do
		echo "EXECUTE purchase;"
	done
}
reference() {
	local i
	for ((i = 0; i < $1; i++)); do
		echo "BEGIN;"
		echo "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid = $((i * 397 % 100000 + 1));"
		echo "SELECT abalance FROM pgbench_accounts WHERE aid = $((i * 397 % 100000 + 1));"
		echo "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, $((i * 397 % 100000 + 1)), 7, CURRENT_TIMESTAMP);"
		echo "END;"
	done
}

# count SIDE KIND N: runs N of KIND under callgrind; its inclusive counts
# go to $TOP/SIDE/KIND-N.counts (callgrind_inclusive)
count() {
	local s=$1 kind=$2 n=$3 base=$TOP/$1/$2-$3
	"$kind" "$n" >"$base.sql"
	callgrind_single "${BIN[$s]}" "$TOP/$s/data" "$base.sql" "$base.callgrind"
	callgrind_inclusive "$base.callgrind" >"$base.counts"
}

# per_call SIDE KIND: "function count" lines, the inclusive instruction
# counts of every function, for the MANY run minus the FEW run, per call
per_call() {
	local s=$1 kind=$2
	count "$s" "$kind" "$FEW"
	count "$s" "$kind" "$MANY"
	awk -v n=$((MANY - FEW)) 'NR == FNR { few[$1] = $2; next } { printf "%s %.0f\n", $1, ($2 - few[$1]) / n }' \
		"$TOP/$s/$kind-$FEW.counts" "$TOP/$s/$kind-$MANY.counts" >"$TOP/$s/$kind.per-call"
}

for s in "${SIDES[@]}"; do
	build_checkout_private "${SRC[$s]}" "$TOP/$s"
	BIN[$s]=$PG_BINDIR
	port=$(free_port)
	cluster_init "$TOP/$s" "$port" "autovacuum = off"
	cluster_start "$TOP/$s"
	PG_BINDIR=${BIN[$s]} cluster_psql "$TOP/$s" "$port" postgres -c 'CREATE DATABASE payments' >/dev/null
	PG_BINDIR=${BIN[$s]} cluster_psql "$TOP/$s" "$port" payments -c 'CREATE EXTENSION payments' >/dev/null
	as_pg "${BIN[$s]}/pgbench" -h "$TOP/$s/sock" -p "$port" -U postgres -i -q -s 1 payments >/dev/null 2>&1
	# tables of some size with statistics, as in use: on empty, never
	# analyzed tables the foreign-key checks' kept plans scan whole tables
	purchases 1 >"$TOP/$s/one.sql"
	as_root chown "$PG_OS_USER" "$TOP/$s/one.sql"
	as_pg "${BIN[$s]}/pgbench" -h "$TOP/$s/sock" -p "$port" -U postgres -n -f "$TOP/$s/one.sql" \
		-c 4 -t "$WARM" payments >/dev/null 2>&1
	PG_BINDIR=${BIN[$s]} cluster_psql "$TOP/$s" "$port" payments -c 'VACUUM ANALYZE' >/dev/null
	PG_BINDIR=${BIN[$s]} cluster_stop "$TOP/$s"
	log "counting instructions ($s): $FEW and $MANY purchases, as many prepared ones, then as many reference transactions"
	per_call "$s" purchases
	per_call "$s" prepared
	per_call "$s" reference
done

echo "== instructions per purchase in the calling backend (callgrind; the same for the same build on any machine)"
printf '%-58s' ""
for s in "${SIDES[@]}"; do printf '%14s' "$s"; done
echo
row() {
	local label=$1 kind=$2 s; shift 2
	printf '%-58s' "$label"
	for s in "${SIDES[@]}"; do
		printf '%14s' "$(callgrind_value "$TOP/$s/$kind.per-call" "$@")"
	done
	echo
}
row "reference: pgbench simple-update transaction" reference TOTAL
row "pay_purchase with a card, one transaction" purchases TOTAL
row "the same, prepared once and executed (PREPARE, EXECUTE)" prepared TOTAL
echo "-- where a purchase's instructions go (inclusive: an indented line is part of the line above it;"
echo "-- siblings may overlap: the foreign-key checks' executor start-ups count in both)"
row "parse, analyze and plan the caller's SELECT" purchases pg_parse_query pg_analyze_and_rewrite_fixedparams pg_plan_queries
row "pay_purchase's PL/pgSQL and the statements it runs" purchases fmgr_security_definer
row "  executor start-up of every statement" purchases ExecutorStart
row "  index entries of the rows the statements write" purchases ExecInsertIndexTuples
row "  AFTER triggers at the end of a statement" purchases AfterTriggerEndQuery
row "    foreign-key checks" purchases RI_FKey_check_ins
row "    audit trigger (row images, hash, compression)" purchases pay_audit_trigger
row "      of which SHA-256 of the row (valgrind: ~15x its real cost)" purchases EVP_DigestUpdate EVP_DigestFinal_ex
row "  audit rows written (buffered per statement)" purchases buffer_flush
row "  status trigger and its events" purchases pay_status_guard
row "  card sealed (AES-256-GCM)" purchases card_vault_seal
row "commit" purchases CommitTransactionCommand
