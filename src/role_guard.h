/*-------------------------------------------------------------------------
 *
 * role_guard.h
 *	  The name guard and the card guard after statements on roles and
 *	  ownership, which fire no event trigger.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_ROLE_GUARD_H
#define PAYMENTS_ROLE_GUARD_H

extern void role_guard_init(void);

#endif
