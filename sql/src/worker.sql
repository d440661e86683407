-- What the background worker calls: claim, record, recover, settlement.

-- How long the gateway recognises an identical resend as a duplicate: the
-- worker sets duplicateWindow to this on every request, and resends an
-- operation of unknown outcome only inside it.
CREATE FUNCTION payments._duplicate_window() RETURNS integer
	LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'pay_duplicate_window';
COMMENT ON FUNCTION payments._duplicate_window() IS
	'Seconds of Authorize.Net''s duplicate window the worker sets on every request (the maximum, 8 hours).';

-- Step 1 of an attempt: claim ready operations and commit them as "sending"
-- before any byte leaves.  Returns what the worker needs to build each
-- request.  action is 'send' (first send, or an identical resend inside the
-- duplicate window) or 'lookup' (outcome unknown and the window has passed:
-- find the invoice in the gateway's transaction lists instead).
-- Merchants take turns: the room (p_limit) is shared out exactly among
-- the merchants with operations due, each share taken by due time, and
-- the rows come in turns, every merchant's first before anyone's second.
-- With more merchants than room, those after p_after_merchant (the
-- merchant the previous claim ended on) go first, one operation each, so
-- that claims rotate.  more_ready says operations may be left due (a
-- merchant took its whole share, or had none): the worker claims again
-- at once.  Background operations get room only when no ordinary one may
-- be left.  By due time alone, one merchant's burst (thousands
-- queued at once) held up every other merchant's payments until it
-- drained.  The merchants with operations due are found by skipping
-- through the ready index, one (background, merchant) key at a time: a
-- claim costs an index probe per merchant with operations waiting, and
-- locks only what it may take (locking by a join on the rows picked
-- instead let a generic plan made on a young table look them up by
-- merchant alone: seconds per claim).
-- The planner's row estimates lag behind a fast-moving queue, and a plan
-- cached while the tables were small outlives their growth (it looked up
-- rows through an index on merchant_id alone, scanning the whole table for
-- each one); the ordered index scans with LIMIT and primary-key lookups are
-- always the right plan here, so they are forced.  The plan is generic,
-- made once and kept: planning this statement at every call cost the
-- worker more than running it (a sixth of its time at 1,000 purchases/s,
-- in rounds of a few operations).  It is planned again whenever the
-- statistics of a table it reads change (autovacuum's ANALYZE, or
-- _refresh_statistics' while a table is new) and at the worker's
-- housekeeping, once a minute.  Disabled plan types cost 1e10,
-- which crosses jit_above_cost in every statement planned under these
-- settings, the functions called per row (_gateway_customer_ref) and the
-- triggers included: JIT compiling each took tens of milliseconds per
-- claimed row, so JIT is off here (and in the two _record functions).
-- These plans never need it.
CREATE FUNCTION payments._claim_operations(p_limit integer, p_background_limit integer DEFAULT NULL,
	p_held_connections text[] DEFAULT '{}', p_only_connection text DEFAULT NULL,
	p_after_merchant bigint DEFAULT NULL)
	RETURNS TABLE (merchant_id bigint, operation_id bigint, payment_id bigint, kind text,
		action text, attempt integer, via_void boolean, amount_minor bigint, currency text,
		currency_exponent integer, txn_invoice text, description text, customer jsonb,
		ref_trans_id text, card_last4 text, payment_method text, customer_profile_id text,
		payment_profile_id text, sealed bytea, correlation_id text, created_at timestamptz,
		never_sent boolean,
		api_login_id text, transaction_key text, endpoint_url text, ca_file text, timeout_ms integer,
		payment_method_id bigint, customer_id bigint, method_source text, validation_mode text,
		method_default boolean, method_customer_profile_id text, method_payment_profile_id text,
		merchant_customer_id text, customer_email text, customer_name text, customer_billing jsonb,
		original_network_trans_id text, method_card_last4 text, method_taken_profiles text,
		last_attempt_at timestamptz, recurring boolean, first_recurring boolean, more_ready boolean)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET enable_bitmapscan = off
	SET enable_sort = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
BEGIN
	-- Ordinary operations first, then the background ones (a billing run's
	-- charges) in what room is left, at most p_background_limit (NULL: no
	-- other limit): a backlog of renewals never holds up a checkout's
	-- result.  Merchants without a gateway configuration are skipped (and
	-- parked by _park_unconfigured), and so are those whose gateway
	-- connection is in p_held_connections: the worker's circuit for it is
	-- open (one merchant's dead endpoint holds back no one else).
	-- p_only_connection: only those of that connection (the one probe of a
	-- half-open circuit).  The rows are returned in the order of turns.
	RETURN QUERY
	WITH RECURSIVE due_ops AS MATERIALIZED (
		-- the operations due, by due time, as many as 1,000 and one: when
		-- there are no more, their merchants are every merchant with one due,
		-- and merchants whose operations all wait for later (parked behind
		-- an open circuit, an unknown outcome's next look) cost nothing
		SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
		WHERE o.status IN ('queued', 'unknown') AND o.next_attempt_at <= now()
		ORDER BY o.next_attempt_at LIMIT 1001
	), backlog AS (
		-- more are due (a backlog): each (background, merchant) key and its
		-- earliest due time, one index probe per merchant with operations
		-- waiting
		(SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
		 WHERE o.status IN ('queued', 'unknown') AND (SELECT count(*) FROM due_ops) > 1000
		 ORDER BY o.background, o.merchant_id, o.next_attempt_at LIMIT 1)
		UNION ALL
		SELECT n.background, n.merchant_id, n.next_attempt_at FROM backlog w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.next_attempt_at FROM payments.operations o
			WHERE o.status IN ('queued', 'unknown')
				AND (o.background, o.merchant_id) > (w.background, w.merchant_id)
			ORDER BY o.background, o.merchant_id, o.next_attempt_at LIMIT 1) n
	), waiting AS (
		-- each (background, merchant) key with operations due or waiting,
		-- and its earliest due time
		SELECT d.background, d.merchant_id, min(d.next_attempt_at) AS next_attempt_at FROM due_ops d
		WHERE (SELECT count(*) FROM due_ops) <= 1000
		GROUP BY d.background, d.merchant_id
		UNION ALL
		SELECT b.background, b.merchant_id, b.next_attempt_at FROM backlog b
	), due AS (
		-- the merchants with an operation due (their earliest is), of
		-- a connection whose circuit is closed: how many, and each one's
		-- place in this claim's rotation (after p_after_merchant first)
		SELECT w.background, w.merchant_id, w.next_attempt_at,
			count(*) OVER (PARTITION BY w.background) AS merchants,
			row_number() OVER (PARTITION BY w.background
				ORDER BY p_after_merchant IS NOT NULL AND w.merchant_id <= p_after_merchant,
					w.merchant_id) AS nth
		FROM waiting w
		-- configured (its row by key: this runs every round, and configured
		-- merchants may be many); its connection worked out only when some
		-- connection is held or probed
		WHERE w.next_attempt_at <= now() AND EXISTS (SELECT 1 FROM payments.gateway_config g
			WHERE g.merchant_id = w.merchant_id
				AND (cardinality(p_held_connections) = 0 AND p_only_connection IS NULL
					OR payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms)
							<> ALL (p_held_connections)
						AND (p_only_connection IS NULL OR p_only_connection
							= payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms))))
	), ordinary AS (
		-- the room shared out exactly among the first p_limit merchants of
		-- the rotation (those after the remainder's one row less), each
		-- share by due time and locked as read (from its earliest on: past
		-- the index entries of operations claimed since the last vacuum,
		-- which the search for it went through); numbered, its turns
		SELECT x.*, w.share, row_number() OVER (PARTITION BY x.merchant_id ORDER BY x.next_attempt_at) AS turn
		FROM (SELECT d.*, p_limit / least(d.merchants, p_limit)
				+ CASE WHEN d.nth <= p_limit % least(d.merchants, p_limit) THEN 1 ELSE 0 END AS share
			FROM due d WHERE NOT d.background AND d.nth <= p_limit) w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.operation_id, o.next_attempt_at,
				o.status AS old_status, o.updated_at AS old_updated_at, o.kind, o.never_sent,
				o.gateway_account, o.payment_id AS subject_payment_id,
				o.payment_method_id AS subject_method_id, o.customer_id AS subject_customer_id
			FROM payments.operations o
			WHERE NOT o.background AND o.merchant_id = w.merchant_id
				AND o.status IN ('queued', 'unknown')
				AND o.next_attempt_at >= w.next_attempt_at AND o.next_attempt_at <= now()
			ORDER BY o.next_attempt_at
			LIMIT w.share
			FOR UPDATE OF o SKIP LOCKED) x
	), ordinary_more AS (
		-- ordinary operations may be left due: a merchant took its whole
		-- share, or had none (more merchants than room)
		SELECT EXISTS (SELECT 1 FROM due d WHERE NOT d.background AND d.nth > p_limit)
			OR EXISTS (SELECT 1 FROM ordinary o GROUP BY o.merchant_id HAVING count(*) >= max(o.share)) AS more
	), background_room AS (
		-- ordinary ones first: room for the background only when none is left
		SELECT CASE WHEN m.more THEN 0
			ELSE least(greatest(p_limit - (SELECT count(*) FROM ordinary), 0),
				coalesce(p_background_limit, p_limit)) END AS room
		FROM ordinary_more m
	), background AS (
		SELECT x.*, w.share, row_number() OVER (PARTITION BY x.merchant_id ORDER BY x.next_attempt_at) AS turn
		FROM (SELECT d.*, r.room / least(d.merchants, r.room)
				+ CASE WHEN d.nth <= r.room % least(d.merchants, r.room) THEN 1 ELSE 0 END AS share
			FROM due d, background_room r WHERE d.background AND d.nth <= r.room) w
		CROSS JOIN LATERAL (SELECT o.background, o.merchant_id, o.operation_id, o.next_attempt_at,
				o.status AS old_status, o.updated_at AS old_updated_at, o.kind, o.never_sent,
				o.gateway_account, o.payment_id AS subject_payment_id,
				o.payment_method_id AS subject_method_id, o.customer_id AS subject_customer_id
			FROM payments.operations o
			WHERE o.background AND o.merchant_id = w.merchant_id
				AND o.status IN ('queued', 'unknown')
				AND o.next_attempt_at >= w.next_attempt_at AND o.next_attempt_at <= now()
			ORDER BY o.next_attempt_at
			LIMIT w.share
			FOR UPDATE OF o SKIP LOCKED) x
	), locked AS (
		SELECT * FROM ordinary UNION ALL SELECT * FROM background
	), ready AS (
		-- in turns: every merchant's first before anyone's second
		SELECT l.*, row_number() OVER (PARTITION BY l.background
				ORDER BY l.turn, p_after_merchant IS NOT NULL AND l.merchant_id <= p_after_merchant,
					l.merchant_id) AS pos
		FROM locked l
	), more AS (
		-- more may be due: of the ordinary ones (above), or a background
		-- merchant took its whole share or had none
		SELECT (SELECT m.more FROM ordinary_more m)
			OR EXISTS (SELECT 1 FROM due d, background_room r WHERE d.background AND d.nth > r.room)
			OR EXISTS (SELECT 1 FROM background b GROUP BY b.merchant_id HAVING count(*) >= max(b.share))
			AS ready
	), claimed AS (
		-- the gateway account each is sent to is recorded (gateway_account):
		-- one that may have reached another account, acts on a payment
		-- made at another, or charges a stored method saved at another, is
		-- never sent here but held as a dead letter (its configuration,
		-- read here, changed while it was claimed, or before)
		UPDATE payments.operations o
		SET status = CASE WHEN a.moved THEN 'dead' ELSE 'sending' END,
			attempts = o.attempts + CASE WHEN a.moved THEN 0 ELSE 1 END,
			first_sent_at = CASE WHEN a.moved THEN o.first_sent_at ELSE coalesce(o.first_sent_at, now()) END,
			gateway_account = coalesce(a.bound_to, a.account),
			last_error = CASE WHEN a.moved THEN payments._account_moved_error(a.bound_to, a.account)
				ELSE o.last_error END
		FROM ready r
		JOIN payments.gateway_config g ON g.merchant_id = r.merchant_id
		CROSS JOIN LATERAL (SELECT k.account, k.bound_to, k.bound_to <> k.account AS moved
			FROM (SELECT payments._gateway_account(g.api_login_id) AS account,
				-- bound to its account: what may have reached one, and a
				-- capture, void or refund from its creation (its
				-- payment's); a charge of a stored method to the account
				-- the method was saved at (its profiles are there: at
				-- another, "not found" would fail the method as deleted), and
				-- so does a deletion of the method or of the customer's
				-- profile (there "not found" counts as deleted already)
				CASE WHEN NOT r.never_sent OR r.kind IN ('capture', 'void', 'refund') THEN r.gateway_account
					WHEN r.kind IN ('purchase', 'authorize') THEN (SELECT payments._method_account(p.merchant_id,
							p.payment_method_id)
						FROM payments.payments p
						WHERE p.merchant_id = r.merchant_id AND p.payment_id = r.subject_payment_id
							AND p.payment_method_id IS NOT NULL)
					WHEN r.kind = 'delete_method' THEN payments._method_account(r.merchant_id, r.subject_method_id)
					WHEN r.kind = 'delete_customer' THEN payments._customer_account(r.merchant_id, r.subject_customer_id)
					-- a save of a payment's card, to the account the payment
					-- was made at (only it knows the transaction)
					WHEN r.kind = 'save_method' AND r.subject_payment_id IS NOT NULL
						THEN payments._payment_account(r.merchant_id, r.subject_payment_id)
					END AS bound_to) k) a
		WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id
			AND r.pos <= CASE WHEN NOT r.background THEN p_limit ELSE (SELECT b.room FROM background_room b) END
		RETURNING o.*, r.old_status, r.old_updated_at, r.pos, g.api_login_id, g.transaction_key,
			g.endpoint_url, g.ca_file, g.timeout_ms
	)
	SELECT c.merchant_id, c.operation_id, c.payment_id, c.kind,
		-- queued again after an attempt that may have gone through (an
		-- unknown outcome, then a resend that provably failed) counts too
		-- (on the clock: the worker may have spent a while recording outcomes
		-- in this transaction before claiming)
		CASE WHEN NOT c.never_sent
				AND c.first_sent_at < clock_timestamp() - make_interval(secs => payments._duplicate_window() - 60)
			THEN 'lookup' ELSE 'send' END,
		c.attempts, c.via_void,
		pay_minor_units(coalesce(c.amount, p.amount)), pay_currency(p.amount),
		pay_currency_exponent(pay_currency(p.amount)),
		-- the invoice of the gateway transaction: each refund its own (equal
		-- partial refunds are not duplicates); a capture (priorAuthCapture
		-- keeps the authorization's transId) and a void act on the payment's
		CASE WHEN c.kind = 'refund' AND NOT c.via_void
			THEN 'R' || payments._invoice_tag() || c.operation_id ELSE p.invoice_number END,
		p.description, p.customer,
		p.gateway_trans_id, p.card_last4, p.payment_method, p.customer_profile_id,
		-- (created_at: where a lookup starts; a charge that may have been
		-- made before it was queued here, by the server before, since then)
		p.payment_profile_id, v.sealed, c.correlation_id,
		least(c.created_at, c.first_sent_at) AS created_at, c.never_sent,
		c.api_login_id, c.transaction_key, c.endpoint_url, c.ca_file, c.timeout_ms,
		-- stored payment methods and customers' profiles (payment_methods.sql):
		-- their own operations, and charges of a stored method
		pm.payment_method_id, cu.customer_id, pm.source, pm.validation_mode, pm.is_default,
		-- the customer's profile: a save at another account than the one it
		-- is at makes a new one there (sent with this one, "not found");
		-- a method's deletion, the profile the method was saved under
		CASE WHEN c.kind = 'delete_method' THEN coalesce(pm.customer_profile_id, cu.customer_profile_id)
			WHEN c.kind = 'save_method'
				AND payments._customer_account(cu.merchant_id, cu.customer_id) <> c.gateway_account THEN NULL
			ELSE cu.customer_profile_id END,
		pm.payment_profile_id,
		CASE WHEN cu.customer_id IS NOT NULL THEN payments._gateway_customer_ref(cu.customer_id, cu.gateway_tag) END,
		cu.email, cu.name, cu.billing,
		pm.network_trans_id, pm.card_last4,
		-- a save's: the payment profiles the customer's other live methods
		-- hold, which its lookup never takes and a duplicate answer naming
		-- one fails (gateway_cim.c); computed for saves alone
		CASE WHEN c.kind = 'save_method' THEN (SELECT string_agg(x.payment_profile_id, ',')
			FROM payments.payment_methods x
			WHERE x.merchant_id = pm.merchant_id AND x.customer_id = pm.customer_id
				AND x.payment_method_id <> pm.payment_method_id AND x.payment_profile_id IS NOT NULL
				AND x.status IN ('active', 'deleting')) END,
		-- when the operation last changed: the end of its previous attempt
		c.old_updated_at,
		-- a charge of a subscription's invoice is recurring (recurringBilling,
		-- card on file), the first one of its subscription while no earlier
		-- invoice of it was paid by a charge (the 'first' invoice, or the
		-- first renewal after a trial): isFirstRecurringPayment
		p.invoice_id IS NOT NULL,
		p.invoice_id IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM payments.invoices i
			JOIN payments.invoices earlier ON earlier.merchant_id = i.merchant_id
				AND earlier.subscription_id = i.subscription_id AND earlier.invoice_id <> i.invoice_id
			WHERE i.merchant_id = p.merchant_id AND i.invoice_id = p.invoice_id
				AND earlier.status = 'paid' AND pay_minor_units(earlier.amount) > 0),
		(SELECT m.ready FROM more m)
	FROM claimed c
	-- operations on a stored method or a customer's profile have no payment
	LEFT JOIN payments.payments p ON p.merchant_id = c.merchant_id AND p.payment_id = c.payment_id
	LEFT JOIN payments.card_vault v ON v.merchant_id = c.merchant_id AND v.operation_id = c.operation_id
	LEFT JOIN payments.payment_methods pm ON pm.merchant_id = c.merchant_id
		AND pm.payment_method_id = coalesce(c.payment_method_id, p.payment_method_id)
	LEFT JOIN payments.customers cu ON cu.merchant_id = c.merchant_id
		AND cu.customer_id = coalesce(c.customer_id, pm.customer_id)
	WHERE c.status = 'sending'
	ORDER BY c.background, c.pos;
