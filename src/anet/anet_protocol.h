/*-------------------------------------------------------------------------
 *
 * anet_protocol.h
 *	  Authorize.Net JSON API: request builders and reply parsers.
 *
 * This module (the folder src/anet/) knows the wire format of the gateway
 * and nothing else: no PostgreSQL headers, no network code, no global
 * state.  It needs only the C library and json-c, so it is unit-tested on
 * its own (src/anet/tests/anet_protocol_test.c, which
 * test/integration/anet_protocol_unit.sh compiles with this folder alone)
 * and called from the background worker.
 *
 * Conventions
 *
 * - Every string a function returns is malloc'd; free it with anet_free().
 *   Builders return NULL on failure and, when error is not NULL, set *error
 *   to a malloc'd message (lower case, no trailing period) that never
 *   contains any input value, so it may be logged.  If even that message
 *   cannot be allocated, *error is NULL.
 * - Requests are built with their keys in the order of the gateway's XML
 *   schema (the JSON API is translated to XML and validated, so a
 *   misplaced key is an E00003; the unit test writes the orders out).
 *   clientId is never sent; JSON null is never sent; a NULL or empty ("")
 *   optional field is omitted.
 * - masked = true builds the form meant for logs and tables: card number
 *   "XXXX" + last four, card code "XXX", expiration date "XXXX",
 *   transaction key "XXXXXXXX", opaque data value "XXXX".  Validation is
 *   the same, so the masked form of a request is valid JSON of the same
 *   shape as the request that was sent.
 * - Field lengths are checked as the XSD counts them (characters, not
 *   bytes), and every string must be valid UTF-8.
 * - Parsers take the raw body: an optional UTF-8 byte-order mark is
 *   skipped, key order does not matter, unknown keys are ignored, every
 *   scalar may be a JSON string, number or boolean, JSON null counts as
 *   absent, and a root wrapper ({"xxxResponse": {...}}, as the API
 *   reference renders some replies) is looked through.  They return false
 *   when the body is not a JSON object of the expected shape (empty,
 *   truncated, HTML error page, ...) or memory ran out.
 * - Reply strings are copied into fixed-size arrays.  Identifiers and
 *   codes that do not fit, or that hold an escaped NUL ("\u0000"), make
 *   the reply malformed (an id must never be silently shortened); texts
 *   are truncated at a UTF-8 character boundary (one holding a NUL reads
 *   as "").  Bytes that are not valid UTF-8 are replaced with '?'.
 * - Amounts in replies are kept as the decimal text the gateway sent (the
 *   original token, also for JSON numbers: json-c keeps the text of a
 *   parsed double), and converted exactly with anet_reply_decimal_to_minor().
 *   Floating point is never used.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_ANET_PROTOCOL_H
#define PAYMENTS_ANET_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sizes of the fixed arrays in parsed replies (including the NUL). */
#define ANET_ID_SIZE		64	/* ids, codes, short scalars */
#define ANET_NETWORK_ID_SIZE	256 /* networkTransId: up to 255 (XSD) */
#define ANET_AMOUNT_SIZE	48	/* decimal text of an amount */
#define ANET_TEXT_SIZE		1024	/* messages; E00003 texts run ~700 */

/* Largest decimal exponent the amount functions accept. */
#define ANET_MAX_EXPONENT	18

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

typedef enum AnetTxnType
{
	ANET_AUTH_CAPTURE,			/* authCaptureTransaction */
	ANET_AUTH_ONLY,				/* authOnlyTransaction */
	ANET_PRIOR_AUTH_CAPTURE,	/* priorAuthCaptureTransaction */
	ANET_CAPTURE_ONLY,			/* captureOnlyTransaction */
	ANET_REFUND,				/* refundTransaction */
	ANET_VOID					/* voidTransaction */
} AnetTxnType;

typedef struct AnetCredentials
{
	const char *login_id;		/* API Login ID, <= 25 */
	const char *transaction_key;	/* <= 16 */
} AnetCredentials;

/*
 * One createTransactionRequest.  Zero-initialize it, then set what applies.
 *
 * Required per type (checked):
 *	 authCapture / authOnly: amount and exactly one of card / opaque / profile
 *	 priorAuthCapture:		  ref_trans_id (amount optional), no payment
 *	 captureOnly:			  amount, card or opaque, auth_code (<= 6)
 *	 refund:				  amount, card (last four or full number, expiry
 *							  "XXXX" accepted) or profile; ref_trans_id
 *							  optional (linked refund when given)
 *	 void:					  ref_trans_id, no payment
 */
