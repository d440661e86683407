/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trigger: one append-only, tamper-evident row per change.
 *
 * payments._audit_trigger() is an AFTER INSERT OR UPDATE OR DELETE row
 * trigger (and an AFTER TRUNCATE statement trigger) that writes one row to
 * payments.audit_log per change: the old and new row as jsonb, the changed
 * columns, current_user and session_user, the application's user (the JWT
 * "sub" claim, from a declared PostgREST role only), the correlation id,
 * the transaction id and the statement timestamp, plus a SHA-256 hash of
 * all of that, under the merchant of the changed row if the role may act
 * for it, else the role's own (audit_merchant()).
 *
 * Card data never reaches an audit row:
 *	- columns whose type is payments.pay_card (or a domain or array over it)
 *	  and columns with a sensitive name (card_number, pan, cvv, card_code,
 *	  transaction_key, signature_key, secret, password, ...; extra names per
 *	  table as trigger arguments, see pay_audit_attach()) are left out;
 *	- bytea values are written as {"bytes": N}, never their contents;
 *	- any value that looks like a card number (12 to 19 digits, Luhn-valid,
 *	  of a known brand, as card_log.c recognises them) is replaced by a note;
 *	- the trigger is never attached to payments.card_vault or
 *	  payments.installation_secrets, and refuses to serialize their bytea
 *	  columns even if someone attaches it by hand.
 *
 * Tamper evidence: sealed batches, not a hash chain per row.  A chain
 * needs the previous row's hash at insert time, so every writer of a chain
 * would wait for the previous writer's transaction to commit (the chain
 * head is a row lock held to the end of the transaction): writers would
 * queue.  Here an insert only computes its own row hash (no shared state,
 * no lock beyond the audit_id sequence).  payments.pay_audit_seal(), run by
 * pg_cron or by hand, later chains every merchant's new rows, in audit_id
 * order, into a batch record of payments.audit_seals whose hash covers the
 * previous batch's hash, the range, the row count and every row hash.
 * pay_audit_verify() recomputes everything.  A batch holds the audit ids
 * (previous batch's end, horizon]; the horizon is an audit_id below which
 * no transaction still running can hold an id (see pay_audit_seal_horizon),
 * so no row can appear inside a sealed range after sealing.  Ranges are
 * audit ids (not transaction ids) so that they survive pg_dump/restore.
 *
 * Performance: per backend we cache, per audited relation (invalidated by
 * relcache callbacks), the column list with the decision for each column
 * and the columns in jsonb's key order, so that a row's jsonb and its
 * canonical text (hashed, scanned for card numbers) are built together in
 * one pass.  The audit rows of a statement are buffered and written
 * together at its end with table_multi_insert (see "The statement
 * buffer"), through a ResultRelInfo of audit_log kept across rows,
 * statements and transactions (src/direct_insert.c): no executor, SPI
 * call or CHECK-constraint compilation per row; a kept SPI plan remains
 * for the cases the direct path does not cover.  Who acted, and which
 * merchants its rows may name, comes from payments_actor(), resolved once
 * per command; parsed request.headers are cached by their text.
 *
 * Restores: while check_function_bodies is off (every pg_dump script and
 * pg_restore sets it) and the session's role (the outer user: SET ROLE,
 * else the login role) is a superuser or the owner of payments.audit_log,
 * nothing is audited: the rows a restore loads are the dumped history, and
 * audit_log itself is restored from the dump.  Those roles could disable
 * the trigger anyway, so this opens nothing new.  Not the current user:
 * inside the API's SECURITY DEFINER functions that is the extension's
 * owner, and any caller may turn check_function_bodies off in its session
 * (before: SET check_function_bodies = off, then pay_purchase or
 * pay_refund, wrote no audit row at all).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "audit.h"
#include "audit_horizon.h"
#include "direct_insert.h"
#include "card_brand.h"
#include "free_text.h"
#include "jsonb_value.h"
#include "payments.h"
#include "tenancy.h"

PG_FUNCTION_INFO_V1(pay_audit_trigger);
PG_FUNCTION_INFO_V1(pay_audit_guard);
PG_FUNCTION_INFO_V1(pay_audit_row_hash);
PG_FUNCTION_INFO_V1(pay_audit_record);
PG_FUNCTION_INFO_V1(pay_audit_retention);
PG_FUNCTION_INFO_V1(pay_audit_seal_horizon);
PG_FUNCTION_INFO_V1(pay_audit_attach);
PG_FUNCTION_INFO_V1(pay_audit_detach);

#define AUDIT_HASH_LEN		32	/* SHA-256 */
#define AUDIT_HASH_VERSION	"payments-audit-row-v1"
#define AUDIT_TRIGGER_NAME	"payments_audit"
#define AUDIT_TRUNCATE_TRIGGER_NAME "payments_audit_truncate"
/* their pg_trigger.tgtype: AFTER, FOR EACH ROW, INSERT OR UPDATE OR DELETE; AFTER TRUNCATE, FOR EACH STATEMENT */
#define AUDIT_ROW_TGTYPE	(TRIGGER_TYPE_ROW | TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE)
#define AUDIT_TRUNCATE_TGTYPE TRIGGER_TYPE_TRUNCATE
#define AUDIT_CARD_NOTE		"[card number removed by payments audit]"

/*
 * Columns never written to an audit row, whatever their table.  Short
 * names must match exactly; the others match anywhere in the name
 * (client_secret, webhook_signature_key).  Case-insensitive.
 */
static const char *const masked_exact[] = {
	"pan", "cvv", "cvv2", "cvc", "cvc2", "cid", "csc", "pin", NULL
};
static const char *const masked_substr[] = {
	"card_number", "cardnumber", "card_num", "card_code", "cardcode",
	"security_code", "transaction_key", "signature_key", "secret",
	"password", "passwd", "private_key", "api_key", "access_token",
	"refresh_token", NULL
};

/* How one column is written */
typedef enum AuditKind
{
	AK_DROPPED,					/* dropped column: nothing */
	AK_MASKED,					/* left out of the row */
	AK_BYTES,					/* bytea: {"bytes": N} */
	AK_OMIT_BYTES,				/* bytea of a secret table: left out */
	AK_VALUE					/* anything else: as to_jsonb() (json below) */
} AuditKind;

typedef struct AuditAttr
{
	char	   *name;
	int			namelen;
	Oid			typid;
	Oid			basetype;		/* typid, or a domain's base type */
	AuditKind	kind;
	bool		typbyval;
	int16		typlen;
	JsonbColumn json;			/* AK_VALUE: how a value becomes jsonb */
	bool		nested_keys;	/* AK_VALUE: its jsonb may hold objects (json, composite) */
	Datum		name_text;		/* the name as text (changed_columns) */
	char	   *keytext;		/* the name as a JSON string, then ": " */
	int			keytextlen;
	bool		have_last;		/* JV_DATETIME: the last value printed */
	Datum		last_value;		/* (by value: date, timestamp[tz]) */
	char		last_text[MAXDATELEN + 1];
} AuditAttr;

typedef struct AuditRelCache
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext cxt;			/* everything below */
	char	   *schema;
	char	   *relname;
	text	   *schema_text;	/* the two as text, for every audit row */
	text	   *relname_text;
	int			natts;
	AuditAttr  *attrs;
	AttrNumber	merchant_attno; /* integer merchant_id column, or 0 */
	AttrNumber	correlation_attno;	/* text correlation_id column, or 0 */
	int			nkeys;			/* columns written to the row's jsonb */
	int		   *keyorder;		/* their indexes, in jsonb's key order */
	bool		keys_clean;		/* no key looks like a card number */
} AuditRelCache;

/* One audit row before it is inserted */
typedef struct AuditRecord
{
	int64		merchant_id;
	int64		audit_id;
	const char *table_schema;
	const char *table_name;
	const char *operation;
	Jsonb	   *old_row;
	Jsonb	   *new_row;
	char	   *old_text;		/* their canonical text, when known */
	char	   *new_text;
	int			old_len;		/* its length, when known (else 0) */
	int			new_len;
	bool		old_clean;		/* that text known to hold no card number */
	bool		new_clean;
	ArrayType  *changed_columns;
	const char **changed_names; /* their names, when known (else NULL) */
	int			nchanged;
	const text *schema_text;	/* table_schema and table_name as text, */
	const text *name_text;		/* when kept (else NULL) */
	const char *db_role;
	const char *session_role;
	const char *app_user;
	const char *correlation_id;
	uint64		txid;
	TimestampTz logged_at;
	int64		key_id;			/* the merchant API key used, or 0 */
} AuditRecord;


static HTAB *rel_cache = NULL;
static bool callbacks_registered = false;

/* payments.audit_log, its owner, its sequence; the kept insert plan */
static Oid	audit_log_relid = InvalidOid;
static Oid	audit_log_owner = InvalidOid;
static Oid	audit_seq_relid = InvalidOid;
static Oid	card_type_oid = InvalidOid;
static Oid	card_vault_relid = InvalidOid;
static Oid	secrets_relid = InvalidOid;
/* compression of old_row and new_row (pg_attribute.attcompression) */
static char image_compression[2] = {InvalidCompressionMethod, InvalidCompressionMethod};
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_plan_key = NULL;	/* with key_id (0.2.0) */

/* set by pay_audit_retention(true) for pay_audit_prune(); reset at xact end */
static bool retention_active = false;
static bool xact_callback_registered = false;

/* A setting holding a JSON object, parsed once per distinct text. */
typedef struct JsonSettingCache
{
	const char *name;			/* the setting */
	const char *keys[2];		/* the members kept */
	char	   *text;			/* the text they were read from */
	char	   *values[2];		/* their text, or NULL */
} JsonSettingCache;

/* PostgREST's request.headers (request.jwt.claims: src/tenancy.c) */
static JsonSettingCache headers = {.name = "request.headers", .keys = {"x-request-id", "traceparent"}};

/* ------------------------------------------------------------------------
 * Caches and their invalidation
 * ------------------------------------------------------------------------
 */

/*
 * Forget the looked-up OIDs.  The kept insert plan stays: the plan cache
 * revalidates it by itself, and this runs from invalidation callbacks,
 * which can fire while that very plan is executing (autovacuum's ANALYZE of
 * audit_log is enough), so freeing it here would pull it from under the
 * executor.
 */
static void
invalidate_globals(void)
{
	audit_log_relid = InvalidOid;
	audit_log_owner = InvalidOid;
	audit_seq_relid = InvalidOid;
	card_type_oid = InvalidOid;
	card_vault_relid = InvalidOid;
	secrets_relid = InvalidOid;
	image_compression[0] = image_compression[1] = InvalidCompressionMethod;
}

