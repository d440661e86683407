/*-------------------------------------------------------------------------
 *
 * gateway.c
 *	  Turn a claimed operation into an Authorize.Net request, and the
 *	  reply (or the lack of one) into the outcome the database records.
 *
 * The decisions that keep money safe live here:
 *	- a transfer that provably never left (connect, DNS, TLS failed) is
 *	  retried with backoff;
 *	- anything that may have reached the gateway (timeout, reset, 5xx,
 *	  garbled reply) has an unknown outcome: it is resolved later by an
 *	  identical resend inside the duplicate window, or past it by looking
 *	  the transaction up (gateway_lookup.c), never guessed;
 *	- a duplicate reply (reason 11) names the original transaction, which
 *	  is then looked up (it may have been declined) before anything is
 *	  recorded;
 *	- every request sets duplicateWindow, so a resend cannot charge twice;
 *	- a refund or a void first asks for the payment's transaction
 *	  (STAGE_DECIDE): a settled capture is refunded, an unsettled one
 *	  voided (a full refund: the void is recorded before it is sent) or
 *	  waited for (a partial refund), and a void too late fails with a
 *	  reason that says to refund instead.
 *
 * It also reads the worker's checks of the gateway's state that belong to
 * no operation in flight: which captures settled (settlement.c) and what
 * became of payments and refunds held for review.  The lookup
 * (gateway_lookup.c) and the settlement check only read replies and say
 * what they found; the outcomes are set here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "common/string.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "mb/pg_wchar.h"
#include "utils/timestamp.h"

#include "anet_fields.h"
#include "card.h"
#include "gateway.h"
#include "gateway_cim.h"
#include "opaque_data.h"
#include "payments.h"
#include "reply_privacy.h"
#include "shmem.h"

/* Column of the claim result, as text (NULL when SQL NULL). */
char *
gateway_col(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "payments: claim result has no column \"%s\"", name);
	return SPI_getvalue(tuple, desc, n);
}

#define col gateway_col

int64
gateway_col_int64(HeapTuple tuple, TupleDesc desc, const char *name)
{
	char	   *v = col(tuple, desc, name);

	return v ? pg_strtoint64(v) : 0;
}

#define col_int64 gateway_col_int64

/*
 * The conversions between the database's encoding and UTF-8, the only
 * encoding the gateway reads, looked up once (in a transaction: the
 * catalog) and kept for the process's life: a request is also built
 * outside any transaction (a follow-up, a resend after a wait), where
 * pg_server_to_any cannot look them up and raises an ERROR that ends the
 * worker.  NULL in a UTF-8 or SQL_ASCII database, or until looked up.
 */
static FmgrInfo *to_utf8_proc = NULL;
static FmgrInfo *from_utf8_proc = NULL;

static FmgrInfo *
conversion_proc(int from, int to)
{
	Oid			proc = FindDefaultConversionProc(from, to);
	FmgrInfo   *f;

	if (!OidIsValid(proc))
		return NULL;
	f = MemoryContextAllocZero(TopMemoryContext, sizeof(FmgrInfo));
	fmgr_info_cxt(proc, f, TopMemoryContext);
	return f;
}

static void
prepare_conversions(void)
{
	int			enc = GetDatabaseEncoding();

	if (to_utf8_proc != NULL || enc == PG_UTF8 || enc == PG_SQL_ASCII || !IsTransactionState())
		return;
	from_utf8_proc = conversion_proc(PG_UTF8, enc);
	to_utf8_proc = conversion_proc(enc, PG_UTF8);
}

/*
 * s converted by proc (from encoding from to encoding to), or s itself when
 * it is ASCII, when there is nothing to convert with, or when a character
 * has no equivalent (then the protocol module refuses the text, or the log
 * keeps it as it is: never an ERROR here, in the middle of the worker's
 * round).
 */
static char *
convert_text(int from, int to, const char *s)
{
	FmgrInfo   *proc;
	int			len;
	char	   *result;
	int			done;

	if (s == NULL || pg_is_ascii(s))
		return unconstify(char *, s);
	prepare_conversions();
	proc = (to == PG_UTF8) ? to_utf8_proc : from_utf8_proc;
	if (proc == NULL)
		return unconstify(char *, s);
	len = strlen(s);
	result = palloc((Size) len * MAX_CONVERSION_GROWTH + 1);
	done = DatumGetInt32(FunctionCall6(proc, Int32GetDatum(from), Int32GetDatum(to),
									   CStringGetDatum(s), CStringGetDatum(result),
									   Int32GetDatum(len), BoolGetDatum(true)));
	if (done != len)
	{
		pfree(result);
		return unconstify(char *, s);
	}
	return result;
}

/*
 * Text of the database (the server encoding) as a request carries it:
 * UTF-8.  In a LATIN1 or WIN1252 database "Café" is not UTF-8 as stored,
 * and the protocol module refused it (the operation failed).  Every server
 * encoding but SQL_ASCII converts to UTF-8, and the callers' checks
 * (pay_check_gateway_input) converted the same text before it was queued;
 * in a SQL_ASCII database the bytes are sent as stored, and the protocol
 * module refuses what is not UTF-8 (that operation alone fails).
 */
char *
gateway_request_text(const char *s)
{
	return convert_text(GetDatabaseEncoding(), PG_UTF8, s);
}

/* A request (UTF-8) as the exchange log keeps it: in the database's encoding. */
static char *
request_for_log(const char *s)
{
	return convert_text(PG_UTF8, GetDatabaseEncoding(), s);
}

/*
 * A string or number field of a jsonb object (the customer, its billing
 * address), as a request carries it (gateway_request_text), or NULL.
 */
