/*-------------------------------------------------------------------------
 *
 * tenancy.c
 *	  Who acts for which merchant (DESIGN §3.6): the one place that decides.
 *
 * Every API function and every row-level security policy ask
 * payments_identity() (SQL: payments.pay_current_merchant()); the audit
 * trigger asks payments_actor(), the same decision with a refused setting
 * or claim ignored, and which merchants a changed row may name.
 *
 * request.jwt.claims is taken (merchant_id, and sub: the JWT subject of
 * pay_current_identity() and audit_log.app_user) only where it cannot be
 * forged: for roles declared PostgREST-only, NOLOGIN.  For a role acting
 * for every merchant its merchant_id is harmless and counts too.
 *
 * The role that acts is the outer user: the role of SET ROLE, else the
 * login role (GetOuterUserId()).  SECURITY DEFINER functions do not change
 * it: inside them current_user is their owner, but the outer user stays
 * the caller's, and no SECURITY DEFINER function can SET ROLE.  Under
 * PostgREST it is the role the JWT named (authenticator does SET ROLE).
 *
 * The merchant, decided only from what the caller cannot forge:
 *
 *	- roles allowed to act for every merchant (a superuser, the extension
 *	  owner and its members, roles the owner named with
 *	  pay_grant_all_merchants): the payments.merchant_id setting, else the
 *	  JWT claim merchant_id; else, for a superuser or the owner, the default
 *	  merchant 1 (a granted role must name one);
 *	- roles the owner declared reachable through PostgREST alone
 *	  (pay_declare_postgrest_role; NOLOGIN, so only a SET ROLE from the
 *	  authenticator reaches them): the claim merchant_id of
 *	  request.jwt.claims, which PostgREST sets from the verified JWT; without
 *	  a claim, their binding as below;
 *	- every other role: the merchants the owner bound it to, directly or
 *	  through a role it is a member of (pay_bind_role).  One binding: that
 *	  merchant.  Several: the request must name one of them (setting or
 *	  claim).  A setting or claim naming a merchant the role is not bound to
 *	  is refused.
 *
 * Nothing identifies a merchant: 42501 (PostgREST answers 401 for anon,
 * 403 otherwise).  A merchant that does not exist, or that the role may not
 * act for: 42501 too, with a message that says which.
 *
 * The result is cached for the current command (same transaction, command
 * id, role, claims and setting): row-level security asks per row.
 *
 * Merchant API keys (api_keys.c): a key whose secret was checked, by
 * PostgREST's pre-request function (X-Api-Key, honoured only for declared
 * PostgREST roles) or by payments.pay_use_api_key() (direct SQL), is
 * recorded here in backend memory for the current transaction and the role
 * acting then (payments_identity_use_key: no setting, nothing SQL can
 * write).  While it lasts it decides before everything else: the key's
 * merchant, source "api_key", its key id and scopes.  A JWT beside it (the
 * claims of a declared PostgREST role) must name the key's merchant, else
 * the request is refused (42501: no user of one merchant acts in another's
 * audit chain); its subject counts only then.  It is forgotten at
 * transaction end, and at the rollback of a subtransaction that took it
 * (the key held before comes back).  The scope an API function needs is its
 * payments.api_scope setting (ALTER FUNCTION ... SET, applied on entry to
 * the function whatever the caller set); pay_current_merchant(), which
 * every API function asks first, refuses a key without it (PT403).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <stdlib.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "cached_table.h"
#include "errcodes.h"
#include "schema_version.h"
#include "tenancy.h"

PG_FUNCTION_INFO_V1(pay_current_merchant);
PG_FUNCTION_INFO_V1(pay_current_identity);
PG_FUNCTION_INFO_V1(pay_key_has_scope);

/* The names of the API key scopes, by bit. */
static const struct
{
	const char *name;
	uint32		bit;
}			scope_names[] =
{
	{"read", PAYMENTS_SCOPE_READ},
	{"payments", PAYMENTS_SCOPE_PAYMENTS},
	{"refunds", PAYMENTS_SCOPE_REFUNDS},
	{"admin", PAYMENTS_SCOPE_ADMIN},
	{"customers", PAYMENTS_SCOPE_CUSTOMERS},
};

/*
 * The API key checked in this transaction: backend memory only, valid for
 * the transaction (lxid) and the role that was acting when it was checked.
 */
typedef struct KeyIdentity
{
	bool		valid;
	LocalTransactionId lxid;
	Oid			role;
	int64		merchant_id;
	int64		key_id;
	uint32		scopes;
	uint64		state_seen;		/* key_state_changes when last checked */
} KeyIdentity;
static KeyIdentity key_identity;
static bool key_callback_registered = false;

