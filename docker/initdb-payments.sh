#!/bin/bash
# Runs once, when the official image initialises an empty data directory.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" <<'SQL'
CREATE EXTENSION IF NOT EXISTS payments;
CREATE EXTENSION IF NOT EXISTS pg_cron;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
	-c "ALTER DATABASE \"${POSTGRES_DB:-postgres}\" SET search_path = \"\$user\", public, payments"
