# Stored payment methods as the extension uses them: validationMode
# (none / testMode / liveMode with a decline), originalNetworkTransId kept on
# payment profiles and shown by getCustomerProfile, profiles from a
# transaction (new, into an existing profile, duplicate merchantCustomerId),
# charging a profile merchant-initiated with processingOptions and
# subsequentAuthInformation, deletes, and the control API's GET /profiles.
import json
from lib import *


def profile(mcid, number='4111111111111111', mode='liveMode', zip_='98004'):
    return api(req('createCustomerProfileRequest', profile={
        'merchantCustomerId': mcid, 'email': 'x@example.com',
        'paymentProfiles': [{'billTo': {'firstName': 'Ann', 'zip': zip_}, 'payment': card(number)}]},
        validationMode=mode))


def field(dr, n):
    return dr.split(',')[n - 1]


def test_validation_modes():
    mc = uniq()[:20]
    r = profile(mc, mode='none')
    eq(r['messages']['resultCode'], 'Ok', 'none: stored')
    eq(r['validationDirectResponseList'], [], 'none: no validation')
    g = api(req('getCustomerProfileRequest', merchantCustomerId=mc))
    check('originalNetworkTransId' not in g['profile']['paymentProfiles'][0], 'none: no network id')
    r = profile(uniq()[:20], mode='testMode')
    eq(field(r['validationDirectResponseList'][0], 1), '1', 'testMode: approved')
    r = profile(uniq()[:20], mode='liveMode')
    dr = r['validationDirectResponseList'][0]
    eq(field(dr, 1), '1', 'liveMode: approved')
    eq(field(dr, 51), 'XXXX1111', 'field 51 is the masked card')
    eq(field(dr, 52), 'Visa', 'field 52 is the card type')
    ntid = field(dr, 59)
    check(len(ntid) > 10, 'field 59 is the network transaction id')
    g = api(req('getCustomerProfileRequest', customerProfileId=r['customerProfileId']))
    eq(g['profile']['paymentProfiles'][0]['originalNetworkTransId'], ntid,
       'the payment profile keeps the validation\'s network id')


def test_live_mode_decline_stores_nothing():
    mc = uniq()[:20]
    r = profile(mc, number='4007000000027', zip_='46282')
    eq(r['messages']['message'][0]['code'], 'E00027', 'declined validation: E00027')
    dr = r['validationDirectResponseList'][0]
    eq(field(dr, 1), '2', 'response code 2')
    eq(field(dr, 3), '2', 'reason 2')
    g = api(req('getCustomerProfileRequest', merchantCustomerId=mc))
    eq(g['messages']['message'][0]['code'], 'E00040', 'no profile was stored')
    p = profile(uniq()[:20], mode='none')
    r = api(req('createCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                paymentProfile={'billTo': {'zip': '46282'}, 'payment': card('5424000000000015')},
                validationMode='liveMode'))
    eq(r['messages']['message'][0]['code'], 'E00027', 'a declined second card')
    check(r['validationDirectResponse'].startswith('2,'), 'with its declined direct response')
    g = api(req('getCustomerProfileRequest', customerProfileId=p['customerProfileId']))
    eq(len(g['profile']['paymentProfiles']), 1, 'the declined card was not added')


def test_profile_from_transaction_keeps_network_id():
    r = charge('16.00')
    t = resp(r)['transId']
    ntid = resp(r)['networkTransId']
    mc = uniq()[:20]
    p = api(req('createCustomerProfileFromTransactionRequest', transId=t, customer={'merchantCustomerId': mc}))
    eq(p['messages']['resultCode'], 'Ok', 'created from the transaction')
    g = api(req('getCustomerProfileRequest', merchantCustomerId=mc))
    eq(g['profile']['paymentProfiles'][0]['originalNetworkTransId'], ntid, 'the transaction\'s network id is kept')
    dup = api(req('createCustomerProfileFromTransactionRequest', transId=t, customer={'merchantCustomerId': mc}))
    eq(dup['messages']['message'][0]['code'], 'E00039', 'a second profile for the merchantCustomerId is a duplicate')
    check(p['customerProfileId'] in dup['messages']['message'][0]['text'], 'naming the existing profile')
    t2 = resp(charge('17.00', number='5424000000000015'))['transId']
    r = api(req('createCustomerProfileFromTransactionRequest', transId=t2, customerProfileId=p['customerProfileId']))
    eq(r['customerProfileId'], p['customerProfileId'], 'a transaction added to an existing profile')
    g = api(req('getCustomerProfileRequest', customerProfileId=p['customerProfileId']))
    eq(len(g['profile']['paymentProfiles']), 2, 'which now holds two payment profiles')
    r = api(req('createCustomerProfileFromTransactionRequest', transId=t2, customerProfileId='999999'))
    eq(r['messages']['message'][0]['code'], 'E00040', 'an unknown profile is E00040')


def test_merchant_initiated_charge():
    p = profile(uniq()[:20])
    ntid = field(p['validationDirectResponseList'][0], 59)
    body = {'profile': {'customerProfileId': p['customerProfileId'],
                        'paymentProfile': {'paymentProfileId': p['customerPaymentProfileIdList'][0]}},
            'order': {'invoiceNumber': uniq()},
            'processingOptions': {'isSubsequentAuth': 'true'},
            'subsequentAuthInformation': {'originalNetworkTransId': ntid, 'reason': 'resubmission'}}
    r = api(tx('authCaptureTransaction', '12.00', body))
    eq(resp(r)['responseCode'], '1', 'a merchant-initiated charge of a profile is approved')
    check(len(resp(r)['networkTransId']) > 10, 'with its own network transaction id')
    bad = dict(body, subsequentAuthInformation={'reason': 'renewal'})
    r = api(tx('authCaptureTransaction', '12.00', bad))
    eq(r['messages']['message'][0]['code'], 'E00003', 'a reason outside the schema enum is E00003')


