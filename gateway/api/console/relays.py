"""The relays of each database: instances with their heartbeat, and who leases what."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.postgres.queries import query


@dataclass(frozen=True)
class RelayInstance:
    """A relay that sent a heartbeat, and the sinks it has stalled on."""

    id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_age_seconds: float
    stalled_sinks: list[str]


@dataclass(frozen=True)
class Lease:
    """The partitions of ``sink`` that relay ``owner`` holds a live lease on."""

    sink: str
    owner: str
    partitions: int
    expires_in_seconds: float


@dataclass(frozen=True)
class SinkCoverage:
    """How many of a sink's partitions no live lease covers."""

    sink: str
    unleased: int
    partitions: int


@dataclass(frozen=True)
class DatabaseRelays:
    """One database's relays, leases and the partitions nobody holds."""

    database: str
    instances: list[RelayInstance]
    leases: list[Lease]
    coverage: list[SinkCoverage]


async def relays_view(
    pools: Mapping[str, asyncpg.Pool], timeout_seconds: float
) -> list[DatabaseRelays]:
    """Every database's relays and leases, each read within ``timeout_seconds``."""
    return [await database_relays(name, pool, timeout_seconds) for name, pool in pools.items()]


async def database_relays(name: str, pool: asyncpg.Pool, timeout_seconds: float) -> DatabaseRelays:
    """The relays and leases of one database."""
    async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
        instances = await connection.fetch(query("console_relay_instances"))
        leases = await connection.fetch(query("console_leases"))
        coverage = await connection.fetch(query("console_unleased_partitions"))
    return DatabaseRelays(
        name,
        [
            RelayInstance(
                row["id"],
                row["hostname"],
                row["pid"],
                row["started_at"],
                row["heartbeat_age_seconds"],
                list(row["stalled_sinks"]),
            )
            for row in instances
        ],
        [
            Lease(row["sink"], row["owner"], row["partitions"], row["expires_in_seconds"])
            for row in leases
        ],
        [SinkCoverage(row["sink"], row["unleased"], row["partitions"]) for row in coverage],
    )
