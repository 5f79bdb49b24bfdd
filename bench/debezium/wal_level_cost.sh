#!/usr/bin/env bash
# What wal_level = logical (Debezium's requirement) costs the write path with no relay running:
# orders/s and WAL bytes per order of Gateway.place_order, closed loop, alternating rounds under
# wal_level replica (PostgreSQL's default) and logical, each after a restart and a CHECKPOINT.
# Needs the database compare.sh made (dbz_compare) and no logical slot (compare.sh drops its own).
#
#   bench/debezium/wal_level_cost.sh [ROUNDS=3] [SECONDS=10] [CONCURRENCY=16]
#
# Same environment as compare.sh (CHECKOUT, FANOUT_SERVICES_DIR, FANOUT_SERVICES_POSTGRES_PORT). Leaves
# wal_level = logical. Prints one JSON line per round.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(cd "${CHECKOUT:-$HERE/../..}" && pwd)"
ROUNDS="${1:-3}"
SECONDS_ROUND="${2:-10}"
CONCURRENCY="${3:-16}"
export FANOUT_SERVICES_DIR="${FANOUT_SERVICES_DIR:-$CHECKOUT/.services/debezium-compare}"
export FANOUT_SERVICES_POSTGRES_PORT="${FANOUT_SERVICES_POSTGRES_PORT:-43432}"
SERVICES="$CHECKOUT/scripts/services.sh"
URL="postgresql://fanout:fanout@127.0.0.1:$FANOUT_SERVICES_POSTGRES_PORT/dbz_compare"
psql_admin() {
    PGPASSWORD=fanout /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 \
        -p "$FANOUT_SERVICES_POSTGRES_PORT" -U fanout -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
}
set_level() {
    psql_admin -c "ALTER SYSTEM SET wal_level = $1"
    bash "$SERVICES" down postgres 2>/dev/null
    bash "$SERVICES" up postgres >/dev/null 2>&1
}

cd "$CHECKOUT"
bash "$SERVICES" up postgres >/dev/null 2>&1
if [ "$(psql_admin -c "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'")" != 0 ]; then
    echo "a logical replication slot exists: PostgreSQL would not start with wal_level = replica" >&2
    exit 1
fi
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="replica logical"; else order="logical replica"; fi
    for level in $order; do
        set_level "$level"
        .venv/bin/python "$HERE/wal_cost.py" "$URL" "$SECONDS_ROUND" "$CONCURRENCY"
    done
done
set_level logical
