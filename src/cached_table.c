/*-------------------------------------------------------------------------
 *
 * cached_table.c
 *	  The statement trigger of the tables backends keep in memory
 *	  (installation_secrets: the fingerprint secret and the invoice tag;
 *	  merchant_roles, role_trust, merchants: who acts for which merchant;
 *	  api_keys, for revocations and expiries: the key a transaction took).
 *
 * It invalidates the table's relcache entry: at commit every backend
 * receives that and drops what it kept from the table (their relcache
 * callbacks), and this backend does so at its next command.  Statement
 * triggers fire for COPY too, so a restore counts as a change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/lsyscache.h"

#include "cached_table.h"

PG_FUNCTION_INFO_V1(pay_cached_table_changed);
PG_FUNCTION_INFO_V1(pay_installation_secrets_changed);

/*
 * payments.<relname>'s OID, InvalidOid when it does not exist (yet).
 * Looked up at each use (the syscache), so that a table dropped and made
 * again is never taken for the one a cache was filled from.
 */
Oid
cached_table_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid("payments", true);

	return OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
}

/*
 * The same, with callback registered (once, *registered remembers) for the
 * relcache invalidations that tell of changes to it.
 */
Oid
cached_table_watch(const char *relname, RelcacheCallbackFunction callback, bool *registered)
{
	if (!*registered)
	{
		CacheRegisterRelcacheCallback(callback, (Datum) 0);
		*registered = true;
	}
	return cached_table_relid(relname);
}

Datum
pay_cached_table_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function can only be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}

/* 0.1.0's name of the same trigger function (payments._installation_secrets_changed). */
Datum
pay_installation_secrets_changed(PG_FUNCTION_ARGS)
{
	return pay_cached_table_changed(fcinfo);
}
