/*-------------------------------------------------------------------------
 *
 * card_redact.h
 *	  Mask card numbers and security codes in free text, in place.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_REDACT_H
#define PAYMENTS_CARD_REDACT_H

#define CARD_REDACT_CHAR	'X'

extern bool card_redact(char *buf, int len);
extern bool card_redact_params(char *buf, int len);
extern bool card_params_cut_number(const char *buf, int len);
extern bool card_redact_excerpt(char *buf, int len);
extern bool card_redact_statement(char *buf, int len);
extern bool card_redact_plan(char *buf, int len);
extern char *card_redacted_copy(const char *str);
extern int	card_skip_sql_space(const char *buf, int len, int j);

#endif
