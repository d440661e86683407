/*-------------------------------------------------------------------------
 *
 * card.c
 *	  pay_card: the card input type, its constructor and accessors.
 *
 * A pay_card is built from a card number, expiry, optional security code
 * and optional holder name, either by payments.pay_card(...) or from a
 * JSON object as the type's text input (what PostgREST clients send).
 * Building validates everything (card_brand.c) and seals the secrets
 * (card_vault.c).
 *
 * What can be read back is only what may be kept: brand, last four digits,
 * expiry, whether a security code was given, and (for the owner only) the
 * keyed fingerprint (card_fingerprint.c), computed from the number.  The
 * text output is masked ("visa ****1111 12/2030") and there is no binary
 * form, so neither COPY nor a client can get the sealed bytes out.
 *
 * Error hygiene: card errors hide the statement and the error context
 * from the server log (errhidestmt, errhidecontext), and while a card is
 * being validated no error context callbacks run at all, so neither a
 * parser "LINE 1: ..." echo nor a PL/pgSQL "SQL statement ..." context can
 * carry the input to the client or the log.  Messages never contain the
 * input.  Buffers holding a number or code are wiped on every exit path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "access/xact.h"

#include "anet_fields.h"
#include "card.h"
#include "card_json.h"
#include "errcodes.h"
#include "free_text.h"
#include "payments.h"
#include "schema_version.h"
#include "vault_holds.h"

PG_FUNCTION_INFO_V1(pay_card_in);
PG_FUNCTION_INFO_V1(pay_card_out);
PG_FUNCTION_INFO_V1(pay_card_recv);
PG_FUNCTION_INFO_V1(pay_card_send);
PG_FUNCTION_INFO_V1(pay_card_make);
PG_FUNCTION_INFO_V1(pay_card_brand);
PG_FUNCTION_INFO_V1(pay_card_last4);
PG_FUNCTION_INFO_V1(pay_card_exp_month);
PG_FUNCTION_INFO_V1(pay_card_exp_year);
PG_FUNCTION_INFO_V1(pay_card_has_cvv);
PG_FUNCTION_INFO_V1(pay_card_fingerprint);
PG_FUNCTION_INFO_V1(pay_card_info);
PG_FUNCTION_INFO_V1(pay_card_unseal_check);

/* Largest plaintext: lengths, number, code, holder name. */
#define CARD_PLAIN_MAX \
	(1 + CARD_PAN_MAX_DIGITS + 1 + CARD_CVV_MAX_DIGITS + 2 + CARD_HOLDER_MAX_BYTES)

/* Card input as received, before validation.  Pointers are not owned. */
typedef struct CardInput
{
	const char *number;
	int			number_len;
	int32		exp_month;
	int32		exp_year;
	const char *cvv;			/* NULL when absent */
	int			cvv_len;
	const char *holder;			/* NULL when absent; server encoding */
	int			holder_len;
} CardInput;

/*
 * Called once from _PG_init in the postmaster (preloaded case only): the
 * key file of 0.1.0 goes, the log hook comes.  The sealing keys are made
 * with shared memory (card_vault.c).
 */
void
payments_card_init(void)
{
	card_vault_forget_legacy_key();
	card_log_init();
}

/*
 * Check the expiry and return the four-digit year.  A card is valid
 * through the last day of its expiry month (UTC); dates more than twenty
 * years ahead are typing mistakes, not cards.
 */
