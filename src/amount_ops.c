/*-------------------------------------------------------------------------
 *
 * amount_ops.c
 *	  pay_amount comparison, arithmetic, hashing and aggregate support.
 *
 * Rules (README.md, "The amount type"):
 *	- =, <> compare currency and value; amounts in different currencies
 *	  are simply not equal.
 *	- <, <=, >, >= and min/max raise an error across currencies: there is
 *	  no meaningful order between 5 USD and 4 EUR.
 *	- Sorting and btree indexes use a total order (currency code, then
 *	  value), exposed as the operators ~<~ ~<=~ ~>=~ ~>~, so ORDER BY,
 *	  DISTINCT and indexes work on columns that mix currencies.
 *	- + and - need one currency; overflow is an error.
 *	- Multiplication and division by integers and numerics round the exact
 *	  result to the currency's minor unit half-to-even (banker's rounding).
 *
 * Speed (issue 12): nothing here looks a currency up or detoasts (the type
 * is 16 bytes, fixed length, by reference).  Comparisons read the code as
 * one integer.  sum() keeps a 128-bit running total in a state of its own
 * (amount_sum.c), so no plan overflows where another would not; min() and
 * max() update their state in place instead of allocating a new value per
 * row.  Sorting and btree index builds get sort support with abbreviated
 * keys (pay_amount_sortsupport).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_operator.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "lib/hyperloglog.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"
#include "utils/numeric.h"
#include "utils/sortsupport.h"

#include "amount.h"
#include "errcodes.h"

PG_FUNCTION_INFO_V1(pay_amount_eq);
PG_FUNCTION_INFO_V1(pay_amount_ne);
PG_FUNCTION_INFO_V1(pay_amount_lt);
PG_FUNCTION_INFO_V1(pay_amount_le);
PG_FUNCTION_INFO_V1(pay_amount_gt);
PG_FUNCTION_INFO_V1(pay_amount_ge);
PG_FUNCTION_INFO_V1(pay_amount_cmp);
PG_FUNCTION_INFO_V1(pay_amount_sort_lt);
PG_FUNCTION_INFO_V1(pay_amount_sort_le);
PG_FUNCTION_INFO_V1(pay_amount_sort_gt);
PG_FUNCTION_INFO_V1(pay_amount_sort_ge);
PG_FUNCTION_INFO_V1(pay_amount_hash);
PG_FUNCTION_INFO_V1(pay_amount_hash_extended);
PG_FUNCTION_INFO_V1(pay_amount_pl);
PG_FUNCTION_INFO_V1(pay_amount_mi);
PG_FUNCTION_INFO_V1(pay_amount_um);
PG_FUNCTION_INFO_V1(pay_amount_abs);
PG_FUNCTION_INFO_V1(pay_amount_mul_int8);
PG_FUNCTION_INFO_V1(pay_amount_mul_int4);
PG_FUNCTION_INFO_V1(pay_amount_mul_numeric);
PG_FUNCTION_INFO_V1(pay_int8_mul_amount);
PG_FUNCTION_INFO_V1(pay_int4_mul_amount);
PG_FUNCTION_INFO_V1(pay_numeric_mul_amount);
PG_FUNCTION_INFO_V1(pay_amount_div_int8);
PG_FUNCTION_INFO_V1(pay_amount_div_int4);
PG_FUNCTION_INFO_V1(pay_amount_div_numeric);
PG_FUNCTION_INFO_V1(pay_amount_smaller);
PG_FUNCTION_INFO_V1(pay_amount_larger);
PG_FUNCTION_INFO_V1(pay_amount_sortsupport);
PG_FUNCTION_INFO_V1(pay_amount_ltsel);
PG_FUNCTION_INFO_V1(pay_amount_lesel);
PG_FUNCTION_INFO_V1(pay_amount_gtsel);
PG_FUNCTION_INFO_V1(pay_amount_gesel);

/*
 * The three letters of the currency code as one number that orders like
 * memcmp of the code: the first letter in the high byte.
 */
static inline uint32
currency_key(const PayAmount *a)
{
	uint32		k;

	memcpy(&k, a->currency, sizeof(k));
	return pg_ntoh32(k) >> 8;
}

static inline bool
same_currency(const PayAmount *a, const PayAmount *b)
{
	return currency_key(a) == currency_key(b);
}

