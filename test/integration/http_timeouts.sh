#!/usr/bin/env bash
# The HTTP engine's timeouts (src/http_engine.c).
#
# 1. A reply that arrives while the worker is busy in the database is taken
#    when the worker comes back, not thrown away as a timeout.  The worker
#    reads replies between its transactions; here one of them lasts longer
#    than a request's timeout: a session holds the exchange log locked
#    (ACCESS EXCLUSIVE) with payments.worker_statement_timeout at 2 s and
#    no lock wait limit, so the round that records a first wave of answers
#    fails after 2 s, and its exchanges, tried alone, after 2 s more.  A
#    second wave, sent half a second after the first, is answered (1 s)
#    while the worker waits, well before its 2.5 s timeout; the worker
#    reads the replies some 4 s after sending.  All ten are recorded as
#    answered: succeeded, sent once, never looked up, no transport error in
#    the exchange log.  (Before, curl, driven only between the worker's
#    transactions, found the deadlines passed before it read the replies
#    waiting in the sockets, or before it could finish the TLS handshakes,
#    and failed the transfers: 9 of 10 were sent a second time.)
# 2. A gateway that takes the connection and never answers the TLS
#    handshake: the request fails as not sent after its timeout (1.5 s),
#    the payment stays pending, and once the endpoint works it is sent
#    again and charged once.  (The reply timeout, a request sent and never
#    answered, is gateway_faults.sh's "hold".)
# 3. A reused connection that dies after the request was written, when the
#    new connection curl then tries on its own cannot be made: the gateway
#    (a TLS proxy in front of the simulator) passes a second purchase on
#    to the simulator, which charges it, then closes the connection without
#    a reply and stops listening.  curl resends on a new connection, which
#    is refused.  The request may have arrived: the operation is unknown
#    (never_sent false), never "not sent" (which past the duplicate window
#    would be sent again, a second charge); once the endpoint works it is
#    resolved, charged once.  (Before, curl's "couldn't connect" made it
#    "retry" with never_sent still true.)
#    The proxy offers HTTP/2 as well: every connection is HTTP/1.1.
# 4. The same, but curl's new connection succeeds: curl used to send the
#    purchase again over it on its own (a request the exchange log never
#    showed, charged once only by the gateway's duplicate check).  Now the
#    attempt is unknown, and every request the gateway got is logged.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

SIMDIR="$WORK/sim-timeouts"
psqlq() { cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 "$@"; }
release() {
	psqlq -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'busy_locker'" \
		>/dev/null 2>&1 || true
}
cleanup() {
	release
	psqlq -c "ALTER SYSTEM RESET payments.worker_statement_timeout" -c "ALTER SYSTEM RESET payments.worker_lock_timeout" \
		-c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	[ -z "${silent:-}" ] || kill "$silent" 2>/dev/null || true
	[ -z "${proxy:-}" ] || kill "$proxy" 2>/dev/null || true
	sim_stop
}
trap cleanup EXIT
sim_start "$SIMDIR"
merchant_on_simulator busy 2500
sim_ctl POST /latency '{"fixedMs":1000,"randomMs":0}' >/dev/null

wave() {	# wave N: N purchases in one transaction, their ids
	as_merchant -c "SELECT (pay_purchase(amount => '21.00 USD', description => 'busy wave',
		card => pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'))).payment_id
		FROM generate_series(1, $1)"
}
final() {	# final ID...: 1 once none is pending or unknown
	as_merchant -c "SELECT count(*) = 0 FROM payments.payments WHERE payment_id IN ($(IFS=,; echo "$*"))
		AND status IN ('pending', 'unknown')" | sed 's/t/1/;s/f//'
}

psqlq -c "ALTER SYSTEM SET payments.worker_statement_timeout = '2s'" -c "ALTER SYSTEM SET payments.worker_lock_timeout = 0" \
	-c "SELECT pg_reload_conf()" >/dev/null
ok "$(passed process_reread worker payments.worker_statement_timeout 2s payments.worker_lock_timeout 0)" \
	"the worker goes by a statement timeout of 2 s and no lock timeout"
