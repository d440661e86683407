/*-------------------------------------------------------------------------
 *
 * free_text.c
 *	  Card numbers and size limits in the API's free-text input.
 *
 * A card number is kept only sealed (pay_card, the vault): none may reach
 * a table, an event, the gateway exchange log or a gateway request in
 * clear (DESIGN.md §3.2).  The audit trigger masks what it copies, but a
 * description, a metadata value, a customer field, an idempotency key or a
 * correlation id is also kept in the rows themselves, in events and in
 * the request the worker sends.  So the API refuses, before anything is
 * stored, every text a caller gives that holds a card number: digits with
 * single spaces or dashes between groups, Luhn-valid, of a known brand and
 * of a length it issues (card_text_contains_issued_number: not a phone
 * number with its country code, not an EAN-13 barcode, which the log hook
 * and the audit trigger mask all the same), with SQLSTATE 22Y17 and a
 * message that names the field and never quotes it.  The correlation id
 * is the exception: it comes from
 * infrastructure (PostgREST's x-request-id or traceparent header, the
 * payments.correlation_id setting) rather than from the business caller,
 * so its card numbers are masked ('X' for each digit) instead of failing
 * the request.  Its length is bounded, though (at most 200 characters, as
 * Heroku's router bounds X-Request-Id; a UUID has 36, a W3C traceparent
 * 55): it is copied into every row, event and audit row the request makes,
 * and an id longer than that is no identifier any infrastructure sends.
 * One over the bound is refused with 22001 (the argument and the header
 * by payments._check_correlation_id() and the audit trigger, the setting
 * as it is set), not cut: a cut id would no longer be the one the
 * caller's own logs have.
 *
 * A text that is exactly one identifier is not checked
 * (free_text_is_identifier): a UUID (32 hex digits, with or without the
 * dashes of its 8-4-4-4-12 form) or a W3C traceparent (the header
 * PostgREST passes on as the correlation id).  About one random UUID in
 * 550 has dash-separated digit groups that pass for a card number (one in
 * 950 without the dashes, a run of digits between letters), and one
 * random traceparent in 520; masked, the id would no longer be the one
 * the caller's own logs and traces have, and a UUID is what the API asks
 * for as an idempotency key.  Masking is against a card number that got
 * into a text by accident; a caller set on keeping one can spell it in
 * letters, and an identifier's hex can hold one between its letters.
 *
 * Metadata (and the customer object) is bounded as Stripe bounds it, since
 * a payment copies it into several rows, events and audit rows: at most
 * 50 keys, keys of at most 40 characters, values that are strings,
 * numbers, booleans or null, strings (and numbers as written) of at most
 * 500 characters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "card_brand.h"
#include "errcodes.h"
#include "free_text.h"

PG_FUNCTION_INFO_V1(pay_check_text);
PG_FUNCTION_INFO_V1(pay_check_metadata);
PG_FUNCTION_INFO_V1(pay_mask_card_numbers);
PG_FUNCTION_INFO_V1(pay_check_correlation_id);

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Whether s is exactly one UUID: 32 hex digits, as they are or in the
 * canonical 8-4-4-4-12 groups.
 */
static bool
is_uuid(const char *s, int len)
{
	bool		dashed = (len == 36);

	if (len != 36 && len != 32)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (dashed && (i == 8 || i == 13 || i == 18 || i == 23))
		{
			if (s[i] != '-')
				return false;
		}
		else if (!is_hex(s[i]))
			return false;
	}
	return true;
}

/*
 * Whether s[from..from+n) is n lowercase hex digits (digits_only: n
 * decimal digits), and (nonzero) not all of them '0'.
 */
