/*-------------------------------------------------------------------------
 *
 * audit_horizon.c
 *	  The audit ids transactions still running hold: what sealing may cover.
 *
 * pay_audit_seal() chains audit rows in ranges of audit ids, so it may
 * only seal up to an id below which no transaction still running holds
 * one: a row committed later inside a sealed range would break the chain.
 * It used to wait for every transaction running when it asked, of any
 * role and any database, writer of audit rows or not: one session left
 * idle in a transaction with an xid (a temporary table is enough, no
 * privilege needed) stopped sealing for everyone.
 *
 * Here every backend notes, in a slot of shared memory, the first audit
 * id its transaction took (ids increase, so it is the lowest it holds),
 * and clears it when the transaction ends.  The horizon is the lowest such
 * id of this database, less one, or the sequence's last value.  A slot
 * says "taking" before the sequence is asked, so that a horizon computed
 * meanwhile waits the moment it takes to learn the id.  A prepared
 * transaction has left its backend: the horizon waits for those (rare and
 * short) as before.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit_horizon.h"

/* a slot's id while its backend asks the sequence */
#define TAKING	((uint64) PG_INT64_MAX)

typedef struct HorizonSlot
{
	pg_atomic_uint32 database;	/* MyDatabaseId of the holder */
	pg_atomic_uint64 first_id;	/* 0: none; TAKING; else the first id */
} HorizonSlot;

static HorizonSlot *slots = NULL;
static int	nslots = 0;
static bool holding = false;	/* this backend's slot is set */

Size
audit_horizon_shmem_size(void)
{
	return mul_size(MaxBackends, sizeof(HorizonSlot));
}

void
audit_horizon_shmem_init(void)
{
	bool		found;

	slots = ShmemInitStruct("payments audit horizon", audit_horizon_shmem_size(), &found);
	nslots = MaxBackends;
	if (!found)
		for (int i = 0; i < nslots; i++)
		{
			pg_atomic_init_u32(&slots[i].database, InvalidOid);
			pg_atomic_init_u64(&slots[i].first_id, 0);
		}
}

static HorizonSlot *
my_slot(void)
{
	if (slots == NULL || MyProc == NULL || MyProc->pgprocno >= nslots)
		return NULL;
	return &slots[MyProc->pgprocno];
}

/* Before the sequence is asked: the first time in the transaction, "taking". */
void
audit_horizon_taking(void)
{
	HorizonSlot *s = my_slot();

	if (s == NULL || holding)
		return;
	pg_atomic_write_u32(&s->database, MyDatabaseId);
	/* a full barrier: seen before the sequence hands the id out */
	(void) pg_atomic_exchange_u64(&s->first_id, TAKING);
	holding = true;
}

/* The id the sequence gave: the transaction's first, if it is. */
void
audit_horizon_took(int64 audit_id)
{
	HorizonSlot *s = my_slot();

	if (s != NULL && holding && pg_atomic_read_u64(&s->first_id) == TAKING)
		(void) pg_atomic_exchange_u64(&s->first_id, (uint64) audit_id);
}

/*
 * The transaction ended (called once it is no longer seen running); a
 * prepared one is waited for by its xid.
 */
void
audit_horizon_release(void)
{
	HorizonSlot *s = my_slot();

	if (s == NULL || !holding)
		return;
	(void) pg_atomic_exchange_u64(&s->first_id, 0);
	holding = false;
}

/* Sleep a millisecond, or false at deadline. */
static bool
nap(TimestampTz deadline)
{
	if (GetCurrentTimestamp() >= deadline)
		return false;
	CHECK_FOR_INTERRUPTS();
	pg_usleep(1000L);
	return true;
}

bool
audit_horizon(int64 last_value, TimestampTz deadline, int64 *horizon)
{
	int64		h = last_value;
	Snapshot	snap;

	if (slots == NULL)
	{
		/* not preloaded, no slots: every transaction running is waited for */
		snap = GetLatestSnapshot();
		for (uint32 i = 0; i < snap->xcnt; i++)
			while (TransactionIdIsInProgress(snap->xip[i]))
				if (!nap(deadline))
					return false;
		*horizon = last_value;
		return true;
	}

	/* the sequence was read first: an id taken later is above it */
	pg_memory_barrier();
	for (int i = 0; i < nslots; i++)
	{
		uint64		id;

		/* our own rows are seen by the sealing and commit with it */
		if (MyProc != NULL && i == MyProc->pgprocno)
			continue;
		while ((id = pg_atomic_read_u64(&slots[i].first_id)) == TAKING &&
			   pg_atomic_read_u32(&slots[i].database) == MyDatabaseId)
			if (!nap(deadline))
				return false;
		if (id != 0 && id != TAKING &&
			pg_atomic_read_u32(&slots[i].database) == MyDatabaseId)
			h = Min(h, (int64) id - 1);
	}

	/* prepared transactions (no backend's xid any more) */
	snap = GetLatestSnapshot();
	for (uint32 i = 0; i < snap->xcnt; i++)
	{
		TransactionId xid = snap->xip[i];

		while (BackendXidGetPid(xid) == 0 && TransactionIdIsInProgress(xid))
			if (!nap(deadline))
				return false;
	}
	*horizon = h;
	return true;
}
