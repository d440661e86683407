/*-------------------------------------------------------------------------
 *
 * opaque_data.h
 *	  Accept.js opaque data sealed for its wait in payments.card_vault.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_OPAQUE_DATA_H
#define PAYMENTS_OPAQUE_DATA_H

#include "card_vault.h"

/* The two fields of the opaque data, in one buffer to wipe. */
typedef struct OpaqueData
{
	char	   *buf;
	size_t		len;
	const char *descriptor;		/* dataDescriptor */
	const char *value;			/* dataValue: the nonce */
} OpaqueData;

extern CardVaultStatus opaque_data_open(const uint8 *sealed, size_t len, OpaqueData *out);
extern const char *opaque_data_open_failure(CardVaultStatus status);
extern void opaque_data_wipe(OpaqueData *od);
extern bool opaque_data_layout(const uint8 *sealed, size_t len,
							   int *aadlen, int *key_id_offset);

#endif
