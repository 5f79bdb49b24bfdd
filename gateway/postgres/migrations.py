"""Versioned schema migrations: ordered SQL files shipped in ``gateway/postgres/sql/migrations``.

Files are named ``NNNN_name.up.sql`` with an optional ``NNNN_name.down.sql``. Each migration
runs in its own transaction together with its row in the history table. In sharded mode the
catalog also gets the migrations of ``migrations/catalog`` and each shard those of
``migrations/shard``; every database keeps its own history. A PostgreSQL advisory
lock serialises runners, and an applied file whose checksum changed stops every operation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib.resources import files

import asyncpg

from gateway.errors import MigrationChecksumMismatch, MigrationError
from gateway.postgres.advisory_locks import AdvisoryLock
from gateway.postgres.queries import query

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema change: its forward SQL and, when it can be undone, its backward SQL."""

    version: int
    name: str
    up_sql: str
    down_sql: str | None = None

    @property
    def checksum(self) -> str:
        """SHA-256 of the forward SQL, recorded when the migration is applied."""
        return hashlib.sha256(self.up_sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """``NNNN_name``, as in the file name."""
        return f"{self.version:04d}_{self.name}"


class MigrationState(StrEnum):
    """Where a migration stands in a database."""

    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MigrationStatus:
    """A migration's state in one database (``UNKNOWN``: applied but absent from the files)."""

    version: int
    name: str
    state: MigrationState
    applied_at: datetime | None
    reversible: bool


class DatabaseRole(StrEnum):
    """What a database is to the gateway, which decides the migrations it gets."""

    SINGLE = "single"
    """The one database of unsharded mode."""
    CATALOG = "catalog"
    """Sharded mode's catalog: products, inventory, the customer directory, reservations."""
    SHARD = "shard"
    """One of sharded mode's shards: customers, orders and an outbox of its own."""


def discover_migrations(role: DatabaseRole = DatabaseRole.SINGLE) -> list[Migration]:
    """The migrations shipped with the package for a database of ``role``, in version order."""
    up: dict[int, tuple[str, str]] = {}
    down: dict[int, str] = {}
    folder = files("gateway.postgres.sql") / "migrations"
    entries = list(folder.iterdir())
    if role is not DatabaseRole.SINGLE:
        entries.extend((folder / role.value).iterdir())
    for entry in entries:
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version, name, direction = int(match.group(1)), match.group(2), match.group(3)
        sql = entry.read_text(encoding="utf-8")
        if direction == "up":
            if version in up:
                raise MigrationError(f"two migrations share version {version:04d}")
            up[version] = (name, sql)
        else:
            down[version] = sql
    orphans = sorted(set(down) - set(up))
    if orphans:
        raise MigrationError(f"down script without an up script for version {orphans[0]:04d}")
    return [
        Migration(version, name, sql, down.get(version))
        for version, (name, sql) in sorted(up.items())
    ]


@dataclass(frozen=True)
class _AppliedRow:
    version: int
    name: str
    checksum: str
    applied_at: datetime


class MigrationRunner:
    """Applies, reports and rolls back migrations over one dedicated connection."""

    def __init__(
        self, connection: asyncpg.Connection, migrations: Sequence[Migration] | None = None
    ) -> None:
        self._connection = connection
        self._migrations = list(migrations) if migrations is not None else discover_migrations()

    async def apply(self) -> list[Migration]:
        """Apply every pending migration in order; return those applied (empty: up to date)."""
        async with self._locked():
            applied = await self._verified_applied()
            pending = [m for m in self._migrations if m.version not in applied]
            for migration in pending:
                async with self._connection.transaction():
                    await self._connection.execute(migration.up_sql)
                    await self._connection.execute(
                        query("record_migration"),
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            return pending

    async def rollback(self, count: int) -> list[Migration]:
        """Undo the last ``count`` applied migrations, newest first; return those undone."""
        if count < 1:
            raise MigrationError("the number of migrations to roll back must be at least 1")
        async with self._locked():
            applied = await self._verified_applied()
            newest_first = sorted(applied, reverse=True)[:count]
            if len(newest_first) < count:
                raise MigrationError(
                    f"cannot roll back {count} migrations: only {len(applied)} are applied"
                )
            by_version = {m.version: m for m in self._migrations}
            targets = [by_version[version] for version in newest_first]
            irreversible = [m.label for m in targets if m.down_sql is None]
            if irreversible:
                raise MigrationError(
                    f"migration {irreversible[0]} has no down script; nothing was rolled back"
                )
            for migration in targets:
                assert migration.down_sql is not None
                async with self._connection.transaction():
                    await self._connection.execute(migration.down_sql)
                    await self._connection.execute(query("forget_migration"), migration.version)
            return targets

    async def status(self) -> list[MigrationStatus]:
        """Every known or applied migration and its state, in version order."""
        async with self._locked():
            applied = await self._applied_rows()
        statuses: list[MigrationStatus] = []
        for migration in self._migrations:
            row = applied.pop(migration.version, None)
            if row is None:
                state = MigrationState.PENDING
            elif row.checksum != migration.checksum:
                state = MigrationState.CHANGED
            else:
                state = MigrationState.APPLIED
            statuses.append(
                MigrationStatus(
                    migration.version,
                    migration.name,
                    state,
                    row.applied_at if row else None,
                    migration.down_sql is not None,
                )
            )
        statuses.extend(
            MigrationStatus(row.version, row.name, MigrationState.UNKNOWN, row.applied_at, False)
            for row in applied.values()
        )
        return sorted(statuses, key=lambda status: status.version)

    async def _verified_applied(self) -> dict[int, _AppliedRow]:
        applied = await self._applied_rows()
        by_version = {m.version: m for m in self._migrations}
        for version, row in sorted(applied.items()):
            migration = by_version.get(version)
            if migration is None:
                raise MigrationError(
                    f"the database has migration {version:04d}_{row.name} applied, which this "
                    "version of the gateway does not know; upgrade the gateway"
                )
            if migration.checksum != row.checksum:
                raise MigrationChecksumMismatch(
                    version, migration.name, row.checksum, migration.checksum
                )
        return applied

    async def _applied_rows(self) -> dict[int, _AppliedRow]:
        await self._connection.execute(query("create_migration_history"))
        rows = await self._connection.fetch(query("list_applied_migrations"))
        return {
            row["version"]: _AppliedRow(
                row["version"], row["name"], row["checksum"], row["applied_at"]
            )
            for row in rows
        }

    def _locked(self) -> _AdvisoryLock:
        return _AdvisoryLock(self._connection, AdvisoryLock.MIGRATIONS)


class _AdvisoryLock:
    """A session-level advisory lock held for the duration of an ``async with``."""

    def __init__(self, connection: asyncpg.Connection, key: int) -> None:
        self._connection = connection
        self._key = key

    async def __aenter__(self) -> None:
        await self._connection.execute(query("acquire_advisory_lock"), self._key)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._connection.execute(query("release_advisory_lock"), self._key)
