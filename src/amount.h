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

extern PayAmount *pay_amount_make(int64 minor, const Currency *currency);
extern const Currency *pay_amount_currency_of(const PayAmount *a);

/* Errors of the arithmetic (amount_ops.c), shared with sum() (amount_sum.c) */
extern void pay_amount_currency_mismatch(const char *a_code, const char *b_code,
										 const char *what) pg_attribute_noreturn();
extern void pay_amount_out_of_range(void) pg_attribute_noreturn();

#endif
