/*-------------------------------------------------------------------------
 *
 * amount_sort.c
 *	  Sorts of a lone pay_amount column (ORDER BY, DISTINCT, GROUP BY, a
 *	  window's ORDER BY) as sorts of 64-bit keys.
 *
 * PostgreSQL 15 sorts a lone column as bare Datums only when its type is
 * passed by value (nodeSort.c); a lone pay_amount column (16 bytes, by
 * reference) is sorted as rows: every row is copied into the sort as a
 * tuple and read back from it, which costs about twice what a bigint
 * column's sort does, whatever the comparator.  Here a planner hook offers
 * the query's ORDER BY of such a column a node of its own ("Custom Scan
 * (PayAmountSort)") that sorts each amount's order key (amount.h) as an
 * int8 Datum: PostgreSQL's by-value Datum sort, the one bigint gets, and
 * the amount made back from its key on the way out.  The order is the
 * type's total order (currency code, then value), nulls where the query
 * asks for them, spilling to disk past work_mem like any sort.  An amount
 * whose key is not exact (beyond +/- 2^48 minor units) turns the node into
 * a sort of the amounts themselves, the keys read so far handed over.
 *
 * The same node takes the place of PostgreSQL's Sort of such a column
 * below a sorted DISTINCT (Unique), GROUP BY (Group, GroupAggregate) or a
 * window function (WindowAgg).
 *
 * Offered only where it cannot lose what a Sort would do: one sort key,
 * a sort input of that one column (a column of a range table entry: not a
 * set operation's output), no LIMIT (the query's own, or one above the
 * subquery or view that sorts: a Sort under LIMIT keeps only the rows it
 * needs; this node is not told the bound), no FOR UPDATE/SHARE.  Its cost
 * is a sort's with half the comparison cost, so the planner takes it where
 * it would have sorted.  payments.amount_sort = off turns it off.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/nbtree.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planner.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"
#include "utils/tuplesort.h"

#include "amount.h"
#include "amount_sort.h"

#define AMOUNT_SORT_NAME	"PayAmountSort"

/* The int8 key's sign bit flipped: unsigned order as signed order. */
#define KEY_SIGN	(UINT64CONST(1) << 63)

static bool amount_sort_enabled = true;
static create_upper_paths_hook_type prev_create_upper_paths_hook = NULL;

/* What the plan tells the executor (custom_private, a list of Integers). */
enum
{
	PRIVATE_OPFAMILY,			/* the sort key's btree operator family */
	PRIVATE_STRATEGY,			/* BTLessStrategyNumber or BTGreaterStrategyNumber */
	PRIVATE_NULLS_FIRST			/* 1 or 0 */
};

typedef struct AmountSortState
{
	CustomScanState css;
	Oid			amount_type;
	Oid			opfamily;
	int			strategy;
	bool		nulls_first;
	bool		random_access;	/* backward scan, rewind, mark/restore */
	bool		sorted;			/* the input is read and sorted */
	bool		by_key;			/* int8 keys (else the amounts themselves) */
	Tuplesortstate *sort;
	PayAmount	out;			/* the amount returned last */
} AmountSortState;

static Plan *amount_sort_plan(PlannerInfo *root, RelOptInfo *rel,
							  CustomPath *best_path, List *tlist,
							  List *clauses, List *custom_plans);
static Node *amount_sort_create_state(CustomScan *cscan);
static void amount_sort_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *amount_sort_exec(CustomScanState *node);
static void amount_sort_end(CustomScanState *node);
static void amount_sort_rescan(CustomScanState *node);
static void amount_sort_explain(CustomScanState *node, List *ancestors,
								ExplainState *es);

static const CustomPathMethods path_methods = {
	.CustomName = AMOUNT_SORT_NAME,
	.PlanCustomPath = amount_sort_plan,
};

static const CustomScanMethods scan_methods = {
	.CustomName = AMOUNT_SORT_NAME,
	.CreateCustomScanState = amount_sort_create_state,
};

static const CustomExecMethods exec_methods = {
	.CustomName = AMOUNT_SORT_NAME,
	.BeginCustomScan = amount_sort_begin,
	.ExecCustomScan = amount_sort_exec,
	.EndCustomScan = amount_sort_end,
	.ReScanCustomScan = amount_sort_rescan,
	.ExplainCustomScan = amount_sort_explain,
};

/*
 * Is opfamily a btree family whose sort support is pay_amount's, for
 * type?  That is the type's total order, whatever the names involved.
 */
