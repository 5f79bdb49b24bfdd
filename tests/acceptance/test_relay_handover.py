"""Two ``fanout relay`` processes, orders flowing: one dies and the other delivers its
partitions within a check of its session, not after its lease; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from support.eventually import eventually
from tests.acceptance.relay_support import World
from tests.acceptance.test_relay_process import (
    journal_entries,
    replayed_state,
    start_relay,
    wait_for_exit,
)

LEASE_TTL_SECONDS = 30.0
"""Far longer than the handover bound: a test passing on the lease rule alone cannot pass."""
HANDOVER_BOUND_SECONDS = 5.0
"""From the kill to a survivor's first commit in a dead relay's partition (target: under 2 s;
the bound leaves room for a loaded machine)."""


def write_config(world: World, directory: Path, name: str) -> tuple[Path, Path]:
    """A relay config of its own (its own journal), with long leases; it and its journal."""
    journal = directory / f"{name}.jsonl"
    config: dict[str, Any] = {
        "postgres": {"url": world.settings.postgres.url.get_secret_value()},
        "relay": {
            "batch_size": 100,
            "linger_ms": 0,
            "poll_interval_seconds": 0.05,
            "lease_ttl_seconds": LEASE_TTL_SECONDS,
            "session_check_interval_seconds": 0.5,
            "backoff_initial_seconds": 0.01,
            "backoff_max_seconds": 0.1,
        },
        "sinks": {"memory": {"type": "memory", "journal_path": str(journal)}},
        "logging": {"level": "WARNING"},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, journal


async def owners(world: World) -> dict[int, str | None]:
    rows = await world.gateway.pool.fetch(
        "SELECT partition, owner FROM relay_positions WHERE sink = 'memory'"
    )
    return {row["partition"]: row["owner"] for row in rows}


async def positions(world: World, partitions: set[int]) -> dict[int, tuple[int, int]]:
    rows = await world.gateway.pool.fetch(
        "SELECT partition, position_txid::text::bigint AS txid, position_id FROM relay_positions"
        " WHERE sink = 'memory' AND partition = ANY($1::smallint[])",
        sorted(partitions),
    )
    return {row["partition"]: (row["txid"], row["position_id"]) for row in rows}


@contextlib.asynccontextmanager
async def orders_flowing(world: World) -> AsyncIterator[None]:
    """Orders placed at a steady pace (about 100/s) until the block exits."""

    async def place() -> None:
        while True:
            await world.place_orders(5, transitions=1)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(place())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_killed_relay_s_partitions_are_delivered_by_the_survivor_within_seconds(
    world: World, tmp_path: Path
) -> None:
    config_a, journal_a = write_config(world, tmp_path, "a")
    config_b, journal_b = write_config(world, tmp_path, "b")
    processes: list[subprocess.Popen[str]] = []
    try:
        async with orders_flowing(world):
            processes.append(start_relay(config_a))
            await eventually(lambda: journal_entries(journal_a) != [])
            processes.append(start_relay(config_b))

            async def split() -> bool:
                return len(set((await owners(world)).values()) - {None}) == 2

            await eventually(split, within=30)
            await eventually(lambda: journal_entries(journal_b) != [], within=30)
            held = await owners(world)
            relay_b = await world.gateway.pool.fetchval(
                "SELECT id FROM relay_instances WHERE pid = $1", processes[1].pid
            )
            theirs = {p for p, owner in held.items() if owner == relay_b}
            assert theirs and relay_b is not None

            processes[1].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await wait_for_exit(processes[1], 30)
            at_kill = await positions(world, theirs)

            async def delivered_by_survivor() -> bool:
                now_held, now_at = await owners(world), await positions(world, theirs)
                return any(
                    now_held[p] not in (None, relay_b) and now_at[p] > at_kill[p] for p in theirs
                )

            await eventually(delivered_by_survivor, within=LEASE_TTL_SECONDS)
            handover = time.monotonic() - killed_at
        assert handover < HANDOVER_BOUND_SECONDS, f"handover took {handover:.2f} s"
        assert relay_b not in set((await owners(world)).values())
        assert not await world.gateway.pool.fetchval(
            "SELECT count(*) FROM relay_instances WHERE id = $1", relay_b
        )

        # Nothing lost: every order event reached one relay's journal, and the journals
        # applied together give every order's latest state.
        expected = await world.order_event_ids()

        def everything_delivered() -> bool:
            entries = journal_entries(journal_a) + journal_entries(journal_b)
            return {entry["event_id"] for entry in entries} >= expected

        await eventually(everything_delivered, within=60)
        entries = journal_entries(journal_a) + journal_entries(journal_b)
        assert replayed_state(entries) == await world.orders_in_postgres()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await wait_for_exit(process, 30)
