#!/usr/bin/env bash
# Names against a hostile role (every role that can connect is hostile).
# - A role that may CREATE in schema public (a database made before
#   PostgreSQL 15 keeps that grant; DBAs give it) makes functions, types and
#   operators named like the extension's.  An application that calls
#   pay_card() with public ahead of payments on its search_path (as on
#   README's), or with varchar arguments (as JDBC sends strings) whatever
#   the order, ran that role's function instead: with the
#   application's privileges, the card number and CVV in clear in its
#   hands (before: nr_loot held them).  Now every such object of a role
#   that is not trusted is refused (42501), when made, renamed or given
#   to it, and CREATE EXTENSION / ALTER EXTENSION UPDATE refuse the ones
#   made before.  Objects of other names, temporary functions and a
#   superuser's wrappers are left alone.
# - Every SECURITY DEFINER function, and every trigger function in SQL or
#   PL/pgSQL, runs under a pinned search_path with pg_temp last and no
#   schema a role could CREATE in.
# - The worker, the recorder and the billing process run their statements
#   under search_path pg_catalog, pg_temp, whatever the database sets.
# - In a SQL_ASCII database a card holder name is checked like any other
#   text the gateway gets: not UTF-8, or U+FFFE / U+FFFF, is refused at
#   the call (22Y15), not failed by the worker after the commit.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"

su() { cluster_psql "$WORK" "$PORT" "${DB:-payments}" -At -v ON_ERROR_STOP=1 "$@"; }
# as ROLE [psql args]: a session logged in as ROLE, README's search_path
as() {
	local role=$1; shift
	as_pg "$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h "$WORK/sock" -p "$PORT" \
		-U "$role" -d "${DB:-payments}" -c 'SET search_path = "$user", public, payments' "$@"
}
# sqlstate ROLE [psql args]: the SQLSTATE of the first error (empty if none)
sqlstate() {
	as "$@" 2>&1 | sed -n 's/^\(psql:[^ ]* \)\{0,1\}ERROR:  \([0-9A-Z]\{5\}\):.*/\2/p' | sed -n 1p
}
sustate() {
	su -v VERBOSITY=verbose "$@" 2>&1 | sed -n 's/^\(psql:[^ ]* \)\{0,1\}ERROR:  \([0-9A-Z]\{5\}\):.*/\2/p' | sed -n 1p
}
cleanup() {
	su -c "DROP FUNCTION IF EXISTS public.nr_helper(payments.pay_card), public.nr_count_card(bigint, payments.pay_card),
		public.nr_cat_card(text, payments.pay_card), public.pay_void(bigint) CASCADE" \
		-c "DROP OWNED BY nr_dbo" -c "DROP ROLE nr_dbo" >/dev/null 2>&1 || true
	DB=postgres su -c "DROP DATABASE IF EXISTS nr_scratch" -c "DROP DATABASE IF EXISTS nr_ascii" -c "DROP DATABASE IF EXISTS nr_owned" >/dev/null 2>&1 || true
	DB=postgres su -c "DROP ROLE IF EXISTS nr_o1m, nr_owner1, nr_owner2" >/dev/null 2>&1 || true
	su -c "DROP TYPE IF EXISTS public.nr_ct, public.nr_ct2 CASCADE" -c "DROP TABLE IF EXISTS public.nr_ctab CASCADE" \
		-c "DO \$\$ DECLARE r name; BEGIN FOR r IN SELECT rolname FROM pg_roles
			WHERE rolname IN ('nr_su', 'nr_leaf', 'nr_plain', 'nr_trusted', 'nr_typer') LOOP EXECUTE format('DROP OWNED BY %I', r); END LOOP; END \$\$" \
		-c "DROP ROLE IF EXISTS nr_su, nr_leaf, nr_mid, nr_plain, nr_trusted, nr_typer, nr_cr" >/dev/null 2>&1 || true
	su -c "ALTER DATABASE payments RESET search_path" -c "DROP SCHEMA IF EXISTS nr_given, nr_public CASCADE" \
		-c "DROP FUNCTION IF EXISTS public.pay_void(bigint)" -c "DROP OWNED BY nr_evil, nr_app" \
		-c "DROP ROLE IF EXISTS nr_evil, nr_app, nr_trusted" -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC" >/dev/null 2>&1 || true
}
trap cleanup EXIT
year=$(($(date +%Y) + 3))

M=$(su -c "INSERT INTO payments.merchants (name) VALUES ('name resolution') RETURNING merchant_id")
su -c "DROP OWNED BY nr_evil, nr_app" -c "DROP ROLE IF EXISTS nr_evil, nr_app" >/dev/null 2>&1 || true
su -c "CREATE ROLE nr_evil LOGIN" -c "CREATE ROLE nr_app LOGIN" \
	-c "SELECT payments.pay_bind_role('nr_app', merchant_id => $M)" \
	-c "GRANT CREATE ON SCHEMA public TO PUBLIC" >/dev/null

