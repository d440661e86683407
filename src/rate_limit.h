/*-------------------------------------------------------------------------
 *
 * rate_limit.h
 *	  Token buckets in shared memory: request rates per API key and per
 *	  merchant, and the keys' last use.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_RATE_LIMIT_H
#define PAYMENTS_RATE_LIMIT_H

#include "datatype/timestamp.h"

/* what a bucket counts */
#define RATE_BUCKET_KEY			'k'
#define RATE_BUCKET_MERCHANT	'm'

/* shared memory: the size to reserve, and attaching (under AddinShmemInitLock) */
extern Size rate_limit_shmem_size(void);
extern void rate_limit_shmem_init(void);

/*
 * Take one request from the bucket of (this database, kind, id) that holds
 * at most burst requests and refills rate per second.  True when allowed;
 * otherwise false and *retry_ms says when one request will be there.
 * Always true when rate is 0 (no limit) or shared memory is not there.
 * For a key (touch_used), also notes now as its last use; *flush is set
 * when its last use was not written to the table for a minute (the caller
 * that gets it writes it, and no one else for a minute).
 */
extern bool rate_limit_take(char kind, int64 id, int rate, int burst, TimestampTz now,
							int64 *retry_ms, bool touch_used, bool *flush);

/* The last use of a key noted in shared memory since the server started, or 0. */
extern TimestampTz rate_limit_last_used(int64 key_id);

#endif