static void
audit_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	HASH_SEQ_STATUS status;
	AuditRelCache *entry;

	if (!OidIsValid(relid) || relid == audit_log_relid)
		invalidate_globals();
	if (rel_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(rel_cache, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, rel_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * A schema renamed: every cached schema name may be stale.  A cast made or
 * dropped: a column's way to jsonb may have changed (jsonb_value.c).
 */
static void
audit_syscache_callback(Datum arg, int cacheid pg_attribute_unused(),
						 uint32 hashvalue pg_attribute_unused())
{
	audit_relcache_callback(arg, InvalidOid);
}

static void
audit_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		retention_active = false;
}

static void audit_role_callback(Datum arg, int cacheid, uint32 hashvalue);

static void
register_callbacks(void)
{
	HASHCTL		ctl;

	if (callbacks_registered)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(AuditRelCache);
	rel_cache = hash_create("payments audit relation cache", 64, &ctl,
							HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(audit_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, audit_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(CASTSOURCETARGET, audit_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, audit_role_callback, (Datum) 0);
	callbacks_registered = true;
}

static Oid
payments_namespace(void)
{
	Oid			nsp = get_namespace_oid("payments", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"payments\" does not exist"),
				 errhint("Run CREATE EXTENSION payments first.")));
	return nsp;
}

/* A column's own compression method (attcompression; may be invalid). */
static char
column_compression(Oid relid, const char *column)
{
	HeapTuple	tup = SearchSysCacheAttName(relid, column);
	char		method = InvalidCompressionMethod;

	if (HeapTupleIsValid(tup))
	{
		method = ((Form_pg_attribute) GETSTRUCT(tup))->attcompression;
		ReleaseSysCache(tup);
	}
	return method;
}

/*
 * Look up payments.audit_log and friends once per backend (or after DDL).
 * Every lookup goes into a local first and the globals are set together at
 * the end: the lookups themselves may run invalidation callbacks, which
 * reset the globals.
 */
static void
load_globals(void)
{
	Oid			nsp;
	HeapTuple	tup;
	Oid			log_relid;
	Oid			seq_relid;
	Oid			owner;
	Oid			card_oid;
	Oid			vault_relid;
	Oid			secret_relid;
	char		compression[2];

	register_callbacks();
	if (OidIsValid(audit_log_relid))
		return;

	nsp = payments_namespace();
	log_relid = get_relname_relid("audit_log", nsp);
	seq_relid = get_relname_relid("audit_log_audit_id_seq", nsp);
	if (!OidIsValid(log_relid) || !OidIsValid(seq_relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table payments.audit_log does not exist"),
				 errhint("The payments extension is incompletely installed; recreate it.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(log_relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", log_relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	card_oid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("pay_card"), ObjectIdGetDatum(nsp));
	vault_relid = get_relname_relid("card_vault", nsp);
	secret_relid = get_relname_relid("installation_secrets", nsp);
	compression[0] = column_compression(log_relid, "old_row");
	compression[1] = column_compression(log_relid, "new_row");

	audit_log_owner = owner;
	audit_seq_relid = seq_relid;
	card_type_oid = card_oid;
	card_vault_relid = vault_relid;
	secrets_relid = secret_relid;
	image_compression[0] = compression[0];
	image_compression[1] = compression[1];
	audit_log_relid = log_relid;	/* last: it marks the set as loaded */
}

/* Whether the current user may act as the owner of the audit tables. */
static bool
user_is_audit_owner(void)
{
	Oid			user = GetUserId();

	return superuser_arg(user) || has_privs_of_role(user, audit_log_owner);
}

/*
 * Whether the session's role (SET ROLE, else the login role; not changed
 * by a SECURITY DEFINER function) may act as the owner of the audit tables.
 */
static bool
outer_user_is_audit_owner(void)
{
	Oid			user = GetOuterUserId();

	return superuser_arg(user) || has_privs_of_role(user, audit_log_owner);
}

/* ------------------------------------------------------------------------
 * Which columns are written, and how
 * ------------------------------------------------------------------------
 */

static bool
name_is_masked(const char *name, int nextra, char **extra)
{
	char	   *lower = asc_tolower(name, strlen(name));
	int			i;

	for (i = 0; masked_exact[i] != NULL; i++)
		if (strcmp(lower, masked_exact[i]) == 0)
			return true;
	for (i = 0; masked_substr[i] != NULL; i++)
		if (strstr(lower, masked_substr[i]) != NULL)
			return true;
	for (i = 0; i < nextra; i++)
		if (pg_strcasecmp(name, extra[i]) == 0)
			return true;
	return false;
}

/*
 * Whether a value of this type (a base type) becomes jsonb that may hold
 * objects, with keys of their own: json, jsonb, a composite type, an array
 * of them.
 */
static bool
type_has_keys(Oid base)
{
	Oid			elem = get_element_type(base);

	if (OidIsValid(elem))
		base = getBaseType(elem);
	return base == JSONOID || base == JSONBOID || get_typtype(base) == TYPTYPE_COMPOSITE;
}

/*
 * Whether a row's or value's JSON text may hold a key with a sensitive
 * name (a cheap test, case-insensitive: "cvv": for an exact name, the name
 * anywhere for the others); only then is its jsonb walked for such keys.
 */
static bool
text_names_secret(const char *text, int len)
{
	char	   *lower = asc_tolower(text, len);
	char		key[NAMEDATALEN + 4];
	bool		found = false;
	int			i;

	for (i = 0; !found && masked_exact[i] != NULL; i++)
	{
		snprintf(key, sizeof(key), "\"%s\":", masked_exact[i]);
		found = strstr(lower, key) != NULL;
	}
	for (i = 0; !found && masked_substr[i] != NULL; i++)
		found = strstr(lower, masked_substr[i]) != NULL;
	pfree(lower);
	return found;
}

/* Whether a column of this type could hold a pay_card. */
static bool
type_is_card(Oid typid)
{
	Oid			base;
	Oid			elem;

	if (!OidIsValid(card_type_oid))
		return false;
	base = getBaseType(typid);
	if (base == card_type_oid)
		return true;
	elem = get_element_type(base);
	return OidIsValid(elem) && getBaseType(elem) == card_type_oid;
}

/* jsonb's order of object keys: shorter first, then bytewise */
static int
compare_key_order(const void *x, const void *y, void *arg)
{
	AuditAttr  *attrs = (AuditAttr *) arg;
	AuditAttr  *a = &attrs[*(const int *) x];
	AuditAttr  *b = &attrs[*(const int *) y];

	if (a->namelen != b->namelen)
		return a->namelen < b->namelen ? -1 : 1;
	return memcmp(a->name, b->name, a->namelen);
}

static AuditRelCache *
get_rel_cache(Relation rel, Trigger *trigger)
{
	Oid			relid = RelationGetRelid(rel);
	AuditRelCache *entry;
	bool		found;
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;
	bool		secret_table;
	int			i;

	entry = hash_search(rel_cache, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found && entry->cxt != NULL)
		MemoryContextDelete(entry->cxt);
	entry->valid = false;
	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "payments audit relation",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(entry->cxt);

	entry->schema = get_namespace_name(RelationGetNamespace(rel));
	entry->relname = pstrdup(RelationGetRelationName(rel));
	entry->schema_text = cstring_to_text(entry->schema);
	entry->relname_text = cstring_to_text(entry->relname);
	entry->natts = desc->natts;
	entry->attrs = palloc0(sizeof(AuditAttr) * desc->natts);
	entry->merchant_attno = 0;
	entry->correlation_attno = 0;
	secret_table = (relid == card_vault_relid || relid == secrets_relid);

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AuditAttr  *a = &entry->attrs[i];
		Oid			base;

		a->name = pstrdup(NameStr(att->attname));
		a->namelen = strlen(a->name);
		a->name_text = PointerGetDatum(cstring_to_text(a->name));
		a->typid = att->atttypid;
		a->typbyval = att->attbyval;
		a->typlen = att->attlen;
		if (att->attisdropped)
		{
			a->kind = AK_DROPPED;
			continue;
		}
		base = getBaseType(att->atttypid);
		a->basetype = base;
		if (strcmp(a->name, "merchant_id") == 0 &&
			(base == INT8OID || base == INT4OID || base == INT2OID))
			entry->merchant_attno = att->attnum;
		if (strcmp(a->name, "correlation_id") == 0 && (base == TEXTOID || base == VARCHAROID))
			entry->correlation_attno = att->attnum;

		if (type_is_card(att->atttypid) ||
			name_is_masked(a->name, trigger ? trigger->tgnargs : 0,
						   trigger ? trigger->tgargs : NULL))
			a->kind = AK_MASKED;
		else if (base == BYTEAOID)
			a->kind = secret_table ? AK_OMIT_BYTES : AK_BYTES;
		else
		{
			a->kind = AK_VALUE;
			a->nested_keys = type_has_keys(base);
			jsonb_column_init(&a->json, att->atttypid, att->atttypmod, att->attcollation,
							  entry->cxt);
		}
	}

	/*
	 * The written columns in the order of a jsonb object's keys (shorter
	 * first, then bytewise), each with its key as JSON text.
	 */
	entry->keyorder = palloc(sizeof(int) * Max(desc->natts, 1));
	entry->nkeys = 0;
	for (i = 0; i < desc->natts; i++)
	{
		AuditAttr  *a = &entry->attrs[i];
		StringInfoData key;

		if (a->kind == AK_DROPPED || a->kind == AK_MASKED || a->kind == AK_OMIT_BYTES)
			continue;
		initStringInfo(&key);
		escape_json(&key, a->name);
		appendBinaryStringInfo(&key, ": ", 2);
		a->keytext = key.data;
		a->keytextlen = key.len;
		entry->keyorder[entry->nkeys++] = i;
	}
	qsort_arg(entry->keyorder, entry->nkeys, sizeof(int), compare_key_order, entry->attrs);
	entry->keys_clean = true;
	for (i = 0; i < entry->nkeys; i++)
		if (card_text_contains_number(entry->attrs[entry->keyorder[i]].name,
									  entry->attrs[entry->keyorder[i]].namelen))
			entry->keys_clean = false;

	MemoryContextSwitchTo(old);
	entry->valid = true;
	return entry;
}

/* ------------------------------------------------------------------------
 * Card numbers in values
 * ------------------------------------------------------------------------
 */

/*
 * A copy of jb with every key or scalar that holds a card number replaced,
 * and every key of a nested object with a sensitive name (cvv, password,
 * api_key, ...: a field of a composite value, a key of a json or jsonb
 * value) left out with its value, as a column of that name is;
 * a string that is exactly one identifier (a UUID, a W3C traceparent:
 * free_text_is_identifier) is kept, as the API keeps it in the row: a
 * correlation id or an idempotency key whose random hex passes for a card
 * number would otherwise no longer match the row's.
 */
static Jsonb *
redact_card_numbers(Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY && v.type == jbvString &&
			name_is_masked(pnstrdup(v.val.string.val, v.val.string.len), 0, NULL))
		{
			int			depth = 0;

			/* the key's value, a scalar or a whole object or array */
			do
			{
				tok = JsonbIteratorNext(&it, &v, false);
				if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
					depth++;
				else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
					depth--;
			} while (depth > 0);
			continue;
		}
		if ((tok == WJB_KEY || tok == WJB_VALUE || tok == WJB_ELEM))
		{
			bool		bad = false;

			if (v.type == jbvString)
				bad = card_text_contains_number(v.val.string.val, v.val.string.len) &&
					!(tok != WJB_KEY && free_text_is_identifier(v.val.string.val, v.val.string.len));
			else if (v.type == jbvNumeric)
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v.val.numeric)));

				bad = card_text_contains_number(s, strlen(s));
			}
			if (bad)
			{
				v.type = jbvString;
				v.val.string.val = AUDIT_CARD_NOTE;
				v.val.string.len = strlen(AUDIT_CARD_NOTE);
			}
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

