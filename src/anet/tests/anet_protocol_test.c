/*-------------------------------------------------------------------------
 *
 * anet_protocol_test.c
 *	  Unit tests of the Authorize.Net protocol module (src/anet/).
 *
 * Prints TAP.  Usage: anet_protocol_test FIXTURE_DIR
 *
 * Fixtures (src/anet/tests/fixtures) are hand-made reply bodies shaped like the
 * documented and captured ones: BOM, string/number mixes, unknown keys,
 * "...Specified" siblings, collapsed arrays.  The XSD element orders the
 * builders must follow are written out below (the gateway's XML schema,
 * whose content models test/anet-sim/schema_gen.c also holds), so the test
 * needs no schema file at run time.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "anet_protocol.h"
#include "json_scrub.h"

/* a C string literal and its length, for the parsers */
#define S(lit) (lit), strlen(lit)

static int	tap_n = 0;
static int	tap_failed = 0;
static const char *fixture_dir = "src/anet/tests/fixtures";

/* ----------------------------------------------------------------
 * TAP helpers
 * ----------------------------------------------------------------
 */

static bool ok(bool cond, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* One TAP line. */
static bool
ok(bool cond, const char *fmt,...)
{
	va_list		ap;

	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

/* String equality with a diagnostic on failure. */
static void
is_str(const char *got, const char *want, const char *desc)
{
	bool		same = got != NULL && want != NULL && strcmp(got, want) == 0;

	if (!ok(same, "%s", desc))
		printf("#   got:      %s\n#   expected: %s\n", got ? got : "(null)", want ? want : "(null)");
}

/* Integer equality with a diagnostic on failure. */
static void
is_int(long long got, long long want, const char *desc)
{
	if (!ok(got == want, "%s", desc))
		printf("#   got:      %lld\n#   expected: %lld\n", got, want);
}

/* Read a fixture file into a malloc'd buffer (not NUL-terminated use). */
static char *
fixture(const char *name, size_t *len)
{
	char		path[1024];
	FILE	   *f;
	char	   *buf;
	long		n;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
	{
		printf("# cannot open fixture %s\n", path);
		*len = 0;
		return calloc(1, 1);
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) n + 1);
	if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		printf("# cannot read fixture %s\n", path);
		n = 0;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t) n;
	return buf;
}

/* ----------------------------------------------------------------
 * JSON inspection helpers
 * ----------------------------------------------------------------
 */

/* The object at a dotted path ("a.b.c") in parsed JSON, or NULL. */
static json_object *
at_path(json_object *root, const char *path)
{
	char		buf[256];
	char	   *save = NULL;
	char	   *part;
	json_object *cur = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (part = strtok_r(buf, ".", &save); part && cur; part = strtok_r(NULL, ".", &save))
	{
		json_object *next;

		if (!json_object_object_get_ex(cur, part, &next))
			return NULL;
		cur = next;
	}
	return cur;
}

/* Comma-joined member names of the object at path, in serialized order. */
static void
keys_at(const char *json, const char *path, char *out, size_t outlen)
{
	json_object *root = json ? json_tokener_parse(json) : NULL;
	json_object *o = root ? (path[0] ? at_path(root, path) : root) : NULL;

	out[0] = '\0';
	if (o == NULL || !json_object_is_type(o, json_type_object))
		snprintf(out, outlen, "(no object at %s)", path);
	else
	{
		json_object_object_foreach(o, key, val)
		{
			(void) val;
			if (out[0])
				strncat(out, ",", outlen - strlen(out) - 1);
			strncat(out, key, outlen - strlen(out) - 1);
		}
	}
	if (root)
		json_object_put(root);
}

/* The string value at path, copied into out ("" when absent). */
static void
value_at(const char *json, const char *path, char *out, size_t outlen)
{
	json_object *root = json ? json_tokener_parse(json) : NULL;
	json_object *o = root ? at_path(root, path) : NULL;

	snprintf(out, outlen, "%s", o ? json_object_get_string(o) : "");
	if (root)
		json_object_put(root);
}

/* Assert the member order of the object at path. */
static void
keys_are(const char *json, const char *path, const char *want, const char *desc)
{
	char		got[1024];

	keys_at(json, path, got, sizeof(got));
	is_str(got, want, desc);
}

/*
 * XSD element order per object, keyed by the member name under which the
 * object appears.  Every request object must use only these names, in this
 * order.
 */
typedef struct XsdType
{
	const char *under;
	const char *const *order;
} XsdType;

static const char *const xsd_api_request_tail[] = {NULL};
static const char *const xsd_create_txn[] = {"merchantAuthentication", "clientId", "refId", "transactionRequest", NULL};
static const char *const xsd_auth_test[] = {"merchantAuthentication", "clientId", "refId", NULL};
static const char *const xsd_details[] = {"merchantAuthentication", "clientId", "refId", "transId", NULL};
static const char *const xsd_unsettled[] = {"merchantAuthentication", "clientId", "refId", "status", "sorting", "paging", NULL};
static const char *const xsd_txn_list[] = {"merchantAuthentication", "clientId", "refId", "batchId", "sorting", "paging", NULL};
static const char *const xsd_batch_list[] = {"merchantAuthentication", "clientId", "refId", "includeStatistics", "firstSettlementDate", "lastSettlementDate", NULL};
static const char *const xsd_merchant_auth[] = {"name", "transactionKey", "sessionToken", "password", "impersonationAuthentication", "fingerPrint", "clientKey", "accessToken", "mobileDeviceId", NULL};
static const char *const xsd_txn_request[] = {
	"transactionType", "amount", "currencyCode", "payment", "profile", "solution", "callId",
	"terminalNumber", "authCode", "refTransId", "splitTenderId", "order", "lineItems", "tax",
	"duty", "shipping", "taxExempt", "poNumber", "customer", "billTo", "shipTo", "customerIP",
	"cardholderAuthentication", "retail", "employeeId", "transactionSettings", "userFields",
	"surcharge", "merchantDescriptor", "subMerchant", "tip", "processingOptions",
	"subsequentAuthInformation", "otherTax", "shipFrom", "authorizationIndicatorType", NULL};
static const char *const xsd_processing_options[] = {"isFirstRecurringPayment", "isFirstSubsequentAuth", "isSubsequentAuth", "isStoredCredentials", NULL};
static const char *const xsd_subsequent_auth[] = {"originalNetworkTransId", "originalAuthAmount", "reason", NULL};
static const char *const xsd_payment[] = {"creditCard", "bankAccount", "trackData", "encryptedTrackData", "payPal", "opaqueData", "emv", "dataSource", NULL};
static const char *const xsd_credit_card[] = {"cardNumber", "expirationDate", "cardCode", "isPaymentToken", "cryptogram", "tokenRequestorName", "tokenRequestorId", "tokenRequestorEci", NULL};
static const char *const xsd_opaque[] = {"dataDescriptor", "dataValue", "dataKey", "expirationTimeStamp", NULL};
static const char *const xsd_profile[] = {"createProfile", "customerProfileId", "paymentProfile", "shippingProfileId", NULL};
static const char *const xsd_payment_profile[] = {"paymentProfileId", "cardCode", NULL};
static const char *const xsd_order[] = {"invoiceNumber", "description", "discountAmount", "taxIsAfterDiscount", NULL};
static const char *const xsd_customer[] = {"type", "id", "email", "driversLicense", "taxId", NULL};
static const char *const xsd_bill_to[] = {"firstName", "lastName", "company", "address", "city", "state", "zip", "country", "phoneNumber", "faxNumber", "email", NULL};
static const char *const xsd_settings[] = {"setting", NULL};
static const char *const xsd_setting[] = {"settingName", "settingValue", NULL};
static const char *const xsd_sorting[] = {"orderBy", "orderDescending", NULL};
static const char *const xsd_paging[] = {"limit", "offset", NULL};

static const XsdType xsd_types[] = {
	{"createTransactionRequest", xsd_create_txn},
	{"authenticateTestRequest", xsd_auth_test},
	{"getTransactionDetailsRequest", xsd_details},
	{"getUnsettledTransactionListRequest", xsd_unsettled},
	{"getTransactionListRequest", xsd_txn_list},
	{"getSettledBatchListRequest", xsd_batch_list},
	{"merchantAuthentication", xsd_merchant_auth},
	{"transactionRequest", xsd_txn_request},
	{"payment", xsd_payment},
	{"creditCard", xsd_credit_card},
	{"opaqueData", xsd_opaque},
	{"profile", xsd_profile},
	{"paymentProfile", xsd_payment_profile},
	{"order", xsd_order},
	{"customer", xsd_customer},
	{"billTo", xsd_bill_to},
	{"transactionSettings", xsd_settings},
	{"setting", xsd_setting},
	{"sorting", xsd_sorting},
	{"paging", xsd_paging},
	{"processingOptions", xsd_processing_options},
	{"subsequentAuthInformation", xsd_subsequent_auth},
	{NULL, xsd_api_request_tail}
};

/*
 * Walk every object of a request and check its members against the XSD
 * order of its type; also no JSON null and no clientId anywhere.  Writes
 * the first problem into why.
 */
static bool
walk_xsd(json_object *o, const char *under, char *why, size_t whylen)
{
	if (json_object_is_type(o, json_type_null))
	{
		snprintf(why, whylen, "null under %s", under);
		return false;
	}
	if (json_object_is_type(o, json_type_array))
	{
		size_t		i;

		for (i = 0; i < json_object_array_length(o); i++)
			if (!walk_xsd(json_object_array_get_idx(o, i), under, why, whylen))
				return false;
		return true;
	}
	if (!json_object_is_type(o, json_type_object))
		return true;
	{
		const char *const *order = NULL;
		int			last = -1;
		int			t;

		for (t = 0; xsd_types[t].under; t++)
			if (strcmp(xsd_types[t].under, under) == 0)
				order = xsd_types[t].order;
		if (order == NULL)
		{
			snprintf(why, whylen, "no XSD order known for %s", under);
			return false;
		}
		{
			json_object_object_foreach(o, key, val)
			{
				int			idx = -1;
				int			i;

				if (strcmp(key, "clientId") == 0)
				{
					snprintf(why, whylen, "clientId sent");
					return false;
				}
				for (i = 0; order[i]; i++)
					if (strcmp(order[i], key) == 0)
						idx = i;
				if (idx < 0)
				{
					snprintf(why, whylen, "%s is not a member of %s", key, under);
					return false;
				}
				if (idx <= last)
				{
					snprintf(why, whylen, "%s out of XSD order in %s", key, under);
					return false;
				}
				last = idx;
				if (!walk_xsd(val, key, why, whylen))
					return false;
			}
		}
	}
	return true;
}

/* Assert that a built request is in XSD order throughout. */
static void
xsd_ordered(const char *json, const char *desc)
{
	json_object *root = json ? json_tokener_parse(json) : NULL;
	char		why[256] = "not JSON";
	bool		good = false;

	if (root && json_object_is_type(root, json_type_object) &&
		json_object_object_length(root) == 1)
	{
		json_object_object_foreach(root, key, val)
			good = walk_xsd(val, key, why, sizeof(why));
	}
	if (!ok(good, "%s", desc))
		printf("#   %s\n", why);
	if (root)
		json_object_put(root);
}

