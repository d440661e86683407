/*-------------------------------------------------------------------------
 *
 * vault_holds.c
 *	  Which open (or prepared) transactions sealed card data under which
 *	  vault key: what a scheduled key rotation waits for.
 *
 * A rotation forgets the previous key.  A card sealed under it by a
 * transaction that has not committed yet is invisible to the rotation's
 * re-seal and would be lost when that transaction commits.  So each
 * backend has a slot in shared memory (indexed by pgprocno) holding the
 * generation of the oldest key its open transaction sealed under (0:
 * none).  The first seal of a transaction publishes it, before the key it
 * seals with is read (one compare-and-swap, a full barrier: a rotation
 * that did not see the slot had made that key current already, and keeps
 * it); later seals of the transaction read the slot only.  Commit and
 * abort clear it (the commit's rows are visible by then); a subtransaction
 * rolled back leaves it set until the top-level end, which only makes a
 * rotation wait longer.  PREPARE TRANSACTION hands it over to an entry
 * holding the transaction's xid and the generation: it counts while that
 * xid is in progress (prepared), so COMMIT PREPARED or ROLLBACK PREPARED,
 * from any session, ends it with nothing to clear.
 *
 * Only sealing marks a slot: a pay_card value built in one transaction and
 * inserted in a later one is not covered (its key may be gone by then, and
 * the payment then fails with the lost-card reason).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"

#include "card_vault.h"
#include "vault_holds.h"

/* per prepared transaction that sealed: generation << 32 | xid (0 = free) */
static pg_atomic_uint64 *prepared_holds = NULL;
static int	nprepared;

/* per backend (pgprocno): the oldest key generation it sealed under */
static pg_atomic_uint32 *holds = NULL;
static int	nholds;

static bool callbacks_registered = false;

static int
prepared_entries(void)
{
	return MaxBackends + max_prepared_xacts;
}

Size
vault_holds_shmem_size(void)
{
	return add_size(MAXALIGN(mul_size(prepared_entries(), sizeof(pg_atomic_uint64))),
					mul_size(MaxBackends, sizeof(pg_atomic_uint32)));
}

void
vault_holds_shmem_init(void)
{
	bool		found;
	char	   *base;

	base = ShmemInitStruct("payments vault holds", vault_holds_shmem_size(), &found);
	nprepared = prepared_entries();
	nholds = MaxBackends;
	prepared_holds = (pg_atomic_uint64 *) base;
	holds = (pg_atomic_uint32 *) (base + MAXALIGN(mul_size(nprepared, sizeof(pg_atomic_uint64))));
	if (!found)
	{
		for (int i = 0; i < nprepared; i++)
			pg_atomic_init_u64(&prepared_holds[i], 0);
		for (int i = 0; i < nholds; i++)
			pg_atomic_init_u32(&holds[i], 0);
	}
}

static pg_atomic_uint32 *
my_hold(void)
{
	if (holds == NULL || MyProc == NULL || MyProc->pgprocno >= nholds)
		return NULL;
	return &holds[MyProc->pgprocno];
}

static void
release_hold(void)
{
	pg_atomic_uint32 *hold = my_hold();

	if (hold != NULL && pg_atomic_read_u32(hold) != 0)
		pg_atomic_write_u32(hold, 0);
}

static void
release_hold_at_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	release_hold();
}

/*
 * Before PREPARE TRANSACTION: a transaction that sealed and wrote (has an
 * xid) keeps its hold in an entry of its own while it stays prepared.  One
 * without an xid wrote nothing, so it commits no card.  Entries whose xid
 * is no longer in progress are free; there is one for every backend and
 * every prepared transaction, so one is always found.
 */
static void
hold_prepared(void)
{
	pg_atomic_uint32 *hold = my_hold();
	uint32		generation = hold != NULL ? pg_atomic_read_u32(hold) : 0;
	TransactionId xid = GetTopTransactionIdIfAny();
	uint64		mine;

	if (generation == 0 || !TransactionIdIsValid(xid))
		return;
	mine = ((uint64) generation << 32) | xid;
	for (int i = 0; i < nprepared; i++)
	{
		uint64		v = pg_atomic_read_u64(&prepared_holds[i]);

		if (v != 0 && TransactionIdIsInProgress((TransactionId) (v & 0xFFFFFFFF)))
			continue;
		if (pg_atomic_compare_exchange_u64(&prepared_holds[i], &v, mine))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("could not record the card vault key held by this prepared transaction"),
			 errdetail("Every entry for prepared transactions that sealed card data is in use.")));
}

/*
 * Commit, abort: the transaction's cards are committed (visible) or gone.
 * Prepared: its entry holds on (hold_prepared).  A parallel worker seals
 * nothing (pay_card is parallel restricted) and leaves its leader's slot.
 */
static void
hold_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			hold_prepared();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			release_hold();
			break;
		default:
			break;
	}
}

/*
 * The id of the key to seal with now, this backend's open transaction
 * holding it (or an older one it sealed under before) until it ends.
 */
uint32
vault_hold_sealing_key(void)
{
	pg_atomic_uint32 *hold = my_hold();
	uint32		generation;

	if (IsParallelWorker())
		elog(ERROR, "payments: card data cannot be sealed in a parallel worker");
	if (hold != NULL && pg_atomic_read_u32(hold) == 0)
	{
		uint32		none = 0;

		if (!callbacks_registered)
		{
			RegisterXactCallback(hold_xact_callback, NULL);
			before_shmem_exit(release_hold_at_exit, (Datum) 0);
			callbacks_registered = true;
		}
		(void) card_vault_current_key_id(&generation);
		/* a full barrier: published before the key below is read */
		pg_atomic_compare_exchange_u32(hold, &none, generation);
	}
	return card_vault_current_key_id(&generation);
}

/*
 * Whether an open transaction of this database (this one included), or a
 * prepared one, sealed card data under the key before current_generation:
 * the previous key, which a rotation now would forget before that card is
 * committed.  One that sealed under an older key, already forgotten (a
 * forced rotation, or one past payments.vault_key_rotation_max_wait), has
 * lost its card anyway: waiting for it would gain nothing.  Only this
 * database's vault is re-sealed (vault_rotation.c).
 */
bool
vault_older_key_held(uint32 current_generation)
{
	pg_memory_barrier();
	for (int i = 0; i < nholds; i++)
	{
		uint32		g = pg_atomic_read_u32(&holds[i]);

		if (g != 0 && g + 1 == current_generation &&
			ProcGlobal->allProcs[i].databaseId == MyDatabaseId)
			return true;
	}
	for (int i = 0; i < nprepared; i++)
	{
		uint64		v = pg_atomic_read_u64(&prepared_holds[i]);

		if (v != 0 && (uint32) (v >> 32) + 1 == current_generation &&
			TransactionIdIsInProgress((TransactionId) (v & 0xFFFFFFFF)))
			return true;
	}
	return false;
}
