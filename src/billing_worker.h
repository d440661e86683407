/*-------------------------------------------------------------------------
 *
 * billing_worker.h
 *	  The billing process: subscription renewals and dunning retries on
 *	  their own clock, beside the worker that sends their charges.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_BILLING_WORKER_H
#define PAYMENTS_BILLING_WORKER_H

extern int	payments_billing_interval_s;
extern int	payments_billing_batch;

extern void payments_billing_register(void);

#endif
