/*-------------------------------------------------------------------------
 *
 * record_queue.h
 *	  The queue from the worker to the recorder: batches of results to
 *	  record, and what became of each.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_RECORD_QUEUE_H
#define PAYMENTS_RECORD_QUEUE_H

#include "lib/stringinfo.h"

/* What became of a batch handed to the recorder. */
typedef enum BatchFate
{
	BATCH_PENDING,				/* not recorded yet */
	BATCH_RECORDED,				/* committed */
	BATCH_FAILED				/* the recorder's transaction failed */
} BatchFate;

/* At most this many batches are handed over and not yet answered. */
#define RECORD_QUEUE_BATCHES 64

extern Size record_queue_shmem_size(void);
extern void record_queue_shmem_init(void);

/* the worker's side */
extern uint32 record_queue_recorder(void);
extern bool record_queue_put(uint32 recorder_pid, uint64 *batch_id, const char *data, Size len);
extern BatchFate record_queue_fate(uint64 batch_id);

/* the recorder's side */
extern void record_queue_attach(uint32 pid, int procno);
extern void record_queue_detach(void);
extern bool record_queue_get(StringInfo out, uint64 *batch_id);
extern void record_queue_done(uint64 batch_id, bool recorded);

/* counters for pay_metrics */
extern uint64 record_queue_recorded_batches(void);
extern uint64 record_queue_recorded_results(void);
extern void record_queue_count_results(uint64 n);
extern void record_queue_set_recorder_memory(uint64 bytes);
extern uint64 record_queue_recorder_memory(void);

#endif
