"""The relay as a whole over the in-memory storage: every rule end to end, without a server.

The acceptance tests prove the same against PostgreSQL and the real stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from adapters.base import Outcome
from adapters.memory import MemorySink
from gateway.postgres.outbox import PARTITIONS
from gateway.relay import Relay
from support.eventually import eventually
from tests import relay_settings
from tests.unit.relay_fakes import InMemoryRelayStorage

FAST = relay_settings.FAST.model_copy(
    update={"batch_size": 10, "poll_interval_seconds": 0.01, "shutdown_timeout_seconds": 5}
)


def relay(storage: InMemoryRelayStorage, *sinks: MemorySink, **overrides: Any) -> Relay:
    return Relay(None, None, list(sinks), FAST.model_copy(update=overrides), storage=storage)


@asynccontextmanager
async def running(relay_: Relay) -> AsyncIterator[Relay]:
    """The relay running in a task; stopped, and waited for, on the way out."""
    task = asyncio.create_task(relay_.run())
    try:
        yield relay_
    finally:
        relay_.stop()
        await asyncio.wait_for(task, 10)


async def drain(storage: InMemoryRelayStorage, *sinks: MemorySink, **overrides: Any) -> Relay:
    running = relay(storage, *sinks, **overrides)
    await asyncio.wait_for(running.run(until_idle=True), 30)
    return running


def last_position(storage: InMemoryRelayStorage) -> tuple[int, int]:
    return storage.events[-1].position


async def test_every_event_reaches_every_sink_and_every_position_passes_it() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(95)
    first, second = MemorySink("first"), MemorySink("second")

    await drain(storage, first, second)

    for sink in (first, second):
        assert len(sink.state) == 95
        assert storage.delivered[sink.name] == 95
        assert set(storage.position_of(sink.name).values()) == {last_position(storage)}
    assert storage.dead_letters == []


async def test_sinks_at_the_same_place_read_each_batch_once() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(95)

    await drain(storage, MemorySink("first"), MemorySink("second"), MemorySink("third"))

    batches = [read for read in storage.reads if read[1] == tuple(PARTITIONS)]
    assert len(batches) == len(set(batches))  # no batch read twice


async def test_a_transient_failure_is_retried_and_delivered() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(30)
    sink = MemorySink("flaky")
    sink.fail(Outcome.TRANSIENT, times=2, matching=lambda e: e.aggregate_id == "o7")

    await drain(storage, sink)

    assert "order:o7" in sink.state and len(sink.state) == 30
    assert storage.dead_letters == [] and storage.delivered["flaky"] == 30


async def test_a_permanent_failure_is_dead_lettered_and_the_rest_delivered() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(30)
    sink = MemorySink("strict")
    sink.fail(Outcome.PERMANENT, times=1, matching=lambda e: e.aggregate_id == "o7")

    await drain(storage, sink)

    [(name, letter)] = storage.dead_letters
    assert (name, letter.reason, letter.event.envelope.aggregate_id) == (
        "strict",
        "permanent",
        "o7",
    )
    assert len(sink.state) == 29 and storage.delivered["strict"] == 29
    assert set(storage.position_of("strict").values()) == {last_position(storage)}


async def test_an_event_failing_every_attempt_is_dead_lettered_after_max_attempts() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(5)
    sink = MemorySink("stubborn")
    sink.fail(Outcome.TRANSIENT, times=100, matching=lambda e: e.aggregate_id == "o3")

    await drain(storage, sink)

    [(_, letter)] = storage.dead_letters
    assert (letter.reason, letter.attempts) == ("attempts_exhausted", FAST.max_attempts)
    assert len(sink.state) == 4


async def test_a_store_that_is_down_holds_its_position_and_dead_letters_nothing() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(20)
    sink = MemorySink("down")
    sink.down = True
    async with running(relay(storage, sink)):
        await eventually(lambda: any(storage.retrying.values()))
        assert set(storage.position_of("down").values()) == {(0, 0)}
        assert storage.dead_letters == []
        # The oldest batch waits for the store, each of its events counted once.
        assert sum(storage.retrying.values()) == FAST.batch_size

        sink.down = False
        await eventually(lambda: storage.delivered["down"] == 20)
    assert storage.dead_letters == [] and len(sink.state) == 20


async def test_a_batch_whose_lease_was_lost_is_not_committed_by_the_loser() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(12, partitions=[4])
    sink = MemorySink("contested")
    sink.fail(Outcome.TRANSIENT, matching=lambda e: e.aggregate_id == "o1")
    async with running(relay(storage, sink, max_attempts=1_000_000)) as contested:
        await eventually(lambda: bool(storage.retrying.get(("contested", 4))))
        storage.steal("contested", 4, "another-relay")
        # The worker gives the batch up at its next renewal and never moves partition 4.
        await eventually(lambda: 4 not in contested.workers[0].owned)
    assert storage.position_of("contested")[4] == (0, 0)
    assert storage.dead_letters == []


async def test_a_failed_commit_loses_nothing_the_batch_is_delivered_again() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(25)
    storage.fail_commits = 1
    sink = MemorySink("committing")

    await drain(storage, sink)

    assert set(storage.position_of("committing").values()) == {last_position(storage)}
    assert len(sink.state) == 25
    assert storage.delivered["committing"] == 25


async def test_a_failed_read_is_retried() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(25)
    storage.fail_reads = 2
    sink = MemorySink("reading")

    await drain(storage, sink)

    assert len(sink.state) == 25


async def test_a_sink_registered_at_now_skips_what_was_committed_before() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(10)
    sink = MemorySink("late")

    await drain(storage, sink, start_from="now")

    assert sink.state == {}


async def test_stopping_releases_every_lease() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(5)
    async with running(relay(storage, MemorySink("leaving"))) as leaving:
        await asyncio.wait_for(leaving.ready.wait(), 10)
        assert len(storage.owners("leaving")) == 16
    assert storage.owners("leaving") == {} and storage.instances == {}


async def test_two_relays_split_the_partitions_and_together_deliver_everything() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(200)
    first_sink, second_sink = MemorySink("shared"), MemorySink("shared")
    first, second = relay(storage, first_sink), relay(storage, second_sink)

    await asyncio.wait_for(
        asyncio.gather(first.run(until_idle=True), second.run(until_idle=True)), 30
    )

    assert set(storage.position_of("shared").values()) == {last_position(storage)}
    assert storage.delivered["shared"] == 200
    assert len(first_sink.state) + len(second_sink.state) >= 200


async def test_after_a_failover_that_lost_commits_no_event_is_skipped() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(12)
    sink = MemorySink("docs")
    async with running(relay(storage, sink, batch_size=4)):
        await eventually(lambda: storage.delivered["docs"] == 12)
        storage.catch_up_standby()
        storage.publish(12)  # committed and delivered, then lost with the primary
        await eventually(lambda: storage.delivered["docs"] == 24)
        lost = storage.fail_over()
        assert len(lost) == 12
        # The new primary gives the lost events' transaction ids and outbox ids again.
        storage.publish(12)
        assert {e.position for e in storage.events[-12:]} == {e.position for e in lost}
        wanted = {e.envelope.event_id for e in storage.events}
        await eventually(lambda: wanted <= set(sink.deliveries), within=10)
        await eventually(lambda: set(storage.position_of("docs").values()) == {lost[-1].position})


async def test_a_sink_whose_registration_a_failover_lost_misses_nothing_after_it() -> None:
    storage = InMemoryRelayStorage()
    storage.publish(3)  # before the sink starts "now": not for it
    storage.catch_up_standby()  # the standby will not have the sink's registration
    sink = MemorySink("docs")
    now = Relay(
        None,
        None,
        [sink],
        FAST.model_copy(update={"batch_size": 4}),
        storage=storage,
        start_from={"docs": "now"},
    )
    async with running(now):
        await eventually(lambda: ("docs", 0) in storage.rows)
        storage.publish(5)
        await eventually(lambda: storage.delivered["docs"] == 5)
        storage.fail_over()  # the registration and the five events lost
        assert ("docs", 0) not in storage.rows
        storage.publish(6)  # on the new primary, before the relay notices
        wanted = {e.envelope.event_id for e in storage.events[-6:]}
        await eventually(lambda: wanted <= set(sink.deliveries), within=10)
