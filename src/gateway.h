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

#include "datatype/timestamp.h"
#include "lib/ilist.h"

#include "anet_protocol.h"
#include "http_engine.h"

/* What an in-flight request is for. */
typedef enum GatewayStage
{
	STAGE_SEND,					/* the operation itself (first send or
								 * identical resend) */
	STAGE_CONFIRM,				/* getTransactionDetails after a duplicate
								 * reply or a lookup hit */
	STAGE_LOOKUP,				/* search the unsettled list by invoice */
	STAGE_SETTLEMENT			/* has this payment's capture settled? */
} GatewayStage;

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

/* The recorded outcome of an operation (payments._record_result). */
typedef struct GatewayOutcome
{
	const char *outcome;		/* approved held declined error rejected
								 * retry unknown */
	int			response_code;
	int			reason_code;
	char	   *reason_text;
	char	   *trans_id;
	char	   *auth_code;
	char	   *avs;
	char	   *cvv;
	char	   *account_number;
	TimestampTz retry_at;
	char	   *error;
} GatewayOutcome;

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
	int			attempt;
	char	   *kind;
	char	   *action;			/* send / lookup */
	char	   *invoice_number;
	char	   *correlation_id;
	char		ref_id[21];
	int64		amount_minor;
	int			currency_exponent;
	GatewayEndpoint endpoint;
	const char *request_type;
	char	   *request_masked;
	TimestampTz started_at;
	AnetTxnResult first_reply;	/* the duplicate reply, kept for confirm */
	bool		done;
	GatewayOutcome result;
} GatewayOp;

extern bool gateway_build_operation(GatewayOp *op, HeapTuple tuple, TupleDesc desc,
									char **error);
extern bool gateway_build_settlement_check(GatewayOp *op, const char *trans_id);
extern GatewayExchange *gateway_interpret(GatewayOp *op, bool *follow_up);
extern TimestampTz gateway_backoff(int attempt, int min_ms, int max_ms);
extern bool gateway_transport_failed(GatewayOp *op);

#endif
