#!/usr/bin/env bash
# FerretDB on SQLite in /data/db, with the root user of MONGO_INITDB_ROOT_USERNAME/PASSWORD.
set -euo pipefail
: "${MONGO_INITDB_ROOT_USERNAME:?MONGO_INITDB_ROOT_USERNAME must be set}"
: "${MONGO_INITDB_ROOT_PASSWORD:?MONGO_INITDB_ROOT_PASSWORD must be set}"
exec ferretdb --handler=sqlite --sqlite-url=file:/data/db/ --state-dir=/var/lib/ferretdb \
    --listen-addr=:27017 --telemetry=disable --log-level=warn \
    --test-enable-new-auth --setup-database=admin \
    --setup-username="$MONGO_INITDB_ROOT_USERNAME" \
    --setup-password="$MONGO_INITDB_ROOT_PASSWORD"
