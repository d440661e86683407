/*-------------------------------------------------------------------------
 *
 * card_log.c
 *	  Keep card numbers and security codes out of the server log, whatever
 *	  logged them.
 *
 * Card errors already hide their statement and context.  But a statement
 * or a bind parameter that holds card data can be logged for other
 * reasons: log_statement = 'all', log_min_duration_statement (with its
 * "parameters: $1 = '...'" detail), auto_explain, another error in the
 * same statement, a JSON input error that echoes the offending text.
 * This emit_log_hook looks at every message about to be reported (to the
 * log and to the client):
 *	- every text of the message is masked in place (card_redact.c): digit
 *	  runs of card length, values of card keys, literals of pay_card(...);
 *	- a statement that holds card data (a card number, a call of pay_card,
 *	  or an EXECUTE of a prepared statement that calls it, in any of the
 *	  statements its string holds) loses every digit
 *	  of its literals where a message quotes it ("statement: ...", and
 *	  auto_explain's "Query Text: ..."), and its parameter list is masked
 *	  as a whole, as is one of which a parameter holds card data: a
 *	  security code written or bound next to a card number is just a short
 *	  number (471::text, EXECUTE p('4111...', 12, 2031, '471'));
 *	- the excerpt of a JSON input error loses its digits (and the token
 *	  its detail quotes), and so does the
 *	  input line a failed COPY quotes when it holds a card number;
 *	- auto_explain's plan of such a statement loses the digits of its
 *	  quoted constants and Output lists, in every log_format;
 *	- an error in such a statement about a value (class 22) loses the
 *	  digits of the value it quotes, an integrity error (class 23) those
 *	  of the values its detail lists, a syntax error those of the literal
 *	  it quotes;
 *	- the text that prepared an EXECUTEd statement, which its log lines
 *	  quote ("prepare: ..."), loses the digits of its literals when it
 *	  holds card data;
 *	- other processes' statements that a message quotes (a deadlock's
 *	  report, a crashed backend's) lose the digits of their literals when
 *	  they hold card data or an EXECUTE;
 *	- the statement is hidden when it holds card data (it cannot be
 *	  rewritten here: elog.c prints debug_query_string itself), and masked
 *	  in pg_stat_activity if it still shows there as sent (one that failed
 *	  before its parse analysis ended; card_query_text.c).
 * The messages are found by their text, in the language lc_messages gives
 * them (Translations, below): the English words and quotes by default, the
 * texts of PostgreSQL's own catalog for that language otherwise (German
 * quotes with guillemets, >>...<<, French with << ... >>); where a value
 * cannot be told from the rest of a translated text, every digit of that
 * text goes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/prepare.h"
#include "lib/stringinfo.h"
#include "parser/scansup.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/pg_locale.h"

#include "card.h"
#include "card_query_text.h"
#include "card_redact.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Translations.  PostgreSQL writes its messages in the language of
 * lc_messages, from its catalog (postgres-15.mo): "Fehlgeschlagene Zeile
 * enthaelt (...)", "Syntaxfehler bei >>'471'<<", "SQL-Anweisung >>...<<"
 * (German; its guillemets written >> << here).  The parts of a message
 * found below by their English text are found in a translated one by the
 * texts the same catalog gives for them, read from the translation of the
 * message's format (dgettext, in this process, under the same lc_messages
 * as the message itself).  In English (no translation) nothing changes:
 * the code paths below that read translations run only for a message the
 * catalog translated (message_translated) or where the English text is not
 * found.
 */
#define PG_DOMAIN	PG_TEXTDOMAIN("postgres")

/*
 * The literal text that the translation of fmt (in domain) puts around its
 * argno-th argument (1-based, in fmt's own order: a translation may take
 * it as %2$s): *before, from the conversion before it (or the start), and
 * *after, up to the conversion after it (or the end); palloc'd.  False
 * when fmt has no translation, or no such argument.
 */
static bool
translation_around(const char *domain, const char *fmt, int argno, char **before, char **after)
{
	const char *tr = dgettext(domain, fmt);
	StringInfoData piece;
	bool		found = false;
	int			seq = 0;

	if (tr == fmt || strcmp(tr, fmt) == 0)
		return false;
	initStringInfo(&piece);
	for (const char *s = tr;; s++)
	{
		const char *d;
		int			n = 0;

		if (*s == '\0')
			break;
		if (*s != '%' || s[1] == '%')
		{
			appendStringInfoChar(&piece, *s);
			if (*s == '%')
				s++;
			continue;
		}
		/* a conversion: [n$][flags][width][.precision][length]letter */
		for (d = s + 1; isdigit((unsigned char) *d); d++)
			n = n * 10 + (*d - '0');
		if (*d == '$' && d > s + 1)
			s = d + 1;
		else
		{
			n = ++seq;
			s++;
		}
		while (*s != '\0' && strchr("-+ #0'123456789.*hlLqjzt", *s) != NULL)
			s++;
		if (*s == '\0')
			break;
		if (found)
			break;
		if (n == argno)
		{
			found = true;
			*before = piece.data;
			initStringInfo(&piece);
		}
		else
			resetStringInfo(&piece);
	}
	if (!found)
	{
		pfree(piece.data);
		return false;
	}
	*after = piece.data;
	return true;
}

