"""Handover: how soon a SIGKILLed relay's partitions are delivered again by the survivors.

Three ``fanout relay`` processes deliver to Redis while orders are placed at a steady rate.
Each round SIGKILLs one of them and measures, from the kill, the time until a survivor has
committed a delivery in one of the killed relay's partitions (its position there moved past
where it stood at the kill, under another owner); then a new relay is started in its place and
the partitions are split three ways again before the next kill.

The same rounds run twice, side by side on the same database, Redis and load:

- ``session``: the relay of this tree (a dead relay is found by its ended PostgreSQL session,
  checked every ``relay.session_check_interval_seconds``);
- ``lease``: the relay of ``--lease-tree`` (a tree without sessions, e.g. from ``git archive``
  of an earlier commit), where a dead relay's partitions wait for its lease to expire.

Both use the default ``relay.lease_ttl_seconds`` (10 s). Also measured: the transactions per
second each idle relay costs PostgreSQL (``pg_stat_database.xact_commit``), for both trees.
At the end, every order's summary in Redis must match PostgreSQL, and every position must
have passed every event: nothing lost.

    .venv/bin/python -m bench.handover [--kills 20] [--lease-kills 20] [--rate 100]
        [--lease-tree /path/to/an/earlier/tree]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import yaml

from bench.common import scratch_gateway, write_results
from bench.write_path import seed
from gateway import Gateway
from support.servers import server_url

ROOT = Path(__file__).resolve().parent.parent
Probe = asyncpg.Connection
RELAYS = 3
ORDERS_IN_FLIGHT = 8
SETTLE_WITHIN_SECONDS = 180.0
"""Bound on each wait (a relay process starting on a loaded machine may take tens of seconds)."""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class RelayProcess:
    """A ``fanout relay`` subprocess of a given source tree."""

    def __init__(self, tree: Path, config: Path, log: Path) -> None:
        self.tree, self.config, self.log = tree, config, log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(self.config),
                "relay",
                cwd=self.tree,
                stdout=output,
                stderr=output,
                env={k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except TimeoutError:
                await self.kill()


@contextlib.asynccontextmanager
async def orders_at(gateway: Gateway, rate: float) -> AsyncIterator[dict[str, float]]:
    """Orders placed at ``rate``/s (each confirmed once), at most ``ORDERS_IN_FLIGHT`` at a
    time (a loaded machine places fewer rather than queueing without bound), until the block
    exits; yields the figures, filled in on exit."""
    requests = await seed(gateway, customers=32, products=200)
    slots = asyncio.Semaphore(ORDERS_IN_FLIGHT)
    placed = 0

    async def one(number: int) -> None:
        nonlocal placed
        try:
            order = await gateway.place_order(requests[number % len(requests)])
            await gateway.transition(order.id, "confirmed")
            placed += 1
        finally:
            slots.release()

    async def place() -> None:
        number, running = 0, set()
        while True:
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
            await slots.acquire()
            task = asyncio.create_task(one(number))
            running.add(task)
            task.add_done_callback(running.discard)
            number += 1

    figures: dict[str, float] = {}
    started = time.monotonic()
    placing = asyncio.create_task(place())
    try:
        yield figures
    finally:
        placing.cancel()
        await asyncio.gather(placing, return_exceptions=True)
        figures["achieved_orders_per_second"] = round(placed / (time.monotonic() - started), 1)


async def owners(probe: Probe) -> dict[int, str | None]:
    rows = await probe.fetch("SELECT partition, owner FROM relay_positions WHERE sink = 'redis'")
    return {row["partition"]: row["owner"] for row in rows}


async def positions(probe: Probe) -> dict[int, tuple[int, int]]:
    rows = await probe.fetch(
        "SELECT partition, position_txid::text::bigint AS txid, position_id"
        " FROM relay_positions WHERE sink = 'redis'"
    )
    return {row["partition"]: (row["txid"], row["position_id"]) for row in rows}


async def instance_of(probe: Probe, pid: int) -> str | None:
    instance: str | None = await probe.fetchval(
        "SELECT id FROM relay_instances WHERE pid = $1", pid
    )
    return instance


async def until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within} s")
        await asyncio.sleep(0.01)


async def split_evenly(probe: Probe, relays: list[RelayProcess]) -> dict[int, str]:
    """Wait until each relay holds its share of the partitions; each relay's instance id, by
    process id."""
    ids: dict[int, str] = {}

    async def settled() -> bool:
        for relay in relays:
            if relay.pid not in ids and (found := await instance_of(probe, relay.pid)):
                ids[relay.pid] = found
        held = list((await owners(probe)).values())
        counts = [held.count(ids.get(relay.pid)) for relay in relays]
        return len(ids) == len(relays) and min(counts) >= 16 // len(relays)

    await until(settled, SETTLE_WITHIN_SECONDS, "partitions split between the relays")
    return ids


async def rounds(probe: Probe, tree: Path, config: Path, logs: Path, kills: int) -> list[float]:
    """``kills`` rounds of SIGKILL; the handover time of each, in seconds."""
    relays = [RelayProcess(tree, config, logs / f"relay-{n}.log") for n in range(RELAYS)]
    for relay in relays:
        await relay.start()
    handovers: list[float] = []
    try:
        for kill in range(kills):
            victim = relays[kill % RELAYS]
            victim_id = (await split_evenly(probe, relays))[victim.pid]
            theirs = {p for p, owner in (await owners(probe)).items() if owner == victim_id}
            await victim.kill()
            killed_at = time.monotonic()
            # Read once it is dead: a commit it sent before dying may still have landed.
            at_kill = await positions(probe)

            await until(
                functools.partial(taken_over, probe, victim_id, theirs, at_kill),
                SETTLE_WITHIN_SECONDS,
                "a survivor delivering",
            )
            handovers.append(time.monotonic() - killed_at)
            print(f"  kill {kill + 1:2}: {1000 * handovers[-1]:7.0f} ms", flush=True)
            await victim.start()
    finally:
        for relay in relays:
            await relay.stop()
    return handovers


async def taken_over(
    probe: Probe, victim: str, theirs: set[int], at_kill: dict[int, tuple[int, int]]
) -> bool:
    """Whether a survivor has committed a delivery in one of the killed relay's partitions."""
    now_held, now_at = await owners(probe), await positions(probe)
    return any(now_held[p] not in (None, victim) and now_at[p] > at_kill[p] for p in theirs)


