/*-------------------------------------------------------------------------
 *
 * direct_insert.c
 *	  Rows the extension writes itself, inserted with the table AM and
 *	  index APIs the way the executor's INSERT does it, without an executor
 *	  (and an SPI call) per row: the audit rows (audit.c) and the events of
 *	  status changes (status_guard.c), several per payment on both sides of
 *	  the outbox.
 *
 * Per table, a ResultRelInfo with its indexes and its CHECK constraints
 * compiled once, kept across rows, statements and transactions in the
 * table's own memory context, and thrown away when a relcache
 * invalidation touches the table or one of its indexes.  Per row:
 * ExecConstraints (NOT NULL and every CHECK constraint of the table, as
 * the executor checks them), the defaults of the columns the writer does
 * not fill (an identity's next value, now()), and ExecInsertIndexTuples
 * (every index, the primary key's uniqueness); per batch of rows,
 * table_multi_insert (TOAST, WAL, statistics; table_tuple_insert for a
 * single row).
 *
 * A transaction that writes large batches (a bulk statement's audit rows)
 * gets a bulk-insert state, as COPY does: the page being filled stays
 * pinned between batches, and new pages come from a small ring of buffers
 * this backend reuses, instead of a fresh shared buffer each (the first
 * touch of every one of them a page fault for this process, and its
 * zeroing; a fifth of a bulk UPDATE's audit cost), and a bulk write does
 * not push the rest of shared buffers out.  Outside subtransactions only;
 * its pins belong to the top transaction's resource owner, like the
 * relation references, and it is released where they are closed.
 *
 * The relation and its indexes are opened (locked, RowExclusiveLock, as an
 * INSERT does) at the first row of a transaction, their references owned
 * by the top transaction's resource owner so that subtransactions neither
 * leak nor drop them, and closed before commit or prepare, and before any
 * utility statement (ALTER TABLE, DROP, TRUNCATE ... refuse a table this
 * session holds open): audit.c's hooks call direct_tables_close() then,
 * and direct_insert_enable() says they are installed.  An abort releases
 * them with the resource owner.
 *
 * The direct path is taken only when it writes exactly what an INSERT
 * would: a plain table with no INSERT trigger, no rule and no generated
 * column, whose columns the writer fills have the types it fills them
 * with.  Otherwise, and when the library was not preloaded (no hooks),
 * direct_table_get returns NULL and the caller inserts through SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "direct_insert.h"

static bool enabled = false;
static bool callback_registered = false;
static DirectTable *tables = NULL;	/* every table built */

/* The hooks that close the tables before commit and utility statements are in. */
void
direct_insert_enable(void)
{
	enabled = true;
}

/* A relcache invalidation: whatever was built on that relation goes. */
static void
direct_insert_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	for (DirectTable *t = tables; t != NULL; t = t->next)
	{
		if (t->cxt == NULL || !t->valid)
			continue;
		if (!OidIsValid(relid) || relid == t->relid)
		{
			t->valid = false;
			continue;
		}
		for (int i = 0; i < t->nindexes; i++)
			if (t->index_oids[i] == relid)
				t->valid = false;
	}
}

/* Drop the references opened for this transaction (not the locks). */
static void
table_close_refs(DirectTable *t)
{
	ResourceOwner save = CurrentResourceOwner;

	if (!t->open)
		return;
	t->open = false;
	CurrentResourceOwner = TopTransactionResourceOwner;
	if (t->bistate != NULL)
		FreeBulkInsertState(t->bistate);
	t->bistate = NULL;
	for (int i = 0; i < t->nindexes; i++)
		index_close(t->index_rels[i], NoLock);
	table_close(t->rel, NoLock);
	CurrentResourceOwner = save;
}

/* Before commit, prepare and utility statements: nothing held open. */
void
direct_tables_close(void)
{
	for (DirectTable *t = tables; t != NULL; t = t->next)
		table_close_refs(t);
}

