#!/usr/bin/env python3
"""Randomized concurrency stress of payments (test/integration/concurrency_stress.sh runs it).

Sessions (threads, each a psql per transaction) authorize, purchase,
capture, void and refund a shared pool of payments of one merchant at once,
at READ COMMITTED, REPEATABLE READ and SERIALIZABLE, reusing idempotency keys
across sessions (same arguments and different ones), while the simulator
adds latency and faults.  A serialization failure is retried, as a caller
would.  Then, once the worker has answered everything, the invariants are
checked against the simulator's ledger.  Prints its seed; output is TAP
lines without a plan (the shell test counts them).

Environment: PSQL (command prefix, space-separated), MERCHANT, TAG,
SIM_CONTROL, SEED, SESSIONS, DURATION (seconds); MERCHANT2 (optional: the subscriptions phase).
"""
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request

PSQL = os.environ["PSQL"].split()
M = os.environ["MERCHANT"]
TAG = os.environ["TAG"]
SIM = os.environ["SIM_CONTROL"]
SEED = int(os.environ.get("SEED", "20261207"))
SESSIONS = int(os.environ.get("SESSIONS", "6"))
SECONDS = float(os.environ.get("DURATION", "60"))
YEAR = time.gmtime().tm_year + 3

print("# seed %d, %d sessions, %.0f s" % (SEED, SESSIONS, SECONDS), flush=True)

lock = threading.Lock()
payments = []          # payment ids made
keys = {}              # idempotency key -> (kind, args) of its first success
key_results = {}       # idempotency key -> set of result ids
codes = {}             # SQLSTATE -> count
problems = []
retries = [0]


