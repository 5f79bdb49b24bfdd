"""The chaos run's watch over its processes, on real ``fanout`` subprocesses: one that ends
on its own fails the run within seconds, named; one a fault holds down does not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos.processes import FanoutProcess
from bench.chaos.watch import ProcessEnded, watched


async def test_a_process_that_ends_on_its_own_fails_the_work_at_once(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    steady = FanoutProcess("relay-0", missing, ["relay"], tmp_path)
    steady.held_down = True  # a fault killed it: its end is expected
    failing = FanoutProcess("relay-1", missing, ["relay"], tmp_path)
    await steady.start()
    await failing.start()

    with pytest.raises(ProcessEnded) as ended:
        await asyncio.wait_for(watched(asyncio.sleep(3600), [steady, failing]), 60)

    message = str(ended.value)
    assert message.startswith("relay-1 exited on its own with code 2")
    assert "relay-0" not in message
    assert "missing.yaml" in message  # the end of its log says why
