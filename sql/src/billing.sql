-- Billing of subscriptions: charging an invoice through the outbox and the
-- worker like any payment; what a charge's outcome does to the invoice and
-- the subscription (dunning); the billing runs (renewals, retries, expiry
-- of incomplete subscriptions); the invoice and dunning API.
--
-- Locks are always taken in one order: the subscription's row first, then
-- its invoices' (the payment a worker records is locked before both).  The
-- runs lock with SKIP LOCKED, so the worker and a pg_cron job running at
-- the same moment share the work instead of waiting or doing it twice.

------------------------------------------------------------------------------
-- Background charges: the worker claims the charges a billing run queued
-- (renewals, dunning retries) after every other ready operation, each kind
-- by due time, so that a backlog of renewals never holds up the result of
-- an ordinary payment (a customer waiting at a checkout).
------------------------------------------------------------------------------

ALTER TABLE payments.operations ADD COLUMN background boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN payments.operations.background IS
	'A charge a billing run queued (a renewal or a dunning retry): the worker claims it after every other ready operation.';
-- (Here, after background: the upgrade adds the columns in this order.)
ALTER TABLE payments.operations ADD COLUMN gateway_account text;
COMMENT ON COLUMN payments.operations.gateway_account IS
	'The gateway account (payments._gateway_account of its api_login_id) the operation was sent to, recorded by the claim of every send while no attempt can have reached the gateway; a capture, void or refund takes its payment''s from its creation. The worker never sends, resends or looks it up at another account: it holds it as a dead letter instead. NULL: not sent since the column exists.';
-- By merchant inside each kind: the claim takes merchants in turns
-- (_claim_operations), each merchant's operations by due time.
DROP INDEX payments.operations_ready;
CREATE INDEX operations_ready ON payments.operations (background, merchant_id, next_attempt_at)
	WHERE status IN ('queued', 'unknown');
