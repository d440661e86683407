/*-------------------------------------------------------------------------
 *
 * card_brand.c
 *	  Card number syntax, Luhn check, brand detection and card code rules.
 *
 * Card numbers arrive as people and payment forms write them: digits,
 * perhaps grouped with single spaces or single dashes.  We accept exactly
 * that (plus white space around the whole), require the Luhn check digit,
 * detect the brand from the issuer prefix and check the length the brand
 * allows.  Error messages say what rule failed, never which digits: the
 * input must not reach the client or the server log.
 *
 * Every function here works on caller-provided buffers and keeps no copy,
 * so the caller alone decides when the digits are wiped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "anet_fields.h"
#include "card_brand.h"
#include "errcodes.h"

/* Digit lengths each brand issues, as a bit set over 0..19 */
#define LEN(n)		(1U << (n))
#define LEN_RANGE(lo, hi)	(((1U << ((hi) + 1)) - 1) & ~((1U << (lo)) - 1))

typedef struct BrandInfo
{
	const char *name;			/* text output and pay_card_brand() */
	const char *label;			/* for messages */
	uint32		lengths;		/* allowed digit counts */
	const char *lengths_text;	/* the same, for messages */
	int			cvv_digits;
} BrandInfo;

/*
 * Lengths are those the brands issue that the gateway can take: its
 * cardNumber is at most 16 digits (ANET_CARD_NUMBER_MAX), so 17- to
 * 19-digit Visa, Discover, JCB, Diners and UnionPay numbers are refused
 * here, at the call, rather than by the gateway after the commit.
 */
static const BrandInfo brands[CARD_BRAND_MAX + 1] = {
	[CARD_BRAND_UNKNOWN] = {"unknown", "Unknown", 0, "", 0},
	[CARD_BRAND_VISA] = {"visa", "Visa", LEN(13) | LEN(16), "13 or 16", 3},
	[CARD_BRAND_MASTERCARD] = {"mastercard", "Mastercard", LEN(16), "16", 3},
	[CARD_BRAND_AMEX] = {"amex", "American Express", LEN(15), "15", 4},
	[CARD_BRAND_DISCOVER] = {"discover", "Discover", LEN(16), "16", 3},
	[CARD_BRAND_JCB] = {"jcb", "JCB", LEN(16), "16", 3},
	[CARD_BRAND_DINERS] = {"diners", "Diners Club", LEN_RANGE(14, 16), "14 to 16", 3},
	[CARD_BRAND_UNIONPAY] = {"unionpay", "UnionPay", LEN(16), "16", 3},
};

/* Short lower-case brand name used in output, e.g. "visa". */
const char *
card_brand_name(CardBrand brand)
{
	if (brand <= CARD_BRAND_UNKNOWN || brand > CARD_BRAND_MAX)
		return brands[CARD_BRAND_UNKNOWN].name;
	return brands[brand].name;
}

/* Human brand name for messages, e.g. "American Express". */
const char *
card_brand_label(CardBrand brand)
{
	if (brand <= CARD_BRAND_UNKNOWN || brand > CARD_BRAND_MAX)
		return brands[CARD_BRAND_UNKNOWN].label;
	return brands[brand].label;
}

/*
 * Luhn (mod 10) check over ASCII digits: catches every single-digit typo
 * and most transpositions before a gateway round trip does.
 */