/* Same member names in the same order, recursively (values may differ). */
static bool
same_shape(json_object *a, json_object *b)
{
	if (json_object_get_type(a) != json_object_get_type(b))
		return false;
	if (json_object_is_type(a, json_type_array))
	{
		size_t		i;

		if (json_object_array_length(a) != json_object_array_length(b))
			return false;
		for (i = 0; i < json_object_array_length(a); i++)
			if (!same_shape(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i)))
				return false;
		return true;
	}
	if (json_object_is_type(a, json_type_object))
	{
		struct json_object_iterator ia = json_object_iter_begin(a);
		struct json_object_iterator ea = json_object_iter_end(a);
		struct json_object_iterator ib = json_object_iter_begin(b);
		struct json_object_iterator eb = json_object_iter_end(b);

		while (!json_object_iter_equal(&ia, &ea))
		{
			if (json_object_iter_equal(&ib, &eb) ||
				strcmp(json_object_iter_peek_name(&ia), json_object_iter_peek_name(&ib)) != 0 ||
				!same_shape(json_object_iter_peek_value(&ia), json_object_iter_peek_value(&ib)))
				return false;
			json_object_iter_next(&ia);
			json_object_iter_next(&ib);
		}
		return json_object_iter_equal(&ib, &eb);
	}
	return true;
}

/* ----------------------------------------------------------------
 * Amounts
 * ----------------------------------------------------------------
 */

static void
check_to_decimal(int64_t minor, int exponent, const char *want)
{
	char		buf[64];
	int			n = anet_amount_to_decimal(minor, exponent, buf, sizeof(buf));
	char		desc[160];

	snprintf(desc, sizeof(desc), "amount_to_decimal(%lld, %d) = %s",
			 (long long) minor, exponent, want);
	if (n < 0)
		buf[0] = '\0';
	ok(n == (int) strlen(want) && strcmp(buf, want) == 0, "%s", desc);
	if (strcmp(buf, want) != 0)
		printf("#   got: %s (%d)\n", buf, n);
}

static void
check_to_minor(bool reply, const char *s, int exponent, bool want_ok, int64_t want)
{
	int64_t		got = 12345;
	bool		r = reply ? anet_reply_decimal_to_minor(s, exponent, &got)
		: anet_decimal_to_minor(s, exponent, &got);

	if (want_ok)
	{
		if (!ok(r && got == want, "%s(\"%s\", %d) = %lld",
				reply ? "reply_decimal_to_minor" : "decimal_to_minor",
				s, exponent, (long long) want))
			printf("#   got: %s %lld\n", r ? "true" : "false", (long long) got);
	}
	else
		ok(!r, "%s(\"%s\", %d) is rejected",
		   reply ? "reply_decimal_to_minor" : "decimal_to_minor", s, exponent);
}

