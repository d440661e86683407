/*-------------------------------------------------------------------------
 *
 * core_dumps.c
 *	  Keep the server's processes from writing core files.
 *
 * A core file holds what the process's memory held: the card vault's
 * sealing keys (shared memory, which a core includes by default), a card
 * number and security code in a statement's text in the backend that
 * received it, a request on its way to the gateway in the worker.  With
 * the keys, the sealed cards in the vault's data file open.  So the
 * postmaster makes itself non-dumpable at start, and every process it
 * forks (backends, the worker, the recorder, other extensions' workers)
 * inherits that: the kernel writes no core file of them, and only root may
 * attach a debugger or read their memory.  payments.core_dumps = on leaves
 * the processes as they were (for debugging a crash on a server that takes
 * no real cards).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <sys/prctl.h>

#include "utils/guc.h"

#include "core_dumps.h"

static bool payments_core_dumps = false;

/* Define payments.core_dumps and apply it; the postmaster's _PG_init only. */
void
core_dumps_init(void)
{
	DefineCustomBoolVariable("payments.core_dumps",
							 "Lets the server's processes write core files (they can hold card data and the vault's keys).",
							 "Off, the postmaster makes itself and every process it starts non-dumpable: no core files, and only root may attach a debugger.",
							 &payments_core_dumps,
							 false,
							 PGC_POSTMASTER,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);
	if (payments_core_dumps)
		return;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		ereport(WARNING,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("payments could not turn off core dumps: %m"),
				 errdetail("A core file of a server process could hold card data and the card vault's sealing keys."),
				 errhint("Turn off core files for the server (ulimit -c 0, or LimitCORE=0 in its systemd unit).")));
}
