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
 *	1. getUnsettledTransactionList with status pendingApproval: the
 *	   transactions held for review by the fraud filters (FDSPendingReview,
 *	   FDSAuthorizedPendingReview), newest first, page after page while a
 *	   page is full;
 *	2. getUnsettledTransactionList without a status, the same way;
 *	3. the batches settled over the operation's lifetime (see
 *	   lookup_batches), read by batch_scan.c: getSettledBatchList, then
 *	   getTransactionList of each batch, page after page.
 *
 * The held list is read on its own because Authorize.Net documents held
 * transactions only there ("Get Held Transaction List"): whether the list
 * without a status holds them too is documented nowhere, and a held
 * purchase never found would stay unknown for ever, though the customer
 * may be charged.  A hit there is confirmed like any other, and a held
 * transaction is recorded held, as when the first reply says so.
 *
 * This module only reads: after each reply it says, in op->lookup.step,
 * what the search came to (ask the next request, found transactions, not
 * found, too many found, unreadable), and gateway.c acts on it (confirms
 * the hits with getTransactionDetails, records an unknown outcome).
 * No hit anywhere, or a list that could not be read, leaves the outcome
 * unknown, to be looked up again later: never guessed.  Each step is one
 * request of the same operation, which stays "sending" meanwhile.
 *
 * A hit is a transaction under the operation's invoice made with its card
 * (gateway_card_mismatch).  The search reads every list to the end, not
 * only to the first hit: invoice numbers repeat (a promoted standby or a
 * copy of the database hands a payment id out again; a period's charge
 * repeats its number on purpose), and of two transactions with the same
 * card under one number the first met need not be the operation's (the
 * held and unsettled lists are newest first, the batches oldest first).
 * Each hit is then confirmed with getTransactionDetails (gateway.c): the
 * one whose details match the operation answers for it; none, or two
 * that match, leave the outcome unknown, for a person to tell.
 *
 * The lookups of one merchant claimed together share one search: the
 * first (the driver) makes the requests, and each page is matched against
 * its riders' invoices too.  When the search ends, the driver and every
 * rider are settled by their own hits.  So a backlog of lookups (a worker
 * down for a night with operations in flight) reads the lists once per
 * claim, not once each.
 *
 * Lists change while they are read: a new transaction pushes older ones
 * onto later pages (read twice, harmless), and a review decided or a
 * settlement in between moves transactions out of a list, which may make
 * one skip a page.  A transaction moves only forward, from the held list
 * to the unsettled one (approved, or declined) and from there to a batch,
 * and the lists are read in that order: one that moved on is found in the
 * next list, because the batch range ends when the batch list is asked
 * for, after the unsettled lists were read; one skipped otherwise is found
 * by the next lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "gateway.h"

#define CLOCK_MARGIN_S		600 /* our clock against the gateway's */

/* The result of a step of op's search (in op's memory). */
static void
set_step(GatewayOp *op, LookupStep step, char *detail)
{
	op->lookup.step = step;
	op->lookup.detail = detail;
}

/*
 * The settlement dates to search: from the operation's creation (the
 * earliest of its riders'; a transaction cannot have been submitted
 * earlier; less a margin for clocks that disagree) until now.  The API
 * takes at most 31 days per request.  For an operation older than that
 * the first 31 days after its creation are searched, and no more:
 * settlement follows submission within days (batches close daily), and a
 * transaction not yet settled is in one of the unsettled lists (held or
 * not), which were read first.
 */
static bool
lookup_batches(GatewayOp *op)
{
	op->lookup.phase = LOOKUP_SETTLED;
	return batch_scan_begin(&op->lookup.batches,
							op->lookup.range_from - (TimestampTz) CLOCK_MARGIN_S * USECS_PER_SEC,
							GetCurrentTimestamp());
}

/* The request of the lookup's current position (a GatewayRequestBuilder). */
char *
gateway_lookup_build(const AnetCredentials *creds, const GatewayOp *op,
					 const void *arg pg_attribute_unused(), bool masked, char **error)
{
	if (op->lookup.phase != LOOKUP_SETTLED)
	{
		AnetListOptions opts = list_page_options(op->lookup.page);

		return anet_build_get_unsettled_transaction_list_request(creds, op->ref_id,
																 op->lookup.phase == LOOKUP_HELD ?
																 "pendingApproval" : NULL,
																 &opts, masked, error);
	}
	return batch_scan_build(creds, op->ref_id, &op->lookup.batches, masked, error);
}

const char *
gateway_lookup_request_type(const GatewayOp *op)
{
	return op->lookup.phase != LOOKUP_SETTLED ? "getUnsettledTransactionListRequest" :
		batch_scan_request_type(&op->lookup.batches);
}

/* Begin a lookup: the first page of the held list (step ASK). */
void
gateway_lookup_start(GatewayOp *op)
{
	op->stage = STAGE_LOOKUP;
	memset(&op->lookup, 0, sizeof(op->lookup));
	op->lookup.phase = LOOKUP_HELD;
	op->lookup.page = 1;
	op->lookup.range_from = op->created_at;
	dlist_init(&op->lookup.riders);
	dlist_init(&op->lookup.released);
	if (op->txn_invoice == NULL)
		set_step(op, LOOKUP_UNREADABLE,
				 pstrdup("the operation has no invoice number to look up"));
	else
		set_step(op, LOOKUP_ASK, NULL);
}

