"""An in-process sink: keeps the latest version of each aggregate in memory.

For tests and demos. It can be told to fail (transiently or permanently, for some events or
all), to be down, or to be slow, and can append every delivery to a JSON-lines journal so a
test can see what a relay process applied before it was killed.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters.base import Delivery, EventEnvelope, Health, Outcome, Projections
from adapters.projections import ORDER_EVENT_TYPES, order_summary
from adapters.readback import OrderSpan, ProjectedOrder

EventFilter = Callable[[EventEnvelope], bool]


@dataclass(frozen=True)
class MemoryWrite:
    """One aggregate's document at a version."""

    key: str
    version: int
    document: dict[str, Any]


def order_write(event: EventEnvelope) -> MemoryWrite:
    """The memory sink's projection of an order event: its summary, keyed by order id."""
    return MemoryWrite(f"order:{event.aggregate_id}", event.version, order_summary(event))


def default_projections() -> Projections[MemoryWrite]:
    """Order events projected to their summaries."""
    projections: Projections[MemoryWrite] = Projections()
    for event_type in ORDER_EVENT_TYPES:
        projections.register(event_type, order_write)
    return projections


@dataclass
class _Failure:
    outcome: Outcome
    remaining: int | None  # None: until cleared
    matches: EventFilter
    error: str


class MemorySink:
    """A sink holding ``key -> (version, document)``, version-guarded."""

    def __init__(
        self,
        name: str = "memory",
        *,
        projections: Projections[MemoryWrite] | None = None,
        journal_path: Path | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        self._name = name
        self.projections = projections if projections is not None else default_projections()
        self.state: dict[str, tuple[int, dict[str, Any]]] = {}
        self.deliveries: list[UUID] = []
        self.delay_seconds = delay_seconds
        self.down = False
        self._failures: list[_Failure] = []
        self._journal_path = journal_path
        self._journal: int | None = None

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    async def start(self) -> None:
        """Open the journal, if one is configured."""
        if self._journal_path is not None and self._journal is None:
            self._journal_path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    async def close(self) -> None:
        """Close the journal."""
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None

    async def health(self) -> Health:
        """Down when told to be."""
        return Health(False, "told to be down") if self.down else Health(True, "in memory")

    def fail(
        self,
        outcome: Outcome,
        *,
        times: int | None = None,
        matching: EventFilter | None = None,
        error: str = "injected failure",
    ) -> None:
        """Fail the next ``times`` matching events (``None``: until :meth:`heal`)."""
        self._failures.append(_Failure(outcome, times, matching or (lambda _: True), error))

    def heal(self) -> None:
        """Forget every injected failure and come back up."""
        self._failures.clear()
        self.down = False

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """Apply each event whose version is newer than the stored one."""
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.down:
            return [Delivery.transient("memory sink is down") for _ in batch]
        results: list[Delivery] = []
        journal_lines: list[str] = []
        for event in batch:
            failure = self._injected_failure(event)
            if failure is not None:
                results.append(failure)
                continue
            write = self.projections.try_project(event)
            if isinstance(write, Delivery):
                results.append(write)
                continue
            if write is not None:
                stored = self.state.get(write.key)
                if stored is None or stored[0] < write.version:
                    self.state[write.key] = (write.version, write.document)
                journal_lines.append(
                    json.dumps(
                        {
                            "event_id": str(event.event_id),
                            "key": write.key,
                            "version": write.version,
                            "document": write.document,
                        }
                    )
                )
            self.deliveries.append(event.event_id)
            results.append(Delivery.ok())
        if self._journal is not None and journal_lines:
            self._append_to_journal(self._journal, "\n".join(journal_lines) + "\n")
        return results

    @staticmethod
    def _append_to_journal(journal: int, text: str) -> None:
        # One append per batch: a process killed between batches leaves only whole lines.
        data = text.encode()
        while data:
            data = data[os.write(journal, data) :]

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The stored summary of each of the ``orders``."""
        found: dict[str, ProjectedOrder] = {}
        for order_id in orders:
            stored = self.state.get(f"order:{order_id}")
            if stored is not None:
                found[order_id] = ProjectedOrder(stored[0], stored[1]["status"], stored[1]["total"])
        return found

    async def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every order id held, in batches."""
        ids = sorted(key.removeprefix("order:") for key in self.state if key.startswith("order:"))
        for start in range(0, len(ids), batch_size):
            yield ids[start : start + batch_size]

    def _injected_failure(self, event: EventEnvelope) -> Delivery | None:
        for failure in self._failures:
            if failure.matches(event):
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                return Delivery(failure.outcome, failure.error)
        return None
