"""A load test's verdict: ``clean``, ``drift`` (a store does not hold what PostgreSQL holds), or
``failed`` (too many of its operations failed for its figures to measure the gateway)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from gateway.loadtest.model import PhaseReport

FAILED_SHARE_LIMIT = 0.01
"""The share of a run's operations that may fail with the run still passing: load makes a few
fail (timeouts, conflicts); beyond this the figures measure the failures."""

Result = Literal["clean", "drift", "failed"]

HINTS = {"HTTP 401": "the API wants a key; set api.key or FANOUT_API_KEY"}
"""What to do about a kind of failure, by the start of its name."""


def failure_reason(
    errors: Mapping[str, int], attempted: int, limit: float = FAILED_SHARE_LIMIT
) -> str | None:
    """Why the failed operations (``errors``: count by kind) fail a run of ``attempted``
    operations; ``None`` when no more than ``limit`` of them failed."""
    failed = sum(errors.values())
    if attempted <= 0 or failed <= limit * attempted:
        return None
    kind, count = max(errors.items(), key=lambda item: item[1])
    reason = (
        f"{failed:,} of {attempted:,} operations failed ({failed / attempted:.1%}, more than "
        f"{limit:.0%}); the most as {kind} ({count:,})"
    ).replace("%", " %")
    hint = next((hint for start, hint in HINTS.items() if kind.startswith(start)), None)
    return reason if hint is None else f"{reason}: {hint}"


def run_result(*, drift_clean: bool, failure: str | None) -> Result:
    """The run's verdict: drift first (a store that does not hold what PostgreSQL holds is
    the finding that matters most), then failed operations."""
    if not drift_clean:
        return "drift"
    return "clean" if failure is None else "failed"


def judge(phase: PhaseReport) -> tuple[Result, str | None]:
    """The verdict on a run by its outbox phase, and why it failed when it did."""
    attempted = sum(phase["operations"]["offered"].values())
    failure = failure_reason(phase["errors"], attempted)
    drift_clean = phase["drained"] and all(s["drift"]["clean"] for s in phase["sinks"].values())
    return run_result(drift_clean=drift_clean, failure=failure), failure