END
$$;
COMMENT ON FUNCTION payments._claim_operations(integer, integer, text[], text, bigint) IS
	'Worker, step 1: claims up to p_limit ready operations (FOR UPDATE SKIP LOCKED), merchants taking turns (an equal share of the room each, every merchant''s first before anyone''s second; ties after p_after_merchant first; more_ready when a merchant took its whole share), ordinary ones first and at most p_background_limit of a billing run''s charges, and marks them sending before anything is sent; operations of merchants whose gateway connection (_gateway_connection) is in p_held_connections (its circuit is open in the worker) are left; with p_only_connection, only that connection''s are claimed. Records the gateway account each is sent to (operations.gateway_account); one bound to another account than the one configured now is not returned but held as a dead letter.';

-- A gateway account as operations record it (operations.gateway_account):
-- its api_login_id, digested (the login of an owner-only configuration is
-- not shown to API roles, who read their operations).  The endpoint is no
-- part of it: the same login at another URL is the same account.
CREATE FUNCTION payments._gateway_account(p_api_login_id text) RETURNS text
	-- inlined where it is called (the claim, once per operation; the
	-- settlement check, once per payment it looks at): no SET clause,
	-- every name qualified, and STABLE like convert_to (PostgreSQL inlines
	-- no function declared IMMUTABLE over a STABLE body: it ran as a
	-- statement of its own, five times per purchase)
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	AS $$ SELECT pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p_api_login_id, 'UTF8')), 'hex'), 16) $$;
COMMENT ON FUNCTION payments._gateway_account(text) IS
	'Internal: the gateway account of an api_login_id as operations.gateway_account records it (the first 16 hex digits of its SHA-256; the endpoint URL is no part of it).';

