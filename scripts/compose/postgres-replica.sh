#!/usr/bin/env bash
# The compose stack's read replica: a hot standby of the primary, made with the official
# image's own tools. On first start it takes a base backup of the primary (-R: it starts as
# a standby streaming from it); later starts reuse its data directory.
set -euo pipefail

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -h postgres -U "$POSTGRES_REPLICATION_USER" -d postgres; do sleep 1; done
    PGPASSWORD="$POSTGRES_REPLICATION_PASSWORD" pg_basebackup -h postgres \
        -U "$POSTGRES_REPLICATION_USER" -D "$PGDATA" -R -X stream -c fast
    chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c max_connections=200 \
    -c shared_preload_libraries=pg_stat_statements
