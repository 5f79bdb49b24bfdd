"""The relay's wiring of the sink library: a client for each configured sink."""

from __future__ import annotations

from collections.abc import Callable

from adapters.base import Sink
from adapters.elasticsearch import ElasticsearchSink
from adapters.influx import InfluxSink
from adapters.kafka import KafkaSink
from adapters.memory import MemorySink
from adapters.mongo import MongoSink
from adapters.redis import RedisSink
from gateway.configuration.settings import (
    ElasticsearchSinkSettings,
    InfluxSinkSettings,
    KafkaSinkSettings,
    MemorySinkSettings,
    MongoSinkSettings,
    RedisSinkSettings,
    Settings,
    SinkSettings,
)


def enabled_sinks(
    settings: Settings, adjust: Callable[[SinkSettings], SinkSettings] | None = None
) -> dict[str, Sink]:
    """A client of every enabled sink, by name (each sink's settings passed through
    ``adjust`` first, if given)."""
    return {
        name: build_sink(name, adjust(sink) if adjust is not None else sink)
        for name, sink in settings.sinks.items()
        if sink.enabled
    }


def build_sink(name: str, settings: SinkSettings) -> Sink:
    """The sink described by one entry of the ``sinks`` configuration section."""
    timeout = settings.timeout_seconds
    match settings:
        case MemorySinkSettings():
            return MemorySink(
                name, journal_path=settings.journal_path, delay_seconds=settings.delay_seconds
            )
        case MongoSinkSettings():
            return MongoSink(
                name,
                settings.url.get_secret_value(),
                database=settings.database,
                collection=settings.collection,
                bulk_size=settings.bulk_size,
                timeout_seconds=timeout,
            )
        case RedisSinkSettings():
            return RedisSink(
                name,
                settings.url.get_secret_value(),
                key_prefix=settings.key_prefix,
                ttl_seconds=settings.ttl_seconds,
                timeout_seconds=timeout,
                cluster=settings.cluster,
                wait_for_replicas=settings.wait_for_replicas,
            )
        case ElasticsearchSinkSettings():
            password = settings.password.get_secret_value() if settings.password else None
            return ElasticsearchSink(
                name,
                settings.url.get_secret_value(),
                index=settings.index,
                timeout_seconds=timeout,
                api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                basic_auth=(settings.username, password or "") if settings.username else None,
                ca_certs=str(settings.ca_certs) if settings.ca_certs else None,
                verify_certs=settings.verify_certs,
            )
        case InfluxSinkSettings():
            return InfluxSink(
                name,
                settings.url.get_secret_value(),
                api=settings.api,
                measurement=settings.measurement,
                database=settings.database,
                retention_policy=settings.retention_policy,
                create_database=settings.create_database,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                org=settings.org,
                bucket=settings.bucket,
                token=settings.token.get_secret_value() if settings.token else None,
                timeout_seconds=timeout,
                verify_ssl=settings.verify_ssl,
            )
        case KafkaSinkSettings():
            return KafkaSink(
                name,
                settings.url.get_secret_value(),
                topic_prefix=settings.topic_prefix,
                topics=settings.topics,
                create_topics=settings.create_topics,
                partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                compression=settings.compression,
                linger_ms=settings.linger_ms,
                max_request_bytes=settings.max_request_bytes,
                timeout_seconds=timeout,
            )