char *
gateway_jsonb_text_field(Jsonb *obj, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (obj == NULL)
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return gateway_request_text(pnstrdup(v->val.string.val, v->val.string.len));
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

#define jsonb_text_field gateway_jsonb_text_field

/* A capture refused with reason 16 whose authorization was not seen expired. */
#define CAPTURE_NOT_FOUND \
	"the gateway cannot find the authorization to capture (reason 16): nothing was captured; an authorization left uncaptured for 30 days expires, and pay_void records that"

/*
 * The refId sent with a request: the correlation id, at most 20 chars.  As
 * the request carries it, in UTF-8 (gateway_request_text), and so kept in
 * op->ref_id, which the reply's refId is compared with: in a LATIN1
 * database "Café" as stored is not UTF-8, and every operation of a request
 * with that correlation id failed ("refId is not valid UTF-8").
 */
static void
set_ref_id(GatewayOp *op)
{
	const char *cid = gateway_request_text(op->correlation_id);
	size_t		len = cid ? strlen(cid) : 0;

	if (len == 0)
		op->ref_id[0] = '\0';
	else if (len <= 20 && strcspn(cid, "\t\n\r") == len)
		strlcpy(op->ref_id, cid, sizeof(op->ref_id));
	else
	{
		/*
		 * long ids (UUIDs, traceparent): a stable 20-character digest; so
		 * too an id with a tab or a line break, which XML may hand back
		 * otherwise (a carriage return comes back a line feed) and the
		 * reply's refId would then not be ours
		 */
		char	   *md5 = text_to_cstring(DatumGetTextPP(DirectFunctionCall1(md5_text,
																			 CStringGetTextDatum(cid))));

		strlcpy(op->ref_id, md5, sizeof(op->ref_id));
	}
}

/* A copy of at most max characters of s (len bytes): never half a character. */
static char *
copy_chars(const char *s, int len, size_t max)
{
	return pnstrdup(s, pg_mbcharcliplen(s, len, (int) max));
}

/*
 * Split the card holder name into billTo's first and last name: the last
 * word is the last name, the words before it the first name ("Ada King
 * Lovelace": "Ada King" and "Lovelace"); a one-word name is a last name.
 * Each part is cut to the schema's limit (50 characters) at a character
 * boundary: the name on the card can be up to 100 characters, and the
 * gateway uses the billing name for records, not to authorize.
 */
static void
split_holder_name(const char *name, char **first, char **last)
{
	const char *sp = strrchr(name, ' ');
	const char *end;

	if (sp == NULL)
	{
		*first = NULL;
		*last = copy_chars(name, strlen(name),
						   anet_text_fields[ANET_FIELD_BILL_LAST_NAME].max_chars);
		return;
	}
	/* the holder name was trimmed, but words may be apart by several spaces */
	for (end = sp; end > name && end[-1] == ' '; end--)
		;
	*first = end > name ? copy_chars(name, end - name,
									 anet_text_fields[ANET_FIELD_BILL_FIRST_NAME].max_chars) : NULL;
	*last = copy_chars(sp + 1, strlen(sp + 1),
					   anet_text_fields[ANET_FIELD_BILL_LAST_NAME].max_chars);
}

/* The protocol module's message (malloc'd) as ours, in the op's memory. */
static char *
build_error(GatewayOp *op, char *perr)
{
	char	   *error = MemoryContextStrdup(op->cxt, perr ? perr : "the request could not be built");

	anet_free(perr);
	return error;
}

/*
 * Put the next request in op: the masked twin for the exchange log, then
 * the body to send, from one builder of the protocol module.  The previous
 * transfer's buffers are released (its log entry holds copies).  False,
 * with *error when error is not NULL, if the builder refused; the request
 * in op is then unchanged.
 */
bool
gateway_set_request(GatewayOp *op, const char *request_type, GatewayRequestBuilder build,
					const void *arg, char **error)
{
	AnetCredentials creds = {op->endpoint.login_id, op->endpoint.transaction_key};
	char	   *perr = NULL;
	char	   *built;
	char	   *masked;

	built = build(&creds, op, arg, true, &perr);
	if (built == NULL)
	{
		if (error)
			*error = build_error(op, perr);
		else
			anet_free(perr);
		return false;
	}
	{
		/* logged in the database: its encoding (the text came from it) */
		char	   *server = request_for_log(built);

		masked = MemoryContextStrdup(op->cxt, server);
		if (server != built)
			pfree(server);
	}
	anet_free(built);
	/* no palloc from here on: an ERROR must not leak a body with card data */
	built = build(&creds, op, arg, false, &perr);
	if (built == NULL)
	{
		pfree(masked);
		if (error)
			*error = build_error(op, perr);
		else
			anet_free(perr);
		return false;
	}
	http_request_release(&op->http);
	memset(&op->http, 0, sizeof(op->http));
	op->http.owner = op;
	op->http.body = built;
	op->http.body_len = strlen(built);
	op->request_type = request_type;
	op->request_masked = masked;
	return true;
}

/* createTransactionRequest; arg is the AnetTxnRequest. */
static char *
build_transaction(const AnetCredentials *creds, const GatewayOp *op pg_attribute_unused(),
				  const void *arg, bool masked, char **error)
{
	return anet_build_transaction_request(creds, (const AnetTxnRequest *) arg, masked, error);
}

/* getTransactionDetailsRequest; arg is the transId. */
static char *
build_details(const AnetCredentials *creds, const GatewayOp *op, const void *arg,
			  bool masked, char **error)
{
	return anet_build_get_transaction_details_request(creds, op->ref_id, (const char *) arg,
													  masked, error);
}

/* A scan of settled batches; arg is the BatchScan. */
static char *
build_batch_scan(const AnetCredentials *creds, const GatewayOp *op, const void *arg,
				 bool masked, char **error)
{
	return batch_scan_build(creds, op->ref_id, (const BatchScan *) arg, masked, error);
}

/*
 * Whether a refund or a void first asks what state the payment's
 * transaction is in (STAGE_DECIDE).  A void only before anything was sent:
 * one that may have reached the gateway is sent again as it was (a void
 * of a voided transaction changes nothing), or looked up.  A refund (not
 * one decided as a void, which carries via_void) always, also when an
 * earlier attempt may have gone out (the worker stopped while it was in
 * flight, say while it was still asking this same question): the gateway
 * refunds only a settled capture, so while the capture is unsettled no
 * earlier attempt can have refunded anything, and the refund is decided
 * anew (a void, or a wait); once it is settled the refund is sent again as
 * it was, and the duplicate window answers for an earlier one.
 */
static bool
needs_decision(const GatewayOp *op)
{
	if (strcmp(op->action, "send") != 0)
		return false;
	if (strcmp(op->kind, "refund") == 0)
		return !op->via_void;
	return strcmp(op->kind, "void") == 0 && !op->may_have_been_sent;
}

/*
 * The next request of op is getTransactionDetails of trans_id, read at
 * stage: STAGE_CONFIRM (what a duplicate reply or a lookup found:
 * interpret_confirm), STAGE_DECIDE (a refund's or void's payment:
 * interpret_decide), STAGE_EXPIRY (a capture's authorization:
 * interpret_expiry), STAGE_REVIEW (a payment or a refund held for review).
 * False, the stage unchanged, when the request cannot be built.
 */
static bool
ask_details(GatewayOp *op, GatewayStage stage, const char *trans_id, char **error)
{
	if (!gateway_set_request(op, "getTransactionDetailsRequest", build_details, trans_id, error))
		return false;
	op->stage = stage;
	op->asked_trans_id = trans_id ? MemoryContextStrdup(op->cxt, trans_id) : NULL;
	return true;
}

/*
 * Why a getTransactionDetails reply does not answer the question asked, or
 * NULL.  It must describe the transaction asked about: one of another
 * transId (a proxy or the gateway mixing up replies) says nothing of ours,
 * however well its invoice, card and amount match (taken for ours, the
 * payment was recorded under a transaction the gateway never named for
 * it, which no capture, refund or settlement then finds).
 */
static char *
details_not_asked(const GatewayOp *op, const AnetTxnDetails *d)
{
	if (!d->found || op->asked_trans_id == NULL || strcmp(d->trans_id, op->asked_trans_id) == 0)
		return NULL;
	return psprintf("the gateway, asked about transaction %s, described transaction %s",
					op->asked_trans_id, d->trans_id[0] ? d->trans_id : "(none)");
}

/* Begin looking the operation up by its invoice (gateway_lookup.c). */
static bool
start_lookup(GatewayOp *op, char **error)
{
	gateway_lookup_start(op);
	if (op->lookup.step != LOOKUP_ASK)
	{
		*error = op->lookup.detail;
		return false;
	}
	return gateway_set_request(op, gateway_lookup_request_type(op), gateway_lookup_build,
							   NULL, error);
}

/*
 * The card or opaque data of a purchase or authorization cannot be opened.
 * If no attempt can have reached the gateway, the operation fails with
 * the reason (false, *error set: the caller records it).  If one may have,
 * only the gateway knows whether it was charged, and the card cannot be
 * sent again: look the invoice up instead of resending.
 */
static bool
card_unopenable(GatewayOp *op, const char *reason, char **error)
{
	if (op->may_have_been_sent)
		return start_lookup(op, error);
	*error = pstrdup(reason);
	return false;
}

/*
 * Fill op from one row of payments._claim_operations().  The card, if any,
 * is unsealed only for as long as it takes to build the request body; the
 * body itself is wiped when the transfer ends.
 */
bool
gateway_build_operation(GatewayOp *op, HeapTuple tuple, TupleDesc desc, char **error)
{
	AnetTxnRequest req;
	char		amount[64];
	char	   *payment_method = col(tuple, desc, "payment_method");
	char	   *customer_text = col(tuple, desc, "customer");
	Jsonb	   *customer = NULL;
	OpaqueData	opaque = {0};
	CardSecret	secret;
	bool		have_secret = false;
	char		expiration[8];
	char	   *holder_first = NULL;
	char	   *holder_last = NULL;
	char	   *via_void;
	bool		ok;
	bool		isnull;
	Datum		sealed;

	/* in the claim's transaction: ready for what is built outside one */
	prepare_conversions();
	op->stage = STAGE_SEND;
	op->merchant_id = col_int64(tuple, desc, "merchant_id");
	op->operation_id = col_int64(tuple, desc, "operation_id");
	op->payment_id = col_int64(tuple, desc, "payment_id");
	op->payment_method_id = col_int64(tuple, desc, "payment_method_id");
	op->attempt = (int) col_int64(tuple, desc, "attempt");
	op->kind = col(tuple, desc, "kind");
	op->action = col(tuple, desc, "action");
	via_void = col(tuple, desc, "via_void");
	op->via_void = strcmp(op->kind, "refund") == 0 && via_void != NULL && strcmp(via_void, "t") == 0;
	/* the invoice of the gateway transaction (see _claim_operations) */
	op->txn_invoice = col(tuple, desc, "txn_invoice");
	op->payment_method = payment_method;
	op->card_last4 = col(tuple, desc, "card_last4");
	op->payment_profile_id = col(tuple, desc, "payment_profile_id");
	if (strcmp(op->kind, "refund") == 0 && !op->via_void)
		op->refund_of = col(tuple, desc, "ref_trans_id");
	op->correlation_id = col(tuple, desc, "correlation_id");
	op->amount_minor = col_int64(tuple, desc, "amount_minor");
	op->currency_exponent = (int) col_int64(tuple, desc, "currency_exponent");
	op->endpoint.login_id = col(tuple, desc, "api_login_id");
	op->endpoint.transaction_key = col(tuple, desc, "transaction_key");
	op->endpoint.url = col(tuple, desc, "endpoint_url");
	op->endpoint.ca_file = col(tuple, desc, "ca_file");
	op->endpoint.timeout_ms = col_int64(tuple, desc, "timeout_ms");
	{
		/*
		 * As a value, not through its text: the text of a timestamptz
		 * depends on the DateStyle and TimeZone the database or role sets
		 * for the worker, and read back it may name another moment: with
		 * DateStyle SQL, Asia/Shanghai's "CST" reads as US Central, 14
		 * hours later (a save that found nothing waited for an earlier
		 * request as if just sent, and failed); Dublin's summer "IST" as
		 * Israel's, an hour earlier (a request maybe still in flight was
		 * taken for settled).
		 */
		bool		null;
		Datum		v = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "last_attempt_at"), &null);

		op->last_attempt_at = null ? 0 : DatumGetTimestampTz(v);
	}
	set_ref_id(op);
	/* stored payment methods and customers' profiles: gateway_cim.c */
	if (gateway_op_is_cim(op))
		return gateway_cim_build(op, tuple, desc, error);
	if (customer_text)
		customer = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(customer_text)));

	/*
	 * Past the duplicate window: search the gateway, do not resend.  The
	 * card, still in the vault, gives the fingerprint the answer records.
	 */
	if (strcmp(op->action, "lookup") == 0)
	{
		/*
		 * A capture acts on its authorization's own transaction: the
		 * gateway tells what became of it (captured for our amount,
		 * still waiting, voided, expired) by its transId, whether or not
		 * any list shows it (an expired authorization is in none).
		 */
		if (strcmp(op->kind, "capture") == 0 &&
			(op->auth_trans_id = col(tuple, desc, "ref_trans_id")) != NULL)
			return ask_details(op, STAGE_CONFIRM, op->auth_trans_id, error);
		sealed = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "sealed"), &isnull);
		if (!isnull && strcmp(payment_method, "card") == 0)
		{
			bytea	   *b = DatumGetByteaPP(sealed);

			if (!card_sealed_fingerprint(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), op->card_fingerprint))
				op->card_fingerprint[0] = '\0';
		}
		return start_lookup(op, error);
	}

	memset(&req, 0, sizeof(req));
	req.ref_id = op->ref_id[0] ? op->ref_id : NULL;
	req.duplicate_window = PAYMENTS_DUPLICATE_WINDOW_S;
	if (anet_amount_to_decimal(op->amount_minor, op->currency_exponent, amount, sizeof(amount)) < 0)
	{
		*error = pstrdup("the amount could not be written as a decimal");
		return false;
	}
	req.invoice_number = op->txn_invoice;

	if (strcmp(op->kind, "purchase") == 0 || strcmp(op->kind, "authorize") == 0)
	{
		req.type = strcmp(op->kind, "purchase") == 0 ? ANET_AUTH_CAPTURE : ANET_AUTH_ONLY;
		req.amount = amount;
		req.currency_code = col(tuple, desc, "currency");
		req.description = gateway_request_text(col(tuple, desc, "description"));
		req.customer_id = jsonb_text_field(customer, "id");
		req.customer_email = jsonb_text_field(customer, "email");
		req.bill_first_name = jsonb_text_field(customer, "first_name");
		req.bill_last_name = jsonb_text_field(customer, "last_name");
		req.bill_company = jsonb_text_field(customer, "company");
		req.bill_address = jsonb_text_field(customer, "address");
		req.bill_city = jsonb_text_field(customer, "city");
		req.bill_state = jsonb_text_field(customer, "state");
		req.bill_zip = jsonb_text_field(customer, "zip");
		req.bill_country = jsonb_text_field(customer, "country");
		req.customer_ip = jsonb_text_field(customer, "ip");

		sealed = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "sealed"), &isnull);
		if (strcmp(payment_method, "card") == 0)
		{
			PayCardHeader hdr;
			CardOpenStatus status = CARD_OPEN_LOST;	/* no vault row: lost */

			/*
			 * A card that cannot be opened (lost: no vault row, or its key
			 * is gone, card_open_failure says how; a corrupt row) fails
			 * this operation alone, with the reason.
			 */
			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(sealed);

				status = card_open_sealed(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &hdr, &secret);
			}
			if (status != CARD_OPEN_OK)
				return card_unopenable(op, card_open_failure(status), error);
			have_secret = true;
			if (card_fingerprint_key_ready())
				card_number_fingerprint_hex(secret.pan, op->card_fingerprint);
			snprintf(expiration, sizeof(expiration), "%04d-%02d",
					 hdr.exp_year, hdr.exp_month);
			req.card_number = secret.pan;
			req.card_expiration = expiration;
			req.card_code = secret.has_cvv ? secret.cvv : NULL;
			if (secret.has_holder_name && req.bill_last_name == NULL)
			{
				split_holder_name(secret.holder_name, &holder_first, &holder_last);
				req.bill_first_name = gateway_request_text(holder_first);
				req.bill_last_name = gateway_request_text(holder_last);
			}
		}
		else if (strcmp(payment_method, "opaque_data") == 0)
		{
			CardVaultStatus status = CARD_VAULT_KEY_GONE;

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(sealed);

				status = opaque_data_open((const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &opaque);
			}
			if (status != CARD_VAULT_OPENED)
				return card_unopenable(op, opaque_data_open_failure(status), error);
			req.opaque_descriptor = opaque.descriptor;
			req.opaque_value = opaque.value;
		}
		else
		{
			req.profile_customer_id = col(tuple, desc, "customer_profile_id");
			req.profile_payment_id = col(tuple, desc, "payment_profile_id");
			/* a stored method: card on file (gateway_cim.c) */
			gateway_cim_card_on_file(&req, tuple, desc);
		}
	}
	else if (strcmp(op->kind, "capture") == 0)
	{
		req.type = ANET_PRIOR_AUTH_CAPTURE;
		req.amount = amount;
		op->auth_trans_id = col(tuple, desc, "ref_trans_id");
		req.ref_trans_id = op->auth_trans_id;
	}
	else if (strcmp(op->kind, "void") == 0 || op->via_void)
	{
		req.type = ANET_VOID;
		req.invoice_number = NULL;
		req.ref_trans_id = col(tuple, desc, "ref_trans_id");
	}
	else if (strcmp(op->kind, "refund") == 0)
	{
		/*
		 * A linked refund names the card by its last four, whatever paid
		 * (a card, Accept.js or a stored profile): a profile may be deleted
		 * by then, its customer too, and a refund through it would fail
		 * (E00040).  The profile only when the last four are unknown (a
		 * payment made with bare profile ids, whose decision did not learn
		 * them).
		 */
		req.type = ANET_REFUND;
		req.amount = amount;
		req.ref_trans_id = col(tuple, desc, "ref_trans_id");
		req.card_number = col(tuple, desc, "card_last4");
		if (req.card_number != NULL)
			req.card_expiration = "XXXX";
		else if (strcmp(payment_method, "profile") == 0)
		{
			req.profile_customer_id = col(tuple, desc, "customer_profile_id");
			req.profile_payment_id = col(tuple, desc, "payment_profile_id");
		}
		else if (!needs_decision(op))
		{
			*error = pstrdup("the payment's card last four digits are unknown, so it cannot be refunded");
			return false;
		}
	}
	else
	{
		*error = psprintf("unknown operation kind \"%s\"", op->kind);
		return false;
	}

	if (needs_decision(op))
	{
		/* first the payment's transaction; the request waits in op */
		op->send_req = req;
		op->send_req.amount = req.amount ? pstrdup(req.amount) : NULL;
		return ask_details(op, STAGE_DECIDE, req.ref_trans_id, error);
	}
	op->sent_ref_trans_id = req.ref_trans_id;
	ok = gateway_set_request(op, "createTransactionRequest", build_transaction, &req, error);
	if (have_secret)
		explicit_bzero(&secret, sizeof(secret));
	opaque_data_wipe(&opaque);
	return ok;
}

