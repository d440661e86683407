/*-------------------------------------------------------------------------
 *
 * anet_response.c
 *	  Parse Authorize.Net JSON replies: createTransaction, reporting, and
 *	  the top-level status of any reply.
 *
 * Real replies differ from requests and from the documentation: they
 * start with a UTF-8 byte-order mark, their keys are not in XSD order,
 * "ArrayOf" wrappers collapse to plain arrays, and scalars are strings in
 * some calls and numbers in others (with .NET "...Specified" siblings).
 * The parsers here therefore look keys up by name, accept any scalar type,
 * ignore what they do not know, and judge a reply by its shape: whatever
 * cannot be read with confidence is ANET_MALFORMED, so the worker treats
 * its outcome as unknown instead of guessing.
 *
 * A createTransaction outcome is decided on
 * transactionResponse.responseCode alone; resultCode is "Ok" for declines
 * and holds too.
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "anet_protocol.h"

/* ----------------------------------------------------------------
 * Reading JSON
 * ----------------------------------------------------------------
 */

/*
 * Parse a reply body into its root object, or NULL.  The whole body must
 * be one JSON object (whitespace may follow): a truncated body, an HTML
 * error page or trailing garbage is not a reply.  A root wrapper
 * {"xxxResponse": {..., "messages": ...}} is looked through.
 */
static json_object *
parse_body(const char *body, size_t len)
{
	json_tokener *tok;
	json_object *root;
	size_t		end;

	if (body == NULL)
		return NULL;
	if (len >= 3 && (unsigned char) body[0] == 0xEF &&
		(unsigned char) body[1] == 0xBB && (unsigned char) body[2] == 0xBF)
	{
		body += 3;
		len -= 3;
	}
	if (len == 0 || len > (size_t) INT_MAX)
		return NULL;

	tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	root = json_tokener_parse_ex(tok, body, (int) len);
	if (root == NULL || json_tokener_get_error(tok) != json_tokener_success)
	{
		if (root != NULL)
			json_object_put(root);
		json_tokener_free(tok);
		return NULL;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	for (; end < len; end++)
	{
		char		c = body[end];

		if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
		{
			json_object_put(root);
			return NULL;
		}
	}
	if (!json_object_is_type(root, json_type_object))
	{
		json_object_put(root);
		return NULL;
	}

	/*
	 * Documentation-style wrapper: a single "...Response" key whose object
	 * holds the messages.  (A bare {"transactionResponse": ...} has no
	 * messages inside and is not unwrapped.)
	 */
	if (json_object_object_length(root) == 1 &&
		!json_object_object_get_ex(root, "messages", NULL))
	{
		json_object_object_foreach(root, key, val)
		{
			size_t		klen = strlen(key);

			if (klen > 8 && strcmp(key + klen - 8, "Response") == 0 &&
				json_object_is_type(val, json_type_object) &&
				json_object_object_get_ex(val, "messages", NULL))
			{
				json_object_get(val);
				json_object_put(root);
				return val;
			}
		}
	}
	return root;
}

/* Member key of obj if it is an object, else NULL (null counts absent). */
static json_object *
get_object(json_object *obj, const char *key)
{
	json_object *v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
		!json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

/* Member key of obj as an array, or NULL. */
static json_object *
get_array(json_object *obj, const char *key)
{
	json_object *v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
		!json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

/*
 * What get_scalar returns for a string with an escaped NUL ("12\u00003")
 * inside: read as C text it would be cut short, so copy_id refuses it
 * (an id must never be shortened) and everything else reads it as "".
 */
static const char scalar_with_nul[] = "";

/*
 * Text of a scalar member, whatever its JSON type: strings as they are,
 * numbers as their original token (json-c keeps it for parsed doubles, so
 * 5.00 stays "5.00"), booleans as true/false.  NULL when absent, null, or
 * an object/array; scalar_with_nul for a string holding a NUL.
 */
static const char *
get_scalar(json_object *obj, const char *key)
{
	json_object *v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) || v == NULL)
		return NULL;
	switch (json_object_get_type(v))
	{
		case json_type_string:
			if (strlen(json_object_get_string(v)) !=
				(size_t) json_object_get_string_len(v))
				return scalar_with_nul;
			return json_object_get_string(v);
		case json_type_int:
		case json_type_double:
		case json_type_boolean:
			return json_object_get_string(v);
		default:
			return NULL;
	}
}

/*
 * The first element of a repeated member: an array's first object, or the
 * member itself when a single object was given instead of an array.
 */
static json_object *
get_first(json_object *obj, const char *key)
{
	json_object *v;

	if (obj == NULL || !json_object_object_get_ex(obj, key, &v) || v == NULL)
		return NULL;
	if (json_object_is_type(v, json_type_object))
		return v;
	if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
	{
		json_object *first = json_object_array_get_idx(v, 0);

		if (first != NULL && json_object_is_type(first, json_type_object))
			return first;
	}
	return NULL;
}

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
static int
utf8_seq_len(const unsigned char *p)
{
	int			n;
	int			i;

	if (p[0] < 0x80)
		return 1;
	else if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4;
	else
		return 0;
	for (i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	/* overlong 3/4-byte forms, surrogates, beyond U+10FFFF */
	if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) ||
		(p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))
		return 0;
	return n;
}

