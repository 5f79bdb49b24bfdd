"""The relay against a real PostgreSQL, delivering to in-process memory sinks."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import pytest

from adapters.base import Delivery, EventEnvelope, Outcome
from adapters.memory import MemorySink
from gateway import Event
from gateway.postgres import outbox
from gateway.postgres.database import Connection, fetch_required
from gateway.relay import Relay, tables
from gateway.relay.leases import partitions_for
from support.eventually import eventually
from tests.acceptance.relay_support import World, memory_state, positions_owned
from tests.relay_settings import FAST


async def test_every_event_reaches_the_sink_and_it_converges(world: World) -> None:
    await world.place_orders(60, transitions=3)
    sink = MemorySink()

    await world.drain(sink)

    assert memory_state(sink) == await world.orders_in_postgres()
    assert {str(e) for e in sink.deliveries} >= await world.order_event_ids()
    [totals] = await tables.sink_totals(world.gateway.pool)
    assert totals.delivered == await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert totals.dead_lettered == 0


async def test_an_event_committed_late_is_not_skipped(world: World) -> None:
    """A transaction holding a lower-numbered event commits after a higher-numbered one."""
    sink = MemorySink()
    marker_id, late_id, early_id = (str(uuid.uuid4()) for _ in range(3))
    marker, marked = await hold_open_event(world, marker_id)  # the lowest txid of the three
    holder, held = await hold_open_event(world, late_id)
    relay = world.relay(sink)
    running = asyncio.create_task(relay.run())
    try:
        async with world.gateway.pool.acquire() as connection, connection.transaction():
            await world.gateway.publish(connection, probe(early_id))
        # The marker commits after the early event, below the late one: once the relay has
        # delivered it, it has read past the early event's commit while the late transaction
        # was still open.
        await marked.commit()
        event_of = await event_ids(world)
        await eventually(lambda: event_of[marker_id] in sink.deliveries)
        delivered_while_open = set(sink.deliveries) - {event_of[marker_id]}

        await held.commit()
        event_of = await event_ids(world)
        await eventually(lambda: set(event_of.values()) <= set(sink.deliveries))
    finally:
        relay.stop()
        await running
        await holder.close()
        await marker.close()

    events = await world.gateway.pool.fetch(
        "SELECT event_id, aggregate_id, id FROM outbox ORDER BY id"
    )
    by_aggregate = {r["aggregate_id"]: r for r in events}
    assert by_aggregate[late_id]["id"] < by_aggregate[early_id]["id"]
    assert delivered_while_open == set()  # held back, never read past the open transaction
    assert set(sink.deliveries) == set(event_of.values())


async def event_ids(world: World) -> dict[str, uuid.UUID]:
    """aggregate id -> event id, of every committed event."""
    rows = await world.gateway.pool.fetch("SELECT aggregate_id, event_id FROM outbox")
    return {r["aggregate_id"]: r["event_id"] for r in rows}


async def hold_open_event(
    world: World, aggregate_id: str
) -> tuple[asyncpg.Connection, asyncpg.transaction.Transaction]:
    """A connection whose open transaction has appended an event, for the caller to commit."""
    holder = await asyncpg.connect(world.settings.postgres.url.get_secret_value())
    held = holder.transaction()
    await held.start()
    await holder.execute(
        "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, version, event_type,"
        " payload) VALUES ($1, 'probe', $2, 1, 'probe.late', '{}')",
        uuid.uuid4(),
        aggregate_id,
    )
    return holder, held


def probe(aggregate_id: str) -> Event:
    return Event(
        aggregate_type="probe", aggregate_id=aggregate_id, event_type="probe.early", payload={}
    )


async def test_a_naive_id_cursor_skips_the_late_event_in_the_same_scenario(world: World) -> None:
    """What the test above guards against: ``WHERE id > last`` loses the late event."""
    holder, held = await hold_open_event(world, "late")
    try:
        async with world.gateway.pool.acquire() as connection, connection.transaction():
            await world.gateway.publish(connection, probe("early"))
        seen = await world.gateway.pool.fetch("SELECT id, aggregate_id FROM outbox ORDER BY id")
        last = max(r["id"] for r in seen)
        await held.commit()
    finally:
        await holder.close()
    after = await world.gateway.pool.fetch("SELECT aggregate_id FROM outbox WHERE id > $1", last)
    assert [r["aggregate_id"] for r in seen] == ["early"]
    assert after == []  # the late event sits below the cursor: a naive relay never sees it


async def test_a_failing_sink_does_not_hold_back_another(world: World) -> None:
    await world.place_orders(30, transitions=1)
    down, healthy = MemorySink("down"), MemorySink("healthy")
    down.down = True
    relay = world.relay(down, healthy)
    running = asyncio.create_task(relay.run())
    try:
        expected = await world.orders_in_postgres()
        await eventually(lambda: memory_state(healthy) == expected)
        total = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
        await eventually(lambda: _delivered(world, "healthy", total))
        await eventually(lambda: _retrying(world, "down"))
        assert down.state == {}

        down.heal()
        await eventually(lambda: memory_state(down) == expected)
    finally:
        relay.stop()
        await running
    totals = {t.sink: t for t in await tables.sink_totals(world.gateway.pool)}
    assert totals["down"].dead_lettered == 0  # an outage uses up no attempts


async def test_events_waiting_for_a_retry_are_counted_once_each(world: World) -> None:
    await world.publish_items(5)
    sink = MemorySink("flaky")
    sink.fail(Outcome.TRANSIENT, error="timeout")
    relay = world.relay(sink, max_attempts=1_000)
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _has_retrying(world, "flaky"))
        [totals] = await tables.sink_totals(world.gateway.pool)
        assert len(relay.workers[0].owned) == len(outbox.PARTITIONS)
        assert totals.retrying == 5
        assert totals.last_error == "timeout"
    finally:
        relay.stop()
        await running


async def _has_retrying(world: World, sink: str) -> bool:
    totals = {t.sink: t for t in await tables.sink_totals(world.gateway.pool)}
    return sink in totals and totals[sink].retrying > 0


async def _delivered(world: World, sink: str, count: int) -> bool:
    totals = {t.sink: t for t in await tables.sink_totals(world.gateway.pool)}
    return totals[sink].delivered == count


async def _retrying(world: World, sink: str) -> bool:
    totals = {t.sink: t for t in await tables.sink_totals(world.gateway.pool)}
    return totals[sink].retrying > 0 and "down" in (totals[sink].last_error or "")


async def test_poison_events_go_to_dead_letters_and_replay_after_a_fix(world: World) -> None:
    orders = await world.place_orders(20, transitions=1)
    permanent, flaky = str(orders[3].id), str(orders[7].id)
    sink = MemorySink()
    sink.fail(Outcome.PERMANENT, matching=lambda e: e.aggregate_id == permanent, error="bad map")
    sink.fail(Outcome.TRANSIENT, matching=lambda e: e.aggregate_id == flaky, error="timeout")

    await world.drain(sink)

    letters = {
        r["aggregate_id"]: r
        for r in await world.gateway.pool.fetch("SELECT * FROM dead_letters ORDER BY id")
    }
    assert set(letters) == {permanent, flaky}
    assert (letters[permanent]["reason"], letters[permanent]["attempts"]) == ("permanent", 1)
    assert letters[permanent]["last_error"] == "bad map"
    assert (letters[flaky]["reason"], letters[flaky]["attempts"]) == ("attempts_exhausted", 3)
    # Only the first event of each poisoned order is dead; its later version is delivered.
    expected = await world.orders_in_postgres()
    assert {k: v for k, v in memory_state(sink).items() if k not in (permanent, flaky)} == {
        k: v for k, v in expected.items() if k not in (permanent, flaky)
    }

    sink.heal()
    await world.gateway.pool.execute(
        "UPDATE dead_letters SET replay_requested_at = now() WHERE sink = 'memory'"
    )
    await world.drain(sink)

    assert memory_state(sink) == expected
    unresolved = await world.gateway.pool.fetchval(
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"
    )
    assert unresolved == 0


async def test_two_relays_share_the_work_and_deliver_everything(world: World) -> None:
    await world.place_orders(2_500, transitions=3)
    total = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert total >= 10_000
    # Small, slow batches: the drain outlasts a few lease checks, so the relays rebalance.
    first, second = MemorySink(delay_seconds=0.01), MemorySink(delay_seconds=0.01)

    await asyncio.gather(world.drain(first, batch_size=50), world.drain(second, batch_size=50))

    delivered = first.deliveries + second.deliveries
    assert {str(e) for e in delivered} >= await world.order_event_ids()
    assert len(set(delivered)) == total
    duplicates = len(delivered) - total
    assert duplicates <= 4 * 50  # a few batches at most, redelivered after a lease moved
    assert first.deliveries and second.deliveries  # both relays did part of the work
    merged = {**memory_state(first)}
    for key, value in memory_state(second).items():
        if key not in merged or merged[key][0] < value[0]:
            merged[key] = value
    assert merged == await world.orders_in_postgres()


async def test_relays_joining_and_leaving_keep_one_set_of_partitions_for_all_their_sinks(
    world: World,
) -> None:
    """Shared reads serve a relay's sinks together only where they hold the same partitions.

    Three relays split the partitions in three blocks; when the third stops, the other two
    split them in two, and each relay holds the same block for both of its sinks.
    """
    names = ("left", "right")
    relays = [world.relay(*(MemorySink(name) for name in names)) for _ in range(3)]
    running: dict[Relay, asyncio.Task[None]] = {}

    async def owners() -> list[list[str | None]]:
        return [await positions_owned(world.gateway.pool, name) for name in names]

    def split(*members: Relay) -> Callable[[], Awaitable[bool]]:
        ids = [relay.instance_id for relay in members]
        expected: list[str | None] = [None] * len(outbox.PARTITIONS)
        for instance in ids:
            for partition in partitions_for(instance, ids):
                expected[partition] = instance

        async def holds() -> bool:
            return all(owned == expected for owned in await owners())

        return holds

    try:
        for relay in relays:
            running[relay] = asyncio.create_task(relay.run())
            await asyncio.wait_for(relay.ready.wait(), 30)
        first, second, third = relays
        await eventually(split(first, second, third), within=30)
        after_joining = await owners()
        third.stop()
        await running.pop(third)
        await eventually(split(first, second), within=30)
        after_leaving = await owners()
    finally:
        for relay in running:
            relay.stop()
        await asyncio.gather(*running.values())

    assert sorted(after_joining[0].count(r.instance_id) for r in relays) == [5, 5, 6]
    assert sorted(after_leaving[0].count(r.instance_id) for r in relays) == [0, 8, 8]


async def test_claims_interleaved_across_sinks_give_a_relay_one_block_for_all(
    world: World,
) -> None:
    """Two relays claiming for two sinks, their claims interleaved: each relay ends up with
    the same partitions for both sinks, and a partition claimed by one is not taken by the
    other while its lease lives."""
    relays = ["first", "second"]
    async with world.gateway.pool.acquire() as connection:
        for sink in ("left", "right"):
            await tables.register_sink(connection, sink, from_beginning=True)

        async def claim(sink: str, owner: str) -> set[int]:
            wanted = sorted(partitions_for(owner, relays))
            return await tables.claim_leases(connection, sink, owner, wanted, 30)

        first_left = await claim("left", "first")
        second_left = await claim("left", "second")
        second_right = await claim("right", "second")
        first_right = await claim("right", "first")
        taken = await tables.claim_leases(connection, "left", "third", range(16), 30)

    assert first_left | second_left == set(range(16))
    assert not first_left & second_left
    assert (first_right, second_right) == (first_left, second_left)
    assert taken == set()


async def test_a_lease_lost_while_the_next_batch_is_applied_is_noticed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Positions are committed while the next batch is applied. Here every lease is taken
    away right after the first batch is applied, so that batch's commit finds it gone: the
    worker must drop what it holds and read ahead, take its leases back once they expire,
    and deliver again from the committed positions."""
    await world.place_orders(100, transitions=2)
    sink = MemorySink()
    original = sink.apply
    applied = 0

    async def apply_then_lose_the_leases(batch: Sequence[EventEnvelope]) -> list[Delivery]:
        nonlocal applied
        results = await original(batch)
        applied += 1
        if applied == 1:
            await world.gateway.pool.execute(
                "UPDATE relay_positions SET owner = 'elsewhere',"
                " lease_expires_at = now() + interval '0.5 seconds' WHERE sink = $1",
                sink.name,
            )
        return results

    sink.apply = apply_then_lose_the_leases  # type: ignore[method-assign]

    with caplog.at_level(logging.WARNING, logger="gateway.relay"):
        await world.drain(sink, batch_size=50)

    assert "a commit was refused (a lease lost" in caplog.text
    assert memory_state(sink) == await world.orders_in_postgres()
    total = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert len(set(sink.deliveries)) == total
    assert len(sink.deliveries) > total  # the first batch was delivered again
    [totals] = await tables.sink_totals(world.gateway.pool)
    assert totals.delivered >= total


