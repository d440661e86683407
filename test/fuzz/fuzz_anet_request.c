/*-------------------------------------------------------------------------
 *
 * fuzz_anet_request.c
 *	  libFuzzer target: the Authorize.Net request builders of src/anet/
 *	  with arbitrary field values, checked against the simulator's XSD
 *	  validator (test/anet-sim/validate.c).
 *
 * Input: one byte choosing the call, one byte of flags, then the field
 * values as NUL-separated strings (an empty string is NULL).  Checks,
 * besides the sanitizers:
 *	 - a builder returns a request or an error message, never both;
 *	 - the request is one strict JSON object, and the XSD validator of
 *	   the simulator accepts it (key order, lengths, patterns): the
 *	   builders' promise that what they build cannot be an E00003;
 *	 - the masked form (for logs; "XXX" for a card code is no valid XSD
 *	   value, so only JSON is checked) is built exactly when the request
 *	   is, and holds neither the card number, the card code, the
 *	   transaction key nor the opaque data value;
 *	 - the error message holds none of those either.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "anet_protocol.h"
#include "fuzz_check.h"
#include "validate.h"

#define NFIELDS 32

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	validate_init();
	return 0;
}

/*
 * Does the value look like a secret: 8 or more letters, digits and
 * base64 signs, one digit at least (card numbers, transaction keys,
 * opaque data)?  Other values may match the fixed texts: "12.34" is the
 * example of an error message, "merchantAuthentication" a field name.
 */
static bool
secret_like(const char *s)
{
	bool		digit = false;
	size_t		n = 0;

	for (; *s; s++, n++)
	{
		if (*s >= '0' && *s <= '9')
			digit = true;
		else if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
				   *s == '+' || *s == '/' || *s == '='))
			return false;
	}
	return digit && n >= 8;
}

/*
 * Is a secret-like value inside text, though no other field holds it (a
 * description may quote anything)?  Says so on stderr.
 */
static bool
leaks(const char *text, const char *secret, const char *const *others, int nothers)
{
	if (text == NULL || secret == NULL || !secret_like(secret) ||
		strstr(text, secret) == NULL)
		return false;
	for (int i = 0; i < nothers; i++)
		if (others[i] != NULL && others[i] != secret && strstr(others[i], secret) != NULL)
			return false;
	fprintf(stderr, "\"%s\" found in: %s\n", secret, text);
	return true;
}

static void
check_no_secrets(const char *text, const AnetCredentials *creds,
				 const AnetTxnRequest *r, const char *const *input, int ninput)
{
	const char *fields[NFIELDS + 2];
	int			nfields = 0;

	/* every value given, the credentials as used included */
	for (int i = 0; i < ninput && i < NFIELDS; i++)
		fields[nfields++] = input[i];
	fields[nfields++] = creds->login_id;
	fields[nfields++] = creds->transaction_key;
	FUZZ_ASSERT(!leaks(text, creds->transaction_key, fields, nfields));
	if (r != NULL)
	{
		/* a refund's "XXXX1111" is masked already: only full numbers */
		if (r->card_number != NULL &&
			strspn(r->card_number + strspn(r->card_number, "X"), "0123456789") > 4)
			FUZZ_ASSERT(!leaks(text, r->card_number, fields, nfields));
		FUZZ_ASSERT(!leaks(text, r->opaque_value, fields, nfields));
	}
}

/*
 * No string value of a JSON tree holds a secret (the values as decoded:
 * in the text, "\u0013" + "46..." would look like "...346...").
 */
static void
check_json_no_secrets(json_object *v, const char *key, const AnetCredentials *creds,
					  const AnetTxnRequest *r, const char *const *input, int ninput)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
			check_no_secrets(json_object_get_string(v), creds, r, input, ninput);
			/* a card code of any length is masked */
			if (key != NULL && strcmp(key, "cardCode") == 0)
				FUZZ_ASSERT(strcmp(json_object_get_string(v), "XXX") == 0);
			break;
		case json_type_object:
			{
				json_object_object_foreach(v, k, val)
					check_json_no_secrets(val, k, creds, r, input, ninput);
				break;
			}
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
				check_json_no_secrets(json_object_array_get_idx(v, i), key, creds, r, input, ninput);
			break;
		default:
			break;
	}
}

/* Parse a request built: one strict JSON object. */
static json_object *
parse_request(const char *json)
{
	json_tokener *tok = json_tokener_new();
	json_object *doc;

	FUZZ_ASSERT(tok != NULL);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	doc = json_tokener_parse_ex(tok, json, (int) strlen(json));
	FUZZ_ASSERT(doc != NULL && json_tokener_get_error(tok) == json_tokener_success);
	FUZZ_ASSERT(json_tokener_get_parse_end(tok) == strlen(json));
	FUZZ_ASSERT(json_object_is_type(doc, json_type_object));
	json_tokener_free(tok);
	return doc;
}

/* The masked form: JSON with no secret in any value. */
static void
check_masked(const char *json, const AnetCredentials *creds,
			 const AnetTxnRequest *r, const char *const *input, int ninput)
{
	json_object *doc = parse_request(json);

	check_json_no_secrets(doc, NULL, creds, r, input, ninput);
	json_object_put(doc);
}

/* The request is one JSON object that the simulator's validator accepts. */
static void
check_request(const char *json)
{
	json_object *doc = parse_request(json);
	const char *method;
	json_object *body;
	char		msg[4096];
	ValidateResult vr;

	vr = validate_request(doc, &method, &body, msg, sizeof(msg));
	if (vr != VALID_OK)
	{
		fprintf(stderr, "built request fails XSD validation: %s\n%s\n", msg, json);
		abort();
	}
	json_object_put(doc);
}

