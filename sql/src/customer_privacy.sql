-- Personal data of customers: audited without it, exported, erased.

------------------------------------------------------------------------------
-- Customers and payment methods are audited (audit.sql) like the other
-- tenant tables, but their personal fields never reach the audit log: the
-- trigger leaves out the columns named here, so an erasure leaves nothing
-- of the person behind in the append-only log.
------------------------------------------------------------------------------

CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.customers
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('email', 'name', 'external_ref', 'billing', 'metadata');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.customers
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
CREATE TRIGGER payments_audit AFTER INSERT OR UPDATE OR DELETE ON payments.payment_methods
	FOR EACH ROW EXECUTE FUNCTION payments._audit_trigger('card_fingerprint');
CREATE TRIGGER payments_audit_truncate AFTER TRUNCATE ON payments.payment_methods
	FOR EACH STATEMENT EXECUTE FUNCTION payments._audit_trigger();
COMMENT ON TRIGGER payments_audit ON payments.customers IS 'Audit: payments.audit_log; email, name, external_ref, billing and metadata are never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.customers IS 'Audit: payments.audit_log.';
COMMENT ON TRIGGER payments_audit ON payments.payment_methods IS 'Audit: payments.audit_log; the card fingerprint is never written.';
COMMENT ON TRIGGER payments_audit_truncate ON payments.payment_methods IS 'Audit: payments.audit_log.';

-- The payments of a customer: those made for it (customer_id), and card,
-- Accept.js or profile purchases made without customer_id whose customer
-- object names its email (a guest checkout of the same person).
-- pay_erase_customer links the latter to it (customer_id) before it erases
-- the customer's email, so that they stay its payments afterwards.
CREATE FUNCTION payments._customer_payments(c payments.customers) RETURNS SETOF payments.payments
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT p.* FROM payments.payments p
	WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id
	UNION ALL
	SELECT p.* FROM payments.payments p
	WHERE p.merchant_id = c.merchant_id AND p.customer_id IS NULL AND c.email IS NOT NULL
		AND lower(p.customer ->> 'email') = lower(c.email)
	$$;
COMMENT ON FUNCTION payments._customer_payments(payments.customers) IS
	'Internal: the payments of a customer: those made for it (customer_id), and those made without customer_id whose customer object holds its email (compared case-insensitively).';

-- Events that concern a customer: its own, its methods', its payments'.
CREATE FUNCTION payments._customer_events(c payments.customers) RETURNS SETOF payments.events
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT e.* FROM payments.events e
	WHERE e.merchant_id = c.merchant_id
		AND ((e.data ->> 'customer_id') = c.customer_id::text
			OR e.payment_id IN (SELECT p.payment_id FROM payments._customer_payments(c) p)
			OR e.operation_id IN (SELECT o.operation_id FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id))
	$$;
COMMENT ON FUNCTION payments._customer_events(payments.customers) IS
	'Internal: the events that concern a customer (its own, its payment methods'', its payments'' and their operations'').';

CREATE FUNCTION payments.pay_export_customer(customer_id bigint) RETURNS jsonb
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	-- every time in the document (to_jsonb of whole rows) in UTC, as
	-- events store them: one export whoever asks, whatever their TimeZone
	SET TimeZone = 'UTC'
	AS $$
DECLARE
	c payments.customers := payments._find_customer(pay_export_customer.customer_id);
BEGIN
	RETURN jsonb_build_object(
		'exported_at', now(),
		'customer', to_jsonb(c) - 'idempotency_key',
		'payment_methods', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'card_fingerprint' - 'idempotency_key'
				ORDER BY x.payment_method_id)
			FROM payments.payment_methods x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id), '[]'),
		'payments', coalesce((SELECT jsonb_agg(to_jsonb(p) - 'card_fingerprint' - 'idempotency_key'
				ORDER BY p.payment_id)
			FROM payments._customer_payments(c) p), '[]'),
		'operations', coalesce((SELECT jsonb_agg(to_jsonb(o) - 'idempotency_key' ORDER BY o.operation_id)
			FROM payments.operations o
			WHERE o.merchant_id = c.merchant_id AND (o.customer_id = c.customer_id
				OR o.payment_id IN (SELECT p.payment_id FROM payments._customer_payments(c) p))), '[]'),
		'subscriptions', coalesce((SELECT jsonb_agg(to_jsonb(x) - 'idempotency_key' ORDER BY x.subscription_id)
			FROM payments.subscriptions x
			WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id), '[]'),
		'invoices', coalesce((SELECT jsonb_agg(to_jsonb(i) ORDER BY i.invoice_id)
			FROM payments.invoices i
			WHERE i.merchant_id = c.merchant_id AND i.customer_id = c.customer_id), '[]'),
		'events', coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.event_id)
			FROM payments._customer_events(c) e), '[]'));
