"""Live progress of a load test: a bar with rate, latency and backlog on a terminal, a line
every few seconds elsewhere (logs, CI, containers)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from gateway.loadtest.plan import LoadPlan

PLAIN_EVERY_SECONDS = 5.0


def _status(stage: str, data: Mapping[str, Any]) -> str:
    if "achieved_rate" in data:
        latency = data["latency_ms"]["place"]
        p99 = latency.get("p99")
        backlog = sum(data["backlog"].values()) if data["backlog"] else 0
        return (
            f"{data['achieved_rate']:,.0f}/{data['offered_rate']:,.0f} ops/s  "
            f"p99 {p99 if p99 is not None else 0:,.1f} ms  errors {data['errors']}  "
            f"in flight {data['in_flight']}  backlog {backlog:,}"
        )
    return "  ".join(f"{key} {value}" for key, value in data.items())


class ProgressDisplay:
    """Receives the runner's progress reports and shows them."""

    def __init__(self, console: Console, plan: LoadPlan) -> None:
        self.console = console
        self.total = plan.time_limit
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.last_plain = 0.0

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.total, status="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, stage: str, data: Mapping[str, Any]) -> None:
        status = _status(stage, data)
        if self.live and self.task is not None:
            completed = data.get("t") if "t" in data else None
            total = self.total if stage in {"outbox", "dual-write"} else None
            self.progress.update(
                self.task, description=stage, status=status, completed=completed, total=total
            )
            return
        now = time.monotonic()
        if stage not in {"outbox", "dual-write", "draining"} or now - self.last_plain >= (
            PLAIN_EVERY_SECONDS
        ):
            self.last_plain = now
            self.console.print(escape(f"[{stage}] {status}"), highlight=False)
