/*-------------------------------------------------------------------------
 *
 * card_vault.h
 *	  The card vault's sealing keys (shared memory only) and authenticated
 *	  encryption of card payloads.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_VAULT_H
#define PAYMENTS_CARD_VAULT_H

#include "datatype/timestamp.h"
#include "storage/s_lock.h"

#define CARD_VAULT_KEY_LEN		32	/* AES-256 */
#define CARD_VAULT_NONCE_LEN	12	/* GCM standard nonce */
#define CARD_VAULT_TAG_LEN		16	/* full GCM tag */
#define CARD_VAULT_KEY_SLOTS	2	/* the current key and the previous one */

/* the key file of 0.1.0 in the data directory: deleted at start */
#define CARD_VAULT_LEGACY_KEY_FILE	"payments_vault.key"

/* What opening a sealed payload gave. */
typedef enum CardVaultStatus
{
	CARD_VAULT_OPENED,			/* authentic, decrypted */
	CARD_VAULT_KEY_GONE,		/* its key no longer exists (restart, rotation) */
	CARD_VAULT_CORRUPT			/* the key exists but the bytes do not authenticate */
} CardVaultStatus;

typedef struct CardVaultKeySlot
{
	uint32		key_id;			/* 0 = empty slot */
	uint32		generation;		/* 1 for the first key, +1 per rotation */
	TimestampTz created;
	uint8		key[CARD_VAULT_KEY_LEN];
} CardVaultKeySlot;

/* In PaymentsShared (shmem.h). */
typedef struct CardVaultKeys
{
	slock_t		mutex;
	int			current;		/* index of the key that seals */
	CardVaultKeySlot slots[CARD_VAULT_KEY_SLOTS];
} CardVaultKeys;

extern int	payments_vault_key_rotation_s;
extern int	payments_vault_key_rotation_max_wait_s;

extern void card_vault_keys_init(CardVaultKeys *keys);
extern void card_vault_forget_legacy_key(void);
extern void card_vault_require(void);
extern uint32 card_vault_current_key_id(uint32 *generation);
extern void card_vault_seal(uint32 key_id, const uint8 *aad, int aadlen,
							const uint8 *plain, int plainlen,
							uint8 *nonce, uint8 *tag, uint8 *cipher);
extern CardVaultStatus card_vault_open(uint32 key_id, const uint8 *aad, int aadlen,
									   const uint8 *nonce, const uint8 *tag,
									   const uint8 *cipher, int cipherlen,
									   uint8 *plain);
extern void card_vault_key_state(uint32 *current_id, uint32 *previous_id,
								 TimestampTz *current_created);
extern CardVaultStatus card_vault_reseal(const uint8 *payload, int len, int aadlen,
										 int key_id_offset, uint32 new_key_id,
										 uint8 **out);
extern bool card_vault_rotate_at_commit(void);

#endif
