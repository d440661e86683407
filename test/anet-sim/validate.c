/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Check a JSON request the way Authorize.Net does: the JSON is turned
 *		into XML and validated against the gateway's XML schema (schema_gen.c
 *		holds its content models), so keys must follow the XSD sequence
 *		order, be known, be present when required, and scalar values must
 *		satisfy their simple type.  Errors use the .NET XmlSchema
 *		validator's wording, which is what E00003 replies carry.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"
#include "validate.h"

#define NS "AnetApi/xml/v1/schema/AnetApiSchema.xsd"

static void compile_builtins(void);

/* compiled patterns, one per simple type (NULL when it has none) */
static regex_t *patterns;

/* Compile every XSD pattern once; XSD patterns are implicitly anchored */
void
validate_init(void)
{
	compile_builtins();
	patterns = calloc(schema_nsimple, sizeof(regex_t));
	if (patterns == NULL)
	{
		fprintf(stderr, "anet-sim: out of memory\n");
		exit(1);
	}
	for (int i = 0; i < schema_nsimple; i++)
	{
		const char *p = schema_simple_types[i].pattern;
		char		buf[512];
		size_t		o = 0;

		if (p == NULL)
			continue;
		o += snprintf(buf + o, sizeof(buf) - o, "^(");
		for (; *p && o < sizeof(buf) - 16; p++)
		{
			if (p[0] == '\\' && p[1] == 's')
			{
				o += snprintf(buf + o, sizeof(buf) - o, "[:space:]");
				p++;
			}
			else if (p[0] == '\\' && p[1] == 'd')
			{
				o += snprintf(buf + o, sizeof(buf) - o, "0-9");
				p++;
			}
			else
				buf[o++] = *p;
		}
		snprintf(buf + o, sizeof(buf) - o, ")$");
		if (regcomp(&patterns[i], buf, REG_EXTENDED | REG_NOSUB) != 0)
		{
			fprintf(stderr, "anet-sim: cannot compile XSD pattern %s\n", buf);
			exit(1);
		}
	}
}

/* Names of the particles a validator would accept next, comma separated */
static void
expected_list(const ComplexType *ct, int pos, int count, char *out,
			  size_t outlen)
{
	size_t		o = 0;

	out[0] = '\0';
	for (int j = pos; j < ct->count; j++)
	{
		const Particle *p = &schema_particles[ct->first + j];
		int			have = (j == pos) ? count : 0;

		if (p->max_occurs != -1 && have >= p->max_occurs)
			continue;
		if (p->name != NULL)
			o += snprintf(out + o, o < outlen ? outlen - o : 0, "%s%s",
						  o ? ", " : "", p->name);
		else
			for (int a = 0; a < p->nalts; a++)
				o += snprintf(out + o, o < outlen ? outlen - o : 0, "%s%s",
							  o ? ", " : "",
							  schema_particles[p->alt + a].name);
		if (p->min_occurs > have)
			break;
	}
}

/* Does particle p accept element name k?  Returns the element particle. */
static const Particle *
particle_match(const Particle *p, const char *k)
{
	if (p->name != NULL)
		return strcmp(p->name, k) == 0 ? p : NULL;
	for (int a = 0; a < p->nalts; a++)
		if (strcmp(schema_particles[p->alt + a].name, k) == 0)
			return &schema_particles[p->alt + a];
	return NULL;
}

/* Count digits of a decimal literal (total and after the point) */
static void
count_digits(const char *s, int *total, int *frac)
{
	int			t = 0,
				f = 0,
				seen_point = 0,
				leading = 1;

	for (; *s; s++)
	{
		if (*s == '.')
			seen_point = 1;
		else if (isdigit((unsigned char) *s))
		{
			if (*s != '0')
				leading = 0;
			if (!leading || seen_point)
				t++;
			if (seen_point)
				f++;
		}
	}
	/* trailing zeros after the point do not count */
	if (seen_point)
	{
		const char *e = s - 1;

		while (*e == '0' && f > 0)
		{
			f--;
			t--;
			e--;
		}
	}
	*total = t;
	*frac = f;
}

