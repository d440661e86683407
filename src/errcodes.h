/*-------------------------------------------------------------------------
 *
 * errcodes.h
 *	  The extension's own SQLSTATEs.
 *
 * Invalid input is in class 22 (data exception), which PostgREST maps to
 * HTTP 400; the subclass starts with 'Y' (implementation-defined range,
 * clear of PostgreSQL's own 'P' codes).  A state the caller cannot fix
 * uses PostgREST's PTxyz form, which it answers with HTTP status xyz.
 * README.md lists them; they are stable.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_ERRCODES_H
#define PAYMENTS_ERRCODES_H

#include "utils/elog.h"

/* amounts and currencies */
#define ERRCODE_PAY_UNKNOWN_CURRENCY		MAKE_SQLSTATE('2','2','Y','0','1')
#define ERRCODE_PAY_TOO_MANY_DECIMALS		MAKE_SQLSTATE('2','2','Y','0','2')
#define ERRCODE_PAY_CURRENCY_MISMATCH		MAKE_SQLSTATE('2','2','Y','0','3')
#define ERRCODE_PAY_NOT_A_NUMBER			MAKE_SQLSTATE('2','2','Y','0','4')

/* card input */
#define ERRCODE_PAY_INVALID_CARD_NUMBER		MAKE_SQLSTATE('2','2','Y','1','0')
#define ERRCODE_PAY_UNSUPPORTED_CARD_BRAND	MAKE_SQLSTATE('2','2','Y','1','1')
#define ERRCODE_PAY_INVALID_EXPIRY			MAKE_SQLSTATE('2','2','Y','1','2')
#define ERRCODE_PAY_CARD_EXPIRED			MAKE_SQLSTATE('2','2','Y','1','3')
#define ERRCODE_PAY_INVALID_CVV				MAKE_SQLSTATE('2','2','Y','1','4')
#define ERRCODE_PAY_INVALID_CARD_INPUT		MAKE_SQLSTATE('2','2','Y','1','5')
/* raised by the SQL event trigger payments._card_storage_guard() */
#define ERRCODE_PAY_CARD_NOT_STORABLE		MAKE_SQLSTATE('2','2','Y','1','6')
/* a card number in a free-text input: description, metadata, ... (free_text.c) */
#define ERRCODE_PAY_CARD_IN_TEXT			MAKE_SQLSTATE('2','2','Y','1','7')

/*
 * gateway configuration: an http:// endpoint (raised in SQL by
 * pay_configure_gateway unless payments.allow_insecure_endpoint)
 */
#define ERRCODE_PAY_INSECURE_ENDPOINT		MAKE_SQLSTATE('2','2','Y','3','0')
/* what the gateway cannot carry, refused at the call (gateway_input.c) */
#define ERRCODE_PAY_GATEWAY_CHARACTER		MAKE_SQLSTATE('2','2','Y','2','4')
/* payment method missing, ambiguous or malformed (also raised in SQL) */
#define ERRCODE_PAY_PAYMENT_METHOD			MAKE_SQLSTATE('2','2','Y','2','2')
/* 22Y25 (invalid idempotency key) is raised in SQL: payment_api.sql */
#define ERRCODE_PAY_AMOUNT_TOO_LARGE		MAKE_SQLSTATE('2','2','Y','2','6')

/* merchant API keys (api_keys.c, rate_limit.c, tenancy.c) */
#define ERRCODE_PAY_INVALID_API_KEY		MAKE_SQLSTATE('P','T','4','0','1')
#define ERRCODE_PAY_SCOPE_MISSING		MAKE_SQLSTATE('P','T','4','0','3')
#define ERRCODE_PAY_RATE_LIMITED		MAKE_SQLSTATE('P','T','4','2','9')

/* the installed library does not serve this database's schema version */
#define ERRCODE_PAY_SCHEMA_NOT_SERVED		MAKE_SQLSTATE('P','T','5','0','3')

/*
 * a warning, not an error: no worker serves this database (payments.database
 * names another); its operations are queued and never sent
 */
#define ERRCODE_PAY_DATABASE_NOT_SERVED		MAKE_SQLSTATE('0','1','Y','0','1')

#endif
