/*-------------------------------------------------------------------------
 *
 * status_guard.c
 *	  The status trigger of payments, operations, customers, payment
 *	  methods, subscriptions and invoices (payments._status_guard(entity),
 *	  status_machine.sql): refuses
 *	  a status transition that payments.status_transitions does not list,
 *	  stamps updated_at on every update, and writes an event for every
 *	  status change (and for every new row).
 *
 * It fires for every row the API and the worker write, on both sides of
 * the outbox, so it is C rather than PL/pgSQL (which turned each row into
 * an expanded record and back, and re-planned its statements whenever a
 * caller ran with plan_cache_mode = force_custom_plan): the transition is
 * one probe of status_transitions' primary key, the event one INSERT
 * through a saved plan per entity.  That plan is generic on purpose (one
 * INSERT of one row has no other plan), and every name in it is
 * schema-qualified, so the caller's search_path cannot change what it
 * means.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "errcodes.h"
#include "schema_version.h"

PG_FUNCTION_INFO_V1(pay_status_guard);

#define ERRCODE_PAY_INVALID_STATE	MAKE_SQLSTATE('2','2','Y','2','0')

#define MAX_EVENT_KEYS 16

/* the attnum that stands for the status before an update (no column) */
#define PREVIOUS_STATUS (-1)

/*
 * What an entity's events carry: the keys of the event's data, each the
 * row's column of that name, in this order (but "previous_status": the
 * status before an update, NULL for a new row); which of them also fill
 * the event's payment_id and operation_id columns; and whether a new row's
 * event is <entity>.created rather than <entity>.<status>.
 */
typedef struct EntitySpec
{
	const char *entity;
	const char *keys[MAX_EVENT_KEYS];	/* NULL-terminated */
	bool		payment_id;		/* events.payment_id := the payment_id key */
	bool		operation_id;	/* events.operation_id := the operation_id key */
	bool		created;		/* a new row's event is <entity>.created */
	/* per backend: the event INSERT, for the relation and types it was made for */
	SPIPlanPtr	plan;
	Oid			relid;
	int			nparams;
	Oid			types[MAX_EVENT_KEYS + 3];
	int			attnums[MAX_EVENT_KEYS + 3];
} EntitySpec;

static EntitySpec entities[] = {
	{"payment", {"payment_id", "kind", "status", "amount", "amount_captured",
			"amount_refunded", "card_brand", "card_last4", "invoice_number",
			"gateway_trans_id", "decline_code", "decline_reason", "metadata", NULL},
	.payment_id = true},
	{"payment_method", {"payment_method_id", "customer_id", "status", "card_brand",
			"card_last4", "card_exp_month", "card_exp_year", "failure_code",
	"failure_reason", NULL}, .payment_id = false},
	{"customer", {"customer_id", "status", "external_ref", NULL}, .payment_id = false,
	.created = true},
	{"subscription", {"subscription_id", "customer_id", "plan_id", "status", "previous_status",
			"unit_amount", "quantity", "current_period_start", "current_period_end",
	"cancel_at_period_end", NULL}, .payment_id = false, .created = true},
	{"invoice", {"invoice_id", "subscription_id", "kind", "status", "amount", "period_start",
			"period_end", "attempt_count", "payment_id", NULL}, .payment_id = true,
	.created = true},
	{"operation", {"operation_id", "payment_id", "kind", "status", "amount",
			"gateway_trans_id", "reason_code", "reason_text", NULL},
	.payment_id = true, .operation_id = true},
};

/* The relation's column of that name, or an error. */
static int
column_of(Relation rel, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("status trigger: relation \"%s\" has no column \"%s\"",
						RelationGetRelationName(rel), name)));
	return attnum;
}

/* A plan kept for the life of the backend, generic whatever plan_cache_mode says. */
static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "status trigger: could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "status trigger: could not keep a plan");
	return plan;
}

/*
 * The entity's event INSERT for this relation: $1 merchant_id, $2 the
 * event type, $3 correlation_id, $4... the data's keys.  Made again when
 * the relation or a column's type is not the one it was made for.
 */