/* lexical patterns of the built-in types, compiled once (index = XsBase) */
static const char *const builtin_patterns[] = {
	NULL,
	"^ *[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+) *$",
	"^ *[+-]?[0-9]+ *$",
	"^ *[+-]?[0-9]+ *$",
	"^ *[+-]?[0-9]+ *$",
	"^ *[+-]?[0-9]+ *$",
	"^ *(true|false|1|0) *$",
	"^ *[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})? *$",
	"^ *[0-9]{4}-[0-9]{2}-[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})? *$"
};
static regex_t builtin_re[9];

/* Compile the built-in type patterns (called from validate_init) */
static void
compile_builtins(void)
{
	for (int i = 1; i < 9; i++)
		if (regcomp(&builtin_re[i], builtin_patterns[i],
					REG_EXTENDED | REG_NOSUB) != 0)
		{
			fprintf(stderr, "anet-sim: cannot compile %s\n", builtin_patterns[i]);
			exit(1);
		}
}

/* Lexical check of a value against a built-in XSD type */
static const char *
check_builtin(XsBase base, const char *v)
{
	static const char *const msgs[] = {
		NULL, "Decimal", "Int32", "Int64", "Int16", "Integer", "Boolean",
		"DateTime", "Date"
	};
	int			ok;

	if (base == XT_STRING)
		return NULL;
	ok = regexec(&builtin_re[base], v, 0, NULL, 0) == 0;
	if (ok && (base == XT_INT || base == XT_SHORT))
	{
		long long	n = strtoll(v, NULL, 10);

		if (base == XT_INT && (n > 2147483647LL || n < -2147483648LL))
			ok = 0;
		if (base == XT_SHORT && (n > 32767 || n < -32768))
			ok = 0;
	}
	return ok ? NULL : msgs[base];
}

/*
 * Length as the XSD's length facets count it: characters, not bytes.  A
 * well-formed UTF-8 sequence counts once, any other byte once on its own
 * (invalid UTF-8 is never shorter than its bytes suggest).
 */
static size_t
xsd_length(const char *v)
{
	const unsigned char *p = (const unsigned char *) v;
	size_t		n = 0;

	while (*p)
	{
		int			len = *p >= 0xF0 && *p <= 0xF4 ? 4 :
			*p >= 0xE0 && *p <= 0xEF ? 3 :
			*p >= 0xC2 && *p <= 0xDF ? 2 : 1;
		int			i;

		for (i = 1; i < len && (p[i] & 0xC0) == 0x80; i++)
			;
		p += (i == len) ? len : 1;
		n++;
	}
	return n;
}

/*
 * The first character of v (len bytes) that XML 1.0 cannot carry: the
 * C0 controls but tab, line feed and carriage return (U+0000 included, as
 * JSON "\u0000"), and U+FFFE, U+FFFF.  The gateway turns the JSON into
 * XML, so such a request fails to parse.  Returns -1 when there is none.
 */
static long
xml_bad_char(const char *v, size_t len)
{
	const unsigned char *p = (const unsigned char *) v;

	for (size_t i = 0; i < len; i++)
	{
		if (p[i] < 0x20 && p[i] != 0x09 && p[i] != 0x0A && p[i] != 0x0D)
			return p[i];
		if (i + 2 < len && p[i] == 0xEF && p[i + 1] == 0xBF &&
			(p[i + 2] == 0xBE || p[i + 2] == 0xBF))
			return p[i + 2] == 0xBE ? 0xFFFE : 0xFFFF;
	}
	return -1;
}

