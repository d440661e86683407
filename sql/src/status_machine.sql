-- Status machines: allowed transitions, what each gateway outcome does, the status triggers.

------------------------------------------------------------------------------
-- Status machines.
--
-- One table holds every allowed transition of every entity; triggers on the
-- entity tables refuse the rest and write an event for each change.  The
-- worker and the API functions change status only through ordinary
-- UPDATEs, so the rule holds for everyone.
------------------------------------------------------------------------------

CREATE TABLE payments.status_transitions (
	entity text NOT NULL,
	from_status text NOT NULL,
	to_status text NOT NULL,
	PRIMARY KEY (entity, from_status, to_status)
);
COMMENT ON TABLE payments.status_transitions IS
	'Every allowed status transition of payments, operations, customers, payment methods, subscriptions and invoices; the status triggers refuse any other.';
REVOKE ALL ON payments.status_transitions FROM PUBLIC;

INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	-- payments
	('payment', 'pending', 'requires_capture'),
	('payment', 'pending', 'succeeded'),
	('payment', 'pending', 'failed'),
	('payment', 'pending', 'in_review'),
	('payment', 'pending', 'unknown'),
	('payment', 'pending', 'canceled'),
	('payment', 'unknown', 'requires_capture'),
	('payment', 'unknown', 'succeeded'),
	('payment', 'unknown', 'failed'),
	('payment', 'unknown', 'in_review'),
	('payment', 'in_review', 'requires_capture'),
	('payment', 'in_review', 'succeeded'),
	('payment', 'in_review', 'failed'),
	('payment', 'in_review', 'canceled'),
	('payment', 'requires_capture', 'succeeded'),
	('payment', 'requires_capture', 'canceled'),
	('payment', 'succeeded', 'canceled'),
	('payment', 'succeeded', 'partially_refunded'),
	('payment', 'succeeded', 'refunded'),
	('payment', 'partially_refunded', 'partially_refunded'),
	('payment', 'partially_refunded', 'refunded'),
	-- operations (one gateway request each, with retries)
	('operation', 'queued', 'sending'),
	('operation', 'queued', 'canceled'),
	('operation', 'queued', 'dead'),
	('operation', 'sending', 'succeeded'),
	('operation', 'sending', 'failed'),
	('operation', 'sending', 'queued'),
	('operation', 'sending', 'unknown'),
	('operation', 'sending', 'dead'),
	-- a partial refund of an unsettled capture waits for settlement
	('operation', 'sending', 'waiting_settlement'),
	('operation', 'unknown', 'sending'),
	('operation', 'unknown', 'succeeded'),
	('operation', 'unknown', 'failed'),
	('operation', 'unknown', 'dead'),
	('operation', 'unknown', 'unknown'),
	('operation', 'waiting_settlement', 'queued'),
	('operation', 'waiting_settlement', 'canceled'),
	('operation', 'waiting_settlement', 'failed'),
	('operation', 'dead', 'queued'),
	('operation', 'dead', 'canceled');

-- customers and their stored payment methods (customers.sql, payment_methods.sql)
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('customer', 'active', 'deleted'),
	('payment_method', 'pending', 'active'),
	('payment_method', 'pending', 'failed'),
	-- a save that ran out of attempts, put back in the queue
	('payment_method', 'failed', 'pending'),
	('payment_method', 'active', 'deleting'),
	('payment_method', 'active', 'deleted'),
	('payment_method', 'failed', 'deleted'),
	('payment_method', 'deleting', 'deleted'),
	('payment_method', 'deleting', 'active');


------------------------------------------------------------------------------
-- What each gateway outcome does.
--
-- The worker hands over one outcome per attempt (approved, held, declined,
-- error, rejected: a final answer; retry: provably not processed; unknown:
-- may have been processed).  This table alone says, for each operation kind,
-- the operation's new status and the payment's; the worker's functions
-- (_record_final_results, _record_result, _recover_in_flight) read it and
-- add only the money (amounts authorized, captured, refunded).  An operation
-- that is to be tried again goes to dead instead once its attempts are used
-- up (payments.max_attempts).
------------------------------------------------------------------------------

