/*-------------------------------------------------------------------------
 *
 * secret_redact.c
 *	  Mask credentials in free text, in place, keeping its length.
 *
 * card_redact() calls it on everything it masks (log messages, the query
 * texts pg_stat_statements keeps), so a credential is hidden wherever card
 * data is: a statement calling pay_use_api_key('pk_...'), PostgREST's
 * request.headers bound as a parameter with X-Api-Key or Authorization.
 *
 * What is masked:
 *	- the secret of a merchant API key, "pk_<key id>_<secret>" (api_keys.c):
 *	  the key id stays where nothing else masks it, to tell which key was
 *	  used;
 *	- the token after "Bearer " (any case): a JWT is a credential until it
 *	  expires.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_redact.h"
#include "secret_redact.h"

/* base64url, and the dots and base64 characters of a JWT or other token */
#define IS_TOKEN(c) \
	(((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || \
	 ((c) >= 'A' && (c) <= 'Z') || (c) == '_' || (c) == '-' || (c) == '.' || \
	 (c) == '+' || (c) == '/' || (c) == '=')
#define IS_KEY_CHAR(c) \
	(((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || \
	 ((c) >= 'A' && (c) <= 'Z') || (c) == '_' || (c) == '-')

/* Shorter runs are not secrets (a key's secret is 43 characters). */
#define MIN_SECRET_LEN	16

static void
mask(char *buf, int from, int to)
{
	for (int k = from; k < to; k++)
		buf[k] = CARD_REDACT_CHAR;
}

/* "pk_<key id>_<16 or more key characters>", not inside a longer word */
static bool
mask_api_keys(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i + 3 < len; i++)
	{
		int			j;
		int			from;

		if (buf[i] != 'p' || buf[i + 1] != 'k' || buf[i + 2] != '_' ||
			(i > 0 && IS_KEY_CHAR(buf[i - 1])))
			continue;
		/* the key id's digits may be masked already (a statement's literals) */
		for (j = i + 3; j < len && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == CARD_REDACT_CHAR); j++)
			;
		if (j == i + 3 || j >= len || buf[j] != '_')
			continue;
		from = ++j;
		while (j < len && IS_KEY_CHAR(buf[j]))
			j++;
		if (j - from < MIN_SECRET_LEN)
			continue;
		mask(buf, from, j);
		masked = true;
		i = j - 1;
	}
	return masked;
}

/* "bearer" (any case), blanks, then a token of 16 or more characters */
static bool
mask_bearer_tokens(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i + 6 < len; i++)
	{
		int			j;
		int			from;

		if (pg_strncasecmp(buf + i, "bearer", 6) != 0 ||
			(i > 0 && IS_KEY_CHAR(buf[i - 1])))
			continue;
		for (j = i + 6; j < len && (buf[j] == ' ' || buf[j] == '\t'); j++)
			;
		if (j == i + 6)
			continue;
		from = j;
		while (j < len && IS_TOKEN(buf[j]))
			j++;
		if (j - from < MIN_SECRET_LEN)
			continue;
		mask(buf, from, j);
		masked = true;
		i = j - 1;
	}
	return masked;
}

/* Mask the credentials in buf[0..len); whether anything was masked. */
bool
secret_redact(char *buf, int len)
{
	bool		masked = false;

	masked |= mask_api_keys(buf, len);
	masked |= mask_bearer_tokens(buf, len);
	return masked;
}
