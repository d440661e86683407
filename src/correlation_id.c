/*-------------------------------------------------------------------------
 *
 * correlation_id.c
 *	  payments._correlation_id(given): the correlation id of the current
 *	  request, which every API call records on what it writes: the
 *	  caller's, else PostgREST's x-request-id or traceparent header
 *	  (request.headers), else the payments.correlation_id setting, else a
 *	  fresh one (a random UUID's 32 hex digits), as
 *	  payments._check_correlation_id keeps it (src/free_text.c: at most
 *	  200 characters, card numbers masked).
 *
 * It ran as PL/pgSQL: a call through fmgr that set and restored the
 * function's search_path, and an expression compiled again in every
 * transaction, some 20,000 instructions of each pay_purchase for a few
 * string tests.  What it returns is unchanged: the first of the sources
 * that is neither NULL nor empty; the headers are read as jsonb (an error
 * when they are not JSON, as the cast gave) and a header's value as ->>
 * gives it (a number's text).  An empty header is skipped too, as an
 * empty argument or setting is, and as the audit trigger skips it
 * (audit.c, jsonb_object_string): it counted once (as coalesce took it),
 * and every row of a request sent with an empty X-Request-Id header, which
 * PostgREST passes on as "", had an empty correlation id and sent no
 * refId.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "free_text.h"

PG_FUNCTION_INFO_V1(pay_correlation_id);

/* a setting's text, or NULL when it is not set or empty */
static const char *
setting(const char *name)
{
	const char *value = GetConfigOption(name, true, false);

	return value != NULL && value[0] != '\0' ? value : NULL;
}

/* headers ->> name: NULL when absent, JSON null, empty, or not an object */
static text *
header(Jsonb *headers, const char *name)
{
	LOCAL_FCINFO(call, 2);
	Datum		value;
	text	   *t;

	InitFunctionCallInfoData(*call, NULL, 2, InvalidOid, NULL, NULL);
	call->args[0].value = JsonbPGetDatum(headers);
	call->args[0].isnull = false;
	call->args[1].value = CStringGetTextDatum(name);
	call->args[1].isnull = false;
	value = jsonb_object_field_text(call);
	if (call->isnull)
		return NULL;
	t = DatumGetTextPP(value);
	return VARSIZE_ANY_EXHDR(t) > 0 ? t : NULL;
}

/* a version 4 UUID's 32 hex digits, as gen_random_uuid() makes it */
static text *
fresh_id(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char bytes[16];
	char		digits[32];

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random correlation id")));
	bytes[6] = (bytes[6] & 0x0f) | 0x40;	/* version 4 */
	bytes[8] = (bytes[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	for (int i = 0; i < 16; i++)
	{
		digits[2 * i] = hex[bytes[i] >> 4];
		digits[2 * i + 1] = hex[bytes[i] & 0x0f];
	}
	return cstring_to_text_with_len(digits, sizeof(digits));
}

Datum
pay_correlation_id(PG_FUNCTION_ARGS)
{
	text	   *id = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	const char *configured;

	if (id != NULL && VARSIZE_ANY_EXHDR(id) == 0)
		id = NULL;
	if (id == NULL)
	{
		const char *headers = setting("request.headers");

		if (headers != NULL && strcmp(headers, "{}") != 0)
		{
			Jsonb	   *parsed = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	 CStringGetDatum(headers)));

			id = header(parsed, "x-request-id");
			if (id == NULL)
				id = header(parsed, "traceparent");
		}
	}
	if (id == NULL && (configured = setting("payments.correlation_id")) != NULL)
		id = cstring_to_text(configured);
	if (id == NULL)
		id = fresh_id();
	free_text_check_correlation_id(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
	PG_RETURN_TEXT_P(free_text_masked(id));
}
