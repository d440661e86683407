/*-------------------------------------------------------------------------
 *
 * secret_redact.h
 *	  Mask credentials (API key secrets, bearer tokens) in free text.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_SECRET_REDACT_H
#define PAYMENTS_SECRET_REDACT_H

extern bool secret_redact(char *buf, int len);

#endif
