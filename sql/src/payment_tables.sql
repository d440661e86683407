-- Payments, operations, the card vault, exchanges, idempotency keys, events, gateway configuration.

------------------------------------------------------------------------------
-- Payments and operations.
------------------------------------------------------------------------------

CREATE TABLE payments.payments (
	merchant_id bigint NOT NULL REFERENCES payments.merchants,
	payment_id bigint GENERATED ALWAYS AS IDENTITY,
	kind text NOT NULL CHECK (kind IN ('purchase', 'authorize')),
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'requires_capture',
		'succeeded', 'failed', 'canceled', 'refunded', 'partially_refunded', 'in_review', 'unknown')),
	amount payments.pay_amount NOT NULL,
	amount_authorized payments.pay_amount,
	amount_captured payments.pay_amount,
	amount_refunded payments.pay_amount NOT NULL,
	payment_method text NOT NULL CHECK (payment_method IN ('card', 'opaque_data', 'profile')),
	card_brand text,
	card_last4 text,
	card_exp_month smallint,
	card_exp_year smallint,
	card_fingerprint text,
	customer_profile_id text,
	payment_profile_id text,
	invoice_number text NOT NULL CHECK (length(invoice_number) BETWEEN 1 AND 20),
	description text CHECK (length(description) <= 255),
	order_ref text,
	customer jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(customer) = 'object'),
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	correlation_id text NOT NULL,
	idempotency_key text,
	gateway_trans_id text,
	auth_code text,
	avs_result text,
	cvv_result text,
	decline_code text,
	decline_reason text,
	settled_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- the gateway's settled batch that holds the capture (with settled_at)
	settlement_batch_id text,
	PRIMARY KEY (merchant_id, payment_id),
	UNIQUE (merchant_id, invoice_number),
	CHECK (pay_minor_units(amount) > 0),
	CHECK (pay_currency(amount_refunded) = pay_currency(amount))
);
-- newest first, with payment_id as the tie-break (pay_list_payments reads
-- them backwards, keyset-paginated)
CREATE INDEX payments_status ON payments.payments (merchant_id, status, created_at, payment_id);
CREATE INDEX payments_created ON payments.payments (merchant_id, created_at, payment_id);
CREATE INDEX payments_fingerprint ON payments.payments (merchant_id, card_fingerprint)
	WHERE card_fingerprint IS NOT NULL;
CREATE INDEX payments_gateway_trans ON payments.payments (merchant_id, gateway_trans_id)
	WHERE gateway_trans_id IS NOT NULL;
-- captures whose settlement the worker has yet to learn, and payments held
-- for review (_settlement_candidates, _review_candidates)
CREATE INDEX payments_unsettled ON payments.payments (merchant_id, created_at)
	WHERE settled_at IS NULL AND gateway_trans_id IS NOT NULL
		AND status IN ('succeeded', 'partially_refunded');
CREATE INDEX payments_in_review ON payments.payments (updated_at) WHERE status = 'in_review';
COMMENT ON TABLE payments.payments IS
	'One row per payment (purchase or authorization): amounts, status, masked card, gateway references. Card numbers are never stored.';

CREATE TABLE payments.operations (
	merchant_id bigint NOT NULL,
	operation_id bigint GENERATED ALWAYS AS IDENTITY,
	payment_id bigint NOT NULL,
	kind text NOT NULL CHECK (kind IN ('purchase', 'authorize', 'capture', 'void', 'refund')),
	status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'succeeded',
		'failed', 'unknown', 'waiting_settlement', 'dead', 'canceled', 'in_review')),
	amount payments.pay_amount,
	reason text,
	-- a refund of an unsettled capture is sent as a void
	via_void boolean NOT NULL DEFAULT false,
	idempotency_key text,
	correlation_id text NOT NULL,
	-- the worker's bookkeeping
	attempts integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	first_sent_at timestamptz,
	-- no attempt so far can have reached the gateway (each one provably
	-- failed before sending): the duplicate window has not started
	never_sent boolean NOT NULL DEFAULT true,
	last_error text,
	-- the gateway's answer
	gateway_trans_id text,
	response_code integer,
	reason_code integer,
	reason_text text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	completed_at timestamptz,
	PRIMARY KEY (merchant_id, operation_id),
	FOREIGN KEY (merchant_id, payment_id) REFERENCES payments.payments
);
CREATE INDEX operations_ready ON payments.operations (next_attempt_at)
	WHERE status IN ('queued', 'unknown');
CREATE INDEX operations_payment ON payments.operations (merchant_id, payment_id);
CREATE INDEX operations_waiting ON payments.operations (merchant_id, payment_id)
	WHERE status = 'waiting_settlement';
-- refunds held for review, which the worker's review check asks about
CREATE INDEX operations_in_review ON payments.operations (updated_at)
	WHERE status = 'in_review';
COMMENT ON TABLE payments.operations IS
	'One row per gateway operation (purchase, authorize, capture, void, refund): the outbox the background worker drains, with its status and the gateway''s answer.';

-- Raw card data waiting for the worker: sealed (AES-256-GCM under a key
-- that lives in shared memory only) and deleted as soon as the gateway has
-- answered.  UNLOGGED: its rows never reach the WAL, the WAL archive or a
-- base backup, and crash recovery empties it; a card that waited across a
-- restart is lost and its payment fails (card_vault.c).
CREATE UNLOGGED TABLE payments.card_vault (
	merchant_id bigint NOT NULL,
	operation_id bigint NOT NULL,
	sealed bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, operation_id),
	FOREIGN KEY (merchant_id, operation_id) REFERENCES payments.operations ON DELETE CASCADE
);
-- no statistics samples of sealed card data outlive the rows
ALTER TABLE payments.card_vault ALTER COLUMN sealed SET STATISTICS 0;
COMMENT ON TABLE payments.card_vault IS
	'Sealed card data (number, CVV) or Accept.js opaque data of operations not yet answered by the gateway (AES-256-GCM under a key that exists in shared memory only); erased as soon as the gateway answered. Unlogged: never in the WAL or a backup, emptied by crash recovery. Owner only.';

