/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  pay_wait: block until a payment's (or a stored payment method's)
 *	  gateway work is finished.
 *
 * Sleeps on a shared condition variable that the worker broadcasts after
 * each commit of results, and re-reads the payment then (a fresh snapshot
 * per query under READ COMMITTED).  No polling loop: between broadcasts the
 * backend sleeps, waking at least once a second to honour interrupts.
 *
 * A waiting call holds its connection, and behind PostgREST the connections
 * of one pool serve every merchant: a few calls of one merchant, each
 * waiting for a refund that waits for settlement, kept everyone else's
 * requests out.  So at most payments.max_waits_per_merchant calls of one
 * merchant made over HTTP (a declared PostgREST role, or a merchant API
 * key) wait at a time (a slot per backend in shared memory says for whom
 * it waits); one more is refused at once with PT429.  A client of its own
 * connections (direct SQL) waits on them as it likes.
 *
 * A wait also ends before the statement timeout would cancel it (roles that
 * PostgREST switches to often have one): the caller gets the unfinished
 * status, as after its own timeout, and waits again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "errcodes.h"
#include "payments.h"
#include "schema_version.h"
#include "shmem.h"
#include "tenancy.h"
#include "too_many_requests.h"
#include "wait.h"

int			payments_max_waits_per_merchant = PAYMENTS_DEFAULT_MAX_WAITS_PER_MERCHANT;

/*
 * For each backend (by pgprocno): the merchant it waits for (0 if none),
 * in its database (merchant ids are per database).
 */
typedef struct WaitSlot
{
	pg_atomic_uint32 database;
	pg_atomic_uint64 merchant_id;
} WaitSlot;

static WaitSlot *waiting_for = NULL;
static int	nwaiting = 0;
static bool clear_registered = false;

PG_FUNCTION_INFO_V1(pay_wait_for_payment);
PG_FUNCTION_INFO_V1(pay_wait_for_payment_method);

/* What is waited for: a payment, or a stored payment method. */
typedef struct WaitTarget
{
	const char *what;			/* for messages */
	const char *query;			/* status, xmin, xmins of its unfinished
								 * operations; $1 merchant, $2 id */
	const char *const *busy_statuses;	/* statuses that mean "not done" */
} WaitTarget;

static const char *const payment_busy[] = {"pending", "unknown", NULL};
static const char *const method_busy[] = {"pending", "deleting", NULL};

static const WaitTarget payment_target = {
	"payment",
	"SELECT p.status, p.xmin, "
	"  ARRAY(SELECT o.xmin FROM payments.operations o "
	"        WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id "
	"          AND o.status IN ('queued', 'sending', 'unknown', 'waiting_settlement')) "
	"FROM payments.payments p WHERE p.merchant_id = $1 AND p.payment_id = $2",
	payment_busy
};

static const WaitTarget method_target = {
	"payment method",
	"SELECT m.status, m.xmin, "
	"  ARRAY(SELECT o.xmin FROM payments.operations o "
	"        WHERE o.merchant_id = m.merchant_id AND o.payment_method_id = m.payment_method_id "
	"          AND o.status IN ('queued', 'sending', 'unknown')) "
	"FROM payments.payment_methods m WHERE m.merchant_id = $1 AND m.payment_method_id = $2",
	method_busy
};

/* Room for a payment status (the longest is far shorter). */
#define STATUS_LEN 64

/*
 * Read the payment once.  Returns true when nothing is left to wait for;
 * status gets the payment's status.  Raises an error for an unknown
 * payment, and for one whose pending work this very transaction created
 * (the worker cannot see it before COMMIT, so waiting would only time out).
 * Allocates in read_cxt, which the caller resets after each read; the
 * result set is freed here.
 */
