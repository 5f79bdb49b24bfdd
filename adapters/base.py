"""The sink interface: what the relay needs from a store, and nothing more.

A sink knows its client library and how to apply a batch of events idempotently; it knows
nothing of PostgreSQL or the outbox. Retries, batching and dead letters belong to the relay.

Which writes an event becomes in a store is decided by a *projection*: a plain function from an
:class:`EventEnvelope` to that store's write (or ``None``: the event means nothing there).
Projections are registered per sink by event type, so a service embedding the gateway can add
its own without touching the sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable
from uuid import UUID

W = TypeVar("W")

log = logging.getLogger("adapters")


class EventEnvelope(NamedTuple):
    """One event as a sink receives it.

    ``version`` is the aggregate's version after the change: a sink keeps, per aggregate, the
    highest version it has applied and ignores anything older or equal. ``sequence`` is the
    event's unique number in the outbox (not its delivery order).

    A named tuple, immutable like a frozen dataclass but about three times faster to build:
    the relay builds one per event it reads.
    """

    event_id: UUID
    sequence: int
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    payload: dict[str, Any]
    headers: dict[str, str]
    occurred_at: datetime


class Outcome(StrEnum):
    """What became of one event in one sink."""

    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one event, with the error for failures."""

    outcome: Outcome
    error: str | None = None
    attempted: bool = True
    """False for an event the sink did not try (see :meth:`held`)."""

    @classmethod
    def ok(cls) -> Delivery:
        """Applied, or already applied (an older or equal version)."""
        return _DELIVERED

    @classmethod
    def transient(cls, error: str) -> Delivery:
        """Failed for a reason that may pass (connection lost, timeout, overload)."""
        return cls(Outcome.TRANSIENT, error)

    @classmethod
    def held(cls, error: str) -> Delivery:
        """Not tried, because an earlier event of its aggregate failed in this batch (a sink
        keeping each aggregate's order): retried like a transient failure, but the attempt is
        not the event's own, so it does not count toward its dead-letter limit."""
        return cls(Outcome.TRANSIENT, error, attempted=False)

    @classmethod
    def permanent(cls, error: str) -> Delivery:
        """Failed for a reason that retrying cannot fix (a mapping or validation error)."""
        return cls(Outcome.PERMANENT, error)


_DELIVERED = Delivery(Outcome.DELIVERED)


@dataclass(frozen=True)
class Health:
    """Whether the store answers, and what it said."""

    ok: bool
    detail: str


@runtime_checkable
class Sink(Protocol):
    """A store the relay delivers events to."""

    @property
    def name(self) -> str:
        """The sink's name, unique within a relay (it keys positions and dead letters)."""
        ...

    async def start(self) -> None:
        """Connect and prepare the store (indexes, mappings); safe to call again."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def health(self) -> Health:
        """Ask the store whether it answers."""
        ...

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        """Apply a batch idempotently; return one :class:`Delivery` per event, in order.

        The relay may call it again before an earlier call has returned (up to
        ``relay.batches_in_flight`` calls at once), with a newer version of the same aggregate:
        the version guard makes the order in which the writes land irrelevant. The events,
        payloads included, are shared with the relay's other sinks: read them, never change
        them.
        """
        ...


Projection = Callable[[EventEnvelope], W | None]


@dataclass
class Projections(Generic[W]):
    """The projections of one sink, by aggregate type and event type.

    An event is projected only when both match: another aggregate's event of the same type
    (the catalog's ``inventory.released`` of a reservation, say, beside an order's) is none of
    this projection's business.
    """

    by_event_type: dict[tuple[str, str], Projection[W]] = field(default_factory=dict)

    def register(
        self, event_type: str, projection: Projection[W], *, aggregate_type: str = "order"
    ) -> None:
        """Use ``projection`` for events of ``event_type`` of ``aggregate_type`` aggregates
        (replacing any earlier one)."""
        self.by_event_type[(aggregate_type, event_type)] = projection

    def project(self, event: EventEnvelope) -> W | None:
        """The write for ``event``, or ``None`` when this sink has nothing to do with it.

        Raises whatever the projection raises; :meth:`try_project` turns that into a failure.
        """
        projection = self.by_event_type.get((event.aggregate_type, event.event_type))
        return projection(event) if projection is not None else None

    def try_project(self, event: EventEnvelope) -> W | Delivery | None:
        """Like :meth:`project`, but a projection that raises, whatever it raises, gives a
        permanent failure of this event (logged): retrying cannot fix a projection."""
        try:
            return self.project(event)
        except Exception as error:
            log.warning(
                "projection of %s event %s failed: %r", event.event_type, event.event_id, error
            )
            return Delivery.permanent(f"projection failed: {type(error).__name__}: {error}")

    def project_batch(
        self, batch: Sequence[EventEnvelope], results: list[Delivery]
    ) -> list[tuple[int, W]]:
        """The write of each event of ``batch`` that has one, with the event's index.

        An event whose projection raises is recorded in ``results`` as a permanent failure;
        the rest of the batch goes on.
        """
        writes: list[tuple[int, W]] = []
        for index, event in enumerate(batch):
            write = self.try_project(event)
            if isinstance(write, Delivery):
                results[index] = write
            elif write is not None:
                writes.append((index, write))
        return writes
