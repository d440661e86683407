/*-------------------------------------------------------------------------
 *
 * gateway_lookup.c
 *	  Resolve an operation of unknown outcome past the duplicate window by
 *	  finding its transaction in the gateway's reports.
 *
 * Inside the 8-hour duplicate window an identical resend settles the
 * question (gateway.c).  Past it a resend could charge twice, so the
 * worker searches for the invoice number of the transaction that answers
 * for the operation (GatewayOp.txn_invoice):
 *
 *	1. getUnsettledTransactionList, newest first, page after page while a
 *	   page is full;
 *	2. getSettledBatchList over the operation's lifetime (see
 *	   set_batch_range), then getTransactionList of each batch, page after
 *	   page.
 *
 * A hit is confirmed with getTransactionDetails and judged there
 * (interpret_confirm in gateway.c).  No hit anywhere, or a list that could
 * not be read, leaves the outcome unknown, to be looked up again later:
 * never guessed.  Each step is one request of the same operation, which
 * stays "sending" meanwhile; each is logged as an exchange.
 *
 * The lookups of one merchant claimed together share one search: the
 * first (the driver) makes the requests, and each page is matched against
 * its riders' invoices too.  A rider found goes on to its own
 * confirmation; when the driver finds its own, the first rider left
 * drives on from the same place; when the search ends, every rider left
 * was not found.  So a backlog of lookups (a worker down for a night with
 * operations in flight) reads the lists once per claim, not once each.
 *
 * Lists change while they are read: a new transaction pushes older ones
 * onto later pages (read twice, harmless), and a settlement in between
 * moves transactions out of the unsettled list, which may make one skip a
 * page.  A transaction that moved to a batch is found there, because the
 * batch range ends when the batch list is asked for, after the unsettled
 * list was read; one skipped otherwise is found by the next lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gateway.h"

#define LOOKUP_PAGE_SIZE	1000	/* the API's largest page */
#define LOOKUP_MAX_PAGE		100000	/* the API's largest paging offset */
#define BATCH_RANGE_MAX_S	(31 * SECS_PER_DAY) /* getSettledBatchList's widest
												 * range */
#define CLOCK_MARGIN_S		600 /* our clock against the gateway's */

/* Sorting and paging of every list read: newest first, full pages. */
static AnetListOptions
list_options(int page)
{
	AnetListOptions opts = {"submitTimeUTC", true, LOOKUP_PAGE_SIZE, page};

	return opts;
}

static char *
build_unsettled_page(const AnetCredentials *creds, const GatewayOp *op,
					 const void *arg pg_attribute_unused(), bool masked, char **error)
{
	AnetListOptions opts = list_options(op->lookup.page);

	return anet_build_get_unsettled_transaction_list_request(creds, op->ref_id, NULL, &opts,
															 masked, error);
}

static char *
build_batch_list(const AnetCredentials *creds, const GatewayOp *op,
				 const void *arg pg_attribute_unused(), bool masked, char **error)
{
	return anet_build_get_settled_batch_list_request(creds, op->ref_id, false,
													 op->lookup.first_date, op->lookup.last_date,
													 masked, error);
}

