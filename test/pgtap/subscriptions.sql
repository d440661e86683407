-- Plans and subscriptions through the SQL API: every allowed and refused
-- status transition of subscriptions and invoices (with its event and audit
-- row), calendar periods (month ends, 29 February, weeks, days, years, a
-- time zone across daylight-saving changes), trials, the first invoice,
-- cancel now and at period end, pause and resume, changes of plan, price and
-- quantity with each proration choice and exact amounts, previews,
-- idempotency, bad input, merchant isolation, export and erasure.
-- Billing time comes from each merchant's test clock (payments.test_clocks
-- is on in the test cluster); each scenario has its own merchant, so its own
-- clock, set in 2095 and later (a test clock never goes back from now()).
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SET LOCAL TimeZone = 'UTC';
SELECT plan(283);

CREATE TEMP TABLE ids (name text PRIMARY KEY, id bigint NOT NULL);
CREATE FUNCTION pg_temp.id(n text) RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT id FROM ids WHERE name = n $$;
CREATE FUNCTION pg_temp.keep(n text, v bigint) RETURNS bigint LANGUAGE sql AS
	$$ INSERT INTO ids VALUES (n, v) ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id RETURNING id $$;
CREATE FUNCTION pg_temp.act_as(merchant bigint) RETURNS void LANGUAGE sql AS
	$$ SELECT set_config('payments.merchant_id', merchant::text, true) $$;
-- a merchant of its own (own test clock), acted for from now on
CREATE FUNCTION pg_temp.new_merchant(n text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	m bigint;
BEGIN
	INSERT INTO payments.merchants (name) VALUES ('subs-' || n) RETURNING merchant_id INTO m;
	PERFORM pg_temp.keep(n, m);
	PERFORM pg_temp.act_as(m);
	RETURN m;
END
$$;
CREATE FUNCTION pg_temp.clock(t timestamptz) RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT payments.pay_set_test_clock(t) $$;
-- a customer with an active stored card (the worker's answer is stood in
-- for by the status change it makes)
CREATE FUNCTION pg_temp.customer_with_card(n text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
BEGIN
	SELECT customer_id INTO c FROM payments.pay_create_customer(email => n || '@example.com', name => 'Person ' || n);
	PERFORM pg_temp.keep(n, c);
	PERFORM pg_temp.keep(n || '-card', pg_temp.add_card(c));
	RETURN c;
END
$$;
CREATE FUNCTION pg_temp.add_card(c bigint, make_default boolean DEFAULT true) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	pm bigint;
BEGIN
	SELECT payment_method_id INTO pm FROM payments.pay_save_payment_method(customer_id => c,
		card => payments.pay_card('4111111111111111', 12, extract(year FROM now())::int + 3, '123'),
		validation_mode => 'none', make_default => make_default);
	UPDATE payments.payment_methods SET status = 'active', customer_profile_id = '500' || c,
		payment_profile_id = '700' || pm
	WHERE merchant_id = payments.pay_current_merchant() AND payment_method_id = pm;
	RETURN pm;
END
$$;
-- the subscription's open invoices paid: their pending charges succeed (the
-- billing side applies that outcome when it is there; otherwise it is
-- applied here as it would be: invoice paid, subscription active)
CREATE FUNCTION pg_temp.pay_open_invoices(sid bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
BEGIN
	UPDATE payments.payments p SET status = 'succeeded', amount_captured = p.amount, gateway_trans_id = '6' || p.payment_id
	FROM payments.invoices i
	WHERE i.merchant_id = m AND i.subscription_id = sid AND i.status = 'open'
		AND p.merchant_id = m AND p.payment_id = i.payment_id AND p.status = 'pending';
	UPDATE payments.invoices i SET status = 'paid', paid_at = now(), closed_at = now()
	WHERE i.merchant_id = m AND i.subscription_id = sid AND i.status = 'open';
	UPDATE payments.subscriptions s SET status = 'active'
	WHERE s.merchant_id = m AND s.subscription_id = sid AND s.status <> 'active';
END
$$;
CREATE FUNCTION pg_temp.sub(sid bigint) RETURNS payments.subscriptions LANGUAGE sql AS
	$$ SELECT * FROM payments.subscriptions WHERE merchant_id = payments.pay_current_merchant() AND subscription_id = sid $$;

------------------------------------------------------------------------------
-- 1. Plans
------------------------------------------------------------------------------
SELECT pg_temp.new_merchant('a') \gset _
SELECT pg_temp.keep('plan', plan_id) FROM pay_create_plan(name => 'Pro', amount => '30.00 USD',
	metadata => '{"tier": "pro"}', idempotency_key => 'plan-1') \gset _
SELECT is((SELECT concat_ws('|', name, amount, interval_unit, interval_count, trial_days, active, metadata ->> 'tier')
	FROM pay_get_plan(pg_temp.id('plan'))), 'Pro|30.00 USD|month|1|0|t|pro', 'pay_create_plan records a monthly plan');
SELECT is((SELECT plan_id FROM pay_create_plan(name => 'Pro', amount => '30.00 USD', metadata => '{"tier": "pro"}',
	idempotency_key => 'plan-1')), pg_temp.id('plan'), 'the same idempotency key and parameters return the same plan');
SELECT throws_ok($$SELECT pay_create_plan(name => 'Pro', amount => '31.00 USD', idempotency_key => 'plan-1')$$,
	'PT409', NULL, 'the same key with other parameters is a conflict (PT409)');
SELECT is((SELECT count(*)::int FROM payments.events WHERE merchant_id = pg_temp.id('a') AND event_type = 'plan.created'), 1,
	'one plan.created event');
SELECT throws_ok($$SELECT pay_create_plan(name => 'Free', amount => '0.00 USD')$$, '22Y23', NULL, 'a plan''s amount must be positive');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => NULL)$$, '22004', NULL, 'a plan needs an amount');
SELECT throws_ok($$SELECT pay_create_plan(name => '', amount => '1.00 USD')$$, '22023', NULL, 'a plan needs a name');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => '1.00 USD', interval_unit => 'fortnight')$$, '22023',
	'interval_unit must be day, week, month or year', 'an unknown interval unit is refused');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => '1.00 USD', interval_count => 0)$$, '22023', NULL,
	'an interval count of 0 is refused');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => '1.00 USD', trial_days => -1)$$, '22023', NULL,
	'negative trial days are refused');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => '1.00 USD', metadata => '[1]')$$, '22023', NULL,
	'metadata must be an object');
SELECT throws_ok($$SELECT pay_create_plan(name => 'X', amount => '99999999999999.99 USD')$$, '22Y26', NULL,
	'an amount longer than the gateway takes is refused');

SELECT is((SELECT concat_ws('|', name, active, metadata ->> 'tier', amount) FROM pay_update_plan(pg_temp.id('plan'),
	name => 'Pro 2', metadata => '{"tier": "gold"}')), 'Pro 2|t|gold|30.00 USD', 'pay_update_plan changes name and metadata');
SELECT throws_ok(format('SELECT pay_update_plan(%s, amount => ''40.00 USD'')', pg_temp.id('plan')), '22023',
	'the amount and interval of a plan never change', 'a plan''s amount cannot change');
SELECT throws_ok(format('SELECT pay_update_plan(%s, interval_unit => ''year'')', pg_temp.id('plan')), '22023',
	'the amount and interval of a plan never change', 'nor its interval');
SELECT is((SELECT data -> 'fields' FROM payments.events WHERE merchant_id = pg_temp.id('a') AND event_type = 'plan.updated'
	ORDER BY event_id DESC LIMIT 1), '["name", "metadata"]'::jsonb, 'plan.updated names the changed fields');
SELECT throws_ok($$SELECT pay_get_plan(-1)$$, 'PT404', NULL, 'an unknown plan is PT404');

SELECT pg_temp.keep('plan-yearly', plan_id) FROM pay_create_plan(name => 'Yearly', amount => '300.00 USD', interval_unit => 'year') \gset _
SELECT pg_temp.keep('plan-eur', plan_id) FROM pay_create_plan(name => 'Euro', amount => '30.00 EUR') \gset _
SELECT pg_temp.keep('plan-trial', plan_id) FROM pay_create_plan(name => 'Trial', amount => '10.00 USD', trial_days => 14) \gset _
SELECT pg_temp.keep('plan-big', plan_id) FROM pay_create_plan(name => 'Big', amount => '45.00 USD') \gset _
SELECT pg_temp.keep('plan-old', plan_id) FROM pay_create_plan(name => 'Old', amount => '5.00 USD') \gset _
SELECT is((SELECT active FROM pay_update_plan(pg_temp.id('plan-old'), active => false)), false, 'a plan is made inactive');
SELECT is((SELECT count(*)::int FROM pay_list_plans()), 6, 'pay_list_plans lists every plan');
SELECT is((SELECT count(*)::int FROM pay_list_plans(active => false)), 1, 'and filters inactive ones');
CREATE TEMP TABLE plan_pages AS SELECT 1 AS page, array_agg(plan_id) AS ids FROM pay_list_plans(page_size => 4);
INSERT INTO plan_pages SELECT 2, array_agg(plan_id) FROM pay_list_plans(page_size => 4,
	after => (SELECT ids[4] FROM plan_pages WHERE page = 1));
