"""One load test: seed, drive each phase, drain, check for drift, and build the report."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.readback import ReadBack
from gateway.configuration.settings import Settings
from gateway.errors import GatewayError
from gateway.facade.gateway import Gateway
from gateway.loadtest.driver import OPERATIONS
from gateway.loadtest.drivers import DriverProcesses
from gateway.loadtest.faults import FaultRecord, ServerFault
from gateway.loadtest.gauges import RelayGauges, unserved_sinks
from gateway.loadtest.model import (
    FaultWindow,
    GeneratorCost,
    LoadReport,
    PhaseReport,
    SinkReport,
    TimelineRow,
)
from gateway.loadtest.plan import LoadPlan, check_plan, driver_processes
from gateway.loadtest.seed import Catalog, email_pattern, seed
from gateway.loadtest.stores import DUAL_WRITE_SUFFIX, closing, enabled_sinks
from gateway.loadtest.verdict import judge
from gateway.loadtest.visibility import VisibilityWatcher
from gateway.loadtest.wire import PhaseName, job_of
from gateway.operations.verify import verify_orders
from gateway.postgres.queries import query
from gateway.relay import tables

Progress = Callable[[str, Mapping[str, Any]], None]
TICK_GRACE_SECONDS = 0.05
"""How long after each second the coordinator reads it, so that every driver's is in."""


