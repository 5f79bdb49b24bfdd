"""``fanout status`` and ``fanout dlq`` on a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from adapters.base import Outcome
from adapters.memory import MemorySink
from tests.acceptance.relay_support import World, memory_state


def fanout(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    env["FANOUT_POSTGRES_URL"] = world.settings.postgres.url.get_secret_value()
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True
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