static bool
amount_order_family(Oid opfamily, Oid type)
{
	int16		typlen;
	bool		typbyval;
	Oid			proc;
	FmgrInfo	finfo;

	get_typlenbyval(type, &typlen, &typbyval);
	if (typlen != sizeof(PayAmount) || typbyval)
		return false;
	proc = get_opfamily_proc(opfamily, type, type, BTSORTSUPPORT_PROC);
	if (!OidIsValid(proc))
		return false;
	fmgr_info(proc, &finfo);
	return finfo.fn_addr == pay_amount_sortsupport;
}

/*
 * The key sort of input by pathkeys, a path of rel, or NULL where it is not
 * the sort of a lone amount column: one key over one plain column of a
 * range table entry, in the type's total order.  Not a set operation's
 * output (UNION's column is varno 0, no entry's): the node's scan tuple is
 * that column (custom_scan_tlist), which EXPLAIN and auto_explain name
 * through it, and cannot ("bogus varno: 0"; in a subquery, once offset into
 * the outer range table, the column of another entry).
 */
static CustomPath *
key_sort_path(PlannerInfo *root, RelOptInfo *rel, Path *input, List *pathkeys)
{
	PathKey    *pathkey;
	Expr	   *column;
	ListCell   *lc;
	bool		sorts_column = false;
	Path		sort_cost;
	CustomPath *cpath;

	if (list_length(pathkeys) != 1 || list_length(input->pathtarget->exprs) != 1 ||
		pathkeys_contained_in(pathkeys, input->pathkeys) ||
		input->param_info != NULL)
		return NULL;
	column = linitial(input->pathtarget->exprs);
	if (!IsA(column, Var) || ((Var *) column)->varlevelsup != 0 ||
		((Var *) column)->varno < 1 ||
		((Var *) column)->varno > list_length(root->parse->rtable))
		return NULL;

	pathkey = linitial(pathkeys);
	if (pathkey->pk_strategy != BTLessStrategyNumber &&
		pathkey->pk_strategy != BTGreaterStrategyNumber)
		return NULL;
	foreach(lc, pathkey->pk_eclass->ec_members)
	{
		EquivalenceMember *em = lfirst(lc);
		Expr	   *e = em->em_expr;

		/* (a domain's column is relabelled to its base type) */
		while (IsA(e, RelabelType))
			e = ((RelabelType *) e)->arg;
		if (equal(e, column))
			sorts_column = true;
	}
	if (!sorts_column ||
		!amount_order_family(pathkey->pk_opfamily,
							 getBaseType(exprType((Node *) column))))
		return NULL;

	/* A sort of 8-byte keys, comparisons at half a Sort's price. */
	cost_sort(&sort_cost, root, pathkeys, input->total_cost,
			  input->rows, (int) sizeof(int64), -cpu_operator_cost,
			  work_mem, -1.0);

	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = input->pathtarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = input->parallel_safe && rel->consider_parallel;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = input->rows;
	cpath->path.startup_cost = sort_cost.startup_cost;
	cpath->path.total_cost = sort_cost.total_cost;
	cpath->path.pathkeys = pathkeys;
	cpath->flags = CUSTOMPATH_SUPPORT_BACKWARD_SCAN;
	cpath->custom_paths = list_make1(input);
	cpath->custom_private = list_make3(makeInteger((int) pathkey->pk_opfamily),
									   makeInteger(pathkey->pk_strategy),
									   makeInteger(pathkey->pk_nulls_first ? 1 : 0));
	cpath->methods = &path_methods;
	return cpath;
}

/*
 * path again with the key sort in place of the Sort below it, or NULL: a
 * DISTINCT's Unique, a GROUP BY's Group or sorted Agg, a window's WindowAgg
 * over PostgreSQL's Sort of a lone amount column.  Each of those reads its
 * input in order and copies what it keeps (the first row of a group, the
 * window's rows in its tuplestore), so the amount the node hands out,
 * rewritten at its next row, is never held.  A Sort there
 * is never bounded (ExecSetTupleBound stops at these nodes): a LIMIT above
 * loses nothing.  The copy costs what path did, less what the key sort
 * saves.
 */
