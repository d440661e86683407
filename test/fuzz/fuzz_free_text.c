/*-------------------------------------------------------------------------
 *
 * fuzz_free_text.c
 *	  libFuzzer target: src/free_text.c (linked as it is, with
 *	  src/card_brand.c; its ereport caught by pg_error_shim.c, its
 *	  backend calls in free_text_shim.c) on a caller's free text: a
 *	  description, a metadata value, an idempotency key, a correlation id.
 *
 * The input is one text of exactly its bytes.  Checks, besides the
 * sanitizers:
 *	 - free_text_is_identifier() accepts exactly the texts of the grammar
 *	   its comment gives, checked here on its own: 32 hex digits, or 36
 *	   in 8-4-4-4-12 groups (a UUID); or a W3C traceparent of 55
 *	   characters, 2-32-16-2 lowercase hex digits joined by dashes, the
 *	   version not ff, neither id all zeros, the parent-id not 16 decimal
 *	   digits;
 *	 - free_text_holds_card() is false for an identifier, and a text
 *	   it holds a card in is one card_text_contains_number() (the log
 *	   hook's detector, wider) holds one in too;
 *	 - free_text_mask() keeps an identifier as it is; else it changes
 *	   digits only, each to CARD_REDACT_CHAR, says whether any changed,
 *	   masks whenever free_text_holds_card() is true, and leaves a text
 *	   in which neither free_text_holds_card() nor
 *	   card_text_contains_number() finds a card;
 *	 - free_text_correlation_id_excess() is 0 up to 200 bytes and for up
 *	   to 200 characters, else the number of characters; for valid
 *	   UTF-8 without NUL that is its count of characters;
 *	   free_text_check_correlation_id() raises exactly then, with 22001
 *	   and the statement hidden;
 *	 - free_text_check() raises exactly when the text holds a card
 *	   (22Y17, statement and context hidden) or has more than max_chars
 *	   characters (22001), and no text of the error holds a card number.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_brand.h"
#include "card_redact.h"
#include "errcodes.h"
#include "mb/pg_wchar.h"
#include "free_text.h"
#include "fuzz_check.h"
#include "pg_error_shim.h"

static bool
hex_in(char c, bool lower_only)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		(!lower_only && c >= 'A' && c <= 'F');
}

/* s[from..from+n) is n hex digits (lower_only: lowercase ones). */
static bool
hex_run(const char *s, int from, int n, bool lower_only)
{
	for (int i = from; i < from + n; i++)
		if (!hex_in(s[i], lower_only))
			return false;
	return true;
}

static bool
all_char(const char *s, int from, int n, char c)
{
	for (int i = from; i < from + n; i++)
		if (s[i] != c)
			return false;
	return true;
}

