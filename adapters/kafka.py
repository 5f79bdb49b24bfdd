"""Kafka: every outbox event, for other services to consume.

Each event goes to its aggregate type's topic (``<topic_prefix><type>`` unless ``topics`` maps
the type elsewhere, or to nothing), keyed by its aggregate id, so one aggregate's events share
a partition (chosen by murmur2 of the key, as the Java client does). The value is the payload
as JSON; the headers carry the event's id, type, aggregate type, version and time, and the
event's own headers.

The client is librdkafka (confluent-kafka's classic producer, driven from asyncio by
:mod:`adapters.kafka_producer`). The producer is idempotent (``acks=all``): the client's own
retries never duplicate or reorder a record. What the relay redelivers after a crash may repeat
records; consumers drop what they have seen by the ``event_id`` header (or by version).

Order: the relay hands this sink each aggregate's events in version order (it asks for it with
:attr:`KafkaSink.needs_version_order`), and the sink keeps that order within a batch by sending
in *waves*: an aggregate's second event goes out only once its first is acknowledged, and after
a failure its later events are held (failed as transient) so that a retry sends them in order.

Replacing the producer (after an error that leaves it unusable, or on close and start) stops
the old one first. When it cannot flush within the timeout (a broker that does not answer),
what it still holds is failed and it is closed (librdkafka's threads ended, its connections
closed); no new producer is started until the old one is proven closed, so nothing it held
goes out after (and ahead of) what the new one sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata
from confluent_kafka.cimpl import NewTopic

from adapters.base import Delivery, EventEnvelope, Health
from adapters.kafka_errors import delivery_for, describe, replaces_producer
from adapters.kafka_producer import (
    DeliveringProducer,
    Outcome,
    ProducerRemains,
    may_send,
    producer_config,
)
from adapters.kafka_readback import find_record, read_partitions
from adapters.kafka_topics import topic_for
from adapters.kafka_url import bootstrap_servers
from adapters.readback import PublishedEvent, RecordPlace

log = logging.getLogger("adapters.kafka")

client_log = logging.getLogger("adapters.kafka.librdkafka")
"""Where librdkafka's own log lines go (it names brokers by address, never a credential)."""

UNACKNOWLEDGED_KEPT = 100_000
"""How many sends still waiting for the broker's acknowledgement are remembered by event."""

LEADER_POLL_SECONDS = 0.05
"""How often the broker's metadata is asked whether topics just created have their leaders."""

KNOWN_AGGREGATE_TYPES = ("order", "customer")
"""The gateway's own aggregate types, whose topics are created when the sink starts."""

FIND_SCAN_RECORDS = 5_000
"""How many records of each partition past an event's time :meth:`KafkaSink.find_record`
reads before it says the log holds no record of the event."""

T = TypeVar("T")


class PreviousProducerRunning(Exception):
    """A producer being replaced could not be stopped yet: nothing is sent until it is."""


class TopicNotCreated(Exception):
    """The broker refused to create a topic the sink publishes to."""


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