-- Why the claim held an operation bound to another gateway account than
-- the one configured now (_claim_operations), as its last_error.
CREATE FUNCTION payments._account_moved_error(p_sent_to text, p_configured text) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT pg_catalog.format('held: the gateway account changed after this operation was sent (or its payment was made, or the stored payment method or customer profile it uses was saved) at account %s; the one configured now is %s (accounts as payments._gateway_account(api_login_id) names them). Sent or looked up there it could be charged twice, or never found: configure account %1$s again (pay_configure_gateway) and pay_retry_dead_letter it, or settle it at that account by hand and record what happened with pay_resolve_dead_letter (or pay_discard_dead_letter it).',
		p_sent_to, p_configured) $$;
COMMENT ON FUNCTION payments._account_moved_error(text, text) IS
	'Internal: the last_error of an operation the worker held as a dead letter because the merchant''s gateway account changed after it was sent (or its payment was made, or the stored method or customer profile it uses was saved) at another.';

-- What is bound to a gateway account besides an operation sent there
-- (operations.gateway_account): a payment, to the account its purchase or
-- authorization was sent to (its capture, void and refunds go there,
-- _new_operation; its review and settlement are asked of it,
-- _review_candidates, _settlement_candidates); a stored payment method,
-- to the account its save was sent to (its customer and payment profiles
-- live there: a charge of it goes there, _claim_operations).  NULL: not
-- sent (or sent before the column existed).  Used in the claim: no SET
-- clause, every name qualified.
CREATE FUNCTION payments._payment_account(p_merchant_id bigint, p_payment_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.payment_id = p_payment_id
			AND x.kind IN ('purchase', 'authorize')
		ORDER BY x.operation_id LIMIT 1 $$;
COMMENT ON FUNCTION payments._payment_account(bigint, bigint) IS
	'Internal: the gateway account a payment was made at (operations.gateway_account of its purchase or authorization), or NULL.';

CREATE FUNCTION payments._method_account(p_merchant_id bigint, p_payment_method_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.payment_method_id = p_payment_method_id
			AND x.kind = 'save_method' AND x.status = 'succeeded'
		ORDER BY x.operation_id DESC LIMIT 1 $$;
COMMENT ON FUNCTION payments._method_account(bigint, bigint) IS
	'Internal: the gateway account a stored payment method was saved at (operations.gateway_account of its save), where its profiles are, or NULL.';

-- A customer's profile (customers.customer_profile_id) is at the account
-- of its latest save: a save at another account makes the customer a
-- profile there (_claim_operations, _record_method_result).
CREATE FUNCTION payments._customer_account(p_merchant_id bigint, p_customer_id bigint) RETURNS text
	LANGUAGE sql STABLE
	AS $$ SELECT x.gateway_account FROM payments.operations x
		WHERE x.merchant_id = p_merchant_id AND x.customer_id = p_customer_id
			AND x.kind = 'save_method' AND x.status = 'succeeded'
		ORDER BY x.operation_id DESC LIMIT 1 $$;
COMMENT ON FUNCTION payments._customer_account(bigint, bigint) IS
	'Internal: the gateway account a customer''s profile (customers.customer_profile_id) is at: that of its latest save (operations.gateway_account), or NULL.';

-- A call that would send something bound to gateway account p_account
-- (a payment's capture, void or refund; a charge of a stored method) while
-- the merchant's configuration names another account: refused at the
-- call (22Y20), nothing recorded.  The old account's credentials are no
-- longer configured, so nothing can reach it from here, and the account
-- configured now does not know the payment or the profile: sent there it
-- would never be found (a profile "not found" would even fail the method
-- as if deleted).  The worker holds as a dead letter what was queued
-- before the change (_claim_operations).  p_what: "payment 7 was made",
-- "payment method 3 was saved"; p_hint: what to do instead.
CREATE FUNCTION payments._refuse_other_account(p_merchant_id bigint, p_account text, p_what text,
	p_hint text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	configured text;
BEGIN
	SELECT payments._gateway_account(g.api_login_id) INTO configured
	FROM payments.gateway_config g WHERE g.merchant_id = p_merchant_id;
	IF p_account IS NULL OR configured IS NULL OR p_account = configured THEN
		RETURN;
	END IF;
	RAISE EXCEPTION '% at another gateway account than the one configured now', p_what
		USING ERRCODE = '22Y20',
			DETAIL = format('It is at gateway account %s; the merchant''s gateway account was changed since (pay_configure_gateway) to %s, which does not know it (accounts as payments._gateway_account(api_login_id) names them). The credentials of account %s are no longer configured, so nothing can be sent there.',
				p_account, configured, p_account),
			HINT = p_hint;
END
$$;
COMMENT ON FUNCTION payments._refuse_other_account(bigint, text, text, text) IS
	'Internal: raises 22Y20 when p_account (a payment''s or a stored method''s gateway account) is not the merchant''s configured one: sent there, it would never be found.';

-- A merchant's gateway connection, as the worker's circuit breakers tell
-- them apart: the endpoint, the CA file and the timeout (one merchant's own
-- CA file or timeout must not trip the breaker of everyone on the URL).
CREATE FUNCTION payments._gateway_connection(p_endpoint_url text, p_ca_file text, p_timeout_ms integer)
	RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$ SELECT p_endpoint_url || E'\n' || coalesce(p_ca_file, '') || E'\n' || p_timeout_ms $$;
COMMENT ON FUNCTION payments._gateway_connection(text, text, integer) IS
	'Internal: the key of a gateway connection (endpoint URL, CA file, timeout) for the worker''s circuit breakers.';

-- The due operations of the merchants on a gateway connection whose
-- circuit just opened in the worker wait until it may be probed (p_until):
-- claims leave them out meanwhile (left due, each claim would find each
-- of those merchants due and check it against the held connections; when
-- claims read the ready operations by due time alone, a dead endpoint's
-- backlog slowed everyone's).  Rows a caller holds are skipped.
CREATE FUNCTION payments._park_connection(p_connection text, p_until timestamptz) RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.operations o SET next_attempt_at = p_until
	FROM (SELECT x.merchant_id, x.operation_id FROM payments.operations x
		WHERE x.status IN ('queued', 'unknown') AND x.next_attempt_at < p_until
			AND x.merchant_id = ANY (ARRAY(SELECT g.merchant_id FROM payments.gateway_config g
				WHERE payments._gateway_connection(g.endpoint_url, g.ca_file, g.timeout_ms) = p_connection))
		FOR UPDATE SKIP LOCKED) r
	WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._park_connection(text, timestamptz) IS
	'Worker: the due operations of the merchants on this gateway connection (_gateway_connection) wait until p_until (its circuit opened). Returns how many.';

-- Operations of merchants without a gateway configuration wait a minute
-- at a time, with a note a DBA can see (run by the worker's housekeeping).
-- A row someone holds locked is skipped until the next minute: a caller's
-- open transaction must not stop the housekeeping of every merchant.
CREATE FUNCTION payments._park_unconfigured() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	-- each operation found by its key, never a scan of the table
	SET enable_seqscan = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	AS $$
DECLARE
	n integer;
BEGIN
	-- Every merchant configured (the rule): no operation is read.  (A
	-- search of every due operation went through the ready index's entries
	-- of all operations done since its last vacuum: a second of the
	-- worker's loop once a minute at a thousand payments a second, every
	-- payment waiting.)
	IF NOT EXISTS (SELECT 1 FROM payments.merchants m
		WHERE NOT EXISTS (SELECT 1 FROM payments.gateway_config g WHERE g.merchant_id = m.merchant_id)) THEN
		RETURN 0;
	END IF;
	-- else from those merchants, each one's due operations (locked and
	-- checked as read), then each by its key
	WITH r AS MATERIALIZED (
		SELECT r.merchant_id, r.operation_id FROM payments.merchants m
		CROSS JOIN LATERAL (SELECT x.merchant_id, x.operation_id FROM payments.operations x
			WHERE x.background IN (false, true) AND x.merchant_id = m.merchant_id
				AND x.status IN ('queued', 'unknown') AND x.next_attempt_at <= now()
			FOR UPDATE SKIP LOCKED) r
		WHERE NOT EXISTS (SELECT 1 FROM payments.gateway_config g WHERE g.merchant_id = m.merchant_id))
	UPDATE payments.operations o SET next_attempt_at = now() + interval '1 minute',
		last_error = 'no gateway is configured for this merchant (pay_configure_gateway)'
	FROM r
	WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._park_unconfigured() IS
	'Worker housekeeping: operations of merchants without a gateway configuration wait a minute at a time, with a note.';

-- Statistics for young tables.  A plan cached while a table held a few
-- rows (a foreign-key check's, a PL/pgSQL statement's) sees every index
-- led by merchant_id as equally good, may pick one that filters the rest
-- of the key, and keeps it until the table is next analyzed: until then
-- each insert scans all of a merchant's rows.  Autovacuum's first ANALYZE
-- comes only after its naptime (a minute), or never when it is off.  So
-- the worker analyzes each of the extension's tables that holds 500 rows
-- or more while its statistics say fewer (never analyzed, or analyzed
-- nearly empty): once in its life, as a rule.  The invalidation replans
-- every cached plan on it, and from then on the statistics (a handful of
-- merchants among many rows) keep the planner on the primary key.  A table
-- that stays small however busy (card_vault) is never touched.
-- As many tables per call as 50 ms allow (one more once started), with
-- 3,000-row samples, a lock it does not wait for and its errors caught,
-- so the worker's loop only pauses for tens of milliseconds (a freshly
-- restored database has every table to do).  One table per call (every
-- 2 s) was too slow for a new installation under load, whose tables all
-- pass 500 rows in the same second: the sixth waited ten seconds, and a
-- foreign-key check of each purchase scanned thousands of operations
-- meanwhile (more than half of a client backend's time).
CREATE FUNCTION payments._refresh_statistics() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET default_statistics_target = 10
	SET lock_timeout = '20ms'
	AS $$
DECLARE
	t record;
	started timestamptz := clock_timestamp();
	analyzed integer := 0;
BEGIN
	FOR t IN
		SELECT n.nspname, c.relname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
			AND d.refclassid = 'pg_extension'::regclass
		JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'payments'
		WHERE c.relkind = 'r' AND c.reltuples < 500 AND pg_stat_get_live_tuples(c.oid) >= 500
		ORDER BY pg_stat_get_live_tuples(c.oid)
	LOOP
		EXIT WHEN clock_timestamp() - started > interval '50 ms';
		BEGIN
			EXECUTE format('ANALYZE %I.%I', t.nspname, t.relname);
			analyzed := analyzed + 1;
		EXCEPTION
			WHEN lock_not_available OR undefined_table THEN
				NULL;			-- busy or just dropped: next round
		END;
	END LOOP;
	RETURN analyzed;
END
$$;
COMMENT ON FUNCTION payments._refresh_statistics() IS
	'Worker: analyzes the extension''s tables that hold 500 rows or more while their statistics say they are nearly empty (as many as 50 ms allow), so that no plan cached on a near-empty table keeps scanning a whole merchant for one row. Returns how many it analyzed.';

-- Step 3 for the bulk of the traffic, set-based: the final answers
-- (approved, held, declined, error, rejected) to purchases and
-- authorizations, one array element per operation, in three statements
-- for the whole batch.  A payment has exactly one operation of those
-- kinds, so no payment appears twice.  Operations no longer "sending" are
-- left alone (a DBA discarded them).  The planner settings keep every
-- lookup on a primary key however stale the statistics of a fast-growing
-- table are (see _claim_operations).  A card payment learns its card's
-- fingerprint here, from the worker that sent the card, and only with an
-- answer the gateway gave about that card: a fingerprint known when the
-- caller passes a card would answer, for free, whether any number tried is
-- the one behind a stored fingerprint.  p_from_status is the status the
-- operations are in: sending for the worker, dead for an outcome the owner
-- verified at the gateway (pay_resolve_dead_letter).  Returns how many
-- operations were recorded.
CREATE FUNCTION payments._record_final_results(
	p_merchant_id bigint[], p_operation_id bigint[], p_outcome text[],
	p_response_code integer[], p_reason_code integer[], p_reason_text text[],
	p_trans_id text[], p_auth_code text[], p_avs text[], p_cvv text[],
	p_error text[], p_account_number text[], p_card_fingerprint text[],
	p_from_status text DEFAULT 'sending')
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET enable_hashjoin = off
	SET enable_mergejoin = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
DECLARE
	n integer;
BEGIN
	WITH r AS (
		SELECT * FROM unnest(p_merchant_id, p_operation_id, p_outcome, p_response_code,
			p_reason_code, p_reason_text, p_trans_id, p_auth_code, p_avs, p_cvv, p_error,
			p_account_number, p_card_fingerprint) AS r(merchant_id, operation_id, outcome,
			response_code, reason_code, reason_text, trans_id, auth_code, avs, cvv, error,
			account_number, card_fingerprint)
	), ops AS (
		-- the new statuses come from operation_outcomes; the amounts follow
		-- them: authorized when the operation succeeded, captured when the
		-- payment did, a decline when the operation failed
		UPDATE payments.operations o SET
			status = t.operation_status,
			gateway_trans_id = nullif(nullif(r.trans_id, ''), '0'),
			response_code = r.response_code, reason_code = r.reason_code,
			reason_text = r.reason_text, last_error = r.error, completed_at = clock_timestamp()
		FROM r, payments.operation_outcomes t
		WHERE o.merchant_id = r.merchant_id AND o.operation_id = r.operation_id
			AND o.status = p_from_status AND o.kind IN ('purchase', 'authorize')
			AND t.operation_kind = o.kind AND t.outcome = r.outcome
			AND t.operation_status IN ('succeeded', 'failed')
		RETURNING o.merchant_id, o.operation_id, o.payment_id, t.operation_status,
			t.payment_status, r.reason_code, r.reason_text, r.trans_id, r.auth_code, r.avs, r.cvv,
			r.error, r.account_number, r.card_fingerprint
	), erased AS (
		DELETE FROM payments.card_vault v USING ops
		WHERE v.merchant_id = ops.merchant_id AND v.operation_id = ops.operation_id
	)
	UPDATE payments.payments p SET
		status = ops.payment_status,
		amount_authorized = CASE WHEN ops.operation_status = 'succeeded' THEN p.amount END,
		amount_captured = CASE WHEN ops.payment_status = 'succeeded' THEN p.amount END,
		gateway_trans_id = nullif(nullif(ops.trans_id, ''), '0'),
		auth_code = nullif(ops.auth_code, ''), avs_result = nullif(ops.avs, ''),
		cvv_result = nullif(ops.cvv, ''),
		-- opaque data (Accept.js) payments learn their last four digits here
		card_last4 = coalesce(p.card_last4, substring(ops.account_number FROM '([0-9]{4})$')),
		card_fingerprint = coalesce(p.card_fingerprint, ops.card_fingerprint),
		decline_code = CASE WHEN ops.operation_status = 'failed'
			THEN coalesce(ops.reason_code::text, ops.error) END,
		decline_reason = CASE WHEN ops.operation_status = 'failed'
			THEN coalesce(ops.reason_text, ops.error) END
	FROM ops
	WHERE p.merchant_id = ops.merchant_id AND p.payment_id = ops.payment_id;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._record_final_results(bigint[], bigint[], text[], integer[], integer[], text[], text[], text[], text[], text[], text[], text[], text[], text) IS
	'Worker, step 3, set-based: records the gateway''s final answers to purchases and authorizations (arrays, one element per operation) and moves their payments on; a card payment learns its fingerprint here. p_from_status: the operations'' status (sending; dead for pay_resolve_dead_letter).';

-- A refund the gateway approved counts: its amount is added to the
-- payment's amount_refunded, and the payment is p_status (refunded, from
-- operation_outcomes), partially_refunded while part of the capture is
-- left.  The one place a refund's amount is counted: when its answer
-- comes (_record_result) and when a refund held for review is approved
-- later (_resolve_refund_review).  The caller holds the payment's lock.
CREATE FUNCTION payments._count_refund(p payments.payments, p_amount payments.pay_amount,
	p_status text)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.payments x SET amount_refunded = p.amount_refunded + p_amount,
		status = CASE WHEN p_status = 'refunded' AND p.amount_refunded + p_amount <> p.amount_captured
			THEN 'partially_refunded' ELSE p_status END
	WHERE x.merchant_id = p.merchant_id AND x.payment_id = p.payment_id
	$$;
COMMENT ON FUNCTION payments._count_refund(payments.payments, payments.pay_amount, text) IS
	'Worker: counts an approved refund in its payment (amount_refunded; refunded, or partially_refunded while part of the capture is left).';

-- Step 3 of an attempt: record the exchange and the outcome, move the
-- operation and its payment to their new status, erase the vault entry
-- once the gateway has answered for good.
--
-- outcome: approved | held | declined | error | rejected (a final answer;
--          expired: a capture whose authorization expired at the gateway)
--          retry    (provably not processed: send again at p_retry_at)
--          unknown  (may have been processed: resolve from p_retry_at on)
--
-- p_from_status: the status the operation is in, sending for the worker;
-- dead for a final outcome the owner verified at the gateway
-- (pay_resolve_dead_letter), recorded as the gateway's answer would be.
CREATE FUNCTION payments._record_result(
	p_merchant_id bigint, p_operation_id bigint, p_outcome text,
	p_response_code integer, p_reason_code integer, p_reason_text text,
	p_trans_id text, p_auth_code text, p_avs text, p_cvv text,
	p_retry_at timestamptz, p_error text, p_account_number text,
	p_card_fingerprint text DEFAULT NULL, p_from_status text DEFAULT 'sending')
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	SET enable_seqscan = off
	SET plan_cache_mode = force_generic_plan
	SET jit = off
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	t payments.operation_outcomes;
BEGIN
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> p_from_status THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT * INTO t FROM payments.operation_outcomes x
	WHERE x.operation_kind = o.kind AND x.outcome = p_outcome;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'invalid outcome % for operation %', p_outcome, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = o.merchant_id AND payment_id = o.payment_id FOR UPDATE;

	IF t.operation_status NOT IN ('succeeded', 'failed', 'in_review') THEN
		-- to be tried again at p_retry_at, unless out of attempts
		UPDATE payments.operations SET
			status = CASE WHEN o.attempts >= payments._max_attempts() THEN 'dead' ELSE t.operation_status END,
			next_attempt_at = p_retry_at, last_error = p_error,
			-- retry: provably never sent this time, so the duplicate window
			-- starts with the first real send; unknown: it may have been
			never_sent = o.never_sent AND p_outcome = 'retry',
			first_sent_at = CASE WHEN o.never_sent AND p_outcome = 'retry' THEN NULL ELSE o.first_sent_at END
		WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
		IF t.payment_status IS NOT NULL AND p.status = t.payment_status_from THEN
			UPDATE payments.payments SET status = t.payment_status
			WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
		END IF;
		RETURN;
	END IF;

	-- a final answer from the gateway
	IF o.kind IN ('purchase', 'authorize') THEN
		PERFORM payments._record_final_results(ARRAY[p_merchant_id], ARRAY[p_operation_id],
			ARRAY[p_outcome], ARRAY[p_response_code], ARRAY[p_reason_code], ARRAY[p_reason_text],
			ARRAY[p_trans_id], ARRAY[p_auth_code], ARRAY[p_avs], ARRAY[p_cvv], ARRAY[p_error],
			ARRAY[p_account_number], ARRAY[p_card_fingerprint], p_from_status);
		RETURN;
	END IF;
	-- a refund held for review (in_review) is not complete: the review
	-- check completes it (_resolve_refund_review)
	UPDATE payments.operations SET
		status = t.operation_status,
		gateway_trans_id = nullif(nullif(p_trans_id, ''), '0'),
		response_code = p_response_code, reason_code = p_reason_code, reason_text = p_reason_text,
		last_error = p_error,
		completed_at = CASE WHEN t.operation_status <> 'in_review' THEN clock_timestamp() END
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	DELETE FROM payments.card_vault WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;

	IF t.payment_status IS NULL OR p.status IS DISTINCT FROM coalesce(t.payment_status_from, p.status) THEN
		RETURN;
	END IF;
	IF o.kind = 'capture' THEN
		-- captured only when it succeeded (an expired authorization cancels
		-- the payment with nothing captured)
		UPDATE payments.payments SET status = t.payment_status,
			amount_captured = CASE WHEN t.operation_status = 'succeeded' THEN o.amount
				ELSE p.amount_captured END
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSIF o.kind = 'refund' THEN
		PERFORM payments._count_refund(p, o.amount, t.payment_status);
	ELSIF o.kind = 'void' THEN
		-- a void undoes the capture too (a purchase voided before settlement):
		-- nothing stays captured
		UPDATE payments.payments SET status = t.payment_status, amount_captured = p.amount_captured * 0
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	ELSE
		UPDATE payments.payments SET status = t.payment_status
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	END IF;
END
$$;
COMMENT ON FUNCTION payments._record_result(bigint, bigint, text, integer, integer, text, text, text, text, text, timestamptz, text, text, text, text) IS
	'Worker, step 3: records the gateway''s answer (or the transport failure) and moves the operation and its payment on; p_card_fingerprint as for _record_final_results; p_from_status: the operation''s status (sending; dead for pay_resolve_dead_letter).';

-- An attempt of which nothing reached the gateway (no connection: DNS,
-- connect or TLS failed; or no answer to the question asked before the
-- operation) is given back, in step 3's transaction before _record_result:
-- DESIGN §2 retries what provably never left freely, and the worker's
-- circuit breaker paces those retries.  Counted, a gateway outage of a
-- quarter of an hour turned refunds and purchases that never left into
-- dead letters.
CREATE FUNCTION payments._attempt_unreached(p_merchant_id bigint, p_operation_id bigint)
	RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	UPDATE payments.operations o SET attempts = o.attempts - 1
	WHERE o.merchant_id = p_merchant_id AND o.operation_id = p_operation_id
		AND o.status = 'sending' AND o.attempts > 0
	$$;
COMMENT ON FUNCTION payments._attempt_unreached(bigint, bigint) IS
	'Worker, step 3: gives back the attempt of an operation of which nothing reached the gateway, so that it does not count toward payments.max_attempts.';

-- The setting is always defined (the library is preloaded) and holds its
-- default there: no second default here.
CREATE FUNCTION payments._max_attempts() RETURNS integer
	LANGUAGE sql STABLE AS $$ SELECT current_setting('payments.max_attempts')::integer $$;
COMMENT ON FUNCTION payments._max_attempts() IS
	'Attempts after which an operation goes to the dead-letter state (payments.max_attempts).';

-- Log the HTTP exchanges of a batch (card data already masked by the
-- worker), one array element per exchange.  PL/pgSQL keeps the plan (a SQL
-- function was planned again at every round of the worker).
CREATE FUNCTION payments._record_exchanges(
	p_merchant_id bigint[], p_operation_id bigint[], p_attempt integer[], p_request_type text[],
	p_started_at timestamptz[], p_finished_at timestamptz[], p_http_status integer[],
	p_transport_error text[], p_outcome text[], p_request_masked text[], p_response_masked text[],
	p_correlation_id text[])
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	INSERT INTO payments.gateway_exchanges (merchant_id, operation_id, attempt, request_type,
		started_at, finished_at, duration_ms, http_status, transport_error, outcome,
		request_masked, response_masked, correlation_id)
	SELECT x.merchant_id, x.operation_id, x.attempt, x.request_type, x.started_at, x.finished_at,
		extract(epoch FROM x.finished_at - x.started_at) * 1000, nullif(x.http_status, 0),
		x.transport_error, x.outcome, x.request_masked, x.response_masked, x.correlation_id
	FROM unnest(p_merchant_id, p_operation_id, p_attempt, p_request_type, p_started_at,
		p_finished_at, p_http_status, p_transport_error, p_outcome, p_request_masked,
		p_response_masked, p_correlation_id) AS x(merchant_id, operation_id, attempt, request_type,
		started_at, finished_at, http_status, transport_error, outcome, request_masked,
		response_masked, correlation_id);
END
$$;
COMMENT ON FUNCTION payments._record_exchanges(bigint[], bigint[], integer[], text[], timestamptz[], timestamptz[], integer[], text[], text[], text[], text[], text[]) IS
	'Worker: logs a batch of HTTP exchanges with the gateway (masked requests and replies, timings), one array element per exchange.';

-- At worker start: whatever was "sending" when the previous worker stopped
-- has an unknown outcome; resolve it, never resend it blindly.
CREATE FUNCTION payments._recover_in_flight() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.payments p SET status = t.payment_status
	FROM payments.operations o, payments.operation_outcomes t
	WHERE o.status = 'sending' AND t.operation_kind = o.kind AND t.outcome = 'unknown'
		AND p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
		AND p.status = t.payment_status_from;
	UPDATE payments.operations o SET status = t.operation_status, next_attempt_at = now(), never_sent = false,
		last_error = 'the worker stopped while the request was in flight'
	FROM payments.operation_outcomes t
	WHERE o.status = 'sending' AND t.operation_kind = o.kind AND t.outcome = 'unknown';
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._recover_in_flight() IS
	'Worker start: marks operations left in "sending" as unknown, to be resolved from the gateway.';

-- The server the worker last started on.  A standby promoted after its
-- primary died may lack the primary's last commits (asynchronous
-- replication), and so may a server restored from a backup by archive
-- recovery: among them the claims that marked operations "sending" before
-- their requests left.  Such an operation looks never sent here while the
-- gateway may have charged it; a card whose vault went with the old server
-- would then fail it, and a resend past the duplicate window would charge
-- again.  A new timeline, system identifier or database says the history
-- may be short; so does a new base backup label (backup_label.old): a
-- backup started as it is, without archive recovery, keeps the system
-- identifier and timeline of the server it was taken from.
CREATE TABLE payments.worker_server (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	system_identifier text NOT NULL,
	timeline_id integer NOT NULL,
	database_oid oid NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	changed_at timestamptz,
	base_backup text,
	server_tag text CHECK (server_tag ~ '^[0-9A-F]{6}$')
);
REVOKE ALL ON payments.worker_server FROM PUBLIC;
COMMENT ON TABLE payments.worker_server IS
	'The server the payments worker last started on (its system identifier, WAL timeline, database and the base backup its data directory was started from). A different one at start (a promoted standby, a backup restored, by archive recovery or started as it is, a dump restored into another database) means the database may lack its last commits: operations it has as never sent are then treated as possibly sent (_recover_lost_sends). Owner only.';
COMMENT ON COLUMN payments.worker_server.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN payments.worker_server.system_identifier IS 'pg_control_system().system_identifier of the server.';
COMMENT ON COLUMN payments.worker_server.timeline_id IS 'The WAL timeline the server wrote on (a promotion or an archive recovery starts a new one).';
COMMENT ON COLUMN payments.worker_server.database_oid IS 'The OID of the database the worker served (a dump restored into another database has another).';
COMMENT ON COLUMN payments.worker_server.recorded_at IS 'When the worker started on it.';
COMMENT ON COLUMN payments.worker_server.base_backup IS 'The start location and time of the base backup the data directory was started from (its backup_label.old), NULL if none: a backup started as it is keeps the system identifier and timeline of the server it was taken from.';
COMMENT ON COLUMN payments.worker_server.changed_at IS 'When the database was last found on another server than before (the worker''s start on a promoted standby, a restored backup, another database; a dump restored): the server before may have charged until then what is charged here from then on (a subscription''s charge that came due before it is looked up first, _queue_invoice_charge). NULL: never.';
COMMENT ON COLUMN payments.worker_server.server_tag IS 'The tag of invoice numbers of this server life (six random hexadecimal digits, made anew at every change of server, changed_at): a payment made since carries P, this tag and its id, so that an id the server before handed out too (its sequences went on past the copy this database was made from) never gives two payments one invoice number at the gateway. NULL: never changed server (the installation''s tag, _invoice_tag).';
SELECT pg_catalog.pg_extension_config_dump('payments.worker_server', '');

-- The tag of this server life (C, src/invoice_tag.c: kept in memory until
-- worker_server changes, as _invoice_tag is).
CREATE FUNCTION payments._server_tag() RETURNS text
	LANGUAGE c STABLE
	AS 'MODULE_PATHNAME', 'pay_server_tag';
REVOKE ALL ON FUNCTION payments._server_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._server_tag() IS
	'Internal: worker_server.server_tag, the tag of invoice numbers of this server life, NULL while the database never changed server; kept in backend memory until worker_server changes.';

-- A new server life's tag: random, never the installation's nor the
-- life's before (an id reused by this life then never meets the number
-- another life gave it).
CREATE FUNCTION payments._new_server_tag() RETURNS text
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	t text;
BEGIN
	LOOP
		t := upper(encode(payments._random_bytes(3), 'hex'));
		EXIT WHEN t IS DISTINCT FROM payments._invoice_tag()
			AND NOT EXISTS (SELECT 1 FROM payments.worker_server w WHERE w.server_tag = t);
	END LOOP;
	RETURN t;
END
$$;
REVOKE ALL ON FUNCTION payments._new_server_tag() FROM PUBLIC;
COMMENT ON FUNCTION payments._new_server_tag() IS
	'Internal: a new server life''s tag of invoice numbers (worker_server.server_tag): six random hexadecimal digits, neither the installation''s tag nor the current life''s.';

-- At worker start, after _recover_in_flight: on a server other than the
-- last one (promoted, restored), every queued or dead operation that the
-- database has as never sent may have been sent by the server before
-- (whatever its retry time here: a change lost with that server may have
-- made it due there).  It is treated as sent at its last change known
-- here, the earliest the lost send can have been: resent identically
-- inside the duplicate window (the gateway answers a repeat with the
-- original; a card gone with the old server is looked up instead), looked
-- up past it; never failed or resent blindly.  Returns how many.
CREATE FUNCTION payments._recover_lost_sends(p_system_identifier text, p_timeline_id integer,
	p_base_backup text DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	last payments.worker_server;
	db oid := (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database());
	n integer := 0;
	changed timestamptz;
	tag text;
BEGIN
	SELECT * INTO last FROM payments.worker_server FOR UPDATE;
	IF FOUND AND (last.system_identifier, last.timeline_id, last.database_oid, last.base_backup)
			IS DISTINCT FROM (p_system_identifier, p_timeline_id, db, p_base_backup) THEN
		changed := now();
		tag := payments._new_server_tag();
		UPDATE payments.operations o SET never_sent = false,
			first_sent_at = coalesce(o.first_sent_at, greatest(o.created_at, o.updated_at)),
			last_error = format('the server changed (timeline %s of system %s%s, was timeline %s of system %s%s): the previous one may have sent it',
				p_timeline_id, p_system_identifier, ', base backup ' || p_base_backup,
				last.timeline_id, last.system_identifier, ', base backup ' || last.base_backup)
		WHERE o.status IN ('queued', 'dead') AND o.never_sent;
		GET DIAGNOSTICS n = ROW_COUNT;
	END IF;
	INSERT INTO payments.worker_server (system_identifier, timeline_id, database_oid, base_backup, changed_at,
		server_tag)
	VALUES (p_system_identifier, p_timeline_id, db, p_base_backup, changed, tag)
	ON CONFLICT (only_row) DO UPDATE SET system_identifier = EXCLUDED.system_identifier,
		timeline_id = EXCLUDED.timeline_id, database_oid = EXCLUDED.database_oid,
		base_backup = EXCLUDED.base_backup,
		recorded_at = EXCLUDED.recorded_at,
		changed_at = coalesce(EXCLUDED.changed_at, worker_server.changed_at),
		server_tag = coalesce(EXCLUDED.server_tag, worker_server.server_tag);
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._recover_lost_sends(text, integer, text) IS
	'Worker start: on a server other than the one the worker last started on (payments.worker_server: system identifier, timeline, database, base backup started from), marks the queued and dead operations the database has as never sent as sent at their last change known here, so that they are resent identically inside the duplicate window or looked up past it, rather than failed or sent again. Returns how many.';

-- The gate of the two triggers below (C, src/restore_gate.c): it runs the
-- trigger function it names only while check_function_bodies is off, as a
-- restore sets it.  A WHEN clause saying that is read back from its text
-- and planned for every statement that fires it (1.5% of a pay_purchase).
CREATE FUNCTION payments._restore_gate() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_restore_gate';
COMMENT ON FUNCTION payments._restore_gate() IS
	'Trigger: runs the trigger function its argument names (regprocedure) only while check_function_bodies is off, as pg_dump scripts and pg_restore set it; otherwise keeps the row as it is.';

-- A dump restored (pg_restore, or a pg_dump script, run by a superuser:
-- check_function_bodies is off, as for the status triggers) is the history
-- of the server it was dumped from, perhaps short: that server may have
-- sent what was queued when the dump was taken, and what was "sending"
-- had its reply on the way.  The worker of the database restored into
-- may have made its start-of-service checks (_recover_in_flight,
-- _recover_lost_sends) on the empty extension, before the rows came (a
-- server preloaded and serving the database while pg_restore creates the
-- extension and then loads the tables): each operation is therefore made
-- safe as it is loaded.  One the dump has as queued, sending or dead and
-- never sent is treated as possibly sent, as _recover_lost_sends does (sent
-- at its last change known here: resent identically inside the duplicate
-- window, looked up past it, never failed for a card that stayed with the
-- old server); one "sending" is queued again at once, possibly sent
-- (nobody here has it in flight: left "sending", it stayed there).
CREATE FUNCTION payments._restored_operation() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	-- a superuser's session (session_user): inside the API's SECURITY
	-- DEFINER functions current_user is their owner, and any caller may
	-- turn check_function_bodies off (before: its pay_purchase made an
	-- operation "restored from a dump", taken for possibly sent)
	IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user) THEN
		RETURN NEW;
	END IF;
	IF NEW.status IN ('queued', 'sending', 'dead') AND NEW.never_sent THEN
		NEW.never_sent := false;
		NEW.first_sent_at := coalesce(NEW.first_sent_at, greatest(NEW.created_at, NEW.updated_at));
		NEW.last_error := 'restored from a dump: the server it was dumped from may have sent it';
	END IF;
	IF NEW.status = 'sending' THEN
		NEW.status := 'queued';
		NEW.next_attempt_at := now();
		NEW.last_error := 'restored from a dump while its request was in flight';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._restored_operation() IS
	'Trigger: an operation loaded by a restore (a superuser''s session, check_function_bodies off) that the dump has as queued, sending or dead and never sent is treated as possibly sent (resent identically inside the duplicate window, looked up past it); one sending is queued again at once.';
CREATE TRIGGER operations_restored BEFORE INSERT ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._restore_gate('payments._restored_operation()');
COMMENT ON TRIGGER operations_restored ON payments.operations IS
	'A restore loads the operations of another server''s history, possibly short: what may have been sent is treated as possibly sent (payments._restored_operation).';

-- The worker_server row of a dump, restored where the worker already
-- recorded its own (it served the extension before the rows came): the
-- worker's row stays (the operations were made safe as they were loaded),
-- and the restore does not fail on the duplicate.  Either way the
-- database changed server now: the one it was dumped from may have gone
-- on charging what comes due here (changed_at, _queue_invoice_charge).
CREATE FUNCTION payments._restored_worker_server() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM payments.worker_server) THEN
		UPDATE payments.worker_server SET changed_at = now(), server_tag = payments._new_server_tag();
		RETURN NULL;
	END IF;
	NEW.changed_at := now();
	NEW.server_tag := payments._new_server_tag();
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._restored_worker_server() IS
	'Trigger: a restore (check_function_bodies off) does not replace the worker_server row the worker of this database already recorded, and records the restore''s time as the moment the database changed server (changed_at), with a new server life''s tag of invoice numbers (server_tag).';
CREATE TRIGGER worker_server_restored BEFORE INSERT ON payments.worker_server
	FOR EACH ROW EXECUTE FUNCTION payments._restore_gate('payments._restored_worker_server()');
COMMENT ON TRIGGER worker_server_restored ON payments.worker_server IS
	'A restore keeps the row the worker of this database already recorded (payments._restored_worker_server).';
CREATE TRIGGER worker_server_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON payments.worker_server
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
COMMENT ON TRIGGER worker_server_changed ON payments.worker_server IS
	'Makes every backend drop the server life''s tag it kept (_server_tag).';

-- A time the gateway reports (settlementTimeUTC, ...): UTC by name, with
-- or without its "Z"; NULL when it cannot be read.
CREATE FUNCTION payments._gateway_time(t text) RETURNS timestamptz
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
BEGIN
	IF t IS NULL OR t = '' THEN
		RETURN NULL;
	END IF;
	IF t !~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN
		t := t || 'Z';
	END IF;
	RETURN t::timestamptz;
EXCEPTION
	WHEN data_exception THEN
		RETURN NULL;
END
$$;
COMMENT ON FUNCTION payments._gateway_time(text) IS
	'Internal: a UTC time as the gateway reports it (xs:dateTime, with or without Z), or NULL when unreadable.';

-- Settlement learned from the gateway (the worker's settlement check, or a
-- refund or void that asked first): the payments whose captures these
-- transIds are get settled_at (the batch's settlement time, else now) and
-- their batch id, and refunds that waited for it go out.  Returns how many
-- payments learned it.
CREATE FUNCTION payments._record_settlements(p_merchant_id bigint, p_trans_id text[],
	p_batch_id text[], p_settled_at text[])
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	settled bigint[];
BEGIN
	WITH s AS (
		SELECT DISTINCT ON (x.trans_id) x.trans_id, x.batch_id,
			payments._gateway_time(x.settled_at) AS settled_at
		FROM unnest(p_trans_id, p_batch_id, p_settled_at) AS x(trans_id, batch_id, settled_at)
		WHERE x.trans_id IS NOT NULL
	), u AS (
		UPDATE payments.payments p SET settled_at = coalesce(s.settled_at, now()),
			settlement_batch_id = s.batch_id
		FROM s
		WHERE p.merchant_id = p_merchant_id AND p.gateway_trans_id = s.trans_id
			AND p.settled_at IS NULL
		RETURNING p.payment_id
	)
	SELECT array_agg(u.payment_id) INTO settled FROM u;
	IF settled IS NULL THEN
		RETURN 0;
	END IF;
	UPDATE payments.operations SET status = 'queued', next_attempt_at = now(),
		last_error = NULL
	WHERE merchant_id = p_merchant_id AND payment_id = ANY (settled)
		AND status = 'waiting_settlement';
	RETURN cardinality(settled);
END
$$;
COMMENT ON FUNCTION payments._record_settlements(bigint, text[], text[], text[]) IS
	'Worker: records the captures (gateway transIds) the gateway shows settled, with batch id and settlement time, and releases the refunds waiting for them.';

-- Captured payments whose settlement the database has not learned yet,
-- for the worker's settlement check (one scan of the batch lists per
-- merchant, from the oldest of them).  Payments older than the widest
-- range one batch list request covers (31 days) are left out: their
-- settlement is learned when a refund or void asks (getTransactionDetails).
-- So are payments made at another gateway account than the one configured
-- now (_payment_account): learned once that account is configured again.
CREATE FUNCTION payments._settlement_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, gateway_trans_id text,
		created_at timestamptz, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	-- the plan's estimate (every merchant's full share) would compile it
	SET jit = off
	AS $$
	-- each merchant's oldest p_limit (one merchant's backlog neither
	-- starves the others nor makes a round long)
	SELECT g.merchant_id, p.payment_id, p.gateway_trans_id, p.created_at,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.gateway_config g
	CROSS JOIN LATERAL (SELECT x.payment_id, x.gateway_trans_id, x.created_at
		FROM payments.payments x
		WHERE x.merchant_id = g.merchant_id AND x.settled_at IS NULL AND x.gateway_trans_id IS NOT NULL
			AND x.status IN ('succeeded', 'partially_refunded')
			-- (31 days of 24 hours: an interval of days would count them in the
			-- session's TimeZone)
			AND x.created_at > now() - make_interval(hours => 31 * 24)
			-- made at the gateway account configured now: the batches of
			-- another are not there (found once the merchant is back at it)
			AND coalesce(payments._payment_account(x.merchant_id, x.payment_id)
				= payments._gateway_account(g.api_login_id), true)
		ORDER BY x.created_at
		LIMIT p_limit) p
	ORDER BY g.merchant_id, p.created_at
	$$;
COMMENT ON FUNCTION payments._settlement_candidates(integer) IS
	'Worker: captured payments (of the last 31 days, made at the gateway account configured now) whose settlement is not known yet, each merchant''s oldest p_limit, ordered by merchant, to look for in the gateway''s settled batches.';

-- A refund's decision, taken by the worker from the gateway's state of the
-- payment's transaction: 'void' (an unsettled capture refunded in full goes
-- out as a void: recorded first, then sent), 'wait' (a partial refund of an
-- unsettled capture waits for settlement; released by _record_settlements,
-- or asked about again after six hours by _recheck_waiting_refunds in case
-- the batch lists never show it), or 'refund' (a refund decided as a void
-- found the capture settled before the void went through: it goes out as a
-- refund after all, decided again).  Waiting is not an attempt: the count
-- starts again.  Nothing of the refund can have taken effect at the gateway
-- by then (a capture is refunded only once settled, and a void of a
-- settled capture does nothing), so the operation counts as never sent:
-- its duplicate window starts with its next request.
CREATE FUNCTION payments._record_refund_decision(p_merchant_id bigint, p_operation_id bigint,
	p_decision text, p_note text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	settled boolean;
BEGIN
	IF p_decision IS NULL OR p_decision NOT IN ('void', 'wait', 'refund') THEN
		RAISE EXCEPTION 'invalid refund decision % for operation %', p_decision, p_operation_id
			USING ERRCODE = '22023';
	END IF;
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'sending' OR o.kind <> 'refund' THEN
		RETURN;		-- not ours any more (a DBA discarded it)
	END IF;
	SELECT p.settled_at IS NOT NULL INTO settled FROM payments.payments p
	WHERE p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id;
	UPDATE payments.operations SET
		status = CASE WHEN p_decision = 'wait' AND NOT settled THEN 'waiting_settlement' ELSE 'queued' END,
		via_void = p_decision = 'void',
		attempts = CASE WHEN p_decision = 'wait' THEN 0 ELSE o.attempts END,
		next_attempt_at = CASE WHEN p_decision = 'wait' THEN now() + interval '6 hours' ELSE now() END,
		last_error = p_note,
		never_sent = true,
		first_sent_at = NULL
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
END
$$;
COMMENT ON FUNCTION payments._record_refund_decision(bigint, bigint, text, text) IS
	'Worker: records how a refund goes out, decided from the gateway''s state of the capture: as a void (void, queued again), after settlement (wait, waiting_settlement), or as a refund after all when its void found the capture settled (refund, queued again).';

-- Refunds that have waited six hours for a settlement the batch lists did
-- not show (a capture older than their range, a batch dated oddly): queued
-- again, so that the worker asks the gateway about the capture once more
-- (run with each settlement check).  Returns how many.
CREATE FUNCTION payments._recheck_waiting_refunds() RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	n integer;
BEGIN
	UPDATE payments.operations SET status = 'queued', next_attempt_at = now()
	WHERE status = 'waiting_settlement' AND next_attempt_at <= now();
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION payments._recheck_waiting_refunds() IS
	'Worker: queues again the refunds that have waited six hours for a settlement, to ask the gateway about the capture once more.';

-- Payments held for review (responseCode 4) whose final status the worker
-- asks the gateway for (getTransactionDetails), least recently asked
-- first; not while another operation on the payment (a void) is under way.
CREATE FUNCTION payments._review_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, payment_id bigint, kind text, invoice_number text,
		gateway_trans_id text, api_login_id text, transaction_key text, endpoint_url text,
		ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT p.merchant_id, p.payment_id, p.kind, p.invoice_number, p.gateway_trans_id,
		g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.payments p
	JOIN payments.gateway_config g ON g.merchant_id = p.merchant_id
	WHERE p.status = 'in_review' AND p.gateway_trans_id IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM payments.operations o
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
				AND (o.status IN ('queued', 'sending', 'unknown')
					-- made at another gateway account than the one configured
					-- now (operations.gateway_account): asked there it would
					-- never be found; asked once the merchant is back at it
					OR o.kind IN ('purchase', 'authorize')
						AND o.gateway_account <> payments._gateway_account(g.api_login_id)))
	ORDER BY p.updated_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._review_candidates(integer) IS
	'Worker: payments held for review, to ask the gateway what became of them.';

