"""A liveness check that fails keeps the relay's session unless its connection broke: ending
the session would tell the other relays that this one died, and they would take its leases
while it is alive."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.backoff import Backoff
from gateway.relay.liveness import LivenessSession
from gateway.relay.sessions import SessionCheck, ends_session


class FlakySession:
    """A session whose next check fails with ``error`` once (or first ``fail_after`` good
    checks, then ``error`` once)."""

    def __init__(self, error: Exception | None, fail_after: int = 0) -> None:
        self.error = error
        self.fail_after = fail_after
        self.closed = False

    async def check(self, ttl_seconds: float) -> SessionCheck:
        if self.fail_after:
            self.fail_after -= 1
        elif self.error is not None:
            error, self.error = self.error, None
            raise error
        return SessionCheck(frozenset(), frozenset({"me"}))

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("error", "ended"),
    [
        (asyncpg.QueryCanceledError("canceling statement due to user request"), False),
        (asyncpg.LockNotAvailableError("could not obtain lock"), False),
        (asyncpg.DeadlockDetectedError("deadlock detected"), False),
        (TimeoutError(), False),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (ConnectionResetError(), True),
        (asyncpg.AdminShutdownError("terminating connection"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
    ],
    ids=lambda value: type(value).__name__,
)
async def test_only_a_broken_connection_ends_the_session(error: Exception, ended: bool) -> None:
    assert ends_session(error) is ended
    opened: list[FlakySession] = []

    async def open_session() -> FlakySession:
        opened.append(FlakySession(error if not opened else None))
        return opened[-1]

    async def on_change(check: SessionCheck) -> None:
        pass

    liveness = LivenessSession(
        open_session,
        interval_seconds=0.5,
        ttl_seconds=10,
        backoff=Backoff(0.1, 1),
        known_live=lambda: {"me"},
        on_change=on_change,
    )
    with pytest.raises(type(error)):
        await liveness.check()
    await liveness.check()
    assert opened[0].closed is ended
    assert len(opened) == (2 if ended else 1)


def liveness_opening(sessions: list[FlakySession]) -> LivenessSession:
    """Liveness over ``sessions``, opened in turn (an error once they are used up)."""
    opened = iter(sessions)

    async def open_session() -> FlakySession:
        session = next(opened, None)
        if session is None:
            raise ConnectionRefusedError("no server")
        return session

    async def on_change(check: SessionCheck) -> None:
        pass

    return LivenessSession(
        open_session,
        interval_seconds=0.5,
        ttl_seconds=10,
        backoff=Backoff(0.1, 1),
        known_live=lambda: {"me"},
        on_change=on_change,
    )


async def test_an_open_session_whose_connection_ended_is_replaced_within_the_check() -> None:
    ended = asyncpg.InterfaceError("connection has been released back to the pool")
    first, second = FlakySession(ended, fail_after=1), FlakySession(None)
    liveness = liveness_opening([first, second])
    await liveness.check()

    await liveness.check()

    assert first.closed and not second.closed
    assert liveness.is_open and liveness.checks == 2


async def test_a_session_that_cannot_be_replaced_fails_the_check_with_the_reason() -> None:
    ended = asyncpg.InternalClientError("another operation (2) is in progress")
    liveness = liveness_opening([FlakySession(ended, fail_after=1)])
    await liveness.check()

    with pytest.raises(ConnectionRefusedError):
        await liveness.check()

    assert not liveness.is_open


async def test_a_statement_that_failed_on_an_open_session_is_not_tried_again_at_once() -> None:
    first = FlakySession(asyncpg.QueryCanceledError("canceling statement"), fail_after=1)
    liveness = liveness_opening([first, FlakySession(None)])
    await liveness.check()

    with pytest.raises(asyncpg.QueryCanceledError):
        await liveness.check()

    assert liveness.is_open and not first.closed and liveness.checks == 1