/* Validate one scalar against its simple type; fills msg on failure */
static int
check_simple(const char *elem, int st, const char *v, char *msg, size_t msglen)
{
	const SimpleType *t = &schema_simple_types[st];
	const char *bad;
	const char *why = NULL;
	char		whybuf[256];
	size_t		len = xsd_length(v);

	bad = check_builtin(t->base, v);
	if (bad != NULL)
	{
		snprintf(whybuf, sizeof(whybuf), "The string '%s' is not a valid %s value.",
				 v, bad);
		why = whybuf;
	}
	else if (t->base == XT_STRING && t->min_length >= 0 &&
			 (int) len < t->min_length)
		why = "The actual length is less than the MinLength value.";
	else if (t->base == XT_STRING && t->max_length >= 0 &&
			 (int) len > t->max_length)
		why = "The actual length is greater than the MaxLength value.";
	else if (t->nenums > 0)
	{
		int			found = 0;

		for (int i = 0; i < t->nenums; i++)
			if (strcmp(t->enums[i], v) == 0)
				found = 1;
		if (!found)
			why = "The Enumeration constraint failed.";
	}
	if (why == NULL && t->pattern != NULL &&
		regexec(&patterns[st], v, 0, NULL, 0) != 0)
		why = "The Pattern constraint failed.";
	if (why == NULL && t->min_inclusive != NULL &&
		strtod(v, NULL) < strtod(t->min_inclusive, NULL))
		why = "The MinInclusive constraint failed.";
	if (why == NULL && t->max_inclusive != NULL &&
		strtod(v, NULL) > strtod(t->max_inclusive, NULL))
		why = "The MaxInclusive constraint failed.";
	if (why == NULL && (t->total_digits >= 0 || t->fraction_digits >= 0))
	{
		int			total,
					frac;

		count_digits(v, &total, &frac);
		if (t->total_digits >= 0 && total > t->total_digits)
			why = "The TotalDigits constraint failed.";
		else if (t->fraction_digits >= 0 && frac > t->fraction_digits)
			why = "The FractionDigits constraint failed.";
	}
	if (why == NULL)
		return 1;
	snprintf(msg, msglen,
			 "The '%s:%s' element is invalid - The value '%s' is invalid according to its datatype '%s' - %s",
			 NS, elem, v, t->display, why);
	return 0;
}

static int	check_complex(const char *elem, int cti, json_object *obj,
						  char *msg, size_t msglen);

/* Validate one occurrence of an element against its particle */
static int
check_value(const char *parent, const ComplexType *pct, int pos, int count,
			const Particle *ep, json_object *v, char *msg, size_t msglen)
{
	if (ep->complex_type >= 0)
	{
		if (v != NULL && !json_object_is_type(v, json_type_object))
		{
			char		exp[2048];
			const ComplexType *ct = &schema_complex_types[ep->complex_type];

			(void) parent;
			(void) pct;
			(void) pos;
			(void) count;
			expected_list(ct, 0, 0, exp, sizeof(exp));
			if (exp[0])
				snprintf(msg, msglen,
						 "The element '%s' in namespace '%s' cannot contain text. List of possible elements expected: '%s' in namespace '%s'.",
						 ep->name, NS, exp, NS);
			else
				snprintf(msg, msglen,
						 "The element '%s' in namespace '%s' cannot contain text.",
						 ep->name, NS);
			return 0;
		}
		return check_complex(ep->name, ep->complex_type, v, msg, msglen);
	}
	if (v != NULL && (json_object_is_type(v, json_type_object) ||
					  json_object_is_type(v, json_type_array)))
	{
		const char *child = "";

		if (json_object_is_type(v, json_type_object))
		{
			json_object_object_foreach(v, k, unused)
			{
				(void) unused;
				child = k;
				break;
			}
		}
		snprintf(msg, msglen,
				 "The element '%s' in namespace '%s' cannot contain child element '%s' in namespace '%s' because the parent element's content model is text only.",
				 ep->name, NS, child, NS);
		return 0;
	}
	if (v != NULL && json_object_is_type(v, json_type_string))
	{
		long		c = xml_bad_char(json_object_get_string(v),
									 (size_t) json_object_get_string_len(v));

		/* the .NET XmlReader's wording (simulator approximation) */
		if (c >= 0)
		{
			snprintf(msg, msglen,
					 "'\\u%04lX', hexadecimal value 0x%02lX, is an invalid character.",
					 c, c);
			return 0;
		}
	}
	return check_simple(ep->name, ep->simple_type,
						v == NULL ? "" : json_object_get_string(v), msg, msglen);
}