/*
 * The texts of PostgreSQL's catalog for the current lc_messages that the
 * masking below looks for, read once per value of lc_messages (each NULL
 * when the catalog does not translate its message: the English one is
 * used).
 */
typedef struct Translations
{
	char	   *lc_messages;	/* the value they were read for */
	bool		translated;		/* whether the catalog translates at all */
	char	   *sql_open[3];	/* "SQL statement \"", "SQL expression \"", ... */
	char	   *sql_close[3];	/* "\"" */
	char	   *json_line;		/* "JSON data, line " */
	char	   *token;			/* "Token \"" */
	char	   *copy_start[2];	/* "COPY " (of the two formats that quote the line) */
	char	   *copy_line[2];	/* ", line " */
	char	   *failing_row;	/* "Failing row contains " */
	char	   *prepare;		/* "prepare: " */
	char	   *process;		/* "Process " */
	char	   *process_sep;	/* ": " */
	char	   *failed;			/* "Failed process was running: " */
} Translations;

static Translations translations;

/* the text before argument argno of fmt's translation (NULL: none) */
static char *
translated_before(const char *fmt, int argno, char **after)
{
	char	   *before,
			   *rest;

	if (!translation_around(PG_DOMAIN, fmt, argno, &before, &rest))
		return NULL;
	if (after != NULL)
		*after = rest;
	return before;
}

static const Translations *
current_translations(void)
{
	const char *lc = locale_messages != NULL ? locale_messages : "";
	static MemoryContext cxt = NULL;
	MemoryContext old;

	if (translations.lc_messages != NULL && strcmp(translations.lc_messages, lc) == 0)
		return &translations;
	if (cxt == NULL)
	{
		cxt = AllocSetContextCreate(TopMemoryContext, "card_log translations",
									ALLOCSET_SMALL_SIZES);
		/* the first message a process reports may come from one */
		MemoryContextAllowInCriticalSection(cxt, true);
	}
	else
		MemoryContextReset(cxt);
	memset(&translations, 0, sizeof(translations));
	old = MemoryContextSwitchTo(cxt);
	translations.sql_open[0] = translated_before("SQL statement \"%s\"", 1, &translations.sql_close[0]);
	translations.sql_open[1] = translated_before("SQL expression \"%s\"", 1, &translations.sql_close[1]);
	translations.sql_open[2] = translated_before("PL/pgSQL assignment \"%s\"", 1, &translations.sql_close[2]);
	translations.json_line = translated_before("JSON data, line %d: %s%s%s", 1, NULL);
	translations.token = translated_before("Token \"%s\" is invalid.", 1, NULL);
	translations.copy_start[0] = translated_before("COPY %s, line %llu: \"%s\"", 1, NULL);
	translations.copy_line[0] = translated_before("COPY %s, line %llu: \"%s\"", 2, NULL);
	translations.copy_start[1] = translated_before("COPY %s, line %llu, column %s: \"%s\"", 1, NULL);
	translations.copy_line[1] = translated_before("COPY %s, line %llu, column %s: \"%s\"", 2, NULL);
	translations.failing_row = translated_before("Failing row contains %s.", 1, NULL);
	translations.prepare = translated_before("prepare: %s", 1, NULL);
	translations.process = translated_before("Process %d: %s", 1, NULL);
	translations.process_sep = translated_before("Process %d: %s", 2, NULL);
	translations.failed = translated_before("Failed process was running: %s", 1, NULL);
	/* whether the catalog translates any of them (it may be partial) */
	translations.translated = strcmp(dgettext(PG_DOMAIN, "statement: %s"), "statement: %s") != 0 ||
		translations.sql_open[0] != NULL || translations.sql_open[1] != NULL ||
		translations.sql_open[2] != NULL || translations.json_line != NULL ||
		translations.token != NULL || translations.copy_start[0] != NULL ||
		translations.copy_start[1] != NULL || translations.failing_row != NULL ||
		translations.prepare != NULL || translations.process != NULL ||
		translations.failed != NULL;
	translations.lc_messages = pstrdup(lc);
	MemoryContextSwitchTo(old);
	return &translations;
}

