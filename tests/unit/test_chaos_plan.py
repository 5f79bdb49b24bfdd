"""The chaos run's schedule and its rule for which failed requests a fault explains."""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.chaos.__main__ import fault_kinds
from bench.chaos.chart import COLOURS
from bench.chaos.move_check import Answer, HeldRow, move_findings, order_problems
from bench.chaos.moves import MoveAttempt, attempt_from_output, moves_summary
from bench.chaos.plan import (
    FAULT_KINDS,
    ChaosPlan,
    FailedAttempt,
    FaultKind,
    FaultWindow,
    asks_to_send_again,
    explained,
    fault_schedule,
    keep_moving,
    settled_at,
    unavailable_for,
)
from bench.chaos.run import config_for, dead_letter_findings, summarize_dead_letters, verdict
from bench.chaos.saga_check import saga_findings
from bench.chaos.watch import ProcessState, ended_on_their_own
from gateway.configuration.settings import load_settings


def test_every_fault_runs_as_often_as_asked_within_the_load() -> None:
    plan = ChaosPlan(orders=6_000, rate=60)
    schedule = fault_schedule(plan, repeats=3)
    kinds = Counter((fault.kind, fault.target) for fault in schedule)
    assert set(kinds.values()) == {3}
    assert {target for kind, target in kinds if kind == "stop-store"} == set(plan.stores)
    assert {target for kind, target in kinds if kind == "kill-relay"} == {"0", "1"}
    assert ("restart-postgres", "") in kinds and ("kill-api", "") in kinds
    times = [fault.at for fault in schedule]
    assert times == sorted(times) and times[0] > 0 and times[-1] <= 0.8 * plan.load_seconds
    assert all(a.kind != b.kind or a.target != b.target for a, b in itertools.pairwise(schedule))


SHARDS = ("postgres-shard-a", "postgres-shard-b")


def test_a_sharded_schedule_kills_relays_and_the_api_stops_each_server_and_moves_customers() -> (
    None
):
    plan = ChaosPlan(orders=6_000, rate=60, shards=SHARDS, move_seconds=9)
    schedule = fault_schedule(plan, repeats=2)
    kinds = Counter((fault.kind, fault.target) for fault in schedule)
    assert kinds == {
        ("kill-relay", "0"): 2,
        ("kill-relay", "1"): 2,
        ("stop-shard", "postgres-shard-a"): 2,
        ("stop-shard", "postgres-shard-b"): 2,
        ("kill-api", ""): 2,
        ("restart-postgres", ""): 2,
        ("move-customers", ""): 2,
    }
    assert all(f.seconds == plan.shard_outage_seconds for f in schedule if f.kind == "stop-shard")
    assert all(f.seconds == 9 for f in schedule if f.kind == "move-customers")
    times = [fault.at for fault in schedule]
    assert times == sorted(times) and times[-1] <= 0.8 * plan.load_seconds
    assert all(a.kind != b.kind for a, b in itertools.pairwise(schedule))
    # Mid-round: the client has placed orders for many customers by the first move.
    first_move = next(fault.at for fault in schedule if fault.kind == "move-customers")
    assert first_move > 0.1 * plan.load_seconds


def test_one_shard_has_nowhere_to_move_customers_to() -> None:
    plan = ChaosPlan(orders=6_000, rate=60, shards=SHARDS[:1])
    assert "move-customers" not in {fault.kind for fault in fault_schedule(plan, repeats=2)}


def test_a_schedule_of_some_kinds_spreads_only_those_over_the_same_span() -> None:
    plan = ChaosPlan(orders=6_000, rate=60, shards=SHARDS)
    only: set[FaultKind] = {"kill-relay", "kill-api", "move-customers"}
    schedule = fault_schedule(plan, repeats=2, only=only)
    kinds = Counter((fault.kind, fault.target) for fault in schedule)
    assert kinds == {
        ("kill-relay", "0"): 2,
        ("kill-relay", "1"): 2,
        ("kill-api", ""): 2,
        ("move-customers", ""): 2,
    }
    times = [fault.at for fault in schedule]
    assert times[0] == round(0.05 * plan.load_seconds, 1)
    assert times[-1] == round(0.8 * plan.load_seconds, 1)
    assert fault_schedule(plan, repeats=2, only=()) == ()


