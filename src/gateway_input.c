/*-------------------------------------------------------------------------
 *
 * gateway_input.c
 *	  Refuse at the call what the gateway would refuse after the commit.
 *
 * A payment's request is built by the worker after the caller's COMMIT;
 * anything the gateway cannot take then fails in the worker, when the
 * caller can no longer correct it.  payments._check_gateway_input() runs
 * at the top of the API functions and checks every caller-given text the
 * request will carry (description, the customer fields, the correlation
 * id sent as refId) and the amount against the limits the request
 * builder applies (src/anet/anet_fields.c, their one home), and the
 * description, the customer object, the customer's email and name and the
 * profile ids for card numbers and the customer object against metadata's
 * bounds (free_text.c, their home): characters
 * XML 1.0 cannot carry (SQLSTATE 22Y24), lengths in characters (22001),
 * amounts of more digits than the gateway takes (22Y26).  Messages name
 * the field, its limit and the offending character's code point and
 * position, never the value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "amount.h"
#include "anet_fields.h"
#include "anet_protocol.h"
#include "currency.h"
#include "errcodes.h"
#include "free_text.h"
#include "schema_version.h"

PG_FUNCTION_INFO_V1(pay_check_gateway_input);
PG_FUNCTION_INFO_V1(pay_check_customer_input);

/*
 * Text in the server encoding as UTF-8, the request's encoding, and its
 * length.  The result is value itself (not NUL-terminated) when no
 * conversion was needed.
 */
static char *
to_utf8(const char *value, int len, size_t *ulen)
{
	char	   *utf8 = pg_server_to_any(value, len, PG_UTF8);

	*ulen = (utf8 == value) ? (size_t) len : strlen(utf8);
	return utf8;
}

/*
 * Check one text (server encoding) for the gateway field f; name is how
 * the caller knows it ("description", "customer.zip").
 */
static void
check_text(const char *name, AnetTextFieldId f, const char *value, int len)
{
	size_t		ulen;
	char	   *utf8 = to_utf8(value, len, &ulen);
	size_t		nchars = 0;
	unsigned int bad_cp = 0;
	size_t		max = anet_text_fields[f].max_chars;

	switch (anet_text_check(utf8, ulen, &nchars, &bad_cp))
	{
		case ANET_TEXT_OK:
			break;
		case ANET_TEXT_BAD_UTF8:
			/* cannot happen for server text converted to UTF-8 */
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("%s is not valid UTF-8", name)));
			break;
		case ANET_TEXT_BAD_CHAR:
			ereport(ERROR,
					(errcode(ERRCODE_PAY_GATEWAY_CHARACTER),
					 errmsg("%s contains a character the gateway cannot carry", name),
					 errdetail("Character %zu is U+%04X; the gateway reads requests as XML, which cannot carry control characters other than tab, line feed and carriage return, nor U+FFFE or U+FFFF.",
							   nchars + 1, bad_cp),
					 errhint("Remove the control characters from %s.", name)));
			break;
	}
	if (nchars > max)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is longer than %zu characters", name, max),
				 errdetail("It has %zu characters; the gateway's %s takes at most %zu.",
						   nchars, anet_text_fields[f].path, max),
				 errhint("Shorten %s to at most %zu characters.", name, max)));
	if (utf8 != value)
		pfree(utf8);
}

/* The customer object's fields that the request carries. */
static void
check_customer(Jsonb *customer)
{
	for (int f = 0; f < ANET_FIELD_COUNT; f++)
	{
		const char *key = anet_text_fields[f].customer_key;
		JsonbValue	k;
		JsonbValue *v;
		char	   *name;

		if (key == NULL)
			continue;
		k.type = jbvString;
		k.val.string.val = (char *) key;
		k.val.string.len = strlen(key);
		v = findJsonbValueFromContainer(&customer->root, JB_FOBJECT, &k);
		if (v == NULL || v->type == jbvNull)
			continue;
		name = psprintf("customer.%s", key);
		if (v->type == jbvString)
			check_text(name, (AnetTextFieldId) f, v->val.string.val, v->val.string.len);
		else if (v->type == jbvNumeric)
		{
			char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																NumericGetDatum(v->val.numeric)));

			check_text(name, (AnetTextFieldId) f, s, strlen(s));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a string", name),
					 errdetail("The gateway's %s is text; a JSON boolean, object or array cannot be sent.",
							   anet_text_fields[f].path)));
		pfree(name);
	}
}

