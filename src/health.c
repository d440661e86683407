/*-------------------------------------------------------------------------
 *
 * health.c
 *	  The worker seen from SQL: health, restart, Prometheus metrics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "jsonb_value.h"
#include "payments.h"
#include "schema_version.h"
#include "record_queue.h"
#include "shmem.h"
#include "tenancy.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(pay_worker_health);
PG_FUNCTION_INFO_V1(pay_worker_restart);
PG_FUNCTION_INFO_V1(pay_metrics);

/*
 * The queue depth of this database, counted here (as the extension owner:
 * pg_monitor reads no table): in a database the worker does not serve, the
 * worker's published count is another database's.
 */
static int64
queue_depth_here(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int64		n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	payments_select_as_owner(PAYMENTS_QUEUE_DEPTH_QUERY, &plan, "the queue depth");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return n;
}

static const char *
circuit_name(uint32 state)
{
	switch (state)
	{
		case CIRCUIT_OPEN:
			return "open";
		case CIRCUIT_HALF_OPEN:
			return "half_open";
		default:
			return "closed";
	}
}

/* A consistent copy of the failing merchants the worker published. */
static int
failing_snapshot(FailingGateway *out, int *total)
{
	PaymentsShared *s = payments_shared;
	int			n;

	SpinLockAcquire(&s->failing_lock);
	n = Min(s->failing_shown, FAILING_GATEWAYS_SHOWN);
	*total = s->failing_total;
	memcpy(out, s->failing, sizeof(FailingGateway) * n);
	SpinLockRelease(&s->failing_lock);
	return n;
}

/*
 * The failing merchants as a jsonb array of {merchant_id, failing_since,
 * error_code, error_text} (no secrets: the gateway's code and text);
 * failing_since in UTC (src/jsonb_value.c), the same text for every caller
 * whatever its TimeZone.
 */
