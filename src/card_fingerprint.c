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
 * The key does not travel with the fingerprints: a dump that holds
 * fingerprints, brands and last fours, plus the key, gives back every card
 * number in seconds.  So, like ssl_passphrase_command keeps TLS keys out
 * of the data, the key is a file outside the database, in the directory
 * payments.fingerprint_key_directory (default: next to the data directory,
 * "<data directory>.payments_keys").  Each installation (CREATE EXTENSION)
 * has its own key file, named after the installation's key id, which is
 * not secret and is kept in payments.installation_secrets (purpose
 * fingerprint_key_id) so that pg_dump carries it: a restore next to the
 * same key directory, or on a server where the owner restored the key
 * file, computes the same fingerprints.  The active key id is the
 * earliest one created, so after a restore the restored id wins over the
 * one the fresh CREATE EXTENSION made.
 *
 * The table is read with a direct heap scan, which checks no privileges,
 * so card functions work for every role.  Each backend caches the key; a
 * statement trigger on the table sends a relcache invalidation that drops
 * every cache.  A 0.1.0 schema not yet updated keeps its key in the table
 * (purpose card_fingerprint): it is used until ALTER EXTENSION ... UPDATE
 * moves it to a key file (payments._fingerprint_key_create) and deletes
 * it from the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cached_table.h"
#include "card_fingerprint.h"
#include "payments.h"

PG_FUNCTION_INFO_V1(pay_random_bytes);
PG_FUNCTION_INFO_V1(pay_fingerprint_key_create);

#define KEY_ID_PURPOSE		"fingerprint_key_id"
#define KEY_ID_LEN			16
#define LEGACY_PURPOSE		"card_fingerprint"	/* 0.1.0: the key itself */
#define SECRET_MIN_LEN		16
#define SECRET_MAX_LEN		64
#define NEW_KEY_LEN			32

char	   *payments_fingerprint_key_directory = NULL;

/* the directory actually used, resolved at preload time */
static char key_directory[MAXPGPATH];

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
			 errhint("Recreate the extension, or restore payments.installation_secrets and the key directory (payments.fingerprint_key_directory) from a backup.")));
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

/* Path of the key file of a key id. */
static void
key_file_path(const uint8 *id, char *path)
{
	char		hex[KEY_ID_LEN * 2 + 1];

	hex[hex_encode((const char *) id, KEY_ID_LEN, hex)] = '\0';
	snprintf(path, MAXPGPATH, "%s/%s.key", key_directory, hex);
}

/* Read a key file into secret[]; errors say which file and what to do. */
static void
read_key_file(const uint8 *id)
{
	char		path[MAXPGPATH];
	struct stat st;
	int			fd;
	ssize_t		n;

	if (key_directory[0] == '\0')
		secret_missing("payments.fingerprint_key_directory is not set up; the library must be preloaded.");
	key_file_path(id, path);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments card fingerprint key file \"%s\" cannot be read: %m", path),
				 errdetail("The fingerprint key of this installation is kept outside the database, in payments.fingerprint_key_directory, so that dumps do not carry it."),
				 errhint("Restore the file from the backup of the key directory (the same file gives the same fingerprints).")));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		st.st_size < SECRET_MIN_LEN || st.st_size > SECRET_MAX_LEN)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments card fingerprint key file \"%s\" is not a key", path),
				 errdetail("A key file holds 16 to 64 bytes."),
				 errhint("Restore the file from the backup of the key directory.")));
	}
	n = read(fd, secret, st.st_size);
	CloseTransientFile(fd);
	if (n != st.st_size)
	{
		explicit_bzero(secret, sizeof(secret));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read payments card fingerprint key file \"%s\": %m", path)));
	}
	secret_len = (int) n;
}

