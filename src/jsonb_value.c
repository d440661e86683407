/*-------------------------------------------------------------------------
 *
 * jsonb_value.c
 *	  A column's values as to_jsonb() makes them.
 *
 * to_jsonb() and jsonb_build_object() find, for every value, the category
 * of its type, its output function and, for a type of an extension,
 * whether a cast to json exists (catalog lookups each time).  The audit
 * trigger and the status trigger turn the same columns into jsonb for
 * every row they write, so that is decided here once per column, with the
 * same rules (PostgreSQL 15's jsonb_categorize_type), and each value is
 * made as to_jsonb() makes it, but for one thing: a timestamptz is written
 * in UTC ("2026-12-06T10:00:00+00:00"), where to_jsonb() writes it in the
 * session's TimeZone ("2026-12-06T05:00:00-05:00" in New York): audit rows
 * and events are written by callers' sessions, the worker's and pg_cron's,
 * each with its own TimeZone, and one instant must be stored (and sealed
 * by an audit row's hash) as one text, whoever wrote it.  SQL that writes
 * events does the same with payments._json_time() (pay_json_time below).
 * So, for the same reason, are the values whose text other settings any
 * role may SET change: float4 and float8 shortest-exact, as
 * extra_float_digits 1 (the default) prints them, where to_jsonb() under
 * extra_float_digits -15 wrote 0.1 for 0.12345678901234568 (the audit row
 * no longer said what was written), and interval as IntervalStyle postgres
 * (the default) prints it, not P1DT2H3M4.5S or +1 +2:03:04.5.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "jsonb_value.h"

PG_FUNCTION_INFO_V1(pay_json_time);

/*
 * A type to_jsonb() prints with its output function, as a string: an
 * extension's base type (not an array, not a row) without a cast to json.
 */
static bool
printed_as_string(Oid basetype)
{
	Oid			castfunc;

	if (basetype < FirstNormalObjectId || get_typtype(basetype) != TYPTYPE_BASE ||
		OidIsValid(get_element_type(basetype)) || type_is_rowtype(basetype))
		return false;
	return !(find_coercion_pathway(JSONOID, basetype, COERCION_EXPLICIT, &castfunc) ==
			 COERCION_PATH_FUNC && OidIsValid(castfunc));
}

/* How a column of that type becomes jsonb; what it needs lives in cxt. */
void
jsonb_column_init(JsonbColumn *col, Oid typid, int32 typmod, Oid collation, MemoryContext cxt)
{
	Oid			base = getBaseType(typid);

	col->basetype = base;
	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			col->kind = JV_INT;
			return;
		case NUMERICOID:
			col->kind = JV_NUMERIC;
			return;
		case BOOLOID:
			col->kind = JV_BOOL;
			return;
		case TEXTOID:
		case VARCHAROID:
			col->kind = JV_TEXT;
			return;
		case JSONBOID:
			col->kind = JV_JSONB;
			return;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			col->kind = JV_DATETIME;
			return;
		case FLOAT4OID:
		case FLOAT8OID:
			col->kind = JV_FLOAT;
			return;
		case INTERVALOID:
			col->kind = JV_INTERVAL;
			return;
		default:
			break;
	}
	if (printed_as_string(base))
	{
		Oid			outfunc;
		bool		isvarlena;

		col->kind = JV_OUTPUT;
		getTypeOutputInfo(base, &outfunc, &isvarlena);
		fmgr_info_cxt(outfunc, &col->fn, cxt);
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		/* to_jsonb() learns its argument's type from fn_expr */
		col->kind = JV_GENERIC;
		fmgr_info_cxt(F_TO_JSONB, &col->fn, cxt);
		col->fn.fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
												list_make1(makeNullConst(typid, typmod, collation)),
												InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		MemoryContextSwitchTo(old);
	}
}

/*
 * A date, timestamp or timestamptz as to_jsonb() writes it (ISO 8601 as
 * XML Schema has it, whatever the session's DateStyle), a timestamptz with
 * the offset of UTC whatever the session's TimeZone (JsonEncodeDateTime
 * told the zone: no global state changed, nothing looked up).  Into buf
 * (MAXDATELEN + 1 bytes), or palloc'd when buf is NULL.
 */
char *
jsonb_datetime_text(char *buf, Datum value, Oid basetype)
{
	static const int utc = 0;

	return JsonEncodeDateTime(buf, value, basetype, basetype == TIMESTAMPTZOID ? &utc : NULL);
}