CREATE TABLE payments.gateway_exchanges (
	merchant_id bigint NOT NULL,
	exchange_id bigint GENERATED ALWAYS AS IDENTITY,
	operation_id bigint,
	attempt integer NOT NULL,
	request_type text NOT NULL,
	started_at timestamptz NOT NULL,
	finished_at timestamptz NOT NULL,
	duration_ms double precision NOT NULL,
	http_status integer,
	transport_error text,
	outcome text NOT NULL,
	request_masked text NOT NULL,
	response_masked text,
	correlation_id text,
	PRIMARY KEY (merchant_id, exchange_id)
);
CREATE INDEX gateway_exchanges_operation ON payments.gateway_exchanges (merchant_id, operation_id);
CREATE INDEX gateway_exchanges_finished ON payments.gateway_exchanges (finished_at);
-- the masked messages: no statistics (see audit_log's row images)
ALTER TABLE payments.gateway_exchanges ALTER COLUMN request_masked SET STATISTICS 0,
	ALTER COLUMN response_masked SET STATISTICS 0;
COMMENT ON TABLE payments.gateway_exchanges IS
	'Every HTTP exchange with the gateway: masked request and reply, timings, HTTP status, transport error. Kept payments.exchange_retention_days days (default 30).';

CREATE TABLE payments.idempotency_keys (
	merchant_id bigint NOT NULL,
	idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
	request_kind text NOT NULL,
	request_hash text,
	payment_id bigint,
	operation_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	customer_id bigint,
	PRIMARY KEY (merchant_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON payments.idempotency_keys (created_at);
-- the keys pay_erase_customer clears
CREATE INDEX idempotency_keys_customer ON payments.idempotency_keys (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON TABLE payments.idempotency_keys IS
	'Idempotency keys of mutating API calls: the same key with the same parameters returns the original object; with other parameters it is an error.';
COMMENT ON COLUMN payments.idempotency_keys.request_hash IS
	'md5 of the call''s arguments, which tells a repeat from another request under the key. NULL once the customer the request concerned was erased (it digests the customer''s details): a repeat of the same kind, for the same customer, then returns what the request made, whatever its arguments.';
COMMENT ON COLUMN payments.idempotency_keys.customer_id IS
	'The customer the request concerned: its own calls, its payment methods'', its payments'' (and their captures, voids and refunds) and its subscriptions''. Its erasure clears request_hash.';

CREATE TABLE payments.events (
	merchant_id bigint NOT NULL,
	event_id bigint GENERATED ALWAYS AS IDENTITY,
	event_type text NOT NULL,
	payment_id bigint,
	operation_id bigint,
	data jsonb NOT NULL,
	correlation_id text,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, event_id)
);
CREATE INDEX events_created ON payments.events (merchant_id, created_at);
CREATE INDEX events_payment ON payments.events (merchant_id, payment_id);
-- the event's data: no statistics (see audit_log's row images)
ALTER TABLE payments.events ALTER COLUMN data SET STATISTICS 0;
COMMENT ON TABLE payments.events IS
	'One row per state change of a payment or operation: the outbox that webhooks and NOTIFY listeners read.';

CREATE TABLE payments.gateway_config (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	api_login_id text NOT NULL CHECK (length(api_login_id) BETWEEN 1 AND 25),
	transaction_key text NOT NULL CHECK (length(transaction_key) BETWEEN 1 AND 16),
	signature_key text,
	endpoint_url text NOT NULL CHECK (endpoint_url ~ '^https?://'),
	ca_file text,
	timeout_ms integer NOT NULL DEFAULT 30000 CHECK (timeout_ms BETWEEN 100 AND 600000),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments.gateway_config IS
	'Authorize.Net credentials and endpoint per merchant. Owner only: API roles can neither read nor change it.';

REVOKE ALL ON payments.payments, payments.operations,
	payments.card_vault, payments.gateway_exchanges, payments.idempotency_keys,
	payments.events, payments.gateway_config FROM PUBLIC;

-- Credentials are the owner's alone (pay_configure_gateway; the worker
-- reads them as a superuser): a member of pg_read_all_data bound to a
-- merchant read its transaction and signature keys, one of
-- pg_write_all_data pointed its endpoint_url (where the worker sends card
-- numbers and the transaction key) at a server of its own.
CREATE POLICY owner_only ON payments.gateway_config AS RESTRICTIVE USING (false) WITH CHECK (false);
COMMENT ON POLICY owner_only ON payments.gateway_config IS
	'No role but the owner (whom row-level security does not restrict) reads or writes gateway credentials, pg_read_all_data, pg_write_all_data or a GRANT notwithstanding.';

SELECT pg_catalog.pg_extension_config_dump('payments.payments', '');
SELECT pg_catalog.pg_extension_config_dump('payments.operations', '');
SELECT pg_catalog.pg_extension_config_dump('payments.gateway_exchanges', '');
SELECT pg_catalog.pg_extension_config_dump('payments.idempotency_keys', '');
SELECT pg_catalog.pg_extension_config_dump('payments.events', '');
SELECT pg_catalog.pg_extension_config_dump('payments.gateway_config', '');
SELECT pg_catalog.pg_extension_config_dump('payments.payments_payment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.operations_operation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.gateway_exchanges_exchange_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.events_event_id_seq', '');
-- card_vault is not dumped on purpose: sealed cards are short-lived and the
-- vault key does not travel with a dump.
