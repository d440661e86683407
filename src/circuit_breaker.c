/*-------------------------------------------------------------------------
 *
 * circuit_breaker.c
 *	  Stop hammering a failing gateway: the worker's circuit breaker.
 *
 * circuit_breaker.h describes the states.  The worker asks
 * circuit_held() which gateway connections to leave out of a claim, tells
 * circuit_sent() of each operation it sends, and circuit_record() of the
 * fate of each transfer (settlement checks excepted), each for the
 * operation's gateway connection (circuit_for()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "circuit_breaker.h"
#include "shmem.h"

/* failures in a row that open the circuit */
#define CIRCUIT_THRESHOLD	5
/* how long it opens the first time, and the longest */
#define CIRCUIT_MIN_OPEN_MS	5000
#define CIRCUIT_MAX_OPEN_MS	60000

/*
 * The worker's state for the health view: open while any breaker is open,
 * half-open while a probe is out, else closed.  A breaker whose time is up
 * and that has nothing to probe (its merchants moved to another endpoint,
 * say) holds nothing back, and counts as closed.  The state changes with
 * time alone, so the worker also publishes it every second: published only
 * by claims and transfers, "open" stayed in the health view and the
 * metrics after the time was up while no claim ran.
 */
void
circuit_publish(CircuitSet *cs)
{
	TimestampTz now = GetCurrentTimestamp();
	int			state = CIRCUIT_CLOSED;

	for (int i = 0; i < cs->n; i++)
	{
		CircuitBreaker *cb = &cs->breakers[i];

		if (cb->open_until != 0 && now < cb->open_until)
		{
			state = CIRCUIT_OPEN;
			break;
		}
		if (cb->open_until != 0 && cb->probe_in_flight)
			state = CIRCUIT_HALF_OPEN;
	}
	pg_atomic_write_u32(&payments_shared->circuit_state, state);
}

/* No breakers (all closed), published as closed. */
void
circuit_reset(CircuitSet *cs)
{
	for (int i = 0; i < cs->n; i++)
		pfree(cs->breakers[i].key);
	cs->n = 0;
	circuit_publish(cs);
}

/* The breaker of a gateway connection, a closed one if it has none yet. */
CircuitBreaker *
circuit_for(CircuitSet *cs, const char *key)
{
	CircuitBreaker *cb;

	for (int i = 0; i < cs->n; i++)
		if (strcmp(cs->breakers[i].key, key) == 0)
			return &cs->breakers[i];
	if (cs->n == cs->size)
	{
		cs->size = cs->size == 0 ? 8 : cs->size * 2;
		cs->breakers = cs->breakers == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(CircuitBreaker) * cs->size) :
			repalloc(cs->breakers, sizeof(CircuitBreaker) * cs->size);
	}
	cb = &cs->breakers[cs->n++];
	memset(cb, 0, sizeof(*cb));
	cb->key = MemoryContextStrdup(TopMemoryContext, key);
	cb->open_ms = CIRCUIT_MIN_OPEN_MS;
	return cb;
}

/*
 * The gateway connections an ordinary claim leaves out (palloc'd, *n of them): every
 * one whose circuit is not closed.  Those of them whose open time is up
 * and that have no probe out are also in *probes (*nprobes): the worker
 * claims one operation for each, the probe.
 */
char	  **
circuit_held(CircuitSet *cs, int *n, char ***probes, int *nprobes)
{
	TimestampTz now = GetCurrentTimestamp();
	char	  **held = palloc(sizeof(char *) * Max(cs->n, 1));

	*probes = palloc(sizeof(char *) * Max(cs->n, 1));
	*n = 0;
	*nprobes = 0;
	for (int i = 0; i < cs->n; i++)
	{
		CircuitBreaker *cb = &cs->breakers[i];

		if (cb->open_until == 0)
			continue;
		held[(*n)++] = cb->key;
		if (now >= cb->open_until && !cb->probe_in_flight)
			(*probes)[(*nprobes)++] = cb->key;
	}
	circuit_publish(cs);
	return held;
}

/*
 * The breakers that opened since the last call (palloc'd, *n of them): the
 * worker parks their merchants' due operations until they may be probed
 * (payments._park_connection), so that claims do not read them over and
 * over meanwhile.
 */
CircuitBreaker **
circuit_parks(CircuitSet *cs, int *n)
{
	CircuitBreaker **parks = palloc(sizeof(CircuitBreaker *) * Max(cs->n, 1));

	*n = 0;
	for (int i = 0; i < cs->n; i++)
	{
		if (!cs->breakers[i].park_pending)
			continue;
		cs->breakers[i].park_pending = false;
		if (cs->breakers[i].open_until != 0)
			parks[(*n)++] = &cs->breakers[i];
	}
	return parks;
}

/*
 * An operation was sent there: once the open time is up, the probe.  (A
 * credentials check, claimed whatever the circuits, may go to an endpoint
 * whose circuit is open: it is no probe then, and its success closes it.)
 */
void
circuit_sent(CircuitSet *cs, CircuitBreaker *cb)
{
	if (cb->open_until != 0 && !cb->probe_in_flight && GetCurrentTimestamp() >= cb->open_until)
	{
		cb->probe_in_flight = true;
		circuit_publish(cs);
	}
}

/*
 * Where a breaker's gateway is, for the log: its host (and port), without
 * a path, anything before an "@", or the rest of the key.
 */
char *
circuit_host(const CircuitBreaker *cb)
{
	const char *url = cb->key;
	const char *start = strstr(url, "://");
	const char *end;
	const char *at;

	start = start ? start + 3 : url;
	end = start + strcspn(start, "/?#\n");
	at = memchr(start, '@', end - start);
	if (at != NULL)
		start = at + 1;
	return pnstrdup(start, end - start);
}

/* A transfer ended: failure when it failed below HTTP or got no valid answer. */
void
circuit_record(CircuitSet *cs, CircuitBreaker *cb, bool failure)
{
	if (!failure)
	{
		cb->consecutive_failures = 0;
		if (cb->open_until != 0)
		{
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker: gateway at %s answers again, circuit closed",
							circuit_host(cb))));
			cb->open_until = 0;
			cb->open_ms = CIRCUIT_MIN_OPEN_MS;
		}
		cb->probe_in_flight = false;
		circuit_publish(cs);
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
	cb->park_pending = true;
	circuit_publish(cs);
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("payments worker: gateway at %s failing, circuit open for %d ms",
					circuit_host(cb), cb->open_ms),
			 errdetail("%d transfers in a row failed or got no valid answer; other merchants' gateways are not held back.",
					   cb->consecutive_failures)));
}
