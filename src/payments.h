/*-------------------------------------------------------------------------
 *
 * payments.h
 *	  Extension-wide declarations: load state and settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_H
#define PAYMENTS_H

/* true when the library was loaded through shared_preload_libraries */
extern bool payments_preloaded;

/* payments.database: the database the background worker serves */
extern char *payments_database;
extern char *payments_merchant_id;
extern char *payments_correlation_id;
extern int	payments_max_attempts;

extern void payments_require_preload(void);

/* Text or NULL as an SPI argument: the Datum, and *nullflag set. */
extern Datum payments_text_arg(const char *s, char *nullflag);

#endif
