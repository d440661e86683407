/*-------------------------------------------------------------------------
 *
 * card_redact.c
 *	  Mask card numbers and security codes in free text, in place.
 *
 * Used on what leaves the server's memory as text: log messages (the
 * emit_log_hook in card_log.c) and the query texts pg_stat_statements
 * keeps (card_query_text.c).  Masking keeps the length (every masked
 * character becomes 'X'), so positions into a query text stay valid.
 * Masking a masked text again may mask more (never less): 'X' is a
 * letter, so the text can read otherwise ($1 becomes part of a dollar
 * quote $X...$, a masked word of a call or key no longer hides what
 * follows it); no caller relies on a second pass changing nothing.
 *
 * What is masked:
 *	- every run of 12 or more digits, optionally grouped by single spaces
 *	  or dashes, whether or not it passes the Luhn check: a mistyped card
 *	  is as secret as the right one (numbers that long are rare in ordinary
 *	  log lines: identifiers, LSNs and times are shorter or punctuated);
 *	- the value after a card key (number, card_number, cvv, cvc, cvv2,
 *	  card_code, cardCode, card-code, security_code, pan), quoted or not,
 *	  after ':' (JSON), '=' or '=>' (named arguments);
 *	- every quoted literal inside the parentheses of a pay_card(...) call:
 *	  the number, the security code and the holder name given positionally
 *	  (the call read as SQL: a quote or a parenthesis in a comment or a
 *	  quoted name inside it opens or closes nothing), a call inside a
 *	  comment, a quoted name or a literal of another one too;
 *	- the bytes of every constant in a node dump (debug_print_plan).
 * The card input reads a text only once every quoting is undone, so keys,
 * blanks and separators are read the same way (read_char): a letter or a
 * blank may be written as a JSON, E'' or U&'' escape ("\u0063vv",
 * "cvv":\t"123"), and a literal may be quoted in any way SQL quotes
 * ('...', E'...', $$...$$, $tag$...$tag$, ''...'' inside a quoted text),
 * with standard_conforming_strings on or off (a role may SET it: a text
 * with a backslash is read both ways).
 * A false positive costs a few masked characters of a log line.
 * Credentials (API key secrets, bearer tokens, Accept.js nonces) are
 * masked with it (secret_redact.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "card_brand.h"
#include "card_redact.h"
#include "secret_redact.h"

#define IS_DIGIT(c)		((c) >= '0' && (c) <= '9')
#define IS_WORD(c)		(((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || \
						 ((c) >= 'A' && (c) <= 'Z') || (c) == '_')
/*
 * Longest value masked after a card key: the longest card number the input
 * takes with every character written as \UXXXXXXXX, and its quotes.
 */
#define VALUE_MAX		(CARD_NUMBER_MAX_INPUT * 10 + 2)

static const char *const card_keys[] = {
	"number", "card_number", "cardnumber", "card-number", "pan",
	"cvv", "cvv2", "cvc", "cvc2", "cid", "card_code", "cardcode", "card-code",
	"security_code", "securitycode", "security-code", NULL
};

/* Mask every run of at least CARD_PAN_MIN_DIGITS grouped digits. */
static bool
mask_digit_runs(char *buf, int len)
{
	bool		masked = false;
	int			i = 0;

	while (i < len)
	{
		int			start,
					end,
					ndigits = 0;

		if (!IS_DIGIT(buf[i]))
		{
			i++;
			continue;
		}
		start = i;
		end = i;
		while (i < len)
		{
			if (IS_DIGIT(buf[i]))
			{
				ndigits++;
				end = ++i;
			}
			else if ((buf[i] == ' ' || buf[i] == '-') && i + 1 < len && IS_DIGIT(buf[i + 1]))
				i++;
			else
				break;
		}
		if (ndigits >= CARD_PAN_MIN_DIGITS)
		{
			for (int j = start; j < end; j++)
				if (IS_DIGIT(buf[j]))
					buf[j] = CARD_REDACT_CHAR;
			masked = true;
		}
	}
	return masked;
}

/* The position of the quote closing the literal opened at buf[i], or len. */
static int
quoted_end(const char *buf, int len, int i, bool backslash_escapes)
{
	char		q = buf[i];
	int			j = i + 1;

	while (j < len)
	{
		if (buf[j] == q)
		{
			if (q == '\'' && j + 1 < len && buf[j + 1] == '\'')
			{
				j += 2;
				continue;
			}
			break;
		}
		if (buf[j] == '\\' && backslash_escapes && j + 1 < len)
		{
			j += 2;
			continue;
		}
		j++;
	}
	return j;
}

/* Mask buf[from..to). */
static void
mask_span(char *buf, int from, int to, bool *masked)
{
	if (to > from)
	{
		memset(buf + from, CARD_REDACT_CHAR, to - from);
		*masked = true;
	}
}

/* Mask a quoted literal starting at buf[i] (the quote); returns its end. */
static int
mask_quoted(char *buf, int len, int i, bool backslash_escapes, bool *masked)
{
	int			e = quoted_end(buf, len, i, backslash_escapes);

	mask_span(buf, i + 1, e, masked);
	return e + 1;
}

/*
 * The first position e in [open + n, stop) at which the n-byte delimiter
 * spelled at buf[open] ($tag$, '' or \") comes again, whole within len,
 * or -1.
 */
static int
delimiter_again(const char *buf, int len, int open, int n, int stop)
{
	for (int e = open + n; e < stop && e + n <= len; e++)
		if (memcmp(buf + e, buf + open, n) == 0)
			return e;
	return -1;
}

