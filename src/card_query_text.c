/*-------------------------------------------------------------------------
 *
 * card_query_text.c
 *	  Hand pg_stat_statements (and any other hook further down) query texts
 *	  with card data masked.
 *
 * pg_stat_statements keeps the text of every utility statement (DO,
 * EXPLAIN, CALL, ...) as it was sent, and of an optimizable statement
 * with its constants replaced by $n, in a file under the data directory.
 * A DO block or an EXPLAIN with a literal card number would stay there.
 * Hooks run in the reverse order of loading, so when payments is loaded
 * after pg_stat_statements (shared_preload_libraries =
 * 'pg_stat_statements,payments'), these hooks run first and pass on a
 * masked copy of the query text (card_redact.c: same length, so every
 * location into it stays valid):
 *	- ProcessUtility: the queryString of utility statements, with every
 *	  digit of its literals masked when it holds card data (utility_text;
 *	  PREPARE keeps it too);
 *	- post_parse_analyze: pstate->p_sourcetext, while the next hook runs
 *	  (pg_stat_statements normalizes that text: comments and anything it
 *	  does not replace stay);
 *	- ExecutorEnd: queryDesc->sourceText, while the next hook runs (it
 *	  stores the text as it is if the entry was evicted in between), masked
 *	  as a utility statement's is.
 * The statement itself runs from its parse tree, never from the text.
 * Loaded the other way round, pg_stat_statements sees the raw text: a
 * WARNING at start says so (payments.c).
 *
 * The same hooks mask what pg_stat_activity.query shows of this backend's
 * statement (debug_query_string) once it is known to hold card data
 * (card_statement_holds_card: any role granted pg_read_all_stats reads
 * it): PostgreSQL publishes the text as received when a message arrives
 * (a simple query; and a Parse, Bind and Execute, each again), before any
 * hook runs; the first hook that sees the statement overwrites the text in
 * place, with every digit of its literals masked (the text's length, its
 * query_start, state_change and query_id unchanged).  post_parse_analyze
 * sees a simple query and a Parse, ExecutorStart a Bind of a statement
 * parsed earlier, ExecutorRun an Execute (which publishes a copy of the
 * text), ProcessUtility a utility statement.  A statement without card
 * data is scanned once (clean_text).  One that fails before its parse
 * analysis ends is masked when its transaction or savepoint aborts, and
 * by the log hook when it reports the error (card_mask_activity): the
 * text stays shown while the backend is idle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/varlena.h"

#include "card.h"
#include "card_query_text.h"
#include "card_redact.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;

/*
 * The last text of this backend's statements found to hold no card data
 * (up to CLEAN_TEXT_MAX bytes, in TopMemoryContext): its next publications
 * (a Bind and an Execute of it, or its next run) are not scanned again.
 * Not one that holds an EXECUTE, whose prepared statement can be prepared
 * anew.
 */
#define CLEAN_TEXT_MAX	8192
static char *clean_text = NULL;

/*
 * Mask pg_stat_activity's text of this backend's statement when text is
 * that statement (debug_query_string) and holds card data.  masked is
 * text as card_redact masks it, or NULL if it masks nothing; unknown says
 * that masked was not computed.
 */
static void
mask_activity(const char *text, char *masked, bool unknown)
{
	volatile PgBackendStatus *beentry = MyBEEntry;
	char	   *shown;
	int			len;
	bool		executes = false;

	if (text == NULL || debug_query_string == NULL || beentry == NULL ||
		!pgstat_track_activities)
		return;
	/* an Execute message publishes (and runs) a copy of the portal's text */
	if (text != debug_query_string && strcmp(text, debug_query_string) != 0)
		return;
	text = debug_query_string;
	/* once per publication: what is shown must still be the text itself */
	len = Min(strlen(text), pgstat_track_activity_query_size - 1);
	if (memcmp((const char *) beentry->st_activity_raw, text, len) != 0 ||
		(clean_text != NULL && strcmp(clean_text, text) == 0))
		return;
	if (unknown)
		masked = card_redacted_copy(text);
	if (!card_statement_holds_card(text, masked != NULL, &executes))
		shown = NULL;
	else
	{
		/* the whole text is masked before it is cut, as a literal may be */
		shown = masked != NULL ? pstrdup(masked) : pstrdup(text);
		if (!card_redact_statement(shown, strlen(shown)) && masked == NULL)
		{
			pfree(shown);		/* pay_card($1, ...): nothing to mask */
			shown = NULL;
		}
	}
	if (shown == NULL)
	{
		if (strlen(text) <= CLEAN_TEXT_MAX && !executes)
		{
			if (clean_text != NULL)
				pfree(clean_text);
			clean_text = MemoryContextStrdup(TopMemoryContext, text);
		}
		return;
	}
	PGSTAT_BEGIN_WRITE_ACTIVITY(beentry);
	memcpy((char *) beentry->st_activity_raw, shown, len);
	PGSTAT_END_WRITE_ACTIVITY(beentry);
	pfree(shown);
}

