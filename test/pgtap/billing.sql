-- Billing of subscriptions: the renewal run over a test clock (calendar
-- months, month ends, leap years, time zones, trial end, cancellation at
-- period end, a double run), the outcome of an invoice's charge and
-- dunning (soft declines retried on the policy's days, final action
-- canceled or unpaid, final declines not retried, success on a retry, a new
-- card tried at once, no payment method, the default deleted or its
-- profile gone at the gateway, a default back from a failed deletion),
-- incomplete subscriptions expiring, the invoice and dunning API, and
-- tenancy.
--
-- Subscriptions are inserted as the owner in the state the contract gives
-- them (sql/src/subscription_tables.sql); the first invoice of an
-- incomplete one is issued by _issue_invoice as pay_create_subscription
-- does.  No worker serves this database: the outcome of a charge is applied
-- by updating its payment's status as the owner, as the worker's record step
-- (_record_final_results, _resolve_review) does; the same flows run end to
-- end against the simulator in test/integration (RECUR).
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_ROLLBACK 1
\set ON_ERROR_STOP true
BEGIN;
SELECT plan(202);

-- helpers ------------------------------------------------------------------

CREATE FUNCTION pg_temp.act_as(merchant bigint) RETURNS void LANGUAGE sql AS
	$$ SELECT set_config('payments.merchant_id', coalesce(merchant::text, ''), true) $$;
-- a merchant of its own for each scenario, with its billing clock at t0
CREATE FUNCTION pg_temp.merchant(name text, t0 timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	m bigint;
BEGIN
	INSERT INTO payments.merchants (name) VALUES ('billing-' || name) RETURNING merchant_id INTO m;
	PERFORM pg_temp.act_as(m);
	PERFORM payments.pay_set_test_clock(t0);
	RETURN m;
END
$$;
CREATE FUNCTION pg_temp.clock(m bigint, t timestamptz) RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT pg_temp.act_as(m); SELECT payments.pay_set_test_clock(t) $$;
-- a customer with a stored card (its profile made by the worker already)
CREATE FUNCTION pg_temp.customer(m bigint, with_card boolean DEFAULT true) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	c bigint;
BEGIN
	INSERT INTO payments.customers (merchant_id, customer_profile_id, correlation_id)
	VALUES (m, 'cp-' || m, 'tap') RETURNING customer_id INTO c;
	IF with_card THEN
		PERFORM pg_temp.card(m, c, 'active');
	END IF;
	RETURN c;
END
$$;
CREATE FUNCTION pg_temp.card(m bigint, c bigint, st text, last4 text DEFAULT '1111') RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO payments.payment_methods (merchant_id, customer_id, status, source, validation_mode, is_default,
		card_brand, card_last4, card_exp_month, card_exp_year, customer_profile_id, payment_profile_id, correlation_id)
	VALUES (m, c, st, 'card', 'none', true, 'Visa', last4, 12, 2045, 'cp-' || m,
		CASE WHEN st = 'active' THEN 'pp-' || last4 END, 'tap')
	RETURNING payment_method_id
	$$;
-- a subscription in the state pay_create_subscription leaves it: active in
-- period 0 (its first invoice paid), trialing until trial_end, or
-- incomplete with its first invoice issued and charged
CREATE FUNCTION pg_temp.subscribe(m bigint, c bigint, st text, anchor timestamp,
	unit text DEFAULT 'month', n integer DEFAULT 1, price text DEFAULT '10.00 USD', tz text DEFAULT 'UTC')
	RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	s bigint;
	now_ timestamptz := payments._billing_now(m);
	p0 timestamptz := payments._period_start(anchor, tz, unit, n, 0);
	p1 timestamptz := payments._period_start(anchor, tz, unit, n, 1);
BEGIN
	INSERT INTO payments.subscriptions (merchant_id, customer_id, status, unit_amount, interval_unit,
		interval_count, time_zone, billing_anchor, current_period_index, current_period_start,
		current_period_end, trial_end, next_renewal_at, correlation_id)
	VALUES (m, c, st, price::payments.pay_amount, unit, n, tz, anchor,
		CASE st WHEN 'trialing' THEN -1 ELSE 0 END,
		CASE st WHEN 'trialing' THEN now_ ELSE p0 END, p0 + CASE st WHEN 'trialing' THEN interval '0' ELSE p1 - p0 END,
		CASE st WHEN 'trialing' THEN p0 END,
		CASE st WHEN 'incomplete' THEN now_ + payments._incomplete_expiry() WHEN 'trialing' THEN p0 ELSE p1 END,
		'tap-sub')
	RETURNING subscription_id INTO s;
	IF st = 'incomplete' THEN
		PERFORM payments._issue_invoice(m, s, 'first', 0, p0, p1);
	END IF;
	RETURN s;
END
$$;
CREATE FUNCTION pg_temp.sub(m bigint, s bigint) RETURNS payments.subscriptions LANGUAGE sql AS
	$$ SELECT * FROM payments.subscriptions WHERE merchant_id = m AND subscription_id = s $$;
-- the subscription's latest invoice
CREATE FUNCTION pg_temp.inv(m bigint, s bigint) RETURNS payments.invoices LANGUAGE sql AS
	$$ SELECT * FROM payments.invoices WHERE merchant_id = m AND subscription_id = s ORDER BY invoice_id DESC LIMIT 1 $$;
CREATE FUNCTION pg_temp.invoices(m bigint, s bigint) RETURNS integer LANGUAGE sql AS
	$$ SELECT count(*)::integer FROM payments.invoices WHERE merchant_id = m AND subscription_id = s $$;
CREATE FUNCTION pg_temp.charges(m bigint, s bigint) RETURNS integer LANGUAGE sql AS
	$$ SELECT count(*)::integer FROM payments.payments p JOIN payments.invoices i
		ON i.merchant_id = p.merchant_id AND i.invoice_id = p.invoice_id
		WHERE p.merchant_id = m AND i.subscription_id = s $$;
-- the worker's record step for the latest charge of the subscription's
-- latest invoice: its payment reaches st (failed with a decline code)
CREATE FUNCTION pg_temp.outcome(m bigint, s bigint, st text, code text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	UPDATE payments.payments p SET status = st,
		decline_code = CASE WHEN st = 'failed' THEN code END,
		decline_reason = CASE WHEN st = 'failed' THEN 'This transaction has been declined.' END
	WHERE p.merchant_id = m AND p.payment_id = (pg_temp.inv(m, s)).payment_id
	RETURNING p.status
	$$;
CREATE FUNCTION pg_temp.base36(d text) RETURNS bigint LANGUAGE sql AS $$
	SELECT sum((strpos('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', substr(d, k, 1)) - 1) * (36::numeric ^ (length(d) - k)))::bigint
	FROM generate_series(1, length(d)) k
	$$;
-- an invoice number of a period's charge read back: subscription/period/attempt
CREATE FUNCTION pg_temp.charge_key(n text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN length(n) = 20 AND left(n, 7) = 'S' || payments._invoice_tag()
		THEN concat_ws('/', pg_temp.base36(substr(n, 8, 8)), pg_temp.base36(substr(n, 16, 3)), pg_temp.base36(substr(n, 19, 2)))
		ELSE 'not a period charge: ' || n END
	$$;
CREATE FUNCTION pg_temp.events(m bigint, s bigint, type text) RETURNS integer LANGUAGE sql AS
	$$ SELECT count(*)::integer FROM payments.events WHERE merchant_id = m AND event_type = type
		AND (data ->> 'subscription_id')::bigint = s $$;

-- 1. renewals over a moved clock: month ends ---------------------------------

CREATE TEMP TABLE k AS SELECT pg_temp.merchant('months', '2031-01-31 10:00 UTC') AS m;
ALTER TABLE k ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE k SET c = pg_temp.customer(m);
UPDATE k SET s = pg_temp.subscribe(m, c, 'active', '2031-01-31 10:00');
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 0, 'nothing is due before the period ends');
SELECT pg_temp.clock(m, '2031-02-28 09:59 UTC') FROM k \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 0, 'a minute before the end of February: still nothing');
SELECT pg_temp.clock(m, '2031-02-28 10:00 UTC') FROM k \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 1, 'at the end of the period the run renews it');
SELECT is((SELECT concat_ws('|', kind, status, period_index, period_start, period_end, amount, attempt_count)
	FROM k, pg_temp.inv(m, s)), 'renewal|open|1|2031-02-28 10:00:00+00|2031-03-31 10:00:00+00|10.00 USD|1',
	'an anchor on the 31st: period 1 runs from the last day of February to March 31, invoiced and charged');
SELECT is((SELECT concat_ws('|', status, current_period_index, current_period_start, current_period_end, next_renewal_at)
	FROM k, pg_temp.sub(m, s)), 'active|1|2031-02-28 10:00:00+00|2031-03-31 10:00:00+00|2031-03-31 10:00:00+00',
	'the subscription is in period 1, still active, next renewal at its end');
SELECT is((SELECT concat_ws('|', p.kind, p.status, p.amount, p.payment_method, p.payment_profile_id, o.kind, o.status, o.background)
	FROM k, payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.merchant_id = k.m AND p.payment_id = (pg_temp.inv(k.m, k.s)).payment_id),
	'purchase|pending|10.00 USD|profile|pp-1111|purchase|queued|t',
	'the charge is a purchase of the stored card, queued for the worker as a background charge (claimed after ordinary payments)');
-- a double run, and a run repeated over a state that missed the first run's commit
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 0, 'a second run finds nothing due');
UPDATE payments.subscriptions x SET current_period_index = 0, current_period_start = '2031-01-31 10:00 UTC',
	current_period_end = '2031-02-28 10:00 UTC', next_renewal_at = '2031-02-28 10:00 UTC'
FROM k WHERE x.merchant_id = k.m AND x.subscription_id = k.s;
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 1, 'a subscription put back due is picked again');
SELECT is((SELECT pg_temp.invoices(m, s) || '|' || pg_temp.charges(m, s) FROM k), '1|1',
	'but the unique invoice per period makes it no second invoice and no second charge');
