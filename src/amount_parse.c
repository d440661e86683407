/*-------------------------------------------------------------------------
 *
 * amount_parse.c
 *	  The text grammar of pay_amount and the exact conversion of its
 *	  digits into minor units; plain C, no PostgreSQL (amount_io.c reports
 *	  the errors).
 *
 * Grammar (case-insensitive code, spaces optional between code and
 * number):
 *		[sign] number code  |  [sign] code [sign] number
 * where number is digits with an optional '.' and at least one digit
 * after it.  One sign at most.  Surrounding white space is ignored.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stddef.h>

#include "amount_parse.h"

/* 10^0 .. 10^4: the exponents ISO 4217 uses */
const uint64_t amount_pow10[AMOUNT_MAX_EXPONENT + 1] = {1, 10, 100, 1000, 10000};

/* ASCII case-insensitive comparison of len bytes with a lower-case word. */
static bool
word_equals(const char *p, int len, const char *word)
{
	for (int i = 0; i < len; i++)
	{
		char		c = p[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (word[i] == '\0' || c != word[i])
			return false;
	}
	return word[len] == '\0';
}

/* Is the word at p (of length len) NaN or infinity in any spelling? */
static bool
is_non_finite_word(const char *p, int len)
{
	return word_equals(p, len, "nan") || word_equals(p, len, "inf") ||
		word_equals(p, len, "infinity");
}

/* Skip white space. */
static const char *
skip_space(const char *p)
{
	while (*p && isspace((unsigned char) *p))
		p++;
	return p;
}

/*
 * Split the NUL-terminated text s into its parts.  The first rule broken
 * decides the status; *out is complete only with AMOUNT_OK.
 */
AmountParseStatus
amount_parse_text(const char *s, AmountText *out)
{
	const char *p = skip_space(s);
	bool		have_sign = false;

	out->negative = false;
	out->code = NULL;
	out->code_len = 0;
	out->frac_digits = NULL;
	out->frac_len = 0;

	if (*p == '\0')
		return AMOUNT_EMPTY;

	if (*p == '-' || *p == '+')
	{
		out->negative = (*p == '-');
		have_sign = true;
		p = skip_space(p + 1);
	}

	/* a leading currency code */
	if (isalpha((unsigned char) *p))
	{
		out->code = p;
		while (isalpha((unsigned char) *p))
			p++;
		out->code_len = p - out->code;
		if (is_non_finite_word(out->code, out->code_len))
			return AMOUNT_NOT_A_NUMBER;
		p = skip_space(p);
		if (*p == '-' || *p == '+')
		{
			if (have_sign)
				return AMOUNT_TWO_SIGNS;
			out->negative = (*p == '-');
			have_sign = true;
			p = skip_space(p + 1);
		}
	}

	/* the number */
	if (isalpha((unsigned char) *p))
	{
		const char *w = p;

		while (isalpha((unsigned char) *p))
			p++;
		if (is_non_finite_word(w, p - w))
			return AMOUNT_NOT_A_NUMBER;
		return AMOUNT_LETTERS_FOR_NUMBER;
	}
	out->int_digits = p;
	while (isdigit((unsigned char) *p))
		p++;
	out->int_len = p - out->int_digits;
	if (*p == '.')
	{
		p++;
		out->frac_digits = p;
		while (isdigit((unsigned char) *p))
			p++;
		out->frac_len = p - out->frac_digits;
		if (out->frac_len == 0)
			return AMOUNT_POINT_WITHOUT_DIGIT;
	}
	if (out->int_len == 0 && out->frac_len == 0)
		return AMOUNT_NO_DIGITS;
	if (*p == ',' || *p == '\'' || *p == '_')
		return AMOUNT_GROUP_SEPARATOR;
	if (*p == 'e' || *p == 'E')
	{
		/* "1e3" or a code such as EUR glued to the number? */
		if (!isalpha((unsigned char) p[1]))
			return AMOUNT_EXPONENT_NOTATION;
	}

	/* a trailing currency code */
	p = skip_space(p);
	if (out->code == NULL)
	{
		if (*p == '-' || *p == '+')
			return AMOUNT_SIGN_AFTER_NUMBER;
		out->code = p;
		while (isalpha((unsigned char) *p))
			p++;
		out->code_len = p - out->code;
		if (out->code_len == 0)
			return AMOUNT_NO_CURRENCY;
		p = skip_space(p);
	}
	if (*p != '\0')
		return AMOUNT_TRAILING_CHARACTERS;
	return AMOUNT_OK;
}

/*
 * Combine the integer and fraction digits of t into minor units of a
 * currency with the given exponent (0..AMOUNT_MAX_EXPONENT), checking
 * against the int64 range (the negative side is one larger).  More
 * decimals than the exponent is an error, never rounded.
 */
AmountParseStatus
amount_digits_to_minor(const AmountText *t, int exponent, int64_t *out)
{
	uint64_t	limit = t->negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
	uint64_t	value = 0;
	uint64_t	frac = 0;

	if (exponent < 0 || exponent > AMOUNT_MAX_EXPONENT)
		return AMOUNT_OUT_OF_RANGE;
	if (t->frac_len > exponent)
		return AMOUNT_TOO_MANY_DECIMALS;

	for (int i = 0; i < t->int_len; i++)
	{
		if (__builtin_mul_overflow(value, 10, &value) ||
			__builtin_add_overflow(value, (uint64_t) (t->int_digits[i] - '0'), &value))
			return AMOUNT_OUT_OF_RANGE;
	}
	if (__builtin_mul_overflow(value, amount_pow10[exponent], &value))
		return AMOUNT_OUT_OF_RANGE;
	for (int i = 0; i < t->frac_len; i++)
		frac = frac * 10 + (uint64_t) (t->frac_digits[i] - '0');
	frac *= amount_pow10[exponent - t->frac_len];
	if (__builtin_add_overflow(value, frac, &value))
		return AMOUNT_OUT_OF_RANGE;
	if (value > limit)
		return AMOUNT_OUT_OF_RANGE;
	if (!t->negative)
		*out = (int64_t) value;
	else if (value == (uint64_t) INT64_MAX + 1)
		*out = INT64_MIN;
	else
		*out = -(int64_t) value;
	return AMOUNT_OK;
}
