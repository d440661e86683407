/*-------------------------------------------------------------------------
 *
 * worker_tx.h
 *	  The connection, the transaction guard and the kept plans the
 *	  extension's background processes share (worker_tx.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_WORKER_TX_H
#define PAYMENTS_WORKER_TX_H

#include "executor/spi.h"
#include "port/atomics.h"

extern int	payments_worker_lock_timeout;

extern void worker_register(const char *function, const char *name);
extern void worker_connect(pg_atomic_uint32 *connect_failures);
extern void helper_start(pg_atomic_uint32 *connect_failures, const char *appname);
extern void loop_start(MemoryContext loop_cxt, pg_atomic_uint64 *conf_loaded_at);
extern void limit_lock_waits(void);
extern void background_session_settings(void);
extern bool in_transaction(const char *what, void (*fn) (void *), void *arg);
extern bool last_failure_was_lock(void);
extern bool failed_for_missing_object(void);
extern void check_interrupts(void);
extern SPIPlanPtr worker_kept_plan(SPIPlanPtr *plan, const char *sql, int n, Oid *types);

#endif