SELECT is((SELECT pg_temp.events(m, s, 'subscription.renewed') FROM k), 2, 'each renewal writes subscription.renewed');
SELECT is((SELECT pg_temp.outcome(m, s, 'succeeded') FROM k), 'succeeded', 'the worker records the charge as succeeded');
SELECT is((SELECT concat_ws('|', i.status, i.paid_at, x.status) FROM k, pg_temp.inv(m, s) i, pg_temp.sub(m, s) x),
	'paid|2031-02-28 10:00:00+00|active', 'the invoice is paid (at billing time), the subscription active');
SELECT pg_temp.clock(m, '2031-03-31 10:00 UTC') FROM k \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM k), 1, 'at the end of March the next renewal');
SELECT is((SELECT concat_ws('|', period_index, period_start, period_end) FROM k, pg_temp.inv(m, s)),
	'2|2031-03-31 10:00:00+00|2031-04-30 10:00:00+00', 'period 2: back on the 31st, to April 30');
-- several periods behind: one per run, each invoiced
SELECT pg_temp.clock(m, '2031-06-15 10:00 UTC') FROM k \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) + payments._run_renewals(m, 100) + payments._run_renewals(m, 100) FROM k), 2,
	'two periods behind: two runs bring it up to date, the third finds nothing');
SELECT is((SELECT string_agg(period_index || ':' || to_char(period_start AT TIME ZONE 'UTC', 'MM-DD'), ',' ORDER BY period_index)
	FROM k, payments.invoices i WHERE i.merchant_id = k.m AND i.subscription_id = k.s),
	'1:02-28,2:03-31,3:04-30,4:05-31', 'every period is invoiced once: Feb 28, Mar 31, Apr 30, May 31');

-- 2. leap years, weeks, time zones -------------------------------------------

CREATE TEMP TABLE ly AS SELECT pg_temp.merchant('leap', '2032-01-31 00:00 UTC') AS m;
ALTER TABLE ly ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN y bigint, ADD COLUMN ny bigint;
UPDATE ly SET c = pg_temp.customer(m);
UPDATE ly SET s = pg_temp.subscribe(m, c, 'active', '2032-01-31 00:00'),
	y = pg_temp.subscribe(m, c, 'active', '2032-02-29 12:00', 'year'),
	ny = pg_temp.subscribe(m, c, 'active', '2032-01-31 09:00', 'month', 1, '10.00 USD', 'America/New_York');
SELECT pg_temp.clock(m, '2032-02-29 00:00 UTC') FROM ly \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ly), 1, 'a leap year: the monthly anchored on January 31 renews on February 29');
SELECT is((SELECT concat_ws('|', period_start, period_end) FROM ly, pg_temp.inv(m, s)),
	'2032-02-29 00:00:00+00|2032-03-31 00:00:00+00', 'its period 1 is February 29 to March 31');
SELECT pg_temp.clock(m, '2033-02-28 12:00 UTC') FROM ly \gset x_
SELECT is((SELECT payments._run_renewals(ly.m, 100) >= 1 FROM ly), true, 'a year later the runs renew what is due');
SELECT is((SELECT concat_ws('|', period_index, period_start, period_end) FROM ly, pg_temp.inv(m, y)),
	'1|2033-02-28 12:00:00+00|2034-02-28 12:00:00+00',
	'a yearly anchored on February 29 bills on February 28 in common years');
SELECT is(payments._period_start('2032-02-29 12:00', 'UTC', 'year', 1, 4), '2036-02-29 12:00 UTC'::timestamptz,
	'and on February 29 again in the next leap year');
SELECT is((SELECT concat_ws('|', period_start, period_end) FROM ly, payments.invoices i
	WHERE i.merchant_id = ly.m AND i.subscription_id = ly.ny AND i.period_index = 1),
	'2032-02-29 14:00:00+00|2032-03-31 13:00:00+00',
	'09:00 in New York stays 09:00 across the change to daylight-saving time (14:00 UTC before, 13:00 after)');

-- 3. the end of a trial -------------------------------------------------------

CREATE TEMP TABLE tr AS SELECT pg_temp.merchant('trial', '2031-05-01 08:00 UTC') AS m;
ALTER TABLE tr ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE tr SET c = pg_temp.customer(m);
UPDATE tr SET s = pg_temp.subscribe(m, c, 'trialing', '2031-05-15 08:00');
SELECT pg_temp.clock(m, '2031-05-15 07:59 UTC') FROM tr \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) || '|' || pg_temp.invoices(m, s) FROM tr), '0|0',
	'during the trial: nothing is billed');
SELECT pg_temp.clock(m, '2031-05-15 08:00 UTC') FROM tr \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM tr), 1, 'at the end of the trial the run bills');
SELECT is((SELECT concat_ws('|', kind, period_index, period_start, period_end, amount) FROM tr, pg_temp.inv(m, s)),
	'renewal|0|2031-05-15 08:00:00+00|2031-06-15 08:00:00+00|10.00 USD', 'the renewal invoice of period 0, from the trial end');
SELECT is((SELECT concat_ws('|', status, current_period_index, next_renewal_at) FROM tr, pg_temp.sub(m, s)),
	'trialing|0|2031-06-15 08:00:00+00', 'the subscription is in period 0, trialing until the charge succeeds');
SELECT is((SELECT (data ->> 'trial_ended')::boolean FROM payments.events e, tr WHERE e.merchant_id = tr.m
	AND e.event_type = 'subscription.renewed'), true, 'subscription.renewed says the trial ended');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM tr \gset x_
SELECT is((SELECT status FROM tr, pg_temp.sub(m, s)), 'active', 'paid: the subscription is active');
SELECT is((SELECT pg_temp.events(m, s, 'subscription.active') FROM tr), 1, 'with its subscription.active event');

-- 3b. a change while the charge at the end of a trial is in flight ----------
-- The trial has ended: period 0 is invoiced at the old amount (30.00, a
-- 30-day June), the subscription trialing until that charge is answered.
-- A change then is prorated as for an active subscription (before: as in a
-- trial, not at all, and the customer had the new quantity for the rest of
-- period 0 without paying for it, whatever the answer).

CREATE TEMP TABLE tc AS SELECT pg_temp.merchant('trial-change', '2031-05-20 00:00 UTC') AS m;
ALTER TABLE tc ADD COLUMN c bigint, ADD COLUMN ok bigint, ADD COLUMN no bigint, ADD COLUMN at_end bigint;
UPDATE tc SET c = pg_temp.customer(m);
UPDATE tc SET ok = pg_temp.subscribe(m, c, 'trialing', '2031-06-01 00:00', 'month', 1, '30.00 USD'),
	no = pg_temp.subscribe(m, c, 'trialing', '2031-06-01 00:00', 'month', 1, '30.00 USD'),
	at_end = pg_temp.subscribe(m, c, 'trialing', '2031-06-01 00:00', 'month', 1, '30.00 USD');
SELECT pg_temp.clock(m, '2031-06-01 00:00 UTC') FROM tc \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM tc), 3, 'the trials end: period 0 of each is invoiced and charged');
SELECT is((SELECT string_agg(concat_ws(':', x.status, x.current_period_index, i.amount, p.status), ',')
	FROM tc, LATERAL unnest(ARRAY[ok, no, at_end]) u(s), pg_temp.sub(m, u.s) x, pg_temp.inv(m, u.s) i
	JOIN payments.payments p ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id),
	'trialing:0:30.00 USD:pending,trialing:0:30.00 USD:pending,trialing:0:30.00 USD:pending',
	'each is trialing in period 0, its 30.00 charge in flight');
-- at the very end of the trial, invoiced now: the whole period at both amounts
SELECT is((SELECT concat_ws('|', x.status, x.quantity) FROM tc,
	pay_change_subscription(at_end, quantity => 2, proration => 'invoice_now') x), 'trialing|2',
	'a second seat at the trial''s end, invoiced now, while the charge of period 0 is in flight');
SELECT is((SELECT concat_ws('|', kind, period_index, amount, lines -> 0 ->> 'amount', lines -> 1 ->> 'amount')
	FROM tc, pg_temp.inv(m, at_end)), 'proration|0|30.00 USD|-30.00 USD|60.00 USD',
	'a proration invoice of the whole period 0: -30.00 + 60.00 = 30.00, charged at once');
SELECT is((SELECT p.invoice_number FROM tc, pg_temp.inv(m, at_end) i
	JOIN payments.payments p ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id),
	(SELECT 'P' || payments._invoice_tag() || i.payment_id FROM tc, pg_temp.inv(m, at_end) i),
	'a proration''s charge carries its payment''s number');
-- ten days into period 0 (the charge still unanswered: held for review, say)
SELECT pg_temp.clock(m, '2031-06-11 00:00 UTC') FROM tc \gset x_
SELECT is((SELECT concat_ws('|', doc ->> 'proration', doc -> 'lines' -> 0 ->> 'amount', doc -> 'lines' -> 1 ->> 'amount', doc ->> 'total')
	FROM tc, pay_preview_subscription_change(ok, quantity => 2) doc), 'next_invoice|-20.00 USD|40.00 USD|20.00 USD',
	'the preview: 20 of 30 days left, a credit of -20.00 at 30.00 and a charge of 40.00 at 60.00');
SELECT is((SELECT count(*)::integer FROM tc, LATERAL unnest(ARRAY[ok, no]) u(s), pay_change_subscription(u.s, quantity => 2) x
	WHERE x.quantity = 2), 2, 'the change is made');
SELECT is((SELECT string_agg(concat_ws(':', i.subscription_id = tc.ok, i.amount, i.invoice_id IS NULL), ',' ORDER BY i.item_id)
	FROM tc, payments.invoice_items i WHERE i.merchant_id = tc.m AND i.subscription_id IN (tc.ok, tc.no)),
	't:-20.00 USD:t,t:40.00 USD:t,f:-20.00 USD:t,f:40.00 USD:t',
	'its proration waits for the next invoice, as the preview said');
