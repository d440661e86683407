/*-------------------------------------------------------------------------
 *
 * record.c
 *	  Step 3 of an attempt: write what the gateway answered into the
 *	  database, inside a transaction the worker has opened.
 *
 * A batch is written set-based: one statement logs every exchange, one
 * records every final answer to a purchase or an authorization (the bulk
 * of the traffic), each passed as arrays.  The rarer outcomes (captures,
 * voids, refunds, retries, unknown outcomes, settlements) go through
 * payments._record_result one by one, where their money rules live.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "gateway.h"
#include "gateway_cim.h"
#include "gateway_status.h"
#include "payments.h"
#include "record.h"
#include "worker_tx.h"
#include "shmem.h"

/*
 * One array argument being built, element by element.  Built without the
 * catalogs (the element types are fixed), so that the worker can make a
 * batch for the recorder outside any transaction.
 */
typedef struct ArrayArg
{
	Oid			element_type;
	int			n;
	int			size;
	Datum	   *values;
	bool	   *nulls;
} ArrayArg;

/* n empty array arguments of these element types */
static ArrayArg *
new_args(const Oid *element_types, int n)
{
	ArrayArg   *a = palloc0(sizeof(ArrayArg) * n);

	for (int i = 0; i < n; i++)
		a[i].element_type = element_types[i];
	return a;
}

static void
push(ArrayArg *a, Datum value, bool isnull)
{
	if (a->n == a->size)
	{
		a->size = a->size == 0 ? 16 : a->size * 2;
		a->values = a->values ? repalloc(a->values, sizeof(Datum) * a->size) :
			palloc(sizeof(Datum) * a->size);
		a->nulls = a->nulls ? repalloc(a->nulls, sizeof(bool) * a->size) :
			palloc(sizeof(bool) * a->size);
	}
	a->values[a->n] = value;
	a->nulls[a->n] = isnull;
	a->n++;
}

static void
push_text(ArrayArg *a, const char *s)
{
	push(a, s ? CStringGetTextDatum(s) : (Datum) 0, s == NULL);
}

/* An integer, NULL when zero (no code given). */
static void
push_int4_or_null(ArrayArg *a, int v)
{
	push(a, Int32GetDatum(v), v == 0);
}

/* The array type of an element type the recording uses. */
static Oid
array_type_of(Oid element_type)
{
	switch (element_type)
	{
		case INT8OID:
			return INT8ARRAYOID;
		case INT4OID:
			return INT4ARRAYOID;
		case TEXTOID:
			return TEXTARRAYOID;
		case TIMESTAMPTZOID:
			return TIMESTAMPTZARRAYOID;
	}
	elog(ERROR, "payments: no array type known for type %u", element_type);
	return InvalidOid;			/* keep the compiler quiet */
}

/* The array built: a flat value, nothing in it points elsewhere. */
static Datum
array_result(ArrayArg *a)
{
	int			dims[1] = {a->n};
	int			lbs[1] = {1};
	int			len;
	bool		byval;
	char		align;

	switch (a->element_type)
	{
		case INT8OID:
		case TIMESTAMPTZOID:
			len = 8;
			byval = FLOAT8PASSBYVAL;
			align = TYPALIGN_DOUBLE;
			break;
		case INT4OID:
			len = 4;
			byval = true;
			align = TYPALIGN_INT;
			break;
		default:
			Assert(a->element_type == TEXTOID);
			len = -1;
			byval = false;
			align = TYPALIGN_INT;
			break;
	}
	if (a->n == 0)
		return PointerGetDatum(construct_empty_array(a->element_type));
	return PointerGetDatum(construct_md_array(a->values, a->nulls, 1, dims, lbs,
											  a->element_type, len, byval, align));
}

/*
 * The set-based calls of a batch, in the order they run: every exchange,
 * the final answers to purchases and authorizations, the network
 * transaction ids of stored methods.  One home for the worker, which runs
 * them, and the recorder, which runs them from the bytes the worker made.
 */