static void
test_amounts(void)
{
	char		buf[64];
	int			n;
	bool		all;

	printf("# amounts\n");
	check_to_decimal(12345, 2, "123.45");
	check_to_decimal(5, 2, "0.05");
	check_to_decimal(-5, 2, "-0.05");
	check_to_decimal(0, 2, "0.00");
	check_to_decimal(0, 0, "0");
	check_to_decimal(1234, 0, "1234");
	check_to_decimal(1234, 3, "1.234");
	check_to_decimal(1, 3, "0.001");
	check_to_decimal(INT64_MAX, 2, "92233720368547758.07");
	check_to_decimal(INT64_MIN, 2, "-92233720368547758.08");
	check_to_decimal(INT64_MAX, 0, "9223372036854775807");
	check_to_decimal(INT64_MIN, 0, "-9223372036854775808");
	check_to_decimal(INT64_MIN, 3, "-9223372036854775.808");
	check_to_decimal(INT64_MAX, 18, "9.223372036854775807");
	check_to_decimal(1, 18, "0.000000000000000001");

	n = anet_amount_to_decimal(1, 19, buf, sizeof(buf));
	ok(n == -1, "amount_to_decimal rejects exponent 19");
	n = anet_amount_to_decimal(1, -1, buf, sizeof(buf));
	ok(n == -1, "amount_to_decimal rejects exponent -1");
	n = anet_amount_to_decimal(12345, 2, buf, 6);
	ok(n == -1 && buf[0] == '\0', "amount_to_decimal: buffer one byte short fails with \"\"");
	n = anet_amount_to_decimal(12345, 2, buf, 7);
	ok(n == 6 && strcmp(buf, "123.45") == 0, "amount_to_decimal: exact buffer size works");

	check_to_minor(false, "12.34", 2, true, 1234);
	check_to_minor(false, "12.3", 2, true, 1230);
	check_to_minor(false, "12", 2, true, 1200);
	check_to_minor(false, "00012.30", 2, true, 1230);
	check_to_minor(false, "0.001", 3, true, 1);
	check_to_minor(false, "1.234", 3, true, 1234);
	check_to_minor(false, "5", 0, true, 5);
	check_to_minor(false, "1018.88", 2, true, 101888);
	check_to_minor(false, "92233720368547758.07", 2, true, INT64_MAX);
	check_to_minor(false, "-92233720368547758.08", 2, true, INT64_MIN);
	check_to_minor(false, "9223372036854775807", 0, true, INT64_MAX);
	check_to_minor(false, "-9223372036854775808", 0, true, INT64_MIN);
	check_to_minor(false, "9.223372036854775807", 18, true, INT64_MAX);
	check_to_minor(false, "92233720368547758.08", 2, false, 0);
	check_to_minor(false, "-92233720368547758.09", 2, false, 0);
	check_to_minor(false, "9223372036854775808", 0, false, 0);
	check_to_minor(false, "99999999999999999999999", 0, false, 0);
	check_to_minor(false, "12.345", 2, false, 0);
	check_to_minor(false, "5.0", 0, false, 0);
	check_to_minor(false, "1.230", 2, false, 0);
	check_to_minor(false, "12.", 2, false, 0);
	check_to_minor(false, ".5", 2, false, 0);
	check_to_minor(false, "", 2, false, 0);
	check_to_minor(false, "-", 2, false, 0);
	check_to_minor(false, "1e2", 2, false, 0);
	check_to_minor(false, " 1", 2, false, 0);
	check_to_minor(false, "1 ", 2, false, 0);
	check_to_minor(false, "+1", 2, false, 0);
	check_to_minor(false, "1,00", 2, false, 0);
	check_to_minor(false, "1", 19, false, 0);
	check_to_minor(true, "5.0", 0, true, 5);
	check_to_minor(true, "5.00", 0, true, 5);
	check_to_minor(true, "1.230", 2, true, 123);
	check_to_minor(true, "5.001", 2, false, 0);
	check_to_minor(true, "5", 2, true, 500);

	/* round trip over many values and exponents 0..4 */
	all = true;
	{
		static const int64_t values[] = {0, 1, -1, 7, 99, 100, 101, 12345, -12345,
			999999999, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
		size_t		i;
		int			e;

		for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
			for (e = 0; e <= 4; e++)
			{
				int64_t		back;

				if (anet_amount_to_decimal(values[i], e, buf, sizeof(buf)) < 0 ||
					!anet_decimal_to_minor(buf, e, &back) || back != values[i])
				{
					printf("# round trip failed for %lld exp %d (%s)\n", (long long) values[i], e, buf);
					all = false;
				}
			}
	}
	ok(all, "minor -> decimal -> minor round-trips exactly (exponents 0-4, int64 limits)");

	/* JSON numbers: json-c keeps the token text of a parsed double */
	{
		json_object *o = json_tokener_parse("{\"a\":1018.88,\"b\":5.00,\"c\":5,\"d\":0.1}");
		json_object *v;
		int64_t		m;

		json_object_object_get_ex(o, "a", &v);
		is_str(json_object_get_string(v), "1018.88", "json-c: number 1018.88 keeps its text");
		ok(anet_reply_decimal_to_minor(json_object_get_string(v), 2, &m) && m == 101888,
		   "JSON number 1018.88 -> 101888 minor units");
		json_object_object_get_ex(o, "b", &v);
		is_str(json_object_get_string(v), "5.00", "json-c: number 5.00 keeps its text");
		ok(anet_reply_decimal_to_minor(json_object_get_string(v), 0, &m) && m == 5,
		   "JSON number 5.00 -> 5 with exponent 0 (reply form)");
		json_object_object_get_ex(o, "c", &v);
		ok(anet_reply_decimal_to_minor(json_object_get_string(v), 2, &m) && m == 500,
		   "JSON integer 5 -> 500 minor units");
		json_object_object_get_ex(o, "d", &v);
		ok(anet_reply_decimal_to_minor(json_object_get_string(v), 2, &m) && m == 10,
		   "JSON number 0.1 -> 10 exactly (no binary float)");
		json_object_put(o);
	}
}

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

static const AnetCredentials creds = {"apiLogin", "SecretKey0123456"};

/* A full authCapture with a card: every field we can send. */
static AnetTxnRequest
full_card_request(const char *pan, const char *cvv)
{
	AnetTxnRequest r;

	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_CAPTURE;
	r.ref_id = "corr-1";
	r.amount = "12.34";
	r.currency_code = "USD";
	r.card_number = pan;
	r.card_expiration = "2030-12";
	r.card_code = cvv;
	r.invoice_number = "INV-1";
	r.description = "Books";
	r.customer_id = "cust-9";
	r.customer_email = "ada@example.org";
	r.bill_first_name = "Ada";
	r.bill_last_name = "Lovelace";
	r.bill_company = "Engines Ltd";
	r.bill_address = "12 Main Street";
	r.bill_city = "London";
	r.bill_state = "LDN";
	r.bill_zip = "N1 9GU";
	r.bill_country = "GB";
	r.customer_ip = "192.0.2.7";
	r.duplicate_window = 600;
	return r;
}

/* Build, expecting failure; check the message and that it hides data. */
static void
expect_error(const AnetTxnRequest *r, const char *needle, const char *desc)
{
	char	   *err = NULL;
	char	   *json = anet_build_transaction_request(&creds, r, false, &err);
	bool		good = json == NULL && err != NULL && strstr(err, needle) != NULL;

	if (!ok(good, "%s", desc))
		printf("#   error: %s\n", err ? err : "(none)");
	anet_free(json);
	anet_free(err);
}

static void
test_transaction_requests(void)
{
	AnetTxnRequest r;
	char	   *json;
	char	   *err = NULL;
	char		v[256];

	printf("# createTransactionRequest: key order per type\n");

	/* authCapture, card, all optional fields */
	r = full_card_request("4111111111111111", "123");
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json != NULL, "authCapture with card builds");
	xsd_ordered(json, "authCapture/card: every object in XSD order, no null, no clientId");
	keys_are(json, "", "createTransactionRequest", "root has exactly one key, the request name");
	keys_are(json, "createTransactionRequest", "merchantAuthentication,refId,transactionRequest",
			 "createTransactionRequest: merchantAuthentication, refId, transactionRequest");
	keys_are(json, "createTransactionRequest.merchantAuthentication", "name,transactionKey",
			 "merchantAuthentication: name, transactionKey");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,currencyCode,payment,order,customer,billTo,customerIP,transactionSettings",
			 "authCapture/card: transactionRequest key order");
	keys_are(json, "createTransactionRequest.transactionRequest.payment.creditCard",
			 "cardNumber,expirationDate,cardCode", "creditCard: cardNumber, expirationDate, cardCode");
	keys_are(json, "createTransactionRequest.transactionRequest.order", "invoiceNumber,description",
			 "order: invoiceNumber, description");
	keys_are(json, "createTransactionRequest.transactionRequest.customer", "id,email", "customer: id, email");
	keys_are(json, "createTransactionRequest.transactionRequest.billTo",
			 "firstName,lastName,company,address,city,state,zip,country", "billTo in XSD order");
	value_at(json, "createTransactionRequest.transactionRequest.transactionType", v, sizeof(v));
	is_str(v, "authCaptureTransaction", "transactionType authCaptureTransaction");
	value_at(json, "createTransactionRequest.transactionRequest.amount", v, sizeof(v));
	is_str(v, "12.34", "amount sent as the decimal string");
	value_at(json, "createTransactionRequest.transactionRequest.payment.creditCard.cardNumber", v, sizeof(v));
	is_str(v, "4111111111111111", "unmasked request carries the full card number");
	ok(strstr(json, "{\"settingName\":\"allowPartialAuth\",\"settingValue\":\"false\"}") != NULL &&
	   strstr(json, "{\"settingName\":\"duplicateWindow\",\"settingValue\":\"600\"}") != NULL,
	   "transactionSettings.setting[]: allowPartialAuth=false and duplicateWindow=600");
	anet_free(json);

	/* authOnly with Accept.js opaque data */
	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_ONLY;
	r.amount = "5";
	r.opaque_descriptor = "COMMON.ACCEPT.INAPP.PAYMENT";
	r.opaque_value = "eyJjb2RlIjoiNTBfMl8wNjAwMDUzNjM5NjU2QzQ2In0=NONCE";
	r.invoice_number = "INV-2";
	r.duplicate_window = 0;
	r.allow_partial_auth = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "authOnly/opaque: XSD order");
	keys_are(json, "createTransactionRequest", "merchantAuthentication,transactionRequest",
			 "no refId given: omitted");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,payment,order,transactionSettings", "authOnly/opaque: key order");
	keys_are(json, "createTransactionRequest.transactionRequest.payment.opaqueData",
			 "dataDescriptor,dataValue", "opaqueData: dataDescriptor, dataValue");
	ok(json && strstr(json, "\"allowPartialAuth\",\"settingValue\":\"true\"") != NULL &&
	   strstr(json, "\"duplicateWindow\",\"settingValue\":\"0\"") != NULL,
	   "allowPartialAuth=true and duplicateWindow=0 are sent");
	anet_free(json);

	/* authCapture with a customer profile, recurring */
	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_CAPTURE;
	r.amount = "19.99";
	r.profile_customer_id = "1806660050";
	r.profile_payment_id = "1801644163";
	r.invoice_number = "SUB-7-3";
	r.duplicate_window = 28800;
	r.recurring_billing = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "authCapture/profile: XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,profile,order,transactionSettings", "authCapture/profile: key order");
	keys_are(json, "createTransactionRequest.transactionRequest.profile",
			 "customerProfileId,paymentProfile", "profile: customerProfileId, paymentProfile");
	keys_are(json, "createTransactionRequest.transactionRequest.profile.paymentProfile",
			 "paymentProfileId", "profile.paymentProfile: paymentProfileId");
	ok(json && strstr(json, "\"recurringBilling\",\"settingValue\":\"true\"") != NULL,
	   "recurringBilling=true is sent");
	anet_free(json);

	/* priorAuthCapture */
	memset(&r, 0, sizeof(r));
	r.type = ANET_PRIOR_AUTH_CAPTURE;
	r.ref_id = "corr-3";
	r.amount = "10.00";
	r.ref_trans_id = "40000012345";
	r.invoice_number = "INV-3";
	r.duplicate_window = 600;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "priorAuthCapture: XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,refTransId,order,transactionSettings", "priorAuthCapture: key order");
	ok(json && strstr(json, "allowPartialAuth") == NULL, "priorAuthCapture: no allowPartialAuth setting");
	anet_free(json);
	r.amount = NULL;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,refTransId,order,transactionSettings", "priorAuthCapture without amount (full amount)");
	anet_free(json);

	/* captureOnly */
	memset(&r, 0, sizeof(r));
	r.type = ANET_CAPTURE_ONLY;
	r.amount = "7.50";
	r.card_number = "5424000000000015";
	r.card_expiration = "2031-01";
	r.auth_code = "ROHNFQ";
	r.duplicate_window = -1;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "captureOnly: XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,payment,authCode", "captureOnly: key order (payment before authCode)");
	keys_are(json, "createTransactionRequest.transactionRequest.payment.creditCard",
			 "cardNumber,expirationDate", "no card code given: cardCode omitted");
	anet_free(json);

	/* refund with last four and XXXX */
	memset(&r, 0, sizeof(r));
	r.type = ANET_REFUND;
	r.ref_id = "corr-4";
	r.amount = "5.00";
	r.card_number = "1111";
	r.card_expiration = "XXXX";
	r.ref_trans_id = "40000012345";
	r.invoice_number = "INV-1";
	r.duplicate_window = 600;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "refund: XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,payment,refTransId,order,transactionSettings", "refund: key order");
	value_at(json, "createTransactionRequest.transactionRequest.payment.creditCard.cardNumber", v, sizeof(v));
	is_str(v, "1111", "refund: last four digits sent as cardNumber");
	anet_free(json);
	json = anet_build_transaction_request(&creds, &r, true, &err);
	value_at(json, "createTransactionRequest.transactionRequest.payment.creditCard.cardNumber", v, sizeof(v));
	is_str(v, "XXXX1111", "refund masked: cardNumber XXXX1111");
	anet_free(json);

	/* void */
	memset(&r, 0, sizeof(r));
	r.type = ANET_VOID;
	r.ref_trans_id = "40000012345";
	r.duplicate_window = -1;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "void: XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest", "transactionType,refTransId",
			 "void: transactionType, refTransId only");
	is_str(json, "{\"createTransactionRequest\":{\"merchantAuthentication\":{\"name\":\"apiLogin\","
		   "\"transactionKey\":\"SecretKey0123456\"},\"transactionRequest\":{\"transactionType\":"
		   "\"voidTransaction\",\"refTransId\":\"40000012345\"}}}",
		   "void: exact compact JSON");
	anet_free(json);

	printf("# createTransactionRequest: omission\n");
	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_CAPTURE;
	r.amount = "1.00";
	r.card_number = "4111111111111111";
	r.card_expiration = "2030-12";
	r.ref_id = "";
	r.invoice_number = "";
	r.bill_zip = "";
	r.customer_ip = NULL;
	r.duplicate_window = -1;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,payment,transactionSettings",
			 "NULL and \"\" fields are omitted (no order, billTo, customerIP, currencyCode)");
	keys_are(json, "createTransactionRequest", "merchantAuthentication,transactionRequest", "empty refId omitted");
	ok(json && strstr(json, "null") == NULL && strstr(json, "clientId") == NULL,
	   "no JSON null and no clientId in the text");
	ok(json && strstr(json, "duplicateWindow") == NULL, "duplicate_window < 0: not sent");
	anet_free(json);

	printf("# createTransactionRequest: validation\n");
	r = full_card_request("4111111111111111", "123");
	r.invoice_number = "INV-123456789012345678";	/* 22 */
	expect_error(&r, "order.invoiceNumber is longer than 20", "invoice number of 22 characters is refused");
	r = full_card_request("4111111111111111", "123");
	r.invoice_number = "12345678901234567890";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json != NULL, "invoice number of exactly 20 characters is accepted");
	anet_free(json);
	r = full_card_request("4111111111111111", "123");
	r.ref_id = "123456789012345678901";
	expect_error(&r, "refId is longer than 20", "refId of 21 characters is refused");
	{
		char		longdesc[300];
		char		utf8desc[600];
		int			i;

		memset(longdesc, 'd', 256);
		longdesc[256] = '\0';
		r = full_card_request("4111111111111111", "123");
		r.description = longdesc;
		expect_error(&r, "order.description is longer than 255", "description of 256 characters is refused");
		for (i = 0; i < 255; i++)
			memcpy(utf8desc + 2 * i, "\xc3\xa9", 2);
		utf8desc[510] = '\0';
		r.description = utf8desc;
		json = anet_build_transaction_request(&creds, &r, false, &err);
		ok(json != NULL, "description of 255 two-byte characters is accepted (XSD counts characters)");
		anet_free(json);
	}
	r = full_card_request("4111111111111111", "123");
	r.description = "bad \xff byte";
	expect_error(&r, "not valid UTF-8", "invalid UTF-8 is refused");
	r = full_card_request("4111111111111111", "123");
	r.bill_city = "Spring\x01field";
	expect_error(&r, "billTo.city contains a control character", "a control character (U+0001) is refused: XML cannot carry it");
	r = full_card_request("4111111111111111", "123");
	r.description = "a \xef\xbf\xbe b";
	expect_error(&r, "order.description contains a control character", "U+FFFE is refused: XML cannot carry it");
	r = full_card_request("4111111111111111", "123");
	r.ref_id = "ref\x1f";
	expect_error(&r, "refId contains a control character", "a control character in refId is refused");
	r = full_card_request("4111111111111111", "123");
	r.description = "tab\tline\ncr\r and \xef\xbf\xbd";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json != NULL, "tab, line feed, carriage return and U+FFFD are accepted (XML carries them)");
	anet_free(json);
	r = full_card_request("4111111111111111", "123");
	r.customer_id = "123456789012345678901";
	expect_error(&r, "customer.id is longer than 20", "customer id of 21 characters is refused");
	r = full_card_request("4111111111111111", "123");
	r.bill_zip = "123456789012345678901";
	expect_error(&r, "billTo.zip is longer than 20", "billTo.zip of 21 characters is refused");
	r = full_card_request("4111111111111111", "12345");
	expect_error(&r, "creditCard.cardCode", "card code of 5 digits is refused");
	r = full_card_request("41111111111111112", "123");
	expect_error(&r, "creditCard.cardNumber is longer than 16", "card number of 17 digits is refused");
	r = full_card_request("4111-1111-1111-1", "123");
	expect_error(&r, "creditCard.cardNumber must contain only digits", "card number with dashes is refused");
	r = full_card_request("4111111111111111", "123");
	r.amount = "12,34";
	expect_error(&r, "transactionRequest.amount must be a non-negative decimal", "amount 12,34 is refused");
	r.amount = "-1.00";
	expect_error(&r, "transactionRequest.amount must be a non-negative decimal", "negative amount is refused");
	r.amount = "1234567890123.456";
	expect_error(&r, "transactionRequest.amount has more than 15 digits", "an amount of 16 digits is refused");
	r.amount = "9999999999999.99";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json != NULL, "an amount of 15 digits is accepted");
	anet_free(json);
	r.amount = NULL;
	expect_error(&r, "amount is required", "authCapture without amount is refused");
	r = full_card_request("4111111111111111", "123");
	r.currency_code = "US";
	expect_error(&r, "currencyCode", "currency code of 2 letters is refused");
	r = full_card_request("4111111111111111", "123");
	r.profile_customer_id = "1";
	r.profile_payment_id = "2";
	expect_error(&r, "at most one of card", "card and profile together are refused");
	r = full_card_request(NULL, NULL);
	r.card_expiration = NULL;
	expect_error(&r, "a card, opaque data or customer profile is required", "authCapture without payment is refused");
	r = full_card_request("4111111111111111", "123");
	r.card_expiration = NULL;
	expect_error(&r, "creditCard.expirationDate is required", "card without expiration date is refused");
	r = full_card_request("4111111111111111", "123");
	r.duplicate_window = 28801;
	expect_error(&r, "duplicateWindow", "duplicate window above 28800 is refused");
	memset(&r, 0, sizeof(r));
	r.type = ANET_VOID;
	r.ref_trans_id = "1";
	r.card_number = "4111111111111111";
	r.card_expiration = "2030-12";
	expect_error(&r, "payment data must not be sent", "void with card data is refused");
	r.card_number = r.card_expiration = NULL;
	r.ref_trans_id = NULL;
	expect_error(&r, "refTransId is required", "void without refTransId is refused");
	r.type = ANET_PRIOR_AUTH_CAPTURE;
	expect_error(&r, "refTransId is required", "priorAuthCapture without refTransId is refused");
	r.ref_trans_id = "12ab";
	expect_error(&r, "refTransId must contain only digits", "non-numeric refTransId is refused");
	memset(&r, 0, sizeof(r));
	r.type = ANET_CAPTURE_ONLY;
	r.amount = "1.00";
	r.card_number = "4111111111111111";
	r.card_expiration = "2030-12";
	expect_error(&r, "authCode is required", "captureOnly without authCode is refused");
	r.auth_code = "1234567";
	expect_error(&r, "authCode is longer than 6", "authCode of 7 characters is refused");
	r.type = ANET_AUTH_CAPTURE;
	r.auth_code = "123456";
	expect_error(&r, "only sent with captureOnly", "authCode with authCapture is refused");
	memset(&r, 0, sizeof(r));
	r.type = ANET_REFUND;
	r.amount = "1.00";
	r.opaque_descriptor = "COMMON.ACCEPT.INAPP.PAYMENT";
	r.opaque_value = "nonce";
	expect_error(&r, "opaque data cannot be refunded", "refund to opaque data is refused");
	{
		AnetCredentials bad = {"abcdefghijklmnopqrstuvwxyz", "k"};	/* 26 */
		AnetCredentials badkey = {"login", "12345678901234567"};	/* 17 */

		r = full_card_request("4111111111111111", "123");
		json = anet_build_transaction_request(&bad, &r, false, &err);
		ok(json == NULL && err && strstr(err, "merchantAuthentication.name is longer than 25"),
		   "login id of 26 characters is refused");
		anet_free(err);
		json = anet_build_transaction_request(&badkey, &r, false, &err);
		ok(json == NULL && err && strstr(err, "transactionKey is longer than 16") &&
		   strstr(err, "12345678901234567") == NULL,
		   "transaction key of 17 characters is refused, key not in the message");
		anet_free(err);
		json = anet_build_transaction_request(NULL, &r, false, &err);
		ok(json == NULL && err != NULL, "NULL credentials are refused");
		anet_free(err);
		json = anet_build_transaction_request(&creds, &r, false, NULL);
		ok(json != NULL, "error pointer may be NULL");
		anet_free(json);
	}
	/* errors while card data is present never echo it */
	{
		static const char *const pans[] = {"4111111111111111", "370000000000002", "6011000000000012"};
		bool		clean = true;
		int			i;

		for (i = 0; i < 3; i++)
		{
			char	   *e = NULL;

			r = full_card_request(pans[i], "9876");
			r.invoice_number = "INV-0000000000000000000000";
			json = anet_build_transaction_request(&creds, &r, true, &e);
			if (json != NULL || e == NULL || strstr(e, pans[i]) || strstr(e, "9876") ||
				strstr(e, creds.transaction_key))
				clean = false;
			anet_free(json);
			anet_free(e);
			r = full_card_request(pans[i], "98765");
			json = anet_build_transaction_request(&creds, &r, false, &e);
			if (json != NULL || e == NULL || strstr(e, pans[i]) || strstr(e, "98765"))
				clean = false;
			anet_free(json);
			anet_free(e);
		}
		ok(clean, "validation errors never contain the PAN, CVV or key");
	}
}

