/*-------------------------------------------------------------------------
 *
 * card_vault.c
 *	  The card vault's sealing keys and AES-256-GCM sealing of card
 *	  payloads (card numbers, security codes, Accept.js opaque data).
 *
 * The keys live in shared memory only: 32 random bytes made when shared
 * memory is set up (server start, and again after a crash restart), never
 * written to a file, a table, a setting or the WAL.  Every sealed payload
 * names the key it was sealed under (a 32-bit key id, authenticated with
 * it).  The key is rotated by the worker (payments._vault_rotate_key,
 * every payments.vault_key_rotation): the current key becomes the previous
 * one, which is kept while cards sealed under it may still wait in the
 * vault, and the key before it is forgotten.  Once a key is gone, nothing
 * anywhere can open what it sealed: not the vault's data files, not a
 * pay_card value that reached a log or a core file.
 *
 * The vault table is UNLOGGED (its rows never reach the WAL, the WAL
 * archive or a base backup, and are truncated by crash recovery), so a
 * card that waits for the worker across a restart is lost with its key:
 * the payment then fails with a clear reason.  That is the price of never
 * keeping cards.
 *
 * 0.1.0 kept the key in $PGDATA/payments_vault.key, where pg_basebackup
 * copied it next to WAL that held the sealed cards.  It is overwritten and
 * deleted at start; cards sealed under it fail as lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "card_vault.h"
#include "payments.h"
#include "schema_version.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(pay_vault_rotate_key);

int			payments_vault_key_rotation_s = 3600;

/* Fill a slot with a fresh key whose id differs from every other slot's. */
static void
make_key(CardVaultKeys *keys, int slot, TimestampTz now)
{
	CardVaultKeySlot *s = &keys->slots[slot];
	uint32		id = 0;

	if (!pg_strong_random(s->key, CARD_VAULT_KEY_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a payments card vault key")));
	while (id == 0 || id == keys->slots[1 - slot].key_id)
	{
		if (!pg_strong_random(&id, sizeof(id)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a payments card vault key")));
	}
	s->key_id = id;
	s->created = now;
}

/*
 * Called when shared memory is set up (shmem.c): the first key.  A crash
 * restart sets shared memory up again, so cards sealed before the crash
 * cannot be opened afterwards (their vault rows are gone anyway).
 */
void
card_vault_keys_init(CardVaultKeys *keys)
{
	memset(keys, 0, sizeof(*keys));
	SpinLockInit(&keys->mutex);
	keys->current = 0;
	make_key(keys, 0, GetCurrentTimestamp());
}

/*
 * 0.1.0's key file in the data directory: overwrite and delete it, so no
 * base backup taken from now on carries it.  Called once from _PG_init in
 * the postmaster.
 */
void
card_vault_forget_legacy_key(void)
{
	char		path[MAXPGPATH];
	uint8		zeros[CARD_VAULT_KEY_LEN] = {0};
	struct stat st;
	int			fd;

	snprintf(path, sizeof(path), "%s/%s", DataDir, CARD_VAULT_LEGACY_KEY_FILE);
	if (stat(path, &st) != 0)
		return;
	fd = open(path, O_WRONLY | PG_BINARY, 0);
	if (fd >= 0)
	{
		if (write(fd, zeros, sizeof(zeros)) != sizeof(zeros) || pg_fsync(fd) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not overwrite file \"%s\": %m", path)));
		close(fd);
	}
	if (unlink(path) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove the old payments card vault key file \"%s\": %m", path),
				 errhint("Delete it by hand: payments no longer keeps a key on disk, and this file opens the cards sealed by version 0.1.0 that remain in WAL archives and base backups.")));
		return;
	}
	fsync_fname(DataDir, true);
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("payments deleted the old card vault key file \"%s\"", path),
			 errdetail("Sealing keys now live in shared memory only. Cards that were waiting for the gateway when the server stopped fail with the reason that their card data was lost."),
			 errhint("WAL archives and base backups taken under version 0.1.0 hold sealed cards and this key: destroy them once they are no longer needed.")));
}

