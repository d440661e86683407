-- Privileges: what PUBLIC may use (run last, after every object exists).

-- Schema access for every role; tables stay owner-only (each is REVOKEd
-- above), internal functions are not for callers.
GRANT USAGE ON SCHEMA payments TO PUBLIC;
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
		WHERE p.pronamespace = 'payments'::regnamespace AND p.proname LIKE '\_%'
			AND p.prokind = 'f'
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
END
$$;


-- Internal functions are not for callers (the DO block above ran before
-- this section).
REVOKE ALL ON FUNCTION payments._audit_trigger(), payments._audit_guard(),
	payments._audit_row_hash(bigint, bigint, text, text, text, jsonb, jsonb, text[], text, text, text, text, xid8, timestamptz),
	payments._audit_record(bigint, text, regclass, jsonb), payments._audit_retention(boolean),
	payments._audit_seal_horizon(integer),
	payments._audit_batch_hash(bigint, bigint, bigint, bigint, bigint, bytea, bytea),
	payments.pay_audit_attach(regclass, text[]), payments.pay_audit_detach(regclass)
	FROM PUBLIC;