###########################################################################
# 1. The hostile role's stand-ins for the extension's names: each refused.
as nr_evil -c "CREATE TABLE public.nr_loot (v text)" -c "GRANT INSERT ON public.nr_loot TO PUBLIC"
steal='BEGIN INSERT INTO public.nr_loot VALUES (number || '"' '"' || cvv); RETURN payments.pay_card(number, exp_month, exp_year, cvv); END'
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.pay_card(number text, exp_month integer, exp_year integer, cvv text)
	RETURNS payments.pay_card LANGUAGE plpgsql AS \$\$ $steal \$\$")" 42501 \
	"a pay_card(text, ...) in public, found first on README's search_path, is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.pay_card(number varchar, exp_month integer, exp_year integer, cvv varchar)
	RETURNS payments.pay_card LANGUAGE plpgsql AS \$\$ $steal \$\$")" 42501 \
	"a pay_card(varchar, ...), a better match for varchar arguments whatever the order, is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.pay_purchase(amount payments.pay_amount, card payments.pay_card)
	RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'")" 42501 "a pay_purchase stand-in is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.nr_eq(a payments.pay_amount, b payments.pay_amount) RETURNS boolean
	LANGUAGE sql AS 'SELECT true'" -c "CREATE OPERATOR public.= (leftarg = payments.pay_amount, rightarg = payments.pay_amount, function = public.nr_eq)")" \
	42501 "an = operator on pay_amount is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.sum(payments.pay_amount) RETURNS integer LANGUAGE sql AS 'SELECT 1'")" \
	42501 "a sum(pay_amount) aggregate stand-in is refused"
is "$(sqlstate nr_evil -c "CREATE DOMAIN public.pay_card AS text")" 42501 \
	"a domain named pay_card (its CHECK would see the card as text) is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.nr_later(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1'" \
	-c "ALTER FUNCTION public.nr_later(bigint) RENAME TO pay_capture")" 42501 "renaming a function to pay_capture is refused"
su -c "CREATE FUNCTION public.pay_void(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1'" >/dev/null
is "$(sustate -c "ALTER FUNCTION public.pay_void(bigint) OWNER TO nr_evil")" 42501 \
	"giving a superuser's pay_void stand-in to the hostile role is refused"
su -c "DROP FUNCTION public.pay_void(bigint)" >/dev/null
is "$(su -c "SELECT count(*) FROM pg_proc WHERE proowner = 'nr_evil'::regrole AND proname IN ('pay_card', 'pay_purchase', 'sum', 'pay_capture', 'pay_void')
	UNION ALL SELECT count(*) FROM pg_operator WHERE oprowner = 'nr_evil'::regrole
	UNION ALL SELECT count(*) FROM pg_type WHERE typowner = 'nr_evil'::regrole AND typname = 'pay_card'" | tr '\n' ' ')" "0 0 0 " \
	"none of them exists"

# the application, on README's search_path and with varchar arguments
card=$(as nr_app -c "SELECT pay_card('4111 1111 1111 1111', 12, $year, '123')::text" \
	-c "PREPARE c(varchar, integer, integer, varchar) AS SELECT pay_card(\$1, \$2, \$3, \$4)::text" \
	-c "EXECUTE c('4111 1111 1111 1111', 12, $year, '123')" | tr '\n' ' ')
is "$card" "visa ****1111 12/$year visa ****1111 12/$year " "the application's pay_card calls reach the extension's"
is "$(su -c "SELECT count(*) FROM public.nr_loot")" 0 "no card number reached the hostile role's table"

