/*-------------------------------------------------------------------------
 *
 * anet_request.c
 *	  Build Authorize.Net JSON requests, in XSD key order, and their masked
 *	  log form.
 *
 * The JSON API is translated to XML and validated against the schema, so
 * keys must come in xs:sequence order (anything else is an E00003).  json-c
 * serializes object members in insertion order, so each builder inserts
 * keys exactly in the schema's order; the unit test
 * (src/anet/tests/anet_protocol_test.c) writes those orders out and checks
 * the result against them.
 *
 * Every value is validated before anything is built (lengths as the XSD
 * counts them, in characters; character sets where the XSD or the gateway
 * restricts them), so a request the gateway would reject for its shape is
 * refused here with a message naming the field.  Messages never contain a
 * value: a card number typed into the wrong field must not reach a log.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "anet_fields.h"
#include "anet_protocol.h"
#include "json_scrub.h"

/* Per-call state: no globals, so builders are thread-safe. */
typedef struct BuildCtx
{
	bool		masked;
	char		err[256];
} BuildCtx;

/* What characters a field may hold, beyond being valid UTF-8. */
typedef enum Charset
{
	CS_ANY,						/* any text */
	CS_DIGITS,					/* 0-9 (numericString ids) */
	CS_DECIMAL,					/* digits [ '.' digits ] */
	CS_CARD,					/* digits */
	CS_CARD_REFUND,				/* X* digits: last four may be prefixed */
	CS_EXPIRY,					/* digits, '-', '/', or "XXXX" */
	CS_CVV,						/* digits */
	CS_ALPHA,					/* A-Z a-z */
	CS_ALNUM_SPACE,				/* A-Z a-z 0-9 and space
								 * (alphaNumericSpaceString) */
	CS_DATETIME					/* xs:dateTime */
} Charset;

#define NO_MAX SIZE_MAX

static const char *const masked_key = "XXXXXXXX";
static const char *const masked_cvv = "XXX";
static const char *const masked_expiry = "XXXX";
static const char *const masked_opaque = "XXXX";

static bool fail(BuildCtx *ctx, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* Record why building failed; always returns false for tail calls. */
static bool
fail(BuildCtx *ctx, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	return false;
}

/* Treat "" like NULL: optional fields are omitted either way. */
static const char *
opt(const char *s)
{
	return (s != NULL && s[0] != '\0') ? s : NULL;
}

/* Is s all characters of [lo, hi] (ASCII) and non-empty? */
static bool
all_in(const char *s, char lo, char hi)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < lo || *s > hi)
			return false;
	return true;
}

/* Is s exactly n ASCII digits? */
static bool
n_digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * xs:dateTime as the gateway takes it: YYYY-MM-DDTHH:MM:SS, optional
 * fraction, optional "Z" or +HH:MM / -HH:MM.
 */
static bool
is_datetime(const char *s)
{
	const char *p = s;

	if (!n_digits(p, 4) || p[4] != '-' || !n_digits(p + 5, 2) || p[7] != '-' ||
		!n_digits(p + 8, 2) || p[10] != 'T' || !n_digits(p + 11, 2) ||
		p[13] != ':' || !n_digits(p + 14, 2) || p[16] != ':' ||
		!n_digits(p + 17, 2))
		return false;
	p += 19;
	if (*p == '.')
	{
		p++;
		if (!n_digits(p, 1))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		if (!n_digits(p + 1, 2) || p[3] != ':' || !n_digits(p + 4, 2))
			return false;
		p += 6;
	}
	return *p == '\0';
}

/* Does s match the character set of its field? */
static bool
charset_ok(const char *s, Charset cs)
{
	const char *p;

	switch (cs)
	{
		case CS_ANY:
			return true;
		case CS_DIGITS:
		case CS_CARD:
		case CS_CVV:
			return all_in(s, '0', '9');
		case CS_CARD_REFUND:
			for (p = s; *p == 'X'; p++)
				;
			return all_in(p, '0', '9');
		case CS_EXPIRY:
			if (strcmp(s, "XXXX") == 0)
				return true;
			for (p = s; *p; p++)
				if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == '/'))
					return false;
			return true;
		case CS_DECIMAL:
			for (p = s; *p >= '0' && *p <= '9'; p++)
				;
			if (p == s)
				return false;
			if (*p == '.')
			{
				const char *f = ++p;

				for (; *p >= '0' && *p <= '9'; p++)
					;
				if (p == f)
					return false;
			}
			return *p == '\0';
		case CS_ALPHA:
			for (p = s; *p; p++)
				if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
					return false;
			return true;
		case CS_ALNUM_SPACE:
			for (p = s; *p; p++)
				if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
					  (*p >= '0' && *p <= '9') || *p == ' '))
					return false;
			return true;
		case CS_DATETIME:
			return is_datetime(s);
	}
	return false;
}

/*
 * Validate one optional field: valid UTF-8, minc..maxc characters, the
 * right characters.  NULL passes (the caller checks presence).  The
 * message names the field by its JSON path, never its value.
 */
static bool
check_field(BuildCtx *ctx, const char *field, const char *value,
			size_t minc, size_t maxc, Charset cs)
{
	size_t		n;

	if (value == NULL)
		return true;
	/* json-c copies bytes as they are: invalid UTF-8 would spoil the JSON */
	switch (anet_text_check(value, strlen(value), &n, NULL))
	{
		case ANET_TEXT_OK:
			break;
		case ANET_TEXT_BAD_UTF8:
			return fail(ctx, "%s is not valid UTF-8", field);
		case ANET_TEXT_BAD_CHAR:
			return fail(ctx, "%s contains a control character the gateway cannot carry", field);
	}
	if (n > maxc)
		return fail(ctx, "%s is longer than %zu characters", field, maxc);
	if (n < minc)
		return fail(ctx, "%s is shorter than %zu characters", field, minc);
	if (!charset_ok(value, cs))
	{
		switch (cs)
		{
			case CS_DIGITS:
			case CS_CARD:
			case CS_CVV:
				return fail(ctx, "%s must contain only digits", field);
			case CS_CARD_REFUND:
				return fail(ctx, "%s must be digits, optionally preceded by X", field);
			case CS_EXPIRY:
				return fail(ctx, "%s must be a date such as 2030-12, or XXXX", field);
			case CS_DECIMAL:
				return fail(ctx, "%s must be a non-negative decimal number such as 12.34", field);
			case CS_ALPHA:
				return fail(ctx, "%s must contain only letters", field);
			case CS_ALNUM_SPACE:
				return fail(ctx, "%s must contain only letters, digits and spaces", field);
			case CS_DATETIME:
				return fail(ctx, "%s must be a date and time such as 2020-05-01T16:00:00Z", field);
			case CS_ANY:
				break;
		}
		return fail(ctx, "%s is invalid", field);
	}
	return true;
}

