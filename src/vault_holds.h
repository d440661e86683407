/*-------------------------------------------------------------------------
 *
 * vault_holds.h
 *	  Which open (or prepared) transactions sealed card data under which
 *	  vault key (vault_holds.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_VAULT_HOLDS_H
#define PAYMENTS_VAULT_HOLDS_H

extern Size vault_holds_shmem_size(void);
extern void vault_holds_shmem_init(void);
extern uint32 vault_hold_sealing_key(void);
extern bool vault_older_key_held(uint32 current_generation);

#endif
