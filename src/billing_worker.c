/*-------------------------------------------------------------------------
 *
 * billing_worker.c
 *	  The billing process: a background worker of its own that runs due
 *	  subscription renewals and dunning retries (billing.sql) on the clock
 *	  payments.billing_interval sets, in batches of payments.billing_batch,
 *	  one transaction each.
 *
 * Issuing an invoice and queueing its charge is a caller's work, like a
 * pay_purchase: the charge goes through the outbox, and the worker sends
 * it.  Done in the worker's own loop, issuing, sending and recording
 * shared one core, and a backlog of renewals went no faster than that
 * core; as a process of its own, issuing runs beside the worker on
 * another.  It gives way to sending: no new charges while a claim's worth
 * is in flight, or while the worker's last
 * claim was full (more was ready than it took), so that a backlog never
 * grows the queue without bound (and the worker claims ordinary payments
 * ahead of it).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
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
#include "utils/timestamp.h"

#include "billing_worker.h"
#include "payments.h"
#include "shmem.h"
#include "worker.h"
#include "worker_tx.h"

PGDLLEXPORT void payments_billing_main(Datum main_arg);

/* settings (payments.c defines them) */
int			payments_billing_interval_s = PAYMENTS_DEFAULT_BILLING_INTERVAL_S;
int			payments_billing_batch = PAYMENTS_DEFAULT_BILLING_BATCH;

/* Register the billing process; called from _PG_init at preload time. */
void
payments_billing_register(void)
{
	worker_register("payments_billing_main", "payments billing");
}

/*
 * Billing of subscriptions (billing.sql): due renewals and dunning retries,
 * one batch of each per transaction.  The functions may be missing (a
 * schema without them, or one being updated): that is said once and the
 * step skipped, not raised every round.
 */
typedef enum BillingResult
{
	BILLING_DONE,				/* a partial batch: nothing more is due */
	BILLING_FULL,				/* a full batch: more may be due */
	BILLING_MISSING				/* the function does not exist */
} BillingResult;

typedef struct BillingRun
{
	const char *function;		/* payments._run_renewals or _run_dunning */
	int			limit;
	BillingResult result;
} BillingRun;

static void
billing_batch_fn(void *arg)
{
	BillingRun *run = (BillingRun *) arg;
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {(Datum) 0, Int32GetDatum(run->limit)};
	const char	nulls[2] = {'n', ' '};
	char	   *sql;
	bool		isnull;
	Datum		d;

	sql = psprintf("SELECT to_regprocedure('%s(bigint,integer)') IS NOT NULL", run->function);
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments billing: looking up %s failed", run->function);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!DatumGetBool(d))
	{
		run->result = BILLING_MISSING;
		return;
	}

	sql = psprintf("SELECT %s($1, $2)", run->function);
	if (SPI_execute_with_args(sql, 2, argtypes, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments billing: %s failed", run->function);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	run->result = (!isnull && DatumGetInt32(d) >= run->limit) ? BILLING_FULL : BILLING_DONE;
}

/*
 * One batch of function.  A failed batch (a deadlock, the statement
 * timeout...) is logged by the guard and counts as done: the next turn
 * comes at the next interval.
 */
static BillingResult
billing_batch(const char *what, const char *function, bool *missing_said)
{
	BillingRun	run = {.function = function, .limit = payments_billing_batch, .result = BILLING_DONE};

	if (!in_transaction(what, billing_batch_fn, &run))
		return BILLING_DONE;
	if (run.result == BILLING_MISSING)
	{
		if (!*missing_said)
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("payments billing: %s is missing, no billing runs until it exists", function),
					 errhint("Run ALTER EXTENSION payments UPDATE, or set payments.billing_interval to 0.")));
		*missing_said = true;
		return BILLING_DONE;
	}
	*missing_said = false;
	return run.result;
}

/*
 * Due renewals, then due dunning retries, one batch each.  True when a
 * batch was full or put off (more is due); *deferred when the sender was
 * behind.  Nothing is billed before the worker is up and has resolved what
 * was in flight when it started (no one would send the charges), nor while
 * its last claim was full (more is ready than it takes: the charges
 * already queued go first) or a claim's worth is in flight: later.  An
 * open circuit holds back only its endpoint's merchants, whose charges wait
 * in the queue (circuit_breaker.h); it does not stop everyone's billing.  Keeping the billing's charges in flight to about one
 * claim (enough for thousands a second at a gateway's usual latency)
 * leaves the rest of payments.max_in_flight to other payments.
 */
static bool
run_billing(bool *deferred)
{
	static bool renewals_missing = false;
	static bool dunning_missing = false;
	BillingResult r1;
	BillingResult r2;

	*deferred = false;
	if (pg_atomic_read_u32(&payments_shared->worker_recovered) == 0 ||
		pg_atomic_read_u32(&payments_shared->claim_full) != 0 ||
		pg_atomic_read_u32(&payments_shared->in_flight) >=
		(uint32) Min(payments_claim_batch, payments_max_in_flight))
	{
		*deferred = true;
		return true;
	}
	r1 = billing_batch("running subscription renewals", "payments._run_renewals",
					   &renewals_missing);
	r2 = billing_batch("running dunning retries", "payments._run_dunning",
					   &dunning_missing);
	return r1 == BILLING_FULL || r2 == BILLING_FULL;
}

/* The process is gone: no one is to be woken for billing (wake.c). */
static void
billing_on_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	pg_atomic_write_u32(&payments_shared->billing_procno, 0);
}

/*
 * The loop: a run every payments.billing_interval seconds (0: none, the
 * process idles and rereads its settings), or at once when a committed
 * change asked for one (a test clock moved: wake.c); after a full batch
 * the next at once, after one put off 100 ms later, so that a backlog is
 * worked through in short transactions at the pace the worker sends.
 */
void
payments_billing_main(Datum main_arg pg_attribute_unused())
{
	MemoryContext loop_cxt;
	TimestampTz last_run = 0;
	bool		backlog = false;
	bool		deferred = false;

	helper_start(&payments_shared->billing_connect_failures, "payments billing");
	/* committed changes may ask for a run now (wake.c) */
	pg_atomic_write_u32(&payments_shared->billing_procno, MyProc->pgprocno + 1);
	before_shmem_exit(billing_on_exit, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "payments billing loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now;
		long		wait_ms;

		loop_start(loop_cxt, &payments_shared->billing_conf_loaded_us);
		now = GetCurrentTimestamp();
		wait_ms = 1000;
		if (payments_billing_interval_s > 0)
		{
			long		every = !backlog ? payments_billing_interval_s * 1000L :
				deferred ? 100 : 0;

			if (pg_atomic_exchange_u32(&payments_shared->billing_wanted, 0) != 0 ||
				TimestampDifferenceExceeds(last_run, now, (int) every))
			{
				last_run = now;
				backlog = run_billing(&deferred);
				every = !backlog ? payments_billing_interval_s * 1000L : deferred ? 100 : 0;
			}
			wait_ms = Min(wait_ms, Max(0, every - TimestampDifferenceMilliseconds(last_run,
																				   GetCurrentTimestamp())));
		}
		if (wait_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