/* A new amount in a's currency (no table lookup: a's code is checked). */
static PayAmount *
amount_like(const PayAmount *a, int64 minor)
{
	PayAmount  *r = palloc0(sizeof(PayAmount));

	r->minor = minor;
	memcpy(r->currency, a->currency, 3);
	return r;
}

/*
 * The mixed-currency error: what ("add", "compare") between amounts in the
 * currencies a_code and b_code (three letters each).
 */
void
pay_amount_currency_mismatch(const char *a_code, const char *b_code, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAY_CURRENCY_MISMATCH),
			 errmsg("cannot %s amounts in different currencies: %.3s and %.3s",
					what, a_code, b_code),
			 errhint("Convert one amount to the other's currency first, or compare pay_currency() values separately.")));
}

/* Raise the mixed-currency error unless a and b share a currency. */
static inline void
require_same_currency(const PayAmount *a, const PayAmount *b, const char *what)
{
	if (!same_currency(a, b))
		pay_amount_currency_mismatch(a->currency, b->currency, what);
}

/*
 * The limit in the detail is grouped by commas: the log hook masks a run of
 * 12 or more digits as a card number's, in what the client is sent too.
 */
void
pay_amount_out_of_range(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("value out of range for type pay_amount"),
			 errdetail("An amount is at most 9,223,372,036,854,775,807 minor units of its currency in either direction.")));
}

static void
division_by_zero(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DIVISION_BY_ZERO),
			 errmsg("division by zero")));
}

/* Total order: currency code first, then value.  For btree and sorting. */
static inline int
amount_cmp_total(const PayAmount *a, const PayAmount *b)
{
	uint32		ca = currency_key(a);
	uint32		cb = currency_key(b);

	if (ca != cb)
		return ca < cb ? -1 : 1;
	if (a->minor == b->minor)
		return 0;
	return a->minor < b->minor ? -1 : 1;
}

/* Order within one currency; an error across currencies. */
static inline int
amount_cmp_strict(const PayAmount *a, const PayAmount *b)
{
	require_same_currency(a, b, "compare");
	return amount_cmp_total(a, b);
}

#define ARGS2 PayAmount *a = PG_GETARG_PAYAMOUNT_P(0); PayAmount *b = PG_GETARG_PAYAMOUNT_P(1)

Datum
pay_amount_eq(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(same_currency(a, b) && a->minor == b->minor);
}

Datum
pay_amount_ne(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(!same_currency(a, b) || a->minor != b->minor);
}

Datum
pay_amount_lt(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_strict(a, b) < 0);
}

Datum
pay_amount_le(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_strict(a, b) <= 0);
}

Datum
pay_amount_gt(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_strict(a, b) > 0);
}

Datum
pay_amount_ge(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_strict(a, b) >= 0);
}

Datum
pay_amount_cmp(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_INT32(amount_cmp_total(a, b));
}

Datum
pay_amount_sort_lt(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_total(a, b) < 0);
}

Datum
pay_amount_sort_le(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_total(a, b) <= 0);
}

Datum
pay_amount_sort_gt(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_total(a, b) > 0);
}

Datum
pay_amount_sort_ge(PG_FUNCTION_ARGS)
{
	ARGS2;
	PG_RETURN_BOOL(amount_cmp_total(a, b) >= 0);
}

/* Hash the value and the currency code (not the zero padding). */
Datum
pay_amount_hash(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	return hash_any((const unsigned char *) a, offsetof(PayAmount, reserved));
}

Datum
pay_amount_hash_extended(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	return hash_any_extended((const unsigned char *) a, offsetof(PayAmount, reserved),
							 PG_GETARG_INT64(1));
}

Datum
pay_amount_pl(PG_FUNCTION_ARGS)
{
	ARGS2;
	int64		r;

	require_same_currency(a, b, "add");
	if (pg_add_s64_overflow(a->minor, b->minor, &r))
		pay_amount_out_of_range();
	PG_RETURN_PAYAMOUNT_P(amount_like(a, r));
}

Datum
pay_amount_mi(PG_FUNCTION_ARGS)
{
	ARGS2;
	int64		r;

	require_same_currency(a, b, "subtract");
	if (pg_sub_s64_overflow(a->minor, b->minor, &r))
		pay_amount_out_of_range();
	PG_RETURN_PAYAMOUNT_P(amount_like(a, r));
}

Datum
pay_amount_um(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	if (a->minor == PG_INT64_MIN)
		pay_amount_out_of_range();
	PG_RETURN_PAYAMOUNT_P(amount_like(a, -a->minor));
}

