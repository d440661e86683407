# Transport and request validation: BOM, HTTP 200, E00003 forms, E00004, E00007.
import json
import os
import ssl
import http.client
from lib import *


def test_bom_and_http_200_on_error():
    st, data = raw_post(b'{"authenticateTestRequest":{"merchantAuthentication":{"name":"x","transactionKey":"y"}}}')
    eq(st, 200, 'status')
    check(data.startswith(BOM), 'BOM')
    r = parse(data)
    eq(r['messages']['resultCode'], 'Error', 'resultCode')
    eq(r['messages']['message'][0]['code'], 'E00007', 'code')
    eq(r['messages']['message'][0]['text'], 'User authentication failed due to invalid authentication values.', 'text')


def test_authenticate_ok():
    r = api(req('authenticateTestRequest'))
    eq(r['messages']['message'][0]['code'], 'I00001', 'code')


def test_misordered_sample_gets_exact_E00003():
    body = open(os.path.join(SAMPLES, 'createTransaction-wrongElementOrder.request.json'), 'rb').read()
    want = json.load(open(os.path.join(SAMPLES, 'createTransaction-wrongElementOrder-E00003.response.json')))
    r = parse(raw_post(body)[1])
    eq(r, want, 'E00003 reply')


def test_refid_before_auth_E00003():
    body = b'{"getHostedProfilePageRequest":{"customerProfileId":"1","merchantAuthentication":{"name":"a","transactionKey":"b"}}}'
    want = json.load(open(os.path.join(SAMPLES, 'getHostedProfilePage-wrongElementOrder-E00003.response.json')))
    eq(parse(raw_post(body)[1]), want, 'reply')


def test_unknown_key_E00003():
    r = api({'createTransactionRequest': {'merchantAuthentication': auth(),
             'transactionRequest': {'transactionType': 'authCaptureTransaction', 'bogus': '1'}}})
    m = r['messages']['message'][0]
    eq(m['code'], 'E00003', 'code')
    check("has invalid child element 'bogus'" in m['text'], m['text'])


def test_missing_required_incomplete_content():
    r = api({'createTransactionRequest': {'merchantAuthentication': auth()}})
    m = r['messages']['message'][0]
    eq(m['code'], 'E00003', 'code')
    check("has incomplete content. List of possible elements expected: 'clientId, refId, transactionRequest'" in m['text'], m['text'])


def test_empty_amount_decimal_error():
    r = api(tx('authCaptureTransaction', '', payment=card()))
    eq(r['messages']['message'][0]['text'],
       "The 'AnetApi/xml/v1/schema/AnetApiSchema.xsd:amount' element is invalid - The value '' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:decimal' - The string '' is not a valid Decimal value.", 'text')


def test_max_length_E00003():
    r = api(tx('authCaptureTransaction', '1.00', {'order': {'invoiceNumber': 'x' * 21}}, card()))
    m = r['messages']['message'][0]
    eq(m['code'], 'E00003', 'code')
    check('MaxLength' in m['text'] and 'invoiceNumber' in m['text'], m['text'])


def test_max_length_counts_characters():
    # the XSD counts characters: 20 accented letters (40 bytes of UTF-8)
    # fit invoiceNumber (maxLength 20), 21 do not
    r = api(tx('authCaptureTransaction', '1.00', {'order': {'invoiceNumber': '\u00e9' * 20}}, card()))
    eq(r['messages']['resultCode'], 'Ok', str(r))
    r = api(tx('authCaptureTransaction', '1.00', {'order': {'invoiceNumber': '\u00e9' * 21}}, card()))
    m = r['messages']['message'][0]
    eq(m['code'], 'E00003', 'code')
    check('MaxLength' in m['text'] and 'invoiceNumber' in m['text'], m['text'])


def test_enum_and_pattern_E00003():
    r = api(tx('authCaptureTransaction', '1.00', payment=card(code='12a')))
    check('Pattern constraint failed' in r['messages']['message'][0]['text'], str(r))
    r = api(req('getUnsettledTransactionListRequest', status='bogus'))
    check('Enumeration constraint failed' in r['messages']['message'][0]['text'], str(r))


def test_unknown_method_E00004():
    r = api({'fooRequest': {'merchantAuthentication': auth()}})
    eq(r['messages']['message'][0]['code'], 'E00004', 'code')


def test_two_roots_and_garbage_E00003():
    eq(api({'a': 1, 'b': 2})['messages']['message'][0]['code'], 'E00003', 'two roots')
    eq(parse(raw_post(b'{not json')[1])['messages']['message'][0]['code'], 'E00003', 'garbage')


def test_numbers_and_strings_accepted():
    r = api(tx('authCaptureTransaction', 7, {'order': {'invoiceNumber': uniq()}}, card()))
    eq(resp(r)['responseCode'], '1', 'responseCode')


def test_text_json_content_type():
    st, data = raw_post(json.dumps(req('authenticateTestRequest')).encode(), ctype='text/json')
    eq(parse(data)['messages']['resultCode'], 'Ok', 'result')


def test_no_bom_switch():
    ctl('POST', '/config', {'bom': False})
    try:
        st, data = raw_post(json.dumps(req('authenticateTestRequest')).encode())
        check(data.startswith(b'{'), 'no BOM expected')
    finally:
        ctl('POST', '/config', {'bom': True})


