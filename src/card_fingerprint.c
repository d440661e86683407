/*-------------------------------------------------------------------------
 *
 * card_fingerprint.c
 *	  Keyed card fingerprints and the installation secret behind them.
 *
 * A fingerprint is HMAC-SHA256(secret, card number digits): the same card
 * gives the same fingerprint however it was typed, so a merchant can spot
 * a returning card or a card used across accounts without keeping its
 * number.  Without the secret a fingerprint cannot be checked against
 * guessed numbers (a plain hash of a 16-digit number with a known prefix
 * and last four falls to brute force in seconds).
 *
 * The secret lives in payments.installation_secrets, a table no API role
 * can read (REVOKE ALL FROM PUBLIC).  We read it here with a direct heap
 * scan, which checks no privileges, so card functions work for every role
 * while the secret stays hidden.  The active secret is the earliest one
 * created for the purpose: after pg_dump and restore, the restored secret
 * predates the one the fresh CREATE EXTENSION made and wins, so
 * fingerprints stay stable.  Each backend caches it; a statement trigger
 * on the table sends a relcache invalidation that drops every cache.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "card_fingerprint.h"

PG_FUNCTION_INFO_V1(pay_random_bytes);
PG_FUNCTION_INFO_V1(pay_installation_secrets_changed);

#define SECRET_PURPOSE		"card_fingerprint"
#define SECRET_MIN_LEN		16
#define SECRET_MAX_LEN		64

static uint8 secret[SECRET_MAX_LEN];
static int	secret_len = 0;
static bool secret_valid = false;
static Oid	secret_relid = InvalidOid;
static bool callback_registered = false;

/* Drop the cached secret when its table may have changed. */
static void
secret_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	if (relid == InvalidOid || relid == secret_relid)
	{
		explicit_bzero(secret, sizeof(secret));
		secret_len = 0;
		secret_valid = false;
	}
}

/* The error for a missing or unusable secret: the install is broken. */
static void
secret_missing(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("payments card fingerprint secret is not available"),
			 errdetail("%s", detail),
			 errhint("Recreate the extension, or restore payments.installation_secrets from a backup.")));
}

/* Column number of a named column, or error. */
static int
column_number(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	secret_missing("The table payments.installation_secrets lacks a column it needs.");
	return 0;					/* keep compiler quiet */
}

/*
 * Read the active secret into the cache: the earliest created row whose
 * purpose is card_fingerprint.  A direct scan, so the caller needs no
 * privilege on the table.
 */
static void
load_secret(Oid relid)
{
	Relation	rel;
	TupleDesc	desc;
	TableScanDesc scan;
	Snapshot	snapshot;
	HeapTuple	tuple;
	int			att_purpose,
				att_secret,
				att_created;
	bool		found = false;
	TimestampTz best_created = 0;

	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	att_purpose = column_number(desc, "purpose");
	att_secret = column_number(desc, "secret");
	att_created = column_number(desc, "created_at");

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Datum		d;
		bool		isnull;
		text	   *purpose;
		bytea	   *value;
		TimestampTz created;
		int			len;

		d = heap_getattr(tuple, att_purpose, desc, &isnull);
		if (isnull)
			continue;
		purpose = DatumGetTextPP(d);
		if (VARSIZE_ANY_EXHDR(purpose) != strlen(SECRET_PURPOSE) ||
			memcmp(VARDATA_ANY(purpose), SECRET_PURPOSE, strlen(SECRET_PURPOSE)) != 0)
			continue;
		d = heap_getattr(tuple, att_created, desc, &isnull);
		if (isnull)
			continue;
		created = DatumGetTimestampTz(d);
		if (found && created >= best_created)
			continue;
		d = heap_getattr(tuple, att_secret, desc, &isnull);
		if (isnull)
			continue;
		value = DatumGetByteaPP(d);
		len = VARSIZE_ANY_EXHDR(value);
		if (len < SECRET_MIN_LEN || len > SECRET_MAX_LEN)
			continue;
		memcpy(secret, VARDATA_ANY(value), len);
		secret_len = len;
		best_created = created;
		found = true;
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	if (!found)
		secret_missing("The table payments.installation_secrets holds no usable card_fingerprint secret (16 to 64 bytes).");
	secret_relid = relid;
	secret_valid = true;
}

/* The secret, loading it if the cache is empty or the table was recreated. */
static void
ensure_secret(void)
{
	Oid			nsp;
	Oid			relid = InvalidOid;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(secret_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	nsp = get_namespace_oid("payments", true);
	if (OidIsValid(nsp))
		relid = get_relname_relid("installation_secrets", nsp);
	if (!OidIsValid(relid))
		secret_missing("The table payments.installation_secrets does not exist.");
	if (!secret_valid || relid != secret_relid)
		load_secret(relid);
}

/*
 * HMAC-SHA256 of the card number digits under the installation secret,
 * into out[CARD_FINGERPRINT_LEN].
 */
void
card_fingerprint_compute(const char *digits, int ndigits, uint8 *out)
{
	unsigned int outlen = 0;

	ensure_secret();
	if (HMAC(EVP_sha256(), secret, secret_len,
			 (const unsigned char *) digits, ndigits, out, &outlen) == NULL ||
		outlen != CARD_FINGERPRINT_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute card fingerprint")));
}

/*
 * payments._random_bytes(n): n bytes from the operating system's strong
 * random source, used by the install script to make secrets.
 */
Datum
pay_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	bytea	   *result;

	if (n < 1 || n > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of random bytes must be between 1 and 1024")));
	result = palloc(VARHDRSZ + n);
	SET_VARSIZE(result, VARHDRSZ + n);
	if (!pg_strong_random(VARDATA(result), n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}

/*
 * Statement trigger on payments.installation_secrets: tell every backend,
 * at commit, to drop its cached secret.
 */
Datum
pay_installation_secrets_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function can only be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}
