#!/usr/bin/env bash
# KAFKA_FOO_BAR=value becomes foo.bar=value in server.properties; the log directory is
# formatted (with CLUSTER_ID, or a new id) when it holds no meta.properties.
set -euo pipefail
properties=/opt/kafka/config/server.properties
: >"$properties"
while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) ;;
        KAFKA_*)
            key="${name#KAFKA_}"
            key="${key,,}"
            echo "${key//_/.}=$value" >>"$properties"
            ;;
    esac
done < <(env)
java=(java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.yaml
    -cp '/opt/kafka/libs/*')
log_dirs="$(sed -n 's/^log\.dirs=//p' "$properties")"
if [ ! -f "${log_dirs%%,*}/meta.properties" ]; then
    "${java[@]}" kafka.tools.StorageTool format --config "$properties" \
        --cluster-id "${CLUSTER_ID:-$("${java[@]}" kafka.tools.StorageTool random-uuid)}"
fi
exec "${java[@]}" kafka.Kafka "$properties"
