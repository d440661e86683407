#!/usr/bin/env bash
# Card numbers in every argument: a sweep of the API.  Every text-carrying
# argument of the pay_* functions a role calls (text, jsonb, text[], the
# pay_card's holder name and code, opaque_data's fields, a merchant's name
# and metadata as the owner writes them) is given, with otherwise valid
# arguments, a card number in several shapes (16 digits plain, grouped by
# spaces or dashes, among words, an Amex 15, a 19-digit Visa; in JSON as a
# value, a number, a key, nested, an array element), each a number of its
# own; the worker sends what was accepted to the simulator.  Then every row
# of every table of the extension, the server log, pg_stat_statements,
# pg_waldump's output and every file of the data directory are searched for
# every number (its digits with separators removed, and as written).  A
# call refused and leaving nothing is fine; a number found anywhere is a
# defect, named with the function, argument and shape.  (A sweep of this
# kind found a merchant's name and metadata, and pay_audit_attach's
# masked_columns, kept in clear.)  Not swept: 13-digit Visa numbers, which
# free text takes by design (README: EAN-13 barcodes), and a security code
# beside the word cvv, which no rule can tell from other digits.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

dir="$WORK/card-sweep"
port=$(free_port)
cleanup() { private_clusters_stop; sim_stop; }
trap cleanup EXIT
sim_start "$dir/sim"
private_cluster "$dir" "$port" \
	"shared_preload_libraries = 'pg_stat_statements,payments'" \
	"log_min_duration_statement = 0" "log_statement = 'all'" \
	"log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
	"pg_stat_statements.track = 'all'" "pg_stat_statements.track_utility = on" \
	"payments.fingerprint_key_directory = '$dir/keys'"
sq() { cluster_psql "$dir" "$port" payments -At "$@"; }
cluster_psql "$dir" "$port" postgres -c "CREATE DATABASE payments" >/dev/null
sq -c "CREATE EXTENSION payments" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
M=$(sq -c "INSERT INTO payments.merchants (name) VALUES ('sweep') RETURNING merchant_id")
sq -c "SELECT payments.pay_configure_gateway(api_login_id => '$SIM_LOGIN', transaction_key => '$SIM_KEY', endpoint_url => '$SIM_TLS_API', ca_file => '$SIM_CA', timeout_ms => 5000, merchant_id => $M)" >/dev/null

# the calls (python: one psql per call, its SQLSTATE kept)
started=$SECONDS
calls="$dir/calls.jsonl"
: > "$calls"
as_root chmod 777 "$dir"
rc=0
env PG_BINDIR="$PG_BINDIR" PG_OS_USER="$PG_OS_USER" DIR="$dir" PORTN="$port" M="$M" OUT="$calls" \
	python3 - >"$dir/sweep.out" 2>&1 <<'PY' || rc=$?
import subprocess, sys, json, re, os, itertools
PSQL = (["runuser", "-u", os.environ["PG_OS_USER"], "--"] if os.getuid() == 0 else []) + [os.environ["PG_BINDIR"] + "/psql", "-X", "-q", "-At",
        "-h", os.environ["DIR"] + "/sock", "-p", os.environ["PORTN"], "-U", "postgres", "-d", "payments",
        "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-f", "-"]
M = os.environ["M"]
Y = 2030

def run(script, merchant=M):
    pre = "SET search_path = public, payments;\n" + ("SET payments.merchant_id = '%s';\n" % merchant if merchant else "")
    p = subprocess.run(PSQL, input=pre + script, capture_output=True, text=True, cwd="/")
    m = re.search(r"ERROR:  ([0-9A-Z]{5}):(.*)", p.stderr)
    return p.stdout, (m.group(1) + m.group(2)[:90]) if m else ("ok" if p.returncode == 0 else "rc%d %s" % (p.returncode, p.stderr[:120]))

def luhn_complete(body):
    t = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:
            n = n * 2 - (9 if n > 4 else 0)
        t += n
    return body + str((10 - t % 10) % 10)

ctr = itertools.count(100001)
def number(length):
    c = str(next(ctr))
    pre = {13: "4", 15: "37", 16: "5", 19: "4"}[length]
    if length == 16: pre = "51"
    body = pre + c.rjust(length - 1 - len(pre), "7")
    return luhn_complete(body)
