"""The sharded chaos run's check of the reservation saga, after the drain: a final sweep past
every reservation's expiry leaves none held, every product's stock is accounted for (initial
stock = inventory + units held + units in live orders), and a reconciliation (a dry run of
``fanout shards reconcile``) finds no live order without committed units and no committed
units without a live order."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from gateway import Gateway
from gateway.relay.errors import DATABASE_ERRORS

HELD = "SELECT count(*) FROM inventory_reservations WHERE status = 'held'"


async def initial_stock(catalog: asyncpg.Pool) -> dict[UUID, int]:
    """Every product's stock now (before the load)."""
    rows = await catalog.fetch("SELECT id, inventory_quantity FROM products")
    return {row["id"]: row["inventory_quantity"] for row in rows}


async def units_held(catalog: asyncpg.Pool) -> bool:
    """Whether some placement holds units now (reserved, not yet committed or released)."""
    return bool(
        await catalog.fetchval(
            "SELECT EXISTS (SELECT FROM inventory_reservations WHERE status = 'held')"
        )
    )


async def sweep_until_none_held(gateway: Gateway, within: float) -> int:
    """Sweep (what each relay does periodically) until no reservation is held, every one
    being past its expiry by then; the number still held when ``within`` seconds ran out."""
    deadline = time.monotonic() + within
    while True:
        try:
            await gateway.sharding.sweep()
            held: int = await gateway.pool.fetchval(HELD)
        except DATABASE_ERRORS:
            held = -1  # a pool reconnecting after the run's restarts: sweep again
        if held == 0 or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.5)


async def stock_discrepancies(
    gateway: Gateway, initial: Mapping[UUID, int]
) -> list[dict[str, Any]]:
    """Each product whose initial stock is not its inventory plus the units held by open
    reservations plus the units of its live (not cancelled) orders on every shard."""
    ids = list(initial)
    stock = {
        row["id"]: row["inventory_quantity"]
        for row in await gateway.pool.fetch(
            "SELECT id, inventory_quantity FROM products WHERE id = ANY($1)", ids
        )
    }
    held = dict.fromkeys(ids, 0)
    for row in await gateway.pool.fetch(
        "SELECT product_ids, quantities FROM inventory_reservations WHERE status = 'held'"
    ):
        for product_id, quantity in zip(row["product_ids"], row["quantities"], strict=True):
            if product_id in held:
                held[product_id] += quantity
    ordered = dict.fromkeys(ids, 0)
    for pool in gateway.sharding.shards.values():
        for row in await pool.fetch(
            """
            SELECT order_items.product_id, sum(order_items.quantity) AS units
            FROM order_items JOIN orders ON orders.id = order_items.order_id
            WHERE orders.status <> 'cancelled' AND order_items.product_id = ANY($1)
            GROUP BY order_items.product_id
            """,
            ids,
        ):
            ordered[row["product_id"]] += row["units"]
    return [
        {
            "product_id": str(product_id),
            "initial": units,
            "inventory": stock.get(product_id),
            "held": held[product_id],
            "in_live_orders": ordered[product_id],
        }
        for product_id, units in initial.items()
        if stock.get(product_id, 0) + held[product_id] + ordered[product_id] != units
    ]


async def reservations_by_status(catalog: asyncpg.Pool) -> dict[str, Any]:
    """How many reservations ended each way, and how many of them were settled only after
    they had expired (lapsed: their placement was cut off, and the sweeper settled them)."""
    rows = await catalog.fetch(
        """
        SELECT status, count(*) AS reservations,
               count(*) FILTER (WHERE settled_at > expires_at) AS after_expiry
        FROM inventory_reservations GROUP BY status
        """
    )
    return {
        "by_status": {row["status"]: row["reservations"] for row in rows},
        "settled_after_expiry": {
            row["status"]: row["after_expiry"] for row in rows if row["after_expiry"]
        },
    }


async def reconcile_dry_run(config: Path) -> dict[str, Any]:
    """``fanout shards reconcile --dry-run --json`` over ``config``: its exit code and its
    report."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "--config",
        str(config),
        "shards",
        "reconcile",
        "--dry-run",
        "--json",
        env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    try:
        found: dict[str, Any] = json.loads(stdout)
    except ValueError:
        found = {"output": stdout.decode(errors="replace")[-2000:]}
    found["exit_code"] = process.returncode
    if process.returncode:
        found["stderr"] = stderr.decode(errors="replace")[-2000:]
    return found


async def saga_report(
    gateway: Gateway, initial: Mapping[UUID, int], config: Path, within: float = 120
) -> dict[str, Any]:
    """The saga's state after the run: reservations left held after the final sweep, each
    product whose stock is not accounted for, what the reconciliation found, and how the
    reservations ended."""
    for pool in (gateway.pool, *gateway.sharding.shards.values()):
        # Pooled connections died with the servers' restarts.
        await pool.expire_connections()
    held = await sweep_until_none_held(gateway, within)
    return {
        "held_after_final_sweep": held,
        "stock_discrepancies": await stock_discrepancies(gateway, initial),
        "reconciliation": await reconcile_dry_run(config),
        "reservations": await reservations_by_status(gateway.pool),
    }


def saga_findings(report: Mapping[str, Any]) -> list[str]:
    """What the saga's report breaks: empty when inventory is exact and every live order has
    its units."""
    broken = []
    if report["held_after_final_sweep"]:
        broken.append(f"{report['held_after_final_sweep']} reservations held after the sweep")
    if report["stock_discrepancies"]:
        broken.append(f"stock not accounted for: {report['stock_discrepancies'][:5]}")
    reconciliation = report["reconciliation"]
    if reconciliation["exit_code"] != 0 or reconciliation.get("breaks"):
        broken.append(f"reconciliation found breaks: {reconciliation}")
    return broken
