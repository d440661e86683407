# PGXS build of the payments extension.
#
#   make && make install      build and install against the pg_config on PATH
#   make installcheck         pg_regress against a running, preloaded cluster
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
	card.sql worker_signals.sql payment_tables.sql status_machine.sql \
	payment_api.sql worker.sql gateway_admin.sql monitoring.sql audit.sql \
	privileges.sql)
EXTSQL = sql/$(EXTENSION)--$(EXTVERSION).sql

# Install scripts and upgrade scripts: every sql/payments--*.sql.
DATA = $(sort $(EXTSQL) $(wildcard sql/payments--*.sql))
EXTRA_CLEAN = $(EXTSQL)

# pg_regress tests: every other sql/*.sql, in a fixed order.
REGRESS = $(sort $(basename $(notdir $(filter-out $(DATA),$(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --dbname=payments_regress --load-extension=payments

# PostgreSQL's headers are included as system headers so that -Wextra
# judges our code, not theirs (they trip -Wunused-parameter).
PG_CPPFLAGS = -Isrc -Isrc/anet -isystem $(shell $(PG_CONFIG) --includedir-server) $(shell curl-config --cflags) $(shell pkg-config --cflags json-c openssl) \
	-DPAYMENTS_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Wall -Wextra -Werror
SHLIB_LINK = $(shell curl-config --libs) $(shell pkg-config --libs json-c openssl)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(EXTSQL)

$(EXTSQL): $(SQL_SOURCES) payments.control
	{ printf -- '-- payments %s: install script, made by the Makefile from sql/src/ (edit those files).\n\n' '$(EXTVERSION)'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION payments" to load this file. \quit'; \
	  for f in $(SQL_SOURCES); do printf '\n-- ==== %s ====\n\n' "$$f"; cat "$$f"; done; } > $@.tmp
	mv $@.tmp $@

# Distribution builds of PostgreSQL track no header dependencies: rebuild
# every object when a header changes (struct layouts are shared).
$(OBJS): $(wildcard src/*.h src/anet/*.h)
