-- Billing of subscriptions: charging an invoice through the outbox and the
-- worker like any payment.

------------------------------------------------------------------------------
-- One charge attempt of an invoice: a purchase of the subscription's payment
-- method (or the customer's default), recorded like any payment and sent by
-- the worker after COMMIT with the card-on-file fields of a stored method.
-- The payment carries invoice_id; what its outcome does to the invoice and
-- the subscription is decided when the worker records it.
------------------------------------------------------------------------------

CREATE FUNCTION payments._charge_invoice(p_merchant_id bigint, p_invoice_id bigint) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	c payments.customers;
	pm payments.payment_methods;
	pid bigint;
BEGIN
	SELECT * INTO inv FROM payments.invoices i
	WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id
	FOR UPDATE;
	IF NOT FOUND OR inv.status NOT IN ('open', 'uncollectible') OR pay_minor_units(inv.amount) = 0 THEN
		RETURN NULL;
	END IF;
	SELECT * INTO s FROM payments.subscriptions x
	WHERE x.merchant_id = inv.merchant_id AND x.subscription_id = inv.subscription_id;
	SELECT * INTO c FROM payments.customers x
	WHERE x.merchant_id = inv.merchant_id AND x.customer_id = inv.customer_id;
	-- the subscription's method while it is usable, else the customer's default
	SELECT * INTO pm FROM payments.payment_methods x
	WHERE x.merchant_id = inv.merchant_id AND x.customer_id = inv.customer_id AND x.status = 'active'
		AND (x.payment_method_id = s.payment_method_id OR (s.payment_method_id IS NULL AND x.is_default))
	LIMIT 1;
	IF pm.payment_method_id IS NULL THEN
		RETURN NULL;
	END IF;

	pid := nextval('payments.payments_payment_id_seq');
	INSERT INTO payments.payments (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description,
		customer, metadata, correlation_id, customer_id, payment_method_id, invoice_id)
	OVERRIDING SYSTEM VALUE
	VALUES (inv.merchant_id, pid, 'purchase', inv.amount, inv.amount * 0, 'profile',
		pm.card_brand, pm.card_last4, pm.card_exp_month, pm.card_exp_year, pm.card_fingerprint,
		pm.customer_profile_id, pm.payment_profile_id, 'P' || payments._invoice_tag() || pid,
		format('Subscription %s, invoice %s', inv.subscription_id, inv.invoice_id),
		c.billing || jsonb_strip_nulls(jsonb_build_object('email', c.email)),
		jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id),
		inv.correlation_id, inv.customer_id, pm.payment_method_id, inv.invoice_id);
	INSERT INTO payments.operations (merchant_id, payment_id, kind, amount, correlation_id)
	VALUES (inv.merchant_id, pid, 'purchase', inv.amount, inv.correlation_id);
	UPDATE payments.invoices SET payment_id = pid, attempt_count = attempt_count + 1,
		next_attempt_at = NULL
	WHERE merchant_id = inv.merchant_id AND invoice_id = inv.invoice_id;
	PERFORM payments._wake_at_commit();
	RETURN pid;
END
$$;
COMMENT ON FUNCTION payments._charge_invoice(bigint, bigint) IS
	'Internal: one charge attempt of an open invoice: a purchase of the subscription''s payment method (or the customer''s default), sent by the worker after COMMIT. Returns the payment id, or NULL when there is nothing to charge or no usable payment method.';

------------------------------------------------------------------------------
-- Issuing an invoice: its lines (the subscription's price times quantity for
-- a period's invoice, or the lines given; then the subscription's pending
-- prorations and credits), the total (a credit larger than the total is
-- carried to the next invoice), and its first charge.  The caller holds the
-- subscription's row lock.  A period already invoiced returns an empty row:
-- the unique key invoices_one_per_period is what makes two billing runs at
-- once, or a run repeated after a crash, harmless.
------------------------------------------------------------------------------

