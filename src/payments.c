/*-------------------------------------------------------------------------
 *
 * payments.c
 *	  Module load: settings, the preload requirement.
 *
 * The extension must be in shared_preload_libraries: its background worker
 * and shared memory can only be set up by the postmaster, and the card
 * vault key is loaded there once.  CREATE EXTENSION checks this and refuses
 * with a hint when the library was loaded late.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "amount_sort.h"
#include "anet/anet_fields.h"
#include "api_keys.h"
#include "card.h"
#include "card_query_text.h"
#include "check_cache.h"
#include "core_dumps.h"
#include "curl_memory.h"
#include "errcodes.h"
#include "free_text.h"
#include "payments.h"
#include "shmem.h"
#include "cpu_scheduling.h"
#include "audit.h"
#include "wake.h"
#include "billing_worker.h"
#include "recorder.h"
#include "role_guard.h"
#include "wait.h"
#include "worker.h"
#include "worker_tx.h"

PG_MODULE_MAGIC;

bool		payments_preloaded = false;
char	   *payments_database = NULL;
char	   *payments_merchant_id = NULL;
char	   *payments_correlation_id = NULL;
int			payments_max_attempts = PAYMENTS_DEFAULT_MAX_ATTEMPTS;
int			payments_expiring_notice_days = 30;
bool		payments_allow_insecure_endpoint = false;
int			payments_account_retry_min_s = PAYMENTS_DEFAULT_ACCOUNT_RETRY_MIN_S;
int			payments_account_retry_max_s = PAYMENTS_DEFAULT_ACCOUNT_RETRY_MAX_S;
int			payments_max_wait_s = PAYMENTS_DEFAULT_MAX_WAIT_S;

/* read by SQL only (current_setting), through payments._billing_now */
static bool payments_test_clocks = false;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(pay_assert_preloaded);
PG_FUNCTION_INFO_V1(pay_warn_unserved_database);
PG_FUNCTION_INFO_V1(pay_note_unserved_database);

/*
 * payments.correlation_id is kept on rows, sent as refId and copied into
 * audit rows: one over FREE_TEXT_CORRELATION_ID_MAX_CHARS characters is
 * refused (22001, the value not quoted), and its card numbers are masked
 * as it is set (free_text.c), so that every reader sees the masked text.
 * In place: masking keeps the length.
 */
/*
 * Whether the gateway can carry every character of a correlation id, else
 * the first it cannot (its index in characters, its code point).  Refused
 * as it is set rather than only at the call that sends it (22Y24 there
 * too, gateway_input.c), so a setting the gateway cannot carry never
 * stands.  The control characters are the same bytes in every server
 * encoding; U+FFFE and U+FFFF are looked for only in UTF8 (a setting of
 * the config file is read before the database's encoding is known).
 */
static bool
correlation_id_carriable(const char *value, int *nchars, unsigned int *bad_cp)
{
	size_t		len = strlen(value);
	size_t		n = 0;

	if (GetDatabaseEncoding() == PG_UTF8)
	{
		if (anet_text_check(value, len, &n, bad_cp) != ANET_TEXT_BAD_CHAR)
			return true;
		*nchars = (int) n;
		return false;
	}
	/*
	 * bounded: a value read from the config file or a startup packet is not
	 * verified, and may end in half a character
	 */
	for (const char *c = value; *c; c += pg_encoding_mblen_bounded(GetDatabaseEncoding(), c), n++)
	{
		if (IS_HIGHBIT_SET(*c) || anet_xml_char_ok((unsigned char) *c))
			continue;
		*nchars = (int) n;
		*bad_cp = (unsigned char) *c;
		return false;
	}
	return true;
}

