-- Payment search: the current merchant's payments, newest first, filtered, keyset-paginated.

-- The indexes behind the filters (payments_created and payments_status, in
-- payment_tables.sql, serve the listing and the status filter).  Each ends
-- with (created_at, payment_id), so a filter's matches come newest first
-- without a sort.
CREATE INDEX payments_order_ref ON payments.payments (merchant_id, order_ref, created_at, payment_id)
	WHERE order_ref IS NOT NULL;
CREATE INDEX payments_customer_email ON payments.payments
	(merchant_id, lower(customer ->> 'email'), created_at, payment_id)
	WHERE customer ? 'email';
CREATE INDEX payments_amount ON payments.payments
	(merchant_id, payments.pay_currency(amount), payments.pay_minor_units(amount));

-- The query of a search: only the filters given, so that the plan is made
-- for them.  Parameters: $1 merchant, $2 and $3 the cursor's created_at and
-- payment_id, $4 status, $5 created_from, $6 created_to, $7 order_ref,
-- $8 customer_email, $9 currency, $10 and $11 minimum and maximum in minor
-- units, $12 page_size.
CREATE FUNCTION payments._list_payments_query(has_cursor boolean, has_status boolean,
	has_created_from boolean, has_created_to boolean, has_order_ref boolean,
	has_customer_email boolean, has_amount_min boolean, has_amount_max boolean)
	RETURNS text
	LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
	SELECT 'SELECT p.* FROM payments.payments p WHERE p.merchant_id = $1'
		|| CASE WHEN has_cursor THEN ' AND (p.created_at, p.payment_id) < ($2, $3)' ELSE '' END
		|| CASE WHEN has_status THEN ' AND p.status = $4' ELSE '' END
		|| CASE WHEN has_created_from THEN ' AND p.created_at >= $5' ELSE '' END
		|| CASE WHEN has_created_to THEN ' AND p.created_at < $6' ELSE '' END
		|| CASE WHEN has_order_ref THEN ' AND p.order_ref = $7' ELSE '' END
		|| CASE WHEN has_customer_email
			THEN ' AND p.customer ? ''email'' AND lower(p.customer ->> ''email'') = lower($8)' ELSE '' END
		|| CASE WHEN has_amount_min OR has_amount_max THEN ' AND payments.pay_currency(p.amount) = $9' ELSE '' END
		|| CASE WHEN has_amount_min THEN ' AND payments.pay_minor_units(p.amount) >= $10' ELSE '' END
		|| CASE WHEN has_amount_max THEN ' AND payments.pay_minor_units(p.amount) <= $11' ELSE '' END
		|| ' ORDER BY p.created_at DESC, p.payment_id DESC LIMIT $12'
	$$;
COMMENT ON FUNCTION payments._list_payments_query(boolean, boolean, boolean, boolean, boolean, boolean, boolean, boolean) IS
	'Internal: the query pay_list_payments runs for the filters given (parameters $1 to $12).';

CREATE FUNCTION payments.pay_list_payments(
	status text DEFAULT NULL,
	created_from timestamptz DEFAULT NULL,
	created_to timestamptz DEFAULT NULL,
	order_ref text DEFAULT NULL,
	customer_email text DEFAULT NULL,
	amount_min payments.pay_amount DEFAULT NULL,
	amount_max payments.pay_amount DEFAULT NULL,
	after bigint DEFAULT NULL,
	page_size integer DEFAULT 50)
	RETURNS SETOF payments.payments
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, payments, pg_temp
	AS $$
DECLARE
	m bigint := payments.pay_current_merchant();
	cursor_at timestamptz;
BEGIN
	IF page_size IS NULL OR page_size NOT BETWEEN 1 AND 500 THEN
		RAISE EXCEPTION 'page_size must be between 1 and 500'
			USING ERRCODE = '22023',
				DETAIL = format('The page_size given was %s.', coalesce(page_size::text, 'NULL')),
				HINT = 'Ask for the next page with after => the last payment_id of this one.';
	END IF;
	IF pay_list_payments.status IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payments.status_transitions t
			WHERE t.entity = 'payment' AND pay_list_payments.status IN (t.from_status, t.to_status)) THEN
		RAISE EXCEPTION 'unknown payment status'
			USING ERRCODE = '22023', DETAIL = 'The status given is not quoted.',
				HINT = 'A payment status is one of pending, requires_capture, succeeded, failed, canceled, refunded, partially_refunded, in_review, unknown.';
	END IF;
	IF created_from > created_to THEN
		RAISE EXCEPTION 'created_from is after created_to' USING ERRCODE = '22023';
	END IF;
	IF payments.pay_currency(amount_min) <> payments.pay_currency(amount_max) THEN
		RAISE EXCEPTION 'amount_min and amount_max are in different currencies'
			USING ERRCODE = '22Y03', DETAIL = format('%s and %s were given.', amount_min, amount_max);
	END IF;
	IF after IS NOT NULL THEN
		SELECT p.created_at INTO cursor_at FROM payments.payments p
		WHERE p.merchant_id = m AND p.payment_id = pay_list_payments.after;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'the cursor payment % is not a payment of this merchant', after
				USING ERRCODE = '22023',
					HINT = 'Pass as after the last payment_id of the page before.';
		END IF;
	END IF;
	RETURN QUERY EXECUTE payments._list_payments_query(after IS NOT NULL,
		pay_list_payments.status IS NOT NULL, created_from IS NOT NULL, created_to IS NOT NULL,
		pay_list_payments.order_ref IS NOT NULL, customer_email IS NOT NULL,
		amount_min IS NOT NULL, amount_max IS NOT NULL)
	USING m, cursor_at, after, pay_list_payments.status, created_from, created_to,
		pay_list_payments.order_ref, customer_email,
		payments.pay_currency(coalesce(amount_min, amount_max)),
		payments.pay_minor_units(amount_min), payments.pay_minor_units(amount_max), page_size;
END
$$;
COMMENT ON FUNCTION payments.pay_list_payments(text, timestamptz, timestamptz, text, text, payments.pay_amount, payments.pay_amount, bigint, integer) IS
	'The current merchant''s payments, newest first (created_at, then payment_id), at most page_size (1-500, default 50) per call. Filters, all optional and combined: status, created_from (inclusive) and created_to (exclusive), order_ref, customer_email (customer ->> ''email'', any case), amount_min and amount_max (one currency). Keyset pagination: pass as after the last payment_id of the previous page. Raises 22023 for a bad page_size, status, date range or cursor.';
