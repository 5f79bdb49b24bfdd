"""``python -m simulation.mutants [--saga]``: put known relay defects (the saga's, with
``--saga``, see ``saga_mutants``) back, one at a time, by patching the real modules in this
process, and count the seeds the simulation needs to find each.

A defect the simulation does not find within ``--max-seeds`` is reported as missed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from adapters.base import Delivery, EventEnvelope, Sink
from gateway.postgres.outbox import PARTITION_COUNT
from gateway.relay import leases, pipeline, retries, sink_calls, stalls
from gateway.relay.tables import DeadLetter, Move, Position
from simulation.relay_storage import InMemoryRelayStorage
from simulation.saga_mutants import SAGA_MUTANTS, saga_seeds_to_find
from simulation.world import Faults, simulate


@dataclass(frozen=True)
class Mutant:
    """A defect, how to put it back, and the faults that can reveal it."""

    name: str
    patch: Callable[[], AbstractContextManager[Any]]
    faults: Faults


@contextmanager
def none() -> Iterator[None]:
    """The relay as it is."""
    yield


def reads_past_running_transactions() -> AbstractContextManager[Any]:
    """(a) Read every committed event past the position, as ``id > last_seen`` would: a
    transaction still running is passed over, and its events skipped once it commits."""
    return mock.patch.object(InMemoryRelayStorage, "snapshot_xmin", lambda self: 2**62)


def outage_counts_attempts() -> AbstractContextManager[Any]:
    """(b) Count the failures of an outage toward the dead-letter limit."""
    judge = retries.judge

    def counting(*args: Any, **kwargs: Any) -> retries.Verdict:
        return judge(*args, **{**kwargs, "store_down": False})

    return mock.patch.object(retries, "judge", counting)


def misaligned_split() -> AbstractContextManager[Any]:
    """(c) Blocks that leave a gap when several relays share the partitions."""

    def with_gap(instance: str, live: Sequence[str]) -> set[int]:
        members = sorted({*live, instance})
        rank, count = members.index(instance), len(members)
        end = (rank + 1) * PARTITION_COUNT // count
        return set(range(rank * PARTITION_COUNT // count, end - (1 if count > 1 else 0)))

    return mock.patch.object(leases, "partitions_for", with_gap)


def positions_kept_across_loss() -> AbstractContextManager[Any]:
    """(d) Keep a lost partition's position in memory and use it when it is held again."""

    async def hold(
        self: leases.SinkLeases, owned: set[int], claimed: set[int] | None = None
    ) -> None:
        if unknown := owned - set(self.positions):
            storage = self._context.storage
            self.positions.update(await storage.positions(self.sink, sorted(unknown)))
        self.owned = owned

    return mock.patch.object(leases.SinkLeases, "_hold", hold)


def rewind_keeps_expired_leases() -> AbstractContextManager[Any]:
    """(d') A rewind leaves the moved partitions' expired leases, which their relay then renews
    with its position still in memory."""

    def rewind(
        self: InMemoryRelayStorage, sink: str, moves: Mapping[int, Position]
    ) -> dict[int, Position]:
        kept = {key: lease for key, lease in self.leases.items() if key[0] == sink}
        moved = original(self, sink, moves)
        self.leases.update(kept)
        return moved

    original = InMemoryRelayStorage.rewind
    return mock.patch.object(InMemoryRelayStorage, "rewind", rewind)


def reads_across_failover() -> AbstractContextManager[Any]:
    """(f) A batch read from a new server (after a failover that lost the last commits) is
    read after, and applied from, the positions in memory (only the commit's check of where a
    position stands is left)."""
    return mock.patch.object(pipeline.BatchPipeline, "_server_changed", lambda self: False)


def commits_on_any_server_run() -> AbstractContextManager[Any]:
    """(g) A batch read from the old primary commits on the new one (held through the
    failover by a slow store or a retry), from a position the new primary holds too."""

    async def commit_batch(
        self: InMemoryRelayStorage,
        sink: str,
        owner: str,
        moves: Mapping[int, Move],
        dead: Sequence[DeadLetter],
        *,
        server: int | None = None,
    ) -> bool:
        return await original(self, sink, owner, moves, dead)

    original = InMemoryRelayStorage.commit_batch
    return mock.patch.object(InMemoryRelayStorage, "commit_batch", commit_batch)