typedef struct AnetTxnRequest
{
	AnetTxnType type;
	const char *ref_id;			/* correlation id, <= 20 chars, optional */
	const char *amount;			/* decimal string in major units, e.g.
								 * "12.34" (digits, optional '.' and
								 * digits); NULL = omit */
	const char *currency_code;	/* 3 letters; NULL = omit (account
								 * currency) */
	/* payment: at most one of card / opaque / profile */
	const char *card_number;	/* full PAN, or last four for refunds */
	const char *card_expiration;	/* "YYYY-MM", or "XXXX" for refunds */
	const char *card_code;		/* CVV, 3-4 digits, optional */
	const char *opaque_descriptor;	/* e.g. COMMON.ACCEPT.INAPP.PAYMENT */
	const char *opaque_value;
	const char *profile_customer_id;	/* digits */
	const char *profile_payment_id; /* digits */
	const char *auth_code;		/* captureOnly, <= 6 */
	const char *ref_trans_id;	/* priorAuthCapture, void, refund; digits */
	const char *invoice_number; /* order.invoiceNumber <= 20 */
	const char *description;	/* order.description <= 255 */
	const char *customer_id;	/* customer.id <= 20 */
	const char *customer_email; /* customer.email <= 255 */
	const char *bill_first_name,	/* billTo, <= 50 */
			   *bill_last_name, /* <= 50 */
			   *bill_company,	/* <= 50 */
			   *bill_address,	/* <= 60 */
			   *bill_city,		/* <= 40 */
			   *bill_state,		/* <= 40 */
			   *bill_zip,		/* <= 20 */
			   *bill_country;	/* <= 60 */
	const char *customer_ip;	/* customerIP, <= 45 (IPv6 text) */
	int			duplicate_window;	/* seconds 0..28800; < 0 = omit; the
									 * worker always sends it, so that an
									 * identical resend within the window
									 * is answered with reason 11 and the
									 * original transId */
	bool		allow_partial_auth; /* authCapture/authOnly always send the
									 * allowPartialAuth setting, true or
									 * false, so an account default cannot
									 * turn partial approvals on unseen */
	/* additions */
	bool		recurring_billing;	/* true: send recurringBilling=true */
	bool		test_request;	/* true: send testRequest=true */
	/*
	 * Card on file (authCapture / authOnly with a stored profile):
	 * processingOptions {isFirstRecurringPayment, isFirstSubsequentAuth,
	 * isSubsequentAuth, isStoredCredentials}, each sent only when true, and
	 * subsequentAuthInformation {originalNetworkTransId,
	 * originalAuthAmount, reason}, sent when any of them is given.
	 */
	bool		is_first_recurring_payment;
	bool		is_first_subsequent_auth;
	bool		is_subsequent_auth;
	bool		is_stored_credentials;
	const char *original_network_trans_id;	/* <= 255, letters and digits */
	const char *original_auth_amount;	/* decimal */
	const char *subsequent_auth_reason; /* resubmission | delayedCharge |
										 * reauthorization | noShow */
} AnetTxnRequest;

/* Sorting and paging of the transaction list calls. */
typedef struct AnetListOptions
{
	const char *order_by;		/* "id" or "submitTimeUTC"; NULL = no
								 * sorting element */
	bool		order_descending;
	int			limit;			/* 1..1000; 0 = no paging element */
	int			offset;			/* 1..100000, a 1-based page number */
} AnetListOptions;

/* The full createTransactionRequest, or its masked log form. */
extern char *anet_build_transaction_request(const AnetCredentials *creds,
											const AnetTxnRequest *req,
											bool masked, char **error);

/* authenticateTestRequest: a credentials check (I00001 when valid). */
extern char *anet_build_authenticate_test_request(const AnetCredentials *creds,
												  const char *ref_id,
												  bool masked, char **error);

/* getTransactionDetailsRequest for one transId (digits). */
extern char *anet_build_get_transaction_details_request(const AnetCredentials *creds,
														const char *ref_id,
														const char *trans_id,
														bool masked, char **error);

