/*-------------------------------------------------------------------------
 *
 * gateway_status.c
 *	  Per-merchant gateway account state, as the worker learns it.
 *
 * An account error (wrong credentials, inactive account, a permission the
 * account lacks; anet_protocol.h lists the codes) is about the merchant,
 * not the payment: gateway.c never records it as a final answer.  Here the
 * merchant is marked failing in payments.gateway_status, its operations
 * are held for a backoff that doubles with each failure in a row, and the
 * first request the gateway accepts again clears the state
 * (payments._gateway_status_note holds the rules).  The failing merchants
 * are published to shared memory for pay_worker_health and pay_metrics.
 * Other merchants are not affected: the circuit breaker counts only
 * transport failures.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "gateway_status.h"
#include "payments.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(pay_account_backoff);

/*
 * Whether some merchant may be failing, as far as this worker knows (it
 * starts not knowing).  While none is, accepted requests need no note.
 */
static bool any_failing = true;

/*
 * Which merchants are failing, as the worker last published them: all of
 * them while failing_known (no more than FAILING_GATEWAYS_SHOWN; read at
 * the worker's start and after every change its notes make).
 */
static bool failing_known = false;
static int	nfailing_known = 0;
static int64 failing_known_ids[FAILING_GATEWAYS_SHOWN];

/*
 * payments._account_backoff(failures): payments.account_retry_min doubled
 * failures - 1 times, at most payments.account_retry_max.
 */
Datum
pay_account_backoff(PG_FUNCTION_ARGS)
{
	int32		failures = PG_GETARG_INT32(0);
	int64		secs = payments_account_retry_min_s;
	Interval   *result = palloc0(sizeof(Interval));

	for (int i = 1; i < failures && secs < payments_account_retry_max_s; i++)
		secs *= 2;
	secs = Min(secs, (int64) payments_account_retry_max_s);
	result->time = secs * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(result);
}

static Datum
int8_array(Datum *values, int n)
{
	return PointerGetDatum(construct_array(values, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
text_array(Datum *values, int n)
{
	return PointerGetDatum(construct_array(values, n, TEXTOID, -1, false, TYPALIGN_INT));
}

void
gateway_status_note(GatewayOp **ops, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[5];
	Datum	   *failed_merchant = palloc(sizeof(Datum) * n);
	Datum	   *failed_operation = palloc(sizeof(Datum) * n);
	Datum	   *code = palloc(sizeof(Datum) * n);
	Datum	   *text = palloc(sizeof(Datum) * n);
	Datum	   *ok = palloc(sizeof(Datum) * n);
	GatewayOp **failed_ops = palloc(sizeof(GatewayOp *) * n);
	int			nfailed = 0;
	int			nok = 0;
	bool		isnull;
	Datum		d;
	Datum	   *retry;
	bool	   *retry_null;
	int			nretry;

	for (int i = 0; i < n; i++)
	{
		GatewayOp  *op = ops[i];

		if (op->account == ACCOUNT_FAILED)
		{
			failed_ops[nfailed] = op;
			failed_merchant[nfailed] = Int64GetDatum(op->merchant_id);
			failed_operation[nfailed] = Int64GetDatum(op->stage == STAGE_VERIFY ||
													  gateway_op_is_check(op) ? 0 : op->operation_id);
			code[nfailed] = CStringGetTextDatum(op->account_code ? op->account_code : "");
			text[nfailed] = CStringGetTextDatum(op->account_text ? op->account_text : "");
			nfailed++;
		}
		else if (op->account == ACCOUNT_OK && any_failing)
			ok[nok++] = Int64GetDatum(op->merchant_id);
	}
	if (nfailed == 0 && nok == 0)
		return;

	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT retry_at, failing, changed"
									" FROM payments._gateway_status_note($1, $2, $3, $4, $5)",
									5, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "payments worker: could not prepare the gateway status note");
		plan = p;
	}
	args[0] = int8_array(failed_merchant, nfailed);
	args[1] = int8_array(failed_operation, nfailed);
	args[2] = text_array(code, nfailed);
	args[3] = text_array(text, nfailed);
	args[4] = int8_array(ok, nok);
	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "payments worker: could not note the merchants' gateway status");

	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	any_failing = isnull || DatumGetInt32(d) > 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && nfailed > 0)
	{
		deconstruct_array(DatumGetArrayTypeP(d), TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &retry, &retry_null, &nretry);

		/*
		 * The failed ops, and the merchant's others still to be tried again
		 * (a lookup's riders, say), wait for the merchant's backoff.
		 */
		for (int f = 0; f < nfailed && f < nretry; f++)
		{
			TimestampTz at;

			if (retry_null[f])
				continue;
			at = DatumGetTimestampTz(retry[f]);
			for (int i = 0; i < n; i++)
			{
				GatewayOp  *op = ops[i];

				if (op->merchant_id != failed_ops[f]->merchant_id ||
					(op->result.outcome != OUTCOME_RETRY && op->result.outcome != OUTCOME_UNKNOWN))
					continue;
				if (op == failed_ops[f] || op->result.retry_at < at)
					op->result.retry_at = at;
			}
		}
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (!isnull && DatumGetBool(d))
		gateway_status_publish();
}