/*
 * Mask a literal whose closing delimiter is spelled as its opening one,
 * the n characters at buf[open] ('' or \"), up to that delimiter if it
 * comes before stop.  Returns the position after it; when it does not
 * come, -1 if the text goes on past stop, else (a cut text) len, masked
 * to its end.
 */
static int
mask_to_delimiter(char *buf, int len, int open, int n, int stop, bool *masked)
{
	int			e = delimiter_again(buf, len, open, n, stop);

	if (e >= 0)
	{
		mask_span(buf, open + n, e, masked);
		return e + n;
	}
	if (stop < len)
		return -1;
	mask_span(buf, open + n, len, masked);
	return len;
}

/*
 * The length of the dollar quote ($$ or $tag$) opening at buf[i], or 0.
 * A tag does not start with a digit: $1 is a parameter.
 */
static int
dollar_quote_len(const char *buf, int len, int i)
{
	int			j = i + 1;

	if (buf[i] != '$' || j >= len || IS_DIGIT(buf[j]))
		return 0;
	while (j < len && (IS_WORD(buf[j]) || (unsigned char) buf[j] >= 0x80))
		j++;
	return (j < len && buf[j] == '$') ? j + 1 - i : 0;
}

/*
 * Skip SQL's blanks and comments (-- ones and nested C-style ones) from
 * buf[j]; returns the position of what follows them.
 */
int
card_skip_sql_space(const char *buf, int len, int j)
{
	while (j < len)
	{
		if (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\n' || buf[j] == '\r' || buf[j] == '\f')
			j++;
		else if (j + 1 < len && buf[j] == '-' && buf[j + 1] == '-')
		{
			while (j < len && buf[j] != '\n')
				j++;
		}
		else if (j + 1 < len && buf[j] == '/' && buf[j + 1] == '*')
		{
			int			depth = 1;

			for (j += 2; j < len && depth > 0; j++)
			{
				if (j + 1 < len && buf[j] == '/' && buf[j + 1] == '*')
				{
					depth++;
					j++;
				}
				else if (j + 1 < len && buf[j] == '*' && buf[j + 1] == '/')
				{
					depth--;
					j++;
				}
			}
		}
		else
			break;
	}
	return j;
}

/* What sql_token reads. */
typedef enum SqlTokenKind
{
	SQL_SPACE,					/* blanks and comments */
	SQL_NAME,					/* a name or keyword, quoted ("col 2") or not */
	SQL_PARAM,					/* $1 */
	SQL_LITERAL,				/* '...', E'...', $tag$...$tag$ */
	SQL_NUMBER,					/* 1.5e3, and what a name would take after it */
	SQL_OTHER					/* one character: an operator, a parenthesis */
} SqlTokenKind;

typedef struct SqlToken
{
	SqlTokenKind kind;
	int			body;			/* a literal's contents: buf[body..body_end) */
	int			body_end;
	int			end;			/* the position after the token */
} SqlToken;

/*
 * Whether the '' at buf[i] opens a literal one quoting level down
 * (''...'', inside a quoted text such as EXECUTE's argument) rather than
 * being an empty literal of the text itself: what follows it, past
 * blanks, is a value, not a quote, ',', ')', ';', ':', '|' or the end of
 * the text (pay_card(n, 12, 2031, ''), ''::text, '' || x).
 */
static inline bool
opens_doubled_literal(const char *buf, int len, int i)
{
	int			p = i + 2;

	if (p > len || buf[i] != '\'' || buf[i + 1] != '\'')
		return false;
	while (p < len && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\n' || buf[p] == '\r' ||
					   buf[p] == '\f'))
		p++;
	/* (a NUL is found in the set too) */
	return p < len && strchr("',);:|", buf[p]) == NULL;
}

/*
 * quoted_end one quoting level down: the position of the '' closing the
 * literal opened by the '' at buf[i], in which '''' is a quote (and \''
 * one, with backslash_escapes), or len.
 */
static int
doubled_quoted_end(const char *buf, int len, int i, bool backslash_escapes)
{
	int			j = i + 2;

	while (j < len)
	{
		if (buf[j] == '\'' && j + 1 < len && buf[j + 1] == '\'')
		{
			if (j + 3 < len && buf[j + 2] == '\'' && buf[j + 3] == '\'')
			{
				j += 4;
				continue;
			}
			return j;
		}
		if (buf[j] == '\\' && backslash_escapes && j + 1 < len)
		{
			j += (j + 2 < len && buf[j + 1] == '\'' && buf[j + 2] == '\'') ? 3 : 2;
			continue;
		}
		j++;
	}
	return len;
}

/*
 * Read the token at buf[i] as PostgreSQL's scanner (scan.l) would, with
 * standard_conforming_strings on, or off when nonstandard (then a '...'
 * literal takes backslash escapes as E'...' does: '\'' is one literal, a
 * quote): the one home of this file's SQL lexing, for
 * card_redact_statement, mask_sql_literal and mask_pay_card_calls.  Any
 * role may SET the setting, and the one a text was parsed under is not
 * known where it is masked (a string "SET standard_conforming_strings =
 * off; SELECT ..." is parsed before its SET runs, a function's body when
 * it is compiled): each caller reads a text that holds a backslash both
 * ways and masks what either reading finds.  The readings differ only from
 * a backslash inside a '...' literal on, and read the wrong way, the
 * literals after it are turned inside out ('\'"' ... '471' read as '\' and
 * a quoted name "' ... '471' ...").  With doubled, the text is read one
 * quoting level down, as it stands inside a '...' literal (EXECUTE's
 * argument): a quote is written '' (E'' too), '''' inside a literal, and a
 * '' opens a literal only as opens_doubled_literal says, else it is a
 * token of its own, as a quote alone is (the end of the literal that holds
 * the text).  A comment is skipped whole (a quote in it, "-- the
 * customer's card", opens no literal); a '$' inside a name is part of it
 * (a$1, a$b$c), not a parameter or a dollar quote; an E opens an E''
 * literal only when it is a name of its own (not xE'\' or 5.E'\');
 * U&'...' is the name U, '&' and a plain literal, which ends as it does.
 * A literal, comment or quoted name that the text cuts runs to its end.
 */
