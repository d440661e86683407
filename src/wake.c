/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  Wake the background worker at COMMIT, never before.
 *
 * API functions only record intent (an operation row).  They call
 * payments._wake_at_commit(), which arms a transaction callback: at COMMIT
 * the worker's latch is set; at ROLLBACK nothing happens, so nothing was
 * sent and nothing was charged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "storage/latch.h"
#include "storage/proc.h"

#include "payments.h"
#include "schema_version.h"
#include "shmem.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(pay_wake_at_commit);

static bool callback_registered = false;
static bool wake_pending = false;

/* Set the worker's latch, if a worker is running. */
void
wake_worker_now(void)
{
	uint32		procno;

	if (payments_shared == NULL)
		return;
	procno = pg_atomic_read_u32(&payments_shared->worker_procno);
	if (procno == 0)
		return;
	SetLatch(&ProcGlobal->allProcs[procno - 1].procLatch);
}

static void
wake_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				wake_worker_now();
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* Arrange for the worker to be woken when this transaction commits. */
void
wake_worker_at_commit(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
	wake_pending = true;
}

/* SQL: payments._wake_at_commit() */
Datum
pay_wake_at_commit(PG_FUNCTION_ARGS)
{
	payments_require_schema();
	wake_worker_at_commit();
	PG_RETURN_VOID();
}
