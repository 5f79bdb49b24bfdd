"""The service as an operator runs it: ``fanout serve`` and ``fanout relay`` as processes."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from adapters.base import Sink
from gateway.operations.health import sink_status_rows
from support.api_process import api_server, clean_environment, spawn, write_config
from support.eventually import eventually
from support.stores import STORES, store_settings
from tests.acceptance.relay_support import World

API_KEY = "service-test-key-0123456789"
ORDERS = 500
PATH = ["confirmed", "processing", "shipped", "delivered", "refunded"]


async def seed(http: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer with both addresses and a well-stocked product, created over HTTP."""
    address = {"street_address": "1 Fan Out Way", "city": "Relay", "postal_code": "500"}
    customer = await http.post(
        "/customers",
        json={
            "email": f"service-{random.randrange(10**9)}@example.com",
            "first_name": "Service",
            "last_name": "Test",
            "addresses": [
                {**address, "address_type": "billing"},
                {**address, "address_type": "shipping"},
            ],
        },
    )
    product = await http.post(
        "/products",
        json={
            "sku": f"SVC-{random.randrange(10**9)}",
            "name": "Service test item",
            "base_price": "19.99",
            "inventory_quantity": ORDERS * 10,
        },
    )
    assert (customer.status_code, product.status_code) == (201, 201), customer.text + product.text
    return customer.json(), product.json()


async def place_and_move(
    http: httpx.AsyncClient, customer: dict[str, Any], product: dict[str, Any], index: int
) -> None:
    """One order over HTTP, then a random number of valid transitions, some cancelled."""
    rng = random.Random(index)
    addresses = {a["address_type"]: a["id"] for a in customer["addresses"]}
    placed = await http.post(
        "/orders",
        json={
            "customer_id": customer["id"],
            "billing_address_id": addresses["billing"],
            "shipping_address_id": addresses["shipping"],
            "items": [{"product_id": product["id"], "quantity": rng.randint(1, 3)}],
            "customer_segment": rng.choice(["retail", "vip"]),
        },
        headers={"Idempotency-Key": f"service-order-{index}"},
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    steps = rng.randint(0, len(PATH))
    for status in PATH[:steps]:
        moved = await http.post(
            f"/orders/{order['id']}/transitions",
            json={"status": status, "expected_version": order["version"]},
        )
        assert moved.status_code == 200, moved.text
        order = moved.json()
    if steps < 3 and rng.random() < 0.3:
        cancelled = await http.post(
            f"/orders/{order['id']}/transitions", json={"status": "cancelled"}
        )
        assert cancelled.status_code == 200, cancelled.text


async def test_orders_over_http_reach_every_store_and_sigterm_stops_both(
    world: World, stores: tuple[str, dict[str, Sink]], tmp_path: Path
) -> None:
    tag, _ = stores
    config = write_config(
        tmp_path,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "api": {"key": API_KEY},
            "relay": {"batch_size": 200, "poll_interval_seconds": 0.2},
            "sinks": {kind: store_settings(kind, tag) for kind in STORES},
        },
    )
    relay = await spawn(config, "relay")
    try:
        async with api_server(config) as api:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as http:
                customer, product = await seed(http)
                limit = asyncio.Semaphore(16)

                async def one(index: int) -> None:
                    async with limit:
                        await place_and_move(http, customer, product, index)

                try:
                    await asyncio.gather(*(one(index) for index in range(ORDERS)))
                except httpx.TransportError as error:
                    raise AssertionError(
                        f"{error!r}; the API's log:\n{api.server.log_text}"
                    ) from error
                readiness = (await http.get("/readyz")).json()

            async def relay_idle() -> bool:
                async with world.gateway.pool.acquire() as connection:
                    rows = await sink_status_rows(connection)
                return {row["sink"] for row in rows} == set(STORES) and all(
                    row["backlog"] == 0 and row["retrying"] == 0 for row in rows
                )

            await eventually(relay_idle, within=600)
            api_exit = await api.server.terminate()
        relay_exit = await relay.terminate()
    finally:
        await relay.kill()

    assert sorted((s["name"], s["ok"]) for s in readiness["sinks"]) == sorted(
        (kind, True) for kind in STORES
    )
    assert (api_exit, relay_exit) == (0, 0), api.server.log_text + relay.log_text
    assert "Traceback" not in api.server.log_text + relay.log_text
    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), "verify", "--json"],
        env=clean_environment(),
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = {row["sink"]: row for row in json.loads(verify.stdout)}
    assert set(report) == set(STORES)
    for row in report.values():
        assert (row["matched"], row["clean"]) == (ORDERS, True), row
    assert await world.gateway.pool.fetchval("SELECT count(*) FROM orders") == ORDERS
