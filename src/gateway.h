/*-------------------------------------------------------------------------
 *
 * gateway.h
 *	  One gateway operation in flight: from a claimed row to an HTTP
 *	  request, and from the reply to an outcome the database records.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_GATEWAY_H
#define PAYMENTS_GATEWAY_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "lib/ilist.h"

#include "anet_protocol.h"
#include "batch_scan.h"
#include "card_fingerprint.h"
#include "http_engine.h"
#include "settlement.h"

/* What an in-flight request is for. */
typedef enum GatewayStage
{
	STAGE_SEND,					/* the operation itself (first send or
								 * identical resend) */
	STAGE_DECIDE,				/* a refund or void first asks for the
								 * payment's transaction: settled or not? */
	STAGE_CONFIRM,				/* getTransactionDetails after a duplicate
								 * reply or a lookup hit */
	STAGE_LOOKUP,				/* search the transaction lists by invoice
								 * (gateway_lookup.c) */
	STAGE_SETTLEMENT,			/* which of a merchant's captures settled?
								 * (settlement.c; no operation) */
	STAGE_REVIEW,				/* what became of a payment or a refund held
								 * for review? (no operation in flight; a
								 * refund's check has its operation_id) */
	STAGE_VERIFY,				/* authenticateTest of a merchant's
								 * credentials (gateway_status.c) */
	STAGE_CIM,					/* a stored payment method's or customer's
								 * profile call (gateway_cim.c) */
	STAGE_CIM_CONFIRM,			/* getCustomerProfile after a save, or to
								 * find what an earlier attempt did */
	STAGE_EXPIRY				/* a capture the gateway cannot find (reason
								 * 16) asks whether its authorization
								 * expired */
} GatewayStage;

/* What the last reply of an op said of the merchant's account. */
typedef enum GatewayAccountState
{
	ACCOUNT_UNSEEN = 0,			/* no reply that tells */
	ACCOUNT_OK,					/* the gateway accepted the credentials */
	ACCOUNT_FAILED				/* an account error (anet_protocol.h) */
} GatewayAccountState;

/* Where the gateway is and who we are there. */
typedef struct GatewayEndpoint
{
	char	   *login_id;
	char	   *transaction_key;
	char	   *url;
	char	   *ca_file;
	long		timeout_ms;
} GatewayEndpoint;

/* One HTTP exchange to log (masked). */
typedef struct GatewayExchange
{
	dlist_node	node;
	int64		merchant_id;
	int64		operation_id;	/* 0: not tied to an operation */
	int			attempt;
	const char *request_type;
	TimestampTz started_at;
	TimestampTz finished_at;
	long		http_status;
	char	   *transport_error;
	const char *outcome;
	char	   *request_masked;
	char	   *response_masked;
	char	   *correlation_id;
} GatewayExchange;

/*
 * What the gateway's answer (or the lack of one) means for an operation.
 * The table payments.operation_outcomes says what each does to the
 * operation and its payment; the SQL side knows them by the names in
 * gateway_outcome_names (gateway.c).
 */
typedef enum GatewayOutcomeKind
{
	OUTCOME_NONE = 0,			/* not decided yet */
	OUTCOME_APPROVED,			/* final answers from the gateway */
	OUTCOME_HELD,
	OUTCOME_DECLINED,
	OUTCOME_ERROR,
	OUTCOME_REJECTED,
	OUTCOME_RETRY,				/* provably not processed: send again */
	OUTCOME_UNKNOWN,			/* may have been processed: resolve it */
	OUTCOME_CHECKED,			/* a settlement or review check has its
								 * answer */
	OUTCOME_VOID_FIRST,			/* a refund of an unsettled capture, in
								 * full: to be sent as a void */
	OUTCOME_WAIT,				/* a partial refund of an unsettled capture:
								 * wait for settlement */
	OUTCOME_REFUND_INSTEAD,		/* a refund decided as a void found the
								 * capture settled: to be sent as a refund */
	OUTCOME_EXPIRED				/* a capture found its authorization expired
								 * at the gateway: the payment is canceled */
} GatewayOutcomeKind;

extern const char *gateway_outcome_name(GatewayOutcomeKind outcome);
/* A refund's decision how to go out (payments._record_refund_decision)? */
#define gateway_outcome_is_refund_decision(o) \
	((o) == OUTCOME_VOID_FIRST || (o) == OUTCOME_WAIT || (o) == OUTCOME_REFUND_INSTEAD)