# the internal names too: not every function of the extension pins its
# search_path (its C functions run SPI under the caller's)
is "$(sqlstate nr_evil -c "CREATE FUNCTION public._claim_operations(integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'")" 42501 \
	"a look-alike of an internal function (_claim_operations) is refused"
# what is not the extension's is left alone
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.sum(integer, integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'" \
	-c "CREATE FUNCTION pg_temp.pay_card(text) RETURNS integer LANGUAGE sql AS 'SELECT 1'" \
	-c "CREATE FUNCTION public.nr_pay_card_wrapper(text) RETURNS integer LANGUAGE sql AS 'SELECT 1'")" "" \
	"the hostile role still makes functions of other names or argument types, and temporary ones"
is "$(sustate -c "CREATE FUNCTION public.pay_card(text) RETURNS integer LANGUAGE sql AS 'SELECT 1'" \
	-c "DROP FUNCTION public.pay_card(text)")" "" "a superuser (trusted) still makes a same-named function"

###########################################################################
# 1b. Other ways to a name: a type made with a relation or a range, a
#     schema made for the hostile role, REASSIGN OWNED, aggregates,
#     procedures, casts.
# A table, view or sequence makes a row type of its name; before, the
# guard looked only at the relation (pg_class) and let public.pay_card be.
is "$(sqlstate nr_evil -c "CREATE TABLE public.pay_card (number text)")" 42501 \
	"a table named pay_card (its row type would be found instead of the extension's) is refused"
is "$(sqlstate nr_evil -c "CREATE VIEW public.pay_amount AS SELECT 1 AS minor_units")" 42501 \
	"a view named pay_amount is refused"
is "$(sqlstate nr_evil -c "CREATE TABLE public.nr_tab (number text)" -c "ALTER TABLE public.nr_tab RENAME TO pay_card")" 42501 \
	"renaming a table to pay_card is refused"
is "$(sqlstate nr_evil -c "CREATE TYPE public.nr_range AS RANGE (subtype = integer, multirange_type_name = pay_amount)")" 42501 \
	"a range whose multirange is named pay_amount is refused"
is "$(sustate -c "CREATE SCHEMA nr_schema AUTHORIZATION nr_evil CREATE TABLE pay_card (number text)")" 42501 \
	"CREATE SCHEMA ... AUTHORIZATION the hostile role with a table pay_card in it is refused"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.nr_max(bigint, payments.pay_amount) RETURNS bigint LANGUAGE sql AS 'SELECT \$1'" \
	-c "CREATE AGGREGATE public.max(payments.pay_amount) (sfunc = public.nr_max, stype = bigint)")" 42501 \
	"a max(pay_amount) aggregate is refused"
is "$(sqlstate nr_evil -c "CREATE PROCEDURE public.pay_capture(bigint) LANGUAGE sql AS 'SELECT 1'")" 42501 \
	"a procedure named pay_capture is refused"
# REASSIGN OWNED fires no event trigger (roles are global): it gave the
# hostile role a superuser's pay_void stand-in (before: it owned it; now
# the statement is refused, section 1d)
su -c "CREATE ROLE nr_trusted SUPERUSER LOGIN" -c "SET ROLE nr_trusted" \
	-c "CREATE FUNCTION public.pay_void(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1'" -c "RESET ROLE" >/dev/null
is "$(sustate -c "REASSIGN OWNED BY nr_trusted TO nr_evil")" 42501 \
	"REASSIGN OWNED that would give the hostile role a superuser's pay_void stand-in is refused"
# a role stripped of superuser in ANOTHER database (roles are global; the
# check sees only the database it runs in) keeps what it made: it cannot
# change it, and the check README tells the DBA to run names it
DB=postgres su -c "ALTER ROLE nr_trusted NOSUPERUSER" >/dev/null
is "$(as nr_trusted -c "CREATE OR REPLACE FUNCTION public.pay_void(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 2'" 2>&1 |
	grep -c 'ERROR:  42501: function public.pay_void(bigint) would be found instead of function payments.pay_void')" 1 \
	"a role no longer trusted (made so from another database) cannot replace the pay_void stand-in it made"
is "$(sqlstate nr_trusted -c "ALTER FUNCTION public.pay_void(bigint) SECURITY DEFINER")" 42501 "nor alter it"
is "$(su -c "SELECT prosrc FROM pg_proc WHERE oid = 'public.pay_void(bigint)'::regprocedure")" "SELECT 1" "it is as the superuser made it"
is "$(su -c "SELECT payments._refuse_shadowing_objects()" 2>&1 | grep -c 'function public.pay_void(bigint) (owner nr_trusted) would be found instead of function payments.pay_void')" 1 \
	"payments._refuse_shadowing_objects(), which README has the DBA run in the other databases, names it"
su -c "DROP FUNCTION public.pay_void(bigint)" >/dev/null
# a schema given to the hostile role: what is in it stays its owner's
su -c "CREATE SCHEMA nr_given" -c "CREATE FUNCTION nr_given.pay_refund(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 1'" \
	-c "ALTER SCHEMA nr_given OWNER TO nr_evil" >/dev/null
is "$(sqlstate nr_evil -c "CREATE OR REPLACE FUNCTION nr_given.pay_refund(bigint) RETURNS integer LANGUAGE sql AS 'SELECT 2'")" 42501 \
	"the hostile role given the schema of a superuser's pay_refund stand-in cannot replace it (it does not own it)"
is "$(sustate -c "ALTER SCHEMA nr_given RENAME TO pg_temp_nr")" 42939 \
	"no schema is renamed to look temporary (names beginning pg_ are reserved), the guard's one exemption"
is "$(sustate -c "ALTER SCHEMA nr_given RENAME TO nr_public")" "" "renaming a schema otherwise is left alone"
su -c "DROP SCHEMA nr_public CASCADE" -c "DROP ROLE nr_trusted" >/dev/null
# implicit casts to its own type from the ones the application sends
as nr_evil -c "CREATE TYPE public.nr_t AS (v text)" \
	-c "CREATE FUNCTION public.nr_cast(text) RETURNS public.nr_t LANGUAGE plpgsql AS \$\$
		BEGIN INSERT INTO public.nr_loot VALUES (\$1); RETURN ROW(\$1); END \$\$" \
	-c "CREATE CAST (text AS public.nr_t) WITH FUNCTION public.nr_cast(text) AS IMPLICIT" \
	-c "CREATE CAST (varchar AS public.nr_t) WITH INOUT AS IMPLICIT"
is "$(sqlstate nr_evil -c "CREATE FUNCTION public.pay_card(public.nr_t, integer, integer, public.nr_t)
	RETURNS text LANGUAGE sql AS 'SELECT 1::text'")" 42501 "a pay_card of its own type, which those casts would reach, is refused"
card=$(as nr_app -c "SELECT pay_card('4111 1111 1111 1111', 12, $year, '123')::text" \
	-c "SELECT pay_card('4111 1111 1111 1111'::varchar, 12, $year, '123'::varchar)::text" | tr '\n' ' ')
is "$card" "visa ****1111 12/$year visa ****1111 12/$year " "with those casts the application's pay_card calls still reach the extension's"
is "$(su -c "SELECT count(*) FROM public.nr_loot")" 0 "and no card number reached the hostile role's table"

###########################################################################
# 1c. Functions of OTHER names that take a card.  Not one of the
#     extension's names, but an application that writes format('%s',
#     card), to_json(card), concat(...), count(card) or card || ... with
#     its card ran the hostile role's function instead of PostgreSQL's
#     (pay_card matches exactly, better than "any" or anyelement), with
#     the application's privileges and its card in hand (before: the card's
#     text reached nr_loot, and the function could pay with the card as the
#     application).  Now every function, procedure, aggregate, operator or
#     cast that takes a pay_card (or an array, domain or composite holding
#     one), of a role that is not trusted, is refused (42501), when made,
#     renamed, moved or given to it, whatever its name.
# What the card itself prints: masked, never the number nor the CVV.
is "$(as nr_app -c "SELECT pay_card('4111 1111 1111 1111', 12, $year, '123')::text ~ '^visa \*{4}1111 12/[0-9]{4}\$'
	AND pay_card('4111 1111 1111 1111', 12, $year, '123')::text !~ '4111111111111111|123'")" t \
	"pay_card's output is masked (brand, last four, expiry): not the number, not the CVV"
loot="BEGIN INSERT INTO public.nr_loot VALUES (current_user || ' ' || \$2::text); RETURN 'x'; END"
taker() {	# taker WHAT DDL [psql args]: the SQLSTATE of the hostile role's DDL
	shift; sqlstate nr_evil -c "$@"
}
is "$(taker format "CREATE FUNCTION public.format(text, payments.pay_card) RETURNS text LANGUAGE plpgsql AS \$\$ $loot \$\$")" 42501 \
	"a format(text, pay_card) of the hostile role is refused"
is "$(taker concat "CREATE FUNCTION public.concat(text, payments.pay_card) RETURNS text LANGUAGE plpgsql AS \$\$ $loot \$\$")" 42501 \
	"a concat(text, pay_card) is refused"
is "$(taker textcat "CREATE FUNCTION public.textcat(text, payments.pay_card) RETURNS text LANGUAGE plpgsql AS \$\$ $loot \$\$")" 42501 \
	"a textcat(text, pay_card) is refused"
is "$(taker to_json "CREATE FUNCTION public.to_json(payments.pay_card) RETURNS json LANGUAGE plpgsql AS \$\$
	BEGIN INSERT INTO public.nr_loot VALUES (current_user || ' ' || \$1::text); RETURN '{}'; END \$\$")" 42501 \
	"a to_json(pay_card) is refused"
is "$(taker array "CREATE FUNCTION public.to_jsonb(payments.pay_card[]) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb'")" 42501 \
	"a function taking an array of pay_card is refused"
is "$(taker domain "CREATE DOMAIN public.nr_card AS payments.pay_card" \
	-c "CREATE FUNCTION public.nr_d(public.nr_card) RETURNS text LANGUAGE sql AS 'SELECT 1::text'")" 42501 \
	"a function taking a domain over pay_card is refused"
is "$(taker proc "CREATE PROCEDURE public.nr_proc(card payments.pay_card) LANGUAGE sql AS 'SELECT 1'")" 42501 \
	"a procedure taking a pay_card is refused"
# a superuser's functions that take a card (trusted: made), in the hostile
# role's operator and aggregate
su -c "CREATE FUNCTION public.nr_count_card(bigint, payments.pay_card) RETURNS bigint LANGUAGE sql AS 'SELECT \$1 + 1'" \
	-c "CREATE FUNCTION public.nr_cat_card(text, payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1'" >/dev/null
is "$(taker op "CREATE OPERATOR public.|| (leftarg = text, rightarg = payments.pay_card, function = public.nr_cat_card)")" 42501 \
	"an operator || on (text, pay_card) is refused, even with a superuser's function"
is "$(taker agg "CREATE AGGREGATE public.count(payments.pay_card) (sfunc = public.nr_count_card, stype = bigint, initcond = '0')")" 42501 \
	"an aggregate count(pay_card) is refused, even with a superuser's state function"
is "$(taker cast "CREATE TYPE public.nr_c AS (v text)" \
	-c "CREATE FUNCTION public.nr_card_cast(payments.pay_card) RETURNS public.nr_c LANGUAGE sql AS 'SELECT ROW(\$1::text)::public.nr_c'")" 42501 \
	"a cast function from pay_card is refused"
is "$(taker cast "CREATE CAST (payments.pay_card AS public.nr_c) WITH INOUT AS IMPLICIT")" 42501 \
	"an implicit cast from pay_card to the hostile role's type is refused"
# a generic argument under the name of one of PostgreSQL's functions:
# concat('card ', card) took a public.concat(text, anynonarray) (before:
# the card's text reached nr_loot)
is "$(taker generic "CREATE FUNCTION public.concat(text, anynonarray) RETURNS text LANGUAGE plpgsql AS \$\$ $loot \$\$")" 42501 \
	"a concat(text, anynonarray) of the hostile role is refused (PostgreSQL has a concat)"
is "$(taker generic "CREATE FUNCTION public.jsonb_build_object(text, anycompatible) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb'")" 42501 \
	"a jsonb_build_object(text, anycompatible) is refused"
is "$(taker generic "CREATE FUNCTION public.nr_generic(text, anyelement) RETURNS text LANGUAGE sql AS 'SELECT \$1'" \
	-c "DROP FUNCTION public.nr_generic(text, anyelement)")" "" \
	"a generic function of a name PostgreSQL has not is made"
is "$(taker rename "CREATE FUNCTION public.nr_text(text) RETURNS text LANGUAGE sql AS 'SELECT \$1'" \
	-c "DROP FUNCTION public.nr_text(text)")" "" "the hostile role still makes functions that take no card"
su -c "CREATE FUNCTION public.nr_helper(payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'" >/dev/null
is "$(sustate -c "ALTER FUNCTION public.nr_helper(payments.pay_card) OWNER TO nr_evil")" 42501 \
	"giving a superuser's function that takes a pay_card to the hostile role is refused"
# trusted roles keep their helpers: a superuser's (above) and the database owner's
dbo=$(su -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
su -c "CREATE ROLE nr_dbo LOGIN IN ROLE \"$dbo\"" >/dev/null
is "$(sqlstate nr_dbo -c "CREATE FUNCTION public.nr_dbo_helper(card payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'" \
	-c "CREATE TYPE public.nr_dbo_t AS (v text)" \
	-c "CREATE FUNCTION public.nr_dbo_cast(payments.pay_card) RETURNS public.nr_dbo_t LANGUAGE sql AS 'SELECT ROW(\$1::text)::public.nr_dbo_t'" \
	-c "CREATE CAST (payments.pay_card AS public.nr_dbo_t) WITH FUNCTION public.nr_dbo_cast(payments.pay_card)" \
	-c "DROP TYPE public.nr_dbo_t CASCADE" -c "DROP FUNCTION public.nr_dbo_helper(payments.pay_card)")" "" \
	"a member of the database owner still makes a function and a cast that take a pay_card"
# the application, on README's search_path: PostgreSQL's functions run
as nr_app -c "SELECT format('%s', c), concat('card ', c), to_json(c), to_jsonb(ARRAY[c]), 'card ' || c,
		jsonb_build_object('card', c)
	FROM pay_card('4111 1111 1111 1111', 12, $year, '123') c" \
	-c "SELECT count(c) FROM pay_card('4111 1111 1111 1111', 12, $year, '123') c" >/dev/null
is "$(su -c "SELECT count(*) FROM public.nr_loot")" 0 "no function of the hostile role got the application's card"
su -c "DROP FUNCTION public.nr_helper(payments.pay_card), public.nr_count_card(bigint, payments.pay_card),
	public.nr_cat_card(text, payments.pay_card)" >/dev/null

###########################################################################
# 1d. Commands that fire no event trigger (roles are global objects):
#     REASSIGN OWNED, ALTER ROLE ... NOSUPERUSER, REVOKE a role (or ALTER
#     GROUP ... DROP USER), DROP ROLE, ALTER DATABASE ... OWNER TO.  Each
#     left a role that is not trusted owning what the guard refuses it to
#     make: given it, or made while it was trusted (before: each went
#     through, and the objects stayed until the next ALTER EXTENSION
#     UPDATE; meanwhile their owner may GRANT, REVOKE or DROP them, and a
#     SECURITY DEFINER one runs as it).  Now such a statement is refused
#     (42501, naming the objects) and rolls back, in the database where it
#     runs.  So is ALTER TYPE / ALTER TABLE ... OWNER TO of a cast's type:
#     the event trigger saw the type, not the cast from pay_card it takes.
su -c "CREATE ROLE nr_su SUPERUSER LOGIN" -c "SET ROLE nr_su" \
	-c "CREATE FUNCTION public.pay_void(bigint) RETURNS integer LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'" \
	-c "CREATE FUNCTION public.nr_su_helper(card payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'" \
	-c "RESET ROLE" >/dev/null
out=$(su -v VERBOSITY=verbose -c "REASSIGN OWNED BY nr_su TO nr_evil" 2>&1 || true)
is "$(grep -c '^ERROR:  42501: ' <<<"$out")" 1 \
	"REASSIGN OWNED giving the hostile role a superuser's pay_void stand-in and card helper is refused"
is "$(grep -c 'function public.pay_void(bigint) (owner nr_evil) would be found instead of function payments.pay_void' <<<"$out") $(
	grep -c 'function public.nr_su_helper(payments.pay_card) (owner nr_evil) takes payments.pay_card' <<<"$out")" "1 1" \
	"naming both"
owners() { su -c "SELECT string_agg(p.proname || ':' || pg_get_userbyid(p.proowner), ' ' ORDER BY p.proname) FROM pg_proc p
	WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ($1)"; }
is "$(owners "'pay_void', 'nr_su_helper'")" "nr_su_helper:nr_su pay_void:nr_su" "and both stay the superuser's"
is "$(sustate -c "ALTER ROLE nr_su NOSUPERUSER")" 42501 \
	"ALTER ROLE ... NOSUPERUSER of the role that made them is refused"
is "$(su -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'nr_su'")" t "and it stays a superuser"
# made by a member of the database owner (and of the extension's owner)
as nr_dbo -c "CREATE FUNCTION public.nr_dbo_keep(card payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'"
is "$(sustate -c "REVOKE \"$dbo\" FROM nr_dbo")" 42501 "REVOKE of the database owner from the role that made a card helper is refused"
is "$(su -c "SELECT pg_has_role('nr_dbo', '$dbo', 'MEMBER')")" t "and it stays a member"
# trusted through a role in between
su -c "CREATE ROLE nr_mid IN ROLE \"$dbo\"" -c "CREATE ROLE nr_leaf LOGIN IN ROLE nr_mid" >/dev/null
as nr_leaf -c "CREATE FUNCTION public.nr_leaf_keep(card payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'"
is "$(sustate -c "DROP ROLE nr_mid")" 42501 "DROP ROLE of the role in between is refused"
is "$(sustate -c "ALTER GROUP nr_mid DROP USER nr_leaf")" 42501 "and so is ALTER GROUP ... DROP USER"
is "$(su -c "SELECT pg_has_role('nr_leaf', '$dbo', 'MEMBER')")" t "it stays trusted"
# a role with CREATEROLE (not trusted; no EXECUTE on the internal check)
su -c "CREATE ROLE nr_cr CREATEROLE LOGIN" >/dev/null
is "$(as nr_cr -c "REVOKE nr_mid FROM nr_leaf" 2>&1 | grep -c "^ERROR:  42501: objects named like the payments extension's, or that take a pay_card, belong to roles that are not trusted")" 1 \
	"a role with CREATEROLE revoking the role in between is refused by the same check"
# a cast from pay_card: the one who owns its target type
su -c "CREATE TYPE public.nr_ct AS (v text)" -c "CREATE CAST (payments.pay_card AS public.nr_ct) WITH INOUT" \
	-c "CREATE TABLE public.nr_ctab (v text)" -c "CREATE CAST (payments.pay_card AS public.nr_ctab) WITH INOUT" >/dev/null
is "$(sustate -c "ALTER TYPE public.nr_ct OWNER TO nr_evil")" 42501 \
	"ALTER TYPE ... OWNER TO the hostile role of a cast's target type (a cast from pay_card) is refused"
is "$(sustate -c "ALTER TABLE public.nr_ctab OWNER TO nr_evil")" 42501 "so is ALTER TABLE ... OWNER TO of a cast's row type"
su -c "CREATE ROLE nr_typer SUPERUSER" -c "SET ROLE nr_typer" -c "CREATE TYPE public.nr_ct2 AS (v text)" \
	-c "CREATE CAST (payments.pay_card AS public.nr_ct2) WITH INOUT" -c "RESET ROLE" >/dev/null
is "$(sustate -c "REASSIGN OWNED BY nr_typer TO nr_evil")" 42501 "and REASSIGN OWNED of a cast's target type"
su -c "DROP TYPE public.nr_ct2 CASCADE" -c "DROP ROLE nr_typer" >/dev/null
su -c "DROP TYPE public.nr_ct CASCADE" -c "DROP TABLE public.nr_ctab CASCADE" >/dev/null
# what takes no card and is not named like the extension's is left alone
su -c "CREATE ROLE nr_plain" -c "SET ROLE nr_plain" \
	-c "CREATE FUNCTION public.nr_plain_fn(text) RETURNS text LANGUAGE sql AS 'SELECT \$1'" -c "RESET ROLE" \
	-c "GRANT nr_mid TO nr_app" >/dev/null
is "$(sustate -c "REASSIGN OWNED BY nr_plain TO nr_evil" -c "DROP ROLE nr_plain" -c "REVOKE nr_mid FROM nr_app" \
	-c "ALTER ROLE nr_evil PASSWORD NULL" -c "DROP FUNCTION public.nr_plain_fn(text)")" "" \
	"REASSIGN OWNED, DROP ROLE, REVOKE and ALTER ROLE that leave no such object go through"
su -c "DROP FUNCTION public.pay_void(bigint), public.nr_su_helper(payments.pay_card), public.nr_dbo_keep(payments.pay_card),
	public.nr_leaf_keep(payments.pay_card)" -c "DROP ROLE nr_su, nr_leaf, nr_mid, nr_cr" >/dev/null
# ALTER DATABASE ... OWNER TO, in the database it changes
DB=postgres su -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS nr_owned" \
	-c "CREATE ROLE nr_owner1" -c "CREATE ROLE nr_owner2" -c "CREATE ROLE nr_o1m LOGIN IN ROLE nr_owner1" \
	-c "CREATE DATABASE nr_owned OWNER nr_owner1" >/dev/null
DB=nr_owned su -c "SET client_min_messages = error" -c "CREATE EXTENSION payments" >/dev/null
DB=nr_owned as nr_o1m -c "CREATE FUNCTION public.nr_o1m_keep(card payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$1::text'"
is "$(DB=nr_owned sustate -c "ALTER DATABASE nr_owned OWNER TO nr_owner2")" 42501 \
	"ALTER DATABASE ... OWNER TO, leaving a member of the old owner with a card helper, is refused"
# roles are global: run from another database, the check cannot see it;
# README has the DBA run payments._refuse_shadowing_objects() there
is "$(DB=postgres sustate -c "ALTER DATABASE nr_owned OWNER TO nr_owner2")" "" \
	"run from another database it goes through (the check sees only the database it runs in)"
is "$(DB=nr_owned su -c "SELECT payments._refuse_shadowing_objects()" 2>&1 |
	grep -c 'function public.nr_o1m_keep(payments.pay_card) (owner nr_o1m) takes payments.pay_card')" 1 \
	"payments._refuse_shadowing_objects() run in that database names what was left"
DB=postgres su -c "DROP DATABASE nr_owned" -c "DROP ROLE nr_o1m, nr_owner1, nr_owner2" >/dev/null

###########################################################################
# 2. Made before the guard: CREATE EXTENSION and the update to 0.2.0 refuse.
DB=postgres su -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS nr_scratch" -c "CREATE DATABASE nr_scratch" >/dev/null
DB=nr_scratch su -c "GRANT CREATE ON SCHEMA public TO PUBLIC" >/dev/null
DB=nr_scratch as nr_evil -c "CREATE FUNCTION public.pay_card(text, integer, integer, text) RETURNS text LANGUAGE sql AS 'SELECT 1::text'"
is "$(DB=nr_scratch sustate -c "SET client_min_messages = error" -c "CREATE EXTENSION payments")" 42501 \
	"CREATE EXTENSION refuses a pay_card stand-in made before it"
is "$(DB=nr_scratch su -c "SELECT count(*) FROM pg_extension WHERE extname = 'payments'")" 0 "and is not installed"
DB=nr_scratch as nr_evil -c "DROP FUNCTION public.pay_card(text, integer, integer, text)"
DB=nr_scratch su -c "SET client_min_messages = error" -c "DROP EXTENSION IF EXISTS payments" \
	-c "CREATE EXTENSION payments VERSION '0.1.0'" >/dev/null
DB=nr_scratch as nr_evil -c "CREATE FUNCTION public.pay_card(varchar, integer, integer, varchar) RETURNS text LANGUAGE sql AS 'SELECT 1::text'"
is "$(DB=nr_scratch sustate -c "SET client_min_messages = error" -c "ALTER EXTENSION payments UPDATE TO '0.2.0'")" 42501 \
	"ALTER EXTENSION UPDATE refuses one made under 0.1.0"
is "$(DB=nr_scratch su -c "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" 0.1.0 "and 0.1.0 stays"
DB=nr_scratch as nr_evil -c "DROP FUNCTION public.pay_card(varchar, integer, integer, varchar)" \
	-c "CREATE FUNCTION public.format(text, payments.pay_card) RETURNS text LANGUAGE sql AS 'SELECT \$2::text'"
is "$(DB=nr_scratch su -c "SET client_min_messages = error" -c "ALTER EXTENSION payments UPDATE TO '0.2.0'" 2>&1 |
	grep -c 'format(text,payments.pay_card)')" 1 \
	"ALTER EXTENSION UPDATE refuses, by name, a format(text, pay_card) made under 0.1.0"