static int
check_expiry(int32 month, int32 year)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			now_months,
				exp_months;

	if (month < 1 || month > 12)
		card_error(ERRCODE_PAY_INVALID_EXPIRY,
				   "invalid card expiry month",
				   "The expiry month must be between 1 and 12.",
				   "Enter the month printed on the card.");
	if (year >= 0 && year <= 99)
		year += 2000;
	else if (year < 1000 || year > 9999)
		card_error(ERRCODE_PAY_INVALID_EXPIRY,
				   "invalid card expiry year",
				   "The expiry year must have two or four digits.",
				   "Enter the year printed on the card, for example 2030 or 30.");

	if (timestamp2tm(GetCurrentTransactionStartTimestamp(), NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	now_months = tm.tm_year * 12 + (tm.tm_mon - 1);
	exp_months = year * 12 + (month - 1);
	if (exp_months < now_months)
		card_error(ERRCODE_PAY_CARD_EXPIRED,
				   "card expired",
				   "The card was valid through the end of its expiry month, which has passed.",
				   "Use a card that has not expired.");
	if (exp_months > now_months + 20 * 12)
		card_error(ERRCODE_PAY_INVALID_EXPIRY,
				   "invalid card expiry date",
				   "The expiry date is more than 20 years ahead.",
				   "Check the expiry year printed on the card.");
	return year;
}

/*
 * Check a holder name (server encoding): white space around it is
 * dropped; it must then be 1 to 100 characters without control
 * characters or other characters XML cannot carry (the gateway's
 * billTo takes it).  Returns the trimmed length; *start is set to its offset.
 */
static int
check_holder_name(const char *name, int len, int *start)
{
	int			s = 0,
				e = len;
	size_t		nchars;

	while (s < e && name[s] == ' ')
		s++;
	while (e > s && name[e - 1] == ' ')
		e--;
	for (int i = s; i < e; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (c < 0x20 || c == 0x7f)
			card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
					   "invalid card holder name",
					   "The card holder name contains control characters.",
					   "Pass the name as printed on the card.");
	}
	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
	{
		/*
		 * A SQL_ASCII database stores any bytes and sends them as they are
		 * (gateway_request_text): what is not UTF-8, the gateway's encoding,
		 * is refused here, not failed by the worker after the commit.
		 */
		if (GetDatabaseEncoding() == PG_SQL_ASCII &&
			!pg_verify_mbstr(PG_UTF8, name + s, e - s, true))
			card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
					   "invalid card holder name",
					   "The card holder name is not valid UTF-8.",
					   "Pass the name in UTF-8: a SQL_ASCII database sends its bytes to the gateway as they are.");
		/* U+FFFE, U+FFFF: the gateway's XML cannot carry them either */
		if (anet_text_check(name + s, e - s, &nchars, NULL) != ANET_TEXT_OK)
			card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
					   "invalid card holder name",
					   "The card holder name contains characters the gateway cannot carry (U+FFFE or U+FFFF).",
					   "Pass the name as printed on the card.");
	}
	else
		nchars = pg_mbstrlen_with_len(name + s, e - s);
	if (s == e)
		card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
				   "invalid card holder name",
				   "The card holder name is empty.",
				   "Pass NULL, or leave holder_name out, when there is no name.");
	if (e - s > CARD_HOLDER_MAX_BYTES || nchars > CARD_HOLDER_MAX_CHARS)
		card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
				   "invalid card holder name",
				   "The card holder name is longer than 100 characters.",
				   "Pass the name as printed on the card.");

	/*
	 * No card number: the name is sent as billTo's first and last name,
	 * which the gateway exchange log keeps as sent (only the card's own
	 * fields are masked there), so a number typed into the name field
	 * would be kept in clear.  The free-text rule (free_text.c, 22Y17).
	 */
	if (free_text_holds_card(name + s, e - s))
		card_error(ERRCODE_PAY_CARD_IN_TEXT,
				   "card holder name holds a card number",
				   "The holder name is sent to the gateway as the billing name and kept in the gateway exchange log; a card number is taken only as the card's number.",
				   "Pass the name as printed on the card.");
	*start = s;
	return e - s;
}

/*
 * Validate the input, fill *secret and plain[] and build the card.  The
 * caller wipes both buffers whatever happens.
 */
