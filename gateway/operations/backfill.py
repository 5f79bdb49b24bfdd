"""``fanout backfill``: rebuild a store from PostgreSQL's current state, while the relay runs.

Every order (or every order changed since a time) is sent to the sink as an ``order.snapshot``
event at the order's current version, a batch at a time in id order. The relay may deliver
live events of the same orders meanwhile; the stores' version guards keep whichever version is
newer, whatever order the two writes land in, so the store ends at PostgreSQL's state. Where
each sink's backfill stands is kept in ``backfills`` after every batch: an interrupted one
resumes after the last batch it wrote.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from adapters.base import EventEnvelope, Outcome, Sink
from gateway.backoff import Backoff
from gateway.errors import GatewayError, ValidationError
from gateway.postgres.queries import query
from gateway.relay.sink_calls import apply_safely
from gateway.write_path import orders
from gateway.write_path.lifecycle import ORDER_SNAPSHOT
from gateway.write_path.models import Order

SNAPSHOT_NAMESPACE = uuid.UUID("5f2b1c0e-8d7a-4f3e-9b61-0a4c2e7d9f13")
"""Snapshot event ids are derived from (order, version): sending one again sends the same."""


@dataclass(frozen=True)
class BackfillState:
    """Where a sink's last backfill stands (a ``backfills`` row)."""

    since: datetime | None
    after_id: uuid.UUID | None
    orders_done: int
    finished: bool


@dataclass
class BackfillResult:
    """What one run of a backfill did."""

    sink: str
    since: datetime | None
    resumed_after: int
    """Orders an earlier, interrupted run had already sent (0 when starting afresh)."""
    orders: int = 0
    """Orders sent by this run."""
    permanent_failures: int = 0
    first_failures: list[str] | None = None

    def as_json(self) -> dict[str, Any]:
        """The result as JSON."""
        return {
            "sink": self.sink,
            "since": self.since.isoformat() if self.since else None,
            "resumed_after": self.resumed_after,
            "orders": self.orders,
            "permanent_failures": self.permanent_failures,
            "first_failures": self.first_failures or [],
        }


def resume_point(
    state: BackfillState | None, since: datetime | None, restart: bool
) -> BackfillState | None:
    """The unfinished backfill to resume, or ``None`` to start afresh; refuses to resume one
    of another ``--since`` unless ``restart``."""
    if restart or state is None or state.finished:
        return None
    if state.since != since:
        then = state.since.isoformat() if state.since else "the beginning"
        raise ValidationError.single(
            "--since",
            f"an unfinished backfill of this sink covers orders changed since {then}: give "
            "that --since to resume it, or --restart",
        )
    return state


def pause_for_rate(sent: int, elapsed: float, rate: float | None) -> float:
    """Seconds to wait so that ``sent`` orders after ``elapsed`` seconds keep to ``rate``
    per second (none: no wait)."""
    if rate is None:
        return 0.0
    return max(0.0, sent / rate - elapsed)


def snapshot_envelope(order: Order, customer: orders.CustomerSummary) -> EventEnvelope:
    """The ``order.snapshot`` event of ``order`` at its version."""
    event = orders.order_event(order, ORDER_SNAPSHOT, customer, headers={"backfill": "true"})
    stable = event.model_copy(
        update={"event_id": uuid.uuid5(SNAPSHOT_NAMESPACE, f"{order.id}:{order.version}")}
    )
    return orders.as_envelope(stable, order.version, order.updated_at)


async def backfill(
    pool: asyncpg.Pool,
    sink: Sink,
    *,
    since: datetime | None = None,
    rate: float | None = None,
    batch_size: int = 500,
    restart: bool = False,
    backoff: Backoff | None = None,
    max_attempts: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Send every order (changed since ``since``) to ``sink`` at its current version, at most
    ``rate`` orders per second; ``progress(done, total)`` after each batch.

    A batch a store keeps failing transiently is retried ``max_attempts`` times, then the
    backfill stops with an error and resumes from that batch when run again.
    """
    backoff = backoff or Backoff(0.1, 5.0)
    row = await pool.fetchrow(query("get_backfill"), sink.name)
    state = (
        BackfillState(
            row["since"], row["after_id"], row["orders_done"], row["finished_at"] is not None
        )
        if row is not None
        else None
    )
    resumed = resume_point(state, since, restart)
    if resumed is None:
        await pool.execute(query("start_backfill"), sink.name, since)
    after = resumed.after_id if resumed else None
    result = BackfillResult(sink.name, since, resumed.orders_done if resumed else 0)
    total = await pool.fetchval(query("count_orders_to_backfill"), after, since)
    started = time.monotonic()
    while True:
        async with pool.acquire() as connection:
            batch = await orders.current_orders(connection, after, since, batch_size)
        if not batch:
            break
        envelopes = [snapshot_envelope(order, customer) for order, customer in batch]
        await _deliver(sink, envelopes, result, backoff, max_attempts)
        after = batch[-1][0].id
        await pool.execute(query("advance_backfill"), sink.name, after, len(batch))
        result.orders += len(batch)
        if progress is not None:
            progress(result.orders, total)
        await asyncio.sleep(pause_for_rate(result.orders, time.monotonic() - started, rate))
    await pool.execute(query("finish_backfill"), sink.name)
    return result


async def _deliver(
    sink: Sink,
    envelopes: Sequence[EventEnvelope],
    result: BackfillResult,
    backoff: Backoff,
    max_attempts: int,
) -> None:
    pending = list(envelopes)
    for attempt in range(1, max_attempts + 1):
        retry = []
        last_error = ""
        for envelope, delivery in zip(pending, await apply_safely(sink, pending), strict=True):
            if delivery.outcome is Outcome.TRANSIENT:
                retry.append(envelope)
                last_error = delivery.error or "transient failure"
            elif delivery.outcome is Outcome.PERMANENT:
                result.permanent_failures += 1
                failures = result.first_failures = result.first_failures or []
                if len(failures) < 10:
                    failures.append(f"order {envelope.aggregate_id}: {delivery.error}")
        if not retry:
            return
        pending = retry
        if attempt < max_attempts:
            await asyncio.sleep(backoff.delay(attempt))
    raise GatewayError(
        f"sink {sink.name!r} kept failing ({last_error}); the backfill stopped after "
        f"{result.resumed_after + result.orders} orders and resumes there when run again"
    )
