"""Where a position moves: one sink's batches between their read and their commit.

While a batch is being applied, the next ones are read (``read_ahead``) and up to
``batches_in_flight`` are applied at once (sinks are version-guarded, so the order of applies
does not matter), and the previous batch's positions are committed, so the relay, the store
and PostgreSQL work at the same time.

Invariants kept here:

- Batches are finished (retried, dead-lettered, committed) one at a time, in read order.
- A batch's commit starts only after the previous batch's commit succeeded; the positions in
  memory run ahead of the committed ones by at most that one commit.
- A position only moves forward, and only in a partition the worker holds.
- When a batch is given up or a commit fails, everything read after the positions in memory
  is dropped and read again (``start_over``): an event is never skipped, only redelivered.
- A batch read from another server than the positions in memory (after a failover or a
  restart) is never applied, and a batch commits only on the server it was read from: the
  positions are read again first.
- For a sink that needs each aggregate's events in version order, one batch is in flight at a
  time, completed with its aggregates' earlier versions and sorted (``ordering``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import Span

from adapters.base import Delivery
from gateway import metrics
from gateway.postgres.outbox import StoredEvent
from gateway.relay.context import WorkerContext
from gateway.relay.leases import SinkLeases
from gateway.relay.ordering import highest_versions, in_version_order
from gateway.relay.read_ahead import StreamReader
from gateway.relay.retries import Apply, BatchOutcome, Retrier
from gateway.relay.tables import DeadLetter, Move, Position
from gateway.telemetry.deliveries import end_batch, start_batch, within

log = logging.getLogger("gateway.relay")


@dataclass
class InFlight:
    """A batch read and being applied."""

    events: list[StoredEvent]
    fresh: list[StoredEvent]
    """Those not yet delivered (past their partition's position)."""
    partitions: tuple[int, ...]
    first_attempt: asyncio.Task[list[Delivery]] | None
    server: int | None = None
    """The storage's server change the batch was read at: it commits only on that server."""
    span: Span = trace.INVALID_SPAN
    """The batch's span (see :func:`gateway.telemetry.deliveries.start_batch`)."""


def read_after(
    in_flight: Sequence[InFlight], positions: Mapping[int, Position], partitions: Iterable[int]
) -> Position:
    """Where the next batch starts: after the last one in flight, else at the lowest position
    (the other partitions' events before their positions are read, then skipped)."""
    if in_flight:
        return in_flight[-1].events[-1].position
    return min(positions[p] for p in partitions)


def undelivered(
    events: list[StoredEvent], positions: Mapping[int, Position], after: Position
) -> list[StoredEvent]:
    """The events past their partition's position (``positions``: every partition read)."""
    if max(positions.values()) <= after:
        return events  # read after every partition's position: none delivered yet
    return [e for e in events if e.position > positions[e.partition]]


def position_moves(
    batch: InFlight, positions: Mapping[int, Position], delivered: Counter[int]
) -> dict[int, Move]:
    """Each held partition of the batch moves to the batch's last position, unless already
    there or past it; from its position in memory, which the commit checks is still the
    stored one."""
    last = batch.events[-1].position
    return {
        p: Move(last, delivered.get(p, 0), since=positions[p])
        for p in batch.partitions
        if p in positions and positions[p] < last
    }


def positions_outdated(seen: int, now: int, read_at: int | None) -> bool:
    """Whether positions read at server change ``seen`` no longer fit: the server changed
    since (it is at change ``now``), or the batch just read was asked of another server run
    (at change ``read_at``; None: no batch)."""
    return now != seen or (read_at is not None and read_at != seen)


def keep_reading(full: bool, in_flight: int, batches_in_flight: int) -> bool:
    """Whether to read the next batch before finishing the oldest: only after a full batch
    (more is waiting), while fewer than ``batches_in_flight`` are in flight."""
    return full and in_flight < batches_in_flight


class BatchPipeline:
    """Reads, applies and commits one sink's batches, several at a time."""

    def __init__(
        self,
        sink: str,
        context: WorkerContext,
        leases: SinkLeases,
        apply: Apply,
        retrier: Retrier,
        *,
        version_order: bool = False,
    ) -> None:
        self._sink = sink
        self._version_order = version_order
        self._batches_in_flight = 1 if version_order else context.settings.batches_in_flight
        self._context = context
        self._leases = leases
        self._apply = apply
        self._retrier = retrier
        self._in_flight: deque[InFlight] = deque()
        self._commit: asyncio.Task[bool] | None = None
        self._reader: StreamReader | None = None
        self._server_changes = context.storage.server_changes()
        """The storage's server changes as of the last time the positions were forgotten:
        the positions in memory were read since."""

    async def deliver_next_batch(self) -> bool:
        """Deliver one batch; True when it was full (more may be waiting).

        After a full batch, up to ``batches_in_flight - 1`` batches may still be being applied
        and the last finished one's positions committed, while the next batch is read and
        applied; after any other, everything read so far is applied and committed.
        """
        full = await self._deliver_batch()
        if not full:
            await self.flush()
        return full

    async def flush(self) -> bool:
        """Finish every batch in flight and wait for the commit; False if any was given up."""
        while self._in_flight:
            if not await self._finish_oldest():
                return False
        return await self._previous_batch_committed()

    async def start_over(self) -> None:
        """Read again from the positions in memory: nothing read after them is kept."""
        batches, self._in_flight = self._in_flight, deque()
        attempts = [b.first_attempt for b in batches if b.first_attempt is not None]
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        for batch in batches:
            end_batch(batch.span, delivered=0, dead=0, given_up=True)
        await self._stop_reading()

    async def finish_commit(self) -> None:
        """On the way out: let a running commit finish, so the positions it moves are kept."""
        commit, self._commit = self._commit, None
        if commit is None:
            return
        (outcome,) = await asyncio.gather(commit, return_exceptions=True)
        if outcome is not True:
            log.warning(
                "%s: the last batch's positions were not committed: %r", self._sink, outcome
            )

    async def commit_landed(self) -> None:
        """Wait (without taking its outcome) for the running commit, if any."""
        if self._commit is not None:
            await asyncio.wait([self._commit])

    async def _deliver_batch(self) -> bool:
        leases = self._leases
        if not leases.owned:
            return False
        partitions = tuple(sorted(leases.owned))
        after = read_after(self._in_flight, leases.positions, partitions)
        events = await self._read(after, partitions)
        if self._server_changed():
            await self._forget_positions()
            return True  # read again at once, from the positions the server holds
        if not events:
            return False
        fresh = undelivered(events, leases.positions, after)
        if self._version_order and fresh:
            fresh = await self._with_earlier_versions(fresh, events[-1].position)
        span = start_batch(self._sink, (event.envelope for event in fresh))
        with within(span):  # the apply's span is the batch's child
            first_attempt = (
                asyncio.create_task(self._apply(fresh), name=f"relay-{self._sink}-apply")
                if fresh
                else None
            )
        server = self._reader.server if self._reader is not None else None
        self._in_flight.append(InFlight(events, fresh, partitions, first_attempt, server, span))
        full = len(events) == self._context.settings.batch_size
        if keep_reading(full, len(self._in_flight), self._batches_in_flight):
            return True
        return await self._finish_oldest() and full

    async def _with_earlier_versions(
        self, fresh: list[StoredEvent], last: Position
    ) -> list[StoredEvent]:
        """``fresh`` with its aggregates' earlier versions past the batch added, each
        aggregate's events in version order (see :mod:`gateway.relay.ordering`)."""
        below = highest_versions(fresh)
        earlier = await self._context.storage.read_earlier_versions(below, last) if below else []
        return in_version_order([*earlier, *fresh])

    async def _finish_oldest(self) -> bool:
        """Retry what the oldest batch in flight failed, then commit it; False if given up."""
        batch = self._in_flight.popleft()
        try:
            first_results = await batch.first_attempt if batch.first_attempt is not None else []
            with within(batch.span):
                outcome = await self._retrier.deliver(batch.fresh, first_results)
        except BaseException:  # stopped or failed while applying: its span ends all the same
            end_batch(batch.span, delivered=0, dead=0, given_up=True)
            raise
        if outcome is None:
            end_batch(batch.span, delivered=0, dead=0, given_up=True)
            await self.start_over()
            return False
        end_batch(
            batch.span,
            delivered=sum(outcome.delivered.values()),
            dead=len(outcome.dead),
            given_up=False,
        )
        if batch.fresh:
            lag = datetime.now(UTC) - batch.fresh[-1].envelope.occurred_at
            metrics.DELIVERY_LAG_SECONDS.labels(self._sink).observe(lag.total_seconds())
        moves = position_moves(batch, self._leases.positions, outcome.delivered)
        if not await self._previous_batch_committed():
            return False
        self._commit = asyncio.create_task(
            self._commit_batch(moves, outcome, batch.server), name=f"relay-{self._sink}-commit"
        )
        self._leases.advance(moves)
        return True

    async def _commit_batch(
        self, moves: dict[int, Move], outcome: BatchOutcome, server: int | None
    ) -> bool:
        dead: list[DeadLetter] = outcome.dead
        committed = await self._context.storage.commit_batch(
            self._sink, self._context.instance_id, moves, dead, server=server
        )
        if committed:
            delivered = sum(move.delivered for move in moves.values())
            metrics.EVENTS_DELIVERED.labels(self._sink).inc(delivered)
            metrics.EVENTS_DEAD_LETTERED.labels(self._sink).inc(len(dead))
        return committed

    async def _previous_batch_committed(self) -> bool:
        """Wait for the commit still running, if any; False (leases forgotten) if it failed."""
        commit, self._commit = self._commit, None
        if commit is None:
            return True
        try:
            committed = await commit
        except BaseException:
            self._leases.forget()
            await self.start_over()
            raise
        if not committed:
            log.warning(
                "%s: a commit was refused (a lease lost, or the server changed); the batch is "
                "delivered again",
                self._sink,
            )
            self._leases.forget()
            await self.start_over()
        return committed

    async def follow_server(self) -> None:
        """If the server changed since the positions in memory were read, forget them (and
        the leases, and what was read), so that the next turn registers the sink again if need
        be, claims its leases and reads its positions from the server answering now."""
        if self._server_changed():
            await self._forget_positions()

    def _server_changed(self) -> bool:
        """Whether the server answering changed since the positions in memory were read, or
        the batch just read was asked of an earlier one."""
        read_at = self._reader.server if self._reader is not None else None
        now = self._context.storage.server_changes()
        return positions_outdated(self._server_changes, now, read_at)

    async def _forget_positions(self) -> None:
        """Forget the leases and positions in memory and drop what was read; the next turn
        reads them again from the server. After a failover to a standby that lost the last
        commits, positions in memory can lie past transaction ids the new primary gives again
        to new events: reading after them would skip those events (the commit's check of where
        a position stands refuses such a move, but only once something past them is read)."""
        self._server_changes = self._context.storage.server_changes()
        self._leases.forget(server_changed=True)
        await self.start_over()

    async def _read(self, after: Position, partitions: tuple[int, ...]) -> list[StoredEvent]:
        """The batch after ``after``, from the stream that reads ahead (joined if need be)."""
        while True:
            reader = self._reader
            if reader is not None and not reader.serves(after, partitions):
                await self._stop_reading()
                reader = None
            if reader is None:
                reader = self._reader = await self._context.reads.reader(after, partitions)
            batch = await reader.next_batch()
            if batch is not None:
                return batch
            await self._stop_reading()  # too far behind the other sinks: read on alone

    async def _stop_reading(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