static void
prepare_event_plan(EntitySpec *spec, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			attnums[MAX_EVENT_KEYS + 3];
	Oid			types[MAX_EVENT_KEYS + 3];
	int			n = 0;
	int			payment_param = 0;
	int			operation_param = 0;
	StringInfoData sql;

	attnums[n] = column_of(rel, "merchant_id");
	types[n++] = TupleDescAttr(desc, attnums[0] - 1)->atttypid;
	attnums[n] = 0;				/* the event type, made here */
	types[n++] = TEXTOID;
	attnums[n] = column_of(rel, "correlation_id");
	types[n] = TupleDescAttr(desc, attnums[n] - 1)->atttypid;
	n++;
	for (int i = 0; spec->keys[i] != NULL; i++)
	{
		if (strcmp(spec->keys[i], "previous_status") == 0)
		{
			attnums[n] = PREVIOUS_STATUS;
			types[n] = TEXTOID;
		}
		else
		{
			attnums[n] = column_of(rel, spec->keys[i]);
			types[n] = TupleDescAttr(desc, attnums[n] - 1)->atttypid;
		}
		n++;
		if (strcmp(spec->keys[i], "payment_id") == 0)
			payment_param = n;
		if (strcmp(spec->keys[i], "operation_id") == 0)
			operation_param = n;
	}

	if (spec->plan != NULL && spec->relid == RelationGetRelid(rel) && spec->nparams == n &&
		memcmp(spec->types, types, sizeof(Oid) * n) == 0 &&
		memcmp(spec->attnums, attnums, sizeof(int) * n) == 0)
		return;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO payments.events (merchant_id, event_type, correlation_id");
	if (spec->payment_id)
		appendStringInfoString(&sql, ", payment_id");
	if (spec->operation_id)
		appendStringInfoString(&sql, ", operation_id");
	appendStringInfoString(&sql, ", data) VALUES ($1, $2, $3");
	if (spec->payment_id)
		appendStringInfo(&sql, ", $%d", payment_param);
	if (spec->operation_id)
		appendStringInfo(&sql, ", $%d", operation_param);
	appendStringInfoString(&sql, ", pg_catalog.jsonb_build_object(");
	for (int i = 0; spec->keys[i] != NULL; i++)
		appendStringInfo(&sql, "%s%s, $%d", i > 0 ? ", " : "",
						 quote_literal_cstr(spec->keys[i]), i + 4);
	appendStringInfoString(&sql, "))");

	if (spec->plan != NULL)
	{
		SPI_freeplan(spec->plan);
		spec->plan = NULL;
	}
	spec->plan = keep_plan(sql.data, n, types);
	spec->relid = RelationGetRelid(rel);
	spec->nparams = n;
	memcpy(spec->types, types, sizeof(Oid) * n);
	memcpy(spec->attnums, attnums, sizeof(int) * n);
	pfree(sql.data);
}

/*
 * Raise unless payments.status_transitions lists the transition: one probe
 * of its primary key (entity, from_status, to_status) under the current
 * snapshot, without the executor.
 */
static void
check_transition(const char *entity, const char *from, const char *to)
{
	Oid			relid = get_relname_relid("status_transitions", get_namespace_oid("payments", false));
	Relation	rel;
	Oid			pk;
	SysScanDesc scan;
	ScanKeyData keys[3];
	const char *values[3] = {entity, from, to};
	bool		found;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"payments.status_transitions\" does not exist")));
	rel = table_open(relid, AccessShareLock);
	pk = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(pk))
		elog(ERROR, "status trigger: payments.status_transitions has no primary key");
	for (int i = 0; i < 3; i++)
		ScanKeyEntryInitialize(&keys[i], 0, i + 1, BTEqualStrategyNumber, InvalidOid,
							   DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(values[i]));
	scan = systable_beginscan(rel, pk, true, GetTransactionSnapshot(), 3, keys);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_INVALID_STATE),
				 errmsg("invalid %s status transition from %s to %s", entity, from, to),
				 errhint("payments.status_transitions lists the allowed transitions.")));
}

