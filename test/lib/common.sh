# Shared shell functions for the README commands and the test suite:
# dependency install, build, and throwaway PostgreSQL clusters.
# Source it; it expects `set -euo pipefail` in the caller.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the project needs to build, run and test.
PAYMENTS_DEBS=(
	postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libcurl4-openssl-dev libssl-dev libjson-c-dev libmicrohttpd-dev
	build-essential pkg-config openssl curl ca-certificates python3 git
	python3-yaml shellcheck
	clang-14 libclang-rt-14-dev
	locales gettext-base
)
# Locales the card log tests run their servers' messages in (lc_messages;
# CARD_LC_MESSAGES in test/integration/card_log_translated.sh): German
# quotes with » «, French with « », Japanese takes some arguments in
# another order (%2$s before %1$s).
PAYMENTS_LOCALES=(de_DE.UTF-8 fr_FR.UTF-8 ja_JP.UTF-8)

log() { printf '==> %s\n' "$*" >&2; }

# poll_value SECONDS COMMAND...: COMMAND's output, as soon as it is not
# empty (tried every 0.1 s); empty when it never is within SECONDS.
poll_value() {
	local tries=$(($1 * 10)) out=""
	shift
	for _ in $(seq "$tries"); do
		out=$("$@" 2>/dev/null) || out=""
		[ -n "$out" ] && break
		sleep 0.1
	done
	printf '%s' "$out"
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root (directly, or through sudo for a normal user).
as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The OS user that owns test clusters: postgres when we are root
# (PostgreSQL refuses to run as root), else ourselves.
if [ "$(id -u)" = 0 ]; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi

# (from a directory postgres may enter: a checkout under a private
# directory, e.g. mktemp -d, would make psql warn on every call)
as_pg() {
	if [ "$(id -u)" != 0 ]; then "$@"; return; fi
	if [ "${_AS_PG_CWD:-}" != "$PWD" ]; then
		_AS_PG_CWD=$PWD
		if runuser -u postgres -- test -x "$PWD" 2>/dev/null; then _AS_PG_CWD_OK=1; else _AS_PG_CWD_OK=0; fi
	fi
	if [ "$_AS_PG_CWD_OK" = 1 ]; then runuser -u postgres -- "$@"; else (cd / && runuser -u postgres -- "$@"); fi
}

# Install whatever Debian packages are missing (apt-get update first).
install_deps() {
	local missing=() p
	for p in "${PAYMENTS_DEBS[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing Debian packages: ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	PG_BINDIR=$(pg_config --bindir)
	export PATH="$PG_BINDIR:$PATH"
	install_locales
}

# Generate the locales of PAYMENTS_LOCALES that the machine lacks
# (localedef into the locale archive; a fresh Debian has only C.UTF-8).
install_locales() {
	local l have
	have=$(locale -a 2>/dev/null | tr '[:upper:]' '[:lower:]' | sed 's/utf-8/utf8/')
	for l in "${PAYMENTS_LOCALES[@]}"; do
		grep -qx "$(tr '[:upper:]' '[:lower:]' <<<"$l" | sed 's/utf-8/utf8/')" <<<"$have" && continue
		log "generating the locale $l"
		as_root localedef -i "${l%%.*}" -f "${l#*.}" "$l" >/dev/null 2>&1 || log "could not generate the locale $l"
	done
}

# Build with warnings as errors and install into the PostgreSQL tree.
build_and_install() {
	log "building and installing the extension"
	make -C "$REPO_ROOT" -s -j"$(nproc)" >/dev/null
	as_root make -C "$REPO_ROOT" -s install >/dev/null
}

# private_pg_tree TREE [PG_CONFIG]: a private copy of the machine's
# PostgreSQL (the one PG_CONFIG describes, default pg_config on PATH) under
# TREE (its server finds its share and lib directories relative to its own
# binaries); prints the copy's bindir.
private_pg_tree() {
	local tree=$1 pgc=${2:-pg_config} d bindir sharedir
	bindir=$("$pgc" --bindir) sharedir=$("$pgc" --sharedir)
	for d in "$bindir/.." "$sharedir"; do
		d=$(cd "$d" && pwd)
		as_root mkdir -p "$tree$(dirname "$d")"
		as_root cp -a "$d" "$tree$(dirname "$d")/"
	done
	# the server's message catalogs (lc_messages), which it finds relative
	# to its binaries too: LOCALEDIR/<language>/LC_MESSAGES/postgres-15.mo
	local localedir major mo
	localedir=$("$pgc" --localedir) major=$("$pgc" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	for mo in "$localedir"/*/LC_MESSAGES/postgres-"$major".mo "$localedir"/*/LC_MESSAGES/plpgsql-"$major".mo; do
		[ -e "$mo" ] || continue
		as_root mkdir -p "$tree$(dirname "$mo")"
		as_root cp -a "$mo" "$tree$mo"
	done
	[ "$("$tree$bindir/pg_config" --sharedir)" = "$tree$sharedir" ] ||
		die "the private PostgreSQL tree in $tree does not find its own share directory"
	printf '%s\n' "$tree$bindir"
}

# build_and_install_private DIR: build, and install into a private copy of
# the machine's PostgreSQL under DIR/pg.  The test suite runs against
# that copy, so it never changes, nor depends on, what the machine's
# PostgreSQL has installed; two checkouts can run their suites at once.
# Sets PG_BINDIR to the copy's.
build_and_install_private() {
	local tree=$1/pg
	log "building the extension and installing it into a private PostgreSQL tree"
	make -C "$REPO_ROOT" -s -j"$(nproc)" >/dev/null
	PG_BINDIR=$(private_pg_tree "$tree")
	as_root make -C "$REPO_ROOT" -s install DESTDIR="$tree" >/dev/null
	export PATH="$PG_BINDIR:$PATH"
}

# build_checkout_private CHECKOUT DIR: build_and_install_private of another
# checkout of the project (a side of an A/B benchmark) into DIR/pg, against
# the machine's pg_config, not an earlier side's private tree.  Sets
# PG_BINDIR to the copy's.
build_checkout_private() {
	local keep=$REPO_ROOT
	: "${PAYMENTS_SYSTEM_PATH:=$PATH}"
	PATH=$PAYMENTS_SYSTEM_PATH
	REPO_ROOT=$1 build_and_install_private "$2"
	REPO_ROOT=$keep
}

# CPU clock ticks (user + system) of process PID itself, and of its
# children that it reaped (the postmaster's: the backends that exited);
# TICK_MS milliseconds each.  For the benchmarks' CPU figures.
cpu_self() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_children() { awk '{ print $16 + $17 }' "/proc/$1/stat"; }
# Minor page faults (first touches of memory) of process PID, and of its
# reaped children: on a virtual machine each one costs a trip through the
# hypervisor's kernel.
faults_self() { awk '{ print $10 }' "/proc/$1/stat"; }
faults_children() { awk '{ print $11 }' "/proc/$1/stat"; }

# Huge pages for the cluster in DATADIR: as many more 2 MB pages reserved
# as its shared memory takes (PostgreSQL computes it), and huge_pages = on.
# Without them every backend takes a page fault for each 4 kB of shared
# buffers and WAL buffers it touches first, and on a virtual machine each
# fault is a trip through the hypervisor.
# The reservation is added to what the machine has and taken off again on
# release, under a lock: two benchmarks running at once each give back only
# their own pages (restoring a saved value, the second to finish undid the
# first's release, or the first took the second's pages away).
HUGEPAGES_ADDED=0
HUGEPAGES_LOCK=/tmp/payments-hugepages.lock
huge_pages_adjust() {
	# huge_pages_adjust DELTA: vm.nr_hugepages += DELTA (never below 0);
	# prints the value before and the value after
	local delta=$1 before after fd
	exec {fd}>>"$HUGEPAGES_LOCK"
	flock "$fd"
	before=$(cat /proc/sys/vm/nr_hugepages)
	after=$((before + delta))
	[ "$after" -ge 0 ] || after=0
	as_root sysctl -q -w vm.nr_hugepages="$after" 2>/dev/null || true
	echo "$before $(cat /proc/sys/vm/nr_hugepages)"
	exec {fd}>&-
}
huge_pages_reserve() {
	local data=$1 need before have
	need=$(as_pg "$PG_BINDIR/postgres" -D "$data" -C shared_memory_size_in_huge_pages)
	if ! [ "$need" -gt 0 ] 2>/dev/null; then
		echo "huge pages: not supported here ($need): running without them"
		return 0
	fi
	read -r before have < <(huge_pages_adjust "$need")
	HUGEPAGES_ADDED=$((have - before))
	if [ "$HUGEPAGES_ADDED" -lt "$need" ]; then
		echo "could not reserve $need huge pages (got $HUGEPAGES_ADDED): running without them"
		huge_pages_release
		return 0
	fi
	printf '%s\n' "huge_pages = on" | as_pg tee -a "$data/postgresql.conf" >/dev/null
	echo "huge pages: $need of 2 MB reserved for the cluster's shared memory (vm.nr_hugepages $before -> $have)"
}
huge_pages_release() {
	[ "$HUGEPAGES_ADDED" -gt 0 ] || return 0
	huge_pages_adjust "-$HUGEPAGES_ADDED" >/dev/null
	HUGEPAGES_ADDED=0
}
TICK_MS=$((1000 / $(getconf CLK_TCK)))

# A free TCP port on loopback.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cluster_init DIR PORT [extra postgresql.conf lines...]
# Makes a cluster in DIR/data with its socket in DIR/sock, payments and
# pg_cron preloaded, serving database "payments".
cluster_init() {
	local dir=$1 port=$2; shift 2
	mkdir -p "$dir/sock"
	as_root chown -R "$PG_OS_USER" "$dir"
	as_pg "$PG_BINDIR/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 -N >/dev/null
	as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
shared_preload_libraries = 'payments,pg_cron'
payments.database = 'payments'
cron.database_name = 'payments'
payments.test_clocks = on
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
CONF
	local line
	for line in "$@"; do
		printf '%s\n' "$line" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
	done
}

# private_cluster DIR PORT [extra postgresql.conf lines...]
# A cluster of the test's own, for a test that must restart, crash, fail
# over or reconfigure its server (test/run-tests.sh's shared cluster is
# other tests' too): cluster_init in DIR (made if need be) on PORT, then
# started.  private_clusters_stop, which the test's EXIT trap must call,
# stops every cluster made so, whatever state the test left it in.
PRIVATE_CLUSTERS=()
private_cluster() {
	local dir=$1
	mkdir -p "$dir"
	PRIVATE_CLUSTERS+=("$dir")
	cluster_init "$@"
	cluster_start "$dir"
}
# (immediate: nothing reads a throwaway cluster after its test, and an
# immediate stop waits for none of the work the test may have left running)
private_clusters_stop() {
	local dir
	for dir in "${PRIVATE_CLUSTERS[@]}"; do
		[ -f "$dir/data/postmaster.pid" ] || continue
		as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
	done
}

# cluster_start DIR [CAPABILITY]: with CAPABILITY (e.g. sys_nice), the
# server gets it as an ambient capability, which its processes keep (needs
# root: this machine's root may not raise another process's limits, such as
# RLIMIT_RTPRIO, but may hand on a capability)
cluster_start() {
	local dir=$1 cap=${2:-} launch=(as_pg)
	[ -z "$cap" ] || launch=(as_root setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups
		--inh-caps=+"$cap" --ambient-caps=+"$cap" --)
	"${launch[@]}" "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" ${PG_CTL_CORE_FILES:+-c} -w -t 60 start >/dev/null \
		|| { cat "$dir/postgres.log" >&2; die "cluster in $dir did not start${cap:+ with $cap}"; }
}

cluster_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# psql against a cluster: cluster_psql DIR PORT DB [psql args...]
cluster_psql() {
	local dir=$1 port=$2 db=$3; shift 3
	as_pg "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres -d "$db" "$@"
}

# pg_dump against a cluster, to stdout: cluster_pg_dump DIR PORT [pg_dump args...] DB
cluster_pg_dump() {
	local dir=$1 port=$2; shift 2
	as_pg "$PG_BINDIR/pg_dump" -h "$dir/sock" -p "$port" -U postgres "$@"
}
