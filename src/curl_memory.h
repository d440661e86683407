/*-------------------------------------------------------------------------
 *
 * curl_memory.h
 *	  libcurl's allocator, wiping what curl frees (curl_memory.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_CURL_MEMORY_H
#define PAYMENTS_CURL_MEMORY_H

#include <curl/curl.h>

extern CURLcode curl_memory_global_init(long flags, bool *wiping);

#endif