def run(sql, level="READ COMMITTED", merchant=None):
    """One transaction at LEVEL as merchant M; (rows, sqlstate)."""
    script = ("SET search_path = public, payments;\nSET payments.merchant_id = '%s';\n"
              "BEGIN ISOLATION LEVEL %s;\n%s\nCOMMIT;\n" % (merchant or M, level, sql))
    p = subprocess.run(PSQL + ["-At", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"],
                       input=script, capture_output=True, text=True)
    m = re.search(r"^ERROR:  ([0-9A-Z]{5}):(.*)$", p.stderr, re.M)
    if m:
        return None, m.group(1), m.group(2).strip()
    if p.returncode != 0:
        return None, "psql", p.stderr.strip()[:200]
    return [l for l in p.stdout.splitlines() if l], None, None


# expected refusals of a call in a race: wrong state, nothing left, amount
# too large, idempotency conflict, rate limited...
EXPECTED = re.compile(r"^(22|23505|25000|55P03|PT4|0A000)")


def call(sql, level, what, merchant=None):
    for _ in range(20):
        rows, code, msg = run(sql, level, merchant)
        if code in ("40001",):
            with lock:
                retries[0] += 1
            continue
        with lock:
            codes[code or "ok"] = codes.get(code or "ok", 0) + 1
            if code and not EXPECTED.match(code):
                problems.append("%s at %s: %s %s" % (what, level, code, msg))
        return rows, code
    with lock:
        problems.append("%s at %s: 20 serialization failures in a row" % (what, level))
    return None, "40001"


def money(rng):
    return "%d.%02d USD" % (rng.randint(1, 40), rng.randint(0, 99))


def session(n, until):
    rng = random.Random(SEED * 100 + n)
    while time.time() < until:
        level = rng.choice(["READ COMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
        with lock:
            pool = list(payments)
        op = rng.random()
        key = None
        if rng.random() < 0.3:
            key = "k%d" % rng.randint(1, 40)
        keyarg = ", idempotency_key => '%s'" % key if key else ""
        if op < 0.25 or len(pool) < 4:
            kind = rng.choice(["purchase", "authorize"])
            amt = money(rng) if not key else "%d.00 USD" % (int(key[1:]) % 7 + 1 + rng.choice([0, 0, 0, 1]))
            sql = ("SELECT payment_id FROM pay_%s(amount => '%s', card => pay_card('4111111111111111', 12, %d, '123')%s);"
                   % (kind, amt, YEAR, keyarg))
            rows, code = call(sql, level, "pay_" + kind)
            if rows:
                pid = int(rows[0])
                with lock:
                    if pid not in payments:
                        payments.append(pid)
                    if key:
                        args = (kind, amt)
                        if key in keys and keys[key] != args:
                            problems.append("key %s: %s then %s both accepted" % (key, keys[key], args))
                        keys.setdefault(key, args)
                        key_results.setdefault(key, set()).add(pid)
        else:
            pid = rng.choice(pool[-8:])
            r = rng.random()
            if r < 0.3:
                amt = "NULL" if rng.random() < 0.5 else "'%s'" % money(rng)
                sql = "SELECT operation_id FROM pay_capture(payment_id => %d, amount => %s%s);" % (pid, amt, keyarg)
                args = ("capture", pid, amt)
                what = "pay_capture"
            elif r < 0.5:
                sql = "SELECT operation_id FROM pay_void(payment_id => %d%s);" % (pid, keyarg)
                args = ("void", pid)
                what = "pay_void"
            else:
                amt = "NULL" if rng.random() < 0.3 else "'%s'" % money(rng)
                sql = "SELECT operation_id FROM pay_refund(payment_id => %d, amount => %s%s);" % (pid, amt, keyarg)
                args = ("refund", pid, amt)
                what = "pay_refund"
            if rng.random() < 0.5:
                # the caller does more in its transaction: the lock is held a while
                sql += "\nSELECT pg_sleep(%.2f);" % (rng.random() * 0.2)
            rows, code = call(sql, level, what)
            if rows and key:
                with lock:
                    if key in keys and keys[key] != args:
                        problems.append("key %s: %s then %s both accepted" % (key, keys[key], args))
                    keys.setdefault(key, args)
                    key_results.setdefault(key, set()).add(int(rows[0]))
        if rng.random() < 0.2 and pool:
            run("SELECT status FROM pay_wait(%d, '2 s');" % rng.choice(pool[-10:]))


def bursts(n=8):
    """N payments, each refunded, voided or captured by every session at once."""
    rng = random.Random(SEED)
    for i in range(n):
        kind = rng.choice(["purchase", "authorize"])
        rows, code = call("SELECT payment_id FROM pay_%s(amount => '10.00 USD', card => pay_card('4111111111111111', 12, %d, '123'));"
                          % (kind, YEAR), "READ COMMITTED", "pay_" + kind)
        if not rows:
            continue
        pid = int(rows[0])
        with lock:
            payments.append(pid)
        run("SELECT status FROM pay_wait(%d, '20 s');" % pid)
        barrier = threading.Barrier(SESSIONS)

        def one(n):
            r = random.Random(SEED * 7 + i * 100 + n)
            level = r.choice(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
            if kind == "authorize" and r.random() < 0.6:
                sql = r.choice(["SELECT 1 FROM pay_capture(payment_id => %d, amount => '%d.00 USD');" % (pid, r.randint(3, 10)),
                                "SELECT 1 FROM pay_void(payment_id => %d);" % pid])
            else:
                sql = r.choice(["SELECT 1 FROM pay_refund(payment_id => %d, amount => '%d.00 USD');" % (pid, r.randint(3, 6)),
                                "SELECT 1 FROM pay_refund(payment_id => %d);" % pid,
                                "SELECT 1 FROM pay_void(payment_id => %d);" % pid])
            barrier.wait()
            call(sql + "\nSELECT pg_sleep(0.1);", level, sql.split("(")[0].split()[-1])
        ts = [threading.Thread(target=one, args=(k,)) for k in range(SESSIONS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    print("# %d bursts of %d sessions on one payment" % (n, SESSIONS), flush=True)


def sim(method, path, body=None):
    req = urllib.request.Request(SIM + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode("utf-8-sig") or "null")


def q(sql, merchant=None):
    rows, code, msg = run(sql, merchant=merchant)
    if code:
        raise SystemExit("check query failed: %s %s" % (code, msg))
    return rows


def main():
    if os.environ.get("MERCHANT2"):
        subs_setup()
    sim("POST", "/latency", {"fixedMs": 20, "randomMs": 200})
    sim("POST", "/faults", {"type": "http5xx", "rate": 0.05, "process": False})
    sim("POST", "/faults", {"type": "reset", "rate": 0.03, "process": True})
    sim("POST", "/faults", {"type": "truncated", "rate": 0.02, "process": True})
    until = time.time() + SECONDS
    ts = [threading.Thread(target=session, args=(n, until)) for n in range(SESSIONS)]
    if os.environ.get("MERCHANT2"):
        ts += [threading.Thread(target=subs_session, args=(n, until)) for n in range(SESSIONS // 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bursts()
    sim("DELETE", "/faults")
    sim("POST", "/latency", {"fixedMs": 0, "randomMs": 0})
    print("# calls by outcome: %s; serialization retries %d" %
          (", ".join("%s %d" % kv for kv in sorted(codes.items())), retries[0]), flush=True)

    # everything answered: settle now and then, so that waiting refunds go out
    pending = None
    for i in range(240):
        pending = q("SELECT count(*) FROM payments.operations WHERE merchant_id = %s "
                    "AND status IN ('queued', 'sending', 'unknown', 'waiting_settlement', 'in_review');" % M)[0]
        if pending == "0":
            break
        if i % 10 == 0:
            sim("POST", "/settle")
            q("UPDATE payments.operations SET next_attempt_at = now() WHERE merchant_id = %s "
              "AND status IN ('queued', 'unknown', 'waiting_settlement');" % M)
        time.sleep(0.5)
    ok(pending == "0", "every operation is answered (%s left)" % pending)
    dead = q("SELECT count(*) FROM payments.operations WHERE merchant_id = %s AND status = 'dead';" % M)[0]
    is_(dead, "0", "no operation ran out of attempts (a dead letter: the gateway refused what the database allowed)")
    print("# operations: " + ", ".join(q("SELECT kind || ' ' || status || coalesce(CASE WHEN via_void THEN ' (void)' END, '') || ' ' || count(*) "
          "FROM payments.operations WHERE merchant_id = %s GROUP BY kind, status, via_void ORDER BY 1;" % M)), flush=True)

    ledger = sim("GET", "/ledger")
    ledger = ledger["ledger"] if isinstance(ledger, dict) else ledger
    by_inv = {}
    for r in ledger:
        by_inv.setdefault(r.get("invoiceNumber"), []).append(r)

    rows = q("SELECT payment_id, kind, status, invoice_number, gateway_trans_id, "
             "coalesce(pay_minor_units(amount_captured), 0), pay_minor_units(amount_refunded), "
             "coalesce((SELECT sum(pay_minor_units(o.amount)) FROM payments.operations o WHERE o.merchant_id = p.merchant_id "
             "AND o.payment_id = p.payment_id AND o.kind = 'refund' AND o.status = 'succeeded'), 0), "
             "coalesce((SELECT string_agg(o.operation_id::text || ':' || o.status || ':' || o.via_void, ' ') FROM payments.operations o "
             "WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id AND o.kind = 'refund'), '') "
             "FROM payments.payments p WHERE merchant_id = %s ORDER BY payment_id;" % M)
    bad = []
    for line in rows:
        pid, kind, status, inv, trans, captured, refunded, refund_ops, refunds = line.split("|")
        captured, refunded, refund_ops = int(captured), int(refunded), int(refund_ops)
        if refunded > captured:
            bad.append("payment %s: refunded %d > captured %d" % (pid, refunded, captured))
        if refunded != refund_ops:
            bad.append("payment %s: amount_refunded %d, succeeded refunds %d" % (pid, refunded, refund_ops))
        lr = by_inv.get(inv, [])
        first = [r for r in lr if r["kind"] in ("charge", "authorization", "held")]
        if len(first) > 1:
            bad.append("payment %s: %d charges/authorizations at the gateway" % (pid, len(first)))
        voided = any(r["kind"] == "void" for r in ledger if r.get("transId") == trans) if trans else False
        cap = sum(int(r["amountCents"]) for r in lr if r["kind"] == "capture")
        if kind == "purchase" and first:
            cap = int(first[0]["amountCents"])
        # money the gateway moved back for it: voids of the capture (whole) and refunds
        sent_refunds = 0
        for op in refunds.split():
            opid, ostatus, via_void = op.split(":")
            rr = by_inv.get("R%s%s" % (TAG, opid), [])
            if ostatus == "succeeded" and via_void == "false" and len(rr) != 1:
                bad.append("payment %s: refund %s succeeded, gateway has %d" % (pid, opid, len(rr)))
            if ostatus != "succeeded" and rr:
                bad.append("payment %s: refund %s %s, gateway has %d" % (pid, opid, ostatus, len(rr)))
            sent_refunds += sum(int(r["amountCents"]) for r in rr)
        if status in ("succeeded", "partially_refunded", "refunded") and not voided and cap != captured:
            bad.append("payment %s (%s): captured %d, gateway %d" % (pid, status, captured, cap))
        if status in ("canceled",) and first and not voided and cap:
            bad.append("payment %s canceled, gateway captured %d, not voided" % (pid, cap))
        if status == "refunded" and not voided and sent_refunds != captured:
            bad.append("payment %s refunded: gateway refunded %d of %d" % (pid, sent_refunds, captured))
        if status in ("succeeded", "partially_refunded") and voided:
            bad.append("payment %s %s but voided at the gateway" % (pid, status))
    ok(not bad, "%d payments: DB and the simulator's ledger agree" % len(rows))
    for b in bad[:20]:
        print("#   " + b)
    multi = {k: v for k, v in key_results.items() if len(v) > 1}
    ok(not multi, "one object per idempotency key (%d keys used)" % len(key_results))
    for k, v in list(multi.items())[:10]:
        print("#   key %s: %s" % (k, sorted(v)))
    if os.environ.get("MERCHANT2"):
        subs_check()
    ok(not problems, "no unexpected error reached a caller (deadlock, internal error)")
    for p in problems[:20]:
        print("#   " + p)


M2 = os.environ.get("MERCHANT2")
subs = []        # (customer, subscription)
methods = {}     # customer -> method ids


def card(n):
    return "pay_card('%s', 12, %d, '123')" % (n, YEAR)


def subs_setup():
    q("SELECT pay_set_test_clock(now());", M2)
    for i in range(8):
        c = int(q("SELECT customer_id FROM pay_create_customer(email => 's%d@example.com');" % i, M2)[0])
        ms = []
        for num in ("4111111111111111", "5424000000000015"):
            pm = int(q("SELECT payment_method_id FROM pay_save_payment_method(customer_id => %d, card => %s, "
                       "validation_mode => 'none');" % (c, card(num)), M2)[0])
            q("SELECT status FROM pay_wait_payment_method(%d, '20 s');" % pm, M2)
            ms.append(pm)
        q("SELECT 1 FROM pay_set_default_payment_method(%d);" % ms[0], M2)
        sid = int(q("SELECT subscription_id FROM pay_create_subscription(customer_id => %d, price => '%d.00 USD', "
                    "interval_unit => 'day');" % (c, 10 + i), M2)[0])
        subs.append((c, sid))
        methods[c] = ms
    print("# %d daily subscriptions of merchant %s" % (len(subs), M2), flush=True)


def subs_session(n, until):
    rng = random.Random(SEED * 1000 + n)
    while time.time() < until:
        level = rng.choice(["READ COMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
        c, sid = rng.choice(subs)
        with lock:
            ms = list(methods[c])
        r = rng.random()
        if r < 0.12:
            sql, what, level = "SELECT pay_advance_test_clock('1 day');", "pay_advance_test_clock", "READ COMMITTED"
        elif r < 0.2:
            sql, what = "SELECT pay_run_renewals();", "pay_run_renewals"
        elif r < 0.25:
            sql, what = "SELECT pay_run_dunning();", "pay_run_dunning"
        elif r < 0.37:
            sql, what = ("SELECT status FROM pay_change_subscription(subscription_id => %d, quantity => %d, proration => '%s');"
                         % (sid, rng.randint(1, 3), rng.choice(["next_invoice", "none", "always_invoice"])),
                         "pay_change_subscription")
        elif r < 0.45:
            sql, what = ("SELECT status FROM pay_update_subscription(subscription_id => %d, payment_method_id => %d);"
                         % (sid, rng.choice(ms)), "pay_update_subscription")
        elif r < 0.52:
            sql, what = ("SELECT status FROM pay_%s_subscription(subscription_id => %d);"
                         % (rng.choice(["pause", "resume"]), sid), "pay_pause/resume")
        elif r < 0.57:
            sql, what = ("SELECT status FROM pay_cancel_subscription(subscription_id => %d, at_period_end => %s);"
                         % (sid, rng.choice(["true", "false"])), "pay_cancel_subscription")
        elif r < 0.67:
            sql, what = "SELECT 1 FROM pay_set_default_payment_method(%d);" % rng.choice(ms), "pay_set_default_payment_method"
        elif r < 0.77:
            sql, what = "SELECT status FROM pay_delete_payment_method(%d);" % rng.choice(ms), "pay_delete_payment_method"
        elif r < 0.87:
            sql, what = ("SELECT payment_method_id FROM pay_save_payment_method(customer_id => %d, card => %s, "
                         "validation_mode => 'none', make_default => %s);"
                         % (c, card(rng.choice(["4007000000027", "6011000000000012", "370000000000002"])),
                            rng.choice(["true", "false"])), "pay_save_payment_method")
        elif r < 0.89:
            sql, what = "SELECT status FROM pay_delete_customer(%d);" % c, "pay_delete_customer"
        else:
            sql, what = ("SELECT subscription_id FROM pay_create_subscription(customer_id => %d, price => '%d.00 USD', "
                         "interval_unit => 'day');" % (c, rng.randint(5, 30)), "pay_create_subscription")
        rows, code = call(sql, level, what, M2)
        if rows and what == "pay_save_payment_method":
            with lock:
                methods[c].append(int(rows[0]))
        if rows and what == "pay_create_subscription":
            with lock:
                subs.append((c, int(rows[0])))


def subs_check():
    for i in range(120):
        left = q("SELECT count(*) FROM payments.operations WHERE merchant_id = %s "
                 "AND status IN ('queued', 'sending', 'unknown', 'waiting_settlement', 'in_review');" % M2)[0]
        if left == "0":
            break
        time.sleep(0.5)
    ok(left == "0", "subscriptions: every operation is answered (%s left)" % left)
    dead = q("SELECT count(*) FROM payments.operations WHERE merchant_id = %s AND status = 'dead';" % M2)[0]
    is_(dead, "0", "subscriptions: no operation ran out of attempts")
    ledger = sim("GET", "/ledger")
    ledger = ledger["ledger"] if isinstance(ledger, dict) else ledger
    charges = {}
    for r in ledger:
        if r["kind"] in ("charge", "authorization", "held"):
            charges.setdefault(r.get("invoiceNumber"), []).append(r)
    rows = q("SELECT i.invoice_id, i.status, i.kind, coalesce(string_agg(p.invoice_number || ':' || p.status || ':' "
             "|| pay_minor_units(p.amount), ' '), '') FROM payments.invoices i LEFT JOIN payments.payments p "
             "ON p.merchant_id = i.merchant_id AND p.invoice_id = i.invoice_id WHERE i.merchant_id = %s "
             "GROUP BY i.invoice_id, i.status, i.kind ORDER BY i.invoice_id;" % M2)
    bad = []
    stats = {}
    for line in rows:
        iid, istatus, kind, pays = line.split("|")
        stats[istatus] = stats.get(istatus, 0) + 1
        ok_charges = 0
        for pp in pays.split():
            num, pstatus, amt = pp.split(":")
            ch = charges.get(num, [])
            if len(ch) > 1:
                bad.append("invoice %s: payment %s charged %d times" % (iid, num, len(ch)))
            if pstatus in ("succeeded", "partially_refunded", "refunded"):
                ok_charges += 1
                if not ch or int(ch[0]["amountCents"]) != int(amt):
                    bad.append("invoice %s: payment %s %s, gateway %s" % (iid, num, pstatus, ch and ch[0]["amountCents"]))
            elif pstatus in ("failed", "canceled") and ch and ch[0].get("currentStatus") not in ("declined", "voided"):
                bad.append("invoice %s: payment %s %s, gateway charged it (%s)" % (iid, num, pstatus, ch[0].get("currentStatus")))
        if ok_charges > 1:
            bad.append("invoice %s (%s) paid %d times" % (iid, istatus, ok_charges))
        if istatus == "paid" and ok_charges != 1 and pays:
            bad.append("invoice %s paid, %d successful charges" % (iid, ok_charges))
    print("# invoices: %s" % ", ".join("%s %d" % kv for kv in sorted(stats.items())), flush=True)
    ok(not bad, "subscriptions: %d invoices, each charged at most once, as the ledger says" % len(rows))
    for b in bad[:20]:
        print("#   " + b)
    late = q("SELECT count(*) FROM payments.payments p JOIN payments.customers c ON c.merchant_id = p.merchant_id "
             "AND c.customer_id = p.customer_id WHERE p.merchant_id = %s AND c.deleted_at IS NOT NULL "
             "AND p.created_at > c.deleted_at;" % M2)[0]
    is_(late, "0", "subscriptions: no charge of a customer made after its deletion")


def is_(got, want, what):
    ok(got == want, what)
    if got != want:
        print("#   got %s, expected %s" % (got, want))


def ok(cond, what):
    print("%s - %s" % ("ok" if cond else "not ok", what), flush=True)


main()
