/*-------------------------------------------------------------------------
 *
 * settle.c
 *		Daily batch settlement: on command or on a clock, every merchant's
 *		captured and refunded transactions move into a batch (one per
 *		payment method) and become settled.  Voided and declined ones are
 *		closed into the same batch, as in the batch statistics.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

/* Find a batch of this merchant */
Batch *
batch_get(int merchant, long long id)
{
	for (int i = 0; i < sim.nbatches; i++)
		if (sim.batches[i].id == id && sim.batches[i].merchant == merchant)
			return &sim.batches[i];
	return NULL;
}

/* Mark authorizations older than the configured expiry as expired */
void
settle_expire_auths(void)
{
	long long	now = sim_now_ms();
	long long	limit = (long long) sim.cfg.auth_expiry_days * 86400000LL;

	for (long long i = 0; i < sim.ntxns; i++)
	{
		Txn		   *t = sim.txns[i];

		if (t && t->status == ST_AUTH_PENDING_CAPTURE && now - t->submit_ms > limit)
			t->status = ST_EXPIRED;
	}
}

/* Does this transaction go into the next batch? */
static bool
settles(Txn *t)
{
	if (t->batch_id != 0)
		return false;
	return t->status == ST_CAPTURED_PENDING_SETTLEMENT ||
		t->status == ST_REFUND_PENDING_SETTLEMENT ||
		t->status == ST_VOIDED || t->status == ST_DECLINED;
}

/* Settle everything pending now (lock held); returns the new batches */
json_object *
settle_now(void)
{
	json_object *out = json_object_new_array();
	long long	now = sim_now_ms();

	settle_expire_auths();
	for (int m = 0; m < sim.nmerchants; m++)
	{
		for (int echeck = 0; echeck < 2; echeck++)
		{
			Batch	   *b = NULL;
			int			money = 0;

			for (long long i = 0; i < sim.ntxns; i++)
			{
				Txn		   *t = sim.txns[i];

				if (t == NULL || t->merchant != m || t->echeck != (echeck == 1) ||
					!settles(t))
					continue;
				if (b == NULL)
				{
					if (sim.nbatches == sim.capbatches)
					{
						int			nc = sim.capbatches ? sim.capbatches * 2 : 64;
						Batch	   *nb = realloc(sim.batches, nc * sizeof(Batch));

						if (nb == NULL)
							return out;
						sim.batches = nb;
						sim.capbatches = nc;
					}
					b = &sim.batches[sim.nbatches++];
					memset(b, 0, sizeof(*b));
					b->id = sim.next_batch_id++;
					b->merchant = m;
					b->settle_ms = now;
					b->echeck = echeck == 1;
				}
				if ((b->ntxns & 63) == 0)
				{
					long long  *nt = realloc(b->txns, (b->ntxns + 64) * sizeof(long long));

					if (nt == NULL)
						break;
					b->txns = nt;
				}
				b->txns[b->ntxns++] = t->id;
				t->batch_id = b->id;
				if (t->status == ST_CAPTURED_PENDING_SETTLEMENT)
				{
					t->status = ST_SETTLED;
					money++;
				}
				else if (t->status == ST_REFUND_PENDING_SETTLEMENT)
				{
					t->status = ST_REFUND_SETTLED;
					money++;
				}
			}
			if (b != NULL)
			{
				json_object *o = json_object_new_object();
				char		buf[32];

				snprintf(buf, sizeof(buf), "%lld", b->id);
				jadd_str(o, "batchId", buf);
				jadd_str(o, "merchant", sim.merchants[m].login);
				jadd_str(o, "paymentMethod", echeck ? "eCheck" : "creditCard");
				jadd(o, "transactions", json_object_new_int(b->ntxns));
				jadd(o, "settled", json_object_new_int(money));
				json_object_array_add(out, o);
			}
		}
	}
	return out;
}

/* Background clock: settle every cfg.settle_interval seconds */
static void *
settle_thread(void *arg)
{
	(void) arg;
	for (;;)
	{
		json_object *r;

		sleep((unsigned int) sim.cfg.settle_interval);
		pthread_mutex_lock(&sim.lock);
		r = settle_now();
		pthread_mutex_unlock(&sim.lock);
		json_object_put(r);
	}
	return NULL;
}

/* Start the settlement clock if one was configured */
void
settle_start_clock(void)
{
	pthread_t	th;

	if (sim.cfg.settle_interval <= 0)
		return;
	if (pthread_create(&th, NULL, settle_thread, NULL) != 0)
	{
		fprintf(stderr, "anet-sim: cannot start settlement thread\n");
		exit(1);
	}
	pthread_detach(th);
}
