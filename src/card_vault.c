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
 * every payments.vault_key_rotation; vault_rotation.c re-seals the waiting
 * cards first): at the commit of the rotating transaction a new key
 * becomes the current one, the current key the previous one, and the key
 * before it is forgotten.  Once a key is gone, nothing anywhere can open
 * what it sealed: not the vault's data files, not a pay_card value that
 * reached a log or a core file.
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

#include "access/xact.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "card_vault.h"
#include "payments.h"
#include "shmem.h"

int			payments_vault_key_rotation_s = 3600;
/* payments.vault_key_rotation_max_wait: how long a due rotation waits for holders */
int			payments_vault_key_rotation_max_wait_s = 600;

/*
 * The key a rotation in this backend's transaction makes current when
 * the transaction commits (card_vault_rotate_at_commit).
 */
static CardVaultKeySlot pending_key;
static bool rotation_pending = false;
static SubTransactionId pending_subid = InvalidSubTransactionId;
static bool callbacks_registered = false;

/* Fill *s with a fresh key whose id is neither 0 nor avoid1 nor avoid2. */
static void
make_key(CardVaultKeySlot *s, uint32 avoid1, uint32 avoid2, TimestampTz now)
{
	uint32		id = 0;

	if (!pg_strong_random(s->key, CARD_VAULT_KEY_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a payments card vault key")));
	while (id == 0 || id == avoid1 || id == avoid2)
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
	make_key(&keys->slots[0], 0, 0, GetCurrentTimestamp());
	keys->slots[0].generation = 1;
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

/*
 * The id of the key that seals now, and its generation.  Sealing takes it
 * through vault_hold_sealing_key (vault_holds.c), which tells a rotation.
 */
uint32
card_vault_current_key_id(uint32 *generation)
{
	CardVaultKeys *keys;
	uint32		id;

	card_vault_require();
	keys = &payments_shared->vault_keys;
	SpinLockAcquire(&keys->mutex);
	id = keys->slots[keys->current].key_id;
	*generation = keys->slots[keys->current].generation;
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
 * vault_hold_sealing_key, and part of aad[] so that it is
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
 * The ids of the current and the previous key (0: none yet) and when the
 * current one was made.
 */
void
card_vault_key_state(uint32 *current_id, uint32 *previous_id, TimestampTz *current_created)
{
	CardVaultKeys *keys;

	card_vault_require();
	keys = &payments_shared->vault_keys;
	SpinLockAcquire(&keys->mutex);
	*current_id = keys->slots[keys->current].key_id;
	*previous_id = keys->slots[1 - keys->current].key_id;
	*current_created = keys->slots[keys->current].created;
	SpinLockRelease(&keys->mutex);
}

/*
 * Re-seal a payload laid out as aad | nonce | tag | ciphertext, whose aad
 * names its key at key_id_offset, under the key new_key_id: the clear
 * bytes exist only in a buffer of this function, wiped before it returns
 * or throws.  Returns CARD_VAULT_OPENED with *out (palloc'd, len bytes:
 * the same aad naming the new key, a fresh nonce, tag and ciphertext),
 * else what opening gave (*out untouched).
 */
CardVaultStatus
card_vault_reseal(const uint8 *payload, int len, int aadlen, int key_id_offset,
				  uint32 new_key_id, uint8 **out)
{
	int			cipherlen = len - aadlen - CARD_VAULT_NONCE_LEN - CARD_VAULT_TAG_LEN;
	const uint8 *nonce = payload + aadlen;
	const uint8 *tag = nonce + CARD_VAULT_NONCE_LEN;
	uint32		key_id;
	uint8	   *plain;
	uint8	   *res;
	CardVaultStatus status;

	if (cipherlen < 1 || key_id_offset < 0 || key_id_offset + 4 > aadlen)
		return CARD_VAULT_CORRUPT;
	memcpy(&key_id, payload + key_id_offset, 4);
	plain = palloc(cipherlen);
	status = card_vault_open(key_id, payload, aadlen, nonce, tag,
							 tag + CARD_VAULT_TAG_LEN, cipherlen, plain);
	if (status != CARD_VAULT_OPENED)
	{
		pfree(plain);
		return status;
	}
	res = palloc(len);
	memcpy(res, payload, aadlen);
	memcpy(res + key_id_offset, &new_key_id, 4);
	PG_TRY();
	{
		card_vault_seal(new_key_id, res, aadlen, plain, cipherlen,
						res + aadlen, res + aadlen + CARD_VAULT_NONCE_LEN,
						res + aadlen + CARD_VAULT_NONCE_LEN + CARD_VAULT_TAG_LEN);
	}
	PG_FINALLY();
	{
		explicit_bzero(plain, cipherlen);
	}
	PG_END_TRY();
	pfree(plain);
	*out = res;
	return CARD_VAULT_OPENED;
}

static void
forget_pending_key(void)
{
	explicit_bzero(&pending_key, sizeof(pending_key));
	rotation_pending = false;
	pending_subid = InvalidSubTransactionId;
}

/*
 * At commit, the pending key becomes the current one, the current one the
 * previous one, and the previous one is forgotten; nothing here can fail.
 * Aborted or prepared, the rotation never happens.
 */
static void
rotation_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	CardVaultKeys *keys;
	int			next;

	if (!rotation_pending)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			/* made current now: the next scheduled rotation counts from here */
			pending_key.created = GetCurrentTimestamp();
			keys = &payments_shared->vault_keys;
			SpinLockAcquire(&keys->mutex);
			next = 1 - keys->current;
			pending_key.generation = keys->slots[keys->current].generation + 1;
			keys->slots[next] = pending_key;
			keys->current = next;
			SpinLockRelease(&keys->mutex);
			forget_pending_key();
			ereport(LOG,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("payments rotated the card vault key")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			forget_pending_key();
			break;
		default:
			break;
	}
}

/* A rollback to a savepoint before the rotation undoes it too. */
static void
rotation_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg pg_attribute_unused())
{
	if (!rotation_pending || mySubid != pending_subid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_pending_key();
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		pending_subid = parentSubid;
}

/*
 * Make a new key, to become the current one when this transaction
 * commits (so that the vault rows it re-sealed under the current key are
 * committed before the previous key is forgotten).  Returns false when a
 * rotation is already pending in this transaction.
 */
bool
card_vault_rotate_at_commit(void)
{
	uint32		current_id;
	uint32		previous_id;
	TimestampTz created;

	if (rotation_pending)
		return false;
	card_vault_key_state(&current_id, &previous_id, &created);
	if (!callbacks_registered)
	{
		RegisterXactCallback(rotation_xact_callback, NULL);
		RegisterSubXactCallback(rotation_subxact_callback, NULL);
		callbacks_registered = true;
	}
	make_key(&pending_key, current_id, previous_id, GetCurrentTimestamp());
	pending_subid = GetCurrentSubTransactionId();
	rotation_pending = true;
	return true;
}