static bool
target_is_settled(const WaitTarget *target, SPIPlanPtr plan, Datum merchant_id, Datum payment_id,
				  MemoryContext read_cxt, char *status)
{
	Datum		args[2] = {merchant_id, payment_id};
	bool		isnull;
	ArrayType  *busy;
	int			nbusy;
	Datum	   *xids;
	TransactionId xmin;
	int			rc;

	/* not read-only: each execution takes a fresh snapshot */
	rc = SPI_execute_plan(plan, args, NULL, false, 1);

	/*
	 * SPI returns in its procedure context, which lives as long as the wait:
	 * what is read from the row goes where the next read frees it.
	 */
	MemoryContextSwitchTo(read_cxt);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pay_wait: SPI_execute_plan returned %d", rc);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(MAKE_SQLSTATE('P', 'T', '4', '0', '4')),
				 errmsg("%s %lld not found", target->what, (long long) DatumGetInt64(payment_id)),
				 errhint("%s ids are per merchant; check pay_current_merchant().",
						 target == &payment_target ? "Payment" : "Payment method")));

	strlcpy(status, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), STATUS_LEN);
	xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	busy = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	deconstruct_array(busy, XIDOID, sizeof(TransactionId), true, TYPALIGN_INT, &xids, NULL, &nbusy);

	for (int i = 0; i < nbusy; i++)
	{
		if (TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xids[i])) ||
			TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot wait for a %s operation created in the current transaction", target->what),
					 errdetail("The background worker starts only after the transaction that created the operation commits."),
					 errhint("COMMIT first, then call pay_wait.")));
	}
	SPI_freetuptable(SPI_tuptable);
	if (nbusy > 0)
		return false;
	for (const char *const *b = target->busy_statuses; *b; b++)
		if (strcmp(status, *b) == 0)
			return false;
	return true;
}

Size
wait_shmem_size(void)
{
	return mul_size(MaxBackends, sizeof(WaitSlot));
}

void
wait_shmem_init(void)
{
	bool		found;

	waiting_for = ShmemInitStruct("payments waits", wait_shmem_size(), &found);
	nwaiting = MaxBackends;
	if (!found)
		for (int i = 0; i < nwaiting; i++)
		{
			pg_atomic_init_u32(&waiting_for[i].database, InvalidOid);
			pg_atomic_init_u64(&waiting_for[i].merchant_id, 0);
		}
}

static WaitSlot *
my_wait_slot(void)
{
	if (waiting_for == NULL || MyProc == NULL || MyProc->pgprocno >= nwaiting)
		return NULL;
	return &waiting_for[MyProc->pgprocno];
}

/* This backend waits for no one any more (also as it exits). */
static void
stop_waiting(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	WaitSlot   *slot = my_wait_slot();

	if (slot != NULL)
		pg_atomic_write_u64(&slot->merchant_id, 0);
}

/*
 * Take a waiting slot for merchant_id, for a call over HTTP, or raise PT429
 * when the merchant already has payments.max_waits_per_merchant such calls
 * waiting in this database.  Two calls that come at once may both count
 * each other and both be refused: never both admitted beyond the limit.
 */
static void
start_waiting(int64 merchant_id)
{
	WaitSlot   *slot = my_wait_slot();
	int			waiting = 0;

	PaymentsIdentity id;

	if (slot == NULL || payments_max_waits_per_merchant <= 0)
		return;
	if (!payments_identity(&id, true) || (id.key_id == 0 && !payments_role_is_postgrest(id.role)))
		return;
	if (!clear_registered)
	{
		before_shmem_exit(stop_waiting, (Datum) 0);
		clear_registered = true;
	}
	pg_atomic_write_u32(&slot->database, MyDatabaseId);
	/* a full barrier: our slot is seen before we count the others' */
	(void) pg_atomic_exchange_u64(&slot->merchant_id, (uint64) merchant_id);
	for (int i = 0; i < nwaiting; i++)
		if (pg_atomic_read_u64(&waiting_for[i].merchant_id) == (uint64) merchant_id &&
			pg_atomic_read_u32(&waiting_for[i].database) == MyDatabaseId)
			waiting++;
	if (waiting > payments_max_waits_per_merchant)
	{
		pg_atomic_write_u64(&slot->merchant_id, 0);
		payments_refuse_too_many("too many calls of this merchant are waiting",
								 psprintf("At most %d calls of one merchant wait for results at a time (payments.max_waits_per_merchant).",
										  payments_max_waits_per_merchant),
								 "Retry after one of them returns, or call pay_wait with a timeout of 0 to read the state without waiting.",
								 0);
	}
}

/*
 * An unfinished target in a database the worker does not serve will not
 * finish: say so (a NOTICE; the answer is the status, as anywhere), and
 * wait_for returns at once there rather than hold the caller's connection
 * for its timeout.  A kept answer: no cost in the database served.
 */