typedef enum BatchCall
{
	CALL_EXCHANGES,
	CALL_FINAL_RESULTS,
	CALL_NETWORK_TRANS_IDS,
	BATCH_CALLS
} BatchCall;

#define MAX_CALL_ARGS 13

typedef struct BatchCallDef
{
	const char *sql;
	int			nargs;
	Oid			types[MAX_CALL_ARGS];	/* element types */
} BatchCallDef;

static const BatchCallDef batch_calls[BATCH_CALLS] = {
	[CALL_EXCHANGES] = {
		"SELECT payments._record_exchanges($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)", 12,
		{INT8OID, INT8OID, INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
	},
	[CALL_FINAL_RESULTS] = {
		"SELECT payments._record_final_results($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)", 13,
		{INT8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID}
	},
	[CALL_NETWORK_TRANS_IDS] = {
		"SELECT payments._note_network_trans_ids($1,$2,$3)", 3,
		{INT8OID, INT8OID, TEXTOID}
	},
};

/* A batch being built: the arrays of each call, and how many rows each. */
typedef struct Batch
{
	ArrayArg   *args[BATCH_CALLS];
	int			rows[BATCH_CALLS];
} Batch;

static void
batch_init(Batch *b)
{
	for (int c = 0; c < BATCH_CALLS; c++)
	{
		b->args[c] = new_args(batch_calls[c].types, batch_calls[c].nargs);
		b->rows[c] = 0;
	}
}

/* Run call c with these arrays, through a plan kept for it. */
static void
run_call(BatchCall c, Datum *arrays)
{
	static SPIPlanPtr plans[BATCH_CALLS];
	const BatchCallDef *def = &batch_calls[c];
	Oid			types[MAX_CALL_ARGS];

	for (int i = 0; i < def->nargs; i++)
		types[i] = array_type_of(def->types[i]);
	if (SPI_execute_plan(worker_kept_plan(&plans[c], def->sql, def->nargs, types),
						 arrays, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments: \"%s\" failed", def->sql);
}

/* Run the calls of a batch that have rows. */
static void
batch_run(Batch *b)
{
	for (int c = 0; c < BATCH_CALLS; c++)
	{
		Datum		arrays[MAX_CALL_ARGS];

		if (b->rows[c] == 0)
			continue;
		for (int i = 0; i < batch_calls[c].nargs; i++)
			arrays[i] = array_result(&b->args[c][i]);
		run_call((BatchCall) c, arrays);
	}
}

/* Every exchange of the list, one row each. */
static void
batch_add_exchanges(Batch *b, dlist_head *exchanges)
{
	ArrayArg   *a = b->args[CALL_EXCHANGES];
	dlist_iter	it;

	dlist_foreach(it, exchanges)
	{
		GatewayExchange *ex = dlist_container(GatewayExchange, node, it.cur);

		push(&a[0], Int64GetDatum(ex->merchant_id), false);
		push(&a[1], Int64GetDatum(ex->operation_id), ex->operation_id == 0);
		push(&a[2], Int32GetDatum(ex->attempt), false);
		push_text(&a[3], ex->request_type);
		push(&a[4], TimestampTzGetDatum(ex->started_at), false);
		push(&a[5], TimestampTzGetDatum(ex->finished_at), false);
		push(&a[6], Int32GetDatum((int32) ex->http_status), false);
		push_text(&a[7], ex->transport_error);
		push_text(&a[8], ex->outcome);
		push_text(&a[9], ex->request_masked ? ex->request_masked : "");
		push_text(&a[10], ex->response_masked);
		push_text(&a[11], ex->correlation_id);
		b->rows[CALL_EXCHANGES]++;
	}
}

/*
 * The fingerprint of the card an op sent, once the gateway answered about
 * that card (a response code, or a saved profile); NULL otherwise.  Never
 * sooner: a fingerprint computed when the caller passes the card would
 * tell a caller whether any number it tries is the one behind a stored
 * fingerprint, offline and for free.  This way every try is a request to
 * the gateway (a transaction, or a profile saved unvalidated): rate-limited,
 * logged, and in the merchant's gateway account.
 */
static const char *
fingerprint_answered(const GatewayOp *op)
{
	if (op->card_fingerprint[0] == '\0')
		return NULL;
	if (gateway_op_is_cim(op) ? op->result.outcome != OUTCOME_APPROVED :
		op->result.response_code == 0)
		return NULL;
	return op->card_fingerprint;
}

/* The reason text, NULL when empty. */
static const char *
reason_text(const GatewayOutcome *r)
{
	return r->reason_text && r->reason_text[0] ? r->reason_text : NULL;
}

/*
 * Nothing of this attempt reached the gateway: it does not count toward
 * payments.max_attempts (payments._attempt_unreached).
 */
static void
give_back_attempt(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		v[2];

	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(op->operation_id);
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._attempt_unreached($1,$2)",
										  lengthof(types), types),
						 v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not give back an attempt");
}

/* Record one operation's outcome (payments._record_result). */
static void
record_outcome(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[14] = {INT8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[14];
	char		nulls[14];
	GatewayOutcome *r = &op->result;

	memset(nulls, ' ', sizeof(nulls));
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(op->operation_id);
	v[2] = payments_text_arg(gateway_outcome_name(r->outcome), &nulls[2]);
	v[3] = Int32GetDatum(r->response_code);
	if (r->response_code == 0)
		nulls[3] = 'n';
	v[4] = Int32GetDatum(r->reason_code);
	if (r->reason_code == 0)
		nulls[4] = 'n';
	v[5] = payments_text_arg(reason_text(r), &nulls[5]);
	v[6] = payments_text_arg(r->trans_id, &nulls[6]);
	v[7] = payments_text_arg(r->auth_code, &nulls[7]);
	v[8] = payments_text_arg(r->avs, &nulls[8]);
	v[9] = payments_text_arg(r->cvv, &nulls[9]);
	v[10] = TimestampTzGetDatum(r->retry_at ? r->retry_at : GetCurrentTimestamp());
	v[11] = payments_text_arg(r->error, &nulls[11]);
	v[12] = payments_text_arg(r->account_number, &nulls[12]);
	/* a final answer recorded alone (held, or its batch failed) */
	v[13] = payments_text_arg(fingerprint_answered(op), &nulls[13]);
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_result($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
								   lengthof(types), types),
						 v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record an outcome");
}

/*
 * Record captures seen settled: n transIds of one merchant, each with its
 * batch and the batch's settlementTimeUTC (payments._record_settlements;
 * refunds waiting for them go out).
 */
static void
record_settlements(int64 merchant_id, int n, char **trans_ids, char **batch_ids, char **times)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[3] = {TEXTOID, TEXTOID, TEXTOID};
	ArrayArg   *a = new_args(types, lengthof(types));
	Oid			argtypes[4];
	Datum		v[4];

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
	{
		push_text(&a[0], trans_ids[i]);
		push_text(&a[1], batch_ids[i] && batch_ids[i][0] ? batch_ids[i] : NULL);
		push_text(&a[2], times[i] && times[i][0] ? times[i] : NULL);
	}
	argtypes[0] = INT8OID;
	v[0] = Int64GetDatum(merchant_id);
	for (int i = 0; i < 3; i++)
	{
		argtypes[i + 1] = TEXTARRAYOID;
		v[i + 1] = array_result(&a[i]);
	}
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_settlements($1,$2,$3,$4)", 4, argtypes),
						 v, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record settlements");
}

/* What a settlement check learned (also when it was cut short). */
static void
record_settlement_check(GatewayOp *op)
{
	SettlementCheck *c = op->settlement;

	if (c != NULL)
		record_settlements(op->merchant_id, c->nsettled, c->settled_trans_ids,
						   c->settled_batch_ids, c->settled_times);
}

/*
 * What became of a payment held for review (payments._resolve_review), or
 * of a refund held for review (the check of an operation:
 * payments._resolve_refund_review, without the auth code).
 */
static void
record_review(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr refund_plan = NULL;
	Oid			types[8] = {INT8OID, INT8OID, TEXTOID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID};
	Datum		v[8];
	char		nulls[8];
	GatewayOutcome *r = &op->result;
	bool		refund = op->operation_id != 0;

	if (op->review_status == NULL)
		return;
	memset(nulls, ' ', sizeof(nulls));
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(refund ? op->operation_id : op->payment_id);
	v[2] = payments_text_arg(op->review_status, &nulls[2]);
	v[3] = payments_text_arg(anet_status_class_name(anet_classify_transaction_status(op->review_status)),
							 &nulls[3]);
	v[4] = Int32GetDatum(r->response_code);
	if (r->response_code == 0)
		nulls[4] = 'n';
	v[5] = Int32GetDatum(r->reason_code);
	if (r->reason_code == 0)
		nulls[5] = 'n';
	v[6] = payments_text_arg(reason_text(r), &nulls[6]);
	v[7] = payments_text_arg(r->auth_code && r->auth_code[0] ? r->auth_code : NULL, &nulls[7]);
	if (SPI_execute_plan(refund ?
						 worker_kept_plan(&refund_plan, "SELECT payments._resolve_refund_review($1,$2,$3,$4,$5,$6,$7)",
										  lengthof(types) - 1, types) :
						 worker_kept_plan(&plan, "SELECT payments._resolve_review($1,$2,$3,$4,$5,$6,$7,$8)",
										  lengthof(types), types),
						 v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record a review check");
}

/*
 * A refund's decision before anything was sent: to go out as a void, or
 * to wait for settlement (payments._record_refund_decision).
 */
static void
record_refund_decision(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		v[4];
	char		nulls[4];

	memset(nulls, ' ', sizeof(nulls));
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(op->operation_id);
	v[2] = payments_text_arg(gateway_outcome_name(op->result.outcome), &nulls[2]);
	v[3] = payments_text_arg(op->result.error, &nulls[3]);
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_refund_decision($1,$2,$3,$4)",
								   lengthof(types), types),
						 v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record a refund's decision");
}

/*
 * Record a stored payment method's or customer's profile operation
 * (payments._record_method_result): its outcome and what the gateway
 * told of the profile.
 */
static void
record_method_outcome(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[14] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[14];
	char		nulls[14];
	GatewayOutcome *r = &op->result;
	GatewayCim *c = op->cim;
	char	   *last4 = NULL;

	memset(nulls, ' ', sizeof(nulls));
	if (c != NULL && c->account_number != NULL)
		last4 = gateway_last_four(c->account_number);
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(op->operation_id);
	v[2] = payments_text_arg(gateway_outcome_name(r->outcome), &nulls[2]);
	v[3] = payments_text_arg(c ? c->code : NULL, &nulls[3]);
	v[4] = payments_text_arg(reason_text(r), &nulls[4]);
	v[5] = payments_text_arg(c ? c->customer_profile_id : NULL, &nulls[5]);
	v[6] = payments_text_arg(c ? c->payment_profile_id : NULL, &nulls[6]);
	v[7] = payments_text_arg(c ? c->network_trans_id : NULL, &nulls[7]);
	v[8] = payments_text_arg(last4, &nulls[8]);
	v[9] = payments_text_arg(c ? c->account_type : NULL, &nulls[9]);
	v[10] = TimestampTzGetDatum(r->retry_at ? r->retry_at : GetCurrentTimestamp());
	v[11] = payments_text_arg(r->error, &nulls[11]);
	v[12] = payments_text_arg(fingerprint_answered(op), &nulls[12]);
	v[13] = payments_text_arg(c ? c->gone_profile_id : NULL, &nulls[13]);
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_method_result($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
								   lengthof(types), types),
						 v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record a payment method outcome");
}

void
record_count(GatewayOp *op)
{
	pg_atomic_uint64 *counter;

	if (gateway_op_is_check(op) || op->stage == STAGE_VERIFY ||
		gateway_outcome_is_refund_decision(op->result.outcome))
		return;

	switch (op->result.outcome)
	{
		case OUTCOME_APPROVED:
		case OUTCOME_HELD:
			counter = &payments_shared->approved;
			break;
		case OUTCOME_DECLINED:
			counter = &payments_shared->declined;
			break;
		case OUTCOME_UNKNOWN:
			counter = &payments_shared->unknown_outcomes;
			break;
		case OUTCOME_RETRY:
			counter = &payments_shared->retries;
			break;
		default:
			counter = &payments_shared->errors;
			break;
	}
	pg_atomic_fetch_add_u64(counter, 1);
	histogram_observe(&payments_shared->result_latency,
					  (uint64) (GetCurrentTimestamp() - op->created_at));
}

/*
 * Whether an op's outcome goes through the set-based path: a final answer
 * to a purchase or an authorization.
 */
static bool
is_final_first_operation(GatewayOp *op)
{
	GatewayOutcomeKind o = op->result.outcome;

	if (gateway_op_is_check(op) || op->stage == STAGE_VERIFY)
		return false;
	if (strcmp(op->kind, "purchase") != 0 && strcmp(op->kind, "authorize") != 0)
		return false;
	return o != OUTCOME_RETRY && o != OUTCOME_UNKNOWN;
}

void
record_op(GatewayOp *op)
{
	if (op->stage == STAGE_SETTLEMENT)
	{
		record_settlement_check(op);
		return;
	}
	if (op->stage == STAGE_REVIEW)
	{
		record_review(op);
		return;
	}
	if (op->stage == STAGE_VERIFY)
	{
		gateway_status_record_verification(op);
		return;
	}
	if (op->result.unreached)
		give_back_attempt(op);
	if (gateway_op_is_cim(op))
	{
		record_method_outcome(op);
		return;
	}
	/* the payment's capture was seen settled on the way (STAGE_DECIDE) */
	if (op->learned_batch_id != NULL)
		record_settlements(op->merchant_id, 1, &op->learned_trans_id, &op->learned_batch_id,
						   &op->learned_settled_at);
	if (gateway_outcome_is_refund_decision(op->result.outcome))
		record_refund_decision(op);
	else
		record_outcome(op);
}

/* One final answer to a purchase or an authorization. */
static void
batch_add_final(Batch *b, GatewayOp *op)
{
	ArrayArg   *a = b->args[CALL_FINAL_RESULTS];
	GatewayOutcome *r = &op->result;

	push(&a[0], Int64GetDatum(op->merchant_id), false);
	push(&a[1], Int64GetDatum(op->operation_id), false);
	push_text(&a[2], gateway_outcome_name(r->outcome));
	push_int4_or_null(&a[3], r->response_code);
	push_int4_or_null(&a[4], r->reason_code);
	push_text(&a[5], reason_text(r));
	push_text(&a[6], r->trans_id);
	push_text(&a[7], r->auth_code);
	push_text(&a[8], r->avs);
	push_text(&a[9], r->cvv);
	push_text(&a[10], r->error);
	push_text(&a[11], r->account_number);
	push_text(&a[12], fingerprint_answered(op));
	b->rows[CALL_FINAL_RESULTS]++;
	/* a stored method's first network transaction id (card on file) */
	if (op->payment_method_id != 0 && r->outcome == OUTCOME_APPROVED &&
		r->network_trans_id != NULL && r->network_trans_id[0] != '\0')
	{
		a = b->args[CALL_NETWORK_TRANS_IDS];
		push(&a[0], Int64GetDatum(op->merchant_id), false);
		push(&a[1], Int64GetDatum(op->operation_id), false);
		push_text(&a[2], r->network_trans_id);
		b->rows[CALL_NETWORK_TRANS_IDS]++;
	}
}

void
record_batch(dlist_head *exchanges, dlist_head *finished)
{
	Batch		b;
	dlist_iter	it;

	batch_init(&b);
	batch_add_exchanges(&b, exchanges);
	/* account errors set the retry times of their merchants' ops */
	gateway_status_note_list(finished);
	dlist_foreach(it, finished)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);

		if (is_final_first_operation(op))
			batch_add_final(&b, op);
		else
			record_op(op);
	}
	batch_run(&b);
}

