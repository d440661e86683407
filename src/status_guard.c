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
 * looked up in the backend's copy of status_transitions, and the event is
 * written with the table and index APIs (direct_insert.c), its data made
 * as jsonb_build_object makes it (jsonb_value.c; a timestamptz in UTC,
 * whatever the writing session's TimeZone), with no executor per row.  A
 * role that is not the owner of payments.events (a DBA who grants a table
 * to someone) writes it with one INSERT through a saved plan per entity
 * instead, under its privileges and row security, of the same data.
 * That plan is generic on purpose (one INSERT of one row has no other
 * plan), and every name in it is schema-qualified, so the caller's
 * search_path cannot change what it means.
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
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "cached_table.h"
#include "direct_insert.h"
#include "errcodes.h"
#include "jsonb_value.h"
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
	const char *also_on;		/* a column whose change writes an event with
								 * the status unchanged, or NULL */
	/* per backend, for the relation and types they were made for: */
	bool		layout_valid;	/* false after an invalidation of the relation */
	Oid			relid;
	int			status_attno;
	int			updated_at_attno;
	int			also_on_attno;	/* 0: none */
	int			nparams;
	Oid			types[MAX_EVENT_KEYS + 3];
	int			attnums[MAX_EVENT_KEYS + 3];
	int			payment_param;	/* the parameter of payment_id (1-based), 0: none */
	int			operation_param;
	SPIPlanPtr	plan;			/* the event INSERT, made when first needed */
	bool		have_data;		/* columns and keyorder are made */
	JsonbColumn columns[MAX_EVENT_KEYS];	/* how each key's value becomes jsonb */
	int			keyorder[MAX_EVENT_KEYS];	/* the keys in jsonb's order */
	MemoryContext data_cxt;		/* what columns point to */
	bool		direct_types;	/* the columns have the types of events' */
} EntitySpec;

static EntitySpec entities[] = {
	{"payment", {"payment_id", "kind", "status", "amount", "amount_captured",
			"amount_refunded", "card_brand", "card_last4", "invoice_number",
			"gateway_trans_id", "decline_code", "decline_reason", "metadata", NULL},
	/* a second partial refund leaves it partially_refunded, with more refunded */
	.payment_id = true, .also_on = "amount_refunded"},
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

/*
 * The allowed transitions, "entity\x1ffrom\x1fto" each (check_transition),
 * and whether they still say what payments.status_transitions says.
 */
#define TRANSITION_KEY_LEN 256
static HTAB *transitions = NULL;
static bool transitions_valid = false;
static Oid	transitions_oid = InvalidOid;
static bool invalidations_watched = false;

/*
 * Counts the invalidations heard: what was read while one arrived (catalog
 * reads take them in) is not marked valid.
 */
static uint64 invalidations = 0;

/* A relation changed: what was kept of it is looked up again. */
static void
status_guard_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	invalidations++;
	if (!OidIsValid(relid) || relid == transitions_oid)
		transitions_valid = false;
	for (size_t i = 0; i < lengthof(entities); i++)
		if (!OidIsValid(relid) || entities[i].relid == relid)
			entities[i].layout_valid = false;
}

/* A cast made or dropped: a key's way to jsonb may have changed (jsonb_value.c). */
static void
status_guard_cast_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
						   uint32 hashvalue pg_attribute_unused())
{
	invalidations++;
	for (size_t i = 0; i < lengthof(entities); i++)
	{
		entities[i].layout_valid = false;
		entities[i].have_data = false;
	}
}