def test_every_kind_of_fault_is_shaded_and_can_be_chosen_by_name() -> None:
    assert set(COLOURS) == set(FAULT_KINDS)
    assert fault_kinds("kill-api, move-customers,") == {"kill-api", "move-customers"}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown fault kinds: move"):
        fault_kinds("kill-api,move")


def test_customers_are_moved_for_the_window_and_on_until_one_move_was_made() -> None:
    assert keep_moving(0.0, 12.0, made=0) and keep_moving(11.9, 12.0, made=3)
    assert not keep_moving(12.0, 12.0, made=1)
    # Every move rolled back or failed under the other faults so far: on, within a bound.
    assert keep_moving(12.0, 12.0, made=0) and keep_moving(41.9, 12.0, made=0)
    assert not keep_moving(42.0, 12.0, made=0)


def test_customers_being_moved_explain_no_failure() -> None:
    """A moved customer's requests wait for the pause, then follow it: nothing fails."""
    move = FaultWindow("move-customers", "", began=10.0, ended=22.0, settled=22.1)
    for kind in ("HTTP 503", "HTTP 500", "ConnectError", "ReadError"):
        assert not explained(failed(kind, 15.0), [move])


def test_a_shard_down_explains_503s_only() -> None:
    shard = FaultWindow("stop-shard", "postgres-shard-a", began=10.0, ended=20.0, settled=21.0)

    assert explained(failed("HTTP 503", 15.0), [shard])
    assert not explained(failed("HTTP 503 without Retry-After", 15.0), [shard])
    assert not explained(failed("HTTP 500", 15.0), [shard])
    assert not explained(failed("ConnectError", 15.0), [shard])  # the API stays up
    assert not explained(failed("HTTP 503", 22.0), [shard])


def failed(kind: str, started: float, ended: float | None = None) -> FailedAttempt:
    return FailedAttempt(kind, started, started if ended is None else ended)


def test_only_a_fault_in_force_explains_a_failure_and_only_its_own_kind() -> None:
    restart = FaultWindow("restart-postgres", "", began=10.0, ended=12.0, settled=14.0)
    api = FaultWindow("kill-api", "", began=30.0, ended=33.0, settled=33.5)
    store = FaultWindow("stop-store", "redis", began=50.0, ended=70.0, settled=70.0)
    windows = [restart, api, store]

    assert explained(failed("HTTP 503", 11.0), windows)
    assert explained(failed("HTTP 503", 13.9), windows)  # pools reconnecting just after
    assert not explained(failed("HTTP 503", 40.0), windows)
    assert not explained(failed("HTTP 503 without Retry-After", 11.0), windows)
    assert not explained(failed("HTTP 500", 11.0), windows)
    assert explained(failed("ConnectError", 31.0), windows)
    assert not explained(failed("HTTP 503", 31.0), windows)  # a dead API answers nothing
    assert not explained(failed("ConnectError", 60.0), windows)  # a store outage fails no request


def test_a_fault_explains_failures_until_the_gateway_is_seen_answering_again() -> None:
    """However long a busy machine takes to recover, not a fixed grace after the fault."""
    slow = FaultWindow("restart-postgres", "", began=10.0, ended=12.0, settled=95.0)
    unsettled = FaultWindow("kill-api", "", began=200.0, ended=203.0)

    assert explained(failed("HTTP 503", 90.0), [slow])
    assert not explained(failed("HTTP 503", 95.5), [slow])  # sent after it answered again
    assert explained(failed("ReadError", 94.0, 96.0), [slow])  # sent before, failed after
    assert explained(failed("RemoteProtocolError", 9.0, 10.5), [slow])  # in flight at the fault
    assert not explained(failed("ReadError", 5.0, 9.0), [slow])  # over before the fault
    assert explained(failed("ConnectError", 500.0), [unsettled])  # never answered again


