/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The payments background worker: drain the operations outbox through
 *	  the gateway, three steps per attempt.
 *
 *	  (1) claim ready operations and COMMIT them as "sending"
 *	  (2) send them, many at once, with no transaction open
 *	  (3) COMMIT the outcomes (and the exchanges) in one batch, then wake
 *	      the callers waiting in pay_wait
 *
 * A crash between (1) and (3) leaves operations in "sending"; the next
 * worker marks them "unknown" and resolves them from the gateway.  The
 * loop never blocks on one peer: it waits on the latch and every socket
 * at once, for at most a second, and resets its memory each round.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "circuit_breaker.h"
#include "errcodes.h"
#include "gateway.h"
#include "gateway_status.h"
#include "payments.h"
#include "record.h"
#include "record_queue.h"
#include "recorder.h"
#include "schema_version.h"
#include "shmem.h"
#include "cpu_scheduling.h"
#include "worker.h"
#include "worker_tx.h"

PGDLLEXPORT void payments_worker_main(Datum main_arg);

#define SLOW_CLAIM_MS	200		/* a round claiming longer yields to the
								 * loop's chores */

/* settings (payments.c defines them) */
int			payments_max_in_flight = PAYMENTS_DEFAULT_MAX_IN_FLIGHT;
int			payments_max_connections = PAYMENTS_DEFAULT_MAX_CONNECTIONS;
int			payments_claim_batch = PAYMENTS_DEFAULT_CLAIM_BATCH;
int			payments_settlement_check_s = PAYMENTS_DEFAULT_SETTLEMENT_CHECK_S;
int			payments_exchange_retention_days = PAYMENTS_DEFAULT_EXCHANGE_RETENTION_DAYS;
int			payments_idempotency_retention_hours = PAYMENTS_DEFAULT_IDEMPOTENCY_RETENTION_HOURS;
int			payments_worker_statement_timeout = PAYMENTS_DEFAULT_WORKER_STATEMENT_TIMEOUT_MS;

/*
 * What the worker changes as it runs, in one place: one instance
 * (worker_state), made ready by payments_worker_main and passed down as ws
 * to the functions below that read or change it.  The loop's own clocks
 * stay local to payments_worker_main.
 */
typedef struct WorkerState
{
	HttpEngine *engine;			/* the one HTTP engine: every transfer */
	MemoryContext inflight_cxt;	/* parent of each op's own context */
	dlist_head	finished;		/* ops whose transfer ended (or never
								 * started), to interpret and record */
	dlist_head	exchanges;		/* GatewayExchange rows to record */
	int			parked_riders;	/* lookups parked on another's search
								 * (gateway_lookup.c): in flight too */
	int			checks_in_flight;	/* settlement and review checks of the
									 * current round (check_gateway_state) */
	CircuitSet	circuits;		/* stop hammering a failing endpoint */
	char	   *schema_reported;	/* the schema version the worker said it
									 * waits on an update of (NULL: none) */
	dlist_head	unrecorded;		/* answers whose recording failed
								 * (Unrecorded), to record again */
	int			n_unrecorded;
	dlist_head	handed;			/* batches handed to the recorder
								 * (HandedBatch), oldest first */
	int			n_handed;
	dlist_head	taken_back;		/* ops of batches the recorder failed:
								 * the worker records them */
	int64		claim_after;	/* the merchant the last claim ended on:
								 * the next one's turns start after it
								 * (0: none yet) */
	bool		slow_claims;	/* a round's claims took SLOW_CLAIM_MS or
								 * more: refresh statistics soon */
	bool		claim_more;		/* a merchant took its whole share in the
								 * last claim: more may be ready though
								 * the claim took less than it could */
	int			claim_failures; /* claims that failed in a row */
	TimestampTz claim_retry_at; /* no claim before (after a failure) */
	bool		woken;			/* the latch was seen set between claims
								 * (move_transfers): a wake-up to act on */
	HTAB	   *settlement_marks;	/* merchant -> MerchantMark: what each
									 * merchant's last complete settlement
									 * check left (settlement.h) */
	uint64		settlement_round;	/* rounds of settlement checks listed */
} WorkerState;

/* A merchant's settlement mark, in a memory context of its own. */
typedef struct MerchantMark
{
	int64		merchant_id;	/* hash key */
	uint64		round;			/* the last round that listed the merchant */
	MemoryContext cxt;			/* the mark's strings (NULL: no mark yet) */
	SettlementMark mark;
} MerchantMark;

static WorkerState worker_state = {
	.finished = DLIST_STATIC_INIT(worker_state.finished),
	.exchanges = DLIST_STATIC_INIT(worker_state.exchanges),
	.unrecorded = DLIST_STATIC_INIT(worker_state.unrecorded),
	.handed = DLIST_STATIC_INIT(worker_state.handed),
	.taken_back = DLIST_STATIC_INIT(worker_state.taken_back),
};

/* Register the worker; called from _PG_init at preload time. */
void
payments_worker_register(void)
{
	worker_register("payments_worker_main", "payments worker");
}

/* Forget our identity in shared memory when we exit. */
static void
worker_on_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	pg_atomic_write_u32(&payments_shared->worker_procno, 0);
	pg_atomic_write_u32(&payments_shared->worker_pid, 0);
	pg_atomic_write_u32(&payments_shared->in_flight, 0);
	/* the answers this worker held go with it (its operations stay "sending", resolved by the next one) */
	pg_atomic_write_u32(&payments_shared->unrecorded, 0);
	pg_atomic_write_u32(&payments_shared->worker_recovered, 0);
	pg_atomic_write_u32(&payments_shared->claim_full, 0);
}

/*
 * Is the extension installed in our database, in a schema version this
 * library serves?  Checked until it is.  A schema left at another version
 * (the library was updated, ALTER EXTENSION UPDATE not yet run) is said
 * once per version, not on every check.
 */
typedef struct SchemaCheck
{
	WorkerState *ws;
	SchemaState state;
} SchemaCheck;

static void
schema_check_fn(void *arg)
{
	SchemaCheck *sc = (SchemaCheck *) arg;
	WorkerState *ws = sc->ws;
	char	   *version;
	SchemaState state;

	state = sc->state = payments_schema_state(&version);
	if (state == SCHEMA_NOT_SERVED &&
		(ws->schema_reported == NULL || strcmp(ws->schema_reported, version ? version : "") != 0))
	{
		if (ws->schema_reported)
			pfree(ws->schema_reported);
		ws->schema_reported = MemoryContextStrdup(TopMemoryContext, version ? version : "");
		ereport(LOG,
				(errcode(ERRCODE_PAY_SCHEMA_NOT_SERVED),
				 errmsg("payments worker waits: database \"%s\" has schema version %s, this library serves %s",
						payments_database, version ? version : "(none)", PAYMENTS_VERSION),
				 errhint("Run ALTER EXTENSION payments UPDATE in database \"%s\".",
						 payments_database)));
	}
}

static bool
extension_ready(WorkerState *ws)
{
	SchemaCheck sc = {.ws = ws, .state = SCHEMA_ABSENT};
	SchemaState state;

	if (!in_transaction("checking for the extension", schema_check_fn, &sc))
		return false;
	state = sc.state;
	if (state == SCHEMA_SERVED && ws->schema_reported != NULL)
	{
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("payments worker: database \"%s\" now has schema version %s, starting",
						payments_database, PAYMENTS_VERSION)));
		pfree(ws->schema_reported);
		ws->schema_reported = NULL;
	}
	return state == SCHEMA_SERVED;
}

/*
 * Operations in flight: transfers running, lookups riding on one, and
 * answers held to be recorded again (their operations are "sending").
 */
static int
ops_in_flight(WorkerState *ws)
{
	return http_engine_in_flight(ws->engine) + ws->parked_riders + ws->n_unrecorded;
}

/*
 * Whether half a claim's room is free in flight: a backlog is claimed
 * then, without waiting for a wake-up.
 */