static PayCard *
build_card(const CardInput *in, CardSecret *secret, uint8 *plain)
{
	PayCardHeader hdr;
	PayCard    *card;
	CardBrand	brand;
	int			ndigits,
				year,
				holder_start = 0,
				holder_len = 0,
				cvv_len = 0,
				plainlen = 0;

	ndigits = card_normalize_number(in->number, in->number_len, secret->pan);
	brand = card_check_number(secret->pan, ndigits);
	year = check_expiry(in->exp_month, in->exp_year);
	if (in->cvv != NULL)
	{
		cvv_len = card_check_cvv(brand, in->cvv, in->cvv_len, secret->cvv);
		secret->has_cvv = true;
	}
	if (in->holder != NULL)
	{
		holder_len = check_holder_name(in->holder, in->holder_len, &holder_start);
		memcpy(secret->holder_name, in->holder + holder_start, holder_len);
		secret->holder_name[holder_len] = '\0';
		secret->has_holder_name = true;
	}

	memset(&hdr, 0, sizeof(hdr));
	hdr.version = PAY_CARD_FORMAT_VERSION;
	hdr.key_id = vault_hold_sealing_key();
	hdr.brand = (uint8) brand;
	hdr.exp_month = (uint8) in->exp_month;
	hdr.exp_year = (uint16) year;
	hdr.flags = (secret->has_cvv ? PAY_CARD_HAS_CVV : 0) |
		(secret->has_holder_name ? PAY_CARD_HAS_HOLDER_NAME : 0);
	memcpy(hdr.last4, secret->pan + ndigits - 4, 4);

	/* plaintext: len, number, len, code, len (16 bits LE), holder name */
	plain[plainlen++] = (uint8) ndigits;
	memcpy(plain + plainlen, secret->pan, ndigits);
	plainlen += ndigits;
	plain[plainlen++] = (uint8) cvv_len;
	memcpy(plain + plainlen, secret->cvv, cvv_len);
	plainlen += cvv_len;
	plain[plainlen++] = (uint8) (holder_len & 0xff);
	plain[plainlen++] = (uint8) (holder_len >> 8);
	memcpy(plain + plainlen, secret->holder_name, holder_len);
	plainlen += holder_len;
	Assert(plainlen <= CARD_PLAIN_MAX);

	card = palloc0(PAY_CARD_SEALED_OFFSET + plainlen);
	SET_VARSIZE(card, PAY_CARD_SEALED_OFFSET + plainlen);
	card->hdr = hdr;
	card_vault_seal(hdr.key_id, (const uint8 *) &card->hdr, sizeof(PayCardHeader),
					plain, plainlen, card->nonce, card->tag, card->sealed);
	return card;
}

/*
 * Build a card with error context suppressed and the secrets wiped on
 * every path.  PG_TRY restores error_context_stack if we throw.
 */
static PayCard *
make_card(const CardInput *in)
{
	ErrorContextCallback *saved_context = error_context_stack;
	CardSecret	secret;
	uint8		plain[CARD_PLAIN_MAX];
	PayCard    *volatile card = NULL;

	card_vault_require();
	memset(&secret, 0, sizeof(secret));
	error_context_stack = NULL;
	PG_TRY();
	{
		card = build_card(in, &secret, plain);
	}
	PG_FINALLY();
	{
		explicit_bzero(&secret, sizeof(secret));
		explicit_bzero(plain, sizeof(plain));
	}
	PG_END_TRY();
	error_context_stack = saved_context;
	return card;
}

/* An error about the shape of card input (JSON), not about the card. */
static void
card_input_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_PAY_INVALID_CARD_INPUT),
			 errmsg("invalid input for type pay_card"),
			 errdetail("%s", detail),
			 errhint("Pass a JSON object with \"number\" (a string of digits), \"exp_month\" and \"exp_year\" (integers), and optionally \"cvv\" and \"holder_name\" (strings)."),
			 errhidestmt(true),
			 errhidecontext(true)));
}

/*
 * Build a card from its JSON text form, wiping our copies of the fields
 * on every path.
 */
static PayCard *
card_from_json(const char *str)
{
	ErrorContextCallback *saved_context = error_context_stack;
	size_t		len = strlen(str);
	JsonCard   *jc;
	char	   *volatile holder = NULL;
	PayCard    *volatile card = NULL;

	card_vault_require();
	error_context_stack = NULL;
	if (len > CARD_JSON_MAX_INPUT)
		card_input_error("The input is longer than 8192 bytes.");

	jc = palloc0(sizeof(JsonCard));
	PG_TRY();
	{
		CardInput	in;

		card_parse_json(str, len, jc);
		if (jc->error != NULL)
			card_input_error(jc->error);

		memset(&in, 0, sizeof(in));
		in.number = jc->number;
		in.number_len = jc->number_len;
		in.exp_month = jc->exp_month;
		in.exp_year = jc->exp_year;
		if (jc->has_cvv)
		{
			in.cvv = jc->cvv;
			in.cvv_len = jc->cvv_len;
		}
		if (jc->has_holder)
		{
			/* JSON text is UTF-8; card_build wants the server encoding */
			if (jc->holder_len > CARD_HOLDER_MAX_BYTES)
				card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
						   "invalid card holder name",
						   "The card holder name is longer than 100 characters.",
						   "Pass the name as printed on the card.");
			if (memchr(jc->holder, '\0', jc->holder_len) != NULL)
				card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
						   "invalid card holder name",
						   "The card holder name contains control characters.",
						   "Pass the name as printed on the card.");
			if (!pg_verify_mbstr(PG_UTF8, jc->holder, jc->holder_len, true))
				card_error(ERRCODE_PAY_INVALID_CARD_INPUT,
						   "invalid card holder name",
						   "The card holder name is not valid UTF-8.",
						   "Pass the name as printed on the card.");
			holder = pg_any_to_server(jc->holder, jc->holder_len, PG_UTF8);
			in.holder = holder;
			in.holder_len = strlen(holder);
		}
		card = make_card(&in);
	}
	PG_FINALLY();
	{
		explicit_bzero(jc, sizeof(JsonCard));
		if (holder != NULL && holder != jc->holder)
			explicit_bzero(holder, strlen(holder));
	}
	PG_END_TRY();
	pfree(jc);
	error_context_stack = saved_context;
	return card;
}

