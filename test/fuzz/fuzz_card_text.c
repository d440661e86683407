/*-------------------------------------------------------------------------
 *
 * fuzz_card_text.c
 *	  libFuzzer target: src/card_redact.c's entry points (linked as they
 *	  are) on arbitrary text, as the log hook (card_log.c) and the
 *	  statement-text hooks (card_query_text.c) run them on any message,
 *	  statement, parameter list or plan a role can make the server write.
 *
 * The input is one text of exactly its bytes (no NUL after it: ASan sees
 * any read past it), given to every function on a copy of its own.
 * Checks, besides the sanitizers:
 *	 - card_redact(), card_redact_params(): the length is kept and every
 *	   byte is either unchanged or CARD_REDACT_CHAR ("every masked
 *	   character becomes 'X'"); a changed text is reported as masked;
 *	 - after card_redact(), no run of CARD_PAN_MIN_DIGITS or more digits
 *	   grouped by single spaces or dashes is left, and
 *	   card_text_contains_number() (the hook's own detector) finds none;
 *	 - card_redact() masks every digit of the literals among the arguments
 *	   of a pay_card(...) call (its comment's promise), as the small lexer
 *	   below reads the call from its '(': a quote or a ')' in a comment or
 *	   a quoted name inside it changes nothing, and a call inside a
 *	   comment, a quoted name or a literal of another is read too; and
 *	   so for the call read one quoting level down (''4111...'' a
 *	   literal), where a '' that a value follows opens a literal;
 *	 - card_redact_statement(), card_redact_plan(): digits only change,
 *	   each to CARD_REDACT_CHAR, and the result says whether any did;
 *	 - card_redact_statement() masks every digit its comment promises to,
 *	   as PostgreSQL's lexer reads the text (a small lexer here, on its
 *	   own): all but those of names and parameter numbers, so those of
 *	   literals, numbers and comments, however the tokens before them
 *	   are spelled;
 *	 - both of these with standard_conforming_strings on and off (the
 *	   small lexer reads a '...' literal either way): a digit either
 *	   reading says must be masked is ('\'' is one literal, a quote,
 *	   with it off, and two tokens with it on);
 *	 - card_redact_excerpt(): every digit and nothing else becomes
 *	   CARD_REDACT_CHAR, and the result says whether there was one;
 *	 - card_params_cut_number() reads only (and only within the text);
 *	 - card_redacted_copy() (of the text up to its first NUL, a C
 *	   string as the hook gets) is NULL exactly when card_redact() masks
 *	   nothing, else the text card_redact() makes, of the same length;
 *	 - card_skip_sql_space() from any start j returns r, j <= r <= len,
 *	   with buf[r] no blank and no comment's start when r < len, and r
 *	   == j when buf[j] can start neither.
 * Not checked: that card_redact() of its own result changes nothing
 * (card_redact.c does not promise it: a masked digit becomes a letter,
 * and within seconds a second pass masks more, "$1...$" read as a dollar
 * quote once "$X...$").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_brand.h"
#include "card_redact.h"
#include "fuzz_check.h"

#define IS_DIGIT(c)		((c) >= '0' && (c) <= '9')

static char *
copy_of(const char *str, size_t size)
{
	char	   *c = malloc(size ? size : 1);

	FUZZ_ASSERT(c != NULL);
	memcpy(c, str, size);
	return c;
}

/*
 * Every byte of after is that of before or CARD_REDACT_CHAR, and (when
 * digits_only) only a digit changed.  Returns whether any byte changed.
 */
static bool
check_mask_only(const char *before, const char *after, size_t size, bool digits_only)
{
	bool		changed = false;

	for (size_t i = 0; i < size; i++)
	{
		if (after[i] == before[i])
			continue;
		changed = true;
		FUZZ_ASSERT(after[i] == CARD_REDACT_CHAR);
		if (digits_only)
			FUZZ_ASSERT(IS_DIGIT(before[i]));
	}
	return changed;
}

