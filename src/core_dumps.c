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
 * postmaster lowers its core file size limit, soft and hard, to 1 byte at
 * start, and every process it forks inherits it (an unprivileged process
 * cannot raise a hard limit): the kernel writes no core file below a page,
 * and a limit of exactly 1 is the one value that also stops a core from
 * being piped to a handler (systemd-coredump, apport; see core(5)).
 *
 * Not PR_SET_DUMPABLE: the kernel then hands the process's /proc files to
 * root, and a backend could no longer reset its own OOM score
 * (PG_OOM_ADJUST_FILE, which Debian's pg_ctlcluster and systemd unit use
 * to keep the postmaster alone out of the OOM killer's way).
 *
 * payments.core_dumps = on leaves the limit as it was (for debugging a
 * crash on a server that takes no real cards).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "utils/guc.h"

#include "core_dumps.h"

static bool payments_core_dumps = false;

/* Define payments.core_dumps and apply it; the postmaster's _PG_init only. */
void
core_dumps_init(void)
{
	struct rlimit none = {1, 1};

	DefineCustomBoolVariable("payments.core_dumps",
							 "Lets the server's processes write core files (they can hold card data and the vault's keys).",
							 "Off, the postmaster sets the core file size limit of itself and every process it starts to 1 byte: no core file, written or piped.",
							 &payments_core_dumps,
							 false,
							 PGC_POSTMASTER,
							 GUC_SUPERUSER_ONLY,
							 NULL, NULL, NULL);
	if (payments_core_dumps)
		return;
	if (setrlimit(RLIMIT_CORE, &none) != 0)
		ereport(WARNING,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("payments could not turn off core files: %m"),
				 errdetail("A core file of a server process could hold card data and the card vault's sealing keys."),
				 errhint("Turn off core files for the server (ulimit -c 0, or LimitCORE=0 in its systemd unit).")));
}