/*
 * getUnsettledTransactionListRequest; status is "any", "pendingApproval"
 * (held transactions) or NULL; opts may be NULL.
 */
extern char *anet_build_get_unsettled_transaction_list_request(const AnetCredentials *creds,
															   const char *ref_id,
															   const char *status,
															   const AnetListOptions *opts,
															   bool masked, char **error);

/* getTransactionListRequest for one settled batch; opts may be NULL. */
extern char *anet_build_get_transaction_list_request(const AnetCredentials *creds,
													 const char *ref_id,
													 const char *batch_id,
													 const AnetListOptions *opts,
													 bool masked, char **error);

/*
 * getSettledBatchListRequest.  Dates are xs:dateTime text
 * ("2020-05-01T16:00:00Z"; fraction and offset allowed), either may be
 * NULL (no dates: the last 24 hours).  includeStatistics is sent only
 * when true.
 */
extern char *anet_build_get_settled_batch_list_request(const AnetCredentials *creds,
													   const char *ref_id,
													   bool include_statistics,
													   const char *first_settlement_date,
													   const char *last_settlement_date,
													   bool masked, char **error);

/*
 * Customer profiles (CIM): a payment profile to create, with the new
 * customer profile (createCustomerProfileRequest: customer_profile_id
 * NULL; merchant_customer_id, description, email say whose it is) or under
 * an existing one (createCustomerPaymentProfileRequest).  Exactly one of
 * card and opaque data.  validation_mode: "none", "testMode" or
 * "liveMode" (NULL: omitted, the gateway's default).
 */
typedef struct AnetPaymentProfileRequest
{
	const char *ref_id;
	const char *customer_profile_id;	/* digits, or NULL: new profile */
	const char *merchant_customer_id;	/* <= 20 */
	const char *description;	/* <= 255 */
	const char *email;			/* <= 255 */
	const char *bill_first_name,	/* billTo, as AnetTxnRequest */
			   *bill_last_name,
			   *bill_company,
			   *bill_address,
			   *bill_city,
			   *bill_state,
			   *bill_zip,
			   *bill_country;
	const char *card_number;	/* full PAN */
	const char *card_expiration;	/* "YYYY-MM" */
	const char *card_code;		/* optional */
	const char *opaque_descriptor;
	const char *opaque_value;
	bool		default_payment_profile;
	const char *validation_mode;
} AnetPaymentProfileRequest;

/* createCustomerProfileRequest or createCustomerPaymentProfileRequest. */
extern char *anet_build_payment_profile_request(const AnetCredentials *creds,
												const AnetPaymentProfileRequest *req,
												bool masked, char **error);

/*
 * createCustomerProfileFromTransactionRequest: transId, then customer
 * {merchantCustomerId, description, email} for a new profile, or
 * customerProfileId to add the payment profile to an existing one.
 */
extern char *anet_build_profile_from_transaction_request(const AnetCredentials *creds,
														 const char *ref_id,
														 const char *trans_id,
														 const char *merchant_customer_id,
														 const char *description,
														 const char *email,
														 const char *customer_profile_id,
														 bool masked, char **error);

/* getCustomerProfileRequest by customerProfileId or merchantCustomerId. */
extern char *anet_build_get_customer_profile_request(const AnetCredentials *creds,
													 const char *ref_id,
													 const char *customer_profile_id,
													 const char *merchant_customer_id,
													 bool masked, char **error);

/*
 * deleteCustomerProfileRequest (payment_profile_id NULL) or
 * deleteCustomerPaymentProfileRequest.
 */
extern char *anet_build_delete_profile_request(const AnetCredentials *creds,
											   const char *ref_id,
											   const char *customer_profile_id,
											   const char *payment_profile_id,
											   bool masked, char **error);

/* The transactionType text of a type ("authCaptureTransaction", ...). */
extern const char *anet_txn_type_name(AnetTxnType type);

/* Free anything this module returned. */
extern void anet_free(void *ptr);

/* ----------------------------------------------------------------
 * Replies
 * ----------------------------------------------------------------
 */

/*
 * The top-level "messages" of any reply, and its refId.
 *
 * retryable: message code is one the gateway marks as transient
 * (anet_message_code_is_retryable).
 */
