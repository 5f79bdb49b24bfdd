"""The end-to-end benchmark's rule for a sustained rate (no I/O)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from bench.end_to_end import CpuByRole, judge, role_of


def report(**changes: Any) -> dict[str, Any]:
    phase: dict[str, Any] = {
        "drained": True,
        "errors": {},
        "offered_rate": 200.0,
        "achieved_rate": 199.0,
        "latency_ms": {"place": {"p50": 5.0, "p99": 40.0}},
        "sinks": {"redis": {"lag_ms": {"p99": 120.0}}, "influxdb": {"lag_ms": {"p99": 180.0}}},
    }
    phase.update(changes)
    return {"result": "clean", "phases": [phase]}


def test_a_clean_run_within_the_bounds_is_sustained() -> None:
    assert judge(report()).sustained


def test_each_way_of_falling_behind_is_named() -> None:
    slow_store = {"redis": {"lag_ms": {"p99": 120.0}}, "influxdb": {"lag_ms": {"p99": 251.0}}}
    cases = {
        "errors": report(errors={"HTTP 503": 1}),
        "achieved 150.0 of 200.0/s": report(achieved_rate=150.0),
        "placement p99 250.0 ms": report(latency_ms={"place": {"p50": 5.0, "p99": 250.0}}),
        "influxdb lag p99 251.0 ms": report(sinks=slow_store),
        "drift or not drained": report(drained=False),
    }
    for reason, run in cases.items():
        verdict = judge(run)
        assert not verdict.sustained
        assert any(found.startswith(reason) for found in verdict.reasons), (reason, verdict)


def test_a_store_never_seen_is_not_sustained() -> None:
    verdict = judge(report(sinks={"redis": {"lag_ms": {"p99": None}}}))
    assert verdict.reasons == ["redis lag p99 None ms"]


def test_processes_are_told_apart_by_their_command_lines() -> None:
    assert role_of("/work/.venv/bin/python -m gateway.loadtest.driver_process") == "load drivers"
    assert role_of("/work/.venv/bin/python -m gateway --config c.yaml loadtest --rate 5") == (
        "load coordinator"
    )
    assert role_of("/work/.venv/bin/python -m gateway --config c.yaml relay") == "relay"
    assert role_of("/usr/bin/ferretdb --handler=postgresql --postgresql-url=x") == "FerretDB"
    assert role_of("postgres: fanout fanout 127.0.0.1(5555) idle") == "PostgreSQL"
    assert role_of("/bin/bash") == "other"


async def test_the_cpu_of_the_machine_s_processes_is_read_by_role() -> None:
    usage = CpuByRole(interval=0.05)
    reading = asyncio.create_task(usage.run())
    await asyncio.sleep(0.1)  # the first reading is taken
    busy = await asyncio.create_subprocess_exec(  # one core busy for a second
        sys.executable,
        "-c",
        "import time\nend = time.monotonic() + 1\nwhile time.monotonic() < end: pass",
    )
    await busy.wait()
    reading.cancel()
    assert usage.cores().get("other", 0) >= 0.3


def test_a_process_seen_before_its_exec_is_counted_as_what_it_becomes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator = "python -m gateway --config c.yaml loadtest --rate 5"
    readings = iter(
        [
            {10: (1, coordinator, 4.0), 11: (10, coordinator, 0.0)},  # 11 forked, not exec'd
            {10: (1, coordinator, 5.0), 11: (10, "python -m gateway --config c.yaml relay", 2.0)},
        ]
    )
    monkeypatch.setattr("bench.end_to_end.processes", lambda: next(readings))
    usage = CpuByRole()
    usage._read(counting=False)
    usage._read(counting=True)
    assert dict(usage.seconds) == {"load coordinator": 1.0, "relay": 2.0}


def test_a_process_without_a_command_line_has_a_role_too(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([{2: (0, "", 1.0)}, {2: (0, "", 1.5)}])  # a kernel thread
    monkeypatch.setattr("bench.end_to_end.processes", lambda: next(readings))
    usage = CpuByRole()
    usage._read(counting=False)
    usage._read(counting=True)
    assert dict(usage.seconds) == {"other": 0.5}
