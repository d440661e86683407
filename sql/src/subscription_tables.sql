-- Plans, subscriptions, invoices, pending invoice items, dunning policies and
-- test clocks: the tables of recurring billing, their status machines, the
-- billing clock, calendar periods and the charge of an invoice.

------------------------------------------------------------------------------
-- Plans: what a subscription costs per period.  The amount and the interval
-- of a plan never change once made (subscriptions copy them); a plan that is
-- no longer sold is made inactive.
------------------------------------------------------------------------------

CREATE TABLE payments.plans (
	merchant_id bigint NOT NULL REFERENCES payments.merchants,
	plan_id bigint GENERATED ALWAYS AS IDENTITY,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
	amount payments.pay_amount NOT NULL CHECK (pay_minor_units(amount) > 0),
	interval_unit text NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
	interval_count integer NOT NULL DEFAULT 1 CHECK (interval_count BETWEEN 1 AND 366),
	trial_days integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
	active boolean NOT NULL DEFAULT true,
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, plan_id)
);
CREATE INDEX plans_created ON payments.plans (merchant_id, created_at, plan_id);
-- a repeated pay_create_plan finds the newest plan its key made (not
-- unique: once the key's retention ended, the key makes another)
CREATE INDEX plans_idempotency_key ON payments.plans (merchant_id, idempotency_key, plan_id)
	WHERE idempotency_key IS NOT NULL;
COMMENT ON TABLE payments.plans IS
	'Plans of each merchant: amount and currency per period, interval (day, week, month, year, times interval_count) and trial length. Amount and interval never change; inactive plans take no new subscriptions.';

------------------------------------------------------------------------------
-- Subscriptions.  Periods are counted from billing_anchor, a wall-clock time
-- in the subscription's time zone: period n starts at anchor + n intervals
-- (payments._period_start), so an anchor on the 31st bills on the last day
-- of shorter months and returns to the 31st, and a 09:00 anchor stays 09:00
-- local across daylight-saving changes.
------------------------------------------------------------------------------

CREATE TABLE payments.subscriptions (
	merchant_id bigint NOT NULL,
	subscription_id bigint GENERATED ALWAYS AS IDENTITY,
	customer_id bigint NOT NULL,
	-- NULL: an explicit price, not a plan's
	plan_id bigint,
	status text NOT NULL CHECK (status IN ('trialing', 'incomplete', 'incomplete_expired', 'active',
		'past_due', 'paused', 'canceled', 'unpaid')),
	-- price per unit and period (the plan's amount, or the explicit price)
	unit_amount payments.pay_amount NOT NULL CHECK (pay_minor_units(unit_amount) > 0),
	quantity integer NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 100000),
	interval_unit text NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
	interval_count integer NOT NULL CHECK (interval_count BETWEEN 1 AND 366),
	-- NULL: the customer's default method at each charge
	payment_method_id bigint,
	time_zone text NOT NULL DEFAULT 'UTC',
	billing_anchor timestamp NOT NULL,
	-- the current period: number current_period_index counted from the
	-- anchor, [current_period_start, current_period_end)
	current_period_index integer NOT NULL DEFAULT 0,
	current_period_start timestamptz NOT NULL,
	current_period_end timestamptz NOT NULL,
	trial_end timestamptz,
	cancel_at_period_end boolean NOT NULL DEFAULT false,
	canceled_at timestamptz,
	ended_at timestamptz,
	paused_at timestamptz,
	-- when the billing run next has work for this subscription (the end of
	-- the trial or of the period); NULL: none (paused, ended)
	next_renewal_at timestamptz,
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	idempotency_key text,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- the server life's tag it was made under (_server_tag), in its
	-- periods' invoice numbers (_invoice_charge_number); NULL: the
	-- installation's.  Set once: a period's number never changes
	gateway_tag text CHECK (gateway_tag ~ '^[0-9A-F]{6}$'),
	-- the amount (unit amount times quantity) the current period was
	-- billed at, while a change without proration (none) has set the
	-- terms of the next period only; NULL: the terms above are in force
	period_amount payments.pay_amount,
	PRIMARY KEY (merchant_id, subscription_id),
	FOREIGN KEY (merchant_id, customer_id) REFERENCES payments.customers,
	FOREIGN KEY (merchant_id, plan_id) REFERENCES payments.plans,
	FOREIGN KEY (merchant_id, payment_method_id) REFERENCES payments.payment_methods,
	CHECK (current_period_end > current_period_start),
	CHECK (pay_currency(unit_amount) IS NOT NULL)
);
CREATE INDEX subscriptions_customer ON payments.subscriptions (merchant_id, customer_id, subscription_id);
CREATE INDEX subscriptions_status ON payments.subscriptions (merchant_id, status, created_at, subscription_id);
-- a repeated pay_create_subscription finds the newest subscription its
-- key made (not unique, as plans_idempotency_key)
CREATE INDEX subscriptions_idempotency_key ON payments.subscriptions (merchant_id, idempotency_key, subscription_id)
	WHERE idempotency_key IS NOT NULL;
-- the billing run's queue
CREATE INDEX subscriptions_renewal_due ON payments.subscriptions (next_renewal_at)
	WHERE next_renewal_at IS NOT NULL;
COMMENT ON TABLE payments.subscriptions IS
	'Subscriptions: customer, plan or explicit price, quantity, payment method (NULL: the customer''s default), billing anchor and time zone, current period and status (payments.status_transitions, entity subscription).';

------------------------------------------------------------------------------
-- Invoices: one per subscription and period (first and renewal invoices;
-- the unique index is what makes a double billing run harmless), plus
-- proration invoices charged at once.  Each charge attempt is a payment
-- (payments.payments.invoice_id) sent by the worker like any other.
------------------------------------------------------------------------------

CREATE TABLE payments.invoices (
	merchant_id bigint NOT NULL,
	invoice_id bigint GENERATED ALWAYS AS IDENTITY,
	subscription_id bigint NOT NULL,
	customer_id bigint NOT NULL,
	kind text NOT NULL CHECK (kind IN ('first', 'renewal', 'proration')),
	status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'uncollectible', 'void')),
	period_index integer NOT NULL,
	period_start timestamptz NOT NULL,
	period_end timestamptz NOT NULL,
	-- what is due: the sum of the lines (never below zero)
	amount payments.pay_amount NOT NULL CHECK (pay_minor_units(amount) >= 0),
	-- [{"kind": "subscription" | "proration" | "credit", "description": text,
	--   "amount": "12.34 USD", "quantity": n}, ...]
	lines jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(lines) = 'array'),
	-- charge attempts made, the latest payment, and the next retry (dunning)
	attempt_count integer NOT NULL DEFAULT 0,
	payment_id bigint,
	next_attempt_at timestamptz,
	-- the first failure (the dunning schedule counts from it) and the last one
	first_failed_at timestamptz,
	last_failure_code text,
	last_failure_reason text,
	paid_at timestamptz,
	closed_at timestamptz,
	correlation_id text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, invoice_id),
	FOREIGN KEY (merchant_id, subscription_id) REFERENCES payments.subscriptions,
	CHECK (period_end > period_start)
);
-- one invoice per subscription and period
CREATE UNIQUE INDEX invoices_one_per_period ON payments.invoices (merchant_id, subscription_id, period_index)
	WHERE kind IN ('first', 'renewal');
