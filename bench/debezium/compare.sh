#!/usr/bin/env bash
# Debezium (Kafka Connect standalone + PostgreSQL connector + Outbox Event Router) vs the project's
# `fanout relay` with only its Kafka sink, on the same PostgreSQL 15 and Kafka 4.1.1 broker
# (scripts/services.sh of the checkout). Prints a table and writes the results as JSON (RESULTS).
# Not part of CI: the first run downloads Kafka Connect and the connector from Maven Central.
#
#   bench/debezium/compare.sh [N=20000] [RATES=200]
#
# N: events of the drain phase (0: none). RATES: the steady phases' offered orders/s, one or a
# comma-separated list (300,600).
# Environment (defaults):
#   CHECKOUT                       the project this script belongs to (its .venv is made if missing)
#   FANOUT_SERVICES_DIR            CHECKOUT/.services/debezium-compare (git-ignored; not the
#                                  checkout's own .services/postgres)
#   FANOUT_SERVICES_POSTGRES_PORT  43432      FANOUT_SERVICES_KAFKA_PORT  43092 (controller +1)
#   CONNECT_PORT                   43083 (Kafka Connect REST)
#   DEBEZIUM_VERSION               3.4.3.Final (the newest built against Kafka 4.1.1)
#   CONNECT_HEAP                   "-Xms256m -Xmx1g"
#   SECONDS_STEADY 30, WRITERS 2 (writer processes of the steady phase)
#   REPEATS        1: steady runs of each relay at each rate (the p99's spread needs several)
#   FANOUT_VARIANTS  more fanout relays to run beside the default one, separated by ';', each
#                  NAME:key.path=value[,key.path=value] over its settings, for example
#                  "nolinger:relay.linger_ms=0,sinks.kafka.linger_ms=0"
#   DBZ_POLL_MS    10: Debezium's steady phase once more with poll.interval.ms=10 (its
#                  default, 500, is most of its lag at low rates); 0 skips it
#   STOP_SERVICES  auto: stop PostgreSQL and Kafka at the end if this run started them; 1, 0
#   KEEP_SLOT      0: drop Debezium's replication slot at the end (a slot left behind keeps WAL)
#   RESULTS        CHECKOUT/bench/results/debezium_compare.json
# What it changes: PostgreSQL's wal_level is set to logical (ALTER SYSTEM + restart through
# services.sh); database dbz_compare is dropped and recreated; topics fanout.order and
# dbz.order are recreated (6 partitions, LogAppendTime).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(cd "${CHECKOUT:-$HERE/../..}" && pwd)"
N="${1:-20000}"
RATES="${2:-200}"
export FANOUT_SERVICES_DIR="${FANOUT_SERVICES_DIR:-$CHECKOUT/.services/debezium-compare}"
export FANOUT_SERVICES_POSTGRES_PORT="${FANOUT_SERVICES_POSTGRES_PORT:-43432}"
export FANOUT_SERVICES_KAFKA_PORT="${FANOUT_SERVICES_KAFKA_PORT:-43092}"
CONNECT_PORT="${CONNECT_PORT:-43083}"
DEBEZIUM_VERSION="${DEBEZIUM_VERSION:-3.4.3.Final}"
CONNECT_HEAP="${CONNECT_HEAP:--Xms256m -Xmx1g}"
STOP_SERVICES="${STOP_SERVICES:-auto}"
RESULTS="${RESULTS:-$CHECKOUT/bench/results/debezium_compare.json}"
SERVICES="$CHECKOUT/scripts/services.sh"
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf '[compare.sh] %s\n' "$*" >&2; }
psql_admin() {
    PGPASSWORD=fanout "$PG_BIN/psql" -h 127.0.0.1 -p "$FANOUT_SERVICES_POSTGRES_PORT" -U fanout \
        -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
}

cd "$CHECKOUT"
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q -e '.[loadtest]'
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$CONNECT_PORT") 2>/dev/null; then
    say "port $CONNECT_PORT (Kafka Connect REST) is taken; set CONNECT_PORT"; exit 1
fi

already="$(bash "$SERVICES" status postgres kafka | grep -c running || true)"
stop_services() {
    if [ "$STOP_SERVICES" = 1 ] || { [ "$STOP_SERVICES" = auto ] && [ "$already" -lt 2 ]; }; then
        bash "$SERVICES" down postgres kafka || true
    fi
}
trap stop_services EXIT
bash "$SERVICES" up postgres kafka >/dev/null  # installs PostgreSQL 15, JDK 17, Maven if missing
JAVA="${JAVA:-$(ls /usr/lib/jvm/java-17-openjdk-*/bin/java | head -1)}"

# Debezium reads the WAL through logical decoding (pgoutput, built in): wal_level = logical,
# which needs a restart.
if [ "$(psql_admin -c 'SHOW wal_level')" != logical ]; then
    say "setting wal_level = logical and restarting PostgreSQL"
    psql_admin -c "ALTER SYSTEM SET wal_level = logical"
    bash "$SERVICES" down postgres
    bash "$SERVICES" up postgres >/dev/null
fi

# Kafka Connect (the broker's version) + Debezium's PostgreSQL connector, from Maven Central.
LIB="$FANOUT_SERVICES_DIR/debezium/lib-$DEBEZIUM_VERSION"
if [ ! -f "$LIB/.complete" ]; then
    say "fetching Kafka Connect 4.1.1 and Debezium $DEBEZIUM_VERSION from Maven Central"
    rm -rf "$LIB"
    mkdir -p "$FANOUT_SERVICES_DIR/debezium/pom" && cp "$HERE/pom.xml" "$FANOUT_SERVICES_DIR/debezium/pom/"
    mvn -B -q -f "$FANOUT_SERVICES_DIR/debezium/pom/pom.xml" "-Ddebezium.version=$DEBEZIUM_VERSION" \
        dependency:copy-dependencies "-DoutputDirectory=$LIB" >&2
    touch "$LIB/.complete"
fi

variants=()
IFS=';' read -r -a specs <<<"${FANOUT_VARIANTS:-}"
for spec in "${specs[@]}"; do
    [ -z "$spec" ] || variants+=(--fanout-variant "$spec")
done

.venv/bin/python "$HERE/compare.py" --events "$N" --rates "$RATES" \
    --seconds "${SECONDS_STEADY:-30}" --writers "${WRITERS:-2}" --repeats "${REPEATS:-1}" \
    "${variants[@]}" \
    --pg-port "$FANOUT_SERVICES_POSTGRES_PORT" --kafka-port "$FANOUT_SERVICES_KAFKA_PORT" \
    --kafka-pidfile "$FANOUT_SERVICES_DIR/kafka/kafka.pid" --connect-port "$CONNECT_PORT" \
    --lib "$LIB" --java "$JAVA" --heap "$CONNECT_HEAP" \
    --work "$FANOUT_SERVICES_DIR/debezium/run" --out "$RESULTS" \
    --debezium-version "$DEBEZIUM_VERSION" --dbz-poll-ms "${DBZ_POLL_MS:-10}" $([ "${KEEP_SLOT:-0}" = 1 ] && echo --keep-slot)