/*
 * The exchanges alone, for a batch whose transaction failed: the log keeps
 * every request that was made, whether or not its outcome could be
 * recorded with it (an outcome waiting for a payment row a caller holds,
 * say, is held and recorded later; its exchange is not held).
 */
void
record_exchanges(dlist_head *exchanges)
{
	Batch		b;

	batch_init(&b);
	batch_add_exchanges(&b, exchanges);
	batch_run(&b);
}

/*
 * Whether the recorder may record an op's outcome: a final answer to a
 * purchase or an authorization that says nothing new of its merchant's
 * gateway account (gateway_status_note has nothing to write for it).
 */
bool
record_by_recorder(GatewayOp *op)
{
	return is_final_first_operation(op) && !gateway_status_has_news(op);
}

/*
 * The batch of these exchanges and ops (each one record_by_recorder allows)
 * as bytes for the recorder, appended to out: for each call with rows, its
 * number, then each array argument's length and its flat bytes, padded to
 * MAXALIGN.  Needs no transaction.
 */
void
record_batch_serialize(dlist_head *exchanges, dlist_head *ops, StringInfo out)
{
	Batch		b;
	dlist_iter	it;

	batch_init(&b);
	batch_add_exchanges(&b, exchanges);
	dlist_foreach(it, ops)
		batch_add_final(&b, dlist_container(GatewayOp, node, it.cur));
	for (int c = 0; c < BATCH_CALLS; c++)
	{
		int32		call = c;

		if (b.rows[c] == 0)
			continue;
		appendBinaryStringInfo(out, (char *) &call, sizeof(call));
		for (int i = 0; i < batch_calls[c].nargs; i++)
		{
			Datum		array = array_result(&b.args[c][i]);
			uint32		len = VARSIZE(DatumGetPointer(array));
			static const char zeros[MAXIMUM_ALIGNOF] = {0};

			appendBinaryStringInfo(out, (char *) &len, sizeof(len));
			appendBinaryStringInfo(out, zeros, MAXALIGN(out->len) - out->len);
			appendBinaryStringInfo(out, DatumGetPointer(array), len);
			appendBinaryStringInfo(out, zeros, MAXALIGN(out->len) - out->len);
		}
	}
}

