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

/*
 * The first position from i at which buf holds the letter lower in either
 * case, or len: the masking finds the first letter of the words it looks
 * for (pay_card, pk_, bearer, dataValue) with memchr, which passes over
 * the text several bytes at a time, rather than trying every position.
 */
static inline int
card_next_letter(const char *buf, int len, int i, char lower)
{
	const char *l,
			   *u;

	if (i >= len)
		return len;
	l = memchr(buf + i, lower, len - i);
	u = memchr(buf + i, lower - ('a' - 'A'), (l != NULL ? l - buf : len) - i);
	return (u != NULL) ? u - buf : (l != NULL) ? l - buf : len;
}

extern bool card_redact(char *buf, int len);
extern bool card_redact_params(char *buf, int len);
extern bool card_params_cut_number(const char *buf, int len);
extern bool card_redact_excerpt(char *buf, int len);
extern bool card_redact_statement(char *buf, int len);
extern bool card_redact_plan(char *buf, int len);
extern char *card_redacted_copy(const char *str);
extern int	card_skip_sql_space(const char *buf, int len, int j);

#endif
