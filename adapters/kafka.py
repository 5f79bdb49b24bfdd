"""Kafka: every outbox event, for other services to consume.

Each event goes to its aggregate type's topic (``<topic_prefix><type>`` unless ``topics`` maps
the type elsewhere, or to nothing), keyed by its aggregate id, so one aggregate's events share
a partition. The value is the payload as JSON; the headers carry the event's id, type,
aggregate type, version and time, and the event's own headers.

The producer is idempotent (``acks=all``): the client's own retries never duplicate or reorder
a record. What the relay redelivers after a crash may repeat records; consumers drop what they
have seen by the ``event_id`` header (or by version).

Order: the relay hands this sink each aggregate's events in version order (it asks for it with
:attr:`KafkaSink.needs_version_order`), and the sink keeps that order within a batch by sending
in *waves*: an aggregate's second event goes out only once its first is acknowledged, and after
a failure its later events are held (failed as transient) so that a retry sends them in order.

Replacing the producer (after an error that leaves it unusable, or on close and start) stops
the old one first. When its stop does not finish within the timeout (a broker that does not
answer), what it still holds is failed, its sender task cancelled and its connections closed;
no new producer is started until the old one is proven stopped (its sender task ended, none of
its connections open), so nothing it held goes out after (and ahead of) what the new one sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidProducerEpoch,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    PolicyViolationError,
    ProducerClosed,
    ProducerFenced,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownProducerId,
    UnsupportedForMessageFormatError,
)

from adapters.base import Delivery, EventEnvelope, Health
from adapters.kafka_url import bootstrap_servers
from adapters.readback import PublishedEvent

log = logging.getLogger("adapters.kafka")

UNACKNOWLEDGED_KEPT = 100_000
"""How many sends still waiting for the broker's acknowledgement are remembered by event."""

LEADER_POLL_SECONDS = 0.05
"""How often the broker's metadata is asked whether topics just created have their leaders."""

KNOWN_AGGREGATE_TYPES = ("order", "customer")
"""The gateway's own aggregate types, whose topics are created when the sink starts."""

# Errors about one record that sending it again cannot fix: it is dead-lettered. Everything
# else (a broker down, a leader moving, a timeout, an error this list does not know) is
# transient, whatever the client's ``retriable`` flag says: its delivery timeout, for one, is
# not flagged retriable, yet the next attempt may well succeed.
PERMANENT_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    PolicyViolationError,
    UnsupportedForMessageFormatError,
)


# Errors that leave the producer itself unusable: the next batch starts on a new one (a new
# producer id and sequence numbers).
PRODUCER_ERRORS: tuple[type[KafkaError], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    ProducerFenced,
    InvalidProducerEpoch,
    ProducerClosed,
)


def replaces_producer(error: BaseException | None) -> bool:
    """Whether a send that failed with ``error`` leaves the producer unusable, so that the next
    batch goes out on a new one."""
    return isinstance(error, PRODUCER_ERRORS)


@dataclass(frozen=True)
class ProducerRemains:
    """What still runs of a producer that was told to stop."""

    sender_running: bool
    open_connections: int


def may_send(stopping: Iterable[ProducerRemains]) -> bool:
    """Whether a new producer may send: only once every producer it replaces has stopped for
    good (its sender task ended and none of its connections open), since a record one of them
    still holds would otherwise go out after what the new one sends."""
    return all(not r.sender_running and r.open_connections == 0 for r in stopping)


class PreviousProducerRunning(Exception):
    """A producer being replaced could not be stopped yet: nothing is sent until it is."""


def delivery_for(error: BaseException) -> Delivery:
    """The outcome of a record whose send failed with ``error``."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, PERMANENT_ERRORS):
        return Delivery.permanent(text)
    return Delivery.transient(text)


def waves(keys: Sequence[str]) -> list[list[int]]:
    """The indexes of ``keys`` in sending rounds: round *n* holds each key's *n*-th occurrence,
    so a key's records are sent one round after another, in the order given."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    return rounds


