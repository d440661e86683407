/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The extension's shared memory: worker identity, wake-ups, health
 *	  counters and latency histograms.
 *
 * Only atomics, a condition variable, a spinlock and fixed-size values
 * live here: no per-process pointers, which would mean nothing in another
 * process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_SHMEM_H
#define PAYMENTS_SHMEM_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/spin.h"
#include "storage/s_lock.h"

#include "card_vault.h"

/*
 * The queue depth: operations queued or being resolved (waiting for their
 * next attempt or look-up), off the partial index.  The worker publishes
 * it (queue_depth below); pay_worker_health counts it itself in a database
 * the worker does not serve.
 */
#define PAYMENTS_QUEUE_DEPTH_QUERY \
	"SELECT count(*) FROM payments.operations WHERE status IN ('queued', 'unknown')"

/* circuit breaker states */
#define CIRCUIT_CLOSED		0
#define CIRCUIT_OPEN		1
#define CIRCUIT_HALF_OPEN	2

/* latency histogram: bucket upper bounds in microseconds (last is +Inf) */
#define LATENCY_BUCKETS 16
extern const double latency_bucket_le_ms[LATENCY_BUCKETS];

typedef struct LatencyHistogram
{
	pg_atomic_uint64 buckets[LATENCY_BUCKETS];
	pg_atomic_uint64 count;
	pg_atomic_uint64 sum_us;
} LatencyHistogram;

/*
 * A merchant whose gateway account fails (payments.gateway_status), as the
 * worker last published it for pay_worker_health and pay_metrics.
 */
#define FAILING_GATEWAYS_SHOWN 16

typedef struct FailingGateway
{
	int64		merchant_id;
	TimestampTz since;
	char		code[16];
	char		text[160];
} FailingGateway;

typedef struct PaymentsShared
{
	/* the worker: pgprocno + 1 (0 = none), its pid, life signs */
	pg_atomic_uint32 worker_procno;
	pg_atomic_uint32 worker_pid;
	pg_atomic_uint64 worker_started_us;
	pg_atomic_uint64 last_loop_us;
	pg_atomic_uint32 restart_requested;
	pg_atomic_uint32 connect_failures;	/* starts in a row that could not
										 * connect to payments.database */
	pg_atomic_uint32 worker_recovered;	/* the worker has resolved what was
										 * in flight when it started */
	pg_atomic_uint32 claim_full;	/* its last claim took all it could:
									 * more operations are ready */

	/* the billing process (billing_worker.c) and the recorder (recorder.c) */
	pg_atomic_uint32 billing_connect_failures;
	pg_atomic_uint32 billing_procno;	/* pgprocno + 1 (0 = none) */
	pg_atomic_uint32 billing_wanted;	/* a committed change asks for a
										 * billing run now (wake.c) */
	pg_atomic_uint32 recorder_connect_failures;

	/*
	 * the configuration each process goes by: its pg_conf_load_time() (its
	 * PgReloadTime), published at the top of each round (loop_start); 0
	 * until its first round
	 */
	pg_atomic_uint64 worker_conf_loaded_us;
	pg_atomic_uint64 recorder_conf_loaded_us;
	pg_atomic_uint64 billing_conf_loaded_us;

	/* state published by the worker */
	pg_atomic_uint32 queue_depth;	/* PAYMENTS_QUEUE_DEPTH_QUERY's count */
	pg_atomic_uint32 in_flight;
	pg_atomic_uint32 max_in_flight;
	pg_atomic_uint32 circuit_state;
	pg_atomic_uint32 unrecorded;	/* outcomes the worker holds, their
									 * recording having failed */
	pg_atomic_uint64 worker_memory;	/* bytes under the worker's
									 * TopMemoryContext */

	/* counters since the server started */
	pg_atomic_uint64 requests_sent;
	pg_atomic_uint64 approved;
	pg_atomic_uint64 declined;
	pg_atomic_uint64 errors;
	pg_atomic_uint64 unknown_outcomes;
	pg_atomic_uint64 retries;
	pg_atomic_uint64 transport_failures;
	pg_atomic_uint64 worker_errors;	/* worker transactions that failed */

	/* gateway round trip, and COMMIT-to-result as the caller sees it */
	LatencyHistogram gateway_latency;
	LatencyHistogram result_latency;

	/* bumped and broadcast each time the worker commits results */
	pg_atomic_uint64 results_generation;
	ConditionVariable results_cv;

	/* merchants whose gateway account fails: how many, the oldest few */
	slock_t		failing_lock;
	int			failing_total;
	int			failing_shown;
	FailingGateway failing[FAILING_GATEWAYS_SHOWN];
	/* the card vault's sealing keys: made here, never written anywhere */
	CardVaultKeys vault_keys;
} PaymentsShared;

extern PaymentsShared *payments_shared;

extern void payments_shmem_register(void);
extern void histogram_observe(LatencyHistogram *h, uint64 us);
extern uint64 now_us(void);
extern void results_published(void);
extern void payments_set_latch_of(pg_atomic_uint32 *procno_plus_one);

#endif
