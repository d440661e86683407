/*-------------------------------------------------------------------------
 *
 * time_slice.h
 *	  The CPU time slice the worker and the recorder ask for (time_slice.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_TIME_SLICE_H
#define PAYMENTS_TIME_SLICE_H

#define PAYMENTS_DEFAULT_TIME_SLICE_US 300

extern int	payments_worker_time_slice_us;

extern void time_slice_define(void);
extern void time_slice_request(void);
extern void time_slice_reload(void);

#endif