/*
 * Copy src into dst[size] as valid UTF-8 (bad bytes become '?'), stopping
 * before a character that does not fit.  Returns whether all of src was
 * copied.  NULL src copies as "".
 */
static bool
copy_utf8(char *dst, size_t size, const char *src)
{
	const unsigned char *p = (const unsigned char *) src;
	size_t		pos = 0;

	dst[0] = '\0';
	if (src == NULL)
		return true;
	while (*p)
	{
		int			n = utf8_seq_len(p);

		if (n == 0)
		{
			if (pos + 1 >= size)
				break;
			dst[pos++] = '?';
			p++;
			continue;
		}
		if (pos + (size_t) n >= size)
			break;
		memcpy(dst + pos, p, (size_t) n);
		pos += (size_t) n;
		p += n;
	}
	dst[pos] = '\0';
	return *p == '\0';
}

/*
 * Copy an identifier or code.  Too long is a wrong shape, not something to
 * shorten: clears *ok (which callers start as true).
 */
static void
copy_id(char *dst, size_t size, const char *src, bool *ok)
{
	if (src == scalar_with_nul || !copy_utf8(dst, size, src))
	{
		dst[0] = '\0';
		*ok = false;
	}
}

/* Copy a human-readable text; truncation at a character boundary is fine. */
static void
copy_text(char *dst, size_t size, const char *src)
{
	(void) copy_utf8(dst, size, src);
}

/*
 * Strict decimal integer ("11", "-1"), for codes and counts sent as
 * strings or numbers.  False for absent or anything else.
 */