-- the answers
SELECT pg_temp.outcome(m, ok, 'succeeded') FROM tc \gset x_
SELECT is((SELECT concat_ws('|', x.status, x.quantity, i.status, i.amount) FROM tc, pg_temp.sub(m, ok) x, pg_temp.inv(m, ok) i),
	'active|2|paid|30.00 USD', 'approved: active, two seats; period 0''s invoice paid, 30.00 as charged');
SELECT pg_temp.outcome(m, no, 'failed', '2') FROM tc \gset x_
SELECT is((SELECT concat_ws('|', x.status, x.quantity, i.status, i.amount, i.next_attempt_at) FROM tc, pg_temp.sub(m, no) x, pg_temp.inv(m, no) i),
	'past_due|2|open|30.00 USD|2031-06-12 00:00:00+00',
	'declined: past_due, two seats; period 0''s invoice open at 30.00, retried the next day');
SELECT is((SELECT count(*)::integer FROM tc, payments.invoice_items i WHERE i.merchant_id = tc.m AND i.subscription_id = tc.no
	AND i.invoice_id IS NULL), 2, 'and its proration still waits for the next invoice');
SELECT pg_temp.clock(m, '2031-07-01 00:00 UTC') FROM tc \gset x_
SELECT payments._run_renewals(m, 100) FROM tc \gset x_
SELECT is((SELECT concat_ws('|', kind, period_index, amount, jsonb_array_length(lines)) FROM tc, pg_temp.inv(m, ok)),
	'renewal|1|80.00 USD|3', 'the approved one''s next invoice: 2 x 30.00 + 20.00 = 80.00 (period 0 cost 30.00 for 10 days, 60.00 for 20)');

-- 3c. expiring-card notices follow the billing clock -------------------------
-- A card valid through December 2045 (its last day December 31) under a
-- test clock in November and December 2045: listed and noticed 30 days
-- before by that clock (before: by the real date, years away, so never
-- while the clock said so).  A merchant without a clock: by the real date.

CREATE TEMP TABLE ex AS SELECT pg_temp.merchant('expiry-clock', '2045-11-30 12:00 UTC') AS m;
ALTER TABLE ex ADD COLUMN c bigint, ADD COLUMN pm bigint, ADD COLUMN r bigint;
UPDATE ex SET c = pg_temp.customer(m, false);
UPDATE ex SET pm = pg_temp.card(m, c, 'active', '4242');
SELECT is((SELECT count(*)::integer FROM pay_expiring_payment_methods(within_days => 30)), 0,
	'by the clock on November 30, 2045 the card''s last day (December 31) is 31 days away: not within 30');
SELECT payments.pay_run_expiry_notices() \gset x_
SELECT is((SELECT count(*)::integer FROM ex, payments.events e WHERE e.merchant_id = ex.m
	AND e.event_type = 'payment_method.expiring'), 0, 'and no notice is written');
SELECT pg_temp.clock(m, '2045-12-01 12:00 UTC') FROM ex \gset x_
SELECT is((SELECT string_agg(x.payment_method_id::text, ',') FROM pay_expiring_payment_methods(within_days => 30) x),
	(SELECT pm::text FROM ex), 'a day later by the clock it is listed as expiring within 30 days');
SELECT payments.pay_run_expiry_notices() \gset x_
SELECT is((SELECT string_agg(concat_ws('|', e.data ->> 'payment_method_id', e.data ->> 'expires_at'), ',')
	FROM ex, payments.events e WHERE e.merchant_id = ex.m AND e.event_type = 'payment_method.expiring'),
	(SELECT pm || '|2045-12-31' FROM ex), 'the notice run writes its payment_method.expiring event, by the merchant''s clock');
INSERT INTO payments.merchants (name) VALUES ('billing-expiry-real') RETURNING merchant_id AS expiry_real \gset
SELECT pg_temp.act_as(:expiry_real) \gset x_
UPDATE ex SET r = pg_temp.card(:expiry_real, pg_temp.customer(:expiry_real, false), 'active', '4343');
SELECT payments.pay_run_expiry_notices() \gset x_
SELECT is((SELECT count(*)::integer FROM pay_expiring_payment_methods(within_days => 30))
	+ (SELECT count(*)::integer FROM payments.events e WHERE e.merchant_id = :expiry_real
		AND e.event_type = 'payment_method.expiring'), 0,
	'a merchant without a clock: the same card, by the real date, is neither listed nor noticed');

-- 3d. expiring-card notices do not follow the session's TimeZone ----------
-- A merchant has no time zone of its own: its billing date is the UTC date
-- of its billing clock, whatever TimeZone the caller's session (or the
-- worker's, or pg_cron's) has.  Before: _billing_now(m)::date, the date in
-- the session's zone, so the same card was listed or not, and noticed or
-- not, by the client that asked.  Card valid through December 31, 2045.

CREATE TEMP TABLE ez AS SELECT pg_temp.merchant('expiry-west', '2045-12-01 02:00 UTC') AS w,
	pg_temp.merchant('expiry-east', '2045-11-30 12:00 UTC') AS e;
ALTER TABLE ez ADD COLUMN wpm bigint, ADD COLUMN epm bigint;
UPDATE ez SET wpm = pg_temp.card(w, pg_temp.customer(w, false), 'active', '4545'),
	epm = pg_temp.card(e, pg_temp.customer(e, false), 'active', '4646');
-- December 1 by UTC, still November 30 in New York: the last day is 30 days away
SET LOCAL TimeZone = 'America/New_York';
SELECT pg_temp.act_as(w) FROM ez \gset x_
SELECT is((SELECT string_agg(x.payment_method_id::text, ',') FROM pay_expiring_payment_methods(within_days => 30) x),
	(SELECT wpm::text FROM ez), 'December 1 UTC, a session in New York (November 30 there): listed as expiring within 30 days');
-- November 30 by UTC, already December 1 on Kiritimati: 31 days away
SET LOCAL TimeZone = 'Pacific/Kiritimati';
SELECT pg_temp.act_as(e) FROM ez \gset x_
SELECT is((SELECT count(*)::integer FROM pay_expiring_payment_methods(within_days => 30)), 0,
	'November 30 UTC, a session on Kiritimati (December 1 there): not listed as expiring within 30 days');
SELECT payments.pay_run_expiry_notices() \gset x_
SELECT is((SELECT string_agg(e.merchant_id::text, ',' ORDER BY e.merchant_id) FROM ez, payments.events e
	WHERE e.merchant_id IN (ez.w, ez.e) AND e.event_type = 'payment_method.expiring'),
	(SELECT w::text FROM ez), 'the notice run from a session on Kiritimati notices the card due by UTC only');
SET LOCAL TimeZone = 'UTC';

-- 4. cancellation at the period's end ---------------------------------------

CREATE TEMP TABLE ca AS SELECT pg_temp.merchant('cancel', '2031-07-01 00:00 UTC') AS m;
ALTER TABLE ca ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE ca SET c = pg_temp.customer(m);
UPDATE ca SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00', 'week', 2);
UPDATE payments.subscriptions x SET cancel_at_period_end = true FROM ca WHERE x.merchant_id = ca.m AND x.subscription_id = ca.s;
SELECT pg_temp.clock(m, '2031-07-16 00:00 UTC') FROM ca \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ca), 1, 'a subscription to cancel at the period''s end is handled at that end');
SELECT is((SELECT concat_ws('|', status, ended_at, next_renewal_at IS NULL, pg_temp.invoices(m, s)) FROM ca, pg_temp.sub(m, s)),
	'canceled|2031-07-15 00:00:00+00|t|0', 'it is canceled, ended at the end of its two weeks, and nothing is invoiced');
SELECT is((SELECT pg_temp.events(m, s, 'subscription.canceled') FROM ca), 1, 'subscription.canceled is written');

-- 5. dunning: soft declines retried on days 1, 3, 5, 7, then canceled --------

CREATE TEMP TABLE dn AS SELECT pg_temp.merchant('dunning', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE dn ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE dn SET c = pg_temp.customer(m);
UPDATE dn SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT is((SELECT payments._run_renewals(m, 100) FROM dn), 1, 'the renewal of August 1');
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM dn \gset x_
SELECT is((SELECT concat_ws('|', i.status, i.first_failed_at, i.next_attempt_at, i.last_failure_code, x.status, x.next_renewal_at IS NULL)
	FROM dn, pg_temp.inv(m, s) i, pg_temp.sub(m, s) x),
	'open|2031-08-01 00:00:00+00|2031-08-02 00:00:00+00|2|past_due|t',
	'a declined renewal: the subscription is past_due, the invoice retried a day after the first failure');
SELECT is((SELECT pg_temp.events(m, s, 'invoice.payment_failed') || '|' || pg_temp.events(m, s, 'invoice.retry_scheduled')
	|| '|' || pg_temp.events(m, s, 'subscription.past_due') FROM dn), '1|1|1',
	'events: invoice.payment_failed, invoice.retry_scheduled, subscription.past_due');
SELECT is((SELECT (data ->> 'retry') || '/' || (data ->> 'retries') FROM payments.events e, dn WHERE e.merchant_id = dn.m
	AND e.event_type = 'invoice.retry_scheduled'), '1/4', 'retry 1 of 4');
SELECT pg_temp.clock(m, '2031-08-01 23:59 UTC') FROM dn \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM dn), 0, 'no retry before the day has come');
CREATE TEMP TABLE dn_steps (day text, attempts integer, next_at timestamptz, sub_status text, inv_status text);
DO $$
DECLARE
	d text;
	m bigint := (SELECT m FROM dn);
	s bigint := (SELECT s FROM dn);
