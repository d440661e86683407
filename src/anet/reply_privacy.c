/*-------------------------------------------------------------------------
 *
 * reply_privacy.c
 *	  A gateway reply without the customer's personal data.
 *
 * The worker logs every exchange with the gateway (payments.gateway_exchanges)
 * and reads what it needs from the reply in memory, never from that log.
 * Replies about transactions and profiles name the customer (billTo and
 * shipTo, the email, the IP address, the list's first and last names, a
 * validation's direct response that repeats the address, the description
 * of a transaction's order or line items that the merchant wrote, a
 * profile's description that holds the customer's name): kept, the log
 * would hold personal data that pay_erase_customer cannot find (a
 * settlement list belongs to no operation; a refund after the erasure
 * asks again).  So those values never reach the log.  The gateway's own
 * messages ({"code", "description"}) are kept.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "reply_privacy.h"

/* Fields of Authorize.Net replies that hold personal data (anywhere). */
static const char *const personal_keys[] = {
	"firstName", "lastName", "company", "address", "city", "state", "zip",
	"country", "phoneNumber", "faxNumber", "email", "customerIP",
	"validationDirectResponse", "directResponse", NULL
};

/* Objects whose "description" is the merchant's text or the customer's name. */
static const char *const described_keys[] = {
	"order", "lineItem", "lineItems", "profile", NULL
};

static bool
in_list(const char *key, const char *const *list)
{
	if (key == NULL)
		return false;
	for (int i = 0; list[i] != NULL; i++)
		if (strcmp(key, list[i]) == 0)
			return true;
	return false;
}

/* Whether the field key of the object found under parent is personal. */
static bool
is_personal(const char *key, const char *parent)
{
	return in_list(key, personal_keys) ||
		(strcmp(key, "description") == 0 && in_list(parent, described_keys));
}

/*
 * Mask the personal values of the tree v, found under the key parent (NULL
 * for the root; an array's elements are under the array's key), a personal
 * field's value whatever its type: a string, or a list of direct responses.
 * False when out of memory.
 */
static bool
mask_tree(struct json_object *v, const char *parent, bool personal, bool *changed)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
		case json_type_int:
		case json_type_double:
			if (!personal)
				return true;
			*changed = true;
			if (json_object_get_type(v) == json_type_string)
				return json_object_set_string(v, ANET_PERSONAL_MASK) != 0;
			/* a number (a zip code sent as one) becomes 0 */
			return json_object_get_type(v) == json_type_int ?
				json_object_set_int64(v, 0) != 0 : json_object_set_double(v, 0) != 0;
		case json_type_object:
			{
				struct json_object_iterator it = json_object_iter_begin(v);
				struct json_object_iterator end = json_object_iter_end(v);

				for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
				{
					const char *key = json_object_iter_peek_name(&it);

					if (!mask_tree(json_object_iter_peek_value(&it), key,
								   personal || is_personal(key, parent), changed))
						return false;
				}
				return true;
			}
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
				if (!mask_tree(json_object_array_get_idx(v, i), parent, personal, changed))
					return false;
			return true;
		default:
			return true;
	}
}

char *
anet_reply_without_personal_data(const char *json, size_t len, bool *changed)
{
	struct json_tokener *tok;
	struct json_object *root;
	char	   *out = NULL;

	*changed = false;
	if (len > INT32_MAX || (tok = json_tokener_new()) == NULL)
		return NULL;
	root = json_tokener_parse_ex(tok, json, (int) len);
	if (root != NULL && json_tokener_get_error(tok) == json_tokener_success &&
		json_object_get_type(root) == json_type_object &&
		mask_tree(root, NULL, false, changed))
	{
		const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
														  JSON_C_TO_STRING_NOSLASHESCAPE);

		if (text != NULL)
			out = strdup(text);
	}
	json_object_put(root);
	json_tokener_free(tok);
	return out;
}
