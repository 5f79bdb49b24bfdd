"""Virtual time for asyncio: an event loop whose clock moves only when every task waits.

When no callback is ready, the loop would block in its selector until the next timer; the
virtual selector instead moves the clock to that timer at once. A sleep of an hour takes no
real time, and the same program always sees the same times.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from typing import Any


class Stalled(Exception):
    """Every task waits for something no timer will bring: the simulated world is stuck."""


class VirtualSelector(selectors.BaseSelector):
    """A selector with no I/O: waiting ``timeout`` seconds moves :attr:`now` by as much."""

    def __init__(self) -> None:
        self.now = 0.0
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Stalled("every task waits and no timer is set")
        self.now += max(timeout, 0.0)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (:meth:`jump` moves it on at once)."""

    def __init__(self) -> None:
        self._virtual = VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def jump(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` at once (as if every process had stalled)."""
        self._virtual.now += seconds
