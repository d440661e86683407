/*-------------------------------------------------------------------------
 *
 * sim.h
 *		Shared state of the Authorize.Net simulator: merchants,
 *		transactions, batches and configuration.  One global mutex guards
 *		all of it; handlers are short, so contention is not an issue.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_SIM_H
#define ANET_SIM_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#define TXN_BASE		60000000001LL	/* first transId handed out */
#define MAX_MERCHANTS	256
#define DEFAULT_LOGIN	"5KP3u95bQpv"
#define DEFAULT_KEY		"346HZ32z3fP4hTG2"

typedef enum TxStatus
{
	ST_AUTH_PENDING_CAPTURE,
	ST_CAPTURED_PENDING_SETTLEMENT,
	ST_SETTLED,
	ST_REFUND_PENDING_SETTLEMENT,
	ST_REFUND_SETTLED,
	ST_VOIDED,
	ST_DECLINED,
	ST_EXPIRED,
	ST_GENERAL_ERROR,
	ST_FDS_PENDING_REVIEW,
	ST_FDS_AUTH_PENDING_REVIEW,
	ST_COUNT
} TxStatus;

extern const char *const tx_status_names[ST_COUNT];

/*
 * Bytes for a request value of at most n characters as the XSD counts
 * them (validate.c): up to four bytes of UTF-8 each, and the NUL.
 */
#define XSD_CHARS(n)	((n) * 4 + 1)

typedef struct Txn
{
	long long	id;
	int			merchant;
	char		type[40];			/* transactionType as sent */
	TxStatus	status;
	int			response_code;
	int			reason;
	long long	requested;			/* cents */
	long long	auth_amount;
	long long	settle_amount;
	long long	refunded;			/* sum of linked refunds, cents */
	char		auth_code[8];
	char		avs[2];
	char		cvv[2];
	char		cavv[2];
	bool		echeck;
	char		last4[6];			/* last 4 of card / account */
	char		expiry[8];			/* as sent, for details only */
	char		account_type[20];	/* Visa, MasterCard, eCheck, ... */
	char		invoice[XSD_CHARS(20)];
	char		description[XSD_CHARS(255)];
	char		po_number[XSD_CHARS(25)];
	char		customer_id[XSD_CHARS(20)];
	char		customer_email[XSD_CHARS(255)];
	char		customer_ip[48];			/* no maxLength: cut (at a character) */
	char		ref_id[XSD_CHARS(20)];
	json_object *bill_to;			/* copies of the request objects */
	json_object *ship_to;
	long long	ref_trans_id;
	long long	submit_ms;
	long long	batch_id;			/* 0 = not settled yet */
	char		profile_id[24];
	char		payment_profile_id[24];
	char		network_trans_id[32];
	bool		recurring;
	json_object *processing_options;	/* copies of the request's card-on-file
										 * objects (the ledger shows them) */
	json_object *subsequent_auth;
	long long	prepaid_balance;	/* -1 when not a prepaid card */
} Txn;

typedef struct Batch
{
	long long	id;
	int			merchant;
	long long	settle_ms;
	bool		echeck;
	long long  *txns;
	int			ntxns;
} Batch;

typedef struct Merchant
{
	char		login[32];
	char		key[24];
	char		signature_key[132];	/* for transHashSha2 and webhooks */
	bool		inactive;		/* account or API user inactive: E00008 */
	bool		no_reporting;	/* Transaction Details API not enabled:
								 * reporting calls answer E00011 */
	bool		test_mode;		/* account in Test Mode: transactions are
								 * answered and not stored (transId 0) */
	json_object *dup;				/* duplicate key -> transId */
} Merchant;

typedef struct SimConfig
{
	bool		bom;
	int			refund_window_days;
	int			auth_expiry_days;
	int			settle_interval;	/* seconds, 0 = only on command */
	int			nonce_ttl;			/* seconds an opaqueData nonce lives */
	int			threads;
	bool		mask_all_digits;	/* account numbers shown as XXXX, no
									 * last four (what a gateway may do) */
} SimConfig;

typedef struct Sim
{
	pthread_mutex_t lock;
	SimConfig	cfg;
	Merchant	merchants[MAX_MERCHANTS];
	int			nmerchants;
	Txn		  **txns;				/* index = transId - TXN_BASE */
	long long	ntxns;
	long long	captxns;
	Batch	   *batches;
	int			nbatches;
	int			capbatches;
	long long	next_batch_id;
	json_object *ledger;			/* array of every accepted charge */
	long long	clock_offset_ms;
	unsigned long long requests;	/* API requests handled */
} Sim;