def test_the_gateway_settles_with_the_first_success_sent_after_the_fault() -> None:
    successes = [(1.0, 2.0), (11.0, 13.0), (12.5, 12.9), (12.0, 30.0), (14.0, 14.2)]

    assert settled_at(12.0, successes) == 12.9
    assert settled_at(3.0, successes) == 12.9
    assert settled_at(0.5, successes) == 2.0
    assert settled_at(15.0, successes) is None


def clean_report() -> dict[str, Any]:
    return {
        "drained": True,
        "stores": {"redis": {"clean": True}},
        "dead_letters": {},
        "orders": {"placed": 5, "in_postgres": 5, "transitions": 2, "transitions_in_postgres": 2},
        "requests": {"unexplained_failures": [], "operations_given_up": {}},
    }


def test_a_chaos_run_is_broken_by_a_dead_letter_or_a_crash_as_by_drift() -> None:
    assert verdict(clean_report()) == []
    letters = {"mongodb": {"count": 3, "reasons": {"attempts_exhausted": 3}, "errors": ["x"]}}
    dead = clean_report() | {"dead_letters": letters}
    assert verdict(dead) == ["mongodb: 3 dead letters (attempts_exhausted: 3); last errors: x"]
    crashed = clean_report() | {"processes_exited": ["relay-1"]}
    assert verdict(crashed) == ["processes exited on their own: ['relay-1']"]
    drifted = clean_report() | {"stores": {"redis": {"clean": False}}}
    assert verdict(drifted) == ["redis: {'clean': False}"]


def test_dead_letters_are_told_per_sink_with_their_reasons_and_errors() -> None:
    letters = [
        {"sink": "redis", "reason": "attempts_exhausted", "last_error": "timed out"},
        {"sink": "redis", "reason": "permanent", "last_error": "bad key"},
        {"sink": "redis", "reason": "attempts_exhausted", "last_error": "timed out"},
        {"sink": "elasticsearch", "reason": "permanent", "last_error": "mapping"},
    ]

    summary = summarize_dead_letters(letters)

    assert summary == {
        "redis": {
            "count": 3,
            "reasons": {"attempts_exhausted": 2, "permanent": 1},
            "errors": ["timed out", "bad key"],
        },
        "elasticsearch": {"count": 1, "reasons": {"permanent": 1}, "errors": ["mapping"]},
    }
    assert dead_letter_findings(summary) == [
        "redis: 3 dead letters (attempts_exhausted: 2, permanent: 1); last errors: timed out | "
        "bad key",
        "elasticsearch: 1 dead letters (permanent: 1); last errors: mapping",
    ]
    assert dead_letter_findings(summarize_dead_letters([])) == []


def test_a_process_ended_on_its_own_unless_the_fault_schedule_holds_it_down() -> None:
    states = [
        ProcessState("api", returncode=None, held_down=False),  # running
        ProcessState("relay-0", returncode=-9, held_down=True),  # killed, restarting soon
        ProcessState("relay-1", returncode=1, held_down=False),  # gave up by itself
        ProcessState("relay-2", returncode=0, held_down=False),  # exited by itself, cleanly
    ]

    assert ended_on_their_own(states) == ["relay-1", "relay-2"]
    assert ended_on_their_own(states[:2]) == []


def saga(**changes: Any) -> dict[str, Any]:
    clean: dict[str, Any] = {
        "held_after_final_sweep": 0,
        "stock_discrepancies": [],
        "reconciliation": {"exit_code": 0, "breaks": [], "missing": {}},
        "reservations": {"by_status": {"committed": 10}, "settled_after_expiry": {}},
    }
    return clean | changes


def test_the_saga_check_fails_on_units_held_unaccounted_or_a_break() -> None:
    assert saga_findings(saga()) == []
    assert saga_findings(saga(held_after_final_sweep=2)) == ["2 reservations held after the sweep"]
    lost = {"product_id": "p", "initial": 10, "inventory": 7, "held": 0, "in_live_orders": 2}
    assert "stock not accounted for" in saga_findings(saga(stock_discrepancies=[lost]))[0]
    broken = {"exit_code": 1, "breaks": [{"kind": "live order without committed units"}]}
    assert "reconciliation found breaks" in saga_findings(saga(reconciliation=broken))[0]
    unreachable = {"exit_code": 1, "breaks": [], "missing": {"beta": "refused"}}
    assert saga_findings(saga(reconciliation=unreachable))


