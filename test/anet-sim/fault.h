/*-------------------------------------------------------------------------
 *
 * fault.h
 *		Injected latency and transport faults for the API endpoint.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_FAULT_H
#define ANET_SIM_FAULT_H

#include <stdbool.h>
#include <json-c/json.h>

typedef enum FaultKind
{
	F_NONE,
	F_HOLD,						/* never answer; close after hold_ms */
	F_HTTP5XX,					/* answer with an HTTP 5xx status */
	F_RESET,					/* TCP reset after the request was read */
	F_MALFORMED,				/* complete response whose body is not JSON */
	F_TRUNCATED,				/* Content-Length of the full body, then close */
	F_TRICKLE,					/* the body a few bytes at a time */
	F_REWRITE					/* the reply's JSON changed, or replaced */
} FaultKind;

typedef struct FaultDecision
{
	FaultKind	kind;
	bool		process;		/* does the gateway process the request? */
	int			status;			/* for F_HTTP5XX */
	int			hold_ms;
	int			chunk_bytes;	/* for F_TRICKLE */
	int			chunk_ms;
	int			latency_ms;
	char	   *set_json;		/* F_REWRITE: {"a.b": value, ...} (malloc'd) */
	char	   *body;			/* F_REWRITE: whole reply body (malloc'd) */
	char	   *location;		/* F_REWRITE: Location header (malloc'd) */
} FaultDecision;

extern void fault_pick(FaultDecision *d, const char *body, size_t len);
extern json_object *fault_control(const char *method, const char *url,
								  json_object *body, int *status);
extern void fault_reset(void);
extern void fault_decision_free(FaultDecision *d);
extern const char *fault_kind_name(FaultKind k);

#endif
