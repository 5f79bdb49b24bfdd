"""The Kafka sink against a real broker (Apache Kafka 4.1, KRaft, one node): every outbox
event on its aggregate type's topic, keyed by aggregate on the partition the Java client (and
the earlier aiokafka sink) chooses, each aggregate's versions in order even when the outbox's
read order inverts them, a record too large dead-lettered, a broker outage that loses nothing,
and a producer replaced while the broker stalls stopped for good before its successor sends.

The records are read back with another client (aiokafka), so the checks do not rest on the
sink's own."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from adapters.base import Delivery, EventEnvelope, Outcome
from adapters.kafka import KafkaSink
from adapters.kafka_producer import ProducerRemains
from adapters.kafka_url import bootstrap_servers
from gateway import Event
from gateway.operations.verify_log import verify_log
from gateway.relay.sink_calls import apply_safely
from support.eventually import eventually
from support.servers import managed, paused_server, server_url, start_server, stop_server
from support.stores import order_event, started
from tests.acceptance.relay_support import World
from tests.acceptance.test_backfill import keep_ordering


@pytest.fixture
async def kafka(request: pytest.FixtureRequest) -> AsyncIterator[KafkaSink]:
    """A Kafka sink with topics of this test's own, deleted afterwards."""
    options: dict[str, Any] = getattr(request, "param", {})
    async with started("kafka", **options) as sink:
        assert isinstance(sink, KafkaSink)
        yield sink


async def consume(topic: str) -> list[Any]:
    """Every record of ``topic``, partition by partition, in offset order."""
    servers = bootstrap_servers(server_url("kafka"))
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while sum(1 for r in records) < sum(ends.values()):
            fetched = await consumer.getmany(timeout_ms=1000)
            for batch in fetched.values():
                records += batch
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


def first_versions(records: list[Any], key: str) -> list[int]:
    """The versions of ``key``'s events in the order they first appear."""
    seen: list[str] = []
    versions: list[int] = []
    for record in records:
        headers = dict(record.headers)
        if record.key.decode() == key and headers["event_id"] not in seen:
            seen.append(headers["event_id"])
            versions.append(int(headers["version"]))
    return versions


async def outbox_count(world: World) -> int:
    return int(await world.gateway.pool.fetchval("SELECT count(*) FROM outbox"))


async def test_every_event_is_published_on_its_aggregate_types_topic(
    world: World, kafka: KafkaSink
) -> None:
    await world.place_orders(20, transitions=2)
    await world.publish_items(5)

    await world.drain(kafka)

    drift = await verify_log(world.gateway.pool, kafka.name, kafka)
    assert drift.counts() == {
        "sink": kafka.name,
        "matched": await outbox_count(world),
        "missing": 0,
        "out_of_order": 0,
        "repeated": 0,
        "not_retained": 0,
        "unreadable": None,
        "clean": True,
    }
    orders = await consume(kafka.topic_for("order") or "")
    assert len(orders) == 20 * 3
    payloads = {
        str(row["event_id"]): row["payload"]
        for row in await world.gateway.pool.fetch("SELECT event_id, payload FROM outbox")
    }
    partitions: dict[bytes, set[int]] = {}
    for record in orders:
        partitions.setdefault(record.key, set()).add(record.partition)
        headers = dict(record.headers)
        assert json.loads(record.value) == payloads[headers["event_id"].decode()]
        assert first_versions([record], record.key.decode()) == [int(headers["version"])]
    assert all(len(held) == 1 for held in partitions.values())  # one partition per order
    # The partition the Java client's murmur2 gives the key, as the aiokafka sink chose it: an
    # order's later events land where its earlier ones did before the client changed.
    murmur2 = DefaultPartitioner()
    assert partitions == {key: {murmur2(key, [0, 1, 2], [0, 1, 2])} for key in partitions}
    for key in partitions:
        assert first_versions(orders, key.decode()) == [1, 2, 3]
    assert len(await consume(kafka.topic_for("customer") or "")) == 1
    assert len(await consume(kafka.topic_for("item") or "")) == 5


