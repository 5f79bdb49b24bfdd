"""librdkafka's producer (confluent-kafka's classic ``Producer``) driven from asyncio.

The producer reports each record's outcome through a delivery callback that only its
``poll()`` serves; confluent-kafka's own asyncio producer refuses records with headers. So a
thread of the producer's own polls it, and the outcomes its callbacks collect resolve the
records' asyncio futures on the event loop, in one hop per poll rather than one per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

POLL_SECONDS = 0.1
"""How long the polling thread waits for delivery reports in one ``poll()``."""

MESSAGE_TIMEOUTS = 6
"""How many sink timeouts a record may wait in the producer for its acknowledgement
(librdkafka's ``message.timeout.ms``) before it fails: a send not acknowledged within one
timeout stays queued, and the sink's retry waits for that same send instead of queueing a
copy behind it."""

Outcome = KafkaError | None
"""A record's delivery report: None once the broker acknowledged it, else why it failed."""


def producer_config(
    servers: Sequence[str],
    *,
    compression: str,
    linger_ms: int,
    max_request_bytes: int,
    timeout_seconds: float,
    logger: logging.Logger,
) -> dict[str, Any]:
    """librdkafka's settings for the sink's producer: idempotent with ``acks=all`` and at
    most five requests in flight (the client's retries never duplicate or reorder a record),
    keys partitioned by murmur2 as the Java client does, and every wait bounded by the sink's
    timeout."""
    timeout_ms = int(timeout_seconds * 1000)
    return {
        "bootstrap.servers": ",".join(servers),
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "compression.type": compression,
        "linger.ms": linger_ms,
        "message.max.bytes": max_request_bytes,
        "request.timeout.ms": timeout_ms,
        "message.timeout.ms": max(MESSAGE_TIMEOUTS * timeout_ms, linger_ms + 1),
        "socket.connection.setup.timeout.ms": timeout_ms,
        # librdkafka's default (consistent_random, CRC32) would send a key to another
        # partition than the Java client and earlier versions of this sink did.
        "partitioner": "murmur2_random",
        "logger": logger,
    }


@dataclass(frozen=True)
class ProducerRemains:
    """What still runs of a producer that was told to stop."""

    polling: bool
    """Its polling thread has not ended."""
    closed: bool
    """Its ``close()`` returned: librdkafka's threads have ended, its connections are closed."""


def may_send(stopping: Iterable[ProducerRemains]) -> bool:
    """Whether a new producer may send: only once every producer it replaces has stopped for
    good (its polling thread ended and the producer closed), since a record one of them still
    holds would otherwise go out after what the new one sends."""
    return all(not r.polling and r.closed for r in stopping)


class DeliveringProducer:
    """A librdkafka producer whose sends are asyncio futures of their delivery reports.

    Create it inside the event loop that awaits its sends.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(config)
        self._reports: deque[tuple[asyncio.Future[Outcome], Outcome]] = deque()
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()
        self._closing: asyncio.Future[bool] | None = None

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int,
    ) -> asyncio.Future[Outcome]:
        """Queue a record; the future's result is its delivery report.

        Raises what ``produce()`` raises for a record it refuses at once: a
        :class:`confluent_kafka.KafkaException` (too large, say) or ``BufferError`` (the
        producer's queue is full)."""
        delivered: asyncio.Future[Outcome] = self._loop.create_future()
        self._producer.produce(
            topic,
            value,
            key=key,
            headers=headers,  # type: ignore[arg-type]  # a list of pairs is a HeadersType
            timestamp=timestamp_ms,
            on_delivery=partial(self._report, delivered),
        )
        return delivered

    async def flush(self, within: float) -> int:
        """Wait at most ``within`` seconds for every record to be acknowledged; the number of
        records still unacknowledged."""
        left = await asyncio.to_thread(self._producer.flush, within)
        self._hand_over()
        return left

    async def close(self, within: float) -> ProducerRemains:
        """Stop for good, for at most ``within`` seconds: end the polling thread, fail what the
        producer still holds (queued or in flight; a request already written to a broker may
        still be appended by it), then close it. What is left of it afterwards (nothing,
        unless the time ran out; calling again goes on waiting for the same close)."""
        self._stop_polling.set()
        if self._closing is None:
            self._closing = asyncio.ensure_future(asyncio.to_thread(self._purge_and_close))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.shield(self._closing)
        self._hand_over()
        return self.remains()

    def remains(self) -> ProducerRemains:
        """What still runs of this producer."""
        closing = self._closing
        closed = (
            closing is not None
            and closing.done()
            and not closing.cancelled()
            and closing.exception() is None
        )
        return ProducerRemains(polling=self._poller.is_alive(), closed=closed)

    def _purge_and_close(self) -> bool:
        self._poller.join()
        self._producer.purge(in_queue=True, in_flight=True)
        # Serves the purged records' delivery reports, then ends librdkafka's threads.
        return self._producer.close()

    def _poll(self) -> None:
        while not self._stop_polling.is_set():
            self._producer.poll(POLL_SECONDS)
            self._hand_over()

    def _report(
        self, delivered: asyncio.Future[Outcome], error: KafkaError | None, _: Message | None
    ) -> None:
        # Called by librdkafka on whichever thread serves the reports.
        self._reports.append((delivered, error))

    def _hand_over(self) -> None:
        """Resolve the futures of the reports served so far, on the event loop."""
        if not self._reports:
            return
        reports: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        while self._reports:
            reports.append(self._reports.popleft())
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits them
            self._loop.call_soon_threadsafe(_resolve, reports)


def _resolve(reports: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for delivered, outcome in reports:
        if not delivered.done():
            delivered.set_result(outcome)
