/*-------------------------------------------------------------------------
 *
 * payments.h
 *	  Extension-wide declarations: load state and settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_H
#define PAYMENTS_H

/*
 * Defaults of the payments.* settings, in one place: the variables start
 * with them and DefineCustomIntVariable declares them (payments.c).
 */
#define PAYMENTS_DEFAULT_MAX_ATTEMPTS 12
#define PAYMENTS_DEFAULT_MAX_IN_FLIGHT 1000
#define PAYMENTS_DEFAULT_MAX_CONNECTIONS 256
#define PAYMENTS_DEFAULT_CLAIM_BATCH 200
#define PAYMENTS_DEFAULT_SETTLEMENT_CHECK_S 60
#define PAYMENTS_DEFAULT_EXCHANGE_RETENTION_DAYS 30
#define PAYMENTS_DEFAULT_IDEMPOTENCY_RETENTION_HOURS (24 * 7)
#define PAYMENTS_DEFAULT_ACCOUNT_RETRY_MIN_S 30
#define PAYMENTS_DEFAULT_ACCOUNT_RETRY_MAX_S 900
#define PAYMENTS_DEFAULT_WORKER_STATEMENT_TIMEOUT_MS 60000
#define PAYMENTS_DEFAULT_WORKER_LOCK_TIMEOUT_MS 100
#define PAYMENTS_DEFAULT_MAX_WAIT_S 30
#define PAYMENTS_DEFAULT_BILLING_INTERVAL_S 10
#define PAYMENTS_DEFAULT_BILLING_BATCH 100

/* Authorize.Net's duplicate window the worker asks for: its maximum, 8 hours */
#define PAYMENTS_DUPLICATE_WINDOW_S 28800

/* true when the library was loaded through shared_preload_libraries */
extern bool payments_preloaded;

/* payments.database: the database the background worker serves */
extern char *payments_database;
extern char *payments_merchant_id;
extern char *payments_correlation_id;
extern int	payments_max_attempts;
extern int	payments_expiring_notice_days;
extern bool payments_allow_insecure_endpoint;
extern int	payments_account_retry_min_s;
extern int	payments_account_retry_max_s;
extern int	payments_max_wait_s;

extern void payments_require_preload(void);

/* Whether the background worker serves this database (payments.database). */
extern bool payments_database_served(void);
/* Report at elevel that it does not, with the database it serves and why. */
extern void payments_report_unserved(int elevel);

/* Text or NULL as an SPI argument: the Datum, and *nullflag set. */
extern Datum payments_text_arg(const char *s, char *nullflag);

#endif