END
$$;
COMMENT ON FUNCTION payments.pay_export_customer(bigint) IS
	'Everything the extension holds about one customer of the current merchant, as one JSON document: the customer, its payment methods (masked: brand, last four, expiry, gateway ids), its payments (those made for it, and those made without customer_id whose customer object holds its email), their gateway operations, its subscriptions and invoices, and the events that concern them. Every time in it is ISO 8601 in UTC (2026-12-06T10:00:00+00:00), whatever the caller''s TimeZone. PT404 for an unknown or foreign id.';

-- The gateway profiles of a customer at another gateway account than the
-- one configured now (which erasure cannot delete): its own profile (at
-- the account of its latest save) unless deleted already, and those its
-- live methods were saved under (a method saved before the merchant
-- changed account, under the profile the customer had there).  One entry
-- per account and profile: gateway_account (as
-- payments._gateway_account(api_login_id) names it), customer_profile_id,
-- payment_profile_ids and payment_method_ids (its methods' there),
-- deletion: 'held' for the customer's own profile (the delete_customer
-- operation erasure queues is held as a dead letter until that account is
-- configured again: pay_retry_dead_letter), else 'none'.  An account
-- unknown (saved before 0.2.0) or no account configured: not listed.
CREATE FUNCTION payments._customer_profiles_elsewhere(c payments.customers) RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	WITH configured AS (
		SELECT payments._gateway_account(g.api_login_id) AS account
		FROM payments.gateway_config g WHERE g.merchant_id = c.merchant_id
	), profiles AS (
		SELECT payments._customer_account(c.merchant_id, c.customer_id) AS account,
			c.customer_profile_id AS profile, NULL::text AS payment_profile_id, NULL::bigint AS payment_method_id
		WHERE c.customer_profile_id IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id
					AND o.kind = 'delete_customer' AND o.status = 'succeeded')
		UNION ALL
		SELECT payments._method_account(x.merchant_id, x.payment_method_id),
			x.customer_profile_id, x.payment_profile_id, x.payment_method_id
		FROM payments.payment_methods x
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND x.status IN ('active', 'deleting') AND x.payment_profile_id IS NOT NULL
	)
	SELECT coalesce(jsonb_agg(jsonb_build_object('gateway_account', e.account,
			'customer_profile_id', e.profile, 'payment_profile_ids', e.payment_profile_ids,
			'payment_method_ids', e.payment_method_ids,
			'deletion', CASE WHEN e.profile = c.customer_profile_id
				AND e.account = payments._customer_account(c.merchant_id, c.customer_id) THEN 'held' ELSE 'none' END)
		ORDER BY e.account, e.profile), '[]')
	FROM (SELECT p.account, p.profile,
			coalesce(jsonb_agg(p.payment_profile_id ORDER BY p.payment_method_id)
				FILTER (WHERE p.payment_profile_id IS NOT NULL), '[]') AS payment_profile_ids,
			coalesce(jsonb_agg(p.payment_method_id ORDER BY p.payment_method_id)
				FILTER (WHERE p.payment_method_id IS NOT NULL), '[]') AS payment_method_ids
		FROM profiles p, configured g
		WHERE p.account IS NOT NULL AND p.account <> g.account AND p.profile IS NOT NULL
		GROUP BY p.account, p.profile) e
	$$;
COMMENT ON FUNCTION payments._customer_profiles_elsewhere(payments.customers) IS
	'Internal: a customer''s gateway profiles at another gateway account than the one configured now, as pay_erase_customer lists them (customer.erased gateway_profiles_kept): gateway_account, customer_profile_id, payment_profile_ids, payment_method_ids, deletion (held or none).';

CREATE FUNCTION payments.pay_erase_customer(customer_id bigint,
	idempotency_key text DEFAULT NULL, correlation_id text DEFAULT NULL)
	RETURNS payments.customers
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	c payments.customers := payments._lock_customer_to_end(pay_erase_customer.customer_id, 'erase');
	idem payments.idempotency_keys := payments._idempotency_claim(c.merchant_id,
		pay_erase_customer.idempotency_key, 'erase_customer', md5(jsonb_build_array(c.customer_id)::text));
	corr text := payments._correlation_id(pay_erase_customer.correlation_id);
	result payments.customers;
	kept jsonb;
