/*-------------------------------------------------------------------------
 *
 * circuit_breaker.h
 *	  Stop hammering a failing gateway: the worker's circuit breaker.
 *
 * One breaker per gateway connection (endpoint URL, CA file and timeout,
 * payments._gateway_connection): a merchant whose endpoint is down, or
 * whose own CA file or timeout fails, holds back only the operations sent
 * that way.  (One breaker for all, a
 * dead endpoint of one merchant, looked up again and again for operations
 * it left unknown, held every merchant's payments back for up to a minute
 * at a time.)
 *
 * Closed, every operation for the endpoint may be claimed.  After five
 * transfers to it in a row failed (or got no valid answer) it opens:
 * nothing for it is claimed for a while (5 s at first).  Then it is
 * half-open: one operation is claimed for it, the probe; the probe's success
 * closes it, its failure opens it again for twice as long (at most a
 * minute).  The worker's state (open if any is open, half-open if any is
 * half-open) is published in shared memory (payments_shared->circuit_state,
 * CIRCUIT_* in shmem.h) for the health view and the metrics.
 *
 * The breakers live in the worker's process only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CIRCUIT_BREAKER_H
#define PAYMENTS_CIRCUIT_BREAKER_H

#include "datatype/timestamp.h"

typedef struct CircuitBreaker
{
	char	   *key;			/* the gateway connection: URL, CA file and
								 * timeout (TopMemoryContext) */
	int			consecutive_failures;	/* transfers in a row that failed */
	TimestampTz open_until;		/* 0: closed; else open until then, and
								 * half-open after */
	int			open_ms;		/* how long it opens the next time */
	bool		probe_in_flight;	/* half-open: the probe is out */
	bool		park_pending;	/* just opened: its merchants' due
								 * operations are to wait (circuit_parks) */
} CircuitBreaker;

/* The worker's breakers, one per endpoint it has sent to. */
typedef struct CircuitSet
{
	int			n;
	int			size;
	CircuitBreaker *breakers;
} CircuitSet;

extern void circuit_reset(CircuitSet *cs);
extern void circuit_publish(CircuitSet *cs);
extern CircuitBreaker *circuit_for(CircuitSet *cs, const char *key);
extern char *circuit_host(const CircuitBreaker *cb);
extern char **circuit_held(CircuitSet *cs, int *n, char ***probes, int *nprobes);
extern void circuit_sent(CircuitSet *cs, CircuitBreaker *cb);
extern void circuit_record(CircuitSet *cs, CircuitBreaker *cb, bool failure);
extern CircuitBreaker **circuit_parks(CircuitSet *cs, int *n);

#endif
