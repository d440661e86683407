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
