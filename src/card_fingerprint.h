/*-------------------------------------------------------------------------
 *
 * card_fingerprint.h
 *	  Keyed card fingerprints: HMAC-SHA256 under a key kept outside the
 *	  database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_FINGERPRINT_H
#define PAYMENTS_CARD_FINGERPRINT_H

#define CARD_FINGERPRINT_LEN	32	/* SHA-256 */
#define CARD_FINGERPRINT_HEX_LEN	(CARD_FINGERPRINT_LEN * 2)

extern char *payments_fingerprint_key_directory;

extern void card_fingerprint_init(void);
extern void card_fingerprint_compute(const char *digits, int ndigits,
									 uint8 *out);
extern bool card_fingerprint_key_ready(void);

#endif
