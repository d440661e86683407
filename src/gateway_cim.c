/*-------------------------------------------------------------------------
 *
 * gateway_cim.c
 *	  Stored payment methods at the gateway: the worker's customer and
 *	  payment profile calls (Authorize.Net CIM), and the card-on-file
 *	  fields of a charge of a stored method.
 *
 * Operations (payments.operations, payment_methods.sql):
 *	  save_method		createCustomerProfile (the customer has no profile
 *						yet), createCustomerPaymentProfile (it has one), or
 *						createCustomerProfileFromTransaction (from a
 *						payment), with the merchant's validationMode; then
 *						getCustomerProfile, which tells the payment
 *						profile's originalNetworkTransId (the id its
 *						merchant-initiated charges send) and masked card
 *	  delete_method		deleteCustomerPaymentProfile
 *	  delete_customer	deleteCustomerProfile (its payment profiles go too)
 *
 * Crash safety.  The card waits sealed in the vault as a purchase's does
 * and is opened only to build the request.  A save that may have reached
 * the gateway (its outcome unknown: a timeout, a crash of the worker) is
 * never sent blindly again: the customer's profile is looked up first
 * (by the merchantCustomerId the extension gives every customer's profile)
 * and a payment profile with the card's last four digits taken for the
 * one saved; only when none is there is the create sent again (the card
 * still at hand) or, once no earlier request can still be in flight, sent
 * again or failed (the card lost in a restart: lookup_missed).  A
 * duplicate reply (E00039) names the existing profile and is resolved the
 * same way, so a save never leaves two profiles at the gateway.  Deletes
 * are idempotent (an unknown id, E00040, is already deleted): resent.
 *
 * A customer's profile deleted at the gateway outside payments: a save
 * into it is answered E00040 (not found), and the profile is asked for by
 * its id; a lookup that asks for it is answered the same.  Gone, it is
 * forgotten (gone_profile_id: _record_method_result fails the methods it
 * held) and the save goes on as a first save of the customer: a look for
 * a new profile by merchantCustomerId (an earlier attempt may have made
 * it), then createCustomerProfile with the card.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "card.h"
#include "gateway.h"
#include "gateway_cim.h"
#include "opaque_data.h"

#define col gateway_col

bool
gateway_op_is_cim(const GatewayOp *op)
{
	return op->kind != NULL &&
		(strcmp(op->kind, "save_method") == 0 || strcmp(op->kind, "delete_method") == 0 ||
		 strcmp(op->kind, "delete_customer") == 0);
}

/*
 * The card-on-file fields of a charge of a stored method (claim columns
 * payment_method_id, original_network_trans_id, recurring and
 * first_recurring).  A charge of a subscription's invoice is recurring
 * (transactionSettings recurringBilling=true): its subscription's first
 * charge is the first of the recurring series (isFirstRecurringPayment,
 * no original network transaction id: it is the one the series starts
 * from); every later one is merchant-initiated (isSubsequentAuth) with the
 * network transaction id of the first customer-initiated charge.  Other
 * charges of a stored method are merchant-initiated the same way, or,
 * while no network transaction id is known, charges with stored
 * credentials (isStoredCredentials).  A profile given by its ids alone is
 * not a stored method of ours and gets none of these.
 */
void
gateway_cim_card_on_file(AnetTxnRequest *req, HeapTuple tuple, TupleDesc desc)
{
	char	   *recurring = col(tuple, desc, "recurring");
	char	   *first = col(tuple, desc, "first_recurring");

	req->recurring_billing = recurring != NULL && strcmp(recurring, "t") == 0;
	if (col(tuple, desc, "payment_method_id") == NULL)
		return;
	if (req->recurring_billing && first != NULL && strcmp(first, "t") == 0)
	{
		req->is_first_recurring_payment = true;
		return;
	}
	req->original_network_trans_id = col(tuple, desc, "original_network_trans_id");
	if (req->original_network_trans_id != NULL)
		req->is_subsequent_auth = true;
	else
		req->is_stored_credentials = true;
}

/* ----------------------------------------------------------------
 * Requests
 * ----------------------------------------------------------------
 */

/* createCustomerProfile / createCustomerPaymentProfile; arg: the request */
static char *
build_payment_profile(const AnetCredentials *creds, const GatewayOp *op pg_attribute_unused(),
					  const void *arg, bool masked, char **error)
{
	return anet_build_payment_profile_request(creds, (const AnetPaymentProfileRequest *) arg,
											  masked, error);
}

