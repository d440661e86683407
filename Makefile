# PGXS build of the payments extension.
#
#   make && make install      build and install against the pg_config on PATH
#   make installcheck         the pg_regress tests (sql/*.sql, expected/) of the
#                             installed extension on a temporary instance of
#                             their own: pg_regress runs initdb in ./tmp_check
#                             with test/regress.conf (payments and pg_cron
#                             preloaded), makes the database payments_regress
#                             with the extension, and stops the instance after.
#                             initdb refuses to run as root: as root, run it as
#                             the postgres user in a checkout that user can
#                             write, e.g. runuser -u postgres -- make installcheck
#   make installcheck USE_RUNNING_SERVER=1
#                             the same tests against a running server that
#                             preloads payments, found through the usual PGHOST,
#                             PGPORT and PGUSER (a superuser); pg_regress drops
#                             and recreates the database payments_regress there
#   bash test/run-tests.sh    the whole suite on a throwaway cluster (README)

PG_CONFIG ?= pg_config

EXTENSION = payments
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" payments.control)

MODULE_big = payments
# src/anet/ holds the Authorize.Net wire format: plain C and json-c, no
# PostgreSQL header (its unit test, test/integration/anet_protocol_unit.sh,
# compiles that folder alone to prove it).  Its tests/ are not part of the
# module.
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/anet/*.c)))

# The current version's install script is built from the SQL sources, one
# file per concern, in this order (each may use what the ones before it
# made).  Released versions' install scripts and every upgrade script are
# committed as they are and never change.
SQL_SOURCES = $(addprefix sql/src/, library.sql tenancy.sql amount.sql secrets.sql \
	card.sql name_guard.sql ddl_guard.sql worker_signals.sql payment_tables.sql status_machine.sql \
	payment_api.sql payment_search.sql api_keys.sql customers.sql payment_methods.sql worker.sql gateway_admin.sql monitoring.sql audit.sql customer_privacy.sql \
	subscription_tables.sql billing.sql subscriptions.sql \
	privileges.sql)
EXTSQL = sql/$(EXTENSION)--$(EXTVERSION).sql

# Install scripts and upgrade scripts: every sql/payments--*.sql.
DATA = $(sort $(EXTSQL) $(wildcard sql/payments--*.sql))
EXTRA_CLEAN = $(EXTSQL)

# pg_regress tests: every other sql/*.sql, in a fixed order, in a UTF8
# database with the C locale (whatever the server's defaults) that
# pg_regress makes, with the extension.
REGRESS = $(sort $(basename $(notdir $(filter-out $(DATA),$(wildcard sql/*.sql)))))
REGRESS_OPTS = --load-extension=payments --encoding=UTF8 --no-locale
ifndef USE_RUNNING_SERVER
REGRESS_OPTS += --temp-instance=./tmp_check --temp-config=test/regress.conf
REGRESS_PREP = regress-not-root
endif

# PostgreSQL's headers are included as system headers so that -Wextra
# judges our code, not theirs (they trip -Wunused-parameter).
PG_CPPFLAGS = -Isrc -Isrc/anet -isystem $(shell $(PG_CONFIG) --includedir-server) $(shell curl-config --cflags) $(shell pkg-config --cflags json-c openssl) \
	-DPAYMENTS_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Wall -Wextra -Werror
SHLIB_LINK = $(shell curl-config --libs) $(shell pkg-config --libs json-c openssl)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# (after PGXS, which sets its own default)
CONTRIB_TESTDB = payments_regress

# A temporary instance cannot be made as root (initdb refuses): say what to do.
.PHONY: regress-not-root
regress-not-root:
	@if [ "$$(id -u)" = 0 ]; then \
		echo "make installcheck: initdb refuses to run as root; run it as the postgres user in a checkout that user can write (runuser -u postgres -- make installcheck), or against a running server (make installcheck USE_RUNNING_SERVER=1)" >&2; \
		exit 1; \
	fi

all: $(EXTSQL)

$(EXTSQL): $(SQL_SOURCES) payments.control
	{ printf -- '-- payments %s: install script, made by the Makefile from sql/src/ (edit those files).\n\n' '$(EXTVERSION)'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION payments" to load this file. \quit'; \
	  for f in $(SQL_SOURCES); do printf '\n-- ==== %s ====\n\n' "$$f"; cat "$$f"; done; } > $@.tmp
	mv $@.tmp $@

# Distribution builds of PostgreSQL track no header dependencies: rebuild
# every object when a header changes (struct layouts are shared).
$(OBJS): $(wildcard src/*.h src/anet/*.h)
