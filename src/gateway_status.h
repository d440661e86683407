/*-------------------------------------------------------------------------
 *
 * gateway_status.h
 *	  Per-merchant gateway account state: account errors, the merchant's
 *	  backoff, credentials checks (payments.gateway_status).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_GATEWAY_STATUS_H
#define PAYMENTS_GATEWAY_STATUS_H

#include "gateway.h"

/*
 * Inside the worker's recording transaction (SPI connected), before the
 * outcomes are recorded: note what the replies of ops[0..n-1] said of their
 * merchants' accounts, and give the ops an account error held back the
 * merchant's retry time.
 */
extern void gateway_status_note(GatewayOp **ops, int n);
extern void gateway_status_note_list(dlist_head *finished);
extern bool gateway_status_has_news(const GatewayOp *op);

/* Publish the failing merchants to shared memory (SPI connected). */
extern void gateway_status_publish(void);

/* Record the answer to a credentials check (STAGE_VERIFY). */
extern void gateway_status_record_verification(GatewayOp *op);

#endif
