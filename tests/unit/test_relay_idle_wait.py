"""When a relay run until idle says it is still waiting for events it cannot finish."""

from __future__ import annotations

from gateway.relay.worker import IDLE_WAIT_REPORT_SECONDS, idle_wait_to_report

INTERVAL = IDLE_WAIT_REPORT_SECONDS


def test_nothing_is_reported_while_not_waiting() -> None:
    assert not idle_wait_to_report(None, None, 1_000.0)
    assert not idle_wait_to_report(None, 10.0, 1_000.0)


def test_a_wait_is_reported_once_it_has_lasted_an_interval() -> None:
    assert not idle_wait_to_report(100.0, None, 100.0 + INTERVAL - 0.1)
    assert idle_wait_to_report(100.0, None, 100.0 + INTERVAL)


def test_then_once_per_interval() -> None:
    reported = 100.0 + INTERVAL
    assert not idle_wait_to_report(100.0, reported, reported + INTERVAL - 0.1)
    assert idle_wait_to_report(100.0, reported, reported + INTERVAL)


def test_a_report_of_an_earlier_wait_does_not_shorten_a_new_one() -> None:
    # reported during a wait that ended; the new wait began later
    assert not idle_wait_to_report(500.0, 200.0, 500.0 + INTERVAL - 0.1)
    assert idle_wait_to_report(500.0, 200.0, 500.0 + INTERVAL)
