/*-------------------------------------------------------------------------
 *
 * card_log.c
 *	  Keep card numbers out of the server log, whatever logged them.
 *
 * Card errors already hide their statement and context.  But a statement
 * that holds a card number can be logged for other reasons: another error
 * in the same statement (a storage attempt rejected by the event trigger,
 * a syntax error next to a card literal), log_statement = 'all',
 * log_min_duration_statement, auto_explain.  This emit_log_hook looks at
 * every message about to be reported; when the statement, or any text of
 * the message, contains something that looks like a card number (12 to 19
 * digits, optionally grouped by single spaces or dashes, of a known brand
 * and with a valid Luhn check digit), the statement is hidden and the
 * offending texts are replaced by a note.  The card security code travels
 * in the same statement and is hidden with it.
 *
 * A false positive only costs a redacted log line.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/elog.h"

#include "card.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Whether str contains a run of 12 to 19 digits (single spaces or dashes
 * allowed between them) that is Luhn-valid and of a known brand.
 */
static bool
contains_card_number(const char *str)
{
	char		digits[CARD_PAN_MAX_DIGITS + 1];
	int			n = 0;
	bool		too_long = false;
	const char *p;

	if (str == NULL)
		return false;
	for (p = str;; p++)
	{
		char		c = *p;

		if (c >= '0' && c <= '9')
		{
			if (n < CARD_PAN_MAX_DIGITS)
				digits[n++] = c;
			else
				too_long = true;
			continue;
		}
		/* a single separator between digits continues the run */
		if ((c == ' ' || c == '-') && n > 0 && p[1] >= '0' && p[1] <= '9')
			continue;
		if (!too_long && n >= CARD_PAN_MIN_DIGITS &&
			card_luhn_valid(digits, n) &&
			card_brand_detect(digits, n) != CARD_BRAND_UNKNOWN)
		{
			explicit_bzero(digits, sizeof(digits));
			return true;
		}
		n = 0;
		too_long = false;
		if (c == '\0')
			break;
	}
	explicit_bzero(digits, sizeof(digits));
	return false;
}

/* Replace one text of the message if it holds a card number. */
static void
redact(char **field, const char *note)
{
	if (*field != NULL && contains_card_number(*field))
		*field = pstrdup(note);
}

static void
card_emit_log_hook(ErrorData *edata)
{
	if (!edata->hide_stmt && debug_query_string != NULL &&
		contains_card_number(debug_query_string))
		edata->hide_stmt = true;
	redact(&edata->message, "(message redacted by payments: it contained a card number)");
	redact(&edata->detail, "(detail redacted by payments: it contained a card number)");
	redact(&edata->detail_log, "(detail redacted by payments: it contained a card number)");
	redact(&edata->hint, "(hint redacted by payments: it contained a card number)");
	redact(&edata->context, "(context redacted by payments: it contained a card number)");
	if (edata->internalquery != NULL && contains_card_number(edata->internalquery))
	{
		edata->internalquery = NULL;
		edata->internalpos = 0;
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Install the hook; called once from the postmaster's _PG_init. */
void
card_log_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = card_emit_log_hook;
}