BEGIN
	FOREACH d IN ARRAY ARRAY['2031-08-02', '2031-08-04', '2031-08-06', '2031-08-08'] LOOP
		PERFORM pg_temp.clock(m, (d || ' 00:00 UTC')::timestamptz);
		PERFORM payments._run_dunning(m, 100);
		PERFORM payments._run_dunning(m, 100);
		PERFORM pg_temp.outcome(m, s, 'failed', '2');
		INSERT INTO dn_steps SELECT d, i.attempt_count, i.next_attempt_at, x.status, i.status
		FROM pg_temp.inv(m, s) i, pg_temp.sub(m, s) x;
	END LOOP;
END
$$;
SELECT is((SELECT string_agg(concat_ws(' ', day, attempts, to_char(next_at AT TIME ZONE 'UTC', 'MM-DD'), sub_status, inv_status), ', ' ORDER BY day) FROM dn_steps),
	'2031-08-02 2 08-04 past_due open, 2031-08-04 3 08-06 past_due open, 2031-08-06 4 08-08 past_due open, 2031-08-08 5 canceled uncollectible',
	'retried once on each of days 1, 3, 5 and 7 (two runs each day, one charge); after the fourth retry fails: canceled, uncollectible');
SELECT is((SELECT pg_temp.charges(m, s) || '|' || pg_temp.invoices(m, s) FROM dn), '5|1', 'five charges of one invoice in all');
-- what each charge carried at the gateway: S, the tag, then the subscription,
-- the period and the attempt in base 36 (read back here digit by digit)
SELECT is((SELECT string_agg(pg_temp.charge_key(p.invoice_number), ',' ORDER BY p.payment_id)
	FROM dn JOIN payments.payments p ON p.merchant_id = dn.m AND p.invoice_id = (pg_temp.inv(dn.m, dn.s)).invoice_id),
	(SELECT string_agg(format('%s/%s/%s', dn.s, (pg_temp.inv(dn.m, dn.s)).period_index, a), ',' ORDER BY a)
	 FROM dn, generate_series(1, 5) a),
	'each charge of a period is numbered by subscription, period and attempt: a billing run repeated elsewhere makes the same number');
SELECT is((SELECT payments._invoice_charge_number(jsonb_populate_record(i, jsonb_build_object('attempt_count', 1296)), 42)
	FROM dn, pg_temp.inv(m, s) i), 'P' || payments._invoice_tag() || '42',
	'an attempt beyond two base-36 digits gets its payment''s number');
SELECT is((SELECT payments._invoice_charge_number(jsonb_populate_record(i, jsonb_build_object('subscription_id', 36::bigint ^ 8)), 42)
	FROM dn, pg_temp.inv(m, s) i), 'P' || payments._invoice_tag() || '42',
	'so does a subscription id beyond eight');
SELECT is((SELECT pg_temp.charge_key(payments._invoice_charge_number(jsonb_populate_record(i,
		jsonb_build_object('subscription_id', 36::bigint ^ 8 - 1, 'period_index', 46655, 'attempt_count', 1295)), 42))
	FROM dn, pg_temp.inv(m, s) i), (36::bigint ^ 8 - 1)::bigint || '/46655/1295',
	'the largest numbers that fit take all 20 characters');
SELECT is((SELECT concat_ws('|', status, ended_at, canceled_at) FROM dn, pg_temp.sub(m, s)),
	'canceled|2031-08-08 00:00:00+00|2031-08-08 00:00:00+00', 'the subscription ended on the day of the last retry');
SELECT is((SELECT concat_ws('|', data ->> 'final_action', data ->> 'attempt_count', data ->> 'invoice_id' = (pg_temp.inv(m, s)).invoice_id::text)
	FROM payments.events e, dn WHERE e.merchant_id = dn.m AND e.event_type = 'subscription.dunning_exhausted'),
	'canceled|5|t', 'subscription.dunning_exhausted names the final action and the invoice');
SELECT is((SELECT pg_temp.events(m, s, 'invoice.retry_attempted') || '|' || pg_temp.events(m, s, 'invoice.payment_failed')
	|| '|' || pg_temp.events(m, s, 'invoice.uncollectible') FROM dn), '4|5|1',
	'events: four retries attempted, five failures, the invoice uncollectible');
SELECT pg_temp.clock(m, '2031-09-01 00:00 UTC') FROM dn \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) + payments._run_dunning(m, 100) FROM dn), 0,
	'a canceled subscription is neither renewed nor retried');

-- 6. final action unpaid; a new card pays the uncollectible invoice ----------

CREATE TEMP TABLE up AS SELECT pg_temp.merchant('unpaid', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE up ADD COLUMN c bigint, ADD COLUMN s bigint;
SELECT pg_temp.act_as(m) FROM up \gset x_
SELECT is((SELECT concat_ws('|', retry_days::text, final_action, updated_at IS NULL) FROM pay_get_dunning_policy()),
	'{1,3,5,7}|canceled|t', 'a merchant without a policy has the defaults');
SELECT is((SELECT concat_ws('|', retry_days::text, final_action) FROM pay_set_dunning_policy(retry_days => '{2}', final_action => 'unpaid')),
	'{2}|unpaid', 'pay_set_dunning_policy sets the days and the final action');
SELECT is((SELECT concat_ws('|', retry_days::text, final_action) FROM pay_set_dunning_policy(retry_days => '{1}')),
	'{1}|unpaid', 'a part not given is kept');
SELECT throws_ok($$SELECT pay_set_dunning_policy(retry_days => '{3,1}')$$, '22023', NULL, 'retry days must increase');
SELECT throws_ok($$SELECT pay_set_dunning_policy(retry_days => '{0}')$$, '22023', NULL, 'retry days start at 1');
SELECT throws_ok($$SELECT pay_set_dunning_policy(retry_days => '{1,2,3,4,5,6,7,8,9,10,11}')$$, '22023', NULL, 'at most 10 retries');
SELECT throws_ok($$SELECT pay_set_dunning_policy(final_action => 'paused')$$, '22023', NULL, 'the final action is canceled or unpaid');
UPDATE up SET c = pg_temp.customer(m);
UPDATE up SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM up \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM up \gset x_
SELECT pg_temp.clock(m, '2031-08-02 00:00 UTC') FROM up \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM up), 1, 'the one retry on day 1');
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM up \gset x_
SELECT is((SELECT concat_ws('|', x.status, x.ended_at IS NULL, i.status, i.attempt_count) FROM up, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'unpaid|t|uncollectible|2', 'final action unpaid: the subscription stays (unpaid), the invoice is uncollectible');
SELECT pg_temp.clock(m, '2031-09-01 00:00 UTC') FROM up \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM up), 0, 'an unpaid subscription is not renewed');
-- the customer saves a new card, which becomes the default once the worker made its profile
UPDATE payments.payment_methods x SET is_default = false FROM up WHERE x.merchant_id = up.m AND x.customer_id = up.c;
SELECT pg_temp.card(m, c, 'pending', '4242') FROM up \gset x_
SELECT is((SELECT pg_temp.charges(m, s) FROM up), 2, 'a card still pending charges nothing');
UPDATE payments.payment_methods x SET status = 'active', payment_profile_id = 'pp-4242'
FROM up WHERE x.merchant_id = up.m AND x.customer_id = up.c AND x.card_last4 = '4242';
SELECT is((SELECT concat_ws('|', pg_temp.charges(m, s), p.payment_profile_id, p.status, o.background)
	FROM up, payments.payments p JOIN payments.operations o USING (merchant_id, payment_id)
	WHERE p.merchant_id = up.m AND p.payment_id = (pg_temp.inv(up.m, up.s)).payment_id), '3|pp-4242|pending|f',
	'once active, the new card is charged at once for the uncollectible invoice, as an ordinary operation (not a background one)');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM up \gset x_
SELECT is((SELECT string_agg(concat_ws(' ', i.period_index, i.status, i.amount), ', ' ORDER BY i.invoice_id) FROM up, payments.invoices i
	WHERE i.merchant_id = up.m AND i.subscription_id = up.s),
	'1 paid 10.00 USD, 2 open 10.00 USD', 'paid on the first day of the next period: that period (2) is invoiced at once, whole');
SELECT is((SELECT concat_ws('|', x.status, x.current_period_index, x.next_renewal_at) FROM up, pg_temp.sub(m, s) x),
	'active|2|2031-10-01 00:00:00+00', 'the subscription is active again in the period containing now, renewing at its end');
-- unpaid for months, then paid: it resumes in the period containing now,
-- the months it spent unpaid (kept, not renewed) are never billed
CREATE TEMP TABLE ul AS SELECT pg_temp.merchant('unpaid-late', '2031-01-10 12:00 UTC') AS m;
ALTER TABLE ul ADD COLUMN s bigint;
SELECT pay_set_dunning_policy(retry_days => '{}', final_action => 'unpaid') FROM ul \gset x_
UPDATE ul SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-01-10 12:00');
SELECT pg_temp.clock(m, '2031-02-10 13:00 UTC') FROM ul \gset x_
SELECT payments._run_renewals(m, 100) FROM ul \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM ul \gset x_
SELECT is((SELECT x.status FROM ul, pg_temp.sub(m, s) x), 'unpaid', 'the February renewal failed: unpaid');
SELECT pg_temp.clock(m, '2031-06-12 12:00 UTC') FROM ul \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ul), 0, 'not renewed while unpaid');
SELECT is((SELECT payments._retry_open_invoice_now(m, s) FROM ul), 1, 'on 12 June a card pays the February invoice');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM ul \gset x_
SELECT is((SELECT string_agg(concat_ws(' ', i.period_index, i.status, i.amount), ', ' ORDER BY i.invoice_id) FROM ul, payments.invoices i
	WHERE i.merchant_id = ul.m AND i.subscription_id = ul.s),
	'1 paid 10.00 USD, 5 open 9.33 USD', 'then only the rest of the June period (28 of 30 days) is invoiced: March to May are not');
