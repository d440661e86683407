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

#include "gateway.h"

/* Both run inside a transaction (with SPI connected) the caller opened. */
extern void record_batch(dlist_head *exchanges, dlist_head *finished);
extern void record_op(GatewayOp *op);

/* Count a recorded outcome in the shared counters and latency histogram. */
extern void record_count(GatewayOp *op);

#endif