/*
 * Mask pg_stat_activity's text of this backend's statement stmt
 * (debug_query_string) if it holds card data and is still shown as sent.
 * For the log hook (card_log.c), on every message about a statement that
 * holds card data: one that failed before its parse analysis ended (a
 * syntax error, an unknown function or table) never reached the hooks
 * above, and PostgreSQL keeps showing the text of a backend's last
 * statement while it is idle.
 */
void
card_mask_activity(const char *stmt)
{
	mask_activity(stmt, NULL, true);
}

/*
 * A utility statement's text as the next hook and PostgreSQL get it (and
 * an executed statement's, as pg_stat_statements gets it at its end): NULL
 * when it holds no card data, else a copy (same length) with card data
 * masked and, as it holds card data, every digit of its literals: a
 * security code beside a card number or pay_card is just a short number
 * (a DO block's "code text := '471'").  pg_stat_statements keeps that text
 * as it is; PREPARE keeps it as its statement's source, which
 * pg_prepared_statements shows and every EXECUTE of it logs ("prepare:
 * ..."); EXPLAIN and CREATE TABLE AS hand it on to the executor.  Each
 * runs from its parse tree, never from the text.  masked is the text as
 * card_redact masks it, or NULL.
 */
static char *
utility_text(const char *text, char *masked)
{
	bool		had_copy = masked != NULL;

	if (!card_statement_holds_card(text, had_copy, NULL))
		return masked;
	if (!had_copy)
		masked = pstrdup(text);
	if (!card_redact_statement(masked, strlen(masked)) && !had_copy)
	{
		pfree(masked);			/* pay_card($1, ...): nothing to mask */
		return NULL;
	}
	return masked;
}

static void
card_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					ProcessUtilityContext context, ParamListInfo params,
					QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	char	   *masked = queryString ? card_redacted_copy(queryString) : NULL;

	mask_activity(queryString, masked, false);
	if (queryString != NULL)
		masked = utility_text(queryString, masked);
	if (masked != NULL)
		queryString = masked;
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
card_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	const char *saved = pstate->p_sourcetext;
	char	   *masked;

	if (prev_post_parse_analyze == NULL)
	{
		mask_activity(saved, NULL, true);
		return;
	}
	masked = saved ? card_redacted_copy(saved) : NULL;
	mask_activity(saved, masked, false);
	if (masked == NULL)
	{
		prev_post_parse_analyze(pstate, query, jstate);
		return;
	}
	pstate->p_sourcetext = masked;
	PG_TRY();
	{
		prev_post_parse_analyze(pstate, query, jstate);
	}
	PG_FINALLY();
	{
		pstate->p_sourcetext = saved;
	}
	PG_END_TRY();
}

static void
card_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	mask_activity(queryDesc->sourceText, NULL, true);
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
card_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				 bool execute_once)
{
	mask_activity(queryDesc->sourceText, NULL, true);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
}

static void
card_ExecutorEnd(QueryDesc *queryDesc)
{
	const char *saved = queryDesc->sourceText;
	char	   *masked = NULL;

	/* pg_stat_statements stores this text as it is if its entry is gone */
	if (saved != NULL && prev_ExecutorEnd != NULL)
		masked = utility_text(saved, card_redacted_copy(saved));

	if (masked != NULL)
		queryDesc->sourceText = masked;
	/* the query desc is freed by the caller: no restore on error needed */
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (masked != NULL)
		queryDesc->sourceText = saved;
}

