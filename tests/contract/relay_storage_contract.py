"""The rules of :class:`~gateway.relay.storage.RelayStorage`, one test each, that every
storage must pass: the in-memory one the unit tests and the simulation use, and PostgreSQL's.

A concrete test class subclasses :class:`RelayStorageContract` and provides a ``harness``
fixture (see :mod:`tests.contract.harnesses`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.errors import SinkInUse, UnknownSink
from gateway.postgres.outbox import PARTITIONS, StoredEvent
from gateway.relay.sessions import RelaySession, SessionCheck
from gateway.relay.tables import DeadLetter, Move, Position, Replay
from support.eventually import eventually
from tests.contract.harnesses import Harness, publish

TTL = 0.4
"""A lease's life in the tests that let one expire (PostgreSQL's must genuinely pass)."""
LONG = 60.0
"""A lease's life in the tests where none may expire."""


def name(prefix: str) -> str:
    """A sink or relay name of this test's own."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def session_of(harness: Harness, instance: str) -> AsyncIterator[RelaySession]:
    """``instance``'s liveness session, ended on the way out."""
    session = await harness.storage.open_session(instance, "host", 1)
    try:
        yield session
    finally:
        await session.close()


async def reaped(watcher: RelaySession, instance: str) -> SessionCheck:
    """Check ``watcher``'s session until a check finds ``instance`` dead (PostgreSQL's backend
    exits a moment after its client's socket closes); that check."""
    found: list[SessionCheck] = []

    async def dead() -> bool:
        found.append(await watcher.check(LONG))
        return instance in found[-1].reaped

    await eventually(dead, within=10)
    return found[-1]


@dataclasses.dataclass(frozen=True)
class HeldEvent:
    """An event committed, its sink registered from the beginning and every lease held."""

    sink: str
    owner: str
    event: StoredEvent
    start: Position
    """The sink's position in the event's partition (before it)."""


async def held_event(harness: Harness, aggregate: str | None = None) -> HeldEvent:
    """One event of ``aggregate`` (a new one by default) in a new sink whose leases a new
    relay holds."""
    sink, owner = name("sink"), name("a")
    event = await publish(harness, aggregate or name("x"))
    await harness.storage.register_sink(sink, from_beginning=True)
    await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
    (start,) = (await harness.storage.positions(sink, [event.partition])).values()
    return HeldEvent(sink, owner, event, start)