async def idle_cost(gateway: Gateway, probe: Probe, tree: Path, config: Path, logs: Path) -> float:
    """Transactions per second one idle relay costs PostgreSQL (three relays, no orders)."""
    relays = [RelayProcess(tree, config, logs / f"idle-{n}.log") for n in range(RELAYS)]
    for relay in relays:
        await relay.start()
    try:
        await split_evenly(probe, relays)
        await asyncio.sleep(3)  # past the start-up's queries
        name = await gateway.pool.fetchval("SELECT current_database()")
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = $1"
        await gateway.pool.execute("SELECT pg_stat_clear_snapshot()")
        before, started = await gateway.pool.fetchval(query, name), time.monotonic()
        await asyncio.sleep(20)
        await gateway.pool.execute("SELECT pg_stat_clear_snapshot()")
        after, ended = await gateway.pool.fetchval(query, name), time.monotonic()
        # The two statements of this measurement count too: negligible over 20 s.
        return float(after - before) / (ended - started) / RELAYS
    finally:
        for relay in relays:
            await relay.stop()


def config_for(gateway: Gateway, directory: Path, prefix: str) -> Path:
    path = directory / "relay.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "postgres": {"url": gateway.settings.postgres.url.get_secret_value()},
                "relay": {"linger_ms": 5, "poll_interval_seconds": 1.0},
                "sinks": {
                    "redis": {"type": "redis", "url": server_url("redis"), "key_prefix": prefix}
                },
                "logging": {"level": "WARNING"},
            }
        )
    )
    return path


async def nothing_lost(gateway: Gateway, prefix: str) -> dict[str, int]:
    """Every order's summary in Redis is PostgreSQL's; raises otherwise."""
    await until(lambda: sink_caught_up(gateway), SETTLE_WITHIN_SECONDS, "every event delivered")
    orders = await gateway.pool.fetch("SELECT id::text AS id, version, status FROM orders")
    client = aioredis.from_url(server_url("redis"))
    try:
        stored = await client.mget([f"{prefix}{row['id']}" for row in orders])
    finally:
        await client.aclose()
    wrong = [
        row["id"]
        for row, value in zip(orders, stored, strict=True)
        if value is None or json.loads(value)["status"] != row["status"]
    ]
    if wrong:
        raise RuntimeError(f"{len(wrong)} orders differ in Redis, e.g. {wrong[:3]}")
    dead = await gateway.pool.fetchval("SELECT count(*) FROM dead_letters")
    return {"orders": len(orders), "orders_differing": 0, "dead_letters": dead}


