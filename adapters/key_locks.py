"""Holding several keys at once within one process: a writer waits until none of its keys is
held by another, then holds them all (all or nothing, so two writers cannot deadlock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class KeyLocks:
    """Mutual exclusion per key, for writers that each touch a set of keys."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._released = asyncio.Condition()

    @asynccontextmanager
    async def holding(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold ``keys`` for the ``async with`` block, once no other holder has any of them."""
        wanted = set(keys)
        async with self._released:
            await self._released.wait_for(lambda: self._held.isdisjoint(wanted))
            self._held |= wanted
        try:
            yield
        finally:
            async with self._released:
                self._held -= wanted
                self._released.notify_all()