/*
 * What a subtransaction that took a key (SAVEPOINT, a PL/pgSQL block with
 * EXCEPTION) found before it, one entry per subtransaction, innermost
 * last: put back when it rolls back, so that after ROLLBACK TO SAVEPOINT
 * the transaction acts as it did before (no key, or the key it held); on
 * RELEASE the key stays and the entry goes to the parent (or is dropped
 * where the parent has its own, older one, or is the transaction itself).
 */
typedef struct KeySaved
{
	SubTransactionId subid;
	KeyIdentity before;
} KeySaved;
static KeySaved *key_saved = NULL;
static int	key_saved_count = 0;
static int	key_saved_size = 0;

/*
 * Changes of any key's revocation or expiry committed since the backend
 * started (api_keys' statement trigger, _cached_table_changed): a key a
 * transaction took is read again after one, so a revocation counts at
 * once, also in a transaction that took the key before it.
 */
static Oid	keys_relid = InvalidOid;
static Oid	revocations_relid = InvalidOid;
static uint64 key_state_changes = 0;

/*
 * Counts the keys checked in this backend: an identity or actor cached
 * before a key was checked is not the key's (a cache keyed on the command
 * alone kept acting for the role's own merchant after pay_use_api_key, up
 * to the next write).
 */
static uint64 keys_checked = 0;

/* What the owner wrote about a role, read with the owner's rights. */
typedef struct RoleFacts
{
	bool		all_merchants;	/* pay_grant_all_merchants (or a member) */
	bool		postgrest;		/* pay_declare_postgrest_role */
	int			nbound;			/* merchants it is bound to */
	int64	   *bound;			/* sorted */
	bool		setting_exists; /* the setting's merchant exists */
	bool		claim_exists;	/* the claim's merchant exists */
} RoleFacts;

/*
 * The last resolution, for the current command (row-level security asks
 * per row), while no invalidation of the role facts came.
 */
static struct
{
	bool		valid;
	LocalTransactionId lxid;
	CommandId	cid;
	uint64		invalidations;	/* facts_invalidations then */
	uint64		keys_checked;	/* keys_checked then */
	Oid			role;
	char	   *claims;
	char	   *setting;
	int64		merchant_id;
	const char *source;
	char	   *subject;
	bool		all_merchants;
} cache;

static const char *const bound_query =
"SELECT "
"EXISTS (SELECT 1 FROM payments.role_trust t WHERE t.trust OPERATOR(pg_catalog.=) 'all_merchants' "
"  AND pg_catalog.pg_has_role($1, t.db_role::pg_catalog.oid, 'MEMBER')), "
"EXISTS (SELECT 1 FROM payments.role_trust t WHERE t.trust OPERATOR(pg_catalog.=) 'postgrest' "
"  AND t.db_role::pg_catalog.oid OPERATOR(pg_catalog.=) $1), "
"ARRAY(SELECT DISTINCT b.merchant_id FROM payments.merchant_roles b "
"  WHERE pg_catalog.pg_has_role($1, b.db_role::pg_catalog.oid, 'MEMBER') ORDER BY 1), "
"EXISTS (SELECT 1 FROM payments.merchants m WHERE m.merchant_id OPERATOR(pg_catalog.=) $2), "
"EXISTS (SELECT 1 FROM payments.merchants m WHERE m.merchant_id OPERATOR(pg_catalog.=) $3)";

static SPIPlanPtr bound_plan = NULL;

/*
 * The facts of the last role asked about, kept across commands and
 * transactions: reading them is a query, about 5% of what a purchase
 * costs its caller.  Dropped by anything that could change them: a change
 * of merchant_roles, role_trust or merchants (their statement trigger,
 * _cached_table_changed, invalidates the table's relcache entry, at every
 * change, restore and logical replication included: ENABLE ALWAYS), a
 * change of a role or of role membership (syscache invalidations), a new
 * extension owner.  Invalidations are read before each use, so a change
 * another session committed counts from the next statement on, as it did
 * when every statement read the tables.
 */
static struct
{
	bool		valid;
	Oid			owner;
	Oid			role;
	int64		setting_m;
	int64		claim_m;
	RoleFacts	f;				/* f.bound in TopMemoryContext */
}			facts_cache;
static Oid	facts_relids[3];	/* merchant_roles, role_trust, merchants */
static uint64 facts_invalidations = 0;	/* invalidations seen, ever */
static bool facts_callbacks_registered = false;

static void
facts_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == facts_relids[0] || relid == facts_relids[1] ||
		relid == facts_relids[2])
	{
		facts_cache.valid = false;
		facts_invalidations++;
	}
	if (relid == InvalidOid || relid == keys_relid || relid == revocations_relid)
		key_state_changes++;
}

static void
facts_syscache_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
						uint32 hashvalue pg_attribute_unused())
{
	facts_cache.valid = false;
	facts_invalidations++;
}

