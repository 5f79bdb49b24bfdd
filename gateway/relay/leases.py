"""Where leases are taken: which partitions a relay holds for a sink, and where it stands.

Relays share the work by leasing (sink, partition) pairs. The live relays split the partitions
into contiguous blocks by rank of id (:func:`partitions_for`); each relay holds its block for
every one of its sinks, so that its sinks read the same partitions and share their reads.

Invariants kept here:

- A worker moves a partition's position only while it holds that partition's lease; the
  positions it keeps in memory are those of the partitions it holds, and no others.
- Leases are released or claimed (``rebalance``) only between batches, never while a batch of
  a partition given up is in flight: the caller finishes its batches first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway import metrics
from gateway.postgres.outbox import PARTITION_COUNT
from gateway.relay.context import WorkerContext
from gateway.relay.tables import Move, Position

log = logging.getLogger("gateway.relay")


def partitions_for(instance: str, live: Sequence[str]) -> set[int]:
    """The partitions relay ``instance`` is to hold, for every one of its sinks, while the
    relays ``live`` share the work: a contiguous, balanced block per relay, by rank of id.

    Every relay computes the same split from the same list, so the blocks cover each
    partition once, and a relay's sinks hold the same partitions (and share their reads).
    """
    members = sorted({*live, instance})
    rank, count = members.index(instance), len(members)
    return set(range(rank * PARTITION_COUNT // count, (rank + 1) * PARTITION_COUNT // count))


def may_claim(owner: str | None, expires: float | None, claimer: str, now: float) -> bool:
    """Whether ``claimer`` may take a partition whose lease ``owner`` holds until ``expires``:
    no one holds it (it was released, by its owner or because its owner's session ended, see
    :mod:`gateway.relay.sessions`), ``claimer`` holds it already, or it expired (its owner is
    silent, dead or hung, past a lease's life)."""
    return owner is None or owner == claimer or (expires is not None and expires < now)


def relays_serving(live: Iterable[str], stalled: Collection[str]) -> list[str]:
    """The live relays that share a sink's partitions: all but those whose worker for it has
    stalled (they keep their other sinks)."""
    return [relay for relay in live if relay not in stalled]


@dataclass(frozen=True)
class LeaseChanges:
    """What a relay gives up and what it tries to take to hold its block."""

    release: frozenset[int]
    claim: frozenset[int]


def lease_changes(held: set[int], target: set[int]) -> LeaseChanges:
    """Release what is held outside the block; claim what of the block is not held."""
    return LeaseChanges(frozenset(held - target), frozenset(target - held))


class SinkLeases:
    """The partitions one sink's worker holds, and its position in each."""

    def __init__(self, sink: str, context: WorkerContext) -> None:
        self.sink = sink
        self._context = context
        self.owned: set[int] = set()
        self.positions: dict[int, Position] = {}
        self._next_check = 0.0
        self._register_again = False

    def due(self) -> bool:
        """Whether a third of a lease's life has passed since the last renewal."""
        return time.monotonic() >= self._next_check

    async def renew(self) -> None:
        """Extend the leases held; forget those lost (another relay took them)."""
        self._checked()
        settings, storage = self._context.settings, self._context.storage
        owned = await storage.renew_leases(
            self.sink, self._context.instance_id, settings.lease_ttl_seconds
        )
        await self._hold(owned)

    async def rebalance(self) -> None:
        """Renew, then release the partitions outside this relay's block and claim the rest
        of it (call only with no batch in flight)."""
        if self._register_again:
            await self._context.register_sink(self.sink)
            self._register_again = False
        self._checked()
        me, ttl = self._context.instance_id, self._context.settings.lease_ttl_seconds
        storage = self._context.storage
        serving = relays_serving(
            self._context.live_instances(), self._context.stalled_relays(self.sink)
        )
        target = partitions_for(me, serving)
        owned = await storage.renew_leases(self.sink, me, ttl)
        changes = lease_changes(owned, target)
        if changes.release:
            await storage.release_leases(self.sink, me, sorted(changes.release))
            owned -= changes.release
        claimed: set[int] = set()
        if changes.claim:
            claimed = await storage.claim_leases(self.sink, me, sorted(changes.claim), ttl)
            owned |= claimed
        if target - owned:
            # A relay giving these up does so at its next check: try again then, not a third
            # of a lease later (a joining relay gets its block within about one check).
            self._next_check = min(
                self._next_check,
                time.monotonic() + self._context.settings.session_check_interval_seconds,
            )
        await self._hold(owned, claimed)

    def advance(self, moves: Mapping[int, Move]) -> None:
        """Take the positions a batch moved (in memory; the batch's commit records them)."""
        for partition, move in moves.items():
            self.positions[partition] = move.position

    def forget(self, *, server_changed: bool = False) -> None:
        """Drop every lease and position held in memory (a commit found a lease lost, or the
        server changed); after a server change, register the sink again before the next
        claim (a failover may have lost its registration)."""
        self.owned = set()
        self.positions = {}
        self._next_check = 0.0
        self._register_again = self._register_again or server_changed

    def check_soon(self) -> None:
        """Renew at the next chance (after the database came back)."""
        self._next_check = 0.0

    def _checked(self) -> None:
        self._next_check = time.monotonic() + self._context.settings.lease_ttl_seconds / 3

    async def _hold(self, owned: set[int], claimed: set[int] | None = None) -> None:
        # A claimed partition may have been held by another relay, or rewound, since this
        # worker last held it: its position in memory is stale.
        if stale := (claimed or set()) | (owned - set(self.positions)):
            self.positions.update(await self._context.storage.positions(self.sink, sorted(stale)))
        if owned != self.owned:
            log.info("%s: holding partitions %s", self.sink, sorted(owned))
        self.owned = owned
        self.positions = {p: self.positions[p] for p in owned}
        metrics.OWNED_PARTITIONS.labels(self.sink).set(len(owned))