static bool
check_correlation_id(char **newval, void **extra pg_attribute_unused(),
					 GucSource source pg_attribute_unused())
{
	int			nchars;
	unsigned int bad_cp = 0;

	if (*newval == NULL)
		return true;
	nchars = free_text_correlation_id_excess(*newval, strlen(*newval));
	if (nchars > 0)
	{
		GUC_check_errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION);
		GUC_check_errmsg("correlation id is longer than %d characters", FREE_TEXT_CORRELATION_ID_MAX_CHARS);
		GUC_check_errdetail("payments.correlation_id has %d characters; a correlation id is kept on every row, event and audit row of the request.",
							nchars);
		GUC_check_errhint("Set payments.correlation_id to at most %d characters, such as a UUID.",
						  FREE_TEXT_CORRELATION_ID_MAX_CHARS);
		return false;
	}
	if (!correlation_id_carriable(*newval, &nchars, &bad_cp))
	{
		GUC_check_errcode(ERRCODE_PAY_GATEWAY_CHARACTER);
		GUC_check_errmsg("correlation id contains a character the gateway cannot carry");
		GUC_check_errdetail("Character %d is U+%04X; the correlation id is sent to the gateway as refId, in XML, which cannot carry control characters other than tab, line feed and carriage return, nor U+FFFE or U+FFFF.",
							nchars + 1, bad_cp);
		GUC_check_errhint("Set payments.correlation_id to printable characters, such as a UUID.");
		return false;
	}
	(void) free_text_mask(*newval, strlen(*newval));
	return true;
}

/*
 * Define settings; note whether we are being preloaded.  A late load (no
 * preload) defines only the per-session settings, so that CREATE EXTENSION
 * can reach its friendly error instead of a FATAL.
 */