typedef struct AnetReplyStatus
{
	bool		ok;				/* resultCode is "Ok" */
	bool		retryable;
	char		result_code[ANET_ID_SIZE];	/* "Ok" / "Error" */
	char		message_code[ANET_ID_SIZE]; /* messages.message[0].code */
	char		message_text[ANET_TEXT_SIZE];	/* messages.message[0].text */
	char		ref_id[ANET_ID_SIZE];
} AnetReplyStatus;

typedef enum AnetOutcome
{
	ANET_APPROVED,				/* responseCode 1 */
	ANET_DECLINED,				/* responseCode 2 */
	ANET_ERROR,					/* responseCode 3 */
	ANET_HELD_FOR_REVIEW,		/* responseCode 4 */
	ANET_REQUEST_REJECTED,		/* no transactionResponse: auth / schema /
								 * permission errors, e.g. E00007, E00003 */
	ANET_MALFORMED				/* unparseable or wrong shape */
} AnetOutcome;

/*
 * A parsed createTransactionResponse.  Strings are "" when absent.
 *
 * outcome is decided on transactionResponse.responseCode, never on
 * resultCode (declines and holds come with resultCode "Ok").
 *
 * reason_code/reason_text: transactionResponse.messages[0] for responses
 * 1 and 4, errors[0] for 2 and 3 (the other array when the expected one is
 * missing); for ANET_REQUEST_REJECTED, reason_code is 0 and reason_text
 * the top-level message text.  0 also means absent or not a number.
 *
 * is_duplicate: responseCode 3 with reason 11.  When the request carried
 * duplicateWindow, trans_id (and auth_code, AVS/CVV results) are those of
 * the original transaction, which may itself have been declined: look it
 * up before treating the payment as done.  Reason 318 (the processor's
 * duplicate) does not set it: no original is returned with it.
 *
 * retryable: the gateway says the failure is transient ("try again"); see
 * anet_reason_code_is_retryable and anet_message_code_is_retryable.  It
 * is false for declines, holds, approvals and malformed replies.
 *
 * unknown_outcome: the reply does not tell whether a transaction was
 * created: ANET_MALFORMED, and E00049 (the operation timed out).  Resolve
 * such a job from reporting; never resend it blindly.
 */
typedef struct AnetTxnResult
{
	AnetOutcome outcome;
	int			response_code;	/* 1..4; 0 without transactionResponse */
	int			reason_code;
	bool		is_duplicate;
	bool		retryable;
	bool		unknown_outcome;
	bool		test_request;	/* testRequest "1": not stored, transId 0 */
	char		reason_text[ANET_TEXT_SIZE];
	char		trans_id[ANET_ID_SIZE];
	char		ref_trans_id[ANET_ID_SIZE]; /* refTransID */
	char		auth_code[ANET_ID_SIZE];
	char		avs_result[ANET_ID_SIZE];	/* avsResultCode */
	char		cvv_result[ANET_ID_SIZE];	/* cvvResultCode */
	char		cavv_result[ANET_ID_SIZE];	/* cavvResultCode */
	char		account_number[ANET_ID_SIZE];	/* masked, e.g. XXXX1111 */
	char		account_type[ANET_ID_SIZE]; /* Visa, MasterCard, eCheck ... */
	char		network_trans_id[ANET_NETWORK_ID_SIZE];
	char		split_tender_id[ANET_ID_SIZE];
	char		result_code[ANET_ID_SIZE];	/* "Ok" / "Error" */
	char		message_code[ANET_ID_SIZE]; /* messages.message[0].code */
	char		message_text[ANET_TEXT_SIZE];
	char		ref_id[ANET_ID_SIZE];
} AnetTxnResult;

/*
 * Parse a createTransaction reply.  Returns false (outcome ANET_MALFORMED)
 * for an empty, truncated, non-JSON or wrongly shaped body; true
 * otherwise, including ANET_REQUEST_REJECTED.  Nothing to free.
 */
extern bool anet_parse_transaction_response(const char *body, size_t len,
											AnetTxnResult *out);

/*
 * Parse any reply for its top-level status only (authenticateTest, or a
 * first look at an unknown reply).  False when malformed.
 */
extern bool anet_parse_reply_status(const char *body, size_t len,
									AnetReplyStatus *out);

/*
 * A parsed getTransactionDetailsResponse.  found is false when the reply
 * is an error (status.ok false, e.g. E00040 unknown transId, E00011
 * reporting not enabled).  Amounts are decimal text ("" when absent).
 */
