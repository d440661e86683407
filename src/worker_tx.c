/*-------------------------------------------------------------------------
 *
 * worker_tx.c
 *	  What the extension's background processes (the worker, the recorder,
 *	  the billing process) share: the connection to payments.database, the
 *	  guard of every transaction they run, and the plans they keep.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "payments.h"
#include "shmem.h"
#include "cpu_scheduling.h"
#include "worker.h"
#include "worker_tx.h"

/*
 * The memory context a worker transaction was begun in: CommitTransaction
 * and AbortTransaction leave CurrentMemoryContext at TopMemoryContext, so
 * commit_tx and the guard switch back to it (else every allocation after a
 * transaction would outlive the round that made it).
 */
static MemoryContext tx_outer_cxt = NULL;

/* payments.worker_lock_timeout, milliseconds (0: wait as long as it takes) */
int			payments_worker_lock_timeout = PAYMENTS_DEFAULT_WORKER_LOCK_TIMEOUT_MS;

/* whether this process waits for locks briefly (limit_lock_waits) */
static bool lock_waits_limited = false;

/* the SQLSTATE of the last transaction in_transaction rolled back */
static int	last_failure_sqlstate = 0;

/* the SQLSTATE of the last one that failed for a missing object, until asked */
static int	missing_object_sqlstate = 0;

/*
 * Arm payments.worker_statement_timeout for the transaction just begun: a
 * background worker runs no client statements, so nothing else arms
 * statement_timeout for it, and a lock held by someone else would stop
 * the loop (and every request in flight) for as long as it is held.
 */
static void
arm_tx_timeout(void)
{
	if (payments_worker_statement_timeout > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, payments_worker_statement_timeout);
}

static void
disarm_tx_timeout(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
}

static void
begin_tx(const char *what)
{
	tx_outer_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	arm_tx_timeout();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "%s: SPI_connect failed", MyBgworkerEntry->bgw_type);
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
commit_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	disarm_tx_timeout();
	MemoryContextSwitchTo(tx_outer_cxt);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Recover from an ERROR caught in the worker (inside PG_CATCH): take a
 * copy of the error (in cxt, the context of the code that failed), clear
 * the error state, abort the transaction if one is open (that also
 * unwinds SPI, the snapshot stack, locks and buffer pins), drop a cancel
 * that arrived meanwhile, switch back to cxt, and log what failed with its
 * SQLSTATE, detail and hint.  The loop then goes on: the requests in
 * flight in the HTTP engine are untouched.
 */
static void
recover_from_error(const char *what, MemoryContext cxt)
{
	ErrorData  *e;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(cxt);
	e = CopyErrorData();
	FlushErrorState();
	last_failure_sqlstate = e->sqlerrcode;
	if (e->sqlerrcode == ERRCODE_UNDEFINED_TABLE || e->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
		e->sqlerrcode == ERRCODE_UNDEFINED_OBJECT || e->sqlerrcode == ERRCODE_INVALID_SCHEMA_NAME)
		missing_object_sqlstate = e->sqlerrcode;
	disarm_tx_timeout();
	AbortCurrentTransaction();
	QueryCancelPending = false;
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	pg_atomic_fetch_add_u64(&payments_shared->worker_errors, 1);
	ereport(LOG,
			(errcode(e->sqlerrcode),
			 errmsg("%s: %s failed with SQLSTATE %s: %s",
					MyBgworkerEntry ? MyBgworkerEntry->bgw_type : "payments", what, unpack_sql_state(e->sqlerrcode), e->message),
			 e->detail ? errdetail_internal("%s", e->detail) : 0,
			 e->hint ? errhint("%s", e->hint) : 0));
	FreeErrorData(e);
	RESUME_INTERRUPTS();
}

/*
 * The guard of every transaction the worker runs (one home): run fn(arg)
 * in a transaction of its own, with SPI connected and a snapshot pushed,
 * and commit it.  An ERROR in it (a deadlock, payments.worker_statement_timeout,
 * a constraint violated by one bad row...) is caught: the transaction is
 * rolled back, the error logged with its SQLSTATE, and false returned; the
 * worker does not exit, and what it has in flight stays in flight.  The
 * caller decides what a failure means for its step (skip it until its
 * next turn, back off, keep a result to record again); it must not retry
 * at once.  Returns in the memory context it was called in, either way.
 *
 * fn must leave nothing half-done in memory that outlives the call when it
 * raises: whatever it allocates for later goes where the caller finds it
 * (a list it passed in arg), to be freed when false comes back.
 */