static void
sql_token(const char *buf, int len, int i, bool doubled, bool nonstandard, SqlToken *t)
{
	unsigned char c = buf[i];
	int			d;

	t->body = t->body_end = i;
	if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
		((c == '-' || c == '/') && i + 1 < len && buf[i + 1] == (c == '-' ? '-' : '*')))
	{
		t->kind = SQL_SPACE;
		t->end = card_skip_sql_space(buf, len, i);
	}
	else if (c == '"')
	{
		t->kind = SQL_NAME;
		t->end = Min(quoted_end(buf, len, i, false) + 1, len);
	}
	else if (doubled && (c == '\'' || ((c == 'E' || c == 'e') && i + 1 < len && buf[i + 1] == '\'')))
	{
		/* ''...'', E''...'', or else a quote or two, or an E, alone */
		int			q = (c == '\'') ? i : i + 1;

		if (opens_doubled_literal(buf, len, q))
		{
			t->kind = SQL_LITERAL;
			t->body = q + 2;
			t->body_end = doubled_quoted_end(buf, len, q, q != i || nonstandard);
			t->end = Min(t->body_end + 2, len);
		}
		else
		{
			t->kind = (q == i) ? SQL_OTHER : SQL_NAME;
			t->end = (q == i && i + 1 < len && buf[i + 1] == '\'') ? i + 2 : i + 1;
		}
	}
	else if (c == '\'' || ((c == 'E' || c == 'e') && i + 1 < len && buf[i + 1] == '\''))
	{
		/* '...', or E'...': an E that starts a token is a name of its own */
		int			q = (c == '\'') ? i : i + 1;

		t->kind = SQL_LITERAL;
		t->body = q + 1;
		t->body_end = quoted_end(buf, len, q, q != i || nonstandard);
		t->end = Min(t->body_end + 1, len);
	}
	else if ((d = dollar_quote_len(buf, len, i)) > 0)
	{
		int			e = delimiter_again(buf, len, i, d, len);

		if (e < 0)
			e = len;			/* cut: the rest of the text */
		t->kind = SQL_LITERAL;
		t->body = i + d;
		t->body_end = e;
		t->end = Min(e + d, len);
	}
	else if (c == '$' && i + 1 < len && IS_DIGIT(buf[i + 1]))
	{
		t->kind = SQL_PARAM;
		for (t->end = i + 1; t->end < len && IS_DIGIT(buf[t->end]); t->end++)
			;
	}
	else if (IS_WORD(c) || c >= 0x80)
	{
		/*
		 * a name or keyword, or a number with its fraction and exponent
		 * (1.5e3) and what a name would take after it (2e$$: junk
		 * PostgreSQL refuses, not a dollar quote)
		 */
		t->kind = IS_DIGIT(c) ? SQL_NUMBER : SQL_NAME;
		for (t->end = i + 1; t->end < len; t->end++)
		{
			unsigned char n = buf[t->end];

			if (!(IS_WORD(n) || n == '$' || n >= 0x80 || (n == '.' && t->kind == SQL_NUMBER)))
				break;
		}
	}
	else
	{
		t->kind = SQL_OTHER;
		t->end = i + 1;
	}
}

/*
 * Mask the SQL literal starting at buf[i], as sql_token reads it ('...',
 * E'...', $$...$$, $tag$...$tag$; U&'...' too), or one quoting level
 * down (''...'', when opens_doubled_literal says so).  Returns the
 * position after it, or -1 when buf[i] starts none or it does not close
 * within limit characters: a key in prose must not eat the line.  A text
 * that ends first is masked to its end (a truncated statement).
 */
