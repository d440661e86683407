-- The shared library: it must be preloaded, and it must serve this schema version.

-- The library must be preloaded: refuse early, with a hint, otherwise.
CREATE FUNCTION payments._assert_preloaded() RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_assert_preloaded';
SELECT payments._assert_preloaded();
REVOKE ALL ON FUNCTION payments._assert_preloaded() FROM PUBLIC;
COMMENT ON FUNCTION payments._assert_preloaded() IS
	'Internal: raises an error unless the payments library was loaded through shared_preload_libraries.';

-- The worker serves one database, payments.database: elsewhere, payments
-- are queued and never sent.  CREATE EXTENSION (and ALTER EXTENSION
-- UPDATE) there says so with a WARNING (src/payments.c).
CREATE FUNCTION payments._warn_unserved_database() RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_warn_unserved_database';
SELECT payments._warn_unserved_database();
REVOKE ALL ON FUNCTION payments._warn_unserved_database() FROM PUBLIC;
COMMENT ON FUNCTION payments._warn_unserved_database() IS
	'Internal: raises a WARNING (01Y01) when the background worker does not serve this database (payments.database names another), naming the database it serves.';

-- A wait written in SQL for the worker's answer returns at once, with a
-- NOTICE, in a database the worker does not serve (pay_wait does the same
-- in src/wait.c).
CREATE FUNCTION payments._note_unserved_database() RETURNS boolean
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_note_unserved_database';
REVOKE ALL ON FUNCTION payments._note_unserved_database() FROM PUBLIC;
COMMENT ON FUNCTION payments._note_unserved_database() IS
	'Internal: true, after a NOTICE (01Y01) naming the database the background worker serves, when it does not serve this one (payments.database names another); false, silently, where it does.';

-- Times and intervals that do not follow the session's TimeZone: audit
-- rows and events are written by callers' sessions, the worker's and
-- pg_cron's, each with its own TimeZone, and must store one instant as one
-- text (src/jsonb_value.c); a duration of days or months given to the API
-- (a key's overlap, a test clock's step, audit retention) must not be 23
-- or 25 hours a day by who called (README "Times and time zones").
CREATE FUNCTION payments._json_time(t timestamptz) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_json_time';
REVOKE ALL ON FUNCTION payments._json_time(timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION payments._json_time(timestamptz) IS
	'Internal: a time as audit rows and events store it, ISO 8601 in UTC (2026-12-06T10:00:00+00:00) whatever the session''s TimeZone and DateStyle; for jsonb_build_object() in SQL that writes events, and the audit digest''s sealed_at.';

CREATE FUNCTION payments._utc_plus(t timestamptz, i interval) RETURNS timestamptz
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', t) OPERATOR(pg_catalog.+) i) $$;
REVOKE ALL ON FUNCTION payments._utc_plus(timestamptz, interval) FROM PUBLIC;
COMMENT ON FUNCTION payments._utc_plus(timestamptz, interval) IS
	'Internal: t + i counted in UTC (a day 24 hours, a month a calendar month of UTC), whatever the session''s TimeZone.';