/*
 * The catalog's translation of edata's format (message_id, in its domain),
 * or NULL when the catalog does not translate it (English, or a format
 * made at run time).
 */
static const char *
message_translation(const ErrorData *edata)
{
	const char *tr;

	if (edata->message_id == NULL || edata->message == NULL)
		return NULL;
	tr = dgettext(edata->domain != NULL ? edata->domain : PG_DOMAIN, edata->message_id);
	return tr != edata->message_id && strcmp(tr, edata->message_id) != 0 ? tr : NULL;
}

/* Whether the message of edata is a translation, not the English text. */
static bool
message_translated(const ErrorData *edata)
{
	return message_translation(edata) != NULL;
}

/*
 * Whether the message of edata is the catalog's translation of its format,
 * a format without conversions: it quotes no value, and its digits are the
 * catalog's (Japanese writes "division by zero" with a 0, a "two" or
 * "one-dimensional" with a 2 or a 1).  A format with any "%" is not taken
 * ("%%" prints as "%"), nor one the catalog does not translate: a format
 * made at run time (errmsg(buf) in another extension) is no catalog text
 * and may hold anything.  An untranslated fixed text has no quotes, so the
 * English path leaves it as it is.
 */
static bool
message_is_fixed_text(const ErrorData *edata)
{
	const char *fmt = message_translation(edata);

	return fmt != NULL && strchr(fmt, '%') == NULL &&
		strcmp(edata->message, fmt) == 0;
}

/* The first "$<n> = '" of a text (a bind parameter list's first value). */
static char *
first_param(char *text)
{
	for (char *p = strchr(text, '$'); p != NULL; p = strchr(p + 1, '$'))
	{
		char	   *d = p + 1;

		if (!isdigit((unsigned char) *d))
			continue;
		while (isdigit((unsigned char) *d))
			d++;
		if (strncmp(d, " = '", 4) == 0)
			return p;
	}
	return NULL;
}

/*
 * Where the parameter list of a text starts ("parameters: $1 = '...'"):
 * found by its English prefix, or, when the catalog translates (German
 * "Parameter: $1", French "parametres : << $1"), at its first "$<n> = '"
 * (the list itself is not translated).
 */
static char *
params_start(const char *field)
{
	char	   *p;

	if (field == NULL)
		return NULL;
	if ((p = strstr(field, "parameters: $")) != NULL)
		return p;
	if (current_translations()->translated)
		return first_param((char *) field);
	return NULL;
}

/* Mask one text of the message (a copy: the original may be shared). */
static bool
redact(char **field)
{
	char	   *copy;

	if (*field == NULL)
		return false;
	copy = card_redacted_copy(*field);
	if (copy == NULL)
		return false;
	*field = copy;
	return true;
}

/* Mask the parameter values in a text that lists them. */
static void
redact_params(char **field)
{
	char	   *p;
	char	   *copy;

	if ((p = params_start(*field)) == NULL)
		return;
	copy = pstrdup(*field);
	(void) card_redact_params(copy + (p - *field), strlen(copy) - (p - *field));
	*field = copy;
}

/* Whether a text lists parameters of which one is a number cut short. */
static bool
params_cut_number(const char *field)
{
	const char *p;

	return (p = params_start(field)) != NULL &&
		card_params_cut_number(p, strlen(p));
}

/* Digits out of a JSON input error's echo of its input. */
static void
redact_json_echo(ErrorData *edata)
{
	const Translations *tr = NULL;
	char	   *p = NULL;
	bool		translated = false;

	if (edata->context != NULL && (p = strstr(edata->context, "JSON data, line ")) != NULL)
	{
		char	   *copy = pstrdup(edata->context);
		char	   *colon = strchr(copy + (p - edata->context), ':');

		if (colon != NULL)
			(void) card_redact_excerpt(colon, strlen(colon));
		edata->context = copy;
	}
	else if (edata->context != NULL && (tr = current_translations())->json_line != NULL &&
			 (p = strstr(edata->context, tr->json_line)) != NULL)
	{
		/* translated ("JSON-Daten, Zeile 1: ..."): every digit from there on */
		char	   *copy = pstrdup(edata->context);

		(void) card_redact_excerpt(copy + (p - edata->context), strlen(p));
		edata->context = copy;
		translated = true;
	}
	if (edata->detail != NULL && strncmp(edata->detail, "Token \"", 7) == 0)
	{
		char	   *copy = pstrdup(edata->detail);

		(void) card_redact_excerpt(copy, strlen(copy));
		edata->detail = copy;
	}
	else if (edata->detail != NULL && (translated ||
									   ((tr = current_translations())->token != NULL &&
										strncmp(edata->detail, tr->token, strlen(tr->token)) == 0)))
	{
		/*
		 * Translated, the token the detail quotes cannot be told from the
		 * rest by its quotes (">>,<< oder >>}<< erwartet, aber >>471<<
		 * gefunden."):
		 * every digit of the detail goes.
		 */
		char	   *copy = pstrdup(edata->detail);

		(void) card_redact_excerpt(copy, strlen(copy));
		edata->detail = copy;
	}
	else if (edata->detail != NULL && p != NULL)
	{
		/*
		 * The other syntax errors quote the token they stopped at
		 * ("Expected \":\", but found \"471\"."): its digits, between
		 * the detail's first and last double quotes.
		 */
		char	   *copy = pstrdup(edata->detail);
		char	   *first = strchr(copy, '"');
		char	   *last = strrchr(copy, '"');

		if (first != NULL && last > first)
			(void) card_redact_excerpt(first, last - first);
		edata->detail = copy;
	}
}

