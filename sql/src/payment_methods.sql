-- Stored payment methods: Authorize.Net customer and payment profiles, saved, listed, made default and deleted through the worker.

------------------------------------------------------------------------------
-- A payment method is a card kept at the gateway (a payment profile under
-- the customer's profile).  What is kept here: brand, last four, expiry,
-- fingerprint, the gateway's ids and the network transaction id of the
-- first customer-initiated transaction (for the card-on-file fields of
-- merchant-initiated charges).  The card itself waits sealed in the vault,
-- like a purchase's, until the worker has sent it.
--
-- Every gateway call is an operation (outbox row) the worker sends after
-- COMMIT: save_method (createCustomerProfile, or createCustomerPaymentProfile
-- when the customer has a profile, or createCustomerProfileFromTransaction),
-- delete_method (deleteCustomerPaymentProfile), delete_customer
-- (deleteCustomerProfile, which deletes its payment profiles too).
------------------------------------------------------------------------------

ALTER TABLE payments.operations ALTER COLUMN payment_id DROP NOT NULL;
ALTER TABLE payments.operations ADD COLUMN payment_method_id bigint;
ALTER TABLE payments.operations ADD COLUMN customer_id bigint;
ALTER TABLE payments.operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE payments.operations ADD CONSTRAINT operations_kind_check CHECK (kind IN ('purchase',
	'authorize', 'capture', 'void', 'refund', 'save_method', 'delete_method', 'delete_customer'));
ALTER TABLE payments.operations ADD CONSTRAINT operations_subject_check
	CHECK (payment_id IS NOT NULL OR payment_method_id IS NOT NULL OR customer_id IS NOT NULL);
CREATE INDEX operations_payment_method ON payments.operations (merchant_id, payment_method_id)
	WHERE payment_method_id IS NOT NULL;
CREATE INDEX operations_customer ON payments.operations (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON COLUMN payments.operations.payment_method_id IS
	'The stored payment method a save_method or delete_method operation is for.';
COMMENT ON COLUMN payments.operations.customer_id IS
	'The customer whose gateway profile a payment method operation or delete_customer acts on.';

-- payments charged through a stored method, or for a customer
ALTER TABLE payments.payments ADD COLUMN customer_id bigint;
ALTER TABLE payments.payments ADD COLUMN payment_method_id bigint;
CREATE INDEX payments_customer ON payments.payments (merchant_id, customer_id)
	WHERE customer_id IS NOT NULL;
COMMENT ON COLUMN payments.payments.customer_id IS 'The customer the payment is for (pay_purchase customer_id, or the stored method''s).';
COMMENT ON COLUMN payments.payments.payment_method_id IS 'The stored payment method charged, if any.';

CREATE TABLE payments.payment_methods (
	merchant_id bigint NOT NULL,
	payment_method_id bigint GENERATED ALWAYS AS IDENTITY,
	customer_id bigint NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'active', 'failed', 'deleting', 'deleted')),
	source text NOT NULL CHECK (source IN ('card', 'opaque_data', 'payment')),
	validation_mode text NOT NULL CHECK (validation_mode IN ('none', 'testMode', 'liveMode')),
	is_default boolean NOT NULL DEFAULT false,
	card_brand text,
	card_last4 text,
	card_exp_month smallint,
	card_exp_year smallint,
	card_fingerprint text,
	customer_profile_id text,
	payment_profile_id text,
	-- of the first customer-initiated transaction (validation or charge)
	network_trans_id text,
	source_payment_id bigint,
	failure_code text,
	failure_reason text,
	idempotency_key text,
	correlation_id text NOT NULL,
	expiring_notified_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- made the default while pending: the active default it replaced
	replaced_default_id bigint,
	PRIMARY KEY (merchant_id, payment_method_id),
	FOREIGN KEY (merchant_id, customer_id) REFERENCES payments.customers
);
CREATE INDEX payment_methods_customer ON payments.payment_methods (merchant_id, customer_id, payment_method_id);
-- one default per customer among its usable methods
CREATE UNIQUE INDEX payment_methods_one_default ON payments.payment_methods (merchant_id, customer_id)
	WHERE is_default AND status IN ('pending', 'active');
CREATE INDEX payment_methods_expiry ON payments.payment_methods (card_exp_year, card_exp_month)
	WHERE status = 'active';
COMMENT ON TABLE payments.payment_methods IS
	'Stored payment methods (Authorize.Net payment profiles under the customer''s profile): brand, last four, expiry, fingerprint, gateway ids and the original network transaction id. Card numbers are never stored.';
COMMENT ON COLUMN payments.payment_methods.replaced_default_id IS
	'A method made the customer''s default while still pending: the active default it replaced. Charges of the customer''s default (subscriptions) use that one until this one is active; if this one''s save fails, that one is the default again.';
REVOKE ALL ON payments.payment_methods FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('payments.payment_methods', '');
SELECT pg_catalog.pg_extension_config_dump('payments.payment_methods_payment_method_id_seq', '');

CREATE TRIGGER payment_methods_status BEFORE INSERT OR UPDATE ON payments.payment_methods
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('payment_method');
CREATE TRIGGER customers_status BEFORE INSERT OR UPDATE ON payments.customers
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('customer');

