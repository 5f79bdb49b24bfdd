"""Commit-to-visible lag, measured by reading the stores themselves.

For a sample of writes, each store is polled (every ``interval`` seconds, a batch of the
oldest pending orders per request) until it holds the order at the written version or newer.
The lag is the time from the write's return to the client to the poll that first saw it, so it
is accurate to about one polling interval. Nothing here trusts the relay's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.readback import OrderSpan, ReadBack
from gateway.configuration.secrets import redact_url
from gateway.loadtest.stats import Recorder
from gateway.loadtest.targets import Written


@dataclass
class _Pending:
    written: Written
    committed_at: float


@dataclass
class SinkWatch:
    """What is known of one store's visibility."""

    lag: Recorder = field(default_factory=Recorder)
    pending: dict[tuple[str, int], _Pending] = field(default_factory=dict)
    seen: int = 0
    read_errors: int = 0
    last_error: str | None = None


class VisibilityWatcher:
    """Polls every store for the sampled writes and records how long each took to appear."""

    def __init__(
        self, sinks: Mapping[str, ReadBack], *, interval: float = 0.02, batch: int = 200
    ) -> None:
        self.sinks = dict(sinks)
        self.interval = interval
        self.batch = batch
        self.watches = {name: SinkWatch() for name in self.sinks}
        self._stopping = asyncio.Event()

    def expect(self, written: Written, committed_at: float) -> None:
        """Watch for ``written`` in every store, timed from ``committed_at``
        (``time.monotonic()``, one clock for every process of the machine)."""
        for watch in self.watches.values():
            watch.pending[(written.order_id, written.version)] = _Pending(written, committed_at)

    @property
    def pending(self) -> int:
        """Sampled writes some store does not show yet."""
        return sum(len(watch.pending) for watch in self.watches.values())

    async def run(self) -> None:
        """Poll until :meth:`stop`."""
        while not self._stopping.is_set():
            outcomes = await asyncio.gather(
                *(self._poll(name) for name in self.sinks), return_exceptions=True
            )
            for name, outcome in zip(self.sinks, outcomes, strict=True):
                if isinstance(outcome, Exception):  # a read the store answered oddly
                    self._read_failed(name, outcome)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        """End :meth:`run` after the current poll."""
        self._stopping.set()

    async def _poll(self, name: str) -> None:
        watch = self.watches[name]
        if not watch.pending:
            return
        chosen = list(itertools.islice(watch.pending.items(), self.batch))
        spans: dict[str, OrderSpan] = {}
        for (order_id, _), entry in chosen:
            span = OrderSpan(entry.written.created_at, entry.written.updated_at)
            known = spans.get(order_id)
            if known is None or span.updated_at > known.updated_at:
                spans[order_id] = span
        try:
            held = await self.sinks[name].projected_orders(spans)
        except Exception as error:  # a store that is down or not yet prepared: poll again
            self._read_failed(name, error)
            return
        now = time.monotonic()
        for key, entry in chosen:
            projection = held.get(key[0])
            if projection is not None and projection.version >= key[1]:
                watch.lag.record(now - entry.committed_at)
                watch.seen += 1
                del watch.pending[key]

    def _read_failed(self, name: str, error: Exception) -> None:
        watch = self.watches[name]
        watch.read_errors += 1
        watch.last_error = redact_url(f"{type(error).__name__}: {error}")[:300]