/*
 * A failed COPY quotes the input line it stopped at in its context
 * ("COPY t, line 3: \"...\""; copyfromparse.c).  When that line holds a
 * card number, the security code and expiry beside it are just short
 * numbers: the quoted line loses every digit.  field is the context's own
 * copy (redact made it).
 */
static void
redact_copy_line(char *field)
{
	const Translations *tr = current_translations();
	char	   *line = field;

	while (line != NULL)
	{
		char	   *end = strchr(line, '\n');
		char	   *quote;

		if (strncmp(line, "COPY ", 5) == 0 &&
			(quote = strstr(line, ", line ")) != NULL &&
			(end == NULL || quote < end) &&
			(quote = strstr(quote, ": \"")) != NULL &&
			(end == NULL || quote < end))
			(void) card_redact_excerpt(quote, end != NULL ? (int) (end - quote) : (int) strlen(quote));
		else
		{
			/*
			 * Translated (German "COPY t, Zeile 3: ...", Japanese with the
			 * table's name first): every digit after the line number, to
			 * the end of the line
			 */
			for (int k = 0; k < 2; k++)
			{
				if (tr->copy_start[k] == NULL || tr->copy_line[k] == NULL || tr->copy_line[k][0] == '\0' ||
					strncmp(line, tr->copy_start[k], strlen(tr->copy_start[k])) != 0 ||
					(quote = strstr(line, tr->copy_line[k])) == NULL ||
					(end != NULL && quote > end))
					continue;
				for (quote += strlen(tr->copy_line[k]); isdigit((unsigned char) *quote); quote++)
					;
				(void) card_redact_excerpt(quote, end != NULL ? (int) (end - quote) : (int) strlen(quote));
				break;
			}
		}
		line = end != NULL ? end + 1 : NULL;
	}
}

/*
 * How deep an EXECUTE is followed into the texts of prepared statements (a
 * statement prepared by a Parse message may itself be an EXECUTE, even of
 * its own name), and how many of their texts are scanned for one text: an
 * EXECUTE beyond either is taken for one of a statement that calls
 * pay_card.
 */
#define EXECUTE_DEPTH_MAX	4
#define EXECUTE_LOOKUPS_MAX	64

/* Whether a byte continues a name (scan.l's ident_cont; any high-bit byte). */
#define IDENT_CONT(c)	(isalnum((unsigned char) (c)) || (c) == '_' || (c) == '$' || \
						 IS_HIGHBIT_SET(c))

static bool calls_pay_card(const char *s, int depth, int *lookups, bool *executes);

/*
 * Whether the prepared statement that an EXECUTE names calls pay_card (its
 * arguments are then card data, though the EXECUTE's own text may not show
 * it: a number the input refuses, the security code).  s is what follows
 * the keyword, its blanks and its comments.  depth < 0 is for another
 * process's statement, whose prepared statements cannot be looked up: any
 * name counts.  *lookups counts the prepared statements' texts left to
 * scan.
 */
