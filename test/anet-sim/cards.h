/*-------------------------------------------------------------------------
 *
 * cards.h
 *		Card checks as a processor answers them (Luhn, expiry, card code,
 *		brand) and the sandbox's trigger tables (AVS/CVV by zip and card
 *		code, partial authorization zips, decline zip) plus the
 *		simulator-only amount triggers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_CARDS_H
#define ANET_SIM_CARDS_H

#include <stdbool.h>

extern bool card_luhn_ok(const char *number);
extern const char *card_brand(const char *number);
extern int	card_expiry_check(const char *exp, long long now_ms);
extern char zip_avs(const char *zip, const char *brand);
extern char code_cvv(const char *code);
extern int	amount_trigger(long long cents);
extern int	zip_partial(const char *zip, long long *balance);
extern void triggers_json_add(void *arr);

#define TRIGGER_BASE_CENTS	900000LL	/* $9000.00 + reason code */
#define DECLINE_ZIP			"46282"

#endif
