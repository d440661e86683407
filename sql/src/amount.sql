-- Money: the pay_amount type, its operators, operator classes and aggregates.

------------------------------------------------------------------------------
-- pay_amount: integer minor units and an ISO 4217 currency.
------------------------------------------------------------------------------

CREATE TYPE payments.pay_amount;

CREATE FUNCTION payments.pay_amount_in(cstring) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_out(payments.pay_amount) RETURNS cstring
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_recv(internal) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_send(payments.pay_amount) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';

CREATE TYPE payments.pay_amount (
	INPUT = payments.pay_amount_in,
	OUTPUT = payments.pay_amount_out,
	RECEIVE = payments.pay_amount_recv,
	SEND = payments.pay_amount_send,
	INTERNALLENGTH = 16,
	ALIGNMENT = double,
	STORAGE = plain
);
COMMENT ON TYPE payments.pay_amount IS
	'Money: integer minor units and an ISO 4217 currency, e.g. ''12.34 USD''. Never a float, never rounded on input.';
COMMENT ON FUNCTION payments.pay_amount_in(cstring) IS 'Text input of pay_amount: ''12.34 USD'', ''USD 12.34'', ''-5 JPY''.';
COMMENT ON FUNCTION payments.pay_amount_out(payments.pay_amount) IS 'Canonical text output of pay_amount: ''12.34 USD''.';
COMMENT ON FUNCTION payments.pay_amount_recv(internal) IS 'Binary input of pay_amount: int8 minor units, then the currency code.';
COMMENT ON FUNCTION payments.pay_amount_send(payments.pay_amount) IS 'Binary output of pay_amount: int8 minor units, then the currency code.';

-- Constructors, accessors, conversions.
CREATE FUNCTION payments.pay_amount(amount numeric, currency text) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_amount_from_numeric';
COMMENT ON FUNCTION payments.pay_amount(numeric, text) IS
	'Amount from a numeric in major units and a currency code: pay_amount(12.34, ''USD''). More decimals than the currency allows is an error.';

CREATE FUNCTION payments.pay_amount_from_minor(minor_units bigint, currency text) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_from_minor(bigint, text) IS
	'Amount from integer minor units (cents) and a currency code: pay_amount_from_minor(1234, ''USD'') is 12.34 USD.';

CREATE FUNCTION payments.pay_currency(amount payments.pay_amount) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_amount_currency';
COMMENT ON FUNCTION payments.pay_currency(payments.pay_amount) IS 'The ISO 4217 currency code of an amount.';

CREATE FUNCTION payments.pay_minor_units(amount payments.pay_amount) RETURNS bigint
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pay_amount_minor_units';
COMMENT ON FUNCTION payments.pay_minor_units(payments.pay_amount) IS 'The amount in integer minor units (cents for USD, yen for JPY, fils for KWD).';

CREATE FUNCTION payments.pay_amount_to_numeric(amount payments.pay_amount) RETURNS numeric
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_to_numeric(payments.pay_amount) IS
	'The amount in major units as numeric with the currency''s scale: 12.34 USD gives 12.34.';
CREATE CAST (payments.pay_amount AS numeric)
	WITH FUNCTION payments.pay_amount_to_numeric(payments.pay_amount);

CREATE FUNCTION payments.pay_currency_exponent(currency text) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_currency_exponent(text) IS
	'Number of decimal places of an ISO 4217 currency: 2 for USD, 0 for JPY, 3 for KWD.';

CREATE FUNCTION payments.pay_currencies(
	OUT code text, OUT numeric_code integer, OUT exponent integer, OUT name text)
	RETURNS SETOF record
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_currencies() IS
	'The ISO 4217 currencies the extension knows, with numeric code and number of decimal places.';