static Path *
with_key_sort_below(PlannerInfo *root, Path *path)
{
	Size		size;
	Path	  **below;
	SortPath   *sort;
	CustomPath *keyed;
	Path	   *copy;

	switch (nodeTag(path))
	{
		case T_UpperUniquePath:
			size = sizeof(UpperUniquePath);
			below = &((UpperUniquePath *) path)->subpath;
			break;
		case T_GroupPath:
			size = sizeof(GroupPath);
			below = &((GroupPath *) path)->subpath;
			break;
		case T_AggPath:
			if (((AggPath *) path)->aggstrategy != AGG_SORTED)
				return NULL;
			size = sizeof(AggPath);
			below = &((AggPath *) path)->subpath;
			break;
		case T_WindowAggPath:
			size = sizeof(WindowAggPath);
			below = &((WindowAggPath *) path)->subpath;
			break;
		default:
			return NULL;
	}
	if (!IsA(*below, SortPath))
		return NULL;
	sort = (SortPath *) *below;
	keyed = key_sort_path(root, sort->path.parent, sort->subpath,
						  sort->path.pathkeys);
	if (keyed == NULL)
		return NULL;

	copy = palloc(size);
	memcpy(copy, path, size);
	*(Path **) ((char *) copy + ((char *) below - (char *) path)) = &keyed->path;
	copy->startup_cost -= sort->path.startup_cost - keyed->path.startup_cost;
	copy->total_cost -= sort->path.total_cost - keyed->path.total_cost;
	return copy;
}

/*
 * Offer the key sort where the query sorts a lone amount: its ORDER BY
 * (UPPERREL_ORDERED), and the sorts below a DISTINCT (UPPERREL_DISTINCT),
 * a GROUP BY (UPPERREL_GROUP_AGG) or a window (UPPERREL_WINDOW).
 */
static void
amount_sort_upper_paths(PlannerInfo *root, UpperRelationKind stage,
						RelOptInfo *input_rel, RelOptInfo *output_rel,
						void *extra)
{
	CustomPath *cpath;
	Path	   *path;
	PathTarget *target;

	if (prev_create_upper_paths_hook)
		prev_create_upper_paths_hook(root, stage, input_rel, output_rel, extra);
	/* (a set operation's stage has no input_rel) */
	if (!amount_sort_enabled || input_rel == NULL || IS_DUMMY_REL(input_rel))
		return;

	if (stage == UPPERREL_DISTINCT || stage == UPPERREL_GROUP_AGG ||
		stage == UPPERREL_WINDOW)
	{
		/*
		 * Every copy made before any is added: add_path frees the paths a
		 * new one beats, the one it was copied from and maybe others of
		 * the list.
		 */
		List	   *keyed = NIL;
		ListCell   *lc;

		foreach(lc, output_rel->pathlist)
		{
			path = with_key_sort_below(root, lfirst(lc));
			if (path != NULL)
				keyed = lappend(keyed, path);
		}
		foreach(lc, keyed)
			add_path(output_rel, lfirst(lc));
		return;
	}

	/*
	 * The query's ORDER BY.  Not under a LIMIT: the query's own, nor one
	 * above a subquery (a view) that may stop early, for which the outer
	 * query passed a tuple fraction down; the executor bounds a Sort there
	 * (ExecSetTupleBound, through the subquery scan) to the top N, and
	 * cannot bound this node.
	 */
	if (stage != UPPERREL_ORDERED ||
		root->parse->limitCount != NULL || root->parse->rowMarks != NIL ||
		(root->parent_root != NULL && root->tuple_fraction > 0.0) ||
		input_rel->cheapest_total_path == NULL)
		return;
	cpath = key_sort_path(root, output_rel, input_rel->cheapest_total_path,
						  root->sort_pathkeys);
	if (cpath == NULL)
		return;
	path = &cpath->path;
	target = root->upper_targets[UPPERREL_ORDERED];
	if (target != NULL && path->pathtarget != target)
		path = apply_projection_to_path(root, output_rel, path, target);
	add_path(output_rel, path);
}

/*
 * The plan: the input's plan is the node's outer plan (as a Sort's), so
 * that EXPLAIN, parameter changes and shutdown reach it the usual way.  The
 * scan tuple is the input's one column.
 */
static Plan *
amount_sort_plan(PlannerInfo *root pg_attribute_unused(),
				 RelOptInfo *rel pg_attribute_unused(),
				 CustomPath *best_path, List *tlist,
				 List *clauses pg_attribute_unused(), List *custom_plans)
{
	CustomScan *cscan = makeNode(CustomScan);

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = NIL;
	cscan->scan.plan.lefttree = linitial(custom_plans);
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = NIL;
	cscan->custom_private = best_path->custom_private;
	cscan->custom_scan_tlist = copyObject(tlist);
	cscan->custom_relids = NULL;
	cscan->methods = &scan_methods;
	return &cscan->scan.plan;
}