static int
mask_sql_literal(char *buf, int len, int i, int limit, bool *masked)
{
	int			stop = (limit < len - i) ? i + limit : len;
	int			q = i;			/* the opening quote */
	int			end = -1;
	SqlToken	t[2];
	bool		doubled;

	/* U&'...' ends as a plain literal does (sql_token reads U as a name) */
	if ((buf[i] == 'U' || buf[i] == 'u') && i + 2 < len && buf[i + 1] == '&' &&
		buf[i + 2] == '\'')
		i = q = i + 2;
	else if ((buf[i] == 'E' || buf[i] == 'e') && i + 1 < len && buf[i + 1] == '\'')
		q = i + 1;
	doubled = opens_doubled_literal(buf, len, q);

	/*
	 * Whether it closes before stop is known within limit characters past
	 * stop (a dollar quote's tag is shorter than that, or its body starts
	 * after stop): the text after them is not read.  Read with
	 * standard_conforming_strings on, and off when a backslash comes in
	 * it (up to there, the readings are one); both read before either
	 * masks, and what either reads as the literal is masked, up to the
	 * later end.
	 */
	sql_token(buf, Min(len, stop + limit), i, doubled, false, &t[0]);
	if (t[0].body_end > t[0].body && memchr(buf + t[0].body, '\\', t[0].body_end - t[0].body) != NULL)
		sql_token(buf, Min(len, stop + limit), i, doubled, true, &t[1]);
	else
		t[1] = t[0];
	for (int k = 0; k < 2; k++)
	{
		if (t[k].kind != SQL_LITERAL || (t[k].body_end >= stop && stop < len))
			continue;
		mask_span(buf, t[k].body, t[k].body_end, masked);
		end = Max(end, t[k].end);
	}
	return end;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The value of n hex digits at buf[p], or -1. */
static int
hex_digits(const char *buf, int len, int p, int n)
{
	int			v = 0;

	if (p + n > len)
		return -1;
	for (int k = 0; k < n; k++)
	{
		int			h = hex_value(buf[p + k]);

		if (h < 0)
			return -1;
		/* only ASCII matters: keep larger values from overflowing */
		v = Min(v * 16 + h, 0x10000);
	}
	return v;
}

/*
 * Read the character at buf[p] as the card input sees it once every
 * quoting is undone: a backslash escape stands for the character it
 * makes, be it JSON's (\t, \u0063), an E'' string's (\t, \x63, \143, \u0063)
 * or a U&'' string's (\0063, \+000063), behind any run of backslashes (a
 * level of quoting doubles them).  E'\143' and U&'\0143' look alike: alt
 * picks the octal reading.  Sets *c (-1 for no ASCII character) and
 * returns the position after it.
 */
static int
read_char(const char *buf, int len, int p, bool alt, int *c)
{
	int			q = p,
				v = -1,
				n = 0;

	*c = (unsigned char) buf[p];
	if (buf[p] != '\\')
		return p + 1;
	while (q < len && buf[q] == '\\')
		q++;
	if (q >= len)
		return q;
	switch (buf[q])
	{
		case 't':
			*c = '\t';
			return q + 1;
		case 'n':
			*c = '\n';
			return q + 1;
		case 'r':
			*c = '\r';
			return q + 1;
		case 'u':
			n = 4;
			break;
		case 'U':
			n = 8;
			break;
		case '+':
			n = 6;
			break;
		case 'x':
			n = (q + 2 < len && hex_value(buf[q + 2]) >= 0) ? 2 : 1;
			break;
	}
	if (n > 0 && (v = hex_digits(buf, len, q + 1, n)) >= 0)
	{
		*c = v < 0x80 ? v : -1;
		return q + 1 + n;
	}
	if (buf[q] >= '0' && buf[q] <= '7' && (alt || hex_digits(buf, len, q, 4) < 0))
	{
		v = 0;
		for (n = 0; n < 3 && q + n < len && buf[q + n] >= '0' && buf[q + n] <= '7'; n++)
			v = v * 8 + buf[q + n] - '0';
		*c = v < 0x80 ? v : -1;
		return q + n;
	}
	if ((v = hex_digits(buf, len, q, 4)) >= 0)
	{
		*c = v < 0x80 ? v : -1;
		return q + 4;
	}
	/* \" \' \/ \\ and the like: the character itself */
	*c = (unsigned char) buf[q];
	return q + 1;
}

/*
 * Whether the character at buf[p], in either reading, is one of set; if
 * so *next gets the position after it.
 */
static bool
read_one_of(const char *buf, int len, int p, const char *set, int *next)
{
	for (int alt = 0; alt < 2 && p < len; alt++)
	{
		int			c;
		int			e = read_char(buf, len, p, alt, &c);

		if (c > 0 && strchr(set, c) != NULL)
		{
			*next = e;
			return true;
		}
		if (buf[p] != '\\')
			break;
	}
	return false;
}

/* Skip JSON's blanks (space, tab, newline, carriage return), raw or escaped. */
static int
skip_blanks(const char *buf, int len, int p)
{
	while (read_one_of(buf, len, p, " \t\n\r", &p))
		;
	return p;
}

/*
 * The end of key (lower case) spelled at buf[p] in any case and with any
 * escapes read_char reads, or -1.  The key must end where a word does.
 */
static int
match_key(const char *buf, int len, int p, const char *key)
{
	for (int alt = 0; alt < 2 && p < len; alt++)
	{
		int			c;
		int			e = read_char(buf, len, p, alt, &c);

		if (*key == '\0')
		{
			if (!IS_WORD(c))
				return p;
		}
		else if (c > 0 && pg_tolower((unsigned char) c) == *key &&
				 (e = match_key(buf, len, e, key + 1)) >= 0)
			return e;
		if (buf[p] != '\\')
			break;
	}
	return (*key == '\0' && p >= len) ? p : -1;
}

/*
 * pg_tolower without a call for ASCII, which never depends on the locale
 * (a byte above 0x7f may, as it does for match_key).
 */
static inline int
key_lower(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c + ('a' - 'A');
	return (c < 0x80) ? c : pg_tolower(c);
}

/*
 * match_key, read a byte at a time while no backslash comes (a key is
 * seldom written with escapes): where a byte is its own character,
 * match_key's two readings are one and its recursion a loop.  From a
 * backslash on, match_key reads the rest.
 */
static int
match_key_fast(const char *buf, int len, int p, const char *key)
{
	for (; *key != '\0'; key++, p++)
	{
		if (p >= len)
			return -1;
		if (buf[p] == '\\')
			return match_key(buf, len, p, key);
		/* a NUL matches no key's letter */
		if (key_lower((unsigned char) buf[p]) != *key)
			return -1;
	}
	if (p < len && buf[p] == '\\')
		return match_key(buf, len, p, key);
	return (p < len && IS_WORD(buf[p])) ? -1 : p;
}

/*
 * Mask the value after a card key ending at buf[j]: its closing quote,
 * blanks, a separator (':', '=' or '=>'), blanks, then a quoted value or
 * digits.  Returns the position to go on from.
 */
static int
mask_value_after_key(char *buf, int len, int j, bool *masked)
{
	int			keyend = j,
				c,
				e;

	/* json-c ends a key at a NUL: "cvv\u0000x" reads as "cvv" */
	if (j < len && read_char(buf, len, j, false, &c) > j && c == 0)
		while (j < len && j - keyend < VALUE_MAX && buf[j] != '"' && buf[j] != '\'')
			j = read_char(buf, len, j, false, &c);
	(void) read_one_of(buf, len, j, "\"'", &j);
	j = skip_blanks(buf, len, j);
	if (!read_one_of(buf, len, j, ":", &j))
	{
		if (!read_one_of(buf, len, j, "=", &j))
			return keyend;
		(void) read_one_of(buf, len, j, ">", &j);
	}
	j = skip_blanks(buf, len, j);
	if (j >= len)
		return j;

	/* a JSON string with escaped quotes (\" in a quoted text) */
	if (buf[j] == '\\' && read_one_of(buf, len, j, "\"", &e))
	{
		e = mask_to_delimiter(buf, len, j, e - j, Min(len, j + VALUE_MAX), masked);
		return e >= 0 ? e : j;
	}
	if (buf[j] == '"')
	{
		e = quoted_end(buf, len, j, true);
		/* only short values: a key in prose must not eat the line */
		if (e - j < VALUE_MAX || e >= len)
			return mask_quoted(buf, len, j, true, masked);
		return j;
	}
	if ((e = mask_sql_literal(buf, len, j, VALUE_MAX, masked)) >= 0)
		return e;
	while (j < len && (IS_DIGIT(buf[j]) || ((buf[j] == ' ' || buf[j] == '-') &&
											j + 1 < len && IS_DIGIT(buf[j + 1]))))
	{
		if (IS_DIGIT(buf[j]))
		{
			buf[j] = CARD_REDACT_CHAR;
			*masked = true;
		}
		j++;
	}
	return j;
}

/*
 * What mask_key_values needs to know of a byte read as its own character:
 * whether it is a word character (a key must not continue a word), and
 * whether a card key may be spelled from it: a key's first letter in
 * either case, or a backslash (every escape begins with one).  Most words
 * are thus passed over without trying a key.
 */
#define BYTE_WORD		0x01
#define BYTE_KEY_START	0x02

static uint8 byte_class[256];
static bool byte_class_filled = false;

static void
fill_byte_class(void)
{
	for (int c = 0; c < 256; c++)
		if (IS_WORD(c))
			byte_class[c] |= BYTE_WORD;
	for (int k = 0; card_keys[k] != NULL; k++)
	{
		byte_class[(unsigned char) card_keys[k][0]] |= BYTE_KEY_START;
		byte_class[(unsigned char) pg_toupper((unsigned char) card_keys[k][0])] |= BYTE_KEY_START;
	}
	byte_class['\\'] |= BYTE_KEY_START;
	byte_class_filled = true;
}

/*
 * Mask the values after card keys.  The text is read a character at a
 * time as read_char reads it, so that a key right after an escape
 * ("\ncvv", "\x22cvv") starts a word.
 */
static bool
mask_key_values(char *buf, int len)
{
	bool		masked = false;
	bool		in_word = false;	/* the character before buf[i] is a word's */
	int			i = 0;

	if (unlikely(!byte_class_filled))
		fill_byte_class();

	while (i < len)
	{
		uint8		cls = byte_class[(unsigned char) buf[i]];
		int			c;
		int			next;
		int			keyend = -1;

		/* most bytes: their own character, and no key starts there */
		if (buf[i] != '\\' && (in_word || !(cls & BYTE_KEY_START)))
		{
			in_word = (cls & BYTE_WORD) != 0;
			i++;
			continue;
		}
		next = read_char(buf, len, i, false, &c);
		if (!in_word)
		{
			/* a key spelled without escapes starts with its own letter */
			int			first = (buf[i] == '\\') ? 0 : key_lower((unsigned char) buf[i]);

			for (int k = 0; card_keys[k] != NULL; k++)
			{
				int			e;

				if (first != 0 && card_keys[k][0] != first)
					continue;
				e = match_key_fast(buf, len, i, card_keys[k]);
				if (e > keyend)
					keyend = e;
			}
		}
		if (keyend >= 0)
		{
			i = Max(mask_value_after_key(buf, len, keyend, &masked), keyend);
			in_word = false;
			continue;
		}
		in_word = IS_WORD(c);
		i = next;
	}
	return masked;
}

/*
 * Whether the word pay_card, in any case, starts at buf[i] (8 bytes on):
 * ASCII lowered by setting 0x20, which turns only a letter into one of
 * these letters; the '_' as it is (0x7f would pass).
 */
static inline bool
pay_card_at(const char *buf)
{
	return (buf[0] | 0x20) == 'p' && (buf[1] | 0x20) == 'a' && (buf[2] | 0x20) == 'y' &&
		buf[3] == '_' && (buf[4] | 0x20) == 'c' && (buf[5] | 0x20) == 'a' &&
		(buf[6] | 0x20) == 'r' && (buf[7] | 0x20) == 'd';
}

/*
 * The position of the next word pay_card (in any case, that no word
 * character precedes) at or after i, or len.
 */
static pg_attribute_always_inline int
next_pay_card_word(const char *buf, int len, int i)
{
	for (; (i = card_next_letter(buf, len, i, 'p')) + 8 < len; i++)
		if (pay_card_at(buf + i) && (i == 0 || !IS_WORD(buf[i - 1])))
			return i;
	return len;
}

/* The position of the first '' at or after i, or len. */
static int
next_quote_pair(const char *buf, int len, int i)
{
	const char *q;

	while (i + 1 < len && (q = memchr(buf + i, '\'', len - i - 1)) != NULL)
	{
		i = q - buf;
		if (buf[i + 1] == '\'')
			return i;
		i += 2;
	}
	return len;
}

/*
 * Mask in buf the contents of the literals of the call whose '(' is at
 * src[j], read at one quoting level (doubled: one level down, see
 * sql_token; nonstandard: with standard_conforming_strings off) up to the
 * ')' that closes it or the end of the text, or until *budget, which pays
 * for every character read, runs out.
 */
static pg_attribute_always_inline bool
mask_call_literals(char *buf, const char *src, int len, int j, bool doubled, bool nonstandard,
				   int64 *budget)
{
	bool		masked = false;
	int			depth = 0;

	while (j < len && *budget >= 0)
	{
		SqlToken	t;

		sql_token(src, len, j, doubled, nonstandard, &t);
		*budget -= t.end - j;
		if (t.kind == SQL_OTHER && src[j] == '(')
			depth++;
		else if (t.kind == SQL_OTHER && src[j] == ')' && --depth == 0)
			break;
		else if (t.kind == SQL_LITERAL)
			mask_span(buf, t.body, t.body_end, &masked);
		j = t.end;
	}
	return masked;
}

/*
 * Mask the literals inside pay_card( ... ): their contents, whole (the
 * number, the security code and the holder name given positionally).  The
 * call is read as sql_token reads SQL, so a quote or a parenthesis in a
 * comment or a quoted name inside it changes nothing.  Every pay_card
 * followed by '(' (maybe after a quote, blanks and comments) is a call of
 * its own, read from its '(' as the text came, wherever it stands: also in
 * a comment, a quoted name or a literal of an earlier call, where the text
 * may be read otherwise (a context line quoting "... 'pay_card(\"' ..."
 * before a statement that calls pay_card: read from the first, the second
 * is inside a quoted name).
 *
 * A text may hold the call one quoting level down, inside a literal
 * ('SELECT pay_card(''4111...'', 12, 2031, '' 123'')', EXECUTE's
 * argument): where a '' comes after its '(', the call is read a second
 * time so (sql_token's doubled reading), and the literals of both readings
 * are masked.  That reading takes a '' for the opening quote of a literal
 * when a value follows it, past blanks: not a quote, ',', ')', ';', ':',
 * '|' or the end of the text, which would make it an empty literal of the
 * text itself (pay_card(n, 12, 2031, '')); a literal one level down that
 * starts so (''; 123'') is not read as one, and neither is one two levels
 * down (''''123'''': its number is still a digit run).  A text that is no
 * quoted one may lose some more characters so: pay_card(n, '' AS x ...).
 *
 * Where a backslash comes after its '(', the call is read (each way) with
 * standard_conforming_strings on and off (see sql_token), and the literals
 * of every reading are masked: a '\'' before the code ends a literal in
 * one and not in the other.
 *
 * The readings cost at most 4 times the text's length and 1 kB (8 times
 * when a backslash comes after the first call): past that (a hostile
 * text, calls inside calls) every digit from the call on is masked
 * instead.
 */
static pg_noinline bool
mask_pay_card_calls_from(char *buf, int len, int first)
{
	bool		masked = false;
	const char *src = buf;		/* the text as it came, to read the calls */
	char	   *copy = NULL;
	int64		budget;
	int			next,
				pair = len,		/* the first '' at or after pair_from */
				pair_from = len + 1,
				backslash = len;	/* the last backslash, or -1 */

	while (--backslash >= first && buf[backslash] != '\\')
		;
	budget = (backslash > first ? 8 : 4) * (int64) len + 1024;
	for (int i = first; i < len; i = next)
	{
		int			j = i + 8;

		next = next_pay_card_word(src, len, i + 8);
		if (j < len && src[j] == '"')
			j++;
		j = card_skip_sql_space(src, len, j);
		budget -= j - i;
		if (j < len && src[j] == '(')
		{
			/* read with standard_conforming_strings off too */
			bool		both = j < backslash;

			if (j < pair_from || j > pair)
			{
				pair = next_quote_pair(src, len, j);
				pair_from = j;
				budget -= pair - j;
			}

			/*
			 * A second reading, and a later call, read the text as it came,
			 * not as the first reading masked it (no copy was needed before:
			 * nothing was read)
			 */
			if ((next < len || pair < len || both) && copy == NULL)
			{
				copy = palloc(len);
				memcpy(copy, buf, len);
				src = copy;
			}
			masked |= mask_call_literals(buf, src, len, j, false, false, &budget);
			if (both)
				masked |= mask_call_literals(buf, src, len, j, false, true, &budget);
			if (pair < len)
			{
				masked |= mask_call_literals(buf, src, len, j, true, false, &budget);
				if (both)
					masked |= mask_call_literals(buf, src, len, j, true, true, &budget);
			}
		}
		if (budget < 0)
		{
			masked |= card_redact_excerpt(buf + i, len - i);
			break;
		}
	}
	if (copy != NULL)
		pfree(copy);
	return masked;
}

/* The above, for a text where the word pay_card comes (most do not). */
static inline bool
mask_pay_card_calls(char *buf, int len)
{
	int			first = next_pay_card_word(buf, len, 0);

	return first < len && mask_pay_card_calls_from(buf, len, first);
}

/*
 * Mask the bytes of every constant in a node dump (debug_print_parse,
 * debug_print_rewritten, debug_print_plan: any role may set them).  A
 * constant's value is written as its bytes in decimal, ":constvalue 7 [ 28
 * 0 0 0 55 51 57 ]", and the dump is wrapped anywhere: a security code or
 * a card number cut by a line break is no digit run and no literal.
 */
static bool
mask_node_constants(char *buf, int len)
{
	static const char key[] = ":constvalue ";
	const int	keylen = sizeof(key) - 1;
	bool		masked = false;
	int			i = 0;

	while (i + keylen <= len)
	{
		const char *colon = memchr(buf + i, ':', len - i);
		int			q;

		if (colon == NULL)
			break;
		i = colon - buf;
		if (i + keylen > len || memcmp(buf + i, key, keylen) != 0)
		{
			i++;
			continue;
		}
		q = i + keylen;
		while (q < len && IS_DIGIT(buf[q]))
			q++;
		/* "[ b0 b1 ... ]", across line breaks; "<>" is a NULL */
		while (q < len && (buf[q] == ' ' || buf[q] == '\n' || buf[q] == '\t'))
			q++;
		if (q < len && buf[q] == '[')
		{
			for (q++; q < len && buf[q] != ']'; q++)
			{
				if (IS_DIGIT(buf[q]) || buf[q] == '-')
				{
					buf[q] = CARD_REDACT_CHAR;
					masked = true;
				}
			}
		}
		i = q;
	}
	return masked;
}

/*
 * Mask card data in buf[0..len) in place.  Returns whether anything was
 * masked.
 */
bool
card_redact(char *buf, int len)
{
	bool		masked = false;

	/*
	 * pay_card(...) first: a token the credential masking takes whole
	 * ("Bearer x.pay_card") must not hide the call after it
	 */
	masked |= mask_pay_card_calls(buf, len);
	masked |= secret_redact(buf, len);
	masked |= mask_key_values(buf, len);
	masked |= mask_digit_runs(buf, len);
	masked |= mask_node_constants(buf, len);
	return masked;
}

/*
 * Mask every value of a bind parameter list as PostgreSQL logs it
 * ("parameters: $1 = '...', $2 = '...'"): called when the statement or
 * one of its parameters holds card data, since a security code bound next
 * to a card number is just a short number.
 */
bool
card_redact_params(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i + 1 < len; i++)
	{
		int			j;

		if (buf[i] != '$' || !IS_DIGIT(buf[i + 1]))
			continue;
		j = i + 1;
		while (j < len && IS_DIGIT(buf[j]))
			j++;
		if (j + 3 < len && buf[j] == ' ' && buf[j + 1] == '=' && buf[j + 2] == ' ' && buf[j + 3] == '\'')
			i = mask_quoted(buf, len, j + 3, false, &masked) - 1;
	}
	return masked;
}