BEGIN
	IF idem.request_kind IS NULL AND c.erased_at IS NULL THEN
		-- what is at another gateway account than the one configured now
		-- stays there: nothing can reach it from here (the credentials
		-- of one account are kept).  Erasure is never refused for it: it
		-- completes here and says what it left (customer.erased, WARNING)
		kept := payments._customer_profiles_elsewhere(c);
		-- the gateway's profile holds the email and billing address: it goes too
		IF c.status <> 'deleted' THEN
			PERFORM payments._end_customer_subscriptions(c);
			PERFORM payments._delete_customer_profile(c, NULL, corr);
		ELSIF c.customer_profile_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.operations o
				WHERE o.merchant_id = c.merchant_id AND o.customer_id = c.customer_id
					AND o.kind = 'delete_customer' AND o.status IN ('queued', 'sending', 'unknown', 'succeeded')) THEN
			-- deleted earlier, but its profile was kept at the gateway (refused,
			-- or out of attempts): the erasure deletes it now
			PERFORM payments._new_method_operation(c.merchant_id, 'delete_customer', NULL, c.customer_id,
				NULL, NULL, corr);
		END IF;
		-- its payments made without customer_id under its email (a guest
		-- checkout's customer object) become its own before the email goes:
		-- erased below with the others, and still its payments afterwards
		WITH g AS (
			UPDATE payments.payments p SET customer_id = c.customer_id
			WHERE p.merchant_id = c.merchant_id AND p.customer_id IS NULL
				AND p.payment_id IN (SELECT y.payment_id FROM payments._customer_payments(c) y
					WHERE y.customer_id IS NULL)
				-- not while another customer of the merchant has that email:
				-- the purchase is as much that one's (the last one erased takes it)
				AND NOT EXISTS (SELECT 1 FROM payments.customers o
					WHERE o.merchant_id = c.merchant_id AND o.customer_id <> c.customer_id
						AND o.email IS NOT NULL AND lower(o.email) = lower(c.email))
			RETURNING p.payment_id)
		UPDATE payments.idempotency_keys k SET customer_id = c.customer_id
		WHERE k.merchant_id = c.merchant_id AND k.customer_id IS NULL
			AND k.payment_id IN (SELECT g.payment_id FROM g);
		UPDATE payments.customers x SET status = 'deleted', email = NULL, name = NULL,
			external_ref = NULL, billing = '{}', metadata = '{}',
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key),
			deleted_at = coalesce(x.deleted_at, clock_timestamp()), erased_at = clock_timestamp(),
			updated_at = clock_timestamp()
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
		-- payments keep amounts, dates, card brand and last four, gateway ids;
		-- the billing details sent with them, the card fingerprint and what
		-- the merchant wrote about them (description, order_ref, metadata)
		-- go, and its idempotency key is kept as a digest (_erased_key: an
		-- application may have made it of an email or an order's text).
		-- An invoice's charge keeps the description and metadata the
		-- extension wrote (the subscription's and invoice's ids only).
		UPDATE payments.payments p SET customer = '{}', card_fingerprint = NULL,
			idempotency_key = payments._erased_key(p.merchant_id, p.idempotency_key),
			description = CASE WHEN p.invoice_id IS NULL THEN NULL ELSE p.description END,
			order_ref = NULL,
			metadata = CASE WHEN p.invoice_id IS NULL THEN '{}' ELSE p.metadata END
		WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id;
		-- a refund's reason, and the copies of the metadata in the payments' events
		UPDATE payments.operations o SET reason = NULL
		WHERE o.merchant_id = c.merchant_id AND o.reason IS NOT NULL
			AND o.payment_id IN (SELECT p.payment_id FROM payments.payments p
				WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id);
		-- the idempotency keys of its operations (a refund's, a method's), as digests
		UPDATE payments.operations o SET idempotency_key = payments._erased_key(o.merchant_id, o.idempotency_key)
		WHERE o.merchant_id = c.merchant_id AND o.idempotency_key IS NOT NULL
			AND o.idempotency_key NOT LIKE 'erased:%'
			AND (o.customer_id = c.customer_id OR o.payment_id IN (SELECT p.payment_id FROM payments.payments p
				WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id));
		UPDATE payments.events e SET data = jsonb_set(e.data, '{metadata}', p.metadata)
		FROM payments.payments p
		WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id
			AND e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id
			AND e.event_type LIKE 'payment.%' AND e.data ? 'metadata' AND e.data -> 'metadata' <> p.metadata;
		UPDATE payments.payment_methods x SET card_fingerprint = NULL,
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key)
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
		-- subscriptions keep their terms and periods; their metadata may name the person
		UPDATE payments.subscriptions x SET metadata = '{}',
			idempotency_key = payments._erased_key(x.merchant_id, x.idempotency_key)
		WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id
			AND (x.metadata <> '{}' OR x.idempotency_key IS NOT NULL);
		-- the masked requests carried the name, email and address
		UPDATE payments.gateway_exchanges g SET request_masked = '(erased)', response_masked = NULL
		WHERE g.merchant_id = c.merchant_id AND g.operation_id IN (SELECT o.operation_id
			FROM payments.operations o WHERE o.merchant_id = c.merchant_id AND (o.customer_id = c.customer_id
				OR o.payment_id IN (SELECT p.payment_id FROM payments.payments p
					WHERE p.merchant_id = c.merchant_id AND p.customer_id = c.customer_id)));
		-- the keys of its requests keep no digest of their arguments (of its
		-- email, name, billing details, metadata): a repeat returns what the
		-- request made, whatever the arguments; nor the key as given, but a
		-- digest of it, which a repeat under the key still finds
		-- (payments._idempotency_claim), so that it never charges again
		UPDATE payments.idempotency_keys k SET request_hash = NULL,
			idempotency_key = payments._erased_key(k.merchant_id, k.idempotency_key)
		WHERE k.merchant_id = c.merchant_id AND k.customer_id = c.customer_id
			AND k.idempotency_key NOT LIKE 'erased:%';
		UPDATE payments.events e SET data = e.data - 'external_ref'
		WHERE e.merchant_id = c.merchant_id AND e.event_type LIKE 'customer.%'
			AND (e.data ->> 'customer_id') = c.customer_id::text;
		INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
		VALUES (c.merchant_id, 'customer.erased', jsonb_build_object('customer_id', c.customer_id,
			'gateway_profiles_kept', kept), corr);
		IF kept <> '[]' THEN
			RAISE WARNING 'customer % was erased, but its gateway profiles at another gateway account than the one configured now were not deleted', c.customer_id
				USING ERRCODE = '01000',
					DETAIL = format('%s. The credentials of that account are no longer configured, so nothing can be sent there; the customer.erased event lists them (gateway_profiles_kept).',
						(SELECT string_agg(format('Gateway account %s keeps customer profile %s%s', k ->> 'gateway_account',
								k ->> 'customer_profile_id',
								CASE WHEN k ->> 'deletion' = 'held' THEN ' (its deletion is held as a dead letter)'
									ELSE ' (nothing queued)' END), '; ')
							FROM jsonb_array_elements(kept) k)),
					HINT = 'Delete them in that account''s Merchant Interface (customer profiles, by id), or configure that account again (pay_configure_gateway) and retry a held deletion (pay_retry_dead_letter).';
		END IF;
	END IF;
	SELECT * INTO result FROM payments.customers x
	WHERE x.merchant_id = c.merchant_id AND x.customer_id = c.customer_id;
	RETURN result;
END
$$;
COMMENT ON FUNCTION payments.pay_erase_customer(bigint, text, text) IS
	'Erases a customer''s personal data: email, name, external_ref, billing and metadata; of its payments (payments made without customer_id whose customer object holds its email become its own first) the billing details sent, the card fingerprint, description, order_ref and metadata (an invoice charge keeps the description and metadata the extension wrote), their refunds'' reasons and the copies of their metadata in their events; card fingerprints, its subscriptions'' metadata, the masked gateway requests and replies of its operations, the digests of the arguments of its idempotency keys (a repeat under one returns what the request made, whatever the arguments), the idempotency keys of its requests and objects (kept as digests, which a repeat under the original key still finds), and its profile at the gateway (deleted by the worker). Profiles at another gateway account than the one configured now cannot be deleted from here: erasure completes all the same, and lists them in its customer.erased event (gateway_profiles_kept) and a WARNING. Kept, as the law requires: payments with amounts, dates, status, card brand and last four, invoice numbers, decline codes and reasons, gateway transaction and profile ids, and their operations. The customer stays as a deleted row with erased_at; the audit log records the change (without the personal values) and a customer.erased event is written.';