-- What became of a payment held for review, as the gateway shows its
-- transaction now (p_status_class: the worker's class of
-- p_transaction_status): approved (authorized or captured, as the
-- original operation asked), declined, voided or expired; still under
-- review changes nothing.  Each change writes its payment event.  Returns
-- the payment's new status, or NULL when it did not change.
CREATE FUNCTION payments._resolve_review(p_merchant_id bigint, p_payment_id bigint,
	p_transaction_status text, p_status_class text, p_response_code integer,
	p_reason_code integer, p_reason_text text, p_auth_code text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	p payments.payments;
	new_status text;
BEGIN
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = p_merchant_id AND payment_id = p_payment_id FOR UPDATE;
	IF NOT FOUND OR p.status <> 'in_review' OR EXISTS (SELECT 1 FROM payments.operations o
			WHERE o.merchant_id = p.merchant_id AND o.payment_id = p.payment_id
				AND o.status IN ('queued', 'sending', 'unknown')) THEN
		RETURN NULL;
	END IF;
	new_status := CASE
		WHEN p_status_class = 'pending_capture' AND p.kind = 'authorize' THEN 'requires_capture'
		WHEN p_status_class IN ('pending_settlement', 'settled') AND p.kind = 'purchase' THEN 'succeeded'
		WHEN p_status_class IN ('declined', 'failed', 'expired') THEN 'failed'
		WHEN p_status_class = 'voided' THEN 'canceled'
		END;
	IF new_status IS NULL THEN
		UPDATE payments.payments SET updated_at = now()
		WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
		RETURN NULL;
	END IF;
	UPDATE payments.payments SET status = new_status,
		amount_authorized = CASE WHEN new_status IN ('requires_capture', 'succeeded') THEN p.amount
			ELSE p.amount_authorized END,
		amount_captured = CASE WHEN new_status = 'succeeded' THEN p.amount ELSE p.amount_captured END,
		auth_code = coalesce(nullif(p_auth_code, ''), p.auth_code),
		decline_code = CASE WHEN new_status = 'failed'
			THEN coalesce(p_reason_code::text, p_transaction_status) END,
		decline_reason = CASE WHEN new_status = 'failed' THEN coalesce(nullif(p_reason_text, ''),
			format('the gateway shows the held transaction %s', p_transaction_status)) END
	WHERE merchant_id = p.merchant_id AND payment_id = p.payment_id;
	RETURN new_status;
END
$$;
COMMENT ON FUNCTION payments._resolve_review(bigint, bigint, text, text, integer, integer, text, text) IS
	'Worker: moves a payment held for review to what the gateway decided (requires_capture or succeeded when approved, failed when declined or expired, canceled when voided).';

-- Refunds held for review (in_review: responseCode 4, or found held by a
-- lookup), whose fate the worker asks the gateway for with the payments
-- held for review (getTransactionDetails of the refund's transaction),
-- least recently asked first.
CREATE FUNCTION payments._refund_review_candidates(p_limit integer)
	RETURNS TABLE (merchant_id bigint, operation_id bigint, payment_id bigint,
		invoice_number text, gateway_trans_id text, api_login_id text, transaction_key text,
		endpoint_url text, ca_file text, timeout_ms integer)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT o.merchant_id, o.operation_id, o.payment_id,
		-- the refund's own transaction, or the payment's for one sent as a void
		CASE WHEN o.via_void THEN p.invoice_number ELSE 'R' || payments._invoice_tag() || o.operation_id END,
		o.gateway_trans_id, g.api_login_id, g.transaction_key, g.endpoint_url, g.ca_file, g.timeout_ms
	FROM payments.operations o
	JOIN payments.payments p ON p.merchant_id = o.merchant_id AND p.payment_id = o.payment_id
	JOIN payments.gateway_config g ON g.merchant_id = o.merchant_id
	WHERE o.status = 'in_review' AND o.kind = 'refund' AND o.gateway_trans_id IS NOT NULL
		-- (at the gateway account configured now: see _review_candidates)
		AND (o.gateway_account IS NULL OR o.gateway_account = payments._gateway_account(g.api_login_id))
	ORDER BY o.updated_at
	LIMIT p_limit
	$$;
COMMENT ON FUNCTION payments._refund_review_candidates(integer) IS
	'Worker: refunds held for review, to ask the gateway what became of them.';

-- What became of a refund held for review, as the gateway shows its
-- transaction now (p_status_class as for _resolve_review): approved
-- (pending settlement or settled; for a refund sent as a void, voided),
-- the outcome approved: the refund succeeds and its amount is counted in
-- the payment (_count_refund), with the payment's event; declined, the
-- outcome declined; voided, failed or expired, the outcome error: the
-- refund fails, nothing is refunded and its amount can be refunded again.
-- Still under review (or anything else) changes nothing.  Returns the
-- refund's new status, or NULL when it did not change.
CREATE FUNCTION payments._resolve_refund_review(p_merchant_id bigint, p_operation_id bigint,
	p_transaction_status text, p_status_class text, p_response_code integer,
	p_reason_code integer, p_reason_text text)
	RETURNS text
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	o payments.operations;
	p payments.payments;
	t payments.operation_outcomes;
	resolve_outcome text;
BEGIN
	-- the operation, then its payment (the order _record_result locks them in)
	SELECT * INTO o FROM payments.operations
	WHERE merchant_id = p_merchant_id AND operation_id = p_operation_id FOR UPDATE;
	IF NOT FOUND OR o.status <> 'in_review' OR o.kind <> 'refund' THEN
		RETURN NULL;
	END IF;
	resolve_outcome := CASE
		WHEN o.via_void THEN CASE p_status_class WHEN 'voided' THEN 'approved'
			WHEN 'declined' THEN 'declined'
			WHEN 'pending_settlement' THEN 'error' WHEN 'settled' THEN 'error'
			WHEN 'failed' THEN 'error' WHEN 'expired' THEN 'error' END
		WHEN p_status_class IN ('pending_settlement', 'settled') THEN 'approved'
		WHEN p_status_class = 'declined' THEN 'declined'
		WHEN p_status_class IN ('voided', 'failed', 'expired') THEN 'error'
		END;
	IF resolve_outcome IS NULL THEN
		-- asked again after the others
		UPDATE payments.operations SET updated_at = now()
		WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
		RETURN NULL;
	END IF;
	SELECT * INTO STRICT t FROM payments.operation_outcomes x
	WHERE x.operation_kind = 'refund' AND x.outcome = resolve_outcome;
	SELECT * INTO p FROM payments.payments
	WHERE merchant_id = o.merchant_id AND payment_id = o.payment_id FOR UPDATE;
	UPDATE payments.operations SET status = t.operation_status,
		response_code = coalesce(p_response_code, response_code),
		reason_code = coalesce(p_reason_code, reason_code),
		reason_text = coalesce(nullif(p_reason_text, ''), reason_text),
		last_error = CASE WHEN t.operation_status = 'failed' THEN
			format('the gateway shows the refund held for review %s: nothing was refunded', p_transaction_status) END,
		completed_at = clock_timestamp()
	WHERE merchant_id = o.merchant_id AND operation_id = o.operation_id;
	IF t.payment_status IS NOT NULL THEN
		PERFORM payments._count_refund(p, o.amount, t.payment_status);
	END IF;
	RETURN t.operation_status;
END
$$;
COMMENT ON FUNCTION payments._resolve_refund_review(bigint, bigint, text, text, integer, integer, text) IS
	'Worker: records what the gateway decided about a refund held for review: approved, the refund succeeds and counts in its payment''s amount_refunded (partially_refunded or refunded); declined, voided, failed or expired, it fails and its amount can be refunded again.';
