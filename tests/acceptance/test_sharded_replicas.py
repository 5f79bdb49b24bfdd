"""Sharded mode with a shard's streaming replica: the shard ``alpha`` on ``postgres-shard-a``
reads from its hot standby ``postgres-shard-a-replica``; ``beta`` has none. Tokens are scoped
to the shard that issued them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway import Customer, Gateway
from gateway.operations.doctor import diagnose, healthy
from gateway.order_ids import shard_tag
from gateway.postgres.replicas import ReplicaState
from gateway.postgres.tokens import ConsistencyToken, format_token, parse_token
from support.api_process import api_server, write_config
from support.eventually import eventually
from support.servers import managed, server_url, start_server, stop_server
from support.sharding import REPLICA_SERVERS, ShardedDatabases, connect_sharded, sharded_databases
from support.shop import Shop

SHARD_REPLICA = REPLICA_SERVERS["alpha"]


@pytest.fixture
async def databases() -> AsyncIterator[ShardedDatabases]:
    async with sharded_databases() as found:
        yield found


@pytest.fixture
async def replica_admin() -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to alpha's standby; replay is resumed on the way out."""
    connection = await asyncpg.connect(server_url(SHARD_REPLICA))
    try:
        yield connection
    finally:
        await connection.execute("SELECT pg_wal_replay_resume()")
        await connection.close()


def replicated_settings(databases: ShardedDatabases, **postgres: Any) -> dict[str, Any]:
    """The keys of ``connect_sharded`` for alpha read from its standby."""
    return {
        "shard_replicas": databases.replica_urls(),
        "replica_check_interval_seconds": 0.1,
        **postgres,
    }


@pytest.fixture
async def replicated(databases: ShardedDatabases) -> AsyncIterator[tuple[Gateway, Shop]]:
    """A sharded gateway whose shard alpha reads from its standby once it streams."""
    settings = replicated_settings(databases, replica_wait_ms=1000)
    async with await connect_sharded(databases, **settings) as gateway:
        [replica] = gateway.replicas
        await eventually(lambda: replica.usable and replica.lag_seconds == 0.0, within=60)
        yield gateway, Shop(gateway)


async def customer_on(shop: Shop, shard: str) -> Customer:
    """A new customer that placement puts on ``shard``."""
    for _ in range(100):
        customer = await shop.customer()
        if await shop.gateway.sharding.shard_of_customer(customer.id) == shard:
            return customer
    raise AssertionError(f"no customer was placed on {shard} in 100 tries")


def alpha_replica(gateway: Gateway) -> ReplicaState:
    [replica] = gateway.replicas
    assert replica.shard == "alpha"
    return replica


async def test_a_read_with_a_write_s_token_sees_it_served_by_the_shard_s_replica(
    replicated: tuple[Gateway, Shop], replica_admin: asyncpg.Connection
) -> None:
    gateway, shop = replicated
    customer, product = await customer_on(shop, "alpha"), await shop.product(stock=1000)
    assert parse_token(customer.consistency_token or "").shard_tag == shard_tag("alpha")
    assert (await customer_on(shop, "beta")).consistency_token is None  # beta has no replica
    replica = alpha_replica(gateway)
    served = replica.reads
    for write in range(100):
        if write % 2 == 0:
            order = await gateway.place_order(shop.order(customer, (product, 1)))
        else:
            order = await gateway.transition(order.id, "confirmed")
        assert order.consistency_token is not None
        assert parse_token(order.consistency_token).shard_tag == shard_tag("alpha")
        read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
        assert (read.version, read.status) == (order.version, order.status)
    # The standby had replayed each write before its read (within replica_wait_ms): it served
    # them, not the shard's primary.
    assert replica.reads - served >= 95

    page = await gateway.customer_orders(
        customer.id, limit=1, consistency_token=order.consistency_token
    )
    assert [found.id for found in page.orders] == [order.id]
    request = {
        "address_type": "shipping",
        "street_address": "1 Replica Way",
        "city": "Springfield",
        "postal_code": "62701",
    }
    address = await gateway.add_address(customer.id, request)
    assert parse_token(address.consistency_token or "").shard_tag == shard_tag("alpha")

    # With replay paused, the standby cannot have a new write: a read with its token goes to
    # the shard's primary and still sees it.
    await replica_admin.execute("SELECT pg_wal_replay_pause()")
    latest = await gateway.place_order(shop.order(customer, (product, 1)))
    before = replica.reads
    read = await gateway.get_order(latest.id, consistency_token=latest.consistency_token)
    assert read.id == latest.id and replica.reads == before


async def test_a_token_of_another_database_sends_the_read_to_the_shard_s_primary(
    replicated: tuple[Gateway, Shop],
) -> None:
    gateway, shop = replicated
    customer, product = await customer_on(shop, "alpha"), await shop.product()
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    replica = alpha_replica(gateway)
    await eventually(lambda: replica.usable and replica.lag_seconds == 0.0, within=30)
    # Position 0: any replica of alpha has replayed it, were the token alpha's. From beta
    # (which has no replica, so hands out none: made as it would look) and from one database.
    foreign = [
        format_token(ConsistencyToken(0, shard_tag("beta"))),
        format_token(ConsistencyToken(0)),
    ]
    before = replica.reads
    for token in foreign:
        read = await gateway.get_order(order.id, consistency_token=token)
        assert read.id == order.id
        page = await gateway.customer_orders(customer.id, consistency_token=token)
        assert [found.id for found in page.orders] == [order.id]
        events = await gateway.order_events(order.id, consistency_token=token)
        assert events and events[0].stream_id == order.id
    assert replica.reads == before  # every one read on alpha's primary

    await gateway.get_order(order.id)  # without a token: the replica, within the lag limit
    own = await gateway.get_order(order.id, consistency_token=order.consistency_token)
    assert own.id == order.id and replica.reads == before + 2


