"""The relay of sharded mode: one :class:`~gateway.relay.process.Relay` per database (the
catalog's outbox and each shard's) in one process, and the saga's sweeper.

Each database's relay is the same as in one database: its own sinks' connections, positions
and leases, so several processes share each database's work exactly as they share one. A
shard that does not answer at start is tried again, with backoff, while the others are relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Self

from gateway.backoff import Backoff
from gateway.configuration.settings import Settings
from gateway.postgres.database import DatabaseUnavailable
from gateway.postgres.migrations import DatabaseRole
from gateway.postgres.topology import CATALOG, databases
from gateway.relay import upkeep
from gateway.relay.process import Relay
from gateway.sharding import sweeper

log = logging.getLogger("gateway.relay")


class ShardedRelay:
    """Relays every database's outbox to the sinks, and settles the saga's leftovers."""

    def __init__(
        self,
        relays: dict[str, Relay],
        settings: Settings,
        *,
        waiting: dict[str, Settings] | None = None,
        collect_stats: bool = False,
    ) -> None:
        self.relays = relays
        """Each connected database's relay, by database name (the catalog first)."""
        self.waiting = dict(waiting or {})
        """The settings of each shard that did not answer yet, by name: its relay connects,
        and starts, once it does."""
        self._sweep_interval_seconds = settings.relay.payment_sweep_interval_seconds
        self._shard_timeout_seconds = settings.postgres.shard_timeout_seconds
        self._backoff = Backoff(
            settings.relay.backoff_initial_seconds, settings.relay.backoff_max_seconds
        )
        self._collect_stats = collect_stats
        self._stopping = asyncio.Event()

    @classmethod
    async def connect(cls, settings: Settings, *, collect_stats: bool = False) -> Self:
        """A relay per configured database, each with its own pool and sinks. The catalog
        must answer; a shard that does not is left waiting, and ``run`` keeps trying it while
        the other databases' relays work."""
        relays: dict[str, Relay] = {}
        waiting: dict[str, Settings] = {}
        try:
            for database in databases(settings.postgres):
                own = settings.model_copy(update={"postgres": database.postgres})
                try:
                    relays[database.name] = await Relay.connect(own, collect_stats=collect_stats)
                except DatabaseUnavailable as error:
                    if database.role is not DatabaseRole.SHARD:
                        raise
                    log.warning("shard %s: not relayed until it answers: %s", database.name, error)
                    waiting[database.name] = own
        except BaseException:
            for relay in relays.values():
                await relay.close()
            raise
        return cls(relays, settings, waiting=waiting, collect_stats=collect_stats)

    async def sweep(self) -> sweeper.SweepResult:
        """One sweep of the saga's expired reservations and queued returns."""
        pools = {name: relay.pool for name, relay in self.relays.items() if relay.pool}
        catalog = pools.pop(CATALOG)
        return await sweeper.sweep(catalog, pools, timeout_seconds=self._shard_timeout_seconds)

    async def run(self, *, until_idle: bool = False) -> None:
        """Run every database's relay until stopped (or, with ``until_idle``, until none has
        anything left to deliver), sweeping meanwhile."""

        async def sweep_count() -> int:
            return (await self.sweep()).total

        sweeping = asyncio.create_task(
            upkeep.every(self._sweep_interval_seconds, "reservations settled", sweep_count),
            name="relay-saga-sweep",
        )
        runs = [
            asyncio.create_task(relay.run(until_idle=until_idle), name=f"relay-{name}")
            for name, relay in self.relays.items()
        ] + [
            asyncio.create_task(self._run_once_connected(name, until_idle), name=f"relay-{name}")
            for name in self.waiting
        ]
        try:
            await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
            # One database's relay failing stops the others: the process exits as one.
            self.stop()
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
        finally:
            self.stop()
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _run_once_connected(self, name: str, until_idle: bool) -> None:
        """Connect the waiting shard's relay, trying again with backoff while the shard does
        not answer, then run it (unless a stop came first)."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                relay = await Relay.connect(self.waiting[name], collect_stats=self._collect_stats)
            except DatabaseUnavailable as error:
                attempt += 1
                log.info("shard %s: still not answering: %s", name, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._backoff.delay(attempt))
                continue
            del self.waiting[name]
            self.relays[name] = relay
            log.info("shard %s answers: relaying it", name)
            if not self._stopping.is_set():
                await relay.run(until_idle=until_idle)
            return

    def stop(self) -> None:
        """Stop every database's relay (and stop waiting for the shards that did not answer)."""
        self._stopping.set()
        for relay in self.relays.values():
            relay.stop()

    async def close(self) -> None:
        """Close every database's relay."""
        for relay in self.relays.values():
            await relay.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
