-- Many subscriptions at once, set-based (tests and benchmarks of the
-- billing runs): :n customers of merchant :merchant, each with a stored
-- card that is a copy of payment method :pm (the same customer and payment
-- profile at the gateway, so every charge is a real profile charge), an
-- active monthly subscription at :'amount' whose period 0 ends at the first
-- anchor period after :'due' minus a month, and its 'first' invoice paid.
-- Their renewals fall due once the merchant's billing clock passes :'due'.
-- Run as a superuser:
--   psql -v merchant=M -v pm=PM -v n=N -v amount='9.99 USD' -v due='2027-01-01 00:00+00' -f due_subscriptions.sql
\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE due_tpl ON COMMIT DROP AS
	SELECT m.*, (:'due'::timestamptz AT TIME ZONE 'UTC') - interval '1 month' AS anchor
	FROM payments.payment_methods m
	WHERE m.merchant_id = :merchant AND m.payment_method_id = :pm AND m.status = 'active';
DO $$
BEGIN
	IF (SELECT count(*) FROM due_tpl) <> 1 THEN
		RAISE EXCEPTION 'the template is not an active stored payment method of the merchant';
	END IF;
END
$$;
WITH c AS (
	INSERT INTO payments.customers (merchant_id, email, customer_profile_id, correlation_id)
	SELECT :merchant, format('due-%s-%s@example.com', txid_current(), g), t.customer_profile_id, 'due-subscriptions'
	FROM due_tpl t, generate_series(1, :n) g
	RETURNING customer_id
), m AS (
	INSERT INTO payments.payment_methods (merchant_id, customer_id, status, source, validation_mode,
		is_default, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,
		customer_profile_id, payment_profile_id, network_trans_id, correlation_id)
	SELECT :merchant, c.customer_id, 'active', t.source, t.validation_mode, true, t.card_brand,
		t.card_last4, t.card_exp_month, t.card_exp_year, t.card_fingerprint, t.customer_profile_id,
		t.payment_profile_id, t.network_trans_id, 'due-subscriptions'
	FROM c, due_tpl t
	RETURNING customer_id, payment_method_id
), s AS (
	INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit,
		interval_count, payment_method_id, billing_anchor, current_period_index, current_period_start,
		current_period_end, next_renewal_at, correlation_id)
	SELECT :merchant, m.customer_id, 'active', :'amount', 'month', 1, m.payment_method_id, t.anchor, 0,
		payments._period_start(t.anchor, 'UTC', 'month', 1, 0),
		payments._period_start(t.anchor, 'UTC', 'month', 1, 1),
		payments._period_start(t.anchor, 'UTC', 'month', 1, 1), 'due-subscriptions'
	FROM m, due_tpl t
	RETURNING subscription_id, customer_id, current_period_start, current_period_end, unit_amount
)
INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, status, period_index,
	period_start, period_end, amount, lines, paid_at, closed_at, correlation_id)
SELECT :merchant, s.subscription_id, s.customer_id, 'first', 'paid', 0, s.current_period_start,
	s.current_period_end, s.unit_amount, '[]', s.current_period_start, s.current_period_start, 'due-subscriptions'
FROM s;
COMMIT;
ANALYZE payments.subscriptions;
ANALYZE payments.invoices;