static bool
all_decimal(const char *s, int from, int n)
{
	for (int i = from; i < from + n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The grammar of free_text_is_identifier's comment, on its own. */
static bool
grammar_identifier(const char *s, int len)
{
	if (len == 32)
		return hex_run(s, 0, 32, false);
	if (len == 36)
		return hex_run(s, 0, 8, false) && s[8] == '-' &&
			hex_run(s, 9, 4, false) && s[13] == '-' &&
			hex_run(s, 14, 4, false) && s[18] == '-' &&
			hex_run(s, 19, 4, false) && s[23] == '-' &&
			hex_run(s, 24, 12, false);
	if (len == 55)
		return hex_run(s, 0, 2, true) && !(s[0] == 'f' && s[1] == 'f') && s[2] == '-' &&
			hex_run(s, 3, 32, true) && !all_char(s, 3, 32, '0') && s[35] == '-' &&
			hex_run(s, 36, 16, true) && !all_char(s, 36, 16, '0') && s[52] == '-' &&
			hex_run(s, 53, 2, true) &&
			!all_decimal(s, 36, 16);
	return false;
}

/* Characters of valid UTF-8: the bytes that are no continuation byte. */
static int
utf8_chars(const char *s, int len)
{
	int			n = 0;

	for (int i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

static void
check_mask(const char *str, int len, bool identifier, bool holds)
{
	char	   *m = malloc(len ? len : 1);
	bool		ret,
				changed = false;

	FUZZ_ASSERT(m != NULL);
	memcpy(m, str, len);
	ret = free_text_mask(m, len);
	for (int i = 0; i < len; i++)
	{
		if (m[i] == str[i])
			continue;
		changed = true;
		FUZZ_ASSERT(str[i] >= '0' && str[i] <= '9' && m[i] == CARD_REDACT_CHAR);
	}
	FUZZ_ASSERT(ret == changed);
	if (identifier)
		FUZZ_ASSERT(!changed);
	else
		FUZZ_ASSERT(!card_text_contains_number(m, len));
	if (holds)
		FUZZ_ASSERT(ret);
	FUZZ_ASSERT(!free_text_holds_card(m, len));
	free(m);
}

static void
check_error_texts(void)
{
	FUZZ_ASSERT(pg_shim_error.message[0] != '\0');
	FUZZ_ASSERT(!card_text_contains_number(pg_shim_error.message, strlen(pg_shim_error.message)));
	FUZZ_ASSERT(!card_text_contains_number(pg_shim_error.detail, strlen(pg_shim_error.detail)));
	FUZZ_ASSERT(!card_text_contains_number(pg_shim_error.hint, strlen(pg_shim_error.hint)));
}

static void
check_free_text_check(const char *str, int len, bool holds, int max_chars, int nchars)
{
	bool		raised;

	PG_SHIM_TRY(free_text_check("description", str, len, max_chars), raised);
	if (holds)
	{
		FUZZ_ASSERT(raised);
		FUZZ_ASSERT(pg_shim_error.sqlerrcode == ERRCODE_PAY_CARD_IN_TEXT);
		FUZZ_ASSERT(pg_shim_error.hide_stmt && pg_shim_error.hide_context);
	}
	else if (max_chars > 0 && nchars > max_chars)
	{
		FUZZ_ASSERT(raised);
		FUZZ_ASSERT(pg_shim_error.sqlerrcode == ERRCODE_STRING_DATA_RIGHT_TRUNCATION);
	}
	else
		FUZZ_ASSERT(!raised);
	if (raised)
		check_error_texts();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *str;
	int			len = (int) size;
	bool		identifier,
				holds;
	int			excess,
				nchars;

	if (size > 64 * 1024)
		return 0;
	str = malloc(size ? size : 1);
	FUZZ_ASSERT(str != NULL);
	memcpy(str, data, size);

	identifier = free_text_is_identifier(str, len);
	FUZZ_ASSERT(identifier == grammar_identifier(str, len));
	holds = free_text_holds_card(str, len);
	if (identifier)
		FUZZ_ASSERT(!holds);
	if (holds)
		FUZZ_ASSERT(card_text_contains_number(str, len));
	check_mask(str, len, identifier, holds);

	excess = free_text_correlation_id_excess(str, len);
	FUZZ_ASSERT(excess == 0 || (excess > FREE_TEXT_CORRELATION_ID_MAX_CHARS && excess <= len));
	if (len <= FREE_TEXT_CORRELATION_ID_MAX_CHARS)
		FUZZ_ASSERT(excess == 0);
	nchars = pg_mbstrlen_with_len(str, len);
	if (fuzz_valid_utf8((const unsigned char *) str, size) && memchr(str, '\0', size) == NULL)
	{
		FUZZ_ASSERT(nchars == utf8_chars(str, len));
		FUZZ_ASSERT(excess == (nchars > FREE_TEXT_CORRELATION_ID_MAX_CHARS ? nchars : 0));
	}

	{
		bool		raised;

		PG_SHIM_TRY(free_text_check_correlation_id(str, len), raised);
		FUZZ_ASSERT(raised == (excess > 0));
		if (raised)
		{
			FUZZ_ASSERT(pg_shim_error.sqlerrcode == ERRCODE_STRING_DATA_RIGHT_TRUNCATION);
			FUZZ_ASSERT(pg_shim_error.hide_stmt);
			check_error_texts();
		}
	}

	/* unbounded, bounded by the input's first byte, and by 500 */
	check_free_text_check(str, len, holds, 0, nchars);
	if (size > 0)
		check_free_text_check(str, len, holds, (unsigned char) str[0], nchars);
	check_free_text_check(str, len, holds, FREE_TEXT_VALUE_MAX_CHARS, nchars);

	FUZZ_ASSERT(memcmp(str, data, size) == 0);
	free(str);
	return 0;
}