static bool
room_for_backlog(WorkerState *ws)
{
	return payments_max_in_flight - ops_in_flight(ws) >=
		Max(1, Min(payments_claim_batch, payments_max_in_flight) / 2);
}

/*
 * Start the HTTP transfer of an op.  A setup failure counts as not sent:
 * the op joins the finished ones, to be interpreted (false).
 */
static bool
start_transfer(WorkerState *ws, GatewayOp *op)
{
	op->http.owner = op;
	if (!http_engine_add(ws->engine, &op->http, op->endpoint.url, op->endpoint.ca_file,
						 op->endpoint.timeout_ms))
	{
		op->http.outcome = HTTP_NOT_SENT;
		op->http.started_us = op->http.finished_us = now_us();
		op->http.duration_us = 0;
		dlist_push_tail(&ws->finished, &op->node);
		return false;
	}
	pg_atomic_fetch_add_u64(&payments_shared->requests_sent, 1);
	return true;
}

/*
 * A claimed operation that could not even be built: a final error, except
 * when an earlier attempt may have gone through (a lookup, or a resend):
 * then it stays unknown.  It goes on *list, to be recorded.
 */
static void
fail_unbuildable(GatewayOp *op, const char *error, dlist_head *list)
{
	if (op->stage == STAGE_LOOKUP || op->may_have_been_sent)
		gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN, error);
	else
		gateway_set_outcome(op, OUTCOME_REJECTED, error);
	op->http.outcome = HTTP_NOT_SENT;
	dlist_push_tail(list, &op->node);
}

/* A new op with its own memory context (deleted when the op is done). */
static GatewayOp *
new_op(WorkerState *ws)
{
	MemoryContext cxt = AllocSetContextCreate(ws->inflight_cxt, "payments operation",
											  ALLOCSET_SMALL_SIZES);
	GatewayOp  *op = MemoryContextAllocZero(cxt, sizeof(GatewayOp));

	op->cxt = cxt;
	return op;
}

/*
 * The breaker of an op's gateway connection: its endpoint URL, CA file and
 * timeout, as payments._gateway_connection() writes them (one merchant's
 * own CA file or timeout must not trip the breaker of everyone on the URL).
 */
static CircuitBreaker *
circuit_of(WorkerState *ws, GatewayOp *op)
{
	char	   *key = psprintf("%s\n%s\n%ld", op->endpoint.url,
							   op->endpoint.ca_file ? op->endpoint.ca_file : "",
							   op->endpoint.timeout_ms);
	CircuitBreaker *cb = circuit_for(&ws->circuits, key);

	pfree(key);
	return cb;
}

/*
 * The circuits that opened since the last claim: their merchants' due
 * operations wait for the probe (payments._park_connection), so that claims
 * do not read them over and over meanwhile.
 */
static void
park_opened_circuits(WorkerState *ws)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	int			nparks;
	CircuitBreaker **parks = circuit_parks(&ws->circuits, &nparks);

	for (int i = 0; i < nparks; i++)
	{
		Datum		args[2];
		bool		isnull;
		int32		parked;

		/* a little before the probe may go, for the clocks of claim and worker */
		args[0] = CStringGetTextDatum(parks[i]->key);
		args[1] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(parks[i]->open_until, -200));
		if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._park_connection($1, $2)", 2, types),
							 args, NULL, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "payments worker: parking the operations of a failing gateway failed");
		parked = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (!isnull && parked > 0)
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker: %d operations wait for the probe of the failing gateway at %s",
							parked, circuit_host(parks[i]))));
	}
}

/*
 * One call of the claim with the first four of args and nulls (of five: the
 * merchant to take turns after is set here); each row claimed is built into
 * an op (claim_into).
 */
static int
claim_rows(WorkerState *ws, Datum *args, char *nulls, dlist_head *to_send, dlist_head *unbuildable)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {INT4OID, INT4OID, TEXTARRAYOID, TEXTOID, INT8OID};

	args[4] = Int64GetDatum(ws->claim_after);
	nulls[4] = ws->claim_after > 0 ? ' ' : 'n';
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT * FROM payments._claim_operations($1, $2, $3, $4, $5)", 5, argtypes),
						 args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: claiming operations failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		GatewayOp  *op = new_op(ws);
		MemoryContext old = MemoryContextSwitchTo(op->cxt);
		char	   *error = NULL;
		bool		isnull;

		/* rows come in the order of turns: the next claim goes on after the last */
		ws->claim_after = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		if (DatumGetBool(SPI_getbinval(tuple, desc, SPI_fnumber(desc, "more_ready"), &isnull)))
			ws->claim_more = true;
		dlist_push_tail(to_send, &op->node);
		op->created_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, SPI_fnumber(desc, "created_at"),
														   &isnull));
		op->may_have_been_sent = !DatumGetBool(SPI_getbinval(tuple, desc, SPI_fnumber(desc, "never_sent"),
															 &isnull));
		if (!gateway_build_operation(op, tuple, desc, &error))
		{
			dlist_delete(&op->node);
			fail_unbuildable(op, error, unbuildable);
		}
		MemoryContextSwitchTo(old);
	}
	return (int) SPI_processed;
}

/*
 * Step 1 inside an open transaction: claim up to n operations (they become
 * "sending" when it commits) and build their requests into *to_send; those
 * that cannot be built go on *unbuildable, to be recorded once the claim
 * has committed.  Should an ERROR escape, every op built so far is on one
 * of the lists, for the caller to free.  Returns how many were claimed.
 */
static int
claim_into(WorkerState *ws, int n, dlist_head *to_send, dlist_head *unbuildable)
{
	/*
	 * A billing run's charges (background) fill the requests in flight up
	 * to one claim's worth, ordinary operations up to max_in_flight: a
	 * backlog of renewals queued by pg_cron jobs can make the pipeline no
	 * deeper than that, and a checkout's purchase, claimed first, waits for
	 * no more than one round behind it.
	 */
	int			nheld;
	int			nprobes;
	char	  **probes;
	char	  **held;
	Datum	   *held_texts;
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			claimed = 0;

	ws->claim_more = false;
	park_opened_circuits(ws);
	held = circuit_held(&ws->circuits, &nheld, &probes, &nprobes);

	/*
	 * First one operation for each connection whose circuit's open time is
	 * up, its probe (before the others take the room: under load it would
	 * never go), background ones too
	 */
	args[1] = (Datum) 0;
	nulls[1] = 'n';
	args[2] = PointerGetDatum(construct_empty_array(TEXTOID));
	for (int i = 0; i < nprobes && claimed < n; i++)
	{
		args[0] = Int32GetDatum(1);
		args[3] = CStringGetTextDatum(probes[i]);
		claimed += claim_rows(ws, args, nulls, to_send, unbuildable);
	}
	/* then the rest, leaving out every connection whose circuit is not closed */
	if (claimed >= n)
		return claimed;
	held_texts = palloc(sizeof(Datum) * Max(nheld, 1));
	for (int i = 0; i < nheld; i++)
		held_texts[i] = CStringGetTextDatum(held[i]);
	args[0] = Int32GetDatum(n - claimed);
	args[1] = Int32GetDatum(Max(0, Min(payments_claim_batch, payments_max_in_flight) - ops_in_flight(ws)));
	nulls[1] = ' ';
	args[2] = PointerGetDatum(construct_array(held_texts, nheld, TEXTOID, -1, false, TYPALIGN_INT));
	args[3] = (Datum) 0;
	nulls[3] = 'n';
	return claimed + claim_rows(ws, args, nulls, to_send, unbuildable);
}

/*
 * Step 1 for credentials checks (pay_configure_gateway(verify => true)):
 * claim them into *to_send, built as authenticateTestRequests.
 */
