"""Reading the Kafka sink's topics back, for ``fanout verify``: every record of some partitions
from their beginning to their current end, with librdkafka's consumer on a worker thread."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from adapters.readback import PublishedEvent

FETCH_RECORDS = 5000
"""The most records one ``consume()`` returns."""

FETCH_WAIT_SECONDS = 1.0
"""How long one ``consume()`` waits for records."""


async def read_partitions(
    servers: Sequence[str],
    partitions: Sequence[tuple[str, int]],
    *,
    timeout_seconds: float,
    logger: logging.Logger,
) -> AsyncIterator[list[PublishedEvent]]:
    """Every record of ``partitions`` (topic, partition) up to their current end, each
    partition's in offset order, a fetch at a time. Commits nothing."""
    consumer = Consumer(
        {
            "bootstrap.servers": ",".join(servers),
            # Needed by the client, though partitions are assigned and nothing is committed.
            "group.id": f"fanout-readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "socket.connection.setup.timeout.ms": int(timeout_seconds * 1000),
            "logger": logger,
        }
    )
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            low, high = await asyncio.to_thread(
                consumer.get_watermark_offsets,
                TopicPartition(topic, partition),
                timeout=timeout_seconds,
            )
            if high > low:
                ends[(topic, partition)] = high
        if not ends:
            return
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        remaining = set(ends)
        while remaining:
            messages = await asyncio.to_thread(consumer.consume, FETCH_RECORDS, FETCH_WAIT_SECONDS)
            page: list[PublishedEvent] = []
            for message in messages:
                topic, partition = message.topic() or "", message.partition() or 0
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    remaining.discard((topic, partition))
                    continue
                offset = message.offset() or 0
                if offset < ends.get((topic, partition), 0):
                    page.append(_published(topic, partition, message.key(), message.headers()))
                if offset + 1 >= ends.get((topic, partition), 0):
                    remaining.discard((topic, partition))
            if page:
                yield page
    finally:
        await asyncio.to_thread(consumer.close)


def _published(
    topic: str,
    partition: int,
    key: bytes | str | None,
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> PublishedEvent:
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    named = {
        name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs
    }
    version = named.get("version", b"0")
    raw_key = key.encode() if isinstance(key, str) else (key or b"")
    return PublishedEvent(
        topic=topic,
        partition=partition,
        key=raw_key.decode(errors="replace"),
        event_id=named.get("event_id", b"").decode(errors="replace"),
        version=int(version) if version.isdigit() else 0,
    )