static bool
executed_calls_pay_card(const char *s, int depth, int *lookups)
{
	char	   *name;
	PreparedStatement *ps;

	/* the name as the parser reads it (scansup.c) */
	if (*s == '"')
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (s++; *s && !(*s == '"' && s[1] != '"'); s++)
		{
			if (*s == '"')
				s++;			/* a doubled quote is one */
			appendStringInfoChar(&buf, *s);
		}
		truncate_identifier(buf.data, buf.len, false);
		name = buf.data;
	}
	else if ((*s == 'u' || *s == 'U') && s[1] == '&' && s[2] == '"')
		return true;			/* U&"..." is not decoded here: taken for one */
	else if (isalpha((unsigned char) *s) || *s == '_' || IS_HIGHBIT_SET(*s))
	{
		const char *start = s;

		while (IDENT_CONT(*s))
			s++;
		if (depth < 0)
			return true;
		name = downcase_truncate_identifier(start, s - start, false);
	}
	else
		return false;			/* no name: the word was in a literal, say */
	if (depth < 0)
		return true;
	ps = name[0] != '\0' ? FetchPreparedStatement(name, false) : NULL;
	pfree(name);
	if (ps == NULL)
		return false;
	if (depth >= EXECUTE_DEPTH_MAX || --*lookups < 0)
		return true;
	return calls_pay_card(ps->plansource->query_string, depth + 1, lookups, NULL);
}

/*
 * Whether a statement text calls pay_card (its parameters may be card data)
 * or EXECUTEs a prepared statement that does, anywhere in it: in each
 * statement of a string that holds several (SELECT 1; EXECUTE p(...)),
 * after a comment, in EXPLAIN EXECUTE or CREATE TABLE ... AS EXECUTE, in
 * any case, with a quoted name.  The keyword cannot be spelled otherwise
 * than by its letters, so every occurrence of them that ends a word is
 * taken for it: one inside a literal or a comment only costs a look-up of
 * the name after it (and masked digits, if that names such a statement).
 * Nothing has to be split or scanned as the parser would (which could fail
 * here, in an error report, on the very text that failed to parse).
 * *executes (if not NULL) is set when the text holds such a word.
 */
static bool
calls_pay_card(const char *text, int depth, int *lookups, bool *executes)
{
	const char *s = text;
	const char *end = NULL;

	/*
	 * This runs on every statement: look only where an x or a y stands
	 * (rare in SQL; strpbrk is vectorized), the second letter of execute
	 * and the third of pay_card.
	 */
	while ((s = strpbrk(s, "xXyY")) != NULL)
	{
		if ((*s | 0x20) == 'y')
		{
			if (s - text >= 2 && pg_strncasecmp(s - 2, "pay_card", 8) == 0)
				return true;
		}
		else if (s - text >= 1 && pg_strncasecmp(s - 1, "execute", 7) == 0 &&
				 !IDENT_CONT(s[6]))
		{
			if (end == NULL)
				end = s + strlen(s);
			if (executes != NULL)
				*executes = true;
			if (executed_calls_pay_card(s + 6 + card_skip_sql_space(s + 6, end - s - 6, 0),
										depth, lookups))
				return true;
		}
		s++;
	}
	return false;
}

/*
 * Whether this backend's statement stmt holds card data: text card_redact
 * masks in it (masked says whether it did), a call of pay_card, or an
 * EXECUTE of a prepared statement that calls it.  Such a statement loses
 * every digit of its literals wherever it is shown (card_redact_statement):
 * here in messages, and in pg_stat_activity (card_query_text.c).  When it
 * does not, *executes (if not NULL) tells whether it holds an EXECUTE, of
 * which the verdict changes with the prepared statements.
 */
bool
card_statement_holds_card(const char *stmt, bool masked, bool *executes)
{
	int			lookups = EXECUTE_LOOKUPS_MAX;

	if (executes != NULL)
		*executes = false;
	return masked || calls_pay_card(stmt, 0, &lookups, executes);
}

/* Mask the digits of the statement stmt wherever the text quotes it. */
static void
redact_statement_in(char **field, const char *stmt)
{
	char	   *copy = NULL;
	const char *p;
	int			len = strlen(stmt);

	if (*field == NULL || len == 0)
		return;
	for (p = strstr(*field, stmt); p != NULL; p = strstr(p + len, stmt))
	{
		if (copy == NULL)
			copy = pstrdup(*field);
		(void) card_redact_statement(copy + (p - *field), len);
	}
	if (copy != NULL)
		*field = copy;
}

/*
 * An EXECUTE's log lines quote, in their detail, the text that prepared
 * the statement ("prepare: PREPARE p AS ...", errdetail_execute in
 * postgres.c): the whole string the PREPARE came in, with the literals
 * it was written with.  When that text holds card data it loses every
 * digit of its literals, as the statement did where it was logged (the
 * security code beside a card number, or beside pay_card, is just a
 * short number).
 */