async def test_an_events_record_is_found_by_its_time_at_its_partition_and_offset(
    world: World, kafka: KafkaSink
) -> None:
    await world.place_orders(30, transitions=1)
    await world.drain(kafka)
    rows = await world.gateway.pool.fetch(
        "SELECT event_id, aggregate_type, occurred_at FROM outbox WHERE aggregate_type = 'order'"
    )
    held = {
        dict(record.headers)["event_id"].decode(): (record.partition, record.offset)
        for record in await consume(kafka.topic_for("order") or "")
    }

    for row in random.sample(rows, 6):  # each lookup opens a consumer of its own
        found = await kafka.find_record("order", str(row["event_id"]), row["occurred_at"])
        assert found is not None
        assert (found.topic, found.partition, found.offset) == (
            kafka.topic_for("order"),
            *held[str(row["event_id"])],
        )
    latest = max(row["occurred_at"] for row in rows)
    assert await kafka.find_record("order", str(uuid.uuid4()), latest) is None
    assert await kafka.find_record("order", str(uuid.uuid4()), latest + timedelta(days=1)) is None
    assert await kafka.find_record("shipment", str(uuid.uuid4()), latest) is None


def event(aggregate_id: str, version: int) -> Event:
    return Event(
        aggregate_type="item",
        aggregate_id=aggregate_id,
        event_type="item.changed",
        version=version,
        payload={"version": version},
    )


@pytest.mark.parametrize("later_version_readable_first", [False, True])
async def test_versions_read_out_of_order_are_published_in_version_order(
    world: World, kafka: KafkaSink, later_version_readable_first: bool
) -> None:
    """Version 3's transaction takes its id before version 2's and commits after it, so the
    outbox's read order is 1, 3, 2. With another transaction open in between, version 3 is
    even readable while version 2 is not yet."""
    gateway, pool = world.gateway, world.gateway.pool
    item = f"item-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as connection, connection.transaction():
        await gateway.publish(connection, event(item, 1))
    async with pool.acquire() as late, pool.acquire() as between, pool.acquire() as early:
        late_transaction = late.transaction()
        await late_transaction.start()
        await late.fetchval("SELECT pg_current_xact_id()")
        between_transaction = between.transaction()
        if later_version_readable_first:
            await between_transaction.start()
            await between.fetchval("SELECT pg_current_xact_id()")
        async with early.transaction():
            await gateway.publish(early, event(item, 2))
        await gateway.publish(late, event(item, 3))
        await late_transaction.commit()
        read_order = await pool.fetch(
            "SELECT version FROM outbox WHERE aggregate_id = $1 ORDER BY txid, id", item
        )
        assert [row["version"] for row in read_order] == [1, 3, 2]

        if later_version_readable_first:
            # The relay cannot read version 2 yet: it is published from the lookup. (A drain
            # until idle would wait for the open transaction that holds version 2 back.)
            relay = world.relay(kafka)
            running = asyncio.create_task(relay.run())
            try:

                async def published_in_order() -> bool:
                    records = await consume(kafka.topic_for("item") or "")
                    return first_versions(records, item) == [1, 2, 3]

                await eventually(published_in_order)
            finally:
                relay.stop()
                await running
            await between_transaction.commit()
        await world.drain(kafka)

    records = await consume(kafka.topic_for("item") or "")
    assert first_versions(records, item) == [1, 2, 3]
    drift = await verify_log(pool, kafka.name, kafka)
    assert drift.clean and drift.matched == 3
    # Published early, version 2 is published again when the relay reaches it.
    assert drift.repeated == (1 if later_version_readable_first else 0)


@pytest.mark.parametrize("kafka", [{"max_request_bytes": 2048}], indirect=True)
async def test_a_record_too_large_is_dead_lettered_and_the_next_version_still_goes_out(
    world: World, kafka: KafkaSink
) -> None:
    big = Event(
        aggregate_type="item",
        aggregate_id="big",
        event_type="item.changed",
        version=1,
        payload={"blob": "x" * 5000},
    )
    async with world.gateway.pool.acquire() as connection, connection.transaction():
        await world.gateway.publish(connection, [big, event("big", 2), event("small", 1)])

    await world.drain(kafka)

    dead = await world.gateway.pool.fetch("SELECT version, reason, last_error FROM dead_letters")
    assert [(row["version"], row["reason"]) for row in dead] == [(1, "permanent")]
    assert dead[0]["last_error"].startswith("MSG_SIZE_TOO_LARGE: ")
    records = await consume(kafka.topic_for("item") or "")
    assert first_versions(records, "big") == [2]
    assert first_versions(records, "small") == [1]
    drift = await verify_log(world.gateway.pool, kafka.name, kafka)
    assert drift.clean and drift.matched == 2  # the dead letter is not counted missing


