/*-------------------------------------------------------------------------
 *
 * validate.h
 *		Validation of a JSON request against the XSD content models, with
 *		the .NET schema validator's message forms.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_VALIDATE_H
#define ANET_SIM_VALIDATE_H

#include <json-c/json.h>

typedef enum ValidateResult
{
	VALID_OK,
	VALID_BAD_ROOT,				/* not an object with one key: E00003 */
	VALID_UNKNOWN_METHOD,		/* root key is not a request element: E00004 */
	VALID_SCHEMA_ERROR			/* E00003 with message */
} ValidateResult;

extern ValidateResult validate_request(json_object *doc, const char **method,
									   json_object **body, char *msg,
									   size_t msglen);
extern void validate_init(void);

#endif
