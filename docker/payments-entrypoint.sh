#!/usr/bin/env bash
# Entrypoint of the payments image: the official postgres entrypoint, with
# payments and pg_cron preloaded and both serving the database the image
# creates. The settings go on the server's command line because the
# official entrypoint starts its temporary init server with the same
# arguments: CREATE EXTENSION payments in the init script needs the preload.
set -euo pipefail

# NAME's value as the official entrypoint's file_env reads it: the variable,
# else the file named by NAME_FILE (a Docker secret), else DEFAULT.
payments_env_value() {	# NAME DEFAULT
	local var=$1 file_var="${1}_FILE"
	if [ -n "${!var:-}" ]; then
		printf '%s\n' "${!var}"
	elif [ -n "${!file_var:-}" ]; then
		cat -- "${!file_var}"
	else
		printf '%s\n' "$2"
	fi
}

# The database the official entrypoint creates: POSTGRES_DB, which defaults
# to POSTGRES_USER, which defaults to postgres.
payments_database() {
	local user
	user=$(payments_env_value POSTGRES_USER postgres)
	payments_env_value POSTGRES_DB "$user"
}

# Flags alone mean the server, as in the official entrypoint.
if [ "$#" = 0 ] || [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi
if [ "$1" = postgres ]; then
	db=$(payments_database)
	shift
	# Ours first: later -c arguments (the caller's) override them.
	set -- postgres \
		-c shared_preload_libraries=payments,pg_cron \
		-c "payments.database=$db" \
		-c "cron.database_name=$db" \
		"$@"
fi
exec docker-entrypoint.sh "$@"
