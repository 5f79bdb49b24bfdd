"""Telling a dead relay from a live one by its session: the rules, and the relay over the
in-memory storage when a relay dies, hangs, loses its session, or PostgreSQL restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

import asyncpg
import pytest

from adapters.memory import MemorySink
from gateway.configuration.settings import RelaySettings
from gateway.relay import Relay
from gateway.relay.leases import may_claim
from gateway.relay.sessions import (
    RecordedSession,
    SessionCheck,
    membership_changed,
    reopen_at_once,
    session_ended,
)
from gateway.relay.storage import RelayStorage
from support.eventually import eventually
from tests import relay_settings
from tests.unit.relay_fakes import InMemoryRelayStorage

RUN = 100.0
"""When the server of these tests started."""


def recorded(pid: int = 7, start: float = 150.0, server: float = RUN) -> RecordedSession[float]:
    return RecordedSession(pid, start, server)


# The rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("was_open", "error", "at_once"),
    [
        (True, asyncpg.InterfaceError("connection has been released back to the pool"), True),
        (True, asyncpg.InternalClientError("another operation (2) is in progress"), True),
        (True, asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (True, ConnectionResetError(), True),
        (True, asyncpg.QueryCanceledError("canceling statement"), False),
        (True, TimeoutError(), False),
        (False, ConnectionRefusedError(), False),
        (False, asyncpg.CannotConnectNowError("the database system is shutting down"), False),
    ],
    ids=lambda value: value if isinstance(value, bool) else type(value).__name__,
)
def test_only_an_open_session_whose_connection_ended_is_reopened_at_once(
    was_open: bool, error: Exception, at_once: bool
) -> None:
    assert reopen_at_once(was_open, error) is at_once


def test_a_relay_whose_session_pid_is_gone_is_dead() -> None:
    assert session_ended(recorded(), RUN, {8: 160.0})


def test_a_relay_whose_pid_now_serves_a_later_session_is_dead() -> None:
    assert session_ended(recorded(start=150.0), RUN, {7: 400.0})


def test_a_relay_whose_session_is_open_is_alive() -> None:
    assert not session_ended(recorded(start=150.0), RUN, {7: 150.0})


def test_a_session_whose_start_the_server_hides_is_left_to_the_lease() -> None:
    assert not session_ended(recorded(), RUN, {7: None})


def test_a_session_of_another_run_of_the_server_is_left_to_the_lease() -> None:
    assert not session_ended(recorded(server=50.0), RUN, {})


def test_a_relay_that_recorded_no_session_is_left_to_the_lease() -> None:
    assert not session_ended(None, RUN, {})


def test_membership_changes_when_a_relay_is_reaped_joins_or_leaves() -> None:
    same = SessionCheck(frozenset(), frozenset({"a", "b"}))
    assert not membership_changed(["a", "b"], same)
    assert membership_changed(["a", "b"], SessionCheck(frozenset({"c"}), frozenset({"a", "b"})))
    assert membership_changed(["a"], same)
    assert membership_changed(["a", "b", "c"], same)


def test_a_lease_may_be_claimed_when_free_own_or_expired_only() -> None:
    assert may_claim(None, None, "me", 10.0)
    assert may_claim("me", 20.0, "me", 10.0)
    assert may_claim("other", 9.0, "me", 10.0)
    assert not may_claim("other", 20.0, "me", 10.0)


@pytest.mark.parametrize("interval", [30.0, 31.0])
def test_a_check_interval_not_shorter_than_a_lease_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="session_check_interval_seconds"):
        RelaySettings(lease_ttl_seconds=30, session_check_interval_seconds=interval)


# The relay over the in-memory storage -------------------------------------------------------

SLOW_LEASES = relay_settings.FAST.model_copy(
    update={
        "batch_size": 10,
        "poll_interval_seconds": 0.01,
        "shutdown_timeout_seconds": 5,
        # Longer than any test waits: a partition moves only if the session rule moves it.
        "lease_ttl_seconds": 60.0,
        "session_check_interval_seconds": 0.02,
    }
)


class Killed(BaseException):
    """What a dead process's calls end in (not a database error: nothing is retried)."""


