-- Name guard: the extension's names stay the extension's (functions, types
-- and operators a session finds along its search_path).

------------------------------------------------------------------------------
-- Name guard: no role that is not trusted may make a function, type or
-- operator that a session would find instead of the extension's.  A
-- session finds pay_card(), pay_purchase() or the operators of pay_amount
-- along its search_path: with a schema any role can CREATE in ahead of
-- payments (public, on a database made before PostgreSQL 15 or where the
-- DBA granted it), or arguments of other types than ours (varchar, as
-- JDBC sends strings, matches a public.pay_card(varchar, ...) better than
-- payments.pay_card(text, ...) whatever the order), the session ran that
-- role's function instead, with its own privileges and the card number and
-- CVV in clear.  Trusted: superusers, members of the database owner and of
-- the extension's owner.  Temporary schemas are not searched for functions
-- or operators, and only their own session's for types.
--
-- The internal names (beginning with _) are kept too: not every function
-- of the extension pins its search_path (the C functions, whose SPI
-- statements run under the caller's; pinning would cost every call of the
-- types' input, output and operators), so the extension's own safety would
-- rest on no statement of theirs ever naming an internal function without
-- its schema.  Refusing the look-alikes costs a user only those names.
------------------------------------------------------------------------------

-- Trusted: a superuser, a member of the database owner or a member of the
-- extension's owner (the one home of the rule for the name guard and the
-- card guard below).
CREATE FUNCTION payments._trusted_role(r oid) RETURNS boolean
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT EXISTS (SELECT FROM pg_catalog.pg_roles a WHERE a.oid = r AND a.rolsuper)
		OR EXISTS (SELECT FROM pg_catalog.pg_database d
			WHERE d.datname = current_database() AND pg_has_role(r, d.datdba, 'MEMBER'))
		OR EXISTS (SELECT FROM pg_catalog.pg_extension e
			WHERE e.extname = 'payments' AND pg_has_role(r, e.extowner, 'MEMBER'))
	$$;
COMMENT ON FUNCTION payments._trusted_role(oid) IS
	'Internal: whether a role is trusted to own objects named like the extension''s or that take a pay_card: a superuser, a member of the database owner or a member of the extension''s owner.';

CREATE FUNCTION payments._shadowed_object(classid oid, objid oid) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH nsp AS (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = 'payments'),
	-- the extension's types, arrays of them and domains over them
	ours AS (
		SELECT y.oid FROM pg_catalog.pg_type y, nsp
		WHERE y.typnamespace = nsp.oid
			OR EXISTS (SELECT FROM pg_catalog.pg_type e
				WHERE e.oid IN (y.typelem, y.typbasetype) AND e.typnamespace = nsp.oid)
	),
	obj(namespace, owner, shadowed) AS (
		SELECT p.pronamespace, p.proowner,
			(SELECT 'function payments.' || quote_ident(x.proname)
			 FROM pg_catalog.pg_proc x, nsp
			 WHERE x.pronamespace = nsp.oid AND x.proname = p.proname
				-- sum, min, max: only with an argument of one of our types
				AND (NOT EXISTS (SELECT FROM pg_catalog.pg_proc c
						WHERE c.pronamespace = 'pg_catalog'::regnamespace AND c.proname = p.proname)
					OR EXISTS (SELECT FROM unnest(p.proargtypes::oid[] || coalesce(p.proallargtypes, '{}')) a(t)
						WHERE a.t IN (SELECT oid FROM ours)))
			 LIMIT 1)
		FROM pg_catalog.pg_proc p
		WHERE classid = 'pg_catalog.pg_proc'::regclass AND p.oid = objid
		UNION ALL
		SELECT t.typnamespace, t.typowner,
			(SELECT 'type payments.' || quote_ident(x.typname)
			 FROM pg_catalog.pg_type x, nsp
			 WHERE x.typnamespace = nsp.oid AND x.typname = t.typname AND x.typcategory <> 'A'
				AND (x.typrelid = 0 OR EXISTS (SELECT FROM pg_catalog.pg_class r
					WHERE r.oid = x.typrelid AND r.relkind = 'c')))
		FROM pg_catalog.pg_type t
		-- a type, and the types named with it: a range's multirange
		-- (multirange_type_name), a table's, view's or sequence's row type
		WHERE (classid = 'pg_catalog.pg_type'::regclass AND t.oid = objid)
			OR (classid = 'pg_catalog.pg_type'::regclass AND t.oid IN (SELECT g.rngmultitypid
				FROM pg_catalog.pg_range g WHERE g.rngtypid = objid))
			OR (classid = 'pg_catalog.pg_class'::regclass AND t.oid IN (SELECT c.reltype
				FROM pg_catalog.pg_class c WHERE c.oid = objid))
		UNION ALL
		SELECT o.oprnamespace, o.oprowner,
			CASE WHEN o.oprleft IN (SELECT oid FROM ours) OR o.oprright IN (SELECT oid FROM ours)
				THEN 'the operators of ' || format_type(CASE WHEN o.oprleft IN (SELECT oid FROM ours)
					THEN o.oprleft ELSE o.oprright END, NULL) END
		FROM pg_catalog.pg_operator o
		WHERE classid = 'pg_catalog.pg_operator'::regclass AND o.oid = objid
	)
	SELECT min(obj.shadowed)
	FROM obj, nsp, pg_catalog.pg_namespace s
	WHERE obj.shadowed IS NOT NULL AND obj.namespace <> nsp.oid
		-- starts_with, not LIKE 'pg\_temp\_%': a function body is parsed
		-- under the session's standard_conforming_strings, and with it off
		-- '\_' read as '_', a wildcard: a schema such as pgxtempx passed
		-- for a temporary one and its functions went unchecked
		AND s.oid = obj.namespace AND NOT starts_with(s.nspname, 'pg_temp_')
		AND NOT payments._trusted_role(obj.owner)
	$$;