static Node *
amount_sort_create_state(CustomScan *cscan)
{
	AmountSortState *state = palloc0(sizeof(AmountSortState));

	NodeSetTag(state, T_CustomScanState);
	state->css.methods = &exec_methods;
	state->opfamily = (Oid) intVal(list_nth(cscan->custom_private, PRIVATE_OPFAMILY));
	state->strategy = intVal(list_nth(cscan->custom_private, PRIVATE_STRATEGY));
	state->nulls_first = intVal(list_nth(cscan->custom_private, PRIVATE_NULLS_FIRST)) != 0;
	/* the type the operator family knows (a domain's base type) */
	state->amount_type = getBaseType(exprType((Node *) linitial_node(TargetEntry, cscan->custom_scan_tlist)->expr));
	return (Node *) state;
}

static void
amount_sort_begin(CustomScanState *node, EState *estate, int eflags)
{
	AmountSortState *state = (AmountSortState *) node;
	Plan	   *outer = outerPlan(node->ss.ps.plan);

	state->random_access = (eflags & (EXEC_FLAG_REWIND | EXEC_FLAG_BACKWARD |
									  EXEC_FLAG_MARK)) != 0;
	/* As a Sort, spare the input from rewinding and going backward. */
	eflags &= ~(EXEC_FLAG_REWIND | EXEC_FLAG_BACKWARD | EXEC_FLAG_MARK);
	outerPlanState(node) = ExecInitNode(outer, estate, eflags);
}

/* A sort of the amounts themselves, in the query's order. */
static Tuplesortstate *
begin_value_sort(AmountSortState *state)
{
	Oid			sortop = get_opfamily_member(state->opfamily, state->amount_type,
											 state->amount_type, state->strategy);

	if (!OidIsValid(sortop))
		elog(ERROR, "missing operator %d(%u,%u) in opfamily %u",
			 state->strategy, state->amount_type, state->amount_type,
			 state->opfamily);
	return tuplesort_begin_datum(state->amount_type, sortop, InvalidOid,
								 state->nulls_first, work_mem, NULL,
								 state->random_access ? TUPLESORT_RANDOMACCESS : TUPLESORT_NONE);
}

/* The int8 Datum an amount is sorted by (descending: the key's complement). */
static inline Datum
key_datum(AmountSortState *state, uint64 key)
{
	int64		k = (int64) (key ^ KEY_SIGN);

	return Int64GetDatum(state->strategy == BTGreaterStrategyNumber ? ~k : k);
}

static inline uint64
datum_key(AmountSortState *state, Datum d)
{
	int64		k = DatumGetInt64(d);

	return (uint64) (state->strategy == BTGreaterStrategyNumber ? ~k : k) ^ KEY_SIGN;
}

/*
 * An amount whose key is not exact came: sort the amounts themselves from
 * here on, the keys read so far handed over as the amounts they are.
 */
static void
switch_to_values(AmountSortState *state)
{
	Tuplesortstate *values = begin_value_sort(state);
	Datum		d;
	bool		isnull;
	PayAmount	a;

	tuplesort_performsort(state->sort);
	while (tuplesort_getdatum(state->sort, true, &d, &isnull, NULL))
	{
		CHECK_FOR_INTERRUPTS();
		if (isnull)
			tuplesort_putdatum(values, (Datum) 0, true);
		else
		{
			pay_amount_from_order_key(datum_key(state, d), &a);
			tuplesort_putdatum(values, PointerGetDatum(&a), false);
		}
	}
	tuplesort_end(state->sort);
	state->sort = values;
	state->by_key = false;
}

/* Read the whole input into the sort, and sort it. */
static void
sort_input(AmountSortState *state)
{
	EState	   *estate = state->css.ss.ps.state;
	PlanState  *outer = outerPlanState(state);
	ScanDirection dir = estate->es_direction;

	/* The input is read forward, as a Sort reads it. */
	estate->es_direction = ForwardScanDirection;
	state->sort = tuplesort_begin_datum(INT8OID, Int8LessOperator, InvalidOid,
										state->nulls_first, work_mem, NULL,
										state->random_access ? TUPLESORT_RANDOMACCESS : TUPLESORT_NONE);
	state->by_key = true;
	for (;;)
	{
		TupleTableSlot *slot = ExecProcNode(outer);
		Datum		d;
		bool		isnull;
		uint64		key;

		if (TupIsNull(slot))
			break;
		d = slot_getattr(slot, 1, &isnull);
		if (isnull)
			tuplesort_putdatum(state->sort, (Datum) 0, true);
		else if (state->by_key &&
				 pay_amount_order_key(DatumGetPayAmountP(d), &key))
			tuplesort_putdatum(state->sort, key_datum(state, key), false);
		else
		{
			if (state->by_key)
				switch_to_values(state);
			tuplesort_putdatum(state->sort, d, false);
		}
	}
	tuplesort_performsort(state->sort);
	state->sorted = true;
	estate->es_direction = dir;
}

