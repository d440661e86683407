-- The shared library: it must be preloaded, and it must serve this schema version.

-- The library must be preloaded: refuse early, with a hint, otherwise.
CREATE FUNCTION payments._assert_preloaded() RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pay_assert_preloaded';
SELECT payments._assert_preloaded();
REVOKE ALL ON FUNCTION payments._assert_preloaded() FROM PUBLIC;
COMMENT ON FUNCTION payments._assert_preloaded() IS
	'Internal: raises an error unless the payments library was loaded through shared_preload_libraries.';
