/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  The audit trigger's process setup (src/audit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_AUDIT_H
#define PAYMENTS_AUDIT_H

extern void audit_install_hooks(void);

#endif							/* PAYMENTS_AUDIT_H */
