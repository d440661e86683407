/*-------------------------------------------------------------------------
 *
 * fuzz_amount_text.c
 *	  libFuzzer target: the text input of pay_amount ('12.34 USD'), i.e.
 *	  src/amount_parse.c and the currency lookup of src/currency.c, in the
 *	  order pay_amount_in (src/amount_io.c) calls them.
 *
 * Checks, besides the sanitizers:
 *	 - the parts amount_parse_text returns are what they say (letters,
 *	   digits, inside the input);
 *	 - amount_digits_to_minor agrees, for every exponent 0..4, with a
 *	   128-bit computation of the same value: exact when in range, too
 *	   many decimals exactly when there are, out of range exactly when
 *	   the value is outside int64;
 *	 - a value in range printed in the canonical output form of
 *	   amount_io.c parses back to the same value;
 *	 - an unknown currency's error quotes nothing but three letters.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "amount_parse.h"
#include "currency.h"
#include "fuzz_check.h"
#include "pg_error_shim.h"

#define LIMIT128 ((__int128) 1 << 100)

/* The value of t in minor units of exponent e, saturating at LIMIT128. */
static __int128
value128(const AmountText *t, int e)
{
	__int128	v = 0;

	for (int i = 0; i < t->int_len; i++)
	{
		v = v * 10 + (t->int_digits[i] - '0');
		if (v > LIMIT128)
			return LIMIT128;
	}
	for (int i = 0; i < e; i++)
	{
		v = v * 10 + (i < t->frac_len ? t->frac_digits[i] - '0' : 0);
		if (v > LIMIT128)
			return LIMIT128;
	}
	return t->negative ? -v : v;
}

static void
check_parts(const char *s, size_t len, const AmountText *t)
{
	FUZZ_ASSERT(t->code != NULL && t->code_len > 0);
	FUZZ_ASSERT(t->code >= s && t->code + t->code_len <= s + len);
	for (int i = 0; i < t->code_len; i++)
		FUZZ_ASSERT(isalpha((unsigned char) t->code[i]));
	FUZZ_ASSERT(t->int_len >= 0 && t->int_digits >= s &&
				t->int_digits + t->int_len <= s + len);
	for (int i = 0; i < t->int_len; i++)
		FUZZ_ASSERT(isdigit((unsigned char) t->int_digits[i]));
	FUZZ_ASSERT((t->frac_digits == NULL) == (t->frac_len == 0));
	for (int i = 0; i < t->frac_len; i++)
		FUZZ_ASSERT(isdigit((unsigned char) t->frac_digits[i]));
	FUZZ_ASSERT(t->int_len + t->frac_len > 0);
}

/* The canonical text of amount_io.c's format_amount, parsed back. */
static void
check_round_trip(int64_t minor, int e, const char *code)
{
	char		buf[64];
	uint64_t	mag = minor < 0 ? (uint64_t) (-(minor + 1)) + 1 : (uint64_t) minor;
	uint64_t	unit = amount_pow10[e];
	AmountText	t;
	int64_t		again = 0;

	if (e == 0)
		snprintf(buf, sizeof(buf), "%s%llu %s", minor < 0 ? "-" : "",
				 (unsigned long long) mag, code);
	else
		snprintf(buf, sizeof(buf), "%s%llu.%0*llu %s", minor < 0 ? "-" : "",
				 (unsigned long long) (mag / unit), e,
				 (unsigned long long) (mag % unit), code);
	FUZZ_ASSERT(amount_parse_text(buf, &t) == AMOUNT_OK);
	FUZZ_ASSERT(amount_digits_to_minor(&t, e, &again) == AMOUNT_OK);
	FUZZ_ASSERT(again == minor);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* pay_amount_in gets a C string: the input up to its first NUL */
	size_t		len = strnlen((const char *) data, size);
	char	   *s = malloc(len + 1);
	AmountText	t;
	AmountParseStatus st;

	if (s == NULL)
		return 0;
	memcpy(s, data, len);
	s[len] = '\0';

	st = amount_parse_text(s, &t);
	FUZZ_ASSERT(st >= AMOUNT_OK && st <= AMOUNT_TRAILING_CHARACTERS);
	if (st == AMOUNT_OK)
	{
		const Currency *c;
		bool		raised;

		check_parts(s, len, &t);
		for (int e = 0; e <= AMOUNT_MAX_EXPONENT; e++)
		{
			int64_t		minor = 0;
			__int128	want = value128(&t, e);
			AmountParseStatus vst = amount_digits_to_minor(&t, e, &minor);

			if (t.frac_len > e)
				FUZZ_ASSERT(vst == AMOUNT_TOO_MANY_DECIMALS);
			else if (want > INT64_MAX || want < INT64_MIN)
				FUZZ_ASSERT(vst == AMOUNT_OUT_OF_RANGE);
			else
			{
				FUZZ_ASSERT(vst == AMOUNT_OK);
				FUZZ_ASSERT((__int128) minor == want);
				check_round_trip(minor, e, "XTS");
			}
		}

		/* the currency, as pay_amount_in looks it up */
		c = currency_by_code(t.code, t.code_len);
		if (c != NULL)
		{
			FUZZ_ASSERT(c->exponent >= 0 && c->exponent <= AMOUNT_MAX_EXPONENT);
			FUZZ_ASSERT(t.code_len == 3 && strncasecmp(c->code, t.code, 3) == 0);
		}
		else
		{
			PG_SHIM_TRY((void) currency_lookup_or_error(t.code, t.code_len), raised);
			FUZZ_ASSERT(raised);
			/* quotes at most the three letters of a would-be code */
			if (strchr(pg_shim_error.message, '"') != NULL)
				FUZZ_ASSERT(t.code_len == 3 &&
							strncmp(strchr(pg_shim_error.message, '"') + 1, t.code, 3) == 0);
		}
	}
	free(s);
	return 0;
}
