/*-------------------------------------------------------------------------
 *
 * card_json.c
 *	  Parse the JSON text form of pay_card input with json-c.
 *
 * PostgREST clients pass a card as a JSON object:
 *   {"number": "4111 1111 1111 1111", "exp_month": 12, "exp_year": 2030,
 *    "cvv": "123", "holder_name": "Jane Doe"}
 * This file only takes the fields out into fixed buffers (JsonCard); the
 * card rules are applied by card.c exactly as for payments.pay_card().
 *
 * json-c allocates with malloc, so nothing here may raise an error while
 * its objects are alive: problems are recorded in jc->error and reported
 * by the caller after everything is freed.  Every string json-c decoded,
 * and its tokenizer buffer, is wiped before being freed.  This file does
 * not include utils/builtins.h: json-c's json_object type clashes with the
 * SQL function of that name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <json-c/json.h>
#include <json-c/printbuf.h>

#include "card_json.h"
#include "json_scrub.h"

/*
 * Copy a JSON string into buf (size bufsize).  A longer string is cut to
 * bufsize - 1 bytes, which every later length check rejects.
 */
static int
copy_json_string(struct json_object *v, char *buf, int bufsize)
{
	int			len = json_object_get_string_len(v);

	if (len > bufsize - 1)
		len = bufsize - 1;
	memcpy(buf, json_object_get_string(v), len);
	buf[len] = '\0';
	return len;
}

/*
 * An expiry field: a JSON integer, or a string of one to four digits
 * ("05").  Out-of-range integers become -1, which check_expiry rejects.
 */
static bool
json_expiry_field(struct json_object *v, int32 *out)
{
	if (json_object_get_type(v) == json_type_int)
	{
		int64		i = json_object_get_int64(v);

		*out = (i < -1 || i > 99999) ? -1 : (int32) i;
		return true;
	}
	if (json_object_get_type(v) == json_type_string)
	{
		const char *s = json_object_get_string(v);
		int			len = json_object_get_string_len(v);
		int32		val = 0;

		if (len < 1 || len > 4)
			return false;
		for (int i = 0; i < len; i++)
		{
			if (s[i] < '0' || s[i] > '9')
				return false;
			val = val * 10 + (s[i] - '0');
		}
		*out = val;
		return true;
	}
	return false;
}

/*
 * Whether a key of the JSON text has a \u0000 escape.  json-c hands keys
 * out as C strings: "cvv\u0000x" would be read as "cvv", a spelling of the
 * key that log masking (card_redact.c) has to go out of its way to see.
 * json-c checks the text is JSON: here a string is a key when a colon
 * follows it.
 */
static bool
key_has_nul_escape(const char *str, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		bool		nul = false;

		if (str[i] != '"')
			continue;
		for (i++; i < len && str[i] != '"'; i++)
		{
			if (str[i] != '\\' || i + 1 >= len)
				continue;
			if (str[i + 1] == 'u' && i + 5 < len && memcmp(str + i + 2, "0000", 4) == 0)
				nul = true;
			i++;
		}
		if (nul)
		{
			size_t		j = i + 1;

			while (j < len && (str[j] == ' ' || str[j] == '\t' || str[j] == '\n' || str[j] == '\r'))
				j++;
			if (j < len && str[j] == ':')
				return true;
		}
	}
	return false;
}

/*
 * Parse the JSON text into *jc without raising errors: json-c allocates
 * with malloc, so nothing may longjmp while its objects are alive.  The
 * parsed tree and the tokenizer's buffer are wiped before they are freed.
 */
void
card_parse_json(const char *str, size_t len, JsonCard *jc)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error jerr;
	size_t		end;

	if (key_has_nul_escape(str, len))
	{
		jc->error = "A key of the card object contains the escape \\u0000.";
		return;
	}
	tok = json_tokener_new();
	if (tok == NULL)
	{
		jc->error = "Out of memory while parsing the card.";
		return;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, str, (int) len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	while (end < len && (str[end] == ' ' || str[end] == '\t' ||
						 str[end] == '\n' || str[end] == '\r'))
		end++;

	if (root == NULL || jerr != json_tokener_success || end != len)
		jc->error = "The input is not valid JSON.";
	else if (json_object_get_type(root) != json_type_object)
		jc->error = "The input is not a JSON object.";
	else
	{
		struct json_object_iterator it = json_object_iter_begin(root);
		struct json_object_iterator itend = json_object_iter_end(root);

		for (; jc->error == NULL && !json_object_iter_equal(&it, &itend);
			 json_object_iter_next(&it))
		{
			const char *key = json_object_iter_peek_name(&it);
			struct json_object *v = json_object_iter_peek_value(&it);
			enum json_type	t = json_object_get_type(v);

			if (strcmp(key, "number") == 0)
			{
				if (t == json_type_null)
					continue;
				if (t != json_type_string)
					jc->error = "The card number must be a JSON string.";
				else
				{
					jc->number_len = copy_json_string(v, jc->number, sizeof(jc->number));
					jc->has_number = true;
				}
			}
			else if (strcmp(key, "cvv") == 0)
			{
				if (t == json_type_null)
					continue;
				if (t != json_type_string)
					jc->error = "The card security code must be a JSON string.";
				else
				{
					jc->cvv_len = copy_json_string(v, jc->cvv, sizeof(jc->cvv));
					jc->has_cvv = true;
				}
			}
			else if (strcmp(key, "holder_name") == 0)
			{
				if (t == json_type_null)
					continue;
				if (t != json_type_string)
					jc->error = "The card holder name must be a JSON string.";
				else
				{
					jc->holder_len = copy_json_string(v, jc->holder, sizeof(jc->holder));
					jc->has_holder = true;
				}
			}
			else if (strcmp(key, "exp_month") == 0)
			{
				if (t == json_type_null)
					continue;
				if (!json_expiry_field(v, &jc->exp_month))
					jc->error = "The expiry month must be a JSON integer.";
				else
					jc->has_exp_month = true;
			}
			else if (strcmp(key, "exp_year") == 0)
			{
				if (t == json_type_null)
					continue;
				if (!json_expiry_field(v, &jc->exp_year))
					jc->error = "The expiry year must be a JSON integer.";
				else
					jc->has_exp_year = true;
			}
			else
				jc->error = "The card object may only have the keys number, exp_month, exp_year, cvv and holder_name.";
		}
		if (jc->error == NULL && !jc->has_number)
			jc->error = "The card object has no \"number\".";
		else if (jc->error == NULL && !jc->has_exp_month)
			jc->error = "The card object has no \"exp_month\".";
		else if (jc->error == NULL && !jc->has_exp_year)
			jc->error = "The card object has no \"exp_year\".";
	}

	if (root != NULL)
	{
		json_scrub(root);
		if (json_object_put(root) != 1)
			jc->error = jc->error ? jc->error : "The card could not be parsed.";
	}
	/* the tokenizer keeps the last string it decoded in its buffer */
	if (tok->pb != NULL && tok->pb->buf != NULL && tok->pb->size > 0)
		explicit_bzero(tok->pb->buf, tok->pb->size);
	json_tokener_free(tok);
}
