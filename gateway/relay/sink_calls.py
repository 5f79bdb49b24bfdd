"""Calls into a sink, made safe for the relay: nothing a sink raises escapes them."""

from __future__ import annotations

import asyncio
import logging
import time

from adapters.base import Delivery, Sink
from gateway import metrics
from gateway.postgres.outbox import StoredEvent

log = logging.getLogger("gateway.relay")

HEALTH_TIMEOUT_SECONDS = 5.0


async def apply_events(sink: Sink, events: list[StoredEvent]) -> list[Delivery]:
    """The sink's outcome for each event; a sink that raises, or answers for the wrong number
    of events, failed every event transiently."""
    started = time.perf_counter()
    try:
        results = await sink.apply([event.envelope for event in events])
    except Exception as error:  # a sink that raises is treated as failing transiently
        log.warning("%s: apply raised %r", sink.name, error)
        return [Delivery.transient(f"apply raised {error!r}")] * len(events)
    finally:
        metrics.BATCH_SECONDS.labels(sink.name).observe(time.perf_counter() - started)
    if len(results) != len(events):
        error_text = f"sink returned {len(results)} results for {len(events)} events"
        return [Delivery.transient(error_text)] * len(events)
    return results


async def is_healthy(sink: Sink) -> bool:
    """Whether the sink's store answers its health check in time."""
    try:
        health = await asyncio.wait_for(sink.health(), HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer means not healthy
        log.warning("%s: health check failed: %r", sink.name, error)
        return False
    return health.ok