/* A merchant id as text ("3"), or false. */
static bool
parse_merchant(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (s == NULL || s[0] == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v <= 0)
		return false;
	*out = (int64) v;
	return true;
}

/* A member of a JSON object as text (strings unquoted), or NULL. */
static char *
json_member(Jsonb *jb, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v) == NULL)
		return NULL;
	switch (v.type)
	{
		case jbvString:
			return pnstrdup(v.val.string.val, v.val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v.val.numeric)));
		case jbvNull:
			return NULL;
		default:
			return pstrdup("?");	/* present but not an id */
	}
}

/*
 * The owner of the extension's tables (the extension owner); InvalidOid
 * with missing_ok when the bindings table is not there (yet).
 */
static Oid
extension_owner(bool missing_ok)
{
	Oid			relid = cached_table_relid("merchant_roles");
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid) && missing_ok)
		return InvalidOid;
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table payments.merchant_roles does not exist"),
				 errhint("Update the extension: ALTER EXTENSION payments UPDATE.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run query (prepared once, into *plan) in the caller's SPI connection as
 * the owner, with a fixed search_path: the caller's settings cannot reach
 * into it.  The rows are in SPI_tuptable.
 */
static void
owner_select(Oid owner, const char *query, SPIPlanPtr *plan, int nargs, Oid *types, Datum *args,
			 const char *what)
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	PG_TRY();
	{
		if (*plan == NULL)
		{
			SPIPlanPtr	p = SPI_prepare(query, nargs, types);

			if (p == NULL)
				elog(ERROR, "could not prepare the query of %s: %s", what,
					 SPI_result_code_string(SPI_result));
			if (SPI_keepplan(p) != 0)
				elog(ERROR, "could not keep the query of %s", what);
			*plan = p;
		}
		rc = SPI_execute_plan(*plan, args, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read %s: %s", what, SPI_result_code_string(rc));
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(true, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/*
 * owner_select as the extension owner, for other modules: a read the
 * caller's role may not make (pay_worker_health's queue depth, for
 * pg_monitor).  In the caller's SPI connection.
 */
void
payments_select_as_owner(const char *query, SPIPlanPtr *plan, const char *what)
{
	owner_select(extension_owner(false), query, plan, 0, NULL, NULL, what);
}

/*
 * Read what the owner wrote about this role (bindings and trust) and
 * whether the requested merchants exist, as the owner (owner_select).
 */
static void
read_role_facts(Oid owner, Oid role, int64 setting_m, int64 claim_m, RoleFacts *f)
{
	Datum		args[3];
	Oid			types[3] = {OIDOID, INT8OID, INT8OID};
	MemoryContext caller = CurrentMemoryContext;

	memset(f, 0, sizeof(*f));
	args[0] = ObjectIdGetDatum(role);
	args[1] = Int64GetDatum(setting_m);
	args[2] = Int64GetDatum(claim_m);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	owner_select(owner, bound_query, &bound_plan, 3, types, args, "the merchant bindings");
	if (SPI_processed != 1)
		elog(ERROR, "could not read the merchant bindings");

	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ArrayType  *arr;
		Datum	   *elems;
		int			n;
		int			i;

		f->all_merchants = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
		f->postgrest = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		arr = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull));
		deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, NULL, &n);
		f->nbound = n;
		f->bound = MemoryContextAlloc(caller, sizeof(int64) * Max(n, 1));
		for (i = 0; i < n; i++)
			f->bound[i] = DatumGetInt64(elems[i]);
		f->setting_exists = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		f->claim_exists = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
	SPI_finish();
}

/*
 * Take in the invalidations other sessions' commits sent (see facts_cache):
 * both caches below hold only while none came.
 */
static void
facts_take_invalidations(void)
{
	if (!facts_callbacks_registered)
	{
		CacheRegisterRelcacheCallback(facts_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, facts_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, facts_syscache_callback, (Datum) 0);
		facts_callbacks_registered = true;
	}
	AcceptInvalidationMessages();
}

/*
 * The role's facts: from the cache when nothing they come from changed
 * since they were read, else read_role_facts.  The relations are looked
 * up at each call (cached_table_relid, which forgets them when pg_class
 * changes), and a table made anew empties the cache.
 */
static void
role_facts(Oid owner, Oid role, int64 setting_m, int64 claim_m, RoleFacts *f)
{
	Oid			relids[3];
	uint64		seen;

	relids[0] = cached_table_relid("merchant_roles");
	relids[1] = cached_table_relid("role_trust");
	relids[2] = cached_table_relid("merchants");
	if (facts_cache.valid && facts_cache.owner == owner && facts_cache.role == role &&
		facts_cache.setting_m == setting_m && facts_cache.claim_m == claim_m &&
		memcmp(relids, facts_relids, sizeof(relids)) == 0)
	{
		*f = facts_cache.f;
		return;
	}

	facts_cache.valid = false;
	seen = facts_invalidations;
	memcpy(facts_relids, relids, sizeof(relids));
	if (facts_cache.f.bound != NULL)
		pfree(facts_cache.f.bound);
	facts_cache.f.bound = NULL;
	read_role_facts(owner, role, setting_m, claim_m, f);
	facts_cache.f = *f;
	facts_cache.f.bound = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(f->nbound, 1));
	memcpy(facts_cache.f.bound, f->bound, sizeof(int64) * f->nbound);
	facts_cache.owner = owner;
	facts_cache.role = role;
	facts_cache.setting_m = setting_m;
	facts_cache.claim_m = claim_m;

	/*
	 * Kept only if no invalidation arrived while they were read: reading
	 * takes locks, which processes invalidations, and one of a change
	 * committed after the query's snapshot would otherwise be lost.
	 */
	facts_cache.valid = (facts_invalidations == seen);
}

