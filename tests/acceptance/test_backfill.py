"""``fanout backfill`` against the real stores: a store wiped while orders keep coming is
rebuilt while the relay runs, and an interrupted backfill resumes where it stopped."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path

from adapters.base import Sink
from adapters.elasticsearch import ElasticsearchSink
from adapters.mongo import MongoSink
from adapters.readback import ReadBack
from adapters.redis import RedisSink
from gateway.operations.verify import verify
from support.api_process import start_fanout, write_config
from support.eventually import eventually
from support.stores import STORES, make_sink, store_settings
from tests.acceptance.relay_support import World
from tests.acceptance.test_history import fanout

PATH = ["confirmed", "processing", "shipped", "delivered"]


async def wipe(sink: Sink) -> None:
    """Lose the store's projection: drop the index, empty the collection, delete the keys."""
    match sink:
        case MongoSink():
            await sink.collection.delete_many({})
        case RedisSink():
            keys = [key async for key in sink.client.scan_iter(match=sink.key_prefix + "*")]
            if keys:
                await sink.client.delete(*keys)
        case ElasticsearchSink():
            await sink.client.indices.delete(index=sink.index)
            await sink.start()  # the index again, empty, with its mapping
        case _:
            raise AssertionError(f"no wipe for {sink!r}")


async def keep_ordering(world: World, stop: asyncio.Event, rng: random.Random) -> int:
    """Place orders and move them along until ``stop``; how many were placed."""
    customer = await world.shop.customer()
    product = await world.shop.product(stock=1_000_000)
    placed = 0
    while not stop.is_set():
        order = await world.gateway.place_order(world.shop.order(customer, (product, 1)))
        placed += 1
        for status in PATH[: rng.randint(0, len(PATH))]:
            order = await world.gateway.transition(order.id, status)
        await asyncio.sleep(0)
    return placed


def config_of(world: World, tag: str, directory: Path) -> Path:
    return write_config(
        directory,
        {
            "postgres": {"url": world.settings.postgres.url.get_secret_value()},
            "sinks": {kind: store_settings(kind, tag) for kind in STORES},
        },
    )


async def test_a_store_wiped_under_load_is_rebuilt_while_the_relay_runs(
    world: World, stores: tuple[str, dict[str, Sink]], tmp_path: Path
) -> None:
    tag, sinks = stores
    rng = random.Random(5)
    await world.place_orders(150, transitions=2)
    await world.drain(*sinks.values(), batch_size=200)
    config = config_of(world, tag, tmp_path)

    wiped = ("redis", "elasticsearch", "mongodb")
    for kind in wiped:
        await wipe(sinks[kind])
    stop = asyncio.Event()
    relay = world.relay(*sinks.values(), batch_size=200)
    relaying = asyncio.create_task(relay.run())
    ordering = asyncio.create_task(keep_ordering(world, stop, rng))
    try:
        runs = await asyncio.gather(
            *(fanout(config, "backfill", "--sink", kind, "--json") for kind in wiped)
        )
    finally:
        stop.set()
        placed_meanwhile = await ordering
        relay.stop()
        await relaying

    for kind, ran in zip(wiped, runs, strict=True):
        assert ran.returncode == 0, (kind, ran.stderr)
        result = json.loads(ran.stdout)
        assert result["orders"] >= 150 and result["permanent_failures"] == 0, result
    assert placed_meanwhile > 0
    await world.drain(*sinks.values(), batch_size=200)
    total = 150 + placed_meanwhile
    for name, sink in sinks.items():
        assert isinstance(sink, ReadBack)
        drift = await verify(world.gateway.pool, name, sink)
        assert drift.clean and drift.matched == total, (name, drift.counts())


async def test_an_interrupted_backfill_resumes_after_its_last_batch(
    world: World, tmp_path: Path
) -> None:
    tag = tmp_path.name[-10:].replace("-", "_")
    sink = make_sink("redis", tag)
    await sink.start()
    try:
        await world.place_orders(600)
        config = config_of(world, tag, tmp_path)
        process = await start_fanout(
            config, "backfill", "--sink", "redis", "--rate", "300", "--batch-size", "50"
        )

        async def some_done() -> bool:
            done = await world.gateway.pool.fetchval(
                "SELECT orders_done FROM backfills WHERE sink = 'redis'"
            )
            return done is not None and done >= 100

        await eventually(some_done, within=60)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        interrupted = await world.gateway.pool.fetchrow(
            "SELECT orders_done, finished_at FROM backfills WHERE sink = 'redis'"
        )
        assert interrupted is not None
        assert interrupted["finished_at"] is None and 100 <= interrupted["orders_done"] < 600

        other_scope = await fanout(
            config, "backfill", "--sink", "redis", "--since", "2026-01-01T00:00:00Z"
        )
        assert other_scope.returncode == 1 and "--since" in other_scope.stderr

        resumed = await fanout(config, "backfill", "--sink", "redis", "--json")

        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)
        assert result["resumed_after"] == interrupted["orders_done"]
        assert result["orders"] == 600 - interrupted["orders_done"]
        assert isinstance(sink, ReadBack)
        drift = await verify(world.gateway.pool, "redis", sink)
        assert drift.clean and drift.matched == 600, drift.counts()
        unknown = await fanout(config, "backfill", "--sink", "nowhere")
        assert unknown.returncode == 2 and "sinks.nowhere" in unknown.stderr
        unreachable = write_config(
            tmp_path,
            {
                "postgres": {"url": world.settings.postgres.url.get_secret_value()},
                "sinks": {"redis": {"type": "redis", "url": "redis://127.0.0.1:9/0"}},
            },
            "unreachable.yaml",
        )
        down = await fanout(unreachable, "backfill", "--sink", "redis")
        assert down.returncode == 1 and "cannot be started" in down.stderr
        assert "Traceback" not in down.stderr
    finally:
        keys = [key async for key in sink.client.scan_iter(match=sink.key_prefix + "*")]  # type: ignore[attr-defined]
        if keys:
            await sink.client.delete(*keys)  # type: ignore[attr-defined]
        await sink.close()
