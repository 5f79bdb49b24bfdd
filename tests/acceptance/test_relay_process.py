"""``fanout relay`` as a real process: SIGKILL mid-backlog, SIGTERM, and its metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gateway.relay.collector import YOUNG_GENERATION_THRESHOLD
from support.eventually import eventually
from tests.acceptance.relay_support import World, positions_owned


def write_config(
    world: World, directory: Path, logging: str = "WARNING", **relay: Any
) -> tuple[Path, Path]:
    """A config file with one journaling memory sink; returns it and the journal's path."""
    journal = directory / "journal.jsonl"
    config = {
        "postgres": {"url": world.settings.postgres.url.get_secret_value()},
        "relay": {
            "batch_size": 100,
            "linger_ms": 0,
            "poll_interval_seconds": 0.05,
            "lease_ttl_seconds": 1.5,
            "backoff_initial_seconds": 0.01,
            "backoff_max_seconds": 0.1,
            **relay,
        },
        "sinks": {
            "memory": {"type": "memory", "journal_path": str(journal), "delay_seconds": 0.02}
        },
        "logging": {"level": logging},
    }
    path = directory / "relay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, journal


def start_relay(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "relay", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journal_entries(journal: Path) -> list[dict[str, Any]]:
    """The journal's complete lines: a batch the relay is appending right now may be half there."""
    if not journal.exists():
        return []
    complete, _, _ = journal.read_text().rpartition("\n")
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def replayed_state(entries: list[dict[str, Any]]) -> dict[str, tuple[int, str, str]]:
    """What a version-guarded store holds after applying the journal in order."""
    state: dict[str, tuple[int, str, str]] = {}
    for entry in entries:
        document = entry["document"]
        current = state.get(document["order_id"])
        if current is None or current[0] < entry["version"]:
            state[document["order_id"]] = (entry["version"], document["status"], document["total"])
    return state


async def wait_for_exit(process: subprocess.Popen[str], within: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(process.wait), within)


async def test_sigkill_mid_backlog_then_restart_loses_nothing(world: World, tmp_path: Path) -> None:
    await world.place_orders(1_500, transitions=3)
    expected_events = await world.order_event_ids()
    config, journal = write_config(world, tmp_path)

    first = start_relay(config)
    try:
        await eventually(lambda: len(journal_entries(journal)) >= 1_000)
    finally:
        first.send_signal(signal.SIGKILL)
        await wait_for_exit(first, 30)
    applied_before_kill = len(journal_entries(journal))
    assert applied_before_kill < len(expected_events)  # killed in the middle of the backlog

    second = start_relay(config, "--until-idle")
    assert await wait_for_exit(second, 120) == 0, second.stderr.read() if second.stderr else ""

    entries = journal_entries(journal)
    assert {entry["event_id"] for entry in entries} >= expected_events
    assert replayed_state(entries) == await world.orders_in_postgres()


async def test_sigterm_finishes_in_flight_work_and_exits_zero(world: World, tmp_path: Path) -> None:
    await world.place_orders(1_000, transitions=1)
    config, journal = write_config(world, tmp_path)

    relay = start_relay(config)
    await eventually(lambda: len(journal_entries(journal)) >= 300)
    relay.send_signal(signal.SIGTERM)
    assert await wait_for_exit(relay, 30) == 0

    assert await positions_owned(world.gateway.pool, "memory") == [None] * 16
    assert await world.gateway.pool.fetchval("SELECT count(*) FROM relay_instances") == 0
    # Every event the positions count as delivered was applied before the process exited.
    delivered_by_position = await world.gateway.pool.fetch(
        """
        SELECT o.event_id FROM outbox o
        JOIN relay_positions p ON p.sink = 'memory' AND p.partition = o.partition
        WHERE (o.txid, o.id) <= (p.position_txid, p.position_id) AND o.aggregate_type = 'order'
        """
    )
    applied = {entry["event_id"] for entry in journal_entries(journal)}
    assert {str(r["event_id"]) for r in delivered_by_position} <= applied
    assert len(delivered_by_position) < len(await world.order_event_ids())  # stopped midway

    rest = start_relay(config, "--until-idle")
    assert await wait_for_exit(rest, 120) == 0
    entries = journal_entries(journal)
    assert {entry["event_id"] for entry in entries} >= await world.order_event_ids()
    assert replayed_state(entries) == await world.orders_in_postgres()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


async def test_metrics_are_served_while_relaying(world: World, tmp_path: Path) -> None:
    await world.place_orders(40)
    total = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")
    config, _ = write_config(world, tmp_path, stats_interval_seconds=0.1)
    port = free_port()

    relay = start_relay(config, "--metrics-port", str(port))
    try:
        delivered_line = f'fanout_events_delivered_total{{sink="memory"}} {float(total)}'

        async def delivered_everything() -> bool:
            try:
                text = await asyncio.to_thread(scrape, port)
            except OSError:
                return False
            return delivered_line in text and 'fanout_backlog_events{sink="memory"} 0.0' in text

        await eventually(delivered_everything)
        text = await asyncio.to_thread(scrape, port)
        for name in (
            "fanout_batch_seconds_bucket",
            "fanout_delivery_lag_seconds_bucket",
            "fanout_owned_partitions",
            "fanout_oldest_undelivered_seconds",
        ):
            assert name in text
    finally:
        relay.send_signal(signal.SIGTERM)
        assert await wait_for_exit(relay, 30) == 0


async def test_the_relay_process_tunes_its_garbage_collector(world: World, tmp_path: Path) -> None:
    await world.place_orders(3)
    config, _ = write_config(world, tmp_path, logging="INFO")

    relay = start_relay(config, "--until-idle")
    assert await wait_for_exit(relay, 60) == 0
    stderr = relay.stderr.read() if relay.stderr else ""

    assert re.search(r"garbage collector: [1-9]\d* start-up objects frozen", stderr), stderr
    assert f"young-generation threshold {YOUNG_GENERATION_THRESHOLD}" in stderr