static char *
build_from_transaction(const AnetCredentials *creds, const GatewayOp *op,
					   const void *arg pg_attribute_unused(), bool masked, char **error)
{
	GatewayCim *c = op->cim;

	return anet_build_profile_from_transaction_request(creds, op->ref_id, c->ref_trans_id,
													   c->customer_profile_id ? NULL : c->merchant_customer_id,
													   c->customer_profile_id ? NULL : c->name,
													   c->customer_profile_id ? NULL : c->email,
													   c->customer_profile_id, masked, error);
}

/* getCustomerProfile: by its id when known, else by merchantCustomerId */
static char *
build_get_profile(const AnetCredentials *creds, const GatewayOp *op,
				  const void *arg pg_attribute_unused(), bool masked, char **error)
{
	GatewayCim *c = op->cim;

	return anet_build_get_customer_profile_request(creds, op->ref_id, c->customer_profile_id,
												   c->customer_profile_id ? NULL : c->merchant_customer_id,
												   masked, error);
}

static char *
build_delete(const AnetCredentials *creds, const GatewayOp *op,
			 const void *arg pg_attribute_unused(), bool masked, char **error)
{
	GatewayCim *c = op->cim;

	return anet_build_delete_profile_request(creds, op->ref_id, c->customer_profile_id,
											 strcmp(op->kind, "delete_method") == 0 ? c->payment_profile_id : NULL,
											 masked, error);
}

/*
 * The save itself: the card or opaque data is opened from the vault only
 * for the time it takes to build the body.  False with *error when it
 * cannot be opened (lost, card_open_failure says how; corrupt) or built.
 */
static bool
send_create(GatewayOp *op, char **error)
{
	GatewayCim *c = op->cim;
	AnetPaymentProfileRequest req;
	CardSecret	secret;
	PayCardHeader hdr;
	OpaqueData	opaque = {0};
	char		expiration[8];
	bool		ok;

	op->stage = STAGE_CIM;
	if (strcmp(c->source, "payment") == 0)
		return gateway_set_request(op, "createCustomerProfileFromTransactionRequest",
								   build_from_transaction, NULL, error);

	memset(&req, 0, sizeof(req));
	req.ref_id = op->ref_id[0] ? op->ref_id : NULL;
	req.customer_profile_id = c->customer_profile_id;
	req.merchant_customer_id = c->merchant_customer_id;
	req.description = c->name;
	req.email = c->email;
	req.bill_first_name = gateway_jsonb_text_field(c->billing, "first_name");
	req.bill_last_name = gateway_jsonb_text_field(c->billing, "last_name");
	req.bill_company = gateway_jsonb_text_field(c->billing, "company");
	req.bill_address = gateway_jsonb_text_field(c->billing, "address");
	req.bill_city = gateway_jsonb_text_field(c->billing, "city");
	req.bill_state = gateway_jsonb_text_field(c->billing, "state");
	req.bill_zip = gateway_jsonb_text_field(c->billing, "zip");
	req.bill_country = gateway_jsonb_text_field(c->billing, "country");
	req.default_payment_profile = c->make_default;
	req.validation_mode = c->validation_mode;

	if (strcmp(c->source, "card") == 0)
	{
		CardOpenStatus st = CARD_OPEN_LOST;

		if (c->sealed != NULL)
			st = card_open_sealed(VARDATA_ANY(c->sealed), VARSIZE_ANY_EXHDR(c->sealed), &hdr, &secret);
		if (st != CARD_OPEN_OK)
		{
			*error = pstrdup(card_open_failure(st));
			return false;
		}
		snprintf(expiration, sizeof(expiration), "%04d-%02d", hdr.exp_year, hdr.exp_month);
		req.card_number = secret.pan;
		req.card_expiration = expiration;
		req.card_code = secret.has_cvv ? secret.cvv : NULL;
		ok = gateway_set_request(op, c->customer_profile_id ? "createCustomerPaymentProfileRequest" :
								 "createCustomerProfileRequest", build_payment_profile, &req, error);
		explicit_bzero(&secret, sizeof(secret));
		return ok;
	}
	else
	{
		CardVaultStatus st = CARD_VAULT_KEY_GONE;

		if (c->sealed != NULL)
			st = opaque_data_open((const uint8 *) VARDATA_ANY(c->sealed), VARSIZE_ANY_EXHDR(c->sealed),
								  &opaque);
		if (st != CARD_VAULT_OPENED)
		{
			*error = pstrdup(opaque_data_open_failure(st));
			return false;
		}
		req.opaque_descriptor = opaque.descriptor;
		req.opaque_value = opaque.value;
		ok = gateway_set_request(op, c->customer_profile_id ? "createCustomerPaymentProfileRequest" :
								 "createCustomerProfileRequest", build_payment_profile, &req, error);
		opaque_data_wipe(&opaque);
		return ok;
	}
}