/* A field that must be present, then validated as above. */
static bool
require_field(BuildCtx *ctx, const char *field, const char *value,
			  size_t minc, size_t maxc, Charset cs)
{
	if (value == NULL)
		return fail(ctx, "%s is required", field);
	return check_field(ctx, field, value, minc, maxc, cs);
}

/* A free-text field of the shared table (anet_fields.c): its path and limit. */
static bool
check_text(BuildCtx *ctx, AnetTextFieldId field, const char *value)
{
	return check_field(ctx, anet_text_fields[field].path, value, 0,
					   anet_text_fields[field].max_chars, CS_ANY);
}

/* ----------------------------------------------------------------
 * JSON construction.  Every json-c call is checked: json_object_new_*
 * returns NULL when out of memory, and json_object_object_add and
 * json_object_array_add return non-zero without taking the value.
 * ----------------------------------------------------------------
 */

/* Add key: val (a string) to obj; a NULL val adds nothing. */
static bool
put_string(BuildCtx *ctx, json_object *obj, const char *key, const char *val)
{
	json_object *s;

	if (val == NULL)
		return true;
	s = json_object_new_string(val);
	if (s == NULL)
		return fail(ctx, "out of memory");
	if (json_object_object_add(obj, key, s) != 0)
	{
		if (!ctx->masked)
			json_scrub(s);
		json_object_put(s);
		return fail(ctx, "out of memory");
	}
	return true;
}

/* Add key: {} to obj and return the new object, or NULL. */
static json_object *
put_object(BuildCtx *ctx, json_object *obj, const char *key)
{
	json_object *child = json_object_new_object();

	if (child == NULL)
	{
		fail(ctx, "out of memory");
		return NULL;
	}
	if (json_object_object_add(obj, key, child) != 0)
	{
		json_object_put(child);
		fail(ctx, "out of memory");
		return NULL;
	}
	return child;
}

/* Append {"settingName": name, "settingValue": value} to a setting array. */
static bool
put_setting(BuildCtx *ctx, json_object *array, const char *name, const char *value)
{
	json_object *s = json_object_new_object();

	if (s == NULL)
		return fail(ctx, "out of memory");
	if (json_object_array_add(array, s) != 0)
	{
		json_object_put(s);
		return fail(ctx, "out of memory");
	}
	return put_string(ctx, s, "settingName", name) &&
		put_string(ctx, s, "settingValue", value);
}

/* Every builder starts here: an empty context, no error yet. */
static void
begin_build(BuildCtx *ctx, bool masked, char **error)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->masked = masked;
	if (error != NULL)
		*error = NULL;
}

/* Credentials and refId: checked for every request the same way. */
static bool
check_common(BuildCtx *ctx, const AnetCredentials *creds, const char *ref_id)
{
	if (creds == NULL)
		return fail(ctx, "credentials are required");
	return require_field(ctx, "merchantAuthentication.name", opt(creds->login_id), 1, 25, CS_ANY) &&
		require_field(ctx, "merchantAuthentication.transactionKey", opt(creds->transaction_key), 1, 16, CS_ANY) &&
		check_text(ctx, ANET_FIELD_REF_ID, opt(ref_id));
}

/*
 * Start {"<root>": {"merchantAuthentication": {...}, "refId": ...}} and
 * return the inner object to which the request's own members are added.
 * clientId, which sits between the two in the XSD, is never sent.
 */
static json_object *
begin_request(BuildCtx *ctx, json_object **root, const char *root_name,
			  const AnetCredentials *creds, const char *ref_id)
{
	json_object *body;
	json_object *auth;

	*root = json_object_new_object();
	if (*root == NULL)
	{
		fail(ctx, "out of memory");
		return NULL;
	}
	body = put_object(ctx, *root, root_name);
	if (body == NULL)
		return NULL;
	auth = put_object(ctx, body, "merchantAuthentication");
	if (auth == NULL ||
		!put_string(ctx, auth, "name", opt(creds->login_id)) ||
		!put_string(ctx, auth, "transactionKey",
					ctx->masked ? masked_key : opt(creds->transaction_key)) ||
		!put_string(ctx, body, "refId", opt(ref_id)))
		return NULL;
	return body;
}

/*
 * Release a request tree.  Unless it is the masked form, its strings (card
 * number, CVV, nonce, transaction key) are wiped first.
 */
static void
release_request(BuildCtx *ctx, json_object *root)
{
	if (!ctx->masked)
		json_scrub(root);
	json_object_put(root);
}

/*
 * Serialize the finished request and hand the caller a malloc'd copy (the
 * json-c buffer belongs to root, which is released here).  The request to
 * send is not serialized by json-c: that would leave parts of it in freed
 * memory (json_scrub.c).
 */
static char *
finish_request(BuildCtx *ctx, json_object *root)
{
	char	   *copy = NULL;

	if (!ctx->masked)
		copy = json_serialize_secret(root);
	else
	{
		const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
														  JSON_C_TO_STRING_NOSLASHESCAPE);

		if (text != NULL)
			copy = strdup(text);
	}
	if (copy == NULL)
		fail(ctx, "out of memory");
	release_request(ctx, root);
	return copy;
}