static void
claim_verifications(WorkerState *ws, dlist_head *to_send)
{
	static SPIPlanPtr plan = NULL;
	static TimestampTz last = 0;
	Datum		arg = Int32GetDatum(16);
	Oid			argtype = INT4OID;
	TimestampTz now = GetCurrentTimestamp();

	/*
	 * At most once a second: a check waits that long at worst, and the
	 * rounds of a steady load (hundreds a second, each with a claim) do not
	 * each run a statement that nearly always finds nothing.
	 */
	if (!TimestampDifferenceExceeds(last, now, 1000))
		return;
	last = now;
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT * FROM payments._claim_verifications($1)", 1, &argtype),
						 &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: claiming credentials checks failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		GatewayOp  *op = new_op(ws);
		MemoryContext old = MemoryContextSwitchTo(op->cxt);
		bool		isnull;

		op->merchant_id = pg_strtoint64(SPI_getvalue(t, d, 1));
		op->created_at = DatumGetTimestampTz(SPI_getbinval(t, d, 2, &isnull));
		op->endpoint.login_id = SPI_getvalue(t, d, 3);
		op->endpoint.transaction_key = SPI_getvalue(t, d, 4);
		op->endpoint.url = SPI_getvalue(t, d, 5);
		op->endpoint.ca_file = SPI_getvalue(t, d, 6);
		op->endpoint.timeout_ms = pg_strtoint32(SPI_getvalue(t, d, 7));
		op->kind = "verification";
		if (gateway_build_verification(op))
			dlist_push_tail(to_send, &op->node);
		else
			MemoryContextDelete(op->cxt);	/* sent again after 15 minutes */
		MemoryContextSwitchTo(old);
	}
}

#define MAX_LOOKUP_DRIVERS 64		/* merchants sharing lookups per claim */

static int
by_operation_id(const void *a, const void *b)
{
	int64		x = (*(GatewayOp *const *) a)->operation_id;
	int64		y = (*(GatewayOp *const *) b)->operation_id;

	return (x > y) - (x < y);
}

/*
 * The lookups among the claimed ops ride on one search per merchant
 * (gateway_lookup.c): the oldest operation drives it, unless a rider's
 * batch range would not fit, when it drives a search of its own.  Riders
 * leave *to_send.
 */
static void
group_lookups(WorkerState *ws, dlist_head *to_send)
{
	dlist_iter	iter;
	GatewayOp **lookups;
	GatewayOp  *drivers[MAX_LOOKUP_DRIVERS];
	int			nlookups = 0;
	int			ndrivers = 0;

	dlist_foreach(iter, to_send)
		if (dlist_container(GatewayOp, node, iter.cur)->stage == STAGE_LOOKUP)
			nlookups++;
	if (nlookups < 2)
		return;
	lookups = palloc(sizeof(GatewayOp *) * nlookups);
	nlookups = 0;
	dlist_foreach(iter, to_send)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, iter.cur);

		if (op->stage == STAGE_LOOKUP)
			lookups[nlookups++] = op;
	}
	qsort(lookups, nlookups, sizeof(GatewayOp *), by_operation_id);
	for (int i = 0; i < nlookups; i++)
	{
		GatewayOp  *op = lookups[i];
		bool		rides = false;

		for (int d = 0; d < ndrivers && !rides; d++)
			rides = drivers[d]->merchant_id == op->merchant_id &&
				gateway_lookup_ride(drivers[d], op);
		if (rides)
			ws->parked_riders++;
		else if (ndrivers < MAX_LOOKUP_DRIVERS)
			drivers[ndrivers++] = op;
	}
	pfree(lookups);
}

/* Step 2 begins only once "sending" is durable: start the transfers. */
static void
send_claimed(WorkerState *ws, dlist_head *to_send)
{
	dlist_mutable_iter it;

	group_lookups(ws, to_send);
	dlist_foreach_modify(it, to_send)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

		dlist_delete(&op->node);
		if (!gateway_op_is_check(op) && op->endpoint.url != NULL)
			circuit_sent(&ws->circuits, circuit_of(ws, op));
		start_transfer(ws, op);
	}
}

/*
 * Start or record the riders a lookup settled when it ended: those found
 * (their confirmation), the rest (as unknown).  False when a transfer
 * could not start (it is among the finished, to be interpreted as not
 * sent).
 */
static bool
start_released(WorkerState *ws, GatewayOp *op)
{
	bool		started = true;

	if (op->done)
		gateway_release_riders(op);
	while (!dlist_is_empty(&op->lookup.released))
	{
		GatewayOp  *next = dlist_container(GatewayOp, node,
										   dlist_pop_head_node(&op->lookup.released));

		ws->parked_riders--;
		if (next->done)
			dlist_push_tail(&ws->finished, &next->node);
		else if (!start_transfer(ws, next))
			started = false;
	}
	return started;
}

/* Free ops, wiping their request bodies. */
static void
free_ops(dlist_head *ops)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, ops)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

		dlist_delete(&op->node);
		http_request_release(&op->http);
		MemoryContextDelete(op->cxt);
	}
}

/* Move every op of *from to the end of the finished list. */
static void
to_finished(WorkerState *ws, dlist_head *from)
{
	while (!dlist_is_empty(from))
		dlist_push_tail(&ws->finished, dlist_pop_head_node(from));
}

/* What one round's transaction claims (step 1) beside recording (step 3). */
typedef struct RoundClaim
{
	WorkerState *ws;
	int			limit;			/* 0: claim nothing */
	int			claimed;
	dlist_head	to_send;
	dlist_head	unbuildable;
} RoundClaim;

static void
claim_fn(void *arg)
{
	RoundClaim *rc = (RoundClaim *) arg;

	rc->claimed = claim_into(rc->ws, rc->limit, &rc->to_send, &rc->unbuildable);
}

/*
 * Step 1 in a transaction of its own, then step 2.  Returns how many were
 * claimed, -1 when the claim failed (it rolled back: those operations are
 * still queued).
 */
static int
claim_and_send(WorkerState *ws, int n)
{
	RoundClaim	rc = {.ws = ws, .limit = n};

	dlist_init(&rc.to_send);
	dlist_init(&rc.unbuildable);
	if (!in_transaction("claiming operations", claim_fn, &rc))
	{
		free_ops(&rc.to_send);
		free_ops(&rc.unbuildable);
		return -1;
	}
	to_finished(ws, &rc.unbuildable);
	send_claimed(ws, &rc.to_send);
	return rc.claimed;
}

/*
 * Empty the exchange list, freeing each entry and its copy of the reply at
 * once: an op in a long lookup would otherwise keep one per page it read.
 */
static void
release_exchanges(WorkerState *ws)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &ws->exchanges)
	{
		GatewayExchange *ex = dlist_container(GatewayExchange, node, it.cur);

		dlist_delete(&ex->node);
		if (ex->response_masked)
			pfree(ex->response_masked);
		if (ex->transport_error)
			pfree(ex->transport_error);
		pfree(ex);
	}
}

/*
 * One transaction per round: record the exchanges and the finished
 * operations, then claim.  The claim decides between a resend and a lookup
 * on the clock, not on the transaction's start, so time spent recording
 * (waiting for a payment row a caller holds, say) cannot carry a resend
 * past the duplicate window.
 */
static void
record_and_claim(void *arg)
{
	RoundClaim *rc = (RoundClaim *) arg;

	record_batch(&rc->ws->exchanges, &rc->ws->finished);
	if (rc->limit > 0)
	{
		rc->claimed = claim_into(rc->ws, rc->limit, &rc->to_send, &rc->unbuildable);
		claim_verifications(rc->ws, &rc->to_send);
	}
}

static void
record_exchanges_fn(void *arg)
{
	record_exchanges((dlist_head *) arg);
}

static void
record_op_fn(void *arg)
{
	GatewayOp  *op = (GatewayOp *) arg;

	gateway_status_note(&op, 1);
	record_op(op);
}

/*
 * Interpret one finished transfer and start its follow-up, if any.  False
 * when the follow-up could not start (the op is back among the finished,
 * to be interpreted again as not sent).
 */
