# createTransaction rules: types, card checks, triggers, duplicates, settlement.
import time
from lib import *


def test_auth_capture_approved_shape():
    r = charge('12.00')
    t = resp(r)
    eq(t['responseCode'], '1', 'responseCode')
    eq(r['messages']['resultCode'], 'Ok', 'resultCode')
    eq(list(r.keys()), ['transactionResponse', 'refId', 'messages'], 'reply key order')
    eq(t['accountNumber'], 'XXXX1111', 'masked')
    eq(t['accountType'], 'Visa', 'brand')
    eq(len(t['authCode']), 6, 'authCode')
    check(int(t['transId']) > 0, 'transId')
    eq(t['messages'][0], {'code': '1', 'description': 'This transaction has been approved.'}, 'message')


def test_prior_auth_capture_rules():
    a = resp(charge('20.00', 'authOnlyTransaction'))
    r = api(tx('priorAuthCaptureTransaction', '25.00', ref=a['transId']))
    eq(reason(r), 47, 'over-capture reason')
    eq(resp(r)['responseCode'], '3', 'over-capture code')
    r = api(tx('priorAuthCaptureTransaction', '15.00', ref=a['transId']))
    eq(resp(r)['responseCode'], '1', 'capture')
    eq(resp(r)['transId'], a['transId'], 'capture keeps transId')
    eq(resp(r)['refTransID'], a['transId'], 'refTransID')
    r = api(tx('priorAuthCaptureTransaction', '15.00', ref=a['transId']))
    eq(reason(r), 311, 'already captured')
    b = resp(charge('20.00', 'authOnlyTransaction'))
    api(tx('voidTransaction', ref=b['transId']))
    r = api(tx('priorAuthCaptureTransaction', ref=b['transId']))
    eq(resp(r)['responseCode'], '3', 'capture of voided refused')
    eq(reason(r), 310, 'capture of voided reason')
    r = api(tx('priorAuthCaptureTransaction', ref='99999'))
    eq(reason(r), 16, 'unknown transaction')


def test_void_rules():
    a = resp(charge('30.00'))
    r = api(tx('voidTransaction', ref=a['transId']))
    eq(resp(r)['responseCode'], '1', 'void')
    eq(resp(r)['transId'], a['transId'], 'void transId')
    r = api(tx('voidTransaction', ref=a['transId']))
    eq(reason(r), 310, 'void twice')
    b = resp(charge('31.00'))
    ctl('POST', '/settle')
    r = api(tx('voidTransaction', ref=b['transId']))
    eq(resp(r)['responseCode'], '3', 'void after settlement refused')


def test_refund_rules():
    a = resp(charge('50.00'))
    pay = card('1111', 'XXXX')
    r = api(tx('refundTransaction', '10.00', payment=pay, ref=a['transId']))
    eq(reason(r), 54, 'refund of unsettled')
    ctl('POST', '/settle')
    r = api(tx('refundTransaction', '10.00', payment={'creditCard': {'cardNumber': '1111'}}, ref=a['transId']))
    eq(r['messages']['message'][0]['code'], 'E00003', 'expiry required by schema')
    r = api(tx('refundTransaction', '10.00', payment=card('2222', 'XXXX'), ref=a['transId']))
    eq(reason(r), 54, 'wrong last four')
    r = api(tx('refundTransaction', '30.00', payment=pay, ref=a['transId']))
    eq(resp(r)['responseCode'], '1', 'refund 30')
    check(resp(r)['transId'] != a['transId'], 'refund gets its own transId')
    eq(resp(r)['refTransID'], a['transId'], 'refTransID')
    r = api(tx('refundTransaction', '25.00', payment=pay, ref=a['transId']))
    eq(reason(r), 55, 'cumulative refunds over settled amount')
    r = api(tx('refundTransaction', '20.00', payment=card('4111111111111111', 'XXXX'), ref=a['transId']))
    eq(resp(r)['responseCode'], '1', 'refund rest with full number')


def test_held_refund():
    a = resp(charge('9500.50'))
    ctl('POST', '/settle')
    pay = card('1111', 'XXXX')

    def refund(amount):
        return api(tx('refundTransaction', amount, {'order': {'invoiceNumber': uniq()}}, pay, ref=a['transId']))

    def decide(action, tid):
        return api({'updateHeldTransactionRequest': {'merchantAuthentication': auth(),
                    'heldTransactionRequest': {'action': action, 'refTransId': tid}}})

    def status(tid):
        return api(req('getTransactionDetailsRequest', transId=tid))['transaction']['transactionStatus']

    h = resp(refund('9252.00'))
    eq((h['responseCode'], status(h['transId'])), ('4', 'FDSPendingReview'), 'a refund of 9252.00 is held')
    eq(reason(refund('248.51')), 55, 'the held amount is taken from what is left')
    eq(resp(decide('decline', h['transId']))['responseCode'], '2', 'declined')
    eq(status(h['transId']), 'declined', 'a declined held refund')
    h = resp(refund('9252.00'))
    api(tx('voidTransaction', ref=h['transId']))
    eq(status(h['transId']), 'voided', 'a voided held refund')
    h = resp(refund('9252.00'))
    eq(resp(decide('approve', h['transId']))['responseCode'], '1', 'approved')
    eq(status(h['transId']), 'refundPendingSettlement', 'an approved held refund is a refund')
    eq(reason(refund('248.51')), 55, 'refunded: 248.50 is left')
    eq(resp(refund('248.50'))['responseCode'], '1', 'and can be refunded')


