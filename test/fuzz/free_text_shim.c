/*-------------------------------------------------------------------------
 *
 * free_text_shim.c
 *	  The backend functions src/free_text.c links against, for the fuzz
 *	  build (fuzz_free_text.c), which has no server.
 *
 * pg_mbstrlen_with_len is mbutils.c's, for a UTF-8 database (what the
 * suite's clusters use): characters counted by their first byte, as
 * pg_mblen does, up to the limit or a NUL.  The rest serve only
 * free_text.c's SQL-callable functions and free_text_check_object (jsonb,
 * text, numeric, psprintf), which the target does not call: they abort.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

int
pg_mbstrlen_with_len(const char *mbstr, int limit)
{
	int			len = 0;

	while (limit > 0 && *mbstr)
	{
		int			l = pg_encoding_mblen(PG_UTF8, mbstr);

		limit -= l;
		mbstr += l;
		len++;
	}
	return len;
}

#define NOT_IN_FUZZ_BUILD(name) \
	do { \
		fprintf(stderr, "%s called in the fuzz build\n", name); \
		abort(); \
	} while (0)

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	(void) func;
	(void) collation;
	(void) arg1;
	NOT_IN_FUZZ_BUILD("DirectFunctionCall1Coll");
}

JsonbIterator *
JsonbIteratorInit(JsonbContainer *container)
{
	(void) container;
	NOT_IN_FUZZ_BUILD("JsonbIteratorInit");
}

JsonbIteratorToken
JsonbIteratorNext(JsonbIterator **it, JsonbValue *val, bool skipNested)
{
	(void) it;
	(void) val;
	(void) skipNested;
	NOT_IN_FUZZ_BUILD("JsonbIteratorNext");
}

text *
cstring_to_text_with_len(const char *s, int len)
{
	(void) s;
	(void) len;
	NOT_IN_FUZZ_BUILD("cstring_to_text_with_len");
}

char *
text_to_cstring(const text *t)
{
	(void) t;
	NOT_IN_FUZZ_BUILD("text_to_cstring");
}

Datum
numeric_out(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	NOT_IN_FUZZ_BUILD("numeric_out");
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	(void) datum;
	NOT_IN_FUZZ_BUILD("pg_detoast_datum");
}

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	(void) datum;
	NOT_IN_FUZZ_BUILD("pg_detoast_datum_packed");
}

char *
psprintf(const char *fmt,...)
{
	(void) fmt;
	NOT_IN_FUZZ_BUILD("psprintf");
}
