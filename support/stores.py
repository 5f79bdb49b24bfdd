"""Sinks over the real store servers, each in a namespace of its own, and order events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.base import EventEnvelope, Sink
from adapters.elasticsearch import ElasticsearchSink
from adapters.influx import InfluxSink
from adapters.kafka import KafkaSink
from adapters.mongo import MongoSink
from adapters.redis import RedisSink
from support.servers import server_url

STORES = ("mongodb", "redis", "elasticsearch", "influxdb")
# Every store, and InfluxDB once more through its v2 write API.
ADAPTER_VARIANTS = (*STORES, "influxdb-v2", "redis-cluster")


def store_settings(kind: str, tag: str) -> dict[str, Any]:
    """The ``sinks`` entry of a configuration for ``kind``, namespaced by ``tag``."""
    url = server_url(kind.removesuffix("-v2"))
    variants: dict[str, dict[str, Any]] = {
        "mongodb": {"type": "mongodb", "url": url, "database": f"fanout_{tag}"},
        "redis": {"type": "redis", "url": url, "key_prefix": f"{tag}:order:"},
        # Three masters with a replica each; a write counts once a replica has it.
        "redis-cluster": {
            "type": "redis",
            "url": url,
            "key_prefix": f"{tag}:order:",
            "cluster": True,
            "wait_for_replicas": 1,
        },
        "elasticsearch": {"type": "elasticsearch", "url": url, "index": f"orders_{tag}"},
        "influxdb": {"type": "influxdb", "url": url, "database": f"orders_{tag}"},
        "influxdb-v2": {
            "type": "influxdb",
            "url": url,
            "api": "v2",
            "database": f"orders_{tag}",
            "bucket": f"orders_{tag}/autogen",
        },
        # Not a store of orders but a log of every event, so not among STORES.
        "kafka": {"type": "kafka", "url": url, "topic_prefix": f"{tag}.", "partitions": 3},
    }
    return variants[kind]


def make_sink(kind: str, tag: str, name: str | None = None, **options: Any) -> Sink:
    """A sink of ``kind`` over its real server, namespaced by ``tag`` (``options`` override its
    settings)."""
    from gateway.configuration.settings import Settings
    from gateway.relay.sinks import build_sink

    entry = {**store_settings(kind, tag), **options}
    settings = Settings.model_validate(
        {"postgres": {"url": "postgresql://unused/db"}, "sinks": {kind: entry}}
    )
    return build_sink(name or kind, settings.sinks[kind])


async def drop_namespace(sink: Sink) -> None:
    """Remove what a test sink wrote."""
    match sink:
        case MongoSink():
            await sink.collection.database.client.drop_database(sink.collection.database.name)
        case RedisSink():
            keys = [key async for key in sink.client.scan_iter(match=sink.key_prefix + "*")]
            if keys:
                await sink.client.delete(*keys)
        case ElasticsearchSink():
            await sink.client.indices.delete(index=sink.index, ignore_unavailable=True)
        case InfluxSink():
            await sink._client.post("/query", params={"q": f'DROP DATABASE "{sink.database}"'})
        case KafkaSink():
            await sink.delete_topics()


@asynccontextmanager
async def started(kind: str, name: str | None = None, **options: Any) -> AsyncIterator[Sink]:
    """A started sink of ``kind`` in a fresh namespace, cleaned up afterwards (``options``
    override its settings)."""
    sink = make_sink(kind, uuid.uuid4().hex[:10], name, **options)
    await sink.start()
    try:
        yield sink
    finally:
        try:
            await drop_namespace(sink)
        finally:
            await sink.close()


BASE_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def order_event(
    order_id: str,
    version: int,
    status: str = "pending",
    total: str = "42.50",
    *,
    sequence: int | None = None,
    **payload: Any,
) -> EventEnvelope:
    """An order event as the write path appends it, at ``version``."""
    occurred_at = BASE_TIME + timedelta(seconds=version)
    body: dict[str, Any] = {
        "id": order_id,
        "order_number": f"ORD-{order_id[:8]}",
        "customer_id": "c0ffee00-0000-4000-8000-000000000001",
        "customer": {"id": "c0ffee00-0000-4000-8000-000000000001", "email": "c@example.com"},
        "status": status,
        "items": [{"product_sku": "SKU-1", "quantity": 3}],
        "metadata": {"channel": "web"},
        "customer_segment": "vip",
        "subtotal": total,
        "tax_amount": "0.00",
        "shipping_amount": "0.00",
        "total_amount": total,
        "currency": "USD",
        "version": version,
        "created_at": BASE_TIME.isoformat(),
        "updated_at": occurred_at.isoformat(),
        **payload,
    }
    return EventEnvelope(
        event_id=uuid.uuid4(),
        sequence=sequence if sequence is not None else version,
        aggregate_type="order",
        aggregate_id=order_id,
        version=version,
        event_type="order.placed" if version == 1 else "order.status_changed",
        payload=body,
        headers={},
        occurred_at=occurred_at,
    )
