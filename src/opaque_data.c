/*-------------------------------------------------------------------------
 *
 * opaque_data.c
 *	  Accept.js opaque data sealed for its wait in payments.card_vault.
 *
 * The payment nonce Accept.js returns stands in for a card for fifteen
 * minutes: whoever holds it can charge that card once.  It waits in the
 * vault like a card, sealed with the vault key (AES-256-GCM), until the
 * gateway has answered and the vault row is erased.  Layout: the magic
 * "PO1" (authenticated, so a card's sealed bytes are never read as opaque
 * data or the reverse), the nonce, the tag, then the ciphertext of the
 * opaque data's JSON text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"

#include "card_vault.h"
#include "opaque_data.h"

#define OPAQUE_MAGIC		"PO1"
#define OPAQUE_MAGIC_LEN	3
#define OPAQUE_HEADER_LEN	(OPAQUE_MAGIC_LEN + CARD_VAULT_NONCE_LEN + CARD_VAULT_TAG_LEN)
#define OPAQUE_MAX_LEN		(64 * 1024)	/* a nonce is a few hundred bytes */

PG_FUNCTION_INFO_V1(pay_opaque_data_sealed);

/* payments._opaque_data_sealed(jsonb): the vault's sealed bytes. */
Datum
pay_opaque_data_sealed(PG_FUNCTION_ARGS)
{
	Jsonb	   *od = PG_GETARG_JSONB_P(0);
	char	   *plain = JsonbToCString(NULL, &od->root, VARSIZE(od));
	size_t		len = strlen(plain);
	bytea	   *out;
	uint8	   *p;

	if (len > OPAQUE_MAX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("opaque_data is too long"),
				 errdetail("Accept.js opaque data is a few hundred bytes; this is %zu.", len)));
	out = palloc(VARHDRSZ + OPAQUE_HEADER_LEN + len);
	SET_VARSIZE(out, VARHDRSZ + OPAQUE_HEADER_LEN + len);
	p = (uint8 *) VARDATA(out);
	memcpy(p, OPAQUE_MAGIC, OPAQUE_MAGIC_LEN);
	card_vault_seal(p, OPAQUE_MAGIC_LEN, (const uint8 *) plain, (int) len,
					p + OPAQUE_MAGIC_LEN, p + OPAQUE_MAGIC_LEN + CARD_VAULT_NONCE_LEN,
					p + OPAQUE_HEADER_LEN);
	explicit_bzero(plain, len);
	pfree(plain);
	PG_RETURN_BYTEA_P(out);
}

/*
 * The JSON text of sealed opaque data (palloc'd, NUL-terminated; the
 * caller wipes it), or NULL when the bytes are not opaque data sealed
 * under this vault key.
 */
char *
opaque_data_open(const uint8 *sealed, size_t len)
{
	char	   *plain;
	size_t		plainlen;

	if (len < OPAQUE_HEADER_LEN || len - OPAQUE_HEADER_LEN > OPAQUE_MAX_LEN ||
		memcmp(sealed, OPAQUE_MAGIC, OPAQUE_MAGIC_LEN) != 0)
		return NULL;
	plainlen = len - OPAQUE_HEADER_LEN;
	plain = palloc(plainlen + 1);
	if (!card_vault_open(sealed, OPAQUE_MAGIC_LEN,
						 sealed + OPAQUE_MAGIC_LEN, sealed + OPAQUE_MAGIC_LEN + CARD_VAULT_NONCE_LEN,
						 sealed + OPAQUE_HEADER_LEN, (int) plainlen, (uint8 *) plain))
	{
		pfree(plain);
		return NULL;
	}
	plain[plainlen] = '\0';
	return plain;
}
