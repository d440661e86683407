/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		Webhook endpoints registered over the control API, notifications
 *		in the real body shape signed with X-ANET-Signature (HMAC-SHA512
 *		of the raw body, Signature Key used as text), delivered by a
 *		libcurl thread with retries, optional duplicates and out-of-order
 *		delivery.  Every notification is kept so tests can list them.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim.h"

typedef struct Hook
{
	int			merchant;
	char		id[40];
	char	   *url;
	json_object *events;		/* array of event types ("*" = all) */
	bool		active;
	int			retries;		/* extra attempts after a failure */
	int			retry_delay_ms;
	int			duplicates;		/* deliver each notification this many extra times */
	int			jitter_ms;		/* random delay 0..jitter: out-of-order delivery */
} Hook;

typedef struct Delivery
{
	struct Delivery *next;
	long long	due_ms;
	int			attempt;
	int			hook;
	int			note;			/* index in notes */
} Delivery;

static Hook hooks[64];
static int	nhooks;
static json_object *notes;		/* array of notification records */
static Delivery *queue;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static pthread_t wthread;
static volatile bool stopping;

/* Signature header value: upper-case hex HMAC-SHA512 of the body */
void
webhook_sign(const char *key, const char *body, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	out[0] = '\0';
	if (HMAC(EVP_sha512(), key, (int) strlen(key), (const unsigned char *) body,
			 len, md, &mdlen) == NULL)
		return;
	for (unsigned int i = 0; i < mdlen; i++)
		sprintf(out + 2 * i, "%02X", md[i]);
}

/* Random GUID-like id */
static void
guid(char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			o = 0;

	for (int i = 0; i < 32; i++)
	{
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[o++] = '-';
		out[o++] = hex[sim_rand() % 16];
	}
	out[o] = '\0';
}

/* Queue a delivery, ordered by due time */
static void
enqueue(int hook, int note, int attempt, long long due)
{
	Delivery   *d = calloc(1, sizeof(Delivery));
	Delivery  **pp;

	if (d == NULL)
		return;
	d->hook = hook;
	d->note = note;
	d->attempt = attempt;
	d->due_ms = due;
	pthread_mutex_lock(&qlock);
	for (pp = &queue; *pp && (*pp)->due_ms <= due; pp = &(*pp)->next)
		;
	d->next = *pp;
	*pp = d;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
}

/* Does a hook subscribe to an event type? */
static bool
hook_wants(Hook *h, const char *type)
{
	size_t		n = json_object_array_length(h->events);

	for (size_t i = 0; i < n; i++)
	{
		const char *e = json_object_get_string(json_object_array_get_idx(h->events, i));

		if (strcmp(e, "*") == 0 || strcmp(e, type) == 0)
			return true;
	}
	return false;
}

/* Create notifications for an event (lock held); payload is consumed */
void
webhook_emit(int m, const char *event_type, json_object *payload)
{
	for (int i = 0; i < nhooks; i++)
	{
		Hook	   *h = &hooks[i];
		json_object *body,
				   *rec;
		char		nid[40],
					date[64],
					sig[160];
		const char *raw;
		long long	now = sim_now_ms();
		int			idx;

		if (h->merchant != m || !h->active || !hook_wants(h, event_type))
			continue;
		guid(nid);
		format_time_utc(now, date, sizeof(date), true);
		body = json_object_new_object();
		jadd_str(body, "notificationId", nid);
		jadd_str(body, "eventType", event_type);
		jadd_str(body, "eventDate", date);
		jadd_str(body, "webhookId", h->id);
		jadd(body, "payload", json_object_get(payload));
		raw = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
											 JSON_C_TO_STRING_NOSLASHESCAPE);
		webhook_sign(sim.merchants[m].signature_key, raw, strlen(raw), sig);
		rec = json_object_new_object();
		jadd_str(rec, "notificationId", nid);
		jadd_str(rec, "webhookId", h->id);
		jadd_str(rec, "merchant", sim.merchants[m].login);
		jadd_str(rec, "eventType", event_type);
		jadd_str(rec, "eventDate", date);
		jadd_str(rec, "url", h->url);
		jadd_str(rec, "body", raw);
		{
			char		hdr[200];

			snprintf(hdr, sizeof(hdr), "sha512=%s", sig);
			jadd_str(rec, "signature", hdr);
		}
		jadd_str(rec, "deliveryStatus", "Pending");
		jadd(rec, "attempts", json_object_new_int(0));
		jadd(rec, "deliveries", json_object_new_int(0));
		json_object_put(body);
		idx = (int) json_object_array_length(notes);
		json_object_array_add(notes, rec);
		for (int k = 0; k <= h->duplicates; k++)
			enqueue(i, idx, 1, now - sim.clock_offset_ms +
					(h->jitter_ms > 0 ? (long long) (sim_rand() % (unsigned) h->jitter_ms) : 0));
	}
	json_object_put(payload);
}