async def test_with_the_shard_s_replica_stopped_reads_go_to_the_shard_s_primary(
    replicated: tuple[Gateway, Shop],
) -> None:
    if not managed(SHARD_REPLICA):
        pytest.fail("the standby must be run by scripts/services.sh for this test to stop it")
    gateway, shop = replicated
    customer, product = await customer_on(shop, "alpha"), await shop.product()
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    replica = alpha_replica(gateway)
    stop_server(SHARD_REPLICA)
    try:
        for _ in range(20):
            assert (await gateway.get_order(order.id)).id == order.id
            read = await gateway.get_order(order.id, consistency_token=order.consistency_token)
            assert read.version == order.version
        await eventually(lambda: not replica.reachable, within=10)
        assert not replica.as_dict(5.0)["in_use"]
        confirmed = await gateway.transition(order.id, "confirmed")
        read = await gateway.get_order(order.id, consistency_token=confirmed.consistency_token)
        assert read.status == "confirmed"
    finally:
        start_server(SHARD_REPLICA)
    await eventually(lambda: replica.usable, within=60)
    served = replica.reads

    async def replica_serves_again() -> bool:
        await gateway.get_order(order.id)
        return replica.reads > served

    await eventually(replica_serves_again, within=30)


async def test_doctor_lists_each_shard_s_replicas(databases: ShardedDatabases) -> None:
    settings = databases.settings(**replicated_settings(databases))
    report: dict[str, Any] = {}

    async def streaming() -> bool:
        # a standby an earlier test stopped lags past the limit until it has caught up
        nonlocal report
        report = await diagnose(settings.postgres, {}, timeout_seconds=10)
        shards = {shard["name"]: shard for shard in report["shards"]}
        replicas = shards["alpha"]["replicas"]
        return bool(replicas) and replicas[0]["in_use"] is True

    await eventually(streaming, within=60)
    shards = {shard["name"]: shard for shard in report["shards"]}
    [replica] = shards["alpha"]["replicas"]
    assert replica["shard"] == "alpha" and replica["state"] == "streaming"
    assert shards["beta"]["replicas"] == []
    assert report["replication"]["replicas"] == []  # the catalog has none
    assert healthy(report)


async def test_the_api_hands_out_shard_tokens_and_takes_any_well_formed_one(
    databases: ShardedDatabases, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        {
            "postgres": {
                "url": databases.catalog,
                "shards": {
                    name: {"url": url, "replicas": databases.replica_urls().get(name, [])}
                    for name, url in databases.shards.items()
                },
            },
            "sinks": {"memory": {"type": "memory"}},
        },
    )
    async with (
        api_server(config) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        await connect_sharded(databases) as gateway,
    ):
        shop = Shop(gateway)
        customer, product = await customer_on(shop, "alpha"), await shop.product()
        response = await http.post(
            "/orders",
            json=shop.order(customer, (product, 1)),
            headers={"Idempotency-Key": "sharded-replica-test"},
        )
        assert response.status_code == 201, response.text
        token = response.headers["Fanout-Consistency-Token"]
        assert parse_token(token).shard_tag == shard_tag("alpha")
        order_id = response.json()["id"]
        foreign = format_token(ConsistencyToken(1, shard_tag("beta")))
        for header in (token, foreign, "16B374D848"):
            read = await http.get(
                f"/orders/{order_id}", headers={"Fanout-Consistency-Token": header}
            )
            assert read.status_code == 200 and read.json()["id"] == order_id, header
        for junk in ("0A2F-", "A2F-16B3", "0A2F-16B3-1", "yesterday"):
            bad = await http.get(f"/orders/{order_id}", headers={"Fanout-Consistency-Token": junk})
            assert bad.status_code == 422, junk
            assert bad.json()["errors"][0]["field"] == "Fanout-Consistency-Token"

        async def ready_lists_alpha_s_replica() -> bool:
            replicas = (await http.get("/readyz")).json().get("replicas", [])
            return [(r["shard"], r["state"]) for r in replicas] == [("alpha", "streaming")]

        await eventually(ready_lists_alpha_s_replica, within=30)


async def test_a_customer_moved_onto_a_shard_with_a_replica_resolves_at_once(
    replicated: tuple[Gateway, Shop], replica_admin: asyncpg.Connection
) -> None:
    """A move onto alpha while its standby has not replayed the copy: a read that follows the
    tombstone, even without a token, is served by alpha's primary, not a 404 from the
    standby."""
    gateway, shop = replicated
    customer, product = await customer_on(shop, "beta"), await shop.product(stock=10)
    order = await gateway.place_order(shop.order(customer, (product, 1)))
    await replica_admin.execute("SELECT pg_wal_replay_pause()")
    moved = await gateway.sharding.move_customer(customer.id, "alpha")
    assert moved.move.state.value == "done"
    assert (await gateway.get_order(order.id)).id == order.id
    assert [o.id for o in (await gateway.customer_orders(customer.id)).orders] == [order.id]
    history = await gateway.order_events(order.id)
    assert [event.version for event in history] == [1]
