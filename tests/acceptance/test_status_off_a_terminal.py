"""``fanout status`` printed to a pipe (no terminal, no ``COLUMNS``): every cell whole, every
row on one line."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from adapters.base import Outcome
from adapters.memory import MemorySink
from tests.acceptance.relay_support import World

MAPPING_ERROR = "mapper_parsing_exception: failed to parse field [total_amount] of type [double]"


async def test_status_into_a_pipe_keeps_every_cell_whole(world: World) -> None:
    orders = await world.place_orders(3)
    poisoned = str(orders[0].id)
    sink = MemorySink("elasticsearch")
    sink.fail(Outcome.PERMANENT, matching=lambda e: e.aggregate_id == poisoned, error="unmapped")
    await world.drain(sink)
    # The error a relay records while an event waits for a retry.
    await world.gateway.pool.execute(
        "UPDATE relay_positions SET last_error = $1 WHERE sink = 'elasticsearch'", MAPPING_ERROR
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_") and k != "COLUMNS"}
    env["FANOUT_POSTGRES_URL"] = world.settings.postgres.url.get_secret_value()

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "status"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout, result.stdout
    cells = [" ".join(re.sub("[┃│]", " ", line).split()) for line in result.stdout.splitlines()]
    assert "sink backlog oldest delivered retrying dead relays last error" in cells, result.stdout
    [row] = [line for line in result.stdout.splitlines() if "elasticsearch" in line]
    assert MAPPING_ERROR in row, result.stdout
    assert re.search(r"none for \d+s", row), result.stdout