/* The amount as the request writes it: at most ANET_AMOUNT_MAX_DIGITS digits. */
static void
check_amount(const PayAmount *amount)
{
	const Currency *cur = pay_amount_currency_of(amount);
	char		buf[64];
	size_t		digits;

	if (cur->exponent > ANET_AMOUNT_MAX_DECIMALS)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_AMOUNT_TOO_LARGE),
				 errmsg("amounts in %s cannot be sent to the gateway", cur->code),
				 errdetail("The gateway takes amounts of at most %d decimal places; %s has %d.",
						   ANET_AMOUNT_MAX_DECIMALS, cur->code, cur->exponent)));
	if (anet_amount_to_decimal(amount->minor, cur->exponent, buf, sizeof(buf)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_AMOUNT_TOO_LARGE),
				 errmsg("amount cannot be sent to the gateway")));
	digits = anet_decimal_digits(buf);
	if (digits > ANET_AMOUNT_MAX_DIGITS)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_AMOUNT_TOO_LARGE),
				 errmsg("amount is larger than the gateway accepts"),
				 errdetail("The gateway takes amounts of at most %d digits; this amount in %s has %zu.",
						   ANET_AMOUNT_MAX_DIGITS, cur->code, digits)));
}

/*
 * A customer profile or payment profile id: numericString, 1 to 20 digits,
 * as the gateway writes them (no leading zero: "0500001" would pass a
 * comparison with the ids of the merchant's customers as text while the
 * gateway may read it as the number 500001), and no card number (22Y17):
 * the id is kept on the payment.  The schema sets no length, so a bound
 * under the 12 digits of the shortest card number could refuse an id the
 * gateway one day issues (its transaction ids went from 10 to 11 digits);
 * the free-text check refuses exactly what a caller's text is refused
 * for, and never an id of fewer than 14 digits (today's have up to 10).
 */
static void
check_profile_id(const char *name, text *t)
{
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	bool		ok = len >= 1 && len <= ANET_PROFILE_ID_MAX && s[0] != '0';

	free_text_check(name, s, len, 0);
	for (int i = 0; ok && i < len; i++)
		ok = s[i] >= '0' && s[i] <= '9';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_PAYMENT_METHOD),
				 errmsg("invalid %s", name),
				 errdetail("A %s is 1 to %d digits without a leading zero, as the gateway returned it.",
						   name, ANET_PROFILE_ID_MAX)));
}

/*
 * payments._check_gateway_input(amount, description, customer,
 * correlation_id, customer_profile_id, payment_profile_id): raises the
 * first problem found; NULL arguments are not checked.
 */
Datum
pay_check_gateway_input(PG_FUNCTION_ARGS)
{
	payments_require_schema();
	if (!PG_ARGISNULL(0))
		check_amount(PG_GETARG_PAYAMOUNT_P(0));
	if (!PG_ARGISNULL(1))
	{
		text	   *t = PG_GETARG_TEXT_PP(1);

		free_text_check("description", VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0);
		check_text("description", ANET_FIELD_DESCRIPTION, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	if (!PG_ARGISNULL(2))
	{
		Jsonb	   *customer = PG_GETARG_JSONB_P(2);

		if (JB_ROOT_IS_OBJECT(customer))
		{
			check_customer(customer);
			/* every key is kept: metadata's bounds, no card number */
			free_text_check_object("customer", customer);
		}
	}
	if (!PG_ARGISNULL(3))
	{
		text	   *t = PG_GETARG_TEXT_PP(3);
		size_t		ulen;
		char	   *utf8 = to_utf8(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &ulen);
		size_t		nchars = 0;
		unsigned int bad_cp = 0;

		/*
		 * no length here: one over 20 characters is sent as its digest
		 * (_correlation_id refused one over 200, free_text.c)
		 */
		if (anet_text_check(utf8, ulen, &nchars, &bad_cp) != ANET_TEXT_OK)
			ereport(ERROR,
					(errcode(ERRCODE_PAY_GATEWAY_CHARACTER),
					 errmsg("correlation id contains a character the gateway cannot carry"),
					 errdetail("Character %zu is U+%04X; the correlation id is sent to the gateway as refId, in XML, which cannot carry control characters other than tab, line feed and carriage return, nor U+FFFE or U+FFFF.",
							   nchars + 1, bad_cp),
					 errhint("Pass a correlation id (argument correlation_id, x-request-id header or payments.correlation_id setting) of printable characters.")));
	}
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
		check_profile_id("customer profile id", PG_GETARG_TEXT_PP(4));
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
		check_profile_id("payment profile id", PG_GETARG_TEXT_PP(5));
	PG_RETURN_VOID();
}

/*
 * payments._check_customer_profile_input(email, name): a customer's email
 * and name, against the customer profile fields they fill (profile.email,
 * profile.description); NULL arguments are not checked.
 */
Datum
pay_check_customer_input(PG_FUNCTION_ARGS)
{
	payments_require_schema();
	if (!PG_ARGISNULL(0))
	{
		text	   *t = PG_GETARG_TEXT_PP(0);

		free_text_check("email", VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0);
		check_text("email", ANET_FIELD_PROFILE_EMAIL, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	if (!PG_ARGISNULL(1))
	{
		text	   *t = PG_GETARG_TEXT_PP(1);

		free_text_check("name", VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 0);
		check_text("name", ANET_FIELD_PROFILE_DESCRIPTION, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	PG_RETURN_VOID();
}