/* ------------------------------------------------------------------------
 * Row to jsonb
 * ------------------------------------------------------------------------
 */

/* An int2, int4 or int8 value (base: its type) as int64. */
static int64
int_value(Datum value, Oid base)
{
	if (base == INT8OID)
		return DatumGetInt64(value);
	if (base == INT4OID)
		return DatumGetInt32(value);
	return DatumGetInt16(value);
}

/* The row as a jsonb object, masked columns left out. */
static Jsonb *
row_to_audit_jsonb(AuditRelCache *rc, HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < rc->natts && i < desc->natts; i++)
	{
		AuditAttr  *a = &rc->attrs[i];
		JsonbValue	key;
		JsonbValue	v;
		Datum		value;
		bool		isnull;

		if (a->kind == AK_DROPPED || a->kind == AK_MASKED || a->kind == AK_OMIT_BYTES)
			continue;
		key.type = jbvString;
		key.val.string.val = a->name;
		key.val.string.len = a->namelen;
		pushJsonbValue(&state, WJB_KEY, &key);

		value = heap_getattr(tuple, i + 1, desc, &isnull);
		if (isnull)
		{
			v.type = jbvNull;
			pushJsonbValue(&state, WJB_VALUE, &v);
			continue;
		}
		if (a->kind == AK_BYTES)
		{
			JsonbValue	k;

			pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
			k.type = jbvString;
			k.val.string.val = "bytes";
			k.val.string.len = 5;
			pushJsonbValue(&state, WJB_KEY, &k);
			v.type = jbvNumeric;
			v.val.numeric = int64_to_numeric((int64) (toast_raw_datum_size(value) - VARHDRSZ));
			pushJsonbValue(&state, WJB_VALUE, &v);
			pushJsonbValue(&state, WJB_END_OBJECT, NULL);
		}
		else
			jsonb_column_push(&a->json, &state, value, false);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * A string as escape_json() writes it.  Most have nothing to escape: they
 * are copied whole (escape_json appends character by character).
 */
static void
append_json_string(StringInfo out, const char *s, int len)
{
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == '"' || c == '\\')
		{
			escape_json(out, pnstrdup(s, len));
			return;
		}
	}
	enlargeStringInfo(out, len + 2);
	out->data[out->len++] = '"';
	memcpy(out->data + out->len, s, len);
	out->len += len;
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
}

/* A jsonb scalar's text, as JsonbToCString prints it. */
static void
append_scalar_text(StringInfo out, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendBinaryStringInfo(out, "null", 4);
			break;
		case jbvBool:
			if (v->val.boolean)
				appendBinaryStringInfo(out, "true", 4);
			else
				appendBinaryStringInfo(out, "false", 5);
			break;
		case jbvNumeric:
			appendStringInfoString(out, DatumGetCString(DirectFunctionCall1(numeric_out,
																			NumericGetDatum(v->val.numeric))));
			break;
		case jbvString:
			append_json_string(out, v->val.string.val, v->val.string.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
}

/* append_audit_value() of an AK_VALUE column. */
static bool
append_json_value(AuditAttr *a, Datum value, JsonbValue *v, StringInfo out)
{
	switch (a->json.kind)
	{
		case JV_INT:
			{
				int64		n = int_value(value, a->json.basetype);
				char		buf[MAXINT8LEN + 1];
				int			len;

				v->type = jbvNumeric;
				v->val.numeric = int64_to_numeric(n);
				len = pg_lltoa(n, buf);
				appendBinaryStringInfo(out, buf, len);
				break;
			}
		case JV_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));

				if (numeric_is_nan(num) || numeric_is_inf(num))
				{
					v->type = jbvString;
					v->val.string.val = s;
					v->val.string.len = strlen(s);
					escape_json(out, s);
				}
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = num;
					appendStringInfoString(out, s);
				}
				break;
			}
		case JV_TEXT:
			{
				text	   *t = DatumGetTextPP(value);
				int			len = VARSIZE_ANY_EXHDR(t);

				/* its bytes in the tuple serve until the row's jsonb is built */
				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = len;
				append_json_string(out, VARDATA_ANY(t), len);
				break;
			}
		case JV_DATETIME:
			{
				char	   *s;

				/* a statement's rows often share one (DEFAULT now()) */
				if (!a->have_last || a->last_value != value)
				{
					jsonb_datetime_text(a->last_text, value, a->json.basetype);
					a->last_value = value;
					a->have_last = true;
				}
				s = pstrdup(a->last_text);

				v->type = jbvString;
				v->val.string.val = s;
				v->val.string.len = strlen(s);
				append_json_string(out, s, v->val.string.len);
				break;
			}
		default:
			{
				Jsonb	   *container;

				if (jsonb_column_scalar(&a->json, value, v, &container))
					append_scalar_text(out, v);
				else
				{
					/* an object or array: as JsonbToCString prints it inside the row */
					*v = *jsonb_container_value(container);
					JsonbToCString(out, &container->root, VARSIZE(container));
				}
				break;
			}
	}
	return true;
}

/*
 * One value of a row: its JsonbValue into v, its text (as JsonbToCString
 * prints it) onto out.
 */
static bool
append_audit_value(AuditAttr *a, Datum value, JsonbValue *v, StringInfo out)
{
	switch (a->kind)
	{
		case AK_BYTES:
			{
				JsonbPair  *bp = palloc(sizeof(JsonbPair));
				int64		nbytes = (int64) (toast_raw_datum_size(value) - VARHDRSZ);

				bp->key.type = jbvString;
				bp->key.val.string.val = "bytes";
				bp->key.val.string.len = 5;
				bp->order = 0;
				bp->value.type = jbvNumeric;
				bp->value.val.numeric = int64_to_numeric(nbytes);
				v->type = jbvObject;
				v->val.object.nPairs = 1;
				v->val.object.pairs = bp;
				appendStringInfo(out, "{\"bytes\": " INT64_FORMAT "}", nbytes);
				break;
			}
		case AK_VALUE:
			return append_json_value(a, value, v, out);
		default:
			return false;
	}
	return true;
}

/*
 * A row's jsonb object as built, per key: its pair, where its value's text
 * is, whether that text holds a card number.  The new row of an UPDATE
 * takes its unchanged values from the old row's.
 */
typedef struct AuditRowBuild
{
	JsonbPair  *pairs;
	char	   *text;
	int		   *seg_start;
	int		   *seg_len;
	bool	   *seg_dirty;
} AuditRowBuild;

/*
 * The row as a jsonb object and, built alongside, its text as
 * JsonbToCString prints it (keys in jsonb's order, ", " and ": "): no
 * key sorting, no second pass over the jsonb to print it.  Writes what
 * row_to_audit_jsonb() writes (objects and arrays in a value included).
 * Returns false for a row with more columns than the relation's cache
 * knows: row_to_audit_jsonb() serves that row.
 */
static bool
row_to_audit_fast(AuditRelCache *rc, TupleDesc desc, const Datum *values,
				  const bool *nulls, const AuditRowBuild *prev, const bool *same,
				  AuditRowBuild *build, Jsonb **jb_out, char **text_out, int *len_out,
				  bool *clean)
{
	bool		dirty = !rc->keys_clean;
	JsonbValue	obj;
	JsonbPair  *pairs = palloc(sizeof(JsonbPair) * Max(rc->nkeys, 1));
	StringInfoData out;
	int			k;

	if (build != NULL)
	{
		build->pairs = pairs;
		build->seg_start = palloc(sizeof(int) * Max(rc->nkeys, 1));
		build->seg_len = palloc(sizeof(int) * Max(rc->nkeys, 1));
		build->seg_dirty = palloc(sizeof(bool) * Max(rc->nkeys, 1));
	}
	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	for (k = 0; k < rc->nkeys; k++)
	{
		int			i = rc->keyorder[k];
		AuditAttr  *a = &rc->attrs[i];
		JsonbPair  *p = &pairs[k];
		int			start;
		bool		value_dirty;
		JsonbValue *v = &p->value;
		Datum		value;
		bool		isnull;

		if (i >= desc->natts)
			return false;
		p->key.type = jbvString;
		p->key.val.string.val = a->name;
		p->key.val.string.len = a->namelen;
		p->order = k;
		if (k > 0)
			appendBinaryStringInfo(&out, ", ", 2);
		appendBinaryStringInfo(&out, a->keytext, a->keytextlen);

		value = values[i];
		isnull = nulls[i];
		start = out.len;
		value_dirty = false;
		if (prev != NULL && same[i])
		{
			/* unchanged by the UPDATE: the old row's value and text */
			*v = prev->pairs[k].value;
			appendBinaryStringInfo(&out, prev->text + prev->seg_start[k], prev->seg_len[k]);
			value_dirty = prev->seg_dirty[k];
		}
		else if (isnull)
		{
			v->type = jbvNull;
			appendBinaryStringInfo(&out, "null", 4);
		}
		else
		{
			if (!append_audit_value(a, value, v, &out))
				return false;

			/*
			 * Card numbers: each value's text on its own is what a scan of
			 * the whole text finds (a digit group joins the next one over a
			 * space or a dash only, and values are set apart by ", " and
			 * quotes); dates, times, booleans and byte counts cannot hold
			 * one.  (A row kept for the next one has every value scanned.)
			 */
			value_dirty = (!dirty || build != NULL) &&
				a->kind != AK_BYTES &&
				!(a->json.kind == JV_DATETIME || a->json.kind == JV_BOOL) &&
				card_text_contains_number(out.data + start, out.len - start);
			/* a key of a nested object with a sensitive name: walked for */
			value_dirty = value_dirty || (a->nested_keys &&
										  text_names_secret(out.data + start, out.len - start));
		}
		dirty |= value_dirty;
		if (build != NULL)
		{
			build->seg_start[k] = start;
			build->seg_len[k] = out.len - start;
			build->seg_dirty[k] = value_dirty;
		}
	}
	appendStringInfoChar(&out, '}');
	*clean = !dirty;
	if (build != NULL)
		build->text = out.data;
	obj.type = jbvObject;
	obj.val.object.nPairs = rc->nkeys;
	obj.val.object.pairs = pairs;
	*jb_out = JsonbValueToJsonb(&obj);
	*text_out = out.data;
	*len_out = out.len;
	return true;
}

/* The row's jsonb and its text, by whichever path serves the row. */
static bool
row_to_audit(AuditRelCache *rc, HeapTuple tuple, TupleDesc desc,
			 const Datum *values, const bool *nulls, const AuditRowBuild *prev,
			 const bool *same, AuditRowBuild *build, Jsonb **jb, char **text, int *len,
			 bool *clean)
{
	if (row_to_audit_fast(rc, desc, values, nulls, prev, same, build, jb, text, len, clean))
		return true;
	*clean = false;				/* scanned when printed */
	*jb = row_to_audit_jsonb(rc, tuple, desc);
	*text = NULL;				/* printed when needed */
	*len = 0;
	return false;
}

