"""Everything the relay takes from outside the simulation made to come from the seed: its
random numbers (backoff jitter), its relay ids (``uuid4``), and its clock (the loop's)."""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


class _VirtualTime:
    """Stands for the ``time`` module in the relay's modules: its clocks are the loop's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.monotonic = self.perf_counter = self.time = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _relay_modules() -> list[ModuleType]:
    return [
        module
        for name, module in sorted(sys.modules.items())
        if name.startswith(("gateway.relay", "adapters.")) and getattr(module, "time", None) is time
    ]


@contextmanager
def deterministic(rng: random.Random, clock: Callable[[], float]) -> Iterator[None]:
    """While inside: the global ``random`` seeded from ``rng``, ``uuid.uuid4`` drawn from it,
    and the relay's modules reading ``clock`` as their time."""
    saved_state, saved_uuid4 = random.getstate(), uuid.uuid4
    patched = _relay_modules()
    random.seed(rng.getrandbits(64))
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
    virtual = _VirtualTime(clock)
    for module in patched:
        module.time = virtual  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.time = time  # type: ignore[attr-defined]
        uuid.uuid4 = saved_uuid4
        random.setstate(saved_state)
