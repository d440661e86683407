/*-------------------------------------------------------------------------
 *
 * check_cache.c
 *	  The CHECK constraints of the extension's tables, read and planned
 *	  once per backend instead of once per statement.
 *
 * PostgreSQL 15 compiles a table's CHECK constraints for every statement
 * that writes it: ExecRelCheck reads each constraint's stored expression
 * back from its text form (stringToNode) and plans it (ExecPrepareExpr)
 * the first time a row of the statement is checked.  pay_purchase inserts
 * into three tables whose constraints hold some 14,000 characters of
 * expression text, every call, and that was 5 to 7% of a caller's CPU.
 *
 * Here, at executor start, each result relation of a table in schema
 * payments gets its constraint states built from expression trees kept
 * per table: exactly what ExecRelCheck would build (the same trees, in
 * the same order, copied into the query's memory and initialised the same
 * way), only without reading and planning them again.  A relcache invalidation of
 * the table (ALTER TABLE, a constraint added or dropped) drops its trees;
 * a change to any function (one a constraint calls may have been inlined
 * into its tree) drops them all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cached_table.h"
#include "check_cache.h"

typedef struct CheckEntry
{
	Oid			relid;			/* hash key */
	MemoryContext cxt;			/* the names and trees below */
	int			ncheck;
	char	  **names;			/* ccname of each, to match the relcache's */
	Expr	  **exprs;			/* planned, as ExecPrepareExpr plans them */
} CheckEntry;

static HTAB *entries = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;

static void
drop_entry(CheckEntry *e)
{
	MemoryContextDelete(e->cxt);
	(void) hash_search(entries, &e->relid, HASH_REMOVE, NULL);
}

/* A relcache invalidation: the table's trees go (all, for InvalidOid). */
static void
relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	HASH_SEQ_STATUS seq;
	CheckEntry *e;

	if (entries == NULL)
		return;
	if (OidIsValid(relid))
	{
		e = hash_search(entries, &relid, HASH_FIND, NULL);
		if (e != NULL)
			drop_entry(e);
		return;
	}
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		drop_entry(e);
}

/* A function changed: a tree may hold an inlined copy of it. */
static void
proc_callback(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
			  uint32 hashvalue pg_attribute_unused())
{
	relcache_callback((Datum) 0, InvalidOid);
}

/*
 * The planned trees of rel's constraints, read once.  Built in a context of
 * its own, made a child of CacheMemoryContext only once complete: an ERROR
 * halfway (as ExecRelCheck would raise it) leaves nothing behind.
 */
static CheckEntry *
entry_for(Relation rel)
{
	TupleConstr *constr = rel->rd_att->constr;
	Oid			relid = RelationGetRelid(rel);
	CheckEntry *e;
	bool		found;
	MemoryContext cxt;
	MemoryContext old;
	char	  **names;
	Expr	  **exprs;

	if (entries == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CheckEntry);
		ctl.hcxt = CacheMemoryContext;
		entries = hash_create("payments CHECK constraints", 32, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, proc_callback, (Datum) 0);
	}
	e = hash_search(entries, &relid, HASH_FIND, NULL);
	if (e != NULL)
	{
		bool		same = e->ncheck == constr->num_check;

		for (int i = 0; same && i < e->ncheck; i++)
			same = strcmp(e->names[i], constr->check[i].ccname) == 0;
		if (same)
			return e;
		drop_entry(e);
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "payments CHECK constraints of a table",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	names = palloc(sizeof(char *) * constr->num_check);
	exprs = palloc(sizeof(Expr *) * constr->num_check);
	for (int i = 0; i < constr->num_check; i++)
	{
		names[i] = pstrdup(constr->check[i].ccname);
		exprs[i] = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
	}
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, CacheMemoryContext);

	e = hash_search(entries, &relid, HASH_ENTER, &found);
	e->cxt = cxt;
	e->ncheck = constr->num_check;
	e->names = names;
	e->exprs = exprs;
	return e;
}

/*
 * Give each result relation of a payments table whose constraints are not
 * built yet the states ExecRelCheck would build.
 */
static void
check_cache_executor_start(QueryDesc *queryDesc, int eflags)
{
	EState	   *estate;
	Oid			nsp = InvalidOid;

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	estate = queryDesc->estate;
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || estate == NULL || estate->es_result_relations == NULL)
		return;
	for (Index i = 0; i < estate->es_range_table_size; i++)
	{
		ResultRelInfo *rri = estate->es_result_relations[i];
		Relation	rel;
		CheckEntry *e;
		MemoryContext old;
		Expr	  **exprs;
		int			n;

		if (rri == NULL || rri->ri_ConstraintExprs != NULL)
			continue;
		rel = rri->ri_RelationDesc;
		if (rel->rd_att->constr == NULL || rel->rd_att->constr->num_check == 0)
			continue;
		if (!OidIsValid(nsp))
			nsp = cached_schema_oid();
		if (!OidIsValid(nsp) || RelationGetNamespace(rel) != nsp)
			continue;
		e = entry_for(rel);

		/*
		 * The query gets copies: its states point into their trees, and an
		 * invalidation (which ExecInitExpr's catalog lookups may take in)
		 * can drop the cached ones while it runs.
		 */
		old = MemoryContextSwitchTo(estate->es_query_cxt);
		n = e->ncheck;
		exprs = palloc(sizeof(Expr *) * n);
		for (int k = 0; k < n; k++)
			exprs[k] = copyObject(e->exprs[k]);
		rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * n);
		for (int k = 0; k < n; k++)
			rri->ri_ConstraintExprs[k] = ExecInitExpr(exprs[k], NULL);
		MemoryContextSwitchTo(old);
	}
}

void
check_cache_install_hook(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = check_cache_executor_start;
}
