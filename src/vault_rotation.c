/*-------------------------------------------------------------------------
 *
 * vault_rotation.c
 *	  payments._vault_rotate_key: the card vault's key rotation, which
 *	  re-seals the cards still waiting so that none holds it back.
 *
 * Two keys exist at a time (card_vault.c): the current one, which seals,
 * and the previous one.  A rotation first re-seals under the current key
 * every waiting vault row (card or Accept.js opaque data of an operation
 * not finished: queued, parked for a merchant without a gateway, sending,
 * unknown, or a dead letter) still sealed under another key that exists:
 * opened in memory, sealed again, the row updated (the vault is UNLOGGED,
 * so no WAL record carries either).  Then a new key is made, to become
 * the current one when the transaction commits: the current key becomes
 * the previous one and the previous one is forgotten, with nothing
 * committed left under it.  So no waiting card holds the rotation back and
 * none is lost by it.
 *
 * The races:
 * - A caller's transaction takes the current key's id when it builds a
 *   pay_card or seals opaque data (card.c, opaque_data.c) and its vault
 *   row is invisible here until it commits.  Sealed under the current key,
 *   it survives this rotation (that key stays, as the previous one) and is
 *   re-sealed by the next.  Sealed under the previous key, it would be
 *   lost: every transaction publishes the oldest key it sealed under
 *   (vault_holds.c) until it commits or aborts (prepared, until COMMIT or
 *   ROLLBACK PREPARED), and while one holds a key older than the current
 *   one, a scheduled rotation waits (for the next housekeeping), for
 *   payments.vault_key_rotation_max_wait at most: any role can seal (a
 *   pay_card value) and leave its transaction open or prepared.  Only
 *   those: a long transaction that sealed nothing (a pg_dump, a report, an
 *   idle session) does not hold it back.  A forced rotation does not wait:
 *   a card such a transaction commits afterwards is lost (failing with the
 *   lost-card reason).  A pay_card value built in one transaction and
 *   inserted in a later one is not held by either: if its key is gone by
 *   then, it fails the same way.
 * - The worker unseals a card while it claims it, in its own process,
 *   which is also where scheduled rotations run: never at once.  What it
 *   read is under the current key (a rotation keeps it, as the previous
 *   one), or under the previous key if committed late as above: only a
 *   rotation forced from another session at that moment takes that key.
 * - The new key is made current at commit only: a rotation rolled back
 *   (or its savepoint) never happens, and the re-sealed rows are visible
 *   before the key they left is forgotten.
 * - A crash empties the unlogged vault and makes new keys anyway.
 * - Two rotations at once: the second waits for the first's lock.
 *
 * Only in the database the worker serves (payments.database): the key is
 * the cluster's, but only that database's vault has cards to re-seal.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "card.h"
#include "card_vault.h"
#include "opaque_data.h"
#include "payments.h"
#include "schema_version.h"
#include "vault_holds.h"

PG_FUNCTION_INFO_V1(pay_vault_rotate_key);

/*
 * Re-seal under key_id every waiting vault row sealed under another key
 * that still exists.  Rows whose key is gone, or that do not open, are left
 * as they are (the worker fails them with the reason).  Reads and writes
 * with a fresh snapshot, so that whatever committed before is seen in any
 * isolation level.  Returns how many rows were re-sealed.
 */
static int64
reseal_waiting(uint32 key_id)
{
	static const char *select_sql =
		"SELECT v.merchant_id, v.operation_id, v.sealed FROM payments.card_vault v"
		" JOIN payments.operations o ON o.merchant_id = v.merchant_id AND o.operation_id = v.operation_id"
		" WHERE o.status NOT IN ('succeeded', 'failed', 'canceled')";
	static const char *update_sql =
		"UPDATE payments.card_vault SET sealed = $3"
		" WHERE merchant_id = $1 AND operation_id = $2 AND sealed = $4";
	Oid			argtypes[4] = {INT8OID, INT8OID, BYTEAOID, BYTEAOID};
	SPIPlanPtr	select_plan;
	SPIPlanPtr	update_plan;
	SPITupleTable *rows;
	uint64		nrows;
	int64		resealed = 0;

	select_plan = SPI_prepare(select_sql, 0, NULL);
	update_plan = SPI_prepare(update_sql, 4, argtypes);
	if (select_plan == NULL || update_plan == NULL)
		elog(ERROR, "payments: could not prepare the card vault re-seal: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_execute_snapshot(select_plan, NULL, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, false, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "payments: could not read the card vault");
	rows = SPI_tuptable;
	nrows = SPI_processed;
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	tuple = rows->vals[i];
		bool		isnull;
		Datum		sealed = SPI_getbinval(tuple, rows->tupdesc, 3, &isnull);
		bytea	   *b;
		const uint8 *bytes;
		int			len;
		int			aadlen;
		int			key_id_offset;
		uint32		row_key_id;
		uint8	   *fresh;
		bytea	   *out;
		Datum		args[4];

		if (isnull)
			continue;
		b = DatumGetByteaPP(sealed);
		bytes = (const uint8 *) VARDATA_ANY(b);
		len = VARSIZE_ANY_EXHDR(b);
		if (!card_sealed_layout((const char *) bytes, len, &aadlen, &key_id_offset) &&
			!opaque_data_layout(bytes, len, &aadlen, &key_id_offset))
			continue;
		memcpy(&row_key_id, bytes + key_id_offset, 4);
		if (row_key_id == key_id)
			continue;
		if (card_vault_reseal(bytes, len, aadlen, key_id_offset, key_id, &fresh) != CARD_VAULT_OPENED)
			continue;
		out = palloc(VARHDRSZ + len);
		SET_VARSIZE(out, VARHDRSZ + len);
		memcpy(VARDATA(out), fresh, len);
		pfree(fresh);
		args[0] = SPI_getbinval(tuple, rows->tupdesc, 1, &isnull);
		args[1] = SPI_getbinval(tuple, rows->tupdesc, 2, &isnull);
		args[2] = PointerGetDatum(out);
		args[3] = PointerGetDatum(b);
		if (SPI_execute_snapshot(update_plan, args, NULL, GetLatestSnapshot(),
								 InvalidSnapshot, false, true, 0) != SPI_OK_UPDATE)
			elog(ERROR, "payments: could not re-seal a card vault row");
		resealed += SPI_processed;
		pfree(out);
	}
	return resealed;
}

