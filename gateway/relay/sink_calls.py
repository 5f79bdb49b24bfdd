"""Calls into a sink, made safe for the relay: nothing a sink raises escapes them, and each is
bounded by a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from adapters.base import Delivery, EventEnvelope, Sink
from gateway import metrics
from gateway.postgres.outbox import StoredEvent
from gateway.telemetry.deliveries import applying

log = logging.getLogger("gateway.relay")

HEALTH_TIMEOUT_SECONDS = 5.0


async def apply_events(
    sink: Sink, events: list[StoredEvent], *, timeout_seconds: float | None = None
) -> list[Delivery]:
    """The sink's outcome for each event (see :func:`apply_safely`), its time measured and
    traced (see :func:`gateway.telemetry.deliveries.applying`)."""
    started = time.perf_counter()
    envelopes = [event.envelope for event in events]
    try:
        with applying(sink.name, envelopes) as results:
            results += await apply_safely(sink, envelopes, timeout_seconds=timeout_seconds)
        return results
    finally:
        metrics.BATCH_SECONDS.labels(sink.name).observe(time.perf_counter() - started)


async def apply_safely(
    sink: Sink, batch: Sequence[EventEnvelope], *, timeout_seconds: float | None = None
) -> list[Delivery]:
    """The sink's outcome for each event of ``batch``; a sink that raises, answers for the
    wrong number of events, or does not answer within ``timeout_seconds`` (if given), failed
    every event transiently."""
    bound = asyncio.timeout(timeout_seconds)
    try:
        async with bound:
            results = await sink.apply(batch)
    except Exception as error:  # a sink that raises is treated as failing transiently
        if bound.expired():
            error_text = f"apply did not return within {timeout_seconds:g} s"
        else:
            error_text = f"apply raised {error!r}"
        log.warning("%s: %s", sink.name, error_text)
        return [Delivery.transient(error_text)] * len(batch)
    if len(results) != len(batch):
        error_text = f"sink returned {len(results)} results for {len(batch)} events"
        return [Delivery.transient(error_text)] * len(batch)
    return results


async def start_safely(sink: Sink, timeout_seconds: float) -> bool:
    """Start the sink; False (logged) if it raised or did not return within
    ``timeout_seconds``."""
    try:
        async with asyncio.timeout(timeout_seconds):
            await sink.start()
    except Exception as error:  # any failure to start is the store's: try again later
        log.warning("%s: cannot start the sink, trying again: %r", sink.name, error)
        return False
    return True


async def is_healthy(sink: Sink) -> bool:
    """Whether the sink's store answers its health check in time."""
    try:
        health = await asyncio.wait_for(sink.health(), HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer means not healthy
        log.warning("%s: health check failed: %r", sink.name, error)
        return False
    return health.ok
