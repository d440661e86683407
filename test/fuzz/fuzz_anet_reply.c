/*-------------------------------------------------------------------------
 *
 * fuzz_anet_reply.c
 *	  libFuzzer target: every Authorize.Net reply parser of src/anet/ on
 *	  the same body (createTransaction, top-level status, transaction
 *	  details, the two transaction lists, the settled batch list), the
 *	  exact amount conversion on every amount a parser kept, and the
 *	  exchange log's copy without personal data (reply_privacy.c).
 *
 * Besides the sanitizers it checks what anet_protocol.h promises of a
 * parsed reply: every text field is NUL-terminated inside its array and
 * valid UTF-8, a false return means ANET_MALFORMED with an unknown
 * outcome, and an outcome agrees with the response code.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anet_protocol.h"
#include "fuzz_check.h"
#include "reply_privacy.h"

/* A fixed char array of a parsed reply: terminated, valid UTF-8. */
#define CHECK_FIELD(f) fuzz_check_text((f), sizeof(f), #f)

static void
check_status(const AnetReplyStatus *s)
{
	CHECK_FIELD(s->result_code);
	CHECK_FIELD(s->message_code);
	CHECK_FIELD(s->message_text);
	CHECK_FIELD(s->ref_id);
}

/* The amount conversions on a parsed amount: never crash, exact. */
static void
check_amount(const char *text)
{
	for (int e = 0; e <= ANET_MAX_EXPONENT; e++)
	{
		int64_t		minor;

		if (anet_reply_decimal_to_minor(text, e, &minor))
		{
			char		buf[ANET_AMOUNT_SIZE];
			int64_t		again;

			/* minor / 10^e printed back reads as the same value */
			FUZZ_ASSERT(anet_amount_to_decimal(minor, e, buf, sizeof(buf)) > 0);
			FUZZ_ASSERT(anet_decimal_to_minor(buf, e, &again));
			FUZZ_ASSERT(again == minor);
		}
	}
}

static void
check_transaction(const char *body, size_t len)
{
	AnetTxnResult r;
	bool		ok;

	memset(&r, 0x5a, sizeof(r));	/* the parser must set every field */
	ok = anet_parse_transaction_response(body, len, &r);
	if (!ok)
	{
		FUZZ_ASSERT(r.outcome == ANET_MALFORMED);
		FUZZ_ASSERT(r.unknown_outcome);
	}
	FUZZ_ASSERT(r.outcome >= ANET_APPROVED && r.outcome <= ANET_MALFORMED);
	FUZZ_ASSERT(anet_outcome_name(r.outcome) != NULL);
	if (r.outcome == ANET_APPROVED)
		FUZZ_ASSERT(r.response_code == 1);
	if (r.outcome == ANET_DECLINED)
		FUZZ_ASSERT(r.response_code == 2);
	if (r.outcome == ANET_ERROR)
		FUZZ_ASSERT(r.response_code == 3);
	if (r.outcome == ANET_HELD_FOR_REVIEW)
		FUZZ_ASSERT(r.response_code == 4);
	if (r.is_duplicate)
		FUZZ_ASSERT(r.outcome == ANET_ERROR && r.reason_code == 11);
	if (r.outcome == ANET_MALFORMED)
		FUZZ_ASSERT(r.unknown_outcome && !r.retryable);
	if (r.outcome == ANET_APPROVED || r.outcome == ANET_DECLINED ||
		r.outcome == ANET_HELD_FOR_REVIEW)
		FUZZ_ASSERT(!r.retryable);
	CHECK_FIELD(r.reason_text);
	CHECK_FIELD(r.trans_id);
	CHECK_FIELD(r.ref_trans_id);
	CHECK_FIELD(r.auth_code);
	CHECK_FIELD(r.avs_result);
	CHECK_FIELD(r.cvv_result);
	CHECK_FIELD(r.cavv_result);
	CHECK_FIELD(r.account_number);
	CHECK_FIELD(r.account_type);
	CHECK_FIELD(r.network_trans_id);
	CHECK_FIELD(r.split_tender_id);
	CHECK_FIELD(r.result_code);
	CHECK_FIELD(r.message_code);
	CHECK_FIELD(r.message_text);
	CHECK_FIELD(r.ref_id);
	(void) anet_message_code_is_retryable(r.message_code);
	(void) anet_reason_code_is_retryable(r.reason_code);
}

static void
check_reply_status(const char *body, size_t len)
{
	AnetReplyStatus s;

	memset(&s, 0x5a, sizeof(s));
	if (anet_parse_reply_status(body, len, &s))
		check_status(&s);
}