@pytest.mark.parametrize("kafka", [{"max_request_bytes": 2048}], indirect=True)
async def test_a_version_behind_a_failed_one_is_held_untried(kafka: KafkaSink) -> None:
    """The version behind a refused one is not sent, and says it was not tried: the relay
    counts no attempt of its own against it."""
    order = str(uuid.uuid4())
    too_large = order_event(order, 1, blob="x" * 5000)
    refused, held = await kafka.apply([too_large, order_event(order, 2)])
    assert refused.outcome is Outcome.PERMANENT, refused
    assert held.outcome is Outcome.TRANSIENT and not held.attempted, held
    assert "held behind a failed version" in (held.error or "")
    assert first_versions(await consume(kafka.topic_for("order") or ""), order) == []


@pytest.mark.parametrize("kafka", [{"timeout_seconds": 3}], indirect=True)
async def test_a_broker_stopped_mid_delivery_loses_nothing(world: World, kafka: KafkaSink) -> None:
    assert managed("kafka"), "the outage test stops the broker scripts/services.sh runs"
    stop = asyncio.Event()
    relay = world.relay(kafka, max_attempts=3, backoff_max_seconds=0.5, batch_size=50)
    relaying = asyncio.create_task(relay.run())
    ordering = asyncio.create_task(keep_ordering(world, stop, random.Random(11)))
    pool = world.gateway.pool
    restarted = False
    try:

        async def delivered(count: int) -> bool:
            total = await pool.fetchval(
                "SELECT coalesce(sum(delivered_total), 0) FROM relay_positions WHERE sink = $1",
                kafka.name,
            )
            return int(total) >= count

        await eventually(lambda: delivered(50), within=60)
        stop_server("kafka")

        async def retrying() -> bool:
            waiting = await pool.fetchval(
                "SELECT coalesce(sum(retrying), 0) FROM relay_positions WHERE sink = $1",
                kafka.name,
            )
            return int(waiting) > 0

        await eventually(retrying, within=60)
        start_server("kafka")
        restarted = True
    finally:
        stop.set()
        await ordering
        if not restarted:
            start_server("kafka")
        relay.stop()
        await relaying

    # More attempts than the outage's have now: an attempt made while the broker was coming
    # back may have counted.
    await world.drain(kafka, max_attempts=200, backoff_max_seconds=0.5)
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    drift = await verify_log(pool, kafka.name, kafka)
    assert drift.clean, drift.counts()
    assert drift.matched == await outbox_count(world)


async def deliver(sink: KafkaSink, events: list[EventEnvelope]) -> None:
    """Apply ``events`` until every one is delivered, as the relay retries them."""

    async def delivered() -> bool:
        results = await apply_safely(sink, events)
        return all(result.outcome is Outcome.DELIVERED for result in results)

    await eventually(delivered, within=60)


@pytest.mark.parametrize("kafka", [{"timeout_seconds": 2}], indirect=True)
@pytest.mark.parametrize("replaced_on", ["renewal", "close"])
async def test_a_producer_replaced_while_the_broker_stalls_is_stopped_before_the_next_sends(
    kafka: KafkaSink, replaced_on: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With the broker frozen, the producer cannot flush the version it holds within its
    stop's timeout: what it holds is failed and it is closed (its polling thread and
    librdkafka's threads ended, connections closed) before its successor sends, so it cannot
    append that version after the later ones."""
    assert managed("kafka"), "the test pauses the broker scripts/services.sh runs"
    order = str(uuid.uuid4())
    await deliver(kafka, [order_event(order, 1)])
    old = kafka._producer
    assert old is not None
    replacing: asyncio.Task[list[Delivery]] | None = None
    with paused_server("kafka"):
        [held] = await kafka.apply([order_event(order, 2)])
        assert held.outcome is Outcome.TRANSIENT, held
        assert "not acknowledged" in (held.error or "")
        if replaced_on == "close":
            await kafka.close()
        else:
            kafka._renew_producer = True  # as an error that leaves a producer unusable does
            replacing = asyncio.create_task(apply_safely(kafka, [order_event(order, 2)]))

        await eventually(lambda: "stopped without flushing" in caplog.text, within=30)
    if replacing is not None:
        await replacing
    await deliver(kafka, [order_event(order, 2), order_event(order, 3)])

    assert kafka._producer is not old
    assert old.remains() == ProducerRemains(polling=False, closed=True)
    records = await consume(kafka.topic_for("order") or "")
    versions = [int(dict(r.headers)["version"]) for r in records if r.key == order.encode()]
    # Version 2 was on the wire when the broker froze, so it may be there twice; never after 3.
    assert set(versions) == {1, 2, 3}
    assert versions == sorted(versions)
