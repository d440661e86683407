-- Customers: per merchant, with their billing details; create, update, find, list, delete.

------------------------------------------------------------------------------
-- A customer is the merchant's record of a person or business that pays:
-- email, name, the merchant's own reference, billing details (the same
-- object pay_purchase takes as customer) and metadata.  Its stored payment
-- methods (payment_methods.sql) hang off one Authorize.Net customer
-- profile, made by the worker when the first method is saved
-- (merchantCustomerId = gateway_customer_ref).
------------------------------------------------------------------------------

CREATE TABLE payments.customers (
	merchant_id bigint NOT NULL REFERENCES payments.merchants,
	customer_id bigint GENERATED ALWAYS AS IDENTITY,
	status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
	email text CHECK (length(email) <= 255),
	name text CHECK (length(name) <= 255),
	external_ref text CHECK (length(external_ref) <= 255),
	-- billing details sent as billTo/customer (keys as pay_purchase's customer)
	billing jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(billing) = 'object'),
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	-- the gateway's customer profile (set by the worker)
	customer_profile_id text,
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	erased_at timestamptz,
	-- the server life's tag it was made under (_server_tag), in its
	-- profile's merchantCustomerId; NULL: the installation's
	gateway_tag text CHECK (gateway_tag ~ '^[0-9A-F]{6}$'),
	PRIMARY KEY (merchant_id, customer_id)
);
CREATE INDEX customers_created ON payments.customers (merchant_id, created_at, customer_id);
-- a profile given by its ids is checked against other merchants'
-- customers (payment_api.sql, _check_profile_owner)
CREATE INDEX customers_profile ON payments.customers (customer_profile_id)
	WHERE customer_profile_id IS NOT NULL;
CREATE INDEX customers_email ON payments.customers (merchant_id, lower(email), created_at, customer_id)
	WHERE email IS NOT NULL;
CREATE INDEX customers_external_ref ON payments.customers (merchant_id, external_ref)
	WHERE external_ref IS NOT NULL;
