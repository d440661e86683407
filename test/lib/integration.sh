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

# merchant_on_simulator NAME [TIMEOUT_MS]: a merchant of the test's own
# (its rows apart from other tests'), whose gateway is the simulator that
# sim_start started, over verified HTTPS; sets M.
merchant_on_simulator() {
	M=$(cluster_psql "$WORK" "$PORT" payments -Atc "INSERT INTO payments.merchants (name) VALUES ('$1') RETURNING merchant_id")
	cluster_psql "$WORK" "$PORT" payments -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => ${2:-3000}, merchant_id => $M)" >/dev/null
}
# move_account MERCHANT LOGIN KEY: pay_configure_gateway moves MERCHANT to
# that account of the simulator (timeout 1 s); prints the SQLSTATE of a
# refusal, if any.
move_account() {
	cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose -c "SELECT payments.pay_configure_gateway(api_login_id => '$2', transaction_key => '$3', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 1000, merchant_id => $1)" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p'
}
# as_merchant [PSQL ARGS...]: psql as merchant M, unaligned tuples, stopping
# at the first error.
as_merchant() {
	cluster_psql "$WORK" "$PORT" payments -At -v ON_ERROR_STOP=1 \
		-c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" "$@"
}
# wait_for SQL EXPECTED [SECONDS]: poll SQL (as merchant M) until it prints
# EXPECTED (20 s at most by default); prints what it printed last
wait_for() {
	local got="" i
	for i in $(seq $(( ${3:-20} * 4 ))); do
		got=$(as_merchant -c "$1")
		[ "$got" = "$2" ] && break
		sleep 0.25
	done
	echo "$got"
}
# saved_method CUSTOMER NUMBER [MAKE_DEFAULT]: card NUMBER (expiring in three
# years) saved for CUSTOMER of merchant M unchecked (validation none), made
# the default unless MAKE_DEFAULT is false; prints the method's id once the
# worker has saved it
saved_method() {
	local id
	id=$(as_merchant -c "SELECT payment_method_id FROM pay_save_payment_method(customer_id => $1, card => pay_card('$2', 12, $(( $(date +%Y) + 3 )), '123', 'Ada Lovelace'), validation_mode => 'none', make_default => ${3:-true})")
	as_merchant -c "SELECT status FROM pay_wait_payment_method($id, '30 s')" >/dev/null
	echo "$id"
}
# wait_sql CONDITION [SECONDS]: true once SQL CONDITION (as merchant M) is
# true, polled every 0.1 s (30 s at most by default)
wait_sql() {
	local i
	for i in $(seq $(( ${2:-30} * 10 ))); do
		[ "$(as_merchant -c "SELECT $1")" = t ] && return 0
		sleep 0.1
	done
	return 1
}
# op_is OPERATION_ID STATUS: wait until merchant M's operation has STATUS
op_is() {
	wait_sql "(SELECT status = '$2' FROM payments.operations WHERE merchant_id = $M AND operation_id = $1)"
}
# refund_ledger PAYMENT_ID: what the simulator's ledger holds for each of the
# payment's refund operations, in order ("refund 5.00;" each)
refund_ledger() {
	local ops o out=""
	ops=$(as_merchant -c "SELECT string_agg(operation_id::text, ' ' ORDER BY operation_id) FROM pay_payment_operations($1) WHERE kind = 'refund'")
	for o in $ops; do out+="$(sim_ledger "R$TAG$o");"; done
	echo "$out"
}
# sqlstate_of SQL: run SQL as merchant M, expecting an error; prints its SQLSTATE.
sqlstate_of() {
	as_merchant -v VERBOSITY=verbose -c "$1" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' | sed -n 1p
}
# park_after_send MERCHANT STATUSES: a test trigger holds an operation of
# MERCHANT for an hour as soon as it turns to one of STATUSES (a SQL list,
# e.g. 'unknown', 'queued') after a send, before the worker's first resend
# inside the duplicate window; a test then moves first_sent_at back past
# the window and releases it.  unpark drops the trigger.
park_after_send() {
	cluster_psql "$WORK" "$PORT" payments -q -c "CREATE FUNCTION public.test_park_after_send() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF NEW.status IN ($2) AND OLD.status = 'sending'
			AND NEW.first_sent_at > now() - interval '1 hour' THEN
		NEW.next_attempt_at := now() + interval '1 hour';
	END IF;
	RETURN NEW;
END \$\$" \
		-c "CREATE TRIGGER zz_test_park_after_send BEFORE UPDATE ON payments.operations
			FOR EACH ROW WHEN (NEW.merchant_id = $1) EXECUTE FUNCTION public.test_park_after_send()"
}
unpark() {
	cluster_psql "$WORK" "$PORT" payments -q -c "DROP TRIGGER IF EXISTS zz_test_park_after_send ON payments.operations" \
		-c "DROP FUNCTION IF EXISTS public.test_park_after_send()"
}
# Charges of a subscription's invoice (merchant M):
# invoice_charges INVOICE: "attempts|by method:status,..." of its payments
invoice_charges() {
	as_merchant -c "SELECT count(*) || '|' || string_agg(payment_method_id || ':' || status, ',' ORDER BY payment_id)
		FROM payments.payments WHERE merchant_id = $M AND invoice_id = $1"
}
# invoice_ledger_charges INVOICE: charges the simulator's ledger holds for all
# its payments (by their invoice numbers at the gateway)
invoice_ledger_charges() {
	local n=0 num
	for num in $(as_merchant -c "SELECT invoice_number FROM payments.payments WHERE merchant_id = $M AND invoice_id = $1"); do
		n=$(( n + $(sim_ledger_count "$num" charge) ))
	done
	echo "$n"
}
# subscription_customer NAME: a customer of merchant M (NAME@example.com);
# prints its id
subscription_customer() {
	as_merchant -c "SELECT customer_id FROM pay_create_customer(email => '$1@example.com', name => 'Ada Lovelace')"
}
# paid_subscription CUSTOMER [METHOD]: a monthly subscription of 25.00 USD
# (charged to METHOD, else the customer's default), its first invoice paid;
# prints its id
paid_subscription() {
	local sid pid
	sid=$(as_merchant -c "SELECT subscription_id FROM pay_create_subscription(customer_id => $1, price => '25.00 USD', interval_unit => 'month'${2:+, payment_method_id => $2})")
	pid=$(as_merchant -c "SELECT payment_id FROM payments.invoices WHERE merchant_id = $M AND subscription_id = $sid")
	as_merchant -c "SELECT status FROM pay_wait($pid, '10 s')" >/dev/null
	wait_for "SELECT status FROM pay_get_subscription($sid)" active >/dev/null
	echo "$sid"
}
# invoice_settled INVOICE [SECONDS]: waits until no charge of it is in flight
invoice_settled() {
	wait_for "SELECT count(*) FROM payments.payments WHERE merchant_id = $M AND invoice_id = $1
		AND status IN ('pending', 'unknown', 'in_review')" 0 "${2:-20}" >/dev/null
}
# passed COMMAND...: 0 if it succeeds, else 1 (for ok, under set -e).
passed() { if "$@"; then echo 0; else echo 1; fi; }
# restart_worker: pay_worker_restart(), then true once a new worker runs
# (its first loop runs the housekeeping; 20 s at most)
restart_worker() {
	local pid0 new
	pid0=$(worker_pid)
	cluster_psql "$WORK" "$PORT" payments -Atc "SELECT payments.pay_worker_restart()" >/dev/null
	new() { local p; p=$(worker_pid); [ -n "$p" ] && [ "$p" != "$pid0" ] && echo "$p"; }
	[ -n "$(poll_value 20 new)" ]
}
# settings_seen NAME VALUE...: after ALTER SYSTEM and pg_reload_conf(),
# true once a new session shows each setting NAME = VALUE (60 s at most;
# SETTINGS_SEEN_AT: the server's clock then; SETTINGS_LOADED_AT: that
# session's pg_conf_load_time(), the postmaster's load of those values or
# a later one).
# Enough for what backends read: the postmaster reloads its files and
# signals its children in one go, before it forks anyone again, and a
# backend rereads its files before it runs its next command; so every
# statement sent after this returns, in an open session too (a pooled
# connection of PostgREST's), goes by VALUE.  The payments worker, the
# recorder and the billing process reread theirs at the top of a round:
# process_reread.
settings_seen() {
	local cond="" got
	while [ $# -ge 2 ]; do
		cond+=" AND current_setting('$1') = '$2'"
		shift 2
	done
	seen() { cluster_psql "$WORK" "$PORT" payments -Atc "SELECT clock_timestamp() || '|' || pg_conf_load_time() WHERE true$cond"; }
	got=$(poll_value 60 seen)
	[ -n "$got" ] || { log "a new session never showed the settings reloaded:$cond"; return 1; }
	SETTINGS_SEEN_AT=${got%%|*}
	SETTINGS_LOADED_AT=${got#*|}
}
# process_reread PROCESS NAME VALUE...: after ALTER SYSTEM and
# pg_reload_conf(), true once the background process PROCESS (worker,
# recorder or billing) goes by each setting NAME = VALUE (60 s at most).
# Once a new session shows the values (settings_seen), its
# pg_conf_load_time() is the postmaster's load of them (or a later one);
# the postmaster signalled every child after it.  Each process publishes
# its own pg_conf_load_time() at the top of each round, after rereading
# its files (pay_worker_health(): PROCESS_conf_loaded_at): at or past the
# session's, the process has reread them since, and the round it began,
# and every one after it, goes by the values.
process_reread() {
	local proc=$1
	shift
	settings_seen "$@" || return 1
	reread() {
		cluster_psql "$WORK" "$PORT" payments -Atc "SELECT true FROM payments.pay_worker_health()
			WHERE ${proc}_conf_loaded_at >= '$SETTINGS_LOADED_AT'::timestamptz"
	}
	[ -n "$(poll_value 60 reread)" ] ||
		{ log "the $proc never reread its settings after the reload (${proc}_conf_loaded_at never reached $SETTINGS_LOADED_AT)"; return 1; }
}
# worker_pid: the PID of the payments worker of the test cluster (empty
# while none runs)
worker_pid() {
	cluster_psql "$WORK" "$PORT" payments -Atc "SELECT pid FROM pg_stat_activity WHERE backend_type = 'payments worker'" 2>/dev/null || true
}
# wait_log SECONDS REGEX: true once the server log ($WORK/postgres.log)
# matches
wait_log() {
	local i
	for i in $(seq $(($1 * 10))); do
		grep -qE "$2" "$WORK/postgres.log" && return 0
		sleep 0.1
	done
	return 1
}
# memory_in_use PID: for each memory context dump of process PID in the
# server log (pg_log_backend_memory_contexts), one line: the bytes in use
# outside CacheMemoryContext.  The catalog caches and plans may grow as
# ANALYZE invalidates them (bounded by the objects read); a leak grows with
# the work done.
# memory_dumps PID N: "done" once the server log holds N complete memory
# context dumps of process PID (each ends with its "Grand total" line; the
# process writes it when it next handles interrupts, later on a busy machine)
memory_dumps() {
	[ "$(grep -F "[$1]" "$WORK/postgres.log" | grep -c 'Grand total: ')" -ge "$2" ] && echo done
}
memory_in_use() {
	python3 - "$WORK/postgres.log" "$1" <<'PY'
import re, sys
pid, dumps, cache_level = sys.argv[2], [], None
for line in open(sys.argv[1], errors="replace"):
    if "[%s]" % pid not in line:
        continue
    if "logging memory contexts of PID" in line:
        dumps.append(0)
        continue
    m = re.search(r"level: (\d+); ([^:]+): \d+ total .*; (\d+) used", line)
    if not m or not dumps:
        continue
    level = int(m.group(1))
    if cache_level is not None and level <= cache_level:
        cache_level = None
    if cache_level is None and m.group(2) == "CacheMemoryContext":
        cache_level = level
    if cache_level is None:
        dumps[-1] += int(m.group(3))
print("\n".join(map(str, dumps)))
PY
}
