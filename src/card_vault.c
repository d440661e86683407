/*-------------------------------------------------------------------------
 *
 * card_vault.c
 *	  The card vault key file and AES-256-GCM sealing of card payloads.
 *
 * The key is 32 random bytes in $PGDATA/payments_vault.key (mode 0600).
 * The postmaster creates it on first start and loads it while processing
 * shared_preload_libraries; every backend and the background worker
 * inherit it through fork().  It is never in a table, a setting or the
 * WAL, so neither pg_dump output nor a role with table access can reveal
 * it.  pg_basebackup copies it with the data directory, so a standby can
 * open what its primary sealed.
 *
 * The key file is created atomically: written to a temporary name, fsynced,
 * then link()ed into place (which refuses to replace an existing file) and
 * the directory fsynced, so a crash leaves either no key or a whole one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"

#include "card_vault.h"
#include "payments.h"

static uint8 vault_key[CARD_VAULT_KEY_LEN];
static bool vault_key_loaded = false;

/* Read exactly len bytes or fail. */
static bool
read_all(int fd, uint8 *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		r = read(fd, buf + done, len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		done += r;
	}
	return true;
}

/* Write exactly len bytes or fail. */
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
 * Load the existing key file into vault_key.  A file of the wrong size or
 * one that other users can read is refused: starting with a different key
 * would make every sealed card unreadable, and silently so.
 */
static void
load_key_file(const char *path)
{
	struct stat st;
	int			fd;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not open payments card vault key file \"%s\": %m", path)));
	if (fstat(fd, &st) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not stat payments card vault key file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode) || st.st_size != CARD_VAULT_KEY_LEN)
		ereport(FATAL,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("payments card vault key file \"%s\" is not a %d-byte file", path, CARD_VAULT_KEY_LEN),
				 errdetail("The file is %lld bytes long.", (long long) st.st_size),
				 errhint("Restore the key file from a backup of this data directory. Delete it only if no card data sealed with it must be read again; a new key is then created at the next start.")));
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(FATAL,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("payments card vault key file \"%s\" has group or world access", path),
				 errdetail("File permissions should be u=rw (0600)."),
				 errhint("Run chmod 0600 on the file.")));
	if (!read_all(fd, vault_key, CARD_VAULT_KEY_LEN))
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not read payments card vault key file \"%s\": %m", path)));
	close(fd);
}

/*
 * Create a new key file holding fresh random bytes.  Returns false when
 * another process created the file first, in which case the caller reads
 * that one.
 */
static bool
create_key_file(const char *path)
{
	char		tmppath[MAXPGPATH];
	uint8		key[CARD_VAULT_KEY_LEN];
	int			fd;
	bool		created;

	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);
	(void) unlink(tmppath);		/* a leftover from a crash during creation */

	if (!pg_strong_random(key, sizeof(key)))
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a payments card vault key")));

	fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	if (!write_all(fd, key, sizeof(key)))
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	explicit_bzero(key, sizeof(key));
	if (pg_fsync(fd) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmppath)));
	if (close(fd) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));

	/* link() never replaces: if the key appeared meanwhile, keep that one */
	created = true;
	if (link(tmppath, path) != 0)
	{
		if (errno != EEXIST)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("could not link file \"%s\" to \"%s\": %m", tmppath, path)));
		created = false;
	}
	if (unlink(tmppath) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", tmppath)));
	fsync_fname(DataDir, true);
	return created;
}

/*
 * Called once from _PG_init in the postmaster: make sure the key file
 * exists and load it.  Runs before any backend exists, so no locking.
 */
void
card_vault_init(void)
{
	char		path[MAXPGPATH];
	struct stat st;
	bool		created = false;

	snprintf(path, sizeof(path), "%s/%s", DataDir, CARD_VAULT_KEY_FILE);
	if (stat(path, &st) != 0)
	{
		if (errno != ENOENT)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("could not stat payments card vault key file \"%s\": %m", path)));
		created = create_key_file(path);
	}
	load_key_file(path);
	vault_key_loaded = true;
	if (created)
		ereport(LOG,
				(errmsg("payments created a new card vault key in \"%s\"", path)));
}

/*
 * Error out unless the key is loaded, which only happens when the library
 * is preloaded.
 */
void
card_vault_require(void)
{
	if (!vault_key_loaded)
		payments_require_preload();
	/* preloaded but no key cannot happen: card_vault_init is FATAL on failure */
	if (!vault_key_loaded)
		elog(ERROR, "payments card vault key is not loaded");
}

/* The one error for any OpenSSL failure while sealing. */
static void
seal_failed(EVP_CIPHER_CTX *ctx)
{
	EVP_CIPHER_CTX_free(ctx);
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not encrypt card data")));
}

/*
 * Encrypt plain[] with AES-256-GCM under the vault key and a fresh random
 * nonce, authenticating aad[] (the card's clear header) as well.  cipher[]
 * receives plainlen bytes; nonce[] and tag[] their fixed sizes.
 */
void
card_vault_seal(const uint8 *aad, int aadlen,
				const uint8 *plain, int plainlen,
				uint8 *nonce, uint8 *tag, uint8 *cipher)
{
	EVP_CIPHER_CTX *ctx;
	int			len;
	int			total;

	card_vault_require();
	if (!pg_strong_random(nonce, CARD_VAULT_NONCE_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random nonce")));

	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CARD_VAULT_NONCE_LEN, NULL) != 1 ||
		EVP_EncryptInit_ex(ctx, NULL, NULL, vault_key, nonce) != 1 ||
		EVP_EncryptUpdate(ctx, NULL, &len, aad, aadlen) != 1 ||
		EVP_EncryptUpdate(ctx, cipher, &len, plain, plainlen) != 1)
		seal_failed(ctx);
	total = len;
	if (EVP_EncryptFinal_ex(ctx, cipher + total, &len) != 1)
		seal_failed(ctx);
	total += len;
	if (total != plainlen ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CARD_VAULT_TAG_LEN, tag) != 1)
		seal_failed(ctx);
	EVP_CIPHER_CTX_free(ctx);
}

/*
 * Decrypt and authenticate a payload sealed by card_vault_seal.  Returns
 * false (with plain[] wiped) when the tag does not match: the data was
 * altered, or sealed under another key.
 */
bool
card_vault_open(const uint8 *aad, int aadlen,
				const uint8 *nonce, const uint8 *tag,
				const uint8 *cipher, int cipherlen,
				uint8 *plain)
{
	EVP_CIPHER_CTX *ctx;
	int			len;
	int			total;
	bool		ok;

	card_vault_require();
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CARD_VAULT_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, vault_key, nonce) == 1 &&
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
	if (!ok || total != cipherlen)
	{
		explicit_bzero(plain, cipherlen);
		return false;
	}
	return true;
}