/* A list reply that does not say what the list holds. */
static void
unreadable(GatewayOp *op, const AnetReplyStatus *status)
{
	set_step(op, LOOKUP_UNREADABLE,
			 status != NULL && status->message_code[0] != '\0' ?
			 psprintf("the gateway refused the lookup's %s: %s %s", op->request_type,
					  status->message_code, status->message_text) :
			 psprintf("the gateway's reply to the lookup's %s could not be read",
					  op->request_type));
}

/*
 * Searched everywhere (by the search op rode on, driven by driver; op
 * itself if it drove): its hits are to be confirmed (gateway.c); none, or
 * too many, leave the outcome unknown, never guessed.
 */
static void
conclude(GatewayOp *op, const GatewayOp *driver)
{
	const BatchScan *b = &driver->lookup.batches;
	const GatewayLookup *lk = &op->lookup;
	const char *with = op == driver ? "" :
		psprintf(" (searched together with operation %lld)", (long long) driver->operation_id);

	if (lk->nhits == 0)
		set_step(op, LOOKUP_NOT_FOUND,
				 psprintf("invoice %s was found neither among the gateway's unsettled transactions nor in its batches settled from %s to %s%s",
						  op->txn_invoice, b->first_date, b->last_date, with));
	else if (lk->nhits <= LOOKUP_MAX_HITS)
		set_step(op, LOOKUP_FOUND, NULL);
	else
		set_step(op, LOOKUP_AMBIGUOUS,
				 psprintf("invoice %s has more than %d transactions at the gateway that can be the operation's%s: too many to ask about; a person must tell which, if any, is its own",
						  op->txn_invoice, LOOKUP_MAX_HITS, with));
}

/*
 * Let rider (moved off the list it is on) be searched for by driver's
 * requests (both claimed together), unless the settled batches to search
 * would then span more than one request allows (31 days, less an hour of
 * slack for the search itself): a rider must never be found missing from
 * a range that does not cover it.
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

/* Hand a rider with its step set to gateway.c (driver's released list). */
static void
release(GatewayOp *driver, GatewayOp *rider)
{
	dlist_delete(&rider->node);
	dlist_push_tail(&driver->lookup.released, &rider->node);
}

/* The last four digits of a masked account number ("XXXX1111"), or NULL. */
char *
gateway_last_four(const char *masked)
{
	size_t		n = strlen(masked);

	if (n < 4)
		return NULL;
	for (size_t i = n - 4; i < n; i++)
		if (masked[i] < '0' || masked[i] > '9')
			return NULL;
	return pstrdup(masked + n - 4);
}

/*
 * Why a gateway transaction under op's invoice cannot be op's own by the
 * card it was made with, or NULL when it can (or nothing tells).  Invoice
 * numbers repeat: a promoted standby or a copy of the database may hand
 * out a payment id again, and a subscription period's charge carries the
 * same number on purpose.  Only a purchase's, an authorization's or a
 * refund's own transaction is asked about (a capture or a void acts on
 * the payment's).  A stored method's charge is compared by its payment
 * profile (the card inside may have been replaced by the gateway's
 * account updater, so its digits are not), anything else by the last
 * four digits, when both sides know them; a refund of a stored method's
 * charge is not compared.  Never more of a number than the last four in
 * the reason.
 */
char *
gateway_card_mismatch(const GatewayOp *op, const char *account_number,
					  const char *payment_profile_id)
{
	bool		profile = op->payment_method != NULL && strcmp(op->payment_method, "profile") == 0;
	bool		refund = strcmp(op->kind, "refund") == 0;
	char	   *theirs;

	if (!(strcmp(op->kind, "purchase") == 0 || strcmp(op->kind, "authorize") == 0 ||
		  (refund && !op->via_void && !profile)))
		return NULL;
	if (profile)
	{
		if (op->payment_profile_id == NULL || op->payment_profile_id[0] == '\0' ||
			payment_profile_id[0] == '\0' || strcmp(op->payment_profile_id, payment_profile_id) == 0)
			return NULL;
		return psprintf("is of payment profile %s, not %s", payment_profile_id, op->payment_profile_id);
	}
	if (op->card_last4 == NULL || gateway_last_four(op->card_last4) == NULL)
		return NULL;
	theirs = gateway_last_four(account_number);
	if (theirs == NULL || strcmp(theirs, op->card_last4) == 0)
		return NULL;
	return psprintf("is of a card ending %s, not %s", theirs, op->card_last4);
}

/*
 * Note the transactions on this page that can be op's: under its invoice,
 * made with its card (another card's transaction under the same number is
 * not op's), each once (lists change while read: one may be met twice).
 */