bool
in_transaction(const char *what, void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		begin_tx(what);
		fn(arg);
		commit_tx();
	}
	PG_CATCH();
	{
		recover_from_error(what, cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Whether the last transaction in_transaction rolled back failed for a
 * lock someone else held (payments.worker_lock_timeout): the same step
 * will succeed once the lock is gone.
 */
bool
last_failure_was_lock(void)
{
	return last_failure_sqlstate == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Whether a transaction in_transaction rolled back since the last call
 * failed for a missing object of the schema (a table, function, type or
 * the schema itself): the extension may have been dropped.  Asking
 * forgets the failure, so that one such error is looked into once.
 */
bool
failed_for_missing_object(void)
{
	int			code = missing_object_sqlstate;

	missing_object_sqlstate = 0;
	return code != 0;
}

/*
 * Interrupts between transactions: a cancel (pg_cancel_backend, a statement
 * timeout that fired as its transaction ended) cancels nothing there and
 * must not end the worker; a termination request still does (FATAL).
 */
void
check_interrupts(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		recover_from_error("handling an interrupt", cxt);
	}
	PG_END_TRY();
}

/*
 * Connect to payments.database (connect_failures: the process's count in
 * shared memory).  While it does not exist the connection fails with FATAL
 * and the postmaster starts the process again a second
 * later; each failure in a row doubles the wait before the next try (up to
 * a minute), so that a server preloaded before its database is created
 * logs the error now and then, not every second.
 */
void
worker_connect(pg_atomic_uint32 *connect_failures)
{
	uint32		failures = pg_atomic_read_u32(connect_failures);

	if (failures > 0)
	{
		/* the latch may arrive set: wait out the whole delay regardless */
		TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														Min(60000L, 1000L << Min(failures - 1, 6)));
		long		ms;

		while ((ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until)) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	pg_atomic_write_u32(connect_failures, failures + 1);
	BackgroundWorkerInitializeConnection(payments_database, NULL, 0);
	pg_atomic_write_u32(connect_failures, 0);

	/*
	 * The connection took the database's and the role's search_path, as a
	 * login does.  The processes run as the bootstrap superuser, and their
	 * statements name builtins unqualified (now(), count(*), =): under a
	 * search_path with pg_catalog after a schema others may CREATE in
	 * ("public, pg_catalog"), a public.now() ran as superuser in the
	 * worker's housekeeping.  Everything of the extension is named
	 * payments.x, and its functions pin their own search_path (a function's
	 * SET, of the same source, still applies).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
}

/*
 * The start of a process beside the worker (the recorder, the billing
 * process): signals, then connect once the worker has.  While
 * payments.database cannot be reached, the worker's tries (with their
 * growing wait) are the only ones in the log, and the process would have
 * nothing to do anyway.
 */
void
helper_start(pg_atomic_uint32 *connect_failures, const char *appname)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	while (pg_atomic_read_u32(&payments_shared->worker_pid) == 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	worker_connect(connect_failures);
	pgstat_report_appname(appname);
}

/*
 * Make payments.worker_lock_timeout this process's lock_timeout, now and
 * after each reload.  For the processes that record the gateway's answers
 * (the worker, the recorder): the worker drives every HTTP transfer from
 * its loop, so while one of its statements waits for a lock a caller holds
 * (a payment row, locked by an open transaction that called pay_refund,
 * say) nothing in flight is read and no merchant's work is claimed; the
 * recorder holds up the answers of every merchant in its batches.  A
 * statement that waits longer fails instead (SQLSTATE 55P03), like any
 * failed step: the answer it was recording is held and recorded again
 * shortly (worker.c).  Set as a session setting, below what a function's
 * own SET lock_timeout may choose for itself.
 */
void
limit_lock_waits(void)
{
	char		value[32];

	lock_waits_limited = true;
	snprintf(value, sizeof(value), "%d", payments_worker_lock_timeout);
	SetConfigOption("lock_timeout", value, PGC_SUSET, PGC_S_SESSION);
}

/*
 * The session settings of the worker and the recorder.
 * - synchronous_commit on, whatever the cluster, database or role sets: a
 *   claim ("sending", attempt number) must be on disk before its request
 *   leaves (DESIGN §2), and a result before anyone is told.  After an
 *   asynchronous commit a crash could forget a claim whose request the
 *   gateway had already charged, and with the card gone from the unlogged
 *   vault the operation could then only fail.  The flush also makes the
 *   caller's commit of the payment durable (it precedes the claim in the
 *   WAL).
 * - brief lock waits (limit_lock_waits): a lock a caller holds must not
 *   stop every transfer in flight or every merchant's answers.
 * - no JIT compilation.  Their statements are short; a plan estimated
 *   large (a generic plan over a big table, a set-returning function's
 *   guess) took 0.2 s to compile for 8 ms of work, with every payment
 *   waiting on the loop meanwhile.
 * - read committed, read-write transactions, whatever the database or role
 *   sets (default_transaction_isolation, default_transaction_read_only,
 *   which BackgroundWorkerInitializeConnection applies like a login does).
 *   Their statements are written for read committed: a claim skips the
 *   rows others lock and takes the rest; a recording updates the row as it
 *   is now.  Under serializable or repeatable read a claim or a recording
 *   that met a caller's concurrent update failed (40001) and the round was
 *   lost, and their reads of the queue made the callers' own serializable
 *   transactions fail more often.  A read-only default is a default any
 *   session may change, not a protection: under it every recording failed,
 *   and answers the gateway had given (charges made) waited in the
 *   worker's memory, their operations "sending", for as long as it lasted.
 * - check_function_bodies on, whatever the database or role sets: off is
 *   how the triggers tell a restore (pg_dump scripts and pg_restore turn it
 *   off), and under it the rows a superuser's process writes get no event,
 *   no audit row, and an operation is taken for one restored from a dump
 *   (possibly sent).
 */
void
background_session_settings(void)
{
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	limit_lock_waits();
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_deferrable", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("check_function_bodies", "on", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * The top of each round of a background process's loop: the round's memory
 * freed, interrupts handled, the settings reread after a reload, and the
 * time of the configuration the round goes by published in the process's
 * slot *conf_loaded_at (pay_worker_health: worker_conf_loaded_at...).
 * That time is the process's pg_conf_load_time() (PgReloadTime): when it
 * last reread the configuration files, or, never having reread them, when
 * the postmaster last loaded them before starting it.  The postmaster
 * loads its files, then signals its children: once a process's time is at
 * or past a new session's pg_conf_load_time(), it goes by the settings
 * that session sees (nothing older can be at or past it), which a count of
 * reloads read before pg_reload_conf() could not tell (an earlier reload's
 * signal, handled in between, would count too).
 */
void
loop_start(MemoryContext loop_cxt, pg_atomic_uint64 *conf_loaded_at)
{
	MemoryContextSwitchTo(loop_cxt);
	MemoryContextReset(loop_cxt);
	check_interrupts();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		if (lock_waits_limited)
			limit_lock_waits();
		cpu_scheduling_reload();
	}
	pg_atomic_write_u64(conf_loaded_at, (uint64) PgReloadTime);
}

/*
 * Register one of the extension's background processes (from _PG_init at
 * preload time): connected to a database, started once recovery is over,
 * started again a second after it exits.
 */
void
worker_register(const char *function, const char *name)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "payments", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * *plan, prepared from sql on first use and kept for the process's life
 * (SPI connected).  A kept plan is parsed once; PostgreSQL plans it again
 * when what it uses changes (and the worker's housekeeping drops every
 * plan once a minute, see housekeeping() in worker.c), instead of at every
 * call as SPI_execute_with_args does.
 */
SPIPlanPtr
worker_kept_plan(SPIPlanPtr *plan, const char *sql, int n, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, n, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "payments worker: could not prepare \"%s\"", sql);
		*plan = p;
	}
	return *plan;
}