static char *
build_batch_page(const AnetCredentials *creds, const GatewayOp *op,
				 const void *arg pg_attribute_unused(), bool masked, char **error)
{
	AnetListOptions opts = list_options(op->lookup.page);

	return anet_build_get_transaction_list_request(creds, op->ref_id,
												   op->lookup.batch_ids[op->lookup.batch],
												   &opts, masked, error);
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

/*
 * The settlement dates to search: from the operation's creation (the
 * earliest of its riders'; a transaction cannot have been submitted
 * earlier; less a margin for clocks
 * that disagree) until now.  The API takes at most 31 days per request.
 * For an operation older than that the first 31 days after its creation
 * are searched, and no more: settlement follows submission within days
 * (batches close daily), and a transaction not yet settled is in the
 * unsettled list, which was read first.
 */
static bool
set_batch_range(GatewayOp *op)
{
	TimestampTz first = op->lookup.range_from - (TimestampTz) CLOCK_MARGIN_S * USECS_PER_SEC;
	TimestampTz last = GetCurrentTimestamp();

	if (last - first > (TimestampTz) BATCH_RANGE_MAX_S * USECS_PER_SEC)
		last = first + (TimestampTz) BATCH_RANGE_MAX_S * USECS_PER_SEC;
	if (last < first)
		last = first;
	return format_utc(first, op->lookup.first_date, sizeof(op->lookup.first_date)) &&
		format_utc(last, op->lookup.last_date, sizeof(op->lookup.last_date));
}

/* Put the request of the current phase (and page, batch) in op. */
static bool
lookup_request(GatewayOp *op, char **error)
{
	switch (op->lookup.phase)
	{
		case LOOKUP_UNSETTLED:
			return gateway_set_request(op, "getUnsettledTransactionListRequest",
									   build_unsettled_page, NULL, error);
		case LOOKUP_BATCHES:
			if (!set_batch_range(op))
			{
				*error = MemoryContextStrdup(op->cxt, "the settlement dates to search could not be written");
				return false;
			}
			return gateway_set_request(op, "getSettledBatchListRequest",
									   build_batch_list, NULL, error);
		case LOOKUP_BATCH:
			return gateway_set_request(op, "getTransactionListRequest",
									   build_batch_page, NULL, error);
	}
	*error = MemoryContextStrdup(op->cxt, "unknown lookup phase");
	return false;
}

/* Begin a lookup: the first page of the unsettled list. */
bool
gateway_lookup_start(GatewayOp *op, char **error)
{
	op->stage = STAGE_LOOKUP;
	memset(&op->lookup, 0, sizeof(op->lookup));
	op->lookup.phase = LOOKUP_UNSETTLED;
	op->lookup.page = 1;
	op->lookup.range_from = op->created_at;
	dlist_init(&op->lookup.riders);
	dlist_init(&op->lookup.released);
	if (op->txn_invoice == NULL)
	{
		*error = MemoryContextStrdup(op->cxt, "the operation has no invoice number to look up");
		return false;
	}
	return lookup_request(op, error);
}

/* Send the request the lookup goes on with, or stay unknown. */
static void
continue_lookup(GatewayOp *op, bool *follow_up)
{
	char	   *error = NULL;

	if (lookup_request(op, &error))
	{
		*follow_up = true;
		return;
	}
	gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, error);
}

/* A list reply that does not say what the list holds. */
static void
unreadable(GatewayOp *op, const AnetReplyStatus *status)
{
	gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
							  status != NULL && status->message_code[0] != '\0' ?
							  psprintf("the gateway refused the lookup's %s: %s %s", op->request_type,
									   status->message_code, status->message_text) :
							  psprintf("the gateway's reply to the lookup's %s could not be read",
									   op->request_type));
}

/*
 * Searched everywhere (by the search op rode on, driven by driver; op
 * itself if it drove): still unknown, never guessed; look again later.
 */
static void
not_found(GatewayOp *op, const GatewayOp *driver)
{
	const GatewayLookup *lk = &driver->lookup;

	gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN,
							  psprintf("invoice %s was found neither among the gateway's unsettled transactions nor in its batches settled from %s to %s%s",
									   op->txn_invoice, lk->first_date, lk->last_date,
									   op == driver ? "" :
									   psprintf(" (searched together with operation %lld)",
												(long long) driver->operation_id)));
}

/*
 * Let rider (moved off the list it is on) be searched for by driver's
 * requests (both claimed together), unless the settled batches to search would then span more than one
 * request allows (31 days, less an hour of slack for the search itself):
 * a rider must never be found missing from a range that does not cover it.
 */
bool
gateway_lookup_ride(GatewayOp *driver, GatewayOp *rider)
{
	TimestampTz from = Min(driver->lookup.range_from, rider->created_at);

	if (GetCurrentTimestamp() - (from - (TimestampTz) CLOCK_MARGIN_S * USECS_PER_SEC) >
		(TimestampTz) (BATCH_RANGE_MAX_S - SECS_PER_HOUR) * USECS_PER_SEC)
		return false;
	driver->lookup.range_from = from;
	dlist_delete(&rider->node);
	dlist_push_tail(&driver->lookup.riders, &rider->node);
	return true;
}