/* Validate an object's keys (in order) against a complex type's sequence */
static int
check_complex(const char *elem, int cti, json_object *obj, char *msg,
			  size_t msglen)
{
	const ComplexType *ct = &schema_complex_types[cti];
	int			pos = 0,
				count = 0;
	char		exp[2048];

	if (obj != NULL)
	{
		json_object_object_foreach(obj, key, val)
		{
			int			n = 1;
			int			is_array = json_object_is_type(val, json_type_array);

			if (is_array)
				n = (int) json_object_array_length(val);
			for (int i = 0; i < n; i++)
			{
				json_object *v = is_array ? json_object_array_get_idx(val, i) : val;
				const Particle *ep = NULL;
				int			j;

				for (j = pos; j < ct->count; j++)
				{
					const Particle *p = &schema_particles[ct->first + j];
					int			have = (j == pos) ? count : 0;

					if (!(p->max_occurs != -1 && have >= p->max_occurs))
					{
						ep = particle_match(p, key);
						if (ep != NULL)
							break;
					}
					if (p->min_occurs > have)
						break;
				}
				if (ep == NULL)
				{
					expected_list(ct, pos, count, exp, sizeof(exp));
					if (exp[0])
						snprintf(msg, msglen,
								 "The element '%s' in namespace '%s' has invalid child element '%s' in namespace '%s'. List of possible elements expected: '%s' in namespace '%s'.",
								 elem, NS, key, NS, exp, NS);
					else
						snprintf(msg, msglen,
								 "The element '%s' in namespace '%s' has invalid child element '%s' in namespace '%s'.",
								 elem, NS, key, NS);
					return 0;
				}
				if (j != pos)
				{
					pos = j;
					count = 0;
				}
				count++;
				if (!check_value(elem, ct, pos, count, ep, v, msg, msglen))
					return 0;
			}
		}
	}
	/* anything required left? */
	for (int j = pos; j < ct->count; j++)
	{
		const Particle *p = &schema_particles[ct->first + j];
		int			have = (j == pos) ? count : 0;

		if (p->min_occurs > have)
		{
			expected_list(ct, pos, count, exp, sizeof(exp));
			snprintf(msg, msglen,
					 "The element '%s' in namespace '%s' has incomplete content. List of possible elements expected: '%s' in namespace '%s'.",
					 elem, NS, exp, NS);
			return 0;
		}
	}
	return 1;
}

/* Entry point: check the root shape, the method name and the content */
ValidateResult
validate_request(json_object *doc, const char **method, json_object **body,
				 char *msg, size_t msglen)
{
	int			nkeys;

	*method = NULL;
	*body = NULL;
	if (doc == NULL || !json_object_is_type(doc, json_type_object))
	{
		snprintf(msg, msglen, "An error occurred while parsing the XML request.");
		return VALID_BAD_ROOT;
	}
	nkeys = json_object_object_length(doc);
	if (nkeys != 1)
	{
		snprintf(msg, msglen,
				 nkeys == 0 ? "Root element is missing." :
				 "JSON root object has multiple properties. The root object must have a single property in order to create a valid XML document. Consider specifying a DeserializeRootElementName.");
		return VALID_BAD_ROOT;
	}
	json_object_object_foreach(doc, key, val)
	{
		*method = key;
		*body = val;
	}
	for (int i = 0; i < schema_nroots; i++)
	{
		if (strcmp(schema_roots[i].name, *method) != 0)
			continue;
		if (strstr(*method, "Request") == NULL)
			break;
		if (*body != NULL && !json_object_is_type(*body, json_type_object))
		{
			snprintf(msg, msglen,
					 "The element '%s' in namespace '%s' cannot contain text. List of possible elements expected: 'merchantAuthentication' in namespace '%s'.",
					 *method, NS, NS);
			return VALID_SCHEMA_ERROR;
		}
		if (!check_complex(*method, schema_roots[i].complex_type, *body, msg,
						   msglen))
			return VALID_SCHEMA_ERROR;
		return VALID_OK;
	}
	snprintf(msg, msglen, "The name of the requested API method is invalid.");
	return VALID_UNKNOWN_METHOD;
}
