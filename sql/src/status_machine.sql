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

-- Each backend keeps the allowed transitions (src/status_guard.c); any
-- change tells every backend to read them again (src/cached_table.c).
CREATE TRIGGER status_transitions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON payments.status_transitions
	FOR EACH STATEMENT EXECUTE FUNCTION payments._cached_table_changed();
ALTER TABLE payments.status_transitions ENABLE ALWAYS TRIGGER status_transitions_changed;
COMMENT ON TRIGGER status_transitions_changed ON payments.status_transitions IS
	'Makes every backend read the allowed transitions again (src/status_guard.c keeps them).';

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
	-- a refund the gateway holds for review waits for its decision
	('operation', 'sending', 'in_review'),
	('operation', 'in_review', 'succeeded'),
	('operation', 'in_review', 'failed'),
	('operation', 'unknown', 'sending'),
	('operation', 'unknown', 'succeeded'),
	('operation', 'unknown', 'failed'),
	('operation', 'unknown', 'dead'),
	('operation', 'unknown', 'unknown'),
	('operation', 'waiting_settlement', 'queued'),
	('operation', 'waiting_settlement', 'canceled'),
	('operation', 'waiting_settlement', 'failed'),
	('operation', 'dead', 'queued'),
	('operation', 'dead', 'canceled'),
	-- the outcome the owner verified at the gateway (pay_resolve_dead_letter)
	('operation', 'dead', 'succeeded'),
	('operation', 'dead', 'failed');

-- customers and their stored payment methods (customers.sql, payment_methods.sql)
INSERT INTO payments.status_transitions (entity, from_status, to_status) VALUES
	('customer', 'active', 'deleted'),
	('payment_method', 'pending', 'active'),
	('payment_method', 'pending', 'failed'),
	-- a save that ran out of attempts, put back in the queue
	('payment_method', 'failed', 'pending'),
	-- its profile deleted at the gateway outside payments (payment_methods.sql)
	('payment_method', 'active', 'failed'),
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
-- up (payments.max_attempts).  A refund the gateway holds for review is
-- in_review, neither refunded nor refundable again, until the worker's
-- review check learns what the gateway decided (_resolve_refund_review:
-- approved, it counts as an approved refund; else it failed).
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
	('capture', 'expired', 'failed', 'canceled', 'requires_capture'),
	('void', 'approved', 'succeeded', 'canceled', NULL),
	('void', 'held', 'succeeded', NULL, NULL),
	('void', 'declined', 'failed', NULL, NULL),
	('void', 'error', 'failed', NULL, NULL),
	('void', 'rejected', 'failed', NULL, NULL),
	('void', 'retry', 'queued', NULL, NULL),
	('void', 'unknown', 'unknown', NULL, NULL),
	('refund', 'approved', 'succeeded', 'refunded', NULL),
	('refund', 'held', 'in_review', NULL, NULL),
	('refund', 'declined', 'failed', NULL, NULL),
	('refund', 'error', 'failed', NULL, NULL),
	('refund', 'rejected', 'failed', NULL, NULL),
	('refund', 'retry', 'queued', NULL, NULL),
	('refund', 'unknown', 'unknown', NULL, NULL);

------------------------------------------------------------------------------
-- Status triggers: allowed transitions only; an event per change.
------------------------------------------------------------------------------

-- C (src/status_guard.c): it fires for every row the API and the worker
-- write.  For each UPDATE that changes status it looks the transition up
-- in status_transitions (22Y20 when it is not there); on every UPDATE it
-- sets updated_at to clock_timestamp(); for every INSERT and status change
-- it writes the entity's event (<entity>.<status>; <entity>.created for a
-- new customer, subscription or invoice) with the row's fields as data.  A restore by a superuser
-- (check_function_bodies off) loads rows without events: their events are
-- restored from the dump themselves.
CREATE FUNCTION payments._status_guard() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'pay_status_guard';
COMMENT ON FUNCTION payments._status_guard() IS
	'Trigger: refuses status transitions not listed in payments.status_transitions and writes an event for every status change (and for a payment whose amount_refunded changes with its status).';

CREATE TRIGGER payments_status BEFORE INSERT OR UPDATE ON payments.payments
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('payment');
CREATE TRIGGER operations_status BEFORE INSERT OR UPDATE ON payments.operations
	FOR EACH ROW EXECUTE FUNCTION payments._status_guard('operation');
