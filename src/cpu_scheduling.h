/*-------------------------------------------------------------------------
 *
 * cpu_scheduling.h
 *	  How the worker and the recorder ask the kernel to schedule them
 *	  (cpu_scheduling.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CPU_SCHEDULING_H
#define PAYMENTS_CPU_SCHEDULING_H

#define PAYMENTS_DEFAULT_TIME_SLICE_US 300

extern int	payments_worker_time_slice_us;
extern int	payments_worker_realtime_priority;

extern void cpu_scheduling_define(void);
extern void cpu_scheduling_request(void);
extern void cpu_scheduling_reload(void);

#endif