CREATE INDEX invoices_subscription ON payments.invoices (merchant_id, subscription_id, invoice_id);
-- the dunning run's queue
CREATE INDEX invoices_retry_due ON payments.invoices (next_attempt_at)
	WHERE status = 'open' AND next_attempt_at IS NOT NULL;
COMMENT ON TABLE payments.invoices IS
	'Invoices of subscriptions: one per subscription and period (kind first or renewal, unique), or a proration charged at once; amount, lines, status (payments.status_transitions, entity invoice), charge attempts (payments.payments.invoice_id) and the next dunning retry.';

ALTER TABLE payments.payments ADD COLUMN invoice_id bigint;
CREATE INDEX payments_invoice ON payments.payments (merchant_id, invoice_id) WHERE invoice_id IS NOT NULL;
COMMENT ON COLUMN payments.payments.invoice_id IS 'The invoice this payment is a charge attempt of (subscriptions), if any.';

-- Prorations and credits waiting for the subscription's next invoice.
CREATE TABLE payments.invoice_items (
	merchant_id bigint NOT NULL,
	item_id bigint GENERATED ALWAYS AS IDENTITY,
	subscription_id bigint NOT NULL,
	kind text NOT NULL CHECK (kind IN ('proration', 'credit')),
	-- negative: a credit
	amount payments.pay_amount NOT NULL,
	description text NOT NULL CHECK (length(description) BETWEEN 1 AND 255),
	-- NULL: pending, for the next invoice
	invoice_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (merchant_id, item_id),
	FOREIGN KEY (merchant_id, subscription_id) REFERENCES payments.subscriptions
);
CREATE INDEX invoice_items_pending ON payments.invoice_items (merchant_id, subscription_id)
	WHERE invoice_id IS NULL;