Datum
pay_amount_abs(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	if (a->minor == PG_INT64_MIN)
		pay_amount_out_of_range();
	PG_RETURN_PAYAMOUNT_P(amount_like(a, a->minor < 0 ? -a->minor : a->minor));
}

static PayAmount *
mul_int64(const PayAmount *a, int64 factor)
{
	int64		r;

	if (pg_mul_s64_overflow(a->minor, factor, &r))
		pay_amount_out_of_range();
	return amount_like(a, r);
}

Datum
pay_amount_mul_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_int64(PG_GETARG_PAYAMOUNT_P(0), PG_GETARG_INT64(1)));
}

Datum
pay_amount_mul_int4(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_int64(PG_GETARG_PAYAMOUNT_P(0), PG_GETARG_INT32(1)));
}

Datum
pay_int8_mul_amount(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_int64(PG_GETARG_PAYAMOUNT_P(1), PG_GETARG_INT64(0)));
}

Datum
pay_int4_mul_amount(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_int64(PG_GETARG_PAYAMOUNT_P(1), PG_GETARG_INT32(0)));
}

/*
 * Divide an int64 by an int64, rounding half to even.  Exact: the
 * remainder decides, compared with the divisor without overflow.
 */
static int64
div_half_even(int64 num, int64 den)
{
	int64		q;
	int64		r;
	uint64		ar;
	uint64		ad;

	if (den == 0)
		division_by_zero();
	if (num == PG_INT64_MIN && den == -1)
		pay_amount_out_of_range();
	q = num / den;
	r = num % den;
	if (r == 0)
		return q;
	ar = r < 0 ? (uint64) (-(r + 1)) + 1 : (uint64) r;
	ad = den < 0 ? (uint64) (-(den + 1)) + 1 : (uint64) den;
	/* ar is less than ad; compare ar with ad / 2 as ar against ad - ar */
	if (ar > ad - ar || (ar == ad - ar && (q & 1) != 0))
		q += ((num < 0) != (den < 0)) ? -1 : 1;
	return q;
}

Datum
pay_amount_div_int8(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	PG_RETURN_PAYAMOUNT_P(amount_like(a, div_half_even(a->minor, PG_GETARG_INT64(1))));
}

Datum
pay_amount_div_int4(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);

	PG_RETURN_PAYAMOUNT_P(amount_like(a, div_half_even(a->minor, PG_GETARG_INT32(1))));
}

/* Small numeric helpers over the fmgr interface. */
static int
ncmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static Numeric
nabs(Numeric a)
{
	return DatumGetNumeric(DirectFunctionCall1(numeric_abs, NumericGetDatum(a)));
}

static int
nsign(Numeric a)
{
	return ncmp(a, int64_to_numeric(0));
}

/* Convert a numeric holding a whole number to int64, or raise overflow. */
static int64
whole_numeric_to_int64(Numeric n)
{
	if (ncmp(n, int64_to_numeric(PG_INT64_MAX)) > 0 ||
		ncmp(n, int64_to_numeric(PG_INT64_MIN)) < 0)
		pay_amount_out_of_range();
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
}

/*
 * Round num / den to a whole number, half to even, exactly: the truncated
 * quotient q and the remainder r = num - q * den are exact in numeric, and
 * the rounding compares 2|r| with |den|.
 */
static int64
numeric_div_half_even(Numeric num, Numeric den)
{
	Numeric		q;
	Numeric		r;
	Numeric		twice_r;
	int			c;

	if (nsign(den) == 0)
		division_by_zero();
	q = DatumGetNumeric(DirectFunctionCall2(numeric_div_trunc, NumericGetDatum(num),
											NumericGetDatum(den)));
	r = numeric_sub_opt_error(num, numeric_mul_opt_error(q, den, NULL), NULL);
	if (nsign(r) == 0)
		return whole_numeric_to_int64(q);
	twice_r = numeric_add_opt_error(nabs(r), nabs(r), NULL);
	c = ncmp(twice_r, nabs(den));
	if (c > 0 || (c == 0 &&
				  nsign(DatumGetNumeric(DirectFunctionCall2(numeric_mod, NumericGetDatum(q),
															NumericGetDatum(int64_to_numeric(2))))) != 0))
	{
		int64		step = (nsign(num) < 0) != (nsign(den) < 0) ? -1 : 1;

		q = numeric_add_opt_error(q, int64_to_numeric(step), NULL);
	}
	return whole_numeric_to_int64(q);
}

