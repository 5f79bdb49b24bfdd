"""Each store adapter against its real server: idempotent, version-guarded, per-event errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from adapters.base import Outcome, Sink
from adapters.readback import ProjectedOrder, ReadBack
from tests.acceptance.stores import STORES, order_event, started


@pytest.fixture(params=STORES)
async def sink(request: pytest.FixtureRequest) -> AsyncIterator[Sink]:
    async with started(request.param) as store:
        yield store


def new_id() -> str:
    return str(uuid.uuid4())


async def projected(sink: Sink, *events: object) -> dict[str, ProjectedOrder]:
    """What the store holds of the orders of ``events`` (each at its newest event's time)."""
    assert isinstance(sink, ReadBack)
    newest: dict[str, object] = {}
    for event in events:
        newest[event.aggregate_id] = event.occurred_at  # type: ignore[attr-defined]
    return await sink.projected_orders(newest)  # type: ignore[arg-type]


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


async def test_events_without_a_projection_are_delivered_and_ignored(sink: Sink) -> None:
    customer = order_event(new_id(), 1)
    ignored = customer.__class__(**{**customer.__dict__, "event_type": "customer.created"})
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
