"""Drift between PostgreSQL's orders and each sink's projection of them.

Streams the orders with a server-side cursor and asks the sink about them a batch at a time,
then streams the sink's own ids to find orders PostgreSQL does not have, so memory stays
bounded by the batch size whatever the number of orders.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from adapters.readback import OrderSpan, ProjectedOrder, ReadBack
from gateway.postgres.queries import query


@dataclass
class Drift:
    """How one sink's projection compares with PostgreSQL."""

    sink: str
    matched: int = 0
    missing: int = 0
    stale: int = 0
    mismatched: int = 0
    extra: int = 0

    @property
    def clean(self) -> bool:
        """No order missing, stale, different or extra."""
        return not (self.missing or self.stale or self.mismatched or self.extra)

    def as_dict(self) -> dict[str, Any]:
        """The counts, and whether the sink is clean."""
        return {**asdict(self), "clean": self.clean}


async def verify(
    pool: asyncpg.Pool, sink_name: str, sink: ReadBack, batch_size: int = 1_000
) -> Drift:
    """Compare every order's (version, status, total) with what ``sink`` holds."""
    drift = Drift(sink_name)
    async with pool.acquire() as connection, connection.transaction(readonly=True):
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
    async for ids in sink.projected_ids(batch_size):
        valid = [i for i in ids if _is_uuid(i)]
        known = await pool.fetchval(query("count_known_orders"), valid) if valid else 0
        drift.extra += len(ids) - known
    return drift


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
    orders the sink does not hold as PostgreSQL does are added to ``behind`` when given.
    """
    drift = Drift(sink_name)
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
    return drift


async def _compare(
    sink: ReadBack,
    batch: dict[str, tuple[ProjectedOrder, OrderSpan]],
    drift: Drift,
    behind: set[str] | None = None,
) -> None:
    held = await sink.projected_orders({order_id: span for order_id, (_, span) in batch.items()})
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