cvvc = itertools.count(4301)

def grp(n, sep): return sep.join(n[i:i+4] for i in range(0, len(n), 4))
# text shapes: (name, length, fn(number, cvv) -> text)
TEXT_SHAPES = [
    ("plain16", 16, lambda n, v: n),
    ("spaced", 16, lambda n, v: grp(n, " ")),
    ("dashed", 16, lambda n, v: grp(n, "-")),
    ("words", 16, lambda n, v: "pay with card %s please" % n),
    ("amex15", 15, lambda n, v: n),
    ("len19", 19, lambda n, v: n),
]
JSON_SHAPES = [
    ("jvalue", 16, lambda n, v: {"note": n}),
    ("jnum", 16, lambda n, v: {"note": int(n)}),
    ("jkey", 16, lambda n, v: {n: "x"}),
    ("jnested", 16, lambda n, v: {"a": {"b": n}}),
    ("jarray", 16, lambda n, v: {"a": [n]}),
    ("jamex", 15, lambda n, v: {"note": n}),
    ("j19", 19, lambda n, v: {"note": n}),
]
def q(s): return "'" + s.replace("'", "''") + "'"

RESULTS = []   # (number, cvv, func, arg, shape, outcome)

def sweep(func, arg, kind, template, merchant=M, shapes=None):
    """template: fn(valuesql) -> script; kind: text|jsonb|textarr|holder|cardjson"""
    if shapes is None:
        shapes = JSON_SHAPES if kind == "jsonb" else TEXT_SHAPES
    for name, length, mk in shapes:
        n = number(length); v = str(next(cvvc))
        val = mk(n, v)
        if kind == "jsonb":
            sql = q(json.dumps(val)) + "::jsonb"
        elif kind == "textarr":
            sql = "ARRAY['read', %s]" % q(val)
        elif kind == "textarr_json":
            sql = q(json.dumps(val))
        else:
            sql = q(val)
        out, oc = run(template(sql), merchant)
        RESULTS.append((n, v, func, arg, name, oc, val if isinstance(val, str) else json.dumps(val)))
        pass

CARD = "pay_card('4111111111111111', 12, %d, '123', 'Ada Lovelace')" % Y
def cust():   # a fresh customer, :c
    return "SELECT customer_id AS c FROM pay_create_customer(email => 'ada@example.com', name => 'Ada Lovelace') \\gset\n"
def method():  # a fresh customer with a saved default method, :c :pm
    return cust() + ("SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, card => %s, validation_mode => 'none') \\gset\n"
                     "SELECT status FROM pay_wait_payment_method(:pm, '10 s') \\g /dev/null\n") % CARD
def paid(kind="pay_purchase"):
    return ("SELECT payment_id AS p FROM %s(amount => '20.00 USD', card => %s) \\gset\n"
            "SELECT status FROM pay_wait(:p, '10 s') \\g /dev/null\n") % (kind, CARD)
def sub():
    return method() + ("SELECT subscription_id AS s FROM pay_create_subscription(customer_id => :c, price => '5.00 USD', interval_unit => 'month') \\gset\n")
def plan():
    return "SELECT plan_id AS pl FROM pay_create_plan(name => 'Gold', amount => '10.00 USD') \\gset\n"

sel = sys.argv[1:] or None
def want(f): return sel is None or f in sel

