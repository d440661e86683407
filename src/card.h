/*-------------------------------------------------------------------------
 *
 * card.h
 *	  pay_card: a validated payment card, masked and sealed.
 *
 * The datum holds a clear header (brand, expiry, last four digits) and
 * the card number, security code and holder name sealed with AES-256-GCM
 * under the vault key, the header serving as additional authenticated
 * data.  The keyed fingerprint is not in it: the datum's bytes reach
 * whoever may read the vault, and PUBLIC's record-image operators (*<)
 * compare them, so a fingerprint there ordered cards by it.  It is
 * computed from the number when asked for (card_number_fingerprint_hex).  Nothing SQL-callable ever unseals it;
 * C code that must hand the card to the gateway calls card_decrypt().
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_H
#define PAYMENTS_CARD_H

#include "fmgr.h"

#include "card_brand.h"
#include "card_fingerprint.h"
#include "card_vault.h"

/*
 * 3: no fingerprint in the header.  2: the header named the vault key
 * (shared memory only) that sealed it, and held the fingerprint; its key
 * went with the restart that loaded this library.  Version 1 (0.1.0) was
 * sealed under a key file that no longer exists.
 */
#define PAY_CARD_FORMAT_VERSION		3
#define PAY_CARD_FORMAT_V2			2
#define PAY_CARD_FORMAT_LEGACY		1

#define PAY_CARD_HAS_CVV			0x01
#define PAY_CARD_HAS_HOLDER_NAME	0x02

/* Holder names: at most this many characters (Authorize.Net: 50 + 50) */
#define CARD_HOLDER_MAX_CHARS		100
#define CARD_HOLDER_MAX_BYTES		(CARD_HOLDER_MAX_CHARS * 4)

/* The clear part; also the AAD of the sealed payload.  No padding inside. */
typedef struct PayCardHeader
{
	uint8		version;		/* PAY_CARD_FORMAT_VERSION */
	uint8		brand;			/* CardBrand */
	uint8		exp_month;		/* 1..12 */
	uint8		flags;			/* PAY_CARD_HAS_* */
	uint32		key_id;			/* the vault key that sealed it */
	uint16		exp_year;		/* four digits */
	char		last4[4];		/* ASCII digits, no NUL */
	uint8		reserved[2];	/* zero: the header has no padding */
} PayCardHeader;

typedef struct PayCard
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	PayCardHeader hdr;
	uint8		nonce[CARD_VAULT_NONCE_LEN];
	uint8		tag[CARD_VAULT_TAG_LEN];
	uint8		sealed[FLEXIBLE_ARRAY_MEMBER];
} PayCard;

#define PAY_CARD_SEALED_OFFSET	offsetof(PayCard, sealed)

/*
 * The unsealed secrets of a card.  Fixed size, so that whoever holds one
 * can and must wipe it with explicit_bzero() as soon as it is used.
 */
typedef struct CardSecret
{
	char		pan[CARD_PAN_MAX_DIGITS + 1];
	char		cvv[CARD_CVV_MAX_DIGITS + 1];
	char		holder_name[CARD_HOLDER_MAX_BYTES + 1];
	bool		has_cvv;
	bool		has_holder_name;
} CardSecret;

/* What opening a card from the vault gave (card_open_sealed). */
typedef enum CardOpenStatus
{
	CARD_OPEN_OK,
	CARD_OPEN_LOST,				/* its key is gone (card_open_failure says how) */
	CARD_OPEN_CORRUPT,			/* not a well-formed card, or altered bytes */
	CARD_OPEN_NOT_A_CARD		/* other vault content (opaque data) */
} CardOpenStatus;

#define DatumGetPayCardP(X)		((PayCard *) PG_DETOAST_DATUM(X))
#define PG_GETARG_PAYCARD_P(n)	DatumGetPayCardP(PG_GETARG_DATUM(n))

extern void payments_card_init(void);
extern void card_log_init(void);
extern bool card_statement_holds_card(const char *stmt, bool masked, bool *executes);
extern void card_check_datum(const PayCard *card);
extern void card_decrypt(const PayCard *card, CardSecret *out);
extern CardOpenStatus card_open_sealed(const char *bytes, Size len,
									   PayCardHeader *hdr, CardSecret *out);
extern const char *card_open_failure(CardOpenStatus status);
extern void card_number_fingerprint_hex(const char *pan,
										char hex[CARD_FINGERPRINT_HEX_LEN + 1]);
extern bool card_sealed_layout(const char *bytes, Size len,
							   int *aadlen, int *key_id_offset);
extern bool card_sealed_fingerprint(const char *bytes, Size len,
									char hex[CARD_FINGERPRINT_HEX_LEN + 1]);

#endif
