/*-------------------------------------------------------------------------
 *
 * settlement.h
 *	  Which of a merchant's captures have settled, learned from the
 *	  gateway's settled batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_SETTLEMENT_H
#define PAYMENTS_SETTLEMENT_H

#include "batch_scan.h"

/*
 * One merchant's settlement check (in the memory of the op that makes
 * it): the transIds of the captures the database has not seen settle,
 * and what the batches said about them.
 */
typedef struct SettlementCheck
{
	BatchScan	scan;
	int			ncandidates;
	char	  **candidates;		/* sorted transIds */
	bool	   *seen;			/* candidates[i] found settled */
	int			nleft;			/* candidates not seen yet */
	/* the captures found settled, in the order found */
	int			nsettled;
	char	  **settled_trans_ids;
	char	  **settled_batch_ids;
	char	  **settled_times;	/* the batch's settlementTimeUTC */
	char	   *error;			/* why the check stopped early, or NULL */
} SettlementCheck;

typedef enum SettlementStep
{
	SETTLEMENT_ASK,				/* send the scan's next request */
	SETTLEMENT_DONE				/* finished (error set if cut short) */
} SettlementStep;

/*
 * Begin a check of these transIds (copied, in the current memory
 * context), which were all captured at `from` or later.
 */
extern SettlementStep settlement_check_begin(SettlementCheck *check, char **trans_ids, int n,
											 TimestampTz from);

/* Read the reply to the scan's request (allocations in cxt). */
extern SettlementStep settlement_check_read(SettlementCheck *check, MemoryContext cxt,
											const char *body, size_t len);

#endif