/* The names of the columns an UPDATE changed (masked ones included). */
static ArrayType *
changed_columns(AuditRelCache *rc, const Datum *oldvals, const bool *oldnulls,
				const Datum *newvals, const bool *newnulls, TupleDesc desc, bool *same,
				const char ***names_out, int *n_out)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(rc->natts, 1));
	const char **cnames = palloc(sizeof(char *) * Max(rc->natts, 1));
	int			n = 0;
	int			i;

	for (i = 0; i < rc->natts && i < desc->natts; i++)
	{
		AuditAttr  *a = &rc->attrs[i];
		bool		oldnull,
					newnull;
		Datum		oldval,
					newval;

		same[i] = false;
		if (a->kind == AK_DROPPED)
			continue;
		oldval = oldvals[i];
		oldnull = oldnulls[i];
		newval = newvals[i];
		newnull = newnulls[i];
		same[i] = true;
		if (oldnull && newnull)
			continue;
		if (oldnull != newnull || !datumIsEqual(oldval, newval, a->typbyval, a->typlen))
		{
			cnames[n] = a->name;
			names[n++] = a->name_text;
			same[i] = false;
		}
	}
	*names_out = cnames;
	*n_out = n;
	return construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/* ------------------------------------------------------------------------
 * Who, for whom, in which request
 * ------------------------------------------------------------------------
 */

static char *
jsonb_object_string(Jsonb *jb, const char *key)
{
	JsonbValue	vbuf;
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &vbuf);
	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return v->val.string.len > 0 ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

/* Parse a GUC holding a JSON object; NULL when unset, empty or '{}'. */
static Jsonb *
guc_json(const char *name, const char **text_out)
{
	const char *s = GetConfigOption(name, true, false);

	*text_out = s;
	if (s == NULL || s[0] == '\0' || strcmp(s, "{}") == 0)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
}

/* Bring a cache up to date with its setting's current text. */
static void
refresh_json_setting(JsonSettingCache *c)
{
	const char *s = GetConfigOption(c->name, true, false);
	MemoryContext old;
	Jsonb	   *jb;

	if (s == NULL)
		s = "";
	if (c->text != NULL && strcmp(c->text, s) == 0)
		return;
	if (c->text)
		pfree(c->text);
	c->text = NULL;
	for (size_t i = 0; i < lengthof(c->values); i++)
	{
		if (c->values[i])
			pfree(c->values[i]);
		c->values[i] = NULL;
	}

	jb = guc_json(c->name, &s);
	old = MemoryContextSwitchTo(TopMemoryContext);
	for (size_t i = 0; jb != NULL && i < lengthof(c->values); i++)
	{
		c->values[i] = jsonb_object_string(jb, c->keys[i]);
		/* a correlation id's card numbers are masked (free_text.c) */
		if (c->values[i] != NULL)
			(void) free_text_mask(c->values[i], strlen(c->values[i]));
	}
	c->text = pstrdup(s ? s : "");
	MemoryContextSwitchTo(old);
}

/*
 * The JWT subject as audit rows keep it (app_user): its card numbers
 * masked, as a correlation id's are (free_text_mask: 'X' for each digit,
 * not when it is exactly a UUID).  The claim is the JWT issuer's text,
 * which the API's card checks never see: a subject that was a card number
 * went into every audit row of the request, its WAL and its dumps in
 * clear.  Kept for the last subject seen (a session's requests mostly
 * carry one).
 */
static const char *
masked_subject(const char *subject)
{
	static char *given = NULL;
	static char *masked = NULL;

	if (subject == NULL)
		return NULL;
	if (given == NULL || strcmp(given, subject) != 0)
	{
		char	   *g = MemoryContextStrdup(TopMemoryContext, subject);
		char	   *m = MemoryContextStrdup(TopMemoryContext, subject);

		(void) free_text_mask(m, strlen(m));
		if (given != NULL)
			pfree(given);
		if (masked != NULL)
			pfree(masked);
		given = g;
		masked = m;
	}
	return masked;
}

/*
 * The merchant an audit row goes to: the changed row's merchant_id when
 * the actor may act for that merchant (src/tenancy.c decides, once per
 * command), else the merchant the actor acts for.  A row naming another
 * merchant, or a setting or claim the role may not use, would otherwise
 * put the row into that merchant's sealed chain, where it can never be
 * taken out.  When nothing decides a merchant (a role bound to none, or
 * to several and naming none it may use) the change is refused with the
 * API's 42501: there is no default merchant but the owner's.
 */
static int64
audit_merchant(const PaymentsActor *who, bool has_row_merchant, int64 row_merchant)
{
	PaymentsIdentity id;

	if (has_row_merchant && payments_actor_may_act_for(who, row_merchant))
		return row_merchant;
	if (who->merchant_id != 0)
		return who->merchant_id;
	(void) payments_identity(&id, false);	/* raises why */
	return id.merchant_id;
}

/*
 * The correlation id: the request's x-request-id (or traceparent) header
 * under PostgREST, else the payments.correlation_id setting, else the
 * audited row's own correlation_id column.  The same order as
 * payments._correlation_id().  Card numbers in it are masked: the header's
 * when it is read (refresh_json_setting), the setting's when it is set
 * (its check hook in payments.c).  A header over 200 characters is refused
 * here as there (22001; free_text.c), for the writes of calls that do not
 * ask payments._correlation_id(); the setting is bounded as it is set.
 */
static const char *
current_correlation_id(void)
{
	static LocalTransactionId lxid = InvalidLocalTransactionId;
	static CommandId cid;
	const char *s;

	/*
	 * The header, once per command: a statement's rows are audited
	 * together after it (as src/tenancy.c reads the actor).
	 */
	if (lxid != MyProc->lxid || cid != GetCurrentCommandId(false))
	{
		lxid = InvalidLocalTransactionId;
		refresh_json_setting(&headers);
		lxid = MyProc->lxid;
		cid = GetCurrentCommandId(false);
	}
	/* x-request-id, else traceparent */
	s = headers.values[0] != NULL ? headers.values[0] : headers.values[1];
	if (s != NULL)
	{
		free_text_check_correlation_id(s, strlen(s));
		return s;
	}
	s = payments_correlation_id;	/* the payments.correlation_id setting */
	if (s != NULL && s[0] != '\0')
		return s;
	return NULL;
}

/*
 * The names of the role that acted and of the login role, and the same as
 * text: kept while the pair stays the same, and until a role changes (a
 * rename: audit_role_callback).
 */
static struct
{
	bool		valid;
	uint64		changes;		/* roles changed (audit_role_callback) */
	Oid			oids[2];
	char		names[2][NAMEDATALEN];
	int32		texts[2][(VARHDRSZ + NAMEDATALEN + 3) / 4]; /* aligned varlenas */
}			role_names_kept;

static void
audit_role_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
					uint32 hashvalue pg_attribute_unused())
{
	role_names_kept.valid = false;
	role_names_kept.changes++;
}

static void
role_names(Oid role, Oid session, const char **names, Datum *texts)
{
	if (!role_names_kept.valid || role_names_kept.oids[0] != role ||
		role_names_kept.oids[1] != session)
	{
		uint64		changes = role_names_kept.changes;

		role_names_kept.valid = false;
		role_names_kept.oids[0] = role;
		role_names_kept.oids[1] = session;
		for (int i = 0; i < 2; i++)
		{
			Oid			oid = role_names_kept.oids[i];
			char	   *name = GetUserNameFromId(oid, true);
			int			len;

			if (name == NULL)
				snprintf(role_names_kept.names[i], NAMEDATALEN, "%u", oid);
			else
				strlcpy(role_names_kept.names[i], name, NAMEDATALEN);
			len = strlen(role_names_kept.names[i]);
			SET_VARSIZE(role_names_kept.texts[i], VARHDRSZ + len);
			memcpy(VARDATA(role_names_kept.texts[i]), role_names_kept.names[i], len);
		}
		/* a change seen while the names were read: read them again next time */
		role_names_kept.valid = (changes == role_names_kept.changes);
	}
	for (int i = 0; i < 2; i++)
	{
		names[i] = role_names_kept.names[i];
		texts[i] = PointerGetDatum(role_names_kept.texts[i]);
	}
}

/* An operation's name as text: the trigger's four kept. */
static Datum
operation_text(const char *operation)
{
	static const char *const names[] = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"};
	static text *texts[lengthof(names)];

	for (size_t i = 0; i < lengthof(names); i++)
		if (strcmp(operation, names[i]) == 0)
		{
			if (texts[i] == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				texts[i] = cstring_to_text(names[i]);
				MemoryContextSwitchTo(old);
			}
			return PointerGetDatum(texts[i]);
		}
	return CStringGetTextDatum(operation);
}

/* ------------------------------------------------------------------------
 * Hashing
 * ------------------------------------------------------------------------
 */

/* Append a length-prefixed field (length 0xFFFFFFFF for NULL). */
static void
hash_field(StringInfo buf, const char *s, int len)
{
	uint32		n;
	unsigned char be[4];

	n = (s == NULL) ? 0xFFFFFFFF : (uint32) len;
	be[0] = (n >> 24) & 0xFF;
	be[1] = (n >> 16) & 0xFF;
	be[2] = (n >> 8) & 0xFF;
	be[3] = n & 0xFF;
	appendBinaryStringInfo(buf, (char *) be, 4);
	if (s != NULL)
		appendBinaryStringInfo(buf, s, len);
}

static void
hash_cstr(StringInfo buf, const char *s)
{
	hash_field(buf, s, s ? strlen(s) : 0);
}

static void
hash_int(StringInfo buf, int64 v)
{
	char		tmp[MAXINT8LEN + 1];
	int			len = pg_lltoa(v, tmp);

	hash_field(buf, tmp, len);
}

/* A row image by its canonical text: as known (with its length), else printed. */
static void
hash_row_image(StringInfo buf, Jsonb *row, const char *text, int len)
{
	if (text != NULL && len > 0)
		hash_field(buf, text, len);
	else if (text != NULL)
		hash_cstr(buf, text);
	else
		hash_cstr(buf, row ? JsonbToCString(NULL, &row->root, VARSIZE(row)) : NULL);
}

/*
 * SHA-256 with a digest and a context fetched once per process (every
 * audit row is hashed; EVP_DigestInit_ex starts each digest afresh).
 */
