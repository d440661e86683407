/*-------------------------------------------------------------------------
 *
 * gateway_cim.h
 *	  Stored payment methods at the gateway: customer and payment profile
 *	  calls of the worker (gateway_cim.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_GATEWAY_CIM_H
#define PAYMENTS_GATEWAY_CIM_H

#include "utils/jsonb.h"

#include "gateway.h"

/* What a profile operation is working with and what it learned (op->cxt). */
typedef struct GatewayCim
{
	char	   *source;			/* save_method: card, opaque_data, payment */
	char	   *validation_mode;
	bool		make_default;
	char	   *customer_profile_id;	/* known, or learned */
	char	   *payment_profile_id;
	char	   *merchant_customer_id;
	char	   *email;
	char	   *name;
	Jsonb	   *billing;
	char	   *ref_trans_id;	/* save from a payment: its transaction */
	char	   *last4;			/* the card's, when known */
	char	   *taken;			/* save: ",id,...,id," of the payment profiles
								 * the customer's other live methods hold */
	bytea	   *sealed;			/* the vault row, kept sealed */
	bool		lookup;			/* the confirm step searches for what an
								 * earlier attempt may have saved */
	bool		resent;			/* already sent the create once more */
	char	   *gone_profile_id;	/* the customer's profile the gateway no
									 * longer has (E00040): the save makes a
									 * new one */
	/* learned */
	char	   *network_trans_id;
	char	   *account_number;
	char	   *account_type;
	char	   *code;			/* a failure's code (E00027, E00114, ...) */
} GatewayCim;

extern bool gateway_op_is_cim(const GatewayOp *op);
extern bool gateway_cim_build(GatewayOp *op, HeapTuple tuple, TupleDesc desc, char **error);
extern void gateway_cim_interpret(GatewayOp *op, bool *follow_up);
extern void gateway_cim_card_on_file(AnetTxnRequest *req, HeapTuple tuple, TupleDesc desc);
extern char *gateway_request_text(const char *s);
extern char *gateway_jsonb_text_field(Jsonb *obj, const char *key);

#endif