/* Run one builder twice (plain, masked) and check both results. */
#define BUILD_AND_CHECK(call_plain, call_masked, creds, req) \
	do { \
		char	   *err1 = NULL, *err2 = NULL; \
		char	   *plain = (call_plain); \
		char	   *masked = (call_masked); \
		FUZZ_ASSERT((plain == NULL) == (masked == NULL)); \
		if (plain != NULL) \
		{ \
			FUZZ_ASSERT(err1 == NULL); \
			check_request(plain); \
			check_masked(masked, (creds), (req), f, NFIELDS); \
		} \
		else \
			check_no_secrets(err1, (creds), (req), f, NFIELDS); \
		anet_free(plain); \
		anet_free(masked); \
		anet_free(err1); \
		anet_free(err2); \
	} while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf;
	const char *f[NFIELDS] = {0};
	int			nf = 0;
	uint8_t		call,
				flags;
	AnetCredentials creds;
	AnetTxnRequest r;
	AnetListOptions lo;
	int			k = 0;

	if (size < 2)
		return 0;
	call = data[0];
	flags = data[1];
	buf = malloc(size - 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data + 2, size - 2);
	buf[size - 2] = '\0';
	for (size_t i = 0, start = 0; i <= size - 2 && nf < NFIELDS; i++)
		if (buf[i] == '\0')
		{
			f[nf++] = buf[start] != '\0' ? buf + start : NULL;
			start = i + 1;
		}

	/* credentials first: valid ones unless the input gives others */
	creds.login_id = f[k] ? f[k] : "5KP3u95bQpv";
	k++;
	creds.transaction_key = f[k] ? f[k] : "346HZ32z3fP4hTG2";
	k++;

	memset(&r, 0, sizeof(r));
	r.type = (AnetTxnType) ((call >> 3) % 6);
	r.ref_id = f[k++];
	r.amount = f[k++];
	r.currency_code = f[k++];
	r.card_number = f[k++];
	r.card_expiration = f[k++];
	r.card_code = f[k++];
	r.opaque_descriptor = f[k++];
	r.opaque_value = f[k++];
	r.profile_customer_id = f[k++];
	r.profile_payment_id = f[k++];
	r.auth_code = f[k++];
	r.ref_trans_id = f[k++];
	r.invoice_number = f[k++];
	r.description = f[k++];
	r.customer_id = f[k++];
	r.customer_email = f[k++];
	r.bill_first_name = f[k++];
	r.bill_last_name = f[k++];
	r.bill_company = f[k++];
	r.bill_address = f[k++];
	r.bill_city = f[k++];
	r.bill_state = f[k++];
	r.bill_zip = f[k++];
	r.bill_country = f[k++];
	r.customer_ip = f[k++];
	r.duplicate_window = (flags & 0x0f) == 0x0f ? -1 : (flags & 0x0f) * 2000;
	r.allow_partial_auth = flags & 0x10;
	r.recurring_billing = flags & 0x20;
	r.test_request = flags & 0x40;

	memset(&lo, 0, sizeof(lo));
	lo.order_by = (flags & 0x80) ? "submitTimeUTC" : ((flags & 1) ? "id" : NULL);
	lo.order_descending = flags & 2;
	lo.limit = (call & 4) ? 1 + (flags * 7) % 1000 : 0;
	lo.offset = (call & 4) ? 1 + flags : 0;

	switch (call & 7)
	{
		case 0:
		case 4:
			BUILD_AND_CHECK(anet_build_transaction_request(&creds, &r, false, &err1),
							anet_build_transaction_request(&creds, &r, true, &err2),
							&creds, &r);
			break;
		case 1:
			BUILD_AND_CHECK(anet_build_authenticate_test_request(&creds, r.ref_id, false, &err1),
							anet_build_authenticate_test_request(&creds, r.ref_id, true, &err2),
							&creds, NULL);
			break;
		case 2:
			BUILD_AND_CHECK(anet_build_get_transaction_details_request(&creds, r.ref_id, r.ref_trans_id, false, &err1),
							anet_build_get_transaction_details_request(&creds, r.ref_id, r.ref_trans_id, true, &err2),
							&creds, NULL);
			break;
		case 3:
			BUILD_AND_CHECK(anet_build_get_unsettled_transaction_list_request(&creds, r.ref_id, r.description,
																			  (call & 8) ? &lo : NULL, false, &err1),
							anet_build_get_unsettled_transaction_list_request(&creds, r.ref_id, r.description,
																			  (call & 8) ? &lo : NULL, true, &err2),
							&creds, NULL);
			break;
		case 5:
			BUILD_AND_CHECK(anet_build_get_transaction_list_request(&creds, r.ref_id, r.ref_trans_id,
																	(call & 8) ? &lo : NULL, false, &err1),
							anet_build_get_transaction_list_request(&creds, r.ref_id, r.ref_trans_id,
																	(call & 8) ? &lo : NULL, true, &err2),
							&creds, NULL);
			break;
		default:
			BUILD_AND_CHECK(anet_build_get_settled_batch_list_request(&creds, r.ref_id, flags & 4,
																	  r.invoice_number, r.description, false, &err1),
							anet_build_get_settled_batch_list_request(&creds, r.ref_id, flags & 4,
																	  r.invoice_number, r.description, true, &err2),
							&creds, NULL);
			break;
	}
	(void) anet_txn_type_name(r.type);
	free(buf);
	return 0;
}