CREATE TABLE payments.operation_outcomes (
	operation_kind text NOT NULL,
	outcome text NOT NULL,
	operation_status text NOT NULL,
	payment_status text,
	payment_status_from text,
	PRIMARY KEY (operation_kind, outcome)
);
COMMENT ON TABLE payments.operation_outcomes IS
	'For each operation kind and gateway outcome: the operation''s new status and the payment''s (NULL: unchanged; only from payment_status_from when that is set; a refund that leaves part of the capture is partially_refunded).';
REVOKE ALL ON payments.operation_outcomes FROM PUBLIC;

INSERT INTO payments.operation_outcomes
	(operation_kind, outcome, operation_status, payment_status, payment_status_from) VALUES
	('purchase', 'approved', 'succeeded', 'succeeded', NULL),
	('purchase', 'held', 'succeeded', 'in_review', NULL),
	('purchase', 'declined', 'failed', 'failed', NULL),
	('purchase', 'error', 'failed', 'failed', NULL),
	('purchase', 'rejected', 'failed', 'failed', NULL),
	('purchase', 'retry', 'queued', NULL, NULL),
	('purchase', 'unknown', 'unknown', 'unknown', 'pending'),
	('authorize', 'approved', 'succeeded', 'requires_capture', NULL),
	('authorize', 'held', 'succeeded', 'in_review', NULL),
	('authorize', 'declined', 'failed', 'failed', NULL),
	('authorize', 'error', 'failed', 'failed', NULL),
	('authorize', 'rejected', 'failed', 'failed', NULL),
	('authorize', 'retry', 'queued', NULL, NULL),
	('authorize', 'unknown', 'unknown', 'unknown', 'pending'),
	('capture', 'approved', 'succeeded', 'succeeded', NULL),
	('capture', 'held', 'succeeded', NULL, NULL),
	('capture', 'declined', 'failed', NULL, NULL),
	('capture', 'error', 'failed', NULL, NULL),
	('capture', 'rejected', 'failed', NULL, NULL),
	('capture', 'retry', 'queued', NULL, NULL),
	('capture', 'unknown', 'unknown', NULL, NULL),
	('void', 'approved', 'succeeded', 'canceled', NULL),
	('void', 'held', 'succeeded', NULL, NULL),
	('void', 'declined', 'failed', NULL, NULL),
	('void', 'error', 'failed', NULL, NULL),
	('void', 'rejected', 'failed', NULL, NULL),
	('void', 'retry', 'queued', NULL, NULL),
	('void', 'unknown', 'unknown', NULL, NULL),
	('refund', 'approved', 'succeeded', 'refunded', NULL),
	('refund', 'held', 'succeeded', NULL, NULL),
	('refund', 'declined', 'failed', NULL, NULL),
	('refund', 'error', 'failed', NULL, NULL),
	('refund', 'rejected', 'failed', NULL, NULL),
	('refund', 'retry', 'queued', NULL, NULL),
	('refund', 'unknown', 'unknown', NULL, NULL);

------------------------------------------------------------------------------
-- Status triggers: allowed transitions only; an event per change.
------------------------------------------------------------------------------

CREATE FUNCTION payments._status_guard() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, payments
	AS $$
DECLARE
	v_entity text := TG_ARGV[0];