static bool
interpret_one(WorkerState *ws, GatewayOp *op)
{
	MemoryContext old = MemoryContextSwitchTo(op->cxt);
	bool		follow_up = false;
	bool		started = true;
	GatewayExchange *ex;

	histogram_observe(&payments_shared->gateway_latency, op->http.duration_us);
	ex = gateway_interpret(op, &follow_up);
	dlist_push_tail(&ws->exchanges, &ex->node);
	if (!gateway_op_is_check(op) && op->endpoint.url != NULL)
		circuit_record(&ws->circuits, circuit_of(ws, op), gateway_transport_failed(op));
	if (op->http.outcome != HTTP_COMPLETED)
		pg_atomic_fetch_add_u64(&payments_shared->transport_failures, 1);
	if (follow_up)
	{
		/* gateway_interpret put the next request in op->http */
		dlist_delete(&op->node);
		started = start_transfer(ws, op);
	}
	else
	{
		op->done = true;
		/* never record an op without an outcome as anything but unknown */
		if (op->result.outcome == OUTCOME_NONE && !gateway_op_is_check(op))
			gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN, NULL);
	}
	MemoryContextSwitchTo(old);
	return start_released(ws, op) && started;
}

/* The transfers curl has finished join the finished ops, to be interpreted. */
static void
collect_done(WorkerState *ws)
{
	HttpRequest *req;

	while ((req = http_engine_next_done(ws->engine)) != NULL)
	{
		GatewayOp  *op = (GatewayOp *) req->owner;

		dlist_push_tail(&ws->finished, &op->node);
	}
}

/*
 * Move the transfers along between the claims of one round, without
 * waiting.  curl connects, shakes hands and sends only when called, and a
 * round of claims under a burst (hundreds of operations) ran for up to
 * SLOW_CLAIM_MS: the requests handed over by its first claims sat
 * unconnected, TLS handshakes half done, until it ended, so round trips of
 * 100 ms took a second and new requests queued for the connections they
 * held.  Replies are collected for the next round; a wake-up is kept.
 */
static void
move_transfers(WorkerState *ws)
{
	bool		latch_set;

	http_engine_wait(ws->engine, 0, &latch_set);
	if (latch_set)
		ws->woken = true;
	collect_done(ws);
}

/* Interpret finished transfers, outside any transaction; start follow-ups. */
static void
interpret_finished(WorkerState *ws)
{
	dlist_mutable_iter it;
	bool		again;

	collect_done(ws);
	/* a follow-up that could not start comes back at the end: go again */
	do
	{
		again = false;
		dlist_foreach_modify(it, &ws->finished)
		{
			GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

			/* skip those that could not be built, or were interpreted already */
			if (!op->done && !interpret_one(ws, op))
				again = true;
		}
	} while (again);
}

/*
 * An outcome that cannot be recorded (the server log says why) must not
 * leave its operation "sending" with nobody to pick it up: record it as
 * unknown instead, to be asked again (and to reach the dead letters when
 * its attempts run out).  False when even that fails; the op keeps its
 * answer then, to be recorded again.
 */
static bool
record_as_unknown(GatewayOp *op)
{
	GatewayOutcome answer = op->result;
	MemoryContext old;
	bool		ok;

	if (gateway_op_is_check(op) || op->stage == STAGE_VERIFY)
		return true;			/* nothing to record; checked again later */
	old = MemoryContextSwitchTo(op->cxt);
	gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN,
							  "the gateway's answer could not be recorded (the server log says why)");
	MemoryContextSwitchTo(old);
	ok = in_transaction("recording an outcome as unknown", record_op_fn, op);
	if (ok)
		record_count(op);
	else
		op->result = answer;
	return ok;
}

/*
 * The results of these ops are durable: wake the pay_wait callers and free
 * the ops.
 */
static void
results_committed(dlist_head *ops)
{
	if (dlist_is_empty(ops))
		return;
	results_published();
	free_ops(ops);
}

/* The delay before try number failures + 1 of a step that failed. */
static TimestampTz
backoff_until(int failures)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									   Min(30000, 250 << Min(failures, 7)));
}

/*
 * An op whose answer could not be recorded, held by the worker (in the
 * op's memory): its operation stays "sending" in the table, which no claim
 * takes; the worker records the answer again after a growing delay, and
 * from the UNRECORDED_TRIES-th failure on, falls back to recording it as
 * unknown (resolved from the gateway, never resent blindly), unless the
 * last try only met a lock someone holds (the row is fine: it waits).  A
 * worker that stops meanwhile leaves it to _recover_in_flight at the next
 * start.
 */
#define UNRECORDED_TRIES 3

typedef struct Unrecorded
{
	dlist_node	node;
	GatewayOp  *op;
	int			failures;		/* recording tries that failed */
	TimestampTz retry_at;
} Unrecorded;

static void
hold_unrecorded(WorkerState *ws, GatewayOp *op)
{
	Unrecorded *u;

	if (gateway_op_is_check(op) || op->stage == STAGE_VERIFY)
	{
		/*
		 * Nothing is "sending": the check runs again on its next turn (a
		 * credentials check left "sending" is sent again after a while).
		 */
		if (gateway_op_is_check(op))
			ws->checks_in_flight--;
		http_request_release(&op->http);
		MemoryContextDelete(op->cxt);
		return;
	}
	u = MemoryContextAllocZero(op->cxt, sizeof(Unrecorded));
	u->op = op;
	u->failures = 1;
	u->retry_at = backoff_until(0);
	dlist_push_tail(&ws->unrecorded, &u->node);
	ws->n_unrecorded++;
	pg_atomic_write_u32(&payments_shared->unrecorded, (uint32) ws->n_unrecorded);
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("payments worker: could not record the outcome of operation %lld of merchant %lld",
					(long long) op->operation_id, (long long) op->merchant_id),
			 errdetail("The operation stays \"sending\"; the worker keeps the gateway's answer and records it again shortly.")));
}

/* Record again the held answers that are due; wake the waiting callers. */
static void
retry_unrecorded(WorkerState *ws)
{
	dlist_mutable_iter it;
	dlist_head	recorded;
	TimestampTz now = GetCurrentTimestamp();

	dlist_init(&recorded);
	dlist_foreach_modify(it, &ws->unrecorded)
	{
		Unrecorded *u = dlist_container(Unrecorded, node, it.cur);
		GatewayOp  *op = u->op;
		bool		ok;

		if (u->retry_at > now)
			continue;
		ok = in_transaction("recording an outcome again", record_op_fn, op);
		if (ok)
			record_count(op);
		else if (u->failures >= UNRECORDED_TRIES && !last_failure_was_lock())
		{
			/* not for a lock: "unknown" needs the same row, and waiting works */
			ok = record_as_unknown(op);
		}
		if (!ok)
		{
			u->retry_at = backoff_until(u->failures++);
			continue;
		}
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("payments worker: recorded the outcome of operation %lld of merchant %lld (%s) after %d failed tries",
						(long long) op->operation_id, (long long) op->merchant_id,
						gateway_outcome_name(op->result.outcome), u->failures)));
		dlist_delete(&u->node);
		ws->n_unrecorded--;
		pg_atomic_write_u32(&payments_shared->unrecorded, (uint32) ws->n_unrecorded);
		dlist_push_tail(&recorded, &op->node);
	}
	results_committed(&recorded);
}

static void keep_settlement_mark(WorkerState *ws, GatewayOp *op);

/* The checks among the finished ops end their round (check_gateway_state). */
static void
count_finished_checks(WorkerState *ws)
{
	dlist_iter	iter;

	dlist_foreach(iter, &ws->finished)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, iter.cur);

		if (gateway_op_is_check(op))
		{
			ws->checks_in_flight--;
			keep_settlement_mark(ws, op);
		}
	}
}

/*
 * A batch of final answers handed to the recorder (recorder.c), kept until
 * it says what became of them: the ops, to count and free, or to record
 * here when the recorder failed them; and the batch's bytes, to record
 * them here whole when the recorder went away before saying.
 */