/* Checks of the gateway's state that belong to no operation. */
bool
gateway_op_is_check(const GatewayOp *op)
{
	return op->stage == STAGE_SETTLEMENT || op->stage == STAGE_REVIEW;
}

/*
 * A settlement check of one merchant: which of these captures (transIds,
 * captured at captured_at[i]) settled, from the batch lists; mark: what the
 * merchant's last complete check left (settlement.h), or NULL.  False when
 * there is nothing to ask.
 */
bool
gateway_build_settlement_scan(GatewayOp *op, char **trans_ids, const TimestampTz *captured_at,
							  int n, const SettlementMark *mark)
{
	op->stage = STAGE_SETTLEMENT;
	set_ref_id(op);
	op->settlement = palloc0(sizeof(SettlementCheck));
	if (settlement_check_begin(op->settlement, trans_ids, captured_at, n, mark) != SETTLEMENT_ASK)
		return false;
	return gateway_set_request(op, batch_scan_request_type(&op->settlement->scan),
							   build_batch_scan, &op->settlement->scan, NULL);
}

/* A review check: getTransactionDetails of a payment or refund held for review. */
bool
gateway_build_review_check(GatewayOp *op, const char *trans_id)
{
	op->stage = STAGE_REVIEW;	/* a check, whether or not it can be asked */
	set_ref_id(op);
	return ask_details(op, STAGE_REVIEW, trans_id, NULL);
}

/* authenticateTestRequest; arg is unused. */
static char *
build_verification(const AnetCredentials *creds, const GatewayOp *op,
				   const void *arg pg_attribute_unused(), bool masked, char **error)
{
	return anet_build_authenticate_test_request(creds, op->ref_id[0] ? op->ref_id : NULL,
												masked, error);
}

/* A credentials check of op's merchant (authenticateTestRequest). */
bool
gateway_build_verification(GatewayOp *op)
{
	op->stage = STAGE_VERIFY;
	set_ref_id(op);
	return gateway_set_request(op, "authenticateTestRequest", build_verification, NULL, NULL);
}

/*
 * Exponential backoff with jitter: min_ms * 2^(attempt-1), capped at
 * max_ms, then a random point between half and all of it, so that many
 * failed operations do not return in one burst.
 */
static TimestampTz
gateway_backoff(int attempt, int min_ms, int max_ms)
{
	double		ms = min_ms;

	for (int i = 1; i < attempt && ms < max_ms; i++)
		ms *= 2;
	ms = Min(ms, (double) max_ms);
	ms = ms / 2 + pg_prng_double(&pg_global_prng_state) * ms / 2;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) ms);
}

/*
 * An attempt number for gateway_backoff from how long the operation has
 * waited (1 + log2 of its seconds), for retries whose attempts are given
 * back: they back off as if counted, without becoming dead letters.
 */
static int
waited_attempts(const GatewayOp *op)
{
	long		secs;
	int			usecs;
	int			n = 1;

	if (op->created_at == 0)
		return op->attempt;
	TimestampDifference(op->created_at, GetCurrentTimestamp(), &secs, &usecs);
	for (; secs > 1 && n < 20; secs /= 2)
		n++;
	return Max(n, op->attempt);
}

static const char *const gateway_outcome_names[] = {
	[OUTCOME_NONE] = NULL,
	[OUTCOME_APPROVED] = "approved",
	[OUTCOME_HELD] = "held",
	[OUTCOME_DECLINED] = "declined",
	[OUTCOME_ERROR] = "error",
	[OUTCOME_REJECTED] = "rejected",
	[OUTCOME_RETRY] = "retry",
	[OUTCOME_UNKNOWN] = "unknown",
	[OUTCOME_CHECKED] = "checked",
	[OUTCOME_VOID_FIRST] = "void",
	[OUTCOME_WAIT] = "wait",
	[OUTCOME_REFUND_INSTEAD] = "refund",
	[OUTCOME_EXPIRED] = "expired",
};

