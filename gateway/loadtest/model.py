"""The load test's report, typed: what ``run_loadtest`` returns and the JSON file holds."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from gateway.operations.verify import DriftCounts

LatencySummary = TypedDict(
    "LatencySummary",
    {
        "count": int,
        "p50": float | None,
        "p90": float | None,
        "p99": float | None,
        "p99.9": float | None,
        "max": float | None,
        "mean": float | None,
    },
)
"""Milliseconds; every figure ``None`` when nothing was recorded."""


class EncodedLatencies(TypedDict):
    """An HDR histogram of microseconds, compressed and base64-encoded, with its exact sum:
    what lets reports and processes be merged with exact percentiles."""

    histogram: str
    total_micros: int


class SinkReport(TypedDict):
    """One store in one phase; the fan-out figures only where the relay delivered."""

    drift: DriftCounts
    lag_ms: NotRequired[LatencySummary]
    never_seen: NotRequired[int]
    read_errors: NotRequired[int]
    last_read_error: NotRequired[str | None]
    delivered_events: NotRequired[int]
    backlog_max: NotRequired[int]


class OperationCounts(TypedDict):
    """Operations by kind (place, transition)."""

    offered: dict[str, int]
    completed: dict[str, int]


class OrderCounts(TypedDict):
    """The run's orders: placed, found in PostgreSQL, and missing from some store."""

    placed: int
    in_postgres: int
    left_behind: int
    partially_written: int


class FaultWindow(TypedDict):
    """When a store was stopped and started, in seconds since the phase began."""

    sink: str
    stopped_at: float | None
    started_at: float | None


class TimelineRow(TypedDict):
    """One second of a phase."""

    t: float
    offered_rate: float
    achieved_rate: float
    errors: int
    in_flight: int
    latency_ms: dict[str, LatencySummary]
    latency_histograms: dict[str, EncodedLatencies]
    backlog: dict[str, int]
    delivered_rate: dict[str, float]
    lag_ms: dict[str, LatencySummary]
    lag_histograms: dict[str, EncodedLatencies]


class GeneratorCost(TypedDict):
    """What driving the phase cost the load test's own processes: the CPU time of its driver
    processes and of its coordinator (gauges, visibility, progress) while the load ran, and
    their sum per completed operation. Embedded, the drivers also run the gateway, so this
    includes the write path; through HTTP it is the generator's own cost."""

    processes: int
    driver_cpu_seconds: float
    coordinator_cpu_seconds: float
    cpu_seconds: float
    cpu_ms_per_operation: float | None


class PhaseHistograms(TypedDict):
    """The phase's histograms, encoded, so that reports of parts of one run merge exactly."""

    latency: dict[str, EncodedLatencies]
    lag: dict[str, EncodedLatencies]


class PaymentCounts(TypedDict):
    """The payment saga under load (``--payments``)."""

    lives: dict[str, int]
    """Orders by what the load test did after placing them: paid, failed, left unpaid."""
    outcomes: dict[str, int]
    """Notifications by what they did (confirmed, cancelled, refund_required, ...)."""
    payment_status: dict[str, int]
    """The run's orders in PostgreSQL at the end, by payment status (expired: cancelled by
    the payment timeout)."""
    awaited_timeouts: bool
    """Whether every unpaid order had timed out before the drain (false: the timeout is
    longer than the run could wait, or no relay swept)."""


class PhaseReport(TypedDict):
    """One approach driven through the plan: the outbox, or the naive dual write."""

    name: str
    via: str
    mode: str
    completed_as_planned: bool
    seconds: float
    offering_seconds: float
    operations: OperationCounts
    offered_rate: float
    achieved_rate: float
    errors: dict[str, int]
    latency_ms: dict[str, LatencySummary]
    generator: GeneratorCost
    orders: OrderCounts
    sinks: dict[str, SinkReport]
    histograms: PhaseHistograms
    drained: bool
    drain_seconds: float
    fault: FaultWindow | None
    timeline: list[TimelineRow]
    payments: NotRequired[PaymentCounts]


class HostInfo(TypedDict):
    """The machine the generator ran on."""

    cpus: int | None
    python: str


class LoadReport(TypedDict):
    """A whole run. ``plan`` holds the fields of :class:`LoadPlan` as given, plus what was
    derived from them (``open_loop``, ``target_rate``, ``time_limit_seconds``)."""

    run_id: str
    part: int | None
    parts: NotRequired[list[int | None]]
    started_at: str
    plan: dict[str, Any]
    host: HostInfo
    phases: list[PhaseReport]
    interrupted: bool
    result: Literal["clean", "drift", "failed"]
    failure: NotRequired[str | None]
    """Why the run failed by its failed operations (``result`` ``failed``), else ``None``."""