/* Give the caller the failure message (malloc'd) and return NULL. */
static char *
failed(BuildCtx *ctx, json_object *root, char **error)
{
	if (root != NULL)
		release_request(ctx, root);
	if (error != NULL)
		*error = strdup(ctx->err[0] ? ctx->err : "request could not be built");
	return NULL;
}

/* ----------------------------------------------------------------
 * createTransactionRequest
 * ----------------------------------------------------------------
 */

/* The transactionType enumeration value of a type. */
const char *
anet_txn_type_name(AnetTxnType type)
{
	switch (type)
	{
		case ANET_AUTH_CAPTURE:
			return "authCaptureTransaction";
		case ANET_AUTH_ONLY:
			return "authOnlyTransaction";
		case ANET_PRIOR_AUTH_CAPTURE:
			return "priorAuthCaptureTransaction";
		case ANET_CAPTURE_ONLY:
			return "captureOnlyTransaction";
		case ANET_REFUND:
			return "refundTransaction";
		case ANET_VOID:
			return "voidTransaction";
	}
	return NULL;
}

/* Copy the request with "" fields turned into NULL (omitted). */
static AnetTxnRequest
normalize(const AnetTxnRequest *req)
{
	AnetTxnRequest r = *req;

	r.ref_id = opt(r.ref_id);
	r.amount = opt(r.amount);
	r.currency_code = opt(r.currency_code);
	r.card_number = opt(r.card_number);
	r.card_expiration = opt(r.card_expiration);
	r.card_code = opt(r.card_code);
	r.opaque_descriptor = opt(r.opaque_descriptor);
	r.opaque_value = opt(r.opaque_value);
	r.profile_customer_id = opt(r.profile_customer_id);
	r.profile_payment_id = opt(r.profile_payment_id);
	r.auth_code = opt(r.auth_code);
	r.ref_trans_id = opt(r.ref_trans_id);
	r.invoice_number = opt(r.invoice_number);
	r.description = opt(r.description);
	r.customer_id = opt(r.customer_id);
	r.customer_email = opt(r.customer_email);
	r.bill_first_name = opt(r.bill_first_name);
	r.bill_last_name = opt(r.bill_last_name);
	r.bill_company = opt(r.bill_company);
	r.bill_address = opt(r.bill_address);
	r.bill_city = opt(r.bill_city);
	r.bill_state = opt(r.bill_state);
	r.bill_zip = opt(r.bill_zip);
	r.bill_country = opt(r.bill_country);
	r.customer_ip = opt(r.customer_ip);
	r.original_network_trans_id = opt(r.original_network_trans_id);
	r.original_auth_amount = opt(r.original_auth_amount);
	r.subsequent_auth_reason = opt(r.subsequent_auth_reason);
	return r;
}

/*
 * Check a transaction request: every field's form, then which fields the
 * transaction type needs or must not have (as the API reference documents
 * each type: the schema itself makes every field optional).  Sending card
 * data with a void or a capture would be harmless to the gateway but is
 * data we must not spread, so it is refused.
 */
