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
 *	  expires;
 *	- the value of an Accept.js dataValue (opaque data): whoever holds the
 *	  nonce can charge the card once, so it is kept only sealed (the vault),
 *	  and a statement passing it must not log it.
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

/*
 * Where the secret after a prefix found at buf[i] begins, or -1 when no
 * prefix of its kind is there.
 */
typedef int (*SecretStart) (const char *buf, int len, int i);

/* "pk_<key id>_": an API key's secret follows */
static int
api_key_start(const char *buf, int len, int i)
{
	int			j;

	if (i + 3 >= len || buf[i] != 'p' || buf[i + 1] != 'k' || buf[i + 2] != '_')
		return -1;
	/* the key id's digits may be masked already (a statement's literals) */
	for (j = i + 3; j < len && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == CARD_REDACT_CHAR); j++)
		;
	if (j == i + 3 || j >= len || buf[j] != '_')
		return -1;
	return j + 1;
}

/* "bearer" (any case) and blanks: a token follows */
static int
bearer_start(const char *buf, int len, int i)
{
	int			j;

	if (i + 6 >= len || pg_strncasecmp(buf + i, "bearer", 6) != 0)
		return -1;
	for (j = i + 6; j < len && (buf[j] == ' ' || buf[j] == '\t'); j++)
		;
	return j > i + 6 ? j : -1;
}

/*
 * "dataValue" or "data_value" (any case), then what separates a key from its
 * value in JSON (quotes, escaped or not, and a colon), in a named argument
 * ("=", "=>") or in a list of keys and values (jsonb_build_object's ", "):
 * an Accept.js nonce follows.
 */
static int
data_value_start(const char *buf, int len, int i)
{
	static const char *const keys[] = {"datavalue", "data_value"};
	int			j = -1;

	for (int k = 0; k < (int) lengthof(keys) && j < 0; k++)
	{
		int			n = strlen(keys[k]);

		if (i + n <= len && pg_strncasecmp(buf + i, keys[k], n) == 0 &&
			(i + n == len || !IS_KEY_CHAR(buf[i + n])))
			j = i + n;
	}
	if (j < 0)
		return -1;
	while (j < len && (buf[j] == '"' || buf[j] == '\\' || buf[j] == '\'' ||
					   buf[j] == ' ' || buf[j] == '\t' || buf[j] == ':' ||
					   buf[j] == '=' || buf[j] == '>' || buf[j] == ','))
		j++;
	return j;
}

/*
 * Mask every secret of MIN_SECRET_LEN or more characters (key characters,
 * or any token character) that follows a prefix start() finds, the prefix
 * not inside a longer word.
 */
static bool
mask_secrets(char *buf, int len, SecretStart start, char first, bool token)
{
	bool		masked = false;

	/* first: the prefix's first letter, in lower case */
	for (int i = 0; (i = card_next_letter(buf, len, i, first)) < len; i++)
	{
		int			from;
		int			j;

		if ((i > 0 && IS_KEY_CHAR(buf[i - 1])) || (from = start(buf, len, i)) < 0)
			continue;
		for (j = from; j < len && (token ? IS_TOKEN(buf[j]) : IS_KEY_CHAR(buf[j])); j++)
			;
		if (j - from < MIN_SECRET_LEN)
			continue;
		for (int k = from; k < j; k++)
			buf[k] = CARD_REDACT_CHAR;
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

	masked |= mask_secrets(buf, len, api_key_start, 'p', false);
	masked |= mask_secrets(buf, len, bearer_start, 'b', true);
	masked |= mask_secrets(buf, len, data_value_start, 'd', true);
	return masked;
}
