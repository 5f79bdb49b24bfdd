"""Drift between the outbox and a log sink (Kafka): every event the relay has passed is
published, and each aggregate's events first appear in version order.

The outbox's retained events are held in memory (an id and a flag each), and the topics are
read from their beginning to their current end, a fetch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import asyncpg

from adapters.readback import PublishedEvent, PublishedLog
from gateway.operations.store_reads import StoreUnreadable, read_batches
from gateway.postgres.queries import query


class LogDriftCounts(TypedDict):
    """How one log sink compares with the outbox, as JSON."""

    sink: str
    matched: int
    missing: int
    out_of_order: int
    repeated: int
    not_retained: int
    unreadable: str | None
    clean: bool


@dataclass
class LogOrder:
    """Per key, the highest version that has appeared, and the events seen: a record whose
    event was seen before is a repeat; one below its key's highest version is out of order."""

    highest: dict[tuple[str, str], int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def observe(self, record: PublishedEvent) -> str:
        """``"repeat"``, ``"out_of_order"`` or ``"in_order"``."""
        if record.event_id in self.seen:
            return "repeat"
        self.seen.add(record.event_id)
        key = (record.topic, record.key)
        highest = self.highest.get(key, 0)
        if record.version < highest:
            return "out_of_order"
        self.highest[key] = record.version
        return "in_order"


@dataclass
class LogDrift:
    """How a log sink's topics compare with the outbox."""

    sink: str
    matched: int = 0
    missing: int = 0
    """Events the relay has passed (and not dead-lettered) that no record holds."""
    out_of_order: int = 0
    """Records that first appear after a higher version of their aggregate."""
    repeated: int = 0
    """Records of an event already published (redeliveries: consumers drop them)."""
    not_retained: int = 0
    """Records of events no longer in the outbox (pruned), or of another outbox."""
    unreadable: str | None = None
    """How reading the topics failed, which stopped the comparison (the counts are partial)."""

    @property
    def clean(self) -> bool:
        """The topics were read, and nothing is missing or out of order."""
        return not (self.missing or self.out_of_order or self.unreadable)

    def counts(self) -> LogDriftCounts:
        """The counts, and whether the sink is clean."""
        return {
            "sink": self.sink,
            "matched": self.matched,
            "missing": self.missing,
            "out_of_order": self.out_of_order,
            "repeated": self.repeated,
            "not_retained": self.not_retained,
            "unreadable": self.unreadable,
            "clean": self.clean,
        }


async def verify_log(
    pool: asyncpg.Pool | Sequence[asyncpg.Pool], sink_name: str, sink: PublishedLog
) -> LogDrift:
    """Compare the outbox's retained events (of one database, or of every database of a
    sharded deployment) with what ``sink``'s topics hold. A failure to read the topics ends
    the comparison with the drift's ``unreadable`` set."""
    pools = [pool] if isinstance(pool, asyncpg.Pool) else list(pool)
    expected: dict[str, bool] = {}
    topics: set[str] = set()
    for source in pools:
        async with source.acquire() as connection, connection.transaction(readonly=True):
            async for row in connection.cursor(query("outbox_events_for_log_check"), sink_name):
                topic = sink.topic_for(row["aggregate_type"])
                if topic is None:
                    continue
                topics.add(topic)
                expected[row["event_id"]] = row["expected"]
    drift = LogDrift(sink_name)
    order = LogOrder()
    try:
        async for records in read_batches(sink.published(topics)):
            for record in records:
                seen = order.observe(record)
                if seen == "repeat":
                    drift.repeated += 1
                    continue
                if record.event_id not in expected:
                    drift.not_retained += 1
                if seen == "out_of_order":
                    drift.out_of_order += 1
    except StoreUnreadable as failure:
        drift.unreadable = str(failure)
        return drift
    for event_id, should_be_there in expected.items():
        if event_id in order.seen:
            drift.matched += 1
        elif should_be_there:
            drift.missing += 1
    return drift
