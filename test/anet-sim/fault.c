/*-------------------------------------------------------------------------
 *
 * fault.c
 *		Fault rules and latency configuration.  A rule targets either the
 *		next N requests (count) or a share of all requests (rate); the
 *		first rule that fires decides the request's fate.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "sim.h"

typedef struct FaultRule
{
	FaultKind	kind;
	int			count;			/* remaining; -1 = rate-based */
	double		rate;
	bool		process;
	int			status;
	int			hold_ms;
	int			chunk_bytes;
	int			chunk_ms;
	int			fired;
	char		request_type[64];	/* fire only for this root element
									 * ("" = any request) */
	char	   *set_json;		/* F_REWRITE: members to set (strdup'd) */
	char	   *body;			/* F_REWRITE: the body to send instead */
	char	   *location;		/* F_REWRITE: a Location header */
} FaultRule;

static pthread_mutex_t flock = PTHREAD_MUTEX_INITIALIZER;
static FaultRule rules[32];
static int	nrules;
static int	latency_fixed_ms;
static int	latency_random_ms;

static const char *const kind_names[] = {
	"none", "hold", "http5xx", "reset", "malformed", "truncated", "trickle",
	"rewrite"
};
#define NKINDS ((int) (sizeof(kind_names) / sizeof(kind_names[0])))

/* Free a rule's strings */
static void
rule_free(FaultRule *r)
{
	free(r->set_json);
	free(r->body);
	free(r->location);
	r->set_json = r->body = r->location = NULL;
}

/* Free a decision's strings (copies of its rule's) */
void
fault_decision_free(FaultDecision *d)
{
	free(d->set_json);
	free(d->body);
	free(d->location);
	d->set_json = d->body = d->location = NULL;
}

/* Name of a fault kind */
const char *
fault_kind_name(FaultKind k)
{
	return kind_names[k];
}

/*
 * The root element of a request body ({"createTransactionRequest": ...}),
 * or "" when it cannot be seen: the first key after the opening brace.
 */
static void
root_element(const char *body, size_t len, char *out, size_t outlen)
{
	size_t		i = 0,
				n = 0;

	out[0] = '\0';
	if (body == NULL)
		return;
	if (len >= 3 && (unsigned char) body[0] == 0xEF && (unsigned char) body[1] == 0xBB &&
		(unsigned char) body[2] == 0xBF)
		i = 3;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i >= len || body[i++] != '{')
		return;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i >= len || body[i++] != '"')
		return;
	while (i < len && body[i] != '"' && n + 1 < outlen)
		out[n++] = body[i++];
	out[n] = '\0';
}

/* Decide latency and fault for one request (its body, to match rules) */
void
fault_pick(FaultDecision *d, const char *body, size_t len)
{
	char		root[64];

	root_element(body, len, root, sizeof(root));
	memset(d, 0, sizeof(*d));
	d->process = true;
	pthread_mutex_lock(&flock);
	d->latency_ms = latency_fixed_ms +
		(latency_random_ms > 0 ? (int) (sim_rand() % (unsigned) (latency_random_ms + 1)) : 0);
	for (int i = 0; i < nrules; i++)
	{
		FaultRule  *r = &rules[i];
		bool		fire = false;

		if (r->request_type[0] != '\0' && strcmp(r->request_type, root) != 0)
			continue;
		if (r->count > 0)
		{
			r->count--;
			fire = true;
		}
		else if (r->count < 0 && r->rate > 0 &&
				 (double) (sim_rand() % 1000000) / 1000000.0 < r->rate)
			fire = true;
		if (!fire)
			continue;
		r->fired++;
		d->kind = r->kind;
		d->process = r->process;
		d->status = r->status;
		d->hold_ms = r->hold_ms;
		d->chunk_bytes = r->chunk_bytes;
		d->chunk_ms = r->chunk_ms;
		d->set_json = r->set_json ? strdup(r->set_json) : NULL;
		d->body = r->body ? strdup(r->body) : NULL;
		d->location = r->location ? strdup(r->location) : NULL;
		break;
	}
	pthread_mutex_unlock(&flock);
}

/* Remove every rule and the latency */
void
fault_reset(void)
{
	pthread_mutex_lock(&flock);
	for (int i = 0; i < nrules; i++)
		rule_free(&rules[i]);
	nrules = 0;
	latency_fixed_ms = 0;
	latency_random_ms = 0;
	pthread_mutex_unlock(&flock);
}

