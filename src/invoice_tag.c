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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

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

	if (tag != NULL && relid == tag_relid)
		PG_RETURN_TEXT_P(cstring_to_text(tag));

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
	if (tag == NULL || tag_relid != relid)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tag));
}
