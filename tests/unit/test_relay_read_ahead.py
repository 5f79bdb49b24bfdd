"""Where a batch is read: streams read ahead once for every worker that keeps pace."""

from __future__ import annotations

import asyncio

import pytest

from gateway.postgres.outbox import PARTITIONS
from gateway.relay.read_ahead import OutboxReads
from tests.unit.relay_fakes import InMemoryRelayStorage

ALL = tuple(PARTITIONS)


def storage_with(events: int) -> InMemoryRelayStorage:
    storage = InMemoryRelayStorage()
    storage.publish(events)
    return storage


async def test_batches_follow_each_other_until_a_short_one_ends_the_reading() -> None:
    storage = storage_with(25)
    reader = await OutboxReads(storage.read_batch, 10, depth=2).reader((0, 0), ALL)
    sizes = []
    for _ in range(3):
        batch = await reader.next_batch()
        assert batch is not None
        sizes.append(len(batch))
    await reader.close()
    assert sizes == [10, 10, 5]
    assert reader.ended and not reader.serves(reader.after, ALL)
    assert reader.after == (25, 25)
    with pytest.raises(RuntimeError):
        await reader.next_batch()


async def test_readers_at_the_same_place_share_each_read() -> None:
    storage = storage_with(25)
    reads = OutboxReads(storage.read_batch, 10, depth=2)
    first, second = await reads.reader((0, 0), ALL), await reads.reader((0, 0), ALL)
    elsewhere = await reads.reader((0, 0), ALL[:8])
    assert reads.streams == 2
    for _ in range(3):
        batch = await first.next_batch()
        assert batch is not None and await second.next_batch() is batch
    other = await elsewhere.next_batch()
    assert other is not None and {e.partition for e in other} <= set(ALL[:8])
    for reader in (first, second, elsewhere):
        await reader.close()
    assert reads.streams == 0
    assert [after for after, partitions in storage.reads if partitions == ALL] == [
        (0, 0),
        (10, 10),
        (20, 20),
    ]


async def test_without_sharing_every_reader_reads_for_itself() -> None:
    storage = storage_with(5)
    reads = OutboxReads(storage.read_batch, 10, depth=2, shared=False)
    first, second = await reads.reader((0, 0), ALL), await reads.reader((0, 0), ALL)
    assert reads.streams == 2
    assert await first.next_batch() is not await second.next_batch()
    await first.close()
    await second.close()
    assert len(storage.reads) == 2


async def test_a_reader_joins_a_stream_that_holds_its_next_batch() -> None:
    storage = storage_with(25)
    reads = OutboxReads(storage.read_batch, 10, depth=1)
    leader = await reads.reader((0, 0), ALL)
    first = await leader.next_batch()
    assert first is not None
    follower = await reads.reader(first[-1].position, ALL)  # as a sink one batch behind
    second = await leader.next_batch()
    assert await follower.next_batch() is second
    assert reads.streams == 1
    await follower.close()
    await leader.close()


async def test_nobody_joins_a_stream_where_a_short_batch_ended_it() -> None:
    storage = storage_with(5)
    reads = OutboxReads(storage.read_batch, 10, depth=1)
    leader = await reads.reader((0, 0), ALL)
    assert await leader.next_batch() is not None
    storage.publish(5)
    latecomer = await reads.reader((0, 0), ALL)
    batch = await latecomer.next_batch()
    assert batch is not None and len(batch) == 10  # read afresh, not the stale short batch
    assert reads.streams == 2
    await latecomer.close()
    await leader.close()


async def test_a_reader_left_behind_is_told_so_and_holds_back_no_other() -> None:
    storage = storage_with(60)
    reads = OutboxReads(storage.read_batch, 10, depth=1)
    fast, slow = await reads.reader((0, 0), ALL), await reads.reader((0, 0), ALL)
    # The fast reader takes four batches while the slow one takes none: a stream that
    # waited for the slow reader would never read past the first two.
    batches = [await asyncio.wait_for(fast.next_batch(), 5) for _ in range(4)]
    assert all(batch is not None for batch in batches)
    assert await slow.next_batch() is None
    assert slow.ended and not slow.serves((0, 0), ALL)
    await slow.close()
    await fast.close()


async def test_a_failed_read_is_raised_to_its_reader_and_ends_the_stream() -> None:
    storage = storage_with(5)
    storage.fail_reads = 1
    reads = OutboxReads(storage.read_batch, 10, depth=2)
    reader = await reads.reader((0, 0), ALL)
    with pytest.raises(OSError, match="refused"):
        await reader.next_batch()
    assert reader.ended
    await reader.close()
    again = await reads.reader((0, 0), ALL)  # a new stream: the error is not handed out again
    batch = await again.next_batch()
    assert batch is not None and len(batch) == 5
    await again.close()


async def test_a_read_asked_of_an_earlier_server_is_not_joined() -> None:
    storage = storage_with(25)
    reads = OutboxReads(storage.read_batch, 10, depth=2, server_changes=storage.server_changes)
    first = await reads.reader((0, 0), ALL)
    batch = await first.next_batch()
    assert batch is not None and first.server == storage.server_changes()
    joined = await reads.reader((0, 0), ALL)
    assert joined.cursor == 0 and reads.streams == 1  # the held read, asked of this server
    await joined.close()
    storage.restart_server()  # a failover: the held read was answered by the old primary
    again = await reads.reader((0, 0), ALL)
    assert reads.streams == 2
    fresh = await again.next_batch()
    assert fresh is not None and again.server == storage.server_changes()
    for reader in (first, again):
        await reader.close()
