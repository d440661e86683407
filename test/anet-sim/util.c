/*-------------------------------------------------------------------------
 *
 * util.c
 *		Small helpers: the simulator clock, money as integer cents, and
 *		json-c conveniences used by every handler.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

/* Current simulator time in ms: wall clock plus the control-set offset */
long long
sim_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
		sim.clock_offset_ms;
}

/* Format as the gateway does: 2017-06-16T06:48:37Z (or .39Z with frac) */
void
format_time_utc(long long ms, char *buf, size_t len, bool frac)
{
	time_t		s = (time_t) (ms / 1000);
	struct tm	tm;

	gmtime_r(&s, &tm);
	if (frac)
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec, (int) (ms % 1000));
	else
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec);
}

/*
 * An account number as the gateway shows it: XXXX1111 (eCheck XXXXX6789),
 * the last four of digits (a whole number or its last four); no digits at
 * all while the mask_all_digits setting is on.
 */
void
mask_account(const char *digits, bool echeck, char *out, size_t len)
{
	size_t		n = strlen(digits);

	snprintf(out, len, "%s%s", echeck ? "XXXXX" : "XXXX",
			 sim.cfg.mask_all_digits ? "" : n > 4 ? digits + n - 4 : digits);
}

/* Merchant-local time; the simulated account is on US Mountain Standard */
void
format_time_local(long long ms, char *buf, size_t len, bool frac)
{
	char		tmp[64];

	format_time_utc(ms - 7LL * 3600 * 1000, tmp, sizeof(tmp), frac);
	tmp[strlen(tmp) - 1] = '\0';	/* local times carry no zone */
	snprintf(buf, len, "%s", tmp);
}

/*
 * Parse a decimal amount into cents; more than 2 decimals is invalid, and
 * so is an amount of more than 15 digits (the API reference: "up to 15
 * digits with a decimal point").
 */
bool
parse_amount(const char *s, long long *cents)
{
	long long	whole = 0;
	int			frac = 0,
				nfrac = 0,
				ndigits = 0;
	bool		neg = false,
				digits = false;

	if (s == NULL)
		return false;
	while (isspace((unsigned char) *s))
		s++;
	if (*s == '+' || *s == '-')
		neg = (*s++ == '-');
	while (isdigit((unsigned char) *s))
	{
		whole = whole * 10 + (*s++ - '0');
		digits = true;
		if (whole > 0 && ++ndigits > 15)
			return false;
	}
	if (*s == '.')
	{
		s++;
		while (isdigit((unsigned char) *s))
		{
			if (nfrac < 2)
				frac = frac * 10 + (*s - '0');
			else if (*s != '0')
				return false;
			nfrac++;
			digits = true;
			if (++ndigits > 15)
				return false;
			s++;
		}
	}
	while (isspace((unsigned char) *s))
		s++;
	if (*s != '\0' || !digits)
		return false;
	if (nfrac == 1)
		frac *= 10;
	*cents = (whole * 100 + frac) * (neg ? -1 : 1);
	return true;
}

/* Format cents as 12.34 */
void
format_amount(long long cents, char *buf, size_t len)
{
	snprintf(buf, len, "%s%lld.%02lld", cents < 0 ? "-" : "",
			 llabs(cents) / 100, llabs(cents) % 100);
}

/* A JSON number printed with exactly two decimals (reporting replies) */
json_object *
json_amount(long long cents)
{
	char		buf[32];

	format_amount(cents, buf, sizeof(buf));
	return json_object_new_double_s((double) cents / 100.0, buf);
}

/* Member lookup that tolerates NULL objects */
json_object *
jget(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

/* Dotted path lookup: "payment.creditCard.cardNumber" */
json_object *
jpath(json_object *obj, const char *path)
{
	char		buf[256];
	char	   *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *tok = strtok_r(buf, ".", &save); tok && obj;
		 tok = strtok_r(NULL, ".", &save))
		obj = jget(obj, tok);
	return obj;
}

/* String value of a scalar member (numbers and booleans too), or NULL */
const char *
jstr(json_object *obj, const char *key)
{
	json_object *v = key ? jget(obj, key) : obj;

	if (v == NULL || json_object_is_type(v, json_type_object) ||
		json_object_is_type(v, json_type_array))
		return NULL;
	return json_object_get_string(v);
}

/* Item i of a value that may be a single object or an array */
json_object *
jitem(json_object *v, int i, int *n)
{
	if (v == NULL)
	{
		*n = 0;
		return NULL;
	}
	if (json_object_is_type(v, json_type_array))
	{
		*n = (int) json_object_array_length(v);
		return i < *n ? json_object_array_get_idx(v, i) : NULL;
	}
	*n = 1;
	return i == 0 ? v : NULL;
}

/* Add a string member (NULL becomes "") */
void
jadd_str(json_object *obj, const char *key, const char *val)
{
	jadd(obj, key, json_object_new_string(val ? val : ""));
}

/* Add a member; aborts on allocation failure, which json-c reports */
void
jadd(json_object *obj, const char *key, json_object *val)
{
	if (json_object_object_add(obj, key, val) != 0)
	{
		fprintf(stderr, "anet-sim: json_object_object_add failed\n");
		abort();
	}
}

/* xorshift PRNG; quality is irrelevant, thread safety is by the lock */
unsigned int
sim_rand(void)
{
	static __thread unsigned long long x = 0;

	if (x == 0)
		x = (unsigned long long) time(NULL) ^ (unsigned long long) (size_t) &x;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return (unsigned int) (x >> 11);
}

/* Upper-case alphanumeric string of n characters (auth codes, ids) */
void
random_alnum(char *buf, int n)
{
	static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	for (int i = 0; i < n; i++)
		buf[i] = set[sim_rand() % 36];
	buf[n] = '\0';
}

/*
 * Bounded copy that always terminates and accepts NULL.  What does not fit
 * is cut before a whole UTF-8 character, never inside one.
 */
void
strlcpy0(char *dst, const char *src, size_t len)
{
	size_t		n;

	if (len == 0)
		return;
	n = snprintf(dst, len, "%s", src ? src : "");
	if (n >= len)
	{
		/* src[n] is the first byte left out: cut before its character */
		n = len - 1;
		while (n > 0 && ((unsigned char) src[n] & 0xC0) == 0x80)
			n--;
		dst[n] = '\0';
	}
}

/* XSD boolean */
bool
jbool(const char *s)
{
	return s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "1") == 0);
}
