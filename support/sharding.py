"""Sharded mode's test world: a catalog database on the main PostgreSQL server and one shard
database on each of two more servers (``postgres-shard-a``, ``postgres-shard-b``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.migrations import discover_migrations
from gateway.postgres.topology import databases
from support.databases import database_url
from support.servers import server_url

SHARD_SERVERS = {"alpha": "postgres-shard-a", "beta": "postgres-shard-b"}
"""Each test shard's name and the server it lives on."""


@dataclass(frozen=True)
class ShardedDatabases:
    """The URLs of one sharded deployment's databases."""

    catalog: str
    shards: dict[str, str]

    def settings(self, **postgres: object) -> Settings:
        """Settings over these databases (``postgres`` overrides that section's keys)."""
        keys: dict[str, object] = {"pool_max_size": 30, **postgres}
        section = PostgresSettings(
            url=self.catalog,
            shards={name: {"url": url} for name, url in self.shards.items()},
            **keys,
        )
        return Settings(postgres=section)


@asynccontextmanager
async def sharded_databases(*, migrated: bool = True) -> AsyncIterator[ShardedDatabases]:
    """Fresh catalog and shard databases (migrated for their roles unless told not to),
    dropped on the way out."""
    name = f"fanout_sharded_{uuid.uuid4().hex[:10]}"
    servers = {"catalog": server_url("postgres")} | {
        shard: server_url(service) for shard, service in SHARD_SERVERS.items()
    }
    await _on_each(servers.values(), f'CREATE DATABASE "{name}"')
    urls = {role: database_url(server, name) for role, server in servers.items()}
    found = ShardedDatabases(urls.pop("catalog"), urls)
    for database in databases(found.settings().postgres) if migrated else []:
        connection = await asyncpg.connect(database.postgres.url.get_secret_value())
        try:
            await MigrationRunner(connection, discover_migrations(database.role)).apply()
        finally:
            await connection.close()
    try:
        yield found
    finally:
        await _on_each(servers.values(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _on_each(servers: Iterable[str], statement: str) -> None:
    for server in servers:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()


async def connect_sharded(databases: ShardedDatabases, **postgres: object) -> Gateway:
    """A sharded gateway over ``databases`` (``postgres`` overrides that section's keys)."""
    connected = await Gateway.connect(databases.settings(**postgres))
    assert connected.topology.sharded
    return connected
