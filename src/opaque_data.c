/*-------------------------------------------------------------------------
 *
 * opaque_data.c
 *	  Accept.js opaque data sealed for its wait in payments.card_vault.
 *
 * The payment nonce Accept.js returns stands in for a card for fifteen
 * minutes: whoever holds it can charge that card once.  It waits in the
 * vault like a card, sealed with the vault key (AES-256-GCM), until the
 * gateway has answered and the vault row is erased.  Layout: the magic
 * "PO2" and the id of the vault key that sealed it (both authenticated, so
 * a card's sealed bytes are never read as opaque data or the reverse), the
 * nonce, the tag, then the ciphertext of
 * "<dataDescriptor> NUL <dataValue>": two plain strings, so the worker
 * opens them without a JSON parser leaving copies behind.  "PO1" (0.1.0)
 * was sealed under a key file that no longer exists: such data is lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "anet_fields.h"
#include "card_vault.h"
#include "errcodes.h"
#include "free_text.h"
#include "opaque_data.h"
#include "schema_version.h"
#include "vault_holds.h"

#define OPAQUE_MAGIC		"PO2"
#define OPAQUE_MAGIC_LEGACY "PO1"
#define OPAQUE_MAGIC_LEN	3
#define OPAQUE_AAD_LEN		(OPAQUE_MAGIC_LEN + 4)	/* magic, key id */
#define OPAQUE_HEADER_LEN	(OPAQUE_AAD_LEN + CARD_VAULT_NONCE_LEN + CARD_VAULT_TAG_LEN)
#define OPAQUE_MAX_LEN		(64 * 1024)	/* a nonce is a few hundred bytes */

PG_FUNCTION_INFO_V1(pay_opaque_data_sealed);

/*
 * A field of opaque data the gateway will get: not empty, and only
 * characters its XML can carry.  The message never quotes the nonce.
 */
static void
check_opaque_field(const char *name, const text *t)
{
	size_t		nchars = 0;

	if (VARSIZE_ANY_EXHDR(t) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_PAYMENT_METHOD),
				 errmsg("opaque_data %s is empty", name),
				 errdetail("The gateway requires a non-empty %s.", name),
				 errhint("Pass the opaqueData object Accept.js returned, unchanged.")));
	if (anet_text_check(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &nchars, NULL) != ANET_TEXT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_GATEWAY_CHARACTER),
				 errmsg("opaque_data %s contains a character the gateway cannot carry", name),
				 errdetail("Character %zu is a control character (or not UTF-8); the gateway reads requests as XML, which cannot carry it.",
						   nchars + 1),
				 errhint("Pass the opaqueData object Accept.js returned, unchanged.")));
}

/* payments._opaque_data_sealed(descriptor, value): the vault's sealed bytes. */
Datum
pay_opaque_data_sealed(PG_FUNCTION_ARGS)
{
	text	   *descriptor = PG_GETARG_TEXT_PP(0);
	text	   *value = PG_GETARG_TEXT_PP(1);
	size_t		dlen = VARSIZE_ANY_EXHDR(descriptor);
	size_t		vlen = VARSIZE_ANY_EXHDR(value);
	size_t		len = dlen + 1 + vlen;
	uint8	   *plain;
	bytea	   *out;
	uint8	   *p;
	uint32		key_id;

	payments_require_schema();
	check_opaque_field("dataDescriptor", descriptor);
	check_opaque_field("dataValue", value);

	/*
	 * The descriptor names the kind of nonce (COMMON.ACCEPT.INAPP.PAYMENT):
	 * unlike the nonce, it goes into the gateway exchange log as sent, so a
	 * card number there would be kept in clear.  The free-text rule
	 * (free_text.c, 22Y17); the nonce itself is masked in the log.
	 */
	if (free_text_holds_card(VARDATA_ANY(descriptor), (int) dlen))
		ereport(ERROR,
				(errcode(ERRCODE_PAY_CARD_IN_TEXT),
				 errmsg("opaque_data dataDescriptor holds a card number"),
				 errdetail("The descriptor is kept in the gateway exchange log as sent; a card is taken only as card (pay_card) or as the nonce in dataValue."),
				 errhint("Pass the opaqueData object Accept.js returned, unchanged."),
				 errhidestmt(true),
				 errhidecontext(true)));
	if (len > OPAQUE_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PAY_PAYMENT_METHOD),
				 errmsg("opaque_data is too long"),
				 errdetail("Accept.js opaque data is a few hundred bytes; this is %zu bytes, more than %d.",
						   len, OPAQUE_MAX_LEN),
				 errhint("Pass the opaqueData object Accept.js returned, unchanged.")));
	plain = palloc(len);
	memcpy(plain, VARDATA_ANY(descriptor), dlen);
	plain[dlen] = '\0';
	memcpy(plain + dlen + 1, VARDATA_ANY(value), vlen);
	out = palloc(VARHDRSZ + OPAQUE_HEADER_LEN + len);
	SET_VARSIZE(out, VARHDRSZ + OPAQUE_HEADER_LEN + len);
	p = (uint8 *) VARDATA(out);
	memcpy(p, OPAQUE_MAGIC, OPAQUE_MAGIC_LEN);
	key_id = vault_hold_sealing_key();
	memcpy(p + OPAQUE_MAGIC_LEN, &key_id, 4);
	PG_TRY();
	{
		card_vault_seal(key_id, p, OPAQUE_AAD_LEN, plain, (int) len,
						p + OPAQUE_AAD_LEN, p + OPAQUE_AAD_LEN + CARD_VAULT_NONCE_LEN,
						p + OPAQUE_HEADER_LEN);
	}
	PG_FINALLY();
	{
		explicit_bzero(plain, len);
	}
	PG_END_TRY();
	pfree(plain);
	PG_RETURN_BYTEA_P(out);
}