BEGIN
	-- A restore (pg_dump scripts and pg_restore turn check_function_bodies
	-- off) loads rows whose events are restored from the dump themselves.
	IF current_setting('check_function_bodies') = 'off' THEN
		IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
			RETURN NEW;
		END IF;
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status THEN
		IF NOT EXISTS (SELECT 1 FROM payments.status_transitions t
				WHERE t.entity = v_entity AND t.from_status = OLD.status AND t.to_status = NEW.status) THEN
			RAISE EXCEPTION 'invalid % status transition from % to %', v_entity, OLD.status, NEW.status
				USING ERRCODE = '22Y20',
					HINT = 'payments.status_transitions lists the allowed transitions.';
		END IF;
	END IF;
	IF TG_OP = 'UPDATE' THEN
		NEW.updated_at := clock_timestamp();
	END IF;
	-- Each branch names only its own entity's columns: PL/pgSQL plans a
	-- statement at its first run, so the other branch is never planned.
	IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
		IF v_entity = 'payment' THEN
			INSERT INTO payments.events (merchant_id, event_type, payment_id, data, correlation_id)
			VALUES (NEW.merchant_id, 'payment.' || NEW.status, NEW.payment_id,
				jsonb_build_object('payment_id', NEW.payment_id, 'kind', NEW.kind, 'status', NEW.status,
					'amount', NEW.amount, 'amount_captured', NEW.amount_captured,
					'amount_refunded', NEW.amount_refunded, 'card_brand', NEW.card_brand,
					'card_last4', NEW.card_last4, 'invoice_number', NEW.invoice_number,
					'gateway_trans_id', NEW.gateway_trans_id, 'decline_code', NEW.decline_code,
					'decline_reason', NEW.decline_reason, 'metadata', NEW.metadata),
				NEW.correlation_id);
		ELSIF v_entity = 'payment_method' THEN
			INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
			VALUES (NEW.merchant_id, 'payment_method.' || NEW.status,
				jsonb_build_object('payment_method_id', NEW.payment_method_id, 'customer_id', NEW.customer_id,
					'status', NEW.status, 'card_brand', NEW.card_brand, 'card_last4', NEW.card_last4,
					'card_exp_month', NEW.card_exp_month, 'card_exp_year', NEW.card_exp_year,
					'failure_code', NEW.failure_code, 'failure_reason', NEW.failure_reason),
				NEW.correlation_id);
		ELSIF v_entity = 'subscription' THEN
			INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
			VALUES (NEW.merchant_id, CASE WHEN TG_OP = 'INSERT' THEN 'subscription.created' ELSE 'subscription.' || NEW.status END,
				jsonb_build_object('subscription_id', NEW.subscription_id, 'customer_id', NEW.customer_id,
					'plan_id', NEW.plan_id, 'status', NEW.status,
					'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
					'unit_amount', NEW.unit_amount, 'quantity', NEW.quantity,
					'current_period_start', NEW.current_period_start, 'current_period_end', NEW.current_period_end,
					'cancel_at_period_end', NEW.cancel_at_period_end),
				NEW.correlation_id);
		ELSIF v_entity = 'invoice' THEN
			INSERT INTO payments.events (merchant_id, event_type, payment_id, data, correlation_id)
			VALUES (NEW.merchant_id, CASE WHEN TG_OP = 'INSERT' THEN 'invoice.created' ELSE 'invoice.' || NEW.status END,
				NEW.payment_id,
				jsonb_build_object('invoice_id', NEW.invoice_id, 'subscription_id', NEW.subscription_id,
					'kind', NEW.kind, 'status', NEW.status, 'amount', NEW.amount,
					'period_start', NEW.period_start, 'period_end', NEW.period_end,
					'attempt_count', NEW.attempt_count, 'payment_id', NEW.payment_id),
				NEW.correlation_id);
		ELSIF v_entity = 'customer' THEN
			INSERT INTO payments.events (merchant_id, event_type, data, correlation_id)
			VALUES (NEW.merchant_id, CASE WHEN TG_OP = 'INSERT' THEN 'customer.created' ELSE 'customer.' || NEW.status END,
				jsonb_build_object('customer_id', NEW.customer_id, 'status', NEW.status,
					'external_ref', NEW.external_ref),
				NEW.correlation_id);
		ELSE
			INSERT INTO payments.events (merchant_id, event_type, payment_id, operation_id, data, correlation_id)
			VALUES (NEW.merchant_id, 'operation.' || NEW.status, NEW.payment_id, NEW.operation_id,
				jsonb_build_object('operation_id', NEW.operation_id, 'payment_id', NEW.payment_id,
					'kind', NEW.kind, 'status', NEW.status, 'amount', NEW.amount,
					'gateway_trans_id', NEW.gateway_trans_id, 'reason_code', NEW.reason_code,
					'reason_text', NEW.reason_text),
				NEW.correlation_id);
		END IF;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION payments._status_guard() IS
	'Trigger: refuses status transitions not listed in payments.status_transitions and writes an event for every status change.';

CREATE TRIGGER payments_status BEFORE INSERT OR UPDATE ON payments.payments
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('payment');
CREATE TRIGGER operations_status BEFORE INSERT OR UPDATE ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('operation');
