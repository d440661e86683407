/*-------------------------------------------------------------------------
 *
 * anet_fields.c
 *	  The gateway's text field limits and character rules (anet_fields.h).
 *
 * The JSON API is translated to XML on the gateway's side, so a request
 * can carry only what XML 1.0 can: tab, line feed, carriage return and
 * the characters from U+0020 on, except U+FFFE and U+FFFF (surrogates are
 * not characters and are refused as malformed UTF-8).  Anything else
 * makes the gateway refuse the whole request.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>

#include "anet_fields.h"

/* Lengths from AnetApiSchema.xsd (customerIP has none there: 45 is IPv6 text) */
const AnetTextField anet_text_fields[ANET_FIELD_COUNT] = {
	[ANET_FIELD_REF_ID] = {"refId", NULL, 20},
	[ANET_FIELD_INVOICE_NUMBER] = {"order.invoiceNumber", NULL, 20},
	[ANET_FIELD_DESCRIPTION] = {"order.description", NULL, 255},
	[ANET_FIELD_CUSTOMER_ID] = {"customer.id", "id", 20},
	[ANET_FIELD_CUSTOMER_EMAIL] = {"customer.email", "email", 255},
	[ANET_FIELD_BILL_FIRST_NAME] = {"billTo.firstName", "first_name", 50},
	[ANET_FIELD_BILL_LAST_NAME] = {"billTo.lastName", "last_name", 50},
	[ANET_FIELD_BILL_COMPANY] = {"billTo.company", "company", 50},
	[ANET_FIELD_BILL_ADDRESS] = {"billTo.address", "address", 60},
	[ANET_FIELD_BILL_CITY] = {"billTo.city", "city", 40},
	[ANET_FIELD_BILL_STATE] = {"billTo.state", "state", 40},
	[ANET_FIELD_BILL_ZIP] = {"billTo.zip", "zip", 20},
	[ANET_FIELD_BILL_COUNTRY] = {"billTo.country", "country", 60},
	[ANET_FIELD_CUSTOMER_IP] = {"transactionRequest.customerIP", "ip", 45},
	/* customer profiles (CIM): customerProfileBaseType */
	[ANET_FIELD_PROFILE_MERCHANT_CUSTOMER_ID] = {"profile.merchantCustomerId", NULL, 20},
	[ANET_FIELD_PROFILE_DESCRIPTION] = {"profile.description", NULL, 255},
	[ANET_FIELD_PROFILE_EMAIL] = {"profile.email", NULL, 255},
};

/* Can XML 1.0 carry this code point (production Char)? */
bool
anet_xml_char_ok(unsigned int cp)
{
	if (cp < 0x20)
		return cp == 0x09 || cp == 0x0A || cp == 0x0D;
	if (cp >= 0xD800 && cp <= 0xDFFF)
		return false;
	if (cp == 0xFFFE || cp == 0xFFFF)
		return false;
	return cp <= 0x10FFFF;
}

/*
 * Check len bytes of s: well-formed UTF-8 (no overlong forms, surrogates,
 * or code points past U+10FFFF) of characters XML 1.0 can carry.  On
 * ANET_TEXT_OK, *nchars is the number of characters; on
 * ANET_TEXT_BAD_CHAR, it is the (0-based) position of the first character
 * XML cannot carry, and *bad_cp (when not NULL) that character.  A NUL
 * byte is U+0000, which XML cannot carry.
 */
AnetTextStatus
anet_text_check(const char *s, size_t len, size_t *nchars, unsigned int *bad_cp)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	size_t		n = 0;
	size_t		bad_at = 0;
	AnetTextStatus status = ANET_TEXT_OK;

	while (p < end)
	{
		unsigned int c = *p;
		int			extra;
		uint32_t	cp;

		if (c < 0x80)
		{
			extra = 0;
			cp = c;
		}
		else if (c >= 0xC2 && c <= 0xDF)
		{
			extra = 1;
			cp = c & 0x1F;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			extra = 2;
			cp = c & 0x0F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			extra = 3;
			cp = c & 0x07;
		}
		else
			return ANET_TEXT_BAD_UTF8;
		if (end - p <= extra)
			return ANET_TEXT_BAD_UTF8;
		for (int i = 1; i <= extra; i++)
		{
			if ((p[i] & 0xC0) != 0x80)
				return ANET_TEXT_BAD_UTF8;
			cp = (cp << 6) | (p[i] & 0x3F);
		}
		if ((extra == 2 && cp < 0x800) ||
			(extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return ANET_TEXT_BAD_UTF8;
		/* malformed UTF-8 anywhere outranks a bad character */
		if (!anet_xml_char_ok(cp) && status == ANET_TEXT_OK)
		{
			status = ANET_TEXT_BAD_CHAR;
			bad_at = n;
			if (bad_cp != NULL)
				*bad_cp = cp;
		}
		p += extra + 1;
		n++;
	}
	*nchars = status == ANET_TEXT_OK ? n : bad_at;
	return status;
}

/* The number of digits in a decimal amount's text ("12.34": 4). */
size_t
anet_decimal_digits(const char *s)
{
	size_t		n = 0;

	for (; *s; s++)
		if (*s >= '0' && *s <= '9')
			n++;
	return n;
}