static bool
is_bound(const int64 *bound, int nbound, int64 m)
{
	int			i;

	for (i = 0; i < nbound; i++)
		if (bound[i] == m)
			return true;
	return false;
}

/* A superuser, the extension owner or a role with its privileges. */
static bool
owner_privileged(Oid role, Oid owner)
{
	return superuser_arg(role) || has_privs_of_role(role, owner);
}

static bool
role_can_login(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	bool		login;

	if (!HeapTupleIsValid(tup))
		return true;			/* unknown: do not trust */
	login = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return login;
}

/*
 * Whether tenancy takes the role's request.jwt.claims as PostgREST set
 * them: declared PostgREST-only and NOLOGIN, so reached only by SET ROLE
 * from the authenticator.  Any other session can set the claims itself.
 */
static bool
postgrest_role(Oid role, const RoleFacts *f)
{
	return f->postgrest && !role_can_login(role);
}

static const char *
role_display(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name ? name : "(dropped role)";
}

/* The error of an identity that cannot be resolved. */
#define REFUSE(missing_ok, ...) \
	do { \
		if (missing_ok) \
			return false; \
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), __VA_ARGS__)); \
	} while (0)

static bool
merchant_named(const char *what, const char *text, int64 *m, bool missing_ok)
{
	if (text == NULL || text[0] == '\0')
		return false;
	if (!parse_merchant(text, m))
		REFUSE(missing_ok,
			   errmsg("%s does not name a merchant", what),
			   errdetail("A merchant id is a positive integer."));
	return true;
}

/*
 * The claims' members merchant_id and sub (NULL when absent), and the
 * merchants the setting and the claim name, 0 where they name none or
 * nothing valid (the arguments role_facts is asked with).
 */
static void
parse_request(const char *claims_text, const char *setting_text, char **claim_m_text,
			  char **subject, int64 *setting_m, int64 *claim_m)
{
	*claim_m_text = NULL;
	*subject = NULL;
	*setting_m = 0;
	*claim_m = 0;
	if (claims_text[0] != '\0')
	{
		Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims_text)));

		if (JB_ROOT_IS_OBJECT(jb))
		{
			*claim_m_text = json_member(jb, "merchant_id");
			*subject = json_member(jb, "sub");
		}
	}
	(void) parse_merchant(setting_text, setting_m);
	(void) parse_merchant(*claim_m_text, claim_m);
}

/*
 * A request acting with an API key and a JWT (claims PostgREST set, for a
 * declared role): the JWT must be of the key's merchant.  A key of one
 * merchant and a JWT of another's user is refused (42501), so that the
 * user of one merchant is never recorded as acting in another's chain; a
 * JWT naming no merchant is taken as no JWT (its subject is not recorded,
 * see resolve_identity).  False (missing_ok) or 42501 when they differ.
 */
static bool
key_claims_agree(int64 key_id, int64 key_merchant, const char *claim_m_text, int64 claim_m,
				 bool missing_ok)
{
	if (claim_m_text == NULL || claim_m_text[0] == '\0' || claim_m == key_merchant)
		return true;
	REFUSE(missing_ok,
		   errmsg("API key " INT64_FORMAT " and the JWT act for different merchants", key_id),
		   errdetail("The key acts for merchant " INT64_FORMAT "; the JWT claim merchant_id names %s.",
					 key_merchant, claim_m != 0 ? psprintf("merchant " INT64_FORMAT, claim_m) :
					 "no valid merchant id"),
		   errhint("Send the API key without a JWT, or with a JWT of the key's merchant."));
	return false;
}

/*
 * The key this transaction took, read again as the owner after a key was
 * revoked or its expiry changed somewhere: PT401 when it is revoked or
 * expired now (the transaction ends without it), it or a key up its
 * created_by_key chain (_api_key_state: a key made in a transaction that
 * committed after its creator's revocation, which the cascade missed).
 */