/* Masked form for one card: nothing secret, valid JSON, same shape. */
static void
check_masking(const char *brand, const char *pan, const char *cvv)
{
	AnetTxnRequest r = full_card_request(pan, cvv);
	char	   *err = NULL;
	char	   *clear = anet_build_transaction_request(&creds, &r, false, &err);
	char	   *masked = anet_build_transaction_request(&creds, &r, true, &err);
	char		bin[7];
	char		want[16];
	char		v[64];
	json_object *a = clear ? json_tokener_parse(clear) : NULL;
	json_object *b = masked ? json_tokener_parse(masked) : NULL;

	memcpy(bin, pan, 6);
	bin[6] = '\0';
	ok(clear && masked && strstr(clear, pan) != NULL && strstr(masked, pan) == NULL &&
	   strstr(masked, bin) == NULL,
	   "%s %s: masked form has neither the PAN nor its first six digits", brand, bin);
	ok(masked && strstr(masked, cvv) == NULL && strstr(masked, creds.transaction_key) == NULL &&
	   strstr(masked, "2030-12") == NULL,
	   "%s: masked form has no card code, expiry or transaction key", brand);
	snprintf(want, sizeof(want), "XXXX%s", pan + strlen(pan) - 4);
	value_at(masked, "createTransactionRequest.transactionRequest.payment.creditCard.cardNumber", v, sizeof(v));
	ok(b != NULL && strcmp(v, want) == 0 && same_shape(a, b),
	   "%s: masked form is valid JSON of the same shape, cardNumber %s", brand, want);
	if (a)
		json_object_put(a);
	if (b)
		json_object_put(b);
	anet_free(clear);
	anet_free(masked);
}

static void
test_masking(void)
{
	AnetTxnRequest r;
	char	   *json;
	char	   *err = NULL;
	char		v[64];

	printf("# masking\n");
	check_masking("Visa", "4111111111111111", "123");
	check_masking("Visa-13", "4007000000027", "321");
	check_masking("Amex", "370000000000002", "7319");
	check_masking("Discover", "6011000000000012", "456");
	check_masking("Mastercard", "5424000000000015", "654");
	check_masking("Mastercard-2", "2223000010309703", "777");
	check_masking("JCB", "3088000000000017", "888");
	check_masking("Diners", "38000000000006", "909");

	r = full_card_request("4111111111111111", "123");
	json = anet_build_transaction_request(&creds, &r, true, &err);
	value_at(json, "createTransactionRequest.merchantAuthentication.transactionKey", v, sizeof(v));
	is_str(v, "XXXXXXXX", "masked transactionKey is XXXXXXXX");
	value_at(json, "createTransactionRequest.transactionRequest.payment.creditCard.cardCode", v, sizeof(v));
	is_str(v, "XXX", "masked cardCode is XXX");
	value_at(json, "createTransactionRequest.transactionRequest.payment.creditCard.expirationDate", v, sizeof(v));
	is_str(v, "XXXX", "masked expirationDate is XXXX");
	value_at(json, "createTransactionRequest.merchantAuthentication.name", v, sizeof(v));
	is_str(v, "apiLogin", "login id is not secret and stays");
	xsd_ordered(json, "masked form is in XSD order too");
	anet_free(json);

	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_CAPTURE;
	r.amount = "5.00";
	r.opaque_descriptor = "COMMON.ACCEPT.INAPP.PAYMENT";
	r.opaque_value = "SECRET-NONCE-VALUE-0123";
	r.duplicate_window = 600;
	json = anet_build_transaction_request(&creds, &r, true, &err);
	value_at(json, "createTransactionRequest.transactionRequest.payment.opaqueData.dataValue", v, sizeof(v));
	ok(json && strcmp(v, "XXXX") == 0 && strstr(json, "SECRET-NONCE") == NULL,
	   "masked opaque dataValue is XXXX and the nonce is gone");
	anet_free(json);
}

static void
test_other_requests(void)
{
	char	   *json;
	char	   *err = NULL;
	AnetListOptions lo = {"submitTimeUTC", true, 100, 1};

	printf("# reporting and health-check requests\n");
	json = anet_build_authenticate_test_request(&creds, NULL, false, &err);
	is_str(json, "{\"authenticateTestRequest\":{\"merchantAuthentication\":{\"name\":\"apiLogin\","
		   "\"transactionKey\":\"SecretKey0123456\"}}}", "authenticateTestRequest exact JSON");
	anet_free(json);
	json = anet_build_authenticate_test_request(&creds, "hc-1", true, &err);
	ok(json && strstr(json, "SecretKey") == NULL && strstr(json, "\"refId\":\"hc-1\""),
	   "authenticateTestRequest masked: key hidden, refId kept");
	xsd_ordered(json, "authenticateTestRequest in XSD order");
	anet_free(json);

	json = anet_build_get_transaction_details_request(&creds, "r1", "40000012345", false, &err);
	xsd_ordered(json, "getTransactionDetailsRequest in XSD order");
	keys_are(json, "getTransactionDetailsRequest", "merchantAuthentication,refId,transId",
			 "getTransactionDetailsRequest: merchantAuthentication, refId, transId");
	anet_free(json);
	json = anet_build_get_transaction_details_request(&creds, NULL, "4000x", false, &err);
	ok(json == NULL && err && strstr(err, "transId must contain only digits"), "non-numeric transId is refused");
	anet_free(err);
	json = anet_build_get_transaction_details_request(&creds, NULL, NULL, false, &err);
	ok(json == NULL && err && strstr(err, "transId is required"), "missing transId is refused");
	anet_free(err);

	json = anet_build_get_unsettled_transaction_list_request(&creds, "r2", "pendingApproval", &lo, false, &err);
	xsd_ordered(json, "getUnsettledTransactionListRequest in XSD order");
	keys_are(json, "getUnsettledTransactionListRequest", "merchantAuthentication,refId,status,sorting,paging",
			 "unsettled list: merchantAuthentication, refId, status, sorting, paging");
	keys_are(json, "getUnsettledTransactionListRequest.sorting", "orderBy,orderDescending",
			 "sorting: orderBy, orderDescending");
	keys_are(json, "getUnsettledTransactionListRequest.paging", "limit,offset", "paging: limit, offset");
	ok(json && strstr(json, "\"orderDescending\":\"true\"") && strstr(json, "\"limit\":\"100\""),
	   "sorting and paging values are strings");
	anet_free(json);
	json = anet_build_get_unsettled_transaction_list_request(&creds, NULL, NULL, NULL, false, &err);
	keys_are(json, "getUnsettledTransactionListRequest", "merchantAuthentication",
			 "unsettled list without options: only merchantAuthentication");
	anet_free(json);
	json = anet_build_get_unsettled_transaction_list_request(&creds, NULL, "all", NULL, false, &err);
	ok(json == NULL && err && strstr(err, "status must be"), "unknown unsettled status is refused");
	anet_free(err);
	lo.limit = 1001;
	json = anet_build_get_unsettled_transaction_list_request(&creds, NULL, NULL, &lo, false, &err);
	ok(json == NULL && err && strstr(err, "paging.limit"), "paging limit 1001 is refused");
	anet_free(err);
	lo.limit = 1000;
	lo.order_by = NULL;

	json = anet_build_get_transaction_list_request(&creds, NULL, "9900112", &lo, false, &err);
	xsd_ordered(json, "getTransactionListRequest in XSD order");
	keys_are(json, "getTransactionListRequest", "merchantAuthentication,batchId,paging",
			 "transaction list: merchantAuthentication, batchId, paging (no sorting)");
	anet_free(json);
	json = anet_build_get_transaction_list_request(&creds, NULL, NULL, NULL, false, &err);
	ok(json == NULL && err && strstr(err, "batchId is required"), "transaction list without batchId is refused");
	anet_free(err);

	json = anet_build_get_settled_batch_list_request(&creds, "r3", true, "2026-01-01T00:00:00Z",
													 "2026-01-31T23:59:59.000-05:00", false, &err);
	xsd_ordered(json, "getSettledBatchListRequest in XSD order");
	keys_are(json, "getSettledBatchListRequest",
			 "merchantAuthentication,refId,includeStatistics,firstSettlementDate,lastSettlementDate",
			 "settled batch list: includeStatistics before the dates");
	anet_free(json);
	json = anet_build_get_settled_batch_list_request(&creds, NULL, false, NULL, NULL, false, &err);
	keys_are(json, "getSettledBatchListRequest", "merchantAuthentication",
			 "settled batch list: includeStatistics=false and no dates are omitted");
	anet_free(json);
	json = anet_build_get_settled_batch_list_request(&creds, NULL, false, "2026-01-01", NULL, false, &err);
	ok(json == NULL && err && strstr(err, "firstSettlementDate"), "date without time is refused");
	anet_free(err);
}

/* ----------------------------------------------------------------
 * Replies: createTransaction
 * ----------------------------------------------------------------
 */

/* Parse a fixture as a createTransaction reply. */
static bool
parse_txn_fixture(const char *name, AnetTxnResult *res)
{
	size_t		len;
	char	   *body = fixture(name, &len);
	bool		r = anet_parse_transaction_response(body, len, res);

	free(body);
	return r;
}

/* A body given as a C string. */
static bool
parse_txn_text(const char *body, AnetTxnResult *res)
{
	return anet_parse_transaction_response(body, body ? strlen(body) : 0, res);
}