/*
 * Whether a bind parameter list has a value cut by log_parameter_max_length
 * or log_parameter_max_length_on_error (any role may set the latter) that
 * shows only a number ("$1 = '45320151128...'"): what it was cannot be
 * told (a card number cut to 11 digits is no digit run of card length),
 * so the list is masked as a whole, the security code beside it too.
 */
bool
card_params_cut_number(const char *buf, int len)
{
	for (int i = 0; i + 1 < len; i++)
	{
		int			j,
					e,
					ndigits = 0;

		if (buf[i] != '$' || !IS_DIGIT(buf[i + 1]))
			continue;
		for (j = i + 1; j < len && IS_DIGIT(buf[j]); j++)
			;
		if (j + 3 >= len || strncmp(buf + j, " = '", 4) != 0)
			continue;
		e = quoted_end(buf, len, j + 3, false);
		if (e >= len || e - (j + 4) < 3 || strncmp(buf + e - 3, "...", 3) != 0)
			continue;
		for (int k = j + 4; k < e - 3; k++)
		{
			if (IS_DIGIT(buf[k]))
				ndigits++;
			else if (buf[k] != ' ' && buf[k] != '-')
			{
				ndigits = -1;
				break;
			}
		}
		if (ndigits > 0)
			return true;
		i = e;
	}
	return false;
}

