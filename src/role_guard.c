/*-------------------------------------------------------------------------
 *
 * role_guard.c
 *	  The name guard and the card guard where PostgreSQL fires no event
 *	  trigger: the statements on roles and ownership that can leave a role
 *	  that is not trusted owning what the DDL guard refuses it to make.
 *
 * The DDL guard (sql/src/ddl_guard.sql) refuses, for a role that is not
 * trusted (payments._trusted_role: a superuser, a member of the database
 * owner or of the extension's owner), objects named so a session would
 * find them instead of the extension's and objects that take a pay_card.
 * It is an event trigger, and roles are global objects: no event trigger
 * fires for
 *	- REASSIGN OWNED BY trusted TO untrusted (it gives the objects away;
 *	  also the extension itself, so who is trusted changes);
 *	- ALTER ROLE ... NOSUPERUSER, and ALTER GROUP ... DROP USER;
 *	- REVOKE role FROM member (of the database owner, of the extension's
 *	  owner, or of a role in between);
 *	- DROP ROLE (of a role in between);
 *	- ALTER DATABASE ... OWNER TO (who is trusted as its owner's member).
 * A role trusted when it made such objects stopped being trusted and kept
 * them; one given them owned them.  After each of these statements, when
 * this database has the extension, the check CREATE EXTENSION and ALTER
 * EXTENSION UPDATE run (payments._refuse_shadowing_objects) runs on what
 * the statement left: it raises 42501 naming the objects, and the
 * statement rolls back with its transaction.  No other statement is
 * looked at (this hook is on every utility statement's path).
 *
 * Roles are global: such a statement run in another database changes who
 * is trusted here too, and the hook sees only the database it runs in
 * (README, Tenancy).  ALTER DATABASE ... OWNER TO is checked when it names
 * the database it runs in.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "role_guard.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * Whether the statement can leave a role that is not trusted owning
 * objects of this database: a node-tag switch, nothing else.
 */
static bool
role_guard_applies(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_ReassignOwnedStmt:
		case T_DropRoleStmt:
			return true;
		case T_GrantRoleStmt:
			return !((GrantRoleStmt *) parsetree)->is_grant;
		case T_AlterRoleStmt:
			{
				AlterRoleStmt *stmt = (AlterRoleStmt *) parsetree;
				ListCell   *lc;

				/* ALTER GROUP ... DROP USER */
				if (stmt->action < 0)
					return true;
				foreach(lc, stmt->options)
				{
					DefElem    *opt = (DefElem *) lfirst(lc);

					if (strcmp(opt->defname, "superuser") == 0)
						return true;
				}
				return false;
			}
		case T_AlterOwnerStmt:
			return ((AlterOwnerStmt *) parsetree)->objectType == OBJECT_DATABASE;
		default:
			return false;
	}
}

static void
role_guard_error_context(void *arg)
{
	errcontext("the payments extension's check of what %s left in this database",
			   (const char *) arg);
}

/*
 * After the statement: when this database has the extension (0.2.0 or
 * later: the check came with it), run the check on what it left.
 */
static void
role_guard_check(Node *parsetree)
{
	Oid			ext;
	Oid			nsp;
	Oid			check;
	FmgrInfo	flinfo;
	ErrorContextCallback callback;
	LOCAL_FCINFO(fcinfo, 0);

	if (!IsTransactionState())
		return;
	ext = get_extension_oid("payments", true);
	if (!OidIsValid(ext))
		return;
	if (IsA(parsetree, AlterOwnerStmt))
	{
		const char *db = get_database_name(MyDatabaseId);

		/* another database: the hook cannot look there */
		if (db == NULL || strcmp(strVal(((AlterOwnerStmt *) parsetree)->object), db) != 0)
			return;
	}
	/* the control file fixes the schema (not relocatable) */
	nsp = get_namespace_oid("payments", true);
	if (!OidIsValid(nsp))
		return;
	check = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
							CStringGetDatum("_refuse_shadowing_objects"),
							PointerGetDatum(buildoidvector(NULL, 0)),
							ObjectIdGetDatum(nsp));
	if (!OidIsValid(check))
		return;

	/* what the statement changed, visible to the check */
	CommandCounterIncrement();

	callback.callback = role_guard_error_context;
	callback.arg = (void *) GetCommandTagName(CreateCommandTag(parsetree));
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	/*
	 * Called directly, not through a query: the role that runs
	 * the statement need not have EXECUTE on the internal function.  It
	 * returns void and raises 42501 when it finds such objects.
	 */
	fmgr_info(check, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL, NULL);
	(void) FunctionCallInvoke(fcinfo);

	error_context_stack = callback.previous;
}

static void
role_guard_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						  ProcessUtilityContext context, ParamListInfo params,
						  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		applies = role_guard_applies(parsetree);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	if (applies)
		role_guard_check(parsetree);
}

/* Install the hook; called once from the postmaster's _PG_init. */
void
role_guard_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = role_guard_ProcessUtility;
}
