/*-------------------------------------------------------------------------
 *
 * record_queue.c
 *	  The queue from the worker to the recorder (recorder.c), in shared
 *	  memory: a ring of batches the worker writes and the recorder reads
 *	  (one writer, one reader), and the fate of each batch, which the
 *	  recorder writes and the worker reads.
 *
 * A batch is bytes record.c made (record_batch_serialize): nothing in it
 * points anywhere.  It carries the recorder generation it was meant for: a
 * recorder that starts again discards what its predecessor left unread and
 * skips any batch meant for another generation, and the worker, seeing the
 * generation change, records such batches itself.  A batch is never lost
 * and never half-recorded: either the recorder's transaction commits it
 * whole, or the worker records it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "record_queue.h"
#include "shmem.h"

/* Room for a few seconds of results at thousands a second. */
#define RING_BYTES (8 * 1024 * 1024)

/* in front of each batch in the ring */
typedef struct BatchHeader
{
	uint64		batch_id;
	uint32		generation;		/* the recorder it was meant for */
	uint32		len;			/* payload bytes (then padding to MAXALIGN) */
} BatchHeader;

typedef struct RecordQueue
{
	pg_atomic_uint32 recorder_pid;	/* 0: no recorder */
	pg_atomic_uint32 recorder_procno;	/* its pgprocno + 1 */
	pg_atomic_uint32 generation;	/* bumped by each recorder that starts */
	pg_atomic_uint64 head;		/* bytes written (the worker) */
	pg_atomic_uint64 tail;		/* bytes read (the recorder) */
	pg_atomic_uint64 next_batch;
	/* batch_id << 2 | fate, of the batch whose id is the index modulo */
	pg_atomic_uint64 fates[RECORD_QUEUE_BATCHES];
	pg_atomic_uint64 recorded_batches;
	pg_atomic_uint64 recorded_results;
	pg_atomic_uint64 recorder_memory;	/* bytes under its TopMemoryContext */
	char		ring[RING_BYTES];
} RecordQueue;

static RecordQueue *queue = NULL;

/* in the recorder: the generation it attached as */
static uint32 my_generation = 0;

Size
record_queue_shmem_size(void)
{
	return MAXALIGN(sizeof(RecordQueue));
}

/* Called from the shared memory startup hook, AddinShmemInitLock held. */
void
record_queue_shmem_init(void)
{
	bool		found;

	queue = ShmemInitStruct("payments record queue", sizeof(RecordQueue), &found);
	if (found)
		return;
	pg_atomic_init_u32(&queue->recorder_pid, 0);
	pg_atomic_init_u32(&queue->recorder_procno, 0);
	pg_atomic_init_u32(&queue->generation, 0);
	pg_atomic_init_u64(&queue->head, 0);
	pg_atomic_init_u64(&queue->tail, 0);
	pg_atomic_init_u64(&queue->next_batch, 1);
	for (int i = 0; i < RECORD_QUEUE_BATCHES; i++)
		pg_atomic_init_u64(&queue->fates[i], 0);
	pg_atomic_init_u64(&queue->recorded_batches, 0);
	pg_atomic_init_u64(&queue->recorded_results, 0);
	pg_atomic_init_u64(&queue->recorder_memory, 0);
}

/* Copy len bytes into the ring at byte position pos, wrapping around. */
static void
ring_write(uint64 pos, const void *src, Size len)
{
	Size		at = pos % RING_BYTES;
	Size		first = Min(len, RING_BYTES - at);

	memcpy(queue->ring + at, src, first);
	if (first < len)
		memcpy(queue->ring, (const char *) src + first, len - first);
}

static void
ring_read(uint64 pos, void *dst, Size len)
{
	Size		at = pos % RING_BYTES;
	Size		first = Min(len, RING_BYTES - at);

	memcpy(dst, queue->ring + at, first);
	if (first < len)
		memcpy((char *) dst + first, queue->ring, len - first);
}

/* The generation of the recorder running now, 0 when none runs. */
uint32
record_queue_recorder(void)
{
	if (pg_atomic_read_u32(&queue->recorder_pid) == 0)
		return 0;
	return pg_atomic_read_u32(&queue->generation);
}

/*
 * Hand a batch to the recorder of this generation: false when the ring has
 * no room for it (the worker records it itself).  Sets *batch_id.
 */