/* Text input: a JSON object with the card fields. */
Datum
pay_card_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);

	PG_RETURN_POINTER(card_from_json(str));
}

/*
 * Reject a datum that is not a well-formed pay_card.  Only our own
 * functions make them, but a bad cast or a corrupt page must not make us
 * read past the end.
 */
static bool
card_datum_valid(const PayCard *card)
{
	return VARSIZE(card) >= PAY_CARD_SEALED_OFFSET + 4 &&
		card->hdr.version == PAY_CARD_FORMAT_VERSION &&
		card->hdr.brand != CARD_BRAND_UNKNOWN && card->hdr.brand <= CARD_BRAND_MAX &&
		card->hdr.exp_month >= 1 && card->hdr.exp_month <= 12;
}

void
card_check_datum(const PayCard *card)
{
	if (!card_datum_valid(card))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid pay_card value"),
				 errdetail("The value is not a pay_card of format version %d.", PAY_CARD_FORMAT_VERSION)));
}

static PayCard *
get_card(FunctionCallInfo fcinfo, int n)
{
	PayCard    *card = PG_GETARG_PAYCARD_P(n);

	card_check_datum(card);
	return card;
}

/* Masked text output: brand, last four digits, expiry. */
Datum
pay_card_out(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_CSTRING(psprintf("%s ****%.4s %02d/%04d",
							   card_brand_name(card->hdr.brand),
							   card->hdr.last4,
							   card->hdr.exp_month,
							   card->hdr.exp_year));
}

/* The error for both directions of binary I/O. */
static void
no_binary_form(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("pay_card has no binary form"),
			 errdetail("Card data never travels in binary form, so sealed card bytes cannot leave or enter the server."),
			 errhint("Send a card as text (a JSON object) or through payments.pay_card(...), and read it with the pay_card_* functions."),
			 errhidestmt(true)));
}

Datum
pay_card_recv(PG_FUNCTION_ARGS)
{
	no_binary_form();
	PG_RETURN_NULL();
}

Datum
pay_card_send(PG_FUNCTION_ARGS)
{
	no_binary_form();
	PG_RETURN_NULL();
}

/* A text argument's bytes, without a copy when possible. */
static text *
text_arg(FunctionCallInfo fcinfo, int n, bool *copied)
{
	Datum		d = PG_GETARG_DATUM(n);
	text	   *t = PG_DETOAST_DATUM_PACKED(d);

	*copied = (Pointer) t != DatumGetPointer(d);
	return t;
}

static void
null_argument(const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s", msg),
			 errhint("Pass the card number, expiry month and expiry year; only cvv and holder_name may be NULL."),
			 errhidestmt(true),
			 errhidecontext(true)));
}

/*
 * payments.pay_card(number, exp_month, exp_year, cvv, holder_name).
 * Not strict: a NULL number, month or year is an error (22004) rather
 * than a silent NULL card; a NULL cvv or holder_name means absent.
 */