typedef struct HandedBatch
{
	dlist_node	node;
	uint64		batch_id;
	uint32		generation;		/* of the recorder it was handed to */
	dlist_head	ops;
	StringInfoData data;
} HandedBatch;

/*
 * Whether the recorder may take op: an answer record_by_recorder allows, of
 * a merchant with no account error among the finished (the note weighs
 * such a merchant's answers together: an accepted request in the same
 * round outweighs the error).
 */
static bool
recorder_takes(GatewayOp *op, const int64 *failed, int nfailed)
{
	for (int i = 0; i < nfailed; i++)
		if (failed[i] == op->merchant_id)
			return false;
	return record_by_recorder(op);
}

/*
 * Hand the finished ops the recorder may record, with every exchange
 * waiting, to the recorder: unless they are fewer than
 * payments.recorder_min_batch, it is off, not running, or has
 * RECORD_QUEUE_BATCHES unanswered, or the queue has no room (then the
 * worker records them in this round, as always).
 */
static void
hand_off(WorkerState *ws)
{
	uint32		generation;
	HandedBatch *b;
	dlist_iter	iter;
	dlist_mutable_iter it;
	MemoryContext old;
	int			n = 0;
	int64		failed[16];
	int			nfailed = 0;

	if (!payments_recorder_enabled || ws->n_handed >= RECORD_QUEUE_BATCHES ||
		(generation = record_queue_recorder()) == 0)
		return;
	dlist_foreach(iter, &ws->finished)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, iter.cur);

		if (op->account != ACCOUNT_FAILED)
			continue;
		if (nfailed == (int) lengthof(failed))
			return;
		failed[nfailed++] = op->merchant_id;
	}
	/* counted first: most rounds are too small, and leave the list as it is */
	dlist_foreach(iter, &ws->finished)
		n += recorder_takes(dlist_container(GatewayOp, node, iter.cur), failed, nfailed);
	if (n == 0 || n < payments_recorder_min_batch)
		return;

	b = MemoryContextAllocZero(ws->inflight_cxt, sizeof(HandedBatch));
	dlist_init(&b->ops);
	dlist_foreach_modify(it, &ws->finished)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

		if (!recorder_takes(op, failed, nfailed))
			continue;
		dlist_delete(&op->node);
		dlist_push_tail(&b->ops, &op->node);
	}
	old = MemoryContextSwitchTo(ws->inflight_cxt);
	initStringInfo(&b->data);
	MemoryContextSwitchTo(old);
	record_batch_serialize(&ws->exchanges, &b->ops, &b->data);
	if (!record_queue_put(generation, &b->batch_id, b->data.data, b->data.len))
	{
		to_finished(ws, &b->ops);
		pfree(b->data.data);
		pfree(b);
		return;
	}
	release_exchanges(ws);
	b->generation = generation;
	dlist_push_tail(&ws->handed, &b->node);
	ws->n_handed++;
}

static void
record_handed_fn(void *arg)
{
	HandedBatch *b = (HandedBatch *) arg;

	(void) record_serialized(b->data.data, b->data.len, false);
}

static void
record_handed_exchanges_fn(void *arg)
{
	HandedBatch *b = (HandedBatch *) arg;

	(void) record_serialized(b->data.data, b->data.len, true);
}

/*
 * What became of the batches handed to the recorder, oldest first (it
 * records them in order): those it recorded are counted and freed; the
 * ops of those it failed are recorded by the worker, one by one if need
 * be (finish_round); a batch left when the recorder stopped, or started
 * again, is recorded here as it was (an operation recorded already is
 * left alone, as any no longer "sending").
 */
static void
collect_handed(WorkerState *ws)
{
	uint32		generation = record_queue_recorder();
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &ws->handed)
	{
		HandedBatch *b = dlist_container(HandedBatch, node, it.cur);
		BatchFate	fate = record_queue_fate(b->batch_id);
		bool		recorded;

		if (fate == BATCH_PENDING && b->generation == generation)
			break;
		if (fate == BATCH_PENDING)
		{
			recorded = in_transaction("recording outcomes the recorder left", record_handed_fn, b);
			if (recorded)
			{
				results_published();
				ereport(LOG,
						(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
						 errmsg("payments worker: recorded a batch of outcomes the recorder left (batch %llu)",
								(unsigned long long) b->batch_id)));
			}
			else
				(void) in_transaction("recording the exchanges the recorder left",
									  record_handed_exchanges_fn, b);
		}
		else
			recorded = fate == BATCH_RECORDED;
		dlist_delete(&b->node);
		ws->n_handed--;
		if (recorded)
		{
			dlist_iter	oi;

			dlist_foreach(oi, &b->ops)
				record_count(dlist_container(GatewayOp, node, oi.cur));
			free_ops(&b->ops);
		}
		else
		{
			while (!dlist_is_empty(&b->ops))
				dlist_push_tail(&ws->taken_back, dlist_pop_head_node(&b->ops));
		}
		pfree(b->data.data);
		pfree(b);
	}
}

/*
 * One round of steps 3 and 1: commit the outcomes and exchanges of the
 * finished operations and, when a claim is due, claim new operations, in
 * one transaction (one commit where there would be two); then wake the
 * callers waiting for the results and start the new transfers.  When that
 * transaction fails, the outcomes are recorded one by one (one bad row must
 * not hold back the others; one that fails is held, see hold_unrecorded)
 * and the claim runs on its own.  A claim that fails backs off.  Returns
 * true when claiming stopped at the room in flight while more was ready,
 * or a claim was due with no room at all (a backlog, perhaps: the next
 * claim need not wait for a wake-up).
 */
static bool
finish_round(WorkerState *ws, bool claim_due)
{
	TimestampTz round_start = GetCurrentTimestamp();
	RoundClaim	rc;
	dlist_iter	iter;
	int			capacity = 0;
	bool		had_finished;
	bool		ok;

	/* the recorder's share first; what it failed, the worker records */
	hand_off(ws);
	to_finished(ws, &ws->taken_back);
	had_finished = !dlist_is_empty(&ws->finished);

	if (claim_due)
		capacity = payments_max_in_flight - ops_in_flight(ws);
	rc.ws = ws;
	rc.limit = Min(capacity, payments_claim_batch);
	rc.claimed = 0;
	dlist_init(&rc.to_send);
	dlist_init(&rc.unbuildable);
	if (!had_finished && dlist_is_empty(&ws->exchanges) && rc.limit <= 0)
		return claim_due;		/* no room: see below */

	ok = in_transaction(had_finished ? "recording outcomes" : "claiming operations",
						record_and_claim, &rc);
	/*
	 * The exchanges of a failed round go on their own: an outcome that waits
	 * (held) does not take its request out of the log.  Best effort: not
	 * tried again.
	 */
	if (!ok && !dlist_is_empty(&ws->exchanges))
		(void) in_transaction("recording exchanges", record_exchanges_fn, &ws->exchanges);
	release_exchanges(ws);
	/* for the billing process: a full claim means more is ready than sent */
	if (rc.limit > 0)
		pg_atomic_write_u32(&payments_shared->claim_full,
							ok && (rc.claimed >= rc.limit || ws->claim_more));
	if (ok)
	{
		dlist_foreach(iter, &ws->finished)
			record_count(dlist_container(GatewayOp, node, iter.cur));
		if (rc.limit > 0)
			ws->claim_failures = 0;
	}
	else
	{
		dlist_mutable_iter it;

		/* the claim rolled back with the rest: those operations are still queued */
		free_ops(&rc.to_send);
		free_ops(&rc.unbuildable);
		rc.claimed = 0;
		dlist_foreach_modify(it, &ws->finished)
		{
			GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

			if (in_transaction("recording an outcome", record_op_fn, op))
				record_count(op);
			else
			{
				dlist_delete(&op->node);
				hold_unrecorded(ws, op);
			}
		}
	}

	/* the results are durable: wake pay_wait callers, free the ops */
	count_finished_checks(ws);
	results_committed(&ws->finished);
	/* claimed but unbuildable: recorded in the next round */
	to_finished(ws, &rc.unbuildable);
	send_claimed(ws, &rc.to_send);

	/*
	 * No room to claim in: what is ready (a backlog, perhaps) waits for room,
	 * to be claimed as soon as some frees up.  Taken for "nothing more", a
	 * wake-up while the pipeline was full left a backlog to the one-second
	 * timer.
	 */
	if (claim_due && rc.limit <= 0)
		return true;
	/* a full claim: more may be ready, in transactions of their own */
	capacity -= rc.claimed;
	if (!claim_due || (ok && rc.claimed < rc.limit && !ws->claim_more))
		return false;
	while (capacity > 0)
	{
		int			want = Min(capacity, payments_claim_batch);
		int			got;

		move_transfers(ws);

		/*
		 * Claims that take long (plans made on a young table's statistics)
		 * go on in the next round: first the loop's chores, among them the
		 * statistics that mend those plans.  Four claims of 1.5 s each held
		 * them off for six seconds.
		 */
		if (TimestampDifferenceExceeds(round_start, GetCurrentTimestamp(), SLOW_CLAIM_MS))
		{
			ws->slow_claims = true;
			return true;
		}
		got = claim_and_send(ws, want);

		if (got < 0)
		{
			/* not again until the delay has passed */
			ws->claim_retry_at = backoff_until(ws->claim_failures++);
			return false;
		}
		ws->claim_failures = 0;
		capacity -= got;
		if (got < want && !ws->claim_more)
			return false;
	}
	/* stopped by the room in flight while more was ready */
	return capacity <= 0;
}