async def sink_caught_up(gateway: Gateway) -> bool:
    backlog: int = await gateway.pool.fetchval(
        "SELECT coalesce(sum(backlog), 0) FROM outbox_backlog() WHERE sink = 'redis'"
    )
    return backlog == 0


def figures(handovers: list[float]) -> dict[str, Any]:
    return {
        "kills": len(handovers),
        "handover_p50_ms": round(1000 * percentile(handovers, 0.50)),
        "handover_p99_ms": round(1000 * percentile(handovers, 0.99)),
        "handover_max_ms": round(1000 * max(handovers)),
        "handover_mean_ms": round(1000 * statistics.fmean(handovers)),
        "handovers_ms": [round(1000 * h) for h in handovers],
    }


async def variant(name: str, tree: Path, kills: int, rate: float, logs: Path) -> dict[str, Any]:
    prefix = f"handover:{uuid.uuid4().hex[:8]}:"
    async with scratch_gateway(pool_size=16) as gateway:
        config = config_for(gateway, logs, prefix)
        # The measurements' own connection: never queued behind the orders' pool.
        probe = await asyncpg.connect(gateway.settings.postgres.url.get_secret_value())
        try:
            print(f"{name}: idle cost", flush=True)
            cost = await idle_cost(gateway, probe, tree, config, logs)
            print(f"{name}: {kills} kills at {rate:.0f} orders/s", flush=True)
            async with orders_at(gateway, rate) as load:
                handovers = await rounds(probe, tree, config, logs, kills)
        finally:
            await probe.close()
        relays = [RelayProcess(tree, config, logs / "drain.log")]
        await relays[0].start()
        try:
            check = await nothing_lost(gateway, prefix)
        finally:
            await relays[0].stop()
    result = {**figures(handovers), "idle_transactions_per_second_per_relay": round(cost, 1)}
    result.update(load)
    result.update(check)
    print(
        f"{name}: handover p50 {result['handover_p50_ms']} ms, p99 {result['handover_p99_ms']}"
        f" ms, max {result['handover_max_ms']} ms; idle relay {cost:.1f} transactions/s;"
        f" {load['achieved_orders_per_second']} orders/s achieved;"
        f" {check['orders']} orders, none lost"
    )
    return result


async def run(kills: int, lease_kills: int, rate: float, lease_tree: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {"relays": RELAYS, "offered_orders_per_second": rate}
    with tempfile.TemporaryDirectory(prefix="fanout-handover-") as directory:
        logs = Path(directory)
        print(f"relay logs in {logs}", flush=True)
        results["session"] = await variant("session", ROOT, kills, rate, logs)
        if lease_tree is not None and lease_kills:
            results["lease"] = await variant("lease", lease_tree, lease_kills, rate, logs)
            session, lease = results["session"], results["lease"]
            results["ratios"] = {
                "handover_p50_lease_over_session": round(
                    lease["handover_p50_ms"] / session["handover_p50_ms"], 1
                ),
                "handover_p99_lease_over_session": round(
                    lease["handover_p99_ms"] / session["handover_p99_ms"], 1
                ),
                "idle_cost_session_over_lease": round(
                    session["idle_transactions_per_second_per_relay"]
                    / lease["idle_transactions_per_second_per_relay"],
                    2,
                ),
            }
            print(f"ratios: {results['ratios']}")
    results["targets"] = {"handover_p99_ms": 2000}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs with sessions")
    parser.add_argument("--lease-kills", type=int, default=20, help="SIGKILLs, leases only")
    parser.add_argument("--rate", type=float, default=100, help="orders placed per second")
    parser.add_argument(
        "--lease-tree", type=Path, default=None, help="a source tree whose relay has no sessions"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.kills, args.lease_kills, args.rate, args.lease_tree))
    path = write_results("handover", results)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