bool
card_luhn_valid(const char *digits, int ndigits)
{
	int			sum = 0;
	bool		dbl = false;

	for (int i = ndigits - 1; i >= 0; i--)
	{
		int			d = digits[i] - '0';

		if (dbl)
		{
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
		dbl = !dbl;
	}
	return sum % 10 == 0;
}

/* The integer made of the first n digits. */
static int
prefix(const char *digits, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (digits[i] - '0');
	return v;
}

/*
 * Brand from the issuer identification prefix.  The ranges are the
 * brands' published ones for the cards the gateway accepts; anything else
 * is CARD_BRAND_UNKNOWN.  Needs at least 4 digits.
 */
CardBrand
card_brand_detect(const char *digits, int ndigits)
{
	int			p2,
				p3,
				p4;

	if (ndigits < 4)
		return CARD_BRAND_UNKNOWN;
	p2 = prefix(digits, 2);
	p3 = prefix(digits, 3);
	p4 = prefix(digits, 4);

	if (digits[0] == '4')
		return CARD_BRAND_VISA;
	if (p2 == 34 || p2 == 37)
		return CARD_BRAND_AMEX;
	if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
		return CARD_BRAND_MASTERCARD;
	if (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65)
		return CARD_BRAND_DISCOVER;
	if (p2 == 62)
		return CARD_BRAND_UNIONPAY;
	/* JCB: 3528-3589, and the older ranges its 308x test card is from */
	if ((p4 >= 3528 && p4 <= 3589) ||
		(p4 >= 3088 && p4 <= 3094) || (p4 >= 3096 && p4 <= 3102) ||
		(p4 >= 3112 && p4 <= 3120) || (p4 >= 3158 && p4 <= 3159) ||
		(p4 >= 3337 && p4 <= 3349))
		return CARD_BRAND_JCB;
	if ((p3 >= 300 && p3 <= 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
		return CARD_BRAND_DINERS;
	return CARD_BRAND_UNKNOWN;
}

/* The one error for a number that is not digits in sensible groups. */
static void
number_syntax_error(void)
{
	card_error(ERRCODE_PAY_INVALID_CARD_NUMBER,
			   "invalid card number",
			   "A card number is 12 to 16 digits, optionally grouped with single spaces or dashes.",
			   "Check the number and enter it again.");
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Copy the digits of a card number typed as text into digits[] (at least
 * CARD_PAN_MAX_DIGITS + 1 bytes, NUL-terminated) and return their count.
 * White space around the number is ignored; inside it, digits may be
 * separated by one space or one dash, the same separator throughout.
 * Anything else is an error.  input need not be NUL-terminated.
 */
int
card_normalize_number(const char *input, int len, char *digits)
{
	int			start = 0,
				end = len,
				n = 0;
	char		sep = '\0';
	bool		after_sep = false;

	if (len > CARD_NUMBER_MAX_INPUT)
		number_syntax_error();
	while (start < end && is_blank(input[start]))
		start++;
	while (end > start && is_blank(input[end - 1]))
		end--;
	if (start == end)
		number_syntax_error();

	for (int i = start; i < end; i++)
	{
		char		c = input[i];

		if (c >= '0' && c <= '9')
		{
			if (n >= CARD_PAN_MAX_DIGITS)
				number_syntax_error();
			digits[n++] = c;
			after_sep = false;
		}
		else if ((c == ' ' || c == '-') && n > 0 && !after_sep &&
				 (sep == '\0' || sep == c))
		{
			sep = c;
			after_sep = true;
		}
		else
			number_syntax_error();
	}
	/* trailing separators were trimmed only if blank: "4111-" is an error */
	if (after_sep || n < CARD_PAN_MIN_DIGITS)
		number_syntax_error();
	digits[n] = '\0';
	return n;
}

/*
 * Validate a normalized card number: Luhn, a known brand, a length that
 * brand issues.  Returns the brand.
 */
CardBrand
card_check_number(const char *digits, int ndigits)
{
	CardBrand	brand;

	if (ndigits < CARD_PAN_MIN_DIGITS || ndigits > CARD_PAN_MAX_DIGITS)
		number_syntax_error();
	if (ndigits > ANET_CARD_NUMBER_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_INVALID_CARD_NUMBER),
				 errmsg("card number too long for the gateway"),
				 errdetail("The card number has %d digits; the gateway accepts card numbers of at most %d digits.",
						   ndigits, ANET_CARD_NUMBER_MAX),
				 errhint("Use another card, or pay with Accept.js opaque data."),
				 errhidestmt(true),
				 errhidecontext(true)));
	if (!card_luhn_valid(digits, ndigits))
		card_error(ERRCODE_PAY_INVALID_CARD_NUMBER,
				   "invalid card number",
				   "The check digit of the card number is wrong.",
				   "Check the number for typing mistakes.");

	brand = card_brand_detect(digits, ndigits);
	if (brand == CARD_BRAND_UNKNOWN)
		card_error(ERRCODE_PAY_UNSUPPORTED_CARD_BRAND,
				   "unsupported card brand",
				   "Only Visa, Mastercard, American Express, Discover, JCB, Diners Club and UnionPay cards are accepted.",
				   "Use a card of one of these brands.");

	if ((brands[brand].lengths & LEN(ndigits)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_INVALID_CARD_NUMBER),
				 errmsg("invalid card number"),
				 errdetail("%s card numbers have %s digits.",
						   brands[brand].label, brands[brand].lengths_text),
				 errhint("Check the number and enter it again."),
				 errhidestmt(true),
				 errhidecontext(true)));
	return brand;
}

/*
 * Validate a card code (CVV, CVC, CID) for a brand: exactly 3 ASCII digits,
 * 4 for American Express.  Copies it NUL-terminated into cvv[] (at least
 * CARD_CVV_MAX_DIGITS + 1 bytes) and returns its length.  No trimming: a
 * card code is typed into a field of its own.
 */
int
card_check_cvv(CardBrand brand, const char *input, int len, char *cvv)
{
	int			want = brands[brand].cvv_digits;
	bool		ok = (len == want);

	for (int i = 0; ok && i < len; i++)
		if (input[i] < '0' || input[i] > '9')
			ok = false;
	if (!ok)
	{
		if (brand == CARD_BRAND_AMEX)
			card_error(ERRCODE_PAY_INVALID_CVV,
					   "invalid card security code",
					   "American Express card security codes are 4 digits.",
					   "Enter the code printed on the card, or leave it out.");
		else
			card_error(ERRCODE_PAY_INVALID_CVV,
					   "invalid card security code",
					   "Card security codes of this brand are 3 digits.",
					   "Enter the code printed on the back of the card, or leave it out.");
	}
	memcpy(cvv, input, len);
	cvv[len] = '\0';
	return len;
}

/*
 * The lengths each brand issues numbers of, whatever the gateway takes:
 * what a caller's free text is refused for (free_text.c).  Narrower than
 * "12 to 19 digits of any brand", which the log and audit masking use (a
 * masked phone number costs nothing; a refused one fails a payment): no
 * brand issues 12 digits, and Visa's 13-digit numbers are long gone, so a
 * phone number with its country code (at most 15 digits, E.164) or an
 * EAN-13 barcode is not taken for one.
 */
static const uint32 issued_lengths[CARD_BRAND_MAX + 1] = {
	[CARD_BRAND_UNKNOWN] = 0,
	[CARD_BRAND_VISA] = LEN(16) | LEN(19),
	[CARD_BRAND_MASTERCARD] = LEN(16),
	[CARD_BRAND_AMEX] = LEN(15),
	[CARD_BRAND_DISCOVER] = LEN_RANGE(16, 19),
	[CARD_BRAND_JCB] = LEN_RANGE(16, 19),
	[CARD_BRAND_DINERS] = LEN_RANGE(14, 19),
	[CARD_BRAND_UNIONPAY] = LEN_RANGE(16, 19),
};

/*
 * The first card number in str[from..len): 12 to 19 digits (single spaces
 * or dashes allowed between them) that are Luhn-valid and of a known
 * brand (issued_only: of a length that brand issues).  The digits may
 * start at any group of a longer run and end at any later group:
 * "1 4111 1111 1111 1111" and "4111111111111111 123" (a card code after
 * the number) hold one.  Sets str[*start..*end) to its text and returns
 * true, or returns false.
 */
static bool
find_card_number(const char *str, int len, int from, bool issued_only, int *start_out, int *end_out)
{
	char		digits[CARD_PAN_MAX_DIGITS + 1];
	bool		found = false;

	for (int start = from; start < len && !found; start++)
	{
		int			i = start,
					n = 0;

		/* every group of digits starts a candidate */
		if (str[start] < '0' || str[start] > '9' ||
			(start > 0 && str[start - 1] >= '0' && str[start - 1] <= '9'))
			continue;
		for (;;)
		{
			while (i < len && str[i] >= '0' && str[i] <= '9' &&
				   n < CARD_PAN_MAX_DIGITS)
				digits[n++] = str[i++];
			if (i < len && str[i] >= '0' && str[i] <= '9')
				break;			/* more than 19 digits: no card from here */
			/* the end of a group: the digits so far may be a card */
			if (n >= CARD_PAN_MIN_DIGITS && card_luhn_valid(digits, n) &&
				(issued_only ? (issued_lengths[card_brand_detect(digits, n)] & LEN(n)) != 0 :
				 card_brand_detect(digits, n) != CARD_BRAND_UNKNOWN))
			{
				*start_out = start;
				*end_out = i;
				found = true;
				break;
			}
			if (i + 1 < len && (str[i] == ' ' || str[i] == '-') &&
				str[i + 1] >= '0' && str[i + 1] <= '9')
				i++;
			else
				break;
		}
	}
	explicit_bzero(digits, sizeof(digits));
	return found;
}

/*
 * Whether str (len bytes) contains a card number as find_card_number
 * reads them.  Used wherever text that should never hold one is checked:
 * the log hook, the audit trigger, the API's free-text input
 * (free_text.c).
 */
bool
card_text_contains_number(const char *str, int len)
{
	int			start,
				end;

	return find_card_number(str, len, 0, false, &start, &end);
}

/*
 * Whether str (len bytes) contains a card number of a length its brand
 * issues (issued_lengths): a caller's free text that does is refused.
 */
bool
card_text_contains_issued_number(const char *str, int len)
{
	int			start,
				end;

	return find_card_number(str, len, 0, true, &start, &end);
}

/*
 * Replace every digit of every card number card_text_contains_number
 * finds in buf[0..len) by CARD_REDACT_CHAR ('X'), in place; separators
 * and the length are kept.  Returns whether anything was masked.
 */
bool
card_text_mask_numbers(char *buf, int len)
{
	int			from = 0,
				start,
				end;
	bool		masked = false;

	/* a masked number has no digits left: the scan goes on behind it */
	while (find_card_number(buf, len, from, false, &start, &end))
	{
		for (int i = start; i < end; i++)
			if (buf[i] >= '0' && buf[i] <= '9')
				buf[i] = 'X';
		masked = true;
		from = start;
	}
	return masked;
}