def test_refund_window():
    a = resp(charge('40.00'))
    ctl('POST', '/settle')
    ctl('POST', '/clock', {'advanceSeconds': 181 * 86400})
    try:
        r = api(tx('refundTransaction', '1.00', payment=card('1111', 'XXXX'), ref=a['transId']))
        eq(reason(r), 54, 'refund after 180 days')
    finally:
        ctl('POST', '/clock', {'advanceSeconds': -181 * 86400})


def test_capture_only():
    r = api(tx('captureOnlyTransaction', '5.00', payment=card()))
    eq(reason(r), 12, 'authCode missing')
    r = api(tx('captureOnlyTransaction', '5.00', {'authCode': 'ROHNFQ', 'order': {'invoiceNumber': uniq()}}, card()))
    eq(resp(r)['responseCode'], '1', 'captureOnly')
    eq(resp(r)['authCode'], 'ROHNFQ', 'authCode echoed')


def test_card_checks():
    eq(reason(charge(number='4111111111111112')), 6, 'Luhn')
    r = api(tx('authCaptureTransaction', '1.00', payment=card(exp='2001-01')))
    eq(reason(r), 8, 'expired')
    r = api(tx('authCaptureTransaction', '1.00', payment=card(exp='13/99')))
    eq(reason(r), 7, 'bad expiry')
    eq(reason(charge(number='370000000000002', code='123')), 78, 'Amex needs 4-digit code')
    eq(resp(charge(number='370000000000002', code='1234'))['accountType'], 'AmericanExpress', 'Amex')


def test_sandbox_decline_zip():
    r = charge(zip='46282')
    eq(resp(r)['responseCode'], '2', 'declined')
    eq(reason(r), 2, 'reason')
    eq(r['messages']['resultCode'], 'Ok', 'resultCode Ok on decline')
    check(int(resp(r)['transId']) > 0, 'declines get a transId')


def test_avs_and_cvv_triggers():
    eq(resp(charge(zip='46205'))['avsResultCode'], 'N', 'AVS N')
    eq(resp(charge(zip='46201'))['avsResultCode'], 'A', 'AVS A')
    eq(resp(charge(code='901'))['cvvResultCode'], 'N', 'CVV N')
    eq(resp(charge(code='900'))['cvvResultCode'], 'M', 'CVV M')


def test_partial_auth_trigger():
    r = charge('10.00', zip='46225', settings={'allowPartialAuth': 'true'})
    eq(resp(r)['responseCode'], '4', 'partial')
    eq(reason(r), 295, 'reason 295')
    eq(resp(r)['prePaidCard']['approvedAmount'], '1.23', 'approved')
    check('splitTenderId' in resp(r), 'splitTenderId')


def test_simulator_amount_triggers():
    r = charge('9252.00')
    eq((resp(r)['responseCode'], reason(r)), ('4', 252), 'held')
    d = api(req('getTransactionDetailsRequest', transId=resp(r)['transId']))
    eq(d['transaction']['transactionStatus'], 'FDSPendingReview', 'held status')
    r = charge('9253.00')
    eq((resp(r)['responseCode'], reason(r)), ('4', 253), 'authorized+held')
    eq(reason(charge('9008.00')), 8, 'expired trigger')
    r = charge('9019.00')
    eq((resp(r)['responseCode'], reason(r)), ('3', 19), 'processing error')
    eq(r['messages']['message'][0]['code'], 'E00027', 'E00027')
    eq(resp(charge('9002.00'))['responseCode'], '2', 'decline trigger')


def test_duplicate_default_window():
    inv = uniq()
    a = charge('11.00', invoice=inv)
    b = charge('11.00', invoice=inv)
    eq(reason(b), 11, 'duplicate')
    eq(resp(b)['transId'], '0', 'no original id without explicit window')
    eq(b['messages']['message'][0]['code'], 'E00027', 'E00027')
    c = charge('11.01', invoice=inv)
    eq(resp(c)['responseCode'], '1', 'different amount is not a duplicate')