const char *
gateway_outcome_name(GatewayOutcomeKind outcome)
{
	Assert((size_t) outcome < lengthof(gateway_outcome_names));
	return gateway_outcome_names[outcome];
}

void
gateway_set_outcome(GatewayOp *op, GatewayOutcomeKind outcome, const char *error)
{
	op->done = true;
	op->result.outcome = outcome;
	op->result.error = error ? pstrdup(error) : NULL;
	op->result.unreached = false;
}

/* An outcome to act on again later: after gateway_backoff(min_ms, max_ms). */
void
gateway_set_outcome_later(GatewayOp *op, int min_ms, int max_ms, GatewayOutcomeKind outcome,
						  const char *error)
{
	op->result.retry_at = gateway_backoff(op->attempt, min_ms, max_ms);
	gateway_set_outcome(op, outcome, error);
}

static void
set_txn_fields(GatewayOp *op, const AnetTxnResult *r)
{
	op->result.response_code = r->response_code;
	op->result.reason_code = r->reason_code;
	op->result.reason_text = pstrdup(r->reason_text);
	op->result.trans_id = pstrdup(r->trans_id);
	op->result.auth_code = pstrdup(r->auth_code);
	op->result.avs = pstrdup(r->avs_result);
	op->result.cvv = pstrdup(r->cvv_result);
	op->result.account_number = pstrdup(r->account_number);
	op->result.network_trans_id = pstrdup(r->network_trans_id);
}

/* True when the transfer failed below HTTP (for the circuit breaker). */
bool
gateway_transport_failed(GatewayOp *op)
{
	return op->http.outcome != HTTP_COMPLETED ||
		op->http.http_status >= 500 || op->http.http_status == 0;
}

/*
 * What the gateway's reply says of the merchant's account: op->account is
 * set to ACCOUNT_FAILED (with the code and text) for an account error,
 * ACCOUNT_OK when the gateway got past the credentials (a success, or an
 * error about the request itself that only an authenticated request gets).
 * True for an account error.
 */
static bool
reply_account_failed(GatewayOp *op)
{
	AnetReplyStatus st;

	if (!anet_parse_reply_status(op->http.response, op->http.response_len, &st))
		return false;
	if (anet_message_code_is_account_error(st.message_code))
	{
		op->account = ACCOUNT_FAILED;
		op->account_code = pstrdup(st.message_code);
		op->account_text = pstrdup(st.message_text);
		return true;
	}
	/* E00027: a transaction error; E00040: an unknown record */
	if (st.ok || strcmp(st.message_code, "E00027") == 0 || strcmp(st.message_code, "E00040") == 0)
		op->account = ACCOUNT_OK;
	return false;
}

/*
 * An account error: the request provably did nothing, but neither will
 * the next one until the account or the configuration is fixed.  Never a
 * final answer (the payment is not declined): a send is queued again, a
 * question about an operation that may have gone through leaves it
 * unknown.  The retry time is a placeholder; the merchant's backoff
 * (payments._gateway_status_note) replaces it.
 */
static void
account_outcome(GatewayOp *op)
{
	char	   *error = psprintf("the merchant's gateway account failed: %s %s",
								 op->account_code, op->account_text);

	op->result.response_code = 0;
	op->result.reason_code = 0;
	op->result.reason_text = NULL;
	op->result.trans_id = NULL;
	if (op->stage == STAGE_SEND || op->stage == STAGE_DECIDE || op->stage == STAGE_EXPIRY ||
		(op->stage == STAGE_CIM && !op->may_have_been_sent))
		gateway_set_outcome_later(op, 30000, 60000, OUTCOME_RETRY, error);
	else if (op->stage == STAGE_CONFIRM || op->stage == STAGE_LOOKUP ||
			 op->stage == STAGE_CIM || op->stage == STAGE_CIM_CONFIRM)
		gateway_set_outcome_later(op, 30000, 60000, OUTCOME_UNKNOWN, error);
	else
	{
		op->done = true;
		op->result.outcome = OUTCOME_CHECKED;
		op->result.error = error;
	}
}

/*
 * A resend refused as a whole, after an earlier attempt that may have gone
 * through: the refusal says nothing of that attempt.  Accept.js opaque data
 * is single-use (the first attempt consumed it: E00114), a stored profile
 * may be deleted since (E00040).  Recorded as a rejection, a payment charged
 * by the first attempt would read as failed: the worker searches the
 * gateway for the invoice instead, as past the duplicate window.
 */
static void
reject_resend(GatewayOp *op, const AnetTxnResult *r, bool *follow_up)
{
	char	   *error = NULL;

	/* what the refusal says of now (profile_gone_on_resend) */
	op->resend_refused = pstrdup(r->message_code);
	if (start_lookup(op, &error))
	{
		*follow_up = true;
		return;
	}
	gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN,
							  psprintf("a resend was refused (%s %s) and the gateway could not be searched: %s",
									   r->message_code, r->message_text,
									   error ? error : "no reason given"));
}

/*
 * A capture answered 310 (the authorization is voided) or 311 (it is
 * captured already), which the gateway may class as approved: nothing was
 * captured now.  Voided (in the Merchant Interface, say): no money moves,
 * an error that says so.  Captured before, by an earlier attempt of ours or
 * by someone else, maybe of another amount: the payment's transaction is
 * asked about, and interpret_confirm takes it only with our amount.
 */
static void
capture_done_before(GatewayOp *op, const AnetTxnResult *r, bool *follow_up)
{
	char	   *error = NULL;

	if (r->reason_code == 310)
	{
		gateway_set_outcome(op, OUTCOME_ERROR,
							"the authorization was voided at the gateway (reason 310): nothing was captured; record it with pay_void");
		return;
	}
	op->first_reply = *r;
	if (r->trans_id[0] != '\0' && strcmp(r->trans_id, "0") != 0 ?
		ask_details(op, STAGE_CONFIRM, r->trans_id, NULL) : start_lookup(op, &error))
		*follow_up = true;
	else
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
								  "the gateway says the authorization was captured already (reason 311), and the capture could not be asked about");
}

/*
 * Why a reply is another request's, by its refId (the gateway echoes the one
 * sent), or NULL.  Any reply: a transaction's, a customer profile's.
 */
char *
gateway_reply_ref_mismatch(const GatewayOp *op, const char *reply_ref_id)
{
	if (op->ref_id[0] == '\0' || reply_ref_id[0] == '\0' || strcmp(op->ref_id, reply_ref_id) == 0)
		return NULL;
	return psprintf("the gateway's reply carries refId %s, not the request's %s: it answers another request",
					reply_ref_id, op->ref_id);
}

/*
 * Why a createTransaction reply does not answer the request sent, or NULL.
 * The gateway echoes the refId sent; a capture or a void answers with the
 * transaction it acted on (transId and refTransID both the one sent), a
 * refund with a transaction of its own (refTransID the one refunded).  A
 * reply naming anything else answers another request (a proxy or a
 * gateway mixing up replies): taken as ours, a payment would be recorded
 * approved, declined or refunded by what happened to someone else, under
 * a transId that is not its own.  Its outcome is unknown: resolved from
 * the gateway's record, as a reply that never came.  Absent or empty
 * members say nothing and are not held against the reply, nor is the
 * refTransID of a reply that names no transaction (transId empty or "0":
 * an error, which the samples show with another refTransID than sent): it
 * is judged by its refId alone, and its reason recorded, rather than
 * resent until it is a dead letter.
 */
static char *
reply_not_ours(const GatewayOp *op, const AnetTxnResult *r)
{
	const char *sent = op->sent_ref_trans_id;
	bool		own_txn = strcmp(op->kind, "refund") == 0 && !op->via_void;
	char	   *other_ref = gateway_reply_ref_mismatch(op, r->ref_id);

	if (other_ref != NULL)
		return other_ref;
	if (sent == NULL || sent[0] == '\0' ||
		r->trans_id[0] == '\0' || strcmp(r->trans_id, "0") == 0)
		return NULL;
	if (r->ref_trans_id[0] != '\0' && strcmp(r->ref_trans_id, sent) != 0)
		return psprintf("the gateway's reply names refTransID %s, not the transaction %s the request acted on: it answers another request",
						r->ref_trans_id, sent);
	if (own_txn && strcmp(r->trans_id, sent) == 0)
		return psprintf("the gateway's reply to a refund of transaction %s names that transaction as the refund's own",
						sent);
	if (!own_txn && strcmp(r->trans_id, sent) != 0)
		return psprintf("the gateway's reply names transaction %s, not the transaction %s the request acted on: it answers another request",
						r->trans_id, sent);
	return NULL;
}

