/*-------------------------------------------------------------------------
 *
 * cim.c
 *		Customer profiles (CIM) with payment profiles, Accept.js opaqueData
 *		nonces issued by the simulator, and a minimal ARB.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cards.h"
#include "sim.h"

/* profiles and nonces are kept as json objects: simple and order-stable */
static json_object *profiles;	/* "m:id" -> profile */
static json_object *nonces;		/* value -> {m, card, expires} */
static json_object *subs;		/* "m:id" -> subscription */
static long long next_profile_id = 500001;
static long long next_payment_id = 700001;
static long long next_address_id = 800001;
static long long next_sub_id = 9100001;

/* Drop all profiles, nonces and subscriptions */
void
cim_reset(void)
{
	json_object_put(profiles);
	json_object_put(nonces);
	json_object_put(subs);
	profiles = json_object_new_object();
	nonces = json_object_new_object();
	subs = json_object_new_object();
}

/* A customer profile of this merchant by id, or NULL */
static json_object *
profile_get(int m, const char *id)
{
	char		key[64];

	if (id == NULL)
		return NULL;
	snprintf(key, sizeof(key), "%d:%s", m, id);
	return jget(profiles, key);
}

/* Find a payment profile inside a customer profile */
static json_object *
payment_profile_get(json_object *p, const char *ppid)
{
	json_object *arr = jget(p, "pp");
	size_t		n = arr ? json_object_array_length(arr) : 0;

	for (size_t i = 0; ppid && i < n; i++)
	{
		json_object *it = json_object_array_get_idx(arr, i);

		if (strcmp(jstr(it, "customerPaymentProfileId"), ppid) == 0)
			return it;
	}
	return NULL;
}

/* Fill CardInfo from a stored payment profile */
static void
card_from_stored(json_object *pp, CardInfo *ci)
{
	memset(ci, 0, sizeof(*ci));
	strlcpy0(ci->number, jstr(pp, "_number"), sizeof(ci->number));
	strlcpy0(ci->expiry, jstr(pp, "_expiry"), sizeof(ci->expiry));
	ci->echeck = jbool(jstr(pp, "_echeck"));
	strlcpy0(ci->routing, jstr(pp, "_routing"), sizeof(ci->routing));
	strlcpy0(ci->account, jstr(pp, "_account"), sizeof(ci->account));
	ci->bill_to = jget(pp, "billTo");
}

/* Resolve profile + payment profile ids to the stored payment */
int
cim_resolve_profile(int m, const char *cust_id, const char *pay_id,
					CardInfo *ci, char *err_code)
{
	json_object *p = profile_get(m, cust_id);
	json_object *pp = p ? payment_profile_get(p, pay_id) : NULL;

	if (pp == NULL)
	{
		strcpy(err_code, "E00040");
		return 0;
	}
	card_from_stored(pp, ci);
	return 1;
}

/*
 * The Account Updater (control API): the card inside a stored payment
 * profile replaced by the issuer's new number and expiry ("YYYY-MM"), the
 * profile's ids unchanged.  False when there is no such payment profile.
 */
bool
cim_update_card(int m, const char *cust_id, const char *pay_id,
				const char *number, const char *expiry)
{
	json_object *p = profile_get(m, cust_id);
	json_object *pp = p ? payment_profile_get(p, pay_id) : NULL;

	if (pp == NULL || number == NULL || expiry == NULL || jbool(jstr(pp, "_echeck")))
		return false;
	jadd_str(pp, "_number", number);
	jadd_str(pp, "_expiry", expiry);
	return true;
}

/* Issue an Accept.js-style nonce for a card (control API) */
json_object *
cim_issue_nonce(int m, json_object *card)
{
	json_object *n = json_object_new_object();
	json_object *out = json_object_new_object();
	char		val[81];

	random_alnum(val, 80);
	jadd_str(n, "cardNumber", jstr(card, "cardNumber"));
	jadd_str(n, "expirationDate", jstr(card, "expirationDate"));
	jadd_str(n, "cardCode", jstr(card, "cardCode"));
	jadd(n, "m", json_object_new_int(m));
	jadd(n, "expires", json_object_new_int64(sim_now_ms() + sim.cfg.nonce_ttl * 1000LL));
	jadd(nonces, val, n);
	jadd_str(out, "dataDescriptor", "COMMON.ACCEPT.INAPP.PAYMENT");
	jadd_str(out, "dataValue", val);
	return out;
}

