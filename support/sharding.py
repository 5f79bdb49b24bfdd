"""Sharded mode's test world: a catalog database on the main PostgreSQL server and one shard
database on each of two more servers (``postgres-shard-a``, ``postgres-shard-b``); the first
shard's server has a hot standby (``postgres-shard-a-replica``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from gateway import Gateway, MigrationRunner, Settings
from gateway.configuration.settings import PostgresSettings
from gateway.postgres.migrations import discover_migrations
from gateway.postgres.topology import databases
from support.databases import database_url
from support.servers import server_url

SHARD_SERVERS = {"alpha": "postgres-shard-a", "beta": "postgres-shard-b"}
"""Each test shard's name and the server it lives on."""
REPLICA_SERVERS = {"alpha": "postgres-shard-a-replica"}
"""The test shards whose server has a hot standby, and that standby's service."""


@dataclass(frozen=True)
class ShardedDatabases:
    """The URLs of one sharded deployment's databases."""

    catalog: str
    shards: dict[str, str]

    def settings(
        self, shard_replicas: Mapping[str, Sequence[str]] | None = None, **postgres: object
    ) -> Settings:
        """Settings over these databases, each shard with its ``shard_replicas`` if any
        (``postgres`` overrides that section's keys)."""
        keys: dict[str, object] = {"pool_max_size": 30, **postgres}
        replicas = shard_replicas or {}
        section = PostgresSettings(
            url=self.catalog,
            shards={
                name: {"url": url, "replicas": list(replicas.get(name, []))}
                for name, url in self.shards.items()
            },
            **keys,
        )
        return Settings(postgres=section)

    def replica_urls(self) -> dict[str, list[str]]:
        """Each shard's database on its server's hot standby (``REPLICA_SERVERS``), started if
        it does not run."""
        return {
            shard: [database_url(server_url(service), urlsplit(self.shards[shard]).path[1:])]
            for shard, service in REPLICA_SERVERS.items()
        }


@asynccontextmanager
async def sharded_databases(
    *, migrated: bool = True, shard_servers: Mapping[str, str] = SHARD_SERVERS
) -> AsyncIterator[ShardedDatabases]:
    """Fresh catalog and shard databases (migrated for their roles unless told not to),
    dropped on the way out. ``shard_servers``: each shard's name and the server it lives on
    (two shards may share a server, each with a database of its own)."""
    name = f"fanout_sharded_{uuid.uuid4().hex[:10]}"
    servers = {"catalog": server_url("postgres")} | {
        shard: server_url(service) for shard, service in shard_servers.items()
    }
    names = _database_names(name, servers)
    databases_by_server: dict[str, list[str]] = {}
    for role, server in servers.items():
        databases_by_server.setdefault(server, []).append(names[role])
    for server, own in databases_by_server.items():
        await _on_each([server], *(f'CREATE DATABASE "{database}"' for database in own))
    urls = {role: database_url(server, names[role]) for role, server in servers.items()}
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
        for server, own in databases_by_server.items():
            drops = (f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)' for database in own)
            await _on_each([server], *drops)


def _database_names(name: str, servers: Mapping[str, str]) -> dict[str, str]:
    """Each role's database name: ``name``, or, on a server that an earlier role uses too,
    ``name`` and the role's."""
    taken: set[str] = set()
    names: dict[str, str] = {}
    for role, server in servers.items():
        names[role] = name if server not in taken else f"{name}_{role}"
        taken.add(server)
    return names


async def _on_each(servers: Iterable[str], *statements: str) -> None:
    for server in servers:
        admin = await asyncpg.connect(server)
        try:
            for statement in statements:
                await admin.execute(statement)
        finally:
            await admin.close()


async def connect_sharded(
    databases: ShardedDatabases,
    shard_replicas: Mapping[str, Sequence[str]] | None = None,
    **postgres: object,
) -> Gateway:
    """A sharded gateway over ``databases``, each shard with its ``shard_replicas`` if any
    (``postgres`` overrides that section's keys)."""
    connected = await Gateway.connect(databases.settings(shard_replicas, **postgres))
    assert connected.topology.sharded
    return connected