SELECT is((SELECT count(DISTINCT x)::int FROM plan_pages, unnest(ids) x), 6, 'two keyset pages visit the 6 plans once each');
SELECT throws_ok($$SELECT pay_list_plans(page_size => 501)$$, '22023', NULL, 'page_size is bounded');
SELECT throws_ok($$SELECT pay_list_plans(after => -5)$$, '22023', NULL, 'an unknown cursor is refused');

------------------------------------------------------------------------------
-- 2. Creating subscriptions: first invoice, trials, bad input
------------------------------------------------------------------------------
SELECT pg_temp.clock('2095-04-01 00:00+00') \gset _
SELECT pg_temp.customer_with_card('ada') \gset _
SELECT pg_temp.keep('s1', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('ada'),
	plan_id => pg_temp.id('plan'), metadata => '{"seat": "ada"}', idempotency_key => 'sub-1') \gset _
SELECT is((SELECT concat_ws('|', status, unit_amount, quantity, interval_unit, current_period_index,
	current_period_start, current_period_end, next_renewal_at, billing_anchor, time_zone)
	FROM pg_temp.sub(pg_temp.id('s1'))),
	'incomplete|30.00 USD|1|month|0|2095-04-01 00:00:00+00|2095-05-01 00:00:00+00|2095-04-01 23:00:00+00|2095-04-01 00:00:00|UTC',
	'without a trial a subscription starts incomplete, period 0 from now to the same time next month; the billing run looks at it again when its first charge is due to expire (23 hours)');
SELECT is((SELECT concat_ws('|', kind, status, period_index, amount, attempt_count, payment_id IS NOT NULL)
	FROM payments.invoices WHERE merchant_id = pg_temp.id('a') AND subscription_id = pg_temp.id('s1')),
	'first|open|0|30.00 USD|1|t', 'its first invoice (period 0, the plan''s amount) is issued and charged in the same transaction');
SELECT is((SELECT concat_ws('|', p.kind, p.status, p.amount, p.payment_method, p.payment_method_id = pg_temp.id('ada-card'))
	FROM payments.payments p JOIN payments.invoices i ON i.merchant_id = p.merchant_id AND i.payment_id = p.payment_id
	WHERE i.merchant_id = pg_temp.id('a') AND i.subscription_id = pg_temp.id('s1')),
	'purchase|pending|30.00 USD|profile|t', 'the charge is a purchase of the customer''s default stored card, sent by the worker after COMMIT');
SELECT is((SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = pg_temp.id('a')
	AND event_type LIKE ANY (ARRAY['subscription.%', 'invoice.%'])), 'subscription.created,invoice.created',
	'subscription.created and invoice.created are written');
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => pg_temp.id('ada'),
	plan_id => pg_temp.id('plan'), metadata => '{"seat": "ada"}', idempotency_key => 'sub-1')), pg_temp.id('s1'),
	'the same idempotency key and parameters return the same subscription');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, quantity => 2, idempotency_key => ''sub-1'')',
	pg_temp.id('ada'), pg_temp.id('plan')), 'PT409', NULL, 'the same key with other parameters is a conflict');
SELECT is((SELECT count(*)::int FROM payments.invoices WHERE merchant_id = pg_temp.id('a')), 1,
	'a repeated call issued no second invoice');
SELECT pg_temp.pay_open_invoices(pg_temp.id('s1')) \gset _
SELECT is((SELECT status FROM pay_get_subscription(pg_temp.id('s1'))), 'active', 'paid, the subscription is active');
-- a call repeated after the first one committed returns what it made,
-- whatever changed since; other arguments under the key are still PT409
SAVEPOINT replays;
SELECT is((SELECT metadata ->> 'seat' FROM pay_update_subscription(pg_temp.id('s1'), payment_method_id => pg_temp.id('ada-card'),
	metadata => '{"seat": "ada 2"}', idempotency_key => 'upd-1')), 'ada 2', 'an update with a key');
SELECT is((SELECT name FROM pay_update_customer(pg_temp.id('ada'), name => 'Ada L', idempotency_key => 'cust-upd-1')), 'Ada L',
	'a customer update with a key');
SELECT pg_temp.keep('ada-card-2', payment_method_id) FROM pay_save_payment_method(customer_id => pg_temp.id('ada'),
	card => payments.pay_card('5424000000000015', 12, extract(year FROM now())::int + 3, '123'),
	validation_mode => 'none', make_default => false, idempotency_key => 'pm-save-1') \gset _
UPDATE payments.payment_methods SET status = 'active', payment_profile_id = '7009'
WHERE merchant_id = pg_temp.id('a') AND payment_method_id = pg_temp.id('ada-card-2');
UPDATE payments.plans SET active = false WHERE merchant_id = pg_temp.id('a') AND plan_id = pg_temp.id('plan');
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => pg_temp.id('ada'),
	plan_id => pg_temp.id('plan'), metadata => '{"seat": "ada"}', idempotency_key => 'sub-1')), pg_temp.id('s1'),
	'a repeated create after its plan was made inactive returns the subscription made');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, quantity => 2, idempotency_key => ''sub-1'')',
	pg_temp.id('ada'), pg_temp.id('plan')), 'PT409', NULL, 'other arguments under the key are still a conflict');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)',
	pg_temp.id('ada'), pg_temp.id('plan')), '22Y20', NULL, 'and a new subscription to the inactive plan is refused');
UPDATE payments.plans SET active = true WHERE merchant_id = pg_temp.id('a') AND plan_id = pg_temp.id('plan');
UPDATE payments.payment_methods SET status = 'deleted', is_default = false
WHERE merchant_id = pg_temp.id('a') AND payment_method_id = pg_temp.id('ada-card');
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => pg_temp.id('ada'),
	plan_id => pg_temp.id('plan'), metadata => '{"seat": "ada"}', idempotency_key => 'sub-1')), pg_temp.id('s1'),
	'a repeated create after the customer''s card was deleted returns the subscription made');
SELECT is((SELECT status FROM pay_cancel_subscription(pg_temp.id('s1'))), 'canceled', '(the subscription is canceled)');
SELECT is((SELECT subscription_id FROM pay_update_subscription(pg_temp.id('s1'), payment_method_id => pg_temp.id('ada-card'),
	metadata => '{"seat": "ada 2"}', idempotency_key => 'upd-1')), pg_temp.id('s1'),
	'a repeated update after the subscription ended and its method was deleted returns it');
SELECT throws_ok(format('SELECT pay_update_subscription(%s, metadata => ''{"seat": "x"}'', idempotency_key => ''upd-1'')',
	pg_temp.id('s1')), 'PT409', NULL, 'other arguments under the update''s key are a conflict');
SELECT is((SELECT status FROM pay_delete_customer(pg_temp.id('ada'))), 'deleted', '(the customer is deleted)');
SELECT is((SELECT name FROM pay_update_customer(pg_temp.id('ada'), name => 'Ada L', idempotency_key => 'cust-upd-1')), 'Ada L',
	'a repeated customer update after the customer was deleted returns it');
SELECT throws_ok(format('SELECT pay_update_customer(%s, name => ''Ada M'')', pg_temp.id('ada')), '22Y20', NULL,
	'a new update of the deleted customer is refused');
SELECT is((SELECT payment_method_id FROM pay_save_payment_method(customer_id => pg_temp.id('ada'),
	card => payments.pay_card('5424000000000015', 12, extract(year FROM now())::int + 3, '123'),
	validation_mode => 'none', make_default => false, idempotency_key => 'pm-save-1')), pg_temp.id('ada-card-2'),
	'a repeated save after the customer was deleted returns the method saved');
SELECT throws_ok(format('SELECT pay_save_payment_method(customer_id => %s, card => payments.pay_card(''5424000000000015'', 12, %s, ''123''), validation_mode => ''none'')',
	pg_temp.id('ada'), extract(year FROM now())::int + 3), '22Y20', NULL, 'a new save for the deleted customer is refused');
ROLLBACK TO SAVEPOINT replays;

-- trials
SELECT pg_temp.keep('nocard', customer_id) FROM pay_create_customer(email => 'nocard@example.com') \gset _
SELECT pg_temp.keep('t1', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('nocard'),
	plan_id => pg_temp.id('plan-trial')) \gset _
SELECT is((SELECT concat_ws('|', status, current_period_index, current_period_start, current_period_end, trial_end,
	next_renewal_at, billing_anchor) FROM pg_temp.sub(pg_temp.id('t1'))),
	'trialing|-1|2095-04-01 00:00:00+00|2095-04-15 00:00:00+00|2095-04-15 00:00:00+00|2095-04-15 00:00:00+00|2095-04-15 00:00:00',
	'a plan''s trial: trialing, period -1 until the trial''s end, which is the anchor and the next renewal');
SELECT is((SELECT count(*)::int FROM payments.invoices WHERE merchant_id = pg_temp.id('a') AND subscription_id = pg_temp.id('t1')), 0,
	'a trial issues no invoice (and needs no payment method yet)');
SELECT is((SELECT status FROM pay_create_subscription(customer_id => pg_temp.id('ada'), plan_id => pg_temp.id('plan'),
	trial_days => 7)), 'trialing', 'trial_days gives a trial on a plan without one');
