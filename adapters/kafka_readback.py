"""Reading the Kafka sink's topics back, with librdkafka's consumer on a worker thread: every
record of some partitions from their beginning to their current end (``fanout verify``), or
one event's record found by its time (the console's order page)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from adapters.readback import PublishedEvent, RecordPlace

T = TypeVar("T")

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
    consumer = _reader(servers, timeout_seconds, logger)
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


async def find_record(
    servers: Sequence[str],
    topic: str,
    partitions: Sequence[int],
    event_id: str,
    timestamp_ms: int,
    *,
    scan_limit: int,
    timeout_seconds: float,
    logger: logging.Logger,
) -> RecordPlace | None:
    """Where ``topic`` holds the record of event ``event_id``, whose timestamp is
    ``timestamp_ms``: each partition read from its first record of that time on (Kafka's time
    index), at most ``scan_limit`` records of each; None if none of them is it. A partition the
    broker cannot answer for raises. Commits nothing.

    Every call into the consumer runs on one thread of its own, in turn: cancelled, the lookup
    queues the consumer's close behind the call in flight (librdkafka must not close a consumer
    another thread is using) and returns without waiting for the broker."""
    consumer = _reader(servers, timeout_seconds, logger)
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanout-kafka-find")
    loop = asyncio.get_running_loop()

    def call(function: Callable[..., T], *arguments: Any, **options: Any) -> Awaitable[T]:
        return loop.run_in_executor(thread, partial(function, *arguments, **options))

    try:
        found = await _search(
            consumer,
            call,
            topic,
            partitions,
            event_id.encode(),
            timestamp_ms,
            scan_limit,
            timeout_seconds,
        )
    finally:
        closing = thread.submit(consumer.close)
        thread.shutdown(wait=False)
    # A deadline reached now must not cancel the close while it is still queued.
    await asyncio.shield(asyncio.wrap_future(closing))
    return found


Call = Callable[..., Awaitable[Any]]
"""Runs a consumer method on the lookup's own thread."""


async def _search(
    consumer: Consumer,
    call: Call,
    topic: str,
    partitions: Sequence[int],
    event_id: bytes,
    timestamp_ms: int,
    scan_limit: int,
    timeout_seconds: float,
) -> RecordPlace | None:
    starts = await call(
        consumer.offsets_for_times,
        [TopicPartition(topic, partition, timestamp_ms) for partition in partitions],
        timeout=timeout_seconds,
    )
    for start in starts:
        if start.error is not None:
            raise KafkaException(start.error)
    assigned = [start for start in starts if start.offset >= 0]
    if not assigned:
        return None
    await call(consumer.assign, assigned)
    scanned: Counter[int] = Counter()
    remaining = {start.partition for start in assigned}
    while remaining:
        messages = await call(consumer.consume, FETCH_RECORDS, FETCH_WAIT_SECONDS)
        for message in messages:
            partition = message.partition() or 0
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                remaining.discard(partition)
                continue
            if partition not in remaining:
                continue
            if _header(message.headers(), "event_id") == event_id:
                return RecordPlace(topic, partition, message.offset() or 0)
            scanned[partition] += 1
            if scanned[partition] >= scan_limit:
                remaining.discard(partition)
    return None


def _reader(servers: Sequence[str], timeout_seconds: float, logger: logging.Logger) -> Consumer:
    """A consumer for reading assigned partitions back: it joins no group's work and commits
    nothing, and says when it reaches a partition's end."""
    return Consumer(
        {
            "bootstrap.servers": ",".join(servers),
            # Needed by the client, though partitions are assigned and nothing is committed.
            "group.id": f"fanout-readback-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # librdkafka accepts no less than a second.
            "socket.connection.setup.timeout.ms": max(1000, int(timeout_seconds * 1000)),
            "logger": logger,
        }
    )


def _header(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
    name: str,
) -> bytes | None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    for key, value in pairs:
        if key == name:
            return value.encode() if isinstance(value, str) else value
    return None


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
