/*-------------------------------------------------------------------------
 *
 * http_engine.h
 *	  The worker's one HTTP engine: many requests in flight on a
 *	  curl_multi handle, waited on together with the worker's latch.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_HTTP_ENGINE_H
#define PAYMENTS_HTTP_ENGINE_H

#include <curl/curl.h>

#include "lib/ilist.h"

/* What became of a request, from the point of view of "was it sent?" */
typedef enum HttpOutcome
{
	HTTP_COMPLETED,				/* a full HTTP response was received */
	HTTP_NOT_SENT,				/* provably never left: DNS, connect, TLS failed */
	HTTP_UNKNOWN				/* may have been received: timeout, reset, cut off */
} HttpOutcome;

typedef struct HttpRequest
{
	dlist_node	node;
	void	   *owner;			/* the caller's record */
	CURL	   *easy;
	struct curl_slist *headers;

	/* request: the body may hold card data; it is zeroed when done */
	char	   *body;
	size_t		body_len;

	/* response (malloc'd, capped) */
	char	   *response;
	size_t		response_len;
	size_t		response_cap;
	bool		response_too_large;

	/* result */
	HttpOutcome outcome;
	long		http_status;
	CURLcode	curl_code;
	char		error[CURL_ERROR_SIZE];
	uint64		started_us;		/* wall clock, for the exchange log */
	uint64		finished_us;
	uint64		duration_us;	/* monotonic, for the latency figures */

	/* the engine's: the timeout, its monotonic start, and absence then */
	long		timeout_ms;
	uint64		clock_start_us;
	uint64		absent_at_start_us;
	int			sends;			/* times curl was about to send it */
} HttpRequest;

typedef struct HttpEngine HttpEngine;

extern HttpEngine *http_engine_create(int max_connections);
extern void http_engine_destroy(HttpEngine *engine);
extern bool http_engine_add(HttpEngine *engine, HttpRequest *req, const char *url,
							const char *ca_file, long timeout_ms);
extern void http_engine_wait(HttpEngine *engine, long max_wait_ms, bool *latch_set);
extern HttpRequest *http_engine_next_done(HttpEngine *engine);
extern int	http_engine_in_flight(HttpEngine *engine);
extern void http_request_release(HttpRequest *req);

/* cap on a gateway reply: Authorize.Net replies are a few kilobytes */
#define HTTP_MAX_RESPONSE (1024 * 1024)

#endif