/*
 * Mask every digit of an excerpt of input an error echoes: a JSON input
 * error's ("JSON data, line 1: ..." and "Token \"...\" is invalid."),
 * which may hold a card number cut anywhere, and a failed COPY's input
 * line that holds one (the security code beside it is a short number).
 */
bool
card_redact_excerpt(char *buf, int len)
{
	bool		masked = false;

	for (int i = 0; i < len; i++)
	{
		if (IS_DIGIT(buf[i]))
		{
			buf[i] = CARD_REDACT_CHAR;
			masked = true;
		}
	}
	return masked;
}

/*
 * Mask every digit of a statement's text that holds card data, except in
 * names (t1, "col 2") and parameter numbers ($1): its literals however
 * spelled (471::text, '4' || '71', E'\\064'), in which a security code
 * written next to the card number is just a short number, and its
 * comments.  A comment is skipped as a whole: a quote in it ("-- the
 * customer's card") opens no literal, which would turn the literals
 * after it inside out ('{"4111...","471"}' read as a quoted name).  A
 * text with a backslash is read with standard_conforming_strings on and
 * off (sql_token), and what either reading takes for a literal, a number
 * or a comment loses its digits.
 */
static bool
redact_statement_reading(char *buf, const char *src, int len, bool nonstandard)
{
	bool		masked = false;
	int			i = 0;

	while (i < len)
	{
		SqlToken	t;

		sql_token(src, len, i, false, nonstandard, &t);
		/* literals, numbers, comments: every digit, whatever precedes it */
		if (t.kind == SQL_LITERAL || t.kind == SQL_NUMBER || t.kind == SQL_SPACE)
			masked |= card_redact_excerpt(buf + i, t.end - i);
		i = t.end;
	}
	return masked;
}

