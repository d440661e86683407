/*-------------------------------------------------------------------------
 *
 * check_cache.h
 *	  The CHECK constraints of the extension's tables, read and planned
 *	  once per backend (check_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CHECK_CACHE_H
#define PAYMENTS_CHECK_CACHE_H

extern void check_cache_install_hook(void);

#endif							/* PAYMENTS_CHECK_CACHE_H */
