"""Reading the outbox ahead of a sink worker, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from gateway import Event
from gateway.database import create_pool
from gateway.outbox import PARTITIONS, StoredEvent
from gateway.read_ahead import ReadAhead
from tests.acceptance.relay_support import World

ALL = tuple(PARTITIONS)


async def publish(world: World, count: int) -> None:
    async with world.gateway.pool.acquire() as connection, connection.transaction():
        for number in range(count):
            await world.gateway.publish(
                connection,
                Event(
                    aggregate_type="probe",
                    aggregate_id=f"probe-{number}",
                    event_type="probe.read",
                    payload={"number": number},
                ),
            )


async def test_hands_out_consecutive_batches_until_a_short_one(world: World) -> None:
    await publish(world, 25)
    reader = ReadAhead(world.gateway.pool, (0, 0), ALL, batch_size=10, depth=2)
    batches: list[list[StoredEvent]] = []
    try:
        for _ in range(3):
            assert reader.serves(batches[-1][-1].position if batches else (0, 0), ALL)
            batches.append(await reader.next_batch())
    finally:
        await reader.close()

    assert [len(b) for b in batches] == [10, 10, 5]
    positions = [event.position for batch in batches for event in batch]
    assert positions == sorted(positions) and len(set(positions)) == 25
    payloads = sorted(event.envelope.payload["number"] for b in batches for event in b)
    assert payloads == list(range(25))
    assert reader.after == positions[-1]
    assert not reader.serves(positions[-1], ALL[:8])
    assert not reader.serves(positions[-1], ALL)  # the short batch ended the reading


async def test_reads_only_the_partitions_asked_for(world: World) -> None:
    await publish(world, 40)
    some = (0, 1, 2, 3)
    reader = ReadAhead(world.gateway.pool, (0, 0), some, batch_size=100, depth=1)
    try:
        batch = await reader.next_batch()
    finally:
        await reader.close()
    expected = await world.gateway.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE partition = ANY($1::smallint[])", list(some)
    )
    assert len(batch) == expected > 0
    assert {event.partition for event in batch} <= set(some)


async def test_a_failed_read_is_raised_to_the_caller(world: World) -> None:
    await publish(world, 3)
    pool = await create_pool(world.settings.postgres)
    reader = ReadAhead(pool, (0, 0), ALL, batch_size=10, depth=2)
    await pool.close()  # before the reader's first read
    try:
        with pytest.raises(asyncpg.InterfaceError, match="pool is clos"):
            await reader.next_batch()
        assert not reader.serves((0, 0), ALL)
    finally:
        await reader.close()
