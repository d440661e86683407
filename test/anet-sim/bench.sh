#!/bin/bash
# bench.sh — print the simulator's throughput and in-flight capacity.
# Not a timed test: it reports figures and fails only if the simulator
# cannot be started or requests error out.
#   1. createTransaction (authCapture), no injected latency, keep-alive,
#      64 connections: requests per second.
#   2. 100 ms injected latency, 2000 concurrent connections: requests per
#      second and latency percentiles (in flight = concurrency when p50 is
#      about 100 ms and there are no errors).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${BENCH_SECONDS:-5}
make -s -C "$here" >&2
tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
"$here/anet-sim" --port 0 --control-port 0 --threads "${BENCH_THREADS:-2}" >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q '^anet-sim ready' "$tmp/out" && break; sleep 0.05; done
line=$(grep '^anet-sim ready' "$tmp/out")
api=$(sed -n 's/.* api=\([0-9]*\).*/\1/p' <<<"$line")
ctl=$(sed -n 's/.* control=\([0-9]*\).*/\1/p' <<<"$line")
url="http://127.0.0.1:$api/xml/v1/request.api"
cat >"$tmp/tx.json" <<JSON
{"createTransactionRequest":{"merchantAuthentication":{"name":"5KP3u95bQpv","transactionKey":"346HZ32z3fP4hTG2"},"refId":"bench","transactionRequest":{"transactionType":"authCaptureTransaction","amount":"10.00","payment":{"creditCard":{"cardNumber":"4111111111111111","expirationDate":"2099-12","cardCode":"123"}},"order":{"invoiceNumber":"INV-1","description":"bench"},"billTo":{"firstName":"Ann","lastName":"Lee","zip":"98004"},"transactionSettings":{"setting":[{"settingName":"duplicateWindow","settingValue":"0"}]}}}}
JSON
echo "machine: $(nproc) cores; simulator threads: ${BENCH_THREADS:-2}; ${secs}s per run"
echo "== createTransaction, no latency, 64 connections"
"$here/loadgen" "$url" "$tmp/tx.json" 64 "$secs" '"responseCode":"1"'
curl -s -X POST "http://127.0.0.1:$ctl/reset" >/dev/null
echo "== createTransaction, 100 ms latency, 2000 connections"
curl -s -X POST -d '{"fixedMs":100}' "http://127.0.0.1:$ctl/latency" >/dev/null
"$here/loadgen" "$url" "$tmp/tx.json" 2000 "$secs" '"responseCode":"1"'
echo "server side: $(curl -s "http://127.0.0.1:$ctl/health")"
echo "(peakSuspended = most requests the simulator held in flight at once during"
echo " their injected latency; 2000 means every connection was in flight together)"