/* Settle a rider (in its own memory) and hand it to the worker. */
static void
release(GatewayOp *driver, GatewayOp *rider)
{
	dlist_delete(&rider->node);
	dlist_push_tail(&driver->lookup.released, &rider->node);
}

/* The transId under invoice on this page, or NULL. */
static const char *
find_invoice(const AnetTxnList *list, const char *invoice)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i].invoice_number, invoice) == 0)
			return list->items[i].trans_id;
	return NULL;
}

/* A hit: ask for the transaction's details, or stay unknown. */
static void
confirm_hit(GatewayOp *op, const char *trans_id, bool *follow_up)
{
	if (gateway_confirm(op, trans_id))
		*follow_up = true;
	else
	{
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, "the transaction found could not be asked about");
	}
}

/* Riders whose invoice is on this page go to their confirmation. */
static void
match_riders(GatewayOp *driver, const AnetTxnList *list)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &driver->lookup.riders)
	{
		GatewayOp  *rider = dlist_container(GatewayOp, node, it.cur);
		const char *trans_id = find_invoice(list, rider->txn_invoice);
		MemoryContext old;
		bool		follow_up = false;

		if (trans_id == NULL)
			continue;
		old = MemoryContextSwitchTo(rider->cxt);
		confirm_hit(rider, trans_id, &follow_up);
		MemoryContextSwitchTo(old);
		release(driver, rider);
	}
}

/* The search ended: every rider left was not found either. */
static void
riders_not_found(GatewayOp *driver)
{
	while (!dlist_is_empty(&driver->lookup.riders))
	{
		GatewayOp  *rider = dlist_head_element(GatewayOp, node, &driver->lookup.riders);
		MemoryContext old = MemoryContextSwitchTo(rider->cxt);

		not_found(rider, driver);
		MemoryContextSwitchTo(old);
		release(driver, rider);
	}
}

/*
 * The driver's search ends without an answer for its riders (a list that
 * could not be read, a request that failed): they stay unknown too.  (An
 * op that never drove a search has none.)
 */
void
gateway_lookup_release_riders(GatewayOp *driver)
{
	while (!dlist_is_empty(&driver->lookup.riders))
	{
		GatewayOp  *rider = dlist_head_element(GatewayOp, node, &driver->lookup.riders);
		MemoryContext old = MemoryContextSwitchTo(rider->cxt);

		gateway_set_outcome_later(rider, 5000, 300000, OUTCOME_UNKNOWN,
							psprintf("the lookup shared with operation %lld ended without an answer: %s",
									 (long long) driver->operation_id,
									 driver->result.error ? driver->result.error : "no reason given"));
		MemoryContextSwitchTo(old);
		release(driver, rider);
	}
}

/*
 * The driver found its own transaction: the first rider left drives on
 * from the next position (already advanced in driver->lookup), with the
 * other riders.  It is released with its request set, or settled.
 */
static void
hand_over(GatewayOp *driver)
{
	GatewayLookup *from = &driver->lookup;
	GatewayOp  *next = dlist_head_element(GatewayOp, node, &from->riders);
	GatewayLookup *to = &next->lookup;
	MemoryContext old;
	bool		follow_up = false;

	dlist_delete(&next->node);
	old = MemoryContextSwitchTo(next->cxt);
	to->phase = from->phase;
	to->page = from->page;
	to->range_from = from->range_from;
	memcpy(to->first_date, from->first_date, sizeof(to->first_date));
	memcpy(to->last_date, from->last_date, sizeof(to->last_date));
	to->nbatches = from->nbatches;
	to->batch = from->batch;
	to->batch_ids = NULL;
	if (from->nbatches > 0 && from->batch_ids != NULL)
	{
		to->batch_ids = palloc(sizeof(char *) * from->nbatches);
		for (int i = 0; i < from->nbatches; i++)
			to->batch_ids[i] = pstrdup(from->batch_ids[i]);
	}
	while (!dlist_is_empty(&from->riders))
		dlist_push_tail(&to->riders, dlist_pop_head_node(&from->riders));
	continue_lookup(next, &follow_up);
	MemoryContextSwitchTo(old);
	dlist_push_tail(&from->released, &next->node);
}

