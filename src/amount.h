/*-------------------------------------------------------------------------
 *
 * amount.h
 *	  pay_amount: integer minor units with an ISO 4217 currency.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_AMOUNT_H
#define PAYMENTS_AMOUNT_H

#include "fmgr.h"

#include "currency.h"

/*
 * On-disk and in-memory form: 16 bytes, fixed length, double aligned.
 * The currency is kept as its alphabetic code (not the ISO number, which
 * ISO has reused: ANG and XCG share 532).  The padding is always zero so
 * equal amounts are equal bytes.
 */
typedef struct PayAmount
{
	int64		minor;			/* amount in minor units (cents, yen, fils) */
	char		currency[4];	/* "USD" and a NUL */
	int32		reserved;		/* zero */
} PayAmount;

#define DatumGetPayAmountP(X)	((PayAmount *) DatumGetPointer(X))
#define PayAmountPGetDatum(X)	PointerGetDatum(X)
#define PG_GETARG_PAYAMOUNT_P(n) DatumGetPayAmountP(PG_GETARG_DATUM(n))
#define PG_RETURN_PAYAMOUNT_P(x) return PayAmountPGetDatum(x)

/*
 * The order key of an amount, for sorting (amount_ops.c's abbreviated keys,
 * amount_sort.c's sort of a lone column): the currency code's letters in
 * 5 bits each, then the minor units offset by 2^48 in the low 49 bits, so
 * that keys compare as unsigned numbers in the type's total order (code,
 * then value).  Units beyond +/- 2^48 (2.8 trillion dollars) are clamped to
 * the ends of that range.  Within it, and for codes of three capital
 * letters (the only ones the type accepts), the key is exact: it gives the
 * amount back, byte for byte.
 */
#define PAY_AMOUNT_KEY_UNIT_BITS	49
#define PAY_AMOUNT_KEY_UNIT_MAX		((INT64CONST(1) << (PAY_AMOUNT_KEY_UNIT_BITS - 1)) - 1)
#define PAY_AMOUNT_KEY_UNIT_MIN		(-(INT64CONST(1) << (PAY_AMOUNT_KEY_UNIT_BITS - 1)))

/* A letter of the code in 5 bits, order kept (anything else at the ends). */
static inline uint64
pay_amount_key_letter(char c)
{
	if (c < 'A')
		return 0;
	if (c > 'Z')
		return 27;
	return (uint64) (c - 'A' + 1);
}

/* The key of a (clamped if need be); true if it is exact. */
static inline bool
pay_amount_order_key(const PayAmount *a, uint64 *key)
{
	int64		units = a->minor;
	uint64		l0 = pay_amount_key_letter(a->currency[0]);
	uint64		l1 = pay_amount_key_letter(a->currency[1]);
	uint64		l2 = pay_amount_key_letter(a->currency[2]);
	bool		exact = true;

	if (units > PAY_AMOUNT_KEY_UNIT_MAX)
		units = PAY_AMOUNT_KEY_UNIT_MAX, exact = false;
	else if (units < PAY_AMOUNT_KEY_UNIT_MIN)
		units = PAY_AMOUNT_KEY_UNIT_MIN, exact = false;
	*key = (l0 << (PAY_AMOUNT_KEY_UNIT_BITS + 10)) |
		(l1 << (PAY_AMOUNT_KEY_UNIT_BITS + 5)) |
		(l2 << PAY_AMOUNT_KEY_UNIT_BITS) |
		(uint64) (units - PAY_AMOUNT_KEY_UNIT_MIN);
	return exact && l0 - 1 < 26 && l1 - 1 < 26 && l2 - 1 < 26 &&
		a->currency[3] == '\0' && a->reserved == 0;
}

/* The amount of an exact key. */
static inline void
pay_amount_from_order_key(uint64 key, PayAmount *a)
{
	a->minor = (int64) (key & ((UINT64CONST(1) << PAY_AMOUNT_KEY_UNIT_BITS) - 1)) +
		PAY_AMOUNT_KEY_UNIT_MIN;
	a->currency[0] = (char) ('A' - 1 + ((key >> (PAY_AMOUNT_KEY_UNIT_BITS + 10)) & 31));
	a->currency[1] = (char) ('A' - 1 + ((key >> (PAY_AMOUNT_KEY_UNIT_BITS + 5)) & 31));
	a->currency[2] = (char) ('A' - 1 + ((key >> PAY_AMOUNT_KEY_UNIT_BITS) & 31));
	a->currency[3] = '\0';
	a->reserved = 0;
}

/* Sort support (amount_ops.c); amount_sort.c knows the type by it. */
extern Datum pay_amount_sortsupport(PG_FUNCTION_ARGS);

extern PayAmount *pay_amount_make(int64 minor, const Currency *currency);
extern const Currency *pay_amount_currency_of(const PayAmount *a);

/* Errors of the arithmetic (amount_ops.c), shared with sum() (amount_sum.c) */
extern void pay_amount_currency_mismatch(const char *a_code, const char *b_code,
										 const char *what) pg_attribute_noreturn();
extern void pay_amount_out_of_range(void) pg_attribute_noreturn();

#endif
