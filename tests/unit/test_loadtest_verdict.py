"""A load test's verdict: clean, drift, or failed because too many of its operations failed."""

from __future__ import annotations

from gateway.loadtest.verdict import FAILED_SHARE_LIMIT, failure_reason, run_result


def test_a_few_failed_operations_leave_the_run_clean() -> None:
    assert FAILED_SHARE_LIMIT == 0.01
    assert failure_reason({}, 1_000) is None
    assert failure_reason({"HTTP 503": 10}, 1_000) is None
    assert run_result(drift_clean=True, failure=None) == "clean"


def test_failures_beyond_the_share_fail_the_run_and_say_why() -> None:
    reason = failure_reason({"HTTP 503": 8, "TimeoutError": 3}, 1_000)

    assert reason == (
        "11 of 1,000 operations failed (1.1 %, more than 1 %); the most as HTTP 503 (8)"
    )
    assert run_result(drift_clean=True, failure=reason) == "failed"


def test_a_key_the_api_wants_is_named() -> None:
    reason = failure_reason({"HTTP 401 unauthorized": 64_030}, 64_030)

    assert reason is not None
    assert reason.startswith("64,030 of 64,030 operations failed (100.0 %, more than 1 %)")
    assert reason.endswith("the API wants a key; set api.key or FANOUT_API_KEY")


def test_a_run_without_operations_is_judged_by_its_drift_alone() -> None:
    assert failure_reason({}, 0) is None
    assert run_result(drift_clean=False, failure=None) == "drift"


def test_drift_outranks_failed_operations() -> None:
    assert run_result(drift_clean=False, failure="all failed") == "drift"
