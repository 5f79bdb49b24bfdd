"""The relay: drains the outbox into sinks. Only the loop; the SQL lives in ``outbox.py`` and
``relay_state.py``.

Every sink has its own worker task, its own positions and its own retries, so a slow or down
sink holds back only itself. While a batch is being applied, the worker already reads the next
ones (``read_ahead_batches``), starts applying the next (``batches_in_flight``: sinks are
version-guarded, so the order of applies does not matter) and commits the previous one's
positions, so the relay, the store and PostgreSQL work at the same time. Batches are finished
(retried, dead-lettered, committed) one at a time, in read order. Workers of different sinks at
the same place in the outbox read it together: each batch is read and decoded once for all of
them, and a worker that falls behind reads on alone (``gateway.read_ahead``).

Work is shared between relay processes by leasing (sink, partition) pairs: the live relays
split the partitions in blocks (``relay_state.partitions_for``), each relay holds its block for
every one of its sinks, renews its leases while it works, and moves a position only while it
still holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import asyncpg

from adapters.base import Delivery, Outcome, Sink
from adapters.registry import build_sink
from gateway import metrics, outbox, relay_state
from gateway.advisory_locks import AdvisoryLock
from gateway.backoff import Backoff
from gateway.config import PostgresSettings, RelaySettings, Settings, StartFrom
from gateway.database import Connection, connect, create_pool
from gateway.errors import GatewayError
from gateway.outbox import StoredEvent
from gateway.queries import query
from gateway.read_ahead import OutboxReads, StreamReader
from gateway.relay_state import DeadLetter, Position

log = logging.getLogger("gateway.relay")

DATABASE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # asyncpg's protocol can be left mid-operation when the server drops a session.
    asyncpg.InternalClientError,
    TimeoutError,
)
_PRUNE_CHUNK = 5_000
_HEALTH_TIMEOUT_SECONDS = 5.0


class Relay:
    """Delivers every committed outbox event to every sink, across crashes and outages.

    ``run()`` returns when ``stop()`` is called (after finishing or releasing in-flight
    batches), or with ``until_idle=True`` once no sink has anything left to deliver.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        postgres: PostgresSettings,
        sinks: Sequence[Sink],
        settings: RelaySettings,
        *,
        start_from: Mapping[str, StartFrom] | None = None,
        collect_stats: bool = False,
        shared_reads: bool = True,
    ) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise GatewayError(f"sink names must be unique, got {names}")
        if not sinks:
            raise GatewayError("the relay needs at least one enabled sink")
        self.pool = pool
        self.postgres = postgres
        self.settings = settings
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.live_instances: list[str] = [self.instance_id]
        """The relays sharing the partitions, as of the last heartbeat."""
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once every sink's worker has registered and taken its first leases."""
        self.backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self._start_from = dict(start_from or {})
        self._collect_stats = collect_stats
        self.reads = OutboxReads(
            pool, settings.batch_size, settings.read_ahead_batches, shared=shared_reads
        )
        """The outbox streams the workers read from, each batch read once for every sink
        that keeps pace."""
        self.workers = [SinkWorker(self, sink) for sink in sinks]
        self._owns_pool = False
        self._owns_sinks = False

    @classmethod
    async def connect(
        cls,
        settings: Settings,
        sinks: Sequence[Sink] | None = None,
        *,
        collect_stats: bool = False,
    ) -> Self:
        """A relay with its own pool, over ``sinks`` (default: the enabled configured sinks)."""
        built = sinks is None
        if sinks is None:
            sinks = [
                build_sink(name, sink_settings)
                for name, sink_settings in settings.sinks.items()
                if sink_settings.enabled
            ]
        start_from = {
            name: sink_settings.start_from
            for name, sink_settings in settings.sinks.items()
            if sink_settings.start_from is not None
        }
        # Each worker holds at most two connections at a time (a batch's commit while the next
        # batch is read ahead), plus heartbeat, prune and stats.
        size = 2 * len(sinks) + 3
        postgres = settings.postgres.model_copy(update={"pool_min_size": 1, "pool_max_size": size})
        relay = cls(
            await create_pool(postgres),
            settings.postgres,
            sinks,
            settings.relay,
            start_from=start_from,
            collect_stats=collect_stats,
        )
        relay._owns_pool = True
        relay._owns_sinks = built
        return relay

    async def close(self) -> None:
        """Close the pool and the sinks, if this relay created them (the caller owns the rest)."""
        if self._owns_sinks:
            for worker in self.workers:
                await worker.sink.close()
        if self._owns_pool:
            await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stop(self) -> None:
        """Stop claiming work; in-flight batches finish or are released; ``run()`` returns."""
        self.stopping.set()
        for worker in self.workers:
            worker.wakeup.set()

    def _worker_ready(self) -> None:
        if all(worker.has_leased for worker in self.workers):
            self.ready.set()

    def wake(self) -> None:
        """Tell every worker that new events may be readable."""
        for worker in self.workers:
            worker.wakeup.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until stopped (or, with ``until_idle``, until nothing is left to deliver)."""
        async with self.pool.acquire() as connection:
            for worker in self.workers:
                start = self._start_from.get(worker.sink.name, self.settings.start_from)
                await relay_state.register_sink(
                    connection, worker.sink.name, from_beginning=start == "beginning"
                )
            await self._heartbeat(connection)
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="relay-heartbeat"),
            asyncio.create_task(self._listen_loop(), name="relay-listen"),
            asyncio.create_task(self._prune_loop(), name="relay-prune"),
        ]
        if self._collect_stats:
            background.append(asyncio.create_task(self._stats_loop(), name="relay-stats"))
        workers = [
            asyncio.create_task(worker.run(until_idle), name=f"relay-{worker.sink.name}")
            for worker in self.workers
        ]
        try:
            await self._wait_for(workers)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._leave()

    async def _wait_for(self, workers: list[asyncio.Task[None]]) -> None:
        """Until every worker is done (idle) or a stop is asked; then give stragglers a bound."""
        stop_requested = asyncio.create_task(self.stopping.wait())
        unfinished: set[asyncio.Task[None]] = set(workers)
        try:
            while unfinished and not self.stopping.is_set():
                done, _ = await asyncio.wait(
                    unfinished | {stop_requested}, return_when=asyncio.FIRST_COMPLETED
                )
                unfinished -= done
                if any(t is not stop_requested and t.exception() for t in done):
                    self.stop()
            if unfinished:
                _, late = await asyncio.wait(
                    unfinished, timeout=self.settings.shutdown_timeout_seconds
                )
                for task in late:
                    log.warning("abandoning an in-flight batch of %s at shutdown", task.get_name())
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            stop_requested.cancel()
        for task in workers:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def _leave(self) -> None:
        try:
            async with self.pool.acquire() as connection:
                for worker in self.workers:
                    if worker.owned:
                        await relay_state.release_leases(
                            connection, worker.sink.name, self.instance_id, sorted(worker.owned)
                        )
                        worker.owned = set()
                await relay_state.forget_instance(connection, self.instance_id)
        except DATABASE_ERRORS as error:
            log.warning("could not release leases on shutdown (they will expire): %s", error)

    async def _heartbeat(self, connection: Connection) -> None:
        await relay_state.heartbeat(connection, self.instance_id, socket.gethostname(), os.getpid())
        # The leases live as long as the process: a worker applying a batch longer than a
        # lease (a slow store) still holds its partitions, and shows as serving its sink.
        await relay_state.renew_instance_leases(
            connection, self.instance_id, self.settings.lease_ttl_seconds
        )
        self.live_instances = await relay_state.live_instances(
            connection, self.settings.lease_ttl_seconds
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl_seconds / 3)
            try:
                async with self.pool.acquire() as connection:
                    await self._heartbeat(connection)
            except DATABASE_ERRORS as error:
                log.warning("heartbeat failed: %s", error)

    async def _listen_loop(self) -> None:
        """Keep a LISTEN connection; after every (re)connect, wake the workers."""
        attempt = 0
        while True:
            try:
                connection = await connect(self.postgres)
            except (GatewayError, *DATABASE_ERRORS) as error:
                attempt += 1
                log.warning("cannot LISTEN for outbox events (polling meanwhile): %s", error)
                await asyncio.sleep(self.backoff.ceiling(attempt))
                continue
            attempt = 0
            closed = asyncio.Event()
            connection.add_termination_listener(lambda _, closed=closed: closed.set())
            try:
                await connection.add_listener(outbox.CHANNEL, lambda *_: self.wake())
                self.wake()
                while not closed.is_set() and not connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            closed.wait(), self.settings.poll_interval_seconds * 5
                        )
            except DATABASE_ERRORS as error:
                log.warning("lost the LISTEN connection: %s", error)
            finally:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await connection.close(timeout=1)

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval_seconds)
            try:
                pruned = await self.prune()
                if pruned:
                    log.info("pruned %d delivered outbox events", pruned)
            except DATABASE_ERRORS as error:
                log.warning("pruning failed: %s", error)

    async def prune(self) -> int:
        """Delete delivered events older than the retention (unless another relay is at it).

        Warns of every sink that no relay serves any more: until it is retired, its positions
        keep every event after them.
        """
        async with self.pool.acquire() as connection:
            for unserved in await relay_state.unserved_sinks(connection):
                log.warning("%s", unserved.warning())
        total = 0
        while True:
            async with self.pool.acquire() as connection, connection.transaction():
                if not await connection.fetchval(
                    query("try_advisory_xact_lock"), AdvisoryLock.PRUNE
                ):
                    return total
                deleted = await outbox.prune(
                    connection, self.settings.retention_seconds, _PRUNE_CHUNK
                )
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total

    async def _stats_loop(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as connection:
                    for backlog in await outbox.backlog(connection):
                        metrics.BACKLOG.labels(backlog.sink).set(backlog.events)
                        metrics.OLDEST_UNDELIVERED_SECONDS.labels(backlog.sink).set(
                            backlog.oldest_age_seconds or 0.0
                        )
            except DATABASE_ERRORS as error:
                log.warning("backlog statistics failed: %s", error)
            await asyncio.sleep(self.settings.stats_interval_seconds)


def retrying_per_partition(owned: Iterable[int], waiting: Iterable[StoredEvent]) -> dict[int, int]:
    """How many of the ``waiting`` events each owned partition holds (0 for the others)."""
    counts = dict.fromkeys(owned, 0)
    for event in waiting:
        counts[event.partition] = counts.get(event.partition, 0) + 1
    return counts


@dataclass
class _InFlight:
    """A batch read and being applied: its events, those not yet delivered, their first try."""

    events: list[StoredEvent]
    fresh: list[StoredEvent]
    partitions: tuple[int, ...]
    first_attempt: asyncio.Task[list[Delivery]] | None


class SinkWorker:
    """Delivers one sink's events: leases, reads, applies with retries, commits positions."""

    def __init__(self, relay: Relay, sink: Sink) -> None:
        self.relay = relay
        self.sink = sink
        self.settings = relay.settings
        self.wakeup = asyncio.Event()
        self.owned: set[int] = set()
        self.positions: dict[int, Position] = {}
        self._next_lease_check = 0.0
        self._next_replay_check = 0.0
        self.has_leased = False
        self.started = False
        """Whether the sink's ``start`` has succeeded (it is tried again until it does)."""
        self._reader: StreamReader | None = None
        self._in_flight: deque[_InFlight] = deque()
        self._commit: asyncio.Task[bool] | None = None

    async def run(self, until_idle: bool) -> None:
        """The worker's loop."""
        try:
            await self._loop(until_idle)
            with contextlib.suppress(*DATABASE_ERRORS):  # what is not committed is redelivered
                await self._flush()
        finally:
            await self._start_over()
            await self._finish_commit()

    async def _loop(self, until_idle: bool) -> None:
        failures = 0
        while not self.relay.stopping.is_set():
            try:
                await self.maintain_leases()
                if not self.has_leased:
                    self.has_leased = True
                    self.relay._worker_ready()
                if not self.started:
                    failures += 1
                    if not await self._start_sink(failures):
                        continue
                replayed = await self.replay_dead_letters()
                full = await self.deliver_next_batch()
                failures = 0
                if full or replayed:
                    continue
                if until_idle and await self._nothing_left():
                    return
                await self._wait_for_events()
            except DATABASE_ERRORS as error:
                failures += 1
                log.warning("%s: database unavailable, retrying: %s", self.sink.name, error)
                if isinstance(error, asyncpg.InternalClientError):
                    # Such a connection is unusable; replace every pooled one.
                    await self.relay.pool.expire_connections()
                self._next_lease_check = 0.0
                await self._pause(self.relay.backoff.ceiling(failures))

    async def _start_sink(self, attempt: int) -> bool:
        """Start the sink; on failure (its store is down) pause and say so, so that the relay
        starts, and its other sinks deliver, whichever store is down."""
        try:
            await self.sink.start()
        except Exception as error:  # any failure to start is the store's: try again later
            log.warning("%s: cannot start the sink, trying again: %r", self.sink.name, error)
            await self._pause(self.relay.backoff.ceiling(attempt))
            return False
        self.started = True
        return True

    async def maintain_leases(self, *, renew_only: bool = False) -> None:
        """Renew held leases; release the partitions that are not this relay's to hold and
        claim those that are (see :func:`relay_state.partitions_for`)."""
        now = time.monotonic()
        if now < self._next_lease_check:
            return
        self._next_lease_check = now + self.settings.lease_ttl_seconds / 3
        if not renew_only:
            # A lease given up must not be taken while a batch of its partition is in flight.
            await self._flush()
        name, me, ttl = self.sink.name, self.relay.instance_id, self.settings.lease_ttl_seconds
        target = relay_state.partitions_for(me, self.relay.live_instances)
        async with self.relay.pool.acquire() as connection:
            owned = await relay_state.renew_leases(connection, name, me, ttl)
            if not renew_only:
                if extra := owned - target:
                    await relay_state.release_leases(connection, name, me, sorted(extra))
                    owned -= extra
                if missing := target - owned:
                    owned |= await relay_state.claim_leases(
                        connection, name, me, sorted(missing), ttl
                    )
            if owned - set(self.positions):
                self.positions.update(await relay_state.positions(connection, name, sorted(owned)))
        if owned != self.owned:
            log.info("%s: holding partitions %s", name, sorted(owned))
        self.owned = owned
        self.positions = {p: self.positions[p] for p in owned}
        metrics.OWNED_PARTITIONS.labels(name).set(len(owned))

    async def deliver_next_batch(self) -> bool:
        """Deliver one batch; True when it was full (more may be waiting).

        After a full batch, up to ``batches_in_flight - 1`` batches may still be being applied
        and the last finished one's positions committed, while the next batch is read and
        applied; after any other, everything read so far is applied and committed.
        """
        full = await self._deliver_batch()
        if not full:
            await self._flush()
        return full

    async def _deliver_batch(self) -> bool:
        if not self.owned:
            return False
        partitions = tuple(sorted(self.owned))
        if self._in_flight:
            after = self._in_flight[-1].events[-1].position
        else:
            after = min(self.positions[p] for p in partitions)
        events = await self._read(after, partitions)
        if not events:
            return False
        if max(self.positions[p] for p in partitions) <= after:
            fresh = events  # read after every partition's position: none delivered yet
        else:
            fresh = [e for e in events if e.position > self.positions[e.partition]]
        self._in_flight.append(_InFlight(events, fresh, partitions, self._start_applying(fresh)))
        full = len(events) == self.settings.batch_size
        if full and len(self._in_flight) < self.settings.batches_in_flight:
            return True
        return await self._finish_oldest() and full

    def _start_applying(self, events: list[StoredEvent]) -> asyncio.Task[list[Delivery]] | None:
        if not events:
            return None
        return asyncio.create_task(self._apply(events), name=f"relay-{self.sink.name}-apply")

    async def _finish_oldest(self) -> bool:
        """Retry what the oldest batch in flight failed, then commit it; False if given up."""
        batch = self._in_flight.popleft()
        first_results = await batch.first_attempt if batch.first_attempt is not None else []
        result = await self._apply_with_retries(batch.fresh, first_results)
        if result is None:
            await self._start_over()
            return False
        delivered, dead = result
        if batch.fresh:
            lag = datetime.now(UTC) - batch.fresh[-1].envelope.occurred_at
            metrics.DELIVERY_LAG_SECONDS.labels(self.sink.name).observe(lag.total_seconds())
        last = batch.events[-1].position
        moves = {
            p: (last, delivered.get(p, 0))
            for p in batch.partitions
            if p in self.positions and self.positions[p] < last
        }
        if not await self._previous_batch_committed():
            return False
        self._commit = asyncio.create_task(
            self._commit_batch(moves, dead), name=f"relay-{self.sink.name}-commit"
        )
        for partition, (position, _) in moves.items():
            self.positions[partition] = position
        return True

    async def _flush(self) -> bool:
        """Finish every batch in flight and wait for the commit; False if any was given up."""
        while self._in_flight:
            if not await self._finish_oldest():
                return False
        return await self._previous_batch_committed()

    async def _abandon_in_flight(self) -> None:
        """Drop the batches in flight: their positions stay, so they are delivered again."""
        batches, self._in_flight = self._in_flight, deque()
        attempts = [b.first_attempt for b in batches if b.first_attempt is not None]
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)

    async def _start_over(self) -> None:
        """Read again from the positions in memory: nothing read after them is kept."""
        await self._abandon_in_flight()
        await self._stop_reading()

    async def _commit_batch(
        self, moves: dict[int, tuple[Position, int]], dead: list[DeadLetter]
    ) -> bool:
        async with self.relay.pool.acquire() as connection:
            committed = await relay_state.commit_batch(
                connection, self.sink.name, self.relay.instance_id, moves, dead
            )
        if committed:
            delivered = sum(count for _, count in moves.values())
            metrics.EVENTS_DELIVERED.labels(self.sink.name).inc(delivered)
            metrics.EVENTS_DEAD_LETTERED.labels(self.sink.name).inc(len(dead))
        return committed

    async def _previous_batch_committed(self) -> bool:
        """Wait for the commit still running, if any; False (leases forgotten) if it failed.

        The next batch is applied while the previous one's positions are being committed;
        the positions in memory run ahead of the committed ones only until this returns.
        """
        commit, self._commit = self._commit, None
        if commit is None:
            return True
        try:
            committed = await commit
        except BaseException:
            self._forget_leases()
            await self._start_over()
            raise
        if not committed:
            log.warning("%s: lost a lease mid-batch; another relay redelivers it", self.sink.name)
            self._forget_leases()
            await self._start_over()
        return committed

    async def _finish_commit(self) -> None:
        """On the way out: let a running commit finish, so the positions it moves are kept."""
        commit, self._commit = self._commit, None
        if commit is None:
            return
        (outcome,) = await asyncio.gather(commit, return_exceptions=True)
        if outcome is not True:
            log.warning(
                "%s: the last batch's positions were not committed: %r", self.sink.name, outcome
            )

    async def _read(self, after: Position, partitions: tuple[int, ...]) -> list[StoredEvent]:
        """The batch after ``after``, from the stream that reads ahead (joined if need be)."""
        while True:
            reader = self._reader
            if reader is not None and not reader.serves(after, partitions):
                await self._stop_reading()
                reader = None
            if reader is None:
                reader = self._reader = self.relay.reads.reader(after, partitions)
            batch = await reader.next_batch()
            if batch is not None:
                return batch
            await self._stop_reading()  # too far behind the other sinks: read on alone

    async def _stop_reading(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

    async def _apply_with_retries(
        self, events: list[StoredEvent], first_results: list[Delivery]
    ) -> tuple[Counter[int], list[DeadLetter]] | None:
        """Retry until every event is delivered or dead; None if the batch was given up.

        ``first_results`` are the outcomes of the first attempt, made while the batch was in
        flight.
        """
        delivered: Counter[int] = Counter()
        dead: list[DeadLetter] = []
        pending = [(event, 0) for event in events]
        outage_rounds = 0
        results: list[Delivery] | None = first_results
        while pending:
            if results is None:
                results = await self._apply([event for event, _ in pending])
            retry: list[tuple[StoredEvent, int, str]] = []
            for (event, attempts), result in zip(pending, results, strict=True):
                if result.outcome is Outcome.DELIVERED:
                    delivered[event.partition] += 1
                elif result.outcome is Outcome.PERMANENT:
                    metrics.EVENTS_FAILED.labels(self.sink.name, "permanent").inc()
                    dead.append(DeadLetter(event, "permanent", result.error or "", attempts + 1))
                else:
                    metrics.EVENTS_FAILED.labels(self.sink.name, "transient").inc()
                    retry.append((event, attempts + 1, result.error or ""))
            if not retry:
                break
            if len(retry) == len(pending) and not await self._healthy():
                # The store is down: hold the position and wait, without using up attempts.
                outage_rounds += 1
                retry = [(event, attempts - 1, error) for event, attempts, error in retry]
                delay = self.relay.backoff.delay(outage_rounds)
            else:
                outage_rounds = 0
                for event, attempts, error in retry:
                    if attempts >= self.settings.max_attempts:
                        dead.append(DeadLetter(event, "attempts_exhausted", error, attempts))
                retry = [r for r in retry if r[1] < self.settings.max_attempts]
                if not retry:
                    break
                delay = self.relay.backoff.delay(max(attempts for _, attempts, _ in retry))
            await self._record_retrying(
                retrying_per_partition(self.owned, (e for e, _, _ in retry)), retry[-1][2]
            )
            if not await self._sleep_holding_leases(delay, {e.partition for e, _, _ in retry}):
                return None
            pending = [(event, attempts) for event, attempts, _ in retry]
            results = None
        return delivered, dead

    async def _apply(self, events: list[StoredEvent]) -> list[Delivery]:
        started = time.perf_counter()
        try:
            results = await self.sink.apply([event.envelope for event in events])
        except Exception as error:  # a sink that raises is treated as failing transiently
            log.warning("%s: apply raised %r", self.sink.name, error)
            return [Delivery.transient(f"apply raised {error!r}")] * len(events)
        finally:
            metrics.BATCH_SECONDS.labels(self.sink.name).observe(time.perf_counter() - started)
        if len(results) != len(events):
            error_text = f"sink returned {len(results)} results for {len(events)} events"
            return [Delivery.transient(error_text)] * len(events)
        return results

    async def _healthy(self) -> bool:
        try:
            health = await asyncio.wait_for(self.sink.health(), _HEALTH_TIMEOUT_SECONDS)
        except Exception as error:  # any failure to answer means not healthy
            log.warning("%s: health check failed: %r", self.sink.name, error)
            return False
        return health.ok

    async def _record_retrying(self, retrying: dict[int, int], error: str) -> None:
        if self._commit is not None:
            # The running commit clears the retry count; it must land before this sets it.
            await asyncio.wait([self._commit])
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self.relay.pool.acquire() as connection:
                await relay_state.record_retrying(
                    connection,
                    self.sink.name,
                    self.relay.instance_id,
                    retrying,
                    error[:2000],
                )

    async def _sleep_holding_leases(self, delay: float, needed: set[int]) -> bool:
        """Wait ``delay`` while renewing leases; False on stop or if a needed lease is lost."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            await self._pause(min(remaining, self.settings.lease_ttl_seconds / 3))
            if self.relay.stopping.is_set():
                return False
            with contextlib.suppress(*DATABASE_ERRORS):
                await self.maintain_leases(renew_only=True)
            if not needed <= self.owned:
                return False
        return True

    async def replay_dead_letters(self) -> bool:
        """Deliver dead letters whose replay was requested; True if any was delivered."""
        now = time.monotonic()
        if now < self._next_replay_check or not self.owned:
            return False
        self._next_replay_check = now + self.settings.poll_interval_seconds
        async with self.relay.pool.acquire() as connection:
            replays = await relay_state.claim_replays(
                connection,
                self.sink.name,
                self.relay.instance_id,
                self.settings.batch_size,
                self.settings.lease_ttl_seconds,
            )
        if not replays:
            return False
        results = await self._apply([replay.event for replay in replays])
        delivered = [
            r.dead_letter_id
            for r, result in zip(replays, results, strict=True)
            if result.outcome is Outcome.DELIVERED
        ]
        failed = [
            (r.dead_letter_id, result.error or "", result.outcome is Outcome.TRANSIENT)
            for r, result in zip(replays, results, strict=True)
            if result.outcome is not Outcome.DELIVERED
        ]
        async with self.relay.pool.acquire() as connection, connection.transaction():
            await relay_state.finish_replays(connection, delivered, failed)
        metrics.EVENTS_DELIVERED.labels(self.sink.name).inc(len(delivered))
        log.info(
            "%s: replayed %d dead letters, %d failed", self.sink.name, len(delivered), len(failed)
        )
        return bool(delivered)

    async def _nothing_left(self) -> bool:
        async with self.relay.pool.acquire() as connection:
            return not await relay_state.sink_has_work(connection, self.sink.name)

    async def _wait_for_events(self) -> None:
        await self._pause(self.settings.poll_interval_seconds, wake_on_events=True)
        self.wakeup.clear()
        if self.settings.linger_ms and not self.relay.stopping.is_set():
            # Let a burst of commits accumulate into one batch.
            await asyncio.sleep(self.settings.linger_ms / 1000)

    async def _pause(self, seconds: float, *, wake_on_events: bool = False) -> None:
        """Sleep up to ``seconds``; a stop request (or, if asked, a wake-up) ends it early."""
        waits = [asyncio.ensure_future(self.relay.stopping.wait())]
        if wake_on_events:
            waits.append(asyncio.ensure_future(self.wakeup.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _forget_leases(self) -> None:
        self.owned = set()
        self.positions = {}
        self._next_lease_check = 0.0