/* The most digits in one run grouped by single spaces or dashes. */
static int
longest_grouped_run(const char *buf, size_t size)
{
	int			best = 0,
				n = 0;

	for (size_t i = 0; i < size; i++)
	{
		if (IS_DIGIT(buf[i]))
			n++;
		else if ((buf[i] == ' ' || buf[i] == '-') && n > 0 &&
				 i + 1 < size && IS_DIGIT(buf[i + 1]))
			continue;
		else
			n = 0;
		best = Max(best, n);
	}
	return best;
}


static void
check_redacted_copy(const char *str, size_t size)
{
	size_t		n = strnlen(str, size);
	char	   *cstr = malloc(n + 1);
	char	   *m;
	char	   *copy;
	bool		ret;

	FUZZ_ASSERT(cstr != NULL);
	memcpy(cstr, str, n);
	cstr[n] = '\0';
	m = copy_of(cstr, n);
	ret = card_redact(m, (int) n);
	copy = card_redacted_copy(cstr);
	FUZZ_ASSERT((copy != NULL) == ret);
	if (copy != NULL)
	{
		FUZZ_ASSERT(strlen(copy) == n && memcmp(copy, m, n) == 0);
		free(copy);				/* the shim's pnstrdup is malloc */
	}
	free(m);
	free(cstr);
}

static void
check_digits_only(const char *str, size_t size, bool (*fn) (char *, int))
{
	char	   *m = copy_of(str, size);
	bool		ret = fn(m, (int) size);

	FUZZ_ASSERT(check_mask_only(str, m, size, true) == ret);
	free(m);
}

static bool
is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool
is_ident_cont(unsigned char c)
{
	return is_ident_start(c) || IS_DIGIT(c) || c == '$';
}

/* The length of the dollar quote delimiter ($$, $tag$) at s[i], or 0. */
static int
dollar_delimiter(const char *s, int len, int i)
{
	int			j = i + 1;

	if (s[i] != '$' || (j < len && !is_ident_start(s[j]) && s[j] != '$'))
		return 0;
	while (j < len && is_ident_cont(s[j]) && s[j] != '$')
		j++;
	return (j < len && s[j] == '$') ? j + 1 - i : 0;
}

typedef enum
{
	TOKEN_COMMENT,
	TOKEN_LITERAL,
	TOKEN_NAME,
	TOKEN_PARAM,
	TOKEN_NUMBER,
	TOKEN_OTHER					/* one character: a blank, an operator, ... */
} TokenKind;

/*
 * Whether next_token() reads as with standard_conforming_strings off: a
 * '...' literal then takes backslash escapes, as E'...' does.
 */
static bool nonstandard_reading = false;

/*
 * The token at s[i] as PostgreSQL's scanner (scan.l, standard_conforming_
 * strings on, or off with nonstandard_reading) reads the text: sets *kind
 * and, for a literal, its contents s[*body..*body_end) (between its
 * delimiters); returns its end.  A literal or comment the text cuts runs
 * to its end.
 */
