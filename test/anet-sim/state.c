/*-------------------------------------------------------------------------
 *
 * state.c
 *		Merchants, the transaction store and the ledger of accepted
 *		charges.  Transactions are indexed by transId, which increases
 *		monotonically and is never reused, even across resets.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

Sim			sim;

const char *const tx_status_names[ST_COUNT] = {
	"authorizedPendingCapture",
	"capturedPendingSettlement",
	"settledSuccessfully",
	"refundPendingSettlement",
	"refundSettledSuccessfully",
	"voided",
	"declined",
	"expired",
	"generalError",
	"FDSPendingReview",
	"FDSAuthorizedPendingReview"
};

/* The configuration before any option: BOM on, the real service's windows */
void
sim_config_defaults(void)
{
	sim.cfg.bom = true;
	sim.cfg.refund_window_days = 180;
	sim.cfg.auth_expiry_days = 30;
	sim.cfg.nonce_ttl = 900;
	sim.cfg.threads = 4;
}

/* Set up the global state with the built-in sandbox-like merchant */
void
state_init(void)
{
	pthread_mutex_init(&sim.lock, NULL);
	sim.ledger = json_object_new_array();
	sim.next_batch_id = 9000001;
	merchant_add(DEFAULT_LOGIN, DEFAULT_KEY);
}

/* Free every transaction and batch; the ledger only when asked */
void
state_reset(bool ledger)
{
	for (long long i = 0; i < sim.ntxns; i++)
	{
		Txn		   *t = sim.txns[i];

		if (t == NULL)
			continue;
		json_object_put(t->bill_to);
		json_object_put(t->ship_to);
		json_object_put(t->processing_options);
		json_object_put(t->subsequent_auth);
		free(t);
		sim.txns[i] = NULL;
	}
	/* ntxns stays: transIds are never reused */
	for (int i = 0; i < sim.nbatches; i++)
		free(sim.batches[i].txns);
	sim.nbatches = 0;
	for (int i = 0; i < sim.nmerchants; i++)
	{
		json_object_put(sim.merchants[i].dup);
		sim.merchants[i].dup = json_object_new_object();
	}
	if (ledger)
	{
		json_object_put(sim.ledger);
		sim.ledger = json_object_new_array();
	}
	sim.clock_offset_ms = 0;
	cim_reset();
	webhook_reset();
}

/* Index of a merchant by API login id, or -1 */
int
merchant_find(const char *login)
{
	for (int i = 0; i < sim.nmerchants; i++)
		if (strcmp(sim.merchants[i].login, login) == 0)
			return i;
	return -1;
}

/* Add (or re-key) a merchant; returns its index or -1 when full */
int
merchant_add(const char *login, const char *key)
{
	int			i = merchant_find(login);

	if (i < 0)
	{
		if (sim.nmerchants >= MAX_MERCHANTS)
			return -1;
		i = sim.nmerchants++;
		strlcpy0(sim.merchants[i].login, login, sizeof(sim.merchants[i].login));
		sim.merchants[i].dup = json_object_new_object();
	}
	strlcpy0(sim.merchants[i].key, key, sizeof(sim.merchants[i].key));
	return i;
}

/* Allocate the next transaction id and record */
Txn *
txn_new(int merchant)
{
	Txn		   *t;

	if (sim.ntxns == sim.captxns)
	{
		long long	ncap = sim.captxns ? sim.captxns * 2 : 4096;
		Txn		  **n = realloc(sim.txns, ncap * sizeof(Txn *));

		if (n == NULL)
			return NULL;
		sim.txns = n;
		sim.captxns = ncap;
	}
	t = calloc(1, sizeof(Txn));
	if (t == NULL)
		return NULL;
	t->id = TXN_BASE + sim.ntxns;
	t->merchant = merchant;
	t->submit_ms = sim_now_ms();
	t->prepaid_balance = -1;
	sim.txns[sim.ntxns++] = t;
	return t;
}

/* Look up a transaction of this merchant; NULL if unknown or foreign */
Txn *
txn_get(int merchant, long long id)
{
	Txn		   *t;

	if (id < TXN_BASE || id >= TXN_BASE + sim.ntxns)
		return NULL;
	t = sim.txns[id - TXN_BASE];
	if (t == NULL || t->merchant != merchant)
		return NULL;
	return t;
}

/* Append one accepted money movement to the ledger */
void
ledger_record(Txn *t, const char *kind, long long amount)
{
	json_object *e = json_object_new_object();
	char		buf[64];

	jadd_str(e, "merchant", sim.merchants[t->merchant].login);
	snprintf(buf, sizeof(buf), "%lld", t->id);
	jadd_str(e, "transId", buf);
	jadd_str(e, "kind", kind);
	jadd_str(e, "transactionType", t->type);
	format_amount(amount, buf, sizeof(buf));
	jadd_str(e, "amount", buf);
	jadd(e, "amountCents", json_object_new_int64(amount));
	jadd_str(e, "invoiceNumber", t->invoice);
	jadd_str(e, "refId", t->ref_id);
	jadd_str(e, "accountNumber", t->last4);
	jadd(e, "responseCode", json_object_new_int(t->response_code));
	/* card on file: what the request said of the charge */
	jadd(e, "recurringBilling", json_object_new_boolean(t->recurring));
	if (t->processing_options)
		jadd(e, "processingOptions", json_object_get(t->processing_options));
	if (t->subsequent_auth)
		jadd(e, "subsequentAuthInformation", json_object_get(t->subsequent_auth));
	if (t->ref_trans_id)
	{
		snprintf(buf, sizeof(buf), "%lld", t->ref_trans_id);
		jadd_str(e, "refTransId", buf);
	}
	format_time_utc(sim_now_ms(), buf, sizeof(buf), true);
	jadd_str(e, "time", buf);
	if (json_object_array_add(sim.ledger, e) != 0)
		json_object_put(e);
}

/* The ledger (optionally one merchant's), with each entry's current status */
json_object *
ledger_json(const char *login)
{
	json_object *out = json_object_new_array();
	size_t		n = json_object_array_length(sim.ledger);

	for (size_t i = 0; i < n; i++)
	{
		json_object *e = json_object_array_get_idx(sim.ledger, i);
		json_object *c = NULL;
		const char *id = jstr(e, "transId");
		long long	tid = id ? atoll(id) : 0;
		Txn		   *t = NULL;

		if (login && strcmp(jstr(e, "merchant"), login) != 0)
			continue;
		if (json_object_deep_copy(e, &c, NULL) != 0)
			continue;
		if (tid >= TXN_BASE && tid < TXN_BASE + sim.ntxns)
			t = sim.txns[tid - TXN_BASE];
		jadd_str(c, "currentStatus", t ? tx_status_names[t->status] : "unknown");
		if (json_object_array_add(out, c) != 0)
			json_object_put(c);
	}
	return out;
}

/* Configured merchants (keys included: this is a loopback test tool) */
json_object *
merchants_json(void)
{
	json_object *out = json_object_new_array();

	for (int i = 0; i < sim.nmerchants; i++)
	{
		json_object *o = json_object_new_object();

		jadd_str(o, "name", sim.merchants[i].login);
		jadd_str(o, "transactionKey", sim.merchants[i].key);
		jadd(o, "active", json_object_new_boolean(!sim.merchants[i].inactive));
		jadd(o, "transactionDetailsApi", json_object_new_boolean(!sim.merchants[i].no_reporting));
		jadd(o, "testMode", json_object_new_boolean(sim.merchants[i].test_mode));
		if (json_object_array_add(out, o) != 0)
			json_object_put(o);
	}
	return out;
}