class Mortal:
    """One process's client of the shared storage: after :meth:`kill` every call fails, and
    the session it opened ends (the kernel closed its sockets)."""

    def __init__(self, storage: InMemoryRelayStorage) -> None:
        self._storage = storage
        self.dead = False

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        method = getattr(self._storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Killed
            return await method(*args, **kwargs)

        return call


def relay_over(storage: InMemoryRelayStorage | Mortal, sink: MemorySink) -> Relay:
    return Relay(None, None, [sink], SLOW_LEASES, storage=cast(RelayStorage, storage))


async def kill(relay: Relay, client: Mortal, task: asyncio.Task[None]) -> None:
    """SIGKILL: nothing more reaches the storage, the tasks end, the session ends."""
    client.dead = True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await relay.liveness.close()


def owners(storage: InMemoryRelayStorage, sink: str) -> set[str]:
    return set(storage.owners(sink).values())


async def test_a_killed_relay_s_partitions_are_delivered_by_another_before_its_lease_ends() -> None:
    storage = InMemoryRelayStorage()
    client = Mortal(storage)
    doomed = relay_over(client, MemorySink("shared"))
    survivor_sink = MemorySink("shared")
    survivor = relay_over(storage, survivor_sink)
    doomed_task = asyncio.create_task(doomed.run())
    survivor_task = asyncio.create_task(survivor.run())
    try:
        await eventually(
            lambda: owners(storage, "shared") == {doomed.instance_id, survivor.instance_id},
            within=10,
        )
        theirs = {p for p, o in storage.owners("shared").items() if o == doomed.instance_id}
        await kill(doomed, client, doomed_task)
        storage.publish(32)

        await eventually(lambda: owners(storage, "shared") == {survivor.instance_id}, within=10)
        await eventually(lambda: storage.delivered["shared"] == 32, within=10)
        assert theirs <= set(storage.owners("shared"))
        assert doomed.instance_id not in storage.instances
    finally:
        survivor.stop()
        await asyncio.wait_for(survivor_task, 10)


async def test_a_hung_relay_keeps_its_partitions_while_its_session_lives() -> None:
    storage = InMemoryRelayStorage()
    client = Mortal(storage)
    hung = relay_over(client, MemorySink("shared"))
    other = relay_over(storage, MemorySink("shared"))
    hung_task = asyncio.create_task(hung.run())
    other_task = asyncio.create_task(other.run())
    try:
        await eventually(
            lambda: owners(storage, "shared") == {hung.instance_id, other.instance_id}, within=10
        )
        # Silent from now on, but its process (and so its session) lives.
        client.dead = True
        checks = other.liveness.checks
        await eventually(lambda: other.liveness.checks >= checks + 10, within=10)
        assert owners(storage, "shared") == {hung.instance_id, other.instance_id}
    finally:
        other.stop()
        await asyncio.wait_for(other_task, 10)
        hung_task.cancel()
        await asyncio.gather(hung_task, return_exceptions=True)


async def test_a_relay_whose_session_broke_opens_another_and_keeps_delivering() -> None:
    storage = InMemoryRelayStorage()
    sink = MemorySink("alone")
    relay = relay_over(storage, sink)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 10)
        first = storage.sessions[relay.instance_id]
        storage.backends.pop(first.backend_pid)  # the connection broke; the process lives

        await eventually(
            lambda: storage.sessions.get(relay.instance_id, first).backend_pid != first.backend_pid,
            within=10,
        )
        storage.publish(12)
        await eventually(lambda: storage.delivered["alone"] == 12, within=10)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def test_a_server_restart_moves_no_lease_and_every_relay_records_a_new_session() -> None:
    storage = InMemoryRelayStorage()
    first, second = (
        relay_over(storage, MemorySink("shared")),
        relay_over(storage, MemorySink("shared")),
    )
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await eventually(
            lambda: owners(storage, "shared") == {first.instance_id, second.instance_id},
            within=10,
        )
        before = dict(storage.owners("shared"))
        storage.restart_server()
        # Let the first relay alone check again first: the second's session is of the old run.
        await eventually(
            lambda: all(
                storage.sessions[r.instance_id].server_started_at == storage.server_started_at
                for r in (first, second)
            ),
            within=10,
        )
        assert storage.owners("shared") == before
        storage.publish(20)
        await eventually(lambda: storage.delivered["shared"] == 20, within=10)
    finally:
        for relay in (first, second):
            relay.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_a_heartbeat_that_finds_a_relay_gone_rebalances_at_once() -> None:
    storage = InMemoryRelayStorage()
    ghost = await storage.open_session("ghost", "host", 1)
    await storage.heartbeat("ghost", "host", 1, 60)
    # Its own session checks too rarely to matter here: only the heartbeat can see the change.
    relay = Relay(
        None,
        None,
        [MemorySink("shared")],
        SLOW_LEASES.model_copy(update={"session_check_interval_seconds": 30.0}),
        storage=storage,
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: len(storage.owners("shared")) == 8, within=10)
        # The ghost dies and another relay's check releases it, before this one looks.
        await ghost.close()
        watcher = await storage.open_session("watcher", "host", 2)
        assert (await watcher.check(60)).reaped == {"ghost"}
        await watcher.close()
        await storage.leave("watcher", {})

        await relay.heartbeat()

        await eventually(lambda: len(storage.owners("shared")) == 16, within=5)
        assert owners(storage, "shared") == {relay.instance_id}
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