static bool
parse_long(const char *s, long *out)
{
	const char *p = s;
	bool		negative = false;
	long		v = 0;

	if (s == NULL)
		return false;
	if (*p == '-')
	{
		negative = true;
		p++;
	}
	if (*p == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		if (v > (LONG_MAX - (*p - '0')) / 10)
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = negative ? -v : v;
	return true;
}

/* A small non-negative code as int; 0 when absent or not a number. */
static int
code_to_int(const char *s)
{
	long		v;

	if (!parse_long(s, &v) || v < 0 || v > INT_MAX)
		return 0;
	return (int) v;
}

/* A count as long; -1 when absent or not a number. */
static long
count_or_minus_one(const char *s)
{
	long		v;

	if (!parse_long(s, &v))
		return -1;
	return v;
}

/*
 * Read the top-level messages {resultCode, message[0]{code, text}} and
 * refId.  False when messages is missing or resultCode is not Ok/Error.
 */
static bool
read_status(json_object *root, AnetReplyStatus *st)
{
	json_object *msgs = get_object(root, "messages");
	json_object *m;
	const char *rc;
	bool		ok = true;

	memset(st, 0, sizeof(*st));
	if (msgs == NULL)
		return false;
	rc = get_scalar(msgs, "resultCode");
	if (rc == NULL || (strcmp(rc, "Ok") != 0 && strcmp(rc, "Error") != 0))
		return false;
	m = get_first(msgs, "message");
	copy_id(st->result_code, sizeof(st->result_code), rc, &ok);
	copy_id(st->message_code, sizeof(st->message_code), get_scalar(m, "code"), &ok);
	copy_text(st->message_text, sizeof(st->message_text), get_scalar(m, "text"));
	copy_id(st->ref_id, sizeof(st->ref_id), get_scalar(root, "refId"), &ok);
	st->ok = strcmp(rc, "Ok") == 0;
	st->retryable = !st->ok && anet_message_code_is_retryable(st->message_code);
	return ok;
}

/* ----------------------------------------------------------------
 * Any reply: status only
 * ----------------------------------------------------------------
 */

/* The top-level status of any reply (authenticateTest and the like). */
bool
anet_parse_reply_status(const char *body, size_t len, AnetReplyStatus *out)
{
	json_object *root = parse_body(body, len);
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (root == NULL)
		return false;
	ok = read_status(root, out);
	json_object_put(root);
	return ok;
}

/* ----------------------------------------------------------------
 * createTransactionResponse
 * ----------------------------------------------------------------
 */

/* Reset a result to "malformed, outcome unknown" before parsing. */
static void
txn_result_init(AnetTxnResult *out)
{
	memset(out, 0, sizeof(*out));
	out->outcome = ANET_MALFORMED;
	out->unknown_outcome = true;
}

/*
 * Reason code and text: messages[0] for approvals and holds, errors[0] for
 * declines and errors, falling back to the other array if the expected one
 * is missing.
 */
static void
read_reason(json_object *tr, int response_code, AnetTxnResult *out)
{
	json_object *msg = get_first(tr, "messages");
	json_object *err = get_first(tr, "errors");
	bool		use_messages = (response_code == 1 || response_code == 4);

	if (use_messages ? msg == NULL : err == NULL)
		use_messages = !use_messages;
	if (use_messages && msg != NULL)
	{
		out->reason_code = code_to_int(get_scalar(msg, "code"));
		copy_text(out->reason_text, sizeof(out->reason_text), get_scalar(msg, "description"));
	}
	else if (!use_messages && err != NULL)
	{
		out->reason_code = code_to_int(get_scalar(err, "errorCode"));
		copy_text(out->reason_text, sizeof(out->reason_text), get_scalar(err, "errorText"));
	}
}

/* Parse a createTransaction reply; see anet_protocol.h for the rules. */
bool
anet_parse_transaction_response(const char *body, size_t len, AnetTxnResult *out)
{
	json_object *root;
	json_object *tr;
	AnetReplyStatus st;
	bool		have_status;
	const char *rc_text;
	long		rc;
	bool		ok = true;

	txn_result_init(out);
	root = parse_body(body, len);
	if (root == NULL)
		return false;

	have_status = read_status(root, &st);
	tr = get_object(root, "transactionResponse");
	rc_text = get_scalar(tr, "responseCode");

	if (rc_text != NULL && rc_text[0] != '\0')
	{
		/* a transaction was processed: responseCode decides */
		const char *ref;

		if (!parse_long(rc_text, &rc) || rc < 1 || rc > 4)
			goto malformed;
		out->response_code = (int) rc;
		copy_id(out->trans_id, sizeof(out->trans_id), get_scalar(tr, "transId"), &ok);
		ref = get_scalar(tr, "refTransID");
		if (ref == NULL)
			ref = get_scalar(tr, "refTransId");
		copy_id(out->ref_trans_id, sizeof(out->ref_trans_id), ref, &ok);
		copy_id(out->auth_code, sizeof(out->auth_code), get_scalar(tr, "authCode"), &ok);
		copy_id(out->avs_result, sizeof(out->avs_result), get_scalar(tr, "avsResultCode"), &ok);
		copy_id(out->cvv_result, sizeof(out->cvv_result), get_scalar(tr, "cvvResultCode"), &ok);
		copy_id(out->cavv_result, sizeof(out->cavv_result), get_scalar(tr, "cavvResultCode"), &ok);
		copy_id(out->account_number, sizeof(out->account_number), get_scalar(tr, "accountNumber"), &ok);
		copy_id(out->account_type, sizeof(out->account_type), get_scalar(tr, "accountType"), &ok);
		copy_id(out->network_trans_id, sizeof(out->network_trans_id), get_scalar(tr, "networkTransId"), &ok);
		copy_id(out->split_tender_id, sizeof(out->split_tender_id), get_scalar(tr, "splitTenderId"), &ok);
		if (!ok)
			goto malformed;
		{
			const char *test = get_scalar(tr, "testRequest");

			out->test_request = test != NULL &&
				(strcmp(test, "1") == 0 || strcmp(test, "true") == 0);
		}
		read_reason(tr, out->response_code, out);
		switch (out->response_code)
		{
			case 1:
				out->outcome = ANET_APPROVED;
				break;
			case 2:
				out->outcome = ANET_DECLINED;
				break;
			case 3:
				out->outcome = ANET_ERROR;
				out->is_duplicate = out->reason_code == 11;
				out->retryable = anet_reason_code_is_retryable(out->reason_code);
				break;
			default:
				out->outcome = ANET_HELD_FOR_REVIEW;
				break;
		}
		out->unknown_outcome = false;
	}
	else if (have_status && !st.ok)
	{
		/* rejected before any transaction: auth, schema, permission */
		out->outcome = ANET_REQUEST_REJECTED;
		copy_text(out->reason_text, sizeof(out->reason_text), st.message_text);
		out->retryable = st.retryable;
		/* E00049: timed out, nobody knows whether it went through */
		out->unknown_outcome = strcmp(st.message_code, "E00049") == 0;
	}
	else
		goto malformed;

	if (have_status)
	{
		memcpy(out->result_code, st.result_code, sizeof(out->result_code));
		memcpy(out->message_code, st.message_code, sizeof(out->message_code));
		memcpy(out->message_text, st.message_text, sizeof(out->message_text));
		memcpy(out->ref_id, st.ref_id, sizeof(out->ref_id));
	}
	else
	{
		/* messages missing: the transaction part is still authoritative */
		copy_id(out->ref_id, sizeof(out->ref_id), get_scalar(root, "refId"), &ok);
		if (!ok)
			goto malformed;
	}
	json_object_put(root);
	return true;

malformed:
	json_object_put(root);
	txn_result_init(out);
	return false;
}

/* ----------------------------------------------------------------
 * getTransactionDetailsResponse
 * ----------------------------------------------------------------
 */

/* Fill details from the "transaction" object; false on a wrong shape. */
static bool
read_details(json_object *t, AnetTxnDetails *out)
{
	json_object *batch = get_object(t, "batch");
	json_object *order = get_object(t, "order");
	json_object *payment = get_object(t, "payment");
	json_object *card = get_object(payment, "creditCard");
	json_object *bank = get_object(payment, "bankAccount");
	json_object *customer = get_object(t, "customer");
	json_object *profile = get_object(t, "profile");
	const char *rc = get_scalar(t, "responseCode");
	long		v;
	bool		ok = true;

	copy_id(out->trans_id, sizeof(out->trans_id), get_scalar(t, "transId"), &ok);
	if (!ok || out->trans_id[0] == '\0')
		return false;
	if (rc != NULL)
	{
		if (!parse_long(rc, &v) || v < 1 || v > 4)
			return false;
		out->response_code = (int) v;
	}
	out->reason_code = code_to_int(get_scalar(t, "responseReasonCode"));
	copy_text(out->reason_text, sizeof(out->reason_text), get_scalar(t, "responseReasonDescription"));
	copy_id(out->ref_trans_id, sizeof(out->ref_trans_id), get_scalar(t, "refTransId"), &ok);
	copy_id(out->split_tender_id, sizeof(out->split_tender_id), get_scalar(t, "splitTenderId"), &ok);
	copy_id(out->transaction_type, sizeof(out->transaction_type), get_scalar(t, "transactionType"), &ok);
	copy_id(out->transaction_status, sizeof(out->transaction_status), get_scalar(t, "transactionStatus"), &ok);
	copy_id(out->submit_time_utc, sizeof(out->submit_time_utc), get_scalar(t, "submitTimeUTC"), &ok);
	copy_id(out->auth_code, sizeof(out->auth_code), get_scalar(t, "authCode"), &ok);
	copy_id(out->avs_response, sizeof(out->avs_response), get_scalar(t, "AVSResponse"), &ok);
	copy_id(out->card_code_response, sizeof(out->card_code_response), get_scalar(t, "cardCodeResponse"), &ok);
	copy_id(out->batch_id, sizeof(out->batch_id), get_scalar(batch, "batchId"), &ok);
	copy_id(out->settlement_state, sizeof(out->settlement_state), get_scalar(batch, "settlementState"), &ok);
	copy_id(out->settlement_time_utc, sizeof(out->settlement_time_utc), get_scalar(batch, "settlementTimeUTC"), &ok);
	copy_id(out->invoice_number, sizeof(out->invoice_number), get_scalar(order, "invoiceNumber"), &ok);
	copy_text(out->description, sizeof(out->description), get_scalar(order, "description"));
	copy_id(out->requested_amount, sizeof(out->requested_amount), get_scalar(t, "requestedAmount"), &ok);
	copy_id(out->auth_amount, sizeof(out->auth_amount), get_scalar(t, "authAmount"), &ok);
	copy_id(out->settle_amount, sizeof(out->settle_amount), get_scalar(t, "settleAmount"), &ok);
	if (card != NULL)
	{
		copy_id(out->account_number, sizeof(out->account_number), get_scalar(card, "cardNumber"), &ok);
		copy_id(out->expiration_date, sizeof(out->expiration_date), get_scalar(card, "expirationDate"), &ok);
		copy_id(out->account_type, sizeof(out->account_type), get_scalar(card, "cardType"), &ok);
	}
	else if (bank != NULL)
	{
		copy_id(out->account_number, sizeof(out->account_number), get_scalar(bank, "accountNumber"), &ok);
		copy_id(out->account_type, sizeof(out->account_type), "eCheck", &ok);
	}
	copy_id(out->customer_id, sizeof(out->customer_id), get_scalar(customer, "id"), &ok);
	copy_id(out->customer_profile_id, sizeof(out->customer_profile_id), get_scalar(profile, "customerProfileId"), &ok);
	copy_id(out->customer_payment_profile_id, sizeof(out->customer_payment_profile_id),
			get_scalar(profile, "customerPaymentProfileId"), &ok);
	copy_id(out->network_trans_id, sizeof(out->network_trans_id), get_scalar(t, "networkTransId"), &ok);
	return ok;
}

/* Parse a getTransactionDetails reply. */
bool
anet_parse_transaction_details_response(const char *body, size_t len,
										AnetTxnDetails *out)
{
	json_object *root = parse_body(body, len);
	json_object *t;
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (root == NULL)
		return false;
	ok = read_status(root, &out->status);
	if (ok)
	{
		t = get_object(root, "transaction");
		if (t != NULL && out->status.ok)
			ok = out->found = read_details(t, out);
		else if (out->status.ok)
			ok = false;			/* "Ok" without a transaction */
	}
	json_object_put(root);
	if (!ok)
	{
		memset(out, 0, sizeof(*out));
		return false;
	}
	return true;
}

/* ----------------------------------------------------------------
 * Transaction lists
 * ----------------------------------------------------------------
 */

/* Free a transaction list's items; safe on a zeroed or freed list. */
void
anet_txn_list_free(AnetTxnList *list)
{
	if (list == NULL)
		return;
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* One transactionSummaryType. */
static bool
read_summary(json_object *t, AnetTxnSummary *s)
{
	json_object *profile = get_object(t, "profile");
	bool		ok = true;

	copy_id(s->trans_id, sizeof(s->trans_id), get_scalar(t, "transId"), &ok);
	copy_id(s->submit_time_utc, sizeof(s->submit_time_utc), get_scalar(t, "submitTimeUTC"), &ok);
	copy_id(s->transaction_status, sizeof(s->transaction_status), get_scalar(t, "transactionStatus"), &ok);
	copy_id(s->invoice_number, sizeof(s->invoice_number), get_scalar(t, "invoiceNumber"), &ok);
	copy_id(s->account_type, sizeof(s->account_type), get_scalar(t, "accountType"), &ok);
	copy_id(s->account_number, sizeof(s->account_number), get_scalar(t, "accountNumber"), &ok);
	copy_id(s->settle_amount, sizeof(s->settle_amount), get_scalar(t, "settleAmount"), &ok);
	copy_id(s->customer_profile_id, sizeof(s->customer_profile_id), get_scalar(profile, "customerProfileId"), &ok);
	copy_id(s->customer_payment_profile_id, sizeof(s->customer_payment_profile_id),
			get_scalar(profile, "customerPaymentProfileId"), &ok);
	return ok && s->trans_id[0] != '\0';
}

/*
 * A list member of a reply is an array of objects, or a single object when
 * there is one.  Allocates *items for its *n elements (zeroed; NULL when
 * none); false when it is neither or out of memory.
 */
static bool
alloc_one_or_many(json_object *v, size_t elem_size, void **items, size_t *n)
{
	*items = NULL;
	if (json_object_is_type(v, json_type_array))
		*n = json_object_array_length(v);
	else if (json_object_is_type(v, json_type_object))
		*n = 1;
	else
	{
		*n = 0;
		return false;
	}
	if (*n > 0 && (*items = calloc(*n, elem_size)) == NULL)
		return false;
	return true;
}

/* The i-th element of such a member. */
static json_object *
one_or_many_get(json_object *v, size_t i)
{
	return json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
}

/*
 * Both list replies share one shape: "transactions" (an array, or a single
 * object), "totalNumInResultSet", messages.  No transactions (I00004) is
 * an empty list.
 */
bool
anet_parse_transaction_list_response(const char *body, size_t len, AnetTxnList *out)
{
	json_object *root = parse_body(body, len);
	json_object *v = NULL;
	bool		ok;

	memset(out, 0, sizeof(*out));
	out->total_num_in_result_set = -1;
	if (root == NULL)
		return false;
	ok = read_status(root, &out->status);
	if (ok && json_object_object_get_ex(root, "transactions", &v) && v != NULL)
	{
		size_t		n;

		ok = alloc_one_or_many(v, sizeof(AnetTxnSummary), (void **) &out->items, &n);
		for (size_t i = 0; ok && i < n; i++)
		{
			json_object *t = one_or_many_get(v, i);

			if (t == NULL || !json_object_is_type(t, json_type_object) ||
				!read_summary(t, &out->items[i]))
				ok = false;
			else
				out->count = i + 1;
		}
	}
	if (ok)
		out->total_num_in_result_set =
			count_or_minus_one(get_scalar(root, "totalNumInResultSet"));
	json_object_put(root);
	if (!ok)
	{
		anet_txn_list_free(out);
		memset(out, 0, sizeof(*out));
		out->total_num_in_result_set = -1;
	}
	return ok;
}

/* The unsettled list has the same reply shape as the batch list. */
bool
anet_parse_unsettled_transaction_list_response(const char *body, size_t len,
											   AnetTxnList *out)
{
	return anet_parse_transaction_list_response(body, len, out);
}

/* ----------------------------------------------------------------
 * getSettledBatchListResponse
 * ----------------------------------------------------------------
 */

/* Free a batch list and each batch's statistics; safe when zeroed. */
void
anet_batch_list_free(AnetBatchList *list)
{
	size_t		i;

	if (list == NULL)
		return;
	for (i = 0; list->items != NULL && i < list->count; i++)
		free(list->items[i].statistics);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

/* One batchDetailsType with its statistics array. */
static bool
read_batch(json_object *b, AnetBatch *out)
{
	json_object *stats = get_array(b, "statistics");
	bool		ok = true;
	size_t		n;
	size_t		i;

	copy_id(out->batch_id, sizeof(out->batch_id), get_scalar(b, "batchId"), &ok);
	copy_id(out->settlement_time_utc, sizeof(out->settlement_time_utc), get_scalar(b, "settlementTimeUTC"), &ok);
	copy_id(out->settlement_state, sizeof(out->settlement_state), get_scalar(b, "settlementState"), &ok);
	copy_id(out->payment_method, sizeof(out->payment_method), get_scalar(b, "paymentMethod"), &ok);
	copy_id(out->market_type, sizeof(out->market_type), get_scalar(b, "marketType"), &ok);
	copy_id(out->product, sizeof(out->product), get_scalar(b, "product"), &ok);
	if (!ok || out->batch_id[0] == '\0')
		return false;
	if (stats == NULL || (n = json_object_array_length(stats)) == 0)
		return true;
	out->statistics = calloc(n, sizeof(AnetBatchStatistic));
	if (out->statistics == NULL)
		return false;
	for (i = 0; i < n; i++)
	{
		json_object *s = json_object_array_get_idx(stats, i);
		AnetBatchStatistic *st = &out->statistics[i];

		if (s == NULL || !json_object_is_type(s, json_type_object))
			return false;
		copy_id(st->account_type, sizeof(st->account_type), get_scalar(s, "accountType"), &ok);
		copy_id(st->charge_amount, sizeof(st->charge_amount), get_scalar(s, "chargeAmount"), &ok);
		copy_id(st->refund_amount, sizeof(st->refund_amount), get_scalar(s, "refundAmount"), &ok);
		st->charge_count = count_or_minus_one(get_scalar(s, "chargeCount"));
		st->refund_count = count_or_minus_one(get_scalar(s, "refundCount"));
		st->void_count = count_or_minus_one(get_scalar(s, "voidCount"));
		st->decline_count = count_or_minus_one(get_scalar(s, "declineCount"));
		st->error_count = count_or_minus_one(get_scalar(s, "errorCount"));
		if (!ok)
			return false;
		out->n_statistics = i + 1;
	}
	return true;
}

/* Parse a getSettledBatchList reply ("batchList" absent = no batches). */
bool
anet_parse_settled_batch_list_response(const char *body, size_t len,
									   AnetBatchList *out)
{
	json_object *root = parse_body(body, len);
	json_object *v = NULL;
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (root == NULL)
		return false;
	ok = read_status(root, &out->status);
	if (ok && json_object_object_get_ex(root, "batchList", &v) && v != NULL)
	{
		size_t		n;

		ok = alloc_one_or_many(v, sizeof(AnetBatch), (void **) &out->items, &n);
		for (size_t i = 0; ok && i < n; i++)
		{
			json_object *b = one_or_many_get(v, i);

			/* count first, so a failed batch's statistics are freed too */
			out->count = i + 1;
			if (b == NULL || !json_object_is_type(b, json_type_object) ||
				!read_batch(b, &out->items[i]))
				ok = false;
		}
	}
	json_object_put(root);
	if (!ok)
	{
		anet_batch_list_free(out);
		memset(out, 0, sizeof(*out));
	}
	return ok;
}
