"""Health of the gateway's dependencies: PostgreSQL, every configured sink, the backlog.

Used by the HTTP API's readiness probe and by ``fanout doctor``; each check is bounded by a
timeout, so a store that does not answer makes a report slow by at most that much.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from adapters.base import Health, Sink
from gateway.configuration.secrets import redact_url
from gateway.postgres import outbox
from gateway.postgres.database import (
    CONNECTING_ERRORS,
    UNANSWERED_ERRORS,
    Connection,
)
from gateway.relay import tables


@dataclass(frozen=True)
class PostgresHealth:
    """Whether PostgreSQL answered a query, how fast, and what it said."""

    ok: bool
    detail: str
    latency_ms: float | None


@dataclass(frozen=True)
class SinkHealth:
    """One sink: whether its store answers, and what the relay still owes it."""

    name: str
    ok: bool
    detail: str
    backlog: int | None
    oldest_undelivered_seconds: float | None
    dead_lettered: int | None
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


async def postgres_health(pool: asyncpg.Pool, timeout_seconds: float) -> PostgresHealth:
    """Run ``SELECT 1`` on a pooled connection within ``timeout_seconds``."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_seconds):
            async with pool.acquire() as connection:
                await connection.fetchval("SELECT 1")
    except TimeoutError:
        return PostgresHealth(False, f"no answer within {timeout_seconds:g} s", None)
    except CONNECTING_ERRORS as error:
        return PostgresHealth(False, redact_url(f"{type(error).__name__}: {error}"), None)
    return PostgresHealth(True, "SELECT 1 ok", (time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class ShardHealth:
    """One shard of a sharded deployment: whether it answers, and what its outbox still owes
    each sink (``None`` when it could not be read)."""

    name: str
    ok: bool
    detail: str
    latency_ms: float | None
    backlog: dict[str, int] | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


async def shard_health(name: str, pool: asyncpg.Pool, timeout_seconds: float) -> ShardHealth:
    """Whether the shard answers ``SELECT 1``, and its outbox's backlog per sink, each within
    ``timeout_seconds``."""
    database = await postgres_health(pool, timeout_seconds)
    backlog: dict[str, int] | None = None
    if database.ok:
        try:
            async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
                backlog = {b.sink: b.events for b in await outbox.backlog(connection)}
        except UNANSWERED_ERRORS:
            pass
    return ShardHealth(name, database.ok, database.detail, database.latency_ms, backlog)


async def shards_health(
    shards: Mapping[str, asyncpg.Pool], timeout_seconds: float
) -> list[ShardHealth]:
    """Every shard's health, asked concurrently."""
    return list(
        await asyncio.gather(
            *(shard_health(name, pool, timeout_seconds) for name, pool in shards.items())
        )
    )


def readiness(catalog_ok: bool, shards_ok: Sequence[bool]) -> str:
    """The API's readiness: ``unavailable`` when its database (the catalog, in sharded mode)
    does not answer; ``degraded`` when it does but a shard does not, since the customers of
    every other shard are still served (and every instance of the API sees the same shard
    down, so turning them all unready would refuse those customers too); else ``ready``."""
    if not catalog_ok:
        return "unavailable"
    return "ready" if all(shards_ok) else "degraded"


async def store_health(sink: Sink, timeout_seconds: float) -> Health:
    """Ask the sink's store whether it answers, within ``timeout_seconds``."""
    try:
        async with asyncio.timeout(timeout_seconds):
            return await sink.health()
    except TimeoutError:
        return Health(False, f"no answer within {timeout_seconds:g} s")


async def sinks_health(
    pool: asyncpg.Pool | None, sinks: Mapping[str, Sink], timeout_seconds: float
) -> list[SinkHealth]:
    """Every sink's store health (asked concurrently) with its backlog from the outbox.

    Without ``pool`` (PostgreSQL is down) the backlog fields are ``None``.
    """
    answers = await asyncio.gather(
        *(store_health(sink, timeout_seconds) for sink in sinks.values())
    )
    backlogs: dict[str, outbox.Backlog] = {}
    totals: dict[str, tables.SinkTotals] = {}
    if pool is not None:
        try:
            async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
                backlogs = {b.sink: b for b in await outbox.backlog(connection)}
                totals = {t.sink: t for t in await tables.sink_totals(connection)}
        except UNANSWERED_ERRORS:
            pass
    reports = []
    for name, health in zip(sinks, answers, strict=True):
        backlog = backlogs.get(name)
        total = totals.get(name)
        reports.append(
            SinkHealth(
                name=name,
                ok=health.ok,
                detail=redact_url(health.detail),
                backlog=backlog.events if backlog else None,
                oldest_undelivered_seconds=backlog.oldest_age_seconds if backlog else None,
                dead_lettered=total.dead_lettered if total else None,
                last_error=total.last_error if total else None,
            )
        )
    return reports


async def sink_status_rows(connection: Connection) -> list[dict[str, object]]:
    """Per registered sink: backlog, oldest undelivered age, the relay's counters, and
    ``unserved_seconds``: how long no relay has served it (``None`` while one does)."""
    backlogs = {b.sink: b for b in await outbox.backlog(connection)}
    rows: list[dict[str, object]] = []
    for totals in await tables.sink_totals(connection):
        backlog = backlogs.get(totals.sink)
        rows.append(
            {
                "sink": totals.sink,
                "backlog": backlog.events if backlog else 0,
                "oldest_undelivered_seconds": backlog.oldest_age_seconds if backlog else None,
                "delivered": totals.delivered,
                "retrying": totals.retrying,
                "dead_lettered": totals.dead_lettered,
                "relays": totals.relays,
                "last_error": totals.last_error,
                "unserved_seconds": None if totals.served else totals.unserved_seconds,
            }
        )
    return rows