-- Comparison.  = and <> hold across currencies (different currencies are
-- simply not equal); <, <=, >, >= raise an error across currencies.
CREATE FUNCTION payments.pay_amount_eq(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_ne(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_lt(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE COST 10 AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_le(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE COST 10 AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_gt(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE COST 10 AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_ge(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE COST 10 AS 'MODULE_PATHNAME';
-- Their estimators use the total order (src/amount_ops.c): scalarltsel
-- would call < on the most common values, of every currency, and fail the
-- planning of a query that compares one currency's amounts.  COST 10 puts
-- a currency test (pay_currency(a) = 'USD', cost 2) before the comparison
-- in a scan's filter.
CREATE FUNCTION payments.pay_amount_ltsel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_lesel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_gtsel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_gesel(internal, oid, internal, integer) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_eq(payments.pay_amount, payments.pay_amount) IS 'Implements =: same currency and same value.';
COMMENT ON FUNCTION payments.pay_amount_ltsel(internal, oid, internal, integer) IS 'Estimates <: with the total order ~<~, never calling < on another currency''s values while a query is planned.';
COMMENT ON FUNCTION payments.pay_amount_lesel(internal, oid, internal, integer) IS 'Estimates <=: with the total order ~<=~.';
COMMENT ON FUNCTION payments.pay_amount_gtsel(internal, oid, internal, integer) IS 'Estimates >: with the total order ~>~.';
COMMENT ON FUNCTION payments.pay_amount_gesel(internal, oid, internal, integer) IS 'Estimates >=: with the total order ~>=~.';
COMMENT ON FUNCTION payments.pay_amount_ne(payments.pay_amount, payments.pay_amount) IS 'Implements <>.';
COMMENT ON FUNCTION payments.pay_amount_lt(payments.pay_amount, payments.pay_amount) IS 'Implements <: an error across currencies.';
COMMENT ON FUNCTION payments.pay_amount_le(payments.pay_amount, payments.pay_amount) IS 'Implements <=: an error across currencies.';
COMMENT ON FUNCTION payments.pay_amount_gt(payments.pay_amount, payments.pay_amount) IS 'Implements >: an error across currencies.';
COMMENT ON FUNCTION payments.pay_amount_ge(payments.pay_amount, payments.pay_amount) IS 'Implements >=: an error across currencies.';

CREATE OPERATOR payments.= (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_eq, COMMUTATOR = OPERATOR(payments.=),
	NEGATOR = OPERATOR(payments.<>), RESTRICT = eqsel, JOIN = eqjoinsel,
	HASHES, MERGES);
CREATE OPERATOR payments.<> (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_ne, COMMUTATOR = OPERATOR(payments.<>),
	NEGATOR = OPERATOR(payments.=), RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR payments.< (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_lt, COMMUTATOR = OPERATOR(payments.>),
	NEGATOR = OPERATOR(payments.>=), RESTRICT = payments.pay_amount_ltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR payments.<= (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_le, COMMUTATOR = OPERATOR(payments.>=),
	NEGATOR = OPERATOR(payments.>), RESTRICT = payments.pay_amount_lesel, JOIN = scalarlejoinsel);
CREATE OPERATOR payments.> (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_gt, COMMUTATOR = OPERATOR(payments.<),
	NEGATOR = OPERATOR(payments.<=), RESTRICT = payments.pay_amount_gtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR payments.>= (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_ge, COMMUTATOR = OPERATOR(payments.<=),
	NEGATOR = OPERATOR(payments.<), RESTRICT = payments.pay_amount_gesel, JOIN = scalargejoinsel);

-- The total order used for sorting and btree indexes: currency code, then
-- value.  Spelled ~<~ ~<=~ ~>=~ ~>~ (like text_pattern_ops) so that no one
-- compares 5 USD with 4 EUR by accident.
CREATE FUNCTION payments.pay_amount_cmp(payments.pay_amount, payments.pay_amount) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sort_lt(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sort_le(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sort_gt(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sort_ge(payments.pay_amount, payments.pay_amount) RETURNS boolean
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_cmp(payments.pay_amount, payments.pay_amount) IS
	'Total order for sorting and btree indexes: currency code first, then value.';
COMMENT ON FUNCTION payments.pay_amount_sort_lt(payments.pay_amount, payments.pay_amount) IS 'Implements ~<~ (total order: currency, then value).';
COMMENT ON FUNCTION payments.pay_amount_sort_le(payments.pay_amount, payments.pay_amount) IS 'Implements ~<=~ (total order: currency, then value).';
COMMENT ON FUNCTION payments.pay_amount_sort_gt(payments.pay_amount, payments.pay_amount) IS 'Implements ~>~ (total order: currency, then value).';
COMMENT ON FUNCTION payments.pay_amount_sort_ge(payments.pay_amount, payments.pay_amount) IS 'Implements ~>=~ (total order: currency, then value).';

CREATE OPERATOR payments.~<~ (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_sort_lt, COMMUTATOR = OPERATOR(payments.~>~),
	NEGATOR = OPERATOR(payments.~>=~), RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR payments.~<=~ (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_sort_le, COMMUTATOR = OPERATOR(payments.~>=~),
	NEGATOR = OPERATOR(payments.~>~), RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR payments.~>~ (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_sort_gt, COMMUTATOR = OPERATOR(payments.~<~),
	NEGATOR = OPERATOR(payments.~<=~), RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR payments.~>=~ (
	LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_sort_ge, COMMUTATOR = OPERATOR(payments.~<=~),
	NEGATOR = OPERATOR(payments.~<~), RESTRICT = scalargesel, JOIN = scalargejoinsel);

-- Sort support (ORDER BY, CREATE INDEX, merge joins): a comparator on the
-- 16 bytes and abbreviated keys (currency code, then the minor units).
-- PostgreSQL makes it a loose member of the family whether it is named in
-- the class or added to the family (as the upgrade from 0.1.0 does).
CREATE FUNCTION payments.pay_amount_sortsupport(internal) RETURNS void
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_sortsupport(internal) IS
	'Sort support for pay_amount (btree support function 2): fast comparator and abbreviated keys in the order of pay_amount_cmp.';

CREATE OPERATOR CLASS payments.pay_amount_ops
	DEFAULT FOR TYPE payments.pay_amount USING btree AS
		OPERATOR 1 payments.~<~,
		OPERATOR 2 payments.~<=~,
		OPERATOR 3 payments.=,
		OPERATOR 4 payments.~>=~,
		OPERATOR 5 payments.~>~,
		FUNCTION 1 payments.pay_amount_cmp(payments.pay_amount, payments.pay_amount),
		FUNCTION 2 payments.pay_amount_sortsupport(internal);

CREATE FUNCTION payments.pay_amount_hash(payments.pay_amount) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_hash_extended(payments.pay_amount, bigint) RETURNS bigint
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_hash(payments.pay_amount) IS 'Hash support for pay_amount (value and currency).';
COMMENT ON FUNCTION payments.pay_amount_hash_extended(payments.pay_amount, bigint) IS 'Seeded 64-bit hash support for pay_amount.';

CREATE OPERATOR CLASS payments.pay_amount_hash_ops
	DEFAULT FOR TYPE payments.pay_amount USING hash AS
		OPERATOR 1 payments.=,
		FUNCTION 1 payments.pay_amount_hash(payments.pay_amount),
		FUNCTION 2 payments.pay_amount_hash_extended(payments.pay_amount, bigint);

-- Arithmetic.
CREATE FUNCTION payments.pay_amount_pl(payments.pay_amount, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_mi(payments.pay_amount, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_um(payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_abs(amount payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_mul_int8(payments.pay_amount, bigint) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_mul_int4(payments.pay_amount, integer) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_mul_numeric(payments.pay_amount, numeric) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_int8_mul_amount(bigint, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_int4_mul_amount(integer, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_numeric_mul_amount(numeric, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_div_int8(payments.pay_amount, bigint) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_div_int4(payments.pay_amount, integer) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_div_numeric(payments.pay_amount, numeric) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_pl(payments.pay_amount, payments.pay_amount) IS 'Implements +: same currency only, overflow is an error.';
COMMENT ON FUNCTION payments.pay_amount_mi(payments.pay_amount, payments.pay_amount) IS 'Implements -: same currency only, overflow is an error.';
COMMENT ON FUNCTION payments.pay_amount_um(payments.pay_amount) IS 'Implements unary -.';
COMMENT ON FUNCTION payments.pay_amount_abs(payments.pay_amount) IS 'Absolute value of an amount.';
COMMENT ON FUNCTION payments.pay_amount_mul_int8(payments.pay_amount, bigint) IS 'Implements pay_amount * bigint (exact).';
COMMENT ON FUNCTION payments.pay_amount_mul_int4(payments.pay_amount, integer) IS 'Implements pay_amount * integer (exact).';
COMMENT ON FUNCTION payments.pay_amount_mul_numeric(payments.pay_amount, numeric) IS 'Implements pay_amount * numeric, rounded half to even to the minor unit.';
COMMENT ON FUNCTION payments.pay_int8_mul_amount(bigint, payments.pay_amount) IS 'Implements bigint * pay_amount (exact).';
COMMENT ON FUNCTION payments.pay_int4_mul_amount(integer, payments.pay_amount) IS 'Implements integer * pay_amount (exact).';
COMMENT ON FUNCTION payments.pay_numeric_mul_amount(numeric, payments.pay_amount) IS 'Implements numeric * pay_amount, rounded half to even to the minor unit.';
COMMENT ON FUNCTION payments.pay_amount_div_int8(payments.pay_amount, bigint) IS 'Implements pay_amount / bigint, rounded half to even to the minor unit.';
COMMENT ON FUNCTION payments.pay_amount_div_int4(payments.pay_amount, integer) IS 'Implements pay_amount / integer, rounded half to even to the minor unit.';
COMMENT ON FUNCTION payments.pay_amount_div_numeric(payments.pay_amount, numeric) IS 'Implements pay_amount / numeric, rounded half to even to the minor unit.';

CREATE OPERATOR payments.+ (LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_pl, COMMUTATOR = OPERATOR(payments.+));
CREATE OPERATOR payments.- (LEFTARG = payments.pay_amount, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_amount_mi);
CREATE OPERATOR payments.- (RIGHTARG = payments.pay_amount, FUNCTION = payments.pay_amount_um);
CREATE OPERATOR payments.* (LEFTARG = payments.pay_amount, RIGHTARG = bigint,
	FUNCTION = payments.pay_amount_mul_int8, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments.* (LEFTARG = bigint, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_int8_mul_amount, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments.* (LEFTARG = payments.pay_amount, RIGHTARG = integer,
	FUNCTION = payments.pay_amount_mul_int4, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments.* (LEFTARG = integer, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_int4_mul_amount, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments.* (LEFTARG = payments.pay_amount, RIGHTARG = numeric,
	FUNCTION = payments.pay_amount_mul_numeric, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments.* (LEFTARG = numeric, RIGHTARG = payments.pay_amount,
	FUNCTION = payments.pay_numeric_mul_amount, COMMUTATOR = OPERATOR(payments.*));
CREATE OPERATOR payments./ (LEFTARG = payments.pay_amount, RIGHTARG = bigint,
	FUNCTION = payments.pay_amount_div_int8);
CREATE OPERATOR payments./ (LEFTARG = payments.pay_amount, RIGHTARG = integer,
	FUNCTION = payments.pay_amount_div_int4);
CREATE OPERATOR payments./ (LEFTARG = payments.pay_amount, RIGHTARG = numeric,
	FUNCTION = payments.pay_amount_div_numeric);

-- Aggregates.  sum() of an empty set is NULL, like sum(numeric); min()
-- and max() refuse to mix currencies.
CREATE FUNCTION payments.pay_amount_smaller(payments.pay_amount, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_larger(payments.pay_amount, payments.pay_amount) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_smaller(payments.pay_amount, payments.pay_amount) IS 'The smaller of two amounts in one currency (min() support).';
COMMENT ON FUNCTION payments.pay_amount_larger(payments.pay_amount, payments.pay_amount) IS 'The larger of two amounts in one currency (max() support).';

-- sum() keeps a 128-bit running total (src/amount_sum.c): only the final
-- sum must fit, so no plan raises an overflow that another would not.
CREATE FUNCTION payments.pay_amount_sum_accum(internal, payments.pay_amount) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_combine(internal, internal) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_serialize(internal) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_deserialize(bytea, internal) RETURNS internal
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME';
CREATE FUNCTION payments.pay_amount_sum_final(internal) RETURNS payments.pay_amount
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME';
COMMENT ON FUNCTION payments.pay_amount_sum_accum(internal, payments.pay_amount) IS
	'sum(pay_amount) transition: adds an amount to the 128-bit running total; another currency is an error.';
COMMENT ON FUNCTION payments.pay_amount_sum_combine(internal, internal) IS
	'sum(pay_amount) combine: adds two partial totals; different currencies are an error.';
COMMENT ON FUNCTION payments.pay_amount_sum_serialize(internal) IS 'sum(pay_amount) state to bytea (parallel plans).';
COMMENT ON FUNCTION payments.pay_amount_sum_deserialize(bytea, internal) IS 'sum(pay_amount) state from bytea (parallel plans).';
COMMENT ON FUNCTION payments.pay_amount_sum_final(internal) IS
	'sum(pay_amount) result: the total as a pay_amount; out of range is an error.';

CREATE AGGREGATE payments.sum(payments.pay_amount) (
	SFUNC = payments.pay_amount_sum_accum, STYPE = internal, SSPACE = 24,
	FINALFUNC = payments.pay_amount_sum_final,
	COMBINEFUNC = payments.pay_amount_sum_combine,
	SERIALFUNC = payments.pay_amount_sum_serialize,
	DESERIALFUNC = payments.pay_amount_sum_deserialize,
	PARALLEL = SAFE);
CREATE AGGREGATE payments.min(payments.pay_amount) (
	SFUNC = payments.pay_amount_smaller, STYPE = payments.pay_amount,
	COMBINEFUNC = payments.pay_amount_smaller, PARALLEL = SAFE);
CREATE AGGREGATE payments.max(payments.pay_amount) (
	SFUNC = payments.pay_amount_larger, STYPE = payments.pay_amount,
	COMBINEFUNC = payments.pay_amount_larger, PARALLEL = SAFE);
COMMENT ON AGGREGATE payments.sum(payments.pay_amount) IS 'Sum of amounts in one currency; mixing currencies or overflow is an error.';
COMMENT ON AGGREGATE payments.min(payments.pay_amount) IS 'Smallest amount; mixing currencies is an error.';
COMMENT ON AGGREGATE payments.max(payments.pay_amount) IS 'Largest amount; mixing currencies is an error.';