SELECT is((SELECT concat_ws('|', x.status, x.current_period_index, x.current_period_start, x.next_renewal_at) FROM ul, pg_temp.sub(m, s) x),
	'active|5|2031-06-10 12:00:00+00|2031-07-10 12:00:00+00', 'active in the June period, renewing at its end');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM ul \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ul), 0, 'nothing more is due in June');
SELECT pg_temp.clock(m, '2031-07-10 13:00 UTC') FROM ul \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) || ' ' || pg_temp.invoices(m, s) FROM ul), '1 3', 'July is renewed as usual');

-- 7. a final decline is not retried ------------------------------------------

CREATE TEMP TABLE hd AS SELECT pg_temp.merchant('hard', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE hd ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE hd SET c = pg_temp.customer(m);
UPDATE hd SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM hd \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '8') FROM hd \gset x_
SELECT is((SELECT concat_ws('|', x.status, i.next_attempt_at, pg_temp.events(m, s, 'invoice.retry_scheduled'))
	FROM hd, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i), 'past_due|2031-08-08 00:00:00+00|0',
	'an expired card (reason 8): past_due, no retry scheduled, the final action waits for the schedule''s last day');
SELECT is((SELECT (data ->> 'retryable')::boolean FROM payments.events e, hd WHERE e.merchant_id = hd.m
	AND e.event_type = 'invoice.payment_failed'), false, 'invoice.payment_failed says it is not retried');
SELECT pg_temp.clock(m, '2031-08-02 00:00 UTC') FROM hd \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM hd), 0, 'no retry on day 1');
SELECT pg_temp.clock(m, '2031-08-06 00:00 UTC') FROM hd \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) || '|' || pg_temp.charges(m, s) FROM hd), '0|1', 'nor on days 3 and 5');
SELECT pg_temp.clock(m, '2031-08-08 00:00 UTC') FROM hd \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM hd), 1, 'on day 7 the run applies the final action');
SELECT is((SELECT concat_ws('|', x.status, i.status, pg_temp.charges(m, s)) FROM hd, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'canceled|uncollectible|1', 'canceled after the one charge');
SELECT ok(payments._decline_is_final('4') AND payments._decline_is_final('6') AND payments._decline_is_final('37')
	AND payments._decline_is_final('E00040') AND NOT payments._decline_is_final('2')
	AND NOT payments._decline_is_final('44') AND NOT payments._decline_is_final(NULL),
	'pick-up, invalid card numbers and a lost profile are final; a generic or card-code decline is not');

-- 8. success on the second retry ---------------------------------------------

CREATE TEMP TABLE ok2 AS SELECT pg_temp.merchant('retry-ok', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE ok2 ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE ok2 SET c = pg_temp.customer(m);
UPDATE ok2 SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM ok2 \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM ok2 \gset x_
SELECT pg_temp.clock(m, '2031-08-02 00:00 UTC') FROM ok2 \gset x_
SELECT payments._run_dunning(m, 100) FROM ok2 \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '3') FROM ok2 \gset x_
SELECT pg_temp.clock(m, '2031-08-04 00:00 UTC') FROM ok2 \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM ok2), 1, 'retry 2 on day 3');
-- held for review, then in doubt: the invoice waits
UPDATE payments.payments p SET status = 'in_review' FROM ok2 WHERE p.merchant_id = ok2.m AND p.payment_id = (pg_temp.inv(ok2.m, ok2.s)).payment_id;
SELECT is((SELECT concat_ws('|', x.status, i.status, i.next_attempt_at IS NULL) FROM ok2, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'past_due|open|t', 'a charge held for review: the invoice waits, nothing scheduled');
SELECT pg_temp.clock(m, '2031-08-06 00:00 UTC') FROM ok2 \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) || '|' || payments._retry_open_invoice_now(m, s) FROM ok2), '0|0',
	'no retry while a charge is in flight, not even for a new card');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM ok2 \gset x_
SELECT is((SELECT concat_ws('|', x.status, x.next_renewal_at, i.status, i.attempt_count, i.paid_at) FROM ok2, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'active|2031-09-01 00:00:00+00|paid|3|2031-08-06 00:00:00+00', 'it succeeds: active again, the invoice paid after three charges');
SELECT is((SELECT pg_temp.events(m, s, 'subscription.active') || '|' || pg_temp.events(m, s, 'invoice.paid') FROM ok2), '1|1',
	'subscription.active and invoice.paid');
SELECT pg_temp.clock(m, '2031-09-01 00:00 UTC') FROM ok2 \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) || '|' || (pg_temp.inv(m, s)).period_index FROM ok2), '1|2',
	'and renews at its period''s end');