@contextmanager
def positions_kept_across_failover() -> Iterator[None]:
    """(f') Neither a fresh read of the positions once the server changed nor the commit's
    checks of where a position stands and of the server run: positions in memory outlive a
    lossy failover."""

    async def commit_batch(
        self: InMemoryRelayStorage,
        sink: str,
        owner: str,
        moves: Mapping[int, Move],
        dead: Sequence[DeadLetter],
        *,
        server: int | None = None,
    ) -> bool:
        anywhere = {p: move._replace(since=None) for p, move in moves.items()}
        return await original(self, sink, owner, anywhere, dead)

    original = InMemoryRelayStorage.commit_batch
    with (
        reads_across_failover(),
        mock.patch.object(InMemoryRelayStorage, "commit_batch", commit_batch),
    ):
        yield


@contextmanager
def unbounded_sink_calls() -> Iterator[None]:
    """(e) A sink call has no timeout, and a worker stuck in one keeps renewing its leases."""
    original = sink_calls.apply_safely

    async def apply_safely(
        sink: Sink, batch: Sequence[EventEnvelope], *, timeout_seconds: float | None = None
    ) -> list[Delivery]:
        return await original(sink, batch)

    with (
        mock.patch.object(sink_calls, "apply_safely", apply_safely),
        mock.patch.object(stalls, "keeps_leases", lambda *_: True),
    ):
        yield


MUTANTS = [
    Mutant("as it is, with every fault", none, Faults()),
    Mutant(
        "(a) skip: reads past running transactions",
        reads_past_running_transactions,
        Faults(hangs=False, rewinds=False),
    ),
    Mutant(
        "(b) an outage counts attempts", outage_counts_attempts, Faults(hangs=False, rewinds=False)
    ),
    Mutant("(c) a misaligned lease split", misaligned_split, Faults(hangs=False, rewinds=False)),
    Mutant(
        "(d) positions kept across a lease's loss",
        positions_kept_across_loss,
        Faults(hangs=False, rewinds=True),
    ),
    Mutant(
        "(d') a rewind leaves expired leases",
        rewind_keeps_expired_leases,
        Faults(hangs=False, rewinds=True),
    ),
    Mutant(
        "(f) a batch read from a new server applied",
        reads_across_failover,
        Faults(hangs=False, rewinds=False),
    ),
    Mutant(
        "(g) a batch commits on another server run than it was read from",
        commits_on_any_server_run,
        Faults(hangs=False, rewinds=False),
    ),
    Mutant(
        "(f') positions kept across a lossy failover",
        positions_kept_across_failover,
        Faults(hangs=False, rewinds=False),
    ),
    Mutant(
        "(e) sink calls unbounded, leases renewed",
        unbounded_sink_calls,
        Faults(hangs=True, rewinds=False),
    ),
]


def seeds_to_find(mutant: Mutant, max_seeds: int, steps: int) -> tuple[int, str] | None:
    """The first seed that breaks an invariant under ``mutant``, and what broke."""
    with mutant.patch():
        for seed in range(max_seeds):
            outcome = simulate(seed, steps, mutant.faults)
            if not outcome.ok:
                return seed, outcome.violations[0]
    return None


def main(argv: list[str] | None = None) -> int:
    """Report, for each defect, the seeds needed to find it."""
    parser = argparse.ArgumentParser(prog="python -m simulation.mutants", description=__doc__)
    parser.add_argument("--max-seeds", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--saga", action="store_true", help="the saga's defects")
    args = parser.parse_args(argv)
    if args.saga:
        for saga_mutant in SAGA_MUTANTS:
            found_saga = saga_seeds_to_find(saga_mutant, args.max_seeds, args.steps)
            report(saga_mutant.name, found_saga, args.max_seeds)
        return 0
    for mutant in MUTANTS:
        found = seeds_to_find(mutant, args.max_seeds, args.steps)
        if found is None:
            print(f"{mutant.name}: not found in {args.max_seeds} seeds")
        else:
            seed, violation = found
            print(f"{mutant.name}: found by seed {seed} ({seed + 1} seeds): {violation}")
    return 0


def report(name: str, found: tuple[int, str] | None, max_seeds: int) -> None:
    """Print what the seeds found of defect ``name``."""
    if found is None:
        print(f"{name}: not found in {max_seeds} seeds")
    else:
        seed, violation = found
        print(f"{name}: found by seed {seed} ({seed + 1} seeds): {violation}")


if __name__ == "__main__":
    sys.exit(main())