static bool
check_transaction(BuildCtx *ctx, const AnetTxnRequest *r)
{
	bool		has_card = r->card_number || r->card_expiration || r->card_code;
	bool		has_opaque = r->opaque_descriptor || r->opaque_value;
	bool		has_profile = r->profile_customer_id || r->profile_payment_id;
	int			npayments = (has_card ? 1 : 0) + (has_opaque ? 1 : 0) + (has_profile ? 1 : 0);
	const char *tname = anet_txn_type_name(r->type);

	if (tname == NULL)
		return fail(ctx, "unknown transaction type");

	/* the form of each field */
	if (r->amount != NULL && anet_decimal_digits(r->amount) > ANET_AMOUNT_MAX_DIGITS)
		return fail(ctx, "transactionRequest.amount has more than %d digits", ANET_AMOUNT_MAX_DIGITS);
	if (!check_field(ctx, "transactionRequest.amount", r->amount, 1, 40, CS_DECIMAL) ||
		!check_field(ctx, "transactionRequest.currencyCode", r->currency_code, 3, 3, CS_ALPHA) ||
		!check_field(ctx, "transactionRequest.authCode", r->auth_code, 1, 6, CS_ANY) ||
		!check_field(ctx, "transactionRequest.refTransId", r->ref_trans_id, 1, 20, CS_DIGITS) ||
		!check_text(ctx, ANET_FIELD_INVOICE_NUMBER, r->invoice_number) ||
		!check_text(ctx, ANET_FIELD_DESCRIPTION, r->description) ||
		!check_text(ctx, ANET_FIELD_CUSTOMER_ID, r->customer_id) ||
		!check_text(ctx, ANET_FIELD_CUSTOMER_EMAIL, r->customer_email) ||
		!check_text(ctx, ANET_FIELD_BILL_FIRST_NAME, r->bill_first_name) ||
		!check_text(ctx, ANET_FIELD_BILL_LAST_NAME, r->bill_last_name) ||
		!check_text(ctx, ANET_FIELD_BILL_COMPANY, r->bill_company) ||
		!check_text(ctx, ANET_FIELD_BILL_ADDRESS, r->bill_address) ||
		!check_text(ctx, ANET_FIELD_BILL_CITY, r->bill_city) ||
		!check_text(ctx, ANET_FIELD_BILL_STATE, r->bill_state) ||
		!check_text(ctx, ANET_FIELD_BILL_ZIP, r->bill_zip) ||
		!check_text(ctx, ANET_FIELD_BILL_COUNTRY, r->bill_country) ||
		!check_text(ctx, ANET_FIELD_CUSTOMER_IP, r->customer_ip))
		return false;
	if (r->duplicate_window > 28800)
		return fail(ctx, "duplicateWindow must be at most 28800 seconds");
	if (!check_field(ctx, "subsequentAuthInformation.originalNetworkTransId",
					 r->original_network_trans_id, 1, 255, CS_ALNUM_SPACE) ||
		!check_field(ctx, "subsequentAuthInformation.originalAuthAmount",
					 r->original_auth_amount, 1, 40, CS_DECIMAL))
		return false;
	if (r->subsequent_auth_reason != NULL &&
		strcmp(r->subsequent_auth_reason, "resubmission") != 0 &&
		strcmp(r->subsequent_auth_reason, "delayedCharge") != 0 &&
		strcmp(r->subsequent_auth_reason, "reauthorization") != 0 &&
		strcmp(r->subsequent_auth_reason, "noShow") != 0)
		return fail(ctx, "subsequentAuthInformation.reason must be resubmission, delayedCharge, reauthorization or noShow");
	if ((r->is_first_recurring_payment || r->is_first_subsequent_auth || r->is_subsequent_auth ||
		 r->is_stored_credentials || r->original_network_trans_id || r->original_auth_amount ||
		 r->subsequent_auth_reason) &&
		r->type != ANET_AUTH_CAPTURE && r->type != ANET_AUTH_ONLY)
		return fail(ctx, "card-on-file fields are only sent with authCaptureTransaction and authOnlyTransaction");
	/*
	 * The schema makes each flag optional and says nothing of their
	 * combinations; their meanings do: the first payment of a recurring
	 * series is customer-initiated and has no earlier transaction to name,
	 * so it is neither a subsequent authorization nor the first of an
	 * unscheduled series.
	 */
	if (r->is_first_recurring_payment &&
		(r->is_subsequent_auth || r->is_first_subsequent_auth || r->original_network_trans_id))
		return fail(ctx, "processingOptions.isFirstRecurringPayment is not sent with isSubsequentAuth, isFirstSubsequentAuth or subsequentAuthInformation.originalNetworkTransId");

	/* payment */
	if (npayments > 1)
		return fail(ctx, "at most one of card, opaque data and customer profile may be given");
	if (has_card)
	{
		if (!require_field(ctx, "creditCard.cardNumber", r->card_number, 4, ANET_CARD_NUMBER_MAX,
						   r->type == ANET_REFUND ? CS_CARD_REFUND : CS_CARD) ||
			!require_field(ctx, "creditCard.expirationDate", r->card_expiration, 4, 7, CS_EXPIRY) ||
			!check_field(ctx, "creditCard.cardCode", r->card_code, 3, 4, CS_CVV))
			return false;
	}
	if (has_opaque)
	{
		if (!require_field(ctx, "opaqueData.dataDescriptor", r->opaque_descriptor, 1, NO_MAX, CS_ANY) ||
			!require_field(ctx, "opaqueData.dataValue", r->opaque_value, 1, NO_MAX, CS_ANY))
			return false;
	}
	if (has_profile)
	{
		if (!require_field(ctx, "profile.customerProfileId", r->profile_customer_id, 1, ANET_PROFILE_ID_MAX, CS_DIGITS) ||
			!require_field(ctx, "profile.paymentProfile.paymentProfileId", r->profile_payment_id, 1, ANET_PROFILE_ID_MAX, CS_DIGITS))
			return false;
	}

	/* what each type needs */
	switch (r->type)
	{
		case ANET_AUTH_CAPTURE:
		case ANET_AUTH_ONLY:
			if (r->amount == NULL)
				return fail(ctx, "transactionRequest.amount is required for %s", tname);
			if (npayments == 0)
				return fail(ctx, "a card, opaque data or customer profile is required for %s", tname);
			break;
		case ANET_CAPTURE_ONLY:
			if (r->amount == NULL)
				return fail(ctx, "transactionRequest.amount is required for %s", tname);
			if (npayments == 0)
				return fail(ctx, "a card, opaque data or customer profile is required for %s", tname);
			if (r->auth_code == NULL)
				return fail(ctx, "transactionRequest.authCode is required for %s", tname);
			break;
		case ANET_REFUND:
			if (r->amount == NULL)
				return fail(ctx, "transactionRequest.amount is required for %s", tname);
			if (has_opaque)
				return fail(ctx, "opaque data cannot be refunded to: use the card's last four digits or the customer profile");
			if (npayments == 0)
				return fail(ctx, "a card or customer profile is required for %s", tname);
			break;
		case ANET_PRIOR_AUTH_CAPTURE:
		case ANET_VOID:
			if (r->ref_trans_id == NULL)
				return fail(ctx, "transactionRequest.refTransId is required for %s", tname);
			if (npayments != 0)
				return fail(ctx, "payment data must not be sent with %s", tname);
			break;
	}
	if (r->auth_code != NULL && r->type != ANET_CAPTURE_ONLY)
		return fail(ctx, "transactionRequest.authCode is only sent with captureOnlyTransaction");
	if (r->ref_trans_id != NULL &&
		(r->type == ANET_AUTH_CAPTURE || r->type == ANET_AUTH_ONLY || r->type == ANET_CAPTURE_ONLY))
		return fail(ctx, "transactionRequest.refTransId is not sent with %s", tname);
	return true;
}

/*
 * Add transactionRequest.payment or .profile.  In the masked form the card
 * number keeps only its last four characters (behind "XXXX"), and card
 * code, expiration date and opaque value are replaced outright.
 */
static bool
put_payment(BuildCtx *ctx, json_object *tr, const AnetTxnRequest *r)
{
	json_object *payment;
	json_object *inner;

	if (r->card_number != NULL)
	{
		char		masked_pan[9];
		size_t		len = strlen(r->card_number);

		/* validation guarantees 4..16 ASCII characters */
		memcpy(masked_pan, "XXXX", 4);
		memcpy(masked_pan + 4, r->card_number + len - 4, 4);
		masked_pan[8] = '\0';

		if ((payment = put_object(ctx, tr, "payment")) == NULL ||
			(inner = put_object(ctx, payment, "creditCard")) == NULL)
			return false;
		if (!put_string(ctx, inner, "cardNumber", ctx->masked ? masked_pan : r->card_number) ||
			!put_string(ctx, inner, "expirationDate", ctx->masked ? masked_expiry : r->card_expiration) ||
			!put_string(ctx, inner, "cardCode",
						r->card_code == NULL ? NULL : ctx->masked ? masked_cvv : r->card_code))
			return false;
	}
	else if (r->opaque_value != NULL)
	{
		if ((payment = put_object(ctx, tr, "payment")) == NULL ||
			(inner = put_object(ctx, payment, "opaqueData")) == NULL)
			return false;
		if (!put_string(ctx, inner, "dataDescriptor", r->opaque_descriptor) ||
			!put_string(ctx, inner, "dataValue", ctx->masked ? masked_opaque : r->opaque_value))
			return false;
	}
	else if (r->profile_customer_id != NULL)
	{
		json_object *profile;

		if ((profile = put_object(ctx, tr, "profile")) == NULL ||
			!put_string(ctx, profile, "customerProfileId", r->profile_customer_id) ||
			(inner = put_object(ctx, profile, "paymentProfile")) == NULL ||
			!put_string(ctx, inner, "paymentProfileId", r->profile_payment_id))
			return false;
	}
	return true;
}