class RunControl:
    """Ctrl-C handling: the first stops the load (the run still drains and reports), the
    second also skips the wait for the relay."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.skip_drain = asyncio.Event()

    def interrupt(self) -> None:
        """Called on SIGINT."""
        if self.stop.is_set():
            self.skip_drain.set()
        self.stop.set()


async def run_loadtest(
    settings: Settings,
    plan: LoadPlan,
    *,
    config_path: Path | None,
    control: RunControl,
    progress: Progress,
) -> LoadReport:
    """Run the plan and return its report (also when interrupted)."""
    check_plan(plan, settings)
    run_id = plan.run_id or uuid.uuid4().hex[:8]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    phases: list[PhaseReport] = []
    async with (
        await Gateway.connect(settings) as gateway,
        RelayGauges.connected(settings.postgres, settings.enabled_sinks) as gauges,
    ):
        progress("seeding", {"customers": plan.customers, "products": plan.products})
        catalog = await seed(
            gateway, seed_namespace(run_id, plan.part), plan.customers, plan.products
        )
        phases.append(
            await _outbox_phase(gateway, gauges, plan, catalog, config_path, control, progress)
        )
        if plan.compare == "dual-write" and not control.stop.is_set():
            phases.append(
                await _dual_write_phase(
                    gateway, gauges, plan, catalog, config_path, control, progress
                )
            )
    finished_normally = all(phase["completed_as_planned"] for phase in phases)
    # The verdict is the outbox's: the naive dual write is expected to drift.
    result, failure = judge(phases[0])
    return {
        "run_id": run_id,
        "part": plan.part,
        "started_at": started_at,
        "plan": _plan_dict(plan),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "phases": phases,
        "interrupted": control.stop.is_set() and not finished_normally,
        "result": result,
        "failure": failure,
    }


def seed_namespace(run_id: str, part: int | None) -> str:
    """Whose seeded rows these are: the run's, or one part's of a run split over generators
    (so that parts sharing a run id never share customers or idempotency keys)."""
    return run_id if part is None else f"{run_id}-p{part}"


def _plan_dict(plan: LoadPlan) -> dict[str, Any]:
    values = asdict(plan)
    for key in ("out", "chart"):
        values[key] = str(values[key]) if values[key] is not None else None
    values["open_loop"] = plan.open_loop
    values["target_rate"] = plan.target_rate if plan.open_loop else None
    values["time_limit_seconds"] = plan.time_limit
    return values


async def _outbox_phase(
    gateway: Gateway,
    gauges: RelayGauges,
    plan: LoadPlan,
    catalog: Catalog,
    config_path: Path | None,
    control: RunControl,
    progress: Progress,
) -> PhaseReport:
    settings = gateway.settings
    sinks = enabled_sinks(settings)
    readable: dict[str, ReadBack] = {
        name: sink for name, sink in sinks.items() if isinstance(sink, ReadBack)
    }
    relays = [await _spawn_relay(config_path) for _ in range(plan.relays)]
    async with closing(sinks):
        try:
            if relays:
                progress("relays", {"starting": len(relays)})
                await _relays_ready(gateway, set(sinks), len(relays), relays)
            phase = await _drive(
                "outbox", gateway, gauges, plan, catalog, config_path, readable, control, progress
            )
        finally:
            for relay in relays:
                await _stop_relay(relay)
    return phase


async def _dual_write_phase(
    gateway: Gateway,
    gauges: RelayGauges,
    plan: LoadPlan,
    catalog: Catalog,
    config_path: Path | None,
    control: RunControl,
    progress: Progress,
) -> PhaseReport:
    sinks = enabled_sinks(gateway.settings, DUAL_WRITE_SUFFIX)
    async with closing(sinks):
        for sink in sinks.values():
            await sink.start()
        readable: dict[str, ReadBack] = {
            name: sink for name, sink in sinks.items() if isinstance(sink, ReadBack)
        }
        return await _drive(
            "dual-write", gateway, gauges, plan, catalog, config_path, readable, control, progress
        )


async def _drive(
    name: str,
    gateway: Gateway,
    gauges: RelayGauges,
    plan: LoadPlan,
    catalog: Catalog,
    config_path: Path | None,
    readable: Mapping[str, ReadBack],
    control: RunControl,
    progress: Progress,
) -> PhaseReport:
    relayed = name == "outbox"
    watcher = VisibilityWatcher(readable) if relayed else None
    processes = driver_processes(plan)
    config = str(config_path) if config_path is not None else None
    phase_name: PhaseName = "outbox" if relayed else "dual-write"
    jobs = [job_of(phase_name, plan, catalog, config, i, processes) for i in range(processes)]
    driver = DriverProcesses(jobs, watcher.expect if watcher is not None else None)
    pattern = email_pattern(catalog.run_id)
    orders_before = await gateway.pool.fetchval(
        query("count_orders_of_customers_by_email"), pattern
    )
    delivered_before = await gauges.delivered()
    timeline: list[TimelineRow] = []
    fault_record: FaultRecord | None = None
    cpu_started = time.process_time()
    tasks: list[asyncio.Task[Any]] = []
    fault: ServerFault | None = None
    if plan.fault is not None and plan.time_limit is not None:
        fault = ServerFault(
            plan.fault,
            gateway.settings.sinks[plan.fault],
            plan.fault_stop_command,
            plan.fault_start_command,
        )
        fault_record = FaultRecord(plan.fault)
        stop_at, stop_for = plan.fault_at * plan.time_limit, plan.fault_for * plan.time_limit
        inject = functools.partial(fault.inject, stop_at, stop_for, fault_record)
        tasks.append(asyncio.create_task(_after_start(driver, inject)))
    if watcher is not None:
        tasks.append(asyncio.create_task(watcher.run()))
    sampler = asyncio.create_task(
        _after_start(
            driver,
            lambda origin: _sample(
                name, gauges, driver, watcher, timeline, origin, relayed, progress
            ),
        )
    )
    stopper = asyncio.create_task(_stop_on(control.stop, driver))
    try:
        await driver.run()
        assert driver.start is not None
        load_seconds = time.monotonic() - driver.start
        coordinator_cpu = time.process_time() - cpu_started
        completed_as_planned = not control.stop.is_set()
        if fault is not None:
            await asyncio.gather(tasks[0], return_exceptions=True)
            if fault.stopped:
                await fault.start()
        awaited_timeouts = False
        if relayed and plan.drives_payments:
            progress("payments", {"awaiting_timeouts": True})
            awaited_timeouts = await _await_timeouts(gateway, pattern, plan, control)
        drain_started = time.monotonic()
        drained = (
            await _drain(gateway, gauges, watcher, readable, plan, control, progress)
            if relayed
            else True
        )
        drain_seconds = time.monotonic() - drain_started
    finally:
        stopper.cancel()
        sampler.cancel()
        if watcher is not None:
            watcher.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(sampler, stopper, *tasks, return_exceptions=True)
    progress("checking", {"orders": len(driver.order_ids)})
    behind: dict[str, set[str]] = {}
    sinks_report: dict[str, SinkReport] = {}
    delivered_after = await gauges.delivered()
    for sink_name, sink in readable.items():
        behind[sink_name] = set()
        drift = await verify_orders(
            gateway.pool,
            sink_name,
            sink,
            driver.order_ids,
            behind=behind[sink_name],
        )
        entry: SinkReport = {"drift": drift.counts()}
        if watcher is not None:
            watch = watcher.watches[sink_name]
            entry["lag_ms"] = watch.lag.overall.summary()
            entry["never_seen"] = len(watch.pending)
            entry["read_errors"] = watch.read_errors
            entry["last_read_error"] = watch.last_error
            entry["delivered_events"] = delivered_after.get(sink_name, 0) - delivered_before.get(
                sink_name, 0
            )
            entry["backlog_max"] = max(
                (row["backlog"].get(sink_name, 0) for row in timeline), default=0
            )
        sinks_report[sink_name] = entry
    left_behind = set().union(*behind.values()) if behind else set()
    everywhere = set.intersection(*behind.values()) if behind else set()
    orders_after = await gateway.pool.fetchval(query("count_orders_of_customers_by_email"), pattern)
    offered = sum(driver.counts.offered.values())
    completed = sum(driver.counts.completed.values())
    phase: PhaseReport = {
        "name": name,
        "via": plan.via if relayed else "embedded",
        "mode": f"open loop at {plan.target_rate:g}/s"
        if plan.open_loop
        else f"closed loop, {plan.concurrency} workers",
        "completed_as_planned": completed_as_planned,
        "seconds": round(load_seconds, 3),
        "offering_seconds": round(driver.offering_seconds, 3),
        "operations": {
            "offered": dict(driver.counts.offered),
            "completed": dict(driver.counts.completed),
        },
        "offered_rate": round(offered / max(driver.offering_seconds, 1e-9), 1),
        "achieved_rate": round(completed / load_seconds, 1),
        "errors": dict(driver.counts.errors),
        "latency_ms": {op: driver.latency[op].overall.summary() for op in OPERATIONS},
        "generator": generator_cost(driver.cpu_seconds, coordinator_cpu, processes, completed),
        "orders": {
            "placed": len(driver.order_ids),
            "in_postgres": orders_after - orders_before,
            "left_behind": len(left_behind),
            "partially_written": len(left_behind - everywhere),
        },
        "sinks": sinks_report,
        "histograms": {
            "latency": {op: driver.latency[op].overall.encode() for op in OPERATIONS},
            "lag": {sink: watch.lag.overall.encode() for sink, watch in watcher.watches.items()}
            if watcher is not None
            else {},
        },
        "drained": drained,
        "drain_seconds": round(drain_seconds, 3),
        "fault": _fault_window(fault_record),
        "timeline": timeline,
    }
    if plan.drives_payments:
        statuses = await gateway.pool.fetch(
            query("payment_statuses_of_customers_by_email"), pattern
        )
        phase["payments"] = {
            "lives": dict(driver.counts.lives),
            "outcomes": dict(driver.counts.payment_outcomes),
            "payment_status": {row["payment_status"]: row["orders"] for row in statuses},
            "awaited_timeouts": awaited_timeouts,
        }
    return phase


def generator_cost(
    driver_cpu_seconds: float, coordinator_cpu_seconds: float, processes: int, operations: int
) -> GeneratorCost:
    """The load test's CPU for a phase (its drivers' and its coordinator's), and per
    completed operation."""
    cpu_seconds = driver_cpu_seconds + coordinator_cpu_seconds
    return {
        "processes": processes,
        "driver_cpu_seconds": round(driver_cpu_seconds, 3),
        "coordinator_cpu_seconds": round(coordinator_cpu_seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_ms_per_operation": round(cpu_seconds * 1000 / operations, 3) if operations else None,
    }


async def _after_start(
    driver: DriverProcesses, work: Callable[[float], Coroutine[Any, Any, None]]
) -> None:
    """Run ``work(start)`` once the drivers have their start time."""
    await driver.started.wait()
    assert driver.start is not None
    await work(driver.start)


def _fault_window(record: FaultRecord | None) -> FaultWindow | None:
    if record is None:
        return None
    return {"sink": record.sink, "stopped_at": record.stopped_at, "started_at": record.started_at}


async def _stop_on(event: asyncio.Event, driver: DriverProcesses) -> None:
    await event.wait()
    driver.stop()


async def _sample(
    name: str,
    gauges: RelayGauges,
    driver: DriverProcesses,
    watcher: VisibilityWatcher | None,
    timeline: list[TimelineRow],
    origin: float,
    relayed: bool,
    progress: Progress,
) -> None:
    """Once a second: rates, latency, errors, backlog, deliveries and lag of that second.

    Each second is read just after the drivers' own second ends (they report then)."""
    previous = origin
    delivered = await gauges.delivered() if relayed else {}
    tick = origin
    while True:
        tick += 1.0
        await asyncio.sleep(max(0.0, tick + TICK_GRACE_SECONDS - time.monotonic()))
        now = time.monotonic()
        seconds = now - previous
        previous = now
        counts = driver.counts
        latencies = {op: driver.latency[op].take_interval_latencies() for op in OPERATIONS}
        row: TimelineRow = {
            "t": round(tick - origin, 2),
            "offered_rate": round(counts.interval_offered / seconds, 1),
            "achieved_rate": round(counts.interval_completed / seconds, 1),
            "errors": counts.interval_errors,
            "in_flight": driver.in_flight,
            "latency_ms": {op: latencies[op].summary() for op in OPERATIONS},
            "latency_histograms": {op: latencies[op].encode() for op in OPERATIONS},
            "backlog": {},
            "delivered_rate": {},
            "lag_ms": {},
            "lag_histograms": {},
        }
        counts.interval_offered = counts.interval_completed = counts.interval_errors = 0
        if relayed:
            row["backlog"] = await gauges.backlogs()
            now_delivered = await gauges.delivered()
            row["delivered_rate"] = {
                sink: round((count - delivered.get(sink, 0)) / seconds, 1)
                for sink, count in now_delivered.items()
            }
            delivered = now_delivered
        if watcher is not None:
            lags = {
                sink: watch.lag.take_interval_latencies() for sink, watch in watcher.watches.items()
            }
            row["lag_ms"] = {sink: lag.summary() for sink, lag in lags.items()}
            row["lag_histograms"] = {sink: lag.encode() for sink, lag in lags.items()}
        timeline.append(row)
        progress(name, row)


