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
	TimestampTz searched_to;	/* the range read ends here */
} SettlementCheck;

/*
 * What a complete check of one merchant showed of the captures it did not
 * find: none of them was in a batch settled up to searched_to (every batch
 * up to then was read).  The worker keeps it for the merchant's next check,
 * which reads, for these captures, only the batches settled since: a
 * capture the batch lists never show (voided at the gateway by hand, say)
 * does not make every check read every batch since it, over and over, for
 * 31 days.
 */
typedef struct SettlementMark
{
	TimestampTz searched_to;
	int			n;
	char	  **trans_ids;		/* sorted */
} SettlementMark;

typedef enum SettlementStep
{
	SETTLEMENT_ASK,				/* send the scan's next request */
	SETTLEMENT_DONE				/* finished (error set if cut short) */
} SettlementStep;

/*
 * Begin a check of these transIds (copied, in the current memory
 * context), captured at captured_at[i].  The batches read are those
 * settled since the earliest capture, except that a capture the last
 * complete check (mark, or NULL) did not find is looked for only in the
 * batches settled since that check.
 */
extern SettlementStep settlement_check_begin(SettlementCheck *check, char **trans_ids,
											 const TimestampTz *captured_at, int n,
											 const SettlementMark *mark);

/* Read the reply to the scan's request (allocations in cxt). */
extern SettlementStep settlement_check_read(SettlementCheck *check, MemoryContext cxt,
											const char *body, size_t len);

/*
 * The mark a finished check leaves (its strings in cxt): false when it was
 * cut short (an error), which leaves the last mark as true as it was.
 */
extern bool settlement_check_mark(const SettlementCheck *check, MemoryContext cxt,
								  SettlementMark *mark);

#endif