static void
redact_prepare_text(char **field)
{
	const char *prefix = "prepare: ";
	const char *text;
	char	   *masked;

	if (*field == NULL)
		return;
	if (strncmp(*field, prefix, strlen(prefix)) != 0)
	{
		/* translated ("Vorbereiten: ...") */
		prefix = current_translations()->prepare;
		if (prefix == NULL || prefix[0] == '\0' || strncmp(*field, prefix, strlen(prefix)) != 0)
			return;
	}
	text = *field + strlen(prefix);
	masked = card_redacted_copy(text);
	if (!card_statement_holds_card(text, masked != NULL, NULL))
		return;
	if (masked == NULL)
		masked = pstrdup(text);
	(void) card_redact_statement(masked, strlen(masked));
	*field = psprintf("%s%s", prefix, masked);
}

/*
 * PL/pgSQL quotes the part of a routine's text it ran in its context
 * ("SQL statement \"...\"", "SQL expression \"...\"", "PL/pgSQL
 * assignment \"c := '471'::int / 0\""; spi.c): in a DO block
 * or a routine called by a statement that holds card data, that part
 * can be a variable's security code ('471') or a number, no longer beside
 * the card.  Each such quote loses the digits of its literals, as the
 * statement does.  field is the context's own copy.
 */
static void
redact_sql_quotes(char *field)
{
	static const char *const openings[] = {
		"SQL statement \"", "SQL expression \"", "PL/pgSQL assignment \""
	};
	const Translations *tr = current_translations();

	for (size_t k = 0; k < lengthof(openings); k++)
	{
		char	   *p = field;

		while ((p = strstr(p, openings[k])) != NULL)
		{
			char	   *from = p + strlen(openings[k]);
			char	   *end = strstr(from, "\"\n");

			if (end == NULL)
				end = from + strlen(from);
			(void) card_redact_statement(from, end - from);
			p = end;
		}
		/*
		 * translated: German "SQL-Anweisung >>...<<" (guillemets), French
		 * "instruction SQL << ... >>", up to the closing text and a line's
		 * end
		 */
		if (tr->sql_open[k] == NULL || tr->sql_open[k][0] == '\0')
			continue;
		p = field;
		while ((p = strstr(p, tr->sql_open[k])) != NULL)
		{
			char	   *from = p + strlen(tr->sql_open[k]);
			char	   *close = psprintf("%s\n", tr->sql_close[k]);
			char	   *end = strstr(from, close);

			pfree(close);
			if (end == NULL)
				end = from + strlen(from);
			(void) card_redact_statement(from, end - from);
			p = end;
		}
	}
}

/*
 * The token a translated syntax error quotes ("Syntaxfehler bei >>'471'<<",
 * Japanese with the token first): found between the texts the translation
 * of "%s at or near \"%s\"" puts around it, and masked as in the English
 * message; every digit of the message when it cannot be found so.
 */
static void
redact_translated_token(ErrorData *edata)
{
	char	   *before,
			   *after;
	char	   *copy = pstrdup(edata->message);
	char	   *start = NULL;
	char	   *end = NULL;

	if (translation_around(edata->domain != NULL ? edata->domain : PG_DOMAIN,
						   edata->message_id, 2, &before, &after))
	{
		int			len = strlen(copy);
		int			alen = strlen(after);

		start = before[0] != '\0' ? strstr(copy, before) : copy;
		if (start != NULL)
			start += strlen(before);
		if (start == NULL)
			end = NULL;
		else if (alen == 0)
			end = copy + len;
		else
		{
			/* the last occurrence of the text after the token */
			for (char *a = strstr(start, after); a != NULL; a = strstr(a + 1, after))
				end = a;
		}
	}
	if (start != NULL && end != NULL && end >= start)
		(void) card_redact_statement(start, end - start);
	else
		(void) card_redact_excerpt(copy, strlen(copy));
	edata->message = copy;
}

/*
 * An error about a value (SQLSTATE class 22, data exception) echoes the
 * value it refused between double quotes ("invalid input syntax for type
 * integer: \"477x\"", "value \"...\" is out of range"), and an integrity
 * error (class 23) the values of the row or key in its detail ("Failing
 * row contains (...)", "Key (id)=(...) already exists"): in a statement
 * that holds card data, that value can be a security code or a number
 * typed wrong.  The message's quoted part and the detail's values lose
 * their digits, as does the token a syntax error quotes when it is a
 * literal or a number; other errors (a name in "column \"c1\" does not
 * exist") keep theirs.
 */
