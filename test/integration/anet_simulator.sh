#!/usr/bin/env bash
# The Authorize.Net simulator's own test suite (test/anet-sim/run-tests.sh):
# transport, validation, every transaction rule, reporting, CIM, webhooks,
# faults.  It builds the simulator, starts it on free loopback ports (HTTP
# and HTTPS with a generated CA) and stops it.
set -euo pipefail
exec bash "$(dirname "$0")/../anet-sim/run-tests.sh"
