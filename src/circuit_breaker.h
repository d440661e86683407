/*-------------------------------------------------------------------------
 *
 * circuit_breaker.h
 *	  Stop hammering a failing gateway: the worker's circuit breaker.
 *
 * Closed, every operation may be claimed.  After five transfers in a row
 * failed (or got no valid answer) it opens: nothing is claimed for a while
 * (5 s at first).  Then it is half-open: one probe at a time; the probe's
 * success closes it, its failure opens it again for twice as long (at most
 * a minute).  Its state is published in shared memory
 * (payments_shared->circuit_state, CIRCUIT_* in shmem.h) for the health
 * view and the metrics.
 *
 * The worker owns one breaker; it lives in the worker's process only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CIRCUIT_BREAKER_H
#define PAYMENTS_CIRCUIT_BREAKER_H

#include "datatype/timestamp.h"

typedef struct CircuitBreaker
{
	int			consecutive_failures;	/* transfers in a row that failed */
	TimestampTz open_until;		/* 0: closed; else open until then, and
								 * half-open after */
	int			open_ms;		/* how long it opens the next time */
	bool		probe_in_flight;	/* half-open: the one probe is out */
} CircuitBreaker;

extern void circuit_reset(CircuitBreaker *cb);
extern int	circuit_allowance(CircuitBreaker *cb, int capacity);
extern void circuit_sent(CircuitBreaker *cb);
extern void circuit_record(CircuitBreaker *cb, bool failure);
extern bool circuit_is_open(const CircuitBreaker *cb);

#endif