COMMENT ON FUNCTION payments._shadowed_object(oid, oid) IS
	'Internal: the extension''s function, type or operators that a function, type or operator (classid, objid: pg_proc, pg_type or pg_operator; a range with its multirange; pg_class: a relation''s row type) outside schema payments would be found instead of, when its owner is not trusted (a superuser, a member of the database owner or of the extension''s owner); else NULL.';

------------------------------------------------------------------------------
-- Card guard: no role that is not trusted may make a function, procedure,
-- aggregate, operator or cast that takes a pay_card, whatever its name.
-- PostgreSQL's format(text, VARIADIC "any"), concat("any"), to_json
-- (anyelement), count("any") take any type: a public.format(text, pay_card)
-- matches a card exactly, better, and a session that wrote format('%s',
-- card) ran that role's function instead, with its own privileges and its
-- card in hand (it prints masked, but the function could pay with it as
-- the session).  Taking: an input argument, an operand or a cast's source
-- that is, or contains (array, domain, composite), a pay_card
-- (payments._type_contains_card).  The extension's own functions are its
-- owner's, trusted; temporary functions are only found by their own
-- session, and only when it names pg_temp.
------------------------------------------------------------------------------

-- The generic types a pay_card (or an array of them) is passed as.
CREATE FUNCTION payments._card_generic_types() RETURNS oid[]
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT ARRAY['anyelement', 'anynonarray', 'anyarray', 'anycompatible', 'anycompatiblenonarray',
		'anycompatiblearray']::pg_catalog.regtype[]::oid[]
	$$;
COMMENT ON FUNCTION payments._card_generic_types() IS
	'Internal: the generic argument types a pay_card or an array of them is passed as (anyelement, anynonarray, anyarray and their anycompatible forms); the card guard refuses them in functions named like PostgreSQL''s of a role that is not trusted.';

CREATE FUNCTION payments._card_taker(classid oid, objid oid) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
	AS $$
	WITH obj(taken, untrusted) AS (
		SELECT coalesce((SELECT a.t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n)
					WHERE payments._type_contains_card(a.t) ORDER BY a.n LIMIT 1),
				-- a generic argument under the name of one of PostgreSQL's
				-- functions: concat('card ', card) took a public.concat(text,
				-- anynonarray) as readily as one of pay_card
				(SELECT a.t FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n)
				 WHERE a.t = ANY (payments._card_generic_types())
					AND EXISTS (SELECT FROM pg_catalog.pg_proc b
						WHERE b.pronamespace = 'pg_catalog'::regnamespace AND b.proname = p.proname)
				 ORDER BY a.n LIMIT 1)),
			NOT payments._trusted_role(p.proowner)
				AND NOT starts_with(p.pronamespace::regnamespace::text, 'pg_temp_')
		FROM pg_catalog.pg_proc p
		WHERE classid = 'pg_catalog.pg_proc'::regclass AND p.oid = objid
		UNION ALL
		SELECT CASE WHEN payments._type_contains_card(o.oprleft) THEN o.oprleft
				WHEN payments._type_contains_card(o.oprright) THEN o.oprright END,
			NOT payments._trusted_role(o.oprowner)
		FROM pg_catalog.pg_operator o
		WHERE classid = 'pg_catalog.pg_operator'::regclass AND o.oid = objid
		UNION ALL
		-- a cast has no owner: whoever made it owns its source or its target
		-- type; its function is checked as a function, and here too
		SELECT CASE WHEN payments._type_contains_card(c.castsource) THEN c.castsource END,
			EXISTS (SELECT FROM pg_catalog.pg_type y
					WHERE y.oid IN (c.castsource, c.casttarget) AND NOT payments._trusted_role(y.typowner))
				OR EXISTS (SELECT FROM pg_catalog.pg_proc f
					WHERE f.oid = c.castfunc AND NOT payments._trusted_role(f.proowner))
		FROM pg_catalog.pg_cast c
		WHERE classid = 'pg_catalog.pg_cast'::regclass AND c.oid = objid
	)
	SELECT format_type(obj.taken, NULL) || CASE WHEN obj.taken = 'payments.pay_card'::pg_catalog.regtype THEN ''
			WHEN obj.taken = ANY (payments._card_generic_types())
				THEN ', which a pay_card matches, under the name of a function of PostgreSQL'
			ELSE ', which holds a pay_card' END
	FROM obj
	WHERE obj.taken IS NOT NULL AND obj.untrusted
	$$;