static void
sha256(const char *data, size_t len, uint8 *out)
{
	static EVP_MD *md = NULL;
	static EVP_MD_CTX *ctx = NULL;
	unsigned int outlen = 0;
	bool		ok;

	if (md == NULL)
		md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (ctx == NULL)
		ctx = EVP_MD_CTX_new();
	if (md == NULL || ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not allocate a SHA-256 context")));
	ok = EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
		EVP_DigestUpdate(ctx, data, len) == 1 &&
		EVP_DigestFinal_ex(ctx, out, &outlen) == 1 &&
		outlen == AUDIT_HASH_LEN;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 digest")));
}

/*
 * The row hash: SHA-256 over the version tag and every column of the audit
 * row but the hash itself, each as a 4-byte big-endian length and its
 * text (jsonb in its canonical text output, integers in decimal, the
 * timestamp as microseconds since 2000-01-01, the changed columns as a
 * count and the names).  Text forms survive pg_dump and restore.  The API
 * key id (added in 0.2.0) is covered only when there is one, as the tag
 * "key_id" and the id after every other column: rows without a key hash
 * as they did before, so older rows still verify.
 */
static bytea *
audit_row_hash(const AuditRecord *r)
{
	static StringInfoData buf;	/* kept: one per row otherwise */
	bytea	   *result;

	if (buf.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&buf);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&buf);
	hash_cstr(&buf, AUDIT_HASH_VERSION);
	hash_int(&buf, r->merchant_id);
	hash_int(&buf, r->audit_id);
	hash_cstr(&buf, r->table_schema);
	hash_cstr(&buf, r->table_name);
	hash_cstr(&buf, r->operation);
	hash_row_image(&buf, r->old_row, r->old_text, r->old_len);
	hash_row_image(&buf, r->new_row, r->new_text, r->new_len);
	if (r->changed_columns == NULL)
		hash_field(&buf, NULL, 0);
	else if (r->changed_names != NULL)
	{
		/* the trigger's: the array's names, as kept */
		hash_int(&buf, r->nchanged);
		for (int i = 0; i < r->nchanged; i++)
			hash_cstr(&buf, r->changed_names[i]);
	}
	else
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n,
					i;

		deconstruct_array(r->changed_columns, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		hash_int(&buf, n);
		for (i = 0; i < n; i++)
			hash_cstr(&buf, nulls[i] ? NULL : TextDatumGetCString(elems[i]));
	}
	hash_cstr(&buf, r->db_role);
	hash_cstr(&buf, r->session_role);
	hash_cstr(&buf, r->app_user);
	hash_cstr(&buf, r->correlation_id);
	hash_int(&buf, (int64) r->txid);
	hash_int(&buf, (int64) r->logged_at);
	if (r->key_id != 0)
	{
		hash_cstr(&buf, "key_id");
		hash_int(&buf, r->key_id);
	}

	result = palloc(VARHDRSZ + AUDIT_HASH_LEN);
	SET_VARSIZE(result, VARHDRSZ + AUDIT_HASH_LEN);
	sha256(buf.data, buf.len, (uint8 *) VARDATA(result));
	if (buf.maxlen > 64 * 1024)
	{
		/* a large row's room is not kept */
		pfree(buf.data);
		buf.data = NULL;
	}
	return result;
}

/* ------------------------------------------------------------------------
 * Writing the audit row
 * ------------------------------------------------------------------------
 */

/*
 * The columns of payments.audit_log this file fills, in order, with the type
 * of each: one line per column.  direct_insert.c finds them by name; the
 * SPI fallback's INSERT names them.
 */
#define AUDIT_COLUMNS(X) \
	X(AC_MERCHANT_ID, "merchant_id", INT8OID) \
	X(AC_AUDIT_ID, "audit_id", INT8OID) \
	X(AC_TABLE_SCHEMA, "table_schema", TEXTOID) \
	X(AC_TABLE_NAME, "table_name", TEXTOID) \
	X(AC_OPERATION, "operation", TEXTOID) \
	X(AC_OLD_ROW, "old_row", JSONBOID) \
	X(AC_NEW_ROW, "new_row", JSONBOID) \
	X(AC_CHANGED_COLUMNS, "changed_columns", TEXTARRAYOID) \
	X(AC_DB_ROLE, "db_role", TEXTOID) \
	X(AC_SESSION_ROLE, "session_role", TEXTOID) \
	X(AC_APP_USER, "app_user", TEXTOID) \
	X(AC_CORRELATION_ID, "correlation_id", TEXTOID) \
	X(AC_TXID, "txid", XID8OID) \
	X(AC_LOGGED_AT, "logged_at", TIMESTAMPTZOID) \
	X(AC_ROW_HASH, "row_hash", BYTEAOID) \
	X(AC_KEY_ID, "key_id", INT8OID)

#define AUDIT_COLUMN_ENUM(id, name, type) id,
typedef enum AuditColumn
{
	AUDIT_COLUMNS(AUDIT_COLUMN_ENUM)
	AUDIT_NCOLUMNS
} AuditColumn;

#define AUDIT_COLUMN_NAME(id, name, type) name,
static const char *const audit_column_names[AUDIT_NCOLUMNS] = {AUDIT_COLUMNS(AUDIT_COLUMN_NAME)};

#define AUDIT_COLUMN_TYPE(id, name, type) type,
static const Oid audit_column_types[AUDIT_NCOLUMNS] = {AUDIT_COLUMNS(AUDIT_COLUMN_TYPE)};

/*
 * audit_log is written directly (src/direct_insert.c: the table and index
 * APIs, no executor or SPI call per row) when that writes exactly what an
 * INSERT would; otherwise, and when the library was not preloaded (no
 * hooks), through the kept SPI plan.
 */
static DirectTable audit_table = {
	.label = "payments audit writer",
	.ncolumns = AUDIT_NCOLUMNS,
	.columns = audit_column_names,
	.types = audit_column_types,
};

/*
 * Audit rows of the statement, waiting to be written together (see "The
 * statement buffer" below): each as a tuple of the buffer's own
 * descriptor (the audit columns in AuditColumn order, whatever audit_log's
 * column order), with the subtransaction it was made in.
 */
#define AUDIT_BATCH_ROWS	1000	/* rows buffered before a write */
#define AUDIT_BUFFER_BYTES	(4 * 1024 * 1024)	/* flushed beyond this */
/*
 * Memory the buffer keeps across writes: a batch of 1,000 rows of modest
 * images (palloc rounds each up to a power of two).  Memory freed back to
 * the system and taken again would be faulted in page by page for every
 * batch: a third of a bulk UPDATE's audit cost.
 */
#define AUDIT_BUFFER_KEEP	(2 * 1024 * 1024)

typedef struct AuditBufferedRow
{
	SubTransactionId subid;
	HeapTuple	tuple;
} AuditBufferedRow;

typedef struct AuditBuffer
{
	MemoryContext cxt;			/* the rows and their tuples */
	TupleDesc	desc;			/* AUDIT_NCOLUMNS columns, in TopMemoryContext */
	AuditBufferedRow *rows;
	int			nrows;
	int			maxrows;
	Size		bytes;			/* of the tuples held */
} AuditBuffer;

static AuditBuffer buffer;
static bool buffer_flushing = false;	/* the SPI path runs ExecutorFinish */
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static void buffer_flush(void);
static void buffer_discard(SubTransactionId from);

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Before commit or prepare (deferred triggers have fired by then): the rows
 * still buffered are written, then audit_log is closed.  An abort throws
 * the buffered rows away with everything else of the transaction.
 */
static void
writer_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT ||
		event == XACT_EVENT_PRE_PREPARE)
	{
		buffer_flush();
		direct_tables_close();
		if (event == XACT_EVENT_PRE_PREPARE)
			audit_horizon_preparing();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		direct_tables_forget(); /* the resource owner releases them */
		buffer_discard(InvalidSubTransactionId);
		audit_horizon_release();
	}
}

/* A subtransaction rolled back: so are the audit rows it buffered. */
static void
writer_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid pg_attribute_unused(),
						void *arg pg_attribute_unused())
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		buffer_discard(mySubid);
}

/*
 * Around any utility statement: nothing of audit_log held open while it
 * runs (the buffered rows of this subtransaction written first), and the
 * rows that COPY, TRUNCATE or SET CONSTRAINTS made written when it is done.
 */
static void
writer_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	buffer_flush();
	direct_tables_close();
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	buffer_flush();
}

/*
 * After a query's AFTER triggers have fired (AfterTriggerEndQuery runs in
 * standard_ExecutorFinish): its audit rows are written.  Nested queries
 * (SPI, PL/pgSQL) pass here too, so every statement's rows are in
 * audit_log when the statement is done.
 */
static void
writer_executor_finish(QueryDesc *queryDesc)
{
	if (prev_executor_finish)
		prev_executor_finish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	buffer_flush();
}

/* Called from _PG_init at preload time. */
void
audit_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = writer_process_utility;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = writer_executor_finish;
	RegisterXactCallback(writer_xact_callback, NULL);
	RegisterSubXactCallback(writer_subxact_callback, NULL);
	/* they close what direct_insert.c opens, before commit and utility statements */
	direct_insert_enable();
}

/*
 * Insert one audit row through a kept SPI plan (connected to SPI).  The
 * key id goes in only when there is one: a key exists only from 0.2.0 on,
 * and the trigger also writes to an older audit_log that awaits its update
 * (no key_id column), which the direct path leaves to this one.
 */
static void
spi_insert(const Datum *values, const bool *isnull)
{
	bool		with_key = !isnull[AC_KEY_ID];
	SPIPlanPtr *kept = with_key ? &insert_plan_key : &insert_plan;
	int			ncols = with_key ? AUDIT_NCOLUMNS : AC_KEY_ID;
	char		nulls[AUDIT_NCOLUMNS];
	int			rc;
	int			j;

	StaticAssertStmt(AC_KEY_ID == AUDIT_NCOLUMNS - 1, "key_id must be the last audit column");
	if (*kept == NULL)
	{
		StringInfoData sql;
		SPIPlanPtr	plan;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "INSERT INTO payments.audit_log (");
		for (j = 0; j < ncols; j++)
			appendStringInfo(&sql, "%s%s", j > 0 ? ", " : "", audit_column_names[j]);
		appendStringInfoString(&sql, ") VALUES (");
		for (j = 0; j < ncols; j++)
			appendStringInfo(&sql, "%s$%d", j > 0 ? ", " : "", j + 1);
		appendStringInfoChar(&sql, ')');
		plan = SPI_prepare(sql.data, ncols, (Oid *) audit_column_types);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*kept = plan;
	}
	for (j = 0; j < ncols; j++)
		nulls[j] = isnull[j] ? 'n' : ' ';
	rc = SPI_execute_plan(*kept, (Datum *) values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not insert the audit row: %s", SPI_result_code_string(rc));
}

/* ------------------------------------------------------------------------
 * The statement buffer
 *
 * The trigger does not write its audit row at once: the row (values,
 * hash and audit id all final) is buffered, and the buffered rows are
 * written together, with table_multi_insert, when the statement's AFTER
 * triggers are done (ExecutorFinish; for COPY, TRUNCATE and SET
 * CONSTRAINTS, after the utility statement), before commit or prepare
 * (deferred triggers), before any utility statement, and whenever
 * AUDIT_BATCH_ROWS rows or AUDIT_BUFFER_BYTES wait.  Rows only go through
 * the buffer when the direct writer applies; rows for the SPI path (an
 * INSERT trigger on audit_log, say) are written at once, as before.
 *
 * Subtransactions: a row remembers the subtransaction that made it.
 * Rows are written into the subtransaction running when they are
 * written, so only rows of that subtransaction or of its committed
 * children (ids not below its own: subtransaction ids increase) may be
 * written then; the rows of enclosing subtransactions (a prefix of the
 * buffer) wait for their own level's next write, at the latest for the
 * commit.  A subtransaction rolled back throws away the rows made in it
 * and in its children (ids not below its own); an abort throws all away.
 * So no audit row outlives the work it records, and none is lost for work
 * that commits.
 *
 * A row made in a statement is in audit_log when the statement is done,
 * as before; an AFTER trigger of the same statement that fires after
 * payments_audit and reads audit_log may not see it yet.
 * ------------------------------------------------------------------------
 */

