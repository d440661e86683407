/*-------------------------------------------------------------------------
 *
 * wake.h
 *	  Wake the background worker when the caller's transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_WAKE_H
#define PAYMENTS_WAKE_H

extern void wake_worker_now(void);
extern void wake_worker_at_commit(void);
extern void wake_install_hooks(void);

#endif
