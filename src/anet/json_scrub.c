/*-------------------------------------------------------------------------
 *
 * json_scrub.c
 *	  Wipe the strings of a json-c value before it is freed.
 *
 * json-c frees with plain free(): a card number, a CVV, a payment nonce or
 * a transaction key held in a json_object would stay readable in freed
 * heap memory (and in a core dump) until reused.  Values that held any of
 * those are scrubbed first: every string in the tree, keys excepted (ours,
 * never secret).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include <json-c/json.h>

#include "json_scrub.h"

void
json_scrub(struct json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
			explicit_bzero((char *) json_object_get_string(v),
						   json_object_get_string_len(v));
			break;
		case json_type_object:
			{
				struct json_object_iterator it = json_object_iter_begin(v);
				struct json_object_iterator end = json_object_iter_end(v);

				while (!json_object_iter_equal(&it, &end))
				{
					json_scrub(json_object_iter_peek_value(&it));
					json_object_iter_next(&it);
				}
				break;
			}
		case json_type_array:
			for (size_t i = 0; i < json_object_array_length(v); i++)
				json_scrub(json_object_array_get_idx(v, i));
			break;
		default:
			break;
	}
}
