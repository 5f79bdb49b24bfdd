"""The simulation's writers: transactions appending aggregates' next versions to the outbox,
committed in any order (a later-numbered one may commit first), sometimes rolled back."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from gateway.postgres.outbox import StoredEvent
from simulation.faults import Store, choose_event_faults
from simulation.relay_storage import InMemoryRelayStorage, OutboxTransaction, envelope

AGGREGATES = 8


@dataclass
class Writers:
    """Open transactions, and each aggregate's next version."""

    storage: InMemoryRelayStorage
    stores: list[Store]
    rng: random.Random
    open: list[tuple[OutboxTransaction, list[str]]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    committed: list[StoredEvent] = field(default_factory=list)

    def begin(self) -> str:
        """Open a transaction writing the next version of one or two aggregates (an
        aggregate another open transaction writes is locked: it waits)."""
        locked = {aggregate for _, aggregates in self.open for aggregate in aggregates}
        free = [f"a{n}" for n in range(AGGREGATES) if f"a{n}" not in locked]
        if not free:
            return "writers: every aggregate is locked"
        chosen = sorted(self.rng.sample(free, min(len(free), self.rng.choice([1, 1, 2]))))
        transaction = self.storage.begin()
        for aggregate in chosen:
            version = self.versions.get(aggregate, 0) + 1
            self.versions[aggregate] = version
            event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
            transaction.append(envelope(aggregate, version, event_id=event_id))
            for store in self.stores:
                choose_event_faults(self.rng, store, event_id)
        self.open.append((transaction, chosen))
        return f"writers: tx {transaction.txid} opened on {', '.join(chosen)}"

    def end(self) -> str:
        """Commit (rarely roll back) one of the open transactions, not necessarily the oldest."""
        if not self.open:
            return "writers: nothing open"
        transaction, aggregates = self.open.pop(self.rng.randrange(len(self.open)))
        if self.rng.random() < 0.05:
            transaction.abort()
            for aggregate in aggregates:
                self.versions[aggregate] -= 1
            return f"writers: tx {transaction.txid} rolled back"
        self.committed.extend(transaction.commit())
        return f"writers: tx {transaction.txid} committed"

    def lose(self, lost: list[StoredEvent]) -> int:
        """A failover ended every open transaction and lost the committed ``lost``; how many
        open ones ended. Versions go on from the highest written: the simulation checks where
        the relay reads, not what a store makes of a version written twice."""
        ended = len(self.open)
        for _, aggregates in self.open:
            for aggregate in aggregates:
                self.versions[aggregate] -= 1
        self.open.clear()
        gone = {event.envelope.event_id for event in lost}
        self.committed = [e for e in self.committed if e.envelope.event_id not in gone]
        return ended

    def commit_all(self) -> None:
        """Commit every open transaction."""
        while self.open:
            transaction, _ = self.open.pop(0)
            self.committed.extend(transaction.commit())
