"""The chaos run's customer moves: ``fanout shards move`` run as an operator runs it, one
customer after another while the load goes on, and what each move came to."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.chaos.processes import run_fanout

MoveOutcome = Literal["done", "rolled_back", "failed"]

MOVE_LINE = re.compile(
    r"^move (?P<move>\S+): customer (?P<customer>\S+) (?P<source>\S+) -> (?P<target>\S+): "
    r"(?P<state>\w+)(?:, (?P<orders>\d+) order\(s\), paused (?P<pause>\d+) ms)?$",
    re.MULTILINE,
)
"""A line ``fanout shards move`` prints for each move it made or finished."""

COMMAND_TIMEOUT_SECONDS = 180.0
"""How long one ``fanout shards move`` may take (a resume waits up to 30 s for a lock)."""

REASONS_SHOWN = 5


@dataclass(frozen=True)
class MoveAttempt:
    """One ``fanout shards move CUSTOMER --to TARGET``: how it ended, how many orders moved
    and how long the customer was paused (a move done), or why not."""

    customer_id: str
    source: str
    target: str
    outcome: MoveOutcome
    orders: int = 0
    pause_ms: int | None = None
    reason: str = ""
    seconds: float = 0.0
    """How long the command ran, its start included."""


def attempt_from_output(
    customer_id: str,
    source: str,
    target: str,
    returncode: int | None,
    stdout: str,
    stderr: str,
    seconds: float = 0.0,
) -> MoveAttempt:
    """What one ``fanout shards move`` came to, from its exit code and output: ``done`` (exit
    0, its line says so), ``rolled_back`` (its line says so; the reason is on stderr), else
    ``failed`` (refused, or an error before the move could end: the last line of stderr)."""
    found = MOVE_LINE.search(stdout)
    state = found["state"] if found else None
    last_error = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if found and state == "done" and returncode == 0:
        pause = found["pause"]
        return MoveAttempt(
            customer_id,
            source,
            target,
            "done",
            int(found["orders"] or 0),
            int(pause) if pause is not None else None,
            seconds=seconds,
        )
    if found and state == "rolled_back":
        reason = last_error.removeprefix("rolled back: ")
        return MoveAttempt(
            customer_id, source, target, "rolled_back", reason=reason, seconds=seconds
        )
    reason = last_error or f"exit {returncode}, state {state or 'unknown'}"
    return MoveAttempt(customer_id, source, target, "failed", reason=reason, seconds=seconds)


async def move_customer(config: Path, customer_id: str, source: str, target: str) -> MoveAttempt:
    """``fanout shards move CUSTOMER --to TARGET`` over ``config`` (from ``source``), the pause
    timeout the command's default."""
    started = time.perf_counter()
    result = await run_fanout(
        config, ["shards", "move", customer_id, "--to", target], COMMAND_TIMEOUT_SECONDS
    )
    return attempt_from_output(
        customer_id,
        source,
        target,
        result.returncode,
        result.stdout,
        result.stderr,
        round(time.perf_counter() - started, 2),
    )


async def resume_moves(config: Path) -> dict[str, Any]:
    """``fanout shards move --resume``: every move left unfinished (its command killed or
    failed mid-move) finished forward or back, as an operator does after the faults; its exit
    code and the state each move ended in."""
    result = await run_fanout(config, ["shards", "move", "--resume"], COMMAND_TIMEOUT_SECONDS)
    states = Counter(found["state"] for found in MOVE_LINE.finditer(result.stdout))
    resumed: dict[str, Any] = {"exit_code": result.returncode, "by_state": dict(states)}
    if result.returncode:
        resumed["stderr"] = result.stderr[-2000:]
    return resumed


def moves_summary(attempts: Sequence[MoveAttempt]) -> dict[str, Any]:
    """How many moves were made, rolled back and failed, the customers and orders moved, the
    pauses (milliseconds, in the order the moves ended) and the reasons of the others."""
    done = [a for a in attempts if a.outcome == "done"]
    pauses = [a.pause_ms for a in done if a.pause_ms is not None]
    return {
        "attempted": len(attempts),
        "done": len(done),
        "rolled_back": sum(1 for a in attempts if a.outcome == "rolled_back"),
        "failed": sum(1 for a in attempts if a.outcome == "failed"),
        "customers_moved": len({a.customer_id for a in done}),
        "orders_moved": sum(a.orders for a in done),
        "pause_ms": pause_figures(pauses),
        "pauses_ms": pauses,
        "command_seconds_median": (
            round(statistics.median(a.seconds for a in attempts), 2) if attempts else None
        ),
        "reasons": reasons(a for a in attempts if a.outcome != "done"),
    }


def pause_figures(pauses: Sequence[int]) -> dict[str, float]:
    """The median and largest pause (empty when no move was made)."""
    if not pauses:
        return {}
    return {"median": statistics.median(pauses), "max": max(pauses)}


def reasons(attempts: Iterable[MoveAttempt]) -> dict[str, int]:
    """How many moves ended each way, by outcome and reason (the first few reasons)."""
    counted = Counter(f"{a.outcome}: {a.reason}" for a in attempts)
    return dict(counted.most_common(REASONS_SHOWN))
