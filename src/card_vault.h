/*-------------------------------------------------------------------------
 *
 * card_vault.h
 *	  The card vault key and authenticated encryption of card payloads.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_VAULT_H
#define PAYMENTS_CARD_VAULT_H

#define CARD_VAULT_KEY_LEN		32	/* AES-256 */
#define CARD_VAULT_NONCE_LEN	12	/* GCM standard nonce */
#define CARD_VAULT_TAG_LEN		16	/* full GCM tag */
#define CARD_VAULT_KEY_FILE		"payments_vault.key"

extern void card_vault_init(void);
extern void card_vault_require(void);
extern void card_vault_seal(const uint8 *aad, int aadlen,
							const uint8 *plain, int plainlen,
							uint8 *nonce, uint8 *tag, uint8 *cipher);
extern bool card_vault_open(const uint8 *aad, int aadlen,
							const uint8 *nonce, const uint8 *tag,
							const uint8 *cipher, int cipherlen,
							uint8 *plain);

#endif
