/*-------------------------------------------------------------------------
 *
 * txn.c
 *		createTransactionRequest: authCapture, authOnly, priorAuthCapture,
 *		captureOnly, void and refund with the gateway's rules, duplicate
 *		detection, triggers, the reply in its wire shape, and the
 *		transaction representations used by reporting.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cards.h"
#include "codes.h"
#include "sim.h"

/* Everything the reply needs, collected while processing */
typedef struct TxResult
{
	int			response_code;
	int			reason;
	const char *reason_override;	/* text instead of the table's */
	Txn		   *txn;				/* stored transaction, or NULL */
	long long	trans_id;			/* 0 when nothing was created */
	long long	ref_trans_id;
	char		auth_code[8];
	char		avs[2];
	char		cvv[2];
	char		cavv[2];
	char		account_number[40];
	char		account_type[20];
	long long	amount;
	bool		test_request;
	bool		prepaid;
	long long	prepaid_requested;
	long long	prepaid_approved;
	long long	prepaid_balance;
	char		split_tender_id[16];
	bool		has_profile;
	char		profile_id[24];
	char		payment_profile_id[24];
	char		network_trans_id[32];
	json_object *profile_response;	/* createProfile=true, or NULL */
	const char *request_error;	/* request-level error code, or NULL */
} TxResult;

/* Settings from transactionSettings.setting[] */
typedef struct TxSettings
{
	int			duplicate_window;
	bool		window_set;
	bool		allow_partial;
	bool		test_request;
	bool		recurring;
} TxSettings;

/* Read transactionSettings.setting[] into TxSettings */
static void
read_settings(json_object *tr, TxSettings *s)
{
	json_object *set = jpath(tr, "transactionSettings.setting");
	int			n = 0;

	s->duplicate_window = 120;
	s->window_set = false;
	s->allow_partial = false;
	s->test_request = false;
	s->recurring = false;
	jitem(set, 0, &n);
	for (int i = 0; i < n; i++)
	{
		json_object *it = jitem(set, i, &n);
		const char *name = jstr(it, "settingName");
		const char *val = jstr(it, "settingValue");

		if (it == NULL || name == NULL)
			continue;
		if (strcmp(name, "duplicateWindow") == 0)
		{
			s->duplicate_window = val ? atoi(val) : 0;
			if (s->duplicate_window > 28800)
				s->duplicate_window = 28800;
			s->window_set = true;
		}
		else if (strcmp(name, "allowPartialAuth") == 0)
			s->allow_partial = jbool(val);
		else if (strcmp(name, "testRequest") == 0)
			s->test_request = jbool(val);
		else if (strcmp(name, "recurringBilling") == 0)
			s->recurring = jbool(val);
	}
}

/* transHashSha2: HMAC-SHA512 keyed by the hex-decoded Signature Key */
static void
trans_hash_sha2(int m, long long trans_id, long long amount, char *out)
{
	const char *hexkey = sim.merchants[m].signature_key;
	unsigned char key[128],
				md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t		klen = strlen(hexkey) / 2;
	char		msg[128],
				amt[32];

	out[0] = '\0';
	if (hexkey[0] == '\0' || klen > sizeof(key))
		return;
	for (size_t i = 0; i < klen; i++)
	{
		unsigned int b;

		if (sscanf(hexkey + 2 * i, "%2x", &b) != 1)
			return;
		key[i] = (unsigned char) b;
	}
	format_amount(amount, amt, sizeof(amt));
	snprintf(msg, sizeof(msg), "^%s^%lld^%s^", sim.merchants[m].login,
			 trans_id, amt);
	if (HMAC(EVP_sha512(), key, (int) klen, (unsigned char *) msg,
			 strlen(msg), md, &mdlen) == NULL)
		return;
	for (unsigned int i = 0; i < mdlen; i++)
		sprintf(out + 2 * i, "%02X", md[i]);
}

