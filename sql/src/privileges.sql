-- Privileges (run last, after every object exists): nothing is executable
-- by PUBLIC but the types' own functions; the API is granted to roles by
-- payments.pay_grant_api() (pay_bind_role and the other binding calls do
-- it), monitoring to pg_monitor; everything else stays with the owner.

-- Schema access for every role: pay_amount and pay_card are for every
-- table and every query (their operators must be found).  Tables stay
-- owner-only (each is REVOKEd where it is made).
GRANT USAGE ON SCHEMA payments TO PUBLIC;

-- Every function of the schema is REVOKEd from PUBLIC, but the types' own
-- ones (payments._public_function decides).
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace
			AND NOT payments._public_function(p.oid::regprocedure)
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
	-- and the types' own ones are PUBLIC (also where an older version revoked one)
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace
			AND payments._public_function(p.oid::regprocedure)
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
	END LOOP;
END
$$;

-- Monitoring: installation-wide counters, for pg_monitor (and the owner).
GRANT EXECUTE ON FUNCTION payments.pay_worker_health(), payments.pay_metrics() TO pg_monitor;
-- PostgREST runs its pre-request function for the scraper's role too
GRANT EXECUTE ON FUNCTION payments.pay_postgrest_pre_request() TO pg_monitor;

-- Row-level security on every tenant-owned table, made here so that it is
-- part of the extension (tenancy.sql explains).
SELECT count(*) FROM payments._apply_row_security();

-- The API key scope of every API function (api_keys.sql), set last so
-- that no later CREATE OR REPLACE of a function drops it.
SELECT count(*) FROM payments._apply_api_scopes();

-- No role that is not trusted owns a function, type or operator that a
-- session would find instead of the extension's: made before the name
-- guard (name_guard.sql) existed, it is refused here (42501).
SELECT payments._refuse_shadowing_objects();
