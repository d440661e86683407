#!/usr/bin/env bash
# README's examples of the types are true: every statement of README.md's
# SQL blocks that uses only the amount and card functions (no payment or
# merchant of its own) is run, and its result compared with the value its
# comment shows ("SELECT '12.34 USD'::pay_amount;  -- 12.34 USD").  A
# change of the types' output, or of README, that makes them disagree
# fails here.
set -euo pipefail
source "$(dirname "$0")/../lib/integration.sh"
README="$(dirname "$0")/../../README.md"

# statement TAB expected value, one line each
examples=$(python3 - "$README" "$(dirname "$0")/../lib" <<'EOF'
import re, sys
# the functions a standalone example may call: no state behind them
standalone = {"pay_amount", "pay_amount_from_minor", "pay_minor_units", "pay_currency",
              "pay_currency_exponent", "pay_card"}
value = re.compile(r"^(-?[0-9][0-9.]*( [A-Z]{3})?|[A-Z]{3}|[a-z]+ \*{4}[0-9]{4} [0-9]{2}/[0-9]{4})$")
def expected(comment):
    # "12.34 USD   (why)" -> "12.34 USD"; "from minor units: 12.34 USD" -> "12.34 USD"
    text = re.split(r"\s{2,}", comment.strip())[0]
    if ": " in text:
        text = text.split(": ", 1)[1]
    return text if value.match(text) else None
sys.path.insert(0, sys.argv[2])
from readme_sql import sql_blocks
blocks = sql_blocks(sys.argv[1])
for block in blocks:
    stmt = []
    for i, line in enumerate(block):
        code, _, comment = line.partition("--")
        if not stmt and not code.strip():
            continue
        stmt.append(code.strip())
        if not code.rstrip().endswith(";"):
            continue
        sql = " ".join(stmt)
        stmt = []
        # the value on the statement's line, or on the comment line below it
        want = expected(comment) if comment else None
        if want is None and i + 1 < len(block) and block[i + 1].lstrip().startswith("--"):
            want = expected(block[i + 1].lstrip()[2:])
        called = set(re.findall(r"\b(pay_\w+)\s*\(", sql))
        if want is None or not sql.upper().startswith("SELECT") or not called <= standalone:
            continue
        print(sql + "\t" + want)
EOF
)
count=$(grep -c . <<<"$examples" || true)
ok "$([ "$count" -ge 15 ] && echo 0 || echo 1)" "README's type examples found ($count)"
while IFS=$'\t' read -r sql want; do
	got=$(cluster_psql "$WORK" "$PORT" payments -At -c "SET search_path = public, payments" -c "$sql" 2>&1 | tail -1)
	is "$got" "$want" "README: $sql"
done <<<"$examples"
tap_done