-- a repeated pay_create_customer finds the newest customer its key made
-- (not unique: once the key's retention ended, the key makes another)
CREATE INDEX customers_idempotency_key ON payments.customers (merchant_id, idempotency_key, customer_id)
	WHERE idempotency_key IS NOT NULL;
COMMENT ON TABLE payments.customers IS
	'Customers of each merchant: email, name, external reference, billing details, metadata and the gateway customer profile that holds their stored payment methods. Deleted customers are kept (status deleted); erased ones keep no personal data.';
REVOKE ALL ON payments.customers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('payments.customers', '');
SELECT pg_catalog.pg_extension_config_dump('payments.customers_customer_id_seq', '');

-- The merchantCustomerId of a customer's gateway profile: unique per
-- installation (the invoice tag) and at most 20 characters.
CREATE FUNCTION payments._gateway_customer_ref(p_customer_id bigint, p_tag text DEFAULT NULL) RETURNS text
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT 'C' || left(coalesce(p_tag, payments._invoice_tag()), 19 - length(p_customer_id::text)) || p_customer_id
	$$;
COMMENT ON FUNCTION payments._gateway_customer_ref(bigint, text) IS
	'Internal: the merchantCustomerId of a customer''s gateway profile (C, p_tag: the tag of the server life it was made in, customers.gateway_tag, else the installation''s, then the customer id; at most 20 characters).';

CREATE FUNCTION payments._customer_not_found(p_customer_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_customer_id IS NULL THEN
		RAISE EXCEPTION 'customer_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'customer % not found', p_customer_id
		USING ERRCODE = 'PT404', HINT = 'Customer ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._customer_not_found(bigint) IS 'Internal: raises the customer-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';

-- A customer of the current merchant (locked when p_lock), or PT404;
-- deleted customers only when p_deleted_ok.
CREATE FUNCTION payments._find_customer(p_customer_id bigint, p_lock boolean DEFAULT false,
	p_deleted_ok boolean DEFAULT true)
	RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO c FROM payments.customers
		WHERE merchant_id = payments.pay_current_merchant() AND customer_id = p_customer_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO c FROM payments.customers
		WHERE merchant_id = payments.pay_current_merchant() AND customer_id = p_customer_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._customer_not_found(p_customer_id);
	END IF;
	IF NOT p_deleted_ok AND c.status = 'deleted' THEN
		RAISE EXCEPTION 'customer % is deleted', p_customer_id
			USING ERRCODE = '22Y20', HINT = 'A deleted customer can be read and exported, not changed or charged.';
	END IF;
	RETURN c;
END
$$;
COMMENT ON FUNCTION payments._find_customer(bigint, boolean, boolean) IS
	'Internal: a customer of the current merchant (optionally locked), or PT404; 22Y20 for a deleted one unless allowed.';

-- A customer to delete or erase, locked.  Both then read what else the
-- customer has (pending methods, subscriptions, payments) to end or erase
-- it.  A snapshot older than the lock would miss what another session
-- committed meanwhile: a method saved, a subscription or a payment made
-- (those lock the customer too, and an older snapshot does not see it).  A
-- deleted customer then kept an active card on file and a running
-- subscription, and an erased one its billing details on a payment.  So
-- READ COMMITTED only, where each statement after the lock sees them, and
-- FOR UPDATE: it waits for the KEY SHARE of a payment or subscription
-- being made (_share_customer) as for a method being saved.
CREATE FUNCTION payments._lock_customer_to_end(p_customer_id bigint, p_action text)
	RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'a customer cannot be %d in a % transaction', p_action,
				upper(current_setting('transaction_isolation'))
			USING ERRCODE = '25000',
				DETAIL = 'A payment method, subscription or payment of the customer that another session commits meanwhile would not be seen.',
				HINT = 'Run it at READ COMMITTED (the default).';
	END IF;
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.customer_id = p_customer_id
	FOR UPDATE;
	RETURN payments._find_customer(p_customer_id);
END
$$;
COMMENT ON FUNCTION payments._lock_customer_to_end(bigint, text) IS
	'Internal: locks a customer of the current merchant FOR UPDATE to delete or erase it (p_action); refused (25000) outside READ COMMITTED.';

-- A customer a payment or a subscription is made for, locked FOR KEY
-- SHARE, as a foreign key would: it waits for no other payment,
-- subscription or update of the customer, only for a deletion or erasure
-- (FOR UPDATE, _lock_customer_to_end), which in turn waits for the
-- caller's transaction and then sees what it made; or the caller waits for
-- it and then finds the customer deleted (22Y20).
CREATE FUNCTION payments._share_customer(p_customer_id bigint) RETURNS payments.customers
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = payments.pay_current_merchant() AND x.customer_id = p_customer_id
	FOR KEY SHARE;
	RETURN payments._find_customer(p_customer_id, false, false);
END
$$;
COMMENT ON FUNCTION payments._share_customer(bigint) IS
	'Internal: a customer of the current merchant, locked FOR KEY SHARE, to make a payment or a subscription for; PT404, or 22Y20 for a deleted one.';

-- A customer's email and name, against the customer profile fields they
-- fill (src/anet/anet_fields.c): 22Y24 for a character the gateway cannot
-- carry, 22001 for a text too long.
CREATE FUNCTION payments._check_customer_profile_input(email text, name text)
	RETURNS void
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pay_check_customer_input';
COMMENT ON FUNCTION payments._check_customer_profile_input(text, text) IS
	'Internal: raises 22Y24 (character the gateway cannot carry) or 22001 (longer than profile.email or profile.description, 255) for a customer''s email or name.';

-- The customer's texts, against what the gateway takes: the email goes to
-- the profile's email and customer.email (255), the name to the profile's
-- description (255), the billing details to billTo.
CREATE FUNCTION payments._check_customer_input(p_email text, p_name text, p_external_ref text,
	p_billing jsonb, p_metadata jsonb, p_correlation_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	PERFORM payments._check_text('external_ref', p_external_ref, 255);
	IF p_billing IS NOT NULL AND jsonb_typeof(p_billing) <> 'object' THEN
		RAISE EXCEPTION 'billing must be a JSON object' USING ERRCODE = '22023',
			HINT = 'Pass the billing details as pay_purchase''s customer object, e.g. {"first_name": "Ada", "zip": "46201"}.';
	END IF;
	PERFORM payments._check_metadata(p_metadata);
	IF p_email IS NOT NULL AND p_email !~ '^[^@[:space:]]+@[^@[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid email address' USING ERRCODE = '22023',
			HINT = 'Pass an address such as ada@example.com, or NULL.';
	END IF;
	PERFORM payments._check_customer_profile_input(p_email, p_name);
	PERFORM payments._check_gateway_input(NULL, NULL, p_billing, p_correlation_id);
END
$$;
COMMENT ON FUNCTION payments._check_customer_input(text, text, text, jsonb, jsonb, text) IS
	'Internal: refuses customer input the gateway would refuse (lengths and characters of email, name and billing details; 22001, 22Y24), an external_ref over 255 characters (22001), malformed or oversized objects (22023, 22001) and a card number in any of them (22Y17).';

CREATE FUNCTION payments.pay_create_customer(
	email text DEFAULT NULL,
	name text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	billing jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_customer.correlation_id);
	idem payments.idempotency_keys;
	result payments.customers;
BEGIN
	PERFORM payments._check_customer_input(pay_create_customer.email, pay_create_customer.name,
		pay_create_customer.external_ref, pay_create_customer.billing, pay_create_customer.metadata, corr);
	idem := payments._idempotency_claim(m, pay_create_customer.idempotency_key, 'create_customer',
		-- billing and metadata {} are what leaving them out makes
		md5(jsonb_build_array(pay_create_customer.email, pay_create_customer.name,
			pay_create_customer.external_ref, nullif(pay_create_customer.billing, '{}'),
			nullif(pay_create_customer.metadata, '{}'))::text));
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO result FROM payments.customers c
		WHERE c.merchant_id = m AND c.idempotency_key = idem.idempotency_key	-- as kept (erased: a digest)
		ORDER BY c.customer_id DESC LIMIT 1;	-- the newest: the one the live key made (an older one may hold the key from before its retention)
		RETURN result;
	END IF;
	-- made after the database changed server: the customer id may be one
	-- the server before gave its own customer after the copy, whose
	-- profile's merchantCustomerId C<tag><customer_id> the gateway holds
	-- (a save would have been answered E00039 naming that profile, and
	-- adopted it: the card of another person); the server life's tag
	INSERT INTO payments.customers AS c (merchant_id, email, name, external_ref, billing, metadata,
		idempotency_key, correlation_id, gateway_tag)
	VALUES (m, pay_create_customer.email, pay_create_customer.name, pay_create_customer.external_ref,
		coalesce(pay_create_customer.billing, '{}'), coalesce(pay_create_customer.metadata, '{}'),
		pay_create_customer.idempotency_key, corr, payments._server_tag())
	RETURNING * INTO result;
	IF pay_create_customer.idempotency_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys k SET customer_id = result.customer_id
		WHERE k.merchant_id = m AND k.idempotency_key = pay_create_customer.idempotency_key;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_create_customer(text, text, text, jsonb, jsonb, text, text) IS
	'Creates a customer of the current merchant: email, name, external_ref (the merchant''s own id), billing (pay_purchase''s customer object: first_name, last_name, company, address, city, state, zip, country), metadata. Writes a customer.created event. Returns the customer row.';

CREATE FUNCTION payments.pay_update_customer(
	customer_id bigint,
	email text DEFAULT NULL,
	name text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	billing jsonb DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_update_customer.customer_id, true);
	corr text := payments._correlation_id(pay_update_customer.correlation_id);
	idem payments.idempotency_keys;
	result payments.customers;
BEGIN
	PERFORM payments._check_customer_input(pay_update_customer.email, pay_update_customer.name,
		pay_update_customer.external_ref, pay_update_customer.billing, pay_update_customer.metadata, corr);
	idem := payments._idempotency_claim(c.merchant_id, pay_update_customer.idempotency_key, 'update_customer',
		md5(jsonb_build_array(pay_update_customer.customer_id, pay_update_customer.email,
			pay_update_customer.name, pay_update_customer.external_ref, pay_update_customer.billing,
			pay_update_customer.metadata)::text), c.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN c;				-- applied once already, even if deleted since
	END IF;
	PERFORM payments._find_customer(c.customer_id, false, false);	-- 22Y20 once deleted
	UPDATE payments.customers u SET
		email = coalesce(pay_update_customer.email, u.email),
		name = coalesce(pay_update_customer.name, u.name),
		external_ref = coalesce(pay_update_customer.external_ref, u.external_ref),
		billing = coalesce(pay_update_customer.billing, u.billing),
		metadata = coalesce(pay_update_customer.metadata, u.metadata),
		updated_at = clock_timestamp()
	WHERE u.merchant_id = c.merchant_id AND u.customer_id = c.customer_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (c.merchant_id, 'customer.updated', jsonb_build_object('customer_id', c.customer_id,
		'fields', (SELECT jsonb_agg(k) FROM unnest(ARRAY['email', 'name', 'external_ref', 'billing', 'metadata'],
			ARRAY[pay_update_customer.email IS NOT NULL, pay_update_customer.name IS NOT NULL,
				pay_update_customer.external_ref IS NOT NULL, pay_update_customer.billing IS NOT NULL,
				pay_update_customer.metadata IS NOT NULL]) AS x(k, given) WHERE given)), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_customer(bigint, text, text, text, jsonb, jsonb, text, text) IS
	'Changes the fields given (NULL: unchanged) of a customer of the current merchant; billing and metadata are replaced whole. Writes a customer.updated event naming the fields. PT404 for an unknown or foreign id, 22Y20 for a deleted customer.';

CREATE FUNCTION payments.pay_get_customer(customer_id bigint) RETURNS payments.customers
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_customer(pay_get_customer.customer_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_customer(bigint) IS
	'A customer of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_find_customers(
	email text DEFAULT NULL,
	external_ref text DEFAULT NULL,
	include_deleted boolean DEFAULT false,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.customers
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last customer_id of this one.';
	END IF;
	IF after IS NOT NULL THEN
		SELECT c.created_at INTO cursor_at FROM payments.customers c
		WHERE c.merchant_id = m AND c.customer_id = pay_find_customers.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor customer % is not a customer of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last customer_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT c.* FROM payments.customers c
	WHERE c.merchant_id = m
		AND (after IS NULL OR (c.created_at, c.customer_id) < (cursor_at, after))
		AND (pay_find_customers.email IS NULL OR (c.email IS NOT NULL AND lower(c.email) = lower(pay_find_customers.email)))
		AND (pay_find_customers.external_ref IS NULL OR c.external_ref = pay_find_customers.external_ref)
		AND (include_deleted OR c.status <> 'deleted')
	ORDER BY c.created_at DESC, c.customer_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_find_customers(text, text, boolean, bigint, integer) IS
	'The current merchant''s customers, newest first (created_at, then customer_id), at most page_size (1-500, default 50) per call; filters email (any case) and external_ref; deleted ones only with include_deleted. Keyset pagination: pass as after the last customer_id of the previous page.';