static void
redact_echoed_value(ErrorData *edata)
{
	int			class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	char	   *copy;
	char	   *p;

	if (class == ERRCODE_DATA_EXCEPTION && message_is_fixed_text(edata))
	{
		/*
		 * no value in it: its digits are the catalog's (before: Japanese
		 * "0 ... " of division by zero lost its 0 in such a statement)
		 */
	}
	else if (class == ERRCODE_DATA_EXCEPTION && edata->message != NULL &&
			 (message_translated(edata) || current_translations()->translated))
	{
		/*
		 * translated: the value is quoted otherwise (German >>477x<<,
		 * French << 477x >>), and the translation may put other quotes
		 * around it: every digit of the message goes.  So too for any
		 * such message where lc_messages is not English: one raised again
		 * (PL/pgSQL's RAISE ... USING MESSAGE = SQLERRM, whose format is
		 * "%s") or passed on from another server can be translated
		 * without its format saying so.
		 */
		copy = pstrdup(edata->message);
		(void) card_redact_excerpt(copy, strlen(copy));
		edata->message = copy;
	}
	else if (class == ERRCODE_DATA_EXCEPTION && edata->message != NULL &&
			 (p = strchr(edata->message, '"')) != NULL)
	{
		char	   *last = strrchr(edata->message, '"');

		copy = pstrdup(edata->message);
		(void) card_redact_excerpt(copy + (p - edata->message), last - p);
		edata->message = copy;
	}
	/*
	 * A syntax error quotes the token it stopped at ("syntax error at or
	 * near \"'471'\"", "unterminated quoted string at or near ...";
	 * scanner_yyerror): a literal or a number loses its digits, a name
	 * keeps them, as in the statement.
	 */
	if (edata->sqlerrcode == ERRCODE_SYNTAX_ERROR && edata->message != NULL &&
		message_translated(edata) && strcmp(edata->message_id, "%s at or near \"%s\"") == 0)
		redact_translated_token(edata);
	else if (edata->sqlerrcode == ERRCODE_SYNTAX_ERROR && edata->message != NULL &&
			 (p = strstr(edata->message, " at or near \"")) != NULL)
	{
		char	   *last = strrchr(edata->message, '"');

		p += strlen(" at or near \"");
		if (last > p)
		{
			copy = pstrdup(edata->message);
			(void) card_redact_statement(copy + (p - edata->message), last - p);
			edata->message = copy;
		}
	}
	else if (edata->sqlerrcode == ERRCODE_SYNTAX_ERROR && edata->message != NULL &&
			 current_translations()->translated && !message_is_fixed_text(edata))
	{
		/* raised again or passed on, translated: every digit goes */
		copy = pstrdup(edata->message);
		(void) card_redact_excerpt(copy, strlen(copy));
		edata->message = copy;
	}
	if (class == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION && edata->detail != NULL)
	{
		const Translations *tr = current_translations();
		int			skip = 0;

		if ((p = strstr(edata->detail, "Failing row contains (")) != NULL)
			skip = strlen("Failing row contains (");
		else if ((p = strstr(edata->detail, ")=(")) != NULL)
			skip = strlen(")=(");
		else if (tr->failing_row != NULL && tr->failing_row[0] != '\0' &&
				 (p = strstr(edata->detail, tr->failing_row)) != NULL)
			skip = strlen(tr->failing_row);	/* "Fehlgeschlagene Zeile enthaelt " */
		else if (tr->translated)
			p = edata->detail;	/* translated otherwise: every digit */
		if (p != NULL)
		{
			copy = pstrdup(edata->detail);
			p = copy + (p - edata->detail) + skip;
			(void) card_redact_excerpt(p, strlen(p));
			edata->detail = copy;
		}
	}
}

/*
 * Whether a statement of another process holds card data: a card number,
 * a call of pay_card, or an EXECUTE anywhere in it (that process's prepared
 * statements cannot be looked up here: its arguments may be a card's).
 */
static bool
foreign_statement_holds_card(const char *stmt, int len)
{
	char	   *copy = pnstrdup(stmt, len);
	bool		result;

	result = card_redact(copy, len) || calls_pay_card(copy, -1, NULL, NULL);
	pfree(copy);
	return result;
}

/* Mask buf[0..len) as a statement if it holds card data. */
static void
redact_foreign_statement(char *buf, int len)
{
	if (len > 0 && foreign_statement_holds_card(buf, len))
		(void) card_redact_statement(buf, len);
}

/*
 * Whether buf[p] starts "Process <pid>: " (word, the pid, sep: "Prozess ",
 * ": " in German); sets *from to the text after it.
 */
static bool
is_process_line(const char *buf, const char *p, const char *word, const char *sep,
				const char **from)
{
	int			wlen = strlen(word);
	int			slen = strlen(sep);

	if ((p != buf && p[-1] != '\n') || strncmp(p, word, wlen) != 0)
		return false;
	for (p += wlen; isdigit((unsigned char) *p); p++)
		;
	if (strncmp(p, sep, slen) != 0)
		return false;
	*from = p + slen;
	return true;
}