typedef struct AnetTxnDetails
{
	AnetReplyStatus status;
	bool		found;
	int			response_code;	/* 1..4 */
	int			reason_code;	/* responseReasonCode */
	char		reason_text[ANET_TEXT_SIZE];	/* responseReasonDescription */
	char		trans_id[ANET_ID_SIZE];
	char		ref_trans_id[ANET_ID_SIZE];
	char		split_tender_id[ANET_ID_SIZE];
	char		transaction_type[ANET_ID_SIZE];
	char		transaction_status[ANET_ID_SIZE];
	char		submit_time_utc[ANET_ID_SIZE];
	char		auth_code[ANET_ID_SIZE];
	char		avs_response[ANET_ID_SIZE];
	char		card_code_response[ANET_ID_SIZE];
	char		batch_id[ANET_ID_SIZE];
	char		settlement_state[ANET_ID_SIZE];
	char		settlement_time_utc[ANET_ID_SIZE];
	char		invoice_number[ANET_ID_SIZE];
	char		description[ANET_TEXT_SIZE];	/* order.description */
	char		requested_amount[ANET_AMOUNT_SIZE];
	char		auth_amount[ANET_AMOUNT_SIZE];
	char		settle_amount[ANET_AMOUNT_SIZE];
	char		account_number[ANET_ID_SIZE];	/* masked card or bank acct */
	char		expiration_date[ANET_ID_SIZE];	/* masked, "XXXX" */
	char		account_type[ANET_ID_SIZE]; /* cardType, or "eCheck" */
	char		customer_id[ANET_ID_SIZE];	/* customer.id */
	char		customer_profile_id[ANET_ID_SIZE];	/* profile.* */
	char		customer_payment_profile_id[ANET_ID_SIZE];
	char		network_trans_id[ANET_NETWORK_ID_SIZE];
} AnetTxnDetails;

extern bool anet_parse_transaction_details_response(const char *body, size_t len,
													AnetTxnDetails *out);

/* One transactionSummaryType of a transaction list. */
typedef struct AnetTxnSummary
{
	char		trans_id[ANET_ID_SIZE];
	char		submit_time_utc[ANET_ID_SIZE];
	char		transaction_status[ANET_ID_SIZE];
	char		invoice_number[ANET_ID_SIZE];
	char		account_type[ANET_ID_SIZE];
	char		account_number[ANET_ID_SIZE];	/* masked */
	char		settle_amount[ANET_AMOUNT_SIZE];
	char		customer_profile_id[ANET_ID_SIZE];
	char		customer_payment_profile_id[ANET_ID_SIZE];
} AnetTxnSummary;

/*
 * getUnsettledTransactionListResponse / getTransactionListResponse (one
 * shape).  An empty result (I00004 "No records found.", or no
 * "transactions") has count 0 and status.ok true.  Free with
 * anet_txn_list_free (also after a false return).
 */
typedef struct AnetTxnList
{
	AnetReplyStatus status;
	size_t		count;
	AnetTxnSummary *items;
	long		total_num_in_result_set;	/* -1 when absent */
} AnetTxnList;

extern bool anet_parse_transaction_list_response(const char *body, size_t len,
												 AnetTxnList *out);
extern bool anet_parse_unsettled_transaction_list_response(const char *body,
														   size_t len,
														   AnetTxnList *out);
extern void anet_txn_list_free(AnetTxnList *list);

/* One batchStatisticType (amounts as decimal text, counts -1 if absent). */
typedef struct AnetBatchStatistic
{
	char		account_type[ANET_ID_SIZE];
	char		charge_amount[ANET_AMOUNT_SIZE];
	long		charge_count;
	char		refund_amount[ANET_AMOUNT_SIZE];
	long		refund_count;
	long		void_count;
	long		decline_count;
	long		error_count;
} AnetBatchStatistic;

typedef struct AnetBatch
{
	char		batch_id[ANET_ID_SIZE];
	char		settlement_time_utc[ANET_ID_SIZE];
	char		settlement_state[ANET_ID_SIZE];
	char		payment_method[ANET_ID_SIZE];
	char		market_type[ANET_ID_SIZE];
	char		product[ANET_ID_SIZE];
	size_t		n_statistics;
	AnetBatchStatistic *statistics;
} AnetBatch;

