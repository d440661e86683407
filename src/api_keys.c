/*-------------------------------------------------------------------------
 *
 * api_keys.c
 *	  Merchant API keys: secrets, their check, scopes and rate limits.
 *
 * A key is "pk_<key id>_<secret>": the key id (payments.api_keys) finds the
 * row, the secret is 256 random bits (43 base64url characters).  The row
 * keeps the SHA-256 of the whole key, never the key: for a secret of 256
 * random bits a fast hash is enough (a slow password hash such as bcrypt
 * protects guessable passwords; nobody can enumerate 2^256 secrets), and it
 * keeps the check cheap on every request.  Hashes are compared in constant
 * time (CRYPTO_memcmp).  A rotation keeps the previous hash until the end
 * of the overlap.
 *
 * The SQL side (sql/src/api_keys.sql) finds the row as the owner and hands
 * it here (_api_key_accept): this checks the secret, the state of the key,
 * the rate limits (rate_limit.c, shared memory) and then records the key
 * for the transaction in the identity (tenancy.c).  Through PostgREST's
 * pre-request function a key counts only for roles declared PostgREST-only
 * (request.headers is trustworthy only for them); pay_use_api_key() takes
 * one from any role granted the API, the key itself being the credential.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "api_keys.h"
#include "errcodes.h"
#include "rate_limit.h"
#include "tenancy.h"
#include "too_many_requests.h"

PG_FUNCTION_INFO_V1(pay_api_key_secret);
PG_FUNCTION_INFO_V1(pay_api_key_id);
PG_FUNCTION_INFO_V1(pay_api_key_accept);
PG_FUNCTION_INFO_V1(pay_merchant_rate_limit);
PG_FUNCTION_INFO_V1(pay_api_key_admin);
PG_FUNCTION_INFO_V1(pay_api_key_last_used);

#define API_KEY_PREFIX		"pk_"
#define API_KEY_SECRET_LEN	32		/* random bytes */
#define API_KEY_HASH_LEN	32		/* SHA-256 */

/* settings (README "Configuration") */
static char *api_scope = NULL;
static int	api_key_rate_limit = 100;
static int	api_key_burst = 200;
static int	merchant_rate_limit = 0;
static int	merchant_burst = 1000;

static bool
check_api_scope(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	if (*newval == NULL || (*newval)[0] == '\0' || payments_scope_bit(*newval) != 0)
		return true;
	GUC_check_errdetail("The scopes are read, payments, refunds, customers and admin.");
	return false;
}

