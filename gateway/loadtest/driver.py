"""Driving the load: open loop at a rate, or closed loop with a number of workers.

In open loop, operation *i* is due at ``start + i / rate`` whether or not earlier ones have
finished, and its latency is measured from when it was due: a slow system shows up as
latency, not as a lower offered rate. In closed loop each worker starts its next operation
when the previous one ends; latency is measured from the start of each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from gateway.loadtest.plan import LoadPlan
from gateway.loadtest.seed import Catalog
from gateway.loadtest.stats import Recorder
from gateway.loadtest.targets import WriteFailed, WriteTarget, Written
from gateway.loadtest.visibility import VisibilityWatcher

NEXT_STATUS = {
    "pending": "confirmed",
    "confirmed": "processing",
    "processing": "shipped",
    "shipped": "delivered",
}
OPERATIONS = ("place", "transition")


@dataclass
class DriverCounts:
    """What the driver did, overall and in the current second."""

    offered: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    interval_offered: int = 0
    interval_completed: int = 0
    interval_errors: int = 0


class LoadDriver:
    """Runs one phase of load against a target and records every outcome."""

    def __init__(
        self,
        plan: LoadPlan,
        target: WriteTarget,
        catalog: Catalog,
        watcher: VisibilityWatcher | None,
    ) -> None:
        self.plan = plan
        self.target = target
        self.catalog = catalog
        self.watcher = watcher
        self.rng = random.Random(plan.seed)
        self.latency = {name: Recorder() for name in OPERATIONS}
        self.counts = DriverCounts()
        self.order_ids: list[str] = []
        self.partial_order_ids: list[str] = []
        self._movable: dict[str, Written] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._writes = 0
        self._places_started = 0
        self._stop = asyncio.Event()
        self.offering_seconds = 0.0

    @property
    def in_flight(self) -> int:
        """Operations started and not finished."""
        return len(self._in_flight)

    def stop(self) -> None:
        """Start no more operations."""
        self._stop.set()

    async def run(self) -> None:
        """Drive load until the time or order limit is reached or :meth:`stop` is called."""
        deadline = None
        if self.plan.time_limit is not None:
            deadline = time.perf_counter() + self.plan.time_limit
        started = time.perf_counter()
        if self.plan.open_loop:
            await self._open_loop(deadline)
        else:
            await self._closed_loop(deadline)
        self.offering_seconds = time.perf_counter() - started
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=60)

    def _done(self, deadline: float | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.perf_counter() >= deadline:
            return True
        return self.plan.orders is not None and self._places_started >= self.plan.orders

    async def _open_loop(self, deadline: float | None) -> None:
        interval = 1 / self.plan.target_rate
        start = time.perf_counter()
        index = 0
        while not self._done(deadline):
            due = start + index * interval
            wait = due - time.perf_counter()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
                continue
            index += 1
            operation = self._choose()
            self.counts.offered[operation] += 1
            self.counts.interval_offered += 1
            if len(self._in_flight) >= self.plan.max_in_flight:
                self._fail("client: too many in flight")
                continue
            task = asyncio.create_task(self._operate(operation, due))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _closed_loop(self, deadline: float | None) -> None:
        async def worker() -> None:
            while not self._done(deadline):
                operation = self._choose()
                self.counts.offered[operation] += 1
                self.counts.interval_offered += 1
                await self._operate(operation, time.perf_counter())

        assert self.plan.concurrency is not None
        await asyncio.gather(*(worker() for _ in range(self.plan.concurrency)))

    def _choose(self) -> str:
        if self._movable and self.rng.random() < self.plan.transition_ratio:
            return "transition"
        self._places_started += 1
        return "place"

    async def _operate(self, operation: str, due: float) -> None:
        moving: Written | None = None
        try:
            if operation == "transition" and self._movable:
                moving = self._movable.pop(self.rng.choice(list(self._movable)))
                written = await self.target.transition(
                    moving.order_id, NEXT_STATUS[moving.status], moving.version
                )
            else:
                if operation == "transition":  # every order moved on meanwhile: place one
                    self.counts.offered["transition"] -= 1
                    self.counts.offered["place"] += 1
                    self._places_started += 1
                operation = "place"
                key = f"lt-{self.catalog.run_id}-{self._places_started}-{self.rng.random()}"
                written = await self.target.place(self.catalog.order_request(self.rng), key)
                self.order_ids.append(written.order_id)
        except WriteFailed as failure:
            self._fail(failure.kind)
            if failure.committed is not None:
                if operation == "place":
                    self.order_ids.append(failure.committed.order_id)
                self.partial_order_ids.append(failure.committed.order_id)
            elif moving is not None:
                self._movable[moving.order_id] = moving
            return
        except Exception as error:  # counted, never allowed to stop the run
            self._fail(type(error).__name__)
            return
        finished = time.perf_counter()
        self.latency[operation].record(finished - due)
        self.counts.completed[operation] += 1
        self.counts.interval_completed += 1
        if written.status in NEXT_STATUS:
            self._movable[written.order_id] = written
        self._writes += 1
        if self.watcher is not None and self._writes % self.plan.sample_every == 0:
            self.watcher.expect(written, finished)

    def _fail(self, kind: str) -> None:
        self.counts.errors[kind] += 1
        self.counts.interval_errors += 1
