"""Watching the chaos run's processes: one that ends on its own fails the run at once, named,
rather than showing later as a drain that never finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from bench.chaos.processes import FanoutProcess

T = TypeVar("T")

LOG_LINES_SHOWN = 20


@dataclass(frozen=True)
class ProcessState:
    """One process as last seen."""

    name: str
    returncode: int | None
    """``None`` while it runs (or before it first started)."""
    held_down: bool
    """Whether the fault schedule killed it and is to start it again."""


class ProcessEnded(RuntimeError):
    """A process of the run ended without a fault ending it."""


def ended_on_their_own(states: Iterable[ProcessState]) -> list[str]:
    """The names of the processes that ended though no fault holds them down."""
    return [s.name for s in states if s.returncode is not None and not s.held_down]


async def watch(processes: Sequence[FanoutProcess], interval_seconds: float = 1.0) -> NoReturn:
    """Check every process each ``interval_seconds``; raise :class:`ProcessEnded`, naming each
    one that ended on its own with its exit code and the end of its log."""
    by_name = {process.name: process for process in processes}
    while True:
        await asyncio.sleep(interval_seconds)
        ended = ended_on_their_own(state_of(process) for process in processes)
        if ended:
            raise ProcessEnded("; ".join(describe_end(by_name[name]) for name in ended))


def state_of(process: FanoutProcess) -> ProcessState:
    """``process`` as it is now."""
    return ProcessState(process.name, process.returncode, process.held_down)


def describe_end(process: FanoutProcess) -> str:
    """``process``'s name, exit code and the last lines of its log."""
    return (
        f"{process.name} exited on its own with code {process.returncode}; "
        f"{process.log_path} ends:\n{process.log_tail(LOG_LINES_SHOWN)}"
    )


async def watched(work: Awaitable[T], processes: Sequence[FanoutProcess]) -> T:
    """``work``'s result, unless a process ends on its own first: then ``work`` is cancelled
    and :class:`ProcessEnded` raised at once, naming it."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(watch(processes))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if watcher.done() and not watcher.cancelled():
        watcher.result()  # raises ProcessEnded
    return task.result()
