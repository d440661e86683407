# Process behaviour: concurrency under latency, ready line, clean SIGTERM exit.
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
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


def test_listen_address():
    # --listen binds every port to that address only; the default is 127.0.0.1
    def refused(host, port):
        try:
            socket.create_connection((host, port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True
    check(refused('127.0.0.2', API), 'the default API port is not on 127.0.0.2')
    p = subprocess.Popen([os.environ['ANET_SIM_BIN'], '--listen', '127.0.0.2',
                          '--port', '0', '--control-port', '0'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        check(line.startswith('anet-sim ready api='), line)
        port = int(line.split('api=')[1].split()[0])
        cport = int(line.split('control=')[1].split()[0])
        c = http.client.HTTPConnection('127.0.0.2', port, timeout=10)
        c.request('POST', '/xml/v1/request.api', body=json.dumps(req('authenticateTestRequest')).encode(),
                  headers={'Content-Type': 'application/json'})
        eq(parse(c.getresponse().read())['messages']['resultCode'], 'Ok', 'API on 127.0.0.2')
        c.close()
        with urllib.request.urlopen('http://127.0.0.2:%d/health' % cport, timeout=10) as r:
            eq(json.loads(r.read())['ok'], True, 'control on 127.0.0.2')
        check(refused('127.0.0.1', port), 'API not on 127.0.0.1')
        check(refused('127.0.0.1', cport), 'control not on 127.0.0.1')
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    bad = subprocess.run([os.environ['ANET_SIM_BIN'], '--listen', 'localhost', '--port', '0',
                          '--control-port', '0'], capture_output=True, text=True, timeout=10)
    eq(bad.returncode, 2, 'a --listen that is not an IPv4 address is a usage error')


def test_settle_interval_clock():
    p = subprocess.Popen([os.environ['ANET_SIM_BIN'], '--port', '0', '--control-port', '0',
                          '--settle-interval', '1'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        port = int(line.split('api=')[1].split()[0])
        st, data = raw_post(json.dumps(tx('authCaptureTransaction', '5.00', {'order': {'invoiceNumber': uniq()}}, card())).encode(), port=port)
        tid = parse(data)['transactionResponse']['transId']

        def status():
            st, data = raw_post(json.dumps(req('getTransactionDetailsRequest', transId=tid)).encode(), port=port)
            s = parse(data)['transaction']['transactionStatus']
            return s if s == 'settledSuccessfully' else None
        # (polled, 30 s at most: a fixed 2.5 s wait assumed the clock's
        # ticks came on time on a loaded machine)
        eq(poll(status, 30, 0.2), 'settledSuccessfully', 'settled by the clock')
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def test_triggers_table_documented():
    t = ctl('GET', '/triggers')
    kinds = {(x['kind'], x['value']) for x in t}
    check(('billTo.zip', '46282') in kinds, 'decline zip')
    check(('amount', '9000.00 + R') in kinds, 'amount triggers')
