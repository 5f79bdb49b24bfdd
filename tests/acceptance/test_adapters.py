"""Each store adapter against its real server: idempotent, version-guarded, per-event errors."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.base import EventEnvelope, Outcome, Sink
from adapters.mongo import FERRETDB_UPDATES_PER_REQUEST, MongoSink
from adapters.readback import OrderSpan, ProjectedOrder, ReadBack
from adapters.redis import SCRIPT_KEYS, RedisSink
from gateway import Gateway
from support.eventually import eventually
from support.servers import managed, start_server, stop_server
from support.stores import ADAPTER_VARIANTS, order_event, started


@pytest.fixture(params=ADAPTER_VARIANTS)
async def sink(request: pytest.FixtureRequest) -> AsyncIterator[Sink]:
    async with started(request.param) as store:
        yield store


def new_id() -> str:
    return str(uuid.uuid4())


async def projected(sink: Sink, *events: EventEnvelope) -> dict[str, ProjectedOrder]:
    """What the store holds of the orders of ``events`` (spanning their first to newest event)."""
    assert isinstance(sink, ReadBack)
    spans: dict[str, OrderSpan] = {}
    for event in events:
        first = spans.get(event.aggregate_id)
        spans[event.aggregate_id] = OrderSpan(
            first.created_at if first else event.occurred_at, event.occurred_at
        )
    return await sink.projected_orders(spans)


async def test_health_asks_the_server(sink: Sink) -> None:
    health = await sink.health()
    assert health.ok, health.detail


async def test_applying_twice_leaves_the_same_state(sink: Sink) -> None:
    order = new_id()
    placed = order_event(order, 1, "pending", "42.50")

    first = await sink.apply([placed])
    state = await projected(sink, placed)
    again = await sink.apply([placed, placed])

    assert [r.outcome for r in first] == [Outcome.DELIVERED]
    assert [r.outcome for r in again] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert state == {order: ProjectedOrder(1, "pending", "42.50")}
    assert await projected(sink, placed) == state


async def test_an_older_version_after_a_newer_one_changes_nothing(sink: Sink) -> None:
    order = new_id()
    newer = order_event(order, 5, "shipped", "42.50")
    older = order_event(order, 3, "confirmed", "42.50")

    await sink.apply([newer])
    results = await sink.apply([older])

    assert [r.outcome for r in results] == [Outcome.DELIVERED]
    assert await projected(sink, newer) == {order: ProjectedOrder(5, "shipped", "42.50")}


async def test_versions_in_one_batch_converge_on_the_newest(sink: Sink) -> None:
    order = new_id()
    events = [
        order_event(order, v, s) for v, s in ((2, "confirmed"), (4, "shipped"), (3, "processing"))
    ]

    results = await sink.apply(events)

    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert await projected(sink, events[1]) == {order: ProjectedOrder(4, "shipped", "42.50")}


async def test_concurrent_batches_over_the_same_orders_converge_on_the_newest(
    sink: Sink,
) -> None:
    """As the relay applies up to ``relay.batches_in_flight`` batches of a sink at once, two
    of them may carry versions of one order: the newest wins whatever finishes first."""
    orders = [new_id() for _ in range(20)]
    # Each event a sequence of its own, as the outbox gives (a point's time in InfluxDB).
    placed = [order_event(order, 1, sequence=n) for n, order in enumerate(orders)]
    await sink.apply(placed)
    batches = [
        [
            order_event(order, version, "confirmed", sequence=version * 100 + n)
            for n, order in enumerate(orders)
        ]
        for version in range(2, 8)
    ]

    results = await asyncio.gather(*(sink.apply(batch) for batch in reversed(batches)))

    assert all(r.outcome is Outcome.DELIVERED for batch in results for r in batch)
    held = await projected(sink, *placed, *batches[-1])
    assert {order: projection.version for order, projection in held.items()} == dict.fromkeys(
        orders, 7
    )


async def test_read_back_finds_an_order_the_store_holds_behind(sink: Sink) -> None:
    order = new_id()
    placed, shipped = order_event(order, 1), order_event(order, 3, "shipped")
    await sink.apply([placed])

    assert await projected(sink, placed, shipped) == {order: ProjectedOrder(1, "pending", "42.50")}


async def test_one_bad_event_fails_alone(sink: Sink) -> None:
    good, bad, other = new_id(), new_id(), new_id()
    broken = order_event(bad, 1)
    del broken.payload["status"]
    batch = [order_event(good, 1), broken, order_event(other, 2, "confirmed")]

    results = await sink.apply(batch)

    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.PERMANENT, Outcome.DELIVERED]
    assert "status" in (results[1].error or "")
    held = await projected(sink, *batch)
    assert set(held) == {good, other}


async def test_a_projection_that_raises_anything_fails_its_event_alone_for_good(
    sink: Sink,
) -> None:
    def broken_projection(event: EventEnvelope) -> Any:
        raise RuntimeError(f"cannot project {event.event_type}")

    projections = sink.projections  # type: ignore[attr-defined]
    projections.register("order.audited", broken_projection)
    good = order_event(new_id(), 1)
    audited = order_event(new_id(), 1)._replace(event_type="order.audited")

    results = await sink.apply([audited, good])

    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.DELIVERED]
    assert "RuntimeError: cannot project order.audited" in (results[0].error or "")
    assert set(await projected(sink, good, audited)) == {good.aggregate_id}


async def test_mongo_keeps_a_permanent_failure_when_reading_stored_versions_fails() -> None:
    """Nothing answers at this address: the read of stored versions fails, which fails the
    later versions that waited on it (transiently), not the event already found permanent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sink = MongoSink("mongodb", f"mongodb://127.0.0.1:{closed_port}", timeout_seconds=0.5)
    try:
        broken = order_event(new_id(), 1)
        del broken.payload["status"]
        results = await sink.apply([broken, order_event(new_id(), 2, "confirmed")])
    finally:
        await sink.close()
    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.TRANSIENT]