/* getSettledBatchListResponse; free with anet_batch_list_free. */
typedef struct AnetBatchList
{
	AnetReplyStatus status;
	size_t		count;
	AnetBatch  *items;
} AnetBatchList;

extern bool anet_parse_settled_batch_list_response(const char *body, size_t len,
												   AnetBatchList *out);
extern void anet_batch_list_free(AnetBatchList *list);

/* ----------------------------------------------------------------
 * Codes and statuses
 * ----------------------------------------------------------------
 */

/*
 * Transient failures.  The rule: the gateway's own text for the code (as
 * test/anet-sim/codes_gen.c holds them) says to try again.  The worker
 * retries these with backoff and a bounded number of attempts (some, e.g.
 * 57 and 63, can also come from a configuration problem and then fail every
 * time).  Nothing was created (transId 0), but 19-23 and 120-122 can leave
 * an authorization hold at the issuer, so wait minutes, not seconds.  Within
 * the duplicateWindow an identical resend is answered with reason 11.
 *
 *	 transaction reasons (responseCode 3): 19-23, 25, 26, 57-63, 120-122,
 *		180, 181, 192, 261, 901
 *	 message codes (no transactionResponse): E00001 (error during
 *		processing), E00053 (server too busy), E00104 (maintenance)
 *
 * Not retryable: 153 (bad payment data), 11 (duplicate), E00049 (timeout:
 * the outcome is unknown, resolve it instead), everything else.
 */
extern bool anet_reason_code_is_retryable(int reason_code);
extern bool anet_message_code_is_retryable(const char *message_code);

/*
 * Account errors: the merchant's account or credentials are wrong, not the
 * request or the card.  Nothing was processed (no transaction is stored,
 * so a resend later is no duplicate), and every request of that merchant
 * fails the same way until someone fixes the account or the
 * configuration.  The worker keeps the operations queued (never a decline),
 * marks the merchant's gateway as failing and retries with a long backoff.
 *
 *	 message codes: E00005, E00006 (key or login missing/invalid), E00007
 *		(authentication failed), E00008 (account or API user inactive),
 *		E00009 (account in Test Mode), E00010, E00011 (permissions, e.g.
 *		the Transaction Details API not enabled), E00044 (CIM not enabled),
 *		E00059 (authentication type not allowed), E00064 (client
 *		authorization denied), E00086 (merchant declined authorization)
 *	 transaction reasons (responseCode 3): 13 (login or password invalid,
 *		or account inactive), 32 (password invalid), 123 (no permission),
 *		130 (merchant account closed)
 */
extern bool anet_message_code_is_account_error(const char *message_code);
extern bool anet_reason_code_is_account_error(int reason_code);

/* "approved", "declined", ..., "malformed". */
extern const char *anet_outcome_name(AnetOutcome outcome);

/*
 * What a transactionStatus from the reporting calls (getTransactionDetails,
 * the transaction lists) means for the payment:
 *
 *	 PENDING_CAPTURE	authorizedPendingCapture, authorizedPendingRelease
 *	 PENDING_SETTLEMENT capturedPendingSettlement, pendingSettlement,
 *						pendingFinalSettlement, updatingSettlement,
 *						refundPendingSettlement
 *	 SETTLED			settledSuccessfully, refundSettledSuccessfully
 *	 VOIDED				voided
 *	 EXPIRED			expired (auth-only never captured; nothing charged)
 *	 DECLINED			declined, failedReview (declined after review)
 *	 FAILED				generalError, communicationError, settlementError,
 *						couldNotVoid (a void failed: the original stands,
 *						check it)
 *	 UNDER_REVIEW		underReview, FDSPendingReview,
 *						FDSAuthorizedPendingReview
 *	 RETURNED			returnedItem, chargeback, chargebackReversal
 *						(after settlement; handle as a dispute)
 *	 OTHER				approvedReview (transient after a manual approval:
 *						look again), anything unknown, NULL
 *
 * Spelling is exact, as in the XSD enum.
 */
typedef enum AnetStatusClass
{
	ANET_STATUS_PENDING_CAPTURE,
	ANET_STATUS_PENDING_SETTLEMENT,
	ANET_STATUS_SETTLED,
	ANET_STATUS_VOIDED,
	ANET_STATUS_DECLINED,
	ANET_STATUS_FAILED,
	ANET_STATUS_UNDER_REVIEW,
	ANET_STATUS_EXPIRED,
	ANET_STATUS_RETURNED,
	ANET_STATUS_OTHER
} AnetStatusClass;