/* Add transactionRequest.transactionSettings when there is any setting. */
static bool
put_settings(BuildCtx *ctx, json_object *tr, const AnetTxnRequest *r)
{
	bool		partial = (r->type == ANET_AUTH_CAPTURE || r->type == ANET_AUTH_ONLY);
	json_object *settings;
	json_object *array;
	char		window[16];

	if (!partial && r->duplicate_window < 0 && !r->recurring_billing && !r->test_request)
		return true;

	if ((settings = put_object(ctx, tr, "transactionSettings")) == NULL)
		return false;
	array = json_object_new_array();
	if (array == NULL)
		return fail(ctx, "out of memory");
	if (json_object_object_add(settings, "setting", array) != 0)
	{
		json_object_put(array);
		return fail(ctx, "out of memory");
	}
	if (partial &&
		!put_setting(ctx, array, "allowPartialAuth", r->allow_partial_auth ? "true" : "false"))
		return false;
	if (r->duplicate_window >= 0)
	{
		snprintf(window, sizeof(window), "%d", r->duplicate_window);
		if (!put_setting(ctx, array, "duplicateWindow", window))
			return false;
	}
	if (r->recurring_billing && !put_setting(ctx, array, "recurringBilling", "true"))
		return false;
	if (r->test_request && !put_setting(ctx, array, "testRequest", "true"))
		return false;
	return true;
}

/* Add processingOptions and subsequentAuthInformation (card on file). */
static bool
put_card_on_file(BuildCtx *ctx, json_object *tr, const AnetTxnRequest *r)
{
	json_object *o;

	if (r->is_first_recurring_payment || r->is_first_subsequent_auth ||
		r->is_subsequent_auth || r->is_stored_credentials)
	{
		if ((o = put_object(ctx, tr, "processingOptions")) == NULL ||
			!put_string(ctx, o, "isFirstRecurringPayment", r->is_first_recurring_payment ? "true" : NULL) ||
			!put_string(ctx, o, "isFirstSubsequentAuth", r->is_first_subsequent_auth ? "true" : NULL) ||
			!put_string(ctx, o, "isSubsequentAuth", r->is_subsequent_auth ? "true" : NULL) ||
			!put_string(ctx, o, "isStoredCredentials", r->is_stored_credentials ? "true" : NULL))
			return false;
	}
	if (r->original_network_trans_id || r->original_auth_amount || r->subsequent_auth_reason)
	{
		if ((o = put_object(ctx, tr, "subsequentAuthInformation")) == NULL ||
			!put_string(ctx, o, "originalNetworkTransId", r->original_network_trans_id) ||
			!put_string(ctx, o, "originalAuthAmount", r->original_auth_amount) ||
			!put_string(ctx, o, "reason", r->subsequent_auth_reason))
			return false;
	}
	return true;
}

/*
 * Build a createTransactionRequest.  The order below is the XSD's
 * transactionRequestType sequence (transactionType, amount, currencyCode,
 * payment, profile, authCode, refTransId, order, customer, billTo,
 * customerIP, transactionSettings, processingOptions,
 * subsequentAuthInformation); members we never send are skipped.
 */
char *
anet_build_transaction_request(const AnetCredentials *creds,
							   const AnetTxnRequest *req,
							   bool masked, char **error)
{
	BuildCtx	ctx;
	AnetTxnRequest r;
	json_object *root = NULL;
	json_object *body;
	json_object *tr;
	json_object *o;

	begin_build(&ctx, masked, error);
	if (req == NULL)
	{
		fail(&ctx, "transaction request is required");
		return failed(&ctx, NULL, error);
	}
	r = normalize(req);
	if (!check_common(&ctx, creds, r.ref_id) || !check_transaction(&ctx, &r))
		return failed(&ctx, NULL, error);

	if ((body = begin_request(&ctx, &root, "createTransactionRequest", creds, r.ref_id)) == NULL ||
		(tr = put_object(&ctx, body, "transactionRequest")) == NULL ||
		!put_string(&ctx, tr, "transactionType", anet_txn_type_name(r.type)) ||
		!put_string(&ctx, tr, "amount", r.amount) ||
		!put_string(&ctx, tr, "currencyCode", r.currency_code) ||
		!put_payment(&ctx, tr, &r) ||
		!put_string(&ctx, tr, "authCode", r.auth_code) ||
		!put_string(&ctx, tr, "refTransId", r.ref_trans_id))
		return failed(&ctx, root, error);

	if (r.invoice_number || r.description)
	{
		if ((o = put_object(&ctx, tr, "order")) == NULL ||
			!put_string(&ctx, o, "invoiceNumber", r.invoice_number) ||
			!put_string(&ctx, o, "description", r.description))
			return failed(&ctx, root, error);
	}
	if (r.customer_id || r.customer_email)
	{
		if ((o = put_object(&ctx, tr, "customer")) == NULL ||
			!put_string(&ctx, o, "id", r.customer_id) ||
			!put_string(&ctx, o, "email", r.customer_email))
			return failed(&ctx, root, error);
	}
	if (r.bill_first_name || r.bill_last_name || r.bill_company || r.bill_address ||
		r.bill_city || r.bill_state || r.bill_zip || r.bill_country)
	{
		if ((o = put_object(&ctx, tr, "billTo")) == NULL ||
			!put_string(&ctx, o, "firstName", r.bill_first_name) ||
			!put_string(&ctx, o, "lastName", r.bill_last_name) ||
			!put_string(&ctx, o, "company", r.bill_company) ||
			!put_string(&ctx, o, "address", r.bill_address) ||
			!put_string(&ctx, o, "city", r.bill_city) ||
			!put_string(&ctx, o, "state", r.bill_state) ||
			!put_string(&ctx, o, "zip", r.bill_zip) ||
			!put_string(&ctx, o, "country", r.bill_country))
			return failed(&ctx, root, error);
	}
	if (!put_string(&ctx, tr, "customerIP", r.customer_ip) ||
		!put_settings(&ctx, tr, &r) ||
		!put_card_on_file(&ctx, tr, &r))
		return failed(&ctx, root, error);

	{
		char	   *out = finish_request(&ctx, root);

		if (out == NULL)
			return failed(&ctx, NULL, error);
		return out;
	}
}

