/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The payments background worker and its settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_WORKER_H
#define PAYMENTS_WORKER_H

extern int	payments_max_in_flight;
extern int	payments_max_connections;
extern int	payments_claim_batch;
extern int	payments_settlement_check_s;
extern int	payments_exchange_retention_days;
extern int	payments_idempotency_retention_hours;
extern int	payments_worker_statement_timeout;

extern void payments_worker_register(void);

#endif
