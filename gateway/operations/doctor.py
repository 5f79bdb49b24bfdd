"""``fanout doctor``: PostgreSQL's health, the outbox backlog and every sink, in one report.

The PostgreSQL sections follow the usual monitoring queries: connections by state with their
age, locks per relation and mode, the slowest statements (from ``pg_stat_statements`` when it
is installed and loaded, and otherwise a sentence saying why not), and index usage with never
scanned indexes flagged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from adapters.base import Sink
from gateway.configuration.secrets import redact_values
from gateway.configuration.settings import PostgresSettings, Settings
from gateway.operations.health import postgres_health, sink_status_rows, sinks_health
from gateway.postgres.cluster import primary_view
from gateway.postgres.database import Connection, DatabaseUnavailable, create_pool
from gateway.postgres.queries import query
from gateway.postgres.replicas import ReadRouter
from gateway.postgres.topology import Database, Topology
from gateway.relay.sinks import enabled_sinks

Report = dict[str, Any]


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _rows(records: list[asyncpg.Record]) -> list[dict[str, object]]:
    return [{key: _plain(value) for key, value in record.items()} for record in records]


PAYMENTS_LISTED = 20


async def statements_section(connection: Connection, limit: int) -> Report:
    """The slowest statements, or why ``pg_stat_statements`` cannot tell."""
    version = await connection.fetchval(query("doctor_statements_extension"))
    if version is None:
        return {
            "available": False,
            "detail": "the pg_stat_statements extension is not installed in this database "
            "(CREATE EXTENSION pg_stat_statements; the server must also load it through "
            "shared_preload_libraries)",
            "statements": [],
        }
    try:
        rows = await connection.fetch(query("doctor_slowest_statements"), limit)
    except asyncpg.ObjectNotInPrerequisiteStateError:
        return {
            "available": False,
            "detail": "pg_stat_statements is installed but the server does not load it "
            "(add it to shared_preload_libraries and restart PostgreSQL)",
            "statements": [],
        }
    return {
        "available": True,
        "detail": f"pg_stat_statements {version}: the {limit} slowest by mean time",
        "statements": _rows(rows),
    }


async def index_section(connection: Connection) -> list[dict[str, object]]:
    """Index usage; an index never scanned that enforces nothing is flagged ``unused``."""
    indexes = _rows(await connection.fetch(query("doctor_index_usage")))
    for index in indexes:
        index["unused"] = index["scans"] == 0 and not index["is_unique"]
    return indexes


async def postgres_sections(connection: Connection, statements_limit: int) -> Report:
    """Every PostgreSQL section of the report."""
    server = await connection.fetchrow(query("doctor_server"))
    outbox = await connection.fetchrow(query("doctor_outbox_size"))
    assert server is not None and outbox is not None
    return {
        "postgres": {"ok": True, "detail": "connected", **dict(_rows([server])[0])},
        "connections": _rows(await connection.fetch(query("doctor_connections"))),
        "locks": _rows(await connection.fetch(query("doctor_locks"))),
        "statements": await statements_section(connection, statements_limit),
        "indexes": await index_section(connection),
        "outbox": {
            **dict(_rows([outbox])[0]),
            "sinks": await sink_status_rows(connection),
        },
        "payments": await payments_section(connection),
    }


async def payments_section(connection: Connection) -> Report:
    """Payments someone must act on: counts by outcome, and the latest of them."""
    return {
        "needing_attention": {
            row["outcome"]: row["payments"]
            for row in await connection.fetch(query("count_payments_needing_attention"))
        },
        "latest": _rows(
            await connection.fetch(query("payments_needing_attention"), PAYMENTS_LISTED)
        ),
    }


async def diagnose(
    postgres: PostgresSettings,
    sinks: Mapping[str, Sink],
    *,
    timeout_seconds: float,
    statements_limit: int = 10,
) -> Report:
    """The whole report; PostgreSQL being down is reported, not raised."""
    report: Report
    try:
        pool = await create_pool(postgres)
    except DatabaseUnavailable as error:
        report = {"postgres": {"ok": False, "detail": str(error)}}
        report["sinks"] = [s.as_dict() for s in await sinks_health(None, sinks, timeout_seconds)]
        return report
    try:
        async with pool.acquire() as connection:
            report = await postgres_sections(connection, statements_limit)
            report["replication"] = await replication_section(connection, pool, postgres)
        report["sinks"] = [s.as_dict() for s in await sinks_health(pool, sinks, timeout_seconds)]
    finally:
        await pool.close()
    if Topology.of(postgres).sharded:
        report["shards"] = await shards_section(postgres, timeout_seconds)
    return report


async def shards_section(postgres: PostgresSettings, timeout_seconds: float) -> list[Report]:
    """Each shard of a sharded deployment, checked at once: whether it answers, its outbox's
    state per sink (as the catalog's ``outbox.sinks``) and its replicas as checked now (as the
    catalog's ``replication.replicas``)."""
    shards = Topology.of(postgres).order_databases
    return list(await asyncio.gather(*(_shard_section(d, timeout_seconds) for d in shards)))


async def _shard_section(shard: Database, timeout_seconds: float) -> Report:
    try:
        pool = await create_pool(shard.postgres)
    except DatabaseUnavailable as error:
        return {"name": shard.name, "ok": False, "detail": str(error), "sinks": [], "replicas": []}
    try:
        health = await postgres_health(pool, timeout_seconds)
        section: Report = {
            "name": shard.name,
            "ok": health.ok,
            "detail": health.detail,
            "latency_ms": health.latency_ms,
            "sinks": [],
        }
        if health.ok:
            async with pool.acquire() as connection:
                section["sinks"] = await sink_status_rows(connection)
        section["replicas"] = await checked_replicas(pool, shard)
        return section
    finally:
        await pool.close()


async def checked_replicas(pool: asyncpg.Pool, shard: Database) -> list[Report]:
    """Each replica of ``shard`` (``pool`` is the shard's) as checked now, as
    ``ReplicaState.as_dict`` shows it."""
    router = ReadRouter(pool, shard.postgres, shard=shard.name)
    try:
        await router.check()
    finally:
        await router.close()
    return [state.as_dict(shard.postgres.replica_max_lag_seconds) for state in router.states]


async def replication_section(
    connection: Connection, pool: asyncpg.Pool, postgres: PostgresSettings
) -> Report:
    """Which node is the primary (its timeline and last promotion), each configured replica
    as checked now, and the primary's view of its standbys."""
    router = ReadRouter(pool, postgres)
    try:
        await router.check()
    finally:
        await router.close()
    primary = await primary_view(connection)
    return {
        "primary": {key: value for key, value in primary.items() if key != "standbys"},
        "replicas": [s.as_dict(postgres.replica_max_lag_seconds) for s in router.states],
        "standbys": _rows(await connection.fetch(query("primary_replication"))),
    }


def healthy(report: Report) -> bool:
    """Whether PostgreSQL, every shard, every configured replica (the shards' too) and every
    sink answered."""
    replicas = [
        *report.get("replication", {}).get("replicas", []),
        *(replica for shard in report.get("shards", []) for replica in shard.get("replicas", [])),
    ]
    return (
        bool(report["postgres"]["ok"])
        and all(shard["ok"] for shard in report.get("shards", []))
        and all(replica["state"] in {"streaming", "primary"} for replica in replicas)
        and all(sink["ok"] for sink in report["sinks"])
    )


async def diagnose_configured(settings: Settings, *, statements_limit: int = 10) -> Report:
    """The report for the configured PostgreSQL and every enabled sink."""
    sinks = enabled_sinks(settings)
    try:
        report = await diagnose(
            settings.postgres,
            sinks,
            timeout_seconds=settings.api.health_timeout_seconds,
            statements_limit=statements_limit,
        )
        # Replica addresses and client errors can hold a URL.
        redacted: Report = redact_values(report)
        return redacted
    finally:
        for sink in sinks.values():
            await sink.close()
