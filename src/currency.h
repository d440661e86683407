/*-------------------------------------------------------------------------
 *
 * currency.h
 *	  ISO 4217 currency table: alphabetic code, numeric code, exponent.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CURRENCY_H
#define PAYMENTS_CURRENCY_H

typedef struct Currency
{
	const char *code;			/* alphabetic code, e.g. "USD" */
	int16		numeric;		/* ISO numeric code, e.g. 840 */
	int8		exponent;		/* digits after the decimal point */
	const char *name;			/* English name */
} Currency;

extern const Currency *currency_by_code(const char *code, int len);
extern const Currency *currency_lookup_or_error(const char *code, int len);
extern const Currency *currency_table(int *count);

#endif
