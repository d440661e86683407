/*-------------------------------------------------------------------------
 *
 * time_slice.c
 *	  The CPU time slice the worker and the recorder ask the kernel for.
 *
 * Each payment's result passes through the worker twice (the claim, then
 * the request) and through the recorder once, and each time the process
 * is woken by another: a caller's commit, the gateway's reply, a batch to
 * record.  On cores kept busy by the callers' backends, a woken process
 * may wait for the running one to use up its time slice (about 1.4 ms on
 * two cores by default) and for others queued before it.  Since Linux
 * 6.12 (EEVDF) a process of the ordinary policy may ask for a shorter
 * slice (sched_attr.sched_runtime): its deadline comes sooner, so it is
 * run sooner after it wakes, and it may preempt the running process at
 * once.  It gets no more CPU time than before, only in shorter turns.
 * No privilege is needed; older kernels accept the value and ignore it.
 *
 * payments.worker_time_slice (microseconds; 0 leaves the kernel's
 * default) is read at start and after each reload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "time_slice.h"

/* The kernel's struct sched_attr (uapi/linux/sched/types.h), first version. */
typedef struct KernelSchedAttr
{
	uint32		size;
	uint32		sched_policy;
	uint64		sched_flags;
	int32		sched_nice;
	uint32		sched_priority;
	uint64		sched_runtime;
	uint64		sched_deadline;
	uint64		sched_period;
} KernelSchedAttr;

int			payments_worker_time_slice_us = PAYMENTS_DEFAULT_TIME_SLICE_US;

static bool asked = false;		/* this process asks for the setting's slice */
static int	applied_us = -1;	/* what it last asked for (-1: nothing yet) */

void
time_slice_define(void)
{
	DefineCustomIntVariable("payments.worker_time_slice",
							"CPU time slice, in microseconds, the worker and the recorder ask the kernel for (0: the kernel's default).",
							"A shorter slice lets them run sooner after they are woken on busy cores, with no more CPU time; Linux 6.12 and later honour it (from 100 microseconds), earlier kernels ignore it.",
							&payments_worker_time_slice_us,
							PAYMENTS_DEFAULT_TIME_SLICE_US, 0, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/* Ask for the setting's slice now, if it changed since the last time. */
static void
apply(void)
{
	KernelSchedAttr attr;

	if (applied_us == payments_worker_time_slice_us)
		return;
	applied_us = payments_worker_time_slice_us;
#ifdef SYS_sched_setattr
	/*
	 * The policy and nice value stay as they are (the server may run
	 * reniced): only the slice changes.  Setting the fields to zero would
	 * ask for nice 0, which a reniced process may not take back.
	 */
	memset(&attr, 0, sizeof(attr));
	if (syscall(SYS_sched_getattr, 0, &attr, sizeof(attr), 0) != 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("%s could not read its scheduling attributes: %m",
						MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "payments")));
		return;
	}
	attr.size = sizeof(attr);
	attr.sched_flags = 0;
	attr.sched_runtime = (uint64) payments_worker_time_slice_us * 1000;
	if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
		ereport(LOG,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("%s could not set its CPU time slice to %d microseconds: %m",
						MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "payments",
						payments_worker_time_slice_us)));
#else
	(void) attr;
#endif
}

void
time_slice_request(void)
{
	asked = true;
	apply();
}

void
time_slice_reload(void)
{
	if (asked)
		apply();
}
