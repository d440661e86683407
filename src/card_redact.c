/*-------------------------------------------------------------------------
 *
 * card_redact.c
 *	  Mask card numbers and security codes in free text, in place.
 *
 * Used on what leaves the server's memory as text: log messages (the
 * emit_log_hook in card_log.c) and the query texts pg_stat_statements
 * keeps (card_query_text.c).  Masking keeps the length (every masked
 * character becomes 'X'), so positions into a query text stay valid.
 *
 * What is masked:
 *	- every run of 12 or more digits, optionally grouped by single spaces
 *	  or dashes, whether or not it passes the Luhn check: a mistyped card
 *	  is as secret as the right one (numbers that long are rare in ordinary
 *	  log lines: identifiers, LSNs and times are shorter or punctuated);
 *	- the value after a card key (number, card_number, cvv, cvc, cvv2,
 *	  card_code, cardCode, card-code, security_code, pan), quoted or not,
 *	  after ':' (JSON), '=' or '=>' (named arguments);
 *	- every quoted literal inside the parentheses of a pay_card(...) call:
 *	  the number, the security code and the holder name given positionally.
 * A false positive costs a few masked characters of a log line.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_brand.h"
#include "card_redact.h"

#define IS_DIGIT(c)		((c) >= '0' && (c) <= '9')
#define IS_WORD(c)		(((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || \
						 ((c) >= 'A' && (c) <= 'Z') || (c) == '_')
#define VALUE_MAX		128		/* longest value masked after a card key */

static const char *const card_keys[] = {
	"number", "card_number", "cardnumber", "card-number", "pan",
	"cvv", "cvv2", "cvc", "cvc2", "cid", "card_code", "cardcode", "card-code",
	"security_code", "securitycode", "security-code", NULL
};

/* Mask every run of at least CARD_PAN_MIN_DIGITS grouped digits. */
static bool
mask_digit_runs(char *buf, int len)
{
	bool		masked = false;
	int			i = 0;

	while (i < len)
	{
		int			start,
					end,
					ndigits = 0;

		if (!IS_DIGIT(buf[i]))
		{
			i++;
			continue;
		}
		start = i;
		end = i;
		while (i < len)
		{
			if (IS_DIGIT(buf[i]))
			{
				ndigits++;
				end = ++i;
			}
			else if ((buf[i] == ' ' || buf[i] == '-') && i + 1 < len && IS_DIGIT(buf[i + 1]))
				i++;
			else
				break;
		}
		if (ndigits >= CARD_PAN_MIN_DIGITS)
		{
			for (int j = start; j < end; j++)
				if (IS_DIGIT(buf[j]))
					buf[j] = CARD_REDACT_CHAR;
			masked = true;
		}
	}
	return masked;
}

/* Mask a quoted literal starting at buf[i] (the quote); returns its end. */
static int
mask_quoted(char *buf, int len, int i, bool *masked)
{
	char		q = buf[i];
	int			j = i + 1;

	while (j < len)
	{
		if (buf[j] == q)
		{
			if (q == '\'' && j + 1 < len && buf[j + 1] == '\'')
			{
				buf[j] = buf[j + 1] = CARD_REDACT_CHAR;
				j += 2;
				*masked = true;
				continue;
			}
			break;
		}
		if (buf[j] == '\\' && q == '"' && j + 1 < len)
		{
			buf[j] = buf[j + 1] = CARD_REDACT_CHAR;
			j += 2;
			*masked = true;
			continue;
		}
		buf[j++] = CARD_REDACT_CHAR;
		*masked = true;
	}
	return j + 1;
}

