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
    """A session whose next check fails with ``error`` once."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.closed = False

    async def check(self, ttl_seconds: float) -> SessionCheck:
        if self.error is not None:
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