def test_only_a_conflict_that_asks_for_the_request_again_is_sent_again() -> None:
    assert asks_to_send_again(409, "urn:fanout:problem:reservation-lapsed")
    assert asks_to_send_again(409, "urn:fanout:problem:request-in-progress")
    assert not asks_to_send_again(409, "urn:fanout:problem:conflict")
    assert not asks_to_send_again(409, "urn:fanout:problem:idempotency-key-reused")
    assert not asks_to_send_again(409, None)
    assert not asks_to_send_again(422, "urn:fanout:problem:reservation-lapsed")


def test_over_a_cluster_each_round_moves_the_primary_three_ways() -> None:
    plan = ChaosPlan(orders=3_000, rate=30, cluster=True, partition_seconds=7)
    schedule = fault_schedule(plan, repeats=2)
    kinds = [fault.kind for fault in schedule]
    assert kinds.count("switchover") == kinds.count("failover") == 2
    assert kinds.count("partition-primary") == 2
    assert "restart-postgres" not in kinds
    assert all(f.seconds == 7 for f in schedule if f.kind == "partition-primary")


def test_while_the_primary_moves_only_a_503_with_retry_after_is_explained() -> None:
    move = FaultWindow("failover", "", began=10.0, ended=14.0, settled=15.0)
    assert explained(failed("HTTP 503", 12.0), [move])
    assert not explained(failed("HTTP 500", 12.0), [move])
    assert not explained(failed("ConnectError", 12.0), [move])  # the API stays up
    assert not explained(failed("HTTP 503 without Retry-After", 12.0), [move])


def test_unavailability_runs_from_the_first_failure_to_the_first_answer_after() -> None:
    move = FaultWindow("switchover", "", began=10.0, ended=12.0, settled=13.5)
    failures = [failed("HTTP 503", 10.4, 10.5), failed("HTTP 503", 11.0, 11.2)]
    assert unavailable_for(move, [failed("HTTP 503", 2.0), *failures]) == 3.1
    assert unavailable_for(move, []) is None
    assert unavailable_for(FaultWindow("failover", "", began=1.0), failures) is None


def test_an_acknowledged_order_missing_from_postgresql_breaks_the_run() -> None:
    report = clean_report()
    report["orders"] |= {"acknowledged_missing": 0}
    assert verdict(report) == []
    # Lost by a failover in asynchronous replication, replaced by a retry's order: the
    # counts still agree, the acknowledged id does not.
    report["orders"] |= {"acknowledged_missing": 2}
    assert verdict(report) == ["2 acknowledged orders missing from PostgreSQL"]


def test_the_run_s_orders_have_no_payment_deadline(tmp_path: Path) -> None:
    # A run longer than a deadline would see the relays cancel unpaid orders: changes the
    # client did not make, counted against the run.
    path = config_for("postgresql://u@h/db", "tag", ChaosPlan(orders=10, rate=1), 8000, tmp_path)

    assert load_settings(path).orders.payment_timeout_seconds is None


MOVE = "move 1f0c: customer c0ffee alpha -> beta"


def test_a_move_command_s_outcome_is_read_from_its_exit_code_and_output() -> None:
    def attempt(returncode: int | None, stdout: str, stderr: str = "") -> MoveAttempt:
        return attempt_from_output("c0ffee", "alpha", "beta", returncode, stdout, stderr, 3.2)

    done = attempt(0, f"{MOVE}: done, 12 order(s), paused 48 ms\n")
    assert done == MoveAttempt("c0ffee", "alpha", "beta", "done", 12, 48, seconds=3.2)
    rolled_back = attempt(
        1, f"{MOVE}: rolled_back\n", "rolled back: 3 event(s) of the customer not delivered\n"
    )
    assert (rolled_back.outcome, rolled_back.reason) == (
        "rolled_back",
        "3 event(s) of the customer not delivered",
    )
    refused = attempt(1, "", "error: another process is moving customer c0ffee\n")
    assert (refused.outcome, refused.reason) == (
        "failed",
        "error: another process is moving customer c0ffee",
    )
    crashed = attempt(1, "", "Traceback ...\n  ...\nConnectionRefusedError: [Errno 111]\n\n")
    assert (crashed.outcome, crashed.reason) == ("failed", "ConnectionRefusedError: [Errno 111]")
    # A "done" line with a failing exit code is not taken for a move made.
    assert attempt(1, f"{MOVE}: done, 1 order(s), paused 5 ms\n").outcome == "failed"
    assert attempt(None, "", "killed after 180 s").reason == "killed after 180 s"


