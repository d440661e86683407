/*-------------------------------------------------------------------------
 *
 * card_query_text.h
 *	  Query texts with card data masked for pg_stat_statements.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_QUERY_TEXT_H
#define PAYMENTS_CARD_QUERY_TEXT_H

extern void card_query_text_init(void);
extern void card_query_text_check_order(void);
extern void card_mask_activity(const char *stmt);

#endif
