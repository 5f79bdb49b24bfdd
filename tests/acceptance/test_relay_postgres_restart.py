"""The relay across a PostgreSQL restart, on a server of the test's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.memory import MemorySink
from gateway import Gateway, MigrationRunner
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.database import create_pool
from gateway.relay import Relay
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.storage import PostgresRelayStorage
from support.databases import database_url
from support.eventually import eventually
from support.servers import ROOT, SERVICES_SCRIPT
from support.shop import Shop
from tests.acceptance.conftest import settings_for
from tests.acceptance.relay_support import World, memory_state
from tests.relay_settings import FAST


class OwnPostgres:
    """A PostgreSQL cluster started by ``scripts/services.sh`` in a directory of its own."""

    def __init__(self) -> None:
        # Under the checkout: as root the server runs as 'postgres', which must reach the data.
        self.directory = ROOT / ".services" / f"restart-test-{uuid.uuid4().hex[:8]}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {
            **os.environ,
            "FANOUT_SERVICES_DIR": str(self.directory),
            "FANOUT_SERVICES_POSTGRES_PORT": str(self.port),
        }

    def services(self, command: str) -> str:
        result = subprocess.run(
            ["bash", str(SERVICES_SCRIPT), command, "postgres"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def up(self) -> str:
        for line in self.services("up").splitlines():
            if line.startswith("FANOUT_TEST_POSTGRES_URL="):
                return line.partition("=")[2]
        raise AssertionError("services.sh printed no URL")


@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[OwnPostgres, str]]:
    server = OwnPostgres()
    url = server.up()
    try:
        admin = await asyncpg.connect(url)
        await admin.execute('CREATE DATABASE "restart"')
        await admin.close()
        yield server, database_url(url, "restart")
    finally:
        server.services("down")
        shutil.rmtree(server.directory, ignore_errors=True)


async def test_the_relay_rides_out_a_postgres_restart(
    own_postgres: tuple[OwnPostgres, str],
) -> None:
    server, url = own_postgres
    connection = await asyncpg.connect(url)
    await MigrationRunner(connection).apply()
    await connection.close()
    settings = settings_for(url, relay=FAST.model_copy(update={"batch_size": 20}))
    async with await Gateway.connect(settings) as gateway:
        world = World(settings, gateway, Shop(gateway))
        await world.place_orders(300, transitions=1)
        expected = await world.orders_in_postgres()

    sink = MemorySink(delay_seconds=0.01)
    async with await Relay.connect(settings, [sink]) as relay:
        running = asyncio.create_task(relay.run())
        await eventually(lambda: len(sink.deliveries) >= 100)
        assert len(sink.deliveries) < 600  # restarted in the middle of the backlog
        await asyncio.to_thread(server.services, "down")
        await asyncio.to_thread(server.up)
        await eventually(lambda: memory_state(sink) == expected, within=120)
        relay.stop()
        await running


async def test_a_crash_restart_of_postgres_takes_no_live_relay_s_leases(
    own_postgres: tuple[OwnPostgres, str],
) -> None:
    # A backend killed (say by the OOM killer) makes the server end every session and start
    # again, keeping pg_postmaster_start_time(): the first relay back must not take the
    # sessions the restart ended for dead relays.
    _, url = own_postgres
    connection = await asyncpg.connect(url)
    await MigrationRunner(connection).apply()
    pool = await create_pool(PostgresSettings(url=url, pool_max_size=4))
    try:
        storage = PostgresRelayStorage(pool)
        await storage.register_sink("redis", from_beginning=True)
        first = await storage.open_session("relay-a", "host", 1)
        await storage.open_session("relay-b", "host", 2)
        await storage.heartbeat("relay-b", "host", 2, 60)
        assert await storage.claim_leases("redis", "relay-b", [0, 1, 2], 60) == {0, 1, 2}

        os.kill(await connection.fetchval("SELECT pg_backend_pid()"), signal.SIGKILL)

        async def session_ended() -> bool:
            try:
                await first.check(60)
            except DATABASE_ERRORS:
                return True
            return False

        await eventually(session_ended, within=60)
        await pool.expire_connections()

        sessions = []

        async def reopened() -> bool:
            try:
                sessions.append(await storage.open_session("relay-a", "host", 1))
            except DATABASE_ERRORS:
                return False
            return True

        await eventually(reopened, within=60)
        found = await sessions[0].check(60)
        assert "relay-b" not in found.reaped
        owners = await pool.fetch(
            "SELECT owner FROM relay_positions WHERE sink = 'redis' AND partition < 3"
        )
        assert [row["owner"] for row in owners] == ["relay-b"] * 3
    finally:
        pool.terminate()
        connection.terminate()