SELECT is((SELECT status FROM pay_create_subscription(customer_id => pg_temp.id('ada'), plan_id => pg_temp.id('plan-trial'),
	trial_days => 0)), 'incomplete', 'trial_days => 0 skips the plan''s trial');
SELECT is((SELECT concat_ws('|', trial_end, billing_anchor, time_zone) FROM pay_create_subscription(customer_id => pg_temp.id('ada'),
	plan_id => pg_temp.id('plan'), trial_days => 30, time_zone => 'America/New_York')),
	'2095-05-01 00:00:00+00|2095-04-30 20:00:00|America/New_York',
	'a trial''s end is the anchor as local wall-clock time in the subscription''s time zone');

-- explicit price
SELECT is((SELECT concat_ws('|', status, plan_id IS NULL, unit_amount, quantity, interval_unit, interval_count)
	FROM pay_create_subscription(customer_id => pg_temp.id('ada'), price => '2.50 EUR', interval_unit => 'week',
		interval_count => 2, quantity => 3)), 'incomplete|t|2.50 EUR|3|week|2', 'a subscription at an explicit price per 2 weeks');
SELECT is((SELECT i.amount FROM payments.invoices i JOIN payments.subscriptions s USING (merchant_id, subscription_id)
	WHERE s.merchant_id = pg_temp.id('a') AND s.unit_amount = '2.50 EUR'), '7.50 EUR', 'its first invoice is price times quantity');

-- bad input: nothing is created
CREATE TEMP TABLE before_bad AS SELECT count(*) AS n FROM payments.subscriptions WHERE merchant_id = pg_temp.id('a');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, price => ''1.00 USD'', interval_unit => ''month'')',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', 'exactly one of plan_id and price is required', 'plan and price together are refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s)', pg_temp.id('ada')), '22023',
	'exactly one of plan_id and price is required', 'neither plan nor price is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, price => ''1.00 USD'')', pg_temp.id('ada')), '22023',
	'interval_unit is required with a price', 'a price needs an interval');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, price => ''-1.00 USD'', interval_unit => ''month'')',
	pg_temp.id('ada')), '22Y23', NULL, 'a price must be positive');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, interval_unit => ''year'')',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', NULL, 'a plan''s interval cannot be overridden');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, quantity => 0)',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', 'quantity must be between 1 and 100000', 'quantity 0 is refused');
-- price times quantity beyond what the gateway takes: 22Y26, also where
-- the product is beyond pay_amount's 64-bit range (it was 22003 "value out
-- of range for type pay_amount")
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, price => ''9999999999999.99 USD'', interval_unit => ''month'', quantity => 100000)',
	pg_temp.id('ada')), '22Y26', 'amount is larger than the gateway accepts', 'a price times quantity beyond 64 bits is 22Y26');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, price => ''999999999999.99 USD'', interval_unit => ''month'', quantity => 100)',
	pg_temp.id('ada')), '22Y26', 'amount is larger than the gateway accepts', 'a price times quantity of 16 digits is 22Y26');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, trial_days => 731)',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', NULL, 'a trial over 730 days is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, metadata => ''"x"'')',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', 'metadata must be a JSON object', 'metadata must be an object');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, time_zone => ''Mars/Olympus_Mons'')',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', 'time_zone is not a known time zone', 'an unknown time zone is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, time_zone => %L)',
	pg_temp.id('ada'), pg_temp.id('plan'), z), '22023', 'time_zone is not a known time zone',
	format('%s is refused (no place''s time)', z))
FROM unnest(ARRAY['localtime', 'Factory', 'right/UTC', 'posix/Europe/Paris']) z;
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => NULL, plan_id => %s)', pg_temp.id('plan')),
	'22004', 'customer_id is required', 'a NULL customer id is a missing argument');
SELECT throws_ok('SELECT pay_change_subscription(NULL, quantity => 2)', '22004', 'subscription_id is required',
	'a NULL subscription id is a missing argument');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, time_zone => ''PDT'')',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', 'time_zone is not a known time zone',
	'an abbreviation (a fixed offset without daylight saving) is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, time_zone => NULL)',
	pg_temp.id('ada'), pg_temp.id('plan')), '22023', NULL, 'a NULL time zone is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, billing_anchor => ''2095-05-01'')',
	pg_temp.id('ada'), pg_temp.id('plan-trial')), '22023', 'billing_anchor cannot be combined with a trial',
	'an anchor with a trial is refused');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('ada'), pg_temp.id('plan-old')),
	'22Y20', NULL, 'an inactive plan takes no new subscription');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => -1)', pg_temp.id('ada')),
	'PT404', NULL, 'an unknown plan is PT404');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => -1, plan_id => %s)', pg_temp.id('plan')),
	'PT404', NULL, 'an unknown customer is PT404');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('nocard'), pg_temp.id('plan')),
	'22Y22', NULL, 'without a trial a customer without a usable method is refused (22Y22)');
SELECT pg_temp.keep('bob', customer_id) FROM pay_create_customer(email => 'bob@example.com') \gset _
SELECT pg_temp.keep('bob-pending', payment_method_id) FROM pay_save_payment_method(customer_id => pg_temp.id('bob'),
	card => payments.pay_card('4111111111111111', 12, extract(year FROM now())::int + 3, '123'), validation_mode => 'none') \gset _
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('bob'), pg_temp.id('plan')),
	'22Y22', NULL, 'a default method still being saved is not usable yet');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, payment_method_id => %s)',
	pg_temp.id('bob'), pg_temp.id('plan'), pg_temp.id('bob-pending')), '22Y20', NULL, 'nor is it when named');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, payment_method_id => %s)',
	pg_temp.id('bob'), pg_temp.id('plan'), pg_temp.id('ada-card')), '22023', NULL, 'another customer''s method is refused');
SELECT pg_temp.keep('gone', customer_id) FROM pay_create_customer(email => 'gone@example.com') \gset _
SELECT pay_delete_customer(pg_temp.id('gone')) \gset _
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('gone'), pg_temp.id('plan-trial')),
	'22Y20', NULL, 'a deleted customer cannot subscribe');
SELECT is((SELECT count(*) FROM payments.subscriptions WHERE merchant_id = pg_temp.id('a')), (SELECT n FROM before_bad),
	'no refused call created a subscription');

-- lists
SELECT is((SELECT count(*)::int FROM pay_list_subscriptions(customer_id => pg_temp.id('ada'))), 5, 'pay_list_subscriptions by customer');
SELECT is((SELECT count(*)::int FROM pay_list_subscriptions(status => 'trialing')), 3, 'by status');
CREATE TEMP TABLE sub_pages AS SELECT 1 AS page, array_agg(subscription_id) AS ids FROM pay_list_subscriptions(page_size => 4);
INSERT INTO sub_pages SELECT 2, array_agg(subscription_id) FROM pay_list_subscriptions(page_size => 4,
	after => (SELECT ids[4] FROM sub_pages WHERE page = 1));
SELECT is((SELECT count(DISTINCT x)::int FROM sub_pages, unnest(ids) x), 6, 'keyset pages visit each subscription once');
SELECT throws_ok($$SELECT pay_list_subscriptions(status => 'sleeping')$$, '22023', NULL, 'an unknown status is refused');
SELECT throws_ok($$SELECT pay_list_subscriptions(customer_id => -1)$$, 'PT404', NULL, 'an unknown customer is PT404');

------------------------------------------------------------------------------
-- 3. Update, cancel now and at period end
------------------------------------------------------------------------------
SELECT pg_temp.keep('ada-card2', pg_temp.add_card(pg_temp.id('ada'), false)) \gset _
SELECT is((SELECT concat_ws('|', payment_method_id = pg_temp.id('ada-card2'), metadata ->> 'seat')
	FROM pay_update_subscription(pg_temp.id('s1'), payment_method_id => pg_temp.id('ada-card2'), metadata => '{"seat": "A-1"}')),
	't|A-1', 'pay_update_subscription changes the method and metadata');
SELECT is((SELECT data -> 'fields' FROM payments.events WHERE merchant_id = pg_temp.id('a') AND event_type = 'subscription.updated'
	ORDER BY event_id DESC LIMIT 1), '["payment_method_id", "metadata"]'::jsonb, 'subscription.updated names the fields');
SELECT throws_ok(format('SELECT pay_update_subscription(%s, payment_method_id => %s)', pg_temp.id('s1'), pg_temp.id('bob-pending')),
	'22023', NULL, 'another customer''s method is refused');
SELECT throws_ok(format('SELECT pay_update_subscription(%s)', pg_temp.id('s1')), '22023', 'nothing to update', 'an empty update is refused');

SELECT is((SELECT concat_ws('|', status, cancel_at_period_end, canceled_at, ended_at IS NULL, next_renewal_at)
	FROM pay_cancel_subscription(pg_temp.id('s1'), at_period_end => true)),
	'active|t|2095-04-01 00:00:00+00|t|2095-05-01 00:00:00+00', 'cancel at period end: still active, cancel_at_period_end set');
SELECT is((SELECT concat_ws('|', status, cancel_at_period_end, canceled_at IS NULL)
	FROM pay_update_subscription(pg_temp.id('s1'), cancel_at_period_end => false)), 'active|f|t',
	'pay_update_subscription(cancel_at_period_end => false) undoes it');