/* Use a nonce once; false when unknown, used, expired or foreign */
int
cim_consume_nonce(int m, const char *descriptor, const char *value, CardInfo *ci)
{
	json_object *n = value ? jget(nonces, value) : NULL;
	int			ok;

	(void) descriptor;
	if (n == NULL)
		return 0;
	ok = json_object_get_int(jget(n, "m")) == m &&
		json_object_get_int64(jget(n, "expires")) > sim_now_ms();
	if (ok)
	{
		memset(ci, 0, sizeof(*ci));
		strlcpy0(ci->number, jstr(n, "cardNumber"), sizeof(ci->number));
		strlcpy0(ci->expiry, jstr(n, "expirationDate"), sizeof(ci->expiry));
		strlcpy0(ci->code, jstr(n, "cardCode"), sizeof(ci->code));
	}
	json_object_object_del(nonces, value);
	return ok;
}

/* Payment profile from a request's customerPaymentProfileType; NULL + err */
static json_object *
make_payment_profile(int m, json_object *src, const char **err, json_object *p)
{
	json_object *pay = jget(src, "payment");
	json_object *pp = json_object_new_object();
	char		id[32];
	CardInfo	ci;

	memset(&ci, 0, sizeof(ci));
	*err = NULL;
	if (jget(pay, "creditCard"))
	{
		strlcpy0(ci.number, jpath(pay, "creditCard.cardNumber") ?
				 jstr(jpath(pay, "creditCard.cardNumber"), NULL) : "", sizeof(ci.number));
		strlcpy0(ci.expiry, jstr(jget(pay, "creditCard"), "expirationDate"), sizeof(ci.expiry));
	}
	else if (jget(pay, "opaqueData"))
	{
		json_object *od = jget(pay, "opaqueData");

		if (!cim_consume_nonce(m, jstr(od, "dataDescriptor"), jstr(od, "dataValue"), &ci))
		{
			*err = "E00114";
			json_object_put(pp);
			return NULL;
		}
	}
	else if (jget(pay, "bankAccount"))
	{
		ci.echeck = true;
		strlcpy0(ci.routing, jstr(jget(pay, "bankAccount"), "routingNumber"), sizeof(ci.routing));
		strlcpy0(ci.account, jstr(jget(pay, "bankAccount"), "accountNumber"), sizeof(ci.account));
	}
	else
	{
		*err = "E00029";		/* Payment information is required. */
		json_object_put(pp);
		return NULL;
	}
	if (!ci.echeck && (!card_luhn_ok(ci.number) || card_expiry_check(ci.expiry, sim_now_ms())))
	{
		*err = "E00027";
		json_object_put(pp);
		return NULL;
	}
	/* duplicate payment profile on the same customer profile */
	if (p != NULL)
	{
		json_object *arr = jget(p, "pp");

		for (size_t i = 0; i < json_object_array_length(arr); i++)
		{
			json_object *it = json_object_array_get_idx(arr, i);

			if (strcmp(jstr(it, "_number") ?: "", ci.number) == 0 &&
				strcmp(jstr(it, "_account") ?: "", ci.account) == 0)
			{
				*err = "E00039";
				json_object_put(pp);
				return json_object_get(it);
			}
		}
	}
	snprintf(id, sizeof(id), "%lld", next_payment_id++);
	jadd_str(pp, "customerPaymentProfileId", id);
	jadd_str(pp, "_number", ci.number);
	jadd_str(pp, "_expiry", ci.expiry);
	jadd_str(pp, "_echeck", ci.echeck ? "true" : "false");
	jadd_str(pp, "_routing", ci.routing);
	jadd_str(pp, "_account", ci.account);
	if (jstr(src, "customerType"))
		jadd_str(pp, "customerType", jstr(src, "customerType"));
	if (jget(src, "billTo"))
		jadd(pp, "billTo", json_object_get(jget(src, "billTo")));
	if (jbool(jstr(src, "defaultPaymentProfile")))
		jadd(pp, "defaultPaymentProfile", json_object_new_boolean(1));
	return pp;
}

/*
 * validationDirectResponse string for testMode/liveMode: approved, or (a
 * liveMode validation of a card billed to the sandbox's decline zip 46282)
 * declined with reason 2.  Field 59 is the network transaction id of the
 * validation (liveMode; testMode sends nothing to the processor).
 */
static void
direct_response(json_object *pp, const char *email, bool declined, const char *ntid,
				char *out, size_t len)
{
	const char *num = jstr(pp, "_number");
	bool		echeck = jbool(jstr(pp, "_echeck"));
	char		auth[8];
	size_t		n = strlen(num);

	random_alnum(auth, 6);
	snprintf(out, len,
			 "%s,1,%s,%s,%s,Y,0,none,Test transaction for ValidateCustomerPaymentProfile.,0.00,%s,auth_only,none,%s,%s,,%s,%s,%s,%s,%s,,,%s,,,,,,,,,0.00,0.00,0.00,FALSE,none,,P,2,,,,,,,,,,,XXXX%s,%s,,,,,,,%s,,,,,,,,,,",
			 declined ? "2" : "1", declined ? "2" : "1",
			 declined ? "This transaction has been declined." : "This transaction has been approved.",
			 declined ? "" : auth, echeck ? "ECHECK" : "CC",
			 jstr(jget(pp, "billTo"), "firstName") ?: "",
			 jstr(jget(pp, "billTo"), "lastName") ?: "",
			 jstr(jget(pp, "billTo"), "address") ?: "",
			 jstr(jget(pp, "billTo"), "city") ?: "",
			 jstr(jget(pp, "billTo"), "state") ?: "",
			 jstr(jget(pp, "billTo"), "zip") ?: "",
			 jstr(jget(pp, "billTo"), "country") ?: "",
			 email ? email : "",
			 n > 4 ? num + n - 4 : num, echeck ? "eCheck" : card_brand(num), ntid);
}

