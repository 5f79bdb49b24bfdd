"""One sink's worker: the loop that holds leases, starts the sink, replays dead letters and
delivers batches, until the process stops (or, asked to, until nothing is left).

The worker only wires its parts together: leases (``leases``), batches from read to commit
(``pipeline``), retries (``retries``). It gets what it needs of its process in a
:class:`WorkerContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from adapters.base import Delivery, Outcome, Sink
from gateway import metrics
from gateway.postgres.outbox import StoredEvent
from gateway.relay.context import WorkerContext
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.leases import SinkLeases
from gateway.relay.ordering import needs_version_order
from gateway.relay.pipeline import BatchPipeline
from gateway.relay.retries import Pending, Retrier, retrying_per_partition
from gateway.relay.sink_calls import HEALTH_TIMEOUT_SECONDS, apply_events, is_healthy, start_safely
from gateway.relay.stalls import SinkCallWatch

log = logging.getLogger("gateway.relay")

IDLE_WAIT_REPORT_SECONDS = 30.0
"""How long a relay run until idle waits for events it cannot finish before it says so, and
then how often it says so again."""


def idle_wait_to_report(waiting_since: float | None, reported_at: float | None, now: float) -> bool:
    """Whether a relay run until idle, still finding committed events past its positions,
    reports it now: once it has waited a report interval, then once per interval."""
    if waiting_since is None:
        return False
    since = waiting_since if reported_at is None else max(waiting_since, reported_at)
    return now - since >= IDLE_WAIT_REPORT_SECONDS


class SinkWorker:
    """Delivers one sink's events: leases, reads, applies with retries, commits positions."""

    def __init__(
        self, sink: Sink, context: WorkerContext, *, apply_timeout_seconds: float | None = None
    ) -> None:
        self.sink = sink
        self.context = context
        self.settings = context.settings
        self.apply_timeout_seconds = (
            context.settings.apply_timeout_seconds
            if apply_timeout_seconds is None
            else apply_timeout_seconds
        )
        """The bound of each call to the sink's ``apply`` and ``start``."""
        self.calls = SinkCallWatch()
        """The calls into the sink still running."""
        self.wakeup = asyncio.Event()
        """Set when new events may be readable."""
        self.leased = asyncio.Event()
        """Set once the worker has taken its first leases."""
        self.started = False
        """Whether the sink's ``start`` has succeeded (it is tried again until it does)."""
        self.leases = SinkLeases(sink.name, context)
        self.pipeline = BatchPipeline(
            sink.name,
            context,
            self.leases,
            self._apply,
            Retrier(
                apply=self._apply,
                healthy=self._healthy,
                wait=self._wait_holding_leases,
                report=self._record_retrying,
                backoff=context.backoff,
                max_attempts=context.settings.max_attempts,
                on_failure=self._count_failure,
            ),
            version_order=needs_version_order(sink),
        )
        self._next_replay_check = 0.0
        self._idle_waiting_since: float | None = None
        self._idle_wait_reported_at: float | None = None

    @property
    def owned(self) -> set[int]:
        """The partitions this worker holds."""
        return self.leases.owned

    def keeps_leases(self) -> bool:
        """Whether the process is to renew this worker's leases: not once a call into its
        sink has outlived its timeout by a lease's life (see :mod:`gateway.relay.stalls`)."""
        return self.calls.keeps_leases(self.settings.lease_ttl_seconds)

    async def run(self, until_idle: bool) -> None:
        """The worker's loop; what is not committed when it ends is redelivered later."""
        try:
            await self._loop(until_idle)
            with contextlib.suppress(*DATABASE_ERRORS):
                await self.pipeline.flush()
        finally:
            await self.pipeline.start_over()
            await self.pipeline.finish_commit()

    async def _loop(self, until_idle: bool) -> None:
        failures = 0
        while not self.context.stopping.is_set():
            try:
                await self.pipeline.follow_server()
                await self.maintain_leases()
                self.leased.set()
                if not self.started:
                    failures += 1
                    if not await self._start_sink(failures):
                        continue
                replayed = await self.replay_dead_letters()
                full = await self.pipeline.deliver_next_batch()
                failures = 0
                if full or replayed:
                    self._idle_waiting_since = None
                    continue
                if until_idle:
                    if not await self.context.storage.has_work(self.sink.name):
                        return
                    self._note_idle_wait()
                await self._wait_for_events()
            except DATABASE_ERRORS as error:
                failures += 1
                log.warning("%s: database unavailable, retrying: %s", self.sink.name, error)
                if isinstance(error, asyncpg.InternalClientError):
                    # Such a connection is unusable; replace every pooled one.
                    await self.context.storage.reset_connections()
                self.leases.check_soon()
                await self.context.pause(self.context.database_backoff.ceiling(failures))

    def _note_idle_wait(self) -> None:
        """Run until idle and not idle yet: after a while, say what it is waiting for."""
        now = time.monotonic()
        if self._idle_waiting_since is None:
            self._idle_waiting_since = now
        if idle_wait_to_report(self._idle_waiting_since, self._idle_wait_reported_at, now):
            self._idle_wait_reported_at = now
            log.warning(
                "%s: running until idle, committed events are still past its positions after "
                "%.0f s: events are still being committed, or a transaction older than them "
                "is still running on the server (any database: relays read only below the "
                "oldest running transaction)",
                self.sink.name,
                now - self._idle_waiting_since,
            )

    async def maintain_leases(self) -> None:
        """Every third of a lease's life: finish the batches in flight (a lease given up must
        not be taken while a batch of its partition is in flight), then rebalance."""
        if not self.leases.due():
            return
        await self.pipeline.flush()
        await self.leases.rebalance()

    async def _start_sink(self, attempt: int) -> bool:
        """Start the sink; on failure (its store is down) pause and say so, so that the relay
        starts, and its other sinks deliver, whichever store is down."""
        with self.calls.call(self.apply_timeout_seconds):
            started = await start_safely(self.sink, self.apply_timeout_seconds)
        if not started:
            await self.context.pause(self.context.backoff.ceiling(attempt))
            return False
        self.started = True
        return True

    async def replay_dead_letters(self) -> bool:
        """Deliver dead letters whose replay was requested; True if any was delivered."""
        now = time.monotonic()
        if now < self._next_replay_check or not self.leases.owned:
            return False
        self._next_replay_check = now + self.settings.poll_interval_seconds
        storage = self.context.storage
        replays = await storage.claim_replays(
            self.sink.name,
            self.context.instance_id,
            self.settings.batch_size,
            self.settings.lease_ttl_seconds,
        )
        if not replays:
            return False
        results = await self._apply([replay.event for replay in replays])
        delivered = [
            r
            for r, result in zip(replays, results, strict=True)
            if result.outcome is Outcome.DELIVERED
        ]
        failed = [
            (r, result.error or "", result.outcome is Outcome.TRANSIENT)
            for r, result in zip(replays, results, strict=True)
            if result.outcome is not Outcome.DELIVERED
        ]
        await storage.finish_replays(self.context.instance_id, delivered, failed)
        metrics.EVENTS_DELIVERED.labels(self.sink.name).inc(len(delivered))
        log.info(
            "%s: replayed %d dead letters, %d failed", self.sink.name, len(delivered), len(failed)
        )
        return bool(delivered)

    async def _apply(self, events: list[StoredEvent]) -> list[Delivery]:
        timeout = self.apply_timeout_seconds
        with self.calls.call(timeout):
            return await apply_events(self.sink, events, timeout_seconds=timeout)

    async def _healthy(self) -> bool:
        with self.calls.call(HEALTH_TIMEOUT_SECONDS):
            return await is_healthy(self.sink)

    def _count_failure(self, outcome: Outcome) -> None:
        kind = "permanent" if outcome is Outcome.PERMANENT else "transient"
        metrics.EVENTS_FAILED.labels(self.sink.name, kind).inc()

    async def _record_retrying(self, retry: list[Pending], error: str) -> None:
        # The running commit clears the retry count; it must land before this sets it.
        await self.pipeline.commit_landed()
        retrying = retrying_per_partition(self.leases.owned, (p.event for p in retry))
        with contextlib.suppress(*DATABASE_ERRORS):
            await self.context.storage.record_retrying(
                self.sink.name, self.context.instance_id, retrying, error[:2000]
            )

    async def _wait_holding_leases(self, delay: float, needed: set[int]) -> bool:
        """Wait ``delay`` while renewing leases; False on stop or if a needed lease is lost."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            await self.context.pause(min(remaining, self.settings.lease_ttl_seconds / 3))
            if self.context.stopping.is_set():
                return False
            if self.leases.due():
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self.leases.renew()
            if not needed <= self.leases.owned:
                return False
        return True

    async def _wait_for_events(self) -> None:
        await self.context.pause(self.settings.poll_interval_seconds, self.wakeup)
        self.wakeup.clear()
        if self.settings.linger_ms and not self.context.stopping.is_set():
            # Let a burst of commits accumulate into one batch.
            await asyncio.sleep(self.settings.linger_ms / 1000)
