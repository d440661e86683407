/*-------------------------------------------------------------------------
 *
 * anet_amount.c
 *	  Exact conversion between integer minor units and the decimal text
 *	  Authorize.Net uses for amounts.
 *
 * The gateway speaks major units with a decimal point ("12.34"); the
 * extension keeps int64 minor units and the currency's exponent.  Both
 * directions work on digits only: no floating point anywhere, so a value
 * either converts exactly or is refused.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <string.h>

#include "anet_protocol.h"

/*
 * Format minor / 10^exponent.  Digits are produced from the unsigned
 * magnitude so that INT64_MIN needs no special case.
 */
int
anet_amount_to_decimal(int64_t minor, int exponent, char *buf, size_t buflen)
{
	char		digits[32];
	int			ndigits = 0;
	uint64_t	mag;
	bool		negative = minor < 0;
	size_t		need;
	size_t		pos = 0;
	int			intdigits;
	int			i;

	if (buf != NULL && buflen > 0)
		buf[0] = '\0';
	if (buf == NULL || exponent < 0 || exponent > ANET_MAX_EXPONENT)
		return -1;

	mag = negative ? (uint64_t) 0 - (uint64_t) minor : (uint64_t) minor;
	do
	{
		digits[ndigits++] = (char) ('0' + (int) (mag % 10));
		mag /= 10;
	} while (mag != 0);
	/* pad so that at least one digit stands before the point */
	while (ndigits < exponent + 1)
		digits[ndigits++] = '0';

	intdigits = ndigits - exponent;
	need = (size_t) ndigits + (negative ? 1 : 0) + (exponent > 0 ? 1 : 0);
	if (need + 1 > buflen)
		return -1;

	if (negative)
		buf[pos++] = '-';
	for (i = ndigits - 1; i >= 0; i--)
	{
		buf[pos++] = digits[i];
		if (i == ndigits - intdigits && exponent > 0)
			buf[pos++] = '.';
	}
	buf[pos] = '\0';
	return (int) pos;
}

/*
 * Shared parser: extra_zeros_ok allows decimals beyond the exponent when
 * they are zeros (reply form).  The magnitude is accumulated as uint64 and
 * checked against 2^63 (negative) or 2^63 - 1 at every step.
 */
static bool
decimal_to_minor(const char *s, int exponent, bool extra_zeros_ok, int64_t *out)
{
	const char *p = s;
	bool		negative = false;
	uint64_t	mag = 0;
	uint64_t	limit;
	int			fraction = 0;
	int			intdigits = 0;

	if (s == NULL || out == NULL || exponent < 0 || exponent > ANET_MAX_EXPONENT)
		return false;
	if (*p == '-')
	{
		negative = true;
		p++;
	}
	limit = negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;

	for (; *p >= '0' && *p <= '9'; p++)
	{
		unsigned	d = (unsigned) (*p - '0');

		if (mag > (limit - d) / 10)
			return false;
		mag = mag * 10 + d;
		intdigits++;
	}
	if (intdigits == 0)
		return false;

	if (*p == '.')
	{
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		for (; *p >= '0' && *p <= '9'; p++)
		{
			unsigned	d = (unsigned) (*p - '0');

			if (fraction >= exponent)
			{
				if (!extra_zeros_ok || d != 0)
					return false;
				continue;
			}
			if (mag > (limit - d) / 10)
				return false;
			mag = mag * 10 + d;
			fraction++;
		}
	}
	if (*p != '\0')
		return false;

	/* scale up for the decimals not written ("12.3" with exponent 2) */
	for (; fraction < exponent; fraction++)
	{
		if (mag > limit / 10)
			return false;
		mag *= 10;
	}

	if (negative)
		*out = (mag == (uint64_t) INT64_MAX + 1) ? INT64_MIN : -(int64_t) mag;
	else
		*out = (int64_t) mag;
	return true;
}

/* Strict form for amounts we are given: never rounds, never pads zeros. */
bool
anet_decimal_to_minor(const char *s, int exponent, int64_t *out)
{
	return decimal_to_minor(s, exponent, false, out);
}

/* Reply form: trailing zero decimals beyond the exponent are harmless. */
bool
anet_reply_decimal_to_minor(const char *s, int exponent, int64_t *out)
{
	return decimal_to_minor(s, exponent, true, out);
}
