/*-------------------------------------------------------------------------
 *
 * amount_sum.c
 *	  sum(pay_amount): a 128-bit running total.
 *
 * The running total of sum() must not overflow where the final sum does
 * not: with a 64-bit total, the rows 9e18, 9e18, -9e18, -9e18 overflow
 * when read in that order but not when a parallel plan gives each worker
 * one 9e18 and one -9e18, so whether a query fails would depend on its
 * plan.  The state keeps a 128-bit total (as PostgreSQL's own sum(bigint)
 * does), which cannot overflow with fewer than 2^64 rows; only the final
 * sum must fit a pay_amount, and "pay_amount out of range" is raised
 * exactly when it does not, whatever the plan.
 *
 * Currencies are never mixed: a row in another currency than the state's
 * is an error in the transition function, and two partial states in
 * different currencies (parallel workers, partitionwise aggregation) are
 * an error in the combine function.
 *
 * The state is an aggregate-memory struct updated in place (no allocation
 * per row); parallel plans pass it between processes as 20 bytes of bytea
 * (total high and low words, then the currency code).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "utils/builtins.h"

#include "amount.h"
#include "errcodes.h"

PG_FUNCTION_INFO_V1(pay_amount_sum_accum);
PG_FUNCTION_INFO_V1(pay_amount_sum_combine);
PG_FUNCTION_INFO_V1(pay_amount_sum_serialize);
PG_FUNCTION_INFO_V1(pay_amount_sum_deserialize);
PG_FUNCTION_INFO_V1(pay_amount_sum_final);

/*
 * The total is hi * 2^64 + lo (two's complement over 128 bits), written
 * out so that it is the same on every platform, with or without a native
 * 128-bit integer.
 */
typedef struct AmountSumState
{
	uint64		lo;
	int64		hi;
	char		currency[4];	/* of every amount summed, NUL-terminated */
} AmountSumState;

#define AMOUNT_SUM_SERIAL_SIZE	(8 + 8 + 4)

static inline void
sum_add_int64(AmountSumState *s, int64 v)
{
	uint64		lo = s->lo + (uint64) v;

	/* carry out of the low word, minus the sign extension of v */
	s->hi += (int64) (lo < s->lo) - (int64) (v < 0);
	s->lo = lo;
}

static inline void
sum_add_state(AmountSumState *s, const AmountSumState *t)
{
	uint64		lo = s->lo + t->lo;

	s->hi += t->hi + (int64) (lo < s->lo);
	s->lo = lo;
}

static inline bool
same_code(const char *a, const char *b)
{
	return memcmp(a, b, 3) == 0;
}

/* The aggregate's memory context, or an error outside an aggregate. */
static MemoryContext
aggregate_context(FunctionCallInfo fcinfo, const char *fn)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s can only be called as part of sum(pay_amount)", fn)));
	return aggcontext;
}

static AmountSumState *
new_state(FunctionCallInfo fcinfo, const char *fn)
{
	return MemoryContextAllocZero(aggregate_context(fcinfo, fn), sizeof(AmountSumState));
}

/* Transition: add one amount (NULLs are skipped, as by every sum). */
Datum
pay_amount_sum_accum(PG_FUNCTION_ARGS)
{
	AmountSumState *s = PG_ARGISNULL(0) ? NULL : (AmountSumState *) PG_GETARG_POINTER(0);
	const PayAmount *a;

	if (PG_ARGISNULL(1))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	a = PG_GETARG_PAYAMOUNT_P(1);
	if (s == NULL)
	{
		s = new_state(fcinfo, "pay_amount_sum_accum");
		memcpy(s->currency, a->currency, 3);
	}
	else if (!same_code(s->currency, a->currency))
		pay_amount_currency_mismatch(s->currency, a->currency, "add");
	sum_add_int64(s, a->minor);
	PG_RETURN_POINTER(s);
}

/* Combine two partial sums (parallel workers, partitionwise aggregation). */
Datum
pay_amount_sum_combine(PG_FUNCTION_ARGS)
{
	AmountSumState *s = PG_ARGISNULL(0) ? NULL : (AmountSumState *) PG_GETARG_POINTER(0);
	AmountSumState *t = PG_ARGISNULL(1) ? NULL : (AmountSumState *) PG_GETARG_POINTER(1);

	if (t == NULL)
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	if (s == NULL)
	{
		/* t may live in a shorter-lived context: copy it into the aggregate's */
		s = new_state(fcinfo, "pay_amount_sum_combine");
		*s = *t;
		PG_RETURN_POINTER(s);
	}
	if (!same_code(s->currency, t->currency))
		pay_amount_currency_mismatch(s->currency, t->currency, "add");
	sum_add_state(s, t);
	PG_RETURN_POINTER(s);
}

Datum
pay_amount_sum_serialize(PG_FUNCTION_ARGS)
{
	AmountSumState *s;
	StringInfoData buf;

	aggregate_context(fcinfo, "pay_amount_sum_serialize");
	s = (AmountSumState *) PG_GETARG_POINTER(0);
	pq_begintypsend(&buf);
	pq_sendint64(&buf, s->hi);
	pq_sendint64(&buf, (int64) s->lo);
	pq_sendbytes(&buf, s->currency, 4);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
pay_amount_sum_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b;
	AmountSumState *s;
	StringInfoData buf;

	aggregate_context(fcinfo, "pay_amount_sum_deserialize");
	b = PG_GETARG_BYTEA_PP(0);
	if (VARSIZE_ANY_EXHDR(b) != AMOUNT_SUM_SERIAL_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid sum(pay_amount) state"),
				 errdetail("The state is %d bytes long instead of %d.",
						   (int) VARSIZE_ANY_EXHDR(b), AMOUNT_SUM_SERIAL_SIZE)));
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	s = palloc(sizeof(AmountSumState));
	s->hi = pq_getmsgint64(&buf);
	s->lo = (uint64) pq_getmsgint64(&buf);
	pq_copymsgbytes(&buf, s->currency, 4);
	s->currency[3] = '\0';
	PG_RETURN_POINTER(s);
}

/* The sum as a pay_amount, or an error when it does not fit one. */
Datum
pay_amount_sum_final(PG_FUNCTION_ARGS)
{
	AmountSumState *s = PG_ARGISNULL(0) ? NULL : (AmountSumState *) PG_GETARG_POINTER(0);
	PayAmount  *r;

	if (s == NULL)
		PG_RETURN_NULL();		/* no rows, or only NULLs */
	/* fits in int64 when hi is the sign extension of lo */
	if (s->hi != ((s->lo >> 63) ? -1 : 0))
		pay_amount_out_of_range();
	r = palloc0(sizeof(PayAmount));
	r->minor = (int64) s->lo;
	memcpy(r->currency, s->currency, 3);
	PG_RETURN_PAYAMOUNT_P(r);
}