/* After commit or abort: the resource owner released the references. */
void
direct_tables_forget(void)
{
	for (DirectTable *t = tables; t != NULL; t = t->next)
	{
		t->open = false;
		t->bistate = NULL;		/* in the transaction's memory */
	}
}

/*
 * Build the table's writer from rel, which the caller has open (its
 * reference and lock owned by the top transaction's resource owner):
 * decide whether the direct path applies; if so open its indexes too.
 */
static void
table_build(DirectTable *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;
	ResourceOwner save = CurrentResourceOwner;
	bool	   *filled;
	int			i,
				j;

	if (t->cxt != NULL)
		MemoryContextDelete(t->cxt);
	else
	{
		t->next = tables;
		tables = t;
	}
	t->cxt = AllocSetContextCreate(TopMemoryContext, "payments direct insert",
								   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(t->cxt, t->label);
	t->relid = RelationGetRelid(rel);
	t->rel = rel;
	t->valid = true;
	t->open = false;
	t->nindexes = 0;
	t->slots = NULL;
	t->nslots = 0;
	t->ndefaults = 0;

	old = MemoryContextSwitchTo(t->cxt);
	t->attnums = palloc0(sizeof(AttrNumber) * t->ncolumns);
	filled = palloc0(sizeof(bool) * (desc->natts + 1));
	t->direct = rel->rd_rel->relkind == RELKIND_RELATION &&
		!rel->rd_rel->relhasrules &&
		!(desc->constr && desc->constr->has_generated_stored) &&
		!(rel->trigdesc && (rel->trigdesc->trig_insert_before_row ||
							rel->trigdesc->trig_insert_after_row ||
							rel->trigdesc->trig_insert_instead_row ||
							rel->trigdesc->trig_insert_before_statement ||
							rel->trigdesc->trig_insert_after_statement ||
							rel->trigdesc->trig_insert_new_table));
	for (j = 0; j < t->ncolumns; j++)
	{
		t->attnums[j] = InvalidAttrNumber;
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), t->columns[j]) == 0)
				t->attnums[j] = att->attnum;
		}
		if (t->attnums[j] == InvalidAttrNumber ||
			getBaseType(TupleDescAttr(desc, t->attnums[j] - 1)->atttypid) != t->types[j])
			t->direct = false;
		else
			filled[t->attnums[j]] = true;
	}
	if (!t->direct)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	t->same_layout = desc->natts == t->ncolumns;
	for (j = 0; j < t->ncolumns && t->same_layout; j++)
		t->same_layout = t->attnums[j] == j + 1 &&
			TupleDescAttr(desc, j)->atttypid == t->types[j];

	t->estate = CreateExecutorState();

	/* the other columns: their defaults, as the planner prepares them */
	t->default_attnums = palloc0(sizeof(AttrNumber) * Max(desc->natts, 1));
	t->defaults = palloc0(sizeof(ExprState *) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Node	   *expr;

		if (att->attisdropped || filled[att->attnum])
			continue;
		expr = build_column_default(rel, att->attnum);
		if (expr == NULL)
			continue;			/* NULL, as in an INSERT */
		t->default_attnums[t->ndefaults] = att->attnum;
		t->defaults[t->ndefaults] = ExecPrepareExpr((Expr *) expr, t->estate);
		t->ndefaults++;
	}

	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, rel, 0, NULL, 0);
	CurrentResourceOwner = TopTransactionResourceOwner;
	ExecOpenIndices(t->rri, false);
	CurrentResourceOwner = save;
	t->nindexes = t->rri->ri_NumIndices;
	t->index_oids = palloc0(sizeof(Oid) * Max(t->nindexes, 1));
	t->index_rels = palloc0(sizeof(Relation) * Max(t->nindexes, 1));
	for (i = 0; i < t->nindexes; i++)
	{
		t->index_rels[i] = t->rri->ri_IndexRelationDescs[i];
		t->index_oids[i] = RelationGetRelid(t->index_rels[i]);
	}
	t->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc), &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	t->open = true;
}

/*
 * The table's writer, ready for a row of this transaction; NULL when rows
 * go through SPI.  Opens the table (and its indexes) for the transaction,
 * and rebuilds everything when what opening returns is not what was built.
 */