/*
 * At the abort of a transaction or of a subtransaction (a savepoint's),
 * mask what pg_stat_activity shows of this backend's statement if it
 * holds card data.  A statement that failed before its parse analysis
 * ended (a syntax error, an unknown function or table) never reached the
 * hooks above, and PostgreSQL keeps showing the text of a backend's last
 * statement while it is idle.  The log hook masks it when it reports the
 * error (card_mask_activity), but it runs only for errors the server logs
 * (log_min_messages): every error aborts the transaction or the
 * savepoint it ran in.  debug_query_string is gone by then, so the shown
 * text itself is read; a text masked before has nothing left to mask.
 * That text may be cut at track_activity_query_size, and a card number
 * cut there is a number no longer (too short, not Luhn-valid): a text of
 * that length loses the digits of the run of digits, blanks and dashes
 * it ends with.
 */
static void
mask_shown_at_abort(void)
{
	volatile PgBackendStatus *beentry = MyBEEntry;
	char	   *shown;
	char	   *masked;
	int			len;

	if (beentry == NULL || !pgstat_track_activities)
		return;
	shown = pnstrdup((const char *) beentry->st_activity_raw,
					 pgstat_track_activity_query_size - 1);
	len = strlen(shown);
	masked = utility_text(shown, card_redacted_copy(shown));
	if (len == pgstat_track_activity_query_size - 1)
	{
		char	   *from = masked != NULL ? masked : shown;
		char	   *p = from + len;
		bool		digits = false;

		while (p > from && (isdigit((unsigned char) p[-1]) || p[-1] == ' ' || p[-1] == '-'))
			digits |= isdigit((unsigned char) *--p) != 0;
		if (digits && masked == NULL)
		{
			masked = pstrdup(shown);
			p = masked + (p - shown);
		}
		for (; digits && *p != '\0'; p++)
			if (isdigit((unsigned char) *p))
				*p = 'X';
	}
	if (masked != NULL)
	{
		PGSTAT_BEGIN_WRITE_ACTIVITY(beentry);
		memcpy((char *) beentry->st_activity_raw, masked, len);
		PGSTAT_END_WRITE_ACTIVITY(beentry);
		pfree(masked);
	}
	pfree(shown);
}

static void
card_query_text_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_ABORT)
		mask_shown_at_abort();
}

static void
card_query_text_subxact_callback(SubXactEvent event, SubTransactionId mySubid pg_attribute_unused(),
								 SubTransactionId parentSubid pg_attribute_unused(),
								 void *arg pg_attribute_unused())
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		mask_shown_at_abort();
}

/* Install the hooks; called once from the postmaster's _PG_init. */
void
card_query_text_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = card_ProcessUtility;
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = card_post_parse_analyze;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = card_ExecutorEnd;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = card_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = card_ExecutorRun;
	RegisterXactCallback(card_query_text_xact_callback, NULL);
	RegisterSubXactCallback(card_query_text_subxact_callback, NULL);
}

/* "$libdir/pg_stat_statements.so" -> "pg_stat_statements" */
static bool
library_is(const char *entry, const char *name)
{
	const char *base = strrchr(entry, '/');
	size_t		n = strlen(name);

	base = base ? base + 1 : entry;
	return strncmp(base, name, n) == 0 && (base[n] == '\0' || strcmp(base + n, DLSUFFIX) == 0);
}

/*
 * Warn at start when pg_stat_statements is loaded after payments: its
 * hooks then run before ours and keep query texts with card data in them.
 */
void
card_query_text_check_order(void)
{
	char	   *raw = pstrdup(shared_preload_libraries_string);
	List	   *libs = NIL;
	ListCell   *lc;
	bool		seen_payments = false;

	if (!SplitDirectoriesString(raw, ',', &libs))
		return;
	foreach(lc, libs)
	{
		const char *lib = (const char *) lfirst(lc);

		if (library_is(lib, "payments"))
			seen_payments = true;
		else if (library_is(lib, "pg_stat_statements") && seen_payments)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("pg_stat_statements is loaded after payments, so it keeps query texts with card numbers in them"),
					 errdetail("Hooks run in the reverse order of loading: payments can mask the texts pg_stat_statements keeps only when it is loaded after it."),
					 errhint("Put payments after pg_stat_statements in shared_preload_libraries, e.g. 'pg_stat_statements,payments'.")));
	}
}