extern AnetStatusClass anet_classify_transaction_status(const char *status);
extern const char *anet_status_class_name(AnetStatusClass cls);

/* ----------------------------------------------------------------
 * Amounts: integer minor units <-> decimal text, exact
 * ----------------------------------------------------------------
 */

/*
 * Write minor / 10^exponent as decimal text with exactly `exponent`
 * decimals (12345, 2 -> "123.45"; 5, 0 -> "5"; -5, 2 -> "-0.05").
 * Returns the length written (without the NUL), or -1 when exponent is
 * outside 0..ANET_MAX_EXPONENT or buf is too small (buf is then "" if
 * buflen > 0).  INT64_MIN works.
 */
extern int	anet_amount_to_decimal(int64_t minor, int exponent,
								   char *buf, size_t buflen);

/*
 * Parse decimal text into minor units: optional '-', digits, optionally
 * '.' and at least one digit.  No spaces, '+', exponents or separators.
 * More decimals than exponent is an error (even zeros: input is never
 * rounded), as is a value outside int64.
 */
extern bool anet_decimal_to_minor(const char *s, int exponent, int64_t *out);

/*
 * Same for amounts in gateway replies, which print decimals the currency
 * does not have ("5.00" on a JPY account, "5.0"): extra decimals are
 * accepted when they are all zeros.  Still exact: "5.001" with exponent 2
 * is an error.
 */
extern bool anet_reply_decimal_to_minor(const char *s, int exponent,
										int64_t *out);

/*
 * A reply to a CIM call that creates or deletes profiles
 * (createCustomerProfile, createCustomerPaymentProfile,
 * createCustomerProfileFromTransaction, deleteCustomer[Payment]Profile).
 * Strings are "" when absent.
 *
 * payment_profile_id: customerPaymentProfileId, or the first of
 * customerPaymentProfileIdList.  duplicate_id: for E00039 on a customer
 * profile, the id of the existing one the text names ("A duplicate record
 * with ID 123 already exists."); a duplicate payment profile comes with
 * its ids in the usual members.  The validation (validationDirectResponse,
 * or the first of validationDirectResponseList: the legacy comma-separated
 * response) gives validation_response_code (0: none), reason code and
 * text, transId, masked card (field 51), card type (52) and network
 * transaction id (59).
 */
typedef struct AnetProfileResult
{
	AnetReplyStatus status;
	char		customer_profile_id[ANET_ID_SIZE];
	char		payment_profile_id[ANET_ID_SIZE];
	char		duplicate_id[ANET_ID_SIZE];
	int			validation_response_code;
	int			validation_reason_code;
	char		validation_reason_text[ANET_TEXT_SIZE];
	char		validation_trans_id[ANET_ID_SIZE];
	char		account_number[ANET_ID_SIZE];
	char		account_type[ANET_ID_SIZE];
	char		network_trans_id[ANET_NETWORK_ID_SIZE];
} AnetProfileResult;

extern bool anet_parse_profile_response(const char *body, size_t len,
										AnetProfileResult *out);

/* One payment profile of a getCustomerProfile reply (masked). */
typedef struct AnetPaymentProfile
{
	char		payment_profile_id[ANET_ID_SIZE];
	char		card_number[ANET_ID_SIZE];	/* "XXXX1111" */
	char		card_type[ANET_ID_SIZE];
	char		original_network_trans_id[ANET_NETWORK_ID_SIZE];
} AnetPaymentProfile;

/*
 * getCustomerProfileResponse.  found is false for an error reply (E00040:
 * no such profile).  Free with anet_customer_profile_free (also after a
 * false return).
 */
typedef struct AnetCustomerProfile
{
	AnetReplyStatus status;
	bool		found;
	char		customer_profile_id[ANET_ID_SIZE];
	char		merchant_customer_id[ANET_ID_SIZE];
	size_t		count;
	AnetPaymentProfile *items;
} AnetCustomerProfile;

extern bool anet_parse_customer_profile_response(const char *body, size_t len,
												 AnetCustomerProfile *out);
extern void anet_customer_profile_free(AnetCustomerProfile *profile);

#endif							/* PAYMENTS_ANET_PROTOCOL_H */