for f in ("pay_purchase", "pay_authorize"):
    if not want(f): continue
    for arg in ("description", "order_ref", "idempotency_key", "correlation_id"):
        sweep(f, arg, "text", lambda v, f=f, arg=arg: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', card => %s, %s => %s) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, CARD, arg, v))
    for arg in ("customer", "metadata"):
        sweep(f, arg, "jsonb", lambda v, f=f, arg=arg: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', card => %s, %s => %s) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, CARD, arg, v))
    sweep(f, "customer.name", "text", lambda v, f=f: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', card => %s, customer => jsonb_build_object('email', 'a@example.com', 'first_name', %s)) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, CARD, v))
    sweep(f, "card.holder_name", "text", lambda v, f=f: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', card => pay_card('4111111111111111', 12, %d, '123', %s)) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, Y, v))
    sweep(f, "opaque_data", "jsonb", lambda v, f=f: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', opaque_data => %s) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, v))
    sweep(f, "opaque.dataDescriptor", "text", lambda v, f=f: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', opaque_data => jsonb_build_object('dataDescriptor', %s, 'dataValue', 'eyJjb2RlIjoiNTBfMl8wNjAwMDUzMDFEMTJGOTg1MjVENTQwMkI1'))\\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, v))
    sweep(f, "opaque.dataValue", "text", lambda v, f=f: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', opaque_data => jsonb_build_object('dataDescriptor', 'COMMON.ACCEPT.INAPP.PAYMENT', 'dataValue', %s))\\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, v))
    for arg in ("customer_profile_id", "payment_profile_id"):
        other = "payment_profile_id" if arg == "customer_profile_id" else "customer_profile_id"
        sweep(f, arg, "text", lambda v, f=f, arg=arg, other=other: "SELECT payment_id AS p FROM %s(amount => '1.00 USD', %s => %s, %s => '1') \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (f, arg, v, other))
if want("pay_card_in"):
    sweep("pay_card_in", "holder_name", "text", lambda v: "SELECT payment_id AS p FROM pay_purchase(amount => '1.00 USD', card => json_build_object('number', '4111111111111111', 'exp_month', 12, 'exp_year', %d, 'cvv', '123', 'holder_name', %s)::text::pay_card) \\gset\nSELECT status FROM pay_wait(:p, '10 s');\n" % (Y, v))
    sweep("pay_card_in", "cvv", "text", lambda v: "SELECT pay_card_last4(json_build_object('number', '4111111111111111', 'exp_month', 12, 'exp_year', %d, 'cvv', %s)::text::pay_card);\n" % (Y, v))
    sweep("pay_card", "cvv", "text", lambda v: "SELECT pay_card_last4(pay_card('4111111111111111', 12, %d, %s));\n" % (Y, v))
if want("pay_amount_in"):
    sweep("pay_amount_in", "text", "text", lambda v: "SELECT (%s || ' USD')::pay_amount;\n" % v)
    sweep("pay_amount", "currency", "text", lambda v: "SELECT pay_amount(1, %s);\n" % v)
if want("pay_capture"):
    for arg in ("idempotency_key", "correlation_id"):
        sweep("pay_capture", arg, "text", lambda v, arg=arg: paid("pay_authorize") + "SELECT * FROM pay_capture(:p, %s => %s);\n" % (arg, v))
if want("pay_void"):
    for arg in ("idempotency_key", "correlation_id"):
        sweep("pay_void", arg, "text", lambda v, arg=arg: paid("pay_authorize") + "SELECT * FROM pay_void(:p, %s => %s);\n" % (arg, v))
if want("pay_refund"):
    for arg in ("reason", "idempotency_key", "correlation_id"):
        sweep("pay_refund", arg, "text", lambda v, arg=arg: paid() + "SELECT * FROM pay_refund(:p, '1.00 USD', %s => %s);\n" % (arg, v))
if want("pay_create_customer"):
    for arg in ("email", "name", "external_ref", "idempotency_key", "correlation_id"):
        sweep("pay_create_customer", arg, "text", lambda v, arg=arg: "SELECT * FROM pay_create_customer(%s%s => %s);\n" % ("email => 'a@example.com', " if arg != "email" else "", arg, v))
    for arg in ("billing", "metadata"):
        sweep("pay_create_customer", arg, "jsonb", lambda v, arg=arg: "SELECT * FROM pay_create_customer(email => 'a@example.com', %s => %s);\n" % (arg, v))
    for fld in ("first_name", "last_name", "company", "address", "city", "state", "zip", "country", "phone"):
        sweep("pay_create_customer", "billing." + fld, "text", lambda v, fld=fld: "SELECT * FROM pay_create_customer(email => 'a@example.com', billing => jsonb_build_object(%s, %s));\n" % (q(fld), v), shapes=TEXT_SHAPES[::3])
if want("pay_update_customer"):
    for arg in ("email", "name", "external_ref", "idempotency_key", "correlation_id"):
        sweep("pay_update_customer", arg, "text", lambda v, arg=arg: cust() + "SELECT * FROM pay_update_customer(:c, %s => %s);\n" % (arg, v))
    for arg in ("billing", "metadata"):
        sweep("pay_update_customer", arg, "jsonb", lambda v, arg=arg: cust() + "SELECT * FROM pay_update_customer(:c, %s => %s);\n" % (arg, v))
if want("pay_save_payment_method"):
    for arg in ("idempotency_key", "correlation_id", "validation_mode"):
        sweep("pay_save_payment_method", arg, "text", lambda v, arg=arg: cust() + "SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, card => %s, %s => %s) \\gset\nSELECT status FROM pay_wait_payment_method(:pm, '10 s');\n" % (CARD, arg, v))
    sweep("pay_save_payment_method", "card.holder_name", "text", lambda v: cust() + "SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, card => pay_card('4111111111111111', 12, %d, '123', %s)) \\gset\nSELECT status FROM pay_wait_payment_method(:pm, '10 s');\n" % (Y, v))
    sweep("pay_save_payment_method", "opaque_data", "jsonb", lambda v: cust() + "SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, opaque_data => %s) \\gset\nSELECT status FROM pay_wait_payment_method(:pm, '10 s');\n" % v)
    sweep("pay_save_payment_method", "opaque.dataDescriptor", "text", lambda v: cust() + "SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, opaque_data => jsonb_build_object('dataDescriptor', %s, 'dataValue', 'eyJjb2RlIjoiNTBfMl8wNjAwMDUzMDFEMTJGOTg1MjVENTQwMkI1')) \\gset\nSELECT status FROM pay_wait_payment_method(:pm, '10 s');\n" % v)
    sweep("pay_save_payment_method", "opaque.dataValue", "text", lambda v: cust() + "SELECT payment_method_id AS pm FROM pay_save_payment_method(customer_id => :c, opaque_data => jsonb_build_object('dataDescriptor', 'COMMON.ACCEPT.INAPP.PAYMENT', 'dataValue', %s)) \\gset\nSELECT status FROM pay_wait_payment_method(:pm, '10 s');\n" % v)
for f in ("pay_set_default_payment_method", "pay_delete_payment_method"):
    if not want(f): continue
    for arg in ("idempotency_key", "correlation_id"):
        sweep(f, arg, "text", lambda v, f=f, arg=arg: method() + "SELECT * FROM %s(:pm, %s => %s);\n" % (f, arg, v), shapes=TEXT_SHAPES[::3])
for f in ("pay_delete_customer", "pay_erase_customer"):
    if not want(f): continue
    for arg in ("idempotency_key", "correlation_id"):
        sweep(f, arg, "text", lambda v, f=f, arg=arg: method() + "SELECT * FROM %s(:c, %s => %s);\n" % (f, arg, v), shapes=TEXT_SHAPES[::3])
if want("pay_create_plan"):
    for arg in ("name", "interval_unit", "idempotency_key", "correlation_id"):
        sweep("pay_create_plan", arg, "text", lambda v, arg=arg: "SELECT * FROM pay_create_plan(%samount => '10.00 USD', %s => %s);\n" % ("name => 'Gold', " if arg != "name" else "", arg, v))
    sweep("pay_create_plan", "metadata", "jsonb", lambda v: "SELECT * FROM pay_create_plan(name => 'Gold', amount => '10.00 USD', metadata => %s);\n" % v)
if want("pay_update_plan"):
    for arg in ("name", "interval_unit", "idempotency_key", "correlation_id"):
        sweep("pay_update_plan", arg, "text", lambda v, arg=arg: plan() + "SELECT * FROM pay_update_plan(:pl, %s => %s);\n" % (arg, v))
    sweep("pay_update_plan", "metadata", "jsonb", lambda v: plan() + "SELECT * FROM pay_update_plan(:pl, metadata => %s);\n" % v)
if want("pay_create_subscription"):
    for arg in ("interval_unit", "time_zone", "idempotency_key", "correlation_id"):
        sweep("pay_create_subscription", arg, "text", lambda v, arg=arg: method() + "SELECT * FROM pay_create_subscription(customer_id => :c, price => '5.00 USD'%s, %s => %s);\n" % (", interval_unit => 'month'" if arg != "interval_unit" else "", arg, v))
    sweep("pay_create_subscription", "metadata", "jsonb", lambda v: method() + "SELECT * FROM pay_create_subscription(customer_id => :c, price => '5.00 USD', interval_unit => 'month', metadata => %s);\n" % v)
if want("pay_update_subscription"):
    for arg in ("idempotency_key", "correlation_id"):
        sweep("pay_update_subscription", arg, "text", lambda v, arg=arg: sub() + "SELECT * FROM pay_update_subscription(:s, cancel_at_period_end => true, %s => %s);\n" % (arg, v), shapes=TEXT_SHAPES[::3])
    sweep("pay_update_subscription", "metadata", "jsonb", lambda v: sub() + "SELECT * FROM pay_update_subscription(:s, metadata => %s);\n" % v)
if want("pay_cancel_subscription"):
    for arg in ("idempotency_key", "correlation_id"):
        sweep("pay_cancel_subscription", arg, "text", lambda v, arg=arg: sub() + "SELECT * FROM pay_cancel_subscription(:s, %s => %s);\n" % (arg, v), shapes=TEXT_SHAPES[::3])
if want("pay_pause_subscription"):
    sweep("pay_pause_subscription", "idempotency_key", "text", lambda v: sub() + "SELECT * FROM pay_pause_subscription(:s, %s);\nSELECT * FROM pay_resume_subscription(:s, %s || 'r');\n" % (v, v), shapes=TEXT_SHAPES[::3])
if want("pay_change_subscription"):
    for arg in ("proration", "idempotency_key", "correlation_id"):
        sweep("pay_change_subscription", arg, "text", lambda v, arg=arg: sub() + "SELECT * FROM pay_change_subscription(:s, quantity => 2, %s => %s);\n" % (arg, v), shapes=TEXT_SHAPES[::3])
    sweep("pay_preview_subscription_change", "proration", "text", lambda v: sub() + "SELECT * FROM pay_preview_subscription_change(:s, quantity => 2, proration => %s);\n" % v, shapes=TEXT_SHAPES[::3])
if want("pay_create_api_key"):
    sweep("pay_create_api_key", "name", "text", lambda v: "SELECT * FROM pay_create_api_key(%s, name => %s) \\g /dev/null\n" % (M, v), merchant=None)
    sweep("pay_create_api_key", "scopes", "textarr", lambda v: "SELECT * FROM pay_create_api_key(%s, scopes => %s) \\g /dev/null\n" % (M, v), merchant=None, shapes=TEXT_SHAPES[:4])
    sweep("pay_use_api_key", "api_key", "text", lambda v: "SELECT * FROM pay_use_api_key(%s);\n" % v, merchant=None, shapes=TEXT_SHAPES[:4])
if want("merchants"):
    sweep("INSERT merchants", "name", "text", lambda v: "INSERT INTO payments.merchants (name) VALUES (%s);\n" % v, merchant=None)
    sweep("INSERT merchants", "metadata", "jsonb", lambda v: "INSERT INTO payments.merchants (name, metadata) VALUES ('m', %s);\n" % v, merchant=None)
if want("pay_set_dunning_policy"):
    sweep("pay_set_dunning_policy", "final_action", "text", lambda v: "SELECT * FROM pay_set_dunning_policy(ARRAY[1,3], %s);\n" % v, shapes=TEXT_SHAPES[:4])
if want("reads"):
    for f, arg in (("pay_find_customers", "email"), ("pay_find_customers", "external_ref"), ("pay_list_payments", "order_ref"),
                   ("pay_list_payments", "customer_email"), ("pay_list_payments", "status"), ("pay_list_invoices", "status"), ("pay_list_subscriptions", "status")):
        sweep(f, arg, "text", lambda v, f=f, arg=arg: "SELECT count(*) FROM %s(%s => %s);\n" % (f, arg, v), shapes=TEXT_SHAPES[::3])
if want("pay_audit_attach"):
    sweep("pay_audit_attach", "masked_columns", "textarr", lambda v: "CREATE TABLE IF NOT EXISTS public.t_audit (id int);\nSELECT pay_audit_attach('public.t_audit', %s);\nSELECT pay_audit_detach('public.t_audit');\n" % v, merchant=None, shapes=TEXT_SHAPES[:4])
with open(os.environ["OUT"], "a") as o:
    for r in RESULTS:
        o.write(json.dumps(r) + "\n")
PY
ok "$rc" "the sweep ran ($(wc -l < "$calls") calls in $((SECONDS - started)) s)"
[ "$rc" = 0 ] || comment "$(tail -n 20 "$dir/sweep.out")"
ok "$([ "$(wc -l < "$calls")" -ge 450 ] && echo 0 || echo 1)" "at least 450 calls were made"
ok "$([ "$(grep -c '"ok"' "$calls")" -ge 50 ] && echo 0 || echo 1)" \
	"calls that took the number (masked) succeeded too: $(grep -c '"ok"' "$calls") (a correlation id, a search)"
ok "$([ "$(grep -c '"22Y17' "$calls")" -ge 200 ] && echo 0 || echo 1)" \
	"most were refused as card numbers (22Y17): $(grep -c '"22Y17' "$calls")"
# what the worker does with the accepted ones: nothing left in flight
for i in $(seq 300); do
	[ "$(sq -c "SELECT count(*) FROM payments.operations WHERE status IN ('queued', 'sending')")" = 0 ] && break
	sleep 0.1
done
is "$(sq -c "SELECT count(*) FROM payments.operations WHERE status IN ('queued', 'sending')")" 0 \
	"the worker sent every accepted operation"

# every table row, pg_stat_statements, the log, the WAL, the data files
: > "$dir/tables.txt"
for t in $(sq -c "SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1"); do
	sq -c "SELECT '$t ' || x::text FROM $t x" >> "$dir/tables.txt"
done
sq -c "SELECT query FROM pg_stat_statements" > "$dir/pgss.txt"
sq -c "CHECKPOINT" >/dev/null
cluster_stop "$dir"
as_root chmod -R a+rX "$dir"
for f in "$dir"/data/pg_wal/0000000*; do "$PG_BINDIR/pg_waldump" "$f" 2>/dev/null || true; done > "$dir/waldump.txt"
ok "$([ -s "$dir/waldump.txt" ] && echo 0 || echo 1)" "pg_waldump read the WAL"
verdict=$(python3 - "$dir" "$calls" <<'PY'
import json, os, re, sys
d = sys.argv[1]
calls = [json.loads(l) for l in open(sys.argv[2])]
def norm(b): return re.sub(rb"(?<=\d)[ \-]+(?=\d)", b"", b)
forms = {}
for n, v, func, arg, shape, oc, val in calls:
    for f in {n.encode(), val.encode()}:
        forms[f] = "%s %s (%s): %s" % (func, arg, shape, oc[:30])
pat = re.compile(b"|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
texts = [(p, os.path.join(d, p)) for p in ("tables.txt", "pgss.txt", "waldump.txt", "postgres.log")]
files = [(os.path.relpath(os.path.join(a, f), d), os.path.join(a, f)) for a, _, fs in os.walk(os.path.join(d, "data")) for f in fs]
hits, n = {}, 0
for name, p in texts + files:
    try:
        b = open(p, "rb").read()
    except OSError:
        continue
    n += 1
    for blob in (b, norm(b)) if name in dict(texts) else (b,):
        for m in pat.finditer(blob):
            hits.setdefault(forms[m.group(0)], set()).add(name)
print(n, len(hits))
for k, v in sorted(hits.items()):
    print("%s in %s" % (k, ", ".join(sorted(v)[:4])))
PY
)
read -r nfiles nhits <<<"$(head -1 <<<"$verdict")"
is "$nhits" 0 "no number of any call is found in the table rows, pg_stat_statements, the server log, pg_waldump's output or the $nfiles files searched"
[ "$nhits" = 0 ] || comment "$(tail -n +2 <<<"$verdict" | head -40)"
tap_done