/* A page of the unsettled list or of a batch. */
static void
read_transactions(GatewayOp *op, bool *follow_up)
{
	GatewayLookup *lk = &op->lookup;
	AnetTxnList list;
	bool		parsed;
	bool		more;
	bool		ended = false;
	const char *own;
	char		trans_id[ANET_ID_SIZE] = "";

	memset(&list, 0, sizeof(list));
	if (lk->phase == LOOKUP_UNSETTLED)
		parsed = anet_parse_unsettled_transaction_list_response(op->http.response,
																op->http.response_len, &list);
	else
		parsed = anet_parse_transaction_list_response(op->http.response,
													  op->http.response_len, &list);
	if (!parsed || !list.status.ok)
	{
		unreadable(op, parsed ? &list.status : NULL);
		anet_txn_list_free(&list);
		return;
	}
	own = find_invoice(&list, op->txn_invoice);
	if (own != NULL)
		strlcpy(trans_id, own, sizeof(trans_id));
	match_riders(op, &list);
	/* a full page may have a next one (unless the total says otherwise) */
	more = list.count >= LOOKUP_PAGE_SIZE && lk->page < LOOKUP_MAX_PAGE &&
		(list.total_num_in_result_set < 0 ||
		 (long) lk->page * LOOKUP_PAGE_SIZE < list.total_num_in_result_set);
	anet_txn_list_free(&list);

	/* the next position of the search */
	if (more)
		lk->page++;
	else if (lk->phase == LOOKUP_UNSETTLED)
		lk->phase = LOOKUP_BATCHES;
	else if (++lk->batch < lk->nbatches)
		lk->page = 1;
	else
		ended = true;

	if (trans_id[0] != '\0')
	{
		/* riders left search on from there, or were not found */
		if (ended)
			riders_not_found(op);
		else if (!dlist_is_empty(&lk->riders))
			hand_over(op);
		confirm_hit(op, trans_id, follow_up);
		return;
	}
	if (ended)
	{
		not_found(op, op);
		riders_not_found(op);
		return;
	}
	continue_lookup(op, follow_up);
}

/* The batches settled in the range: read each of them next. */
static void
read_batches(GatewayOp *op, bool *follow_up)
{
	GatewayLookup *lk = &op->lookup;
	AnetBatchList list;
	bool		parsed;

	memset(&list, 0, sizeof(list));
	parsed = anet_parse_settled_batch_list_response(op->http.response, op->http.response_len, &list);
	if (!parsed || !list.status.ok)
	{
		unreadable(op, parsed ? &list.status : NULL);
		anet_batch_list_free(&list);
		return;
	}
	/* 31 days hold a few dozen batches; the cap only keeps the int sane */
	lk->nbatches = (int) Min(list.count, (size_t) 100000);
	lk->batch_ids = NULL;
	if (lk->nbatches > 0)
	{
		PG_TRY();
		{
			lk->batch_ids = MemoryContextAlloc(op->cxt, sizeof(char *) * lk->nbatches);
			for (int i = 0; i < lk->nbatches; i++)
				lk->batch_ids[i] = MemoryContextStrdup(op->cxt, list.items[i].batch_id);
		}
		PG_CATCH();
		{
			anet_batch_list_free(&list);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	anet_batch_list_free(&list);
	if (lk->nbatches == 0)
	{
		not_found(op, op);
		riders_not_found(op);
		return;
	}
	lk->phase = LOOKUP_BATCH;
	lk->batch = 0;
	lk->page = 1;
	continue_lookup(op, follow_up);
}

/*
 * The reply to a lookup request: the next request (*follow_up), the
 * confirmation of a hit (*follow_up, stage CONFIRM), or an unknown outcome.
 */
void
gateway_lookup_interpret(GatewayOp *op, bool *follow_up)
{
	if (op->lookup.phase == LOOKUP_BATCHES)
		read_batches(op, follow_up);
	else
		read_transactions(op, follow_up);
}
