/*-------------------------------------------------------------------------
 *
 * pg_error_shim.c
 *	  ereport for the fuzz build (see pg_error_shim.h).  The definitions
 *	  follow the prototypes of PostgreSQL's utils/elog.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "pg_error_shim.h"

PgShimError pg_shim_error;
sigjmp_buf *pg_shim_catch = NULL;

bool
errstart(int elevel, const char *domain)
{
	(void) domain;
	if (elevel < ERROR)
		return false;			/* notices and logs: nothing to check */
	memset(&pg_shim_error, 0, sizeof(pg_shim_error));
	pg_shim_error.elevel = elevel;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	if (pg_shim_error.sqlerrcode == 0 || pg_shim_error.message[0] == '\0')
	{
		fprintf(stderr, "%s:%d (%s): ereport without errcode or errmsg\n",
				filename, lineno, funcname);
		abort();
	}
	if (pg_shim_catch == NULL)
	{
		fprintf(stderr, "%s:%d (%s): ereport(ERROR) outside PG_SHIM_TRY: %s\n",
				filename, lineno, funcname, pg_shim_error.message);
		abort();
	}
	siglongjmp(*pg_shim_catch, 1);
}

int
errcode(int sqlerrcode)
{
	pg_shim_error.sqlerrcode = sqlerrcode;
	return 0;
}

#define FORMAT_INTO(field, fmt) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf(pg_shim_error.field, sizeof(pg_shim_error.field), fmt, ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FORMAT_INTO(message, fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_INTO(detail, fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_INTO(hint, fmt);
	return 0;
}

int
errhidestmt(bool hide_stmt)
{
	pg_shim_error.hide_stmt = hide_stmt;
	return 0;
}

int
errhidecontext(bool hide_ctx)
{
	pg_shim_error.hide_context = hide_ctx;
	return 0;
}

/*
 * card_redact.c allocates (card_redacted_copy, a copy of a text that calls
 * pay_card more than once): malloc stands in for palloc
 */
void *
palloc(Size size)
{
	void	   *out = malloc(size ? size : 1);

	if (out == NULL)
		abort();
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = malloc(len + 1);
	if (out == NULL)
		abort();
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

void
pfree(void *pointer)
{
	free(pointer);
}