def test_https_with_ca_file():
    check(TLS > 0, 'no TLS port')
    ctx = ssl.create_default_context(cafile=CA)
    c = http.client.HTTPSConnection('127.0.0.1', TLS, context=ctx, timeout=10)
    c.request('POST', '/xml/v1/request.api', body=json.dumps(req('authenticateTestRequest')),
              headers={'Content-Type': 'application/json'})
    r = c.getresponse()
    eq(r.status, 200, 'status')
    eq(parse(r.read())['messages']['resultCode'], 'Ok', 'result')
    check(c.sock.version() == 'TLSv1.2', 'TLS version %s' % c.sock.version())


def test_added_merchant_and_isolation():
    ctl('POST', '/merchants', {'name': 'merchantB', 'transactionKey': 'keyB'})
    r = api({'authenticateTestRequest': {'merchantAuthentication': {'name': 'merchantB', 'transactionKey': 'keyB'}}})
    eq(r['messages']['resultCode'], 'Ok', 'auth B')
    r = charge()
    tid = resp(r)['transId']
    rb = api({'getTransactionDetailsRequest': {'merchantAuthentication': {'name': 'merchantB', 'transactionKey': 'keyB'}, 'transId': tid}})
    eq(rb['messages']['message'][0]['code'], 'E00040', "other merchant's transaction")


def test_authenticate_test_wrong_key_E00007():
    # a known login with a wrong key: E00007, refId echoed, nothing else
    r = api({'authenticateTestRequest': {'merchantAuthentication': {'name': LOGIN, 'transactionKey': 'wrongKey12345678'},
                                         'refId': 'auth-1'}})
    eq(r['messages']['resultCode'], 'Error', 'resultCode')
    eq(r['messages']['message'][0]['code'], 'E00007', 'code')
    eq(r.get('refId'), 'auth-1', 'refId echoed')
    eq(sorted(r.keys()), ['messages', 'refId'], 'only refId and messages')


def merchant_auth(name, key):
    return {'name': name, 'transactionKey': key}


def test_inactive_account_E00008():
    ctl('POST', '/merchants', {'name': 'merchantI', 'transactionKey': 'keyI', 'active': False})
    eq([m['active'] for m in ctl('GET', '/merchants') if m['name'] == 'merchantI'], [False], 'listed inactive')
    r = api({'authenticateTestRequest': {'merchantAuthentication': merchant_auth('merchantI', 'keyI')}})
    eq(r['messages']['message'][0]['code'], 'E00008', 'inactive: authenticateTest')
    eq(r['messages']['message'][0]['text'], 'User authentication failed. The account or API user is inactive.', 'text')
    inv = uniq()
    r = api({'createTransactionRequest': {'merchantAuthentication': merchant_auth('merchantI', 'keyI'),
             'transactionRequest': tx('authCaptureTransaction', '12.00', {'order': {'invoiceNumber': inv}},
                                      card())['createTransactionRequest']['transactionRequest']}})
    eq(r['messages']['message'][0]['code'], 'E00008', 'inactive: createTransaction')
    check('transactionResponse' not in r, 'no transactionResponse')
    eq([e for e in ctl('GET', '/ledger') if e['invoiceNumber'] == inv], [], 'nothing charged')
    # a wrong key is still E00007, checked first
    r = api({'authenticateTestRequest': {'merchantAuthentication': merchant_auth('merchantI', 'nope')}})
    eq(r['messages']['message'][0]['code'], 'E00007', 'wrong key of an inactive account')
    ctl('POST', '/merchants', {'name': 'merchantI', 'transactionKey': 'keyI'})
    r = api({'authenticateTestRequest': {'merchantAuthentication': merchant_auth('merchantI', 'keyI')}})
    eq(r['messages']['message'][0]['code'], 'I00001', 'active again')


def test_reporting_not_enabled_E00011():
    ctl('POST', '/merchants', {'name': 'merchantR', 'transactionKey': 'keyR', 'transactionDetailsApi': False})
    a = merchant_auth('merchantR', 'keyR')
    r = api({'createTransactionRequest': {'merchantAuthentication': a,
             'transactionRequest': tx('authCaptureTransaction', '13.00', {'order': {'invoiceNumber': uniq()}},
                                      card())['createTransactionRequest']['transactionRequest']}})
    eq(resp(r)['responseCode'], '1', 'transactions work')
    tid = resp(r)['transId']
    r = api({'getTransactionDetailsRequest': {'merchantAuthentication': a, 'transId': tid}})
    eq(r['messages']['message'][0]['code'], 'E00011', 'details: access denied')
    eq(r['messages']['message'][0]['text'], 'Access denied. You do not have the appropriate permissions.', 'text')
    r = api({'getUnsettledTransactionListRequest': {'merchantAuthentication': a}})
    eq(r['messages']['message'][0]['code'], 'E00011', 'unsettled list: access denied')
    ctl('POST', '/merchants', {'name': 'merchantR', 'transactionKey': 'keyR'})
    r = api({'getTransactionDetailsRequest': {'merchantAuthentication': a, 'transId': tid}})
    eq(r['messages']['resultCode'], 'Ok', 'enabled again')
