#!/bin/bash
# run-tests.sh — build the simulator, make a test certificate, start the
# simulator on free loopback ports (HTTP, HTTPS, control), run every test,
# stop it.  Prints TAP lines and "N passed, N failed"; exits non-zero on
# any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
make -s -C "$here" >&2 || { echo "0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
"$here/make-cert.sh" "$tmp/cert" >/dev/null
"$here/anet-sim" --port 0 --control-port 0 --tls-port 0 \
	--tls-cert "$tmp/cert/server.pem" --tls-key "$tmp/cert/server.key" \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 600); do	# 30 s at most
	grep -q '^anet-sim ready' "$tmp/out" && break
	sleep 0.05
done
line=$(grep '^anet-sim ready' "$tmp/out") || { cat "$tmp/err" >&2; echo "0 passed, 1 failed"; exit 1; }
export ANET_API_PORT=$(sed -n 's/.* api=\([0-9]*\).*/\1/p' <<<"$line")
export ANET_CONTROL_PORT=$(sed -n 's/.* control=\([0-9]*\).*/\1/p' <<<"$line")
export ANET_TLS_PORT=$(sed -n 's/.* tls=\([0-9]*\).*/\1/p' <<<"$line")
export ANET_CA="$tmp/cert/ca.pem"
# real Authorize.Net requests, replies and webhook bodies (provenance in samples/README.md)
export ANET_SAMPLES=${ANET_SAMPLES:-$here/samples}
export ANET_SIM_BIN="$here/anet-sim"
python3 "$here/tests/run.py"
