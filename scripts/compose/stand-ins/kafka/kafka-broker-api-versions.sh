#!/usr/bin/env bash
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.yaml \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