/* Error out unless the keys exist, which only happens when preloaded. */
void
card_vault_require(void)
{
	if (payments_shared == NULL)
		payments_require_preload();
	if (payments_shared == NULL)
		elog(ERROR, "payments shared memory is not attached");
}

/* The id of the key that seals now. */
uint32
card_vault_current_key_id(void)
{
	CardVaultKeys *keys;
	uint32		id;

	card_vault_require();
	keys = &payments_shared->vault_keys;
	SpinLockAcquire(&keys->mutex);
	id = keys->slots[keys->current].key_id;
	SpinLockRelease(&keys->mutex);
	return id;
}

/* Copy the key with this id into key[]; false when it no longer exists. */
static bool
copy_key(uint32 key_id, uint8 *key)
{
	CardVaultKeys *keys = &payments_shared->vault_keys;
	bool		found = false;

	if (key_id == 0)
		return false;
	SpinLockAcquire(&keys->mutex);
	for (int i = 0; i < CARD_VAULT_KEY_SLOTS; i++)
	{
		if (keys->slots[i].key_id == key_id)
		{
			memcpy(key, keys->slots[i].key, CARD_VAULT_KEY_LEN);
			found = true;
			break;
		}
	}
	SpinLockRelease(&keys->mutex);
	return found;
}

/* The one error for any OpenSSL failure while sealing. */
static void
seal_failed(EVP_CIPHER_CTX *ctx, uint8 *key)
{
	explicit_bzero(key, CARD_VAULT_KEY_LEN);
	EVP_CIPHER_CTX_free(ctx);
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not encrypt card data")));
}

/*
 * Encrypt plain[] with AES-256-GCM under the key key_id (from
 * card_vault_current_key_id, and part of aad[] so that it is
 * authenticated) and a fresh random nonce.  cipher[] receives plainlen
 * bytes; nonce[] and tag[] their fixed sizes.
 */
void
card_vault_seal(uint32 key_id, const uint8 *aad, int aadlen,
				const uint8 *plain, int plainlen,
				uint8 *nonce, uint8 *tag, uint8 *cipher)
{
	EVP_CIPHER_CTX *ctx;
	uint8		key[CARD_VAULT_KEY_LEN];
	int			len;
	int			total;

	card_vault_require();
	if (!copy_key(key_id, key))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the card vault key was rotated while a card was being sealed"),
				 errhint("Try again.")));
	if (!pg_strong_random(nonce, CARD_VAULT_NONCE_LEN))
	{
		explicit_bzero(key, sizeof(key));
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random nonce")));
	}

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
	{
		explicit_bzero(key, sizeof(key));
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CARD_VAULT_NONCE_LEN, NULL) != 1 ||
		EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) != 1 ||
		EVP_EncryptUpdate(ctx, NULL, &len, aad, aadlen) != 1 ||
		EVP_EncryptUpdate(ctx, cipher, &len, plain, plainlen) != 1)
		seal_failed(ctx, key);
	total = len;
	if (EVP_EncryptFinal_ex(ctx, cipher + total, &len) != 1)
		seal_failed(ctx, key);
	total += len;
	if (total != plainlen ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CARD_VAULT_TAG_LEN, tag) != 1)
		seal_failed(ctx, key);
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
}

/*
 * Decrypt and authenticate a payload sealed by card_vault_seal.  Never
 * throws for bad input: CARD_VAULT_KEY_GONE when its key no longer exists
 * (a restart or a rotation since), CARD_VAULT_CORRUPT when the bytes do
 * not authenticate; plain[] is wiped in both cases.
 */