# (what is checked below is the worker's recording (its 57014); the
# recorder, which records batches of 32 answers or more, also goes by the
# same settings, so that whichever records meets the lock the same way)
ok "$(passed process_reread recorder payments.worker_statement_timeout 2s payments.worker_lock_timeout 0)" \
	"so does the recorder"

# --- 1. replies that arrive while the worker is away -----------------------
cluster_psql "$WORK" "$PORT" payments -q -c "SET application_name = 'busy_locker'" -c "BEGIN" \
	-c "LOCK TABLE payments.gateway_exchanges IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(300)" -c "COMMIT" \
	>/dev/null 2>&1 &
locker=$!
holds() {	# 1 once the lock is held
	[ "$(psqlq -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE a.application_name = 'busy_locker' AND l.relation = 'payments.gateway_exchanges'::regclass
		AND l.granted")" = 1 ] && echo 1
}
is "$(poll_value 20 holds)" 1 "a session holds the exchange log locked"

mapfile -t first < <(wave 5)
sleep 0.5
mapfile -t second < <(wave 5)
ok "$(wait_log 60 "payments worker: recording exchanges failed with SQLSTATE 57014" && echo 0 || echo 1)" \
	"the worker's round met the lock for longer than a request's timeout (twice 2 s)"
sleep 1
release
wait "$locker" || true
is "$(poll_value 60 final "${first[@]}" "${second[@]}")" 1 "every payment is final"
ids="$(IFS=,; echo "${first[*]},${second[*]}")"
is "$(as_merchant -c "SELECT string_agg(DISTINCT status, ',') FROM payments.payments WHERE payment_id IN ($ids)")" succeeded \
	"all ten succeeded"
is "$(as_merchant -c "SELECT count(*) FROM payments.operations WHERE payment_id IN ($ids) AND attempts = 1")" 10 \
	"each was sent once (none looked up)"
is "$(as_merchant -c "SELECT count(*) FROM payments.operations o JOIN payments.gateway_exchanges g USING (merchant_id, operation_id)
	WHERE o.payment_id IN ($ids) AND (g.transport_error IS NOT NULL OR g.request_type <> 'createTransactionRequest')")" 0 \
	"the exchange log holds no timeout and no lookup for them"
charged=0
for p in "${first[@]}" "${second[@]}"; do
	charged=$((charged + $(sim_ledger_count "P$TAG$p" charge)))
done
is "$charged" 10 "each charged once"
psqlq -c "ALTER SYSTEM RESET payments.worker_statement_timeout" -c "ALTER SYSTEM RESET payments.worker_lock_timeout" \
	-c "SELECT pg_reload_conf()" >/dev/null

# --- 2. a handshake that never comes ----------------------------------------
sim_ctl POST /latency '{"fixedMs":0,"randomMs":0}' >/dev/null
silent_port=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
held = []
while True:
	c, _ = s.accept()
	held.append(c)	# never read, never answered, never closed
' "$silent_port" &
silent=$!
# (until it listens: a fixed half second was too short for python to start
# on a busy machine, and a refused connection is another failure)
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$silent_port") 2>/dev/null && break; sleep 0.1; done
merchant_on_simulator silent 1500
psqlq -c "UPDATE payments.gateway_config SET endpoint_url = 'https://127.0.0.1:$silent_port/xml/v1/request.api' WHERE merchant_id = $M"
pid=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '22.00 USD',
	card => pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123'))")
op=$(as_merchant -c "SELECT operation_id FROM pay_payment_operations($pid)")
first_try() {	# outcome|error|at least 1.5 s of the first exchange, once logged
	as_merchant -c "SELECT outcome || '|' || transport_error || '|' || (duration_ms >= 1500) FROM payments.gateway_exchanges
		WHERE merchant_id = $M AND operation_id = $op ORDER BY exchange_id LIMIT 1"
}
is "$(poll_value 20 first_try)" "retry|no connection to the gateway within 1500 ms|true" \
	"a silent gateway: the request fails as not sent after its 1.5 s"
