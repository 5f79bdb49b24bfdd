"""Driving the load: open loop at a rate, or closed loop with a number of workers.

In open loop, operation *i* is due at ``start + i / rate`` whether or not earlier ones have
finished, and its latency is measured from when it was due: a slow system shows up as
latency, not as a lower offered rate. In closed loop each worker starts its next operation
when the previous one ends; latency is measured from the start of each call.

Several driver processes share one schedule: driver *k* of *n* takes operations *k*, *k + n*,
*k + 2n*, … of the open loop (so together they offer the planned rate, evenly spaced), and its
share of the closed loop's workers and of the order count. Times are ``time.monotonic()``,
one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.loadtest.plan import LoadPlan
from gateway.loadtest.seed import Catalog
from gateway.loadtest.stats import Recorder
from gateway.loadtest.targets import WriteFailed, WriteTarget, Written

NEXT_STATUS = {
    "pending": "confirmed",
    "confirmed": "processing",
    "processing": "shipped",
    "shipped": "delivered",
}
OPERATIONS = ("place", "transition", "pay")
LIVES = ("paid", "failed", "unpaid")
"""What happens to an order after it is placed, when the plan drives payments."""
PREPARED_REQUESTS = 512
"""Order bodies made (and encoded, for HTTP) before the load starts, then used in turn."""

Sample = Callable[[Written, float], None]
"""Called with every ``sample_every``-th write and the monotonic time it returned."""


@dataclass(frozen=True)
class Share:
    """Which part of the plan one driver process drives: number ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def split(self, total: int) -> int:
        """This driver's part of ``total`` (workers, orders, in-flight requests)."""
        return total // self.count + (1 if self.index < total % self.count else 0)


@dataclass
class DriverCounts:
    """What the driver did, overall and in the current second."""

    offered: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    lives: Counter[str] = field(default_factory=Counter)
    """Orders placed by what the driver did next: paid, failed or left unpaid."""
    payment_outcomes: Counter[str] = field(default_factory=Counter)
    """Payment notifications by what the gateway said they did."""
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
        sample: Sample | None = None,
        share: Share = Share(),
    ) -> None:
        self.plan = plan
        self.target = target
        self.catalog = catalog
        self.sample = sample
        self.share = share
        self.rng = random.Random(plan.seed * 1_000 + share.index)
        self._requests: list[Any] = [
            target.prepare(catalog.order_request(self.rng)) for _ in range(PREPARED_REQUESTS)
        ]
        self.latency = {name: Recorder() for name in OPERATIONS}
        self.counts = DriverCounts()
        self.order_ids: list[str] = []
        self.partial_order_ids: list[str] = []
        self._movable: dict[str, Written] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._writes = 0
        self._places_started = 0
        self._placements = itertools.count()
        self._stop = asyncio.Event()
        self.offering_seconds = 0.0
        self._orders = share.split(plan.orders) if plan.orders is not None else None
        self._max_in_flight = max(1, share.split(plan.max_in_flight))

    @property
    def in_flight(self) -> int:
        """Operations started and not finished."""
        return len(self._in_flight)

    def stop(self) -> None:
        """Start no more operations."""
        self._stop.set()

    async def run(self, start: float | None = None) -> None:
        """Drive load from ``start`` (monotonic; default now) until the time or order limit
        is reached or :meth:`stop` is called."""
        start = time.monotonic() if start is None else start
        deadline = None
        if self.plan.time_limit is not None:
            deadline = start + self.plan.time_limit
        if self.plan.open_loop:
            await self._open_loop(start, deadline)
        else:
            await self._closed_loop(deadline)
        self.offering_seconds = time.monotonic() - start
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=60)

    def _done(self, deadline: float | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return self._orders is not None and self._places_started >= self._orders

    async def _open_loop(self, start: float, deadline: float | None) -> None:
        interval = 1 / self.plan.target_rate
        index = self.share.index
        while not self._done(deadline):
            due = start + index * interval
            wait = due - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
                continue
            index += self.share.count
            operation = self._choose()
            self.counts.offered[operation] += 1
            self.counts.interval_offered += 1
            if len(self._in_flight) >= self._max_in_flight:
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
                await self._operate(operation, time.monotonic())

        assert self.plan.concurrency is not None
        await asyncio.gather(*(worker() for _ in range(self.share.split(self.plan.concurrency))))

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
                number = next(self._placements)
                key = f"lt-{self.catalog.run_id}-{self.share.index}-{number}"
                request = self._requests[number % PREPARED_REQUESTS]
                written = await self.target.place(request, key)
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
        self._completed(operation, written, due)
        if operation == "place" and self.plan.drives_payments:
            await self._pay(written)

    def _completed(self, operation: str, written: Written, started: float) -> None:
        finished = time.monotonic()
        self.latency[operation].record(finished - started)
        self.counts.completed[operation] += 1
        self.counts.interval_completed += 1
        # With payments driven, a pending order waits for its payment, not for a caller.
        awaits_payment = self.plan.drives_payments and written.status == "pending"
        if written.status in NEXT_STATUS and not awaits_payment:
            self._movable[written.order_id] = written
        self._writes += 1
        if self.sample is not None and self._writes % self.plan.sample_every == 0:
            self.sample(written, finished)

    async def _pay(self, order: Written) -> None:
        """Pay the order, fail its payment or leave it unpaid, by the plan's shares."""
        plan = self.plan
        life = self.rng.choices(LIVES, (plan.paid_share, plan.failed_share, plan.unpaid_share))[0]
        self.counts.lives[life] += 1
        if life == "unpaid":
            return
        self.counts.offered["pay"] += 1
        self.counts.interval_offered += 1
        started = time.monotonic()
        payment_id = f"lt-{self.catalog.run_id}-{self.share.index}-pay-{order.order_id}"
        status = "succeeded" if life == "paid" else "failed"
        try:
            written, outcome = await self.target.pay(order, status, payment_id)
        except WriteFailed as failure:
            self._fail(failure.kind)
            return
        except Exception as error:  # counted, never allowed to stop the run
            self._fail(type(error).__name__)
            return
        self.counts.payment_outcomes[outcome] += 1
        self._completed("pay", written, started)

    def _fail(self, kind: str) -> None:
        self.counts.errors[kind] += 1
        self.counts.interval_errors += 1
