"""``fanout doctor`` on a real database, with real and unreachable stores."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from adapters.kafka import KafkaSink
from adapters.memory import MemorySink
from support.api_process import clean_environment, write_config
from support.servers import server_url
from tests.acceptance.relay_support import World


async def doctor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "--config", str(config), "doctor", *args],
        env=clean_environment(),
        capture_output=True,
        text=True,
    )


def config_for(world: World, directory: Path, sinks: dict[str, Any]) -> Path:
    url = world.settings.postgres.url.get_secret_value()
    return write_config(directory, {"postgres": {"url": url}, "sinks": sinks})


async def test_doctor_reports_every_section_of_a_real_database(
    world: World, tmp_path: Path
) -> None:
    await world.place_orders(3)
    await world.drain(MemorySink())
    await world.place_orders(2)
    await world.gateway.pool.execute("CREATE INDEX doctor_never_scanned ON orders (notes)")
    config = config_for(world, tmp_path, {"cache": {"type": "redis", "url": server_url("redis")}})
    holder = await asyncpg.connect(world.settings.postgres.url.get_secret_value())
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE orders IN SHARE MODE")
            result = await doctor(config, "--json")
    finally:
        await holder.close()

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {
        "postgres",
        "connections",
        "locks",
        "statements",
        "indexes",
        "outbox",
        "payments",
        "replication",
        "sinks",
    }
    assert report["payments"] == {"needing_attention": {}, "latest": []}
    assert report["replication"]["replicas"] == []  # none configured
    assert report["postgres"]["ok"] is True
    assert report["postgres"]["server_version"].startswith("15")
    states = {row["state"]: row for row in report["connections"]}
    assert "idle in transaction" in states and states["idle in transaction"]["connections"] >= 1
    assert states["idle in transaction"]["oldest_transaction_seconds"] >= 0
    assert {"relation": "orders", "mode": "ShareLock", "granted": True} in [
        {key: row[key] for key in ("relation", "mode", "granted")} for row in report["locks"]
    ]
    statements = report["statements"]
    assert statements["available"] is False and "not installed" in statements["detail"]
    indexes = {row["index_name"]: row for row in report["indexes"]}
    assert indexes["doctor_never_scanned"]["unused"] is True
    assert indexes["orders_pkey"]["unused"] is False
    assert report["outbox"]["events"] == await world.gateway.pool.fetchval(
        "SELECT count(*) FROM outbox"
    )
    [memory] = report["outbox"]["sinks"]
    assert memory["sink"] == "memory" and memory["backlog"] > 0
    [cache] = report["sinks"]
    assert (cache["name"], cache["ok"], cache["detail"]) == ("cache", True, "PONG")


async def test_doctor_shows_slow_statements_and_fails_on_a_down_store(
    world: World, tmp_path: Path
) -> None:
    await world.gateway.pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await world.place_orders(2)
    config = config_for(
        world, tmp_path, {"cache": {"type": "redis", "url": "redis://127.0.0.1:1/0"}}
    )

    as_json = await doctor(config, "--json", "--statements", "5")
    as_tables = await doctor(config)

    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    statements = report["statements"]
    assert statements["available"] is True
    assert 0 < len(statements["statements"]) <= 5
    assert {"query", "calls", "mean_ms", "max_ms", "total_ms"} <= set(statements["statements"][0])
    [cache] = report["sinks"]
    assert cache["ok"] is False and "ConnectionError" in cache["detail"]
    assert as_tables.returncode == 1
    for title in ("Connections by state", "Locks by relation", "Slowest statements", "Sinks"):
        assert title in as_tables.stdout


async def test_a_kafka_sink_answers_its_health_check_without_being_started() -> None:
    sink = KafkaSink("events", server_url("kafka"), timeout_seconds=10)
    try:
        health = await sink.health()
    finally:
        await sink.close()

    assert health.ok, health.detail
    assert health.detail.endswith("broker(s)")


async def test_a_kafka_sink_with_no_broker_is_down_within_its_timeout() -> None:
    sink = KafkaSink("events", "kafka://127.0.0.1:1", timeout_seconds=2)
    try:
        health = await asyncio.wait_for(sink.health(), 10)
    finally:
        await sink.close()

    assert not health.ok
    assert health.detail != "not started"


async def test_doctor_with_a_healthy_kafka_broker_passes(world: World, tmp_path: Path) -> None:
    config = config_for(world, tmp_path, {"events": {"type": "kafka", "url": server_url("kafka")}})

    result = await doctor(config, "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    [events] = json.loads(result.stdout)["sinks"]
    assert events["name"] == "events" and events["ok"] is True, events