async def test_a_sink_added_later_can_start_from_now(world: World) -> None:
    before = await world.place_orders(5)
    await world.drain(MemorySink("early"))
    late = MemorySink("late")
    await world.drain(late, start_from="now")
    assert late.deliveries == []

    after = await world.place_orders(3)
    await world.drain(late, start_from="now")
    assert set(memory_state(late)) == {str(o.id) for o in after}
    assert not set(memory_state(late)) & {str(o.id) for o in before}


async def test_pruning_removes_only_old_events_every_sink_has_passed(world: World) -> None:
    await world.place_orders(10)
    fast, slow = MemorySink("fast"), MemorySink("slow")
    await world.drain(fast)
    await world.drain(slow, start_from="beginning")
    await world.place_orders(4)
    await world.drain(fast)  # the last four orders reached "fast" only
    # Stands in for the retention passing: every event is made a day old.
    await world.gateway.pool.execute("UPDATE outbox SET occurred_at = now() - interval '1 day'")

    relay = world.relay(fast, slow, retention_seconds=3600)
    pruned = await relay.prune()

    assert pruned == 10 + 1  # ten orders and their customer, which both sinks have passed
    left = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    assert left == 4 + 1  # four orders and their customer, which "slow" has not seen


async def test_a_batch_applied_for_longer_than_a_lease_keeps_its_leases(world: World) -> None:
    """The relay's heartbeat renews its leases, so a slow store's worker, busy with one batch
    for several lease lifetimes, still holds its partitions and shows as serving its sink."""
    await world.publish_items(3)
    sink = MemorySink("slow", delay_seconds=4 * FAST.lease_ttl_seconds)
    applying = asyncio.Event()
    original = sink.apply

    async def slow_apply(batch: Sequence[EventEnvelope]) -> list[Delivery]:
        applying.set()
        return await original(batch)

    sink.apply = slow_apply  # type: ignore[method-assign]
    relay = world.relay(sink)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(applying.wait(), 30)
        await asyncio.sleep(2 * FAST.lease_ttl_seconds)  # the time under test: leases lapse
        [totals] = await tables.sink_totals(world.gateway.pool)
        owners = await positions_owned(world.gateway.pool, "slow")
        expired = await world.gateway.pool.fetchval(
            "SELECT count(*) FROM relay_positions WHERE sink = 'slow' AND lease_expires_at < now()"
        )
        delivered_meanwhile = list(sink.deliveries)
    finally:
        relay.stop()
        await running
    assert delivered_meanwhile == []  # still in its first apply
    assert totals.served and totals.unserved_seconds == 0
    assert owners == [relay.instance_id] * 16 and expired == 0


