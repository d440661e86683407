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
 * request, the receive buffer, connection state): clearing them is cheap
 * beside the TLS work of the same request.  Set up with
 * curl_global_init_mem (payments.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>

#include "curl_memory.h"

/*
 * The probe at start: set while it runs (in the postmaster, before any
 * thread exists; only read afterwards), and whether curl called us then.
 */
static bool probing = false;
static bool probed = false;

static void *
wiped_malloc(size_t size)
{
	if (probing)
		probed = true;
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
	if (probing)
		probed = true;
	return strdup(str);
}

static void *
wiped_calloc(size_t nmemb, size_t size)
{
	if (probing)
		probed = true;
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
	struct curl_slist *probe;

	*wiping = false;
	if (rc != CURLE_OK)
		return rc;
	probing = true;
	probed = false;
	probe = curl_slist_append(NULL, "probe");
	probing = false;
	if (probe != NULL)
	{
		*wiping = probed;
		curl_slist_free_all(probe);
	}
	return rc;
}
