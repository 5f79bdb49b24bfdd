"""Acceptance fixtures: a real PostgreSQL, a fresh database per test session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from adapters.base import Sink
from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings
from support.databases import database_url
from support.servers import server_url
from support.sharding import ShardedDatabases, sharded_databases
from support.shop import Shop
from support.stores import STORES, drop_namespace, make_sink
from tests.acceptance.relay_support import World


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a real PostgreSQL server (its maintenance database)."""
    return server_url("postgres")


DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture(scope="session")
async def create_database(postgres_server: str) -> AsyncIterator[DatabaseFactory]:
    """A factory of fresh, empty databases, all dropped at the end of the session."""
    created: list[str] = []

    async def create() -> str:
        name = f"fanout_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(postgres_server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return database_url(postgres_server, name)

    yield create
    admin = await asyncpg.connect(postgres_server)
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_migrated_database(create_database: DatabaseFactory) -> str:
    """A fresh database with every migration applied."""
    url = await create_database()
    connection = await asyncpg.connect(url)
    try:
        await MigrationRunner(connection).apply()
    finally:
        await connection.close()
    return url


@pytest.fixture(scope="session")
async def migrated_url(create_database: DatabaseFactory) -> str:
    """A database with every migration applied, shared by the session."""
    return await create_migrated_database(create_database)


def settings_for(url: str, **sections: object) -> Settings:
    """Settings pointing at ``url``, with optional section overrides."""
    return Settings(postgres=PostgresSettings(url=url, pool_max_size=60), **sections)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(migrated_url: str) -> Settings:
    """Default settings over the session's migrated database."""
    return settings_for(migrated_url)


@pytest.fixture(scope="session")
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway over the session's migrated database."""
    async with await Gateway.connect(settings) as connected:
        yield connected


@pytest.fixture(scope="module")
async def sharded() -> AsyncIterator[ShardedDatabases]:
    """A catalog and two shards on the real shard servers, for one test module (whose own
    ``gateway`` fixture connects to them)."""
    async with sharded_databases() as found:
        yield found


@pytest.fixture
def shop(gateway: Gateway) -> Shop:
    """Makes customers, addresses and products for a test."""
    return Shop(gateway)


@pytest.fixture
async def fresh_url(create_database: DatabaseFactory) -> str:
    """An empty database for one test."""
    return await create_database()


@pytest.fixture
async def world(fresh_url: str) -> AsyncIterator[World]:
    """A migrated database of its own, with a gateway and a shop over it."""
    connection = await asyncpg.connect(fresh_url)
    try:
        await MigrationRunner(connection).apply()
    finally:
        await connection.close()
    settings = settings_for(fresh_url)
    async with await Gateway.connect(settings) as gateway:
        yield World(settings, gateway, Shop(gateway))


@pytest.fixture
async def stores() -> AsyncIterator[tuple[str, dict[str, Sink]]]:
    """The four store sinks in namespaces of this test's own."""
    tag = uuid.uuid4().hex[:10]
    sinks = {kind: make_sink(kind, tag) for kind in STORES}
    try:
        yield tag, sinks
    finally:
        for sink in sinks.values():
            try:
                await drop_namespace(sink)
            finally:
                await sink.close()