/*
 * A check op of one merchant, from a candidate row's gateway columns, put
 * on the list before anything can raise (the list is freed if the listing
 * transaction fails).
 */
static GatewayOp *
new_check_op(WorkerState *ws, HeapTuple t, TupleDesc d, dlist_head *to_send)
{
	GatewayOp  *op = new_op(ws);
	MemoryContext old;

	dlist_push_tail(to_send, &op->node);
	old = MemoryContextSwitchTo(op->cxt);

	op->merchant_id = pg_strtoint64(SPI_getvalue(t, d, SPI_fnumber(d, "merchant_id")));
	op->endpoint.login_id = SPI_getvalue(t, d, SPI_fnumber(d, "api_login_id"));
	op->endpoint.transaction_key = SPI_getvalue(t, d, SPI_fnumber(d, "transaction_key"));
	op->endpoint.url = SPI_getvalue(t, d, SPI_fnumber(d, "endpoint_url"));
	op->endpoint.ca_file = SPI_getvalue(t, d, SPI_fnumber(d, "ca_file"));
	op->endpoint.timeout_ms = pg_strtoint32(SPI_getvalue(t, d, SPI_fnumber(d, "timeout_ms")));
	op->created_at = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	return op;
}

#define SETTLEMENT_CANDIDATES	5000	/* captures checked per round and
										 * merchant, oldest first: listing
										 * 200,000 at once held the loop
										 * (every payment) for 0.6 s */
#define REVIEW_CANDIDATES		500 /* held payments (and as many held
										 * refunds) checked per round */

/*
 * One settlement check per merchant with captures the database has not
 * seen settle (payments._settlement_candidates, ordered by merchant): the
 * batch lists since the oldest of them, or, for those the merchant's last
 * complete check did not find, since that check (its mark, kept in
 * ws->settlement_marks: settlement.c).
 */
static void
settlement_checks(WorkerState *ws, dlist_head *to_send)
{
	Datum		arg = Int32GetDatum(SETTLEMENT_CANDIDATES);
	Oid			argtype = INT4OID;
	uint64		i = 0;
	int			f_merchant, f_trans, f_created;
	HASH_SEQ_STATUS seq;
	MerchantMark *mm;

	if (ws->settlement_marks == NULL)
	{
		HASHCTL		ctl = {.keysize = sizeof(int64), .entrysize = sizeof(MerchantMark)};

		ws->settlement_marks = hash_create("payments settlement marks", 64, &ctl,
										   HASH_ELEM | HASH_BLOBS);
	}
	ws->settlement_round++;
	if (SPI_execute_with_args("SELECT * FROM payments._settlement_candidates($1)", 1, &argtype,
							  &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: listing settlement candidates failed");
	f_merchant = SPI_fnumber(SPI_tuptable->tupdesc, "merchant_id");
	f_trans = SPI_fnumber(SPI_tuptable->tupdesc, "gateway_trans_id");
	f_created = SPI_fnumber(SPI_tuptable->tupdesc, "created_at");
	while (i < SPI_processed)
	{
		TupleDesc	d = SPI_tuptable->tupdesc;
		GatewayOp  *op = new_check_op(ws, SPI_tuptable->vals[i], d, to_send);
		MemoryContext old = MemoryContextSwitchTo(op->cxt);
		bool		built;
		uint64		first = i;
		char	  **ids;
		TimestampTz *created;
		bool		isnull;
		bool		found;

		op->kind = "settlement";
		while (i < SPI_processed &&
			   DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], d, f_merchant, &isnull)) == op->merchant_id)
			i++;
		ids = palloc(sizeof(char *) * (i - first));
		created = palloc(sizeof(TimestampTz) * (i - first));
		for (uint64 k = first; k < i; k++)
		{
			TimestampTz c = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[k], d, f_created,
															  &isnull));

			ids[k - first] = SPI_getvalue(SPI_tuptable->vals[k], d, f_trans);
			created[k - first] = isnull ? GetCurrentTimestamp() : c;
		}
		mm = hash_search(ws->settlement_marks, &op->merchant_id, HASH_ENTER, &found);
		if (!found)
			mm->cxt = NULL;
		mm->round = ws->settlement_round;
		built = gateway_build_settlement_scan(op, ids, created, (int) (i - first),
											  mm->cxt != NULL ? &mm->mark : NULL);
		MemoryContextSwitchTo(old);
		if (!built)
		{
			dlist_delete(&op->node);
			MemoryContextDelete(op->cxt);
		}
	}
	/* the marks of merchants with nothing left to look for go */
	hash_seq_init(&seq, ws->settlement_marks);
	while ((mm = hash_seq_search(&seq)) != NULL)
	{
		if (mm->round == ws->settlement_round)
			continue;
		if (mm->cxt != NULL)
			MemoryContextDelete(mm->cxt);
		hash_search(ws->settlement_marks, &mm->merchant_id, HASH_REMOVE, NULL);
	}
}

/*
 * A settlement check ended: the mark it leaves replaces its merchant's
 * (a check cut short leaves the last one, still true).
 */
static void
keep_settlement_mark(WorkerState *ws, GatewayOp *op)
{
	MerchantMark *mm;
	MemoryContext cxt;

	if (op->stage != STAGE_SETTLEMENT || op->settlement == NULL || ws->settlement_marks == NULL)
		return;
	mm = hash_search(ws->settlement_marks, &op->merchant_id, HASH_FIND, NULL);
	if (mm == NULL)
		return;
	cxt = AllocSetContextCreate(TopMemoryContext, "payments settlement mark", ALLOCSET_SMALL_SIZES);
	if (!settlement_check_mark(op->settlement, cxt, &mm->mark))
	{
		MemoryContextDelete(cxt);
		return;
	}
	if (mm->cxt != NULL)
		MemoryContextDelete(mm->cxt);
	mm->cxt = cxt;
}

/*
 * One review check per payment held for review (payments._review_candidates)
 * and per refund held for review (payments._refund_review_candidates: its
 * operation_id says which the check is about).
 */
