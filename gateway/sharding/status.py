"""``fanout shards status``: customers, orders and outbox backlog per shard, and the skew."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import asyncpg

from gateway.postgres import outbox
from gateway.postgres.queries import query
from gateway.sharding.scatter import scatter


@dataclass(frozen=True)
class ShardCounts:
    """One shard as it answered: its rows, the directory's entries for it, and the largest
    backlog of any sink over its outbox."""

    customers: int
    orders: int
    backlog: int


@dataclass(frozen=True)
class ShardsStatus:
    """Every shard's counts (``None``: it did not answer, with why in ``missing``) and the
    directory's customers per shard."""

    counts: dict[str, ShardCounts | None]
    directory: dict[str, int]
    missing: dict[str, str]

    def skew(self, field: str) -> float | None:
        """The largest shard's ``field`` over the shards' mean (1.0: even); ``None`` when no
        shard answered or all are empty."""
        return skew([getattr(c, field) for c in self.counts.values() if c is not None])

    def as_json(self) -> dict[str, object]:
        """The status as JSON."""
        return {
            "shards": {
                name: {
                    "reachable": counts is not None,
                    "directory_customers": self.directory.get(name, 0),
                    **(
                        {
                            "customers": counts.customers,
                            "orders": counts.orders,
                            "backlog": counts.backlog,
                        }
                        if counts is not None
                        else {"error": self.missing.get(name)}
                    ),
                }
                for name, counts in self.counts.items()
            },
            "skew": {"customers": self.skew("customers"), "orders": self.skew("orders")},
        }


def skew(values: Sequence[int]) -> float | None:
    """``max / mean`` of ``values``; ``None`` when there are none or they are all 0."""
    if not values or not any(values):
        return None
    return max(values) / statistics.fmean(values)


async def shards_status(
    catalog: asyncpg.Pool, shards: Mapping[str, asyncpg.Pool], timeout_seconds: float
) -> ShardsStatus:
    """Ask every shard at once (each within ``timeout_seconds``)."""

    async def counts_of(pool: asyncpg.Pool) -> ShardCounts:
        async with pool.acquire() as connection:
            row = await connection.fetchrow(query("shard_counts"))
            backlogs = await outbox.backlog(connection)
        assert row is not None
        return ShardCounts(
            row["customers"], row["orders"], max((b.events for b in backlogs), default=0)
        )

    gathered = await scatter(
        {name: partial(counts_of, pool) for name, pool in shards.items()}, timeout_seconds
    )
    directory = {
        row["shard"]: row["customers"]
        for row in await catalog.fetch(query("directory_customers_per_shard"))
    }
    return ShardsStatus(
        {name: gathered.results.get(name) for name in shards}, directory, gathered.missing
    )
