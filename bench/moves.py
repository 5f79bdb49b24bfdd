"""Online customer moves under load: how long a move pauses its customer, what the moving
customers' own requests and every other customer's requests experience, and how fast rows move.

A catalog database and two shards on the three PostgreSQL servers of ``scripts/services.sh``
(``--shards 3`` adds a third shard, a second database on ``postgres-shard-b``). A relay process
delivers every database's outbox to an in-memory sink throughout, so that each move's pause
waits for real deliveries; a mover process makes the moves, as ``fanout shards move`` would
(``bench/move_processes.py``).

The load, from this process, the whole run long (``bench/move_load.py``): ``--concurrency``
workers sending ``--rate`` requests/s in all for the other customers, and ``MOVING_WORKERS``
workers sending ``--moving-rate`` for the customers that move, aimed at the one being moved
while a move runs; each request places an order or moves one of the customer's orders a status
on. The run alternates phases without and with moves, ``--rounds`` pairs of ``--seconds`` each;
the ``--moves`` moves are shared among the phases with moves and spread evenly over each, one at
a time, each moving customer in turn to the next shard.

Figures (``bench/move_figures.py``): each move's pause (``MoveResult.pause_seconds``) and the
latency of the moving customer's own requests that overlapped its move; the other customers'
latency without and with moves, pooled and per round, the ratios and the rounds' spread; rows,
orders and customers moved per second of moving. Then the check (``bench/move_check.py``):
every order placed resolves through ``get_order`` as the load left it, each customer lives on
its directory's shard only with as many orders as were placed for it, a reconciliation finds
nothing broken, and no request failed. A run that fails it writes no figures and exits 1.

    .venv/bin/python -m bench.moves [--moves 60] [--seconds 15] [--rounds 3] [--concurrency 8]
        [--rate 80] [--moving-rate 20] [--shards 2] [--results bench/results/moves.json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_results
from bench.cost_per_order import loopback_only
from bench.move_check import soundness
from bench.move_figures import (
    MOVING,
    OTHERS,
    PAUSE_TARGET_SECONDS,
    WITH_MOVES,
    Moved,
    Span,
    move_offsets,
    moves_per_phase,
    moving_figures,
    others_figures,
    phase_figures,
    phase_plan,
)
from bench.move_load import TRANSITION_SHARE, Ledger, Load, seeded, worker
from bench.move_processes import Mover, relaying
from gateway import Customer, Gateway
from gateway.sharding.mover import DEFAULT_PAUSE_TIMEOUT
from support.sharding import SHARD_SERVERS, sharded_databases
from support.shop import Shop

MOVING_WORKERS = 4
MOVING_CUSTOMERS = 6
OTHER_CUSTOMERS = 40
SEED_ORDERS = {OTHERS: 5, MOVING: 20}
"""Orders each customer of a group has before the load starts."""
PRODUCTS = 20
WARM_UP_SECONDS = 3.0
THIRD_SHARD = {"gamma": "postgres-shard-b"}


def shard_servers(shards: int) -> dict[str, str]:
    """Each shard's name and the ``scripts/services.sh`` server it lives on."""
    return dict(SHARD_SERVERS) | (THIRD_SHARD if shards == 3 else {})


async def move_phase(
    load: Load,
    mover: Mover,
    movers: Sequence[Customer],
    moved: list[Moved],
    count: int,
    seconds: float,
    pause_timeout: float,
) -> None:
    """``count`` moves spread over ``seconds``, one at a time, each of the next moving customer
    to the next shard; the phase lasts ``seconds`` or until its last move ends."""
    started = time.monotonic()
    for offset in move_offsets(count, seconds):
        await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
        customer = movers[len(moved) % len(movers)]
        load.moving = customer
        source, target, span, result = await mover.move(customer.id, pause_timeout)
        moved.append(Moved(customer.id, source, target, span, load.phase, result))
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))