static void
review_checks(WorkerState *ws, dlist_head *to_send)
{
	static const char *const queries[] = {
		"SELECT *, NULL::bigint AS operation_id FROM payments._review_candidates($1)",
		"SELECT *, 'refund' AS kind FROM payments._refund_review_candidates($1)"
	};
	Datum		arg = Int32GetDatum(REVIEW_CANDIDATES);
	Oid			argtype = INT4OID;

	for (size_t q = 0; q < lengthof(queries); q++)
	{
		if (SPI_execute_with_args(queries[q], 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "payments worker: listing payments and refunds held for review failed");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			GatewayOp  *op = new_check_op(ws, t, d, to_send);
			MemoryContext old = MemoryContextSwitchTo(op->cxt);
			char	   *operation_id = SPI_getvalue(t, d, SPI_fnumber(d, "operation_id"));
			bool		built;

			op->payment_id = pg_strtoint64(SPI_getvalue(t, d, SPI_fnumber(d, "payment_id")));
			op->operation_id = operation_id ? pg_strtoint64(operation_id) : 0;
			op->kind = SPI_getvalue(t, d, SPI_fnumber(d, "kind"));
			op->txn_invoice = SPI_getvalue(t, d, SPI_fnumber(d, "invoice_number"));
			built = gateway_build_review_check(op, SPI_getvalue(t, d, SPI_fnumber(d, "gateway_trans_id")));
			MemoryContextSwitchTo(old);
			if (!built)
			{
				dlist_delete(&op->node);
				MemoryContextDelete(op->cxt);
			}
		}
	}
}

/*
 * Keep what the database believes about the gateway true, on the clock
 * (payments.settlement_check_interval): which captures settled (for every
 * captured payment, from the batch lists), and what became of payments
 * and refunds held for review.  A round starts only once the last one has
 * finished.
 */
typedef struct GatewayChecks
{
	WorkerState *ws;
	dlist_head	to_send;
} GatewayChecks;

static void
list_gateway_checks(void *arg)
{
	GatewayChecks *gc = (GatewayChecks *) arg;

	/* refunds that waited long for a settlement ask the gateway again */
	if (SPI_execute("SELECT payments._recheck_waiting_refunds()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: requeueing refunds waiting for settlement failed");
	settlement_checks(gc->ws, &gc->to_send);
	review_checks(gc->ws, &gc->to_send);
}

static void
check_gateway_state(WorkerState *ws)
{
	GatewayChecks gc = {.ws = ws};
	dlist_mutable_iter it;

	if (ws->checks_in_flight > 0)
		return;
	dlist_init(&gc.to_send);
	if (!in_transaction("settlement and review checks", list_gateway_checks, &gc))
	{
		free_ops(&gc.to_send);
		return;
	}
	dlist_foreach_modify(it, &gc.to_send)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

		dlist_delete(&op->node);
		ws->checks_in_flight++;
		start_transfer(ws, op);
	}
}

/*
 * Housekeeping, once a minute: retention in small indexed batches, parking
 * operations of unconfigured merchants, expiry notices, the vault key.
 * Each step is a transaction of its own: one that fails (a lock held past
 * payments.worker_lock_timeout, a bad row) is logged and tried again next
 * minute, and does not hold back the others.
 */
typedef struct HousekeepingStep
{
	const char *what;			/* for the log: "<what> failed with SQLSTATE ..." */
	const char *sql;
	int			expect;			/* SPI_OK_DELETE or SPI_OK_SELECT */
} HousekeepingStep;

static void
housekeeping_step_fn(void *arg)
{
	HousekeepingStep *step = (HousekeepingStep *) arg;

	if (SPI_execute(step->sql, false, 0) != step->expect)
		elog(ERROR, "payments worker: %s returned an unexpected result", step->what);
}

static void
housekeeping(void)
{
	HousekeepingStep steps[] = {
		{"exchange retention",
			psprintf("DELETE FROM payments.gateway_exchanges WHERE ctid IN ("
					 " SELECT ctid FROM payments.gateway_exchanges"
					 " WHERE finished_at < now() - interval '%d days' LIMIT 5000)",
					 payments_exchange_retention_days), SPI_OK_DELETE},
		{"idempotency key retention",
			/*
			 * A key whose operation has not ended is kept: a repeat must
			 * find the payment still to be sent, not make a second one.
			 */
			psprintf("DELETE FROM payments.idempotency_keys WHERE ctid IN ("
					 " SELECT k.ctid FROM payments.idempotency_keys k"
					 " WHERE k.created_at < now() - interval '%d hours'"
					 " AND NOT EXISTS (SELECT 1 FROM payments.operations o"
					 "  WHERE o.merchant_id = k.merchant_id AND o.operation_id = k.operation_id"
					 "  AND o.status IN ('queued', 'sending', 'unknown', 'waiting_settlement', 'in_review', 'dead'))"
					 " LIMIT 5000)",
					 payments_idempotency_retention_hours), SPI_OK_DELETE},
		{"parking operations of unconfigured merchants",
			"SELECT payments._park_unconfigured()", SPI_OK_SELECT},
		/* payment_method.expiring events (payment_methods.sql) */
		{"expiry notices", "SELECT payments.pay_run_expiry_notices()", SPI_OK_SELECT},
		/* a new card vault key when due (card_vault.c) */
		{"rotating the card vault key", "SELECT payments._vault_rotate_key(false)", SPI_OK_SELECT},
	};

	for (size_t i = 0; i < lengthof(steps); i++)
		(void) in_transaction(steps[i].what, housekeeping_step_fn, &steps[i]);

	/*
	 * The claim and record functions keep generic plans (worker.sql): an
	 * ANALYZE of a table they read plans them again, and so does this, so
	 * that no plan outlives the sizes it was made for by more than a minute.
	 */
	ResetPlanCache();
}

static void
refresh_statistics_fn(void *arg pg_attribute_unused())
{
	if (SPI_execute("SELECT payments._refresh_statistics()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: refreshing statistics failed");
}

/*
 * Fresh statistics for the extension's young tables (_refresh_statistics).
 * An optional chore: a failure is logged and the loop goes on.
 */
static void
refresh_statistics(void)
{
	(void) in_transaction("refreshing statistics", refresh_statistics_fn, NULL);
}

/* Publish the queue depth (queued or unknown operations, off the partial index). */
static void
queue_depth_fn(void *arg pg_attribute_unused())
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(PAYMENTS_QUEUE_DEPTH_QUERY, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: queue depth query failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	pg_atomic_write_u32(&payments_shared->queue_depth, (uint32) DatumGetInt64(d));
}

/*
 * The gauges: the queue depth and the worker's memory (every context under
 * its TopMemoryContext: flat in a steady state).
 */
static void
publish_queue_depth(void)
{
	(void) in_transaction("queue depth", queue_depth_fn, NULL);
	pg_atomic_write_u64(&payments_shared->worker_memory,
						(uint64) MemoryContextMemAllocated(TopMemoryContext, true));
}

/* What the recovery at worker start found. */
typedef struct Recovered
{
	int64		in_flight;		/* left "sending" by the previous worker */
	int64		lost_sends;		/* never sent here, maybe sent by a server before */
} Recovered;

static int64
recovered_count(void)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The base backup this data directory was started from, if any: a server
 * started from a backup renames its backup_label to backup_label.old once
 * it has replayed what the backup needs, and keeps it.  The label's start
 * location and time say which backup (NULL without one).  A backup started
 * as it is, without archive recovery, keeps the system identifier and the
 * timeline of the server it was taken from, whose history went on after
 * it: this is what tells the two apart.  Nothing secret is in those lines.
 */
static char *
base_backup_label(void)
{
	FILE	   *f = AllocateFile("backup_label.old", "r");
	char		line[MAXPGPATH];
	char	   *location = NULL;
	char	   *start_time = NULL;
	char	   *result = NULL;

	if (f == NULL)
		return NULL;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "START WAL LOCATION: ", 20) == 0)
			location = pstrdup(line + 20);
		else if (strncmp(line, "START TIME: ", 12) == 0)
			start_time = pstrdup(line + 12);
	}
	FreeFile(f);
	if (location != NULL || start_time != NULL)
		result = psprintf("%s, %s", location ? location : "?", start_time ? start_time : "?");
	return result;
}

