# Prelude of every integration test (test/integration/*.sh): the shared shell
# functions, TAP output, the simulator helpers, and the throwaway cluster
# that test/run-tests.sh started (WORK, PORT).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/tap.sh"
source "$(dirname "${BASH_SOURCE[0]}")/sim.sh"
: "${WORK:?run from test/run-tests.sh}" "${PORT:?run from test/run-tests.sh}"
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
# This installation's tag in invoice numbers: P<tag><payment_id> for
# payments, R<tag><operation_id> for refunds.
TAG=$(cluster_psql "$WORK" "$PORT" payments -Atc "SELECT payments._invoice_tag()" 2>/dev/null || true)
