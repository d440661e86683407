/*-------------------------------------------------------------------------
 *
 * fuzz_check.h
 *	  Assertions shared by the fuzz targets: a failed check aborts, which
 *	  libFuzzer reports as a crash and saves the input.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_FUZZ_CHECK_H
#define PAYMENTS_FUZZ_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n", \
					__FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* Whether s[0..len) is valid UTF-8 (RFC 3629: no overlongs, surrogates). */
static inline bool
fuzz_valid_utf8(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		unsigned int cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			n = 2, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			n = 3, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			n = 4, cp = c & 0x07;
		else
			return false;
		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
			(n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

/* A fixed-size text field: NUL-terminated inside its array, valid UTF-8. */
static inline void
fuzz_check_text(const char *field, size_t size, const char *name)
{
	size_t		len = strnlen(field, size);

	if (len == size)
	{
		fprintf(stderr, "fuzz check failed: %s is not NUL-terminated\n", name);
		abort();
	}
	if (!fuzz_valid_utf8((const unsigned char *) field, len))
	{
		fprintf(stderr, "fuzz check failed: %s is not valid UTF-8\n", name);
		abort();
	}
}

#endif
