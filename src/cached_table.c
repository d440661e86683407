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
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cached_table.h"

PG_FUNCTION_INFO_V1(pay_cached_table_changed);
PG_FUNCTION_INFO_V1(pay_installation_secrets_changed);

/*
 * payments.<relname>'s OID, InvalidOid when it does not exist (yet).
 * Several tables are looked up on every payment (who acts, the events
 * table), so the answers are kept, and all forgotten whenever a pg_class
 * or pg_namespace row changes: the same invalidations that make the
 * syscache look again, so a table dropped and made again (or made where
 * there was none) is never taken for the one a cache was filled from.
 */
typedef struct KnownRelid
{
	NameData	relname;
	Oid			relid;
} KnownRelid;

#define KNOWN_RELIDS_MAX 16

static KnownRelid known_relids[KNOWN_RELIDS_MAX];
static int	known_relids_count = 0;
static Oid	known_schema = InvalidOid;	/* payments' OID once known */
static uint64 known_relids_forgotten = 0;	/* invalidations so far */
static bool known_relids_watched = false;

static void
known_relids_forget(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
					uint32 hashvalue pg_attribute_unused())
{
	known_relids_count = 0;
	known_schema = InvalidOid;
	known_relids_forgotten++;
}

static void
watch_known_relids(void)
{
	if (!known_relids_watched)
	{
		CacheRegisterSyscacheCallback(RELNAMENSP, known_relids_forget, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACENAME, known_relids_forget, (Datum) 0);
		known_relids_watched = true;
	}
}

/*
 * Schema payments' OID, InvalidOid when it does not exist (yet): asked on
 * every statement that writes a table (check_cache.c), in every database.
 * A schema that does not exist is looked up again each time; one that
 * does is kept until pg_namespace or pg_class changes.
 */
Oid
cached_schema_oid(void)
{
	uint64		forgotten;
	Oid			nsp;

	watch_known_relids();
	if (OidIsValid(known_schema))
		return known_schema;
	forgotten = known_relids_forgotten;
	nsp = get_namespace_oid("payments", true);
	if (known_relids_forgotten == forgotten)
		known_schema = nsp;
	return nsp;
}

Oid
cached_table_relid(const char *relname)
{
	Oid			nsp;
	Oid			relid;
	uint64		forgotten;
	int			i;

	watch_known_relids();
	for (i = 0; i < known_relids_count; i++)
		if (strcmp(NameStr(known_relids[i].relname), relname) == 0)
			return known_relids[i].relid;

	forgotten = known_relids_forgotten;
	nsp = cached_schema_oid();
	relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	/*
	 * Kept only when no invalidation came in during the lookup (it may
	 * read the catalogs, which takes locks and so processes them): this
	 * answer may then be older than the change it told of.
	 */
	if (known_relids_forgotten == forgotten && known_relids_count < KNOWN_RELIDS_MAX &&
		strlen(relname) < NAMEDATALEN)
	{
		namestrcpy(&known_relids[known_relids_count].relname, relname);
		known_relids[known_relids_count].relid = relid;
		known_relids_count++;
	}
	return relid;
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
