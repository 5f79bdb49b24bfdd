"""Each aggregate's events in version order for a sink that asks for it, though the outbox's
read order (txid, id) may put a later version first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.base import Delivery, EventEnvelope, Health
from gateway.postgres.outbox import StoredEvent
from gateway.relay import Relay
from gateway.relay.ordering import highest_versions, in_version_order, needs_version_order
from tests import relay_settings
from tests.unit.relay_fakes import InMemoryRelayStorage, envelope

FAST = relay_settings.FAST.model_copy(
    update={"batch_size": 10, "poll_interval_seconds": 0.01, "batches_in_flight": 4}
)


class LogSink:
    """Records every event it is given, in order, as a log would; says whether two applies
    ever ran at once."""

    def __init__(self, name: str, *, ordered: bool) -> None:
        self._name = name
        self.needs_version_order = ordered
        self.log: list[tuple[str, int]] = []
        self.applying = 0
        self.overlapped = False

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def health(self) -> Health:
        return Health(True, "ok")

    async def apply(self, batch: Sequence[EventEnvelope]) -> list[Delivery]:
        self.applying += 1
        self.overlapped |= self.applying > 1
        await asyncio.sleep(0.001)
        self.log += [(e.aggregate_id, e.version) for e in batch]
        self.applying -= 1
        return [Delivery.ok()] * len(batch)

    def first_appearances(self, aggregate_id: str) -> list[int]:
        seen: list[int] = []
        for aggregate, version in self.log:
            if aggregate == aggregate_id and version not in seen:
                seen.append(version)
        return seen


def stored(number: int, aggregate_id: str, version: int, partition: int = 0) -> StoredEvent:
    return StoredEvent(number, number, partition, envelope(aggregate_id, version, sequence=number))


def inverted_outbox() -> InMemoryRelayStorage:
    """Order x's version 3 sits before its version 2 in read order, more than a batch apart;
    order y's versions 2 and 1 are inverted within one batch."""
    storage = InMemoryRelayStorage()
    storage.events = [
        stored(1, "x", 1),
        stored(2, "y", 2),
        stored(3, "x", 3),
        stored(4, "y", 1),
        *(stored(n, f"filler{n}", 1, partition=n % 4) for n in range(5, 25)),
        stored(25, "x", 2),
        stored(26, "x", 4),
    ]
    return storage


async def drain(storage: InMemoryRelayStorage, sink: LogSink) -> None:
    relay = Relay(None, None, [sink], FAST, storage=storage)
    await asyncio.wait_for(relay.run(until_idle=True), 30)


async def test_a_version_ordered_sink_sees_each_aggregates_versions_in_order() -> None:
    storage = inverted_outbox()
    sink = LogSink("log", ordered=True)

    await drain(storage, sink)

    assert sink.first_appearances("x") == [1, 2, 3, 4]
    assert sink.first_appearances("y") == [1, 2]
    # Version 2 of x went out early, and again when the relay reached its place.
    assert sink.log.count(("x", 2)) == 2
    assert not sink.overlapped  # one batch at a time
    assert storage.delivered[sink.name] == len(storage.events) + 1


async def test_a_sink_that_does_not_ask_gets_the_read_order() -> None:
    storage = inverted_outbox()
    sink = LogSink("store", ordered=False)

    await drain(storage, sink)

    assert sink.first_appearances("x") == [1, 3, 2, 4]
    assert sink.first_appearances("y") == [2, 1]


def test_each_aggregates_events_are_sorted_by_version_and_kept_once() -> None:
    events = [stored(1, "a", 3), stored(2, "b", 1), stored(3, "a", 1), stored(4, "a", 2)]
    ordered = in_version_order([*events, events[0]])
    assert [(e.envelope.aggregate_id, e.envelope.version) for e in ordered] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 1),
    ]


def test_earlier_versions_are_looked_up_below_each_aggregates_highest() -> None:
    events = [stored(1, "a", 3), stored(2, "b", 1), stored(3, "a", 5), stored(4, "c", 2)]
    # An aggregate seen only at version 1 has no earlier version to look up.
    assert highest_versions(events) == {"a": 5, "c": 2}


def test_only_a_sink_that_says_so_needs_version_order() -> None:
    assert needs_version_order(LogSink("log", ordered=True))
    assert not needs_version_order(LogSink("log", ordered=False))
    assert not needs_version_order(object())