async def test_events_without_a_projection_are_delivered_and_ignored(sink: Sink) -> None:
    customer = order_event(new_id(), 1)
    ignored = customer._replace(event_type="customer.created")
    results = await sink.apply([ignored])
    assert [r.outcome for r in results] == [Outcome.DELIVERED]
    assert await projected(sink, ignored) == {}


async def test_read_back_lists_every_projected_order(sink: Sink) -> None:
    orders = [new_id() for _ in range(25)]
    await sink.apply([order_event(order, 1, sequence=i) for i, order in enumerate(orders)])
    assert isinstance(sink, ReadBack)
    listed = [order_id async for batch in sink.projected_ids(10) for order_id in batch]
    assert sorted(set(listed)) == sorted(orders)


async def test_mongo_keeps_the_newer_version_even_when_its_read_misses_it() -> None:
    """The guard lives in the write: FerretDB's reads can lag a just-committed bulk write, and
    its reply to an unordered batch with a duplicate key is malformed. Both must be harmless."""
    async with started("mongodb") as sink:
        order = new_id()
        await sink.apply([order_event(order, 5, "shipped")])

        async def read_that_saw_nothing(keys: list[str]) -> dict[str, int]:
            return {}

        sink._stored_versions = read_that_saw_nothing  # type: ignore[attr-defined]
        fresh = new_id()
        results = await sink.apply([order_event(order, 3, "confirmed"), order_event(fresh, 1)])

        assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
        assert await projected(sink, order_event(order, 5), order_event(fresh, 1)) == {
            order: ProjectedOrder(5, "shipped", "42.50"),
            fresh: ProjectedOrder(1, "pending", "42.50"),
        }


@pytest.mark.parametrize(
    ("version", "status", "request_kind"),
    [(1, "pending", "insert_many"), (2, "confirmed", "bulk_write")],
    ids=["first versions are inserted", "later versions are upserted"],
)
async def test_mongo_writes_in_requests_of_bulk_size_and_keeps_a_newer_version(
    version: int, status: str, request_kind: str
) -> None:
    """A batch of 60 orders at ``version`` goes out in requests of the kind its version calls
    for: inserts of at most bulk_size, upserts of at most as many as the server takes in one
    request (FerretDB: ten); an order already stored at version 9 keeps it, and its event
    counts as applied (for a first version, the insert's duplicate key says so)."""
    async with started("mongodb", bulk_size=25) as sink:
        assert isinstance(sink, MongoSink) and sink.bulk_size == 25
        largest = 25 if request_kind == "insert_many" else await sink.updates_per_request()
        orders = [new_id() for _ in range(60)]
        await sink.apply([order_event(orders[40], 9, "delivered")])
        batch = [order_event(order, version, status, sequence=i) for i, order in enumerate(orders)]
        request_sizes: list[int] = []
        send = getattr(sink.collection, request_kind)

        async def counted(requests: list[Any], **options: Any) -> Any:
            request_sizes.append(len(requests))
            return await send(requests, **options)

        setattr(sink.collection, request_kind, counted)

        results = await sink.apply(batch)

        assert all(r.outcome is Outcome.DELIVERED for r in results)
        assert max(request_sizes) == largest and sum(request_sizes) >= 59, request_sizes
        held = await projected(sink, *batch, order_event(orders[40], 9))
        assert len(held) == 60
        assert held[orders[40]] == ProjectedOrder(9, "delivered", "42.50")
        assert held[orders[0]] == ProjectedOrder(version, status, "42.50")


