/*-------------------------------------------------------------------------
 *
 * codes.c
 *		Lookups in the generated response code table.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "codes.h"

/* Find a code's row; linear, the table is small and lookups are rare */
static const CodeText *
find_code(const char *code)
{
	for (const CodeText *c = code_texts; c->code != NULL; c++)
		if (strcmp(c->code, code) == 0)
			return c;
	return NULL;
}

/* Text of an I/E message code or a numeric reason code */
const char *
code_text(const char *code)
{
	const CodeText *c = find_code(code);

	if (c == NULL || c->text == NULL)
		return "An error occurred during processing. Please try again.";
	return c->text;
}

/* Text of a transaction reason code */
const char *
reason_text(int reason)
{
	char		buf[16];

	snprintf(buf, sizeof(buf), "%d", reason);
	return code_text(buf);
}

/* Response-code class (1-4) a reason code is returned with; 3 if unknown */
int
reason_class(int reason)
{
	char		buf[16];
	const CodeText *c;

	snprintf(buf, sizeof(buf), "%d", reason);
	c = find_code(buf);
	if (c == NULL || c->klass < 1 || c->klass > 4)
		return 3;
	return c->klass;
}
