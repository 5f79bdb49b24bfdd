"""The figures of ``bench/moves.py`` from its timings: latency percentiles, the ratio of two
phases run side by side, the spread of repeated phases, which requests a move overlapped, when
each phase's moves start, and a run's figures from its requests and moves (no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any
from uuid import UUID

from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import MoveResult


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank); ``ValueError`` when
    there are none."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """How many durations there are and their p50, p99 and max in milliseconds (the count
    only, when there are none)."""
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50": round(1000 * percentile(seconds, 0.50), 2),
        "p99": round(1000 * percentile(seconds, 0.99), 2),
        "max": round(1000 * max(seconds), 2),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to three places; ``None`` when either is missing or the
    denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """The lowest and highest of ``values`` and how many times the lowest the highest is."""
    if not values:
        return {"min": None, "max": None, "max_over_min": None}
    return {"min": min(values), "max": max(values), "max_over_min": ratio(max(values), min(values))}


@dataclass(frozen=True)
class Span:
    """A stretch of time on one monotonic clock, in seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        """Whether the two share any instant (a span that ends as the other starts does not)."""
        return self.start < other.end and other.start < self.end


def overlapping(span: Span, windows: Sequence[Span]) -> bool:
    """Whether ``span`` overlaps any of ``windows``."""
    return any(span.overlaps(window) for window in windows)


WITHOUT_MOVES = "without_moves"
WITH_MOVES = "with_moves"


def phase_plan(rounds: int) -> list[str]:
    """The phases of a run: ``rounds`` pairs, each a phase without moves, then one with."""
    return [WITHOUT_MOVES, WITH_MOVES] * rounds


def moves_per_phase(moves: int, phases: int) -> list[int]:
    """``moves`` shared as evenly as possible among ``phases``, the earlier phases taking the
    remainder."""
    if phases <= 0:
        raise ValueError("moves need at least one phase")
    share, remainder = divmod(moves, phases)
    return [share + (1 if index < remainder else 0) for index in range(phases)]


def move_offsets(count: int, seconds: float) -> list[float]:
    """When each of a phase's ``count`` moves starts, in seconds from the phase's start: in the
    middle of ``count`` equal slots, so no move starts at a phase's edge."""
    return [(index + 0.5) * seconds / count for index in range(count)]


# --- a run's figures ---------------------------------------------------------------------------

OTHERS = "others"
"""The customers that never move."""
MOVING = "moving"
"""The customers the run moves."""
PAUSE_TARGET_SECONDS = 1.0
SHARES = ("p50", "p99")


@dataclass(frozen=True)
class Request:
    """One request of the load, as timed."""

    group: str
    customer_id: UUID
    operation: str
    span: Span
    phase: int
    """The phase it started in (-1: the warm-up)."""


@dataclass(frozen=True)
class Moved:
    """One move, as timed around ``move_customer``."""

    customer_id: UUID
    source: str
    target: str
    span: Span
    phase: int
    result: MoveResult


def phase_figures(
    plan: Sequence[str], spans: Sequence[Span], requests: Sequence[Request], moved: Sequence[Moved]
) -> list[dict[str, Any]]:
    """Per phase: its kind, length, each group's latency and requests/s, and its moves: how
    many, their pauses and their median size in rows."""
    figures = []
    for index, (kind, span) in enumerate(zip(plan, spans, strict=True)):
        own = [move for move in moved if move.phase == index]
        row: dict[str, Any] = {"kind": kind, "seconds": round(span.seconds, 2), "moves": len(own)}
        if own:
            row["pause_ms"] = latency_ms(_known(move.result.pause_seconds for move in own))
            row["rows_per_move_median"] = median(move.result.rows for move in own)
        for group in (OTHERS, MOVING):
            taken = [r.span.seconds for r in requests if r.phase == index and r.group == group]
            row[group] = {**latency_ms(taken), "per_second": round(len(taken) / span.seconds, 1)}
        figures.append(row)
    return figures