void
_PG_init(void)
{
	bool		curl_wipes;

	DefineCustomStringVariable("payments.merchant_id",
							   "Merchant the session acts for when no JWT claim names one.",
							   "Empty means the default merchant.",
							   &payments_merchant_id,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("payments.correlation_id",
							   "Correlation id of the current request, when no x-request-id header gives one.",
							   "At most " CppAsString2(FREE_TEXT_CORRELATION_ID_MAX_CHARS) " characters. Sent to the gateway as refId and kept on every row the request creates; the digits of a card number in it are masked as it is set (a UUID or a W3C traceparent is kept as it is).",
							   &payments_correlation_id,
							   "",
							   PGC_USERSET,
							   0,
							   check_correlation_id, NULL, NULL);

	DefineCustomIntVariable("payments.expiring_notice_days",
							"Days before a stored card stops working that its payment_method.expiring event is written.",
							NULL,
							&payments_expiring_notice_days,
							30, 0, 3660,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.max_attempts",
							"Attempts after which a gateway operation becomes a dead letter.",
							NULL,
							&payments_max_attempts,
							PAYMENTS_DEFAULT_MAX_ATTEMPTS, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("payments.allow_insecure_endpoint",
							 "Lets pay_configure_gateway accept an http:// gateway endpoint (tests only).",
							 "Over http the transaction key and card numbers travel in clear.",
							 &payments_allow_insecure_endpoint,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payments.account_retry_min",
							"First wait before retrying a merchant whose gateway account failed.",
							"An account error (wrong credentials, inactive account, missing permission) holds the merchant's operations; the wait doubles with each failure in a row.",
							&payments_account_retry_min_s,
							PAYMENTS_DEFAULT_ACCOUNT_RETRY_MIN_S, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.account_retry_max",
							"Longest wait before retrying a merchant whose gateway account failed.",
							NULL,
							&payments_account_retry_max_s,
							PAYMENTS_DEFAULT_ACCOUNT_RETRY_MAX_S, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.max_wait",
							"Longest timeout pay_wait accepts.",
							"A waiting call holds a connection; API roles cannot raise this.",
							&payments_max_wait_s,
							PAYMENTS_DEFAULT_MAX_WAIT_S, 0, 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.max_waits_per_merchant",
							"Most pay_wait calls of one merchant that wait at a time (0: no limit).",
							"One more is refused with PT429: behind PostgREST the waiting calls of one merchant would hold every connection of the pool.",
							&payments_max_waits_per_merchant,
							PAYMENTS_DEFAULT_MAX_WAITS_PER_MERCHANT, 0, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("payments.test_clocks",
							 "Lets merchants freeze and move their billing clock (tests and demonstrations only).",
							 "While on, pay_set_test_clock and pay_advance_test_clock decide when renewals and dunning retries fall due.",
							 &payments_test_clocks,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	payments_api_keys_define_settings();

	if (!process_shared_preload_libraries_in_progress)
	{
		MarkGUCPrefixReserved("payments");
		return;
	}

	/* postmaster-only settings can be defined only at preload time */
	DefineCustomStringVariable("payments.database",
							   "Database served by the payments background worker.",
							   "The worker waits quietly until the extension is created there.",
							   &payments_database,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("payments.max_in_flight",
							"Gateway requests the worker keeps in flight at most.",
							NULL,
							&payments_max_in_flight,
							PAYMENTS_DEFAULT_MAX_IN_FLIGHT, 1, 20000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.max_connections",
							"Connections the worker opens to the gateway at most.",
							"Requests beyond this wait for a free connection.",
							&payments_max_connections,
							PAYMENTS_DEFAULT_MAX_CONNECTIONS, 1, 10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.claim_batch",
							"Operations the worker claims per transaction.",
							NULL,
							&payments_claim_batch,
							PAYMENTS_DEFAULT_CLAIM_BATCH, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("payments.recorder",
							 "Lets the recorder, a background process beside the worker, record the final answers to purchases and authorizations.",
							 "Off, the worker records every outcome itself, as it does whenever the recorder is not running or falls behind.",
							 &payments_recorder_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("payments.recorder_min_batch",
							"Fewest final answers the worker hands to the recorder at once; fewer it records itself.",
							"A small batch costs the worker little to record in the transaction that claims the next operations, and less time than waking the recorder; a large one would hold up claiming and reading replies for as long as it takes.",
							&payments_recorder_min_batch,
							32, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.billing_interval",
							"Seconds between the billing process's runs of due subscription renewals and dunning retries (0: it runs none).",
							"Set 0 where pg_cron or another scheduler calls pay_run_renewals and pay_run_dunning instead.  A run that finds a full batch goes on at once until the backlog is worked through.",
							&payments_billing_interval_s,
							PAYMENTS_DEFAULT_BILLING_INTERVAL_S, 0, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.billing_batch",
							"Subscriptions (renewals) or invoices (dunning retries) the billing process bills per transaction.",
							NULL,
							&payments_billing_batch,
							PAYMENTS_DEFAULT_BILLING_BATCH, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.settlement_check_interval",
							"Seconds between the worker's checks of the gateway's settled batches and of payments held for review.",
							NULL,
							&payments_settlement_check_s,
							PAYMENTS_DEFAULT_SETTLEMENT_CHECK_S, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.exchange_retention_days",
							"Days the gateway exchange log is kept.",
							NULL,
							&payments_exchange_retention_days,
							PAYMENTS_DEFAULT_EXCHANGE_RETENTION_DAYS, 1, 3650,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.idempotency_retention_hours",
							"Hours idempotency keys are kept (at least 24).",
							NULL,
							&payments_idempotency_retention_hours,
							PAYMENTS_DEFAULT_IDEMPOTENCY_RETENTION_HOURS, 24, 24 * 3650,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("payments.fingerprint_key_directory",
							   "Directory of the card fingerprint key files, outside the data directory.",
							   "Empty means \"<data directory>.payments_keys\". Back it up apart from the database: dumps and base backups do not carry it.",
							   &payments_fingerprint_key_directory,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("payments.vault_key_rotation",
							"Seconds a card vault sealing key seals before the worker replaces it.",
							"Waiting cards are re-sealed under the current key first, so none is lost or holds the rotation back; 0 rotates only at server start.",
							&payments_vault_key_rotation_s,
							3600, 0, 7 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.vault_key_rotation_max_wait",
							"Seconds a due vault key rotation waits at most for open or prepared transactions that sealed card data under the previous key.",
							"Past it the key rotates anyway: a card such a transaction commits later is lost (its payment fails with the lost-card reason). Any role can seal a card in a transaction and leave it open.",
							&payments_vault_key_rotation_max_wait_s,
							600, 0, 7 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.worker_statement_timeout",
							"Longest a transaction of the payments worker may run (0: no limit).",
							"A transaction that takes longer (waiting for a lock, say) is rolled back and logged, and its step tried again later; the worker goes on.",
							&payments_worker_statement_timeout,
							PAYMENTS_DEFAULT_WORKER_STATEMENT_TIMEOUT_MS, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("payments.worker_lock_timeout",
							"Longest a statement of the payments worker or recorder waits for a lock someone else holds (0: no limit).",
							"A statement that waits longer fails: the answer it was recording is kept and recorded again shortly, and the worker goes on reading replies and claiming work meanwhile.",
							&payments_worker_lock_timeout,
							PAYMENTS_DEFAULT_WORKER_LOCK_TIMEOUT_MS, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	cpu_scheduling_define();
	amount_sort_init();
	core_dumps_init();
	MarkGUCPrefixReserved("payments");

	/*
	 * libcurl's global state must be set up once, before any thread exists:
	 * the postmaster is the place, and backends and the worker inherit it.
	 */
	if (curl_memory_global_init(CURL_GLOBAL_DEFAULT, &curl_wipes) != CURLE_OK)
		ereport(FATAL,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("payments could not initialize libcurl")));
	if (!curl_wipes)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("payments cannot wipe the memory libcurl frees"),
				 errdetail("Another library initialized libcurl first: copies of requests sent to the gateway, with card numbers, may stay in the worker's free memory."),
				 errhint("Put payments before that library in shared_preload_libraries.")));

	/* 0.1.0's vault key file goes; the log hook comes (card.c) */
	payments_card_init();
	card_fingerprint_init();
	card_query_text_init();
	card_query_text_check_order();

	payments_shmem_register();
	payments_worker_register();
	payments_billing_register();
	payments_recorder_register();
	wake_install_hooks();
	audit_install_hooks();
	check_cache_install_hook();
	role_guard_init();

	payments_preloaded = true;
}

/*
 * Error out unless the library was preloaded.  Called by CREATE EXTENSION
 * and by every entry point that depends on postmaster-time setup.
 */
void
payments_require_preload(void)
{
	if (!payments_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments must be loaded via shared_preload_libraries"),
				 errdetail("The payments library was loaded after server start, so its background worker and card vault are not available."),
				 errhint("Add payments to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Whether the background worker serves this database: payments.database
 * names it.  Neither changes during a session (payments.database is set at
 * server start, and a database cannot be renamed while anyone is connected
 * to it), so the answer is kept.  Needs a transaction (the first time).
 */
bool
payments_database_served(void)
{
	static int	served = -1;

	if (served < 0)
	{
		char	   *name = get_database_name(MyDatabaseId);

		served = payments_database != NULL && name != NULL &&
			strcmp(name, payments_database) == 0;
	}
	return served == 1;
}

/*
 * Report at elevel (WARNING, NOTICE) that no worker serves this database,
 * naming the one it serves and the setting that chooses it.
 */
void
payments_report_unserved(int elevel)
{
	const char *served = payments_database ? payments_database : "";
	const char *here = get_database_name(MyDatabaseId);

	ereport(elevel,
			(errcode(ERRCODE_PAY_DATABASE_NOT_SERVED),
			 errmsg("no payments worker serves database \"%s\"", here),
			 errdetail("The payments background worker serves only database \"%s\" (the payments.database setting): payments made here are queued and never sent to the gateway.",
					   served),
			 errhint("Use the extension in database \"%s\", or set payments.database = %s in postgresql.conf and restart the server: the worker serves one database per cluster.",
					 served, quote_literal_cstr(here))));
}

/*
 * payments._warn_unserved_database(): the WARNING of CREATE EXTENSION and
 * ALTER EXTENSION UPDATE in a database the worker does not serve.
 */
Datum
pay_warn_unserved_database(PG_FUNCTION_ARGS)
{
	payments_require_preload();
	if (!payments_database_served())
		payments_report_unserved(WARNING);
	PG_RETURN_VOID();
}

/*
 * payments._note_unserved_database() -> boolean: true, after a NOTICE,
 * when the worker does not serve this database; for a SQL wait for the
 * worker (pay_gateway_status(wait_ms => ...)), which returns at once there,
 * as pay_wait does (wait.c).
 */
Datum
pay_note_unserved_database(PG_FUNCTION_ARGS)
{
	payments_require_preload();
	if (payments_database_served())
		PG_RETURN_BOOL(false);
	payments_report_unserved(NOTICE);
	PG_RETURN_BOOL(true);
}

/* The duplicate window, for the SQL side (payments._duplicate_window). */
PG_FUNCTION_INFO_V1(pay_duplicate_window);

Datum
pay_duplicate_window(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(PAYMENTS_DUPLICATE_WINDOW_S);
}

/* SQL-callable form of payments_require_preload, used by the install script. */
Datum
pay_assert_preloaded(PG_FUNCTION_ARGS)
{
	payments_require_preload();
	PG_RETURN_VOID();
}

Datum
payments_text_arg(const char *s, char *nullflag)
{
	if (s == NULL)
	{
		*nullflag = 'n';
		return (Datum) 0;
	}
	*nullflag = ' ';
	return CStringGetTextDatum(s);
}
