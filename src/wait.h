/*-------------------------------------------------------------------------
 *
 * wait.h
 *	  pay_wait's shared memory: for whom each backend waits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_WAIT_H
#define PAYMENTS_WAIT_H

#define PAYMENTS_DEFAULT_MAX_WAITS_PER_MERCHANT 4

extern int	payments_max_waits_per_merchant;

extern Size wait_shmem_size(void);
extern void wait_shmem_init(void);

#endif