/*
 * payments._json_time(timestamptz): the time as audit rows and events
 * store it, for the SQL that writes events (jsonb_build_object() of a
 * timestamptz writes it in the session's TimeZone).
 */
Datum
pay_json_time(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(jsonb_datetime_text(NULL, PG_GETARG_DATUM(0), TIMESTAMPTZOID)));
}

/* A string value (s is kept, not copied). */
static void
string_value(JsonbValue *v, char *s, int len)
{
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = len;
}

/*
 * A value that is not NULL, as to_jsonb() makes it: true with the scalar
 * in v, false for a jsonb object or array, which goes to *container.
 */
bool
jsonb_column_scalar(JsonbColumn *col, Datum value, JsonbValue *v, Jsonb **container)
{
	Jsonb	   *jb;

	switch (col->kind)
	{
		case JV_INT:
			v->type = jbvNumeric;
			if (col->basetype == INT8OID)
				v->val.numeric = int64_to_numeric(DatumGetInt64(value));
			else if (col->basetype == INT4OID)
				v->val.numeric = int64_to_numeric(DatumGetInt32(value));
			else
				v->val.numeric = int64_to_numeric(DatumGetInt16(value));
			return true;
		case JV_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);

				if (numeric_is_nan(num) || numeric_is_inf(num))
				{
					char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, value));

					string_value(v, s, strlen(s));
				}
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = num;
				}
				return true;
			}
		case JV_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(value);
			return true;
		case JV_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				string_value(v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				return true;
			}
		case JV_DATETIME:
			{
				char	   *s = jsonb_datetime_text(NULL, value, col->basetype);

				string_value(v, s, strlen(s));
				return true;
			}
		case JV_FLOAT:
			{
				char	   *s = palloc(DOUBLE_SHORTEST_DECIMAL_LEN);
				double		d;

				if (col->basetype == FLOAT4OID)
				{
					float		f = DatumGetFloat4(value);

					(void) float_to_shortest_decimal_buf(f, s);
					d = f;
				}
				else
				{
					d = DatumGetFloat8(value);
					(void) double_to_shortest_decimal_buf(d, s);
				}
				/* "NaN", "Infinity", "-Infinity": no JSON number */
				if (isnan(d) || isinf(d))
					string_value(v, s, strlen(s));
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
																		 ObjectIdGetDatum(InvalidOid),
																		 Int32GetDatum(-1)));
				}
				return true;
			}
		case JV_INTERVAL:
			{
				struct pg_itm itm;
				char		buf[MAXDATELEN + 1];
				char	   *s;

				interval2itm(*DatumGetIntervalP(value), &itm);
				EncodeInterval(&itm, INTSTYLE_POSTGRES, buf);
				s = pstrdup(buf);
				string_value(v, s, strlen(s));
				return true;
			}
		case JV_OUTPUT:
			{
				char	   *s = OutputFunctionCall(&col->fn, value);

				string_value(v, s, strlen(s));
				return true;
			}
		case JV_JSONB:
			jb = DatumGetJsonbP(value);
			break;
		case JV_GENERIC:
			jb = DatumGetJsonbP(FunctionCall1(&col->fn, value));
			break;
		default:
			elog(ERROR, "unexpected jsonb value kind %d", (int) col->kind);
	}
	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, v))
			elog(ERROR, "could not extract a scalar from jsonb");
		return true;
	}
	*container = jb;
	return false;
}

/* The value (or NULL) as the next value of the object or array state builds. */
void
jsonb_column_push(JsonbColumn *col, JsonbParseState **state, Datum value, bool isnull)
{
	JsonbValue	v;
	Jsonb	   *container;

	if (isnull)
		v.type = jbvNull;
	else if (!jsonb_column_scalar(col, value, &v, &container))
	{
		/* pushJsonbValue unpacks a container into the state */
		v.type = jbvBinary;
		v.val.binary.data = &container->root;
		v.val.binary.len = VARSIZE(container) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * A jsonb object or array as an in-memory value (jbvObject, jbvArray), to
 * sit in a JsonbValue tree that JsonbValueToJsonb() will write.
 */
JsonbValue *
jsonb_container_value(Jsonb *container)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it = JsonbIteratorInit(&container->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	return res;
}