bool
card_redact_statement(char *buf, int len)
{
	bool		masked;
	char	   *copy = NULL;

	/* a text with a backslash, read with standard_conforming_strings off too */
	if (len > 0 && memchr(buf, '\\', len) != NULL)
	{
		copy = palloc(len);
		memcpy(copy, buf, len);
	}
	masked = redact_statement_reading(buf, buf, len, false);
	if (copy != NULL)
	{
		masked |= redact_statement_reading(buf, copy, len, true);
		pfree(copy);
	}
	return masked;
}

/*
 * Mask the digits of every quoted literal ('...') in buf[0..len), whatever
 * it holds; quoted names ("...") keep theirs, unless names is false (the
 * contents of a JSON string, whose double quotes are escaped).
 */
static bool
mask_literal_digits(char *buf, int len, bool names)
{
	bool		masked = false;
	int			i = 0;

	while (i < len)
	{
		if (buf[i] == '"' && names)
			i = quoted_end(buf, len, i, false) + 1;
		else if (buf[i] == '\'')
		{
			int			e = quoted_end(buf, len, i, false);

			masked |= card_redact_excerpt(buf + i + 1, Min(e, len) - i - 1);
			i = e + 1;
		}
		else
			i++;
	}
	return masked;
}

/*
 * Mask the contents of every JSON string in buf[0..len) (a value of a plan
 * in the json or yaml format, which quote strings so): as a statement when
 * statement is true (an item of an Output list), else the digits of its
 * quoted literals.
 */