/* The reply to a createTransaction of this op. */
static void
interpret_send(GatewayOp *op, bool *follow_up)
{
	AnetTxnResult r;
	char	   *not_ours;

	if (!anet_parse_transaction_response(op->http.response, op->http.response_len, &r) ||
		r.unknown_outcome)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, r.outcome == ANET_MALFORMED ?
					"the gateway's reply could not be understood" : "the gateway timed out processing the request");
		return;
	}
	if ((not_ours = reply_not_ours(op, &r)) != NULL)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, not_ours);
		return;
	}
	if (r.outcome == ANET_REQUEST_REJECTED)
	{
		op->result.reason_text = pstrdup(r.message_text);
		if (r.retryable)
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_RETRY, psprintf("%s %s", r.message_code, r.message_text));
		else if (op->may_have_been_sent)
			reject_resend(op, &r, follow_up);
		else
			gateway_set_outcome(op, OUTCOME_REJECTED, r.message_code);
		return;
	}
	set_txn_fields(op, &r);
	if (r.outcome == ANET_ERROR && anet_reason_code_is_account_error(r.reason_code))
	{
		/* the merchant's account, not this payment: nothing was stored */
		op->account = ACCOUNT_FAILED;
		op->account_code = psprintf("%d", r.reason_code);
		op->account_text = pstrdup(r.reason_text);
		account_outcome(op);
		return;
	}
	if ((r.outcome == ANET_APPROVED || r.outcome == ANET_HELD_FOR_REVIEW) &&
		(r.test_request || r.trans_id[0] == '\0' || strcmp(r.trans_id, "0") == 0))
	{
		/*
		 * An account in Test Mode approves and stores nothing (testRequest
		 * 1, transId 0): no money moved, and nothing can be captured,
		 * voided or refunded later.  The merchant's account, as E00009 is.
		 */
		op->account = ACCOUNT_FAILED;
		op->account_code = pstrdup("E00009");
		op->account_text = pstrdup("The payment gateway account is in Test Mode: the transaction was answered but not stored (transId 0).");
		account_outcome(op);
		return;
	}
	if (strcmp(op->kind, "capture") == 0 && (r.reason_code == 310 || r.reason_code == 311))
	{
		capture_done_before(op, &r, follow_up);
		return;
	}
	switch (r.outcome)
	{
		case ANET_APPROVED:
			gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
			return;
		case ANET_HELD_FOR_REVIEW:
			gateway_set_outcome(op, OUTCOME_HELD, NULL);
			return;
		case ANET_DECLINED:
			gateway_set_outcome(op, OUTCOME_DECLINED, NULL);
			return;
		default:
			break;
	}
	if (r.is_duplicate && r.trans_id[0] != '\0' && strcmp(r.trans_id, "0") != 0)
	{
		/* the original went through, or was declined: ask which */
		op->first_reply = r;
		if (ask_details(op, STAGE_CONFIRM, r.trans_id, NULL))
		{
			*follow_up = true;
			return;
		}
	}
	if (r.is_duplicate)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, "duplicate reply without the original transaction");
		return;
	}
	if (r.retryable)
	{
		/* 19-23 and friends can leave a hold at the issuer: wait minutes */
		gateway_set_outcome_later(op, 60000, 900000, OUTCOME_RETRY, r.reason_text);
		return;
	}
	if (op->via_void && r.reason_code == 16)
	{
		/*
		 * No unsettled transaction to void: the capture settled since it
		 * was decided, most likely.  The refund goes out as a refund after
		 * all (decided again from the capture's state).
		 */
		gateway_set_outcome(op, OUTCOME_REFUND_INSTEAD,
							"the capture settled before its void went out (reason 16): refunded instead");
		return;
	}
	if (strcmp(op->kind, "capture") == 0 && r.reason_code == 16)
	{
		/*
		 * Nothing was captured.  An authorization uncaptured for 30 days
		 * expires at the gateway: ask whether it did (interpret_expiry).
		 */
		if (op->auth_trans_id != NULL && ask_details(op, STAGE_EXPIRY, op->auth_trans_id, NULL))
			*follow_up = true;
		else
			gateway_set_outcome(op, OUTCOME_ERROR, CAPTURE_NOT_FOUND);
		return;
	}
	if (strcmp(op->kind, "void") == 0 && r.reason_code == 16)
	{
		/* it was unsettled when asked: it settled since, most likely */
		gateway_set_outcome(op, OUTCOME_ERROR,
							"the gateway no longer has an unsettled transaction to void (reason 16): if the payment has settled meanwhile, refund it instead (pay_refund)");
		return;
	}
	if (strcmp(op->kind, "refund") == 0 && r.reason_code == 54 &&
		op->learned_settled_at != NULL && op->learned_settled_at[0] != '\0')
	{
		/*
		 * A settled capture refused a refund: past the refund window, most
		 * likely.  Said plainly, with the settlement date the question
		 * before it learned (the reason text alone names no cause).
		 */
		gateway_set_outcome(op, OUTCOME_ERROR,
							psprintf("the gateway refuses to refund transaction %s, settled at %s (reason 54): Authorize.Net refunds a settled transaction only within 180 days of its settlement (120 by older documents); past that, the money must be returned some other way",
									 op->learned_trans_id ? op->learned_trans_id : "", op->learned_settled_at));
		return;
	}
	gateway_set_outcome(op, OUTCOME_ERROR, NULL);
}

/* An amount the gateway states: present and not zero. */
static bool
stated(const char *text, int exponent)
{
	int64_t		amount;

	return text[0] != '\0' &&
		(!anet_reply_decimal_to_minor(text, exponent, &amount) || amount != 0);
}

/*
 * A charge or an authorization that moved money moved the amount
 * authorized, whatever the amount requested: shown other than ours (a
 * partial authorization, which we never ask for, or the gateway's own
 * mistake), recorded as ours the payment would claim money that did not
 * move, or hide money that did.  Why the authorized amount is not ours, or
 * NULL (also when not stated).
 */
static char *
authorized_mismatch(const GatewayOp *op, const AnetTxnDetails *d)
{
	int64_t		amount;
	char		ours[32];

	if (!stated(d->auth_amount, op->currency_exponent))
		return NULL;
	if (!anet_reply_decimal_to_minor(d->auth_amount, op->currency_exponent, &amount))
		return psprintf("the amount %s of the gateway's transaction %s could not be read",
						d->auth_amount, d->trans_id);
	if (amount == op->amount_minor)
		return NULL;
	if (anet_amount_to_decimal(op->amount_minor, op->currency_exponent, ours, sizeof(ours)) < 0)
		strlcpy(ours, "another amount", sizeof(ours));
	return psprintf("the gateway's transaction %s under invoice %s is authorized for %s, not %s",
					d->trans_id, d->invoice_number[0] ? d->invoice_number : op->txn_invoice,
					d->auth_amount, ours);
}

/*
 * Why the transaction the gateway describes is not this operation's, or
 * NULL when it is.  An invoice number names one charge (a subscription
 * period's charge made again after a failover is the same charge), so a
 * mismatch means a transaction made under our invoice by someone else (a
 * database copy charging with the same tag, a promoted standby that
 * handed out an id again, a charge keyed in by hand): it is never taken
 * for ours, whatever its status (a stranger's decline must not fail a
 * payment that was in fact charged).
 *
 * A purchase, an authorization or a refund sent as one is its own
 * transaction: it must carry our invoice, be of our card as far as both
 * sides tell (gateway_card_mismatch), and our amount, the requested one
 * when stated, else the authorized one (for a refund, else the settled
 * one); a held or declined transaction may show 0.00 (no amount stated),
 * one that moved money may not.  A capture acts on the payment's
 * transaction: once captured, its settle amount must be ours.  A void (or
 * a refund sent as one) moves no amount; the invoice is checked when shown.
 */
static char *
identity_mismatch(const GatewayOp *op, const AnetTxnDetails *d, AnetStatusClass cls)
{
	bool		own_txn = strcmp(op->kind, "purchase") == 0 ||
		strcmp(op->kind, "authorize") == 0 ||
		(strcmp(op->kind, "refund") == 0 && !op->via_void);
	bool		moved = cls == ANET_STATUS_PENDING_CAPTURE ||
		cls == ANET_STATUS_PENDING_SETTLEMENT || cls == ANET_STATUS_SETTLED;
	const char *text = NULL;
	int64_t		amount;
	char		ours[32];
	char	   *card;

	if (op->txn_invoice != NULL &&
		(d->invoice_number[0] != '\0' || own_txn) &&
		strcmp(op->txn_invoice, d->invoice_number) != 0)
		return psprintf("the gateway's transaction %s carries invoice %s, not %s",
						d->trans_id, d->invoice_number[0] ? d->invoice_number : "(none)",
						op->txn_invoice);
	/*
	 * a refund's own transaction is a refund; a charge's is not one, nor a
	 * void (the merchant may refund a charge by hand under its invoice)
	 */
	if (own_txn && d->transaction_type[0] != '\0')
	{
		bool		refund_txn = strcmp(d->transaction_type, "refundTransaction") == 0;

		if (strcmp(op->kind, "refund") == 0 ? !refund_txn :
			refund_txn || strcmp(d->transaction_type, "voidTransaction") == 0)
			return psprintf("the gateway's transaction %s under invoice %s is a %s, not the operation's %s",
							d->trans_id, d->invoice_number[0] ? d->invoice_number : op->txn_invoice,
							d->transaction_type, op->kind);
	}
	/*
	 * a refund's own transaction refunds its payment's: a refund of another
	 * payment under the same number (a database copy or a promoted standby
	 * that handed out an operation id again) is not it, whatever its card
	 * and amount
	 */
	if (op->refund_of != NULL && op->refund_of[0] != '\0' && d->ref_trans_id[0] != '\0' &&
		strcmp(d->ref_trans_id, op->refund_of) != 0)
		return psprintf("the gateway's transaction %s under invoice %s refunds transaction %s, not the payment's %s",
						d->trans_id, d->invoice_number[0] ? d->invoice_number : op->txn_invoice,
						d->ref_trans_id, op->refund_of);
	card = gateway_card_mismatch(op, d->account_number, d->customer_payment_profile_id);
	if (card != NULL)
		return psprintf("the gateway's transaction %s under invoice %s %s",
						d->trans_id, d->invoice_number[0] ? d->invoice_number : op->txn_invoice, card);
	if (own_txn)
	{
		if (d->requested_amount[0] != '\0')
			text = d->requested_amount;
		else if (stated(d->auth_amount, op->currency_exponent))
			text = d->auth_amount;
		else if (strcmp(op->kind, "refund") == 0 && stated(d->settle_amount, op->currency_exponent))
			text = d->settle_amount;	/* a refund's amount, however shown */
		else if (moved)
			text = d->auth_amount[0] != '\0' ? d->auth_amount : "(none)";
	}
	else if (strcmp(op->kind, "capture") == 0 && d->settle_amount[0] != '\0' &&
			 (cls == ANET_STATUS_PENDING_SETTLEMENT || cls == ANET_STATUS_SETTLED))
		text = d->settle_amount;
	if (text == NULL)
		return NULL;			/* no amount to compare */
	if (!anet_reply_decimal_to_minor(text, op->currency_exponent, &amount))
		return psprintf("the amount %s of the gateway's transaction %s could not be read",
						text, d->trans_id);
	if (amount == op->amount_minor)
		return own_txn && moved && strcmp(op->kind, "refund") != 0 ?
			authorized_mismatch(op, d) : NULL;
	if (anet_amount_to_decimal(op->amount_minor, op->currency_exponent, ours, sizeof(ours)) < 0)
		strlcpy(ours, "another amount", sizeof(ours));
	return psprintf("the gateway's transaction %s under invoice %s is for %s, not %s",
					d->trans_id, d->invoice_number[0] ? d->invoice_number : op->txn_invoice,
					text, ours);
}

