/*-------------------------------------------------------------------------
 *
 * card_brand.h
 *	  Card number syntax, Luhn check, brand detection and card code rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_BRAND_H
#define PAYMENTS_CARD_BRAND_H

/* Brands, as stored in a pay_card header: never renumber */
typedef enum CardBrand
{
	CARD_BRAND_UNKNOWN = 0,
	CARD_BRAND_VISA = 1,
	CARD_BRAND_MASTERCARD = 2,
	CARD_BRAND_AMEX = 3,
	CARD_BRAND_DISCOVER = 4,
	CARD_BRAND_JCB = 5,
	CARD_BRAND_DINERS = 6,
	CARD_BRAND_UNIONPAY = 7
} CardBrand;

#define CARD_BRAND_MAX			CARD_BRAND_UNIONPAY

#define CARD_PAN_MIN_DIGITS		12
/*
 * Card numbers are read up to 19 digits (the longest issued, and what the
 * log scrubber looks for); the gateway takes at most 16 (anet_fields.h),
 * and card_check_number refuses longer ones with a message saying so.
 */
#define CARD_PAN_MAX_DIGITS		19
#define CARD_CVV_MAX_DIGITS		4

/*
 * Longest card number text we look at: 19 digits, 18 separators and some
 * surrounding white space.  Anything longer is rejected unread.
 */
#define CARD_NUMBER_MAX_INPUT	64

/*
 * Report a card input error.  The statement and the error context are
 * kept out of the server log: both may quote the card number.  Never pass
 * anything derived from the number or card code as an argument.
 */
#define card_error(code, msg, detail, hint) \
	ereport(ERROR, \
			(errcode(code), \
			 errmsg(msg), \
			 errdetail(detail), \
			 errhint(hint), \
			 errhidestmt(true), \
			 errhidecontext(true)))

extern const char *card_brand_name(CardBrand brand);
extern const char *card_brand_label(CardBrand brand);
extern bool card_luhn_valid(const char *digits, int ndigits);
extern CardBrand card_brand_detect(const char *digits, int ndigits);
extern int	card_normalize_number(const char *input, int len, char *digits);
extern CardBrand card_check_number(const char *digits, int ndigits);
extern bool card_text_contains_number(const char *str, int len);
extern bool card_text_contains_issued_number(const char *str, int len);
extern bool card_text_mask_numbers(char *buf, int len);
extern int	card_check_cvv(CardBrand brand, const char *input, int len, char *cvv);

#endif