-- By due time: the claim finds the merchants with operations due from the
-- due ones alone, however many merchants have operations waiting for later
-- (parked behind an open circuit, an unknown outcome's next look).
CREATE INDEX operations_due ON payments.operations (next_attempt_at) INCLUDE (background, merchant_id)
	WHERE status IN ('queued', 'unknown');

------------------------------------------------------------------------------
-- Constants of billing.
------------------------------------------------------------------------------

-- How long an incomplete subscription (its first invoice unpaid) waits for
-- a successful charge before the billing run expires it, in billing time.
-- A constant rather than a server setting: 23 hours as at Stripe, so that a
-- retry the next day at the same hour already finds the subscription
-- expired and the customer starts again with a new one.
CREATE FUNCTION payments._incomplete_expiry() RETURNS interval
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT interval '23 hours' $$;
COMMENT ON FUNCTION payments._incomplete_expiry() IS
	'Internal: how long an incomplete subscription waits for its first invoice to be paid (payments.incomplete_expiry: 23 hours of billing time); its next_renewal_at is that deadline, and the billing run then makes it incomplete_expired.';

-- Decline codes after which charging the same payment method again cannot
-- succeed, so dunning does not retry them automatically (a new card is
-- tried at once): the card number is invalid (6, 37, 315), its expiry date
-- invalid or passed (7, 8, 316, 317), pick-up card (4), a card type the
-- merchant does not accept (17, 28), the fraud filters' and manual
-- review's declines (250, 251, 254), the stored profile gone at the gateway
-- (E00040; payment_method_gone for a stored method, payment_methods.sql),
-- and no usable payment method at all.  Every other decline (2,
-- 3 generic and referral, 27/44/45/65/127 address and card code checks,
-- processing errors, a canceled charge) is retried on the schedule.
CREATE FUNCTION payments._decline_is_final(p_code text) RETURNS boolean
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$
	SELECT coalesce(p_code IN ('4', '6', '7', '8', '17', '28', '37', '250', '251', '254',
		'315', '316', '317', 'E00040', 'payment_method_gone', 'no_payment_method'), false)
	$$;
COMMENT ON FUNCTION payments._decline_is_final(text) IS
	'Internal: true for a decline code (the gateway''s reason code, payment_method_gone or no_payment_method) after which the same payment method cannot succeed (invalid or expired card, pick-up, card type not accepted, fraud declines, profile gone): dunning does not retry it automatically.';

-- A merchant's dunning policy: its row, else the defaults of the table
-- (retry on days 1, 3, 5 and 7 after the first failure, then cancel).
CREATE FUNCTION payments._dunning_policy(p_merchant_id bigint) RETURNS payments.dunning_policies
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM (
		SELECT d.* FROM payments.dunning_policies d WHERE d.merchant_id = p_merchant_id
		UNION ALL
		-- the column defaults of payments.dunning_policies
		SELECT p_merchant_id, '{1,3,5,7}'::integer[], 'canceled', NULL::timestamptz
	) x LIMIT 1
	$$;
COMMENT ON FUNCTION payments._dunning_policy(bigint) IS
	'Internal: the merchant''s dunning policy, or the defaults (retry days 1, 3, 5, 7; final action canceled; updated_at NULL) when it has none.';

-- The stored payment method an invoice of a subscription is charged to:
-- the subscription's own method while it is active, else the customer's
-- usable default (payment_methods.sql: while a new default is still being
-- saved, the active one it replaced).  NULL fields when there is none.
CREATE FUNCTION payments._invoice_payment_method(p_merchant_id bigint, p_customer_id bigint,
	p_payment_method_id bigint)
	RETURNS payments.payment_methods
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	pm payments.payment_methods;
BEGIN
	IF p_payment_method_id IS NOT NULL THEN
		SELECT x.* INTO pm FROM payments.payment_methods x
		WHERE x.merchant_id = p_merchant_id AND x.customer_id = p_customer_id
			AND x.payment_method_id = p_payment_method_id AND x.status = 'active';
		IF FOUND THEN
			RETURN pm;
		END IF;
	END IF;
	RETURN payments._usable_default_method(p_merchant_id, p_customer_id);
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_method(bigint, bigint, bigint) IS
	'Internal: the payment method a subscription''s invoice is charged to: the subscription''s own (p_payment_method_id) while it is active, else the customer''s usable default (_usable_default_method: the active default, or while that default is still pending the active one it replaced).';

------------------------------------------------------------------------------
-- One charge attempt of an invoice: a purchase of the subscription's payment
-- method (or the customer's default), recorded like any payment and sent by
-- the worker after COMMIT with the card-on-file fields of a stored method.
-- The payment carries invoice_id; what its outcome does to the invoice and
-- the subscription is decided when the worker records it.
------------------------------------------------------------------------------

-- The invoice number a charge of an invoice carries at the gateway.  A
-- period's charge is numbered by what it is (subscription, period, attempt),
-- not by its payment id: a billing run repeated on a promoted standby that
-- lacks the old primary's last commits makes the same charge again under
-- the same number, which the gateway's duplicate check answers with the
-- original transaction (charged once).  S, the subscription's tag (p_tag:
-- subscriptions.gateway_tag, the server life it was made in; NULL, made
-- before any change of server: the installation's), then the three numbers
-- in base 36 at fixed widths (8, 3, 2: 20 characters, the gateway's limit);
-- a charge beyond those widths, and a proration's, gets its payment's
-- number (P, tag, payment id).  A subscription made after the database
-- changed server may have the id of one the server before made after the
-- copy: with the installation's tag, its first charge had that one's
-- number, and at the same price and card the gateway answered it
-- "duplicate" with the other's charge.
CREATE FUNCTION payments._invoice_charge_number(p_invoice payments.invoices, p_payment_id bigint,
	p_tag text DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	digits constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ';
	parts constant bigint[] := ARRAY[p_invoice.subscription_id, p_invoice.period_index, p_invoice.attempt_count];
	widths constant integer[] := ARRAY[8, 3, 2];
	num text := '';
	v bigint;
BEGIN
	IF p_invoice.kind IN ('first', 'renewal') THEN
		FOR i IN 1 .. 3 LOOP
			v := parts[i];
			EXIT WHEN v IS NULL OR v < 0 OR v >= (36::bigint ^ widths[i])::bigint;
			FOR j IN REVERSE widths[i] - 1 .. 0 LOOP
				num := num || substr(digits, (v / (36::bigint ^ j)::bigint % 36)::integer + 1, 1);
			END LOOP;
			IF i = 3 THEN
				RETURN 'S' || coalesce(p_tag, payments._invoice_tag()) || num;
			END IF;
		END LOOP;
	END IF;
	RETURN 'P' || coalesce(payments._server_tag(), payments._invoice_tag()) || p_payment_id;
END
$$;
COMMENT ON FUNCTION payments._invoice_charge_number(payments.invoices, bigint, text) IS
	'Internal: the invoice number of payment p_payment_id, a charge of invoice p_invoice: for a first or renewal invoice S, p_tag (the subscription''s gateway_tag: the server life it was made in; NULL: the installation''s tag), then the subscription id, the period index and the attempt (attempt_count, this charge''s) in base 36 at widths 8, 3 and 2, so that a billing run repeated after a failover makes the same charge under the same number and the gateway''s duplicate check catches it; else, and beyond those widths, P, the tag and the payment id, as for any payment.';

-- The payment and its operation (one home for _charge_invoice and
-- _issue_invoice): payment p_payment_id of invoice p_invoice, by method pm.
CREATE FUNCTION payments._queue_invoice_charge(p_invoice payments.invoices, pm payments.payment_methods,
	p_payment_id bigint, p_background boolean)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
	-- under the tag of the server life the subscription was made in
	num text := payments._invoice_charge_number(p_invoice, p_payment_id,
		(SELECT s.gateway_tag FROM payments.subscriptions s
		 WHERE s.merchant_id = p_invoice.merchant_id AND s.subscription_id = p_invoice.subscription_id));
	-- when this attempt came due on the server before: a scheduled retry's
	-- time (next_attempt_at, which a charge made at once ahead of its retry
	-- has too: the same attempt, the same number), else, for a billing
	-- run's charge only, its period's start (a charge made at once for an
	-- event here with no retry scheduled, such as a resumed subscription's
	-- renewal, is this server's own)
	due timestamptz := CASE WHEN p_background
		THEN coalesce(p_invoice.next_attempt_at, p_invoice.period_start)
		ELSE p_invoice.next_attempt_at END;
	changed timestamptz := (SELECT w.changed_at FROM payments.worker_server w);
	-- the server before this one may have made it (same invoice number)
	maybe_made boolean := coalesce(num LIKE 'S%' AND due < changed, false);
BEGIN
	SELECT * INTO c FROM payments.customers x
	WHERE x.merchant_id = p_invoice.merchant_id AND x.customer_id = p_invoice.customer_id;
	INSERT INTO payments.payments (merchant_id, payment_id, kind, amount, amount_refunded,
		payment_method, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, invoice_number, description,
		customer, metadata, correlation_id, customer_id, payment_method_id, invoice_id)
	OVERRIDING SYSTEM VALUE
	VALUES (p_invoice.merchant_id, p_payment_id, 'purchase', p_invoice.amount, p_invoice.amount * 0, 'profile',
		pm.card_brand, pm.card_last4, pm.card_exp_month, pm.card_exp_year, pm.card_fingerprint,
		pm.customer_profile_id, pm.payment_profile_id, num,
		format('Subscription %s, invoice %s', p_invoice.subscription_id, p_invoice.invoice_id),
		c.billing || jsonb_strip_nulls(jsonb_build_object('email', c.email)),
		jsonb_build_object('invoice_id', p_invoice.invoice_id, 'subscription_id', p_invoice.subscription_id),
		p_invoice.correlation_id, p_invoice.customer_id, pm.payment_method_id, p_invoice.invoice_id);
	-- One that came due before the database changed server (a failover, a
	-- restore: changed_at) may have been charged there under this number,
	-- in a history lost here: it is treated as sent when it came due, so
	-- it is resent identically inside the duplicate window (the gateway
	-- answers with the original) and looked up past it, never charged again.
	INSERT INTO payments.operations (merchant_id, payment_id, kind, amount, correlation_id, background,
		never_sent, first_sent_at, last_error)
	VALUES (p_invoice.merchant_id, p_payment_id, 'purchase', p_invoice.amount, p_invoice.correlation_id,
		p_background, NOT maybe_made, CASE WHEN maybe_made THEN due END,
		CASE WHEN maybe_made THEN format('due at %s, before the database changed server at %s: the server before may have charged it', due, changed) END);
	PERFORM payments._wake_at_commit();
END
$$;
COMMENT ON FUNCTION payments._queue_invoice_charge(payments.invoices, payments.payment_methods, bigint, boolean) IS
	'Internal: queues payment p_payment_id of an invoice (a purchase of stored method pm) and its operation for the worker (p_background: a billing run''s, claimed after ordinary operations). p_invoice.attempt_count is this charge''s attempt (its invoice number, _invoice_charge_number); the caller records the attempt on the invoice. A charge under a subscription''s invoice number that came due before the database changed server (p_invoice.next_attempt_at: a scheduled retry, or a charge made at once ahead of it; else, for a billing run''s, its period''s start) (worker_server.changed_at) is queued as possibly sent when it came due: resent identically inside the duplicate window, looked up past it.';

CREATE FUNCTION payments._charge_invoice(p_merchant_id bigint, p_invoice_id bigint,
	p_background boolean DEFAULT false) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
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
	-- the subscription's method while it is usable, else the customer's default
	pm := payments._invoice_payment_method(inv.merchant_id, inv.customer_id, s.payment_method_id);
	IF pm.payment_method_id IS NULL THEN
		RETURN NULL;
	END IF;
	pid := nextval('payments.payments_payment_id_seq');
	inv.attempt_count := inv.attempt_count + 1;	-- this charge's (its invoice number)
	PERFORM payments._queue_invoice_charge(inv, pm, pid, p_background);
	UPDATE payments.invoices SET payment_id = pid, attempt_count = inv.attempt_count,
		next_attempt_at = NULL
	WHERE merchant_id = inv.merchant_id AND invoice_id = inv.invoice_id;
	RETURN pid;
END
$$;
COMMENT ON FUNCTION payments._charge_invoice(bigint, bigint, boolean) IS
	'Internal: one charge attempt of an open invoice: a purchase of the subscription''s payment method (or the customer''s default), sent by the worker after COMMIT (p_background: a billing run''s, claimed after ordinary operations). Returns the payment id, or NULL when there is nothing to charge or no usable payment method.';

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
	p_lines jsonb DEFAULT NULL, p_background boolean DEFAULT false)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	lines jsonb;
	total payments.pay_amount;
	credit payments.pay_amount;
	inv payments.invoices;
	pm payments.payment_methods;
	pid bigint;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	SELECT * INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id;
	IF p_lines IS NOT NULL THEN
		lines := p_lines;
	ELSIF p_kind IN ('first', 'renewal') THEN
		lines := jsonb_build_array(jsonb_build_object('kind', 'subscription',
			-- the wall-clock times as to_char writes them: their text
			-- (format's %s) followed the DateStyle of the session that
			-- issued the invoice, and 01/06/2031 read as 6 January or 1 June
			'description', format('%s x %s, %s to %s', s.quantity, s.unit_amount,
				to_char(p_period_start AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
				to_char(p_period_end AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS')),
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

	-- the first charge's payment is known before the invoice is written, so
	-- that the invoice is written once, with its first attempt
	IF pay_minor_units(total) > 0 THEN
		pm := payments._invoice_payment_method(p_merchant_id, s.customer_id, s.payment_method_id);
		IF pm.payment_method_id IS NOT NULL THEN
			pid := nextval('payments.payments_payment_id_seq');
		END IF;
	END IF;
	INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, period_index,
		period_start, period_end, amount, lines, correlation_id, payment_id, attempt_count)
	VALUES (p_merchant_id, p_subscription_id, s.customer_id, p_kind, p_period_index,
		p_period_start, p_period_end, total, lines, s.correlation_id, pid, (pid IS NOT NULL)::integer)
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
		PERFORM payments._subscription_invoice_paid(p_merchant_id, p_subscription_id);
	ELSIF pid IS NULL THEN
		-- a failed charge like any other: dunning (or, for a first
		-- invoice, the wait until the subscription expires)
		inv := payments._invoice_payment_failed(p_merchant_id, inv.invoice_id, NULL,
			'no_payment_method', 'The customer has no usable payment method.');
	ELSE
		PERFORM payments._queue_invoice_charge(inv, pm, pid, p_background);
	END IF;
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._issue_invoice(bigint, bigint, text, integer, timestamptz, timestamptz, jsonb, boolean) IS
	'Internal: issues a subscription''s invoice (kind first or renewal: one per period, an empty row when the period was invoiced already; proration: the lines given) with its pending prorations and credits, and makes its first charge (p_background: a billing run''s; an amount of zero is paid at once and activates the subscription; no usable payment method is a failed charge: dunning). The caller holds the subscription''s row lock.';

------------------------------------------------------------------------------
-- A subscription that ends has no next invoice: its pending prorations and
-- credits (payments.invoice_items, left by changes with proration
-- next_invoice and by credits carried over) are closed on a final
-- proration invoice of its last period, never left pending.  A net amount
-- owed is charged at once (p_charge: a cancel now or at period end) or, for
-- a subscription ended without a charge (p_charge false: its customer
-- deleted, dunning exhausted), recorded as an uncollectible invoice; a net
-- credit makes the invoice zero, paid, and is reported (nothing is
-- refunded automatically: the event names the credit and the latest paid
-- charge to refund it from).  subscription.pending_items_closed says what
-- was done.  The caller holds the subscription's row lock and has ended it.
------------------------------------------------------------------------------

CREATE FUNCTION payments._close_pending_items(p_merchant_id bigint, p_subscription_id bigint,
	p_reason text, p_charge boolean, p_background boolean DEFAULT false)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	lines jsonb;
	net payments.pay_amount;
	inv payments.invoices;
	refundable bigint;
	outcome text;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	SELECT * INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id;
	PERFORM 1 FROM payments.invoice_items i
	WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id AND i.invoice_id IS NULL
	FOR UPDATE;
	SELECT jsonb_agg(jsonb_build_object('kind', i.kind, 'description', i.description,
			'amount', i.amount::text, 'item_id', i.item_id) ORDER BY i.item_id),
		sum(i.amount)
	INTO lines, net
	FROM payments.invoice_items i
	WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id AND i.invoice_id IS NULL;
	IF lines IS NULL THEN
		RETURN NULL;
	END IF;
	IF pay_minor_units(net) > 0 AND p_charge THEN
		outcome := 'charged';
		inv := payments._issue_invoice(p_merchant_id, p_subscription_id, 'proration', s.current_period_index,
			s.current_period_start, s.current_period_end, lines, p_background);
	ELSE
		outcome := CASE WHEN pay_minor_units(net) > 0 THEN 'not_charged'
			WHEN pay_minor_units(net) < 0 THEN 'credit_not_applied' ELSE 'nothing_due' END;
		INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, period_index,
			period_start, period_end, amount, lines, correlation_id)
		VALUES (p_merchant_id, p_subscription_id, s.customer_id, 'proration', s.current_period_index,
			s.current_period_start, s.current_period_end,
			CASE WHEN pay_minor_units(net) > 0 THEN net ELSE net * 0 END, lines, s.correlation_id)
		RETURNING * INTO inv;
		IF pay_minor_units(net) > 0 THEN
			UPDATE payments.invoices SET status = 'uncollectible', closed_at = now_,
				last_failure_code = p_reason,
				last_failure_reason = 'Not charged: the subscription ended without a charge.'
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
			RETURNING * INTO inv;
		ELSE
			UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id
			RETURNING * INTO inv;
		END IF;
	END IF;
	UPDATE payments.invoice_items SET invoice_id = inv.invoice_id
	WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id AND invoice_id IS NULL;
	IF pay_minor_units(net) < 0 THEN
		SELECT i.payment_id INTO refundable FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
			AND i.status = 'paid' AND i.payment_id IS NOT NULL
		ORDER BY i.paid_at DESC, i.invoice_id DESC
		LIMIT 1;
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'subscription.pending_items_closed', inv.payment_id,
		jsonb_build_object('subscription_id', p_subscription_id, 'customer_id', s.customer_id,
			'invoice_id', inv.invoice_id, 'reason', p_reason, 'outcome', outcome, 'net_amount', net,
			'credit', CASE WHEN pay_minor_units(net) < 0 THEN (- net)::text END,
			'refundable_payment_id', refundable),
		s.correlation_id);
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._close_pending_items(bigint, bigint, text, boolean, boolean) IS
	'Internal: when a subscription ends, closes its pending invoice items on a final proration invoice of its last period: a net amount owed is charged (p_charge; p_background: a billing run''s) or recorded uncollectible (not p_charge, failure code p_reason); a net credit makes it zero and paid and is reported, with the latest paid charge to refund it from. Writes subscription.pending_items_closed. Returns the invoice, or NULL when nothing was pending. The caller holds the subscription''s row lock and has ended it.';

------------------------------------------------------------------------------
-- The outcome of a charge: what a paid or failed invoice does to its
-- subscription, the dunning schedule and its final action.
------------------------------------------------------------------------------

-- A billing step that is not a status change (the status triggers write
-- those): invoice.payment_failed, invoice.retry_scheduled,
-- invoice.retry_attempted, invoice.payment_after_close,
-- subscription.renewed, subscription.dunning_exhausted,
-- subscription.pending_items_closed.
CREATE FUNCTION payments._billing_event(p_merchant_id bigint, p_event_type text, p_payment_id bigint,
	p_data jsonb, p_correlation_id text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	INSERT INTO payments.events (merchant_id, event_type, payment_id, data, correlation_id)
	VALUES (p_merchant_id, p_event_type, p_payment_id, jsonb_strip_nulls(p_data), p_correlation_id);
END
$$;
COMMENT ON FUNCTION payments._billing_event(bigint, text, bigint, jsonb, text) IS
	'Internal: writes a billing event that is not a status change (invoice.payment_failed, invoice.retry_scheduled, invoice.retry_attempted, invoice.payment_after_close, subscription.renewed, subscription.dunning_exhausted, subscription.pending_items_closed).';

-- An invoice of the subscription was paid: an incomplete, past-due or
-- unpaid subscription (or one whose trial has ended) becomes active again,
-- unless another of its invoices is still in dunning.  Its next renewal is
-- the end of its current period: a past_due one was served meanwhile, so a
-- period that ended while it was past due is renewed (and invoiced) by the
-- next billing run.  An unpaid one was kept, not renewed: it resumes as
-- pay_resume_subscription does, the periods it spent unpaid never billed;
-- the period containing now becomes current (the anchor kept) and the part
-- of it left is invoiced and charged at once, prorated, with its pending
-- prorations.  The caller holds the subscription's lock.
CREATE FUNCTION payments._subscription_invoice_paid(p_merchant_id bigint, p_subscription_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	now_ timestamptz;
	n integer;
	ps timestamptz;
	pe timestamptz;
BEGIN
	SELECT * INTO s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = p_subscription_id
		AND (x.status IN ('incomplete', 'past_due', 'unpaid')
			OR (x.status = 'trialing' AND x.current_period_index >= 0))
		-- no other invoice of it open: one in dunning, or one whose charge
		-- is not answered yet (period 0's, when a proration invoice of a
		-- change made at the trial's end was paid first)
		AND NOT EXISTS (SELECT 1 FROM payments.invoices i
			WHERE i.merchant_id = x.merchant_id AND i.subscription_id = x.subscription_id
				AND i.status = 'open');
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF s.status = 'unpaid' THEN
		now_ := payments._billing_now(p_merchant_id);
		n := payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_);
		IF n > s.current_period_index AND s.cancel_at_period_end THEN
			-- set to cancel at the end of its period, which has passed while
			-- it was unpaid: it ended then, no new period is charged (as
			-- pay_resume_subscription does for a paused one)
			UPDATE payments.subscriptions x SET status = 'canceled', next_renewal_at = NULL,
				canceled_at = coalesce(x.canceled_at, now_), ended_at = x.current_period_end
			WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
			PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end', true);
			RETURN;
		END IF;
		IF n > s.current_period_index THEN
			ps := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
			pe := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
			UPDATE payments.subscriptions x SET status = 'active', current_period_index = n, period_amount = NULL,
				current_period_start = ps, current_period_end = pe, next_renewal_at = pe
			WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
			RETURNING * INTO s;
			PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', n, now_, pe,
				jsonb_build_array(payments._period_line(s, ps, pe, now_)));
			RETURN;
		END IF;
	END IF;
	UPDATE payments.subscriptions x SET status = 'active', next_renewal_at = x.current_period_end
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
END
$$;
COMMENT ON FUNCTION payments._subscription_invoice_paid(bigint, bigint) IS
	'Internal: after an invoice was paid, an incomplete, past_due or unpaid subscription (or a trialing one whose trial has ended) becomes active, unless another of its invoices is still in dunning: with its next renewal at the end of its current period (past_due: a period that ended meanwhile is renewed by the next run); an unpaid one resumes in the period containing now, whose remaining part is invoiced and charged at once, prorated (the periods it spent unpaid are not billed). The caller holds the subscription''s lock.';

-- The final action of dunning: the invoice is uncollectible and the
-- subscription becomes what the merchant's policy says (canceled, ended
-- now; or unpaid, kept with no renewals until an invoice is paid).  The
-- caller holds the subscription's and the invoice's locks.
CREATE FUNCTION payments._dunning_final_action(p_merchant_id bigint, p_invoice_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	action_ text := (payments._dunning_policy(p_merchant_id)).final_action;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	UPDATE payments.invoices SET status = 'uncollectible', next_attempt_at = NULL, closed_at = now_
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id AND status = 'open'
	RETURNING * INTO inv;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	UPDATE payments.subscriptions x SET status = action_, next_renewal_at = NULL,
		canceled_at = CASE WHEN action_ = 'canceled' THEN coalesce(x.canceled_at, now_) ELSE x.canceled_at END,
		ended_at = CASE WHEN action_ = 'canceled' THEN now_ ELSE x.ended_at END
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id = inv.subscription_id
		AND x.status IN ('past_due', 'unpaid') AND x.status <> action_
	RETURNING * INTO s;
	IF s.status = 'canceled' THEN
		-- ended: its pending prorations are closed, not charged
		PERFORM payments._close_pending_items(p_merchant_id, s.subscription_id, 'dunning_exhausted', false);
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'subscription.dunning_exhausted', inv.payment_id,
		jsonb_build_object('subscription_id', inv.subscription_id, 'invoice_id', inv.invoice_id,
			'final_action', action_, 'attempt_count', inv.attempt_count,
			'first_failed_at', payments._json_time(inv.first_failed_at), 'last_failure_code', inv.last_failure_code),
		inv.correlation_id);
END
$$;
COMMENT ON FUNCTION payments._dunning_final_action(bigint, bigint) IS
	'Internal: dunning''s final action for an open invoice: uncollectible, and the past_due subscription canceled (ended now; its pending invoice items closed on an uncollectible final invoice, not charged) or unpaid as the merchant''s policy says; writes subscription.dunning_exhausted. The caller holds the locks.';

-- When a failed invoice is charged next, and which retry of the schedule
-- that is (retry_no; NULL for the final action's day): the first day of
-- the policy's retry_days after now, counted from the first failure; after
-- a final decline no retry, only the final action on the schedule's last
-- day.  next_at NULL: the final action is due now.  A day is 24 hours: a
-- calendar day would follow the TimeZone of the session that records the
-- failure (the worker's, a merchant's), 23 or 25 hours across a change of
-- daylight-saving time there, and a policy set again with the same days
-- from another zone moved every scheduled retry by an hour.
CREATE FUNCTION payments._next_dunning_attempt(p_first_failed_at timestamptz, p_days integer[],
	p_final boolean, p_now timestamptz, OUT next_at timestamptz, OUT retry_no integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT CASE WHEN p_final THEN
			nullif(greatest(p_first_failed_at + make_interval(hours => 24 * p_days[cardinality(p_days)]), p_now), p_now)
		ELSE (SELECT p_first_failed_at + make_interval(hours => 24 * d.day)
			FROM unnest(p_days) WITH ORDINALITY d(day, n)
			WHERE p_first_failed_at + make_interval(hours => 24 * d.day) > p_now ORDER BY d.n LIMIT 1) END,
		CASE WHEN NOT p_final THEN (SELECT d.n::integer
			FROM unnest(p_days) WITH ORDINALITY d(day, n)
			WHERE p_first_failed_at + make_interval(hours => 24 * d.day) > p_now ORDER BY d.n LIMIT 1) END
	$$;
COMMENT ON FUNCTION payments._next_dunning_attempt(timestamptz, integer[], boolean, timestamptz) IS
	'Internal: when a failed invoice is charged next under a dunning schedule (retry_days from its first failure, days of 24 hours) and which retry that is; after a final decline, only the final action on the last day; next_at NULL: the final action is due now.';

-- A charge of an invoice failed (p_payment_id; NULL: there was nothing to
-- charge): the failure is recorded (the first one starts the schedule) and
--   - a first invoice leaves its subscription incomplete (no retries: it
--     expires after payments._incomplete_expiry() unless a new card pays);
--   - any other makes the subscription past_due; a retryable decline is
--     tried again on the first day of the merchant's retry_days, counted
--     from the first failure in billing time, that is still ahead; a final
--     decline (_decline_is_final) is not retried, and the final action
--     waits for the schedule's last day (a new card is tried at once
--     meanwhile); with no day left the final action applies now.
-- A failure says nothing of another card: when the invoice now goes to
-- another usable method than the one the failed charge used, that one is
-- charged at once instead of the invoice waiting for the schedule
-- (invoice.retry_attempted):
--   - the charge found its stored method gone at the gateway
--     (payment_method_gone: the method is failed now, _payment_method_gone;
--     _subscription_method_gone made the subscription's own the customer's
--     default): the default, reason payment_method_gone; with none the
--     invoice waits as after any final decline;
--   - the subscription's method or the customer's default was changed
--     while the charge was in flight (_retry_open_invoice_now skips an
--     invoice whose charge is unanswered, and a subscription not yet in
--     dunning): the new one, reason payment_method_updated.  Without this a
--     decline waited for the next retry day, and a final one for the
--     schedule's last day, whose final action then ended the subscription
--     without the new card ever tried.
-- A card that becomes usable later is tried at once
-- (_payment_method_dunning_retry).
-- A failure of an older attempt than the invoice's latest, or of an
-- invoice no longer open, is only recorded.  Takes the subscription's lock,
-- then the invoice's.  Returns the invoice.
CREATE FUNCTION payments._invoice_payment_failed(p_merchant_id bigint, p_invoice_id bigint,
	p_payment_id bigint, p_code text, p_reason text)
	RETURNS payments.invoices
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	s payments.subscriptions;
	days integer[];
	final_ boolean := payments._decline_is_final(p_code);
	now_ timestamptz := payments._billing_now(p_merchant_id);
	next_ timestamptz;
	retry_no integer;
	in_dunning boolean;
	other payments.payment_methods;
	pid bigint;
BEGIN
	SELECT x.* INTO STRICT s FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id =
		(SELECT i.subscription_id FROM payments.invoices i
		 WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id)
	FOR UPDATE;
	SELECT * INTO STRICT inv FROM payments.invoices
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	FOR UPDATE;
	IF inv.status NOT IN ('open', 'uncollectible')
		OR (p_payment_id IS NOT NULL AND inv.payment_id IS DISTINCT FROM p_payment_id) THEN
		RETURN inv;
	END IF;
	UPDATE payments.invoices SET first_failed_at = coalesce(first_failed_at, now_),
		last_failure_code = p_code, last_failure_reason = p_reason, next_attempt_at = NULL
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	RETURNING * INTO inv;
	-- the schedule first, so that the event says whether it will be
	-- retried: only an open invoice of a subscription that can be in
	-- dunning is (not an incomplete subscription's first invoice, an ended
	-- subscription's, or one with no day left)
	in_dunning := inv.status = 'open' AND s.status IN ('trialing', 'active', 'past_due');
	days := (payments._dunning_policy(p_merchant_id)).retry_days;
	IF in_dunning THEN
		SELECT a.next_at, a.retry_no INTO next_, retry_no
		FROM payments._next_dunning_attempt(inv.first_failed_at, days, final_, now_) a;
	END IF;
	-- the one the invoice goes to now, if another than the one charged
	-- (never the same one twice): the method charged is gone, or another
	-- was chosen while the charge was in flight
	IF p_payment_id IS NOT NULL AND inv.status = 'open'
			AND s.status IN ('incomplete', 'trialing', 'active', 'past_due') THEN
		other := payments._invoice_payment_method(p_merchant_id, inv.customer_id, s.payment_method_id);
		IF other.payment_method_id = (SELECT p.payment_method_id FROM payments.payments p
				WHERE p.merchant_id = p_merchant_id AND p.payment_id = p_payment_id) THEN
			other := NULL;
		END IF;
	END IF;
	PERFORM payments._billing_event(p_merchant_id, 'invoice.payment_failed', p_payment_id,
		jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
			'kind', inv.kind, 'amount', inv.amount, 'payment_id', p_payment_id,
			'attempt_count', inv.attempt_count, 'failure_code', p_code, 'failure_reason', p_reason,
			'retryable', other.payment_method_id IS NOT NULL OR (NOT final_ AND next_ IS NOT NULL),
			'first_failed_at', payments._json_time(inv.first_failed_at)),
		inv.correlation_id);
	IF inv.status = 'open' AND s.status IN ('canceled', 'incomplete_expired') THEN
		-- an ended subscription has no dunning: its final invoice is not retried
		UPDATE payments.invoices SET status = 'uncollectible', closed_at = now_
		WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
		RETURNING * INTO inv;
		RETURN inv;
	END IF;
	IF in_dunning AND s.status <> 'past_due' THEN
		UPDATE payments.subscriptions SET status = 'past_due', next_renewal_at = NULL
		WHERE merchant_id = p_merchant_id AND subscription_id = s.subscription_id;
	END IF;
	IF other.payment_method_id IS NOT NULL THEN
		pid := payments._charge_invoice(p_merchant_id, p_invoice_id);
		IF pid IS NOT NULL THEN
			PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_attempted', pid,
				jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
					'payment_id', pid, 'attempt_count', inv.attempt_count + 1,
					'payment_method_id', other.payment_method_id,
					'reason', CASE WHEN p_code = 'payment_method_gone' THEN 'payment_method_gone'
						ELSE 'payment_method_updated' END),
				inv.correlation_id);
			SELECT * INTO inv FROM payments.invoices WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
			RETURN inv;
		END IF;
	END IF;
	IF NOT in_dunning THEN
		RETURN inv;
	END IF;

	IF next_ IS NULL THEN
		PERFORM payments._dunning_final_action(p_merchant_id, p_invoice_id);
		SELECT * INTO inv FROM payments.invoices WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
		RETURN inv;
	END IF;
	UPDATE payments.invoices SET next_attempt_at = next_
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	RETURNING * INTO inv;
	IF NOT final_ THEN
		PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_scheduled', p_payment_id,
			jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
				'next_attempt_at', payments._json_time(next_), 'retry', retry_no, 'retries', cardinality(days)),
			inv.correlation_id);
	END IF;
	RETURN inv;
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_failed(bigint, bigint, bigint, text, text) IS
	'Internal: records a failed charge of an invoice (writes invoice.payment_failed) and applies dunning: a first invoice leaves the subscription incomplete; otherwise the subscription becomes past_due and the invoice is retried on the merchant''s next retry day counted from the first failure (invoice.retry_scheduled), or, after a final decline, waits for the schedule''s last day; with no day left, the final action. When the invoice now goes to another usable method than the failed charge''s, that one is charged at once (invoice.retry_attempted): the customer''s default after the method charged was gone at the gateway (reason payment_method_gone), or the method chosen while the charge was in flight (the subscription''s new one or the customer''s new default; reason payment_method_updated). An open invoice of an ended subscription (its final invoice) is not retried: uncollectible. Locks the subscription, then the invoice.';

-- A charge of an invoice succeeded: the invoice is paid and its
-- subscription active again (_subscription_invoice_paid).  A payment that
-- succeeds for an invoice already paid or void (a late answer of an older
-- attempt) is money to give back: invoice.payment_after_close says so.
CREATE FUNCTION payments._invoice_payment_succeeded(p_merchant_id bigint, p_invoice_id bigint,
	p_payment_id bigint)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	inv payments.invoices;
	now_ timestamptz := payments._billing_now(p_merchant_id);
BEGIN
	PERFORM 1 FROM payments.subscriptions x
	WHERE x.merchant_id = p_merchant_id AND x.subscription_id =
		(SELECT i.subscription_id FROM payments.invoices i
		 WHERE i.merchant_id = p_merchant_id AND i.invoice_id = p_invoice_id)
	FOR UPDATE;
	SELECT * INTO STRICT inv FROM payments.invoices
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id
	FOR UPDATE;
	IF inv.status NOT IN ('open', 'uncollectible') THEN
		PERFORM payments._billing_event(p_merchant_id, 'invoice.payment_after_close', p_payment_id,
			jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
				'invoice_status', inv.status, 'payment_id', p_payment_id, 'paid_by', inv.payment_id),
			inv.correlation_id);
		RETURN;
	END IF;
	UPDATE payments.invoices SET status = 'paid', paid_at = now_, closed_at = now_,
		next_attempt_at = NULL, payment_id = p_payment_id
	WHERE merchant_id = p_merchant_id AND invoice_id = p_invoice_id;
	PERFORM payments._subscription_invoice_paid(p_merchant_id, inv.subscription_id);
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_succeeded(bigint, bigint, bigint) IS
	'Internal: a charge of an invoice succeeded: the invoice is paid and its subscription active again; a success for an invoice already closed writes invoice.payment_after_close (the money is to be refunded). Locks the subscription, then the invoice.';

-- Trigger on payments.payments (AFTER UPDATE OF status, charges of
-- invoices): the worker's record of a charge's outcome moves the invoice
-- and its subscription on.  succeeded -> paid; failed or canceled ->
-- dunning.  unknown (the worker resolves it) and in_review (held: the
-- worker learns the decision) wait; refunds of a paid invoice change
-- nothing here.
-- (plan_cache_mode: the worker records outcomes under a plan_cache_mode
-- of its own, which is not this trigger's to follow)
CREATE FUNCTION payments._invoice_payment_outcome() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET plan_cache_mode = auto
	AS $$
BEGIN
	IF OLD.status NOT IN ('pending', 'unknown', 'in_review') THEN
		RETURN NULL;
	END IF;
	IF NEW.status = 'succeeded' THEN
		PERFORM payments._invoice_payment_succeeded(NEW.merchant_id, NEW.invoice_id, NEW.payment_id);
	ELSIF NEW.status IN ('failed', 'canceled') THEN
		PERFORM payments._invoice_payment_failed(NEW.merchant_id, NEW.invoice_id, NEW.payment_id,
			coalesce(NEW.decline_code, NEW.status),
			coalesce(NEW.decline_reason, CASE NEW.status WHEN 'canceled' THEN 'The charge was canceled.'
				ELSE 'The charge failed.' END));
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._invoice_payment_outcome() IS
	'Trigger: applies the outcome of an invoice''s charge (succeeded: invoice paid, subscription active; failed or canceled: dunning); unknown and in_review wait.';

CREATE TRIGGER payments_invoice_outcome AFTER UPDATE OF status ON payments.payments
	FOR EACH ROW WHEN (NEW.invoice_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
	EXECUTE FUNCTION payments._invoice_payment_outcome();
COMMENT ON TRIGGER payments_invoice_outcome ON payments.payments IS
	'Billing: the outcome of an invoice''s charge moves the invoice and its subscription on (payments._invoice_payment_outcome).';

------------------------------------------------------------------------------
-- A new card during dunning is tried at once.
------------------------------------------------------------------------------

-- Charges now the open invoices of an incomplete, past-due or unpaid
-- subscription (an unpaid one's uncollectible ones too) that have no
-- charge in flight: after its payment method was changed, or the
-- customer's default became usable.  Takes the subscription's lock (the
-- caller may hold it), then each such invoice's, and only then asks
-- whether its charge is in flight: the worker records a charge's outcome
-- on the invoice, so in a REPEATABLE READ or SERIALIZABLE caller whose
-- snapshot still shows the charge in flight, an outcome recorded since
-- fails the lock (40001, to be retried) instead of the invoice being
-- skipped.  (Before, the invoice was picked by a read of that snapshot: it
-- was skipped as in flight, and the failure recorded meanwhile had
-- scheduled the next retry day with the old card; after a final decline,
-- dunning's final action then came without the new card ever tried.)  A
-- trialing or active subscription (one whose first failure the caller may
-- not see yet) is only locked: its failure, recorded after the caller's
-- COMMIT, charges the new card then (_invoice_payment_failed).  Returns
-- how many charges were started.
CREATE FUNCTION payments._retry_open_invoice_now(p_merchant_id bigint, p_subscription_id bigint)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	inv payments.invoices;
	pid bigint;
	n integer := 0;
BEGIN
	SELECT * INTO s FROM payments.subscriptions
	WHERE merchant_id = p_merchant_id AND subscription_id = p_subscription_id
	FOR UPDATE;
	IF NOT FOUND OR s.status NOT IN ('incomplete', 'past_due', 'unpaid') THEN
		RETURN 0;
	END IF;
	FOR inv IN
		SELECT i.* FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.subscription_id = p_subscription_id
			AND (i.status = 'open' OR (i.status = 'uncollectible' AND s.status = 'unpaid'))
		ORDER BY i.invoice_id
		FOR UPDATE OF i
	LOOP
		-- in flight, as locked
		CONTINUE WHEN EXISTS (SELECT 1 FROM payments.payments p
			WHERE p.merchant_id = inv.merchant_id AND p.payment_id = inv.payment_id
				AND p.status IN ('pending', 'unknown', 'in_review'));
		pid := payments._charge_invoice(p_merchant_id, inv.invoice_id);
		IF pid IS NOT NULL THEN
			n := n + 1;
			PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_attempted', pid,
				jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
					'payment_id', pid, 'attempt_count', inv.attempt_count + 1,
					'reason', 'payment_method_updated'),
				inv.correlation_id);
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._retry_open_invoice_now(bigint, bigint) IS
	'Internal: locks a subscription and charges at once its open invoices (an unpaid subscription''s uncollectible ones too) if it is incomplete, past_due or unpaid, each locked before it is checked to have no charge in flight (a REPEATABLE READ or SERIALIZABLE caller whose snapshot predates an outcome the worker recorded gets 40001), writing invoice.retry_attempted; called when its payment method changes (pay_update_subscription) or the customer''s default becomes usable. Returns the number of charges started.';

-- Trigger on payments.payment_methods: a card the customer just saved
-- (pending -> active), made the default, or that is active again after a
-- failed deletion (deleting -> active: a default stays the default) is
-- tried at once for every subscription of the customer in dunning that
-- would be charged to it.  Every running subscription that would be charged
-- to it is locked (_retry_open_invoice_now), a trialing or active one too:
-- the worker records a failed charge under that lock, so a failure of the
-- renewal's charge recorded at the same time either comes first (the
-- subscription, past_due as locked, is charged here; at REPEATABLE READ or
-- SERIALIZABLE a snapshot older than it gets 40001) or waits for COMMIT
-- and then charges this card (_invoice_payment_failed).  Before, this read
-- the subscriptions' statuses from the caller's snapshot, unlocked: a
-- renewal failing meanwhile was still active there and skipped, and the
-- worker had charged the old default, so the new one waited for the first
-- retry day (after a final decline, for the final action).
CREATE FUNCTION payments._payment_method_dunning_retry() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	sid bigint;
BEGIN
	FOR sid IN
		SELECT s.subscription_id FROM payments.subscriptions s
		WHERE s.merchant_id = NEW.merchant_id AND s.customer_id = NEW.customer_id
			AND s.status IN ('incomplete', 'trialing', 'active', 'past_due', 'unpaid')
			AND (payments._invoice_payment_method(s.merchant_id, s.customer_id, s.payment_method_id)).payment_method_id
				= NEW.payment_method_id
		ORDER BY s.subscription_id
	LOOP
		PERFORM payments._retry_open_invoice_now(NEW.merchant_id, sid);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._payment_method_dunning_retry() IS
	'Trigger: a payment method that became active (saved, or its deletion failed) or the customer''s default is charged at once for the customer''s incomplete, past_due and unpaid subscriptions that use it (payments._retry_open_invoice_now); its trialing and active ones are locked, so that a failure of their charge recorded meanwhile charges it too.';

CREATE TRIGGER payment_methods_dunning_retry AFTER UPDATE OF status, is_default ON payments.payment_methods
	FOR EACH ROW WHEN (NEW.status = 'active'
		AND (OLD.status IN ('pending', 'deleting') OR (NEW.is_default AND NOT OLD.is_default)))
	EXECUTE FUNCTION payments._payment_method_dunning_retry();
COMMENT ON TRIGGER payment_methods_dunning_retry ON payments.payment_methods IS
	'Billing: a card saved, made the default, or active again after a failed deletion during dunning is tried at once (payments._payment_method_dunning_retry).';

-- Trigger on payments.payment_methods: a subscription's own payment method
-- that is no longer there - failed because its profile is gone at the
-- gateway (_payment_methods_gone), or deleted (pay_delete_payment_method,
-- once the gateway has deleted it) - is no longer the subscription's: the
-- subscription goes to the customer's default at each charge (its
-- payment_method_id NULL), which is what its charges used anyway once the
-- method was not active (_invoice_payment_method), and a
-- subscription.updated event (reason payment_method_gone or
-- payment_method_deleted) says so.  Ended subscriptions keep the method
-- they were charged to.  A subscription in dunning whose open invoice has
-- no charge in flight is then charged at once to that default, as after a
-- change of its method (_retry_open_invoice_now; nothing without a usable
-- default).  The charge that found the method gone is still in flight
-- here (the trigger runs from the payment's BEFORE trigger): its own
-- invoice is charged again when its failure is recorded
-- (_invoice_payment_failed).
CREATE FUNCTION payments._subscription_method_gone() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	FOR s IN
		UPDATE payments.subscriptions x SET payment_method_id = NULL
		WHERE x.merchant_id = NEW.merchant_id AND x.customer_id = NEW.customer_id
			AND x.payment_method_id = NEW.payment_method_id
			AND x.status NOT IN ('canceled', 'incomplete_expired')
		RETURNING x.*
	LOOP
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
			'customer_id', s.customer_id, 'status', s.status, 'payment_method_id', NULL,
			'previous_payment_method_id', NEW.payment_method_id,
			'reason', CASE WHEN NEW.status = 'failed' THEN 'payment_method_gone' ELSE 'payment_method_deleted' END,
			'fields', jsonb_build_array('payment_method_id')), s.correlation_id);
		PERFORM payments._retry_open_invoice_now(s.merchant_id, s.subscription_id);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._subscription_method_gone() IS
	'Trigger: a payment method failed as gone at the gateway or deleted is no longer the payment method of the subscriptions that named it (not ended ones): they go to the customer''s default (payment_method_id NULL; a subscription.updated event with reason payment_method_gone or payment_method_deleted), and one in dunning is charged to it at once (payments._retry_open_invoice_now).';

CREATE TRIGGER payment_methods_subscription_gone AFTER UPDATE OF status ON payments.payment_methods
	FOR EACH ROW WHEN (OLD.status IN ('active', 'deleting') AND NEW.status IN ('failed', 'deleted'))
	EXECUTE FUNCTION payments._subscription_method_gone();
COMMENT ON TRIGGER payment_methods_subscription_gone ON payments.payment_methods IS
	'Billing: subscriptions whose payment method is gone at the gateway or deleted go to the customer''s default, and one in dunning is charged to it at once (payments._subscription_method_gone).';

------------------------------------------------------------------------------
-- The billing runs.  Each picks what is due by its merchant's billing clock
-- (_billing_now: the test clock where one is set), oldest first, at most
-- p_limit, locking with SKIP LOCKED: two runs at once (the worker's and a
-- pg_cron job's) take different rows, and what one has committed no longer
-- matches the other's re-check under the lock.  A run that dies midway
-- rolls back whole; the next one does its work again, and the unique key
-- of an invoice per period is the last guard against a second charge.
------------------------------------------------------------------------------

-- The latest billing time of any merchant: what is due by any clock is
-- due before it (the runs' index condition; exact per row after).
CREATE FUNCTION payments._billing_horizon(p_merchant_id bigint) RETURNS timestamptz
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT CASE
		WHEN p_merchant_id IS NOT NULL THEN payments._billing_now(p_merchant_id)
		WHEN current_setting('payments.test_clocks', true) = 'on'
			THEN greatest(now(), (SELECT max(c.frozen_at) FROM payments.billing_clocks c))
		ELSE now()
	END
	$$;
COMMENT ON FUNCTION payments._billing_horizon(bigint) IS
	'Internal: the billing time of the merchant, or (NULL) the latest billing time of any merchant: nothing is due after it.';

-- One step of the renewals for subscription s, due at now_ (the caller
-- holds its row lock and has checked that next_renewal_at has come and its
-- status is trialing, active or incomplete): the expiry of an incomplete
-- one, the cancel at period end, or the next period and its invoice
-- (p_background: a billing run's charge).  The billing run takes it for
-- every due subscription; a merchant's change of a subscription takes it
-- first (_apply_due_renewals), so that the change meets the period that
-- contains now whether or not the run has come yet.
CREATE FUNCTION payments._renew_subscription(s payments.subscriptions, now_ timestamptz,
	p_background boolean)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	idx integer;
	start_ timestamptz;
	end_ timestamptz;
BEGIN
	IF s.status = 'incomplete' THEN
		IF EXISTS (SELECT 1 FROM payments.invoices i JOIN payments.payments p
				ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id
			WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id
				AND i.status = 'open' AND p.status IN ('pending', 'unknown', 'in_review')) THEN
			UPDATE payments.subscriptions SET next_renewal_at = now_ + interval '1 minute'
			WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
			RETURN;
		END IF;
		UPDATE payments.subscriptions SET status = 'incomplete_expired', next_renewal_at = NULL,
			ended_at = now_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		UPDATE payments.invoices SET status = 'void', next_attempt_at = NULL, closed_at = now_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id AND status = 'open';
	ELSIF s.cancel_at_period_end THEN
		UPDATE payments.subscriptions SET status = 'canceled', next_renewal_at = NULL,
			canceled_at = coalesce(canceled_at, now_), ended_at = s.next_renewal_at
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		-- no next invoice: the pending prorations go on a final one
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end',
			true, p_background);
	ELSE
		idx := s.current_period_index + 1;
		start_ := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, idx);
		end_ := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, idx + 1);
		UPDATE payments.subscriptions SET current_period_index = idx, period_amount = NULL,
			current_period_start = start_, current_period_end = end_, next_renewal_at = end_
		WHERE merchant_id = s.merchant_id AND subscription_id = s.subscription_id;
		PERFORM payments._billing_event(s.merchant_id, 'subscription.renewed', NULL,
			jsonb_build_object('subscription_id', s.subscription_id, 'status', s.status,
				'trial_ended', s.status = 'trialing', 'period_index', idx,
				'current_period_start', payments._json_time(start_), 'current_period_end', payments._json_time(end_)),
			s.correlation_id);
		PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', idx, start_, end_,
			p_background => p_background);
	END IF;
END
$$;
COMMENT ON FUNCTION payments._renew_subscription(payments.subscriptions, timestamptz, boolean) IS
	'Internal: one renewal step of a due subscription (the caller holds its lock): an incomplete one past its deadline expires (its first invoice void; a minute later while a charge is in flight), a cancel_at_period_end one is canceled (its pending invoice items charged on a final invoice), a trialing or active one moves to its next period, whose renewal invoice is issued and charged (p_background: a billing run''s charge).';

-- Every renewal step due for subscription s by now_ (the caller holds its
-- row lock), as the billing run would have taken them: a merchant's change
-- (of its price, quantity or plan, or of a cancel at period end) made
-- after its period ended but before the run renewed it met a period that
-- had ended, so it depended on whether the run had come yet: a change
-- without proration set the terms of the period already running, a cancel
-- at period end set then ended it at the end of the period before, an
-- undone cancel renewed a subscription that had ended.  Returns the row
-- as it is now.
CREATE FUNCTION payments._apply_due_renewals(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	last_due timestamptz;
BEGIN
	WHILE s.next_renewal_at <= now_ AND s.status IN ('trialing', 'active', 'incomplete')
			AND s.next_renewal_at IS DISTINCT FROM last_due LOOP
		last_due := s.next_renewal_at;
		PERFORM payments._renew_subscription(s, now_, false);
		SELECT * INTO STRICT s FROM payments.subscriptions x
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	END LOOP;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._apply_due_renewals(payments.subscriptions, timestamptz) IS
	'Internal: takes the renewal steps due for a subscription by now_ (payments._renew_subscription), as the billing run would have, before a merchant''s change of it; the caller holds its row lock. Returns the row as it is then.';

-- Subscription s as _apply_due_renewals would leave it at now_, changing
-- nothing (pay_preview_subscription_change): a trialing or active one whose
-- period has ended is in the period containing now (each period between
-- invoiced at its terms then, period_amount NULL), or canceled when it was
-- set to cancel at its period's end.  (A renewal whose charge fails at once,
-- for want of a payment method, would leave it past_due: the change is then
-- refused, which the preview does not foresee.)
CREATE FUNCTION payments._subscription_as_renewed(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	IF s.next_renewal_at IS NULL OR s.next_renewal_at > now_ OR s.status NOT IN ('trialing', 'active') THEN
		RETURN s;
	END IF;
	IF s.cancel_at_period_end THEN
		s.status := 'canceled';
		RETURN s;
	END IF;
	n := greatest(s.current_period_index + 1,
		payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_));
	s.current_period_index := n;
	s.current_period_start := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
	s.current_period_end := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
	s.next_renewal_at := s.current_period_end;
	s.period_amount := NULL;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._subscription_as_renewed(payments.subscriptions, timestamptz) IS
	'Internal: a subscription as the renewal steps due by now_ would leave it (payments._apply_due_renewals), changing nothing: in the period containing now, or canceled when set to cancel at its period''s end. For pay_preview_subscription_change.';

-- Renewals: at next_renewal_at, for each subscription
--   - incomplete: its first invoice was not paid in time -> incomplete_expired
--     (the invoice void); while a charge is still in flight, a minute later;
--   - cancel_at_period_end: -> canceled at the period's end;
--   - trialing (the trial ends) or active: the next period (index + 1, its
--     bounds from the anchor) becomes current and its 'renewal' invoice is
--     issued and charged (_issue_invoice).  A trialing subscription becomes
--     active when that invoice is paid, past_due when it is not.
-- One period per subscription and run: a subscription behind by several
-- periods (the runs stopped for a while, a test clock moved weeks past a
-- daily or weekly plan's periods) is brought up to date by the next runs,
-- each period invoiced in a transaction of its own and in order.  A run
-- that leaves a subscription still due asks for the next run at its COMMIT
-- (the billing process's, _wake_billing_at_commit), not an interval later:
-- before, each period behind waited payments.billing_interval (ten daily
-- periods took 90 s to catch up, not the second a clock move takes).
-- Returns how many subscriptions were handled.
CREATE FUNCTION payments._run_renewals(p_merchant_id bigint, p_limit integer) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
	horizon timestamptz := payments._billing_horizon(p_merchant_id);
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	now_ timestamptz;
	n integer := 0;
	behind boolean := false;
BEGIN
	FOR s IN
		SELECT x.* FROM payments.subscriptions x
		WHERE x.next_renewal_at <= horizon
			AND (p_merchant_id IS NULL OR x.merchant_id = p_merchant_id)
			AND x.status IN ('trialing', 'active', 'incomplete')
			-- each merchant's own clock (CASE: never evaluated without test clocks)
			AND CASE WHEN clocks AND p_merchant_id IS NULL
				THEN x.next_renewal_at <= payments._billing_now(x.merchant_id) ELSE true END
		ORDER BY x.next_renewal_at
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED
	LOOP
		-- the row as locked: another run may have renewed it since
		now_ := CASE WHEN clocks THEN payments._billing_now(s.merchant_id) ELSE now() END;
		CONTINUE WHEN s.next_renewal_at IS NULL OR s.next_renewal_at > now_
			OR s.status NOT IN ('trialing', 'active', 'incomplete');
		n := n + 1;
		PERFORM payments._renew_subscription(s, now_, true);
		-- its next period due too: the next run at COMMIT
		IF NOT behind AND EXISTS (SELECT 1 FROM payments.subscriptions x
				WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
					AND x.next_renewal_at <= now_ AND x.status IN ('trialing', 'active', 'incomplete')) THEN
			behind := true;
			PERFORM payments._wake_billing_at_commit();
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._run_renewals(bigint, integer) IS
	'Billing run (the billing process, pay_run_renewals): for at most p_limit subscriptions due by their merchant''s billing clock (one merchant, or NULL: all), oldest first, locked with SKIP LOCKED: incomplete ones past their deadline expire (first invoice void), cancel_at_period_end ones are canceled (their pending invoice items charged on a final invoice), trialing and active ones move to their next period and its renewal invoice is issued and charged; one period per subscription and run, and a run that leaves one still due wakes the billing process at COMMIT for the next. Returns how many subscriptions it handled.';

-- Dunning: at next_attempt_at, for each open invoice: after a final
-- decline the final action (its schedule's last day has come); else one
-- more charge (no usable payment method is a failed charge).  The
-- subscription is locked first (SKIP LOCKED), then the invoice, whose
-- next_attempt_at is checked again under the lock.  An invoice whose
-- subscription has ended meanwhile stops dunning (uncollectible).
-- Returns how many invoices were handled.
CREATE FUNCTION payments._run_dunning(p_merchant_id bigint, p_limit integer) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c record;
	s payments.subscriptions;
	inv payments.invoices;
	horizon timestamptz := payments._billing_horizon(p_merchant_id);
	clocks boolean := current_setting('payments.test_clocks', true) = 'on';
	now_ timestamptz;
	pid bigint;
	n integer := 0;
BEGIN
	FOR c IN
		SELECT i.merchant_id, i.invoice_id, i.subscription_id FROM payments.invoices i
		WHERE i.status = 'open' AND i.next_attempt_at <= horizon
			AND (p_merchant_id IS NULL OR i.merchant_id = p_merchant_id)
			AND CASE WHEN clocks AND p_merchant_id IS NULL
				THEN i.next_attempt_at <= payments._billing_now(i.merchant_id) ELSE true END
		ORDER BY i.next_attempt_at
		LIMIT p_limit
	LOOP
		SELECT * INTO s FROM payments.subscriptions
		WHERE merchant_id = c.merchant_id AND subscription_id = c.subscription_id
		FOR UPDATE SKIP LOCKED;
		CONTINUE WHEN NOT FOUND;
		SELECT * INTO inv FROM payments.invoices
		WHERE merchant_id = c.merchant_id AND invoice_id = c.invoice_id
		FOR UPDATE;
		now_ := CASE WHEN clocks THEN payments._billing_now(c.merchant_id) ELSE now() END;
		CONTINUE WHEN inv.status <> 'open' OR inv.next_attempt_at IS NULL OR inv.next_attempt_at > now_;
		n := n + 1;
		IF s.status NOT IN ('trialing', 'active', 'past_due') THEN
			UPDATE payments.invoices SET status = 'uncollectible', next_attempt_at = NULL, closed_at = now_
			WHERE merchant_id = inv.merchant_id AND invoice_id = inv.invoice_id;
		ELSIF payments._decline_is_final(inv.last_failure_code) THEN
			PERFORM payments._dunning_final_action(inv.merchant_id, inv.invoice_id);
		ELSE
			pid := payments._charge_invoice(inv.merchant_id, inv.invoice_id, p_background => true);
			IF pid IS NULL THEN
				PERFORM payments._invoice_payment_failed(inv.merchant_id, inv.invoice_id, NULL,
					'no_payment_method', 'The customer has no usable payment method.');
			ELSE
				PERFORM payments._billing_event(inv.merchant_id, 'invoice.retry_attempted', pid,
					jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
						'payment_id', pid, 'attempt_count', inv.attempt_count + 1, 'reason', 'scheduled'),
					inv.correlation_id);
			END IF;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._run_dunning(bigint, integer) IS
	'Billing run (the billing process, pay_run_dunning): for at most p_limit open invoices whose next attempt is due by their merchant''s billing clock (one merchant, or NULL: all), oldest first, subscriptions locked with SKIP LOCKED: one more charge (invoice.retry_attempted), or after a final decline the final action. Returns how many invoices it handled.';

-- A new dunning policy applies to the retries not yet made: each open
-- invoice of the merchant waiting for one (a past_due subscription's) is
-- scheduled again from its first failure by the new retry_days, as
-- _invoice_payment_failed would have (after a final decline: the last
-- day); with no day left the final action applies now (the new one).  Locks
-- each subscription, then its invoice.  Returns how many invoices changed.
CREATE FUNCTION payments._reschedule_dunning(p_merchant_id bigint) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c record;
	s payments.subscriptions;
	inv payments.invoices;
	days integer[] := (payments._dunning_policy(p_merchant_id)).retry_days;
	now_ timestamptz := payments._billing_now(p_merchant_id);
	final_ boolean;
	next_ timestamptz;
	retry_no integer;
	n integer := 0;
BEGIN
	-- Every open invoice is locked, also one whose charge is in flight (no
	-- retry scheduled yet): a decline recorded meanwhile read the policy
	-- before this change committed, and scheduled the old day after this
	-- loop had passed it by.  Locked, the recording waits for this change
	-- and reads the new policy, or this loop waits for the recording and
	-- reschedules what it wrote.
	FOR c IN
		SELECT i.invoice_id, i.subscription_id FROM payments.invoices i
		WHERE i.merchant_id = p_merchant_id AND i.status = 'open'
		ORDER BY i.invoice_id
	LOOP
		SELECT * INTO s FROM payments.subscriptions
		WHERE merchant_id = p_merchant_id AND subscription_id = c.subscription_id
		FOR UPDATE;
		SELECT * INTO inv FROM payments.invoices
		WHERE merchant_id = p_merchant_id AND invoice_id = c.invoice_id
		FOR UPDATE;
		CONTINUE WHEN inv.status <> 'open' OR inv.next_attempt_at IS NULL OR inv.first_failed_at IS NULL
			OR s.status <> 'past_due';
		final_ := payments._decline_is_final(inv.last_failure_code);
		SELECT a.next_at, a.retry_no INTO next_, retry_no
		FROM payments._next_dunning_attempt(inv.first_failed_at, days, final_, now_) a;
		IF next_ IS NULL THEN
			PERFORM payments._dunning_final_action(p_merchant_id, inv.invoice_id);
			n := n + 1;
		ELSIF next_ <> inv.next_attempt_at THEN
			UPDATE payments.invoices SET next_attempt_at = next_
			WHERE merchant_id = p_merchant_id AND invoice_id = inv.invoice_id;
			n := n + 1;
			IF NOT final_ THEN
				PERFORM payments._billing_event(p_merchant_id, 'invoice.retry_scheduled', inv.payment_id,
					jsonb_build_object('invoice_id', inv.invoice_id, 'subscription_id', inv.subscription_id,
						'next_attempt_at', payments._json_time(next_), 'retry', retry_no, 'retries', cardinality(days),
						'reason', 'policy_changed'),
					inv.correlation_id);
			END IF;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._reschedule_dunning(bigint) IS
	'Internal: applies the merchant''s (new) dunning policy to the retries not yet made: each open invoice waiting for a retry is scheduled again from its first failure (invoice.retry_scheduled, reason policy_changed), or given the final action now when no retry day is left. Returns how many invoices changed.';

------------------------------------------------------------------------------
-- The API: billing runs, the dunning policy, invoices.
------------------------------------------------------------------------------

-- The merchants a billing run acts for: the caller's own, or all of them
-- for the extension owner or a superuser that names none (pg_cron jobs);
-- and its max_count checked.
CREATE FUNCTION payments._billing_run_scope(p_max_count integer) RETURNS bigint
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
BEGIN
	IF p_max_count IS NULL OR p_max_count NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'max_count must be between 1 and 100000'
			USING ERRCODE = '22023',
				DETAIL = format('The max_count given was %s.', coalesce(p_max_count::text, 'NULL')),
				HINT = 'Call again for more: each call handles at most max_count in one transaction.';
	END IF;
	IF (SELECT i.source FROM payments.pay_current_identity() i) = 'default' THEN
		RETURN NULL;
	END IF;
	RETURN m;
END
$$;
COMMENT ON FUNCTION payments._billing_run_scope(integer) IS
	'Internal: the merchant a billing run acts for (pay_current_merchant()), or NULL (all merchants) for the extension owner or a superuser that names none; raises 22023 unless max_count is between 1 and 100000.';

CREATE FUNCTION payments.pay_run_renewals(max_count integer DEFAULT 1000) RETURNS integer
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT payments._run_renewals(payments._billing_run_scope(max_count), max_count) $$;
COMMENT ON FUNCTION payments.pay_run_renewals(integer) IS
	'Runs the renewals that are due now (by the billing clock): at most max_count (1-100000, default 1000) subscriptions of the current merchant, or of every merchant for the extension owner or a superuser naming none (pg_cron); expiries of incomplete subscriptions, cancellations at period end, next periods and their invoices, charged through the worker. Safe to run at the same time as the worker or another run. Returns how many subscriptions it handled.';

CREATE FUNCTION payments.pay_run_dunning(max_count integer DEFAULT 1000) RETURNS integer
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT payments._run_dunning(payments._billing_run_scope(max_count), max_count) $$;
COMMENT ON FUNCTION payments.pay_run_dunning(integer) IS
	'Runs the dunning retries that are due now (by the billing clock): at most max_count (1-100000, default 1000) open invoices of the current merchant, or of every merchant for the extension owner or a superuser naming none (pg_cron); each is charged again, or given its final action after a final decline. Safe to run at the same time as the worker or another run. Returns how many invoices it handled.';

CREATE FUNCTION payments.pay_get_dunning_policy() RETURNS payments.dunning_policies
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._dunning_policy(payments.pay_current_merchant())
	$$;
COMMENT ON FUNCTION payments.pay_get_dunning_policy() IS
	'The current merchant''s dunning policy: the days after a charge''s first failure on which it is retried, and the final action (canceled or unpaid); the defaults (1, 3, 5, 7; canceled; updated_at NULL) when it has set none.';

CREATE FUNCTION payments.pay_set_dunning_policy(retry_days integer[] DEFAULT NULL, final_action text DEFAULT NULL)
	RETURNS payments.dunning_policies
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cur payments.dunning_policies := payments._dunning_policy(m);
	days integer[] := coalesce(pay_set_dunning_policy.retry_days, cur.retry_days);
	action_ text := coalesce(pay_set_dunning_policy.final_action, cur.final_action);
	r payments.dunning_policies;
BEGIN
	IF array_ndims(days) > 1 OR cardinality(days) > 10 OR array_position(days, NULL) IS NOT NULL
		OR EXISTS (SELECT 1 FROM unnest(days) d WHERE d NOT BETWEEN 1 AND 366)
		OR days IS DISTINCT FROM ARRAY(SELECT DISTINCT d FROM unnest(days) d ORDER BY d) THEN
		RAISE EXCEPTION 'retry_days must be at most 10 increasing days between 1 and 366'
			USING ERRCODE = '22023',
				DETAIL = format('The retry_days given were %s.', days),
				HINT = 'Days are counted from the first failed charge, e.g. ''{1,3,5,7}''; ''{}'' applies the final action at the first failure.';
	END IF;
	IF action_ NOT IN ('canceled', 'unpaid') THEN
		RAISE EXCEPTION 'final_action must be canceled or unpaid'
			USING ERRCODE = '22023', DETAIL = CASE WHEN action_ IS NULL THEN 'No final_action was given.'
				ELSE 'The final_action given is not quoted.' END;
	END IF;
	INSERT INTO payments.dunning_policies AS d (merchant_id, retry_days, final_action)
	VALUES (m, days, action_)
	ON CONFLICT (merchant_id) DO UPDATE SET retry_days = EXCLUDED.retry_days,
		final_action = EXCLUDED.final_action, updated_at = now()
	RETURNING d.* INTO r;
	-- the retries already scheduled follow the new policy too
	PERFORM payments._reschedule_dunning(m);
	RETURN r;
END
$$;
COMMENT ON FUNCTION payments.pay_set_dunning_policy(integer[], text) IS
	'Sets the current merchant''s dunning policy (NULL: that part unchanged): retry_days, at most 10 increasing days (1-366) after a charge''s first failure on which it is tried again (''{}'': none), and final_action after the last one fails, canceled or unpaid. Applies to failures from now on and to retries not yet made: an invoice already waiting for a retry is scheduled again from its first failure by the new days (invoice.retry_scheduled, reason policy_changed), or given the (new) final action at once when no day is left. Returns the policy.';

CREATE FUNCTION payments.pay_get_invoice(invoice_id bigint) RETURNS payments.invoices
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	r payments.invoices;
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF pay_get_invoice.invoice_id IS NULL THEN
		RAISE EXCEPTION 'invoice_id is required' USING ERRCODE = '22004';
	END IF;
	SELECT * INTO r FROM payments.invoices i
	WHERE i.merchant_id = payments.pay_current_merchant() AND i.invoice_id = pay_get_invoice.invoice_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invoice % not found', pay_get_invoice.invoice_id
			USING ERRCODE = 'PT404', HINT = 'Invoice ids are per merchant; check pay_current_merchant().';
	END IF;
	RETURN r;
END
$$;
COMMENT ON FUNCTION payments.pay_get_invoice(bigint) IS
	'An invoice of the current merchant: lines, amount, status, charge attempts and the next dunning retry; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_invoices(
	subscription_id bigint DEFAULT NULL,
	status text DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.invoices
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last invoice_id of this one.';
	END IF;
	IF pay_list_invoices.status IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.status_transitions t
			WHERE t.entity = 'invoice' AND pay_list_invoices.status IN (t.from_status, t.to_status)) THEN
		RAISE EXCEPTION 'unknown invoice status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.', HINT = 'An invoice status is one of open, paid, uncollectible, void.';
	END IF;
	IF pay_list_invoices.subscription_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.subscriptions s
			WHERE s.merchant_id = m AND s.subscription_id = pay_list_invoices.subscription_id) THEN
		RAISE EXCEPTION 'subscription % not found', pay_list_invoices.subscription_id
			USING ERRCODE = 'PT404', HINT = 'Subscription ids are per merchant; check pay_current_merchant().';
	END IF;
	IF after IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.invoices x
			WHERE x.merchant_id = m AND x.invoice_id = pay_list_invoices.after) THEN
		RAISE EXCEPTION 'the cursor invoice % is not an invoice of this merchant', after
			USING ERRCODE = '22023', HINT = 'Pass as after the last invoice_id of the page before.';
	END IF;
	RETURN QUERY
	SELECT i.* FROM payments.invoices i
	WHERE i.merchant_id = m
		AND (pay_list_invoices.subscription_id IS NULL OR i.subscription_id = pay_list_invoices.subscription_id)
		AND (pay_list_invoices.status IS NULL OR i.status = pay_list_invoices.status)
		AND (after IS NULL OR i.invoice_id < after)
	ORDER BY i.invoice_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_invoices(bigint, text, bigint, integer) IS
	'The current merchant''s invoices, newest first (by invoice_id), at most page_size (1-500, default 50) per call; filters subscription_id (PT404 when not the merchant''s) and status (open, paid, uncollectible, void). Keyset pagination: pass as after the last invoice_id of the previous page (22023 when it is not an invoice of the merchant).';
