/*-------------------------------------------------------------------------
 *
 * json_scrub.h
 *	  Wipe the strings of a json-c value before it is freed.
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

#endif