static void
check_details(const char *body, size_t len)
{
	AnetTxnDetails d;

	memset(&d, 0x5a, sizeof(d));
	if (!anet_parse_transaction_details_response(body, len, &d))
		return;
	check_status(&d.status);
	CHECK_FIELD(d.reason_text);
	CHECK_FIELD(d.trans_id);
	CHECK_FIELD(d.ref_trans_id);
	CHECK_FIELD(d.split_tender_id);
	CHECK_FIELD(d.transaction_type);
	CHECK_FIELD(d.transaction_status);
	CHECK_FIELD(d.submit_time_utc);
	CHECK_FIELD(d.auth_code);
	CHECK_FIELD(d.avs_response);
	CHECK_FIELD(d.card_code_response);
	CHECK_FIELD(d.batch_id);
	CHECK_FIELD(d.settlement_state);
	CHECK_FIELD(d.settlement_time_utc);
	CHECK_FIELD(d.invoice_number);
	CHECK_FIELD(d.description);
	CHECK_FIELD(d.requested_amount);
	CHECK_FIELD(d.auth_amount);
	CHECK_FIELD(d.settle_amount);
	CHECK_FIELD(d.account_number);
	CHECK_FIELD(d.expiration_date);
	CHECK_FIELD(d.account_type);
	CHECK_FIELD(d.customer_id);
	CHECK_FIELD(d.customer_profile_id);
	CHECK_FIELD(d.customer_payment_profile_id);
	CHECK_FIELD(d.network_trans_id);
	check_amount(d.requested_amount);
	check_amount(d.auth_amount);
	check_amount(d.settle_amount);
	FUZZ_ASSERT(anet_status_class_name(anet_classify_transaction_status(d.transaction_status)) != NULL);
}

static void
check_txn_list(const char *body, size_t len, bool unsettled)
{
	AnetTxnList l;
	bool		ok;

	memset(&l, 0x5a, sizeof(l));
	ok = unsettled ?
		anet_parse_unsettled_transaction_list_response(body, len, &l) :
		anet_parse_transaction_list_response(body, len, &l);
	if (ok)
	{
		check_status(&l.status);
		FUZZ_ASSERT(l.count == 0 || l.items != NULL);
		for (size_t i = 0; i < l.count; i++)
		{
			const AnetTxnSummary *t = &l.items[i];

			CHECK_FIELD(t->trans_id);
			CHECK_FIELD(t->submit_time_utc);
			CHECK_FIELD(t->transaction_status);
			CHECK_FIELD(t->invoice_number);
			CHECK_FIELD(t->account_type);
			CHECK_FIELD(t->account_number);
			CHECK_FIELD(t->settle_amount);
			CHECK_FIELD(t->customer_profile_id);
			CHECK_FIELD(t->customer_payment_profile_id);
			check_amount(t->settle_amount);
			(void) anet_classify_transaction_status(t->transaction_status);
		}
	}
	anet_txn_list_free(&l);
}

static void
check_batch_list(const char *body, size_t len)
{
	AnetBatchList l;

	memset(&l, 0x5a, sizeof(l));
	if (anet_parse_settled_batch_list_response(body, len, &l))
	{
		check_status(&l.status);
		FUZZ_ASSERT(l.count == 0 || l.items != NULL);
		for (size_t i = 0; i < l.count; i++)
		{
			const AnetBatch *b = &l.items[i];

			CHECK_FIELD(b->batch_id);
			CHECK_FIELD(b->settlement_time_utc);
			CHECK_FIELD(b->settlement_state);
			CHECK_FIELD(b->payment_method);
			CHECK_FIELD(b->market_type);
			CHECK_FIELD(b->product);
			FUZZ_ASSERT(b->n_statistics == 0 || b->statistics != NULL);
			for (size_t j = 0; j < b->n_statistics; j++)
			{
				const AnetBatchStatistic *s = &b->statistics[j];

				CHECK_FIELD(s->account_type);
				CHECK_FIELD(s->charge_amount);
				CHECK_FIELD(s->refund_amount);
				check_amount(s->charge_amount);
				check_amount(s->refund_amount);
			}
		}
	}
	anet_batch_list_free(&l);
}

/*
 * The copy for the exchange log is JSON again, and masks every value of a
 * personal field wherever it sits: it holds no "firstName" key followed
 * by anything but the mask.
 */
static void
check_without_personal_data(const char *body, size_t size)
{
	bool		changed;
	char	   *out = anet_reply_without_personal_data(body, size, &changed);
	const char *p;

	if (out == NULL)
		return;
	FUZZ_ASSERT(out[0] == '{');
	for (p = strstr(out, "\"firstName\":"); p != NULL; p = strstr(p + 1, "\"firstName\":"))
		FUZZ_ASSERT(strncmp(p + 12, "\"" ANET_PERSONAL_MASK "\"", strlen(ANET_PERSONAL_MASK) + 2) == 0 ||
					p[12] == '{' || p[12] == '[' || strncmp(p + 12, "null", 4) == 0 ||
					strncmp(p + 12, "true", 4) == 0 || strncmp(p + 12, "false", 5) == 0 ||
					p[12] == '0');
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a private copy, exactly size bytes: ASan sees any over-read */
	char	   *body = malloc(size ? size : 1);

	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	check_transaction(body, size);
	check_reply_status(body, size);
	check_details(body, size);
	check_txn_list(body, size, false);
	check_txn_list(body, size, true);
	check_batch_list(body, size);
	check_without_personal_data(body, size);
	free(body);
	return 0;
}
