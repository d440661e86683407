/*-------------------------------------------------------------------------
 *
 * anet_codes.c
 *	  Authorize.Net codes and statuses: what they mean to the worker.
 *
 * Which failures are transient, and what a reporting transactionStatus
 * means for a payment.  The lists and the reasoning behind them are in
 * anet_protocol.h; this file only implements them, as plain tables.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "anet_protocol.h"

/*
 * Reason codes whose text from the gateway (test/anet-sim/codes_gen.c holds
 * the texts) says "Please try again".
 */
static const int retryable_reasons[] = {
	19, 20, 21, 22, 23, 25, 26,
	57, 58, 59, 60, 61, 62, 63,
	120, 121, 122, 180, 181, 192, 261, 901
};

/* Message codes the gateway marks as transient. */
static const char *const retryable_messages[] = {
	"E00001",					/* An error occurred during processing. */
	"E00053",					/* Server too busy */
	"E00104"					/* Server in maintenance */
};

/*
 * Message codes that say the merchant's account or credentials are wrong,
 * not the request: nothing was processed, and nothing the request could
 * change would help (texts from test/anet-sim/codes_gen.c).
 */
static const char *const account_messages[] = {
	"E00005",					/* The transaction key or API key is invalid or
								 * not present. */
	"E00006",					/* The API user name is invalid or not present. */
	"E00007",					/* User authentication failed due to invalid
								 * authentication values. */
	"E00008",					/* User authentication failed. The account or
								 * API user is inactive. */
	"E00009",					/* The payment gateway account is in Test Mode.
								 * The request cannot be processed. */
	"E00010",					/* User authentication failed. You do not have
								 * the appropriate permissions. */
	"E00011",					/* Access denied. You do not have the
								 * appropriate permissions. (reporting calls
								 * without the Transaction Details API) */
	"E00044",					/* Customer Information Manager is not enabled. */
	"E00059",					/* The authentication type is not allowed for
								 * this method call. */
	"E00064",					/* Client authorization denied. */
	"E00086"					/* Merchant has declined authorization to
								 * resource. */
};

/*
 * Transaction reasons (responseCode 3, transId 0) with the same meaning.
 * Not the processor set-up reasons of class 2 (29-38): those transactions
 * are stored as declined, and a resend inside the duplicate window would be
 * answered as a duplicate of the decline.
 */
static const int account_reasons[] = {
	13,							/* The merchant login ID or password is invalid
								 * or the account is inactive. */
	32,							/* The merchant password is invalid or not
								 * present. */
	123,						/* This account has not been given the
								 * permission(s) required for this request. */
	130							/* This merchant account has been closed. */
};

typedef struct StatusEntry
{
	const char *name;
	AnetStatusClass cls;
} StatusEntry;

/* transactionStatusEnum of the XSD, every value, in the XSD's order. */
static const StatusEntry status_table[] = {
	{"authorizedPendingCapture", ANET_STATUS_PENDING_CAPTURE},
	{"capturedPendingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
	{"communicationError", ANET_STATUS_FAILED},
	{"refundSettledSuccessfully", ANET_STATUS_SETTLED},
	{"refundPendingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
	{"approvedReview", ANET_STATUS_OTHER},
	{"declined", ANET_STATUS_DECLINED},
	{"couldNotVoid", ANET_STATUS_FAILED},
	{"expired", ANET_STATUS_EXPIRED},
	{"generalError", ANET_STATUS_FAILED},
	{"pendingFinalSettlement", ANET_STATUS_PENDING_SETTLEMENT},
	{"pendingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
	{"failedReview", ANET_STATUS_DECLINED},
	{"settledSuccessfully", ANET_STATUS_SETTLED},
	{"settlementError", ANET_STATUS_FAILED},
	{"underReview", ANET_STATUS_UNDER_REVIEW},
	{"updatingSettlement", ANET_STATUS_PENDING_SETTLEMENT},
	{"voided", ANET_STATUS_VOIDED},
	{"FDSPendingReview", ANET_STATUS_UNDER_REVIEW},
	{"FDSAuthorizedPendingReview", ANET_STATUS_UNDER_REVIEW},
	{"returnedItem", ANET_STATUS_RETURNED},
	{"chargeback", ANET_STATUS_RETURNED},
	{"chargebackReversal", ANET_STATUS_RETURNED},
	{"authorizedPendingRelease", ANET_STATUS_PENDING_CAPTURE}
};

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

/* Is a transaction reason code (responseCode 3) worth retrying? */
bool
anet_reason_code_is_retryable(int reason_code)
{
	size_t		i;

	for (i = 0; i < lengthof(retryable_reasons); i++)
		if (retryable_reasons[i] == reason_code)
			return true;
	return false;
}

/* Is a top-level message code (request-level failure) worth retrying? */
bool
anet_message_code_is_retryable(const char *message_code)
{
	size_t		i;

	if (message_code == NULL)
		return false;
	for (i = 0; i < lengthof(retryable_messages); i++)
		if (strcmp(retryable_messages[i], message_code) == 0)
			return true;
	return false;
}

/* Does a top-level message code say the merchant's account is wrong? */
bool
anet_message_code_is_account_error(const char *message_code)
{
	size_t		i;

	if (message_code == NULL)
		return false;
	for (i = 0; i < lengthof(account_messages); i++)
		if (strcmp(account_messages[i], message_code) == 0)
			return true;
	return false;
}

/* Does a transaction reason code (responseCode 3) say the same? */
bool
anet_reason_code_is_account_error(int reason_code)
{
	size_t		i;

	for (i = 0; i < lengthof(account_reasons); i++)
		if (account_reasons[i] == reason_code)
			return true;
	return false;
}

/* Name of an outcome, for logs and the worker's result rows. */
const char *
anet_outcome_name(AnetOutcome outcome)
{
	switch (outcome)
	{
		case ANET_APPROVED:
			return "approved";
		case ANET_DECLINED:
			return "declined";
		case ANET_ERROR:
			return "error";
		case ANET_HELD_FOR_REVIEW:
			return "held_for_review";
		case ANET_REQUEST_REJECTED:
			return "request_rejected";
		case ANET_MALFORMED:
			return "malformed";
	}
	return "malformed";
}

/* Classify a reporting transactionStatus; unknown spellings are OTHER. */
AnetStatusClass
anet_classify_transaction_status(const char *status)
{
	size_t		i;

	if (status == NULL)
		return ANET_STATUS_OTHER;
	for (i = 0; i < lengthof(status_table); i++)
		if (strcmp(status_table[i].name, status) == 0)
			return status_table[i].cls;
	return ANET_STATUS_OTHER;
}

/* Name of a status class, for logs and SQL-visible columns. */
const char *
anet_status_class_name(AnetStatusClass cls)
{
	switch (cls)
	{
		case ANET_STATUS_PENDING_CAPTURE:
			return "pending_capture";
		case ANET_STATUS_PENDING_SETTLEMENT:
			return "pending_settlement";
		case ANET_STATUS_SETTLED:
			return "settled";
		case ANET_STATUS_VOIDED:
			return "voided";
		case ANET_STATUS_DECLINED:
			return "declined";
		case ANET_STATUS_FAILED:
			return "failed";
		case ANET_STATUS_UNDER_REVIEW:
			return "under_review";
		case ANET_STATUS_EXPIRED:
			return "expired";
		case ANET_STATUS_RETURNED:
			return "returned";
		case ANET_STATUS_OTHER:
			return "other";
	}
	return "other";
}
