"""Orders through the relay into all four real stores, verified with ``fanout verify``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from adapters.base import Outcome, Sink
from adapters.readback import ReadBack
from gateway.operations.verify import verify, verify_orders
from gateway.relay.tables import sink_totals
from support.eventually import eventually
from support.servers import managed, start_server, stop_server, unused_port
from support.stores import STORES, make_sink, order_event, store_settings
from tests.acceptance.relay_support import World

PATH = ["confirmed", "processing", "shipped", "delivered", "refunded"]


async def random_orders(world: World, count: int, rng: random.Random) -> None:
    """``count`` orders, each taken a random number of valid steps, some cancelled."""
    customer = await world.shop.customer()
    product = await world.shop.product(stock=count * 10)
    semaphore = asyncio.Semaphore(16)

    async def one() -> None:
        async with semaphore:
            order = await world.gateway.place_order(world.shop.order(customer, (product, 1)))
            steps = rng.randint(0, len(PATH))
            for status in PATH[:steps]:
                order = await world.gateway.transition(order.id, status)
            if steps < 3 and rng.random() < 0.3:
                await world.gateway.transition(order.id, "cancelled")

    await asyncio.gather(*(one() for _ in range(count)))


async def drift_of(world: World, sinks: dict[str, Sink]) -> dict[str, object]:
    results: dict[str, object] = {}
    for name, sink in sinks.items():
        assert isinstance(sink, ReadBack)
        results[name] = (await verify(world.gateway.pool, name, sink)).counts()
    return results


def fanout_verify(
    world: World, tag: str, directory: Path, **overrides: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    """``fanout verify --json`` over the four stores in namespace ``tag`` (``overrides``
    change a store's settings)."""
    config = {
        "postgres": {"url": world.settings.postgres.url.get_secret_value()},
        "sinks": {
            kind: {**store_settings(kind, tag), **overrides.get(kind, {})} for kind in STORES
        },
    }
    path = directory / "verify.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(path), "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )


async def test_two_thousand_orders_reach_every_store_without_drift(
    world: World, stores: tuple[str, dict[str, Sink]], tmp_path: Path
) -> None:
    tag, sinks = stores
    await random_orders(world, 2_000, random.Random(7))

    await world.drain(*sinks.values(), batch_size=500, within=900)

    result = fanout_verify(world, tag, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = {row["sink"]: row for row in json.loads(result.stdout)}
    assert set(report) == set(STORES)
    for row in report.values():
        assert (row["matched"], row["clean"]) == (2_000, True), row


async def test_verify_reports_drift_and_exits_one(
    world: World, stores: tuple[str, dict[str, Sink]], tmp_path: Path
) -> None:
    tag, sinks = stores
    orders = await world.place_orders(5)
    await world.drain(*sinks.values())
    await world.gateway.transition(orders[0].id, "confirmed")  # not relayed: stale everywhere
    stray = order_event(str(uuid.uuid4()), 1, sequence=10**6)
    for sink in sinks.values():
        await sink.apply([stray])  # an order PostgreSQL never had: extra everywhere

    result = fanout_verify(world, tag, tmp_path)

    assert result.returncode == 1
    for row in json.loads(result.stdout):
        assert (row["matched"], row["stale"], row["extra"], row["clean"]) == (4, 1, 1, False), row


async def test_verify_names_a_store_it_cannot_read_and_exits_one(
    world: World, stores: tuple[str, dict[str, Sink]], tmp_path: Path
) -> None:
    """Redis configured at a port nothing listens on: the other stores are still compared,
    Redis is reported unreadable with its client's error, and the exit code is 1, with no
    traceback."""
    tag, sinks = stores
    await world.place_orders(3)
    await world.drain(*sinks.values())

    result = fanout_verify(
        world, tag, tmp_path, redis={"url": f"redis://127.0.0.1:{unused_port()}/0"}
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report = {row["sink"]: row for row in json.loads(result.stdout)}
    assert report["redis"]["clean"] is False
    assert report["redis"]["unreadable"].startswith("ConnectionError"), report["redis"]
    assert f"redis: could not be read: {report['redis']['unreadable']}" in result.stderr
    for kind in set(STORES) - {"redis"}:
        row = report[kind]
        assert (row["matched"], row["unreadable"], row["clean"]) == (3, None, True), row


async def test_a_run_check_of_a_store_it_cannot_read_says_so(world: World) -> None:
    """What a load test's drift check calls: an unreadable store ends the comparison with
    the store's error recorded, instead of raising."""
    orders = await world.place_orders(2)
    sink = make_sink("redis", "unread", url=f"redis://127.0.0.1:{unused_port()}/0")
    assert isinstance(sink, ReadBack)
    try:
        drift = await verify_orders(world.gateway.pool, "redis", sink, [o.id for o in orders])
    finally:
        await sink.close()

    assert drift.unreadable is not None and drift.unreadable.startswith("ConnectionError")
    assert not drift.clean
    assert drift.counts()["unreadable"] == drift.unreadable


@pytest.mark.parametrize("kind", STORES)
async def test_a_store_outage_during_the_run_ends_without_drift(
    world: World, stores: tuple[str, dict[str, Sink]], kind: str
) -> None:
    """2,000 orders placed while the relay runs; the store's server is stopped for a third."""
    if not managed(kind):
        pytest.skip(f"the {kind} server was not started by scripts/services.sh")
    _, sinks = stores
    others = {name: sink for name, sink in sinks.items() if name != kind}
    rng = random.Random(kind)
    relay = world.relay(*sinks.values(), batch_size=200)
    running = asyncio.create_task(relay.run())
    try:
        await random_orders(world, 700, rng)
        await asyncio.to_thread(stop_server, kind)
        try:
            probe = make_sink(kind, "probe")
            [outcome] = await probe.apply([order_event(str(uuid.uuid4()), 1)])
            assert outcome.outcome is Outcome.TRANSIENT, outcome.error
            assert not (await probe.health()).ok
            await probe.close()

            await random_orders(world, 700, rng)
            await eventually(lambda: _clean(world, others), within=300)
            await eventually(lambda: _retrying(world, kind), within=60)
        finally:
            await asyncio.to_thread(start_server, kind)
        await random_orders(world, 600, rng)
        await eventually(lambda: _clean(world, sinks), within=600)
    finally:
        relay.stop()
        await running
    assert await world.gateway.pool.fetchval("SELECT count(*) FROM orders") == 2_000
    totals = {t.sink: t for t in await sink_totals(world.gateway.pool)}
    assert totals[kind].dead_lettered == 0


async def _clean(world: World, sinks: dict[str, Sink]) -> bool:
    try:
        drift = await drift_of(world, sinks)
    except Exception:  # a store coming back up may refuse a read for a moment
        return False
    return all(row["clean"] for row in drift.values())  # type: ignore[index]


async def _retrying(world: World, sink: str) -> bool:
    totals = {t.sink: t for t in await sink_totals(world.gateway.pool)}
    return sink in totals and totals[sink].retrying > 0