CREATE FUNCTION payments._payment_method_not_found(p_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_id IS NULL THEN
		RAISE EXCEPTION 'payment_method_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'payment method % not found', p_id
		USING ERRCODE = 'PT404', HINT = 'Payment method ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._payment_method_not_found(bigint) IS 'Internal: raises the payment-method-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';

CREATE FUNCTION payments._find_payment_method(p_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO pm FROM payments.payment_methods
		WHERE merchant_id = payments.pay_current_merchant() AND payment_method_id = p_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO pm FROM payments.payment_methods
		WHERE merchant_id = payments.pay_current_merchant() AND payment_method_id = p_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._payment_method_not_found(p_id);
	END IF;
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._find_payment_method(bigint, boolean) IS
	'Internal: a payment method of the current merchant (optionally locked), or PT404.';

-- An operation on a stored method or a customer's profile, queued for the
-- worker (woken at COMMIT), with the idempotency key pointing at it.
CREATE FUNCTION payments._new_method_operation(p_merchant bigint, p_kind text, p_method bigint,
	p_customer bigint, p_payment bigint, p_key text, p_correlation_id text)
	RETURNS payments.operations
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
BEGIN
	INSERT INTO payments.operations (merchant_id, payment_id, payment_method_id, customer_id, kind,
		idempotency_key, correlation_id)
	VALUES (p_merchant, p_payment, p_method, p_customer, p_kind, p_key, p_correlation_id)
	RETURNING * INTO o;
	IF p_key IS NOT NULL THEN
		UPDATE payments.idempotency_keys SET operation_id = o.operation_id
		WHERE merchant_id = p_merchant AND idempotency_key = p_key;
	END IF;
	PERFORM payments._wake_at_commit();
	RETURN o;
END
$$;
COMMENT ON FUNCTION payments._new_method_operation(bigint, text, bigint, bigint, bigint, text, text) IS
	'Internal: queues a save_method, delete_method or delete_customer operation for the worker.';

-- A unique violation of payment_methods_one_default while a method is made
-- the default.  At REPEATABLE READ or SERIALIZABLE it is a default that
-- another session committed after this transaction's snapshot: the UPDATE
-- that clears the old default did not see it.  That is a serialization
-- failure, to be retried, not a duplicate the caller made (READ COMMITTED
-- never meets it: each statement after the customer's lock sees the other
-- session's default).  Any other constraint: nothing here, the caller
-- raises the error again as it was.
CREATE FUNCTION payments._default_conflict(p_constraint text, p_customer_id bigint) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF p_constraint = 'payment_methods_one_default' THEN
		RAISE EXCEPTION 'could not make a payment method the default of customer %: another session changed the customer''s default after this transaction began',
				p_customer_id
			USING ERRCODE = '40001',
				DETAIL = format('This %s transaction''s snapshot does not show the default that session made.',
					upper(current_setting('transaction_isolation'))),
				HINT = 'Retry the transaction.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._default_conflict(text, bigint) IS
	'Internal: raises 40001 for a unique violation of payment_methods_one_default (a default another session committed after the snapshot); returns for any other constraint.';

-- The customer's usable default method: its active default, or, while the
-- default is a new method still being saved (pending), the active one that
-- it replaced (a card replacement does not leave the customer without a
-- card for that while).  The one home of that rule: a charge of the
-- customer's default (pay_purchase with customer_id alone, a subscription's
-- invoice: billing.sql) and the default a new pending default remembers.
-- NULL fields when there is none.
CREATE FUNCTION payments._usable_default_method(p_merchant_id bigint, p_customer_id bigint)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	SELECT u.* INTO pm FROM payments.payment_methods d
	JOIN payments.payment_methods u ON u.merchant_id = d.merchant_id AND u.customer_id = d.customer_id
		AND u.payment_method_id = CASE WHEN d.status = 'active' THEN d.payment_method_id ELSE d.replaced_default_id END
	WHERE d.merchant_id = p_merchant_id AND d.customer_id = p_customer_id AND d.is_default
		AND d.status IN ('pending', 'active') AND u.status = 'active';
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._usable_default_method(bigint, bigint) IS
	'Internal: the customer''s usable default payment method: its active default, or, while the default is still pending, the active one that default replaced (NULL fields: none).';

-- A default whose save failed gives the default back to the active method
-- it replaced (unless another was made the default meanwhile): a customer
-- who replaces a card and whose new card is refused keeps the old one.
CREATE FUNCTION payments._restore_replaced_default() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	UPDATE payments.payment_methods x SET is_default = true
	WHERE x.merchant_id = NEW.merchant_id AND x.payment_method_id = NEW.replaced_default_id
		AND x.customer_id = NEW.customer_id AND x.status = 'active' AND NOT x.is_default
		AND NOT EXISTS (SELECT 1 FROM payments.payment_methods d
			WHERE d.merchant_id = NEW.merchant_id AND d.customer_id = NEW.customer_id AND d.is_default
				AND d.status IN ('pending', 'active'));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._restore_replaced_default() IS
	'Trigger: a pending default whose save failed gives the default back to the active method it replaced (replaced_default_id), unless another is the default by then.';

CREATE TRIGGER payment_methods_restore_default AFTER UPDATE OF status ON payments.payment_methods
	FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status = 'failed' AND OLD.is_default
		AND NEW.replaced_default_id IS NOT NULL)
	EXECUTE FUNCTION payments._restore_replaced_default();
COMMENT ON TRIGGER payment_methods_restore_default ON payments.payment_methods IS
	'A pending default whose save failed gives the default back to the method it replaced (payments._restore_replaced_default).';

CREATE FUNCTION payments.pay_save_payment_method(
	customer_id bigint,
	card payments.pay_card DEFAULT NULL,
	opaque_data jsonb DEFAULT NULL,
	payment_id bigint DEFAULT NULL,
	validation_mode text DEFAULT 'liveMode',
	make_default boolean DEFAULT true,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_save_payment_method.customer_id, true);
	m bigint := c.merchant_id;
	corr text := payments._correlation_id(pay_save_payment_method.correlation_id);
	sources int := (card IS NOT NULL)::int + (opaque_data IS NOT NULL)::int
		+ (pay_save_payment_method.payment_id IS NOT NULL)::int;
	idem payments.idempotency_keys;
	p payments.payments;
	pm payments.payment_methods;
	o payments.operations;
	src text;
	cname text;
	replaced bigint;
BEGIN
	IF sources <> 1 THEN
		RAISE EXCEPTION 'exactly one of card, opaque_data and payment_id is required'
			USING ERRCODE = '22Y22', DETAIL = format('%s were given.', sources);
	END IF;
	IF validation_mode IS NULL OR validation_mode NOT IN ('none', 'testMode', 'liveMode') THEN
		RAISE EXCEPTION 'validation_mode must be none, testMode or liveMode' USING ERRCODE = '22023',
			HINT = 'none stores the card unchecked, testMode checks its form, liveMode authorizes $0.00 at the issuer.';
	END IF;
	IF opaque_data IS NOT NULL THEN
		PERFORM payments._check_opaque_data(opaque_data);
	END IF;
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	idem := payments._idempotency_claim(m, pay_save_payment_method.idempotency_key, 'save_payment_method',
		md5(jsonb_build_array(c.customer_id, payments.pay_card_brand(card), payments.pay_card_last4(card),
			payments.pay_card_exp_month(card), payments.pay_card_exp_year(card), opaque_data,
			pay_save_payment_method.payment_id, validation_mode, make_default)::text), c.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		SELECT x.* INTO pm FROM payments.payment_methods x
		JOIN payments.operations y ON y.merchant_id = x.merchant_id AND y.payment_method_id = x.payment_method_id
		WHERE y.merchant_id = m AND y.operation_id = idem.operation_id;
		RETURN pm;				-- even if the customer was deleted since
	END IF;
	PERFORM payments._find_customer(c.customer_id, false, false);	-- 22Y20 once deleted
	IF pay_save_payment_method.payment_id IS NOT NULL THEN
		src := 'payment';
		p := payments._find_payment(pay_save_payment_method.payment_id);
		IF p.gateway_trans_id IS NULL OR p.status NOT IN ('succeeded', 'requires_capture',
				'partially_refunded', 'refunded') OR p.payment_method NOT IN ('card', 'opaque_data') THEN
			RAISE EXCEPTION 'payment % cannot be saved as a payment method', p.payment_id
				USING ERRCODE = '22Y20',
					DETAIL = format('The payment is %s%s; only an approved card or Accept.js payment can be saved.',
						p.status, CASE WHEN p.payment_method = 'profile' THEN ' and was made with a stored method' ELSE '' END);
		END IF;
		-- its transaction is at the account it was made at: the account
		-- configured now would not find it
		PERFORM payments._refuse_other_account(m, payments._payment_account(m, p.payment_id),
			format('payment %s was made', p.payment_id),
			'Save the card itself (card or opaque_data) at the account configured now, or configure the account the payment was made at again (pay_configure_gateway); nothing was saved.');
	ELSIF card IS NOT NULL THEN
		src := 'card';
	ELSE
		src := 'opaque_data';
	END IF;
	BEGIN
		IF make_default THEN
			-- the default it replaces stays the one charged until it is active
			replaced := (payments._usable_default_method(m, c.customer_id)).payment_method_id;
			UPDATE payments.payment_methods x SET is_default = false
			WHERE x.merchant_id = m AND x.customer_id = c.customer_id AND x.is_default;
		END IF;
		INSERT INTO payments.payment_methods AS x (merchant_id, customer_id, source, validation_mode, is_default,
			card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint, source_payment_id,
			idempotency_key, correlation_id, replaced_default_id)
		VALUES (m, c.customer_id, src, validation_mode, make_default,
			coalesce(payments.pay_card_brand(card), p.card_brand), coalesce(payments.pay_card_last4(card), p.card_last4),
			coalesce(payments.pay_card_exp_month(card), p.card_exp_month),
			coalesce(payments.pay_card_exp_year(card), p.card_exp_year),
			p.card_fingerprint, p.payment_id,
			pay_save_payment_method.idempotency_key, corr, replaced)
		RETURNING * INTO pm;
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
		PERFORM payments._default_conflict(cname, c.customer_id);
		RAISE;
	END;
	o := payments._new_method_operation(m, 'save_method', pm.payment_method_id, c.customer_id, p.payment_id,
		pay_save_payment_method.idempotency_key, corr);
	IF card IS NOT NULL THEN
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, o.operation_id, payments._card_sealed(card));
	ELSIF opaque_data IS NOT NULL THEN
		INSERT INTO payments.card_vault (merchant_id, operation_id, sealed)
		VALUES (m, o.operation_id, payments._opaque_data_sealed(opaque_data ->> 'dataDescriptor',
			opaque_data ->> 'dataValue'));
	END IF;
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments.pay_save_payment_method(bigint, payments.pay_card, jsonb, bigint, text, boolean, text, text) IS
	'Saves a payment method for a customer at the gateway: a card, Accept.js opaque data, or the card of an approved payment (payment_id; refused with 22Y20 when it was made at another gateway account than the one configured now). validation_mode: none, testMode or liveMode (a $0.00 authorization; default). Returns the method (status pending); the worker creates the gateway profile after COMMIT (active, or failed with the reason); pay_wait_payment_method waits for it. make_default makes it the customer''s default at once; until it is active, charges of the customer''s default (subscriptions) use the active default it replaced, which is the default again if the save fails.';

CREATE FUNCTION payments.pay_wait_payment_method(payment_method_id bigint,
	timeout interval DEFAULT '30 seconds')
	RETURNS payments.payment_methods
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	result payments.payment_methods;
BEGIN
	IF timeout IS NULL THEN
		RAISE EXCEPTION 'timeout is required' USING ERRCODE = '22004',
			HINT = 'Pass an interval such as ''30 seconds'', or leave timeout out for the default.';
	END IF;
	IF timeout < interval '0' OR timeout > payments._max_wait() THEN
		RAISE EXCEPTION 'timeout must be between 0 and %', payments._max_wait() USING ERRCODE = '22023',
			DETAIL = format('%s was asked for; the payments.max_wait setting allows at most %s.', timeout, payments._max_wait());
	END IF;
	PERFORM payments._find_payment_method(pay_wait_payment_method.payment_method_id);
	PERFORM payments._wait_for_payment_method(m, pay_wait_payment_method.payment_method_id,
		(extract(epoch FROM timeout) * 1000)::integer);
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = m AND x.payment_method_id = pay_wait_payment_method.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_wait_payment_method(bigint, interval) IS
	'Blocks until the payment method''s gateway work (saving or deleting) is done or the timeout passes, without polling; returns the method row. Call it after the COMMIT that created the work.';

CREATE FUNCTION payments.pay_get_payment_method(payment_method_id bigint) RETURNS payments.payment_methods
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_payment_method(pay_get_payment_method.payment_method_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_payment_method(bigint) IS
	'A payment method of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_payment_methods(customer_id bigint, include_deleted boolean DEFAULT false)
	RETURNS SETOF payments.payment_methods
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_list_payment_methods.customer_id);
BEGIN
	RETURN QUERY SELECT x.* FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
		AND (include_deleted OR x.status NOT IN ('deleted', 'failed'))
	ORDER BY x.is_default DESC, x.payment_method_id DESC;
END
$$;
COMMENT ON FUNCTION payments.pay_list_payment_methods(bigint, boolean) IS
	'The payment methods of a customer of the current merchant, the default first, then newest first; failed and deleted ones only with include_deleted. PT404 for an unknown or foreign customer.';

CREATE FUNCTION payments.pay_set_default_payment_method(payment_method_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods := payments._find_payment_method(pay_set_default_payment_method.payment_method_id);
	idem payments.idempotency_keys;
	result payments.payment_methods;
	cname text;
	replaced bigint;
BEGIN
	-- the customer first, as pay_save_payment_method locks it: a default it
	-- saves meanwhile is then seen, not a unique violation
	PERFORM payments._find_customer(pm.customer_id, true);
	pm := payments._find_payment_method(pm.payment_method_id, true);
	idem := payments._idempotency_claim(pm.merchant_id,
		pay_set_default_payment_method.idempotency_key, 'set_default_payment_method',
		md5(jsonb_build_array(pm.payment_method_id)::text), pm.customer_id);
	IF idem.request_kind IS NULL AND pm.status NOT IN ('pending', 'active') THEN
		RAISE EXCEPTION 'cannot make payment method % in status % the default', pm.payment_method_id, pm.status
			USING ERRCODE = '22Y20';
	END IF;
	IF NOT pm.is_default AND idem.request_kind IS NULL THEN
		-- a pending one: the default it replaces stays the one charged until it is active
		replaced := CASE WHEN pm.status = 'pending'
			THEN (payments._usable_default_method(pm.merchant_id, pm.customer_id)).payment_method_id END;
		BEGIN
			UPDATE payments.payment_methods x SET is_default = false
			WHERE x.merchant_id = pm.merchant_id AND x.customer_id = pm.customer_id AND x.is_default;
			UPDATE payments.payment_methods x SET is_default = true, replaced_default_id = replaced
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
		EXCEPTION WHEN unique_violation THEN
			GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
			PERFORM payments._default_conflict(cname, pm.customer_id);
			RAISE;
		END;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (pm.merchant_id, 'payment_method.default', jsonb_build_object('payment_method_id',
			pm.payment_method_id, 'customer_id', pm.customer_id),
			payments._correlation_id(pay_set_default_payment_method.correlation_id));
	END IF;
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_set_default_payment_method(bigint, text, text) IS
	'Makes a pending or active payment method its customer''s default (the one charged when a customer, not a method, is given). A pending one: until it is active, charges of the customer''s default (subscriptions) use the active default it replaced, which is the default again if the save fails. Writes a payment_method.default event.';

CREATE FUNCTION payments.pay_delete_payment_method(payment_method_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods := payments._find_payment_method(pay_delete_payment_method.payment_method_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(pm.merchant_id,
		pay_delete_payment_method.idempotency_key, 'delete_payment_method',
		md5(jsonb_build_array(pm.payment_method_id)::text), pm.customer_id);
	corr text := payments._correlation_id(pay_delete_payment_method.correlation_id);
	result payments.payment_methods;
BEGIN
	IF idem.request_kind IS NULL THEN
		IF pm.status = 'pending' THEN
			RAISE EXCEPTION 'payment method % is still being saved', pm.payment_method_id
				USING ERRCODE = '22Y20', HINT = 'Wait for it (pay_wait_payment_method), then delete it.';
		ELSIF pm.status = 'active' AND pm.payment_profile_id IS NOT NULL THEN
			PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
			-- its profile is at the account it was saved at: asked of
			-- another, "not found" would count as deleted, and the card
			-- would stay there
			PERFORM payments._refuse_other_account(pm.merchant_id,
				payments._method_account(pm.merchant_id, pm.payment_method_id),
				format('payment method %s was saved', pm.payment_method_id),
				'Configure the account it was saved at again (pay_configure_gateway) to delete it there; the method is kept as it is.');
			-- keeps is_default: a deleting method is no usable default
			-- (_usable_default_method), and a failed deletion leaves it the
			-- default again unless another was made the default meanwhile
			UPDATE payments.payment_methods x SET status = 'deleting'
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
			PERFORM payments._new_method_operation(pm.merchant_id, 'delete_method', pm.payment_method_id,
				pm.customer_id, NULL, pay_delete_payment_method.idempotency_key, corr);
		ELSIF pm.status IN ('active', 'failed') THEN
			UPDATE payments.payment_methods x SET status = 'deleted', is_default = false
			WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
		END IF;
	END IF;
	SELECT * INTO result FROM payments.payment_methods x
	WHERE x.merchant_id = pm.merchant_id AND x.payment_method_id = pm.payment_method_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_delete_payment_method(bigint, text, text) IS
	'Deletes a payment method, at the gateway too: an active one goes to deleting and the worker sends deleteCustomerPaymentProfile after COMMIT (then deleted); a failed one is deleted at once. A default keeps is_default while deleting (no charge of the customer''s default uses it) and is the default again if its deletion fails, unless another was made the default meanwhile. A method still being saved is refused (22Y20), and so is one saved at another gateway account than the one configured now (its profile is there). Deleting a deleted method changes nothing.';

CREATE FUNCTION payments.pay_delete_customer(customer_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._lock_customer_to_end(pay_delete_customer.customer_id, 'delete');
	idem payments.idempotency_keys := payments._idempotency_claim(c.merchant_id,
		pay_delete_customer.idempotency_key, 'delete_customer', md5(jsonb_build_array(c.customer_id)::text),
		c.customer_id);
	corr text := payments._correlation_id(pay_delete_customer.correlation_id);
	result payments.customers;
BEGIN
	IF idem.request_kind IS NULL AND c.status <> 'deleted' THEN
		-- its profiles are at the accounts its cards were saved at: the
		-- deletion goes to the one configured now, and a profile or card
		-- saved at another would stay there while ours said deleted
		PERFORM payments._refuse_other_account(c.merchant_id, a.account,
			format('customer %s has a gateway profile or payment methods saved', c.customer_id),
			'Configure that account again (pay_configure_gateway) and delete the payment methods saved there (pay_delete_payment_method), then delete the customer while the account its profile is at is configured; the customer is kept as it is.')
		FROM (SELECT payments._customer_account(c.merchant_id, c.customer_id) AS account
			WHERE c.customer_profile_id IS NOT NULL
			UNION
			SELECT payments._method_account(x.merchant_id, x.payment_method_id)
			FROM payments.payment_methods x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
				AND x.status IN ('active', 'deleting') AND x.payment_profile_id IS NOT NULL) a;
		PERFORM payments._end_customer_subscriptions(c);
		PERFORM payments._delete_customer_profile(c, pay_delete_customer.idempotency_key, corr);
		UPDATE payments.customers x SET status = 'deleted', deleted_at = clock_timestamp()
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	END IF;
	SELECT * INTO result FROM payments.customers x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_delete_customer(bigint, text, text) IS
	'Deletes a customer (status deleted; its payments stay) and its payment methods, at the gateway too (deleteCustomerProfile, sent by the worker after COMMIT). A customer with a method still being saved is refused (22Y20), and so is one whose profile or an active method was saved at another gateway account than the one configured now (they are there). Writes a customer.deleted event.';

-- The customer's gateway profile and its methods go: usable methods to
-- deleting (deleted once the worker has deleted the profile), or to
-- deleted at once when there is no profile at the gateway.
CREATE FUNCTION payments._delete_customer_profile(c payments.customers, p_key text, p_corr text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.payment_methods x WHERE x.merchant_id = c.merchant_id
			AND x.customer_id = c.customer_id AND x.status = 'pending') THEN
		RAISE EXCEPTION 'customer % has a payment method still being saved', c.customer_id
			USING ERRCODE = '22Y20', HINT = 'Wait for it (pay_wait_payment_method), then try again.';
	END IF;
	IF c.customer_profile_id IS NOT NULL THEN
		UPDATE payments.payment_methods x SET status = 'deleting', is_default = false
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status = 'active';
		PERFORM payments._new_method_operation(c.merchant_id, 'delete_customer', NULL, c.customer_id,
			NULL, p_key, p_corr);
	ELSE
		UPDATE payments.payment_methods x SET status = 'deleted', is_default = false
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status IN ('active', 'failed');
	END IF;
END
$$;
COMMENT ON FUNCTION payments._delete_customer_profile(payments.customers, text, text) IS
	'Internal: deletes a customer''s gateway profile (queued for the worker) and its payment methods.';

------------------------------------------------------------------------------
-- The worker's side (step 3 of an attempt for the operations above).
------------------------------------------------------------------------------

INSERT INTO payments.operation_outcomes
	(operation_kind, outcome, operation_status, payment_status, payment_status_from) VALUES
	('save_method', 'approved', 'succeeded', NULL, NULL),
	('save_method', 'declined', 'failed', NULL, NULL),
	('save_method', 'error', 'failed', NULL, NULL),
	('save_method', 'rejected', 'failed', NULL, NULL),
	('save_method', 'retry', 'queued', NULL, NULL),
	('save_method', 'unknown', 'unknown', NULL, NULL),
	('delete_method', 'approved', 'succeeded', NULL, NULL),
	('delete_method', 'declined', 'failed', NULL, NULL),
	('delete_method', 'error', 'failed', NULL, NULL),
	('delete_method', 'rejected', 'failed', NULL, NULL),
	('delete_method', 'retry', 'queued', NULL, NULL),
	('delete_method', 'unknown', 'unknown', NULL, NULL),
	('delete_customer', 'approved', 'succeeded', NULL, NULL),
	('delete_customer', 'declined', 'failed', NULL, NULL),
	('delete_customer', 'error', 'failed', NULL, NULL),
	('delete_customer', 'rejected', 'failed', NULL, NULL),
	('delete_customer', 'retry', 'queued', NULL, NULL),
	('delete_customer', 'unknown', 'unknown', NULL, NULL);

-- Step 3 for save_method, delete_method and delete_customer: the
-- operation's new status from operation_outcomes (retry and unknown by
-- _record_result, as for payments: tried again at p_retry_at, dead when out
-- of attempts), then
-- the method and the customer: a saved method is active with the gateway's
-- ids and its card's fingerprint (the customer learns its profile id; the
-- fingerprint is known only once the gateway has the card, see
-- _record_final_results), a failed save is failed with
-- the reason (a card the customer has saved already as another method:
-- E00039); a deleted one is deleted, a failed deletion leaves the
-- method active again, and the default if it was.  A save that found the
-- customer's profile gone at the gateway (p_gone_customer_profile_id,
-- gateway_cim.c) forgets it first (_customer_profile_gone): saved, the
-- customer's profile is the new one.
CREATE FUNCTION payments._record_method_result(p_merchant_id bigint, p_operation_id bigint,
	p_outcome text, p_code text, p_reason text, p_customer_profile_id text,
	p_payment_profile_id text, p_network_trans_id text, p_card_last4 text, p_card_brand text,
	p_retry_at timestamptz, p_error text, p_card_fingerprint text,
	p_gone_customer_profile_id text DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	t payments.operation_outcomes;
	ok boolean;
	dup bigint;
	profile_moved boolean;
BEGIN
	IF p_outcome IN ('retry', 'unknown') THEN
		-- tried again later, as every operation is (no payment to move)
		PERFORM payments._record_result(p_merchant_id, p_operation_id, p_outcome, NULL, NULL, NULL,
			NULL, NULL, NULL, NULL, p_retry_at, p_error, NULL);
		RETURN;
	END IF;
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT * INTO t FROM payments.operation_outcomes x
	WHERE x.operation_kind = o.kind AND x.outcome = p_outcome;
	IF NOT FOUND OR t.operation_status NOT IN ('succeeded', 'failed') THEN
		RAISE EXCEPTION 'invalid outcome % for operation %', p_outcome, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	ok := t.operation_status = 'succeeded';
	-- a save sent to another account than the customer's profile is at
	-- made the customer a profile there (_claim_operations), its profile
	-- from now on
	profile_moved := o.kind = 'save_method'
		AND payments._customer_account(o.merchant_id, o.customer_id) <> o.gateway_account;
	-- Two live methods of a customer never share one gateway payment
	-- profile: deleting one would delete the other's card.  A save answered
	-- with a profile another active or deleting method of the customer holds
	-- fails with E00039 and names that method: the gateway's duplicate
	-- answer for a card saved twice (the worker fails it when it knows the
	-- profile is taken), or, as a backstop, any save that came back with one.
	IF o.kind = 'save_method' AND p_payment_profile_id IS NOT NULL AND (ok OR p_code = 'E00039') THEN
		SELECT x.payment_method_id INTO dup FROM payments.payment_methods x
		WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
			AND x.payment_method_id <> o.payment_method_id AND x.payment_profile_id = p_payment_profile_id
			AND x.status IN ('active', 'deleting')
		LIMIT 1;
		IF FOUND THEN
			ok := false;
			t.operation_status := 'failed';
			p_code := 'E00039';
			p_reason := format('This card is saved already as payment method %s of the customer.', dup);
		END IF;
	END IF;
	UPDATE payments.operations SET status = t.operation_status,
		reason_text = coalesce(p_reason, p_error), last_error = CASE WHEN NOT ok THEN coalesce(p_error, p_code) END,
		completed_at = clock_timestamp()
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	DELETE FROM payments.card_vault WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;

	IF o.kind = 'save_method' AND p_gone_customer_profile_id IS NOT NULL THEN
		PERFORM payments._customer_profile_gone(o, p_gone_customer_profile_id);
	END IF;
	IF o.kind = 'save_method' THEN
		IF ok THEN
			UPDATE payments.customers SET customer_profile_id = CASE WHEN profile_moved
					THEN coalesce(p_customer_profile_id, customer_profile_id)
					ELSE coalesce(customer_profile_id, p_customer_profile_id) END,
				updated_at = clock_timestamp()
			WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id;
			UPDATE payments.payment_methods SET status = 'active',
				customer_profile_id = p_customer_profile_id, payment_profile_id = p_payment_profile_id,
				network_trans_id = coalesce(network_trans_id, nullif(p_network_trans_id, '')),
				card_last4 = coalesce(card_last4, nullif(p_card_last4, '')),
				card_brand = coalesce(card_brand, nullif(p_card_brand, '')),
				card_fingerprint = coalesce(card_fingerprint, p_card_fingerprint)
			WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'pending';
		ELSE
			UPDATE payments.payment_methods SET status = 'failed', is_default = false,
				failure_code = p_code, failure_reason = coalesce(p_reason, p_error)
			WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'pending';
		END IF;
	ELSIF o.kind = 'delete_method' THEN
		UPDATE payments.payment_methods SET status = CASE WHEN ok THEN 'deleted' ELSE 'active' END,
			is_default = is_default AND NOT ok,
			failure_code = CASE WHEN ok THEN failure_code ELSE p_code END,
			failure_reason = CASE WHEN ok THEN failure_reason ELSE coalesce(p_reason, p_error) END
		WHERE merchant_id = o.merchant_id AND payment_method_id = o.payment_method_id AND status = 'deleting';
	ELSIF o.kind = 'delete_customer' AND ok THEN
		UPDATE payments.payment_methods SET status = 'deleted'
		WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id AND status = 'deleting';
	ELSIF o.kind = 'delete_customer' THEN
		PERFORM payments._customer_profile_kept(o, coalesce(p_reason, p_error, p_code));
	END IF;
END
$$;
COMMENT ON FUNCTION payments._record_method_result(bigint, bigint, text, text, text, text, text, text, text, text, timestamptz, text, text, text) IS
	'Worker, step 3: records the gateway''s answer to a save_method, delete_method or delete_customer operation and moves the payment method (and the customer''s profile id) on; p_gone_customer_profile_id: the customer''s profile the save found gone at the gateway (_customer_profile_gone).';

-- A save found the customer's profile gone at the gateway (E00040: deleted
-- outside payments, with every payment profile in it; gateway_cim.c).  The
-- customer forgets it (a save that succeeded records the new one it made,
-- a later save makes one), and the customer's active methods in it are
-- failed as a charge that meets a gone profile fails its method
-- (_payment_methods_gone): one charge or renewal of each would fail anyway.
CREATE FUNCTION payments._customer_profile_gone(o payments.operations, p_customer_profile_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	UPDATE payments.customers x SET customer_profile_id = NULL, updated_at = clock_timestamp()
	WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
		AND x.customer_profile_id = p_customer_profile_id;
	PERFORM payments._payment_methods_gone(o.merchant_id, ARRAY(SELECT x.payment_method_id
			FROM payments.payment_methods x
			WHERE x.merchant_id = o.merchant_id AND x.customer_id = o.customer_id
				AND x.customer_profile_id = p_customer_profile_id AND x.status = 'active'),
		format('The gateway no longer has the customer''s profile %s (E00040) with this card''s payment profile in it, which was deleted outside payments: found when payment method %s was saved.',
			p_customer_profile_id, o.payment_method_id));
END
$$;
COMMENT ON FUNCTION payments._customer_profile_gone(payments.operations, text) IS
	'Internal: a save (operation o) found the customer''s gateway profile gone: the customer forgets it and its active methods in it are failed (payment_method_gone).';

-- A deleted customer whose gateway profile could not be deleted (the
-- gateway refused, or the operation ran out of attempts): its methods are
-- deleted here all the same (the customer is), and an event names the
-- profile left at the gateway so that it can be removed there.
CREATE FUNCTION payments._customer_profile_kept(o payments.operations, p_reason text) RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods SET status = 'deleted'
	WHERE merchant_id = o.merchant_id AND customer_id = o.customer_id AND status = 'deleting';
	INSERT INTO payments.events (merchant_id, event_type, operation_id, data, correlation_id)
	SELECT o.merchant_id, 'customer.gateway_profile_kept', o.operation_id,
		jsonb_build_object('customer_id', c.customer_id, 'customer_profile_id', c.customer_profile_id,
			'operation_id', o.operation_id, 'reason', p_reason),
		o.correlation_id
	FROM payments.customers c WHERE c.merchant_id = o.merchant_id AND c.customer_id = o.customer_id;
	$$;
COMMENT ON FUNCTION payments._customer_profile_kept(payments.operations, text) IS
	'Internal: a deleted customer''s gateway profile could not be deleted: its methods are deleted all the same and a customer.gateway_profile_kept event names the profile.';

-- A save or deletion that ran out of attempts (a dead letter) does not
-- leave its method half-way: a save fails (pay_wait_payment_method
-- returns), a deletion leaves the method active (the default still if it
-- was), a customer's deletion keeps the profile (above).
-- pay_retry_dead_letter puts them back on their way: the method pending,
-- or deleting, again.
CREATE FUNCTION payments._method_operation_dead() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	-- held by the claim (the gateway account changed): its last_error says
	-- why; otherwise its attempts ran out
	why text := CASE WHEN NEW.last_error LIKE 'held: %' THEN NEW.last_error
		ELSE format('No answer from the gateway after %s attempts (%s); pay_retry_dead_letter can try again.',
			NEW.attempts, coalesce(NEW.last_error, 'no error recorded')) END;
BEGIN
	IF NEW.status = 'dead' THEN
		IF NEW.kind = 'save_method' THEN
			UPDATE payments.payment_methods SET status = 'failed', is_default = false,
				failure_code = 'gave_up', failure_reason = why
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'pending';
		ELSIF NEW.kind = 'delete_method' THEN
			UPDATE payments.payment_methods SET status = 'active', failure_code = 'gave_up', failure_reason = why
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'deleting';
		ELSE
			PERFORM payments._customer_profile_kept(NEW, why);
		END IF;
	ELSIF OLD.status = 'dead' AND NEW.status = 'queued' THEN
		IF NEW.kind = 'save_method' THEN
			UPDATE payments.payment_methods SET status = 'pending', failure_code = NULL, failure_reason = NULL
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'failed' AND failure_code = 'gave_up';
		ELSIF NEW.kind = 'delete_method' THEN
			UPDATE payments.payment_methods SET status = 'deleting', failure_code = NULL, failure_reason = NULL
			WHERE merchant_id = NEW.merchant_id AND payment_method_id = NEW.payment_method_id
				AND status = 'active' AND failure_code = 'gave_up';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._method_operation_dead() IS
	'Trigger: a save, deletion or customer deletion that became a dead letter fails its method, leaves it active, or keeps the customer''s profile (event); retried (pay_retry_dead_letter), the method is pending or deleting again.';

CREATE TRIGGER operations_method_dead AFTER UPDATE OF status ON payments.operations
	FOR EACH ROW
	WHEN ((NEW.status = 'dead' OR OLD.status = 'dead') AND NEW.status IS DISTINCT FROM OLD.status
		AND NEW.kind IN ('save_method', 'delete_method', 'delete_customer'))
	EXECUTE FUNCTION payments._method_operation_dead();
COMMENT ON TRIGGER operations_method_dead ON payments.operations IS
	'Moves a payment method on when its save or deletion becomes a dead letter or is retried.';

-- The network transaction id of an approved charge of a stored method
-- that had none yet: the original id the method's merchant-initiated
-- charges send (subsequentAuthInformation.originalNetworkTransId).
CREATE FUNCTION payments._note_network_trans_ids(p_merchant_id bigint[], p_operation_id bigint[],
	p_network_trans_id text[])
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods pm SET network_trans_id = x.ntid, updated_at = clock_timestamp()
	FROM unnest(p_merchant_id, p_operation_id, p_network_trans_id) AS x(merchant_id, operation_id, ntid),
		payments.operations o, payments.payments p
	WHERE o.merchant_id = x.merchant_id AND o.operation_id = x.operation_id
		AND p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
		AND pm.merchant_id = p.merchant_id AND pm.payment_method_id = p.payment_method_id
		AND pm.network_trans_id IS NULL AND x.ntid <> ''
	$$;
COMMENT ON FUNCTION payments._note_network_trans_ids(bigint[], bigint[], text[]) IS
	'Worker: keeps the network transaction id of approved charges on the stored methods they charged, where none was known.';

-- Stored methods whose profile is gone at the gateway (deleted outside
-- payments) become failed: failure_code payment_method_gone, no longer the
-- default (no other card is made the default in their place), and the
-- status change writes a payment_method.failed event.  Active ones only:
-- one being deleted is deleted anyway.  The one home of that transition:
-- a charge that met the gone profile (_payment_method_gone), a save that
-- found the customer's whole profile gone (_customer_profile_gone).
CREATE FUNCTION payments._payment_methods_gone(p_merchant_id bigint, p_payment_method_ids bigint[],
	p_reason text)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payment_methods x SET status = 'failed', is_default = false,
		failure_code = 'payment_method_gone', failure_reason = p_reason
	WHERE x.merchant_id = p_merchant_id AND x.payment_method_id = ANY (p_payment_method_ids)
		AND x.status = 'active'
	$$;
COMMENT ON FUNCTION payments._payment_methods_gone(bigint, bigint[], text) IS
	'Internal: fails the active ones of these stored methods, whose profile is gone at the gateway (failure_code payment_method_gone, p_reason; no longer the default; a payment_method.failed event).';

-- A charge of a stored method answered "the record cannot be found"
-- (E00040: the gateway's answer to a createTransaction whose customer or
-- payment profile does not exist) means the profile was deleted at the
-- gateway outside the extension (another system on the same account, the
-- merchant's console).  The method cannot be charged again: it is failed
-- (failure_code payment_method_gone, no longer the default: no other card
-- is made the default in its place), which writes a payment_method.failed
-- event, and later charges of it are refused at the call
-- (_stored_method_for_payment).  The payment fails with decline_code
-- payment_method_gone (a final decline for dunning, _decline_is_final).
-- A BEFORE trigger named to run before payments_status (triggers of one
-- kind run in name order), so that the payment's event carries the new
-- decline code.  Only a method still active and on the profile that was
-- charged: one being deleted is deleted anyway.
CREATE FUNCTION payments._payment_method_gone() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	NEW.decline_code := 'payment_method_gone';
	NEW.decline_reason := 'The gateway no longer has this stored payment method (E00040 The record cannot be found.): its payment profile was deleted outside payments.';
	PERFORM payments._payment_methods_gone(NEW.merchant_id, ARRAY(SELECT x.payment_method_id
			FROM payments.payment_methods x
			WHERE x.merchant_id = NEW.merchant_id AND x.payment_method_id = NEW.payment_method_id
				AND x.payment_profile_id IS NOT DISTINCT FROM NEW.payment_profile_id),
		format('The gateway refused payment %s: it no longer has this card''s payment profile (E00040), which was deleted outside payments.',
			NEW.payment_id));
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._payment_method_gone() IS
	'Trigger: a charge of a stored method the gateway answered E00040 (its profile deleted at the gateway outside payments) fails with decline_code payment_method_gone, and the method, if still active, is failed (failure_code payment_method_gone, no longer the default; a payment_method.failed event).';

CREATE TRIGGER payments_method_gone BEFORE UPDATE OF status ON payments.payments
	FOR EACH ROW WHEN (NEW.status = 'failed' AND OLD.status <> 'failed' AND NEW.decline_code = 'E00040'
		AND NEW.payment_method_id IS NOT NULL)
	EXECUTE FUNCTION payments._payment_method_gone();
COMMENT ON TRIGGER payments_method_gone ON payments.payments IS
	'A charge of a stored method whose gateway profile is gone (E00040) fails with payment_method_gone and fails the method (payments._payment_method_gone).';

------------------------------------------------------------------------------
-- pay_purchase / pay_authorize with a customer or a stored method.
------------------------------------------------------------------------------

-- A charge of a customer's default when it has none that can be charged:
-- 22Y22, saying why.  No other method of the customer is charged in its
-- place (which card to charge when the default is gone, deleted or its
-- profile deleted at the gateway, is the merchant's or the customer's
-- call: pay_set_default_payment_method).
CREATE FUNCTION payments._no_default_method(c payments.customers) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	d payments.payment_methods;
	n bigint;
	why text;
BEGIN
	SELECT x.* INTO d FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.is_default
		AND x.status IN ('pending', 'deleting');
	SELECT count(*) INTO n FROM payments.payment_methods x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id AND x.status = 'active';
	IF d.status = 'pending' THEN
		why := format('Its default payment method %s is still being saved (pay_wait_payment_method).',
			d.payment_method_id);
	ELSIF d.status = 'deleting' THEN
		why := format('Its default payment method %s is being deleted.', d.payment_method_id);
	ELSIF n = 0 THEN
		why := 'It has no active payment method.';
	ELSE
		why := format('It has %s active payment method%s, none of them the default; none is charged in the default''s place.',
			n, CASE WHEN n > 1 THEN 's' ELSE '' END);
	END IF;
	RAISE EXCEPTION 'customer % has no default payment method', c.customer_id
		USING ERRCODE = '22Y22', DETAIL = why,
			HINT = CASE WHEN n > 0
				THEN 'Make one of its active payment methods the default (pay_set_default_payment_method), save a new one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.'
				ELSE 'Save one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.' END;
END
$$;
COMMENT ON FUNCTION payments._no_default_method(payments.customers) IS
	'Internal: raises 22Y22 for a charge of a customer''s default when it has none that can be charged, saying why (its default still being saved or being deleted, no active method, or active ones none of which is the default) and how to set one.';

-- The stored method a payment charges: the one named (it must be active,
-- and the customer's when a customer is named too), or the customer's
-- usable default when a customer alone is named (no card, opaque data or
-- profile: p_other_methods = 0): while a new default is still pending, the
-- active one it replaced, as a subscription's charge does
-- (_usable_default_method).  An empty row when no stored method is charged.
CREATE FUNCTION payments._stored_method_for_payment(p_customer_id bigint, p_payment_method_id bigint,
	p_other_methods integer)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
	c payments.customers;
BEGIN
	IF p_customer_id IS NOT NULL THEN
		c := payments._share_customer(p_customer_id);
	END IF;
	IF p_payment_method_id IS NULL THEN
		IF p_customer_id IS NULL OR p_other_methods > 0 THEN
			RETURN pm;
		END IF;
		-- its active default, or the active one a pending default replaced
		pm := payments._usable_default_method(c.merchant_id, c.customer_id);
		IF pm.payment_method_id IS NULL THEN
			PERFORM payments._no_default_method(c);
		END IF;
	ELSE
		IF p_other_methods > 1 THEN
			RAISE EXCEPTION 'exactly one payment method is required'
				USING ERRCODE = '22Y22', DETAIL = 'payment_method_id was given with another payment method.';
		END IF;
		pm := payments._find_payment_method(p_payment_method_id);
		IF p_customer_id IS NULL THEN
			-- the method's customer, locked as a named one is; then the method
			-- as it is once a deletion of the customer has committed
			PERFORM payments._share_customer(pm.customer_id);
			pm := payments._find_payment_method(p_payment_method_id);
		END IF;
		IF p_customer_id IS NOT NULL AND pm.customer_id <> p_customer_id THEN
			RAISE EXCEPTION 'payment method % is not customer %''s', p_payment_method_id, p_customer_id
				USING ERRCODE = '22023';
		END IF;
		IF pm.status = 'failed' AND pm.failure_reason IS NOT NULL THEN
			-- says why: its save failed, or its profile is gone at the gateway
			RAISE EXCEPTION 'payment method % is failed, not active', p_payment_method_id
				USING ERRCODE = '22Y20', DETAIL = pm.failure_reason,
					HINT = 'Save the card again (pay_save_payment_method).';
		ELSIF pm.status <> 'active' THEN
			RAISE EXCEPTION 'payment method % is %, not active', p_payment_method_id, pm.status
				USING ERRCODE = '22Y20',
					HINT = CASE WHEN pm.status = 'pending' THEN 'Wait for it to be saved (pay_wait_payment_method).'
						ELSE 'Save the card again (pay_save_payment_method).' END;
		END IF;
	END IF;
	-- its profiles are at the gateway account it was saved at: while the
	-- merchant is at another, which would answer "not found", it is
	-- refused, and kept active (it is not gone)
	PERFORM payments._refuse_other_account(pm.merchant_id,
		payments._method_account(pm.merchant_id, pm.payment_method_id),
		format('payment method %s was saved', pm.payment_method_id),
		'Configure the account it was saved at again (pay_configure_gateway) to charge it; the method is kept as it is. Or ask the customer for the card again and save it at the account configured now (pay_save_payment_method).');
	RETURN pm;
END
$$;
COMMENT ON FUNCTION payments._stored_method_for_payment(bigint, bigint, integer) IS
	'Internal: the stored payment method a payment charges (named, or the customer''s usable default: _usable_default_method), checked active and saved at the gateway account configured now (22Y20 otherwise); PT404 for an unknown or foreign one.';

-- What a customer's payment sends as customer (billTo and customer.email)
-- when the caller passes no customer object: its billing details and email.
CREATE FUNCTION payments._customer_billing(p_customer_id bigint) RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT c.billing || jsonb_strip_nulls(jsonb_build_object('email', c.email))
	FROM payments._find_customer(p_customer_id, false, false) c
	$$;
COMMENT ON FUNCTION payments._customer_billing(bigint) IS
	'Internal: a customer''s billing details and email, as the customer object of a payment.';

------------------------------------------------------------------------------
-- Cards that expire soon.
------------------------------------------------------------------------------

-- The last day a stored card works: the last day of its expiry month.
CREATE FUNCTION payments._card_expires_at(exp_year smallint, exp_month smallint) RETURNS date
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT (make_date(exp_year, exp_month, 1) + interval '1 month' - interval '1 day')::date $$;
COMMENT ON FUNCTION payments._card_expires_at(smallint, smallint) IS
	'Internal: the last day a card with this expiry month works (the last day of the month).';

CREATE FUNCTION payments.pay_expiring_payment_methods(within_days integer DEFAULT 30)
	RETURNS SETOF payments.payment_methods
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint;
	last_day date;
BEGIN
	IF within_days IS NULL OR within_days NOT BETWEEN 0 AND 3660 THEN
		RAISE EXCEPTION 'within_days must be between 0 and 3660' USING ERRCODE = '22023';
	END IF;
	m := payments.pay_current_merchant();
	-- days counted from the merchant's billing date (its test clock, if
	-- set): the UTC date, as a merchant has no time zone of its own (the
	-- session's, ::date, listed a card or not by the TimeZone of the
	-- client that asked)
	last_day := (payments._billing_now(m) AT TIME ZONE 'UTC')::date + within_days;
	RETURN QUERY SELECT x.* FROM payments.payment_methods x
	WHERE x.merchant_id = m AND x.status = 'active'
		AND x.card_exp_year IS NOT NULL
		AND payments._card_expires_at(x.card_exp_year, x.card_exp_month) <= last_day
	ORDER BY x.card_exp_year, x.card_exp_month, x.payment_method_id;
END
$$;
COMMENT ON FUNCTION payments.pay_expiring_payment_methods(integer) IS
	'The current merchant''s active payment methods whose card''s last valid day (the last day of its expiry month) is within within_days days (default 30; already expired ones too) of its billing date (the UTC date of pay_billing_now(): its test clock, if set; not the session''s TimeZone), soonest first.';

-- One payment_method.expiring event per active method, written once the
-- card's last valid day is within payments.expiring_notice_days (default
-- 30) days of its merchant's billing date (_billing_now: a test clock
-- moves the notices as it moves the renewals);
-- the worker's housekeeping runs it, and so may pg_cron (all merchants;
-- running it twice writes nothing twice).  Returns how many events it wrote.
CREATE FUNCTION payments.pay_run_expiry_notices() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	days integer := current_setting('payments.expiring_notice_days')::integer;
	-- the latest billing date of any merchant: nothing is due after it
	-- (UTC dates, as in pay_expiring_payment_methods: not the TimeZone of
	-- the session that runs this, the worker's or pg_cron's)
	horizon date := (payments._billing_horizon(NULL) AT TIME ZONE 'UTC')::date;
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	n integer;
BEGIN
	-- a method someone holds locked waits for the next run: a caller's open
	-- transaction must not stop the notices of every merchant
	WITH locked AS (
		SELECT y.merchant_id, y.payment_method_id FROM payments.payment_methods y
		WHERE y.status = 'active' AND y.expiring_notified_at IS NULL AND y.card_exp_year IS NOT NULL
			AND payments._card_expires_at(y.card_exp_year, y.card_exp_month) <= horizon + days
			AND CASE WHEN clocks THEN payments._card_expires_at(y.card_exp_year, y.card_exp_month)
				<= (payments._billing_now(y.merchant_id) AT TIME ZONE 'UTC')::date + days ELSE true END
		FOR UPDATE SKIP LOCKED
	), due AS (
		UPDATE payments.payment_methods x SET expiring_notified_at = clock_timestamp()
		FROM locked l
		WHERE x.merchant_id = l.merchant_id AND x.payment_method_id = l.payment_method_id
			AND x.status = 'active' AND x.expiring_notified_at IS NULL
		RETURNING x.*
	)
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	SELECT d.merchant_id, 'payment_method.expiring',
		jsonb_build_object('payment_method_id', d.payment_method_id, 'customer_id', d.customer_id,
			'card_brand', d.card_brand, 'card_last4', d.card_last4, 'card_exp_month', d.card_exp_month,
			'card_exp_year', d.card_exp_year,
			'expires_at', payments._card_expires_at(d.card_exp_year, d.card_exp_month)),
		d.correlation_id
	FROM due d;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments.pay_run_expiry_notices() IS
	'Writes one payment_method.expiring event for each active payment method whose card''s last valid day is within payments.expiring_notice_days days (default 30) of its merchant''s billing date (the UTC date of its billing time: its test clock, if set; not the session''s TimeZone), once per method; all merchants. Run by the worker''s housekeeping; pg_cron may call it too. Returns how many events it wrote. Owner only.';
