/*-------------------------------------------------------------------------
 *
 * schema_version.h
 *	  Which versions of the extension's SQL schema this library serves.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_SCHEMA_VERSION_H
#define PAYMENTS_SCHEMA_VERSION_H

typedef enum SchemaState
{
	SCHEMA_ABSENT,				/* no CREATE EXTENSION payments here */
	SCHEMA_SERVED,				/* a version this library serves */
	SCHEMA_NOT_SERVED			/* older or unknown: ALTER EXTENSION UPDATE */
} SchemaState;

/*
 * The state of this database's schema; *version (palloc'd, may be NULL)
 * gets its version when installed.  Needs a transaction.
 */
extern SchemaState payments_schema_state(char **version);

/*
 * For SQL-callable functions that work with the schema's tables and the
 * worker: error out (PT503, with a hint) unless the library is preloaded
 * and serves this database's schema version.
 */
extern void payments_require_schema(void);

#endif