is "$(as_merchant -c "SELECT status FROM payments.payments WHERE payment_id = $pid")" pending "the payment waits"
psqlq -c "UPDATE payments.gateway_config SET endpoint_url = '$SIM_TLS_API' WHERE merchant_id = $M"
is "$(as_merchant -c "SELECT status FROM pay_wait($pid, '30 s')")" succeeded "once the gateway answers, it is sent again: succeeded"
is "$(sim_ledger_count "P$TAG$pid" charge)" 1 "charged once"
is "$(as_merchant -c "SELECT count(*) FILTER (WHERE outcome <> 'retry') || '|' || count(*) FILTER (WHERE outcome = 'retry'
	AND transport_error <> 'no connection to the gateway within 1500 ms') FROM payments.gateway_exchanges
	WHERE merchant_id = $M AND operation_id = $op")" "1|0" \
	"its exchanges: tries that never connected, then the one answered"

# --- 3. a reused connection that dies after the write -----------------------
sim_port=$(sed -n 's|https://127.0.0.1:\([0-9]*\)/.*|\1|p' <<<"$SIM_TLS_API")
# The proxy (modes: refuse, stop listening once the connection is killed;
# accept, go on serving).  It offers HTTP/2 and HTTP/1.1 (ALPN), as a
# gateway may, and logs each request it forwards: the protocol the
# connection settled on, the request type and the invoice number.
cat > "$SIMDIR/proxy.py" <<'PY'
import http.client, re, socket, ssl, sys, threading
port, sim_port, cert, key, ca, flag, mode, log = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(cert, key)
server_ctx.set_alpn_protocols(["h2", "http/1.1"])
upstream_ctx = ssl.create_default_context(cafile=ca)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(16)
killed = threading.Event()
log_lock = threading.Lock()

def read_request(f):
	line = f.readline()
	if not line:
		return None
	length = 0
	while True:
		h = f.readline()
		if h in (b"\r\n", b"\n", b""):
			break
		name, _, value = h.decode(errors="replace").partition(":")
		if name.strip().lower() == "content-length":
			length = int(value)
	return f.read(length)

def note(s, body):
	kind = re.search(rb'^\s*\{\s*"(\w+)"', body)
	inv = re.search(rb'"invoiceNumber"\s*:\s*"([^"]*)"', body)
	with log_lock, open(log, "a") as out:
		out.write("%s %s %s\n" % (s.selected_alpn_protocol() or "none",
			kind.group(1).decode() if kind else "?", inv.group(1).decode() if inv else "-"))

def serve(conn):
	s = server_ctx.wrap_socket(conn, server_side=True)
	f = s.makefile("rb")
	n = 0
	while True:
		body = read_request(f)
		if body is None:
			break
		n += 1
		note(s, body)
		up = http.client.HTTPSConnection("127.0.0.1", sim_port, context=upstream_ctx)
		up.request("POST", "/xml/v1/request.api", body, {"Content-Type": "application/json"})
		reply = up.getresponse().read()
		up.close()
		if n >= 2 and b"createTransactionRequest" in body and not killed.is_set():
			# the gateway has it (and charged it); the reply never comes
			killed.set()
			if mode == "refuse":
				listener.shutdown(socket.SHUT_RDWR)	# refuse from now on (close alone would not stop accept)
				listener.close()
			s.close()
			open(flag, "w").close()
			return
		s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
			+ str(len(reply)).encode() + b"\r\n\r\n" + reply)

while True:
	try:
		c, _ = listener.accept()
	except OSError:
		break
	threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Event().wait()