static void
recheck_key(void)
{
	static const char *const query =
		"SELECT k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) "
		"FROM payments._api_key_state($1, $2) k";
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(key_identity.merchant_id), Int64GetDatum(key_identity.key_id)};
	uint64		seen = key_state_changes;
	bool		usable;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	owner_select(extension_owner(false), query, &plan, 2, types, args, "the API key");
	usable = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		!isnull;
	SPI_finish();
	if (!usable)
	{
		int64		key_id = key_identity.key_id;

		key_identity.valid = false;
		keys_checked++;
		ereport(ERROR,
				(errcode(ERRCODE_PAY_INVALID_API_KEY),
				 errmsg("API key " INT64_FORMAT " was revoked or expired after this transaction took it", key_id),
				 errhint("Ask the merchant's administrator for a valid key.")));
	}
	key_identity.state_seen = seen;
}

/*
 * payments_identity() for the given claims and setting texts (the audit
 * trigger also asks without the ones that were refused).
 */
static bool
resolve_identity(PaymentsIdentity *id, bool missing_ok, const char *claims_text,
				 const char *setting_text)
{
	Oid			role = GetOuterUserId();
	char	   *claim_m_text = NULL;
	char	   *subject;
	int64		setting_m = 0;
	int64		claim_m = 0;
	bool		has_setting;
	bool		has_claim;
	bool		privileged;
	Oid			owner;
	RoleFacts	f;
	int64		m = 0;
	const char *source = NULL;
	MemoryContext old;
	uint64		invalidations;

	memset(id, 0, sizeof(*id));
	id->role = role;

	facts_take_invalidations();
	invalidations = facts_invalidations;
	if (cache.valid && cache.lxid == MyProc->lxid &&
		cache.cid == GetCurrentCommandId(false) && cache.role == role &&
		cache.invalidations == invalidations && cache.keys_checked == keys_checked &&
		strcmp(cache.claims, claims_text) == 0 && strcmp(cache.setting, setting_text) == 0)
	{
		id->merchant_id = cache.merchant_id;
		id->source = cache.source;
		id->subject = cache.subject ? pstrdup(cache.subject) : NULL;
		id->all_merchants = cache.all_merchants;
		return true;
	}

	parse_request(claims_text, setting_text, &claim_m_text, &subject, &setting_m, &claim_m);

	/* a checked API key decides first, for its transaction and role */
	if (key_identity.valid && key_identity.lxid == MyProc->lxid && key_identity.role == role)
	{
		if (key_identity.state_seen != key_state_changes)
			recheck_key();
		/* a key is checked only where the schema is served */
		role_facts(extension_owner(false), role, setting_m, claim_m, &f);
		if (postgrest_role(role, &f) &&
			!key_claims_agree(key_identity.key_id, key_identity.merchant_id, claim_m_text, claim_m,
							  missing_ok))
			return false;
		id->merchant_id = key_identity.merchant_id;
		id->source = "api_key";
		id->key_id = key_identity.key_id;
		id->scopes = key_identity.scopes;
		if (subject != NULL && postgrest_role(role, &f) && claim_m == key_identity.merchant_id)
			id->subject = subject;
		return true;
	}

	/* the audit trigger asks also while an older schema awaits its update */
	if (missing_ok && payments_schema_state(NULL) != SCHEMA_SERVED)
		return false;
	payments_require_schema();

	owner = extension_owner(missing_ok);
	if (!OidIsValid(owner))
		return false;
	privileged = owner_privileged(role, owner);

	has_setting = merchant_named("the payments.merchant_id setting", setting_text, &setting_m, missing_ok);
	if (!has_setting && setting_text[0] != '\0')
		return false;			/* missing_ok and a malformed setting */
	has_claim = merchant_named("the JWT claim merchant_id", claim_m_text, &claim_m, missing_ok);
	if (!has_claim && claim_m_text != NULL && claim_m_text[0] != '\0')
		return false;

	role_facts(owner, role, setting_m, claim_m, &f);
	if (postgrest_role(role, &f))
		id->subject = subject;

	if (privileged || f.all_merchants)
	{
		id->all_merchants = true;
		if (has_setting)
		{
			m = setting_m, source = "setting";
			if (!f.setting_exists)
				REFUSE(missing_ok,
					   errmsg("merchant " INT64_FORMAT " does not exist", m),
					   errdetail("The payments.merchant_id setting names it."));
		}
		else if (has_claim)
		{
			m = claim_m, source = "jwt";
			if (!f.claim_exists)
				REFUSE(missing_ok,
					   errmsg("merchant " INT64_FORMAT " does not exist", m),
					   errdetail("The JWT claim merchant_id names it."));
		}
		else if (privileged)
			m = 1, source = "default";
		else
			REFUSE(missing_ok,
				   errmsg("role \"%s\" acts for every merchant but names none", role_display(role)),
				   errhint("SET payments.merchant_id to the merchant to act for."));
	}
	else if (has_claim && postgrest_role(role, &f))
	{
		m = claim_m, source = "jwt";
		if (!f.claim_exists)
			REFUSE(missing_ok,
				   errmsg("merchant " INT64_FORMAT " does not exist", m),
				   errdetail("The JWT claim merchant_id names it."));
	}
	else
	{
		/* the bindings; a setting or an untrusted claim can only choose */
		int64		asked = has_setting ? setting_m : has_claim ? claim_m : 0;

		if (asked != 0)
		{
			if (!is_bound(f.bound, f.nbound, asked))
				REFUSE(missing_ok,
					   errmsg("role \"%s\" may not act for merchant " INT64_FORMAT,
							  role_display(role), asked),
					   errdetail("%s names the merchant, but the role is not bound to it.",
								 has_setting ? "The payments.merchant_id setting" :
								 "The JWT claim merchant_id"),
					   f.postgrest ? 0 :
					   errhint("Only roles that act for every merchant choose one by setting, and only roles declared with payments.pay_declare_postgrest_role() by JWT claim."));
			m = asked, source = "binding";
		}
		else if (f.nbound == 1)
			m = f.bound[0], source = "binding";
		else if (f.nbound > 1)
			REFUSE(missing_ok,
				   errmsg("role \"%s\" is bound to several merchants", role_display(role)),
				   errdetail("The request does not say which one it acts for."),
				   errhint("SET payments.merchant_id to one of the merchants the role is bound to."));
		else
			REFUSE(missing_ok,
				   errmsg("no merchant identity for role \"%s\"", role_display(role)),
				   errdetail("The role is not bound to a merchant%s.",
							 f.postgrest ? " and the request has no JWT claim merchant_id" : ""),
				   errhint("The extension owner binds roles to merchants with payments.pay_bind_role(role, merchant_id), declares PostgREST roles with payments.pay_declare_postgrest_role(role), or names roles acting for every merchant with payments.pay_grant_all_merchants(role)."));
	}

	id->merchant_id = m;
	id->source = source;

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (cache.claims)
		pfree(cache.claims);
	if (cache.setting)
		pfree(cache.setting);
	if (cache.subject)
		pfree(cache.subject);
	cache.claims = pstrdup(claims_text);
	cache.setting = pstrdup(setting_text);
	cache.subject = id->subject ? pstrdup(id->subject) : NULL;
	MemoryContextSwitchTo(old);
	cache.lxid = MyProc->lxid;
	cache.cid = GetCurrentCommandId(false);
	cache.invalidations = invalidations;	/* as before reading: one that came meanwhile counts */
	cache.keys_checked = keys_checked;
	cache.role = role;
	cache.merchant_id = m;
	cache.source = source;
	cache.all_merchants = id->all_merchants;
	cache.valid = true;
	return true;
}

