/*-------------------------------------------------------------------------
 *
 * pg_error_shim.h
 *	  The fuzz build's stand-in for PostgreSQL's error reporting, so that
 *	  product files that report errors with ereport (card_brand.c,
 *	  currency.c) can be fuzzed as they are, without a server.
 *
 * Only the fuzz targets link it.  ereport(ERROR) ends in errfinish(),
 * which here longjmps back to the pg_error_catch() of the fuzz target,
 * as PostgreSQL's own errfinish longjmps to the nearest PG_TRY.  The
 * error's parts are kept (formatted) so a target can check them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_PG_ERROR_SHIM_H
#define PAYMENTS_PG_ERROR_SHIM_H

#include <setjmp.h>
#include <stdbool.h>

typedef struct PgShimError
{
	int			elevel;
	int			sqlerrcode;
	char		message[1024];
	char		detail[1024];
	char		hint[1024];
	bool		hide_stmt;
	bool		hide_context;
} PgShimError;

/* The last error raised (valid after pg_error_catch returned true). */
extern PgShimError pg_shim_error;

/* Where errfinish(ERROR) jumps; NULL = no catcher, abort. */
extern sigjmp_buf *pg_shim_catch;

/*
 * Run stmt; true if it raised an ERROR (then pg_shim_error holds it).
 * A macro, because the setjmp must be in the caller's frame.
 */
#define PG_SHIM_TRY(stmt, raised) \
	do { \
		sigjmp_buf	pg_shim_jb_; \
		sigjmp_buf *pg_shim_saved_ = pg_shim_catch; \
		(raised) = false; \
		if (sigsetjmp(pg_shim_jb_, 0) == 0) \
		{ \
			pg_shim_catch = &pg_shim_jb_; \
			stmt; \
		} \
		else \
			(raised) = true; \
		pg_shim_catch = pg_shim_saved_; \
	} while (0)

#endif