/*
 * Whether gateway_status_note has something to write for op: an account
 * error, or an accepted request of a merchant that may be failing (which
 * ends its failing).  An accepted request of a merchant known not to be
 * failing has nothing to say.
 */
bool
gateway_status_has_news(const GatewayOp *op)
{
	if (op->account == ACCOUNT_FAILED)
		return true;
	if (op->account != ACCOUNT_OK || !any_failing)
		return false;
	if (!failing_known)
		return true;
	for (int i = 0; i < nfailing_known; i++)
		if (failing_known_ids[i] == op->merchant_id)
			return true;
	return false;
}

/* The same for every op of a list (the worker's finished ops). */
void
gateway_status_note_list(dlist_head *finished)
{
	dlist_iter	it;
	GatewayOp **ops;
	int			n = 0;

	dlist_foreach(it, finished)
		n++;
	if (n == 0)
		return;
	ops = palloc(sizeof(GatewayOp *) * n);
	n = 0;
	dlist_foreach(it, finished)
		ops[n++] = dlist_container(GatewayOp, node, it.cur);
	gateway_status_note(ops, n);
	pfree(ops);
}

void
gateway_status_publish(void)
{
	FailingGateway shown[FAILING_GATEWAYS_SHOWN];
	int			nshown = 0;
	int			total = 0;
	PaymentsShared *s = payments_shared;

	if (SPI_execute("SELECT merchant_id, failing_since, last_error_code, last_error_text, total"
					" FROM payments._gateway_failing(" CppAsString2(FAILING_GATEWAYS_SHOWN) ")",
					false, 0) != SPI_OK_SELECT)	/* a fresh snapshot: see the note */
		elog(ERROR, "payments worker: could not read the failing gateways");
	memset(shown, 0, sizeof(shown));
	for (uint64 i = 0; i < SPI_processed && nshown < FAILING_GATEWAYS_SHOWN; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		FailingGateway *g = &shown[nshown++];
		bool		isnull;
		char	   *v;

		g->merchant_id = DatumGetInt64(SPI_getbinval(t, desc, 1, &isnull));
		g->since = DatumGetTimestampTz(SPI_getbinval(t, desc, 2, &isnull));
		if ((v = SPI_getvalue(t, desc, 3)) != NULL)
			strlcpy(g->code, v, sizeof(g->code));
		if ((v = SPI_getvalue(t, desc, 4)) != NULL)
			strlcpy(g->text, v, sizeof(g->text));
		total = (int) DatumGetInt64(SPI_getbinval(t, desc, 5, &isnull));
	}
	SpinLockAcquire(&s->failing_lock);
	s->failing_total = total;
	s->failing_shown = nshown;
	memcpy(s->failing, shown, sizeof(shown));
	SpinLockRelease(&s->failing_lock);
	any_failing = total > 0;
	failing_known = total <= nshown;
	nfailing_known = nshown;
	for (int i = 0; i < nshown; i++)
		failing_known_ids[i] = shown[i].merchant_id;
}

void
gateway_status_record_verification(GatewayOp *op)
{
	Oid			types[5] = {INT8OID, TIMESTAMPTZOID, BOOLOID, TEXTOID, TEXTOID};
	Datum		v[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	AnetReplyStatus st;
	bool		succeeded = false;
	const char *code = NULL;
	const char *text;

	if (op->http.outcome != HTTP_COMPLETED)
		text = op->http.error[0] ? op->http.error : "the gateway could not be reached";
	else if (op->http.http_status != 200)
		text = psprintf("HTTP status %ld from the gateway", op->http.http_status);
	else if (!anet_parse_reply_status(op->http.response, op->http.response_len, &st))
		text = "the gateway's reply could not be understood";
	else
	{
		succeeded = st.ok;
		code = pstrdup(st.message_code);
		text = pstrdup(st.message_text);
	}
	v[0] = Int64GetDatum(op->merchant_id);
	v[1] = TimestampTzGetDatum(op->created_at);
	v[2] = BoolGetDatum(succeeded);
	v[3] = payments_text_arg(code, &nulls[3]);
	v[4] = payments_text_arg(text, &nulls[4]);
	if (SPI_execute_with_args("SELECT payments._record_verification($1, $2, $3, $4, $5)",
							  5, types, v, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments worker: could not record a credentials check");
}
