/*-------------------------------------------------------------------------
 *
 * tenancy.h
 *	  Who acts for which merchant: the identity of the current request.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_TENANCY_H
#define PAYMENTS_TENANCY_H

/*
 * The identity an API call acts with (DESIGN §3.6).  Strings are palloc'd
 * in the caller's memory context.
 */
typedef struct PaymentsIdentity
{
	Oid			role;			/* the role that acts: SET ROLE, else the
								 * login role, whatever SECURITY DEFINER
								 * function runs in between */
	int64		merchant_id;	/* the merchant it acts for; 0 when none */
	const char *source;			/* what decided it: "binding", "jwt",
								 * "setting", "default" */
	char	   *subject;		/* the JWT's "sub" claim, or NULL */
	char	   *key_id;			/* the merchant API key used, or NULL (not
								 * yet: the slot a PostgREST pre-request key
								 * check fills) */
} PaymentsIdentity;

/*
 * Resolve the identity of the current request.  When nothing identifies a
 * merchant, or the request names one the role may not act for: raises
 * 42501, unless missing_ok, which returns false instead (then only
 * id->role and id->subject are set).
 */
extern bool payments_identity(PaymentsIdentity *id, bool missing_ok);
extern void payments_actor(PaymentsIdentity *id);

#endif
