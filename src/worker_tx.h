/*-------------------------------------------------------------------------
 *
 * worker_tx.h
 *	  The connection and the transaction guard the extension's background
 *	  processes share (worker_tx.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_WORKER_TX_H
#define PAYMENTS_WORKER_TX_H

#include "port/atomics.h"

extern void worker_register(const char *function, const char *name);
extern void worker_connect(pg_atomic_uint32 *connect_failures);
extern bool in_transaction(const char *what, void (*fn) (void *), void *arg);
extern void check_interrupts(void);

#endif
