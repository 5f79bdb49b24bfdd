"""A relay's liveness session whose connection the server ended (a restart, a failover, an
administrator) is opened and recorded again within the check that finds it ended, against a
real PostgreSQL.

The check finds such a connection in one of asyncpg's states for a connection it was not
told closed: its protocol still consuming the server's farewell (``cannot switch to state
12; another operation (2) is in progress``), or its pool slot already given back (``connection
has been released back to the pool``). Both are one coroutine's use of a connection the server
ended, not two coroutines sharing one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.backoff import Backoff
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool
from gateway.relay.liveness import LivenessSession
from gateway.relay.sessions import SessionCheck
from gateway.relay.storage import PostgresRelayStorage
from support.eventually import eventually
from tests.acceptance.postgres_proxy import ResettingProxy
from tests.acceptance.relay_support import World

RELAY = "relay-under-test"


class CloseHoldingProxy(ResettingProxy):
    """Forwards connections; when the server closes one, the client is sent everything the
    server said (its farewell) but the close only once ``closes`` is set: the moment between
    a server's last message and its close, held open."""

    def __init__(self, target_url: str) -> None:
        super().__init__(target_url)
        self.forwarding = True
        self.closes = asyncio.Event()
        self.ended_by_server = 0
        """How many connections the server closed (their close held until ``closes``)."""

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            self.ended_by_server += 1
            await self.closes.wait()
        finally:
            writer.transport.abort()


def liveness_over(pool: asyncpg.Pool) -> LivenessSession:
    storage = PostgresRelayStorage(pool)

    async def on_change(check: SessionCheck) -> None:
        pass

    return LivenessSession(
        lambda: storage.open_session(RELAY, "host", 1),
        interval_seconds=0.5,
        ttl_seconds=10,
        backoff=Backoff(0.01, 0.1),
        known_live=lambda: {RELAY},
        on_change=on_change,
    )


async def recorded_backend(world: World) -> int:
    pid = await world.gateway.pool.fetchval(
        "SELECT backend_pid FROM relay_instances WHERE id = $1", RELAY
    )
    assert isinstance(pid, int)
    return pid


async def end_backend(world: World, pid: int) -> None:
    """End backend ``pid`` as a shutting-down server does (FATAL 57P01, then the close)."""
    pool = world.gateway.pool
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def gone() -> bool:
        return not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)

    await eventually(gone, within=10)


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[CloseHoldingProxy]:
    started = CloseHoldingProxy(world.settings.postgres.url.get_secret_value())
    await started.start()
    try:
        yield started
    finally:
        started.closes.set()
        await started.close()


async def test_a_session_the_server_ended_is_recorded_again_by_the_check_that_finds_it(
    world: World,
) -> None:
    liveness = liveness_over(world.gateway.pool)
    try:
        await liveness.check()
        ended = await recorded_backend(world)
        await end_backend(world, ended)

        await liveness.check()

        assert liveness.is_open
        assert await recorded_backend(world) != ended
    finally:
        await liveness.close()


@pytest.mark.parametrize("close_seen", [False, True], ids=["farewell-only", "farewell-and-close"])
async def test_a_session_whose_connection_the_server_ended_is_replaced(
    world: World, proxy: CloseHoldingProxy, close_seen: bool
) -> None:
    """Caught between the server's farewell and its close, or after both."""
    terminated: list[object] = []

    async def watch(connection: asyncpg.Connection) -> None:
        connection.add_termination_listener(terminated.append)

    pool = await create_pool(
        PostgresSettings(url=proxy.url, pool_min_size=1, pool_max_size=4),
        on_connect=watch,
    )
    liveness = liveness_over(pool)
    try:
        await liveness.check()
        ended = await recorded_backend(world)
        await end_backend(world, ended)
        await eventually(lambda: proxy.ended_by_server == 1, within=10)
        if close_seen:
            proxy.closes.set()
            await eventually(lambda: len(terminated) == 1, within=10)

        await liveness.check()

        assert liveness.is_open
        assert await recorded_backend(world) != ended
    finally:
        await liveness.close()
        proxy.closes.set()
        await pool.close()
