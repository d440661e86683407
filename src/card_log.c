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

/* Replace one text of the message if it holds a card number. */
static void
redact(char **field, const char *note)
{
	if (*field != NULL && card_text_contains_number(*field, strlen(*field)))
		*field = pstrdup(note);
}

static void
card_emit_log_hook(ErrorData *edata)
{
	if (!edata->hide_stmt && debug_query_string != NULL &&
		card_text_contains_number(debug_query_string, strlen(debug_query_string)))
		edata->hide_stmt = true;
	redact(&edata->message, "(message redacted by payments: it contained a card number)");
	redact(&edata->detail, "(detail redacted by payments: it contained a card number)");
	redact(&edata->detail_log, "(detail redacted by payments: it contained a card number)");
	redact(&edata->hint, "(hint redacted by payments: it contained a card number)");
	redact(&edata->context, "(context redacted by payments: it contained a card number)");
	if (edata->internalquery != NULL && card_text_contains_number(edata->internalquery, strlen(edata->internalquery)))
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
