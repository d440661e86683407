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
 * Two-phase commit: PREPARE TRANSACTION is not a commit.  The worker cannot
 * see the prepared rows, so waking it then would be for nothing, and the
 * armed wake-up must not linger in the session (its next, unrelated COMMIT
 * would fire it): PREPARE disarms it.  The COMMIT PREPARED that makes the
 * rows visible may run in any session, one that never armed anything; a
 * utility hook (preloaded, so in every session) wakes the worker when any
 * COMMIT PREPARED commits.  Which prepared transaction it was is not known
 * there, so every COMMIT PREPARED costs the worker one look at its queue:
 * cheap, and 2PC is rare.  Should the hook miss (another hook in the chain
 * not calling it), the worker still looks at its queue every second.
 *
 * The billing process is woken the same way, on its own flag: a test clock
 * moved (pay_set_test_clock) asks for a billing run at its COMMIT, not at
 * the process's next round (payments.billing_interval), and so does a
 * billing run that left a subscription still due (several periods behind:
 * _run_renewals takes one period per run).  Only those ask: the billing
 * process is not woken by every payment.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "payments.h"
#include "schema_version.h"
#include "shmem.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(pay_wake_at_commit);
PG_FUNCTION_INFO_V1(pay_wake_billing_at_commit);

static bool callback_registered = false;
static bool wake_pending = false;
static bool billing_pending = false;

/* Set the worker's latch, if a worker is running. */
void
wake_worker_now(void)
{
	if (payments_shared != NULL)
		payments_set_latch_of(&payments_shared->worker_procno);
}

/* Ask the billing process for a run now, if one is running. */
static void
wake_billing_now(void)
{
	if (payments_shared == NULL)
		return;
	pg_atomic_write_u32(&payments_shared->billing_wanted, 1);
	payments_set_latch_of(&payments_shared->billing_procno);
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
			if (billing_pending)
				wake_billing_now();
			wake_pending = false;
			billing_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * a prepared transaction wakes the worker at COMMIT PREPARED;
			 * its billing waits for the next round
			 */
			wake_pending = false;
			billing_pending = false;
			break;
		default:
			break;
	}
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		callback_registered = true;
	}
}

/* Arrange for the worker to be woken when this transaction commits. */
void
wake_worker_at_commit(void)
{
	register_callback();
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

/* SQL: payments._wake_billing_at_commit() */
Datum
pay_wake_billing_at_commit(PG_FUNCTION_ARGS)
{
	payments_require_schema();
	register_callback();
	billing_pending = true;
	PG_RETURN_VOID();
}

static ProcessUtility_hook_type prev_process_utility = NULL;

/* COMMIT PREPARED: wake the worker when the statement commits. */
static void
wake_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
		wake_worker_at_commit();
}

/* Called from _PG_init at preload time. */
void
wake_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = wake_process_utility;
}
