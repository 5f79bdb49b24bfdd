"""The relay process: its sinks' workers, its heartbeat, and what it leaves behind on stop.

Work is shared between relay processes by leasing (sink, partition) pairs (``leases``). The
process's heartbeat records it as live and renews every lease it holds, so leases live as long
as the process: a worker applying a batch longer than a lease (a slow store) keeps its
partitions, and shows as serving its sink; but not a worker stuck in a call into its sink past
its timeout (``stalls``): the other relays take its partitions. On stop, the process releases
its leases so that another relay takes them at once rather than after they expire. A process
that dies without stopping (SIGKILL, a crash) ends its liveness session (``liveness``): the
other relays release its leases and take its partitions within a check's interval; only a
process that hangs keeps them until they expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Self

import asyncpg

from adapters.base import Sink
from gateway.backoff import Backoff
from gateway.configuration.settings import PostgresSettings, RelaySettings, Settings, StartFrom
from gateway.errors import GatewayError
from gateway.postgres.database import create_pool
from gateway.postgres.server_runs import ServerRuns
from gateway.postgres.waiting import wait_for_postgres
from gateway.relay import upkeep
from gateway.relay.context import WorkerContext, database_backoff
from gateway.relay.errors import DATABASE_ERRORS
from gateway.relay.liveness import LivenessSession
from gateway.relay.read_ahead import OutboxReads
from gateway.relay.sessions import SessionCheck
from gateway.relay.sinks import enabled_sinks
from gateway.relay.storage import PostgresRelayStorage, RelayStorage
from gateway.relay.worker import SinkWorker

log = logging.getLogger("gateway.relay")


class Relay:
    """Delivers every committed outbox event to every sink, across crashes and outages.

    ``run()`` returns when ``stop()`` is called (after finishing or releasing in-flight
    batches), or with ``until_idle=True`` once no sink has anything left to deliver.

    It works over ``pool``, or over another ``storage`` (the tests' in-memory one). With
    ``postgres`` it LISTENs for committed events; without, its workers poll. ``server_runs``
    tells which server ``pool``'s connections reach (the pool runs its ``observe`` on each new
    one, as :meth:`connect` sets up), so that positions are read again after a failover.
    """

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        postgres: PostgresSettings | None,
        sinks: Sequence[Sink],
        settings: RelaySettings,
        *,
        start_from: Mapping[str, StartFrom] | None = None,
        apply_timeouts: Mapping[str, float] | None = None,
        collect_stats: bool = False,
        shared_reads: bool = True,
        storage: RelayStorage | None = None,
        server_runs: ServerRuns | None = None,
        history_retention_days: int | None = None,
    ) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise GatewayError(f"sink names must be unique, got {names}")
        if not sinks:
            raise GatewayError("the relay needs at least one enabled sink")
        if storage is None:
            if pool is None:
                raise GatewayError("the relay needs a pool or a storage")
            storage = PostgresRelayStorage(pool, server_runs)
        self.pool = pool
        self.storage = storage
        self.postgres = postgres
        self.settings = settings
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.live_instances: list[str] = [self.instance_id]
        """The relays sharing the partitions, as of the last heartbeat."""
        self.stalled_sinks: dict[str, frozenset[str]] = {}
        """The sinks each live relay has stalled on, as of the last heartbeat."""
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once every sink's worker has registered and taken its first leases."""
        self.backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self._start_from = dict(start_from or {})
        self._history_retention_days = history_retention_days
        self._collect_stats = collect_stats
        self.reads = OutboxReads(
            storage.read_batch,
            settings.batch_size,
            settings.read_ahead_batches,
            shared=shared_reads,
            server_changes=storage.server_changes,
        )
        """The outbox streams the workers read from, each batch read once for every sink
        that keeps pace."""
        context = WorkerContext(
            storage=storage,
            reads=self.reads,
            settings=settings,
            backoff=self.backoff,
            instance_id=self.instance_id,
            stopping=self.stopping,
            live_instances=lambda: self.live_instances,
            stalled_relays=lambda sink: {r for r, s in self.stalled_sinks.items() if sink in s},
            register_sink=self._register_again,
        )
        timeouts = dict(apply_timeouts or {})
        self.workers = [
            SinkWorker(sink, context, apply_timeout_seconds=timeouts.get(sink.name))
            for sink in sinks
        ]
        self.liveness = LivenessSession(
            lambda: storage.open_session(self.instance_id, socket.gethostname(), os.getpid()),
            interval_seconds=settings.session_check_interval_seconds,
            ttl_seconds=settings.lease_ttl_seconds,
            backoff=database_backoff(settings),
            known_live=lambda: self.live_instances,
            on_change=self._membership_changed,
        )
        """This process's liveness session: its end tells the other relays it died."""
        self._owns_pool = False
        self._owns_sinks = False
        self._stalled: list[str] = []

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
            sinks = list(enabled_sinks(settings).values())
        start_from = {
            name: sink_settings.start_from
            for name, sink_settings in settings.sinks.items()
            if sink_settings.start_from is not None
        }
        apply_timeouts = {
            name: sink_settings.apply_timeout_seconds
            for name, sink_settings in settings.sinks.items()
            if sink_settings.apply_timeout_seconds is not None
        }
        # Each worker holds at most two connections at a time (a batch's commit while the next
        # batch is read ahead), plus heartbeat, prune, stats, the payment sweeper and the
        # history's pruning, and the liveness session.
        size = 2 * len(sinks) + 6
        postgres = settings.postgres.model_copy(update={"pool_min_size": 1, "pool_max_size": size})
        server_runs = ServerRuns()
        try:
            pool = await create_pool(postgres, on_connect=server_runs.observe)
        except BaseException:
            # Tried again while PostgreSQL does not answer: each try's clients are closed.
            if built:
                for sink in sinks:
                    await sink.close()
            raise
        relay = cls(
            pool,
            settings.postgres,
            sinks,
            settings.relay,
            start_from=start_from,
            apply_timeouts=apply_timeouts,
            collect_stats=collect_stats,
            server_runs=server_runs,
            history_retention_days=settings.events.retention_days,
        )
        relay._owns_pool = True
        relay._owns_sinks = built
        return relay

    async def close(self) -> None:
        """Close the pool and the sinks, if this relay created them (the caller owns the rest)."""
        await self.liveness.close()
        if self._owns_sinks:
            for worker in self.workers:
                await worker.sink.close()
        if self._owns_pool and self.pool is not None:
            await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stop(self) -> None:
        """Stop claiming work; in-flight batches finish or are released; ``run()`` returns."""
        self.stopping.set()
        self.wake()

    def wake(self) -> None:
        """Tell every worker that new events may be readable."""
        for worker in self.workers:
            worker.wakeup.set()

    async def prune(self) -> int:
        """Delete delivered events older than the retention (unless another relay is at it)."""
        return await upkeep.prune(self.storage, self.settings.retention_seconds)

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until stopped (or, with ``until_idle``, until nothing is left to deliver).

        While PostgreSQL cannot be reached, at start as later, it waits and tries again."""
        if not await self._join():
            return
        settings = self.settings
        background = [
            asyncio.create_task(self._heartbeat_periodically(), name="relay-heartbeat"),
            asyncio.create_task(self.liveness.run(), name="relay-liveness"),
            asyncio.create_task(self._signal_ready(), name="relay-ready"),
            asyncio.create_task(
                upkeep.every(
                    settings.prune_interval_seconds,
                    "pruned delivered outbox events",
                    lambda: upkeep.prune(self.storage, settings.retention_seconds),
                ),
                name="relay-prune",
            ),
        ]
        if self.pool is not None:
            background.extend(self._order_upkeep(self.pool))
        if self.postgres is not None:
            background.append(
                asyncio.create_task(
                    upkeep.listen_for_events(
                        self.postgres,
                        settings.poll_interval_seconds,
                        database_backoff(settings),
                        self.wake,
                    ),
                    name="relay-listen",
                )
            )
        if self._collect_stats:
            background.append(
                asyncio.create_task(
                    upkeep.publish_backlog(self.storage, settings.stats_interval_seconds),
                    name="relay-stats",
                )
            )
        workers = [
            asyncio.create_task(worker.run(until_idle), name=f"relay-{worker.sink.name}")
            for worker in self.workers
        ]
        try:
            await self._wait_for(workers)
        finally:
            # Workers are still running here only when this run was cancelled.
            for task in (*workers, *background):
                task.cancel()
            await asyncio.gather(*workers, *background, return_exceptions=True)
            await self._leave()

    async def _join(self) -> bool:
        """Register every sink and record this relay as live, waiting while PostgreSQL cannot
        be reached; False if stopped first."""

        async def register() -> bool:
            for worker in self.workers:
                await self._register_sink(worker.sink.name)
            await self.heartbeat()
            await self.liveness.open()
            return True

        url = self.postgres.url.get_secret_value() if self.postgres is not None else None
        joined = await wait_for_postgres(
            register, url=url, backoff=self.backoff, stopping=self.stopping
        )
        return joined is not None

    async def _register_sink(self, sink: str) -> None:
        """Create the sink's positions if it has none, where its ``start_from`` says."""
        start = self._start_from.get(sink, self.settings.start_from)
        await self.storage.register_sink(sink, from_beginning=start == "beginning")

    async def _register_again(self, sink: str) -> None:
        """After the server changed: create the sink's positions if a failover lost them, at
        the outbox's beginning whatever ``start_from`` says. Starting "now" would skip what the
        new primary took before this relay noticed it; from the beginning, a store is only
        sent again what it already holds (every write keeps the highest version)."""
        await self.storage.register_sink(sink, from_beginning=True)

    def _order_upkeep(self, pool: asyncpg.Pool) -> list[asyncio.Task[None]]:
        """The sweeper of unpaid orders and, with a retention, the pruning of their history."""
        sweep = self.settings.payment_sweep_interval_seconds
        tasks = [
            asyncio.create_task(
                upkeep.every(
                    sweep,
                    "orders cancelled for want of payment",
                    lambda: upkeep.expire_unpaid_orders(pool),
                ),
                name="relay-payment-sweep",
            )
        ]
        days = self._history_retention_days
        if days is not None:
            tasks.append(
                asyncio.create_task(
                    upkeep.every(
                        self.settings.prune_interval_seconds,
                        "order events pruned",
                        lambda: upkeep.prune_history(pool, days),
                    ),
                    name="relay-history-prune",
                )
            )
        return tasks

    async def _signal_ready(self) -> None:
        await asyncio.gather(*(worker.leased.wait() for worker in self.workers))
        self.ready.set()

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
        held = {w.sink.name: sorted(w.owned) for w in self.workers if w.owned}
        try:
            await self.storage.leave(self.instance_id, held)
        except DATABASE_ERRORS as error:
            # Ending the session releases them, unless the database is what cannot be reached.
            log.warning("could not release leases on shutdown (they will expire): %s", error)
            await self.liveness.close()
            return
        await self.liveness.close()
        for worker in self.workers:
            worker.leases.forget()

    async def heartbeat(self) -> None:
        """Record this relay as live, renew its leases and refresh the live relays; if they
        changed, every worker rebalances at once (the other relays may have released a dead
        one's leases, which this relay's session check then no longer sees change)."""
        stalled = [w.sink.name for w in self.workers if not w.keeps_leases()]
        if stalled != self._stalled:
            log.warning("workers stuck in a call into their sink (leases given up): %s", stalled)
            self._stalled = stalled
        live = await self.storage.heartbeat(
            self.instance_id,
            socket.gethostname(),
            os.getpid(),
            self.settings.lease_ttl_seconds,
            stalled,
        )
        changed = set(live) != set(self.live_instances)
        self.live_instances = list(live)
        self.stalled_sinks = dict(live)
        if changed:
            self._rebalance_now()

    def _rebalance_now(self) -> None:
        for worker in self.workers:
            worker.leases.check_soon()
            worker.wakeup.set()

    async def _membership_changed(self, check: SessionCheck) -> None:
        """A relay died, left or joined: refresh the live relays and rebalance every worker
        now (a dead relay's partitions are free to claim)."""
        try:
            await self.heartbeat()
        except DATABASE_ERRORS as error:
            log.warning("heartbeat failed: %s", error)
            self.live_instances = sorted(check.live | {self.instance_id})
        self._rebalance_now()

    async def _heartbeat_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl_seconds / 3)
            try:
                await self.heartbeat()
            except DATABASE_ERRORS as error:
                log.warning("heartbeat failed: %s", error)