/*
 * Load the active key into the cache: the file of the earliest created
 * fingerprint_key_id; failing that (a 0.1.0 schema not yet updated), the
 * earliest card_fingerprint secret in the table.  A direct scan, so the
 * caller needs no privilege on the table.
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
	bool		found_id = false,
				found_legacy = false;
	TimestampTz id_created = 0,
				legacy_created = 0;
	uint8		key_id[KEY_ID_LEN];

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
		bool		is_id;

		d = heap_getattr(tuple, att_purpose, desc, &isnull);
		if (isnull)
			continue;
		purpose = DatumGetTextPP(d);
		len = VARSIZE_ANY_EXHDR(purpose);
		if (len == strlen(KEY_ID_PURPOSE) && memcmp(VARDATA_ANY(purpose), KEY_ID_PURPOSE, len) == 0)
			is_id = true;
		else if (len == strlen(LEGACY_PURPOSE) && memcmp(VARDATA_ANY(purpose), LEGACY_PURPOSE, len) == 0)
			is_id = false;
		else
			continue;
		d = heap_getattr(tuple, att_created, desc, &isnull);
		if (isnull)
			continue;
		created = DatumGetTimestampTz(d);
		if (is_id ? (found_id && created >= id_created) : (found_legacy && created >= legacy_created))
			continue;
		d = heap_getattr(tuple, att_secret, desc, &isnull);
		if (isnull)
			continue;
		value = DatumGetByteaPP(d);
		len = VARSIZE_ANY_EXHDR(value);
		if (is_id)
		{
			if (len != KEY_ID_LEN)
				continue;
			memcpy(key_id, VARDATA_ANY(value), KEY_ID_LEN);
			id_created = created;
			found_id = true;
		}
		else
		{
			if (len < SECRET_MIN_LEN || len > SECRET_MAX_LEN || found_id)
				continue;
			memcpy(secret, VARDATA_ANY(value), len);
			secret_len = len;
			legacy_created = created;
			found_legacy = true;
		}
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	if (found_id)
		read_key_file(key_id);
	else if (!found_legacy)
		secret_missing("The table payments.installation_secrets names no fingerprint key (purpose fingerprint_key_id).");
	secret_relid = relid;
	secret_valid = true;
}

/* The secret, loading it if the cache is empty or the table was recreated. */
static void
ensure_secret(void)
{
	Oid			relid = cached_table_watch("installation_secrets", secret_relcache_callback,
										   &callback_registered);

	if (!OidIsValid(relid))
		secret_missing("The table payments.installation_secrets does not exist.");
	if (!secret_valid || relid != secret_relid)
		load_secret(relid);
}

/*
 * Whether the key is loaded, loading it if need be, without raising: for
 * the worker, which records a fingerprint with the gateway's answer and
 * must not stop sending because the key file is missing or unreadable (the
 * payments then go without fingerprints, and a WARNING says why, once until
 * the key loads).  Loaded in a subtransaction, so that a failure leaves the
 * worker's transaction as it was.
 */
bool
card_fingerprint_key_ready(void)
{
	static bool warned = false;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = false;

	if (secret_valid &&
		cached_table_watch("installation_secrets", secret_relcache_callback,
						   &callback_registered) == secret_relid)
		return true;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ensure_secret();
		ReleaseCurrentSubTransaction();
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (!warned)
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("payments worker: card fingerprints cannot be recorded: %s", edata->message),
					 edata->hint ? errhint("%s", edata->hint) : 0));
		warned = true;
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (ok)
		warned = false;
	return ok;
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
 * Called once from _PG_init in the postmaster: resolve the key directory
 * and make it (mode 0700) if it does not exist.  A directory inside the
 * data directory works, but pg_basebackup then copies the key next to the
 * fingerprints: warn.
 */
void
card_fingerprint_init(void)
{
	const char *dir = payments_fingerprint_key_directory;
	char		datadir[MAXPGPATH];
	size_t		dlen;

	strlcpy(datadir, DataDir, sizeof(datadir));
	canonicalize_path(datadir);
	if (dir == NULL || dir[0] == '\0')
		snprintf(key_directory, sizeof(key_directory), "%s.payments_keys", datadir);
	else if (!is_absolute_path(dir))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payments.fingerprint_key_directory must be an absolute path"),
				 errdetail("Card fingerprints cannot be computed until it is.")));
		key_directory[0] = '\0';
		return;
	}
	else
		strlcpy(key_directory, dir, sizeof(key_directory));
	canonicalize_path(key_directory);

	dlen = strlen(datadir);
	if (strncmp(key_directory, datadir, dlen) == 0 &&
		(key_directory[dlen] == '/' || key_directory[dlen] == '\0'))
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payments.fingerprint_key_directory \"%s\" is inside the data directory", key_directory),
				 errdetail("Base backups then carry the fingerprint key next to the fingerprints, brands and last four digits, from which card numbers can be recovered."),
				 errhint("Set payments.fingerprint_key_directory to a directory outside the data directory.")));
	if (mkdir(key_directory, S_IRWXU) != 0 && errno != EEXIST)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not create payments card fingerprint key directory \"%s\": %m", key_directory),
				 errdetail("Card fingerprints cannot be computed until it exists and the server can write to it.")));
}

