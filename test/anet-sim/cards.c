/*-------------------------------------------------------------------------
 *
 * cards.c
 *		Card number, expiry and card-code checks, and the trigger tables
 *		that make the sandbox (and this simulator) return chosen results.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cards.h"
#include "codes.h"

/* Luhn check over an all-digit string of 13..16 digits */
bool
card_luhn_ok(const char *number)
{
	int			len = (int) strlen(number),
				sum = 0;

	if (len < 13 || len > 16)
		return false;
	for (int i = 0; i < len; i++)
	{
		int			d;

		if (!isdigit((unsigned char) number[i]))
			return false;
		d = number[len - 1 - i] - '0';
		if (i % 2 == 1)
		{
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/* Brand by IIN prefix, spelled as accountType appears in replies */
const char *
card_brand(const char *n)
{
	int			p2 = atoi((char[]) {n[0], n[1] ? n[1] : '0', 0});
	int			p4 = (int) strtol((char[]) {n[0], n[1], n[2], n[3], 0}, NULL, 10);

	if (n[0] == '4')
		return "Visa";
	if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
		return "MasterCard";
	if (p2 == 34 || p2 == 37)
		return "AmericanExpress";
	if (p4 == 6011 || p2 == 65 || (p4 >= 6440 && p4 <= 6499) || p2 == 62)
		return "Discover";
	if ((p4 >= 3528 && p4 <= 3589) || (p4 >= 3088 && p4 <= 3094))
		return "JCB";
	if (p2 == 36 || p2 == 38 || (p4 >= 3000 && p4 <= 3059))
		return "DinersClub";
	return "Visa";
}

/*
 * Expiry check: 0 ok, 7 invalid format, 8 expired.  Accepted forms:
 * YYYY-MM, MMYYYY, MMYY, MM/YY, MM/YYYY, MM-YY, MM-YYYY.
 */
int
card_expiry_check(const char *e, long long now_ms)
{
	int			m = 0,
				y = 0;
	size_t		len = strlen(e);
	time_t		now = (time_t) (now_ms / 1000);
	struct tm	tm;
	char		extra;

	if (len == 7 && e[4] == '-' && sscanf(e, "%4d-%2d%c", &y, &m, &extra) == 2)
		;
	else if (len == 6 && strspn(e, "0123456789") == 6)
	{
		m = (e[0] - '0') * 10 + (e[1] - '0');
		y = atoi(e + 2);
	}
	else if (len == 4 && strspn(e, "0123456789") == 4)
	{
		m = (e[0] - '0') * 10 + (e[1] - '0');
		y = 2000 + atoi(e + 2);
	}
	else if ((len == 5 || len == 7) && (e[2] == '/' || e[2] == '-') &&
			 strspn(e, "0123456789") == 2 &&
			 strspn(e + 3, "0123456789") == len - 3)
	{
		m = (e[0] - '0') * 10 + (e[1] - '0');
		y = atoi(e + 3);
		if (len == 5)
			y += 2000;
	}
	else
		return 7;
	if (m < 1 || m > 12 || y < 1900)
		return 7;
	gmtime_r(&now, &tm);
	if (y < tm.tm_year + 1900 || (y == tm.tm_year + 1900 && m < tm.tm_mon + 1))
		return 8;
	return 0;
}

/* sandbox AVS result by billing zip */
static const struct
{
	const char *zip;
	char		avs;
	const char *not_for;		/* brands that ignore the trigger */
}			avs_zips[] = {
	{"46201", 'A', NULL}, {"46203", 'E', NULL}, {"46204", 'G', "AmericanExpress"},
	{"46205", 'N', NULL}, {"46206", 'P', NULL}, {"46207", 'R', NULL},
	{"46208", 'S', NULL}, {"46209", 'U', NULL}, {"46211", 'W', "AmericanExpress"},
	{"46214", 'X', "Visa,AmericanExpress"}, {"46217", 'Z', NULL}
};

/* AVS code for a billing zip; 'Y' (full match) when no trigger applies */
char
zip_avs(const char *zip, const char *brand)
{
	if (zip == NULL)
		return 'Y';
	for (size_t i = 0; i < sizeof(avs_zips) / sizeof(avs_zips[0]); i++)
		if (strcmp(zip, avs_zips[i].zip) == 0)
		{
			if (avs_zips[i].not_for && brand && strstr(avs_zips[i].not_for, brand))
				return 'Y';
			return avs_zips[i].avs;
		}
	return 'Y';
}

/* sandbox CVV result by card code: 900 M, 901 N, 902 S, 903 U, 904 P */
char
code_cvv(const char *code)
{
	static const char res[] = "MNSUP";

	if (code == NULL || code[0] == '\0')
		return 'P';
	if (strlen(code) == 3 && strncmp(code, "90", 2) == 0 &&
		code[2] >= '0' && code[2] <= '4')
		return res[code[2] - '0'];
	return 'M';
}

/*
 * Simulator-only trigger: an amount of $9000.00 + R, where R is a reason
 * code of class 2, 3 or 4, makes the transaction answer with reason R.
 * Returns R or 0.
 */
int
amount_trigger(long long cents)
{
	long long	r;

	if (cents <= TRIGGER_BASE_CENTS || (cents % 100) != 0)
		return 0;
	r = (cents - TRIGGER_BASE_CENTS) / 100;
	if (r < 2 || r > 999)
		return 0;
	if (reason_class((int) r) == 1)
		return 0;
	{
		char		buf[8];

		snprintf(buf, sizeof(buf), "%lld", r);
		for (const CodeText *c = code_texts; c->code; c++)
			if (strcmp(c->code, buf) == 0)
				return (int) r;
	}
	return 0;
}

/*
 * Partial-authorization zips (with allowPartialAuth): 46225 approves only
 * $1.23 (returns 1); 46226/46227/46228 approve in full with a remaining
 * balance of 1.23 / -1.23 / 0.00 (returns 2).  0 = no trigger.
 */
int
zip_partial(const char *zip, long long *balance)
{
	if (zip == NULL)
		return 0;
	if (strcmp(zip, "46225") == 0)
	{
		*balance = 0;
		return 1;
	}
	if (strcmp(zip, "46226") == 0)
		*balance = 123;
	else if (strcmp(zip, "46227") == 0)
		*balance = -123;
	else if (strcmp(zip, "46228") == 0)
		*balance = 0;
	else
		return 0;
	return 2;
}

/* Describe every trigger for the control API's GET /triggers */
void
triggers_json_add(void *arrp)
{
	json_object *arr = arrp;
	char		buf[256];

#define ADD(kind, value, effect) do { \
		json_object *o = json_object_new_object(); \
		json_object_object_add(o, "kind", json_object_new_string(kind)); \
		json_object_object_add(o, "value", json_object_new_string(value)); \
		json_object_object_add(o, "effect", json_object_new_string(effect)); \
		json_object_array_add(arr, o); \
	} while (0)

	ADD("billTo.zip", DECLINE_ZIP, "sandbox: declined, responseCode 2, reason 2");
	for (size_t i = 0; i < sizeof(avs_zips) / sizeof(avs_zips[0]); i++)
	{
		snprintf(buf, sizeof(buf), "sandbox: avsResultCode %c%s%s (approved)",
				 avs_zips[i].avs, avs_zips[i].not_for ? ", except " : "",
				 avs_zips[i].not_for ? avs_zips[i].not_for : "");
		ADD("billTo.zip", avs_zips[i].zip, buf);
	}
	ADD("cardCode", "900..904", "sandbox: cvvResultCode M, N, S, U, P");
	ADD("billTo.zip", "46225", "sandbox, allowPartialAuth=true: only 1.23 approved, responseCode 4, reason 295, splitTenderId");
	ADD("billTo.zip", "46226/46227/46228", "sandbox, allowPartialAuth=true: full amount, prePaidCard balanceOnCard 1.23 / -1.23 / 0.00");
	ADD("eCheck amount", "> 100.00", "sandbox: eCheck declined (responseCode 2, reason 2)");
	ADD("amount", "9000.00 + R", "simulator-only: answer with reason code R (class 2 decline, 3 error, 4 held; e.g. 9008.00 expired card, 9011.00 duplicate, 9019.00..9023.00 processing errors, 9252.00 held FDSPendingReview, 9253.00 authorized and held; a refund of 9252.00 or 9253.00 is held)");
	ADD("cardNumber", "4000000000000002", "simulator-only: declined, reason 2 (any Luhn-valid number can be used normally)");
#undef ADD
}