Datum
pay_card_make(PG_FUNCTION_ARGS)
{
	CardInput	in;
	text	   *volatile number = NULL;
	text	   *volatile cvv = NULL;
	volatile bool number_copied = false;
	volatile bool cvv_copied = false;
	PayCard    *volatile card = NULL;
	bool		copied;

	if (PG_ARGISNULL(0))
		null_argument("card number must not be null");
	if (PG_ARGISNULL(1))
		null_argument("card expiry month must not be null");
	if (PG_ARGISNULL(2))
		null_argument("card expiry year must not be null");

	memset(&in, 0, sizeof(in));
	number = text_arg(fcinfo, 0, &copied);
	number_copied = copied;
	in.number = VARDATA_ANY(number);
	in.number_len = VARSIZE_ANY_EXHDR(number);
	in.exp_month = PG_GETARG_INT32(1);
	in.exp_year = PG_GETARG_INT32(2);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
	{
		cvv = text_arg(fcinfo, 3, &copied);
		cvv_copied = copied;
		in.cvv = VARDATA_ANY(cvv);
		in.cvv_len = VARSIZE_ANY_EXHDR(cvv);
	}
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
	{
		text	   *holder = PG_GETARG_TEXT_PP(4);

		in.holder = VARDATA_ANY(holder);
		in.holder_len = VARSIZE_ANY_EXHDR(holder);
	}

	PG_TRY();
	{
		card = make_card(&in);
	}
	PG_FINALLY();
	{
		/* detoasted copies are ours to wipe; the originals are not */
		if (number_copied)
			explicit_bzero(VARDATA_ANY(number), VARSIZE_ANY_EXHDR(number));
		if (cvv_copied)
			explicit_bzero(VARDATA_ANY(cvv), VARSIZE_ANY_EXHDR(cvv));
	}
	PG_END_TRY();
	PG_RETURN_POINTER(card);
}

Datum
pay_card_brand(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_TEXT_P(cstring_to_text(card_brand_name(card->hdr.brand)));
}

Datum
pay_card_last4(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(card->hdr.last4, 4));
}

Datum
pay_card_exp_month(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_INT32(card->hdr.exp_month);
}

Datum
pay_card_exp_year(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_INT32(card->hdr.exp_year);
}

Datum
pay_card_has_cvv(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_BOOL((card->hdr.flags & PAY_CARD_HAS_CVV) != 0);
}

/* The fingerprint of a card number (digits only), as 64 lower-case hex digits. */
void
card_number_fingerprint_hex(const char *pan, char hex[CARD_FINGERPRINT_HEX_LEN + 1])
{
	uint8		fp[CARD_FINGERPRINT_LEN];
	uint64		len;

	card_fingerprint_compute(pan, strlen(pan), fp);
	len = hex_encode((const char *) fp, CARD_FINGERPRINT_LEN, hex);
	hex[len] = '\0';
}

/* A card's fingerprint: from its number, unsealed for as long as that takes. */
static char *
fingerprint_hex(const PayCard *card)
{
	char	   *hex = palloc(CARD_FINGERPRINT_HEX_LEN + 1);
	CardSecret	secret;

	card_decrypt(card, &secret);
	card_number_fingerprint_hex(secret.pan, hex);
	explicit_bzero(&secret, sizeof(secret));
	return hex;
}

Datum
pay_card_fingerprint(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);

	PG_RETURN_TEXT_P(cstring_to_text(fingerprint_hex(card)));
}

/* Everything that may be kept about a card, as one jsonb object. */
Datum
pay_card_info(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);
	char	   *json;

	json = psprintf("{\"brand\": \"%s\", \"last4\": \"%.4s\", \"exp_month\": %d, \"exp_year\": %d, \"fingerprint\": \"%s\", \"has_cvv\": %s}",
					card_brand_name(card->hdr.brand),
					card->hdr.last4,
					card->hdr.exp_month,
					card->hdr.exp_year,
					fingerprint_hex(card),
					(card->hdr.flags & PAY_CARD_HAS_CVV) ? "true" : "false");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

/*
 * Open a card's sealed part into *out and check it against the clear
 * header.  Never throws for bad bytes: returns CARD_OPEN_LOST when the
 * key it was sealed under no longer exists, CARD_OPEN_CORRUPT when it
 * does not authenticate or parse; *out is wiped then.
 */