async def test_mongo_keeps_ferretdb_update_requests_within_its_connection_pool() -> None:
    """FerretDB (the server these tests run against) stops answering for good when one update
    command carries more upserts than its connection pool has connections: with the default
    bulk_size (1,000), a batch changing 150 stored orders still goes out in requests FerretDB
    finishes, and every order ends at the new version."""
    async with started("mongodb") as sink:
        assert isinstance(sink, MongoSink) and sink.bulk_size == 1_000
        assert await sink.updates_per_request() == FERRETDB_UPDATES_PER_REQUEST
        orders = [new_id() for _ in range(150)]
        created = await sink.apply([order_event(order, 1) for order in orders])
        assert all(r.outcome is Outcome.DELIVERED for r in created)
        batch = [order_event(order, 2, "confirmed", sequence=i) for i, order in enumerate(orders)]

        results = await sink.apply(batch)

        assert [r.outcome for r in results] == [Outcome.DELIVERED] * len(batch)
        held = await projected(sink, *batch)
        assert set(held.values()) == {ProjectedOrder(2, "confirmed", "42.50")}
        assert len(held) == len(orders)


async def test_redis_fails_only_the_order_whose_key_holds_another_type() -> None:
    """One script call carries the whole batch; a key it cannot read (a hash someone else
    wrote there) fails that order alone, permanently, and the others are written."""
    async with started("redis") as sink:
        assert isinstance(sink, RedisSink)
        good, clash, other = new_id(), new_id(), new_id()
        await sink.client.hset(sink.key_prefix + clash, "not", "a summary")
        batch = [order_event(good, 1), order_event(clash, 1), order_event(other, 2, "confirmed")]

        results = await sink.apply(batch)

        assert [r.outcome for r in results] == [
            Outcome.DELIVERED,
            Outcome.PERMANENT,
            Outcome.DELIVERED,
        ]
        assert "WRONGTYPE" in (results[1].error or "")
        assert await projected(sink, *batch) == {
            good: ProjectedOrder(1, "pending", "42.50"),
            other: ProjectedOrder(2, "confirmed", "42.50"),
        }


async def test_redis_splits_a_large_batch_into_script_calls() -> None:
    async with started("redis") as sink:
        assert isinstance(sink, RedisSink)
        orders = [new_id() for _ in range(SCRIPT_KEYS + 20)]
        await sink.apply([order_event(orders[-1], 7, "shipped")])
        batch = [order_event(order, 2, "confirmed", sequence=i) for i, order in enumerate(orders)]

        results = await sink.apply(batch)

        assert all(r.outcome is Outcome.DELIVERED for r in results)
        held = await projected(sink, *batch)
        assert len(held) == len(orders)
        assert held[orders[0]] == ProjectedOrder(2, "confirmed", "42.50")
        assert held[orders[-1]] == ProjectedOrder(7, "shipped", "42.50")


async def test_mongodb_writes_refused_while_ferretdb_s_backend_restarts_are_retried(
    gateway: Gateway,
) -> None:
    # FerretDB keeps PostgreSQL's data: stopped, every write gets InternalError (code 1),
    # which must be retried rather than dead-lettered.
    if not managed("postgres"):
        pytest.fail("PostgreSQL must be run by scripts/services.sh for this test to stop it")
    async with started("mongodb") as mongo:
        event = order_event(new_id(), 1)
        await asyncio.to_thread(stop_server, "postgres")
        try:
            refused = await mongo.apply([event])
        finally:
            await asyncio.to_thread(start_server, "postgres")
            # The session's pool outlived the restart: its connections are gone.
            await gateway.pool.expire_connections()
        assert [r.outcome for r in refused] == [Outcome.TRANSIENT], refused
        assert "code 1" in (refused[0].error or "")

        async def applied() -> bool:
            [result] = await mongo.apply([event])
            return result.outcome is Outcome.DELIVERED

        await eventually(applied, within=60)
