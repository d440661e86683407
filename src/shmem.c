/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Reserve and attach the extension's shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "audit_horizon.h"
#include "rate_limit.h"
#include "record_queue.h"
#include "shmem.h"
#include "vault_holds.h"
#include "wait.h"

PaymentsShared *payments_shared = NULL;

/* bucket upper bounds (milliseconds); Prometheus "le" labels */
const double latency_bucket_le_ms[LATENCY_BUCKETS] = {
	0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, -1
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
payments_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PaymentsShared)));
	RequestAddinShmemSpace(rate_limit_shmem_size());
	RequestAddinShmemSpace(record_queue_shmem_size());
	RequestAddinShmemSpace(audit_horizon_shmem_size());
	RequestAddinShmemSpace(wait_shmem_size());
	RequestAddinShmemSpace(vault_holds_shmem_size());
}

static void
init_histogram(LatencyHistogram *h)
{
	for (int i = 0; i < LATENCY_BUCKETS; i++)
		pg_atomic_init_u64(&h->buckets[i], 0);
	pg_atomic_init_u64(&h->count, 0);
	pg_atomic_init_u64(&h->sum_us, 0);
}

/* Attach (and on first use initialize) the shared state. */
static void
payments_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	payments_shared = ShmemInitStruct("payments", sizeof(PaymentsShared), &found);
	if (!found)
	{
		memset(payments_shared, 0, sizeof(PaymentsShared));
		pg_atomic_init_u32(&payments_shared->worker_procno, 0);
		pg_atomic_init_u32(&payments_shared->worker_pid, 0);
		pg_atomic_init_u64(&payments_shared->worker_started_us, 0);
		pg_atomic_init_u64(&payments_shared->last_loop_us, 0);
		pg_atomic_init_u32(&payments_shared->restart_requested, 0);
		pg_atomic_init_u32(&payments_shared->connect_failures, 0);
		pg_atomic_init_u32(&payments_shared->worker_recovered, 0);
		pg_atomic_init_u32(&payments_shared->claim_full, 0);
		pg_atomic_init_u32(&payments_shared->billing_connect_failures, 0);
		pg_atomic_init_u32(&payments_shared->billing_procno, 0);
		pg_atomic_init_u32(&payments_shared->billing_wanted, 0);
		pg_atomic_init_u32(&payments_shared->recorder_connect_failures, 0);
		pg_atomic_init_u64(&payments_shared->worker_conf_loaded_us, 0);
		pg_atomic_init_u64(&payments_shared->recorder_conf_loaded_us, 0);
		pg_atomic_init_u64(&payments_shared->billing_conf_loaded_us, 0);
		pg_atomic_init_u32(&payments_shared->queue_depth, 0);
		pg_atomic_init_u32(&payments_shared->in_flight, 0);
		pg_atomic_init_u32(&payments_shared->max_in_flight, 0);
		pg_atomic_init_u32(&payments_shared->circuit_state, CIRCUIT_CLOSED);
		pg_atomic_init_u64(&payments_shared->requests_sent, 0);
		pg_atomic_init_u64(&payments_shared->approved, 0);
		pg_atomic_init_u64(&payments_shared->declined, 0);
		pg_atomic_init_u64(&payments_shared->errors, 0);
		pg_atomic_init_u64(&payments_shared->unknown_outcomes, 0);
		pg_atomic_init_u64(&payments_shared->retries, 0);
		pg_atomic_init_u64(&payments_shared->transport_failures, 0);
		pg_atomic_init_u64(&payments_shared->worker_errors, 0);
		pg_atomic_init_u32(&payments_shared->unrecorded, 0);
		pg_atomic_init_u64(&payments_shared->worker_memory, 0);
		init_histogram(&payments_shared->gateway_latency);
		init_histogram(&payments_shared->result_latency);
		pg_atomic_init_u64(&payments_shared->results_generation, 0);
		ConditionVariableInit(&payments_shared->results_cv);
		SpinLockInit(&payments_shared->failing_lock);
		card_vault_keys_init(&payments_shared->vault_keys);
	}
	rate_limit_shmem_init();
	record_queue_shmem_init();
	audit_horizon_shmem_init();
	wait_shmem_init();
	vault_holds_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init at preload time. */
void
payments_shmem_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = payments_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = payments_shmem_startup;
}

/* Record one observation (microseconds) in a histogram. */
void
histogram_observe(LatencyHistogram *h, uint64 us)
{
	int			i;

	for (i = 0; i < LATENCY_BUCKETS - 1; i++)
	{
		if ((double) us <= latency_bucket_le_ms[i] * 1000.0)
			break;
	}
	pg_atomic_fetch_add_u64(&h->buckets[i], 1);
	pg_atomic_fetch_add_u64(&h->count, 1);
	pg_atomic_fetch_add_u64(&h->sum_us, us);
}

/* Wall clock in microseconds since the PostgreSQL epoch. */
uint64
now_us(void)
{
	return (uint64) GetCurrentTimestamp();
}

/*
 * Results were committed: pay_wait callers (wait.c) read their payments
 * again.  The worker and the recorder call it after each commit of results.
 */
void
results_published(void)
{
	pg_atomic_fetch_add_u64(&payments_shared->results_generation, 1);
	ConditionVariableBroadcast(&payments_shared->results_cv);
}

/* Set the latch of the process whose pgprocno + 1 the slot holds, if any. */
void
payments_set_latch_of(pg_atomic_uint32 *procno_plus_one)
{
	uint32		procno = pg_atomic_read_u32(procno_plus_one);

	if (procno != 0)
		SetLatch(&ProcGlobal->allProcs[procno - 1].procLatch);
}