/*
 * The lookup's hits are confirmed one by one (apply_lookup starts with
 * the first): the one whose details pass identity_mismatch answers for
 * the operation, if it is the only one.  True when this reply (d) is to
 * be acted on; false with the next request set (*follow_up) or the
 * outcome set (unknown: none matched, or two did).  The one that matched,
 * if not the last asked about, is asked about again, as a plain
 * confirmation: the reply acted on is then the last in the exchange log.
 */
static bool
next_hit(GatewayOp *op, const AnetTxnDetails *d, char *mismatch, bool *follow_up)
{
	GatewayLookup *lk = &op->lookup;
	const char *ask;

	if (mismatch != NULL)
		lk->mismatches = lk->mismatches == NULL ? mismatch :
			psprintf("%s; %s", lk->mismatches, mismatch);
	else if (lk->passed[0] == '\0')
		strlcpy(lk->passed, d->trans_id, sizeof(lk->passed));
	else
	{
		/* a person must look: asked again only now and then */
		gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN,
								  psprintf("the gateway's transactions %s and %s under invoice %s both match the operation: a person must tell which, if any, is its own",
										   lk->passed, d->trans_id, op->txn_invoice));
		return false;
	}
	if (++lk->confirming < lk->nhits)
		ask = lk->hits[lk->confirming];
	else if (lk->passed[0] == '\0')
	{
		gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN, lk->mismatches);
		return false;
	}
	else if (strcmp(lk->passed, d->trans_id) == 0)
		return true;
	else
	{
		ask = lk->passed;
		lk->confirming_hits = false;
	}
	if (ask_details(op, STAGE_CONFIRM, ask, NULL))
		*follow_up = true;
	else
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
								  psprintf("the transaction %s found could not be asked about", ask));
	return false;
}

/*
 * The reply to getTransactionDetails after a duplicate reply or a lookup
 * hit: the status of the transaction that answers for this operation (for
 * a capture or a void, the payment's transaction they act on; for a
 * refund, the refund's own transaction) says what became of it.
 */
static void
interpret_confirm(GatewayOp *op, bool *follow_up)
{
	AnetTxnDetails d;
	AnetStatusClass cls;
	char	   *mismatch;
	bool		first_op = strcmp(op->kind, "purchase") == 0 || strcmp(op->kind, "authorize") == 0;
	bool		voids = strcmp(op->kind, "void") == 0 || op->via_void;

	if (!anet_parse_transaction_details_response(op->http.response, op->http.response_len, &d) ||
		!d.found)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, "the original transaction could not be looked up");
		return;
	}
	if ((mismatch = details_not_asked(op, &d)) != NULL)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, mismatch);
		return;
	}
	cls = anet_classify_transaction_status(d.transaction_status);
	mismatch = identity_mismatch(op, &d, cls);
	if (op->lookup.confirming_hits)
	{
		if (!next_hit(op, &d, mismatch, follow_up))
			return;
	}
	else if (mismatch != NULL)
	{
		/* a person must look: asked again only now and then */
		gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN, mismatch);
		return;
	}
	op->result.response_code = d.response_code;
	op->result.reason_code = d.reason_code;
	op->result.reason_text = pstrdup(d.reason_text);
	op->result.trans_id = pstrdup(d.trans_id);
	op->result.auth_code = pstrdup(d.auth_code);
	op->result.avs = pstrdup(d.avs_response);
	op->result.cvv = pstrdup(d.card_code_response);
	op->result.account_number = pstrdup(d.account_number);

	switch (cls)
	{
		case ANET_STATUS_PENDING_CAPTURE:
			if (first_op)
				gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
			else
				gateway_set_outcome(op, OUTCOME_ERROR, "the gateway shows the transaction still waiting for capture");
			return;
		case ANET_STATUS_PENDING_SETTLEMENT:
		case ANET_STATUS_SETTLED:
			if (!voids)
				gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
			else if (!op->via_void)
				gateway_set_outcome(op, OUTCOME_ERROR,
									psprintf("the gateway shows the transaction %s, not voided",
											 d.transaction_status));

			/*
			 * A refund sent as a void that did not happen: sent again while
			 * the capture is unsettled, else as a refund after all.
			 */
			else if (cls == ANET_STATUS_PENDING_SETTLEMENT)
				gateway_set_outcome_later(op, 1000, 60000, OUTCOME_RETRY,
										  "the gateway shows the capture unvoided and unsettled: its void is sent again");
			else
				gateway_set_outcome(op, OUTCOME_REFUND_INSTEAD,
									"the capture settled before its void went through: refunded instead");
			return;
		case ANET_STATUS_VOIDED:
			if (voids)
			{
				gateway_set_outcome(op, OUTCOME_APPROVED, NULL);
				return;
			}

			/*
			 * Approved, then voided by someone else (this operation being
			 * unresolved, the payment could not be voided through us): no
			 * money moved, so neither a charge nor a refund is recorded.
			 * The approval's codes would read as a decline code; they go.
			 */
			op->result.response_code = 0;
			op->result.reason_code = 0;
			op->result.reason_text = NULL;
			gateway_set_outcome(op, OUTCOME_ERROR, "the gateway shows the transaction voided");
			return;
		case ANET_STATUS_DECLINED:
			gateway_set_outcome(op, OUTCOME_DECLINED, NULL);
			return;
		case ANET_STATUS_UNDER_REVIEW:
			/*
			 * A charge or a refund (its own transaction) held for review:
			 * recorded held, as when the first reply says so; the review
			 * check learns the decision
			 */
			if (first_op || (strcmp(op->kind, "refund") == 0 && !op->via_void))
				gateway_set_outcome(op, OUTCOME_HELD, NULL);
			else
				gateway_set_outcome_later(op, 60000, 900000, OUTCOME_UNKNOWN, NULL);
			return;
		case ANET_STATUS_EXPIRED:
			/* nothing captured, nothing held: a capture cancels the payment */
			gateway_set_outcome(op, strcmp(op->kind, "capture") == 0 ? OUTCOME_EXPIRED : OUTCOME_ERROR,
								"the authorization expired");
			return;
		case ANET_STATUS_FAILED:
			/*
			 * generalError, communicationError, settlementError: it failed,
			 * final.  couldNotVoid tells of a void tried on it, not what
			 * the transaction itself came to: a person looks.
			 */
			if (strcmp(d.transaction_status, "couldNotVoid") == 0)
				gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN,
										  "the gateway shows the transaction couldNotVoid");
			else
				gateway_set_outcome(op, OUTCOME_ERROR,
									psprintf("the gateway shows the transaction %s", d.transaction_status));
			return;
		default:
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, psprintf("the original transaction has status %s", d.transaction_status));
			return;
	}
}

/*
 * May a request of an earlier attempt of op still be on its way through
 * the gateway (the worker died, or gave up waiting, while the gateway was
 * still at it)?  Not once twice the request timeout and 5 seconds have
 * passed since the previous attempt ended.  While one may, op's outcome is
 * unknown (why), to be looked at again once that much time has passed
 * after this attempt (the next attempt measures from this one's end), and
 * the answer is true.  The one home of that rule: a save whose lookup
 * found nothing (gateway_cim.c), a charge of a profile gone at the gateway
 * (profile_gone_on_resend).
 */
bool
gateway_await_earlier_requests(GatewayOp *op, const char *why)
{
	int			settle_ms = 2 * op->endpoint.timeout_ms + 5000;
	TimestampTz now = GetCurrentTimestamp();

	if (op->last_attempt_at == 0 ||
		now >= TimestampTzPlusMilliseconds(op->last_attempt_at, settle_ms))
		return false;
	op->result.retry_at = TimestampTzPlusMilliseconds(now, settle_ms + 1000);
	gateway_set_outcome(op, OUTCOME_UNKNOWN, why);
	return true;
}

/*
 * A resend of a charge of a stored profile was refused with E00040 (the
 * profile is gone at the gateway: reject_resend) and the search found no
 * transaction under the invoice.  No earlier attempt charged it, and none
 * can any more: with the profile gone, a request still on its way is
 * refused the same way.  Once no earlier request can still be in flight
 * (one the gateway took before the profile went would be in the lists by
 * then: looked for once more), the refusal is the answer, as it is to a
 * first send (interpret_send): rejected with E00040, which fails the
 * payment and, for a stored method, the method (payments_method_gone).
 * False for any other operation.
 */
