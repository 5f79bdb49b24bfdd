"""The faults of the saga's simulation, injected around every storage operation: latency (now
and then longer than a reservation lives), a shard that does not answer for a while, and a
planned end for one task (a crash, or a lost connection) before or after an operation's change
lands."""

from __future__ import annotations

import asyncio
import random
from contextvars import ContextVar
from dataclasses import dataclass

from simulation.saga_storage import Hooks

SLOW_SECONDS = (20.0, 90.0)
"""How long a slow call takes (reservations live 30 s in the simulation)."""


class Crashed(asyncio.CancelledError):
    """The process running the task died here: nothing after this point runs."""


@dataclass
class Plan:
    """How a task ends early: at its ``operation``-th storage call, ``before`` or after the
    change lands, by a crash or a lost connection."""

    operation: int
    before: bool
    crash: bool
    calls: int = 0

    def due(self, before: bool) -> bool:
        """Whether the task ends now (counted on each call's ``before``)."""
        if before:
            self.calls += 1
        return self.calls == self.operation and self.before is before


PLAN: ContextVar[Plan | None] = ContextVar("PLAN", default=None)
"""The plan of the task running (each task its own)."""


class SagaFaults(Hooks):
    """The faults of one run, drawn from ``rng``."""

    def __init__(self, rng: random.Random, clock: asyncio.AbstractEventLoop) -> None:
        self._rng = rng
        self._loop = clock
        self.down_until: dict[str, float] = {}
        self.slow = True

    def take_down(self, shard: str, seconds: float) -> None:
        """``shard`` refuses every call for ``seconds``."""
        self.down_until[shard] = self._loop.time() + seconds

    def heal(self) -> None:
        """Every shard answers, and no call is slow."""
        self.down_until.clear()
        self.slow = False

    async def before(self, place: str, operation: str) -> None:
        await asyncio.sleep(self._latency())
        if self.down_until.get(place, -1.0) > self._loop.time():
            raise ConnectionRefusedError(f"shard {place} does not answer ({operation})")
        self._end_as_planned(place, operation, before=True)

    async def after(self, place: str, operation: str) -> None:
        self._end_as_planned(place, operation, before=False)

    def _latency(self) -> float:
        if not self.slow:
            return 0.0
        draw = self._rng.random()
        if draw < 0.02:
            return self._rng.uniform(*SLOW_SECONDS)
        return self._rng.uniform(0.0, 0.3) if draw < 0.6 else 0.0

    @staticmethod
    def _end_as_planned(place: str, operation: str, *, before: bool) -> None:
        plan = PLAN.get()
        if plan is None or not plan.due(before):
            return
        when = "before" if before else "after"
        if plan.crash:
            raise Crashed(f"crashed {when} {place}.{operation}")
        raise ConnectionResetError(f"connection lost {when} {place}.{operation}")