/* Ask for the customer's profile: to confirm a save, or to look one up. */
static bool
send_get_profile(GatewayOp *op, bool lookup, char **error)
{
	op->stage = STAGE_CIM_CONFIRM;
	op->cim->lookup = lookup;
	return gateway_set_request(op, "getCustomerProfileRequest", build_get_profile, NULL, error);
}

/* Fill op from one row of payments._claim_operations() (gateway.c). */
bool
gateway_cim_build(GatewayOp *op, HeapTuple tuple, TupleDesc desc, char **error)
{
	GatewayCim *c = palloc0(sizeof(GatewayCim));
	char	   *v;
	bool		isnull;
	Datum		sealed;

	op->cim = c;
	op->stage = STAGE_CIM;
	c->source = col(tuple, desc, "method_source");
	c->validation_mode = col(tuple, desc, "validation_mode");
	v = col(tuple, desc, "method_default");
	c->make_default = v != NULL && strcmp(v, "t") == 0;
	c->customer_profile_id = col(tuple, desc, "method_customer_profile_id");
	c->payment_profile_id = col(tuple, desc, "method_payment_profile_id");
	/* sent in requests only: as UTF-8 (gateway_request_text) */
	c->merchant_customer_id = gateway_request_text(col(tuple, desc, "merchant_customer_id"));
	c->email = gateway_request_text(col(tuple, desc, "customer_email"));
	c->name = gateway_request_text(col(tuple, desc, "customer_name"));
	v = col(tuple, desc, "customer_billing");
	if (v != NULL)
		c->billing = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(v)));
	c->ref_trans_id = col(tuple, desc, "ref_trans_id");
	c->last4 = col(tuple, desc, "method_card_last4");
	v = col(tuple, desc, "method_taken_profiles");
	c->taken = v ? psprintf(",%s,", v) : NULL;
	sealed = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "sealed"), &isnull);
	if (!isnull)
	{
		c->sealed = DatumGetByteaPCopy(sealed);
		/* recorded with a save the gateway made, also one a lookup finds */
		if (c->source != NULL && strcmp(c->source, "card") == 0 &&
			!card_sealed_fingerprint(VARDATA_ANY(c->sealed), VARSIZE_ANY_EXHDR(c->sealed),
									 op->card_fingerprint))
			op->card_fingerprint[0] = '\0';
	}

	if (strcmp(op->kind, "delete_method") == 0 || strcmp(op->kind, "delete_customer") == 0)
	{
		if (c->customer_profile_id == NULL)
		{
			*error = pstrdup("the customer has no profile at the gateway to delete from");
			return false;
		}
		return gateway_set_request(op, strcmp(op->kind, "delete_method") == 0 ?
								   "deleteCustomerPaymentProfileRequest" : "deleteCustomerProfileRequest",
								   build_delete, NULL, error);
	}
	if (c->source == NULL)
	{
		*error = pstrdup("the payment method to save is gone");
		return false;
	}
	/* an earlier attempt may have saved it: look first, never save twice */
	if (op->may_have_been_sent)
		return send_get_profile(op, true, error);
	return send_create(op, error);
}

/* ----------------------------------------------------------------
 * Replies
 * ----------------------------------------------------------------
 */

/* A final failure of the operation with the gateway's code and text. */
static void
cim_failed(GatewayOp *op, GatewayOutcomeKind outcome, const char *code, const char *text)
{
	op->cim->code = code && code[0] ? pstrdup(code) : NULL;
	op->result.reason_text = text && text[0] ? pstrdup(text) : NULL;
	gateway_set_outcome(op, outcome, NULL);
}

/*
 * Nothing of the save was found at the gateway: send it (again), or, when
 * the card cannot be sent any more, fail with the reason.
 */
static void
create_or_fail(GatewayOp *op, bool *follow_up)
{
	char	   *error = NULL;

	if (!op->cim->resent && send_create(op, &error))
	{
		op->cim->resent = true;
		*follow_up = true;
		return;
	}
	cim_failed(op, OUTCOME_ERROR, NULL, error ? error :
			   "the payment method was not saved at the gateway and could not be sent again");
}

