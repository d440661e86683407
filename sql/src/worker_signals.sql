-- Signals between callers and the worker: wake at commit, wait for a payment.

CREATE FUNCTION payments._wake_at_commit() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_wake_at_commit';
COMMENT ON FUNCTION payments._wake_at_commit() IS
	'Internal: wakes the background worker when the current transaction commits (never before, never on rollback).';

CREATE FUNCTION payments._wake_billing_at_commit() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_wake_billing_at_commit';
COMMENT ON FUNCTION payments._wake_billing_at_commit() IS
	'Internal: asks the billing process for a run when the current transaction commits (a test clock moved), not at its next round.';

CREATE FUNCTION payments._wait_for_payment(merchant_id bigint, payment_id bigint, timeout_ms integer)
	RETURNS text
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_wait_for_payment';
REVOKE ALL ON FUNCTION payments._wait_for_payment(bigint, bigint, integer) FROM PUBLIC;
COMMENT ON FUNCTION payments._wait_for_payment(bigint, bigint, integer) IS
	'Internal: sleeps until the payment''s gateway work is done or the timeout passes; returns its status.';

CREATE FUNCTION payments._wait_for_payment_method(merchant_id bigint, payment_method_id bigint, timeout_ms integer)
	RETURNS text
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pay_wait_for_payment_method';
REVOKE ALL ON FUNCTION payments._wait_for_payment_method(bigint, bigint, integer) FROM PUBLIC;
COMMENT ON FUNCTION payments._wait_for_payment_method(bigint, bigint, integer) IS
	'Internal: sleeps until the stored payment method''s gateway work (save or delete) is done or the timeout passes; returns its status.';