static void
note_unserved(void)
{
	if (!payments_database_served())
		payments_report_unserved(NOTICE);
}

/*
 * The deadline of a wait, brought forward to end before a statement timeout
 * would cancel the statement.  PostgREST applies the settings of the role
 * it switches to (Supabase gives anon 3 s and authenticated 8 s): a wait
 * longer than that was cancelled (57014, HTTP 500), and the caller lost the
 * answer it can have, the payment as it is.  The wait ends a margin
 * earlier (a fifth of the timeout, at most 500 ms) to read the row and
 * answer; the caller waits again, as after its own timeout.
 */
static TimestampTz
before_statement_timeout(TimestampTz deadline)
{
	TimestampTz fires;
	int			margin_ms;

	if (!get_timeout_active(STATEMENT_TIMEOUT))
		return deadline;
	fires = get_timeout_finish_time(STATEMENT_TIMEOUT);
	margin_ms = Min(StatementTimeout / 5, 500);
	fires = TimestampTzPlusMilliseconds(fires, -margin_ms);
	return Min(deadline, fires);
}

/* Wait for target (merchant_id, id) until done or timeout_ms; its status. */
static Datum
wait_for(const WaitTarget *target, FunctionCallInfo fcinfo)
{
	Datum		merchant_id = PG_GETARG_DATUM(0);
	Datum		payment_id = PG_GETARG_DATUM(1);
	int32		timeout_ms = PG_GETARG_INT32(2);
	TimestampTz deadline;
	SPIPlanPtr	plan;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	char		status[STATUS_LEN];
	MemoryContext read_cxt;
	volatile bool settled = false;

	payments_require_schema();
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("pay_wait requires the READ COMMITTED isolation level"),
				 errdetail("Under REPEATABLE READ or SERIALIZABLE the transaction would never see the worker's result.")));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	deadline = before_statement_timeout(deadline);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pay_wait: SPI_connect failed");
	plan = SPI_prepare(target->query, 2, argtypes);
	if (plan == NULL)
		elog(ERROR, "pay_wait: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	/* what one read allocates, reset before the next: flat however long the wait */
	read_cxt = AllocSetContextCreate(CurrentMemoryContext, "pay_wait read",
									 ALLOCSET_SMALL_SIZES);

	/* done already (or no time to wait): read once, without a slot */
	{
		MemoryContext old = CurrentMemoryContext;

		settled = target_is_settled(target, plan, merchant_id, payment_id, read_cxt, status);
		MemoryContextSwitchTo(old);
		MemoryContextReset(read_cxt);
		/* nothing in an unserved database will finish it: no wait there */
		if (settled || timeout_ms == 0 || !payments_database_served())
		{
			SPI_finish();
			if (!settled)
				note_unserved();
			PG_RETURN_TEXT_P(cstring_to_text(status));
		}
	}

	start_waiting(DatumGetInt64(merchant_id));
	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&payments_shared->results_cv);
		for (;;)
		{
			long		remaining;
			MemoryContext old = CurrentMemoryContext;

			settled = target_is_settled(target, plan, merchant_id, payment_id, read_cxt, status);
			MemoryContextSwitchTo(old);
			MemoryContextReset(read_cxt);
			if (settled)
				break;
			remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (remaining <= 0)
				break;
			(void) ConditionVariableTimedSleep(&payments_shared->results_cv,
											   Min(remaining, 1000L), PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		stop_waiting(0, (Datum) 0);
	}
	PG_END_TRY();

	/* SPI_finish frees the SPI memory: the result is made after it, in ours */
	SPI_finish();
	if (!settled)
		note_unserved();
	PG_RETURN_TEXT_P(cstring_to_text(status));
}

/*
 * payments._wait_for_payment(merchant_id, payment_id, timeout_ms) -> status
 */
Datum
pay_wait_for_payment(PG_FUNCTION_ARGS)
{
	return wait_for(&payment_target, fcinfo);
}

/*
 * payments._wait_for_payment_method(merchant_id, payment_method_id,
 * timeout_ms) -> status
 */
Datum
pay_wait_for_payment_method(PG_FUNCTION_ARGS)
{
	return wait_for(&method_target, fcinfo);
}