async def run_phases(
    load: Load,
    mover: Mover,
    movers: Sequence[Customer],
    plan: Sequence[str],
    args: argparse.Namespace,
) -> tuple[list[Span], list[Moved]]:
    """The phases of ``plan`` in turn: each one's span, and the moves made."""
    counts = iter(moves_per_phase(args.moves, plan.count(WITH_MOVES)))
    spans: list[Span] = []
    moved: list[Moved] = []
    for index, kind in enumerate(plan):
        load.phase = index
        started = time.monotonic()
        if kind == WITH_MOVES:
            await move_phase(
                load, mover, movers, moved, next(counts), args.seconds, args.pause_timeout
            )
        else:
            await asyncio.sleep(args.seconds)
        load.moving = None
        spans.append(Span(started, time.monotonic()))
        print(f"  phase {index + 1}/{len(plan)} ({kind}) done", flush=True)
    return spans, moved


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = phase_plan(args.rounds)
    pool_size = args.concurrency + MOVING_WORKERS + 8
    async with sharded_databases(shard_servers=shard_servers(args.shards)) as databases:
        loopback_only({"catalog": databases.catalog, **databases.shards})
        settings = databases.settings(pool_min_size=4, pool_max_size=pool_size)
        async with await Gateway.connect(settings) as gateway:
            shop, ledger, load = Shop(gateway), Ledger(), Load()
            products = [await shop.product(stock=100_000_000) for _ in range(PRODUCTS)]
            others = await seeded(gateway, ledger, OTHER_CUSTOMERS, SEED_ORDERS[OTHERS], products)
            movers = await seeded(gateway, ledger, MOVING_CUSTOMERS, SEED_ORDERS[MOVING], products)
            print(f"seeded {len(ledger.orders)} orders; starting the relay and the mover")
            rng = random.Random(1)

            def other() -> Customer:
                return rng.choice(others)

            def moving() -> Customer:
                return load.moving or rng.choice(movers)

            pools = [gateway.pool, *gateway.sharding.shards.values()]
            async with relaying(databases, pools), Mover(databases) as mover:
                interval = args.concurrency / args.rate
                workers = [
                    worker(
                        gateway, load, ledger, OTHERS, other, products, interval, random.Random(n)
                    )
                    for n in range(args.concurrency)
                ]
                interval = MOVING_WORKERS / args.moving_rate
                workers += [
                    worker(
                        gateway, load, ledger, MOVING, moving, products, interval, random.Random(-n)
                    )
                    for n in range(1, MOVING_WORKERS + 1)
                ]
                running = [asyncio.create_task(each) for each in workers]
                try:
                    await asyncio.sleep(WARM_UP_SECONDS)
                    spans, moved = await run_phases(load, mover, movers, plan, args)
                finally:
                    load.stopping.set()
                    await asyncio.gather(*running)
            checked, problems = await soundness(gateway, ledger, others + movers, load.errors)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise SystemExit(f"the run is not sound ({len(problems)} problem(s)):\n  {shown}")
    phases = phase_figures(plan, spans, load.requests, moved)
    return {
        "settings": {
            "moves": args.moves,
            "seconds_per_phase": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "moving_workers": MOVING_WORKERS,
            "moving_rate": args.moving_rate,
            "shards": shard_servers(args.shards),
            "other_customers": OTHER_CUSTOMERS,
            "moving_customers": MOVING_CUSTOMERS,
            "seed_orders_per_customer": SEED_ORDERS,
            "transition_share": TRANSITION_SHARE,
            "pause_timeout_seconds": args.pause_timeout,
            "relay": "a process of its own, the relay's default settings, an in-memory sink",
            "mover": "a process of its own, one move at a time",
        },
        "phases": phases,
        "others": others_figures(phases, load.requests, moved),
        "moving_customer": moving_figures(load.requests, moved),
        "moves": [
            {
                "customer": str(move.customer_id),
                "from": move.source,
                "to": move.target,
                "state": move.result.move.state.value,
                "seconds": round(move.span.seconds, 4),
                "pause_seconds": move.result.pause_seconds,
                "orders": move.result.orders,
                "rows": move.result.rows,
            }
            for move in moved
        ],
        "checked": checked,
    }


def report(results: dict[str, Any], path: Path) -> None:
    mine, others = results["moving_customer"], results["others"]
    moves, pause = mine["moves"], mine["pause_ms"]
    during = mine["own_requests_during_move_ms"]
    met = "met" if mine["pause_target_met"] else "NOT met"
    print(
        f"moves: {moves['done']} done, {len(moves['rolled_back'])} rolled back; pause p50 "
        f"{pause.get('p50')} / p99 {pause.get('p99')} / max {pause.get('max')} ms (target "
        f"< {1000 * PAUSE_TARGET_SECONDS:.0f} ms: {met})"
    )
    print(
        f"the moving customer's own requests during its move ({during['count']}): p50 "
        f"{during.get('p50')} / p99 {during.get('p99')} / max {during.get('max')} ms"
    )
    print(
        f"moved {moves['rows_per_second']} rows/s, {moves['orders_per_second']} orders/s, "
        f"{moves['customers_per_second']} customers/s (median {moves['rows_per_move_median']} "
        f"rows a move, {moves['seconds_moving']} s spent moving)"
    )
    without, with_ = others["without_moves_ms"], others["with_moves_ms"]
    for share in ("p50", "p99"):
        rounds = ", ".join(str(r[share]) for r in others["round_ratios"])
        quiet = others["spread"][f"without_moves_{share}_ms"]
        busy = others["spread"][f"with_moves_{share}_ms"]
        print(
            f"other customers {share}: without moves {without.get(share)} ms "
            f"({quiet['min']}-{quiet['max']} over the phases), with {with_.get(share)} ms "
            f"({busy['min']}-{busy['max']}): {others[f'ratio_{share}']}x (rounds {rounds})"
        )
    print(f"checked: {results['checked']}; written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=60, help="moves in all")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of phases: without, with")
    parser.add_argument("--concurrency", type=int, default=8, help="other customers' workers")
    parser.add_argument("--rate", type=float, default=80.0, help="other customers' requests/s")
    parser.add_argument(
        "--moving-rate", type=float, default=20.0, help="moving customers' requests/s"
    )
    parser.add_argument("--shards", type=int, choices=(2, 3), default=2)
    parser.add_argument("--pause-timeout", type=float, default=DEFAULT_PAUSE_TIMEOUT)
    parser.add_argument("--results", type=Path, default=RESULTS / "moves.json")
    args = parser.parse_args()
    if args.moves < args.rounds:
        parser.error("--moves must be at least --rounds (every phase with moves makes one)")
    results = asyncio.run(run(args))
    path = write_results("moves", results, path=args.results)
    report(results, path)


if __name__ == "__main__":
    main()
