"""What the load test's coordinator and its driver processes say to each other.

The coordinator writes a :class:`DriverJob` as the first line of a driver's stdin, then
``start <monotonic time>`` once every driver is ready, and ``stop`` on Ctrl-C. A driver
answers with one JSON object per line on its stdout:

- ``{"ready": true}`` once its target is connected and its bodies are prepared;
- ``{"writes": …}`` every few milliseconds while writes return: orders placed, orders only
  partly written, and sampled writes for the visibility watcher (sent at once, since their
  lag is timed from when they returned);
- ``{"tick": …}`` once a second: that second's counts and latency histograms;
- ``{"done": …}`` at the end: totals, and the CPU the driver used.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal, TypedDict

from gateway.loadtest.driver import Share
from gateway.loadtest.model import EncodedLatencies
from gateway.loadtest.plan import LoadPlan
from gateway.loadtest.seed import Buyer, Catalog
from gateway.loadtest.targets import Written

PhaseName = Literal["outbox", "dual-write"]
SampleRow = tuple[str, int, str, str, str, float]
"""A sampled write: order id, version, status, created and updated (ISO), returned at."""


class DriverJob(TypedDict):
    """Everything a driver process needs, sent as its first line."""

    phase: PhaseName
    config_path: str | None
    plan: dict[str, Any]
    catalog: dict[str, Any]
    index: int
    count: int


class Writes(TypedDict):
    """Writes returned since the last message."""

    placed: list[str]
    partial: list[str]
    samples: list[SampleRow]


class Tick(TypedDict):
    """One second of one driver."""

    offered: int
    completed: int
    errors: int
    in_flight: int
    latency: dict[str, EncodedLatencies]


class Done(TypedDict):
    """A driver's totals."""

    offered: dict[str, int]
    completed: dict[str, int]
    errors: dict[str, int]
    lives: dict[str, int]
    payment_outcomes: dict[str, int]
    offering_seconds: float
    cpu_seconds: float


def job_of(
    phase: PhaseName,
    plan: LoadPlan,
    catalog: Catalog,
    config_path: str | None,
    index: int,
    count: int,
) -> DriverJob:
    """The job of driver ``index`` of ``count``."""
    fields = {k: v for k, v in asdict(plan).items() if k not in {"out", "chart"}}
    return {
        "phase": phase,
        "config_path": config_path,
        "plan": fields,
        "catalog": {
            "run_id": catalog.run_id,
            "buyers": [asdict(buyer) for buyer in catalog.buyers],
            "product_ids": catalog.product_ids,
        },
        "index": index,
        "count": count,
    }


def plan_of(job: DriverJob) -> LoadPlan:
    """The job's plan."""
    return LoadPlan(**job["plan"])


def share_of(job: DriverJob) -> Share:
    """The job's share of the plan."""
    return Share(job["index"], job["count"])


def catalog_of(job: DriverJob) -> Catalog:
    """The job's catalog."""
    data = job["catalog"]
    return Catalog(data["run_id"], [Buyer(**b) for b in data["buyers"]], data["product_ids"])


def sample_row(written: Written, returned_at: float) -> SampleRow:
    """A sampled write as sent."""
    return (
        written.order_id,
        written.version,
        written.status,
        written.created_at.isoformat(),
        written.updated_at.isoformat(),
        returned_at,
    )


def written_of(row: SampleRow) -> tuple[Written, float]:
    """A sampled write as received, and when it returned."""
    order_id, version, status, created_at, updated_at, returned_at = row
    written = Written(
        order_id,
        version,
        status,
        datetime.fromisoformat(created_at),
        datetime.fromisoformat(updated_at),
    )
    return written, returned_at


def line(kind: str, body: Any) -> bytes:
    """One message, as written to the pipe."""
    return json.dumps({kind: body}, separators=(",", ":")).encode() + b"\n"