SELECT is((SELECT cancel_at_period_end FROM pay_update_subscription(pg_temp.id('s1'), cancel_at_period_end => true)), true,
	'and cancel_at_period_end => true schedules it again');
SELECT pay_update_subscription(pg_temp.id('s1'), cancel_at_period_end => false) \gset _

-- cancel now: in flight refused, then open invoices voided
SELECT pg_temp.keep('s2', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('ada'), plan_id => pg_temp.id('plan')) \gset _
SELECT throws_ok(format('SELECT pay_cancel_subscription(%s)', pg_temp.id('s2')), '22Y20', NULL,
	'cancel now waits while a charge of an open invoice is in flight');
UPDATE payments.payments p SET status = 'failed', decline_code = '2', decline_reason = 'declined'
FROM payments.invoices i WHERE i.merchant_id = pg_temp.id('a') AND i.subscription_id = pg_temp.id('s2')
	AND p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id;
SELECT is((SELECT concat_ws('|', status, ended_at, next_renewal_at IS NULL) FROM pay_cancel_subscription(pg_temp.id('s2'))),
	'incomplete_expired|2095-04-01 00:00:00+00|t', 'canceling an incomplete subscription ends it as incomplete_expired');
SELECT is((SELECT string_agg(status, ',') FROM payments.invoices WHERE merchant_id = pg_temp.id('a') AND subscription_id = pg_temp.id('s2')),
	'void', 'and voids its open first invoice');
SELECT throws_ok(format('SELECT pay_cancel_subscription(%s)', pg_temp.id('s2')), '22Y20', NULL, 'an ended subscription cannot be canceled again');
SELECT throws_ok(format('SELECT pay_update_subscription(%s, payment_method_id => %s)', pg_temp.id('s2'), pg_temp.id('ada-card')),
	'22Y20', NULL, 'nor take a new method');
SELECT is((SELECT metadata ->> 'note' FROM pay_update_subscription(pg_temp.id('s2'), metadata => '{"note": "gone"}')), 'gone',
	'but its metadata can change');
SELECT is((SELECT concat_ws('|', status, canceled_at, ended_at, next_renewal_at IS NULL)
	FROM pay_cancel_subscription(pg_temp.id('t1'))), 'canceled|2095-04-01 00:00:00+00|2095-04-01 00:00:00+00|t',
	'a trial canceled now: canceled, ended now, no renewal');
SELECT is((SELECT count(*)::int FROM payments.events WHERE merchant_id = pg_temp.id('a') AND event_type = 'subscription.canceled'
	AND (data ->> 'subscription_id')::bigint = pg_temp.id('t1') AND data ->> 'previous_status' = 'trialing'), 1,
	'subscription.canceled is written');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE merchant_id = pg_temp.id('a') AND table_name = 'subscriptions'
	AND operation = 'UPDATE' AND (new_row ->> 'subscription_id')::bigint = pg_temp.id('t1') AND new_row ->> 'status' = 'canceled'
	AND NOT new_row ? 'metadata'), 1, 'and an audit row (without the metadata)');

------------------------------------------------------------------------------
-- 4. Proration: the rule, then each choice with exact amounts
------------------------------------------------------------------------------
SELECT is(payments._prorate('30.00 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-11+00'), '20.00 USD'::pay_amount,
	'30-day month, change on day 10: 20 of 30 days left, 30.00 -> 20.00');
SELECT is(payments._prorate('10.00 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-21+00'), '3.33 USD'::pay_amount,
	'odd cents: 10.00 * 10/30 = 3.333... -> 3.33');
SELECT is(payments._prorate('0.20 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-11+00'), '0.13 USD'::pay_amount,
	'odd cents: 0.20 * 20/30 = 0.1333... -> 0.13');
SELECT is(payments._prorate('1.05 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-16+00'), '0.52 USD'::pay_amount,
	'half to even: 1.05 / 2 = 0.525 -> 0.52');
SELECT is(payments._prorate('1.15 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-16+00'), '0.58 USD'::pay_amount,
	'half to even: 1.15 / 2 = 0.575 -> 0.58');
SELECT is(payments._prorate('0.03 USD', '2095-04-01+00', '2095-04-07+00', '2095-04-05+00'), '0.01 USD'::pay_amount,
	'0.03 * 2/6 = 0.01 exactly');
SELECT is(payments._prorate('0.03 USD', '2095-04-01+00', '2095-04-07+00', '2095-04-06+00'), '0.00 USD'::pay_amount,
	'half to even: 0.03 * 1/6 = 0.005 -> 0.00 (a decimal approximation of 1/6 would round up)');
SELECT is(payments._prorate('0.09 USD', '2095-04-01+00', '2095-04-07+00', '2095-04-06+00'), '0.02 USD'::pay_amount,
	'half to even: 0.09 * 1/6 = 0.015 -> 0.02');
SELECT is(payments._prorate('300 JPY', '2095-04-01+00', '2095-05-01+00', '2095-04-21+00'), '100 JPY'::pay_amount,
	'currencies without minor units: 300 JPY * 10/30 = 100 JPY');
SELECT is(payments._prorate('30.00 USD', '2095-04-01+00', '2095-05-01+00', '2095-03-01+00'), '30.00 USD'::pay_amount,
	'before the period: the whole amount');
SELECT is(payments._prorate('30.00 USD', '2095-04-01+00', '2095-05-01+00', '2095-05-02+00'), '0.00 USD'::pay_amount,
	'after it: nothing');
SELECT is(payments._prorate('9999999999999.99 USD', '2095-04-01+00', '2095-05-01+00', '2095-04-01 00:00:01+00'),
	'9999996141975.30 USD'::pay_amount, 'the largest amount the gateway takes, one second of a 30-day month used: exact, no overflow');
SELECT is(payments._prorate('9999999999999.99 USD', '2095-01-01+00', '2195-01-01+00', '2145-01-01 00:00:00+00'),
	'5000000000000.00 USD'::pay_amount, 'and over a century, half of it left: 4999999999999.995 -> 5000000000000.00 (half to even)');
SELECT is(payments._prorate('9999999999999.99 USD', '2095-04-01+00', '2461-04-01+00', '2095-04-01 00:00:01+00'),
	'9999999999134.18 USD'::pay_amount,
	'over 366 years (the longest interval), one second used: exact (before: bigint out of range)');

SELECT pg_temp.new_merchant('p') \gset _
SELECT pg_temp.clock('2095-04-01 00:00+00') \gset _
SELECT pg_temp.customer_with_card('cy') \gset _
SELECT pg_temp.keep('p30', plan_id) FROM pay_create_plan(name => 'P30', amount => '30.00 USD') \gset _
SELECT pg_temp.keep('p45', plan_id) FROM pay_create_plan(name => 'P45', amount => '45.00 USD') \gset _
SELECT pg_temp.keep('pweek', plan_id) FROM pay_create_plan(name => 'Weekly', amount => '7.00 USD', interval_unit => 'week') \gset _
SELECT pg_temp.keep('peur', plan_id) FROM pay_create_plan(name => 'Euro', amount => '30.00 EUR') \gset _
SELECT pg_temp.keep('none', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('cy'), plan_id => pg_temp.id('p30')) \gset _
SELECT pg_temp.keep('next', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('cy'), plan_id => pg_temp.id('p30')) \gset _
SELECT pg_temp.keep('now', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('cy'), plan_id => pg_temp.id('p30')) \gset _
SELECT pg_temp.keep('down', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('cy'), plan_id => pg_temp.id('p45')) \gset _
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 2)', pg_temp.id('none')), '22Y20', NULL,
	'an incomplete subscription cannot change until its first invoice is paid');
SELECT count(pg_temp.pay_open_invoices(x)::text) FROM unnest(ARRAY[pg_temp.id('none'), pg_temp.id('next'), pg_temp.id('now'), pg_temp.id('down')]) x \gset _
SELECT pg_temp.clock('2095-04-11 00:00+00') \gset _

CREATE TEMP TABLE pv AS SELECT pay_preview_subscription_change(pg_temp.id('next'), quantity => 2) AS doc;
SELECT is((SELECT concat_ws('|', doc ->> 'proration', doc ->> 'remaining_seconds', doc ->> 'period_seconds',
	doc -> 'lines' -> 0 ->> 'amount', doc -> 'lines' -> 1 ->> 'amount', doc ->> 'total', doc -> 'new' ->> 'amount') FROM pv),
	'next_invoice|1728000|2592000|-20.00 USD|40.00 USD|20.00 USD|60.00 USD',
	'preview on day 10 of 30, quantity 1 -> 2: credit -20.00 (unused at 30.00), charge 40.00 (left at 60.00), total 20.00');
SELECT is((SELECT concat_ws('|', quantity, unit_amount) FROM pg_temp.sub(pg_temp.id('next'))), '1|30.00 USD',
	'a preview changes nothing');
SELECT is((SELECT count(*)::int FROM payments.invoice_items WHERE merchant_id = pg_temp.id('p')), 0, 'nor adds invoice items');

SELECT is((SELECT concat_ws('|', quantity, unit_amount) FROM pay_change_subscription(pg_temp.id('none'), quantity => 2,
	proration => 'none')), '2|30.00 USD', 'proration none: the quantity changes');
