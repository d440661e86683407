# Process behaviour: concurrency under latency, ready line, clean SIGTERM exit.
import json
import os
import signal
import subprocess
import threading
import time
from lib import *


def test_latency_does_not_block_threads():
    ctl('POST', '/latency', {'fixedMs': 500})
    results = []

    def one():
        st, data = raw_post(json.dumps(req('authenticateTestRequest')).encode(), timeout=10)
        results.append(st)
    try:
        ts = [threading.Thread(target=one) for _ in range(200)]
        t0 = time.time()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dt = time.time() - t0
    finally:
        ctl('POST', '/latency', {'fixedMs': 0})
    eq(results.count(200), 200, 'all answered')
    check(dt < 3.0, '200 requests with 500 ms latency took %.2fs' % dt)


def test_ready_line_and_sigterm():
    p = subprocess.Popen([os.environ['ANET_SIM_BIN'], '--port', '0', '--control-port', '0', '--no-bom'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        check(line.startswith('anet-sim ready api='), line)
        port = int(line.split('api=')[1].split()[0])
        st, data = raw_post(json.dumps(req('authenticateTestRequest')).encode(), port=port)
        check(data.startswith(b'{'), '--no-bom')
        p.send_signal(signal.SIGTERM)
        eq(p.wait(timeout=10), 0, 'exit status')
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_settle_interval_clock():
    p = subprocess.Popen([os.environ['ANET_SIM_BIN'], '--port', '0', '--control-port', '0',
                          '--settle-interval', '1'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        port = int(line.split('api=')[1].split()[0])
        st, data = raw_post(json.dumps(tx('authCaptureTransaction', '5.00', {'order': {'invoiceNumber': uniq()}}, card())).encode(), port=port)
        tid = parse(data)['transactionResponse']['transId']
        time.sleep(2.5)
        st, data = raw_post(json.dumps(req('getTransactionDetailsRequest', transId=tid)).encode(), port=port)
        eq(parse(data)['transaction']['transactionStatus'], 'settledSuccessfully', 'settled by the clock')
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def test_triggers_table_documented():
    t = ctl('GET', '/triggers')
    kinds = {(x['kind'], x['value']) for x in t}
    check(('billTo.zip', '46282') in kinds, 'decline zip')
    check(('amount', '9000.00 + R') in kinds, 'amount triggers')