/* Called from _PG_init, preloaded or not. */
void
payments_api_keys_define_settings(void)
{
	DefineCustomStringVariable("payments.api_scope",
							   "The API key scope the running API function needs.",
							   "Set on the API functions (ALTER FUNCTION ... SET); a request acting with an API key without it is refused.",
							   &api_scope,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_api_scope, NULL, NULL);
	DefineCustomIntVariable("payments.api_key_rate_limit",
							"Requests per second an API key may make (0: no limit), unless the key sets its own.",
							NULL,
							&api_key_rate_limit,
							100, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("payments.api_key_burst",
							"Requests an API key may make at once before its rate applies, unless the key sets its own.",
							NULL,
							&api_key_burst,
							200, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("payments.merchant_rate_limit",
							"Requests per second through PostgREST or with API keys a merchant may make in all (0: no limit).",
							NULL,
							&merchant_rate_limit,
							0, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("payments.merchant_burst",
							"Requests a merchant may make at once before its rate applies.",
							NULL,
							&merchant_burst,
							1000, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

static void
sha256_digest(const char *data, size_t len, uint8 *out)
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != API_KEY_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 digest")));
}

static bytea *
key_hash(const char *key)
{
	bytea	   *h = palloc(VARHDRSZ + API_KEY_HASH_LEN);

	SET_VARSIZE(h, VARHDRSZ + API_KEY_HASH_LEN);
	sha256_digest(key, strlen(key), (uint8 *) VARDATA(h));
	return h;
}

/* The key id of "pk_<id>_<secret>", or 0 when it is not of that form. */
static int64
parse_key_id(const char *key)
{
	const char *p;
	int64		id = 0;
	int			digits = 0;
	size_t		secret_len;

	if (strncmp(key, API_KEY_PREFIX, strlen(API_KEY_PREFIX)) != 0)
		return 0;
	for (p = key + strlen(API_KEY_PREFIX); *p >= '0' && *p <= '9'; p++)
	{
		if (++digits > 18)
			return 0;
		id = id * 10 + (*p - '0');
	}
	if (digits == 0 || *p != '_')
		return 0;
	secret_len = strlen(p + 1);
	if (secret_len < 16 || secret_len > 64)
		return 0;
	return id;
}

/*
 * payments._api_key_secret(key_id): a new key for that id, and the hash to
 * keep.  The key is returned once, to the caller of pay_create_api_key or
 * pay_rotate_api_key, and kept nowhere.
 */
Datum
pay_api_key_secret(PG_FUNCTION_ARGS)
{
	int64		key_id = PG_GETARG_INT64(0);
	uint8		secret[API_KEY_SECRET_LEN];
	char		b64[64];
	int			n;
	int			i;
	int			j;
	char	   *key;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!pg_strong_random(secret, sizeof(secret)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random API key secret")));
	n = pg_b64_encode((const char *) secret, sizeof(secret), b64, sizeof(b64));
	explicit_bzero(secret, sizeof(secret));
	if (n < 0)
		elog(ERROR, "could not encode an API key secret");
	/* base64url without padding */
	for (i = 0, j = 0; i < n; i++)
	{
		if (b64[i] == '=')
			continue;
		b64[j++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	}
	b64[j] = '\0';
	key = psprintf(API_KEY_PREFIX INT64_FORMAT "_%s", key_id, b64);
	explicit_bzero(b64, sizeof(b64));
	values[0] = CStringGetTextDatum(key);
	values[1] = PointerGetDatum(key_hash(key));
	explicit_bzero(key, strlen(key));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* payments._api_key_id(api_key): the key id it names, or NULL. */
Datum
pay_api_key_id(PG_FUNCTION_ARGS)
{
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		id = parse_key_id(key);

	explicit_bzero(key, strlen(key));
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/* PT401: no such key or a wrong secret (key_id 0), or the key's state */
static void
refuse_key(int64 key_id, const char *state)
{
	if (key_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_INVALID_API_KEY),
				 errmsg("invalid API key"),
				 errhint("An API key looks like pk_<key id>_<secret>, as payments.pay_create_api_key() returned it.")));
	ereport(ERROR,
			(errcode(ERRCODE_PAY_INVALID_API_KEY),
			 errmsg("API key " INT64_FORMAT " %s", key_id, state),
			 errhint("Ask the merchant's administrator for a valid key.")));
}

static void
take_or_refuse(char kind, int64 id, int rate, int burst, bool touch, bool *flush)
{
	int64		retry_ms;

	if (!rate_limit_take(kind, id, rate, burst, GetCurrentTimestamp(), &retry_ms, touch, flush))
		payments_refuse_too_many(psprintf("too many requests for %s " INT64_FORMAT,
										  kind == RATE_BUCKET_KEY ? "API key" : "merchant", id),
								 psprintf("The limit is %d requests per second, at most %d at once.",
										  rate, burst),
								 psprintf("Retry after " INT64_FORMAT " ms.", retry_ms),
								 retry_ms);
}

static Datum
row_field(HeapTupleHeader row, const char *name, bool *isnull)
{
	return GetAttributeByName(row, name, isnull);
}

/* Whether the hash in the row's column is h (constant time). */
static bool
hash_matches(HeapTupleHeader row, const char *column, const bytea *h)
{
	bool		isnull;
	Datum		d = row_field(row, column, &isnull);
	bytea	   *stored;

	if (isnull)
		return false;
	stored = DatumGetByteaPP(d);
	return VARSIZE_ANY_EXHDR(stored) == API_KEY_HASH_LEN &&
		CRYPTO_memcmp(VARDATA_ANY(stored), VARDATA(h), API_KEY_HASH_LEN) == 0;
}

/*
 * payments._api_key_accept(api_key, k payments.api_keys, revoked_at,
 * via_postgrest): check the key against its row (NULL: no such key) and
 * its revocation as it counts (payments._api_key_state, NULL: not
 * revoked; it is not in the row, api_key_revocations), and, if it is good and
 * within its limits, let it act for the transaction.  Returns whether the
 * caller should write the key's last use to its row now (at most once a
 * minute per key, and only in a transaction that may write).
 */
Datum
pay_api_key_accept(PG_FUNCTION_ARGS)
{
	char	   *key;
	bool		via_postgrest = PG_GETARG_BOOL(3);
	HeapTupleHeader row;
	bool		isnull;
	bytea	   *h;
	bool		match;
	int64		key_id;
	int64		merchant_id;
	uint32		scopes = 0;
	int			rate;
	int			burst;
	bool		flush = false;
	bool		writable = !XactReadOnly && !RecoveryInProgress();
	Datum		d;

	/* a NULL key (pay_use_api_key(NULL)) is no key */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(3))
		refuse_key(0, NULL);
	key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	h = key_hash(key);
	explicit_bzero(key, strlen(key));
	if (PG_ARGISNULL(1))
		refuse_key(0, NULL);
	row = PG_GETARG_HEAPTUPLEHEADER(1);
	key_id = DatumGetInt64(row_field(row, "key_id", &isnull));
	if (isnull)
		refuse_key(0, NULL);

	match = hash_matches(row, "secret_hash", h);
	if (!match)
	{
		d = row_field(row, "previous_valid_until", &isnull);
		if (!isnull && DatumGetTimestampTz(d) > GetCurrentTransactionStartTimestamp())
			match = hash_matches(row, "previous_hash", h);
	}
	if (!match)
		refuse_key(0, NULL);

	/* the secret is right: now the key's state may be told */
	if (!PG_ARGISNULL(2))
		refuse_key(key_id, "is revoked");
	d = row_field(row, "expires_at", &isnull);
	if (!isnull && DatumGetTimestampTz(d) <= GetCurrentTransactionStartTimestamp())
		refuse_key(key_id, "has expired");

	if (via_postgrest && !payments_role_is_postgrest(GetOuterUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_PAY_SCOPE_MISSING),
				 errmsg("an X-Api-Key header is not honoured for role \"%s\"",
						GetUserNameFromId(GetOuterUserId(), false)),
				 errdetail("API keys in request headers count only for the roles declared with payments.pay_declare_postgrest_role()."),
				 errhint("Call payments.pay_use_api_key() instead, or make the request as a declared role.")));

	merchant_id = DatumGetInt64(row_field(row, "merchant_id", &isnull));
	{
		ArrayType  *arr = DatumGetArrayTypeP(row_field(row, "scopes", &isnull));
		Datum	   *elems;
		bool	   *enulls;
		int			n;
		int			i;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
		for (i = 0; i < n; i++)
			if (!enulls[i])
				scopes |= payments_scope_bit(TextDatumGetCString(elems[i]));
	}
	d = row_field(row, "rate_limit", &isnull);
	rate = isnull ? api_key_rate_limit : DatumGetInt32(d);
	d = row_field(row, "burst", &isnull);
	burst = isnull ? api_key_burst : DatumGetInt32(d);

	/* a JWT of another merchant's user does not ride along (tenancy.c) */
	payments_check_key_claims(key_id, merchant_id);

	take_or_refuse(RATE_BUCKET_KEY, key_id, rate, burst, true, writable ? &flush : NULL);
	take_or_refuse(RATE_BUCKET_MERCHANT, merchant_id, merchant_rate_limit, merchant_burst, false, NULL);

	payments_identity_use_key(merchant_id, key_id, scopes);
	PG_RETURN_BOOL(flush);
}

/*
 * payments._merchant_rate_limit(): a PostgREST request without a key (a
 * JWT) counts against its merchant's limit, when there is one.
 */
Datum
pay_merchant_rate_limit(PG_FUNCTION_ARGS)
{
	PaymentsIdentity id;

	if (merchant_rate_limit > 0 && payments_identity(&id, true))
		take_or_refuse(RATE_BUCKET_MERCHANT, id.merchant_id, merchant_rate_limit, merchant_burst, false, NULL);
	PG_RETURN_VOID();
}

/*
 * payments._api_key_admin(merchant_id): the merchant whose keys the caller
 * may manage, or NULL for every merchant (merchant_id NULL: the caller's
 * own).  The extension owner, superusers and roles acting for every
 * merchant manage every merchant's keys; a request with an API key of
 * scope admin, its own merchant's.  A caller with no merchant identity:
 * 42501, as every API function answers it; anyone else: PT403.
 */
Datum
pay_api_key_admin(PG_FUNCTION_ARGS)
{
	PaymentsIdentity id;
	bool		found = payments_identity(&id, true);

	if (id.key_id == 0 && id.all_merchants)
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_INT64(PG_GETARG_INT64(0));
	}
	if (found && id.key_id != 0 && (id.scopes & PAYMENTS_SCOPE_ADMIN) != 0)
	{
		if (!PG_ARGISNULL(0) && PG_GETARG_INT64(0) != id.merchant_id)
			ereport(ERROR,
					(errcode(ERRCODE_PAY_SCOPE_MISSING),
					 errmsg("API key " INT64_FORMAT " may not manage the keys of merchant " INT64_FORMAT,
							id.key_id, PG_GETARG_INT64(0)),
					 errdetail("An admin key manages the keys of its own merchant only.")));
		PG_RETURN_INT64(id.merchant_id);
	}
	/* no identity at all (PostgREST's anon): not authenticated, as elsewhere */
	if (!found)
		(void) payments_identity(&id, false);
	ereport(ERROR,
			(errcode(ERRCODE_PAY_SCOPE_MISSING),
			 errmsg("only an API key with the scope \"admin\" or the extension owner manages API keys"),
			 errdetail("The request acts %s.",
					   id.key_id != 0 ? "with an API key without the scope \"admin\"" :
					   "without an API key"),
			 errhint("The extension owner, or a role named with payments.pay_grant_all_merchants(), creates a merchant's first admin key.")));
	PG_RETURN_NULL();
}

/* payments._api_key_last_used(key_id): its last use since server start, or NULL. */
Datum
pay_api_key_last_used(PG_FUNCTION_ARGS)
{
	TimestampTz t = rate_limit_last_used(PG_GETARG_INT64(0));

	if (t == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(t);
}