/* ----------------------------------------------------------------
 * Reporting and health-check requests
 * ----------------------------------------------------------------
 */

/* Sorting and paging, shared by the two transaction list requests. */
static bool
check_list_options(BuildCtx *ctx, const AnetListOptions *opts)
{
	if (opts == NULL)
		return true;
	if (opts->order_by != NULL &&
		strcmp(opts->order_by, "id") != 0 && strcmp(opts->order_by, "submitTimeUTC") != 0)
		return fail(ctx, "sorting.orderBy must be id or submitTimeUTC");
	if (opts->limit != 0 && (opts->limit < 1 || opts->limit > 1000))
		return fail(ctx, "paging.limit must be between 1 and 1000");
	if (opts->limit != 0 && (opts->offset < 1 || opts->offset > 100000))
		return fail(ctx, "paging.offset must be between 1 and 100000");
	return true;
}

/* Add sorting{orderBy, orderDescending} and paging{limit, offset}. */
static bool
put_list_options(BuildCtx *ctx, json_object *body, const AnetListOptions *opts)
{
	json_object *o;
	char		num[16];

	if (opts == NULL)
		return true;
	if (opts->order_by != NULL)
	{
		if ((o = put_object(ctx, body, "sorting")) == NULL ||
			!put_string(ctx, o, "orderBy", opts->order_by) ||
			!put_string(ctx, o, "orderDescending", opts->order_descending ? "true" : "false"))
			return false;
	}
	if (opts->limit != 0)
	{
		if ((o = put_object(ctx, body, "paging")) == NULL)
			return false;
		snprintf(num, sizeof(num), "%d", opts->limit);
		if (!put_string(ctx, o, "limit", num))
			return false;
		snprintf(num, sizeof(num), "%d", opts->offset);
		if (!put_string(ctx, o, "offset", num))
			return false;
	}
	return true;
}

/* Serialize, or report why not; shared tail of the small builders. */
static char *
finish_or_fail(BuildCtx *ctx, json_object *root, char **error)
{
	char	   *out = finish_request(ctx, root);

	if (out == NULL)
		return failed(ctx, NULL, error);
	return out;
}