bool
payments_identity(PaymentsIdentity *id, bool missing_ok)
{
	const char *claims_text = GetConfigOption("request.jwt.claims", true, false);
	const char *setting_text = GetConfigOption("payments.merchant_id", true, false);

	return resolve_identity(id, missing_ok, claims_text ? claims_text : "",
							setting_text ? setting_text : "");
}

/*
 * Who acts, for the audit trigger, which records every change: also one
 * made with a setting or claim the API would refuse.  Such a setting or
 * claim moves nothing: the merchant is the first that resolves of the
 * request as it is, without the claims, without the setting, without
 * both.  What the role's own facts allow (bindings, all merchants) decides
 * which merchant_id of a changed row is taken as it is.
 *
 * Resolved once per command, for the role acting and the current user:
 * the AFTER triggers of a statement fire together after it, and the
 * trigger asks per row, so a row costs a comparison of these four.
 */
const PaymentsActor *
payments_actor(void)
{
	static PaymentsActor actor;
	static bool valid = false;
	static LocalTransactionId lxid;
	static CommandId cid;
	static Oid	user;
	static uint64 actor_keys_checked;
	Oid			role = GetOuterUserId();
	const char *claims_text;
	const char *setting_text;
	char	   *claim_m_text;
	char	   *subject;
	int64		setting_m;
	int64		claim_m;
	Oid			owner;
	RoleFacts	f;
	PaymentsIdentity id;
	MemoryContext old;

	if (valid && lxid == MyProc->lxid && cid == GetCurrentCommandId(false) &&
		actor.role == role && user == GetUserId() && actor_keys_checked == keys_checked)
		return &actor;

	valid = false;
	if (actor.subject)
		pfree(actor.subject);
	if (actor.bound)
		pfree(actor.bound);
	memset(&actor, 0, sizeof(actor));
	actor.role = role;

	claims_text = GetConfigOption("request.jwt.claims", true, false);
	setting_text = GetConfigOption("payments.merchant_id", true, false);
	if (claims_text == NULL)
		claims_text = "";
	if (setting_text == NULL)
		setting_text = "";
	parse_request(claims_text, setting_text, &claim_m_text, &subject, &setting_m, &claim_m);

	owner = extension_owner(true);
	if (key_identity.valid && key_identity.lxid == MyProc->lxid && key_identity.role == role)
	{
		/*
		 * the key narrows the role to its merchant; a JWT subject counts
		 * only with a claim of that merchant (key_claims_agree)
		 */
		actor.key_id = key_identity.key_id;
		actor.merchant_id = key_identity.merchant_id;
		if (claim_m != key_identity.merchant_id)
			subject = NULL;
	}
	else if (resolve_identity(&id, true, claims_text, setting_text))
		actor.merchant_id = id.merchant_id;
	else if (!OidIsValid(owner) || payments_schema_state(NULL) != SCHEMA_SERVED)
	{
		/*
		 * An older schema awaiting its update: no bindings to decide by.
		 * Rows are recorded as that version recorded them.
		 */
		actor.any_merchant = true;
		actor.merchant_id = 1;
		owner = InvalidOid;
	}
	else if (resolve_identity(&id, true, "", setting_text) ||
			 resolve_identity(&id, true, claims_text, "") ||
			 resolve_identity(&id, true, "", ""))
		actor.merchant_id = id.merchant_id;

	if (OidIsValid(owner))
	{
		/* served: what the owner wrote about the role (cached by now) */
		role_facts(owner, role, setting_m, claim_m, &f);
		if (actor.key_id == 0)
		{
			actor.any_merchant = f.all_merchants || owner_privileged(role, owner);
			actor.nbound = f.nbound;
			actor.bound = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(f.nbound, 1));
			memcpy(actor.bound, f.bound, sizeof(int64) * f.nbound);
		}

		/*
		 * The extension's own SECURITY DEFINER functions, the worker, the
		 * owner at work: their rows name the merchant their code decided,
		 * and a row without one goes where the owner's own do.
		 */
		if (owner_privileged(GetUserId(), owner))
		{
			actor.any_merchant = true;
			if (actor.merchant_id == 0)
				actor.merchant_id = 1;
		}
	}
	if (!OidIsValid(owner) || !postgrest_role(role, &f))
		subject = NULL;

	old = MemoryContextSwitchTo(TopMemoryContext);
	actor.subject = subject ? pstrdup(subject) : NULL;
	MemoryContextSwitchTo(old);
	lxid = MyProc->lxid;
	cid = GetCurrentCommandId(false);
	user = GetUserId();
	actor_keys_checked = keys_checked;
	valid = true;
	return &actor;
}