DirectTable *
direct_table_get(DirectTable *t, Oid relid)
{
	ResourceOwner save = CurrentResourceOwner;
	Relation	rel;
	bool		same;
	volatile bool rel_open = false; /* rel's reference still held here */

	if (!enabled || !OidIsValid(relid))
		return NULL;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(direct_insert_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (t->open && t->valid && t->relid == relid)
		return t->direct ? t : NULL;
	table_close_refs(t);

	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		rel = table_open(relid, RowExclusiveLock);
		rel_open = true;
		same = t->cxt != NULL && t->valid && t->relid == relid && t->rel == rel;
		if (same && t->direct)
		{
			for (int i = 0; i < t->nindexes; i++)
			{
				t->index_rels[i] = index_open(t->index_oids[i], RowExclusiveLock);
				if (t->rri->ri_IndexRelationDescs[i] != t->index_rels[i])
					same = false;
			}
			t->open = true;
			/* an index added or dropped since: the table was invalidated */
			if (!same)
			{
				table_close_refs(t);
				rel_open = false;
			}
		}
		else if (same)
		{
			table_close(rel, NoLock);
			rel_open = false;
		}
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();

	if (same)
		return t->direct ? t : NULL;

	/*
	 * First use, or something changed: build anew.  rel is still open,
	 * unless the indexes were found changed (table_close_refs closed it).
	 * Known from rel_open, not from the table's state: an invalidation
	 * taken in while the indexes were opened can change that state
	 * meanwhile (which once closed rel twice: "relcache reference audit_log
	 * is not owned by resource owner TopTransaction").
	 */
	if (!rel_open)
	{
		CurrentResourceOwner = TopTransactionResourceOwner;
		rel = table_open(relid, RowExclusiveLock);
		CurrentResourceOwner = save;
	}
	t->open = false;
	table_build(t, rel);
	if (!t->direct)
	{
		CurrentResourceOwner = TopTransactionResourceOwner;
		table_close(rel, NoLock);
		CurrentResourceOwner = save;
		return NULL;
	}
	return t;
}

/*
 * Whether the current user may write the table as an INSERT would, with
 * nothing of row security to check: a superuser, or its owner with the
 * INSERT privilege while row security is not forced on the owner.
 */
bool
direct_table_writable(DirectTable *t)
{
	Oid			user = GetUserId();

	if (superuser_arg(user))
		return true;
	return t->rel->rd_rel->relowner == user && !t->rel->rd_rel->relforcerowsecurity &&
		pg_class_aclcheck(t->relid, user, ACL_INSERT) == ACLCHECK_OK;
}

/* The defaults of the columns not filled, into slot (values in per-tuple memory). */
static void
fill_defaults(DirectTable *t, TupleTableSlot *slot)
{
	ExprContext *econtext = GetPerTupleExprContext(t->estate);

	for (int k = 0; k < t->ndefaults; k++)
	{
		int			a = t->default_attnums[k] - 1;

		slot->tts_values[a] = ExecEvalExprSwitchContext(t->defaults[k], econtext,
														&slot->tts_isnull[a]);
	}
}

/* values[j], nulls[j] of columns[j] into slot, the other columns' defaults too. */
static void
fill_slot(DirectTable *t, TupleTableSlot *slot, const Datum *values, const bool *nulls)
{
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int j = 0; j < t->ncolumns; j++)
	{
		slot->tts_values[t->attnums[j] - 1] = values[j];
		slot->tts_isnull[t->attnums[j] - 1] = nulls[j];
	}
	fill_defaults(t, slot);
	ExecStoreVirtualTuple(slot);
}

/* Insert one row (the values of the columns filled, in their order). */
void
direct_table_insert(DirectTable *t, const Datum *values, const bool *nulls)
{
	TupleTableSlot *slot = t->slot;

	fill_slot(t, slot, values, nulls);
	if (t->rel->rd_att->constr)
		ExecConstraints(t->rri, slot, t->estate);
	table_tuple_insert(t->rel, slot, GetCurrentCommandId(true), 0, NULL);
	ExecInsertIndexTuples(t->rri, slot, t->estate, false, false, NULL, NIL);
	ExecClearTuple(slot);
	ResetPerTupleExprContext(t->estate);
}

