"""Rebalance and drain: which customers move where, in what order, how fast, and when a run
gives up."""

from __future__ import annotations

from collections import Counter
from uuid import UUID, uuid4

import pytest

from gateway.sharding.placement import Shard, rendezvous_shard
from gateway.sharding.rebalance import (
    MAX_CONSECUTIVE_FAILURES,
    PlannedMove,
    carry_out,
    drain_moves,
    rebalance_moves,
    should_stop,
    start_offset,
)

TWO = [Shard("a"), Shard("b")]
THREE = [Shard("a"), Shard("b"), Shard("c")]


def placed(count: int, shards: list[Shard]) -> list[tuple[UUID, str]]:
    customers = [uuid4() for _ in range(count)]
    return [(customer, rendezvous_shard(str(customer), shards)) for customer in customers]


def test_after_a_third_shard_is_added_about_a_third_move_and_only_onto_it() -> None:
    entries = placed(3000, TWO)
    moves = rebalance_moves(entries, THREE)
    assert 900 <= len(moves) <= 1100
    assert {move.target for move in moves} == {"c"}
    assert Counter(move.source for move in moves).keys() == {"a", "b"}


def test_a_balanced_directory_plans_nothing() -> None:
    assert rebalance_moves(placed(500, THREE), THREE) == []


def test_moves_come_in_customer_id_order_so_a_second_run_resumes_the_first() -> None:
    entries = placed(600, TWO)
    moves = rebalance_moves(entries, THREE)
    assert [m.customer_id for m in moves] == sorted(m.customer_id for m in moves)
    first_half = {m.customer_id: m.target for m in moves[: len(moves) // 2]}
    after = [(customer, first_half.get(customer, shard)) for customer, shard in entries]
    assert rebalance_moves(after, THREE) == moves[len(moves) // 2 :]


def test_max_moves_takes_the_first_of_the_plan() -> None:
    entries = placed(600, TWO)
    assert rebalance_moves(entries, THREE, max_moves=5) == rebalance_moves(entries, THREE)[:5]


def test_a_drain_moves_every_customer_of_the_shard_where_removing_it_would_put_them() -> None:
    entries = placed(900, THREE)
    moves = drain_moves(entries, THREE, "b")
    assert {m.customer_id for m in moves} == {c for c, shard in entries if shard == "b"}
    assert all(m.source == "b" and m.target in {"a", "c"} for m in moves)
    # the customers of the other shards stay: removing b moves only b's customers
    for move in moves:
        assert move.target == rendezvous_shard(str(move.customer_id), [Shard("a"), Shard("c")])


def test_the_only_shard_cannot_be_drained() -> None:
    with pytest.raises(ValueError, match="only shard"):
        drain_moves(placed(3, [Shard("a")]), [Shard("a")], "a")


def test_moves_start_at_the_rate_and_at_once_without_one() -> None:
    assert [start_offset(i, 4.0) for i in range(3)] == [0.0, 0.25, 0.5]
    assert start_offset(10, None) == 0.0


def test_a_run_stops_after_failures_in_a_row_only() -> None:
    assert not should_stop(MAX_CONSECUTIVE_FAILURES - 1)
    assert should_stop(MAX_CONSECUTIVE_FAILURES)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def moves(count: int) -> list[PlannedMove]:
    return [PlannedMove(uuid4(), "a", "b") for _ in range(count)]


async def test_a_run_is_paced_and_counts_customers_and_rows() -> None:
    clock = FakeClock()
    made: list[PlannedMove] = []

    async def mover(move: PlannedMove) -> int:
        made.append(move)
        return 10

    planned = moves(5)
    seen: list[int] = []
    progress = await carry_out(
        planned,
        mover,
        rate=2.0,
        clock=clock,
        sleep=clock.sleep,
        on_progress=lambda p: seen.append(p.moved),
    )
    assert made == planned
    assert clock.slept == [0.5, 0.5, 0.5, 0.5]
    assert (progress.moved, progress.rows, progress.failed) == (5, 50, [])
    assert seen == [1, 2, 3, 4, 5]
    assert progress.customers_per_second == pytest.approx(2.5)  # 5 moves in 2 s


async def test_a_failed_move_is_reported_and_the_run_goes_on() -> None:
    planned = moves(4)

    async def mover(move: PlannedMove) -> int:
        if move is planned[1]:
            raise RuntimeError("pause timed out")
        return 1

    clock = FakeClock()
    progress = await carry_out(planned, mover, clock=clock, sleep=clock.sleep)
    assert progress.moved == 3
    assert progress.failed == [(planned[1], "pause timed out")]
    assert not progress.stopped_early


async def test_a_run_stops_when_moves_keep_failing() -> None:
    planned = moves(10)
    tried: list[PlannedMove] = []

    async def mover(move: PlannedMove) -> int:
        tried.append(move)
        raise ConnectionRefusedError("shard c does not answer")

    clock = FakeClock()
    progress = await carry_out(planned, mover, clock=clock, sleep=clock.sleep)
    assert tried == planned[:MAX_CONSECUTIVE_FAILURES]
    assert progress.stopped_early and progress.moved == 0
    assert progress.as_json()["failed"][0]["reason"] == "shard c does not answer"  # type: ignore[index]