/* Mask the values after card keys. */
static bool
mask_key_values(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i < len; i++)
	{
		int			keylen = 0;
		int			j;

		if (i > 0 && IS_WORD(buf[i - 1]))
			continue;
		for (int k = 0; card_keys[k] != NULL; k++)
		{
			int			kl = strlen(card_keys[k]);

			if (i + kl <= len && pg_strncasecmp(buf + i, card_keys[k], kl) == 0 &&
				(i + kl == len || !IS_WORD(buf[i + kl])) && kl > keylen)
				keylen = kl;
		}
		if (keylen == 0)
			continue;
		j = i + keylen;
		/* a closing quote of the key (possibly escaped), blanks, a separator */
		if (j < len && buf[j] == '\\')
			j++;
		if (j < len && (buf[j] == '"' || buf[j] == '\''))
			j++;
		while (j < len && buf[j] == ' ')
			j++;
		if (j < len && buf[j] == ':')
			j++;
		else if (j + 1 < len && buf[j] == '=' && buf[j + 1] == '>')
			j += 2;
		else if (j < len && buf[j] == '=')
			j++;
		else
			continue;
		while (j < len && buf[j] == ' ')
			j++;
		if (j < len && buf[j] == '\\' && j + 1 < len && buf[j + 1] == '"')
		{
			/* an escaped JSON string inside a quoted text: up to \" */
			int			e = j + 2;

			while (e < len && e - j < VALUE_MAX && !(buf[e] == '\\' && e + 1 < len && buf[e + 1] == '"'))
				buf[e++] = CARD_REDACT_CHAR;
			masked = true;
			i = e;
		}
		else if (j < len && (buf[j] == '"' || buf[j] == '\''))
		{
			int			e = j + 1;

			/* only short values: a key in prose must not eat the line */
			while (e < len && buf[e] != buf[j] && e - j < VALUE_MAX)
				e++;
			if (e < len && buf[e] == buf[j])
				i = mask_quoted(buf, len, j, &masked) - 1;
		}
		else
		{
			while (j < len && (IS_DIGIT(buf[j]) || ((buf[j] == ' ' || buf[j] == '-') &&
													j + 1 < len && IS_DIGIT(buf[j + 1]))))
			{
				if (IS_DIGIT(buf[j]))
				{
					buf[j] = CARD_REDACT_CHAR;
					masked = true;
				}
				j++;
			}
			i = j;
		}
	}
	return masked;
}

/* Mask the quoted literals inside pay_card( ... ). */
static bool
mask_pay_card_calls(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i + 8 < len; i++)
	{
		int			j,
					depth;

		if (pg_strncasecmp(buf + i, "pay_card", 8) != 0 || (i > 0 && IS_WORD(buf[i - 1])))
			continue;
		j = i + 8;
		if (j < len && buf[j] == '"')
			j++;
		while (j < len && (buf[j] == ' ' || buf[j] == '\n' || buf[j] == '\t'))
			j++;
		if (j >= len || buf[j] != '(')
			continue;
		depth = 0;
		while (j < len)
		{
			if (buf[j] == '(')
				depth++;
			else if (buf[j] == ')' && --depth == 0)
				break;
			else if (buf[j] == '\'')
			{
				j = mask_quoted(buf, len, j, &masked);
				continue;
			}
			j++;
		}
		i = j;
	}
	return masked;
}

/*
 * Mask card data in buf[0..len) in place.  Returns whether anything was
 * masked.
 */
bool
card_redact(char *buf, int len)
{
	bool		masked = false;

	masked |= mask_pay_card_calls(buf, len);
	masked |= mask_key_values(buf, len);
	masked |= mask_digit_runs(buf, len);
	return masked;
}

/*
 * Mask every value of a bind parameter list as PostgreSQL logs it
 * ("parameters: $1 = '...', $2 = '...'"): called when the statement or
 * one of its parameters holds card data, since a security code bound next
 * to a card number is just a short number.
 */
bool
card_redact_params(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i + 1 < len; i++)
	{
		int			j;

		if (buf[i] != '$' || !IS_DIGIT(buf[i + 1]))
			continue;
		j = i + 1;
		while (j < len && IS_DIGIT(buf[j]))
			j++;
		if (j + 3 < len && buf[j] == ' ' && buf[j + 1] == '=' && buf[j + 2] == ' ' && buf[j + 3] == '\'')
			i = mask_quoted(buf, len, j + 3, &masked) - 1;
	}
	return masked;
}

/*
 * Mask the digits of a JSON input error's excerpt ("JSON data, line 1:
 * ..." and "Token \"...\" is invalid."): it echoes the input, which may
 * hold a card number cut anywhere.
 */
bool
card_redact_json_excerpt(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i < len; i++)
	{
		if (IS_DIGIT(buf[i]))
		{
			buf[i] = CARD_REDACT_CHAR;
			masked = true;
		}
	}
	return masked;
}

/* A masked palloc'd copy of str, or NULL when it holds nothing to mask. */
char *
card_redacted_copy(const char *str)
{
	int			len = strlen(str);
	char	   *copy = pnstrdup(str, len);

	if (card_redact(copy, len))
		return copy;
	pfree(copy);
	return NULL;
}
