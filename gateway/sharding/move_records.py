"""The catalog's record of customer moves between shards (``shard_moves``): the only module
that knows that table's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.postgres.database import Connection
from gateway.postgres.queries import query
from gateway.sharding.move_rules import MoveState

RECENT_MOVES = 20
"""How many finished moves ``fanout shards moves`` lists besides the unfinished ones."""


@dataclass(frozen=True)
class ShardMove:
    """One move of a customer from shard ``source`` to shard ``target``."""

    id: UUID
    customer_id: UUID
    source: str
    target: str
    state: MoveState
    started_at: datetime | None = None
    updated_at: datetime | None = None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The move as ``fanout shards moves --json`` prints it."""
        return {
            "id": str(self.id),
            "customer_id": str(self.customer_id),
            "source": self.source,
            "target": self.target,
            "state": self.state.value,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "last_error": self.last_error,
        }


def _move(row: asyncpg.Record) -> ShardMove:
    return ShardMove(**{**dict(row), "state": MoveState(row["state"])})


async def record(catalog: asyncpg.Pool | Connection, move: ShardMove) -> bool:
    """Record a new move; False (nothing written) when the customer has an unfinished one."""
    recorded = await catalog.fetchval(
        query("move_record"), move.id, move.customer_id, move.source, move.target
    )
    return recorded is not None


async def set_state(
    catalog: asyncpg.Pool | Connection, move_id: UUID, state: MoveState, error: str | None = None
) -> None:
    """Record that move ``move_id`` reached ``state`` (with ``error``: why)."""
    await catalog.execute(query("move_set_state"), move_id, state.value, error)


async def by_id(catalog: asyncpg.Pool | Connection, move_id: UUID) -> ShardMove | None:
    """The move ``move_id``, as recorded now."""
    row = await catalog.fetchrow(query("move_by_id"), move_id)
    return _move(row) if row is not None else None


async def unfinished_of(catalog: asyncpg.Pool | Connection, customer_id: UUID) -> ShardMove | None:
    """The customer's unfinished move, if any."""
    row = await catalog.fetchrow(query("move_unfinished_of_customer"), customer_id)
    return _move(row) if row is not None else None


async def unfinished(catalog: asyncpg.Pool | Connection) -> list[ShardMove]:
    """Every unfinished move, oldest first."""
    return [_move(row) for row in await catalog.fetch(query("moves_unfinished"))]


async def listed(catalog: asyncpg.Pool | Connection, recent: int = RECENT_MOVES) -> list[ShardMove]:
    """The unfinished moves and the ``recent`` latest finished ones, newest first."""
    return [_move(row) for row in await catalog.fetch(query("moves_listed"), recent)]
