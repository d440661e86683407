/*-------------------------------------------------------------------------
 *
 * cached_table.h
 *	  The extension's tables that backends keep in memory: finding them, and
 *	  hearing when they change (src/cached_table.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CACHED_TABLE_H
#define PAYMENTS_CACHED_TABLE_H

#include "utils/inval.h"

extern Oid	cached_schema_oid(void);
extern Oid	cached_table_relid(const char *relname);
extern Oid	cached_table_watch(const char *relname, RelcacheCallbackFunction callback,
							   bool *registered);

#endif
