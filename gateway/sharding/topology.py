"""The databases a configuration names: one in unsharded mode; the catalog and every shard in
sharded mode. Migrations, the relay, status and verification go over each of them."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.configuration.settings import PostgresSettings
from gateway.postgres.migrations import DatabaseRole

CATALOG = "catalog"
"""The catalog's name among the databases (a shard may not take it)."""
SINGLE = "main"
"""The one database's name in unsharded mode."""


@dataclass(frozen=True)
class Database:
    """A database of the deployment: its name, its role and how to reach it."""

    name: str
    role: DatabaseRole
    postgres: PostgresSettings


def is_sharded(postgres: PostgresSettings) -> bool:
    """Whether the settings configure sharded mode."""
    return bool(postgres.shards)


def databases(postgres: PostgresSettings) -> list[Database]:
    """Every database of the deployment, the catalog first in sharded mode."""
    if not is_sharded(postgres):
        return [Database(SINGLE, DatabaseRole.SINGLE, postgres)]
    catalog = postgres.model_copy(update={"shards": {}})
    found = [Database(CATALOG, DatabaseRole.CATALOG, catalog)]
    for name, shard in postgres.shards.items():
        settings = postgres.model_copy(update={"url": shard.url, "shards": {}})
        found.append(Database(name, DatabaseRole.SHARD, settings))
    return found


def holds_orders(database: Database) -> bool:
    """Whether ``database`` holds orders: the one database, or a shard (not the catalog)."""
    return database.role != DatabaseRole.CATALOG


def order_databases(postgres: PostgresSettings) -> list[Database]:
    """The databases that hold orders: the one database, or every shard."""
    return [database for database in databases(postgres) if holds_orders(database)]