class _UnreachableAtStart(MemorySink):
    """A sink whose store does not answer when the relay starts, until it is healed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reachable = False

    async def start(self) -> None:
        if not self.reachable:
            raise ConnectionRefusedError(111, "store not reachable")
        await super().start()


async def test_a_relay_starts_and_delivers_while_a_store_is_down_at_start(world: World) -> None:
    await world.place_orders(5)
    down, healthy = _UnreachableAtStart("down"), MemorySink("healthy")
    relay = world.relay(down, healthy)
    running = asyncio.create_task(relay.run())
    try:
        expected = await world.orders_in_postgres()
        await eventually(lambda: memory_state(healthy) == expected)
        assert down.state == {}
        down.reachable = True
        await eventually(lambda: memory_state(down) == expected)
    finally:
        relay.stop()
        await running


async def test_leases_are_released_when_a_relay_stops(world: World) -> None:
    await world.place_orders(5)
    sink = MemorySink()
    await world.drain(sink)
    assert await positions_owned(world.gateway.pool, "memory") == [None] * 16


async def test_a_sink_that_raises_is_retried(world: World) -> None:
    await world.place_orders(3)
    sink = MemorySink()
    original = sink.apply
    calls = 0

    async def flaky_apply(batch):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("connection reset by peer")
        return await original(batch)

    sink.apply = flaky_apply  # type: ignore[method-assign]
    await world.drain(sink)
    assert memory_state(sink) == await world.orders_in_postgres()
    assert calls >= 2


class GatedSink(MemorySink):
    """A memory sink whose deliveries wait until the test opens its gate."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def apply(self, batch):  # type: ignore[no-untyped-def]
        self.waiting.set()
        await self.gate.wait()
        return await super().apply(batch)