CREATE FUNCTION payments._issue_invoice(p_merchant_id bigint, p_subscription_id bigint, p_kind text,
	p_period_index integer, p_period_start timestamptz, p_period_end timestamptz,
	p_lines jsonb DEFAULT NULL)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	s payments.subscriptions;
	lines jsonb;
	total payments.pay_amount;
	credit payments.pay_amount;
	inv payments.invoices;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	SELECT * INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id;
	IF p_lines IS NOT NULL THEN
		lines := p_lines;
	ELSIF p_kind IN ('first', 'renewal') THEN
		lines := jsonb_build_array(jsonb_build_object('kind', 'subscription',
			'description', format('%s x %s, %s to %s', s.quantity, s.unit_amount,
				p_period_start AT TIME ZONE s.time_zone, p_period_end AT TIME ZONE s.time_zone),
			'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
			'amount', (s.unit_amount * s.quantity)::text));
	ELSE
		RAISE EXCEPTION 'a % invoice needs its lines', p_kind USING ERRCODE = '22023';
	END IF;
	IF p_kind IN ('first', 'renewal') THEN
		lines := lines || coalesce((SELECT jsonb_agg(jsonb_build_object('kind', i.kind,
				'description', i.description, 'amount', i.amount::text, 'item_id', i.item_id) ORDER BY i.item_id)
			FROM payments.invoice_items i
			WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
				AND i.invoice_id IS NULL), '[]');
	END IF;
	SELECT coalesce(sum((l ->> 'amount')::payments.pay_amount), s.unit_amount * 0) INTO total
	FROM jsonb_array_elements(lines) l;
	IF pay_currency(total) <> pay_currency(s.unit_amount) THEN
		RAISE EXCEPTION 'invoice lines must be in %', pay_currency(s.unit_amount) USING ERRCODE = '22023';
	END IF;
	credit := total * 0;
	IF pay_minor_units(total) < 0 THEN
		credit := total;
		total := total * 0;
	END IF;

	INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, period_index,
		period_start, period_end, amount, lines, correlation_id)
	VALUES (p_merchant_id, p_subscription_id, s.customer_id, p_kind, p_period_index,
		p_period_start, p_period_end, total, lines, s.correlation_id)
	ON CONFLICT (merchant_id, subscription_id, period_index) WHERE kind IN ('first', 'renewal') DO NOTHING
	RETURNING * INTO inv;
	IF NOT FOUND THEN
		RETURN inv;
	END IF;
	IF p_kind IN ('first', 'renewal') THEN
		UPDATE payments.invoice_items SET invoice_id = inv.invoice_id
		WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id AND invoice_id IS NULL;
	END IF;
	IF pay_minor_units(credit) < 0 THEN
		INSERT INTO payments.invoice_items (merchant_id, subscription_id, kind, amount, description)
		VALUES (p_merchant_id, p_subscription_id, 'credit', credit,
			format('Credit carried over from invoice %s', inv.invoice_id));
	END IF;
	IF pay_minor_units(total) = 0 THEN
		UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_
		WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
		RETURNING * INTO inv;
	ELSIF payments._charge_invoice(p_merchant_id, inv.invoice_id) IS NULL THEN
		UPDATE payments.invoices SET first_failed_at = coalesce(first_failed_at, now_),
			last_failure_code = 'no_payment_method',
			last_failure_reason = 'The customer has no usable payment method.'
		WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
		RETURNING * INTO inv;
	ELSE
		SELECT * INTO inv FROM payments.invoices
		WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id;
	END IF;
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._issue_invoice(bigint, bigint, text, integer, timestamptz, timestamptz, jsonb) IS
	'Internal: issues a subscription''s invoice (kind first or renewal: one per period, an empty row when the period was invoiced already; proration: the lines given) with its pending prorations and credits, and makes its first charge (an amount of zero is paid at once). The caller holds the subscription''s row lock.';
