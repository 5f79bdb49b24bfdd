"""A placement whose commit succeeded but whose answer was lost (the connection dropped
between PostgreSQL's commit and its reply, as during a failover): the API answers 503 with
Retry-After, and the client's retry with the same Idempotency-Key gets that order, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support.api_process import api_server, write_config
from support.shop import Shop
from tests.acceptance.postgres_proxy import AnswerLosingProxy
from tests.acceptance.relay_support import World


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[AnswerLosingProxy]:
    """A proxy to the test's database that can lose one commit's answer."""
    losing = AnswerLosingProxy(world.settings.postgres.url.get_secret_value())
    await losing.start()
    try:
        yield losing
    finally:
        await losing.close()


async def test_a_retry_after_a_lost_commit_answer_gets_the_committed_order_once(
    world: World, proxy: AnswerLosingProxy, tmp_path: Path
) -> None:
    customer = await world.shop.customer()
    product = await world.shop.product(stock=10)
    body = Shop.order(customer, (product, 2))
    key = {"Idempotency-Key": f"lost-answer-{uuid.uuid4()}"}
    config = write_config(tmp_path, {"postgres": {"url": proxy.url}})
    async with api_server(config) as api, httpx.AsyncClient(base_url=api.url) as client:
        assert (await client.get("/readyz")).status_code == 200
        proxy.armed = True
        lost = await client.post("/orders", json=body, headers=key)
        assert proxy.answers_lost == 1
        assert lost.status_code == 503
        assert lost.headers["retry-after"] == "1"

        retried = await client.post("/orders", json=body, headers=key)
    assert retried.status_code in (200, 201), retried.text
    assert retried.headers.get("idempotent-replayed") == "true"
    async with world.gateway.pool.acquire() as connection:
        orders = await connection.fetch(
            "SELECT id::text FROM orders WHERE customer_id = $1", customer.id
        )
        stock = await connection.fetchval(
            "SELECT inventory_quantity FROM products WHERE id = $1", product.id
        )
    assert [row["id"] for row in orders] == [retried.json()["id"]]
    assert stock == 8
