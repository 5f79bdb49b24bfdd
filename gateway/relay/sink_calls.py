"""Calls into a sink, made safe for the relay: nothing a sink raises escapes them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from adapters.base import Delivery, EventEnvelope, Sink
from gateway import metrics
from gateway.postgres.outbox import StoredEvent

log = logging.getLogger("gateway.relay")

HEALTH_TIMEOUT_SECONDS = 5.0


async def apply_events(sink: Sink, events: list[StoredEvent]) -> list[Delivery]:
    """The sink's outcome for each event (see :func:`apply_safely`), its time measured."""
    started = time.perf_counter()
    try:
        return await apply_safely(sink, [event.envelope for event in events])
    finally:
        metrics.BATCH_SECONDS.labels(sink.name).observe(time.perf_counter() - started)


async def apply_safely(sink: Sink, batch: Sequence[EventEnvelope]) -> list[Delivery]:
    """The sink's outcome for each event of ``batch``; a sink that raises, or answers for the
    wrong number of events, failed every event transiently."""
    try:
        results = await sink.apply(batch)
    except Exception as error:  # a sink that raises is treated as failing transiently
        log.warning("%s: apply raised %r", sink.name, error)
        return [Delivery.transient(f"apply raised {error!r}")] * len(batch)
    if len(results) != len(batch):
        error_text = f"sink returned {len(results)} results for {len(batch)} events"
        return [Delivery.transient(error_text)] * len(batch)
    return results


async def is_healthy(sink: Sink) -> bool:
    """Whether the sink's store answers its health check in time."""
    try:
        health = await asyncio.wait_for(sink.health(), HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer means not healthy
        log.warning("%s: health check failed: %r", sink.name, error)
        return False
    return health.ok
