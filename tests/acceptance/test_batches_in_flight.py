"""Several batches of one sink applied at once (``relay.batches_in_flight``), committed in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from adapters.base import Delivery, EventEnvelope, Outcome
from adapters.memory import MemorySink
from gateway.postgres.database import fetch_required
from gateway.relay.tables import sink_totals
from tests.acceptance.relay_support import World, memory_state


class OverlapSink(MemorySink):
    """Holds every apply until ``wanted`` run at once; records the most that ever ran at once."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.running = 0
        self.peak = 0
        self.enough_running = asyncio.Event()

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running >= self.wanted:
            self.enough_running.set()
        try:
            await self.enough_running.wait()
            return await super().apply(batch)
        finally:
            self.running -= 1


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_up_to_batches_in_flight_applies_run_at_once(world: World, in_flight: int) -> None:
    """With more than one allowed, the first apply can only return once the next ones have
    started: a relay that waited for each apply before starting the next would hang here."""
    await world.place_orders(60, transitions=1)
    sink = OverlapSink(wanted=in_flight)

    await world.drain(sink, within=60, batch_size=20, batches_in_flight=in_flight)

    assert sink.peak == in_flight
    assert memory_state(sink) == await world.orders_in_postgres()
    [totals] = await sink_totals(world.gateway.pool)
    assert totals.delivered == await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")


async def test_a_batch_being_retried_holds_back_the_commit_of_the_next(world: World) -> None:
    """The first batch fails once and is retried after the second batch was applied: until
    the first is delivered, no committed position may pass its failed event."""
    await world.place_orders(60, transitions=1)
    async with world.gateway.pool.acquire() as connection:
        first_event = await fetch_required(
            connection, "SELECT id, txid, partition FROM outbox ORDER BY txid, id LIMIT 1"
        )
    sink = MemorySink()
    sink.fail(Outcome.TRANSIENT, times=1, matching=lambda e: e.sequence == first_event["id"])
    original = sink.apply
    committed_past_it_on_retry: list[int] = []
    attempts = 0

    async def apply(batch: Sequence[EventEnvelope]) -> list[Delivery]:
        nonlocal attempts
        if any(e.sequence == first_event["id"] for e in batch):
            attempts += 1
            if attempts == 2:
                committed_past_it_on_retry.append(
                    await world.gateway.pool.fetchval(
                        "SELECT count(*) FROM relay_positions WHERE sink = $1 AND partition = $2"
                        " AND (position_txid, position_id) >= ($3, $4)",
                        sink.name,
                        first_event["partition"],
                        first_event["txid"],
                        first_event["id"],
                    )
                )
        return await original(batch)

    sink.apply = apply  # type: ignore[method-assign]

    await world.drain(sink, batch_size=20, batches_in_flight=2)

    assert attempts == 2 and committed_past_it_on_retry == [0]
    assert memory_state(sink) == await world.orders_in_postgres()
    [totals] = await sink_totals(world.gateway.pool)
    assert totals.delivered == await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert totals.dead_lettered == 0