-- 8b. a new dunning policy applies to the retries not yet made ---------------
CREATE TEMP TABLE pl AS SELECT pg_temp.merchant('policy-change', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE pl ADD COLUMN s bigint;
UPDATE pl SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM pl \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM pl \gset x_
SELECT is((SELECT i.next_attempt_at FROM pl, pg_temp.inv(m, s) i), '2031-08-02 00:00 UTC'::timestamptz,
	'a soft decline under the default policy: retried on day 1');
SELECT is((SELECT retry_days::text FROM pay_set_dunning_policy(retry_days => '{2,4}')), '{2,4}', 'the policy becomes days 2 and 4');
SELECT is((SELECT i.next_attempt_at FROM pl, pg_temp.inv(m, s) i), '2031-08-03 00:00 UTC'::timestamptz,
	'the retry already scheduled moves to day 2');
SELECT is((SELECT concat_ws('|', e.data ->> 'reason', e.data ->> 'retry', e.data ->> 'retries') FROM payments.events e, pl
	WHERE e.merchant_id = pl.m AND e.event_type = 'invoice.retry_scheduled' ORDER BY e.event_id DESC LIMIT 1),
	'policy_changed|1|2', 'invoice.retry_scheduled says so');
SELECT pg_temp.clock(m, '2031-08-02 12:00 UTC') FROM pl \gset x_
SELECT is((SELECT payments._run_dunning(m, 100) FROM pl), 0, 'nothing is retried on day 1 any more');
SELECT is((SELECT concat_ws('|', retry_days::text, final_action) FROM pay_set_dunning_policy(retry_days => '{}', final_action => 'unpaid')),
	'{}|unpaid', 'then no retries at all, final action unpaid');
SELECT is((SELECT concat_ws('|', x.status, i.status, i.attempt_count, i.next_attempt_at IS NULL) FROM pl, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'unpaid|uncollectible|1|t', 'no retry is left: the final action applies at once, the card is not charged again');

-- 9. a card updated during dunning is tried at once; a late success ----------

CREATE TEMP TABLE cu AS SELECT pg_temp.merchant('card-update', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE cu ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN pm2 bigint;
UPDATE cu SET c = pg_temp.customer(m);
UPDATE cu SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM cu \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM cu \gset x_
SELECT pg_temp.clock(m, '2031-08-01 12:00 UTC') FROM cu \gset x_
-- the customer saves a second card, made the default
UPDATE cu SET pm2 = (SELECT payment_method_id FROM pay_save_payment_method(customer_id => cu.c,
	card => payments.pay_card('4007000000027', 12, 2045, '123'), validation_mode => 'none'))
FROM (SELECT pg_temp.act_as(m) FROM cu) x;
SELECT is((SELECT pg_temp.charges(m, s) FROM cu), 1, 'a saved card the worker has not stored yet charges nothing');
UPDATE payments.payment_methods x SET status = 'active', payment_profile_id = 'pp-new'
FROM cu WHERE x.merchant_id = cu.m AND x.payment_method_id = cu.pm2;
SELECT is((SELECT concat_ws('|', pg_temp.charges(m, s), p.payment_method_id = cu.pm2, i.attempt_count, i.next_attempt_at IS NULL)
	FROM cu, pg_temp.inv(m, s) i, payments.payments p WHERE p.merchant_id = cu.m AND p.payment_id = i.payment_id),
	'2|t|2|t', 'the new default card is charged at once, before the retry of day 1');
SELECT is((SELECT data ->> 'reason' FROM payments.events e, cu WHERE e.merchant_id = cu.m AND e.event_type = 'invoice.retry_attempted'),
	'payment_method_updated', 'invoice.retry_attempted says why');
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM cu \gset x_
SELECT is((SELECT concat_ws('|', i.next_attempt_at, x.status) FROM cu, pg_temp.inv(m, s) i, pg_temp.sub(m, s) x),
	'2031-08-02 00:00:00+00|past_due', 'it fails too: the schedule goes on from the first failure (day 1)');
SELECT is((SELECT payments._retry_open_invoice_now(m, s) FROM cu), 1,
	'_retry_open_invoice_now (pay_update_subscription''s call) charges again at once');
SELECT pg_temp.outcome(m, s, 'succeeded') FROM cu \gset x_
SELECT is((SELECT concat_ws('|', x.status, i.status) FROM cu, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i), 'active|paid',
	'paid by the new card: active');
-- a late success of another charge of the paid invoice is money to give back
INSERT INTO payments.payments (merchant_id, kind, amount, amount_refunded, payment_method, invoice_number, correlation_id, invoice_id)
SELECT m, 'purchase', '10.00 USD', '0.00 USD', 'profile', 'late-' || m, 'tap', (pg_temp.inv(m, s)).invoice_id FROM cu;
UPDATE payments.payments p SET status = 'succeeded' FROM cu WHERE p.merchant_id = cu.m AND p.invoice_number = 'late-' || cu.m;
SELECT is((SELECT pg_temp.events(m, s, 'invoice.payment_after_close') || '|' || (pg_temp.inv(m, s)).status FROM cu), '1|paid',
	'a charge that succeeds for an invoice already paid writes invoice.payment_after_close');

-- 10. no payment method at renewal ---------------------------------------------

CREATE TEMP TABLE np AS SELECT pg_temp.merchant('no-method', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE np ADD COLUMN c bigint, ADD COLUMN s bigint;
UPDATE np SET c = pg_temp.customer(m, with_card => false);
UPDATE np SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT is((SELECT payments._run_renewals(m, 100) FROM np), 1, 'a renewal for a customer without a card');
SELECT is((SELECT concat_ws('|', x.status, i.status, i.attempt_count, i.last_failure_code, i.next_attempt_at,
	pg_temp.events(m, s, 'invoice.payment_failed')) FROM np, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'past_due|open|0|no_payment_method|2031-08-08 00:00:00+00|1',
	'enters dunning like a declined charge: past_due, payment_failed, nothing to retry until the final day');
SELECT pg_temp.card(m, c, 'active', '5555') FROM np \gset x_
SELECT is((SELECT pg_temp.charges(m, s) FROM np), 0, 'a card inserted active is not a card becoming active (nothing yet)');
UPDATE payments.payment_methods x SET is_default = false FROM np WHERE x.merchant_id = np.m;
UPDATE payments.payment_methods x SET is_default = true FROM np WHERE x.merchant_id = np.m;
SELECT is((SELECT pg_temp.charges(m, s) || '|' || (pg_temp.inv(m, s)).attempt_count FROM np), '1|1',
	'the card made the default is charged at once');

-- 10b. a renewal while the customer's new default card is still being saved -----
-- The card being replaced is still active: the renewal is charged to it, not
-- failed as "no payment method"; if the new card's save fails, the old one is
-- the default again.
CREATE TEMP TABLE cw AS SELECT pg_temp.merchant('card-swap', '2031-04-01 00:00 UTC') AS m;
ALTER TABLE cw ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN old bigint, ADD COLUMN new bigint;
UPDATE cw SET c = pg_temp.customer(m);
UPDATE cw SET old = (SELECT payment_method_id FROM payments.payment_methods x WHERE x.merchant_id = cw.m AND x.customer_id = cw.c),
	s = pg_temp.subscribe(m, c, 'active', '2031-03-01 00:00');
UPDATE cw SET new = (SELECT payment_method_id FROM pay_save_payment_method(customer_id => c,
	card => payments.pay_card('5424000000000015', 12, 2045, '123'), validation_mode => 'none'));
SELECT is((SELECT string_agg(concat_ws(' ', x.payment_method_id = cw.new, x.status, x.is_default), ', ' ORDER BY x.payment_method_id)
	FROM cw, payments.payment_methods x WHERE x.merchant_id = cw.m AND x.customer_id = cw.c),
	'f active f, t pending t', 'the new card is the default at once, still pending');
SELECT is((SELECT payments._run_renewals(m, 100) FROM cw), 1, 'the renewal is due meanwhile');
SELECT is((SELECT concat_ws('|', x.status, i.status, p.payment_method_id = cw.old, p.payment_profile_id, p.status)
	FROM cw, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i
	JOIN payments.payments p ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id),
	'active|open|t|pp-1111|pending', 'it is charged to the active card being replaced, not failed for want of a payment method');
SELECT is((SELECT pg_temp.events(m, s, 'invoice.payment_failed') FROM cw), 0, 'no invoice.payment_failed');
-- a purchase checks the profile ids it sends: digits, as the gateway gives them
UPDATE payments.payment_methods x SET customer_profile_id = '5001', payment_profile_id = '7001'
FROM cw WHERE x.merchant_id = cw.m AND x.payment_method_id = cw.old;
SELECT is((SELECT concat_ws('|', p.payment_method_id = cw.old, p.payment_profile_id, p.card_last4)
	FROM cw, pay_purchase(amount => '5.00 USD', customer_id => cw.c) p), 't|7001|1111',
	'a purchase of the customer alone (pay_purchase with customer_id) is charged to that card too, not refused');
UPDATE payments.payment_methods x SET status = 'failed', is_default = false, failure_code = 'E00027'
FROM cw WHERE x.merchant_id = cw.m AND x.payment_method_id = cw.new;
SELECT is((SELECT string_agg(concat_ws(' ', x.payment_method_id = cw.new, x.status, x.is_default), ', ' ORDER BY x.payment_method_id)
	FROM cw, payments.payment_methods x WHERE x.merchant_id = cw.m AND x.customer_id = cw.c),
	'f active t, t failed f', 'the new card''s save fails: the old card is the default again');

-- 10c. the customer's default deleted, or its profile gone at the gateway ------
-- No other card of the customer is charged in its place: the renewal fails
-- as data (no_payment_method, dunning), a purchase by customer_id is refused
-- saying there is no default and how to set one; the card made the default
-- is charged at once.  A renewal answered E00040 (the profile deleted at the
-- gateway outside payments) fails the method: payment_method_gone, final.
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		hnt = PG_EXCEPTION_HINT;
	RETURN concat_ws(' / ', st, msg, det, hnt);
END
$$;
CREATE TEMP TABLE dd AS SELECT pg_temp.merchant('default-deleted', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE dd ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN a bigint, ADD COLUMN b bigint;
UPDATE dd SET c = pg_temp.customer(m, with_card => false);
UPDATE dd SET a = pg_temp.card(m, c, 'active', '1111');
UPDATE payments.payment_methods x SET is_default = false FROM dd WHERE x.merchant_id = dd.m;
UPDATE dd SET b = pg_temp.card(m, c, 'active', '2222');
UPDATE dd SET s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
-- the default (b) is deleted: deleting, then deleted by the worker
SELECT is((SELECT status FROM dd, pay_delete_payment_method(dd.b)), 'deleting', 'the default is being deleted');
SELECT is((SELECT pg_temp.error_of(format('SELECT pay_purchase(amount => %L, customer_id => %s)', '5.00 USD', c)) FROM dd),
	(SELECT format('22Y22 / customer %s has no default payment method / Its default payment method %s is being deleted. / Make one of its active payment methods the default (pay_set_default_payment_method), save a new one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.', c, b) FROM dd),
	'a purchase by customer_id while the default is being deleted: 22Y22 says so and how to set one');
UPDATE payments.payment_methods x SET status = 'deleted', is_default = false FROM dd
WHERE x.merchant_id = dd.m AND x.payment_method_id = dd.b;
SELECT is((SELECT pg_temp.error_of(format('SELECT pay_purchase(amount => %L, customer_id => %s)', '5.00 USD', c)) FROM dd),
	(SELECT format('22Y22 / customer %s has no default payment method / It has 1 active payment method, none of them the default; none is charged in the default''s place. / Make one of its active payment methods the default (pay_set_default_payment_method), save a new one (pay_save_payment_method), or pass card, opaque_data or payment_method_id.', c) FROM dd),
	'once deleted: 22Y22, the customer has no default; its other card is not charged in its place');
SELECT is((SELECT payments._run_renewals(m, 100) FROM dd), 1, 'the renewal is due');
SELECT is((SELECT concat_ws('|', x.status, i.status, pg_temp.charges(m, s), i.last_failure_code, pg_temp.events(m, s, 'invoice.payment_failed'))
	FROM dd, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'past_due|open|0|no_payment_method|1',
	'the renewal fails as data (no_payment_method) and goes to dunning; the other card is not charged');
SELECT is((SELECT is_default FROM dd, pay_set_default_payment_method(dd.a)), true, 'the merchant makes the other card the default');
SELECT is((SELECT concat_ws('|', pg_temp.charges(m, s), p.payment_method_id = dd.a)
	FROM dd, pg_temp.inv(m, s) i, payments.payments p WHERE p.merchant_id = dd.m AND p.payment_id = i.payment_id),
	'1|t', 'it is charged at once');
SELECT pg_temp.outcome(m, s, 'failed', 'E00040') FROM dd \gset x_
SELECT is((SELECT concat_ws('|', p.decline_code, i.last_failure_code, payments._decline_is_final(i.last_failure_code),
		x.status, x.is_default, x.failure_code)
	FROM dd, pg_temp.inv(m, s) i, payments.payments p, payments.payment_methods x
	WHERE p.merchant_id = dd.m AND p.payment_id = (SELECT max(payment_id) FROM payments.payments WHERE merchant_id = dd.m)
		AND x.merchant_id = dd.m AND x.payment_method_id = dd.a),
	'payment_method_gone|payment_method_gone|t|failed|f|payment_method_gone',
	'its charge answered E00040 (the profile deleted at the gateway): payment_method_gone, a final decline; the method is failed, no longer the default');
SELECT is((SELECT count(*)::integer FROM payments.events e, dd WHERE e.merchant_id = dd.m
	AND e.event_type = 'payment_method.failed' AND (e.data ->> 'payment_method_id')::bigint = dd.a
	AND e.data ->> 'failure_code' = 'payment_method_gone'), 1, 'a payment_method.failed event says so');
SELECT is((SELECT string_agg(e.data ->> 'decline_code', ',') FROM payments.events e, dd WHERE e.merchant_id = dd.m
	AND e.event_type = 'payment.failed' AND e.payment_id = (SELECT max(payment_id) FROM payments.payments WHERE merchant_id = dd.m)),
	'payment_method_gone', 'the payment.failed event carries the new decline code');
SELECT is((SELECT pg_temp.error_of(format('SELECT pay_purchase(amount => %L, payment_method_id => %s)', '5.00 USD', a)) FROM dd),
	(SELECT format('22Y20 / payment method %s is failed, not active / The gateway refused payment %s: it no longer has this card''s payment profile (E00040), which was deleted outside payments. / Save the card again (pay_save_payment_method).',
		a, (SELECT max(payment_id) FROM payments.payments WHERE merchant_id = dd.m)) FROM dd),
	'a later charge of it is refused at the call, saying why');

-- 10d. a default whose deletion fails is tried at once during dunning -----------
CREATE TEMP TABLE df AS SELECT pg_temp.merchant('default-back', '2031-08-01 00:00 UTC') AS m;
ALTER TABLE df ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN a bigint;
UPDATE df SET c = pg_temp.customer(m);
UPDATE df SET a = (SELECT payment_method_id FROM payments.payment_methods x WHERE x.merchant_id = df.m),
	s = pg_temp.subscribe(m, c, 'active', '2031-07-01 00:00');
SELECT payments._run_renewals(m, 100) FROM df \gset x_
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM df \gset x_
SELECT is((SELECT concat_ws('|', status, is_default) FROM df, pay_delete_payment_method(df.a)), 'deleting|t',
	'in dunning, the default card is being deleted (still marked the default)');
-- the gateway refuses the deletion (_record_method_result): active again, the default still
UPDATE payments.payment_methods x SET status = 'active' FROM df WHERE x.merchant_id = df.m AND x.payment_method_id = df.a;
SELECT is((SELECT concat_ws('|', pg_temp.charges(m, s), i.attempt_count, i.next_attempt_at IS NULL,
		pg_temp.events(m, s, 'invoice.retry_attempted'))
	FROM df, pg_temp.inv(m, s) i), '2|2|t|1',
	'the default back from its failed deletion is charged at once, not at the next scheduled retry');

-- 11. incomplete subscriptions expire ------------------------------------------

CREATE TEMP TABLE ic AS SELECT pg_temp.merchant('incomplete', '2031-10-01 12:00 UTC') AS m;
ALTER TABLE ic ADD COLUMN c bigint, ADD COLUMN s bigint, ADD COLUMN s2 bigint, ADD COLUMN s3 bigint;
UPDATE ic SET c = pg_temp.customer(m);
UPDATE ic SET s = pg_temp.subscribe(m, c, 'incomplete', '2031-10-01 12:00'),
	s2 = pg_temp.subscribe(m, c, 'incomplete', '2031-10-01 12:00'),
	s3 = pg_temp.subscribe(m, c, 'incomplete', '2031-10-01 12:00');
SELECT is((SELECT concat_ws('|', kind, status, attempt_count) FROM ic, pg_temp.inv(m, s)), 'first|open|1',
	'the first invoice is issued and charged at creation');
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM ic \gset x_
SELECT is((SELECT concat_ws('|', x.status, i.next_attempt_at IS NULL, i.first_failed_at IS NOT NULL) FROM ic, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'incomplete|t|t', 'a declined first invoice: the subscription stays incomplete, no retry');
SELECT pg_temp.outcome(m, s2, 'succeeded') FROM ic \gset x_
SELECT is((SELECT concat_ws('|', status, next_renewal_at) FROM ic, pg_temp.sub(m, s2)), 'active|2031-11-01 12:00:00+00',
	'a paid first invoice: active, next renewal at the end of period 0');
SELECT pg_temp.clock(m, '2031-10-02 10:59 UTC') FROM ic \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ic), 0, '22 hours 59 minutes later: not yet expired');
SELECT pg_temp.clock(m, '2031-10-02 11:00 UTC') FROM ic \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM ic), 2, 'after 23 hours the run takes both incomplete ones');
SELECT is((SELECT concat_ws('|', x.status, x.ended_at, x.next_renewal_at IS NULL, i.status) FROM ic, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'incomplete_expired|2031-10-02 11:00:00+00|t|void', 'the unpaid one is incomplete_expired and its invoice void');
SELECT is((SELECT concat_ws('|', x.status, x.next_renewal_at) FROM ic, pg_temp.sub(m, s3) x),
	'incomplete|2031-10-02 11:01:00+00', 'the one whose charge is still in flight waits a minute more');
SELECT pg_temp.outcome(m, s3, 'failed', '2') FROM ic \gset x_
SELECT pg_temp.clock(m, '2031-10-02 11:01 UTC') FROM ic \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) || '|' || (pg_temp.sub(m, s3)).status FROM ic), '1|incomplete_expired',
	'and expires once it has failed');
SELECT is((SELECT pg_temp.events(m, s, 'subscription.incomplete_expired') FROM ic), 1, 'subscription.incomplete_expired');

-- 11b. pending prorations when a subscription ends ----------------------------
-- An upgrade with the default proration (next_invoice) waits for the next
-- invoice; a cancel at period end means there is none: the amount owed is
-- charged on a final proration invoice, and its failure is not dunned.
CREATE TEMP TABLE pe AS SELECT pg_temp.merchant('pending-end', '2031-04-11 00:00 UTC') AS m;
ALTER TABLE pe ADD COLUMN s bigint;
UPDATE pe SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-04-01 00:00', price => '30.00 USD');
SELECT is((SELECT quantity FROM pe, pay_change_subscription(s, quantity => 2)), 2, 'an upgrade with next_invoice');
SELECT is((SELECT sum(amount)::text FROM payments.invoice_items i, pe WHERE i.merchant_id = pe.m AND i.invoice_id IS NULL),
	'20.00 USD', 'leaves 20.00 USD pending (credit -20.00, charge 40.00)');
SELECT is((SELECT cancel_at_period_end FROM pe, pay_cancel_subscription(s, at_period_end => true)), true, 'then a cancel at period end');
SELECT pg_temp.clock(m, '2031-05-01 01:00 UTC') FROM pe \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM pe), 1, 'the period ends');
SELECT is((SELECT concat_ws('|', x.status, i.kind, i.status, i.amount, i.attempt_count, p.amount, p.status)
	FROM pe, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i
	JOIN payments.payments p ON p.merchant_id = i.merchant_id AND p.payment_id = i.payment_id),
	'canceled|proration|open|20.00 USD|1|20.00 USD|pending',
	'canceled, and the 20.00 USD owed is on a final proration invoice, charged');
