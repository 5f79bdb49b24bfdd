"""``fanout status``, ``fanout dlq`` and ``fanout sinks`` on a real database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from adapters.base import Outcome
from adapters.memory import MemorySink
from support.eventually import eventually
from tests.acceptance.relay_support import World, memory_state, positions_owned


def fanout(world: World, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["FANOUT_POSTGRES_URL"] = world.settings.postgres.url.get_secret_value()
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        input=input,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_status_reports_backlog_delivered_and_dead_letters(world: World) -> None:
    orders = await world.place_orders(8)
    poisoned = str(orders[0].id)
    sink = MemorySink()
    sink.fail(Outcome.PERMANENT, matching=lambda e: e.aggregate_id == poisoned, error="no map")
    await world.drain(sink)
    await world.place_orders(3)

    [status] = as_json(fanout(world, "status", "--json"))

    assert status["sink"] == "memory"
    assert status["delivered"] == 8 + 1 - 1  # eight orders and a customer, one dead
    assert status["dead_lettered"] == 1
    assert status["backlog"] == 3 + 1  # three new orders and their customer
    assert status["oldest_undelivered_seconds"] >= 0
    table = fanout(world, "status")
    assert table.returncode == 0 and "memory" in table.stdout


async def test_dlq_list_and_replay_through_the_cli(world: World) -> None:
    orders = await world.place_orders(5)
    poisoned = str(orders[2].id)
    sink = MemorySink()
    sink.fail(Outcome.PERMANENT, matching=lambda e: e.aggregate_id == poisoned, error="mapping")
    await world.drain(sink)

    [letter] = as_json(fanout(world, "dlq", "list", "--sink", "memory", "--json"))
    assert (letter["aggregate_id"], letter["reason"], letter["last_error"]) == (
        poisoned,
        "permanent",
        "mapping",
    )
    assert as_json(fanout(world, "dlq", "list", "--sink", "other", "--json")) == []

    neither = fanout(world, "dlq", "replay", "--sink", "memory")
    assert neither.returncode == 2 and "exactly one of --event ID and --all" in neither.stderr
    replay = fanout(world, "dlq", "replay", "--sink", "memory", "--event", letter["event_id"])
    assert replay.returncode == 0 and "requested replay of 1 dead letter" in replay.stdout

    sink.heal()
    await world.drain(sink)

    assert as_json(fanout(world, "dlq", "list", "--json")) == []
    assert memory_state(sink) == await world.orders_in_postgres()
    nothing = fanout(world, "dlq", "replay", "--sink", "memory", "--all")
    assert nothing.returncode == 1 and "no dead letter" in nothing.stderr


async def test_a_removed_sink_is_reported_then_retired_and_pruning_resumes(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink taken out of the configuration keeps its positions, and with them every event
    after them: status and pruning warn of it, and retiring it lets the outbox be pruned."""
    await world.place_orders(6)
    kept, removed = MemorySink("kept"), MemorySink("removed")
    await drain_everything(world, kept, removed)
    await world.place_orders(4)
    await drain_everything(world, kept)  # "removed" is no longer configured anywhere
    await world.gateway.pool.execute("UPDATE outbox SET occurred_at = now() - interval '1 day'")
    relay = world.relay(kept, retention_seconds=3600)

    listed = {row["sink"]: row for row in as_json(fanout(world, "sinks", "list", "--json"))}
    status = fanout(world, "status", "--json")
    with caplog.at_level(logging.WARNING, logger="gateway.relay"):
        held_back = await relay.prune()

    assert listed["removed"]["served"] is False and listed["removed"]["configured"] is False
    assert listed["removed"]["unserved_seconds"] >= 0
    assert "no relay has served sink 'removed'" in status.stderr
    assert "fanout sinks retire removed" in status.stderr
    assert "no relay has served sink 'removed'" in caplog.text
    assert held_back == 6 + 1  # only what "removed" had passed too

    refused = fanout(world, "sinks", "retire", "removed", input="n\n")
    assert refused.returncode == 1
    assert "removed" in {row["sink"] for row in as_json(fanout(world, "sinks", "list", "--json"))}

    retired = fanout(world, "sinks", "retire", "removed", "--yes")
    assert retired.returncode == 0, retired.stderr
    assert "removed 16 positions" in retired.stdout
    assert [row["sink"] for row in as_json(fanout(world, "sinks", "list", "--json"))] == ["kept"]
    assert await relay.prune() == 4 + 1
    assert await world.gateway.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def drain_everything(world: World, *sinks: MemorySink) -> None:
    """Relay until every sink holds every event of the outbox: a relay run until idle stops
    short of events whose transactions were still open elsewhere in the server."""
    total = await world.gateway.pool.fetchval("SELECT count(*) FROM outbox")

    async def delivered_all() -> bool:
        await world.drain(*sinks)
        return all(len(set(sink.deliveries)) == total for sink in sinks)

    await eventually(delivered_all)


async def test_a_sink_a_relay_serves_is_not_retired(world: World) -> None:
    await world.place_orders(2)
    sink = MemorySink("busy")
    # The CLI runs while this test's event loop waits for it: the lease must outlast that.
    relay = world.relay(sink, lease_ttl_seconds=60)
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.ready.wait(), 30)
        refused = fanout(world, "sinks", "retire", "busy", "--yes")
        unknown = fanout(world, "sinks", "retire", "never-registered", "--yes")
    finally:
        relay.stop()
        await running
    assert refused.returncode == 1
    assert "is served by the relay" in refused.stderr
    assert unknown.returncode == 1 and "sink never-registered not found" in unknown.stderr
    assert await positions_owned(world.gateway.pool, "busy") == [None] * 16
