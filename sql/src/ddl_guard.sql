-- The DDL guard: one event trigger that looks once at what each DDL command
-- made or changed, for the storage ban (card.sql) and the name guard
-- (name_guard.sql).

------------------------------------------------------------------------------
-- After every DDL command (no tag filter), each object it made or changed:
-- - a relation or composite type with a column or attribute that is, or
--   contains, a pay_card is refused (payments._stored_card, 22Y16);
-- - a function, type, operator or relation (its row type) outside schema
--   payments that a session would find instead of the extension's, owned
--   by a role that is not trusted, is refused (payments._shadowed_object,
--   42501);
-- - a function, procedure, aggregate, operator or cast that takes a
--   pay_card (an argument, operand or cast source that is or contains
--   one), of a role that is not trusted, is refused whatever its name
--   (payments._card_taker, 42501); so is a type or relation (its row
--   type) of such a cast given to such a role (a cast has no owner of its
--   own: its types' owners drop it and change the type it makes).
-- The tests run as the role that made the command (the event trigger runs
-- as it), so PUBLIC may execute them (tenancy.sql).  ENABLE ALWAYS:
-- session_replication_role does not switch it off.  REASSIGN OWNED, ALTER
-- ROLE, REVOKE of a role, DROP ROLE and ALTER DATABASE ... OWNER TO fire
-- no event trigger (PostgreSQL: roles are global): src/role_guard.c runs
-- payments._refuse_shadowing_objects after them, in the database where
-- they run.  What one run in another database leaves is named by
-- payments._refuse_shadowing_objects() when the DBA runs it there (README)
-- and refused at the next CREATE EXTENSION or ALTER EXTENSION UPDATE; its
-- owner cannot change it meanwhile (every CREATE OR REPLACE or ALTER of it
-- is refused here).
------------------------------------------------------------------------------

CREATE FUNCTION payments._ddl_guard() RETURNS event_trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	cmd record;
	refused text;
	typ oid;
BEGIN
	FOR cmd IN SELECT d.classid, d.objid, d.object_type, d.object_identity
		FROM pg_event_trigger_ddl_commands() d
	LOOP
		refused := payments._stored_card(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION 'cannot store pay_card values'
				USING ERRCODE = '22Y16',
					DETAIL = refused,
					HINT = 'Pass cards straight to payment functions; store pay_card_fingerprint() or a gateway token instead.';
		END IF;
		refused := payments._shadowed_object(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION '% % would be found instead of %', cmd.object_type, cmd.object_identity, refused
				USING ERRCODE = '42501',
					DETAIL = 'A session that names it, with that schema ahead of payments on its search_path or with arguments of other types, would run it in place of the extension''s, with that session''s privileges and card data. Only superusers, members of the database owner and members of the extension''s owner may make or own objects named like the extension''s.',
					HINT = 'Choose another name.';
		END IF;
		refused := payments._card_taker(cmd.classid, cmd.objid);
		IF refused IS NOT NULL THEN
			RAISE EXCEPTION '% % takes %', cmd.object_type, cmd.object_identity, refused
				USING ERRCODE = '42501',
					DETAIL = 'A session that calls it, or a function, operator or cast of PostgreSQL it matches better (format(), concat(), to_json(), count() take any type), would hand it its card and run it with that session''s privileges. Only superusers, members of the database owner and members of the extension''s owner may make or own functions, procedures, aggregates, operators or casts that take a pay_card.',
					HINT = 'Pass cards only to the extension''s functions, or have the database owner make the function.';
		END IF;
		-- a type, or a relation's row type, given to another owner (ALTER
		-- TYPE or ALTER TABLE ... OWNER TO): a cast has no owner of its
		-- own, the casts from a pay_card to or from it are its owner's
		typ := CASE WHEN cmd.classid = 'pg_catalog.pg_type'::regclass THEN cmd.objid
			WHEN cmd.classid = 'pg_catalog.pg_class'::regclass
				THEN (SELECT c.reltype FROM pg_catalog.pg_class c WHERE c.oid = cmd.objid) END;
		IF typ IS NOT NULL AND typ <> 0 THEN
			SELECT min(pg_catalog.pg_describe_object('pg_catalog.pg_cast'::regclass, k.oid, 0) || ', which takes ' || t.taken)
			INTO refused
			FROM pg_catalog.pg_cast k, LATERAL payments._card_taker('pg_catalog.pg_cast'::regclass, k.oid) t(taken)
			WHERE (k.castsource = typ OR k.casttarget = typ) AND t.taken IS NOT NULL;
			IF refused IS NOT NULL THEN
				RAISE EXCEPTION '% % would give a role that is not trusted the %', cmd.object_type, cmd.object_identity, refused
					USING ERRCODE = '42501',
						DETAIL = 'A cast has no owner of its own: the owners of its types may drop it and change the type it makes (a domain''s CHECK sees every value cast to it). Only superusers, members of the database owner and members of the extension''s owner may own a type of a cast from a pay_card.',
						HINT = 'Drop the cast first, or give the type to a trusted role.';
			END IF;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION payments._ddl_guard() IS
	'Internal: event trigger function run after every DDL command: refuses a relation or composite type that holds a pay_card (payments._stored_card, SQLSTATE 22Y16) and a function, type, operator or relation outside schema payments that would be found instead of the extension''s, made, renamed, moved or given to an owner that is not trusted (payments._shadowed_object, SQLSTATE 42501), and a function, procedure, aggregate, operator or cast of a role that is not trusted that takes a pay_card, whatever its name, or a type or relation given to such a role that is a type of a cast from a pay_card (payments._card_taker, SQLSTATE 42501).';

CREATE EVENT TRIGGER payments_ddl_guard ON ddl_command_end
	EXECUTE FUNCTION payments._ddl_guard();
ALTER EVENT TRIGGER payments_ddl_guard ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER payments_ddl_guard IS
	'Keeps pay_card out of tables, materialized views, foreign tables and composite types (cards are passed to payment functions, never stored), and the names of the extension''s functions, types and operators to the extension: no role that is not trusted makes one that a session would find instead, nor a function, operator or cast that takes a pay_card.';
