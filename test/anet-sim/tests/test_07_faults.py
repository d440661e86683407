# Faults and latency as a client sees them.
import http.client
import json
import socket
import time
from lib import *


def body_for(inv, amount='31.00'):
    return json.dumps(tx('authCaptureTransaction', amount, {'order': {'invoiceNumber': inv}}, card())).encode()


def charged(inv):
    return [e for e in ctl('GET', '/ledger') if e['invoiceNumber'] == inv]


def test_hold_client_times_out_but_processed():
    ctl('POST', '/faults', {'type': 'hold', 'count': 1, 'holdMs': 3000})
    inv = uniq()
    t0 = time.time()
    try:
        raw_post(body_for(inv), timeout=1)
        raise Fail('expected a timeout')
    except (socket.timeout, TimeoutError):
        pass
    check(time.time() - t0 < 2, 'timed out after ~1s')
    eq(len(charged(inv)), 1, 'processed although unanswered')
    st, data = raw_post(body_for(uniq()))
    eq(resp(parse(data))['responseCode'], '1', 'next request answered')


def test_http_5xx_not_processed_by_default():
    ctl('POST', '/faults', {'type': 'http5xx', 'count': 1, 'status': 502})
    inv = uniq()
    st, data = raw_post(body_for(inv))
    eq(st, 502, 'status')
    check(b'<HTML>' in data, 'HTML error page')
    eq(len(charged(inv)), 0, 'not processed')
    ctl('POST', '/faults', {'type': 'http5xx', 'count': 1, 'process': True})
    inv = uniq()
    st, data = raw_post(body_for(inv))
    eq(st, 503, 'default status')
    eq(len(charged(inv)), 1, 'processed when asked')


def test_reset_after_processing():
    ctl('POST', '/faults', {'type': 'reset', 'count': 1})
    inv = uniq()
    try:
        raw_post(body_for(inv))
        raise Fail('expected a connection reset')
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        pass
    eq(len(charged(inv)), 1, 'processed before the reset')


def test_malformed_body():
    ctl('POST', '/faults', {'type': 'malformed', 'count': 1})
    st, data = raw_post(body_for(uniq()))
    eq(st, 200, 'status')
    try:
        json.loads(data[3:].decode('utf-8', 'replace'))
        raise Fail('body parsed')
    except ValueError:
        pass


def test_rewrite_members():
    ctl('POST', '/faults', {'type': 'rewrite', 'count': 1,
                            'set': {'refId': 'other', 'transactionResponse.transId': '42',
                                    'transactionResponse.authCode': None}})
    inv = uniq()
    st, data = raw_post(body_for(inv))
    eq(st, 200, 'status')
    check(data.startswith(b'\xef\xbb\xbf'), 'BOM kept')
    r = parse(data)
    eq(r['refId'], 'other', 'refId set')
    eq(resp(r)['transId'], '42', 'transId set')
    check('authCode' not in resp(r), 'authCode removed')
    eq(len(charged(inv)), 1, 'processed')


def test_rewrite_body_status_location():
    ctl('POST', '/faults', {'type': 'rewrite', 'count': 1, 'status': 302,
                            'location': 'http://127.0.0.1:1/', 'body': ''})
    inv = uniq()
    st, data = raw_post(body_for(inv))
    eq(st, 302, 'status')
    eq(data, b'', 'the body given')
    eq(len(charged(inv)), 1, 'processed')
    ctl('POST', '/faults', {'type': 'rewrite', 'count': 1, 'process': False, 'body': '{"x":1}'})
    inv = uniq()
    st, data = raw_post(body_for(inv))
    eq(data, b'{"x":1}', 'the body given, no BOM added')
    eq(len(charged(inv)), 0, 'not processed')


def test_truncated_body():
    ctl('POST', '/faults', {'type': 'truncated', 'count': 1})
    try:
        raw_post(body_for(uniq()))
        raise Fail('expected IncompleteRead')
    except (http.client.IncompleteRead, ConnectionResetError, http.client.RemoteDisconnected):
        pass


def test_trickle():
    ctl('POST', '/faults', {'type': 'trickle', 'count': 1, 'chunkBytes': 100, 'chunkDelayMs': 100})
    t0 = time.time()
    st, data = raw_post(body_for(uniq()))
    dt = time.time() - t0
    eq(resp(parse(data))['responseCode'], '1', 'complete body in the end')
    check(dt >= (len(data) // 100 - 1) * 0.1, 'took %.2fs for %d bytes' % (dt, len(data)))


def test_count_then_normal_and_rate():
    ctl('POST', '/faults', {'type': 'http5xx', 'count': 2})
    eq([raw_post(body_for(uniq()))[0] for _ in range(3)], [503, 503, 200], 'next two only')
    ctl('POST', '/faults', {'type': 'http5xx', 'rate': 1.0})
    try:
        eq([raw_post(body_for(uniq()))[0] for _ in range(3)], [503] * 3, 'rate 1.0')
        f = ctl('GET', '/faults')['faults']
        check(f[-1]['fired'] >= 3, 'fired counter')
    finally:
        ctl('DELETE', '/faults')
    ctl('POST', '/faults', {'type': 'http5xx', 'rate': 0.5})
    try:
        codes = [raw_post(body_for(uniq()))[0] for _ in range(60)]
        k = codes.count(503)
        check(10 <= k <= 50, 'about half: %d of 60' % k)
    finally:
        ctl('DELETE', '/faults')


def test_rule_for_one_request_type():
    ctl('POST', '/faults', {'type': 'http5xx', 'count': 1, 'requestType': 'createTransactionRequest'})
    try:
        d = json.dumps(req('getUnsettledTransactionListRequest')).encode()
        eq(raw_post(d)[0], 200, 'another request type passes, the rule waits')
        eq(ctl('GET', '/faults')['faults'][-1]['remaining'], 1, 'not counted for it')
        eq(ctl('GET', '/faults')['faults'][-1]['requestType'], 'createTransactionRequest', 'listed')
        eq([raw_post(body_for(uniq()))[0] for _ in range(2)], [503, 200], 'the next createTransaction only')
    finally:
        ctl('DELETE', '/faults')


def test_latency_fixed_and_random():
    ctl('POST', '/latency', {'fixedMs': 300, 'randomMs': 200})
    try:
        t0 = time.time()
        st, data = raw_post(body_for(uniq()))
        dt = time.time() - t0
        check(0.29 <= dt < 1.5, 'latency %.3f' % dt)
        eq(resp(parse(data))['responseCode'], '1', 'answered')
    finally:
        ctl('POST', '/latency', {'fixedMs': 0, 'randomMs': 0})
    t0 = time.time()
    raw_post(body_for(uniq()))
    check(time.time() - t0 < 0.25, 'latency removed')