/* The buffer's descriptor: the audit columns in AuditColumn order. */
static void
buffer_init(void)
{
	MemoryContext old;
	int			j;

	if (buffer.cxt != NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	buffer.desc = CreateTemplateTupleDesc(AUDIT_NCOLUMNS);
	for (j = 0; j < AUDIT_NCOLUMNS; j++)
		TupleDescInitEntry(buffer.desc, j + 1, audit_column_names[j],
						   audit_column_types[j], -1, 0);
	buffer.maxrows = AUDIT_BATCH_ROWS;
	buffer.rows = palloc(sizeof(AuditBufferedRow) * buffer.maxrows);
	MemoryContextSwitchTo(old);
	buffer.cxt = AllocSetContextCreate(TopMemoryContext, "payments audit buffer",
									   AUDIT_BUFFER_KEEP, ALLOCSET_DEFAULT_INITSIZE,
									   ALLOCSET_DEFAULT_MAXSIZE);
}

/* Keep a row for the next write; write when enough wait. */
static void
buffer_append(const Datum *values, const bool *nulls)
{
	MemoryContext old;
	HeapTuple	tuple;

	buffer_init();
	if (buffer.nrows == buffer.maxrows)
	{
		/* rows of enclosing subtransactions fill it: make room */
		buffer.maxrows *= 2;
		buffer.rows = repalloc(buffer.rows, sizeof(AuditBufferedRow) * buffer.maxrows);
	}
	old = MemoryContextSwitchTo(buffer.cxt);
	tuple = heap_form_tuple(buffer.desc, (Datum *) values, (bool *) nulls);
	MemoryContextSwitchTo(old);
	buffer.rows[buffer.nrows].subid = GetCurrentSubTransactionId();
	buffer.rows[buffer.nrows].tuple = tuple;
	buffer.nrows++;
	buffer.bytes += HEAPTUPLESIZE + tuple->t_len;
	if (buffer.bytes >= AUDIT_BUFFER_BYTES ||
		(buffer.nrows >= AUDIT_BATCH_ROWS &&
		 buffer.rows[buffer.nrows - AUDIT_BATCH_ROWS].subid >= GetCurrentSubTransactionId()))
		buffer_flush();
}

/* Forget the rows made in subtransaction from and later (all: Invalid). */
static void
buffer_discard(SubTransactionId from)
{
	int			keep = buffer.nrows;

	while (keep > 0 && (from == InvalidSubTransactionId || buffer.rows[keep - 1].subid >= from))
		keep--;
	for (int i = keep; i < buffer.nrows; i++)
	{
		buffer.bytes -= HEAPTUPLESIZE + buffer.rows[i].tuple->t_len;
		pfree(buffer.rows[i].tuple);
	}
	buffer.nrows = keep;
	if (keep == 0 && buffer.cxt != NULL)
	{
		MemoryContextReset(buffer.cxt);
		buffer.bytes = 0;
	}
}

/*
 * Write the buffered rows that belong to the running subtransaction (see
 * above), as the owner of audit_log.
 */
static void
buffer_flush(void)
{
	volatile int first = buffer.nrows;
	SubTransactionId cur;
	Oid			save_userid;
	int			save_sec;
	MemoryContext tmp;
	MemoryContext old;

	if (buffer.nrows == 0 || buffer_flushing || !IsTransactionState())
		return;
	cur = GetCurrentSubTransactionId();
	while (first > 0 && buffer.rows[first - 1].subid >= cur)
		first--;
	if (first == buffer.nrows)
		return;

	load_globals();
	tmp = AllocSetContextCreate(CurrentMemoryContext, "payments audit flush",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(audit_log_owner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	buffer_flushing = true;
	PG_TRY();
	{
		int			i = first;

		while (i < buffer.nrows)
		{
			DirectTable *w = direct_table_get(&audit_table, audit_log_relid);
			HeapTuple	batch[DIRECT_INSERT_SLOTS];
			int			n = 0;

			if (w == NULL)
			{
				/* audit_log changed since: the SPI path, row by row */
				Datum		values[AUDIT_NCOLUMNS];
				bool		nulls[AUDIT_NCOLUMNS];

				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				for (; i < buffer.nrows; i++)
				{
					heap_deform_tuple(buffer.rows[i].tuple, buffer.desc, values, nulls);
					spi_insert(values, nulls);
				}
				SPI_finish();
				break;
			}
			while (i < buffer.nrows && n < DIRECT_INSERT_SLOTS)
				batch[n++] = buffer.rows[i++].tuple;
			direct_table_insert_many(w, batch, buffer.desc, n);
			MemoryContextReset(tmp);
		}
	}
	PG_FINALLY();
	{
		buffer_flushing = false;
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);

	/* written: they go from the buffer */
	for (int i = first; i < buffer.nrows; i++)
		pfree(buffer.rows[i].tuple);
	buffer.nrows = first;
	if (first == 0)
	{
		MemoryContextReset(buffer.cxt);
		buffer.bytes = 0;
	}
	else
	{
		buffer.bytes = 0;
		for (int i = 0; i < first; i++)
			buffer.bytes += HEAPTUPLESIZE + buffer.rows[i].tuple->t_len;
	}
}

/* A text column's value, NULL for a NULL string. */
static Datum
text_value(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * A row image as stored: compressed with its column's method (lz4 where the
 * server has it, else the server's default_toast_compression) once it is
 * large enough to gain.  PostgreSQL compresses a value only in a row over
 * about 2 kB, and few audit rows are, so a payment's images went to disk
 * and WAL whole: some 6 kB of a purchase's 16 kB of WAL.  Readers see the
 * same jsonb (values are decompressed when read); the row hash is of the
 * image, not of its stored form.
 */
#define AUDIT_COMPRESS_MIN_BYTES 256

static Datum
stored_image(Jsonb *image, char method)
{
	Datum		compressed;

	if (image == NULL || VARATT_IS_EXTENDED(image) ||
		VARSIZE(image) < AUDIT_COMPRESS_MIN_BYTES)
		return PointerGetDatum(image);
	if (!CompressionMethodIsValid(method))
		method = default_toast_compression;
	compressed = toast_compress_datum(PointerGetDatum(image), method);
	return compressed != (Datum) 0 ? compressed : PointerGetDatum(image);
}

/*
 * Fill in the audit id, the row hash and who did it, then insert the row
 * as the owner of payments.audit_log (API roles have no privilege on it):
 * directly, else through SPI.
 */
static int64
audit_insert(AuditRecord *r, bool buffered)
{
	volatile bool append = false;
	Datum		values[AUDIT_NCOLUMNS];
	bool		nulls[AUDIT_NCOLUMNS];
	Oid			save_userid;
	int			save_sec;
	Jsonb	   *rows[2];
	char	   *texts[2];
	const char *names[2];
	Datum		rtexts[2];
	int			lens[2];
	bool		clean[2];
	int			i;
	Oid			owner;
	Oid			log_relid;
	Oid			seq_relid;
	char		compression[2];
	const PaymentsActor *who;
	DirectTable *w;

	/*
	 * The OIDs go into locals now: an invalidation callback may reset the
	 * globals at any catalog access below.
	 */
	load_globals();
	owner = audit_log_owner;
	log_relid = audit_log_relid;
	seq_relid = audit_seq_relid;
	compression[0] = image_compression[0];
	compression[1] = image_compression[1];

	/* anything that still looks like a card number goes */
	rows[0] = r->old_row;
	rows[1] = r->new_row;
	texts[0] = r->old_text;
	texts[1] = r->new_text;
	lens[0] = r->old_len;
	lens[1] = r->new_len;
	clean[0] = r->old_clean;
	clean[1] = r->new_clean;
	for (i = 0; i < 2; i++)
	{
		if (rows[i] != NULL)
		{
			if (texts[i] == NULL)
			{
				texts[i] = JsonbToCString(NULL, &rows[i]->root, VARSIZE(rows[i]));
				lens[i] = strlen(texts[i]);
			}
			else if (lens[i] <= 0)
				lens[i] = strlen(texts[i]);
			if (!clean[i] && (card_text_contains_number(texts[i], lens[i]) ||
							  text_names_secret(texts[i], lens[i])))
			{
				rows[i] = redact_card_numbers(rows[i]);
				texts[i] = JsonbToCString(NULL, &rows[i]->root, VARSIZE(rows[i]));
				lens[i] = strlen(texts[i]);
			}
		}
	}
	r->old_row = rows[0];
	r->new_row = rows[1];
	r->old_text = texts[0];
	r->new_text = texts[1];
	r->old_len = lens[0];
	r->new_len = lens[1];

	/*
	 * Who: the role that acted (SET ROLE, else the login role: not the
	 * owner of the SECURITY DEFINER function the change went through), the
	 * login role, and the JWT subject where tenancy trusts the claims
	 * (src/tenancy.c reads them, once per command), its card numbers
	 * masked.
	 */
	who = payments_actor();
	role_names(who->role, GetSessionUserId(), names, rtexts);
	r->db_role = names[0];
	r->session_role = names[1];
	values[AC_DB_ROLE] = rtexts[0];
	values[AC_SESSION_ROLE] = rtexts[1];
	r->app_user = masked_subject(who->subject);
	r->key_id = who->key_id;
	r->txid = U64FromFullTransactionId(GetTopFullTransactionId());
	r->logged_at = GetCurrentStatementStartTimestamp();
	audit_horizon_taking(r->merchant_id);
	r->audit_id = nextval_internal(seq_relid, false);
	audit_horizon_took(r->audit_id);

	memset(nulls, false, sizeof(nulls));
	values[AC_MERCHANT_ID] = Int64GetDatum(r->merchant_id);
	values[AC_AUDIT_ID] = Int64GetDatum(r->audit_id);
	values[AC_TABLE_SCHEMA] = r->schema_text ? PointerGetDatum(r->schema_text) :
		CStringGetTextDatum(r->table_schema);
	values[AC_TABLE_NAME] = r->name_text ? PointerGetDatum(r->name_text) :
		CStringGetTextDatum(r->table_name);
	values[AC_OPERATION] = operation_text(r->operation);
	values[AC_OLD_ROW] = stored_image(r->old_row, compression[0]);
	nulls[AC_OLD_ROW] = r->old_row == NULL;
	values[AC_NEW_ROW] = stored_image(r->new_row, compression[1]);
	nulls[AC_NEW_ROW] = r->new_row == NULL;
	values[AC_CHANGED_COLUMNS] = PointerGetDatum(r->changed_columns);
	nulls[AC_CHANGED_COLUMNS] = r->changed_columns == NULL;
	values[AC_APP_USER] = text_value(r->app_user, &nulls[AC_APP_USER]);
	values[AC_CORRELATION_ID] = text_value(r->correlation_id, &nulls[AC_CORRELATION_ID]);
	values[AC_TXID] = FullTransactionIdGetDatum(FullTransactionIdFromU64(r->txid));
	values[AC_LOGGED_AT] = TimestampTzGetDatum(r->logged_at);
	values[AC_ROW_HASH] = PointerGetDatum(audit_row_hash(r));
	values[AC_KEY_ID] = Int64GetDatum(r->key_id);
	nulls[AC_KEY_ID] = r->key_id == 0;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
	PG_TRY();
	{
		w = direct_table_get(&audit_table, log_relid);
		if (w != NULL && buffered)
			append = true;
		else if (w != NULL)
			direct_table_insert(w, values, nulls);
		else
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			spi_insert(values, nulls);
			SPI_finish();
		}
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	if (append)
		buffer_append(values, nulls);
	return r->audit_id;
}

/* ------------------------------------------------------------------------
 * The trigger
 * ------------------------------------------------------------------------
 */

Datum
pay_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerEvent ev;
	AuditRelCache *rc;
	AuditRecord r;
	TupleDesc	desc;
	HeapTuple	rowtup = NULL;
	Datum	   *values[2];		/* the row (old row of an UPDATE), deformed */
	bool	   *nulls[2];
	bool	   *same;			/* UPDATE: per column, unchanged */
	AuditRowBuild old_build;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._audit_trigger() must be called as a trigger")));
	ev = td->tg_event;
	if (!TRIGGER_FIRED_AFTER(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._audit_trigger() must be an AFTER trigger"),
				 errhint("Attach it with payments.pay_audit_attach().")));

	load_globals();

	/* a pg_dump script or pg_restore run by the owner: see the header */
	if (!check_function_bodies && outer_user_is_audit_owner())
		return PointerGetDatum(NULL);

	if (RelationGetRelid(td->tg_relation) == audit_log_relid)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("payments.audit_log cannot be audited"),
				 errdetail("Auditing the audit log would write a row for every row it writes.")));

	desc = RelationGetDescr(td->tg_relation);
	rc = get_rel_cache(td->tg_relation, td->tg_trigger);

	memset(&r, 0, sizeof(r));
	r.table_schema = rc->schema;
	r.table_name = rc->relname;
	r.schema_text = rc->schema_text;
	r.name_text = rc->relname_text;
	for (int k = 0; k < 2; k++)
	{
		values[k] = palloc(sizeof(Datum) * Max(desc->natts, 1));
		nulls[k] = palloc(sizeof(bool) * Max(desc->natts, 1));
	}

	if (TRIGGER_FIRED_BY_TRUNCATE(ev))
		r.operation = "TRUNCATE";
	else if (!TRIGGER_FIRED_FOR_ROW(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._audit_trigger() must be a row trigger for INSERT, UPDATE and DELETE"),
				 errhint("Attach it with payments.pay_audit_attach().")));
	else if (TRIGGER_FIRED_BY_INSERT(ev))
	{
		r.operation = "INSERT";
		rowtup = td->tg_trigtuple;
		heap_deform_tuple(rowtup, desc, values[0], nulls[0]);
		row_to_audit(rc, rowtup, desc, values[0], nulls[0], NULL, NULL, NULL,
					 &r.new_row, &r.new_text, &r.new_len, &r.new_clean);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
	{
		r.operation = "UPDATE";
		rowtup = td->tg_newtuple;
		heap_deform_tuple(td->tg_trigtuple, desc, values[0], nulls[0]);
		heap_deform_tuple(td->tg_newtuple, desc, values[1], nulls[1]);
		same = palloc(sizeof(bool) * Max(desc->natts, 1));
		r.changed_columns = changed_columns(rc, values[0], nulls[0], values[1], nulls[1], desc, same,
											&r.changed_names, &r.nchanged);
		/* the new row takes the old row's unchanged values as built */
		if (row_to_audit(rc, td->tg_trigtuple, desc, values[0], nulls[0], NULL, NULL,
						 &old_build, &r.old_row, &r.old_text, &r.old_len, &r.old_clean))
			row_to_audit(rc, td->tg_newtuple, desc, values[1], nulls[1], &old_build, same,
						 NULL, &r.new_row, &r.new_text, &r.new_len, &r.new_clean);
		else
			row_to_audit(rc, td->tg_newtuple, desc, values[1], nulls[1], NULL, NULL,
						 NULL, &r.new_row, &r.new_text, &r.new_len, &r.new_clean);
	}
	else
	{
		r.operation = "DELETE";
		rowtup = td->tg_trigtuple;
		heap_deform_tuple(rowtup, desc, values[0], nulls[0]);
		row_to_audit(rc, rowtup, desc, values[0], nulls[0], NULL, NULL, NULL,
					 &r.old_row, &r.old_text, &r.old_len, &r.old_clean);
	}

	{
		bool		isnull = true;
		Datum		d = 0;

		if (rowtup != NULL && rc->merchant_attno > 0)
			d = heap_getattr(rowtup, rc->merchant_attno, desc, &isnull);
		r.merchant_id = audit_merchant(payments_actor(), !isnull,
									   isnull ? 0 : int_value(d, rc->attrs[rc->merchant_attno - 1].basetype));
	}

	r.correlation_id = current_correlation_id();
	if (r.correlation_id == NULL && rowtup != NULL && rc->correlation_attno > 0)
	{
		bool		isnull;
		Datum		d = heap_getattr(rowtup, rc->correlation_attno, desc, &isnull);

		if (!isnull)
			r.correlation_id = TextDatumGetCString(d);
	}

	audit_insert(&r, true);
	return PointerGetDatum(NULL);
}

/*
 * payments._audit_record(merchant_id, operation, table_name, details):
 * an audit row that no trigger writes (PRUNE records a retention run).
 */
Datum
pay_audit_record(PG_FUNCTION_ARGS)
{
	AuditRecord r;
	Oid			relid;
	int64		id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("merchant_id, operation and table_name are required")));
	load_globals();
	relid = PG_GETARG_OID(2);
	memset(&r, 0, sizeof(r));
	r.merchant_id = PG_GETARG_INT64(0);
	r.operation = text_to_cstring(PG_GETARG_TEXT_PP(1));
	r.table_schema = get_namespace_name(get_rel_namespace(relid));
	r.table_name = get_rel_name(relid);
	if (r.table_schema == NULL || r.table_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	r.new_row = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P_COPY(3);
	r.correlation_id = current_correlation_id();

	id = audit_insert(&r, false);
	PG_RETURN_INT64(id);
}

/*
 * payments._audit_row_hash(...): the hash of a stored audit row, from its
 * columns, for pay_audit_verify().
 */
Datum
pay_audit_row_hash(PG_FUNCTION_ARGS)
{
	AuditRecord r;

#define TEXTARG(n) (PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n)))
	memset(&r, 0, sizeof(r));
	r.merchant_id = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	r.audit_id = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	r.table_schema = TEXTARG(2);
	r.table_name = TEXTARG(3);
	r.operation = TEXTARG(4);
	r.old_row = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	r.new_row = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);
	r.changed_columns = PG_ARGISNULL(7) ? NULL : PG_GETARG_ARRAYTYPE_P(7);
	r.db_role = TEXTARG(8);
	r.session_role = TEXTARG(9);
	r.app_user = TEXTARG(10);
	r.correlation_id = TEXTARG(11);
	r.txid = PG_ARGISNULL(12) ? 0 : U64FromFullTransactionId(PG_GETARG_FULLTRANSACTIONID(12));
	r.logged_at = PG_ARGISNULL(13) ? 0 : PG_GETARG_TIMESTAMPTZ(13);
	r.key_id = PG_NARGS() > 14 && !PG_ARGISNULL(14) ? PG_GETARG_INT64(14) : 0;
#undef TEXTARG
	PG_RETURN_BYTEA_P(audit_row_hash(&r));
}