/* Current configuration as JSON (flock held) */
static json_object *
faults_json(void)
{
	json_object *o = json_object_new_object();
	json_object *arr = json_object_new_array();

	for (int i = 0; i < nrules; i++)
	{
		json_object *r = json_object_new_object();

		jadd_str(r, "type", kind_names[rules[i].kind]);
		if (rules[i].count >= 0)
			jadd(r, "remaining", json_object_new_int(rules[i].count));
		else
			jadd(r, "rate", json_object_new_double(rules[i].rate));
		jadd(r, "process", json_object_new_boolean(rules[i].process));
		jadd(r, "fired", json_object_new_int(rules[i].fired));
		if (rules[i].request_type[0] != '\0')
			jadd_str(r, "requestType", rules[i].request_type);
		json_object_array_add(arr, r);
	}
	jadd(o, "faults", arr);
	jadd(o, "latencyFixedMs", json_object_new_int(latency_fixed_ms));
	jadd(o, "latencyRandomMs", json_object_new_int(latency_random_ms));
	return o;
}

/*
 * Control calls: POST /faults {type,count|rate,...}, DELETE /faults,
 * GET /faults, POST /latency {fixedMs, randomMs}.
 */
json_object *
fault_control(const char *method, const char *url, json_object *body,
			  int *status)
{
	json_object *out = NULL;

	*status = 200;
	pthread_mutex_lock(&flock);
	if (strcmp(url, "/latency") == 0 && strcmp(method, "POST") == 0)
	{
		latency_fixed_ms = json_object_get_int(jget(body, "fixedMs"));
		latency_random_ms = json_object_get_int(jget(body, "randomMs"));
		out = faults_json();
	}
	else if (strcmp(url, "/faults") == 0 && strcmp(method, "DELETE") == 0)
	{
		for (int i = 0; i < nrules; i++)
			rule_free(&rules[i]);
		nrules = 0;
		out = faults_json();
	}
	else if (strcmp(url, "/faults") == 0 && strcmp(method, "POST") == 0)
	{
		const char *type = jstr(body, "type");
		FaultRule  *r;
		int			k;

		for (k = 1; k < NKINDS; k++)
			if (type && strcmp(type, kind_names[k]) == 0)
				break;
		if (k == NKINDS || nrules >= 32 ||
			(jget(body, "count") == NULL && jget(body, "rate") == NULL))
		{
			*status = 400;
			pthread_mutex_unlock(&flock);
			return NULL;
		}
		r = &rules[nrules++];
		memset(r, 0, sizeof(*r));
		r->kind = (FaultKind) k;
		if (jget(body, "count"))
			r->count = json_object_get_int(jget(body, "count"));
		else
		{
			r->count = -1;
			r->rate = json_object_get_double(jget(body, "rate"));
		}
		/* default: a 5xx came from a proxy before the gateway saw it */
		r->process = jget(body, "process") ?
			json_object_get_boolean(jget(body, "process")) : (r->kind != F_HTTP5XX);
		r->status = jget(body, "status") ? json_object_get_int(jget(body, "status")) : 503;
		r->hold_ms = jget(body, "holdMs") ? json_object_get_int(jget(body, "holdMs")) : 600000;
		r->chunk_bytes = jget(body, "chunkBytes") ? json_object_get_int(jget(body, "chunkBytes")) : 8;
		r->chunk_ms = jget(body, "chunkDelayMs") ? json_object_get_int(jget(body, "chunkDelayMs")) : 200;
		if (r->chunk_bytes < 1)
			r->chunk_bytes = 1;
		if (jstr(body, "requestType"))
			snprintf(r->request_type, sizeof(r->request_type), "%s", jstr(body, "requestType"));
		if (r->kind == F_REWRITE)
		{
			/* default: the gateway processed it, and answers 200 */
			r->status = jget(body, "status") ? json_object_get_int(jget(body, "status")) : 200;
			if (json_object_is_type(jget(body, "set"), json_type_object))
				r->set_json = strdup(json_object_to_json_string_ext(jget(body, "set"),
																	JSON_C_TO_STRING_PLAIN));
			if (jstr(body, "body"))
				r->body = strdup(jstr(body, "body"));
			if (jstr(body, "location"))
				r->location = strdup(jstr(body, "location"));
		}
		out = faults_json();
	}
	else if (strcmp(method, "GET") == 0)
		out = faults_json();
	else
		*status = 404;
	pthread_mutex_unlock(&flock);
	return out;
}