static CardOpenStatus
card_unseal(const PayCard *card, CardSecret *out)
{
	uint8		plain[CARD_PLAIN_MAX];
	int			plainlen;
	int			pos = 0;
	int			n;
	bool		ok;
	CardVaultStatus vs = CARD_VAULT_CORRUPT;

	memset(out, 0, sizeof(CardSecret));
	plainlen = VARSIZE(card) - PAY_CARD_SEALED_OFFSET;
	if (plainlen <= CARD_PLAIN_MAX)
		vs = card_vault_open(card->hdr.key_id, (const uint8 *) &card->hdr, sizeof(PayCardHeader),
							 card->nonce, card->tag, card->sealed, plainlen, plain);
	if (vs == CARD_VAULT_KEY_GONE)
		return CARD_OPEN_LOST;
	ok = vs == CARD_VAULT_OPENED;

	/* parse: every length is checked against what is left */
	if (ok && pos < plainlen)
	{
		n = plain[pos++];
		ok = n >= CARD_PAN_MIN_DIGITS && n <= CARD_PAN_MAX_DIGITS && pos + n <= plainlen;
		if (ok)
		{
			memcpy(out->pan, plain + pos, n);
			pos += n;
			ok = memcmp(out->pan + n - 4, card->hdr.last4, 4) == 0;
		}
	}
	else
		ok = false;
	if (ok && pos < plainlen)
	{
		n = plain[pos++];
		ok = n <= CARD_CVV_MAX_DIGITS && pos + n <= plainlen;
		if (ok)
		{
			memcpy(out->cvv, plain + pos, n);
			pos += n;
			out->has_cvv = (card->hdr.flags & PAY_CARD_HAS_CVV) != 0;
		}
	}
	else
		ok = false;
	if (ok && pos + 2 <= plainlen)
	{
		n = plain[pos] | (plain[pos + 1] << 8);
		pos += 2;
		ok = n <= CARD_HOLDER_MAX_BYTES && pos + n == plainlen;
		if (ok)
		{
			memcpy(out->holder_name, plain + pos, n);
			out->has_holder_name = (card->hdr.flags & PAY_CARD_HAS_HOLDER_NAME) != 0;
		}
	}
	else
		ok = false;

	explicit_bzero(plain, sizeof(plain));
	if (!ok)
	{
		explicit_bzero(out, sizeof(CardSecret));
		return CARD_OPEN_CORRUPT;
	}
	return CARD_OPEN_OK;
}

/*
 * Why a card could not be opened, as recorded on the failed payment.  Lost
 * names what can lose a card, no more: the key lives in shared memory and
 * the vault is unlogged, so a restart (a crash also empties the vault), a
 * failover or a restore loses what waited; a scheduled rotation loses none
 * (it re-seals the waiting cards and waits for the transactions that sealed
 * under the key it forgets: vault_rotation.c, vault_holds.c), but a forced
 * one does not wait, and a pay_card value built in an earlier transaction
 * is not held by any (its key may be forgotten before it is queued).
 */
const char *
card_open_failure(CardOpenStatus status)
{
	switch (status)
	{
		case CARD_OPEN_LOST:
			return "card data was lost before it was sent (a server restart, failover or restore; "
				"a vault key rotation forced before the transaction that sealed it committed; "
				"or a pay_card value kept from an earlier transaction outlived its key); ask for the card again";
		case CARD_OPEN_CORRUPT:
			return "the sealed card data is corrupt and could not be opened; ask for the card again";
		case CARD_OPEN_NOT_A_CARD:
			return "the vault entry is not a card";
		case CARD_OPEN_OK:
			break;
	}
	return "card data could not be opened";
}

/*
 * Unseal a card into *out (which the caller must explicit_bzero after
 * use).  For C code only: there is deliberately no SQL function that
 * returns card secrets.  Errors when the card cannot be opened.
 */
void
card_decrypt(const PayCard *card, CardSecret *out)
{
	CardOpenStatus status;

	card_check_datum(card);
	status = card_unseal(card, out);
	if (status != CARD_OPEN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("card data could not be decrypted"),
				 errdetail("%s.", card_open_failure(status))));
}

/*
 * payments._pay_card_unseal_check(card): true when this server's vault key
 * opens the card and its contents match its clear header.  Returns nothing
 * secret; for operators and the test suite.
 */
Datum
pay_card_unseal_check(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);
	CardSecret	secret;
	bool		ok;

	card_decrypt(card, &secret);
	ok = card_luhn_valid(secret.pan, strlen(secret.pan)) &&
		card_brand_detect(secret.pan, strlen(secret.pan)) == card->hdr.brand &&
		secret.has_cvv == ((card->hdr.flags & PAY_CARD_HAS_CVV) != 0);
	explicit_bzero(&secret, sizeof(secret));
	PG_RETURN_BOOL(ok);
}

