# Instruction counts of the server in single-user mode under valgrind's
# callgrind, for the benchmarks (source it after test/lib/common.sh).  A
# count is the same for the same build and data however busy or slow the
# machine is.  Under valgrind, OpenSSL computes SHA-256 without the CPU's
# SHA instructions, at about 15 times its real cost: callgrind_inclusive
# gives the parts (EVP_DigestUpdate, EVP_DigestFinal_ex) to leave out.

# callgrind_single BINDIR DATADIR SQLFILE OUT: runs the statements of
# SQLFILE (one per line) in database payments, the cluster stopped; the
# profile goes to OUT, the server's output to OUT.out.  Dies when a
# statement fails.
callgrind_single() {
	local bin=$1 data=$2 sql=$3 out=$4
	as_root chown "$PG_OS_USER" "$sql"
	as_pg bash -c "valgrind --tool=callgrind --callgrind-out-file='$out' \
		'$bin/postgres' --single -D '$data' \
		-c shared_preload_libraries=payments -c payments.database=payments payments \
		<'$sql' >'$out.out' 2>&1" \
		|| { tail -20 "$out.out" >&2; die "the single-user run of $sql failed"; }
	if grep -q 'ERROR:' "$out.out"; then
		grep -m3 'ERROR:' "$out.out" >&2
		die "a statement of $sql failed"
	fi
}

# callgrind_inclusive OUT: "function count" lines, every function's
# inclusive count in the profile OUT (TOTAL: the whole run)
callgrind_inclusive() {
	python3 - "$1" <<'PY'
import re, subprocess, sys
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", sys.argv[1]],
                     capture_output=True, text=True, check=True).stdout
funcs = {}
for line in out.splitlines():
    m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*?)\s*(\[.*)?$", line)
    if not m:
        continue
    n = int(m.group(1).replace(",", ""))
    name = m.group(2)
    if name.startswith(("=>", "<", ">", "*")):
        continue
    if name == "PROGRAM TOTALS":
        name = "TOTAL"
    else:
        # "file:function", and callgrind's 'N for recursion levels
        name = name.rsplit(":", 1)[-1].split("'")[0]
    funcs[name] = max(funcs.get(name, 0), n)
for name, v in funcs.items():
    print(name, v)
PY
}

# callgrind_value FILE FUNCTION...: the sum of those functions' counts in
# FILE (callgrind_inclusive's output), 0 for one that is not there
callgrind_value() {
	local file=$1; shift
	awk -v list="$*" 'BEGIN { n = split(list, f, " "); for (i = 1; i <= n; i++) want[f[i]] = 1 }
		($1 in want) { s += $2 } END { printf "%.0f\n", s }' "$file"
}
