"""A store the simulation's relays deliver to, with the faults the seed chooses: outages,
flaky events, permanently failing events, slow answers and answers that never come."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from adapters.base import Delivery, EventEnvelope, Health, Outcome

FLAKES_PER_EVENT = 1
"""Transient failures an event may get while the store is up: fewer than the relay's attempt
limit, so that an event dead-lettered for its attempts is always a bug."""


@dataclass
class Store:
    """One store's state and faults, shared by every relay's sink for it."""

    name: str
    ordered: bool
    state: dict[str, int] = field(default_factory=dict)
    """Aggregate id -> latest version applied (the store's version guard)."""
    seen: dict[UUID, int] = field(default_factory=dict)
    """Event id -> how many times it was applied."""
    first_versions: dict[str, list[int]] = field(default_factory=dict)
    """Aggregate id -> versions in the order they first arrived."""
    down: bool = False
    answered_down: bool = False
    """Whether the last answer was given during an outage (health says so until the next)."""
    permanent: set[UUID] = field(default_factory=set)
    flaky: dict[UUID, int] = field(default_factory=dict)
    """Event id -> transient failures still to give while up."""
    slow_seconds: float = 0.0
    hang_next: int = 0
    """How many of the next calls never answer."""

    def apply_one(self, event: EventEnvelope) -> Delivery:
        if event.event_id in self.permanent:
            return Delivery.permanent("rejected")
        if self.flaky.get(event.event_id, 0) > 0:
            self.flaky[event.event_id] -= 1
            return Delivery.transient("flaky")
        self.seen[event.event_id] = self.seen.get(event.event_id, 0) + 1
        versions = self.first_versions.setdefault(event.aggregate_id, [])
        if event.version not in versions:
            versions.append(event.version)
        if self.state.get(event.aggregate_id, 0) < event.version:
            self.state[event.aggregate_id] = event.version
        return Delivery.ok()


class Killed(BaseException):
    """The relay process was killed: nothing it does from now on has any effect."""


class ProcessSink:
    """One relay process's client of a :class:`Store`; dead once its process is killed."""

    def __init__(self, store: Store, process: ProcessLife) -> None:
        self.store = store
        self._process = process
        self.needs_version_order = store.ordered

    @property
    def name(self) -> str:
        return self.store.name

    async def start(self) -> None:
        self._process.check()

    async def close(self) -> None:
        return None

    async def health(self) -> Health:
        self._process.check()
        up = not (self.store.down or self.store.answered_down)
        return Health(up, "up" if up else "down")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        self._process.check()
        store = self.store
        if store.hang_next > 0:
            store.hang_next -= 1
            await asyncio.get_running_loop().create_future()  # never answers
        if store.slow_seconds:
            await asyncio.sleep(store.slow_seconds)
        self._process.check()
        store.answered_down = store.down
        if store.down:
            return [Delivery.transient("store is down")] * len(batch)
        results: list[Delivery] = []
        failed: set[str] = set()
        for event in batch:
            if store.ordered and event.aggregate_id in failed:
                # As a log's sink does: nothing of an aggregate goes out past a failed version.
                results.append(Delivery.held("an earlier version failed"))
                continue
            result = store.apply_one(event)
            if result.outcome is not Outcome.DELIVERED:
                failed.add(event.aggregate_id)
            results.append(result)
        return results


@dataclass
class ProcessLife:
    """Whether a relay process still lives; a crash point kills it at its n-th call."""

    alive: bool = True
    calls_left: int | None = None
    """Calls into storage before the process dies (None: no crash planned)."""
    effect_lands: bool = False
    """Whether the call it dies at takes effect (a crash just after it) or not."""

    def check(self) -> None:
        """Raise :class:`Killed` if the process is dead."""
        if not self.alive:
            raise Killed

    def alive_after_call(self) -> bool:
        """Count a call; False if the process dies at it."""
        if self.calls_left is not None:
            self.calls_left -= 1
            if self.calls_left <= 0:
                self.alive = False
                self.calls_left = None
        return self.alive


def choose_event_faults(rng: random.Random, store: Store, event_id: UUID) -> None:
    """Maybe make ``event_id`` fail in ``store``: rarely for good, sometimes for a while."""
    roll = rng.random()
    if roll < 0.02:
        store.permanent.add(event_id)
    elif roll < 0.12:
        store.flaky[event_id] = FLAKES_PER_EVENT
