# Start and stop the Authorize.Net simulator for a test, and talk to its
# control API.  Source after common.sh.  sim_start DIR [extra args...] sets
# SIM_API (http URL of the API endpoint), SIM_TLS_API (https URL),
# SIM_CONTROL (control base URL), SIM_CA (CA file) and SIM_PID.

SIM_LOGIN=5KP3u95bQpv
SIM_KEY=346HZ32z3fP4hTG2

sim_start() {
	local dir=$1; shift
	local sim="$REPO_ROOT/test/anet-sim"
	make -s -C "$sim" >/dev/null
	mkdir -p "$dir"
	"$sim/make-cert.sh" "$dir/cert" >/dev/null
	# the server's OS user reads the CA file
	as_root chown -R "$PG_OS_USER" "$dir/cert"
	"$sim/anet-sim" --port 0 --control-port 0 --tls-port 0 \
		--tls-cert "$dir/cert/server.pem" --tls-key "$dir/cert/server.key" "$@" \
		>"$dir/sim.out" 2>"$dir/sim.err" &
	SIM_PID=$!
	local line="" i
	for i in $(seq 600); do
		line=$(grep '^anet-sim ready' "$dir/sim.out" 2>/dev/null) && break
		sleep 0.05
	done
	[ -n "$line" ] || { cat "$dir/sim.err" >&2; die "the simulator did not start"; }
	local api ctl tls
	api=$(sed -n 's/.* api=\([0-9]*\).*/\1/p' <<<"$line")
	ctl=$(sed -n 's/.* control=\([0-9]*\).*/\1/p' <<<"$line")
	tls=$(sed -n 's/.* tls=\([0-9]*\).*/\1/p' <<<"$line")
	SIM_API="http://127.0.0.1:$api/xml/v1/request.api"
	SIM_TLS_API="https://127.0.0.1:$tls/xml/v1/request.api"
	SIM_CONTROL="http://127.0.0.1:$ctl"
	SIM_CA="$dir/cert/ca.pem"
}

sim_stop() {
	[ -n "${SIM_PID:-}" ] || return 0
	kill "$SIM_PID" 2>/dev/null || true
	wait "$SIM_PID" 2>/dev/null || true
	SIM_PID=
}

# sim_ctl METHOD PATH [JSON]: a control call; prints the reply body.
sim_ctl() {
	local method=$1 path=$2 body=${3:-}
	if [ -n "$body" ]; then
		curl -sS -X "$method" -H 'Content-Type: application/json' -d "$body" "$SIM_CONTROL$path"
	else
		curl -sS -X "$method" "$SIM_CONTROL$path"
	fi
}

# sim_request REQUEST_NAME JSON_BODY: a request of another system on the
# merchants' simulator account (its credentials added to JSON_BODY, the
# members of the request), sent to the API; prints the result code (Ok,
# Error)
sim_request() {
	curl -sS -X POST -H 'Content-Type: application/json' \
		-d "{\"$1\":{\"merchantAuthentication\":{\"name\":\"$SIM_LOGIN\",\"transactionKey\":\"$SIM_KEY\"},$2}}" "$SIM_API" |
		python3 -c 'import json, sys; print(json.loads(sys.stdin.buffer.read().decode("utf-8-sig"))["messages"]["resultCode"])'
}

# sim_ledger INVOICE: what the gateway did under an invoice, "kind amount"
# in order, comma-separated
sim_ledger() {
	sim_ctl GET /ledger | python3 -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows["ledger"] if isinstance(rows, dict) else rows
print(",".join("%s %s" % (r["kind"], r["amount"]) for r in rows if r.get("invoiceNumber") == sys.argv[1]))
' "$1"
}

# The gateway's transaction ids of the money movements of a kind under an
# invoice, space-separated: sim_ledger_trans_ids INVOICE KIND
sim_ledger_trans_ids() {
	sim_ctl GET /ledger | python3 -c '
import json, sys
inv, kind = sys.argv[1], sys.argv[2]
data = json.load(sys.stdin)
rows = data["ledger"] if isinstance(data, dict) and "ledger" in data else data
print(" ".join(r["transId"] for r in rows if r.get("invoiceNumber") == inv and r.get("kind") == kind))
' "$1" "$2"
}

# How many accepted money movements of a kind the simulator's ledger holds
# for an invoice: sim_ledger_count INVOICE KIND
sim_ledger_count() {
	sim_ctl GET /ledger | python3 -c '
import json, sys
inv, kind = sys.argv[1], sys.argv[2]
data = json.load(sys.stdin)
rows = data["ledger"] if isinstance(data, dict) and "ledger" in data else data
print(sum(1 for r in rows if r.get("invoiceNumber") == inv and r.get("kind") == kind))
' "$1" "$2"
}
# sim_api BODY: BODY posted to the simulator's API (plain HTTP); its answer,
# without the byte order mark Authorize.Net starts a JSON reply with
sim_api() {
	curl -sS -H 'Content-Type: application/json' -d "$1" "$SIM_API" | python3 -c 'import sys; sys.stdout.write(sys.stdin.buffer.read().decode("utf-8-sig"))'
}