/*
 * Validate a new payment profile as validationMode asks: none and testMode
 * (the card's form, checked already) store it; liveMode authorizes $0.00
 * at the "processor": the sandbox's decline zip 46282 declines it, and an
 * approval gives the payment profile its originalNetworkTransId.  Returns
 * false for a decline; *dr gets the direct response ("" for none).
 */
static bool
validate_new_profile(json_object *pp, const char *mode, const char *email, char *dr, size_t len)
{
	bool		live = mode && strcmp(mode, "liveMode") == 0;
	bool		declined = live && strcmp(jstr(jget(pp, "billTo"), "zip") ?: "", "46282") == 0;
	char		ntid[24] = "";

	dr[0] = '\0';
	if (mode == NULL || strcmp(mode, "none") == 0)
		return true;
	if (live && !declined)
	{
		random_alnum(ntid, 23);
		jadd_str(pp, "originalNetworkTransId", ntid);
		jadd_str(pp, "originalAuthAmount", "0.00");
	}
	direct_response(pp, email, declined, ntid, dr, len);
	return !declined;
}

/* Masked payment profile for getCustomerProfile replies */
static json_object *
masked_pp(json_object *pp)
{
	json_object *o = json_object_new_object();
	json_object *pay = json_object_new_object();
	json_object *c = json_object_new_object();
	const char *num = jstr(pp, "_number");
	char		buf[32];

	jadd_str(o, "customerPaymentProfileId", jstr(pp, "customerPaymentProfileId"));
	if (jbool(jstr(pp, "_echeck")))
	{
		mask_account(jstr(pp, "_account"), false, buf, sizeof(buf));
		jadd_str(c, "accountNumber", buf);
		jadd_str(c, "routingNumber", "XXXX");
		jadd(pay, "bankAccount", c);
	}
	else
	{
		mask_account(num, false, buf, sizeof(buf));
		jadd_str(c, "cardNumber", buf);
		jadd_str(c, "expirationDate", "XXXX");
		jadd_str(c, "cardType", card_brand(num));
		snprintf(buf, sizeof(buf), "%.6s", num);
		jadd_str(c, "issuerNumber", buf);
		jadd(pay, "creditCard", c);
	}
	jadd(o, "payment", pay);
	if (jstr(pp, "originalNetworkTransId"))
	{
		jadd_str(o, "originalNetworkTransId", jstr(pp, "originalNetworkTransId"));
		jadd(o, "originalAuthAmount", json_object_new_double_s(0, jstr(pp, "originalAuthAmount") ?: "0.00"));
	}
	if (jstr(pp, "customerType"))
		jadd_str(o, "customerType", jstr(pp, "customerType"));
	if (jget(pp, "billTo"))
		jadd(o, "billTo", json_object_get(jget(pp, "billTo")));
	if (jget(pp, "defaultPaymentProfile"))
		jadd(o, "defaultPaymentProfile", json_object_new_boolean(1));
	return o;
}

/* Emit a customer webhook with the thin payload */
static void
emit_profile_event(int m, const char *type, const char *id, const char *entity,
				   json_object *extra)
{
	json_object *pl = json_object_new_object();

	jadd_str(pl, "entityName", entity);
	jadd_str(pl, "id", id);
	if (extra)
	{
		json_object_object_foreach(extra, k, v)
			jadd(pl, k, json_object_get(v));
	}
	webhook_emit(m, type, pl);
}

