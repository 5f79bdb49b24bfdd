"""The order event store (``order_events``): read a stream, prune past the retention.

Rows are written only with the outbox's (``gateway.postgres.outbox.append_order_events``), in
the same statement, so an order's stream holds exactly the order events that committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from gateway.errors import NotFound
from gateway.postgres.database import Connection
from gateway.postgres.queries import query


class OrderEvent(BaseModel):
    """One event of an order's stream."""

    model_config = ConfigDict(frozen=True)

    stream_id: UUID
    """The order's id."""
    version: int
    """The order's version after this event: 1, 2, 3, ... with no gap."""
    event_id: UUID
    event_type: str
    payload: dict[str, Any]
    headers: dict[str, str]
    occurred_at: datetime


async def read_stream(connection: Connection, order_id: UUID) -> list[OrderEvent]:
    """The order's events in version order; ``NotFound`` if there is no such order."""
    rows = await connection.fetch(query("order_stream"), order_id)
    if not rows and not await connection.fetchval(query("order_exists"), order_id):
        raise NotFound("order", order_id, field="order_id")
    return [OrderEvent(**dict(row)) for row in rows]


async def prune(connection: Connection, retention_days: int, limit: int) -> int:
    """Delete up to ``limit`` events older than ``retention_days``, oldest first."""
    result: str = await connection.execute(query("prune_order_events"), retention_days, limit)
    return int(result.split()[-1])
