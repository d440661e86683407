/*-------------------------------------------------------------------------
 *
 * batch_scan.c
 *	  Walk the gateway's settled batches: getSettledBatchList over a date
 *	  range, then getTransactionList of each batch, page after page.
 *
 * Shared by the lookup of an unknown outcome (which searches the batches
 * for an invoice) and the settlement check (which searches them for the
 * captures it has not seen settle).  A lower module: it builds and reads,
 * and never decides what a transaction means.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch_scan.h"

AnetListOptions
list_page_options(int page)
{
	AnetListOptions opts = {"submitTimeUTC", true, LIST_PAGE_SIZE, page};

	return opts;
}

bool
list_has_next_page(int page, const AnetTxnList *list)
{
	/* a full page may have a next one (unless the total says otherwise) */
	return list->count >= LIST_PAGE_SIZE && page < LIST_MAX_PAGE &&
		(list->total_num_in_result_set < 0 ||
		 (long) page * LIST_PAGE_SIZE < list->total_num_in_result_set);
}

/* ts as xs:dateTime in UTC, whole seconds ("2020-05-01T16:00:00Z"). */
static bool
format_utc(TimestampTz ts, char *buf, size_t len)
{
	time_t		t = timestamptz_to_time_t(ts);
	struct tm	tm;

	return gmtime_r(&t, &tm) != NULL &&
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
}

bool
batch_scan_begin(BatchScan *scan, TimestampTz from, TimestampTz to)
{
	memset(scan, 0, sizeof(*scan));
	scan->phase = BATCH_SCAN_LIST;
	if (to - from > (TimestampTz) BATCH_RANGE_MAX_S * USECS_PER_SEC)
		to = from + (TimestampTz) BATCH_RANGE_MAX_S * USECS_PER_SEC;
	if (to < from)
		to = from;
	return format_utc(from, scan->first_date, sizeof(scan->first_date)) &&
		format_utc(to, scan->last_date, sizeof(scan->last_date));
}

const char *
batch_scan_request_type(const BatchScan *scan)
{
	return scan->phase == BATCH_SCAN_LIST ? "getSettledBatchListRequest" :
		"getTransactionListRequest";
}

char *
batch_scan_build(const AnetCredentials *creds, const char *ref_id, const BatchScan *scan,
				 bool masked, char **error)
{
	AnetListOptions opts;

	if (scan->phase == BATCH_SCAN_LIST)
		return anet_build_get_settled_batch_list_request(creds, ref_id, false,
														 scan->first_date, scan->last_date,
														 masked, error);
	opts = list_page_options(scan->page);
	return anet_build_get_transaction_list_request(creds, ref_id, scan->batch_ids[scan->batch],
												   &opts, masked, error);
}

bool
batch_scan_read_list(BatchScan *scan, MemoryContext cxt, const char *body, size_t len,
					 AnetReplyStatus *status)
{
	AnetBatchList list;
	bool		parsed;

	memset(&list, 0, sizeof(list));
	memset(status, 0, sizeof(*status));
	parsed = anet_parse_settled_batch_list_response(body, len, &list);
	if (!parsed || !list.status.ok)
	{
		if (parsed)
			*status = list.status;
		anet_batch_list_free(&list);
		return false;
	}
	/* 31 days hold a few dozen batches; the cap only keeps the int sane */
	scan->nbatches = (int) Min(list.count, (size_t) 100000);
	scan->batch_ids = NULL;
	scan->batch_times = NULL;
	if (scan->nbatches > 0)
	{
		PG_TRY();
		{
			scan->batch_ids = MemoryContextAlloc(cxt, sizeof(char *) * scan->nbatches);
			scan->batch_times = MemoryContextAlloc(cxt, sizeof(char *) * scan->nbatches);
			for (int i = 0; i < scan->nbatches; i++)
			{
				scan->batch_ids[i] = MemoryContextStrdup(cxt, list.items[i].batch_id);
				scan->batch_times[i] = MemoryContextStrdup(cxt, list.items[i].settlement_time_utc);
			}
		}
		PG_CATCH();
		{
			anet_batch_list_free(&list);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	anet_batch_list_free(&list);
	scan->batch = 0;
	scan->page = 1;
	scan->phase = scan->nbatches > 0 ? BATCH_SCAN_PAGE : BATCH_SCAN_DONE;
	return true;
}

bool
batch_scan_read_page(const char *body, size_t len, AnetTxnList *list)
{
	memset(list, 0, sizeof(*list));
	return anet_parse_transaction_list_response(body, len, list) && list->status.ok;
}

void
batch_scan_advance(BatchScan *scan, const AnetTxnList *list)
{
	if (list_has_next_page(scan->page, list))
		scan->page++;
	else if (++scan->batch < scan->nbatches)
		scan->page = 1;
	else
		scan->phase = BATCH_SCAN_DONE;
}

const char *
batch_scan_batch_id(const BatchScan *scan)
{
	return scan->batch < scan->nbatches ? scan->batch_ids[scan->batch] : "";
}

const char *
batch_scan_batch_time(const BatchScan *scan)
{
	return scan->batch < scan->nbatches ? scan->batch_times[scan->batch] : "";
}
