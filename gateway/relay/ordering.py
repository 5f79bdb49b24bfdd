"""Each aggregate's events in version order, for sinks that publish a log (Kafka).

The relay reads the outbox in ``(txid, id)`` order, which is not quite the order in which
transactions commit: a transaction may take its id, wait for an aggregate's lock, and write the
aggregate's next version after a transaction with a higher id wrote the previous one. A
version-guarded store absorbs that; a consumer of a log would see version 3 before version 2.

So for a sink that asks for it, each batch is completed and sorted before it is applied: the
aggregates' earlier versions that lie past the batch (committed, as the later version was
written after them) are added to it, and each aggregate's events are put in version order.
An event added early is delivered again when the relay reaches its position: a repeat, never
an inversion. Such a sink also gets one batch at a time, so batches cannot overtake each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from gateway.postgres.outbox import StoredEvent

AggregateKey = tuple[str, str]
"""``(aggregate_type, aggregate_id)``."""


@runtime_checkable
class VersionOrdered(Protocol):
    """A sink that asks for each aggregate's events in version order."""

    @property
    def needs_version_order(self) -> bool:
        """Whether the relay must hand it each aggregate's events in version order."""
        ...


def needs_version_order(sink: object) -> bool:
    """Whether ``sink`` asks for each aggregate's events in version order."""
    return isinstance(sink, VersionOrdered) and sink.needs_version_order


def highest_versions(events: Iterable[StoredEvent]) -> dict[str, int]:
    """Each aggregate id's highest version among ``events``, when above 1: any of its
    versions below that which lies past the batch must be published first. (Versions start
    at 1, so an aggregate seen only at version 1 has none before it.)"""
    highest: dict[str, int] = {}
    for event in events:
        aggregate_id, version = event.envelope.aggregate_id, event.envelope.version
        if version > highest.get(aggregate_id, 1):
            highest[aggregate_id] = version
    return highest


def in_version_order(events: Iterable[StoredEvent]) -> list[StoredEvent]:
    """``events`` with each aggregate's in version order (ties by position), aggregates in
    the order they first appear; a repeated event (same outbox id) is kept once."""
    by_aggregate: dict[AggregateKey, list[StoredEvent]] = {}
    seen: set[int] = set()
    for event in events:
        if event.id in seen:
            continue
        seen.add(event.id)
        key = (event.envelope.aggregate_type, event.envelope.aggregate_id)
        by_aggregate.setdefault(key, []).append(event)
    return [
        event
        for group in by_aggregate.values()
        for event in sorted(group, key=lambda e: (e.envelope.version, e.position))
    ]
