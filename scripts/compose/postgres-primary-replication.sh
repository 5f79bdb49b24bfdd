#!/usr/bin/env bash
# Runs once, when the compose stack's primary initialises its data directory (the official
# image runs /docker-entrypoint-initdb.d/*): the role its standby replicates with, and the
# pg_hba line that lets that role stream WAL over the stack's network.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v role="$POSTGRES_REPLICATION_USER" -v password="$POSTGRES_REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"role" WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication $POSTGRES_REPLICATION_USER all scram-sha-256" >>"$PGDATA/pg_hba.conf"