static int
next_token(const char *s, int len, int i, TokenKind *kind, int *body, int *body_end)
{
	unsigned char c = s[i];
	int			d;

	*kind = TOKEN_OTHER;
	*body = *body_end = i;
	if (c == '-' && i + 1 < len && s[i + 1] == '-')
	{
		*kind = TOKEN_COMMENT;
		while (i < len && s[i] != '\n')
			i++;
	}
	else if (c == '/' && i + 1 < len && s[i + 1] == '*')
	{
		int			depth = 1;

		*kind = TOKEN_COMMENT;
		for (i += 2; i < len && depth > 0;)
		{
			if (i + 1 < len && s[i] == '/' && s[i + 1] == '*')
				depth++, i += 2;
			else if (i + 1 < len && s[i] == '*' && s[i + 1] == '/')
				depth--, i += 2;
			else
				i++;
		}
	}
	else if (c == '\'' || ((c == 'E' || c == 'e') && i + 1 < len && s[i + 1] == '\''))
	{
		bool		e_prefix = (c != '\'');
		bool		esc = e_prefix || nonstandard_reading;

		*kind = TOKEN_LITERAL;
		*body = i + (e_prefix ? 2 : 1);
		for (i = *body; i < len; i++)
		{
			if (s[i] == '\\' && esc)
				i++;
			else if (s[i] == '\'' && i + 1 < len && s[i + 1] == '\'')
				i++;
			else if (s[i] == '\'')
				break;
		}
		*body_end = Min(i, len);
		i = Min(i + 1, len);
	}
	else if (c == '"')
	{
		*kind = TOKEN_NAME;
		for (i++; i < len; i++)
		{
			if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
				i++;
			else if (s[i] == '"')
				break;
		}
		i = Min(i + 1, len);
	}
	else if (c == '$' && i + 1 < len && IS_DIGIT(s[i + 1]))
	{
		*kind = TOKEN_PARAM;
		for (i++; i < len && IS_DIGIT(s[i]); i++)
			;
	}
	else if ((d = dollar_delimiter(s, len, i)) > 0)
	{
		int			from = i;

		*kind = TOKEN_LITERAL;
		*body = i + d;
		for (i += d; i + d <= len && memcmp(s + i, s + from, d) != 0; i++)
			;
		*body_end = (i + d <= len) ? i : len;
		i = Min(i + d, len);
	}
	else if (is_ident_start(c))
	{
		*kind = TOKEN_NAME;
		for (i++; i < len && is_ident_cont(s[i]); i++)
			;
	}
	else if (IS_DIGIT(c) || (c == '.' && i + 1 < len && IS_DIGIT(s[i + 1])))
	{
		/*
		 * a number: digits, a point, an exponent (1.5e3, 1e-5: the
		 * digits after the sign are another number); what a name would
		 * take right after it is junk PostgreSQL 15 refuses, read as part
		 * of it (integer_junk in scan.l)
		 */
		*kind = TOKEN_NUMBER;
		for (i++; i < len && (s[i] == '.' || is_ident_cont(s[i])); i++)
			;
	}
	else
		i++;
	return i;
}

/*
 * Which digits of a statement card_redact_statement() must mask: every
 * digit but those of identifiers (t1, "col 2", a$1) and parameters ($1).
 * Sets must[i] for each such digit.
 */
static void
statement_digits_to_mask(const char *s, int len, bool *must)
{
	int			i = 0;

	memset(must, 0, len);
	while (i < len)
	{
		TokenKind	kind;
		int			body,
					body_end;
		int			from = i;

		i = next_token(s, len, i, &kind, &body, &body_end);
		if (kind != TOKEN_NAME && kind != TOKEN_PARAM)
			for (int j = from; j < i; j++)
				if (IS_DIGIT(s[j]))
					must[j] = true;
	}
}

static bool
is_sql_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/*
 * The ''...'' literals of the call whose '(' is at s[from] read one
 * quoting level down, as card_redact.c's comment promises (the call inside a '...'
 * literal, EXECUTE's argument: "pay_card(''4111...'', 12, 2031,
 * '' 123'')"): the text from the '(' on, each '' (paired left to right)
 * made one quote and a quote alone a character that quotes nothing, read
 * by next_token(), except that a quote made of a '' opens a literal only
 * where what follows that '' in s, past blanks, is there and is none of
 * the characters ' , ) ; : | (else it is a character of its own, and so
 * is an E before it).  Sets must[] for the digits of the contents of its
 * literals in quotes (not of a dollar quote this reading alone sees: it
 * reads a text without a '' as no quoted one), at their places in s.
 */
