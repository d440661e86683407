/*-------------------------------------------------------------------------
 *
 * schema_version.c
 *	  Which versions of the extension's SQL schema this library serves.
 *
 * A new library may be installed (and the server restarted) before a DBA
 * runs ALTER EXTENSION payments UPDATE.  The C code assumes the tables,
 * functions and status rules of the schema it was built with, so until
 * then the calls that record or read payment work refuse with a hint, and
 * the worker waits (worker.c).  The types' own functions and the audit
 * trigger keep working against an older schema: the update itself, and
 * pg_dump/pg_restore, need them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "storage/proc.h"
#include "storage/sinval.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "errcodes.h"
#include "payments.h"
#include "schema_version.h"

/*
 * The schema versions this library serves: the one whose install script
 * was built with it (payments.control's default_version).  A release that
 * keeps the C interface of the one before it lists both.
 */
static const char *const served_versions[] = {PAYMENTS_VERSION};

/*
 * When the schema was last found served: in which transaction, and how
 * many invalidation messages this backend had taken in by then.  Asked
 * again (the audit trigger and the identity of every audited command
 * ask), it is not read again while no message came in since: CREATE and
 * DROP EXTENSION change cached catalogs, and so does every update script
 * of this extension (it replaces functions at least; keep it so: a
 * script that changed no cached catalog row would, before PostgreSQL
 * cached pg_extension itself, send no message), and their commit sends
 * messages that every backend, the sender included, takes in.  Within
 * one transaction the answer also stands (an ALTER EXTENSION later in
 * that same transaction is seen from the next one).
 */
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
static bool served_known = false;
static uint64 served_messages;
static bool callbacks_registered = false;

/*
 * A rollback undoes catalog changes without a message to anyone (this
 * backend's own CREATE or ALTER EXTENSION included), and so does PREPARE
 * TRANSACTION here: forget the answer.
 */
static void
forget_answer(void)
{
	served_known = false;
	checked_lxid = InvalidLocalTransactionId;
}

static void
schema_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		forget_answer();
}

static void
schema_subxact_callback(SubXactEvent event, SubTransactionId mySubid pg_attribute_unused(),
						SubTransactionId parentSubid pg_attribute_unused(),
						void *arg pg_attribute_unused())
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_answer();
}

SchemaState
payments_schema_state(char **version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	SchemaState state = SCHEMA_ABSENT;
	uint64		messages;

	if (version)
		*version = NULL;
	else
	{
		AcceptInvalidationMessages();
		if ((LocalTransactionIdIsValid(MyProc->lxid) && checked_lxid == MyProc->lxid) ||
			(served_known && served_messages == SharedInvalidMessageCounter))
			return SCHEMA_SERVED;
	}
	messages = SharedInvalidMessageCounter;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("payments"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *v = isnull ? NULL : TextDatumGetCString(d);

		state = SCHEMA_NOT_SERVED;
		for (size_t i = 0; v != NULL && i < lengthof(served_versions); i++)
			if (strcmp(v, served_versions[i]) == 0)
				state = SCHEMA_SERVED;
		if (version)
			*version = v;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!callbacks_registered)
	{
		RegisterXactCallback(schema_xact_callback, NULL);
		RegisterSubXactCallback(schema_subxact_callback, NULL);
		callbacks_registered = true;
	}
	served_known = (state == SCHEMA_SERVED);
	checked_lxid = served_known ? MyProc->lxid : InvalidLocalTransactionId;
	served_messages = messages;
	return state;
}

void
payments_require_schema(void)
{
	char	   *version;

	payments_require_preload();
	if (payments_schema_state(NULL) == SCHEMA_SERVED)
		return;
	switch (payments_schema_state(&version))
	{
		case SCHEMA_SERVED:
			return;
		case SCHEMA_ABSENT:
			ereport(ERROR,
					(errcode(ERRCODE_PAY_SCHEMA_NOT_SERVED),
					 errmsg("extension \"payments\" is not installed in this database"),
					 errhint("Run CREATE EXTENSION payments.")));
			break;
		case SCHEMA_NOT_SERVED:
			ereport(ERROR,
					(errcode(ERRCODE_PAY_SCHEMA_NOT_SERVED),
					 errmsg("the payments library %s cannot serve schema version %s",
							PAYMENTS_VERSION, version ? version : "(none)"),
					 errdetail("The installed library was built for schema version %s; this database still has the schema of another version.",
							   PAYMENTS_VERSION),
					 errhint("Run ALTER EXTENSION payments UPDATE in this database.")));
			break;
	}
}