/*
 * The statements of a deadlock's detail, each on the lines from its
 * process's "Process <pid>: " (word, sep) up to the next one's; NULL when
 * there is none.
 */
static char *
redact_process_lines(const char *field, const char *word, const char *sep)
{
	char	   *copy = NULL;
	const char *p;
	const char *from;

	for (p = field; (p = strstr(p, word)) != NULL; p++)
	{
		const char *end;

		if (!is_process_line(field, p, word, sep, &from))
			continue;
		/* the statement runs up to the next process's line, or the end */
		for (end = strchr(from, '\n'); end != NULL; end = strchr(end + 1, '\n'))
		{
			const char *next;

			if (is_process_line(field, end + 1, word, sep, &next))
				break;
		}
		if (end == NULL)
			end = from + strlen(from);
		if (copy == NULL)
			copy = pstrdup(field);
		redact_foreign_statement(copy + (from - field), end - from);
		p = end - 1;
	}
	return copy;
}

/*
 * Other processes' statements that a message quotes, as their backends
 * published them (pg_stat_activity's text, cut at track_activity_query_size):
 * a deadlock's detail for the log ("Process 123: ..." for each process in
 * the cycle; deadlock.c) and the postmaster's report of a backend that
 * crashed ("Failed process was running: ..."; postmaster.c), in English or
 * as the catalog translates them ("Prozess 123: ...").  The rule for
 * this backend's own statement (debug_query_string) does not see them: one
 * that holds card data loses the digits of its literals.
 */
static void
redact_foreign_statements(char **field)
{
	const Translations *tr;
	const char *failed = "Failed process was running: ";
	char	   *copy;
	char	   *p;
	const char *from;

	if (*field == NULL)
		return;
	tr = current_translations();
	if ((p = strstr(*field, failed)) == NULL && tr->failed != NULL && tr->failed[0] != '\0')
		p = strstr(*field, failed = tr->failed);
	if (p != NULL)
	{
		copy = pstrdup(*field);
		from = copy + (p - *field) + strlen(failed);
		redact_foreign_statement((char *) from, strlen(from));
		*field = copy;
		return;
	}
	copy = redact_process_lines(*field, "Process ", ": ");
	if (copy == NULL && tr->process != NULL && tr->process[0] != '\0' && tr->process_sep != NULL)
		copy = redact_process_lines(*field, tr->process, tr->process_sep);
	if (copy != NULL)
		*field = copy;
}

static void
card_emit_log_hook(ErrorData *edata)
{
	bool		card_data = false;
	char	   *p;

	if (debug_query_string != NULL)
	{
		char	   *stmt = card_redacted_copy(debug_query_string);

		card_data = card_statement_holds_card(debug_query_string, stmt != NULL, NULL);
		if (stmt != NULL)
			pfree(stmt);
		if (card_data)
		{
			card_mask_activity(debug_query_string);
			edata->hide_stmt = true;
			redact_statement_in(&edata->message, debug_query_string);
			redact_statement_in(&edata->detail, debug_query_string);
			redact_statement_in(&edata->detail_log, debug_query_string);
			redact_statement_in(&edata->context, debug_query_string);
			if (edata->context != NULL)
			{
				edata->context = pstrdup(edata->context);
				redact_sql_quotes(edata->context);
			}
			redact_echoed_value(edata);
		}
	}
	/* (before the card numbers in them are masked: they tell) */
	redact_prepare_text(&edata->detail);
	redact_prepare_text(&edata->detail_log);
	redact_foreign_statements(&edata->detail);
	redact_foreign_statements(&edata->detail_log);
	card_data |= redact(&edata->message);
	card_data |= redact(&edata->detail);
	card_data |= redact(&edata->detail_log);
	card_data |= redact(&edata->hint);
	if (redact(&edata->context))
	{
		card_data = true;
		redact_copy_line(edata->context);
	}
	card_data |= params_cut_number(edata->detail) || params_cut_number(edata->detail_log) ||
		params_cut_number(edata->context);
	if (card_data)
	{
		redact_params(&edata->detail);
		redact_params(&edata->detail_log);
		redact_params(&edata->context);
	}
	redact_json_echo(edata);
	/* auto_explain's plan of a statement that holds card data */
	if (card_data && edata->message != NULL && strncmp(edata->message, "duration: ", 10) == 0 &&
		(p = strstr(edata->message, "plan:\n")) != NULL)
	{
		char	   *copy = pstrdup(edata->message);

		(void) card_redact_plan(copy + (p - edata->message), strlen(p));
		edata->message = copy;
	}
	if (edata->internalquery != NULL)
	{
		char	   *copy = card_redacted_copy(edata->internalquery);

		if (copy != NULL)
			edata->internalquery = copy;
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
