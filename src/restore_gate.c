/*-------------------------------------------------------------------------
 *
 * restore_gate.c
 *	  payments._restore_gate(function): a BEFORE INSERT row trigger that
 *	  runs the trigger function its argument names only while
 *	  check_function_bodies is off, as every pg_dump script and pg_restore
 *	  sets it (worker.sql: the rows a restore loads into operations and
 *	  worker_server are made safe as they come).
 *
 * A WHEN clause says the same, but PostgreSQL reads a trigger's WHEN back
 * from its stored text and plans it for every statement that fires the
 * trigger: on operations that was 24,000 instructions of each
 * pay_purchase (about 1.5% of the caller's), to learn that no restore is
 * under way.  Here that is a read of a variable; the named function is
 * looked up once per statement, and only during a restore.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(pay_restore_gate);

/* the named function, found once per statement (the trigger's fn_extra) */
typedef struct RestoreGate
{
	Oid			tgoid;
	FmgrInfo	target;
} RestoreGate;

Datum
pay_restore_gate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	RestoreGate *gate;
	LOCAL_FCINFO(inner, 0);
	Datum		result;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
		td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("payments._restore_gate must fire BEFORE INSERT FOR EACH ROW with a trigger function as its argument")));
	if (check_function_bodies)
		return PointerGetDatum(td->tg_trigtuple);

	gate = (RestoreGate *) fcinfo->flinfo->fn_extra;
	if (gate == NULL || gate->tgoid != td->tg_trigger->tgoid)
	{
		Oid			fn = DatumGetObjectId(DirectFunctionCall1(regprocedurein,
															  CStringGetDatum(td->tg_trigger->tgargs[0])));

		gate = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RestoreGate));
		fmgr_info_cxt(fn, &gate->target, fcinfo->flinfo->fn_mcxt);
		gate->tgoid = td->tg_trigger->tgoid;
		fcinfo->flinfo->fn_extra = gate;
	}

	/* the same trigger call, handed on: the function sees this TriggerData */
	InitFunctionCallInfoData(*inner, &gate->target, 0, InvalidOid, fcinfo->context, NULL);
	result = FunctionCallInvoke(inner);
	fcinfo->isnull = inner->isnull;
	return result;
}
