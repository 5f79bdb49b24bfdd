"""Helpers for relay tests: a fresh database per test, orders in bulk, and relays."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters.base import Sink
from adapters.memory import MemorySink
from gateway import Event, Gateway, Settings
from gateway.relay import Relay
from support.shop import Shop
from tests.relay_settings import FAST


@dataclass
class World:
    """One test's database, gateway and shop."""

    settings: Settings
    gateway: Gateway
    shop: Shop

    def relay(self, *sinks: Sink, **overrides: Any) -> Relay:
        """A relay over this database (sharing the gateway's pool) with fast settings."""
        return Relay(
            self.gateway.pool,
            self.settings.postgres,
            list(sinks),
            FAST.model_copy(update=overrides),
            start_from={s.name: overrides.get("start_from", "beginning") for s in sinks},
        )

    async def drain(self, *sinks: Sink, within: float = 120, **overrides: Any) -> None:
        """Run a relay over ``sinks`` until nothing is left to deliver."""
        await asyncio.wait_for(self.relay(*sinks, **overrides).run(until_idle=True), within)

    async def place_orders(self, count: int, transitions: int = 0) -> list[Any]:
        """``count`` orders, each moved ``transitions`` steps along the happy path."""
        customer = await self.shop.customer()
        product = await self.shop.product(stock=count * 10)
        path = ["confirmed", "processing", "shipped", "delivered", "refunded"][:transitions]
        semaphore = asyncio.Semaphore(16)

        async def one() -> Any:
            async with semaphore:
                order = await self.gateway.place_order(self.shop.order(customer, (product, 1)))
                for status in path:
                    order = await self.gateway.transition(order.id, status)
                return order

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def publish_items(self, count: int) -> None:
        """``count`` events of distinct aggregates in one transaction, numbered in their
        payloads from 0."""
        events = [
            Event(
                aggregate_type="item",
                aggregate_id=str(number),
                event_type="item.added",
                payload={"number": number},
            )
            for number in range(count)
        ]
        async with self.gateway.pool.acquire() as connection, connection.transaction():
            await self.gateway.publish(connection, events)

    async def orders_in_postgres(self) -> dict[str, tuple[int, str, str]]:
        """order id -> (version, status, total) as PostgreSQL holds it."""
        rows = await self.gateway.pool.fetch("SELECT id, version, status, total_amount FROM orders")
        return {str(r["id"]): (r["version"], r["status"], f"{r['total_amount']:.2f}") for r in rows}

    async def order_event_ids(self) -> set[str]:
        """Every order event's id in the outbox."""
        rows = await self.gateway.pool.fetch(
            "SELECT event_id FROM outbox WHERE aggregate_type = 'order'"
        )
        return {str(r["event_id"]) for r in rows}


def memory_state(sink: MemorySink) -> dict[str, tuple[int, str, str]]:
    """order id -> (version, status, total) as the memory sink holds it."""
    return {
        document["order_id"]: (version, document["status"], document["total"])
        for version, document in sink.state.values()
    }


async def positions_owned(pool: asyncpg.Pool, sink: str) -> list[str | None]:
    """The owner of each partition of ``sink``."""
    rows = await pool.fetch(
        "SELECT owner FROM relay_positions WHERE sink = $1 ORDER BY partition", sink
    )
    return [r["owner"] for r in rows]