SELECT is((SELECT count(*)::int FROM payments.invoice_items WHERE merchant_id = pg_temp.id('p')) +
	(SELECT count(*)::int FROM payments.invoices WHERE merchant_id = pg_temp.id('p') AND kind = 'proration'), 0,
	'and nothing is prorated');

SELECT is((SELECT quantity FROM pay_change_subscription(pg_temp.id('next'), quantity => 2, idempotency_key => 'chg-1')), 2,
	'proration next_invoice (the default): the quantity changes');
SELECT is((SELECT string_agg(concat_ws(':', kind, amount, invoice_id IS NULL), ',' ORDER BY item_id)
	FROM payments.invoice_items WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('next')),
	'proration:-20.00 USD:t,proration:40.00 USD:t', 'the credit and the charge wait as invoice items, as the preview said');
SELECT is((SELECT quantity FROM pay_change_subscription(pg_temp.id('next'), quantity => 2, idempotency_key => 'chg-1')), 2,
	'the same idempotency key returns the subscription');
SELECT is((SELECT count(*)::int FROM payments.invoice_items WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('next')), 2,
	'without prorating twice');
SELECT is((SELECT concat_ws('|', amount, jsonb_array_length(lines)) FROM payments._issue_invoice(pg_temp.id('p'), pg_temp.id('next'),
	'renewal', 1, '2095-05-01+00', '2095-06-01+00')), '80.00 USD|3', 'the next invoice takes them: 2 x 30.00 + 20.00 = 80.00');

SELECT is((SELECT plan_id FROM pay_change_subscription(pg_temp.id('now'), plan_id => pg_temp.id('p45'), proration => 'invoice_now')),
	pg_temp.id('p45'), 'proration invoice_now: the plan changes');
SELECT is((SELECT concat_ws('|', kind, status, period_index, amount, lines -> 0 ->> 'amount', lines -> 1 ->> 'amount',
	attempt_count, period_start, period_end) FROM payments.invoices WHERE merchant_id = pg_temp.id('p')
	AND subscription_id = pg_temp.id('now') AND kind = 'proration'),
	'proration|open|0|10.00 USD|-20.00 USD|30.00 USD|1|2095-04-11 00:00:00+00|2095-05-01 00:00:00+00',
	'a proration invoice of 45.00 * 20/30 - 30.00 * 20/30 = 10.00 is charged at once');
SELECT is((SELECT count(*)::int FROM payments.payments p JOIN payments.invoices i ON i.merchant_id = p.merchant_id
	AND i.invoice_id = p.invoice_id WHERE i.merchant_id = pg_temp.id('p') AND i.subscription_id = pg_temp.id('now')
	AND i.kind = 'proration' AND p.amount = '10.00 USD'), 1, 'through one payment of the invoice');

SELECT is((SELECT unit_amount FROM pay_change_subscription(pg_temp.id('down'), price => '15.00 USD', proration => 'invoice_now')),
	'15.00 USD'::pay_amount, 'a downgrade to an explicit price, invoiced now');
SELECT is((SELECT concat_ws('|', status, amount) FROM payments.invoices WHERE merchant_id = pg_temp.id('p')
	AND subscription_id = pg_temp.id('down') AND kind = 'proration'), 'paid|0.00 USD',
	'a net credit (10.00 - 30.00) makes a proration invoice of nothing, paid');
SELECT is((SELECT string_agg(concat_ws(':', kind, amount), ',') FROM payments.invoice_items WHERE merchant_id = pg_temp.id('p')
	AND subscription_id = pg_temp.id('down') AND invoice_id IS NULL), 'credit:-20.00 USD',
	'and the credit of 20.00 is carried to the next invoice');
SELECT is((SELECT plan_id IS NULL FROM pg_temp.sub(pg_temp.id('down'))), true, 'an explicit price leaves the plan');

-- refused changes
SELECT throws_ok(format('SELECT pay_change_subscription(%s, plan_id => %s)', pg_temp.id('none'), pg_temp.id('pweek')), '22023',
	format('cannot change the billing interval of subscription %s', pg_temp.id('none')), 'an interval change is refused (cancel and create)');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, plan_id => %s)', pg_temp.id('none'), pg_temp.id('peur')), '22Y03',
	NULL, 'a currency change is refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, price => ''10.00 EUR'')', pg_temp.id('none')), '22Y03',
	NULL, 'an explicit price in another currency too');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 2, proration => ''always'')', pg_temp.id('none')), '22023',
	'proration must be none, next_invoice or invoice_now', 'an unknown proration choice is refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s)', pg_temp.id('none')), '22023', 'nothing to change', 'an empty change is refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, plan_id => %s, price => ''1.00 USD'')', pg_temp.id('none'), pg_temp.id('p45')),
	'22023', NULL, 'plan and price together are refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 100001)', pg_temp.id('none')), '22023', NULL,
	'a quantity over 100000 is refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, price => ''9999999999999.99 USD'', quantity => 100000)', pg_temp.id('none')),
	'22Y26', 'amount is larger than the gateway accepts', 'a change to a price times quantity beyond 64 bits is 22Y26');
SELECT throws_ok(format('SELECT pay_preview_subscription_change(%s, price => ''9999999999999.99 USD'', quantity => 100000)', pg_temp.id('none')),
	'22Y26', 'amount is larger than the gateway accepts', '... and so is its preview');
SELECT throws_ok(format('SELECT pay_preview_subscription_change(%s, plan_id => %s)', pg_temp.id('none'), pg_temp.id('pweek')), '22023',
	NULL, 'a preview refuses what the change would');

-- a trial changes without proration
SELECT pg_temp.keep('trial-chg', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('cy'),
	plan_id => pg_temp.id('p30'), trial_days => 10) \gset _
SELECT is((SELECT concat_ws('|', doc ->> 'proration', jsonb_array_length(doc -> 'lines'))
	FROM pay_preview_subscription_change(pg_temp.id('trial-chg'), plan_id => pg_temp.id('p45'), proration => 'invoice_now') doc),
	'none|0', 'in a trial nothing is prorated, whatever the choice');
SELECT is((SELECT unit_amount FROM pay_change_subscription(pg_temp.id('trial-chg'), plan_id => pg_temp.id('p45'),
	proration => 'invoice_now')), '45.00 USD'::pay_amount, 'the trial''s price changes for the first invoice');

------------------------------------------------------------------------------
-- 5. Pause and resume
------------------------------------------------------------------------------
SELECT throws_ok(format('SELECT pay_pause_subscription(%s)', pg_temp.id('now')), '22Y20', NULL,
	'an active subscription with an open invoice (charge in flight) cannot be paused yet');
SELECT throws_ok(format('SELECT pay_pause_subscription(%s)', pg_temp.id('trial-chg')), '22Y20', NULL,
	'a trial cannot be paused (not in the status machine)');
SELECT is((SELECT concat_ws('|', status, paused_at, next_renewal_at IS NULL) FROM pay_pause_subscription(pg_temp.id('none'))),
	'paused|2095-04-11 00:00:00+00|t', 'pause: status paused, no next renewal');
SELECT throws_ok(format('SELECT pay_pause_subscription(%s)', pg_temp.id('none')), '22Y20', NULL, 'pausing twice is refused');
-- its period is paid at 2 x 30.00 and a resume within it charges nothing
-- more: a change of its amount is taken only without proration (before,
-- pause, add seats, resume gave the seats for the rest of the period free)
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 10, proration => ''invoice_now'')', pg_temp.id('none')),
	'22Y20', NULL, 'paused: a change prorated at once is refused');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 10)', pg_temp.id('none')),
	'22Y20', NULL, 'paused: a change prorated on the next invoice (the default) is refused');
