/*-------------------------------------------------------------------------
 *
 * settlement.c
 *	  Learn which captures have settled from the gateway's batch lists:
 *	  getSettledBatchList since the oldest capture not yet seen settled,
 *	  then getTransactionList of each batch (batch_scan.c), matching every
 *	  settledSuccessfully transaction against those captures.
 *
 * One check per merchant reads the batches once for all its captures,
 * rather than one getTransactionDetails per payment; it stops as soon as
 * every capture was seen.  Batches close daily, so in the steady state the
 * range covers the last day and one batch.  A capture a complete check did
 * not find is looked for only in the batches settled since (its mark,
 * kept by the worker), so one that never shows up costs no more than the
 * steady state.  A lower module: it reads and matches, and says what it
 * found; gateway.c sends the requests, record.c writes the result and the
 * worker keeps the mark.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "settlement.h"

#define CLOCK_MARGIN_S		600 /* our clock against the gateway's */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Whether a complete check before this one did not find trans_id. */
static bool
marked(const SettlementMark *mark, const char *trans_id)
{
	return mark != NULL && mark->n > 0 &&
		bsearch(&trans_id, mark->trans_ids, mark->n, sizeof(char *), cmp_str) != NULL;
}

SettlementStep
settlement_check_begin(SettlementCheck *check, char **trans_ids, const TimestampTz *captured_at,
					   int n, const SettlementMark *mark)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz earliest = now - (TimestampTz) (BATCH_RANGE_MAX_S - SECS_PER_HOUR) * USECS_PER_SEC;
	TimestampTz from = now;

	memset(check, 0, sizeof(*check));
	check->ncandidates = n;
	check->candidates = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		/* not in any batch up to the last complete check: only the newer */
		TimestampTz since = marked(mark, trans_ids[i]) ? mark->searched_to : captured_at[i];

		check->candidates[i] = pstrdup(trans_ids[i]);
		if (since < from)
			from = since;
	}
	qsort(check->candidates, n, sizeof(char *), cmp_str);
	check->seen = palloc0(sizeof(bool) * Max(n, 1));
	check->nleft = n;
	check->settled_trans_ids = palloc(sizeof(char *) * Max(n, 1));
	check->settled_batch_ids = palloc(sizeof(char *) * Max(n, 1));
	check->settled_times = palloc(sizeof(char *) * Max(n, 1));

	/* the last 31 days at most (one request's range), ending now */
	from -= (TimestampTz) CLOCK_MARGIN_S * USECS_PER_SEC;
	if (from < earliest)
		from = earliest;
	check->searched_to = now;
	if (n == 0 || !batch_scan_begin(&check->scan, from, now))
	{
		check->error = n == 0 ? NULL : pstrdup("the settlement dates to search could not be written");
		return SETTLEMENT_DONE;
	}
	return SETTLEMENT_ASK;
}

bool
settlement_check_mark(const SettlementCheck *check, MemoryContext cxt, SettlementMark *mark)
{
	if (check->error != NULL ||
		(check->nleft > 0 && check->scan.phase != BATCH_SCAN_DONE))
		return false;
	mark->searched_to = check->searched_to;
	mark->n = 0;
	mark->trans_ids = MemoryContextAlloc(cxt, sizeof(char *) * Max(check->nleft, 1));
	/* candidates are sorted: so is the mark */
	for (int i = 0; i < check->ncandidates; i++)
		if (!check->seen[i])
			mark->trans_ids[mark->n++] = MemoryContextStrdup(cxt, check->candidates[i]);
	return true;
}

/* The settled transactions of a batch's page that are ours. */
static void
match_page(SettlementCheck *check, MemoryContext cxt, const AnetTxnList *list)
{
	for (size_t i = 0; i < list->count && check->nleft > 0; i++)
	{
		const AnetTxnSummary *t = &list->items[i];
		const char *key = t->trans_id;
		char	  **hit;
		int			k;

		if (anet_classify_transaction_status(t->transaction_status) != ANET_STATUS_SETTLED)
			continue;
		hit = bsearch(&key, check->candidates, check->ncandidates, sizeof(char *), cmp_str);
		if (hit == NULL)
			continue;
		k = hit - check->candidates;
		if (check->seen[k])
			continue;
		check->seen[k] = true;
		check->nleft--;
		check->settled_trans_ids[check->nsettled] = check->candidates[k];
		check->settled_batch_ids[check->nsettled] = MemoryContextStrdup(cxt, batch_scan_batch_id(&check->scan));
		check->settled_times[check->nsettled] = MemoryContextStrdup(cxt, batch_scan_batch_time(&check->scan));
		check->nsettled++;
	}
}

SettlementStep
settlement_check_read(SettlementCheck *check, MemoryContext cxt, const char *body, size_t len)
{
	AnetReplyStatus status;
	AnetTxnList list;

	if (check->scan.phase == BATCH_SCAN_LIST)
	{
		if (!batch_scan_read_list(&check->scan, cxt, body, len, &status))
		{
			check->error = status.message_code[0] ?
				psprintf("the gateway refused the settled batch list: %s %s",
						 status.message_code, status.message_text) :
				pstrdup("the gateway's settled batch list could not be read");
			return SETTLEMENT_DONE;
		}
		return check->scan.phase == BATCH_SCAN_DONE ? SETTLEMENT_DONE : SETTLEMENT_ASK;
	}
	if (!batch_scan_read_page(body, len, &list))
	{
		check->error = list.status.message_code[0] ?
			psprintf("the gateway refused batch %s's transaction list: %s %s",
					 batch_scan_batch_id(&check->scan), list.status.message_code,
					 list.status.message_text) :
			psprintf("the gateway's transaction list of batch %s could not be read",
					 batch_scan_batch_id(&check->scan));
		anet_txn_list_free(&list);
		return SETTLEMENT_DONE;
	}
	PG_TRY();
	{
		match_page(check, cxt, &list);
	}
	PG_CATCH();
	{
		anet_txn_list_free(&list);
		PG_RE_THROW();
	}
	PG_END_TRY();
	batch_scan_advance(&check->scan, &list);
	anet_txn_list_free(&list);
	if (check->nleft == 0 || check->scan.phase == BATCH_SCAN_DONE)
		return SETTLEMENT_DONE;
	return SETTLEMENT_ASK;
}