/* createCustomerProfileRequest */
static json_object *
create_profile(int m, json_object *req)
{
	json_object *prof = jget(req, "profile");
	const char *mode = jstr(req, "validationMode");
	json_object *reply = json_object_new_object();
	json_object *p = json_object_new_object();
	json_object *ids = json_object_new_array();
	json_object *vlist = json_object_new_array();
	json_object *ppsrc = jget(prof, "paymentProfiles");
	json_object *arr = json_object_new_array();
	char		id[32],
				key[64];
	int			n = 0;
	const char *mcid = jstr(prof, "merchantCustomerId");
	const char *email = jstr(prof, "email");

	if (mcid == NULL && email == NULL && jstr(prof, "description") == NULL)
	{
		json_object_put(p);
		json_object_put(ids);
		json_object_put(vlist);
		json_object_put(arr);
		api_finish(reply, req, false, "E00041", NULL);
		return reply;
	}
	/* duplicate profile: same merchantCustomerId/email/description */
	json_object_object_foreach(profiles, pk, pv)
	{
		if (atoi(pk) == m &&
			strcmp(jstr(pv, "merchantCustomerId") ?: "", mcid ?: "") == 0 &&
			strcmp(jstr(pv, "email") ?: "", email ?: "") == 0 &&
			strcmp(jstr(pv, "description") ?: "", jstr(prof, "description") ?: "") == 0)
		{
			char		text[128];

			snprintf(text, sizeof(text), "A duplicate record with ID %s already exists.",
					 jstr(pv, "customerProfileId"));
			json_object_put(p);
			json_object_put(ids);
			json_object_put(vlist);
			json_object_put(arr);
			api_finish(reply, req, false, "E00039", text);
			return reply;
		}
	}
	snprintf(id, sizeof(id), "%lld", next_profile_id++);
	jadd_str(p, "customerProfileId", id);
	if (mcid)
		jadd_str(p, "merchantCustomerId", mcid);
	if (jstr(prof, "description"))
		jadd_str(p, "description", jstr(prof, "description"));
	if (email)
		jadd_str(p, "email", email);
	jadd_str(p, "profileType", jstr(prof, "profileType") ?: "regular");
	jitem(ppsrc, 0, &n);
	for (int i = 0; i < n; i++)
	{
		const char *err;
		json_object *pp = make_payment_profile(m, jitem(ppsrc, i, &n), &err, NULL);

		if (pp == NULL || err)
		{
			json_object_put(pp);
			json_object_put(p);
			json_object_put(ids);
			json_object_put(vlist);
			json_object_put(arr);
			api_finish(reply, req, false, err ? err : "E00027", NULL);
			return reply;
		}
		{
			char		dr[1024];

			if (!validate_new_profile(pp, mode, email, dr, sizeof(dr)))
			{
				/* a declined validation: nothing is stored */
				json_object_array_add(vlist, json_object_new_string(dr));
				jadd(reply, "customerPaymentProfileIdList", json_object_new_array());
				jadd(reply, "customerShippingAddressIdList", json_object_new_array());
				jadd(reply, "validationDirectResponseList", vlist);
				json_object_put(pp);
				json_object_put(p);
				json_object_put(ids);
				json_object_put(arr);
				api_finish(reply, req, false, "E00027", "This transaction has been declined.");
				return reply;
			}
			if (dr[0])
				json_object_array_add(vlist, json_object_new_string(dr));
		}
		json_object_array_add(ids, json_object_new_string(jstr(pp, "customerPaymentProfileId")));
		json_object_array_add(arr, pp);
	}
	jadd(p, "pp", arr);
	{
		json_object *sl = jget(prof, "shipToList");
		json_object *sa = json_object_new_array();
		json_object *sids = json_object_new_array();

		jitem(sl, 0, &n);
		for (int i = 0; i < n; i++)
		{
			json_object *a = NULL;
			char		aid[32];

			if (json_object_deep_copy(jitem(sl, i, &n), &a, NULL) != 0)
				continue;
			snprintf(aid, sizeof(aid), "%lld", next_address_id++);
			jadd_str(a, "customerAddressId", aid);
			json_object_array_add(sa, a);
			json_object_array_add(sids, json_object_new_string(aid));
		}
		jadd(p, "ship", sa);
		snprintf(key, sizeof(key), "%d:%s", m, id);
		jadd(profiles, key, p);
		jadd_str(reply, "customerProfileId", id);
		jadd(reply, "customerPaymentProfileIdList", ids);
		jadd(reply, "customerShippingAddressIdList", sids);
		jadd(reply, "validationDirectResponseList", vlist);
	}
	api_finish(reply, req, true, "I00001", NULL);
	{
		json_object *ex = json_object_new_object();
		json_object *pps = json_object_new_array();

		for (size_t i = 0; i < json_object_array_length(arr); i++)
		{
			json_object *it = json_object_array_get_idx(arr, i);
			json_object *o = json_object_new_object();

			jadd_str(o, "id", jstr(it, "customerPaymentProfileId"));
			jadd_str(o, "customerType", jstr(it, "customerType") ?: "individual");
			json_object_array_add(pps, o);
		}
		jadd(ex, "paymentProfiles", pps);
		if (mcid)
			jadd_str(ex, "merchantCustomerId", mcid);
		if (jstr(prof, "description"))
			jadd_str(ex, "description", jstr(prof, "description"));
		emit_profile_event(m, "net.authorize.customer.created", id, "customerProfile", ex);
		json_object_put(ex);
	}
	return reply;
}

