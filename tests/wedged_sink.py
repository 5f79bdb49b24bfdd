"""A memory sink whose calls never return on their own, for the tests of a relay stuck in a
sink call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.base import Delivery, EventEnvelope
from adapters.memory import MemorySink


class WedgedSink(MemorySink):
    """A sink whose ``apply`` ignores cancellation until ``release`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        self.entered.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue  # a call the relay's timeout cannot interrupt
        return await super().apply(batch)
