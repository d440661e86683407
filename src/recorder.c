/*-------------------------------------------------------------------------
 *
 * recorder.c
 *	  The recorder: a background process beside the worker that writes
 *	  the bulk of step 3, the final answers to purchases and
 *	  authorizations and their exchange log rows, in batches the worker
 *	  hands it through record_queue.c.
 *
 * Recording was half of the worker's time, and while it recorded it could
 * neither claim what callers had just committed nor read the replies
 * arriving: both waited behind it.  And on a busy server the worker, one
 * process among many backends, got one process's share of the cores for
 * claiming, sending and recording together.  With the recorder, recording
 * runs beside them.  The worker still records everything else (captures,
 * refunds, retries, unknown outcomes, checks), and records a batch itself
 * whenever the recorder is off (payments.recorder), not running, behind,
 * or failed with it: the recorder only ever takes work, never holds it.
 *
 * Each round records every waiting batch in one transaction (durable
 * before the callers waiting in pay_wait are woken), then says what became
 * of each batch; a failed transaction is logged and its batches go back to
 * the worker, which records their operations one by one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/timestamp.h"

#include "payments.h"
#include "record.h"
#include "record_queue.h"
#include "recorder.h"
#include "shmem.h"
#include "cpu_scheduling.h"
#include "worker_tx.h"

PGDLLEXPORT void payments_recorder_main(Datum main_arg);

/* setting (payments.c defines it) */
bool		payments_recorder_enabled = true;
int			payments_recorder_min_batch = 32;

/* At most this many batches in one transaction. */
#define BATCHES_PER_ROUND 16

void
payments_recorder_register(void)
{
	worker_register("payments_recorder_main", "payments recorder");
}

static void
recorder_on_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	record_queue_detach();
}

/* The batches of one round, copied out of the queue. */
typedef struct RecorderRound
{
	int			n;
	uint64		ids[BATCHES_PER_ROUND];
	StringInfoData data[BATCHES_PER_ROUND];
	int			results;
} RecorderRound;

static void
record_round_fn(void *arg)
{
	RecorderRound *r = (RecorderRound *) arg;

	r->results = 0;
	for (int i = 0; i < r->n; i++)
		r->results += record_serialized(r->data[i].data, r->data[i].len, false);
}

/* A failed round's exchanges, on their own (record_exchanges). */
static void
record_round_exchanges_fn(void *arg)
{
	RecorderRound *r = (RecorderRound *) arg;

	for (int i = 0; i < r->n; i++)
		(void) record_serialized(r->data[i].data, r->data[i].len, true);
}

void
payments_recorder_main(Datum main_arg pg_attribute_unused())
{
	MemoryContext loop_cxt;
	RecorderRound round;
	TimestampTz last_plans = GetCurrentTimestamp();
	TimestampTz last_memory = 0;

	helper_start(&payments_shared->recorder_connect_failures, "payments recorder");
	/* results durable before anyone is told, brief lock waits, no JIT */
	background_session_settings();
	cpu_scheduling_request();

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "payments recorder loop",
									 ALLOCSET_DEFAULT_SIZES);
	on_shmem_exit(recorder_on_exit, (Datum) 0);
	record_queue_attach((uint32) MyProcPid, MyProc->pgprocno);

	for (;;)
	{
		bool		ok;

		loop_start(loop_cxt, &payments_shared->recorder_conf_loaded_us);
		/* plans kept no longer than a minute, as the worker's */
		if (TimestampDifferenceExceeds(last_plans, GetCurrentTimestamp(), 60000))
		{
			last_plans = GetCurrentTimestamp();
			ResetPlanCache();
		}
		if (TimestampDifferenceExceeds(last_memory, GetCurrentTimestamp(), 1000))
		{
			last_memory = GetCurrentTimestamp();
			record_queue_set_recorder_memory((uint64) MemoryContextMemAllocated(TopMemoryContext, true));
		}

		/*
		 * The batches' bytes go into the round's memory, freed at the top of
		 * the next round: a buffer kept from round to round would keep the
		 * size of the largest batch it ever held.
		 */
		round.n = 0;
		while (round.n < BATCHES_PER_ROUND)
		{
			initStringInfo(&round.data[round.n]);
			if (!record_queue_get(&round.data[round.n], &round.ids[round.n]))
				break;
			round.n++;
		}
		if (round.n == 0)
		{
			/*
			 * Idle: the statistics of what it deleted (card vault rows) go out
			 * now; left pending, the vault's live-row count would only grow
			 * with each caller's inserts.
			 */
			pgstat_report_stat(true);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		ok = in_transaction("recording outcomes", record_round_fn, &round);
		if (ok)
		{
			record_queue_count_results((uint64) round.results);
			results_published();
		}
		for (int i = 0; i < round.n; i++)
			record_queue_done(round.ids[i], ok);

		/*
		 * A failed round's outcomes are the worker's now; its exchanges go
		 * on their own, after that (a recorder that stopped in between
		 * loses them, it never has the worker log them twice).
		 */
		if (!ok)
			(void) in_transaction("recording exchanges", record_round_exchanges_fn, &round);
	}
}
