/*-------------------------------------------------------------------------
 *
 * recorder.h
 *	  The recorder: a background process that records the final answers
 *	  the worker hands it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_RECORDER_H
#define PAYMENTS_RECORDER_H

extern bool payments_recorder_enabled;
extern int	payments_recorder_min_batch;

extern void payments_recorder_register(void);

#endif