static Datum
failing_jsonb(const FailingGateway *g, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
	{
		char		ts[MAXDATELEN + 1];

		appendStringInfo(&buf, "%s{\"merchant_id\": " INT64_FORMAT ", \"failing_since\": \"%s\", \"error_code\": ",
						 i > 0 ? ", " : "", g[i].merchant_id,
						 jsonb_datetime_text(ts, TimestampTzGetDatum(g[i].since), TIMESTAMPTZOID));
		escape_json(&buf, g[i].code);
		appendStringInfoString(&buf, ", \"error_text\": ");
		escape_json(&buf, g[i].text);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* A process's published time (a slot of loop_start's), NULL while none */
static void
conf_loaded_at(pg_atomic_uint64 *slot, Datum *value, bool *isnull)
{
	uint64		t = pg_atomic_read_u64(slot);

	*value = TimestampTzGetDatum((TimestampTz) t);
	*isnull = t == 0;
}

/*
 * pay_worker_health(): alive, pid, started_at, last_loop_at, queue_depth,
 * in_flight, max_in_flight, circuit_state, the outcome counters, and the
 * merchants whose gateway account is failing (how many, and the oldest).
 * "alive" means a worker is registered and went round its loop within the
 * last five seconds (it goes round at least once a second).  The column
 * served_database names the database the worker serves
 * (payments.database); in any other no worker serves this one: alive is
 * false, queue_depth is this database's own (nobody sends it) and the
 * worker's columns, which are about that other database, are NULL.  The
 * columns after it, worker_conf_loaded_at, recorder_conf_loaded_at and
 * billing_conf_loaded_at, are the pg_conf_load_time() each background
 * process goes by (loop_start in worker_tx.c), NULL before its first round.
 */
Datum
pay_worker_health(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[20];
	bool		nulls[20];
	FailingGateway failing[FAILING_GATEWAYS_SHOWN];
	int			nfailing;
	int			failing_total;
	uint32		pid;
	uint64		last;
	uint64		started;
	PaymentsShared *s;

	payments_require_schema();
	s = payments_shared;
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pay_worker_health must return a record");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));

	values[16] = CStringGetTextDatum(payments_database);
	if (!payments_database_served())
	{
		values[0] = BoolGetDatum(false);
		values[4] = Int64GetDatum(queue_depth_here());
		for (int i = 1; i < 20; i++)
			nulls[i] = i != 4 && i != 16;
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	pid = pg_atomic_read_u32(&s->worker_pid);
	last = pg_atomic_read_u64(&s->last_loop_us);
	started = pg_atomic_read_u64(&s->worker_started_us);
	values[0] = BoolGetDatum(pid != 0 && last != 0 &&
							 !TimestampDifferenceExceeds((TimestampTz) last, GetCurrentTimestamp(), 5000));
	values[1] = Int32GetDatum((int32) pid);
	nulls[1] = pid == 0;
	values[2] = TimestampTzGetDatum((TimestampTz) started);
	nulls[2] = started == 0;
	values[3] = TimestampTzGetDatum((TimestampTz) last);
	nulls[3] = last == 0;
	values[4] = Int64GetDatum(pg_atomic_read_u32(&s->queue_depth));
	values[5] = Int32GetDatum(pg_atomic_read_u32(&s->in_flight));
	values[6] = Int32GetDatum(pg_atomic_read_u32(&s->max_in_flight));
	values[7] = CStringGetTextDatum(circuit_name(pg_atomic_read_u32(&s->circuit_state)));
	values[8] = Int64GetDatum(pg_atomic_read_u64(&s->requests_sent));
	values[9] = Int64GetDatum(pg_atomic_read_u64(&s->approved));
	values[10] = Int64GetDatum(pg_atomic_read_u64(&s->declined));
	values[11] = Int64GetDatum(pg_atomic_read_u64(&s->errors));
	values[12] = Int64GetDatum(pg_atomic_read_u64(&s->unknown_outcomes));
	values[13] = Int64GetDatum(pg_atomic_read_u64(&s->retries));
	nfailing = failing_snapshot(failing, &failing_total);
	values[14] = Int32GetDatum(failing_total);
	values[15] = failing_jsonb(failing, nfailing);
	conf_loaded_at(&s->worker_conf_loaded_us, &values[17], &nulls[17]);
	conf_loaded_at(&s->recorder_conf_loaded_us, &values[18], &nulls[18]);
	conf_loaded_at(&s->billing_conf_loaded_us, &values[19], &nulls[19]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pay_worker_restart(): ask the worker to exit; the postmaster starts a
 * new one within a second.  Operations it had in flight are resolved by
 * the new worker (never resent blindly).  Returns whether a worker was
 * running.  Only where it serves: from another database with the
 * extension, whose owner need not be the served one's, the worker of
 * payments.database and its transfers in flight are left alone (false).
 */
Datum
pay_worker_restart(PG_FUNCTION_ARGS)
{
	bool		running;

	payments_require_schema();
	if (!payments_database_served())
		PG_RETURN_BOOL(false);
	running = pg_atomic_read_u32(&payments_shared->worker_pid) != 0;
	pg_atomic_write_u32(&payments_shared->restart_requested, 1);
	wake_worker_now();
	PG_RETURN_BOOL(running);
}

static void
histogram_text(StringInfo buf, const char *name, const char *help, LatencyHistogram *h)
{
	uint64		cumulative = 0;

	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < LATENCY_BUCKETS; i++)
	{
		cumulative += pg_atomic_read_u64(&h->buckets[i]);
		if (latency_bucket_le_ms[i] < 0)
			appendStringInfo(buf, "%s_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n", name, cumulative);
		else
			appendStringInfo(buf, "%s_bucket{le=\"%g\"} " UINT64_FORMAT "\n", name,
							 latency_bucket_le_ms[i] / 1000.0, cumulative);
	}
	appendStringInfo(buf, "%s_sum %.6f\n%s_count " UINT64_FORMAT "\n",
					 name, (double) pg_atomic_read_u64(&h->sum_us) / 1e6,
					 name, pg_atomic_read_u64(&h->count));
}

static void
counter_text(StringInfo buf, const char *name, const char *help, uint64 v)
{
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s counter\n%s " UINT64_FORMAT "\n",
					 name, help, name, name, v);
}

static void
gauge_text(StringInfo buf, const char *name, const char *help, uint64 v)
{
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s gauge\n%s " UINT64_FORMAT "\n",
					 name, help, name, name, v);
}

/* A label value made of letters and digits only (a gateway code). */
static void
label_value(StringInfo buf, const char *v)
{
	for (; *v; v++)
		if ((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') || (*v >= '0' && *v <= '9'))
			appendStringInfoChar(buf, *v);
}

/* The merchants whose gateway account fails: a count, then one series each. */
static void
failing_text(StringInfo buf)
{
	FailingGateway failing[FAILING_GATEWAYS_SHOWN];
	int			total;
	int			n = failing_snapshot(failing, &total);

	gauge_text(buf, "payments_gateway_failing_merchants",
			   "Merchants whose gateway account fails (an account error such as E00007): their operations are held, not failed.",
			   (uint64) Max(total, 0));
	appendStringInfoString(buf, "# HELP payments_gateway_account_failing 1 for each merchant whose gateway account fails (the oldest "
						   CppAsString2(FAILING_GATEWAYS_SHOWN) "), with the last error code.\n"
						   "# TYPE payments_gateway_account_failing gauge\n");
	for (int i = 0; i < n; i++)
	{
		appendStringInfo(buf, "payments_gateway_account_failing{merchant_id=\"" INT64_FORMAT "\",code=\"",
						 failing[i].merchant_id);
		label_value(buf, failing[i].code);
		appendStringInfoString(buf, "\"} 1\n");
	}
	appendStringInfoString(buf, "# HELP payments_gateway_account_failing_since_seconds Since when each of those merchants' gateway account fails (Unix time).\n"
						   "# TYPE payments_gateway_account_failing_since_seconds gauge\n");
	for (int i = 0; i < n; i++)
		appendStringInfo(buf, "payments_gateway_account_failing_since_seconds{merchant_id=\"" INT64_FORMAT "\"} %.3f\n",
						 failing[i].merchant_id,
						 (double) failing[i].since / USECS_PER_SEC +
						 (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

/* pay_metrics(): counters, gauges and latency histograms, Prometheus text. */
Datum
pay_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	PaymentsShared *s;

	payments_require_schema();
	s = payments_shared;
	initStringInfo(&buf);
	if (!payments_database_served())
	{
		/* no worker here: what the worker publishes is another database's */
		gauge_text(&buf, "payments_worker_up", "Whether a payments worker is running (and serves this database).", 0);
		gauge_text(&buf, "payments_database_served", "Whether the payments worker serves this database (payments.database names it).", 0);
		gauge_text(&buf, "payments_queue_depth", "Operations queued or being resolved in this database, which no worker serves: they are never sent.",
				   (uint64) queue_depth_here());
		PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
	}
	gauge_text(&buf, "payments_worker_up", "Whether a payments worker is running (and serves this database).",
			   pg_atomic_read_u32(&s->worker_pid) != 0);
	gauge_text(&buf, "payments_database_served", "Whether the payments worker serves this database (payments.database names it).", 1);
	gauge_text(&buf, "payments_queue_depth", "Operations queued or being resolved (waiting for their next attempt or look-up; those in flight are payments_in_flight).",
			   pg_atomic_read_u32(&s->queue_depth));
	gauge_text(&buf, "payments_in_flight", "Gateway requests in flight.",
			   pg_atomic_read_u32(&s->in_flight));
	gauge_text(&buf, "payments_circuit_open", "1 when the gateway circuit breaker is open or half open.",
			   pg_atomic_read_u32(&s->circuit_state) != CIRCUIT_CLOSED);
	counter_text(&buf, "payments_gateway_requests_total", "Gateway requests started.",
				 pg_atomic_read_u64(&s->requests_sent));
	counter_text(&buf, "payments_approved_total", "Operations approved (or held for review).",
				 pg_atomic_read_u64(&s->approved));
	counter_text(&buf, "payments_declined_total", "Operations declined.",
				 pg_atomic_read_u64(&s->declined));
	counter_text(&buf, "payments_errors_total", "Operations that ended in a gateway error or rejection.",
				 pg_atomic_read_u64(&s->errors));
	counter_text(&buf, "payments_unknown_outcomes_total", "Attempts whose outcome was unknown and had to be resolved.",
				 pg_atomic_read_u64(&s->unknown_outcomes));
	counter_text(&buf, "payments_retries_total", "Attempts retried because they provably did not reach the gateway or it asked to.",
				 pg_atomic_read_u64(&s->retries));
	counter_text(&buf, "payments_transport_failures_total", "Transfers that failed below HTTP.",
				 pg_atomic_read_u64(&s->transport_failures));
	failing_text(&buf);
	counter_text(&buf, "payments_worker_errors_total", "Worker transactions that failed (logged with their SQLSTATE; the worker goes on).",
				 pg_atomic_read_u64(&s->worker_errors));
	gauge_text(&buf, "payments_unrecorded_outcomes", "Gateway answers whose recording failed, held by the worker to be recorded again.",
			   pg_atomic_read_u32(&s->unrecorded));
	gauge_text(&buf, "payments_recorder_up", "Whether the recorder, which records final answers beside the worker, is running.",
			   record_queue_recorder() != 0);
	counter_text(&buf, "payments_recorder_batches_total", "Batches of results the recorder recorded.",
				 record_queue_recorded_batches());
	counter_text(&buf, "payments_recorder_results_total", "Final answers the recorder recorded (the worker records the rest).",
				 record_queue_recorded_results());
	gauge_text(&buf, "payments_recorder_memory_bytes", "Memory the recorder has allocated (its TopMemoryContext and children), updated every second.",
			   record_queue_recorder_memory());
	gauge_text(&buf, "payments_worker_memory_bytes", "Memory the worker has allocated (its TopMemoryContext and children), updated every second.",
			   pg_atomic_read_u64(&s->worker_memory));
	histogram_text(&buf, "payments_gateway_latency_seconds", "Round trip of one gateway request.",
				   &s->gateway_latency);
	histogram_text(&buf, "payments_result_latency_seconds", "From an operation's creation to its committed result.",
				   &s->result_latency);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
