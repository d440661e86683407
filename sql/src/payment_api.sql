-- The payment API: pay_purchase, pay_authorize, pay_capture, pay_void, pay_refund, pay_wait and reads.

------------------------------------------------------------------------------
-- Helpers shared by the API functions.
------------------------------------------------------------------------------

-- Card numbers in free text (src/free_text.c, their one home): a caller's
-- text that holds one is refused (22Y17) before anything is stored; a
-- correlation id, set by infrastructure rather than the caller, is masked
-- (and refused, 22001, over 200 characters).
CREATE FUNCTION payments._check_text(field text, value text, max_chars integer DEFAULT NULL)
	RETURNS void
	LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_text';
COMMENT ON FUNCTION payments._check_text(text, text, integer) IS
	'Internal: raises 22Y17 when a caller''s text holds a card number (12 to 19 digits, Luhn-valid, of a known brand; a text that is exactly one UUID, with or without dashes, or one W3C traceparent, is not checked) and 22001 when it is longer than max_chars characters; the message names the field, never the value.';

CREATE FUNCTION payments._mask_card_numbers(value text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_mask_card_numbers';
COMMENT ON FUNCTION payments._mask_card_numbers(text) IS
	'Internal: the text with every digit of the card numbers it holds replaced by X (the correlation id''s masking); a text that is exactly one UUID or one W3C traceparent is returned as it is.';

CREATE FUNCTION payments._check_correlation_id(value text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_correlation_id';
COMMENT ON FUNCTION payments._check_correlation_id(text) IS
	'Internal: the correlation id as it is kept: raises 22001 when it is longer than 200 characters (the message never quotes it), else returns it with every digit of the card numbers it holds replaced by X (a UUID or a W3C traceparent as it is).';

-- The correlation id of the current request: the caller's, else PostgREST's
-- x-request-id or traceparent header, else the payments.correlation_id
-- setting, else a fresh one; its card numbers masked, at most 200
-- characters (22001 otherwise: _check_correlation_id).  In C
-- (src/correlation_id.c): it runs in every API call, and as PL/pgSQL it
-- cost each purchase a search_path set and restored and an expression
-- compiled again in each transaction.
CREATE FUNCTION payments._correlation_id(given text) RETURNS text
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_correlation_id';
COMMENT ON FUNCTION payments._correlation_id(text) IS
	'Internal: the correlation id of the current request (argument, x-request-id or traceparent header, payments.correlation_id setting, or a new one), the digits of any card number in it masked (a UUID or a W3C traceparent kept as it is); 22001 when it is longer than 200 characters.';

-- Argument checks: what the gateway or the tables would refuse after the
-- COMMIT is refused here, while the caller can still correct it (README,
-- "Input the gateway refuses").

-- An idempotency key is 1 to 255 characters and holds no card number (it
-- is kept on several rows).  The message states the limit and the length,
-- never the key.
CREATE FUNCTION payments._check_idempotency_key(p_key text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF length(p_key) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'invalid idempotency key'
			USING ERRCODE = '22Y25',
				DETAIL = format('The key has %s characters; an idempotency key has 1 to 255.', length(p_key)),
				HINT = 'Pass a key of 1 to 255 characters, such as a UUID, or NULL for none.';
	END IF;
	PERFORM payments._check_text('idempotency key', p_key);
END
$$;
COMMENT ON FUNCTION payments._check_idempotency_key(text) IS
	'Internal: raises 22Y25 unless an idempotency key is 1 to 255 characters, 22Y17 when it holds a card number; the message never quotes the key.';

-- The texts and the amount a request will carry, against the limits the
-- request builder applies (src/anet/anet_fields.c): 22Y24 for a character
-- the gateway's XML cannot carry, 22001 for a text too long, 22Y26 for an
-- amount of more digits than the gateway takes, 22Y22 for a profile id
-- that is not 1 to 20 digits.  The description and every key and value of
-- the customer object are also refused with 22Y17 when they hold a card
-- number, and the customer object is bounded as metadata is (src/free_text.c).
-- NULL arguments are not checked.
CREATE FUNCTION payments._check_gateway_input(amount payments.pay_amount, description text,
	customer jsonb, correlation_id text, customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_check_gateway_input';
COMMENT ON FUNCTION payments._check_gateway_input(payments.pay_amount, text, jsonb, text, text, text) IS
	'Internal: raises 22Y24 (character the gateway cannot carry), 22001 (text longer than the gateway field), 22Y26 (amount of more digits than the gateway takes) or 22Y22 (profile id not 1 to 20 digits) for input a payment request would carry; 22Y17 for a card number in the description or the customer object, 22023 or 22001 for a customer object beyond metadata''s bounds (src/free_text.c).';

-- Accept.js opaque data: an object with non-empty string dataDescriptor
-- and dataValue (the gateway requires both).
CREATE FUNCTION payments._check_opaque_data(p_opaque_data jsonb) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	k text;
BEGIN
	IF jsonb_typeof(p_opaque_data) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'opaque_data must be a JSON object'
			USING ERRCODE = '22Y22',
				HINT = 'Pass the opaqueData object Accept.js returned, e.g. {"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "..."}.';
	END IF;
	FOREACH k IN ARRAY ARRAY['dataDescriptor', 'dataValue'] LOOP
		IF jsonb_typeof(p_opaque_data -> k) IS DISTINCT FROM 'string' THEN
			RAISE EXCEPTION 'opaque_data has no string %', k
				USING ERRCODE = '22Y22',
					DETAIL = format('opaque_data must have %s as a JSON string; it is %s.', k,
						coalesce('a JSON ' || jsonb_typeof(p_opaque_data -> k), 'missing')),
					HINT = 'Pass the opaqueData object Accept.js returned, e.g. {"dataDescriptor": "COMMON.ACCEPT.INAPP.PAYMENT", "dataValue": "..."}.';
		END IF;
		IF p_opaque_data ->> k = '' THEN
			RAISE EXCEPTION 'opaque_data % is empty', k
				USING ERRCODE = '22Y22',
					DETAIL = format('The gateway requires a non-empty %s.', k),
					HINT = 'Pass the opaqueData object Accept.js returned, unchanged.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._check_opaque_data(jsonb) IS
	'Internal: raises 22Y22 unless opaque data is an object with non-empty string dataDescriptor and dataValue.';

-- The form pay_erase_customer keeps an erased customer's idempotency keys
-- in: a digest, scoped to the merchant, of the key an application may have
-- made of an email or an order's text.  A repeat under the original key
-- still finds it (_idempotency_claim).
CREATE FUNCTION payments._erased_key(p_merchant bigint, p_key text) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT 'erased:' || encode(sha256(convert_to(p_merchant::text || ':' || p_key, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION payments._erased_key(bigint, text) IS
	'Internal: an erased customer''s idempotency key as pay_erase_customer keeps it: ''erased:'' and the hex SHA-256 of the merchant id, a colon and the key.';

-- Claim an idempotency key.  Returns NULL when the key is new (or absent),
-- else the row of the original call; a different request under the same key
-- is an error.  Concurrent callers with one key serialize on the key's
-- unique index: the second waits for the first to commit, then finds its row.
-- p_customer is the customer the request concerns, when the caller knows it
-- before the claim (else it is set with the object made): its erasure
-- clears the hash of the key (pay_erase_customer), which digests its
-- details.  A repeat under such a key is told apart by its kind and its
-- customer only, and returns what the original request made.  Erasure
-- also keeps the key itself as a digest (_erased_key): a key not found as
-- given is looked up in that form too (one more index probe, for a new key
-- only) before it counts as new.
CREATE FUNCTION payments._idempotency_claim(p_merchant bigint, p_key text, p_kind text, p_hash text,
	p_customer bigint DEFAULT NULL)
	RETURNS payments.idempotency_keys
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	existing payments.idempotency_keys;
	inserted boolean;
BEGIN
	IF p_key IS NULL THEN
		RETURN NULL;
	END IF;
	PERFORM payments._check_idempotency_key(p_key);
	INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, request_hash, customer_id)
	VALUES (p_merchant, p_key, p_kind, p_hash, p_customer)
	ON CONFLICT DO NOTHING;
	inserted := FOUND;
	IF NOT inserted THEN
		SELECT * INTO existing FROM payments.idempotency_keys
		WHERE merchant_id = p_merchant AND idempotency_key = p_key;
	END IF;
	-- new (or gone since the INSERT met it: an erasure committed in
	-- between), unless its customer was erased: the key is kept as a
	-- digest.  (A REPEATABLE READ or SERIALIZABLE snapshot older than the
	-- erasure does not see the digest: the call then fails with 40001 as it
	-- locks or updates a row the erasure changed, the key's own included.)
	IF existing.request_kind IS NULL THEN
		SELECT * INTO existing FROM payments.idempotency_keys
		WHERE merchant_id = p_merchant AND idempotency_key = payments._erased_key(p_merchant, p_key);
		IF NOT FOUND THEN
			RETURN NULL;
		END IF;
		IF inserted THEN
			DELETE FROM payments.idempotency_keys WHERE merchant_id = p_merchant AND idempotency_key = p_key;
		END IF;
	END IF;
	IF existing.request_kind <> p_kind
			OR (existing.request_hash IS NOT NULL AND existing.request_hash <> p_hash)
			-- erased: another customer named is another request
			OR (existing.request_hash IS NULL AND existing.customer_id <> p_customer) THEN
		RAISE EXCEPTION 'idempotency key was already used with different parameters'
			USING ERRCODE = 'PT409',
				DETAIL = format('The key was first used for %s with other arguments.', existing.request_kind),
				HINT = 'Use a new idempotency key for a new request, or repeat the original request exactly.';
	END IF;
	RETURN existing;
END
$$;
COMMENT ON FUNCTION payments._idempotency_claim(bigint, text, text, text, bigint) IS
	'Internal: claims an idempotency key for a request (about customer p_customer, if known), or returns the original call''s row (also one pay_erase_customer keeps as a digest, _erased_key); raises PT409 for the same key with different parameters (once the customer was erased: of another kind or naming another customer).';

CREATE FUNCTION payments._not_found(p_payment_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_payment_id IS NULL THEN
		RAISE EXCEPTION 'payment_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'payment % not found', p_payment_id
		USING ERRCODE = 'PT404', HINT = 'Payment ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._not_found(bigint) IS 'Internal: raises the payment-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';

------------------------------------------------------------------------------
-- pay_purchase / pay_authorize
------------------------------------------------------------------------------

-- A customer profile given by its ids rather than a stored method's.
-- Merchants of this installation on one gateway account (the same login
-- at the same endpoint) share the gateway's profiles: on such an account
-- a merchant charges by their ids only the profiles of its own customers,
-- and any other id gets the same answer, whoever's it is (told "another
-- merchant's" apart from "unknown", sequential ids let a merchant list
-- who the others' customers are).  With an account of its own, any
-- profile of the account may be charged (those made outside the
-- extension too); the gateway refuses those not of the account.
CREATE FUNCTION payments._check_profile_owner(p_merchant_id bigint, p_customer_profile_id text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.gateway_config mine
			JOIN payments.gateway_config theirs ON theirs.api_login_id = mine.api_login_id
				AND theirs.endpoint_url = mine.endpoint_url AND theirs.merchant_id <> mine.merchant_id
			WHERE mine.merchant_id = p_merchant_id)
		AND NOT EXISTS (SELECT 1 FROM payments.customers c
			WHERE c.customer_profile_id = p_customer_profile_id AND c.merchant_id = p_merchant_id) THEN
		RAISE EXCEPTION 'customer profile not found'
			USING ERRCODE = 'PT404',
				DETAIL = 'The merchant shares its gateway account with other merchants: only the profiles of its own customers can be charged by their ids.',
				HINT = 'Charge a stored payment method of one of this merchant''s customers (customer_id or payment_method_id).';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION payments._check_profile_owner(bigint, text) FROM PUBLIC;
COMMENT ON FUNCTION payments._check_profile_owner(bigint, text) IS
	'Internal: raises PT404 for profile ids given to pay_purchase or pay_authorize that are not of this merchant''s own customers when its gateway account (login and endpoint) is shared with other merchants of the installation.';

-- The payment row a purchase or authorization returns.  A key that may not
-- read the customer (neither read, the scope of pay_get_customer and
-- pay_get_payment, nor customers, whose functions return the customer)
-- gets nothing back that came from the customer's record: not the billing
-- details and email copied into customer (when the caller gave no customer
-- object), nor the stored card's brand, last four, expiry and fingerprint
-- (a payment of a stored method).  Those are NULL in the returned row; the
-- payment keeps them, and sends them.  Otherwise a payments-only key could
-- read any customer's personal data by charging it.
CREATE FUNCTION payments._payment_for_caller(p payments.payments, p_customer_copied boolean)
	RETURNS payments.payments
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF (p_customer_copied OR p.payment_method_id IS NOT NULL)
			AND NOT payments._key_has_scope('read') AND NOT payments._key_has_scope('customers') THEN
		IF p_customer_copied THEN
			p.customer := NULL;
		END IF;
		IF p.payment_method_id IS NOT NULL THEN
			p.card_brand := NULL;
			p.card_last4 := NULL;
			p.card_exp_month := NULL;
			p.card_exp_year := NULL;
			p.card_fingerprint := NULL;
		END IF;
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._payment_for_caller(payments.payments, boolean) IS
	'Internal: the payment row as pay_purchase and pay_authorize return it: for an API key with neither the scope read nor customers, customer (when copied from the customer, p_customer_copied) and a stored card''s brand, last four, expiry and fingerprint are NULL; the payment keeps them.';

CREATE FUNCTION payments._create_payment(
	p_kind text, p_amount payments.pay_amount, p_card payments.pay_card, p_opaque_data jsonb,
	p_customer_profile_id text, p_payment_profile_id text, p_description text, p_order_ref text,
	p_customer jsonb, p_metadata jsonb, p_idempotency_key text, p_correlation_id text,
	p_customer_id bigint DEFAULT NULL, p_payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql
	-- no search_path of its own: its only callers, pay_purchase and
	-- pay_authorize, pin pg_catalog, payments, pg_temp, and one set again
	-- here cost each purchase 11,000 instructions (fmgr sets and restores it)
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	methods int := (p_card IS NOT NULL)::int + (p_opaque_data IS NOT NULL)::int
		+ (p_customer_profile_id IS NOT NULL OR p_payment_profile_id IS NOT NULL)::int
		+ (p_payment_method_id IS NOT NULL)::int;
	method text;
	stored payments.payment_methods;
	idem payments.idempotency_keys;
	pid bigint;
	oid_ bigint;
	corr text := payments._correlation_id(p_correlation_id);
	customer_copied boolean := false;
	made record;
	result payments.payments;
BEGIN
	IF p_amount IS NULL THEN
		RAISE EXCEPTION 'amount is required' USING ERRCODE = '22004';
	END IF;
	IF pay_minor_units(p_amount) <= 0 THEN
		RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('The amount given was %s.', p_amount);
	END IF;
	-- A repeated call returns what the first one made whatever changed
	-- since (the customer's details, its default method, the method
	-- deleted): the key is looked up, with the arguments as given, before
	-- the stored method and the customer's details are resolved and
	-- checked.  The customer's row is locked first, then the key: the
	-- order of every call that locks a customer and claims a key.  A card
	-- is in the hash by what a caller may know of it (brand, last four,
	-- expiry), not its fingerprint: a key reused with a card number tried
	-- would tell whether the number is the one first sent.
	IF p_idempotency_key IS NOT NULL THEN
		IF p_customer_id IS NOT NULL OR p_payment_method_id IS NOT NULL THEN
			PERFORM 1 FROM payments.customers x
			WHERE x.merchant_id = m AND x.customer_id = coalesce(p_customer_id,
				(SELECT y.customer_id FROM payments.payment_methods y
				 WHERE y.merchant_id = m AND y.payment_method_id = p_payment_method_id))
			FOR KEY SHARE;
		END IF;
		-- metadata {} is what leaving it out makes, and so is customer {}
		-- where there is no customer's record to copy from: a retry that
		-- sends them (a client that writes every field) is the same request
		idem := payments._idempotency_claim(m, p_idempotency_key, p_kind, md5(jsonb_build_array(
			p_amount::text, payments.pay_card_brand(p_card), payments.pay_card_last4(p_card),
			payments.pay_card_exp_month(p_card),
			payments.pay_card_exp_year(p_card), p_opaque_data, p_customer_profile_id, p_payment_profile_id,
			p_description, p_order_ref,
			CASE WHEN p_customer_id IS NULL AND p_payment_method_id IS NULL
				THEN nullif(p_customer, '{}') ELSE p_customer END,
			nullif(p_metadata, '{}'), p_customer_id, p_payment_method_id)::text));
		IF idem.payment_id IS NOT NULL THEN
			SELECT * INTO result FROM payments.payments WHERE merchant_id = m AND payment_id = idem.payment_id;
			customer_copied := p_customer IS NULL AND result.customer_id IS NOT NULL;
			RETURN CASE WHEN customer_copied OR result.payment_method_id IS NOT NULL
				THEN payments._payment_for_caller(result, customer_copied) ELSE result END;
		END IF;
	END IF;
	-- a customer or a stored method (payment_methods.sql): the method's
	-- profile is charged, the customer's details fill customer
	IF p_customer_id IS NOT NULL OR p_payment_method_id IS NOT NULL THEN
		stored := payments._stored_method_for_payment(p_customer_id, p_payment_method_id, methods);
		IF stored.payment_method_id IS NOT NULL THEN
			p_customer_profile_id := stored.customer_profile_id;
			p_payment_profile_id := stored.payment_profile_id;
			p_customer_id := stored.customer_id;
			methods := 1;
		END IF;
	END IF;
	IF p_customer_id IS NOT NULL AND p_customer IS NULL THEN
		p_customer := payments._customer_billing(p_customer_id);
		customer_copied := true;
	END IF;
	IF methods <> 1 THEN
		RAISE EXCEPTION 'exactly one payment method is required'
			USING ERRCODE = '22Y22',
				DETAIL = format('%s payment methods were given.', methods),
				HINT = 'Pass card, opaque_data, or customer_profile_id with payment_profile_id.';
	END IF;
	IF p_card IS NOT NULL THEN
		method := 'card';
	ELSIF p_opaque_data IS NOT NULL THEN
		method := 'opaque_data';
		PERFORM payments._check_opaque_data(p_opaque_data);
	ELSE
		method := 'profile';
		IF p_customer_profile_id IS NULL OR p_payment_profile_id IS NULL THEN
			RAISE EXCEPTION 'customer_profile_id and payment_profile_id go together'
				USING ERRCODE = '22Y22';
		END IF;
	END IF;
	IF p_customer IS NOT NULL AND jsonb_typeof(p_customer) <> 'object' THEN
		RAISE EXCEPTION 'customer must be a JSON object' USING ERRCODE = '22023';
	END IF;
	-- metadata and order_ref are kept, not sent: bounds and no card number
	-- (the description and customer: _check_gateway_input)
	IF p_metadata IS NOT NULL THEN
		PERFORM payments._check_metadata(p_metadata);
	END IF;
	IF p_order_ref IS NOT NULL THEN
		PERFORM payments._check_text('order_ref', p_order_ref, 255);
	END IF;
	PERFORM payments._check_gateway_input(p_amount, p_description, p_customer, corr,
		p_customer_profile_id, p_payment_profile_id);
	-- profile ids the caller gave, once their form is checked: a
	-- malformed id is 22Y22 and a card number 22Y17 on a shared gateway
	-- account too (neither can be a profile of anyone's, so saying so
	-- tells nothing of the others' customers; before, such an id got
	-- PT404 there, and a card number given as one was not refused as one)
	IF method = 'profile' AND stored.payment_method_id IS NULL THEN
		PERFORM payments._check_profile_owner(m, p_customer_profile_id);
	END IF;

	-- The payment, its operation and the sealed card or nonce (it can
	-- charge the card once: it waits sealed, like a card) in one statement:
	-- each statement costs a purchase an executor of its own.  The payment
	-- is written first (the operation reads it), so its event comes first.
	pid := nextval('payments.payments_payment_id_seq');
	oid_ := nextval('payments.operations_operation_id_seq');
	WITH p AS (
	INSERT INTO payments.payments AS n (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description, order_ref,
		customer, metadata, correlation_id, idempotency_key, customer_id, payment_method_id)
	OVERRIDING SYSTEM VALUE
	VALUES (m, pid, p_kind, p_amount, p_amount * 0, method,
		coalesce(payments.pay_card_brand(p_card), stored.card_brand),
		coalesce(payments.pay_card_last4(p_card), stored.card_last4),
		coalesce(payments.pay_card_exp_month(p_card), stored.card_exp_month),
		coalesce(payments.pay_card_exp_year(p_card), stored.card_exp_year),
		-- a card's fingerprint comes with the gateway's answer (see
		-- _record_final_results)
		stored.card_fingerprint,
		p_customer_profile_id, p_payment_profile_id,
		'P' || coalesce(payments._server_tag(), payments._invoice_tag()) || pid, p_description, p_order_ref,
		coalesce(p_customer, '{}'), coalesce(p_metadata, '{}'), corr, p_idempotency_key,
		p_customer_id, stored.payment_method_id)
	RETURNING n
	), o AS (
	INSERT INTO payments.operations (operation_id, merchant_id, payment_id, kind, amount,
		idempotency_key, correlation_id)
	OVERRIDING SYSTEM VALUE
	SELECT oid_, m, pid, p_kind, p_amount, p_idempotency_key, corr FROM p
	RETURNING operation_id
	), v AS (
	INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
	SELECT m, o.operation_id, CASE WHEN p_card IS NOT NULL THEN payments._card_sealed(p_card)
		ELSE payments._opaque_data_sealed(p_opaque_data ->> 'dataDescriptor', p_opaque_data ->> 'dataValue') END
	FROM o WHERE p_card IS NOT NULL OR p_opaque_data IS NOT NULL
	)
	-- the row as one value: (p.n).* would build a projection of every
	-- column of payments, 29,000 instructions of each purchase.  o and v
	-- run to their end with the statement, read or not: v reads o, which
	-- reads p, so the payment is still written first
	SELECT p.n INTO made FROM p;
	result := made.n;

	IF p_idempotency_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = pid, operation_id = oid_,
			customer_id = result.customer_id
		WHERE merchant_id = m AND idempotency_key = p_idempotency_key;
	END IF;
	PERFORM payments._wake_at_commit();
	-- (only a payment of a customer or stored method has anything to hide:
	-- a card payment's row goes back without another function call)
	RETURN CASE WHEN customer_copied OR result.payment_method_id IS NOT NULL
		THEN payments._payment_for_caller(result, customer_copied) ELSE result END;
END
$$;
COMMENT ON FUNCTION payments._create_payment(text, payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Internal: records a purchase or authorization and its gateway operation; the worker sends it after COMMIT. Returns the payment row as _payment_for_caller shows it.';

CREATE FUNCTION payments.pay_purchase(
	amount payments.pay_amount,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL,
	description text DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL,
	customer_id bigint DEFAULT NULL,
	payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	RETURN payments._create_payment('purchase', amount, card, opaque_data, customer_profile_id,
		payment_profile_id, description, order_ref, customer, metadata, idempotency_key, correlation_id,
		customer_id, payment_method_id);
END
$$;
COMMENT ON FUNCTION payments.pay_purchase(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Authorize and capture a payment. Records the payment (status pending) and wakes the worker at COMMIT; the gateway''s answer arrives asynchronously (pay_wait). customer_id records the customer (its billing details and email are sent when customer is not given); payment_method_id charges a stored method (merchant-initiated, with the card-on-file fields); a customer_id alone charges its default method. Returns the payment row.';

CREATE FUNCTION payments.pay_authorize(
	amount payments.pay_amount,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	customer_profile_id text DEFAULT NULL,
	payment_profile_id text DEFAULT NULL,
	description text DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL,
	customer_id bigint DEFAULT NULL,
	payment_method_id bigint DEFAULT NULL)
	RETURNS payments.payments
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	RETURN payments._create_payment('authorize', amount, card, opaque_data, customer_profile_id,
		payment_profile_id, description, order_ref, customer, metadata, idempotency_key, correlation_id,
		customer_id, payment_method_id);
END
$$;
COMMENT ON FUNCTION payments.pay_authorize(payments.pay_amount, payments.pay_card, jsonb, text, text, text, text, jsonb, jsonb, text, text, bigint, bigint) IS
	'Authorize a payment without capturing it (status requires_capture once approved); capture later with pay_capture or release with pay_void. customer_id and payment_method_id as for pay_purchase. Returns the payment row.';

------------------------------------------------------------------------------
-- pay_capture / pay_void / pay_refund
------------------------------------------------------------------------------

-- Lock a payment of the current merchant, or raise PT404.
CREATE FUNCTION payments._lock_payment(p_payment_id bigint) RETURNS payments.payments
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments;
BEGIN
	-- Locked by an update, not a SELECT ... FOR UPDATE.  What other
	-- captures, voids and refunds of the payment committed is read after
	-- this lock, and at REPEATABLE READ or SERIALIZABLE the snapshot may
	-- predate them: two refunds of the whole amount both passed and were
	-- both sent (SSI sees nothing when the other session is at READ
	-- COMMITTED).  Each of these calls now writes the row, so a snapshot
	-- older than another's committed call fails on it with 40001, and READ
	-- COMMITTED waits and then reads the other's operations.  The update
	-- changes no key, so its lock is NO KEY UPDATE: another session's
	-- foreign-key check (a billing run's invoice, a row the worker adds)
	-- does not wait for this caller's transaction.  (status_guard stamps
	-- updated_at.)
	UPDATE payments.payments x SET updated_at = clock_timestamp()
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.payment_id = p_payment_id
	RETURNING * INTO p;
	IF NOT FOUND THEN
		PERFORM payments._not_found(p_payment_id);
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._lock_payment(bigint) IS 'Internal: locks a payment of the current merchant or raises PT404.';

-- A payment of the current merchant, or PT404: another merchant's payment
-- is unknown too (its existence is not revealed).
CREATE FUNCTION payments._find_payment(p_payment_id bigint) RETURNS payments.payments
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments;
BEGIN
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = payments.pay_current_merchant() AND payment_id = p_payment_id;
	IF NOT FOUND THEN
		PERFORM payments._not_found(p_payment_id);
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._find_payment(bigint) IS 'Internal: a payment of the current merchant, or PT404.';

-- The longest pay_wait: the payments.max_wait setting (superuser-only).
CREATE FUNCTION payments._max_wait() RETURNS interval
	LANGUAGE sql STABLE
	AS $$
	SELECT coalesce(nullif(current_setting('payments.max_wait', true), ''), '30s')::interval
	$$;
COMMENT ON FUNCTION payments._max_wait() IS 'Internal: the longest timeout pay_wait accepts (payments.max_wait).';

CREATE FUNCTION payments._wrong_state(p payments.payments, action text, detail text DEFAULT NULL) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'cannot % payment % in status %', action, p.payment_id, p.status
		USING ERRCODE = '22Y20',
			DETAIL = coalesce(detail, format('A payment in status %s cannot be %s.', p.status,
				CASE action WHEN 'capture' THEN 'captured' WHEN 'void' THEN 'voided' ELSE 'refunded' END));
END
$$;
COMMENT ON FUNCTION payments._wrong_state(payments.payments, text, text) IS 'Internal: raises the invalid-state error (22Y20).';

-- An operation of this payment that is still on its way to the gateway,
-- or a capture or void that may have reached it and ran out of attempts:
-- until the owner settles it (pay_resolve_dead_letter) nobody knows whether
-- the payment is captured or canceled.  (A dead refund is counted in what
-- is left to refund instead, pay_refund.)
CREATE FUNCTION payments._busy_operation(p payments.payments) RETURNS payments.operations
	LANGUAGE sql STABLE AS $$
	SELECT * FROM payments.operations o
	WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
		AND (o.status IN ('queued', 'sending', 'unknown')
			OR (o.status = 'dead' AND o.kind IN ('capture', 'void') AND NOT o.never_sent))
	ORDER BY o.operation_id LIMIT 1
	$$;
COMMENT ON FUNCTION payments._busy_operation(payments.payments) IS 'Internal: an unfinished gateway operation of a payment, if any: queued, sending or unknown, or a capture or void that may have reached the gateway and is a dead letter.';

CREATE FUNCTION payments._idempotent_operation(m bigint, key text, kind text, hash text)
	RETURNS payments.operations
	LANGUAGE plpgsql AS $$
DECLARE
	idem payments.idempotency_keys := payments._idempotency_claim(m, key, kind, hash);
	o payments.operations;
BEGIN
	IF idem.operation_id IS NOT NULL THEN
		SELECT * INTO o FROM payments.operations WHERE merchant_id = m AND operation_id = idem.operation_id;
	END IF;
	RETURN o;
END
$$;
COMMENT ON FUNCTION payments._idempotent_operation(bigint, text, text, text) IS
	'Internal: the operation an earlier call with this idempotency key created, if any.';

CREATE FUNCTION payments._new_operation(p payments.payments, p_kind text, p_amount payments.pay_amount,
	p_status text, p_reason text, p_key text, p_correlation_id text, p_via_void boolean DEFAULT false)
	RETURNS payments.operations
	LANGUAGE plpgsql AS $$
DECLARE
	o payments.operations;
	corr text := payments._correlation_id(p_correlation_id);
	account text := payments._payment_account(p.merchant_id, p.payment_id);
BEGIN
	-- the correlation id is sent as refId
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	-- a capture, void or refund acts on the payment's transaction: it goes to
	-- the gateway account the payment was made at, or nowhere: refused
	-- while the merchant is at another (_claim_operations holds one queued
	-- before a change)
	PERFORM payments._refuse_other_account(p.merchant_id, account, format('payment %s was made', p.payment_id),
		'Configure the account it was made at again (pay_configure_gateway: going back to it is allowed) and call again, or do it in that account''s Merchant Interface. Meanwhile its settlement is not learned either (settled_at stays empty).');
	INSERT INTO payments.operations (merchant_id, payment_id, kind, status, amount, reason, via_void,
		idempotency_key, correlation_id, gateway_account)
	VALUES (p.merchant_id, p.payment_id, p_kind, p_status, p_amount, p_reason, p_via_void, p_key, corr,
		account)
	RETURNING * INTO o;
	IF p_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET payment_id = p.payment_id, operation_id = o.operation_id,
			customer_id = p.customer_id
		WHERE merchant_id = p.merchant_id AND idempotency_key = p_key;
	END IF;
	IF p_status = 'queued' THEN
		PERFORM payments._wake_at_commit();
	END IF;
	RETURN o;
END
$$;
COMMENT ON FUNCTION payments._new_operation(payments.payments, text, payments.pay_amount, text, text, text, text, boolean) IS
	'Internal: records a gateway operation for a payment and wakes the worker at COMMIT.';

CREATE FUNCTION payments.pay_capture(
	payment_id bigint,
	amount payments.pay_amount DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_capture.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_capture.idempotency_key,
		'capture', md5(jsonb_build_array(pay_capture.payment_id, pay_capture.amount::text)::text));
	capture_amount payments.pay_amount := coalesce(pay_capture.amount, p.amount_authorized, p.amount);
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	IF p.kind <> 'authorize' THEN
		PERFORM payments._wrong_state(p, 'capture', 'Only authorizations can be captured; a purchase is captured already.');
	END IF;
	IF EXISTS (SELECT 1 FROM payments.operations x WHERE x.merchant_id = p.merchant_id
			AND x.payment_id = p.payment_id AND x.kind = 'capture' AND x.status NOT IN ('failed', 'canceled')) THEN
		PERFORM payments._wrong_state(p, 'capture', 'An authorization can be captured only once.');
	END IF;
	IF p.status <> 'requires_capture' THEN
		PERFORM payments._wrong_state(p, 'capture');
	END IF;
	IF (payments._busy_operation(p)).operation_id IS NOT NULL THEN
		PERFORM payments._wrong_state(p, 'capture', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	IF pay_currency(capture_amount) <> pay_currency(p.amount) THEN
		RAISE EXCEPTION 'capture amount % is not in the payment''s currency %', capture_amount, pay_currency(p.amount)
			USING ERRCODE = '22Y03', HINT = 'Capture in the currency that was authorized.';
	END IF;
	IF pay_minor_units(capture_amount) <= 0 THEN
		RAISE EXCEPTION 'capture amount must be positive' USING ERRCODE = '22Y23';
	END IF;
	IF capture_amount > coalesce(p.amount_authorized, p.amount) THEN
		RAISE EXCEPTION 'capture amount % exceeds the authorized amount %', capture_amount,
			coalesce(p.amount_authorized, p.amount)
			USING ERRCODE = '22Y21', HINT = 'Capture at most the authorized amount; the rest is released.';
	END IF;
	RETURN payments._new_operation(p, 'capture', capture_amount, 'queued', NULL,
		pay_capture.idempotency_key, pay_capture.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_capture(bigint, payments.pay_amount, text, text) IS
	'Capture an authorization, fully or partially (at most once; the rest of the authorization is released). Returns the capture operation; the worker sends it after COMMIT.';

CREATE FUNCTION payments.pay_void(
	payment_id bigint,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_void.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_void.idempotency_key,
		'void', md5(jsonb_build_array(pay_void.payment_id)::text));
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	IF p.status NOT IN ('requires_capture', 'succeeded', 'in_review') THEN
		PERFORM payments._wrong_state(p, 'void');
	END IF;
	-- known settled: refused now (the worker also asks the gateway before
	-- it sends a void, and fails one that settled meanwhile)
	IF p.settled_at IS NOT NULL THEN
		RAISE EXCEPTION 'cannot void payment % in status %: it has settled', p.payment_id, p.status
			USING ERRCODE = '22Y20',
				DETAIL = format('The gateway settled the capture at %s%s.', p.settled_at,
					coalesce(format(' (batch %s)', p.settlement_batch_id), '')),
				HINT = 'A settled payment can only be refunded: use pay_refund.';
	END IF;
	IF EXISTS (SELECT 1 FROM payments.operations x WHERE x.merchant_id = p.merchant_id
			AND x.payment_id = p.payment_id AND x.kind = 'refund' AND x.status <> 'failed') THEN
		PERFORM payments._wrong_state(p, 'void', 'The payment has refunds; it can no longer be voided.');
	END IF;
	IF (payments._busy_operation(p)).operation_id IS NOT NULL THEN
		PERFORM payments._wrong_state(p, 'void', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	RETURN payments._new_operation(p, 'void', NULL, 'queued', NULL,
		pay_void.idempotency_key, pay_void.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_void(bigint, text, text) IS
	'Cancel an authorization or an unsettled capture. Returns the void operation; the worker sends it after COMMIT.';

CREATE FUNCTION payments.pay_refund(
	payment_id bigint,
	amount payments.pay_amount DEFAULT NULL,
	reason text DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.operations
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments := payments._lock_payment(pay_refund.payment_id);
	o payments.operations := payments._idempotent_operation(p.merchant_id, pay_refund.idempotency_key,
		'refund', md5(jsonb_build_array(pay_refund.payment_id, pay_refund.amount::text, pay_refund.reason)::text));
	captured payments.pay_amount;
	committed payments.pay_amount;
	dead payments.pay_amount;
	held payments.pay_amount;
	note text := '';
	remaining payments.pay_amount;
	refund_amount payments.pay_amount;
BEGIN
	IF o.operation_id IS NOT NULL THEN
		RETURN o;
	END IF;
	PERFORM payments._check_text('reason', pay_refund.reason, 255);
	IF p.status NOT IN ('succeeded', 'partially_refunded') THEN
		PERFORM payments._wrong_state(p, 'refund');
	END IF;
	captured := p.amount_captured;
	-- refunds already made or on their way count against what is left,
	-- and so do refunds held for review (the gateway may still approve
	-- them) and dead letters (a retry may still make them)
	SELECT coalesce(sum(x.amount), p.amount * 0),
		coalesce(sum(x.amount) FILTER (WHERE x.status = 'dead'), p.amount * 0),
		coalesce(sum(x.amount) FILTER (WHERE x.status = 'in_review'), p.amount * 0)
	INTO committed, dead, held FROM payments.operations x
	WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id AND x.kind = 'refund'
		AND x.status IN ('queued', 'sending', 'unknown', 'succeeded', 'waiting_settlement', 'dead',
			'in_review');
	IF pay_minor_units(held) <> 0 THEN
		note := format(' %s of it is in refunds the gateway holds for review, refunded once it approves them.', held);
	END IF;
	IF pay_minor_units(dead) <> 0 THEN
		note := note || format(' %s of it is in refunds that ran out of attempts (dead letters), which the owner sends again with pay_retry_dead_letter or settles with pay_resolve_dead_letter.', dead);
	END IF;
	remaining := captured - committed;
	refund_amount := coalesce(pay_refund.amount, remaining);
	IF pay_currency(refund_amount) <> pay_currency(p.amount) THEN
		RAISE EXCEPTION 'refund amount % is not in the payment''s currency %', refund_amount, pay_currency(p.amount)
			USING ERRCODE = '22Y03', HINT = 'A refund is made in the currency the payment was made in.';
	END IF;
	-- (no amount given: the rest, and nothing is left)
	IF pay_refund.amount IS NULL AND pay_minor_units(refund_amount) <= 0 THEN
		RAISE EXCEPTION 'nothing is left to refund' USING ERRCODE = '22Y23',
			DETAIL = format('%s of %s captured is left to refund.%s', remaining, captured, note);
	END IF;
	IF pay_minor_units(refund_amount) <= 0 THEN
		RAISE EXCEPTION 'refund amount must be positive' USING ERRCODE = '22Y23',
			DETAIL = format('%s of %s captured is left to refund.%s', remaining, captured, note);
	END IF;
	IF refund_amount > remaining THEN
		RAISE EXCEPTION 'refund amount % exceeds the % left to refund', refund_amount, remaining
			USING ERRCODE = '22Y21',
				DETAIL = format('%s was captured and %s is refunded or being refunded.%s', captured, committed, note);
	END IF;
	IF (payments._busy_operation(p)).operation_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.operations x
			WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
				AND x.status IN ('queued', 'sending', 'unknown') AND x.kind = 'refund') THEN
		PERFORM payments._wrong_state(p, 'refund', 'Another operation on this payment is in progress, or ran out of attempts after it may have reached the gateway and waits for the owner (pay_resolve_dead_letter).');
	END IF;
	-- Void, refund or wait is decided by the worker from the gateway's state
	-- of the capture when it processes the refund: settled, a refund; not
	-- settled, a void when the whole capture is refunded, else it waits
	-- (waiting_settlement) and goes out once the batch has settled.
	RETURN payments._new_operation(p, 'refund', refund_amount, 'queued', pay_refund.reason,
		pay_refund.idempotency_key, pay_refund.correlation_id);
END
$$;
COMMENT ON FUNCTION payments.pay_refund(bigint, payments.pay_amount, text, text, text) IS
	'Refund a captured payment, fully or partially (several partial refunds up to the captured amount). The worker asks the gateway first: a settled capture is refunded; before settlement a full refund is sent as a void and a partial one waits for settlement (waiting_settlement). A refund the gateway holds for review is in_review: its amount is not refunded yet, and no other refund can take it, until the gateway decides. Returns the refund operation.';


CREATE FUNCTION payments.pay_wait(payment_id bigint, timeout interval DEFAULT '30 seconds')
	RETURNS payments.payments
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	result payments.payments;
BEGIN
	IF timeout IS NULL THEN
		RAISE EXCEPTION 'timeout is required' USING ERRCODE = '22004',
			HINT = 'Pass an interval such as ''30 seconds'', or leave timeout out for the default.';
	END IF;
	IF timeout < interval '0' OR timeout > payments._max_wait() THEN
		RAISE EXCEPTION 'timeout must be between 0 and %', payments._max_wait() USING ERRCODE = '22023',
			DETAIL = format('%s was asked for; the payments.max_wait setting allows at most %s.', timeout, payments._max_wait()),
			HINT = 'Wait again after the timeout, or ask the administrator to raise payments.max_wait.';
	END IF;
	-- an unknown or foreign payment is not waited for
	PERFORM payments._find_payment(pay_wait.payment_id);
	PERFORM payments._wait_for_payment(m, pay_wait.payment_id,
		(extract(epoch FROM timeout) * 1000)::integer);
	SELECT * INTO result FROM payments.payments p WHERE p.merchant_id = m AND p.payment_id = pay_wait.payment_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_wait(bigint, interval) IS
	'Blocks until the payment''s gateway work is done (approved, declined, captured, voided, refunded, or still unknown) or the timeout passes, without polling; returns the payment row. Call it after the COMMIT that created the work.';

CREATE FUNCTION payments.pay_get_payment(payment_id bigint) RETURNS payments.payments
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_payment(pay_get_payment.payment_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_payment(bigint) IS
	'A payment of the current merchant; an unknown id, or another merchant''s, raises PT404 (PostgREST: 404).';

CREATE FUNCTION payments.pay_payment_operations(payment_id bigint) RETURNS SETOF payments.operations
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT o.* FROM payments._find_payment(pay_payment_operations.payment_id) p
	JOIN payments.operations o ON o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
	ORDER BY o.operation_id
	$$;
COMMENT ON FUNCTION payments.pay_payment_operations(bigint) IS
	'The gateway operations (authorize, capture, void, refunds) of a payment of the current merchant, oldest first; an unknown id, or another merchant''s, raises PT404.';