/*
 * Insert n rows (at most DIRECT_INSERT_SLOTS), given as tuples of desc, a
 * descriptor of the columns filled in their order, with
 * table_multi_insert: the heap pages are filled, locked and WAL-logged
 * once for many rows instead of once a row.  Constraints are checked and
 * index entries made per row, as COPY does.
 */
void
direct_table_insert_many(DirectTable *t, HeapTuple *tuples, TupleDesc desc, int n)
{
	CommandId	cid = GetCurrentCommandId(true);
	Datum	   *values = palloc(sizeof(Datum) * t->ncolumns);
	bool	   *nulls = palloc(sizeof(bool) * t->ncolumns);
	int			i;

	Assert(n <= DIRECT_INSERT_SLOTS);
	if (t->nslots < n)
	{
		MemoryContext old = MemoryContextSwitchTo(t->cxt);

		if (t->slots == NULL)
		{
			t->slots = palloc0(sizeof(TupleTableSlot *) * DIRECT_INSERT_SLOTS);
			/* kept across batches: memory taken anew is faulted in anew */
			t->tuple_cxt = AllocSetContextCreate(t->cxt, "payments direct insert tuples",
												 DIRECT_TUPLES_KEEP, ALLOCSET_DEFAULT_INITSIZE,
												 ALLOCSET_DEFAULT_MAXSIZE);
		}
		for (i = t->nslots; i < n; i++)
		{
			t->slots[i] = MakeSingleTupleTableSlot(t->slot->tts_tupleDescriptor, &TTSOpsHeapTuple);
			/* their materialized tuples go where one reset frees them */
			t->slots[i]->tts_mcxt = t->tuple_cxt;
		}
		t->nslots = n;
		MemoryContextSwitchTo(old);
	}
	for (i = 0; i < n; i++)
	{
		TupleTableSlot *slot = t->slots[i];

		if (t->same_layout)
		{
			/* the tuple is a row of the table as it is */
			ExecStoreHeapTuple(tuples[i], slot, false);
		}
		else
		{
			heap_deform_tuple(tuples[i], desc, values, nulls);
			fill_slot(t, slot, values, nulls);
			/* the defaults live in per-tuple memory, reset below */
			ExecMaterializeSlot(slot);
		}
		if (t->rel->rd_att->constr)
			ExecConstraints(t->rri, slot, t->estate);
		ResetPerTupleExprContext(t->estate);
	}
	if (n >= DIRECT_BULK_ROWS && t->bistate == NULL && GetCurrentTransactionNestLevel() == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		t->bistate = GetBulkInsertState();
		MemoryContextSwitchTo(old);
	}
	if (t->bistate != NULL && GetCurrentTransactionNestLevel() == 1)
	{
		ResourceOwner save = CurrentResourceOwner;

		/*
		 * Its pins outlive the statement's resource owner.  Only outside
		 * subtransactions: an error here ends the whole transaction, so
		 * nothing taken under the top owner outlives a caught error.
		 */
		CurrentResourceOwner = TopTransactionResourceOwner;
		table_multi_insert(t->rel, t->slots, n, cid, 0, t->bistate);
		CurrentResourceOwner = save;
	}
	else if (n == 1)
		table_tuple_insert(t->rel, t->slots[0], cid, 0, NULL);
	else
		table_multi_insert(t->rel, t->slots, n, cid, 0, NULL);
	for (i = 0; i < n; i++)
	{
		if (t->nindexes > 0)
			ExecInsertIndexTuples(t->rri, t->slots[i], t->estate, false, false, NULL, NIL);
		ExecClearTuple(t->slots[i]);
		ResetPerTupleExprContext(t->estate);
	}
	MemoryContextReset(t->tuple_cxt);
	pfree(values);
	pfree(nulls);
}
