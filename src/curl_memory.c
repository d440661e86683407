/*-------------------------------------------------------------------------
 *
 * curl_memory.c
 *	  libcurl's allocator: every block curl gives back is wiped first.
 *
 * curl copies a small POST body into the buffer it sends the request from,
 * headers and body together, and frees that buffer without clearing it.
 * Our body holds the card number (it is wiped when the transfer is over,
 * http_engine.c), so curl's copy stayed in the worker's free memory, where
 * a core file or a read of the process's memory would find it long after
 * the payment was answered.  The blocks curl frees are few and small (the
 * request, the receive buffer, connection state): clearing them costs
 * nothing measurable.  Set up with curl_global_init_mem (payments.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "curl_memory.h"

/* allocations made through us: proof that curl uses this allocator */
static uint64 allocations = 0;

static void *
wiped_malloc(size_t size)
{
	allocations++;
	return malloc(size);
}

static void
wiped_free(void *ptr)
{
	if (ptr == NULL)
		return;
	explicit_bzero(ptr, malloc_usable_size(ptr));
	free(ptr);
}

/* Always a new block: realloc would leave the old one uncleared. */
static void *
wiped_realloc(void *ptr, size_t size)
{
	void	   *grown;
	size_t		old;

	if (ptr == NULL)
		return malloc(size);
	grown = malloc(Max(size, 1));
	if (grown == NULL)
		return NULL;
	old = malloc_usable_size(ptr);
	memcpy(grown, ptr, Min(old, size));
	wiped_free(ptr);
	return grown;
}

static char *
wiped_strdup(const char *str)
{
	allocations++;
	return strdup(str);
}

static void *
wiped_calloc(size_t nmemb, size_t size)
{
	allocations++;
	return calloc(nmemb, size);
}

/*
 * curl_global_init with the allocator above.  *wiping tells whether curl
 * really allocates through it: curl_global_init_mem does nothing (and says
 * OK) when curl was initialized before, by another library loaded first.
 */
CURLcode
curl_memory_global_init(long flags, bool *wiping)
{
	CURLcode	rc = curl_global_init_mem(flags, wiped_malloc, wiped_free, wiped_realloc,
										  wiped_strdup, wiped_calloc);
	uint64		before = allocations;
	struct curl_slist *probe;

	*wiping = false;
	if (rc != CURLE_OK)
		return rc;
	probe = curl_slist_append(NULL, "probe");
	if (probe != NULL)
	{
		*wiping = allocations > before;
		curl_slist_free_all(probe);
	}
	return rc;
}