@dataclass(frozen=True)
class Record:
    """One event as it is published."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


def record_for(event: EventEnvelope, topic: str) -> Record:
    """The record publishing ``event`` on ``topic``."""
    headers = [(name, value.encode()) for name, value in event.headers.items()]
    headers += [
        ("event_id", str(event.event_id).encode()),
        ("event_type", event.event_type.encode()),
        ("aggregate_type", event.aggregate_type.encode()),
        ("version", str(event.version).encode()),
        ("occurred_at", event.occurred_at.isoformat().encode()),
    ]
    return Record(
        topic=topic,
        key=event.aggregate_id.encode(),
        value=json.dumps(event.payload, separators=(",", ":")).encode(),
        headers=headers,
        timestamp_ms=int(event.occurred_at.timestamp() * 1000),
    )


class KafkaSink:
    """Publishes every event to its aggregate type's topic with an idempotent producer."""

    needs_version_order = True
    """Ask the relay for each aggregate's events in version order, one batch at a time."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        topic_prefix: str = "fanout.",
        topics: Mapping[str, str | None] | None = None,
        create_topics: bool = True,
        partitions: int = 6,
        replication_factor: int = 1,
        compression: str = "lz4",
        linger_ms: int = 5,
        max_request_bytes: int = 1_048_576,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._name = name
        self._servers = bootstrap_servers(url)
        self._topic_prefix = topic_prefix
        self._topics = dict(topics or {})
        self._create_topics = create_topics
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._compression = None if compression == "none" else compression
        self._linger_ms = linger_ms
        self._max_request_bytes = max_request_bytes
        self._timeout_s = timeout_seconds
        self._timeout_ms = int(timeout_seconds * 1000)
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._ready_topics: set[str] = set()
        self._renew_producer = False
        self._stopping: list[AIOKafkaProducer] = []
        self._unacknowledged: dict[UUID, asyncio.Future[Any]] = {}

    @property
    def name(self) -> str:
        return self._name

    def topic_for(self, aggregate_type: str) -> str | None:
        """The topic of an aggregate type's events (None: not published)."""
        if aggregate_type in self._topics:
            return self._topics[aggregate_type]
        return f"{self._topic_prefix}{aggregate_type}"

    async def start(self) -> None:
        """Connect the producer and the admin client, and create the gateway's topics.

        Raises :class:`PreviousProducerRunning` while a producer this sink replaced cannot be
        proven stopped."""
        await self._admin_client()
        if self._producer is None:
            await self._finish_stopping()
            self._producer = await self._started_producer()
        known = [*KNOWN_AGGREGATE_TYPES, *self._topics]
        await self._ensure_topics({t for a in known if (t := self.topic_for(a)) is not None})

    async def close(self) -> None:
        """Flush and stop the producer (forcing it closed when it cannot flush within the
        timeout), and close the admin client."""
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        if producer is not None:
            self._stopping.append(producer)
        try:
            await self._finish_stopping()
        except PreviousProducerRunning as error:
            log.warning("%s: %s", self._name, error)
        if admin is not None:
            await admin.close()

    async def _finish_stopping(self) -> None:
        """Stop every producer being replaced; raise :class:`PreviousProducerRunning` if one
        of them may still send."""
        remains = {producer: await self._stop_producer(producer) for producer in self._stopping}
        self._stopping = [p for p, left in remains.items() if not may_send([left])]
        if not may_send(remains.values()):
            raise PreviousProducerRunning(
                f"a replaced producer is still running: {list(remains.values())}"
            )

    async def _stop_producer(self, producer: AIOKafkaProducer) -> ProducerRemains:
        """Stop a producer, flushing what it holds for at most the timeout (a broker that is
        down would otherwise hold the stop forever), then force what is left closed."""
        try:
            await asyncio.wait_for(producer.stop(), self._timeout_s)
        except (KafkaError, TimeoutError) as error:
            log.warning("%s: the producer stopped without flushing: %r", self._name, error)
        remains = remains_of(producer)
        if may_send([remains]):
            return remains
        return await force_close(producer, self._timeout_s)

    async def health(self) -> Health:
        """Ask the cluster for its brokers, connecting the admin client first if the sink was
        not started (as a health check does), each within the timeout."""
        try:
            admin = await asyncio.wait_for(self._admin_client(), self._timeout_s)
            cluster = await asyncio.wait_for(admin.describe_cluster(), self._timeout_s)
        except (KafkaError, TimeoutError, OSError) as error:
            return Health(False, f"{type(error).__name__}: {error}")
        return Health(True, f"{len(cluster['brokers'])} broker(s)")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """Publish the batch; each aggregate's events go out in the order given."""
        results = [Delivery.ok()] * len(batch)
        records: list[tuple[int, Record]] = []
        for index, event in enumerate(batch):
            topic = self.topic_for(event.aggregate_type)
            if topic is None:
                continue
            try:
                records.append((index, record_for(event, topic)))
            except (TypeError, ValueError) as error:
                results[index] = Delivery.permanent(f"cannot encode the event: {error}")
        if not records:
            return results
        producer = await self._producer_for_batch()
        await self._ensure_topics({record.topic for _, record in records})
        failed_keys: dict[tuple[str, bytes], str] = {}
        for wave in waves([f"{r.topic}\0{r.key!r}" for _, r in records]):
            sending: dict[int, tuple[Record, asyncio.Future[Any]]] = {}
            for index, record in (records[position] for position in wave):
                held_by = failed_keys.get((record.topic, record.key))
                if held_by is not None:
                    results[index] = Delivery.held(f"held behind a failed version: {held_by}")
                    continue
                try:
                    acknowledgement = await self._acknowledgement(
                        producer, batch[index].event_id, record
                    )
                except Exception as error:  # refused before it was queued (too large, no room)
                    results[index] = delivery_for(error)
                    failed_keys[(record.topic, record.key)] = results[index].error or ""
                else:
                    sending[index] = (record, acknowledgement)
            if sending:
                await asyncio.wait([a for _, a in sending.values()], timeout=self._timeout_s)
            for index, (record, acknowledgement) in sending.items():
                outcome = self._outcome(producer, batch[index].event_id, acknowledgement)
                if outcome is not None:
                    results[index] = outcome
                    failed_keys[(record.topic, record.key)] = outcome.error or ""
        return results

    async def _acknowledgement(
        self, producer: AIOKafkaProducer, event_id: UUID, record: Record
    ) -> asyncio.Future[Any]:
        """The future of the event's record: the one of an earlier attempt if it is still
        pending (sending again would only queue a copy behind it) or has succeeded since, else
        that of a new send."""
        pending = self._unacknowledged.get(event_id)
        if pending is not None and (not pending.done() or _succeeded(pending)):
            return pending
        if len(self._unacknowledged) >= UNACKNOWLEDGED_KEPT:
            # Left by events the relay gave up (dead-lettered) while their send was pending.
            self._unacknowledged = {e: f for e, f in self._unacknowledged.items() if not f.done()}
        acknowledgement: asyncio.Future[Any] = await producer.send(
            record.topic,
            record.value,
            key=record.key,
            headers=record.headers,
            timestamp_ms=record.timestamp_ms,
        )
        self._unacknowledged[event_id] = acknowledgement
        return acknowledgement

    def _outcome(
        self, producer: AIOKafkaProducer, event_id: UUID, acknowledgement: asyncio.Future[Any]
    ) -> Delivery | None:
        """None when the broker acknowledged the record that ``producer`` sent; else why it is
        not delivered."""
        if not acknowledgement.done():
            return Delivery.transient(
                f"not acknowledged within {self._timeout_s:g} s (kept queued)"
            )
        self._unacknowledged.pop(event_id, None)
        if acknowledgement.cancelled():
            return Delivery.transient("the send was cancelled")
        error = acknowledgement.exception()
        if error is None:
            return None
        if replaces_producer(error) and producer is self._producer:
            self._renew_producer = True
        return delivery_for(error)

    async def published(self, topics: Iterable[str]) -> AsyncIterator[list[PublishedEvent]]:
        """Every record of ``topics`` (those that exist) up to their current end, partition
        by partition in offset order, a fetch at a time."""
        admin = await self._admin_client()
        described = await admin.describe_topics(sorted(set(topics)))
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        ]
        if not partitions:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            enable_auto_commit=False,
            request_timeout_ms=self._timeout_ms,
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining:
                fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
                page: list[PublishedEvent] = []
                for tp, messages in fetched.items():
                    for message in messages:
                        if message.offset < ends[tp]:
                            page.append(_published(tp, message.key, message.headers))
                    if messages and messages[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                if page:
                    yield page
        finally:
            await consumer.stop()

    async def delete_topics(self) -> None:
        """Delete the topics this sink created or found (for tests and teardown)."""
        if self._ready_topics:
            admin = await self._admin_client()
            await admin.delete_topics(sorted(self._ready_topics), timeout_ms=self._timeout_ms)
            self._ready_topics.clear()

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._servers, request_timeout_ms=self._timeout_ms
            )
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def _producer_for_batch(self) -> AIOKafkaProducer:
        if self._producer is not None and self._renew_producer:
            self._stopping.append(self._producer)
            self._producer = None
            self._unacknowledged.clear()
        self._renew_producer = False
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        return self._producer

    async def _started_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            acks="all",
            enable_idempotence=True,
            compression_type=self._compression,
            linger_ms=self._linger_ms,
            max_request_size=self._max_request_bytes,
            request_timeout_ms=self._timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _ensure_topics(self, topics: set[str]) -> None:
        """Create those of ``topics`` not known to exist (when configured to)."""
        missing = topics - self._ready_topics
        if not missing or not self._create_topics or self._admin is None:
            return
        response = await self._admin.create_topics(
            [NewTopic(t, self._partitions, self._replication_factor) for t in sorted(missing)],
            timeout_ms=self._timeout_ms,
        )
        for topic, code, message in _topic_errors(response):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"cannot create topic {topic!r}: error {code} {message or ''}")
        await self._wait_for_leaders(missing)
        self._ready_topics |= missing

    async def _wait_for_leaders(self, topics: set[str]) -> None:
        """Wait (at most the timeout) until the broker's metadata gives every partition of
        ``topics`` a leader. A topic just created is not in it at once, and a send until then
        is answered "unknown topic" or "not leader": retried by the client, but logged."""
        assert self._admin is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                while True:
                    if all_led(await self._admin.describe_topics(sorted(topics)), topics):
                        return
                    await asyncio.sleep(LEADER_POLL_SECONDS)


