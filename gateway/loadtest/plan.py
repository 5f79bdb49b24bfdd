"""What a load test does, checked before anything is written.

Every problem names the command-line option at fault. A plan is bounded: duration, rate,
concurrency and order count have hard caps unless ``--no-limits`` is given, and every target
(the API's URL, PostgreSQL and each store) must be on this machine unless ``--allow-remote``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from gateway.configuration.settings import Settings
from gateway.errors import FieldError, ValidationError

Via = Literal["embedded", "http"]

MAX_DURATION_SECONDS = 600.0
MAX_RATE = 2_000.0
MAX_CONCURRENCY = 256
MAX_ORDERS = 1_000_000
MAX_PROCESSES = 32
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
DEFAULT_RATE = 100.0
DEFAULT_DURATION_SECONDS = 30.0


@dataclass(frozen=True)
class LoadPlan:
    """The load to drive, how to measure it and where to write the report."""

    via: Via = "embedded"
    url: str | None = None
    rate: float | None = None
    concurrency: int | None = None
    duration_seconds: float | None = None
    orders: int | None = None
    transition_ratio: float = 0.3
    customers: int = 50
    products: int = 20
    sample_every: int = 10
    relays: int = 0
    drain_timeout_seconds: float = 300.0
    compare: Literal["dual-write"] | None = None
    fault: str | None = None
    fault_at: float = 1 / 3
    fault_for: float = 1 / 3
    fault_stop_command: str | None = None
    fault_start_command: str | None = None
    max_in_flight: int = 2_000
    processes: int | None = None
    run_id: str | None = None
    part: int | None = None
    allow_remote: bool = False
    no_limits: bool = False
    out: Path | None = None
    chart: Path | None = None
    seed: int = 1
    paid_share: float = 0.0
    """Of the orders placed, the share the load test pays (a signed succeeded notification)."""
    failed_share: float = 0.0
    """The share whose payment fails (the order is cancelled, its units returned)."""
    unpaid_share: float = 0.0
    """The share left unpaid, for the payment timeout to cancel."""

    @property
    def drives_payments(self) -> bool:
        """Whether orders are paid, failed or left unpaid (``--payments``), rather than moved
        from ``pending`` by hand."""
        return self.paid_share + self.failed_share + self.unpaid_share > 0

    @property
    def open_loop(self) -> bool:
        """Requests at a fixed rate (open loop) rather than by a fixed number of workers."""
        return self.concurrency is None

    @property
    def target_rate(self) -> float:
        """Operations per second offered in open loop."""
        return self.rate if self.rate is not None else DEFAULT_RATE

    @property
    def time_limit(self) -> float | None:
        """Seconds to run, or ``None`` when only the order count ends the run."""
        if self.duration_seconds is None and self.orders is None:
            return DEFAULT_DURATION_SECONDS
        return self.duration_seconds


def driver_processes(plan: LoadPlan, cpus: int | None = None) -> int:
    """How many driver processes drive the plan: ``--processes``, or by default half the
    machine's cores (at least one), leaving the rest to what is measured; never more than
    the closed loop's workers."""
    count = plan.processes
    if count is None:
        count = max(1, min(MAX_PROCESSES, (cpus or os.cpu_count() or 1) // 2))
    if plan.concurrency is not None:
        count = min(count, plan.concurrency)
    return count


def check_plan(plan: LoadPlan, settings: Settings) -> None:
    """Raise ``ValidationError`` naming every option that is wrong or over its cap."""
    problems: list[FieldError] = []

    def problem(option: str, message: str) -> None:
        problems.append(FieldError(option, message))

    if plan.rate is not None and plan.concurrency is not None:
        problem("--concurrency", "give either --rate (open loop) or --concurrency (closed loop)")
    if plan.rate is not None and plan.rate <= 0:
        problem("--rate", "must be greater than 0")
    if plan.concurrency is not None and plan.concurrency < 1:
        problem("--concurrency", "must be at least 1")
    if plan.duration_seconds is not None and plan.duration_seconds <= 0:
        problem("--duration", "must be greater than 0")
    if plan.orders is not None and plan.orders < 1:
        problem("--orders", "must be at least 1")
    if not 0 <= plan.transition_ratio < 1:
        problem("--transitions", "must be at least 0 and below 1")
    for option, value in (
        ("--customers", plan.customers),
        ("--products", plan.products),
        ("--sample-every", plan.sample_every),
        ("--max-in-flight", plan.max_in_flight),
    ):
        if value < 1:
            problem(option, "must be at least 1")
    if plan.processes is not None and not 1 <= plan.processes <= MAX_PROCESSES:
        problem("--processes", f"must be from 1 to {MAX_PROCESSES}")
    if plan.part is not None and plan.part < 1:
        problem("--part", "must be at least 1")
    if plan.part is not None and plan.run_id is None:
        problem("--part", "needs the --run-id the parts share")
    if plan.run_id is not None and not RUN_ID.fullmatch(plan.run_id):
        problem("--run-id", "1 to 32 letters, digits, '-' or '_'")
    if plan.relays < 0:
        problem("--relays", "must be 0 or more")
    if plan.via == "http" and not plan.url:
        problem("--url", "--via http needs the API's URL")
    if plan.via == "embedded" and plan.url:
        problem("--url", "only used with --via http")
    if plan.fault is not None:
        if plan.fault not in settings.sinks or not settings.sinks[plan.fault].enabled:
            problem("--fault", f"no enabled sink named {plan.fault!r} in the configuration")
        if not (0 <= plan.fault_at < 1 and 0 < plan.fault_for <= 1 - plan.fault_at):
            problem("--fault-at", "--fault-at and --fault-for must fit inside the run (0..1)")
        if plan.time_limit is None:
            problem("--fault", "needs a --duration to place the outage in")
    if plan.drives_payments:
        _check_payments(plan, settings, problem)
    if not plan.no_limits:
        _check_caps(plan, problem)
    if not plan.allow_remote:
        for option, url in _targets(plan, settings):
            if not _is_loopback(url):
                problem(option, f"{_host(url)!r} is not this machine (use --allow-remote)")
    if problems:
        raise ValidationError(problems)


def parse_payment_mix(text: str) -> tuple[float, float, float]:
    """``paid=0.7,failed=0.2,unpaid=0.1`` -> the three shares (a share not named is 0);
    ``ValidationError`` naming ``--payments`` when it is not of that form."""
    shares = {"paid": 0.0, "failed": 0.0, "unpaid": 0.0}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        if name not in shares:
            raise ValidationError.single(
                "--payments", f"{name!r} is not paid, failed or unpaid (as in paid=0.8,failed=0.2)"
            )
        try:
            shares[name] = float(value)
        except ValueError:
            raise ValidationError.single(
                "--payments", f"{name}: {value!r} is not a number"
            ) from None
    return shares["paid"], shares["failed"], shares["unpaid"]


def _check_payments(
    plan: LoadPlan, settings: Settings, problem: Callable[[str, str], None]
) -> None:
    shares = (plan.paid_share, plan.failed_share, plan.unpaid_share)
    if any(not 0 <= share <= 1 for share in shares) or abs(sum(shares) - 1) > 1e-9:
        problem("--payments", "the shares must be from 0 to 1 and add up to 1")
    if plan.compare is not None:
        problem("--payments", "the naive dual write takes no payments; drop --compare")
    if plan.via == "http" and not settings.payments.webhook_secret:
        problem("--payments", "--via http signs notifications: set payments.webhook_secret")


def _check_caps(plan: LoadPlan, problem: Callable[[str, str], None]) -> None:
    if plan.time_limit is not None and plan.time_limit > MAX_DURATION_SECONDS:
        problem("--duration", f"at most {MAX_DURATION_SECONDS:g} s (or --no-limits)")
    if plan.rate is not None and plan.rate > MAX_RATE:
        problem("--rate", f"at most {MAX_RATE:g} per second (or --no-limits)")
    if plan.concurrency is not None and plan.concurrency > MAX_CONCURRENCY:
        problem("--concurrency", f"at most {MAX_CONCURRENCY} (or --no-limits)")
    if plan.orders is not None and plan.orders > MAX_ORDERS:
        problem("--orders", f"at most {MAX_ORDERS:,} (or --no-limits)")


def _targets(plan: LoadPlan, settings: Settings) -> list[tuple[str, str]]:
    targets = [("postgres.url", settings.postgres.url.get_secret_value())]
    if plan.url:
        targets.append(("--url", plan.url))
    for name, sink in settings.sinks.items():
        url = getattr(sink, "url", None)
        if sink.enabled and url is not None:
            targets.append((f"sinks.{name}.url", url.get_secret_value()))
    return targets


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _is_loopback(url: str) -> bool:
    host = _host(url)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
