# What the gateway's JSON-to-XML step cannot carry, and lengths counted in
# characters as the XSD does (not bytes).
from lib import *


def _code(r):
    return r['messages']['message'][0]['code']


def _with(extra, amount='10.00'):
    e = {'order': {'invoiceNumber': uniq()}}
    e.update(extra)
    return api(tx('authCaptureTransaction', amount, e, card()))


def test_control_characters_refused():
    for ch, name in (('\x01', 'U+0001'), ('\x00', 'U+0000'), ('\x1b', 'U+001B'),
                     ('\x0b', 'U+000B'), ('\ufffe', 'U+FFFE'), ('\uffff', 'U+FFFF')):
        r = _with({'billTo': {'firstName': 'Ann', 'lastName': 'Le' + ch + 'e'}})
        eq(_code(r), 'E00003', 'control character %s in billTo.lastName' % name)
        check('invalid character' in r['messages']['message'][0]['text'], 'message names the invalid character')
    r = _with({'order': {'invoiceNumber': uniq(), 'description': 'a\x07b'}})
    eq(_code(r), 'E00003', 'control character in order.description')
    body = tx('authCaptureTransaction', '10.00', {'order': {'invoiceNumber': uniq()}}, card())
    body['createTransactionRequest']['refId'] = 'r\x02'
    eq(_code(api(body)), 'E00003', 'control character in refId')


def test_xml_whitespace_and_other_characters_accepted():
    r = _with({'order': {'invoiceNumber': uniq(), 'description': 'tab\tlf\ncr\r \u00e9\ufffd\U0001F600'}})
    eq(resp(r)['responseCode'], '1', 'tab, LF, CR, U+00E9, U+FFFD and U+1F600 go through')


def test_lengths_count_characters():
    r = _with({'billTo': {'firstName': '\u00e9' * 50, 'lastName': '\u6f22' * 50, 'zip': '1' * 20}})
    eq(resp(r)['responseCode'], '1', '50 two- and three-byte characters and a 20-character zip are accepted')
    r = _with({'billTo': {'firstName': 'Ann', 'lastName': '\u00e9' * 51}})
    eq(_code(r), 'E00003', '51 characters in billTo.lastName are refused')
    check('MaxLength' in r['messages']['message'][0]['text'], 'MaxLength named')
    r = _with({'billTo': {'firstName': 'Ann', 'lastName': 'Lee', 'zip': '1' * 21}})
    eq(_code(r), 'E00003', 'a 21-character zip is refused')


def test_card_number_at_most_16_digits():
    r = api(tx('authCaptureTransaction', '10.00', {'order': {'invoiceNumber': uniq()}},
               card('4111111111111111')))
    eq(resp(r)['responseCode'], '1', '16 digits accepted')
    r = api(tx('authCaptureTransaction', '10.00', {'order': {'invoiceNumber': uniq()}},
               card('4000000000000000006')))
    eq(_code(r), 'E00003', '19 digits refused by the schema')


def test_amount_at_most_15_digits():
    r = _with({}, amount='9999999999999.99')
    eq(resp(r)['responseCode'], '1', 'an amount of 15 digits is accepted')
    r = _with({}, amount='99999999999999.99')
    eq(reason(r), 5, 'an amount of 16 digits is refused (reason 5)')