SELECT is((SELECT concat_ws('|', ch ->> 'proration', jsonb_array_length(ch -> 'lines'), ch #>> '{new,amount}')
	FROM pay_preview_subscription_change(pg_temp.id('none'), quantity => 10, proration => 'none') ch),
	'none|0|300.00 USD', 'paused: a change with proration none is taken, from the next period');
SELECT throws_ok(format('SELECT pay_cancel_subscription(%s, at_period_end => true)', pg_temp.id('none')), '22Y20', NULL,
	'a paused subscription cannot be canceled at period end (no period end is reached)');
SELECT throws_ok(format('SELECT pay_resume_subscription(%s)', pg_temp.id('next')), '22Y20', NULL, 'only a paused subscription resumes');
SELECT pg_temp.clock('2095-04-20 00:00+00') \gset _
SELECT is((SELECT concat_ws('|', status, current_period_index, current_period_end, next_renewal_at, paused_at IS NULL)
	FROM pay_resume_subscription(pg_temp.id('none'))), 'active|0|2095-05-01 00:00:00+00|2095-05-01 00:00:00+00|t',
	'resumed within the period it was paused in: active again, same period');
SELECT is((SELECT count(*)::int FROM payments.invoices WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('none')), 1,
	'and nothing more is charged (that period was paid)');
SELECT pay_pause_subscription(pg_temp.id('none')) \gset _
SELECT pg_temp.clock('2095-06-16 00:00+00') \gset _
SELECT is((SELECT concat_ws('|', status, current_period_index, current_period_start, current_period_end, next_renewal_at,
	billing_anchor) FROM pay_resume_subscription(pg_temp.id('none'), idempotency_key => 'resume-1')),
	'active|2|2095-06-01 00:00:00+00|2095-07-01 00:00:00+00|2095-07-01 00:00:00+00|2095-04-01 00:00:00',
	'resumed two months later: the anchor is kept, the period containing now (number 2) is current');
SELECT is((SELECT concat_ws('|', kind, period_index, amount, period_start, status) FROM payments.invoices
	WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('none') AND period_index = 2),
	'renewal|2|30.00 USD|2095-06-16 00:00:00+00|open', 'its remaining half is invoiced at once: 2 x 30.00 * 15/30 = 30.00');
SELECT is((SELECT status FROM pay_resume_subscription(pg_temp.id('none'), idempotency_key => 'resume-1')), 'active',
	'a repeated resume with its key changes nothing');
SELECT is((SELECT string_agg(event_type, ',' ORDER BY event_id) FROM payments.events WHERE merchant_id = pg_temp.id('p')
	AND event_type IN ('subscription.paused', 'subscription.active') AND (data ->> 'subscription_id')::bigint = pg_temp.id('none')),
	'subscription.active,subscription.paused,subscription.active,subscription.paused,subscription.active',
	'each transition wrote its event');

------------------------------------------------------------------------------
-- 6. Calendar periods
------------------------------------------------------------------------------
SELECT is((SELECT string_agg(to_char(payments._period_start('2095-01-31 09:00', 'UTC', 'month', 1, n) AT TIME ZONE 'UTC',
	'MM-DD'), ',' ORDER BY n) FROM generate_series(0, 12) n), '01-31,02-28,03-31,04-30,05-31,06-30,07-31,08-31,09-30,10-31,11-30,12-31,01-31',
	'an anchor on the 31st bills on the last day of shorter months and returns to the 31st');
SELECT is((SELECT string_agg(to_char(payments._period_start('2096-01-31 09:00', 'UTC', 'month', 1, n) AT TIME ZONE 'UTC',
	'MM-DD'), ',' ORDER BY n) FROM generate_series(0, 3) n), '01-31,02-29,03-31,04-30', 'in a leap year February ends on the 29th');
SELECT is((SELECT string_agg(to_char(payments._period_start('2096-02-29 00:00', 'UTC', 'year', 1, n) AT TIME ZONE 'UTC',
	'YYYY-MM-DD'), ',' ORDER BY n) FROM generate_series(0, 8) n),
	'2096-02-29,2097-02-28,2098-02-28,2099-02-28,2100-02-28,2101-02-28,2102-02-28,2103-02-28,2104-02-29',
	'a 29 February anchor: 28 February in common years (2100 too), 29 February again in 2104');
SELECT is((SELECT string_agg(to_char(payments._period_start('2096-02-29 00:00', 'UTC', 'month', 12, n) AT TIME ZONE 'UTC',
	'YYYY-MM-DD'), ',' ORDER BY n) FROM generate_series(0, 4) n),
	'2096-02-29,2097-02-28,2098-02-28,2099-02-28,2100-02-28', 'every 12 months is the same as every year');
SELECT is((SELECT string_agg(to_char(payments._period_start('2095-12-29 10:00', 'UTC', 'week', 2, n) AT TIME ZONE 'UTC',
	'YYYY-MM-DD HH24:MI'), ',' ORDER BY n) FROM generate_series(0, 2) n),
	'2095-12-29 10:00,2096-01-12 10:00,2096-01-26 10:00', 'every 2 weeks, across a new year');
SELECT is((SELECT string_agg(to_char(payments._period_start('2096-02-27 10:00', 'UTC', 'day', 1, n) AT TIME ZONE 'UTC',
	'MM-DD'), ',' ORDER BY n) FROM generate_series(0, 3) n), '02-27,02-28,02-29,03-01', 'daily through 29 February');
SELECT is((SELECT string_agg(to_char(payments._period_start('2095-06-15 10:00', 'UTC', 'year', 2, n) AT TIME ZONE 'UTC',
	'YYYY-MM-DD'), ',' ORDER BY n) FROM generate_series(0, 2) n), '2095-06-15,2097-06-15,2099-06-15', 'every 2 years');

-- America/New_York, 09:00 local, daily through the March and November changes of 2095
SELECT is((SELECT count(*)::int FROM generate_series(0, 365) n
	WHERE (payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n) AT TIME ZONE 'America/New_York')::time <> '09:00'),
	0, 'every daily period of a year starts at 09:00 New York time');
SELECT is((SELECT string_agg(DISTINCT extract(hour FROM payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n)
	AT TIME ZONE 'UTC')::text, ',') FROM generate_series(0, 365) n), '13,14', 'which is 14:00 UTC in winter, 13:00 UTC in summer');
SELECT is((SELECT string_agg((extract(epoch FROM e - s) / 3600)::int::text, ',' ORDER BY s) FROM (SELECT payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n) s,
	payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n + 1) e FROM generate_series(0, 365) n) x
	WHERE e - s <> interval '24 hours'), '23,25', 'one day of 23 hours in March, one of 25 hours in November');
SELECT is((SELECT string_agg(to_char(payments._period_start('2095-02-01 09:00', 'America/New_York', 'month', 1, n) AT TIME ZONE 'UTC',
	'MM-DD HH24:MI'), ',' ORDER BY n) FROM generate_series(0, 10) n),
	'02-01 14:00,03-01 14:00,04-01 13:00,05-01 13:00,06-01 13:00,07-01 13:00,08-01 13:00,09-01 13:00,10-01 13:00,11-01 13:00,12-01 14:00',
	'monthly at 09:00 New York time: 14:00 UTC before March''s change and after November''s, 13:00 UTC between');

-- the period containing a time: start(n) <= t < start(n + 1) for times over two years
SELECT is((SELECT count(*)::int FROM generate_series('2095-01-01 00:00+00'::timestamptz, '2097-01-01+00', '37 hours 11 minutes') t,
	LATERAL (SELECT payments._period_index_at('2095-01-31 09:00', 'UTC', 'month', 1, t) AS n) x
	WHERE NOT (payments._period_start('2095-01-31 09:00', 'UTC', 'month', 1, n) <= t
		AND t < payments._period_start('2095-01-31 09:00', 'UTC', 'month', 1, n + 1))), 0,
	'_period_index_at finds the monthly period (31st anchor) of every time, before the anchor too');
SELECT is((SELECT count(*)::int FROM generate_series('2095-01-01 00:00+00'::timestamptz, '2096-01-01+00', '5 hours 7 minutes') t,
	LATERAL (SELECT payments._period_index_at('2095-01-01 09:00', 'America/New_York', 'day', 1, t) AS n) x
	WHERE NOT (payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n) <= t
		AND t < payments._period_start('2095-01-01 09:00', 'America/New_York', 'day', 1, n + 1))), 0,
	'and the daily New York period of every time across both daylight-saving changes');

-- a subscription's own periods: anchor on the 31st, resumed in April and
-- back; New York 09:00 across the changes
SELECT pg_temp.new_merchant('cal') \gset _
SELECT pg_temp.clock('2095-02-10 00:00+00') \gset _
SELECT pg_temp.customer_with_card('dee') \gset _
SELECT pg_temp.keep('m31', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dee'),
	price => '28.00 USD', interval_unit => 'month', billing_anchor => '2095-01-31 00:00') \gset _
SELECT is((SELECT concat_ws('|', current_period_index, current_period_start, current_period_end) FROM pg_temp.sub(pg_temp.id('m31'))),
	'0|2095-01-31 00:00:00+00|2095-02-28 00:00:00+00', 'a past anchor on the 31st: the current period is [31 January, 28 February)');
SELECT is((SELECT concat_ws('|', amount, period_start, lines -> 0 ->> 'amount') FROM payments.invoices
	WHERE merchant_id = pg_temp.id('cal') AND subscription_id = pg_temp.id('m31')), '18.00 USD|2095-02-10 00:00:00+00|18.00 USD',
	'its first invoice is the part left: 28.00 * 18/28 days = 18.00');
SELECT pg_temp.pay_open_invoices(pg_temp.id('m31')) \gset _
SELECT pay_pause_subscription(pg_temp.id('m31')) \gset _
SELECT pg_temp.clock('2095-04-15 00:00+00') \gset _
SELECT is((SELECT concat_ws('|', current_period_index, current_period_start, current_period_end) FROM pay_resume_subscription(pg_temp.id('m31'))),
	'2|2095-03-31 00:00:00+00|2095-04-30 00:00:00+00', 'resumed in April: period 2 is [31 March, 30 April)');
SELECT is((SELECT amount FROM payments.invoices WHERE merchant_id = pg_temp.id('cal') AND subscription_id = pg_temp.id('m31')
	AND period_index = 2), '14.00 USD'::pay_amount, 'the 15 of 30 days left: 28.00 * 15/30 = 14.00');
SELECT pg_temp.pay_open_invoices(pg_temp.id('m31')) \gset _
SELECT pay_pause_subscription(pg_temp.id('m31')) \gset _
SELECT pg_temp.clock('2095-05-31 12:00+00') \gset _
SELECT is((SELECT concat_ws('|', current_period_index, current_period_start, current_period_end) FROM pay_resume_subscription(pg_temp.id('m31'))),
	'4|2095-05-31 00:00:00+00|2095-06-30 00:00:00+00', 'and on 31 May the period starts on the 31st again');