/* Whether the actor's rows may name this merchant (a comparison per row). */
bool
payments_actor_may_act_for(const PaymentsActor *actor, int64 merchant_id)
{
	return actor->any_merchant || merchant_id == actor->merchant_id ||
		is_bound(actor->bound, actor->nbound, merchant_id);
}

uint32
payments_scope_bit(const char *name)
{
	size_t		i;

	for (i = 0; i < lengthof(scope_names); i++)
		if (strcmp(scope_names[i].name, name) == 0)
			return scope_names[i].bit;
	return 0;
}

static void
key_identity_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
	{
		key_identity.valid = false;
		key_saved_count = 0;
	}
}

/*
 * A subtransaction ends: rolled back, the key state it found comes back;
 * committed, its entry becomes its parent's.  Inner subtransactions end
 * first, so an entry of this one, if any, is the last.
 */
static void
key_identity_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							  SubTransactionId parentSubid, void *arg pg_attribute_unused())
{
	KeySaved   *last;

	if (key_saved_count == 0 || key_saved[key_saved_count - 1].subid != mySubid)
		return;
	last = &key_saved[key_saved_count - 1];
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		key_identity = last->before;
		key_saved_count--;
		keys_checked++;			/* what was cached with the key goes too */
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		if (parentSubid == TopSubTransactionId ||
			(key_saved_count > 1 && key_saved[key_saved_count - 2].subid == parentSubid))
			key_saved_count--;
		else
			last->subid = parentSubid;
	}
}

/* Before a subtransaction first changes the key: what it found. */
static void
key_identity_save(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (subid == TopSubTransactionId ||
		(key_saved_count > 0 && key_saved[key_saved_count - 1].subid == subid))
		return;
	if (key_saved_count == key_saved_size)
	{
		int			size = Max(8, key_saved_size * 2);

		key_saved = key_saved == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(KeySaved) * size) :
			repalloc(key_saved, sizeof(KeySaved) * size);
		key_saved_size = size;
	}
	key_saved[key_saved_count].subid = subid;
	key_saved[key_saved_count].before = key_identity;
	key_saved_count++;
}

