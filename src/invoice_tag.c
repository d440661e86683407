/*-------------------------------------------------------------------------
 *
 * invoice_tag.c
 *	  payments._invoice_tag(): this installation's tag in invoice numbers
 *	  (P<tag><payment_id>, R<tag><operation_id>), kept in backend memory.
 *
 * Every payment, refund and renewal asks for it, and it never changes
 * once the install script made it: a query per payment (an executor, a
 * sort) was 3% of what a purchase costs its caller.  The tag is read once
 * per backend; the statement trigger on payments.installation_secrets
 * (_installation_secrets_changed) invalidates the table's relcache entry
 * at any change, restore included, and that drops it here as well.
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

static char *tag = NULL;		/* in TopMemoryContext; NULL: not read */
static Oid	tag_relid = InvalidOid;
static bool callback_registered = false;

static void
tag_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if ((relid == InvalidOid || relid == tag_relid) && tag != NULL)
	{
		pfree(tag);
		tag = NULL;
	}
}

/*
 * The oldest invoice_tag secret in hex, upper case, or NULL when there is
 * none (the install script always makes one).
 */
Datum
pay_invoice_tag(PG_FUNCTION_ARGS)
{
	Oid			relid = cached_table_watch("installation_secrets", tag_relcache_callback,
										   &callback_registered);
	HeapTuple	proc;
	Oid			owner;
	Oid			save_user;
	int			save_sec;

	if (tag != NULL && relid == tag_relid)
		PG_RETURN_TEXT_P(cstring_to_text(tag));

	/* as the function's owner (an error resets the user at abort) */
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT pg_catalog.upper(pg_catalog.encode(s.secret, 'hex')) "
					"FROM payments.installation_secrets s "
					"WHERE s.purpose OPERATOR(pg_catalog.=) 'invoice_tag' "
					"ORDER BY s.created_at, s.secret_id LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the invoice tag");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
		{
			if (tag != NULL)
				pfree(tag);
			tag = MemoryContextStrdup(TopMemoryContext, value);
			tag_relid = relid;
		}
	}
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	if (tag == NULL || tag_relid != relid)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tag));
}