bool
record_queue_put(uint32 generation, uint64 *batch_id, const char *data, Size len)
{
	BatchHeader h;
	uint64		head = pg_atomic_read_u64(&queue->head);
	uint64		tail = pg_atomic_read_u64(&queue->tail);
	Size		total = sizeof(BatchHeader) + MAXALIGN(len);

	if (len > PG_UINT32_MAX || total > RING_BYTES - (head - tail))
		return false;
	h.batch_id = pg_atomic_fetch_add_u64(&queue->next_batch, 1);
	h.generation = generation;
	h.len = (uint32) len;
	pg_atomic_write_u64(&queue->fates[h.batch_id % RECORD_QUEUE_BATCHES],
						h.batch_id << 2 | BATCH_PENDING);
	ring_write(head, &h, sizeof(h));
	ring_write(head + sizeof(h), data, len);
	/* the bytes before the position that shows them */
	pg_write_barrier();
	pg_atomic_write_u64(&queue->head, head + total);
	payments_set_latch_of(&queue->recorder_procno);
	*batch_id = h.batch_id;
	return true;
}

/*
 * What became of a batch: pending, recorded, or failed.  A batch whose slot
 * holds another id (never, while no more than RECORD_QUEUE_BATCHES are
 * outstanding) counts as failed.
 */
BatchFate
record_queue_fate(uint64 batch_id)
{
	uint64		v = pg_atomic_read_u64(&queue->fates[batch_id % RECORD_QUEUE_BATCHES]);

	if (v >> 2 != batch_id)
		return BATCH_FAILED;
	return (BatchFate) (v & 3);
}

/*
 * The recorder starts: what the ring holds was meant for its predecessor
 * (the worker records that itself), then it shows itself.
 */
void
record_queue_attach(uint32 pid, int procno)
{
	pg_atomic_write_u64(&queue->tail, pg_atomic_read_u64(&queue->head));
	my_generation = pg_atomic_add_fetch_u32(&queue->generation, 1);
	pg_atomic_write_u32(&queue->recorder_procno, (uint32) procno + 1);
	pg_write_barrier();
	pg_atomic_write_u32(&queue->recorder_pid, pid);
}

void
record_queue_detach(void)
{
	pg_atomic_write_u32(&queue->recorder_pid, 0);
	pg_atomic_write_u32(&queue->recorder_procno, 0);
}

/*
 * The next batch meant for this recorder, copied into out (whose data is
 * MAXALIGNed, as record_serialized needs); false when none is waiting.
 */
bool
record_queue_get(StringInfo out, uint64 *batch_id)
{
	for (;;)
	{
		uint64		tail = pg_atomic_read_u64(&queue->tail);
		uint64		head = pg_atomic_read_u64(&queue->head);
		BatchHeader h;

		if (head == tail)
			return false;
		/* the position before the bytes it shows */
		pg_read_barrier();
		ring_read(tail, &h, sizeof(h));
		resetStringInfo(out);
		enlargeStringInfo(out, h.len);
		ring_read(tail + sizeof(h), out->data, h.len);
		out->len = h.len;
		out->data[h.len] = '\0';
		/* read before the room is given back */
		pg_memory_barrier();
		pg_atomic_write_u64(&queue->tail, tail + sizeof(h) + MAXALIGN(h.len));
		if (h.generation == my_generation)
		{
			*batch_id = h.batch_id;
			return true;
		}
	}
}

/* The recorder says what became of a batch, and wakes the worker. */
void
record_queue_done(uint64 batch_id, bool recorded)
{
	pg_atomic_write_u64(&queue->fates[batch_id % RECORD_QUEUE_BATCHES],
						batch_id << 2 | (recorded ? BATCH_RECORDED : BATCH_FAILED));
	if (recorded)
		pg_atomic_fetch_add_u64(&queue->recorded_batches, 1);
	payments_set_latch_of(&payments_shared->worker_procno);
}

void
record_queue_count_results(uint64 n)
{
	pg_atomic_fetch_add_u64(&queue->recorded_results, n);
}

uint64
record_queue_recorded_batches(void)
{
	return pg_atomic_read_u64(&queue->recorded_batches);
}

uint64
record_queue_recorded_results(void)
{
	return pg_atomic_read_u64(&queue->recorded_results);
}

void
record_queue_set_recorder_memory(uint64 bytes)
{
	pg_atomic_write_u64(&queue->recorder_memory, bytes);
}

uint64
record_queue_recorder_memory(void)
{
	return pg_atomic_read_u64(&queue->recorder_memory);
}