void
payments_identity_use_key(int64 merchant_id, int64 key_id, uint32 scopes)
{
	if (!key_callback_registered)
	{
		RegisterXactCallback(key_identity_xact_callback, NULL);
		RegisterSubXactCallback(key_identity_subxact_callback, NULL);
		key_callback_registered = true;
	}
	key_identity_save();
	key_identity.lxid = MyProc->lxid;
	key_identity.role = GetOuterUserId();
	key_identity.merchant_id = merchant_id;
	key_identity.key_id = key_id;
	key_identity.scopes = scopes;
	facts_take_invalidations();
	keys_relid = cached_table_relid("api_keys");
	revocations_relid = cached_table_relid("api_key_revocations");
	key_identity.state_seen = key_state_changes;
	key_identity.valid = true;
	keys_checked++;
}

/*
 * For api_keys.c, before a key is let act: 42501 when the request's JWT
 * (claims of a declared PostgREST role) names another merchant than the
 * key's.
 */
void
payments_check_key_claims(int64 key_id, int64 key_merchant)
{
	const char *claims_text = GetConfigOption("request.jwt.claims", true, false);
	char	   *claim_m_text;
	char	   *subject;
	int64		setting_m;
	int64		claim_m;
	RoleFacts	f;

	if (claims_text == NULL || claims_text[0] == '\0')
		return;
	parse_request(claims_text, "", &claim_m_text, &subject, &setting_m, &claim_m);
	if (claim_m_text == NULL || claim_m_text[0] == '\0' || claim_m == key_merchant)
		return;
	role_facts(extension_owner(false), GetOuterUserId(), 0, claim_m, &f);
	if (postgrest_role(GetOuterUserId(), &f))
		(void) key_claims_agree(key_id, key_merchant, claim_m_text, claim_m, false);
}

bool
payments_role_is_postgrest(Oid role)
{
	RoleFacts	f;

	read_role_facts(extension_owner(false), role, 0, 0, &f);
	return postgrest_role(role, &f);
}

/*
 * The scope the running API function needs (its payments.api_scope
 * setting), refused when the request acts with a key that lacks it.
 */
static void
check_key_scope(const PaymentsIdentity *id)
{
	const char *need;
	uint32		bit;

	if (id->key_id == 0)
		return;
	need = GetConfigOption("payments.api_scope", true, false);
	if (need == NULL || need[0] == '\0')
		return;
	bit = payments_scope_bit(need);
	if (bit == 0 || (id->scopes & bit) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_SCOPE_MISSING),
				 errmsg("API key " INT64_FORMAT " does not have the scope \"%s\"", id->key_id, need),
				 errdetail("The function needs an API key with the scope \"%s\".", need),
				 errhint("Create a key with that scope: payments.pay_create_api_key(scopes => ...).")));
}

/* payments.pay_current_merchant(): the merchant, or 42501. */
Datum
pay_current_merchant(PG_FUNCTION_ARGS)
{
	PaymentsIdentity id;

	(void) payments_identity(&id, false);
	check_key_scope(&id);
	PG_RETURN_INT64(id.merchant_id);
}

/*
 * payments._key_has_scope(scope): whether the request may do what the
 * scope allows: with an API key, whether the key has it; without one,
 * true (the role's own rights decide).  False when nothing identifies the
 * request.  For an API function that shows what another scope reads
 * (pay_purchase of a customer: its billing details).
 */
Datum
pay_key_has_scope(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	uint32		bit = payments_scope_bit(name);
	PaymentsIdentity id;

	if (bit == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown API key scope"),
				 errhint("The scopes are read, payments, refunds, customers and admin.")));
	if (!payments_identity(&id, true))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(id.key_id == 0 || (id.scopes & bit) != 0);
}

/*
 * payments.pay_current_identity(): who the request acts as, without
 * raising (merchant_id NULL when nothing identifies one).
 */
Datum
pay_current_identity(PG_FUNCTION_ARGS)
{
	PaymentsIdentity id;
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	bool		found;
	char	   *rolname;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	found = payments_identity(&id, true);
	values[0] = Int64GetDatum(id.merchant_id);
	nulls[0] = !found;
	rolname = GetUserNameFromId(id.role, true);
	if (rolname)
		values[1] = DirectFunctionCall1(namein, CStringGetDatum(rolname));
	nulls[1] = (rolname == NULL);
	if (found)
		values[2] = CStringGetTextDatum(id.source);
	nulls[2] = !found;
	if (id.subject)
		values[3] = CStringGetTextDatum(id.subject);
	nulls[3] = (id.subject == NULL);
	if (found && id.key_id != 0)
		values[4] = CStringGetTextDatum(psprintf(INT64_FORMAT, id.key_id));
	nulls[4] = !(found && id.key_id != 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