def test_duplicate_explicit_window_returns_original():
    inv = uniq()
    a = resp(charge('12.00', invoice=inv, settings={'duplicateWindow': '2'}))
    b = charge('12.00', invoice=inv, settings={'duplicateWindow': '2'})
    eq(reason(b), 11, 'duplicate')
    eq(resp(b)['transId'], a['transId'], 'original transId')
    eq(resp(b)['authCode'], a['authCode'], 'original authCode')
    time.sleep(2.2)
    c = charge('12.00', invoice=inv, settings={'duplicateWindow': '2'})
    eq(resp(c)['responseCode'], '1', 'after the window')


def test_duplicate_window_zero_disables():
    inv = uniq()
    charge('13.00', invoice=inv, settings={'duplicateWindow': '0'})
    eq(resp(charge('13.00', invoice=inv, settings={'duplicateWindow': '0'}))['responseCode'], '1', 'no dup check')


def test_test_request_not_stored():
    r = charge('14.00', settings={'testRequest': 'true'})
    eq(resp(r)['transId'], '0', 'transId 0')


def test_settlement_and_ledger():
    ctl('POST', '/reset')
    before = len(ctl('GET', '/ledger'))
    a = resp(charge('60.00'))
    b = resp(charge('61.00', 'authOnlyTransaction'))
    charge(zip='46282')
    s = ctl('POST', '/settle')
    check(len(s['batches']) >= 1, 'a batch')
    d = api(req('getTransactionDetailsRequest', transId=a['transId']))['transaction']
    eq(d['transactionStatus'], 'settledSuccessfully', 'settled')
    check('batch' in d, 'batch in details')
    d = api(req('getTransactionDetailsRequest', transId=b['transId']))['transaction']
    eq(d['transactionStatus'], 'authorizedPendingCapture', 'auth not settled')
    led = ctl('GET', '/ledger')
    eq(len(led) - before, 2, 'two accepted charges in the ledger')
    eq(led[-2]['transId'], a['transId'], 'ledger entry')
    eq(led[-2]['amount'], '60.00', 'ledger amount')
    ctl('POST', '/reset')
    eq(len(ctl('GET', '/ledger')), len(led), 'reset keeps the ledger')


def test_auth_expiry():
    a = resp(charge('62.00', 'authOnlyTransaction'))
    ctl('POST', '/clock', {'advanceSeconds': 31 * 86400})
    try:
        ctl('POST', '/settle')
        d = api(req('getTransactionDetailsRequest', transId=a['transId']))['transaction']
        eq(d['transactionStatus'], 'expired', 'expired after 30 days')
    finally:
        ctl('POST', '/clock', {'advanceSeconds': -31 * 86400})


def test_echeck():
    ba = {'bankAccount': {'accountType': 'checking', 'routingNumber': '121042882',
                          'accountNumber': '123456789', 'nameOnAccount': 'Ann Lee'}}
    r = api(tx('authCaptureTransaction', '50.00', {'order': {'invoiceNumber': uniq()}}, ba))
    eq((resp(r)['responseCode'], resp(r)['accountType'], resp(r)['accountNumber']), ('1', 'eCheck', 'XXXXX6789'), 'eCheck')
    r = api(tx('authCaptureTransaction', '150.00', {'order': {'invoiceNumber': uniq()}}, ba))
    eq(resp(r)['responseCode'], '2', 'eCheck over 100 declined')


def test_held_approve():
    t = resp(charge('9252.00'))
    r = api({'updateHeldTransactionRequest': {'merchantAuthentication': auth(),
             'heldTransactionRequest': {'action': 'approve', 'refTransId': t['transId']}}})
    eq(resp(r)['responseCode'], '1', 'approved')
    d = api(req('getTransactionDetailsRequest', transId=t['transId']))['transaction']
    eq(d['transactionStatus'], 'capturedPendingSettlement', 'status after approve')


def test_held_decline_later():
    t = resp(charge('9253.00'))
    d = api(req('getTransactionDetailsRequest', transId=t['transId']))['transaction']
    eq(d['transactionStatus'], 'FDSAuthorizedPendingReview', 'authorized and held')
    r = api({'updateHeldTransactionRequest': {'merchantAuthentication': auth(),
             'heldTransactionRequest': {'action': 'decline', 'refTransId': t['transId']}}})
    eq(resp(r)['responseCode'], '2', 'declined')
    d = api(req('getTransactionDetailsRequest', transId=t['transId']))['transaction']
    eq((d['transactionStatus'], d['responseReasonCode']), ('declined', 254), 'status and reason after decline')
    r = api({'updateHeldTransactionRequest': {'merchantAuthentication': auth(),
             'heldTransactionRequest': {'action': 'approve', 'refTransId': t['transId']}}})
    eq(resp(r)['responseCode'], '3', 'no second decision')