static TupleTableSlot *
amount_sort_exec(CustomScanState *node)
{
	AmountSortState *state = (AmountSortState *) node;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	bool		forward = ScanDirectionIsForward(node->ss.ps.state->es_direction);
	Datum		d;
	bool		isnull;

	if (!state->sorted)
		sort_input(state);

	ExecClearTuple(slot);
	if (!tuplesort_getdatum(state->sort, forward, &d, &isnull, NULL))
		return slot;
	if (!isnull)
	{
		if (state->by_key)
			pay_amount_from_order_key(datum_key(state, d), &state->out);
		else
		{
			/* tuplesort_getdatum gave a copy of the amount */
			memcpy(&state->out, DatumGetPointer(d), sizeof(PayAmount));
			pfree(DatumGetPointer(d));
		}
		d = PointerGetDatum(&state->out);
	}
	slot->tts_values[0] = d;
	slot->tts_isnull[0] = isnull;
	ExecStoreVirtualTuple(slot);

	if (node->ss.ps.ps_ProjInfo == NULL)
		return slot;
	node->ss.ps.ps_ExprContext->ecxt_scantuple = slot;
	return ExecProject(node->ss.ps.ps_ProjInfo);
}

static void
amount_sort_end(CustomScanState *node)
{
	AmountSortState *state = (AmountSortState *) node;

	if (state->sort != NULL)
		tuplesort_end(state->sort);
	state->sort = NULL;
	ExecEndNode(outerPlanState(node));
}

/* As ExecReScanSort: sort again if the input may differ, else rewind. */
static void
amount_sort_rescan(CustomScanState *node)
{
	AmountSortState *state = (AmountSortState *) node;
	PlanState  *outer = outerPlanState(node);

	if (!state->sorted)
		return;
	ExecClearTuple(node->ss.ss_ScanTupleSlot);
	if (outer->chgParam != NULL || !state->random_access)
	{
		tuplesort_end(state->sort);
		state->sort = NULL;
		state->sorted = false;
		if (outer->chgParam == NULL)
			ExecReScan(outer);
	}
	else
		tuplesort_rescan(state->sort);
}

/* EXPLAIN: the sort key as a Sort shows it, and after ANALYZE how it went. */
static void
amount_sort_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	AmountSortState *state = (AmountSortState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *context;
	char	   *key;

	context = set_deparse_context_plan(es->deparse_cxt, &cscan->scan.plan,
									   ancestors);
	/* qualified as show_sort_keys qualifies a Sort's: several relations, or VERBOSE */
	key = deparse_expression((Node *) linitial_node(TargetEntry, cscan->custom_scan_tlist)->expr,
							 context, list_length(es->rtable) > 1 || es->verbose, false);
	if (state->strategy == BTGreaterStrategyNumber)
		key = psprintf("%s DESC%s", key, state->nulls_first ? "" : " NULLS LAST");
	else if (state->nulls_first)
		key = psprintf("%s NULLS FIRST", key);
	ExplainPropertyList("Sort Key", list_make1(key), es);

	if (es->analyze && state->sort != NULL)
	{
		TuplesortInstrumentation stats;

		tuplesort_get_stats(state->sort, &stats);
		if (es->format == EXPLAIN_FORMAT_TEXT)
			ExplainPropertyText("Sort Method",
								psprintf("%s  %s: " INT64_FORMAT "kB",
										 tuplesort_method_name(stats.sortMethod),
										 tuplesort_space_type_name(stats.spaceType),
										 stats.spaceUsed), es);
		else
		{
			ExplainPropertyText("Sort Method",
								tuplesort_method_name(stats.sortMethod), es);
			ExplainPropertyInteger("Sort Space Used", "kB", stats.spaceUsed, es);
			ExplainPropertyText("Sort Space Type",
								tuplesort_space_type_name(stats.spaceType), es);
		}
		ExplainPropertyText("Sorted By", state->by_key ? "key" : "value", es);
	}
}

void
amount_sort_init(void)
{
	DefineCustomBoolVariable("payments.amount_sort",
							 "Sorts a lone pay_amount column by 64-bit keys, as fast as a bigint column.",
							 "Off: PostgreSQL's own Sort sorts such a column as rows, about twice as long.",
							 &amount_sort_enabled,
							 true,
							 PGC_USERSET,
							 GUC_EXPLAIN,
							 NULL, NULL, NULL);
	RegisterCustomScanMethods(&scan_methods);
	prev_create_upper_paths_hook = create_upper_paths_hook;
	create_upper_paths_hook = amount_sort_upper_paths;
}