COMMENT ON TABLE payments.invoice_items IS
	'Prorations and credits of subscriptions waiting for the next invoice (invoice_id NULL), or the invoice that took them.';

------------------------------------------------------------------------------
-- Dunning: when a failed charge is tried again, and what happens after the
-- last failure.  A merchant without a row gets the defaults.
------------------------------------------------------------------------------

CREATE TABLE payments.dunning_policies (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	-- days after the first failure at which the charge is tried again
	retry_days integer[] NOT NULL DEFAULT '{1,3,5,7}'
		CHECK (cardinality(retry_days) <= 10 AND array_position(retry_days, NULL) IS NULL
			AND 0 < ALL (retry_days) AND 366 >= ALL (retry_days)),
	final_action text NOT NULL DEFAULT 'canceled' CHECK (final_action IN ('canceled', 'unpaid')),
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments.dunning_policies IS
	'Per merchant: the days after a renewal''s first failure at which it is retried (default 1, 3, 5, 7) and the subscription''s status after the last failure (canceled or unpaid). Merchants without a row get the defaults.';

------------------------------------------------------------------------------
-- Test clocks: "now" for billing, per merchant, frozen where the test or
-- demonstration put it.  Only while the server setting payments.test_clocks
-- is on (postgresql.conf; off by default): production billing always runs
-- on the real clock.
------------------------------------------------------------------------------

CREATE TABLE payments.billing_clocks (
	merchant_id bigint PRIMARY KEY REFERENCES payments.merchants,
	frozen_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payments.billing_clocks IS
	'Test clocks: the frozen "now" of billing per merchant (pay_set_test_clock, pay_advance_test_clock); honoured only while the server setting payments.test_clocks is on.';

REVOKE ALL ON payments.plans, payments.subscriptions, payments.invoices, payments.invoice_items,
	payments.dunning_policies, payments.billing_clocks FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('payments.plans', '');
SELECT pg_catalog.pg_extension_config_dump('payments.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoices', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoice_items', '');
SELECT pg_catalog.pg_extension_config_dump('payments.dunning_policies', '');
SELECT pg_catalog.pg_extension_config_dump('payments.billing_clocks', '');
SELECT pg_catalog.pg_extension_config_dump('payments.plans_plan_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.subscriptions_subscription_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoices_invoice_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('payments.invoice_items_item_id_seq', '');

------------------------------------------------------------------------------
-- Status machines of subscriptions and invoices (the one place they are
-- stated; the status triggers enforce them and write the events).
------------------------------------------------------------------------------

INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('subscription', 'trialing', 'active'),
	-- the charge at the end of the trial failed
	('subscription', 'trialing', 'past_due'),
	('subscription', 'trialing', 'canceled'),
	('subscription', 'incomplete', 'active'),
	('subscription', 'incomplete', 'incomplete_expired'),
	('subscription', 'active', 'past_due'),
	('subscription', 'active', 'paused'),
	('subscription', 'active', 'canceled'),
	-- a retry succeeded
	('subscription', 'past_due', 'active'),
	('subscription', 'past_due', 'canceled'),
	-- retries exhausted, final action unpaid
	('subscription', 'past_due', 'unpaid'),
	('subscription', 'paused', 'active'),
	('subscription', 'paused', 'canceled'),
	-- an unpaid subscription's invoice paid at last (new card)
	('subscription', 'unpaid', 'active'),
	('subscription', 'unpaid', 'canceled'),
	('invoice', 'open', 'paid'),
	('invoice', 'open', 'uncollectible'),
	('invoice', 'open', 'void'),
	('invoice', 'uncollectible', 'paid'),
	('invoice', 'uncollectible', 'void');

CREATE TRIGGER subscriptions_status BEFORE INSERT OR UPDATE ON payments.subscriptions
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('subscription');
CREATE TRIGGER invoices_status BEFORE INSERT OR UPDATE ON payments.invoices
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('invoice');

-- Audited like the other tenant tables (audit.sql); metadata is the
-- merchant's and may name the person, so it stays out of the append-only log.
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.plans
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.plans
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.subscriptions
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('metadata');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.subscriptions
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.invoices
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.invoices
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.invoice_items
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.invoice_items
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.dunning_policies
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.dunning_policies
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.billing_clocks
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.billing_clocks
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.plans IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.plans IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.subscriptions IS 'Audit: payments.audit_log; metadata is never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.subscriptions IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.invoices IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.invoices IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.invoice_items IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.invoice_items IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.dunning_policies IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.dunning_policies IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.billing_clocks IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.billing_clocks IS 'Audit: payments.audit_log.';

------------------------------------------------------------------------------
-- The billing clock and calendar periods.
------------------------------------------------------------------------------

-- "Now" for a merchant's billing: its test clock while test clocks are
-- allowed, else the real time.
-- (PL/pgSQL: its statement is planned once per session; as a SQL function
-- called from PL/pgSQL it was parsed and planned again at every call)
CREATE FUNCTION payments._billing_now(p_merchant_id bigint) RETURNS timestamptz
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF current_setting('payments.test_clocks', true) IS DISTINCT FROM 'on' THEN
		RETURN now();
	END IF;
	RETURN coalesce((SELECT c.frozen_at FROM payments.billing_clocks c WHERE c.merchant_id = p_merchant_id), now());
END
$$;
COMMENT ON FUNCTION payments._billing_now(bigint) IS
	'Internal: "now" for a merchant''s billing (its test clock while payments.test_clocks is on, else now()).';

-- The start of period p_index of a subscription: the local anchor plus
-- p_index intervals, in its time zone.  Months and years are added from the
-- anchor each time (never period to period), so the 31st comes back after
-- a short month and 29 February after three years of 28 February.
CREATE FUNCTION payments._period_start(p_anchor timestamp, p_time_zone text, p_unit text,
	p_count integer, p_index integer)
	RETURNS timestamptz
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT (p_anchor + CASE p_unit
		WHEN 'day' THEN make_interval(days => p_count * p_index)
		WHEN 'week' THEN make_interval(days => 7 * p_count * p_index)
		WHEN 'month' THEN make_interval(months => p_count * p_index)
		WHEN 'year' THEN make_interval(years => p_count * p_index)
	END) AT TIME ZONE p_time_zone
	$$;
COMMENT ON FUNCTION payments._period_start(timestamp, text, text, integer, integer) IS
	'Internal: the start of a subscription''s period number p_index: the local billing anchor plus p_index intervals, in the subscription''s time zone (calendar months: the 31st bills on the last day of shorter months and returns; wall-clock time kept across daylight-saving changes).';

------------------------------------------------------------------------------
-- Test clocks (pay_set_test_clock, pay_advance_test_clock,
-- pay_clear_test_clock, pay_billing_now).
------------------------------------------------------------------------------

CREATE FUNCTION payments._require_test_clocks() RETURNS void
	LANGUAGE plpgsql
	AS $$
BEGIN
	IF current_setting('payments.test_clocks', true) IS DISTINCT FROM 'on' THEN
		RAISE EXCEPTION 'test clocks are off on this server'
			USING ERRCODE = 'PT403',
				DETAIL = 'Billing runs on the real clock.',
				HINT = 'Test and demonstration servers turn them on with payments.test_clocks = on in postgresql.conf.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_test_clocks() IS
	'Internal: raises PT403 unless the server setting payments.test_clocks is on.';

-- A move of merchant p_merchant_id's test clock: to p_to, or forward by
-- p_by from where it is (NULL p_to).  Never backwards, and no move lost:
-- the one statement that writes the clock checks and computes the new time
-- from the clock as it is once its row is locked, not from what the session
-- read before (two sessions moving one clock at once: the second waits for
-- the first, then goes on from its time, or is refused when that is later
-- than its own target; before, it wrote its target over the first's move,
-- back in time, and a month advanced by one session and a day by another
-- ended one day on).  Wakes the billing process at COMMIT.
CREATE FUNCTION payments._move_test_clock(p_merchant_id bigint, p_to timestamptz, p_by interval)
	RETURNS timestamptz
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	current_ timestamptz := payments._billing_now(p_merchant_id);
	moved timestamptz;
BEGIN
	PERFORM payments._require_test_clocks();
	-- (p_by counted in UTC, payments._utc_plus: a merchant's billing time
	-- has no time zone, and '1 day' is 24 hours whoever moves the clock)
	IF (p_to IS NULL AND p_by IS NULL) OR NOT isfinite(coalesce(p_to, payments._utc_plus(current_, p_by))) THEN
		RAISE EXCEPTION 'frozen_at must be a finite time' USING ERRCODE = '22023';
	END IF;
	-- (checked here against the clock this session sees, and again below
	-- against the clock as it is under the row lock)
	IF coalesce(p_to, payments._utc_plus(current_, p_by)) >= current_ THEN
		INSERT INTO payments.billing_clocks AS c (merchant_id, frozen_at)
		VALUES (p_merchant_id, coalesce(p_to, payments._utc_plus(now(), p_by)))
		ON CONFLICT (merchant_id) DO UPDATE SET frozen_at = coalesce(p_to, payments._utc_plus(c.frozen_at, p_by)),
			updated_at = now()
			WHERE coalesce(p_to, payments._utc_plus(c.frozen_at, p_by)) >= c.frozen_at
		RETURNING c.frozen_at INTO moved;
	END IF;
	IF moved IS NULL THEN
		current_ := payments._billing_now(p_merchant_id);
		RAISE EXCEPTION 'a test clock never goes back'
			USING ERRCODE = '22023',
				DETAIL = format('Billing time is %s; %s was given.', current_,
					coalesce(p_to, payments._utc_plus(current_, p_by)));
	END IF;
	-- what the new time made due is billed now, not at the billing
	-- process's next round (payments.billing_interval)
	PERFORM payments._wake_billing_at_commit();
	RETURN moved;
END
$$;
COMMENT ON FUNCTION payments._move_test_clock(bigint, timestamptz, interval) IS
	'Internal: moves a merchant''s test clock to p_to, or forward by p_by from its time as locked (NULL p_to); 22023 for a time that is not finite or before the clock (as locked: two moves at once both count, in turn, and neither goes back). Wakes the billing process at COMMIT. Returns the new billing time.';

CREATE FUNCTION payments.pay_set_test_clock(frozen_at timestamptz) RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- (_move_test_clock checks test clocks are on and the time is finite)
	RETURN payments._move_test_clock(payments.pay_current_merchant(), frozen_at, NULL);
END
$$;
COMMENT ON FUNCTION payments.pay_set_test_clock(timestamptz) IS
	'Tests and demonstrations: freezes the current merchant''s billing clock at frozen_at (never backwards: also not behind a move another session committed meanwhile); renewals and dunning retries then fall due by that clock. Only while the server setting payments.test_clocks is on (PT403 otherwise). Returns the new billing time.';

CREATE FUNCTION payments.pay_advance_test_clock(by_interval interval) RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- a NULL interval is a missing argument (before: "frozen_at must be
	-- a finite time", which names pay_set_test_clock's argument)
	PERFORM payments._require_test_clocks();
	IF by_interval IS NULL THEN
		RAISE EXCEPTION 'by_interval is required' USING ERRCODE = '22004';
	END IF;
	RETURN payments._move_test_clock(payments.pay_current_merchant(), NULL, by_interval);
END
$$;
COMMENT ON FUNCTION payments.pay_advance_test_clock(interval) IS
	'Tests and demonstrations: moves the current merchant''s billing clock forward by by_interval from its frozen time (or from now), as it is once locked: two sessions advancing it at once both count. Returns the new billing time.';

CREATE FUNCTION payments.pay_clear_test_clock() RETURNS timestamptz
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	frozen timestamptz;
BEGIN
	PERFORM payments._require_test_clocks();
	-- never backwards, as a move: a clock ahead of the real one stays
	-- (before, clearing it took billing time back to periods already
	-- billed: a later change prorated a period from before it started, a
	-- cancel ended a subscription before its period began).  The DELETE
	-- waits for a move of this clock another session holds, then checks
	-- the time as moved.
	DELETE FROM payments.billing_clocks c WHERE c.merchant_id = m AND c.frozen_at <= now();
	IF FOUND THEN
		-- what the real clock makes due is billed now (the clock was behind)
		PERFORM payments._wake_billing_at_commit();
	ELSE
		SELECT c.frozen_at INTO frozen FROM payments.billing_clocks c WHERE c.merchant_id = m;
		IF FOUND THEN
			RAISE EXCEPTION 'a test clock never goes back'
				USING ERRCODE = '22023',
					DETAIL = format('Billing time is %s, ahead of the real clock (%s); the real clock again would take billing back to periods already billed.',
						frozen, now()),
					HINT = 'Clear the test clock once the real clock has passed it, or test on another merchant.';
		END IF;
	END IF;
	RETURN now();
END
$$;
COMMENT ON FUNCTION payments.pay_clear_test_clock() IS
	'Tests and demonstrations: the current merchant''s billing runs on the real clock again, from its commit (the billing process woken to bill what became due). 22023 while the test clock is ahead of the real clock: billing time never goes back. Returns now().';

CREATE FUNCTION payments.pay_billing_now() RETURNS timestamptz
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT payments._billing_now(payments.pay_current_merchant())
	$$;
COMMENT ON FUNCTION payments.pay_billing_now() IS
	'"Now" for the current merchant''s billing: its test clock while payments.test_clocks is on and one is set, else now().';
