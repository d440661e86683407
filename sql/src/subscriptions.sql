-- Plans and subscriptions through the SQL API: create, read, list, update,
-- cancel, pause, resume, change of plan, price or quantity with proration.
-- (The tables, status machines and calendar periods: subscription_tables.sql;
-- issuing and charging invoices, the billing run and dunning: billing.sql.)

------------------------------------------------------------------------------
-- Lookups and argument checks.
------------------------------------------------------------------------------

CREATE FUNCTION payments._plan_not_found(p_plan_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_plan_id IS NULL THEN
		RAISE EXCEPTION 'plan_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'plan % not found', p_plan_id
		USING ERRCODE = 'PT404', HINT = 'Plan ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._plan_not_found(bigint) IS 'Internal: raises the plan-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';

CREATE FUNCTION payments._subscription_not_found(p_subscription_id bigint) RETURNS void
	LANGUAGE plpgsql AS $$
BEGIN
	-- a NULL id is a missing argument, not an unknown id (404)
	IF p_subscription_id IS NULL THEN
		RAISE EXCEPTION 'subscription_id is required' USING ERRCODE = '22004';
	END IF;
	RAISE EXCEPTION 'subscription % not found', p_subscription_id
		USING ERRCODE = 'PT404', HINT = 'Subscription ids are per merchant; check pay_current_merchant().';
END
$$;
COMMENT ON FUNCTION payments._subscription_not_found(bigint) IS 'Internal: raises the subscription-not-found error (PT404), or 22004 when the id is NULL (a missing argument).';

-- A plan of the current merchant (locked when p_lock), or PT404.
CREATE FUNCTION payments._find_plan(p_plan_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.plans
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO p FROM payments.plans x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.plan_id = p_plan_id FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO p FROM payments.plans x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.plan_id = p_plan_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._plan_not_found(p_plan_id);
	END IF;
	RETURN p;
END
$$;
COMMENT ON FUNCTION payments._find_plan(bigint, boolean) IS
	'Internal: a plan of the current merchant (optionally locked), or PT404.';

-- A subscription of the current merchant (locked when p_lock), or PT404.
CREATE FUNCTION payments._find_subscription(p_subscription_id bigint, p_lock boolean DEFAULT false)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	IF p_lock THEN
		-- NO KEY UPDATE, as in _lock_payment (payment_api.sql)
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.subscription_id = p_subscription_id
		FOR NO KEY UPDATE;
	ELSE
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = payments.pay_current_merchant() AND x.subscription_id = p_subscription_id;
	END IF;
	IF NOT FOUND THEN
		PERFORM payments._subscription_not_found(p_subscription_id);
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments._find_subscription(bigint, boolean) IS
	'Internal: a subscription of the current merchant (optionally locked), or PT404.';

-- A billing interval: day, week, month or year, times 1 to 366.
CREATE FUNCTION payments._check_billing_interval(p_unit text, p_count integer) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF p_unit IS NULL OR p_unit NOT IN ('day', 'week', 'month', 'year') THEN
		RAISE EXCEPTION 'interval_unit must be day, week, month or year'
			USING ERRCODE = '22023', DETAIL = CASE WHEN p_unit IS NULL THEN 'No interval_unit was given.'
				ELSE 'The interval_unit given is not quoted.' END;
	END IF;
	IF p_count IS NULL OR p_count NOT BETWEEN 1 AND 366 THEN
		RAISE EXCEPTION 'interval_count must be between 1 and 366'
			USING ERRCODE = '22023', DETAIL = format('The interval_count given was %s.', coalesce(p_count::text, 'NULL'));
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_billing_interval(text, integer) IS
	'Internal: raises 22023 unless the interval is day, week, month or year times 1 to 366.';

-- A price per unit and period: positive, at most what the gateway takes.
CREATE FUNCTION payments._check_price(p_price payments.pay_amount, p_what text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF p_price IS NULL THEN
		RAISE EXCEPTION '% is required', p_what USING ERRCODE = '22004';
	END IF;
	IF pay_minor_units(p_price) <= 0 THEN
		RAISE EXCEPTION '% must be positive', p_what
			USING ERRCODE = '22Y23', DETAIL = format('The %s given was %s.', p_what, p_price);
	END IF;
	PERFORM payments._check_gateway_input(p_price, NULL, NULL, NULL);
END
$$;
COMMENT ON FUNCTION payments._check_price(payments.pay_amount, text) IS
	'Internal: raises 22004 (missing), 22Y23 (not positive) or 22Y26 (more digits than the gateway takes) for a price.';

-- A subscription's amount per period: price times quantity, at most what
-- the gateway takes.  Multiplied as it was, a product beyond pay_amount's
-- 64-bit range raised 22003 "value out of range for type pay_amount",
-- which names neither the price nor the quantity.
CREATE FUNCTION payments._subscription_total(p_price payments.pay_amount, p_quantity integer)
	RETURNS payments.pay_amount
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF abs(pay_minor_units(p_price)::numeric * p_quantity) > 999999999999999 THEN
		RAISE EXCEPTION 'amount is larger than the gateway accepts' USING ERRCODE = '22Y26',
			DETAIL = format('The gateway takes amounts of at most 15 digits; the price %s times the quantity %s has more.',
				p_price, p_quantity);
	END IF;
	RETURN p_price * p_quantity;
END
$$;
COMMENT ON FUNCTION payments._subscription_total(payments.pay_amount, integer) IS
	'Internal: price times quantity, a subscription''s amount per period; raises 22Y26 when it has more digits than the gateway takes (15).';

-- A time zone: an IANA name (America/New_York, Europe/Paris, UTC).  A
-- Region/City name is checked by converting a time with it (cheap); any
-- other text must be in pg_timezone_names, so an abbreviation such as EST
-- (a fixed offset without daylight saving) or a POSIX string is refused.
CREATE FUNCTION payments._check_time_zone(p_time_zone text) RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	known boolean := false;
BEGIN
	IF p_time_zone = 'UTC' THEN
		RETURN;
	END IF;
	IF p_time_zone ~ '^[A-Za-z_]+(/[A-Za-z0-9_+-]+)+$' AND length(p_time_zone) <= 64 THEN
		BEGIN
			PERFORM now() AT TIME ZONE p_time_zone;
			known := true;
		EXCEPTION WHEN invalid_parameter_value THEN
			known := false;
		END;
	ELSIF length(p_time_zone) <= 64 THEN
		-- a zone name that is also an abbreviation (EST, MST, HST, CET...)
		-- is one: a fixed offset, or not the place's time
		known := EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z WHERE z.name = p_time_zone)
			AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_abbrevs a WHERE a.abbrev = p_time_zone);
	END IF;
	-- names of the tz database that are no place's time: the server's own
	-- zone (its billing calendar would follow the machine's settings), the
	-- placeholder Factory, and the copies with leap seconds (right/, which
	-- PostgreSQL's times do not count) or for POSIX rules
	IF p_time_zone IN ('localtime', 'posixrules', 'Factory') OR p_time_zone ~ '^(posix|right)/' THEN
		known := false;
	END IF;
	-- the value is not quoted: a caller's text may hold anything, a card
	-- number in a form the log's masking does not read as one
	IF NOT known THEN
		RAISE EXCEPTION 'time_zone is not a known time zone'
			USING ERRCODE = '22023',
				DETAIL = 'Only IANA time zone names are taken, not abbreviations or POSIX strings; the value given is not quoted.',
				HINT = 'Pass an IANA time zone name such as America/New_York, Europe/Paris or UTC (pg_timezone_names lists them).';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_time_zone(text) IS
	'Internal: raises 22023 unless the text is an IANA time zone name (abbreviations, POSIX strings, localtime, posixrules, Factory and the posix/ and right/ copies are refused); the message does not quote the text.';

-- Metadata of payments, customers, plans and subscriptions (src/free_text.c):
-- an object of at most 50 keys of at most 40 characters, values strings,
-- numbers, booleans or null of at most 500 characters, no card number.
CREATE FUNCTION payments._check_metadata(p_metadata jsonb) RETURNS void
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_check_metadata';
COMMENT ON FUNCTION payments._check_metadata(jsonb) IS 'Internal: raises 22023 unless metadata is NULL or a JSON object of at most 50 keys whose values are strings, numbers, booleans or null, 22001 for a key over 40 or a value over 500 characters, 22Y17 for a card number in a key or a value.';

CREATE FUNCTION payments._check_page_size(p_page_size integer, p_what text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF p_page_size IS NULL OR p_page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(p_page_size::text, 'NULL')),
				HINT = format('Ask for the next page with after => the last %s of this one.', p_what);
	END IF;
END
$$;
COMMENT ON FUNCTION payments._check_page_size(integer, text) IS 'Internal: raises 22023 unless page_size is between 1 and 500.';

------------------------------------------------------------------------------
-- Periods and proration.
------------------------------------------------------------------------------

-- The number of the period that contains p_at: the n with
-- _period_start(n) <= p_at < _period_start(n + 1).  Estimated from the
-- average length of the unit, then stepped to the exact calendar period.
CREATE FUNCTION payments._period_index_at(p_anchor timestamp, p_time_zone text, p_unit text,
	p_count integer, p_at timestamptz)
	RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer := floor(extract(epoch FROM ((p_at AT TIME ZONE p_time_zone) - p_anchor))
		/ (p_count::bigint * CASE p_unit WHEN 'day' THEN 86400 WHEN 'week' THEN 604800
			WHEN 'month' THEN 2629746 ELSE 31556952 END))::integer;
BEGIN
	WHILE payments._period_start(p_anchor, p_time_zone, p_unit, p_count, n) > p_at LOOP
		n := n - 1;
	END LOOP;
	WHILE payments._period_start(p_anchor, p_time_zone, p_unit, p_count, n + 1) <= p_at LOOP
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._period_index_at(timestamp, text, text, integer, timestamptz) IS
	'Internal: the number of a subscription''s period that contains p_at (counted from the local billing anchor; negative before it).';

-- THE proration rule (README, "Proration"): the part of a period's amount
-- for the time left in it, amount * remaining / period, both in whole
-- seconds, exact in minor units and rounded once, half to even, by
-- pay_amount's division.  No product may overflow: the fraction is reduced,
-- and the amount split (minor units) as A = a * period + r, so that
-- A * remaining / period = q + (r * remaining) / period with q = a *
-- remaining exact; the even part of q is added outside the division, the
-- odd unit inside it, so the division still rounds a tie to the even
-- total.  Nothing before the period's start is prorated (the whole
-- amount), nothing after its end (zero).
CREATE FUNCTION payments._prorate(p_amount payments.pay_amount, p_period_start timestamptz,
	p_period_end timestamptz, p_at timestamptz)
	RETURNS payments.pay_amount
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	-- amount * remaining exactly (numeric: up to 19 + 11 digits), divided
	-- by the period, the remainder rounding half to even
	SELECT CASE WHEN t.remaining <= 0 THEN p_amount * 0
		WHEN t.remaining >= t.period THEN p_amount
		ELSE pay_amount_from_minor((q.whole + CASE WHEN 2 * abs(q.rest) > t.period
				OR (2 * abs(q.rest) = t.period AND q.whole % 2 <> 0) THEN sign(q.n) ELSE 0 END)::bigint,
			pay_currency(p_amount)) END
	FROM (SELECT floor(extract(epoch FROM p_period_end) - extract(epoch FROM p_at))::bigint AS remaining,
			greatest(floor(extract(epoch FROM p_period_end) - extract(epoch FROM p_period_start))::bigint, 1) AS period) t,
		LATERAL (SELECT x.n, div(x.n, t.period) AS whole, mod(x.n, t.period) AS rest
			FROM (SELECT pay_minor_units(p_amount)::numeric * greatest(t.remaining, 0) AS n) x) q
	$$;
COMMENT ON FUNCTION payments._prorate(payments.pay_amount, timestamptz, timestamptz, timestamptz) IS
	'Internal: the proration rule: amount * remaining seconds / period seconds of [period_start, period_end) at p_at, exact in minor units, rounded half to even.';

-- The invoice line of a subscription's price for [p_from, p_end) of the
-- period [p_start, p_end): the whole price, or its prorated part.
CREATE FUNCTION payments._period_line(s payments.subscriptions, p_start timestamptz, p_end timestamptz,
	p_from timestamptz)
	RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT jsonb_build_object('kind', 'subscription',
		-- wall-clock times as to_char writes them, whatever the session's DateStyle
		'description', format('%s x %s, %s to %s%s', s.quantity, s.unit_amount,
			to_char(greatest(p_from, p_start) AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
			to_char(p_end AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS'),
			CASE WHEN p_from > p_start THEN format(' (prorated: %s of %s seconds)',
				floor(extract(epoch FROM p_end) - extract(epoch FROM p_from))::bigint,
				floor(extract(epoch FROM p_end) - extract(epoch FROM p_start))::bigint) ELSE '' END),
		'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
		'amount', payments._prorate(s.unit_amount * s.quantity, p_start, p_end, p_from)::text)
	$$;
COMMENT ON FUNCTION payments._period_line(payments.subscriptions, timestamptz, timestamptz, timestamptz) IS
	'Internal: the invoice line of a subscription''s price for the part of a period from p_from (prorated when p_from is after the period''s start).';

------------------------------------------------------------------------------
-- Plans.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_create_plan(
	name text,
	amount payments.pay_amount,
	interval_unit text DEFAULT 'month',
	interval_count integer DEFAULT 1,
	trial_days integer DEFAULT 0,
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.plans
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_plan.correlation_id);
	idem payments.idempotency_keys;
	result payments.plans;
BEGIN
	IF pay_create_plan.name IS NULL OR length(pay_create_plan.name) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'name must be 1 to 255 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_text('name', pay_create_plan.name);
	PERFORM payments._check_price(pay_create_plan.amount, 'amount');
	PERFORM payments._check_billing_interval(pay_create_plan.interval_unit, pay_create_plan.interval_count);
	IF pay_create_plan.trial_days IS NULL OR pay_create_plan.trial_days NOT BETWEEN 0 AND 730 THEN
		RAISE EXCEPTION 'trial_days must be between 0 and 730' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_metadata(pay_create_plan.metadata);
	PERFORM payments._check_gateway_input(NULL, NULL, NULL, corr);
	idem := payments._idempotency_claim(m, pay_create_plan.idempotency_key, 'create_plan',
		md5(jsonb_build_array(pay_create_plan.name, pay_create_plan.amount::text, pay_create_plan.interval_unit,
			pay_create_plan.interval_count, pay_create_plan.trial_days,
			nullif(pay_create_plan.metadata, '{}'))::text));	-- {}: what leaving it out makes
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO result FROM payments.plans x
		WHERE x.merchant_id = m AND x.idempotency_key = pay_create_plan.idempotency_key
		ORDER BY x.plan_id DESC LIMIT 1;
		RETURN result;
	END IF;
	INSERT INTO payments.plans (merchant_id, name, amount, interval_unit, interval_count, trial_days,
		metadata, idempotency_key, correlation_id)
	VALUES (m, pay_create_plan.name, pay_create_plan.amount, pay_create_plan.interval_unit,
		pay_create_plan.interval_count, pay_create_plan.trial_days, coalesce(pay_create_plan.metadata, '{}'),
		pay_create_plan.idempotency_key, corr)
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (m, 'plan.created', jsonb_build_object('plan_id', result.plan_id, 'name', result.name,
		'amount', result.amount, 'interval_unit', result.interval_unit, 'interval_count', result.interval_count,
		'trial_days', result.trial_days), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_create_plan(text, payments.pay_amount, text, integer, integer, jsonb, text, text) IS
	'Creates a plan of the current merchant: name, amount per period (a positive pay_amount: its currency is the plan''s), interval_unit (day, week, month, year) times interval_count (1-366), trial_days (0-730) new subscriptions get by default, metadata. Amount and interval never change afterwards. Writes a plan.created event. Returns the plan row.';

CREATE FUNCTION payments.pay_update_plan(
	plan_id bigint,
	name text DEFAULT NULL,
	active boolean DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	amount payments.pay_amount DEFAULT NULL,
	interval_unit text DEFAULT NULL,
	interval_count integer DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.plans
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans := payments._find_plan(pay_update_plan.plan_id, true);
	corr text := payments._correlation_id(pay_update_plan.correlation_id);
	idem payments.idempotency_keys;
	result payments.plans;
BEGIN
	IF pay_update_plan.amount IS NOT NULL OR pay_update_plan.interval_unit IS NOT NULL
			OR pay_update_plan.interval_count IS NOT NULL THEN
		RAISE EXCEPTION 'the amount and interval of a plan never change'
			USING ERRCODE = '22023',
				DETAIL = format('Plan %s is %s per %s %s; its subscriptions were sold at that price.',
					p.plan_id, p.amount, p.interval_count, p.interval_unit),
				HINT = 'Create a new plan (pay_create_plan), move subscriptions to it with pay_change_subscription(plan_id => ...), and make this one inactive (active => false).';
	END IF;
	IF pay_update_plan.name IS NOT NULL AND length(pay_update_plan.name) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'name must be 1 to 255 characters' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_text('name', pay_update_plan.name);
	PERFORM payments._check_metadata(pay_update_plan.metadata);
	idem := payments._idempotency_claim(p.merchant_id, pay_update_plan.idempotency_key, 'update_plan',
		md5(jsonb_build_array(p.plan_id, pay_update_plan.name, pay_update_plan.active, pay_update_plan.metadata)::text));
	IF idem.request_kind IS NOT NULL THEN
		RETURN p;				-- applied once already
	END IF;
	UPDATE payments.plans x SET
		name = coalesce(pay_update_plan.name, x.name),
		active = coalesce(pay_update_plan.active, x.active),
		metadata = coalesce(pay_update_plan.metadata, x.metadata),
		updated_at = clock_timestamp()
	WHERE x.merchant_id = p.merchant_id AND x.plan_id = p.plan_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (p.merchant_id, 'plan.updated', jsonb_build_object('plan_id', p.plan_id, 'active', result.active,
		'fields', (SELECT coalesce(jsonb_agg(k), '[]') FROM unnest(ARRAY['name', 'active', 'metadata'],
			ARRAY[pay_update_plan.name IS NOT NULL, pay_update_plan.active IS NOT NULL,
				pay_update_plan.metadata IS NOT NULL]) AS f(k, given) WHERE given)), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_plan(bigint, text, boolean, jsonb, payments.pay_amount, text, integer, text, text) IS
	'Changes a plan''s name, active flag (an inactive plan takes no new subscriptions; existing ones go on) or metadata (NULL: unchanged). Its amount and interval never change: passing them raises 22023 (make a new plan instead). Writes a plan.updated event. PT404 for an unknown or foreign id.';

CREATE FUNCTION payments.pay_get_plan(plan_id bigint) RETURNS payments.plans
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_plan(pay_get_plan.plan_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_plan(bigint) IS
	'A plan of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_plans(
	active boolean DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.plans
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	PERFORM payments._check_page_size(page_size, 'plan_id');
	IF after IS NOT NULL THEN
		SELECT x.created_at INTO cursor_at FROM payments.plans x
		WHERE x.merchant_id = m AND x.plan_id = pay_list_plans.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor plan % is not a plan of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last plan_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT x.* FROM payments.plans x
	WHERE x.merchant_id = m
		AND (pay_list_plans.after IS NULL OR (x.created_at, x.plan_id) < (cursor_at, pay_list_plans.after))
		AND (pay_list_plans.active IS NULL OR x.active = pay_list_plans.active)
	ORDER BY x.created_at DESC, x.plan_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_plans(boolean, bigint, integer) IS
	'The current merchant''s plans, newest first (created_at, then plan_id), at most page_size (1-500, default 50) per call; active filters active or inactive ones. Keyset pagination: pass as after the last plan_id of the previous page.';

------------------------------------------------------------------------------
-- Subscriptions: create, read, list, update.
------------------------------------------------------------------------------

CREATE FUNCTION payments.pay_create_subscription(
	customer_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	interval_unit text DEFAULT NULL,
	interval_count integer DEFAULT NULL,
	quantity integer DEFAULT 1,
	payment_method_id bigint DEFAULT NULL,
	trial_days integer DEFAULT NULL,
	billing_anchor timestamp DEFAULT NULL,
	time_zone text DEFAULT 'UTC',
	metadata jsonb DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers;
	m bigint := payments.pay_current_merchant();
	corr text := payments._correlation_id(pay_create_subscription.correlation_id);
	p payments.plans;
	unit_ payments.pay_amount;
	iunit text;
	icount integer;
	trial integer;
	idem payments.idempotency_keys;
	now_ timestamptz;
	anchor timestamp;
	n integer;
	ps timestamptz;
	pe timestamptz;
	s payments.subscriptions;
	inv payments.invoices;
BEGIN
	-- the customer's row first, then the key: the order of every call that
	-- locks a customer and claims a key (a payment for the customer, its
	-- deletion or erasure); the other order deadlocked with a deletion
	-- claiming the same key (which then gets PT409).  Locked only: it is
	-- checked after the key is looked up
	PERFORM 1 FROM payments.customers x
	WHERE x.merchant_id = m AND x.customer_id = pay_create_subscription.customer_id
	FOR KEY SHARE;
	-- a repeated call returns what the first one made, whatever changed
	-- since (the plan made inactive, the card deleted): the key is looked
	-- up before anything is checked against the current state
	idem := payments._idempotency_claim(m, pay_create_subscription.idempotency_key, 'create_subscription',
		md5(jsonb_build_array(pay_create_subscription.customer_id, pay_create_subscription.plan_id,
			pay_create_subscription.price::text,
			pay_create_subscription.interval_unit, pay_create_subscription.interval_count,
			pay_create_subscription.quantity, pay_create_subscription.payment_method_id,
			pay_create_subscription.trial_days, pay_create_subscription.billing_anchor,
			pay_create_subscription.time_zone,
			nullif(pay_create_subscription.metadata, '{}'))::text),	-- {}: what leaving it out makes
		pay_create_subscription.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		SELECT * INTO s FROM payments.subscriptions x
		WHERE x.merchant_id = m AND x.idempotency_key = idem.idempotency_key	-- as kept (erased: a digest)
		ORDER BY x.subscription_id DESC LIMIT 1;
		RETURN s;
	END IF;
	c := payments._share_customer(pay_create_subscription.customer_id);
	IF (pay_create_subscription.plan_id IS NULL) = (pay_create_subscription.price IS NULL) THEN
		RAISE EXCEPTION 'exactly one of plan_id and price is required'
			USING ERRCODE = '22023', HINT = 'Subscribe to a plan (plan_id), or give an explicit price with interval_unit and interval_count.';
	END IF;
	IF pay_create_subscription.plan_id IS NOT NULL THEN
		p := payments._find_plan(pay_create_subscription.plan_id);
		IF NOT p.active THEN
			RAISE EXCEPTION 'plan % is inactive', p.plan_id
				USING ERRCODE = '22Y20', HINT = 'Inactive plans take no new subscriptions; make it active again (pay_update_plan) or use another.';
		END IF;
		IF coalesce(pay_create_subscription.interval_unit, p.interval_unit) <> p.interval_unit
				OR coalesce(pay_create_subscription.interval_count, p.interval_count) <> p.interval_count THEN
			RAISE EXCEPTION 'a subscription to plan % is billed every % %', p.plan_id, p.interval_count, p.interval_unit
				USING ERRCODE = '22023', HINT = 'Leave interval_unit and interval_count out with a plan, or give a price instead of the plan.';
		END IF;
		unit_ := p.amount;
		iunit := p.interval_unit;
		icount := p.interval_count;
	ELSE
		PERFORM payments._check_price(pay_create_subscription.price, 'price');
		IF pay_create_subscription.interval_unit IS NULL THEN
			RAISE EXCEPTION 'interval_unit is required with a price'
				USING ERRCODE = '22023', HINT = 'Pass interval_unit => ''month'' (day, week, month or year) and, if not 1, interval_count.';
		END IF;
		unit_ := pay_create_subscription.price;
		iunit := pay_create_subscription.interval_unit;
		icount := coalesce(pay_create_subscription.interval_count, 1);
	END IF;
	PERFORM payments._check_billing_interval(iunit, icount);
	IF pay_create_subscription.quantity IS NULL OR pay_create_subscription.quantity NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'quantity must be between 1 and 100000' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_gateway_input(payments._subscription_total(unit_, pay_create_subscription.quantity),
		NULL, NULL, corr);
	trial := coalesce(pay_create_subscription.trial_days, p.trial_days, 0);
	IF trial NOT BETWEEN 0 AND 730 THEN
		RAISE EXCEPTION 'trial_days must be between 0 and 730' USING ERRCODE = '22023';
	END IF;
	PERFORM payments._check_time_zone(pay_create_subscription.time_zone);
	PERFORM payments._check_metadata(pay_create_subscription.metadata);
	IF pay_create_subscription.billing_anchor IS NOT NULL THEN
		IF NOT isfinite(pay_create_subscription.billing_anchor) THEN
			RAISE EXCEPTION 'billing_anchor must be a finite time' USING ERRCODE = '22023';
		END IF;
		IF trial > 0 THEN
			RAISE EXCEPTION 'billing_anchor cannot be combined with a trial'
				USING ERRCODE = '22023',
					DETAIL = 'A subscription with a trial is billed from the end of its trial: that is its anchor.',
					HINT = 'Pass trial_days => 0 to bill from the anchor given.';
		END IF;
	END IF;
	-- the method charged: the one named (the customer's, active), else the
	-- customer's active default; a trial may start without one
	IF pay_create_subscription.payment_method_id IS NOT NULL THEN
		PERFORM payments._stored_method_for_payment(c.customer_id, pay_create_subscription.payment_method_id, 0);
	ELSIF trial = 0
			AND (payments._invoice_payment_method(m, c.customer_id, NULL)).payment_method_id IS NULL THEN
		RAISE EXCEPTION 'customer % has no usable payment method', c.customer_id
			USING ERRCODE = '22Y22',
				DETAIL = 'A subscription without a trial is charged at once; the customer has no active default method.',
				HINT = 'Save one (pay_save_payment_method) and wait until it is active (pay_wait_payment_method), or pass payment_method_id.';
	END IF;

	-- made under the server life's tag (gateway_tag, _server_tag; NULL
	-- before any change of server): after a change of server its id may be
	-- one the server before gave its own subscription after the copy, and
	-- its periods' invoice numbers (_invoice_charge_number) that one's
	now_ := payments._billing_now(m);
	IF trial > 0 THEN
		-- trialing: period -1 is the trial; the anchor is its end, local
		anchor := (now_ AT TIME ZONE pay_create_subscription.time_zone) + make_interval(days => trial);
		pe := anchor AT TIME ZONE pay_create_subscription.time_zone;
		INSERT INTO payments.subscriptions (merchant_id, customer_id, plan_id, status, unit_amount, quantity,
			interval_unit, interval_count, payment_method_id, time_zone, billing_anchor,
			current_period_index, current_period_start, current_period_end, trial_end, next_renewal_at,
			metadata, idempotency_key, correlation_id, gateway_tag)
		VALUES (m, c.customer_id, p.plan_id, 'trialing', unit_, pay_create_subscription.quantity,
			iunit, icount, pay_create_subscription.payment_method_id, pay_create_subscription.time_zone, anchor,
			-1, now_, pe, pe, pe,
			coalesce(pay_create_subscription.metadata, '{}'), pay_create_subscription.idempotency_key, corr,
			payments._server_tag())
		RETURNING * INTO s;
		RETURN s;
	END IF;

	-- incomplete: the period containing now is current (period 0 from now
	-- when no anchor is given); its first invoice is issued and charged now,
	-- for the part of the period left when the anchor is elsewhere
	IF pay_create_subscription.billing_anchor IS NULL THEN
		anchor := now_ AT TIME ZONE pay_create_subscription.time_zone;
		n := 0;
		ps := now_;
	ELSE
		anchor := pay_create_subscription.billing_anchor;
		n := payments._period_index_at(anchor, pay_create_subscription.time_zone, iunit, icount, now_);
		ps := payments._period_start(anchor, pay_create_subscription.time_zone, iunit, icount, n);
	END IF;
	pe := payments._period_start(anchor, pay_create_subscription.time_zone, iunit, icount, n + 1);
	INSERT INTO payments.subscriptions (merchant_id, customer_id, plan_id, status, unit_amount, quantity,
		interval_unit, interval_count, payment_method_id, time_zone, billing_anchor,
		current_period_index, current_period_start, current_period_end, next_renewal_at,
		metadata, idempotency_key, correlation_id, gateway_tag)
	VALUES (m, c.customer_id, p.plan_id, 'incomplete', unit_, pay_create_subscription.quantity,
		iunit, icount, pay_create_subscription.payment_method_id, pay_create_subscription.time_zone, anchor,
		-- the billing run expires it if its first invoice is not paid in time
		n, ps, pe, now_ + payments._incomplete_expiry(),
		coalesce(pay_create_subscription.metadata, '{}'), pay_create_subscription.idempotency_key, corr,
		payments._server_tag())
	RETURNING * INTO s;
	inv := payments._issue_invoice(m, s.subscription_id, 'first', n, now_, pe,
		CASE WHEN now_ > ps THEN jsonb_build_array(payments._period_line(s, ps, pe, now_)) END);
	IF inv.status = 'paid' THEN
		-- nothing was due (a prorated part that rounds to zero)
		UPDATE payments.subscriptions x SET status = 'active'
		WHERE x.merchant_id = m AND x.subscription_id = s.subscription_id
		RETURNING * INTO s;
	END IF;
	RETURN s;
END
$$;
COMMENT ON FUNCTION payments.pay_create_subscription(bigint, bigint, payments.pay_amount, text, integer, integer, bigint, integer, timestamp, text, jsonb, text, text) IS
	'Subscribes a customer of the current merchant to a plan (plan_id) or an explicit price per period (price, interval_unit, interval_count), times quantity, charged to payment_method_id (NULL: the customer''s default at each charge). With a trial (trial_days, default the plan''s): status trialing until the trial''s end, which is the billing anchor; no payment method is needed yet. Without: status incomplete, and the first invoice of the current period is issued and charged in this transaction (the payment goes out after COMMIT; paid -> active): the customer must have an active default method or one named (22Y22 otherwise). billing_anchor is a local wall-clock time in time_zone (an IANA name; default now): the period containing now is current and its remaining part is invoiced, prorated. Errors: PT404 unknown or foreign customer, plan or method; 22Y20 deleted customer, inactive plan, method not active; 22023 bad input. A repeated call with the same idempotency_key and arguments returns the subscription the first one made, whatever changed since (PT409 for other arguments). Returns the subscription row.';

CREATE FUNCTION payments.pay_get_subscription(subscription_id bigint) RETURNS payments.subscriptions
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT * FROM payments._find_subscription(pay_get_subscription.subscription_id)
	$$;
COMMENT ON FUNCTION payments.pay_get_subscription(bigint) IS
	'A subscription of the current merchant; an unknown id, or another merchant''s, raises PT404.';

CREATE FUNCTION payments.pay_list_subscriptions(
	customer_id bigint DEFAULT NULL,
	status text DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.subscriptions
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	PERFORM payments._check_page_size(page_size, 'subscription_id');
	IF pay_list_subscriptions.status IS NOT NULL AND pay_list_subscriptions.status NOT IN ('trialing', 'incomplete',
			'incomplete_expired', 'active', 'past_due', 'paused', 'canceled', 'unpaid') THEN
		RAISE EXCEPTION 'unknown subscription status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.',
				HINT = 'A status is one of trialing, incomplete, incomplete_expired, active, past_due, paused, canceled, unpaid.';
	END IF;
	IF pay_list_subscriptions.customer_id IS NOT NULL THEN
		PERFORM payments._find_customer(pay_list_subscriptions.customer_id);
	END IF;
	IF after IS NOT NULL THEN
		SELECT x.created_at INTO cursor_at FROM payments.subscriptions x
		WHERE x.merchant_id = m AND x.subscription_id = pay_list_subscriptions.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor subscription % is not a subscription of this merchant', after
				USING ERRCODE = '22023', HINT = 'Pass as after the last subscription_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY
	SELECT x.* FROM payments.subscriptions x
	WHERE x.merchant_id = m
		AND (pay_list_subscriptions.after IS NULL
			OR (x.created_at, x.subscription_id) < (cursor_at, pay_list_subscriptions.after))
		AND (pay_list_subscriptions.customer_id IS NULL OR x.customer_id = pay_list_subscriptions.customer_id)
		AND (pay_list_subscriptions.status IS NULL OR x.status = pay_list_subscriptions.status)
	ORDER BY x.created_at DESC, x.subscription_id DESC
	LIMIT page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_subscriptions(bigint, text, bigint, integer) IS
	'The current merchant''s subscriptions, newest first (created_at, then subscription_id), at most page_size (1-500, default 50) per call; filters customer_id (PT404 for an unknown or foreign one) and status. Keyset pagination: pass as after the last subscription_id of the previous page.';

-- A subscription that has ended takes no change but its metadata.
CREATE FUNCTION payments._require_not_ended(s payments.subscriptions, p_what text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF s.status IN ('canceled', 'incomplete_expired') THEN
		RAISE EXCEPTION 'cannot % subscription %: it has ended (status %)', p_what, s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'An ended subscription stays as it is (only its metadata can change); create a new one.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_not_ended(payments.subscriptions, text) IS
	'Internal: raises 22Y20 for a canceled or incomplete_expired subscription.';

-- Cancelling at the end of the period needs a period end the billing run
-- reaches: trialing, incomplete (once paid) and active subscriptions.
CREATE FUNCTION payments._require_cancellable_at_period_end(s payments.subscriptions) RETURNS void
	LANGUAGE plpgsql IMMUTABLE
	AS $$
BEGIN
	IF s.status NOT IN ('trialing', 'incomplete', 'active') THEN
		RAISE EXCEPTION 'cannot cancel subscription % at the end of its period in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20',
				DETAIL = 'Only trialing, incomplete and active subscriptions reach the end of their period through the billing run.',
				HINT = 'Cancel it now (pay_cancel_subscription with at_period_end => false).';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._require_cancellable_at_period_end(payments.subscriptions) IS
	'Internal: raises 22Y20 unless a subscription can be canceled at the end of its period (trialing, incomplete, active).';

CREATE FUNCTION payments.pay_update_subscription(
	subscription_id bigint,
	payment_method_id bigint DEFAULT NULL,
	metadata jsonb DEFAULT NULL,
	cancel_at_period_end boolean DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_update_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_update_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	result payments.subscriptions;
BEGIN
	IF pay_update_subscription.payment_method_id IS NULL AND pay_update_subscription.metadata IS NULL
			AND pay_update_subscription.cancel_at_period_end IS NULL THEN
		RAISE EXCEPTION 'nothing to update'
			USING ERRCODE = '22023', HINT = 'Pass payment_method_id, metadata or cancel_at_period_end; pay_change_subscription changes the plan, price or quantity.';
	END IF;
	PERFORM payments._check_metadata(pay_update_subscription.metadata);
	-- a repeated call returns, whatever changed since (the subscription
	-- ended, the method deleted): the key first, then the current state
	idem := payments._idempotency_claim(s.merchant_id, pay_update_subscription.idempotency_key, 'update_subscription',
		md5(jsonb_build_array(s.subscription_id, pay_update_subscription.payment_method_id,
			pay_update_subscription.metadata, pay_update_subscription.cancel_at_period_end)::text),
		s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF pay_update_subscription.cancel_at_period_end IS NOT NULL THEN
		-- the period that contains now: one set to cancel at the end of a
		-- period that has ended is canceled (nothing left to undo), else a
		-- cancel is set for the end of the period now running
		s := payments._apply_due_renewals(s, now_);
	END IF;
	IF pay_update_subscription.payment_method_id IS NOT NULL OR pay_update_subscription.cancel_at_period_end IS NOT NULL THEN
		PERFORM payments._require_not_ended(s, 'update');
	END IF;
	IF pay_update_subscription.payment_method_id IS NOT NULL THEN
		PERFORM payments._stored_method_for_payment(s.customer_id, pay_update_subscription.payment_method_id, 0);
	END IF;
	IF pay_update_subscription.cancel_at_period_end AND NOT s.cancel_at_period_end THEN
		PERFORM payments._require_cancellable_at_period_end(s);
	END IF;
	UPDATE payments.subscriptions x SET
		payment_method_id = coalesce(pay_update_subscription.payment_method_id, x.payment_method_id),
		metadata = coalesce(pay_update_subscription.metadata, x.metadata),
		cancel_at_period_end = coalesce(pay_update_subscription.cancel_at_period_end, x.cancel_at_period_end),
		canceled_at = CASE WHEN pay_update_subscription.cancel_at_period_end IS NULL
				OR pay_update_subscription.cancel_at_period_end = x.cancel_at_period_end THEN x.canceled_at
			WHEN pay_update_subscription.cancel_at_period_end THEN now_ END
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
		'customer_id', s.customer_id, 'status', s.status, 'payment_method_id', result.payment_method_id,
		'cancel_at_period_end', result.cancel_at_period_end,
		'fields', (SELECT coalesce(jsonb_agg(k), '[]') FROM unnest(ARRAY['payment_method_id', 'metadata', 'cancel_at_period_end'],
			ARRAY[pay_update_subscription.payment_method_id IS NOT NULL, pay_update_subscription.metadata IS NOT NULL,
				pay_update_subscription.cancel_at_period_end IS NOT NULL]) AS f(k, given) WHERE given)), corr);
	-- a new card during dunning is tried at once (the billing side owns the
	-- retry: payments._retry_open_invoice_now, billing.sql, which locks each
	-- open invoice before it looks whether its charge is in flight: no
	-- unlocked read here decides that, since at REPEATABLE READ a charge
	-- failed since the snapshot still looked unanswered, and the new card was
	-- not tried)
	IF pay_update_subscription.payment_method_id IS NOT NULL
			AND pay_update_subscription.payment_method_id IS DISTINCT FROM s.payment_method_id
			AND s.status IN ('past_due', 'unpaid', 'incomplete') THEN
		PERFORM payments._retry_open_invoice_now(s.merchant_id, s.subscription_id);
		SELECT * INTO result FROM payments.subscriptions x
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_update_subscription(bigint, bigint, jsonb, boolean, text, text) IS
	'Changes a subscription''s payment method (the customer''s, active; during dunning - past_due, unpaid, or incomplete with a failed first charge - the open invoice is charged to it at once), metadata (replaced whole), or cancel_at_period_end (true: cancel when the period ends, as pay_cancel_subscription(at_period_end => true); false: undo that). NULL: unchanged. An ended subscription takes only metadata (22Y20). Writes a subscription.updated event naming the fields. PT404 for an unknown or foreign id.';

------------------------------------------------------------------------------
-- Cancel, pause, resume.
------------------------------------------------------------------------------

-- The invoice items (prorations, a carried credit) that the open invoices
-- of a subscription ending now took go back to pending before those
-- invoices are voided, so that _close_pending_items closes them on the
-- final invoice: a voided invoice dropped them (a customer's carried
-- credit vanished without an event).
CREATE FUNCTION payments._release_open_invoice_items(s payments.subscriptions) RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.invoice_items t SET invoice_id = NULL
	FROM payments.invoices i
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
		AND t.merchant_id = i.merchant_id AND t.subscription_id = i.subscription_id
		AND t.invoice_id = i.invoice_id
	$$;
COMMENT ON FUNCTION payments._release_open_invoice_items(payments.subscriptions) IS
	'Internal: returns to pending the invoice items taken by the open invoices of a subscription that ends now (they are voided), so that its final invoice closes them.';

-- Ending a subscription now (the caller holds its row lock): its open
-- invoices are voided and it is canceled (incomplete_expired when it never
-- started).  Refused while an open invoice's charge is in flight: it could
-- be paid after the invoice was voided.
CREATE FUNCTION payments._end_subscription_now(s payments.subscriptions, now_ timestamptz)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	in_flight bigint;
	result payments.subscriptions;
BEGIN
	SELECT i.invoice_id INTO in_flight FROM payments.invoices i
	JOIN payments.payments y ON y.merchant_id = i.merchant_id AND y.payment_id = i.payment_id
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
		AND y.status IN ('pending', 'unknown', 'in_review')
	LIMIT 1;
	IF in_flight IS NOT NULL THEN
		RAISE EXCEPTION 'a charge of invoice % of subscription % is in flight', in_flight, s.subscription_id
			USING ERRCODE = '22Y20',
				HINT = 'Wait for its outcome (pay_wait on the invoice''s payment_id; a payment held for review: pay_void it), then cancel again.';
	END IF;
	PERFORM payments._release_open_invoice_items(s);
	UPDATE payments.invoices i SET status = 'void', closed_at = now_, next_attempt_at = NULL
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open';
	-- an incomplete subscription never started: it ends as incomplete_expired
	UPDATE payments.subscriptions x SET
		status = CASE WHEN s.status = 'incomplete' THEN 'incomplete_expired' ELSE 'canceled' END,
		canceled_at = now_, ended_at = now_, next_renewal_at = NULL
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	-- no next invoice: the pending prorations go on a final one, charged
	PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled', true);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments._end_subscription_now(payments.subscriptions, timestamptz) IS
	'Internal: cancels a subscription now (incomplete_expired if it never started), voids its open invoices and closes its pending invoice items on a final invoice, charged (payments._close_pending_items); 22Y20 while a charge of an open invoice is in flight. The caller holds the subscription''s row lock.';

-- A customer who is deleted or erased keeps no running subscription: each
-- is ended now, as pay_cancel_subscription would (refused, with the whole
-- deletion, while a charge of one is in flight).
CREATE FUNCTION payments._end_customer_subscriptions(c payments.customers) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions;
BEGIN
	FOR s IN SELECT * FROM payments.subscriptions x
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND x.status NOT IN ('canceled', 'incomplete_expired')
		ORDER BY x.subscription_id
		FOR UPDATE
	LOOP
		-- a deleted customer is not charged: what its pending prorations
		-- come to is recorded (an uncollectible final invoice), not charged
		PERFORM payments._release_open_invoice_items(s);
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'customer_deleted', false);
		PERFORM payments._end_subscription_now(s, payments._billing_now(c.merchant_id));
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._end_customer_subscriptions(payments.customers) IS
	'Internal: ends a deleted or erased customer''s running subscriptions now (payments._end_subscription_now); their pending invoice items are closed on an uncollectible final invoice, not charged.';

CREATE FUNCTION payments.pay_cancel_subscription(
	subscription_id bigint,
	at_period_end boolean DEFAULT false,
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_cancel_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_cancel_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	result payments.subscriptions;
BEGIN
	IF at_period_end IS NULL THEN
		RAISE EXCEPTION 'at_period_end must be true or false' USING ERRCODE = '22023';
	END IF;
	idem := payments._idempotency_claim(s.merchant_id, pay_cancel_subscription.idempotency_key, 'cancel_subscription',
		md5(jsonb_build_array(s.subscription_id, at_period_end)::text), s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	PERFORM payments._require_not_ended(s, 'cancel');
	IF at_period_end THEN
		-- the end of the period that contains now, whether or not the
		-- billing run has renewed the subscription yet
		s := payments._apply_due_renewals(s, now_);
		PERFORM payments._require_not_ended(s, 'cancel');
		PERFORM payments._require_cancellable_at_period_end(s);
		UPDATE payments.subscriptions x SET cancel_at_period_end = true, canceled_at = now_
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
			'customer_id', s.customer_id, 'status', s.status, 'cancel_at_period_end', true,
			'cancel_at', payments._json_time(s.current_period_end), 'fields', jsonb_build_array('cancel_at_period_end')), corr);
		RETURN result;
	END IF;
	RETURN payments._end_subscription_now(s, now_);
END
$$;
COMMENT ON FUNCTION payments.pay_cancel_subscription(bigint, boolean, text, text) IS
	'Cancels a subscription of the current merchant. Now (default): status canceled (an incomplete one: incomplete_expired), canceled_at and ended_at set, next_renewal_at NULL, its open invoices voided; nothing is refunded; refused (22Y20) while a charge of an open invoice is in flight. At period end (at_period_end => true; trialing, incomplete or active only): cancel_at_period_end is set and the billing run ends it when the period ends, without charging the next one. Either way, pending prorations (pay_change_subscription with next_invoice) are closed on a final proration invoice when it ends: a net amount owed is charged, a net credit reported (subscription.pending_items_closed); pay_update_subscription(cancel_at_period_end => false) undoes it. An ended subscription raises 22Y20; PT404 for an unknown or foreign id.';

CREATE FUNCTION payments.pay_pause_subscription(
	subscription_id bigint,
	idempotency_key text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_pause_subscription.subscription_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(s.merchant_id,
		pay_pause_subscription.idempotency_key, 'pause_subscription', md5(jsonb_build_array(s.subscription_id)::text),
		s.customer_id);
	open_invoice bigint;
	result payments.subscriptions;
BEGIN
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF s.status <> 'active' THEN
		RAISE EXCEPTION 'cannot pause subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Only an active subscription can be paused.';
	END IF;
	IF s.cancel_at_period_end THEN
		-- paused, it would never reach the period end that cancels it
		RAISE EXCEPTION 'cannot pause subscription % while it is set to cancel at the end of its period', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = 'A paused subscription is not renewed, so the billing run would never reach the period end that cancels it.',
				HINT = 'Let it end at the period end, cancel it now, or undo the cancel first (pay_update_subscription with cancel_at_period_end => false).';
	END IF;
	IF s.next_renewal_at <= payments._billing_now(s.merchant_id) THEN
		-- its period has ended and the next one is not invoiced yet: paused
		-- now, the part of that period served would never be billed
		RAISE EXCEPTION 'cannot pause subscription % while its renewal is due', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = format('Its period ended at %s; the billing run has not renewed it yet.', s.next_renewal_at),
				HINT = 'Pause it once the billing run has renewed it (pay_run_renewals) and that invoice is paid.';
	END IF;
	SELECT i.invoice_id INTO open_invoice FROM payments.invoices i
	WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id AND i.status = 'open'
	LIMIT 1;
	IF open_invoice IS NOT NULL THEN
		RAISE EXCEPTION 'cannot pause subscription % while its invoice % is open', s.subscription_id, open_invoice
			USING ERRCODE = '22Y20', HINT = 'Pause it once the invoice is paid (its charge is on its way), or cancel it.';
	END IF;
	UPDATE payments.subscriptions x SET status = 'paused', paused_at = payments._billing_now(s.merchant_id),
		next_renewal_at = NULL
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_pause_subscription(bigint, text) IS
	'Pauses an active subscription: status paused, no renewal and no charge until pay_resume_subscription (next_renewal_at NULL). The period it is paused in stays paid and is not refunded. Refused (22Y20) in any other status, while an invoice of it is open, or while it is set to cancel at the end of its period (cancel_at_period_end). PT404 for an unknown or foreign id.';

CREATE FUNCTION payments.pay_resume_subscription(
	subscription_id bigint,
	idempotency_key text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_resume_subscription.subscription_id, true);
	idem payments.idempotency_keys := payments._idempotency_claim(s.merchant_id,
		pay_resume_subscription.idempotency_key, 'resume_subscription', md5(jsonb_build_array(s.subscription_id)::text),
		s.customer_id);
	now_ timestamptz := payments._billing_now(s.merchant_id);
	n integer;
	ps timestamptz;
	pe timestamptz;
	result payments.subscriptions;
	inv payments.invoices;
BEGIN
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	IF s.status <> 'paused' THEN
		RAISE EXCEPTION 'cannot resume subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Only a paused subscription can be resumed.';
	END IF;
	-- the anchor is kept: the period containing now becomes current
	n := payments._period_index_at(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, now_);
	IF s.cancel_at_period_end AND n > s.current_period_index THEN
		-- set to cancel at the end of a period that has passed meanwhile
		-- (paused before pausing refused that): it ended then, nothing charged
		UPDATE payments.subscriptions x SET status = 'canceled', paused_at = NULL, next_renewal_at = NULL,
			canceled_at = coalesce(x.canceled_at, now_), ended_at = x.current_period_end
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		PERFORM payments._close_pending_items(s.merchant_id, s.subscription_id, 'canceled_at_period_end', true);
		RETURN result;
	END IF;
	IF n <= s.current_period_index THEN
		-- resumed within the period it was paused in: that period is paid
		UPDATE payments.subscriptions x SET status = 'active', paused_at = NULL,
			next_renewal_at = x.current_period_end
		WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
		RETURNING * INTO result;
		RETURN result;
	END IF;
	ps := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n);
	pe := payments._period_start(s.billing_anchor, s.time_zone, s.interval_unit, s.interval_count, n + 1);
	UPDATE payments.subscriptions x SET status = 'active', paused_at = NULL, current_period_index = n, period_amount = NULL,
		current_period_start = ps, current_period_end = pe, next_renewal_at = pe
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	-- the rest of this period, prorated, invoiced and charged now
	inv := payments._issue_invoice(s.merchant_id, s.subscription_id, 'renewal', n, now_, pe,
		jsonb_build_array(payments._period_line(result, ps, pe, now_)));
	SELECT * INTO result FROM payments.subscriptions x
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_resume_subscription(bigint, text) IS
	'Resumes a paused subscription: status active; the billing anchor is kept, so the period containing the resume time becomes current (its number counted from the anchor) and the part of it left is invoiced and charged at once, prorated (a resume within the period it was paused in charges nothing: that period was paid). A subscription set to cancel at the end of its period (possible only before pausing such a one was refused) whose period has ended meanwhile is canceled instead, ended at that period end, nothing more charged. Refused (22Y20) unless paused. PT404 for an unknown or foreign id.';

------------------------------------------------------------------------------
-- Change of plan, price or quantity, with proration.
------------------------------------------------------------------------------

-- What a change does, computed and checked, without changing anything
-- (pay_change_subscription applies it, pay_preview_subscription_change
-- shows it): the new terms and the proration lines at p_at.
CREATE FUNCTION payments._subscription_change(s payments.subscriptions, p_plan_id bigint,
	p_price payments.pay_amount, p_quantity integer, p_proration text, p_at timestamptz)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.plans;
	new_plan bigint := s.plan_id;
	new_unit payments.pay_amount := s.unit_amount;
	new_qty integer := coalesce(p_quantity, s.quantity);
	effective text := p_proration;
	-- what the current period was billed at: a change without proration
	-- set the terms of the next period only (period_amount keeps this
	-- period's); a credit for its unused part at the new terms credited
	-- (or charged) money never paid
	old_total payments.pay_amount := coalesce(s.period_amount, s.unit_amount * s.quantity);
	new_total payments.pay_amount;
	credit payments.pay_amount;
	charge payments.pay_amount;
	next_invoice payments.pay_amount;
	lines jsonb := '[]';
	-- the change's wall-clock time in the lines, as to_char writes it (its
	-- text followed the DateStyle of the session that made the change)
	at_local text := to_char(p_at AT TIME ZONE s.time_zone, 'YYYY-MM-DD HH24:MI:SS');
BEGIN
	IF p_proration IS NULL OR p_proration NOT IN ('none', 'next_invoice', 'invoice_now') THEN
		RAISE EXCEPTION 'proration must be none, next_invoice or invoice_now'
			USING ERRCODE = '22023',
				HINT = 'none changes the price from the next period; next_invoice adds the difference for the rest of this period to the next invoice; invoice_now charges it at once.';
	END IF;
	IF p_plan_id IS NOT NULL AND p_price IS NOT NULL THEN
		RAISE EXCEPTION 'plan_id and price cannot both be given' USING ERRCODE = '22023';
	END IF;
	IF p_plan_id IS NULL AND p_price IS NULL AND p_quantity IS NULL THEN
		RAISE EXCEPTION 'nothing to change' USING ERRCODE = '22023', HINT = 'Pass plan_id, price or quantity.';
	END IF;
	PERFORM payments._require_not_ended(s, 'change');
	IF s.status NOT IN ('active', 'trialing', 'paused') THEN
		RAISE EXCEPTION 'cannot change subscription % in status %', s.subscription_id, s.status
			USING ERRCODE = '22Y20', HINT = 'Change it once its open invoice is paid (status active).';
	END IF;
	IF p_plan_id IS NOT NULL THEN
		p := payments._find_plan(p_plan_id);
		IF NOT p.active AND p.plan_id IS DISTINCT FROM s.plan_id THEN
			RAISE EXCEPTION 'plan % is inactive', p.plan_id
				USING ERRCODE = '22Y20', HINT = 'Inactive plans take no new subscriptions; make it active again (pay_update_plan) or use another.';
		END IF;
		IF p.interval_unit <> s.interval_unit OR p.interval_count <> s.interval_count THEN
			RAISE EXCEPTION 'cannot change the billing interval of subscription %', s.subscription_id
				USING ERRCODE = '22023',
					DETAIL = format('The subscription is billed every %s %s; plan %s every %s %s. Its periods are counted from its anchor and each is invoiced once, so the interval is fixed.',
						s.interval_count, s.interval_unit, p.plan_id, p.interval_count, p.interval_unit),
					HINT = 'Cancel it (pay_cancel_subscription) and create a new subscription to the plan.';
		END IF;
		new_plan := p.plan_id;
		new_unit := p.amount;
	ELSIF p_price IS NOT NULL THEN
		PERFORM payments._check_price(p_price, 'price');
		new_plan := NULL;
		new_unit := p_price;
	END IF;
	IF pay_currency(new_unit) <> pay_currency(s.unit_amount) THEN
		RAISE EXCEPTION 'cannot change the currency of subscription % from % to %', s.subscription_id,
			pay_currency(s.unit_amount), pay_currency(new_unit)
			USING ERRCODE = '22Y03', HINT = 'Cancel it and create a new subscription in the other currency.';
	END IF;
	IF new_qty NOT BETWEEN 1 AND 100000 THEN
		RAISE EXCEPTION 'quantity must be between 1 and 100000' USING ERRCODE = '22023';
	END IF;
	new_total := payments._subscription_total(new_unit, new_qty);
	PERFORM payments._check_gateway_input(new_total, NULL, NULL, NULL);
	-- Paused, the period is paid at the old amount and a resume within it
	-- charges nothing more: prorating from now would credit time not
	-- served, and taking the change without proration would serve the rest
	-- of the period after a resume at the new amount for the old one.  So
	-- only proration none, which says that, is taken.
	IF s.status = 'paused' AND p_proration <> 'none' AND new_total <> old_total THEN
		RAISE EXCEPTION 'a change of paused subscription % cannot be prorated', s.subscription_id
			USING ERRCODE = '22Y20',
				DETAIL = format('The period it is paused in was paid at %s; resumed within it, nothing more is charged.', old_total),
				HINT = 'Resume it first and then change it, or pass proration => ''none'': the new amount then applies from the next period.';
	END IF;
	-- in a trial nothing has been paid: the new price simply applies from
	-- the next invoice.  A trial has ended once its subscription is in
	-- period 0 (still trialing while the charge of that period's invoice is
	-- not answered): that period is invoiced at the old amount, so a change
	-- is prorated as when active
	IF s.status = 'paused' OR (s.status = 'trialing' AND s.current_period_index < 0) THEN
		effective := 'none';
	END IF;
	IF effective <> 'none' AND new_total <> old_total THEN
		credit := - payments._prorate(old_total, s.current_period_start, s.current_period_end, p_at);
		charge := payments._prorate(new_total, s.current_period_start, s.current_period_end, p_at);
		IF pay_minor_units(credit) <> 0 THEN
			lines := lines || jsonb_build_object('kind', 'proration',
				'description', CASE WHEN s.period_amount IS NULL
					THEN format('Unused time on %s x %s from %s', s.quantity, s.unit_amount, at_local)
					ELSE format('Unused time on %s from %s', old_total, at_local) END,
				'unit_amount', s.unit_amount::text, 'quantity', s.quantity, 'amount', credit::text);
		END IF;
		IF pay_minor_units(charge) <> 0 THEN
			lines := lines || jsonb_build_object('kind', 'proration',
				'description', format('Remaining time on %s x %s from %s', new_qty, new_unit, at_local),
				'unit_amount', new_unit::text, 'quantity', new_qty, 'amount', charge::text);
		END IF;
	END IF;
	-- the next invoice this change leaves must be one the gateway takes:
	-- the new amount, the items already waiting for it and, with
	-- next_invoice, this change's lines (refused now, not by the worker
	-- when the renewal is charged)
	next_invoice := new_total + coalesce((SELECT sum(i.amount) FROM payments.invoice_items i
			WHERE i.merchant_id = s.merchant_id AND i.subscription_id = s.subscription_id
				AND i.invoice_id IS NULL), new_total * 0);
	IF effective = 'next_invoice' THEN
		next_invoice := next_invoice + coalesce((SELECT sum((l ->> 'amount')::payments.pay_amount)
			FROM jsonb_array_elements(lines) l), new_total * 0);
	END IF;
	IF pay_minor_units(next_invoice) > 0 THEN
		PERFORM payments._check_gateway_input(next_invoice, NULL, NULL, NULL);
	END IF;
	RETURN jsonb_build_object('subscription_id', s.subscription_id, 'status', s.status,
		'proration', effective, 'at', payments._json_time(p_at),
		'period_start', payments._json_time(s.current_period_start),
		'period_end', payments._json_time(s.current_period_end),
		'remaining_seconds', greatest(0, least(floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM p_at)),
			floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM s.current_period_start))))::bigint,
		'period_seconds', floor(extract(epoch FROM s.current_period_end) - extract(epoch FROM s.current_period_start))::bigint,
		'old', jsonb_build_object('plan_id', s.plan_id, 'unit_amount', s.unit_amount::text, 'quantity', s.quantity,
			'amount', old_total::text),
		'new', jsonb_build_object('plan_id', new_plan, 'unit_amount', new_unit::text, 'quantity', new_qty,
			'amount', new_total::text),
		'lines', lines,
		'total', coalesce((SELECT sum((l ->> 'amount')::payments.pay_amount) FROM jsonb_array_elements(lines) l),
			new_total * 0)::text);
END
$$;
COMMENT ON FUNCTION payments._subscription_change(payments.subscriptions, bigint, payments.pay_amount, integer, text, timestamptz) IS
	'Internal: checks a change of plan, price or quantity of a subscription and computes it at p_at: the new terms, and the proration lines (credit for the unused part at the old amount, charge for the remaining part at the new one, by payments._prorate) with their total. Changes nothing.';

CREATE FUNCTION payments.pay_preview_subscription_change(
	subscription_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	quantity integer DEFAULT NULL,
	proration text DEFAULT 'next_invoice')
	RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_preview_subscription_change.subscription_id);
	now_ timestamptz := payments._billing_now(s.merchant_id);
BEGIN
	-- as pay_change_subscription meets it: renewed if its period has ended
	RETURN payments._subscription_change(payments._subscription_as_renewed(s, now_),
		pay_preview_subscription_change.plan_id,
		pay_preview_subscription_change.price, pay_preview_subscription_change.quantity,
		pay_preview_subscription_change.proration, now_);
END
$$;
COMMENT ON FUNCTION payments.pay_preview_subscription_change(bigint, bigint, payments.pay_amount, integer, text) IS
	'What pay_change_subscription with the same arguments would do now, without changing anything: {"proration", "period_start", "period_end", "remaining_seconds", "period_seconds", "old": {...}, "new": {plan_id, unit_amount, quantity, amount}, "lines": [proration lines with amounts], "total"}. Same errors as pay_change_subscription.';

CREATE FUNCTION payments.pay_change_subscription(
	subscription_id bigint,
	plan_id bigint DEFAULT NULL,
	price payments.pay_amount DEFAULT NULL,
	quantity integer DEFAULT NULL,
	proration text DEFAULT 'next_invoice',
	idempotency_key text DEFAULT NULL,
	correlation_id text DEFAULT NULL)
	RETURNS payments.subscriptions
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	s payments.subscriptions := payments._find_subscription(pay_change_subscription.subscription_id, true);
	corr text := payments._correlation_id(pay_change_subscription.correlation_id);
	idem payments.idempotency_keys;
	now_ timestamptz := payments._billing_now(s.merchant_id);
	ch jsonb;
	l jsonb;
	result payments.subscriptions;
BEGIN
	idem := payments._idempotency_claim(s.merchant_id, pay_change_subscription.idempotency_key, 'change_subscription',
		md5(jsonb_build_array(s.subscription_id, pay_change_subscription.plan_id, pay_change_subscription.price::text,
			pay_change_subscription.quantity, pay_change_subscription.proration)::text),
		s.customer_id);
	IF idem.request_kind IS NOT NULL THEN
		RETURN s;				-- applied once already
	END IF;
	-- the period that contains now, whether or not the billing run has
	-- renewed the subscription yet
	s := payments._apply_due_renewals(s, now_);
	ch := payments._subscription_change(s, pay_change_subscription.plan_id, pay_change_subscription.price,
		pay_change_subscription.quantity, pay_change_subscription.proration, now_);
	UPDATE payments.subscriptions x SET plan_id = (ch -> 'new' ->> 'plan_id')::bigint,
		unit_amount = (ch -> 'new' ->> 'unit_amount')::payments.pay_amount,
		quantity = (ch -> 'new' ->> 'quantity')::integer,
		-- without proration the current period stays billed at what it was
		-- (in a trial nothing was billed yet)
		period_amount = CASE WHEN ch ->> 'proration' = 'none'
				AND NOT (s.status = 'trialing' AND s.current_period_index < 0)
			THEN (ch -> 'old' ->> 'amount')::payments.pay_amount END
	WHERE x.merchant_id = s.merchant_id AND x.subscription_id = s.subscription_id
	RETURNING * INTO result;
	IF jsonb_array_length(ch -> 'lines') > 0 THEN
		IF ch ->> 'proration' = 'next_invoice' THEN
			FOR l IN SELECT * FROM jsonb_array_elements(ch -> 'lines') LOOP
				INSERT INTO payments.invoice_items (merchant_id, subscription_id, kind, amount, description)
				VALUES (s.merchant_id, s.subscription_id, 'proration', (l ->> 'amount')::payments.pay_amount,
					l ->> 'description');
			END LOOP;
		ELSE
			PERFORM payments._issue_invoice(s.merchant_id, s.subscription_id, 'proration',
				s.current_period_index, now_, s.current_period_end, ch -> 'lines');
		END IF;
	END IF;
	INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
	VALUES (s.merchant_id, 'subscription.updated', jsonb_build_object('subscription_id', s.subscription_id,
		'customer_id', s.customer_id, 'status', s.status,
		'fields', jsonb_build_array('plan_id', 'unit_amount', 'quantity'), 'change', ch), corr);
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_change_subscription(bigint, bigint, payments.pay_amount, integer, text, text, text) IS
	'Changes the plan (same interval and currency), the explicit price or the quantity of an active, trialing or paused subscription. proration: none (the new amount from the next period), next_invoice (default: a credit for the unused part of the current period at the old amount and a charge for the part left at the new one, as pending invoice items of the next invoice), invoice_now (the same lines on a proration invoice charged at once; a net credit is carried to the next invoice). Nothing is prorated in a trial; a paused subscription takes a change of its amount only with proration none (22Y20 otherwise: its period was paid at the old amount, and a resume within it charges nothing more); once the trial has ended (its period 0 invoiced, the subscription trialing until that charge is answered) a change is prorated as for an active one. An interval change is refused (22023: cancel and create a new subscription); a currency change too (22Y03). Writes a subscription.updated event with the change. pay_preview_subscription_change shows the same without changing anything.';
