/*-------------------------------------------------------------------------
 *
 * fuzz_card_json.c
 *	  libFuzzer target: the JSON text form of pay_card (src/card_json.c, as
 *	  it is), then the card rules of src/card_brand.c on what it took out,
 *	  as card.c applies them.
 *
 * Checks, besides the sanitizers (and LeakSanitizer: json-c's objects
 * must all be freed on every path):
 *	 - a parse either sets an error or has number, exp_month and exp_year;
 *	 - every field copied out is NUL-terminated inside its buffer with
 *	   the length reported;
 *	 - errors from the card rules hide statement and context and quote no
 *	   digits (see fuzz_card_number.c);
 *	 - a card number the rules accept is found in the JSON text itself by
 *	   card_text_contains_number(), which the log hook (card_log.c) runs
 *	   on statements, so a card literal cannot reach the log unseen.
 *	   Only for text without JSON escapes: "\u0034" for "4" is decoded
 *	   by the parser but hides the digit from any scan of the raw text,
 *	   as SQL's own E'\x34' does (no scan can undo every encoding);
 *	 - once card_redact() (card_redact.c, the log hook's masking) has
 *	   masked the text, whatever spelling it used (escaped keys, blanks
 *	   around the colon), it no longer parses to the same card number or
 *	   security code;
 *	 - card_redact_statement() changes digits only, within the text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_json.h"
#include "card_redact.h"
#include "fuzz_check.h"
#include "pg_error_shim.h"

static void
check_field(const char *buf, size_t size, int len)
{
	FUZZ_ASSERT(len >= 0 && (size_t) len < size);
	FUZZ_ASSERT(buf[len] == '\0');
}

/* The masked text gives neither the number nor the code of jc. */
static void
check_masked(const char *str, size_t size, const JsonCard *jc)
{
	char	   *masked = malloc(size ? size : 1);
	JsonCard   *after = calloc(1, sizeof(JsonCard));

	FUZZ_ASSERT(masked != NULL && after != NULL);
	memcpy(masked, str, size);
	(void) card_redact(masked, (int) size);
	card_parse_json(masked, size, after);
	if (after->error == NULL)
	{
		FUZZ_ASSERT(after->number_len != jc->number_len ||
					memcmp(after->number, jc->number, jc->number_len) != 0);
		if (jc->has_cvv)
			FUZZ_ASSERT(!after->has_cvv || after->cvv_len != jc->cvv_len ||
						memcmp(after->cvv, jc->cvv, jc->cvv_len) != 0);
	}
	explicit_bzero(after, sizeof(JsonCard));
	explicit_bzero(masked, size);
	free(after);
	free(masked);
}

/*
 * card_redact_statement() (the log hook's masking of a statement that
 * holds card data) reads and writes within the text and changes digits
 * only, each to the mask character.
 */
static void
check_statement_masking(const char *str, size_t size)
{
	char	   *masked = malloc(size ? size : 1);

	FUZZ_ASSERT(masked != NULL);
	memcpy(masked, str, size);
	(void) card_redact_statement(masked, (int) size);
	for (size_t i = 0; i < size; i++)
		FUZZ_ASSERT(masked[i] == str[i] ||
					(str[i] >= '0' && str[i] <= '9' && masked[i] == CARD_REDACT_CHAR));
	free(masked);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *str;
	JsonCard   *jc;

	/* card.c refuses longer input before parsing */
	if (size > CARD_JSON_MAX_INPUT)
		return 0;
	/* exactly size bytes, not NUL-terminated: ASan sees any over-read */
	str = malloc(size ? size : 1);
	jc = calloc(1, sizeof(JsonCard));
	if (str == NULL || jc == NULL)
	{
		free(str);
		free(jc);
		return 0;
	}
	memcpy(str, data, size);
	check_statement_masking(str, size);

	card_parse_json(str, size, jc);
	if (jc->error == NULL)
	{
		char		digits[CARD_PAN_MAX_DIGITS + 1];
		volatile int ndigits = -1;
		volatile CardBrand brand = CARD_BRAND_UNKNOWN;
		bool		raised;

		FUZZ_ASSERT(jc->has_number && jc->has_exp_month && jc->has_exp_year);
		check_field(jc->number, sizeof(jc->number), jc->number_len);
		if (jc->has_cvv)
			check_field(jc->cvv, sizeof(jc->cvv), jc->cvv_len);
		if (jc->has_holder)
			check_field(jc->holder, sizeof(jc->holder), jc->holder_len);
		FUZZ_ASSERT(jc->exp_month >= -1 && jc->exp_month <= 99999);
		FUZZ_ASSERT(jc->exp_year >= -1 && jc->exp_year <= 99999);

		PG_SHIM_TRY(ndigits = card_normalize_number(jc->number, jc->number_len, digits),
					raised);
		if (!raised)
			PG_SHIM_TRY(brand = card_check_number(digits, ndigits), raised);
		if (!raised && jc->has_cvv)
		{
			char		cvv[CARD_CVV_MAX_DIGITS + 1];

			PG_SHIM_TRY((void) card_check_cvv(brand, jc->cvv, jc->cvv_len, cvv), raised);
			explicit_bzero(cvv, sizeof(cvv));
		}
		if (raised)
		{
			FUZZ_ASSERT(pg_shim_error.hide_stmt && pg_shim_error.hide_context);
			FUZZ_ASSERT(strpbrk(pg_shim_error.message, "0123456789") == NULL);
		}
		else
		{
			FUZZ_ASSERT(brand != CARD_BRAND_UNKNOWN);
			if (memchr(str, '\\', size) == NULL)
				FUZZ_ASSERT(card_text_contains_number(str, (int) size));
			check_masked(str, size, jc);
		}
		explicit_bzero(digits, sizeof(digits));
	}
	else
		FUZZ_ASSERT(jc->error[0] != '\0');

	explicit_bzero(jc, sizeof(JsonCard));
	free(jc);
	free(str);
	return 0;
}
