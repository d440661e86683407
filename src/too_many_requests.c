/*-------------------------------------------------------------------------
 *
 * too_many_requests.c
 *	  PT429, the refusal of a request beyond a limit, with the time to wait
 *	  before the next one, also as an HTTP Retry-After through PostgREST.
 *
 * PostgREST answers SQLSTATE PT429 with HTTP status 429 but sends no
 * Retry-After, the header HTTP clients and their retry libraries read
 * (RFC 9110, 10.2.3).  It sets response headers only from an error raised
 * with SQLSTATE PGRST, whose message is the JSON body and whose detail
 * names the status and the headers.  So in a PostgREST request (PostgREST
 * sets request.method for each one) the refusal is raised that way, with
 * the same code, message, details and hint in the body as PT429 gives;
 * everywhere else as PT429 itself.  A session that sets request.method
 * itself changes only the shape of its own errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/guc.h"
#include "utils/json.h"

#include "errcodes.h"
#include "too_many_requests.h"

#define ERRCODE_POSTGREST_RESPONSE	MAKE_SQLSTATE('P','G','R','S','T')

/* Whether this transaction serves a PostgREST request. */
static bool
in_postgrest_request(void)
{
	const char *method = GetConfigOption("request.method", true, false);

	return method != NULL && method[0] != '\0';
}

void
payments_refuse_too_many(const char *message, const char *detail, const char *hint,
						 int64 retry_after_ms)
{
	StringInfoData body;
	StringInfoData response;
	int64		seconds;

	if (!in_postgrest_request())
		ereport(ERROR,
				(errcode(ERRCODE_PAY_RATE_LIMITED),
				 errmsg_internal("%s", message),
				 errdetail_internal("%s", detail),
				 errhint("%s", hint)));

	/* whole seconds, rounded up: a client that waits that long is served */
	seconds = retry_after_ms <= 0 ? 1 : (retry_after_ms + 999) / 1000;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"code\":\"PT429\",\"message\":");
	escape_json(&body, message);
	appendStringInfoString(&body, ",\"details\":");
	escape_json(&body, detail);
	appendStringInfoString(&body, ",\"hint\":");
	escape_json(&body, hint);
	appendStringInfoChar(&body, '}');

	initStringInfo(&response);
	appendStringInfo(&response,
					 "{\"status\":429,\"headers\":{\"Retry-After\":\"" INT64_FORMAT "\"}}",
					 seconds);

	ereport(ERROR,
			(errcode(ERRCODE_POSTGREST_RESPONSE),
			 errmsg_internal("%s", body.data),
			 errdetail_internal("%s", response.data)));
}
