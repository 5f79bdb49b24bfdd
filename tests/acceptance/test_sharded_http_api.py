"""The HTTP API's acceptance tests of one database, run again with ``fanout serve`` in sharded
mode (the catalog and two shards on three servers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway import Customer, Gateway
from support.api_process import ApiServer, api_server, write_config
from support.servers import unused_port
from support.sharding import ShardedDatabases, connect_sharded
from support.shop import Shop

# Collected again here, over this module's sharded server and gateway.
from tests.acceptance.test_http_api import (  # noqa: F401
    API_KEY,
    MAX_BODY,
    client,
    customer,
    key,
    problem,
    product,
    test_bad_bodies_get_a_problem_and_write_nothing,
    test_customers_are_created_and_duplicates_conflict,
    test_get_order_answers_404_and_422,
    test_place_order_creates_then_replays_then_conflicts,
    test_the_idempotency_key_is_required_and_checked,
    test_transitions_check_the_version_and_the_state_machine,
)


@pytest.fixture(scope="module")
async def server(
    sharded: ShardedDatabases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """``fanout serve`` over the catalog and two shards."""
    config = write_config(
        tmp_path_factory.mktemp("sharded-api"),
        {
            "postgres": {
                "url": sharded.catalog,
                "shards": {name: {"url": url} for name, url in sharded.shards.items()},
            },
            "api": {"key": API_KEY, "max_body_bytes": MAX_BODY},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with api_server(config) as running:
        yield running


@pytest.fixture(scope="module")
async def gateway(sharded: ShardedDatabases) -> AsyncIterator[Gateway]:
    async with await connect_sharded(sharded) as connected:
        yield connected


async def test_with_a_shard_down_the_api_starts_and_serves_the_other_shard(
    sharded: ShardedDatabases, gateway: Gateway, shop: Shop, tmp_path: Path
) -> None:
    """``fanout serve`` started while beta does not answer (its URL names a port nothing
    listens on): it starts; ``/readyz`` answers 200 ``degraded`` with alpha up and beta down;
    an order of a customer of alpha is placed, one of beta's gets 503 with Retry-After."""
    assert gateway.topology.sharded
    stocked = await shop.product(stock=10)
    placed_on: dict[str, Customer] = {}
    for _ in range(64):
        created = await shop.customer()
        placed_on.setdefault(await gateway.sharding.shard_of_customer(created.id), created)
        if len(placed_on) == 2:
            break
    assert set(placed_on) == {"alpha", "beta"}
    shards = {**sharded.shards, "beta": f"postgresql://fanout@127.0.0.1:{unused_port()}/gone"}
    config = write_config(
        tmp_path,
        {
            "postgres": {
                "url": sharded.catalog,
                "shards": {name: {"url": url} for name, url in shards.items()},
            },
            "api": {"key": API_KEY},
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        api_server(config) as running,
        httpx.AsyncClient(base_url=running.url, headers=headers, timeout=30) as http,
    ):
        ready = await http.get("/readyz")
        on_alpha = await http.post(
            "/orders", json=Shop.order(placed_on["alpha"], (stocked, 1)), headers=key()
        )
        on_beta = await http.post(
            "/orders", json=Shop.order(placed_on["beta"], (stocked, 1)), headers=key()
        )

    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded" and body["postgres"]["ok"] is True
    states = {shard["name"]: shard for shard in body["shards"]}
    assert states["alpha"]["ok"] is True and states["alpha"]["backlog"] is not None
    assert states["beta"]["ok"] is False and states["beta"]["backlog"] is None
    assert on_alpha.status_code == 201, on_alpha.text
    assert uuid.UUID(on_alpha.json()["id"])
    assert problem(on_beta, 503, "database-unavailable")
    assert on_beta.headers["retry-after"] == "1"


async def test_readyz_lists_every_shard_when_all_answer(server: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        anonymous = await http.get("/readyz")
        ready = await http.get("/readyz", headers={"Authorization": f"Bearer {API_KEY}"})

    # Shard names are details: only a caller with the key sees them.
    assert (anonymous.status_code, anonymous.json()) == (200, {"status": "ready"})
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert [(shard["name"], shard["ok"]) for shard in body["shards"]] == [
        ("alpha", True),
        ("beta", True),
    ]