/* Thin payment payload, as in net.authorize.payment.* notifications */
void
webhook_emit_txn(Txn *t, const char *event_type)
{
	json_object *p;
	char		buf[32];

	if (nhooks == 0)
		return;
	p = json_object_new_object();
	jadd(p, "responseCode", json_object_new_int(t->response_code));
	jadd_str(p, "authCode", t->auth_code);
	jadd_str(p, "avsResponse", t->avs[0] ? t->avs : "P");
	jadd(p, "authAmount", json_amount(strcmp(event_type, "net.authorize.payment.refund.created") == 0 ?
									   t->settle_amount :
									   t->settle_amount ? t->settle_amount : t->auth_amount ? t->auth_amount : t->requested));
	if (t->invoice[0])
		jadd_str(p, "invoiceNumber", t->invoice);
	if (t->ref_id[0])
		jadd_str(p, "merchantReferenceId", t->ref_id);
	if (strstr(event_type, ".fraud.") != NULL)
	{
		json_object *fl = json_object_new_array();
		json_object *f = json_object_new_object();

		jadd_str(f, "fraudFilter", "AmountFilter");
		jadd_str(f, "fraudAction", "hold");
		json_object_array_add(fl, f);
		jadd(p, "fraudList", fl);
	}
	jadd_str(p, "entityName", "transaction");
	snprintf(buf, sizeof(buf), "%lld", t->id);
	jadd_str(p, "id", buf);
	webhook_emit(t->merchant, event_type, p);
}

/* Discard curl's response body */
static size_t
sink(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void) ptr;
	(void) ud;
	return size * nmemb;
}

/* POST one notification; returns the HTTP status or 0 on transport error */
static long
post(const char *url, const char *body, const char *sig, const char *nid)
{
	CURL	   *c = curl_easy_init();
	struct curl_slist *hdrs = NULL,
			   *tmp;
	char		h1[220],
				h2[100];
	long		status = 0;

	if (c == NULL)
		return 0;
	snprintf(h1, sizeof(h1), "X-ANET-Signature: %s", sig);
	snprintf(h2, sizeof(h2), "X-Request-Id: %s", nid);
	tmp = curl_slist_append(hdrs, "Content-Type: application/json");
	if (tmp)
		hdrs = tmp;
	tmp = curl_slist_append(hdrs, h1);
	if (tmp)
		hdrs = tmp;
	tmp = curl_slist_append(hdrs, h2);
	if (tmp)
		hdrs = tmp;
	if (curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink) == CURLE_OK &&
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L) == CURLE_OK &&
		curl_easy_perform(c) == CURLE_OK)
	{
		if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
			status = 0;
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return status;
}

