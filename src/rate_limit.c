/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *	  Token buckets in shared memory, per API key and per merchant.
 *
 * A fixed-size table in the extension's shared memory: RATE_PARTITIONS
 * partitions of RATE_SLOTS_PER_PARTITION slots, each partition under its
 * own spinlock.  A bucket is found by hashing (database, kind, id) to a
 * partition and a start slot, then probing at most RATE_PROBE slots of that
 * partition.  Requests of different keys (or merchants) meet only when they
 * hash to the same partition, and then only for the few instructions of a
 * probe: no table row is read or written per request, so nothing queues
 * behind a row lock.
 *
 * A full probe window evicts its least recently used bucket.  An evicted
 * bucket comes back full, which is what an idle bucket would be anyway
 * once it refilled.  The state of busy ones is forgotten when more than
 * RATE_PROBE busy buckets crowd one window: certain with more than the
 * table's 8192 slots in use, possible (rarely) with far fewer when their
 * hashes fall close together (README "Rate limits"); the limits are then
 * lenient, never stricter.  Buckets start full at server start.
 *
 * The key's bucket also notes its last use, which the caller writes to
 * payments.api_keys at most once a minute per key (api_keys.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "rate_limit.h"

#define RATE_PARTITIONS				64
#define RATE_SLOTS_PER_PARTITION	128
#define RATE_PROBE					16
/* how often a key's last use is written to its row, at most */
#define LAST_USED_FLUSH_US			(60 * USECS_PER_SEC)

typedef struct RateBucket
{
	Oid			dboid;			/* InvalidOid: free */
	char		kind;
	int64		id;
	double		tokens;
	TimestampTz refilled;		/* when tokens was computed; LRU order */
	TimestampTz last_used;		/* keys: last request */
	TimestampTz flushed;		/* keys: when a caller was told to write it */
} RateBucket;

typedef struct RatePartition
{
	slock_t		lock;
	RateBucket	slots[RATE_SLOTS_PER_PARTITION];
} RatePartition;

static RatePartition *partitions = NULL;

Size
rate_limit_shmem_size(void)
{
	return MAXALIGN(mul_size(sizeof(RatePartition), RATE_PARTITIONS));
}

void
rate_limit_shmem_init(void)
{
	bool		found;
	int			i;

	partitions = ShmemInitStruct("payments rate limits", rate_limit_shmem_size(), &found);
	if (!found)
	{
		memset(partitions, 0, rate_limit_shmem_size());
		for (i = 0; i < RATE_PARTITIONS; i++)
			SpinLockInit(&partitions[i].lock);
	}
}

static uint32
bucket_hash(char kind, int64 id)
{
	struct
	{
		Oid			dboid;
		int32		kind;
		int64		id;
	}			k;

	memset(&k, 0, sizeof(k));
	k.dboid = MyDatabaseId;
	k.kind = kind;
	k.id = id;
	return hash_bytes((const unsigned char *) &k, sizeof(k));
}

/*
 * The bucket of (kind, id) in partition p, starting the probe at slot
 * start: found, else a free slot, else the least recently used one (both
 * reset).  The caller holds the partition's lock.
 */
static RateBucket *
find_bucket(RatePartition *p, uint32 start, char kind, int64 id, int burst, TimestampTz now)
{
	RateBucket *free_slot = NULL;
	RateBucket *oldest = NULL;
	RateBucket *b;
	int			i;

	for (i = 0; i < RATE_PROBE; i++)
	{
		b = &p->slots[(start + i) % RATE_SLOTS_PER_PARTITION];
		if (b->dboid == MyDatabaseId && b->kind == kind && b->id == id)
			return b;
		if (b->dboid == InvalidOid)
		{
			if (free_slot == NULL)
				free_slot = b;
		}
		else if (oldest == NULL || b->refilled < oldest->refilled)
			oldest = b;
	}
	b = free_slot ? free_slot : oldest;
	b->dboid = MyDatabaseId;
	b->kind = kind;
	b->id = id;
	b->tokens = burst;
	b->refilled = now;
	b->last_used = 0;
	b->flushed = 0;
	return b;
}

bool
rate_limit_take(char kind, int64 id, int rate, int burst, TimestampTz now,
				int64 *retry_ms, bool touch_used, bool *flush)
{
	uint32		h;
	RatePartition *p;
	RateBucket *b;
	bool		allowed = true;
	double		missing = 0;

	*retry_ms = 0;
	if (flush)
		*flush = false;
	if (partitions == NULL || (rate <= 0 && !touch_used))
		return true;
	if (burst < 1)
		burst = 1;
	h = bucket_hash(kind, id);
	p = &partitions[h % RATE_PARTITIONS];

	SpinLockAcquire(&p->lock);
	b = find_bucket(p, (h / RATE_PARTITIONS) % RATE_SLOTS_PER_PARTITION, kind, id, burst, now);
	if (rate > 0)
	{
		double		elapsed = now > b->refilled ? (double) (now - b->refilled) / USECS_PER_SEC : 0;

		b->tokens = Min((double) burst, b->tokens + elapsed * rate);
		if (b->tokens >= 1.0)
			b->tokens -= 1.0;
		else
		{
			allowed = false;
			missing = 1.0 - b->tokens;
		}
	}
	b->refilled = Max(b->refilled, now);
	if (touch_used)
	{
		b->last_used = Max(b->last_used, now);
		if (flush && now - b->flushed >= LAST_USED_FLUSH_US)
		{
			b->flushed = now;
			*flush = true;
		}
	}
	SpinLockRelease(&p->lock);

	if (!allowed)
		*retry_ms = (int64) ceil(missing * 1000.0 / rate);
	return allowed;
}

TimestampTz
rate_limit_last_used(int64 key_id)
{
	uint32		h;
	RatePartition *p;
	TimestampTz result = 0;
	int			i;

	if (partitions == NULL)
		return 0;
	h = bucket_hash(RATE_BUCKET_KEY, key_id);
	p = &partitions[h % RATE_PARTITIONS];
	SpinLockAcquire(&p->lock);
	for (i = 0; i < RATE_PROBE; i++)
	{
		RateBucket *b = &p->slots[((h / RATE_PARTITIONS) + i) % RATE_SLOTS_PER_PARTITION];

		if (b->dboid == MyDatabaseId && b->kind == RATE_BUCKET_KEY && b->id == key_id)
		{
			result = b->last_used;
			break;
		}
	}
	SpinLockRelease(&p->lock);
	return result;
}
