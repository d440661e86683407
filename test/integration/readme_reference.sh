#!/usr/bin/env bash
# README's reference tables are true: they are parsed from README.md and
# compared with the installed extension and its sources.
#  - every function of a table row ("| `pay_x(a, b DEFAULT 1)` | ...")
#    exists with exactly those named input arguments, and an argument shown
#    with a default ("DEFAULT v", "=> v") has that default;
#  - every pay_* function a user calls (not a type's, operator's,
#    aggregate's or cast's support function) is named in README;
#  - the settings table (## Configuration) lists every payments.* setting
#    the library defines, with its default and context (restart: postmaster,
#    reload: sighup, superuser, session / set on functions: user);
#  - the SQLSTATE table (## Error codes) lists every code the SQL
#    (USING ERRCODE = '...') and the C code (errcode(...)) raise, apart from
#    those a caller cannot cause (below), and no code nothing raises;
#  - pay_list_payments' argument table, the subscription status table,
#    pay_grant_api's list of the API, the API key scope table
#    (payments._api_function_names/_scope), the files README names, the
#    repository layout (every src/*.c), README's links to its own
#    sections, the metrics README names and the server messages it quotes;
#  - every statement of README's SQL blocks names what exists (below).
# A failure names each mismatch.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TMP=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT
q() { cluster_psql "$WORK" "$PORT" payments -At -F $'\t' -c "$1"; }