def others_figures(
    phases: Sequence[dict[str, Any]], requests: Sequence[Request], moved: Sequence[Moved]
) -> dict[str, Any]:
    """The other customers' latency without and with moves, pooled over the phases of each
    kind and per round (a phase without moves and the phase with moves after it), the ratios
    (with / without), their spread over the rounds, and the requests that overlapped a move."""
    kinds = {index: phase["kind"] for index, phase in enumerate(phases)}
    pooled = {
        kind: latency_ms(
            [r.span.seconds for r in requests if r.group == OTHERS and kinds.get(r.phase) == kind]
        )
        for kind in (WITHOUT_MOVES, WITH_MOVES)
    }
    windows = [move.span for move in moved]
    during = [
        r.span.seconds for r in requests if r.group == OTHERS and overlapping(r.span, windows)
    ]
    rounds = [
        {share: ratio(after[OTHERS].get(share), before[OTHERS].get(share)) for share in SHARES}
        for before, after in zip(phases[0::2], phases[1::2], strict=True)
    ]
    return {
        "without_moves_ms": pooled[WITHOUT_MOVES],
        "with_moves_ms": pooled[WITH_MOVES],
        "overlapping_a_move_ms": latency_ms(during),
        **{
            f"ratio_{share}": ratio(pooled[WITH_MOVES].get(share), pooled[WITHOUT_MOVES].get(share))
            for share in SHARES
        },
        "round_ratios": rounds,
        "spread": {
            **{
                f"{kind}_{share}_ms": spread(
                    [p[OTHERS][share] for p in phases if p["kind"] == kind and share in p[OTHERS]]
                )
                for kind in (WITHOUT_MOVES, WITH_MOVES)
                for share in SHARES
            },
            **{
                f"round_ratio_{share}": spread(_known(r[share] for r in rounds)) for share in SHARES
            },
        },
    }


def _known(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def moving_figures(requests: Sequence[Request], moved: Sequence[Moved]) -> dict[str, Any]:
    """The moves' pauses (as the mover measured them), the moving customers' requests that
    overlapped their own customer's move and those that did not, and the moves' rates over
    the time spent moving (one move at a time)."""
    windows: dict[UUID, list[Span]] = defaultdict(list)
    for move in moved:
        windows[move.customer_id].append(move.span)
    mine = [r for r in requests if r.group == MOVING and r.phase >= 0]
    during = [r.span.seconds for r in mine if overlapping(r.span, windows[r.customer_id])]
    outside = [r.span.seconds for r in mine if not overlapping(r.span, windows[r.customer_id])]
    pauses = [m.result.pause_seconds for m in moved if m.result.pause_seconds is not None]
    done = [m for m in moved if m.result.move.state is MoveState.DONE]
    moving_seconds = sum(move.span.seconds for move in moved)
    rows = sum(move.result.rows for move in done)
    orders = sum(move.result.orders for move in done)
    return {
        "pause_ms": latency_ms(pauses),
        "pause_target_ms": 1000 * PAUSE_TARGET_SECONDS,
        "pause_target_met": bool(pauses)
        and len(done) == len(moved)
        and max(pauses) < PAUSE_TARGET_SECONDS,
        "own_requests_during_move_ms": latency_ms(during),
        "own_requests_outside_moves_ms": latency_ms(outside),
        "moves": {
            "done": len(done),
            "rolled_back": [
                {"customer": str(m.customer_id), "error": m.result.move.last_error}
                for m in moved
                if m.result.move.state is not MoveState.DONE
            ],
            "duration_ms": latency_ms([move.span.seconds for move in moved]),
            "seconds_moving": round(moving_seconds, 3),
            "rows": rows,
            "orders": orders,
            "rows_per_move_median": median([m.result.rows for m in done]) if done else None,
            "rows_per_second": ratio(rows, moving_seconds),
            "orders_per_second": ratio(orders, moving_seconds),
            "customers_per_second": ratio(len(done), moving_seconds),
        },
    }