static bool
profile_gone_on_resend(GatewayOp *op)
{
	if (op->resend_refused == NULL || strcmp(op->resend_refused, "E00040") != 0 ||
		op->payment_method == NULL || strcmp(op->payment_method, "profile") != 0 ||
		(strcmp(op->kind, "purchase") != 0 && strcmp(op->kind, "authorize") != 0))
		return false;
	if (gateway_await_earlier_requests(op, "a resend was refused (E00040: the stored profile is gone) and no charge is found under the invoice yet: an earlier request may still be in flight"))
		return true;
	/* its text is the reason still (interpret_send) */
	gateway_set_outcome(op, OUTCOME_REJECTED, op->resend_refused);
	return true;
}

/*
 * Act on what a lookup step came to (gateway_lookup.c): send its next
 * request, confirm what it found, or leave the outcome unknown.
 */
static void
apply_lookup(GatewayOp *op, bool *follow_up)
{
	char	   *error = NULL;

	switch (op->lookup.step)
	{
		case LOOKUP_ASK:
			if (gateway_set_request(op, gateway_lookup_request_type(op), gateway_lookup_build,
									NULL, &error))
				*follow_up = true;
			else
				gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, error);
			return;
		case LOOKUP_FOUND:
			/* each hit in turn (next_hit) */
			op->lookup.confirming_hits = true;
			if (ask_details(op, STAGE_CONFIRM, op->lookup.hits[0], NULL))
				*follow_up = true;
			else
				gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN,
										  psprintf("the transaction %s found could not be asked about",
												   op->lookup.hits[0]));
			return;
		case LOOKUP_NOT_FOUND:
			/* a charge of a profile the gateway no longer has: its answer */
			if (profile_gone_on_resend(op))
				return;
			/* FALLTHROUGH */
		case LOOKUP_AMBIGUOUS:
			/*
			 * searched everywhere: still unknown, never guessed (nor picked
			 * from several); look again later
			 */
			gateway_set_outcome_later(op, 60000, 3600000, OUTCOME_UNKNOWN, op->lookup.detail);
			return;
		case LOOKUP_UNREADABLE:
			gateway_set_outcome_later(op, 5000, 300000, OUTCOME_UNKNOWN, op->lookup.detail);
			return;
	}
}

/* Act on the steps of the riders a driver's search released (each in its memory). */
static void
apply_released(GatewayOp *driver, bool only_abandoned)
{
	dlist_iter	it;

	dlist_foreach(it, &driver->lookup.released)
	{
		GatewayOp  *rider = dlist_container(GatewayOp, node, it.cur);
		MemoryContext old;
		bool		follow_up = false;

		if (only_abandoned && (rider->done || rider->lookup.step != LOOKUP_UNREADABLE))
			continue;
		old = MemoryContextSwitchTo(rider->cxt);
		apply_lookup(rider, &follow_up);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The driver's search ended without an answer (op done) with riders left:
 * they stay unknown.  Only the riders released here are acted on (a
 * guard: a search that ended released its riders and acted on them then).
 */
void
gateway_release_riders(GatewayOp *driver)
{
	if (dlist_is_empty(&driver->lookup.riders))
		return;
	gateway_lookup_abandon(driver);
	apply_released(driver, true);
}

/*
 * The reply to STAGE_DECIDE: the payment's transaction as the gateway has
 * it now says what a refund or a void does.
 *
 *	 settled				refund: send refundTransaction now; void: too
 *							late, fails (refund instead)
 *	 pending settlement	refund of the whole capture: send it as a void
 *							(decided first, recorded, then sent); of part:
 *							wait for settlement; void: send it
 *	 pending capture,
 *	 under review			void: send it; refund: nothing captured to refund
 *	 voided					void: send it (the gateway answers 310,
 *							approved); refund: fails, nothing left
 *	 otherwise				fails with the gateway's status, or asks again
 *
 * Nothing was sent yet, so a question that went unanswered is a retry.
 */
static void
interpret_decide(GatewayOp *op, bool *follow_up)
{
	AnetTxnDetails d;
	AnetStatusClass cls;
	bool		voids = strcmp(op->kind, "void") == 0;
	const char *what = voids ? "voided" : "refunded";
	int64_t		settled_amount;
	char	   *not_asked;

	if (!anet_parse_transaction_details_response(op->http.response, op->http.response_len, &d) ||
		!d.found)
	{
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_RETRY,
								  d.status.message_code[0] ?
								  psprintf("the payment's transaction could not be looked up before it is %s: %s %s",
										   what, d.status.message_code, d.status.message_text) :
								  psprintf("the payment's transaction could not be looked up before it is %s",
										   what));
		return;
	}
	if ((not_asked = details_not_asked(op, &d)) != NULL)
	{
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_RETRY,
								  psprintf("the payment's transaction could not be looked up before it is %s: %s",
										   what, not_asked));
		return;
	}
	cls = anet_classify_transaction_status(d.transaction_status);
	if (cls == ANET_STATUS_SETTLED)
	{
		op->learned_trans_id = pstrdup(d.trans_id);
		op->learned_batch_id = pstrdup(d.batch_id);
		op->learned_settled_at = pstrdup(d.settlement_time_utc);
	}
	if (!voids && op->send_req.card_number == NULL)
	{
		/* the card's last four rather than a profile that may be deleted */
		op->send_req.card_number = gateway_last_four(d.account_number);
		if (op->send_req.card_number != NULL)
		{
			op->send_req.card_expiration = "XXXX";
			op->send_req.profile_customer_id = op->send_req.profile_payment_id = NULL;
		}
	}

	switch (cls)
	{
		case ANET_STATUS_SETTLED:
			if (voids)
			{
				gateway_set_outcome(op, OUTCOME_ERROR,
									psprintf("the payment's transaction %s settled at the gateway%s%s, so it can no longer be voided; refund it instead (pay_refund)",
											 d.trans_id, d.batch_id[0] ? " in batch " : "", d.batch_id));
				return;
			}
			break;				/* send the refund */
		case ANET_STATUS_PENDING_SETTLEMENT:
			if (voids)
				break;
			if (d.settle_amount[0] == '\0' ||
				!anet_reply_decimal_to_minor(d.settle_amount, op->currency_exponent, &settled_amount))
			{
				gateway_set_outcome_later(op, 60000, 900000, OUTCOME_RETRY,
										  psprintf("the captured amount of transaction %s could not be read",
												   d.trans_id));
				return;
			}
			if (settled_amount == op->amount_minor)
				gateway_set_outcome(op, OUTCOME_VOID_FIRST, NULL);
			else
				gateway_set_outcome(op, OUTCOME_WAIT,
									psprintf("transaction %s has not settled yet (%s): a partial refund waits for settlement",
											 d.trans_id, d.transaction_status));
			return;
		case ANET_STATUS_PENDING_CAPTURE:
		case ANET_STATUS_UNDER_REVIEW:
			if (voids)
				break;
			gateway_set_outcome(op, OUTCOME_ERROR,
								psprintf("the payment's transaction %s is %s: nothing was captured to refund",
										 d.trans_id, d.transaction_status));
			return;
		case ANET_STATUS_VOIDED:
			if (voids)
				break;
			gateway_set_outcome(op, OUTCOME_ERROR,
								psprintf("the payment's transaction %s was voided at the gateway: nothing is left to refund",
										 d.trans_id));
			return;
		case ANET_STATUS_EXPIRED:
			if (voids)
			{
				/*
				 * An authorization expired uncaptured holds nothing any
				 * more: what a void would do is done, and the payment is
				 * canceled (it stayed requires_capture for ever).
				 */
				gateway_set_outcome(op, OUTCOME_APPROVED,
									psprintf("the authorization %s had expired at the gateway: nothing is held, nothing was voided",
											 d.trans_id));
				return;
			}
			/* FALLTHROUGH */
		case ANET_STATUS_DECLINED:
		case ANET_STATUS_FAILED:
		case ANET_STATUS_RETURNED:
			gateway_set_outcome(op, OUTCOME_ERROR,
								psprintf("the payment's transaction %s is %s at the gateway, so it cannot be %s",
										 d.trans_id, d.transaction_status, what));
			return;
		case ANET_STATUS_OTHER:
			gateway_set_outcome_later(op, 60000, 900000, OUTCOME_RETRY,
									  psprintf("the payment's transaction %s has status %s; asking again later",
											   d.trans_id, d.transaction_status[0] ? d.transaction_status : "(none)"));
			return;
	}

	if (!voids && op->send_req.card_number == NULL && op->send_req.profile_customer_id == NULL)
	{
		gateway_set_outcome(op, OUTCOME_REJECTED,
							"the payment's card last four digits are unknown, so it cannot be refunded");
		return;
	}
	op->stage = STAGE_SEND;
	op->sent_ref_trans_id = op->send_req.ref_trans_id;
	if (gateway_set_request(op, "createTransactionRequest", build_transaction, &op->send_req, NULL))
		*follow_up = true;
	else
		gateway_set_outcome(op, OUTCOME_REJECTED, "the request could not be built");
}

/*
 * The reply to the question a capture refused with reason 16 asks: its
 * authorization expired uncaptured (the payment is canceled: nothing is
 * held, and a void has nothing to do), or something else the error says.
 * The capture itself was answered: any other answer leaves it failed as
 * the gateway said; no answer sends it again later (gateway_interpret).
 */
static void
interpret_expiry(GatewayOp *op)
{
	AnetTxnDetails d;

	if (!anet_parse_transaction_details_response(op->http.response, op->http.response_len, &d) ||
		!d.found || details_not_asked(op, &d) != NULL)
		gateway_set_outcome(op, OUTCOME_ERROR, CAPTURE_NOT_FOUND);
	else if (anet_classify_transaction_status(d.transaction_status) == ANET_STATUS_EXPIRED)
		gateway_set_outcome(op, OUTCOME_EXPIRED,
							psprintf("the authorization %s expired at the gateway uncaptured (reason 16): nothing was captured and nothing is held, so the payment is canceled; charging again takes a new payment",
									 d.trans_id));
	else
		gateway_set_outcome(op, OUTCOME_ERROR,
							psprintf("the gateway cannot find the authorization to capture (reason 16), and shows transaction %s as %s",
									 d.trans_id, d.transaction_status[0] ? d.transaction_status : "(no status)"));
}