SELECT is((SELECT count(*)::integer FROM payments.invoice_items i, pe WHERE i.merchant_id = pe.m AND i.invoice_id IS NULL),
	0, 'nothing is left pending');
SELECT is((SELECT concat_ws('|', e.data ->> 'outcome', e.data ->> 'reason', e.data ->> 'net_amount') FROM payments.events e, pe
	WHERE e.merchant_id = pe.m AND e.event_type = 'subscription.pending_items_closed'),
	'charged|canceled_at_period_end|20.00 USD', 'subscription.pending_items_closed says it was charged');
SELECT is((SELECT pg_temp.outcome(m, s, 'failed', '2') FROM pe), 'failed', 'the final charge is declined');
SELECT is((SELECT concat_ws('|', i.status, i.next_attempt_at IS NULL, x.status) FROM pe, pg_temp.inv(m, s) i, pg_temp.sub(m, s) x),
	'uncollectible|t|canceled', 'an ended subscription''s final invoice is uncollectible, not retried');
-- a downgrade's credit, then a cancel now: reported, not lost
CREATE TEMP TABLE pc AS SELECT pg_temp.merchant('pending-credit', '2031-04-11 00:00 UTC') AS m;
ALTER TABLE pc ADD COLUMN s bigint;
UPDATE pc SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-04-01 00:00', price => '30.00 USD');
UPDATE payments.subscriptions x SET quantity = 2 FROM pc WHERE x.merchant_id = pc.m AND x.subscription_id = pc.s;
SELECT is((SELECT quantity FROM pc, pay_change_subscription(s, quantity => 1)), 1, 'a downgrade with next_invoice');
SELECT is((SELECT status FROM pc, pay_cancel_subscription(s)), 'canceled', 'then a cancel now');
SELECT is((SELECT concat_ws('|', i.kind, i.status, i.amount, i.payment_id IS NULL, jsonb_array_length(i.lines)) FROM pc, pg_temp.inv(m, s) i),
	'proration|paid|0.00 USD|t|2', 'the items are closed on a final invoice of zero, paid, nothing charged');
SELECT is((SELECT concat_ws('|', e.data ->> 'outcome', e.data ->> 'credit', e.data ->> 'reason') FROM payments.events e, pc
	WHERE e.merchant_id = pc.m AND e.event_type = 'subscription.pending_items_closed'),
	'credit_not_applied|20.00 USD|canceled', 'the 20.00 USD credit is reported by subscription.pending_items_closed');
SELECT is((SELECT count(*)::integer FROM payments.invoice_items i, pc WHERE i.merchant_id = pc.m AND i.invoice_id IS NULL),
	0, 'nothing is left pending');
-- dunning ends it: what is owed is recorded, not charged again
CREATE TEMP TABLE pd AS SELECT pg_temp.merchant('pending-dunning', '2031-04-11 00:00 UTC') AS m;
ALTER TABLE pd ADD COLUMN s bigint;
UPDATE pd SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-04-01 00:00', price => '30.00 USD');
SELECT is((SELECT quantity FROM pd, pay_change_subscription(s, quantity => 2)), 2, 'an upgrade with next_invoice');
SELECT is((SELECT amount FROM pd, pay_change_subscription(s, price => '36.00 USD', proration => 'invoice_now'), pg_temp.inv(m, s)),
	'8.00 USD', 'then a price change charged at once (8.00 USD)');
SELECT pay_set_dunning_policy(retry_days => '{}') FROM pd \gset x_
SELECT is((SELECT pg_temp.outcome(m, s, 'failed', '2') FROM pd), 'failed', 'its charge fails, no retries: dunning ends it');
SELECT is((SELECT concat_ws('|', x.status, i.kind, i.status, i.amount, i.payment_id IS NULL, i.last_failure_code)
	FROM pd, pg_temp.sub(m, s) x, pg_temp.inv(m, s) i),
	'canceled|proration|uncollectible|20.00 USD|t|dunning_exhausted',
	'canceled; the 20.00 USD pending is an uncollectible final invoice, not charged');

-- 11c. a cancel at period end, then a pause -----------------------------------
-- Paused, a subscription is not renewed: it would never reach the period end
-- that cancels it, and a resume would charge a new period.
CREATE TEMP TABLE pz AS SELECT pg_temp.merchant('pause-cancel', '2031-01-20 12:00 UTC') AS m;
ALTER TABLE pz ADD COLUMN s bigint, ADD COLUMN s2 bigint;
UPDATE pz SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-01-10 12:00', price => '30.00 USD');
SELECT is((SELECT cancel_at_period_end FROM pz, pay_cancel_subscription(s, at_period_end => true)), true, 'set to cancel at period end');
SELECT throws_ok(format('SELECT pay_pause_subscription(%s)', (SELECT s FROM pz)), '22Y20',
	format('cannot pause subscription %s while it is set to cancel at the end of its period', (SELECT s FROM pz)),
	'pausing it is refused');