/* The recorded outcome of an operation (payments._record_result). */
typedef struct GatewayOutcome
{
	GatewayOutcomeKind outcome;
	int			response_code;
	int			reason_code;
	char	   *reason_text;
	char	   *trans_id;
	char	   *auth_code;
	char	   *avs;
	char	   *cvv;
	char	   *account_number;
	char	   *network_trans_id;	/* networkTransId of an approval */
	TimestampTz retry_at;
	char	   *error;
	bool		unreached;		/* a retry of which nothing reached the
								 * gateway (no connection, or no answer to
								 * the question asked before the operation):
								 * the attempt is given back */
} GatewayOutcome;

/* Which list a lookup past the duplicate window is reading. */
typedef enum LookupPhase
{
	LOOKUP_HELD,				/* getUnsettledTransactionList of the
								 * transactions held for review (status
								 * pendingApproval), page by page */
	LOOKUP_UNSETTLED,			/* getUnsettledTransactionList, page by page */
	LOOKUP_SETTLED				/* the settled batches (batch_scan.c) */
} LookupPhase;

/* What a lookup came to after a step (gateway.c acts on it). */
typedef enum LookupStep
{
	LOOKUP_ASK,					/* send the next request (gateway_lookup_build) */
	LOOKUP_FOUND,				/* transactions under the invoice, made with
								 * the card (hits): to be confirmed */
	LOOKUP_NOT_FOUND,			/* searched everywhere (detail says where) */
	LOOKUP_AMBIGUOUS,			/* more hits than are confirmed (detail) */
	LOOKUP_UNREADABLE			/* a list could not be read, or the search
								 * could not go on (detail) */
} LookupStep;

#define LOOKUP_MAX_HITS	4		/* transaction ids kept per lookup */

/*
 * Where a lookup stands between its requests (all in the op's cxt).  The
 * lookups of one merchant claimed together search the lists once: one op
 * (the driver) makes the requests and matches every page against its own
 * invoice and its riders', parked ops in no other list (linked by their
 * node).  When the search ends (or cannot go on), every rider moves to
 * released with its step, for gateway.c to act on and the worker to start
 * or record.
 */
typedef struct GatewayLookup
{
	LookupPhase phase;
	int			page;			/* 1-based page of the held or unsettled list */
	TimestampTz range_from;		/* earliest creation searched for */
	BatchScan	batches;		/* LOOKUP_SETTLED */
	dlist_head	riders;			/* ops searched for by this op's requests */
	dlist_head	released;		/* riders to start or record */
	int			nhits;			/* distinct transactions met so far that can
								 * be the operation's (the first
								 * LOOKUP_MAX_HITS kept in hits) */
	char		hits[LOOKUP_MAX_HITS][ANET_ID_SIZE];
	/* confirming the hits (gateway.c) */
	bool		confirming_hits;
	int			confirming;		/* the hit asked about */
	char		passed[ANET_ID_SIZE];	/* the one hit that matched so far */
	char	   *mismatches;		/* why the others did not */
	LookupStep	step;			/* the result of the last step */
	char	   *detail;			/* LOOKUP_NOT_FOUND, LOOKUP_AMBIGUOUS,
								 * LOOKUP_UNREADABLE */
} GatewayLookup;