async def test_a_sink_left_behind_by_the_shared_read_holds_back_no_other(world: World) -> None:
    await world.place_orders(30, transitions=1)  # about 90 events: 9 batches of 10
    held, fast = GatedSink("held"), MemorySink("fast")
    relay = world.relay(held, fast, batch_size=10)  # the shared stream keeps 2 x 2 batches
    running = asyncio.create_task(relay.run())
    try:
        await held.waiting.wait()
        expected = await world.orders_in_postgres()
        await eventually(lambda: memory_state(fast) == expected)
        held.gate.set()
        await eventually(lambda: memory_state(held) == expected)
    finally:
        held.gate.set()
        relay.stop()
        await running


async def test_a_slow_replay_holds_back_no_other_sink(world: World) -> None:
    orders = await world.place_orders(3)
    poisoned = str(orders[0].id)
    replaying, other = GatedSink("replaying"), MemorySink("other")
    replaying.gate.set()
    replaying.fail(Outcome.PERMANENT, matching=lambda e: e.aggregate_id == poisoned)
    await world.drain(replaying, other)
    replaying.heal()
    replaying.gate.clear()
    replaying.waiting.clear()
    await world.gateway.pool.execute(
        "UPDATE dead_letters SET replay_requested_at = now() WHERE sink = 'replaying'"
    )

    relay = world.relay(replaying, other)
    running = asyncio.create_task(relay.run())
    try:
        await replaying.waiting.wait()  # the replay is inside the sink, not yet finished
        [late] = await world.place_orders(1)
        await eventually(lambda: str(late.id) in memory_state(other), within=15)
        replaying.gate.set()
        expected = await world.orders_in_postgres()
        await eventually(lambda: memory_state(replaying) == expected)
    finally:
        replaying.gate.set()
        relay.stop()
        await running


