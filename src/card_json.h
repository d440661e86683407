/*-------------------------------------------------------------------------
 *
 * card_json.h
 *	  The JSON text form of pay_card input.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CARD_JSON_H
#define PAYMENTS_CARD_JSON_H

#include "card.h"

/* Longest JSON text we parse; a card object is a few hundred bytes. */
#define CARD_JSON_MAX_INPUT		8192

/* Fields taken out of the JSON object into buffers we own. */
typedef struct JsonCard
{
	const char *error;			/* deferred error detail, or NULL */
	char		number[CARD_NUMBER_MAX_INPUT + 2];
	int			number_len;
	bool		has_number;
	char		cvv[CARD_CVV_MAX_DIGITS + 2];
	int			cvv_len;
	bool		has_cvv;
	char		holder[CARD_HOLDER_MAX_BYTES + 2];
	int			holder_len;
	bool		has_holder;
	int32		exp_month;
	bool		has_exp_month;
	int32		exp_year;
	bool		has_exp_year;
} JsonCard;

extern void card_parse_json(const char *str, size_t len, JsonCard *jc);

#endif
