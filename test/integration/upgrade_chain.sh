#!/usr/bin/env bash
# The upgrade path (DESIGN.md, "Releases").  For every step A -> B of the
# chain of upgrade scripts (sql/payments--A--B.sql) that ends at
# payments.control's default_version: a database made with CREATE EXTENSION
# payments VERSION 'A', filled with data of every kind (test/upgrade/fill.sql)
# and brought to B with ALTER EXTENSION payments UPDATE TO 'B', is the same
# as a fresh CREATE EXTENSION payments VERSION 'B' (every member object,
# comment and privilege through pg_dump --binary-upgrade, the dumped
# configuration tables, row-level security and its policies, privileges,
# the reference rows made at install), and its data survives, readable
# through the API.  With several steps, the straight update from the first
# version to the default one as well.  Against an older schema the library
# refuses its C entry points with PT503 until the update.  Each upgrade
# script makes each function, trigger, view and comment once.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
: "${WORK:?run from test/run-tests.sh}" "${PORT:?}"
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
started=$SECONDS

q() { cluster_psql "$WORK" "$PORT" "$@"; }
qa() { local db=$1; shift; q "$db" -At "$@"; }
OUT="$WORK/upgrade_chain"
mkdir -p "$OUT"

# ---------------------------------------------------------------------------
# The chain: from the lowest version an upgrade script starts at, one step
# at a time (to the lowest version a script leads to), up to the default.
# ---------------------------------------------------------------------------
default=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$REPO_ROOT/payments.control")
mapfile -t scripts < <(for f in "$REPO_ROOT"/sql/payments--*--*.sql; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .sql); n=${n#payments--}
	echo "${n%%--*} ${n#*--}"
done | sort -V)
chain=()
if [ ${#scripts[@]} -gt 0 ]; then
	v=${scripts[0]%% *}
	chain=("$v")
	while [ "$v" != "$default" ] && [ ${#chain[@]} -le ${#scripts[@]} ]; do
		next=""
		for s in "${scripts[@]}"; do
			if [ "${s%% *}" = "$v" ] && [ "$(printf '%s\n' "$v" "${s#* }" | sort -V | sed -n 2p)" != "$v" ]; then
				next=${s#* }; break
			fi
		done
		[ -n "$next" ] || break
		v=$next
		chain+=("$v")
	done
fi
path=$(IFS=' '; echo "${chain[*]:-none}")
is "${path##* }" "$default" "the upgrade scripts make a chain to default_version $default: ${path// / -> }"

# ---------------------------------------------------------------------------
# Catalog queries, run in the upgraded and in the fresh database.
# ---------------------------------------------------------------------------

# The extension's member relations of the given kinds: name|columns|primary key.
members_sql() {
	cat <<SQL
SELECT c.oid::regclass::text,
	string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum),
	coalesce((SELECT string_agg(quote_ident(k.attname), ',' ORDER BY array_position(i.indkey::int2[], k.attnum))
		FROM pg_index i JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
		WHERE i.indrelid = c.oid AND i.indisprimary), '')
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ($1) AND $2
GROUP BY c.oid ORDER BY 1
SQL
}
IS_MEMBER="EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
	AND d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'payments'))"
# the user's own tables (fill.sql makes one)
IS_USERS="c.relnamespace = 'public'::regnamespace AND NOT $IS_MEMBER"

EXTCONFIG_SQL="SELECT u.t::regclass::text, u.cond
	FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(t, cond)
	WHERE e.extname = 'payments' ORDER BY 1"
RLS_SQL="SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
	WHERE relnamespace = 'payments'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1"
POLICIES_SQL="SELECT tablename, policyname, permissive, roles, cmd, qual, with_check
	FROM pg_policies WHERE schemaname = 'payments' ORDER BY 1, 2"
# every privilege on the schema and the objects in it, by name
PRIVILEGES_SQL="WITH o(kind, name, owner, acl, deftype) AS (
	SELECT 'schema', nspname::text, nspowner, nspacl, 'n' FROM pg_namespace WHERE nspname = 'payments'
	UNION ALL
	SELECT CASE relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, oid::regclass::text, relowner, relacl,
		CASE relkind WHEN 'S' THEN 's' ELSE 'r' END
	FROM pg_class WHERE relnamespace = 'payments'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
	UNION ALL
	SELECT 'function', oid::regprocedure::text, proowner, proacl, 'f' FROM pg_proc
	WHERE pronamespace = 'payments'::regnamespace
	UNION ALL
	SELECT 'type', oid::regtype::text, typowner, typacl, 'T' FROM pg_type
	WHERE typnamespace = 'payments'::regnamespace)
SELECT o.kind, o.name, CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
	a.grantor::regrole, a.privilege_type, a.is_grantable
FROM o, aclexplode(coalesce(o.acl, acldefault(o.deftype::\"char\", o.owner))) a ORDER BY 1, 2, 3, 5"
# The rows the extension makes at install that pg_dump does not carry: every
# row of a member table not registered with pg_extension_config_dump, and
# the rows a registration's condition leaves out (the default merchant);
# over the columns that are not timestamps (when it was installed).  As
# COPY statements, made in the fresh database.
REFERENCE_SQL="SELECT format('COPY (SELECT %L, %s FROM %s%s ORDER BY %2\$s) TO STDOUT;', c.oid::regclass,
		string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum), c.oid::regclass,
		CASE WHEN x.cond IS NOT NULL THEN ' WHERE NOT (' || regexp_replace(x.cond, '^\s*WHERE\s+', '', 'i') || ')' END)
	FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		AND a.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype)
	LEFT JOIN (SELECT u.t, u.cond FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(t, cond)
		WHERE e.extname = 'payments') x ON x.t = c.oid
	WHERE c.relkind IN ('r', 'p') AND $IS_MEMBER AND (x.t IS NULL OR x.cond <> '')
	GROUP BY c.oid, x.cond ORDER BY c.oid::regclass::text"

# pg_dump --binary-upgrade --schema-only: every member object on its own,
# with its ALTER EXTENSION payments ADD, comments and GRANT/REVOKE; without
# what differs between any two databases (oids, relfilenodes, frozen xids,
# the restrict key, pg_dump's version), the configuration tables' oids
# (compared by name below) and where their sequences stand (data, compared
# with the rows).
schema_dump() {
	cluster_pg_dump "$WORK" "$PORT" --binary-upgrade --schema-only --exclude-table='public.upgrade_*' "$1" |
		grep -vE "binary_upgrade_set_next_|relfrozenxid|WHERE oid = |^\\\\(un)?restrict |^-- Dumped (from|by) " |
		sed -E -e "s/^(SELECT pg_catalog\.binary_upgrade_create_empty_extension\(('([^']|'')*', ){2}[a-z]+, '([^']|'')*'), '([^']|'')*', '([^']|'')*'/\1, '<extconfig>', '<extcondition>'/" \
			-e "s/^(SELECT pg_catalog\.setval\('([^']|'')*'), .*\);\$/\1, <value>);/"
}

# the same query in the updated and in the fresh database
same_in_both() {	# same_in_both UPDATED FRESH DESCRIPTION SQL
	same "$(qa "$1" -c "$4")" "$(qa "$2" -c "$4")" "$3"
}

# SELECT payments._wake_at_commit(): refused with PT503 and a hint to update
# (schema older than the library) or not.
wake_refused() {	# wake_refused DB yes|no DESCRIPTION
	local out rc=0 refused=no
	out=$(q "$1" -v VERBOSITY=verbose -c 'SELECT payments._wake_at_commit()' 2>&1) || rc=$?
	if [ "$rc" != 0 ] && grep -q 'PT503' <<<"$out" && grep -q 'HINT: .*ALTER EXTENSION payments UPDATE' <<<"$out"; then
		refused=yes
	fi
	if [ "$2" = no ] && [ "$rc" != 0 ]; then refused=error; fi
	is "$refused" "$2" "$3"
	[ "$refused" = "$2" ] || comment "$out"
}

# Rows of the given tables, as COPY statements: one line of output per row,
# the table's name first; only the columns the target version has too.
rows_script() {	# rows_script DB FRESH_DB
	local t cols pk fcols common c
	local -A fresh=()
	while IFS='|' read -r t cols pk; do fresh[$t]=$cols; done \
		< <(qa "$2" -c "$(members_sql "'r', 'p'" "$IS_MEMBER")")
	while IFS='|' read -r t cols pk; do
		if [ -z "${fresh[$t]+set}" ]; then echo "-- $t: not in the new version"; continue; fi
		common=()
		for c in ${cols//,/ }; do [[ ",${fresh[$t]}," == *",$c,"* ]] && common+=("$c"); done
		for c in ${pk//,/ }; do [[ " ${common[*]} " == *" $c "* ]] || pk=""; done
		echo "COPY (SELECT '$t', $(IFS=,; echo "${common[*]}") FROM $t ORDER BY ${pk:-1}) TO STDOUT;"
	done < <(qa "$1" -c "$(members_sql "'r', 'p'" "$IS_MEMBER")")
	while IFS='|' read -r t cols pk; do
		echo "COPY (SELECT '$t', $cols FROM $t ORDER BY ${pk:-1}) TO STDOUT;"
	done < <(qa "$1" -c "$(members_sql "'r', 'p'" "$IS_USERS")")
	# where the sequences stand (the next ids)
	while IFS='|' read -r t cols pk; do
		if [ -n "$(qa "$2" -c "SELECT to_regclass('$t')")" ]; then
			echo "COPY (SELECT '$t', last_value, is_called FROM $t) TO STDOUT;"
		fi
	done < <(qa "$1" -c "$(members_sql "'S'" "$IS_MEMBER")")
}

# ---------------------------------------------------------------------------
# One update: FROM filled, updated to TO, against a fresh TO.
# ---------------------------------------------------------------------------
upgrade_test() {	# upgrade_test FROM TO [straight]
	local from=$1 to=$2 straight=${3:-} failed_before=$TAP_FAILED
	local tag="$from -> $to" update="ALTER EXTENSION payments UPDATE TO '$to'"
	local old="upgrade_${from//./_}_to_${to//./_}" fresh="upgrade_fresh_${to//./_}"
	if [ -n "$straight" ]; then
		update="ALTER EXTENSION payments UPDATE"
		tag="$from -> $to in one go"
		old="${old}_straight"
	fi
	local dir="$OUT/$old"
	mkdir -p "$dir"
	q postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $old" -c "DROP DATABASE IF EXISTS $fresh" \
		-c "CREATE DATABASE $old" -c "CREATE DATABASE $fresh"

	ok_cmd "$tag: CREATE EXTENSION payments VERSION '$to' in a fresh database" \
		q "$fresh" -c "CREATE EXTENSION payments VERSION '$to'" || return 0
	ok_cmd "$tag: CREATE EXTENSION payments VERSION '$from'" \
		q "$old" -c "CREATE EXTENSION payments VERSION '$from'" || return 0
	local rc=0 out
	out=$(qa "$old" < "$REPO_ROOT/test/upgrade/fill.sql" 2>&1) || rc=$?
	[ "$rc" = 0 ] || out="fill.sql failed ($rc): $out"
	same "$out" "" "$tag: fill.sql wrote, as the owner with plain SQL, a payment and an operation in every status of their CHECK, rows in every extension table, audit rows of every audited table and sealed audit batches"
	[ "$rc" = 0 ] || return 0

	# The library serves only its own schema version.
	wake_refused "$old" yes "$tag: before the update, payments._wake_at_commit() is refused with PT503 and a hint to ALTER EXTENSION payments UPDATE"

	# what must survive, and what the API must show afterwards
	local script payments_before operations_before events_before
	script=$(rows_script "$old" "$fresh")
	qa "$old" <<<"$script" > "$dir/rows.before"
	payments_before=$(qa "$old" -c "SELECT merchant_id, payment_id, status, amount FROM payments.payments ORDER BY 1, 2")
	operations_before=$(qa "$old" -c "SELECT p.merchant_id, p.payment_id,
			string_agg(o.operation_id || ':' || o.kind || ':' || o.status, ',' ORDER BY o.operation_id)
		FROM payments.payments p LEFT JOIN payments.operations o USING (merchant_id, payment_id)
		GROUP BY 1, 2 ORDER BY 1, 2")
	events_before=$(qa "$old" -c "SELECT count(*) FROM payments.events")
	local fp_sql="SELECT payments.pay_card_fingerprint(payments.pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2))"
	local fp_before
	fp_before=$(qa "$old" -c "$fp_sql")

	ok_cmd "$tag: $update" q "$old" -c "$update" || return 0
	is "$(qa "$old" -c "SELECT extversion FROM pg_extension WHERE extname = 'payments'")" "$to" \
		"$tag: the updated database is at version $to"
	if [ "$to" = "$default" ]; then
		wake_refused "$old" no "$tag: after the update, payments._wake_at_commit() works"
	else
		wake_refused "$old" yes "$tag: at $to, still older than the library, payments._wake_at_commit() is refused with PT503"
	fi

	# --- the same schema
	schema_dump "$old" > "$dir/updated.schema"
	schema_dump "$fresh" > "$dir/fresh.schema"
	local lines
	lines=$(grep -c '^ALTER EXTENSION payments ADD ' "$dir/fresh.schema" || true)
	if [ "$lines" -gt 0 ]; then
		same "$(cat "$dir/updated.schema")" "$(cat "$dir/fresh.schema")" \
			"$tag: pg_dump --binary-upgrade --schema-only is the same as a fresh $to's ($(wc -l < "$dir/fresh.schema") lines, $lines member objects, comments and privileges)"
	else
		ok 1 "$tag: pg_dump --binary-upgrade --schema-only lists the extension's member objects"
		comment "$(cat "$dir/fresh.schema")"
	fi
	same_in_both "$old" "$fresh" "$tag: the same tables and sequences, with the same conditions, are registered with pg_extension_config_dump" "$EXTCONFIG_SQL"
	same_in_both "$old" "$fresh" "$tag: the same row-level security state of every table (relrowsecurity, relforcerowsecurity)" "$RLS_SQL"
	same_in_both "$old" "$fresh" "$tag: pay_enable_row_security() covers the same tables" \
		"SELECT t::text FROM payments.pay_enable_row_security() t ORDER BY 1"
	same_in_both "$old" "$fresh" "$tag: the same policies (pg_policies) after pay_enable_row_security()" "$POLICIES_SQL"
	same_in_both "$old" "$fresh" "$tag: the same privileges on the schema, its tables, sequences, functions and types, by name" "$PRIVILEGES_SQL"
	# (the tables a fresh install leaves empty, e.g. card_vault, hold the
	# updated database's own data)
	local reference fresh_rows
	reference=$(qa "$fresh" -c "$REFERENCE_SQL")
	fresh_rows=$(qa "$fresh" <<<"$reference")
	same "$(qa "$old" <<<"$reference" | awk -F'\t' 'NR == FNR { t[$1]; next } $1 in t' <(printf '%s\n' "$fresh_rows") -)" \
		"$fresh_rows" \
		"$tag: the same reference rows made at install ($(cut -f1 <<<"$fresh_rows" | uniq | paste -sd, - | sed 's/,/, /g'))"
	same_in_both "$old" "$fresh" "$tag: installation secrets of the same purposes" \
		"SELECT purpose, count(*) FROM payments.installation_secrets GROUP BY 1 ORDER BY 1"

	# --- the data survives
	local missing added
	qa "$old" -v ON_ERROR_STOP=0 <<<"$script" > "$dir/rows.after" 2> "$dir/rows.after.err" || true
	[ ! -s "$dir/rows.after.err" ] || comment "$(cat "$dir/rows.after.err")"
	# (the fingerprint key leaves the table for a key file in 0.2.0)
	missing=$(LC_ALL=C comm -23 <(LC_ALL=C sort "$dir/rows.before") <(LC_ALL=C sort "$dir/rows.after") |
		grep -v $'^payments.installation_secrets\t[^\t]*\tcard_fingerprint\t' || true)
	added=$(LC_ALL=C comm -13 <(LC_ALL=C sort "$dir/rows.before") <(LC_ALL=C sort "$dir/rows.after"))
	same "$missing" "" "$tag: all $(wc -l < "$dir/rows.before") rows of $(grep -c '^COPY' <<<"$script") extension tables, sequences and user tables are there unchanged"
	[ -z "$added" ] || comment "rows the update added: $added"

	is "$(qa "$old" -c "SELECT count(*) FROM payments.installation_secrets WHERE purpose = 'card_fingerprint'")" 0 \
		"$tag: no card fingerprint key is left in a table"
	is "$(qa "$old" -c "$fp_sql")" "$fp_before" \
		"$tag: a card's fingerprint is the same before and after the update (the key moved to a key file)"

	if [ "$to" = "$default" ]; then
		# --- readable through the API, as the owner
		local m id got_payments="" got_operations=""
		while IFS='|' read -r m id _; do
			got_payments+="SET payments.merchant_id = $m;
SELECT merchant_id, payment_id, status, amount FROM payments.pay_get_payment($id);
"
			got_operations+="SET payments.merchant_id = $m;
SELECT $m, $id, string_agg(operation_id || ':' || kind || ':' || status, ',' ORDER BY operation_id)
FROM payments.pay_payment_operations($id);
"
		done <<<"$payments_before"
		same "$(qa "$old" <<<"$got_payments")" "$payments_before" \
			"$tag: pay_get_payment() returns every payment with its status and amount ($(wc -l <<<"$payments_before") payments of both merchants)"
		same "$(qa "$old" <<<"$got_operations")" "$operations_before" \
			"$tag: pay_payment_operations() returns every payment's operations"
		is "$(qa "$old" -c "SELECT coalesce(payments.pay_audit_verify()::text, 'intact')")" intact \
			"$tag: pay_audit_verify() finds the audit trail intact (sealed batches and the rows after them)"
		qa "$old" -c "UPDATE public.upgrade_orders SET note = 'after the update' WHERE id = 1" >/dev/null
		is "$(qa "$old" -c "SELECT operation || ' ' || (old_row ->> 'note') || ' -> ' || (new_row ->> 'note')
			FROM payments.audit_log WHERE table_name = 'upgrade_orders' ORDER BY audit_id DESC LIMIT 1")" \
			"UPDATE first -> after the update" \
			"$tag: the user's table attached to the audit before the update is audited after it"
		is "$(qa "$old" -c "SELECT payments.pay_audit_seal() > 0, coalesce(payments.pay_audit_verify()::text, 'intact')")" "t|intact" \
			"$tag: audit rows written after the update seal and verify with those written before"
		is "$(qa "$old" -c "SELECT (SELECT count(*) FROM payments.events) || ' events, ' || count(*)
				|| ' payments whose latest event is not their status'
			FROM payments.payments p WHERE 'payment.' || p.status IS DISTINCT FROM (SELECT e.event_type
				FROM payments.events e WHERE e.merchant_id = p.merchant_id AND e.payment_id = p.payment_id
					AND e.event_type LIKE 'payment.%' ORDER BY e.event_id DESC LIMIT 1)")" \
			"$events_before events, 0 payments whose latest event is not their status" \
			"$tag: the events are readable: every one is there, and each payment's latest is its current status"
		local next
		next=$(qa "$old" -c "SELECT max(payment_id) + 1 FROM payments.payments" 2>&1) || true
		is "$(qa "$old" -c "SELECT payment_id || ' ' || status FROM payments.pay_purchase(amount => '5.00 USD',
				card => payments.pay_card('4111 1111 1111 1111', 12, extract(year FROM now())::int + 2, '123'))" 2>&1)" \
			"$next pending" "$tag: a new purchase through the API works and continues the payment ids"
	fi

	if [ "$TAP_FAILED" = "$failed_before" ]; then
		q postgres -c "DROP DATABASE $old" -c "DROP DATABASE $fresh"
	else
		comment "kept databases $old and $fresh, and $dir"
	fi
}

# ---------------------------------------------------------------------------
# An upgrade script says once what it makes: every function (by name), every
# trigger and every COMMENT ON an object stands once, in its final form, so
# that a reviewer reads the one definition that counts.  A form made earlier
# because a statement between needs it (and made again later) is listed in
# MADE_TWICE_ALLOWED, with the reason in a comment at the earlier form.
# ---------------------------------------------------------------------------
MADE_TWICE_ALLOWED=""
made_twice() {	# made_twice SCRIPT: what it makes more than once, one a line
	{
		grep -oE '^CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|AGGREGATE) [A-Za-z0-9_."]+' "$1" |
			awk '{ print "function " $NF }' || true
		awk '/^CREATE (CONSTRAINT )?TRIGGER / {
			s = $0
			while (s !~ / ON [A-Za-z0-9_."]+/ && (getline l) > 0) s = s " " l
			split(s, w, " "); name = (w[2] == "CONSTRAINT") ? w[4] : w[3]
			match(s, / ON [A-Za-z0-9_."]+/)
			print "trigger " name substr(s, RSTART, RLENGTH)
		}' "$1"
		grep -oE '^COMMENT ON .* IS( |$)' "$1" | sed -E 's/ IS ?$//' || true
		grep -oE '^CREATE (OR REPLACE )?VIEW [A-Za-z0-9_."]+' "$1" | awk '{ print "view " $NF }' || true
	} | sort | uniq -d | grep -vxF -e "${MADE_TWICE_ALLOWED:-no such line}" || true
}
for ((i = 1; i < ${#chain[@]}; i++)); do
	script="sql/payments--${chain[i-1]}--${chain[i]}.sql"
	twice=$(made_twice "$REPO_ROOT/$script")
	is "$twice" "" "$script makes each function, trigger, view and comment once"
done

for ((i = 1; i < ${#chain[@]}; i++)); do
	upgrade_test "${chain[i-1]}" "${chain[i]}"
done
if [ ${#chain[@]} -gt 2 ]; then
	upgrade_test "${chain[0]}" "$default" straight
fi

# Roles of any name keep the API across the update: names with a comma, a
# quote and a space (the update once carried grantees as one
# comma-separated setting, which such a name broke).
if [ ${#chain[@]} -gt 1 ]; then
	db=upgrade_role_names
	q postgres -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" \
		-c 'DROP ROLE IF EXISTS "app,comma", "app ""quoted"""' -c 'CREATE ROLE "app,comma"' -c 'CREATE ROLE "app ""quoted"""'
	q "$db" -q -c "CREATE EXTENSION payments VERSION '${chain[0]}'" -c "DO \$\$
DECLARE f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'payments'::regnamespace
			AND p.proname IN ('pay_purchase', 'pay_authorize', 'pay_metrics') LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', f, 'app,comma', 'app \"quoted\"');
	END LOOP;
END \$\$" >/dev/null
	is "$(qa "$db" -c "SELECT count(*) FROM pg_proc p, unnest(ARRAY['app,comma', 'app \"quoted\"']) r
		WHERE p.pronamespace = 'payments'::regnamespace AND has_function_privilege(r, p.oid, 'EXECUTE')
			AND p.proname IN ('pay_purchase', 'pay_authorize', 'pay_metrics')")" 6 \
		"${chain[0]}: roles app,comma and app \"quoted\" may execute pay_authorize, pay_metrics and pay_purchase"
	rc=0
	q "$db" -q -c "ALTER EXTENSION payments UPDATE" >"$OUT/role_names.log" 2>&1 || rc=$?
	ok "$rc" "${chain[0]} -> $default: the update succeeds with API roles named app,comma and app \"quoted\""
	is "$(qa "$db" -c "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'payments') || ' ' ||
			string_agg(r || ':' || has_function_privilege(r, p.oid, 'EXECUTE'), ',' ORDER BY r, p.proname)
		FROM pg_proc p, unnest(ARRAY['app,comma', 'app \"quoted\"']) r
		WHERE p.pronamespace = 'payments'::regnamespace AND p.proname IN ('pay_purchase', 'pay_authorize', 'pay_metrics')")" \
		"$default "'app "quoted":true,app "quoted":true,app "quoted":true,app,comma:true,app,comma:true,app,comma:true' \
		"${chain[0]} -> $default: at $default, both keep EXECUTE on pay_authorize, pay_metrics and pay_purchase"
	q postgres -q -c "DROP DATABASE $db" -c 'DROP ROLE "app,comma", "app ""quoted"""'
fi

echo "# upgrade chain ${path// / -> }: $((SECONDS - started)) s"
tap_done
