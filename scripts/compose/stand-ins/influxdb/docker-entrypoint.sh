#!/usr/bin/env bash
# InfluxDB 1.8; with DOCKER_INFLUXDB_INIT_MODE=setup, the first start creates the bucket
# DOCKER_INFLUXDB_INIT_BUCKET as a database (marked done in /etc/influxdb2, as 2.x's setup).
set -euo pipefail
influxd -config /etc/influxdb/influxdb.conf &
server=$!
trap 'kill -TERM "$server"' TERM INT
until curl -sf -o /dev/null http://127.0.0.1:8086/ping; do
    kill -0 "$server" 2>/dev/null || exit 1
    sleep 0.5
done
if [ "${DOCKER_INFLUXDB_INIT_MODE:-}" = setup ] && [ ! -f /etc/influxdb2/setup-done ]; then
    : "${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET must be set}"
    curl -sf -o /dev/null -XPOST http://127.0.0.1:8086/query \
        --data-urlencode "q=CREATE DATABASE \"$DOCKER_INFLUXDB_INIT_BUCKET\""
    touch /etc/influxdb2/setup-done
fi
wait "$server"
