"""Reading the outbox ahead of the sink workers, shared between them, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.postgres.database import create_pool
from gateway.postgres.outbox import PARTITIONS, StoredEvent
from gateway.relay.read_ahead import OutboxReads
from gateway.relay.storage import PostgresRelayStorage
from tests.acceptance.relay_support import World

ALL = tuple(PARTITIONS)


async def test_hands_out_consecutive_batches_until_a_short_one(world: World) -> None:
    await world.publish_items(25)
    reader = await OutboxReads(
        PostgresRelayStorage(world.gateway.pool).read_batch, 10, depth=2
    ).reader((0, 0), ALL)
    batches: list[list[StoredEvent]] = []
    try:
        for _ in range(3):
            assert reader.serves(batches[-1][-1].position if batches else (0, 0), ALL)
            batch = await reader.next_batch()
            assert batch is not None
            batches.append(batch)
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
    await world.publish_items(40)
    some = (0, 1, 2, 3)
    reader = await OutboxReads(
        PostgresRelayStorage(world.gateway.pool).read_batch, 100, depth=1
    ).reader((0, 0), some)
    try:
        batch = await reader.next_batch()
    finally:
        await reader.close()
    expected = await world.gateway.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE partition = ANY($1::smallint[])", list(some)
    )
    assert batch is not None and len(batch) == expected > 0
    assert {event.partition for event in batch} <= set(some)


async def test_a_failed_read_is_raised_to_the_caller(world: World) -> None:
    await world.publish_items(3)
    pool = await create_pool(world.settings.postgres)
    reader = await OutboxReads(PostgresRelayStorage(pool).read_batch, 10, depth=2).reader(
        (0, 0), ALL
    )
    await pool.close()  # before the reader's first read
    try:
        with pytest.raises(asyncpg.InterfaceError, match="pool is clos"):
            await reader.next_batch()
        assert not reader.serves((0, 0), ALL)
    finally:
        await reader.close()