def all_led(described: Sequence[Mapping[str, Any]], topics: set[str]) -> bool:
    """Whether a metadata answer (``describe_topics``) holds every topic of ``topics``, each
    with partitions, every one of them with a leader."""
    led = {
        entry["topic"]
        for entry in described
        if entry["error_code"] == 0
        and entry["partitions"]
        and all(p["error_code"] == 0 and p["leader"] >= 0 for p in entry["partitions"])
    }
    return topics <= led


def remains_of(producer: AIOKafkaProducer) -> ProducerRemains:
    """What still runs of ``producer``: aiokafka tells neither, so this reads the sender task
    and the connections its own ``stop()`` and its client's ``close()`` act on."""
    sender = producer._sender.sender_task
    connections = producer.client._conns.values()
    return ProducerRemains(
        sender_running=sender is not None and not sender.done(),
        open_connections=sum(1 for connection in connections if connection.connected()),
    )


async def force_close(producer: AIOKafkaProducer, within: float) -> ProducerRemains:
    """Close what is left of a producer whose ``stop()`` did not finish, for at most
    ``within`` seconds: fail the records it holds, cancel its sender task and close its
    connections. What is left of it afterwards (nothing, unless the time ran out)."""
    sender = producer._sender.sender_task
    accumulator = producer._message_accumulator
    held = [*accumulator._pending_batches, *chain.from_iterable(accumulator._batches.values())]
    accumulator.fail_all(ProducerClosed())
    for batch in held:
        # Whoever waited on these (its sender, the sink's retired sends) no longer does: the
        # error is taken so that asyncio does not report it as never retrieved.
        for future in (batch._drain_waiter, *(f for f, _ in batch._msg_futures)):
            if future.done() and not future.cancelled():
                future.exception()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while sender is not None and not sender.done():
                # A cancelled sender first waits for its requests in flight: closing the
                # connections fails them, and cancelling again ends a wait that closing does
                # not (for metadata its closed client no longer fetches).
                sender.cancel()
                await producer.client.close()
                await asyncio.wait({sender}, timeout=0.1)
            # A request in flight may have opened a connection meanwhile.
            await producer.client.close()
    return remains_of(producer)


def _succeeded(acknowledgement: asyncio.Future[Any]) -> bool:
    return not acknowledgement.cancelled() and acknowledgement.exception() is None


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of each topic of a CreateTopics response."""
    return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in response.topic_errors]


def _published(
    partition: TopicPartition, key: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> PublishedEvent:
    named = dict(headers)
    version = named.get("version", b"0")
    return PublishedEvent(
        topic=partition.topic,
        partition=partition.partition,
        key=(key or b"").decode(errors="replace"),
        event_id=named.get("event_id", b"").decode(errors="replace"),
        version=int(version) if version.isdigit() else 0,
    )
