/*-------------------------------------------------------------------------
 *
 * opaque_data.h
 *	  Accept.js opaque data sealed for its wait in payments.card_vault.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_OPAQUE_DATA_H
#define PAYMENTS_OPAQUE_DATA_H

extern char *opaque_data_open(const uint8 *sealed, size_t len);

#endif
