/*-------------------------------------------------------------------------
 *
 * direct_insert.h
 *	  Rows the extension writes itself (audit rows, events) inserted with
 *	  the table and index APIs, without an executor per row
 *	  (src/direct_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_DIRECT_INSERT_H
#define PAYMENTS_DIRECT_INSERT_H

#include "access/heapam.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/execnodes.h"

/*
 * One table written directly: the columns its writer fills (the others
 * get their defaults, as in an INSERT that names only those), and what was
 * built for the table, kept across rows, statements and transactions.
 * Callers keep one in static memory, zeroed but for the first three fields.
 */
typedef struct DirectTable
{
	const char *label;			/* identifies its memory context */
	int			ncolumns;
	const char *const *columns; /* names of the columns filled, in order */
	const Oid  *types;			/* and their (base) types */

	/* built by direct_table_get; cxt NULL: nothing built */
	MemoryContext cxt;
	bool		valid;			/* false after an invalidation */
	bool		direct;			/* false: the caller uses SPI */
	bool		open;			/* relation and indexes opened in this xact */
	bool		same_layout;	/* the table's columns are exactly these */
	Oid			relid;
	Relation	rel;			/* pointers of the relcache entries, only */
	int			nindexes;		/* compared with what opening returns */
	Oid		   *index_oids;
	Relation   *index_rels;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;		/* virtual, over a copy of the descriptor */
	TupleTableSlot **slots;		/* for table_multi_insert */
	int			nslots;			/* made so far (up to DIRECT_INSERT_SLOTS) */
	MemoryContext tuple_cxt;	/* the slots' tuples, emptied after a batch */
	BulkInsertState bistate;	/* from the first large batch to closing */
	AttrNumber *attnums;		/* of each column filled */
	int			ndefaults;		/* the other columns with a default */
	AttrNumber *default_attnums;
	ExprState **defaults;
	struct DirectTable *next;	/* every table built, for closing */
} DirectTable;

#define DIRECT_INSERT_SLOTS 128 /* rows per direct_table_insert_many */
#define DIRECT_BULK_ROWS	64	/* a batch this large writes as COPY does */
#define DIRECT_TUPLES_KEEP	(256 * 1024)	/* a batch's copies of modest rows */

extern void direct_insert_enable(void);
extern DirectTable *direct_table_get(DirectTable *t, Oid relid);
extern bool direct_table_writable(DirectTable *t);
extern void direct_table_insert(DirectTable *t, const Datum *values, const bool *nulls);
extern void direct_table_insert_many(DirectTable *t, HeapTuple *tuples, TupleDesc desc, int n);
extern void direct_tables_close(void);
extern void direct_tables_forget(void);

#endif							/* PAYMENTS_DIRECT_INSERT_H */
