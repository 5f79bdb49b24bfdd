"""Reading a store's projection back, for ``fanout verify``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ProjectedOrder:
    """What a store holds of one order: enough to compare with PostgreSQL."""

    version: int
    status: str
    total: str


@dataclass(frozen=True)
class OrderSpan:
    """When an order was created and last changed in PostgreSQL: its first and latest event."""

    created_at: datetime
    updated_at: datetime


@runtime_checkable
class ReadBack(Protocol):
    """A sink whose projection of orders can be read back."""

    async def projected_orders(self, orders: Mapping[str, OrderSpan]) -> dict[str, ProjectedOrder]:
        """The projection the store holds of each order (absent ones are left out).

        ``orders`` maps each order id to the times of its first and latest event, for stores
        that find points by time.
        """
        ...

    def projected_ids(self, batch_size: int) -> AsyncIterator[list[str]]:
        """Every order id the store holds, in batches (for finding extras)."""
        ...


@dataclass(frozen=True)
class PublishedEvent:
    """What a log (a Kafka topic) holds of one event, for ``fanout verify``."""

    topic: str
    partition: int
    key: str
    event_id: str
    version: int


@runtime_checkable
class PublishedLog(Protocol):
    """A sink that publishes events to a log whose records can be read back."""

    def topic_for(self, aggregate_type: str) -> str | None:
        """Where the events of an aggregate type go (None: nowhere)."""
        ...

    def published(self, topics: Iterable[str]) -> AsyncIterator[list[PublishedEvent]]:
        """Every record of ``topics`` up to their current end, in batches; each partition's
        records in offset order."""
        ...


@dataclass(frozen=True)
class RecordPlace:
    """Where a log holds one event's record."""

    topic: str
    partition: int
    offset: int


@runtime_checkable
class RecordFinder(Protocol):
    """A sink that publishes events to a log and can find one event's record in it."""

    def topic_for(self, aggregate_type: str) -> str | None:
        """Where the events of an aggregate type go (None: nowhere)."""
        ...

    async def find_record(
        self,
        aggregate_type: str,
        event_id: str,
        occurred_at: datetime,
        *,
        timeout_seconds: float | None = None,
    ) -> RecordPlace | None:
        """Where the log holds the record of event ``event_id`` (of an aggregate of
        ``aggregate_type``, appended to the outbox at ``occurred_at``); None when it holds
        none (or none near that time). Each wait is bounded by ``timeout_seconds``."""
        ...
