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
 * meanwhile waits the moment it takes to learn the id.
 *
 * Each slot also says which merchant's rows the transaction wrote (or
 * several), and a merchant's seal only stays below the transactions that
 * wrote its rows: a role bound to one merchant that left a transaction
 * open, or prepared it, after one API call held back every merchant's
 * seals (it still holds back its own).
 *
 * A prepared transaction has left its backend.  Before it does (PREPARE
 * TRANSACTION's pre-prepare callback), every backend notes its xid, its
 * database and its first audit id (0: none) in an entry of its own, free
 * again once that xid is no longer in progress.  The horizon stays below
 * the first id of a prepared transaction of this database that holds one,
 * and ignores the others.  It used to wait for every prepared transaction:
 * BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'x', by a role with no
 * privilege, in any database, stopped sealing for everyone until someone
 * ran ROLLBACK PREPARED.  Only a prepared transaction not noted (made
 * before the server last started: shared memory was lost) is waited for.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
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

/* a slot's merchant when the transaction wrote rows of several */
#define SEVERAL	((uint64) PG_UINT64_MAX)

typedef struct HorizonSlot
{
	pg_atomic_uint32 database;	/* MyDatabaseId of the holder */
	pg_atomic_uint64 merchant;	/* whose rows it wrote: one, or SEVERAL */
	pg_atomic_uint64 first_id;	/* 0: none; TAKING; else the first id */
} HorizonSlot;

/* a prepared transaction: what it holds (written before its xid is prepared) */
typedef struct PreparedSlot
{
	pg_atomic_uint32 xid;		/* InvalidTransactionId, or not in progress: free */
	pg_atomic_uint32 database;	/* MyDatabaseId of the transaction */
	pg_atomic_uint64 merchant;	/* whose rows it wrote: one, or SEVERAL */
	pg_atomic_uint64 first_id;	/* 0: none; else its first audit id */
} PreparedSlot;

static HorizonSlot *slots = NULL;
static int	nslots = 0;
static PreparedSlot *prepared = NULL;
static int	nprepared = 0;
static bool holding = false;	/* this backend's slot is set */

/* one per backend that may be preparing, and per prepared transaction */
static int
prepared_slots(void)
{
	return MaxBackends + max_prepared_xacts;
}

Size
audit_horizon_shmem_size(void)
{
	return add_size(MAXALIGN(mul_size(MaxBackends, sizeof(HorizonSlot))),
					mul_size(prepared_slots(), sizeof(PreparedSlot)));
}

void
audit_horizon_shmem_init(void)
{
	bool		found;
	char	   *base;

	base = ShmemInitStruct("payments audit horizon", audit_horizon_shmem_size(), &found);
	nslots = MaxBackends;
	nprepared = prepared_slots();
	slots = (HorizonSlot *) base;
	prepared = (PreparedSlot *) (base + MAXALIGN(mul_size(nslots, sizeof(HorizonSlot))));
	if (!found)
	{
		for (int i = 0; i < nslots; i++)
		{
			pg_atomic_init_u32(&slots[i].database, InvalidOid);
			pg_atomic_init_u64(&slots[i].merchant, 0);
			pg_atomic_init_u64(&slots[i].first_id, 0);
		}
		for (int i = 0; i < nprepared; i++)
		{
			pg_atomic_init_u32(&prepared[i].xid, InvalidTransactionId);
			pg_atomic_init_u32(&prepared[i].database, InvalidOid);
			pg_atomic_init_u64(&prepared[i].merchant, 0);
			pg_atomic_init_u64(&prepared[i].first_id, 0);
		}
	}
}

static HorizonSlot *
my_slot(void)
{
	if (slots == NULL || MyProc == NULL || MyProc->pgprocno >= nslots)
		return NULL;
	return &slots[MyProc->pgprocno];
}

/*
 * Before the sequence is asked for an id of a row of merchant: the first
 * time in the transaction, the merchant and "taking"; later, for a row of
 * another merchant, SEVERAL.  Either is seen before the id is handed out
 * (a full barrier), so a horizon that read the sequence after that id was
 * taken sees it.
 */
void
audit_horizon_taking(int64 merchant)
{
	HorizonSlot *s = my_slot();
	uint64		m;

	if (s == NULL)
		return;
	if (!holding)
	{
		pg_atomic_write_u32(&s->database, MyDatabaseId);
		pg_atomic_write_u64(&s->merchant, (uint64) merchant);
		(void) pg_atomic_exchange_u64(&s->first_id, TAKING);
		holding = true;
		return;
	}
	m = pg_atomic_read_u64(&s->merchant);
	if (m != (uint64) merchant && m != SEVERAL)
		(void) pg_atomic_exchange_u64(&s->merchant, SEVERAL);
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
 * PREPARE TRANSACTION is about to hand the transaction over (its xid still
 * belongs to this backend, after the last audit row was written): note its
 * xid, database and first audit id, none included, in a free entry.  One
 * is always free (an entry per backend and per prepared transaction); if
 * none were, the transaction would only be waited for, as one not noted.
 */
void
audit_horizon_preparing(void)
{
	HorizonSlot *s = my_slot();
	TransactionId xid = GetTopTransactionIdIfAny();
	uint64		first = 0;
	uint64		merchant = 0;

	if (s == NULL || prepared == NULL || !TransactionIdIsValid(xid))
		return;
	if (holding)
	{
		first = pg_atomic_read_u64(&s->first_id);
		if (first == TAKING)
			return;				/* not known: waited for */
		merchant = pg_atomic_read_u64(&s->merchant);
	}
	for (int i = 0; i < nprepared; i++)
	{
		uint32		v = pg_atomic_read_u32(&prepared[i].xid);

		if (TransactionIdIsValid(v) && TransactionIdIsInProgress(v))
			continue;
		if (pg_atomic_compare_exchange_u32(&prepared[i].xid, &v, xid))
		{
			pg_atomic_write_u32(&prepared[i].database, MyDatabaseId);
			pg_atomic_write_u64(&prepared[i].merchant, merchant);
			/* a full barrier: all of it seen before the xid is prepared */
			(void) pg_atomic_exchange_u64(&prepared[i].first_id, first);
			return;
		}
	}
}

/* Whether rows of a transaction that wrote some of held's count for merchant (0: all). */
static bool
counts_for(uint64 held, int64 merchant)
{
	return merchant == 0 || held == SEVERAL || held == (uint64) merchant;
}

/*
 * What a prepared transaction holds: false when it was not noted, else
 * *first_id is its first audit id of this database and merchant (0: none).
 */
static bool
prepared_holds(TransactionId xid, int64 merchant, int64 *first_id)
{
	for (int i = 0; i < nprepared; i++)
	{
		uint64		id;

		if (pg_atomic_read_u32(&prepared[i].xid) != xid)
			continue;
		id = pg_atomic_read_u64(&prepared[i].first_id);
		if (pg_atomic_read_u32(&prepared[i].database) != MyDatabaseId ||
			!counts_for(pg_atomic_read_u64(&prepared[i].merchant), merchant))
			id = 0;
		*first_id = (int64) id;
		return true;
	}
	return false;
}

/*
 * The transaction ended (called once it is no longer seen running); a
 * prepared one was noted by audit_horizon_preparing.
 */
void
audit_horizon_release(void)
{
	HorizonSlot *s = my_slot();

	if (s == NULL || !holding)
		return;
	(void) pg_atomic_exchange_u64(&s->first_id, 0);
	pg_atomic_write_u64(&s->merchant, 0);
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
audit_horizon(int64 last_value, TimestampTz deadline, int64 merchant, int64 *horizon)
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
		/* the merchant is read after the id: set before it, kept while it is */
		pg_read_barrier();
		if (id != 0 && id != TAKING &&
			pg_atomic_read_u32(&slots[i].database) == MyDatabaseId &&
			counts_for(pg_atomic_read_u64(&slots[i].merchant), merchant))
			h = Min(h, (int64) id - 1);
	}

	/*
	 * Prepared transactions (no backend's xid any more): below the first id
	 * of one that holds ids here; one not noted is waited for.
	 */
	snap = GetLatestSnapshot();
	for (uint32 i = 0; i < snap->xcnt; i++)
	{
		TransactionId xid = snap->xip[i];
		int64		first_id;

		while (BackendXidGetPid(xid) == 0 && TransactionIdIsInProgress(xid))
		{
			if (prepared_holds(xid, merchant, &first_id))
			{
				if (first_id != 0)
					h = Min(h, first_id - 1);
				break;
			}
			if (!nap(deadline))
				return false;
		}
	}
	*horizon = h;
	return true;
}