static void
test_transaction_replies(void)
{
	AnetTxnResult res;
	bool		r;

	printf("# createTransactionResponse\n");
	r = parse_txn_fixture("txn_approved.json", &res);
	ok(r && res.outcome == ANET_APPROVED, "approved: outcome approved");
	is_int(res.response_code, 1, "approved: responseCode 1");
	is_int(res.reason_code, 1, "approved: reason 1 from messages[0].code");
	is_str(res.reason_text, "This transaction has been approved.", "approved: reason text");
	is_str(res.trans_id, "40000012345", "approved: transId");
	is_str(res.auth_code, "A1B2C3", "approved: authCode");
	ok(strcmp(res.avs_result, "Y") == 0 && strcmp(res.cvv_result, "M") == 0 &&
	   strcmp(res.cavv_result, "2") == 0, "approved: AVS Y, CVV M, CAVV 2");
	ok(strcmp(res.account_number, "XXXX1111") == 0 && strcmp(res.account_type, "Visa") == 0,
	   "approved: masked account number and type as returned");
	is_str(res.network_trans_id, "NTID0123456789ABCDEF012", "approved: networkTransId");
	{
		/* the XSD allows a networkTransId of 255: the reply stays readable */
		char		ntid[256];
		char		body[1024];

		memset(ntid, 'N', 255);
		ntid[255] = '\0';
		snprintf(body, sizeof(body),
				 "{\"transactionResponse\":{\"responseCode\":\"1\",\"authCode\":\"A1\",\"transId\":\"123\","
				 "\"networkTransId\":\"%s\",\"messages\":[{\"code\":\"1\",\"description\":\"This transaction has been approved.\"}]},"
				 "\"messages\":{\"resultCode\":\"Ok\",\"message\":[{\"code\":\"I00001\",\"text\":\"Successful.\"}]}}", ntid);
		r = parse_txn_text(body, &res);
		ok(r && res.outcome == ANET_APPROVED && strcmp(res.network_trans_id, ntid) == 0,
		   "approved: a networkTransId of 255 characters is read whole");
	}
	r = parse_txn_fixture("txn_approved.json", &res);
	ok(strcmp(res.result_code, "Ok") == 0 && strcmp(res.message_code, "I00001") == 0 &&
	   strcmp(res.message_text, "Successful.") == 0, "approved: resultCode Ok, I00001 Successful.");
	is_str(res.ref_id, "corr-0001", "approved: refId echoed");
	ok(!res.is_duplicate && !res.retryable && !res.unknown_outcome && !res.test_request,
	   "approved: not duplicate, not retryable, outcome known");

	r = parse_txn_fixture("txn_approved_bom.json", &res);
	ok(r && res.outcome == ANET_APPROVED && strcmp(res.trans_id, "40000012345") == 0,
	   "approved with a leading UTF-8 BOM parses the same");
	r = parse_txn_text("\xef\xbb\xbf", &res);
	ok(!r && res.outcome == ANET_MALFORMED, "a BOM alone is malformed");

	r = parse_txn_fixture("txn_declined.json", &res);
	ok(r && res.outcome == ANET_DECLINED && res.response_code == 2,
	   "declined: responseCode 2 with resultCode Ok is a decline");
	ok(res.reason_code == 2 && strcmp(res.reason_text, "This transaction has been declined.") == 0,
	   "declined: reason 2 from errors[0]");
	ok(strcmp(res.result_code, "Ok") == 0 && strcmp(res.trans_id, "40000012346") == 0 &&
	   !res.retryable, "declined: resultCode Ok, transId kept, not retryable");

	r = parse_txn_fixture("txn_error_e00027.json", &res);
	ok(r && res.outcome == ANET_ERROR && res.response_code == 3, "E00027: outcome error");
	ok(res.reason_code == 54 && strstr(res.reason_text, "criteria for issuing a credit") != NULL,
	   "E00027: reason 54 and its text from errors[0]");
	ok(strcmp(res.message_code, "E00027") == 0 && strcmp(res.result_code, "Error") == 0,
	   "E00027: top-level message code and resultCode");
	ok(strcmp(res.ref_trans_id, "40000010000") == 0 && strcmp(res.trans_id, "0") == 0,
	   "E00027: refTransID read (capital ID), transId 0");
	ok(!res.retryable && !res.is_duplicate, "E00027/54: neither retryable nor duplicate");

	r = parse_txn_fixture("txn_held_252.json", &res);
	ok(r && res.outcome == ANET_HELD_FOR_REVIEW && res.reason_code == 252, "held: responseCode 4 reason 252");
	r = parse_txn_fixture("txn_held_253.json", &res);
	ok(r && res.outcome == ANET_HELD_FOR_REVIEW && res.reason_code == 253 && res.response_code == 4,
	   "held: numbers instead of strings, reason 253");
	is_str(res.trans_id, "40000012348", "numeric transId read as its digits");
	ok(strcmp(res.message_code, "I00001") == 0 && res.ref_id[0] == '\0',
	   "single-object message instead of array; no refId is \"\"");

	r = parse_txn_fixture("txn_duplicate_11.json", &res);
	ok(r && res.outcome == ANET_ERROR && res.is_duplicate && res.reason_code == 11, "duplicate: reason 11 sets is_duplicate");
	ok(strcmp(res.trans_id, "40000012349") == 0 && strcmp(res.auth_code, "ORIG01") == 0,
	   "duplicate: original transId and authCode kept");
	ok(!res.retryable, "duplicate: not retryable");

	r = parse_txn_fixture("req_e00007.json", &res);
	ok(r && res.outcome == ANET_REQUEST_REJECTED, "E00007 (no transactionResponse): request rejected, parse ok");
	ok(strcmp(res.message_code, "E00007") == 0 && res.response_code == 0 && res.trans_id[0] == '\0' &&
	   strstr(res.reason_text, "User authentication failed") != NULL,
	   "E00007: code, no responseCode, no transId, reason text from messages");
	ok(!res.retryable && !res.unknown_outcome, "E00007: not retryable, outcome known (nothing created)");
	r = parse_txn_fixture("req_e00003.json", &res);
	ok(r && res.outcome == ANET_REQUEST_REJECTED && strcmp(res.message_code, "E00003") == 0 &&
	   strlen(res.message_text) > 300, "E00003: rejected, long validator text kept");
	r = parse_txn_fixture("req_e00001.json", &res);
	ok(r && res.outcome == ANET_REQUEST_REJECTED && res.retryable && strcmp(res.ref_id, "corr-0006") == 0,
	   "E00001: rejected and retryable, refId read");
	r = parse_txn_fixture("req_e00049.json", &res);
	ok(r && res.outcome == ANET_REQUEST_REJECTED && res.unknown_outcome && !res.retryable,
	   "E00049 timeout: outcome unknown, not retryable");
	r = parse_txn_fixture("txn_retry_19.json", &res);
	ok(r && res.outcome == ANET_ERROR && res.reason_code == 19 && res.retryable,
	   "reason 19 (try again): retryable");

	r = parse_txn_fixture("txn_unknown_keys.json", &res);
	ok(r && res.outcome == ANET_APPROVED && strcmp(res.auth_code, "UNK123") == 0 &&
	   strcmp(res.account_type, "Discover") == 0 && res.ref_id[0] == '\0',
	   "unknown keys, other key order, refId null: approved and read");
	r = parse_txn_fixture("txn_approved_resultcode_error.json", &res);
	ok(r && res.outcome == ANET_APPROVED && strcmp(res.result_code, "Error") == 0,
	   "responseCode 1 decides even with resultCode Error");
	r = parse_txn_fixture("txn_bad_response_code.json", &res);
	ok(!r && res.outcome == ANET_MALFORMED && res.unknown_outcome, "responseCode 7 is malformed, outcome unknown");
	r = parse_txn_fixture("txn_ok_without_response.json", &res);
	ok(!r && res.outcome == ANET_MALFORMED, "resultCode Ok without transactionResponse is malformed");

	printf("# malformed bodies\n");
	{
		size_t		len;
		char	   *body = fixture("txn_approved.json", &len);
		size_t		end = len;
		size_t		cut;
		bool		all = true;

		while (end > 0 && (body[end - 1] == '\n' || body[end - 1] == ' '))
			end--;
		for (cut = 0; cut < end; cut++)
		{
			if (anet_parse_transaction_response(body, cut, &res) || res.outcome != ANET_MALFORMED)
			{
				printf("# prefix of %zu bytes accepted\n", cut);
				all = false;
			}
		}
		ok(all, "every truncation of an approved reply (%zu prefixes) is malformed", end);
		ok(anet_parse_transaction_response(body, end, &res) && res.outcome == ANET_APPROVED,
		   "the untruncated reply (no trailing newline) parses");
		free(body);

		body = fixture("txn_approved_bom.json", &len);
		all = true;
		for (cut = 0; cut + 1 < len; cut += 7)
			if (anet_parse_transaction_response(body, cut, &res))
				all = false;
		ok(all, "truncations of a BOM reply are malformed");
		free(body);
	}
	ok(!anet_parse_transaction_response("", 0, &res) && res.outcome == ANET_MALFORMED, "empty body is malformed");
	ok(!anet_parse_transaction_response(NULL, 0, &res), "NULL body is malformed");
	ok(!parse_txn_text("  \r\n ", &res), "whitespace-only body is malformed");
	ok(!parse_txn_text("Service Unavailable", &res), "plain text body is malformed");
	{
		size_t		len;
		char	   *body = fixture("html_503.html", &len);

		ok(!anet_parse_transaction_response(body, len, &res) && res.outcome == ANET_MALFORMED,
		   "HTML 503 page is malformed");
		free(body);
	}
	ok(!parse_txn_text("[{\"transactionResponse\":{}}]", &res), "JSON array is malformed");
	ok(!parse_txn_text("\"Ok\"", &res), "JSON string is malformed");
	ok(!parse_txn_text("{\"messages\":{\"resultCode\":\"Ok\"}} trailing", &res), "trailing garbage is malformed");
	ok(!parse_txn_text("{\"a\":1}{\"b\":2}", &res), "two concatenated objects are malformed");
	ok(!parse_txn_text("{\"transactionResponse\":{\"responseCode\":\"1\",\"transId\":\""
					   "123456789012345678901234567890123456789012345678901234567890123456789\"}}", &res),
	   "an id longer than its field is malformed, never shortened");
	ok(!parse_txn_text("{\"transactionResponse\":{\"responseCode\":\"1\",\"transId\":\"12\\u00003\"},"
					   "\"messages\":{\"resultCode\":\"Ok\",\"message\":[{\"code\":\"I00001\"}]}}", &res) &&
	   res.outcome == ANET_MALFORMED,
	   "an id with an escaped NUL inside is malformed, never cut at the NUL");
	ok(parse_txn_text("{\"transactionResponse\":{\"responseCode\":\"2\",\"transId\":\"7\",\"errors\":"
					  "[{\"errorCode\":\"2\",\"errorText\":\"x\\u0000y\"}]},"
					  "\"messages\":{\"resultCode\":\"Ok\",\"message\":[{\"code\":\"I00001\"}]}}", &res) &&
	   res.outcome == ANET_DECLINED && strcmp(res.reason_text, "") == 0,
	   "a text with an escaped NUL inside reads as empty, the reply stays readable");
	{
		const char	body[] = "{\"transactionResponse\":{\"responseCode\":\"1\",\"transId\":\"9\"}}\0garbage";

		ok(!anet_parse_transaction_response(body, sizeof(body) - 1, &res),
		   "a NUL byte inside the body is malformed");
		ok(anet_parse_transaction_response(body, strlen(body), &res) && res.outcome == ANET_APPROVED,
		   "transactionResponse without messages is still decided on responseCode");
	}
	ok(parse_txn_text("{\"transactionResponse\":{\"responseCode\":\"2\",\"errors\":[{\"errorCode\":\"2\","
					  "\"errorText\":\"bad \xff byte\"}]},\"messages\":{\"resultCode\":\"Ok\",\"message\":[]}}", &res) &&
	   strcmp(res.reason_text, "bad ? byte") == 0, "invalid UTF-8 in a reply text becomes '?'");

	is_str(anet_outcome_name(ANET_HELD_FOR_REVIEW), "held_for_review", "outcome name");
	ok(anet_reason_code_is_retryable(19) && anet_reason_code_is_retryable(63) &&
	   anet_reason_code_is_retryable(121) && anet_reason_code_is_retryable(261),
	   "retryable reasons include 19, 63, 121, 261");
	ok(!anet_reason_code_is_retryable(11) && !anet_reason_code_is_retryable(153) &&
	   !anet_reason_code_is_retryable(2) && !anet_reason_code_is_retryable(24),
	   "11, 153, 2, 24 are not retryable");
	ok(anet_message_code_is_retryable("E00001") && anet_message_code_is_retryable("E00053") &&
	   !anet_message_code_is_retryable("E00007") && !anet_message_code_is_retryable(NULL),
	   "E00001/E00053 retryable; E00007, NULL not");
	ok(anet_message_code_is_account_error("E00007") && anet_message_code_is_account_error("E00008") &&
	   anet_message_code_is_account_error("E00011") && anet_message_code_is_account_error("E00005"),
	   "E00005, E00007, E00008, E00011 are account errors");
	ok(!anet_message_code_is_account_error("E00003") && !anet_message_code_is_account_error("E00027") &&
	   !anet_message_code_is_account_error("E00001") && !anet_message_code_is_account_error("E00040") &&
	   !anet_message_code_is_account_error(NULL),
	   "E00003, E00027, E00001, E00040, NULL are not account errors");
	ok(anet_reason_code_is_account_error(13) && anet_reason_code_is_account_error(123) &&
	   !anet_reason_code_is_account_error(2) && !anet_reason_code_is_account_error(11) &&
	   !anet_reason_code_is_account_error(30) && !anet_reason_code_is_account_error(19),
	   "reasons 13 and 123 are account errors; 2, 11, 30 (stored as declined) and 19 are not");
}

