/*-------------------------------------------------------------------------
 *
 * api.c
 *		The request pipeline of POST /xml/v1/request.api: parse, validate
 *		against the XSD, authenticate, dispatch to the handler, and
 *		serialize the reply (with the UTF-8 BOM, like the real service).
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "sim.h"
#include "validate.h"

/* The top-level messages object */
json_object *
api_messages(bool ok, const char *code, const char *text)
{
	json_object *m = json_object_new_object();
	json_object *arr = json_object_new_array();
	json_object *one = json_object_new_object();

	jadd_str(m, "resultCode", ok ? "Ok" : "Error");
	jadd_str(one, "code", code);
	jadd_str(one, "text", text ? text : code_text(code));
	json_object_array_add(arr, one);
	jadd(m, "message", arr);
	return m;
}

/* Append refId (echoed from the request) and messages, which come last */
void
api_finish(json_object *reply, json_object *req, bool ok, const char *code,
		   const char *text)
{
	const char *ref = jstr(req, "refId");

	if (ref != NULL)
		jadd_str(reply, "refId", ref);
	jadd(reply, "messages", api_messages(ok, code, text));
}

/* A reply that only carries messages (request-level failure) */
json_object *
api_error_reply(const char *code, const char *text)
{
	json_object *reply = json_object_new_object();

	jadd(reply, "messages", api_messages(false, code, text));
	return reply;
}

/* Serialize with the optional BOM into a malloc'd buffer */
static char *
serialize(json_object *reply, size_t *outlen)
{
	const char *js;
	size_t		jl;
	char	   *out;
	size_t		off = sim.cfg.bom ? 3 : 0;

	js = json_object_to_json_string_length(reply,
										   JSON_C_TO_STRING_PLAIN |
										   JSON_C_TO_STRING_NOSLASHESCAPE, &jl);
	if (js == NULL)
		return NULL;
	out = malloc(jl + off + 1);
	if (out == NULL)
		return NULL;
	if (off)
		memcpy(out, "\xEF\xBB\xBF", 3);
	memcpy(out + off, js, jl + 1);
	*outlen = jl + off;
	return out;
}

/* Dispatch a validated, authenticated request (lock held) */
static json_object *
dispatch(const char *method, int m, json_object *req)
{
	json_object *reply;

	if (strcmp(method, "createTransactionRequest") == 0)
		return handle_create_transaction(m, req);
	if (strcmp(method, "authenticateTestRequest") == 0)
	{
		reply = json_object_new_object();
		api_finish(reply, req, true, "I00001", NULL);
		return reply;
	}
	if (strcmp(method, "getTransactionDetailsRequest") == 0)
		return handle_get_transaction_details(m, req);
	if (strcmp(method, "getUnsettledTransactionListRequest") == 0)
		return handle_get_unsettled_list(m, req);
	if (strcmp(method, "getSettledBatchListRequest") == 0)
		return handle_get_settled_batch_list(m, req);
	if (strcmp(method, "getTransactionListRequest") == 0)
		return handle_get_transaction_list(m, req);
	if (strcmp(method, "getBatchStatisticsRequest") == 0)
		return handle_get_batch_statistics(m, req);
	if (strcmp(method, "getTransactionListForCustomerRequest") == 0)
		return handle_get_customer_list(m, req);
	if (strcmp(method, "updateHeldTransactionRequest") == 0)
		return handle_update_held(m, req);
	if (strncmp(method, "ARB", 3) == 0)
		return handle_arb(method, m, req);
	if (strcmp(method, "updateSplitTenderGroupRequest") == 0)
	{
		reply = json_object_new_object();
		api_finish(reply, req, false, "E00027", "The specified SplitTenderID is invalid.");
		return reply;
	}
	reply = handle_cim(method, m, req);
	if (reply != NULL)
		return reply;
	/* valid per the XSD but not modelled by the simulator */
	reply = json_object_new_object();
	api_finish(reply, req, false, "E00001",
			   "An error occurred during processing. Please try again.");
	return reply;
}

/* The reporting calls, which need the Transaction Details API enabled */
static bool
is_reporting(const char *method)
{
	static const char *const reporting[] = {
		"getTransactionDetailsRequest", "getUnsettledTransactionListRequest",
		"getSettledBatchListRequest", "getTransactionListRequest",
		"getBatchStatisticsRequest", "getTransactionListForCustomerRequest"
	};

	for (size_t i = 0; i < sizeof(reporting) / sizeof(reporting[0]); i++)
		if (strcmp(reporting[i], method) == 0)
			return true;
	return false;
}

/* Check merchantAuthentication; returns the merchant index or -1 */
static int
authenticate(json_object *req)
{
	json_object *ma = jget(req, "merchantAuthentication");
	const char *name = jstr(ma, "name");
	const char *key = jstr(ma, "transactionKey");
	int			m;

	if (name == NULL || key == NULL)
		return -1;
	m = merchant_find(name);
	if (m < 0 || strcmp(sim.merchants[m].key, key) != 0)
		return -1;
	return m;
}

/* Handle one API request body; returns the reply bytes (malloc'd) */
char *
api_handle(const char *body, size_t len, size_t *outlen)
{
	json_tokener *tok;
	json_object *doc = NULL,
			   *req = NULL,
			   *reply = NULL;
	const char *method = NULL;
	char		msg[4096];
	char	   *out;
	ValidateResult vr;

	/* tolerate a BOM from the client */
	if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
	{
		body += 3;
		len -= 3;
	}
	tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	doc = json_tokener_parse_ex(tok, body, (int) len);
	if (doc == NULL || json_tokener_get_error(tok) != json_tokener_success ||
		tok->char_offset < (int) len)
	{
		/* trailing garbage after a complete document is also a parse error */
		bool		only_space = true;

		if (doc != NULL)
			for (size_t i = tok->char_offset; i < len; i++)
				if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' &&
					body[i] != '\t')
					only_space = false;
		if (doc == NULL || !only_space)
		{
			json_object_put(doc);
			doc = NULL;
		}
	}
	json_tokener_free(tok);

	pthread_mutex_lock(&sim.lock);
	sim.requests++;
	vr = validate_request(doc, &method, &req, msg, sizeof(msg));
	if (vr == VALID_BAD_ROOT || vr == VALID_SCHEMA_ERROR)
		reply = api_error_reply("E00003", msg);
	else if (vr == VALID_UNKNOWN_METHOD)
		reply = api_error_reply("E00004", NULL);
	else
	{
		int			m = authenticate(req);

		if (m < 0)
		{
			reply = json_object_new_object();
			api_finish(reply, req, false, "E00007", NULL);
		}
		else if (sim.merchants[m].inactive)
		{
			/* valid credentials of an account that is not active */
			reply = json_object_new_object();
			api_finish(reply, req, false, "E00008", NULL);
		}
		else if (sim.merchants[m].no_reporting && is_reporting(method))
		{
			reply = json_object_new_object();
			api_finish(reply, req, false, "E00011", NULL);
		}
		else
			reply = dispatch(method, m, req);
	}
	out = serialize(reply, outlen);
	pthread_mutex_unlock(&sim.lock);
	json_object_put(reply);
	json_object_put(doc);
	return out;
}
