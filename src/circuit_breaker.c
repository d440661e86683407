/*-------------------------------------------------------------------------
 *
 * circuit_breaker.c
 *	  Stop hammering a failing gateway: the worker's circuit breaker.
 *
 * circuit_breaker.h describes the states.  The worker asks
 * circuit_allowance() how many operations it may claim, tells
 * circuit_sent() of each one it sends, and circuit_record() of the fate of
 * each transfer (settlement checks excepted).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "circuit_breaker.h"
#include "shmem.h"

/* failures in a row that open the circuit */
#define CIRCUIT_THRESHOLD	5
/* how long it opens the first time, and the longest */
#define CIRCUIT_MIN_OPEN_MS	5000
#define CIRCUIT_MAX_OPEN_MS	60000

static void
circuit_publish(int state)
{
	pg_atomic_write_u32(&payments_shared->circuit_state, state);
}

/* A closed circuit with no failures, published as closed. */
void
circuit_reset(CircuitBreaker *cb)
{
	cb->consecutive_failures = 0;
	cb->open_until = 0;
	cb->open_ms = CIRCUIT_MIN_OPEN_MS;
	cb->probe_in_flight = false;
	circuit_publish(CIRCUIT_CLOSED);
}

/* Open or half-open: not closed. */
bool
circuit_is_open(const CircuitBreaker *cb)
{
	return cb->open_until != 0;
}

/* How many operations may be claimed now, as the circuit allows. */
int
circuit_allowance(CircuitBreaker *cb, int capacity)
{
	if (cb->open_until == 0)
		return capacity;
	if (GetCurrentTimestamp() < cb->open_until)
		return 0;
	/* half-open: one probe at a time */
	circuit_publish(CIRCUIT_HALF_OPEN);
	if (cb->probe_in_flight)
		return 0;
	return Min(capacity, 1);
}

/* An operation was sent: while the circuit is not closed, it is the probe. */
void
circuit_sent(CircuitBreaker *cb)
{
	if (cb->open_until != 0)
		cb->probe_in_flight = true;
}

/* A transfer ended: failure when it failed below HTTP or got no valid answer. */
void
circuit_record(CircuitBreaker *cb, bool failure)
{
	if (!failure)
	{
		cb->consecutive_failures = 0;
		if (cb->open_until != 0)
		{
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker: gateway answers again, circuit closed")));
			cb->open_until = 0;
			cb->open_ms = CIRCUIT_MIN_OPEN_MS;
			circuit_publish(CIRCUIT_CLOSED);
		}
		cb->probe_in_flight = false;
		return;
	}
	cb->consecutive_failures++;
	if (cb->open_until != 0)
	{
		/*
		 * Already open: transfers that were in flight when it opened fail
		 * too and change nothing; only a failed probe (half-open) keeps it
		 * open, for twice as long.
		 */
		if (!cb->probe_in_flight || GetCurrentTimestamp() < cb->open_until)
			return;
		cb->open_ms = Min(cb->open_ms * 2, CIRCUIT_MAX_OPEN_MS);
	}
	else if (cb->consecutive_failures < CIRCUIT_THRESHOLD)
		return;
	cb->open_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), cb->open_ms);
	cb->probe_in_flight = false;
	circuit_publish(CIRCUIT_OPEN);
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("payments worker: gateway failing, circuit open for %d ms", cb->open_ms),
			 errdetail("%d transfers in a row failed or got no valid answer.", cb->consecutive_failures)));
}