/*
 * Open sealed opaque data into *descriptor and *value (palloc'd, in one
 * buffer the caller wipes through *value's end; see opaque_data_wipe).
 * Never throws for bad bytes: CARD_VAULT_KEY_GONE when the key that
 * sealed it no longer exists (a restart, a forced rotation, or 0.1.0's key
 * file), CARD_VAULT_CORRUPT when the bytes are not opaque data that
 * authenticates.
 */
CardVaultStatus
opaque_data_open(const uint8 *sealed, size_t len, OpaqueData *out)
{
	size_t		plainlen;
	char	   *plain;
	char	   *nul;
	uint32		key_id;
	CardVaultStatus status;

	memset(out, 0, sizeof(*out));
	if (len >= OPAQUE_MAGIC_LEN && memcmp(sealed, OPAQUE_MAGIC_LEGACY, OPAQUE_MAGIC_LEN) == 0)
		return CARD_VAULT_KEY_GONE;
	if (len < OPAQUE_HEADER_LEN || len - OPAQUE_HEADER_LEN > OPAQUE_MAX_LEN ||
		memcmp(sealed, OPAQUE_MAGIC, OPAQUE_MAGIC_LEN) != 0)
		return CARD_VAULT_CORRUPT;
	memcpy(&key_id, sealed + OPAQUE_MAGIC_LEN, 4);
	plainlen = len - OPAQUE_HEADER_LEN;
	plain = palloc(plainlen + 1);
	status = card_vault_open(key_id, sealed, OPAQUE_AAD_LEN,
							 sealed + OPAQUE_AAD_LEN, sealed + OPAQUE_AAD_LEN + CARD_VAULT_NONCE_LEN,
							 sealed + OPAQUE_HEADER_LEN, (int) plainlen, (uint8 *) plain);
	if (status != CARD_VAULT_OPENED)
	{
		pfree(plain);
		return status;
	}
	plain[plainlen] = '\0';
	nul = memchr(plain, '\0', plainlen);
	if (nul == NULL)
	{
		explicit_bzero(plain, plainlen);
		pfree(plain);
		return CARD_VAULT_CORRUPT;
	}
	out->buf = plain;
	out->len = plainlen;
	out->descriptor = plain;
	out->value = nul + 1;
	return CARD_VAULT_OPENED;
}

/*
 * Why opaque data could not be opened (status not CARD_VAULT_OPENED), as
 * recorded on the failed payment or payment method.  Lost names what can
 * lose it, as card_open_failure does for a card: it is sealed in the call
 * that queues it, never kept from an earlier transaction.
 */
const char *
opaque_data_open_failure(CardVaultStatus status)
{
	if (status == CARD_VAULT_KEY_GONE)
		return "opaque data was lost before it was sent (a server restart, failover or restore, "
			"or a vault key rotation forced before the transaction that sealed it committed); ask for new opaque data";
	return "the sealed opaque data is corrupt and could not be opened; ask for new opaque data";
}

/* Wipe and free what opaque_data_open gave. */
void
opaque_data_wipe(OpaqueData *od)
{
	if (od->buf != NULL)
	{
		explicit_bzero(od->buf, od->len);
		pfree(od->buf);
	}
	memset(od, 0, sizeof(*od));
}

/*
 * Whether vault bytes are opaque data of this format, laid out for
 * card_vault_reseal: magic and key id (the aad), nonce, tag, ciphertext.
 */
bool
opaque_data_layout(const uint8 *sealed, size_t len, int *aadlen, int *key_id_offset)
{
	if (len <= OPAQUE_HEADER_LEN || len - OPAQUE_HEADER_LEN > OPAQUE_MAX_LEN ||
		memcmp(sealed, OPAQUE_MAGIC, OPAQUE_MAGIC_LEN) != 0)
		return false;
	*aadlen = OPAQUE_AAD_LEN;
	*key_id_offset = OPAQUE_MAGIC_LEN;
	return true;
}
