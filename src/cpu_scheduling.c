/*-------------------------------------------------------------------------
 *
 * cpu_scheduling.c
 *	  How the worker and the recorder ask the kernel to schedule them.
 *
 * Each payment's result passes through the worker twice (the claim, then
 * the request) and through the recorder once, and each time the process
 * is woken by another: a caller's commit, the gateway's reply, a batch to
 * record.  On cores kept busy by the callers' backends, a woken process
 * may wait for the running one to use up its time slice (about 1.4 ms on
 * two cores by default) and for others queued before it; when the cores
 * are saturated the worker falls behind, and every payment waits.
 *
 * Two settings, read at start and after each reload:
 *
 * payments.worker_time_slice (microseconds; 0 leaves the kernel's
 * default).  Since Linux 6.12 (EEVDF) a process of the ordinary policy may
 * ask for a shorter slice (sched_attr.sched_runtime): its deadline comes
 * sooner, so it is run sooner after it wakes, and it may preempt the
 * running process at once.  It gets no more CPU time than before, only in
 * shorter turns.  No privilege is needed; older kernels accept the value
 * and ignore it.
 *
 * payments.worker_realtime_priority (0: off).  With a priority, the two
 * run under SCHED_RR: woken, they run at once, ahead of every backend,
 * until they wait again.  They spend a small, bounded share of the CPU
 * per payment, so the backends still get the rest (and the kernel keeps
 * 5% for ordinary processes whatever real-time ones do).  It needs
 * RLIMIT_RTPRIO of at least the priority (systemd's LimitRTPRIO=) or
 * CAP_SYS_NICE; without it the process says so and keeps the ordinary
 * policy with its slice.  Children would not inherit it
 * (SCHED_FLAG_RESET_ON_FORK).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "cpu_scheduling.h"

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

/* sched_attr.sched_flags: a child gets the ordinary policy back */
#define KERNEL_SCHED_FLAG_RESET_ON_FORK 0x01

int			payments_worker_time_slice_us = PAYMENTS_DEFAULT_TIME_SLICE_US;
int			payments_worker_realtime_priority = 0;

static bool asked = false;		/* this process asks for the settings */
static int	applied_us = -1;	/* the slice it last asked for (-1: none yet) */
static int	applied_priority = -1;	/* the priority it last asked for */
static int	ordinary_policy = -1;	/* its policy before any real-time one */

void
cpu_scheduling_define(void)
{
	DefineCustomIntVariable("payments.worker_time_slice",
							"CPU time slice, in microseconds, the worker and the recorder ask the kernel for (0: the kernel's default).",
							"A shorter slice lets them run sooner after they are woken on busy cores, with no more CPU time; Linux 6.12 and later honour it (from 100 microseconds), earlier kernels ignore it.",
							&payments_worker_time_slice_us,
							PAYMENTS_DEFAULT_TIME_SLICE_US, 0, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("payments.worker_realtime_priority",
							"Real-time priority (SCHED_RR) of the worker and the recorder (0: the ordinary policy).",
							"Woken, they then run at once, ahead of the backends; it needs RLIMIT_RTPRIO of at least this value (systemd's LimitRTPRIO=) or CAP_SYS_NICE.",
							&payments_worker_realtime_priority,
							0, 0, 99,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

static const char *
process_name(void)
{
	return MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "payments";
}

/* Ask for the settings' policy and slice now, if they changed. */
static void
apply(void)
{
	KernelSchedAttr attr;
	bool		was_realtime;

	if (applied_us == payments_worker_time_slice_us &&
		applied_priority == payments_worker_realtime_priority)
		return;
	applied_us = payments_worker_time_slice_us;
	applied_priority = payments_worker_realtime_priority;
#ifdef SYS_sched_setattr
	/*
	 * The nice value stays as it is (the server may run reniced): asking
	 * for nice 0 would be refused to a reniced process.
	 */
	memset(&attr, 0, sizeof(attr));
	if (syscall(SYS_sched_getattr, 0, &attr, sizeof(attr), 0) != 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("%s could not read its scheduling attributes: %m",
						process_name())));
		return;
	}
	was_realtime = attr.sched_policy == SCHED_RR || attr.sched_policy == SCHED_FIFO;
	if (ordinary_policy < 0)
		ordinary_policy = was_realtime ? SCHED_OTHER : (int) attr.sched_policy;
	attr.size = sizeof(attr);
	/* once set, an unprivileged process may not clear it */
	attr.sched_flags = KERNEL_SCHED_FLAG_RESET_ON_FORK;
	attr.sched_runtime = 0;
	if (payments_worker_realtime_priority > 0)
	{
		attr.sched_policy = SCHED_RR;
		attr.sched_priority = payments_worker_realtime_priority;
		if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0)
			return;
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s could not take real-time priority %d: %m",
						process_name(), payments_worker_realtime_priority),
				 errdetail("It keeps the ordinary scheduling policy."),
				 errhint("Start the server with RLIMIT_RTPRIO of at least %d (systemd: LimitRTPRIO=%d in its unit) or with CAP_SYS_NICE, or set payments.worker_realtime_priority to 0.",
						 payments_worker_realtime_priority,
						 payments_worker_realtime_priority)));
	}
	/*
	 * A real-time process's attributes leave out its nice value, which
	 * stays what it was (the server's renice): read it apart, or going
	 * back would ask for nice 0.
	 */
	if (was_realtime)
	{
		int			nice;

		errno = 0;
		nice = getpriority(PRIO_PROCESS, 0);
		if (errno == 0)
			attr.sched_nice = nice;
	}
	attr.sched_policy = ordinary_policy;
	attr.sched_priority = 0;
	attr.sched_runtime = (uint64) payments_worker_time_slice_us * 1000;
	if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
		ereport(LOG,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("%s could not take the ordinary scheduling policy with a CPU time slice of %d microseconds: %m",
						process_name(), payments_worker_time_slice_us)));
#else
	(void) attr;
#endif
}

void
cpu_scheduling_request(void)
{
	asked = true;
	apply();
}

void
cpu_scheduling_reload(void)
{
	if (asked)
		apply();
}