SELECT pg_temp.new_merchant('nyc') \gset _
SELECT pg_temp.clock('2095-03-01 14:00+00') \gset _
SELECT pg_temp.customer_with_card('dee') \gset _
SELECT pg_temp.keep('ny', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dee'),
	price => '31.00 USD', interval_unit => 'month', billing_anchor => '2095-03-01 09:00', time_zone => 'America/New_York') \gset _
SELECT is((SELECT concat_ws('|', current_period_start, current_period_end) FROM pg_temp.sub(pg_temp.id('ny'))),
	'2095-03-01 14:00:00+00|2095-04-01 13:00:00+00', 'New York 09:00: March''s period ends at 09:00 EDT (13:00 UTC)');
SELECT is((SELECT amount FROM payments.invoices WHERE merchant_id = pg_temp.id('nyc') AND subscription_id = pg_temp.id('ny')),
	'31.00 USD'::pay_amount, 'created at its anchor, the whole period is invoiced');
SELECT pg_temp.pay_open_invoices(pg_temp.id('ny')) \gset _
-- a key's request hash holds the anchor (a wall-clock timestamp, not a
-- timestamptz) as the same text whatever the session's TimeZone: a retry
-- from another zone is the same request
SELECT pg_temp.keep('tzk', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dee'),
	price => '5.00 USD', interval_unit => 'month', billing_anchor => '2095-03-01 09:00',
	idempotency_key => 'sub-tz') \gset _
SET LOCAL TimeZone = 'Asia/Tokyo';
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => pg_temp.id('dee'),
	price => '5.00 USD', interval_unit => 'month', billing_anchor => '2095-03-01 09:00',
	idempotency_key => 'sub-tz')), pg_temp.id('tzk'),
	'the same key and anchor from a session in another time zone return the same subscription');
SET LOCAL TimeZone = 'UTC';
-- the text of an invoice's lines does not follow the session's DateStyle:
-- its wall-clock times were format()'s %s of a timestamp, 01/03/2095
-- under SQL, DMY (1 March; 3 January to a reader in MDY) and 01.03.2095
-- under German
SET LOCAL DateStyle = 'SQL, DMY';
SELECT pg_temp.keep('dmy', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dee'),
	price => '7.00 USD', interval_unit => 'month', billing_anchor => '2095-03-01 09:00', time_zone => 'America/New_York') \gset _
SELECT is((SELECT lines -> 0 ->> 'description' FROM payments.invoices
	WHERE merchant_id = pg_temp.id('nyc') AND subscription_id = pg_temp.id('dmy')),
	'1 x 7.00 USD, 2095-03-01 09:00:00 to 2095-04-01 09:00:00',
	'a first invoice issued from a session in DateStyle SQL, DMY: its line''s times are written YYYY-MM-DD');
SELECT pg_temp.pay_open_invoices(pg_temp.id('dmy')) \gset _
SET LOCAL DateStyle = 'German';
SELECT is((SELECT string_agg(l ->> 'description', '; ' ORDER BY l ->> 'description')
	FROM pay_preview_subscription_change(pg_temp.id('dmy'), quantity => 2) x, jsonb_array_elements(x -> 'lines') l),
	'Remaining time on 2 x 7.00 USD from 2095-03-01 09:00:00; Unused time on 1 x 7.00 USD from 2095-03-01 09:00:00',
	'a change previewed from a session in DateStyle German: its proration lines'' times are written YYYY-MM-DD');
SET LOCAL DateStyle = 'ISO, MDY';
SELECT pay_pause_subscription(pg_temp.id('ny')) \gset _
SELECT pg_temp.clock('2095-11-16 14:00+00') \gset _
SELECT is((SELECT concat_ws('|', current_period_index, current_period_start, current_period_end,
	current_period_start AT TIME ZONE time_zone, current_period_end AT TIME ZONE time_zone)
	FROM pay_resume_subscription(pg_temp.id('ny'))),
	'8|2095-11-01 13:00:00+00|2095-12-01 14:00:00+00|2095-11-01 09:00:00|2095-12-01 09:00:00',
	'resumed in November: the period runs from 09:00 EDT to 09:00 EST, local 09:00 both');
SELECT is((SELECT amount FROM payments.invoices WHERE merchant_id = pg_temp.id('nyc') AND subscription_id = pg_temp.id('ny')
	AND period_index = 8), payments._prorate('31.00 USD', '2095-11-01 13:00+00', '2095-12-01 14:00+00', '2095-11-16 14:00+00'),
	'its remaining part by the one rule, with the extra hour counted');
SELECT is(payments._prorate('31.00 USD', '2095-11-01 13:00+00', '2095-12-01 14:00+00', '2095-11-16 14:00+00'), '15.48 USD'::pay_amount,
	'31.00 * 1296000/2595600 s = 15.478... -> 15.48');

------------------------------------------------------------------------------
-- 7. Every allowed and refused status transition (status_transitions)
------------------------------------------------------------------------------
SELECT pg_temp.new_merchant('sm') \gset _
SELECT pg_temp.keep('sm-c', customer_id) FROM pay_create_customer(email => 'sm@example.com') \gset _
-- try from -> to on a fresh row: 'allowed' (with its event and audit row) or 'refused'
CREATE FUNCTION pg_temp.try_transition(entity text, from_status text, to_status text) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	m bigint := pg_temp.id('sm');
	sid bigint;
	iid bigint;
	rid bigint;
BEGIN
	INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit, interval_count,
		billing_anchor, current_period_start, current_period_end, correlation_id)
	VALUES (m, pg_temp.id('sm-c'), CASE WHEN entity = 'subscription' THEN from_status ELSE 'active' END, '1.00 USD',
		'month', 1, '2095-01-01', '2095-01-01+00', '2095-02-01+00', 'sm')
	RETURNING subscription_id INTO sid;
	IF entity = 'invoice' THEN
		INSERT INTO payments.invoices (merchant_id, subscription_id, customer_id, kind, status, period_index,
			period_start, period_end, amount, correlation_id)
		VALUES (m, sid, pg_temp.id('sm-c'), 'proration', from_status, 0, '2095-01-01+00', '2095-02-01+00', '1.00 USD', 'sm')
		RETURNING invoice_id INTO iid;
	END IF;
	rid := coalesce(iid, sid);
	BEGIN
		IF entity = 'subscription' THEN
			UPDATE payments.subscriptions SET status = to_status WHERE merchant_id = m AND subscription_id = sid;
		ELSE
			UPDATE payments.invoices SET status = to_status WHERE merchant_id = m AND invoice_id = iid;
		END IF;
	EXCEPTION WHEN SQLSTATE '22Y20' THEN
		RETURN 'refused';
	END;
	RETURN 'allowed'
		|| CASE WHEN EXISTS (SELECT 1 FROM payments.events e WHERE e.merchant_id = m AND e.event_type = entity || '.' || to_status
			AND (e.data ->> (entity || '_id'))::bigint = rid AND e.data ->> 'status' = to_status) THEN '+event' ELSE '' END
		|| CASE WHEN EXISTS (SELECT 1 FROM payments.audit_log a WHERE a.merchant_id = m AND a.operation = 'UPDATE'
			AND a.table_name = entity || 's' AND (a.new_row ->> (entity || '_id'))::bigint = rid
			AND a.old_row ->> 'status' = from_status AND a.new_row ->> 'status' = to_status) THEN '+audit' ELSE '' END;
END
$$;
SELECT is(pg_temp.try_transition(e, f, t),
	CASE WHEN EXISTS (SELECT 1 FROM payments.status_transitions x WHERE x.entity = e AND x.from_status = f AND x.to_status = t)
		THEN 'allowed+event+audit' ELSE 'refused' END,
	format('%s %s -> %s is %s', e, f, t,
		CASE WHEN EXISTS (SELECT 1 FROM payments.status_transitions x WHERE x.entity = e AND x.from_status = f AND x.to_status = t)
			THEN 'allowed, with its event and audit row' ELSE 'refused (22Y20)' END))
FROM (SELECT 'subscription' AS e, f, t
		FROM unnest(ARRAY['trialing', 'incomplete', 'incomplete_expired', 'active', 'past_due', 'paused', 'canceled', 'unpaid']) f,
			unnest(ARRAY['trialing', 'incomplete', 'incomplete_expired', 'active', 'past_due', 'paused', 'canceled', 'unpaid']) t
		WHERE f <> t
	UNION ALL
	SELECT 'invoice', f, t FROM unnest(ARRAY['open', 'paid', 'uncollectible', 'void']) f,
			unnest(ARRAY['open', 'paid', 'uncollectible', 'void']) t
		WHERE f <> t
	ORDER BY 1, 2, 3) pairs;
SELECT is((SELECT count(*)::int FROM payments.status_transitions WHERE entity = 'subscription'), 15,
	'the subscription machine has 15 transitions');
SELECT is((SELECT count(*)::int FROM payments.status_transitions WHERE entity = 'invoice'), 5, 'the invoice machine 5');