static void
doubled_call_digits(const char *s, int len, int from, bool *must)
{
	char	   *d = malloc(len - from + 1);
	int		   *at = malloc(sizeof(int) * (len - from + 1));
	bool	   *opens = malloc(len - from + 1);
	int			n = 0,
				j = 0,
				depth = 0;

	FUZZ_ASSERT(d != NULL && at != NULL && opens != NULL);
	for (int k = from; k < len; n++)
	{
		at[n] = k;
		opens[n] = false;
		if (s[k] == '\'' && k + 1 < len && s[k + 1] == '\'')
		{
			int			p = k + 2;

			while (p < len && is_sql_blank(s[p]))
				p++;
			opens[n] = p < len && s[p] != '\0' && strchr("',);:|", s[p]) == NULL;
			d[n] = '\'';
			k += 2;
		}
		else
		{
			d[n] = (s[k] == '\'') ? '\x01' : s[k];
			k++;
		}
	}
	while (j < n)
	{
		TokenKind	kind;
		int			body,
					body_end,
					e;
		bool		e_quote = (d[j] == 'E' || d[j] == 'e') && j + 1 < n && d[j + 1] == '\'';

		if ((d[j] == '\'' && !opens[j]) || (e_quote && !opens[j + 1]))
		{
			kind = (d[j] == '\'') ? TOKEN_OTHER : TOKEN_NAME;
			e = j + 1;
		}
		else
			e = next_token(d, n, j, &kind, &body, &body_end);
		if (kind == TOKEN_OTHER && d[j] == '(')
			depth++;
		else if (kind == TOKEN_OTHER && d[j] == ')' && --depth == 0)
			break;
		else if (kind == TOKEN_LITERAL && (d[j] == '\'' || e_quote))
			for (int k = body; k < body_end; k++)
				if (IS_DIGIT(d[k]))
					must[at[k]] = true;
		j = e;
	}
	free(d);
	free(at);
	free(opens);
}

/*
 * Which digits card_redact() must mask in the calls of pay_card a text
 * holds, as card_redact.c's comment promises ("every quoted literal inside
 * the parentheses of a pay_card(...) call"): every digit of the contents
 * of a literal among a call's arguments, as next_token() reads them.  A
 * call is the word pay_card in any case that no letter, digit or '_'
 * precedes (its name may be quoted), blanks and comments, then '('; it
 * ends at the ')' that closes it, or with the text.  Every such word is
 * a call of its own, read on its own from its '(' in the text as it
 * came: also one inside a comment, a quoted name or a literal of an
 * earlier call, where the text may read otherwise.  Each is also read
 * one quoting level down (doubled_call_digits).  Sets must[i] for each
 * such digit.
 */
static void
pay_card_digits_to_mask(const char *s, int len, bool *must)
{
	memset(must, 0, len);
	for (int i = 0; i + 8 < len; i++)
	{
		TokenKind	kind;
		int			body,
					body_end,
					e,
					j,
					depth = 0;

		if (pg_strncasecmp(s + i, "pay_card", 8) != 0 ||
			(i > 0 && (IS_DIGIT(s[i - 1]) || s[i - 1] == '_' ||
					   ((s[i - 1] | 0x20) >= 'a' && (s[i - 1] | 0x20) <= 'z'))))
			continue;
		j = i + 8;
		if (j < len && s[j] == '"')
			j++;
		while (j < len && (is_sql_blank(s[j]) ||
						   ((e = next_token(s, len, j, &kind, &body, &body_end)) > j &&
							kind == TOKEN_COMMENT)))
			j = is_sql_blank(s[j]) ? j + 1 : e;
		if (j >= len || s[j] != '(')
			continue;
		doubled_call_digits(s, len, j, must);
		while (j < len)
		{
			e = next_token(s, len, j, &kind, &body, &body_end);
			if (kind == TOKEN_OTHER && s[j] == '(')
				depth++;
			else if (kind == TOKEN_OTHER && s[j] == ')' && --depth == 0)
				break;
			else if (kind == TOKEN_LITERAL)
				for (int k = body; k < body_end; k++)
					if (IS_DIGIT(s[k]))
						must[k] = true;
			j = e;
		}
	}
}

/*
 * Every digit of str that which_digits() says must be masked, with
 * standard_conforming_strings on or off (a role may SET it, and the text
 * says nothing of which), is CARD_REDACT_CHAR in m, the text a masking
 * function made of it.
 */
