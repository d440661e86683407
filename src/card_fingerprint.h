/*-------------------------------------------------------------------------
 *
 * card_fingerprint.h
 *	  Keyed card fingerprints: HMAC-SHA256 under the installation secret.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_FINGERPRINT_H
#define PAYMENTS_CARD_FINGERPRINT_H

#define CARD_FINGERPRINT_LEN	32	/* SHA-256 */

extern void card_fingerprint_compute(const char *digits, int ndigits,
									 uint8 *out);

#endif