/* ----------------------------------------------------------------
 * Replies: reporting
 * ----------------------------------------------------------------
 */

static void
test_reporting_replies(void)
{
	size_t		len;
	char	   *body;
	AnetTxnDetails d;
	AnetTxnList list;
	AnetBatchList batches;
	AnetReplyStatus st;
	int64_t		m;
	bool		r;

	printf("# getTransactionDetailsResponse\n");
	body = fixture("details_settled.json", &len);
	r = anet_parse_transaction_details_response(body, len, &d);
	ok(r && d.found && d.status.ok, "details: parsed and found");
	is_str(d.trans_id, "40000012345", "details: transId");
	is_str(d.transaction_status, "settledSuccessfully", "details: transactionStatus");
	ok(d.response_code == 1 && d.reason_code == 1, "details: numeric responseCode and reason");
	ok(strcmp(d.auth_amount, "1018.88") == 0 && anet_reply_decimal_to_minor(d.settle_amount, 2, &m) &&
	   m == 101888, "details: amounts as numbers keep their text, 101888 minor units");
	ok(strcmp(d.batch_id, "9900112") == 0 && strcmp(d.settlement_state, "settledSuccessfully") == 0,
	   "details: batch id and settlement state");
	ok(strcmp(d.invoice_number, "INV-77") == 0 && strcmp(d.submit_time_utc, "2026-01-15T16:30:49.39Z") == 0,
	   "details: invoice number and submit time");
	ok(strcmp(d.account_number, "XXXX4444") == 0 && strcmp(d.expiration_date, "XXXX") == 0 &&
	   strcmp(d.account_type, "MasterCard") == 0, "details: masked card as returned");
	ok(strcmp(d.customer_id, "cust-4") == 0 && strcmp(d.network_trans_id, "NTID777") == 0,
	   "details: customer id and networkTransId");
	ok(anet_classify_transaction_status(d.transaction_status) == ANET_STATUS_SETTLED, "details: classified settled");
	free(body);

	body = fixture("details_refund_pending.json", &len);
	r = anet_parse_transaction_details_response(body, len, &d);
	ok(r && d.found && strcmp(d.ref_trans_id, "40000012345") == 0 &&
	   strcmp(d.account_type, "eCheck") == 0 && strcmp(d.account_number, "XXXX6789") == 0,
	   "details: refund of a bank account, refTransId");
	ok(strcmp(d.settle_amount, "5.00") == 0 && d.batch_id[0] == '\0', "details: unsettled, no batch");
	free(body);

	body = fixture("details_not_found.json", &len);
	r = anet_parse_transaction_details_response(body, len, &d);
	ok(r && !d.found && !d.status.ok && strcmp(d.status.message_code, "E00040") == 0,
	   "details: E00040 parses, not found");
	free(body);
	body = fixture("wrapped_details.json", &len);
	r = anet_parse_transaction_details_response(body, len, &d);
	ok(r && d.found && strcmp(d.transaction_status, "voided") == 0,
	   "details: documentation-style root wrapper is looked through");
	free(body);
	ok(!anet_parse_transaction_details_response(S("{\"transaction\":{\"transId\":\"1\""), &d),
	   "details: truncated body is malformed");
	ok(!anet_parse_transaction_details_response(S("{\"messages\":{\"resultCode\":\"Ok\",\"message\":[]}}"), &d),
	   "details: Ok without a transaction is malformed");

	printf("# transaction lists\n");
	body = fixture("unsettled_list.json", &len);
	r = anet_parse_unsettled_transaction_list_response(body, len, &list);
	ok(r && list.status.ok && list.count == 3 && list.total_num_in_result_set == 3,
	   "unsettled: 3 transactions, totalNumInResultSet 3");
	if (list.count == 3)
	{
		ok(strcmp(list.items[0].trans_id, "40000012360") == 0 &&
		   strcmp(list.items[0].transaction_status, "capturedPendingSettlement") == 0 &&
		   strcmp(list.items[0].invoice_number, "INV-100") == 0 &&
		   strcmp(list.items[0].account_number, "XXXX0015") == 0 &&
		   strcmp(list.items[0].customer_profile_id, "1806660050") == 0,
		   "unsettled[0]: id, status, invoice, masked card, profile");
		ok(strcmp(list.items[0].settle_amount, "5") == 0 && strcmp(list.items[1].settle_amount, "12.50") == 0 &&
		   anet_reply_decimal_to_minor(list.items[1].settle_amount, 2, &m) && m == 1250,
		   "unsettled: settleAmount 5 and 12.50 (numbers) -> 1250");
		ok(strcmp(list.items[2].trans_id, "40000012362") == 0 &&
		   anet_classify_transaction_status(list.items[2].transaction_status) == ANET_STATUS_UNDER_REVIEW,
		   "unsettled[2]: numeric transId, FDSPendingReview under review");
	}
	else
	{
		ok(false, "unsettled[0]");
		ok(false, "unsettled amounts");
		ok(false, "unsettled[2]");
	}
	anet_txn_list_free(&list);
	anet_txn_list_free(&list);
	ok(list.items == NULL && list.count == 0, "list free is idempotent");
	free(body);

	body = fixture("unsettled_empty.json", &len);
	r = anet_parse_unsettled_transaction_list_response(body, len, &list);
	ok(r && list.status.ok && list.count == 0 && list.items == NULL &&
	   strcmp(list.status.message_code, "I00004") == 0 && list.total_num_in_result_set == 0,
	   "unsettled: I00004 No records found is an empty list");
	anet_txn_list_free(&list);
	free(body);

	body = fixture("txn_list_batch.json", &len);
	r = anet_parse_transaction_list_response(body, len, &list);
	ok(r && list.count == 1 && strcmp(list.items[0].settle_amount, "1018.88") == 0 &&
	   list.total_num_in_result_set == -1, "transaction list: single object instead of array");
	anet_txn_list_free(&list);
	free(body);
	ok(!anet_parse_transaction_list_response(S("{\"transactions\":[{\"transId\":\"1\"},7],"
											 "\"messages\":{\"resultCode\":\"Ok\",\"message\":[]}}"), &list) &&
	   list.items == NULL, "transaction list with a non-object item is malformed, nothing to free");

	printf("# settled batch list\n");
	body = fixture("settled_batches.json", &len);
	r = anet_parse_settled_batch_list_response(body, len, &batches);
	ok(r && batches.count == 2, "batches: two batches");
	if (batches.count == 2)
	{
		ok(strcmp(batches.items[0].batch_id, "9900112") == 0 && batches.items[0].n_statistics == 2 &&
		   strcmp(batches.items[0].statistics[0].charge_amount, "1018.88") == 0 &&
		   batches.items[0].statistics[0].charge_count == 1,
		   "batches[0]: id, statistics as numbers");
		ok(batches.items[0].statistics[1].decline_count == 3 &&
		   strcmp(batches.items[0].statistics[1].refund_amount, "5.00") == 0,
		   "batches[0]: statistics as strings");
		ok(batches.items[1].n_statistics == 0 && batches.items[1].statistics == NULL &&
		   strcmp(batches.items[1].settlement_state, "settlementError") == 0,
		   "batches[1]: no statistics, settlementError");
	}
	else
	{
		ok(false, "batches[0]");
		ok(false, "batches[0] strings");
		ok(false, "batches[1]");
	}
	anet_batch_list_free(&batches);
	free(body);

	printf("# reply status\n");
	ok(anet_parse_reply_status(S("\xef\xbb\xbf{\"messages\":{\"resultCode\":\"Ok\",\"message\":[{\"code\":\"I00001\","
							   "\"text\":\"Successful.\"}]}}"), &st) && st.ok &&
	   strcmp(st.message_code, "I00001") == 0, "authenticateTest reply with BOM: Ok I00001");
	body = fixture("req_e00007.json", &len);
	ok(anet_parse_reply_status(body, len, &st) && !st.ok && strcmp(st.message_code, "E00007") == 0,
	   "authenticateTest E00007: not ok");
	free(body);
	ok(!anet_parse_reply_status(S("{\"messages\":{\"resultCode\":\"Maybe\"}}"), &st),
	   "unknown resultCode is malformed");
}