/* Write all of buf to fd; false with errno set on failure. */
static bool
write_all(int fd, const uint8 *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		r = write(fd, buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
		{
			if (r == 0)
				errno = ENOSPC;
			return false;
		}
		done += r;
	}
	return true;
}

/*
 * payments._fingerprint_key_create(key_id, key): make the key file of a
 * key id (16 bytes), holding key (16 to 64 bytes; NULL: 32 fresh random
 * bytes).  The file is written under a temporary name, fsynced and
 * link()ed into place, which never replaces a file: an existing file is
 * kept when it holds the same key, or when no key was given; a different
 * key is an error (fingerprints made with the file would change).  Called
 * by the install script (fresh key) and the upgrade from 0.1.0 (the key
 * that was in the table).
 */
Datum
pay_fingerprint_key_create(PG_FUNCTION_ARGS)
{
	bytea	   *id;
	uint8		key[SECRET_MAX_LEN];
	int			keylen = NEW_KEY_LEN;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	int			fd;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key id must not be null")));
	id = PG_GETARG_BYTEA_PP(0);
	if (VARSIZE_ANY_EXHDR(id) != KEY_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a fingerprint key id has %d bytes", KEY_ID_LEN)));
	if (key_directory[0] == '\0')
		payments_require_preload();
	if (key_directory[0] == '\0')
		secret_missing("payments.fingerprint_key_directory is not usable (see the server log).");
	if (!PG_ARGISNULL(1))
	{
		bytea	   *k = PG_GETARG_BYTEA_PP(1);

		keylen = VARSIZE_ANY_EXHDR(k);
		if (keylen < SECRET_MIN_LEN || keylen > SECRET_MAX_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a fingerprint key has %d to %d bytes", SECRET_MIN_LEN, SECRET_MAX_LEN)));
		memcpy(key, VARDATA_ANY(k), keylen);
	}
	else if (!pg_strong_random(key, keylen))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a card fingerprint key")));

	key_file_path((const uint8 *) VARDATA_ANY(id), path);
	snprintf(tmppath, sizeof(tmppath), "%s.%d.tmp", path, MyProcPid);
	fd = OpenTransientFilePerm(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath),
				 errhint("The server must be able to write to payments.fingerprint_key_directory.")));
	if (!write_all(fd, key, keylen) || pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		(void) unlink(tmppath);
		explicit_bzero(key, sizeof(key));
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	}
	CloseTransientFile(fd);
	if (link(tmppath, path) != 0)
	{
		int			save_errno = errno;

		(void) unlink(tmppath);
		if (save_errno != EEXIST)
		{
			explicit_bzero(key, sizeof(key));
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not link file \"%s\" to \"%s\": %m", tmppath, path)));
		}
		if (!PG_ARGISNULL(1))
		{
			/* the file exists: it must hold this very key */
			uint8		have[SECRET_MAX_LEN + 1];
			ssize_t		n = -1;

			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
			if (fd >= 0)
			{
				n = read(fd, have, sizeof(have));
				CloseTransientFile(fd);
			}
			if (n != keylen || memcmp(have, key, keylen) != 0)
			{
				explicit_bzero(have, sizeof(have));
				explicit_bzero(key, sizeof(key));
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("payments card fingerprint key file \"%s\" exists with another key", path)));
			}
			explicit_bzero(have, sizeof(have));
		}
	}
	else
	{
		(void) unlink(tmppath);
		fsync_fname(key_directory, true);
	}
	explicit_bzero(key, sizeof(key));
	PG_RETURN_VOID();
}