static void
watch_invalidations(void)
{
	if (!invalidations_watched)
	{
		CacheRegisterRelcacheCallback(status_guard_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(CASTSOURCETARGET, status_guard_cast_callback, (Datum) 0);
		invalidations_watched = true;
	}
}

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

/* Whether column attnum holds the same value (or NULL) in both rows. */
static bool
column_unchanged(HeapTuple a, HeapTuple b, TupleDesc desc, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		anull;
	bool		bnull;
	Datum		av = heap_getattr(a, attnum, desc, &anull);
	Datum		bv = heap_getattr(b, attnum, desc, &bnull);

	if (anull || bnull)
		return anull == bnull;
	return datumIsEqual(av, bv, att->attbyval, att->attlen);
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

/* jsonb's order of object keys: shorter first, then bytewise */
static int
compare_keys(const void *x, const void *y, void *arg)
{
	const char *const *keys = (const char *const *) arg;
	const char *a = keys[*(const int *) x];
	const char *b = keys[*(const int *) y];
	size_t		la = strlen(a);
	size_t		lb = strlen(b);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(a, b, la);
}

/*
 * How an event's data is made: each key's value as jsonb_build_object()
 * makes it (src/jsonb_value.c; a timestamptz in UTC), the keys in jsonb's
 * order so that the object is not sorted again.  Made once per layout.
 */
static void
make_event_data(EntitySpec *spec, const Oid *types)
{
	int			nkeys = 0;

	if (spec->data_cxt == NULL)
		spec->data_cxt = AllocSetContextCreate(TopMemoryContext, "payments event data",
											   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(spec->data_cxt);
	for (int i = 0; spec->keys[i] != NULL; i++)
	{
		jsonb_column_init(&spec->columns[i], types[i + 3], -1, InvalidOid, spec->data_cxt);
		spec->keyorder[i] = i;
		nkeys++;
	}
	qsort_arg(spec->keyorder, nkeys, sizeof(int), compare_keys, spec->keys);
	spec->have_data = true;
}

/* The event's data ($4... values and isnull, by key), a jsonb object. */
static Datum
event_data(EntitySpec *spec, const Datum *values, const bool *isnull)
{
	JsonbParseState *state = NULL;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int k = 0; k < spec->nparams - 3; k++)
	{
		int			i = spec->keyorder[k];
		JsonbValue	key;

		key.type = jbvString;
		key.val.string.val = (char *) spec->keys[i];
		key.val.string.len = strlen(spec->keys[i]);
		pushJsonbValue(&state, WJB_KEY, &key);
		jsonb_column_push(&spec->columns[i], &state, values[i + 3], isnull[i + 3]);
	}
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/*
 * What the entity's events are made of for this relation: $1 merchant_id,
 * $2 the event type, $3 correlation_id, $4... the data's keys (their
 * columns and types); and the columns status and updated_at.  Looked up
 * once per backend and relation (a relcache invalidation, as ALTER TABLE
 * sends, makes it look again); the data call is made again, and the INSERT
 * plan of the SPI path goes, when a column's type is not the one it was
 * made for.
 */
static void
event_layout(EntitySpec *spec, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			attnums[MAX_EVENT_KEYS + 3];
	Oid			types[MAX_EVENT_KEYS + 3];
	int			n = 0;
	int			payment_param = 0;
	int			operation_param = 0;
	uint64		heard;

	if (spec->layout_valid && spec->relid == RelationGetRelid(rel))
		return;
	watch_invalidations();
	heard = invalidations;
	spec->layout_valid = false;
	spec->status_attno = column_of(rel, "status");
	spec->updated_at_attno = column_of(rel, "updated_at");
	spec->also_on_attno = spec->also_on ? column_of(rel, spec->also_on) : 0;

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

	if (spec->have_data && spec->relid == RelationGetRelid(rel) && spec->nparams == n &&
		memcmp(spec->types, types, sizeof(Oid) * n) == 0 &&
		memcmp(spec->attnums, attnums, sizeof(int) * n) == 0)
	{
		spec->layout_valid = (heard == invalidations);
		return;
	}

	if (spec->plan != NULL)
	{
		SPI_freeplan(spec->plan);
		spec->plan = NULL;
	}
	spec->have_data = false;	/* its context is reset below */
	spec->relid = RelationGetRelid(rel);
	spec->nparams = n;
	memcpy(spec->types, types, sizeof(Oid) * n);
	memcpy(spec->attnums, attnums, sizeof(int) * n);
	spec->payment_param = spec->payment_id ? payment_param : 0;
	spec->operation_param = spec->operation_id ? operation_param : 0;
	spec->direct_types = types[0] == INT8OID && types[2] == TEXTOID &&
		(spec->payment_param == 0 || types[spec->payment_param - 1] == INT8OID) &&
		(spec->operation_param == 0 || types[spec->operation_param - 1] == INT8OID);
	make_event_data(spec, types);
	/* a cast changed meanwhile: made again at the next row */
	spec->have_data = spec->layout_valid = (heard == invalidations);
}

/*
 * The row's values ($1... as write_event() gathers them) that the SPI
 * path's event INSERT takes, in its order: merchant_id, the event type,
 * correlation_id, then payment_id and operation_id where the entity has
 * them (the data comes last).  Returns how many.
 */
#define EVENT_ROW_PARAMS 5
static int
event_sources(const EntitySpec *spec, int *from)
{
	int			n = 0;

	from[n++] = 1;
	from[n++] = 2;
	from[n++] = 3;
	if (spec->payment_param)
		from[n++] = spec->payment_param;
	if (spec->operation_param)
		from[n++] = spec->operation_param;
	return n;
}

/*
 * The SPI path's event INSERT (connected to SPI), made on first use, with
 * the parameters it uses only: $1 merchant_id, $2 the event type, $3
 * correlation_id, then payment_id and operation_id where the entity has
 * them, and last the data, made by event_data() as the direct path makes
 * it (not jsonb_build_object() of the values, which wrote a timestamptz in
 * the session's TimeZone).  event_args() gives its values.
 */
static SPIPlanPtr
event_plan(EntitySpec *spec)
{
	StringInfoData sql;
	int			from[EVENT_ROW_PARAMS];
	Oid			types[EVENT_ROW_PARAMS + 1];
	int			n;

	if (spec->plan != NULL)
		return spec->plan;
	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO payments.events (merchant_id, event_type, correlation_id");
	if (spec->payment_param)
		appendStringInfoString(&sql, ", payment_id");
	if (spec->operation_param)
		appendStringInfoString(&sql, ", operation_id");
	appendStringInfoString(&sql, ", data) VALUES ($1");
	n = event_sources(spec, from);
	for (int i = 0; i < n; i++)
	{
		types[i] = spec->types[from[i] - 1];
		if (i > 0)
			appendStringInfo(&sql, ", $%d", i + 1);
	}
	types[n] = JSONBOID;
	appendStringInfo(&sql, ", $%d)", n + 1);
	spec->plan = keep_plan(sql.data, n + 1, types);
	pfree(sql.data);
	return spec->plan;
}

/*
 * The values of event_plan()'s parameters, from the row's ($1... as
 * write_event() gathers them) and the data.
 */
static void
event_args(EntitySpec *spec, const Datum *values, const bool *isnull, Datum data,
		   Datum *args, char *nulls)
{
	int			from[EVENT_ROW_PARAMS];
	int			n = event_sources(spec, from);

	for (int i = 0; i < n; i++)
	{
		args[i] = values[from[i] - 1];
		nulls[i] = isnull[from[i] - 1] ? 'n' : ' ';
	}
	args[n] = data;
	nulls[n] = ' ';
}

/* payments.status_transitions' OID, an error when it does not exist */
static Oid
transitions_relid(void)
{
	Oid			relid = cached_table_relid("status_transitions");

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"payments.status_transitions\" does not exist")));
	return relid;
}

/* A transition as one key: "entity\x1ffrom\x1fto"; false when too long. */
static bool
transition_key(char *key, const char *entity, const char *from, const char *to)
{
	int			len = snprintf(key, TRANSITION_KEY_LEN, "%s\x1f%s\x1f%s", entity, from, to);

	return len >= 0 && len < TRANSITION_KEY_LEN;
}

/*
 * Read payments.status_transitions into the backend's set, under a fresh
 * snapshot: the set outlives the transaction.
 */
static void
load_transitions(void)
{
	Oid			relid = transitions_relid();
	HASHCTL		ctl;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tuple;
	Snapshot	snapshot;
	uint64		heard;

	/* invalid until read whole: an error halfway leaves it to be read again */
	transitions_valid = false;
	if (transitions != NULL)
		hash_destroy(transitions);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = TRANSITION_KEY_LEN;
	ctl.entrysize = TRANSITION_KEY_LEN;
	transitions = hash_create("payments status transitions", 256, &ctl, HASH_ELEM | HASH_STRINGS);
	transitions_oid = relid;

	rel = table_open(relid, AccessShareLock);
	heard = invalidations;
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		char		key[TRANSITION_KEY_LEN];
		char	   *parts[3];

		for (int i = 0; i < 3; i++)
		{
			bool		isnull;
			Datum		d = heap_getattr(tuple, i + 1, RelationGetDescr(rel), &isnull);

			parts[i] = isnull ? NULL : TextDatumGetCString(d);
		}
		/* a NULL part matches nothing; one too long is probed for instead */
		if (parts[0] && parts[1] && parts[2] && transition_key(key, parts[0], parts[1], parts[2]))
			hash_search(transitions, key, HASH_ENTER, NULL);
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	/* a change heard while it was read: read again at the next check */
	transitions_valid = (heard == invalidations);
}

/*
 * Whether payments.status_transitions lists the transition, by one probe
 * of its primary key (entity, from_status, to_status) under the current
 * snapshot, without the executor: for a key too long for the set.
 */
static bool
probe_transition(const char *entity, const char *from, const char *to)
{
	Relation	rel = table_open(transitions_relid(), AccessShareLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	SysScanDesc scan;
	ScanKeyData keys[3];
	const char *values[3] = {entity, from, to};
	bool		found;

	if (!OidIsValid(pk))
		elog(ERROR, "status trigger: payments.status_transitions has no primary key");
	for (int i = 0; i < 3; i++)
		ScanKeyEntryInitialize(&keys[i], 0, i + 1, BTEqualStrategyNumber, InvalidOid,
							   DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(values[i]));
	scan = systable_beginscan(rel, pk, true, GetTransactionSnapshot(), 3, keys);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Raise unless payments.status_transitions lists the transition.  Every
 * update that changes a status asks, so the table (reference data that
 * only the extension's scripts change) is kept in the backend: its
 * statement trigger and any DDL on it make every backend read it again.
 */
static void
check_transition(const char *entity, const char *from, const char *to)
{
	char		key[TRANSITION_KEY_LEN];
	bool		found;

	watch_invalidations();
	if (!transitions_valid)
		load_transitions();
	if (transition_key(key, entity, from, to))
		found = hash_search(transitions, key, HASH_FIND, NULL) != NULL;
	else
		found = probe_transition(entity, from, to);
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

/*
 * Where events go directly (src/direct_insert.c): the columns the trigger
 * fills; event_id and created_at get their defaults.
 */
static const char *const event_columns[] = {
	"merchant_id", "event_type", "payment_id", "operation_id", "data", "correlation_id"
};
static const Oid event_column_types[] = {INT8OID, TEXTOID, INT8OID, INT8OID, JSONBOID, TEXTOID};
static DirectTable events_table = {
	.label = "payments events writer",
	.ncolumns = lengthof(event_columns),
	.columns = event_columns,
	.types = event_column_types,
};

/*
 * Write the row's event ($1 merchant_id, $2 the event type, $3
 * correlation_id, $4... the data): directly when the current user may
 * write payments.events as an INSERT would (the owner of the API's
 * SECURITY DEFINER functions, the worker), else through SPI, with the
 * privileges and row security of whoever changed the row.
 */
static void
write_event(EntitySpec *spec, HeapTuple tuple, TupleDesc desc, const char *entity,
			bool is_insert, const char *new_status, const char *old_status)
{
	Datum		values[MAX_EVENT_KEYS + 3];
	bool		isnull[MAX_EVENT_KEYS + 3];
	Datum		args[EVENT_ROW_PARAMS + 1];	/* the SPI path's parameters */
	char		nulls[EVENT_ROW_PARAMS + 1];
	DirectTable *events;
	int			saved_plan_cache_mode;
	int			rc;

	for (int i = 0; i < spec->nparams; i++)
	{
		isnull[i] = false;
		if (i == 1)
		{
			/* the event type: <entity>.<status>, or <entity>.created */
			if (is_insert && spec->created)
				values[i] = CStringGetTextDatum(psprintf("%s.created", entity));
			else if (new_status == NULL)
				isnull[i] = true;
			else
				values[i] = CStringGetTextDatum(psprintf("%s.%s", entity, new_status));
		}
		else if (spec->attnums[i] == PREVIOUS_STATUS)
		{
			if (is_insert || old_status == NULL)
				isnull[i] = true;
			else
				values[i] = CStringGetTextDatum(old_status);
		}
		else
			values[i] = heap_getattr(tuple, spec->attnums[i], desc, &isnull[i]);
	}

	events = spec->direct_types ? direct_table_get(&events_table, cached_table_relid("events")) : NULL;
	if (events != NULL && direct_table_writable(events))
	{
		Datum		row[lengthof(event_columns)];
		bool		rownulls[lengthof(event_columns)];

		row[4] = event_data(spec, values, isnull);
		rownulls[4] = false;
		row[0] = values[0];
		rownulls[0] = isnull[0];
		row[1] = values[1];
		rownulls[1] = isnull[1];
		row[2] = spec->payment_param ? values[spec->payment_param - 1] : (Datum) 0;
		rownulls[2] = spec->payment_param ? isnull[spec->payment_param - 1] : true;
		row[3] = spec->operation_param ? values[spec->operation_param - 1] : (Datum) 0;
		rownulls[3] = spec->operation_param ? isnull[spec->operation_param - 1] : true;
		row[5] = values[2];
		rownulls[5] = isnull[2];
		direct_table_insert(events, row, rownulls);
		return;
	}

	event_args(spec, values, isnull, event_data(spec, values, isnull), args, nulls);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "status trigger: SPI_connect failed");

	/*
	 * A caller's plan_cache_mode = force_custom_plan would win over
	 * CURSOR_OPT_GENERIC_PLAN and plan this INSERT afresh for every row,
	 * and force_generic_plan (the worker's claim and record functions) is
	 * not its either: it is set aside while it runs.
	 */
	saved_plan_cache_mode = plan_cache_mode;
	plan_cache_mode = PLAN_CACHE_MODE_AUTO;
	PG_TRY();
	{
		rc = SPI_execute_plan(event_plan(spec), args, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "status trigger: writing the event failed: %s", SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		plan_cache_mode = saved_plan_cache_mode;
	}
	PG_END_TRY();
	SPI_finish();
}

Datum
pay_status_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	EntitySpec *spec = NULL;
	const char *entity;
	bool		is_insert;
	HeapTuple	tuple;
	char	   *new_status;
	char	   *old_status = NULL;
	bool		changed;

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
	 * A superuser's session: the outer user (SET ROLE, else the login
	 * role), not the current one, which inside the API's SECURITY DEFINER
	 * functions is their owner.  Any caller may turn check_function_bodies
	 * off; before, its pay_purchase then wrote no event and no transition
	 * was checked.
	 */
	if (!check_function_bodies && superuser_arg(GetOuterUserId()))
		return PointerGetDatum(tuple);

	entity = td->tg_trigger->tgargs[0];
	for (size_t i = 0; i < lengthof(entities); i++)
		if (strcmp(entities[i].entity, entity) == 0)
			spec = &entities[i];
	if (spec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payments._status_guard does not know the entity \"%s\"", entity)));

	event_layout(spec, rel);
	new_status = status_of(tuple, desc, spec->status_attno);
	if (is_insert)
		changed = true;
	else
	{
		old_status = status_of(td->tg_trigtuple, desc, spec->status_attno);
		changed = (old_status == NULL) != (new_status == NULL) ||
			(old_status != NULL && strcmp(old_status, new_status) != 0);
		if (changed)
			check_transition(entity, old_status ? old_status : "", new_status ? new_status : "");
		else if (spec->also_on_attno > 0)
			changed = !column_unchanged(td->tg_trigtuple, tuple, desc, spec->also_on_attno);
	}

	/* the new row, stamped, in the trigger's memory context */
	if (!is_insert)
	{
		int			col = spec->updated_at_attno;
		Datum		now = TimestampTzGetDatum(GetCurrentTimestamp());
		bool		isnull = false;

		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &col, &now, &isnull);
	}

	if (!changed)
		return PointerGetDatum(tuple);
	write_event(spec, tuple, desc, entity, is_insert, new_status, old_status);
	return PointerGetDatum(tuple);
}
