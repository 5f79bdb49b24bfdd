"""What a sink's worker needs of the relay process it runs in, and nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

from gateway.backoff import Backoff
from gateway.configuration.settings import RelaySettings
from gateway.relay.read_ahead import OutboxReads
from gateway.relay.storage import RelayStorage


async def _registered() -> None:
    return None


def database_backoff(settings: RelaySettings) -> Backoff:
    """The backoff between attempts to reach PostgreSQL again: the relay's own, capped at
    ``database_retry_max_seconds``, so that a worker or the LISTEN connection is never asleep
    for long when a restarted or newly promoted primary takes writes again."""
    ceiling = min(settings.backoff_max_seconds, settings.database_retry_max_seconds)
    return Backoff(settings.backoff_initial_seconds, ceiling)


@dataclass(frozen=True)
class WorkerContext:
    """The process's storage, reads, settings and identity, shared by its workers."""

    storage: RelayStorage
    reads: OutboxReads
    settings: RelaySettings
    backoff: Backoff
    instance_id: str
    stopping: asyncio.Event
    """Set when the process is asked to stop."""
    live_instances: Callable[[], Sequence[str]]
    """The relays sharing the partitions, as of the process's last heartbeat."""
    stalled_relays: Callable[[str], Collection[str]] = field(default=lambda sink: frozenset())
    """Those of them whose worker for a sink has stalled, as of the last heartbeat: they no
    longer serve it."""
    register_sink: Callable[[str], Awaitable[None]] = field(default=lambda sink: _registered())
    """Registers a sink's positions again, if a failover lost them (from the outbox's
    beginning: nothing the new primary took is skipped)."""

    @property
    def database_backoff(self) -> Backoff:
        """The backoff between attempts to reach PostgreSQL again (:func:`database_backoff`)."""
        return database_backoff(self.settings)

    async def pause(self, seconds: float, wakeup: asyncio.Event | None = None) -> None:
        """Sleep up to ``seconds``; a stop request (or ``wakeup``, if given) ends it early."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if wakeup is not None:
            waits.append(asyncio.ensure_future(wakeup.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
