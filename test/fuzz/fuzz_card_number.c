/*-------------------------------------------------------------------------
 *
 * fuzz_card_number.c
 *	  libFuzzer target: card number and card code input (src/card_brand.c,
 *	  linked as it is, its ereport caught by pg_error_shim.c).
 *
 * The input is the text of a card number as pay_card() receives it.
 * Checks, besides the sanitizers:
 *	 - an accepted number is 12..19 ASCII digits, Luhn-valid, of a known
 *	   brand whose lengths include it;
 *	 - card_text_contains_number() (the log hook and audit trigger's
 *	   detector) finds every number that card input accepts, so no
 *	   accepted card number can pass into a log unseen: as it was typed,
 *	   and inside text around it (another number before it, the card
 *	   code or expiry after it, separated by a space or dash);
 *	 - every error has a code and a message, hides the statement and the
 *	   context, and none of its texts contains four digits in a row
 *	   (which could be card digits);
 *	 - the same text as a card code is accepted exactly when it is the
 *	   brand's number of ASCII digits;
 *	 - card_text_mask_numbers() (the correlation id's masking) leaves
 *	   nothing the detector finds and changes only digits, into X.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_brand.h"
#include "fuzz_check.h"
#include "pg_error_shim.h"

/* Text that may stand next to a card number in a log line. */
static const char *const before[] = {"", "card ", "1 ", "12 ", "4-", "x"};
static const char *const after[] = {"", " 123", "-1", " 12 30", " 4111", "."};

/* The accepted number is found inside every context. */
static void
check_detected_in_context(const char *input, size_t size)
{
	char		buf[4 * CARD_NUMBER_MAX_INPUT + 32];

	for (size_t b = 0; b < lengthof(before); b++)
		for (size_t a = 0; a < lengthof(after); a++)
		{
			size_t		lb = strlen(before[b]),
						la = strlen(after[a]);

			memcpy(buf, before[b], lb);
			memcpy(buf + lb, input, size);
			memcpy(buf + lb + size, after[a], la);
			if (!card_text_contains_number(buf, (int) (lb + size + la)))
			{
				fprintf(stderr, "accepted card number not detected after \"%s\" and before \"%s\"\n",
						before[b], after[a]);
				abort();
			}
		}
}

static bool
has_digit_run(const char *s, int run)
{
	int			n = 0;

	for (; *s; s++)
	{
		n = (*s >= '0' && *s <= '9') ? n + 1 : 0;
		if (n >= run)
			return true;
	}
	return false;
}

/* The error just caught is a card error that cannot leak input. */
static void
check_card_error(void)
{
	FUZZ_ASSERT(pg_shim_error.sqlerrcode != 0);
	FUZZ_ASSERT(pg_shim_error.message[0] != '\0');
	FUZZ_ASSERT(pg_shim_error.hide_stmt);
	FUZZ_ASSERT(pg_shim_error.hide_context);
	FUZZ_ASSERT(!has_digit_run(pg_shim_error.message, 4));
	FUZZ_ASSERT(!has_digit_run(pg_shim_error.detail, 4));
	FUZZ_ASSERT(!has_digit_run(pg_shim_error.hint, 4));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *input;
	char		digits[CARD_PAN_MAX_DIGITS + 1];
	volatile int ndigits = -1;
	volatile CardBrand brand = CARD_BRAND_UNKNOWN;
	bool		raised;

	if (size > 4 * CARD_NUMBER_MAX_INPUT)
		return 0;
	/* exactly size bytes, not NUL-terminated: ASan sees any over-read */
	input = malloc(size ? size : 1);
	if (input == NULL)
		return 0;
	memcpy(input, data, size);

	memset(digits, 'x', sizeof(digits));
	PG_SHIM_TRY(ndigits = card_normalize_number(input, (int) size, digits), raised);
	if (raised)
		check_card_error();
	else
	{
		FUZZ_ASSERT(ndigits >= CARD_PAN_MIN_DIGITS && ndigits <= CARD_PAN_MAX_DIGITS);
		FUZZ_ASSERT(digits[ndigits] == '\0');
		FUZZ_ASSERT((int) strspn(digits, "0123456789") == ndigits);

		PG_SHIM_TRY(brand = card_check_number(digits, ndigits), raised);
		if (raised)
			check_card_error();
		else
		{
			FUZZ_ASSERT(brand > CARD_BRAND_UNKNOWN && brand <= CARD_BRAND_MAX);
			FUZZ_ASSERT(brand == card_brand_detect(digits, ndigits));
			FUZZ_ASSERT(card_luhn_valid(digits, ndigits));
			FUZZ_ASSERT(strcmp(card_brand_name(brand), "unknown") != 0);
			FUZZ_ASSERT(card_text_contains_number(input, (int) size));
			check_detected_in_context(input, size);
		}
	}

	/* the same bytes as a card code, for every brand */
	for (int b = CARD_BRAND_VISA; b <= CARD_BRAND_MAX; b++)
	{
		char		cvv[CARD_CVV_MAX_DIGITS + 1];
		volatile int cvv_len = -1;
		int			want = (b == CARD_BRAND_AMEX) ? 4 : 3;
		bool		all_digits = (int) size == want;

		for (size_t i = 0; all_digits && i < size; i++)
			all_digits = input[i] >= '0' && input[i] <= '9';
		PG_SHIM_TRY(cvv_len = card_check_cvv((CardBrand) b, input, (int) size, cvv), raised);
		FUZZ_ASSERT(raised == !all_digits);
		if (raised)
			check_card_error();
		else
			FUZZ_ASSERT(cvv_len == want && memcmp(cvv, input, want) == 0 && cvv[want] == '\0');
	}

	/* the detector on arbitrary text: never crashes */
	(void) card_text_contains_number(input, (int) size);

	/*
	 * masking (the correlation id's): afterwards the detector finds
	 * nothing, and only digits were changed, each into an X
	 */
	{
		char	   *masked = malloc(size ? size : 1);
		bool		had;

		FUZZ_ASSERT(masked != NULL);
		memcpy(masked, input, size);
		had = card_text_mask_numbers(masked, (int) size);
		FUZZ_ASSERT(had == card_text_contains_number(input, (int) size));
		FUZZ_ASSERT(!card_text_contains_number(masked, (int) size));
		for (size_t i = 0; i < size; i++)
			FUZZ_ASSERT(masked[i] == input[i] ||
						(input[i] >= '0' && input[i] <= '9' && masked[i] == 'X'));
		free(masked);
	}
	(void) card_brand_label(card_brand_detect(digits, ndigits > 0 ? ndigits : 0));

	explicit_bzero(digits, sizeof(digits));
	free(input);
	return 0;
}
