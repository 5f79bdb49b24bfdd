"""Each sink's backlog and lag over the last hour, sampled by the serving process.

The samples live in memory: they start when the process starts and hold at most
:data:`SPAN_SECONDS`; each worker of ``fanout serve`` keeps its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from gateway.postgres import outbox
from gateway.postgres.database import UNANSWERED_ERRORS
from gateway.relay import tables

SPAN_SECONDS = 3600.0
SAMPLE_INTERVAL_SECONDS = 5.0
RATE_WINDOW_SECONDS = 60.0
SAMPLE_ERRORS: tuple[type[Exception], ...] = (*UNANSWERED_ERRORS, asyncpg.PostgresError)
"""What skips one sample: the next may succeed (the chart shows the gap)."""

log = logging.getLogger("gateway.api.console")


@dataclass(frozen=True)
class SinkSample:
    """One sink at one instant: what the outbox still owes it and what it has delivered."""

    backlog: int
    oldest_undelivered_seconds: float | None
    delivered: int
    """Events delivered since the sink was registered (a counter that only grows)."""
    dead_lettered: int
    last_error: str | None = None


@dataclass(frozen=True)
class Sample:
    """Every sink at one instant (``at``: Unix seconds)."""

    at: float
    sinks: Mapping[str, SinkSample]


class LagHistory:
    """A ring buffer of samples covering at most ``span_seconds``."""

    def __init__(
        self,
        span_seconds: float = SPAN_SECONDS,
        interval_seconds: float = SAMPLE_INTERVAL_SECONDS,
    ) -> None:
        self.span_seconds = span_seconds
        self.interval_seconds = interval_seconds
        self._samples: deque[Sample] = deque(maxlen=int(span_seconds / interval_seconds) + 1)

    def add(self, sample: Sample) -> None:
        """Keep ``sample``, forgetting the oldest once the buffer is full."""
        self._samples.append(sample)

    def samples(self) -> list[Sample]:
        """The samples kept, oldest first."""
        return list(self._samples)

    def latest(self) -> Sample | None:
        """The newest sample, if any was taken."""
        return self._samples[-1] if self._samples else None


def combine(
    at: float, per_database: Iterable[tuple[Sequence[outbox.Backlog], Sequence[tables.SinkTotals]]]
) -> Sample:
    """One sample of every sink from each database's backlogs and totals (sharded mode has
    an outbox per shard): backlogs, deliveries and dead letters add up, the oldest age is the
    oldest of any."""
    sinks: dict[str, SinkSample] = {}
    for backlogs, totals in per_database:
        by_sink = {backlog.sink: backlog for backlog in backlogs}
        for total in totals:
            backlog = by_sink.get(total.sink)
            found = SinkSample(
                backlog.events if backlog else 0,
                backlog.oldest_age_seconds if backlog else None,
                total.delivered,
                total.dead_lettered,
                total.last_error,
            )
            earlier = sinks.get(total.sink)
            sinks[total.sink] = found if earlier is None else _added(earlier, found)
    return Sample(at, sinks)


def _added(one: SinkSample, other: SinkSample) -> SinkSample:
    ages = [
        age
        for age in (one.oldest_undelivered_seconds, other.oldest_undelivered_seconds)
        if age is not None
    ]
    return SinkSample(
        one.backlog + other.backlog,
        max(ages) if ages else None,
        one.delivered + other.delivered,
        one.dead_lettered + other.dead_lettered,
        one.last_error or other.last_error,
    )


def delivery_rate(
    samples: Sequence[Sample], sink: str, window_seconds: float = RATE_WINDOW_SECONDS
) -> float | None:
    """Events per second delivered to ``sink`` over the last ``window_seconds`` of
    ``samples`` (oldest first); ``None`` without two samples of it in the window, or when its
    counter went back (the sink was retired and registered again)."""
    held = [s for s in samples if sink in s.sinks]
    if len(held) < 2:
        return None
    last = held[-1]
    first = next(s for s in held if s.at >= last.at - window_seconds)
    elapsed = last.at - first.at
    delivered = last.sinks[sink].delivered - first.sinks[sink].delivered
    if elapsed <= 0 or delivered < 0:
        return None
    return delivered / elapsed


async def take_sample(pools: Sequence[asyncpg.Pool], timeout_seconds: float) -> Sample:
    """Read every database's backlogs and sink totals, each within ``timeout_seconds``."""
    per_database = []
    for pool in pools:
        async with asyncio.timeout(timeout_seconds), pool.acquire() as connection:
            per_database.append(
                (await outbox.backlog(connection), await tables.sink_totals(connection))
            )
    return combine(time.time(), per_database)


async def sample_forever(
    history: LagHistory, pools_now: Callable[[], Sequence[asyncpg.Pool]], timeout_seconds: float
) -> None:
    """Add a sample to ``history`` every ``history.interval_seconds`` until cancelled, of
    the databases ``pools_now`` gives (none while the API is not connected); a database that
    does not answer in time skips that sample."""
    while True:
        pools = pools_now()
        if pools:
            try:
                history.add(await take_sample(pools, timeout_seconds))
            except SAMPLE_ERRORS as error:
                log.warning("console: no sample of the sinks' lag: %s", type(error).__name__)
        await asyncio.sleep(history.interval_seconds)