/* ------------------------------------------------------------------------
 * Append-only guard
 * ------------------------------------------------------------------------
 */

/*
 * BEFORE UPDATE OR DELETE (row) and BEFORE TRUNCATE (statement) trigger on
 * payments.audit_log and payments.audit_seals: refuses, unless
 * pay_audit_prune() is running for a role with the owner's privileges.
 */
Datum
pay_audit_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerEvent ev;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._audit_guard() must be called as a trigger")));
	ev = td->tg_event;
	load_globals();
	if (retention_active && user_is_audit_owner())
	{
		if (TRIGGER_FIRED_BY_UPDATE(ev))
			return PointerGetDatum(td->tg_newtuple);
		if (TRIGGER_FIRED_FOR_ROW(ev))
			return PointerGetDatum(td->tg_trigtuple);
		return PointerGetDatum(NULL);
	}
	op = TRIGGER_FIRED_BY_UPDATE(ev) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(ev) ? "DELETE" :
		TRIGGER_FIRED_BY_TRUNCATE(ev) ? "TRUNCATE" : "change";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s.%s is append-only",
					get_namespace_name(RelationGetNamespace(td->tg_relation)),
					RelationGetRelationName(td->tg_relation)),
			 errdetail("Role %s tried to %s audit records; audit records are never changed.",
					   GetUserNameFromId(GetUserId(), false), op),
			 errhint("Old audit records are removed only in whole sealed batches, by payments.pay_audit_prune(), which the extension owner runs.")));
	PG_RETURN_NULL();			/* not reached */
}

/*
 * payments._audit_retention(active boolean): lets pay_audit_prune() through
 * the guard until it turns it off or the transaction ends.
 */
Datum
pay_audit_retention(PG_FUNCTION_ARGS)
{
	bool		on = PG_ARGISNULL(0) ? false : PG_GETARG_BOOL(0);

	load_globals();
	if (on && !user_is_audit_owner())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the owner of payments.audit_log can prune audit records"),
				 errhint("Run payments.pay_audit_prune() as the extension owner.")));
	if (!xact_callback_registered)
	{
		RegisterXactCallback(audit_xact_callback, NULL);
		xact_callback_registered = true;
	}
	retention_active = on;
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * Sealing horizon
 * ------------------------------------------------------------------------
 */

/*
 * payments._audit_seal_horizon(wait_ms integer, merchant bigint) returns
 * bigint: an audit id H such that every audit row of merchant (NULL: of
 * any) with audit_id <= H is final (committed and visible, or rolled back
 * for good), or NULL when that cannot be had within wait_ms.
 *
 * Read H = the sequence's last value first; then H is lowered below the
 * first id of every other transaction of this database still holding ids
 * of that merchant (src/audit_horizon.c: each backend notes its
 * transaction's first id and merchant in
 * shared memory), prepared ones included (one prepared before the server
 * started is waited for).  Transactions
 * that take ids later get ids > H; our own rows commit with the seal.
 */
Datum
pay_audit_seal_horizon(PG_FUNCTION_ARGS)
{
	int			wait_ms = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	/* (0.1.0's schema declares no merchant argument) */
	int64		merchant = PG_NARGS() < 2 || PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	Datum		last;
	int64		horizon;
	LOCAL_FCINFO(seqinfo, 1);

	load_globals();
	InitFunctionCallInfoData(*seqinfo, NULL, 1, InvalidOid, NULL, NULL);
	seqinfo->args[0].value = ObjectIdGetDatum(audit_seq_relid);
	seqinfo->args[0].isnull = false;
	last = pg_sequence_last_value(seqinfo);
	if (seqinfo->isnull)
		PG_RETURN_INT64(0);		/* no audit row was ever written */
	if (!audit_horizon(DatumGetInt64(last),
					   TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Max(wait_ms, 0)),
					   merchant, &horizon))
		PG_RETURN_NULL();
	PG_RETURN_INT64(horizon);
}