static bool
mask_json_strings(char *buf, int len, bool statement)
{
	bool		masked = false;
	int			i = 0;

	while (i < len)
	{
		int			e;

		if (buf[i] != '"')
		{
			i++;
			continue;
		}
		for (e = i + 1; e < len && buf[e] != '"'; e++)
		{
			if (buf[e] == '\\')
				e++;
		}
		e = Min(e, len);
		if (statement)
			masked |= card_redact_statement(buf + i + 1, e - i - 1);
		else
			masked |= mask_literal_digits(buf + i + 1, e - i - 1, false);
		i = e + 1;
	}
	return masked;
}

/*
 * Mask the constants of a plan that auto_explain logs for a statement that
 * holds card data (its "Output:" lists and conditions deparse them:
 * "Output: buy('XXXX'::text, '484'::text)", the security code a short
 * literal; a custom plan of a prepared statement shows its parameters so).
 * The digits of every quoted literal are masked, and every number of an
 * Output list and of the query text (as the statement is masked: a
 * format's escapes keep it from being found as it was sent); the costs,
 * row counts and times keep theirs.  In the text and xml formats a line is
 * "Output: ..." or "<Item>...</Item>" and quotes literals as SQL does; the
 * json and yaml formats put every string in double quotes ("Output":
 * ["..."], and yaml's "Output: " followed by lines "- \"...\"").
 */
bool
card_redact_plan(char *buf, int len)
{
	bool		masked = false;
	bool		output_list = false;
	bool		query_text = false;
	bool		output_items = false;
	int			i = 0;

	while (i < len)
	{
		char	   *nl = memchr(buf + i, '\n', len - i);
		int			end = nl != NULL ? (int) (nl - buf) : len;
		int			k = i;
		int			n;
		const char *value;

		while (k < end && (buf[k] == ' ' || buf[k] == '\t'))
			k++;
		n = end - k;
		if (n > 8 && strncmp(buf + k, "Output: ", 8) == 0)
			masked |= card_redact_statement(buf + k + 8, n - 8);
		else if (n > 0 && buf[k] == '"')
		{
			/* json: "Key": value, the key's string first */
			int			v = k + 1;

			while (v < end && buf[v] != '"')
				v += (buf[v] == '\\') ? 2 : 1;
			v = Min(v + 1, end);
			masked |= mask_json_strings(buf + v, end - v,
										(n > 11 && strncmp(buf + k, "\"Output\": [", 11) == 0) ||
										(n > 14 && strncmp(buf + k, "\"Query Text\": ", 14) == 0));
		}
		else if (n > 2 && strncmp(buf + k, "- \"", 3) == 0)
		{
			/* yaml: an item of a list */
			masked |= mask_json_strings(buf + k + 2, n - 2, output_list);
			i = end + 1;
			continue;
		}
		else if (n > 0 && buf[end - 1] == '"' &&
				 (value = memchr(buf + k, ':', n)) != NULL && value + 2 < buf + end &&
				 value[1] == ' ' && value[2] == '"')
		{
			/* yaml: Key: "..." */
			masked |= mask_json_strings((char *) value + 2, buf + end - value - 2,
										n > 12 && strncmp(buf + k, "Query Text: ", 12) == 0);
		}
		else if (n == 8 && strncmp(buf + k, "<Output>", 8) == 0)
			output_items = true;	/* xml: its <Item>s follow */
		else if (n == 9 && strncmp(buf + k, "</Output>", 9) == 0)
			output_items = false;
		else if (output_items)
			masked |= card_redact_statement(buf + k, n);
		else if (query_text || (n >= 12 && strncmp(buf + k, "<Query-Text>", 12) == 0))
		{
			/* xml: the query text, on the lines up to its closing tag */
			masked |= card_redact_statement(buf + k, n);
			query_text = !(n >= 13 && strncmp(buf + end - 13, "</Query-Text>", 13) == 0);
		}
		else
			masked |= mask_literal_digits(buf + i, end - i, true);
		/* yaml: "Output: " alone on its line, its items on the next ones */
		output_list = (n == 7 || n == 8) && strncmp(buf + k, "Output:", 7) == 0;
		i = end + 1;
	}
	return masked;
}

/* A masked palloc'd copy of str, or NULL when it holds nothing to mask. */
char *
card_redacted_copy(const char *str)
{
	int			len = strlen(str);
	char	   *copy = pnstrdup(str, len);

	if (card_redact(copy, len))
		return copy;
	pfree(copy);
	return NULL;
}