async def _drain(
    gateway: Gateway,
    gauges: RelayGauges,
    watcher: VisibilityWatcher | None,
    sinks: Mapping[str, ReadBack],
    plan: LoadPlan,
    control: RunControl,
    progress: Progress,
) -> bool:
    """Wait until every sink's backlog is empty and every sampled write is visible."""
    started = time.monotonic()
    deadline = started + plan.drain_timeout_seconds
    names = set(gateway.settings.sinks) & set(sinks) or set(sinks)
    last_served = dict.fromkeys(names, started)
    while time.monotonic() < deadline and not control.skip_drain.is_set():
        backlogs = await gauges.backlogs()
        waiting = {name: backlogs.get(name) for name in names}
        pending = watcher.pending if watcher is not None else 0
        if all(count == 0 for count in waiting.values()) and pending == 0:
            return True
        served, now = await gauges.served(), time.monotonic()
        last_served.update((name, now) for name in names if served.get(name, False))
        unserved = unserved_sinks(last_served, now)
        if unserved:
            raise GatewayError(
                f"no relay serves {', '.join(repr(s) for s in unserved)}, so the run's events "
                "are not delivered: run the load test with --relays 1 (or more), or start "
                "`fanout relay` with the same configuration"
            )
        progress("draining", {"backlog": waiting, "pending_samples": pending})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(control.skip_drain.wait(), 0.1)
    return False