/* ------------------------------------------------------------------------
 * Attach and detach
 * ------------------------------------------------------------------------
 */

static void
check_attachable(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("Only tables and partitioned tables can be audited.")));
	if (relid == card_vault_relid || relid == secrets_relid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s cannot be audited", get_rel_name(relid)),
				 errdetail("The table holds sealed card data or installation secrets, which must never be copied into audit records.")));
	if (relid == audit_log_relid || get_rel_namespace(relid) == payments_namespace())
	{
		if (relid == audit_log_relid ||
			strcmp(get_rel_name(relid), "audit_seals") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s cannot be audited", get_rel_name(relid)),
					 errdetail("The audit tables are append-only and tamper-evident already.")));
	}
	if (!pg_class_ownercheck(relid, GetUserId()) && !user_is_audit_owner())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of table %s to change its auditing", get_rel_name(relid)),
				 errhint("Ask the table's owner or the payments extension owner.")));
}

/* Run a utility statement as the owner of the audit tables. */
static void
exec_as_owner(const char *sql)
{
	Oid			save_userid;
	int			save_sec;
	volatile int rc = 0;
	Oid			owner;

	load_globals();
	owner = audit_log_owner;
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		rc = SPI_execute(sql, false, 0);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "could not run \"%s\": %s", sql, SPI_result_code_string(rc));
}

/*
 * existing_trigger_args: the tgargs bytes of the table's trigger of that
 * name, or NULL when there is none or it has no arguments; *exists says
 * whether there is one, and *ours (when asked) whether it is the audit
 * trigger as pay_audit_attach makes it: payments._audit_trigger(), of
 * that kind (tgtype), enabled, on every column, with no WHEN condition.
 * A name alone proved nothing: a role with the TRIGGER privilege on a
 * table could make triggers of those names first (of a function of its
 * own, or of the audit function under WHEN (false)), and a trigger
 * disabled since stayed so; pay_audit_attach then returned false, "already
 * attached", and nothing was ever audited.
 */
static bytea *
existing_trigger_args(Oid relid, const char *name, int16 tgtype, bool *exists, bool *ours)
{
	Datum		args[3];
	Oid			types[3] = {OIDOID, TEXTOID, INT2OID};
	int			rc;
	bool		isnull;
	Datum		d;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = CStringGetTextDatum(name);
	args[2] = Int16GetDatum(tgtype);
	rc = SPI_execute_with_args("SELECT t.tgargs, t.tgfoid = 'payments._audit_trigger()'::pg_catalog.regprocedure"
							   " AND t.tgtype = $3 AND t.tgenabled IN ('O', 'A') AND t.tgqual IS NULL"
							   " AND pg_catalog.cardinality(t.tgattr::pg_catalog.int2[]) = 0 AND t.tgconstraint = 0"
							   " FROM pg_catalog.pg_trigger t WHERE t.tgrelid = $1 AND t.tgname = $2",
							   3, types, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look up trigger %s: %s", name, SPI_result_code_string(rc));
	*exists = SPI_processed > 0;
	if (ours)
		*ours = false;
	if (!*exists)
		return NULL;
	if (ours)
		*ours = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) && !isnull;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? NULL : DatumGetByteaPCopy(d);
}

/*
 * drop_audit_triggers: drops those of the audit triggers of the table
 * (quoted, qualified name) that exist, so that attaching or detaching says
 * nothing about triggers that were not there.  Inside SPI.
 */
static void
drop_audit_triggers(const char *qualified, bool exists, bool exists_trunc)
{
	StringInfoData sql;

	initStringInfo(&sql);
	if (exists)
	{
		appendStringInfo(&sql, "DROP TRIGGER IF EXISTS %s ON %s", AUDIT_TRIGGER_NAME, qualified);
		exec_as_owner(sql.data);
	}
	if (exists_trunc)
	{
		resetStringInfo(&sql);
		appendStringInfo(&sql, "DROP TRIGGER IF EXISTS %s ON %s", AUDIT_TRUNCATE_TRIGGER_NAME, qualified);
		exec_as_owner(sql.data);
	}
	pfree(sql.data);
}

/*
 * audited_descendant: whether a partition or inheritance child of an
 * audited table gets audit triggers of its own (tables and partitioned
 * tables; a foreign table's rows are another server's).
 */
static bool
audited_descendant(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	return relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE;
}

/*
 * attach_triggers: makes the audit triggers of one table that are missing
 * or differ (the row trigger with other masked columns); returns whether
 * it made any.  A partition gets the TRUNCATE trigger only: PostgreSQL
 * clones a partitioned table's row triggers to its partitions, not its
 * statement triggers, so TRUNCATE of a partition by name fired nothing.
 * An inheritance child gets both: a parent's triggers never fire for its
 * children's rows, which UPDATE, DELETE and TRUNCATE of the parent change
 * too.  A partition's row trigger, the clone, is enabled again if it was
 * disabled.  Inside SPI.
 */
static bool
attach_triggers(Oid relid, bool with_row_trigger, const char *args, const StringInfoData *tgargs)
{
	bytea	   *have;
	bool		exists,
				exists_trunc,
				ours,
				ours_trunc;
	char	   *qualified;
	StringInfoData sql;

	have = existing_trigger_args(relid, AUDIT_TRIGGER_NAME, AUDIT_ROW_TGTYPE, &exists, &ours);
	existing_trigger_args(relid, AUDIT_TRUNCATE_TRIGGER_NAME, AUDIT_TRUNCATE_TGTYPE, &exists_trunc, &ours_trunc);
	if (ours_trunc &&
		(!with_row_trigger ? !exists || ours :
		 (ours &&
		  (have == NULL ? tgargs->len == 0 :
		   (VARSIZE_ANY_EXHDR(have) == (Size) tgargs->len &&
			memcmp(VARDATA_ANY(have), tgargs->data, tgargs->len) == 0)))))
		return false;

	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   get_rel_name(relid));
	initStringInfo(&sql);
	if (with_row_trigger)
	{
		drop_audit_triggers(qualified, exists, exists_trunc);
		appendStringInfo(&sql,
						 "CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s "
						 "FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger(%s)",
						 AUDIT_TRIGGER_NAME, qualified, args);
		exec_as_owner(sql.data);
		resetStringInfo(&sql);
	}
	else
	{
		/* a partition's row trigger is its parent's clone: enabled again */
		if (exists && !ours)
		{
			appendStringInfo(&sql, "ALTER TABLE %s ENABLE TRIGGER %s", qualified, AUDIT_TRIGGER_NAME);
			exec_as_owner(sql.data);
			resetStringInfo(&sql);
		}
		if (ours_trunc)
		{
			pfree(sql.data);
			return true;
		}
		if (exists_trunc)
			drop_audit_triggers(qualified, false, true);
	}
	appendStringInfo(&sql,
					 "CREATE TRIGGER %s AFTER TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger()",
					 AUDIT_TRUNCATE_TRIGGER_NAME, qualified);
	exec_as_owner(sql.data);
	pfree(sql.data);
	return true;
}

/*
 * payments.pay_audit_attach(table_name regclass, masked_columns text[])
 * returns boolean: attaches the audit triggers; false when they were
 * attached already with the same masked columns.
 */
Datum
pay_audit_attach(PG_FUNCTION_ARGS)
{
	Oid			relid;
	StringInfoData args;
	StringInfoData tgargs;
	List	   *children;
	ListCell   *lc;
	bool		changed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table_name is required")));
	relid = PG_GETARG_OID(0);
	load_globals();
	check_attachable(relid);

	initStringInfo(&args);
	initStringInfo(&tgargs);
	if (!PG_ARGISNULL(1))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *elems;
		bool	   *nulls;
		int			n,
					i;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *name;

			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("masked column names must not be null")));
			name = TextDatumGetCString(elems[i]);
			if (name[0] == '\0' || strlen(name) >= NAMEDATALEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid masked column name \"%s\"", name),
						 errdetail("A column name has 1 to %d bytes.", NAMEDATALEN - 1)));

			/*
			 * A name that is no column of the table masks nothing: a
			 * misspelt one would leave the column it meant in the audit
			 * rows, and the name itself would be kept as a trigger
			 * argument (in pg_trigger, its WAL and every dump) whatever it
			 * holds, a card number too.  The name is not quoted.
			 */
			if (get_attnum(relid, name) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("masked column %d is not a column of table %s", i + 1,
								get_rel_name(relid)),
						 errdetail("A masked column must be a column of the table; the name given is not quoted."),
						 errhint("Add the column first, or check the spelling (column names are case-sensitive).")));
			appendStringInfo(&args, "%s%s", i > 0 ? ", " : "", quote_literal_cstr(name));
			appendBinaryStringInfo(&tgargs, name, strlen(name) + 1);
		}
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	children = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	changed = attach_triggers(relid, true, args.data, &tgargs);
	foreach(lc, children)
	{
		Oid			child = lfirst_oid(lc);

		if (child != relid && audited_descendant(child))
			changed |= attach_triggers(child, !get_rel_relispartition(child), args.data, &tgargs);
	}
	SPI_finish();
	PG_RETURN_BOOL(changed);
}

/*
 * detach_triggers: drops the audit triggers of one table that exist (a
 * partition's TRUNCATE trigger only: its row trigger is its parent's
 * clone); returns whether there were any.  Inside SPI.
 */
static bool
detach_triggers(Oid relid, bool with_row_trigger)
{
	bool		exists,
				exists_trunc;

	existing_trigger_args(relid, AUDIT_TRIGGER_NAME, AUDIT_ROW_TGTYPE, &exists, NULL);
	existing_trigger_args(relid, AUDIT_TRUNCATE_TRIGGER_NAME, AUDIT_TRUNCATE_TGTYPE, &exists_trunc, NULL);
	exists = exists && with_row_trigger;
	if (!exists && !exists_trunc)
		return false;
	drop_audit_triggers(quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid)),
						exists, exists_trunc);
	return true;
}

/*
 * payments.pay_audit_detach(table_name regclass) returns boolean: removes
 * the audit triggers; false when there were none.
 */
Datum
pay_audit_detach(PG_FUNCTION_ARGS)
{
	Oid			relid;
	List	   *children;
	ListCell   *lc;
	bool		changed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table_name is required")));
	relid = PG_GETARG_OID(0);
	load_globals();
	check_attachable(relid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	children = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	/* the partitions' and children's first: a partition's row trigger goes with its parent's */
	changed = false;
	foreach(lc, children)
	{
		Oid			child = lfirst_oid(lc);

		if (child != relid && audited_descendant(child))
			changed |= detach_triggers(child, !get_rel_relispartition(child));
	}
	changed |= detach_triggers(relid, true);
	SPI_finish();
	PG_RETURN_BOOL(changed);
}
