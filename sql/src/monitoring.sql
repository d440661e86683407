-- Worker health, restart and Prometheus metrics.

CREATE FUNCTION payments.pay_worker_health(
	OUT alive boolean, OUT pid integer, OUT started_at timestamptz, OUT last_loop_at timestamptz,
	OUT queue_depth bigint, OUT in_flight integer, OUT max_in_flight integer, OUT circuit_state text,
	OUT requests_sent bigint, OUT approved bigint, OUT declined bigint, OUT errors bigint,
	OUT unknown_outcomes bigint, OUT retries bigint, OUT failing_gateways integer,
	OUT gateway_failures jsonb, OUT served_database text,
	OUT worker_conf_loaded_at timestamptz, OUT recorder_conf_loaded_at timestamptz,
	OUT billing_conf_loaded_at timestamptz)
	RETURNS record
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_worker_health';
COMMENT ON FUNCTION payments.pay_worker_health() IS
	'Health of the background worker: alive (looped within 5 s), pid, start and last loop time, queue depth, requests in flight (now and at most), circuit breaker state (closed, open, half_open), outcome counters since server start, and the merchants whose gateway account fails (an account error such as E00007: their operations are held, not failed): how many, and the oldest 16 as [{merchant_id, failing_since, error_code, error_text}]; served_database: the database the worker serves (payments.database). In another database no worker serves this one: alive is false, queue_depth counts this database''s queued and unknown operations (never sent), and the worker''s columns are NULL. worker_conf_loaded_at, recorder_conf_loaded_at, billing_conf_loaded_at: the pg_conf_load_time() the worker, the recorder and the billing process each go by (when it last reread the configuration files, or when the server loaded the ones it started with), published at the top of each of its rounds, NULL before its first; once one is at or past a new session''s pg_conf_load_time(), that process goes by the settings the session shows.';

CREATE FUNCTION payments.pay_worker_restart() RETURNS boolean
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_worker_restart';
REVOKE ALL ON FUNCTION payments.pay_worker_restart() FROM PUBLIC;
COMMENT ON FUNCTION payments.pay_worker_restart() IS
	'Asks the background worker to exit; the server starts a new one within a second and it resolves whatever was in flight. Only in the database the worker serves (payments.database): elsewhere nothing is done. Returns whether it asked: false when no worker runs or it serves another database. Owner only.';

-- A media type for PostgREST (12 and later: media type handlers): a
-- function returning this domain is served with Content-Type text/plain
-- when the client accepts text/plain.  In SQL it is text.
CREATE DOMAIN payments."text/plain" AS text;
COMMENT ON DOMAIN payments."text/plain" IS
	'Text served by PostgREST as Content-Type text/plain (a media type handler): the return type of pay_metrics(). In SQL it is text.';

CREATE FUNCTION payments.pay_metrics() RETURNS payments."text/plain"
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pay_metrics';
COMMENT ON FUNCTION payments.pay_metrics() IS
	'Counters, gauges and latency histograms of the worker in Prometheus text format (in a database the worker does not serve: payments_worker_up and payments_database_served 0, and this database''s payments_queue_depth only). Returns the domain "text/plain" over text, so PostgREST serves GET /rpc/pay_metrics with Accept: text/plain as a Prometheus scrape.';
