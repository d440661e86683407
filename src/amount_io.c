/*-------------------------------------------------------------------------
 *
 * amount_io.c
 *	  pay_amount input and output: text, binary, numeric, minor units.
 *
 * Text input accepts what people type: "12.34 USD", "USD 12.34", a sign in
 * front of the number or of the whole value, any amount of surrounding
 * space, and the code in either case.  It never rounds: more decimals than
 * the currency has (even zeros, since "1.000 USD" may well mean a thousand)
 * is an error.  Error messages do not echo the input, which could be a card
 * number typed into the wrong field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "amount.h"
#include "amount_parse.h"
#include "errcodes.h"

PG_FUNCTION_INFO_V1(pay_amount_in);
PG_FUNCTION_INFO_V1(pay_amount_out);
PG_FUNCTION_INFO_V1(pay_amount_recv);
PG_FUNCTION_INFO_V1(pay_amount_send);
PG_FUNCTION_INFO_V1(pay_amount_from_numeric);
PG_FUNCTION_INFO_V1(pay_amount_from_minor);
PG_FUNCTION_INFO_V1(pay_amount_to_numeric);
PG_FUNCTION_INFO_V1(pay_amount_currency);
PG_FUNCTION_INFO_V1(pay_amount_minor_units);
PG_FUNCTION_INFO_V1(pay_currency_exponent);
PG_FUNCTION_INFO_V1(pay_currencies);

/* Build an amount, palloc'd, with the padding zeroed. */
PayAmount *
pay_amount_make(int64 minor, const Currency *currency)
{
	PayAmount  *a = palloc0(sizeof(PayAmount));

	a->minor = minor;
	memcpy(a->currency, currency->code, 3);
	return a;
}

/* The table entry of an amount's currency (checked when it was made). */
const Currency *
pay_amount_currency_of(const PayAmount *a)
{
	const Currency *c = currency_by_code(a->currency, 3);

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pay_amount value has an unknown currency code")));
	return c;
}

static void
syntax_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type pay_amount"),
			 errdetail("%s", detail),
			 errhint("Write an amount and an ISO 4217 currency code, for example '12.34 USD' or 'USD 12.34'.")));
}

static void
too_many_decimals(const Currency *c)
{
	if (c->exponent == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_TOO_MANY_DECIMALS),
				 errmsg("too many decimal places for currency %s", c->code),
				 errdetail("%s amounts are whole numbers without decimal places.", c->code)));
	ereport(ERROR,
			(errcode(ERRCODE_PAY_TOO_MANY_DECIMALS),
			 errmsg("too many decimal places for currency %s", c->code),
			 errdetail("%s amounts have at most %d decimal places; the value is never rounded.",
					   c->code, c->exponent)));
}

static void
not_a_number(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAY_NOT_A_NUMBER),
			 errmsg("pay_amount cannot be NaN or infinity"),
			 errdetail("An amount of money must be a finite number.")));
}

/*
 * Report a status of amount_parse.c as its error.  Returns only for
 * AMOUNT_OK.  c is the currency (for too many decimals), or NULL.
 */
static void
report_parse_status(AmountParseStatus st, const Currency *c)
{
	switch (st)
	{
		case AMOUNT_OK:
			return;
		case AMOUNT_EMPTY:
			syntax_error("The input is empty.");
			break;
		case AMOUNT_NOT_A_NUMBER:
			not_a_number();
			break;
		case AMOUNT_TWO_SIGNS:
			syntax_error("The amount has more than one sign.");
			break;
		case AMOUNT_LETTERS_FOR_NUMBER:
			syntax_error("A number was expected where letters were found.");
			break;
		case AMOUNT_POINT_WITHOUT_DIGIT:
			syntax_error("A decimal point must be followed by at least one digit.");
			break;
		case AMOUNT_NO_DIGITS:
			syntax_error("The amount has no digits.");
			break;
		case AMOUNT_GROUP_SEPARATOR:
			syntax_error("Digit group separators are not accepted; write 1234.56, not 1,234.56.");
			break;
		case AMOUNT_EXPONENT_NOTATION:
			syntax_error("Exponent notation is not accepted for amounts.");
			break;
		case AMOUNT_SIGN_AFTER_NUMBER:
			syntax_error("A sign must come before the number.");
			break;
		case AMOUNT_NO_CURRENCY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type pay_amount"),
					 errdetail("The currency code is missing."),
					 errhint("Write an amount and an ISO 4217 currency code, for example '12.34 USD'.")));
			break;
		case AMOUNT_TRAILING_CHARACTERS:
			syntax_error("Unexpected characters follow the amount.");
			break;
		case AMOUNT_TOO_MANY_DECIMALS:
			too_many_decimals(c);
			break;
		case AMOUNT_OUT_OF_RANGE:
			pay_amount_out_of_range();
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("unexpected pay_amount parse status %d", (int) st)));
}

/*
 * Parse the text form (grammar in amount_parse.c): syntax first, then
 * the currency, then the value in that currency.
 */