------------------------------------------------------------------------------
-- 8. Dunning: a new method tried at once (the billing side's retry)
------------------------------------------------------------------------------
SELECT pg_temp.act_as(pg_temp.id('p')) \gset _
-- the renewal of 'next' (issued above) failed: past_due with an open, failed invoice
UPDATE payments.payments p SET status = 'failed', decline_code = '2', decline_reason = 'This transaction has been declined.'
FROM payments.invoices i WHERE i.merchant_id = pg_temp.id('p') AND i.subscription_id = pg_temp.id('next')
	AND i.period_index = 1 AND p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id AND p.status = 'pending';
UPDATE payments.invoices SET first_failed_at = coalesce(first_failed_at, '2095-06-16+00'),
	last_failure_code = coalesce(last_failure_code, '2')
WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('next') AND period_index = 1 AND status = 'open';
UPDATE payments.subscriptions SET status = 'past_due' WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('next')
	AND status = 'active';
CREATE TEMP TABLE before_retry AS SELECT attempt_count FROM payments.invoices WHERE merchant_id = pg_temp.id('p')
	AND subscription_id = pg_temp.id('next') AND period_index = 1;
SELECT pg_temp.keep('cy-card2', pg_temp.add_card(pg_temp.id('cy'), false)) \gset _
SELECT is((SELECT concat_ws('|', status, payment_method_id = pg_temp.id('cy-card2'))
	FROM pay_update_subscription(pg_temp.id('next'), payment_method_id => pg_temp.id('cy-card2'))), 'past_due|t',
	'a past_due subscription takes a new method');
SELECT is((SELECT attempt_count FROM payments.invoices WHERE merchant_id = pg_temp.id('p') AND subscription_id = pg_temp.id('next')
	AND period_index = 1), (SELECT attempt_count + 1 FROM before_retry), 'and its open invoice is charged to it at once');

------------------------------------------------------------------------------
-- 9. Merchant isolation
------------------------------------------------------------------------------
SELECT pg_temp.new_merchant('b') \gset _
SELECT pg_temp.keep('b-c', pg_temp.customer_with_card('bea')) \gset _
SELECT pg_temp.keep('b-plan', plan_id) FROM pay_create_plan(name => 'B', amount => '1.00 USD') \gset _
SELECT throws_ok(format('SELECT pay_get_plan(%s)', pg_temp.id('plan')), 'PT404', NULL, 'merchant B does not see A''s plan');
SELECT throws_ok(format('SELECT pay_update_plan(%s, active => false)', pg_temp.id('plan')), 'PT404', NULL, 'nor changes it');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('b-c'), pg_temp.id('plan')),
	'PT404', NULL, 'nor subscribes its customer to it');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s)', pg_temp.id('ada'), pg_temp.id('b-plan')),
	'PT404', NULL, 'nor subscribes A''s customer');
SELECT throws_ok(format('SELECT pay_create_subscription(customer_id => %s, plan_id => %s, payment_method_id => %s)',
	pg_temp.id('b-c'), pg_temp.id('b-plan'), pg_temp.id('ada-card')), 'PT404', NULL, 'nor charges A''s payment method');
SELECT throws_ok(format('SELECT pay_get_subscription(%s)', pg_temp.id('s1')), 'PT404', NULL, 'merchant B does not see A''s subscription');
SELECT throws_ok(format('SELECT pay_update_subscription(%s, metadata => ''{}'')', pg_temp.id('s1')), 'PT404', NULL, 'nor updates it');
SELECT throws_ok(format('SELECT pay_cancel_subscription(%s)', pg_temp.id('s1')), 'PT404', NULL, 'nor cancels it');
SELECT throws_ok(format('SELECT pay_pause_subscription(%s)', pg_temp.id('s1')), 'PT404', NULL, 'nor pauses it');
SELECT throws_ok(format('SELECT pay_resume_subscription(%s)', pg_temp.id('none')), 'PT404', NULL, 'nor resumes one');
SELECT throws_ok(format('SELECT pay_change_subscription(%s, quantity => 3)', pg_temp.id('s1')), 'PT404', NULL, 'nor changes it');
SELECT throws_ok(format('SELECT pay_preview_subscription_change(%s, quantity => 3)', pg_temp.id('s1')), 'PT404', NULL,
	'nor previews a change (which would show its invoice amounts)');
SELECT throws_ok(format('SELECT pay_list_subscriptions(customer_id => %s)', pg_temp.id('ada')), 'PT404', NULL,
	'nor lists A''s customer''s subscriptions');
SELECT is((SELECT count(*)::int FROM pay_list_subscriptions()) + (SELECT count(*)::int FROM pay_list_plans()), 1,
	'B lists only its own plan');
SELECT is((SELECT count(*)::int FROM payments.invoices i WHERE i.merchant_id = pg_temp.id('b')), 0,
	'and none of A''s invoices were billed to B');

------------------------------------------------------------------------------
-- 9b. A deleted customer keeps no running subscription
------------------------------------------------------------------------------
SELECT pg_temp.new_merchant('del') \gset _
SELECT pg_temp.customer_with_card('dora') \gset _
SELECT pg_temp.keep('del-plan', plan_id) FROM pay_create_plan(name => 'D', amount => '5.00 USD', trial_days => 7) \gset _
SELECT pg_temp.keep('dora-trial', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dora'),
	plan_id => pg_temp.id('del-plan')) \gset _
SELECT pg_temp.keep('dora-now', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('dora'),
	plan_id => pg_temp.id('del-plan'), trial_days => 0) \gset _
SELECT throws_ok(format('SELECT pay_delete_customer(%s)', pg_temp.id('dora')), '22Y20', NULL,
	'a customer whose subscription''s charge is in flight is not deleted yet');
SELECT is((SELECT status FROM payments.customers WHERE merchant_id = pg_temp.id('del') AND customer_id = pg_temp.id('dora')),
	'active', 'and nothing of the deletion happened');
SELECT pg_temp.pay_open_invoices(pg_temp.id('dora-now')) \gset _
SELECT is((SELECT status FROM pay_delete_customer(pg_temp.id('dora'))), 'deleted', 'once it is answered, the customer is deleted');
SELECT is((SELECT string_agg(status || '/' || (ended_at IS NOT NULL) || '/' || (next_renewal_at IS NULL), ',' ORDER BY subscription_id)
	FROM payments.subscriptions WHERE merchant_id = pg_temp.id('del') AND customer_id = pg_temp.id('dora')),
	'canceled/true/true,canceled/true/true', 'and its subscriptions (trialing, active) are canceled now, never renewed');

------------------------------------------------------------------------------
-- 10. Export and erasure
------------------------------------------------------------------------------
SELECT pg_temp.act_as(pg_temp.id('a')) \gset _
SELECT is((SELECT concat_ws('|', jsonb_array_length(d -> 'subscriptions'), jsonb_array_length(d -> 'invoices'),
	d -> 'subscriptions' -> 0 -> 'metadata' ->> 'seat', d -> 'subscriptions' -> 0 ? 'idempotency_key')
	FROM pay_export_customer(pg_temp.id('ada')) d), '6|4|A-1|f',
	'the export holds the customer''s subscriptions (with metadata, without idempotency keys) and invoices');
-- (erasure ends the customer's subscriptions, which waits for charges in
-- flight: here they are declined, as the worker would record it)
UPDATE payments.payments p SET status = 'failed', decline_code = '2', decline_reason = 'This transaction has been declined.'
FROM payments.invoices i WHERE i.merchant_id = pg_temp.id('a') AND i.customer_id = pg_temp.id('ada')
	AND p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id AND p.status = 'pending';
SELECT pay_erase_customer(pg_temp.id('ada')) \gset _
SELECT is((SELECT count(*)::int FROM payments.subscriptions WHERE merchant_id = pg_temp.id('a') AND customer_id = pg_temp.id('ada')
	AND status NOT IN ('canceled', 'incomplete_expired')), 0, 'erasure ends the customer''s subscriptions');
SELECT is((SELECT count(*)::int FROM payments.subscriptions WHERE merchant_id = pg_temp.id('a') AND customer_id = pg_temp.id('ada')
	AND metadata <> '{}'), 0, 'erasure clears the subscriptions'' metadata');
SELECT is((SELECT count(*)::int FROM payments.audit_log WHERE table_name = 'subscriptions'
	AND (new_row ? 'metadata' OR old_row ? 'metadata')), 0, 'the audit log never held subscription metadata');

------------------------------------------------------------------------------
-- 11. Idempotency: metadata {} is what leaving it out makes
------------------------------------------------------------------------------
SELECT pg_temp.new_merchant('idem') \gset _
SELECT pg_temp.customer_with_card('ida') \gset _
SELECT pg_temp.keep('idem-plan', plan_id) FROM pay_create_plan(name => 'Idem', amount => '5.00 USD') \gset _
SELECT pg_temp.keep('idem-sub', subscription_id) FROM pay_create_subscription(customer_id => pg_temp.id('ida'),
	plan_id => pg_temp.id('idem-plan'), metadata => '{}', idempotency_key => 'sub-empty') \gset _
SELECT is((SELECT subscription_id FROM pay_create_subscription(customer_id => pg_temp.id('ida'),
	plan_id => pg_temp.id('idem-plan'), idempotency_key => 'sub-empty')), pg_temp.id('idem-sub'),
	'a subscription made with metadata {} is returned to the same call without it (not PT409)');

SELECT * FROM finish();
ROLLBACK;
