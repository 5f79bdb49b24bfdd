"""The event loop the load test's processes run on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def fast_loop_factory() -> LoopFactory | None:
    """uvloop's loop where it is installed, else ``None`` (asyncio's own): the load test's CPU
    counts against what it measures."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
