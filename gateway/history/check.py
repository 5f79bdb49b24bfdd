"""``fanout verify --events``: every order's fold against its ``orders`` row, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from gateway.history.fold import BrokenStream, OrderState, StreamEvent, differences, fold
from gateway.postgres.queries import query

EXAMPLES_KEPT = 20


class _Event(NamedTuple):
    version: int
    event_type: str
    payload: dict[str, Any]


@dataclass
class FoldCheck:
    """How the folds of the orders' streams compare with the orders."""

    checked: int = 0
    matched: int = 0
    different: int = 0
    broken: int = 0
    """Streams that cannot be folded (a gap, or an unknown event type)."""
    without_history: int = 0
    """Orders with no events: placed before the event store existed, or pruned."""
    truncated: int = 0
    """Streams whose first events were pruned (``events.retention_days``)."""
    examples: list[dict[str, Any]] = field(default_factory=list)
    """The first differences found: order id and what differs."""

    @property
    def clean(self) -> bool:
        """No order differs from its fold, and no stream is broken."""
        return not (self.different or self.broken)

    def as_json(self) -> dict[str, Any]:
        """The counts, whether the check is clean, and the first differences."""
        return {
            "checked": self.checked,
            "matched": self.matched,
            "different": self.different,
            "broken": self.broken,
            "without_history": self.without_history,
            "truncated": self.truncated,
            "clean": self.clean,
            "examples": self.examples,
        }

    def add(self, row: asyncpg.Record, stream: Sequence[StreamEvent]) -> None:
        """Count one order (an ``orders_for_fold_check`` row) against its stream."""
        self.checked += 1
        if not stream:
            self.without_history += 1
            return
        if stream[0].version != 1:
            self.truncated += 1
            return
        try:
            folded = fold(stream)
        except BrokenStream as error:
            self.broken += 1
            self._example(row["id"], str(error))
            return
        found = differences(folded, stored_state(row))
        if found:
            self.different += 1
            self._example(row["id"], "differs in " + ", ".join(found))
        else:
            self.matched += 1

    def _example(self, order_id: UUID, problem: str) -> None:
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append({"order_id": str(order_id), "problem": problem})


async def check_folds(
    pool: asyncpg.Pool | Sequence[asyncpg.Pool], batch_size: int = 1_000
) -> FoldCheck:
    """Fold every order's stream and compare it with the order, ``batch_size`` at a time (in
    one database, or in each of several: sharded mode's shards)."""
    check = FoldCheck()
    for source in [pool] if isinstance(pool, asyncpg.Pool) else pool:
        await _check_database(source, batch_size, check)
    return check


async def _check_database(pool: asyncpg.Pool, batch_size: int, check: FoldCheck) -> None:
    after: UUID | None = None
    while True:
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await connection.fetch(query("orders_for_fold_check"), after, batch_size)
            if not rows:
                return
            ids = [row["id"] for row in rows]
            events = await connection.fetch(query("order_streams"), ids)
        streams = {
            stream_id: [_Event(e["version"], e["event_type"], e["payload"]) for e in group]
            for stream_id, group in groupby(events, key=lambda e: e["stream_id"])
        }
        for row in rows:
            check.add(row, streams.get(row["id"], []))
        after = ids[-1]


def stored_state(row: asyncpg.Record) -> OrderState:
    """The ``orders_for_fold_check`` row as the fold's :class:`OrderState`."""
    lines = tuple(sorted((line.split(":")[0], int(line.split(":")[1])) for line in row["lines"]))
    return OrderState(
        status=row["status"],
        payment_status=row["payment_status"],
        version=row["version"],
        total_amount=Decimal(row["total_amount"]),
        currency=row["currency"],
        updated_at=row["updated_at"],
        lines=lines,
    )
