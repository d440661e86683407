/*-------------------------------------------------------------------------
 *
 * jsonb_value.h
 *	  A column's values as to_jsonb() makes them, with what to_jsonb() looks
 *	  up for every value decided once per column (src/jsonb_value.c): the
 *	  audit rows (audit.c) and the events (status_guard.c) are made of them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_JSONB_VALUE_H
#define PAYMENTS_JSONB_VALUE_H

#include "fmgr.h"
#include "utils/jsonb.h"

typedef enum JsonbValueKind
{
	JV_INT,						/* int2, int4, int8: a number */
	JV_NUMERIC,					/* a number; NaN and the infinities a string */
	JV_BOOL,
	JV_TEXT,					/* text, varchar: a string */
	JV_JSONB,					/* the value itself */
	JV_DATETIME,				/* date, timestamp, timestamptz: ISO 8601, a
								 * timestamptz in UTC (jsonb_datetime_text) */
	JV_FLOAT,					/* float4, float8: shortest-exact, whatever
								 * extra_float_digits; NaN and the
								 * infinities a string */
	JV_INTERVAL,				/* IntervalStyle postgres, whatever the
								 * session's: a string */
	JV_OUTPUT,					/* an extension's base type without a cast to
								 * json (pay_amount): its text, a string */
	JV_GENERIC					/* anything else: to_jsonb() itself */
} JsonbValueKind;

typedef struct JsonbColumn
{
	JsonbValueKind kind;
	Oid			basetype;		/* the column's type, or a domain's base type */
	FmgrInfo	fn;				/* JV_OUTPUT: the output function; JV_GENERIC:
								 * to_jsonb() told the column's type */
} JsonbColumn;

extern void jsonb_column_init(JsonbColumn *col, Oid typid, int32 typmod, Oid collation,
							  MemoryContext cxt);
extern bool jsonb_column_scalar(JsonbColumn *col, Datum value, JsonbValue *v,
								Jsonb **container);
extern void jsonb_column_push(JsonbColumn *col, JsonbParseState **state, Datum value,
							  bool isnull);
extern JsonbValue *jsonb_container_value(Jsonb *container);
extern char *jsonb_datetime_text(char *buf, Datum value, Oid basetype);

#endif							/* PAYMENTS_JSONB_VALUE_H */