static void
check_finite(Numeric n)
{
	if (numeric_is_nan(n) || numeric_is_inf(n))
		ereport(ERROR,
				(errcode(ERRCODE_PAY_NOT_A_NUMBER),
				 errmsg("cannot multiply or divide an amount by NaN or infinity")));
}

/* amount * numeric: the exact product, rounded half to even. */
static PayAmount *
mul_numeric(const PayAmount *a, Numeric factor)
{
	Numeric		product;

	check_finite(factor);
	product = numeric_mul_opt_error(int64_to_numeric(a->minor), factor, NULL);
	return amount_like(a, numeric_div_half_even(product, int64_to_numeric(1)));
}

Datum
pay_amount_mul_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_numeric(PG_GETARG_PAYAMOUNT_P(0), PG_GETARG_NUMERIC(1)));
}

Datum
pay_numeric_mul_amount(PG_FUNCTION_ARGS)
{
	PG_RETURN_PAYAMOUNT_P(mul_numeric(PG_GETARG_PAYAMOUNT_P(1), PG_GETARG_NUMERIC(0)));
}

Datum
pay_amount_div_numeric(PG_FUNCTION_ARGS)
{
	PayAmount  *a = PG_GETARG_PAYAMOUNT_P(0);
	Numeric		den = PG_GETARG_NUMERIC(1);

	check_finite(den);
	PG_RETURN_PAYAMOUNT_P(amount_like(a, numeric_div_half_even(int64_to_numeric(a->minor), den)));
}

/*
 * min() and max() support: an error across currencies, like < and >.  As
 * the aggregates' transition or combine function, a is the aggregate's own
 * state: a new minimum is copied into it, which spares the executor copying
 * b into a new state and freeing the old one.
 */
static Datum
amount_keep(FunctionCallInfo fcinfo, PayAmount *a, PayAmount *b, bool keep_a)
{
	if (keep_a)
		PG_RETURN_PAYAMOUNT_P(a);
	if (AggCheckCallContext(fcinfo, NULL))
	{
		*a = *b;
		PG_RETURN_PAYAMOUNT_P(a);
	}
	PG_RETURN_PAYAMOUNT_P(b);
}

Datum
pay_amount_smaller(PG_FUNCTION_ARGS)
{
	ARGS2;
	return amount_keep(fcinfo, a, b, amount_cmp_strict(a, b) <= 0);
}

Datum
pay_amount_larger(PG_FUNCTION_ARGS)
{
	ARGS2;
	return amount_keep(fcinfo, a, b, amount_cmp_strict(a, b) >= 0);
}

/*
 * Sort support (btree support function 2): a comparator that works on the
 * 16 bytes directly, and on 64-bit builds abbreviated keys.
 *
 * The abbreviated key is the amount's order key (amount.h): a smaller key
 * means a smaller amount, and equal keys are decided by the full
 * comparator.  Within its range (+/- 2^48 minor units) the key is exact, so
 * equal keys are equal amounts, and abbreviation only loses when there are
 * few distinct amounts: as in PostgreSQL's uuid sort support, a HyperLogLog
 * estimate of the distinct keys makes it stop then.
 */
typedef struct AmountSortSupport
{
	int64		input_count;	/* keys made so far */
	bool		estimating;		/* still counting distinct keys? */
	hyperLogLogState abbr_card; /* distinct keys */
} AmountSortSupport;

static int
amount_fastcmp(Datum x, Datum y, SortSupport ssup pg_attribute_unused())
{
	return amount_cmp_total(DatumGetPayAmountP(x), DatumGetPayAmountP(y));
}

#if SIZEOF_DATUM >= 8

static Datum
amount_abbrev_convert(Datum original, SortSupport ssup)
{
	AmountSortSupport *ass = (AmountSortSupport *) ssup->ssup_extra;
	uint64		key;

	(void) pay_amount_order_key(DatumGetPayAmountP(original), &key);
	ass->input_count++;
	if (ass->estimating)
		addHyperLogLog(&ass->abbr_card,
					   DatumGetUInt32(hash_uint32((uint32) key ^ (uint32) (key >> 32))));
	return UInt64GetDatum(key);
}