static void
recover_in_flight_fn(void *arg)
{
	Recovered  *r = (Recovered *) arg;
	char		system_identifier[32];
	char	   *backup = base_backup_label();
	Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', backup ? ' ' : 'n'};

	if (SPI_execute("SELECT payments._recover_in_flight()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: recovery failed");
	r->in_flight = recovered_count();

	/* the server's identity: a promotion or restore changes it */
	/* signed, as pg_control_system() shows it */
	snprintf(system_identifier, sizeof(system_identifier), INT64_FORMAT, (int64) GetSystemIdentifier());
	values[0] = CStringGetTextDatum(system_identifier);
	values[1] = Int32GetDatum((int32) GetWALInsertionTimeLine());
	values[2] = backup ? CStringGetTextDatum(backup) : (Datum) 0;
	if (SPI_execute_with_args("SELECT payments._recover_lost_sends($1, $2, $3)", 3, types, values,
							  nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: recovery of lost sends failed");
	r->lost_sends = recovered_count();
	gateway_status_publish();
}

/*
 * Operations left "sending" by a previous worker: their outcome is unknown.
 * On a server other than the last one (a promoted standby, a restored
 * backup), operations that look never sent may have been sent by the
 * server before: they are treated as possibly sent (_recover_lost_sends).
 * False when that could not be recorded (to be tried again).
 */
static bool
recover_in_flight(void)
{
	Recovered	r = {0, 0};

	if (!in_transaction("recovering operations in flight", recover_in_flight_fn, &r))
		return false;
	if (r.in_flight > 0)
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("payments worker: %lld operations were in flight when the previous worker stopped; resolving them",
						(long long) r.in_flight)));
	if (r.lost_sends > 0)
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("payments worker: this server is not the one the worker last ran on; %lld operations recorded as never sent are treated as possibly sent",
						(long long) r.lost_sends),
				 errdetail("A promoted standby or a restored backup may lack the last commits of the server before it, which may have sent them: each is resent identically inside the gateway's duplicate window, or looked up.")));
	return true;
}

/*
 * Each gateway connection is a file descriptor: lift the soft limit to the
 * hard one so that payments.max_connections sockets fit beside the
 * backend's own files.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker could not raise its open file limit: %m")));
	}
}

void
payments_worker_main(Datum main_arg pg_attribute_unused())
{
	WorkerState *ws = &worker_state;
	MemoryContext loop_cxt;
	TimestampTz last_claim = 0;
	TimestampTz last_housekeeping = 0;
	TimestampTz last_settlement = 0;
	TimestampTz last_gauge = 0;
	TimestampTz last_statistics = 0;
	TimestampTz last_recovery = 0;
	bool		wake = true;
	bool		backlog = false;	/* the last claim stopped at the room in flight */
	bool		ready = false;
	bool		recovered = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	worker_connect(&payments_shared->connect_failures);
	pgstat_report_appname("payments worker");

	/*
	 * claims durable before their requests leave, brief lock waits (a lock a
	 * caller holds must not stop every transfer in flight), no JIT
	 */
	background_session_settings();
	cpu_scheduling_request();

	pg_atomic_write_u32(&payments_shared->worker_procno, MyProc->pgprocno + 1);
	pg_atomic_write_u32(&payments_shared->worker_pid, MyProcPid);
	pg_atomic_write_u64(&payments_shared->worker_started_us, now_us());
	pg_atomic_write_u32(&payments_shared->restart_requested, 0);
	on_shmem_exit(worker_on_exit, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "payments worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	ws->inflight_cxt = AllocSetContextCreate(TopMemoryContext, "payments operations in flight",
											 ALLOCSET_DEFAULT_SIZES);
	raise_fd_limit();
	ws->engine = http_engine_create(payments_max_connections);
	circuit_reset(&ws->circuits);

	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("payments worker started for database \"%s\"", payments_database)));

	for (;;)
	{
		TimestampTz now;
		int			in_flight;
		long		wait_ms = 1000;
		bool		latch_set;
		bool		claim_due;
		bool		more;

		loop_start(loop_cxt, &payments_shared->worker_conf_loaded_us);
		if (pg_atomic_read_u32(&payments_shared->restart_requested))
		{
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker restarting on request")));
			proc_exit(1);
		}
		now = GetCurrentTimestamp();
		pg_atomic_write_u64(&payments_shared->last_loop_us, (uint64) now);

		/*
		 * The extension dropped under the worker (DROP EXTENSION, a restore
		 * with --clean): each step would fail every second, and what it
		 * has in flight or holds to record belongs to tables that are
		 * gone.  Start again: the new worker waits quietly for the
		 * extension and makes its start-of-service checks
		 * (recover_in_flight) when it is back.
		 */
		if (ready && failed_for_missing_object() && !extension_ready(ws))
		{
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments worker: the extension is gone from database \"%s\"; restarting to wait for it",
							payments_database)));
			proc_exit(1);
		}

		if (!ready)
		{
			ready = extension_ready(ws);
			if (!ready)
			{
				/* wait for CREATE or ALTER EXTENSION */
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 5000L, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
		}
		if (!recovered && TimestampDifferenceExceeds(last_recovery, now, 5000))
		{
			last_recovery = now;
			recovered = recover_in_flight();
			pg_atomic_write_u32(&payments_shared->worker_recovered, recovered ? 1 : 0);
		}

		if (TimestampDifferenceExceeds(last_settlement, now, payments_settlement_check_s * 1000))
		{
			last_settlement = now;
			check_gateway_state(ws);
		}
		if (TimestampDifferenceExceeds(last_housekeeping, now, 60000))
		{
			last_housekeeping = now;
			housekeeping();
		}
		if (TimestampDifferenceExceeds(last_gauge, now, 1000))
		{
			last_gauge = now;
			publish_queue_depth();
			circuit_publish(&ws->circuits);
		}
		/* soon after slow claims: a young table's statistics, perhaps */
		if (TimestampDifferenceExceeds(last_statistics, now, ws->slow_claims ? 200 : 2000))
		{
			last_statistics = now;
			ws->slow_claims = false;
			refresh_statistics();
		}

		in_flight = ops_in_flight(ws);
		pg_atomic_write_u32(&payments_shared->in_flight, (uint32) in_flight);
		if ((uint32) in_flight > pg_atomic_read_u32(&payments_shared->max_in_flight))
			pg_atomic_write_u32(&payments_shared->max_in_flight, (uint32) in_flight);

		/*
		 * step 2 runs inside: wait for replies, timers or a wake-up (not
		 * when a backlog waits with room to claim it: a round that yielded
		 * to the chores)
		 */
		if (wake || ws->woken || !dlist_is_empty(&ws->finished) || !dlist_is_empty(&ws->taken_back) ||
			(backlog && recovered && now >= ws->claim_retry_at && room_for_backlog(ws)))
			wait_ms = 0;
		http_engine_wait(ws->engine, wait_ms, &latch_set);
		interpret_finished(ws);

		/*
		 * Steps 3 and 1: claim when woken, every second for due retries, and
		 * during a backlog as soon as half a claim's room is free again.
		 * Without the last, a backlog left when the callers stop (no more
		 * commits wake the worker) was claimed once a second: at most
		 * max_in_flight a second, however fast the gateway answered.
		 */
		now = GetCurrentTimestamp();
		claim_due = wake || latch_set || ws->woken || TimestampDifferenceExceeds(last_claim, now, 1000) ||
			(backlog && room_for_backlog(ws));
		if (!recovered || now < ws->claim_retry_at)
			claim_due = false;	/* not before recovery; after a failed claim, back off */
		if (claim_due)
			last_claim = now;
		wake = false;
		ws->woken = false;
		collect_handed(ws);
		retry_unrecorded(ws);
		more = finish_round(ws, claim_due);
		if (claim_due)
			backlog = more;		/* a round that only recorded tells nothing */
	}
}