class RelayStorageContract:
    """The relay storage's rules; subclasses provide ``harness``."""

    # Reading the outbox ----------------------------------------------------------------------

    async def test_read_batch_returns_committed_events_after_a_position_in_order(
        self, harness: Harness
    ) -> None:
        events = [await publish(harness, name("a")) for _ in range(5)]
        read = await harness.storage.read_batch(events[1].position, PARTITIONS, 100)
        assert [e.id for e in read] == [e.id for e in events[2:]]

    async def test_read_batch_keeps_the_partitions_asked_for_and_the_limit(
        self, harness: Harness
    ) -> None:
        events = [await publish(harness, name("a")) for _ in range(12)]
        wanted = sorted({events[0].partition, events[1].partition})
        read = await harness.storage.read_batch((0, 0), wanted, 100)
        assert [e.id for e in read] == [e.id for e in events if e.partition in wanted]
        limited = await harness.storage.read_batch((0, 0), PARTITIONS, 3)
        assert [e.id for e in limited] == [e.id for e in events[:3]]

    async def test_an_open_transaction_hides_later_commits_until_it_ends(
        self, harness: Harness
    ) -> None:
        slow = await harness.begin()
        early = await slow.append(name("slow"))
        late = await publish(harness, name("fast"))
        assert early.id < late.id
        read = await harness.storage.read_batch((0, 0), PARTITIONS, 100)
        assert late.id not in {e.id for e in read}
        await slow.commit()
        read = await harness.storage.read_batch((0, 0), PARTITIONS, 100)
        assert [e.id for e in read] == [early.id, late.id]

    async def test_a_rolled_back_event_is_never_read(self, harness: Harness) -> None:
        writer = await harness.begin()
        lost = await writer.append(name("lost"))
        await writer.abort()
        kept = await publish(harness, name("kept"))
        read: list[StoredEvent] = []

        async def kept_is_read() -> bool:
            # Another database's transaction on the same server may hold the horizon a moment.
            nonlocal read
            read = await harness.storage.read_batch((0, 0), PARTITIONS, 100)
            return kept.id in {e.id for e in read}

        await eventually(kept_is_read, within=30)
        assert [e.id for e in read] == [kept.id] and lost.id != kept.id

    async def test_earlier_versions_are_read_past_a_position_whatever_still_runs(
        self, harness: Harness
    ) -> None:
        aggregate = name("order")
        first = await publish(harness, aggregate, 1)
        blocker = await harness.begin()
        await blocker.append(name("other"))
        await publish(harness, aggregate, 2)
        third = await publish(harness, aggregate, 3)
        read = await harness.storage.read_earlier_versions({aggregate: 3}, first.position)
        assert [e.envelope.version for e in read] == [2]
        read = await harness.storage.read_earlier_versions({aggregate: 3}, (0, 0))
        assert [e.envelope.version for e in read] == [1, 2]
        assert third.id not in {e.id for e in read}
        await blocker.commit()

    # Sinks and positions ---------------------------------------------------------------------

    async def test_a_sink_registered_from_the_beginning_stands_before_every_event(
        self, harness: Harness
    ) -> None:
        sink = name("sink")
        event = await publish(harness, name("a"))
        await harness.storage.register_sink(sink, from_beginning=True)
        positions = await harness.storage.positions(sink, PARTITIONS)
        assert set(positions) == set(PARTITIONS)
        assert all(p < event.position for p in positions.values())
        assert await harness.storage.has_work(sink)

    async def test_registering_again_keeps_the_positions(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("relay")
        event = await publish(harness, name("a"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [event.partition], LONG)
        await harness.storage.commit_batch(
            sink, owner, {event.partition: Move(event.position, 1)}, []
        )
        await harness.storage.register_sink(sink, from_beginning=True)
        moved = await harness.storage.positions(sink, [event.partition])
        assert moved == {event.partition: event.position}

    async def test_a_sink_registered_now_skips_what_is_committed_but_not_what_still_runs(
        self, harness: Harness
    ) -> None:
        sink = name("sink")
        old = await publish(harness, name("old"))
        running = await harness.begin()
        pending = await running.append(name("pending"))
        await harness.storage.register_sink(sink, from_beginning=False)
        await running.commit()
        positions = await harness.storage.positions(sink, PARTITIONS)
        assert positions[old.partition] >= old.position
        assert positions[pending.partition] < pending.position
        assert await harness.storage.has_work(sink)

    async def test_positions_are_given_for_the_partitions_asked_for(self, harness: Harness) -> None:
        sink = name("sink")
        await harness.storage.register_sink(sink, from_beginning=True)
        assert set(await harness.storage.positions(sink, [3, 7])) == {3, 7}

    async def test_has_work_is_false_once_every_position_is_past_every_event(
        self, harness: Harness
    ) -> None:
        sink, _ = await caught_up_sink(harness)
        assert not await harness.storage.has_work(sink)

    async def test_has_work_counts_a_committed_event_an_older_running_transaction_holds_back(
        self, harness: Harness
    ) -> None:
        """A relay run until idle must not stop while a committed event waits only for an older
        transaction (of any database of the server) to end before it can be read."""
        sink, event = await caught_up_sink(harness)
        older = await harness.begin()
        try:
            await older.append(name("older"))
            held_back = await publish(harness, name("held back"))
            readable = await harness.storage.read_batch(event.position, PARTITIONS, 100)
            assert held_back.id not in {e.id for e in readable}
            assert await harness.storage.has_work(sink)
        finally:
            await older.abort()

    # Leases ----------------------------------------------------------------------------------

    async def test_a_claim_takes_only_partitions_no_live_lease_covers(
        self, harness: Harness
    ) -> None:
        sink, first, second = name("sink"), name("a"), name("b")
        await harness.storage.register_sink(sink, from_beginning=True)
        assert await harness.storage.claim_leases(sink, first, [0, 1, 2], LONG) == {0, 1, 2}
        assert await harness.storage.claim_leases(sink, second, [2, 3], LONG) == {3}
        assert await harness.storage.claim_leases(sink, first, [1, 2], LONG) == {1, 2}

    async def test_a_claim_takes_a_partition_whose_lease_expired(self, harness: Harness) -> None:
        sink, first, second = name("sink"), name("a"), name("b")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, first, [4], TTL)
        await harness.elapse(TTL * 1.5)
        assert await harness.storage.claim_leases(sink, second, [4], LONG) == {4}
        assert await harness.storage.renew_leases(sink, first, LONG) == set()

    async def test_renewal_returns_the_owner_s_partitions_of_that_sink_only(
        self, harness: Harness
    ) -> None:
        sink, other_sink, first, second = name("sink"), name("sink"), name("a"), name("b")
        for s in (sink, other_sink):
            await harness.storage.register_sink(s, from_beginning=True)
        await harness.storage.claim_leases(sink, first, [0, 1], LONG)
        await harness.storage.claim_leases(other_sink, first, [2], LONG)
        await harness.storage.claim_leases(sink, second, [5], LONG)
        assert await harness.storage.renew_leases(sink, first, LONG) == {0, 1}

    async def test_renewal_keeps_a_lease_alive(self, harness: Harness) -> None:
        sink, first, second = name("sink"), name("a"), name("b")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, first, [6], TTL)
        await harness.storage.renew_leases(sink, first, LONG)
        await harness.elapse(TTL * 1.5)
        assert await harness.storage.claim_leases(sink, second, [6], LONG) == set()

    async def test_an_expired_lease_no_other_relay_took_is_renewed(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [6], TTL)
        await harness.elapse(TTL * 1.5)
        assert await harness.storage.renew_leases(sink, owner, LONG) == {6}

    async def test_a_released_lease_is_taken_at_once_and_only_its_owner_releases_it(
        self, harness: Harness
    ) -> None:
        sink, first, second = name("sink"), name("a"), name("b")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, first, [1, 2], LONG)
        await harness.storage.release_leases(sink, second, [1, 2])
        assert await harness.storage.claim_leases(sink, second, [1], LONG) == set()
        await harness.storage.release_leases(sink, first, [1])
        assert await harness.storage.claim_leases(sink, second, [1, 2], LONG) == {1}

    async def test_a_heartbeat_renews_every_lease_of_the_instance_and_lists_the_live(
        self, harness: Harness
    ) -> None:
        sink, other_sink, first, second = name("sink"), name("sink"), name("a"), name("b")
        for s in (sink, other_sink):
            await harness.storage.register_sink(s, from_beginning=True)
        await harness.storage.claim_leases(sink, first, [0], TTL)
        await harness.storage.claim_leases(other_sink, first, [1], TTL)
        await harness.storage.heartbeat(second, "host", 2, TTL)
        live = await harness.storage.heartbeat(first, "host", 1, LONG)
        assert {first, second} <= set(live)
        await harness.elapse(TTL * 1.5)
        assert await harness.storage.claim_leases(sink, second, [0], LONG) == set()
        assert await harness.storage.claim_leases(other_sink, second, [1], LONG) == set()
        live = await harness.storage.heartbeat(first, "host", 1, TTL)
        assert first in live and second not in live

    async def test_a_heartbeat_leaves_the_leases_of_a_stalled_sink_to_expire_and_says_so(
        self, harness: Harness
    ) -> None:
        stalled, healthy, first, second = name("sink"), name("sink"), name("a"), name("b")
        for s in (stalled, healthy):
            await harness.storage.register_sink(s, from_beginning=True)
        await harness.storage.claim_leases(stalled, first, [0], TTL)
        await harness.storage.claim_leases(healthy, first, [1], TTL)
        live = await harness.storage.heartbeat(first, "host", 1, LONG, [stalled])
        assert live[first] == {stalled}
        await harness.elapse(TTL * 1.5)
        assert await harness.storage.claim_leases(healthy, second, [1], LONG) == set()
        assert await harness.storage.claim_leases(stalled, second, [0], LONG) == {0}
        live = await harness.storage.heartbeat(first, "host", 1, LONG)
        assert live[first] == frozenset()

    async def test_leaving_releases_the_leases_and_forgets_the_instance(
        self, harness: Harness
    ) -> None:
        sink, first, second = name("sink"), name("a"), name("b")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.heartbeat(first, "host", 1, LONG)
        await harness.storage.claim_leases(sink, first, [0, 1], LONG)
        await harness.storage.leave(first, {sink: [0, 1]})
        assert first not in await harness.storage.heartbeat(second, "host", 2, LONG)
        assert await harness.storage.claim_leases(sink, second, [0, 1], LONG) == {0, 1}

    # Liveness sessions -----------------------------------------------------------------------

    async def test_an_instance_whose_session_ended_loses_its_leases_at_once_not_after_ttl(
        self, harness: Harness
    ) -> None:
        sink, dead, survivor = name("sink"), name("dead"), name("survivor")
        await harness.storage.register_sink(sink, from_beginning=True)
        doomed = await harness.storage.open_session(dead, "host", 1)
        await harness.storage.heartbeat(dead, "host", 1, LONG)
        assert await harness.storage.claim_leases(sink, dead, [0, 1], LONG) == {0, 1}
        async with session_of(harness, survivor) as watcher:
            first = await watcher.check(LONG)
            assert first.reaped == frozenset() and dead in first.live
            assert await harness.storage.claim_leases(sink, survivor, [0, 1], LONG) == set()
            await doomed.close()
            found = await reaped(watcher, dead)
            assert dead not in found.live and survivor in found.live
            assert await harness.storage.claim_leases(sink, survivor, [0, 1], LONG) == {0, 1}
            assert dead not in await harness.storage.heartbeat(survivor, "host", 2, LONG)

    async def test_a_silent_instance_whose_session_lives_keeps_its_leases_until_ttl(
        self, harness: Harness
    ) -> None:
        sink, hung, other = name("sink"), name("hung"), name("other")
        await harness.storage.register_sink(sink, from_beginning=True)
        async with session_of(harness, hung), session_of(harness, other) as watcher:
            assert await harness.storage.claim_leases(sink, hung, [3], TTL) == {3}
            assert (await watcher.check(LONG)).reaped == frozenset()
            assert await harness.storage.claim_leases(sink, other, [3], LONG) == set()
            await harness.elapse(TTL * 1.5)
            assert (await watcher.check(LONG)).reaped == frozenset()
            assert await harness.storage.claim_leases(sink, other, [3], LONG) == {3}

    async def test_a_session_of_an_earlier_server_run_is_left_to_its_lease(
        self, harness: Harness
    ) -> None:
        sink, before, other = name("sink"), name("before"), name("other")
        await harness.storage.register_sink(sink, from_beginning=True)
        ended = await harness.storage.open_session(before, "host", 1)
        await harness.storage.claim_leases(sink, before, [5], TTL)
        await harness.record_on_an_earlier_server_run(before)
        await ended.close()
        async with session_of(harness, other) as watcher:
            # However long PostgreSQL takes to see the session end, it is never judged.
            await harness.elapse(TTL * 1.5)
            found = await watcher.check(LONG)
            assert found.reaped == frozenset() and before in found.live
            assert await harness.storage.claim_leases(sink, other, [5], LONG) == {5}

    async def test_a_check_records_the_session_again_once_the_row_is_gone(
        self, harness: Harness
    ) -> None:
        sink, relay, other = name("sink"), name("relay"), name("other")
        await harness.storage.register_sink(sink, from_beginning=True)
        session = await harness.storage.open_session(relay, "host", 1)
        await harness.storage.leave(relay, {})
        await harness.storage.heartbeat(relay, "host", 1, LONG)
        await session.check(LONG)
        await harness.storage.claim_leases(sink, relay, [2], LONG)
        async with session_of(harness, other) as watcher:
            await session.close()
            await reaped(watcher, relay)
            assert await harness.storage.claim_leases(sink, other, [2], LONG) == {2}

    async def test_a_commit_by_a_relay_whose_session_ended_is_refused_after_takeover(
        self, harness: Harness
    ) -> None:
        sink, former, taker = name("sink"), name("former"), name("taker")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        session = await harness.storage.open_session(former, "host", 1)
        await harness.storage.claim_leases(sink, former, [event.partition], LONG)
        async with session_of(harness, taker) as watcher:
            await session.close()
            await reaped(watcher, former)
            assert await harness.storage.claim_leases(sink, taker, [event.partition], LONG)
            moves = {event.partition: Move(event.position, 1)}
            assert not await harness.storage.commit_batch(sink, former, moves, [])
            assert (await harness.storage.positions(sink, [event.partition]))[
                event.partition
            ] < event.position
            assert await harness.storage.commit_batch(sink, taker, moves, [])

    # Commits ---------------------------------------------------------------------------------

    async def test_a_commit_moves_the_holder_s_positions_forward(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [event.partition], LONG)
        moves = {event.partition: Move(event.position, 1)}
        assert await harness.storage.commit_batch(sink, owner, moves, [])
        assert await harness.storage.positions(sink, [event.partition]) == {
            event.partition: event.position
        }

    async def test_a_commit_by_a_relay_that_holds_no_lease_writes_nothing(
        self, harness: Harness
    ) -> None:
        sink, owner, thief = name("sink"), name("a"), name("b")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [event.partition], LONG)
        dead = [DeadLetter(event, "permanent", "no", 1)]
        moves = {event.partition: Move(event.position, 1)}
        assert not await harness.storage.commit_batch(sink, thief, moves, dead)
        assert (await harness.storage.positions(sink, [event.partition]))[event.partition] < (
            event.position
        )
        assert await harness.dead_letter_attempts(sink) == {}

    async def test_a_commit_with_one_lease_lost_writes_nothing_of_the_others(
        self, harness: Harness
    ) -> None:
        sink, owner, other = name("sink"), name("a"), name("b")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        mine = [p for p in PARTITIONS if p != event.partition]
        await harness.storage.claim_leases(sink, owner, mine, LONG)
        await harness.storage.claim_leases(sink, other, [event.partition], LONG)
        moves = {p: Move(event.position, 0) for p in PARTITIONS}
        assert not await harness.storage.commit_batch(sink, owner, moves, [])
        assert all(
            p < event.position for p in (await harness.storage.positions(sink, mine)).values()
        )

    async def test_a_commit_never_moves_a_position_back_or_in_place(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        first = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        p = first.partition
        assert await harness.storage.commit_batch(sink, owner, {p: Move(first.position, 1)}, [])
        assert not await harness.storage.commit_batch(sink, owner, {p: Move(first.position, 1)}, [])
        assert not await harness.storage.commit_batch(sink, owner, {p: Move((0, 0), 0)}, [])
        assert await harness.storage.positions(sink, [p]) == {p: first.position}

    async def test_a_commit_moves_a_position_only_from_where_its_mover_read_it(
        self, harness: Harness
    ) -> None:
        aggregate = name("x")
        held = await held_event(harness, aggregate)
        sink, owner, first, start = held.sink, held.owner, held.event, held.start
        p = first.partition
        second = await publish(harness, aggregate, 2)
        # The relay believes it stands at ``first`` (say a failover lost that commit): refused,
        # with the dead letters of the batch.
        letter = DeadLetter(second, "attempts_exhausted", "boom", 3)
        moves = {p: Move(second.position, 1, since=first.position)}
        assert not await harness.storage.commit_batch(sink, owner, moves, [letter])
        assert await harness.storage.positions(sink, [p]) == {p: start}
        assert await harness.dead_letter_attempts(sink) == {}
        moves = {p: Move(second.position, 2, since=start)}
        assert await harness.storage.commit_batch(sink, owner, moves, [])
        assert await harness.storage.positions(sink, [p]) == {p: second.position}

    async def test_a_batch_commits_only_on_the_server_run_it_was_read_from(
        self, harness: Harness
    ) -> None:
        held = await held_event(harness)
        sink, owner, event, start = held.sink, held.owner, held.event, held.start
        p = event.partition
        read_at = harness.storage.server_changes()
        await harness.fail_over()  # between the batch's read and its commit
        assert harness.storage.server_changes() > read_at
        moves = {p: Move(event.position, 1, since=start)}
        letter = DeadLetter(event, "attempts_exhausted", "boom", 3)
        assert not await harness.storage.commit_batch(sink, owner, moves, [], server=read_at)
        assert not await harness.storage.commit_batch(sink, owner, {}, [letter], server=read_at)
        assert await harness.storage.positions(sink, [p]) == {p: start}
        assert await harness.dead_letter_attempts(sink) == {}
        now = harness.storage.server_changes()
        assert await harness.storage.commit_batch(sink, owner, moves, [letter], server=now)
        assert await harness.storage.positions(sink, [p]) == {p: event.position}

    async def test_the_owner_of_an_expired_lease_no_one_took_still_commits(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [event.partition], TTL)
        await harness.elapse(TTL * 1.5)
        moves = {event.partition: Move(event.position, 1)}
        assert await harness.storage.commit_batch(sink, owner, moves, [])

    async def test_a_dead_letter_is_kept_once_per_event_with_its_attempts_added_up(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        dead = [DeadLetter(event, "attempts_exhausted", "boom", 3)]
        assert await harness.storage.commit_batch(sink, owner, {}, dead)
        assert await harness.storage.commit_batch(sink, owner, {}, dead)
        assert await harness.dead_letter_attempts(sink) == {event.envelope.event_id: 6}

    async def test_retrying_counts_only_held_partitions_and_a_commit_or_release_clears_them(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        p = event.partition
        other = (p + 1) % len(PARTITIONS)
        await harness.storage.claim_leases(sink, owner, [p, other], LONG)
        await harness.storage.record_retrying(sink, owner, {p: 4, other: 2}, "down")
        await harness.storage.record_retrying(sink, name("b"), {p: 9}, "not mine")
        assert {k: v for k, v in (await harness.retrying(sink)).items() if v} == {p: 4, other: 2}
        await harness.storage.commit_batch(sink, owner, {p: Move(event.position, 1)}, [])
        await harness.storage.release_leases(sink, owner, [other])
        assert not any((await harness.retrying(sink)).values())

    # Replays ---------------------------------------------------------------------------------

    async def _dead_letter(self, harness: Harness, sink: str, owner: str) -> None:
        event = await publish(harness, name("x"))
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        dead = [DeadLetter(event, "permanent", "bad", 1)]
        moves = {event.partition: Move(event.position, 0)}
        assert await harness.storage.commit_batch(sink, owner, moves, dead)

    async def _claimed_replay(self, harness: Harness, sink: str, owner: str) -> Replay:
        """A dead letter of ``sink``, its replay requested and claimed by ``owner``."""
        await self._dead_letter(harness, sink, owner)
        await harness.request_replay(sink)
        [replay] = await harness.storage.claim_replays(sink, owner, 10, LONG)
        return replay

    async def test_only_a_requested_replay_is_claimed_and_it_makes_work(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        await self._dead_letter(harness, sink, owner)
        assert await harness.storage.claim_replays(sink, owner, 10, LONG) == []
        assert not await harness.storage.has_work(sink)
        assert await harness.request_replay(sink) == 1
        assert await harness.storage.has_work(sink)
        [replay] = await harness.storage.claim_replays(sink, owner, 10, LONG)
        assert replay.attempts == 1

    async def test_a_claimed_replay_is_not_claimed_again_until_its_claim_expires(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        await self._dead_letter(harness, sink, owner)
        await harness.request_replay(sink)
        assert len(await harness.storage.claim_replays(sink, owner, 10, TTL)) == 1
        assert await harness.storage.claim_replays(sink, name("b"), 10, LONG) == []
        await harness.elapse(TTL * 1.5)
        assert len(await harness.storage.claim_replays(sink, name("b"), 10, LONG)) == 1

    async def test_a_delivered_replay_is_resolved(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        replay = await self._claimed_replay(harness, sink, owner)
        await harness.storage.finish_replays(owner, [replay], [])
        assert await harness.dead_letter_attempts(sink) == {}
        assert not await harness.storage.has_work(sink)

    async def test_a_replay_finishes_only_the_claimed_letter_of_its_event(
        self, harness: Harness
    ) -> None:
        """After a failover that lost the last commits, a letter's id may name another."""
        sink, owner = name("sink"), name("a")
        replay = await self._claimed_replay(harness, sink, owner)
        other = await publish(harness, name("other"))
        elsewhere = dataclasses.replace(replay, event=other)
        await harness.storage.finish_replays(owner, [elsewhere], [(elsewhere, "no", False)])
        assert list((await harness.dead_letter_attempts(sink)).values()) == [1]  # untouched
        # Nor one another relay claims now (this one's claim was lost with a failover, say).
        await harness.storage.finish_replays(name("b"), [replay], [(replay, "no", False)])
        assert list((await harness.dead_letter_attempts(sink)).values()) == [1]
        await harness.storage.finish_replays(owner, [replay], [])
        assert await harness.dead_letter_attempts(sink) == {}

    async def test_a_failed_replay_is_claimed_again_only_if_it_may_be_retried(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        replay = await self._claimed_replay(harness, sink, owner)
        await harness.storage.finish_replays(owner, [], [(replay, "later", True)])
        [again] = await harness.storage.claim_replays(sink, owner, 10, LONG)
        assert again.attempts == 2
        await harness.storage.finish_replays(owner, [], [(again, "never", False)])
        assert await harness.storage.claim_replays(sink, owner, 10, LONG) == []
        assert list((await harness.dead_letter_attempts(sink)).values()) == [3]

    # Upkeep ----------------------------------------------------------------------------------

    async def test_prune_deletes_only_events_every_sink_has_passed(self, harness: Harness) -> None:
        first, second, owner = name("sink"), name("sink"), name("a")
        events = [await publish(harness, name("x")) for _ in range(3)]
        for sink in (first, second):
            await harness.storage.register_sink(sink, from_beginning=True)
            await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        everything = {p: Move(events[-1].position, 0) for p in PARTITIONS}
        assert await harness.storage.commit_batch(first, owner, everything, [])
        partway = {p: Move(events[0].position, 0) for p in PARTITIONS}
        assert await harness.storage.commit_batch(second, owner, partway, [])
        await harness.elapse(0.01)
        assert await harness.storage.prune(0, 1000) == 1
        read = await harness.storage.read_batch((0, 0), PARTITIONS, 100)
        assert [e.id for e in read] == [e.id for e in events[1:]]

    async def test_prune_deletes_at_most_its_limit(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        events = [await publish(harness, name("x")) for _ in range(3)]
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        everything = {p: Move(events[-1].position, 0) for p in PARTITIONS}
        assert await harness.storage.commit_batch(sink, owner, everything, [])
        await harness.elapse(0.01)
        assert await harness.storage.prune(0, 2) == 2
        assert await harness.storage.prune(0, 2) == 1

    async def test_a_sink_no_live_lease_covers_is_unserved(self, harness: Harness) -> None:
        served, unserved, owner = name("sink"), name("sink"), name("a")
        for sink in (served, unserved):
            await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(served, owner, [0], LONG)
        await harness.storage.claim_leases(unserved, owner, [0], TTL)
        await harness.elapse(TTL * 1.5)
        names = {totals.sink for totals in await harness.storage.unserved_sinks()}
        assert unserved in names and served not in names

    async def test_the_backlog_counts_each_sink_s_undelivered_events(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        events = [await publish(harness, name("x")) for _ in range(3)]
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
        moves = {p: Move(events[0].position, 1) for p in PARTITIONS}
        await harness.storage.commit_batch(sink, owner, moves, [])
        [backlog] = [b for b in await harness.storage.backlog() if b.sink == sink]
        assert backlog.events == 2

    # Operators -------------------------------------------------------------------------------

    async def test_a_rewind_is_refused_while_a_live_lease_covers_the_sink(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, [0], LONG)
        with pytest.raises(SinkInUse):
            await harness.rewind(sink, {0: (0, 0)})

    async def test_a_rewind_moves_positions_only_back(self, harness: Harness) -> None:
        sink, owner = name("sink"), name("a")
        events = [await publish(harness, name("x")) for _ in range(2)]
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, TTL)
        moves = {p: Move(events[0].position, 0) for p in PARTITIONS}
        assert await harness.storage.commit_batch(sink, owner, moves, [])
        await harness.elapse(TTL * 1.5)
        await harness.rewind(sink, {0: (0, 0), 1: events[1].position})
        positions = await harness.storage.positions(sink, [0, 1])
        assert positions == {0: (0, 0), 1: events[0].position}

    async def test_a_rewind_takes_the_expired_leases_of_the_partitions_it_moves(
        self, harness: Harness
    ) -> None:
        """A relay whose lease expired unclaimed cannot renew it after a rewind, nor commit
        over the rewound position: it claims the partition again (and so reloads it)."""
        sink, owner = name("sink"), name("a")
        events = [await publish(harness, name("x")) for _ in range(2)]
        await harness.storage.register_sink(sink, from_beginning=True)
        await harness.storage.claim_leases(sink, owner, PARTITIONS, TTL)
        moves = {p: Move(events[0].position, 0) for p in PARTITIONS}
        assert await harness.storage.commit_batch(sink, owner, moves, [])
        await harness.elapse(TTL * 1.5)
        await harness.rewind(sink, {0: (0, 0)})

        renewed = await harness.storage.renew_leases(sink, owner, LONG)
        assert 0 not in renewed and 1 in renewed
        forward = {0: Move(events[1].position, 1)}
        assert not await harness.storage.commit_batch(sink, owner, forward, [])
        assert (await harness.storage.positions(sink, [0]))[0] == (0, 0)

    async def test_retiring_removes_an_idle_sink_and_is_refused_for_a_served_one(
        self, harness: Harness
    ) -> None:
        sink, owner = name("sink"), name("a")
        await self._dead_letter(harness, sink, owner)
        with pytest.raises(SinkInUse):
            await harness.retire(sink)
        await harness.storage.release_leases(sink, owner, PARTITIONS)
        await harness.retire(sink)
        assert await harness.storage.positions(sink, PARTITIONS) == {}
        assert await harness.dead_letter_attempts(sink) == {}
        with pytest.raises(UnknownSink):
            await harness.retire(sink)


async def caught_up_sink(harness: Harness) -> tuple[str, StoredEvent]:
    """A new sink whose every position is past the one event published for it."""
    sink, owner = name("sink"), name("relay")
    event = await publish(harness, name("a"))
    await harness.storage.register_sink(sink, from_beginning=True)
    await harness.storage.claim_leases(sink, owner, PARTITIONS, LONG)
    moves = {p: Move(event.position, 0) for p in PARTITIONS}
    assert await harness.storage.commit_batch(sink, owner, moves, [])
    return sink, event