def test_delete_and_control_profiles():
    mc = uniq()[:20]
    p = profile(mc)
    ppid = p['customerPaymentProfileIdList'][0]
    ps = [x for x in ctl('GET', '/profiles')['profiles'] if x.get('merchantCustomerId') == mc]
    eq(len(ps), 1, 'GET /profiles shows the profile')
    eq(ps[0]['paymentProfiles'][0]['customerPaymentProfileId'], ppid, 'with its payment profile')
    check('4111111111111111' not in json.dumps(ps), 'masked')
    r = api(req('deleteCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                customerPaymentProfileId=ppid))
    eq(r['messages']['resultCode'], 'Ok', 'payment profile deleted')
    ps = [x for x in ctl('GET', '/profiles')['profiles'] if x.get('merchantCustomerId') == mc]
    eq(ps[0]['paymentProfiles'], [], 'gone from the state')
    r = api(req('deleteCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                customerPaymentProfileId=ppid))
    eq(r['messages']['message'][0]['code'], 'E00040', 'deleting it again: E00040')
    r = api(req('deleteCustomerProfileRequest', customerProfileId=p['customerProfileId']))
    eq(r['messages']['resultCode'], 'Ok', 'profile deleted')
    eq([x for x in ctl('GET', '/profiles')['profiles'] if x.get('merchantCustomerId') == mc], [], 'profile gone')


def profile_charge(p, amount, invoice, options=None, sai=None, recurring=True):
    body = {'profile': {'customerProfileId': p['customerProfileId'],
                        'paymentProfile': {'paymentProfileId': p['customerPaymentProfileIdList'][0]}},
            'order': {'invoiceNumber': invoice}}
    if options:
        body['processingOptions'] = options
    if sai:
        body['subsequentAuthInformation'] = sai
    return api(tx('authCaptureTransaction', amount, body,
                  settings={'recurringBilling': 'true'} if recurring else None))


def test_recurring_charges_are_recorded():
    # a subscription's first charge, then a renewal: the ledger and the
    # transaction's details keep what the request said
    p = profile(uniq()[:20])
    ntid = field(p['validationDirectResponseList'][0], 59)
    inv1, inv2, inv3 = uniq(), uniq(), uniq()
    r = profile_charge(p, '21.00', inv1, {'isFirstRecurringPayment': 'true'})
    eq(resp(r)['responseCode'], '1', 'a first recurring charge of a profile is approved')
    t1 = resp(r)['transId']
    r = profile_charge(p, '21.00', inv2, {'isSubsequentAuth': 'true'}, {'originalNetworkTransId': ntid})
    eq(resp(r)['responseCode'], '1', 'a renewal (isSubsequentAuth) is approved')
    r = profile_charge(p, '21.00', inv3, recurring=False)
    led = {e['invoiceNumber']: e for e in ctl('GET', '/ledger') if e['invoiceNumber'] in (inv1, inv2, inv3)}
    eq(led[inv1]['recurringBilling'], True, 'the ledger records recurringBilling=true')
    eq(led[inv1]['processingOptions'], {'isFirstRecurringPayment': 'true'}, 'and the first charge\'s processingOptions')
    check('subsequentAuthInformation' not in led[inv1], 'the first charge names no original transaction')
    eq(led[inv2]['processingOptions'], {'isSubsequentAuth': 'true'}, 'the renewal\'s processingOptions')
    eq(led[inv2]['subsequentAuthInformation'], {'originalNetworkTransId': ntid}, 'and its original network transaction id')
    eq(led[inv3]['recurringBilling'], False, 'a charge without the setting is not recurring')
    check('processingOptions' not in led[inv3], 'and has no processingOptions')
    d = api(req('getTransactionDetailsRequest', transId=t1))
    eq(d['transaction']['recurringBilling'], True, 'getTransactionDetails: recurringBilling true')


def test_stored_card_expires():
    # a payment profile's card is checked against its expiry at every
    # charge: once the (simulator) clock passes it, reason 8
    import datetime
    now = datetime.datetime.utcnow()
    exp = '%04d-%02d' % (now.year + (now.month // 12), now.month % 12 + 1)   # next month
    p = profile(uniq()[:20], mode='none')
    r = api(req('createCustomerPaymentProfileRequest', customerProfileId=p['customerProfileId'],
                paymentProfile={'billTo': {'zip': '98004'}, 'payment': card('5424000000000015', exp=exp)},
                validationMode='none'))
    q = {'customerProfileId': p['customerProfileId'], 'customerPaymentProfileIdList': [r['customerPaymentProfileId']]}
    r = profile_charge(q, '9.00', uniq())
    eq(resp(r)['responseCode'], '1', 'a stored card charged before its expiry is approved')
    ctl('POST', '/clock', {'advanceSeconds': 70 * 86400})
    try:
        inv = uniq()
        r = profile_charge(q, '9.00', inv)
        eq(resp(r)['responseCode'], '3', 'after its expiry: responseCode 3')
        eq(reason(r), 8, 'reason 8, the card has expired')
        eq([e for e in ctl('GET', '/ledger') if e['invoiceNumber'] == inv], [], 'nothing charged')
    finally:
        ctl('POST', '/clock', {'advanceSeconds': -70 * 86400})