PY
# behind_proxy MODE MERCHANT: a proxy of its own (MODE), and a new merchant
# whose gateway it is; sets proxy and M
behind_proxy() {
	local port
	port=$(free_port)
	rm -f "$SIMDIR/proxy.killed" "$SIMDIR/proxy.log"
	python3 "$SIMDIR/proxy.py" "$port" "$sim_port" "$SIMDIR/cert/server.pem" "$SIMDIR/cert/server.key" "$SIM_CA" \
		"$SIMDIR/proxy.killed" "$1" "$SIMDIR/proxy.log" &
	proxy=$!
	sleep 0.5
	merchant_on_simulator "$2" 5000
	psqlq -c "UPDATE payments.gateway_config SET endpoint_url = 'https://127.0.0.1:$port/xml/v1/request.api' WHERE merchant_id = $M"
}
behind_proxy refuse reused
card="pay_card('4111 1111 1111 1111', 12, extract(year from now())::int + 3, '123')"
p1=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '23.00 USD', card => $card)")
is "$(as_merchant -c "SELECT status FROM pay_wait($p1, '30 s')")" succeeded "through the proxy: a first purchase succeeds"
p2=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '24.00 USD', card => $card)")
op2=$(as_merchant -c "SELECT operation_id FROM pay_payment_operations($p2)")
first_fate() {	# first exchange's outcome|never_sent, once the operation's fate is recorded
	as_merchant -c "SELECT g.outcome || '|' || o.never_sent FROM payments.gateway_exchanges g
		JOIN payments.operations o USING (merchant_id, operation_id)
		WHERE g.merchant_id = $M AND g.operation_id = $op2 AND o.status <> 'sending'
		ORDER BY g.exchange_id LIMIT 1"
}
fate=$(poll_value 30 first_fate)
ok "$([ -f "$SIMDIR/proxy.killed" ] && echo 0 || echo 1)" "the second purchase reached the simulator and its connection died"
is "$(sim_ledger_count "P$TAG$p2" charge)" 1 "... after the simulator charged it"
like "$fate" '^(unknown|follow_up)\|false$' "the request may have arrived: unknown, never_sent false (not 'retry', never a blind resend)"
psqlq -c "UPDATE payments.gateway_config SET endpoint_url = '$SIM_TLS_API' WHERE merchant_id = $M"
is "$(as_merchant -c "SELECT status FROM pay_wait($p2, '30 s')")" succeeded "once the gateway answers, it is resolved: succeeded"
is "$(sim_ledger_count "P$TAG$p2" charge)" 1 "charged once"
is "$(awk '{ print $1 }' "$SIMDIR/proxy.log" | sort -u | paste -sd, -)" "http/1.1" \
	"a gateway that offers HTTP/2 (ALPN) is spoken to in HTTP/1.1"

# --- 4. curl never sends a request twice ------------------------------------
# As in 3, but the new connection curl opens on its own succeeds: curl
# would send the purchase again over it, a second request the exchange log
# never shows (charged once only by the gateway's duplicate check).  Now
# the request goes once per attempt: the attempt is unknown, and each
# request the gateway got is in the exchange log.
kill "$proxy" 2>/dev/null || true
wait "$proxy" 2>/dev/null || true
behind_proxy accept resend
p3=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '25.00 USD', card => $card)")
is "$(as_merchant -c "SELECT status FROM pay_wait($p3, '30 s')")" succeeded "through the proxy: a first purchase succeeds"
p4=$(as_merchant -c "SELECT payment_id FROM pay_purchase(amount => '26.00 USD', card => $card)")
op4=$(as_merchant -c "SELECT operation_id FROM pay_payment_operations($p4)")
settled() {	# its status once final
	as_merchant -c "SELECT status FROM payments.payments WHERE payment_id = $p4 AND status NOT IN ('pending', 'unknown')"
}
is "$(poll_value 60 settled)" succeeded "the second purchase, its connection killed after the write, succeeds"
ok "$([ -f "$SIMDIR/proxy.killed" ] && echo 0 || echo 1)" "its connection died after the request reached the simulator"
like "$(as_merchant -c "SELECT outcome || '|' || transport_error FROM payments.gateway_exchanges
	WHERE merchant_id = $M AND operation_id = $op4 ORDER BY exchange_id LIMIT 1")" \
	'^(unknown|follow_up)\|the connection closed after the request was written, before any reply; it is not sent again$' \
	"its first attempt is unknown: the request is not sent again on a new connection"
is "$(sim_ledger_count "P$TAG$p4" charge)" 1 "charged once"
sent=$(grep -c " createTransactionRequest P$TAG$p4\$" "$SIMDIR/proxy.log" || true)
logged=$(as_merchant -c "SELECT count(*) FROM payments.gateway_exchanges
	WHERE merchant_id = $M AND operation_id = $op4 AND request_type = 'createTransactionRequest'")
is "$sent" "$logged" "every purchase request the gateway got is in the exchange log ($sent sent)"
is "$(awk '{ print $1 }' "$SIMDIR/proxy.log" | sort -u | paste -sd, -)" "http/1.1" "every connection HTTP/1.1"
tap_done