/* An operation (or a settlement check) the worker is working on. */
typedef struct GatewayOp
{
	dlist_node	node;
	MemoryContext cxt;			/* holds the op and everything it points to */
	TimestampTz created_at;		/* when the caller created the operation */
	HttpRequest http;
	GatewayStage stage;
	int64		merchant_id;
	int64		operation_id;
	int64		payment_id;
	int64		payment_method_id;	/* a stored method (its operation, or
									 * the one a payment charges), or 0 */
	int			attempt;
	char	   *kind;
	char	   *action;			/* send / lookup */
	char	   *txn_invoice;	/* the invoice of the gateway transaction
								 * that answers for this operation: the
								 * payment's, or a refund's own */
	bool		via_void;		/* a refund sent as a void */
	char	   *payment_method;	/* the payment's: card, opaque_data, profile */
	char	   *card_last4;		/* the payment's card's last four, or NULL
								 * (Accept.js until the gateway names it) */
	char	   *payment_profile_id; /* a stored method's payment profile */
	char	   *correlation_id;
	char		ref_id[21];
	int64		amount_minor;
	int			currency_exponent;
	GatewayEndpoint endpoint;
	const char *request_type;
	char	   *request_masked;
	AnetTxnResult first_reply;	/* the duplicate reply, kept for confirm */
	GatewayLookup lookup;		/* STAGE_LOOKUP */
	AnetTxnRequest send_req;	/* STAGE_DECIDE: the refund or void to send
								 * once decided (strings in cxt) */
	char	   *auth_trans_id;	/* a capture's authorization (STAGE_EXPIRY) */
	char	   *asked_trans_id;	/* the transId a getTransactionDetails
								 * asked about, or NULL */
	const char *sent_ref_trans_id;	/* the refTransId of the createTransaction
									 * sent (capture, void, refund), or NULL */
	const char *refund_of;		/* a refund's: its payment's transaction, or
								 * NULL */
	char	   *learned_trans_id;	/* the payment's capture was seen settled
									 * (decide stage): this transId, */
	char	   *learned_batch_id;	/* in this batch, */
	char	   *learned_settled_at; /* at this settlementTimeUTC */
	SettlementCheck *settlement;	/* STAGE_SETTLEMENT */
	char	   *review_status;	/* STAGE_REVIEW: the transactionStatus */
	bool		done;
	bool		may_have_been_sent; /* an earlier attempt may have reached
									 * the gateway (not never_sent) */
	TimestampTz last_attempt_at;	/* the end of the previous attempt (0:
									 * unknown) */
	char	   *resend_refused; /* the code a resend was refused with
								 * (reject_resend), or NULL */
	/* the fingerprint of the card sent, read from the vault ("": none) */
	char		card_fingerprint[CARD_FINGERPRINT_HEX_LEN + 1];
	GatewayOutcome result;
	GatewayAccountState account;	/* for the merchant's gateway status */
	char	   *account_code;	/* ACCOUNT_FAILED: "E00007", or a reason */
	char	   *account_text;	/* ACCOUNT_FAILED: the gateway's text */
	struct GatewayCim *cim;		/* STAGE_CIM*: gateway_cim.c */
} GatewayOp;

extern bool gateway_build_operation(GatewayOp *op, HeapTuple tuple, TupleDesc desc,
									char **error);
extern char *gateway_reply_ref_mismatch(const GatewayOp *op, const char *reply_ref_id);
extern char *gateway_col(HeapTuple tuple, TupleDesc desc, const char *name);
extern int64 gateway_col_int64(HeapTuple tuple, TupleDesc desc, const char *name);
extern bool gateway_build_verification(GatewayOp *op);
extern GatewayExchange *gateway_interpret(GatewayOp *op, bool *follow_up);
extern bool gateway_transport_failed(GatewayOp *op);

/*
 * A request builder of the protocol module, called once masked (for the
 * log) and once for real.
 */
typedef char *(*GatewayRequestBuilder) (const AnetCredentials *creds, const GatewayOp *op,
										const void *arg, bool masked, char **error);

extern bool gateway_set_request(GatewayOp *op, const char *request_type,
								GatewayRequestBuilder build, const void *arg, char **error);
extern void gateway_set_outcome(GatewayOp *op, GatewayOutcomeKind outcome, const char *error);
extern void gateway_set_outcome_later(GatewayOp *op, int min_ms, int max_ms,
									  GatewayOutcomeKind outcome, const char *error);

extern bool gateway_op_is_check(const GatewayOp *op);
extern bool gateway_build_settlement_scan(GatewayOp *op, char **trans_ids,
										  const TimestampTz *captured_at, int n,
										  const SettlementMark *mark);
extern bool gateway_build_review_check(GatewayOp *op, const char *trans_id);
extern void gateway_release_riders(GatewayOp *driver);
extern bool gateway_await_earlier_requests(GatewayOp *op, const char *why);

/* gateway_lookup.c: reads only; gateway.c acts on op->lookup.step */
extern void gateway_lookup_start(GatewayOp *op);
extern void gateway_lookup_read(GatewayOp *op);
extern char *gateway_lookup_build(const AnetCredentials *creds, const GatewayOp *op,
								  const void *arg, bool masked, char **error);
extern const char *gateway_lookup_request_type(const GatewayOp *op);
extern bool gateway_lookup_ride(GatewayOp *driver, GatewayOp *rider);
extern void gateway_lookup_abandon(GatewayOp *driver);
extern char *gateway_last_four(const char *masked);
extern char *gateway_card_mismatch(const GatewayOp *op, const char *account_number,
								   const char *payment_profile_id);

#endif
