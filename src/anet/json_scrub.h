/*-------------------------------------------------------------------------
 *
 * json_scrub.h
 *	  Leave no secret of a json-c value in freed memory (json_scrub.c).
 *
 * Pure C and json-c (no PostgreSQL headers): the protocol module's unit
 * test compiles it too.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_JSON_SCRUB_H
#define PAYMENTS_JSON_SCRUB_H

struct json_object;

extern void json_scrub(struct json_object *v);

/*
 * v as json-c's plain text ('/' not escaped), malloc'd, with no copy left
 * behind; NULL when out of memory.
 */
extern char *json_serialize_secret(struct json_object *v);

#endif
