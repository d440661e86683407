/*-------------------------------------------------------------------------
 *
 * too_many_requests.h
 *	  PT429, the refusal of a request beyond a limit, with the time to wait
 *	  before the next one, also as an HTTP Retry-After through PostgREST.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_TOO_MANY_REQUESTS_H
#define PAYMENTS_TOO_MANY_REQUESTS_H

/*
 * Raise PT429 with this message, detail and hint (already formatted).
 * retry_after_ms is when the next request may succeed (0: not known, say
 * one second).  Does not return.
 */
extern void payments_refuse_too_many(const char *message, const char *detail,
									 const char *hint, int64 retry_after_ms) pg_attribute_noreturn();

#endif