/* createCustomerPaymentProfileRequest */
static json_object *
create_payment_profile(int m, json_object *req)
{
	const char *pid = jstr(req, "customerProfileId");
	json_object *p = profile_get(m, pid);
	json_object *reply = json_object_new_object();
	const char *err;
	json_object *pp;
	const char *mode = jstr(req, "validationMode");

	if (p == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	pp = make_payment_profile(m, jget(req, "paymentProfile"), &err, p);
	if (err)
	{
		if (pp && strcmp(err, "E00039") == 0)
		{
			jadd_str(reply, "customerProfileId", pid);
			jadd_str(reply, "customerPaymentProfileId", jstr(pp, "customerPaymentProfileId"));
		}
		json_object_put(pp);
		api_finish(reply, req, false, err, NULL);
		return reply;
	}
	{
		char		dr[1024];

		if (!validate_new_profile(pp, mode, jstr(p, "email"), dr, sizeof(dr)))
		{
			jadd_str(reply, "validationDirectResponse", dr);
			json_object_put(pp);
			api_finish(reply, req, false, "E00027", "This transaction has been declined.");
			return reply;
		}
		json_object_array_add(jget(p, "pp"), pp);
		jadd_str(reply, "customerProfileId", pid);
		jadd_str(reply, "customerPaymentProfileId", jstr(pp, "customerPaymentProfileId"));
		if (dr[0])
			jadd_str(reply, "validationDirectResponse", dr);
	}
	api_finish(reply, req, true, "I00001", NULL);
	{
		json_object *ex = json_object_new_object();

		jadd(ex, "customerProfileId", json_object_new_int64(atoll(pid)));
		jadd_str(ex, "customerType", jstr(pp, "customerType") ?: "individual");
		emit_profile_event(m, "net.authorize.customer.paymentProfile.created",
						   jstr(pp, "customerPaymentProfileId"),
						   "customerPaymentProfile", ex);
		json_object_put(ex);
	}
	return reply;
}

/*
 * The payment profile a transaction's card becomes (the simulator keeps
 * only the last four digits of a transaction's card), with the
 * transaction's network id as its originalNetworkTransId.
 */
static json_object *
pp_from_txn(const Txn *t, char *ppid, size_t ppid_len)
{
	json_object *pp = json_object_new_object();
	char		num[24];

	snprintf(ppid, ppid_len, "%lld", next_payment_id++);
	snprintf(num, sizeof(num), "%s%s", t->account_type[0] == 'A' ? "37000000000" : "411111111111", t->last4);
	jadd_str(pp, "customerPaymentProfileId", ppid);
	jadd_str(pp, "_number", num);
	jadd_str(pp, "_expiry", "2099-12");
	jadd_str(pp, "_echeck", t->echeck ? "true" : "false");
	jadd_str(pp, "_routing", "");
	jadd_str(pp, "_account", t->echeck ? t->last4 : "");
	if (t->network_trans_id[0])
		jadd_str(pp, "originalNetworkTransId", t->network_trans_id);
	if (t->bill_to)
		jadd(pp, "billTo", json_object_get(t->bill_to));
	return pp;
}

/* createCustomerProfileFromTransactionRequest */
json_object *
cim_create_from_txn(int m, json_object *req)
{
	const char *tid = jstr(req, "transId");
	Txn		   *t = tid ? txn_get(m, atoll(tid)) : NULL;
	json_object *reply = json_object_new_object();

	json_object *existing = profile_get(m, jstr(req, "customerProfileId"));
	const char *mcid = jstr(jget(req, "customer"), "merchantCustomerId");

	if (t == NULL || t->last4[0] == '\0' ||
		(jstr(req, "customerProfileId") && existing == NULL))
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	/* a new profile for a merchantCustomerId that has one: a duplicate */
	if (existing == NULL && mcid != NULL)
	{
		json_object_object_foreach(profiles, pk, pv)
		{
			if (atoi(pk) == m && strcmp(jstr(pv, "merchantCustomerId") ?: "", mcid) == 0)
			{
				char		text[128];

				snprintf(text, sizeof(text), "A duplicate record with ID %s already exists.",
						 jstr(pv, "customerProfileId"));
				api_finish(reply, req, false, "E00039", text);
				return reply;
			}
		}
	}
	/* add the transaction's card to an existing profile */
	if (existing != NULL)
	{
		json_object *ids = json_object_new_array();
		char		ppid[32];

		json_object_array_add(jget(existing, "pp"), pp_from_txn(t, ppid, sizeof(ppid)));
		json_object_array_add(ids, json_object_new_string(ppid));
		jadd_str(reply, "customerProfileId", jstr(existing, "customerProfileId"));
		jadd(reply, "customerPaymentProfileIdList", ids);
		jadd(reply, "customerShippingAddressIdList", json_object_new_array());
		jadd(reply, "validationDirectResponseList", json_object_new_array());
		api_finish(reply, req, true, "I00001", NULL);
		return reply;
	}
	/* the simulator keeps only the last four digits of a transaction's card */
	{
		json_object *p = json_object_new_object();
		json_object *arr = json_object_new_array();
		json_object *pp;
		char		id[32],
					ppid[32],
					key[64];
		json_object *cust = jget(req, "customer");

		snprintf(id, sizeof(id), "%lld", next_profile_id++);
		pp = pp_from_txn(t, ppid, sizeof(ppid));
		jadd_str(p, "customerProfileId", id);
		if (jstr(cust, "merchantCustomerId"))
			jadd_str(p, "merchantCustomerId", jstr(cust, "merchantCustomerId"));
		if (jstr(cust, "description"))
			jadd_str(p, "description", jstr(cust, "description"));
		if (jstr(cust, "email") || t->customer_email[0])
			jadd_str(p, "email", jstr(cust, "email") ?: t->customer_email);
		jadd_str(p, "profileType", jstr(req, "profileType") ?: "regular");
		json_object_array_add(arr, pp);
		jadd(p, "pp", arr);
		jadd(p, "ship", json_object_new_array());
		snprintf(key, sizeof(key), "%d:%s", m, id);
		jadd(profiles, key, p);
		jadd_str(reply, "customerProfileId", id);
		{
			json_object *ids = json_object_new_array();

			json_object_array_add(ids, json_object_new_string(ppid));
			jadd(reply, "customerPaymentProfileIdList", ids);
		}
		jadd(reply, "customerShippingAddressIdList", json_object_new_array());
		jadd(reply, "validationDirectResponseList", json_object_new_array());
		api_finish(reply, req, true, "I00001", NULL);
		emit_profile_event(m, "net.authorize.customer.created", id, "customerProfile", NULL);
	}
	return reply;
}

/* getCustomerProfileRequest (by id, merchantCustomerId or email) */
static json_object *
get_profile(int m, json_object *req)
{
	json_object *p = profile_get(m, jstr(req, "customerProfileId"));
	json_object *reply = json_object_new_object();
	json_object *o;

	if (p == NULL && (jstr(req, "merchantCustomerId") || jstr(req, "email")))
	{
		json_object_object_foreach(profiles, pk, pv)
		{
			if (atoi(pk) != m)
				continue;
			if ((jstr(req, "merchantCustomerId") &&
				 strcmp(jstr(pv, "merchantCustomerId") ?: "", jstr(req, "merchantCustomerId")) == 0) ||
				(jstr(req, "email") && strcmp(jstr(pv, "email") ?: "", jstr(req, "email")) == 0))
			{
				p = pv;
				break;
			}
		}
	}
	if (p == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	o = json_object_new_object();
	{
		json_object *arr = json_object_new_array();
		json_object *src = jget(p, "pp");

		for (size_t i = 0; i < json_object_array_length(src); i++)
			json_object_array_add(arr, masked_pp(json_object_array_get_idx(src, i)));
		jadd(o, "paymentProfiles", arr);
	}
	if (json_object_array_length(jget(p, "ship")) > 0)
		jadd(o, "shipToList", json_object_get(jget(p, "ship")));
	jadd_str(o, "profileType", jstr(p, "profileType"));
	jadd_str(o, "customerProfileId", jstr(p, "customerProfileId"));
	if (jstr(p, "merchantCustomerId"))
		jadd_str(o, "merchantCustomerId", jstr(p, "merchantCustomerId"));
	if (jstr(p, "description"))
		jadd_str(o, "description", jstr(p, "description"));
	if (jstr(p, "email"))
		jadd_str(o, "email", jstr(p, "email"));
	jadd(reply, "profile", o);
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* deleteCustomerProfileRequest / deleteCustomerPaymentProfileRequest */
static json_object *
delete_profile(int m, json_object *req, bool payment_only)
{
	const char *pid = jstr(req, "customerProfileId");
	json_object *p = profile_get(m, pid);
	json_object *reply = json_object_new_object();
	char		key[64];

	if (p == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	if (payment_only)
	{
		const char *ppid = jstr(req, "customerPaymentProfileId");
		json_object *arr = jget(p, "pp");

		for (size_t i = 0; ppid && i < json_object_array_length(arr); i++)
			if (strcmp(jstr(json_object_array_get_idx(arr, i),
							"customerPaymentProfileId"), ppid) == 0)
			{
				json_object_array_del_idx(arr, i, 1);
				api_finish(reply, req, true, "I00001", NULL);
				emit_profile_event(m, "net.authorize.customer.paymentProfile.deleted",
								   ppid, "customerPaymentProfile", NULL);
				return reply;
			}
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	snprintf(key, sizeof(key), "%d:%s", m, pid);
	emit_profile_event(m, "net.authorize.customer.deleted", pid, "customerProfile", NULL);
	json_object_object_del(profiles, key);
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* getCustomerPaymentProfileRequest */
static json_object *
get_payment_profile(int m, json_object *req)
{
	json_object *p = profile_get(m, jstr(req, "customerProfileId"));
	json_object *pp = p ? payment_profile_get(p, jstr(req, "customerPaymentProfileId")) : NULL;
	json_object *reply = json_object_new_object();

	if (pp == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	{
		json_object *o = masked_pp(pp);

		jadd_str(o, "customerProfileId", jstr(p, "customerProfileId"));
		jadd(reply, "paymentProfile", o);
	}
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* validateCustomerPaymentProfileRequest */
static json_object *
validate_payment_profile(int m, json_object *req)
{
	json_object *p = profile_get(m, jstr(req, "customerProfileId"));
	json_object *pp = p ? payment_profile_get(p, jstr(req, "customerPaymentProfileId")) : NULL;
	json_object *reply = json_object_new_object();
	char		dr[1024];

	if (pp == NULL)
	{
		api_finish(reply, req, false, "E00040", NULL);
		return reply;
	}
	{
		char		ntid[24];

		random_alnum(ntid, 23);
		direct_response(pp, jstr(p, "email"), false, ntid, dr, sizeof(dr));
	}
	jadd_str(reply, "directResponse", dr);
	api_finish(reply, req, true, "I00001", NULL);
	return reply;
}

/* CIM dispatcher; NULL when the method is not a CIM call */
json_object *
handle_cim(const char *method, int m, json_object *req)
{
	if (strcmp(method, "createCustomerProfileRequest") == 0)
		return create_profile(m, req);
	if (strcmp(method, "createCustomerPaymentProfileRequest") == 0)
		return create_payment_profile(m, req);
	if (strcmp(method, "createCustomerProfileFromTransactionRequest") == 0)
		return cim_create_from_txn(m, req);
	if (strcmp(method, "getCustomerProfileRequest") == 0)
		return get_profile(m, req);
	if (strcmp(method, "getCustomerPaymentProfileRequest") == 0)
		return get_payment_profile(m, req);
	if (strcmp(method, "deleteCustomerProfileRequest") == 0)
		return delete_profile(m, req, false);
	if (strcmp(method, "deleteCustomerPaymentProfileRequest") == 0)
		return delete_profile(m, req, true);
	if (strcmp(method, "validateCustomerPaymentProfileRequest") == 0)
		return validate_payment_profile(m, req);
	return NULL;
}

/* Minimal ARB: create, status, update, cancel (no scheduled charges) */
json_object *
handle_arb(const char *method, int m, json_object *req)
{
	json_object *reply = json_object_new_object();
	char		key[64];
	const char *sid = jstr(req, "subscriptionId");
	json_object *s;

	snprintf(key, sizeof(key), "%d:%s", m, sid ? sid : "");
	s = sid ? jget(subs, key) : NULL;
	if (strcmp(method, "ARBCreateSubscriptionRequest") == 0)
	{
		json_object *sub = jget(req, "subscription");
		json_object *n = json_object_new_object();
		json_object *prof = json_object_new_object();
		char		id[32],
					pid[32],
					ppid[32];

		snprintf(id, sizeof(id), "%lld", next_sub_id++);
		snprintf(pid, sizeof(pid), "%lld", next_profile_id++);
		snprintf(ppid, sizeof(ppid), "%lld", next_payment_id++);
		jadd_str(n, "status", "active");
		jadd_str(n, "name", jstr(sub, "name"));
		jadd_str(n, "amount", jstr(sub, "amount"));
		snprintf(key, sizeof(key), "%d:%s", m, id);
		jadd(subs, key, n);
		jadd_str(reply, "subscriptionId", id);
		jadd_str(prof, "customerProfileId", pid);
		jadd_str(prof, "customerPaymentProfileId", ppid);
		{
			char		aid[32];

			snprintf(aid, sizeof(aid), "%lld", next_address_id++);
			jadd_str(prof, "customerAddressId", aid);
		}
		jadd(reply, "profile", prof);
		jadd(n, "profile", json_object_get(prof));
		api_finish(reply, req, true, "I00001", NULL);
		{
			json_object *ex = json_object_new_object();

			jadd_str(ex, "name", jstr(sub, "name"));
			jadd_str(ex, "status", "active");
			emit_profile_event(m, "net.authorize.customer.subscription.created", id,
							   "subscription", ex);
			json_object_put(ex);
		}
		return reply;
	}
	if (s == NULL && strcmp(method, "ARBGetSubscriptionListRequest") != 0)
	{
		api_finish(reply, req, false, "E00035", NULL);
		return reply;
	}
	if (strcmp(method, "ARBGetSubscriptionStatusRequest") == 0)
	{
		const char *st = jstr(s, "status");

		jadd_str(reply, "note", "Status with a capital 'S' is obsolete.");
		jadd_str(reply, "status", st);
		jadd(reply, "statusSpecified", json_object_new_boolean(1));
		jadd_str(reply, "Status", st);
		jadd(reply, "StatusSpecified", json_object_new_boolean(1));
		api_finish(reply, req, true, "I00001", NULL);
		return reply;
	}
	if (strcmp(method, "ARBCancelSubscriptionRequest") == 0)
	{
		if (strcmp(jstr(s, "status"), "canceled") == 0)
		{
			api_finish(reply, req, true, "I00002", NULL);
			return reply;
		}
		jadd_str(s, "status", "canceled");
		api_finish(reply, req, true, "I00001", NULL);
		emit_profile_event(m, "net.authorize.customer.subscription.cancelled", sid,
						   "subscription", NULL);
		return reply;
	}
	if (strcmp(method, "ARBUpdateSubscriptionRequest") == 0)
	{
		json_object *sub = jget(req, "subscription");

		if (jstr(sub, "amount"))
			jadd_str(s, "amount", jstr(sub, "amount"));
		if (jstr(sub, "name"))
			jadd_str(s, "name", jstr(sub, "name"));
		jadd(reply, "profile", json_object_get(jget(s, "profile")));
		api_finish(reply, req, true, "I00001", NULL);
		emit_profile_event(m, "net.authorize.customer.subscription.updated", sid,
						   "subscription", NULL);
		return reply;
	}
	api_finish(reply, req, false, "E00001", NULL);
	return reply;
}

/*
 * transactionRequest.profile.createProfile=true on an approved charge: store
 * the payment as a new customer profile and return the profileResponse.
 */
json_object *
cim_profile_from_charge(int m, const CardInfo *ci, json_object *tr, Txn *t)
{
	json_object *p = json_object_new_object();
	json_object *arr = json_object_new_array();
	json_object *pp = json_object_new_object();
	json_object *out = json_object_new_object();
	json_object *ids = json_object_new_array();
	json_object *cust = jget(tr, "customer");
	char		id[32],
				ppid[32],
				key[64];

	snprintf(id, sizeof(id), "%lld", next_profile_id++);
	snprintf(ppid, sizeof(ppid), "%lld", next_payment_id++);
	jadd_str(p, "customerProfileId", id);
	if (jstr(cust, "id"))
		jadd_str(p, "merchantCustomerId", jstr(cust, "id"));
	if (jstr(cust, "email"))
		jadd_str(p, "email", jstr(cust, "email"));
	jadd_str(p, "profileType", "regular");
	jadd_str(pp, "customerPaymentProfileId", ppid);
	jadd_str(pp, "_number", ci->number);
	jadd_str(pp, "_expiry", ci->expiry);
	jadd_str(pp, "_echeck", ci->echeck ? "true" : "false");
	jadd_str(pp, "_routing", ci->routing);
	jadd_str(pp, "_account", ci->account);
	if (jget(tr, "billTo"))
		jadd(pp, "billTo", json_object_get(jget(tr, "billTo")));
	json_object_array_add(arr, pp);
	jadd(p, "pp", arr);
	jadd(p, "ship", json_object_new_array());
	snprintf(key, sizeof(key), "%d:%s", m, id);
	jadd(profiles, key, p);
	strlcpy0(t->profile_id, id, sizeof(t->profile_id));
	strlcpy0(t->payment_profile_id, ppid, sizeof(t->payment_profile_id));
	jadd(out, "messages", api_messages(true, "I00001", NULL));
	jadd_str(out, "customerProfileId", id);
	json_object_array_add(ids, json_object_new_string(ppid));
	jadd(out, "customerPaymentProfileIdList", ids);
	jadd(out, "customerShippingAddressIdList", json_object_new_array());
	emit_profile_event(m, "net.authorize.customer.created", id, "customerProfile", NULL);
	return out;
}

/*
 * The stored profiles of a merchant login (or all) for the control API,
 * masked as getCustomerProfile shows them: tests read the gateway's side
 * of stored payment methods here.
 */
json_object *
cim_profiles_json(const char *login)
{
	json_object *out = json_object_new_array();
	int			m = login ? merchant_find(login) : -1;

	json_object_object_foreach(profiles, pk, pv)
	{
		json_object *o;
		json_object *arr = json_object_new_array();
		json_object *src = jget(pv, "pp");

		if (login && atoi(pk) != m)
			continue;
		o = json_object_new_object();
		jadd_str(o, "customerProfileId", jstr(pv, "customerProfileId"));
		if (jstr(pv, "merchantCustomerId"))
			jadd_str(o, "merchantCustomerId", jstr(pv, "merchantCustomerId"));
		if (jstr(pv, "email"))
			jadd_str(o, "email", jstr(pv, "email"));
		for (size_t i = 0; i < json_object_array_length(src); i++)
			json_object_array_add(arr, masked_pp(json_object_array_get_idx(src, i)));
		jadd(o, "paymentProfiles", arr);
		json_object_array_add(out, o);
	}
	return out;
}
