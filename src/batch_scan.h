/*-------------------------------------------------------------------------
 *
 * batch_scan.h
 *	  Read the gateway's settled batches over a range of settlement dates,
 *	  then each batch's transactions page by page: the walk both the
 *	  lookup of an unknown outcome (gateway_lookup.c) and the settlement
 *	  check (settlement.c) make.
 *
 * The scan only says which request comes next and reads the replies; the
 * caller sends the requests (gateway.c) and decides what a page means.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_BATCH_SCAN_H
#define PAYMENTS_BATCH_SCAN_H

#include "datatype/timestamp.h"

#include "anet_protocol.h"

#define LIST_PAGE_SIZE		1000	/* the API's largest page */
#define LIST_MAX_PAGE		100000	/* the API's largest paging offset */
#define BATCH_RANGE_MAX_S	(31 * SECS_PER_DAY) /* getSettledBatchList's widest
												 * range */

typedef enum BatchScanPhase
{
	BATCH_SCAN_LIST,			/* getSettledBatchList over the range */
	BATCH_SCAN_PAGE,			/* getTransactionList of one batch, a page */
	BATCH_SCAN_DONE				/* every page of every batch was read */
} BatchScanPhase;

/* Where a scan stands between its requests (in the caller's memory). */
typedef struct BatchScan
{
	BatchScanPhase phase;
	char		first_date[32]; /* settlement range, xs:dateTime UTC */
	char		last_date[32];
	int			nbatches;
	char	  **batch_ids;		/* the batches settled in that range */
	char	  **batch_times;	/* and their settlementTimeUTC ("" if none) */
	int			batch;			/* index of the batch being read */
	int			page;			/* 1-based page of that batch */
} BatchScan;

/* Sorting and paging of every list read: newest first, full pages. */
extern AnetListOptions list_page_options(int page);

/* Whether the list after this (1-based) page of it has another page. */
extern bool list_has_next_page(int page, const AnetTxnList *list);

/*
 * Begin a scan of the batches settled from `from` to `to` (at most 31
 * days from `from`: later ones are left out).  False if the dates could
 * not be written.
 */
extern bool batch_scan_begin(BatchScan *scan, TimestampTz from, TimestampTz to);

/* The request the scan needs next, and its body (anet conventions). */
extern const char *batch_scan_request_type(const BatchScan *scan);
extern char *batch_scan_build(const AnetCredentials *creds, const char *ref_id,
							  const BatchScan *scan, bool masked, char **error);

/*
 * Read the reply to the batch list into scan (copies in cxt); the scan
 * moves on to the first page of the first batch, or is done when none
 * settled.  False when the reply is not a readable list; *status then
 * holds the gateway's message, if it sent one (status->message_code "").
 */
extern bool batch_scan_read_list(BatchScan *scan, MemoryContext cxt, const char *body,
								 size_t len, AnetReplyStatus *status);

/*
 * Parse the reply to a page into *list (free it with anet_txn_list_free,
 * also after false).  False when it is not a readable list.
 */
extern bool batch_scan_read_page(const char *body, size_t len, AnetTxnList *list);

/* After a page was read: the next page, the next batch, or done. */
extern void batch_scan_advance(BatchScan *scan, const AnetTxnList *list);

/* The batch being read, and its settlement time. */
extern const char *batch_scan_batch_id(const BatchScan *scan);
extern const char *batch_scan_batch_time(const BatchScan *scan);

#endif