DB=nr_scratch as nr_evil -c "DROP FUNCTION public.format(text, payments.pay_card)"
is "$(DB=nr_scratch sustate -c "SET client_min_messages = error" -c "ALTER EXTENSION payments UPDATE TO '0.2.0'")" "" \
	"without it the update goes through"
DB=postgres su -c "DROP DATABASE nr_scratch" >/dev/null

###########################################################################
# 3. What the extension runs under: SECURITY DEFINER functions and trigger
#    functions in SQL or PL/pgSQL pin their search_path, pg_temp last.
unpinned=$(su -c "SELECT string_agg(p.oid::regprocedure::text || ' ' || coalesce(c.setting, '(none)'), ', ' ORDER BY 1)
	FROM pg_proc p
	LEFT JOIN LATERAL (SELECT substr(s, length('search_path=') + 1) AS setting FROM unnest(p.proconfig) s
		WHERE s LIKE 'search\_path=%') c ON true
	WHERE p.pronamespace = 'payments'::regnamespace
		AND (p.prosecdef OR (p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype)
			AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))))
		AND coalesce(c.setting NOT IN ('pg_catalog, payments, pg_temp', 'pg_catalog, pg_temp'), true)")
is "$unpinned" "" "every SECURITY DEFINER and SQL or PL/pgSQL trigger function runs under pg_catalog[, payments], pg_temp"

