/*-------------------------------------------------------------------------
 *
 * free_text.h
 *	  Card numbers and size limits in the API's free-text input.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_FREE_TEXT_H
#define PAYMENTS_FREE_TEXT_H

#include "utils/jsonb.h"

/* metadata (and the customer object): Stripe's limits */
#define FREE_TEXT_MAX_KEYS			50
#define FREE_TEXT_KEY_MAX_CHARS		40
#define FREE_TEXT_VALUE_MAX_CHARS	500

/*
 * a correlation id (argument, x-request-id or traceparent header,
 * payments.correlation_id): as Heroku's router bounds X-Request-Id
 */
#define FREE_TEXT_CORRELATION_ID_MAX_CHARS	200

extern bool free_text_is_identifier(const char *s, int len);
extern bool free_text_holds_card(const char *s, int len);
extern void free_text_check(const char *name, const char *s, int len, int max_chars);
extern void free_text_check_object(const char *name, Jsonb *jb);
extern bool free_text_mask(char *s, int len);
extern text *free_text_masked(text *t);
extern int	free_text_correlation_id_excess(const char *s, int len);
extern void free_text_check_correlation_id(const char *s, int len);

#endif
