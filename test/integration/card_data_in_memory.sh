#!/usr/bin/env bash
# Card data in the worker's memory: once the gateway has answered, no card
# number is left in the private memory of the payments worker or the
# recorder, the processes that send it (what a core file of theirs, or a
# read of /proc/PID/mem, would show).
#
# Purchases, authorizations and cards saved on file, each with its own card
# number, go through the simulator over TLS; then every private mapping of the two processes
# (heap, anonymous maps, stack) is read and searched for every number, as
# typed and as sent.  (Before, 10 of 20 were still in the worker's heap:
# json-c, serializing a request, left each smaller buffer it outgrew, with
# the first part of the text, unwiped; and curl copied each request into
# its own buffer and freed it unwiped.)  Shared memory is not searched: a
# statement's text sent with a literal card number is in pg_stat_activity
# while it runs (README: "Still in memory only").
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-memory"
cleanup() { sim_stop; }
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator memory 5000

# Luhn-valid Mastercard numbers of the simulator's approving range
numbers=()
for i in $(seq 10 29); do
	body="54240000000000$i"
	body=${body:0:15}
	numbers+=("$(python3 -c '
import sys
b = sys.argv[1]
s = 0
for i, c in enumerate(reversed(b)):
	d = int(c)
	if i % 2 == 0:
		d *= 2
		if d > 9: d -= 9
	s += d
print(b + str((10 - s % 10) % 10))
' "$body")")
done
ids=()
k=0
for n in "${numbers[@]:0:16}"; do
	fn=$([ $((k % 2)) = 0 ] && echo pay_purchase || echo pay_authorize)
	ids+=("$(as_merchant -c "SELECT payment_id FROM $fn(amount => '3.00 USD',
		card => pay_card('$n', 12, extract(year from now())::int + 3, '123'))")")
	k=$((k + 1))
done
for id in "${ids[@]}"; do
	as_merchant -c "SELECT status FROM pay_wait($id, '30 s')" >/dev/null
done
is "$(as_merchant -c "SELECT count(*) FROM payments.payments WHERE payment_id IN ($(IFS=,; echo "${ids[*]}"))
	AND status IN ('succeeded', 'requires_capture')")" 16 "16 payments with 16 card numbers answered"
# and four cards saved on file (customer profile requests)
saved=0
for n in "${numbers[@]:16}"; do
	cid=$(as_merchant -c "SELECT customer_id FROM pay_create_customer(email => 'memory@example.com')")
	pm=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $cid,
		card => pay_card('$n', 12, extract(year from now())::int + 3, '123'), validation_mode => 'none')")
	[ "$(as_merchant -c "SELECT status FROM pay_wait_payment_method($pm, '30 s')")" = active ] && saved=$((saved + 1))
done
is "$saved" 4 "four more card numbers saved on file"
sleep 1	# the worker has recorded them and freed what it held

# scan PID NUMBER...: for each private readable mapping with a number in it,
# "mapping: count"
scan() {
	as_root python3 - "$@" <<'PY'
import re, sys
pid = sys.argv[1]
needles = [n.encode() for n in sys.argv[2:]]
found = {}
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
	for line in maps:
		f = line.split()
		perms = f[1]
		if perms[0] != "r" or perms[3] != "p":
			continue
		lo, hi = (int(x, 16) for x in f[0].split("-"))
		try:
			mem.seek(lo)
			data = mem.read(hi - lo)
		except (OSError, ValueError, OverflowError):
			continue
		for n in needles:
			c = len(re.findall(re.escape(n), data))
			if c:
				name = f[5] if len(f) > 5 else "[anonymous]"
				found[name] = found.get(name, 0) + c
print(" ".join(f"{k}: {v}" for k, v in sorted(found.items())))
PY
}
needles=()
for n in "${numbers[@]}"; do needles+=("$n" "${n:0:4} ${n:4:4} ${n:8:4} ${n:12:4}"); done
for proc in worker recorder; do
	pid=$(psql_pid=$(cluster_psql "$WORK" "$PORT" payments -Atc \
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments $proc'") && echo "$psql_pid")
	ok "$([ -n "$pid" ] && echo 0 || echo 1)" "the $proc runs (pid $pid)"
	is "$(scan "$pid" "${needles[@]}")" "" "no card number in the private memory of the $proc"
done

tap_done