/*
 * A lookup found nothing saved.  A request of an earlier attempt may still
 * be on its way through the gateway (the worker died, or gave up waiting,
 * while the gateway was still at it): sent again now, a card would be
 * caught by the gateway's duplicate check, but single-use opaque data
 * would fail and a profile from a transaction be made twice, and a card
 * lost in a restart cannot be sent at all.  So, unless the card is at
 * hand, the worker waits until no earlier request can still be processed
 * (gateway_await_earlier_requests), looks once more, and only then sends
 * it again, or fails.
 */
static void
lookup_missed(GatewayOp *op, bool *follow_up)
{
	GatewayCim *c = op->cim;

	if (!(strcmp(c->source, "card") == 0 && c->sealed != NULL) &&
		gateway_await_earlier_requests(op, "nothing saved was found at the gateway yet: an earlier request may still be in flight"))
		return;
	create_or_fail(op, follow_up);
}

/*
 * Does another live (active or deleting) method of the customer hold this
 * payment profile?  Two methods never share one: deleting either would
 * delete the other's card at the gateway.
 */
static bool
profile_taken(const GatewayCim *c, const char *payment_profile_id)
{
	char	   *needle;
	bool		found;

	if (c->taken == NULL || payment_profile_id == NULL || !payment_profile_id[0])
		return false;
	needle = psprintf(",%s,", payment_profile_id);
	found = strstr(c->taken, needle) != NULL;
	pfree(needle);
	return found;
}

/* The reply to a create, or to a delete. */
static void
interpret_cim(GatewayOp *op, bool *follow_up)
{
	GatewayCim *c = op->cim;
	AnetProfileResult r;
	bool		deletes = strcmp(op->kind, "save_method") != 0;
	char	   *other;

	if (!anet_parse_profile_response(op->http.response, op->http.response_len, &r))
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, "the gateway's reply could not be understood");
		return;
	}
	if ((other = gateway_reply_ref_mismatch(op, r.status.ref_id)) != NULL)
	{
		/*
		 * another request's reply: taken as ours, the method would be saved
		 * on a stranger's profile, and its charges billed to that card
		 */
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, other);
		return;
	}
	if (deletes)
	{
		/* E00040: the record is not there (any more): deleted */
		if (r.status.ok || strcmp(r.status.message_code, "E00040") == 0)
			gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
		else if (r.status.retryable)
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_RETRY,
									  psprintf("%s %s", r.status.message_code, r.status.message_text));
		else
			cim_failed(op, OUTCOME_ERROR, r.status.message_code, r.status.message_text);
		return;
	}

	if (r.customer_profile_id[0])
		c->customer_profile_id = pstrdup(r.customer_profile_id);
	if (r.payment_profile_id[0])
		c->payment_profile_id = pstrdup(r.payment_profile_id);
	if (r.network_trans_id[0])
		c->network_trans_id = pstrdup(r.network_trans_id);
	if (r.account_number[0])
		c->account_number = pstrdup(r.account_number);
	if (r.account_type[0])
		c->account_type = pstrdup(r.account_type);

	if (strcmp(r.status.message_code, "E00039") == 0 && profile_taken(c, r.payment_profile_id))
	{
		/*
		 * A duplicate naming another method's payment profile: the customer
		 * saved this card already.  The save fails rather than share it
		 * (_record_method_result names that method).
		 */
		cim_failed(op, OUTCOME_ERROR, "E00039",
				   "This card is saved already as another payment method of the customer.");
		return;
	}
	if (r.status.ok || (strcmp(r.status.message_code, "E00039") == 0 && r.payment_profile_id[0] &&
						c->customer_profile_id != NULL))
	{
		/* saved (or saved before: a duplicate payment profile); ask for its details */
		if (send_get_profile(op, false, NULL))
			*follow_up = true;
		else
			gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
		return;
	}
	if (strcmp(r.status.message_code, "E00039") == 0 && r.duplicate_id[0])
	{
		/* the customer's profile exists: is the card in it already? */
		c->customer_profile_id = pstrdup(r.duplicate_id);
		if (send_get_profile(op, true, NULL))
			*follow_up = true;
		else
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, "the existing customer profile could not be asked for");
		return;
	}
	if (strcmp(r.status.message_code, "E00040") == 0 && c->customer_profile_id != NULL && !c->resent)
	{
		/*
		 * Not found: the customer's profile (deleted at the gateway outside
		 * payments), or, from a payment, its transaction.  Asked for by its
		 * id (interpret_cim_confirm): gone, the save makes a new one.
		 */
		if (send_get_profile(op, true, NULL))
		{
			*follow_up = true;
			return;
		}
	}
	if (strcmp(r.status.message_code, "E00027") == 0 || r.validation_response_code == 2)
	{
		/* the validation declined the card */
		char	   *code = r.validation_reason_code ? psprintf("%d", r.validation_reason_code) :
			pstrdup(r.status.message_code);

		cim_failed(op, OUTCOME_DECLINED, code,
				   r.validation_reason_text[0] ? r.validation_reason_text : r.status.message_text);
		return;
	}
	if (r.status.retryable)
	{
		/* may or may not have been saved: look before sending again */
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
								  psprintf("%s %s", r.status.message_code, r.status.message_text));
		return;
	}
	cim_failed(op, strcmp(r.status.message_code, "E00003") == 0 ? OUTCOME_REJECTED : OUTCOME_ERROR,
			   r.status.message_code, r.status.message_text);
}

