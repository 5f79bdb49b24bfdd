"""The check at the end of ``bench/moves.py``: every order the load placed resolves where the
load left it, every customer lives on its directory's shard only with every order placed for
it, and a reconciliation finds nothing broken."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from bench.move_load import Ledger, Placed
from gateway import Customer, Gateway, NotFound


async def soundness(
    gateway: Gateway, ledger: Ledger, customers: Sequence[Customer], errors: Mapping[str, int]
) -> tuple[dict[str, Any], list[str]]:
    """What was checked, and every problem found (none: the run is sound); the load's failed
    requests (``errors``, by message) are problems too."""
    problems = [f"{count} request(s) failed: {error}" for error, count in errors.items()]
    problems += await _orders_resolve(gateway, ledger)
    ids = [customer.id for customer in customers]
    placed_for = Counter(placed.customer_id for placed in ledger.orders.values())
    held, found = await _where_customers_live(gateway, ids, placed_for)
    problems += found
    breaks = (await gateway.sharding.reconcile(repair=False)).breaks
    problems += [f"reconciliation: {found_break}" for found_break in breaks]
    checked = {
        "orders_resolved": len(ledger.orders),
        "customers": len(ids),
        "orders_held": held,
        "reconciliation_breaks": len(breaks),
        "failed_requests": sum(errors.values()),
    }
    return checked, problems


async def _orders_resolve(gateway: Gateway, ledger: Ledger) -> list[str]:
    """Each order through ``get_order``: found, of its customer, with the status and version
    the load left it at (unless a transition of it failed)."""
    problems: list[str] = []
    limit = asyncio.Semaphore(16)

    async def resolves(order_id: uuid.UUID, placed: Placed) -> None:
        async with limit:
            try:
                order = await gateway.get_order(order_id)
            except NotFound:
                problems.append(f"order {order_id} of customer {placed.customer_id}: not found")
                return
        if order.customer_id != placed.customer_id:
            problems.append(
                f"order {order_id}: of customer {order.customer_id}, placed for another"
            )
        elif order_id not in ledger.uncertain and (order.status, order.version) != (
            placed.status,
            placed.version,
        ):
            problems.append(
                f"order {order_id}: {order.status} v{order.version}, the load left it "
                f"{placed.status} v{placed.version}"
            )

    await asyncio.gather(*(resolves(order_id, p) for order_id, p in ledger.orders.items()))
    return problems


async def _where_customers_live(
    gateway: Gateway, ids: list[uuid.UUID], placed_for: Counter[uuid.UUID]
) -> tuple[int, list[str]]:
    """How many orders the shards hold for the customers ``ids``, and the problems: a
    customer or its orders on a shard its directory entry does not name, or not as many
    orders as ``placed_for`` says were placed."""
    problems: list[str] = []
    directory = {
        row["customer_id"]: row["shard"]
        for row in await gateway.pool.fetch(
            "SELECT customer_id, shard FROM customer_directory WHERE customer_id = ANY($1)", ids
        )
    }
    holders: dict[uuid.UUID, list[str]] = defaultdict(list)
    counted: Counter[uuid.UUID] = Counter()
    for shard, pool in gateway.sharding.shards.items():
        for row in await pool.fetch("SELECT id FROM customers WHERE id = ANY($1)", ids):
            holders[row["id"]].append(shard)
        for row in await pool.fetch(
            "SELECT customer_id, count(*) AS n FROM orders WHERE customer_id = ANY($1)"
            " GROUP BY customer_id",
            ids,
        ):
            if directory.get(row["customer_id"]) != shard:
                problems.append(f"customer {row['customer_id']}: {row['n']} order(s) on {shard}")
            counted[row["customer_id"]] += row["n"]
    for customer_id in ids:
        if holders[customer_id] != [directory.get(customer_id)]:
            problems.append(
                f"customer {customer_id}: on {holders[customer_id]}, the directory says "
                f"{directory.get(customer_id)}"
            )
        if counted[customer_id] != placed_for[customer_id]:
            problems.append(
                f"customer {customer_id}: {counted[customer_id]} orders held, "
                f"{placed_for[customer_id]} placed"
            )
    return sum(counted.values()), problems