static void
test_status_classes(void)
{
	static const struct
	{
		const char *status;
		AnetStatusClass cls;
	}			cases[] = {
		{"authorizedPendingCapture", ANET_STATUS_PENDING_CAPTURE},
		{"capturedPendingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
		{"refundPendingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
		{"settledSuccessfully", ANET_STATUS_SETTLED},
		{"refundSettledSuccessfully", ANET_STATUS_SETTLED},
		{"voided", ANET_STATUS_VOIDED},
		{"expired", ANET_STATUS_EXPIRED},
		{"declined", ANET_STATUS_DECLINED},
		{"failedReview", ANET_STATUS_DECLINED},
		{"generalError", ANET_STATUS_FAILED},
		{"communicationError", ANET_STATUS_FAILED},
		{"settlementError", ANET_STATUS_FAILED},
		{"FDSPendingReview", ANET_STATUS_UNDER_REVIEW},
		{"FDSAuthorizedPendingReview", ANET_STATUS_UNDER_REVIEW},
		{"underReview", ANET_STATUS_UNDER_REVIEW},
		{"chargeback", ANET_STATUS_RETURNED},
		{"approvedReview", ANET_STATUS_OTHER},
		{"SettledSuccessfully", ANET_STATUS_OTHER},
		{"somethingNew", ANET_STATUS_OTHER},
	};
	size_t		i;

	printf("# transaction status classes\n");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		AnetStatusClass got = anet_classify_transaction_status(cases[i].status);

		if (!ok(got == cases[i].cls, "status %s is %s", cases[i].status,
				anet_status_class_name(cases[i].cls)))
			printf("#   got: %s\n", anet_status_class_name(got));
	}
	ok(anet_classify_transaction_status(NULL) == ANET_STATUS_OTHER, "NULL status is other");
}

/* ----------------------------------------------------------------
 * Robustness and thread safety
 * ----------------------------------------------------------------
 */

/* Deterministic xorshift PRNG: the same mutations on every run. */
static uint32_t
next_rand(uint32_t *state)
{
	uint32_t	x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

/*
 * Feed every parser thousands of mutated fixtures (bytes flipped, cut,
 * duplicated).  The assertion is that nothing crashes (run it under ASan
 * to see memory errors) and that a malformed verdict never comes with an
 * outcome other than ANET_MALFORMED.
 */
static void
test_mutations(void)
{
	static const char *const names[] = {"txn_approved_bom.json", "txn_declined.json",
		"txn_duplicate_11.json", "details_settled.json", "unsettled_list.json",
		"settled_batches.json", "req_e00003.json"};
	static const char noise[] = "{}[]\",:0123456789.-etrufanl \xef\xbb\xbf\xff";
	uint32_t	seed = 0x2545F491;
	bool		consistent = true;
	int			runs = 0;
	size_t		f;

	printf("# robustness\n");
	for (f = 0; f < sizeof(names) / sizeof(names[0]); f++)
	{
		size_t		len;
		char	   *orig = fixture(names[f], &len);
		char	   *buf = malloc(len * 2 + 16);
		int			i;

		for (i = 0; i < 600 && len > 0; i++)
		{
			size_t		n = len;
			int			k;
			int			edits = 1 + (int) (next_rand(&seed) % 4);
			AnetTxnResult res;
			AnetTxnDetails d;
			AnetTxnList l;
			AnetBatchList b;
			AnetReplyStatus st;

			memcpy(buf, orig, len);
			for (k = 0; k < edits; k++)
			{
				size_t		pos = next_rand(&seed) % n;

				switch (next_rand(&seed) % 3)
				{
					case 0:
						buf[pos] = noise[next_rand(&seed) % (sizeof(noise) - 1)];
						break;
					case 1:
						n = pos + 1;
						break;
					default:
						if (n + 8 < len * 2)
						{
							memmove(buf + pos + 8, buf + pos, n - pos);
							n += 8;
						}
						break;
				}
			}
			if (!anet_parse_transaction_response(buf, n, &res) && res.outcome != ANET_MALFORMED)
				consistent = false;
			if (anet_parse_transaction_response(buf, n, &res) && res.outcome == ANET_MALFORMED)
				consistent = false;
			(void) anet_parse_transaction_details_response(buf, n, &d);
			(void) anet_parse_transaction_list_response(buf, n, &l);
			anet_txn_list_free(&l);
			(void) anet_parse_settled_batch_list_response(buf, n, &b);
			anet_batch_list_free(&b);
			(void) anet_parse_reply_status(buf, n, &st);
			runs++;
		}
		free(buf);
		free(orig);
	}
	ok(consistent && runs > 4000, "%d mutated bodies: no crash, verdict and outcome agree", runs);
}

/* Work for one thread: build and parse, compare with the expected text. */
typedef struct ThreadJob
{
	const char *expect_json;
	const char *reply;
	bool		good;
} ThreadJob;

static void *
thread_main(void *arg)
{
	ThreadJob  *job = arg;
	int			i;

	job->good = true;
	for (i = 0; i < 300; i++)
	{
		AnetTxnRequest r = full_card_request("4111111111111111", "123");
		char	   *json = anet_build_transaction_request(&creds, &r, true, NULL);
		AnetTxnResult res;

		if (json == NULL || strcmp(json, job->expect_json) != 0)
			job->good = false;
		anet_free(json);
		if (!anet_parse_transaction_response(job->reply, strlen(job->reply), &res) ||
			res.outcome != ANET_APPROVED || strcmp(res.trans_id, "40000012345") != 0)
			job->good = false;
	}
	return NULL;
}

/* Builders and parsers have no shared state: run them on four threads. */
static void
test_threads(void)
{
	AnetTxnRequest r = full_card_request("4111111111111111", "123");
	char	   *expect = anet_build_transaction_request(&creds, &r, true, NULL);
	size_t		len;
	char	   *reply = fixture("txn_approved_bom.json", &len);
	pthread_t	th[4];
	ThreadJob	jobs[4];
	bool		all = expect != NULL;
	int			i;

	for (i = 0; i < 4; i++)
	{
		jobs[i].expect_json = expect ? expect : "";
		jobs[i].reply = reply;
		jobs[i].good = false;
		if (pthread_create(&th[i], NULL, thread_main, &jobs[i]) != 0)
			all = false;
	}
	for (i = 0; i < 4; i++)
	{
		pthread_join(th[i], NULL);
		all = all && jobs[i].good;
	}
	ok(all, "four threads building and parsing concurrently agree with the single-thread result");
	anet_free(expect);
	free(reply);
}

/* all len bytes at p are zero */
static bool
all_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != '\0')
			return false;
	return true;
}

/* json_scrub wipes every string of a tree, short (inline) and long ones. */
static void
test_scrub(void)
{
	json_object *root = json_tokener_parse(
		"{\"cardNumber\": \"4111111111111111\", \"n\": 5,"
		" \"list\": [\"123\", {\"dataValue\": \"eyJjb2RlIjoiNTBfMl8wNjAwMDUzMDI5NDgxNjIzNTU2NDkwMDAwMDAwMDAwMDAwMDAwMDAw\"}]}");
	json_object *list;
	json_object *v;
	const char *s[3];
	size_t		len[3];
	bool		wiped = true;

	if (!ok(root != NULL, "scrub: the test tree parses"))
		return;
	json_object_object_get_ex(root, "cardNumber", &v);
	s[0] = json_object_get_string(v);
	len[0] = strlen(s[0]);
	json_object_object_get_ex(root, "list", &list);
	s[1] = json_object_get_string(json_object_array_get_idx(list, 0));
	len[1] = strlen(s[1]);
	json_object_object_get_ex(json_object_array_get_idx(list, 1), "dataValue", &v);
	s[2] = json_object_get_string(v);
	len[2] = strlen(s[2]);
	json_scrub(root);
	for (int i = 0; i < 3; i++)
		wiped = wiped && all_zero(s[i], len[i]);
	ok(wiped, "scrub: every string of the tree is zeroed, nested and long ones too");
	json_object_object_get_ex(root, "n", &v);
	ok(json_object_get_int(v) == 5, "scrub: numbers are left alone");
	json_object_put(root);
}

/*
 * json_serialize_secret writes what json-c writes (plain, '/' unescaped):
 * escapes, control characters, nesting, empty containers, ints, booleans
 * and null; doubles and unsigned values beyond int64 as json-c itself.
 */
static void
test_serialize_secret(void)
{
	json_object *root = json_tokener_parse(
		"{\"a\": \"plain / \\\"quoted\\\" back\\\\slash\", \"ctl\": \"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\","
		" \"utf8\": \"caf\u00e9\", \"list\": [\"x\", {\"k\": []}, {}, 12, -7, true, false, null],"
		" \"long\": \"" "0123456789012345678901234567890123456789012345678901234567890123456789"
		"0123456789012345678901234567890123456789012345678901234567890123456789" "\"}");
	json_object *numbers = json_object_new_array();
	const char *expected;
	char	   *got;

	if (!ok(root != NULL, "serialize: the test tree parses"))
		return;
	expected = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	got = json_serialize_secret(root);
	ok(got != NULL && strcmp(got, expected) == 0, "serialize: the same text as json-c's plain form");
	free(got);
	/* scalars json-c writes itself: doubles, an unsigned beyond int64 */
	json_object_array_add(numbers, json_object_new_double(1.5));
	json_object_array_add(numbers, json_object_new_double(-0.1));
	json_object_array_add(numbers, json_object_new_double(1e300));
	json_object_array_add(numbers, json_object_new_uint64(UINT64_MAX));
	json_object_array_add(numbers, json_object_new_int64(INT64_MIN));
	json_object_array_add(numbers, json_object_new_string("4111111111111111"));
	expected = json_object_to_json_string_ext(numbers, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	got = json_serialize_secret(numbers);
	ok(got != NULL && strcmp(got, expected) == 0, "serialize: doubles and large unsigned numbers as json-c writes them");
	if (got == NULL || strcmp(got, expected) != 0)
		printf("# expected %s\n# got      %s\n", expected, got ? got : "(null)");
	free(got);
	json_object_put(numbers);
	json_object_put(root);
}

/* ----------------------------------------------------------------
 * Card on file and customer profiles (CIM)
 * ----------------------------------------------------------------
 */

static void
test_card_on_file(void)
{
	AnetTxnRequest r;
	char	   *json;
	char	   *err = NULL;
	char		v[256];

	printf("# card-on-file fields\n");
	memset(&r, 0, sizeof(r));
	r.type = ANET_AUTH_CAPTURE;
	r.amount = "9.99";
	r.profile_customer_id = "500001";
	r.profile_payment_id = "700001";
	r.invoice_number = "INV-1";
	r.duplicate_window = 28800;
	r.is_subsequent_auth = true;
	r.original_network_trans_id = "0STSMT7WLO5D80U0KJR4Z9A";
	r.subsequent_auth_reason = "resubmission";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	xsd_ordered(json, "a merchant-initiated charge of a profile is in XSD order");
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,profile,order,transactionSettings,processingOptions,subsequentAuthInformation",
			 "processingOptions and subsequentAuthInformation follow transactionSettings");
	keys_are(json, "createTransactionRequest.transactionRequest.processingOptions", "isSubsequentAuth",
			 "only the flags that are true are sent");
	value_at(json, "createTransactionRequest.transactionRequest.subsequentAuthInformation.originalNetworkTransId", v, sizeof(v));
	is_str(v, "0STSMT7WLO5D80U0KJR4Z9A", "the original network transaction id is sent");
	keys_are(json, "createTransactionRequest.transactionRequest.subsequentAuthInformation",
			 "originalNetworkTransId,reason", "subsequentAuthInformation: originalNetworkTransId, reason");
	anet_free(json);

	r.is_subsequent_auth = false;
	r.is_first_recurring_payment = true;
	r.is_stored_credentials = true;
	r.original_network_trans_id = NULL;
	r.subsequent_auth_reason = NULL;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	keys_are(json, "createTransactionRequest.transactionRequest.processingOptions",
			 "isFirstRecurringPayment,isStoredCredentials", "processingOptions members in XSD order");
	ok(json && strstr(json, "subsequentAuthInformation") == NULL, "no subsequentAuthInformation without its fields");
	anet_free(json);

	/* a subscription's first charge: recurring, the first of its series */
	r.is_stored_credentials = false;
	r.recurring_billing = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,profile,order,transactionSettings,processingOptions",
			 "a first recurring charge: transactionSettings, then processingOptions, no subsequentAuthInformation");
	keys_are(json, "createTransactionRequest.transactionRequest.processingOptions",
			 "isFirstRecurringPayment", "a first recurring charge: isFirstRecurringPayment alone");
	ok(json && strstr(json, "\"recurringBilling\",\"settingValue\":\"true\"") != NULL,
	   "a first recurring charge sends recurringBilling=true");
	anet_free(json);
	r.is_subsequent_auth = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "isFirstRecurringPayment is not sent with isSubsequentAuth"),
	   "a first recurring payment that claims to be a subsequent authorization is refused");
	anet_free(err);
	err = NULL;
	r.is_subsequent_auth = false;
	r.original_network_trans_id = "0STSMT7WLO5D80U0KJR4Z9A";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "originalNetworkTransId"),
	   "a first recurring payment naming an original network transaction is refused");
	anet_free(err);
	err = NULL;
	r.is_first_recurring_payment = false;
	r.is_subsequent_auth = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	keys_are(json, "createTransactionRequest.transactionRequest",
			 "transactionType,amount,profile,order,transactionSettings,processingOptions,subsequentAuthInformation",
			 "a renewal: recurringBilling, isSubsequentAuth and the original network transaction id");
	anet_free(json);
	r.is_subsequent_auth = false;
	r.recurring_billing = false;
	r.is_first_recurring_payment = true;
	r.is_stored_credentials = true;
	r.original_network_trans_id = "bad-id!";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "originalNetworkTransId must contain only letters, digits and spaces"),
	   "a network transaction id the schema refuses is refused");
	anet_free(err);
	r.original_network_trans_id = NULL;
	r.subsequent_auth_reason = "renewal";
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "reason must be"), "an unknown subsequent auth reason is refused");
	anet_free(err);
	memset(&r, 0, sizeof(r));
	r.type = ANET_VOID;
	r.ref_trans_id = "123";
	r.is_subsequent_auth = true;
	json = anet_build_transaction_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "card-on-file fields are only sent"), "card-on-file fields are refused on a void");
	anet_free(err);
}