/* Does a masked card number ("XXXX1111") end with these last four? */
static bool
same_last4(const char *masked, const char *last4)
{
	size_t		n = strlen(masked);

	return last4 != NULL && n >= 4 && strcmp(masked + n - 4, last4) == 0;
}

/*
 * The reply to getCustomerProfile: after a save, the saved payment
 * profile's details; in a lookup, whether an earlier attempt saved the
 * card: the newest payment profile with its last four digits (for opaque
 * data, whose digits are not known before, the newest one) that no other
 * live method of the customer holds.  Another card of the customer with
 * the same last four, or the customer's earlier card for opaque data, is
 * not this save's.
 */
static void
interpret_cim_confirm(GatewayOp *op, bool *follow_up)
{
	GatewayCim *c = op->cim;
	AnetCustomerProfile p;
	const AnetPaymentProfile *hit = NULL;
	char	   *other;

	if (!anet_parse_customer_profile_response(op->http.response, op->http.response_len, &p))
	{
		if (c->lookup)
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, "the customer profile could not be read");
		else
			gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
		return;
	}
	if ((other = gateway_reply_ref_mismatch(op, p.status.ref_id)) != NULL)
	{
		anet_customer_profile_free(&p);
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, other);
		return;
	}
	if (!p.found)
	{
		if (c->lookup && strcmp(p.status.message_code, "E00040") == 0 && c->customer_profile_id != NULL)
		{
			/*
			 * The customer's profile, asked for by its id, is gone at the
			 * gateway (deleted outside payments, with every payment profile
			 * in it): forgotten (_record_method_result fails the methods it
			 * held), and the card saved in a new one.  An earlier attempt
			 * may have made that one already (its reply lost): looked for
			 * by the customer's merchantCustomerId, as a first save is.
			 */
			c->gone_profile_id = c->customer_profile_id;
			c->customer_profile_id = NULL;
			if (send_get_profile(op, true, NULL))
				*follow_up = true;
			else
				gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
										  "the customer's profile is gone and a new one could not be asked for");
		}
		else if (c->lookup && strcmp(p.status.message_code, "E00040") == 0)
		{
			/* no profile: nothing was saved */
			lookup_missed(op, follow_up);
		}
		else if (c->lookup)
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
									  psprintf("%s %s", p.status.message_code, p.status.message_text));
		else
			gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
		anet_customer_profile_free(&p);
		return;
	}
	c->customer_profile_id = pstrdup(p.customer_profile_id);
	for (size_t i = 0; i < p.count; i++)
	{
		const AnetPaymentProfile *it = &p.items[i];

		if (c->lookup ? (!profile_taken(c, it->payment_profile_id) &&
						 (same_last4(it->card_number, c->last4) || c->last4 == NULL)) :
			(c->payment_profile_id != NULL && strcmp(it->payment_profile_id, c->payment_profile_id) == 0))
			hit = it;
	}
	if (hit == NULL && c->lookup)
	{
		anet_customer_profile_free(&p);
		lookup_missed(op, follow_up);
		return;
	}
	if (hit != NULL)
	{
		c->payment_profile_id = pstrdup(hit->payment_profile_id);
		if (hit->original_network_trans_id[0])
			c->network_trans_id = pstrdup(hit->original_network_trans_id);
		if (hit->card_number[0])
			c->account_number = pstrdup(hit->card_number);
		if (hit->card_type[0])
			c->account_type = pstrdup(hit->card_type);
	}
	anet_customer_profile_free(&p);
	gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
}

void
gateway_cim_interpret(GatewayOp *op, bool *follow_up)
{
	if (op->stage == STAGE_CIM_CONFIRM)
		interpret_cim_confirm(op, follow_up);
	else
		interpret_cim(op, follow_up);
}
