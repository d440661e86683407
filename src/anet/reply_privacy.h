/*-------------------------------------------------------------------------
 *
 * reply_privacy.h
 *	  A gateway reply without the customer's personal data, for the log of
 *	  exchanges (reply_privacy.c).
 *
 * Pure C and json-c (no PostgreSQL headers), as the rest of src/anet.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_REPLY_PRIVACY_H
#define PAYMENTS_REPLY_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>

/* The text to mask a personal value with. */
#define ANET_PERSONAL_MASK	"(personal)"

/*
 * json[0..len) with the value of every personal field replaced by
 * ANET_PERSONAL_MASK, as json-c's plain text, malloc'd.  NULL when the
 * text is not a JSON object (kept by the caller as it is), or out of
 * memory.  *changed says whether anything was masked.
 */
extern char *anet_reply_without_personal_data(const char *json, size_t len, bool *changed);

#endif