SELECT pg_temp.clock(m, '2031-04-20 12:00 UTC') FROM pz \gset x_
SELECT is((SELECT payments._run_renewals(m, 100) FROM pz), 1, 'the billing run reaches its period end');
SELECT is((SELECT concat_ws('|', x.status, x.ended_at, pg_temp.invoices(m, s)) FROM pz, pg_temp.sub(m, s) x),
	'canceled|2031-02-10 12:00:00+00|0', 'it is canceled at that period end, nothing charged');
-- one paused so before the refusal: a resume after the period end ends it, charging nothing
UPDATE pz SET s2 = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-04-10 12:00', price => '30.00 USD');
UPDATE payments.subscriptions x SET status = 'paused', paused_at = '2031-04-20 12:00 UTC', next_renewal_at = NULL,
	cancel_at_period_end = true, canceled_at = '2031-04-20 12:00 UTC'
FROM pz WHERE x.merchant_id = pz.m AND x.subscription_id = pz.s2;
SELECT pg_temp.clock(m, '2031-07-01 12:00 UTC') FROM pz \gset x_
SELECT is((SELECT concat_ws('|', r.status, r.ended_at, pg_temp.invoices(m, s2)) FROM pz, pay_resume_subscription(s2) r),
	'canceled|2031-05-10 12:00:00+00|0', 'a paused one set to cancel at a period end since passed: the resume ends it then, no charge');

-- 12. the invoice API and tenancy ----------------------------------------------

SELECT pg_temp.act_as(m) FROM k \gset x_
SELECT is((SELECT invoice_id FROM k, pay_get_invoice((pg_temp.inv(k.m, k.s)).invoice_id)), (SELECT (pg_temp.inv(m, s)).invoice_id FROM k),
	'pay_get_invoice reads an invoice of the merchant');
SELECT is((SELECT count(*)::integer FROM k, pay_list_invoices(subscription_id => k.s)), 4, 'pay_list_invoices lists a subscription''s invoices');
SELECT is((SELECT array_agg(period_index ORDER BY invoice_id DESC)::text FROM k, pay_list_invoices(subscription_id => k.s, page_size => 3)),
	'{4,3,2}', 'newest first, page_size at a time');
SELECT is((SELECT array_agg(period_index)::text FROM k, pay_list_invoices(subscription_id => k.s, page_size => 3,
	after => (SELECT min(invoice_id) FROM pay_list_invoices(subscription_id => k.s, page_size => 3)))), '{1}',
	'the next page after the last invoice_id');
SELECT is((SELECT count(*)::integer FROM pay_list_invoices(status => 'paid')), 1, 'filtered by status');
SELECT throws_ok($$SELECT pay_list_invoices(status => 'draft')$$, '22023', NULL, 'an unknown status is refused');
SELECT throws_ok($$SELECT pay_list_invoices(page_size => 0)$$, '22023', NULL, 'page_size is bounded');
SELECT throws_ok($$SELECT pay_list_invoices(after => -1)$$, '22023', 'the cursor invoice -1 is not an invoice of this merchant',
	'an unknown cursor is refused (22023)');
SELECT throws_ok($$SELECT pay_run_renewals(max_count => 0)$$, '22023', NULL, 'max_count is bounded');
-- merchant A (dn) and B (k): A may not see B's invoices
SELECT pg_temp.act_as(m) FROM dn \gset x_
SELECT throws_ok(format('SELECT pay_get_invoice(%s)', (SELECT (pg_temp.inv(m, s)).invoice_id FROM k)), 'PT404', NULL,
	'another merchant''s invoice is PT404');
SELECT throws_ok(format('SELECT pay_list_invoices(subscription_id => %s)', (SELECT s FROM k)), 'PT404', NULL,
	'listing another merchant''s subscription''s invoices is PT404');
SELECT throws_ok($$SELECT pay_get_invoice(-1)$$, 'PT404', NULL, 'an unknown invoice is PT404');
SELECT is((SELECT bool_and(merchant_id = (SELECT m FROM dn)) FROM pay_list_invoices()), true, 'pay_list_invoices lists only the merchant''s own');
-- runs: a merchant runs its own renewals only; the owner naming none runs all
CREATE TEMP TABLE tn AS SELECT pg_temp.merchant('tenant-a', '2031-12-01 00:00 UTC') AS a,
	pg_temp.merchant('tenant-b', '2031-12-01 00:00 UTC') AS b;
ALTER TABLE tn ADD COLUMN sa bigint, ADD COLUMN sb bigint;
UPDATE tn SET sa = pg_temp.subscribe(a, pg_temp.customer(a), 'active', '2031-11-01 00:00'),
	sb = pg_temp.subscribe(b, pg_temp.customer(b), 'active', '2031-11-01 00:00');
SELECT (pg_temp.inv(m, s)).invoice_id AS k_invoice FROM k \gset
CREATE ROLE billing_tap_a NOLOGIN;
SELECT payments.pay_bind_role('billing_tap_a', merchant_id => a) FROM tn \gset x_
SELECT pg_temp.act_as(NULL) \gset x_
SET LOCAL ROLE billing_tap_a;
SELECT is(pay_run_renewals(), 1, 'a role bound to merchant A runs the renewals due for A');
SELECT is((SELECT count(*)::integer FROM pay_list_invoices()), 1, 'and sees its invoice');
SELECT throws_ok('SELECT pay_get_invoice(' || :k_invoice || ')', 'PT404', NULL, 'but not another merchant''s (PT404)');
SELECT throws_ok('SELECT pay_list_invoices(after => ' || :k_invoice || ')', '22023',
	'the cursor invoice ' || :k_invoice || ' is not an invoice of this merchant',
	'nor pages after another merchant''s invoice: that cursor is refused (22023), as by the other lists');
SELECT is(pay_run_dunning(), 0, 'its dunning run finds nothing of A''s');
RESET ROLE;
SELECT is((SELECT pg_temp.invoices(b, sb) FROM tn), 0, 'B''s due subscription was left alone');
SELECT is((SELECT concat_ws('|', source, merchant_id) FROM pay_current_identity()), 'default|1', '(the owner naming no merchant)');
SELECT is(pay_run_renewals() >= 1, true, 'the owner naming no merchant (pg_cron) runs every merchant''s renewals');
SELECT is((SELECT pg_temp.invoices(b, sb) FROM tn), 1, 'B''s is renewed now');
SELECT pg_temp.act_as(b) FROM tn \gset x_
SELECT is(pay_run_renewals(), 0, 'nothing due is left for B');

-- dunning days do not depend on the session's TimeZone: the day after a
-- failure recorded in a session whose TimeZone springs forward that night
-- was 23 hours later, 24 in a UTC session (the worker's, the server's
-- zone), and a pay_set_dunning_policy with the same days from another zone
-- moved every scheduled retry by an hour and said so
-- (invoice.retry_scheduled, reason policy_changed)
CREATE TEMP TABLE dz AS SELECT pg_temp.merchant('dunning-zone', '2031-02-08 12:00 UTC') AS m;
ALTER TABLE dz ADD COLUMN s bigint;
UPDATE dz SET s = pg_temp.subscribe(m, pg_temp.customer(m), 'active', '2031-02-08 12:00');
SELECT pg_temp.clock(m, '2031-03-08 12:00 UTC') FROM dz \gset x_
SET LOCAL TimeZone = 'America/New_York';		-- daylight saving time starts on 9 March 2031
SELECT is((SELECT payments._run_renewals(m, 100) FROM dz), 1, 'renewed on 8 March (a session in New York)');
SELECT pg_temp.outcome(m, s, 'failed', '2') FROM dz \gset x_
SELECT is((SELECT extract(epoch FROM next_attempt_at - first_failed_at) FROM dz, pg_temp.inv(m, s)), 86400::numeric,
	'declined: retry 1 is 24 hours after the failure, recorded in a session in New York as in one in UTC');
SET LOCAL TimeZone = 'UTC';
SELECT pay_set_dunning_policy(retry_days => '{1,3,5,7}') \gset x_
SELECT is((SELECT extract(epoch FROM next_attempt_at - first_failed_at)::bigint || '|' || pg_temp.events(m, s, 'invoice.retry_scheduled')
	FROM dz, pg_temp.inv(m, s)), '86400|1',
	'the same policy set again from a session in UTC moves nothing and says nothing');

-- a NULL interval is a missing argument, named as such (before: 22023
-- "frozen_at must be a finite time", pay_set_test_clock's argument)
SELECT throws_ok($$SELECT payments.pay_advance_test_clock(NULL)$$, '22004', 'by_interval is required',
	'pay_advance_test_clock(NULL) says by_interval is missing');

-- pay_clear_test_clock: back to the real clock, never backwards (before, a
-- clock ahead was cleared and billing time went back to billed periods)
INSERT INTO payments.merchants (name) VALUES ('billing-clear') RETURNING merchant_id AS mc \gset
SELECT pg_temp.act_as(:mc);
SELECT payments.pay_set_test_clock(now() + interval '1 year') \gset x_
SELECT throws_ok($$SELECT payments.pay_clear_test_clock()$$, '22023', 'a test clock never goes back',
	'a test clock ahead of the real clock is not cleared');
SELECT ok(payments.pay_billing_now() > now() + interval '364 days', 'and billing time stays where it was');
UPDATE payments.billing_clocks SET frozen_at = now() - interval '1 day' WHERE merchant_id = :mc;
SELECT is(payments.pay_clear_test_clock(), now(), 'one behind the real clock is cleared');
SELECT is(payments.pay_billing_now(), now(), 'billing runs on the real clock again');
SELECT lives_ok($$SELECT payments.pay_clear_test_clock()$$, 'clearing no clock is no error');

SELECT * FROM finish();
ROLLBACK;