static void
check_digits_masked(const char *what, const char *str, const char *m, size_t size,
					void (*which_digits) (const char *, int, bool *))
{
	bool	   *must = malloc(size ? size : 1);
	bool	   *must_off = malloc(size ? size : 1);

	FUZZ_ASSERT(must != NULL && must_off != NULL);
	which_digits(str, (int) size, must);
	nonstandard_reading = true;
	which_digits(str, (int) size, must_off);
	nonstandard_reading = false;
	for (size_t i = 0; i < size; i++)
		must[i] = must[i] || must_off[i];
	free(must_off);
	for (size_t i = 0; i < size; i++)
	{
		if (must[i] && m[i] != CARD_REDACT_CHAR)
			fprintf(stderr, "%s: digit %zu kept: %.*s\n", what, i, (int) size, m);
		if (must[i])
			FUZZ_ASSERT(m[i] == CARD_REDACT_CHAR);
	}
	free(must);
}

static void
check_redact(const char *str, size_t size)
{
	char	   *m = copy_of(str, size);
	bool		ret = card_redact(m, (int) size);

	if (check_mask_only(str, m, size, false))
		FUZZ_ASSERT(ret);
	FUZZ_ASSERT(longest_grouped_run(m, size) < CARD_PAN_MIN_DIGITS);
	FUZZ_ASSERT(!card_text_contains_number(m, (int) size));
	check_digits_masked("card_redact", str, m, size, pay_card_digits_to_mask);
	free(m);
}

static void
check_statement(const char *str, size_t size)
{
	char	   *m = copy_of(str, size);

	(void) card_redact_statement(m, (int) size);
	check_digits_masked("card_redact_statement", str, m, size, statement_digits_to_mask);
	free(m);
}

static void
check_params(const char *str, size_t size)
{
	char	   *m = copy_of(str, size);
	bool		ret = card_redact_params(m, (int) size);

	if (check_mask_only(str, m, size, false))
		FUZZ_ASSERT(ret);
	/* read-only, on the text as it was */
	memcpy(m, str, size);
	(void) card_params_cut_number(m, (int) size);
	FUZZ_ASSERT(memcmp(m, str, size) == 0);
	free(m);
}

static void
check_excerpt(const char *str, size_t size)
{
	char	   *m = copy_of(str, size);
	bool		ret = card_redact_excerpt(m, (int) size);
	bool		digit = false;

	for (size_t i = 0; i < size; i++)
	{
		if (IS_DIGIT(str[i]))
		{
			digit = true;
			FUZZ_ASSERT(m[i] == CARD_REDACT_CHAR);
		}
		else
			FUZZ_ASSERT(m[i] == str[i]);
	}
	FUZZ_ASSERT(ret == digit);
	free(m);
}

static void
check_skip_space_from(const char *str, int len, int j)
{
	int			r = card_skip_sql_space(str, len, j);

	FUZZ_ASSERT(r >= j && r <= len);
	if (r < len)
	{
		FUZZ_ASSERT(!is_sql_blank(str[r]));
		FUZZ_ASSERT(!(r + 1 < len && str[r] == '-' && str[r + 1] == '-'));
		FUZZ_ASSERT(!(r + 1 < len && str[r] == '/' && str[r + 1] == '*'));
	}
	if (j < len && !is_sql_blank(str[j]) && str[j] != '-' && str[j] != '/')
		FUZZ_ASSERT(r == j);
}

/* From the start, the middle, the end, and after each '(' (at most 16). */
static void
check_skip_space(const char *str, size_t size)
{
	int			len = (int) size;
	int			n = 0;

	check_skip_space_from(str, len, 0);
	check_skip_space_from(str, len, len / 2);
	check_skip_space_from(str, len, len);
	for (int j = 0; j < len && n < 16; j++)
	{
		if (str[j] == '(')
		{
			check_skip_space_from(str, len, j + 1);
			n++;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *str = copy_of((const char *) data, size);

	check_redact(str, size);
	check_redacted_copy(str, size);
	check_digits_only(str, size, card_redact_statement);
	check_statement(str, size);
	check_digits_only(str, size, card_redact_plan);
	check_params(str, size);
	check_excerpt(str, size);
	check_skip_space(str, size);
	/* nothing above wrote to the input */
	FUZZ_ASSERT(memcmp(str, data, size) == 0);
	free(str);
	return 0;
}
