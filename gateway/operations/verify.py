"""Drift between PostgreSQL's orders and each sink's projection of them.

Streams the orders with a server-side cursor and asks the sink about them a batch at a time,
then streams the sink's own ids to find orders PostgreSQL does not have, so memory stays
bounded by the batch size whatever the number of orders.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import asyncpg

from adapters.readback import OrderSpan, ProjectedOrder, PublishedLog, ReadBack
from gateway.configuration.settings import Settings
from gateway.errors import GatewayError
from gateway.operations.store_reads import StoreUnreadable, read, read_batches
from gateway.operations.verify_log import LogDrift, verify_log
from gateway.postgres.database import create_pool
from gateway.postgres.migrations import DatabaseRole
from gateway.postgres.queries import query
from gateway.postgres.replicas import streaming_replica
from gateway.postgres.topology import SINGLE, Database, Topology, holds_orders
from gateway.relay.sinks import build_sink


class DriftCounts(TypedDict):
    """How one sink's orders compare with PostgreSQL's, as JSON."""

    sink: str
    matched: int
    missing: int
    stale: int
    mismatched: int
    extra: int
    unreadable: str | None
    clean: bool


@dataclass
class Drift:
    """How one sink's projection compares with PostgreSQL."""

    sink: str
    matched: int = 0
    missing: int = 0
    stale: int = 0
    mismatched: int = 0
    extra: int = 0
    unreadable: str | None = None
    """How reading the sink failed, which stopped the comparison (the counts are partial)."""

    @property
    def clean(self) -> bool:
        """The sink was read, and no order is missing, stale, different or extra."""
        return not (self.missing or self.stale or self.mismatched or self.extra or self.unreadable)

    def counts(self) -> DriftCounts:
        """The counts, and whether the sink is clean."""
        return {
            "sink": self.sink,
            "matched": self.matched,
            "missing": self.missing,
            "stale": self.stale,
            "mismatched": self.mismatched,
            "extra": self.extra,
            "unreadable": self.unreadable,
            "clean": self.clean,
        }


async def verify(
    pool: asyncpg.Pool | Sequence[asyncpg.Pool],
    sink_name: str,
    sink: ReadBack,
    batch_size: int = 1_000,
) -> Drift:
    """Compare every order's (version, status, total) with what ``sink`` holds; the orders
    of one database, or of several (sharded mode's shards, each order in one of them). A
    failure to read the sink ends the comparison with the drift's ``unreadable`` set."""
    pools = [pool] if isinstance(pool, asyncpg.Pool) else list(pool)
    drift = Drift(sink_name)
    try:
        for source in pools:
            await _compare_orders_of(source, sink, drift, batch_size)
        await _count_extras(pools, sink, drift, batch_size)
    except StoreUnreadable as failure:
        drift.unreadable = str(failure)
    return drift


async def _compare_orders_of(
    source: asyncpg.Pool, sink: ReadBack, drift: Drift, batch_size: int
) -> None:
    async with source.acquire() as connection, connection.transaction(readonly=True):
        batch: dict[str, tuple[ProjectedOrder, OrderSpan]] = {}
        cursor = connection.cursor(query("orders_for_verification"), prefetch=batch_size)
        async for row in cursor:
            batch[row["id"]] = (
                ProjectedOrder(row["version"], row["status"], row["total"]),
                OrderSpan(row["created_at"], row["updated_at"]),
            )
            if len(batch) >= batch_size:
                await _compare(sink, batch, drift)
                batch = {}
        if batch:
            await _compare(sink, batch, drift)


async def _count_extras(
    pools: Sequence[asyncpg.Pool], sink: ReadBack, drift: Drift, batch_size: int
) -> None:
    async for ids in read_batches(sink.projected_ids(batch_size)):
        valid = [i for i in ids if _is_uuid(i)]
        known = 0
        for source in pools if valid else []:
            known += await source.fetchval(query("count_known_orders"), valid)
        drift.extra += len(ids) - known


async def verify_orders(
    pool: asyncpg.Pool,
    sink_name: str,
    sink: ReadBack,
    order_ids: Sequence[str],
    batch_size: int = 1_000,
    behind: set[str] | None = None,
) -> Drift:
    """Compare only the given orders with ``sink`` (no search for extras).

    For checking what one run wrote in a database that holds other orders too. The ids of
    orders the sink does not hold as PostgreSQL does are added to ``behind`` when given. A
    failure to read the sink ends the comparison with the drift's ``unreadable`` set.
    """
    drift = Drift(sink_name)
    try:
        for start in range(0, len(order_ids), batch_size):
            rows = await pool.fetch(
                query("orders_for_verification_by_id"), list(order_ids[start : start + batch_size])
            )
            batch = {
                row["id"]: (
                    ProjectedOrder(row["version"], row["status"], row["total"]),
                    OrderSpan(row["created_at"], row["updated_at"]),
                )
                for row in rows
            }
            await _compare(sink, batch, drift, behind)
    except StoreUnreadable as failure:
        drift.unreadable = str(failure)
    return drift


async def _compare(
    sink: ReadBack,
    batch: dict[str, tuple[ProjectedOrder, OrderSpan]],
    drift: Drift,
    behind: set[str] | None = None,
) -> None:
    held = await read(
        sink.projected_orders({order_id: span for order_id, (_, span) in batch.items()})
    )
    for order_id, (expected, _) in batch.items():
        projection = held.get(order_id)
        if projection is None:
            drift.missing += 1
        elif projection.version < expected.version:
            drift.stale += 1
        elif projection != expected:
            drift.mismatched += 1
        else:
            drift.matched += 1
            continue
        if behind is not None:
            behind.add(order_id)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def verify_configured(
    settings: Settings,
    names: Sequence[str] | None,
    batch_size: int,
    *,
    from_replica: bool = False,
) -> list[Drift | LogDrift]:
    """Compare PostgreSQL's orders with each of the configured sinks ``names`` (default:
    every enabled one), read from the primary or (``from_replica``) from a streaming replica;
    for a log sink (Kafka), compare the outbox's events with its topics. Raises
    :class:`GatewayError` for a sink not configured or that cannot be read back, or when no
    replica streams."""
    chosen = list(names) if names else [n for n, s in settings.sinks.items() if s.enabled]
    unknown = [name for name in chosen if name not in settings.sinks]
    if unknown:
        raise GatewayError(f"no sink named {unknown[0]!r} in the configuration")
    topology = Topology.of(settings.postgres)
    if from_replica and topology.sharded:
        raise GatewayError(
            "--from-replica reads one database's replica; in sharded mode verify reads the shards"
        )
    sinks = {name: build_sink(name, settings.sinks[name]) for name in chosen}
    if from_replica:
        sources = [
            Database(SINGLE, DatabaseRole.SINGLE, await streaming_replica(settings.postgres))
        ]
    else:
        sources = list(topology.databases)
    results: list[Drift | LogDrift] = []
    pools: dict[str, asyncpg.Pool] = {}
    try:
        for source in sources:
            pools[source.name] = await create_pool(source.postgres)
        every = list(pools.values())
        with_orders = [pools[source.name] for source in sources if holds_orders(source)]
        for name, candidate in sinks.items():
            if isinstance(candidate, ReadBack):
                results.append(await verify(with_orders, name, candidate, batch_size))
            elif isinstance(candidate, PublishedLog):
                results.append(await verify_log(every, name, candidate))
            else:
                raise GatewayError(f"sink {name!r} cannot be read back for verification")
    finally:
        for pool in pools.values():
            await pool.close()
        for candidate in sinks.values():
            await candidate.close()
    return results