static bool
is_lower_hex_field(const char *s, int from, int n, bool nonzero, bool digits_only)
{
	bool		zero = true;

	for (int i = from; i < from + n; i++)
	{
		if (!(s[i] >= '0' && s[i] <= '9') &&
			(digits_only || !(s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			zero = false;
	}
	return !(nonzero && zero);
}

/*
 * Whether s is exactly one W3C traceparent (Trace Context, Level 1:
 * https://www.w3.org/TR/trace-context/#traceparent-header): version,
 * trace-id, parent-id and flags, 2, 32, 16 and 2 lowercase hex digits
 * joined by dashes, 55 characters; the version not ff, neither id all
 * zeros.  That is version 00's whole form, and the part a later version
 * keeps in front of fields of its own: a later version in these 55
 * characters is taken, one with more after them is not (what follows is
 * not known).  Uppercase hex is no traceparent (the grammar has lowercase
 * only; a tracer ignores such a header), so it is checked as any text.
 */
static bool
is_traceparent(const char *s, int len)
{
	return len == 55 &&
		s[2] == '-' && s[35] == '-' && s[52] == '-' &&
		is_lower_hex_field(s, 0, 2, false, false) && strncmp(s, "ff", 2) != 0 &&
		is_lower_hex_field(s, 3, 32, true, false) &&
		is_lower_hex_field(s, 36, 16, true, false) &&
		is_lower_hex_field(s, 53, 2, false, false);
}

/*
 * Whether s is exactly one identifier, kept as it is wherever card numbers
 * are refused or masked in a caller's text, a correlation id and an audit
 * row's values: a UUID, or a W3C traceparent whose parent-id is not 16
 * decimal digits.  That field has a card number's length, and digits only
 * is how a card number put into one looks: such a traceparent is checked
 * as any text, so a card number there is masked.  A random parent-id is
 * all decimal once in 1,900 ((10/16)^16), and that id is masked only when
 * it also passes for a card number (36 random traceparents in 1,000,000).
 */
bool
free_text_is_identifier(const char *s, int len)
{
	return is_uuid(s, len) ||
		(is_traceparent(s, len) && !is_lower_hex_field(s, 36, 16, false, true));
}

/*
 * Whether a caller's text holds a card number of a length its brand issues
 * (a lone UUID or traceparent does not; nor does a phone number or a barcode, which the
 * masking of logs and audit rows would mask all the same).
 */
bool
free_text_holds_card(const char *s, int len)
{
	return !free_text_is_identifier(s, len) && card_text_contains_issued_number(s, len);
}

/*
 * Mask the card numbers of s in place ('X' for each digit, the length
 * kept), as the log hook and the audit trigger find them (wider than
 * free_text_holds_card: masking a phone number costs nothing); returns
 * whether there were any.
 */
bool
free_text_mask(char *s, int len)
{
	return !free_text_is_identifier(s, len) && card_text_mask_numbers(s, len);
}

/*
 * How many characters a correlation id of len bytes has when that is more
 * than FREE_TEXT_CORRELATION_ID_MAX_CHARS, else 0 (a character is at
 * least one byte: a short id is not counted).
 */
int
free_text_correlation_id_excess(const char *s, int len)
{
	int			nchars;

	if (len <= FREE_TEXT_CORRELATION_ID_MAX_CHARS)
		return 0;
	nchars = pg_mbstrlen_with_len(s, len);
	return nchars > FREE_TEXT_CORRELATION_ID_MAX_CHARS ? nchars : 0;
}

/*
 * Refuse a correlation id over FREE_TEXT_CORRELATION_ID_MAX_CHARS
 * characters (22001).  The statement is kept out of the log: the id is
 * checked before its card numbers are masked, and the statement may hold
 * it.
 */
void
free_text_check_correlation_id(const char *s, int len)
{
	int			nchars = free_text_correlation_id_excess(s, len);

	if (nchars > 0)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("correlation id is longer than %d characters", FREE_TEXT_CORRELATION_ID_MAX_CHARS),
				 errdetail("It has %d characters; a correlation id is kept on every row, event and audit row of the request.",
						   nchars),
				 errhint("Pass a correlation id (argument correlation_id, X-Request-Id or traceparent header, payments.correlation_id setting) of at most %d characters, such as a UUID.",
						 FREE_TEXT_CORRELATION_ID_MAX_CHARS),
				 errhidestmt(true)));
}

static void
card_in_text_error(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAY_CARD_IN_TEXT),
			 errmsg("%s holds a card number", name),
			 errdetail("Card numbers are kept only sealed: digits (spaces or dashes between groups) that pass the Luhn check and have the start and length of a card brand's numbers are refused, and nothing of the call is stored."),
			 errhint("Remove the card number from %s; pass a card only as card (pay_card) or opaque_data.", name),
			 errhidestmt(true),
			 errhidecontext(true)));
}

/*
 * Check one caller's text: no card number, and (max_chars > 0) at most
 * max_chars characters.
 */
void
free_text_check(const char *name, const char *s, int len, int max_chars)
{
	if (free_text_holds_card(s, len))
		card_in_text_error(name);
	if (max_chars > 0)
	{
		int			nchars = pg_mbstrlen_with_len(s, len);

		if (nchars > max_chars)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("%s is longer than %d characters", name, max_chars),
					 errdetail("It has %d characters.", nchars),
					 errhint("Shorten %s to at most %d characters.", name, max_chars)));
	}
}

/* A JSON scalar's text: a string's, or a number as written; else NULL. */
static char *
scalar_text(JsonbValue *v, int *len)
{
	if (v->type == jbvString)
	{
		*len = v->val.string.len;
		return v->val.string.val;
	}
	if (v->type == jbvNumeric)
	{
		char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v->val.numeric)));

		*len = strlen(s);
		return s;
	}
	return NULL;
}

