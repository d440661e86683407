/*-------------------------------------------------------------------------
 *
 * report.c
 *		Transaction reporting: getTransactionDetails, the unsettled list,
 *		settled batches (with statistics), a batch's transaction list.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

/* getTransactionDetailsRequest */
json_object *
handle_get_transaction_details(int m, json_object *req)
{
	const char *id = jstr(req, "transId");
	Txn		   *t = id ? txn_get(m, atoll(id)) : NULL;
	json_object *reply = json_object_new_object();

	if (t == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	jadd(reply, "transaction", txn_details_json(t));
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* sort helpers: by id or submit time, either direction */
static bool sort_desc;
static bool sort_by_time;

/* qsort comparator honouring the request's sorting */
static int
cmp_txn(const void *a, const void *b)
{
	const Txn  *x = *(Txn * const *) a;
	const Txn  *y = *(Txn * const *) b;
	long long	d = sort_by_time ? x->submit_ms - y->submit_ms : x->id - y->id;

	if (d == 0)
		d = x->id - y->id;
	if (sort_desc)
		d = -d;
	return d < 0 ? -1 : d > 0 ? 1 : 0;
}

/*
 * Sort, page and emit a transaction list reply.  Paging offset is the
 * 1-based page number (limit per page), as the API defines it.
 */
static json_object *
list_reply(json_object *req, Txn **list, int n, bool count_total)
{
	json_object *reply = json_object_new_object();
	json_object *arr = json_object_new_array();
	json_object *sorting = jget(req, "sorting");
	json_object *paging = jget(req, "paging");
	int			limit = n,
				start = 0;

	sort_desc = jbool(jstr(sorting, "orderDescending"));
	sort_by_time = jstr(sorting, "orderBy") &&
		strcmp(jstr(sorting, "orderBy"), "submitTimeUTC") == 0;
	if (sorting == NULL)
	{
		/* unsorted default: newest first, like the samples */
		sort_desc = true;
		sort_by_time = false;
	}
	qsort(list, n, sizeof(Txn *), cmp_txn);
	if (paging)
	{
		const char *l = jstr(paging, "limit");
		const char *o = jstr(paging, "offset");
		int			li = l ? atoi(l) : 1000,
					oi = o ? atoi(o) : 1;

		if (li < 1 || li > 1000 || oi < 1 || oi > 100000)
		{
			json_object_put(arr);
			api_finish(reply, req, false, "E00013",
					   "Paging Offset and Limit are invalid.");
			return reply;
		}
		limit = li;
		start = (oi - 1) * li;
	}
	for (int i = start; i < n && i < start + limit; i++)
		json_object_array_add(arr, txn_summary_json(list[i]));
	if (n == 0)
	{
		json_object_put(arr);
		api_finish(reply, req, true, "I00004", NULL);
		return reply;
	}
	jadd(reply, "transactions", arr);
	if (count_total)
		jadd(reply, "totalNumInResultSet", json_object_new_int(n));
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/*
 * getUnsettledTransactionListRequest ([status] any|pendingApproval).
 * pendingApproval lists the transactions held for review (the API
 * reference's "Get Held Transaction List"), and only those.  Whether the
 * list without it (or with any) holds them too is documented nowhere
 * (Authorize.Net notes, section 14): the simulator takes the case a client
 * must survive, and leaves them out.
 */
json_object *
handle_get_unsettled_list(int m, json_object *req)
{
	const char *status = jstr(req, "status");
	bool		pending = status && strcmp(status, "pendingApproval") == 0;
	Txn		  **list = malloc(sizeof(Txn *) * (sim.ntxns + 1));
	int			n = 0;
	json_object *reply;

	if (list == NULL)
		return api_error_reply("E00001", NULL);
	for (long long i = 0; i < sim.ntxns; i++)
	{
		Txn		   *t = sim.txns[i];

		if (t == NULL || t->merchant != m || t->batch_id != 0 ||
			t->status == ST_EXPIRED)
			continue;
		if (pending != (t->status == ST_FDS_PENDING_REVIEW ||
						t->status == ST_FDS_AUTH_PENDING_REVIEW))
			continue;
		list[n++] = t;
	}
	reply = list_reply(req, list, n, true);
	free(list);
	return reply;
}

/* getTransactionListRequest (batchId) */
json_object *
handle_get_transaction_list(int m, json_object *req)
{
	const char *id = jstr(req, "batchId");
	Batch	   *b = id ? batch_get(m, atoll(id)) : NULL;
	Txn		  **list;
	int			n = 0;
	json_object *reply;

	if (b == NULL)
	{
		reply = json_object_new_object();
		api_finish(reply, req, true, "I00004", NULL);
		return reply;
	}
	list = malloc(sizeof(Txn *) * (b->ntxns + 1));
	if (list == NULL)
		return api_error_reply("E00001", NULL);
	for (int i = 0; i < b->ntxns; i++)
	{
		Txn		   *t = txn_get(m, b->txns[i]);

		if (t)
			list[n++] = t;
	}
	reply = list_reply(req, list, n, true);
	free(list);
	return reply;
}

/* Per-card-type statistics of a batch, as in includeStatistics replies */
static json_object *
batch_statistics(int m, Batch *b)
{
	json_object *arr = json_object_new_array();
	const char *types[16];
	int			ntypes = 0;

	for (int i = 0; i < b->ntxns; i++)
	{
		Txn		   *t = txn_get(m, b->txns[i]);
		bool		seen = false;

		if (t == NULL)
			continue;
		for (int k = 0; k < ntypes; k++)
			if (strcmp(types[k], t->account_type) == 0)
				seen = true;
		if (!seen && ntypes < 16)
			types[ntypes++] = t->account_type;
	}
	for (int k = 0; k < ntypes; k++)
	{
		long long	charge = 0,
					refund = 0;
		int			nc = 0,
					nr = 0,
					nv = 0,
					nd = 0;
		json_object *s = json_object_new_object();

		for (int i = 0; i < b->ntxns; i++)
		{
			Txn		   *t = txn_get(m, b->txns[i]);

			if (t == NULL || strcmp(t->account_type, types[k]) != 0)
				continue;
			if (t->status == ST_SETTLED)
			{
				charge += t->settle_amount;
				nc++;
			}
			else if (t->status == ST_REFUND_SETTLED)
			{
				refund += t->settle_amount;
				nr++;
			}
			else if (t->status == ST_VOIDED)
				nv++;
			else if (t->status == ST_DECLINED)
				nd++;
		}
		jadd_str(s, "accountType", types[k]);
		jadd(s, "chargeAmount", json_amount(charge));
		jadd(s, "chargeCount", json_object_new_int(nc));
		jadd(s, "refundAmount", json_amount(refund));
		jadd(s, "refundCount", json_object_new_int(nr));
		jadd(s, "voidCount", json_object_new_int(nv));
		jadd(s, "declineCount", json_object_new_int(nd));
		jadd(s, "errorCount", json_object_new_int(0));
		json_object_array_add(arr, s);
	}
	return arr;
}

/* One batchDetailsType */
static json_object *
batch_json(int m, Batch *b, bool stats)
{
	json_object *o = json_object_new_object();
	char		buf[64];

	snprintf(buf, sizeof(buf), "%lld", b->id);
	jadd_str(o, "batchId", buf);
	format_time_utc(b->settle_ms, buf, sizeof(buf), false);
	jadd_str(o, "settlementTimeUTC", buf);
	jadd(o, "settlementTimeUTCSpecified", json_object_new_boolean(1));
	format_time_local(b->settle_ms, buf, sizeof(buf), false);
	jadd_str(o, "settlementTimeLocal", buf);
	jadd(o, "settlementTimeLocalSpecified", json_object_new_boolean(1));
	jadd_str(o, "settlementState", "settledSuccessfully");
	jadd_str(o, "paymentMethod", b->echeck ? "eCheck" : "creditCard");
	jadd_str(o, "marketType", "eCommerce");
	jadd_str(o, "product", "Card Not Present");
	if (stats)
		jadd(o, "statistics", batch_statistics(m, b));
	return o;
}

/* Parse an xs:dateTime into ms since the epoch (UTC; zone suffix honoured) */
static long long
parse_datetime(const char *s)
{
	struct tm	tm;
	int			y,
				mo,
				d,
				h = 0,
				mi = 0,
				se = 0;
	long long	ms;
	const char *z;

	if (s == NULL || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &se) < 3)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	ms = (long long) timegm(&tm) * 1000;
	z = strchr(s + 10, '+');
	if (z == NULL && strlen(s) > 19)
		z = strchr(s + 19, '-');
	if (z)
	{
		int			zh = 0,
					zm = 0;

		sscanf(z + 1, "%d:%d", &zh, &zm);
		ms -= (*z == '+' ? 1 : -1) * ((long long) zh * 3600 + zm * 60) * 1000;
	}
	return ms;
}

/* getSettledBatchListRequest: default range is the last 24 hours */
json_object *
handle_get_settled_batch_list(int m, json_object *req)
{
	json_object *reply = json_object_new_object();
	json_object *arr = json_object_new_array();
	bool		stats = jbool(jstr(req, "includeStatistics"));
	long long	now = sim_now_ms();
	long long	first = parse_datetime(jstr(req, "firstSettlementDate"));
	long long	last = parse_datetime(jstr(req, "lastSettlementDate"));
	int			n = 0;

	if (first < 0 && last < 0)
	{
		first = now - 86400000LL;
		last = now + 1000;
	}
	else if (first < 0 || last < 0 || last < first ||
			 last - first > 31LL * 86400000LL)
	{
		json_object_put(arr);
		api_finish(reply, req, false, "E00013", NULL);
		return reply;
	}
	for (int i = 0; i < sim.nbatches; i++)
	{
		Batch	   *b = &sim.batches[i];

		if (b->merchant != m || b->settle_ms < first || b->settle_ms > last + 999)
			continue;
		json_object_array_add(arr, batch_json(m, b, stats));
		n++;
	}
	if (n == 0)
	{
		json_object_put(arr);
		api_finish(reply, req, true, "I00004", NULL);
		return reply;
	}
	jadd(reply, "batchList", arr);
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* getBatchStatisticsRequest */
json_object *
handle_get_batch_statistics(int m, json_object *req)
{
	const char *id = jstr(req, "batchId");
	Batch	   *b = id ? batch_get(m, atoll(id)) : NULL;
	json_object *reply = json_object_new_object();

	if (b == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	jadd(reply, "batch", batch_json(m, b, true));
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* getTransactionListForCustomerRequest: a profile's transactions */
json_object *
handle_get_customer_list(int m, json_object *req)
{
	const char *pid = jstr(req, "customerProfileId");
	const char *ppid = jstr(req, "customerPaymentProfileId");
	Txn		  **list = malloc(sizeof(Txn *) * (sim.ntxns + 1));
	int			n = 0;
	json_object *reply;

	if (list == NULL)
		return api_error_reply("E00001", NULL);
	for (long long i = 0; i < sim.ntxns; i++)
	{
		Txn		   *t = sim.txns[i];

		if (t == NULL || t->merchant != m || pid == NULL ||
			strcmp(t->profile_id, pid) != 0 ||
			(ppid && strcmp(t->payment_profile_id, ppid) != 0))
			continue;
		list[n++] = t;
	}
	reply = list_reply(req, list, n, true);
	free(list);
	return reply;
}
