/*-------------------------------------------------------------------------
 *
 * tenancy.h
 *	  Who acts for which merchant: the identity of the current request.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_TENANCY_H
#define PAYMENTS_TENANCY_H

#include "executor/spi.h"

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
	char	   *subject;		/* the JWT's "sub" claim, only for a
								 * declared NOLOGIN PostgREST role; else
								 * NULL */
	int64		key_id;			/* the merchant API key the request uses
								 * (source "api_key"), else 0 */
	uint32		scopes;			/* that key's scopes (PAYMENTS_SCOPE_*) */
	bool		all_merchants;	/* the role acts for every merchant (owner,
								 * superuser, pay_grant_all_merchants) and
								 * no key narrows it */
} PaymentsIdentity;

/* The scopes of a merchant API key (api_keys.c, README "API keys"). */
#define PAYMENTS_SCOPE_READ		0x01	/* the reading functions */
#define PAYMENTS_SCOPE_PAYMENTS	0x02	/* pay_purchase, pay_authorize,
										 * pay_capture, pay_void, plans and
										 * subscriptions */
#define PAYMENTS_SCOPE_REFUNDS	0x04	/* pay_refund */
#define PAYMENTS_SCOPE_ADMIN	0x08	/* its merchant's API keys */
#define PAYMENTS_SCOPE_CUSTOMERS 0x10	/* creating and changing customers
										 * and payment methods */

/* The bit of a scope name, or 0 for an unknown name. */
extern uint32 payments_scope_bit(const char *name);

/*
 * Resolve the identity of the current request.  When nothing identifies a
 * merchant, or the request names one the role may not act for: raises
 * 42501, unless missing_ok, which returns false instead (then only
 * id->role is set, and id->subject if the role's claims were read).
 */
extern bool payments_identity(PaymentsIdentity *id, bool missing_ok);

/*
 * Who acts, for the audit trigger: resolved once per command, kept by
 * tenancy.c (valid until the next call).
 */
typedef struct PaymentsActor
{
	Oid			role;			/* as in PaymentsIdentity */
	char	   *subject;		/* the JWT's "sub" claim where tenancy
								 * trusts the claims (a declared NOLOGIN
								 * PostgREST role), else NULL */
	int64		key_id;			/* the merchant API key used, else 0 */
	int64		merchant_id;	/* the merchant it acts for, a setting or
								 * claim it may not use ignored; 0 when
								 * nothing else decides one */
	bool		any_merchant;	/* its rows may name any merchant: a role
								 * acting for every merchant, or the
								 * owner's code (the current user) */
	int			nbound;			/* the merchants it is bound to */
	int64	   *bound;
} PaymentsActor;

extern const PaymentsActor *payments_actor(void);

/* Whether a row the actor changed may be recorded under its merchant_id. */
extern bool payments_actor_may_act_for(const PaymentsActor *actor, int64 merchant_id);

/*
 * A verified merchant API key acts for the rest of the current transaction
 * (for the role acting now): api_keys.c calls this after checking the
 * secret, and nothing else can.  Cleared at transaction end.
 */
extern void payments_identity_use_key(int64 merchant_id, int64 key_id, uint32 scopes);

/* Whether the owner declared the role PostgREST-only (and it is NOLOGIN). */
extern bool payments_role_is_postgrest(Oid role);
extern void payments_check_key_claims(int64 key_id, int64 key_merchant);

/*
 * Run query (no arguments; prepared once, into *plan) as the extension
 * owner, with a fixed search_path, in the caller's SPI connection; the rows
 * are in SPI_tuptable.  For a read the caller's role may not make.
 */
extern void payments_select_as_owner(const char *query, SPIPlanPtr *plan, const char *what);

#endif
