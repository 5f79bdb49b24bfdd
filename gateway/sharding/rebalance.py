"""``fanout shards rebalance`` and ``fanout shards drain``: the placement's moves carried out,
one customer at a time, at most so many, at a bounded rate.

Both plan from the directory as it stands when they start, in customer id order. A run stopped
anywhere is resumed by running it again: a customer already moved is where the placement wants
it and is no longer in the plan, and a move left unfinished is completed or rolled back by the
next move of that customer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from gateway.sharding.placement import Shard, rendezvous_shard

MAX_CONSECUTIVE_FAILURES = 3
"""Moves in a row that may fail before a run stops: one failure is a customer's (its pause
timed out, say), several in a row say a shard or a store is down."""


@dataclass(frozen=True)
class PlannedMove:
    """One customer to move, from the shard the directory names to the one placement wants."""

    customer_id: UUID
    source: str
    target: str


def rebalance_moves(
    entries: Iterable[tuple[UUID, str]], shards: Sequence[Shard], max_moves: int | None = None
) -> list[PlannedMove]:
    """The moves that put every directory entry (customer id, shard) where ``shards``' placement
    wants it, in customer id order; the first ``max_moves`` of them when given."""
    moves = [
        PlannedMove(customer_id, shard, wanted)
        for customer_id, shard in sorted(entries)
        if (wanted := rendezvous_shard(str(customer_id), shards)) != shard
    ]
    return moves if max_moves is None else moves[:max_moves]


def drain_moves(
    entries: Iterable[tuple[UUID, str]], shards: Sequence[Shard], draining: str
) -> list[PlannedMove]:
    """The moves that empty shard ``draining``: each of its customers to the shard the placement
    picks among the others (which is where it would go if ``draining`` were removed)."""
    others = [shard for shard in shards if shard.name != draining]
    if not others:
        raise ValueError(f"shard {draining!r} is the only shard: there is nowhere to drain it to")
    return [
        PlannedMove(customer_id, shard, rendezvous_shard(str(customer_id), others))
        for customer_id, shard in sorted(entries)
        if shard == draining
    ]


def start_offset(index: int, rate: float | None) -> float:
    """Seconds after a run's start at which its ``index``-th move may start, at ``rate``
    customers a second (None: at once)."""
    return index / rate if rate else 0.0


def should_stop(consecutive_failures: int) -> bool:
    """Whether a run stops after this many failed moves in a row."""
    return consecutive_failures >= MAX_CONSECUTIVE_FAILURES


@dataclass
class Progress:
    """Where a run stands: its plan's size, the moves made, and the moves that failed, with
    why (a failed move is rolled back: the customer stays whole on its source)."""

    planned: int
    moved: int = 0
    rows: int = 0
    failed: list[tuple[PlannedMove, str]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def customers_per_second(self) -> float:
        """Customers moved a second over the run so far."""
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows moved a second over the run so far."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, object]:
        """The progress as JSON."""
        return {
            "planned": self.planned,
            "moved": self.moved,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "customers_per_second": round(self.customers_per_second, 2),
            "rows_per_second": round(self.rows_per_second, 1),
            "stopped_early": self.stopped_early,
            "failed": [
                {
                    "customer_id": str(move.customer_id),
                    "from": move.source,
                    "to": move.target,
                    "reason": reason,
                }
                for move, reason in self.failed
            ],
        }


Mover = Callable[[PlannedMove], Awaitable[int]]
"""Moves one customer online; the rows it moved. Raises when the move was rolled back."""


async def carry_out(
    moves: Sequence[PlannedMove],
    mover: Mover,
    *,
    rate: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Progress:
    """Make ``moves`` one after the other, the ``i``-th no sooner than ``start_offset(i,
    rate)`` after the first; a failed move is reported and the run goes on, until
    ``MAX_CONSECUTIVE_FAILURES`` fail in a row."""
    progress = Progress(planned=len(moves))
    started = clock()
    consecutive = 0
    for index, move in enumerate(moves):
        wait = started + start_offset(index, rate) - clock()
        if wait > 0:
            await sleep(wait)
        try:
            progress.rows += await mover(move)
        except Exception as error:  # reported per customer; the run decides whether to go on
            progress.failed.append((move, str(error) or type(error).__name__))
            consecutive += 1
        else:
            progress.moved += 1
            consecutive = 0
        progress.seconds = clock() - started
        if on_progress is not None:
            on_progress(progress)
        if should_stop(consecutive):
            progress.stopped_early = index + 1 < len(moves)
            break
    return progress
