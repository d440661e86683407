/*-------------------------------------------------------------------------
 *
 * core_dumps.h
 *	  No core files of the server's processes (core_dumps.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CORE_DUMPS_H
#define PAYMENTS_CORE_DUMPS_H

extern void core_dumps_init(void);

#endif