/*
 * payments._card_sealed(card) -> bytea: the card as stored in the card
 * vault table while it waits for the worker.  The bytes are the datum
 * itself, already sealed: no clear number or CVV is in them.
 */
PG_FUNCTION_INFO_V1(pay_card_sealed);

Datum
pay_card_sealed(PG_FUNCTION_ARGS)
{
	PayCard    *card = get_card(fcinfo, 0);
	Size		len = VARSIZE(card) - VARHDRSZ;
	bytea	   *out = palloc(VARHDRSZ + len);

	payments_require_schema();
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), VARDATA(card), len);
	PG_RETURN_BYTEA_P(out);
}

/*
 * The inverse, for the worker: open a card from vault bytes into *hdr and
 * *out (wiped by the caller).  Never throws for bad bytes, so that one
 * card that cannot be opened fails alone (see card_open_failure).
 */
CardOpenStatus
card_open_sealed(const char *bytes, Size len, PayCardHeader *hdr, CardSecret *out)
{
	PayCard    *card;
	CardOpenStatus status;

	memset(out, 0, sizeof(CardSecret));
	if (len < 1)
		return CARD_OPEN_CORRUPT;
	/*
	 * 0.1.0's cards were sealed under a key file that is gone; format 2's
	 * under a vault key that went with the restart that loaded this library
	 */
	if ((uint8) bytes[0] == PAY_CARD_FORMAT_LEGACY || (uint8) bytes[0] == PAY_CARD_FORMAT_V2)
		return CARD_OPEN_LOST;
	if ((uint8) bytes[0] != PAY_CARD_FORMAT_VERSION)
		return CARD_OPEN_NOT_A_CARD;
	if (len < PAY_CARD_SEALED_OFFSET + 4 - VARHDRSZ || len > PAY_CARD_SEALED_OFFSET + CARD_PLAIN_MAX)
		return CARD_OPEN_CORRUPT;
	card = palloc(VARHDRSZ + len);
	SET_VARSIZE(card, VARHDRSZ + len);
	memcpy(VARDATA(card), bytes, len);
	if (!card_datum_valid(card))
		status = CARD_OPEN_CORRUPT;
	else
	{
		status = card_unseal(card, out);
		*hdr = card->hdr;
	}
	pfree(card);
	return status;
}

/*
 * The fingerprint of a card in vault bytes, into hex, from its number;
 * false when the card cannot be opened.
 * The worker learns it when it sends the card: callers never see the
 * fingerprint of a card they pass, which would make every card number they
 * try a question answered (see payments._record_final_results).
 */
bool
card_sealed_fingerprint(const char *bytes, Size len, char hex[CARD_FINGERPRINT_HEX_LEN + 1])
{
	PayCardHeader hdr;
	CardSecret	secret;
	CardOpenStatus status = card_open_sealed(bytes, len, &hdr, &secret);

	bool		ok = status == CARD_OPEN_OK && card_fingerprint_key_ready();

	if (ok)
		card_number_fingerprint_hex(secret.pan, hex);
	explicit_bzero(&secret, sizeof(secret));
	return ok;
}

/*
 * Whether vault bytes are a card of this format, laid out for
 * card_vault_reseal: the header (naming the key) is the aad, then the
 * nonce, the tag and the ciphertext.
 */
bool
card_sealed_layout(const char *bytes, Size len, int *aadlen, int *key_id_offset)
{
	StaticAssertStmt(offsetof(PayCard, nonce) == VARHDRSZ + sizeof(PayCardHeader) &&
					 offsetof(PayCard, tag) == offsetof(PayCard, nonce) + CARD_VAULT_NONCE_LEN &&
					 PAY_CARD_SEALED_OFFSET == offsetof(PayCard, tag) + CARD_VAULT_TAG_LEN,
					 "a sealed card is header | nonce | tag | ciphertext");
	if (len < PAY_CARD_SEALED_OFFSET - VARHDRSZ + 4 ||
		len > PAY_CARD_SEALED_OFFSET - VARHDRSZ + CARD_PLAIN_MAX ||
		(uint8) bytes[0] != PAY_CARD_FORMAT_VERSION)
		return false;
	*aadlen = sizeof(PayCardHeader);
	*key_id_offset = offsetof(PayCardHeader, key_id);
	return true;
}
