"""What must hold in the simulated world: after every step, at every commit, and at the end.

Each check returns the violations it found (empty when the rule holds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from gateway.postgres.outbox import StoredEvent
from gateway.relay.tables import Position
from simulation.faults import Store
from simulation.relay_storage import InMemoryRelayStorage


@dataclass
class Ledger:
    """What the simulation knows beside the storage: positions seen, rewinds, commits."""

    positions: dict[tuple[str, int], Position] = field(default_factory=dict)
    owed: dict[tuple[str, UUID], int] = field(default_factory=dict)
    """(store, event id) -> times applied when a rewind asked for it again."""
    violations: list[str] = field(default_factory=list)
    lost: list[StoredEvent] = field(default_factory=list)
    """Committed events a failover lost (a store may have received them)."""

    def rewound(self, sink: str, moves: Mapping[int, Position]) -> None:
        """A rewind moved ``sink``'s positions back: they may be lower from now on."""
        for partition, position in moves.items():
            self.positions[(sink, partition)] = position

    def retired(self, sink: str) -> None:
        """A sink was retired: its positions are gone."""
        for key in [key for key in self.positions if key[0] == sink]:
            del self.positions[key]


def check_commit(
    storage: InMemoryRelayStorage,
    sink: str,
    owner: str,
    moves: Mapping[int, Any],
    committed: bool,
    before: Mapping[str, Any],
) -> list[str]:
    """Leases fence commits: a commit lands only for the holder of every lease it moves, and
    one refused writes nothing."""
    if committed:
        holders = before["leases"]
        strangers = sorted(p for p in moves if holders.get((sink, p)) != owner)
        if strangers:
            return [f"{owner} committed {sink} partitions {strangers} it held no lease on"]
        return []
    after = {key: row.position for key, row in storage.rows.items()}
    if after != before["positions"] or len(storage.dead_letter_rows) != before["dead"]:
        return [f"a refused commit of {owner} on {sink} wrote to the storage"]
    return []


def check_positions_forward(storage: InMemoryRelayStorage, ledger: Ledger) -> list[str]:
    """Positions only move forward, except by a rewind."""
    found = []
    for key, row in storage.rows.items():
        seen = ledger.positions.get(key)
        if seen is not None and row.position < seen:
            found.append(f"position of {key} moved back from {seen} to {row.position}")
        ledger.positions[key] = row.position
    return found


def check_version_order(store: Store) -> list[str]:
    """A store that asks for version order sees each aggregate's versions first arrive in
    increasing order."""
    if not store.ordered:
        return []
    return [
        f"{store.name} first saw {aggregate}'s versions in the order {versions}"
        for aggregate, versions in store.first_versions.items()
        if versions != sorted(versions)
    ]


def check_no_outage_dead_letters(storage: InMemoryRelayStorage) -> list[str]:
    """Events fail transiently fewer times than the attempt limit while their store is up: a
    letter dead for its attempts was counted during an outage."""
    return [
        f"{row.sink} dead-lettered {row.event.envelope.aggregate_id} "
        f"v{row.event.envelope.version} for its attempts during an outage"
        for row in storage.dead_letter_rows
        if row.reason == "attempts_exhausted"
    ]


def check_delivered(
    store: Store, committed: Iterable[StoredEvent], storage: InMemoryRelayStorage, ledger: Ledger
) -> list[str]:
    """At the end: every committed event reached the store or its dead letters; the store
    holds each aggregate's latest version it could take (a version a failover lost counts
    once the store received it); every rewound event came again."""
    found = []
    dead = {
        row.event.envelope.event_id for row in storage.dead_letter_rows if row.sink == store.name
    }
    latest: dict[str, int] = {}
    for event in ledger.lost:
        if event.envelope.event_id in store.seen:
            aggregate = event.envelope.aggregate_id
            latest[aggregate] = max(latest.get(aggregate, 0), event.envelope.version)
    for event in committed:
        envelope = event.envelope
        if envelope.event_id in store.permanent:
            if envelope.event_id not in dead:
                found.append(
                    f"{store.name}: rejected {envelope.aggregate_id} v{envelope.version} "
                    "not dead-lettered"
                )
            continue
        latest[envelope.aggregate_id] = max(latest.get(envelope.aggregate_id, 0), envelope.version)
        if envelope.event_id not in store.seen and envelope.event_id not in dead:
            found.append(
                f"{store.name}: {envelope.aggregate_id} v{envelope.version} (outbox id "
                f"{event.id}, partition {event.partition}) never delivered"
            )
    for aggregate, version in sorted(latest.items()):
        if store.state.get(aggregate, 0) != version:
            found.append(
                f"{store.name}: {aggregate} at v{store.state.get(aggregate, 0)}, "
                f"expected v{version}"
            )
    for (name, event_id), times in ledger.owed.items():
        if name == store.name and store.seen.get(event_id, 0) <= times:
            found.append(f"{store.name}: event {event_id} rewound but not delivered again")
    return found