def timestamp_ms(occurred_at: datetime) -> int:
    """A record's timestamp: when its event was appended to the outbox, in milliseconds."""
    return int(occurred_at.timestamp() * 1000)


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
        timestamp_ms=timestamp_ms(event.occurred_at),
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
        self._producer_config = producer_config(
            self._servers,
            compression=compression,
            linger_ms=linger_ms,
            max_request_bytes=max_request_bytes,
            timeout_seconds=timeout_seconds,
            logger=client_log,
        )
        self._timeout_s = timeout_seconds
        self._producer: DeliveringProducer | None = None
        self._admin: AdminClient | None = None
        self._ready_topics: set[str] = set()
        self._renew_producer = False
        self._stopping: list[DeliveringProducer] = []
        self._unacknowledged: dict[UUID, asyncio.Future[Outcome]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def producer_config(self) -> dict[str, Any]:
        """librdkafka's settings of the sink's producer (for another producer just like it)."""
        return dict(self._producer_config)

    def topic_for(self, aggregate_type: str) -> str | None:
        """The topic of an aggregate type's events (None: not published)."""
        return topic_for(aggregate_type, self._topic_prefix, self._topics)

    async def start(self) -> None:
        """Start the producer and create the gateway's topics.

        Raises :class:`PreviousProducerRunning` while a producer this sink replaced cannot be
        proven stopped."""
        if self._producer is None:
            await self._finish_stopping()
            self._producer = DeliveringProducer(self._producer_config)
        known = [*KNOWN_AGGREGATE_TYPES, *self._topics]
        await self._ensure_topics({t for a in known if (t := self.topic_for(a)) is not None})

    async def close(self) -> None:
        """Flush and close the producer (failing what it still holds when it cannot flush
        within the timeout), and let go of the admin client."""
        producer, self._producer = self._producer, None
        self._admin = None
        if producer is not None:
            self._stopping.append(producer)
        try:
            await self._finish_stopping()
        except PreviousProducerRunning as error:
            log.warning("%s: %s", self._name, error)

    async def _finish_stopping(self) -> None:
        """Stop every producer being replaced; raise :class:`PreviousProducerRunning` if one
        of them may still send."""
        remains = {producer: await self._stop_producer(producer) for producer in self._stopping}
        self._stopping = [p for p, left in remains.items() if not may_send([left])]
        if not may_send(remains.values()):
            raise PreviousProducerRunning(
                f"a replaced producer is still running: {list(remains.values())}"
            )

    async def _stop_producer(self, producer: DeliveringProducer) -> ProducerRemains:
        """Stop a producer, flushing what it holds for at most the timeout (a broker that is
        down would otherwise hold the stop forever), then close it, failing what is left."""
        if producer.remains().closed:
            return producer.remains()
        unflushed = await producer.flush(self._timeout_s)
        if unflushed:
            log.warning(
                "%s: the producer stopped without flushing: %d record(s) not acknowledged "
                "within %g s are failed",
                self._name,
                unflushed,
                self._timeout_s,
            )
        return await producer.close(self._timeout_s)

    async def health(self) -> Health:
        """Ask the cluster for its brokers (the admin client is created on first use, so an
        unstarted sink answers too), within the timeout."""
        try:
            cluster = await self._admin_call(
                lambda admin: admin.describe_cluster(request_timeout=self._timeout_s)
            )
        except TimeoutError:
            return Health(False, f"TimeoutError: no answer within {self._timeout_s:g} s")
        except (KafkaException, OSError) as error:
            return Health(False, describe(error))
        return Health(True, f"{len(cluster.nodes)} broker(s)")

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
            sending: dict[int, tuple[Record, asyncio.Future[Outcome]]] = {}
            for index, record in (records[position] for position in wave):
                held_by = failed_keys.get((record.topic, record.key))
                if held_by is not None:
                    results[index] = Delivery.held(f"held behind a failed version: {held_by}")
                    continue
                try:
                    acknowledgement = self._acknowledgement(producer, batch[index].event_id, record)
                except (KafkaException, BufferError) as error:  # refused at once (too large, full)
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

    def _acknowledgement(
        self, producer: DeliveringProducer, event_id: UUID, record: Record
    ) -> asyncio.Future[Outcome]:
        """The future of the event's record: the one of an earlier attempt if it is still
        pending (sending again would only queue a copy behind it) or has succeeded since, else
        that of a new send."""
        pending = self._unacknowledged.get(event_id)
        if pending is not None and (not pending.done() or pending.result() is None):
            return pending
        if len(self._unacknowledged) >= UNACKNOWLEDGED_KEPT:
            # Left by events the relay gave up (dead-lettered) while their send was pending.
            self._unacknowledged = {e: f for e, f in self._unacknowledged.items() if not f.done()}
        acknowledgement = producer.send(
            record.topic,
            record.value,
            key=record.key,
            headers=record.headers,
            timestamp_ms=record.timestamp_ms,
        )
        self._unacknowledged[event_id] = acknowledgement
        return acknowledgement

    def _outcome(
        self,
        producer: DeliveringProducer,
        event_id: UUID,
        acknowledgement: asyncio.Future[Outcome],
    ) -> Delivery | None:
        """None when the broker acknowledged the record that ``producer`` sent; else why it is
        not delivered."""
        if not acknowledgement.done():
            return Delivery.transient(
                f"not acknowledged within {self._timeout_s:g} s (kept queued)"
            )
        self._unacknowledged.pop(event_id, None)
        error = acknowledgement.result()
        if error is None:
            return None
        if replaces_producer(error) and producer is self._producer:
            self._renew_producer = True
        return delivery_for(error)

    async def published(self, topics: Iterable[str]) -> AsyncIterator[list[PublishedEvent]]:
        """Every record of ``topics`` (those that exist) up to their current end, partition
        by partition in offset order, a fetch at a time."""
        wanted = set(topics)
        metadata = await self._metadata()
        partitions = [
            (name, partition)
            for name, topic in sorted(metadata.topics.items())
            if name in wanted and topic.error is None
            for partition in sorted(topic.partitions)
        ]
        async for page in read_partitions(
            self._servers, partitions, timeout_seconds=self._timeout_s, logger=client_log
        ):
            yield page

    async def find_record(
        self,
        aggregate_type: str,
        event_id: str,
        occurred_at: datetime,
        *,
        timeout_seconds: float | None = None,
    ) -> RecordPlace | None:
        """Where the topic of ``aggregate_type`` holds the record of event ``event_id``
        (appended to the outbox at ``occurred_at``, the record's timestamp); None when it holds
        none within :data:`FIND_SCAN_RECORDS` records of each partition past that time, or
        has no such topic. Each of the broker's answers is awaited at most ``timeout_seconds``
        (by default the sink's); a topic the broker reports an error for raises."""
        topic = self.topic_for(aggregate_type)
        if topic is None:
            return None
        found = (await self._metadata()).topics.get(topic)
        if found is None:
            return None
        if found.error is not None:
            if found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise KafkaException(found.error)
        return await find_record(
            self._servers,
            topic,
            sorted(found.partitions),
            event_id,
            timestamp_ms(occurred_at),
            scan_limit=FIND_SCAN_RECORDS,
            timeout_seconds=min(timeout_seconds or self._timeout_s, self._timeout_s),
            logger=client_log,
        )

    async def delete_topics(self) -> None:
        """Delete the topics this sink created or found (for tests and teardown)."""
        if self._ready_topics:
            topics = sorted(self._ready_topics)
            await self._admin_calls(
                lambda admin: admin.delete_topics(
                    topics, operation_timeout=self._timeout_s, request_timeout=self._timeout_s
                )
            )
            self._ready_topics.clear()

    def _admin_client(self) -> AdminClient:
        """The admin client, created on first use (it connects when first asked)."""
        if self._admin is None:
            self._admin = AdminClient(
                {
                    "bootstrap.servers": ",".join(self._servers),
                    "socket.connection.setup.timeout.ms": int(self._timeout_s * 1000),
                },
                logger=client_log,
            )
        return self._admin

    async def _admin_call(self, call: Callable[[AdminClient], Future[T]]) -> T:
        """The result of one admin request, within the timeout."""
        admin = self._admin_client()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.wrap_future(call(admin))
        finally:
            admin.poll(0)  # hands over librdkafka's log lines

    async def _admin_calls(
        self, call: Callable[[AdminClient], Mapping[str, Future[Any]]]
    ) -> dict[str, BaseException | None]:
        """What became of each topic of an admin request on topics (None: done), within the
        timeout."""
        admin = self._admin_client()
        try:
            async with asyncio.timeout(self._timeout_s):
                futures = call(admin)
                outcomes = await asyncio.gather(
                    *(asyncio.wrap_future(f) for f in futures.values()), return_exceptions=True
                )
        finally:
            admin.poll(0)
        return {
            topic: outcome if isinstance(outcome, BaseException) else None
            for topic, outcome in zip(futures, outcomes, strict=True)
        }

    async def _metadata(self) -> ClusterMetadata:
        """The cluster's metadata (every topic's partitions and their leaders)."""
        admin = self._admin_client()
        metadata: ClusterMetadata = await asyncio.to_thread(
            admin.list_topics, timeout=self._timeout_s
        )
        admin.poll(0)
        return metadata

    async def _producer_for_batch(self) -> DeliveringProducer:
        if self._producer is not None and self._renew_producer:
            self._stopping.append(self._producer)
            self._producer = None
            self._unacknowledged.clear()
        self._renew_producer = False
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        return self._producer

    async def _ensure_topics(self, topics: set[str]) -> None:
        """Create those of ``topics`` not known to exist (when configured to)."""
        missing = topics - self._ready_topics
        if not missing or not self._create_topics:
            return
        new_topics = [
            NewTopic(
                t, num_partitions=self._partitions, replication_factor=self._replication_factor
            )
            for t in sorted(missing)
        ]
        outcomes = await self._admin_calls(
            lambda admin: admin.create_topics(
                new_topics, operation_timeout=self._timeout_s, request_timeout=self._timeout_s
            )
        )
        for topic, error in outcomes.items():
            if error is not None and not topic_exists(error):
                raise TopicNotCreated(f"cannot create topic {topic!r}: {describe(error)}")
        await self._wait_for_leaders(missing)
        self._ready_topics |= missing

    async def _wait_for_leaders(self, topics: set[str]) -> None:
        """Wait (at most the timeout) until the broker's metadata gives every partition of
        ``topics`` a leader. A topic just created is not in it at once, and a send until then
        is answered "unknown topic" or "not leader": retried by the client, but logged."""
        with contextlib.suppress(TimeoutError, KafkaException):
            async with asyncio.timeout(self._timeout_s):
                while True:
                    if all_led(described_topics(await self._metadata()), topics):
                        return
                    await asyncio.sleep(LEADER_POLL_SECONDS)


def topic_exists(error: BaseException) -> bool:
    """Whether a topic's creation failed only because it exists already."""
    return (
        isinstance(error, KafkaException)
        and isinstance(error.args[0], KafkaError)
        and error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    )


def described_topics(metadata: ClusterMetadata) -> list[dict[str, Any]]:
    """The cluster's metadata as :func:`all_led` reads it: per topic, its error code and its
    partitions, each with its error code and leader (-1: none)."""
    return [
        {
            "topic": name,
            "error_code": topic.error.code() if topic.error is not None else 0,
            "partitions": [
                {
                    "partition": partition.id,
                    "leader": partition.leader,
                    "error_code": partition.error.code() if partition.error is not None else 0,
                }
                for partition in topic.partitions.values()
            ],
        }
        for name, topic in metadata.topics.items()
    ]


def all_led(described: Sequence[Mapping[str, Any]], topics: set[str]) -> bool:
    """Whether a metadata answer holds every topic of ``topics``, each with partitions, every
    one of them with a leader."""
    led = {
        entry["topic"]
        for entry in described
        if entry["error_code"] == 0
        and entry["partitions"]
        and all(p["error_code"] == 0 and p["leader"] >= 0 for p in entry["partitions"])
    }
    return topics <= led
