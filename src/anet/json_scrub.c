/*-------------------------------------------------------------------------
 *
 * json_scrub.c
 *	  Leave no secret of a json-c value in freed memory.
 *
 * json-c frees with plain free(): a card number, a CVV, a payment nonce or
 * a transaction key held in a json_object would stay readable in freed
 * heap memory (and in a core dump) until reused.  Values that held any of
 * those are scrubbed first: every string in the tree, keys excepted (ours,
 * never secret).
 *
 * Nor is such a tree serialized by json-c: its buffer grows by realloc as
 * the text grows, and each smaller buffer it leaves holds a first part of
 * the text, card number included, where nothing can wipe it.
 * json_serialize_secret writes the same text (json-c's plain form, '/'
 * not escaped) into a buffer that is wiped whenever it moves.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The text being written; on failure (out of memory) data is NULL. */
typedef struct SecretText
{
	char	   *data;
	size_t		len;
	size_t		cap;
} SecretText;

static void
text_drop(SecretText *t)
{
	if (t->data != NULL)
	{
		explicit_bzero(t->data, t->cap);
		free(t->data);
	}
	t->data = NULL;
}

/* Append n bytes, growing into a new buffer and wiping the old one. */
static bool
text_append(SecretText *t, const char *s, size_t n)
{
	if (t->data == NULL)
		return false;
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = t->cap * 2 > t->len + n + 1 ? t->cap * 2 : t->len + n + 1;
		char	   *grown = malloc(cap);

		if (grown == NULL)
		{
			text_drop(t);
			return false;
		}
		memcpy(grown, t->data, t->len);
		explicit_bzero(t->data, t->cap);
		free(t->data);
		t->data = grown;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
	return true;
}

/* A JSON string, escaped as json-c escapes it. */
static bool
text_string(SecretText *t, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	static const char special[] = "\b\n\r\t\f\"\\";
	static const char letter[] = "bnrtf\"\\";
	size_t		start = 0;

	if (!text_append(t, "\"", 1))
		return false;
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];
		const char *sp = c != '\0' ? strchr(special, c) : NULL;
		char		esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t		elen = 2;

		if (sp != NULL)
			esc[1] = letter[sp - special];
		else if (c < ' ')
		{
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			elen = 6;
		}
		else
			continue;
		if (!text_append(t, s + start, i - start) || !text_append(t, esc, elen))
			return false;
		start = i + 1;
	}
	return text_append(t, s + start, n - start) && text_append(t, "\"", 1);
}

static bool
text_value(SecretText *t, struct json_object *v)
{
	switch (json_object_get_type(v))
	{
		case json_type_string:
			return text_string(t, json_object_get_string(v), json_object_get_string_len(v));
		case json_type_object:
			{
				struct json_object_iterator it = json_object_iter_begin(v);
				struct json_object_iterator end = json_object_iter_end(v);
				bool		first = true;

				if (!text_append(t, "{", 1))
					return false;
				while (!json_object_iter_equal(&it, &end))
				{
					const char *key = json_object_iter_peek_name(&it);

					if ((!first && !text_append(t, ",", 1)) ||
						!text_string(t, key, strlen(key)) || !text_append(t, ":", 1) ||
						!text_value(t, json_object_iter_peek_value(&it)))
						return false;
					first = false;
					json_object_iter_next(&it);
				}
				return text_append(t, "}", 1);
			}
		case json_type_array:
			if (!text_append(t, "[", 1))
				return false;
			for (size_t i = 0; i < json_object_array_length(v); i++)
				if ((i > 0 && !text_append(t, ",", 1)) ||
					!text_value(t, json_object_array_get_idx(v, i)))
					return false;
			return text_append(t, "]", 1);
		default:
			{
				/*
				 * null, booleans and numbers hold no secret: json-c writes
				 * them as it would (a double's precision, an unsigned value
				 * beyond int64), in a buffer of the value's own
				 */
				const char *text = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
																  JSON_C_TO_STRING_NOSLASHESCAPE);

				if (text == NULL)
				{
					text_drop(t);
					return false;
				}
				return text_append(t, text, strlen(text));
			}
	}
}

char *
json_serialize_secret(struct json_object *v)
{
	SecretText	t = {malloc(1024), 0, 1024};

	if (t.data == NULL)
		return NULL;
	t.data[0] = '\0';
	if (!text_value(&t, v))
	{
		text_drop(&t);
		return NULL;
	}
	return t.data;
}
