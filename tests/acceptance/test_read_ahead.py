"""Reading the outbox ahead of the sink workers, shared between them, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.database import create_pool
from gateway.outbox import PARTITIONS, StoredEvent
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


async def test_readers_at_the_same_place_share_each_batch(world: World) -> None:
    await world.publish_items(25)
    reads = OutboxReads(PostgresRelayStorage(world.gateway.pool).read_batch, 10, depth=2)
    first = await reads.reader((0, 0), ALL)
    second = await reads.reader((0, 0), ALL)
    elsewhere = await reads.reader((0, 0), ALL[:8])
    try:
        assert reads.streams == 2  # the same partitions share a stream; others have their own
        for _ in range(3):
            batch = await first.next_batch()
            assert batch is not None and await second.next_batch() is batch  # read once
        other = await elsewhere.next_batch()
        assert other is not None and {e.partition for e in other} <= set(ALL[:8])
    finally:
        for reader in (first, second, elsewhere):
            await reader.close()
    assert reads.streams == 0


async def test_a_reader_joins_a_stream_that_holds_its_next_batch(world: World) -> None:
    await world.publish_items(25)
    reads = OutboxReads(PostgresRelayStorage(world.gateway.pool).read_batch, 10, depth=1)
    leader = await reads.reader((0, 0), ALL)
    try:
        first = await leader.next_batch()
        assert first is not None
        follower = await reads.reader(first[-1].position, ALL)  # as a sink one batch behind
        second = await leader.next_batch()
        assert await follower.next_batch() is second
        assert reads.streams == 1
        await follower.close()
    finally:
        await leader.close()


async def test_a_reader_left_behind_reads_on_alone_and_holds_back_no_other(
    world: World,
) -> None:
    await world.publish_items(60)
    reads = OutboxReads(PostgresRelayStorage(world.gateway.pool).read_batch, 10, depth=1)
    fast, slow = await reads.reader((0, 0), ALL), await reads.reader((0, 0), ALL)
    try:
        # The fast reader goes through four batches while the slow one takes none: a stream
        # that waited for the slow reader would never read past the first two.
        fast_batches = [await asyncio.wait_for(fast.next_batch(), 30) for _ in range(4)]
        assert await slow.next_batch() is None  # its next batch is no longer held
        assert not slow.serves((0, 0), ALL)
        await slow.close()

        alone = await reads.reader((0, 0), ALL)
        again = await alone.next_batch()
        assert reads.streams == 2
        assert again is not None and fast_batches[0] is not None
        assert [e.position for e in again] == [e.position for e in fast_batches[0]]
        await alone.close()
    finally:
        await fast.close()