/* Whether the current key has sealed for payments.vault_key_rotation. */
static bool
rotation_due(void)
{
	uint32		current_id;
	uint32		previous_id;
	TimestampTz created;

	card_vault_key_state(&current_id, &previous_id, &created);
	return payments_vault_key_rotation_s > 0 &&
		TimestampDifferenceExceeds(created, GetCurrentTimestamp(), payments_vault_key_rotation_s * 1000);
}

/*
 * Whether a due rotation has waited payments.vault_key_rotation_max_wait
 * for the transactions that sealed under the previous key: then it goes
 * on.  Any role may seal (pay_card is for every role) in a transaction it
 * leaves open, or prepares, for ever: without a limit, a role with no
 * grant at all kept the vault key from ever rotating again, for every
 * merchant.
 */
static bool
rotation_waited_enough(TimestampTz created)
{
	int64		ms = ((int64) payments_vault_key_rotation_s + payments_vault_key_rotation_max_wait_s) * 1000;

	return GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(created, ms);
}

/*
 * payments._vault_rotate_key(force): when the current key has sealed for
 * payments.vault_key_rotation (or with force, now), re-seal the waiting
 * cards under it and make a new key, current from this transaction's
 * commit.  A scheduled rotation waits while an open or prepared
 * transaction sealed card data under the previous key (vault_holds.c:
 * it may commit that card after the re-seal), for
 * payments.vault_key_rotation_max_wait at most.  Returns whether it
 * rotates.  The worker calls it from its housekeeping.
 */
Datum
pay_vault_rotate_key(PG_FUNCTION_ARGS)
{
	bool		force = PG_GETARG_BOOL(0);
	uint32		current_id;
	uint32		previous_id;
	TimestampTz created;
	uint32		generation;
	int64		resealed;
	bool		past_holders = false;

	payments_require_schema();
	card_vault_require();
	if (!payments_database_served())
		PG_RETURN_BOOL(false);

	/*
	 * Not due: nothing locked.  The worker asks at every housekeeping, and
	 * the lock below waits for an autovacuum of the vault (a busy table)
	 * with the worker's loop behind it.
	 */
	if (!force && !rotation_due())
		PG_RETURN_BOOL(false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "payments: SPI_connect failed");
	/* one rotation at a time; inserts, updates and deletes go on */
	if (SPI_execute("LOCK TABLE payments.card_vault IN SHARE UPDATE EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "payments: could not lock the card vault");
	/* the key as it is now that no other rotation runs */
	card_vault_key_state(&current_id, &previous_id, &created);
	(void) card_vault_current_key_id(&generation);
	if (!force && !rotation_due())
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	if (!force && vault_older_key_held(generation))
	{
		if (!rotation_waited_enough(created))
		{
			SPI_finish();
			PG_RETURN_BOOL(false);
		}
		past_holders = true;
	}
	resealed = reseal_waiting(current_id);
	SPI_finish();
	if (!card_vault_rotate_at_commit())
		PG_RETURN_BOOL(false);
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("payments re-sealed " INT64_FORMAT " waiting card vault entries and rotates the card vault key at commit%s",
					resealed, force ? " (forced)" :
					past_holders ? " (past transactions that sealed under the previous key and are still open or prepared: payments.vault_key_rotation_max_wait)" : "")));
	PG_RETURN_BOOL(true);
}