async def _await_timeouts(
    gateway: Gateway, pattern: str, plan: LoadPlan, control: RunControl
) -> bool:
    """Wait until no order of the run awaits its payment (the relays' sweeper cancels those
    past their timeout), for at most the payment timeout and the drain timeout; whether none
    is left. Looks once when the timeout is longer than the drain timeout."""
    timeout = gateway.settings.orders.payment_timeout_seconds
    patience = 0.0
    if timeout is not None and timeout <= plan.drain_timeout_seconds:
        patience = timeout + plan.drain_timeout_seconds
    deadline = time.monotonic() + patience
    count = query("count_awaiting_payment_of_customers_by_email")
    while True:
        if await gateway.pool.fetchval(count, pattern) == 0:
            return True
        if time.monotonic() >= deadline or control.skip_drain.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(control.skip_drain.wait(), 0.2)


async def _relays_ready(
    gateway: Gateway, sinks: set[str], count: int, processes: list[asyncio.subprocess.Process]
) -> None:
    """Wait until the started relays hold leases on every sink (they have started)."""
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        async with gateway.pool.acquire() as connection:
            totals = {t.sink: t.relays for t in await tables.sink_totals(connection)}
        if all(totals.get(sink, 0) >= count for sink in sinks):
            return
        if any(process.returncode is not None for process in processes):
            raise GatewayError("a relay started for the load test exited; run `fanout relay`")
        await asyncio.sleep(0.05)
    raise GatewayError("the relays started for the load test took no leases within 120 s")


async def _spawn_relay(config_path: Path | None) -> asyncio.subprocess.Process:
    arguments = ["--config", str(config_path)] if config_path is not None else []
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *arguments,
        "relay",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop_relay(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
