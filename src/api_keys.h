/*-------------------------------------------------------------------------
 *
 * api_keys.h
 *	  Merchant API keys: settings (the rest is SQL-callable).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_API_KEYS_H
#define PAYMENTS_API_KEYS_H

/* payments.api_scope and the rate limits; from _PG_init */
extern void payments_api_keys_define_settings(void);

#endif
