/*-------------------------------------------------------------------------
 *
 * record.h
 *	  Step 3 of an attempt: outcomes and exchanges into the database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_RECORD_H
#define PAYMENTS_RECORD_H

#include "lib/ilist.h"
#include "lib/stringinfo.h"

#include "gateway.h"

/* Both run inside a transaction (with SPI connected) the caller opened. */
extern void record_batch(dlist_head *exchanges, dlist_head *finished);
extern void record_exchanges(dlist_head *exchanges);
extern void record_op(GatewayOp *op);

/*
 * The recorder's share (recorder.c): the final answers to purchases and
 * authorizations, and the exchanges that came with them, as bytes the
 * worker makes outside any transaction and the recorder runs in one.
 */
extern bool record_by_recorder(GatewayOp *op);
extern void record_batch_serialize(dlist_head *exchanges, dlist_head *ops, StringInfo out);
extern int	record_serialized(const char *data, Size len, bool exchanges_only);

/* Count a recorded outcome in the shared counters and latency histogram. */
extern void record_count(GatewayOp *op);

#endif