/* The status of a row as a C string, NULL for NULL. */
static char *
status_of(HeapTuple tuple, TupleDesc desc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Write the row's event: $1 merchant_id, $2 the event type, $3 correlation_id, $4... the data. */
static void
write_event(EntitySpec *spec, HeapTuple tuple, TupleDesc desc, const char *entity,
			bool is_insert, const char *new_status, const char *old_status)
{
	Datum		values[MAX_EVENT_KEYS + 3];
	char		nulls[MAX_EVENT_KEYS + 3];
	int			rc;

	for (int i = 0; i < spec->nparams; i++)
	{
		bool		isnull = false;

		if (i == 1)
		{
			/* the event type: <entity>.<status>, or <entity>.created */
			if (is_insert && spec->created)
				values[i] = CStringGetTextDatum(psprintf("%s.created", entity));
			else if (new_status == NULL)
				isnull = true;
			else
				values[i] = CStringGetTextDatum(psprintf("%s.%s", entity, new_status));
		}
		else if (spec->attnums[i] == PREVIOUS_STATUS)
		{
			if (is_insert || old_status == NULL)
				isnull = true;
			else
				values[i] = CStringGetTextDatum(old_status);
		}
		else
			values[i] = heap_getattr(tuple, spec->attnums[i], desc, &isnull);
		nulls[i] = isnull ? 'n' : ' ';
	}
	rc = SPI_execute_plan(spec->plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "status trigger: writing the event failed: %s", SPI_result_code_string(rc));
}

Datum
pay_status_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	EntitySpec *volatile spec = NULL;
	const char *entity;
	bool		is_insert;
	HeapTuple	tuple;
	char	   *new_status;
	char	   *volatile old_status = NULL;
	bool		changed;
	int			saved_plan_cache_mode;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)) ||
		td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._status_guard must fire BEFORE INSERT OR UPDATE FOR EACH ROW with the entity as its argument")));
	payments_require_schema();
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	is_insert = TRIGGER_FIRED_BY_INSERT(td->tg_event);
	tuple = is_insert ? td->tg_trigtuple : td->tg_newtuple;

	/*
	 * A restore (pg_dump scripts and pg_restore turn check_function_bodies
	 * off) loads rows whose events are restored from the dump themselves.
	 */
	if (!check_function_bodies && superuser())
		return PointerGetDatum(tuple);

	entity = td->tg_trigger->tgargs[0];
	for (size_t i = 0; i < lengthof(entities); i++)
		if (strcmp(entities[i].entity, entity) == 0)
			spec = &entities[i];
	if (spec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payments._status_guard does not know the entity \"%s\"", entity)));

	new_status = status_of(tuple, desc, column_of(rel, "status"));
	if (is_insert)
		changed = true;
	else
	{
		old_status = status_of(td->tg_trigtuple, desc, column_of(rel, "status"));
		changed = (old_status == NULL) != (new_status == NULL) ||
			(old_status != NULL && strcmp(old_status, new_status) != 0);
	}

	/* the new row, stamped, in the trigger's memory context */
	if (!is_insert)
	{
		int			col = column_of(rel, "updated_at");
		Datum		now = TimestampTzGetDatum(GetCurrentTimestamp());
		bool		isnull = false;

		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &col, &now, &isnull);
	}

	if (!changed)
		return PointerGetDatum(tuple);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "status trigger: SPI_connect failed");

	/*
	 * A caller's plan_cache_mode = force_custom_plan would win over
	 * CURSOR_OPT_GENERIC_PLAN and plan these INSERTs afresh for every row,
	 * and force_generic_plan (the worker's claim and record functions) is
	 * not theirs either: it is set aside while they run.
	 */
	saved_plan_cache_mode = plan_cache_mode;
	plan_cache_mode = PLAN_CACHE_MODE_AUTO;
	PG_TRY();
	{
		if (!is_insert)
			check_transition(entity, old_status ? old_status : "", new_status ? new_status : "");
		prepare_event_plan(spec, rel);
		write_event(spec, tuple, desc, entity, is_insert, new_status, old_status);
	}
	PG_FINALLY();
	{
		plan_cache_mode = saved_plan_cache_mode;
	}
	PG_END_TRY();
	SPI_finish();
	return PointerGetDatum(tuple);
}
