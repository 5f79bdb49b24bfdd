"""The Redis sink on a real Redis Cluster (three masters, a replica each): a master killed
mid-delivery loses nothing the relay counted as delivered."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from adapters.base import Outcome
from adapters.readback import ReadBack
from adapters.redis import RedisSink, slot_groups
from gateway.operations.verify import verify
from support.eventually import eventually
from support.servers import ROOT, managed, server_url, start_server
from support.stores import drop_namespace, make_sink, order_event
from tests.acceptance.relay_support import World
from tests.acceptance.test_backfill import keep_ordering


def node_pid(port: int) -> int:
    services = Path(os.environ.get("FANOUT_SERVICES_DIR") or ROOT / ".services")
    return int((services / "redis-cluster" / str(port) / "redis.pid").read_text().split()[0])


async def cluster_serves_every_slot(port: int | str) -> bool:
    client = aioredis.Redis(host="127.0.0.1", port=int(port), decode_responses=True)
    try:
        info = await client.cluster("INFO")
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()
    return bool(info.get("cluster_state") == "ok")


async def test_a_master_killed_mid_delivery_loses_nothing(world: World) -> None:
    assert managed("redis-cluster"), "the failover test kills a node scripts/services.sh runs"
    sink = make_sink("redis-cluster", uuid.uuid4().hex[:10])
    assert isinstance(sink, RedisSink) and isinstance(sink, ReadBack)
    await sink.start()
    stop = asyncio.Event()
    relay = world.relay(sink, max_attempts=200, backoff_max_seconds=0.5, batch_size=100)
    relaying = asyncio.create_task(relay.run())
    ordering = asyncio.create_task(keep_ordering(world, stop, random.Random(3)))
    killed: int | None = None
    try:

        async def some_delivered() -> bool:
            return len([k async for k in sink.client.scan_iter(match=sink.key_prefix + "*")]) > 30

        await eventually(some_delivered, within=60)
        assert isinstance(sink.client, aioredis.RedisCluster)
        primaries = sink.client.get_primaries()
        victim = primaries[0]
        survivor = next(node for node in sink.client.get_nodes() if node.port != victim.port)
        killed = int(victim.port)
        os.kill(node_pid(killed), signal.SIGKILL)

        await eventually(lambda: cluster_serves_every_slot(survivor.port), within=60)
        before: int = await world.gateway.pool.fetchval("SELECT count(*) FROM orders")

        async def more_placed() -> bool:
            placed: int = await world.gateway.pool.fetchval("SELECT count(*) FROM orders")
            return placed > before + 20

        await eventually(more_placed, within=60)
        # The promoted master has no replica until the killed node rejoins (as its replica):
        # until then its writes cannot be acknowledged by a replica, and wait for it.
        start_server("redis-cluster")
        killed = None
        before = await world.gateway.pool.fetchval("SELECT count(*) FROM orders")
        await eventually(more_placed, within=60)
    finally:
        stop.set()
        await ordering
        relay.stop()
        await relaying

    try:
        await world.drain(sink, max_attempts=200, backoff_max_seconds=0.5)
        drift = await verify(world.gateway.pool, "redis-cluster", sink)
        orders = await world.gateway.pool.fetchval("SELECT count(*) FROM orders")
        assert drift.clean and drift.matched == orders, drift.counts()
        assert await world.gateway.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        if killed is not None:
            start_server("redis-cluster")  # the node rejoins, as a replica
        await drop_namespace(sink)
        await sink.close()


def test_keys_are_grouped_by_hash_slot_in_their_order() -> None:
    keys = ["order:{a}1", "order:{b}1", "order:{a}2", "order:{a}3", "order:{b}2"]
    assert sorted(slot_groups(keys)) == [[0, 2, 3], [1, 4]]


async def test_a_write_counts_only_once_the_replicas_asked_for_have_it() -> None:
    # Each master has one replica: asking for one is met, asking for two never is, and the
    # writes then fail as transient (to be sent again), naming the count the master gave.
    one, two = make_sink("redis-cluster", uuid.uuid4().hex[:10]), None
    assert isinstance(one, RedisSink)
    two = RedisSink(
        "two",
        server_url("redis-cluster"),
        key_prefix=one.key_prefix,
        cluster=True,
        wait_for_replicas=2,
        timeout_seconds=0.2,
    )
    try:
        await one.start()
        await two.start()
        events = [order_event(str(uuid.uuid4()), 1) for _ in range(40)]
        delivered = await one.apply(events)
        refused = await two.apply([order_event(e.aggregate_id, 2) for e in events])
        assert {d.outcome for d in delivered} == {Outcome.DELIVERED}
        assert {d.outcome for d in refused} == {Outcome.TRANSIENT}
        assert all("1 of 2 replicas" in (d.error or "") for d in refused)
    finally:
        await drop_namespace(one)
        await one.close()
        await two.close()