/* Build the createTransactionResponse in its wire order */
static json_object *
build_reply(int m, json_object *req, json_object *tr, TxResult *r)
{
	json_object *reply = json_object_new_object();
	json_object *resp = json_object_new_object();
	char		buf[160];
	int			cls = r->response_code;
	char		sha2[260];

	snprintf(buf, sizeof(buf), "%d", r->response_code);
	jadd_str(resp, "responseCode", buf);
	jadd_str(resp, "authCode", r->auth_code);
	jadd_str(resp, "avsResultCode", r->avs);
	jadd_str(resp, "cvvResultCode", r->cvv);
	jadd_str(resp, "cavvResultCode", r->cavv);
	snprintf(buf, sizeof(buf), "%lld", r->trans_id);
	jadd_str(resp, "transId", buf);
	if (r->ref_trans_id)
		snprintf(buf, sizeof(buf), "%lld", r->ref_trans_id);
	else
		buf[0] = '\0';
	jadd_str(resp, "refTransID", buf);
	jadd_str(resp, "transHash", "");
	jadd_str(resp, "testRequest", r->test_request ? "1" : "0");
	jadd_str(resp, "accountNumber", r->account_number);
	jadd_str(resp, "accountType", r->account_type);
	if (r->split_tender_id[0])
		jadd_str(resp, "splitTenderId", r->split_tender_id);
	if (r->prepaid)
	{
		json_object *pp = json_object_new_object();

		format_amount(r->prepaid_requested, buf, sizeof(buf));
		jadd_str(pp, "requestedAmount", buf);
		format_amount(r->prepaid_approved, buf, sizeof(buf));
		jadd_str(pp, "approvedAmount", buf);
		format_amount(r->prepaid_balance, buf, sizeof(buf));
		jadd_str(pp, "balanceOnCard", buf);
		jadd(resp, "prePaidCard", pp);
	}
	if (cls == 1 || cls == 4)
	{
		json_object *msgs = json_object_new_array();
		json_object *mo = json_object_new_object();

		snprintf(buf, sizeof(buf), "%d", r->reason);
		jadd_str(mo, "code", buf);
		jadd_str(mo, "description", r->reason_override ? r->reason_override :
				 reason_text(r->reason));
		json_object_array_add(msgs, mo);
		jadd(resp, "messages", msgs);
	}
	else
	{
		json_object *errs = json_object_new_array();
		json_object *eo = json_object_new_object();

		snprintf(buf, sizeof(buf), "%d", r->reason);
		jadd_str(eo, "errorCode", buf);
		jadd_str(eo, "errorText", r->reason_override ? r->reason_override :
				 reason_text(r->reason));
		json_object_array_add(errs, eo);
		jadd(resp, "errors", errs);
	}
	{
		json_object *uf = jpath(tr, "userFields.userField");
		int			n = 0;

		if (uf != NULL)
		{
			json_object *arr = json_object_new_array();

			for (int i = 0; jitem(uf, i, &n) != NULL; i++)
			{
				json_object *it = jitem(uf, i, &n);
				json_object *o = json_object_new_object();

				jadd_str(o, "name", jstr(it, "name"));
				jadd_str(o, "value", jstr(it, "value"));
				json_object_array_add(arr, o);
			}
			jadd(resp, "userFields", arr);
		}
	}
	if (r->trans_id && (cls == 1 || cls == 4))
		trans_hash_sha2(m, r->trans_id, r->amount, sha2);
	else
		sha2[0] = '\0';
	jadd_str(resp, "transHashSha2", sha2);
	if (r->has_profile)
	{
		json_object *p = json_object_new_object();

		jadd_str(p, "customerProfileId", r->profile_id);
		jadd_str(p, "customerPaymentProfileId", r->payment_profile_id);
		jadd(resp, "profile", p);
	}
	jadd(resp, "SupplementalDataQualificationIndicator", json_object_new_int(0));
	if (r->network_trans_id[0])
		jadd_str(resp, "networkTransId", r->network_trans_id);
	jadd(reply, "transactionResponse", resp);
	if (r->profile_response)
		jadd(reply, "profileResponse", r->profile_response);
	if (cls == 3)
		api_finish(reply, req, false, "E00027", NULL);
	else
		api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* Set an error result (responseCode from the reason's class) */
static void
set_reason(TxResult *r, int reason)
{
	r->reason = reason;
	r->response_code = reason_class(reason);
}

/* Copy the descriptive request fields into a stored transaction */
static void
fill_txn(Txn *t, json_object *req, json_object *tr, const char *type)
{
	json_object *bt = jget(tr, "billTo"),
			   *st = jget(tr, "shipTo");

	strlcpy0(t->type, type, sizeof(t->type));
	strlcpy0(t->invoice, jstr(jget(tr, "order"), "invoiceNumber"), sizeof(t->invoice));
	strlcpy0(t->description, jstr(jget(tr, "order"), "description"), sizeof(t->description));
	strlcpy0(t->po_number, jstr(tr, "poNumber"), sizeof(t->po_number));
	strlcpy0(t->customer_id, jstr(jget(tr, "customer"), "id"), sizeof(t->customer_id));
	strlcpy0(t->customer_email, jstr(jget(tr, "customer"), "email"), sizeof(t->customer_email));
	strlcpy0(t->customer_ip, jstr(tr, "customerIP"), sizeof(t->customer_ip));
	strlcpy0(t->ref_id, jstr(req, "refId"), sizeof(t->ref_id));
	if (bt)
		t->bill_to = json_object_get(bt);
	if (st)
		t->ship_to = json_object_get(st);
	if (jget(tr, "processingOptions"))
		t->processing_options = json_object_get(jget(tr, "processingOptions"));
	if (jget(tr, "subsequentAuthInformation"))
		t->subsequent_auth = json_object_get(jget(tr, "subsequentAuthInformation"));
}

/* Duplicate key: README.md's "Duplicate window" fields, and the window */
static void
dup_key(json_object *tr, const char *type, const CardInfo *ci, long long amount,
		int window, char *out, size_t len)
{
	json_object *bt = jget(tr, "billTo");

	snprintf(out, len, "%s|%s|%s|%s|%s|%s|%lld|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%d|%s",
			 type, ci->number, ci->expiry, ci->routing, ci->account,
			 jstr(tr, "poNumber") ?: "", amount,
			 jstr(jget(tr, "order"), "invoiceNumber") ?: "",
			 jstr(jget(tr, "customer"), "id") ?: "",
			 jstr(bt, "firstName") ?: "", jstr(bt, "lastName") ?: "",
			 jstr(bt, "company") ?: "", jstr(bt, "address") ?: "",
			 jstr(bt, "city") ?: "", jstr(bt, "state") ?: "",
			 jstr(bt, "zip") ?: "", jstr(bt, "country") ?: "", window,
			 jstr(tr, "refTransId") ?: "");
}

/* Read payment / profile / opaqueData into ci; returns a request error code */
static const char *
read_payment(int m, json_object *tr, CardInfo *ci, TxResult *r)
{
	json_object *pay = jget(tr, "payment");
	json_object *prof = jget(tr, "profile");

	memset(ci, 0, sizeof(*ci));
	if (pay != NULL)
	{
		json_object *cc = jget(pay, "creditCard"),
				   *ba = jget(pay, "bankAccount"),
				   *od = jget(pay, "opaqueData");

		if (cc != NULL)
		{
			strlcpy0(ci->number, jstr(cc, "cardNumber"), sizeof(ci->number));
			strlcpy0(ci->expiry, jstr(cc, "expirationDate"), sizeof(ci->expiry));
			strlcpy0(ci->code, jstr(cc, "cardCode"), sizeof(ci->code));
		}
		else if (ba != NULL)
		{
			ci->echeck = true;
			strlcpy0(ci->routing, jstr(ba, "routingNumber"), sizeof(ci->routing));
			strlcpy0(ci->account, jstr(ba, "accountNumber"), sizeof(ci->account));
			strlcpy0(ci->name_on_account, jstr(ba, "nameOnAccount"),
					 sizeof(ci->name_on_account));
		}
		else if (od != NULL)
		{
			if (!cim_consume_nonce(m, jstr(od, "dataDescriptor"),
								   jstr(od, "dataValue"), ci))
				return "E00114";
		}
		else
			return "unsupported";
		return NULL;
	}
	if (prof != NULL)
	{
		char		err[8] = "";
		const char *pid = jstr(prof, "customerProfileId");
		const char *ppid = jstr(jget(prof, "paymentProfile"), "paymentProfileId");

		if (pid == NULL || ppid == NULL)
			return "E00040";
		if (!cim_resolve_profile(m, pid, ppid, ci, err))
			return err[0] ? "E00040" : "E00040";
		if (jstr(jget(prof, "paymentProfile"), "cardCode"))
			strlcpy0(ci->code, jstr(jget(prof, "paymentProfile"), "cardCode"),
					 sizeof(ci->code));
		r->has_profile = true;
		strlcpy0(r->profile_id, pid, sizeof(r->profile_id));
		strlcpy0(r->payment_profile_id, ppid, sizeof(r->payment_profile_id));
		return NULL;
	}
	return "missing";
}

/* Result fields derived from the payment */
static void
result_account(TxResult *r, const CardInfo *ci)
{
	if (ci->echeck)
	{
		mask_account(ci->account, true, r->account_number, sizeof(r->account_number));
		strlcpy0(r->account_type, "eCheck", sizeof(r->account_type));
	}
	else if (ci->number[0])
	{
		mask_account(ci->number, false, r->account_number, sizeof(r->account_number));
		strlcpy0(r->account_type, strlen(ci->number) >= 6 ?
				 card_brand(ci->number) : "", sizeof(r->account_type));
	}
}

/* Store payment identity in a transaction */
static void
txn_set_account(Txn *t, const CardInfo *ci, const TxResult *r)
{
	const char *num = ci->echeck ? ci->account : ci->number;
	size_t		n = strlen(num);

	t->echeck = ci->echeck;
	strlcpy0(t->last4, n > 4 ? num + n - 4 : num, sizeof(t->last4));
	strlcpy0(t->expiry, ci->expiry, sizeof(t->expiry));
	strlcpy0(t->account_type, r->account_type, sizeof(t->account_type));
	if (r->has_profile)
	{
		strlcpy0(t->profile_id, r->profile_id, sizeof(t->profile_id));
		strlcpy0(t->payment_profile_id, r->payment_profile_id,
				 sizeof(t->payment_profile_id));
	}
}

/* Approve-side processing of authCapture / authOnly / captureOnly */
static void
process_charge(int m, json_object *req, json_object *tr, const char *type,
			   long long amount, CardInfo *ci, TxSettings *set, TxResult *r)
{
	json_object *bt = jget(tr, "billTo");
	const char *zip = jstr(bt, "zip");
	bool		auth_only = strcmp(type, "authOnlyTransaction") == 0;
	bool		capture_only = strcmp(type, "captureOnlyTransaction") == 0;
	int			trig = amount_trigger(amount);
	int			ereason;
	long long	balance = 0;
	int			partial = 0;
	Txn		   *t;

	if (bt == NULL && ci->bill_to)
		zip = jstr(ci->bill_to, "zip");
	result_account(r, ci);
	/* card-level checks the processor performs */
	if (!ci->echeck)
	{
		if (ci->number[0] == '\0')
		{
			set_reason(r, 33);
			r->reason_override = "Credit card number is required.";
			return;
		}
		if (!card_luhn_ok(ci->number))
		{
			set_reason(r, 6);
			return;
		}
		if (ci->expiry[0] == '\0')
		{
			set_reason(r, 7);
			return;
		}
		ereason = card_expiry_check(ci->expiry, sim_now_ms());
		if (ereason)
		{
			set_reason(r, ereason);
			return;
		}
		if (ci->code[0] && (strlen(ci->code) !=
							(strcmp(r->account_type, "AmericanExpress") == 0 ? 4u : 3u)))
		{
			set_reason(r, 78);
			return;
		}
	}
	else if (ci->routing[0] == '\0' || ci->account[0] == '\0')
	{
		set_reason(r, 33);
		r->reason_override = "Bank account information is required.";
		return;
	}
	if (capture_only)
	{
		const char *ac = jstr(tr, "authCode");

		if (ac == NULL || ac[0] == '\0')
		{
			set_reason(r, 12);
			return;
		}
		if (strlen(ac) > 6)
		{
			set_reason(r, 72);
			return;
		}
	}
	if (trig && reason_class(trig) == 3)
	{
		set_reason(r, trig);
		return;
	}
	/* the transaction is created from here on */
	if (set->test_request)
	{
		set_reason(r, 1);
		r->test_request = true;
		random_alnum(r->auth_code, 6);
		r->avs[0] = ci->echeck ? 'P' : zip_avs(zip, r->account_type);
		r->cvv[0] = ci->echeck ? '\0' : code_cvv(ci->code);
		return;
	}
	t = txn_new(m);
	if (t == NULL)
	{
		set_reason(r, 19);
		return;
	}
	fill_txn(t, req, tr, type);
	if (t->bill_to == NULL && ci->bill_to)
		t->bill_to = json_object_get(ci->bill_to);
	txn_set_account(t, ci, r);
	t->requested = amount;
	t->recurring = set->recurring;
	r->txn = t;
	r->trans_id = t->id;
	r->amount = amount;
	r->avs[0] = ci->echeck ? 'P' : zip_avs(zip, r->account_type);
	r->cvv[0] = ci->echeck ? '\0' : code_cvv(ci->code);
	r->cavv[0] = ci->echeck ? '\0' : '2';
	if (capture_only)
	{
		/* the card was authorized elsewhere: nothing is verified here */
		r->avs[0] = 'P';
		r->cvv[0] = '\0';
		r->cavv[0] = '\0';
	}
	if (!ci->echeck)
	{
		random_alnum(r->network_trans_id, 23);
		strlcpy0(t->network_trans_id, r->network_trans_id, sizeof(t->network_trans_id));
	}
	if (set->allow_partial && !ci->echeck)
		partial = zip_partial(zip, &balance);

	if (trig)
		set_reason(r, trig);
	else if ((zip && strcmp(zip, DECLINE_ZIP) == 0) ||
			 strcmp(ci->number, "4000000000000002") == 0 ||
			 (ci->echeck && amount > 10000))
		set_reason(r, 2);
	else if (partial == 1 && amount > 123)
	{
		set_reason(r, 295);
		r->prepaid = true;
		r->prepaid_requested = amount;
		r->prepaid_approved = 123;
		r->prepaid_balance = 0;
		snprintf(r->split_tender_id, sizeof(r->split_tender_id), "%lld",
				 100000 + t->id % 900000);
	}
	else
	{
		set_reason(r, 1);
		if (partial == 2)
		{
			r->prepaid = true;
			r->prepaid_requested = amount;
			r->prepaid_approved = amount;
			r->prepaid_balance = balance;
		}
	}
	t->response_code = r->response_code;
	t->reason = r->reason;
	if (r->response_code == 2)
	{
		t->status = ST_DECLINED;
		r->network_trans_id[0] = '\0';
	}
	else
	{
		long long	approved = r->prepaid ? r->prepaid_approved : amount;

		if (r->reason == 252)
			t->status = ST_FDS_PENDING_REVIEW;
		else
		{
			if (capture_only)
				strlcpy0(r->auth_code, jstr(tr, "authCode"), sizeof(r->auth_code));
			else
				random_alnum(r->auth_code, 6);
			t->auth_amount = approved;
			if (r->response_code == 4)
				t->status = ST_FDS_AUTH_PENDING_REVIEW;
			else if (auth_only)
				t->status = ST_AUTH_PENDING_CAPTURE;
			else
			{
				t->status = ST_CAPTURED_PENDING_SETTLEMENT;
				t->settle_amount = approved;
			}
			if (r->reason == 295)
				t->status = auth_only ? ST_AUTH_PENDING_CAPTURE :
					ST_CAPTURED_PENDING_SETTLEMENT;
		}
		strlcpy0(t->auth_code, r->auth_code, sizeof(t->auth_code));
		ledger_record(t, r->reason == 252 ? "held" :
					  auth_only ? "authorization" : "charge", approved);
		if (!r->has_profile &&
			jbool(jstr(jget(tr, "profile"), "createProfile")))
		{
			r->profile_response = cim_profile_from_charge(m, ci, tr, t);
			r->has_profile = true;
			strlcpy0(r->profile_id, t->profile_id, sizeof(r->profile_id));
			strlcpy0(r->payment_profile_id, t->payment_profile_id,
					 sizeof(r->payment_profile_id));
		}
	}
	strlcpy0(t->avs, r->avs, sizeof(t->avs));
	strlcpy0(t->cvv, r->cvv, sizeof(t->cvv));
	strlcpy0(t->cavv, r->cavv, sizeof(t->cavv));
	if (r->response_code == 4)
		webhook_emit_txn(t, "net.authorize.payment.fraud.held");
	if (r->response_code != 2 && r->reason != 252 && r->response_code != 3)
		webhook_emit_txn(t, auth_only ? "net.authorize.payment.authorization.created" :
						 capture_only ? "net.authorize.payment.capture.created" :
						 "net.authorize.payment.authcapture.created");
	else if (r->response_code == 2)
		webhook_emit_txn(t, auth_only ? "net.authorize.payment.authorization.created" :
						 "net.authorize.payment.authcapture.created");
}

/* priorAuthCaptureTransaction: capture (part of) an authorization */
static void
process_prior_capture(int m, json_object *tr, bool have_amount, long long amount,
					  TxResult *r)
{
	const char *ref = jstr(tr, "refTransId");
	Txn		   *o = ref ? txn_get(m, atoll(ref)) : NULL;

	if (ref == NULL || ref[0] == '\0')
	{
		set_reason(r, 33);
		r->reason_override = "Transaction ID cannot be left blank.";
		return;
	}
	r->ref_trans_id = atoll(ref);
	if (o == NULL)
	{
		set_reason(r, 16);
		return;
	}
	r->trans_id = o->id;
	r->ref_trans_id = o->id;
	strlcpy0(r->account_type, o->account_type, sizeof(r->account_type));
	mask_account(o->last4, o->echeck, r->account_number, sizeof(r->account_number));
	r->avs[0] = 'P';
	if (o->status == ST_VOIDED)
	{
		set_reason(r, 310);
		r->response_code = 3;
		r->trans_id = 0;
		return;
	}
	if (o->status == ST_CAPTURED_PENDING_SETTLEMENT || o->status == ST_SETTLED)
	{
		set_reason(r, 311);
		strlcpy0(r->auth_code, o->auth_code, sizeof(r->auth_code));
		return;
	}
	if (o->status != ST_AUTH_PENDING_CAPTURE)
	{
		set_reason(r, 16);
		r->trans_id = 0;
		return;
	}
	if (!have_amount)
		amount = o->auth_amount;
	if (amount > o->auth_amount)
	{
		set_reason(r, 47);
		r->trans_id = 0;
		return;
	}
	if (amount <= 0)
	{
		set_reason(r, 5);
		r->trans_id = 0;
		return;
	}
	o->status = ST_CAPTURED_PENDING_SETTLEMENT;
	o->settle_amount = amount;
	strlcpy0(o->type, "priorAuthCaptureTransaction", sizeof(o->type));
	set_reason(r, 1);
	r->amount = amount;
	r->txn = o;
	strlcpy0(r->auth_code, o->auth_code, sizeof(r->auth_code));
	ledger_record(o, "capture", amount);
	webhook_emit_txn(o, "net.authorize.payment.priorAuthCapture.created");
}

/* voidTransaction: cancel anything not yet settled */
static void
process_void(int m, json_object *tr, TxResult *r)
{
	const char *ref = jstr(tr, "refTransId");
	Txn		   *o = ref ? txn_get(m, atoll(ref)) : NULL;

	if (ref == NULL || ref[0] == '\0')
	{
		set_reason(r, 33);
		r->reason_override = "Transaction ID cannot be left blank.";
		return;
	}
	r->ref_trans_id = atoll(ref);
	if (o == NULL)
	{
		set_reason(r, 16);
		return;
	}
	r->trans_id = o->id;
	strlcpy0(r->account_type, o->account_type, sizeof(r->account_type));
	mask_account(o->last4, o->echeck, r->account_number, sizeof(r->account_number));
	strlcpy0(r->auth_code, o->auth_code, sizeof(r->auth_code));
	r->avs[0] = 'P';
	if (o->status == ST_VOIDED)
	{
		set_reason(r, 310);
		return;
	}
	if (o->status != ST_AUTH_PENDING_CAPTURE &&
		o->status != ST_CAPTURED_PENDING_SETTLEMENT &&
		o->status != ST_REFUND_PENDING_SETTLEMENT &&
		o->status != ST_FDS_PENDING_REVIEW &&
		o->status != ST_FDS_AUTH_PENDING_REVIEW)
	{
		set_reason(r, 16);
		r->trans_id = 0;
		r->auth_code[0] = '\0';
		return;
	}
	if ((o->status == ST_REFUND_PENDING_SETTLEMENT ||
		 (o->status == ST_FDS_PENDING_REVIEW && strcmp(o->type, "refundTransaction") == 0)) &&
		o->ref_trans_id)
	{
		Txn		   *orig = txn_get(m, o->ref_trans_id);

		if (orig)
			orig->refunded -= o->settle_amount;
	}
	o->status = ST_VOIDED;
	set_reason(r, 1);
	r->amount = o->settle_amount ? o->settle_amount : o->auth_amount;
	r->txn = o;
	ledger_record(o, "void", 0);
	webhook_emit_txn(o, "net.authorize.payment.void.created");
}

/* refundTransaction: linked credit against a settled transaction */
static void
process_refund(int m, json_object *req, json_object *tr, long long amount,
			   CardInfo *ci, TxResult *r)
{
	const char *ref = jstr(tr, "refTransId");
	Txn		   *o,
			   *t;
	size_t		n;
	const char *num = ci->echeck ? ci->account : ci->number;
	int			trig = amount_trigger(amount);

	result_account(r, ci);
	if (!ci->echeck && num[0] == '\0')
	{
		set_reason(r, 33);
		r->reason_override = "Credit card number is required.";
		return;
	}
	if (!ci->echeck && ci->expiry[0] == '\0')
	{
		set_reason(r, 33);
		r->reason_override = "Credit card expiration date is required.";
		return;
	}
	if (amount <= 0)
	{
		set_reason(r, 5);
		return;
	}
	if (ref == NULL || ref[0] == '\0')
	{
		/* unlinked credits need Expanded Credit Capabilities */
		set_reason(r, 54);
		return;
	}
	r->ref_trans_id = atoll(ref);
	o = txn_get(m, atoll(ref));
	if (o == NULL)
	{
		set_reason(r, 16);
		return;
	}
	n = strlen(num);
	if (strcmp(r->account_type, "") == 0 || n <= 4)
		strlcpy0(r->account_type, o->account_type, sizeof(r->account_type));
	if (r->has_profile && strcmp(r->payment_profile_id, o->payment_profile_id) != 0)
	{
		r->request_error = "E00051";
		return;
	}
	if (o->status != ST_SETTLED ||
		strcmp(n > 4 ? num + n - 4 : num, o->last4) != 0)
	{
		set_reason(r, 54);
		return;
	}
	{
		Batch	   *b = batch_get(m, o->batch_id);

		if (b && sim_now_ms() - b->settle_ms >
			(long long) sim.cfg.refund_window_days * 86400000LL)
		{
			set_reason(r, 54);
			return;
		}
	}
	if (o->refunded + amount > o->settle_amount)
	{
		set_reason(r, 55);
		return;
	}
	t = txn_new(m);
	if (t == NULL)
	{
		set_reason(r, 19);
		return;
	}
	fill_txn(t, req, tr, "refundTransaction");
	strlcpy0(t->last4, o->last4, sizeof(t->last4));
	strlcpy0(t->account_type, o->account_type, sizeof(t->account_type));
	strlcpy0(t->expiry, "XXXX", sizeof(t->expiry));
	t->echeck = o->echeck;
	if (t->bill_to == NULL && o->bill_to)
		t->bill_to = json_object_get(o->bill_to);
	strlcpy0(t->profile_id, o->profile_id, sizeof(t->profile_id));
	strlcpy0(t->payment_profile_id, o->payment_profile_id, sizeof(t->payment_profile_id));
	t->ref_trans_id = o->id;
	t->requested = amount;
	t->settle_amount = amount;
	t->auth_amount = amount;
	/* the amount stays taken from the original while the refund is held */
	o->refunded += amount;
	r->txn = t;
	r->trans_id = t->id;
	r->amount = amount;
	r->avs[0] = 'P';
	mask_account(o->last4, o->echeck, r->account_number, sizeof(r->account_number));
	if (trig == 252 || trig == 253)
	{
		/* simulator-only: held for review (FDSPendingReview), nothing refunded yet */
		set_reason(r, trig);
		t->status = ST_FDS_PENDING_REVIEW;
		t->response_code = r->response_code;
		t->reason = trig;
		ledger_record(t, "held", amount);
		webhook_emit_txn(t, "net.authorize.payment.fraud.held");
		return;
	}
	t->status = ST_REFUND_PENDING_SETTLEMENT;
	set_reason(r, 1);
	t->response_code = 1;
	t->reason = 1;
	random_alnum(r->auth_code, 6);
	strlcpy0(t->auth_code, r->auth_code, sizeof(t->auth_code));
	ledger_record(t, "refund", amount);
	webhook_emit_txn(t, "net.authorize.payment.refund.created");
}

/* Entry point for createTransactionRequest (lock held) */
json_object *
handle_create_transaction(int m, json_object *req)
{
	json_object *tr = jget(req, "transactionRequest");
	const char *type = jstr(tr, "transactionType");
	const char *amt = jstr(tr, "amount");
	long long	amount = 0;
	bool		have_amount = amt != NULL;
	TxResult	r;
	TxSettings	set;
	CardInfo	ci;
	const char *perr = NULL;
	bool		charge,
				refund;

	memset(&r, 0, sizeof(r));
	memset(&ci, 0, sizeof(ci));
	read_settings(tr, &set);
	/* an account in Test Mode answers every transaction as a test request */
	if (sim.merchants[m].test_mode)
		set.test_request = true;
	if (type == NULL)
		type = "";
	if (have_amount && !parse_amount(amt, &amount))
	{
		set_reason(&r, 5);
		return build_reply(m, req, tr, &r);
	}
	charge = strcmp(type, "authCaptureTransaction") == 0 ||
		strcmp(type, "authOnlyTransaction") == 0 ||
		strcmp(type, "captureOnlyTransaction") == 0;
	refund = strcmp(type, "refundTransaction") == 0;

	if (charge || refund)
	{
		perr = read_payment(m, tr, &ci, &r);
		if (perr && (strcmp(perr, "E00040") == 0 || strcmp(perr, "E00114") == 0))
			return api_error_reply(perr, NULL);
		if (perr && strcmp(perr, "unsupported") == 0)
		{
			/* PayPal and other wallets: no linked credit possible here */
			set_reason(&r, refund ? 54 : 17);
			return build_reply(m, req, tr, &r);
		}
		if (perr && charge)
		{
			set_reason(&r, 33);
			r.reason_override = "Credit card number is required.";
			return build_reply(m, req, tr, &r);
		}
	}
	if (charge && (!have_amount || amount <= 0))
	{
		set_reason(&r, 5);
		return build_reply(m, req, tr, &r);
	}

	/* duplicate detection, before anything is created */
	if ((charge || refund) && set.duplicate_window > 0 && !set.test_request)
	{
		char		key[2048];
		json_object *hit;

		dup_key(tr, type, &ci, amount, set.duplicate_window, key, sizeof(key));
		hit = jget(sim.merchants[m].dup, key);
		if (hit != NULL)
		{
			Txn		   *o = txn_get(m, json_object_get_int64(hit));

			if (o && sim_now_ms() - o->submit_ms < (long long) set.duplicate_window * 1000)
			{
				set_reason(&r, 11);
				result_account(&r, &ci);
				r.avs[0] = 'P';
				if (set.window_set)
				{
					r.trans_id = o->id;
					strlcpy0(r.avs, o->avs, sizeof(r.avs));
					strlcpy0(r.cvv, o->cvv, sizeof(r.cvv));
					if (o->response_code == 1 || o->response_code == 4)
						strlcpy0(r.auth_code, o->auth_code, sizeof(r.auth_code));
				}
				return build_reply(m, req, tr, &r);
			}
		}
	}

	if (charge)
		process_charge(m, req, tr, type, amount, &ci, &set, &r);
	else if (refund)
	{
		if (perr)
		{
			set_reason(&r, 33);
			r.reason_override = "Credit card number is required.";
		}
		else
			process_refund(m, req, tr, amount, &ci, &r);
	}
	else if (strcmp(type, "priorAuthCaptureTransaction") == 0)
		process_prior_capture(m, tr, have_amount, amount, &r);
	else if (strcmp(type, "voidTransaction") == 0)
		process_void(m, tr, &r);
	else
	{
		/* getDetails / PayPal continue types are not modelled */
		set_reason(&r, 3);
		r.response_code = 3;
		r.reason_override = "The transaction type is not supported by the simulator.";
	}

	if (r.request_error)
		return api_error_reply(r.request_error, NULL);

	/* remember for duplicate detection */
	if ((charge || refund) && r.txn != NULL && set.duplicate_window > 0)
	{
		char		key[2048];

		dup_key(tr, type, &ci, amount, set.duplicate_window, key, sizeof(key));
		jadd(sim.merchants[m].dup, key, json_object_new_int64(r.txn->id));
	}
	return build_reply(m, req, tr, &r);
}

/* updateHeldTransactionRequest: approve or decline a held transaction */
json_object *
handle_update_held(int m, json_object *req)
{
	json_object *h = jget(req, "heldTransactionRequest");
	const char *action = jstr(h, "action");
	const char *ref = jstr(h, "refTransId");
	Txn		   *o = ref ? txn_get(m, atoll(ref)) : NULL;
	TxResult	r;

	memset(&r, 0, sizeof(r));
	if (o == NULL || (o->status != ST_FDS_PENDING_REVIEW &&
					  o->status != ST_FDS_AUTH_PENDING_REVIEW))
	{
		set_reason(&r, 16);
		r.ref_trans_id = ref ? atoll(ref) : 0;
		return build_reply(m, req, NULL, &r);
	}
	r.trans_id = o->id;
	r.ref_trans_id = o->id;
	strlcpy0(r.account_type, o->account_type, sizeof(r.account_type));
	mask_account(o->last4, o->echeck, r.account_number, sizeof(r.account_number));
	if (action && strcmp(action, "approve") == 0)
	{
		if (o->auth_code[0] == '\0')
			random_alnum(o->auth_code, 6);
		if (o->auth_amount == 0)
			o->auth_amount = o->requested;
		if (strcmp(o->type, "authOnlyTransaction") == 0)
			o->status = ST_AUTH_PENDING_CAPTURE;
		else if (strcmp(o->type, "refundTransaction") == 0)
		{
			/* a held refund approved: the money goes back now */
			o->status = ST_REFUND_PENDING_SETTLEMENT;
			ledger_record(o, "refund", o->settle_amount);
		}
		else
		{
			o->status = ST_CAPTURED_PENDING_SETTLEMENT;
			o->settle_amount = o->auth_amount;
		}
		o->response_code = 1;
		o->reason = 1;
		set_reason(&r, 1);
		strlcpy0(r.auth_code, o->auth_code, sizeof(r.auth_code));
		webhook_emit_txn(o, "net.authorize.payment.fraud.approved");
	}
	else
	{
		if (strcmp(o->type, "refundTransaction") == 0 && o->ref_trans_id)
		{
			/* a held refund declined: its amount can be refunded again */
			Txn		   *orig = txn_get(m, o->ref_trans_id);

			if (orig)
				orig->refunded -= o->settle_amount;
		}
		o->status = ST_DECLINED;
		o->response_code = 2;
		o->reason = 254;
		set_reason(&r, 254);
		webhook_emit_txn(o, "net.authorize.payment.fraud.declined");
	}
	return build_reply(m, req, NULL, &r);
}

/* transactionSummaryType, as in the transaction list replies */
json_object *
txn_summary_json(Txn *t)
{
	json_object *o = json_object_new_object();
	char		buf[64];
	json_object *bt = t->bill_to;

	snprintf(buf, sizeof(buf), "%lld", t->id);
	jadd_str(o, "transId", buf);
	format_time_utc(t->submit_ms, buf, sizeof(buf), false);
	jadd_str(o, "submitTimeUTC", buf);
	format_time_local(t->submit_ms, buf, sizeof(buf), false);
	jadd_str(o, "submitTimeLocal", buf);
	jadd_str(o, "transactionStatus", tx_status_names[t->status]);
	if (t->invoice[0])
		jadd_str(o, "invoiceNumber", t->invoice);
	if (jstr(bt, "firstName"))
		jadd_str(o, "firstName", jstr(bt, "firstName"));
	if (jstr(bt, "lastName"))
		jadd_str(o, "lastName", jstr(bt, "lastName"));
	jadd_str(o, "accountType", t->account_type);
	mask_account(t->last4, t->echeck, buf, sizeof(buf));
	jadd_str(o, "accountNumber", buf);
	if (t->status == ST_FDS_PENDING_REVIEW || t->status == ST_FDS_AUTH_PENDING_REVIEW)
		jadd(o, "settleAmount", json_amount(t->requested));
	else
		jadd(o, "settleAmount", json_amount(
				 (t->status == ST_VOIDED || t->status == ST_DECLINED ||
				  t->status == ST_AUTH_PENDING_CAPTURE) ? 0 : t->settle_amount));
	jadd_str(o, "marketType", "eCommerce");
	jadd_str(o, "product", "Card Not Present");
	if (t->status == ST_FDS_PENDING_REVIEW || t->status == ST_FDS_AUTH_PENDING_REVIEW)
	{
		json_object *fi = json_object_new_object();
		json_object *fl = json_object_new_array();

		json_object_array_add(fl, json_object_new_string("AmountFilter"));
		jadd(fi, "fraudFilterList", fl);
		jadd_str(fi, "fraudAction", "Review");
		jadd(o, "fraudInformation", fi);
	}
	if (t->profile_id[0])
	{
		json_object *p = json_object_new_object();

		jadd_str(p, "customerProfileId", t->profile_id);
		jadd_str(p, "customerPaymentProfileId", t->payment_profile_id);
		jadd(o, "profile", p);
	}
	else
		jadd(o, "hasReturnedItemsSpecified", json_object_new_boolean(0));
	return o;
}

/* Copy the address members of a request object in reply order */
static json_object *
address_json(json_object *a, bool with_phone)
{
	static const char *const names[] = {
		"firstName", "lastName", "company", "address", "city", "state", "zip",
		"country", NULL
	};
	json_object *o = json_object_new_object();

	if (with_phone)
	{
		if (jstr(a, "phoneNumber"))
			jadd_str(o, "phoneNumber", jstr(a, "phoneNumber"));
		if (jstr(a, "faxNumber"))
			jadd_str(o, "faxNumber", jstr(a, "faxNumber"));
	}
	for (int i = 0; names[i]; i++)
		if (jstr(a, names[i]))
			jadd_str(o, names[i], jstr(a, names[i]));
	if (with_phone && jstr(a, "email"))
		jadd_str(o, "email", jstr(a, "email"));
	return o;
}

/* transactionDetailsType, as in getTransactionDetailsResponse */
json_object *
txn_details_json(Txn *t)
{
	json_object *o = json_object_new_object();
	char		buf[64];

	snprintf(buf, sizeof(buf), "%lld", t->id);
	jadd_str(o, "transId", buf);
	if (t->ref_trans_id)
	{
		snprintf(buf, sizeof(buf), "%lld", t->ref_trans_id);
		jadd_str(o, "refTransId", buf);
	}
	format_time_utc(t->submit_ms, buf, sizeof(buf), true);
	jadd_str(o, "submitTimeUTC", buf);
	format_time_local(t->submit_ms, buf, sizeof(buf), true);
	jadd_str(o, "submitTimeLocal", buf);
	jadd_str(o, "transactionType", t->type);
	jadd_str(o, "transactionStatus", tx_status_names[t->status]);
	jadd(o, "responseCode", json_object_new_int(t->response_code));
	jadd(o, "responseReasonCode", json_object_new_int(t->reason));
	jadd_str(o, "responseReasonDescription",
			 t->reason == 1 ? "Approval" : reason_text(t->reason));
	if (t->auth_code[0])
		jadd_str(o, "authCode", t->auth_code);
	jadd_str(o, "AVSResponse", t->avs[0] ? t->avs : "P");
	if (t->cvv[0])
		jadd_str(o, "cardCodeResponse", t->cvv);
	if (t->batch_id > 0)
	{
		Batch	   *b = batch_get(t->merchant, t->batch_id);
		json_object *bo = json_object_new_object();

		snprintf(buf, sizeof(buf), "%lld", t->batch_id);
		jadd_str(bo, "batchId", buf);
		if (b)
		{
			format_time_utc(b->settle_ms, buf, sizeof(buf), true);
			jadd_str(bo, "settlementTimeUTC", buf);
			jadd(bo, "settlementTimeUTCSpecified", json_object_new_boolean(1));
			format_time_local(b->settle_ms, buf, sizeof(buf), true);
			jadd_str(bo, "settlementTimeLocal", buf);
			jadd(bo, "settlementTimeLocalSpecified", json_object_new_boolean(1));
		}
		jadd_str(bo, "settlementState", "settledSuccessfully");
		jadd(o, "batch", bo);
	}
	if (t->invoice[0] || t->description[0])
	{
		json_object *ord = json_object_new_object();

		if (t->invoice[0])
			jadd_str(ord, "invoiceNumber", t->invoice);
		if (t->description[0])
			jadd_str(ord, "description", t->description);
		jadd(o, "order", ord);
	}
	jadd(o, "requestedAmount", json_amount(t->requested));
	jadd(o, "authAmount", json_amount(t->auth_amount));
	jadd(o, "settleAmount", json_amount(
			 (t->status == ST_VOIDED || t->status == ST_DECLINED ||
			  t->status == ST_AUTH_PENDING_CAPTURE ||
			  t->status == ST_FDS_PENDING_REVIEW ||
			  t->status == ST_FDS_AUTH_PENDING_REVIEW) ? 0 : t->settle_amount));
	if (t->prepaid_balance >= 0)
		jadd(o, "prepaidBalanceRemaining", json_amount(t->prepaid_balance));
	else
		jadd(o, "prepaidBalanceRemainingSpecified", json_object_new_boolean(0));
	jadd(o, "taxExempt", json_object_new_boolean(0));
	jadd(o, "taxExemptSpecified", json_object_new_boolean(1));
	{
		json_object *pay = json_object_new_object();
		json_object *c = json_object_new_object();

		if (t->echeck)
		{
			mask_account(t->last4, true, buf, sizeof(buf));
			jadd_str(c, "routingNumber", "XXXX");
			jadd_str(c, "accountNumber", buf);
			jadd(pay, "bankAccount", c);
		}
		else
		{
			mask_account(t->last4, false, buf, sizeof(buf));
			jadd_str(c, "cardNumber", buf);
			jadd_str(c, "expirationDate", "XXXX");
			jadd_str(c, "cardType", t->account_type);
			jadd(pay, "creditCard", c);
		}
		jadd(o, "payment", pay);
	}
	if (t->customer_id[0] || t->customer_email[0])
	{
		json_object *c = json_object_new_object();

		jadd(c, "typeSpecified", json_object_new_boolean(0));
		if (t->customer_id[0])
			jadd_str(c, "id", t->customer_id);
		if (t->customer_email[0])
			jadd_str(c, "email", t->customer_email);
		jadd(o, "customer", c);
	}
	if (t->bill_to)
		jadd(o, "billTo", address_json(t->bill_to, true));
	if (t->ship_to)
		jadd(o, "shipTo", address_json(t->ship_to, false));
	jadd(o, "recurringBilling", json_object_new_boolean(t->recurring));
	jadd(o, "recurringBillingSpecified", json_object_new_boolean(1));
	if (t->customer_ip[0])
		jadd_str(o, "customerIP", t->customer_ip);
	jadd_str(o, "product", "Card Not Present");
	jadd_str(o, "marketType", "eCommerce");
	if (t->profile_id[0])
	{
		json_object *p = json_object_new_object();

		jadd_str(p, "customerProfileId", t->profile_id);
		jadd_str(p, "customerPaymentProfileId", t->payment_profile_id);
		jadd(o, "profile", p);
	}
	if (t->network_trans_id[0])
		jadd_str(o, "networkTransId", t->network_trans_id);
	return o;
}