extern Sim	sim;

/* util.c */
extern long long sim_now_ms(void);
extern void format_time_utc(long long ms, char *buf, size_t len, bool frac);
extern void format_time_local(long long ms, char *buf, size_t len, bool frac);
extern bool parse_amount(const char *s, long long *cents);
extern void format_amount(long long cents, char *buf, size_t len);
extern void mask_account(const char *digits, bool echeck, char *out, size_t len);
extern json_object *json_amount(long long cents);
extern const char *jstr(json_object *obj, const char *key);
extern json_object *jget(json_object *obj, const char *key);
extern json_object *jpath(json_object *obj, const char *path);
extern void jadd_str(json_object *obj, const char *key, const char *val);
extern void jadd(json_object *obj, const char *key, json_object *val);
extern json_object *jitem(json_object *v, int i, int *n);
extern unsigned int sim_rand(void);
extern void random_alnum(char *buf, int n);
extern void strlcpy0(char *dst, const char *src, size_t len);
extern bool jbool(const char *s);

/* state.c */
extern void sim_config_defaults(void);
extern void state_init(void);
extern void state_reset(bool ledger);
extern int	merchant_find(const char *login);
extern int	merchant_add(const char *login, const char *key);
extern Txn *txn_new(int merchant);
extern Txn *txn_get(int merchant, long long id);
extern void ledger_record(Txn *t, const char *kind, long long amount);
extern json_object *ledger_json(const char *login);
extern json_object *merchants_json(void);

/* settle.c */
extern json_object *settle_now(void);
extern void settle_expire_auths(void);
extern void settle_start_clock(void);
extern Batch *batch_get(int merchant, long long id);

/* txn.c */
extern json_object *handle_create_transaction(int m, json_object *req);
extern json_object *txn_summary_json(Txn *t);
extern json_object *txn_details_json(Txn *t);
extern json_object *handle_update_held(int m, json_object *req);

/* api.c */
extern json_object *api_messages(bool ok, const char *code, const char *text);
extern json_object *api_error_reply(const char *code, const char *text);
extern void api_finish(json_object *reply, json_object *req, bool ok,
					   const char *code, const char *text);
extern char *api_handle(const char *body, size_t len, size_t *outlen);

/* report.c */
extern json_object *handle_get_transaction_details(int m, json_object *req);
extern json_object *handle_get_unsettled_list(int m, json_object *req);
extern json_object *handle_get_settled_batch_list(int m, json_object *req);
extern json_object *handle_get_transaction_list(int m, json_object *req);
extern json_object *handle_get_batch_statistics(int m, json_object *req);
extern json_object *handle_get_customer_list(int m, json_object *req);

/* cim.c */
typedef struct CardInfo
{
	char		number[24];
	char		expiry[8];
	char		code[8];
	bool		echeck;
	char		routing[16];
	char		account[24];
	char		name_on_account[32];
	json_object *bill_to;
} CardInfo;

extern void cim_reset(void);
extern int	cim_resolve_profile(int m, const char *cust_id, const char *pay_id,
								CardInfo *ci, char *err_code);
extern int	cim_consume_nonce(int m, const char *descriptor, const char *value,
							  CardInfo *ci);
extern json_object *cim_issue_nonce(int m, json_object *card);
extern bool cim_update_card(int m, const char *cust_id, const char *pay_id,
							const char *number, const char *expiry);
extern json_object *handle_cim(const char *method, int m, json_object *req);
extern json_object *cim_create_from_txn(int m, json_object *req);
extern json_object *cim_profiles_json(const char *login);
extern json_object *cim_profile_from_charge(int m, const CardInfo *ci,
											json_object *tr, Txn *t);
extern json_object *handle_arb(const char *method, int m, json_object *req);

/* webhook.c */
extern void webhook_init(void);
extern void webhook_shutdown(void);
extern void webhook_reset(void);
extern void webhook_emit(int m, const char *event_type, json_object *payload);
extern void webhook_emit_txn(Txn *t, const char *event_type);
extern json_object *webhook_control(const char *method, const char *url,
									json_object *body, int *status);
extern void webhook_sign(const char *key, const char *body, size_t len,
						 char *out);

#endif
