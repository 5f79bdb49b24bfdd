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


def databases(postgres: PostgresSettings) -> list[Database]:
    """Every database of the deployment, the catalog first in sharded mode; a shard's
    settings are the section's with its URL and its replicas (the catalog has none)."""
    if not postgres.shards:
        return [Database(SINGLE, DatabaseRole.SINGLE, postgres)]
    catalog = postgres.model_copy(update={"shards": {}, "replicas": []})
    found = [Database(CATALOG, DatabaseRole.CATALOG, catalog)]
    for name, shard in postgres.shards.items():
        settings = postgres.model_copy(
            update={"url": shard.url, "replicas": shard.replicas, "shards": {}}
        )
        found.append(Database(name, DatabaseRole.SHARD, settings))
    return found


def holds_orders(database: Database) -> bool:
    """Whether ``database`` holds orders: the one database, or a shard (not the catalog)."""
    return database.role != DatabaseRole.CATALOG


@dataclass(frozen=True)
class Topology:
    """The deployment's databases, read once from the settings: whether it is sharded, and
    which database plays which role. Callers ask it instead of testing the mode themselves."""

    databases: tuple[Database, ...]

    @classmethod
    def of(cls, postgres: PostgresSettings) -> Topology:
        """The topology the settings configure."""
        return cls(tuple(databases(postgres)))

    @property
    def sharded(self) -> bool:
        """Whether customers and orders are spread over shards (with a catalog)."""
        return self.databases[0].role is DatabaseRole.CATALOG

    @property
    def primary(self) -> Database:
        """The database every process must reach first: the one database, or the catalog."""
        return self.databases[0]

    @property
    def order_databases(self) -> tuple[Database, ...]:
        """The databases that hold orders: the one database, or every shard."""
        return tuple(database for database in self.databases if holds_orders(database))

    def name_of(self, database: Database) -> str:
        """How a line about ``database`` names it: by name when sharded, else not at all."""
        return f"{database.name}: " if self.sharded else ""