static void
test_cim_requests(void)
{
	AnetPaymentProfileRequest r;
	char	   *json;
	char	   *err = NULL;
	char		v[256];

	printf("# customer profile requests\n");
	memset(&r, 0, sizeof(r));
	r.ref_id = "ref-1";
	r.merchant_customer_id = "C0123456789";
	r.description = "Ada Lovelace";
	r.email = "ada@example.com";
	r.bill_first_name = "Ada";
	r.bill_zip = "46201";
	r.card_number = "4111111111111111";
	r.card_expiration = "2030-12";
	r.card_code = "123";
	r.default_payment_profile = true;
	r.validation_mode = "liveMode";
	json = anet_build_payment_profile_request(&creds, &r, false, &err);
	keys_are(json, "createCustomerProfileRequest", "merchantAuthentication,refId,profile,validationMode",
			 "createCustomerProfileRequest: merchantAuthentication, refId, profile, validationMode");
	keys_are(json, "createCustomerProfileRequest.profile", "merchantCustomerId,description,email,paymentProfiles",
			 "profile: merchantCustomerId, description, email, paymentProfiles (customerProfileType order)");
	keys_are(json, "createCustomerProfileRequest.profile.paymentProfiles", "billTo,payment,defaultPaymentProfile",
			 "paymentProfiles: billTo, payment, defaultPaymentProfile (customerPaymentProfileType order)");
	keys_are(json, "createCustomerProfileRequest.profile.paymentProfiles.payment.creditCard",
			 "cardNumber,expirationDate,cardCode", "creditCard: cardNumber, expirationDate, cardCode");
	value_at(json, "createCustomerProfileRequest.profile.paymentProfiles.payment.creditCard.cardNumber", v, sizeof(v));
	is_str(v, "4111111111111111", "the real request carries the card");
	anet_free(json);
	json = anet_build_payment_profile_request(&creds, &r, true, &err);
	ok(json && strstr(json, "4111111111111111") == NULL && strstr(json, "\"cardNumber\":\"XXXX1111\"") &&
	   strstr(json, "\"cardCode\":\"XXX\"") && strstr(json, "SecretKey") == NULL,
	   "the masked profile request hides card number, code and key");
	anet_free(json);

	r.customer_profile_id = "527262";
	r.card_number = r.card_expiration = r.card_code = NULL;
	r.opaque_descriptor = "COMMON.ACCEPT.INAPP.PAYMENT";
	r.opaque_value = "nonce-value";
	r.validation_mode = "testMode";
	json = anet_build_payment_profile_request(&creds, &r, false, &err);
	keys_are(json, "createCustomerPaymentProfileRequest",
			 "merchantAuthentication,refId,customerProfileId,paymentProfile,validationMode",
			 "createCustomerPaymentProfileRequest for an existing profile, in XSD order");
	keys_are(json, "createCustomerPaymentProfileRequest.paymentProfile.payment.opaqueData",
			 "dataDescriptor,dataValue", "opaque data in a payment profile");
	anet_free(json);
	json = anet_build_payment_profile_request(&creds, &r, true, &err);
	ok(json && strstr(json, "nonce-value") == NULL, "the masked form hides the nonce");
	anet_free(json);

	r.validation_mode = "fastMode";
	json = anet_build_payment_profile_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "validationMode must be"), "an unknown validation mode is refused");
	anet_free(err);
	r.validation_mode = NULL;
	r.card_number = "4111111111111111";
	r.card_expiration = "2030-12";
	json = anet_build_payment_profile_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "exactly one of card and opaque data"), "card and opaque data together are refused");
	anet_free(err);
	r.opaque_descriptor = r.opaque_value = NULL;
	r.customer_profile_id = NULL;
	r.merchant_customer_id = "123456789012345678901";
	json = anet_build_payment_profile_request(&creds, &r, false, &err);
	ok(json == NULL && err && strstr(err, "merchantCustomerId is longer than 20"), "a merchantCustomerId over 20 characters is refused");
	anet_free(err);

	json = anet_build_profile_from_transaction_request(&creds, "r2", "60000001", "C1", "Ada", "ada@example.com", NULL, false, &err);
	keys_are(json, "createCustomerProfileFromTransactionRequest", "merchantAuthentication,refId,transId,customer",
			 "createCustomerProfileFromTransactionRequest: transId, then customer");
	keys_are(json, "createCustomerProfileFromTransactionRequest.customer", "merchantCustomerId,description,email",
			 "customer: merchantCustomerId, description, email");
	anet_free(json);
	json = anet_build_profile_from_transaction_request(&creds, NULL, "60000001", "C1", NULL, NULL, "527262", false, &err);
	keys_are(json, "createCustomerProfileFromTransactionRequest", "merchantAuthentication,transId,customerProfileId",
			 "into an existing profile: transId, customerProfileId");
	anet_free(json);

	json = anet_build_get_customer_profile_request(&creds, NULL, NULL, "C1", false, &err);
	keys_are(json, "getCustomerProfileRequest", "merchantAuthentication,merchantCustomerId",
			 "getCustomerProfileRequest by merchantCustomerId");
	anet_free(json);
	json = anet_build_get_customer_profile_request(&creds, NULL, "527262", "C1", false, &err);
	ok(json == NULL && err && strstr(err, "exactly one of"), "getCustomerProfile takes one key");
	anet_free(err);

	json = anet_build_delete_profile_request(&creds, "r3", "527262", "87", false, &err);
	keys_are(json, "deleteCustomerPaymentProfileRequest",
			 "merchantAuthentication,refId,customerProfileId,customerPaymentProfileId",
			 "deleteCustomerPaymentProfileRequest in XSD order");
	anet_free(json);
	json = anet_build_delete_profile_request(&creds, NULL, "527262", NULL, false, &err);
	keys_are(json, "deleteCustomerProfileRequest", "merchantAuthentication,customerProfileId",
			 "deleteCustomerProfileRequest in XSD order");
	anet_free(json);
	json = anet_build_delete_profile_request(&creds, NULL, "52x", NULL, false, &err);
	ok(json == NULL && err && strstr(err, "customerProfileId must contain only digits"), "a profile id must be digits");
	anet_free(err);
}

static void
test_cim_replies(void)
{
	AnetProfileResult r;
	AnetCustomerProfile p;
	size_t		len;
	char	   *body;

	printf("# customer profile replies\n");
	body = fixture("cim_create_profile.json", &len);
	ok(anet_parse_profile_response(body, len, &r), "createCustomerProfile reply parses");
	is_str(r.customer_profile_id, "527262", "customerProfileId");
	is_str(r.payment_profile_id, "86", "the first of customerPaymentProfileIdList");
	is_int(r.validation_response_code, 1, "validation approved (field 1)");
	is_str(r.account_number, "XXXX1111", "masked card (field 51)");
	is_str(r.account_type, "Visa", "card type (field 52)");
	is_str(r.network_trans_id, "0STSMT7WLO5D80U0KJR4Z9A", "network transaction id (field 59)");
	free(body);

	body = fixture("cim_create_payment_profile.json", &len);
	ok(anet_parse_profile_response(body, len, &r) && strcmp(r.payment_profile_id, "87") == 0 &&
	   strcmp(r.network_trans_id, "0TN1VE648DFCJSHQ81GZH9F") == 0,
	   "createCustomerPaymentProfile reply: customerPaymentProfileId and the validation's network id");
	free(body);

	body = fixture("cim_profile_from_txn.json", &len);
	ok(anet_parse_profile_response(body, len, &r) && strcmp(r.customer_profile_id, "190179") == 0 &&
	   strcmp(r.payment_profile_id, "157500") == 0 && r.validation_response_code == 0,
	   "createCustomerProfileFromTransaction reply (createCustomerProfileResponse shape), no validation");
	free(body);

	body = fixture("cim_duplicate_profile.json", &len);
	ok(anet_parse_profile_response(body, len, &r) && !r.status.ok &&
	   strcmp(r.status.message_code, "E00039") == 0, "a duplicate profile (E00039, with a BOM) parses");
	is_str(r.duplicate_id, "527262", "the existing profile's id is read from the text");
	free(body);

	body = fixture("cim_duplicate_payment_profile.json", &len);
	ok(anet_parse_profile_response(body, len, &r) && r.duplicate_id[0] == '\0' &&
	   strcmp(r.payment_profile_id, "87") == 0, "a duplicate payment profile names the existing one in its members");
	free(body);

	body = fixture("cim_validation_declined.json", &len);
	ok(anet_parse_profile_response(body, len, &r) && strcmp(r.status.message_code, "E00027") == 0 &&
	   r.validation_response_code == 2 && r.validation_reason_code == 2 &&
	   strcmp(r.validation_reason_text, "This transaction has been declined.") == 0,
	   "a declined liveMode validation: response 2, reason 2 and its text");
	free(body);

	ok(!anet_parse_profile_response("<html>", 6, &r), "an HTML page is not a profile reply");

	body = fixture("cim_get_profile.json", &len);
	ok(anet_parse_customer_profile_response(body, len, &p) && p.found, "getCustomerProfile reply parses");
	is_str(p.customer_profile_id, "527262", "its customerProfileId");
	is_str(p.merchant_customer_id, "MerchantCustID", "its merchantCustomerId");
	is_int((long long) p.count, 2, "two payment profiles");
	ok(p.count == 2 && strcmp(p.items[0].payment_profile_id, "87") == 0 &&
	   strcmp(p.items[0].card_number, "XXXX1111") == 0 && strcmp(p.items[0].card_type, "Visa") == 0 &&
	   strcmp(p.items[0].original_network_trans_id, "0TN1VE648DFCJSHQ81GZH9F") == 0,
	   "each with its id, masked card, card type and originalNetworkTransId");
	anet_customer_profile_free(&p);
	free(body);

	body = fixture("cim_not_found.json", &len);
	ok(anet_parse_customer_profile_response(body, len, &p) && !p.found &&
	   strcmp(p.status.message_code, "E00040") == 0, "an unknown profile (E00040) is not found");
	anet_customer_profile_free(&p);
	free(body);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		fixture_dir = argv[1];

	test_amounts();
	test_transaction_requests();
	test_masking();
	test_other_requests();
	test_card_on_file();
	test_cim_requests();
	test_transaction_replies();
	test_cim_replies();
	test_reporting_replies();
	test_status_classes();
	test_mutations();
	test_threads();
	test_scrub();
	test_serialize_secret();

	printf("1..%d\n", tap_n);
	if (tap_failed)
		printf("# %d of %d failed\n", tap_failed, tap_n);
	return tap_failed ? 1 : 0;
}