async def test_a_batch_read_walks_the_index_only_as_far_as_the_batch(world: World) -> None:
    """On a fresh outbox without statistics, the read must not scan the whole backlog."""
    await world.publish_items(5_000)
    async with world.gateway.pool.acquire() as connection:
        before = await index_tuples_read(connection, "outbox_position")
        batch = await outbox.read_batch(connection, (0, 0), outbox.PARTITIONS, 100)
        after = await index_tuples_read(connection, "outbox_position")

    assert len(batch) == 100
    assert 100 <= after - before <= 200  # the index in order, no further than the batch


async def test_a_batch_read_gives_every_field_of_the_event_as_written(world: World) -> None:
    event = Event(
        aggregate_type="order",
        aggregate_id="order-7",
        event_type="order.paid",
        version=3,
        payload={"status": "paid", "lines": [{"sku": "A", "quantity": 2}]},
        headers={"trace_id": "abc"},
    )
    async with world.gateway.pool.acquire() as connection:
        async with connection.transaction():
            await world.gateway.publish(connection, [event])
        row = await fetch_required(
            connection, "SELECT id, txid::text::bigint AS txid, partition, occurred_at FROM outbox"
        )
        [stored] = await outbox.read_batch(connection, (0, 0), outbox.PARTITIONS, 10)

    assert (stored.id, stored.txid, stored.partition) == (row["id"], row["txid"], row["partition"])
    assert stored.envelope == EventEnvelope(
        event_id=event.event_id,
        sequence=row["id"],
        aggregate_type="order",
        aggregate_id="order-7",
        version=3,
        event_type="order.paid",
        payload={"status": "paid", "lines": [{"sku": "A", "quantity": 2}]},
        headers={"trace_id": "abc"},
        occurred_at=row["occurred_at"],
    )


