"""The relay of sharded mode: one :class:`~gateway.relay.process.Relay` per database (the
catalog's outbox and each shard's) in one process, and the saga's sweeper.

Each database's relay is the same as in one database: its own sinks' connections, positions
and leases, so several processes share each database's work exactly as they share one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Self

from gateway.configuration.settings import Settings
from gateway.relay import upkeep
from gateway.relay.process import Relay
from gateway.sharding import sweeper
from gateway.sharding.topology import CATALOG, databases

log = logging.getLogger("gateway.relay")


class ShardedRelay:
    """Relays every database's outbox to the sinks, and settles the saga's leftovers."""

    def __init__(self, relays: dict[str, Relay], sweep_interval_seconds: float) -> None:
        self.relays = relays
        """Each database's relay, by database name (the catalog first)."""
        self._sweep_interval_seconds = sweep_interval_seconds

    @classmethod
    async def connect(cls, settings: Settings, *, collect_stats: bool = False) -> Self:
        """A relay per configured database, each with its own pool and sinks."""
        relays: dict[str, Relay] = {}
        try:
            for database in databases(settings.postgres):
                own = settings.model_copy(update={"postgres": database.postgres})
                relays[database.name] = await Relay.connect(own, collect_stats=collect_stats)
        except BaseException:
            for relay in relays.values():
                await relay.close()
            raise
        return cls(relays, settings.relay.payment_sweep_interval_seconds)

    async def sweep(self) -> sweeper.SweepResult:
        """One sweep of the saga's expired reservations and queued returns."""
        pools = {name: relay.pool for name, relay in self.relays.items() if relay.pool}
        catalog = pools.pop(CATALOG)
        return await sweeper.sweep(catalog, pools)

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

    def stop(self) -> None:
        """Stop every database's relay."""
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