###########################################################################
# 4. SQL_ASCII: the card holder name the gateway would get as sent.
DB=postgres su -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS nr_ascii" \
	-c "CREATE DATABASE nr_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null
DB=nr_ascii su -c "SET client_min_messages = error" -c "CREATE EXTENSION payments" >/dev/null
holder() { DB=nr_ascii sustate -c "SELECT payments.pay_card('4111111111111111', 12, $year, '123', E'$1')"; }
is "$(holder 'Zo\xeb')" 22Y15 "SQL_ASCII: a holder name that is not UTF-8 (LATIN1 e-diaeresis) is refused at the call"
is "$(holder 'Zo\xef\xbf\xbf')" 22Y15 "SQL_ASCII: a holder name with U+FFFF is refused at the call"
is "$(holder 'Zo\xc3\xab \xc3\x86r\xc3\xb8')" "" "SQL_ASCII: a UTF-8 holder name is taken"
DB=postgres su -c "DROP DATABASE nr_ascii" >/dev/null

###########################################################################
# 5. The background processes' own statements, under a database search_path
#    with pg_catalog after public (the owner's choice): the worker runs as
#    the bootstrap superuser, and its housekeeping ran a public.now() of
#    the role that may CREATE in public (before: nr_loot said so).
as nr_evil -c "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.nr_loot SELECT a.backend_type || ' ran now() as ' || current_user
		FROM pg_catalog.pg_stat_activity a
		WHERE a.pid = pg_catalog.pg_backend_pid() AND a.backend_type LIKE 'payments%';
	RETURN pg_catalog.now();
END \$\$"
su -c "ALTER DATABASE payments SET search_path = public, pg_catalog" \
	-c "INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_kind, created_at)
		VALUES ($M, 'nr-expired', 'purchase', pg_catalog.now() - interval '400 days')" >/dev/null
ok "$(passed restart_worker)" "a worker connects under search_path public, pg_catalog"
gone() { su -c "SELECT 'gone' WHERE NOT EXISTS (SELECT FROM payments.idempotency_keys
	WHERE merchant_id = $M AND idempotency_key = 'nr-expired')"; }
is "$(poll_value 30 gone)" gone "its housekeeping ran (an idempotency key past retention is gone)"
is "$(su -c "SELECT coalesce(string_agg(DISTINCT v, ', '), '') FROM public.nr_loot")" "" \
	"and ran no function of the role that may CREATE in public"
su -c "ALTER DATABASE payments RESET search_path" -c "DROP FUNCTION public.now()" >/dev/null

tap_done
