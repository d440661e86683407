# Customer profiles and Accept.js nonces.
import json
from lib import *


def new_profile(number='4111111111111111', mode='testMode'):
    return api(req('createCustomerProfileRequest', profile={
        'merchantCustomerId': uniq(), 'email': 'x@example.com',
        'paymentProfiles': [{'customerType': 'individual',
                             'billTo': {'firstName': 'Ann', 'lastName': 'Lee', 'zip': '98004'},
                             'payment': card(number)}]}, validationMode=mode))


def test_create_get_masked():
    p = new_profile()
    eq(p['messages']['resultCode'], 'Ok', 'created')
    eq(len(p['validationDirectResponseList']), 1, 'direct response')
    check(p['validationDirectResponseList'][0].startswith('1,1,1,'), 'approved validation')
    g = api(req('getCustomerProfileRequest', customerProfileId=p['customerProfileId']))
    pp = g['profile']['paymentProfiles'][0]
    eq(pp['payment']['creditCard']['cardNumber'], 'XXXX1111', 'masked number')
    eq(pp['payment']['creditCard']['expirationDate'], 'XXXX', 'masked expiry')
    check('4111111111111111' not in json.dumps(g), 'no PAN in reply')


def test_duplicates_and_unknown():
    mc = uniq()
    body = {'merchantCustomerId': mc, 'paymentProfiles': {'payment': card()}}
    api(req('createCustomerProfileRequest', profile=body))
    r = api(req('createCustomerProfileRequest', profile=body))
    eq(r['messages']['message'][0]['code'], 'E00039', 'duplicate profile')
    r = api(req('getCustomerProfileRequest', customerProfileId='999'))
    eq(r['messages']['message'][0]['code'], 'E00040', 'unknown profile')
    p = new_profile()
    r = api(req('createCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                paymentProfile={'payment': card()}))
    eq(r['messages']['message'][0]['code'], 'E00039', 'duplicate payment profile')
    r = api(req('createCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                paymentProfile={'payment': card('5424000000000015')}, validationMode='liveMode'))
    eq(r['messages']['resultCode'], 'Ok', 'second card')
    check('validationDirectResponse' in r, 'direct response')


def test_charge_profile_and_refund_by_profile():
    p = new_profile()
    prof = {'customerProfileId': p['customerProfileId'],
            'paymentProfile': {'paymentProfileId': p['customerPaymentProfileIdList'][0]}}
    r = api(tx('authCaptureTransaction', '15.00', {'profile': prof, 'order': {'invoiceNumber': uniq()}}))
    eq(resp(r)['responseCode'], '1', 'charged')
    eq(resp(r)['profile']['customerProfileId'], p['customerProfileId'], 'profile echoed')
    eq(resp(r)['accountNumber'], 'XXXX1111', 'masked')
    bad = dict(prof, customerProfileId='424242')
    r = api(tx('authCaptureTransaction', '15.00', {'profile': bad}))
    eq(r['messages']['message'][0]['code'], 'E00040', 'unknown profile')


def test_profile_from_transaction_and_delete():
    t = resp(charge('16.00'))['transId']
    r = api(req('createCustomerProfileFromTransactionRequest', transId=t))
    eq(r['messages']['resultCode'], 'Ok', 'created')
    pid = r['customerProfileId']
    r = api(req('deleteCustomerProfileRequest', customerProfileId=pid))
    eq(r['messages']['resultCode'], 'Ok', 'deleted')
    r = api(req('getCustomerProfileRequest', customerProfileId=pid))
    eq(r['messages']['message'][0]['code'], 'E00040', 'gone')


def test_opaque_data_single_use():
    n = ctl('POST', '/nonces', {'creditCard': {'cardNumber': '4111111111111111', 'expirationDate': '2099-12'}})
    eq(n['dataDescriptor'], 'COMMON.ACCEPT.INAPP.PAYMENT', 'descriptor')
    od = {'opaqueData': {'dataDescriptor': n['dataDescriptor'], 'dataValue': n['dataValue']}}
    r = api(tx('authCaptureTransaction', '17.00', {'order': {'invoiceNumber': uniq()}}, od))
    eq(resp(r)['responseCode'], '1', 'nonce charge')
    eq(resp(r)['accountNumber'], 'XXXX1111', 'card behind the nonce')
    r = api(tx('authCaptureTransaction', '17.00', {'order': {'invoiceNumber': uniq()}}, od))
    eq(r['messages']['message'][0]['code'], 'E00114', 'second use refused')


def test_opaque_data_expires():
    ctl('POST', '/config', {'nonceTtlSeconds': 1})
    try:
        n = ctl('POST', '/nonces', {'creditCard': {'cardNumber': '4111111111111111', 'expirationDate': '2099-12'}})
        ctl('POST', '/clock', {'advanceSeconds': 5})
        od = {'opaqueData': {'dataDescriptor': n['dataDescriptor'], 'dataValue': n['dataValue']}}
        r = api(tx('authCaptureTransaction', '18.00', {'order': {'invoiceNumber': uniq()}}, od))
        eq(r['messages']['message'][0]['code'], 'E00114', 'expired nonce')
    finally:
        ctl('POST', '/clock', {'advanceSeconds': -5})
        ctl('POST', '/config', {'nonceTtlSeconds': 900})


def test_transaction_list_for_customer():
    p = new_profile('5424000000000015')
    prof = {'customerProfileId': p['customerProfileId'],
            'paymentProfile': {'paymentProfileId': p['customerPaymentProfileIdList'][0]}}
    t = resp(api(tx('authCaptureTransaction', '19.00', {'profile': prof, 'order': {'invoiceNumber': uniq()}})))['transId']
    r = api(req('getTransactionListForCustomerRequest', customerProfileId=p['customerProfileId']))
    eq([x['transId'] for x in r['transactions']], [t], 'the profile charge')
    eq(r['transactions'][0]['profile']['customerProfileId'], p['customerProfileId'], 'profile')


def test_create_profile_inside_charge():
    r = api(tx('authCaptureTransaction', '25.00', {'profile': {'createProfile': 'true'},
             'order': {'invoiceNumber': uniq()}, 'customer': {'id': uniq()}}, card('5424000000000015')))
    eq(list(r.keys()), ['transactionResponse', 'profileResponse', 'refId', 'messages'], 'reply keys')
    pr = r['profileResponse']
    eq(pr['messages']['resultCode'], 'Ok', 'profile created')
    g = api(req('getCustomerProfileRequest', customerProfileId=pr['customerProfileId']))
    eq(g['profile']['paymentProfiles'][0]['payment']['creditCard']['cardNumber'], 'XXXX0015', 'stored card')
    prof = {'customerProfileId': pr['customerProfileId'],
            'paymentProfile': {'paymentProfileId': pr['customerPaymentProfileIdList'][0]}}
    c = resp(api(tx('authCaptureTransaction', '26.00', {'profile': prof, 'order': {'invoiceNumber': uniq()}})))
    eq(c['responseCode'], '1', 'charge the new profile')
    ctl('POST', '/settle')
    other = new_profile('370000000000002')
    bad = {'customerProfileId': other['customerProfileId'],
           'paymentProfile': {'paymentProfileId': other['customerPaymentProfileIdList'][0]}}
    r = api(tx('refundTransaction', '1.00', {'profile': bad}, ref=c['transId']))
    eq(r['messages']['message'][0]['code'], 'E00051', 'refund through another payment profile')
    r = api(tx('refundTransaction', '1.00', {'profile': prof}, ref=c['transId']))
    eq(resp(r)['responseCode'], '1', 'refund through the original payment profile')
