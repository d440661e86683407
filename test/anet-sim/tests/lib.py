# lib.py — helpers shared by the simulator's tests (python3 stdlib only).
import http.client
import json
import os
import socket
import ssl
import urllib.request

API = int(os.environ['ANET_API_PORT'])
CTL = int(os.environ['ANET_CONTROL_PORT'])
TLS = int(os.environ.get('ANET_TLS_PORT', '0'))
CA = os.environ.get('ANET_CA', '')
SAMPLES = os.environ.get('ANET_SAMPLES', '')
LOGIN, KEY = '5KP3u95bQpv', '346HZ32z3fP4hTG2'
BOM = b'\xef\xbb\xbf'


class Fail(Exception):
    pass


def check(cond, msg='check failed'):
    if not cond:
        raise Fail(msg)


def eq(a, b, what=''):
    if a != b:
        raise Fail('%s: expected %r, got %r' % (what, b, a))


def poll(cond, timeout=30, interval=0.05):
    """cond()'s value as soon as it is true, tried every interval seconds
    for timeout seconds at most; its last (false) value otherwise."""
    import time
    end = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() >= end:
            return v
        time.sleep(interval)


def raw_post(body, port=API, timeout=10, ctype='application/json'):
    """POST bytes to the API; returns (status, raw bytes)."""
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    c.request('POST', '/xml/v1/request.api', body=body,
              headers={'Content-Type': ctype})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def parse(data):
    check(data.startswith(BOM), 'reply does not start with the UTF-8 BOM')
    return json.loads(data[3:].decode('utf-8'))


def api(req, **kw):
    """POST a request object (dict keeps key order); returns parsed reply."""
    status, data = raw_post(json.dumps(req).encode(), **kw)
    eq(status, 200, 'HTTP status')
    return parse(data)


def ctl(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (CTL, path),
                                 data=data, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read().decode())


def auth():
    return {'name': LOGIN, 'transactionKey': KEY}


def tx(ttype, amount=None, extra=None, payment=None, settings=None, ref=None):
    """Build a createTransactionRequest in XSD order."""
    tr = {'transactionType': ttype}
    if amount is not None:
        tr['amount'] = amount
    if payment is not None:
        tr['payment'] = payment
    if ref is not None:
        tr['refTransId'] = ref
    for k, v in (extra or {}).items():
        tr[k] = v
    if settings:
        tr['transactionSettings'] = {'setting': [
            {'settingName': k, 'settingValue': v} for k, v in settings.items()]}
    # re-order keys to the XSD order
    order = ['transactionType', 'amount', 'currencyCode', 'payment', 'profile',
             'solution', 'callId', 'terminalNumber', 'authCode', 'refTransId',
             'splitTenderId', 'order', 'lineItems', 'tax', 'duty', 'shipping',
             'taxExempt', 'poNumber', 'customer', 'billTo', 'shipTo',
             'customerIP', 'cardholderAuthentication', 'retail', 'employeeId',
             'transactionSettings', 'userFields', 'surcharge', 'merchantDescriptor',
             'subMerchant', 'tip', 'processingOptions', 'subsequentAuthInformation',
             'otherTax', 'shipFrom', 'authorizationIndicatorType']
    tr = {k: tr[k] for k in order if k in tr}
    return {'createTransactionRequest': {'merchantAuthentication': auth(),
                                         'refId': 'r1',
                                         'transactionRequest': tr}}


def card(number='4111111111111111', exp='2099-12', code=None):
    c = {'cardNumber': number, 'expirationDate': exp}
    if code:
        c['cardCode'] = code
    return {'creditCard': c}


_inv = [0]


def uniq():
    _inv[0] += 1
    return 'T%d-%d' % (os.getpid() % 10000, _inv[0])


def charge(amount='10.00', ttype='authCaptureTransaction', number='4111111111111111',
           zip=None, code=None, settings=None, invoice=None):
    extra = {'order': {'invoiceNumber': invoice or uniq()}}
    if zip:
        extra['billTo'] = {'firstName': 'Ann', 'lastName': 'Lee', 'zip': zip}
    return api(tx(ttype, amount, extra, card(number, code=code), settings))


def resp(r):
    return r['transactionResponse']


def reason(r):
    t = resp(r)
    if 'errors' in t:
        return int(t['errors'][0]['errorCode'])
    return int(t['messages'][0]['code'])


def req(name, **fields):
    body = {'merchantAuthentication': auth()}
    body.update(fields)
    return {name: body}
