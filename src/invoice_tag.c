/*-------------------------------------------------------------------------
 *
 * invoice_tag.c
 *	  payments._invoice_tag(): this installation's tag in invoice numbers
 *	  (P<tag><payment_id>, R<tag><operation_id>), and payments._server_tag():
 *	  the tag of this server life (worker_server.server_tag), which a new
 *	  payment's number carries once the database changed server (a dump
 *	  restored, a standby promoted: sequences there hand out again the ids
 *	  the server before used after the copy).  Both kept in backend memory.
 *
 * Every payment, refund and renewal asks for it, and it never changes
 * once the install script made it: a query per payment (an executor, a
 * sort) was 3% of what a purchase costs its caller.  The tag is read once
 * per backend; the statement trigger on payments.installation_secrets
 * (_installation_secrets_changed) invalidates the table's relcache entry
 * at any change, restore included, and that drops it here as well; the
 * same trigger on payments.worker_server drops the server's tag.
 *
 * Not SECURITY DEFINER: fmgr would then set the function's search_path
 * and restore it at every call (11,000 instructions of each purchase) to
 * serve a string from memory.  Only the read of the table needs the
 * owner's rights, and it runs as the function's owner; its statement names
 * everything with its schema, so no search_path can change it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "cached_table.h"

PG_FUNCTION_INFO_V1(pay_invoice_tag);
PG_FUNCTION_INFO_V1(pay_server_tag);

/* one tag kept in memory until its table changes */
typedef struct CachedTag
{
	const char *relname;		/* the table it is read from */
	const char *query;			/* one row, one text column (NULL: none) */
	char	   *value;			/* in TopMemoryContext; NULL: none */
	bool		known;			/* value was read for relid (NULL too) */
	Oid			relid;
	bool		callback_registered;
} CachedTag;

static CachedTag invoice_tag = {
	"installation_secrets",
	"SELECT pg_catalog.upper(pg_catalog.encode(s.secret, 'hex')) "
	"FROM payments.installation_secrets s "
	"WHERE s.purpose OPERATOR(pg_catalog.=) 'invoice_tag' "
	"ORDER BY s.created_at, s.secret_id LIMIT 1",
	NULL, false, InvalidOid, false
};

static CachedTag server_tag = {
	"worker_server",
	"SELECT w.server_tag FROM payments.worker_server w",
	NULL, false, InvalidOid, false
};

static void
forget_tag(CachedTag *t, Oid relid)
{
	if (relid == InvalidOid || relid == t->relid)
	{
		if (t->value != NULL)
			pfree(t->value);
		t->value = NULL;
		t->known = false;
	}
}

static void
invoice_tag_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	forget_tag(&invoice_tag, relid);
}

static void
server_tag_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	forget_tag(&server_tag, relid);
}

/*
 * The tag t's query reads, or NULL when it reads none, read as the owner of
 * the SQL function called (fcinfo's).
 */
static Datum
cached_tag(CachedTag *t, RelcacheCallbackFunction callback, FunctionCallInfo fcinfo)
{
	Oid			relid = cached_table_watch(t->relname, callback, &t->callback_registered);
	HeapTuple	proc;
	Oid			owner;
	Oid			save_user;
	int			save_sec;

	if (t->known && relid == t->relid)
	{
		if (t->value == NULL)
			PG_RETURN_NULL();
		PG_RETURN_TEXT_P(cstring_to_text(t->value));
	}

	/*
	 * as the function's owner (an error resets the user at abort), past row
	 * security even if forced on the owner, as tenancy.c and audit.c read:
	 * refused, the tag would read as none and old numbers come back
	 */
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(t->query, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read a tag of invoice numbers from %s", t->relname);
	/*
	 * none (NULL) is kept as well: the server's tag is NULL until the
	 * database first changes server, and every payment asks for it
	 */
	t->known = false;
	if (t->value != NULL)
		pfree(t->value);
	t->value = NULL;
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
			t->value = MemoryContextStrdup(TopMemoryContext, value);
	}
	t->relid = relid;
	t->known = true;
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	if (t->value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(t->value));
}

/*
 * The oldest invoice_tag secret in hex, upper case, or NULL when there is
 * none (the install script always makes one).
 */
Datum
pay_invoice_tag(PG_FUNCTION_ARGS)
{
	return cached_tag(&invoice_tag, invoice_tag_callback, fcinfo);
}

/*
 * The tag of this server life (worker_server.server_tag), NULL while the
 * database never changed server.
 */
Datum
pay_server_tag(PG_FUNCTION_ARGS)
{
	return cached_tag(&server_tag, server_tag_callback, fcinfo);
}