static PayAmount *
parse_amount(const char *s)
{
	AmountText	t;
	const Currency *c;
	int64_t		minor = 0;

	report_parse_status(amount_parse_text(s, &t), NULL);
	c = currency_lookup_or_error(t.code, t.code_len);
	report_parse_status(amount_digits_to_minor(&t, c->exponent, &minor), c);
	return pay_amount_make(minor, c);
}

/* Canonical text: "-12.34 USD", "1000 JPY", "0.005 KWD". */
static char *
format_amount(const PayAmount *a)
{
	const Currency *c = pay_amount_currency_of(a);
	uint64		mag = a->minor < 0 ? (uint64) (-(a->minor + 1)) + 1 : (uint64) a->minor;
	uint64		unit = amount_pow10[c->exponent];

	if (c->exponent == 0)
		return psprintf("%s" UINT64_FORMAT " %s", a->minor < 0 ? "-" : "", mag, c->code);
	return psprintf("%s" UINT64_FORMAT ".%0*llu %s",
					a->minor < 0 ? "-" : "",
					mag / unit, (int) c->exponent,
					(unsigned long long) (mag % unit), c->code);
}

Datum
pay_amount_in(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(parse_amount(PG_GETARG_CSTRING(0)));
}

Datum
pay_amount_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(format_amount(PG_GETARG_PAYAMOUNT_P(0)));
}

/* Binary form: int8 minor units, then the currency code as text. */
Datum
pay_amount_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int64		minor = pq_getmsgint64(buf);
	const char *code = pq_getmsgstring(buf);

	PG_RETURN_PAYAMOUNT_P(pay_amount_make(minor,
										  currency_lookup_or_error(code, strlen(code))));
}

Datum
pay_amount_send(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint64(&buf, a->minor);
	pq_sendstring(&buf, pay_amount_currency_of(a)->code);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Look up a currency given as text. */
static const Currency *
currency_arg(text *t)
{
	return currency_lookup_or_error(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * Convert a finite numeric that must be a whole number into int64.
 */
static int64
numeric_to_int64_or_error(Numeric n)
{
	static Numeric max_n = NULL;
	static Numeric min_n = NULL;

	if (max_n == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		max_n = int64_to_numeric(PG_INT64_MAX);
		min_n = int64_to_numeric(PG_INT64_MIN);
		MemoryContextSwitchTo(old);
	}
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n), NumericGetDatum(max_n))) > 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n), NumericGetDatum(min_n))) < 0)
		pay_amount_out_of_range();
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
}

/*
 * pay_amount(amount numeric, currency text): exact conversion.  Trailing
 * zeros in the numeric's scale are fine (12.340 is 12.34); a value that
 * needs more decimals than the currency has is an error.
 */
Datum
pay_amount_from_numeric(PG_FUNCTION_ARGS)
{
	Numeric		n = PG_GETARG_NUMERIC(0);
	const Currency *c = currency_arg(PG_GETARG_TEXT_PP(1));
	Numeric		scaled;
	Numeric		whole;

	if (numeric_is_nan(n) || numeric_is_inf(n))
		not_a_number();
	scaled = numeric_mul_opt_error(n, int64_to_numeric((int64) amount_pow10[c->exponent]), NULL);
	whole = DatumGetNumeric(DirectFunctionCall2(numeric_trunc, NumericGetDatum(scaled),
												Int32GetDatum(0)));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(scaled),
										  NumericGetDatum(whole))) != 0)
		too_many_decimals(c);
	PG_RETURN_PAYAMOUNT_P(pay_amount_make(numeric_to_int64_or_error(whole), c));
}

/* pay_amount_from_minor(minor_units bigint, currency text) */
Datum
pay_amount_from_minor(PG_FUNCTION_ARGS)
{
	int64		minor = PG_GETARG_INT64(0);
	const Currency *c = currency_arg(PG_GETARG_TEXT_PP(1));

	PG_RETURN_PAYAMOUNT_P(pay_amount_make(minor, c));
}

/* The amount as numeric in major units, with the currency's scale. */
Datum
pay_amount_to_numeric(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);
	const Currency *c = pay_amount_currency_of(a);

	PG_RETURN_NUMERIC(int64_div_fast_to_numeric(a->minor, c->exponent));
}

Datum
pay_amount_currency(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	PG_RETURN_TEXT_P(cstring_to_text(pay_amount_currency_of(a)->code));
}

Datum
pay_amount_minor_units(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(PG_GETARG_PAYAMOUNT_P(0)->minor);
}

Datum
pay_currency_exponent(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(currency_arg(PG_GETARG_TEXT_PP(0))->exponent);
}

/* pay_currencies(): the ISO 4217 table as rows. */
Datum
pay_currencies(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			count;
	const Currency *table = currency_table(&count);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < count; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(table[i].code);
		values[1] = Int32GetDatum(table[i].numeric);
		values[2] = Int32GetDatum(table[i].exponent);
		values[3] = CStringGetTextDatum(table[i].name);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