static void
match_page(GatewayOp *op, const AnetTxnList *list)
{
	GatewayLookup *lk = &op->lookup;

	for (size_t i = 0; i < list->count; i++)
	{
		const AnetTxnSummary *t = &list->items[i];
		bool		seen = false;

		if (strcmp(t->invoice_number, op->txn_invoice) != 0 ||
			gateway_card_mismatch(op, t->account_number, t->customer_payment_profile_id) != NULL)
			continue;
		for (int h = 0; h < Min(lk->nhits, LOOKUP_MAX_HITS) && !seen; h++)
			seen = strcmp(lk->hits[h], t->trans_id) == 0;
		if (seen)
			continue;
		if (lk->nhits < LOOKUP_MAX_HITS)
			strlcpy(lk->hits[lk->nhits], t->trans_id, ANET_ID_SIZE);
		lk->nhits++;
	}
}

/* Match the page for the driver and each of its riders. */
static void
match_all(GatewayOp *driver, const AnetTxnList *list)
{
	dlist_iter	it;

	match_page(driver, list);
	dlist_foreach(it, &driver->lookup.riders)
		match_page(dlist_container(GatewayOp, node, it.cur), list);
}

/* The search ended: the driver and every rider are settled by their hits. */
static void
search_ended(GatewayOp *driver)
{
	conclude(driver, driver);
	while (!dlist_is_empty(&driver->lookup.riders))
	{
		GatewayOp  *rider = dlist_head_element(GatewayOp, node, &driver->lookup.riders);
		MemoryContext old = MemoryContextSwitchTo(rider->cxt);

		conclude(rider, driver);
		MemoryContextSwitchTo(old);
		release(driver, rider);
	}
}

/*
 * The driver's search ends without an answer for its riders (a list that
 * could not be read, a request that failed): they are released unreadable.
 * (An op that never drove a search has none.)
 */
void
gateway_lookup_abandon(GatewayOp *driver)
{
	while (!dlist_is_empty(&driver->lookup.riders))
	{
		GatewayOp  *rider = dlist_head_element(GatewayOp, node, &driver->lookup.riders);
		MemoryContext old = MemoryContextSwitchTo(rider->cxt);

		set_step(rider, LOOKUP_UNREADABLE,
				 psprintf("the lookup shared with operation %lld ended without an answer: %s",
						  (long long) driver->operation_id,
						  driver->result.error ? driver->result.error : "no reason given"));
		MemoryContextSwitchTo(old);
		release(driver, rider);
	}
}

/* A page of the held list, of the unsettled list or of a batch. */
static void
read_transactions(GatewayOp *op)
{
	GatewayLookup *lk = &op->lookup;
	AnetTxnList list;
	bool		parsed;
	bool		ended = false;

	memset(&list, 0, sizeof(list));
	if (lk->phase != LOOKUP_SETTLED)
		parsed = anet_parse_unsettled_transaction_list_response(op->http.response,
																op->http.response_len, &list) &&
			list.status.ok;
	else
		parsed = batch_scan_read_page(op->http.response, op->http.response_len, &list);
	if (!parsed)
	{
		unreadable(op, list.status.message_code[0] ? &list.status : NULL);
		anet_txn_list_free(&list);
		return;
	}
	match_all(op, &list);

	/* the next position of the search */
	if (lk->phase == LOOKUP_HELD)
	{
		if (list_has_next_page(lk->page, &list))
			lk->page++;
		else
		{
			lk->phase = LOOKUP_UNSETTLED;
			lk->page = 1;
		}
	}
	else if (lk->phase == LOOKUP_UNSETTLED)
	{
		if (list_has_next_page(lk->page, &list))
			lk->page++;
		else if (!lookup_batches(op))
		{
			anet_txn_list_free(&list);
			set_step(op, LOOKUP_UNREADABLE,
					 pstrdup("the settlement dates to search could not be written"));
			return;
		}
	}
	else
	{
		batch_scan_advance(&lk->batches, &list);
		ended = lk->batches.phase == BATCH_SCAN_DONE;
	}
	anet_txn_list_free(&list);

	if (ended)
	{
		search_ended(op);
		return;
	}
	set_step(op, LOOKUP_ASK, NULL);
}

/* The batches settled in the range: read each of them next. */
static void
read_batches(GatewayOp *op)
{
	AnetReplyStatus status;

	if (!batch_scan_read_list(&op->lookup.batches, op->cxt, op->http.response,
							  op->http.response_len, &status))
	{
		unreadable(op, status.message_code[0] ? &status : NULL);
		return;
	}
	if (op->lookup.batches.phase == BATCH_SCAN_DONE)
	{
		search_ended(op);
		return;
	}
	set_step(op, LOOKUP_ASK, NULL);
}

/*
 * Read the reply to a lookup request: op->lookup.step says what came of
 * it; riders settled by it are on op->lookup.released, each with its step.
 */
void
gateway_lookup_read(GatewayOp *op)
{
	if (op->lookup.phase == LOOKUP_SETTLED && op->lookup.batches.phase == BATCH_SCAN_LIST)
		read_batches(op);
	else
		read_transactions(op);
}