/* authenticateTestRequest: only the credentials (and refId). */
char *
anet_build_authenticate_test_request(const AnetCredentials *creds,
									 const char *ref_id,
									 bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;

	begin_build(&ctx, masked, error);
	if (!check_common(&ctx, creds, ref_id) ||
		begin_request(&ctx, &root, "authenticateTestRequest", creds, ref_id) == NULL)
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* getTransactionDetailsRequest: merchantAuthentication, refId, transId. */
char *
anet_build_get_transaction_details_request(const AnetCredentials *creds,
										   const char *ref_id,
										   const char *trans_id,
										   bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	if (!check_common(&ctx, creds, ref_id) ||
		!require_field(&ctx, "transId", opt(trans_id), 1, 20, CS_DIGITS))
		return failed(&ctx, NULL, error);
	if ((body = begin_request(&ctx, &root, "getTransactionDetailsRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "transId", trans_id))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* getUnsettledTransactionListRequest: ..., status, sorting, paging. */
char *
anet_build_get_unsettled_transaction_list_request(const AnetCredentials *creds,
												  const char *ref_id,
												  const char *status,
												  const AnetListOptions *opts,
												  bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	status = opt(status);
	if (!check_common(&ctx, creds, ref_id) || !check_list_options(&ctx, opts))
		return failed(&ctx, NULL, error);
	if (status != NULL && strcmp(status, "any") != 0 && strcmp(status, "pendingApproval") != 0)
	{
		fail(&ctx, "status must be any or pendingApproval");
		return failed(&ctx, NULL, error);
	}
	if ((body = begin_request(&ctx, &root, "getUnsettledTransactionListRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "status", status) ||
		!put_list_options(&ctx, body, opts))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* getTransactionListRequest: ..., batchId, sorting, paging. */
char *
anet_build_get_transaction_list_request(const AnetCredentials *creds,
										const char *ref_id,
										const char *batch_id,
										const AnetListOptions *opts,
										bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	if (!check_common(&ctx, creds, ref_id) ||
		!require_field(&ctx, "batchId", opt(batch_id), 1, 20, CS_DIGITS) ||
		!check_list_options(&ctx, opts))
		return failed(&ctx, NULL, error);
	if ((body = begin_request(&ctx, &root, "getTransactionListRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "batchId", batch_id) ||
		!put_list_options(&ctx, body, opts))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* getSettledBatchListRequest: ..., includeStatistics, first/last date. */
char *
anet_build_get_settled_batch_list_request(const AnetCredentials *creds,
										  const char *ref_id,
										  bool include_statistics,
										  const char *first_settlement_date,
										  const char *last_settlement_date,
										  bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	first_settlement_date = opt(first_settlement_date);
	last_settlement_date = opt(last_settlement_date);
	if (!check_common(&ctx, creds, ref_id) ||
		!check_field(&ctx, "firstSettlementDate", first_settlement_date, 19, 40, CS_DATETIME) ||
		!check_field(&ctx, "lastSettlementDate", last_settlement_date, 19, 40, CS_DATETIME))
		return failed(&ctx, NULL, error);
	if ((body = begin_request(&ctx, &root, "getSettledBatchListRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "includeStatistics", include_statistics ? "true" : NULL) ||
		!put_string(&ctx, body, "firstSettlementDate", first_settlement_date) ||
		!put_string(&ctx, body, "lastSettlementDate", last_settlement_date))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* ----------------------------------------------------------------
 * Customer profiles (CIM)
 * ----------------------------------------------------------------
 */

/* validationMode: none, testMode or liveMode (oldLiveMode is deprecated). */
static bool
check_validation_mode(BuildCtx *ctx, const char *mode)
{
	if (mode != NULL && strcmp(mode, "none") != 0 && strcmp(mode, "testMode") != 0 &&
		strcmp(mode, "liveMode") != 0)
		return fail(ctx, "validationMode must be none, testMode or liveMode");
	return true;
}

/* A profile id (numericString). */
static bool
check_profile_id(BuildCtx *ctx, const char *field, const char *value, bool required)
{
	if (required)
		return require_field(ctx, field, value, 1, ANET_PROFILE_ID_MAX, CS_DIGITS);
	return check_field(ctx, field, value, 1, ANET_PROFILE_ID_MAX, CS_DIGITS);
}

/*
 * The customerPaymentProfileType of a request, in XSD order: billTo,
 * payment (the transaction builder's card or opaque data, masked the same
 * way), defaultPaymentProfile.
 */
static bool
put_payment_profile(BuildCtx *ctx, json_object *pp, const AnetPaymentProfileRequest *r)
{
	AnetTxnRequest pay;
	json_object *o;

	if (r->bill_first_name || r->bill_last_name || r->bill_company || r->bill_address ||
		r->bill_city || r->bill_state || r->bill_zip || r->bill_country)
	{
		if ((o = put_object(ctx, pp, "billTo")) == NULL ||
			!put_string(ctx, o, "firstName", r->bill_first_name) ||
			!put_string(ctx, o, "lastName", r->bill_last_name) ||
			!put_string(ctx, o, "company", r->bill_company) ||
			!put_string(ctx, o, "address", r->bill_address) ||
			!put_string(ctx, o, "city", r->bill_city) ||
			!put_string(ctx, o, "state", r->bill_state) ||
			!put_string(ctx, o, "zip", r->bill_zip) ||
			!put_string(ctx, o, "country", r->bill_country))
			return false;
	}
	memset(&pay, 0, sizeof(pay));
	pay.card_number = r->card_number;
	pay.card_expiration = r->card_expiration;
	pay.card_code = r->card_code;
	pay.opaque_descriptor = r->opaque_descriptor;
	pay.opaque_value = r->opaque_value;
	return put_payment(ctx, pp, &pay) &&
		put_string(ctx, pp, "defaultPaymentProfile", r->default_payment_profile ? "true" : NULL);
}

/* createCustomerProfileRequest / createCustomerPaymentProfileRequest. */
char *
anet_build_payment_profile_request(const AnetCredentials *creds,
								   const AnetPaymentProfileRequest *req,
								   bool masked, char **error)
{
	BuildCtx	ctx;
	AnetPaymentProfileRequest r;
	json_object *root = NULL;
	json_object *body;
	json_object *o;
	bool		has_card;
	bool		has_opaque;

	begin_build(&ctx, masked, error);
	if (req == NULL)
	{
		fail(&ctx, "payment profile request is required");
		return failed(&ctx, NULL, error);
	}
	r = *req;
	r.ref_id = opt(r.ref_id);
	r.customer_profile_id = opt(r.customer_profile_id);
	r.merchant_customer_id = opt(r.merchant_customer_id);
	r.description = opt(r.description);
	r.email = opt(r.email);
	r.bill_first_name = opt(r.bill_first_name);
	r.bill_last_name = opt(r.bill_last_name);
	r.bill_company = opt(r.bill_company);
	r.bill_address = opt(r.bill_address);
	r.bill_city = opt(r.bill_city);
	r.bill_state = opt(r.bill_state);
	r.bill_zip = opt(r.bill_zip);
	r.bill_country = opt(r.bill_country);
	r.card_number = opt(r.card_number);
	r.card_expiration = opt(r.card_expiration);
	r.card_code = opt(r.card_code);
	r.opaque_descriptor = opt(r.opaque_descriptor);
	r.opaque_value = opt(r.opaque_value);
	r.validation_mode = opt(r.validation_mode);
	has_card = r.card_number || r.card_expiration || r.card_code;
	has_opaque = r.opaque_descriptor || r.opaque_value;

	if (!check_common(&ctx, creds, r.ref_id) ||
		!check_profile_id(&ctx, "customerProfileId", r.customer_profile_id, false) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_MERCHANT_CUSTOMER_ID, r.merchant_customer_id) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_DESCRIPTION, r.description) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_EMAIL, r.email) ||
		!check_text(&ctx, ANET_FIELD_BILL_FIRST_NAME, r.bill_first_name) ||
		!check_text(&ctx, ANET_FIELD_BILL_LAST_NAME, r.bill_last_name) ||
		!check_text(&ctx, ANET_FIELD_BILL_COMPANY, r.bill_company) ||
		!check_text(&ctx, ANET_FIELD_BILL_ADDRESS, r.bill_address) ||
		!check_text(&ctx, ANET_FIELD_BILL_CITY, r.bill_city) ||
		!check_text(&ctx, ANET_FIELD_BILL_STATE, r.bill_state) ||
		!check_text(&ctx, ANET_FIELD_BILL_ZIP, r.bill_zip) ||
		!check_text(&ctx, ANET_FIELD_BILL_COUNTRY, r.bill_country) ||
		!check_validation_mode(&ctx, r.validation_mode))
		return failed(&ctx, NULL, error);
	if (has_card == has_opaque)
	{
		fail(&ctx, "exactly one of card and opaque data is required for a payment profile");
		return failed(&ctx, NULL, error);
	}
	if (has_card &&
		(!require_field(&ctx, "creditCard.cardNumber", r.card_number, 12, ANET_CARD_NUMBER_MAX, CS_CARD) ||
		 !require_field(&ctx, "creditCard.expirationDate", r.card_expiration, 4, 7, CS_EXPIRY) ||
		 !check_field(&ctx, "creditCard.cardCode", r.card_code, 3, 4, CS_CVV)))
		return failed(&ctx, NULL, error);
	if (has_opaque &&
		(!require_field(&ctx, "opaqueData.dataDescriptor", r.opaque_descriptor, 1, NO_MAX, CS_ANY) ||
		 !require_field(&ctx, "opaqueData.dataValue", r.opaque_value, 1, NO_MAX, CS_ANY)))
		return failed(&ctx, NULL, error);
	if (r.customer_profile_id == NULL && !r.merchant_customer_id && !r.description && !r.email)
	{
		fail(&ctx, "a new customer profile needs a merchantCustomerId, description or email");
		return failed(&ctx, NULL, error);
	}

	if (r.customer_profile_id == NULL)
	{
		/* profile{merchantCustomerId, description, email, paymentProfiles} */
		if ((body = begin_request(&ctx, &root, "createCustomerProfileRequest", creds, r.ref_id)) == NULL ||
			(o = put_object(&ctx, body, "profile")) == NULL ||
			!put_string(&ctx, o, "merchantCustomerId", r.merchant_customer_id) ||
			!put_string(&ctx, o, "description", r.description) ||
			!put_string(&ctx, o, "email", r.email) ||
			(o = put_object(&ctx, o, "paymentProfiles")) == NULL ||
			!put_payment_profile(&ctx, o, &r))
			return failed(&ctx, root, error);
	}
	else
	{
		if ((body = begin_request(&ctx, &root, "createCustomerPaymentProfileRequest", creds, r.ref_id)) == NULL ||
			!put_string(&ctx, body, "customerProfileId", r.customer_profile_id) ||
			(o = put_object(&ctx, body, "paymentProfile")) == NULL ||
			!put_payment_profile(&ctx, o, &r))
			return failed(&ctx, root, error);
	}
	if (!put_string(&ctx, body, "validationMode", r.validation_mode))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* createCustomerProfileFromTransactionRequest. */
char *
anet_build_profile_from_transaction_request(const AnetCredentials *creds,
											const char *ref_id,
											const char *trans_id,
											const char *merchant_customer_id,
											const char *description,
											const char *email,
											const char *customer_profile_id,
											bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;
	json_object *o;

	begin_build(&ctx, masked, error);
	merchant_customer_id = opt(merchant_customer_id);
	description = opt(description);
	email = opt(email);
	customer_profile_id = opt(customer_profile_id);
	if (!check_common(&ctx, creds, ref_id) ||
		!require_field(&ctx, "transId", opt(trans_id), 1, 20, CS_DIGITS) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_MERCHANT_CUSTOMER_ID, merchant_customer_id) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_DESCRIPTION, description) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_EMAIL, email) ||
		!check_profile_id(&ctx, "customerProfileId", customer_profile_id, false))
		return failed(&ctx, NULL, error);
	if ((body = begin_request(&ctx, &root, "createCustomerProfileFromTransactionRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "transId", trans_id))
		return failed(&ctx, root, error);
	if (customer_profile_id == NULL && (merchant_customer_id || description || email))
	{
		if ((o = put_object(&ctx, body, "customer")) == NULL ||
			!put_string(&ctx, o, "merchantCustomerId", merchant_customer_id) ||
			!put_string(&ctx, o, "description", description) ||
			!put_string(&ctx, o, "email", email))
			return failed(&ctx, root, error);
	}
	if (!put_string(&ctx, body, "customerProfileId", customer_profile_id))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* getCustomerProfileRequest: customerProfileId or merchantCustomerId. */
char *
anet_build_get_customer_profile_request(const AnetCredentials *creds,
										const char *ref_id,
										const char *customer_profile_id,
										const char *merchant_customer_id,
										bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	customer_profile_id = opt(customer_profile_id);
	merchant_customer_id = opt(merchant_customer_id);
	if (!check_common(&ctx, creds, ref_id) ||
		!check_profile_id(&ctx, "customerProfileId", customer_profile_id, false) ||
		!check_text(&ctx, ANET_FIELD_PROFILE_MERCHANT_CUSTOMER_ID, merchant_customer_id))
		return failed(&ctx, NULL, error);
	if ((customer_profile_id == NULL) == (merchant_customer_id == NULL))
	{
		fail(&ctx, "exactly one of customerProfileId and merchantCustomerId is required");
		return failed(&ctx, NULL, error);
	}
	if ((body = begin_request(&ctx, &root, "getCustomerProfileRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "customerProfileId", customer_profile_id) ||
		!put_string(&ctx, body, "merchantCustomerId", merchant_customer_id))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* deleteCustomerProfileRequest / deleteCustomerPaymentProfileRequest. */
char *
anet_build_delete_profile_request(const AnetCredentials *creds,
								  const char *ref_id,
								  const char *customer_profile_id,
								  const char *payment_profile_id,
								  bool masked, char **error)
{
	BuildCtx	ctx;
	json_object *root = NULL;
	json_object *body;

	begin_build(&ctx, masked, error);
	payment_profile_id = opt(payment_profile_id);
	if (!check_common(&ctx, creds, ref_id) ||
		!check_profile_id(&ctx, "customerProfileId", opt(customer_profile_id), true) ||
		!check_profile_id(&ctx, "customerPaymentProfileId", payment_profile_id, false))
		return failed(&ctx, NULL, error);
	if ((body = begin_request(&ctx, &root, payment_profile_id ? "deleteCustomerPaymentProfileRequest" :
							  "deleteCustomerProfileRequest", creds, ref_id)) == NULL ||
		!put_string(&ctx, body, "customerProfileId", customer_profile_id) ||
		!put_string(&ctx, body, "customerPaymentProfileId", payment_profile_id))
		return failed(&ctx, root, error);
	return finish_or_fail(&ctx, root, error);
}

/* Release anything this module allocated for the caller. */
void
anet_free(void *ptr)
{
	free(ptr);
}