/*
 * Check a metadata object (or the customer object, name says which): an
 * object of at most FREE_TEXT_MAX_KEYS keys of at most
 * FREE_TEXT_KEY_MAX_CHARS characters, each value a string, number, boolean
 * or null of at most FREE_TEXT_VALUE_MAX_CHARS characters, no card number
 * in a key or a value.  A key is named in a message only once it is known
 * to be short and to hold no card number.
 */
void
free_text_check_object(const char *name, Jsonb *jb)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			nkeys;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", name),
				 errhint("Pass an object such as {\"order\": \"A-17\"}.")));
	nkeys = JB_ROOT_COUNT(jb);
	if (nkeys > FREE_TEXT_MAX_KEYS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has more than %d keys", name, FREE_TEXT_MAX_KEYS),
				 errdetail("It has %d keys.", nkeys),
				 errhint("Keep at most %d keys in %s; store larger data in your own tables, under an id kept here.",
						 FREE_TEXT_MAX_KEYS, name)));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			len = 0;
		char	   *s;

		if (tok == WJB_KEY)
		{
			int			nchars = pg_mbstrlen_with_len(v.val.string.val, v.val.string.len);

			key = NULL;
			if (free_text_holds_card(v.val.string.val, v.val.string.len))
				card_in_text_error(psprintf("a key of %s", name));
			if (nchars > FREE_TEXT_KEY_MAX_CHARS)
				ereport(ERROR,
						(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
						 errmsg("a key of %s is longer than %d characters", name, FREE_TEXT_KEY_MAX_CHARS),
						 errdetail("It has %d characters.", nchars),
						 errhint("Use keys of at most %d characters in %s.", FREE_TEXT_KEY_MAX_CHARS, name)));
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		/* skipNested: an object or array value comes as one binary value */
		if (v.type == jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s values must be strings, numbers, booleans or null", name),
					 errdetail("The value of key \"%s\" is a JSON object or array.", key),
					 errhint("Flatten %s into keys of their own, or keep an id of the nested data.", name)));
		if ((s = scalar_text(&v, &len)) == NULL)
			continue;
		if (free_text_holds_card(s, len))
			card_in_text_error(psprintf("%s.%s", name, key));
		if (len > FREE_TEXT_VALUE_MAX_CHARS &&
			pg_mbstrlen_with_len(s, len) > FREE_TEXT_VALUE_MAX_CHARS)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("%s.%s is longer than %d characters", name, key, FREE_TEXT_VALUE_MAX_CHARS),
					 errdetail("It has %d characters.", pg_mbstrlen_with_len(s, len)),
					 errhint("Keep %s values to at most %d characters.", name, FREE_TEXT_VALUE_MAX_CHARS)));
	}
}

/*
 * payments._check_text(field, value, max_chars): raises 22Y17 when value
 * holds a card number, 22001 when it is longer than max_chars characters
 * (NULL: no bound); a NULL value is not checked.
 */
Datum
pay_check_text(PG_FUNCTION_ARGS)
{
	char	   *name;
	text	   *t;

	if (PG_ARGISNULL(1))
		PG_RETURN_VOID();
	name = PG_ARGISNULL(0) ? "text" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	t = PG_GETARG_TEXT_PP(1);
	free_text_check(name, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
					PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2));
	PG_RETURN_VOID();
}

/*
 * payments._check_metadata(metadata): the metadata rules above; NULL is
 * not checked.
 */
Datum
pay_check_metadata(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		free_text_check_object("metadata", PG_GETARG_JSONB_P(0));
	PG_RETURN_VOID();
}

/* t with the digits of its card numbers masked: t itself when it holds none. */
text *
free_text_masked(text *t)
{
	text	   *copy = cstring_to_text_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	if (free_text_mask(VARDATA(copy), VARSIZE(copy) - VARHDRSZ))
		return copy;
	pfree(copy);
	return t;
}

/*
 * payments._mask_card_numbers(text): the text with the digits of its card
 * numbers replaced by X (the text itself when it holds none).
 */
Datum
pay_mask_card_numbers(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(free_text_masked(PG_GETARG_TEXT_PP(0)));
}

/*
 * payments._check_correlation_id(text): the correlation id as it is kept:
 * 22001 when it is longer than FREE_TEXT_CORRELATION_ID_MAX_CHARS
 * characters, else the text with the digits of its card numbers masked.
 */
Datum
pay_check_correlation_id(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	free_text_check_correlation_id(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	PG_RETURN_TEXT_P(free_text_masked(t));
}
