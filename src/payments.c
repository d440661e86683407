/*-------------------------------------------------------------------------
 *
 * payments.c
 *	  Module load: settings, the preload requirement.
 *
 * The extension must be in shared_preload_libraries: its background worker
 * and shared memory can only be set up by the postmaster, and the card
 * vault key is loaded there once.  CREATE EXTENSION checks this and refuses
 * with a hint when the library was loaded late.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "card.h"
#include "payments.h"

PG_MODULE_MAGIC;

bool		payments_preloaded = false;
char	   *payments_database = NULL;
char	   *payments_merchant_id = NULL;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(pay_assert_preloaded);

/*
 * Define settings; note whether we are being preloaded.  A late load (no
 * preload) defines only the per-session settings, so that CREATE EXTENSION
 * can reach its friendly error instead of a FATAL.
 */
void
_PG_init(void)
{
	DefineCustomStringVariable("payments.merchant_id",
							   "Merchant the session acts for when no JWT claim names one.",
							   "Empty means the default merchant.",
							   &payments_merchant_id,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("payments");
		return;
	}

	/* postmaster-only settings can be defined only at preload time */
	DefineCustomStringVariable("payments.database",
							   "Database served by the payments background worker.",
							   "The worker waits quietly until the extension is created there.",
							   &payments_database,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("payments");

	/*
	 * libcurl's global state must be set up once, before any thread exists:
	 * the postmaster is the place, and backends and the worker inherit it.
	 */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(FATAL,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("payments could not initialize libcurl")));

	/* the card vault key: created or loaded here, inherited by backends */
	payments_card_init();

	payments_preloaded = true;
}

/*
 * Error out unless the library was preloaded.  Called by CREATE EXTENSION
 * and by every entry point that depends on postmaster-time setup.
 */
void
payments_require_preload(void)
{
	if (!payments_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments must be loaded via shared_preload_libraries"),
				 errdetail("The payments library was loaded after server start, so its background worker and card vault are not available."),
				 errhint("Add payments to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* SQL-callable form of payments_require_preload, used by the install script. */
Datum
pay_assert_preloaded(PG_FUNCTION_ARGS)
{
	payments_require_preload();
	PG_RETURN_VOID();
}