CardVaultStatus
card_vault_open(uint32 key_id, const uint8 *aad, int aadlen,
				const uint8 *nonce, const uint8 *tag,
				const uint8 *cipher, int cipherlen,
				uint8 *plain)
{
	EVP_CIPHER_CTX *ctx;
	uint8		key[CARD_VAULT_KEY_LEN];
	int			len;
	int			total;
	bool		ok;

	card_vault_require();
	if (!copy_key(key_id, key))
	{
		explicit_bzero(plain, cipherlen);
		return CARD_VAULT_KEY_GONE;
	}
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
	{
		explicit_bzero(key, sizeof(key));
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CARD_VAULT_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &len, aad, aadlen) == 1 &&
		EVP_DecryptUpdate(ctx, plain, &len, cipher, cipherlen) == 1;
	total = ok ? len : 0;
	/* the tag is an input here; OpenSSL's prototype just lacks const */
	ok = ok &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CARD_VAULT_TAG_LEN, (void *) tag) == 1 &&
		EVP_DecryptFinal_ex(ctx, plain + total, &len) == 1;
	if (ok)
		total += len;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	if (!ok || total != cipherlen)
	{
		explicit_bzero(plain, cipherlen);
		return CARD_VAULT_CORRUPT;
	}
	return CARD_VAULT_OPENED;
}

/*
 * Whether a vault row may still need the previous key: one made before
 * the current key was, of an operation the worker may still send.
 */
static bool
previous_key_needed(TimestampTz current_created)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(current_created),
		TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														-(int64) PAYMENTS_DUPLICATE_WINDOW_S * 1000))};
	bool		isnull;
	bool		needed;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "payments: SPI_connect failed");
	/*
	 * Only cards the worker may still send hold the key back: queued or
	 * sending, or unknown inside the duplicate window (an identical resend
	 * resolves it).  Past the window an unknown operation is only looked
	 * up; a dead letter waits for a person, not for the gateway (retried
	 * after its key went, it is looked up, or fails as lost, like a card
	 * lost in a restart); rows of finished operations are garbage.
	 */
	if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM payments.card_vault v"
							  " JOIN payments.operations o ON o.merchant_id = v.merchant_id AND o.operation_id = v.operation_id"
							  " WHERE v.created_at < $1 AND (o.status IN ('queued', 'sending')"
							  " OR (o.status = 'unknown' AND (o.first_sent_at IS NULL"
							  " OR o.first_sent_at > $2))))",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "payments: could not read the card vault");
	needed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return needed;
}

/*
 * payments._vault_rotate_key(force): make a new sealing key when the
 * current one has sealed for payments.vault_key_rotation, provided no card
 * sealed under the previous key still waits (it would be lost).  The
 * current key becomes the previous one.  With force, rotate now whatever
 * waits: cards sealed under the previous key are then lost (for tests,
 * and for an operator who wants every key in memory replaced).  Returns
 * whether it rotated.  The worker calls it from its housekeeping.  Only in
 * the database the worker serves (payments.database): called in another
 * with the extension, it would lose the served database's waiting cards.
 */
Datum
pay_vault_rotate_key(PG_FUNCTION_ARGS)
{
	bool		force = PG_GETARG_BOOL(0);
	CardVaultKeys *keys;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz created;
	CardVaultKeys fresh;
	int			next;

	payments_require_schema();
	card_vault_require();
	/*
	 * The key is the cluster's, but only the served database's vault says
	 * whether a card still needs the previous one: elsewhere, never.
	 */
	if (!payments_database_served())
		PG_RETURN_BOOL(false);
	keys = &payments_shared->vault_keys;
	SpinLockAcquire(&keys->mutex);
	created = keys->slots[keys->current].created;
	SpinLockRelease(&keys->mutex);

	if (!force)
	{
		if (payments_vault_key_rotation_s <= 0 ||
			!TimestampDifferenceExceeds(created, now, payments_vault_key_rotation_s * 1000))
			PG_RETURN_BOOL(false);
		if (previous_key_needed(created))
			PG_RETURN_BOOL(false);
	}

	/* make the key outside the spinlock (pg_strong_random reads a device) */
	memset(&fresh, 0, sizeof(fresh));
	fresh.slots[0].key_id = card_vault_current_key_id();
	make_key(&fresh, 1, now);
	SpinLockAcquire(&keys->mutex);
	next = 1 - keys->current;
	keys->slots[next] = fresh.slots[1];
	keys->current = next;
	SpinLockRelease(&keys->mutex);
	explicit_bzero(&fresh, sizeof(fresh));
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("payments rotated the card vault key%s", force ? " (forced)" : "")));
	PG_RETURN_BOOL(true);
}