# input arguments of the payments.pay_* functions: name, argument, type, default
q "SELECT p.proname, a.n, format_type(p.proargtypes[a.k - 1], NULL),
		coalesce(pg_get_function_arg_default(p.oid, a.i::int), '')
	FROM pg_proc p,
		LATERAL (SELECT n, i, count(*) OVER (ORDER BY i) AS k
			FROM unnest(p.proargnames, coalesce(p.proargmodes,
				array_fill('i'::\"char\", ARRAY[coalesce(cardinality(p.proargnames), 0)]))) WITH ORDINALITY u(n, m, i)
			WHERE m IN ('i', 'b', 'v')) a
	WHERE p.pronamespace = 'payments'::regnamespace AND p.proname LIKE 'pay\_%'
	ORDER BY 1, a.i" >"$TMP/args"
# the functions a user calls: not the support function of a type, operator,
# aggregate, operator class or cast; and how many input arguments
q "SELECT p.proname, p.pronargs FROM pg_proc p
	WHERE p.pronamespace = 'payments'::regnamespace AND p.proname LIKE 'pay\_%'
	AND p.oid NOT IN (SELECT unnest(ARRAY[typinput, typoutput, typreceive, typsend]) FROM pg_type)
	AND p.oid NOT IN (SELECT unnest(ARRAY[oprcode, oprrest, oprjoin]) FROM pg_operator)
	AND p.oid NOT IN (SELECT unnest(ARRAY[aggtransfn, aggfinalfn, aggcombinefn, aggserialfn,
		aggdeserialfn, aggmtransfn, aggminvtransfn, aggmfinalfn]) FROM pg_aggregate)
	AND p.oid NOT IN (SELECT amproc FROM pg_amproc)
	AND p.oid NOT IN (SELECT castfunc FROM pg_cast)
	ORDER BY 1" >"$TMP/functions"
q "SELECT name, boot_val, coalesce(unit, ''), context, coalesce(min_val, '') FROM pg_settings
	WHERE name LIKE 'payments.%' ORDER BY 1" >"$TMP/settings"
# the API (what pay_grant_api grants) and the API key scope of each function
q "SELECT from_status, to_status FROM payments.status_transitions
	WHERE entity = 'subscription'" >"$TMP/subscription_transitions"
# the metrics pay_metrics() declares ("# TYPE name kind")
q "SELECT payments.pay_metrics()" | sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p' >"$TMP/metrics"
q "SELECT f, coalesce(payments._api_function_scope(f), '')
	FROM unnest(payments._api_function_names()) f" >"$TMP/api"
ok "$([ "$(wc -l <"$TMP/functions")" -ge 80 ] && [ "$(wc -l <"$TMP/settings")" -ge 25 ] \
	&& [ "$(wc -l <"$TMP/metrics")" -ge 20 ] && echo 0 || echo 1)" \
	"the catalog lists the extension's functions, settings and metrics"

# PHASE 1: README against the catalog and the sources; prints problems, and
# writes the default checks (SQL: README line, function, argument, ok) to
# $TMP/defaults.sql
# PostgreSQL's own codes (ERRCODE_* names): the server headers, which the
# private tree the suite runs against (WORK/pg) leaves out
errcodes_h=$(pg_config --includedir-server)/utils/errcodes.h
[ -f "$errcodes_h" ] || errcodes_h=${errcodes_h#"$WORK/pg"}
problems=$(python3 - "$ROOT" "$TMP" "$errcodes_h" <<'EOF'
import glob, os, re, sys
root, tmp, pg_errcodes = sys.argv[1:4]
readme = open(os.path.join(root, "README.md")).read().split("\n")
out = []

args = {}          # function -> [(argument, type, default)]
for line in open(os.path.join(tmp, "args")):
    f, a, t, d = line.rstrip("\n").split("\t")
    args.setdefault(f, []).append((a, t, d))
functions = {}
for line in open(os.path.join(tmp, "functions")):
    f, n = line.split("\t")
    functions[f] = int(n)

def cells(row):
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]

def section(title):
    """the table rows (after the header rows) of the first table under ## title"""
    start = readme.index("## " + title)
    rows, seen = [], False
    for i in range(start + 1, len(readme)):
        line = readme[i]
        if line.startswith("#"):
            break
        if line.startswith("|"):
            seen = True
            rows.append((i + 1, line))
        elif seen:
            break
    return rows[2:]

# 1. function rows
sql_checks = []
documented = set()
for n, line in enumerate(readme, 1):
    if not line.startswith("| `pay_"):
        continue
    for sig in re.findall(r"`(pay_\w+\(.*?\))`", cells(line)[0]):
        name = sig[:sig.index("(")]
        inner = sig[sig.index("(") + 1:-1].replace("\\|", "|")
        documented.add(name)
        if name not in functions:
            out.append(f"README line {n}: {name} is not a function of the extension")
            continue
        if "..." in inner:
            continue
        have = {a: (t, d) for a, t, d in args.get(name, [])}
        shown = []
        for piece in [p.strip() for p in inner.split(",") if p.strip()]:
            m = re.match(r"(.*?)\s+(?:DEFAULT|=>)\s+(.*)$", piece)
            names_part, default = (m.group(1), m.group(2)) if m else (piece, None)
            names = [w for w in re.split(r"[\s|+\[\]]+", names_part) if w]
            for a in names:
                shown.append(a)
                if a not in have:
                    out.append(f"README line {n}: {name} has no argument {a}")
                    continue
                if default is None:
                    continue
                if have[a][1] == "":
                    out.append(f"README line {n}: {name}'s argument {a} has no default (README: {default})")
                elif re.fullmatch(r"'[^']*'|-?[0-9]+|true|false|NULL", default):
                    sql_checks.append(f"SELECT {n}, '{name}', '{a}', "
                                      f"({have[a][1]})::{have[a][0]} IS NOT DISTINCT FROM ({default})::{have[a][0]}, "
                                      f"format('%s', ({have[a][1]})::{have[a][0]});")
        for a, _, _ in args.get(name, []):
            if a not in shown:
                out.append(f"README line {n}: {name}(...) leaves out its argument {a}")
        if not args.get(name) and functions[name] and not shown:
            pass
        if functions[name] == 0 and shown:
            out.append(f"README line {n}: {name} takes no arguments")
open(os.path.join(tmp, "defaults.sql"), "w").write("\n".join(sql_checks) + "\n")

# 2. every function a user calls is named in README
text = "\n".join(readme)
for f in sorted(functions):
    if not re.search(r"\b" + f + r"\b", text):
        out.append(f"README never names the function {f}")

# 3. settings
units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
contexts = {"restart": "postmaster", "reload": "sighup", "superuser": "superuser",
            "session": "user", "set on functions": "user"}
guc = {}
for line in open(os.path.join(tmp, "settings")):
    name, boot, unit, context, low = line.rstrip("\n").split("\t")
    guc[name] = (boot, unit, context, low)
listed = set()
for n, row in section("Configuration"):
    c = cells(row)
    name = c[0].strip("`")
    listed.add(name)
    if name not in guc:
        out.append(f"README line {n}: there is no setting {name}")
        continue
    boot, unit, context, low = guc[name]
    default = c[1].replace("`", "")
    m = re.match(r"(-?[0-9][0-9,]*)\s*(ms|s|min|h|d)?\b", default)
    if m and boot.lstrip("-").isdigit():
        value = float(m.group(1).replace(",", "")) * units.get(m.group(2) or unit or "s", 1)
        base = float(boot) * units.get(unit, 1) if unit else float(boot)
        if m.group(2) is None and unit:
            value = float(m.group(1).replace(",", "")) * units[unit]
        ok = abs(value - base) < 1e-9
    elif default.startswith("empty"):
        ok = boot == ""
    else:
        ok = default.split(" ")[0] == boot
    if not ok:
        out.append(f"README line {n}: {name} defaults to {boot}{(' ' + unit) if unit else ''}, README says {c[1]}")
    want = contexts.get(c[2].split(",")[0].strip())
    if want != context:
        out.append(f"README line {n}: {name}'s context is {context}, README says {c[2]}")
    # "(0: no limit)", "(`0`: never)", "at least 24": the lowest value
    meaning = c[3].replace("`", "")
    least = re.search(r"\(0: |at least ([0-9]+)", meaning)
    if least and low != (least.group(1) or "0"):
        out.append(f"README line {n}: {name}'s lowest value is {low}, README says {least.group(0)}")
for name in sorted(set(guc) - listed):
    out.append(f"the settings table leaves out {name}")

# 4. SQLSTATEs
def make_sqlstate(s):
    return "".join(re.findall(r"'(.)'", s))
names = {}
for line in open(pg_errcodes):
    m = re.match(r"#define (ERRCODE_\w+)\s+(MAKE_SQLSTATE\(.*\))", line)
    if m:
        names[m.group(1)] = make_sqlstate(m.group(2))
sources = glob.glob(os.path.join(root, "src", "*.[ch]")) + glob.glob(os.path.join(root, "src", "anet", "*.[ch]"))
for path in sources:
    for m in re.finditer(r"#define (ERRCODE_\w+)\s+(MAKE_SQLSTATE\([^)]*\))", open(path).read()):
        names[m.group(1)] = make_sqlstate(m.group(2))
raised = {}        # code -> where
for path in sources:
    src = open(path).read()
    # a code used, not defined or compared with: errcode(ERRCODE_X),
    # card_error(ERRCODE_X, ...); elog.h's macros on codes
    # (ERRCODE_TO_CATEGORY(x), ERRCODE_IS_CATEGORY(x)) are no code
    for line in src.split("\n"):
        if line.lstrip().startswith("#define"):
            continue
        for m in re.finditer(r"(?<![=!]= )\b(ERRCODE_\w+|MAKE_SQLSTATE\([^)]*\))", line):
            if m.group(1).startswith("MAKE_SQLSTATE"):
                code = make_sqlstate(m.group(1))
            elif m.group(1) in names:
                code = names[m.group(1)]
            elif line[m.end():].lstrip().startswith("("):
                continue
            else:
                out.append(f"{os.path.relpath(path, root)}: {m.group(1)} is no SQLSTATE this test knows")
                continue
            raised.setdefault(code, os.path.relpath(path, root))
for path in sorted(glob.glob(os.path.join(root, "sql", "src", "*.sql"))):
    for m in re.finditer(r"ERRCODE\s*=\s*'([0-9A-Z]{5})'", open(path).read()):
        raised.setdefault(m.group(1), os.path.relpath(path, root))
# what no caller can cause: notices and generic warnings, internal errors
# and corrupted data, resources, a broken installation (a missing table,
# function or column of the extension), misuse of the internal triggers,
# the server's own configuration, and what cannot happen (a transaction
# start out of the timestamp range, server text that is not UTF-8)
exempt = {"00000", "01000", "XX000", "XX001", "53200", "58000", "F0000", "39P01",
          "42P01", "42883", "42704", "3F000", "42703", "42710", "22008", "22021", "22P03"}
table = {}
for n, row in section("Error codes"):
    first = cells(row)[0]
    for a, b in re.findall(r"`([0-9A-Z]{5})`(?:\s*[–-]\s*`([0-9A-Z]{5})`)?", first):
        if b:
            for k in range(int(a[3:]), int(b[3:]) + 1):
                table[a[:3] + "%02d" % k] = n
        else:
            table[a] = n
for code in sorted(set(raised) - set(table) - exempt):
    out.append(f"the errors table leaves out {code} (raised in {raised[code]})")
for code in sorted(set(table) - set(raised)):
    out.append(f"README line {table[code]}: nothing raises {code}")

# 5. pay_list_payments' arguments (### Searching payments)
start = readme.index("### Searching payments")
shown = []
for i in range(start, len(readme)):
    if readme[i].startswith("| `"):
        shown += re.findall(r"`(\w+)`", cells(readme[i])[0])
    elif shown:
        break
if sorted(shown) != sorted(a for a, _, _ in args["pay_list_payments"]):
    out.append(f"README line {start + 1}: pay_list_payments' arguments are "
               f"{', '.join(a for a, _, _ in args['pay_list_payments'])}; README's table: {', '.join(shown)}")

# 6. pay_grant_api's row lists the API; the scope table, each scope's functions
api = dict(line.rstrip("\n").split("\t") for line in open(os.path.join(tmp, "api")))
for n, line in enumerate(readme, 1):
    if line.startswith("| `pay_grant_api(role)`"):
        listed = set(re.findall(r"`(pay_\w+)`", cells(line)[1]))
        for f in sorted(set(api) - listed):
            out.append(f"README line {n}: pay_grant_api's list leaves out {f}")
        for f in sorted(listed - set(api)):
            out.append(f"README line {n}: pay_grant_api does not grant {f}")
scopes = set()
start = next(i for i, line in enumerate(readme) if "(`payments._api_function_scope`)" in line)
for n in range(start + 3, len(readme) + 1):
    line = readme[n - 1]
    if not line.startswith("|"):
        break
    m = re.match(r"\| `(\w+)` \| ", line)
    scope = m.group(1)
    scopes.add(scope)
    listed = set(re.findall(r"`(pay_\w+)`", cells(line)[1]))
    for f in sorted(f for f, sc in api.items() if sc == scope and f not in listed):
        out.append(f"README line {n}: scope {scope} allows {f}, which README leaves out")
    for f in sorted(listed):
        if api.get(f, "") not in ("", scope):
            out.append(f"README line {n}: {f} needs scope {api[f]}, not {scope}")
        elif f not in api:
            out.append(f"README line {n}: {f} is not an API function")
for sc in sorted(set(api.values()) - scopes - {""}):
    out.append(f"the scope table leaves out scope {sc}")

# 7. the subscription status table ("| from | to |") is payments.status_transitions
allowed = {tuple(line.rstrip("\n").split("\t")) for line in open(os.path.join(tmp, "subscription_transitions"))}
start = readme.index("| from | to |")
shown = set()
for n in range(start + 3, len(readme) + 1):
    line = readme[n - 1]
    if not line.startswith("|"):
        break
    c = cells(line)
    # "`active` (first invoice paid), `past_due` (it failed)": the statuses, not the words in parentheses
    to = re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", c[1]))
    for f in re.findall(r"`(\w+)`", c[0]):
        shown |= {(f, t) for t in to}
for f, t in sorted(allowed - shown):
    out.append(f"the subscription status table leaves out {f} -> {t}")
for f, t in sorted(shown - allowed):
    out.append(f"the subscription status table shows {f} -> {t}, which payments.status_transitions does not allow")

# 8. every link to a section of README ("[Tenancy](#tenancy-who-...)") finds
# its heading (GitHub's anchors: lower case, punctuation dropped, spaces to -)
anchors, code = set(), False
for line in readme:
    if line.startswith("```"):
        code = not code
    elif not code and re.match(r"#+ ", line):
        title = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
        anchors.add(title.replace(" ", "-"))
for n, line in enumerate(readme, 1):
    for a in re.findall(r"\]\(#([^)]+)\)", line):
        if a not in anchors:
            out.append(f"README line {n}: the link #{a} finds no heading")

# 9. every metric README names is one pay_metrics() declares (not metrics:
# the role payments_admin, the database payments_regress, the key directory
# <data directory>.payments_keys, 0.1.0's key file payments_vault.key)
metrics = {line.strip() for line in open(os.path.join(tmp, "metrics"))}
not_metrics = {"payments_admin", "payments_regress", "payments_keys", "payments_vault"}
for n, line in enumerate(readme, 1):
    for name in re.findall(r"\bpayments_[a-z_]+", line):
        if name not in metrics and name not in not_metrics:
            out.append(f"README line {n}: pay_metrics() has no metric {name}")

# 10. the server messages README quotes ("ERROR:  ...", "HINT:  ...") are
# the C code's (its format strings, %s and the like standing for anything)
formats = set()
for path in sources:
    for m in re.finditer(r"\berr(?:msg|detail|hint)(?:_internal)?\(\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+)", open(path).read()):
        formats.add("".join(re.findall(r"\"((?:[^\"\\]|\\.)*)\"", m.group(1))).replace('\\"', '"'))
patterns = [re.compile(re.sub(r"%(?:[0-9]*[sdu]|ld|lld|m)", ".*", re.escape(f)) + r"\Z") for f in formats]
for n, line in enumerate(readme, 1):
    m = re.match(r"(?:ERROR|DETAIL|HINT|LOG|WARNING):  (.*)", line)
    if m and not any(p.match(m.group(1)) for p in patterns):
        out.append(f"README line {n} quotes a message the code does not have: {m.group(1)}")

# 11. the files README names exist, and the layout names every C file
for path in sorted(set(re.findall(r"\b(?:test|src|sql|docker|expected)/[\w./-]*\w", text))):
    if re.search(r"--[A-Z]|[A-Z]\.[A-Z]", path):
        continue        # a pattern: payments--A--B.sql, payments--X.Y.Z.sql
    if not os.path.exists(os.path.join(root, path)):
        out.append(f"README names {path}, which does not exist")
start = readme.index("## Repository layout")
layout = "\n".join(readme[start:readme.index("## Docker", start)])
# a file, or a glob of some (card*.c); not "src/*.c", which names them all
named = {g for g in re.findall(r"[\w*]+\.c\b", layout) if not g.startswith("*")}
for path in sorted(glob.glob(os.path.join(root, "src", "*.c"))):
    c = os.path.basename(path)
    if not any(re.fullmatch(g.replace("*", ".*"), c) for g in named):
        out.append(f"the repository layout leaves out src/{c}")
print("\n".join(out))
EOF
)
same "$problems" "" "README's function tables, settings table and errors table match the extension"

# PHASE 2: the defaults README shows are the functions' defaults
checks=$(grep -c . "$TMP/defaults.sql" || true)
ok "$([ "$checks" -ge 10 ] && echo 0 || echo 1)" "README shows defaults of functions ($checks)"
wrong=$(cluster_psql "$WORK" "$PORT" payments -At -F ' ' <"$TMP/defaults.sql" |
	awk '$4 == "f" { print "README line " $1 ": " $2 "(" $3 ") defaults to " substr($0, index($0, " f ") + 3) }')
same "$wrong" "" "the defaults README shows are the functions' defaults"

# README's audit example: attaching (and detaching) a table answers true and
# says nothing else (no notices about triggers that were not there)
q "CREATE TABLE public.readme_reference_orders (id int)" >/dev/null
said=$(cluster_psql "$WORK" "$PORT" payments -At -c "SELECT payments.pay_audit_attach('public.readme_reference_orders')" \
	-c "SELECT payments.pay_audit_attach('public.readme_reference_orders', masked_columns => '{id}')" \
	-c "SELECT payments.pay_audit_detach('public.readme_reference_orders')" 2>&1)
is "$(tr '\n' ' ' <<<"$said")" "t t t " "pay_audit_attach and pay_audit_detach say nothing but their result"
q "DROP TABLE public.readme_reference_orders" >/dev/null
# README's SQL statements name what exists: each statement of its ```sql
# blocks runs as a merchant of this test's own, in a transaction rolled
# back (with README's example tables), and fails, if it does (an id of
# README's story that is not this merchant's: PT404), with no class 42
# error (a function, argument, column or table that does not exist, a
# syntax error) nor 22P02. Left out: what changes the cluster (extensions,
# databases, roles and their bindings) and placeholders ("...", '<...>').
M=$(q "INSERT INTO payments.merchants (name) VALUES ('readme_reference') RETURNING merchant_id")
python3 - "$ROOT/README.md" "$ROOT/test/lib" >"$TMP/statements" <<'EOF'
import re, sys
sys.path.insert(0, sys.argv[2])
from readme_sql import sql_blocks
blocks = sql_blocks(sys.argv[1])
skip = re.compile(r"^(CREATE (EXTENSION|ROLE)|ALTER (EXTENSION|DATABASE)|GRANT|BEGIN|COMMIT|SET )|"
                  r"pay_bind_role|pay_declare_postgrest_role|pay_grant_all_merchants|\.\.\.|'<", re.I)
for block in blocks:
    stmt = []
    for line in block:
        code = line.split("--")[0].strip()
        if code:
            stmt.append(code)
        if stmt and code.endswith(";"):
            sql = " ".join(stmt)
            stmt = []
            if not skip.search(sql):
                print(sql)
EOF
count=$(grep -c . "$TMP/statements" || true)
ok "$([ "$count" -ge 40 ] && echo 0 || echo 1)" "README's SQL statements found ($count)"
wrong=""
while IFS= read -r sql; do
	err=$(cluster_psql "$WORK" "$PORT" payments -At -v VERBOSITY=verbose \
		-c "SET search_path = public, payments" -c "SET payments.merchant_id = '$M'" -c "BEGIN" \
		-c "CREATE TABLE public.orders (id int, total pay_amount); CREATE TABLE public.customers (id int, ssn text)" \
		-c "$sql" -c "ROLLBACK" 2>&1 >/dev/null | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)/\1 \2/p' | head -1 || true)
	case "$err" in
	42*|22P02*) wrong+="$sql -> $err"$'\n' ;;
	esac
done <"$TMP/statements"
same "$wrong" "" "README's SQL statements name functions, arguments, columns and tables that exist"
tap_done