async def test_the_idle_check_and_the_backlog_walk_the_index_not_the_whole_outbox(
    world: World,
) -> None:
    """Delivered events stay in the outbox for days: checking for work must not read them."""
    await world.publish_items(5_000)
    sink = MemorySink("idle")
    await world.drain(sink)
    # As autovacuum keeps it on a real outbox: the backlog's count is planned from statistics.
    await world.gateway.pool.execute("ANALYZE outbox")
    # Partition 15 goes back to where the last hundred events begin.
    back_to = await world.gateway.pool.fetchrow(
        "SELECT txid, id FROM outbox ORDER BY txid, id OFFSET 4900 LIMIT 1"
    )
    assert back_to is not None
    await world.gateway.pool.execute(
        "UPDATE relay_positions SET position_txid = $1, position_id = $2"
        " WHERE sink = 'idle' AND partition = 15",
        back_to["txid"],
        back_to["id"],
    )
    behind = await world.gateway.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE partition = 15 AND (txid, id) > ($1::xid8, $2)",
        back_to["txid"],
        back_to["id"],
    )

    async with world.gateway.pool.acquire() as connection:
        before = await sequential_tuples_read(connection, "outbox")
        assert await tables.sink_has_work(connection, "idle")
        [backlog] = await outbox.backlog(connection)
        after = await sequential_tuples_read(connection, "outbox")
        assert (backlog.sink, backlog.events) == ("idle", behind)
        assert after == before

        await world.drain(sink)
        before = await sequential_tuples_read(connection, "outbox")
        assert not await tables.sink_has_work(connection, "idle")
        [backlog] = await outbox.backlog(connection)
        after = await sequential_tuples_read(connection, "outbox")
        assert (backlog.events, backlog.oldest_age_seconds) == (0, None)
        assert after == before


async def sequential_tuples_read(connection: Connection, table: str) -> int:
    """Rows of ``table`` read by sequential scans so far, counting this session's own."""
    return await statistic_now(
        connection, "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = $1", table
    )


async def index_tuples_read(connection: Connection, index: str) -> int:
    """Index tuples read so far, counting this session's own reads."""
    return await statistic_now(
        connection, "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = $1", index
    )


async def statistic_now(connection: Connection, sql: str, name: str) -> int:
    """A cumulative statistic, once this session's own activity has been flushed to it."""
    await connection.execute("SELECT pg_stat_force_next_flush()")
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    value: int = await connection.fetchval(sql, name)
    return value