COMMENT ON FUNCTION payments._card_taker(oid, oid) IS
	'Internal: the card guard''s test of one object a DDL command made or changed (classid, objid: a function, procedure or aggregate, an operator or a cast): the type of its first argument, operand or cast source that is, or contains, a pay_card, when the object is of a role that is not trusted (payments._trusted_role) and not temporary; else NULL. The DDL guard (payments._ddl_guard) refuses it (SQLSTATE 42501).';

CREATE FUNCTION payments._refuse_shadowing_objects() RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	found text;
BEGIN
	-- the candidates by name, operand or argument type, then the whole
	-- tests on them
	WITH cards(oid) AS (
		SELECT a.t FROM (SELECT unnest(p.proargtypes::oid[]) FROM pg_proc p
				UNION SELECT o.oprleft FROM pg_operator o UNION SELECT o.oprright FROM pg_operator o
				UNION SELECT c.castsource FROM pg_cast c) a(t)
		WHERE a.t <> 0 AND payments._type_contains_card(a.t)
	)
	SELECT string_agg(c.what, '; ' ORDER BY c.classid, c.objid, c.what)
	INTO found
	FROM (SELECT c.classid, c.objid, format('%s (owner %s) would be found instead of %s',
				pg_describe_object(c.classid, c.objid, 0), pg_get_userbyid(c.owner), s.shadowed)
		FROM (SELECT 'pg_catalog.pg_proc'::regclass::oid, p.oid, p.proowner FROM pg_proc p
				WHERE p.proname IN (SELECT x.proname FROM pg_proc x WHERE x.pronamespace = 'payments'::regnamespace)
			UNION ALL
			SELECT 'pg_catalog.pg_type'::regclass::oid, t.oid, t.typowner FROM pg_type t
				WHERE t.typname IN (SELECT x.typname FROM pg_type x WHERE x.typnamespace = 'payments'::regnamespace)
			UNION ALL
			SELECT 'pg_catalog.pg_operator'::regclass::oid, o.oid, o.oprowner FROM pg_operator o
				WHERE o.oprnamespace <> 'payments'::regnamespace AND EXISTS (SELECT FROM pg_type y
					WHERE y.oid IN (o.oprleft, o.oprright) AND y.typnamespace = 'payments'::regnamespace)
			) c(classid, objid, owner),
			LATERAL payments._shadowed_object(c.classid, c.objid) s(shadowed)
		WHERE s.shadowed IS NOT NULL
		UNION ALL
		SELECT c.classid, c.objid, format('%s%s takes %s', pg_describe_object(c.classid, c.objid, 0),
				' (owner ' || pg_get_userbyid(c.owner) || ')', t.taken)
		FROM (SELECT 'pg_catalog.pg_proc'::regclass::oid, p.oid, p.proowner FROM pg_proc p
				WHERE p.proargtypes::oid[] && (ARRAY(SELECT oid FROM cards) || payments._card_generic_types())
			UNION ALL
			SELECT 'pg_catalog.pg_operator'::regclass::oid, o.oid, o.oprowner FROM pg_operator o
				WHERE o.oprleft IN (SELECT oid FROM cards) OR o.oprright IN (SELECT oid FROM cards)
			UNION ALL
			SELECT 'pg_catalog.pg_cast'::regclass::oid, k.oid, NULL FROM pg_cast k
				WHERE k.castsource IN (SELECT oid FROM cards)
			) c(classid, objid, owner),
			LATERAL payments._card_taker(c.classid, c.objid) t(taken)
		WHERE t.taken IS NOT NULL
		) c(classid, objid, what);
	IF found IS NOT NULL THEN
		RAISE EXCEPTION 'objects named like the payments extension''s, or that take a pay_card, belong to roles that are not trusted'
			USING ERRCODE = '42501',
				DETAIL = format('%s. A session that names them, or calls a function of PostgreSQL that one of them matches better, would run them in place of the extension''s or PostgreSQL''s, with its privileges and card data.', found),
				HINT = 'Drop or rename them, or have a superuser or the database owner own them, and try again.';
	END IF;
END
$$;
COMMENT ON FUNCTION payments._refuse_shadowing_objects() IS
	'Internal: refuses (SQLSTATE 42501) when a role that is not trusted owns a function, type or operator that would be found instead of the extension''s (payments._shadowed_object), or a function, procedure, aggregate, operator or cast that takes a pay_card (payments._card_taker), made before the DDL guard could refuse it, or left to it by a statement on roles, which fires no event trigger; run at the end of CREATE EXTENSION and ALTER EXTENSION UPDATE, and after REASSIGN OWNED, ALTER ROLE ... NOSUPERUSER, REVOKE of a role, DROP ROLE and ALTER DATABASE ... OWNER TO (src/role_guard.c).';
