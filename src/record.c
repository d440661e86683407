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
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "gateway.h"
#include "gateway_cim.h"
#include "gateway_status.h"
#include "payments.h"
#include "record.h"
#include "worker_tx.h"
#include "shmem.h"

/* One array argument being built, element by element. */
typedef struct ArrayArg
{
	Oid			element_type;
	ArrayBuildState *state;
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
	a->state = accumArrayResult(a->state, value, isnull, a->element_type, CurrentMemoryContext);
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

/* Run a kept call whose arguments are the arrays args[0..n-1]. */
static void
execute_with_arrays(SPIPlanPtr *plan, const char *sql, ArrayArg *args, int n, int expected)
{
	Oid			types[16];
	Datum		values[16];

	Assert(n <= lengthof(types));
	for (int i = 0; i < n; i++)
	{
		types[i] = get_array_type(args[i].element_type);
		values[i] = makeArrayResult(args[i].state, CurrentMemoryContext);
	}
	if (SPI_execute_plan(worker_kept_plan(plan, sql, n, types), values, NULL, false, 0) != expected)
		elog(ERROR, "payments worker: \"%s\" failed", sql);
}

/* Log every exchange of the list in one statement. */
static void
record_exchanges(dlist_head *exchanges)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[12] = {INT8OID, INT8OID, INT4OID, TEXTOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	ArrayArg   *a = new_args(types, lengthof(types));
	dlist_iter	it;

	if (dlist_is_empty(exchanges))
		return;
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
	}
	execute_with_arrays(&plan, "SELECT payments._record_exchanges($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
						a, lengthof(types), SPI_OK_SELECT);
}

/* The reason text, NULL when empty. */
static const char *
reason_text(const GatewayOutcome *r)
{
	return r->reason_text && r->reason_text[0] ? r->reason_text : NULL;
}

/* Record one operation's outcome (payments._record_result). */
static void
record_outcome(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[13] = {INT8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	Datum		v[13];
	char		nulls[13];
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
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_result($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
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
		argtypes[i + 1] = get_array_type(TEXTOID);
		v[i + 1] = makeArrayResult(a[i].state, CurrentMemoryContext);
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

/* What became of a payment held for review (payments._resolve_review). */
static void
record_review(GatewayOp *op)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {INT8OID, INT8OID, TEXTOID, TEXTOID, INT4OID, INT4OID, TEXTOID, TEXTOID};
	Datum		v[8];
	char		nulls[8];
	GatewayOutcome *r = &op->result;

	if (op->review_status == NULL)
		return;
	memset(nulls, ' ', sizeof(nulls));
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = Int64GetDatum(op->payment_id);
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
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._resolve_review($1,$2,$3,$4,$5,$6,$7,$8)",
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
	Oid			types[12] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Datum		v[12];
	char		nulls[12];
	GatewayOutcome *r = &op->result;
	GatewayCim *c = op->cim;
	char	   *last4 = NULL;

	memset(nulls, ' ', sizeof(nulls));
	if (c != NULL && c->account_number != NULL && strlen(c->account_number) >= 4)
		last4 = c->account_number + strlen(c->account_number) - 4;
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
	if (SPI_execute_plan(worker_kept_plan(&plan, "SELECT payments._record_method_result($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
								   lengthof(types), types),
						 v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record a payment method outcome");
}

void
record_count(GatewayOp *op)
{
	pg_atomic_uint64 *counter;

	if (gateway_op_is_check(op) || op->stage == STAGE_VERIFY ||
		op->result.outcome == OUTCOME_VOID_FIRST || op->result.outcome == OUTCOME_WAIT)
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
	if (gateway_op_is_cim(op))
	{
		record_method_outcome(op);
		return;
	}
	/* the payment's capture was seen settled on the way (STAGE_DECIDE) */
	if (op->learned_batch_id != NULL)
		record_settlements(op->merchant_id, 1, &op->learned_trans_id, &op->learned_batch_id,
						   &op->learned_settled_at);
	if (op->result.outcome == OUTCOME_VOID_FIRST || op->result.outcome == OUTCOME_WAIT)
		record_refund_decision(op);
	else
		record_outcome(op);
}

void
record_batch(dlist_head *exchanges, dlist_head *finished)
{
	static SPIPlanPtr plan = NULL;
	static const Oid types[12] = {INT8OID, INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	static SPIPlanPtr ntid_plan = NULL;
	static const Oid ntid_types[3] = {INT8OID, INT8OID, TEXTOID};
	ArrayArg   *a = new_args(types, lengthof(types));
	ArrayArg   *ntid = new_args(ntid_types, lengthof(ntid_types));
	int			nfinal = 0;
	int			nntid = 0;
	dlist_iter	it;

	record_exchanges(exchanges);
	/* account errors set the retry times of their merchants' ops */
	gateway_status_note_list(finished);
	dlist_foreach(it, finished)
	{
		GatewayOp  *op = dlist_container(GatewayOp, node, it.cur);
		GatewayOutcome *r = &op->result;

		if (!is_final_first_operation(op))
		{
			record_op(op);
			continue;
		}
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
		nfinal++;
		/* a stored method's first network transaction id (card on file) */
		if (op->payment_method_id != 0 && r->outcome == OUTCOME_APPROVED &&
			r->network_trans_id != NULL && r->network_trans_id[0] != '\0')
		{
			push(&ntid[0], Int64GetDatum(op->merchant_id), false);
			push(&ntid[1], Int64GetDatum(op->operation_id), false);
			push_text(&ntid[2], r->network_trans_id);
			nntid++;
		}
	}
	if (nfinal > 0)
		execute_with_arrays(&plan,
							"SELECT payments._record_final_results($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
							a, lengthof(types), SPI_OK_SELECT);
	if (nntid > 0)
		execute_with_arrays(&ntid_plan, "SELECT payments._note_network_trans_ids($1,$2,$3)",
							ntid, lengthof(ntid_types), SPI_OK_SELECT);
}
