"""When a worker has stalled: a call into its sink outlived its timeout by a lease's life.

Every call into a sink is bounded, and a call past its bound is cancelled. A call still
running a lease's life after that could not be interrupted (a client that ignores
cancellation, a driver blocked inside); the process stops renewing that worker's leases, and
stops counting itself among the relays that serve its sink, so that another relay takes its
partitions.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator


def keeps_leases(earliest_deadline: float | None, now: float, lease_ttl_seconds: float) -> bool:
    """Whether a worker's leases are still to be renewed: unless one of its sink calls, due
    to end by ``earliest_deadline``, is still running a lease's life after it (None: no
    call is running)."""
    return earliest_deadline is None or now < earliest_deadline + lease_ttl_seconds


class SinkCallWatch:
    """The deadlines of the calls into one sink still running."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[int, float] = {}
        self._numbers = itertools.count()

    @contextlib.contextmanager
    def call(self, timeout_seconds: float) -> Iterator[None]:
        """Count a call as running, due within ``timeout_seconds``, until the block ends."""
        number = next(self._numbers)
        self._deadlines[number] = self._clock() + timeout_seconds
        try:
            yield
        finally:
            del self._deadlines[number]

    def earliest_deadline(self) -> float | None:
        """When the oldest-due call still running was to have ended (None: none runs)."""
        return min(self._deadlines.values(), default=None)

    def keeps_leases(self, lease_ttl_seconds: float) -> bool:
        """Whether the worker making these calls keeps its leases (see :func:`keeps_leases`)."""
        return keeps_leases(self.earliest_deadline(), self._clock(), lease_ttl_seconds)
