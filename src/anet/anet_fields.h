/*-------------------------------------------------------------------------
 *
 * anet_fields.h
 *	  What the gateway's schema lets a request carry: the one home of the
 *	  text fields' length limits and of the characters they may hold.
 *
 * The request builders (anet_request.c) check every field against these
 * limits before a request leaves, and the SQL API (src/gateway_input.c)
 * checks the caller's values against the same limits at call time, so
 * that an input the gateway would refuse is refused while the caller can
 * still correct it, not later in the worker.  Limits are in characters,
 * as the XSD counts them (AnetApiSchema.xsd; NOTES.md §3).
 *
 * Plain C: no PostgreSQL header (see anet_protocol.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_ANET_FIELDS_H
#define PAYMENTS_ANET_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

/* creditCard.cardNumber: 4 to 16 characters (XSD creditCardSimpleType) */
#define ANET_CARD_NUMBER_MAX	16

/* transactionRequest.amount: at most 15 digits (API reference) */
#define ANET_AMOUNT_MAX_DIGITS	15
/* decimal places of an amount: a currency of more (KWD, CLF) cannot be sent */
#define ANET_AMOUNT_MAX_DECIMALS	2

/* profile.customerProfileId, paymentProfileId: numericString, <= 20 */
#define ANET_PROFILE_ID_MAX		20

/* The free-text fields a request may carry from the caller's input. */
typedef enum AnetTextFieldId
{
	ANET_FIELD_REF_ID,			/* refId */
	ANET_FIELD_INVOICE_NUMBER,	/* order.invoiceNumber */
	ANET_FIELD_DESCRIPTION,		/* order.description */
	ANET_FIELD_CUSTOMER_ID,		/* customer.id */
	ANET_FIELD_CUSTOMER_EMAIL,	/* customer.email */
	ANET_FIELD_BILL_FIRST_NAME, /* billTo.firstName */
	ANET_FIELD_BILL_LAST_NAME,	/* billTo.lastName */
	ANET_FIELD_BILL_COMPANY,	/* billTo.company */
	ANET_FIELD_BILL_ADDRESS,	/* billTo.address */
	ANET_FIELD_BILL_CITY,		/* billTo.city */
	ANET_FIELD_BILL_STATE,		/* billTo.state */
	ANET_FIELD_BILL_ZIP,		/* billTo.zip */
	ANET_FIELD_BILL_COUNTRY,	/* billTo.country */
	ANET_FIELD_CUSTOMER_IP,		/* transactionRequest.customerIP */
	ANET_FIELD_PROFILE_MERCHANT_CUSTOMER_ID,	/* profile.merchantCustomerId */
	ANET_FIELD_PROFILE_DESCRIPTION, /* profile.description */
	ANET_FIELD_PROFILE_EMAIL,	/* profile.email */
	ANET_FIELD_COUNT
} AnetTextFieldId;

typedef struct AnetTextField
{
	const char *path;			/* the request's JSON path, for messages */
	const char *customer_key;	/* key of the SQL API's customer object
								 * that fills it, or NULL */
	size_t		max_chars;		/* at most this many characters */
} AnetTextField;

extern const AnetTextField anet_text_fields[ANET_FIELD_COUNT];

/* What anet_text_check found. */
typedef enum AnetTextStatus
{
	ANET_TEXT_OK,
	ANET_TEXT_BAD_UTF8,			/* not well-formed UTF-8 */
	ANET_TEXT_BAD_CHAR			/* a character XML 1.0 cannot carry */
} AnetTextStatus;

extern AnetTextStatus anet_text_check(const char *s, size_t len, size_t *nchars,
									  unsigned int *bad_cp);
extern bool anet_xml_char_ok(unsigned int cp);
extern size_t anet_decimal_digits(const char *s);

#endif
