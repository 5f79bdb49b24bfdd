"""The moves benchmark's figures: percentiles, ratios, spreads, which requests a move overlapped,
the phases' plan, and a run's figures from its requests and moves."""

from __future__ import annotations

import uuid

import pytest

from bench.move_figures import (
    MOVING,
    OTHERS,
    WITH_MOVES,
    WITHOUT_MOVES,
    Moved,
    Request,
    Span,
    latency_ms,
    move_offsets,
    moves_per_phase,
    moving_figures,
    others_figures,
    overlapping,
    percentile,
    phase_figures,
    phase_plan,
    ratio,
    spread,
)
from gateway.sharding.move_records import ShardMove
from gateway.sharding.move_rules import MoveState
from gateway.sharding.mover import MoveResult


def test_percentile_takes_the_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]

    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 100
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latency_is_reported_in_milliseconds_with_its_count() -> None:
    assert latency_ms([0.010, 0.002, 0.300]) == {
        "count": 3,
        "p50": 10.0,
        "p99": 300.0,
        "max": 300.0,
    }
    assert latency_ms([]) == {"count": 0}


def test_a_ratio_needs_both_figures_and_a_positive_denominator() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 3.0) == 0.333
    assert ratio(None, 2.0) is None
    assert ratio(2.0, 0.0) is None


def test_the_spread_is_the_range_and_how_many_times_the_lowest_the_highest_is() -> None:
    assert spread([40.0, 20.0, 30.0]) == {"min": 20.0, "max": 40.0, "max_over_min": 2.0}
    assert spread([]) == {"min": None, "max": None, "max_over_min": None}


def test_spans_overlap_when_they_share_an_instant() -> None:
    move = Span(10.0, 11.0)

    assert Span(9.5, 10.1).overlaps(move)
    assert Span(10.2, 10.3).overlaps(move)
    assert Span(9.0, 12.0).overlaps(move)
    assert not Span(9.0, 10.0).overlaps(move)  # ended as the move began
    assert not Span(11.0, 11.5).overlaps(move)
    assert overlapping(Span(5.0, 6.0), [Span(1.0, 2.0), Span(5.5, 5.6)])
    assert not overlapping(Span(5.0, 6.0), [])


def test_phases_alternate_and_the_moves_are_shared_among_those_with_moves() -> None:
    assert phase_plan(2) == [WITHOUT_MOVES, WITH_MOVES, WITHOUT_MOVES, WITH_MOVES]
    assert moves_per_phase(60, 3) == [20, 20, 20]
    assert moves_per_phase(7, 3) == [3, 2, 2]
    with pytest.raises(ValueError):
        moves_per_phase(5, 0)
    assert move_offsets(4, 8.0) == [1.0, 3.0, 5.0, 7.0]


CUSTOMER, OTHER = uuid.uuid4(), uuid.uuid4()


def request(group: str, start: float, seconds: float, phase: int, customer: uuid.UUID) -> Request:
    return Request(group, customer, "place", Span(start, start + seconds), phase)


def moved(start: float, seconds: float, pause: float | None, rows: int, state: MoveState) -> Moved:
    record = ShardMove(uuid.uuid4(), CUSTOMER, "alpha", "beta", state, last_error="timed out")
    result = MoveResult(record, pause, orders=rows // 10, rows=rows)
    return Moved(CUSTOMER, "alpha", "beta", Span(start, start + seconds), 1, result)


def test_the_other_customers_are_compared_phase_by_phase_and_pooled() -> None:
    plan = phase_plan(1)
    spans = [Span(0.0, 10.0), Span(10.0, 20.0)]
    quiet = [request(OTHERS, n / 8, 0.010, 0, OTHER) for n in range(80)]
    busy = [request(OTHERS, 10 + n / 8, 0.020, 1, OTHER) for n in range(80)]
    mine = [request(MOVING, 12.0, 0.5, 1, CUSTOMER), request(MOVING, 1.0, 0.01, 0, CUSTOMER)]
    moves = [moved(12.0, 0.5, 0.3, 200, MoveState.DONE)]

    phases = phase_figures(plan, spans, [*quiet, *busy, *mine], moves)
    figures = others_figures(phases, [*quiet, *busy, *mine], moves)

    assert phases[0]["others"] == {
        "count": 80,
        "p50": 10.0,
        "p99": 10.0,
        "max": 10.0,
        "per_second": 8.0,
    }
    assert phases[1]["moves"] == 1 and phases[1]["pause_ms"]["max"] == 300.0
    assert phases[1]["moving"]["count"] == 1
    assert figures["ratio_p50"] == 2.0 and figures["ratio_p99"] == 2.0
    assert figures["round_ratios"] == [{"p50": 2.0, "p99": 2.0}]
    # Those that started at 12, 12.125, 12.25 and 12.375 s; not the one that ended at 11.895.
    assert figures["overlapping_a_move_ms"] == {"count": 4, "p50": 20.0, "p99": 20.0, "max": 20.0}
    assert figures["spread"]["without_moves_p99_ms"] == {
        "min": 10.0,
        "max": 10.0,
        "max_over_min": 1.0,
    }


def test_the_moving_customers_requests_are_split_at_their_own_moves() -> None:
    during = request(MOVING, 12.1, 0.35, 1, CUSTOMER)
    outside = request(MOVING, 13.0, 0.01, 1, CUSTOMER)
    elsewhere = request(MOVING, 12.1, 0.02, 1, OTHER)  # a moving customer not moving then
    warm_up = request(MOVING, 12.1, 9.0, -1, CUSTOMER)
    moves = [
        moved(12.0, 0.5, 0.4, 300, MoveState.DONE),
        moved(14.0, 0.5, 0.2, 100, MoveState.DONE),
        moved(16.0, 5.0, None, 0, MoveState.ROLLED_BACK),
    ]

    figures = moving_figures([during, outside, elsewhere, warm_up], moves)

    assert figures["own_requests_during_move_ms"] == {
        "count": 1,
        "p50": 350.0,
        "p99": 350.0,
        "max": 350.0,
    }
    assert figures["own_requests_outside_moves_ms"]["count"] == 2
    assert figures["pause_ms"]["max"] == 400.0
    assert figures["pause_target_met"] is False  # a move rolled back
    assert figures["moves"]["done"] == 2
    assert figures["moves"]["rolled_back"] == [{"customer": str(CUSTOMER), "error": "timed out"}]
    assert figures["moves"]["rows"] == 400
    assert figures["moves"]["rows_per_second"] == 66.667  # 400 rows over 6 s of moving
    assert figures["moves"]["customers_per_second"] == 0.333