/* The reply to a review check: the held transaction's status now. */
static void
interpret_review(GatewayOp *op)
{
	AnetTxnDetails d;

	op->done = true;
	op->result.outcome = OUTCOME_CHECKED;
	if (!anet_parse_transaction_details_response(op->http.response, op->http.response_len, &d) ||
		!d.found)
	{
		op->result.error = pstrdup("the held transaction could not be looked up");
		return;
	}
	if ((op->result.error = details_not_asked(op, &d)) != NULL)
		return;
	if (op->txn_invoice != NULL && strcmp(d.invoice_number, op->txn_invoice) != 0)
	{
		op->result.error = psprintf("the gateway's transaction %s carries invoice %s, not %s",
									d.trans_id, d.invoice_number[0] ? d.invoice_number : "(none)",
									op->txn_invoice);
		return;
	}
	op->review_status = pstrdup(d.transaction_status);
	op->result.response_code = d.response_code;
	op->result.reason_code = d.reason_code;
	op->result.reason_text = pstrdup(d.reason_text);
	op->result.trans_id = pstrdup(d.trans_id);
	op->result.auth_code = pstrdup(d.auth_code);
}

/* A reply to a settlement check: the next request, or done. */
static void
interpret_settlement(GatewayOp *op, bool *follow_up)
{
	SettlementCheck *c = op->settlement;

	if (settlement_check_read(c, op->cxt, op->http.response, op->http.response_len) == SETTLEMENT_ASK &&
		gateway_set_request(op, batch_scan_request_type(&c->scan), build_batch_scan, &c->scan, NULL))
	{
		*follow_up = true;
		return;
	}
	op->done = true;
	op->result.outcome = OUTCOME_CHECKED;
	if (c->error == NULL && c->scan.phase != BATCH_SCAN_DONE && c->nleft > 0)
		c->error = pstrdup("the next request of the settlement check could not be built");
	op->result.error = c->error;
}

/*
 * A palloc'd copy of the first len bytes of r; unnamed (malloc'd on
 * json-c's side, or NULL) is freed also when the copy fails.
 */
static char *
copy_then_free(const char *r, size_t len, char *unnamed)
{
	char	   *volatile copy = NULL;

	PG_TRY();
	{
		copy = pnstrdup(r, len);
	}
	PG_FINALLY();
	{
		free(unnamed);
	}
	PG_END_TRY();
	return copy;
}

/* Cut a reply for the exchange log. */
static char *
response_for_log(GatewayOp *op)
{
	const char *r = op->http.response;
	size_t		len = op->http.response_len;
	char	   *unnamed = NULL;
	bool		changed = false;
	char	   *copy;
	int			n;

	if (r == NULL)
		return NULL;
	/* skip the BOM; keep at most 64 kB */
	if (len >= 3 && (uint8) r[0] == 0xEF && (uint8) r[1] == 0xBB && (uint8) r[2] == 0xBF)
	{
		r += 3;
		len -= 3;
	}
	/*
	 * Replies about transactions and profiles name the customer: logged
	 * without (reply_privacy.c).  A transaction's own reply names no one,
	 * and is most of the traffic: kept as it came.
	 */
	if (strcmp(op->request_type, "createTransactionRequest") != 0 &&
		(unnamed = anet_reply_without_personal_data(r, len, &changed)) != NULL && changed)
	{
		r = unnamed;
		len = strlen(unnamed);
	}
	/* stop at a NUL; anything that is not valid UTF-8 becomes '?' */
	copy = copy_then_free(r, Min(len, 65536), unnamed);
	n = strlen(copy);
	if (GetDatabaseEncoding() != PG_UTF8 || !pg_verify_mbstr(PG_UTF8, copy, n, true))
	{
		for (int i = 0; i < n; i++)
			if ((unsigned char) copy[i] >= 0x80)
				copy[i] = '?';
	}
	return copy;
}

/*
 * Decide what a finished transfer means.  Returns the exchange to log.
 * *follow_up is set when op now carries a new request to send (the
 * operation stays "sending" in the database meanwhile).
 */
GatewayExchange *
gateway_interpret(GatewayOp *op, bool *follow_up)
{
	GatewayExchange *ex = palloc0(sizeof(GatewayExchange));
	const char *stage_outcome;

	*follow_up = false;
	ex->merchant_id = op->merchant_id;
	ex->operation_id = gateway_op_is_check(op) ? 0 : op->operation_id;
	ex->attempt = op->attempt;
	ex->request_type = op->request_type;
	ex->started_at = (TimestampTz) op->http.started_us;
	ex->finished_at = (TimestampTz) op->http.finished_us;
	ex->http_status = op->http.http_status;
	ex->request_masked = op->request_masked;
	ex->response_masked = response_for_log(op);
	ex->correlation_id = op->correlation_id;
	if (op->http.outcome != HTTP_COMPLETED || op->http.error[0] != '\0')
		ex->transport_error = pstrdup(op->http.error);

	if (gateway_op_is_check(op) &&
		(op->http.outcome != HTTP_COMPLETED || op->http.http_status != 200))
	{
		/* a check that failed records nothing; the next one asks again */
		op->done = true;
		op->result.outcome = OUTCOME_CHECKED;
		op->result.error = op->http.outcome != HTTP_COMPLETED ? pstrdup(op->http.error) :
			psprintf("HTTP status %ld from the gateway", op->http.http_status);
		if (op->settlement != NULL)
			op->settlement->error = op->result.error;
	}
	else if (op->stage == STAGE_EXPIRY &&
			 (op->http.outcome != HTTP_COMPLETED || op->http.http_status != 200))
	{
		/*
		 * The capture was refused (reason 16: nothing captured) and the
		 * question about its authorization got no answer: sent again
		 * later, to be refused and ask again.
		 */
		gateway_set_outcome_later(op, 5000, 300000, OUTCOME_RETRY,
								  psprintf("%s; whether it expired could not be asked: %s", CAPTURE_NOT_FOUND,
										   op->http.outcome != HTTP_COMPLETED ? op->http.error :
										   psprintf("HTTP status %ld from the gateway", op->http.http_status)));
	}
	else if (op->stage == STAGE_DECIDE &&
			 (op->http.outcome != HTTP_COMPLETED || op->http.http_status != 200))
	{
		/*
		 * Only a question was asked: the operation itself was never sent,
		 * whatever became of the question (no answer, or a 5xx), so the
		 * attempt does not count.  Counted, a gateway answering 503 for
		 * a day made dead letters of every queued refund and void.  The
		 * circuit breaker paces the questions when every request fails;
		 * when only these fail, the wait grows with the time the operation
		 * has waited, since its attempt count does not.
		 */
		op->result.retry_at = gateway_backoff(waited_attempts(op), 1000, 300000);
		gateway_set_outcome(op, OUTCOME_RETRY,
							op->http.outcome != HTTP_COMPLETED ? op->http.error :
							psprintf("HTTP status %ld from the gateway", op->http.http_status));
		op->result.unreached = true;
	}
	else if (op->http.outcome == HTTP_NOT_SENT &&
			 (op->stage == STAGE_CONFIRM || op->stage == STAGE_LOOKUP ||
			  op->stage == STAGE_CIM_CONFIRM))
	{
		/*
		 * A question about the operation never left; the operation itself
		 * may have reached the gateway, so its outcome stays unknown.  (A
		 * "retry" would queue it for a plain resend, which past the
		 * duplicate window could charge twice.)
		 */
		gateway_set_outcome_later(op, 1000, 300000, OUTCOME_UNKNOWN, op->http.error);
	}
	else if (op->http.outcome == HTTP_NOT_SENT)
	{
		gateway_set_outcome_later(op, 1000, 300000, OUTCOME_RETRY, op->http.error);
		op->result.unreached = true;
	}
	else if (op->http.outcome == HTTP_UNKNOWN || op->http.http_status != 200)
	{
		gateway_set_outcome_later(op, 1000, 60000, OUTCOME_UNKNOWN, op->http.outcome == HTTP_UNKNOWN ? op->http.error :
					psprintf("HTTP status %ld from the gateway", op->http.http_status));
	}
	else if (reply_account_failed(op))
		account_outcome(op);
	else if (op->stage == STAGE_CIM || op->stage == STAGE_CIM_CONFIRM)
		gateway_cim_interpret(op, follow_up);
	else if (op->stage == STAGE_SEND)
		interpret_send(op, follow_up);
	else if (op->stage == STAGE_CONFIRM)
		interpret_confirm(op, follow_up);
	else if (op->stage == STAGE_LOOKUP)
	{
		gateway_lookup_read(op);
		apply_lookup(op, follow_up);
		apply_released(op, false);
	}
	else if (op->stage == STAGE_VERIFY)
	{
		/* the caller reads the reply itself (gateway_status.c) */
		op->done = true;
		op->result.outcome = OUTCOME_CHECKED;
	}
	else if (op->stage == STAGE_DECIDE)
		interpret_decide(op, follow_up);
	else if (op->stage == STAGE_EXPIRY)
		interpret_expiry(op);
	else if (op->stage == STAGE_REVIEW)
		interpret_review(op);
	else
		interpret_settlement(op, follow_up);

	stage_outcome = *follow_up ? "follow_up" : gateway_outcome_name(op->result.outcome);
	ex->outcome = stage_outcome;
	return ex;
}