/*
 * Run the calls of a batch record_batch_serialize made (data MAXALIGNed),
 * inside a transaction the caller opened; with exchanges_only, only its
 * exchanges (see record_exchanges).  Returns how many final answers it
 * recorded.
 */
int
record_serialized(const char *data, Size len, bool exchanges_only)
{
	Size		at = 0;
	int			results = 0;

	while (at < len)
	{
		int32		call;
		Datum		arrays[MAX_CALL_ARGS];

		if (len - at < sizeof(call))
			elog(ERROR, "payments: a recording batch is cut short");
		memcpy(&call, data + at, sizeof(call));
		at += sizeof(call);
		if (call < 0 || call >= BATCH_CALLS)
			elog(ERROR, "payments: a recording batch names no known call (%d)", call);
		for (int i = 0; i < batch_calls[call].nargs; i++)
		{
			uint32		alen;

			if (len - at < sizeof(alen))
				elog(ERROR, "payments: a recording batch is cut short");
			memcpy(&alen, data + at, sizeof(alen));
			at = MAXALIGN(at + sizeof(alen));
			if (at > len || len - at < alen || alen < VARHDRSZ || VARSIZE(data + at) != alen)
				elog(ERROR, "payments: a recording batch is cut short");
			arrays[i] = PointerGetDatum(data + at);
			at = MAXALIGN(at + alen);
		}
		if (exchanges_only && call != CALL_EXCHANGES)
			continue;
		if (call == CALL_FINAL_RESULTS)
			results += ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(arrays[0])),
									  ARR_DIMS(DatumGetArrayTypeP(arrays[0])));
		run_call((BatchCall) call, arrays);
	}
	return results;
}
