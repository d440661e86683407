/*-------------------------------------------------------------------------
 *
 * control.c
 *		The control endpoint (JSON over HTTP, loopback only) that tests use
 *		to reset state, settle, read the ledger, configure merchants,
 *		latency, faults and webhooks, move the clock and mint nonces.
 *		Every call is documented in README.md.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cards.h"
#include "fault.h"
#include "http.h"
#include "sim.h"

typedef struct CtlReq
{
	char	   *body;
	size_t		len;
} CtlReq;

/* Free a control request's buffer */
void
control_completed(void *cls, struct MHD_Connection *c, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	CtlReq	   *q = *con_cls;

	(void) cls;
	(void) c;
	(void) toe;
	if (q)
	{
		free(q->body);
		free(q);
	}
	*con_cls = NULL;
}

/* Send a JSON value (consumed) with a status */
static enum MHD_Result
send_json(struct MHD_Connection *c, unsigned int status, json_object *o)
{
	const char *s;
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (o == NULL)
	{
		o = json_object_new_object();
		jadd_str(o, "error", status == 404 ? "unknown control call" : "bad request");
	}
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
									   JSON_C_TO_STRING_NOSLASHESCAPE);
	r = MHD_create_response_from_buffer(strlen(s), (void *) s, MHD_RESPMEM_MUST_COPY);
	json_object_put(o);
	if (r == NULL)
		return MHD_NO;
	if (MHD_add_response_header(r, "Content-Type", "application/json") != MHD_YES)
	{
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Small {"ok":true,...} reply */
static json_object *
ok_obj(void)
{
	json_object *o = json_object_new_object();

	jadd(o, "ok", json_object_new_boolean(1));
	return o;
}

/* Route one control call (body may be NULL) */
static enum MHD_Result
route(struct MHD_Connection *c, const char *url, const char *method,
	  json_object *body)
{
	json_object *out = NULL;
	int			status = 200;
	bool		post = strcmp(method, "POST") == 0;

	if (strcmp(url, "/health") == 0)
	{
		out = ok_obj();
		pthread_mutex_lock(&sim.lock);
		jadd(out, "requests", json_object_new_int64((int64_t) sim.requests));
		jadd(out, "peakSuspended", json_object_new_int(http_peak_suspended()));
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/reset") == 0 && post)
	{
		pthread_mutex_lock(&sim.lock);
		state_reset(jbool(jstr(body, "ledger")));
		pthread_mutex_unlock(&sim.lock);
		fault_reset();
		out = ok_obj();
	}
	else if (strcmp(url, "/settle") == 0 && post)
	{
		out = ok_obj();
		pthread_mutex_lock(&sim.lock);
		jadd(out, "batches", settle_now());
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/ledger") == 0)
	{
		const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "merchant");

		pthread_mutex_lock(&sim.lock);
		out = ledger_json(m);
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/profiles") == 0)
	{
		const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "merchant");

		pthread_mutex_lock(&sim.lock);
		out = json_object_new_object();
		jadd(out, "profiles", cim_profiles_json(m));
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/merchants") == 0 && post)
	{
		const char *n = jstr(body, "name"),
				   *k = jstr(body, "transactionKey");

		if (n == NULL || k == NULL || strlen(n) > 25 || strlen(k) > 16)
			status = 400;
		else
		{
			int			m;

			pthread_mutex_lock(&sim.lock);
			m = merchant_add(n, k);
			if (m >= 0 && jstr(body, "signatureKey"))
				strlcpy0(sim.merchants[m].signature_key, jstr(body, "signatureKey"),
						 sizeof(sim.merchants[m].signature_key));
			/* account settings: active, reporting enabled, live unless said */
			if (m >= 0)
			{
				sim.merchants[m].inactive = jget(body, "active") != NULL &&
					!json_object_get_boolean(jget(body, "active"));
				sim.merchants[m].no_reporting = jget(body, "transactionDetailsApi") != NULL &&
					!json_object_get_boolean(jget(body, "transactionDetailsApi"));
				sim.merchants[m].test_mode = jget(body, "testMode") != NULL &&
					json_object_get_boolean(jget(body, "testMode"));
			}
			pthread_mutex_unlock(&sim.lock);
			out = m >= 0 ? ok_obj() : NULL;
			if (m < 0)
				status = 400;
		}
	}
	else if (strcmp(url, "/merchants") == 0)
	{
		pthread_mutex_lock(&sim.lock);
		out = merchants_json();
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/latency") == 0 || strcmp(url, "/faults") == 0)
		out = fault_control(method, url, body, &status);
	else if (strcmp(url, "/webhooks") == 0 || strncmp(url, "/notifications", 14) == 0)
	{
		pthread_mutex_lock(&sim.lock);
		out = webhook_control(method, url, body, &status);
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/clock") == 0 && post)
	{
		pthread_mutex_lock(&sim.lock);
		sim.clock_offset_ms += (long long) json_object_get_int64(jget(body, "advanceSeconds")) * 1000;
		out = ok_obj();
		jadd(out, "offsetSeconds", json_object_new_int64(sim.clock_offset_ms / 1000));
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/config") == 0 && post)
	{
		pthread_mutex_lock(&sim.lock);
		if (jget(body, "bom"))
			sim.cfg.bom = json_object_get_boolean(jget(body, "bom"));
		if (jget(body, "refundWindowDays"))
			sim.cfg.refund_window_days = json_object_get_int(jget(body, "refundWindowDays"));
		if (jget(body, "authExpiryDays"))
			sim.cfg.auth_expiry_days = json_object_get_int(jget(body, "authExpiryDays"));
		if (jget(body, "nonceTtlSeconds"))
			sim.cfg.nonce_ttl = json_object_get_int(jget(body, "nonceTtlSeconds"));
		if (jget(body, "maskAllDigits"))
			sim.cfg.mask_all_digits = json_object_get_boolean(jget(body, "maskAllDigits"));
		out = ok_obj();
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/nonces") == 0 && post)
	{
		const char *login = jstr(body, "merchant");
		int			m;

		pthread_mutex_lock(&sim.lock);
		m = login ? merchant_find(login) : 0;
		if (m < 0 || jget(body, "creditCard") == NULL)
			status = 400;
		else
			out = cim_issue_nonce(m, jget(body, "creditCard"));
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/account-updater") == 0 && post)
	{
		const char *login = jstr(body, "merchant");
		int			m;

		pthread_mutex_lock(&sim.lock);
		m = login ? merchant_find(login) : 0;
		if (m >= 0 && cim_update_card(m, jstr(body, "customerProfileId"), jstr(body, "paymentProfileId"),
									  jstr(body, "cardNumber"), jstr(body, "expirationDate")))
			out = ok_obj();
		else
			status = 404;
		pthread_mutex_unlock(&sim.lock);
	}
	else if (strcmp(url, "/sign") == 0 && post)
	{
		const char *k = jstr(body, "signatureKey"),
				   *b = jstr(body, "body");
		char		sig[160],
					hdr[200];

		if (k == NULL || b == NULL)
			status = 400;
		else
		{
			webhook_sign(k, b, strlen(b), sig);
			snprintf(hdr, sizeof(hdr), "sha512=%s", sig);
			out = json_object_new_object();
			jadd_str(out, "X-ANET-Signature", hdr);
		}
	}
	else if (strcmp(url, "/triggers") == 0)
	{
		out = json_object_new_array();
		triggers_json_add(out);
	}
	else
		status = 404;
	if (out == NULL && status == 200)
		status = 400;
	return send_json(c, (unsigned) status, out);
}

/* MHD access handler for the control daemon */
enum MHD_Result
control_handler(void *cls, struct MHD_Connection *c, const char *url,
				const char *method, const char *version, const char *upload,
				size_t *upload_size, void **con_cls)
{
	CtlReq	   *q = *con_cls;
	json_object *body = NULL;
	enum MHD_Result ret;

	(void) cls;
	(void) version;
	if (q == NULL)
	{
		q = calloc(1, sizeof(CtlReq));
		if (q == NULL)
			return MHD_NO;
		*con_cls = q;
		return MHD_YES;
	}
	if (*upload_size > 0)
	{
		char	   *nb = realloc(q->body, q->len + *upload_size + 1);

		if (nb == NULL || q->len + *upload_size > 1024 * 1024)
			return MHD_NO;
		q->body = nb;
		memcpy(q->body + q->len, upload, *upload_size);
		q->len += *upload_size;
		q->body[q->len] = '\0';
		*upload_size = 0;
		return MHD_YES;
	}
	if (q->len > 0)
	{
		body = json_tokener_parse(q->body);
		if (body == NULL)
			return send_json(c, 400, NULL);
	}
	ret = route(c, url, method, body);
	json_object_put(body);
	return ret;
}