/* Stop abbreviating when the keys are mostly duplicates (uuid's rule). */
static bool
amount_abbrev_abort(int memtupcount, SortSupport ssup)
{
	AmountSortSupport *ass = (AmountSortSupport *) ssup->ssup_extra;
	double		abbr_card;

	if (memtupcount < 10000 || ass->input_count < 10000 || !ass->estimating)
		return false;

	abbr_card = estimateHyperLogLog(&ass->abbr_card);

	/* Enough distinct keys: abbreviation pays; stop counting. */
	if (abbr_card > 100000.0)
	{
		if (trace_sort)
			elog(LOG,
				 "pay_amount_abbrev: estimation ends at cardinality %f after " INT64_FORMAT " values (%d rows)",
				 abbr_card, ass->input_count, memtupcount);
		ass->estimating = false;
		return false;
	}

	/* Fewer than one distinct key per 2000 values: full comparisons. */
	if (abbr_card < ass->input_count / 2000.0 + 0.5)
	{
		if (trace_sort)
			elog(LOG,
				 "pay_amount_abbrev: aborting abbreviation at cardinality %f below threshold %f after " INT64_FORMAT " values (%d rows)",
				 abbr_card, ass->input_count / 2000.0 + 0.5, ass->input_count, memtupcount);
		return true;
	}

	if (trace_sort)
		elog(LOG,
			 "pay_amount_abbrev: cardinality %f after " INT64_FORMAT " values (%d rows)",
			 abbr_card, ass->input_count, memtupcount);
	return false;
}

#endif							/* SIZEOF_DATUM >= 8 */

Datum
pay_amount_sortsupport(PG_FUNCTION_ARGS)
{
	SortSupport ssup = (SortSupport) PG_GETARG_POINTER(0);

	ssup->comparator = amount_fastcmp;
#if SIZEOF_DATUM >= 8
	if (ssup->abbreviate)
	{
		AmountSortSupport *ass;
		MemoryContext oldcontext = MemoryContextSwitchTo(ssup->ssup_cxt);

		ass = palloc(sizeof(AmountSortSupport));
		ass->input_count = 0;
		ass->estimating = true;
		initHyperLogLog(&ass->abbr_card, 10);
		MemoryContextSwitchTo(oldcontext);

		ssup->ssup_extra = ass;
		ssup->comparator = ssup_datum_unsigned_cmp;
		ssup->abbrev_converter = amount_abbrev_convert;
		ssup->abbrev_abort = amount_abbrev_abort;
		ssup->abbrev_full_comparator = amount_fastcmp;
	}
#endif
	PG_RETURN_VOID();
}

/*
 * Restriction estimators of < <= > >=.  PostgreSQL's scalarltsel and its
 * kin call the operator itself on each of the column's most common values:
 * with values of another currency among them, < raises 22Y03 while the
 * query is being planned, though the query may compare amounts of one
 * currency only.  The estimate is made with the total-order operator of
 * the same strategy (~<~, ~<=~, ~>~, ~>=~ in the operator's schema): the
 * same order within a currency, never an error, and the operator the
 * column's histogram was built with.
 */
static Datum
amount_ineqsel(FunctionCallInfo fcinfo, const char *total_name, PGFunction estimator)
{
	Oid			operator = PG_GETARG_OID(1);
	HeapTuple	tp = SearchSysCache1(OPEROID, ObjectIdGetDatum(operator));
	Form_pg_operator form;
	Oid			total;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for operator %u", operator);
	form = (Form_pg_operator) GETSTRUCT(tp);
	total = OpernameGetOprid(list_make2(makeString(get_namespace_name(form->oprnamespace)),
										makeString(pstrdup(total_name))),
							 form->oprleft, form->oprright);
	ReleaseSysCache(tp);
	if (!OidIsValid(total))
		PG_RETURN_FLOAT8(DEFAULT_INEQ_SEL);
	return DirectFunctionCall4Coll(estimator, PG_GET_COLLATION(), PG_GETARG_DATUM(0),
								   ObjectIdGetDatum(total), PG_GETARG_DATUM(2), PG_GETARG_DATUM(3));
}

Datum
pay_amount_ltsel(PG_FUNCTION_ARGS)
{
	return amount_ineqsel(fcinfo, "~<~", scalarltsel);
}

Datum
pay_amount_lesel(PG_FUNCTION_ARGS)
{
	return amount_ineqsel(fcinfo, "~<=~", scalarlesel);
}

Datum
pay_amount_gtsel(PG_FUNCTION_ARGS)
{
	return amount_ineqsel(fcinfo, "~>~", scalargtsel);
}

Datum
pay_amount_gesel(PG_FUNCTION_ARGS)
{
	return amount_ineqsel(fcinfo, "~>=~", scalargesel);
}