def test_the_moves_summary_counts_outcomes_customers_orders_and_pauses() -> None:
    attempts = [
        MoveAttempt("a", "alpha", "beta", "done", 10, 40, seconds=3.0),
        MoveAttempt("b", "beta", "alpha", "rolled_back", reason="not delivered", seconds=8.0),
        MoveAttempt("a", "beta", "alpha", "done", 11, 20, seconds=3.5),
        MoveAttempt("c", "alpha", "beta", "done", 2, 90, seconds=4.0),
        MoveAttempt("d", "alpha", "beta", "failed", reason="refused", seconds=2.0),
    ]

    summary = moves_summary(attempts)

    assert {k: summary[k] for k in ("attempted", "done", "rolled_back", "failed")} == {
        "attempted": 5,
        "done": 3,
        "rolled_back": 1,
        "failed": 1,
    }
    assert (summary["customers_moved"], summary["orders_moved"]) == (2, 23)
    assert summary["pauses_ms"] == [40, 20, 90]
    assert summary["pause_ms"] == {"median": 40, "max": 90}
    assert summary["command_seconds_median"] == 3.5
    assert summary["reasons"] == {"rolled_back: not delivered": 1, "failed: refused": 1}
    assert moves_summary([])["pause_ms"] == {}


def test_a_moved_customer_s_order_resolves_only_from_its_customer_s_shard_at_its_version() -> None:
    def problems(
        held: list[HeldRow],
        answer: Answer,
        history: list[int] | None = None,
        listed: bool = True,
    ) -> list[str]:
        return order_problems("o1", "c1", "beta", held, answer, history, listed)

    home = [HeldRow("beta", "c1", 3)]
    found = Answer(200, {"id": "o1", "customer_id": "c1", "version": 3})
    assert problems(home, found, [1, 2, 3]) == []
    assert problems(home, found, None) == []  # history not read
    assert "held by ['alpha', 'beta']" in problems([HeldRow("alpha", "c1", 3), *home], found)[0]
    assert "held by []" in problems([], found)[0]
    assert "held by ['alpha']" in problems([HeldRow("alpha", "c1", 3)], found)[0]
    assert "answered 404" in problems(home, Answer(404))[0]
    stale = Answer(200, {"id": "o1", "customer_id": "c1", "version": 2})
    assert "answered version 2" in problems(home, stale)[0]
    assert "history versions [1, 3]" in problems(home, found, [1, 3])[0]
    assert "not among its customer's orders" in problems(home, found, listed=False)[0]


def test_a_move_left_unfinished_or_an_order_that_does_not_resolve_breaks_the_run() -> None:
    clean: dict[str, Any] = {
        "done": 4,
        "rolled_back": 2,
        "failed": 1,
        "resumed": {"exit_code": 0, "by_state": {}},
        "unfinished_after_resume": 0,
        "check": {"problems": 0, "first_problems": []},
    }
    assert move_findings(clean) == []
    assert verdict(clean_report() | {"moves": clean}) == []
    assert move_findings(clean | {"unfinished_after_resume": 2}) == ["2 moves left unfinished"]
    lost = clean | {"check": {"problems": 1, "first_problems": ["order o1: held by []"]}}
    assert verdict(clean_report() | {"moves": lost}) == [
        "1 problems with moved customers' orders: ['order o1: held by []']"
    ]
    failed_resume = clean | {"resumed": {"exit_code": 1, "stderr": "x"}}
    assert "--resume failed" in move_findings(failed_resume)[0]