/* Delivery thread: take due deliveries and POST them */
static void *
worker(void *arg)
{
	(void) arg;
	for (;;)
	{
		Delivery   *d;
		struct timespec ts;
		long long	now;
		char	   *url = NULL,
				   *body = NULL,
				   *sig = NULL,
				   *nid = NULL;
		long		status;
		int			retries = 0,
					delay = 0;

		pthread_mutex_lock(&qlock);
		for (;;)
		{
			if (stopping)
			{
				pthread_mutex_unlock(&qlock);
				return NULL;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			now = (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
			if (queue && queue->due_ms <= now)
				break;
			if (queue)
			{
				long long	due = queue->due_ms;

				ts.tv_sec = due / 1000;
				ts.tv_nsec = (due % 1000) * 1000000;
				pthread_cond_timedwait(&qcond, &qlock, &ts);
			}
			else
				pthread_cond_wait(&qcond, &qlock);
		}
		d = queue;
		queue = d->next;
		pthread_mutex_unlock(&qlock);

		pthread_mutex_lock(&sim.lock);
		if (d->hook < nhooks && d->note < (int) json_object_array_length(notes))
		{
			json_object *rec = json_object_array_get_idx(notes, d->note);

			url = strdup(hooks[d->hook].url);
			body = strdup(jstr(rec, "body"));
			sig = strdup(jstr(rec, "signature"));
			nid = strdup(jstr(rec, "notificationId"));
			retries = hooks[d->hook].retries;
			delay = hooks[d->hook].retry_delay_ms;
		}
		pthread_mutex_unlock(&sim.lock);
		if (url && body && sig && nid)
		{
			status = post(url, body, sig, nid);
			pthread_mutex_lock(&sim.lock);
			if (d->note < (int) json_object_array_length(notes))
			{
				json_object *rec = json_object_array_get_idx(notes, d->note);

				jadd(rec, "attempts", json_object_new_int(
						 json_object_get_int(jget(rec, "attempts")) + 1));
				jadd(rec, "lastStatus", json_object_new_int((int) status));
				if (status == 200)
				{
					jadd_str(rec, "deliveryStatus", "Delivered");
					jadd(rec, "deliveries", json_object_new_int(
							 json_object_get_int(jget(rec, "deliveries")) + 1));
				}
				else if (d->attempt <= retries)
				{
					jadd_str(rec, "deliveryStatus", "RetryPending");
					pthread_mutex_unlock(&sim.lock);
					enqueue(d->hook, d->note, d->attempt + 1, now + delay);
					pthread_mutex_lock(&sim.lock);
				}
				else if (strcmp(jstr(rec, "deliveryStatus"), "Delivered") != 0)
					jadd_str(rec, "deliveryStatus", "Failed");
			}
			pthread_mutex_unlock(&sim.lock);
		}
		free(url);
		free(body);
		free(sig);
		free(nid);
		free(d);
	}
	return NULL;
}

/* Start the delivery thread */
void
webhook_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
	{
		fprintf(stderr, "anet-sim: curl_global_init failed\n");
		exit(1);
	}
	notes = json_object_new_array();
	if (pthread_create(&wthread, NULL, worker, NULL) != 0)
	{
		fprintf(stderr, "anet-sim: cannot start webhook thread\n");
		exit(1);
	}
}

/* Stop the delivery thread */
void
webhook_shutdown(void)
{
	pthread_mutex_lock(&qlock);
	stopping = true;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
	pthread_join(wthread, NULL);
	curl_global_cleanup();
}

/* Forget hooks, notifications and pending deliveries (lock held) */
void
webhook_reset(void)
{
	pthread_mutex_lock(&qlock);
	while (queue)
	{
		Delivery   *d = queue;

		queue = d->next;
		free(d);
	}
	pthread_mutex_unlock(&qlock);
	for (int i = 0; i < nhooks; i++)
	{
		free(hooks[i].url);
		json_object_put(hooks[i].events);
	}
	nhooks = 0;
	json_object_put(notes);
	notes = json_object_new_array();
}

/* JSON description of a hook */
static json_object *
hook_json(Hook *h)
{
	json_object *o = json_object_new_object();

	jadd_str(o, "webhookId", h->id);
	jadd_str(o, "merchant", sim.merchants[h->merchant].login);
	jadd_str(o, "url", h->url);
	jadd(o, "eventTypes", json_object_get(h->events));
	jadd_str(o, "status", h->active ? "active" : "inactive");
	jadd(o, "retries", json_object_new_int(h->retries));
	jadd(o, "retryDelayMs", json_object_new_int(h->retry_delay_ms));
	jadd(o, "duplicates", json_object_new_int(h->duplicates));
	jadd(o, "jitterMs", json_object_new_int(h->jitter_ms));
	return o;
}

/*
 * Control API for webhooks (lock held):
 *   POST /webhooks, GET /webhooks, GET /notifications, POST /notifications/replay
 */
json_object *
webhook_control(const char *method, const char *url, json_object *body,
				int *status)
{
	*status = 200;
	if (strcmp(url, "/webhooks") == 0 && strcmp(method, "POST") == 0)
	{
		const char *login = jstr(body, "merchant");
		int			m = login ? merchant_find(login) : 0;
		Hook	   *h;
		json_object *ev = jget(body, "eventTypes");
		const char *key = jstr(body, "signatureKey");

		if (m < 0 || jstr(body, "url") == NULL || nhooks >= 64)
		{
			*status = 400;
			return NULL;
		}
		if (key)
			strlcpy0(sim.merchants[m].signature_key, key,
					 sizeof(sim.merchants[m].signature_key));
		h = &hooks[nhooks];
		memset(h, 0, sizeof(*h));
		h->merchant = m;
		guid(h->id);
		h->url = strdup(jstr(body, "url"));
		if (ev && json_object_is_type(ev, json_type_array))
			h->events = json_object_get(ev);
		else
		{
			h->events = json_object_new_array();
			json_object_array_add(h->events, json_object_new_string("*"));
		}
		h->active = !(jstr(body, "status") && strcmp(jstr(body, "status"), "inactive") == 0);
		h->retries = jget(body, "retries") ? json_object_get_int(jget(body, "retries")) : 3;
		h->retry_delay_ms = jget(body, "retryDelayMs") ?
			json_object_get_int(jget(body, "retryDelayMs")) : 1000;
		h->duplicates = json_object_get_int(jget(body, "duplicates"));
		h->jitter_ms = json_object_get_int(jget(body, "jitterMs"));
		nhooks++;
		return hook_json(h);
	}
	if (strcmp(url, "/webhooks") == 0)
	{
		json_object *arr = json_object_new_array();

		for (int i = 0; i < nhooks; i++)
			json_object_array_add(arr, hook_json(&hooks[i]));
		return arr;
	}
	if (strncmp(url, "/notifications", 14) == 0)
	{
		json_object *c = NULL;

		if (json_object_deep_copy(notes, &c, NULL) != 0)
		{
			*status = 500;
			return NULL;
		}
		return c;
	}
	*status = 404;
	return NULL;
}
